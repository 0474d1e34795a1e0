//! [`B2bua`]: the call state machine the driver calls with [`Input`]s.
//!
//! Plumbing lives here: inputs, the transaction layer (one `tollgate-sip` [`TransactionLayer`]
//! for both sides) and the dispatch of its actions, the refusal checks that run before a
//! transaction exists, persistence and reloads. The state it holds has homes of its own:
//! `calls.rs` (call table), `timers.rs`, `trunks.rs` (keepalives), `transport.rs` (flows).
//! A new call is `newcall.rs`, call setup `setup.rs`, in-dialog handling `indialog.rs`,
//! teardown `teardown.rs`. Handlers take one `Effects` context (the input's time and the
//! outputs it appends); what concerns one call only is methods on `Call` (`call.rs`), which
//! the handlers look up and call.
//!
//! Teardown is immediate: when a call ends (BYE, CANCEL, error, timer) its BYE/CANCEL/final
//! responses are sent, its flows removed, its ports freed and its CDR written in the same
//! [`B2bua::handle`] call. Transactions still open toward a peer live on in the transaction
//! layer without the call ("orphans"): a late 2xx to an abandoned INVITE is ACKed and BYEd, and
//! a guard timer bounds every orphan, so nothing leaks.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use tollgate_sdp::{CryptoPolicy, RewriteConfig};
use tollgate_sip::{
    Action, HeaderName, Message, Method, TransactionConfig, TransactionLayer, TransportFlow, TxId,
    UaPolicy, check_request, check_response,
};

use crate::admission::Admission;
use crate::call::TxRole;
use crate::calls::CallTable;
use crate::config::Config;
use crate::effects::{Effects, Origin};
use crate::media::Pools;
use crate::newcall::Received;
use crate::own_headers;
use crate::ports::PortPool;
use crate::record::{self, WallClock};
use crate::teardown::Orphans;
use crate::timers::{TimerPurpose, Timers};
use crate::transport::TransportFlows;
use crate::trunks::Trunks;
use crate::types::{
    CallEvent, CallId, ConnId, EndCause, Input, Output, RefuseReason, Side, Target, TimerId,
};

/// The CSPRNG the core draws SRTP keys, tags, Call-IDs and branches from.
pub type Rng = Box<dyn FnMut(&mut [u8]) + Send>;

/// How a client transaction failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Timer B/F.
    Timeout,
    /// Connect failure or connection closed.
    Transport,
}

/// The B2BUA core. One instance serves every call of a Tollgate process.
pub struct B2bua {
    /// Shared so that call setup can hold its trunk while it borrows the core mutably.
    pub(crate) cfg: Arc<Config>,
    pub(crate) rng: Rng,
    pub(crate) rewrite: RewriteConfig,
    pub(crate) layer: TransactionLayer,
    /// Every branch we generate starts with this (loop detection).
    branch_prefix: String,
    pub(crate) next_flow: u64,
    /// The calls in progress and their dialog and transaction indexes.
    pub(crate) calls: CallTable,
    /// INVITE client transactions whose call is gone.
    pub(crate) orphans: Orphans,
    /// Armed timers and what each is for.
    pub(crate) timers: Timers,
    pub(crate) transport_flows: TransportFlows,
    pub(crate) pools: Pools,
    /// Trunk states and their keepalives.
    pub(crate) trunks: Trunks,
    pub(crate) admission: Admission,
    draining: bool,
    /// Whether stable calls are emitted for the call-state store ([`B2bua::enable_store`]).
    store: bool,
    /// Calls an input reached this time: checked for a new stable state at its end.
    touched: Vec<CallId>,
    /// Reference point between `Instant`s and wall-clock time (records keep wall time).
    wall: Option<WallClock>,
}

impl std::fmt::Debug for B2bua {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("B2bua")
            .field("calls", &self.calls.len())
            .field("transactions", &self.layer.len())
            .field("timers", &self.timers.len())
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}

fn rewrite_config(cfg: &Config) -> RewriteConfig {
    RewriteConfig {
        offer_suites: cfg.media.srtp_suites.clone(),
        crypto: CryptoPolicy::default(),
        ..RewriteConfig::default()
    }
}

