//! RFC 3261 §17 transactions for reliable transports (TCP/TLS), as sans-IO state machines,
//! and the [`TransactionLayer`] that matches messages to them (§17.1.3, §17.2.3 with the
//! RFC 2543 fallback) and runs their timers.
//!
//! Reliable-transport timer values: A, E and G (retransmissions) are never set; B = F = H =
//! 64·T1; D = I = J = K = 0, i.e. the transaction terminates at once instead of lingering. The
//! INVITE transactions follow RFC 6026: a 2xx moves them to *Accepted* for 64·T1 (Timer L on
//! the server, Timer M on the client), so 2xx retransmissions and forked 2xx responses reach the
//! TU and the ACK for a 2xx is handed to the TU.
//!
//! Driving it: feed received messages with [`TransactionLayer::on_message`], requests and
//! responses the TU wants to send with [`TransactionLayer::send_request`] /
//! [`TransactionLayer::send_response`], and the clock with [`TransactionLayer::on_timeout`]
//! (call it at [`TransactionLayer::next_deadline`], or whenever); then drain
//! [`TransactionLayer::poll_action`]. `now` is a [`std::time::Instant`] supplied by the caller.

mod state;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::message::{Message, StartLine};
use crate::types::{CSeq, Method};

use state::Tx;
pub use state::{Kind, State};

/// Handle of a transaction, unique within a [`TransactionLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u64);

/// Opaque handle of the transport flow (connection) a message came from or goes to. Chosen by
/// the driver; the layer only carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransportFlow(pub u64);

/// Transaction timers (RFC 3261 Table 4, RFC 6026).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// INVITE client transaction timeout (64·T1).
    B,
    /// Wait time for response retransmits (0 on reliable transports).
    D,
    /// Non-INVITE client transaction timeout (64·T1).
    F,
    /// Wait time for ACK receipt (64·T1).
    H,
    /// Wait time for ACK retransmits (0 on reliable transports).
    I,
    /// Wait time for non-INVITE request retransmits (0 on reliable transports).
    J,
    /// Wait time for response retransmits (0 on reliable transports).
    K,
    /// RFC 6026: server INVITE Accepted state lifetime (64·T1).
    L,
    /// RFC 6026: client INVITE Accepted state lifetime (64·T1).
    M,
}

/// Configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionConfig {
    /// T1, the RTT estimate (500 ms by default).
    pub t1: Duration,
    /// Server INVITE transactions send 100 Trying as soon as they are created.
    pub auto_trying: bool,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        TransactionConfig {
            t1: Duration::from_millis(500),
            auto_trying: true,
        }
    }
}

impl TransactionConfig {
    /// 64·T1.
    pub fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// What the layer asks its driver and TU to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `msg` on `flow`. `tx` is `None` for messages sent outside a transaction.
    Send {
        /// Owning transaction.
        tx: Option<TxId>,
        /// Where to send.
        flow: TransportFlow,
        /// The message.
        msg: Message,
    },
    /// A new request for the TU; a server transaction `tx` now exists for it. For CANCEL,
    /// `cancels` is the INVITE server transaction it matches (§9.2), if any: the TU answers
    /// the CANCEL 200 and the INVITE 487 (or the CANCEL 481 when `None`).
    Request {
        /// The new server transaction.
        tx: TxId,
        /// Where it came from (responses go back here).
        flow: TransportFlow,
        /// The request.
        msg: Message,
        /// For CANCEL: the INVITE server transaction it targets.
        cancels: Option<TxId>,
    },
    /// A response for the TU on client transaction `tx`.
    Response {
        /// The client transaction.
        tx: TxId,
        /// The response.
        msg: Message,
    },
    /// An ACK for a 2xx (handled by the dialog/TU, never by a transaction). `tx` is the INVITE
    /// server transaction in the Accepted state it matched, if any.
    Ack {
        /// Matched server INVITE transaction (RFC 6026), if still alive.
        tx: Option<TxId>,
        /// Where it came from.
        flow: TransportFlow,
        /// The ACK.
        msg: Message,
    },
    /// A response that matches no client transaction (e.g. a 2xx retransmission after the
    /// transaction ended). A UA core ACKs-and-BYEs an unexpected 2xx to INVITE.
    StrayResponse {
        /// Where it came from.
        flow: TransportFlow,
        /// The response.
        msg: Message,
    },
    /// A timer was armed (informational: the layer keeps its own timer queue).
    SetTimer {
        /// The transaction.
        tx: TxId,
        /// Which timer.
        timer: TimerKind,
        /// Its deadline.
        at: Instant,
    },
    /// The transaction timed out (Timer B, F or H): the TU treats it as a 408 (B/F) or as an
    /// ACK that never came (H).
    Timeout {
        /// The transaction.
        tx: TxId,
        /// The timer that fired.
        timer: TimerKind,
    },
    /// The transport reported a failure for this transaction's flow (§17.1.4, §17.2.4).
    TransportError {
        /// The transaction.
        tx: TxId,
    },
    /// The transaction is gone; its id will not appear again.
    Terminated {
        /// The transaction.
        tx: TxId,
    },
}

