//! Transport plumbing of the core: [`TransportFlows`] maps the transaction layer's flows to driver
//! connections and addresses; the [`B2bua`] methods here make our identifiers (tags, Call-IDs,
//! branches, Via, Contact), send requests, stateless messages,
//! responses and CANCELs through the transaction layer, pick where a leg's requests go, and
//! fail the transactions of closed or unreachable connections.
//!
//! It must not hold call state or decide anything about calls: callers pass the call or leg
//! they act for.

use std::net::SocketAddr;
use std::time::Instant;

use rustc_hash::FxHashMap;
use tollgate_sip::transaction::cancel_for;
use tollgate_sip::{Host, Message, NameAddr, SipUri, TransportFlow, TxId, Uri, Via};

use crate::b2bua::{B2bua, hex_into};
use crate::own_headers;
use crate::types::{ConnId, Side, Target, Transport};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TransportFlowKey {
    Conn(Side, ConnId),
    Addr(Side, SocketAddr, Transport),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct TransportFlowInfo {
    pub(crate) side: Side,
    pub(crate) target: Target,
    /// For connections: the peer's address.
    pub(crate) peer: Option<SocketAddr>,
}

/// Maps transaction-layer flows to driver targets.
#[derive(Debug, Default)]
pub(crate) struct TransportFlows {
    next: u64,
    by_key: FxHashMap<TransportFlowKey, TransportFlow>,
    info: FxHashMap<TransportFlow, TransportFlowInfo>,
}

impl TransportFlows {
    fn get_or_add(&mut self, key: TransportFlowKey, info: TransportFlowInfo) -> TransportFlow {
        if let Some(f) = self.by_key.get(&key) {
            return *f;
        }
        self.next += 1;
        let f = TransportFlow(self.next);
        self.by_key.insert(key, f);
        self.info.insert(f, info);
        f
    }

    pub(crate) fn conn(&mut self, side: Side, conn: ConnId, peer: SocketAddr) -> TransportFlow {
        self.get_or_add(
            TransportFlowKey::Conn(side, conn),
            TransportFlowInfo {
                side,
                target: Target::Conn(conn),
                peer: Some(peer),
            },
        )
    }

    pub(crate) fn target(&mut self, side: Side, target: Target) -> TransportFlow {
        let key = match target {
            Target::Conn(c) => TransportFlowKey::Conn(side, c),
            Target::Addr { addr, transport } => TransportFlowKey::Addr(side, addr, transport),
        };
        self.get_or_add(
            key,
            TransportFlowInfo {
                side,
                target,
                peer: None,
            },
        )
    }

    pub(crate) fn info(&self, flow: TransportFlow) -> Option<TransportFlowInfo> {
        self.info.get(&flow).copied()
    }

    pub(crate) fn is_open(&self, side: Side, conn: ConnId) -> bool {
        self.by_key
            .contains_key(&TransportFlowKey::Conn(side, conn))
    }

    /// Forgets a closed connection's flow: the flow and the peer's address.
    fn close_conn(
        &mut self,
        side: Side,
        conn: ConnId,
    ) -> Option<(TransportFlow, Option<SocketAddr>)> {
        let flow = self.by_key.remove(&TransportFlowKey::Conn(side, conn))?;
        let peer = self.info.remove(&flow).and_then(|i| i.peer);
        Some((flow, peer))
    }

    /// The flows toward address `addr` on `side` (any transport).
    fn addr_flows(&self, side: Side, addr: SocketAddr) -> Vec<TransportFlow> {
        self.by_key
            .iter()
            .filter(
                |(k, _)| matches!(k, TransportFlowKey::Addr(s, a, _) if *s == side && *a == addr),
            )
            .map(|(_, f)| *f)
            .collect()
    }
}

impl B2bua {
    pub(crate) fn random_hex(&mut self, n: usize) -> String {
        let mut b = [0u8; 16];
        let n = n.min(16);
        let Some(buf) = b.get_mut(..n) else {
            return String::new();
        };
        (self.rng)(buf);
        let mut s = String::with_capacity(2 * n);
        hex_into(&mut s, buf);
        s
    }

    pub(crate) fn new_tag(&mut self) -> String {
        self.random_hex(8)
    }

    pub(crate) fn new_call_id(&mut self) -> String {
        self.random_hex(12)
    }

    pub(crate) fn new_branch(&mut self) -> String {
        let mut b = self.branch_prefix().to_owned();
        let r = self.random_hex(8);
        b.push_str(&r);
        b
    }

    /// Our SIP address on `side`.
    pub(crate) fn sip_addr(&self, side: Side) -> SocketAddr {
        match side {
            Side::Ext => self.cfg.ext.sip_addr,
            Side::Int => self.cfg.int.sip_addr,
        }
    }

    /// A Via for a request we send on `side` over `transport`, with a fresh branch.
    pub(crate) fn via(&mut self, side: Side, transport: Transport) -> Via {
        let a = self.sip_addr(side);
        let branch = self.new_branch();
        Via::new(transport.sip(), Host::ip(a.ip()), Some(a.port()), &branch)
    }

    /// Our Contact on `side`.
    pub(crate) fn contact(&self, side: Side, transport: Transport) -> NameAddr {
        let a = self.sip_addr(side);
        let mut u = SipUri::new(Some("tollgate"), Host::ip(a.ip()), Some(a.port()));
        u.params.set("transport", Some(transport.as_str()));
        NameAddr::new(Uri::Sip(u))
    }

    /// The driver closed a connection: its transactions fail, and so do those toward the
    /// peer's address (the driver would open a new connection for the next request).
    pub(crate) fn on_conn_closed(&mut self, side: Side, conn: ConnId) {
        let Some((flow, peer)) = self.transport_flows.close_conn(side, conn) else {
            return;
        };
        self.layer.flow_failed(flow);
        if let Some(peer) = peer {
            for f in self.transport_flows.addr_flows(side, peer) {
                self.layer.flow_failed(f);
            }
        }
    }

    /// The driver could not connect to `addr`: the transactions toward it fail.
    pub(crate) fn on_connect_failed(&mut self, side: Side, addr: SocketAddr) {
        for f in self.transport_flows.addr_flows(side, addr) {
            self.layer.flow_failed(f);
        }
    }

    /// Sends a request in a new client transaction toward `target`.
    pub(crate) fn send_request(
        &mut self,
        side: Side,
        target: Target,
        msg: Message,
        now: Instant,
    ) -> Option<TxId> {
        let flow = self.transport_flows.target(side, target);
        self.layer.send_request(msg, flow, now).ok()
    }

    /// Sends a message outside any transaction (ACK for 2xx).
    pub(crate) fn send_stateless(&mut self, side: Side, target: Target, msg: Message) {
        let flow = self.transport_flows.target(side, target);
        self.layer.send_stateless(msg, flow);
    }

    /// Responds on a server transaction, building the response from its request.
    pub(crate) fn reply(
        &mut self,
        tx: TxId,
        code: u16,
        to_tag: Option<&str>,
        now: Instant,
        edit: impl FnOnce(&mut Message),
    ) {
        let fresh;
        let tag = match to_tag {
            Some(t) => t,
            None => {
                fresh = self.new_tag();
                fresh.as_str()
            }
        };
        let Some(req) = self.layer.request(tx) else {
            return;
        };
        let mut resp = Message::response_to(req, code, None, Some(tag));
        edit(&mut resp);
        let _ = self.layer.send_response(tx, resp, now);
    }

    /// Sends CANCEL for a pending INVITE client transaction, with `reason` (RFC 3326) if given.
    pub(crate) fn send_cancel(&mut self, invite_tx: TxId, reason: Option<&str>, now: Instant) {
        let Some(mut cancel) = self.layer.request(invite_tx).and_then(cancel_for) else {
            return;
        };
        if let Some(v) = reason {
            own_headers::reason(&mut cancel, v);
        }
        let Some(flow) = self.layer.flow(invite_tx) else {
            return;
        };
        let _ = self.layer.send_request(cancel, flow, now);
    }
}
