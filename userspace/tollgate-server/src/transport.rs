//! SIP transports: listeners per side, outbound connections, framing.
//!
//! One tokio task per connection reads bytes into a [`tollgate_sip::Framer`] and reports every
//! frame to the driver as a [`NetEvent`] (over a bounded channel); a writer task per connection
//! drains that connection's [`WriteQueue`] of [`WriteCmd`]s. The driver owns the connection
//! registry (no locks on the message path).
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
//! * idle connections are closed (`sip.connection_idle_timeout_s`);
//! * a message must be complete within `sip.message_deadline_s` of its first byte (the framer
//!   says whether one is under way; the deadline is a tokio timer here), else the connection
//!   is closed: a half-sent message (slowloris) cannot hold a connection slot;
//! * a message over the size cap is answered 513 when it can be addressed, and the connection
//!   closed; so is a stream that cannot be resynchronised (after its 400, if any);
//! * unparseable bytes are stream faults: each leading-garbage line and each message that
//!   cannot be answered. `sip.max_stream_faults` of them in a row (a framed message resets
//!   the count) close the connection;
//! * each connection's write queue holds at most `sip.write_queue_bytes`: a peer that stops
//!   reading fills it and is disconnected, so it cannot grow memory;
//! * every close is counted once, by reason, in `tollgate_sip_connections_closed_total`, and a
//!   close for a hostile reason is logged in one line per connection.
//!
//! A fatal framing error is sequenced without timers: the reader hands it to the driver and
//! stops reading; the driver queues its answer (if any) and then [`WriteCmd::Close`], and the
//! writer ends after writing both.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tollgate_sip::{Fault, Frame, FrameError, Framer, Message};

use crate::metrics::{Metrics, labels};
use crate::tls::TlsMaterial;

pub use tollgate_common::Side;

/// Stream transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetTransport {
    /// Plain TCP.
    Tcp,
    /// TLS.
    Tls,
}

/// How a connection came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Outbound connection (we dialled it).
    pub outbound: bool,
    /// TCP or TLS.
    pub transport: NetTransport,
    /// Our end of it, if the kernel told.
    pub local: Option<SocketAddr>,
}

/// What connections report to the driver.
#[derive(Debug)]
pub enum NetEvent {
    /// A connection is up (accepted, or outbound connected); write to it through `writer`.
    Up {
        /// Connection id.
        conn: u64,
        /// Side.
        side: Side,
        /// Remote address.
        peer: SocketAddr,
        /// Who dialled, over what, and the local end.
        link: Link,
        /// Writer queue.
        writer: WriteQueue,
    },
    /// A complete message.
    Message {
        /// Connection id.
        conn: u64,
        /// Side.
        side: Side,
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
        side: Side,
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
        side: Side,
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
        side: Side,
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
    /// Per-connection stream limits (deadline, faults, write queue).
    pub stream: StreamLimits,
    /// The NIC of each side (outbound connections are bound to it); `None`: unbound.
    pub devices: [Option<String>; 2],
}

/// Limits on what one connection may do to the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// A message must be complete this long after its first byte.
    pub message_deadline: Duration,
    /// Stream faults in a row that close the connection.
    pub max_faults: u32,
    /// Bytes a connection's write queue may hold.
    pub write_queue_bytes: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            message_deadline: Duration::from_secs(10),
            max_faults: 4,
            write_queue_bytes: 1 << 20,
        }
    }
}

/// Limits on every SIP connection, from the `[sip]` configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Largest message, bytes.
    pub max_message: usize,
    /// Connections per source address.
    pub max_per_source: usize,
    /// A connection with nothing to read for this long is closed.
    pub idle: Duration,
    /// An outbound connection not made within this is a connect failure.
    pub connect_timeout: Duration,
}

/// One instruction for a connection's writer task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCmd {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Write what is queued before this, then shut the connection down.
    Close,
}

/// Why a connection was closed: the `reason` label of `tollgate_sip_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed it.
    Peer,
    /// A read or write failed.
    IoError,
    /// Nothing arrived for `sip.connection_idle_timeout_s`.
    Idle,
    /// A message was not complete within `sip.message_deadline_s`.
    MessageDeadline,
    /// `sip.max_stream_faults` unparseable lines or unanswerable messages in a row.
    StreamFaults,
    /// A message over `sip.max_message_bytes` (answered 513 when addressable).
    Oversize,
    /// The stream cannot be resynchronised (no usable Content-Length).
    Unframeable,
    /// The peer did not read: its write queue reached `sip.write_queue_bytes`.
    WriteQueueFull,
    /// Tollgate closed it (shutdown, or the driver asked).
    Local,
}

