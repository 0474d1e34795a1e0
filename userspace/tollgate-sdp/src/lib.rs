//! SDP for Tollgate: the RFC 8866 codec and the offer/answer rewrite of the media relay B2BUA.
//!
//! * [`session`]: the session model ([`Sdp`], [`Media`], [`Line`], ...), parser and serializer.
//! * [`attr`]: attributes, raw and typed (`rtpmap`, `fmtp`, `ptime`, `rtcp`, direction).
//! * [`crypto`]: `a=crypto` (RFC 4568) lines and the policy that accepts or refuses them.
//! * [`rewrite`]: the per-call offer/answer state ([`MediaSession`]) that turns the gateway's
//!   RTP/AVP SDP into the internal side's RTP/SAVP SDP and back, and says how to program the
//!   media relay ([`MediaPlan`]).
//! * [`error`]: parse errors.
//!
//! Everything is sans-IO: no clocks, sockets or global randomness. Fresh keys come from a
//! caller-supplied `FnMut(&mut [u8])` (a CSPRNG in production), relay ports from a
//! caller-supplied allocator.

pub mod attr;
pub mod crypto;
pub mod error;
pub mod rewrite;
pub mod session;

pub use attr::{AttrError, Attribute, Direction, Fmtp, Rtcp, Rtpmap};
pub use crypto::{Crypto, CryptoPolicy, CryptoRefusal, FecOrder, SessionParam};
pub use error::{ParseError, ParseErrorKind};
pub use rewrite::{
    ActiveStream, AnswerFault, AnswerOutcome, MediaPlan, MediaSession, NegotiationError,
    OfferOutcome, PeerMedia, PortRequest, RejectReason, RelayPorts, RewriteConfig, Side, SrtpKeys,
    StreamPlan, StreamPolicy,
};
pub use session::{Bandwidth, Connection, Line, Media, MediaType, Origin, Proto, Sdp, Timing};
