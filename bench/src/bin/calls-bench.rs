//! `calls-bench`: call setup rate through Tollgate, SIP/TCP from the simulated gateway to
//! SIP/mTLS at the simulated internal endpoint (INVITE, 100, 180, 200, ACK, BYE), at rising
//! offered rates until calls fail or setup latency runs away.
//!
//! Tollgate runs as its own process in the relay namespace with one control-plane thread,
//! pinned to one CPU; the two simulated parties share the other CPU, so their own CPU use is
//! reported next to Tollgate's (when they saturate, the result is capped by the load generator,
//! and the report says so). Signalling only: no media, so this measures the control plane.
//!
//! The same load runs once per call-state setting (`--states`, default `none,file,valkey`):
//! no store, a local redb file, a private Valkey/Redis server (started here; without
//! valkey-server or redis-server the bench fails before measuring). The report gives each
//! setting's rate, the ratios file/none and valkey/none against the 0.90 goal, and the VM's CPU
//! steal with every step.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use tollgate_bench::steal::CpuTimes;
use tollgate_netlab::LabSpec;
use tollgate_simua::labconf::LabAddrs;
use tollgate_simua::process::{Launch, TollgateProcess, wait_listening};
use tollgate_simua::scenario::{Direction, Parties, Plan};
use tollgate_state::testing::ValkeyServer;

#[derive(Parser, Debug)]
#[command(about = "Call setup rate through Tollgate")]
struct Args {
    /// The tollgate binary.
    #[arg(long, default_value = "target/release/tollgate")]
    tollgate: PathBuf,
    /// Offered rates to try, calls per second, in order.
    #[arg(long, default_value = "100,250,500,750,1000,1250,1500,2000,2500,3000")]
    rates: String,
    /// Seconds of calls per rate.
    #[arg(long, default_value_t = 4.0)]
    secs: f64,
    /// Stop when more than this fraction of calls fail.
    #[arg(long, default_value_t = 0.005)]
    max_fail: f64,
    /// Stop when p99 setup exceeds this many ms.
    #[arg(long, default_value_t = 200.0)]
    max_p99_ms: f64,
    /// CPU for Tollgate (the other CPUs run the simulated parties).
    #[arg(long, default_value = "1")]
    tollgate_cpu: String,
    /// Call-state settings to run the same load with, in order: none, file, valkey.
    #[arg(long, default_value = "none,file,valkey")]
    states: String,
    /// Report directory.
    #[arg(long, default_value = "target/bench-report")]
    out: PathBuf,
}

struct Step {
    offered: f64,
    calls: usize,
    ok: usize,
    achieved: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    /// Upper bound of Tollgate's own p99 setup time (INVITE received to 200 sent, which
    /// includes the callee's answer), from its `tollgate_call_setup_seconds` histogram.
    inner_p99: f64,
    tollgate_cpu: f64,
    party_cpu: f64,
    /// CPU steal during the step, % of all CPU time.
    steal_pct: f64,
}

/// CPU seconds (user + system) of this process (the simulated parties run in it).
fn self_cpu() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// One sweep of rising rates with one call-state setting.
struct Sweep {
    /// `none`, `file` or `valkey`.
    state: String,
    steps: Vec<Step>,
    drained: bool,
    /// CPU steal over the sweep, % of all CPU time.
    steal_pct: f64,
    /// The best rate with every call set up and p99 under 20 ms (the goal).
    good: f64,
    /// The best rate within the failure budget.
    best: f64,
}