/// The status the caller gets for a callee-side final error: credentials challenges cannot
/// cross the B2BUA (403), redirects are not followed (480); everything else is relayed as is.
pub(crate) fn map_status(code: u16) -> u16 {
    match code {
        401 | 407 => 403,
        300..=399 => 480,
        c => c,
    }
}

pub(crate) fn hex_into(s: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
}

impl B2bua {
    /// A core for `cfg` (validate it with [`Config::validate`] first); `rng` is a CSPRNG
    /// (SRTP keys, tags, Call-IDs, branches).
    pub fn new(cfg: Config, mut rng: Rng) -> B2bua {
        let mut inst = [0u8; 4];
        rng(&mut inst);
        let mut branch_prefix = String::from("z9hG4bKtg");
        hex_into(&mut branch_prefix, &inst);
        branch_prefix.push('.');
        let pools = Pools {
            ext: PortPool::new(cfg.media.ext_ports.clone()),
            int: PortPool::new(cfg.media.int_ports.clone()),
            ext_ip: cfg.ext.media_ip,
            int_ip: cfg.int.media_ip,
        };
        let layer = TransactionLayer::new(TransactionConfig {
            t1: cfg.sip.t1,
            auto_trying: true,
        });
        let trunks = Trunks::new(&cfg);
        let admission = Admission::new(&cfg);
        B2bua {
            rewrite: rewrite_config(&cfg),
            cfg: Arc::new(cfg),
            rng,
            layer,
            branch_prefix,
            next_flow: 1,
            calls: CallTable::default(),
            orphans: Orphans::default(),
            timers: Timers::default(),
            transport_flows: TransportFlows::default(),
            pools,
            trunks,
            admission,
            draining: false,
            store: false,
            touched: Vec::new(),
            wall: None,
        }
    }

    /// Emits [`Output::StoreCall`] / [`Output::ForgetCall`] for the call-state store from now
    /// on (off by default: nothing is serialised when no store is configured).
    pub fn enable_store(&mut self, on: bool) {
        self.store = on;
    }

    /// Ties the core's `Instant`s to wall-clock time: `at` is `unix_ms` milliseconds after the
    /// Unix epoch. Stored records keep wall-clock start and answer times, so that a restored
    /// call's CDR has its real start. The core reads no clock itself.
    pub fn set_wall_clock(&mut self, at: Instant, unix_ms: u64) {
        self.wall = Some(WallClock { at, unix_ms });
    }

    pub(crate) fn wall_clock(&mut self, now: Instant) -> WallClock {
        *self.wall.get_or_insert(WallClock {
            at: now,
            unix_ms: 0,
        })
    }

    /// Arms the initial timers: an OPTIONS keepalive to each trunk that has one, due now.
    pub fn start(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.arm_keepalives(&mut Effects::new(now, out));
    }

    /// Handles one input; appends what the driver must do to `out`.
    pub fn handle(&mut self, input: Input, now: Instant, out: &mut Vec<Output>) {
        let fx = &mut Effects::new(now, out);
        match input {
            Input::Message {
                side,
                conn,
                peer,
                msg,
            } => self.on_message(side, conn, peer, msg, fx),
            Input::Invalid {
                side,
                conn,
                peer,
                error,
            } => self.on_invalid(side, conn, peer, &error, fx),
            Input::Timer(id) => self.on_timer(id, fx),
            Input::ConnectFailed { side, addr } => self.on_connect_failed(side, addr),
            Input::ConnClosed { side, conn } => self.on_conn_closed(side, conn),
            Input::MediaInactive { call } => {
                self.end_call(
                    call,
                    EndCause::MediaTimeout,
                    408,
                    Some("SIP;cause=408;text=\"Media Timeout\""),
                    fx,
                );
            }
            Input::Drain => self.draining = true,
            Input::Reload(cfg) => self.reload(*cfg, fx),
            Input::Hangup { call, reason } => self.hangup(call, &reason, fx),
            Input::SrtpPosition {
                call,
                flow,
                side,
                pos,
            } => {
                if self
                    .calls
                    .get_mut(&call)
                    .is_some_and(|c| c.srtp_position(flow, side, pos))
                {
                    self.touched.push(call);
                }
            }
        }
        self.pump(fx);
        self.persist(fx);
    }

