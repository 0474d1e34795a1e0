//! Injected noise (`dataplane --noise <duty>`): a CPU hog on the load core and on the relay
//! core, each busy `duty` of every period and asleep for the rest, under SCHED_FIFO at a
//! priority above the relay's, the generator's and the sink's.
//!
//! On a shared VM, steal is the hypervisor running another tenant's vCPU instead of ours: the
//! guest's threads, whatever their priority, stop for a slice and find their queues and caches
//! as the slice left them. A higher-priority SCHED_FIFO thread taking the core for fixed slices
//! reproduces that from inside the guest (the preempted thread cannot run; packets pile up in
//! rings and socket buffers meanwhile), repeatably, so paths can be compared under the same
//! disturbance. It differs from real steal in that the hog's own work pollutes the caches and
//! counts as guest CPU time (not as `st`), and that the kernel's softirq work can still
//! interrupt it.

use super::*;

/// SCHED_FIFO priority of the hog: above every thread of the bench ([`RELAY_RT_PRIO`] 50).
pub(crate) const NOISE_RT_PRIO: i32 = 60;

/// Running hogs; dropping this stops and joins them.
pub(crate) struct Noise {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Noise {
    /// Starts one hog per CPU in `cpus`, busy `duty` (0..1) of every `period`.
    pub(crate) fn start(cpus: &[usize], duty: f64, period: Duration) -> anyhow::Result<Noise> {
        if !(0.0..0.95).contains(&duty) {
            bail!("--noise {duty}: the duty cycle must be in [0, 0.95) (RT throttling keeps 5%)");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for &cpu in cpus {
            let stop = Arc::clone(&stop);
            let busy = period.mul_f64(duty);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("noise-{cpu}"))
                    .spawn(move || hog(cpu, busy, period, &stop))?,
            );
        }
        Ok(Noise { stop, threads })
    }
}

impl Drop for Noise {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Spins for `busy` at the start of every `period` on `cpu`, sleeping (absolute deadlines, so
/// the phase does not drift) in between.
fn hog(cpu: usize, busy: Duration, period: Duration, stop: &AtomicBool) {
    pin(cpu, NOISE_RT_PRIO);
    let mut next = Instant::now();
    let mut x = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let end = next + busy;
        while Instant::now() < end {
            // Some work the compiler cannot drop, touching no memory.
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}
