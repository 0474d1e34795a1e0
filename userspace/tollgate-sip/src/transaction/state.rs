//! The four transaction state machines (RFC 3261 §17.1.1, §17.1.2, §17.2.1, §17.2.2 with
//! RFC 6026 Accepted states), specialised for reliable transports.

use std::time::Instant;

use super::{
    Key, Out, TimerKind, TransactionConfig, TransportFlow, TxError, TxId, ack_for_non_2xx,
};
use crate::message::Message;

/// Which machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// INVITE client (§17.1.1).
    ClientInvite,
    /// Non-INVITE client (§17.1.2).
    ClientNonInvite,
    /// INVITE server (§17.2.1).
    ServerInvite,
    /// Non-INVITE server (§17.2.2).
    ServerNonInvite,
}

/// Transaction states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// INVITE client, request sent.
    Calling,
    /// Non-INVITE client/server before any response.
    Trying,
    /// A provisional response was received/sent.
    Proceeding,
    /// A non-2xx final (INVITE) or any final (non-INVITE) response was received/sent.
    Completed,
    /// INVITE server: ACK received for a non-2xx final.
    Confirmed,
    /// RFC 6026: INVITE 2xx received/sent.
    Accepted,
    /// Done.
    Terminated,
}

#[derive(Debug)]
pub(super) struct Tx {
    pub(super) id: TxId,
    pub(super) kind: Kind,
    pub(super) state: State,
    pub(super) flow: TransportFlow,
    pub(super) request: Message,
    pub(super) key: Key,
    last_response: Option<Message>,
    timers: Vec<(TimerKind, Instant)>,
}

impl Tx {
    pub(super) fn new(
        id: TxId,
        kind: Kind,
        flow: TransportFlow,
        request: Message,
        key: Key,
    ) -> Self {
        let state = match kind {
            Kind::ClientInvite => State::Calling,
            Kind::ClientNonInvite | Kind::ServerNonInvite => State::Trying,
            Kind::ServerInvite => State::Proceeding,
        };
        Tx {
            id,
            kind,
            state,
            flow,
            request,
            key,
            last_response: None,
            timers: Vec::new(),
        }
    }

    pub(super) fn timer_armed(&self, kind: TimerKind, at: Instant) -> bool {
        self.timers.iter().any(|&(k, t)| k == kind && t == at)
    }

    fn arm(&mut self, kind: TimerKind, at: Instant, out: &mut Vec<Out>) {
        self.timers.retain(|&(k, _)| k != kind);
        self.timers.push((kind, at));
        out.push(Out::Timer(kind, at));
    }

    fn disarm(&mut self, kind: TimerKind) {
        self.timers.retain(|&(k, _)| k != kind);
    }

    fn terminate(&mut self, out: &mut Vec<Out>) {
        self.state = State::Terminated;
        self.timers.clear();
        out.push(Out::Terminate);
    }

    /// Creation: clients send the request and arm B/F; INVITE servers may send 100 Trying.
    pub(super) fn start(&mut self, cfg: &TransactionConfig, now: Instant, out: &mut Vec<Out>) {
        match self.kind {
            Kind::ClientInvite => {
                out.push(Out::Send(self.request.clone()));
                self.arm(TimerKind::B, now + cfg.timeout(), out);
            }
            Kind::ClientNonInvite => {
                out.push(Out::Send(self.request.clone()));
                self.arm(TimerKind::F, now + cfg.timeout(), out);
            }
            Kind::ServerInvite => {
                if cfg.auto_trying {
                    let trying = Message::response_to(&self.request, 100, None, None);
                    self.last_response = Some(trying.clone());
                    out.push(Out::Send(trying));
                }
            }
            Kind::ServerNonInvite => {}
        }
    }

