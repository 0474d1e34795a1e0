//! `tollgate-demo-failover`: node failover, end to end. `cargo xtask demo --failover` builds
//! Tollgate and runs this (as root).
//!
//! Two relay nodes on switched gateway and internal segments (network namespaces and bridges),
//! keepalived on each moving the service addresses (VRRPv3 on the internal side), Valkey on its
//! own address holding the calls and the service lease, and `tollgate run` in standby on both
//! nodes. Calls with SRTP audio are put up through node A; then node A fails: in round 1 its
//! Tollgate and keepalived are killed (`kill -9`), in round 2 its links are cut. keepalived
//! moves the addresses to node B, whose Tollgate takes the lease and the calls. Each call's
//! media gap is printed, both directions, and the demo ends with a PASS or FAIL line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tollgate_netlab::is_root;
use tollgate_simua::daemon_log::StartSplit;
use tollgate_simua::failover::{self, Failure, percentile};
use tollgate_simua::scenario::{Direction, Report};

/// The goal: the media gap across a failover at p99, ms (VRRP advert interval included).
const GAP_P99_GOAL_MS: u64 = 2000;

struct Args {
    tollgate: PathBuf,
    calls: usize,
    talk: Duration,
    datapath: String,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        tollgate: PathBuf::from("target/release/tollgate"),
        calls: 20,
        talk: Duration::from_secs(12),
        datapath: "xdp".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or_else(|| format!("{k} needs a value"));
        match k.as_str() {
            "--tollgate" => a.tollgate = PathBuf::from(v()?),
            "--calls" => a.calls = v()?.parse().map_err(|_| "--calls takes a number")?,
            "--talk-secs" => {
                a.talk =
                    Duration::from_secs(v()?.parse().map_err(|_| "--talk-secs takes a number")?)
            }
            "--datapath" => a.datapath = v()?,
            "-h" | "--help" => {
                println!(
                    "tollgate-demo-failover [--calls N] [--talk-secs S] [--datapath xdp|socket] [--tollgate PATH]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.calls == 0 || !a.calls.is_multiple_of(2) {
        return Err("--calls must be an even number (calls hang up from alternating sides)".into());
    }
    if a.talk < Duration::from_secs(6) {
        return Err("--talk-secs must be at least 6 (the failure comes mid-call)".into());
    }
    Ok(a)
}

/// Prints each call's media gap and the summary; whether the round passed.
fn report(failure: Failure, r: &failover::Round, calls: usize) -> bool {
    let Report {
        calls: outcomes, ..
    } = &r.report;
    println!("  call   gateway->internal gap   internal->gateway gap   audio");
    let mut gaps = Vec::new();
    for c in outcomes {
        // The caller receives what the callee sends, and the reverse; inbound calls are
        // placed by the gateway.
        let (to_int, to_gw) = (c.callee.max_gap_ms, c.caller.max_gap_ms);
        gaps.extend([to_int, to_gw]);
        println!(
            "  {:>4}   {:>15} ms   {:>15} ms   {}",
            c.index,
            to_int,
            to_gw,
            if c.ok() {
                "intact".to_owned()
            } else {
                format!("FAILED {:?}", c.error)
            }
        );
    }
    let (p50, p99, max) = (
        percentile(&mut gaps, 50.0),
        percentile(&mut gaps, 99.0),
        percentile(&mut gaps, 100.0),
    );
    let auth: u64 = outcomes
        .iter()
        .map(|c| c.caller.auth_failures + c.callee.auth_failures)
        .sum();
    let ok = r.report.ok();
    println!(
        "  {}: node B had the addresses after {} ms and carried the calls after {} ms",
        failure.as_str(),
        r.vrrp.as_millis(),
        r.serving.as_millis()
    );
    println!(
        "  media gap p50 {p50} ms  p99 {p99} ms  max {max} ms (goal p99 <= {GAP_P99_GOAL_MS} ms); calls intact {ok}/{calls}; SRTP auth failures {auth}"
    );
    ok == calls && auth == 0 && p99 <= GAP_P99_GOAL_MS
}

/// Where node B's takeover went once it held the service: the store read, listening, and the
/// restore with the flow install (from its log).
fn print_start(b: &StartSplit) {
    let ms = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |v| format!("{v:.0} ms"));
    let n = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |v| format!("{v:.0}"));
    println!(
        "  node B once it held the service: store read {} ({} records), listening {} after that, restore + flow install {} ({} calls)",
        ms(b.load_ms),
        n(b.records),
        ms(b.startup_ms),
        ms(b.restore_ms),
        n(b.restored),
    );
}

/// One round in a fresh lab: pair, calls, failure, report, the calls ended on node B.
fn run_round(a: &Args, n: usize, failure: Failure) -> Result<bool, String> {
    println!(
        "==> [failover] round {n}: node A fails by {}",
        failure.as_str()
    );
    let scratch = std::env::temp_dir().join(format!("tg-demo-failover-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let result = (|| {
        let t = Instant::now();
        let mut p = failover::pair(&format!("df{n}"), &a.datapath, &scratch, &a.tollgate)?;
        println!(
            "  lab up, keepalived on both nodes, node A serves svc1 ({} ms after its start), node B in standby ({:.1} s)",
            p.n1_start.as_millis(),
            t.elapsed().as_secs_f64()
        );
        let mut plan = failover::plan(Direction::Inbound, a.calls, a.talk);
        // Calls set up at a rate must still be talking when node A fails.
        if let Some(rate) = plan.rate {
            let ramp = Duration::from_secs_f64(a.calls as f64 / rate);
            plan.talk = plan.talk.max(ramp + Duration::from_secs(8));
        }
        println!(
            "  {} calls with SRTP audio through node A{}, each talking {} s; node A fails once they are all stored",
            a.calls,
            plan.rate
                .map_or(String::new(), |r| format!(" (set up at {r:.0} calls/s)")),
            plan.talk.as_secs()
        );
        let r = failover::round(&mut p, &plan, failure)?;
        let passed = report(failure, &r, a.calls);
        print_start(&StartSplit::from_log(&p.n2.log()));
        let drained =
            failover::wait_for("node B to end every call", Duration::from_secs(30), || {
                p.n2.status().is_some_and(|v| v["calls"] == 0)
            });
        let cdrs = p.n2.cdrs();
        println!(
            "  node B wrote {} CDRs (every call ended by a BYE after the failover), node A {}",
            cdrs.len(),
            p.n1.cdrs().len()
        );
        p.n2.stop(Duration::from_secs(10));
        Ok(passed && drained.is_ok() && cdrs.len() == a.calls)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tollgate-demo-failover: {e}");
            return ExitCode::from(2);
        }
    };
    if !is_root() {
        eprintln!(
            "tollgate-demo-failover: needs root (network namespaces, bridges, keepalived, XDP)"
        );
        return ExitCode::from(2);
    }
    let mut all = true;
    for (n, failure) in [(1, Failure::Kill), (2, Failure::Cut)] {
        match run_round(&a, n, failure) {
            Ok(true) => println!("  round {n}: pass"),
            Ok(false) => {
                println!("  round {n}: FAIL");
                all = false;
            }
            Err(e) => {
                println!("  round {n}: FAIL: {e}");
                all = false;
            }
        }
    }
    if all {
        println!(
            "failover demo: PASS (kill -9 and links cut: every call carried on through node B)"
        );
        ExitCode::SUCCESS
    } else {
        println!("failover demo: FAIL");
        ExitCode::FAILURE
    }
}
