//! In-dialog requests: BYE, re-INVITE and UPDATE (offer/answer relayed with the SDP rewrite,
//! hold/resume, re-keying, 491 on glare), PRACK (reliable provisionals passed through), INFO,
//! OPTIONS, MESSAGE and NOTIFY relayed; ACK for 2xx forwarded leg to leg. Session refreshes
//! Tollgate sends itself are in `session`.
//!
//! What concerns the call alone (which dialog a request belongs to, how a BYE ends it, the
//! relayed copy of a request, the relay or ACK a response or ACK completes, a PRACK's mapping)
//! is methods on `Call`, `Leg` and `Setup` at the end of the file.

use tollgate_sip::{DialogError, HeaderName, Message, Method, Refresher, TxId, Via};

use crate::b2bua::B2bua;
use crate::call::{
    AckPlan, AckWait, Call, CalleeOffer, Leg, OfferState, PrackMap, Relay, Setup, TxRole,
};
use crate::calls::dialog_key;
use crate::effects::Effects;
use crate::headers::copy_headers;
use crate::newcall::Received;
use crate::own_headers;
use crate::setup::{sdp_body, set_sdp};
use crate::timers::{TimerPurpose, later};
use crate::types::{CallId, EndCause, Side};

/// Why the other leg's 2xx to a relayed offer/answer could not be used.
#[derive(Debug, Clone, Copy)]
enum Broken {
    /// It carried no SDP where RFC 3264 requires an answer or an offer.
    NoSdp,
    /// Its SDP could not be negotiated.
    BadSdp,
}

impl Broken {
    /// The call's end cause and the status sent to the requester.
    fn outcome(self) -> (EndCause, u16) {
        match self {
            Broken::NoSdp => (EndCause::ProtocolError, 502),
            Broken::BadSdp => (EndCause::MediaNegotiation, 488),
        }
    }

    fn warning(self) -> &'static str {
        match self {
            Broken::NoSdp => "the other leg's 2xx carried no SDP",
            Broken::BadSdp => "the other leg's SDP could not be negotiated",
        }
    }
}

/// The SDP for the requester and its ACK plan, or why the 2xx is unusable (and whether it
/// must be ACKed).
type RelayedSdp = Result<(Option<Vec<u8>>, AckPlan), (bool, Broken)>;

/// One request to relay to the other leg.
struct Relayed<'m> {
    /// The requester's server transaction.
    server_tx: TxId,
    /// The side the request came from.
    from: Side,
    msg: &'m Message,
    /// The SDP for the relayed copy (INVITE/UPDATE), already rewritten.
    body: Option<Vec<u8>>,
    offer: OfferState,
}

impl B2bua {
    /// A request with a To tag.
    pub(crate) fn in_dialog(&mut self, req: Received, fx: &mut Effects<'_>) {
        let Received { from, conn, msg } = req;
        let (tx, side, now) = (from.tx, from.side, fx.now);
        let Some(method) = msg.method().cloned() else {
            return;
        };
        let key = dialog_key(
            side,
            msg.call_id().unwrap_or(""),
            msg.to().and_then(|t| t.tag()).unwrap_or(""),
        );
        // A dialog index entry without its call is treated like no dialog at all.
        let Some(id) = self
            .calls
            .by_dialog(&key)
            .filter(|id| self.calls.contains_key(id))
        else {
            self.refuse_no_such_call(from, &method, fx);
            return;
        };
        self.touch(id);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if let Some(c) = conn {
            call.leg_mut(side).conn = Some(c);
        }
        let Some(check) = call.on_request(side, &msg) else {
            self.refuse_no_such_call(from, &method, fx);
            return;
        };
        if let Err(e) = check {
            let code = e.response().map_or(400, |(c, _)| c);
            self.reply(tx, code, None, now, |_| {});
            return;
        }
        let in_setup = call.in_setup();
        let negotiating = call.negotiating();
        let bye = call.bye_outcome(side);
        match method {
            Method::Bye => {
                self.reply(tx, 200, None, now, |_| {});
                let (cause, status) = bye;
                // The hang-up cause (RFC 3326 Reason, e.g. a Q.850 cause from the PSTN) goes on
                // to the other leg.
                let reason = msg
                    .headers
                    .get_value(&HeaderName::Reason)
                    .map(str::to_owned);
                self.end_call(id, cause, status, reason.as_deref(), fx);
            }
            Method::Invite | Method::Update => {
                if (method == Method::Invite && in_setup) || negotiating {
                    self.reply(tx, 491, None, now, |r| {
                        own_headers::retry_after(r, 1);
                    });
                    return;
                }
                self.relay_offer(id, tx, side, &msg, fx);
            }
            Method::Prack => self.relay_prack(id, tx, side, &msg, fx),
            Method::Info | Method::Options | Method::Message | Method::Notify => {
                let r = Relayed {
                    server_tx: tx,
                    from: side,
                    msg: &msg,
                    body: None,
                    offer: OfferState::None,
                };
                self.relay(id, r, fx);
            }
            _ => self.reply(tx, 405, None, now, |r| {
                own_headers::set_allow(r);
            }),
        }
    }