/// Why a TU request to the layer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The request has no Via or its top Via has no branch.
    #[error("request has no top Via branch")]
    NoBranch,
    /// The request lacks CSeq.
    #[error("request has no CSeq")]
    NoCSeq,
    /// ACK is not sent through a transaction (ACK for 2xx is end-to-end, §13.2.2.4).
    #[error("ACK is not a transaction; use send_stateless")]
    AckNotTransaction,
    /// A client transaction with this branch and method already exists.
    #[error("a transaction with branch {0} already exists")]
    Duplicate(String),
    /// No such transaction (it ended or never existed).
    #[error("no transaction {0:?}")]
    Unknown(TxId),
    /// `send_request` got a response or `send_response` a request.
    #[error("wrong message kind for this operation")]
    WrongKind,
    /// The transaction's state does not allow this (e.g. a response after the final one).
    #[error("transaction {tx:?} in state {state:?} cannot send this response")]
    BadState {
        /// The transaction.
        tx: TxId,
        /// Its state.
        state: State,
    },
}

/// Server transaction matching key (§17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ServerKey {
    Rfc3261 {
        branch: String,
        sent_by: String,
        method: Method,
    },
    Rfc2543 {
        ruri: String,
        to_tag: String,
        from_tag: String,
        call_id: String,
        cseq: u32,
        method: Method,
        top_via: String,
    },
}

/// Client transaction matching key (§17.1.3): branch and CSeq method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    branch: String,
    method: Method,
}

fn server_key(
    req: &Message,
    method_override: Option<Method>,
    to_tag_override: Option<&str>,
) -> Option<ServerKey> {
    let method = method_override.or_else(|| req.method().cloned())?;
    let via = req.top_via()?;
    if via.is_rfc3261() {
        return Some(ServerKey::Rfc3261 {
            branch: via.branch()?.to_owned(),
            sent_by: via.sent_by_key(),
            method,
        });
    }
    Some(ServerKey::Rfc2543 {
        ruri: req.request_uri()?.to_string(),
        to_tag: to_tag_override
            .map(str::to_owned)
            .unwrap_or_else(|| req.to().and_then(|t| t.tag()).unwrap_or("").to_owned()),
        from_tag: req.from().and_then(|f| f.tag()).unwrap_or("").to_owned(),
        call_id: req.call_id()?.to_owned(),
        cseq: req.cseq()?.seq,
        method,
        top_via: via.to_string(),
    })
}

