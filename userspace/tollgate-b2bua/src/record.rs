//! A call's stored form, for the call-state store: what a restarted (or standby) process needs
//! to carry an answered call on, and the code that takes a call to and from it.
//!
//! A call is stored only when it is *stable*: answered and acknowledged, with no offer/answer,
//! relayed request or session refresh in flight. The core emits [`crate::Output::StoreCall`]
//! when a call reaches a stable state that differs from what it last stored (answered,
//! re-INVITE or UPDATE done, session refreshed, an SRTP rollover counter advanced) and
//! [`crate::Output::ForgetCall`] when a stored call ends. The record is JSON: readable with
//! `valkey-cli GET`, and versioned ([`RECORD_VERSION`]).
//!
//! What a record holds, and what a restored call does with it:
//! * both dialogs (Call-ID, tags, CSeqs, URIs, route set, remote target) and the address to
//!   reach each peer at: connections are not state, so requests go out on new connections and
//!   in-dialog requests that arrive on new connections find the call by Call-ID and tags;
//! * the SDP session (o= versions, negotiated streams, relay ports, SRTP keys);
//! * each flow's id and, per direction, where its SRTP stream stands (SSRC, rollover counter,
//!   SRTCP index), so the data plane continues the same index sequence;
//! * the session-timer state, trunk, numbers, and start and answer times (wall clock) for the
//!   CDR, with how many restarts the call has crossed.
//!
//! Restored local CSeqs skip ahead by [`CSEQ_SKIP`]: a request sent after the last store and
//! before the crash may have used the next numbers, and a gap is allowed (RFC 3261 §12.2.2).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tollgate_sdp::MediaSession;
use tollgate_sip::{Dialog, DialogId, DialogState, NameAddr, Uri};

use tollgate_sdp::StreamPlan;

use crate::b2bua::B2bua;
use crate::call::{Call, FlowSlot, Leg, Numbers, Phase, SessionTimer};
use crate::calls::dialog_key;
use crate::effects::Effects;
use crate::media::flow_spec;
use crate::types::{CallEvent, EndCause, Output};
use crate::types::{CallId, Direction, Side, Target, Transport};

/// Format version of [`CallRecord`].
pub const RECORD_VERSION: u32 = 1;

/// How far a restored dialog's local CSeq skips ahead of the stored one.
pub const CSEQ_SKIP: u32 = 10;

/// How far a restored stream's SRTCP index skips ahead of the stored one: the data plane
/// reports the SRTCP index every 64 packets, so the receiver has seen at most that many more;
/// a gap in SRTCP indices is harmless, a repeat is a replay.
pub const SRTCP_SKIP: u32 = 128;

/// Where one direction of a flow's SRTP stream stands (RFC 3711 §3.3.1), as the data plane
/// last reported it. Indexed by the side packets arrive on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SrtpPosition {
    /// The stream's SSRC.
    pub ssrc: u32,
    /// Its rollover counter.
    pub roc: u32,
    /// The last SRTCP index sent (protecting direction; 0 otherwise).
    pub srtcp_index: u32,
}

/// One installed flow: the m= line it carries and its data-plane id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// The m= line index.
    pub index: usize,
    /// The flow id.
    pub id: u64,
    /// Where the SRTP streams stand, `[from ext, from int]`.
    pub srtp: [Option<SrtpPosition>; 2],
}

/// One confirmed dialog, in text where SIP has a text form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialogRecord {
    /// The peer's tag.
    pub remote_tag: String,
    /// Last CSeq we used.
    pub local_seq: Option<u32>,
    /// Last CSeq the peer used.
    pub remote_seq: Option<u32>,
    /// Our From/To on requests we send.
    pub local_uri: String,
    /// The peer's.
    pub remote_uri: String,
    /// The peer's Contact.
    pub remote_target: String,
    /// Route set, in request order.
    pub route_set: Vec<String>,
    /// Our Contact.
    pub local_contact: String,
    /// Created over SIPS.
    pub secure: bool,
    /// CSeq of our last INVITE.
    pub last_invite_seq: Option<u32>,
}

