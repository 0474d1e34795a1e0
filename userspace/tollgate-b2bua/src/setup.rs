//! Call setup, both directions, once `newcall` has opened the call: the INVITE toward the
//! callee side (and its re-sends on failover / 422), the callee side's responses
//! (18x with early media, reliable provisionals, 2xx; errors go to `failover`) and the session
//! timer negotiation (RFC 4028) done when the call is answered. SDP steps are in `offer`.
//!
//! The steps that concern one call only (is a response from the current attempt, an early
//! answer, the callee's confirmed dialog, the caller's 2xx ending setup, RFC 4028 at answer)
//! are methods on `Call`, `Setup` and `Leg` at the end of the file; `B2bua` looks the call up,
//! calls them and sends what they produce.

use std::time::Instant;

use tollgate_sdp::Sdp;
use tollgate_sip::{
    Dialog, DialogState, HeaderName, Host, MediaType, Message, Method, NameAddr, NewRequest,
    Refresher, SipUri, TxId, Uri,
};

use crate::b2bua::B2bua;
use crate::call::{
    AckPlan, AckWait, Call, CalleeOffer, Leg, PrackMap, SessionTimer, Setup, TxRole,
};
use crate::effects::Effects;
use crate::headers::{copy_headers, crosses};
use crate::own_headers;
use crate::types::{CallEvent, CallId, Direction, EndCause, Output, Side, Target, Transport};

/// The user part of a SIP URI, or the number of a `tel:` URI.
pub(crate) fn uri_user(uri: &Uri) -> Option<String> {
    match uri {
        Uri::Sip(u) => u.user.clone(),
        Uri::Other { scheme, rest } if scheme.eq_ignore_ascii_case("tel") => {
            Some(rest.split(';').next().unwrap_or("").to_owned())
        }
        Uri::Other { .. } => None,
    }
}

/// The SDP body of a message, if it has one.
pub(crate) fn sdp_body(msg: &Message) -> Option<&[u8]> {
    if msg.body.is_empty() {
        return None;
    }
    match msg.headers.content_type() {
        Some(ct) if !ct.is("application", "sdp") => None,
        _ => Some(&msg.body),
    }
}

/// Whether a message's Allow lists UPDATE.
pub(crate) fn allows_update(msg: &Message) -> bool {
    msg.headers
        .get_all(&HeaderName::Allow)
        .flat_map(|h| h.value().split(','))
        .any(|m| m.trim().eq_ignore_ascii_case("UPDATE"))
}

/// Sets an SDP body (or none).
pub(crate) fn set_sdp(msg: &mut Message, body: Option<Vec<u8>>) {
    match body {
        Some(b) => msg.set_body(Some(MediaType::sdp()), b),
        None => msg.set_body(None, Vec::new()),
    }
}

/// Why a callee's 2xx cannot be used: how the call ends (cause, status).
type Unusable = (EndCause, u16);

/// What the callee's 2xx SDP is checked against.
#[derive(Debug)]
struct AnswerSdp {
    /// Our INVITE carried an offer.
    offered: bool,
    /// A delayed offer was answered in a PRACK.
    early_exchange: bool,
    /// Some early answer was received.
    early_answer: bool,
    /// This dialog's own early answer, when another fork's is in force.
    own_early: Option<Vec<u8>>,
}