/// Builds the CANCEL for a pending INVITE (RFC 3261 §9.1): same Request-URI, Call-ID, From,
/// To, CSeq number and Route; a single Via equal to the INVITE's top Via.
pub fn cancel_for(invite: &Message) -> Option<Message> {
    let StartLine::Request { uri, .. } = &invite.start else {
        return None;
    };
    let mut c = Message::new(StartLine::Request {
        method: Method::Cancel,
        uri: uri.clone(),
    });
    c.headers.push_via_top(invite.top_via()?.clone());
    c.headers.set_max_forwards(70);
    let routes: Vec<_> = invite.headers.routes().cloned().collect();
    c.headers.set_routes(&routes);
    c.headers.set_from(invite.from()?.clone());
    c.headers.set_to(invite.to()?.clone());
    c.headers.set_call_id(invite.call_id()?);
    c.headers
        .set_cseq(CSeq::new(invite.cseq()?.seq, Method::Cancel));
    c.headers.set_content_length(0);
    Some(c)
}

/// Builds the ACK a client INVITE transaction sends for a non-2xx final response (§17.1.1.3).
pub fn ack_for_non_2xx(invite: &Message, resp: &Message) -> Option<Message> {
    let StartLine::Request { uri, .. } = &invite.start else {
        return None;
    };
    let mut a = Message::new(StartLine::Request {
        method: Method::Ack,
        uri: uri.clone(),
    });
    a.headers.push_via_top(invite.top_via()?.clone());
    a.headers.set_max_forwards(70);
    let routes: Vec<_> = invite.headers.routes().cloned().collect();
    a.headers.set_routes(&routes);
    a.headers.set_from(invite.from()?.clone());
    a.headers.set_to(resp.to()?.clone());
    a.headers.set_call_id(invite.call_id()?);
    a.headers
        .set_cseq(CSeq::new(invite.cseq()?.seq, Method::Ack));
    a.headers.set_content_length(0);
    Some(a)
}

/// Transactions plus the matching tables and the timer queue.
#[derive(Debug)]
pub struct TransactionLayer {
    config: TransactionConfig,
    next_id: u64,
    /// Boxed, and the server keys too, so that growing a table moves pointers, not
    /// transaction state: at 1,000 calls/s some 64k INVITE transactions linger in Accepted
    /// (RFC 6026 Timers L and M), and a rehash of them inline stalled signalling for 100 ms.
    txs: HashMap<TxId, Box<Tx>>,
    servers: HashMap<Box<ServerKey>, TxId>,
    clients: HashMap<ClientKey, TxId>,
    timers: BinaryHeap<Reverse<(Instant, TxId, TimerKind)>>,
    actions: VecDeque<Action>,
}

impl Default for TransactionLayer {
    fn default() -> Self {
        Self::new(TransactionConfig::default())
    }
}

