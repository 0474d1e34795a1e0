//! `dp-bench`: the data plane benchmarks in the three-namespace lab.
//!
//! * `dataplane`: Tollgate's XDP path, its socket path and rtpengine (userspace forwarding,
//!   driven over ng to bridge RTP/AVP to RTP/SAVP) relay G.711 RTP from `gw` to `int` as SRTP,
//!   and the floor path (the XDP path with a null worker: headers rewritten, no SRTP; what
//!   AF_XDP itself costs here) relays it as RTP, one after the other in the same lab, each pinned to the same core, with the same generator
//!   (in `gw`) and sink (in `int`, verifying SRTP) pinned to the other core. Per path: relay CPU
//!   per packet at the real-time paced load (`flows x 50 pps`), the maximum zero-loss rate
//!   (search), and loss and latency at 50% and 90% of it. Kernel IP forwarding of pre-encrypted
//!   SRTP through the relay namespace (no relay) is the latency floor of the lab. A path that
//!   cannot be started or measured fails the run. `--noise <duty>` runs it all under injected
//!   noise (a SCHED_FIFO hog on both cores, [`noise`]), writing `dataplane-noise.md`.
//! * `scale`: the XDP path with 100, 10,000 and 100,000 flows: install time, memory, relay CPU
//!   per packet at a fixed rate and the maximum zero-loss rate.
//!
//! Results go to `<out>/results.json` (merged with what other benches wrote), a Markdown report
//! and SVG plots.

mod lab;
mod noise;
mod peers;
mod report;
mod scale;
mod trial;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;
use serde_json::{Value, json};
use tollgate_bench::flows::{Plan, SSRC_BASE, SUITE};
use tollgate_bench::generator::{self, GenFlow, GenReport, GenState};
use tollgate_bench::ng::{self, Bencode, NgClient, dict};
use tollgate_bench::plot::{Series, line_chart};
use tollgate_bench::procstat::{self, CpuSample};
use tollgate_bench::sink::{self, SinkShared, SinkStats};
use tollgate_bench::steal::CpuTimes;
use tollgate_netlab::{LabGuard, LabSpec, in_netns, run as run_cmd, spawn_in_netns};
use tollgate_srtp::KeyMaterial;

use lab::*;
use noise::*;
use peers::*;
use report::*;
use scale::*;
use trial::*;

#[derive(Parser, Debug)]
#[command(about = "Data plane benchmarks in the lab (needs root)")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) what: What,
    /// Where the reports go.
    #[arg(long, global = true, default_value = "target/bench-report")]
    pub(crate) out: PathBuf,
    /// The relay-bench binary (default: next to this one).
    #[arg(long, global = true)]
    pub(crate) relay_bin: Option<PathBuf>,
    /// CPU of the relay under test.
    #[arg(long, global = true, default_value_t = 1)]
    pub(crate) relay_cpu: usize,
    /// CPU of the generator and the sink.
    #[arg(long, global = true, default_value_t = 0)]
    pub(crate) load_cpu: usize,
    /// Tollgate's XDP interrupt moderation window, µs (0: wake per frame).
    #[arg(long, global = true, default_value_t = tollgate_dataplane::DEFAULT_COALESCE_US)]
    pub(crate) coalesce_us: u32,
    /// Seconds per search trial.
    #[arg(long, global = true, default_value_t = 2.0)]
    pub(crate) trial_secs: f64,
    /// Seconds per latency trial (50%, 90%, paced).
    #[arg(long, global = true, default_value_t = 4.0)]
    pub(crate) latency_secs: f64,
}

#[derive(Subcommand, Debug)]
pub(crate) enum What {
    /// XDP path vs socket path vs rtpengine.
    Dataplane {
        /// Concurrent flows (one G.711 stream each, gateway to internal).
        #[arg(long, default_value_t = 500)]
        flows: usize,
        /// Paths to measure, in order (xdp, socket, rtpengine, floor; `kernel` adds the lab's own
        /// limit without a relay).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "xdp,xdp2,socket,rtpengine,floor"
        )]
        paths: Vec<String>,
        /// Injected noise: a SCHED_FIFO hog above every bench thread, busy this fraction of
        /// every `--noise-period-ms` on the load core and on the relay core (0.3 if given
        /// without a value). The report is `dataplane-noise.md`.
        #[arg(long, num_args = 0..=1, default_missing_value = "0.3")]
        noise: Option<f64>,
        /// Period of the injected noise, ms.
        #[arg(long, default_value_t = 10.0)]
        noise_period_ms: f64,
        /// Where the noise runs: `both` cores, only the `relay`'s, or only the `load` core's
        /// (the relay's alone shows how each path rides out its own stalls while the load is
        /// unaffected).
        #[arg(long, default_value = "both")]
        noise_cores: String,
        /// Record a CPU profile of the XDP worker (perf) at 90% of its max rate.
        #[arg(long)]
        profile: bool,
    },
    /// XDP path with 100, 10,000 and 100,000 flows.
    Scale {
        /// Flow counts.
        #[arg(long, value_delimiter = ',', default_value = "100,10000,100000")]
        flows: Vec<usize>,
        /// Offered rate of the fixed-rate trial, packets/s.
        #[arg(long, default_value_t = 100_000.0)]
        rate: f64,
    },
}