/// What each sweep shares: the lab, the parties, the options.
struct Bench<'a> {
    a: &'a Args,
    rates: &'a [f64],
    relay_ns: String,
    metrics: SocketAddr,
    ext: SocketAddr,
    gw_ns: Option<String>,
    parties: &'a Parties,
    tollgate: PathBuf,
    work: PathBuf,
    base_cfg: String,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if !tollgate_netlab::is_root() {
        bail!("calls-bench builds a network namespace lab: run it as root");
    }
    let rates: Vec<f64> = a
        .rates
        .split(',')
        .map(|r| r.trim().parse())
        .collect::<Result<_, _>>()
        .context("--rates")?;
    let states: Vec<String> = a
        .states
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    for s in &states {
        if !["none", "file", "valkey"].contains(&s.as_str()) {
            bail!("--states: {s}: expected none, file or valkey");
        }
    }
    if states.is_empty() {
        bail!("--states: nothing to run");
    }
    let (out, work, tollgate) = tollgate_bench::report_dirs(&a.out, "calls", &a.tollgate)?;

    // The parties (this process's threads) stay off Tollgate's CPU, so the two never share a
    // core and Tollgate's figures are its own. The Valkey server started below inherits this.
    let tollgate_cpus: Vec<usize> = a
        .tollgate_cpu
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let party_cpus = tollgate_bench::avoid_cpus(&tollgate_cpus);
    // The Valkey store first: without a server this bench fails here, before measuring.
    let valkey = if states.iter().any(|s| s == "valkey") {
        let v = ValkeyServer::start().map_err(|e| {
            anyhow::anyhow!("state valkey needs valkey-server or redis-server: {e}")
        })?;
        println!(
            "calls-bench: Valkey store: {} on {}",
            v.binary().display(),
            v.url()
        );
        Some(v)
    } else {
        None
    };

    let lab = LabSpec::with_prefix("tgcalls")
        .up_guarded()
        .context("lab")?;
    let s = lab.spec();
    let addrs = LabAddrs::from_lab(s);
    let pki = addrs.pki(&work.join("certs"))?;
    // Tollgate's metrics, scraped around every step for its own view of setup latency.
    // Internal side: Tollgate never serves metrics towards the gateway.
    let metrics = SocketAddr::new(addrs.relay_int, 9109);
    let base_cfg = addrs.tollgate_config(&pki, "socket", 1, &work.join("cdr.jsonl"), Some(metrics));
    let parties =
        Parties::start(&addrs.topology(&pki), Duration::ZERO, false).map_err(anyhow::Error::msg)?;
    println!(
        "calls-bench: Tollgate pinned to CPU {} with one control-plane thread; parties{} on CPUs {}; call-state store: {}",
        a.tollgate_cpu,
        if valkey.is_some() { " and Valkey" } else { "" },
        party_cpus
            .as_ref()
            .map_or_else(|| "(any: not pinned)".to_owned(), |c| format!("{c:?}")),
        states.join(", then ")
    );
    let bench = Bench {
        a: &a,
        rates: &rates,
        relay_ns: s.relay_ns.clone(),
        metrics,
        ext: SocketAddr::new(addrs.relay_ext, 5060),
        gw_ns: addrs.gw_ns.clone(),
        parties: &parties,
        tollgate,
        work: work.clone(),
        base_cfg,
    };
    let mut sweeps = Vec::new();
    let mut first = 0usize;
    for state in &states {
        let state_toml = match state.as_str() {
            "file" => {
                let path = work.join("calls.redb");
                let _ = std::fs::remove_file(&path);
                format!(
                    "\n[state]\nbackend = \"file\"\npath = \"{}\"\n",
                    path.display()
                )
            }
            "valkey" => format!(
                "\n[state]\nbackend = \"valkey\"\nurl = \"{}\"\nnode_id = \"bench\"\n",
                valkey.as_ref().map(ValkeyServer::url).unwrap_or_default()
            ),
            _ => String::new(),
        };
        sweeps.push(bench.sweep(state, &state_toml, &mut first)?);
    }
    drop(parties);
    drop(lab);
    drop(valkey);

    let md = report(&a, &sweeps);
    std::fs::write(out.join("calls.md"), &md)?;
    let _ = std::fs::remove_dir_all(&work);
    println!("\n{md}");
    println!("report: {}", out.join("calls.md").display());
    Ok(())
}

