//! `hostile-bench`: Tollgate under minutes of mixed hostile input on its gateway side, with
//! its default SIP edge limits and a trunk limited to 30 calls/s.
//!
//! Every round (about 20 s; rounds go on until the time asked for has passed), from the trunk's own address: an INVITE flood at 10x the trunk's rate
//! (ACKing every answer), slowloris connections (half an INVITE, then nothing), connections
//! streaming garbage, oversize messages, peers that send thousands of OPTIONS and never read,
//! and requests with broken start lines. Meanwhile outbound calls carry audio through Tollgate
//! to the same gateway, and must stay intact.
//!
//! Measured: Tollgate's RSS after the first round (the baseline: buffers and pools warmed) and
//! after the last (given up to 30 s to settle), its peak, whether each hostile connection was
//! closed by Tollgate, the good calls, and the VM's CPU steal in each round. The goal: memory
//! after the run within 10% of the baseline, 0 crashes, every hostile connection closed.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use tollgate_bench::steal::CpuTimes;
use tollgate_netlab::LabSpec;
use tollgate_simua::hostile::{self, FloodReport, Held};
use tollgate_simua::labconf::LabAddrs;
use tollgate_simua::process::{Launch, TollgateProcess, metric, scrape, wait_listening};
use tollgate_simua::scenario::{Direction, Parties, Plan};

#[derive(Parser, Debug)]
#[command(about = "Tollgate under minutes of mixed hostile SIP input")]
struct Args {
    /// The tollgate binary.
    #[arg(long, default_value = "target/release/tollgate")]
    tollgate: PathBuf,
    /// Minutes of hostile input.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Data path (xdp or socket).
    #[arg(long, default_value = "xdp")]
    datapath: String,
    /// Report directory.
    #[arg(long, default_value = "target/bench-report")]
    out: PathBuf,
}

/// The trunk's calls per second; the flood offers ten times as many.
const TRUNK_CPS: u32 = 30;
/// One round of hostile input.
const ROUND: Duration = Duration::from_secs(20);

#[derive(Debug, Default, Clone, Copy)]
struct Round {
    flood: FloodReport,
    slowloris: Held,
    garbage: Held,
    oversize: Held,
    never_reads: Held,
    bad_start: Held,
    calls_ok: usize,
    calls: usize,
    rss_mib: f64,
    steal_pct: f64,
}

