//! Call admission: how many new calls the core lets in, and toward which next hops.
//!
//! Sans-IO like the rest of the core: every decision takes `now`. [`Admission`] holds
//!
//! * a token bucket over all new calls (`SipConfig::max_cps`),
//! * per trunk: a token bucket over the calls it sends us ([`crate::Trunk::max_cps`]) and a cap
//!   on its concurrent calls in both directions ([`crate::Trunk::max_calls`]),
//! * per next hop (the internal proxy for inbound calls, each trunk for outbound ones): a token
//!   bucket over the calls we send it, and whether it is marked down.
//!
//! A next hop is marked down when it answers an INVITE with 503 (for its Retry-After, else the
//! backoff) or does not answer at all (Timer B, or the connection failed): the backoff starts
//! at `SipConfig::next_hop_backoff` and doubles with each failure in a row, up to
//! [`MAX_BACKOFF`]. When the time is up, calls go to it again; any other final response clears
//! its failures. Outbound routes skip next hops that are down or at their rate cap; an inbound
//! call whose next hop is down or capped is refused.
//!
//! The core checks admission in `new_call` before any port, key, dialog or call state exists, and
//! refuses with 503 and a Retry-After that says when a retry can succeed. Checking and committing
//! are separate steps so that a refusal consumes no token anywhere.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::config::{Config, RateLimit};
use crate::types::RefuseReason;

/// The longest a next hop stays marked down after failures in a row.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A token bucket: `rate` tokens a second, at most `burst` saved up. It starts full.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    pub(crate) fn new(limit: RateLimit) -> TokenBucket {
        TokenBucket {
            limit,
            tokens: f64::from(limit.burst.max(1)),
            last: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        let cap = f64::from(self.limit.burst.max(1));
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * f64::from(self.limit.per_second)).min(cap);
        }
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
    }

    /// `Ok` if a token is there now, else how long until one is.
    pub(crate) fn check(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            return Ok(());
        }
        let rate = f64::from(self.limit.per_second.max(1));
        Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
    }

    /// Takes a token (after a successful [`TokenBucket::check`] at the same `now`).
    pub(crate) fn take(&mut self) {
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

fn bucket(limit: Option<RateLimit>) -> Option<TokenBucket> {
    limit.filter(|l| l.per_second > 0).map(TokenBucket::new)
}

/// Keeps a bucket's saved tokens when its limit did not change (reload).
fn rebucket(old: Option<TokenBucket>, limit: Option<RateLimit>) -> Option<TokenBucket> {
    match (old, bucket(limit)) {
        (Some(o), Some(n)) if o.limit == n.limit => Some(o),
        (_, n) => n,
    }
}

/// Calls admitted in each of the last 60 seconds (for the operator's calls-per-second).
#[derive(Debug, Clone)]
struct RecentCalls {
    slots: [u32; 60],
    /// The second (since the admission epoch) of the newest slot.
    last: u64,
}

impl Default for RecentCalls {
    fn default() -> Self {
        RecentCalls {
            slots: [0; 60],
            last: 0,
        }
    }
}

impl RecentCalls {
    fn advance(&mut self, sec: u64) {
        if sec <= self.last {
            return;
        }
        for s in (self.last + 1)..=sec.min(self.last + 60) {
            self.slots[(s % 60) as usize] = 0;
        }
        self.last = sec;
    }

    fn add(&mut self, sec: u64) {
        self.advance(sec);
        self.slots[(sec % 60) as usize] = self.slots[(sec % 60) as usize].saturating_add(1);
    }

    fn per_second(&self, sec: u64) -> f64 {
        let mut c = self.clone();
        c.advance(sec);
        f64::from(c.slots.iter().sum::<u32>()) / 60.0
    }
}

#[derive(Debug, Clone, Default)]
struct TrunkAdmission {
    rate: Option<TokenBucket>,
    max_calls: usize,
    active: usize,
    recent: RecentCalls,
}

/// A next hop's admission state.
#[derive(Debug, Clone, Default)]
struct NextHop {
    rate: Option<TokenBucket>,
    down_until: Option<Instant>,
    failures: u32,
}

/// Why a call was not admitted, and when a retry can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) reason: RefuseReason,
    pub(crate) retry_after: Duration,
}

