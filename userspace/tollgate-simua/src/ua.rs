//! A SIP user agent for the lab: listens (TCP or TLS), places calls, answers calls, hangs up.
//!
//! One task per connection reads frames with [`tollgate_sip::Framer`]; responses go to the
//! transaction waiting for them (by Call-ID and CSeq), requests inside a dialog go to that
//! call's task, new INVITEs are answered (180, then 200 after the ring time) and OPTIONS get 200.
//! In-dialog requests are sent on the connection the dialog was set up on; a BYE goes once more
//! on a new connection to the relay's Contact if that one is gone or resets before the answer
//! (a restart, or a failover that moved the relay's address to another host).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tollgate_sdp::{CryptoPolicy, Sdp};
use tollgate_sip::header::HeaderName;
use tollgate_sip::{Frame, Framer, Message, Method};
use tollgate_srtp::{KeyMaterial, Profile};

use crate::media::{MediaConfig, MediaReport, MediaStream};

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum UaError {
    /// Socket trouble.
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
    /// No answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The call was refused with this status.
    #[error("refused with {0} {1}")]
    Rejected(u16, String),
    /// The peer said something this UA cannot use.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The connection closed.
    #[error("connection closed")]
    Closed,
}

/// TLS for an endpoint: server side for incoming connections, client side for outgoing ones.
#[derive(Debug, Clone)]
pub struct UaTls {
    /// For connections we accept.
    pub server: Arc<rustls::ServerConfig>,
    /// For connections we open.
    pub client: Arc<rustls::ClientConfig>,
}

impl UaTls {
    /// TLS from PEM files: our certificate and key, and the CA that signs our peers.
    pub fn from_pem(
        cert: &std::path::Path,
        key: &std::path::Path,
        ca: &std::path::Path,
    ) -> Result<UaTls, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| e.to_string())?
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| e.to_string())?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).map_err(|e| e.to_string())? {
            roots
                .add(c.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::clone(&roots),
            Arc::clone(&provider),
        )
        .build()
        .map_err(|e| e.to_string())?;
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| e.to_string())?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(Arc::unwrap_or_clone(roots))
            .with_client_auth_cert(certs, key)
            .map_err(|e| e.to_string())?;
        Ok(UaTls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// How an endpoint behaves.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Name for logs and SIP user parts.
    pub name: String,
    /// Where we listen for SIP (and the address we dial from).
    pub sip_listen: SocketAddr,
    /// TLS (the internal side, and a gateway on a TLS trunk) or plain TCP (None).
    pub tls: Option<UaTls>,
    /// Our media address.
    pub media_ip: IpAddr,
    /// First media port we use (then +2 per call).
    pub media_port_base: u16,
    /// SDES-SRTP (RTP/SAVP with a=crypto) rather than RTP/AVP.
    pub srtp: bool,
    /// Time between 180 and 200 for incoming calls.
    pub ring: Duration,
    /// Send media (set false for signalling-only load).
    pub media: bool,
    /// The TLS name to verify when this endpoint opens a connection to the relay for an
    /// in-dialog request because the dialog's connection is gone (the relay restarted).
    pub peer_tls_name: String,
}

type TxKey = (String, u32, String);
/// A connection's write queue.
type ConnTx = mpsc::UnboundedSender<Vec<u8>>;
/// An in-dialog request and the connection it came on.
type DialogMsg = (Message, ConnTx);

struct Inner {
    cfg: EndpointConfig,
    next_port: AtomicU16,
    next_id: AtomicU64,
    conns: Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>>>,
    transactions: Mutex<HashMap<TxKey, mpsc::UnboundedSender<Message>>>,
    dialogs: Mutex<HashMap<String, mpsc::UnboundedSender<DialogMsg>>>,
    incoming: mpsc::UnboundedSender<Call>,
    /// INVITEs received (answered or not).
    pub invites_received: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn rand_hex() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A simulated SIP endpoint.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
    incoming: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Call>>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.inner.cfg.name)
            .finish_non_exhaustive()
    }
}

