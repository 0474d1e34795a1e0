//! Per-call state: the two legs (one SIP dialog each), the SDP session, installed flows, the
//! setup phase, in-dialog relays and session timers.
//!
//! The methods here concern one call only and need no other core state: its phase, legs and
//! dialogs, session-timer arithmetic and its own refresh, relay and ACK bookkeeping, the
//! store hash. Steps of one handler live beside it (`impl Call` at the end of `setup.rs`,
//! `indialog.rs`, `failover.rs`, `teardown.rs`, `offer.rs`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tollgate_common::spec::MediaFlowSpec;
use tollgate_sdp::MediaSession;
use tollgate_sip::{Dialog, Message, Method, Refresher, TxId, Via};

use crate::own_headers;
use crate::record::SrtpPosition;
use crate::setup::set_sdp;
use crate::transport::TransportFlows;
use crate::types::{ConnId, Direction, EndCause, Side, Target, TimerId, Transport};

/// What a transaction is to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxRole {
    /// The caller's INVITE (server).
    CallerInvite,
    /// The INVITE toward the callee (client).
    CalleeInvite,
    /// A request received on one leg and relayed (server side).
    RelayServer,
    /// The relayed copy on the other leg (client side).
    RelayClient,
    /// A session refresh Tollgate sent on this leg.
    Refresh(Side),
}

/// RFC 4028 state of one leg.
#[derive(Debug, Clone)]
pub(crate) struct SessionTimer {
    /// Session interval, seconds.
    pub(crate) interval: u32,
    /// Tollgate refreshes this leg (else the peer does and Tollgate watches for expiry).
    pub(crate) we_refresh: bool,
    /// The armed refresh or expiry timer.
    pub(crate) timer: Option<TimerId>,
}

impl SessionTimer {
    /// When its timer is due from now: refresh at half the interval when we refresh, expiry
    /// at interval minus min(32 s, interval/3) when the peer does (RFC 4028 §10). The
    /// interval is at least RFC 4028's floor of 90 s, whatever a peer said.
    pub(crate) fn due_in(&self) -> Duration {
        let interval = u64::from(self.interval.max(90));
        if self.we_refresh {
            Duration::from_secs(interval / 2)
        } else {
            Duration::from_secs(interval - (interval / 3).min(32))
        }
    }
}

/// One leg: one SIP dialog with one peer.
#[derive(Debug)]
pub(crate) struct Leg {
    pub(crate) side: Side,
    /// Call-ID on this leg.
    pub(crate) call_id: String,
    /// Our tag on this leg.
    pub(crate) local_tag: String,
    /// The dialog (caller leg: from the INVITE; callee leg: once a 2xx confirmed it).
    pub(crate) dialog: Option<Dialog>,
    /// The connection the peer used, while open (requests prefer it).
    pub(crate) conn: Option<ConnId>,
    /// Where new requests go when `conn` is gone.
    pub(crate) fallback: Target,
    /// The peer supports reliable provisional responses.
    pub(crate) peer_100rel: bool,
    /// The peer supports session timers.
    pub(crate) peer_timer: bool,
    /// The peer allows UPDATE.
    pub(crate) peer_update: bool,
    /// The refresher the peer asked for in its INVITE (caller leg).
    pub(crate) asked_refresher: Option<tollgate_sip::Refresher>,
    /// RFC 4028 state, once confirmed.
    pub(crate) session: Option<SessionTimer>,
    /// Last RSeq we used on this leg.
    pub(crate) rseq: u32,
}

impl Leg {
    pub(crate) fn new(side: Side, call_id: String, local_tag: String, fallback: Target) -> Leg {
        Leg {
            side,
            call_id,
            local_tag,
            dialog: None,
            conn: None,
            fallback,
            peer_100rel: false,
            peer_timer: false,
            peer_update: false,
            asked_refresher: None,
            session: None,
            rseq: 0,
        }
    }
}

/// A reliable provisional response relayed to the caller, for mapping its PRACK.
#[derive(Debug, Clone)]
pub(crate) struct PrackMap {
    /// RSeq we put on the caller leg.
    pub(crate) our_rseq: u32,
    /// The callee's early dialog (its To tag).
    pub(crate) callee_tag: String,
    /// The callee's RSeq.
    pub(crate) callee_rseq: u32,
    /// The callee INVITE's CSeq number.
    pub(crate) callee_cseq: u32,
}

/// Another place to send the callee-side INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// Outbound: the next trunk of the route (by name).
    Trunk(String),
    /// Inbound: the next internal next hop.
    NextHop(SocketAddr),
}

