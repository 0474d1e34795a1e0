//! Call scenarios between a simulated gateway and a simulated internal endpoint, each running
//! in its own thread (and network namespace, when given one) with its own tokio runtime.
//!
//! Call `i` dials the number `0207946iiiiii` (gateway side, national format) or
//! `+44207946iiiiii` (internal side, E.164); both parties derive `i` from the number they see, so
//! each knows whether it hangs up (even calls: the caller, odd calls: the callee) without any
//! side channel, and each checks the number arrived normalised as configured.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::certs::LabPki;
use crate::media::MediaReport;
use crate::ua::{Call, Endpoint, EndpointConfig, UaError, UaTls};

/// Which way the calls go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// PSTN to enterprise: the gateway calls.
    Inbound,
    /// Enterprise to PSTN: the internal endpoint calls.
    Outbound,
}

/// Where everything is.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The gateway's SIP address (trunk address in Tollgate's config).
    pub gw_sip: SocketAddr,
    /// The gateway speaks SIP over TLS (with its certificate `pki.gateway`), not plain TCP.
    pub gw_tls: bool,
    /// The internal endpoint's SIP/TLS address (Tollgate's next hop).
    pub int_sip: SocketAddr,
    /// Tollgate's gateway-side SIP listener (SIP/TLS when `gw_tls`).
    pub tollgate_ext: SocketAddr,
    /// Tollgate's internal SIP/TLS listener.
    pub tollgate_int: SocketAddr,
    /// The TLS name in Tollgate's certificate.
    pub tollgate_name: String,
    /// Network namespaces of the gateway and the internal endpoint (None: this namespace).
    pub gw_ns: Option<String>,
    /// See `gw_ns`.
    pub int_ns: Option<String>,
    /// Certificates.
    pub pki: LabPki,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Direction.
    pub direction: Direction,
    /// Number of calls.
    pub calls: usize,
    /// Calls set up at the same time.
    pub concurrency: usize,
    /// Media time per call.
    pub talk: Duration,
    /// Ring time of the callee.
    pub ring: Duration,
    /// Whether to send media (false for signalling-only load).
    pub media: bool,
    /// Index of the first call (to keep numbers distinct across plans).
    pub first_index: usize,
    /// Offered load: start calls at this rate (calls/s), or as fast as `concurrency` allows.
    pub rate: Option<f64>,
}

/// One call's outcome.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// Call index.
    pub index: usize,
    /// Caller-side setup time (INVITE to 200).
    pub setup: Option<Duration>,
    /// Caller's media report.
    pub caller: MediaReport,
    /// Callee's media report.
    pub callee: MediaReport,
    /// The number the callee saw (Request-URI user).
    pub called_seen: String,
    /// Which side hung up.
    pub hung_up_by_caller: bool,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// Whether media was sent and checked.
    pub media_checked: bool,
}

impl CallOutcome {
    /// Signalling worked and, when media was sent, audio arrived intact both ways.
    pub fn ok(&self) -> bool {
        self.error.is_none() && (!self.media_checked || (self.caller.ok() && self.callee.ok()))
    }
}

/// All outcomes of a plan.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Per call, by index.
    pub calls: Vec<CallOutcome>,
    /// Wall time of the plan.
    pub elapsed: Duration,
}

impl Report {
    /// Calls that worked.
    pub fn ok(&self) -> usize {
        self.calls.iter().filter(|c| c.ok()).count()
    }

    /// Setup time percentile (0..=100) in ms.
    pub fn setup_percentile(&self, p: f64) -> Option<f64> {
        let mut v: Vec<f64> = self
            .calls
            .iter()
            .filter_map(|c| c.setup.map(|d| d.as_secs_f64() * 1000.0))
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v.get(i).copied()
    }

    /// Total packets (sent, received, lost) over both directions.
    pub fn packets(&self) -> (u64, u64, u64) {
        self.calls.iter().fold((0, 0, 0), |(s, r, l), c| {
            (
                s + c.caller.sent + c.callee.sent,
                r + c.caller.received + c.callee.received,
                l + c.caller.lost + c.callee.lost,
            )
        })
    }
}

/// Digits of the call index carried at the end of every number (up to a million calls).
const INDEX_DIGITS: usize = 6;

/// The national number dialled for call `i` (gateway side).
pub fn national(i: usize) -> String {
    format!("0207946{i:06}")
}

