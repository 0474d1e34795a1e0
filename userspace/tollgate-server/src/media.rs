//! The media thread: owns the [`Dataplane`], applies the B2BUA's media actions, watches for
//! inactive calls, keeps per-call totals for CDRs and refreshes media metrics.
//!
//! It is an OS thread, not a tokio task: data plane calls may block briefly (netlink next-hop
//! resolution), and it must stay in the process's network namespace.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tollgate_dataplane::{Dataplane, DataplaneStats};
use tollgate_relay::{DropReason, MediaFlowSpec, Side, SideSnapshot, SrtpResume};

use crate::metrics::{Metrics, labels};

/// What the control plane asks of the media thread.
#[derive(Debug)]
pub enum MediaCmd {
    /// Install or update a flow of a call.
    Install {
        /// Call.
        call: u64,
        /// Flow.
        spec: Box<MediaFlowSpec>,
    },
    /// Remove a flow of a call (its counters are kept for the call's CDR).
    Remove {
        /// Call.
        call: u64,
        /// Flow id.
        flow: u64,
    },
    /// Hand over a finished call's media totals (for its CDR).
    TakeStats {
        /// Call.
        call: u64,
        /// Where to send them.
        reply: tokio::sync::oneshot::Sender<CallMedia>,
    },
    /// The current media totals of calls in progress (removed flows plus live counters).
    PeekStats {
        /// Calls.
        calls: Vec<u64>,
        /// Where to send them.
        reply: tokio::sync::oneshot::Sender<Vec<(u64, CallMedia)>>,
    },
    /// Answers once every command sent before it is carried out: flows installed and in effect
    /// in every data plane worker ([`Dataplane::sync`], at most `SYNC_TIMEOUT`).
    Sync {
        /// Where to answer.
        reply: tokio::sync::oneshot::Sender<()>,
    },
    /// Stop.
    Shutdown,
}

/// Longest a [`MediaCmd::Sync`] waits for the data plane workers to acknowledge.
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);

/// Media totals of one call, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallMedia {
    /// Packets from the gateway side (`[0]`) and from the internal side (`[1]`).
    pub sides: [SideSnapshot; 2],
    /// Whether the data plane refused a flow of this call.
    pub install_failed: bool,
}

impl CallMedia {
    /// As CDR fields.
    pub fn to_json(&self) -> serde_json::Value {
        let side = |s: &SideSnapshot| {
            let drops: serde_json::Map<String, serde_json::Value> = DropReason::ALL
                .iter()
                .filter(|r| s.drop(**r) > 0)
                .map(|r| (r.as_str().to_owned(), s.drop(*r).into()))
                .collect();
            serde_json::json!({
                "packets": s.packets,
                "bytes": s.bytes,
                "rtcp_packets": s.rtcp,
                "dropped": s.dropped(),
                "drops": drops,
                "lost": s.lost,
                "jitter_ms": (s.jitter_ts as f64) / 8.0,
            })
        };
        serde_json::json!({
            "ext_to_int": side(&self.sides[0]),
            "int_to_ext": side(&self.sides[1]),
            "srtp_auth_failures": self.sides[1].drop(DropReason::AuthFailed),
        })
    }
}

/// Where a flow's SRTP streams were last reported to the control plane, by arrival side.
type Reported = [Option<SrtpResume>; 2];

/// An SRTP stream's new position, for the call's stored record: (call, flow, arrival side,
/// position).
pub type SrtpReport = (u64, u64, Side, SrtpResume);

/// SRTCP indices advance with every RTCP packet: a new position is reported when the index
/// moved this far (a restored stream continues this far above the stored index).
pub const SRTCP_REPORT_STEP: u32 = 64;

fn worth_reporting(old: Option<SrtpResume>, new: SrtpResume) -> bool {
    match old {
        None => true,
        Some(o) => {
            o.ssrc != new.ssrc
                || o.roc != new.roc
                || new.srtcp_index.wrapping_sub(o.srtcp_index) >= SRTCP_REPORT_STEP
        }
    }
}

struct CallState {
    flows: Vec<u64>,
    /// Per flow, the SRTP positions last reported.
    reported: Vec<(u64, Reported)>,
    totals: CallMedia,
    since: Instant,
    reported_inactive: bool,
}

/// Handle for the control plane.
#[derive(Debug, Clone)]
pub struct MediaHandle {
    tx: Sender<MediaCmd>,
}

impl MediaHandle {
    /// Sends a command (the media thread never blocks the caller).
    pub fn send(&self, cmd: MediaCmd) {
        let _ = self.tx.send(cmd);
    }
}

/// Starts the media thread around `dp`. `inactive` receives call ids whose media stopped for
/// `timeout` (`None`: off).
pub fn spawn(
    dp: Dataplane,
    metrics: Arc<Metrics>,
    timeout: Option<Duration>,
    inactive: tokio::sync::mpsc::UnboundedSender<u64>,
    positions: tokio::sync::mpsc::UnboundedSender<SrtpReport>,
) -> std::io::Result<(MediaHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let t = std::thread::Builder::new()
        .name("tg-media".into())
        .spawn(move || run(dp, rx, metrics, timeout, inactive, positions))?;
    Ok((MediaHandle { tx }, t))
}