/// One established call.
#[derive(Debug)]
pub struct Call {
    /// Call-ID on this endpoint's dialog.
    pub call_id: String,
    /// Whether we placed it.
    pub outgoing: bool,
    /// INVITE to 200 (outgoing) or INVITE to ACK (incoming).
    pub setup: Duration,
    /// The other party's number, as this endpoint saw it (From for incoming, To for outgoing).
    pub remote_user: String,
    /// The number dialled (Request-URI user), as this endpoint saw it.
    pub called_user: String,
    media: Option<MediaStream>,
    hangup: Option<oneshot::Sender<oneshot::Sender<Result<(), UaError>>>>,
    remote_bye: Option<oneshot::Receiver<()>>,
}

/// How a call ended, and what its media saw.
#[derive(Debug, Clone, Copy)]
pub struct CallReport {
    /// Media statistics (zero when media was off).
    pub media: MediaReport,
    /// Whether this side hung up.
    pub hung_up_here: bool,
}

/// What a dialog's call handle reports about how it began.
struct CallFacts {
    /// We sent the INVITE.
    outgoing: bool,
    /// INVITE to answer.
    setup: Duration,
    /// The other party's user part.
    remote_user: String,
    /// The user part that was called.
    called_user: String,
}

impl Endpoint {
    /// Starts listening.
    pub async fn start(cfg: EndpointConfig) -> Result<Endpoint, UaError> {
        let listener = TcpListener::bind(cfg.sip_listen)
            .await
            .map_err(|e| UaError::Io("listen", e))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            next_port: AtomicU16::new(cfg.media_port_base),
            next_id: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            transactions: Mutex::new(HashMap::new()),
            dialogs: Mutex::new(HashMap::new()),
            incoming: tx,
            invites_received: AtomicU64::new(0),
            cfg,
        });
        let i2 = Arc::clone(&inner);
        tokio::spawn(async move {
            while let Ok((s, peer)) = listener.accept().await {
                let _ = s.set_nodelay(true);
                let i3 = Arc::clone(&i2);
                tokio::spawn(async move {
                    match i3.cfg.tls.clone() {
                        Some(t) => {
                            let acc = tokio_rustls::TlsAcceptor::from(t.server);
                            if let Ok(tls) = acc.accept(s).await {
                                run_conn(i3, tls, peer, None).await;
                            }
                        }
                        None => run_conn(i3, s, peer, None).await,
                    }
                });
            }
        });
        Ok(Endpoint {
            inner,
            incoming: Arc::new(tokio::sync::Mutex::new(rx)),
        })
    }

    /// The next call that was offered to us and answered.
    pub async fn next_call(&self, timeout: Duration) -> Option<Call> {
        let mut rx = self.incoming.lock().await;
        tokio::time::timeout(timeout, rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// INVITEs received so far.
    pub fn invites_received(&self) -> u64 {
        self.inner.invites_received.load(Ordering::Relaxed)
    }

    async fn connection(
        &self,
        to: SocketAddr,
        server_name: &str,
    ) -> Result<mpsc::UnboundedSender<Vec<u8>>, UaError> {
        self.connection_to(to, server_name, true).await
    }

    /// A connection to `to`: one already open (when `reuse`), else a new one.
    async fn connection_to(
        &self,
        to: SocketAddr,
        server_name: &str,
        reuse: bool,
    ) -> Result<mpsc::UnboundedSender<Vec<u8>>, UaError> {
        if reuse && let Some(c) = lock(&self.inner.conns).get(&to).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let sock = if to.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| UaError::Io("socket", e))?;
        sock.bind(SocketAddr::new(self.inner.cfg.sip_listen.ip(), 0))
            .map_err(|e| UaError::Io("bind", e))?;
        let s = tokio::time::timeout(Duration::from_secs(5), sock.connect(to))
            .await
            .map_err(|_| UaError::Timeout("TCP connect"))?
            .map_err(|e| UaError::Io("connect", e))?;
        let _ = s.set_nodelay(true);
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::clone(&self.inner);
        match self.inner.cfg.tls.clone() {
            Some(t) => {
                let name = rustls_pki_types::ServerName::try_from(server_name.to_owned())
                    .map_err(|e| UaError::Protocol(format!("server name: {e}")))?;
                let tls = tokio_rustls::TlsConnector::from(t.client)
                    .connect(name, s)
                    .await
                    .map_err(|e| UaError::Io("TLS handshake", e))?;
                tokio::spawn(run_conn(inner, tls, to, Some((tx.clone(), rx))));
            }
            None => {
                tokio::spawn(run_conn(inner, s, to, Some((tx.clone(), rx))));
            }
        }
        lock(&self.inner.conns).insert(to, tx.clone());
        Ok(tx)
    }

    /// A connection to the host and port of `target` (a SIP URI: the relay's Contact); a new
    /// one unless `reuse` (an open one may be just as stale as the one that failed).
    async fn reconnect(
        &self,
        target: &str,
        reuse: bool,
    ) -> Result<mpsc::UnboundedSender<Vec<u8>>, UaError> {
        let uri = tollgate_sip::Uri::parse(target)
            .map_err(|e| UaError::Protocol(format!("target {target}: {e}")))?;
        let addr = match &uri {
            tollgate_sip::Uri::Sip(u) => u
                .host
                .ip_addr()
                .map(|ip| SocketAddr::new(ip, u.port.unwrap_or(5060))),
            _ => None,
        }
        .ok_or_else(|| UaError::Protocol(format!("target {target}: no IP address and port")))?;
        let name = self.inner.cfg.peer_tls_name.clone();
        self.connection_to(addr, &name, reuse).await
    }

    fn via(&self, branch: &str) -> String {
        let t = if self.inner.cfg.tls.is_some() {
            "TLS"
        } else {
            "TCP"
        };
        format!(
            "SIP/2.0/{t} {};branch=z9hG4bK{branch}",
            self.inner.cfg.sip_listen
        )
    }

    fn contact(&self) -> String {
        let t = if self.inner.cfg.tls.is_some() {
            "tls"
        } else {
            "tcp"
        };
        format!(
            "<sip:{}@{};transport={t}>",
            self.inner.cfg.name, self.inner.cfg.sip_listen
        )
    }

    /// Places a call from `from` to `to` (numbers) through `target` (Tollgate's listener),
    /// waits for the answer, sends ACK and starts media.
    pub async fn call(
        &self,
        target: SocketAddr,
        server_name: &str,
        from: &str,
        to: &str,
        timeout: Duration,
    ) -> Result<Call, UaError> {
        let started = Instant::now();
        let conn = self.connection(target, server_name).await?;
        let cfg = &self.inner.cfg;
        let call_id = format!(
            "{}-{}@{}",
            rand_hex(),
            self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            cfg.sip_listen.ip()
        );
        let tag = rand_hex();
        let (sock, port) = self.media_socket().await?;
        let ours = cfg.srtp.then(|| {
            KeyMaterial::generate(Profile::Aes128CmHmacSha1_80, |b| {
                let _ = getrandom::fill(b);
            })
        });
        let sdp = offer_sdp(&cfg.name, cfg.media_ip, port, ours.as_ref());
        let ruri = format!("sip:{to}@{target}");
        let from_h = format!("<sip:{from}@{}>;tag={tag}", cfg.sip_listen.ip());
        let to_h = format!("<sip:{to}@{}>", target.ip());
        let branch = rand_hex();
        let invite = format!(
            "INVITE {ruri} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {from_h}\r\nTo: {to_h}\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: {}\r\nSupported: timer\r\nAllow: INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            self.via(&branch),
            self.contact(),
            sdp.len()
        );
        let (rtx, mut rrx) = mpsc::unbounded_channel();
        lock(&self.inner.transactions).insert((call_id.clone(), 1, "INVITE".into()), rtx);
        let (dtx, drx) = mpsc::unbounded_channel();
        lock(&self.inner.dialogs).insert(call_id.clone(), dtx);
        let cleanup = |inner: &Inner| {
            lock(&inner.transactions).remove(&(call_id.clone(), 1, "INVITE".into()));
        };
        conn.send(invite.into_bytes())
            .map_err(|_| UaError::Closed)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let answer = loop {
            let r = tokio::time::timeout_at(deadline, rrx.recv()).await;
            let Ok(Some(resp)) = r else {
                cleanup(&self.inner);
                lock(&self.inner.dialogs).remove(&call_id);
                return Err(if r.is_err() {
                    UaError::Timeout("answer")
                } else {
                    UaError::Closed
                });
            };
            let code = resp.status().unwrap_or(0);
            if code < 200 {
                continue;
            }
            if code >= 300 {
                // ACK for a non-2xx final response: same branch (RFC 3261 §17.1.1.3).
                let to_tagged = resp
                    .headers
                    .get_value(&HeaderName::To)
                    .unwrap_or_default()
                    .to_owned();
                let ack = format!(
                    "ACK {ruri} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {from_h}\r\nTo: {to_tagged}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                    self.via(&branch)
                );
                let _ = conn.send(ack.into_bytes());
                cleanup(&self.inner);
                lock(&self.inner.dialogs).remove(&call_id);
                return Err(UaError::Rejected(
                    code,
                    resp.reason().unwrap_or_default().to_owned(),
                ));
            }
            break resp;
        };
        cleanup(&self.inner);
        let setup = started.elapsed();
        let to_tagged = answer
            .headers
            .get_value(&HeaderName::To)
            .unwrap_or_default()
            .to_owned();
        let remote_target = answer
            .headers
            .contacts()
            .next()
            .map(|c| c.uri.to_string())
            .unwrap_or_else(|| ruri.clone());
        let ack = format!(
            "ACK {remote_target} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {from_h}\r\nTo: {to_tagged}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            self.via(&rand_hex())
        );
        conn.send(ack.into_bytes()).map_err(|_| UaError::Closed)?;
        let media = self.start_media(sock, &answer.body, ours, None, call_hash(&call_id))?;
        let d = DialogState {
            call_id: call_id.clone(),
            local: from_h,
            remote: to_tagged,
            target: remote_target,
            cseq: 1,
            sdp,
        };
        Ok(self.spawn_dialog(
            d,
            conn,
            drx,
            media,
            CallFacts {
                outgoing: true,
                setup,
                remote_user: to.to_owned(),
                called_user: to.to_owned(),
            },
        ))
    }

    async fn media_socket(&self) -> Result<(UdpSocket, u16), UaError> {
        loop {
            let p = self.inner.next_port.fetch_add(2, Ordering::Relaxed);
            if p >= 65000 {
                self.inner
                    .next_port
                    .store(self.inner.cfg.media_port_base, Ordering::Relaxed);
                continue;
            }
            match UdpSocket::bind(SocketAddr::new(self.inner.cfg.media_ip, p)).await {
                Ok(s) => return Ok((s, p)),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(UaError::Io("media bind", e)),
            }
        }
    }

    /// Starts media toward what the peer's SDP says. `theirs` is the peer's key when already
    /// chosen (incoming calls); for outgoing calls it is taken from the answer.
    fn start_media(
        &self,
        sock: UdpSocket,
        peer_sdp: &[u8],
        ours: Option<KeyMaterial>,
        theirs: Option<KeyMaterial>,
        ssrc: u32,
    ) -> Result<Option<MediaStream>, UaError> {
        if !self.inner.cfg.media {
            return Ok(None);
        }
        let sdp = Sdp::parse(peer_sdp).map_err(|e| UaError::Protocol(format!("peer SDP: {e}")))?;
        let m = sdp
            .media
            .first()
            .ok_or_else(|| UaError::Protocol("no m= line".into()))?;
        let ip = sdp
            .media_connection(0)
            .and_then(|c| c.ip())
            .ok_or_else(|| UaError::Protocol("no c= address".into()))?;
        let remote = SocketAddr::new(ip, m.port);
        let srtp = match ours {
            Some(o) => {
                let t = match theirs {
                    Some(t) => t,
                    None => {
                        let cryptos = m
                            .crypto()
                            .map_err(|e| UaError::Protocol(format!("a=crypto: {e}")))?;
                        let (_, km) = CryptoPolicy::default()
                            .select(&cryptos)
                            .map_err(|r| UaError::Protocol(format!("no usable a=crypto: {r:?}")))?;
                        km
                    }
                };
                Some((o, t))
            }
            None => None,
        };
        let cfg = MediaConfig {
            remote,
            srtp,
            ssrc,
            ptime: Duration::from_millis(20),
        };
        MediaStream::start(sock, cfg)
            .map(Some)
            .map_err(|e| UaError::Protocol(format!("SRTP: {e}")))
    }

    fn spawn_dialog(
        &self,
        mut d: DialogState,
        conn: mpsc::UnboundedSender<Vec<u8>>,
        mut drx: mpsc::UnboundedReceiver<DialogMsg>,
        media: Option<MediaStream>,
        facts: CallFacts,
    ) -> Call {
        let CallFacts {
            outgoing,
            setup,
            remote_user,
            called_user,
        } = facts;
        let (htx, mut hrx) = oneshot::channel::<oneshot::Sender<Result<(), UaError>>>();
        let (btx, brx) = oneshot::channel();
        let ep = self.clone();
        let call_id = d.call_id.clone();
        tokio::spawn(async move {
            let mut btx = Some(btx);
            loop {
                tokio::select! {
                    m = drx.recv() => {
                        let Some((req, via_conn)) = m else { break };
                        let method = req.method().cloned();
                        match method {
                            Some(Method::Bye) => {
                                let _ = via_conn.send(response(&req, 200, "OK", None, None));
                                if let Some(b) = btx.take() { let _ = b.send(()); }
                                break;
                            }
                            Some(Method::Ack) => {}
                            Some(Method::Invite) | Some(Method::Update) => {
                                // Session refresh or re-offer: answer with our current SDP.
                                let _ = via_conn.send(response(&req, 200, "OK", Some(&d.sdp), Some(&ep.contact())));
                            }
                            Some(_) => { let _ = via_conn.send(response(&req, 200, "OK", None, None)); }
                            None => {}
                        }
                    }
                    h = &mut hrx => {
                        let Ok(reply) = h else { break };
                        d.cseq += 1;
                        let cseq = d.cseq;
                        let bye = format!(
                            "BYE {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} BYE\r\nContent-Length: 0\r\n\r\n",
                            d.target, ep.via(&rand_hex()), d.local, d.remote, d.call_id
                        );
                        let (rtx, mut rrx) = mpsc::unbounded_channel();
                        lock(&ep.inner.transactions).insert((d.call_id.clone(), cseq, "BYE".into()), rtx);
                        // The dialog's connection died with the relay (a restart): a new one
                        // to the relay's Contact, as a real UA re-establishes it.
                        let mut conn = if conn.is_closed() {
                            match ep.reconnect(&d.target, true).await {
                                Ok(c) => c,
                                Err(_) => conn.clone(),
                            }
                        } else {
                            conn.clone()
                        };
                        let mut r = Err(UaError::Closed);
                        for attempt in 0..2 {
                            r = if conn.send(bye.clone().into_bytes()).is_err() {
                                Err(UaError::Closed)
                            } else {
                                tokio::select! {
                                    biased;
                                    m = tokio::time::timeout(Duration::from_secs(5), rrx.recv()) => match m {
                                        Ok(Some(resp)) if resp.status().is_some_and(|c| (200..300).contains(&c)) => Ok(()),
                                        Ok(Some(resp)) => Err(UaError::Rejected(resp.status().unwrap_or(0), "BYE".into())),
                                        Ok(None) => Err(UaError::Closed),
                                        Err(_) => Err(UaError::Timeout("BYE response")),
                                    },
                                    () = conn.closed() => Err(UaError::Closed),
                                }
                            };
                            // The connection was stale: the relay's address moved to another
                            // host (a failover), whose kernel reset it instead of delivering
                            // the BYE. Once more on a new connection, as a SIP stack does when
                            // a connection it reuses turns out dead.
                            if attempt == 0 && matches!(r, Err(UaError::Closed)) {
                                match ep.reconnect(&d.target, false).await {
                                    Ok(c) => {
                                        conn = c;
                                        continue;
                                    }
                                    Err(e) => {
                                        r = Err(e);
                                        break;
                                    }
                                }
                            }
                            break;
                        }
                        lock(&ep.inner.transactions).remove(&(d.call_id.clone(), cseq, "BYE".into()));
                        let _ = reply.send(r);
                        break;
                    }
                }
            }
            lock(&ep.inner.dialogs).remove(&d.call_id);
        });
        Call {
            call_id,
            outgoing,
            setup,
            remote_user,
            called_user,
            media,
            hangup: Some(htx),
            remote_bye: Some(brx),
        }
    }
}