/// One leg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegRecord {
    /// Call-ID on this leg.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The dialog.
    pub dialog: DialogRecord,
    /// Where requests to the peer go (a new connection is opened as needed).
    pub peer: SocketAddr,
    /// The transport to reach it.
    pub transport: Transport,
    /// The peer supports 100rel.
    pub peer_100rel: bool,
    /// The peer supports session timers.
    pub peer_timer: bool,
    /// The peer allows UPDATE.
    pub peer_update: bool,
    /// RFC 4028 interval, seconds, and whether Tollgate refreshes; `None`: no session timer.
    pub session: Option<(u32, bool)>,
    /// Last RSeq used.
    pub rseq: u32,
}

/// A stable call, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallRecord {
    /// [`RECORD_VERSION`].
    pub version: u32,
    /// Tollgate's call number (kept across restarts).
    pub call: CallId,
    /// Direction.
    pub direction: Direction,
    /// INVITE arrival, ms since the Unix epoch.
    pub start_ms: u64,
    /// Answer, ms since the Unix epoch.
    pub answer_ms: Option<u64>,
    /// Restarts the call has crossed.
    pub restarts: u32,
    /// `[ext, int]`.
    pub legs: [LegRecord; 2],
    /// The SDP session.
    pub media: MediaSession,
    /// Installed flows.
    pub flows: Vec<FlowRecord>,
    /// Every flow id the call used (CDR).
    pub flow_ids: Vec<u64>,
    /// Numbers as received and sent: `[calling received, calling sent, called received,
    /// called sent]`, and the caller's display name.
    pub numbers: [String; 4],
    /// The caller's display name.
    pub display: Option<String>,
    /// The trunk.
    pub trunk: Option<String>,
    /// NAT learning window of the trunk, ns.
    pub learn_ns: u64,
}

/// Why a stored record cannot become a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// Not JSON of the expected shape.
    #[error("record does not decode: {0}")]
    Decode(String),
    /// Written by an incompatible version.
    #[error("record version {0} is not {RECORD_VERSION}")]
    Version(u32),
    /// A SIP value in a dialog does not parse.
    #[error("dialog {field} does not parse: {value:?}")]
    Dialog {
        /// Which field.
        field: &'static str,
        /// Its text.
        value: String,
    },
    /// The call number is already in use in this process.
    #[error("call {0} already exists")]
    Duplicate(CallId),
    /// A relay port of the call is outside the configured range or taken.
    #[error("relay port {0} is unavailable")]
    Port(SocketAddr),
    /// A flow refers to an m= line that is not an active stream.
    #[error("flow {id} refers to m-line {index}, which is not active")]
    Flow {
        /// The flow id.
        id: u64,
        /// The m= line.
        index: usize,
    },
    /// A dialog of the call is already held by another call.
    #[error("dialog {0} is already held by another call")]
    DialogTaken(String),
}

/// Converts between the core's `Instant`s and wall-clock milliseconds, from one reference
/// point the driver gives (the core reads no clock).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WallClock {
    pub(crate) at: Instant,
    pub(crate) unix_ms: u64,
}

impl WallClock {
    pub(crate) fn ms(&self, t: Instant) -> u64 {
        if t >= self.at {
            self.unix_ms
                .saturating_add(t.duration_since(self.at).as_millis() as u64)
        } else {
            self.unix_ms
                .saturating_sub(self.at.duration_since(t).as_millis() as u64)
        }
    }

    pub(crate) fn instant(&self, ms: u64) -> Instant {
        if ms >= self.unix_ms {
            self.at
                .checked_add(Duration::from_millis(ms - self.unix_ms))
                .unwrap_or(self.at)
        } else {
            self.at
                .checked_sub(Duration::from_millis(self.unix_ms - ms))
                .unwrap_or(self.at)
        }
    }
}

