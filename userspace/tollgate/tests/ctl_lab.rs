//! `tollgate ctl` against a live daemon in the namespace lab, with real calls: list the calls
//! with their media counters, inspect one (both legs, SDP without keys), end it by hand (the
//! CDR says so), take the trunk out of service and back, reload, status, and drain.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{Scratch, bin, start_tollgate};
use serde_json::Value;
use tollgate_netlab::{LabSpec, require_root};
use tollgate_simua::hostile;
use tollgate_simua::labconf::LabAddrs;
use tollgate_simua::scenario::{Direction, Parties, Plan};

/// `tollgate ctl --socket S [--json] ARGS`: (exit success, stdout).
fn ctl(socket: &Path, json: bool, args: &[&str]) -> (bool, String) {
    let mut c = Command::new(bin());
    c.arg("ctl").arg("--socket").arg(socket);
    if json {
        c.arg("--json");
    }
    let out = c.args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn ctl_json(socket: &Path, args: &[&str]) -> Value {
    let (ok, out) = ctl(socket, true, args);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"));
    assert!(ok && v["ok"] == true, "{args:?}: {v}");
    v
}

/// One INVITE from the gateway's address; the final status it got.
fn one_invite(ns: &str, from: IpAddr, to: SocketAddr, i: usize) -> hostile::FloodReport {
    tollgate_netlab::in_netns(ns, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(hostile::flood(
                from,
                to,
                i,
                1,
                Duration::ZERO,
                Duration::from_secs(5),
            ))
            .unwrap()
    })
    .unwrap()
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn ctl_against_a_live_daemon() {
    require_root("ctl_against_a_live_daemon");
    let lab = LabSpec::unique("ctl").up_guarded().expect("lab up");
    let spec = lab.spec().clone();
    let dir = Scratch::new("ctl-lab");
    let a = LabAddrs::from_lab(&spec);
    let pki = a.pki(&dir.0.join("certs")).unwrap();
    let cdr = dir.0.join("cdr.jsonl");
    let socket = dir.0.join("control.sock");
    let cfg_path = dir.0.join("tollgate.toml");
    std::fs::write(&cfg_path, a.tollgate_config(&pki, "socket", 1, &cdr, None)).unwrap();
    let parties = Parties::start(&a.topology(&pki), Duration::from_millis(100), true).unwrap();
    let ext = SocketAddr::new(a.relay_ext, 5060);
    let mut tg = start_tollgate(&spec, &cfg_path, &dir.0, ext);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o660, "owner and group only");

    std::thread::scope(|s| {
        let calls = s.spawn(|| {
            parties.run(&Plan {
                direction: Direction::Inbound,
                calls: 2,
                concurrency: 2,
                talk: Duration::from_secs(8),
                ring: Duration::from_millis(100),
                media: true,
                first_index: 0,
                rate: None,
            })
        });
        // Both calls up, with media counted.
        let t = Instant::now();
        let listed = loop {
            let v = ctl_json(&socket, &["calls"]);
            let list = v["calls"].as_array().cloned().unwrap_or_default();
            let up = list.iter().filter(|c| c["phase"] == "confirmed").count();
            let flowing = list
                .iter()
                .all(|c| c["media"]["ext_to_int"]["packets"].as_u64().unwrap_or(0) > 20);
            if up == 2 && flowing {
                break list;
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "calls never came up: {v}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        for c in &listed {
            assert_eq!(c["direction"], "inbound");
            assert_eq!(c["trunk"], "gw1");
            assert_eq!(c["datapath"], "socket");
            assert!(
                c["media"]["int_to_ext"]["packets"].as_u64().unwrap() > 0,
                "{c}"
            );
        }
        let (ok, table) = ctl(&socket, false, &["calls"]);
        assert!(ok && table.contains("2 call(s)"), "{table}");

        let id = listed[0]["id"].as_u64().unwrap();
        let d = ctl_json(&socket, &["call", &id.to_string()]);
        let c = &d["call"];
        assert_eq!(c["legs"][0]["side"], "ext");
        assert_eq!(c["legs"][1]["side"], "int");
        assert!(c["legs"][1]["remote_tag"].is_string());
        assert!(c["called_sent"].as_str().unwrap().starts_with("+44"));
        let sdp = c["legs"][1]["sdp_sent"].as_str().unwrap();
        assert!(
            sdp.contains("RTP/SAVP") && sdp.contains("inline:<redacted>"),
            "{sdp}"
        );
        assert_eq!(
            c["media_flows"][0]["ext_to_int"],
            "protect AES_CM_128_HMAC_SHA1_80"
        );
        let text = d.to_string();
        assert_eq!(
            text.matches("inline:").count(),
            text.matches("inline:<redacted>").count(),
            "no key leaves the daemon: {text}"
        );
        let (ok, human) = ctl(&socket, false, &["call", &id.to_string()]);
        assert!(ok && human.contains("leg int:"), "{human}");

        let tr = ctl_json(&socket, &["trunks"]);
        assert_eq!(tr["trunks"][0]["name"], "gw1");
        assert_eq!(tr["trunks"][0]["state"], "up");
        assert_eq!(tr["trunks"][0]["calls"], 2);

        ctl_json(
            &socket,
            &["hangup", &id.to_string(), "--reason", "lab test"],
        );
        let left = ctl_json(&socket, &["calls"]);
        assert_eq!(left["calls"].as_array().unwrap().len(), 1);
        let (ok, _) = ctl(&socket, true, &["hangup", "999999"]);
        assert!(!ok, "no such call is an error");

        // Out of service: a new call from the trunk gets 503; back in service: it is taken.
        ctl_json(&socket, &["trunk", "gw1", "disable"]);
        let tr = ctl_json(&socket, &["trunks"]);
        assert_eq!(tr["trunks"][0]["state"], "disabled");
        let r = one_invite(&spec.gw_ns, a.gw, ext, 500);
        assert_eq!((r.finals, r.s503), (1, 1), "{r:?}");
        ctl_json(&socket, &["trunk", "gw1", "enable"]);
        let (ok, _) = ctl(&socket, true, &["trunk", "nope", "disable"]);
        assert!(!ok, "unknown trunk is an error");

        let report = calls.join().unwrap().unwrap();
        let untouched = report.calls.iter().filter(|o| o.ok()).count();
        assert!(
            untouched >= 1,
            "the call not hung up kept its audio: {report:?}"
        );
    });
    // The trunk takes calls again.
    let again = parties
        .run(&Plan {
            direction: Direction::Inbound,
            calls: 1,
            concurrency: 1,
            talk: Duration::from_millis(500),
            ring: Duration::from_millis(100),
            media: true,
            first_index: 10,
            rate: None,
        })
        .unwrap();
    assert_eq!(again.ok(), 1, "{again:?}");

    let st = ctl_json(&socket, &["status"]);
    assert_eq!(st["datapath"], "socket");
    assert_eq!(st["draining"], false);
    assert!(ctl_json(&socket, &["reload"])["reloaded"].is_string());
    ctl_json(&socket, &["drain"]);
    let t = Instant::now();
    while tg.exited().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "drained daemon exits"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let cdrs: Vec<Value> = std::fs::read_to_string(&cdr)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let op: Vec<&Value> = cdrs.iter().filter(|c| c["cause"] == "operator").collect();
    assert_eq!(op.len(), 1, "{cdrs:?}");
    assert_eq!(op[0]["note"], "lab test");
    drop(parties);
}
