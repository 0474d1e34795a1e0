//! The offer/answer rewrite of Tollgate's media relay B2BUA (RFC 3264, RFC 4568).
//!
//! Every call has two legs: the gateway leg ([`Side::Ext`], plain RTP/AVP) and the internal
//! leg ([`Side::Int`], SRTP RTP/SAVP keyed by SDES `a=crypto`). Tollgate relays every
//! accepted stream through a pair of relay ports (one on each NIC), so each SDP it forwards is
//! rewritten: its own `o=`, its relay address and port in `c=`/`m=`, `a=rtcp` pointing at the
//! relay, the protocol switched between AVP and SAVP, `a=crypto` added (toward the internal
//! side) or removed (toward the gateway). Codecs, `fmtp`, `ptime`, `telephone-event`, direction
//! attributes, `rtcp-mux` and unknown attributes pass through; transport attributes that only
//! make sense end to end (ICE, DTLS fingerprints, `k=`) are dropped.
//!
//! [`MediaSession`] is the per-call state a sans-IO B2BUA holds:
//!
//! 1. An offer arrives on one leg: [`MediaSession::process_offer`] returns the offer to send on
//!    the other leg, allocating relay ports through the caller's allocator and keys through the
//!    caller's random source. The offer is now pending.
//! 2. The answer arrives on the other leg: [`MediaSession::process_answer`] returns the answer to
//!    send back on the offerer's leg and the [`MediaPlan`] to program the relay with. It may be
//!    called again for the same offer (an unreliable 183 and then the 200, or forked early
//!    dialogs); the pending offer stays until [`MediaSession::finish_offer`] or the next offer.
//! 3. If the offer fails on the other leg (4xx, 491), [`MediaSession::offer_failed`] restores
//!    the previous state.
//!
//! Every call that can change which relay ports the session holds returns the ports it no
//! longer needs, so the B2BUA releases exactly what was allocated; [`MediaSession::close`]
//! returns all of them at teardown.

use std::fmt::{self, Display};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tollgate_srtp::{KeyMaterial, Profile};

use crate::attr::{AttrError, Attribute, Direction};
use crate::crypto::{Crypto, CryptoPolicy, CryptoRefusal};
use crate::session::{Connection, Line, Media, MediaType, Origin, Proto, Sdp};

pub use tollgate_common::Side;

/// What to do with a stream of a media type other than audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamPolicy {
    /// Reject it with port 0 (the reason is reported in the outcome).
    Reject,
    /// Relay it like audio (RTP gets SRTP on the internal side; T.38 UDPTL is relayed as is).
    Relay,
}

/// The rewrite configuration (normally one per Tollgate instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteConfig {
    /// Suites Tollgate offers toward the internal side, in order (tags 1, 2, ...).
    pub offer_suites: Vec<Profile>,
    /// What Tollgate accepts in the internal side's `a=crypto` lines, best first.
    pub crypto: CryptoPolicy,
    /// Video streams.
    pub video: StreamPolicy,
    /// Image streams (T.38 fax).
    pub image: StreamPolicy,
    /// The `o=` user name of Tollgate's SDP.
    pub origin_username: String,
}

impl Default for RewriteConfig {
    fn default() -> Self {
        RewriteConfig {
            offer_suites: vec![Profile::Aes128CmHmacSha1_80, Profile::Aes128CmHmacSha1_32],
            crypto: CryptoPolicy::default(),
            video: StreamPolicy::Reject,
            image: StreamPolicy::Reject,
            origin_username: "tollgate".to_owned(),
        }
    }
}

impl RewriteConfig {
    /// Checks the configuration; the error names the setting and the problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.offer_suites.is_empty() {
            return Err("offer_suites: at least one SRTP suite must be offered".to_owned());
        }
        for (i, p) in self.offer_suites.iter().enumerate() {
            if self
                .offer_suites
                .get(..i)
                .is_some_and(|before| before.contains(p))
            {
                return Err(format!("offer_suites: {p} is listed twice"));
            }
            if !self.crypto.suites.contains(p) {
                return Err(format!(
                    "offer_suites: {p} is offered but not in the accepted suites"
                ));
            }
        }
        if self.crypto.suites.is_empty() {
            return Err("crypto.suites: at least one SRTP suite must be accepted".to_owned());
        }
        if self.origin_username.is_empty()
            || self
                .origin_username
                .contains(|c: char| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "origin_username: {:?} must be a non-empty word without spaces",
                self.origin_username
            ));
        }
        Ok(())
    }
}

/// The relay's RTP transport addresses of one stream, one per NIC. RTCP uses the next port
/// (`+1`) unless RTCP is multiplexed ([`ActiveStream::rtcp_mux`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RelayPorts {
    /// Address and RTP port on the gateway-side NIC.
    pub gateway: SocketAddr,
    /// Address and RTP port on the internal-side NIC.
    pub internal: SocketAddr,
}

impl RelayPorts {
    /// The relay address on `side`.
    pub const fn on(&self, side: Side) -> SocketAddr {
        match side {
            Side::Ext => self.gateway,
            Side::Int => self.internal,
        }
    }
}

/// A request to the caller's port allocator for one new stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    /// The m= line index.
    pub index: usize,
    /// The media type.
    pub media_type: MediaType,
    /// The leg that made the offer.
    pub offerer: Side,
    /// The offerer's media address (its family suggests the family of the relay address on the
    /// offerer's side); `None` when the stream is on hold with `c=0.0.0.0`.
    pub offerer_address: Option<IpAddr>,
}

