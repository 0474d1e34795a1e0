//! Calls survive a restart, in the namespace lab with real traffic: 50 calls are up with SRTP
//! audio both ways, Tollgate is killed with SIGKILL (or hands over with SIGUSR2) and started
//! again; the new process takes the calls from the call-state store (a local file, or a real
//! Valkey/Redis server on a private Unix socket), and every call's audio resumes in both
//! directions with SRTP authenticating at the receiver (no replay rejects). The calls then end
//! with BYEs from alternating sides, on connections the peers open anew; every call has one
//! CDR that says it crossed a restart, and no relay port is left.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{Scratch, assert_calls_intact, assert_cdrs, bin, start_tollgate};
use serde_json::Value;
use tollgate_netlab::{LabSpec, require_root};
use tollgate_simua::labconf::LabAddrs;
use tollgate_simua::scenario::{Direction, Parties, Plan};
use tollgate_state::testing::ValkeyServer;

const CALLS: usize = 50;

/// `tollgate ctl --socket S --json status`, once it answers.
fn status(socket: &Path) -> Option<Value> {
    let out = Command::new(bin())
        .args(["ctl", "--socket"])
        .arg(socket)
        .args(["--json", "status"])
        .output()
        .ok()?;
    let v: Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => {
            eprintln!(
                "ctl status: {e}: {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
    };
    (v["ok"] == true).then_some(v)
}

/// Polls `f` every 50 ms until it holds or `deadline` passes.
fn wait_for(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

enum Store {
    File,
    Valkey,
}

enum Stop {
    /// SIGKILL: a crash.
    Kill,
    /// `tollgate ctl handover` (as SIGUSR2): a handover for an upgrade.
    Handover,
}

fn percentile(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    let i = ((p / 100.0) * (v.len().saturating_sub(1)) as f64).round() as usize;
    v.get(i).copied().unwrap_or(0)
}

fn calls_survive(datapath: &str, store: Store, stop: Stop, direction: Direction) {
    let lab = LabSpec::unique("rs").up_guarded().expect("lab up");
    let spec = lab.spec().clone();
    let dir = Scratch::new(&format!("restart-{datapath}"));
    let a = LabAddrs::from_lab(&spec);
    let pki = a.pki(&dir.0.join("certs")).unwrap();
    let cdr = dir.0.join("cdr.jsonl");
    let socket = dir.0.join("control.sock");
    let cfg_path = dir.0.join("tollgate.toml");
    let valkey = match store {
        Store::Valkey => Some(ValkeyServer::start().expect("valkey-server or redis-server")),
        Store::File => None,
    };
    let state = match &valkey {
        Some(v) => format!(
            "\n[state]\nbackend = \"valkey\"\nurl = \"{}\"\nnode_id = \"lab-a\"\n",
            v.url()
        ),
        None => format!(
            "\n[state]\nbackend = \"file\"\npath = \"{}\"\n",
            dir.0.join("calls.redb").display()
        ),
    };
    let text = a.tollgate_config(&pki, datapath, 1, &cdr, None) + &state;
    std::fs::write(&cfg_path, text).unwrap();
    let parties = Parties::start(&a.topology(&pki), Duration::from_millis(100), true).unwrap();
    let ext = SocketAddr::new(a.relay_ext, 5060);
    let first_dir = dir.0.join("first");
    std::fs::create_dir_all(&first_dir).unwrap();
    let mut tg = start_tollgate(&spec, &cfg_path, &first_dir, ext);
    let plan = Plan {
        direction,
        calls: CALLS,
        concurrency: CALLS,
        talk: Duration::from_secs(12),
        ring: Duration::from_millis(100),
        media: true,
        first_index: 0,
        rate: None,
    };
    let second_dir = dir.0.join("second");
    std::fs::create_dir_all(&second_dir).unwrap();
    let (report, mut tg2, down_for) = std::thread::scope(|sc| {
        let run = sc.spawn(|| parties.run(&plan));
        // Every call answered and stored.
        let mut last = None;
        let stored = |last: &mut Option<Value>| {
            *last = status(&socket);
            last.as_ref().is_some_and(|v| {
                v["state"]["stored_calls"].as_u64() == Some(CALLS as u64)
                    && v["state"]["unprotected_calls"].as_u64() == Some(0)
            })
        };
        let t = Instant::now();
        while !stored(&mut last) {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "50 calls stored: last status {last:?}; log:\n{}",
                std::fs::read_to_string(first_dir.join("tollgate.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Let audio run a moment before the stop.
        std::thread::sleep(Duration::from_secs(2));
        let down = Instant::now();
        match stop {
            Stop::Kill => {
                tg.kill();
            }
            Stop::Handover => {
                let out = Command::new(bin())
                    .args(["ctl", "--socket"])
                    .arg(&socket)
                    .arg("handover")
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "ctl handover: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(
                    tg.wait_exit(Duration::from_secs(10)).is_some(),
                    "handover exits"
                );
            }
        }
        let tg2 = start_tollgate(&spec, &cfg_path, &second_dir, ext);
        let down_for = down.elapsed();
        let report = run.join().unwrap().expect("scenario");
        (report, tg2, down_for)
    });
    let log2 = std::fs::read_to_string(second_dir.join("tollgate.log")).unwrap_or_default();
    eprintln!(
        "restart ({datapath}): listening again after {} ms; the new process logged:\n{}",
        down_for.as_millis(),
        log2.lines()
            .filter(|l| l.contains("call-state")
                || l.contains("taken over")
                || l.contains("started:"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut gaps = Vec::new();
    for c in &report.calls {
        eprintln!(
            "call {:2}: err {:?} caller rx {} gap {} ms auth_fail {} | callee rx {} gap {} ms auth_fail {}",
            c.index,
            c.error,
            c.caller.received,
            c.caller.max_gap_ms,
            c.caller.auth_failures,
            c.callee.received,
            c.callee.max_gap_ms,
            c.callee.auth_failures
        );
        gaps.push(c.caller.max_gap_ms);
        gaps.push(c.callee.max_gap_ms);
    }
    let (p50, p99, max) = (
        percentile(&mut gaps, 50.0),
        percentile(&mut gaps, 99.0),
        percentile(&mut gaps, 100.0),
    );
    eprintln!("media gap across the restart: p50 {p50} ms  p99 {p99} ms  max {max} ms");
    // Audio flowed until the end of every call: it resumed after the restart.
    assert_calls_intact(&report, &plan, CALLS);
    // Nothing left: no call, no port, no stored record.
    wait_for("calls gone", Duration::from_secs(20), || {
        status(&socket).is_some_and(|v| {
            v["calls"] == 0
                && v["ports"]["ext"] == 0
                && v["ports"]["int"] == 0
                && v["state"]["stored_calls"] == 0
                && v["state"]["unprotected_calls"] == 0
        })
    });
    assert!(
        tg2.stop(Duration::from_secs(10)).is_some(),
        "drains and exits"
    );
    let cdrs: Vec<Value> = std::fs::read_to_string(&cdr)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_cdrs(&cdrs, CALLS);
    for l in &cdrs {
        assert_eq!(
            l["restarts"], 1,
            "the CDR says the call crossed a restart: {l}"
        );
        assert!(
            l["duration_s"].as_f64().unwrap() >= 10.0,
            "the duration counts from the original answer: {l}"
        );
    }
    drop(valkey);
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn calls_survive_kill9_socket_path_file_store() {
    require_root("calls_survive_kill9_socket_path_file_store");
    calls_survive("socket", Store::File, Stop::Kill, Direction::Inbound);
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn calls_survive_kill9_xdp_path_valkey_store() {
    require_root("calls_survive_kill9_xdp_path_valkey_store");
    calls_survive("xdp", Store::Valkey, Stop::Kill, Direction::Outbound);
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn calls_survive_a_handover_socket_path_valkey_store() {
    require_root("calls_survive_a_handover_socket_path_valkey_store");
    calls_survive("socket", Store::Valkey, Stop::Handover, Direction::Inbound);
}

/// A 30-second Valkey outage during call churn: no call is dropped, the daemon does not
/// crash, new calls still work, and once Valkey is back every live call is written again.
#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn a_store_outage_drops_no_call_and_state_resyncs() {
    require_root("a_store_outage_drops_no_call_and_state_resyncs");
    let lab = LabSpec::unique("so").up_guarded().expect("lab up");
    let spec = lab.spec().clone();
    let dir = Scratch::new("store-outage");
    let a = LabAddrs::from_lab(&spec);
    let pki = a.pki(&dir.0.join("certs")).unwrap();
    let cdr = dir.0.join("cdr.jsonl");
    let socket = dir.0.join("control.sock");
    let cfg_path = dir.0.join("tollgate.toml");
    let mut valkey = ValkeyServer::start().expect("valkey-server or redis-server");
    let text = a.tollgate_config(&pki, "socket", 1, &cdr, None)
        + &format!(
            "\n[state]\nbackend = \"valkey\"\nurl = \"{}\"\nnode_id = \"lab-o\"\n",
            valkey.url()
        );
    std::fs::write(&cfg_path, text).unwrap();
    let parties = Parties::start(&a.topology(&pki), Duration::from_millis(100), true).unwrap();
    let ext = SocketAddr::new(a.relay_ext, 5060);
    let mut tg = start_tollgate(&spec, &cfg_path, &dir.0, ext);
    // About 40 s of churn: a new call every 0.8 s, each talking 4 s.
    let plan = Plan {
        direction: Direction::Inbound,
        calls: 50,
        concurrency: 10,
        talk: Duration::from_secs(4),
        ring: Duration::from_millis(100),
        media: true,
        first_index: 0,
        rate: Some(1.25),
    };
    let outage = Duration::from_secs(30);
    let (report, during) = std::thread::scope(|sc| {
        let run = sc.spawn(|| parties.run(&plan));
        wait_for("a stored call", Duration::from_secs(20), || {
            status(&socket).is_some_and(|v| v["state"]["stored_calls"].as_u64() > Some(0))
        });
        valkey.kill();
        let t = Instant::now();
        wait_for("the outage seen", Duration::from_secs(10), || {
            status(&socket).is_some_and(|v| v["state"]["up"] == false)
        });
        let mut during = Vec::new();
        while t.elapsed() < outage {
            if let Some(v) = status(&socket) {
                during.push(v);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        valkey.restart().expect("valkey back");
        let report = run.join().unwrap().expect("scenario");
        (report, during)
    });
    let unprotected_max = during
        .iter()
        .filter_map(|v| v["state"]["unprotected_calls"].as_u64())
        .max()
        .unwrap_or(0);
    eprintln!(
        "outage: {} calls ok of {}; unprotected calls at most {unprotected_max}",
        report.ok(),
        plan.calls
    );
    assert!(tg.exited().is_none(), "no crash");
    assert_eq!(
        report.ok(),
        plan.calls,
        "no call dropped, new calls still work"
    );
    assert!(
        unprotected_max > 0,
        "the outage left calls unprotected, and said so"
    );
    wait_for("the state re-synced", Duration::from_secs(20), || {
        status(&socket).is_some_and(|v| {
            v["state"]["up"] == true
                && v["state"]["resyncs"].as_u64() >= Some(1)
                && v["state"]["unprotected_calls"] == 0
                && v["state"]["stored_calls"] == v["calls"]
        })
    });
    let log = std::fs::read_to_string(dir.0.join("tollgate.log")).unwrap_or_default();
    assert!(log.contains("call-state store unreachable"), "{log}");
    assert!(log.contains("call-state store back"), "{log}");
    assert!(tg.stop(Duration::from_secs(10)).is_some());
    let cdrs = std::fs::read_to_string(&cdr).unwrap();
    assert_eq!(cdrs.lines().count(), plan.calls, "one CDR per call");
}

/// A standby on the same host as the active node (both see the service addresses): it waits
/// while the active node holds the service lease, and takes the calls over when the active node
/// dies (`kill -9`) and its lease runs out. Fencing and takeover without keepalived; the
/// two-node lab with keepalived is `failover_lab.rs`.
#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn a_standby_waits_for_the_lease_and_takes_the_calls_over() {
    require_root("a_standby_waits_for_the_lease_and_takes_the_calls_over");
    let lab = LabSpec::unique("sb").up_guarded().expect("lab up");
    let spec = lab.spec().clone();
    let dir = Scratch::new("standby");
    let a = LabAddrs::from_lab(&spec);
    let pki = a.pki(&dir.0.join("certs")).unwrap();
    let valkey = ValkeyServer::start().expect("valkey-server or redis-server");
    let node = |name: &str| {
        let d = dir.0.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let cdr = d.join("cdr.jsonl");
        let text = a.tollgate_config(&pki, "socket", 1, &cdr, None)
            + &format!(
                "\n[state]\nbackend = \"valkey\"\nurl = \"{}\"\nnode_id = \"svc1\"\n\n[ha]\nmode = \"standby\"\nholder = \"{name}\"\nlease_ms = 600\n",
                valkey.url()
            );
        let cfg = d.join("tollgate.toml");
        std::fs::write(&cfg, text).unwrap();
        (d, cfg, cdr)
    };
    let (d1, cfg1, _) = node("n1");
    let (d2, cfg2, cdr2) = node("n2");
    let parties = Parties::start(&a.topology(&pki), Duration::from_millis(100), true).unwrap();
    let ext = SocketAddr::new(a.relay_ext, 5060);
    let mut tg1 = start_tollgate(&spec, &cfg1, &d1, ext);
    // The standby: same addresses, no lease.
    let mut tg2 = tollgate_simua::process::TollgateProcess::spawn(
        &bin(),
        &cfg2,
        &d2.join("tollgate.log"),
        &tollgate_simua::process::Launch {
            netns: Some(&spec.relay_ns),
            ..Default::default()
        },
    )
    .unwrap();
    let log2 = || std::fs::read_to_string(d2.join("tollgate.log")).unwrap_or_default();
    wait_for(
        "the standby to see the lease held",
        Duration::from_secs(10),
        || log2().contains("n1 holds the lease"),
    );
    let socket1 = d1.join("control.sock");
    let socket2 = d2.join("control.sock");
    let plan = Plan {
        direction: Direction::Inbound,
        calls: 20,
        concurrency: 20,
        talk: Duration::from_secs(8),
        ring: Duration::from_millis(100),
        media: true,
        first_index: 0,
        rate: None,
    };
    let report = std::thread::scope(|sc| {
        let run = sc.spawn(|| parties.run(&plan));
        wait_for("20 calls stored", Duration::from_secs(30), || {
            status(&socket1).is_some_and(|v| {
                v["state"]["stored_calls"] == 20 && v["state"]["unprotected_calls"] == 0
            })
        });
        assert!(status(&socket2).is_none(), "the standby serves nothing");
        std::thread::sleep(Duration::from_secs(1));
        tg1.kill();
        wait_for("the standby to take over", Duration::from_secs(10), || {
            log2().contains("calls taken over")
        });
        run.join().unwrap().expect("scenario")
    });
    let mut gaps: Vec<u64> = report
        .calls
        .iter()
        .flat_map(|c| [c.caller.max_gap_ms, c.callee.max_gap_ms])
        .collect();
    eprintln!(
        "standby takeover: media gap p50 {} ms  max {} ms",
        percentile(&mut gaps, 50.0),
        percentile(&mut gaps, 100.0)
    );
    assert_eq!(
        report.ok(),
        plan.calls,
        "every call carried on by the standby"
    );
    wait_for("calls gone", Duration::from_secs(20), || {
        status(&socket2).is_some_and(|v| v["calls"] == 0 && v["state"]["stored_calls"] == 0)
    });
    assert!(tg2.stop(Duration::from_secs(10)).is_some());
    let cdrs = std::fs::read_to_string(&cdr2).unwrap();
    assert_eq!(
        cdrs.lines().count(),
        plan.calls,
        "one CDR per call, from the standby"
    );
    drop(valkey);
}
