//! SIP capture against a live daemon in the namespace lab, with real calls (issue 17, SIP
//! capture):
//!
//! * HEP v3 export: a collector in the internal namespace (on the internal endpoint's address)
//!   receives and decodes a HEP packet for every SIP message of both sides, the internal
//!   side's INVITE/200/ACK/BYE in clear text, with the right addresses, agent id, password and
//!   Call-ID as correlation id, sent from Tollgate's internal address.
//! * `tollgate ctl capture --pcap F --seconds N` while calls run: `tshark` (SIP on 5061 decoded
//!   with `-d tcp.port==5061,sip`) shows the INVITEs, 200s, ACKs and BYEs of both legs of every
//!   call; `--call ID` keeps exactly that call's two Call-IDs; sngrep reads the file
//!   (`-I F -N -O out`) and finds the dialogs.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{Scratch, bin, start_tollgate};
use serde_json::Value;
use tollgate_capture::hep;
use tollgate_netlab::{LabSpec, require_root};
use tollgate_simua::labconf::LabAddrs;
use tollgate_simua::process::{Launch, TollgateProcess, metric, scrape};
use tollgate_simua::scenario::{Direction, Parties, Plan};

/// One decoded HEP packet, owned.
#[derive(Debug, Clone)]
struct Got {
    from: SocketAddr,
    src: SocketAddr,
    dst: SocketAddr,
    agent: u32,
    key: Option<Vec<u8>>,
    corr: String,
    sip: String,
}

/// `tshark -r F -d tcp.port==5061,sip -Y sip`: (method or status, Call-ID, src, dst) per SIP
/// message.
fn tshark(pcap: &Path) -> Vec<(String, String, String, String)> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-d", "tcp.port==5061,sip", "-Y", "sip", "-T", "fields"])
        .args([
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
            "-e",
            "sip.Call-ID",
        ])
        .args(["-e", "ip.src", "-e", "ip.dst"])
        .output()
        .expect("tshark runs (cargo xtask setup installs it)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let what = if f[0].is_empty() { f[1] } else { f[0] };
            (
                what.to_owned(),
                f[2].to_owned(),
                f[3].to_owned(),
                f[4].to_owned(),
            )
        })
        .collect()
}

fn capture(socket: &Path, pcap: &Path, seconds: u64, call: Option<u64>) -> std::process::Child {
    let mut c = Command::new(bin());
    c.arg("ctl")
        .arg("--socket")
        .arg(socket)
        .arg("--json")
        .arg("capture")
        .arg("--pcap")
        .arg(pcap)
        .arg("--seconds")
        .arg(seconds.to_string());
    if let Some(id) = call {
        c.arg("--call").arg(id.to_string());
    }
    c.stdout(std::process::Stdio::piped()).spawn().unwrap()
}