impl TransactionLayer {
    /// An empty layer.
    pub fn new(config: TransactionConfig) -> Self {
        TransactionLayer {
            config,
            next_id: 1,
            txs: HashMap::new(),
            servers: HashMap::new(),
            clients: HashMap::new(),
            timers: BinaryHeap::new(),
            actions: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TransactionConfig {
        &self.config
    }

    /// Live transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// True when no transaction is alive.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// State of a transaction, if alive.
    pub fn state(&self, tx: TxId) -> Option<State> {
        self.txs.get(&tx).map(|t| t.state)
    }

    /// The request that created a transaction, if alive.
    pub fn request(&self, tx: TxId) -> Option<&Message> {
        self.txs.get(&tx).map(|t| &t.request)
    }

    /// The flow a transaction uses, if alive.
    pub fn flow(&self, tx: TxId) -> Option<TransportFlow> {
        self.txs.get(&tx).map(|t| t.flow)
    }

    /// Next queued action.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Drains every queued action.
    pub fn drain_actions(&mut self) -> impl Iterator<Item = Action> + '_ {
        self.actions.drain(..)
    }

    /// Earliest armed timer deadline.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        // Drop entries for transactions that no longer have that timer armed.
        while let Some(Reverse((at, tx, kind))) = self.timers.peek().copied() {
            if self.txs.get(&tx).is_some_and(|t| t.timer_armed(kind, at)) {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    fn alloc_id(&mut self) -> TxId {
        let id = TxId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Sends a message outside any transaction (ACK for 2xx, stateless responses).
    pub fn send_stateless(&mut self, msg: Message, flow: TransportFlow) {
        self.actions.push_back(Action::Send {
            tx: None,
            flow,
            msg,
        });
    }

    /// Starts a client transaction for `req` on `flow` and sends it.
    pub fn send_request(
        &mut self,
        req: Message,
        flow: TransportFlow,
        now: Instant,
    ) -> Result<TxId, TxError> {
        let Some(method) = req.method().cloned() else {
            return Err(TxError::WrongKind);
        };
        if method == Method::Ack {
            return Err(TxError::AckNotTransaction);
        }
        if req.cseq().is_none() {
            return Err(TxError::NoCSeq);
        }
        let branch = req
            .top_via()
            .and_then(|v| v.branch())
            .ok_or(TxError::NoBranch)?
            .to_owned();
        let key = ClientKey {
            branch: branch.clone(),
            method: method.clone(),
        };
        if self.clients.contains_key(&key) {
            return Err(TxError::Duplicate(branch));
        }
        let id = self.alloc_id();
        let kind = if method == Method::Invite {
            Kind::ClientInvite
        } else {
            Kind::ClientNonInvite
        };
        let mut tx = Box::new(Tx::new(id, kind, flow, req, Key::Client(key.clone())));
        let mut out = Vec::new();
        tx.start(&self.config, now, &mut out);
        self.clients.insert(key, id);
        self.txs.insert(id, tx);
        self.apply(id, out);
        Ok(id)
    }

    /// Sends a response on server transaction `tx`.
    pub fn send_response(&mut self, tx: TxId, resp: Message, now: Instant) -> Result<(), TxError> {
        if resp.status().is_none() {
            return Err(TxError::WrongKind);
        }
        let t = self.txs.get_mut(&tx).ok_or(TxError::Unknown(tx))?;
        let mut out = Vec::new();
        t.tu_response(&self.config, resp, now, &mut out)?;
        self.apply(tx, out);
        Ok(())
    }

    /// Reports a transport failure for one transaction.
    pub fn transport_error(&mut self, tx: TxId) {
        if self.txs.contains_key(&tx) {
            self.apply(tx, vec![Out::TransportError, Out::Terminate]);
        }
    }

    /// Reports that a flow (connection) failed: every transaction on it gets a transport error.
    pub fn flow_failed(&mut self, flow: TransportFlow) {
        let mut ids: Vec<TxId> = self
            .txs
            .values()
            .filter(|t| t.flow == flow)
            .map(|t| t.id)
            .collect();
        ids.sort();
        for id in ids {
            self.transport_error(id);
        }
    }

    /// Fires every timer due at `now`.
    pub fn on_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, id, kind))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(t) = self.txs.get_mut(&id) else {
                continue;
            };
            if !t.timer_armed(kind, at) {
                continue;
            }
            let mut out = Vec::new();
            t.on_timer(kind, &mut out);
            self.apply(id, out);
        }
    }

    /// Feeds a message received on `flow`.
    pub fn on_message(&mut self, msg: Message, flow: TransportFlow, now: Instant) {
        if msg.is_request() {
            self.on_request(msg, flow, now);
        } else {
            self.on_response(msg, flow, now);
        }
    }

    fn on_response(&mut self, msg: Message, flow: TransportFlow, now: Instant) {
        let key = match (msg.top_via().and_then(|v| v.branch()), msg.cseq()) {
            (Some(b), Some(c)) => ClientKey {
                branch: b.to_owned(),
                method: c.method.clone(),
            },
            _ => {
                self.actions.push_back(Action::StrayResponse { flow, msg });
                return;
            }
        };
        let Some(&id) = self.clients.get(&key) else {
            self.actions.push_back(Action::StrayResponse { flow, msg });
            return;
        };
        let mut out = Vec::new();
        if let Some(t) = self.txs.get_mut(&id) {
            t.on_response(&self.config, msg, now, &mut out);
        }
        self.apply(id, out);
    }