/// The E.164 number of call `i` (internal side).
pub fn e164(i: usize) -> String {
    format!("+44207946{i:06}")
}

fn index_of(number: &str) -> Option<usize> {
    number
        .get(number.len().checked_sub(INDEX_DIGITS)?..)?
        .parse()
        .ok()
}

/// Counts a finished call when dropped (whatever the outcome).
struct Count(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Count {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn finish(call: Call, hang_up: bool, talk: Duration) -> Result<(MediaReport, bool), UaError> {
    if hang_up {
        tokio::time::sleep(talk).await;
        call.hangup().await.map(|r| (r.media, true))
    } else {
        call.wait_bye(talk + Duration::from_secs(15))
            .await
            .map(|r| (r.media, false))
    }
}

/// One party's result for one call: setup, media, who hung up, the number it saw.
type PartyOutcome = (usize, Result<(Duration, MediaReport, String), String>);

enum Cmd {
    /// Place the calls of each plan (to its target, with its TLS name), all at once.
    Call(
        Vec<(Arc<Plan>, SocketAddr, String)>,
        Arc<std::sync::atomic::AtomicUsize>,
        tokio::sync::oneshot::Sender<Vec<PartyOutcome>>,
    ),
    /// Take the plan's calls as callee, until the caller side says it is done (calls the relay
    /// refused never arrive, so the callee must not wait for them).
    Answer(
        Arc<Plan>,
        tokio::sync::oneshot::Receiver<()>,
        tokio::sync::oneshot::Sender<Vec<PartyOutcome>>,
    ),
}

struct PartyHandle {
    tx: tokio::sync::mpsc::UnboundedSender<Cmd>,
    thread: std::thread::JoinHandle<Result<(), String>>,
}

/// Places one plan's calls to `target`; one outcome per call placed.
async fn place_calls(
    ep: Endpoint,
    plan: Arc<Plan>,
    target: SocketAddr,
    server_name: String,
    progress: Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<PartyOutcome> {
    let sem = Arc::new(tokio::sync::Semaphore::new(plan.concurrency.max(1)));
    let mut tasks = Vec::new();
    let t0 = tokio::time::Instant::now();
    for n in 0..plan.calls {
        let i = plan.first_index + n;
        if let Some(rate) = plan.rate.filter(|r| *r > 0.0) {
            tokio::time::sleep_until(t0 + Duration::from_secs_f64(n as f64 / rate)).await;
        }
        let Ok(permit) = Arc::clone(&sem).acquire_owned().await else {
            break;
        };
        let ep = ep.clone();
        let (to, from) = match plan.direction {
            Direction::Inbound => (national(i), "01632960001".to_owned()),
            Direction::Outbound => (e164(i), "+441632960002".to_owned()),
        };
        let talk = plan.talk;
        let server_name = server_name.clone();
        let progress = Arc::clone(&progress);
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let _count = Count(progress);
            let r = match ep
                .call(target, &server_name, &from, &to, Duration::from_secs(30))
                .await
            {
                Ok(call) => {
                    let setup = call.setup;
                    finish(call, i.is_multiple_of(2), talk)
                        .await
                        .map(|(m, _)| (setup, m, to))
                }
                Err(e) => Err(e),
            };
            (i, r.map_err(|e| e.to_string()))
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        if let Ok(o) = t.await {
            out.push(o);
        }
    }
    out
}

/// Runs the futures concurrently (as tasks on this runtime) and returns their outputs in order.
async fn futures_join_all<F>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        if let Ok(o) = h.await {
            out.push(o);
        }
    }
    out
}

async fn party_loop(
    cfg: EndpointConfig,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Cmd>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let ep = match Endpoint::start(cfg).await {
        Ok(e) => e,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Cmd::Call(jobs, progress, done) => {
                let runs = jobs.into_iter().map(|(plan, target, server_name)| {
                    place_calls(ep.clone(), plan, target, server_name, Arc::clone(&progress))
                });
                let out = futures_join_all(runs).await;
                let _ = done.send(out.into_iter().flatten().collect());
            }
            Cmd::Answer(plan, mut caller_done, done) => {
                let mut tasks = Vec::new();
                let wait = plan.talk
                    + Duration::from_secs(20 + (plan.calls / plan.concurrency.max(1)) as u64 * 3);
                // Once the caller is done, only calls already on their way are taken.
                let settle = Duration::from_millis(500);
                let mut caller_finished = false;
                for _ in 0..plan.calls {
                    let next = if caller_finished {
                        ep.next_call(settle).await
                    } else {
                        tokio::select! {
                            c = ep.next_call(wait) => c,
                            _ = &mut caller_done => {
                                caller_finished = true;
                                ep.next_call(settle).await
                            }
                        }
                    };
                    let Some(call) = next else {
                        break;
                    };
                    let talk = plan.talk;
                    tasks.push(tokio::spawn(async move {
                        let called = call.called_user.clone();
                        let i = index_of(&called).unwrap_or(usize::MAX);
                        let setup = call.setup;
                        let r = finish(call, i % 2 == 1, talk).await;
                        (
                            i,
                            r.map(|(m, _)| (setup, m, called))
                                .map_err(|e| e.to_string()),
                        )
                    }));
                }
                let mut out = Vec::new();
                for t in tasks {
                    if let Ok(o) = t.await {
                        out.push(o);
                    }
                }
                let _ = done.send(out);
            }
        }
    }
}

