//! The AF_XDP worker: one per core, owning queue `q` of both NICs through two sockets that
//! share one UMEM, so a frame received on one NIC is transmitted on the other without a copy.
//!
//! Per batch: receive, relay each frame in place (SRTP transform, then a new Ethernet/IP/UDP
//! header written into the headroom in front of the payload), queue it on the other NIC's TX
//! ring; kick TX once the burst is drained (or 32 frames wait), reap completions, refill the
//! fill rings. No allocation, lock, log line or
//! syscall per packet; syscalls are the TX kick per batch and a timed nap or `poll` when idle,
//! as [`crate::idle::IdlePolicy`] decides.

use std::sync::atomic::Ordering;

use smallvec::SmallVec;
use tollgate_relay::frame::{self, FrameError};
use tollgate_relay::{Arrival, DropReason, Fronted, MediaFlowTable, Route, Side};
use tollgate_srtp::{Job, Op};

use crate::afxdp::{Umem, XskSocket};
use crate::idle::{IdleAction, IdlePolicy};
use crate::sys::{monotonic_ns, thread_cpu_ns};
use crate::worker::{Control, WorkerCtx, add};

/// Receive batch size per socket per iteration.
pub(crate) const BATCH: u32 = 64;
/// Queued TX frames that trigger a kick even while more frames wait to be received (the
/// kernel's copy-mode transmit takes up to 32 frames per kick).
const KICK_AT: u32 = 32;
/// How often the worker publishes its loop count and CPU time.
const STATS_NS: u64 = 100_000_000;

/// A worker's AF_XDP resources.
#[derive(Debug)]
pub struct XskPair {
    /// Frame memory shared by both sockets.
    pub umem: Umem,
    /// Gateway-side socket (owns the UMEM registration).
    pub ext: XskSocket,
    /// Internal-side socket (shares the UMEM).
    pub int: XskSocket,
}

/// What a worker does with its rings' bursts and its control messages: the relay
/// ([`MediaFlowTable`]), or the benchmarks' null worker ([`crate::floor_worker`]), which runs
/// the same loop so that the two compare fairly.
pub(crate) trait BurstHandler {
    /// Applies one control message (then the worker acknowledges it).
    fn apply(&mut self, ctx: &WorkerCtx, msg: Control, now: u64);
    /// Handles up to one batch that arrived on the `from` side's socket, queuing what leaves
    /// on the other side's; returns the number of frames received.
    fn burst(
        &mut self,
        ctx: &WorkerCtx,
        io: &mut XskPair,
        from: Side,
        free: &mut Vec<u64>,
        frame_size: u64,
        now: u64,
    ) -> u32;
}

impl BurstHandler for MediaFlowTable {
    fn apply(&mut self, ctx: &WorkerCtx, msg: Control, now: u64) {
        // AF_XDP flows carry no sockets.
        let _ = ctx.apply(self, msg, now);
    }

    #[inline]
    fn burst(
        &mut self,
        ctx: &WorkerCtx,
        io: &mut XskPair,
        from: Side,
        free: &mut Vec<u64>,
        frame_size: u64,
        now: u64,
    ) -> u32 {
        relay_batch(ctx, self, io, from, free, frame_size, now)
    }
}

/// Runs the relay worker until `ctx.stop` is set.
pub fn run(ctx: WorkerCtx, io: XskPair) {
    let table = MediaFlowTable::new(ctx.srtp);
    run_with(ctx, io, table);
}

