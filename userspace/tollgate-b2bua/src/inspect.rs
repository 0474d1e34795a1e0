//! What an operator may see of the core: calls with both legs' dialogs, their SDP and media
//! flows, and the trunks with their admission state. Read-only views built on request
//! (`tollgate ctl`), never on the message path.
//!
//! Keys never leave the core: SDP is shown with every `a=crypto` key replaced by
//! `inline:<redacted>`, and a media flow shows its SRTP suites, not its key material.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tollgate_common::spec::{MediaFlowSpec, TransformSpec};

use crate::b2bua::B2bua;
use crate::call::{Call, Leg};
use crate::types::{CallId, Direction, Side, Target};

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallPhase {
    /// The callee side has not answered (trying or ringing).
    Setup,
    /// Answered; the 2xx awaits its ACK.
    Answering,
    /// Confirmed on both legs.
    Confirmed,
}

impl CallPhase {
    /// Label.
    pub fn as_str(self) -> &'static str {
        match self {
            CallPhase::Setup => "setup",
            CallPhase::Answering => "answering",
            CallPhase::Confirmed => "confirmed",
        }
    }
}

/// One call, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSummary {
    /// Tollgate's call number.
    pub id: CallId,
    /// Direction.
    pub direction: Direction,
    /// The trunk (inbound: the source; outbound: the current attempt).
    pub trunk: Option<String>,
    /// Calling number as received.
    pub calling: String,
    /// Called number as received.
    pub called: String,
    /// Since the INVITE arrived.
    pub age: Duration,
    /// Since the answer, if answered.
    pub talking: Option<Duration>,
    /// Phase.
    pub phase: CallPhase,
    /// Media flows installed (one per relayed m= line).
    pub flows: Vec<u64>,
}

/// One leg's dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegView {
    /// Side.
    pub side: Side,
    /// Call-ID on this leg.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag, once known.
    pub remote_tag: Option<String>,
    /// Where in-dialog requests go (the peer's Contact), once known.
    pub remote_target: Option<String>,
    /// Our last CSeq and the peer's.
    pub local_cseq: Option<u32>,
    /// See `local_cseq`.
    pub remote_cseq: Option<u32>,
    /// Route set.
    pub route_set: Vec<String>,
    /// Where the leg sends when its connection is gone (`address/transport`), or the
    /// connection it came on.
    pub peer: String,
    /// RFC 4028 session interval and who refreshes (`tollgate` or `peer`).
    pub session: Option<(u32, &'static str)>,
    /// The SDP Tollgate last sent on this leg, keys redacted.
    pub sdp_sent: Option<String>,
}

/// One media flow (one m= line), without keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowView {
    /// Flow id (the data plane's counters are keyed by it).
    pub id: u64,
    /// Relay RTP port on the gateway side, and the gateway's media address.
    pub ext_local: SocketAddr,
    /// See `ext_local`.
    pub ext_remote: Option<SocketAddr>,
    /// Relay RTP port on the internal side, and the internal peer's media address.
    pub int_local: SocketAddr,
    /// See `int_local`.
    pub int_remote: Option<SocketAddr>,
    /// What is done to media from the gateway (`protect AES_CM_128_HMAC_SHA1_80`, `forward`).
    pub ext_to_int: String,
    /// What is done to media from the internal side.
    pub int_to_ext: String,
}

/// One call in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallDetail {
    /// The summary.
    pub summary: CallSummary,
    /// Numbers as sent on the other leg (after the trunk's rules).
    pub calling_sent: String,
    /// See `calling_sent`.
    pub called_sent: String,
    /// Both legs, gateway side first.
    pub legs: [LegView; 2],
    /// Media flows.
    pub flows: Vec<FlowView>,
}

/// One trunk.
#[derive(Debug, Clone, PartialEq)]
pub struct TrunkView {
    /// Name.
    pub name: String,
    /// Address.
    pub addr: SocketAddr,
    /// Taken out of service by an operator.
    pub disabled: bool,
    /// OPTIONS keepalive says it is up (always true without keepalive).
    pub options_up: bool,
    /// Admission has it marked down as a next hop (503 or no answer), for this long still.
    pub down_for: Option<Duration>,
    /// Calls in progress through it.
    pub calls: usize,
    /// New calls through it over the last minute, per second.
    pub cps: f64,
    /// Its configured limits: new calls a second from it (0: none), concurrent calls (0: none).
    pub max_cps: u32,
    /// See `max_cps`.
    pub max_calls: usize,
}

/// Replaces every SDES key (`inline:<key>[|lifetime][|mki]`) with `inline:<redacted>`.
pub fn redact_keys(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("a=crypto:") {
            let mut rest = line;
            while let Some(i) = rest.find("inline:") {
                out.push_str(&rest[..i + "inline:".len()]);
                rest = &rest[i + "inline:".len()..];
                let end = rest
                    .find(|c: char| c == ';' || c.is_whitespace())
                    .unwrap_or(rest.len());
                out.push_str("<redacted>");
                rest = &rest[end..];
            }
            out.push_str(rest);
        } else {
            out.push_str(line);
        }
    }
    out
}