fn spawn_party(ns: Option<String>, cfg: EndpointConfig) -> Result<PartyHandle, String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        if let Some(ns) = &ns {
            let path = format!("/run/netns/{ns}");
            let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
            // SAFETY: setns on a valid fd, for this (new) thread only.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(format!("setns {ns}: {}", std::io::Error::last_os_error()));
            }
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(party_loop(cfg, rx, ready_tx));
        Ok(())
    });
    match ready_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => Ok(PartyHandle { tx, thread }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("endpoint did not start".into()),
    }
}

/// The simulated gateway and internal endpoint, running until dropped.
pub struct Parties {
    gw: Option<PartyHandle>,
    int: Option<PartyHandle>,
    topo: Topology,
    done: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for Parties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parties").finish_non_exhaustive()
    }
}

impl Parties {
    /// Starts both endpoints (ring time `ring`, media on or off). They answer OPTIONS and calls
    /// from then on.
    pub fn start(topo: &Topology, ring: Duration, media: bool) -> Result<Parties, String> {
        let int_tls = UaTls::from_pem(
            &topo.pki.internal.cert,
            &topo.pki.internal.key,
            &topo.pki.ca,
        )
        .map_err(|e| format!("internal endpoint TLS: {e}"))?;
        let gw_tls = if topo.gw_tls {
            Some(
                UaTls::from_pem(&topo.pki.gateway.cert, &topo.pki.gateway.key, &topo.pki.ca)
                    .map_err(|e| format!("gateway TLS: {e}"))?,
            )
        } else {
            None
        };
        let cfg = |name: &str, sip: SocketAddr, tls: Option<UaTls>, srtp: bool| EndpointConfig {
            name: name.to_owned(),
            sip_listen: sip,
            tls,
            media_ip: sip.ip(),
            media_port_base: 40000,
            srtp,
            ring,
            media,
            peer_tls_name: topo.tollgate_name.clone(),
        };
        let gw = spawn_party(topo.gw_ns.clone(), cfg("gw", topo.gw_sip, gw_tls, false))
            .map_err(|e| format!("gateway: {e}"))?;
        let int = spawn_party(
            topo.int_ns.clone(),
            cfg("int", topo.int_sip, Some(int_tls), true),
        )
        .map_err(|e| format!("internal endpoint: {e}"))?;
        Ok(Parties {
            gw: Some(gw),
            int: Some(int),
            topo: topo.clone(),
            done: Arc::default(),
        })
    }

    /// Calls finished by callers so far (for progress displays).
    pub fn progress(&self) -> Arc<std::sync::atomic::AtomicUsize> {
        Arc::clone(&self.done)
    }

    /// Runs a plan; returns one outcome per call.
    pub fn run(&self, plan: &Plan) -> Result<Report, String> {
        self.run_via(plan, self.topo.tollgate_ext, self.topo.tollgate_int)
    }

    /// Runs a plan through another relay (another service's addresses: its gateway-side and
    /// internal SIP listeners) than the topology's.
    pub fn run_via(
        &self,
        plan: &Plan,
        tollgate_ext: SocketAddr,
        tollgate_int: SocketAddr,
    ) -> Result<Report, String> {
        self.run_many(&[(plan.clone(), tollgate_ext, tollgate_int)])
    }