impl CloseReason {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Peer => "peer",
            CloseReason::IoError => "io_error",
            CloseReason::Idle => "idle",
            CloseReason::MessageDeadline => "message_deadline",
            CloseReason::StreamFaults => "stream_faults",
            CloseReason::Oversize => "oversize",
            CloseReason::Unframeable => "unframeable",
            CloseReason::WriteQueueFull => "write_queue_full",
            CloseReason::Local => "local",
        }
    }

    /// A close the peer caused by misbehaving (logged as a warning).
    fn is_hostile(self) -> bool {
        matches!(
            self,
            CloseReason::MessageDeadline
                | CloseReason::StreamFaults
                | CloseReason::Oversize
                | CloseReason::Unframeable
                | CloseReason::WriteQueueFull
        )
    }
}

/// A write queue refused a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The queue is at its limit: the peer is not reading. The connection is being dropped.
    #[error("write queue full ({limit} bytes): connection dropped")]
    Full {
        /// The configured limit.
        limit: usize,
    },
    /// The connection is gone.
    #[error("connection closed")]
    Closed,
}

/// State shared by a queue's senders and its writer task.
#[derive(Debug)]
struct QueueShared {
    /// Bytes queued and not yet written.
    queued: AtomicUsize,
    limit: usize,
    /// The limit was hit.
    full: AtomicBool,
    /// Set once: stop writing and reading now, whatever is queued.
    abort: watch::Sender<bool>,
}

/// The sending end of a connection's bounded write queue (cheap to clone). Bounded twice: by
/// bytes (`sip.write_queue_bytes`) and by entries (one per 256 bytes of the limit, at least
/// 64), so neither many small nor a few large messages can grow it without limit.
#[derive(Debug, Clone)]
pub struct WriteQueue {
    tx: mpsc::Sender<WriteCmd>,
    shared: Arc<QueueShared>,
}

/// The receiving end, owned by the connection's writer task.
#[derive(Debug)]
pub struct WriteRx {
    rx: mpsc::Receiver<WriteCmd>,
    shared: Arc<QueueShared>,
}

/// A connection's write queue (both ends), holding at most `limit` bytes.
pub fn write_queue(limit: usize) -> (WriteQueue, WriteRx) {
    let (tx, rx) = mpsc::channel((limit / 256).max(64));
    let shared = Arc::new(QueueShared {
        queued: AtomicUsize::new(0),
        limit,
        full: AtomicBool::new(false),
        abort: watch::Sender::new(false),
    });
    (
        WriteQueue {
            tx,
            shared: Arc::clone(&shared),
        },
        WriteRx { rx, shared },
    )
}

impl WriteQueue {
    /// Queues bytes for the peer. When the queue is full the connection is aborted (reader and
    /// writer stop, the close is counted as `write_queue_full`) and `Full` is returned.
    pub fn send(&self, bytes: Vec<u8>) -> Result<(), QueueError> {
        let n = bytes.len();
        let sh = &self.shared;
        if sh.queued.fetch_add(n, Ordering::AcqRel).saturating_add(n) > sh.limit {
            sh.queued.fetch_sub(n, Ordering::AcqRel);
            return Err(self.overflow());
        }
        match self.tx.try_send(WriteCmd::Send(bytes)) {
            Ok(()) => Ok(()),
            Err(e) => {
                sh.queued.fetch_sub(n, Ordering::AcqRel);
                match e {
                    mpsc::error::TrySendError::Full(_) => Err(self.overflow()),
                    mpsc::error::TrySendError::Closed(_) => Err(QueueError::Closed),
                }
            }
        }
    }

    /// Asks the writer to close the connection after what is queued.
    pub fn close(&self) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(WriteCmd::Close) {
            self.overflow();
        }
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    fn overflow(&self) -> QueueError {
        self.shared.full.store(true, Ordering::Release);
        self.shared.abort.send_replace(true);
        QueueError::Full {
            limit: self.shared.limit,
        }
    }

    fn is_full(&self) -> bool {
        self.shared.full.load(Ordering::Acquire)
    }

    /// Aborts the connection now, dropping whatever is queued.
    fn abort(&self) {
        self.shared.abort.send_replace(true);
    }

