//! `cargo xtask bench`: benchmarks and their reports under `target/bench-report/`.
//!
//! `bench` alone (or `bench all`) runs `srtp`, `dataplane` and `scale` in sequence and prints a
//! summary of each report's goals at the end.
//!
//! `bench dataplane` and `bench scale` (root: they build the three-namespace lab) run `dp-bench`
//! from the `tollgate-bench` crate: Tollgate's XDP and socket paths, rtpengine and the floor
//! (the XDP path with a null worker) side by side, and the XDP path with 100 to 100,000 flows.
//! `bench dataplane` and `bench all` first install the benchmarks' Debian packages that are
//! missing (rtpengine, perf: what `cargo xtask setup --bench` installs), and fail if a path
//! they were asked to measure cannot be started or measured. `bench dataplane --noise <duty>`
//! runs the comparison under injected noise (`dataplane-noise.md`). They write `dataplane.md`, `scale.md`,
//! `results.json` (read by `tollgate capacity`) and SVG plots.
//!
//! `bench hostile` (root) runs `hostile-bench`: minutes of mixed hostile SIP input from a
//! trunk's address (INVITE flood, slowloris, garbage, oversize, never-reading peers, broken
//! start lines) while calls carry audio; Tollgate's memory against its baseline, who closed
//! each connection, and the VM's steal per round, in `hostile.md`.
//!
//! `bench calls` (root) runs `calls-bench`: rising call setup rates through Tollgate, the same
//! load three times, with no call-state store, the file store and a private Valkey server, and
//! the ratios file/none and valkey/none against the 0.90 goal, with the VM's steal, in
//! `calls.md`.
//!
//! `bench srtp` builds libsrtp with OpenSSL from Debian's own source package (downloaded with
//! `apt-get source --download-only` through a private apt configuration, so the machine's
//! sources lists are not touched; built into `target/libsrtp-openssl/`, never committed), then
//! runs `srtp-bench` in release mode against it and Debian's libsrtp2, and writes
//! `target/bench-report/srtp.md`: the single-packet path, a batch of one flow and a batch of as
//! many flows (one packet per context), their ratios, the goals of the latter and the VM's
//! steal.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::util::{Step, run_visible, workspace_root};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    what: Option<What>,
}

#[derive(clap::Subcommand, Debug)]
enum What {
    /// SRTP protect/unprotect ns/packet vs libsrtp (OpenSSL build and Debian's).
    Srtp(SrtpArgs),
    /// XDP path vs socket path vs rtpengine in the lab (root).
    Dataplane(DataplaneArgs),
    /// XDP path with 100, 10,000 and 100,000 flows: throughput, memory, install time (root).
    Scale(ScaleArgs),
    /// Call setup rate through Tollgate at rising offered rates (root).
    Calls(CallsArgs),
    /// Minutes of mixed hostile SIP input on the gateway side: memory, closes, good calls (root).
    Hostile(HostileArgs),
    /// srtp, dataplane, scale and calls in sequence, then a summary.
    All,
}

#[derive(clap::Args, Debug)]
struct HostileArgs {
    /// Minutes of hostile input.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Data path (xdp or socket).
    #[arg(long, default_value = "xdp")]
    datapath: String,
}

#[derive(clap::Args, Debug)]
struct DataplaneArgs {
    /// Concurrent flows (G.711 streams).
    #[arg(long, default_value_t = 500)]
    flows: usize,
    /// Paths (xdp, xdp2 = two queues and two workers, socket, rtpengine, floor; `kernel` adds the lab's own limit without a relay).
    #[arg(long, default_value = "xdp,xdp2,socket,rtpengine,floor,kernel")]
    paths: String,
    /// Injected noise: a SCHED_FIFO hog busy this fraction of every `--noise-period-ms` on the
    /// load and relay cores (0.3 if given without a value); the report is `dataplane-noise.md`.
    #[arg(long, num_args = 0..=1, default_missing_value = "0.3")]
    noise: Option<f64>,
    /// Period of the injected noise, ms.
    #[arg(long, default_value_t = 10.0)]
    noise_period_ms: f64,
    /// Where the noise runs: both, relay or load.
    #[arg(long, default_value = "both")]
    noise_cores: String,
    /// Profile the XDP worker with perf at 90% of its max rate.
    #[arg(long, default_value_t = true)]
    profile: bool,
    /// Seconds per search trial.
    #[arg(long, default_value_t = 2.0)]
    trial_secs: f64,
}