    /// Builds the request for the other leg and sends it; registers the relay.
    fn relay(&mut self, id: CallId, r: Relayed<'_>, fx: &mut Effects<'_>) -> bool {
        let Relayed {
            server_tx,
            from,
            msg,
            body,
            offer,
        } = r;
        let now = fx.now;
        let Some(method) = msg.method().cloned() else {
            return false;
        };
        let to = from.other();
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let transport = call.transport(to);
        let target = call.target(&self.transport_flows, to);
        let via = self.via(to, transport);
        let pass = &self.cfg.sip.pass_headers;
        let Some(req) = self
            .calls
            .get_mut(&id)
            .and_then(|c| c.relay_request(from, msg, (via, body), pass))
        else {
            self.reply(server_tx, 500, None, now, |r| {
                own_headers::retry_after(r, 1);
            });
            return false;
        };
        let Some(client_tx) = self.send_request(to, target, req, now) else {
            if offer == OfferState::FromRequester {
                self.offer_failed(id);
            }
            self.reply(server_tx, 503, None, now, |_| {});
            return false;
        };
        self.register_tx(id, server_tx, TxRole::RelayServer);
        self.register_tx(id, client_tx, TxRole::RelayClient);
        let guard = (method == Method::Invite).then(|| {
            let at = later(now, self.cfg.sip.no_answer());
            self.timers
                .set(TimerPurpose::InviteGuard(id, client_tx), at, fx.out)
        });
        if let Some(c) = self.calls.get_mut(&id) {
            c.relays.push(Relay {
                method,
                from,
                server_tx,
                client_tx,
                offer,
                guard,
            });
        }
        true
    }

    /// re-INVITE / UPDATE: rewrite the offer (if any) and relay.
    fn relay_offer(
        &mut self,
        id: CallId,
        tx: TxId,
        from: Side,
        msg: &Message,
        fx: &mut Effects<'_>,
    ) {
        let is_invite = msg.method() == Some(&Method::Invite);
        let (body, state) = match sdp_body(msg).map(<[u8]>::to_vec) {
            Some(b) => match self.take_offer(id, from, &b) {
                Ok(o) => (Some(o), OfferState::FromRequester),
                Err(code) => {
                    self.reply(tx, code, None, fx.now, |_| {});
                    return;
                }
            },
            None if is_invite => (None, OfferState::InResponse),
            None => (None, OfferState::None),
        };
        let r = Relayed {
            server_tx: tx,
            from,
            msg,
            body,
            offer: state,
        };
        self.relay(id, r, fx);
    }