struct DialogState {
    call_id: String,
    local: String,
    remote: String,
    target: String,
    cseq: u32,
    sdp: String,
}

fn call_hash(s: &str) -> u32 {
    s.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    })
}

impl Call {
    /// Media statistics so far.
    pub fn media_report(&self) -> MediaReport {
        self.media
            .as_ref()
            .map(MediaStream::report)
            .unwrap_or_default()
    }

    /// Sends BYE and waits for its 200; stops media.
    pub async fn hangup(mut self) -> Result<CallReport, UaError> {
        let (tx, rx) = oneshot::channel();
        let h = self.hangup.take().ok_or(UaError::Closed)?;
        h.send(tx).map_err(|_| UaError::Closed)?;
        let r = rx.await.map_err(|_| UaError::Closed)?;
        let media = match self.media.take() {
            Some(m) => m.stop().await,
            None => MediaReport::default(),
        };
        r.map(|()| CallReport {
            media,
            hung_up_here: true,
        })
    }

    /// Waits for the other side's BYE (answered 200) and stops media.
    pub async fn wait_bye(mut self, timeout: Duration) -> Result<CallReport, UaError> {
        let b = self.remote_bye.take().ok_or(UaError::Closed)?;
        tokio::time::timeout(timeout, b)
            .await
            .map_err(|_| UaError::Timeout("BYE"))?
            .map_err(|_| UaError::Closed)?;
        let media = match self.media.take() {
            Some(m) => m.stop().await,
            None => MediaReport::default(),
        };
        Ok(CallReport {
            media,
            hung_up_here: false,
        })
    }
}