impl B2bua {
    /// Sends (or re-sends, on failover / 422) the INVITE toward the callee side.
    pub(crate) fn send_callee_invite(&mut self, id: CallId, fx: &mut Effects<'_>) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let Some(setup) = call.setup() else {
            return false;
        };
        let caller = call.caller();
        let callee = caller.other();
        let target = call.leg(callee).fallback;
        let (addr, transport) = match target {
            Target::Addr { addr, transport } => (addr, transport),
            Target::Conn(_) => return false,
        };
        let n = &call.numbers;
        // The Request-URI names the next hop as configured: host, port and transport, so a
        // proxy that resolves it (RFC 3263) reaches the same listener. To carries the bare
        // address of record.
        let host = match call.direction {
            Direction::Inbound => self
                .cfg
                .int
                .host_of(addr)
                .and_then(|h| Host::parse(h).ok())
                .unwrap_or_else(|| Host::ip(addr.ip())),
            Direction::Outbound => Host::ip(addr.ip()),
        };
        let to_uri = SipUri::new(Some(&n.called_sent), host.clone(), None);
        let mut ruri = SipUri::new(Some(&n.called_sent), host, Some(addr.port()));
        ruri.params.set("transport", Some(transport.as_str()));
        let ours = self.sip_addr(callee);
        let mut from = NameAddr::new(Uri::Sip(SipUri::new(
            Some(&n.calling_sent),
            Host::ip(ours.ip()),
            None,
        )))
        .with_param("tag", Some(&call.leg(callee).local_tag));
        from.display = n.display.clone();
        let call_id = call.leg(callee).call_id.clone();
        let cseq = setup.cseq;
        let offer = setup.offer.body().cloned();
        let (se, min_se) = (setup.se, setup.min_se);
        let caller_tx = setup.caller_tx;
        let caller_100rel = call.leg(call.caller()).peer_100rel;
        let caller_requires_100rel = self.layer.request(caller_tx).is_some_and(|r| {
            r.headers
                .require()
                .any(|t| t.eq_ignore_ascii_case("100rel"))
        });
        let via = self.via(callee, transport);
        let contact = self.contact(callee, transport);
        let Some(caller_req) = self.layer.request(caller_tx) else {
            return false;
        };
        let spec = NewRequest {
            method: Method::Invite,
            uri: Uri::Sip(ruri),
            via,
            from,
            to: NameAddr::new(Uri::Sip(to_uri)),
            call_id,
            cseq,
            contact: Some(contact),
            routes: Vec::new(),
            max_forwards: 70,
        };
        let mut req =
            caller_req.derive_request(spec, |n| !crosses(n, caller, &self.cfg.sip.pass_headers));
        let passthrough = self.cfg.sip.prack_passthrough && caller_100rel;
        own_headers::allow(&mut req);
        let mut supported = Vec::new();
        if se > 0 {
            supported.push("timer");
        }
        if passthrough {
            supported.push("100rel");
        }
        own_headers::supported(&mut req, &supported);
        if passthrough && caller_requires_100rel {
            own_headers::require(&mut req, own_headers::REL_100);
        }
        if se > 0 {
            own_headers::session_expires(&mut req, se);
            own_headers::min_se(&mut req, min_se);
        }
        set_sdp(&mut req, offer);
        let Some(tx) = self.send_request(callee, target, req, fx.now) else {
            return false;
        };
        self.register_tx(id, tx, TxRole::CalleeInvite);
        if let Some(s) = self.calls.get_mut(&id).and_then(|c| c.setup_mut()) {
            s.attempt_sent(tx);
        }
        true
    }

    /// A response on a callee-side INVITE transaction.
    pub(crate) fn callee_response(
        &mut self,
        id: CallId,
        tx: TxId,
        msg: Message,
        fx: &mut Effects<'_>,
    ) {
        let Some(code) = msg.status() else { return };
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if !call.is_current_attempt(tx) {
            // Answered already (or an earlier failover attempt): a 2xx from another fork or
            // a stale attempt is ACKed and BYEd; a retransmitted 2xx of the confirmed dialog
            // is ignored.
            if (200..300).contains(&code) && !call.is_confirmed_callee(&msg) {
                self.ack_and_bye(tx, &msg, fx);
            }
            return;
        }
        if code >= 200 {
            let retry_after = msg
                .headers
                .get_value(&HeaderName::RetryAfter)
                .and_then(|v| {
                    let digits = v.trim_start();
                    let end = digits
                        .find(|c: char| !c.is_ascii_digit())
                        .unwrap_or(digits.len());
                    digits.get(..end)?.parse::<u64>().ok()
                })
                .map(std::time::Duration::from_secs);
            self.next_hop_answered(id, code, retry_after, fx);
        }
        match code {
            100 => {}
            101..=199 => self.callee_provisional(id, tx, &msg, fx),
            200..=299 => self.callee_answer(id, tx, &msg, fx),
            _ => self.callee_rejected(id, code, &msg, fx),
        }
    }

    fn callee_provisional(&mut self, id: CallId, tx: TxId, msg: &Message, fx: &mut Effects<'_>) {
        let Some(code) = msg.status() else { return };
        let passthrough_cfg = self.cfg.sip.prack_passthrough;
        let via_transport;
        let callee;
        // The provisional's early dialog is tracked (or it has none): only then is its SDP used.
        let tracked;
        {
            let Some(call) = self.calls.get_mut(&id) else {
                return;
            };
            callee = call.caller().other();
            via_transport = call.transport(callee);
            let Some(setup) = call.setup_mut() else {
                return;
            };
            tracked = setup.track_early(msg, self.layer.request(tx));
        }
        let reliable = msg
            .headers
            .require()
            .any(|t| t.eq_ignore_ascii_case("100rel"))
            && msg.headers.rseq().is_some();
        if reliable {
            // RFC 3262 §4: a retransmission (RSeq not above the last one of that early
            // dialog) is neither PRACKed nor relayed again.
            let tag = msg.to().and_then(|t| t.tag()).unwrap_or("").to_owned();
            let rseq = msg.headers.rseq().unwrap_or(0);
            let Some(setup) = self.calls.get_mut(&id).and_then(|c| c.setup_mut()) else {
                return;
            };
            if !setup.new_rseq(tag, rseq) {
                return;
            }
        }
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let caller = call.caller();
        let relay_reliably = reliable && passthrough_cfg && call.leg(caller).peer_100rel;
        let tag = msg.to().and_then(|t| t.tag()).map(str::to_owned);
        if reliable && !relay_reliably {
            self.prack_callee(id, (callee, via_transport), tag.as_deref(), msg, fx);
        }
        // Early media: an answer in the provisional response.
        let answer = if tracked {
            self.take_answer(id, callee, msg, fx).ok().flatten()
        } else {
            None
        };
        // Delayed offer: the callee's offer in a reliable provisional that goes to the caller
        // reliably too; the caller's PRACK brings the answer (RFC 3262 §5).
        let early_offer = if tracked && answer.is_none() && relay_reliably {
            self.take_early_offer(id, callee, msg)
        } else {
            None
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let caller_transport = call.transport(caller);
        let caller_tag = call.leg(caller).local_tag.clone();
        let Some(setup) = call.setup_mut() else {
            return;
        };
        if answer.is_some()
            && let (Some(t), Some(b)) = (tag.as_deref(), sdp_body(msg))
        {
            setup.early_answer(t, b);
        }
        let caller_tx = setup.caller_tx;
        let mut rseq = None;
        if relay_reliably
            && let (Some(tag), Some(callee_rseq), Some(cseq)) =
                (tag, msg.headers.rseq(), msg.cseq().map(|c| c.seq))
        {
            rseq = Some(call.relay_reliably(tag, callee_rseq, cseq));
        }
        let contact = self.contact(caller, caller_transport);
        let Some(req) = self.layer.request(caller_tx) else {
            return;
        };
        let mut resp = Message::response_to(req, code, msg.reason(), Some(&caller_tag));
        copy_headers(msg, callee, &mut resp, &self.cfg.sip.pass_headers);
        resp.headers.set_contact(contact);
        own_headers::allow(&mut resp);
        if let Some(r) = rseq {
            own_headers::require(&mut resp, own_headers::REL_100);
            own_headers::rseq(&mut resp, r);
        }
        set_sdp(&mut resp, answer.or(early_offer));
        let _ = self.layer.send_response(caller_tx, resp, fx.now);
    }

    /// PRACKs a callee's reliable provisional on its early dialog (`tag`) ourselves, when it
    /// does not go to the caller reliably.
    fn prack_callee(
        &mut self,
        id: CallId,
        (callee, transport): (Side, Transport),
        tag: Option<&str>,
        msg: &Message,
        fx: &mut Effects<'_>,
    ) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let target = call.target(&self.transport_flows, callee);
        let via = self.via(callee, transport);
        let prack = self
            .calls
            .get_mut(&id)
            .and_then(|c| c.setup_mut())
            .and_then(|s| s.early_mut(tag?))
            .and_then(|d| d.prack(msg, via));
        if let Some(p) = prack {
            let _ = self.send_request(callee, target, p, fx.now);
        }
    }

    fn callee_answer(&mut self, id: CallId, tx: TxId, msg: &Message, fx: &mut Effects<'_>) {
        let Some(code) = msg.status() else { return };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let caller = call.caller();
        let callee = caller.other();
        let Some(setup) = call.setup_mut() else {
            return;
        };
        let tag = msg.to().and_then(|t| t.tag()).unwrap_or("").to_owned();
        let Some(dialog) = setup.callee_dialog(&tag, msg, self.layer.request(tx)) else {
            // No usable dialog (e.g. no Contact): nothing can be ACKed or BYEd properly.
            self.end_call(id, EndCause::ProtocolError, 502, None, fx);
            return;
        };
        let sdp = setup.answer_sdp(&tag);
        call.leg_mut(callee).confirm(dialog, msg);

        // SDP: the answer to our offer, or (delayed offer) the callee's offer.
        let (body, plan) = match self.answer_sdp(id, (caller, callee), msg, sdp, fx) {
            Ok(x) => x,
            Err((cause, status)) => {
                self.ack_and_bye(tx, msg, fx);
                self.end_call(id, cause, status, None, fx);
                return;
            }
        };
        if plan == AckPlan::Forward {
            self.finish_offer(id);
        }

        // Session timers (RFC 4028), then the 2xx to the caller.
        let min_se = self.cfg.sip.min_se;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let timers = call.negotiate_session_timers(msg, min_se);
        let caller_transport = call.transport(caller);
        let caller_tag = call.leg(caller).local_tag.clone();
        let Some(setup) = call.answered(fx.now, plan) else {
            return;
        };
        let started = call.start;
        let caller_peer_timer = call.leg(caller).peer_timer;
        let contact = self.contact(caller, caller_transport);
        if let Some(t) = setup.no_answer {
            self.timers.cancel(t, fx.out);
        }
        if let Some(req) = self.layer.request(setup.caller_tx) {
            let mut resp = Message::response_to(req, code, msg.reason(), Some(&caller_tag));
            copy_headers(msg, callee, &mut resp, &self.cfg.sip.pass_headers);
            resp.headers.set_contact(contact);
            own_headers::allow(&mut resp);
            if let Some((interval, refresher)) = timers {
                own_headers::supported(&mut resp, &[own_headers::TIMER]);
                if caller_peer_timer {
                    own_headers::require(&mut resp, own_headers::TIMER);
                }
                own_headers::set_session_expires(&mut resp, interval, refresher);
            }
            set_sdp(&mut resp, body);
            let _ = self.layer.send_response(setup.caller_tx, resp, fx.now);
        }
        fx.out.push(Output::Event(CallEvent::Answered {
            call: id,
            setup: fx.now.saturating_duration_since(started),
        }));
        if timers.is_some() {
            self.arm_session(id, caller, None, fx);
            self.arm_session(id, callee, None, fx);
        }
    }

    /// The SDP of the callee's 2xx: the answer to our offer (or a fork's own early answer, or
    /// the early answer in force), nothing new after an early exchange, or (delayed offer) the
    /// callee's offer for the caller. The error is how the call ends (the 2xx is ACKed and
    /// BYEd).
    fn answer_sdp(
        &mut self,
        id: CallId,
        (caller, callee): (Side, Side),
        msg: &Message,
        sdp: AnswerSdp,
        fx: &mut Effects<'_>,
    ) -> Result<(Option<Vec<u8>>, AckPlan), Unusable> {
        if sdp.offered {
            match self.take_answer(id, callee, msg, fx) {
                Ok(Some(b)) => Ok((Some(b), AckPlan::Forward)),
                Ok(None) if sdp.own_early.is_some() => {
                    // The 2xx confirms a fork whose early answer was superseded by another
                    // fork's: its own answer goes back in force.
                    let body = sdp.own_early.unwrap_or_default();
                    match self.take_answer_sdp(id, callee, &body, fx) {
                        Ok(Some(b)) => Ok((Some(b), AckPlan::Forward)),
                        _ => Err((EndCause::MediaNegotiation, 488)),
                    }
                }
                Ok(None) if sdp.early_answer => {
                    let last = self
                        .calls
                        .get(&id)
                        .and_then(|c| c.media.as_ref())
                        .and_then(|m| m.last_sent(caller))
                        .map(Sdp::to_bytes);
                    Ok((last, AckPlan::Forward))
                }
                Ok(None) => Err((EndCause::ProtocolError, 502)),
                Err(()) => Err((EndCause::MediaNegotiation, 488)),
            }
        } else if sdp.early_exchange {
            // Offer and answer went in a reliable provisional and its PRACK: nothing new here.
            Ok((None, AckPlan::Forward))
        } else {
            match sdp_body(msg).map(<[u8]>::to_vec) {
                Some(b) => match self.take_offer(id, callee, &b) {
                    Ok(o) => Ok((Some(o), AckPlan::Answer)),
                    Err(_) => Err((EndCause::MediaNegotiation, 488)),
                },
                None => Err((EndCause::ProtocolError, 502)),
            }
        }
    }
}