impl Bench<'_> {
    /// Starts Tollgate with `state_toml` appended to its configuration, runs the rising rates,
    /// stops it.
    fn sweep(&self, state: &str, state_toml: &str, first: &mut usize) -> anyhow::Result<Sweep> {
        let a = self.a;
        let cfg_path = self.work.join(format!("tollgate-{state}.toml"));
        std::fs::write(&cfg_path, format!("{}{state_toml}", self.base_cfg))?;
        let log = self.work.join(format!("tollgate-{state}.log"));
        let launch = Launch {
            netns: Some(&self.relay_ns),
            threads: Some(1),
            cpus: Some(&a.tollgate_cpu),
            log_filter: Some("warn"),
        };
        let mut tg = TollgateProcess::spawn(&self.tollgate, &cfg_path, &log, &launch)?;
        if !wait_listening(self.gw_ns.as_deref(), self.ext, Duration::from_secs(20)) {
            bail!(
                "tollgate (state {state}) did not start; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
        println!("\n== state {state}");
        println!(
            "{:>8} {:>7} {:>7} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9} {:>7}",
            "offered",
            "calls",
            "failed",
            "achieved",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "tg CPU%",
            "UA CPU%",
            "steal%"
        );
        let steal0 = CpuTimes::now().unwrap_or_default();
        let mut steps = Vec::new();
        for &rate in self.rates {
            let calls = (rate * a.secs).round().max(1.0) as usize;
            let plan = Plan {
                direction: Direction::Inbound,
                calls,
                concurrency: calls,
                talk: Duration::ZERO,
                ring: Duration::ZERO,
                media: false,
                first_index: *first,
                rate: Some(rate),
            };
            *first += calls;
            let h0 = setup_histogram(&self.relay_ns, self.metrics);
            let st0 = CpuTimes::now().unwrap_or_default();
            let (c0, p0, t0) = (tg.cpu_secs().unwrap_or(0.0), self_cpu(), Instant::now());
            let r = self.parties.run(&plan).map_err(anyhow::Error::msg)?;
            let wall = t0.elapsed().as_secs_f64();
            let h1 = setup_histogram(&self.relay_ns, self.metrics);
            let step = Step {
                offered: rate,
                calls,
                ok: r.ok(),
                achieved: r.ok() as f64 / wall,
                p50: r.setup_percentile(50.0).unwrap_or(f64::NAN),
                p99: r.setup_percentile(99.0).unwrap_or(f64::NAN),
                p999: r.setup_percentile(99.9).unwrap_or(f64::NAN),
                inner_p99: inner_p99(h0.as_deref(), h1.as_deref()),
                tollgate_cpu: (tg.cpu_secs().unwrap_or(0.0) - c0) / wall,
                party_cpu: (self_cpu() - p0) / wall,
                steal_pct: CpuTimes::now().unwrap_or_default().steal_pct_since(&st0),
            };
            println!(
                "{:>8.0} {:>7} {:>7} {:>9.0} {:>8.2} {:>8.2} {:>9.2} {:>8.0}% {:>8.0}% {:>6.1}%",
                step.offered,
                step.calls,
                step.calls - step.ok,
                step.achieved,
                step.p50,
                step.p99,
                step.p999,
                step.tollgate_cpu * 100.0,
                step.party_cpu * 100.0,
                step.steal_pct
            );
            let mut errors: Vec<String> = r.calls.iter().filter_map(|c| c.error.clone()).collect();
            errors.sort();
            errors.dedup();
            for e in errors.iter().take(3) {
                println!("         failure: {e}");
            }
            let failed = (step.calls - step.ok) as f64 / step.calls as f64;
            let stop = failed > a.max_fail || step.p99.is_nan() || step.p99 > a.max_p99_ms;
            steps.push(step);
            if stop {
                println!(
                    "stopping: {:.1}% failed, p99 {:.1} ms",
                    failed * 100.0,
                    steps.last().map_or(0.0, |s| s.p99)
                );
                break;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        let steal_pct = CpuTimes::now().unwrap_or_default().steal_pct_since(&steal0);
        let drained = tg
            .stop(Duration::from_secs(20))
            .is_some_and(|s| s.success());
        let good = steps
            .iter()
            .filter(|s| s.ok == s.calls && s.p99 < 20.0)
            .map(|s| s.achieved)
            .fold(0.0, f64::max);
        let best = steps
            .iter()
            .filter(|s| s.ok as f64 >= s.calls as f64 * (1.0 - a.max_fail))
            .map(|s| s.achieved)
            .fold(0.0, f64::max);
        println!(
            "state {state}: highest rate with every call set up and p99 < 20 ms: {good:.0} calls/s; steal over the sweep {steal_pct:.1}%"
        );
        Ok(Sweep {
            state: state.to_owned(),
            steps,
            drained,
            steal_pct,
            good,
            best,
        })
    }
}

/// `x / base` as text, or why there is no ratio (never NaN).
fn ratio(x: f64, base: f64) -> (String, Option<f64>) {
    if base > 0.0 && x.is_finite() {
        let r = x / base;
        (format!("{r:.2}"), Some(r))
    } else {
        (
            "no ratio: state none set up no call within the limits".into(),
            None,
        )
    }
}

/// The markdown report: one table per state, then the rates side by side and the ratios.
fn report(a: &Args, sweeps: &[Sweep]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Call setup rate\n");
    let _ = writeln!(
        md,
        "SIP/TCP (simulated gateway) -> Tollgate -> SIP/mTLS (simulated internal endpoint): INVITE, 100, 180, 200, ACK, BYE per call, signalling only. Tollgate: one control-plane thread pinned to CPU {}; the simulated parties (and the Valkey server, for state valkey) on the other CPU(s). The same rising rates are run once per call-state setting: `none` (no `[state]`), `file` (a local redb file) and `valkey` (a private Valkey/Redis server on a Unix socket); with a store, every answered call is written and deleted again at its BYE. Setup latency is INVITE sent to 200 received at the caller, through both of Tollgate's legs. `Tollgate p99 <=` is Tollgate's own view of the same calls (INVITE received to 200 sent, the callee's answer included) from its `tollgate_call_setup_seconds` histogram: the bucket bound holding the 99th percentile. Steal is the VM's CPU steal during the step (from /proc/stat).\n",
        a.tollgate_cpu
    );
    let capped = sweeps
        .iter()
        .flat_map(|s| &s.steps)
        .any(|s| s.party_cpu > 0.85 * (available_cpus() - 1.0).max(1.0));
    for sw in sweeps {
        let _ = writeln!(md, "## state {}\n", sw.state);
        let _ = writeln!(
            md,
            "| offered calls/s | calls | failed | achieved calls/s | setup p50 ms | p99 ms | p99.9 ms | Tollgate p99 <= ms | Tollgate CPU | parties CPU | steal |"
        );
        let _ = writeln!(
            md,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for s in &sw.steps {
            let _ = writeln!(
                md,
                "| {:.0} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.0}% | {:.0}% | {:.1}% |",
                s.offered,
                s.calls,
                s.calls - s.ok,
                s.achieved,
                s.p50,
                s.p99,
                s.p999,
                if s.inner_p99.is_finite() {
                    format!("{:.0}", s.inner_p99)
                } else {
                    "n/a".into()
                },
                s.tollgate_cpu * 100.0,
                s.party_cpu * 100.0,
                s.steal_pct
            );
        }
        let _ = writeln!(
            md,
            "\nHighest rate with every call set up and p99 < 20 ms: **{:.0} calls/s**; within {:.1}% failures: {:.0} calls/s. Per-call Tollgate CPU there: {}. Drained cleanly at the end: {}. Steal over the sweep: {:.1}%.\n",
            sw.good,
            a.max_fail * 100.0,
            sw.best,
            sw.steps
                .iter()
                .filter(|s| s.achieved == sw.good && sw.good > 0.0)
                .map(|s| format!("{:.0} µs", s.tollgate_cpu / s.achieved * 1e6))
                .next()
                .unwrap_or_else(|| "n/a".into()),
            sw.drained,
            sw.steal_pct
        );
    }
    let _ = writeln!(md, "## The store's cost\n");
    let _ = writeln!(
        md,
        "| state | highest good rate calls/s | within {:.1}% failures calls/s | vs none (good rate) | steal |",
        a.max_fail * 100.0
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    let none = sweeps.iter().find(|s| s.state == "none");
    for sw in sweeps {
        let r = none.map_or_else(
            || "n/a (state none not run)".to_owned(),
            |n| ratio(sw.good, n.good).0,
        );
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {} | {:.1}% |",
            sw.state, sw.good, sw.best, r, sw.steal_pct
        );
    }
    let _ = writeln!(md);
    if let Some(n) = none {
        for sw in sweeps.iter().filter(|s| s.state != "none") {
            let (text, r) = ratio(sw.good, n.good);
            let verdict = match r {
                Some(r) if r >= 0.90 => "met",
                Some(_) => "not met",
                None => "not met (no ratio)",
            };
            let _ = writeln!(
                md,
                "Goal {}/none >= 0.90: {text} ({:.0} / {:.0} calls/s) — **{verdict}** (steal {:.1}% / {:.1}%).",
                sw.state, sw.good, n.good, sw.steal_pct, n.steal_pct
            );
        }
        for sw in sweeps.iter().filter(|s| s.state != "none") {
            let mut r: Vec<f64> = sw
                .steps
                .iter()
                .filter(|s| s.ok == s.calls && s.tollgate_cpu > 0.0)
                .filter_map(|s| {
                    n.steps
                        .iter()
                        .find(|b| b.offered == s.offered && b.ok == b.calls)
                        .map(|b| b.tollgate_cpu / s.tollgate_cpu)
                })
                .collect();
            let k = r.len();
            if k > 0 {
                let m = tollgate_bench::median(std::mem::take(&mut r));
                let _ = writeln!(
                    md,
                    "Tollgate CPU, none/{} at equal offered rates (median over the {k} rates both ran clean): {m:.2}: the rate ratio to expect where Tollgate's core is the limit.",
                    sw.state
                );
            }
        }
        let _ = writeln!(
            md,
            "\nThe rates are the best step of the same rising list ({}), so a ratio below 1 is at least one step of that list; compare the tables' p99 columns at equal offered rates for the finer picture.",
            a.rates
        );
    }
    if sweeps.iter().any(|s| s.steal_pct >= 5.0) {
        let _ = writeln!(
            md,
            "\nAt least one sweep ran under CPU steal of 5% or more: its figures are lower than the machine can do."
        );
    }
    if capped {
        let _ = writeln!(
            md,
            "\nThe simulated parties used most of their CPU at the top rates: the load generator, not Tollgate, may be the limit there (compare Tollgate's CPU column with 100%)."
        );
    }
    md
}

/// Tollgate's cumulative `tollgate_call_setup_seconds` buckets as (upper bound in ms, count),
/// scraped over HTTP from inside the relay namespace.
fn setup_histogram(ns: &str, at: SocketAddr) -> Option<Vec<(f64, u64)>> {
    let text = tollgate_netlab::in_netns(ns, move || -> Option<String> {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect_timeout(&at, Duration::from_secs(2)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut s = String::new();
        c.read_to_string(&mut s).ok()?;
        Some(s)
    })
    .ok()??;
    let mut out = Vec::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("tollgate_call_setup_seconds_bucket{le=\"") else {
            continue;
        };
        let (le, count) = rest.split_once("\"} ")?;
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse::<f64>().ok()? * 1e3
        };
        out.push((le, count.trim().parse().ok()?));
    }
    (!out.is_empty()).then_some(out)
}

/// The bucket bound (ms) holding the 99th percentile of the calls between two scrapes.
fn inner_p99(before: Option<&[(f64, u64)]>, after: Option<&[(f64, u64)]>) -> f64 {
    let (Some(b), Some(a)) = (before, after) else {
        return f64::NAN;
    };
    let d: Vec<(f64, u64)> = a
        .iter()
        .zip(b)
        .map(|(&(le, x), &(_, y))| (le, x.saturating_sub(y)))
        .collect();
    let total = d.last().map_or(0, |x| x.1);
    if total == 0 {
        return f64::NAN;
    }
    d.iter()
        .find(|(_, c)| *c as f64 >= 0.99 * total as f64)
        .map_or(f64::NAN, |x| x.0)
}

fn available_cpus() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}
