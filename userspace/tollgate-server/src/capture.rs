//! SIP capture: the driver's tap on every SIP message it receives and sends, on both sides,
//! after TLS (the internal side's messages in clear text).
//!
//! Two consumers:
//!
//! * **HEP v3 export** (`ops.hep_collector`): one HEP packet per message to a Homer collector
//!   over UDP, from a socket bound to the internal SIP address and to the interface that holds
//!   it (SO_BINDTODEVICE), so clear-text internal signalling never leaves through the gateway
//!   NIC. Sending is a non-blocking `send_to`: a full socket buffer or an error drops the
//!   packet and counts it (`tollgate_hep_dropped_total`); sent ones are counted too
//!   (`tollgate_hep_sent_total`).
//! * **Operator taps** (`tollgate ctl capture`): each tap is a bounded channel
//!   ([`TAP_QUEUE`] messages) fed with `try_send`, so a slow reader loses messages (counted
//!   per tap and in `tollgate_capture_dropped_total`), never stalls the driver. A tap ends at
//!   its deadline or when its reader goes away.
//!
//! With neither configured, [`Capture::active`] is false and the driver skips the tap without
//! encoding or allocating anything.
//!
//! The local end of a message on a connection a peer opened is that connection's own local
//! address (so `ext.tls_listen` shows as such); on a connection Tollgate dialled it is the
//! side's SIP listen address, not the connection's ephemeral port: the first message is queued
//! before the connection exists, and one flow keeps one address pair.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use tokio::sync::mpsc;
use tollgate_capture::hep;

use crate::metrics::Metrics;
use crate::transport::{NetTransport, Side};

/// Messages one operator tap may hold before it drops.
pub const TAP_QUEUE: usize = 4096;

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Received by Tollgate.
    In,
    /// Sent by Tollgate.
    Out,
}

impl Dir {
    /// `in` or `out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
        }
    }
}

/// One message as a tap saw it.
#[derive(Debug, Clone)]
pub struct Captured {
    /// When.
    pub time: SystemTime,
    /// Which side.
    pub side: Side,
    /// Which way.
    pub dir: Dir,
    /// Tollgate's end (the side's SIP listen address).
    pub local: SocketAddr,
    /// The peer's end.
    pub peer: SocketAddr,
    /// `tcp` or `tls`.
    pub transport: NetTransport,
    /// The message's Call-ID.
    pub call_id: Option<String>,
    /// The message as sent (or, received, as parsed and re-encoded).
    pub sip: Arc<[u8]>,
}

impl Captured {
    /// The JSON line of `tollgate ctl capture`.
    pub fn to_json(&self) -> serde_json::Value {
        let t = self
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        serde_json::json!({
            "time": t.as_secs_f64(),
            "time_s": t.as_secs(),
            "time_us": t.subsec_micros(),
            "side": self.side.as_str(),
            "dir": self.dir.as_str(),
            "local": self.local.to_string(),
            "peer": self.peer.to_string(),
            "transport": match self.transport { NetTransport::Tcp => "tcp", NetTransport::Tls => "tls" },
            "call_id": self.call_id,
            "sip": String::from_utf8_lossy(&self.sip),
        })
    }
}

/// An operator's tap.
#[derive(Debug)]
pub struct Tap {
    /// Only these Call-IDs (a call's two legs); `None`: everything.
    pub call_ids: Option<Vec<String>>,
    /// When it ends.
    pub until: Instant,
    /// Where messages go.
    pub tx: mpsc::Sender<Captured>,
    /// Messages lost because the reader was behind.
    pub dropped: Arc<AtomicU64>,
}

/// The HEP v3 exporter's settings (from `[ops]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HepConfig {
    /// Where packets go.
    pub collector: SocketAddr,
    /// Capture agent id (chunk 12).
    pub agent_id: u32,
    /// Authentication key (chunk 14).
    pub password: Option<String>,
}