/// The worker loop around `handler` until `ctx.stop` is set.
pub(crate) fn run_with<H: BurstHandler>(ctx: WorkerCtx, mut io: XskPair, mut handler: H) {
    let frame_size = u64::from(io.umem.frame_size());
    let mut free: Vec<u64> = io.umem.frame_addrs().collect();
    io.ext.fill(&mut free);
    io.int.fill(&mut free);
    // When to spin, nap or sleep: decided by the policy, carried out here.
    let mut idle = IdlePolicy::new(ctx.busy_poll, ctx.coalesce_ns);
    if idle.moderates() {
        crate::sys::set_timer_slack_ns(1_000);
    }
    let mut loops = 0u64;
    let mut last_stats = 0u64;
    while !ctx.stop.load(Ordering::Relaxed) {
        loops += 1;
        // The clock is read only when there is something to do: on some hosts a vDSO clock read
        // costs over 100 ns, far more than an empty poll of the rings.
        let pending = io.ext.rx_available() + io.int.rx_available();
        if pending == 0 && ctx.rx.is_empty() {
            io.ext.reap_completions(&mut free);
            io.int.reap_completions(&mut free);
            if idle.empty_iteration() {
                let t = monotonic_ns();
                let action = idle.idle(t);
                if action != IdleAction::Spin {
                    // Retry TX left over from EAGAIN, restock, then wait for rx or a message.
                    io.ext.tx_submit();
                    io.int.tx_submit();
                    io.ext.fill(&mut free);
                    io.int.fill(&mut free);
                    match action {
                        IdleAction::Nap(ns) => crate::sys::nap_ns(ns),
                        IdleAction::Poll(ms) => sleep(&ctx, &io, ms),
                        IdleAction::Spin => {}
                    }
                }
                if t.saturating_sub(last_stats) >= STATS_NS {
                    last_stats = t;
                    publish(&ctx, loops);
                }
            }
            continue;
        }
        let now = monotonic_ns();
        let mut applied = false;
        while let Ok(msg) = ctx.rx.try_recv() {
            handler.apply(&ctx, msg, now);
            applied = true;
        }
        if applied {
            ctx.stats.ack(ctx.stats.control.load(Ordering::Relaxed));
        }
        let mut work = handler.burst(&ctx, &mut io, Side::Ext, &mut free, frame_size, now);
        work += handler.burst(&ctx, &mut io, Side::Int, &mut free, frame_size, now);
        // Kick TX once the burst is drained (or once a kick's worth is queued): in copy mode
        // every kick is a syscall and, on veth, a cross-CPU wakeup of the peer's backlog.
        if io.ext.rx_available() + io.int.rx_available() == 0
            || io.ext.tx_outstanding().max(io.int.tx_outstanding()) >= KICK_AT
        {
            io.ext.tx_submit();
            io.int.tx_submit();
        }
        idle.busy(now, work);
        io.ext.reap_completions(&mut free);
        io.int.reap_completions(&mut free);
        // Keep both fill rings stocked; alternate who goes first so neither starves.
        if loops & 1 == 0 {
            io.ext.fill(&mut free);
            io.int.fill(&mut free);
        } else {
            io.int.fill(&mut free);
            io.ext.fill(&mut free);
        }
        for s in [&io.ext, &io.int] {
            if s.fill_needs_wakeup() && work > 0 {
                s.wake_rx();
            }
        }
        let end = monotonic_ns();
        add(&ctx.stats.busy_ns, end.saturating_sub(now));
        if end.saturating_sub(last_stats) >= STATS_NS {
            last_stats = end;
            publish(&ctx, loops);
        }
    }
    publish(&ctx, loops);
}

/// Publishes the loop count and the thread's CPU time (a syscall: at most every `STATS_NS`).
fn publish(ctx: &WorkerCtx, loops: u64) {
    ctx.stats.loops.store(loops, Ordering::Relaxed);
    ctx.stats.cpu_ns.store(thread_cpu_ns(), Ordering::Relaxed);
}