fn run(
    mut dp: Dataplane,
    rx: Receiver<MediaCmd>,
    metrics: Arc<Metrics>,
    timeout: Option<Duration>,
    inactive: tokio::sync::mpsc::UnboundedSender<u64>,
    positions: tokio::sync::mpsc::UnboundedSender<SrtpReport>,
) {
    let mut calls: HashMap<u64, CallState> = HashMap::new();
    let mut finished: HashMap<u64, CallMedia> = HashMap::new();
    let mut totals = Totals::default();
    let mut last_tick = Instant::now();
    let mut last_watch = Instant::now();
    let mut events = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(MediaCmd::Install { call, spec }) => {
                let id = spec.id;
                let c = calls.entry(call).or_insert_with(|| CallState {
                    flows: Vec::new(),
                    totals: CallMedia::default(),
                    since: Instant::now(),
                    reported_inactive: false,
                    reported: Vec::new(),
                });
                match dp.install(*spec) {
                    Ok(()) => {
                        if !c.flows.contains(&id) {
                            c.flows.push(id);
                        }
                    }
                    Err(e) => {
                        tracing::error!(call, flow = id, error = %e, "media flow refused by the data plane");
                        c.totals.install_failed = true;
                    }
                }
            }
            Ok(MediaCmd::Remove { call, flow }) => {
                if let Some(s) = dp.counters(flow) {
                    totals.add_removed(&s);
                    if let Some(c) = calls.get_mut(&call) {
                        for (t, x) in c.totals.sides.iter_mut().zip(s.iter()) {
                            t.merge(x);
                        }
                    }
                }
                let _ = dp.remove(flow);
                if let Some(c) = calls.get_mut(&call) {
                    c.flows.retain(|f| *f != flow);
                    c.reported.retain(|(f, _)| *f != flow);
                    if c.flows.is_empty()
                        && let Some(c) = calls.remove(&call)
                    {
                        finished.insert(call, c.totals);
                    }
                }
            }
            Ok(MediaCmd::TakeStats { call, reply }) => {
                let m = finished
                    .remove(&call)
                    .or_else(|| calls.remove(&call).map(|c| c.totals));
                let _ = reply.send(m.unwrap_or_default());
            }
            Ok(MediaCmd::PeekStats { calls: ids, reply }) => {
                let stats = ids
                    .into_iter()
                    .filter_map(|id| {
                        let c = calls.get(&id)?;
                        let mut m = c.totals;
                        for f in &c.flows {
                            if let Some(s) = dp.counters(*f) {
                                for (t, x) in m.sides.iter_mut().zip(s.iter()) {
                                    t.merge(x);
                                }
                            }
                        }
                        Some((id, m))
                    })
                    .collect();
                let _ = reply.send(stats);
            }
            Ok(MediaCmd::Sync { reply }) => {
                // The flows are in effect in every worker once they acknowledge.
                if let Err(e) = dp.sync(SYNC_TIMEOUT) {
                    tracing::warn!(error = %e, "the data plane did not acknowledge its commands");
                }
                let _ = reply.send(());
            }
            Ok(MediaCmd::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        // Neighbour and route changes are taken up within 100 ms (checked at most every 50 ms,
        // however busy the command stream); the once-a-second refresh below is the backstop.
        if last_watch.elapsed() >= Duration::from_millis(50) {
            last_watch = Instant::now();
            if dp.watch_next_hops() {
                tracing::debug!("neighbour or route change: next hops resolved again");
            }
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            let unresolved = dp.refresh_next_hops();
            events.clear();
            dp.drain_events(&mut events);
            for e in &events {
                if e.learned {
                    tracing::info!(flow = e.flow_id, side = e.side.as_str(), source = %e.source, "media source learned");
                }
            }
            let now_ns = tollgate_dataplane::sys::monotonic_ns();
            let mut live = [SideSnapshot::default(); 2];
            for (call, c) in calls.iter_mut() {
                let mut last_seen = 0u64;
                for f in &c.flows {
                    if let Some(s) = dp.counters(*f) {
                        for (l, x) in live.iter_mut().zip(s.iter()) {
                            l.merge(x);
                        }
                        last_seen = last_seen.max(s[0].last_seen_ns).max(s[1].last_seen_ns);
                        report_positions(*call, *f, &s, &mut c.reported, &positions);
                    }
                }
                if let Some(t) = timeout {
                    let idle = if last_seen == 0 {
                        c.since.elapsed()
                    } else {
                        Duration::from_nanos(now_ns.saturating_sub(last_seen))
                    };
                    if idle >= t && !c.reported_inactive && !c.flows.is_empty() {
                        c.reported_inactive = true;
                        let _ = inactive.send(*call);
                    }
                }
            }
            // Drop finished calls nobody asked about (e.g. a CDR-less path) after a while.
            if finished.len() > 100_000 {
                finished.clear();
            }
            totals.publish(&metrics, &live, &dp.stats(), unresolved);
        }
    }
    dp.shutdown();
}

