//! How a worker waits when it has nothing to do: spin, nap for a moderation window, or sleep
//! in `poll` (the AF_XDP worker) or `epoll_wait` (the socket worker). Sans-IO: the worker reports its iterations and the times it read, and
//! executes the [`IdleAction`] it gets back; the unit tests drive it with fake time.
//!
//! Sleeping in `poll` and waking costs a context switch (several µs, far more in a VM);
//! spinning costs the CPU it burns. With interrupt moderation on (`coalesce_ns > 0`, the
//! default) the policy keeps an average of the gap between received frames; while a moderation
//! window (`NAP_TARGET_FRAMES` gaps, at most `coalesce_ns`) is expected to hold at least
//! `NAP_MIN_FRAMES` frames it naps for that window (a timed sleep, so one wakeup serves every
//! frame that arrived meanwhile), otherwise it sleeps in `poll` until the next frame (a quiet
//! relay burns nothing and adds no latency). With moderation off it keeps an average of the gap
//! between busy iterations: when work arrives closer than `DENSE_GAP_NS` apart it spins up to
//! twice that gap, otherwise it spins `MIN_SPIN_NS` and sleeps in `poll`. In busy-poll mode it
//! never sleeps.
//!
//! The clock is read only when there is work, or every `IDLE_CHECK_EVERY` empty iterations: on
//! some hosts a vDSO clock read costs over 100 ns, far more than an empty poll of the rings.

/// Busy iterations closer than this (on average) are dense traffic: spin between them.
pub const DENSE_GAP_NS: u64 = 25_000;
/// A timed nap costs more than a `poll` wakeup (it arms a timer; in a VM that is an exit to the
/// hypervisor: measured 23-28 µs of CPU per nap against 10-14 µs per `poll` wakeup on a 2-vCPU
/// guest), so the worker naps only while a window is expected to hold at least this many frames.
pub const NAP_MIN_FRAMES: u64 = 3;
/// Frames a moderation window aims to hold: the window is this many average frame gaps, capped
/// by `coalesce_ns` (the latency bound). Dense traffic gets short windows (bounded bursts, low
/// latency: ~230 µs at 70k frames/s, ~120 µs at 130k); lighter traffic gets windows up to the
/// cap, so each wakeup still serves several frames. At 16 frames a wakeup's cost (~25 µs on the
/// lab VM) is spread to ~1.5 µs per frame; 32 halved that but doubled the latency at mid rates.
pub const NAP_TARGET_FRAMES: u64 = 16;
/// Consecutive moderation windows without a frame before the worker falls back to `poll`.
pub const EMPTY_NAPS: u64 = 3;
/// Shortest spin before sleeping.
pub const MIN_SPIN_NS: u64 = 2_000;
/// Empty iterations between clock reads while idle.
pub const IDLE_CHECK_EVERY: u32 = 16;
/// Longest sleep in `poll` (or `epoll_wait` on the socket path): also bounds how late a worker
/// sees a stop request when nothing wakes it.
pub const POLL_MS: i32 = 50;

/// What an idle worker does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleAction {
    /// Poll the rings again at once.
    Spin,
    /// Flush TX, restock the fill rings, then sleep this many nanoseconds (one moderation
    /// window: a timed sleep, not interrupted by frames).
    Nap(u64),
    /// Flush TX, restock the fill rings, then sleep in `poll` on the sockets and the control
    /// eventfd for at most this many milliseconds.
    Poll(i32),
}

/// The idle state of one AF_XDP worker: averages of the recent traffic and how long it has been
/// idle. See the module documentation for the rules.
#[derive(Debug, Clone)]
pub struct IdlePolicy {
    /// Never sleep (`busy_poll`).
    never_sleep: bool,
    /// Interrupt moderation window bound; 0 when moderation is off.
    coalesce_ns: u64,
    /// Empty iterations since the last busy one or sleep.
    empty: u32,
    /// Time of the first clock read of this idle period (0: none yet).
    idle_since: u64,
    /// Time of the last busy iteration (0: none yet).
    last_work: u64,
    /// Exponential average (1/8 weight) of the gap between busy iterations.
    gap_avg: u64,
    /// Exponential average (1/8 weight) of the gap between received frames; above 1 ms it is
    /// "no estimate" and the next measurement replaces it.
    frame_gap_avg: u64,
}

impl IdlePolicy {
    /// The policy for a worker that never sleeps (`busy_poll`) or, if it may sleep, moderates
    /// interrupts with windows of at most `coalesce_ns` (0: wakes per frame).
    pub fn new(busy_poll: bool, coalesce_ns: u64) -> IdlePolicy {
        IdlePolicy {
            never_sleep: busy_poll,
            coalesce_ns: if busy_poll { 0 } else { coalesce_ns },
            empty: 0,
            idle_since: 0,
            last_work: 0,
            gap_avg: DENSE_GAP_NS * 4,
            frame_gap_avg: u64::MAX / 2,
        }
    }