    /// Emits the record of every touched call whose stable state changed.
    pub(crate) fn persist(&mut self, fx: &mut Effects<'_>) {
        if !self.store || self.touched.is_empty() {
            self.touched.clear();
            return;
        }
        let wall = self.wall_clock(fx.now);
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for id in touched.drain(..) {
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            let Some(rec) = record::record_of(id, call, &wall) else {
                continue;
            };
            let Ok(bytes) = serde_json::to_vec(&rec) else {
                continue;
            };
            if call.newly_stored(&bytes) {
                fx.out.push(Output::StoreCall {
                    call: id,
                    record: bytes,
                });
            }
        }
        self.touched = touched;
    }

    /// Calls alive.
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Relay ports in use: (ext, int) RTP ports (each with its RTCP port).
    pub fn allocated_ports(&self) -> (usize, usize) {
        (self.pools.ext.in_use(), self.pools.int.in_use())
    }

    /// Draining and no call left.
    pub fn is_drained(&self) -> bool {
        self.draining && self.calls.is_empty()
    }

    /// Each configured trunk's name and whether it is up (trunks without keepalive are
    /// always up).
    pub fn trunk_status(&self) -> Vec<(String, bool)> {
        self.cfg
            .trunks
            .iter()
            .map(|t| {
                let up = self.trunks.is_up(&t.name);
                (t.name.clone(), up)
            })
            .collect()
    }

    /// The host name (TLS server name) of internal next hop `addr`, if it is one.
    pub fn internal_host(&self, addr: SocketAddr) -> Option<&str> {
        self.cfg.int.host_of(addr)
    }

    /// Calls in progress counted against trunk `name` (both directions).
    pub fn trunk_calls(&self, name: &str) -> usize {
        self.admission.active(name)
    }

    /// Whether call `id` is in progress.
    pub fn has_call(&self, id: CallId) -> bool {
        self.calls.contains_key(&id)
    }

    /// Whether admission has the next hop at `addr` marked down at `now` (503 or no answer).
    pub fn next_hop_down(&self, addr: SocketAddr, now: Instant) -> bool {
        self.admission.is_down(addr, now)
    }

    /// Live SIP transactions (for tests and metrics).
    pub fn transactions(&self) -> usize {
        self.layer.len()
    }

    /// Timers the core considers armed (for tests and metrics).
    pub fn armed_timers(&self) -> usize {
        self.timers.len()
    }

    pub(crate) fn trunk_by_ip(&self, ip: IpAddr) -> Option<usize> {
        self.cfg.trunks.iter().position(|t| t.addr.ip() == ip)
    }

    /// Takes a trunk out of service (`enabled` false: new calls from it get 503, routes skip
    /// it; calls in progress go on) or puts it back. False if there is no such trunk.
    pub fn set_trunk_enabled(&mut self, name: &str, enabled: bool) -> bool {
        self.trunks.set_enabled(name, enabled)
    }

    // ----- timers --------------------------------------------------------------------------

    fn on_timer(&mut self, id: TimerId, fx: &mut Effects<'_>) {
        let Some(purpose) = self.timers.fire(id) else {
            return;
        };
        if let TimerPurpose::Session(call, _) | TimerPurpose::InviteGuard(call, _) = purpose {
            self.touched.push(call);
        }
        match purpose {
            TimerPurpose::Tx => self.layer.on_timeout(fx.now),
            TimerPurpose::NoAnswer(call) => {
                if let Some(s) = self.calls.get_mut(&call).and_then(|c| c.setup_mut()) {
                    s.no_answer = None;
                }
                self.end_call(call, EndCause::NoAnswer, 408, None, fx);
            }
            TimerPurpose::Session(call, side) => self.on_session_timer(call, side, fx),
            TimerPurpose::OrphanGuard(tx) => {
                if self.orphans.remove(tx).is_some() && self.layer.state(tx).is_some() {
                    // RFC 3261 §9.1: no final response 64·T1 after CANCEL: give up on it.
                    self.layer.transport_error(tx);
                }
            }
            TimerPurpose::Keepalive(name) => self.on_keepalive_timer(&name, fx),
            TimerPurpose::InviteGuard(call, tx) => self.on_invite_guard(call, tx, fx),
        }
    }

    // ----- input ---------------------------------------------------------------------------

