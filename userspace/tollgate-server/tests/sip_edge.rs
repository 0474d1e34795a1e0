//! The SIP edge over real TCP, with Tollgate running in the lab's relay namespace:
//!
//! * every RFC 4475 torture message, each on its own connection from the trunk's address,
//!   gets the answer RFC 4475 §3 expects (or the stream alternative documented in
//!   `tollgate-sip/tests/torture.rs`), checked on the wire; every connection is closed and
//!   counted at the end (none left hanging);
//! * an OPTIONS to Tollgate's own address with Max-Forwards 0 gets 200;
//! * hostile streams while a call is up: half-sent messages (slowloris), garbage, an oversize
//!   message, and a peer that never reads its answers are each closed and counted by reason;
//!   the process's RSS stays flat and the call keeps its audio.
//!
//! Deadlines are configured small (`sip.message_deadline_s = 1`) so the tests are quick; waits
//! are reads with a bound or metric polls with a deadline, never sleeps.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Scratch, Server, addrs};
use tollgate_netlab::{LabGuard, LabSpec, in_netns, skip_unless_root};
use tollgate_server::config::Config;
use tollgate_simua::scenario::{Direction, Parties, Plan};

const TOLLGATE_EXT: &str = "10.201.1.1:5060";

fn torture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tollgate-sip/tests/torture/rfc4475")
}

/// A lab and Tollgate in it, with edge limits small enough for quick tests.
fn start(tag: &str, edit: impl FnOnce(&mut Config)) -> (LabGuard, Scratch, Config) {
    let lab = LabSpec::unique(tag).up_guarded().expect("lab up");
    let dir = Scratch::new(tag);
    let a = addrs(lab.spec());
    let pki = a.pki(&dir.0.join("certs")).unwrap();
    let mut cfg = Config::parse(
        &a.tollgate_config(&pki, "socket", 1, &dir.0.join("cdr.jsonl"), None),
        &dir.0,
    )
    .unwrap();
    cfg.sip.message_deadline_s = 1;
    edit(&mut cfg);
    (lab, dir, cfg)
}

/// A TCP connection from the gateway namespace (the trunk's address) to Tollgate's gateway
/// side; `rcvbuf` shrinks the receive buffer before connecting (a peer that reads nothing
/// then holds little in the kernel).
fn connect(lab: &LabGuard, rcvbuf: Option<i32>) -> TcpStream {
    in_netns(&lab.gw_ns, move || -> std::io::Result<TcpStream> {
        let to: SocketAddr = TOLLGATE_EXT.parse().unwrap();
        // SAFETY: socket/setsockopt/connect on a fresh fd owned by the returned TcpStream.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let s = TcpStream::from_raw_fd(fd);
            if let Some(n) = rcvbuf {
                let rc = libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    (&n as *const i32).cast(),
                    4,
                );
                if rc != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            let SocketAddr::V4(v4) = to else {
                unreachable!("IPv4 lab")
            };
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            if libc::connect(fd, (&sin as *const libc::sockaddr_in).cast(), 16) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(s)
        }
    })
    .unwrap()
    .unwrap()
}

/// One response as the wire carries it. Parsed leniently on purpose: a 400 copies the
/// request's malformed headers verbatim (RFC 3261 §8.2.6.2), so a strict parser would refuse it.
#[derive(Debug)]
struct Resp {
    status: u16,
    reason: String,
    call_id: String,
}

/// What came back on a connection.
#[derive(Debug, Default)]
struct Got {
    msgs: Vec<Resp>,
    /// The server closed the connection (EOF or reset).
    closed: bool,
}

/// Splits complete responses off the front of `buf`.
fn take_responses(buf: &mut Vec<u8>, out: &mut Vec<Resp>) {
    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let first = lines.next().unwrap_or("");
        let mut cl = 0usize;
        let mut call_id = String::new();
        for l in lines {
            if let Some((n, v)) = l.split_once(':') {
                let n = n.trim();
                if n.eq_ignore_ascii_case("content-length") || n == "l" {
                    cl = v.trim().parse().unwrap_or(0);
                } else if n.eq_ignore_ascii_case("call-id") || n == "i" {
                    v.trim().clone_into(&mut call_id);
                }
            }
        }
        if buf.len() < end + 4 + cl {
            return;
        }
        let mut parts = first.splitn(3, ' ');
        let _version = parts.next();
        let status = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        let reason = parts.next().unwrap_or("").to_owned();
        out.push(Resp {
            status,
            reason,
            call_id,
        });
        buf.drain(..end + 4 + cl);
    }
}

