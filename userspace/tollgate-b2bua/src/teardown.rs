//! Teardown and orphans: [`B2bua::end_call`] ends a call in the input that decides it (final
//! response to a waiting caller, CANCEL toward a ringing callee, BYE on confirmed legs, relays
//! answered, timers cancelled, flows removed, ports freed, event and CDR), and the INVITE
//! client transactions a call left behind ([`Orphan`]s) are finished without it: CANCEL on a
//! provisional, ACK and BYE for a late 2xx, a guard timer bounding each.
//!
//! It must not keep a call alive: once `end_call` starts, the call is out of the call table.
//! [`Orphans`] changes only here (and is forgotten by `B2bua` when a transaction ends).

use std::time::Instant;

use rustc_hash::FxHashMap;
use tollgate_sip::transaction::State as TxState;
use tollgate_sip::{Dialog, Message, Method, TxId, Via};

use crate::b2bua::B2bua;
use crate::call::{Call, Setup};
use crate::effects::Effects;
use crate::own_headers;
use crate::timers::{TimerPurpose, later};
use crate::types::{CallEvent, CallId, Cdr, EndCause, Output, Side, TimerId, Transport};

/// An INVITE client transaction whose call is gone.
#[derive(Debug, Clone)]
struct Orphan {
    /// Send CANCEL when a provisional arrives.
    cancel_on_provisional: bool,
    /// Reason header (RFC 3326) for that CANCEL.
    reason: Option<String>,
    guard: TimerId,
}

/// The orphaned INVITE client transactions, by transaction.
#[derive(Debug, Default)]
pub(crate) struct Orphans {
    by_tx: FxHashMap<TxId, Orphan>,
}

impl Orphans {
    pub(crate) fn contains(&self, tx: TxId) -> bool {
        self.by_tx.contains_key(&tx)
    }

    /// Forgets an orphan; its guard timer, if it was one.
    pub(crate) fn remove(&mut self, tx: TxId) -> Option<TimerId> {
        self.by_tx.remove(&tx).map(|o| o.guard)
    }

    /// A provisional arrived: the Reason for the CANCEL to send now, if one is still owed.
    fn cancel_owed(&mut self, tx: TxId) -> Option<Option<String>> {
        self.by_tx.get_mut(&tx).and_then(|o| {
            std::mem::replace(&mut o.cancel_on_provisional, false).then(|| o.reason.clone())
        })
    }
}

/// How a call ends: its cause, the status for a caller still waiting, and a Reason header.
#[derive(Debug, Clone, Copy)]
struct Ending<'r> {
    cause: EndCause,
    status: u16,
    reason: Option<&'r str>,
}

impl B2bua {
    /// Ends a call now: final response to a caller still waiting, CANCEL toward a callee
    /// still ringing, BYE on confirmed legs (not toward the side that sent BYE), pending relays
    /// answered, flows removed, ports freed, timers cancelled, CDR and event.
    pub(crate) fn end_call(
        &mut self,
        id: CallId,
        cause: EndCause,
        status: u16,
        reason: Option<&str>,
        fx: &mut Effects<'_>,
    ) {
        let Some(mut call) = self.calls.remove(id) else {
            return;
        };
        if call.stored.is_some() {
            fx.out.push(Output::ForgetCall { call: id });
        }
        if let Some(t) = &call.trunk {
            self.admission.release(t);
        }
        let end = Ending {
            cause,
            status,
            reason,
        };
        let final_status = match call.take_setup() {
            Some(setup) => self.abandon_setup(&call, &setup, end, fx),
            None => {
                self.bye_legs(&mut call, end, fx);
                200
            }
        };
        self.release_call(id, &mut call, fx);
        fx.event(CallEvent::Ended {
            call: id,
            cause,
            status: final_status,
        });
        fx.out
            .push(Output::Cdr(call.into_cdr(id, cause, final_status, fx.now)));
    }