fn dialog_record(d: &Dialog) -> DialogRecord {
    DialogRecord {
        remote_tag: d.id.remote_tag.clone(),
        local_seq: d.local_seq,
        remote_seq: d.remote_seq,
        local_uri: d.local_uri.to_string(),
        remote_uri: d.remote_uri.to_string(),
        remote_target: d.remote_target.to_string(),
        route_set: d.route_set.iter().map(ToString::to_string).collect(),
        local_contact: d.local_contact.to_string(),
        secure: d.secure,
        last_invite_seq: d.last_invite_seq,
    }
}

fn name_addr(field: &'static str, s: &str) -> Result<NameAddr, RestoreError> {
    NameAddr::parse(s).map_err(|_| RestoreError::Dialog {
        field,
        value: s.to_owned(),
    })
}

fn dialog_from(call_id: &str, local_tag: &str, r: &DialogRecord) -> Result<Dialog, RestoreError> {
    let remote_target = Uri::parse(&r.remote_target).map_err(|_| RestoreError::Dialog {
        field: "remote_target",
        value: r.remote_target.clone(),
    })?;
    let route_set = r
        .route_set
        .iter()
        .map(|s| name_addr("route_set", s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Dialog {
        id: DialogId {
            call_id: call_id.to_owned(),
            local_tag: local_tag.to_owned(),
            remote_tag: r.remote_tag.clone(),
        },
        state: DialogState::Confirmed,
        local_seq: r.local_seq.map(|s| s.wrapping_add(CSEQ_SKIP)),
        remote_seq: r.remote_seq,
        local_uri: name_addr("local_uri", &r.local_uri)?,
        remote_uri: name_addr("remote_uri", &r.remote_uri)?,
        remote_target,
        route_set,
        local_contact: name_addr("local_contact", &r.local_contact)?,
        secure: r.secure,
        last_invite_seq: r.last_invite_seq,
    })
}

/// Whether `call` is in a state worth storing: answered, acknowledged, nothing in flight.
pub(crate) fn is_stable(call: &Call) -> bool {
    !call.in_setup()
        && call.ack_wait.is_none()
        && call.relays.is_empty()
        && call.refresh.is_none()
        && call.legs.iter().all(|l| l.dialog.is_some())
        && call
            .media
            .as_ref()
            .is_some_and(|m| m.pending_offerer().is_none())
}

fn leg_record(leg: &Leg) -> Option<LegRecord> {
    let Target::Addr { addr, transport } = leg.fallback else {
        return None;
    };
    Some(LegRecord {
        call_id: leg.call_id.clone(),
        local_tag: leg.local_tag.clone(),
        dialog: dialog_record(leg.dialog.as_ref()?),
        peer: addr,
        transport,
        peer_100rel: leg.peer_100rel,
        peer_timer: leg.peer_timer,
        peer_update: leg.peer_update,
        session: leg.session.as_ref().map(|s| (s.interval, s.we_refresh)),
        rseq: leg.rseq,
    })
}

/// The record of a stable call; `None` if it is not stable.
pub(crate) fn record_of(id: CallId, call: &Call, wall: &WallClock) -> Option<CallRecord> {
    if !is_stable(call) {
        return None;
    }
    let legs = [
        leg_record(call.leg(Side::Ext))?,
        leg_record(call.leg(Side::Int))?,
    ];
    Some(CallRecord {
        version: RECORD_VERSION,
        call: id,
        direction: call.direction,
        start_ms: wall.ms(call.start),
        answer_ms: call.answer.map(|t| wall.ms(t)),
        restarts: call.restarts,
        legs,
        media: call.media.clone()?,
        flows: call
            .flows
            .iter()
            .map(|f| FlowRecord {
                index: f.index,
                id: f.spec.id,
                srtp: f.srtp,
            })
            .collect(),
        flow_ids: call.flow_ids.clone(),
        numbers: [
            call.numbers.calling_received.clone(),
            call.numbers.calling_sent.clone(),
            call.numbers.called_received.clone(),
            call.numbers.called_sent.clone(),
        ],
        display: call.numbers.display.clone(),
        trunk: call.trunk.clone(),
        learn_ns: call.learn_ns,
    })
}

/// Decodes a stored record.
pub fn decode(bytes: &[u8]) -> Result<CallRecord, RestoreError> {
    let r: CallRecord =
        serde_json::from_slice(bytes).map_err(|e| RestoreError::Decode(e.to_string()))?;
    if r.version != RECORD_VERSION {
        return Err(RestoreError::Version(r.version));
    }
    Ok(r)
}

/// A leg rebuilt from its record (no connection: the next request opens one).
pub(crate) fn leg_from(side: Side, r: &LegRecord) -> Result<Leg, RestoreError> {
    let mut leg = Leg::new(
        side,
        r.call_id.clone(),
        r.local_tag.clone(),
        Target::Addr {
            addr: r.peer,
            transport: r.transport,
        },
    );
    leg.dialog = Some(dialog_from(&r.call_id, &r.local_tag, &r.dialog)?);
    leg.peer_100rel = r.peer_100rel;
    leg.peer_timer = r.peer_timer;
    leg.peer_update = r.peer_update;
    leg.session = r.session.map(|(interval, we_refresh)| SessionTimer {
        interval,
        we_refresh,
        timer: None,
    });
    leg.rseq = r.rseq;
    Ok(leg)
}

/// The numbers of a record.
pub(crate) fn numbers_from(r: &CallRecord) -> Numbers {
    let [calling_received, calling_sent, called_received, called_sent] = r.numbers.clone();
    Numbers {
        calling_received,
        calling_sent,
        called_received,
        called_sent,
        display: r.display.clone(),
    }
}

/// What [`B2bua::restore`] did with the stored records.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Calls carried on: their flows are installed and their timers armed.
    pub restored: Vec<CallId>,
    /// Calls whose record decoded but could not be carried on: both legs got a BYE and the
    /// call its CDR (cause `restore_failed`).
    pub ended: Vec<(CallId, RestoreError)>,
    /// Records that could not even be read (store keys): nothing could be sent for them; the
    /// driver deletes them.
    pub unreadable: Vec<(String, RestoreError)>,
}