/// One peer's media transport for one stream, as learned from its SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerMedia {
    /// Where the peer receives RTP; `None` when it is on hold with `c=0.0.0.0` / `c=::`.
    pub rtp: Option<SocketAddr>,
    /// Where the peer receives RTCP (its `a=rtcp`, else RTP port + 1); `None` when RTCP is
    /// multiplexed or the peer is on hold.
    pub rtcp: Option<SocketAddr>,
    /// The direction the peer declared (its own point of view).
    pub direction: Direction,
}

/// The SRTP parameters of one stream on the internal leg.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SrtpKeys {
    /// The negotiated suite.
    pub profile: Profile,
    /// The `a=crypto` tag that was agreed.
    pub tag: u32,
    /// Tollgate's key: what it protects with toward the internal side.
    pub tollgate_send: KeyMaterial,
    /// The internal peer's key: what Tollgate unprotects the internal side's packets with.
    pub internal_send: KeyMaterial,
}

impl fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // KeyMaterial's Debug never prints key bytes.
        f.debug_struct("SrtpKeys")
            .field("profile", &self.profile)
            .field("tag", &self.tag)
            .field("tollgate_send", &self.tollgate_send)
            .field("internal_send", &self.internal_send)
            .finish()
    }
}

/// A negotiated stream the relay carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActiveStream {
    /// The media type.
    pub media_type: MediaType,
    /// The relay's ports.
    pub relay: RelayPorts,
    /// Whether RTCP is multiplexed on the RTP port (negotiated identically on both legs).
    pub rtcp_mux: bool,
    /// The gateway's transport.
    pub gateway: PeerMedia,
    /// The internal peer's transport.
    pub internal: PeerMedia,
    /// Whether media from the gateway is to be relayed to the internal peer (the gateway sends,
    /// the internal peer receives and has an address).
    pub gateway_to_internal: bool,
    /// Whether media from the internal peer is to be relayed to the gateway.
    pub internal_to_gateway: bool,
    /// SRTP on the internal leg; `None` for a stream relayed as is (T.38 UDPTL).
    pub srtp: Option<SrtpKeys>,
}

/// The relay programme for one m= line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[allow(
    clippy::large_enum_variant,
    reason = "a handful per call, built on signalling events only; boxing would only add noise"
)]
pub enum StreamPlan {
    /// Relayed.
    Active(ActiveStream),
    /// Not relayed (port 0 on both legs).
    Rejected {
        /// The media type.
        media_type: MediaType,
        /// Why.
        reason: RejectReason,
    },
}

/// The relay programme of a call: one entry per m= line, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaPlan {
    /// The streams, indexed by m= line.
    pub streams: Vec<StreamPlan>,
}

impl MediaPlan {
    /// The active streams with their m= line index.
    pub fn active(&self) -> impl Iterator<Item = (usize, &ActiveStream)> {
        self.streams
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                StreamPlan::Active(a) => Some((i, a)),
                StreamPlan::Rejected { .. } => None,
            })
    }
}

/// Why a stream is not relayed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RejectReason {
    /// The offerer disabled it (port 0).
    DisabledByOfferer,
    /// The answerer rejected it (port 0).
    RejectedByAnswerer,
    /// The configuration does not relay this media type.
    MediaTypeNotRelayed(MediaType),
    /// The internal side offered plain RTP; it must use SRTP.
    PlainRtpFromInternal,
    /// The gateway side offered SRTP; it carries plain RTP.
    SrtpFromGateway,
    /// DTLS-SRTP is not supported (SDES `a=crypto` only).
    DtlsSrtp,
    /// A transport protocol Tollgate does not relay.
    UnsupportedProto(String),
    /// An RTP/SAVP stream without `a=crypto`.
    NoCrypto,
    /// An `a=crypto` line that does not parse.
    BadCrypto(AttrError),
    /// No `a=crypto` line is acceptable (each line's refusal, by tag).
    NoAcceptableCrypto(Vec<(u32, CryptoRefusal)>),
    /// The connection address is not an IP address (host name, multicast, other type).
    NotAnIpAddress(String),
    /// A malformed attribute the relay needs (`a=rtcp`).
    BadAttribute(AttrError),
    /// The port allocator had no port for this stream.
    NoRelayPort,
}

impl RejectReason {
    /// Whether Tollgate made the decision (as opposed to a peer's port 0).
    pub fn is_tollgate_decision(&self) -> bool {
        !matches!(
            self,
            RejectReason::DisabledByOfferer | RejectReason::RejectedByAnswerer
        )
    }
}

impl Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::DisabledByOfferer => f.write_str("disabled by the offerer (port 0)"),
            RejectReason::RejectedByAnswerer => f.write_str("rejected by the answerer (port 0)"),
            RejectReason::MediaTypeNotRelayed(t) => write!(f, "{t} streams are not relayed"),
            RejectReason::PlainRtpFromInternal => {
                f.write_str("the internal side must use SRTP (RTP/SAVP), not RTP/AVP")
            }
            RejectReason::SrtpFromGateway => {
                f.write_str("the gateway side carries plain RTP (RTP/AVP), not RTP/SAVP")
            }
            RejectReason::DtlsSrtp => {
                f.write_str("DTLS-SRTP is not supported; SDES a=crypto over RTP/SAVP is required")
            }
            RejectReason::UnsupportedProto(p) => write!(f, "transport {p} is not supported"),
            RejectReason::NoCrypto => f.write_str("RTP/SAVP without a=crypto"),
            RejectReason::BadCrypto(e) => write!(f, "{e}"),
            RejectReason::NoAcceptableCrypto(list) => {
                f.write_str("no acceptable a=crypto")?;
                for (i, (tag, r)) in list.iter().enumerate() {
                    let sep = if i == 0 { " (" } else { "; " };
                    write!(f, "{sep}tag {tag}: {r}")?;
                }
                if !list.is_empty() {
                    f.write_str(")")?;
                }
                Ok(())
            }
            RejectReason::NotAnIpAddress(a) => {
                write!(f, "connection address {a} is not an IP address")
            }
            RejectReason::BadAttribute(e) => write!(f, "{e}"),
            RejectReason::NoRelayPort => f.write_str("no relay port available"),
        }
    }
}

