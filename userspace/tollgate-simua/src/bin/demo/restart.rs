//! `tollgate-demo --restart`: calls survive a crash of Tollgate.
//!
//! N concurrent calls from the simulated gateway to the internal endpoint (RTP outside, SRTP
//! inside), the call-state store on (`[state]`: a redb file, or a private Valkey/Redis server
//! with `--store valkey`). Once every call is answered and stored, Tollgate is killed with
//! SIGKILL and started again; the new process reads the store, restores the calls (same relay
//! ports, flows, SRTP continuing) and the calls carry on to their end, hung up from alternating
//! sides. The parties measure every call's longest silence in each direction: the restart's
//! media gap. The parties note when each long silence happened, so the gap across the kill is
//! told apart from silences at other times (a loaded lab's own scheduling delays).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate_netlab::is_root;
use tollgate_simua::daemon_log::{logged, strip_ansi};
use tollgate_simua::process::{Launch, TollgateProcess};
use tollgate_simua::scenario::{CallOutcome, Direction, Parties, Plan, Report};
use tollgate_state::testing::ValkeyServer;

use super::{Args, progress};

/// The goal for the media gap across a restart, ms.
const GAP_GOAL_MS: u64 = 300;
/// Offered call rate while the calls are set up, above this many calls (below: all at once).
const RAMP_ABOVE: usize = 50;
const RAMP_CPS: f64 = 200.0;

/// `tollgate ctl --socket S --json status`, once it answers.
fn status(tollgate: &Path, socket: &Path) -> Option<Value> {
    let out = Command::new(tollgate)
        .args(["ctl", "--socket"])
        .arg(socket)
        .args(["--json", "status"])
        .output()
        .ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    (v["ok"] == true).then_some(v)
}

/// Nearest-rank percentile of `v` (sorted in place); 0 for an empty slice.
fn percentile(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    let i = ((p / 100.0) * (v.len().saturating_sub(1)) as f64).round() as usize;
    v.get(i).copied().unwrap_or(0)
}

/// CPU seconds (user + system) of this process (the simulated parties run in it).
fn self_cpu() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Whether something accepts TCP connections on `addr` (from namespace `ns`, if given).
fn listening(ns: Option<&str>, addr: SocketAddr) -> bool {
    let probe =
        move || std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok();
    match ns {
        Some(n) => tollgate_netlab::in_netns(n, probe).unwrap_or(false),
        None => probe(),
    }
}

/// Polls `listening` every 5 ms for up to `timeout`.
fn wait_listening_fine(ns: Option<&str>, addr: SocketAddr, timeout: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if listening(ns, addr) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// What the restart took, from the demo's clock and the new process's log.
#[derive(Default)]
struct Split {
    /// SIGKILL sent to the new process spawned, ms.
    kill_to_spawn: f64,
    /// SIGKILL sent to the SIP port accepting again (seen from the gateway), ms.
    kill_to_listening: f64,
    load_ms: Option<f64>,
    stored_read: Option<f64>,
    startup_ms: Option<f64>,
    restore_ms: Option<f64>,
    restored: Option<f64>,
    ended: Option<f64>,
    unreadable: Option<f64>,
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "not logged".into(), |x| format!("{x:.1} ms"))
}

/// Audio lost for good: a direction that received nothing after the kill (its audio never
/// resumed once the new process took the call over).
fn audio_lost(c: &CallOutcome, kill: Instant) -> bool {
    [&c.caller, &c.callee]
        .iter()
        .any(|m| match (m.started_at, m.last_packet_ms) {
            (Some(s), Some(last)) => s + Duration::from_millis(last) <= kill,
            _ => true,
        })
}

/// No audio in the call's last 1.5 s plus its setup time (the callee's talk timer starts at
/// its answer, the caller's when the 200 arrives): informational, a loaded lab's silences
/// show here too.
fn audio_ended_early(c: &CallOutcome, talk: Duration) -> bool {
    let slack = 1500 + c.setup.map_or(0, |d| d.as_millis() as u64);
    [&c.caller, &c.callee]
        .iter()
        .any(|m| m.last_packet_ms.unwrap_or(0) + slack < talk.as_millis() as u64)
}