/// The offer/answer of the callee leg during setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CalleeOffer {
    /// Our INVITE toward the callee carries this offer (reused on failover).
    Sent(Vec<u8>),
    /// Delayed offer: the callee offers, in a reliable provisional or in its 2xx.
    Delayed,
    /// Delayed offer whose callee offer came in a reliable provisional and was answered in the
    /// caller's PRACK (RFC 3262 §5): the 2xx carries no SDP exchange.
    EarlyExchange,
}

impl CalleeOffer {
    /// The offer our INVITE carries, if we offer.
    pub(crate) fn body(&self) -> Option<&Vec<u8>> {
        match self {
            CalleeOffer::Sent(b) => Some(b),
            CalleeOffer::Delayed | CalleeOffer::EarlyExchange => None,
        }
    }
}

/// The call before the caller got a final response.
#[derive(Debug)]
pub(crate) struct Setup {
    /// The caller's INVITE server transaction.
    pub(crate) caller_tx: TxId,
    /// The current INVITE toward the callee side.
    pub(crate) callee_tx: Option<TxId>,
    /// CSeq of the current callee-side INVITE (incremented per attempt).
    pub(crate) cseq: u32,
    /// Early dialogs on the callee leg (one per To tag), most recent last.
    pub(crate) early: Vec<Dialog>,
    /// SDP answers received in provisional responses, per callee early dialog (To tag): a
    /// forking proxy can give each fork its own early media. The answer in force is the last.
    pub(crate) early_answers: Vec<(String, Vec<u8>)>,
    /// Where the callee-side INVITE may go next if the current attempt fails, in order.
    pub(crate) failover: Vec<Attempt>,
    /// Who offers on the callee leg, and how far a delayed offer got.
    pub(crate) offer: CalleeOffer,
    /// Session interval asked on the callee leg (0: none).
    pub(crate) se: u32,
    /// Min-SE sent on the callee leg.
    pub(crate) min_se: u32,
    /// The 422 retry was used.
    pub(crate) retried_422: bool,
    /// Reliable provisionals relayed to the caller.
    pub(crate) pracks: Vec<PrackMap>,
    /// Highest RSeq seen per callee early dialog (To tag).
    pub(crate) rseqs: Vec<(String, u32)>,
    /// The no-answer timer.
    pub(crate) no_answer: Option<TimerId>,
}

/// Early dialogs tracked per call (forks of the callee side); later forks' provisionals are
/// still relayed, but not PRACKed nor used for early media.
const MAX_EARLY_DIALOGS: usize = 16;
/// Reliable provisionals relayed to the caller and awaiting its PRACK, per call.
const MAX_PRACKS: usize = 32;

impl Setup {
    /// The callee's early dialog with this To tag, if it is tracked.
    pub(crate) fn early_mut(&mut self, remote_tag: &str) -> Option<&mut Dialog> {
        self.early
            .iter_mut()
            .find(|d| d.id.remote_tag == remote_tag)
    }

    /// A provisional from the callee side: its early dialog is updated, or tracked if there is
    /// room (`req`: the INVITE it answers). Returns whether its dialog is tracked (or it has
    /// none): only then is its SDP used.
    pub(crate) fn track_early(&mut self, msg: &Message, req: Option<&Message>) -> bool {
        if let Some(tag) = msg.to().and_then(|t| t.tag()) {
            if let Some(pos) = self.early.iter().position(|d| d.id.remote_tag == tag) {
                let mut d = self.early.remove(pos);
                let _ = d.on_response(msg);
                self.early.push(d);
            } else if self.early.len() < MAX_EARLY_DIALOGS
                && let Some(req) = req
                && let Ok(d) = Dialog::from_uac(req, msg)
            {
                self.early.push(d);
            }
        }
        msg.to()
            .and_then(|t| t.tag())
            .is_none_or(|tag| self.early.iter().any(|d| d.id.remote_tag == tag))
    }

    /// RFC 3262 §4: whether a reliable provisional with `rseq` on early dialog `tag` is new
    /// (recorded); a retransmission (RSeq not above the last one of that early dialog) or a
    /// fork beyond those tracked is not.
    pub(crate) fn new_rseq(&mut self, tag: String, rseq: u32) -> bool {
        let tracked = self.rseqs.len();
        match self.rseqs.iter_mut().find(|(t, _)| *t == tag) {
            Some((_, last)) if rseq <= *last => false,
            Some((_, last)) => {
                *last = rseq;
                true
            }
            None if tracked < MAX_EARLY_DIALOGS => {
                self.rseqs.push((tag, rseq));
                true
            }
            // More forks than are tracked: this one's reliable provisionals are dropped.
            None => false,
        }
    }