    /// A call ends in setup: the waiting caller gets a final error, the callee-side INVITE is
    /// abandoned. Returns the caller's final status.
    fn abandon_setup(
        &mut self,
        call: &Call,
        setup: &Setup,
        end: Ending<'_>,
        fx: &mut Effects<'_>,
    ) -> u16 {
        let (now, reason) = (fx.now, end.reason);
        // A caller still waiting always gets a final error response: a status below 300
        // here (an end meant for a confirmed call) must not leave its INVITE unanswered.
        let status = if end.status >= 300 { end.status } else { 500 };
        if let Some(t) = setup.no_answer {
            self.timers.cancel(t, fx.out);
        }
        let tag = call.leg(call.caller()).local_tag.clone();
        let retry_after = self.cfg.sip.retry_after;
        // A caller's CANCEL (or early BYE) carries its Reason on to the callee's CANCEL;
        // any other end gives its Reason to the caller's final response.
        let cancelled = end.cause == EndCause::Cancelled;
        if status >= 300 && self.layer.state(setup.caller_tx) == Some(TxState::Proceeding) {
            let reason_hdr = reason.filter(|_| !cancelled).map(str::to_owned);
            self.reply(setup.caller_tx, status, Some(&tag), now, |r| {
                if status == 503 {
                    own_headers::retry_after(r, u64::from(retry_after));
                }
                if let Some(v) = &reason_hdr {
                    own_headers::reason(r, v);
                }
            });
        }
        if let Some(ctx) = setup.callee_tx {
            self.orphan_invite(ctx, reason.filter(|_| cancelled), fx);
        }
        status
    }

    /// A confirmed call ends: a 2xx awaiting its ACK is ACKed on the other leg, then BYE on
    /// each leg but the one that sent BYE.
    fn bye_legs(&mut self, call: &mut Call, end: Ending<'_>, fx: &mut Effects<'_>) {
        let caller = call.caller();
        let bye_from = match end.cause {
            EndCause::Bye(s) => Some(s),
            _ => None,
        };
        // A 2xx relayed but not yet ACKed: ACK the other leg's 2xx before its BYE.
        if let Some(w) = call.ack_wait.take() {
            let other = w.side.other();
            let t = call.transport(other);
            let target = call.target(&self.transport_flows, other);
            let via = self.via(other, t);
            if let Some(ack) = call.dialog_mut(other).and_then(|d| d.ack_for_2xx(via)) {
                self.send_stateless(other, target, ack);
            }
        }
        for side in [caller, caller.other()] {
            if Some(side) == bye_from {
                continue;
            }
            let t = call.transport(side);
            let target = call.target(&self.transport_flows, side);
            let via = self.via(side, t);
            if let Some(bye) = call.bye(side, via, end.reason) {
                let _ = self.send_request(side, target, bye, fx.now);
            }
        }
    }

    /// What an ending call still holds: relays in flight (the requester answered, a relayed
    /// INVITE abandoned), our refresh, timers, flows and ports.
    fn release_call(&mut self, id: CallId, call: &mut Call, fx: &mut Effects<'_>) {
        let now = fx.now;
        for r in std::mem::take(&mut call.relays) {
            if let Some(g) = r.guard {
                self.timers.cancel(g, fx.out);
            }
            if self.layer.state(r.server_tx).is_some() {
                let code = if r.method == Method::Invite { 487 } else { 481 };
                self.reply(r.server_tx, code, None, now, |_| {});
            }
            if r.method == Method::Invite {
                self.orphan_invite(r.client_tx, None, fx);
            }
        }
        if let Some(r) = call.refresh.take() {
            if r.method == Method::Invite {
                self.orphan_invite(r.tx, None, fx);
            }
            if let Some(g) = r.guard {
                self.timers.cancel(g, fx.out);
            }
        }
        for t in call.take_session_timers() {
            self.timers.cancel(t, fx.out);
        }
        for f in std::mem::take(&mut call.flows) {
            fx.out.push(Output::RemoveMedia {
                call: id,
                flow: f.spec.id,
            });
        }
        if let Some(m) = call.media.take() {
            for r in m.close() {
                self.pools.release(&r);
            }
        }
    }

    /// Ends call `id` at an operator's request ([`Input::Hangup`]): BYE on both confirmed legs
    /// (CANCEL toward a ringing callee, 480 to a waiting caller), each with
    /// `Reason: Q.850;cause=16` and the operator's text; the CDR's cause is `operator` and its
    /// note the text.
    pub(crate) fn hangup(&mut self, id: CallId, reason: &str, fx: &mut Effects<'_>) {
        let text: String = reason
            .chars()
            .filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\')
            .take(120)
            .collect();
        let header = format!("Q.850;cause=16;text=\"operator: {text}\"");
        if let Some(c) = self.calls.get_mut(&id) {
            c.note = Some(reason.to_owned());
        }
        self.end_call(id, EndCause::Operator, 480, Some(&header), fx);
    }