    fn aborted(&self) -> watch::Receiver<bool> {
        self.shared.abort.subscribe()
    }
}

impl TransportCtx {
    /// Creates the context.
    pub fn new(
        events: mpsc::Sender<NetEvent>,
        trunk_addrs: HashSet<IpAddr>,
        tls: TlsMaterial,
        metrics: Arc<Metrics>,
        limits: ConnLimits,
        local_ip: [IpAddr; 2],
    ) -> TransportCtx {
        let ConnLimits {
            max_message,
            max_per_source,
            idle,
            connect_timeout,
        } = limits;
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
            stream: StreamLimits::default(),
            devices: [None, None],
        }
    }

    /// The same context with outbound connections bound to these NICs (`[ext, int]`).
    pub fn with_devices(mut self, devices: [String; 2]) -> TransportCtx {
        self.devices = devices.map(Some);
        self
    }

    /// Sets the per-connection stream limits.
    pub fn with_stream_limits(mut self, stream: StreamLimits) -> TransportCtx {
        self.stream = stream;
        self
    }

    /// Counts a closed connection once, by reason.
    fn closed(&self, side: Side, reason: CloseReason) {
        self.metrics
            .sip_connections_closed
            .get_or_create(&labels(&[
                ("side", side.as_str()),
                ("reason", reason.as_str()),
            ]))
            .inc();
    }

    /// A fresh connection id.
    pub fn next_conn(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts an established connection.
    fn connected(&self, side: Side, transport: NetTransport, outbound: bool) {
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

    fn refuse(&self, side: Side, reason: &str) {
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
    side: Side,
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
        if side == Side::Ext {
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
                    let link = Link {
                        outbound: false,
                        transport,
                        local: stream.local_addr().ok(),
                    };
                    run_conn(stream, conn, side, peer, link, None, Arc::clone(&ctx2)).await;
                }
                NetTransport::Tls => {
                    let cfg = match ctx2.tls.read() {
                        Ok(t) => match side {
                            Side::Int => Arc::clone(&t.int_server),
                            Side::Ext => Arc::clone(&t.ext_server),
                        },
                        Err(_) => return,
                    };
                    let link = Link {
                        outbound: false,
                        transport,
                        local: stream.local_addr().ok(),
                    };
                    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => {
                            let conn = ctx2.next_conn();
                            ctx2.connected(side, transport, false);
                            run_conn(tls, conn, side, peer, link, None, Arc::clone(&ctx2)).await;
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

/// A connection's writer queue (both ends), from [`write_queue`].
pub type Chan = (WriteQueue, WriteRx);

/// Opens an outbound connection for `conn` (whose writer queue is `chan`) from our address on
/// `side` to `addr`; reports `Up` or `ConnectFailed`.
pub fn connect(
    ctx: Arc<TransportCtx>,
    conn: u64,
    side: Side,
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
            Side::Ext => 0,
            Side::Int => 1,
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
        let link = Link {
            outbound: true,
            transport,
            local: stream.local_addr().ok(),
        };
        match transport {
            NetTransport::Tcp => {
                ctx.connected(side, transport, true);
                run_conn(stream, conn, side, addr, link, Some(chan), ctx).await;
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
                        run_conn(tls, conn, side, addr, link, Some(chan), ctx).await;
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

/// Drives one connection: a writer task fed by its [`WriteQueue`], and the read/frame loop.
async fn run_conn<S>(
    stream: S,
    conn: u64,
    side: Side,
    peer: SocketAddr,
    link: Link,
    chan: Option<Chan>,
    ctx: Arc<TransportCtx>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    // Outbound connections use the queue the driver created when it dialled (messages may be
    // waiting in it); inbound ones get a new queue, handed to the driver in `Up`.
    let (writer, wrx) = chan.unwrap_or_else(|| write_queue(ctx.stream.write_queue_bytes));
    if ctx
        .events
        .send(NetEvent::Up {
            conn,
            side,
            peer,
            link,
            writer: writer.clone(),
        })
        .await
        .is_err()
    {
        return;
    }
    let mut wtask = tokio::spawn(write_loop(wr, wrx));
    let mut reader = Reader {
        conn,
        side,
        peer,
        ctx: &ctx,
        writer: &writer,
        framer: Framer::new(ctx.max_message),
        faults: 0,
    };
    let (reason, driver_closes) = reader.run(&mut rd).await;
    let (faults, garbage) = (reader.faults, reader.framer.garbage_bytes());
    if !driver_closes {
        writer.close();
    }
    // The writer ends once it has written what was queued before the close. A peer that does
    // not read cannot hold it: the queue's limit aborts it, and so does this bound.
    if tokio::time::timeout(ctx.stream.message_deadline, &mut wtask)
        .await
        .is_err()
    {
        writer.abort();
        let _ = wtask.await;
    }
    let reason = if writer.is_full() {
        CloseReason::WriteQueueFull
    } else {
        reason
    };
    drop(writer);
    if reason.is_hostile() && reason != CloseReason::WriteQueueFull {
        // Our FIN is out after the answer (if any). Bytes the peer is still sending would make
        // the kernel answer them with a reset that can destroy that answer before the peer
        // reads it, so read and discard them for a bounded time (a lingering close).
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(LINGER, async {
            while let Ok(n) = rd.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
    ctx.closed(side, reason);
    if reason.is_hostile() {
        tracing::warn!(
            conn,
            side = side.as_str(),
            %peer,
            reason = reason.as_str(),
            faults,
            garbage_bytes = garbage,
            "SIP connection closed"
        );
    } else {
        tracing::debug!(conn, side = side.as_str(), %peer, reason = reason.as_str(), "SIP connection closed");
    }
    let _ = ctx.events.send(NetEvent::Closed { conn, side }).await;
}

/// How long a connection closed for a peer's fault keeps reading (and discarding) after its
/// answer, so that answer is not destroyed by a TCP reset.
const LINGER: Duration = Duration::from_secs(1);

/// Writes queued commands until `Close`, an error, or an abort.
async fn write_loop<W>(mut wr: W, mut q: WriteRx)
where
    W: AsyncWrite + Unpin,
{
    let mut abort = q.shared.abort.subscribe();
    loop {
        let cmd = tokio::select! {
            biased;
            _ = abort.wait_for(|a| *a) => return,
            cmd = q.rx.recv() => cmd,
        };
        match cmd {
            Some(WriteCmd::Send(buf)) => {
                let n = buf.len();
                let res = tokio::select! {
                    biased;
                    _ = abort.wait_for(|a| *a) => return,
                    res = wr.write_all(&buf) => res,
                };
                q.shared.queued.fetch_sub(n, Ordering::AcqRel);
                if res.is_err() {
                    return;
                }
            }
            Some(WriteCmd::Close) | None => break,
        }
    }
    tokio::select! {
        biased;
        _ = abort.wait_for(|a| *a) => {}
        _ = wr.shutdown() => {}
    }
}

/// The read side of one connection.
struct Reader<'a> {
    conn: u64,
    side: Side,
    peer: SocketAddr,
    ctx: &'a TransportCtx,
    writer: &'a WriteQueue,
    framer: Framer,
    /// Stream faults in a row.
    faults: u32,
}

impl Reader<'_> {
    /// Reads and frames until the connection must close. Returns why, and whether the driver
    /// closes it (it was handed a fatal error, and queues its answer and a `Close`).
    async fn run<R>(&mut self, rd: &mut R) -> (CloseReason, bool)
    where
        R: AsyncRead + Unpin,
    {
        let limits = self.ctx.stream;
        let mut aborted = self.writer.aborted();
        let mut buf = vec![0u8; 16 * 1024];
        // When the first byte of the message under way arrived.
        let mut started: Option<tokio::time::Instant> = None;
        loop {
            let idle_at = tokio::time::Instant::now() + self.ctx.idle;
            let deadline_at = started.map(|t| t + limits.message_deadline);
            let wake = deadline_at.map_or(idle_at, |d| d.min(idle_at));
            let read = tokio::select! {
                biased;
                _ = aborted.wait_for(|a| *a) => return (CloseReason::Local, false),
                r = tokio::time::timeout_at(wake, rd.read(&mut buf)) => r,
            };
            let n = match read {
                Ok(Ok(0)) => return (CloseReason::Peer, false),
                Ok(Err(_)) => return (CloseReason::IoError, false),
                Err(_) if deadline_at.is_some_and(|d| d <= tokio::time::Instant::now()) => {
                    return (CloseReason::MessageDeadline, false);
                }
                Err(_) => return (CloseReason::Idle, false),
                Ok(Ok(n)) => n,
            };
            let arrived = tokio::time::Instant::now();
            self.framer.push(buf.get(..n).unwrap_or(&[]));
            let garbage_before = self.framer.garbage_lines();
            let mut framed = false;
            while let Some(f) = self.framer.next_frame() {
                framed = true;
                match f {
                    Ok(Frame::Message(m)) => {
                        self.faults = 0;
                        let ev = NetEvent::Message {
                            conn: self.conn,
                            side: self.side,
                            peer: self.peer,
                            msg: Box::new(m),
                        };
                        if self.ctx.events.send(ev).await.is_err() {
                            return (CloseReason::Local, false);
                        }
                    }
                    Ok(Frame::Ping) => match self.writer.send(b"\r\n".to_vec()) {
                        Ok(()) => {}
                        Err(QueueError::Full { .. }) => {
                            return (CloseReason::WriteQueueFull, false);
                        }
                        Err(QueueError::Closed) => return (CloseReason::Local, false),
                    },
                    Err(e) => {
                        let fatal = e.fatal;
                        if !fatal && !e.error.can_respond() {
                            self.faults = self.faults.saturating_add(1);
                        }
                        let reason = match e.error.fault() {
                            Fault::TooLarge { .. } => CloseReason::Oversize,
                            _ => CloseReason::Unframeable,
                        };
                        let ev = NetEvent::Invalid {
                            conn: self.conn,
                            side: self.side,
                            peer: self.peer,
                            error: Box::new(e),
                        };
                        if self.ctx.events.send(ev).await.is_err() {
                            return (CloseReason::Local, false);
                        }
                        if fatal {
                            // The driver answers (if it can) and then closes the writer.
                            return (reason, true);
                        }
                    }
                }
            }
            let garbage = self.framer.garbage_lines().saturating_sub(garbage_before);
            self.faults = self
                .faults
                .saturating_add(u32::try_from(garbage).unwrap_or(u32::MAX));
            if self.faults >= limits.max_faults {
                return (CloseReason::StreamFaults, false);
            }
            started = match (self.framer.is_partial(), started) {
                (false, _) => None,
                // A message ended in this read and the next one began in it too.
                (true, _) if framed => Some(arrived),
                (true, None) => Some(arrived),
                (true, Some(t)) => Some(t),
            };
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }

    /// What is queued before `Close` is written, then the stream is shut down (EOF).
    #[test]
    fn close_is_sequenced_after_queued_writes() {
        rt().block_on(async {
            let (ours, mut theirs) = tokio::io::duplex(1024);
            let (q, rx) = write_queue(4096);
            q.send(b"SIP/2.0 513 Message Too Large\r\n\r\n".to_vec())
                .unwrap_or_else(|e| panic!("{e}"));
            q.close();
            let task = tokio::spawn(write_loop(ours, rx));
            let mut got = Vec::new();
            theirs
                .read_to_end(&mut got)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got, b"SIP/2.0 513 Message Too Large\r\n\r\n");
            task.await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(q.queued(), 0);
            assert_eq!(q.send(b"late".to_vec()), Err(QueueError::Closed));
        });
    }

    /// A peer that never reads: the queue stops at its byte limit, refuses more, and aborts
    /// the writer (which is stuck in a write) without waiting for the peer.
    #[test]
    fn a_full_queue_aborts_the_connection() {
        rt().block_on(async {
            let (ours, _theirs) = tokio::io::duplex(64);
            let (q, rx) = write_queue(1000);
            let task = tokio::spawn(write_loop(ours, rx));
            let mut refused = None;
            for i in 0..100 {
                if let Err(e) = q.send(vec![b'x'; 100]) {
                    refused = Some((i, e));
                    break;
                }
                tokio::task::yield_now().await;
            }
            let (i, e) = refused.unwrap_or_else(|| panic!("the queue never filled"));
            assert_eq!(e, QueueError::Full { limit: 1000 });
            assert!(i <= 11, "at most the limit plus the one being written: {i}");
            assert!(q.is_full());
            task.await.unwrap_or_else(|e| panic!("{e}"));
            assert!(*q.aborted().borrow());
        });
    }

    /// The entry bound holds even for tiny messages.
    #[test]
    fn many_small_messages_are_bounded_too() {
        let (q, _rx) = write_queue(1 << 20);
        let accepted = (0..10_000)
            .take_while(|_| q.send(b"\r\n".to_vec()).is_ok())
            .count();
        assert_eq!(accepted, (1 << 20) / 256);
        assert!(q.is_full());
    }
}