/// Sleeps in `poll` on both sockets and the control eventfd, at most `timeout_ms`.
fn sleep(ctx: &WorkerCtx, io: &XskPair, timeout_ms: i32) {
    let mut fds = [
        libc::pollfd {
            fd: io.ext.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: io.int.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: ctx.waker.fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: valid pollfd array.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if fds[2].revents != 0 {
        ctx.waker.drain();
    }
}

/// A received frame after pass 1: its parsed headers and the route to its flow (if any).
type Staged = Result<(frame::UdpFrame, Option<Route>), FrameError>;

/// Why a frame was dropped, and the flow event its packet raised anyway (a first packet or a
/// learned source is reported even when the packet cannot be sent).
type Dropped = (DropReason, Option<tollgate_relay::FlowEvent>);

/// A frame after pass 2: checked and addressed ([`MediaFlowTable::relay_front`]), with the
/// offset of its UDP payload in the frame's chunk and its IP TOS/traffic class (kept on
/// egress); or why it was dropped.
type Front = Result<(Fronted, usize, u8), Dropped>;

/// Relays up to one batch that arrived on the `from` side's socket out of the other side's;
/// returns the number of frames received.
///
/// Four passes over the burst: 1. parse and look the flow up, prefetching its state; 2. the
/// relay's checks and addressing per packet, in arrival order; 3. the SRTP work of the whole
/// burst in one [`tollgate_srtp::process_batch`] call, which interleaves the packets' AES and
/// HMAC-SHA1 across flows; 4. per packet, the result, the new headers, the TX ring.
#[inline]
fn relay_batch(
    ctx: &WorkerCtx,
    table: &mut MediaFlowTable,
    io: &mut XskPair,
    from: Side,
    free: &mut Vec<u64>,
    frame_size: u64,
    now: u64,
) -> u32 {
    let umem = &mut io.umem;
    let (rx, tx) = match from {
        Side::Ext => (&mut io.ext, &mut io.int),
        Side::Int => (&mut io.int, &mut io.ext),
    };
    let n = rx.rx_available().min(BATCH);
    if n == 0 {
        return 0;
    }
    // Pass 1: parse every frame's headers and start loading its flow state, so the cache
    // misses of the burst's packets overlap instead of queueing one behind another.
    // The port lookup done here is the one the relay uses.
    let mut staged: [Staged; BATCH as usize] = [Err(FrameError::Truncated); BATCH as usize];
    for (i, slot) in staged.iter_mut().enumerate().take(n as usize) {
        let (addr, len) = rx.rx_desc(i as u32);
        *slot = umem
            .frame(addr)
            .and_then(|(chunk, off)| chunk.get(off..off + len as usize))
            .map_or(Err(FrameError::Truncated), frame::parse)
            .map(|p| (p, table.route(p.dst)));
        if let Ok((_, Some(r))) = slot {
            table.prefetch(r);
        }
    }
    // Pass 2: the relay's checks, learning and addressing, in arrival order.
    let mut fronts: [Front; BATCH as usize] =
        [const { Err((DropReason::Malformed, None)) }; BATCH as usize];
    // The frames with SRTP work: their UMEM address, payload offset and job.
    let mut job_addr = [0u64; BATCH as usize];
    let mut job_of: SmallVec<[(usize, usize, Op, usize); BATCH as usize]> = SmallVec::new();
    for i in 0..n as usize {
        let (addr, _) = rx.rx_desc(i as u32);
        let p = staged.get(i).copied().unwrap_or(Err(FrameError::Truncated));
        let f = front_frame(table, umem, addr, p, now);
        if let Ok((fr, payload_at, _)) = &f
            && let Some((id, op)) = fr.srtp_job()
            && let Some(a) = job_addr.get_mut(job_of.len())
        {
            *a = addr;
            job_of.push((i, *payload_at, op, id));
        }
        if let Some(slot) = fronts.get_mut(i) {
            *slot = f;
        }
    }
    // Pass 3: the burst's SRTP, all flows at once.
    let mut outcome: [Option<Result<usize, tollgate_srtp::Error>>; BATCH as usize] =
        [None; BATCH as usize];
    if !job_of.is_empty() {
        let mut jobs: SmallVec<[Job<'_>; BATCH as usize]> = SmallVec::new();
        let addrs = job_addr.get(..job_of.len()).unwrap_or(&[]);
        umem.frames_mut(addrs, |k, view| {
            let Some(&(i, payload_at, op, id)) = job_of.get(k) else {
                return;
            };
            let len = match fronts.get(i) {
                Some(Ok((fr, ..))) => fr.payload_len(),
                _ => 0,
            };
            // A frame that cannot be lent (never, see `frames_mut`) becomes an empty packet,
            // which the SRTP call refuses.
            match view.and_then(|(chunk, _)| chunk.get_mut(payload_at..)) {
                Some(buf) => jobs.push(Job::new(id, op, buf, len)),
                None => jobs.push(Job::new(id, op, &mut [], 0)),
            }
        });
        tollgate_srtp::process_batch(table, &mut jobs);
        for (j, &(i, ..)) in jobs.iter().zip(job_of.iter()) {
            if let Some(o) = outcome.get_mut(i) {
                *o = Some(j.result);
            }
        }
    }
    // Pass 4: results, headers, transmit.
    let mut tx_room = tx.tx_free();
    let mut tally = Tally::default();
    for i in 0..n as usize {
        let (addr, _) = rx.rx_desc(i as u32);
        let base = addr - addr % frame_size;
        let f = fronts
            .get(i)
            .cloned()
            .unwrap_or(Err((DropReason::Malformed, None)));
        let o = outcome.get(i).copied().flatten();
        match finish_frame(table, umem, addr, f, o) {
            Ok((out_off, out_len, r)) => {
                if let Some(e) = r.event {
                    ctx.emit(e);
                }
                if tx_room == 0 {
                    table.dropped(&r, DropReason::TxFull);
                    tally.drop(ctx, free, base, DropReason::TxFull);
                    continue;
                }
                tx.tx_push(base + out_off as u64, out_len as u32);
                tx_room -= 1;
                tally.sent += 1;
                table.sent(&r, now);
            }
            Err((reason, event)) => {
                if let Some(e) = event {
                    ctx.emit(e);
                }
                tally.drop(ctx, free, base, reason);
            }
        }
    }
    tally.publish(ctx, rx, n);
    n
}

/// What a burst did with its frames, published once per burst (both workers of the rings use
/// it: the relay's [`relay_batch`] and the floor's).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Frames queued for TX.
    pub(crate) sent: u32,
    /// Frames dropped.
    dropped: u64,
}

impl Tally {
    /// A frame dropped for `reason`: counted, and its frame (at `base`) back on the free list.
    #[inline]
    pub(crate) fn drop(
        &mut self,
        ctx: &WorkerCtx,
        free: &mut Vec<u64>,
        base: u64,
        reason: DropReason,
    ) {
        ctx.stats.count_drop(reason);
        free.push(base);
        self.dropped += 1;
    }

    /// Releases the burst's `n` RX descriptors and publishes its counts.
    #[inline]
    pub(crate) fn publish(self, ctx: &WorkerCtx, rx: &mut XskSocket, n: u32) {
        rx.rx_release(n);
        add(&ctx.stats.rx, u64::from(n));
        add(&ctx.stats.tx, u64::from(self.sent));
        add(&ctx.stats.dropped, self.dropped);
    }
}

/// Pass 2 for one frame: [`MediaFlowTable::relay_front`] on its UDP payload. Returns the
/// packet's front and the payload's offset in the frame's chunk.
#[inline]
fn front_frame(
    table: &mut MediaFlowTable,
    umem: &crate::afxdp::Umem,
    addr: u64,
    staged: Staged,
    now: u64,
) -> Front {
    let malformed = (DropReason::Malformed, None);
    let (parsed, route) = match staged {
        Ok(p) => p,
        Err(
            FrameError::Fragment
            | FrameError::NotUdp
            | FrameError::Truncated
            | FrameError::BadLength,
        ) => return Err(malformed),
    };
    let Some(route) = route else {
        return Err((DropReason::NoFlow, None));
    };
    // Pass 1 read this frame at the same address, so neither lookup fails.
    let (chunk, off) = umem.frame(addr).ok_or(malformed)?;
    let payload_at = off + parsed.payload_off;
    let buf = chunk.get(payload_at..).ok_or(malformed)?;
    let fr = table
        .relay_front(
            &route,
            Arrival {
                src: parsed.src,
                src_mac: Some(parsed.src_mac),
                now_ns: now,
                src_checked: true,
            },
            buf,
            parsed.payload_len,
        )
        .map_err(|reason| (reason, None))?;
    Ok((fr, payload_at, parsed.tos))
}

/// Pass 4 for one frame: the SRTP `outcome` through [`MediaFlowTable::relay_back`], then the
/// egress headers written in front of the payload. Returns the offset (within the frame's
/// chunk) and length of the frame to transmit, or why it was dropped (already counted in its
/// flow's counters when it has a flow; the caller counts it in the worker's).
#[inline]
fn finish_frame(
    table: &mut MediaFlowTable,
    umem: &mut crate::afxdp::Umem,
    addr: u64,
    front: Front,
    outcome: Option<Result<usize, tollgate_srtp::Error>>,
) -> Result<(usize, usize, tollgate_relay::Relayed), Dropped> {
    let (fr, payload_at, tos) = front?;
    let malformed = (DropReason::Malformed, fr.event());
    let (chunk, _) = umem.frame_mut(addr).ok_or(malformed)?;
    let r = table
        .relay_back(&fr, outcome, chunk.get(payload_at..).ok_or(malformed)?)
        .map_err(|reason| (reason, fr.event()))?;
    let fail = |reason: DropReason| {
        table.dropped(&r, reason);
        Err((reason, r.event))
    };
    if !r.l2_resolved {
        return fail(DropReason::NoNextHop);
    }
    let hlen = r.header.len();
    if payload_at < hlen {
        return fail(DropReason::NoRoom);
    }
    let (head, payload) = chunk.split_at_mut(payload_at);
    let start = payload_at - hlen;
    let Some(payload) = payload.get(..r.len) else {
        return fail(DropReason::NoRoom);
    };
    if r.header.write(&mut head[start..], payload, tos).is_none() {
        return fail(DropReason::NoRoom);
    }
    Ok((start, hlen + r.len, r))
}