impl B2bua {
    /// Takes over the calls of a previous process from their stored records (key, bytes): for
    /// each, the same relay ports and flows ([`Output::InstallMedia`], SRTP continuing where
    /// the record says), both dialogs (requests on new connections match them) and the session
    /// timers, re-armed from `now`. Each restored call is stored again (one more restart
    /// crossed). A record that decodes but is inconsistent (ports taken or outside the range, a
    /// flow without its stream) ends its call cleanly: BYE on both legs, CDR, record deleted.
    /// Call before taking new calls.
    pub fn restore(
        &mut self,
        records: &[(String, Vec<u8>)],
        now: Instant,
        out: &mut Vec<Output>,
    ) -> RestoreReport {
        let fx = &mut Effects::new(now, out);
        let mut report = RestoreReport::default();
        let wall = self.wall_clock(fx.now);
        for (key, bytes) in records {
            let r = match decode(bytes) {
                Ok(r) => r,
                Err(e) => {
                    report.unreadable.push((key.clone(), e));
                    continue;
                }
            };
            let id = r.call;
            match self.restore_one(&r, &wall, fx) {
                Ok(()) => report.restored.push(id),
                Err((e, true)) => report.ended.push((id, e)),
                Err((e, false)) => report.unreadable.push((key.clone(), e)),
            }
        }
        self.pump(fx);
        self.persist(fx);
        report
    }