fn hostile_round(ns: &str, a: &LabAddrs, index: usize) -> anyhow::Result<Round> {
    let from = a.gw;
    let to = SocketAddr::new(a.relay_ext, 5060);
    let hold = ROUND - Duration::from_secs(2);
    let r = tollgate_netlab::in_netns(ns, move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let first = index * 10_000;
            let n = (TRUNK_CPS * 10 * 2) as usize;
            let (flood, slowloris, garbage, oversize, never_reads, bad_start) = tokio::join!(
                hostile::flood(
                    from,
                    to,
                    first,
                    n,
                    Duration::from_secs(2),
                    Duration::from_secs(10)
                ),
                hostile::slowloris(from, to, 16, hold),
                hostile::garbage(from, to, 8, hold),
                hostile::oversize(from, to, 4, 256 * 1024, hold),
                hostile::never_reads(from, to, 2, 20_000, hold),
                hostile::bad_start_lines(from, to, Duration::from_secs(5)),
            );
            Ok::<_, std::io::Error>(Round {
                flood: flood?,
                slowloris,
                garbage,
                oversize,
                never_reads,
                bad_start,
                ..Round::default()
            })
        })
    })
    .map_err(|e| anyhow::anyhow!("{e}"))??;
    Ok(r)
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if !tollgate_netlab::is_root() {
        bail!("hostile-bench builds a network namespace lab: run it as root");
    }
    let (out, work, tollgate) = tollgate_bench::report_dirs(&a.out, "hostile", &a.tollgate)?;

    let lab = LabSpec::with_prefix("tghost").up_guarded().context("lab")?;
    let s = lab.spec();
    let addrs = LabAddrs::from_lab(s).with_trunk_limits(TRUNK_CPS, 0);
    let pki = addrs.pki(&work.join("certs"))?;
    let metrics_at = SocketAddr::new(addrs.relay_int, 9110);
    let cfg = addrs.tollgate_config(
        &pki,
        &a.datapath,
        1,
        &work.join("cdr.jsonl"),
        Some(metrics_at),
    );
    let cfg_path = work.join("tollgate.toml");
    std::fs::write(&cfg_path, cfg)?;
    let parties = Parties::start(&addrs.topology(&pki), Duration::from_millis(100), true)
        .map_err(anyhow::Error::msg)?;
    let launch = Launch {
        netns: Some(&s.relay_ns),
        log_filter: Some("warn"),
        ..Launch::default()
    };
    let mut tg = TollgateProcess::spawn(&tollgate, &cfg_path, &work.join("tollgate.log"), &launch)?;
    let ext = SocketAddr::new(addrs.relay_ext, 5060);
    if !wait_listening(addrs.gw_ns.as_deref(), ext, Duration::from_secs(20)) {
        bail!(
            "tollgate did not start; see {}",
            work.join("tollgate.log").display()
        );
    }
    let budget = Duration::from_secs_f64((a.minutes * 60.0).max(2.0 * ROUND.as_secs_f64()));
    println!(
        "hostile-bench: rounds of about {} s for {:.1} min on the {} data path; trunk limited to {TRUNK_CPS} calls/s",
        ROUND.as_secs(),
        budget.as_secs_f64() / 60.0,
        a.datapath
    );
    println!(
        "{:>5} {:>8} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>7} {:>6}",
        "round",
        "elapsed",
        "RSS",
        "flood 503",
        "slowloris",
        "garbage",
        "oversize",
        "no-read",
        "badstart",
        "calls",
        "steal"
    );
    let t0 = Instant::now();
    let steal0 = CpuTimes::now().unwrap_or_default();
    let mut all: Vec<Round> = Vec::new();
    let mut crashed = None;
    for i in 0.. {
        if t0.elapsed() >= budget && i >= 2 {
            break;
        }
        let st = CpuTimes::now().unwrap_or_default();
        let calls = std::thread::scope(|sc| {
            let good = sc.spawn(|| {
                parties.run(&Plan {
                    direction: Direction::Outbound,
                    calls: 2,
                    concurrency: 2,
                    talk: ROUND - Duration::from_secs(6),
                    ring: Duration::from_millis(100),
                    media: true,
                    first_index: 800 + 2 * i,
                    rate: None,
                })
            });
            let r = hostile_round(addrs.gw_ns.as_deref().unwrap_or_default(), &addrs, i);
            (r, good.join())
        });
        let (round, good) = calls;
        let mut round = round?;
        let good = good
            .map_err(|_| anyhow::anyhow!("call thread panicked"))?
            .map_err(anyhow::Error::msg)?;
        round.calls = good.calls.len();
        round.calls_ok = good.ok();
        round.rss_mib = tg.rss_mib().unwrap_or(0.0);
        round.steal_pct = CpuTimes::now().unwrap_or_default().steal_pct_since(&st);
        let held = |h: Held| format!("{}/{}", h.closed_by_server, h.opened);
        println!(
            "{:>5} {:>7.0}s {:>6.1}M {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>7} {:>5.1}%",
            i + 1,
            t0.elapsed().as_secs_f64(),
            round.rss_mib,
            format!("{}/{}", round.flood.s503, round.flood.sent),
            held(round.slowloris),
            held(round.garbage),
            held(round.oversize),
            held(round.never_reads),
            format!("{}/{}", round.bad_start.responses, round.bad_start.opened),
            format!("{}/{}", round.calls_ok, round.calls),
            round.steal_pct
        );
        all.push(round);
        if let Some(status) = tg.exited() {
            crashed = Some(status);
            break;
        }
    }
    // Baseline: after the first round. Final: after the last, given time to settle.
    let baseline = all.first().map_or(0.0, |r| r.rss_mib);
    let peak = all.iter().map(|r| r.rss_mib).fold(0.0, f64::max);
    let t_settle = Instant::now();
    let mut last = tg.rss_mib().unwrap_or(0.0);
    while crashed.is_none()
        && last > baseline * 1.10
        && t_settle.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(500));
        last = tg.rss_mib().unwrap_or(0.0);
    }
    let steal = CpuTimes::now().unwrap_or_default().steal_pct_since(&steal0);
    let m = scrape(Some(&s.relay_ns), metrics_at);
    let closed = |reason: &str| {
        metric(
            &m,
            "tollgate_sip_connections_closed_total",
            &[&format!("reason=\"{reason}\"")],
        )
    };
    let sum = |f: fn(&Round) -> Held| {
        all.iter().fold(Held::default(), |mut h, r| {
            h += f(r);
            h
        })
    };
    let hostile_held = [
        ("slowloris", sum(|r| r.slowloris)),
        ("garbage", sum(|r| r.garbage)),
        ("oversize", sum(|r| r.oversize)),
        ("never reads", sum(|r| r.never_reads)),
    ];
    let calls_ok: usize = all.iter().map(|r| r.calls_ok).sum();
    let calls: usize = all.iter().map(|r| r.calls).sum();
    let growth = if baseline > 0.0 {
        100.0 * (last - baseline) / baseline
    } else {
        f64::NAN
    };
    let mem_ok = crashed.is_none() && baseline > 0.0 && last <= baseline * 1.10;
    let closed_ok = hostile_held
        .iter()
        .all(|(_, h)| h.closed_by_server == h.opened);

    let mut md = String::new();
    let _ = writeln!(md, "# Hostile input soak\n");
    let _ = writeln!(
        md,
        "{} rounds ({:.1} min of hostile input) on the {} data path, trunk limited to {TRUNK_CPS} calls/s, default SIP edge limits. CPU steal over the run: {steal:.1}%{}.\n",
        all.len(),
        t0.elapsed().as_secs_f64() / 60.0,
        a.datapath,
        if steal >= 5.0 {
            " (figures taken under steal)"
        } else {
            ""
        }
    );
    let _ = writeln!(md, "## Goals\n");
    let _ = writeln!(
        md,
        "- Memory after the run within 10% of the baseline: **{}** (baseline {baseline:.1} MiB after round 1, {last:.1} MiB at the end, {growth:+.1}%; peak {peak:.1} MiB)",
        if mem_ok { "met" } else { "not met" }
    );
    let _ = writeln!(
        md,
        "- No crash: **{}**",
        match crashed {
            None => "met".to_owned(),
            Some(s) => format!("not met (tollgate exited: {s})"),
        }
    );
    let _ = writeln!(
        md,
        "- Every hostile connection closed by Tollgate: **{}** ({})",
        if closed_ok { "met" } else { "not met" },
        hostile_held
            .iter()
            .map(|(k, h)| format!("{k} {}/{}", h.closed_by_server, h.opened))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        md,
        "- Good calls through the run: {calls_ok}/{calls} with intact audio both ways\n"
    );
    let _ = writeln!(
        md,
        "Tollgate's own count of connections it closed: message deadline {}, stream faults {}, oversize {}, write queue full {}.\n",
        closed("message_deadline"),
        closed("stream_faults"),
        closed("oversize"),
        closed("write_queue_full")
    );
    let answered: u64 = all.iter().map(|r| r.flood.s2xx).sum();
    let refused: u64 = all.iter().map(|r| r.flood.s503).sum();
    let sent: u64 = all.iter().map(|r| r.flood.sent).sum();
    let _ = writeln!(
        md,
        "Flood: {sent} INVITEs at 10x the trunk's rate; {refused} refused with 503, {answered} admitted, answered and hung up at once.\n"
    );
    let _ = writeln!(md, "## Rounds\n");
    let _ = writeln!(
        md,
        "| round | RSS MiB | flood 503/sent | slowloris closed | garbage closed | oversize closed | never-read closed | bad start answered | calls ok | steal % |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, r) in all.iter().enumerate() {
        let h = |h: Held| format!("{}/{}", h.closed_by_server, h.opened);
        let _ = writeln!(
            md,
            "| {} | {:.1} | {}/{} | {} | {} | {} | {} | {}/{} | {}/{} | {:.1} |",
            i + 1,
            r.rss_mib,
            r.flood.s503,
            r.flood.sent,
            h(r.slowloris),
            h(r.garbage),
            h(r.oversize),
            h(r.never_reads),
            r.bad_start.responses,
            r.bad_start.opened,
            r.calls_ok,
            r.calls,
            r.steal_pct
        );
    }
    std::fs::write(out.join("hostile.md"), &md)?;
    println!();
    print!("{md}");
    println!("report: {}", out.join("hostile.md").display());
    drop(parties);
    let _ = tg.stop(Duration::from_secs(15));
    if crashed.is_some() {
        bail!("tollgate crashed under hostile input");
    }
    Ok(())
}