    fn on_request(&mut self, msg: Message, flow: TransportFlow, now: Instant) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        if method == Method::Ack {
            // ACK matches the INVITE server transaction (§17.2.3).
            let mut found = None;
            if let Some(k) = server_key(&msg, Some(Method::Invite), None) {
                found = self.servers.get(&k).copied();
            }
            if found.is_none()
                && let Some(k) = server_key(&msg, Some(Method::Invite), Some(""))
                && matches!(k, ServerKey::Rfc2543 { .. })
            {
                // RFC 2543 matching also needs the ACK's To tag to equal the tag of the
                // response the transaction sent.
                let ack_tag = msg.to().and_then(|t| t.tag());
                found = self.servers.get(&k).copied().filter(|id| {
                    self.txs
                        .get(id)
                        .is_some_and(|t| t.response_to_tag() == ack_tag)
                });
            }
            match found {
                Some(id) => {
                    let mut out = Vec::new();
                    if let Some(t) = self.txs.get_mut(&id) {
                        t.on_ack(msg, flow, &mut out);
                    }
                    self.apply(id, out);
                }
                None => self.actions.push_back(Action::Ack {
                    tx: None,
                    flow,
                    msg,
                }),
            }
            return;
        }
        let Some(key) = server_key(&msg, None, None) else {
            return;
        };
        if let Some(&id) = self.servers.get(&key) {
            // Retransmission.
            let mut out = Vec::new();
            if let Some(t) = self.txs.get_mut(&id) {
                t.on_retransmission(&mut out);
            }
            self.apply(id, out);
            return;
        }
        let cancels = if method == Method::Cancel {
            server_key(&msg, Some(Method::Invite), None).and_then(|k| self.servers.get(&k).copied())
        } else {
            None
        };
        let id = self.alloc_id();
        let kind = if method == Method::Invite {
            Kind::ServerInvite
        } else {
            Kind::ServerNonInvite
        };
        let mut tx = Box::new(Tx::new(
            id,
            kind,
            flow,
            msg.clone(),
            Key::Server(key.clone()),
        ));
        let mut out = Vec::new();
        tx.start(&self.config, now, &mut out);
        self.servers.insert(Box::new(key), id);
        self.txs.insert(id, tx);
        self.actions.push_back(Action::Request {
            tx: id,
            flow,
            msg,
            cancels,
        });
        self.apply(id, out);
    }

    fn apply(&mut self, id: TxId, out: Vec<Out>) {
        for o in out {
            match o {
                Out::Send(msg) => {
                    let flow = self.txs.get(&id).map_or(TransportFlow(0), |t| t.flow);
                    self.actions.push_back(Action::Send {
                        tx: Some(id),
                        flow,
                        msg,
                    });
                }
                Out::Deliver(msg) => self.actions.push_back(Action::Response { tx: id, msg }),
                Out::Ack(msg, flow) => self.actions.push_back(Action::Ack {
                    tx: Some(id),
                    flow,
                    msg,
                }),
                Out::Timer(kind, at) => {
                    self.timers.push(Reverse((at, id, kind)));
                    self.actions.push_back(Action::SetTimer {
                        tx: id,
                        timer: kind,
                        at,
                    });
                }
                Out::Timeout(kind) => self.actions.push_back(Action::Timeout {
                    tx: id,
                    timer: kind,
                }),
                Out::TransportError => self.actions.push_back(Action::TransportError { tx: id }),
                Out::Terminate => {
                    if let Some(t) = self.txs.remove(&id) {
                        match t.key {
                            Key::Client(k) => {
                                self.clients.remove(&k);
                            }
                            Key::Server(k) => {
                                self.servers.remove(&k);
                            }
                        }
                        self.actions.push_back(Action::Terminated { tx: id });
                    }
                }
            }
        }
    }
}

/// Matching key a transaction is registered under.
#[derive(Debug, Clone)]
enum Key {
    Client(ClientKey),
    Server(ServerKey),
}

/// Outputs of a single transaction's state machine.
#[derive(Debug)]
enum Out {
    Send(Message),
    Deliver(Message),
    Ack(Message, TransportFlow),
    Timer(TimerKind, Instant),
    Timeout(TimerKind),
    TransportError,
    Terminate,
}

#[cfg(test)]
mod tests;