fn finish(child: std::process::Child) -> Value {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn plan(calls: usize, talk_ms: u64, first_index: usize) -> Plan {
    Plan {
        direction: Direction::Inbound,
        calls,
        concurrency: calls,
        talk: Duration::from_millis(talk_ms),
        ring: Duration::from_millis(100),
        media: true,
        first_index,
        rate: None,
    }
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn hep_export_and_pcap_capture_with_real_calls() {
    require_root("hep_export_and_pcap_capture_with_real_calls");
    let lab = LabSpec::unique("cap").up_guarded().expect("lab up");
    let spec = lab.spec().clone();
    let dir = Scratch::new("cap-lab");
    let a = LabAddrs::from_lab(&spec);
    let pki = a.pki(&dir.0.join("certs")).unwrap();
    let cdr = dir.0.join("cdr.jsonl");
    let socket = dir.0.join("control.sock");
    let cfg_path = dir.0.join("tollgate.toml");
    let collector_addr = SocketAddr::new(a.int, 9060);
    let metrics_addr = SocketAddr::new(a.relay_int, 9100);
    let mut cfg = a.tollgate_config(&pki, "socket", 1, &cdr, Some(metrics_addr));
    cfg.push_str(&format!(
        "hep_collector = \"{collector_addr}\"\nhep_agent_id = 2001\nhep_password = \"lab-secret\"\n"
    ));
    std::fs::write(&cfg_path, cfg).unwrap();

    // Refused at start: HEP sent from an address that lives on the gateway NIC (clear-text
    // internal SIP would leave through it).
    let IpAddr::V4(e) = a.relay_ext else {
        panic!("the lab is IPv4")
    };
    let odd = IpAddr::from([e.octets()[0], e.octets()[1], e.octets()[2], 9]);
    let st = Command::new("ip")
        .args([
            "-n",
            &spec.relay_ns,
            "addr",
            "add",
            &format!("{odd}/32"),
            "dev",
        ])
        .arg(&spec.ext_if)
        .status()
        .unwrap();
    assert!(st.success());
    let bad_path = dir.0.join("bad.toml");
    let mut bad = a.tollgate_config(&pki, "socket", 1, &cdr, None).replace(
        &format!("sip_listen = \"{}:5061\"", a.relay_int),
        &format!("sip_listen = \"{odd}:5061\""),
    );
    bad.push_str(&format!("hep_collector = \"{collector_addr}\"\n"));
    std::fs::write(&bad_path, bad).unwrap();
    let bad_log = dir.0.join("bad.log");
    let mut refused = TollgateProcess::spawn(
        &bin(),
        &bad_path,
        &bad_log,
        &Launch {
            netns: Some(&spec.relay_ns),
            ..Launch::default()
        },
    )
    .unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = refused.exited() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "HEP over the gateway NIC was not refused"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(&bad_log).unwrap();
    println!("refused: {}", log.trim());
    assert!(!status.success());
    assert!(
        log.contains("ops.hep_collector") && log.contains("a gateway-side interface"),
        "{log}"
    );

    // The collector: a UDP socket in the internal namespace.
    let collector = tollgate_netlab::in_netns(&spec.int_ns, move || {
        UdpSocket::bind(collector_addr).unwrap()
    })
    .unwrap();
    collector
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut bad = Vec::new();
        let mut buf = vec![0u8; 70_000];
        while !stop2.load(Ordering::Relaxed) {
            let Ok((n, from)) = collector.recv_from(&mut buf) else {
                continue;
            };
            match hep::decode(&buf[..n]) {
                Ok(h) => got.push(Got {
                    from,
                    src: h.src,
                    dst: h.dst,
                    agent: h.agent_id,
                    key: h.auth_key.map(<[u8]>::to_vec),
                    corr: String::from_utf8_lossy(h.correlation_id.unwrap_or_default())
                        .into_owned(),
                    sip: String::from_utf8_lossy(h.payload).into_owned(),
                }),
                Err(e) => bad.push(e),
            }
        }
        (got, bad)
    });

    let parties = Parties::start(&a.topology(&pki), Duration::from_millis(100), true).unwrap();
    let ext = SocketAddr::new(a.relay_ext, 5060);
    let mut tg = start_tollgate(&spec, &cfg_path, &dir.0, ext);

    // (b) a capture of everything while two calls run from start to end.
    let all = dir.0.join("all.pcap");
    let cap = capture(&socket, &all, 6, None);
    std::thread::sleep(Duration::from_millis(700));
    let report = parties.run(&plan(2, 1500, 0)).unwrap();
    assert_eq!(report.ok(), 2, "{report:?}");
    let summary = finish(cap);
    println!("capture summary: {summary}");
    assert_eq!(summary["done"], true);
    assert_eq!(summary["dropped"], 0);
    let rows = tshark(&all);
    for r in &rows {
        println!("tshark: {}\t{}\t{} -> {}", r.0, r.1, r.2, r.3);
    }
    let (gw, rext, rint, int) = (
        a.gw.to_string(),
        a.relay_ext.to_string(),
        a.relay_int.to_string(),
        a.int.to_string(),
    );
    let count = |what: &str, src: &str, dst: &str| {
        rows.iter()
            .filter(|r| r.0 == what && r.2 == src && r.3 == dst)
            .count()
    };
    // Both legs of both calls: gateway -> Tollgate -> internal endpoint and back.
    assert_eq!(count("INVITE", &gw, &rext), 2, "{rows:?}");
    assert_eq!(count("INVITE", &rint, &int), 2, "{rows:?}");
    assert!(count("200", &int, &rint) >= 2, "{rows:?}");
    assert!(count("200", &rext, &gw) >= 2, "{rows:?}");
    assert_eq!(count("ACK", &rint, &int), 2, "{rows:?}");
    let byes = count("BYE", &gw, &rext) + count("BYE", &int, &rint);
    let byes_out = count("BYE", &rext, &gw) + count("BYE", &rint, &int);
    assert_eq!(
        (byes, byes_out),
        (2, 2),
        "each call's BYE on both legs: {rows:?}"
    );
    let call_ids: BTreeSet<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert!(call_ids.len() >= 4, "two legs per call: {call_ids:?}");

    // sngrep reads the file without its interface and finds the dialogs.
    let out_pcap = dir.0.join("sngrep.pcap");
    let sn = Command::new("sngrep")
        .arg("-N")
        .arg("-I")
        .arg(&all)
        .arg("-O")
        .arg(&out_pcap)
        .env("TERM", "dumb")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("sngrep runs (cargo xtask setup installs it)");
    let sn_text = String::from_utf8_lossy(&sn.stdout);
    println!(
        "sngrep: {} {}",
        sn_text.trim(),
        String::from_utf8_lossy(&sn.stderr).trim()
    );
    assert!(sn.status.success(), "{sn:?}");
    let dialogs: usize = sn_text
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .next_back()
        .unwrap_or(0);
    assert!(
        dialogs >= 4,
        "sngrep sees both legs of both calls: {sn_text}"
    );
    let resaved = tshark(&out_pcap);
    assert!(
        resaved.iter().filter(|r| r.0 == "INVITE").count() >= 4,
        "sngrep's own pcap holds the INVITEs: {resaved:?}"
    );

    // --call ID: only that call's two Call-IDs, though another call runs meanwhile.
    let one = dir.0.join("one.pcap");
    std::thread::scope(|s| {
        let calls = s.spawn(|| parties.run(&plan(2, 2500, 10)));
        let t = Instant::now();
        let id = loop {
            let out = Command::new(bin())
                .arg("ctl")
                .arg("--socket")
                .arg(&socket)
                .args(["--json", "calls"])
                .output()
                .unwrap();
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            let list = v["calls"].as_array().cloned().unwrap_or_default();
            if list.len() == 2 && list.iter().all(|c| c["phase"] == "confirmed") {
                break list[0]["id"].as_u64().unwrap();
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "calls never came up: {v}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let cap = capture(&socket, &one, 5, Some(id));
        let summary = finish(cap);
        println!("capture --call {id}: {summary}");
        let want: BTreeSet<String> = summary["call_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(want.len(), 2, "{summary}");
        let rows = tshark(&one);
        for r in &rows {
            println!("tshark --call: {}\t{}\t{} -> {}", r.0, r.1, r.2, r.3);
        }
        let seen: BTreeSet<String> = rows.iter().map(|r| r.1.clone()).collect();
        assert_eq!(seen, want, "only the call's two legs");
        assert_eq!(
            rows.iter().filter(|r| r.0 == "BYE").count(),
            2,
            "its BYE on both legs: {rows:?}"
        );
        assert_eq!(calls.join().unwrap().unwrap().ok(), 2);
    });
    // An unknown call is refused.
    let out = Command::new(bin())
        .arg("ctl")
        .arg("--socket")
        .arg(&socket)
        .args(["capture", "--pcap"])
        .arg(dir.0.join("none.pcap"))
        .args(["--call", "999999", "--seconds", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no call 999999"));

    // (a) the HEP collector's view.
    std::thread::sleep(Duration::from_millis(500));
    let text = scrape(Some(&spec.int_ns), metrics_addr);
    stop.store(true, Ordering::Relaxed);
    let (got, bad) = reader.join().unwrap();
    assert!(bad.is_empty(), "every HEP packet decodes: {bad:?}");
    println!("HEP: {} packets decoded", got.len());
    let sent = metric(&text, "tollgate_hep_sent_total", &[]);
    let dropped = metric(&text, "tollgate_hep_dropped_total", &[]);
    println!("tollgate_hep_sent_total {sent}, tollgate_hep_dropped_total {dropped}");
    assert_eq!(dropped, 0.0);
    assert!(sent >= got.len() as f64 && !got.is_empty());
    let relay_int: IpAddr = a.relay_int;
    for g in &got {
        assert_eq!(g.from.ip(), relay_int, "sent from the internal address");
        assert_eq!(g.agent, 2001);
        assert_eq!(g.key.as_deref(), Some(&b"lab-secret"[..]));
        let cid = g
            .sip
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID: "))
            .unwrap_or_default();
        assert_eq!(g.corr, cid.trim(), "correlation id is the Call-ID");
    }
    let int_sip = SocketAddr::new(a.relay_int, 5061);
    let ext_sip = SocketAddr::new(a.relay_ext, 5060);
    let hep_count = |start: &str, src_ip: IpAddr, dst_ip: IpAddr| {
        got.iter()
            .filter(|g| g.sip.starts_with(start) && g.src.ip() == src_ip && g.dst.ip() == dst_ip)
            .count()
    };
    // Four calls ran: clear-text internal INVITE/200/ACK/BYE, and the gateway side's.
    assert_eq!(hep_count("INVITE ", a.relay_int, a.int), 4);
    assert!(hep_count("SIP/2.0 200", a.int, a.relay_int) >= 4);
    assert_eq!(hep_count("ACK ", a.relay_int, a.int), 4);
    assert_eq!(
        hep_count("BYE ", a.relay_int, a.int) + hep_count("BYE ", a.int, a.relay_int),
        4
    );
    assert_eq!(hep_count("INVITE ", a.gw, a.relay_ext), 4);
    assert!(hep_count("SIP/2.0 200", a.relay_ext, a.gw) >= 4);
    let inv = got
        .iter()
        .find(|g| g.sip.starts_with("INVITE ") && g.src.ip() == a.relay_int)
        .unwrap();
    assert_eq!((inv.src, inv.dst), (int_sip, SocketAddr::new(a.int, 5061)));
    assert!(
        inv.sip.contains("RTP/SAVP"),
        "the internal SDP in clear text"
    );
    let inv = got
        .iter()
        .find(|g| g.sip.starts_with("INVITE ") && g.src.ip() == a.gw)
        .unwrap();
    assert_eq!(inv.dst, ext_sip);

    tg.stop(Duration::from_secs(5));
    drop(parties);
}
