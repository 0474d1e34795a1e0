//! Failover of the callee side during setup: a final error from the callee side (a 422 retried
//! once with the larger interval, status mapping toward the caller), a failed INVITE client
//! transaction (Timer B, transport), and the next attempt (the route's next trunk that is up,
//! or the next internal next hop) after a 503, 408, Timer B or transport failure.
//!
//! It must not touch the call's SDP session (the offer is reused as sent) nor answer a call:
//! a failover either sends a new INVITE or ends the call through `teardown`.

use std::net::SocketAddr;
use std::sync::Arc;

use tollgate_sip::{Message, TxId};

use crate::b2bua::{B2bua, Failure, map_status};
use crate::call::{Attempt, Call, Setup};
use crate::config::{Trunk, normalize};
use crate::effects::Effects;
use crate::headers::copy_headers;
use crate::types::{CallEvent, CallId, EndCause, Output, Target, Transport};

impl B2bua {
    pub(crate) fn callee_rejected(
        &mut self,
        id: CallId,
        code: u16,
        msg: &Message,
        fx: &mut Effects<'_>,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let caller = call.caller();
        let caller_tag = call.leg(caller).local_tag.clone();
        let Some(setup) = call.setup_mut() else {
            return;
        };
        // RFC 4028 §7.4: 422 names the Min-SE to retry with (once).
        if code == 422
            && let Some(m) = msg.headers.min_se()
            && setup.retry_422(m.delta)
            && self.send_callee_invite(id, fx)
        {
            return;
        }
        if matches!(code, 503 | 408) && self.try_failover(id, code, fx) {
            return;
        }
        let caller_tx = self
            .calls
            .get(&id)
            .and_then(|c| c.setup())
            .map(|s| s.caller_tx);
        let status = map_status(code);
        if let Some(ctx) = caller_tx
            && let Some(req) = self.layer.request(ctx)
        {
            let reason = if status == code { msg.reason() } else { None };
            let mut resp = Message::response_to(req, status, reason, Some(&caller_tag));
            copy_headers(msg, caller.other(), &mut resp, &self.cfg.sip.pass_headers);
            let _ = self.layer.send_response(ctx, resp, fx.now);
        }
        self.end_call(id, EndCause::Rejected(code), status, None, fx);
    }

    /// The callee-side INVITE timed out or its connection failed.
    pub(crate) fn callee_failure(
        &mut self,
        id: CallId,
        tx: TxId,
        why: Failure,
        fx: &mut Effects<'_>,
    ) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.setup().and_then(|s| s.callee_tx) != Some(tx) {
            return;
        }
        let (cause, status, as_code) = match why {
            Failure::Timeout => (EndCause::Timeout, 504, 408),
            Failure::Transport => (EndCause::TransportError, 503, 503),
        };
        if let Some(addr) = self.callee_addr(id)
            && self.admission.failed(addr, fx.now)
        {
            fx.out
                .push(Output::Event(CallEvent::NextHop { addr, up: false }));
        }
        if self.try_failover(id, as_code, fx) {
            return;
        }
        self.end_call(id, cause, status, None, fx);
    }

    /// The callee-side INVITE's next hop answered `code`: admission marks it down on 503, or
    /// clears its failures.
    pub(crate) fn next_hop_answered(
        &mut self,
        id: CallId,
        code: u16,
        retry_after: Option<std::time::Duration>,
        fx: &mut Effects<'_>,
    ) {
        let Some(addr) = self.callee_addr(id) else {
            return;
        };
        if let Some(up) = self.admission.answered(addr, code, retry_after, fx.now) {
            fx.out.push(Output::Event(CallEvent::NextHop { addr, up }));
        }
    }

    /// The address the call's callee-side INVITE goes to.
    fn callee_addr(&self, id: CallId) -> Option<SocketAddr> {
        self.calls.get(&id)?.callee_addr()
    }

    /// Failover after the callee side failed with `status`: the same INVITE (same offer and
    /// relay ports, CSeq + 1) to the next place in the call's list that takes it: outbound, the
    /// route's next trunk that is up, in service and has room; inbound, the next internal next
    /// hop. A next hop marked down or at its cap is skipped.
    fn try_failover(&mut self, id: CallId, status: u16, fx: &mut Effects<'_>) -> bool {
        let cfg = Arc::clone(&self.cfg);
        loop {
            let Some(call) = self.calls.get_mut(&id) else {
                return false;
            };
            let Some(setup) = call.setup_mut() else {
                return false;
            };
            if setup.failover.is_empty() {
                return false;
            }
            let (addr, transport, trunk) = match setup.failover.remove(0) {
                Attempt::NextHop(a) => (a, Transport::Tls, None),
                Attempt::Trunk(name) => {
                    let Some(t) = cfg.trunks.iter().find(|t| t.name == name) else {
                        continue;
                    };
                    let usable =
                        self.trunks.takes_calls(&name) && self.admission.trunk_has_room(&name);
                    if !usable {
                        continue;
                    }
                    (t.addr, t.transport, Some(t))
                }
            };
            if self.admission.check_next_hop(addr, fx.now).is_err() {
                continue;
            }
            setup.next_attempt();
            let previous = call.redirect_callee(Target::Addr { addr, transport });
            let (from, to) = match trunk {
                Some(t) => {
                    let from = call.switch_trunk(t);
                    self.admission.move_call(&from, &t.name);
                    (from, t.name.clone())
                }
                None => {
                    let from = match previous {
                        Target::Addr { addr, .. } => addr.to_string(),
                        Target::Conn(_) => String::new(),
                    };
                    (from, addr.to_string())
                }
            };
            self.admission.take_next_hop(addr);
            fx.out.push(Output::Event(CallEvent::Failover {
                call: id,
                from,
                to,
                status,
            }));
            if self.send_callee_invite(id, fx) {
                return true;
            }
        }
    }
}

impl Setup {
    /// RFC 4028 §7.4: a 422 names the Min-SE (`min_se`) to retry with, once. Whether to
    /// retry: the next attempt asks that interval.
    fn retry_422(&mut self, min_se: u32) -> bool {
        if self.se == 0 || self.retried_422 {
            return false;
        }
        self.retried_422 = true;
        self.se = self.se.max(min_se);
        self.min_se = self.min_se.max(min_se);
        self.next_attempt();
        true
    }
}

impl Call {
    /// The address the call's callee-side INVITE goes to.
    fn callee_addr(&self) -> Option<SocketAddr> {
        match self.leg(self.caller().other()).fallback {
            Target::Addr { addr, .. } => Some(addr),
            Target::Conn(_) => None,
        }
    }

    /// The callee side is tried at `target` from now on: where it was tried before.
    fn redirect_callee(&mut self, target: Target) -> Target {
        let callee = self.caller().other();
        std::mem::replace(&mut self.leg_mut(callee).fallback, target)
    }

    /// An outbound call moves to trunk `t`: its numbers as that trunk wants them, its NAT
    /// learning window. The trunk it was on (empty if none).
    fn switch_trunk(&mut self, t: &Trunk) -> String {
        let n = &mut self.numbers;
        n.called_sent = normalize(&t.outbound, &n.called_received);
        n.calling_sent = normalize(&t.outbound, &n.calling_received);
        self.learn_ns = u64::try_from(t.nat_learn.as_nanos()).unwrap_or(u64::MAX);
        self.trunk.replace(t.name.clone()).unwrap_or_default()
    }
}
