//! Shared helpers of Tollgate's benchmarks: thread CPU time and medians, and the pieces of the
//! lab benchmarks (`dp-bench`, `relay-bench`).
//!
//! * [`flows`]: the deterministic flow plan (ports, SSRCs, keys) every process derives alike.
//! * [`generator`]: the `AF_PACKET` G.711 RTP generator (paced, batched `sendmmsg`).
//! * [`sink`]: the SRTP-verifying, latency-measuring sink.
//! * [`hist`]: the latency histogram.
//! * [`procstat`]: CPU time and memory from `/proc`.
//! * [`ng`]: rtpengine's ng control protocol (bencode over UDP) and the SDP it exchanges.
//! * [`plot`]: SVG line charts for the reports.
//! * [`steal`]: the VM's CPU steal from `/proc/stat`, recorded with each measurement.

pub mod flows;
pub mod generator;
pub mod hist;
pub mod ng;
pub mod plot;
pub mod procstat;
pub mod sink;
pub mod steal;

/// CPU time consumed by the calling thread, in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Pins the calling thread to the CPU it is running on, so a measurement stays on one core.
/// Returns the CPU, or `None` if pinning failed.
pub fn pin_to_current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    if cpu < 0 {
        return None;
    }
    // SAFETY: set is a zeroed cpu_set_t filled by CPU_SET; 0 means the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return None;
        }
    }
    Some(cpu as usize)
}

/// Keeps the calling thread, and the threads it starts afterwards, off the CPUs in `avoid`
/// (when other CPUs remain). Returns the CPUs it may run on, or `None` if nothing changed.
pub fn avoid_cpus(avoid: &[usize]) -> Option<Vec<usize>> {
    let n = std::thread::available_parallelism().ok()?.get();
    let keep: Vec<usize> = (0..n).filter(|c| !avoid.contains(c)).collect();
    if keep.is_empty() || keep.len() == n {
        return None;
    }
    // SAFETY: set is a zeroed cpu_set_t filled by CPU_SET; 0 means the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in &keep {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return None;
        }
    }
    Some(keep)
}

/// The median of a non-empty list (mean of the middle two for even lengths).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The report directory `out` (created, made absolute), a fresh `<name>-work` directory in it,
/// and the `tollgate` binary made absolute: what every bench that runs Tollgate starts with.
pub fn report_dirs(
    out: &std::path::Path,
    name: &str,
    tollgate: &std::path::Path,
) -> std::io::Result<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    std::fs::create_dir_all(out)?;
    let out = std::fs::canonicalize(out)?;
    let work = out.join(format!("{name}-work"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let tollgate = std::fs::canonicalize(tollgate)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", tollgate.display())))?;
    Ok((out, work, tollgate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_clock() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let a = thread_cpu_ns();
        let mut x = 0u64;
        for i in 0..100_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu_ns() >= a);
    }
}