/// Reports the SRTP positions of flow `flow` that moved (a new SSRC, a rollover, SRTCP
/// [`SRTCP_REPORT_STEP`] further) since the last report.
fn report_positions(
    call: u64,
    flow: u64,
    s: &[SideSnapshot; 2],
    reported: &mut Vec<(u64, Reported)>,
    positions: &tokio::sync::mpsc::UnboundedSender<SrtpReport>,
) {
    let i = match reported.iter().position(|(f, _)| *f == flow) {
        Some(i) => i,
        None => {
            reported.push((flow, [None, None]));
            reported.len() - 1
        }
    };
    let Some((_, last)) = reported.get_mut(i) else {
        return;
    };
    for (side, snap) in [Side::Ext, Side::Int].into_iter().zip(s.iter()) {
        let Some(pos) = snap.srtp_resume() else {
            continue;
        };
        let slot = &mut last[side.index()];
        if worth_reporting(*slot, pos) {
            *slot = Some(pos);
            let _ = positions.send((call, flow, side, pos));
        }
    }
}

/// Cumulative media totals for metrics: removed flows plus live ones.
#[derive(Default)]
struct Totals {
    removed: [SideSnapshot; 2],
    published: [SideSnapshot; 2],
    xdp_published: Vec<[u64; 2]>,
    /// Worker drops by reason, summed over workers, as last published.
    worker_drops: [u64; DropReason::COUNT],
    busy: Vec<(u64, Instant)>,
}

impl Totals {
    fn add_removed(&mut self, s: &[SideSnapshot; 2]) {
        for (r, x) in self.removed.iter_mut().zip(s.iter()) {
            r.merge(x);
        }
    }

    fn publish(
        &mut self,
        m: &Metrics,
        live: &[SideSnapshot; 2],
        stats: &DataplaneStats,
        unresolved: usize,
    ) {
        for (i, dir) in ["ext_to_int", "int_to_ext"].iter().enumerate() {
            let mut now = self.removed[i];
            now.merge(&live[i]);
            let prev = &self.published[i];
            let l = labels(&[("direction", dir)]);
            m.media_packets
                .get_or_create(&l)
                .inc_by(now.packets.saturating_sub(prev.packets));
            m.media_bytes
                .get_or_create(&l)
                .inc_by(now.bytes.saturating_sub(prev.bytes));
            let side = if i == 0 { "ext" } else { "int" };
            for r in DropReason::ALL {
                let d = now.drop(r).saturating_sub(prev.drop(r));
                if d > 0 {
                    m.media_drops
                        .get_or_create(&labels(&[("side", side), ("reason", r.as_str())]))
                        .inc_by(d);
                    if r == DropReason::AuthFailed {
                        m.srtp_auth_failures.inc_by(d);
                    }
                }
            }
            self.published[i] = now;
        }
        if let Some(x) = &stats.xdp {
            if self.xdp_published.len() != x[0].0.len() {
                self.xdp_published = vec![[0, 0]; x[0].0.len()];
            }
            for (nic_i, nic) in ["ext", "int"].iter().enumerate() {
                for (slot, (name, v)) in x[nic_i].named().enumerate() {
                    let prev = self.xdp_published[slot][nic_i];
                    let delta = v.saturating_sub(prev);
                    m.xdp
                        .get_or_create(&labels(&[("nic", nic), ("counter", name)]))
                        .inc_by(delta);
                    if let Some((reason, _)) = tollgate_dataplane::boundary::DROP_REASONS
                        .iter()
                        .find(|(_, s)| *s as usize == slot)
                    {
                        m.boundary_drops
                            .get_or_create(&labels(&[("side", nic), ("reason", reason)]))
                            .inc_by(delta);
                    }
                    self.xdp_published[slot][nic_i] = v;
                }
            }
        }
        let mut drops = [0u64; DropReason::COUNT];
        for w in &stats.workers {
            for (d, x) in drops.iter_mut().zip(w.drops.iter()) {
                *d += x;
            }
        }
        for r in DropReason::ALL {
            let (now, prev) = (drops[r as usize], self.worker_drops[r as usize]);
            if now > prev {
                m.dataplane_drops
                    .get_or_create(&labels(&[("reason", r.as_str())]))
                    .inc_by(now - prev);
            }
        }
        self.worker_drops = drops;
        let now = Instant::now();
        if self.busy.len() != stats.workers.len() {
            self.busy = vec![(0, now); stats.workers.len()];
        }
        for (i, w) in stats.workers.iter().enumerate() {
            let (prev_busy, prev_t) = self.busy[i];
            let wall = now.duration_since(prev_t).as_nanos().max(1) as f64;
            let ratio = (w.busy_ns.saturating_sub(prev_busy) as f64 / wall).min(1.0);
            m.worker_busy_ratio
                .get_or_create(&labels(&[("worker", &i.to_string())]))
                .set(ratio);
            self.busy[i] = (w.busy_ns, now);
        }
        m.media_flows.set(stats.flows as i64);
        m.media_unresolved.set(unresolved as i64);
    }
}