/// What one new call asks of admission.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ask<'a> {
    /// The trunk the call comes from (inbound) or goes to (outbound).
    pub(crate) trunk: &'a str,
    /// The trunk sends the call (inbound): its own rate applies.
    pub(crate) from_trunk: bool,
    /// Where the callee-side INVITE goes.
    pub(crate) next_hop: SocketAddr,
}

/// Rate, concurrency and next-hop state (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    global: Option<TokenBucket>,
    trunks: FxHashMap<String, TrunkAdmission>,
    next_hops: FxHashMap<SocketAddr, NextHop>,
    backoff: Duration,
    /// Retry-After for refusals whose end cannot be predicted (concurrency caps).
    retry_after: Duration,
    /// The first `now` seen: seconds for the recent-calls windows count from it.
    epoch: Option<Instant>,
}

fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(Duration::from_secs(1))
}

impl Admission {
    pub(crate) fn new(cfg: &Config) -> Admission {
        let mut a = Admission {
            global: None,
            trunks: FxHashMap::default(),
            next_hops: FxHashMap::default(),
            backoff: Duration::ZERO,
            retry_after: Duration::ZERO,
            epoch: None,
        };
        a.reconfigure(cfg);
        a
    }

    /// Applies new limits; calls in progress, saved tokens of unchanged limits and next-hop
    /// failures are kept.
    pub(crate) fn reconfigure(&mut self, cfg: &Config) {
        self.global = rebucket(self.global.take(), cfg.sip.max_cps);
        self.backoff = cfg.sip.next_hop_backoff.max(Duration::from_secs(1));
        self.retry_after = Duration::from_secs(u64::from(cfg.sip.retry_after.max(1)));
        let mut trunks = FxHashMap::default();
        let mut hops: FxHashMap<SocketAddr, NextHop> = FxHashMap::default();
        let mut hop = |addr: SocketAddr, limit: Option<RateLimit>, old: &mut FxHashMap<_, _>| {
            let o: NextHop = old.remove(&addr).unwrap_or_default();
            hops.insert(
                addr,
                NextHop {
                    rate: rebucket(o.rate, limit),
                    ..o
                },
            );
        };
        hop(
            cfg.int.next_hop,
            cfg.int.next_hop_max_cps,
            &mut self.next_hops,
        );
        for t in &cfg.trunks {
            let old = self.trunks.remove(&t.name).unwrap_or_default();
            trunks.insert(
                t.name.clone(),
                TrunkAdmission {
                    rate: rebucket(old.rate, t.max_cps),
                    max_calls: t.max_calls,
                    active: old.active,
                    recent: old.recent,
                },
            );
            hop(t.addr, t.out_max_cps, &mut self.next_hops);
        }
        // A trunk removed by a reload keeps counting its calls until they end.
        for (name, old) in self.trunks.drain() {
            if old.active > 0 {
                trunks.insert(
                    name,
                    TrunkAdmission {
                        rate: None,
                        max_calls: 0,
                        ..old
                    },
                );
            }
        }
        self.trunks = trunks;
        self.next_hops = hops;
    }

    /// Whether a new call may start, without taking anything.
    pub(crate) fn check(&mut self, ask: Ask<'_>, now: Instant) -> Result<(), Refusal> {
        let rate = |reason, wait: Duration| Refusal {
            reason,
            retry_after: whole_seconds(wait),
        };
        if let Some(t) = self.trunks.get_mut(ask.trunk) {
            if t.max_calls > 0 && t.active >= t.max_calls {
                return Err(Refusal {
                    reason: RefuseReason::TrunkCalls,
                    retry_after: self.retry_after,
                });
            }
            if ask.from_trunk
                && let Some(b) = t.rate.as_mut()
            {
                b.check(now).map_err(|w| rate(RefuseReason::TrunkRate, w))?;
            }
        }
        if let Some(b) = self.global.as_mut() {
            b.check(now)
                .map_err(|w| rate(RefuseReason::RateLimited, w))?;
        }
        self.check_next_hop(ask.next_hop, now)
    }

