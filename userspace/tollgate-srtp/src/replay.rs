//! Index estimation and the replay window.
//!
//! * [`estimate`] guesses a packet's 48-bit SRTP index from its 16-bit sequence number and the
//!   highest index seen (RFC 3711 §3.3.1), exactly as libsrtp's `srtp_rdbx_estimate_index`
//!   does, including its rule that while the highest index is at most 2^15 the ROC is taken
//!   as 0 (so a stream that starts high never guesses ROC = -1).
//! * [`Window`] is a sliding bitmap of the last `W` indices below the highest, kept as a ring
//!   of 64-bit words indexed by `index / 64`, so advancing costs one cleared word per 64
//!   indices instead of a multi-word shift. Accepted: any index above the highest, or one at
//!   most `W - 1` below it that has not been seen (libsrtp's `srtp_rdbx_check`). The same
//!   window serves SRTCP's 31-bit index (libsrtp's `srtp_rdb_t` accepts exactly the same set
//!   with its fixed 128-bit window).

/// Sequence numbers at or below this highest index are taken as ROC 0 (libsrtp).
const SEQ_MEDIAN: u64 = 1 << 15;

/// Signed distance from the highest index `index` to the estimated index of a packet with
/// sequence number `seq`. The estimated index is `index + delta`.
#[inline]
pub(crate) fn estimate(index: u64, seq: u16) -> i64 {
    let s = i64::from(seq);
    if index > SEQ_MEDIAN {
        let ls = (index & 0xffff) as i64;
        if ls < SEQ_MEDIAN as i64 {
            if s - ls > SEQ_MEDIAN as i64 {
                s - ls - 0x1_0000
            } else {
                s - ls
            }
        } else if ls - SEQ_MEDIAN as i64 > s {
            s - ls + 0x1_0000
        } else {
            s - ls
        }
    } else {
        s - index as i64
    }
}

/// Outcome of a replay check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    Fresh,
    Replayed,
    TooOld,
}

/// Geometry of the windows of one context: `W` bits of history in a ring of `words`
/// (a power of two) 64-bit words.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub(crate) size: u64,
    pub(crate) words: usize,
}

impl Geometry {
    pub(crate) fn new(size: usize) -> Geometry {
        // The ring must hold the highest index's word plus every word reaching back W-1.
        let words = ((size - 1) / 64 + 2).next_power_of_two();
        Geometry {
            size: size as u64,
            words,
        }
    }

    /// Checks `index + delta` against a window whose highest index is `index`.
    #[inline]
    pub(crate) fn check(&self, bits: &[u64], index: u64, delta: i64) -> Check {
        if delta > 0 {
            return Check::Fresh;
        }
        if delta.unsigned_abs() >= self.size {
            return Check::TooOld;
        }
        let est = index.wrapping_sub(delta.unsigned_abs());
        let w = (est >> 6) as usize & (self.words - 1);
        match bits.get(w) {
            Some(word) if word & (1u64 << (est & 63)) != 0 => Check::Replayed,
            _ => Check::Fresh,
        }
    }

    /// Records `index + delta` (which must have passed [`Geometry::check`]) and moves the
    /// highest index forward if it is newer.
    #[inline]
    pub(crate) fn add(&self, bits: &mut [u64], index: &mut u64, delta: i64) {
        let mask = self.words - 1;
        let est = if delta > 0 {
            let new = *index + delta as u64;
            let old_word = *index >> 6;
            let new_word = new >> 6;
            let n = (new_word - old_word).min(self.words as u64);
            for i in 1..=n {
                if let Some(w) = bits.get_mut((old_word + i) as usize & mask) {
                    *w = 0;
                }
            }
            *index = new;
            new
        } else {
            index.wrapping_sub(delta.unsigned_abs())
        };
        if let Some(w) = bits.get_mut((est >> 6) as usize & mask) {
            *w |= 1u64 << (est & 63);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A straightforward model of libsrtp's bitvector window (shift on advance).
    struct Model {
        index: u64,
        seen: std::collections::BTreeSet<u64>,
        size: u64,
    }

    impl Model {
        fn check(&self, delta: i64) -> Check {
            if delta > 0 {
                Check::Fresh
            } else if (self.size as i64 - 1) + delta < 0 {
                Check::TooOld
            } else if self.seen.contains(&(self.index - delta.unsigned_abs())) {
                Check::Replayed
            } else {
                Check::Fresh
            }
        }
        fn add(&mut self, delta: i64) {
            if delta > 0 {
                self.index += delta as u64;
            }
            self.seen
                .insert(self.index - if delta > 0 { 0 } else { delta.unsigned_abs() });
        }
    }

    #[test]
    fn ring_window_matches_model() {
        for size in [128usize, 192, 256, 1024] {
            let g = Geometry::new(size);
            let mut bits = vec![0u64; g.words];
            let mut index = 0u64;
            let mut m = Model {
                index: 0,
                seen: Default::default(),
                size: size as u64,
            };
            let mut x = 12345u64;
            for _ in 0..200_000 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let r = (x >> 33) % 100;
                let delta: i64 = if r < 60 {
                    1
                } else if r < 80 {
                    -((x >> 40) as i64 % (size as i64 + 40))
                } else if r < 95 {
                    ((x >> 40) % 300) as i64
                } else {
                    0
                };
                if delta < 0 && delta.unsigned_abs() > index {
                    continue;
                }
                let got = g.check(&bits, index, delta);
                assert_eq!(
                    got,
                    m.check(delta),
                    "size {size} index {index} delta {delta}"
                );
                if got == Check::Fresh {
                    g.add(&mut bits, &mut index, delta);
                    m.add(delta);
                }
                assert_eq!(index, m.index);
            }
        }
    }

    #[test]
    fn estimate_crosses_the_wrap() {
        // Highest 65535 (ROC 0): seq 0 is ROC 1.
        assert_eq!(estimate(65535, 0), 1);
        // Highest 1<<16 | 5 (ROC 1): seq 65530 is late, ROC 0.
        assert_eq!(estimate((1 << 16) | 5, 65530), -11);
        // Early stream: highest 100 takes seq 65500 as ROC 0, far ahead (libsrtp).
        assert_eq!(estimate(100, 65500), 65400);
        assert_eq!(estimate(100, 50), -50);
    }
}