    /// Remembers a reliable provisional relayed to the caller, for its PRACK.
    pub(crate) fn map_prack(&mut self, map: PrackMap) {
        if self.pracks.len() >= MAX_PRACKS {
            // The caller has not PRACKed the oldest: forget it (its PRACK gets a 481).
            self.pracks.remove(0);
        }
        self.pracks.push(map);
    }

    /// Starts a new attempt toward the callee side (failover, 422 retry): a new CSeq, and
    /// nothing kept from the previous attempt's early dialogs.
    pub(crate) fn next_attempt(&mut self) {
        self.cseq = self.cseq.wrapping_add(1);
        self.early_answers.clear();
        self.pracks.clear();
        self.rseqs.clear();
    }
}

/// Where a call stands. There is no ending phase: a call is torn down in the input that ends
/// it (`B2bua::end_call`) and leaves the call table at once.
#[derive(Debug)]
pub(crate) enum Phase {
    /// The caller awaits a final response while the callee side is tried (failover, 422
    /// retry, forks' early dialogs). Boxed: the setup state is large and short-lived.
    Setup(Box<Setup>),
    /// The caller got its 2xx (or the call was restored from its stored record): both legs
    /// have confirmed dialogs. A 2xx awaiting its ACK is [`Call::ack_wait`].
    Confirmed,
}

/// How the offer/answer of a relayed INVITE/UPDATE stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OfferState {
    /// No SDP involved (INFO, OPTIONS, ... or an UPDATE without body).
    None,
    /// The request carried an offer, processed and sent on the other leg.
    FromRequester,
    /// The request had no SDP: the offer comes in the 2xx, the answer in the ACK.
    InResponse,
}

/// A request relayed from one leg to the other.
#[derive(Debug)]
pub(crate) struct Relay {
    pub(crate) method: Method,
    /// The side the request came from.
    pub(crate) from: Side,
    pub(crate) server_tx: TxId,
    pub(crate) client_tx: TxId,
    pub(crate) offer: OfferState,
    /// Timer C of a relayed re-INVITE.
    pub(crate) guard: Option<TimerId>,
}

/// A session refresh Tollgate sent itself and awaits the answer to.
#[derive(Debug, Clone)]
pub(crate) struct OwnRefresh {
    /// Its transaction (registered as `TxRole::Refresh(leg)`).
    pub(crate) tx: TxId,
    /// UPDATE or re-INVITE.
    pub(crate) method: Method,
    /// Timer C of a refresh re-INVITE, while armed.
    pub(crate) guard: Option<TimerId>,
}

/// What to do when the ACK for a 2xx we sent arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckPlan {
    /// Send the ACK for the other leg's 2xx.
    Forward,
    /// The ACK carries the answer to the offer of the other leg's 2xx: rewrite it into the
    /// other leg's ACK.
    Answer,
}

/// A 2xx we sent on `side` that awaits its ACK.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AckWait {
    pub(crate) side: Side,
    pub(crate) tx: TxId,
    pub(crate) plan: AckPlan,
}

/// An installed media flow (one m= line).
#[derive(Debug, Clone)]
pub(crate) struct FlowSlot {
    pub(crate) index: usize,
    pub(crate) spec: MediaFlowSpec,
    /// Where its SRTP streams stand, by arrival side, as the data plane last reported
    /// (stored with the call).
    pub(crate) srtp: [Option<SrtpPosition>; 2],
}

/// Numbers before and after normalisation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Numbers {
    pub(crate) calling_received: String,
    pub(crate) calling_sent: String,
    pub(crate) called_received: String,
    pub(crate) called_sent: String,
    /// The caller's From display name, if any.
    pub(crate) display: Option<String>,
}