    /// Whether `addr` takes a call now: not marked down, and under its rate cap.
    pub(crate) fn check_next_hop(&mut self, addr: SocketAddr, now: Instant) -> Result<(), Refusal> {
        let Some(h) = self.next_hops.get_mut(&addr) else {
            return Ok(());
        };
        if let Some(until) = h.down_until {
            if now < until {
                return Err(Refusal {
                    reason: RefuseReason::NextHopDown,
                    retry_after: whole_seconds(until - now),
                });
            }
            h.down_until = None;
        }
        if let Some(b) = h.rate.as_mut() {
            b.check(now).map_err(|w| Refusal {
                reason: RefuseReason::NextHopRate,
                retry_after: whole_seconds(w),
            })?;
        }
        Ok(())
    }

    /// Takes what an admitted call uses: its tokens and a place in its trunk's calls. Call
    /// after a successful [`Admission::check`] with the same `ask` and `now`.
    pub(crate) fn commit(&mut self, ask: Ask<'_>, now: Instant) {
        if let Some(b) = self.global.as_mut() {
            b.take();
        }
        let sec = self.second(now);
        if let Some(t) = self.trunks.get_mut(ask.trunk) {
            if ask.from_trunk
                && let Some(b) = t.rate.as_mut()
            {
                b.take();
            }
            t.active += 1;
            t.recent.add(sec);
        }
        self.take_next_hop(ask.next_hop);
    }

    /// Takes a next hop's token (failover to another trunk: the call itself is admitted).
    pub(crate) fn take_next_hop(&mut self, addr: SocketAddr) {
        if let Some(b) = self.next_hops.get_mut(&addr).and_then(|h| h.rate.as_mut()) {
            b.take();
        }
    }

    /// Whether `trunk` can take one more call (failover).
    pub(crate) fn trunk_has_room(&self, trunk: &str) -> bool {
        self.trunks
            .get(trunk)
            .is_none_or(|t| t.max_calls == 0 || t.active < t.max_calls)
    }

    /// A call counted against `trunk` moves to `to` (failover).
    pub(crate) fn move_call(&mut self, from: &str, to: &str) {
        self.release(from);
        if let Some(t) = self.trunks.get_mut(to) {
            t.active += 1;
        }
    }

    /// A call restored after a restart counts against `trunk` again (no tokens taken).
    pub(crate) fn adopt(&mut self, trunk: &str) {
        if let Some(t) = self.trunks.get_mut(trunk) {
            t.active += 1;
        }
    }

    /// A call counted against `trunk` ended.
    pub(crate) fn release(&mut self, trunk: &str) {
        if let Some(t) = self.trunks.get_mut(trunk) {
            t.active = t.active.saturating_sub(1);
        }
    }

    fn second(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        now.saturating_duration_since(epoch).as_secs()
    }

    /// Calls admitted through `trunk` per second, over the last minute.
    pub(crate) fn recent_cps(&self, trunk: &str, now: Instant) -> f64 {
        let sec = self
            .epoch
            .map_or(0, |e| now.saturating_duration_since(e).as_secs());
        self.trunks
            .get(trunk)
            .map_or(0.0, |t| t.recent.per_second(sec))
    }

    /// How much longer `addr` stays marked down, if it is.
    pub(crate) fn down_for(&self, addr: SocketAddr, now: Instant) -> Option<Duration> {
        self.next_hops
            .get(&addr)
            .and_then(|h| h.down_until)
            .filter(|u| now < *u)
            .map(|u| u - now)
    }

    /// Calls in progress counted against `trunk`.
    pub(crate) fn active(&self, trunk: &str) -> usize {
        self.trunks.get(trunk).map_or(0, |t| t.active)
    }