/// The HEP socket and its settings.
#[derive(Debug)]
pub struct HepSender {
    sock: UdpSocket,
    cfg: HepConfig,
    buf: Vec<u8>,
}

impl HepSender {
    /// A non-blocking UDP socket on `local` (the internal SIP address, port chosen by the
    /// kernel), bound to interface `device`.
    pub fn open(cfg: HepConfig, local: std::net::IpAddr, device: &str) -> std::io::Result<Self> {
        let sock = UdpSocket::bind(SocketAddr::new(local, 0))?;
        tollgate_dataplane::sys::bind_to_device(std::os::fd::AsRawFd::as_raw_fd(&sock), device)?;
        sock.set_nonblocking(true)?;
        Ok(HepSender {
            sock,
            cfg,
            buf: Vec::with_capacity(2048),
        })
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.sock.local_addr()
    }
}

/// The tap's state, owned by the driver.
#[derive(Debug)]
pub struct Capture {
    hep: Option<HepSender>,
    taps: Vec<Tap>,
    locals: [SocketAddr; 2],
    metrics: Arc<Metrics>,
}

/// One message at the tap point.
#[derive(Debug, Clone, Copy)]
pub struct TapPoint<'a> {
    /// Side.
    pub side: Side,
    /// Direction.
    pub dir: Dir,
    /// Tollgate's end, when known (else the side's SIP listen address is used).
    pub local: Option<SocketAddr>,
    /// The peer.
    pub peer: SocketAddr,
    /// The connection's transport.
    pub transport: NetTransport,
    /// The message's bytes.
    pub bytes: &'a [u8],
    /// Its Call-ID.
    pub call_id: Option<&'a str>,
}

impl Capture {
    /// No HEP, no taps; `locals` are the SIP listen addresses `[ext, int]`.
    pub fn new(locals: [SocketAddr; 2], metrics: Arc<Metrics>) -> Capture {
        Capture {
            hep: None,
            taps: Vec::new(),
            locals,
            metrics,
        }
    }

    /// Exports to a HEP collector.
    pub fn with_hep(mut self, hep: HepSender) -> Capture {
        self.hep = Some(hep);
        self
    }

    /// Whether anything listens (checked before a message is encoded for the tap).
    pub fn active(&self) -> bool {
        self.hep.is_some() || !self.taps.is_empty()
    }

    /// Adds an operator tap.
    pub fn add(&mut self, tap: Tap) {
        self.taps.push(tap);
    }

    /// Ends taps past their deadline or whose reader went away.
    pub fn expire(&mut self, now: Instant) {
        self.taps.retain(|t| t.until > now && !t.tx.is_closed());
    }

    /// The local end on `side`.
    pub fn local(&self, side: Side) -> SocketAddr {
        match side {
            Side::Ext => self.locals[0],
            Side::Int => self.locals[1],
        }
    }