/// One call.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) direction: Direction,
    pub(crate) start: Instant,
    pub(crate) answer: Option<Instant>,
    /// Indexed by [`Side::index`].
    pub(crate) legs: [Leg; 2],
    pub(crate) media: Option<MediaSession>,
    pub(crate) flows: Vec<FlowSlot>,
    /// Every flow id the call used (for the CDR).
    pub(crate) flow_ids: Vec<u64>,
    /// Where the call stands: in setup (with the setup's state) or confirmed.
    pub(crate) phase: Phase,
    pub(crate) ack_wait: Option<AckWait>,
    pub(crate) relays: Vec<Relay>,
    /// Our own session refresh in flight.
    pub(crate) refresh: Option<OwnRefresh>,
    pub(crate) numbers: Numbers,
    /// Trunk (inbound: source; outbound: current attempt).
    pub(crate) trunk: Option<String>,
    /// NAT learning window of that trunk, ns.
    pub(crate) learn_ns: u64,
    /// Every transaction registered for this call (to unregister at teardown).
    pub(crate) txs: Vec<TxId>,
    /// Why an operator ended the call (goes into the CDR).
    pub(crate) note: Option<String>,
    /// Restarts of Tollgate the call has crossed (from its stored record).
    pub(crate) restarts: u32,
    /// Hash of the record last emitted for the store (`None`: never stored).
    pub(crate) stored: Option<u64>,
}

impl Call {
    /// The setup state, while the call is in setup.
    pub(crate) fn setup(&self) -> Option<&Setup> {
        match &self.phase {
            Phase::Setup(s) => Some(s),
            Phase::Confirmed => None,
        }
    }

    pub(crate) fn setup_mut(&mut self) -> Option<&mut Setup> {
        match &mut self.phase {
            Phase::Setup(s) => Some(s),
            Phase::Confirmed => None,
        }
    }

    /// The caller still awaits its final response.
    pub(crate) fn in_setup(&self) -> bool {
        matches!(self.phase, Phase::Setup(_))
    }

    /// Ends the setup phase (the call is confirmed, or being torn down): its state, if it
    /// was in setup.
    pub(crate) fn take_setup(&mut self) -> Option<Box<Setup>> {
        match std::mem::replace(&mut self.phase, Phase::Confirmed) {
            Phase::Setup(s) => Some(s),
            Phase::Confirmed => None,
        }
    }

    pub(crate) fn leg(&self, side: Side) -> &Leg {
        match side {
            Side::Ext => &self.legs[0],
            Side::Int => &self.legs[1],
        }
    }

    pub(crate) fn leg_mut(&mut self, side: Side) -> &mut Leg {
        match side {
            Side::Ext => &mut self.legs[0],
            Side::Int => &mut self.legs[1],
        }
    }

    /// Where requests toward a leg's peer go now.
    pub(crate) fn target(&self, flows: &TransportFlows, side: Side) -> Target {
        let leg = self.leg(side);
        match leg.conn {
            Some(c) if flows.is_open(side, c) => Target::Conn(c),
            _ => leg.fallback,
        }
    }

    /// The transport of a leg (its fallback address's).
    pub(crate) fn transport(&self, side: Side) -> Transport {
        match self.leg(side).fallback {
            Target::Addr { transport, .. } => transport,
            Target::Conn(_) => match side {
                Side::Ext => Transport::Tcp,
                Side::Int => Transport::Tls,
            },
        }
    }

    /// The caller's side.
    pub(crate) fn caller(&self) -> Side {
        self.direction.caller()
    }

    /// An offer/answer exchange or a session refresh is in progress (a new one gets 491).
    pub(crate) fn negotiating(&self) -> bool {
        self.refresh.is_some()
            || self.ack_wait.is_some()
            || self
                .relays
                .iter()
                .any(|r| matches!(r.method, Method::Invite | Method::Update))
            || self
                .media
                .as_ref()
                .is_some_and(|m| m.pending_offerer().is_some())
    }

    /// The dialog of `side` to send a request on: the confirmed one, else (callee leg during
    /// setup) the most recent early dialog.
    pub(crate) fn dialog_mut(&mut self, side: Side) -> Option<&mut Dialog> {
        let callee = self.caller().other();
        let Call { legs, phase, .. } = self;
        let leg = match side {
            Side::Ext => &mut legs[0],
            Side::Int => &mut legs[1],
        };
        if leg.dialog.is_some() {
            return leg.dialog.as_mut();
        }
        if side == callee {
            return match phase {
                Phase::Setup(s) => s.early.last_mut(),
                Phase::Confirmed => None,
            };
        }
        None
    }