fn transform(t: &TransformSpec) -> String {
    match t {
        TransformSpec::Forward => "forward".to_owned(),
        TransformSpec::Protect(k) => format!("protect {}", k.profile().sdes_name()),
        TransformSpec::Unprotect(k) => format!("unprotect {}", k.profile().sdes_name()),
    }
}

fn flow_view(spec: &MediaFlowSpec) -> FlowView {
    FlowView {
        id: spec.id,
        ext_local: spec.ext.local_rtp,
        ext_remote: spec.ext.remote_rtp,
        int_local: spec.int.local_rtp,
        int_remote: spec.int.remote_rtp,
        ext_to_int: transform(&spec.ext_to_int),
        int_to_ext: transform(&spec.int_to_ext),
    }
}

fn phase(call: &Call) -> CallPhase {
    if call.in_setup() {
        CallPhase::Setup
    } else if call.ack_wait.is_some() {
        CallPhase::Answering
    } else {
        CallPhase::Confirmed
    }
}

fn summary(id: CallId, call: &Call, now: Instant) -> CallSummary {
    CallSummary {
        id,
        direction: call.direction,
        trunk: call.trunk.clone(),
        calling: call.numbers.calling_received.clone(),
        called: call.numbers.called_received.clone(),
        age: now.saturating_duration_since(call.start),
        talking: call.answer.map(|a| now.saturating_duration_since(a)),
        phase: phase(call),
        flows: call.flows.iter().map(|f| f.spec.id).collect(),
    }
}

fn leg_view(call: &Call, leg: &Leg) -> LegView {
    let dialog = leg.dialog.as_ref().or_else(|| {
        (leg.side != call.caller())
            .then(|| call.setup().and_then(|s| s.early.last()))
            .flatten()
    });
    let peer = match (leg.conn, leg.fallback) {
        (Some(c), _) => format!("connection {}", c.0),
        (None, Target::Addr { addr, transport }) => format!("{addr}/{}", transport.as_str()),
        (None, Target::Conn(c)) => format!("connection {}", c.0),
    };
    LegView {
        side: leg.side,
        call_id: leg.call_id.clone(),
        local_tag: leg.local_tag.clone(),
        remote_tag: dialog.map(|d| d.id.remote_tag.clone()),
        remote_target: dialog.map(|d| d.remote_target.to_string()),
        local_cseq: dialog.and_then(|d| d.local_seq),
        remote_cseq: dialog.and_then(|d| d.remote_seq),
        route_set: dialog
            .map(|d| d.route_set.iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
        peer,
        session: leg
            .session
            .as_ref()
            .map(|s| (s.interval, if s.we_refresh { "tollgate" } else { "peer" })),
        sdp_sent: call
            .media
            .as_ref()
            .and_then(|m| m.last_sent(leg.side))
            .map(|s| redact_keys(&String::from_utf8_lossy(&s.to_bytes()))),
    }
}

impl B2bua {
    /// Every call in progress, oldest first.
    pub fn call_summaries(&self, now: Instant) -> Vec<CallSummary> {
        let mut v: Vec<CallSummary> = self
            .calls
            .iter()
            .map(|(id, c)| summary(*id, c, now))
            .collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// One call in full, if it exists.
    pub fn call_detail(&self, id: CallId, now: Instant) -> Option<CallDetail> {
        let call = self.calls.get(&id)?;
        Some(CallDetail {
            summary: summary(id, call, now),
            calling_sent: call.numbers.calling_sent.clone(),
            called_sent: call.numbers.called_sent.clone(),
            legs: [
                leg_view(call, call.leg(Side::Ext)),
                leg_view(call, call.leg(Side::Int)),
            ],
            flows: call.flows.iter().map(|f| flow_view(&f.spec)).collect(),
        })
    }

    /// Every configured trunk with its state and admission counters.
    pub fn trunk_views(&self, now: Instant) -> Vec<TrunkView> {
        self.cfg
            .trunks
            .iter()
            .map(|t| TrunkView {
                name: t.name.clone(),
                addr: t.addr,
                disabled: self.trunks.is_disabled(&t.name),
                options_up: self.trunks.is_up(&t.name),
                down_for: self.admission.down_for(t.addr, now),
                calls: self.admission.active(&t.name),
                cps: self.admission.recent_cps(&t.name, now),
                max_cps: t.max_cps.map_or(0, |r| r.per_second),
                max_calls: t.max_calls,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::redact_keys;

    #[test]
    fn keys_are_redacted() {
        let sdp = "v=0\r\nm=audio 1 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4;inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo5ODc2|2^20 KDR=1\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:YWJj\r\na=sendrecv\r\n";
        let r = redact_keys(sdp);
        assert!(!r.contains("WVNf") && !r.contains("QUJD") && !r.contains("YWJj"));
        assert!(r.contains(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<redacted>;inline:<redacted> KDR=1\r\n"
        ));
        assert!(r.contains("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:<redacted>\r\n"));
        assert!(r.ends_with("a=sendrecv\r\n"));
    }
}