    /// Runs several plans at once, each through its own relay addresses (gateway-side,
    /// internal); returns one outcome per call of every plan, by index. The plans go the same
    /// way (one party calls, the other answers) and their call indices must not overlap
    /// (`first_index`).
    pub fn run_many(&self, plans: &[(Plan, SocketAddr, SocketAddr)]) -> Result<Report, String> {
        let started = Instant::now();
        let (Some(gw), Some(int)) = (&self.gw, &self.int) else {
            return Err("parties stopped".into());
        };
        let Some((first, _, _)) = plans.first() else {
            return Ok(Report::default());
        };
        let direction = first.direction;
        if plans.iter().any(|(p, _, _)| p.direction != direction) {
            return Err("run_many: the plans must go the same way".into());
        }
        let mut ranges: Vec<(usize, usize)> = plans
            .iter()
            .map(|(p, _, _)| (p.first_index, p.first_index + p.calls))
            .collect();
        ranges.sort_unstable();
        if ranges.windows(2).any(|w| w[0].1 > w[1].0) {
            return Err("run_many: the plans' call indices overlap".into());
        }
        let (caller, callee) = match direction {
            Direction::Inbound => (gw, int),
            Direction::Outbound => (int, gw),
        };
        let jobs: Vec<(Arc<Plan>, SocketAddr, String)> = plans
            .iter()
            .map(|(p, ext, int)| match direction {
                Direction::Inbound => (Arc::new(p.clone()), *ext, ext.ip().to_string()),
                Direction::Outbound => (Arc::new(p.clone()), *int, self.topo.tollgate_name.clone()),
            })
            .collect();
        // The callee takes every plan's calls as one plan.
        let plan = Plan {
            calls: plans.iter().map(|(p, _, _)| p.calls).sum(),
            concurrency: plans.iter().map(|(p, _, _)| p.concurrency.max(1)).sum(),
            talk: plans
                .iter()
                .map(|(p, _, _)| p.talk)
                .max()
                .unwrap_or_default(),
            media: plans.iter().any(|(p, _, _)| p.media),
            ..first.clone()
        };
        let plan = &plan;
        let plan_a = Arc::new(plan.clone());
        let (ctx, crx) = tokio::sync::oneshot::channel();
        let (atx, arx) = tokio::sync::oneshot::channel();
        let (caller_done_tx, caller_done_rx) = tokio::sync::oneshot::channel();
        callee
            .tx
            .send(Cmd::Answer(plan_a, caller_done_rx, atx))
            .map_err(|_| "callee gone")?;
        caller
            .tx
            .send(Cmd::Call(jobs, Arc::clone(&self.done), ctx))
            .map_err(|_| "caller gone")?;
        let caller_out = crx.blocking_recv().map_err(|_| "caller failed")?;
        let _ = caller_done_tx.send(());
        let callee_out = arx.blocking_recv().map_err(|_| "callee failed")?;
        let mut calls = Vec::new();
        for (i, r) in caller_out {
            let peer = callee_out
                .iter()
                .find(|(j, _)| *j == i)
                .map(|(_, r)| r.clone());
            let mut o = CallOutcome {
                index: i,
                setup: None,
                caller: MediaReport::default(),
                callee: MediaReport::default(),
                called_seen: String::new(),
                hung_up_by_caller: i % 2 == 0,
                error: None,
                media_checked: plan.media,
            };
            match r {
                Ok((setup, m, _)) => {
                    o.setup = Some(setup);
                    o.caller = m;
                }
                Err(e) => o.error = Some(format!("caller: {e}")),
            }
            match peer {
                Some(Ok((_, m, called))) => {
                    o.callee = m;
                    o.called_seen = called;
                }
                Some(Err(e)) => o.error = o.error.or(Some(format!("callee: {e}"))),
                None => o.error = o.error.or(Some("callee never saw the call".into())),
            }
            calls.push(o);
        }
        calls.sort_by_key(|c| c.index);
        Ok(Report {
            calls,
            elapsed: started.elapsed(),
        })
    }
}

impl Drop for Parties {
    fn drop(&mut self) {
        for p in [self.gw.take(), self.int.take()].into_iter().flatten() {
            drop(p.tx);
            let _ = p.thread.join();
        }
    }
}