impl Setup {
    /// The INVITE of a new attempt is sent on `tx`: nothing of the previous one's responses
    /// is kept.
    fn attempt_sent(&mut self, tx: TxId) {
        self.callee_tx = Some(tx);
        self.early.clear();
    }

    /// Records the SDP answer in a provisional of early dialog `tag`: the answer in force.
    fn early_answer(&mut self, tag: &str, body: &[u8]) {
        self.early_answers.retain(|(x, _)| x != tag);
        self.early_answers.push((tag.to_owned(), body.to_vec()));
    }

    /// The callee's dialog of its 2xx, confirmed: its early dialog (`tag`), or one created
    /// from the 2xx and our INVITE (`invite`). `None` if it is unusable (e.g. no Contact).
    fn callee_dialog(
        &mut self,
        tag: &str,
        msg: &Message,
        invite: Option<&Message>,
    ) -> Option<Dialog> {
        let mut dialog = match self.early.iter().position(|d| d.id.remote_tag == tag) {
            Some(pos) => {
                let mut d = self.early.remove(pos);
                d.on_response(msg).ok().map(|()| d)
            }
            None => invite.and_then(|req| Dialog::from_uac(req, msg).ok()),
        }?;
        dialog.state = DialogState::Confirmed;
        Some(dialog)
    }

