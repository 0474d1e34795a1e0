//! The SIP edge over real TCP, with Tollgate running in the lab's relay namespace:
//!
//! * every RFC 4475 torture message, each on its own connection from the trunk's address,
//!   gets the answer RFC 4475 §3 expects (or the stream alternative documented in
//!   `tollgate-sip/tests/torture.rs`), checked on the wire; every connection is closed and
//!   counted at the end (none left hanging);
//! * an OPTIONS to Tollgate's own address with Max-Forwards 0 gets 200;
//! * half-sent messages filling a trunk's connection slots free them at their deadline.
//!
//! Hostile streams during a call, with the RSS check, are in `sip_edge_hostile.rs` (a test
//! binary of their own, so no concurrent test moves the process's RSS).
//!
//! Deadlines are configured small (`sip.message_deadline_s = 1`) so the tests are quick; waits
//! are reads with a bound or metric polls with a deadline, never sleeps.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;
mod edge_util;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;
use edge_util::{
    as_sent_on_a_stream, closed_by, connect, options, read_until, start, torture_dir, wait_metric,
};
use tollgate_netlab::require_root;

/// Statuses that reject a request at the edge (parse or acceptance checks).
const REJECTIONS: &[u16] = &[400, 406, 413, 415, 416, 420, 483, 501, 505, 513];

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn rfc4475_over_the_wire() {
    require_root("rfc4475_over_the_wire");
    let (lab, _dir, cfg) = start("w", |_| {});
    let server = Server::start(&lab.relay_ns, cfg);
    let dir = torture_dir();
    let expected = std::fs::read_to_string(dir.join("expected.txt")).unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut connections = 0.0;
    for line in expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        let (file, want) = (f[0], f[2]);
        let raw = as_sent_on_a_stream(&std::fs::read(dir.join(file)).unwrap());
        let probe_id = format!("probe-{file}");
        let mut s = connect(&lab, None);
        connections += 1.0;
        s.write_all(&raw).unwrap();
        s.write_all(options(&probe_id, "sip:10.201.1.1:5060", 70).as_bytes())
            .unwrap();
        // The probe's 200 says every answer to the torture message has been sent (answers
        // on one connection are in order); a closed connection says it was given up.
        let got = read_until(&mut s, Duration::from_secs(10), |g| {
            g.msgs.iter().any(|m| m.call_id == probe_id)
        });
        drop(s);
        let answers: Vec<u16> = got
            .msgs
            .iter()
            .filter(|m| m.call_id != probe_id)
            .map(|m| m.status)
            .collect();
        let probed = got.msgs.len() > answers.len();
        let kind = want.split(' ').next().unwrap();
        let ok = match file {
            // Waits for the 9999 body bytes it declares (the probe is swallowed as body);
            // the message deadline closes the connection, with no answer.
            "clerr.dat" => answers.is_empty() && got.closed && !probed,
            // The trailing "noise" is a second request on a stream: both pass the edge (the
            // first answer to each Call-ID is no edge rejection; what the core says about the
            // INVITE's SDP later is the call's business).
            "dblreq.dat" => {
                let firsts: Vec<u16> = [
                    "dblreq.0ha0isndaksdj99sdfafnl3lk233412",
                    "dblreq.0ha0isnda977644900765@192.0.2.15",
                ]
                .iter()
                .filter_map(|id| got.msgs.iter().find(|m| m.call_id == *id))
                .map(|m| m.status)
                .collect();
                firsts.len() == 2 && firsts.iter().all(|c| !REJECTIONS.contains(c)) && probed
            }
            // No single Content-Length: 400, then the stream is given up.
            "ncl.dat" | "mcl01.dat" | "inv2543.dat" => answers == [400] && got.closed && !probed,
            _ => match kind {
                // A request is delivered to the core (its first answer is no rejection); a
                // response is taken without an answer.
                "accept" => {
                    let request = !raw.starts_with(b"SIP/");
                    probed
                        && if request {
                            answers.first().is_some_and(|c| !REJECTIONS.contains(c))
                        } else {
                            answers.is_empty()
                        }
                }
                "drop" => probed && answers.is_empty(),
                _ => {
                    let code: u16 = want.split(' ').nth(1).unwrap().parse().unwrap();
                    probed && answers == [code]
                }
            },
        };
        checked += 1;
        println!(
            "{} {file:<16} expected {want:<32} got {answers:?}{}",
            if ok { "ok  " } else { "FAIL" },
            if got.closed {
                " (closed by Tollgate)"
            } else {
                ""
            }
        );
        if !ok {
            failures.push(format!("{file}: expected {want}, got {answers:?} {got:?}"));
        }
    }
    println!(
        "RFC 4475 over TCP: {}/{checked} files answered as expected",
        checked - failures.len()
    );
    assert_eq!(checked, 49);
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // An OPTIONS to Tollgate itself with Max-Forwards 0 is answered, not refused 483.
    let mut s = connect(&lab, None);
    connections += 1.0;
    s.write_all(options("mf0", "sip:10.201.1.1:5060", 0).as_bytes())
        .unwrap();
    let got = read_until(&mut s, Duration::from_secs(5), |g| !g.msgs.is_empty());
    drop(s);
    assert_eq!(got.msgs.first().map(|m| m.status), Some(200));

    // No connection is left hanging: every one accepted is closed and counted.
    let accepted = server.metric_with(
        "tollgate_sip_connections_total",
        &["side=\"ext\"", "dir=\"in\""],
    );
    assert_eq!(accepted, connections);
    let closed = wait_metric(
        &server,
        "tollgate_sip_connections_closed_total",
        &["side=\"ext\""],
        accepted,
        Duration::from_secs(10),
    );
    assert_eq!(closed, accepted, "every connection closed and counted");
    assert!(closed_by(&server, "message_deadline") >= 1.0, "clerr");
    assert!(
        closed_by(&server, "unframeable") >= 3.0,
        "ncl, mcl01, inv2543"
    );
    let _ = server.drain();
}

