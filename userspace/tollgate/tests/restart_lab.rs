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

use common::{Scratch, bin, start_tollgate};
use serde_json::Value;
use tollgate_netlab::{LabSpec, skip_unless_root};
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
    /// SIGUSR2: a handover for an upgrade.
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
                tg.signal(libc::SIGUSR2);
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
    assert_eq!(
        report.ok(),
        CALLS,
        "every call carried on with intact, authenticated audio both ways"
    );
    for c in &report.calls {
        for (who, m) in [("caller", &c.caller), ("callee", &c.callee)] {
            assert_eq!(m.auth_failures, 0, "call {} {who}: SRTP rejects", c.index);
            // Audio flowed until the end of the call: resumed after the restart.
            let last = m.last_packet_ms.unwrap_or(0);
            assert!(
                last + 1500 >= plan.talk.as_millis() as u64,
                "call {} {who}: audio stopped at {last} ms",
                c.index
            );
        }
    }
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
    assert_eq!(cdrs.len(), CALLS, "one CDR per call, none lost");
    let mut by_side = [0, 0];
    for l in &cdrs {
        assert_eq!(
            l["restarts"], 1,
            "the CDR says the call crossed a restart: {l}"
        );
        assert!(l["answer"].as_f64().is_some(), "{l}");
        assert!(
            l["duration_s"].as_f64().unwrap() >= 10.0,
            "the duration counts from the original answer: {l}"
        );
        assert_eq!(l["media"]["srtp_auth_failures"].as_u64(), Some(0), "{l}");
        for d in ["ext_to_int", "int_to_ext"] {
            assert!(l["media"][d]["packets"].as_u64().unwrap() > 100, "{d}: {l}");
        }
        match l["cause"].as_str() {
            Some("bye_ext") => by_side[0] += 1,
            Some("bye_int") => by_side[1] += 1,
            other => panic!("cause {other:?}: {l}"),
        }
    }
    assert_eq!(
        by_side,
        [CALLS / 2, CALLS / 2],
        "BYEs from alternating sides"
    );
    drop(valkey);
}

#[test]
fn calls_survive_kill9_socket_path_file_store() {
    if skip_unless_root("calls_survive_kill9_socket_path_file_store") {
        return;
    }
    calls_survive("socket", Store::File, Stop::Kill, Direction::Inbound);
}

#[test]
fn calls_survive_kill9_xdp_path_valkey_store() {
    if skip_unless_root("calls_survive_kill9_xdp_path_valkey_store") {
        return;
    }
    calls_survive("xdp", Store::Valkey, Stop::Kill, Direction::Outbound);
}

#[test]
fn calls_survive_a_handover_socket_path_valkey_store() {
    if skip_unless_root("calls_survive_a_handover_socket_path_valkey_store") {
        return;
    }
    calls_survive("socket", Store::Valkey, Stop::Handover, Direction::Inbound);
}
