//! `relay-bench`: the relay under test as its own process, so its CPU time and memory can be
//! read from `/proc` apart from the generator's and the sink's.
//!
//! Run it inside the lab's relay namespace (`ip netns exec <relay> taskset -c <cpu> relay-bench
//! ...`). It starts a [`Dataplane`] with one worker pinned to `--cpu`, installs the benchmark's
//! flow plan (`tollgate_bench::flows::Plan::lab(--flows)`), waits until every worker holds every
//! flow and every next hop is resolved, then prints one line `READY <json>` (install time,
//! memory before and after) and serves commands on stdin, one per line:
//! * `stats`: prints `STATS <json>` (worker and XDP counters);
//! * `quit` (or end of input): stops the data plane and exits.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use serde_json::json;
use tollgate_bench::flows::Plan;
use tollgate_bench::procstat::rss_kib;
use tollgate_dataplane::{DataPath, Dataplane, DataplaneConfig, XdpSettings, XdpWorker};

#[derive(Parser, Debug)]
#[command(about = "Tollgate's data plane as a separate process for benchmarks")]
struct Args {
    /// `xdp`, `socket` or `floor` (the XDP path with the null worker: headers rewritten, no
    /// SRTP; the benchmarks' floor).
    #[arg(long)]
    path: String,
    /// Flows of the plan to install.
    #[arg(long)]
    flows: usize,
    /// CPU to pin the worker to.
    #[arg(long)]
    cpu: Option<usize>,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Gateway-side interface.
    #[arg(long, default_value = "ext0")]
    ext_if: String,
    /// Internal-side interface.
    #[arg(long, default_value = "int0")]
    int_if: String,
    /// UMEM frames per worker (XDP path; default: the data plane's).
    #[arg(long)]
    frames: Option<u32>,
    /// XDP workers' interrupt moderation window, µs (0: wake per frame).
    #[arg(long, default_value_t = tollgate_dataplane::DEFAULT_COALESCE_US)]
    coalesce_us: u32,
}

fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    raise_nofile();
    let path = match a.path.as_str() {
        "xdp" | "floor" => {
            let mut x = XdpSettings::new(&a.ext_if, &a.int_if);
            if let Some(f) = a.frames {
                x.frames = f;
            }
            DataPath::Xdp(x)
        }
        "socket" => DataPath::Socket,
        other => bail!("unknown path {other} (xdp, socket or floor)"),
    };
    let pid = std::process::id();
    let mut cfg = DataplaneConfig::new(path, a.workers);
    cfg.coalesce_us = a.coalesce_us;
    if a.path == "floor" {
        cfg.xdp_worker = XdpWorker::Floor;
    }
    if let Some(c) = a.cpu {
        cfg.cpus = (0..a.workers).map(|_| c).collect();
    }
    let mut dp = Dataplane::start(cfg).context("starting the data plane")?;
    let (rss_before, _) = rss_kib(pid).unwrap_or((0, 0));
    let plan = Plan::lab(a.flows);
    let t0 = Instant::now();
    for i in 0..a.flows {
        dp.install(plan.spec(i))
            .with_context(|| format!("installing flow {i}"))?;
    }
    let api_ns = t0.elapsed().as_nanos() as u64;
    // Wait for the workers to apply every install.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = dp.stats();
        let want = match dp.path() {
            DataPath::Xdp(_) => a.flows as u64 * a.workers as u64,
            DataPath::Socket => a.flows as u64,
        };
        if s.workers.iter().map(|w| w.flows).sum::<u64>() >= want {
            break;
        }
        if Instant::now() > deadline {
            bail!("workers did not apply {want} flow installs in 120 s");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let applied_ns = t0.elapsed().as_nanos() as u64;
    let mut unresolved = dp.refresh_next_hops();
    let deadline = Instant::now() + Duration::from_secs(5);
    while unresolved > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        unresolved = dp.refresh_next_hops();
    }
    let (rss_after, hwm) = rss_kib(pid).unwrap_or((0, 0));
    let worker_tids: Vec<(u32, String, u64)> = tollgate_bench::procstat::threads(pid)
        .into_iter()
        .filter(|(_, n, _)| n.starts_with("tg-"))
        .collect();
    let ready = json!({
        "pid": pid,
        "flows": a.flows,
        "install_api_ns": api_ns,
        "install_applied_ns": applied_ns,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "hwm_kib": hwm,
        "unresolved": unresolved,
        "workers": worker_tids.iter().map(|(t, n, _)| json!({"tid": t, "name": n})).collect::<Vec<_>>(),
        "attach": dp.stats().attach.map(|m| m.iter().map(|x| x.to_string()).collect::<Vec<_>>()),
    });
    let out = std::io::stdout();
    writeln!(out.lock(), "READY {ready}")?;
    out.lock().flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        match line.trim() {
            "stats" => {
                let s = dp.stats();
                let w: Vec<_> = s
                    .workers
                    .iter()
                    .map(|w| {
                        json!({"rx": w.rx, "tx": w.tx, "dropped": w.dropped, "malformed": w.malformed,
                           "no_flow": w.no_flow, "busy_ns": w.busy_ns, "cpu_ns": w.cpu_ns, "loops": w.loops})
                    })
                    .collect();
                let xdp = s.xdp.map(|nics| {
                    nics.iter()
                        .map(|c| {
                            c.named()
                                .map(|(k, v)| (k.to_owned(), json!(v)))
                                .collect::<serde_json::Map<_, _>>()
                        })
                        .collect::<Vec<_>>()
                });
                let (rss, hwm) = rss_kib(pid).unwrap_or((0, 0));
                let j = json!({"workers": w, "xdp": xdp, "rss_kib": rss, "hwm_kib": hwm});
                writeln!(out.lock(), "STATS {j}")?;
                out.lock().flush()?;
            }
            "quit" => break,
            "" => {}
            other => eprintln!("relay-bench: unknown command {other:?}"),
        }
    }
    dp.shutdown();
    Ok(())
}