    /// A next hop answered an INVITE with a final `status`: 503 marks it down (for
    /// `retry_after`, else the backoff); anything else clears its failures. Returns the change
    /// of state, if any: `Some(false)` newly down, `Some(true)` taking calls again after
    /// failures.
    pub(crate) fn answered(
        &mut self,
        addr: SocketAddr,
        status: u16,
        retry_after: Option<Duration>,
        now: Instant,
    ) -> Option<bool> {
        if status == 503 {
            return self.mark_down(addr, retry_after, now).then_some(false);
        }
        let h = self.next_hops.get_mut(&addr)?;
        let recovered = h.failures > 0;
        h.failures = 0;
        h.down_until = None;
        recovered.then_some(true)
    }

    /// A next hop did not answer (timeout) or could not be reached: mark it down with backoff.
    pub(crate) fn failed(&mut self, addr: SocketAddr, now: Instant) -> bool {
        self.mark_down(addr, None, now)
    }

    fn mark_down(&mut self, addr: SocketAddr, for_: Option<Duration>, now: Instant) -> bool {
        let base = self.backoff;
        let h = self.next_hops.entry(addr).or_default();
        let was_down = h.down_until.is_some_and(|u| now < u);
        let backoff = base
            .saturating_mul(1u32 << h.failures.min(16))
            .min(MAX_BACKOFF);
        h.failures = h.failures.saturating_add(1);
        let d = for_.map_or(backoff, |d| d.min(MAX_BACKOFF));
        let until = crate::timers::later(now, d);
        h.down_until = Some(h.down_until.map_or(until, |u| u.max(until)));
        !was_down
    }

    /// Whether `addr` is marked down at `now`.
    pub(crate) fn is_down(&self, addr: SocketAddr, now: Instant) -> bool {
        self.down_for(addr, now).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ExtConfig, IntConfig, Trunk};
    use crate::types::Transport;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn cfg() -> Config {
        let mut c = Config::new(
            ExtConfig {
                sip_addr: sa("10.0.1.1:5060"),
                media_ip: "10.0.1.1".parse().unwrap(),
                transport: Transport::Tcp,
            },
            IntConfig {
                sip_addr: sa("10.0.2.1:5061"),
                media_ip: "10.0.2.1".parse().unwrap(),
                next_hop: sa("10.0.2.2:5061"),
                next_hop_host: "proxy".into(),
                next_hop_max_cps: Some(RateLimit {
                    per_second: 20,
                    burst: 20,
                }),
                alternates: Vec::new(),
            },
        );
        let mut t = Trunk::new("gw1", sa("10.0.1.2:5060"), Transport::Tcp);
        t.max_cps = Some(RateLimit {
            per_second: 10,
            burst: 5,
        });
        t.max_calls = 8;
        c.trunks.push(t);
        c.sip.max_cps = Some(RateLimit {
            per_second: 100,
            burst: 100,
        });
        c
    }