    /// Abandons an INVITE client transaction (the call is gone or no longer wants it): CANCEL
    /// now if a provisional came, else as soon as one comes; a late 2xx is ACKed and BYEd.
    pub(crate) fn orphan_invite(&mut self, tx: TxId, reason: Option<&str>, fx: &mut Effects<'_>) {
        let state = self.layer.state(tx);
        let cancel_now = match state {
            Some(TxState::Proceeding) => true,
            Some(TxState::Calling) => false,
            // Accepted (2xx already in), Completed or gone: nothing to abandon.
            _ => return,
        };
        if cancel_now {
            self.send_cancel(tx, reason, fx.now);
        }
        let guard_at = later(fx.now, self.layer.config().timeout().saturating_mul(2));
        let guard = self
            .timers
            .set(TimerPurpose::OrphanGuard(tx), guard_at, fx.out);
        self.orphans.by_tx.insert(
            tx,
            Orphan {
                cancel_on_provisional: !cancel_now,
                reason: reason.map(str::to_owned),
                guard,
            },
        );
    }

    pub(crate) fn orphan_response(&mut self, tx: TxId, msg: &Message, fx: &mut Effects<'_>) {
        let Some(code) = msg.status() else { return };
        if (101..200).contains(&code) {
            let send = self.orphans.cancel_owed(tx);
            if let Some(reason) = send {
                self.send_cancel(tx, reason.as_deref(), fx.now);
            }
        } else if (200..300).contains(&code) {
            self.ack_and_bye(tx, msg, fx);
        }
    }

    /// A 2xx to an INVITE we no longer want (CANCEL/200 race, a second fork): ACK it and BYE
    /// the dialog it created (RFC 3261 §15, §13.2.2.4).
    pub(crate) fn ack_and_bye(&mut self, tx: TxId, resp: &Message, fx: &mut Effects<'_>) {
        let (Some(req), Some(flow)) = (self.layer.request(tx), self.layer.flow(tx)) else {
            return;
        };
        let Ok(mut d) = Dialog::from_uac(req, resp) else {
            return;
        };
        let Some(info) = self.transport_flows.info(flow) else {
            return;
        };
        let transport = req.top_via().map_or(Transport::Tcp, |v| match v.transport {
            tollgate_sip::Transport::Tls => Transport::Tls,
            _ => Transport::Tcp,
        });
        let via = self.via(info.side, transport);
        if let Some(ack) = d.ack_for_2xx(via) {
            self.layer.send_stateless(ack, flow);
        }
        let via = self.via(info.side, transport);
        let bye = d.new_request(Method::Bye, via);
        let _ = self.layer.send_request(bye, flow, fx.now);
    }
}

impl Call {
    /// A BYE on `side`'s confirmed dialog, with `reason` (RFC 3326) if given.
    fn bye(&mut self, side: Side, via: Via, reason: Option<&str>) -> Option<Message> {
        let d = self.leg_mut(side).dialog.as_mut()?;
        let mut bye = d.new_request(Method::Bye, via);
        if let Some(v) = reason {
            own_headers::reason(&mut bye, v);
        }
        Some(bye)
    }

    /// The legs' armed session timers, no longer armed as far as the call knows.
    fn take_session_timers(&mut self) -> Vec<TimerId> {
        self.legs
            .iter_mut()
            .filter_map(|l| l.session.as_mut().and_then(|s| s.timer.take()))
            .collect()
    }

    /// The CDR of the call, ended at `end` with `cause` and the caller's final `status`.
    fn into_cdr(self: Box<Call>, id: CallId, cause: EndCause, status: u16, end: Instant) -> Cdr {
        let mut call = *self;
        let ext_call_id = call.leg(Side::Ext).call_id.clone();
        let int_call_id = call.leg(Side::Int).call_id.clone();
        let n = std::mem::take(&mut call.numbers);
        Cdr {
            call: id,
            direction: call.direction,
            trunk: call.trunk.take(),
            calling_received: n.calling_received,
            calling_sent: n.calling_sent,
            called_received: n.called_received,
            called_sent: n.called_sent,
            ext_call_id,
            int_call_id,
            start: call.start,
            answer: call.answer,
            end,
            cause,
            status,
            flows: call.flow_ids,
            note: call.note.take(),
            restarts: call.restarts,
        }
    }
}