/// A call's silences in each direction: (restart gap at the gateway, at the internal
/// endpoint, longest other silence at either). A restart gap of 0 means no silence of
/// [`tollgate_simua::media::LONG_GAP_MS`] or more spanned the kill in that direction (or the
/// party's 32 longest silences were all longer).
fn gaps(c: &CallOutcome, kill: Instant) -> (u64, u64, u64) {
    (
        c.caller.gap_at(kill).unwrap_or(0),
        c.callee.gap_at(kill).unwrap_or(0),
        c.caller
            .longest_gap_besides(kill)
            .max(c.callee.longest_gap_besides(kill)),
    )
}

fn row(c: &CallOutcome, kill: Instant, talk: Duration) {
    let (g, i, other) = gaps(c, kill);
    println!(
        "  {:>5} {:>11} ms {:>11} ms {:>11} ms {:>9} {:>9} {:>9}  {}",
        c.index,
        g,
        i,
        other,
        c.caller.received,
        c.callee.received,
        c.caller.auth_failures + c.callee.auth_failures,
        verdict(c, kill, talk)
    );
}

fn header() {
    println!(
        "  {:>5} {:>14} {:>14} {:>14} {:>9} {:>9} {:>9}  result",
        "call",
        "restart int>gw",
        "restart gw>int",
        "other silence",
        "rx at gw",
        "rx at int",
        "auth fail"
    );
}

fn print_gaps(r: &Report, kill: Instant, talk: Duration) {
    // Inbound calls: the caller is the gateway, the callee the internal endpoint.
    if r.calls.len() <= 50 {
        header();
        for c in &r.calls {
            row(c, kill, talk);
        }
        return;
    }
    type Pick = fn(&CallOutcome, Instant) -> u64;
    let picks: [(&str, Pick); 3] = [
        ("restart gap int->gw (heard at the gateway)", |c, k| {
            gaps(c, k).0
        }),
        ("restart gap gw->int (heard at the internal end)", |c, k| {
            gaps(c, k).1
        }),
        ("longest other silence, either direction", |c, k| {
            gaps(c, k).2
        }),
    ];
    for (label, pick) in picks {
        let mut g: Vec<u64> = r.calls.iter().map(|c| pick(c, kill)).collect();
        println!(
            "  {label:<48} p50 {:>5} ms  p90 {:>5} ms  p99 {:>5} ms  max {:>5} ms",
            percentile(&mut g, 50.0),
            percentile(&mut g, 90.0),
            percentile(&mut g, 99.0),
            percentile(&mut g, 100.0)
        );
    }
    let mut worst: Vec<&CallOutcome> = r.calls.iter().collect();
    worst.sort_by_key(|c| {
        let (g, i, _) = gaps(c, kill);
        std::cmp::Reverse(g.max(i))
    });
    println!("  the 10 worst calls (longest restart gap):");
    header();
    for c in worst.iter().take(10) {
        row(c, kill, talk);
    }
    let bad: Vec<&CallOutcome> = r
        .calls
        .iter()
        .filter(|c| !verdict(c, kill, talk).starts_with("ok"))
        .collect();
    if !bad.is_empty() {
        println!("  calls not ok ({}; the first 10):", bad.len());
        header();
        for c in bad.iter().take(10) {
            row(c, kill, talk);
        }
    }
}

fn verdict(c: &CallOutcome, kill: Instant, talk: Duration) -> String {
    if let Some(e) = &c.error {
        return format!("FAILED: {e}");
    }
    if c.caller.auth_failures + c.callee.auth_failures > 0 {
        return "SRTP auth failures".into();
    }
    if audio_lost(c, kill) {
        return "audio lost for good: nothing after the kill".into();
    }
    if audio_ended_early(c, talk) {
        return format!(
            "ok; silent at the end (last packet at {} / {} ms)",
            c.caller.last_packet_ms.unwrap_or(0),
            c.callee.last_packet_ms.unwrap_or(0)
        );
    }
    if !c.ok() {
        return "media not intact".into();
    }
    "ok".into()
}

