//! The driver: the one tokio task that owns the B2BUA core, the connection registry and the
//! timers, and carries out the core's outputs.
//!
//! Everything the core does is a function call on this task (no locks): network events and
//! timers become [`Input`]s, [`Output`]s become writes, connections, timers, media commands,
//! CDRs, metrics and log lines.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tollgate_b2bua::{
    B2bua, CallEvent, Cdr, ConnId, Input, Output, Side, Target, TimerId, Transport,
};
use tollgate_sip::Message;

use crate::capture::{Capture, Dir, TapPoint};
use crate::media::{CallMedia, MediaCmd, MediaHandle};
use crate::metrics::{Metrics, labels};
use crate::state::CallState;
use crate::transport::{self, NetEvent, NetTransport, TransportCtx, WriteQueue};

/// Control requests from signal handlers or an embedding test.
#[derive(Debug)]
pub enum Control {
    /// Stop taking calls; exit when the last call ends or the deadline passes.
    Drain {
        /// Give up waiting after this long.
        deadline: Duration,
    },
    /// Apply a new configuration (trunks, routes, limits) and TLS material.
    Reload(Box<crate::config::Config>),
    /// Exit now (calls are dropped).
    Stop,
    /// Hand the calls over to the next process (an upgrade): stop accepting, write every
    /// call's state to the store and exit without a BYE; the next `tollgate run` restores
    /// them. Without a store this is [`Control::Stop`].
    Handover,
    /// An operator's request from the control socket.
    Ctl(crate::control::CtlCall),
    /// An operator's capture tap (`tollgate ctl capture`).
    Capture(crate::control::CaptureCall),
}

/// What the driver needs to answer operators beyond the core (set with [`Driver::with_ops`]).
#[derive(Debug, Clone, Default)]
pub struct OpsInfo {
    /// The configuration file (for `reload`), if the daemon was started from one.
    pub config_path: Option<std::path::PathBuf>,
    /// How long `drain` waits for calls to end.
    pub drain_timeout: Duration,
    /// The media data path in use (`xdp` or `socket`).
    pub datapath: &'static str,
}

struct Conn {
    writer: WriteQueue,
    /// The peer's address, the connection's transport and, for connections peers opened, our
    /// end (for the capture tap).
    peer: SocketAddr,
    transport: NetTransport,
    local: Option<SocketAddr>,
    /// Outbound connections are reused for later requests to the same address.
    key: Option<(Side, SocketAddr)>,
}

/// What the driver reports when it exits.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Calls still up at exit.
    pub calls_left: usize,
    /// Relay ports still allocated at exit (ext, int).
    pub ports_left: (usize, usize),
    /// The calls left were handed over to the next process through the call-state store.
    pub handed_over: bool,
}

/// The driver's state.
pub struct Driver {
    core: B2bua,
    ctx: Arc<TransportCtx>,
    media: MediaHandle,
    metrics: Arc<Metrics>,
    cdrs: mpsc::UnboundedSender<(Box<Cdr>, tokio::sync::oneshot::Receiver<CallMedia>)>,
    conns: HashMap<u64, Conn>,
    by_addr: HashMap<(Side, SocketAddr), u64>,
    timers: BTreeSet<(Instant, u64)>,
    timer_at: HashMap<u64, Instant>,
    out: Vec<Output>,
    next_hop_host: String,
    epoch: (Instant, SystemTime),
    draining: Option<Instant>,
    ops: OpsInfo,
    capture: Option<Capture>,
    state: Option<CallState>,
    /// Stored calls to take over when the run loop starts.
    restore: Vec<(String, Vec<u8>)>,
    state_up: Option<bool>,
    /// `tollgate ctl handover` asked to exit.
    handover: bool,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// Creates the driver.
    pub fn new(
        core: B2bua,
        ctx: Arc<TransportCtx>,
        media: MediaHandle,
        metrics: Arc<Metrics>,
        cdrs: mpsc::UnboundedSender<(Box<Cdr>, tokio::sync::oneshot::Receiver<CallMedia>)>,
        next_hop_host: String,
    ) -> Driver {
        Driver {
            core,
            ctx,
            media,
            metrics,
            cdrs,
            conns: HashMap::new(),
            by_addr: HashMap::new(),
            timers: BTreeSet::new(),
            timer_at: HashMap::new(),
            out: Vec::new(),
            next_hop_host,
            epoch: (Instant::now(), SystemTime::now()),
            draining: None,
            ops: OpsInfo::default(),
            capture: None,
            state: None,
            restore: Vec::new(),
            state_up: None,
            handover: false,
        }
    }