    fn ask(c: &Config) -> Ask<'_> {
        Ask {
            trunk: "gw1",
            from_trunk: true,
            next_hop: c.int.next_hop,
        }
    }

    fn admit(a: &mut Admission, c: &Config, now: Instant) -> Result<(), Refusal> {
        a.check(ask(c), now)?;
        a.commit(ask(c), now);
        Ok(())
    }

    #[test]
    fn trunk_rate_is_a_token_bucket_with_burst() {
        let c = cfg();
        let mut a = Admission::new(&c);
        let t0 = Instant::now();
        for _ in 0..5 {
            admit(&mut a, &c, t0).unwrap();
            a.release("gw1");
        }
        let r = admit(&mut a, &c, t0).unwrap_err();
        assert_eq!(r.reason, RefuseReason::TrunkRate);
        assert_eq!(r.retry_after, Duration::from_secs(1));
        // 10/s: one token every 100 ms.
        admit(&mut a, &c, t0 + Duration::from_millis(100)).unwrap();
        a.release("gw1");
        assert!(admit(&mut a, &c, t0 + Duration::from_millis(150)).is_err());
        // Over 10 s at most burst + 10 * 10 calls get through, whatever is offered.
        let mut ok = 0;
        for i in 0..3000u64 {
            let now = t0 + Duration::from_millis(200) + Duration::from_micros(i * 3333);
            if admit(&mut a, &c, now).is_ok() {
                ok += 1;
                a.release("gw1");
            }
        }
        assert!((95..=106).contains(&ok), "{ok} calls admitted");
    }

    #[test]
    fn a_refusal_takes_no_token() {
        let mut c = cfg();
        c.trunks[0].max_calls = 1;
        let mut a = Admission::new(&c);
        let t0 = Instant::now();
        admit(&mut a, &c, t0).unwrap();
        for _ in 0..10 {
            assert_eq!(
                admit(&mut a, &c, t0).unwrap_err().reason,
                RefuseReason::TrunkCalls
            );
        }
        a.release("gw1");
        // Four tokens of the burst of five are still there.
        for _ in 0..4 {
            admit(&mut a, &c, t0).unwrap();
            a.release("gw1");
        }
        assert_eq!(
            admit(&mut a, &c, t0).unwrap_err().reason,
            RefuseReason::TrunkRate
        );
    }

    #[test]
    fn concurrency_per_trunk() {
        let mut c = cfg();
        c.trunks[0].max_cps = None;
        let mut a = Admission::new(&c);
        let t0 = Instant::now();
        for _ in 0..8 {
            admit(&mut a, &c, t0).unwrap();
        }
        assert_eq!(a.active("gw1"), 8);
        let r = admit(&mut a, &c, t0).unwrap_err();
        assert_eq!(r.reason, RefuseReason::TrunkCalls);
        assert_eq!(r.retry_after, Duration::from_secs(30));
        a.release("gw1");
        admit(&mut a, &c, t0).unwrap();
    }

    #[test]
    fn next_hop_rate_cap_and_global_rate() {
        let mut c = cfg();
        c.trunks[0].max_cps = None;
        c.trunks[0].max_calls = 0;
        let mut a = Admission::new(&c);
        let t0 = Instant::now();
        for _ in 0..20 {
            admit(&mut a, &c, t0).unwrap();
        }
        assert_eq!(
            admit(&mut a, &c, t0).unwrap_err().reason,
            RefuseReason::NextHopRate
        );
        c.int.next_hop_max_cps = None;
        a.reconfigure(&c);
        for _ in 0..80 {
            admit(&mut a, &c, t0).unwrap();
        }
        assert_eq!(
            admit(&mut a, &c, t0).unwrap_err().reason,
            RefuseReason::RateLimited
        );
        assert_eq!(a.active("gw1"), 100, "reload keeps calls in progress");
    }

    #[test]
    fn next_hop_down_after_503_and_timeouts_with_backoff() {
        let mut c = cfg();
        c.sip.next_hop_backoff = Duration::from_secs(5);
        let mut a = Admission::new(&c);
        let hop = c.int.next_hop;
        let t0 = Instant::now();
        // 503 with Retry-After 12 s.
        assert_eq!(
            a.answered(hop, 503, Some(Duration::from_secs(12)), t0),
            Some(false)
        );
        let r = a
            .check_next_hop(hop, t0 + Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(r.reason, RefuseReason::NextHopDown);
        assert_eq!(r.retry_after, Duration::from_secs(11));
        a.check_next_hop(hop, t0 + Duration::from_secs(12)).unwrap();
        // Failures in a row double the backoff: the second one (no Retry-After) is 10 s.
        assert!(a.failed(hop, t0 + Duration::from_secs(12)));
        assert!(a.is_down(hop, t0 + Duration::from_secs(21)));
        assert!(!a.is_down(hop, t0 + Duration::from_secs(22)));
        // A success clears the failures: the next backoff is the base again.
        assert_eq!(
            a.answered(hop, 200, None, t0 + Duration::from_secs(23)),
            Some(true)
        );
        a.failed(hop, t0 + Duration::from_secs(30));
        assert!(!a.is_down(hop, t0 + Duration::from_secs(35)));
        // Never longer than MAX_BACKOFF.
        for i in 0..40 {
            a.failed(hop, t0 + Duration::from_secs(100 + i));
        }
        assert!(!a.is_down(hop, t0 + Duration::from_secs(140) + MAX_BACKOFF));
    }
}
