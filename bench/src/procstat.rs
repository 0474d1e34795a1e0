//! CPU time and memory of processes and threads from `/proc`, and per-namespace UDP counters.
//!
//! CPU time is read two ways: `utime + stime` from `/proc/<pid>/stat` (clock ticks, split into
//! user and system) and the scheduler's exact run time from `/proc/<pid>/task/<tid>/schedstat`
//! (nanoseconds, summed over the process's threads). The benchmarks use the nanosecond figure
//! and report the user/system split from `stat`. On this kernel (tick accounting, no
//! `IRQ_TIME_ACCOUNTING`), softirq work done inside a thread's syscall is charged to that thread.

use std::fs;

/// A process's CPU time at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSample {
    /// User time, ns (from clock ticks).
    pub user_ns: u64,
    /// System time, ns (from clock ticks).
    pub sys_ns: u64,
    /// Scheduler run time summed over live threads, ns.
    pub run_ns: u64,
}

impl CpuSample {
    /// `self - earlier`, saturating.
    pub fn since(&self, earlier: &CpuSample) -> CpuSample {
        CpuSample {
            user_ns: self.user_ns.saturating_sub(earlier.user_ns),
            sys_ns: self.sys_ns.saturating_sub(earlier.sys_ns),
            run_ns: self.run_ns.saturating_sub(earlier.run_ns),
        }
    }
}

fn tick_ns() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        10_000_000
    } else {
        1_000_000_000 / hz as u64
    }
}

/// `(utime, stime)` in ticks from a `stat` file's text (the comm field may hold spaces).
pub fn parse_stat_times(text: &str) -> Option<(u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state(0) ppid(1) ... utime is field 14 overall = index 11 here.
    Some((f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?))
}

/// Run time (ns) of one task from its `schedstat` text.
pub fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// CPU time of process `pid` (all its threads).
pub fn process_cpu(pid: u32) -> Option<CpuSample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (u, s) = parse_stat_times(&stat)?;
    let t = tick_ns();
    let mut run = 0;
    for e in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        if let Some(ns) = fs::read_to_string(e.path().join("schedstat"))
            .ok()
            .as_deref()
            .and_then(parse_schedstat)
        {
            run += ns;
        }
    }
    Some(CpuSample {
        user_ns: u * t,
        sys_ns: s * t,
        run_ns: run,
    })
}

/// Run time (ns) of one thread.
pub fn thread_run_ns(pid: u32, tid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat"))
        .ok()
        .as_deref()
        .and_then(parse_schedstat)
}

/// CPU time of one thread of `pid`: user and system time from its `stat` (clock ticks, so
/// sampled: exact only over many ticks) and its exact scheduler run time.
pub fn thread_cpu(pid: u32, tid: u32) -> Option<CpuSample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    let (u, s) = parse_stat_times(&stat)?;
    let t = tick_ns();
    Some(CpuSample {
        user_ns: u * t,
        sys_ns: s * t,
        run_ns: thread_run_ns(pid, tid)?,
    })
}

/// The threads of `pid`: (tid, name, run ns).
pub fn threads(pid: u32) -> Vec<(u32, String, u64)> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let ns = thread_run_ns(pid, tid).unwrap_or(0);
        out.push((tid, comm.trim().to_owned(), ns));
    }
    out
}

/// Resident set size of `pid` in KiB (`VmRSS`), and its peak (`VmHWM`).
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        s.lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The calling thread's id.
pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

/// Run time of the kernel's softirq threads (`ksoftirqd/N`), summed: softirq work that
/// overflowed out of the threads that raised it.
pub fn ksoftirqd_ns() -> u64 {
    let Ok(dir) = fs::read_dir("/proc") else {
        return 0;
    };
    let mut sum = 0;
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.starts_with("ksoftirqd/") {
            sum += thread_run_ns(pid, pid).unwrap_or(0);
        }
    }
    sum
}

/// UDP counters of the calling thread's network namespace (`/proc/thread-self/net/snmp`):
/// `(InDatagrams, NoPorts, InErrors, RcvbufErrors)`.
pub fn udp_counters() -> Option<(u64, u64, u64, u64)> {
    let s = fs::read_to_string("/proc/thread-self/net/snmp").ok()?;
    let mut lines = s.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let vals: Vec<&str> = lines.next()?.split_whitespace().collect();
    let get = |n: &str| -> Option<u64> {
        let i = names.iter().position(|x| *x == n)?;
        vals.get(i)?.parse().ok()
    };
    Some((
        get("InDatagrams")?,
        get("NoPorts")?,
        get("InErrors")?,
        get("RcvbufErrors")?,
    ))
}

/// eBPF maps held open by `pid` (from `/proc/<pid>/fdinfo`): how many, and the kernel memory
/// they are charged with (`memlock`, bytes). Hash maps are preallocated to their maximum size.
pub fn bpf_maps(pid: u32) -> (usize, u64) {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return (0, 0);
    };
    let (mut n, mut bytes) = (0, 0);
    for e in dir.flatten() {
        let Ok(s) = fs::read_to_string(e.path()) else {
            continue;
        };
        if !s.contains("map_type:") {
            continue;
        }
        n += 1;
        bytes += s
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    (n, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_comm() {
        let t = "1234 (tg xsk) S 1 1234 1234 0 -1 4194560 100 0 0 0 57 31 0 0 20 0 3 0 100";
        assert_eq!(parse_stat_times(t), Some((57, 31)));
        assert_eq!(parse_schedstat("123456 789 10\n"), Some(123_456));
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        let a = process_cpu(me).expect("own /proc");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i.wrapping_mul(i));
        }
        std::hint::black_box(x);
        let b = process_cpu(me).expect("own /proc");
        assert!(b.run_ns > a.run_ns);
        assert!(rss_kib(me).expect("status").0 > 0);
        assert!(threads(me).iter().any(|(t, _, _)| *t == gettid()));
    }
}