    /// What the SDP of the 2xx on early dialog `tag` is checked against.
    fn answer_sdp(&self, tag: &str) -> AnswerSdp {
        AnswerSdp {
            offered: self.offer.body().is_some(),
            early_exchange: self.offer == CalleeOffer::EarlyExchange,
            early_answer: !self.early_answers.is_empty(),
            // Forking: this dialog's own early answer, when another fork's is in force.
            own_early: self
                .early_answers
                .iter()
                .find(|(t, _)| t == tag)
                .filter(|_| self.early_answers.last().map(|(t, _)| t.as_str()) != Some(tag))
                .map(|(_, b)| b.clone()),
        }
    }
}

impl Leg {
    /// The callee's 2xx confirmed `dialog`: the leg has it, and what the peer supports.
    fn confirm(&mut self, dialog: Dialog, msg: &Message) {
        self.dialog = Some(dialog);
        self.peer_update = allows_update(msg);
        self.peer_timer = msg.headers.supports("timer");
        self.peer_100rel = msg.headers.supports("100rel");
    }
}

impl Call {
    /// `tx` is the current attempt's INVITE toward the callee side (the call is in setup).
    fn is_current_attempt(&self, tx: TxId) -> bool {
        self.setup().and_then(|s| s.callee_tx) == Some(tx)
    }