    /// Whether the worker moderates interrupts (naps), so wants a tight timer slack.
    pub fn moderates(&self) -> bool {
        self.coalesce_ns > 0
    }

    /// An iteration had work (frames, or control messages) at `now_ns` and received `frames`.
    pub fn busy(&mut self, now_ns: u64, frames: u32) {
        self.empty = 0;
        self.idle_since = 0;
        let since_last = now_ns.saturating_sub(self.last_work).min(1_000_000);
        if self.last_work != 0 {
            self.gap_avg = self.gap_avg - self.gap_avg / 8 + since_last / 8;
        }
        self.last_work = now_ns;
        if frames > 0 {
            let gap = since_last / u64::from(frames);
            self.frame_gap_avg = if self.frame_gap_avg > 1_000_000 {
                gap
            } else {
                self.frame_gap_avg - self.frame_gap_avg / 8 + gap / 8
            };
        }
    }

    /// An iteration found nothing to do: returns whether the worker should read the clock and
    /// call [`IdlePolicy::idle`] (every `IDLE_CHECK_EVERY` empty iterations); otherwise it
    /// spins on.
    pub fn empty_iteration(&mut self) -> bool {
        self.empty = self.empty.wrapping_add(1);
        self.empty.is_multiple_of(IDLE_CHECK_EVERY)
    }

    /// The worker is idle at `now_ns` (read when [`IdlePolicy::empty_iteration`] asked): what
    /// it does next.
    pub fn idle(&mut self, now_ns: u64) -> IdleAction {
        if self.idle_since == 0 {
            self.idle_since = now_ns;
            return IdleAction::Spin;
        }
        if self.never_sleep || now_ns.saturating_sub(self.idle_since) < self.spin_budget() {
            return IdleAction::Spin;
        }
        self.empty = 0;
        self.idle_since = 0;
        let window = self
            .frame_gap_avg
            .saturating_mul(NAP_TARGET_FRAMES)
            .min(self.coalesce_ns);
        if self.moderates()
            && self.frame_gap_avg.saturating_mul(NAP_MIN_FRAMES) <= self.coalesce_ns
            && now_ns.saturating_sub(self.last_work) < window.saturating_mul(EMPTY_NAPS + 1)
        {
            IdleAction::Nap(window)
        } else {
            IdleAction::Poll(POLL_MS)
        }
    }

