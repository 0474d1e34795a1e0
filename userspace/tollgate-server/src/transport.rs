//! SIP transports: listeners per side, outbound connections, framing.
//!
//! One tokio task per connection reads bytes into a [`tollgate_sip::Framer`] and reports every
//! frame to the driver as a [`NetEvent`]; a writer task per connection drains a channel of
//! encoded messages. The driver owns the connection registry (no locks on the message path).
//!
//! Rules enforced here, before any SIP is parsed:
//! * listeners bind the configured address of their NIC, never a wildcard;
//! * the gateway side accepts connections only from configured trunk addresses (others are
//!   closed at once and counted), and at most `max_connections_per_source` per address;
//! * the internal listener only speaks TLS and requires a client certificate (mTLS); a failed
//!   handshake is counted and the connection closed;
//! * listeners and outbound connections are bound to their side's NIC (SO_BINDTODEVICE), so
//!   each takes packets only from its own NIC whatever the weak host model would deliver;
//! * outbound connections leave from the side's own address (the NIC of that side);
//! * idle connections are closed; a message over the size cap is answered 413 and the
//!   connection closed.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tollgate_sip::{Frame, FrameError, Framer, Message};

use crate::metrics::{Metrics, labels};
use crate::tls::TlsMaterial;

/// Which side of Tollgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetSide {
    /// Gateway side.
    Ext,
    /// Internal side.
    Int,
}

impl NetSide {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            NetSide::Ext => "ext",
            NetSide::Int => "int",
        }
    }
}

/// Stream transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetTransport {
    /// Plain TCP.
    Tcp,
    /// TLS.
    Tls,
}

/// What connections report to the driver.
#[derive(Debug)]
pub enum NetEvent {
    /// A connection is up (accepted, or outbound connected); write to it through `writer`.
    Up {
        /// Connection id.
        conn: u64,
        /// Side.
        side: NetSide,
        /// Remote address.
        peer: SocketAddr,
        /// Outbound connection (we dialled it).
        outbound: bool,
        /// Writer queue.
        writer: mpsc::UnboundedSender<Vec<u8>>,
    },
    /// A complete message.
    Message {
        /// Connection id.
        conn: u64,
        /// Side.
        side: NetSide,
        /// Remote address.
        peer: SocketAddr,
        /// The message.
        msg: Box<Message>,
    },
    /// A message that did not parse or frame (the driver answers as the error says).
    Invalid {
        /// Connection id.
        conn: u64,
        /// Side.
        side: NetSide,
        /// Remote address.
        peer: SocketAddr,
        /// What was wrong.
        error: Box<FrameError>,
    },
    /// An outbound connection could not be made.
    ConnectFailed {
        /// Connection id that was reserved for it.
        conn: u64,
        /// Side.
        side: NetSide,
        /// Target.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A connection closed.
    Closed {
        /// Connection id.
        conn: u64,
        /// Side.
        side: NetSide,
    },
}

/// Limits and shared state of the transport layer.
#[derive(Debug)]
pub struct TransportCtx {
    /// Where connection tasks report.
    pub events: mpsc::Sender<NetEvent>,
    next_id: AtomicU64,
    /// Gateway addresses allowed to connect on the ext side (updated on reload).
    pub trunk_addrs: RwLock<HashSet<IpAddr>>,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    /// TLS material (swapped on reload).
    pub tls: RwLock<TlsMaterial>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Largest message.
    pub max_message: usize,
    /// Connections per source address.
    pub max_per_source: usize,
    /// Idle timeout.
    pub idle: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Our address on each side (outbound connections bind it).
    pub local_ip: [IpAddr; 2],
    /// The NIC of each side (outbound connections are bound to it); `None`: unbound.
    pub devices: [Option<String>; 2],
}

impl TransportCtx {
    /// Creates the context.
    #[allow(clippy::too_many_arguments)] // reason: plain configuration values.
    pub fn new(
        events: mpsc::Sender<NetEvent>,
        trunk_addrs: HashSet<IpAddr>,
        tls: TlsMaterial,
        metrics: Arc<Metrics>,
        max_message: usize,
        max_per_source: usize,
        idle: Duration,
        connect_timeout: Duration,
        local_ip: [IpAddr; 2],
    ) -> TransportCtx {
        TransportCtx {
            events,
            next_id: AtomicU64::new(1),
            trunk_addrs: RwLock::new(trunk_addrs),
            per_source: Mutex::new(HashMap::new()),
            tls: RwLock::new(tls),
            metrics,
            max_message,
            max_per_source,
            idle,
            connect_timeout,
            local_ip,
            devices: [None, None],
        }
    }

    /// The same context with outbound connections bound to these NICs (`[ext, int]`).
    pub fn with_devices(mut self, devices: [String; 2]) -> TransportCtx {
        self.devices = devices.map(Some);
        self
    }