fn offer_sdp(user: &str, ip: IpAddr, port: u16, key: Option<&KeyMaterial>) -> String {
    let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let proto = if key.is_some() { "RTP/SAVP" } else { "RTP/AVP" };
    let mut s = format!(
        "v=0\r\no={user} 1 1 IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\nm=audio {port} {proto} 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    if let Some(k) = key {
        s.push_str(&format!(
            "a=crypto:1 {} {}\r\n",
            k.profile().sdes_name(),
            k.to_sdes()
        ));
    }
    s
}

/// A response to `req` (Via, From, To, Call-ID, CSeq copied; a To tag added if absent).
fn response(
    req: &Message,
    code: u16,
    reason: &str,
    sdp: Option<&str>,
    contact: Option<&str>,
) -> Vec<u8> {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for h in req.headers.get_all(&HeaderName::Via) {
        s.push_str(&format!("Via: {}\r\n", h.value()));
    }
    for n in [HeaderName::From, HeaderName::CallId, HeaderName::CSeq] {
        if let Some(v) = req.headers.get_value(&n) {
            s.push_str(&format!("{}: {v}\r\n", n.as_str()));
        }
    }
    let to = req.headers.get_value(&HeaderName::To).unwrap_or_default();
    if to.contains(";tag=") || code == 100 {
        s.push_str(&format!("To: {to}\r\n"));
    } else {
        s.push_str(&format!(
            "To: {to};tag={}\r\n",
            call_hash(req.call_id().unwrap_or_default())
        ));
    }
    if let Some(c) = contact {
        s.push_str(&format!("Contact: {c}\r\n"));
    }
    match sdp {
        Some(b) => s.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => s.push_str("Content-Length: 0\r\n\r\n"),
    }
    s.into_bytes()
}