    /// A response matched this client transaction.
    pub(super) fn on_response(
        &mut self,
        cfg: &TransactionConfig,
        resp: Message,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(code) = resp.status() else { return };
        match (self.kind, self.state) {
            (Kind::ClientInvite, State::Calling | State::Proceeding) => {
                self.disarm(TimerKind::B);
                if code < 200 {
                    self.state = State::Proceeding;
                    out.push(Out::Deliver(resp));
                } else if code < 300 {
                    self.state = State::Accepted;
                    out.push(Out::Deliver(resp));
                    self.arm(TimerKind::M, now + cfg.timeout(), out);
                } else {
                    if let Some(ack) = ack_for_non_2xx(&self.request, &resp) {
                        out.push(Out::Send(ack));
                    }
                    out.push(Out::Deliver(resp));
                    // Timer D = 0 on reliable transports: Completed -> Terminated at once.
                    self.state = State::Completed;
                    self.terminate(out);
                }
            }
            (Kind::ClientInvite, State::Accepted)
                // RFC 6026 §8.4: further 2xx (retransmissions, forks) go to the TU.
                if (200..300).contains(&code) => {
                    out.push(Out::Deliver(resp));
                }
            (Kind::ClientNonInvite, State::Trying | State::Proceeding) => {
                out.push(Out::Deliver(resp));
                if code < 200 {
                    self.state = State::Proceeding;
                } else {
                    // Timer K = 0 on reliable transports.
                    self.state = State::Completed;
                    self.terminate(out);
                }
            }
            _ => {}
        }
    }

    /// The TU sends a response on this server transaction.
    pub(super) fn tu_response(
        &mut self,
        cfg: &TransactionConfig,
        resp: Message,
        now: Instant,
        out: &mut Vec<Out>,
    ) -> Result<(), TxError> {
        let code = resp.status().ok_or(TxError::WrongKind)?;
        let bad = TxError::BadState {
            tx: self.id,
            state: self.state,
        };
        match (self.kind, self.state) {
            (Kind::ServerInvite, State::Proceeding) => {
                out.push(Out::Send(resp.clone()));
                self.last_response = Some(resp);
                if (200..300).contains(&code) {
                    self.state = State::Accepted;
                    self.arm(TimerKind::L, now + cfg.timeout(), out);
                } else if code >= 300 {
                    // Timer G is not used on reliable transports; H bounds the wait for ACK.
                    self.state = State::Completed;
                    self.arm(TimerKind::H, now + cfg.timeout(), out);
                }
                Ok(())
            }
            (Kind::ServerInvite, State::Accepted) if (200..300).contains(&code) => {
                // RFC 6026 §8.5: 2xx retransmissions from the TU pass through.
                out.push(Out::Send(resp));
                Ok(())
            }
            (Kind::ServerNonInvite, State::Trying | State::Proceeding) => {
                out.push(Out::Send(resp.clone()));
                self.last_response = Some(resp);
                if code < 200 {
                    self.state = State::Proceeding;
                } else {
                    // Timer J = 0 on reliable transports.
                    self.state = State::Completed;
                    self.terminate(out);
                }
                Ok(())
            }
            _ => Err(bad),
        }
    }

    /// A retransmission of the request that created this server transaction.
    pub(super) fn on_retransmission(&mut self, out: &mut Vec<Out>) {
        match (self.kind, self.state) {
            (Kind::ServerInvite, State::Proceeding | State::Completed)
            | (Kind::ServerNonInvite, State::Proceeding | State::Completed) => {
                if let Some(r) = &self.last_response {
                    out.push(Out::Send(r.clone()));
                }
            }
            _ => {}
        }
    }

    /// An ACK matched this INVITE server transaction.
    pub(super) fn on_ack(&mut self, ack: Message, flow: TransportFlow, out: &mut Vec<Out>) {
        match self.state {
            State::Completed => {
                // Timer I = 0 on reliable transports: Confirmed -> Terminated at once. The ACK
                // for a non-2xx is absorbed.
                self.disarm(TimerKind::H);
                self.state = State::Confirmed;
                self.terminate(out);
            }
            State::Accepted => out.push(Out::Ack(ack, flow)),
            _ => {}
        }
    }

    /// The To tag of the last response this server transaction sent.
    pub(super) fn response_to_tag(&self) -> Option<&str> {
        self.last_response.as_ref()?.to()?.tag()
    }

    /// A timer fired.
    pub(super) fn on_timer(&mut self, kind: TimerKind, out: &mut Vec<Out>) {
        self.disarm(kind);
        match (kind, self.state) {
            (TimerKind::B, State::Calling)
            | (TimerKind::F, State::Trying | State::Proceeding)
            | (TimerKind::H, State::Completed) => {
                out.push(Out::Timeout(kind));
                self.terminate(out);
            }
            (TimerKind::L | TimerKind::M, State::Accepted) => self.terminate(out),
            _ => {}
        }
    }
}