    /// Our session refresh of `side` with `interval`, on that leg's dialog: UPDATE when the
    /// peer allows it (or no SDP was sent on the leg yet), else a re-INVITE with the SDP last
    /// sent there. `None` without a confirmed dialog.
    pub(crate) fn refresh_request(
        &mut self,
        side: Side,
        interval: u32,
        via: Via,
    ) -> Option<(Method, Message)> {
        let last = self
            .media
            .as_ref()
            .and_then(|m| m.last_sent(side))
            .map(tollgate_sdp::Sdp::to_bytes);
        let method = if self.leg(side).peer_update || last.is_none() {
            Method::Update
        } else {
            Method::Invite
        };
        let d = self.leg_mut(side).dialog.as_mut()?;
        let mut req = d.new_request(method.clone(), via);
        own_headers::supported(&mut req, &[own_headers::TIMER]);
        own_headers::set_session_expires(&mut req, interval, Refresher::Uac);
        if method == Method::Invite {
            own_headers::allow(&mut req);
            set_sdp(&mut req, last);
        }
        Some((method, req))
    }

    /// A 2xx to our refresh on `side`: the refresh is over and the leg's dialog takes the
    /// response. The refresh that was in flight, if any.
    pub(crate) fn refresh_answered(&mut self, side: Side, msg: &Message) -> Option<OwnRefresh> {
        let r = self.refresh.take()?;
        if let Some(d) = self.leg_mut(side).dialog.as_mut() {
            let _ = d.on_response(msg);
        }
        Some(r)
    }

    /// Our refresh `tx` is over (it failed): the refresh, if `tx` is the one in flight.
    pub(crate) fn take_refresh(&mut self, tx: TxId) -> Option<OwnRefresh> {
        if self.refresh.as_ref().is_none_or(|r| r.tx != tx) {
            return None;
        }
        self.refresh.take()
    }

    /// Timer C of re-INVITE `tx` fired (a relayed one or our refresh): the guard is disarmed
    /// and the call must end with the returned cause; `None` if `tx` is neither.
    pub(crate) fn invite_guard_fired(&mut self, tx: TxId) -> Option<EndCause> {
        if let Some(r) = self.relays.iter_mut().find(|r| r.client_tx == tx) {
            r.guard = None;
            Some(EndCause::Timeout)
        } else if let Some(r) = self.refresh.as_mut().filter(|r| r.tx == tx) {
            r.guard = None;
            Some(EndCause::RefreshFailed)
        } else {
            None
        }
    }

    /// Transaction `tx` of this call (its `role`) is terminated: a relay whose both
    /// transactions are over is finished. Whether the call now ends for want of an ACK (the
    /// 2xx awaiting it was sent on `tx`).
    pub(crate) fn tx_terminated(&mut self, tx: TxId, role: TxRole) -> bool {
        let no_ack = matches!(role, TxRole::CallerInvite | TxRole::RelayServer)
            && self.ack_wait.is_some_and(|w| w.tx == tx);
        if role == TxRole::RelayServer || role == TxRole::RelayClient {
            if let Some(r) = self
                .relays
                .iter_mut()
                .find(|r| r.server_tx == tx || r.client_tx == tx)
            {
                if r.server_tx == tx {
                    r.server_tx = TxId(0);
                } else {
                    r.client_tx = TxId(0);
                }
            }
            self.relays
                .retain(|r| !(r.server_tx == TxId(0) && r.client_tx == TxId(0)));
        }
        no_ack
    }

    /// The client transaction a request received on `server_tx` was relayed on, if any.
    pub(crate) fn relayed_client_tx(&self, server_tx: TxId) -> Option<TxId> {
        self.relays
            .iter()
            .find(|r| r.server_tx == server_tx)
            .map(|r| r.client_tx)
    }

    /// Our tag on the caller leg.
    pub(crate) fn caller_tag(&self) -> &str {
        &self.leg(self.caller()).local_tag
    }

    /// The data plane reports where flow `flow`'s SRTP stream arriving on `side` stands.
    /// False if the call has no such flow.
    pub(crate) fn srtp_position(&mut self, flow: u64, side: Side, pos: SrtpPosition) -> bool {
        let Some(f) = self.flows.iter_mut().find(|f| f.spec.id == flow) else {
            return false;
        };
        f.srtp[side.index()] = Some(pos);
        true
    }

    /// The call's stored record is now `bytes`: whether it differs from the one last emitted
    /// for the store (then it is remembered as emitted).
    pub(crate) fn newly_stored(&mut self, bytes: &[u8]) -> bool {
        let mut h = rustc_hash::FxHasher::default();
        std::hash::Hasher::write(&mut h, bytes);
        let h = std::hash::Hasher::finish(&h);
        if self.stored == Some(h) {
            return false;
        }
        self.stored = Some(h);
        true
    }
}