    fn on_message(
        &mut self,
        side: Side,
        conn: ConnId,
        peer: SocketAddr,
        msg: Message,
        fx: &mut Effects<'_>,
    ) {
        let flow = self.transport_flows.conn(side, conn, peer);
        if msg.is_request() {
            if let Some((resp, reason, status)) = self.precheck(side, peer, &msg) {
                fx.out.push(Output::Event(CallEvent::Refused {
                    side,
                    peer,
                    method: msg.method().map(|m| m.to_string()).unwrap_or_default(),
                    reason,
                    status,
                }));
                if let Some(resp) = resp {
                    fx.out.push(Output::Send {
                        side,
                        target: Target::Conn(conn),
                        msg: resp,
                    });
                }
                return;
            }
        } else if check_response(&msg).is_err() {
            return;
        }
        self.layer.on_message(msg, flow, fx.now);
    }

    /// Stateless refusals before any transaction exists: unknown trunk (403), loops (482),
    /// Max-Forwards (483), unsupported scheme/extension/body (416/420/415/406). ACKs are
    /// dropped instead of answered.
    fn precheck(
        &mut self,
        side: Side,
        peer: SocketAddr,
        msg: &Message,
    ) -> Option<(Option<Message>, RefuseReason, u16)> {
        let is_ack = msg.method() == Some(&Method::Ack);
        let local = [self.cfg.ext.sip_addr.ip(), self.cfg.int.sip_addr.ip()];
        let policy = UaPolicy {
            supported: supported_tags(self.cfg.sip.prack_passthrough),
            local_addrs: &local,
            ..UaPolicy::default()
        };
        let (code, reason, err) = if side == Side::Ext && self.trunk_by_ip(peer.ip()).is_none() {
            (403, RefuseReason::UnknownTrunk, None)
        } else if msg.headers.vias().any(|v| {
            v.branch()
                .is_some_and(|b| b.starts_with(&self.branch_prefix))
        }) {
            (482, RefuseReason::Loop, None)
        } else if let Err(e) = check_request(msg, &policy) {
            let code = e.response().map_or(0, |(c, _)| c);
            let reason = if code == 483 {
                RefuseReason::TooManyHops
            } else {
                RefuseReason::Unsupported
            };
            (code, reason, Some(e))
        } else {
            return None;
        };
        if is_ack {
            return Some((None, reason, code));
        }
        let tag = self.new_tag();
        let resp = match err {
            Some(e) => e.error_response(&tag),
            None => Some(Message::response_to(msg, code, None, Some(&tag))),
        };
        Some((resp, reason, code))
    }

    fn on_invalid(
        &mut self,
        side: Side,
        conn: ConnId,
        peer: SocketAddr,
        error: &tollgate_sip::ParseError,
        fx: &mut Effects<'_>,
    ) {
        let tag = self.new_tag();
        let resp = error.error_response(&tag);
        let status = resp.as_ref().and_then(Message::status).unwrap_or(0);
        fx.out.push(Output::Event(CallEvent::Refused {
            side,
            peer,
            method: String::new(),
            reason: RefuseReason::BadRequest,
            status,
        }));
        if let Some(resp) = resp {
            fx.out.push(Output::Send {
                side,
                target: Target::Conn(conn),
                msg: resp,
            });
        }
    }

    // ----- transaction layer actions -------------------------------------------------------

    pub(crate) fn pump(&mut self, fx: &mut Effects<'_>) {
        while let Some(a) = self.layer.poll_action() {
            let tx = match &a {
                Action::Request { tx, .. }
                | Action::Response { tx, .. }
                | Action::Timeout { tx, .. }
                | Action::TransportError { tx }
                | Action::Terminated { tx } => Some(*tx),
                Action::Ack { tx, .. } => *tx,
                _ => None,
            };
            if let Some((call, _)) = tx.and_then(|t| self.calls.tx(t)) {
                self.touched.push(call);
            }
            match a {
                Action::Send { flow, msg, .. } => {
                    if let Some(info) = self.transport_flows.info(flow) {
                        fx.out.push(Output::Send {
                            side: info.side,
                            target: info.target,
                            msg,
                        });
                    }
                }
                Action::Request {
                    tx,
                    flow,
                    msg,
                    cancels,
                } => self.on_request(tx, flow, msg, cancels, fx),
                Action::Response { tx, msg } => self.on_response(tx, msg, fx),
                Action::Ack { tx, flow, msg } => self.on_ack(tx, flow, msg, fx),
                Action::Timeout { tx, .. } => self.on_tx_failure(tx, Failure::Timeout, fx),
                Action::TransportError { tx } => {
                    self.on_tx_failure(tx, Failure::Transport, fx);
                }
                Action::Terminated { tx } => self.on_terminated(tx, fx),
                Action::StrayResponse { .. } | Action::SetTimer { .. } => {}
            }
        }
        self.timers.rearm_tx(self.layer.next_deadline(), fx.out);
    }