/// Why an answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerFault {
    /// The stream has no usable connection address.
    #[error("connection address {0} is not an IP address")]
    NotAnIpAddress(String),
    /// No `c=` applies to the stream.
    #[error("no c= line")]
    NoConnection,
    /// A malformed attribute.
    #[error("{0}")]
    BadAttribute(AttrError),
    /// Not exactly one `a=crypto`.
    #[error("{0} a=crypto lines; an answer carries exactly one")]
    CryptoCount(usize),
    /// The answered tag was not offered.
    #[error("a=crypto tag {0} was not offered")]
    UnknownTag(u32),
    /// The answered suite is not the one offered under that tag.
    #[error("a=crypto tag {tag} answers {answered}, the offer had {offered}")]
    SuiteMismatch {
        /// The tag.
        tag: u32,
        /// The suite offered with that tag.
        offered: Profile,
        /// The suite in the answer.
        answered: String,
    },
    /// The answered key or parameters are not acceptable.
    #[error("{0}")]
    Crypto(CryptoRefusal),
}

/// A failed negotiation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// No stream of the offer can be relayed (each stream's reason, by m= line).
    #[error("no acceptable media stream: {}", reasons_text(.0))]
    NotAcceptable(Vec<(usize, RejectReason)>),
    /// A re-offer has fewer m= lines than the session (RFC 3264 §8: they can only be disabled).
    #[error("the offer has {now} m= lines, the session has {previous}; m= lines cannot be removed")]
    StreamsRemoved {
        /// m= lines so far.
        previous: usize,
        /// m= lines in the offer.
        now: usize,
    },
    /// An answer arrived and no offer is pending.
    #[error("no offer is awaiting an answer")]
    NoOfferPending,
    /// The answer came on the leg that made the offer.
    #[error("the answer comes from the {} leg, which made the offer", .0.role())]
    AnswerFromOfferer(Side),
    /// The answer's m= line count differs from the offer's.
    #[error("the answer has {answered} m= lines, the offer had {offered}")]
    AnswerStreamCount {
        /// In the offer.
        offered: usize,
        /// In the answer.
        answered: usize,
    },
    /// An answer stream's protocol differs from the offer's.
    #[error("answer m= line {index}: protocol {answered} does not match the offered {offered}")]
    AnswerProto {
        /// m= line.
        index: usize,
        /// Offered protocol.
        offered: String,
        /// Answered protocol.
        answered: String,
    },
    /// An answer stream is unusable.
    #[error("answer m= line {index}: {fault}")]
    AnswerStream {
        /// m= line.
        index: usize,
        /// What is wrong.
        fault: AnswerFault,
    },
}

fn reasons_text(list: &[(usize, RejectReason)]) -> String {
    list.iter()
        .map(|(i, r)| format!("m= line {i}: {r}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl NegotiationError {
    /// The SIP status for the transaction whose SDP could not be negotiated: 488 Not Acceptable
    /// Here; 503 when the only reason is that Tollgate ran out of relay ports (its own overload,
    /// not the offer's fault: the caller may retry or go elsewhere); 500 when the B2BUA called
    /// out of order (an answer with no pending offer).
    pub fn status_code(&self) -> u16 {
        match self {
            NegotiationError::NoOfferPending | NegotiationError::AnswerFromOfferer(_) => 500,
            e if e.is_resource_exhaustion() => 503,
            _ => 488,
        }
    }

    /// Whether every stream was refused only because no relay port was free.
    pub fn is_resource_exhaustion(&self) -> bool {
        matches!(self, NegotiationError::NotAcceptable(r)
            if !r.is_empty() && r.iter().all(|(_, why)| *why == RejectReason::NoRelayPort))
    }
}

/// The result of [`MediaSession::process_offer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferOutcome {
    /// The offer to send on the other leg.
    pub sdp: Sdp,
    /// Streams Tollgate (or the offerer) disabled, with the reason.
    pub rejected: Vec<(usize, RejectReason)>,
    /// Relay ports the session no longer holds (from a replaced pending offer).
    pub released: Vec<RelayPorts>,
}

/// The result of [`MediaSession::process_answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerOutcome {
    /// The answer to send on the offerer's leg.
    pub sdp: Sdp,
    /// The relay programme now in force.
    pub plan: MediaPlan,
    /// Relay ports the session no longer holds.
    pub released: Vec<RelayPorts>,
}

/// An SDP stored as its text (the form it was sent in), parsed back on load.
mod sdp_text {
    use super::Sdp;