async fn run_conn<S>(
    inner: Arc<Inner>,
    stream: S,
    peer: SocketAddr,
    chan: Option<(ConnTx, mpsc::UnboundedReceiver<Vec<u8>>)>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = chan.unwrap_or_else(mpsc::unbounded_channel);
    let w = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    let mut framer = Framer::new(1 << 16);
    let mut buf = vec![0u8; 16384];
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        framer.push(&buf[..n]);
        while let Some(f) = framer.next_frame() {
            match f {
                Ok(Frame::Message(m)) => dispatch(&inner, m, &tx, peer),
                Ok(Frame::Ping) => {
                    let _ = tx.send(b"\r\n".to_vec());
                }
                Err(e) => tracing::warn!(%peer, error = %e, "sim UA: bad frame"),
            }
        }
        if framer.is_dead() {
            break;
        }
    }
    lock(&inner.conns).retain(|_, c| !c.same_channel(&tx));
    drop(tx);
    w.abort();
}

fn dispatch(
    inner: &Arc<Inner>,
    m: Message,
    conn: &mpsc::UnboundedSender<Vec<u8>>,
    peer: SocketAddr,
) {
    let call_id = m.call_id().unwrap_or_default().to_owned();
    if !m.is_request() {
        let Some(cseq) = m.cseq() else { return };
        let key = (call_id, cseq.seq, cseq.method.as_str().to_owned());
        if let Some(t) = lock(&inner.transactions).get(&key) {
            let _ = t.send(m);
        }
        return;
    }
    let Some(method) = m.method().cloned() else {
        return;
    };
    let in_dialog = m.to().and_then(|t| t.tag()).is_some();
    if let Some(d) = lock(&inner.dialogs).get(&call_id) {
        let _ = d.send((m, conn.clone()));
        return;
    }
    match method {
        Method::Options => {
            let _ = conn.send(response(&m, 200, "OK", None, None));
        }
        Method::Invite if !in_dialog => {
            inner.invites_received.fetch_add(1, Ordering::Relaxed);
            let ep = Endpoint {
                inner: Arc::clone(inner),
                incoming: Arc::new(tokio::sync::Mutex::new(mpsc::unbounded_channel().1)),
            };
            let conn = conn.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(ep, m, conn).await {
                    tracing::warn!(%peer, error = %e, "sim UA: incoming call failed");
                }
            });
        }
        Method::Ack => {}
        _ => {
            let _ = conn.send(response(
                &m,
                481,
                "Call/Transaction Does Not Exist",
                None,
                None,
            ));
        }
    }
}

