//! A new call from an out-of-dialog INVITE, in three steps — [`B2bua::route`] (draining, call
//! limit, numbers, trunk or route, admission), [`B2bua::negotiate`] (session-timer interval,
//! the SDP offer rewritten for the other side, ports allocated) and [`B2bua::open_legs`] (the
//! caller's dialog, both legs, the call filed, the INVITE toward the callee side) — each
//! returning `Result<_, CallRefusal>`.
//!
//! Every refusal goes through one path, [`B2bua::refuse_call`]: it releases what was allocated,
//! answers the INVITE (status, and Warning / Retry-After / Min-SE via `own_headers`) and emits
//! [`CallEvent::Refused`] (and [`CallEvent::NotAdmitted`] for admission). This module must not
//! handle the callee side's responses (that is `setup`) nor keep state of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate_sdp::{MediaSession, Sdp};
use tollgate_sip::{Dialog, Message, Method, SessionExpires};

use crate::admission::{Ask, Refusal};
use crate::b2bua::B2bua;
use crate::call::{Attempt, Call, CalleeOffer, Leg, Numbers, Phase, Setup, TxRole};
use crate::config::{Trunk, normalize};
use crate::effects::{Effects, Origin};
use crate::offer::offer_with_ports;
use crate::own_headers;
use crate::setup::{allows_update, sdp_body, uri_user};
use crate::timers::{TimerPurpose, later};
use crate::types::{CallEvent, ConnId, Direction, EndCause, RefuseReason, Side, Target, Transport};

/// A request as the transaction layer handed it over.
#[derive(Debug)]
pub(crate) struct Received {
    /// Its server transaction, side and peer.
    pub(crate) from: Origin,
    /// The connection it came on, if it came on one the driver holds.
    pub(crate) conn: Option<ConnId>,
    pub(crate) msg: Message,
}

/// How a refused INVITE is answered, beyond its status code.
#[derive(Debug)]
enum Answer {
    /// As [`B2bua::refuse`] answers that code (Allow on 405, the configured Retry-After on 503).
    Plain,
    /// Admission: Retry-After with these seconds, and [`CallEvent::NotAdmitted`] for the trunk.
    NotAdmitted { trunk: String, secs: u64 },
    /// 422 with our Min-SE.
    MinSe(u32),
    /// 400 with this reason phrase (the SDP parse error).
    Phrase(String),
    /// With a Warning (the SDP negotiation error).
    Warning(String),
}

/// Why a new call is refused, and what was allocated for it so far.
#[derive(Debug)]
pub(crate) struct CallRefusal {
    status: u16,
    reason: RefuseReason,
    answer: Answer,
    /// A media session holding relay ports, released by the refusal (boxed: it is large, and
    /// the refusal travels in every step's `Err`).
    media: Option<Box<MediaSession>>,
}

impl CallRefusal {
    fn plain(status: u16, reason: RefuseReason) -> CallRefusal {
        CallRefusal {
            status,
            reason,
            answer: Answer::Plain,
            media: None,
        }
    }

    fn admission(trunk: &str, r: Refusal) -> CallRefusal {
        CallRefusal {
            status: 503,
            reason: r.reason,
            answer: Answer::NotAdmitted {
                trunk: trunk.to_owned(),
                secs: r.retry_after.as_secs().max(1),
            },
            media: None,
        }
    }
}

/// The outcome of routing: where the call comes from and goes.
#[derive(Debug)]
struct Routed {
    direction: Direction,
    trunk: String,
    /// NAT learning window of that trunk, ns.
    learn_ns: u64,
    caller_fallback: Target,
    callee_fallback: Target,
    failover: Vec<Attempt>,
    numbers: Numbers,
}

/// The outcome of negotiation: the session interval and the rewritten offer.
#[derive(Debug)]
struct Negotiated {
    media: MediaSession,
    offer: Option<Vec<u8>>,
    asked: Option<SessionExpires>,
    se: u32,
    min_se: u32,
}

impl B2bua {
    /// An out-of-dialog INVITE: a new call, or a refusal.
    pub(crate) fn new_call(&mut self, req: Received, fx: &mut Effects<'_>) {
        let result = self
            .route(&req, fx.now)
            .and_then(|routed| Ok((routed, self.negotiate(&req)?)))
            .and_then(|(routed, neg)| self.open_legs(&req, routed, neg, fx));
        if let Err(r) = result {
            self.refuse_call(req.from, r, fx);
        }
    }

