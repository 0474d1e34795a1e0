//! A log-linear latency histogram (32 sub-buckets per power of two: about 3% resolution), cheap
//! enough to record every packet, mergeable, with quantiles.

/// Sub-bucket bits: 2^5 = 32 buckets per octave.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Octaves up to 2^40 ns (about 18 minutes).
const BUCKETS: usize = ((40 - SUB_BITS as usize + 1) + 1) * SUB as usize;

/// Counts of values (nanoseconds) in log-linear buckets.
#[derive(Clone, PartialEq, Eq)]
pub struct Hist {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl std::fmt::Debug for Hist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hist")
            .field("total", &self.total)
            .field("p50", &self.quantile(0.5))
            .field("max", &self.max)
            .finish()
    }
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= SUB_BITS
    let sub = (v >> (e - SUB_BITS)) & (SUB - 1);
    let i = ((e - SUB_BITS + 1) as u64 * SUB + sub) as usize;
    i.min(BUCKETS - 1)
}

/// The smallest value of bucket `i` and its width.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, 1);
    }
    let e = i / SUB - 1 + u64::from(SUB_BITS);
    let sub = i % SUB;
    let width = 1u64 << (e - u64::from(SUB_BITS));
    ((1u64 << e) + sub * width, width)
}

impl Hist {
    /// Records one value.
    #[inline]
    pub fn record(&mut self, v: u64) {
        if let Some(c) = self.counts.get_mut(index(v)) {
            *c += 1;
        }
        self.total += 1;
        self.max = self.max.max(v);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Largest value recorded.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, o: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.total += o.total;
        self.max = self.max.max(o.max);
    }

    /// The value at quantile `q` (0..=1): the middle of the bucket holding it; 0 if empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, w) = bounds(i);
                return (lo + w / 2).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_in_order() {
        let mut last = 0;
        for v in [
            0u64,
            1,
            31,
            32,
            33,
            63,
            64,
            100,
            1000,
            12_345,
            1 << 30,
            u64::MAX / 2,
        ] {
            let i = index(v);
            assert!(i >= last, "monotonic at {v}");
            last = i;
            let (lo, w) = bounds(i);
            if i < BUCKETS - 1 {
                assert!(lo <= v && v < lo + w, "{v} in [{lo}, {})", lo + w);
            }
        }
    }

    #[test]
    fn quantiles_within_resolution() {
        let mut h = Hist::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        for (q, want) in [
            (0.5, 5_000_000.0),
            (0.99, 9_900_000.0),
            (0.999, 9_990_000.0),
        ] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.04, "q{q}: {got} vs {want}");
        }
        let mut g = Hist::default();
        g.merge(&h);
        assert_eq!(g.count(), 10_000);
        assert_eq!(g.max(), 10_000_000);
        assert_eq!(Hist::default().quantile(0.5), 0);
    }
}