    /// One message: to the HEP collector and to every tap that wants it.
    pub fn tap(&mut self, p: TapPoint<'_>) {
        let time = SystemTime::now();
        let local = p.local.unwrap_or_else(|| self.local(p.side));
        let (src, dst) = match p.dir {
            Dir::In => (p.peer, local),
            Dir::Out => (local, p.peer),
        };
        if let Some(h) = self.hep.as_mut() {
            let t = time
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            let pkt = hep::Hep {
                ip_proto: hep::IPPROTO_TCP,
                src,
                dst,
                ts_sec: u32::try_from(t.as_secs()).unwrap_or(u32::MAX),
                ts_usec: t.subsec_micros(),
                proto_type: hep::PROTO_SIP,
                agent_id: h.cfg.agent_id,
                auth_key: h.cfg.password.as_deref().map(str::as_bytes),
                payload: p.bytes,
                correlation_id: p.call_id.map(str::as_bytes),
            };
            h.buf.clear();
            let sent = hep::encode(&pkt, &mut h.buf).is_ok()
                && h.sock.send_to(&h.buf, h.cfg.collector).is_ok();
            if sent {
                self.metrics.hep_sent.inc();
            } else {
                self.metrics.hep_dropped.inc();
            }
        }
        if self.taps.is_empty() {
            return;
        }
        let mut shared: Option<Captured> = None;
        let now = Instant::now();
        let mut closed = false;
        for t in &self.taps {
            if t.until <= now {
                continue;
            }
            if let Some(ids) = &t.call_ids
                && !p.call_id.is_some_and(|c| ids.iter().any(|i| i == c))
            {
                continue;
            }
            let c = shared
                .get_or_insert_with(|| Captured {
                    time,
                    side: p.side,
                    dir: p.dir,
                    local,
                    peer: p.peer,
                    transport: p.transport,
                    call_id: p.call_id.map(str::to_owned),
                    sip: Arc::from(p.bytes),
                })
                .clone();
            match t.tx.try_send(c) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    t.dropped.fetch_add(1, Ordering::Relaxed);
                    self.metrics.capture_dropped.inc();
                }
                Err(mpsc::error::TrySendError::Closed(_)) => closed = true,
            }
        }
        if closed {
            self.expire(now);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn hep_and_taps_get_the_message_and_slow_taps_drop() {
        let metrics = Arc::new(Metrics::new());
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        let hep = HepSender::open(
            HepConfig {
                collector: collector.local_addr().unwrap(),
                agent_id: 7,
                password: Some("pw".into()),
            },
            "127.0.0.1".parse().unwrap(),
            "lo",
        );
        let mut c = Capture::new(
            [sa("127.0.0.1:5060"), sa("127.0.0.2:5061")],
            Arc::clone(&metrics),
        );
        assert!(!c.active());
        // SO_BINDTODEVICE needs CAP_NET_RAW: without it, test the taps only.
        let with_hep = hep.is_ok();
        if let Ok(h) = hep {
            c = c.with_hep(h);
        }
        let (tx, mut rx) = mpsc::channel(2);
        let dropped = Arc::new(AtomicU64::new(0));
        c.add(Tap {
            call_ids: Some(vec!["a@x".into()]),
            until: Instant::now() + std::time::Duration::from_secs(60),
            tx,
            dropped: Arc::clone(&dropped),
        });
        assert!(c.active());
        let msg = b"BYE sip:x SIP/2.0\r\nCall-ID: a@x\r\n\r\n";
        for id in ["a@x", "b@x", "a@x", "a@x"] {
            c.tap(TapPoint {
                side: Side::Int,
                dir: Dir::Out,
                local: None,
                peer: sa("127.0.0.3:40000"),
                transport: NetTransport::Tls,
                bytes: msg,
                call_id: Some(id),
            });
        }
        let got = rx.recv().await.unwrap();
        assert_eq!(got.local, sa("127.0.0.2:5061"));
        assert_eq!(got.to_json()["dir"], "out");
        assert_eq!(got.to_json()["call_id"], "a@x");
        assert!(rx.try_recv().is_ok());
        assert!(
            rx.try_recv().is_err(),
            "b@x was filtered, the third a@x dropped"
        );
        assert_eq!(dropped.load(Ordering::Relaxed), 1);
        if with_hep {
            let mut buf = [0u8; 2048];
            let (n, from) = collector.recv_from(&mut buf).unwrap();
            assert_eq!(from.ip(), "127.0.0.1".parse::<std::net::IpAddr>().unwrap());
            let h = hep::decode(&buf[..n]).unwrap();
            assert_eq!(
                (h.src, h.dst),
                (sa("127.0.0.2:5061"), sa("127.0.0.3:40000"))
            );
            assert_eq!(h.payload, msg);
            assert_eq!(h.agent_id, 7);
            assert_eq!(h.auth_key, Some(&b"pw"[..]));
            assert_eq!(h.correlation_id, Some(&b"a@x"[..]));
            assert_eq!(metrics.hep_sent.get(), 4);
        }
        drop(rx);
        c.expire(Instant::now());
        assert!(c.active() == with_hep);
    }
}