    /// The one refusal path of a new call: releases its ports, answers the INVITE and emits
    /// the events.
    fn refuse_call(&mut self, from: Origin, r: CallRefusal, fx: &mut Effects<'_>) {
        if let Some(media) = r.media {
            for p in (*media).close() {
                self.pools.release(&p);
            }
        }
        let (tx, now) = (from.tx, fx.now);
        let status = r.status;
        match r.answer {
            Answer::Plain => {
                self.refuse(from, &Method::Invite, status, r.reason, fx);
                return;
            }
            Answer::NotAdmitted { trunk, secs } => {
                self.reply(tx, status, None, now, |m| own_headers::retry_after(m, secs));
                refused_event(from, status, r.reason, fx);
                fx.event(CallEvent::NotAdmitted {
                    trunk,
                    reason: r.reason,
                });
                return;
            }
            Answer::MinSe(min_se) => {
                self.reply(tx, status, None, now, |m| m.headers.set_min_se(min_se));
            }
            Answer::Phrase(text) => {
                self.reply(tx, status, None, now, |m| {
                    m.start = tollgate_sip::StartLine::Response {
                        code: status,
                        reason: text,
                    };
                });
            }
            Answer::Warning(why) => {
                self.reply(tx, status, None, now, |m| own_headers::warning(m, &why));
            }
        }
        refused_event(from, status, r.reason, fx);
    }

    /// Step 1: whether the core takes a call now, its numbers, and where it goes (admission
    /// checked here, before anything is allocated).
    fn route(&mut self, req: &Received, now: Instant) -> Result<Routed, CallRefusal> {
        if self.draining() {
            return Err(CallRefusal::plain(503, RefuseReason::Draining));
        }
        if self.calls.len() >= self.cfg.sip.max_calls {
            return Err(CallRefusal::plain(503, RefuseReason::Overload));
        }
        let msg = &req.msg;
        let direction = match req.from.side {
            Side::Ext => Direction::Inbound,
            Side::Int => Direction::Outbound,
        };
        let called_received = msg
            .request_uri()
            .and_then(uri_user)
            .or_else(|| msg.to().and_then(|t| uri_user(&t.uri)))
            .unwrap_or_default();
        let calling_received = msg
            .from()
            .and_then(|f| uri_user(&f.uri))
            .unwrap_or_else(|| "anonymous".to_owned());
        if called_received.is_empty() {
            return Err(CallRefusal::plain(484, RefuseReason::BadRequest));
        }
        // Trunk (inbound) or route (outbound), borrowed from a handle on the configuration
        // (cloning a trunk would clone its rewrite rules' regexes and their lazy DFA caches).
        let cfg = Arc::clone(&self.cfg);
        let (trunk, caller_fallback, callee_fallback, failover) = match direction {
            Direction::Inbound => self.route_inbound(&cfg, req.from.peer, now)?,
            Direction::Outbound => self.route_outbound(&cfg, &called_received, now)?,
        };
        let rules = match direction {
            Direction::Inbound => &trunk.inbound,
            Direction::Outbound => &trunk.outbound,
        };
        let numbers = Numbers {
            called_sent: normalize(rules, &called_received),
            calling_sent: normalize(rules, &calling_received),
            called_received,
            calling_received,
            display: msg.from().and_then(|f| f.display.clone()),
        };
        Ok(Routed {
            direction,
            trunk: trunk.name.clone(),
            learn_ns: u64::try_from(trunk.nat_learn.as_nanos()).unwrap_or(u64::MAX),
            caller_fallback,
            callee_fallback,
            failover,
            numbers,
        })
    }