/// Half-sent messages filling a trunk's connection slots (`sip.max_connections_per_source`)
/// lock it out only until their message deadline: then the slots are free again.
#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn slowloris_cannot_lock_a_trunk_out() {
    require_root("slowloris_cannot_lock_a_trunk_out");
    let (lab, _dir, cfg) = start("l", |c| c.sip.max_connections_per_source = 8);
    let server = Server::start(&lab.relay_ns, cfg);
    let half = options("slow", "sip:10.201.1.1:5060", 70);
    let half = &half.as_bytes()[..half.len() / 2];
    let mut slow: Vec<TcpStream> = (0..8).map(|_| connect(&lab, None)).collect();
    for s in &mut slow {
        s.write_all(half).unwrap();
    }
    let accepted = wait_metric(
        &server,
        "tollgate_sip_connections_total",
        &["side=\"ext\""],
        8.0,
        Duration::from_secs(5),
    );
    assert_eq!(accepted, 8.0);
    // The trunk is at its limit: a ninth connection is refused.
    let mut s = connect(&lab, None);
    let _ = s.write_all(options("locked", "sip:10.201.1.1:5060", 70).as_bytes());
    let got = read_until(&mut s, Duration::from_secs(5), |_| false);
    assert!(got.closed && got.msgs.is_empty(), "refused: {got:?}");
    assert_eq!(
        server.metric_with(
            "tollgate_connections_refused_total",
            &["reason=\"per_source_limit\""]
        ),
        1.0
    );
    // Each half-sent message hits its deadline; the trunk gets in again.
    for s in &mut slow {
        let got = read_until(s, Duration::from_secs(10), |_| false);
        assert!(got.closed && got.msgs.is_empty(), "slowloris: {got:?}");
    }
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let mut s = connect(&lab, None);
        let _ = s.write_all(options("free", "sip:10.201.1.1:5060", 70).as_bytes());
        let got = read_until(&mut s, Duration::from_secs(5), |g| !g.msgs.is_empty());
        // A slot is released just after its close is counted: poll with a deadline.
        if let Some(m) = got.msgs.first() {
            break Some(m.status);
        }
        if Instant::now() >= end {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status, Some(200), "the trunk is served again");
    assert_eq!(closed_by(&server, "message_deadline"), 8.0);
    let _ = server.drain();
}
