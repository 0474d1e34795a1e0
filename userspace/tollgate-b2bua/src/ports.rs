//! Relay port allocation, one pool per NIC: RTP on even ports, RTCP on RTP + 1. Freed ports go
//! to the back of the queue so a port is not reused at once (late packets of the old call).

use std::collections::VecDeque;
use std::ops::RangeInclusive;

use rustc_hash::FxHashSet;

/// Number of RTP/RTCP pairs (even port p with p + 1 also in range) in `range`.
pub fn pair_count(range: &RangeInclusive<u16>) -> usize {
    even_ports(range).count()
}

fn even_ports(range: &RangeInclusive<u16>) -> impl Iterator<Item = u16> + '_ {
    let start = *range.start();
    let first = start.saturating_add(start & 1);
    let end = *range.end();
    (first..=end)
        .step_by(2)
        .filter(move |&p| p % 2 == 0 && p < end && p.checked_add(1).is_some())
}

/// A pool of even RTP ports.
#[derive(Debug, Clone)]
pub struct PortPool {
    range: RangeInclusive<u16>,
    free: VecDeque<u16>,
    used: FxHashSet<u16>,
}

impl PortPool {
    /// Every pair of `range` free.
    pub fn new(range: RangeInclusive<u16>) -> PortPool {
        let free = even_ports(&range).collect();
        PortPool {
            range,
            free,
            used: FxHashSet::default(),
        }
    }

    /// Takes a free RTP port.
    pub fn alloc(&mut self) -> Option<u16> {
        // A port claimed by a restored call is still queued: skip it.
        loop {
            let p = self.free.pop_front()?;
            if self.used.insert(p) {
                return Some(p);
            }
        }
    }

    /// Takes this RTP port (a call restored from the call-state store keeps its ports).
    /// Refused (false) for a port that is odd, outside the range or in use.
    pub fn claim(&mut self, port: u16) -> bool {
        if !port.is_multiple_of(2) || !self.in_range(port) {
            return false;
        }
        self.used.insert(port)
    }

    /// Returns a port. Ports outside the current range (after a reload) are dropped.
    pub fn release(&mut self, port: u16) {
        if self.used.remove(&port) && self.in_range(port) {
            self.free.push_back(port);
        }
    }

    /// Ports in use.
    pub fn in_use(&self) -> usize {
        self.used.len()
    }

    fn in_range(&self, port: u16) -> bool {
        self.range.contains(&port) && self.range.contains(&port.saturating_add(1))
    }

    /// Switches to a new range, keeping the ports in use (they are released normally later).
    pub fn reconfigure(&mut self, range: RangeInclusive<u16>) {
        if range == self.range {
            return;
        }
        self.free = even_ports(&range)
            .filter(|p| !self.used.contains(p))
            .collect();
        self.range = range;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_pairs_only() {
        assert_eq!(pair_count(&(20000..=20005)), 3);
        assert_eq!(pair_count(&(20001..=20004)), 1);
        assert_eq!(pair_count(&(20000..=20000)), 0);
        assert_eq!(pair_count(&(65534..=65535)), 1);
        let mut p = PortPool::new(20001..=20006);
        assert_eq!(p.alloc(), Some(20002));
        assert_eq!(p.alloc(), Some(20004));
        assert_eq!(p.alloc(), None);
        p.release(20002);
        p.release(20002);
        assert_eq!(p.in_use(), 1);
        p.reconfigure(20010..=20013);
        assert_eq!(p.alloc(), Some(20010));
        p.release(20004); // outside the new range: dropped
        assert_eq!(p.alloc(), Some(20012));
        assert_eq!(p.alloc(), None);
        assert_eq!(p.in_use(), 2);
    }

    #[test]
    fn claimed_ports_are_skipped() {
        let mut p = PortPool::new(20000..=20007);
        assert!(p.claim(20002));
        assert!(!p.claim(20002), "claimed twice");
        assert!(!p.claim(20003), "odd");
        assert!(!p.claim(30000), "outside");
        assert_eq!(p.alloc(), Some(20000));
        assert_eq!(p.alloc(), Some(20004));
        assert_eq!(p.alloc(), Some(20006));
        assert_eq!(p.alloc(), None);
        p.release(20002);
        assert_eq!(p.alloc(), Some(20002));
        assert_eq!(p.in_use(), 4);
    }
}
