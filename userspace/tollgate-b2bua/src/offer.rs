//! The call's SDP offer/answer steps on top of its `tollgate-sdp` media session: taking an
//! offer or an answer from one leg and rewriting it for the other (relay ports allocated and
//! released with the pools), and the bookkeeping of an exchange that failed or finished.
//!
//! It must not send anything nor end calls: callers decide what a failed negotiation means.

use tollgate_sdp::{MediaSession, Sdp};
use tollgate_sip::Message;

use crate::b2bua::B2bua;
use crate::call::{Call, CalleeOffer};
use crate::effects::Effects;
use crate::media::sync_flows;
use crate::setup::sdp_body;
use crate::types::{CallId, Side};

impl B2bua {
    /// The callee's offer in a provisional, for a delayed-offer call whose offer/answer has not
    /// started: rewritten for the caller's leg.
    pub(crate) fn take_early_offer(
        &mut self,
        id: CallId,
        callee: Side,
        msg: &Message,
    ) -> Option<Vec<u8>> {
        let body = sdp_body(msg)?;
        if !self.calls.get(&id)?.awaits_early_offer(callee) {
            return None;
        }
        let body = body.to_vec();
        self.take_offer(id, callee, &body).ok()
    }

    /// Processes an SDP answer from `from` to the pending offer: installs/updates the flows
    /// and returns the rewritten answer. `Ok(None)`: no SDP or no offer pending;
    /// `Err(())`: the answer is unusable.
    pub(crate) fn take_answer(
        &mut self,
        id: CallId,
        from: Side,
        msg: &Message,
        fx: &mut Effects<'_>,
    ) -> Result<Option<Vec<u8>>, ()> {
        match sdp_body(msg) {
            Some(body) => self.take_answer_sdp(id, from, body, fx),
            None => Ok(None),
        }
    }

    /// [`Self::take_answer`] of an SDP body.
    pub(crate) fn take_answer_sdp(
        &mut self,
        id: CallId,
        from: Side,
        body: &[u8],
        fx: &mut Effects<'_>,
    ) -> Result<Option<Vec<u8>>, ()> {
        let Some(call) = self.calls.get_mut(&id) else {
            return Ok(None);
        };
        let Some(media) = call.media.as_mut() else {
            return Ok(None);
        };
        match media.pending_offerer() {
            Some(o) if o == from.other() => {}
            _ => return Ok(None),
        }
        let sdp = Sdp::parse(body).map_err(|_| ())?;
        let ans = media
            .process_answer(&self.rewrite, from, &sdp)
            .map_err(|_| ())?;
        for r in &ans.released {
            self.pools.release(r);
        }
        sync_flows(
            id,
            &mut call.flows,
            &mut call.flow_ids,
            &ans.plan,
            call.learn_ns,
            &mut self.next_flow,
            fx.out,
        );
        Ok(Some(ans.sdp.to_bytes()))
    }

    /// Processes an SDP offer from `from` (re-INVITE, UPDATE, an offer in a 2xx): allocates
    /// ports and returns the rewritten offer. `Err(status)` to answer the request with.
    pub(crate) fn take_offer(
        &mut self,
        id: CallId,
        from: Side,
        body: &[u8],
    ) -> Result<Vec<u8>, u16> {
        let sdp = Sdp::parse(body).map_err(|_| 400u16)?;
        let Some(media) = self.calls.get_mut(&id).and_then(|c| c.media.as_mut()) else {
            return Err(500);
        };
        match offer_with_ports(
            &mut self.pools,
            &mut self.rng,
            &self.rewrite,
            media,
            from,
            &sdp,
        ) {
            Ok(o) => Ok(o),
            Err(e) => Err(e.status_code()),
        }
    }

    /// Drops a pending offer that failed, freeing the ports only it held.
    pub(crate) fn offer_failed(&mut self, id: CallId) {
        if let Some(m) = self.calls.get_mut(&id).and_then(|c| c.media.as_mut()) {
            for r in m.offer_failed() {
                self.pools.release(&r);
            }
        }
    }

    /// The offer/answer exchange is complete: frees ports only the pending offer held.
    pub(crate) fn finish_offer(&mut self, id: CallId) {
        if let Some(m) = self.calls.get_mut(&id).and_then(|c| c.media.as_mut()) {
            for r in m.finish_offer() {
                self.pools.release(&r);
            }
        }
    }
}

impl Call {
    /// A delayed-offer call in setup whose offer/answer has not started: the callee's offer
    /// may come in a provisional.
    fn awaits_early_offer(&self, callee: Side) -> bool {
        let idle = self
            .media
            .as_ref()
            .is_some_and(|m| m.pending_offerer().is_none() && m.last_sent(callee).is_none());
        self.setup()
            .is_some_and(|s| s.offer == CalleeOffer::Delayed)
            && idle
    }
}

/// Runs an SDP offer from `from` through the call's media session with relay ports from
/// `pools`, and returns the rewritten offer. Ports the session lets go are returned to the
/// pools; on failure so is every port this offer took.
pub(crate) fn offer_with_ports(
    pools: &mut crate::media::Pools,
    rng: &mut crate::b2bua::Rng,
    rewrite: &tollgate_sdp::RewriteConfig,
    media: &mut MediaSession,
    from: Side,
    sdp: &Sdp,
) -> Result<Vec<u8>, tollgate_sdp::NegotiationError> {
    let mut allocated = Vec::new();
    let result = media.process_offer(
        rewrite,
        from,
        sdp,
        &mut |req| {
            let r = pools.alloc(req);
            if let Some(r) = r {
                allocated.push(r);
            }
            r
        },
        &mut |b: &mut [u8]| rng(b),
    );
    match result {
        Ok(o) => {
            for r in &o.released {
                pools.release(r);
            }
            Ok(o.sdp.to_bytes())
        }
        Err(e) => {
            for r in &allocated {
                pools.release(r);
            }
            Err(e)
        }
    }
}