    /// A fresh connection id.
    pub fn next_conn(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts an established connection.
    fn connected(&self, side: NetSide, transport: NetTransport, outbound: bool) {
        let t = match transport {
            NetTransport::Tcp => "tcp",
            NetTransport::Tls => "tls",
        };
        let dir = if outbound { "out" } else { "in" };
        self.metrics
            .sip_connections
            .get_or_create(&labels(&[
                ("side", side.as_str()),
                ("transport", t),
                ("dir", dir),
            ]))
            .inc();
    }

    fn refuse(&self, side: NetSide, reason: &str) {
        self.metrics
            .connections_refused
            .get_or_create(&labels(&[("side", side.as_str()), ("reason", reason)]))
            .inc();
    }

    /// Counts a new connection from `ip`; false if over the per-source cap.
    fn admit(&self, ip: IpAddr) -> bool {
        let Ok(mut m) = self.per_source.lock() else {
            return false;
        };
        let n = m.entry(ip).or_insert(0);
        if *n >= self.max_per_source {
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, ip: IpAddr) {
        if let Ok(mut m) = self.per_source.lock()
            && let Some(n) = m.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// Binds a listener on a specific address (refusing wildcards) and, if given, to `device`
/// (SO_BINDTODEVICE): it then accepts connections only from that NIC.
pub async fn bind(addr: SocketAddr, device: Option<&str>) -> std::io::Result<TcpListener> {
    if addr.ip().is_unspecified() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "wildcard listen address refused",
        ));
    }
    let s = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    s.set_reuseaddr(true)?;
    if let Some(d) = device {
        s.bind_device(Some(d.as_bytes()))
            .map_err(|e| std::io::Error::new(e.kind(), format!("SO_BINDTODEVICE {d}: {e}")))?;
    }
    s.bind(addr)?;
    s.listen(1024)
}

/// Accepts connections on `listener` for `side` until the task is dropped.
pub async fn accept_loop(
    listener: TcpListener,
    side: NetSide,
    transport: NetTransport,
    ctx: Arc<TransportCtx>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(side = side.as_str(), error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if side == NetSide::Ext {
            let allowed = ctx
                .trunk_addrs
                .read()
                .map(|s| s.contains(&peer.ip()))
                .unwrap_or(false);
            if !allowed {
                tracing::warn!(%peer, "connection from an address that is not a configured trunk: refused");
                ctx.refuse(side, "unknown_source");
                drop(stream);
                continue;
            }
        }
        if !ctx.admit(peer.ip()) {
            ctx.refuse(side, "per_source_limit");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let ctx2 = Arc::clone(&ctx);
        tokio::spawn(async move {
            match transport {
                NetTransport::Tcp => {
                    let conn = ctx2.next_conn();
                    ctx2.connected(side, transport, false);
                    run_conn(stream, conn, side, peer, false, None, Arc::clone(&ctx2)).await;
                }
                NetTransport::Tls => {
                    let cfg = match ctx2.tls.read() {
                        Ok(t) => match side {
                            NetSide::Int => Arc::clone(&t.int_server),
                            NetSide::Ext => Arc::clone(&t.ext_server),
                        },
                        Err(_) => return,
                    };
                    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => {
                            let conn = ctx2.next_conn();
                            ctx2.connected(side, transport, false);
                            run_conn(tls, conn, side, peer, false, None, Arc::clone(&ctx2)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(%peer, side = side.as_str(), error = %e, "TLS handshake failed");
                            ctx2.metrics
                                .tls_handshake_failures
                                .get_or_create(&labels(&[("side", side.as_str())]))
                                .inc();
                        }
                        Err(_) => {
                            ctx2.metrics
                                .tls_handshake_failures
                                .get_or_create(&labels(&[("side", side.as_str())]))
                                .inc();
                        }
                    }
                }
            }
            ctx2.release(peer.ip());
        });
    }
}

/// A connection's writer queue (both ends).
pub type Chan = (
    mpsc::UnboundedSender<Vec<u8>>,
    mpsc::UnboundedReceiver<Vec<u8>>,
);

/// Opens an outbound connection for `conn` (whose writer queue is `chan`) from our address on
/// `side` to `addr`; reports `Up` or `ConnectFailed`.
pub fn connect(
    ctx: Arc<TransportCtx>,
    conn: u64,
    side: NetSide,
    addr: SocketAddr,
    transport: NetTransport,
    server_name: Option<String>,
    chan: Chan,
) {
    tokio::spawn(async move {
        let fail = |reason: String| NetEvent::ConnectFailed {
            conn,
            side,
            addr,
            reason,
        };
        let index = match side {
            NetSide::Ext => 0,
            NetSide::Int => 1,
        };
        let local = ctx.local_ip[index];
        let sock = match if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        } {
            Ok(s) => s,
            Err(e) => {
                let _ = ctx.events.send(fail(e.to_string())).await;
                return;
            }
        };
        if let Some(d) = &ctx.devices[index]
            && let Err(e) = sock.bind_device(Some(d.as_bytes()))
        {
            let _ = ctx
                .events
                .send(fail(format!("SO_BINDTODEVICE {d}: {e}")))
                .await;
            return;
        }
        if let Err(e) = sock.bind(SocketAddr::new(local, 0)) {
            let _ = ctx.events.send(fail(format!("bind {local}: {e}"))).await;
            return;
        }
        let stream = match tokio::time::timeout(ctx.connect_timeout, sock.connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let _ = ctx.events.send(fail(e.to_string())).await;
                return;
            }
            Err(_) => {
                let _ = ctx.events.send(fail("connect timeout".into())).await;
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        match transport {
            NetTransport::Tcp => {
                ctx.connected(side, transport, true);
                run_conn(stream, conn, side, addr, true, Some(chan), ctx).await;
            }
            NetTransport::Tls => {
                let cfg = match ctx.tls.read() {
                    Ok(t) => Arc::clone(&t.client),
                    Err(_) => return,
                };
                let name = server_name.unwrap_or_else(|| addr.ip().to_string());
                let Ok(sn) = rustls_pki_types::ServerName::try_from(name.clone()) else {
                    let _ = ctx
                        .events
                        .send(fail(format!("bad TLS server name {name:?}")))
                        .await;
                    return;
                };
                let connector = tokio_rustls::TlsConnector::from(cfg);
                match tokio::time::timeout(ctx.connect_timeout, connector.connect(sn, stream)).await
                {
                    Ok(Ok(tls)) => {
                        ctx.connected(side, transport, true);
                        run_conn(tls, conn, side, addr, true, Some(chan), ctx).await;
                    }
                    Ok(Err(e)) => {
                        ctx.metrics
                            .tls_handshake_failures
                            .get_or_create(&labels(&[("side", side.as_str())]))
                            .inc();
                        let _ = ctx.events.send(fail(format!("TLS: {e}"))).await;
                    }
                    Err(_) => {
                        ctx.metrics
                            .tls_handshake_failures
                            .get_or_create(&labels(&[("side", side.as_str())]))
                            .inc();
                        let _ = ctx.events.send(fail("TLS handshake timeout".into())).await;
                    }
                }
            }
        }
    });
}

/// Drives one connection: a writer task fed by a channel, and the read/frame loop here.
async fn run_conn<S>(
    stream: S,
    conn: u64,
    side: NetSide,
    peer: SocketAddr,
    outbound: bool,
    chan: Option<Chan>,
    ctx: Arc<TransportCtx>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    // Outbound connections use the queue the driver created when it dialled (messages may be
    // waiting in it); inbound ones get a new queue, handed to the driver in `Up`.
    let (writer, mut rx) = chan.unwrap_or_else(mpsc::unbounded_channel::<Vec<u8>>);
    if ctx
        .events
        .send(NetEvent::Up {
            conn,
            side,
            peer,
            outbound,
            writer: writer.clone(),
        })
        .await
        .is_err()
    {
        return;
    }
    let wtask = tokio::spawn(async move {
        while let Some(buf) = rx.recv().await {
            if buf.is_empty() {
                break; // close request
            }
            if wr.write_all(&buf).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut framer = Framer::new(ctx.max_message);
    let mut buf = vec![0u8; 16 * 1024];
    'read: loop {
        let n = match tokio::time::timeout(ctx.idle, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Err(_) => {
                tracing::debug!(conn, %peer, "idle connection closed");
                break;
            }
            Ok(Ok(n)) => n,
        };
        framer.push(&buf[..n]);
        while let Some(f) = framer.next_frame() {
            let ev = match f {
                Ok(Frame::Message(m)) => NetEvent::Message {
                    conn,
                    side,
                    peer,
                    msg: Box::new(m),
                },
                Ok(Frame::Ping) => {
                    let _ = writer.send(b"\r\n".to_vec());
                    continue;
                }
                Err(e) => {
                    let fatal = e.fatal;
                    let ev = NetEvent::Invalid {
                        conn,
                        side,
                        peer,
                        error: Box::new(e),
                    };
                    if ctx.events.send(ev).await.is_err() {
                        break 'read;
                    }
                    if fatal {
                        // Give the driver a moment to queue its answer (413/400), then close.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break 'read;
                    }
                    continue;
                }
            };
            if ctx.events.send(ev).await.is_err() {
                break 'read;
            }
        }
        if framer.is_dead() {
            break;
        }
    }
    let _ = writer.send(Vec::new());
    drop(writer);
    let _ = ctx.events.send(NetEvent::Closed { conn, side }).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), wtask).await;
}

/// Binds a TCP stream helper for tests: connects from `local` to `addr`.
pub async fn connect_from(local: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    s.bind(SocketAddr::new(local, 0))?;
    s.connect(addr).await
}
