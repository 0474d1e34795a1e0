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
//!
//! An inbound call (gateway offers RTP/AVP, the internal side answers RTP/SAVP):
//!
//! ```
//! use tollgate_sdp::{MediaSession, PortRequest, RelayPorts, RewriteConfig, Sdp, Side};
//!
//! let cfg = RewriteConfig::default();
//! let mut rng = |b: &mut [u8]| b.fill(7); // a CSPRNG in production
//! let mut alloc = |_: &PortRequest| {
//!     Some(RelayPorts {
//!         gateway: "203.0.113.1:20000".parse().unwrap(),
//!         internal: "10.0.0.1:30000".parse().unwrap(),
//!     })
//! };
//! let mut call = MediaSession::new(&mut rng);
//!
//! // The gateway's INVITE: a parse error would be a 400, a negotiation error a 488.
//! let offer = Sdp::parse(
//!     b"v=0\r\no=gw 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
//!       m=audio 17310 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n",
//! )?;
//! let out = call.process_offer(&cfg, Side::Ext, &offer, &mut alloc, &mut rng)?;
//! assert!(out.sdp.to_string().contains("m=audio 30000 RTP/SAVP 0 101\r\n"));
//!
//! // The internal side's 200 OK (it picked tag 1).
//! let answer = Sdp::parse(
//!     b"v=0\r\no=- 5 5 IN IP4 10.1.1.50\r\ns=-\r\nc=IN IP4 10.1.1.50\r\nt=0 0\r\n\
//!       m=audio 52000 RTP/SAVP 0\r\n\
//!       a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n",
//! )?;
//! let ans = call.process_answer(&cfg, Side::Int, &answer)?;
//! assert!(ans.sdp.to_string().contains("m=audio 20000 RTP/AVP 0\r\n"));
//! let (_, stream) = ans.plan.active().next().expect("one relayed stream");
//! assert_eq!(stream.internal.rtp, Some("10.1.1.50:52000".parse()?));
//! assert_eq!(stream.gateway.rtp, Some("192.0.2.10:17310".parse()?));
//! let keys = stream.srtp.as_ref().expect("SRTP on the internal leg");
//! assert_eq!(keys.profile, tollgate_srtp::Profile::Aes128CmHmacSha1_80);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

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
