//! Prometheus metrics and the `/metrics` endpoint.
//!
//! Signalling metrics are updated by the control plane as things happen; media metrics are
//! refreshed from the data plane's counters once a second by the media thread (deltas of
//! cumulative totals, so counters never go backwards when flows are removed).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Label set: name/value pairs.
pub type Labels = Vec<(String, String)>;

/// Builds a label set.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Every metric the daemon exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Calls in progress.
    pub calls_active: Gauge,
    /// Calls started, by direction (`inbound` = PSTN to enterprise).
    pub calls_total: Family<Labels, Counter>,
    /// Calls that failed or ended abnormally, by cause.
    pub calls_failed: Family<Labels, Counter>,
    /// INVITE to answer, seconds.
    pub setup_seconds: Histogram,
    /// Requests refused before a call existed, by reason.
    pub requests_refused: Family<Labels, Counter>,
    /// Connections refused, by side and reason.
    pub connections_refused: Family<Labels, Counter>,
    /// TLS handshakes that failed, by side.
    pub tls_handshake_failures: Family<Labels, Counter>,
    /// SIP connections established (after the TLS handshake, for TLS), by side, transport
    /// (`tcp`, `tls`) and direction (`in` accepted, `out` opened by us).
    pub sip_connections: Family<Labels, Counter>,
    /// SIP messages, by side and direction.
    pub sip_messages: Family<Labels, Counter>,
    /// Media packets relayed, by direction (`ext_to_int`, `int_to_ext`).
    pub media_packets: Family<Labels, Counter>,
    /// Media bytes relayed, by direction.
    pub media_bytes: Family<Labels, Counter>,
    /// Media packets dropped, by side they arrived on and reason.
    pub media_drops: Family<Labels, Counter>,
    /// SRTP/SRTCP authentication failures (packets from the internal side that failed auth).
    pub srtp_auth_failures: Counter,
    /// XDP program counters, by NIC and slot.
    pub xdp: Family<Labels, Counter>,
    /// Frames the XDP boundary filter dropped, by the NIC (`side`) and reason.
    pub boundary_drops: Family<Labels, Counter>,
    /// Packets the data plane workers received and did not send, by reason: every one, also
    /// those with no flow (malformed, no flow on the port) that `media_drops` cannot show.
    pub dataplane_drops: Family<Labels, Counter>,
    /// Fraction of wall time each data plane worker was busy over the last interval.
    pub worker_busy_ratio: Family<Labels, Gauge<f64, AtomicU64>>,
    /// Media flows installed.
    pub media_flows: Gauge,
    /// Flow sides whose next hop MAC is unresolved.
    pub media_unresolved: Gauge,
    /// Trunk reachability (1 up, 0 down).
    pub trunk_up: Family<Labels, Gauge>,
    /// Calls in progress per trunk (both directions; what `max_calls` counts).
    pub trunk_calls: Family<Labels, Gauge>,
    /// New calls refused by admission, by trunk and reason.
    pub calls_not_admitted: Family<Labels, Counter>,
    /// Next hops taking calls (1) or marked down after 503 / no answer (0), by address.
    pub next_hop_up: Family<Labels, Gauge>,
    /// Relay ports allocated, by side.
    pub ports_allocated: Family<Labels, Gauge>,
    /// SIP connections closed, by side and reason (`peer`, `idle`, `message_deadline`,
    /// `stream_faults`, `oversize`, `unframeable`, `write_queue_full`, `io_error`, `local`).
    pub sip_connections_closed: Family<Labels, Counter>,
    /// HEP packets sent to the collector (`ops.hep_collector`).
    pub hep_sent: Counter,
    /// HEP packets dropped (socket buffer full, send error, message too large for HEP).
    pub hep_dropped: Counter,
    /// Messages `tollgate ctl capture` taps lost because their reader was behind.
    pub capture_dropped: Counter,
    /// 1 while the call-state store takes writes, 0 during an outage (absent: no store).
    pub state_up: Gauge,
    /// Calls whose latest state is not in the store yet (an outage leaves them unprotected).
    pub state_unprotected: Gauge,
    /// Store writes (batches), by result (`ok`, `error`).
    pub state_writes: Family<Labels, Counter>,
    /// Full re-writes of every call after a store outage.
    pub state_resyncs: Counter,
    /// Calls taken over from the store at start, by outcome (`restored`, `ended`,
    /// `unreadable`).
    pub calls_restored: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric under the `tollgate_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tollgate");
        let m = Metrics {
            calls_active: Gauge::default(),
            calls_total: Family::default(),
            calls_failed: Family::default(),
            setup_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            requests_refused: Family::default(),
            connections_refused: Family::default(),
            tls_handshake_failures: Family::default(),
            sip_connections: Family::default(),
            sip_messages: Family::default(),
            media_packets: Family::default(),
            media_bytes: Family::default(),
            media_drops: Family::default(),
            srtp_auth_failures: Counter::default(),
            xdp: Family::default(),
            boundary_drops: Family::default(),
            dataplane_drops: Family::default(),
            worker_busy_ratio: Family::default(),
            media_flows: Gauge::default(),
            media_unresolved: Gauge::default(),
            trunk_up: Family::default(),
            trunk_calls: Family::default(),
            calls_not_admitted: Family::default(),
            next_hop_up: Family::default(),
            ports_allocated: Family::default(),
            sip_connections_closed: Family::default(),
            hep_sent: Counter::default(),
            hep_dropped: Counter::default(),
            capture_dropped: Counter::default(),
            state_up: Gauge::default(),
            state_unprotected: Gauge::default(),
            state_writes: Family::default(),
            state_resyncs: Counter::default(),
            calls_restored: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("calls_active", "Calls in progress", m.calls_active.clone());
        r.register("calls", "Calls started", m.calls_total.clone());
        r.register(
            "calls_failed",
            "Calls failed or ended abnormally, by cause",
            m.calls_failed.clone(),
        );
        r.register(
            "call_setup_seconds",
            "INVITE to answer",
            m.setup_seconds.clone(),
        );
        r.register(
            "requests_refused",
            "Requests refused, by reason",
            m.requests_refused.clone(),
        );
        r.register(
            "connections_refused",
            "Connections refused",
            m.connections_refused.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "Failed TLS handshakes",
            m.tls_handshake_failures.clone(),
        );
        r.register(
            "sip_connections",
            "SIP connections established, by side, transport and direction",
            m.sip_connections.clone(),
        );
        r.register("sip_messages", "SIP messages", m.sip_messages.clone());
        r.register(
            "media_packets",
            "Media packets relayed",
            m.media_packets.clone(),
        );
        r.register("media_bytes", "Media bytes relayed", m.media_bytes.clone());
        r.register(
            "media_drops",
            "Media packets dropped",
            m.media_drops.clone(),
        );
        r.register(
            "srtp_auth_failures",
            "SRTP/SRTCP authentication failures",
            m.srtp_auth_failures.clone(),
        );
        r.register("xdp", "XDP program counters", m.xdp.clone());
        r.register(
            "dataplane_drops",
            "Packets the data plane workers dropped, by reason",
            m.dataplane_drops.clone(),
        );
        r.register(
            "boundary_drops",
            "Frames dropped by the XDP boundary filter, by NIC side and reason (other_side, port, proto, not_ours)",
            m.boundary_drops.clone(),
        );
        r.register(
            "worker_busy_ratio",
            "Data plane worker busy fraction",
            m.worker_busy_ratio.clone(),
        );
        r.register(
            "media_flows",
            "Media flows installed",
            m.media_flows.clone(),
        );
        r.register(
            "media_unresolved",
            "Flow sides with unresolved next hop",
            m.media_unresolved.clone(),
        );
        r.register("trunk_up", "Trunk reachability", m.trunk_up.clone());
        r.register(
            "trunk_calls",
            "Calls in progress per trunk",
            m.trunk_calls.clone(),
        );
        r.register(
            "calls_not_admitted",
            "New calls refused by admission (rate, concurrency, next hop), by trunk and reason",
            m.calls_not_admitted.clone(),
        );
        r.register(
            "next_hop_up",
            "Next hops taking calls (0: marked down after 503 or no answer)",
            m.next_hop_up.clone(),
        );
        r.register(
            "ports_allocated",
            "Relay ports allocated",
            m.ports_allocated.clone(),
        );
        r.register(
            "sip_connections_closed",
            "SIP connections closed, by side and reason",
            m.sip_connections_closed.clone(),
        );
        r.register(
            "hep_sent",
            "HEP packets sent to the capture collector",
            m.hep_sent.clone(),
        );
        r.register(
            "hep_dropped",
            "HEP packets dropped (socket buffer full, send error, too large)",
            m.hep_dropped.clone(),
        );
        r.register(
            "capture_dropped",
            "SIP messages lost by ctl capture taps whose reader was behind",
            m.capture_dropped.clone(),
        );
        r.register(
            "state_up",
            "1 while the call-state store takes writes, 0 during an outage",
            m.state_up.clone(),
        );
        r.register(
            "state_unprotected_calls",
            "Calls whose latest state is not yet in the call-state store",
            m.state_unprotected.clone(),
        );
        r.register(
            "state_writes",
            "Call-state store write batches, by result",
            m.state_writes.clone(),
        );
        r.register(
            "state_resyncs",
            "Full re-writes of every call to the call-state store after an outage",
            m.state_resyncs.clone(),
        );
        r.register(
            "calls_restored",
            "Calls taken over from the call-state store at start, by outcome",
            m.calls_restored.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if encode(&mut s, &self.registry).is_err() {
            s.clear();
        }
        s
    }
}

/// The metrics listener on `addr`, bound to interface `device` (SO_BINDTODEVICE), so that it
/// takes connections only from that NIC.
pub async fn bind(addr: SocketAddr, device: &str) -> std::io::Result<tokio::net::TcpListener> {
    if addr.ip().is_unspecified() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "wildcard listen address refused",
        ));
    }
    let s = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    s.set_reuseaddr(true)?;
    s.bind_device(Some(device.as_bytes()))?;
    s.bind(addr)?;
    let l = s.listen(64)?;
    tracing::info!(%addr, device, "metrics endpoint listening");
    Ok(l)
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    loop {
        let (mut s, _) = listener.accept().await?;
        let m = Arc::clone(&metrics);
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut n = 0;
            while n < buf.len() {
                match tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf[n..]))
                    .await
                {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => return,
                    Ok(Ok(k)) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let resp = if buf[..n].starts_with(b"GET /metrics ") {
                let body = m.render();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            };
            let _ = s.write_all(resp.as_bytes()).await;
        });
    }
}
