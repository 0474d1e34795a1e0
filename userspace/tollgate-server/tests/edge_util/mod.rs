//! Helpers for the SIP edge lab tests: Tollgate in the lab with small edge limits, raw TCP
//! connections from the trunk's address, lenient response reading, metric polling, RSS.
#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "test helpers; not every test uses each one"
)]

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tollgate_netlab::{LabGuard, LabSpec, in_netns};
use tollgate_server::config::Config;

use crate::common::{Scratch, Server, addrs};

pub const TOLLGATE_EXT: &str = "10.201.1.1:5060";

pub fn torture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tollgate-sip/tests/torture/rfc4475")
}

/// A lab and Tollgate in it, with edge limits small enough for quick tests.
pub fn start(tag: &str, edit: impl FnOnce(&mut Config)) -> (LabGuard, Scratch, Config) {
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
pub fn connect(lab: &LabGuard, rcvbuf: Option<i32>) -> TcpStream {
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
pub struct Resp {
    pub status: u16,
    pub reason: String,
    pub call_id: String,
}

/// What came back on a connection.
#[derive(Debug, Default)]
pub struct Got {
    pub msgs: Vec<Resp>,
    /// The server closed the connection (EOF or reset).
    pub closed: bool,
}

/// Splits complete responses off the front of `buf`.
pub fn take_responses(buf: &mut Vec<u8>, out: &mut Vec<Resp>) {
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
pub fn read_until(s: &mut TcpStream, limit: Duration, done: impl Fn(&Got) -> bool) -> Got {
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

pub fn options(call_id: &str, ruri: &str, max_forwards: u32) -> String {
    format!(
        "OPTIONS {ruri} SIP/2.0\r\nVia: SIP/2.0/TCP 10.201.1.2:5060;branch=z9hG4bK-{call_id}\r\nMax-Forwards: {max_forwards}\r\nFrom: <sip:gw@10.201.1.2>;tag=p\r\nTo: <{ruri}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The bytes a sender puts on a stream for a torture message (baddn.dat lacks the blank line
/// its datagram's end provided; see the table in `tollgate-sip/tests/torture.rs`).
pub fn as_sent_on_a_stream(raw: &[u8]) -> Vec<u8> {
    let mut out = raw.to_vec();
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Polls a metric (sum over series with `labels`) until it reaches `want`, or `limit` passes.
pub fn wait_metric(
    server: &Server,
    name: &str,
    labels: &[&str],
    want: f64,
    limit: Duration,
) -> f64 {
    let end = Instant::now() + limit;
    loop {
        let v = server.metric_with(name, labels);
        if v >= want || Instant::now() >= end {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn closed_by(server: &Server, reason: &str) -> f64 {
    server.metric_with(
        "tollgate_sip_connections_closed_total",
        &["side=\"ext\"", &format!("reason=\"{reason}\"")],
    )
}

pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