    pub(super) fn serialize<S: serde::Serializer>(
        v: &Option<Sdp>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let text = v
            .as_ref()
            .map(|sdp| String::from_utf8_lossy(&sdp.to_bytes()).into_owned());
        serde::Serialize::serialize(&text, s)
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Sdp>, D::Error> {
        let text: Option<String> = serde::Deserialize::deserialize(d)?;
        text.map(|t| Sdp::parse(t.as_bytes()).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Tollgate's SDP identity on one leg.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Leg {
    session_id: u64,
    version: u64,
    address: Option<IpAddr>,
    #[serde(with = "sdp_text")]
    last_sent: Option<Sdp>,
}

/// The committed state of one m= line.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Slot {
    plan: StreamPlan,
    /// Keys Tollgate has offered or answered with toward the internal side, one per profile,
    /// reused in later offers so keys stay stable unless the suite changes.
    tollgate_keys: Vec<KeyMaterial>,
}

#[derive(Debug, Clone)]
enum PendingSrtp {
    /// Plain relay (T.38).
    None,
    /// Tollgate offered these `(tag, key)` to the internal side.
    Offered(Vec<(u32, KeyMaterial)>),
    /// The internal side offered; Tollgate chose this line and will answer with its key.
    Selected {
        tag: u32,
        internal_send: KeyMaterial,
        tollgate_send: KeyMaterial,
    },
}

#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "a handful per call, built on signalling events only"
)]
enum PendingStream {
    Rejected {
        media_type: MediaType,
        reason: RejectReason,
        offerer_proto: Proto,
    },
    Accepted {
        media_type: MediaType,
        relay: RelayPorts,
        offerer: PeerMedia,
        offerer_proto: Proto,
        offerer_mux: bool,
        srtp: PendingSrtp,
    },
}

#[derive(Debug, Clone)]
struct Pending {
    from: Side,
    streams: Vec<PendingStream>,
    /// The offer Tollgate sent on the other leg.
    sent: Sdp,
    /// Per m= line, the keys Tollgate holds after this offer (committed with the answer).
    tollgate_keys: Vec<Vec<KeyMaterial>>,
}

/// The SDP state of one call: Tollgate's identity on each leg, the negotiated streams and the
/// offer awaiting its answer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MediaSession {
    legs: [Leg; 2],
    slots: Vec<Slot>,
    /// Not stored: only sessions without an offer in flight are stored (the call-state
    /// store writes calls at stable points).
    #[serde(skip)]
    pending: Option<Pending>,
}

/// Attributes that describe an end-to-end transport or security association Tollgate
/// terminates; they are not forwarded.
const DROPPED_ATTRIBUTES: &[&str] = &[
    "crypto",
    "candidate",
    "remote-candidates",
    "end-of-candidates",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
    "ice-pacing",
    "fingerprint",
    "setup",
    "tls-id",
    "zrtp-hash",
    "key-mgmt",
];

impl MediaSession {
    /// A new call. `rng` supplies the random `o=` session ids of both legs.
    pub fn new(rng: &mut impl FnMut(&mut [u8])) -> Self {
        let mut leg = || {
            let mut b = [0u8; 8];
            rng(&mut b);
            // Keep the id below 2^62 so it reads like the NTP-style ids peers expect.
            Leg {
                session_id: u64::from_be_bytes(b) >> 2,
                version: 1,
                address: None,
                last_sent: None,
            }
        };
        MediaSession {
            legs: [leg(), leg()],
            slots: Vec::new(),
            pending: None,
        }
    }

    /// Whether an offer is pending (answered or not).
    pub fn pending_offerer(&self) -> Option<Side> {
        self.pending.as_ref().map(|p| p.from)
    }

    /// The last SDP Tollgate sent on `side`.
    pub fn last_sent(&self, side: Side) -> Option<&Sdp> {
        self.legs
            .get(side.index())
            .and_then(|l| l.last_sent.as_ref())
    }

    /// The relay programme in force (from the last processed answer).
    pub fn plan(&self) -> MediaPlan {
        MediaPlan {
            streams: self.slots.iter().map(|s| s.plan.clone()).collect(),
        }
    }