    /// `msg` is from the callee's confirmed dialog (a retransmitted 2xx, once answered).
    fn is_confirmed_callee(&self, msg: &Message) -> bool {
        let callee = self.caller().other();
        !self.in_setup()
            && self
                .leg(callee)
                .dialog
                .as_ref()
                .is_some_and(|d| Some(d.id.remote_tag.as_str()) == msg.to().and_then(|t| t.tag()))
    }

    /// A callee's reliable provisional (early dialog `tag`, its RSeq and CSeq) goes to the
    /// caller reliably: the RSeq it gets on the caller leg, mapped for the caller's PRACK.
    fn relay_reliably(&mut self, tag: String, callee_rseq: u32, callee_cseq: u32) -> u32 {
        let caller = self.caller();
        let leg = self.leg_mut(caller);
        leg.rseq = leg.rseq.wrapping_add(1);
        let our = leg.rseq;
        if let Some(setup) = self.setup_mut() {
            setup.map_prack(PrackMap {
                our_rseq: our,
                callee_tag: tag,
                callee_rseq,
                callee_cseq,
            });
        }
        our
    }

    /// The caller gets its 2xx at `now`: setup is over, the caller's dialog confirmed, and the
    /// 2xx awaits its ACK (`plan`). The setup state, if the call was in setup.
    fn answered(&mut self, now: Instant, plan: AckPlan) -> Option<Box<Setup>> {
        let caller = self.caller();
        let setup = self.take_setup()?;
        if let Some(d) = self.leg_mut(caller).dialog.as_mut() {
            d.state = DialogState::Confirmed;
        }
        self.answer = Some(now);
        self.ack_wait = Some(AckWait {
            side: caller,
            tx: setup.caller_tx,
            plan,
        });
        Some(setup)
    }

