//! Session timers (RFC 4028) of confirmed legs: arming a leg's refresh or expiry timer,
//! the refresh Tollgate sends itself (UPDATE when the peer allows it, else re-INVITE with the
//! SDP last sent on that leg) and its outcome, a leg that expired (BYE with Reason on both legs),
//! and Timer C on relayed or own re-INVITEs.
//!
//! It must not negotiate the interval (that is done at answer, in `setup`) nor relay peers'
//! requests (`indialog`).

use std::time::Duration;

use tollgate_sip::{Message, Method, TxId};

use crate::b2bua::B2bua;
use crate::call::{OwnRefresh, TxRole};
use crate::effects::Effects;
use crate::timers::{TimerPurpose, later};
use crate::types::{CallId, EndCause, Side};

const SESSION_EXPIRED: &str = "SIP;cause=408;text=\"Session Timer Expired\"";

impl B2bua {
    /// Re-arms a leg's session timer: refresh at half the interval when we refresh, expiry
    /// at interval minus min(32 s, interval/3) when the peer does (RFC 4028 §10).
    pub(crate) fn arm_session(
        &mut self,
        call: CallId,
        side: Side,
        after: Option<Duration>,
        fx: &mut Effects<'_>,
    ) {
        let Some(s) = self
            .calls
            .get_mut(&call)
            .and_then(|c| c.leg_mut(side).session.as_mut())
        else {
            return;
        };
        let old = s.timer.take();
        let delay = after.unwrap_or_else(|| s.due_in());
        if let Some(t) = old {
            self.timers.cancel(t, fx.out);
        }
        let id = self.timers.set(
            TimerPurpose::Session(call, side),
            later(fx.now, delay),
            fx.out,
        );
        if let Some(s) = self
            .calls
            .get_mut(&call)
            .and_then(|c| c.leg_mut(side).session.as_mut())
        {
            s.timer = Some(id);
        }
    }

    /// A leg's session timer fired: refresh it (we are the refresher) or end the call (the
    /// peer should have refreshed).
    pub(crate) fn on_session_timer(&mut self, id: CallId, side: Side, fx: &mut Effects<'_>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(s) = call.leg_mut(side).session.as_mut() else {
            return;
        };
        s.timer = None;
        let (interval, we) = (s.interval, s.we_refresh);
        if !we {
            self.end_call(id, EndCause::SessionExpired, 200, Some(SESSION_EXPIRED), fx);
            return;
        }
        if call.negotiating() {
            // Something is in progress (its success refreshes the session); look again soon.
            self.arm_session(id, side, Some(Duration::from_secs(2)), fx);
            return;
        }
        let transport = call.transport(side);
        let target = call.target(&self.transport_flows, side);
        let via = self.via(side, transport);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some((method, req)) = call.refresh_request(side, interval, via) else {
            return;
        };
        match self.send_request(side, target, req, fx.now) {
            Some(tx) => {
                self.register_tx(id, tx, TxRole::Refresh(side));
                let guard = (method == Method::Invite).then(|| {
                    let at = later(fx.now, self.cfg.sip.no_answer());
                    self.timers
                        .set(TimerPurpose::InviteGuard(id, tx), at, fx.out)
                });
                if let Some(c) = self.calls.get_mut(&id) {
                    c.refresh = Some(OwnRefresh { tx, method, guard });
                }
            }
            None => self.end_call(id, EndCause::RefreshFailed, 200, None, fx),
        }
    }

    /// A response to our session refresh.
    pub(crate) fn refresh_response(
        &mut self,
        id: CallId,
        side: Side,
        tx: TxId,
        msg: &Message,
        fx: &mut Effects<'_>,
    ) {
        let Some(code) = msg.status() else { return };
        if code < 200 {
            return;
        }
        if !(200..300).contains(&code) {
            self.refresh_failed(id, side, tx, code, fx);
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(OwnRefresh { method, guard, .. }) = call.refresh_answered(side, msg) else {
            return;
        };
        if let Some(g) = guard {
            self.timers.cancel(g, fx.out);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if method == Method::Invite {
            let transport = call.transport(side);
            let target = call.target(&self.transport_flows, side);
            let via = self.via(side, transport);
            if let Some(ack) = self
                .calls
                .get_mut(&id)
                .and_then(|c| c.leg_mut(side).dialog.as_ref())
                .and_then(|d| d.ack_for_2xx(via))
            {
                self.send_stateless(side, target, ack);
            }
        }
        self.arm_session(id, side, None, fx);
    }

    /// Our refresh failed: 491 -> retry shortly; UPDATE refused as unknown -> retry with
    /// re-INVITE; anything else (408, 481, timeout...) -> the session is gone, end the call.
    pub(crate) fn refresh_failed(
        &mut self,
        id: CallId,
        side: Side,
        tx: TxId,
        code: u16,
        fx: &mut Effects<'_>,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(OwnRefresh { method, guard, .. }) = call.take_refresh(tx) else {
            return;
        };
        let peer_update = call.leg(side).peer_update;
        if let Some(g) = guard {
            self.timers.cancel(g, fx.out);
        }
        match code {
            491 => self.arm_session(id, side, Some(Duration::from_secs(2)), fx),
            405 | 501 if method == Method::Update && peer_update => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.leg_mut(side).peer_update = false;
                }
                self.arm_session(id, side, Some(Duration::from_secs(1)), fx);
            }
            _ => self.end_call(id, EndCause::RefreshFailed, 200, None, fx),
        }
    }

    /// Timer C: a relayed re-INVITE (or our refresh re-INVITE) got no final response in
    /// time. The peer is broken; the call ends (the pending INVITE is CANCELed, the requester
    /// gets 487, both legs a BYE).
    pub(crate) fn on_invite_guard(&mut self, id: CallId, tx: TxId, fx: &mut Effects<'_>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if let Some(cause) = call.invite_guard_fired(tx) {
            self.end_call(id, cause, 200, None, fx);
        }
    }
}
