//! What every worker shares with the control plane: the control messages it receives, the
//! events it emits, its statistics, and how it waits when idle.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;
use tollgate_relay::frame::Mac;
use tollgate_relay::{FlowCounters, FlowEvent, FlowTable, MediaFlowSpec, Side};

use crate::sys::Waker;

/// A message from the control plane to one worker. Allocation happens on the control side.
#[derive(Debug)]
pub enum Control {
    /// Install or update a flow; `sockets` carries the bound UDP sockets on the socket path.
    Install {
        /// What to relay.
        spec: Box<MediaFlowSpec>,
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
    /// Packets dropped by the worker (all reasons, including per-flow ones).
    pub dropped: AtomicU64,
    /// Frames that did not parse (should not reach a worker: XDP parsed them).
    pub malformed: AtomicU64,
    /// Packets for a port with no flow in this worker.
    pub no_flow: AtomicU64,
    /// Events lost because the queue was full.
    pub events_lost: AtomicU64,
    /// Wall-clock ns spent in iterations that had work.
    pub busy_ns: AtomicU64,
    /// Thread CPU time, updated periodically.
    pub cpu_ns: AtomicU64,
    /// Control messages applied.
    pub control: AtomicU64,
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
        table: &mut FlowTable,
        msg: Control,
        now_ns: u64,
    ) -> Option<(u64, Vec<(SocketAddr, OwnedFd)>)> {
        add(&self.stats.control, 1);
        let out = match msg {
            Control::Install {
                spec,
                counters,
                sockets,
            } => {
                // The control plane validated the spec (keys, ports) before sending it, so a
                // failure here is a bug worth a log line, not a crash.
                match table.install(&spec, counters, now_ns) {
                    Ok(()) => Some((spec.id, sockets)),
                    Err(e) => {
                        tracing::error!(worker = self.index, flow = spec.id, error = %e, "flow install failed");
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