    /// The call-state store: stable calls are written to it, and `records` (what it held at
    /// start) are taken over before the first message is handled.
    pub fn with_state(mut self, state: CallState, records: Vec<(String, Vec<u8>)>) -> Driver {
        let (at, wall) = self.epoch;
        let unix_ms = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.core.set_wall_clock(at, unix_ms);
        self.core.enable_store(true);
        self.state = Some(state);
        self.restore = records;
        self
    }

    /// Takes over the stored calls: the core restores them, the media thread installs their
    /// flows (awaited, to time it).
    async fn take_over(&mut self) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let records = std::mem::take(&mut self.restore);
        if records.is_empty() {
            return;
        }
        let t = Instant::now();
        let report = self.core.restore(&records, t, &mut self.out);
        self.flush();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.media.send(MediaCmd::Sync { reply: tx });
        let _ = rx.await;
        let install = t.elapsed();
        let count = |what: &str, n: usize| {
            self.metrics
                .calls_restored
                .get_or_create(&labels(&[("outcome", what)]))
                .inc_by(n as u64);
        };
        count("restored", report.restored.len());
        count("ended", report.ended.len());
        count("unreadable", report.unreadable.len());
        for (call, e) in &report.ended {
            tracing::warn!(call, error = %e, "stored call could not be carried on: BYE on both legs");
        }
        for (key, e) in &report.unreadable {
            tracing::warn!(key, error = %e, "stored call record unreadable: deleted");
            state.delete_key(key);
        }
        self.metrics
            .calls_active
            .set(self.core.active_calls() as i64);
        tracing::info!(
            restored = report.restored.len(),
            ended = report.ended.len(),
            unreadable = report.unreadable.len(),
            restore_and_install_ms = install.as_secs_f64() * 1000.0,
            since_exec_ms = crate::run::process_age_ms(),
            "calls taken over from the call-state store"
        );
    }

    /// What operators' requests need beyond the core.
    pub fn with_ops(mut self, ops: OpsInfo) -> Driver {
        self.ops = ops;
        self
    }

    /// The SIP tap (HEP export, operator captures).
    pub fn with_capture(mut self, capture: Capture) -> Driver {
        self.capture = Some(capture);
        self
    }

    /// Runs until stopped, or until a drain completes.
    pub async fn run(
        mut self,
        mut net: mpsc::Receiver<NetEvent>,
        mut inactive: mpsc::UnboundedReceiver<u64>,
        mut positions: mpsc::UnboundedReceiver<crate::media::SrtpReport>,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) -> Summary {
        self.take_over().await;
        let now = Instant::now();
        self.core.start(now, &mut self.out);
        self.flush();
        let mut handed_over = false;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            let next = self.timers.first().map(|(at, _)| *at);
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = net.recv() => {
                    let Some(ev) = ev else { break };
                    self.net_event(ev);
                }
                Some((call, flow, side, pos)) = positions.recv() => {
                    let now = Instant::now();
                    let pos = tollgate_b2bua::record::SrtpPosition {
                        ssrc: pos.ssrc,
                        roc: pos.roc,
                        srtcp_index: pos.srtcp_index,
                    };
                    self.core.handle(Input::SrtpPosition { call, flow, side, pos }, now, &mut self.out);
                    self.flush();
                }
                Some(call) = inactive.recv() => {
                    tracing::info!(call, "media inactive: ending call");
                    let now = Instant::now();
                    self.core.handle(Input::MediaInactive { call }, now, &mut self.out);
                    self.flush();
                }
                c = control.recv() => {
                    match c {
                        Some(Control::Drain { deadline }) => self.drain(deadline),
                        Some(Control::Reload(cfg)) => self.reload(&cfg),
                        Some(Control::Ctl(c)) => {
                            self.ctl(c);
                            if self.handover {
                                handed_over = true;
                                tracing::info!(calls = self.core.active_calls(), "handover: exiting without BYE");
                                break;
                            }
                        }
                        Some(Control::Capture(c)) => self.add_tap(c),
                        Some(Control::Handover) => {
                            handed_over = self.state.is_some();
                            tracing::info!(calls = self.core.active_calls(), store = handed_over, "handover: exiting without BYE");
                            break;
                        }
                        Some(Control::Stop) | None => break,
                    }
                }
                _ = sleep => {
                    let now = Instant::now();
                    while let Some(&(at, id)) = self.timers.first() {
                        if at > now {
                            break;
                        }
                        self.timers.remove(&(at, id));
                        self.timer_at.remove(&id);
                        self.core.handle(Input::Timer(TimerId(id)), now, &mut self.out);
                    }
                    self.flush();
                }
                _ = tick.tick() => {
                    self.gauges();
                    if let Some(c) = self.capture.as_mut() {
                        c.expire(Instant::now());
                    }
                    if let Some(deadline) = self.draining {
                        if self.core.is_drained() {
                            tracing::info!("drained: no calls left");
                            break;
                        }
                        if Instant::now() >= deadline {
                            tracing::warn!(calls = self.core.active_calls(), "drain deadline passed");
                            break;
                        }
                    }
                }
            }
        }
        self.gauges();
        if let Some(state) = &self.state {
            let state = state.clone();
            let calls = self.core.active_calls();
            // The writer thread blocks; the runtime goes on serving other tasks meanwhile.
            let flushed = tokio::task::spawn_blocking(move || {
                let r = state.flush(Duration::from_secs(5));
                let _ = state.shutdown();
                r
            })
            .await;
            match flushed {
                Ok(Ok(())) => tracing::info!(calls, "call-state store flushed"),
                Ok(Err(e)) => {
                    tracing::error!(calls, error = %e, "call-state store not flushed: the latest state of some calls is lost")
                }
                Err(e) => tracing::error!(error = %e, "call-state flush task failed"),
            }
        }
        Summary {
            calls_left: self.core.active_calls(),
            ports_left: self.core.allocated_ports(),
            handed_over,
        }
    }

    /// Stops taking calls; the run loop exits when the last call ends or at the deadline.
    fn drain(&mut self, deadline: Duration) {
        tracing::info!(
            calls = self.core.active_calls(),
            "draining: refusing new calls"
        );
        let now = Instant::now();
        self.draining = Some(now + deadline);
        self.core.handle(Input::Drain, now, &mut self.out);
        self.flush();
    }

    /// Answers an operator (see [`crate::control`]). Media counters come from the media
    /// thread: the answer is finished on a task of its own, so the driver never waits.
    fn ctl(&mut self, c: crate::control::CtlCall) {
        use crate::control::{CtlRequest, error};
        let now = Instant::now();
        let ok = |mut v: serde_json::Value| {
            v["ok"] = true.into();
            v
        };
        let answer = match c.request {
            CtlRequest::Calls => {
                let calls: Vec<serde_json::Value> = self
                    .core
                    .call_summaries(now)
                    .iter()
                    .map(crate::ops_json::summary)
                    .collect();
                return self.with_media(calls, "calls", c.reply);
            }
            CtlRequest::Call { id } => match self.core.call_detail(id, now) {
                Some(d) => {
                    return self.with_media(vec![crate::ops_json::detail(&d)], "call", c.reply);
                }
                None => error(format!("no call {id}")),
            },
            CtlRequest::Hangup { id, reason } => {
                if !self.core.has_call(id) {
                    error(format!("no call {id}"))
                } else {
                    let reason = reason.unwrap_or_else(|| "ended by operator".to_owned());
                    tracing::warn!(call = id, reason, "operator hangup");
                    self.core
                        .handle(Input::Hangup { call: id, reason }, now, &mut self.out);
                    self.flush();
                    ok(serde_json::json!({ "call": id }))
                }
            }
            CtlRequest::Trunks => ok(serde_json::json!({
                "trunks": self
                    .core
                    .trunk_views(now)
                    .iter()
                    .map(crate::ops_json::trunk)
                    .collect::<Vec<_>>()
            })),
            CtlRequest::Trunk { name, enable } => {
                if self.core.set_trunk_enabled(&name, enable) {
                    tracing::warn!(
                        trunk = name,
                        enable,
                        "operator: trunk {}",
                        if enable { "enabled" } else { "disabled" }
                    );
                    ok(serde_json::json!({ "trunk": name, "enabled": enable }))
                } else {
                    error(format!("no trunk named {name:?}"))
                }
            }
            CtlRequest::Handover => match &self.state {
                None => error(
                    "no call-state store (state.backend = \"none\"): a handover would drop every call; use drain",
                ),
                Some(s) => {
                    self.handover = true;
                    ok(
                        serde_json::json!({ "calls": self.core.active_calls(), "store": s.backend() }),
                    )
                }
            },
            CtlRequest::Drain => {
                let d = self.ops.drain_timeout;
                self.drain(d);
                ok(serde_json::json!({ "draining": true, "deadline_s": d.as_secs() }))
            }
            CtlRequest::Reload => match self.ops.config_path.clone() {
                None => error("started without a configuration file: nothing to reload"),
                Some(p) => match crate::config::Config::load(&p) {
                    Ok(cfg) => {
                        self.reload(&cfg);
                        ok(serde_json::json!({ "reloaded": p.display().to_string() }))
                    }
                    Err(e) => error(format!(
                        "configuration refused, keeping the running one: {e}"
                    )),
                },
            },
            // Served by the control socket as a stream (`Control::Capture`).
            CtlRequest::Capture { .. } => error("capture is a streaming request"),
            CtlRequest::Status => {
                let (ext, int) = self.core.allocated_ports();
                let trunks = self.core.trunk_views(now);
                let state = self.state.as_ref().map(|s| {
                    let st = s.status();
                    serde_json::json!({
                        "backend": s.backend(),
                        "up": st.up,
                        "stored_calls": st.records,
                        "unprotected_calls": st.unprotected,
                        "write_errors": st.write_errors,
                        "resyncs": st.resyncs,
                    })
                });
                ok(serde_json::json!({
                    "state": state,
                    "version": env!("CARGO_PKG_VERSION"),
                    "uptime_s": now.saturating_duration_since(self.epoch.0).as_secs(),
                    "draining": self.draining.is_some(),
                    "calls": self.core.active_calls(),
                    "transactions": self.core.transactions(),
                    "ports": { "ext": ext, "int": int },
                    "datapath": self.ops.datapath,
                    "trunks_up": trunks.iter().filter(|t| t.options_up && !t.disabled).count(),
                    "trunks": trunks.len(),
                }))
            }
        };
        let _ = c.reply.send(answer);
    }

    /// Starts an operator's capture tap: every message, or those of call `call`'s two legs.
    fn add_tap(&mut self, c: crate::control::CaptureCall) {
        use crate::control::error;
        let Some(cap) = self.capture.as_mut() else {
            let _ = c
                .reply
                .send(error("capture is not available in this daemon"));
            return;
        };
        let call_ids = match c.call {
            None => None,
            Some(id) => match self.core.call_detail(id, Instant::now()) {
                Some(d) => Some(d.legs.iter().map(|l| l.call_id.clone()).collect::<Vec<_>>()),
                None => {
                    let _ = c.reply.send(error(format!("no call {id}")));
                    return;
                }
            },
        };
        tracing::info!(call = ?c.call, seconds = c.until.saturating_duration_since(Instant::now()).as_secs(), "operator capture started");
        let answer = serde_json::json!({ "ok": true, "capturing": true, "call_ids": call_ids });
        cap.add(crate::capture::Tap {
            call_ids,
            until: c.until,
            tx: c.tx,
            dropped: c.dropped,
        });
        let _ = c.reply.send(answer);
    }

    /// The tap point: every SIP message received or sent, after TLS. Nothing is encoded or
    /// allocated unless a HEP collector or an operator tap listens.
    fn tap(
        &mut self,
        side: Side,
        dir: Dir,
        conn: Option<u64>,
        msg: &Message,
        bytes: Option<&[u8]>,
    ) {
        let Some(cap) = self.capture.as_mut().filter(|c| c.active()) else {
            return;
        };
        let Some((peer, transport, local)) = conn
            .and_then(|c| self.conns.get(&c))
            .map(|c| (c.peer, c.transport, c.local))
        else {
            return;
        };
        let owned;
        let bytes = match bytes {
            Some(b) => b,
            None => {
                owned = msg.encode();
                &owned
            }
        };
        cap.tap(TapPoint {
            side,
            dir,
            local,
            peer,
            transport,
            bytes,
            call_id: msg.call_id(),
        });
    }

    /// Adds each call's media counters (from the media thread) to `calls` and answers
    /// `{"ok":true, key: calls}` (`call` answers the single object).
    fn with_media(
        &self,
        mut calls: Vec<serde_json::Value>,
        key: &'static str,
        reply: tokio::sync::oneshot::Sender<serde_json::Value>,
    ) {
        let ids: Vec<u64> = calls.iter().filter_map(|c| c["id"].as_u64()).collect();
        for c in &mut calls {
            c["datapath"] = self.ops.datapath.into();
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.media.send(MediaCmd::PeekStats {
            calls: ids,
            reply: tx,
        });
        tokio::spawn(async move {
            if let Ok(Ok(stats)) = tokio::time::timeout(Duration::from_secs(2), rx).await {
                for c in &mut calls {
                    if let Some((_, m)) = stats.iter().find(|(id, _)| Some(*id) == c["id"].as_u64())
                    {
                        c["media"] = m.to_json();
                    }
                }
            }
            let v = if key == "call" {
                serde_json::json!({ "ok": true, "call": calls.pop() })
            } else {
                serde_json::json!({ "ok": true, "calls": calls })
            };
            let _ = reply.send(v);
        });
    }

    fn reload(&mut self, cfg: &crate::config::Config) {
        match crate::convert::b2bua_config(cfg) {
            Ok(b) => {
                let now = Instant::now();
                self.core
                    .handle(Input::Reload(Box::new(b)), now, &mut self.out);
                self.flush();
                if let Ok(mut t) = self.ctx.trunk_addrs.write() {
                    *t = cfg.trunks.iter().map(|t| t.address).collect();
                }
                match crate::tls::TlsMaterial::load(&cfg.tls) {
                    Ok(m) => {
                        if let Ok(mut t) = self.ctx.tls.write() {
                            *t = m;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reload: TLS material refused, keeping the old")
                    }
                }
                tracing::info!(
                    trunks = cfg.trunks.len(),
                    routes = cfg.routes.len(),
                    "configuration reloaded"
                );
            }
            Err(e) => tracing::error!(error = %e, "reload refused"),
        }
    }

    fn gauges(&mut self) {
        if let Some(s) = &self.state {
            s.publish(&self.metrics, &mut self.state_up);
        }
        let m = &self.metrics;
        m.calls_active.set(self.core.active_calls() as i64);
        let (e, i) = self.core.allocated_ports();
        m.ports_allocated
            .get_or_create(&labels(&[("side", "ext")]))
            .set(e as i64);
        m.ports_allocated
            .get_or_create(&labels(&[("side", "int")]))
            .set(i as i64);
        for (name, up) in self.core.trunk_status() {
            m.trunk_up
                .get_or_create(&labels(&[("trunk", &name)]))
                .set(i64::from(up));
            m.trunk_calls
                .get_or_create(&labels(&[("trunk", &name)]))
                .set(self.core.trunk_calls(&name) as i64);
        }
    }

    fn net_event(&mut self, ev: NetEvent) {
        let now = Instant::now();
        // A connection whose stream the framer gave up: closed once the core's answer is queued.
        let mut close_after = None;
        match ev {
            NetEvent::Up {
                conn,
                side,
                peer,
                link,
                writer,
            } => {
                tracing::debug!(conn, side = side.as_str(), %peer, outbound = link.outbound, "connection up");
                // Outbound connections were registered when dialled; keep their writer.
                self.conns.entry(conn).or_insert(Conn {
                    writer,
                    key: None,
                    peer,
                    transport: link.transport,
                    // Outbound: the listen address throughout (their first message is queued
                    // before the connection, and its port, exist).
                    local: link.local.filter(|_| !link.outbound),
                });
            }
            NetEvent::Message {
                conn,
                side,
                peer,
                msg,
            } => {
                self.metrics
                    .sip_messages
                    .get_or_create(&labels(&[("side", side.as_str()), ("dir", "in")]))
                    .inc();
                self.tap(side, Dir::In, Some(conn), &msg, None);
                self.core.handle(
                    Input::Message {
                        side,
                        conn: ConnId(conn),
                        peer,
                        msg: *msg,
                    },
                    now,
                    &mut self.out,
                );
            }
            NetEvent::Invalid {
                conn,
                side,
                peer,
                error,
            } => {
                tracing::info!(conn, side = side.as_str(), %peer, error = %error.error, "unparsable SIP message");
                if error.fatal {
                    close_after = Some(conn);
                }
                self.core.handle(
                    Input::Invalid {
                        side,
                        conn: ConnId(conn),
                        peer,
                        error: error.error,
                    },
                    now,
                    &mut self.out,
                );
            }
            NetEvent::ConnectFailed {
                conn,
                side,
                addr,
                reason,
            } => {
                tracing::warn!(side = side.as_str(), %addr, reason, "outbound connection failed");
                self.drop_conn(conn);
                self.core
                    .handle(Input::ConnectFailed { side, addr }, now, &mut self.out);
            }
            NetEvent::Closed { conn, side } => {
                self.drop_conn(conn);
                self.core.handle(
                    Input::ConnClosed {
                        side,
                        conn: ConnId(conn),
                    },
                    now,
                    &mut self.out,
                );
            }
        }
        self.flush();
        if let Some(c) = close_after.and_then(|c| self.conns.get(&c)) {
            c.writer.close();
        }
    }

    fn drop_conn(&mut self, conn: u64) {
        if let Some(k) = self.conns.remove(&conn).and_then(|c| c.key)
            && self.by_addr.get(&k) == Some(&conn)
        {
            self.by_addr.remove(&k);
        }
    }

    /// Carries out the outputs queued by the core.
    fn flush(&mut self) {
        let mut out = std::mem::take(&mut self.out);
        for o in out.drain(..) {
            match o {
                Output::Send { side, target, msg } => self.send(side, target, &msg),
                Output::SetTimer { id, at } => {
                    if let Some(old) = self.timer_at.insert(id.0, at) {
                        self.timers.remove(&(old, id.0));
                    }
                    self.timers.insert((at, id.0));
                }
                Output::CancelTimer(id) => {
                    if let Some(at) = self.timer_at.remove(&id.0) {
                        self.timers.remove(&(at, id.0));
                    }
                }
                Output::InstallMedia { call, spec } => {
                    self.media.send(MediaCmd::Install {
                        call,
                        spec: Box::new(spec),
                    });
                }
                Output::RemoveMedia { call, flow } => {
                    self.media.send(MediaCmd::Remove { call, flow })
                }
                Output::Cdr(cdr) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    self.media.send(MediaCmd::TakeStats {
                        call: cdr.call,
                        reply: tx,
                    });
                    let _ = self.cdrs.send((Box::new(cdr), rx));
                }
                Output::StoreCall { call, record } => {
                    if let Some(s) = &self.state {
                        s.put(call, record);
                    }
                }
                Output::ForgetCall { call } => {
                    if let Some(s) = &self.state {
                        s.forget(call);
                    }
                }
                Output::Event(e) => {
                    let calls_changed = matches!(
                        e,
                        CallEvent::Started { .. }
                            | CallEvent::Ended { .. }
                            | CallEvent::Restored { .. }
                    );
                    self.event(e);
                    if calls_changed {
                        self.metrics
                            .calls_active
                            .set(self.core.active_calls() as i64);
                    }
                }
            }
        }
        // Keep the (now empty) allocation.
        self.out = out;
    }

    fn send(&mut self, side: Side, target: Target, msg: &tollgate_sip::Message) {
        let bytes = msg.encode();
        let ns = side;
        self.metrics
            .sip_messages
            .get_or_create(&labels(&[("side", ns.as_str()), ("dir", "out")]))
            .inc();
        let conn = match target {
            Target::Conn(ConnId(id)) => Some(id),
            Target::Addr { addr, .. } => self.by_addr.get(&(ns, addr)).copied(),
        };
        if conn.is_some() {
            self.tap(ns, Dir::Out, conn, msg, Some(&bytes));
        }
        match target {
            Target::Conn(ConnId(id)) => {
                if let Some(c) = self.conns.get(&id) {
                    if let Err(e) = c.writer.send(bytes) {
                        tracing::debug!(conn = id, error = %e, "send dropped");
                    }
                } else {
                    tracing::debug!(conn = id, "send on a closed connection dropped");
                }
            }
            Target::Addr { addr, transport } => {
                if let Some(c) = self
                    .by_addr
                    .get(&(ns, addr))
                    .and_then(|id| self.conns.get(id))
                {
                    if let Err(e) = c.writer.send(bytes) {
                        tracing::debug!(%addr, error = %e, "send dropped");
                    }
                    return;
                }
                let conn = self.ctx.next_conn();
                let (tx, rx) = transport::write_queue(self.ctx.stream.write_queue_bytes);
                let t = match transport {
                    Transport::Tcp => NetTransport::Tcp,
                    Transport::Tls => NetTransport::Tls,
                };
                self.conns.insert(
                    conn,
                    Conn {
                        writer: tx.clone(),
                        key: Some((ns, addr)),
                        peer: addr,
                        transport: t,
                        local: None,
                    },
                );
                self.by_addr.insert((ns, addr), conn);
                self.tap(ns, Dir::Out, Some(conn), msg, Some(&bytes));
                // A fresh queue holds at least one message of the largest size.
                let _ = tx.send(bytes);
                let (t, name) = match transport {
                    Transport::Tcp => (NetTransport::Tcp, None),
                    Transport::Tls => (
                        NetTransport::Tls,
                        Some(if side == Side::Int {
                            self.core
                                .internal_host(addr)
                                .map_or_else(|| self.next_hop_host.clone(), str::to_owned)
                        } else {
                            addr.ip().to_string()
                        }),
                    ),
                };
                transport::connect(Arc::clone(&self.ctx), conn, ns, addr, t, name, (tx, rx));
            }
        }
    }

    fn event(&self, e: CallEvent) {
        let m = &self.metrics;
        match e {
            CallEvent::Started {
                call,
                direction,
                trunk,
            } => {
                m.calls_total
                    .get_or_create(&labels(&[("direction", direction.as_str())]))
                    .inc();
                tracing::info!(
                    call,
                    direction = direction.as_str(),
                    trunk = trunk.as_deref().unwrap_or("-"),
                    "call started"
                );
            }
            CallEvent::Restored { call } => {
                tracing::debug!(call, "call restored from the call-state store");
            }
            CallEvent::Answered { call, setup } => {
                m.setup_seconds.observe(setup.as_secs_f64());
                tracing::info!(call, setup_ms = setup.as_millis() as u64, "call answered");
            }
            CallEvent::Ended {
                call,
                cause,
                status,
            } => {
                let normal = matches!(cause, tollgate_b2bua::EndCause::Bye(_));
                if !normal {
                    m.calls_failed
                        .get_or_create(&labels(&[("cause", cause.as_str())]))
                        .inc();
                }
                tracing::info!(call, cause = cause.as_str(), status, "call ended");
            }
            CallEvent::Refused {
                side,
                peer,
                method,
                reason,
                status,
            } => {
                m.requests_refused
                    .get_or_create(&labels(&[
                        ("side", side.as_str()),
                        ("reason", reason.as_str()),
                    ]))
                    .inc();
                // Admission refusals come in floods: the per-trunk counter tells them.
                if reason.is_admission() {
                    tracing::debug!(side = side.as_str(), %peer, method, reason = reason.as_str(), status, "request refused");
                } else {
                    tracing::warn!(side = side.as_str(), %peer, method, reason = reason.as_str(), status, "request refused");
                }
            }
            CallEvent::NotAdmitted { trunk, reason } => {
                m.calls_not_admitted
                    .get_or_create(&labels(&[("trunk", &trunk), ("reason", reason.as_str())]))
                    .inc();
            }
            CallEvent::NextHop { addr, up } => {
                m.next_hop_up
                    .get_or_create(&labels(&[("addr", &addr.to_string())]))
                    .set(i64::from(up));
                if up {
                    tracing::info!(%addr, "next hop takes calls again");
                } else {
                    tracing::warn!(%addr, "next hop marked down (503 or no answer): calls go elsewhere or get 503");
                }
            }
            CallEvent::Failover {
                call,
                from,
                to,
                status,
            } => {
                tracing::warn!(
                    call,
                    from,
                    to,
                    status,
                    "failover to the next trunk or next hop"
                );
            }
            CallEvent::TrunkStatus { trunk, up } => {
                m.trunk_up
                    .get_or_create(&labels(&[("trunk", &trunk)]))
                    .set(i64::from(up));
                tracing::warn!(trunk, up, "trunk status changed");
            }
        }
    }

    /// The driver's clock epoch (for CDR times).
    pub fn epoch(&self) -> (Instant, SystemTime) {
        self.epoch
    }
}