    /// Claims a record's relay ports and rebuilds its flows; on the first problem every port
    /// claimed is released.
    fn claim_media(&mut self, r: &CallRecord) -> Result<Vec<FlowSlot>, RestoreError> {
        let mut problem = None;
        let mut claimed = Vec::new();
        for p in r.media.held_ports() {
            let ok_ext =
                p.gateway.ip() == self.pools.ext_ip && self.pools.ext.claim(p.gateway.port());
            if !ok_ext {
                problem = Some(RestoreError::Port(p.gateway));
                break;
            }
            let ok_int =
                p.internal.ip() == self.pools.int_ip && self.pools.int.claim(p.internal.port());
            if !ok_int {
                self.pools.ext.release(p.gateway.port());
                problem = Some(RestoreError::Port(p.internal));
                break;
            }
            claimed.push(p);
        }
        let plan = r.media.plan();
        let mut flows = Vec::with_capacity(r.flows.len());
        if problem.is_none() {
            for f in &r.flows {
                match plan.streams.get(f.index) {
                    Some(StreamPlan::Active(a)) => flows.push(FlowSlot {
                        index: f.index,
                        spec: flow_spec(f.id, a, r.learn_ns),
                        srtp: f.srtp,
                    }),
                    _ => {
                        problem = Some(RestoreError::Flow {
                            id: f.id,
                            index: f.index,
                        });
                        break;
                    }
                }
            }
        }
        if let Some(e) = problem {
            for p in &claimed {
                self.pools.release(p);
            }
            return Err(e);
        }
        Ok(flows)
    }

    /// One record; the error says whether the call exists (and was ended with BYEs).
    fn restore_one(
        &mut self,
        r: &CallRecord,
        wall: &WallClock,
        fx: &mut Effects<'_>,
    ) -> Result<(), (RestoreError, bool)> {
        let id = r.call;
        if self.calls.contains_key(&id) {
            return Err((RestoreError::Duplicate(id), false));
        }
        let ext = leg_from(Side::Ext, &r.legs[0]).map_err(|e| (e, false))?;
        let int = leg_from(Side::Int, &r.legs[1]).map_err(|e| (e, false))?;
        let keys = [
            dialog_key(Side::Ext, &ext.call_id, &ext.local_tag),
            dialog_key(Side::Int, &int.call_id, &int.local_tag),
        ];
        if let Some(k) = keys.iter().find(|k| self.calls.by_dialog(k).is_some()) {
            return Err((RestoreError::DialogTaken(k.clone()), false));
        }
        // Ports, then flows: the first problem ends the call (after its legs exist).
        let (flows, problem) = match self.claim_media(r) {
            Ok(flows) => (flows, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let ok = problem.is_none();
        let call = Call {
            direction: r.direction,
            start: wall.instant(r.start_ms),
            answer: r.answer_ms.map(|ms| wall.instant(ms)),
            legs: [ext, int],
            media: ok.then(|| r.media.clone()),
            flows,
            flow_ids: r.flow_ids.clone(),
            phase: Phase::Confirmed,
            ack_wait: None,
            relays: Vec::new(),
            refresh: None,
            numbers: numbers_from(r),
            trunk: r.trunk.clone(),
            learn_ns: r.learn_ns,
            txs: Vec::new(),
            note: None,
            restarts: r.restarts.saturating_add(1),
            // Known to the store: its end deletes the record.
            stored: Some(0),
        };
        if let Some(t) = &call.trunk {
            self.admission.adopt(t);
        }
        if let Some(max) = call.flow_ids.iter().max() {
            self.next_flow = self.next_flow.max(max.saturating_add(1));
        }
        for f in &call.flows {
            let mut spec = f.spec.clone();
            spec.resume = f.srtp.map(|p| {
                p.map(|p| tollgate_common::spec::SrtpResume {
                    ssrc: p.ssrc,
                    roc: p.roc,
                    srtcp_index: if p.srtcp_index == 0 {
                        0
                    } else {
                        p.srtcp_index.saturating_add(SRTCP_SKIP).min((1 << 31) - 1)
                    },
                })
            });
            fx.out.push(Output::InstallMedia { call: id, spec });
        }
        let sessions: Vec<Side> = [Side::Ext, Side::Int]
            .into_iter()
            .filter(|s| call.leg(*s).session.is_some())
            .collect();
        self.calls.insert(id, call);
        fx.out.push(Output::Event(CallEvent::Restored { call: id }));
        if let Some(e) = problem {
            self.end_call(
                id,
                EndCause::RestoreFailed,
                500,
                Some("SIP;cause=500;text=\"Call state could not be restored\""),
                fx,
            );
            return Err((e, true));
        }
        for s in sessions {
            self.arm_session(id, s, None, fx);
        }
        self.touch(id);
        Ok(())
    }
}