pub(crate) const NG_PORT: u16 = 2223;
/// Real-time priority (SCHED_FIFO) of the relay under test. The VM is shared with other
/// tenants' builds and fuzzers; at normal priority (even nice -20) a relay got about half of
/// its core. Every relay, the generator and the sink run under SCHED_FIFO alike (the kernel's
/// RT throttling still leaves 5% of each core to everything else).
pub(crate) const RELAY_RT_PRIO: &str = "50";
/// SCHED_FIFO priority of the generator thread.
pub(crate) const GEN_RT_PRIO: i32 = 40;
/// SCHED_FIFO priority of the sink thread (above the generator, so it drains while the
/// generator is busy).
pub(crate) const SINK_RT_PRIO: i32 = 45;

pub(crate) fn dataplane(
    cli: &Cli,
    flows: usize,
    paths: &[String],
    profile: bool,
    noise: Option<(f64, f64)>,
    noise_cores: &str,
) -> anyhow::Result<()> {
    let plan = Plan::lab(flows);
    // A failed run leaves no report behind, not an older run's.
    let report_file = if noise.is_some() {
        "dataplane-noise.md"
    } else {
        "dataplane.md"
    };
    let _ = std::fs::remove_file(cli.out.join(report_file));
    println!(
        "==> [bench dataplane] lab up (tgb-gw, tgb-relay, tgb-int); relay on CPU {}, generator and sink on CPU {}",
        cli.relay_cpu, cli.load_cpu
    );
    let lab = Lab::up(&plan, cli.load_cpu)?;
    let host = host_facts();
    let steal0 = CpuTimes::now().unwrap_or_default();
    let noise_cpus = match noise_cores {
        "both" => vec![cli.load_cpu, cli.relay_cpu],
        "relay" => vec![cli.relay_cpu],
        "load" => vec![cli.load_cpu],
        other => bail!("--noise-cores {other}: both, relay or load"),
    };
    let _noise = match noise {
        Some((duty, period_ms)) => {
            let cpus = noise_cpus.clone();
            println!(
                "==> [bench dataplane] injected noise: SCHED_FIFO {NOISE_RT_PRIO} hog busy {:.0}% of every {period_ms} ms on CPUs {cpus:?}",
                duty * 100.0,
            );
            Some(Noise::start(
                &cpus,
                duty,
                Duration::from_secs_f64(period_ms / 1000.0),
            )?)
        }
        None => None,
    };
    let mut all = Vec::new();
    let mut results: Vec<PathResult> = Vec::new();
    let mut trial_id = 0;
    let mut failed = Vec::new();
    for p in paths.iter().filter(|p| *p != "kernel") {
        match run_path(cli, &lab, &plan, p, &mut all, &mut trial_id, profile) {
            Ok(r) => results.push(r),
            Err(e) => {
                println!("    {p}: FAILED: {e:#}");
                failed.push(format!("{p}: {e:#}"));
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "requested paths could not be started or measured (no report written):\n  {}",
            failed.join("\n  ")
        );
    }
    let mut rates = vec![("paced".to_owned(), flows as f64 * 50.0)];
    for r in &results {
        if let Some(t) = &r.at50 {
            rates.push((format!("{}@50%", r.name), t.offered_pps));
        }
        if let Some(t) = &r.at90 {
            rates.push((format!("{}@90%", r.name), t.offered_pps));
        }
    }
    let want_lab_limit = paths.iter().any(|p| p == "kernel");
    let (base, lab_limit) = baseline(
        cli,
        &lab,
        &plan,
        &rates,
        want_lab_limit,
        &mut all,
        &mut trial_id,
    )
    .context("the kernel-forwarding baseline (added latency) failed")?;
    let steal_pct = CpuTimes::now().unwrap_or_default().steal_pct_since(&steal0);
    drop(_noise);
    drop(lab);
    // A noisy run is set beside the last clean run with the same flows, if results.json has one.
    let clean = noise
        .and_then(|_| std::fs::read_to_string(cli.out.join("results.json")).ok())
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .map(|v| v["dataplane"].clone())
        .filter(|d| d["flows"].as_u64() == Some(flows as u64));
    let md = dataplane_report(&Report {
        cli,
        host: &host,
        flows,
        r: &results,
        base: &base,
        lab_limit,
        all: &all,
        paths,
        noise,
        noise_cpus: &noise_cpus,
        steal_pct,
        clean: clean.as_ref(),
    })?;
    println!("{md}");
    // A noisy run is kept apart: `tollgate capacity` reads the clean one.
    let (key, file) = if noise.is_some() {
        ("dataplane_noise", "dataplane-noise.md")
    } else {
        ("dataplane", "dataplane.md")
    };
    merge_results(
        &cli.out,
        key,
        json!({"host": host, "flows": flows, "relay_cpu": cli.relay_cpu, "load_cpu": cli.load_cpu,
               "paths": results, "baseline": base, "steal_pct": steal_pct,
               "noise": noise.map(|(d, p)| json!({"duty": d, "period_ms": p, "rt_prio": NOISE_RT_PRIO})),
               "kernel_forwarding_max_zero_loss_pps": lab_limit.map(|l| l.0)}),
    )?;
    std::fs::write(cli.out.join(file), md)?;
    println!("report: {}", cli.out.join(file).display());
    Ok(())
}

pub(crate) fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !tollgate_netlab::is_root() {
        bail!("dp-bench needs root (network namespaces, XDP, AF_PACKET)");
    }
    let _ = Ipv4Addr::LOCALHOST;
    std::fs::create_dir_all(&cli.out)?;
    match &cli.what {
        What::Dataplane {
            flows,
            paths,
            profile,
            noise,
            noise_period_ms,
            noise_cores,
        } => dataplane(
            &cli,
            *flows,
            paths,
            *profile,
            noise.map(|d| (d, *noise_period_ms)),
            noise_cores,
        ),
        What::Scale { flows, rate } => scale(&cli, flows, *rate),
    }
}
