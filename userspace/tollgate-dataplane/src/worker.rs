//! What every worker shares with the control plane: the control messages it receives, the
//! events it emits, its statistics, and how it waits when idle.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;
use tollgate_relay::frame::Mac;
use tollgate_relay::{
    DropReason, FlowCounters, FlowCrypto, FlowEvent, MediaFlowSpec, MediaFlowTable, Side,
};

use crate::sys::Waker;

/// A message from the control plane to one worker. Allocation and SRTP key schedules happen
/// on the control side: the worker only links what it gets into its table.
#[derive(Debug)]
pub enum Control {
    /// Install or update a flow; `sockets` carries the bound UDP sockets on the socket path.
    Install {
        /// What to relay.
        spec: Box<MediaFlowSpec>,
        /// Its transforms, SRTP contexts built for this worker ([`FlowCrypto::build`]).
        crypto: FlowCrypto,
        /// Where this worker counts it.
        counters: Arc<FlowCounters>,
        /// Socket path: the flow's bound sockets, by local address.
        sockets: Vec<(SocketAddr, OwnedFd)>,
    },
    /// Remove a flow.
    Remove(u64),
    /// A next hop was resolved (or lost).
    NextHop {
        /// Flow id.
        flow: u64,
        /// Which leg.
        side: Side,
        /// The MAC, or `None` if unresolved.
        mac: Option<Mac>,
    },
    /// Nothing to apply: acknowledged like any message, so that once it is, every packet the
    /// worker handled before is counted ([`crate::Dataplane::sync`]).
    Barrier,
}

/// Events queued by workers for the control plane (bounded; full means counted and dropped).
pub type EventQueue = ArrayQueue<FlowEvent>;

/// A worker's statistics, written by it, read by the control plane.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Loop iterations.
    pub loops: AtomicU64,
    /// Packets received.
    pub rx: AtomicU64,
    /// Packets transmitted.
    pub tx: AtomicU64,
    /// Packets dropped by the worker (all reasons, including per-flow ones): the sum of
    /// `drops`.
    pub dropped: AtomicU64,
    /// Packets dropped, by [`DropReason`] index: every packet received and not sent is counted
    /// here under one reason (and also in its flow's counters when it has a flow). Frames that
    /// did not parse count as `Malformed`, packets for a port with no flow as `NoFlow`.
    pub drops: [AtomicU64; DropReason::COUNT],
    /// Events lost because the queue was full.
    pub events_lost: AtomicU64,
    /// Wall-clock ns spent in iterations that had work.
    pub busy_ns: AtomicU64,
    /// Thread CPU time, updated periodically.
    pub cpu_ns: AtomicU64,
    /// Control messages applied.
    pub control: AtomicU64,
    /// Control messages applied, published (release) after each drain of the control channel:
    /// the acknowledgement [`crate::Dataplane::sync`] waits for. Messages are applied in the
    /// order sent, so the value `g` means the first `g` messages sent to this worker are in
    /// effect.
    pub acked: AtomicU64,
    /// Flows installed in this worker's table.
    pub flows: AtomicU64,
}

#[inline]
pub(crate) fn add(c: &AtomicU64, by: u64) {
    c.store(
        c.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

impl WorkerStats {
    /// Counts one packet dropped for `reason` (the total in `dropped` is added per batch).
    #[inline]
    pub(crate) fn count_drop(&self, reason: DropReason) {
        add(&self.drops[reason as usize], 1);
    }

    /// Publishes that `applied` control messages are in effect (after draining the channel).
    #[inline]
    pub(crate) fn ack(&self, applied: u64) {
        self.acked.store(applied, Ordering::Release);
    }
}

/// Everything a worker thread is started with.
#[derive(Debug)]
pub struct WorkerCtx {
    /// Worker index (also its queue on the XDP path).
    pub index: usize,
    /// Control messages.
    pub rx: crossbeam_channel::Receiver<Control>,
    /// Wakes the worker when idle.
    pub waker: Arc<Waker>,
    /// Events for the control plane.
    pub events: Arc<EventQueue>,
    /// Statistics.
    pub stats: Arc<WorkerStats>,
    /// Set to stop the worker.
    pub stop: Arc<AtomicBool>,
    /// SRTP configuration for the worker's flow table.
    pub srtp: tollgate_srtp::Config,
    /// AF_XDP workers never sleep (dedicated cores: lowest latency, 100% CPU).
    pub busy_poll: bool,
    /// AF_XDP workers: interrupt moderation window (0: wake per frame).
    pub coalesce_ns: u64,
}

impl WorkerCtx {
    /// Queues an event, counting it if the queue is full.
    #[inline]
    pub(crate) fn emit(&self, e: FlowEvent) {
        if self.events.push(e).is_err() {
            add(&self.stats.events_lost, 1);
        }
    }

    /// Applies a control message to the table; returns sockets that came with it.
    pub(crate) fn apply(
        &self,
        table: &mut MediaFlowTable,
        msg: Control,
        now_ns: u64,
    ) -> Option<(u64, Vec<(SocketAddr, OwnedFd)>)> {
        add(&self.stats.control, 1);
        let out = match msg {
            Control::Install {
                spec,
                crypto,
                counters,
                sockets,
            } => {
                // The control plane validated the spec (keys, ports) and built its SRTP
                // contexts before sending it, so a failure here is a bug worth a log line, not
                // a crash.
                let id = spec.id;
                match table.install_with(*spec, crypto, counters, now_ns) {
                    Ok(()) => Some((id, sockets)),
                    Err(e) => {
                        tracing::error!(worker = self.index, flow = id, error = %e, "flow install failed");
                        None
                    }
                }
            }
            Control::Remove(id) => {
                table.remove(id);
                Some((id, Vec::new()))
            }
            Control::NextHop { flow, side, mac } => {
                table.set_next_hop(flow, side, mac);
                None
            }
            Control::Barrier => None,
        };
        self.stats
            .flows
            .store(table.len() as u64, Ordering::Relaxed);
        out
    }
}

/// Pins the current thread to `cpu` (best effort: reports whether it worked).
pub fn pin(cpu: Option<usize>) -> bool {
    match cpu {
        Some(c) => core_affinity::set_for_current(core_affinity::CoreId { id: c }),
        None => false,
    }
}