#[derive(clap::Args, Debug)]
struct ScaleArgs {
    /// Flow counts.
    #[arg(long, default_value = "100,10000,100000")]
    flows: String,
    /// Offered packets/s of the fixed-rate trial (half the lab's limit: the relay's per-packet
    /// work, not its wakeups, dominates there, so cold flow state shows fully).
    #[arg(long, default_value_t = 100_000.0)]
    rate: f64,
}

#[derive(clap::Args, Debug)]
struct CallsArgs {
    /// Offered rates (calls/s), tried in order until calls fail.
    #[arg(long, default_value = "100,250,500,750,1000,1250,1500,2000,2500,3000")]
    rates: String,
    /// Seconds per rate.
    #[arg(long, default_value_t = 4.0)]
    secs: f64,
    /// Call-state settings, each running the same rates: none, file (redb), valkey (a private
    /// Valkey/Redis server; fails if neither valkey-server nor redis-server is installed).
    #[arg(long, default_value = "none,file,valkey")]
    states: String,
}

#[derive(clap::Args, Debug)]
struct SrtpArgs {
    /// Rounds per measurement (median reported).
    #[arg(long, default_value_t = 9)]
    rounds: usize,
    /// Packets per round.
    #[arg(long, default_value_t = 20_000)]
    packets: usize,
    /// Rebuild libsrtp-with-OpenSSL even if present.
    #[arg(long)]
    rebuild_libsrtp: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.what {
        Some(What::Srtp(a)) => srtp(a),
        Some(What::Dataplane(a)) => dataplane(a),
        Some(What::Scale(a)) => scale(a),
        Some(What::Calls(a)) => calls(a),
        Some(What::Hostile(a)) => hostile(a),
        Some(What::All) | None => all(),
    }
}

fn report_dir() -> PathBuf {
    workspace_root().join("target/bench-report")
}

fn build_dp_bench() -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    run_visible(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "tollgate-bench",
        "--bin",
        "dp-bench",
        "--bin",
        "relay-bench",
    ]))?;
    Ok(root.join("target/release/dp-bench"))
}

fn need_root(what: &str) -> anyhow::Result<()> {
    if !tollgate_netlab::is_root() {
        bail!("bench {what} builds network namespaces and attaches XDP: run it as root");
    }
    Ok(())
}

fn dataplane(a: &DataplaneArgs) -> anyhow::Result<()> {
    need_root("dataplane")?;
    let mut steps = Vec::new();
    let s = Step::start(
        "bench dataplane",
        "install missing bench packages (rtpengine, perf)",
    );
    crate::setup::bench_packages()?;
    steps.push(s.done());
    let s = Step::start(
        "bench dataplane",
        "build dp-bench and relay-bench (release)",
    );
    let bin = build_dp_bench()?;
    steps.push(s.done());
    let s = Step::start(
        "bench dataplane",
        "XDP vs socket vs rtpengine vs floor (lab up, search, latency, profile; a few minutes)",
    );
    let mut cmd = Command::new(&bin);
    cmd.arg("--out")
        .arg(report_dir())
        .args(["--trial-secs", &a.trial_secs.to_string()])
        .args([
            "dataplane",
            "--flows",
            &a.flows.to_string(),
            "--paths",
            &a.paths,
        ]);
    if a.profile {
        cmd.arg("--profile");
    }
    if let Some(d) = a.noise {
        cmd.args(["--noise", &d.to_string()])
            .args(["--noise-period-ms", &a.noise_period_ms.to_string()])
            .args(["--noise-cores", &a.noise_cores]);
    }
    run_visible(&mut cmd)?;
    steps.push(s.done());
    let report = if a.noise.is_some() {
        "dataplane-noise.md"
    } else {
        "dataplane.md"
    };
    summary("bench dataplane", &steps, &[report]);
    Ok(())
}

fn scale(a: &ScaleArgs) -> anyhow::Result<()> {
    need_root("scale")?;
    let mut steps = Vec::new();
    let s = Step::start("bench scale", "build dp-bench and relay-bench (release)");
    let bin = build_dp_bench()?;
    steps.push(s.done());
    let s = Step::start("bench scale", "XDP path with many flows");
    run_visible(Command::new(&bin).arg("--out").arg(report_dir()).args([
        "scale",
        "--flows",
        &a.flows,
        "--rate",
        &a.rate.to_string(),
    ]))?;
    steps.push(s.done());
    summary("bench scale", &steps, &["scale.md"]);
    Ok(())
}