    fn on_request(
        &mut self,
        tx: TxId,
        flow: TransportFlow,
        msg: Message,
        cancels: Option<TxId>,
        fx: &mut Effects<'_>,
    ) {
        let Some(info) = self.transport_flows.info(flow) else {
            return;
        };
        let Some(method) = msg.method().cloned() else {
            return;
        };
        let conn = match info.target {
            Target::Conn(c) => Some(c),
            Target::Addr { .. } => None,
        };
        let peer = info
            .peer
            .unwrap_or_else(|| SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0));
        if method == Method::Cancel {
            self.on_cancel(tx, cancels, fx);
            return;
        }
        let from = Origin {
            tx,
            side: info.side,
            peer,
        };
        if msg.to().and_then(|t| t.tag()).is_some() {
            self.in_dialog(Received { from, conn, msg }, fx);
            return;
        }
        match method {
            Method::Invite => self.new_call(Received { from, conn, msg }, fx),
            Method::Options => {
                self.reply(tx, 200, None, fx.now, |r| {
                    own_headers::set_allow(r);
                    own_headers::accept_sdp(r);
                    own_headers::set_supported(r, &[own_headers::TIMER]);
                });
            }
            Method::Bye | Method::Update | Method::Prack | Method::Info => {
                self.refuse_no_such_call(from, &method, fx);
            }
            _ => self.refuse(from, &method, 405, RefuseReason::MethodNotAllowed, fx),
        }
    }

    /// 481 Call/Transaction Does Not Exist: a request for a dialog or call Tollgate does not
    /// hold (counted as `no_such_call`).
    pub(crate) fn refuse_no_such_call(
        &mut self,
        from: Origin,
        method: &Method,
        fx: &mut Effects<'_>,
    ) {
        self.refuse(from, method, 481, RefuseReason::NoSuchCall, fx);
    }

    /// Answers `code` on a server transaction and counts the refusal.
    pub(crate) fn refuse(
        &mut self,
        from: Origin,
        method: &Method,
        code: u16,
        reason: RefuseReason,
        fx: &mut Effects<'_>,
    ) {
        let retry_after = self.cfg.sip.retry_after;
        self.reply(from.tx, code, None, fx.now, |r| match code {
            405 => own_headers::set_allow(r),
            503 => own_headers::retry_after(r, u64::from(retry_after)),
            _ => {}
        });
        fx.event(CallEvent::Refused {
            side: from.side,
            peer: from.peer,
            method: method.to_string(),
            reason,
            status: code,
        });
    }

    fn on_cancel(&mut self, tx: TxId, cancels: Option<TxId>, fx: &mut Effects<'_>) {
        let Some(target) = cancels else {
            self.reply(tx, 481, None, fx.now, |_| {});
            return;
        };
        // The CANCEL's To tag is the INVITE's (none for an initial INVITE): reuse the tag the
        // INVITE's responses carry, if any.
        let role = self.calls.tx(target);
        // Its Reason (RFC 3326, e.g. a Q.850 cause) goes on to the CANCEL toward the callee.
        let cancel_reason = self
            .layer
            .request(tx)
            .and_then(|r| r.headers.get_value(&HeaderName::Reason))
            .map(str::to_owned);
        let tag = role.and_then(|(call, _)| Some(self.calls.get(&call)?.caller_tag().to_owned()));
        self.reply(tx, 200, tag.as_deref(), fx.now, |_| {});
        match role {
            Some((call, TxRole::CallerInvite)) => {
                let in_setup = self.calls.get(&call).is_some_and(|c| c.in_setup());
                if in_setup {
                    self.end_call(call, EndCause::Cancelled, 487, cancel_reason.as_deref(), fx);
                }
            }
            Some((_, TxRole::RelayServer)) => {
                // A re-INVITE relayed to the other leg: cancel it there; its 487 comes back.
                let client = self
                    .calls
                    .values()
                    .find_map(|c| c.relayed_client_tx(target));
                if let Some(ctx) = client {
                    self.send_cancel(ctx, cancel_reason.as_deref(), fx.now);
                }
            }
            _ => {}
        }
    }

    fn on_response(&mut self, tx: TxId, msg: Message, fx: &mut Effects<'_>) {
        if self.trunks.keepalive_response(tx, &msg, fx.out) {
            return;
        }
        if let Some((call, role)) = self.calls.tx(tx) {
            match role {
                TxRole::CalleeInvite => self.callee_response(call, tx, msg, fx),
                TxRole::RelayClient => self.relay_response(call, tx, msg, fx),
                TxRole::Refresh(side) => self.refresh_response(call, side, tx, &msg, fx),
                TxRole::CallerInvite | TxRole::RelayServer => {}
            }
            return;
        }
        if self.orphans.contains(tx) {
            self.orphan_response(tx, &msg, fx);
        }
    }

    fn on_tx_failure(&mut self, tx: TxId, why: Failure, fx: &mut Effects<'_>) {
        if self.trunks.keepalive_failed(tx, fx.out) {
            return;
        }
        let Some((call, role)) = self.calls.tx(tx) else {
            return;
        };
        match role {
            TxRole::CalleeInvite => self.callee_failure(call, tx, why, fx),
            TxRole::RelayClient => self.relay_failure(call, tx, fx),
            TxRole::Refresh(side) => self.refresh_failed(call, side, tx, 408, fx),
            TxRole::CallerInvite => {
                let in_setup = self.calls.get(&call).is_some_and(|c| c.in_setup());
                if in_setup && why == Failure::Transport {
                    self.end_call(call, EndCause::TransportError, 503, None, fx);
                }
            }
            TxRole::RelayServer => {}
        }
    }

    fn on_terminated(&mut self, tx: TxId, fx: &mut Effects<'_>) {
        if self.trunks.keepalive_terminated(tx) {
            return;
        }
        if let Some(guard) = self.orphans.remove(tx) {
            self.timers.cancel(guard, fx.out);
            return;
        }
        let Some((call, role)) = self.calls.unregister_tx(tx) else {
            return;
        };
        let no_ack = self
            .calls
            .get_mut(&call)
            .is_some_and(|c| c.tx_terminated(tx, role));
        if no_ack {
            self.end_call(call, EndCause::NoAck, 200, None, fx);
        }
    }

    /// Marks call `id` as reached by this input: its record is checked for a new stable state
    /// at the input's end.
    pub(crate) fn touch(&mut self, id: CallId) {
        self.touched.push(id);
    }

    /// Draining: new calls are refused.
    pub(crate) fn draining(&self) -> bool {
        self.draining
    }

    /// The prefix of every branch Tollgate generates (loop detection).
    pub(crate) fn branch_prefix(&self) -> &str {
        &self.branch_prefix
    }

    /// Registers a transaction for a call.
    pub(crate) fn register_tx(&mut self, call: CallId, tx: TxId, role: TxRole) {
        self.calls.register_tx(call, tx, role);
    }

    // ----- reload ------------------------------------------------------------------------

    fn reload(&mut self, cfg: Config, fx: &mut Effects<'_>) {
        self.trunks.reload(&cfg, &mut self.timers, fx.out);
        self.pools.ext.reconfigure(cfg.media.ext_ports.clone());
        self.pools.int.reconfigure(cfg.media.int_ports.clone());
        self.pools.ext_ip = cfg.ext.media_ip;
        self.pools.int_ip = cfg.int.media_ip;
        self.rewrite = rewrite_config(&cfg);
        self.admission.reconfigure(&cfg);
        self.cfg = Arc::new(cfg);
        self.arm_keepalives(fx);
    }
}

/// The option tags Tollgate supports in Require (RFC 3261 §8.2.2.3): `timer` always, `100rel`
/// when reliable provisionals pass through. Shared with `tollgate sip lint`, so that it reports
/// the 420s the daemon sends.
pub fn supported_tags(prack_passthrough: bool) -> &'static [&'static str] {
    if prack_passthrough {
        &["timer", "100rel"]
    } else {
        &["timer"]
    }
}