    /// Every relay port pair the session holds (negotiated streams and the pending offer's).
    pub fn held_ports(&self) -> Vec<RelayPorts> {
        let mut out: Vec<RelayPorts> = Vec::new();
        let committed = self.slots.iter().filter_map(|s| match &s.plan {
            StreamPlan::Active(a) => Some(a.relay),
            StreamPlan::Rejected { .. } => None,
        });
        let pending = self
            .pending
            .iter()
            .flat_map(|p| p.streams.iter())
            .filter_map(|s| match s {
                PendingStream::Accepted { relay, .. } => Some(*relay),
                PendingStream::Rejected { .. } => None,
            });
        for r in committed.chain(pending) {
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out
    }

    fn released_since(&self, before: Vec<RelayPorts>) -> Vec<RelayPorts> {
        let now = self.held_ports();
        before.into_iter().filter(|r| !now.contains(r)).collect()
    }

    /// The offer failed on the other leg (error response, 491): drops the pending offer and
    /// returns the relay ports only it held.
    pub fn offer_failed(&mut self) -> Vec<RelayPorts> {
        let before = self.held_ports();
        self.pending = None;
        self.released_since(before)
    }

    /// The transaction that carried the answer is over (no further answer to this offer will
    /// come): drops the pending offer and returns the relay ports only it held.
    pub fn finish_offer(&mut self) -> Vec<RelayPorts> {
        self.offer_failed()
    }

    /// The call is over: every relay port the session holds.
    pub fn close(self) -> Vec<RelayPorts> {
        self.held_ports()
    }

    /// Processes an offer that arrived on leg `from` and returns the offer to send on the other
    /// leg. `alloc` is asked for relay ports for each stream that has none yet (`None`: that
    /// stream is rejected); `rng` fills fresh key material.
    pub fn process_offer(
        &mut self,
        cfg: &RewriteConfig,
        from: Side,
        offer: &Sdp,
        alloc: &mut impl FnMut(&PortRequest) -> Option<RelayPorts>,
        rng: &mut impl FnMut(&mut [u8]),
    ) -> Result<OfferOutcome, NegotiationError> {
        if offer.media.len() < self.slots.len() {
            return Err(NegotiationError::StreamsRemoved {
                previous: self.slots.len(),
                now: offer.media.len(),
            });
        }
        let to = from.other();

        // 1. Decide each stream without allocating anything.
        let mut decisions: Vec<Result<Candidate, RejectReason>> = offer
            .media
            .iter()
            .enumerate()
            .map(|(i, m)| examine_offered(cfg, from, offer, i, m))
            .collect();
        let refuse = |decisions: &[Result<Candidate, RejectReason>]| {
            let none_ok = decisions.iter().all(Result::is_err);
            let ours = decisions
                .iter()
                .any(|d| matches!(d, Err(r) if r.is_tollgate_decision()));
            if none_ok && ours {
                Some(NegotiationError::NotAcceptable(
                    decisions
                        .iter()
                        .enumerate()
                        .filter_map(|(i, d)| d.as_ref().err().map(|r| (i, r.clone())))
                        .collect(),
                ))
            } else {
                None
            }
        };
        if let Some(e) = refuse(&decisions) {
            return Err(e);
        }

        // 2. Relay ports: keep the stream's current ones, else allocate.
        let mut relays: Vec<Option<RelayPorts>> = Vec::with_capacity(decisions.len());
        for (i, d) in decisions.iter_mut().enumerate() {
            let Ok(c) = d else {
                relays.push(None);
                continue;
            };
            let existing = self.current_relay(i);
            let relay = existing.or_else(|| {
                alloc(&PortRequest {
                    index: i,
                    media_type: c.media_type.clone(),
                    offerer: from,
                    offerer_address: c.peer.rtp.map(|a| a.ip()),
                })
            });
            if relay.is_none() {
                *d = Err(RejectReason::NoRelayPort);
            }
            relays.push(relay);
        }
        if let Some(e) = refuse(&decisions) {
            // Nothing was allocated: every allocation failed.
            return Err(e);
        }

        // 3. Keys, and the per-stream result.
        let before = self.held_ports();
        let mut streams = Vec::with_capacity(decisions.len());
        let mut keys_out = Vec::with_capacity(decisions.len());
        let mut outs = Vec::with_capacity(decisions.len());
        let mut rejected = Vec::new();
        for (i, (d, relay)) in decisions.into_iter().zip(relays).enumerate() {
            let m = offer.media.get(i);
            let media_type = m.map_or(MediaType::Audio, |m| m.media_type.clone());
            let proto = m.map_or(Proto::RtpAvp, |m| m.proto.clone());
            let mut keys = self
                .slots
                .get(i)
                .map(|s| s.tollgate_keys.clone())
                .unwrap_or_default();
            let (c, relay) = match (d, relay) {
                (Ok(c), Some(r)) => (c, r),
                (d, _) => {
                    let reason = d.err().unwrap_or(RejectReason::NoRelayPort);
                    rejected.push((i, reason.clone()));
                    outs.push(StreamOut::Rejected {
                        proto: proto_for(&proto, to),
                    });
                    streams.push(PendingStream::Rejected {
                        media_type,
                        reason,
                        offerer_proto: proto,
                    });
                    keys_out.push(keys);
                    continue;
                }
            };
            let current_srtp = self.current_srtp(i);
            let srtp = match c.crypto {
                CryptoPlan::None => PendingSrtp::None,
                CryptoPlan::TollgateOffers => {
                    let mut list = Vec::new();
                    for (n, p) in cfg.offer_suites.iter().enumerate() {
                        let key = key_for(&mut keys, *p, current_srtp.as_ref(), rng);
                        list.push((u32::try_from(n + 1).unwrap_or(u32::MAX), key));
                    }
                    PendingSrtp::Offered(list)
                }
                CryptoPlan::Selected { tag, key } => {
                    let tollgate_send =
                        key_for(&mut keys, key.profile(), current_srtp.as_ref(), rng);
                    PendingSrtp::Selected {
                        tag,
                        internal_send: key,
                        tollgate_send,
                    }
                }
            };
            let crypto = match &srtp {
                PendingSrtp::Offered(list) if to == Side::Int => {
                    list.iter().map(|(t, k)| Crypto::new(*t, k)).collect()
                }
                _ => Vec::new(),
            };
            let relay_addr = relay.on(to);
            outs.push(StreamOut::Active {
                ip: if c.peer.rtp.is_some() {
                    relay_addr.ip()
                } else {
                    unspecified_like(relay_addr.ip())
                },
                port: relay_addr.port(),
                proto: proto_for(&proto, to),
                crypto,
                rtcp_port: relay_addr.port().wrapping_add(1),
            });
            streams.push(PendingStream::Accepted {
                media_type,
                relay,
                offerer: c.peer,
                offerer_proto: proto,
                offerer_mux: c.mux,
                srtp,
            });
            keys_out.push(keys);
        }

        // 4. The offer for the other leg.
        let hint = first_relay_ip(&streams, to);
        let sdp = self.stamp(cfg, to, build(offer, &outs), hint);
        self.pending = Some(Pending {
            from,
            streams,
            sent: sdp.clone(),
            tollgate_keys: keys_out,
        });
        let released = self.released_since(before);
        Ok(OfferOutcome {
            sdp,
            rejected,
            released,
        })
    }

    /// Processes the answer that arrived on leg `from` to the pending offer and returns the
    /// answer to send on the offerer's leg with the relay programme now in force.
    pub fn process_answer(
        &mut self,
        cfg: &RewriteConfig,
        from: Side,
        answer: &Sdp,
    ) -> Result<AnswerOutcome, NegotiationError> {
        let pending = self
            .pending
            .as_ref()
            .ok_or(NegotiationError::NoOfferPending)?;
        if from == pending.from {
            return Err(NegotiationError::AnswerFromOfferer(from));
        }
        if answer.media.len() != pending.streams.len() {
            return Err(NegotiationError::AnswerStreamCount {
                offered: pending.streams.len(),
                answered: answer.media.len(),
            });
        }
        let offerer = pending.from;
        // Answers are checked against what Tollgate offered, whatever the accept list says.
        let answer_policy = CryptoPolicy {
            suites: Profile::ALL.to_vec(),
            ..cfg.crypto.clone()
        };

        let mut plans = Vec::with_capacity(pending.streams.len());
        let mut outs = Vec::with_capacity(pending.streams.len());
        for (i, (ps, am)) in pending.streams.iter().zip(&answer.media).enumerate() {
            let sent_proto = pending.sent.media.get(i).map(|m| m.proto.clone());
            match ps {
                PendingStream::Rejected {
                    media_type,
                    reason,
                    offerer_proto,
                } => {
                    plans.push(StreamPlan::Rejected {
                        media_type: media_type.clone(),
                        reason: reason.clone(),
                    });
                    outs.push(StreamOut::Rejected {
                        proto: offerer_proto.clone(),
                    });
                }
                PendingStream::Accepted {
                    media_type,
                    relay,
                    offerer: offerer_media,
                    offerer_proto,
                    offerer_mux,
                    srtp,
                } => {
                    if am.port == 0 {
                        plans.push(StreamPlan::Rejected {
                            media_type: media_type.clone(),
                            reason: RejectReason::RejectedByAnswerer,
                        });
                        outs.push(StreamOut::Rejected {
                            proto: offerer_proto.clone(),
                        });
                        continue;
                    }
                    if let Some(sp) = &sent_proto
                        && *sp != am.proto
                    {
                        return Err(NegotiationError::AnswerProto {
                            index: i,
                            offered: sp.to_string(),
                            answered: am.proto.to_string(),
                        });
                    }
                    let fault = |fault| NegotiationError::AnswerStream { index: i, fault };
                    let rtcp_mux = *offerer_mux && am.rtcp_mux();
                    let answerer_media =
                        peer_media(answer, i, am, rtcp_mux).map_err(|f| fault(f.into()))?;
                    let keys = match srtp {
                        PendingSrtp::None => None,
                        PendingSrtp::Offered(list) => {
                            Some(check_answer_crypto(&answer_policy, am, list).map_err(fault)?)
                        }
                        PendingSrtp::Selected {
                            tag,
                            internal_send,
                            tollgate_send,
                        } => Some(SrtpKeys {
                            profile: internal_send.profile(),
                            tag: *tag,
                            tollgate_send: tollgate_send.clone(),
                            internal_send: internal_send.clone(),
                        }),
                    };
                    let mut offerer_media = *offerer_media;
                    if rtcp_mux {
                        offerer_media.rtcp = None;
                    }
                    let (gateway, internal) = match offerer {
                        Side::Ext => (offerer_media, answerer_media),
                        Side::Int => (answerer_media, offerer_media),
                    };
                    let relay_addr = relay.on(offerer);
                    let crypto = match (&keys, offerer) {
                        (Some(k), Side::Int) => vec![Crypto::new(k.tag, &k.tollgate_send)],
                        _ => Vec::new(),
                    };
                    outs.push(StreamOut::Active {
                        ip: if answerer_media.rtp.is_some() {
                            relay_addr.ip()
                        } else {
                            unspecified_like(relay_addr.ip())
                        },
                        port: relay_addr.port(),
                        proto: offerer_proto.clone(),
                        crypto,
                        rtcp_port: if rtcp_mux {
                            relay_addr.port()
                        } else {
                            relay_addr.port().wrapping_add(1)
                        },
                    });
                    plans.push(StreamPlan::Active(ActiveStream {
                        media_type: media_type.clone(),
                        relay: *relay,
                        rtcp_mux,
                        gateway_to_internal: gateway.direction.sends()
                            && internal.direction.receives()
                            && internal.rtp.is_some(),
                        internal_to_gateway: internal.direction.sends()
                            && gateway.direction.receives()
                            && gateway.rtp.is_some(),
                        gateway,
                        internal,
                        srtp: keys,
                    }));
                }
            }
        }

        let before = self.held_ports();
        let keys = pending.tollgate_keys.clone();
        let hint = first_relay_ip(&pending.streams, offerer);
        let sdp = self.stamp(cfg, offerer, build(answer, &outs), hint);
        self.slots = plans
            .into_iter()
            .zip(keys.into_iter().chain(std::iter::repeat(Vec::new())))
            .map(|(plan, tollgate_keys)| Slot {
                plan,
                tollgate_keys,
            })
            .collect();
        let released = self.released_since(before);
        Ok(AnswerOutcome {
            sdp,
            plan: self.plan(),
            released,
        })
    }

    fn current_relay(&self, i: usize) -> Option<RelayPorts> {
        let committed = self.slots.get(i).and_then(|s| match &s.plan {
            StreamPlan::Active(a) => Some(a.relay),
            StreamPlan::Rejected { .. } => None,
        });
        committed.or_else(|| {
            self.pending
                .as_ref()
                .and_then(|p| p.streams.get(i))
                .and_then(|s| match s {
                    PendingStream::Accepted { relay, .. } => Some(*relay),
                    PendingStream::Rejected { .. } => None,
                })
        })
    }

    fn current_srtp(&self, i: usize) -> Option<SrtpKeys> {
        self.slots.get(i).and_then(|s| match &s.plan {
            StreamPlan::Active(a) => a.srtp.clone(),
            StreamPlan::Rejected { .. } => None,
        })
    }

    /// Puts Tollgate's `o=` for leg `to` on `sdp`: same session id throughout, the version
    /// incremented whenever the body differs from the last one sent on that leg.
    /// `relay_ip` is the relay address of the first relayed stream on that leg; the first one
    /// seen becomes the `o=` address for the rest of the call.
    fn stamp(
        &mut self,
        cfg: &RewriteConfig,
        to: Side,
        mut sdp: Sdp,
        relay_ip: Option<IpAddr>,
    ) -> Sdp {
        let Some(leg) = self.legs.get_mut(to.index()) else {
            return sdp;
        };
        if leg.address.is_none() {
            leg.address = relay_ip;
        }
        let address = leg.address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        sdp.origin = Origin::new(&cfg.origin_username, leg.session_id, leg.version, address);
        if let Some(last) = &leg.last_sent
            && *last != sdp
        {
            leg.version = leg.version.saturating_add(1);
            sdp.origin = Origin::new(&cfg.origin_username, leg.session_id, leg.version, address);
        }
        leg.last_sent = Some(sdp.clone());
        sdp
    }
}

/// How a stream's keys are settled.
#[derive(Debug)]
enum CryptoPlan {
    /// No SRTP (relayed as is).
    None,
    /// Tollgate offers its suites to the internal side.
    TollgateOffers,
    /// The internal side offered; this line was chosen.
    Selected { tag: u32, key: KeyMaterial },
}

/// An offered stream Tollgate can relay.
#[derive(Debug)]
struct Candidate {
    media_type: MediaType,
    peer: PeerMedia,
    mux: bool,
    crypto: CryptoPlan,
}

fn examine_offered(
    cfg: &RewriteConfig,
    from: Side,
    offer: &Sdp,
    i: usize,
    m: &Media,
) -> Result<Candidate, RejectReason> {
    if m.port == 0 {
        return Err(RejectReason::DisabledByOfferer);
    }
    let policy = match &m.media_type {
        MediaType::Audio => StreamPolicy::Relay,
        MediaType::Video => cfg.video,
        MediaType::Image => cfg.image,
        _ => StreamPolicy::Reject,
    };
    if policy == StreamPolicy::Reject {
        return Err(RejectReason::MediaTypeNotRelayed(m.media_type.clone()));
    }
    let crypto = if m.proto.is_udptl() {
        CryptoPlan::None
    } else if m.proto.is_dtls_srtp() {
        return Err(RejectReason::DtlsSrtp);
    } else {
        match from {
            Side::Ext if m.proto.is_plain_rtp() => CryptoPlan::TollgateOffers,
            Side::Ext if m.proto.is_sdes_srtp() => return Err(RejectReason::SrtpFromGateway),
            Side::Int if m.proto.is_plain_rtp() => {
                return Err(RejectReason::PlainRtpFromInternal);
            }
            Side::Int if m.proto.is_sdes_srtp() => {
                let lines = m.crypto().map_err(RejectReason::BadCrypto)?;
                if lines.is_empty() {
                    return Err(RejectReason::NoCrypto);
                }
                let (c, key) = cfg
                    .crypto
                    .select(&lines)
                    .map_err(RejectReason::NoAcceptableCrypto)?;
                CryptoPlan::Selected { tag: c.tag, key }
            }
            _ => return Err(RejectReason::UnsupportedProto(m.proto.to_string())),
        }
    };
    let peer = peer_media(offer, i, m, false).map_err(|f| match f {
        PeerFault::NotIp(a) => RejectReason::NotAnIpAddress(a),
        PeerFault::NoConnection => RejectReason::NotAnIpAddress("(none)".to_owned()),
        PeerFault::Attr(e) => RejectReason::BadAttribute(e),
    })?;
    Ok(Candidate {
        media_type: m.media_type.clone(),
        peer,
        mux: m.rtcp_mux(),
        crypto,
    })
}

#[derive(Debug)]
enum PeerFault {
    NotIp(String),
    NoConnection,
    Attr(AttrError),
}

impl From<PeerFault> for AnswerFault {
    fn from(f: PeerFault) -> Self {
        match f {
            PeerFault::NotIp(a) => AnswerFault::NotAnIpAddress(a),
            PeerFault::NoConnection => AnswerFault::NoConnection,
            PeerFault::Attr(e) => AnswerFault::BadAttribute(e),
        }
    }
}

/// The transport a peer declared for stream `i` of its SDP.
fn peer_media(sdp: &Sdp, i: usize, m: &Media, rtcp_mux: bool) -> Result<PeerMedia, PeerFault> {
    let conn = sdp.media_connection(i).ok_or(PeerFault::NoConnection)?;
    let ip = conn
        .ip()
        .ok_or_else(|| PeerFault::NotIp(conn.address.clone()))?;
    let rtcp = m.rtcp().map_err(PeerFault::Attr)?;
    let direction = sdp.media_direction(i);
    if ip.is_unspecified() {
        return Ok(PeerMedia {
            rtp: None,
            rtcp: None,
            direction,
        });
    }
    let rtcp = if rtcp_mux {
        None
    } else {
        Some(match rtcp {
            Some(r) => {
                let rip = match &r.connection {
                    Some(c) => c.ip().ok_or_else(|| PeerFault::NotIp(c.address.clone()))?,
                    None => ip,
                };
                SocketAddr::new(rip, r.port)
            }
            None => SocketAddr::new(ip, m.port.wrapping_add(1)),
        })
    };
    Ok(PeerMedia {
        rtp: Some(SocketAddr::new(ip, m.port)),
        rtcp,
        direction,
    })
}

/// Checks the internal side's answer against the `(tag, key)` list Tollgate offered.
fn check_answer_crypto(
    policy: &CryptoPolicy,
    am: &Media,
    offered: &[(u32, KeyMaterial)],
) -> Result<SrtpKeys, AnswerFault> {
    let lines = am.crypto().map_err(AnswerFault::BadAttribute)?;
    let [c] = lines.as_slice() else {
        return Err(AnswerFault::CryptoCount(lines.len()));
    };
    let (_, ours) = offered
        .iter()
        .find(|(t, _)| *t == c.tag)
        .ok_or(AnswerFault::UnknownTag(c.tag))?;
    if c.suite != ours.profile().sdes_name() {
        return Err(AnswerFault::SuiteMismatch {
            tag: c.tag,
            offered: ours.profile(),
            answered: c.suite.clone(),
        });
    }
    let theirs = policy.accept(c).map_err(AnswerFault::Crypto)?;
    Ok(SrtpKeys {
        profile: ours.profile(),
        tag: c.tag,
        tollgate_send: ours.clone(),
        internal_send: theirs,
    })
}

/// Tollgate's key for `profile`: the one in use if the suite is unchanged, else the one offered
/// before for that suite, else a fresh one (remembered in `keys`).
fn key_for(
    keys: &mut Vec<KeyMaterial>,
    profile: Profile,
    current: Option<&SrtpKeys>,
    rng: &mut impl FnMut(&mut [u8]),
) -> KeyMaterial {
    if let Some(k) = current.filter(|k| k.profile == profile) {
        return k.tollgate_send.clone();
    }
    if let Some(k) = keys.iter().find(|k| k.profile() == profile) {
        return k.clone();
    }
    let k = KeyMaterial::generate(profile, |b| rng(b));
    keys.push(k.clone());
    k
}

/// The protocol of a stream as sent on leg `to`.
fn proto_for(p: &Proto, to: Side) -> Proto {
    match to {
        Side::Int => p.to_secure(),
        Side::Ext => p.to_plain(),
    }
}

fn unspecified_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// The relay address on `side` of the first relayed stream.
fn first_relay_ip(streams: &[PendingStream], side: Side) -> Option<IpAddr> {
    streams.iter().find_map(|s| match s {
        PendingStream::Accepted { relay, .. } => Some(relay.on(side).ip()),
        PendingStream::Rejected { .. } => None,
    })
}

/// What one stream of an SDP Tollgate sends looks like.
#[derive(Debug)]
enum StreamOut {
    Rejected {
        proto: Proto,
    },
    Active {
        ip: IpAddr,
        port: u16,
        proto: Proto,
        crypto: Vec<Crypto>,
        rtcp_port: u16,
    },
}

/// Builds the SDP Tollgate sends from the peer SDP `src` (the offer or answer it relays):
/// same lines in the same order, with addresses, ports, protocols and keys replaced. The `o=`
/// is set afterwards by [`MediaSession::stamp`].
fn build(src: &Sdp, outs: &[StreamOut]) -> Sdp {
    let first_ip = outs.iter().find_map(|o| match o {
        StreamOut::Active { ip, .. } => Some(*ip),
        StreamOut::Rejected { .. } => None,
    });
    let session_ip = first_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let session_c = src.connection().is_some();
    let lines = src
        .lines
        .iter()
        .filter_map(|l| match l {
            Line::Connection(_) => Some(Line::Connection(Connection::new(session_ip))),
            Line::Key(_) => None,
            Line::Attribute(a) if DROPPED_ATTRIBUTES.contains(&a.name.as_str()) => None,
            other => Some(other.clone()),
        })
        .collect();
    let media = src
        .media
        .iter()
        .zip(outs)
        .map(|(m, out)| build_media(m, out, session_c.then_some(session_ip), session_ip))
        .collect();
    Sdp {
        origin: src.origin.clone(),
        session_name: src.session_name.clone(),
        lines,
        media,
    }
}

fn build_media(m: &Media, out: &StreamOut, session_c: Option<IpAddr>, fallback: IpAddr) -> Media {
    match out {
        StreamOut::Rejected { proto } => Media {
            media_type: m.media_type.clone(),
            port: 0,
            port_count: None,
            proto: proto.clone(),
            formats: m.formats.clone(),
            lines: if session_c.is_some() {
                Vec::new()
            } else {
                vec![Line::Connection(Connection::new(fallback))]
            },
        },
        StreamOut::Active {
            ip,
            port,
            proto,
            crypto,
            rtcp_port,
        } => {
            let mut lines = Vec::with_capacity(m.lines.len() + crypto.len() + 1);
            let mut had_c = false;
            let mut crypto_done = false;
            for l in &m.lines {
                match l {
                    Line::Connection(_) => {
                        had_c = true;
                        lines.push(Line::Connection(Connection::new(*ip)));
                    }
                    Line::Key(_) => {}
                    Line::Attribute(a) if a.name == "crypto" => {
                        if !crypto_done {
                            lines.extend(crypto_lines(crypto));
                            crypto_done = true;
                        }
                    }
                    Line::Attribute(a) if a.name == "rtcp" => {
                        lines.push(Line::Attribute(Attribute::new(
                            "rtcp",
                            rtcp_port.to_string(),
                        )));
                    }
                    Line::Attribute(a) if DROPPED_ATTRIBUTES.contains(&a.name.as_str()) => {}
                    other => lines.push(other.clone()),
                }
            }
            if !crypto_done {
                lines.extend(crypto_lines(crypto));
            }
            if !had_c && session_c != Some(*ip) {
                let at = lines
                    .iter()
                    .take_while(|l| matches!(l, Line::Info(_)))
                    .count();
                lines.insert(at, Line::Connection(Connection::new(*ip)));
            }
            Media {
                media_type: m.media_type.clone(),
                port: *port,
                port_count: None,
                proto: proto.clone(),
                formats: m.formats.clone(),
                lines,
            }
        }
    }
}

fn crypto_lines(crypto: &[Crypto]) -> impl Iterator<Item = Line> + '_ {
    crypto
        .iter()
        .map(|c| Line::Attribute(Attribute::new("crypto", c.to_string())))
}