/// Builds `tollgate` and the bench binary `bin` (release), then runs `bin` with the tollgate
/// binary, the report directory and `args`; `what` names the step.
fn with_tollgate(prefix: &str, bin: &str, what: &str, args: &[&str]) -> anyhow::Result<()> {
    let root = workspace_root();
    let mut steps = Vec::new();
    let s = Step::start(prefix, &format!("build tollgate and {bin} (release)"));
    run_visible(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "tollgate",
        "-p",
        "tollgate-bench",
        "--bin",
        "tollgate",
        "--bin",
        bin,
    ]))?;
    steps.push(s.done());
    let s = Step::start(prefix, what);
    run_visible(
        Command::new(root.join("target/release").join(bin))
            .current_dir(&root)
            .arg("--tollgate")
            .arg(root.join("target/release/tollgate"))
            .arg("--out")
            .arg(report_dir())
            .args(args),
    )?;
    steps.push(s.done());
    let report = format!("{}.md", prefix.trim_start_matches("bench "));
    summary(prefix, &steps, &[report.as_str()]);
    Ok(())
}

fn calls(a: &CallsArgs) -> anyhow::Result<()> {
    need_root("calls")?;
    with_tollgate(
        "bench calls",
        "calls-bench",
        &format!(
            "rising offered call rates through Tollgate, call-state store {}",
            a.states
        ),
        &[
            "--rates",
            &a.rates,
            "--secs",
            &a.secs.to_string(),
            "--states",
            &a.states,
        ],
    )
}

fn hostile(a: &HostileArgs) -> anyhow::Result<()> {
    need_root("hostile")?;
    with_tollgate(
        "bench hostile",
        "hostile-bench",
        &format!("{} minutes of mixed hostile input", a.minutes),
        &[
            "--minutes",
            &a.minutes.to_string(),
            "--datapath",
            &a.datapath,
        ],
    )
}

/// One part of `bench all`.
type Part = Box<dyn Fn() -> anyhow::Result<()>>;

fn all() -> anyhow::Result<()> {
    let t = std::time::Instant::now();
    need_root("all")?;
    crate::setup::bench_packages()?;
    let mut failed = Vec::new();
    let parts: [(&str, Part); 4] = [
        (
            "srtp",
            Box::new(|| {
                srtp(&SrtpArgs {
                    rounds: 9,
                    packets: 20_000,
                    rebuild_libsrtp: false,
                })
            }),
        ),
        (
            "dataplane",
            Box::new(|| {
                dataplane(&DataplaneArgs {
                    flows: 500,
                    paths: "xdp,xdp2,socket,rtpengine,floor,kernel".into(),
                    profile: true,
                    trial_secs: 2.0,
                    noise: None,
                    noise_period_ms: 10.0,
                    noise_cores: "both".into(),
                })
            }),
        ),
        (
            "scale",
            Box::new(|| {
                scale(&ScaleArgs {
                    flows: "100,10000,100000".into(),
                    rate: 100_000.0,
                })
            }),
        ),
        (
            "calls",
            Box::new(|| {
                calls(&CallsArgs {
                    rates: "100,250,500,750,1000,1250,1500,2000,2500,3000".into(),
                    secs: 4.0,
                    states: "none,file,valkey".into(),
                })
            }),
        ),
    ];
    for (i, (name, f)) in parts.iter().enumerate() {
        println!("==> [bench] part {}/{}: {name}", i + 1, parts.len());
        if let Err(e) = f() {
            println!("    {name} FAILED: {e:#}");
            failed.push(*name);
        }
    }
    println!("\n==> bench summary ({:.0} s)", t.elapsed().as_secs_f64());
    for f in ["srtp.md", "dataplane.md", "scale.md", "calls.md"] {
        let p = report_dir().join(f);
        match std::fs::read_to_string(&p) {
            Ok(md) => {
                println!("  {}", p.display());
                // The goals (dataplane) or ratio (scale) sections, else the first table rows.
                let mut on = false;
                for l in md.lines() {
                    if l.starts_with("## ") {
                        on = l.contains("Goals") || l.contains("as a ratio");
                    }
                    if (on && l.trim_start().starts_with('*')) || l.starts_with("Highest rate") {
                        println!("    {l}");
                    }
                }
            }
            Err(_) => println!("  {}: not written", p.display()),
        }
    }
    if !failed.is_empty() {
        bail!("bench parts failed: {failed:?}");
    }
    Ok(())
}

fn summary(prefix: &str, steps: &[(String, f64)], reports: &[&str]) {
    println!("{prefix} summary:");
    for (name, secs) in steps {
        println!("  {secs:6.1}s  {name}");
    }
    for r in reports {
        println!("  report: {}", report_dir().join(r).display());
    }
    println!("  results: {}", report_dir().join("results.json").display());
}