/// Reads responses until `done` says enough, the server closes, or `limit` passes.
fn read_until(s: &mut TcpStream, limit: Duration, done: impl Fn(&Got) -> bool) -> Got {
    let end = Instant::now() + limit;
    let mut got = Got::default();
    let mut pending = Vec::new();
    let mut buf = [0u8; 16384];
    while !done(&got) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => got.closed = true,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                take_responses(&mut pending, &mut got.msgs);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(_) => got.closed = true,
        }
        if got.closed {
            break;
        }
    }
    got
}

fn options(call_id: &str, ruri: &str, max_forwards: u32) -> String {
    format!(
        "OPTIONS {ruri} SIP/2.0\r\nVia: SIP/2.0/TCP 10.201.1.2:5060;branch=z9hG4bK-{call_id}\r\nMax-Forwards: {max_forwards}\r\nFrom: <sip:gw@10.201.1.2>;tag=p\r\nTo: <{ruri}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The bytes a sender puts on a stream for a torture message (baddn.dat lacks the blank line
/// its datagram's end provided; see the table in `tollgate-sip/tests/torture.rs`).
fn as_sent_on_a_stream(raw: &[u8]) -> Vec<u8> {
    let mut out = raw.to_vec();
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Polls a metric (sum over series with `labels`) until it reaches `want`, or `limit` passes.
fn wait_metric(server: &Server, name: &str, labels: &[&str], want: f64, limit: Duration) -> f64 {
    let end = Instant::now() + limit;
    loop {
        let v = server.metric_with(name, labels);
        if v >= want || Instant::now() >= end {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn closed_by(server: &Server, reason: &str) -> f64 {
    server.metric_with(
        "tollgate_sip_connections_closed_total",
        &["side=\"ext\"", &format!("reason=\"{reason}\"")],
    )
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Statuses that reject a request at the edge (parse or acceptance checks).
const REJECTIONS: &[u16] = &[400, 406, 413, 415, 416, 420, 483, 501, 505, 513];

#[test]
fn rfc4475_over_the_wire() {
    if skip_unless_root("rfc4475_over_the_wire") {
        return;
    }
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

#[test]
fn hostile_streams_are_closed_and_counted() {
    if skip_unless_root("hostile_streams_are_closed_and_counted") {
        return;
    }
    let (lab, dir, cfg) = start("x", |c| {
        c.sip.max_message_bytes = 8192;
        c.sip.write_queue_bytes = 16384;
        c.sip.max_stream_faults = 4;
    });
    let a = addrs(lab.spec());
    let pki = a.pki(&dir.0.join("certs")).unwrap();
    let parties = Arc::new(Parties::start(&a.topology(&pki), Duration::ZERO, true).unwrap());
    let server = Server::start(&lab.relay_ns, cfg);

    // A call that must survive everything below.
    let p2 = Arc::clone(&parties);
    let call = std::thread::spawn(move || {
        p2.run(&Plan {
            direction: Direction::Inbound,
            calls: 1,
            concurrency: 1,
            talk: Duration::from_secs(6),
            ring: Duration::ZERO,
            media: true,
            first_index: 0,
            rate: None,
        })
    });
    let calls = wait_metric(
        &server,
        "tollgate_calls_active",
        &[],
        1.0,
        Duration::from_secs(10),
    );
    assert_eq!(calls, 1.0, "the call is up");
    let rss_before = rss_kib();

    // Slowloris: 16 connections each with half a message, trickled a byte at a time; the
    // message deadline (1 s) closes each with no answer, well before the idle timeout.
    let t0 = Instant::now();
    let half = options("slow", "sip:10.201.1.1:5060", 70);
    let half = &half.as_bytes()[..half.len() / 2];
    let mut slow: Vec<TcpStream> = (0..16).map(|_| connect(&lab, None)).collect();
    for s in &mut slow {
        s.write_all(&half[..half.len() - 20]).unwrap();
    }
    let trickle: Vec<_> = slow
        .iter()
        .map(|s| {
            let mut w = s.try_clone().unwrap();
            let tail = half[half.len() - 20..].to_vec();
            std::thread::spawn(move || {
                // The attack's own pacing: one byte every 200 ms keeps the connection busy.
                for b in tail {
                    if w.write_all(&[b]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        })
        .collect();
    for s in &mut slow {
        let got = read_until(s, Duration::from_secs(10), |_| false);
        assert!(got.closed && got.msgs.is_empty(), "slowloris: {got:?}");
    }
    let slow_secs = t0.elapsed().as_secs_f64();
    for t in trickle {
        t.join().unwrap();
    }
    assert!(
        closed_by(&server, "message_deadline") >= 16.0,
        "slowloris closes counted"
    );

    // Garbage: closed after max_stream_faults (4) unparseable lines, with no answer.
    let mut s = connect(&lab, None);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\x01\x02\x03\r\nzzzz\r\nmore garbage\r\n")
        .unwrap();
    let got = read_until(&mut s, Duration::from_secs(10), |_| false);
    assert!(got.closed && got.msgs.is_empty(), "garbage: {got:?}");
    assert!(
        wait_metric(
            &server,
            "tollgate_sip_connections_closed_total",
            &["reason=\"stream_faults\""],
            1.0,
            Duration::from_secs(5)
        ) >= 1.0
    );

    // Oversize with Via/From/To/Call-ID/CSeq known: 513, then closed.
    let mut s = connect(&lab, None);
    let mut big = options("big", "sip:10.201.1.1:5060", 70)
        .replace("Content-Length: 0\r\n\r\n", "X-Pad: ")
        .into_bytes();
    big.extend(std::iter::repeat_n(b'a', 20_000));
    let _ = s.write_all(&big);
    let got = read_until(&mut s, Duration::from_secs(10), |_| false);
    assert_eq!(got.msgs.first().map(|m| m.status), Some(513), "{got:?}");
    assert_eq!(
        got.msgs.first().map(|m| m.reason.as_str()),
        Some("Message Too Large")
    );
    assert!(got.closed, "closed after 513");

    // A peer that never reads: OPTIONS after OPTIONS, no answer read. Its write queue fills
    // (16 KiB here) and it is disconnected; memory does not follow its backlog.
    let mut s = connect(&lab, Some(4096));
    let mut sent = 0usize;
    let burst: String = (0..100)
        .map(|i| options(&format!("nr{i}"), "sip:10.201.1.1:5060", 70))
        .collect();
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end && sent < 100_000 {
        if s.write_all(burst.as_bytes()).is_err() {
            break;
        }
        sent += 100;
    }
    let full = wait_metric(
        &server,
        "tollgate_sip_connections_closed_total",
        &["reason=\"write_queue_full\""],
        1.0,
        Duration::from_secs(10),
    );
    assert_eq!(
        full, 1.0,
        "the non-reader is disconnected ({sent} OPTIONS sent)"
    );
    drop(s);
    let rss_after = rss_kib();
    println!(
        "slowloris: 16 closed in {slow_secs:.1} s; non-reader: disconnected after {sent} OPTIONS; RSS {rss_before} KiB before, {rss_after} KiB after"
    );
    assert!(
        rss_after < rss_before + 8 * 1024,
        "RSS stays flat: {rss_before} -> {rss_after} KiB"
    );

    // The call was untouched by all of it, and a well-behaved peer is still served.
    let report = call.join().unwrap().unwrap();
    assert_eq!(
        report.ok(),
        1,
        "the call kept its audio: {:?}",
        report.calls
    );
    let mut s = connect(&lab, None);
    s.write_all(options("after", "sip:10.201.1.1:5060", 70).as_bytes())
        .unwrap();
    let got = read_until(&mut s, Duration::from_secs(5), |g| !g.msgs.is_empty());
    assert_eq!(got.msgs.first().map(|m| m.status), Some(200));
    drop(s);
    let summary = server.drain();
    assert_eq!((summary.calls_left, summary.ports_left), (0, (0, 0)));
}
