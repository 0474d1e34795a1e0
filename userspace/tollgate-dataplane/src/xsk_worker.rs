//! The AF_XDP worker: one per core, owning queue `q` of both NICs through two sockets that
//! share one UMEM, so a frame received on one NIC is transmitted on the other without a copy.
//!
//! Per batch: receive, relay each frame in place (SRTP transform, then a new Ethernet/IP/UDP
//! header written into the headroom in front of the payload), queue it on the other NIC's TX
//! ring; kick TX once the burst is drained (or 32 frames wait), reap completions, refill the
//! fill rings. No allocation, lock, log line or
//! syscall per packet; syscalls are the TX kick per batch and a timed nap or `poll` when idle.

use std::sync::atomic::Ordering;

use tollgate_relay::frame::{self, FrameError};
use tollgate_relay::{DropReason, FlowTable, Route};

use crate::afxdp::{Umem, XskSocket};
use crate::sys::{monotonic_ns, thread_cpu_ns};
use crate::worker::{WorkerCtx, add};

/// Receive batch size per socket per iteration.
const BATCH: u32 = 64;
/// Queued TX frames that trigger a kick even while more frames wait to be received (the
/// kernel's copy-mode transmit takes up to 32 frames per kick).
const KICK_AT: u32 = 32;
/// Idle policy. Sleeping in `poll` and waking costs a context switch (several µs, far more in a
/// VM); spinning costs the CPU it burns. With interrupt moderation on (`coalesce_ns > 0`, the
/// default) the worker keeps an average of the gap between received frames; while a moderation
/// window (`NAP_TARGET_FRAMES` gaps, at most `coalesce_ns`) is expected to hold at least
/// `NAP_MIN_FRAMES` frames it naps for that window (a timed sleep, so one wakeup serves every
/// frame that arrived meanwhile), otherwise it sleeps in `poll` until the
/// next frame (a quiet relay burns nothing and adds no latency). With moderation off it keeps an
/// average of the gap between busy iterations: when work arrives closer than `DENSE_GAP_NS`
/// apart it spins up to twice that gap, otherwise it spins `MIN_SPIN_NS` and sleeps in `poll`.
const DENSE_GAP_NS: u64 = 25_000;
/// A timed nap costs more than a `poll` wakeup (it arms a timer; in a VM that is an exit to the
/// hypervisor: measured 23-28 µs of CPU per nap against 10-14 µs per `poll` wakeup on a 2-vCPU
/// guest), so the worker naps only while a window is expected to hold at least this many frames.
const NAP_MIN_FRAMES: u64 = 3;
/// Frames a moderation window aims to hold: the window is this many average frame gaps, capped
/// by `coalesce_ns` (the latency bound). Dense traffic gets short windows (bounded bursts, low
/// latency: ~230 µs at 70k frames/s, ~120 µs at 130k); lighter traffic gets windows up to the
/// cap, so each wakeup still serves several frames. At 16 frames a wakeup's cost (~25 µs on the
/// lab VM) is spread to ~1.5 µs per frame; 32 halved that but doubled the latency at mid rates.
const NAP_TARGET_FRAMES: u64 = 16;
/// Consecutive moderation windows without a frame before the worker falls back to `poll`.
const EMPTY_NAPS: u64 = 3;
/// Shortest spin before sleeping.
const MIN_SPIN_NS: u64 = 2_000;
/// Empty iterations between clock reads while idle.
const IDLE_CHECK_EVERY: u32 = 16;
/// How often the worker publishes its loop count and CPU time.
const STATS_NS: u64 = 100_000_000;
/// Longest sleep in `poll` (also bounds how late a stop request is seen).
const POLL_MS: i32 = 50;

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