async fn answer(
    ep: Endpoint,
    invite: Message,
    conn: mpsc::UnboundedSender<Vec<u8>>,
) -> Result<(), UaError> {
    let started = Instant::now();
    let cfg = ep.inner.cfg.clone();
    let call_id = invite.call_id().unwrap_or_default().to_owned();
    let offer = Sdp::parse(&invite.body).map_err(|e| UaError::Protocol(format!("offer: {e}")))?;
    let theirs = if cfg.srtp {
        let m = offer
            .media
            .first()
            .ok_or_else(|| UaError::Protocol("no m= line".into()))?;
        let cryptos = m
            .crypto()
            .map_err(|e| UaError::Protocol(format!("a=crypto: {e}")))?;
        let (c, km) = CryptoPolicy::default().select(&cryptos).map_err(|_| {
            let _ = conn.send(response(&invite, 488, "Not Acceptable Here", None, None));
            UaError::Protocol("no acceptable crypto".into())
        })?;
        Some((c.tag, km))
    } else {
        None
    };
    let (sock, port) = ep.media_socket().await?;
    let ours = theirs.as_ref().map(|(_, km)| {
        KeyMaterial::generate(km.profile(), |b| {
            let _ = getrandom::fill(b);
        })
    });
    let mut sdp = offer_sdp(&cfg.name, cfg.media_ip, port, None);
    if let (Some((tag, _)), Some(k)) = (&theirs, &ours) {
        sdp = sdp.replace("RTP/AVP", "RTP/SAVP");
        sdp.push_str(&format!(
            "a=crypto:{tag} {} {}\r\n",
            k.profile().sdes_name(),
            k.to_sdes()
        ));
    }
    let (dtx, mut drx) = mpsc::unbounded_channel();
    lock(&ep.inner.dialogs).insert(call_id.clone(), dtx);
    let _ = conn.send(response(&invite, 180, "Ringing", None, Some(&ep.contact())));
    tokio::time::sleep(cfg.ring).await;
    let ok = response(&invite, 200, "OK", Some(&sdp), Some(&ep.contact()));
    let to_tagged = Message::parse(&ok)
        .ok()
        .and_then(|r| r.headers.get_value(&HeaderName::To).map(str::to_owned))
        .unwrap_or_default();
    conn.send(ok).map_err(|_| UaError::Closed)?;
    // Wait for the ACK (other requests before it are not expected from Tollgate).
    let ack = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match drx.recv().await {
                Some((m, _)) if m.method() == Some(&Method::Ack) => return Ok(()),
                Some((m, c))
                    if m.method() == Some(&Method::Bye) || m.method() == Some(&Method::Cancel) =>
                {
                    let _ = c.send(response(&m, 200, "OK", None, None));
                    return Err(UaError::Protocol("call ended before ACK".into()));
                }
                Some(_) => {}
                None => return Err(UaError::Closed),
            }
        }
    })
    .await
    .map_err(|_| UaError::Timeout("ACK"))?;
    if let Err(e) = ack {
        lock(&ep.inner.dialogs).remove(&call_id);
        return Err(e);
    }
    let media = ep.start_media(
        sock,
        &invite.body,
        ours,
        theirs.map(|(_, k)| k),
        call_hash(&call_id),
    )?;
    let remote_target = invite
        .headers
        .contacts()
        .next()
        .map(|c| c.uri.to_string())
        .unwrap_or_default();
    let from = invite
        .headers
        .get_value(&HeaderName::From)
        .unwrap_or_default()
        .to_owned();
    let remote_user = invite
        .from()
        .and_then(|f| f.uri.as_sip().and_then(|u| u.user.clone()))
        .unwrap_or_default();
    let called = invite
        .request_uri()
        .and_then(|u| u.as_sip().and_then(|u| u.user.clone()))
        .unwrap_or_default();
    let d = DialogState {
        call_id,
        local: to_tagged,
        remote: from,
        target: remote_target,
        cseq: 0,
        sdp,
    };
    let call = ep.spawn_dialog(
        d,
        conn,
        drx,
        media,
        CallFacts {
            outgoing: false,
            setup: started.elapsed(),
            remote_user,
            called_user: called,
        },
    );
    let _ = ep.inner.incoming.send(call);
    Ok(())
}
