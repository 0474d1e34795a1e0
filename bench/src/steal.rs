//! CPU steal of this VM from `/proc/stat`: the share of time the hypervisor ran something else
//! while this machine's CPUs wanted to run (`st` in vmstat). The benchmarks record it with each
//! measurement, so a figure taken under steal can be told from one that was not.

/// The aggregate `cpu` line of `/proc/stat`: total and steal jiffies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// All jiffies (user, nice, system, idle, iowait, irq, softirq, steal).
    pub total: u64,
    /// Steal jiffies.
    pub steal: u64,
}

impl CpuTimes {
    /// Parses the first (`cpu `) line of `/proc/stat` text.
    pub fn parse(text: &str) -> Option<CpuTimes> {
        let line = text.lines().find(|l| l.starts_with("cpu "))?;
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        Some(CpuTimes {
            total: f.iter().sum(),
            steal: *f.get(7)?,
        })
    }

    /// Reads `/proc/stat` now.
    pub fn now() -> Option<CpuTimes> {
        CpuTimes::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Steal as a percentage of all CPU time between `earlier` and `self`.
    pub fn steal_pct_since(&self, earlier: &CpuTimes) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        100.0 * self.steal.saturating_sub(earlier.steal) as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_cpu_line() {
        let a = CpuTimes::parse("cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 1 2 3\n").unwrap();
        assert_eq!(
            a,
            CpuTimes {
                total: 1000,
                steal: 35
            }
        );
        let b = CpuTimes {
            total: 2000,
            steal: 235,
        };
        assert!((b.steal_pct_since(&a) - 20.0).abs() < 1e-9);
        assert!(CpuTimes::parse("intr 1 2 3\n").is_none());
    }
}