    /// PRACK from the caller for a reliable provisional we relayed: PRACK the callee's, with
    /// the answer when the provisional carried the callee's offer (delayed offer).
    fn relay_prack(
        &mut self,
        id: CallId,
        tx: TxId,
        from: Side,
        msg: &Message,
        fx: &mut Effects<'_>,
    ) {
        let rseq = msg
            .headers
            .get_value(&HeaderName::RAck)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u32>().ok());
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let map = call.setup().and_then(|s| s.prack_map(rseq?));
        let Some(map) = map.filter(|_| from == call.caller()) else {
            self.reply(tx, 481, None, fx.now, |_| {});
            return;
        };
        let to = from.other();
        // The answer to the callee's offer (only taken when that offer is pending).
        let answer = match self.take_answer(id, from, msg, fx) {
            Ok(a) => a,
            Err(()) => {
                self.reply(tx, 488, None, fx.now, |r| {
                    own_headers::warning(r, "the answer in the PRACK could not be negotiated");
                });
                self.end_call(id, EndCause::MediaNegotiation, 488, None, fx);
                return;
            }
        };
        if answer.is_some() {
            self.finish_offer(id);
            if let Some(s) = self.calls.get_mut(&id).and_then(|c| c.setup_mut()) {
                s.early_exchanged();
            }
        }
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let transport = call.transport(to);
        let target = call.target(&self.transport_flows, to);
        let via = self.via(to, transport);
        let Some(d) = self
            .calls
            .get_mut(&id)
            .and_then(|c| c.setup_mut())
            .and_then(|s| s.early_mut(&map.callee_tag))
        else {
            self.reply(tx, 481, None, fx.now, |_| {});
            return;
        };
        let mut req = d.new_request(Method::Prack, via);
        own_headers::rack(&mut req, map.callee_rseq, map.callee_cseq);
        if answer.is_some() {
            set_sdp(&mut req, answer);
        }
        let Some(client_tx) = self.send_request(to, target, req, fx.now) else {
            self.reply(tx, 503, None, fx.now, |_| {});
            return;
        };
        self.register_tx(id, tx, TxRole::RelayServer);
        self.register_tx(id, client_tx, TxRole::RelayClient);
        if let Some(c) = self.calls.get_mut(&id) {
            c.relays.push(Relay {
                method: Method::Prack,
                from,
                server_tx: tx,
                client_tx,
                offer: OfferState::None,
                guard: None,
            });
        }
    }

    /// A response to a relayed request.
    pub(crate) fn relay_response(
        &mut self,
        id: CallId,
        client_tx: TxId,
        msg: Message,
        fx: &mut Effects<'_>,
    ) {
        let Some(code) = msg.status() else { return };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(pos) = call.relays.iter().position(|r| r.client_tx == client_tx) else {
            return;
        };
        if code == 100 {
            return;
        }
        let (method, requester, server_tx, offer) = {
            let r = &call.relays[pos];
            (r.method.clone(), r.from, r.server_tx, r.offer)
        };
        let responder = requester.other();
        if code < 200 {
            self.relay_provisional(id, (responder, server_tx), code, &msg, fx);
            return;
        }
        let removed = call.relays.remove(pos);
        if let Some(g) = removed.guard {
            self.timers.cancel(g, fx.out);
        }
        let session_method = matches!(method, Method::Invite | Method::Update);
        if !(200..300).contains(&code) {
            if offer == OfferState::FromRequester {
                self.offer_failed(id);
            }
            let status = if matches!(code, 401 | 407) { 403 } else { code };
            if let Some(req) = self.layer.request(server_tx) {
                let reason = if status == code { msg.reason() } else { None };
                let mut resp = Message::response_to(req, status, reason, None);
                copy_headers(&msg, responder, &mut resp, &self.cfg.sip.pass_headers);
                let _ = self.layer.send_response(server_tx, resp, fx.now);
            }
            return;
        }
        // 2xx.
        if session_method
            && let Some(d) = self
                .calls
                .get_mut(&id)
                .and_then(|c| c.dialog_mut(responder))
        {
            let _ = d.on_response(&msg);
        }
        let ack = method == Method::Invite;
        let outcome = self.relayed_sdp(id, responder, (offer, ack), &msg, fx);
        let (body, plan) = match outcome {
            Ok(x) => x,
            Err((ack, broken)) => {
                self.relay_broken(id, responder, (server_tx, ack), broken, fx);
                return;
            }
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let transport = call.transport(requester);
        if method == Method::Invite {
            call.ack_wait = Some(AckWait {
                side: requester,
                tx: server_tx,
                plan,
            });
        }
        let contact = self.contact(requester, transport);
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if let Some(req) = self.layer.request(server_tx) {
            let mut resp = Message::response_to(req, code, msg.reason(), None);
            copy_headers(&msg, responder, &mut resp, &self.cfg.sip.pass_headers);
            if session_method {
                resp.headers.set_contact(contact);
                own_headers::allow(&mut resp);
                call.leg(requester).answer_session(&mut resp);
                set_sdp(&mut resp, body);
            } else if !msg.body.is_empty() {
                resp.set_body(msg.headers.content_type().cloned(), msg.body.clone());
            }
            let _ = self.layer.send_response(server_tx, resp, fx.now);
        }
        if session_method {
            // A successful re-INVITE/UPDATE refreshed both legs' sessions.
            for s in [requester, responder] {
                self.arm_session(id, s, None, fx);
            }
        }
    }

    /// A provisional to a relayed re-INVITE: relayed without SDP; a reliable one is PRACKed
    /// here.
    fn relay_provisional(
        &mut self,
        id: CallId,
        (responder, server_tx): (Side, TxId),
        code: u16,
        msg: &Message,
        fx: &mut Effects<'_>,
    ) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let reliable = msg
            .headers
            .require()
            .any(|t| t.eq_ignore_ascii_case("100rel"));
        if reliable {
            let transport = call.transport(responder);
            let target = call.target(&self.transport_flows, responder);
            let via = self.via(responder, transport);
            if let Some(p) = self
                .calls
                .get_mut(&id)
                .and_then(|c| c.dialog_mut(responder))
                .and_then(|d| d.prack(msg, via))
            {
                let _ = self.send_request(responder, target, p, fx.now);
            }
        }
        if let Some(req) = self.layer.request(server_tx) {
            let mut resp = Message::response_to(req, code, msg.reason(), None);
            copy_headers(msg, responder, &mut resp, &self.cfg.sip.pass_headers);
            let _ = self.layer.send_response(server_tx, resp, fx.now);
        }
    }

    /// The SDP of the other leg's 2xx to a relayed request, rewritten for the requester, and
    /// what the requester's ACK must do; the error says why the 2xx is unusable (and whether
    /// it must be ACKed).
    fn relayed_sdp(
        &mut self,
        id: CallId,
        responder: Side,
        (offer, ack): (OfferState, bool),
        msg: &Message,
        fx: &mut Effects<'_>,
    ) -> RelayedSdp {
        match offer {
            OfferState::FromRequester => match self.take_answer(id, responder, msg, fx) {
                Ok(Some(b)) => {
                    self.finish_offer(id);
                    Ok((Some(b), AckPlan::Forward))
                }
                Ok(None) => Err((ack, Broken::NoSdp)),
                Err(()) => Err((ack, Broken::BadSdp)),
            },
            OfferState::InResponse => match sdp_body(msg).map(<[u8]>::to_vec) {
                Some(b) => match self.take_offer(id, responder, &b) {
                    Ok(o) => Ok((Some(o), AckPlan::Answer)),
                    Err(_) => Err((true, Broken::BadSdp)),
                },
                None => Err((true, Broken::NoSdp)),
            },
            OfferState::None => Ok((None, AckPlan::Forward)),
        }
    }

    /// The other leg's 2xx to a relayed offer/answer was unusable: ACK it (INVITE), answer the
    /// requester's transaction and end the call (a caller still waiting for its INVITE gets
    /// the same status).
    fn relay_broken(
        &mut self,
        id: CallId,
        responder: Side,
        (server_tx, ack): (TxId, bool),
        broken: Broken,
        fx: &mut Effects<'_>,
    ) {
        let now = fx.now;
        if ack && let Some(call) = self.calls.get(&id) {
            let transport = call.transport(responder);
            let target = call.target(&self.transport_flows, responder);
            let via = self.via(responder, transport);
            if let Some(a) = self
                .calls
                .get_mut(&id)
                .and_then(|c| c.dialog_mut(responder))
                .and_then(|d| d.ack_for_2xx(via))
            {
                self.send_stateless(responder, target, a);
            }
        }
        let (cause, status) = broken.outcome();
        let warning = broken.warning();
        self.reply(server_tx, status, None, now, |r| {
            own_headers::warning(r, warning);
        });
        self.end_call(id, cause, status, None, fx);
    }

    /// A relayed request's transaction on the other leg timed out or failed: 408 back.
    pub(crate) fn relay_failure(&mut self, id: CallId, client_tx: TxId, fx: &mut Effects<'_>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(r) = call.take_relay(client_tx) else {
            return;
        };
        if let Some(g) = r.guard {
            self.timers.cancel(g, fx.out);
        }
        if r.offer == OfferState::FromRequester {
            self.offer_failed(id);
        }
        self.reply(r.server_tx, 408, None, fx.now, |_| {});
    }

    /// ACK for a 2xx we sent: forward it to the other leg (with the answer, when the 2xx
    /// carried the other leg's offer).
    pub(crate) fn on_ack(
        &mut self,
        tx: Option<TxId>,
        flow: tollgate_sip::TransportFlow,
        msg: Message,
        fx: &mut Effects<'_>,
    ) {
        let Some(info) = self.transport_flows.info(flow) else {
            return;
        };
        let side = info.side;
        let id = tx
            .and_then(|t| self.calls.tx(t).map(|(c, _)| c))
            .or_else(|| {
                let key = dialog_key(
                    side,
                    msg.call_id().unwrap_or(""),
                    msg.to().and_then(|t| t.tag()).unwrap_or(""),
                );
                self.calls.by_dialog(&key)
            });
        let Some(id) = id else { return };
        self.touch(id);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(w) = call.take_ack_wait(side, tx) else {
            return;
        };
        let other = side.other();
        let (body, broken) = match w.plan {
            AckPlan::Forward => (None, false),
            AckPlan::Answer => match self.take_answer(id, side, &msg, fx) {
                Ok(Some(b)) => {
                    self.finish_offer(id);
                    (Some(b), false)
                }
                _ => (None, true),
            },
        };
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let transport = call.transport(other);
        let target = call.target(&self.transport_flows, other);
        let via = self.via(other, transport);
        if let Some(mut ack) = self
            .calls
            .get_mut(&id)
            .and_then(|c| c.dialog_mut(other))
            .and_then(|d| d.ack_for_2xx(via))
        {
            if body.is_some() {
                set_sdp(&mut ack, body);
            }
            self.send_stateless(other, target, ack);
        }
        if broken {
            self.end_call(id, EndCause::MediaNegotiation, 200, None, fx);
        }
    }
}