    /// How long to spin before sleeping, given the average gap between busy iterations.
    fn spin_budget(&self) -> u64 {
        if !self.moderates() && self.gap_avg < DENSE_GAP_NS {
            (2 * self.gap_avg).max(MIN_SPIN_NS)
        } else {
            MIN_SPIN_NS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake worker: runs `policy` through iterations on a fake clock.
    struct Sim {
        policy: IdlePolicy,
        now: u64,
    }

    impl Sim {
        fn new(busy_poll: bool, coalesce_ns: u64) -> Sim {
            Sim {
                policy: IdlePolicy::new(busy_poll, coalesce_ns),
                now: 1_000_000_000,
            }
        }

        /// A busy iteration receiving `frames`, `gap` ns after the previous event.
        fn work(&mut self, gap: u64, frames: u32) {
            self.now += gap;
            self.policy.busy(self.now, frames);
        }

        /// Empty iterations (each `step` ns long) until the policy decides to sleep, or
        /// `limit` iterations; returns the first non-spin action and the time idle until then.
        fn idle_until_sleep(&mut self, step: u64, limit: u32) -> (IdleAction, u64) {
            let start = self.now;
            for _ in 0..limit {
                self.now += step;
                if self.policy.empty_iteration() {
                    match self.policy.idle(self.now) {
                        IdleAction::Spin => {}
                        a => return (a, self.now - start),
                    }
                }
            }
            (IdleAction::Spin, self.now - start)
        }
    }

    #[test]
    fn clock_is_read_every_sixteenth_empty_iteration() {
        let mut p = IdlePolicy::new(false, 0);
        let reads = (0..64).filter(|_| p.empty_iteration()).count();
        assert_eq!(reads, 64 / IDLE_CHECK_EVERY as usize);
        // Work resets the count.
        for _ in 0..10 {
            p.empty_iteration();
        }
        p.busy(1, 1);
        assert!(
            (0..IDLE_CHECK_EVERY - 1).all(|_| !p.empty_iteration()),
            "the count restarts after work"
        );
        assert!(p.empty_iteration());
    }

    #[test]
    fn dense_traffic_moderated_naps_a_window_of_sixteen_gaps() {
        // 100k frames/s: one frame every 10 µs, moderation bound 500 µs.
        let mut s = Sim::new(false, 500_000);
        for _ in 0..100 {
            s.work(10_000, 1);
        }
        let (a, spun) = s.idle_until_sleep(50, 10_000);
        let IdleAction::Nap(w) = a else {
            panic!("dense moderated traffic naps: {a:?}")
        };
        // The integer average settles within a few ns of the true gap.
        assert!(
            (16 * 10_000..16 * 10_010).contains(&w),
            "window of 16 average gaps: {w}"
        );
        assert!(
            spun >= MIN_SPIN_NS,
            "spun at least MIN_SPIN_NS first: {spun}"
        );
        assert!(spun < MIN_SPIN_NS + 2_000, "and not much more: {spun}");
        s.now += w;
        // Naps go on through up to EMPTY_NAPS windows without a frame, then it polls.
        let mut naps = 1;
        loop {
            let (a, _) = s.idle_until_sleep(50, 10_000);
            match a {
                IdleAction::Nap(w) => {
                    s.now += w;
                    naps += 1;
                }
                IdleAction::Poll(ms) => {
                    assert_eq!(ms, POLL_MS);
                    break;
                }
                IdleAction::Spin => panic!("an idle worker must sleep"),
            }
            assert!(naps < 10, "naps must end");
        }
        assert!(
            (EMPTY_NAPS..=EMPTY_NAPS + 1).contains(&naps),
            "{naps} naps before poll"
        );
    }

    #[test]
    fn moderation_window_is_capped_by_the_bound() {
        // 10k frames/s: 100 µs gaps; 16 gaps = 1.6 ms, capped at the 500 µs bound (which holds
        // 5 frames >= NAP_MIN_FRAMES, so it still naps).
        let mut s = Sim::new(false, 500_000);
        for _ in 0..100 {
            s.work(100_000, 1);
        }
        assert_eq!(s.idle_until_sleep(50, 10_000).0, IdleAction::Nap(500_000));
    }

    #[test]
    fn sparse_traffic_polls() {
        // 50 frames/s (one call's RTP): a window could not hold 3 frames: poll, never nap.
        for coalesce in [0, 500_000] {
            let mut s = Sim::new(false, coalesce);
            for _ in 0..20 {
                s.work(20_000_000, 1);
                let (a, spun) = s.idle_until_sleep(50, 10_000);
                assert_eq!(a, IdleAction::Poll(POLL_MS), "coalesce {coalesce}");
                assert!(spun < MIN_SPIN_NS + 2_000, "short spin: {spun}");
            }
        }
        // A fresh worker (no traffic yet) polls too.
        let mut s = Sim::new(false, 500_000);
        assert_eq!(s.idle_until_sleep(50, 10_000).0, IdleAction::Poll(POLL_MS));
    }

    #[test]
    fn dense_traffic_without_moderation_spins_twice_the_gap() {
        // Busy iterations every 10 µs: spin up to 20 µs before polling.
        let mut s = Sim::new(false, 0);
        for _ in 0..200 {
            s.work(10_000, 4);
        }
        let (a, spun) = s.idle_until_sleep(50, 100_000);
        assert_eq!(
            a,
            IdleAction::Poll(POLL_MS),
            "without moderation it never naps"
        );
        assert!((20_000..22_000).contains(&spun), "spun {spun} ns");
        // Traffic that thins out beyond DENSE_GAP_NS falls back to the short spin.
        for _ in 0..200 {
            s.work(100_000, 1);
        }
        let (_, spun) = s.idle_until_sleep(50, 100_000);
        assert!(spun < MIN_SPIN_NS + 2_000, "spun {spun} ns");
    }

    #[test]
    fn busy_poll_never_sleeps() {
        let mut s = Sim::new(true, 500_000);
        assert!(!s.policy.moderates());
        for gap in [1_000, 10_000, 20_000_000] {
            for _ in 0..50 {
                s.work(gap, 1);
            }
            // A whole second idle, in 100 ns iterations.
            let (a, idle) = s.idle_until_sleep(100, 10_000_000);
            assert_eq!(a, IdleAction::Spin, "gap {gap}");
            assert_eq!(idle, 1_000_000_000);
        }
    }

    #[test]
    fn every_sleep_is_bounded_for_stop_requests() {
        // Whatever the traffic, no sleep outlasts max(POLL_MS, coalesce bound), so a stop
        // request (which also rings the eventfd that ends a poll) is seen in time.
        for coalesce in [0u64, 100_000, 500_000, 2_000_000] {
            let mut s = Sim::new(false, coalesce);
            let bound = (POLL_MS as u64 * 1_000_000).max(coalesce);
            for gap in [500u64, 5_000, 30_000, 200_000, 3_000_000, 40_000_000] {
                for round in 0..30 {
                    s.work(gap, 1 + round % 3);
                    let (a, _) = s.idle_until_sleep(50, 1_000_000);
                    let slept = match a {
                        IdleAction::Nap(ns) => {
                            assert!(ns <= coalesce, "nap {ns} over the bound {coalesce}");
                            ns
                        }
                        IdleAction::Poll(ms) => ms as u64 * 1_000_000,
                        IdleAction::Spin => panic!("idle for 50 ms without sleeping"),
                    };
                    assert!(slept <= bound);
                    s.now += slept;
                }
            }
        }
    }
}