    /// RFC 4028 at answer time. Callee leg: the interval and refresher of its 2xx (none: we
    /// refresh at the interval we asked). Caller leg: the same interval; the caller refreshes
    /// if it supports timers (or the refresher it asked for), else we do. Returns the caller's
    /// 2xx Session-Expires (interval, refresher).
    pub(crate) fn negotiate_session_timers(
        &mut self,
        resp: &Message,
        min_se: u32,
    ) -> Option<(u32, Refresher)> {
        let call = self;
        let setup = call.setup()?;
        if setup.se == 0 {
            return None;
        }
        let (interval, callee_we) = match resp.headers.session_expires() {
            Some(se) => (se.delta.max(min_se), se.refresher() != Some(Refresher::Uas)),
            None => (setup.se, true),
        };
        let caller = call.caller();
        let callee = caller.other();
        let caller_leg = call.leg(caller);
        let caller_we = if caller_leg.peer_timer {
            caller_leg.asked_refresher == Some(Refresher::Uas)
        } else {
            true
        };
        call.leg_mut(callee).session = Some(SessionTimer {
            interval,
            we_refresh: callee_we,
            timer: None,
        });
        call.leg_mut(caller).session = Some(SessionTimer {
            interval,
            we_refresh: caller_we,
            timer: None,
        });
        Some((
            interval,
            if caller_we {
                Refresher::Uas
            } else {
                Refresher::Uac
            },
        ))
    }
}