impl Call {
    /// A request of this call's dialog on `side` updates it: the leg's dialog, or (callee leg
    /// in setup) the early dialog of the callee's tag. `None` if there is no such dialog; the
    /// error is how to answer a request that does not fit it.
    fn on_request(&mut self, side: Side, msg: &Message) -> Option<Result<(), DialogError>> {
        let from_tag = msg.from().and_then(|f| f.tag()).unwrap_or("");
        let d = if self.leg(side).dialog.is_some() {
            self.leg_mut(side).dialog.as_mut()
        } else {
            self.setup_mut().and_then(|s| s.early_mut(from_tag))
        };
        Some(d?.on_request(msg))
    }

    /// How a BYE from `side` ends the call: its cause, and the status a caller still waiting
    /// for its final response gets.
    fn bye_outcome(&self, side: Side) -> (EndCause, u16) {
        let in_setup = self.in_setup();
        if in_setup && side == self.caller() {
            (EndCause::Cancelled, 487)
        } else if in_setup {
            (EndCause::Bye(side), 480)
        } else {
            (EndCause::Bye(side), 200)
        }
    }

    /// The copy of `msg` (received on `from`) for the other leg, on that leg's dialog with
    /// `via` and, for INVITE/UPDATE, `body` (already rewritten) and the leg's session timer;
    /// `pass`: the extra headers that cross. `None` without a dialog to send it on.
    fn relay_request(
        &mut self,
        from: Side,
        msg: &Message,
        (via, body): (Via, Option<Vec<u8>>),
        pass: &[String],
    ) -> Option<Message> {
        let method = msg.method()?.clone();
        let to = from.other();
        let session = self.leg(to).session_terms();
        let d = self.dialog_mut(to)?;
        let mut req = d.new_request(method.clone(), via);
        copy_headers(msg, from, &mut req, pass);
        if matches!(method, Method::Invite | Method::Update) {
            own_headers::allow(&mut req);
            if let Some((interval, we)) = session {
                own_headers::supported(&mut req, &[own_headers::TIMER]);
                own_headers::set_session_expires(
                    &mut req,
                    interval,
                    if we { Refresher::Uac } else { Refresher::Uas },
                );
            }
            set_sdp(&mut req, body);
        } else if !msg.body.is_empty() {
            req.set_body(msg.headers.content_type().cloned(), msg.body.clone());
        }
        Some(req)
    }