const LIBSRTP_PKG: &str = "libsrtp2";

fn srtp(a: &SrtpArgs) -> anyhow::Result<()> {
    let root = workspace_root();
    let target = root.join("target");
    let mut steps = Vec::new();

    let s = Step::start(
        "bench srtp",
        "libsrtp built with OpenSSL (from Debian's source)",
    );
    let lib = libsrtp_openssl(&target.join("libsrtp-openssl"), a.rebuild_libsrtp)?;
    steps.push(s.done());

    let s = Step::start("bench srtp", "build srtp-bench (release)");
    run_visible(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "tollgate-bench",
        "--bin",
        "srtp-bench",
    ]))?;
    steps.push(s.done());

    let report = target.join("bench-report/srtp.md");
    let s = Step::start("bench srtp", "measure (one core, thread CPU time)");
    run_visible(
        Command::new(target.join("release/srtp-bench"))
            .arg("--openssl-lib")
            .arg(&lib)
            .args(["--rounds", &a.rounds.to_string()])
            .args(["--packets", &a.packets.to_string()])
            .arg("--out")
            .arg(&report),
    )?;
    steps.push(s.done());

    println!("bench srtp summary:");
    for (name, secs) in steps {
        println!("  {secs:6.1}s  {name}");
    }
    println!("  report: {}", report.display());
    Ok(())
}

/// apt options for a private, source-only configuration under `dir`.
fn apt_opts(dir: &Path) -> Vec<String> {
    vec![
        format!(
            "-oDir::Etc::SourceList={}",
            dir.join("sources.list").display()
        ),
        "-oDir::Etc::SourceParts=/dev/null".into(),
        format!("-oDir::State::Lists={}", dir.join("lists").display()),
        format!("-oDir::Cache={}", dir.join("cache").display()),
    ]
}

/// The Debian suite of this machine (`VERSION_CODENAME` of /etc/os-release).
fn codename() -> anyhow::Result<String> {
    let os = std::fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    os.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|s| s.trim_matches('"').to_owned())
        .context("no VERSION_CODENAME in /etc/os-release")
}

/// Downloads Debian's libsrtp2 source, configures it with `--enable-openssl` (libsrtp's own
/// default flags: -O3) and links the objects into `libsrtp2-openssl.so`.
fn libsrtp_openssl(dir: &Path, rebuild: bool) -> anyhow::Result<PathBuf> {
    let so = dir.join("libsrtp2-openssl.so");
    if so.exists() && !rebuild {
        println!("    present: {}", so.display());
        return Ok(so);
    }
    let apt = dir.join("apt");
    std::fs::create_dir_all(apt.join("lists/partial"))?;
    std::fs::create_dir_all(apt.join("cache/archives/partial"))?;
    std::fs::write(
        apt.join("sources.list"),
        format!(
            "deb-src http://deb.debian.org/debian {} main\n",
            codename()?
        ),
    )?;
    let opts = apt_opts(&apt);
    run_visible(Command::new("apt-get").args(&opts).args(["-q", "update"]))?;
    let src = dir.join("src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src)?;
    run_visible(Command::new("apt-get").current_dir(&src).args(&opts).args([
        "-q",
        "source",
        "--download-only",
        LIBSRTP_PKG,
    ]))?;
    let tarball = std::fs::read_dir(&src)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".orig.tar.gz"))
        .context("apt-get source left no .orig.tar.gz")?;
    run_visible(
        Command::new("tar")
            .current_dir(&src)
            .arg("xzf")
            .arg(&tarball),
    )?;
    let tree = std::fs::read_dir(&src)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .context("no source tree in the tarball")?;
    run_visible(
        Command::new("./configure")
            .current_dir(&tree)
            .env_remove("CFLAGS")
            .args(["--enable-openssl", "--quiet"]),
    )?;
    run_visible(
        Command::new("make")
            .current_dir(&tree)
            .args(["-j2", "libsrtp2.a"]),
    )?;
    run_visible(
        Command::new("cc")
            .current_dir(&tree)
            .args(["-shared", "-o"])
            .arg(&so)
            .args([
                "-Wl,-soname,libsrtp2-openssl.so",
                "-Wl,--whole-archive",
                "libsrtp2.a",
                "-Wl,--no-whole-archive",
                "-lcrypto",
            ]),
    )?;
    if !so.exists() {
        bail!("{} was not produced", so.display());
    }
    Ok(so)
}