/// Runs the worker until `ctx.stop` is set.
pub fn run(ctx: WorkerCtx, mut io: XskPair) {
    let mut table = FlowTable::new(ctx.srtp);
    let frame_size = u64::from(io.umem.frame_size());
    let mut free: Vec<u64> = io.umem.frame_addrs().collect();
    io.ext.fill(&mut free);
    io.int.fill(&mut free);
    let mut idle = 0u32;
    let mut idle_since = 0u64;
    let mut last_work = 0u64;
    let mut gap_avg = DENSE_GAP_NS * 4;
    // Average gap between received frames (moderation decides on it).
    let mut frame_gap_avg = u64::MAX / 2;
    let moderate = ctx.coalesce_ns > 0 && !ctx.busy_poll;
    if moderate {
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
            idle += 1;
            if idle.is_multiple_of(IDLE_CHECK_EVERY) {
                let t = monotonic_ns();
                if idle_since == 0 {
                    idle_since = t;
                } else if !ctx.busy_poll
                    && t.saturating_sub(idle_since) >= spin_budget(moderate, gap_avg)
                {
                    // Retry TX left over from EAGAIN, restock, then wait for rx or a message.
                    io.ext.tx_submit();
                    io.int.tx_submit();
                    io.ext.fill(&mut free);
                    io.int.fill(&mut free);
                    let window = frame_gap_avg
                        .saturating_mul(NAP_TARGET_FRAMES)
                        .min(ctx.coalesce_ns);
                    if moderate
                        && frame_gap_avg.saturating_mul(NAP_MIN_FRAMES) <= ctx.coalesce_ns
                        && t.saturating_sub(last_work) < window * (EMPTY_NAPS + 1)
                    {
                        crate::sys::nap_ns(window);
                    } else {
                        sleep(&ctx, &io);
                    }
                    idle = 0;
                    idle_since = 0;
                }
                if t.saturating_sub(last_stats) >= STATS_NS {
                    last_stats = t;
                    publish(&ctx, loops);
                }
            }
            continue;
        }
        idle = 0;
        idle_since = 0;
        let now = monotonic_ns();
        let since_last = now.saturating_sub(last_work).min(1_000_000);
        if last_work != 0 {
            // Exponential average, 1/8 weight, of the gap between busy iterations.
            gap_avg = gap_avg - gap_avg / 8 + since_last / 8;
        }
        last_work = now;
        while let Ok(msg) = ctx.rx.try_recv() {
            // AF_XDP flows carry no sockets.
            let _ = ctx.apply(&mut table, msg, now);
        }
        let mut work = relay_batch(
            &ctx,
            &mut table,
            &mut io.umem,
            &mut io.ext,
            &mut io.int,
            &mut free,
            frame_size,
            now,
        );
        work += relay_batch(
            &ctx,
            &mut table,
            &mut io.umem,
            &mut io.int,
            &mut io.ext,
            &mut free,
            frame_size,
            now,
        );
        // Kick TX once the burst is drained (or once a kick's worth is queued): in copy mode
        // every kick is a syscall and, on veth, a cross-CPU wakeup of the peer's backlog.
        if io.ext.rx_available() + io.int.rx_available() == 0
            || io.ext.tx_outstanding().max(io.int.tx_outstanding()) >= KICK_AT
        {
            io.ext.tx_submit();
            io.int.tx_submit();
        }
        if work > 0 {
            // Exponential average, 1/8 weight, of the gap between frames.
            let gap = since_last / u64::from(work);
            frame_gap_avg = if frame_gap_avg > 1_000_000 {
                gap
            } else {
                frame_gap_avg - frame_gap_avg / 8 + gap / 8
            };
        }
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

/// How long to spin before sleeping, given the average gap between busy iterations.
fn spin_budget(moderate: bool, gap_avg: u64) -> u64 {
    if !moderate && gap_avg < DENSE_GAP_NS {
        (2 * gap_avg).max(MIN_SPIN_NS)
    } else {
        MIN_SPIN_NS
    }
}

/// Publishes the loop count and the thread's CPU time (a syscall: at most every `STATS_NS`).
fn publish(ctx: &WorkerCtx, loops: u64) {
    ctx.stats.loops.store(loops, Ordering::Relaxed);
    ctx.stats.cpu_ns.store(thread_cpu_ns(), Ordering::Relaxed);
}

fn sleep(ctx: &WorkerCtx, io: &XskPair) {
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
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, POLL_MS) };
    if fds[2].revents != 0 {
        ctx.waker.drain();
    }
}