    /// The relay whose request went out on `client_tx`, no longer tracked.
    fn take_relay(&mut self, client_tx: TxId) -> Option<Relay> {
        let pos = self.relays.iter().position(|r| r.client_tx == client_tx)?;
        Some(self.relays.remove(pos))
    }

    /// An ACK arrived on `side` (for server transaction `tx`, if known): the 2xx it
    /// acknowledges no longer waits, if it is the one waiting.
    fn take_ack_wait(&mut self, side: Side, tx: Option<TxId>) -> Option<AckWait> {
        let w = self.ack_wait?;
        if w.side != side || tx.is_some_and(|t| t != w.tx) {
            return None;
        }
        self.ack_wait = None;
        Some(w)
    }
}

impl Leg {
    /// The leg's session interval and whether Tollgate refreshes it, once negotiated.
    pub(crate) fn session_terms(&self) -> Option<(u32, bool)> {
        self.session.as_ref().map(|s| (s.interval, s.we_refresh))
    }

    /// A 2xx to this leg's re-INVITE/UPDATE states the leg's session timer (the peer is the
    /// UAC of the transaction): Supported, Require when the peer supports timers, and
    /// Session-Expires with the refresher.
    fn answer_session(&self, resp: &mut Message) {
        if let Some((interval, we)) = self.session_terms() {
            own_headers::supported(resp, &[own_headers::TIMER]);
            if self.peer_timer {
                own_headers::require(resp, own_headers::TIMER);
            }
            own_headers::set_session_expires(
                resp,
                interval,
                if we { Refresher::Uas } else { Refresher::Uac },
            );
        }
    }
}

impl Setup {
    /// The reliable provisional relayed to the caller with RSeq `rseq` (named in its PRACK).
    fn prack_map(&self, rseq: u32) -> Option<PrackMap> {
        self.pracks.iter().find(|p| p.our_rseq == rseq).cloned()
    }

    /// The caller's PRACK answered the callee's delayed offer: the 2xx brings no new SDP.
    fn early_exchanged(&mut self) {
        if self.offer == CalleeOffer::Delayed {
            self.offer = CalleeOffer::EarlyExchange;
        }
    }
}