pub(super) fn run(a: &Args) -> Result<bool, String> {
    let root = is_root();
    let _ = std::fs::remove_dir_all(&a.out);
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let out = std::fs::canonicalize(&a.out).map_err(|e| e.to_string())?;
    let tollgate =
        std::fs::canonicalize(&a.tollgate).map_err(|e| format!("{}: {e}", a.tollgate.display()))?;
    let n = a.calls;
    let rate = (n > RAMP_ABOVE).then_some(RAMP_CPS);
    let ramp_s = rate.map_or(0.0, |r| n as f64 / r);
    // Long enough for every call to be answered and stored, two seconds of audio, the
    // restart, and ten seconds more after it.
    let talk = if a.talk_given {
        a.talk
    } else {
        Duration::from_secs(12 + ramp_s.ceil() as u64)
    };
    if talk.as_secs_f64() < ramp_s + 6.0 {
        println!(
            "==> warning: {} s of talk may end calls before the restart (setting up {n} calls takes about {ramp_s:.0} s)",
            talk.as_secs()
        );
    }

    let (lab, addrs, relay_ns) = super::demo_lab(root)?;
    let datapath = a
        .datapath
        .clone()
        .unwrap_or_else(|| if root { "xdp".into() } else { "socket".into() });
    let valkey = if a.store == "valkey" {
        let v = ValkeyServer::start().map_err(|e| format!("call-state store: {e}"))?;
        println!(
            "==> call-state store: a private {} on {}",
            v.binary().display(),
            v.url()
        );
        Some(v)
    } else {
        println!(
            "==> call-state store: a local file, {}",
            out.join("calls.redb").display()
        );
        None
    };
    let state = match &valkey {
        Some(v) => format!(
            "\n[state]\nbackend = \"valkey\"\nurl = \"{}\"\nnode_id = \"demo\"\n",
            v.url()
        ),
        None => format!(
            "\n[state]\nbackend = \"file\"\npath = \"{}\"\n",
            out.join("calls.redb").display()
        ),
    };
    let pki = addrs.pki(&out.join("certs")).map_err(|e| e.to_string())?;
    let cdr = out.join("cdr.jsonl");
    let socket = cdr.with_file_name("control.sock");
    let cfg = addrs.tollgate_config(&pki, &datapath, 1, &cdr, None) + &state;
    let cfg_path = out.join("tollgate.toml");
    std::fs::write(&cfg_path, cfg).map_err(|e| e.to_string())?;
    let topo = addrs.topology(&pki);

    println!(
        "==> starting the simulated gateway ({}) and internal endpoint ({}, mTLS)",
        topo.gw_sip, topo.int_sip
    );
    let parties = Parties::start(&topo, Duration::ZERO, true)?;
    let log1 = out.join("tollgate-1.log");
    let log2 = out.join("tollgate-2.log");
    println!(
        "==> starting tollgate ({datapath} data path, store {}); log in {}",
        a.store,
        log1.display()
    );
    let launch = Launch {
        netns: relay_ns.as_deref(),
        ..Launch::default()
    };
    let mut tg = TollgateProcess::spawn(&tollgate, &cfg_path, &log1, &launch)
        .map_err(|e| format!("starting {}: {e}", tollgate.display()))?;
    let ext_sip = SocketAddr::new(addrs.relay_ext, 5060);
    if !wait_listening_fine(addrs.gw_ns.as_deref(), ext_sip, Duration::from_secs(20)) {
        return Err(format!(
            "tollgate did not start listening on {ext_sip}; see {}",
            log1.display()
        ));
    }
    std::thread::sleep(Duration::from_millis(300));

    let plan = Plan {
        direction: Direction::Inbound,
        calls: n,
        concurrency: n,
        talk,
        ring: Duration::ZERO,
        media: true,
        first_index: 0,
        rate,
    };
    println!(
        "==> {n} concurrent calls (PSTN gateway -> Tollgate -> internal endpoint, SRTP inside){}, {} s of audio each",
        rate.map_or_else(String::new, |r| format!(", set up at {r:.0} calls/s")),
        talk.as_secs()
    );
    let mut fails: Vec<String> = Vec::new();
    let mut split = Split::default();
    let kill_at = std::cell::Cell::new(Instant::now());
    let (cpu_parties0, t_calls) = (self_cpu(), Instant::now());
    let cpu_tg1 = std::cell::Cell::new(0.0);
    let result = std::thread::scope(|sc| -> Result<(Report, TollgateProcess, f64), String> {
        let run = sc.spawn(|| parties.run(&plan));
        // Every call answered, and stored with its SRTP positions.
        let t = Instant::now();
        let limit = Duration::from_secs_f64(30.0 + 2.0 * ramp_s);
        let mut last_print = Instant::now();
        loop {
            let st = status(&tollgate, &socket);
            let (stored, unprotected, calls) = st.as_ref().map_or((0, 0, 0), |v| {
                (
                    v["state"]["stored_calls"].as_u64().unwrap_or(0),
                    v["state"]["unprotected_calls"].as_u64().unwrap_or(0),
                    v["calls"].as_u64().unwrap_or(0),
                )
            });
            if stored == n as u64 && unprotected == 0 {
                println!(
                    "  {:>4.1}s  {calls} calls up, {stored} stored: all answered and stored",
                    t.elapsed().as_secs_f64()
                );
                break;
            }
            if last_print.elapsed() >= Duration::from_secs(1) {
                println!(
                    "  {:>4.0}s  waiting for {n} calls answered and stored: {calls} calls up, {stored} stored, {unprotected} not yet stored",
                    t.elapsed().as_secs_f64()
                );
                last_print = Instant::now();
            }
            if t.elapsed() > limit || run.is_finished() {
                tg.kill();
                return Err(format!(
                    "not every call was answered and stored within {:.0} s (last status {st:?}); see {}",
                    limit.as_secs_f64(),
                    log1.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        println!("==> audio running; SIGKILL in 2 s");
        std::thread::sleep(Duration::from_secs(2));
        cpu_tg1.set(tg.cpu_secs().unwrap_or(0.0));
        println!(
            "==> SIGKILL to tollgate (pid {}) with {n} calls up; starting it again, log in {}",
            tg.pid(),
            log2.display()
        );
        let down = Instant::now();
        kill_at.set(down);
        tg.kill();
        let tg2 = TollgateProcess::spawn(&tollgate, &cfg_path, &log2, &launch);
        split.kill_to_spawn = down.elapsed().as_secs_f64() * 1e3;
        let tg2 = tg2.map_err(|e| format!("starting {} again: {e}", tollgate.display()))?;
        if !wait_listening_fine(addrs.gw_ns.as_deref(), ext_sip, Duration::from_secs(30)) {
            return Err(format!(
                "tollgate did not listen again on {ext_sip}; see {}",
                log2.display()
            ));
        }
        split.kill_to_listening = down.elapsed().as_secs_f64() * 1e3;
        println!(
            "  listening again {:.0} ms after the kill; the calls go on to their end",
            split.kill_to_listening
        );
        let (stop, pt) = progress("calls", n, &parties);
        let report = run.join().map_err(|_| "the call driver panicked")?;
        stop.store(true, Ordering::Relaxed);
        let _ = pt.join();
        Ok((report?, tg2, down.elapsed().as_secs_f64()))
    });
    let (report, mut tg2, _) = match result {
        Ok(x) => x,
        Err(e) => {
            drop(parties);
            drop(valkey);
            drop(lab);
            return Err(e);
        }
    };
    let wall = t_calls.elapsed().as_secs_f64();
    let cpu_parties = self_cpu() - cpu_parties0;
    let cpu_tg2 = tg2.cpu_secs().unwrap_or(0.0);

    let log = strip_ansi(&std::fs::read_to_string(&log2).unwrap_or_default());
    split.load_ms = logged(&log, "call-state store read", "load_ms");
    split.stored_read = logged(&log, "call-state store read", "calls");
    split.startup_ms = logged(&log, "started:", "startup_ms");
    split.restore_ms = logged(&log, "taken over", "restore_and_install_ms");
    split.restored = logged(&log, "taken over", "restored");
    split.ended = logged(&log, "taken over", "ended");
    split.unreadable = logged(&log, "taken over", "unreadable");

    println!();
    println!("==> media gap per call (the longest silence each party heard; the restart is in it)");
    let kill = kill_at.get();
    print_gaps(&report, kill, talk);

    // Verdicts.
    let restored = split.restored.unwrap_or(0.0) as usize;
    if restored != n {
        fails.push(format!(
            "{restored} of {n} calls restored (ended {}, unreadable {})",
            split.ended.unwrap_or(f64::NAN),
            split.unreadable.unwrap_or(f64::NAN)
        ));
    }
    let failed: Vec<&CallOutcome> = report.calls.iter().filter(|c| c.error.is_some()).collect();
    if !failed.is_empty() {
        fails.push(format!("{} calls failed", failed.len()));
    }
    let auth: u64 = report
        .calls
        .iter()
        .map(|c| c.caller.auth_failures + c.callee.auth_failures)
        .sum();
    if auth > 0 {
        fails.push(format!(
            "{auth} SRTP authentication failures at the parties"
        ));
    }
    let lost_for_good = report
        .calls
        .iter()
        .filter(|c| c.error.is_none() && audio_lost(c, kill))
        .count();
    if lost_for_good > 0 {
        fails.push(format!(
            "{lost_for_good} calls lost audio for good (nothing received after the kill in a direction)"
        ));
    }
    let quiet_end = report
        .calls
        .iter()
        .filter(|c| c.error.is_none() && audio_ended_early(c, talk))
        .count();
    let broken = report
        .calls
        .iter()
        .filter(|c| c.error.is_none() && !c.ok())
        .count();
    if broken > 0 {
        fails.push(format!(
            "{broken} calls with corrupted or missing audio in a direction"
        ));
    }

    // Nothing left once the calls have ended: no call, no relay port, no stored record.
    println!("==> waiting for the restored calls to be gone (calls, relay ports, stored records)");
    let t = Instant::now();
    let mut last: Option<Value>;
    let clean = loop {
        last = status(&tollgate, &socket);
        let done = last.as_ref().is_some_and(|v| {
            v["calls"] == 0
                && v["ports"]["ext"] == 0
                && v["ports"]["int"] == 0
                && v["state"]["stored_calls"] == 0
        });
        if done || t.elapsed() > Duration::from_secs(30) {
            break done;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !clean {
        fails.push(format!(
            "calls or ports left after the calls ended: {last:?}"
        ));
    }
    let cdrs: Vec<Value> = std::fs::read_to_string(&cdr)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let crossed = cdrs.iter().filter(|l| l["restarts"] == 1).count();
    if cdrs.len() != n || crossed != n {
        fails.push(format!(
            "{} CDRs, {crossed} saying the call crossed a restart (expected {n})",
            cdrs.len()
        ));
    }
    println!("==> stopping tollgate (SIGTERM: drain)");
    match tg2.stop(Duration::from_secs(15)) {
        Some(s) if s.success() => println!("  tollgate drained and exited"),
        Some(s) => fails.push(format!("tollgate exited with {s}")),
        None => fails.push("tollgate did not exit in time".into()),
    }
    drop(parties);
    drop(tg2);
    drop(valkey);
    if lab.is_some() {
        println!("==> lab removed");
    }
    drop(lab);

    let mut all: Vec<u64> = report
        .calls
        .iter()
        .flat_map(|c| {
            let (g, i, _) = gaps(c, kill);
            [g, i]
        })
        .collect();
    let (p50, p99, max) = (
        percentile(&mut all, 50.0),
        percentile(&mut all, 99.0),
        percentile(&mut all, 100.0),
    );
    let mut other: Vec<u64> = report.calls.iter().map(|c| gaps(c, kill).2).collect();
    let (o50, o99, omax) = (
        percentile(&mut other, 50.0),
        percentile(&mut other, 99.0),
        percentile(&mut other, 100.0),
    );
    let mut longest: Vec<u64> = report
        .calls
        .iter()
        .flat_map(|c| [c.caller.max_gap_ms, c.callee.max_gap_ms])
        .collect();
    let lmax = percentile(&mut longest, 100.0);
    let ok = report.ok();
    let (_, _, lost) = report.packets();
    println!();
    println!(
        "==> summary: {n} calls, {datapath} data path, {} store, {} s of audio per call",
        a.store,
        talk.as_secs()
    );
    println!(
        "  calls             {ok}/{n} ok | setup p50 {:.1} ms p99 {:.1} ms | packets lost {lost} (the restart's gap included)",
        report.setup_percentile(50.0).unwrap_or(0.0),
        report.setup_percentile(99.0).unwrap_or(0.0),
    );
    println!("  restart split");
    println!(
        "    kill -> new process started                {:>8.1} ms (SIGKILL, reap, spawn)",
        split.kill_to_spawn
    );
    println!(
        "    state load (load_ms)                       {:>11} ({} records read)",
        ms(split.load_ms),
        split
            .stored_read
            .map_or_else(|| "?".into(), |c| format!("{c:.0}"))
    );
    println!(
        "    process start -> listening (startup_ms)    {:>11}",
        ms(split.startup_ms)
    );
    println!(
        "    restore + flow install                     {:>11} (restored {}, ended {}, unreadable {})",
        ms(split.restore_ms),
        split
            .restored
            .map_or_else(|| "?".into(), |c| format!("{c:.0}")),
        split
            .ended
            .map_or_else(|| "?".into(), |c| format!("{c:.0}")),
        split
            .unreadable
            .map_or_else(|| "?".into(), |c| format!("{c:.0}"))
    );
    println!(
        "    kill -> SIP port accepting (from the gw)   {:>8.1} ms",
        split.kill_to_listening
    );
    println!(
        "  media gap         p50 {p50} ms  p99 {p99} ms  max {max} ms across the restart, over {} directions (goal: <= {GAP_GOAL_MS} ms at p99: {})",
        all.len(),
        if p99 <= GAP_GOAL_MS { "met" } else { "not met" }
    );
    println!(
        "  other silences    p50 {o50} ms  p99 {o99} ms  max {omax} ms per call, away from the restart (the lab's load: setup, scheduling); longest silence of all {lmax} ms"
    );
    println!(
        "  CPU               parties {:.0}% | tollgate before the kill {:.1} s, after {:.1} s, over {wall:.1} s ({} cores)",
        cpu_parties * 100.0 / wall.max(0.001),
        cpu_tg1.get(),
        cpu_tg2,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "  audio             {}/{n} calls heard audio after the kill in both directions; {quiet_end} calls were silent in their last 1.5 s after their audio had resumed (the lab's load, not the restart)",
        n - lost_for_good
    );
    println!(
        "  CDRs              {} lines, {crossed} crossed a restart ({})",
        cdrs.len(),
        cdr.display()
    );
    for f in &fails {
        println!("  FAIL: {f}");
    }
    println!();
    let pass = fails.is_empty();
    println!(
        "{}",
        if pass {
            format!(
                "RESTART DEMO PASS: {n} calls killed mid-call, restored and carried on to their end (media gap p99 {p99} ms, max {max} ms)"
            )
        } else {
            format!("RESTART DEMO FAIL: {}", fails.join("; "))
        }
    );
    Ok(pass)
}