    /// Inbound: the trunk the INVITE came from, and the internal next hop that takes it (the
    /// first alternate when the next hop is down or capped).
    fn route_inbound<'c>(
        &mut self,
        cfg: &'c crate::config::Config,
        peer: SocketAddr,
        now: Instant,
    ) -> Result<(&'c Trunk, Target, Target, Vec<Attempt>), CallRefusal> {
        let Some(t) = self.trunk_by_ip(peer.ip()).and_then(|i| cfg.trunks.get(i)) else {
            return Err(CallRefusal::plain(403, RefuseReason::UnknownTrunk));
        };
        let ask = Ask {
            trunk: &t.name,
            from_trunk: true,
            next_hop: cfg.int.next_hop,
        };
        let mut admitted = if self.trunks.is_disabled(&t.name) {
            Err(Refusal {
                reason: RefuseReason::TrunkDisabled,
                retry_after: Duration::from_secs(u64::from(cfg.sip.retry_after.max(1))),
            })
        } else {
            self.admission.check(ask, now)
        };
        // The next hop is down or capped: the first alternate that takes the call.
        let mut hop = cfg.int.next_hop;
        if let Err(r) = admitted
            && matches!(
                r.reason,
                RefuseReason::NextHopDown | RefuseReason::NextHopRate
            )
            && let Some(alt) = cfg
                .int
                .alternates
                .iter()
                .map(|(a, _)| *a)
                .find(|a| self.admission.check_next_hop(*a, now).is_ok())
        {
            hop = alt;
            admitted = self.admission.check(
                Ask {
                    next_hop: alt,
                    ..ask
                },
                now,
            );
        }
        if let Err(r) = admitted {
            return Err(CallRefusal::admission(&t.name, r));
        }
        let later_hops: Vec<Attempt> = cfg
            .int
            .next_hops()
            .map(|(a, _)| a)
            .skip_while(|a| *a != hop)
            .skip(1)
            .map(Attempt::NextHop)
            .collect();
        let caller = Target::Addr {
            addr: t.addr,
            transport: t.transport,
        };
        let callee = Target::Addr {
            addr: hop,
            transport: Transport::Tls,
        };
        Ok((t, caller, callee, later_hops))
    }

    /// Outbound: the first trunk of the route that is up and admits the call; the ones after
    /// it that are up are the failover list (checked again when their turn comes).
    fn route_outbound<'c>(
        &mut self,
        cfg: &'c crate::config::Config,
        called: &str,
        now: Instant,
    ) -> Result<(&'c Trunk, Target, Target, Vec<Attempt>), CallRefusal> {
        let Some(route) = cfg.routes.iter().find(|r| r.pattern.is_match(called)) else {
            return Err(CallRefusal::plain(404, RefuseReason::NoRoute));
        };
        let up: Vec<&Trunk> = route
            .trunks
            .iter()
            .filter(|n| self.trunks.takes_calls(n))
            .filter_map(|n| cfg.trunks.iter().find(|t| &t.name == n))
            .collect();
        let mut up = up.into_iter();
        let mut first_refusal: Option<(&str, Refusal)> = None;
        let mut chosen = None;
        for t in up.by_ref() {
            let ask = Ask {
                trunk: &t.name,
                from_trunk: false,
                next_hop: t.addr,
            };
            match self.admission.check(ask, now) {
                Ok(()) => {
                    chosen = Some(t);
                    break;
                }
                Err(r) => {
                    first_refusal.get_or_insert((&t.name, r));
                }
            }
        }
        let Some(t) = chosen else {
            return Err(match first_refusal {
                Some((name, r)) => CallRefusal::admission(name, r),
                None => CallRefusal::plain(503, RefuseReason::NoRoute),
            });
        };
        let caller = Target::Addr {
            addr: cfg.int.next_hop,
            transport: Transport::Tls,
        };
        let callee = Target::Addr {
            addr: t.addr,
            transport: t.transport,
        };
        Ok((
            t,
            caller,
            callee,
            up.map(|t| Attempt::Trunk(t.name.clone())).collect(),
        ))
    }

    /// Step 2: the session interval (RFC 4028 §8.1: below our Min-SE gets 422) and the offer,
    /// rewritten for the other side (ports allocated here).
    fn negotiate(&mut self, req: &Received) -> Result<Negotiated, CallRefusal> {
        let sip = &self.cfg.sip;
        let (sip_se, sip_min_se) = (sip.session_expires, sip.min_se);
        let msg = &req.msg;
        let asked = msg.headers.session_expires().cloned();
        if sip_se > 0
            && let Some(se) = &asked
            && se.delta < sip_min_se
        {
            return Err(CallRefusal {
                status: 422,
                reason: RefuseReason::IntervalTooSmall,
                answer: Answer::MinSe(sip_min_se),
                media: None,
            });
        }
        let mut media = {
            let rng = &mut self.rng;
            MediaSession::new(&mut |b: &mut [u8]| rng(b))
        };
        let offer = match sdp_body(msg) {
            None => None,
            Some(body) => {
                let sdp = Sdp::parse(body).map_err(|e| CallRefusal {
                    status: 400,
                    reason: RefuseReason::NotAcceptable,
                    answer: Answer::Phrase(format!("Bad Request (SDP: {e})")),
                    media: None,
                })?;
                let offered = offer_with_ports(
                    &mut self.pools,
                    &mut self.rng,
                    &self.rewrite,
                    &mut media,
                    req.from.side,
                    &sdp,
                );
                // On error the rewrite has released the ports it took.
                Some(offered.map_err(|e| {
                    if e.is_resource_exhaustion() {
                        // Out of relay ports: our overload, answered like the call limit.
                        CallRefusal::plain(503, RefuseReason::Overload)
                    } else {
                        CallRefusal {
                            status: e.status_code(),
                            reason: RefuseReason::NotAcceptable,
                            answer: Answer::Warning(e.to_string()),
                            media: None,
                        }
                    }
                })?)
            }
        };
        let se = if sip_se == 0 {
            0
        } else {
            asked.as_ref().map_or(sip_se, |a| a.delta.min(sip_se))
        };
        let min_se = msg
            .headers
            .min_se()
            .map_or(sip_min_se, |m| m.delta.max(sip_min_se));
        Ok(Negotiated {
            media,
            offer,
            asked,
            se,
            min_se,
        })
    }

    /// Step 3: the caller's dialog and both legs; the call is filed, admitted, announced and
    /// its INVITE sent toward the callee side.
    fn open_legs(
        &mut self,
        req: &Received,
        routed: Routed,
        neg: Negotiated,
        fx: &mut Effects<'_>,
    ) -> Result<(), CallRefusal> {
        let (side, msg, now) = (req.from.side, &req.msg, fx.now);
        let caller_tag = self.new_tag();
        let caller_transport = match routed.caller_fallback {
            Target::Addr { transport, .. } => transport,
            Target::Conn(_) => Transport::Tcp,
        };
        let contact = self.contact(side, caller_transport);
        let dialog = match Dialog::from_uas(msg, &caller_tag, contact, false) {
            Ok(d) => d,
            Err(e) => {
                let mut r = CallRefusal::plain(
                    e.response().map_or(400, |(c, _)| c),
                    RefuseReason::BadRequest,
                );
                r.media = Some(Box::new(neg.media));
                return Err(r);
            }
        };
        let mut caller_leg = Leg::new(
            side,
            msg.call_id().unwrap_or_default().to_owned(),
            caller_tag,
            routed.caller_fallback,
        );
        caller_leg.dialog = Some(dialog);
        caller_leg.conn = req.conn;
        caller_leg.peer_100rel = msg.headers.supports("100rel");
        caller_leg.peer_timer = msg.headers.supports("timer");
        caller_leg.peer_update = allows_update(msg);
        caller_leg.asked_refresher = neg.asked.as_ref().and_then(SessionExpires::refresher);
        let callee_call_id = self.new_call_id();
        let callee_tag = self.new_tag();
        let callee_leg = Leg::new(
            side.other(),
            callee_call_id,
            callee_tag,
            routed.callee_fallback,
        );

        let id = self.calls.alloc_id();
        let (ext, int) = match side {
            Side::Ext => (caller_leg, callee_leg),
            Side::Int => (callee_leg, caller_leg),
        };
        let no_answer_at = later(now, self.cfg.sip.no_answer());
        let no_answer = self
            .timers
            .set(TimerPurpose::NoAnswer(id), no_answer_at, fx.out);
        let direction = routed.direction;
        let trunk = routed.trunk;
        let call = Call {
            direction,
            start: now,
            answer: None,
            legs: [ext, int],
            media: Some(neg.media),
            flows: Vec::new(),
            flow_ids: Vec::new(),
            phase: Phase::Setup(Box::new(Setup {
                caller_tx: req.from.tx,
                callee_tx: None,
                cseq: 1,
                early: Vec::new(),
                early_answers: Vec::new(),
                failover: routed.failover,
                offer: neg.offer.map_or(CalleeOffer::Delayed, CalleeOffer::Sent),
                se: neg.se,
                min_se: neg.min_se,
                retried_422: false,
                pracks: Vec::new(),
                rseqs: Vec::new(),
                no_answer: Some(no_answer),
            })),
            ack_wait: None,
            relays: Vec::new(),
            refresh: None,
            numbers: routed.numbers,
            trunk: Some(trunk.clone()),
            learn_ns: routed.learn_ns,
            txs: Vec::new(),
            note: None,
            restarts: 0,
            stored: None,
        };
        let next_hop = match routed.callee_fallback {
            Target::Addr { addr, .. } => addr,
            Target::Conn(_) => self.cfg.int.next_hop,
        };
        self.admission.commit(
            Ask {
                trunk: &trunk,
                from_trunk: direction == Direction::Inbound,
                next_hop,
            },
            now,
        );
        self.calls.insert(id, call);
        self.register_tx(id, req.from.tx, TxRole::CallerInvite);
        fx.event(CallEvent::Started {
            call: id,
            direction,
            trunk: Some(trunk),
        });
        if !self.send_callee_invite(id, fx) {
            self.end_call(id, EndCause::TransportError, 503, None, fx);
        }
        Ok(())
    }
}

/// [`CallEvent::Refused`] for a refused INVITE.
fn refused_event(from: Origin, status: u16, reason: RefuseReason, fx: &mut Effects<'_>) {
    fx.event(CallEvent::Refused {
        side: from.side,
        peer: from.peer,
        method: Method::Invite.to_string(),
        reason,
        status,
    });
}
