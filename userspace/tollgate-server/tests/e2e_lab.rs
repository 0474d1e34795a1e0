//! End to end in the lab: calls from the simulated gateway (SIP/TCP, RTP) through Tollgate to
//! the simulated internal endpoint (SIP/mTLS, SRTP) and back the other way, on both data paths,
//! with audio verified in both directions, hang-ups from alternating sides, number
//! normalisation, CDRs, and nothing left over afterwards. A TLS trunk runs the same calls with
//! the gateway on SIP over mutual TLS (its own listener on the gateway NIC, certificates
//! verified both ways by IP address).
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::time::Duration;

use common::{Scratch, Server, addrs};
use tollgate_netlab::{LabSpec, require_root};
use tollgate_server::config::Config;
use tollgate_simua::scenario::{Direction, Parties, Plan};

fn both_directions(datapath: &str, gateway_tls: bool) {
    let lab = LabSpec::unique(if gateway_tls { "t" } else { &datapath[..1] })
        .up_guarded()
        .expect("lab up");
    let dir = Scratch::new(datapath);
    let mut a = addrs(lab.spec());
    if gateway_tls {
        a = a.with_gateway_tls();
    }
    let pki = a.pki(&dir.0.join("certs")).expect("certificates");
    let text = a.tollgate_config(&pki, datapath, 1, &dir.0.join("cdr.jsonl"), None);
    let cfg = Config::parse(&text, &dir.0).expect("config");
    assert_eq!(cfg.ext.tls_listen.is_some(), gateway_tls);
    let topo = a.topology(&pki);
    let parties = Parties::start(&topo, Duration::from_millis(100), true).expect("endpoints");
    let server = Server::start(&lab.relay_ns, cfg);
    let plan = |direction, first_index| Plan {
        direction,
        calls: 4,
        concurrency: 4,
        talk: Duration::from_millis(1500),
        ring: Duration::from_millis(100),
        media: true,
        first_index,
        rate: None,
    };
    let inbound = parties
        .run(&plan(Direction::Inbound, 0))
        .expect("inbound scenario");
    let outbound = parties
        .run(&plan(Direction::Outbound, 100))
        .expect("outbound scenario");
    for c in inbound.calls.iter().chain(outbound.calls.iter()) {
        eprintln!(
            "call {}: setup {:?} caller {:?} callee {:?} seen {} err {:?}",
            c.index, c.setup, c.caller, c.callee, c.called_seen, c.error
        );
    }
    assert_eq!(
        inbound.ok(),
        4,
        "every inbound call set up with intact audio both ways"
    );
    assert_eq!(
        outbound.ok(),
        4,
        "every outbound call set up with intact audio both ways"
    );
    for c in &inbound.calls {
        assert_eq!(
            c.called_seen,
            tollgate_simua::scenario::e164(c.index),
            "inbound number normalised to E.164"
        );
        assert!(
            c.caller.received >= 50 && c.callee.received >= 50,
            "about 1.5 s of audio each way"
        );
    }
    for c in &outbound.calls {
        assert_eq!(
            c.called_seen,
            tollgate_simua::scenario::national(c.index),
            "outbound number in national format"
        );
    }
    assert_eq!(server.metric("tollgate_calls_active"), 0.0);
    if gateway_tls {
        // Both directions ran over TLS connections on the gateway side: the gateway's own
        // (inbound) and Tollgate's to the gateway (outbound).
        assert!(
            server.metric_with(
                "tollgate_sip_connections_total",
                &["side=\"ext\"", "transport=\"tls\""]
            ) >= 2.0,
            "gateway-side TLS connections"
        );
        assert_eq!(
            server.metric_with(
                "tollgate_sip_connections_total",
                &["side=\"ext\"", "transport=\"tcp\""]
            ),
            0.0,
            "no plain TCP on a TLS trunk"
        );
    }
    let summary = server.drain();
    assert_eq!(summary.calls_left, 0);
    assert_eq!(summary.ports_left, (0, 0), "every relay port released");
    let cdrs = std::fs::read_to_string(dir.0.join("cdr.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = cdrs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8, "one CDR per call");
    for l in &lines {
        assert!(
            l["media"]["ext_to_int"]["packets"].as_u64().unwrap() > 40,
            "{l}"
        );
        assert!(
            l["media"]["int_to_ext"]["packets"].as_u64().unwrap() > 40,
            "{l}"
        );
        assert_eq!(l["media"]["srtp_auth_failures"].as_u64(), Some(0));
    }
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn calls_both_directions_socket_path() {
    require_root("calls_both_directions_socket_path");
    both_directions("socket", false);
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn calls_both_directions_xdp_path() {
    require_root("calls_both_directions_xdp_path");
    both_directions("xdp", false);
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn calls_both_directions_gateway_tls_trunk() {
    require_root("calls_both_directions_gateway_tls_trunk");
    both_directions("socket", true);
}