/// A received frame after pass 1: its parsed headers and the route to its flow (if any).
type Staged = Result<(frame::UdpFrame, Option<Route>), FrameError>;

/// Relays up to one batch from `rx` to `tx`; returns the number of frames received.
#[allow(clippy::too_many_arguments)] // reason: the worker's disjoint borrows, passed apart.
#[inline]
fn relay_batch(
    ctx: &WorkerCtx,
    table: &mut FlowTable,
    umem: &mut crate::afxdp::Umem,
    rx: &mut XskSocket,
    tx: &mut XskSocket,
    free: &mut Vec<u64>,
    frame_size: u64,
    now: u64,
) -> u32 {
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
    let mut tx_room = tx.tx_free();
    let mut sent = 0u32;
    let mut dropped = 0u64;
    for i in 0..n {
        let (addr, _) = rx.rx_desc(i);
        let base = addr - addr % frame_size;
        let p = staged
            .get(i as usize)
            .copied()
            .unwrap_or(Err(FrameError::Truncated));
        match relay_frame(ctx, table, umem, addr, p, now) {
            Some((out_off, out_len, r)) => {
                if tx_room == 0 {
                    table.dropped(&r, DropReason::TxFull);
                    free.push(base);
                    dropped += 1;
                    continue;
                }
                tx.tx_push(base + out_off as u64, out_len as u32);
                tx_room -= 1;
                sent += 1;
                table.sent(&r, now);
            }
            None => {
                free.push(base);
                dropped += 1;
            }
        }
    }
    rx.rx_release(n);
    add(&ctx.stats.rx, u64::from(n));
    add(&ctx.stats.tx, u64::from(sent));
    add(&ctx.stats.dropped, dropped);
    n
}

/// Relays one received frame in place. Returns the offset (within the frame's chunk) and length
/// of the frame to transmit, or `None` if it was dropped (and counted).
#[inline]
fn relay_frame(
    ctx: &WorkerCtx,
    table: &mut FlowTable,
    umem: &mut crate::afxdp::Umem,
    addr: u64,
    staged: Staged,
    now: u64,
) -> Option<(usize, usize, tollgate_relay::Relayed)> {
    let (chunk, off) = umem.frame_mut(addr)?;
    let (parsed, route) = match staged {
        Ok(p) => p,
        Err(
            FrameError::Fragment
            | FrameError::NotUdp
            | FrameError::Truncated
            | FrameError::BadLength,
        ) => {
            add(&ctx.stats.malformed, 1);
            return None;
        }
    };
    let payload_at = off + parsed.payload_off;
    let Some(route) = route else {
        add(&ctx.stats.no_flow, 1);
        return None;
    };
    let r = match table.relay_routed(
        &route,
        parsed.src,
        Some(parsed.src_mac),
        chunk.get_mut(payload_at..)?,
        parsed.payload_len,
        now,
        true,
    ) {
        Ok(r) => r,
        Err(DropReason::NoFlow) => {
            add(&ctx.stats.no_flow, 1);
            return None;
        }
        Err(_) => return None,
    };
    if let Some(e) = r.event {
        ctx.emit(e);
    }
    if !r.l2_resolved {
        table.dropped(&r, DropReason::NoNextHop);
        return None;
    }
    let hlen = r.header.len();
    if payload_at < hlen {
        table.dropped(&r, DropReason::NoRoom);
        return None;
    }
    let (head, payload) = chunk.split_at_mut(payload_at);
    let start = payload_at - hlen;
    let payload = payload.get(..r.len)?;
    if r.header
        .write(&mut head[start..], payload, parsed.tos)
        .is_none()
    {
        table.dropped(&r, DropReason::NoRoom);
        return None;
    }
    Some((start, hlen + r.len, r))
}
