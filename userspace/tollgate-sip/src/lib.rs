//! Tollgate's SIP core, sans-IO: bytes and `now` in, messages and actions out. No sockets,
//! clocks, threads or async runtime live here; the daemon's tokio layer drives it.
//!
//! * [`message`]: [`Message`] parse/encode (RFC 3261 §7, §25; RFC 5118 IPv6 references).
//! * [`header`], [`types`], [`uri`], [`params`]: header storage, typed header values, URIs.
//! * [`error`]: [`ParseError`] with the response each fault calls for (or a silent drop).
//! * [`check`]: UA-layer acceptance checks (416, 420, 483, 415, 406).
//! * [`framer`]: Content-Length framing for TCP/TLS with keepalives and a size cap.
//! * [`builder`]: responses (§8.2.6), new requests, deriving the other leg's request.
//! * [`transaction`]: RFC 3261 §17 transactions for reliable transports and the matching layer.
//! * [`dialog`]: RFC 3261 §12 dialogs, early dialogs from forking, in-dialog requests.
//!
//! Time is a [`std::time::Instant`] passed in by the caller as `now`; the crate never reads a
//! clock, so tests drive it with a simulated one (any base `Instant` plus offsets).
//!
//! A B2BUA leg in a few lines: frame bytes from a connection, reject what must be rejected,
//! hand the rest to the transaction layer, answer through it.
//!
//! ```
//! use std::time::Instant;
//! use tollgate_sip::{check_request, Action, TransportFlow, Frame, Framer, Message, TransactionLayer, UaPolicy};
//!
//! let bytes = b"INVITE sip:+15551234@tollgate.example.com SIP/2.0\r\n\
//! Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK1\r\n\
//! From: <sip:+15550001@gw.example.com>;tag=gw1\r\n\
//! To: <sip:+15551234@tollgate.example.com>\r\n\
//! Call-ID: c1@gw\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
//! Contact: <sip:gw@192.0.2.10:5060;transport=tcp>\r\nContent-Length: 0\r\n\r\n";
//! let now = Instant::now();
//! let (mut framer, mut layer) = (Framer::default(), TransactionLayer::default());
//! framer.push(bytes);
//! let Some(Ok(Frame::Message(msg))) = framer.next_frame() else { unreachable!() };
//! if let Err(e) = check_request(&msg, &UaPolicy::default()) {
//!     let _answer = e.error_response("our-tag"); // send it on the connection
//! }
//! layer.on_message(msg, TransportFlow(1), now);
//! let mut invite_tx = None;
//! while let Some(action) = layer.poll_action() {
//!     match action {
//!         Action::Send { msg, .. } => assert_eq!(msg.status(), Some(100)), // 100 Trying
//!         Action::Request { tx, msg, .. } => invite_tx = Some((tx, msg)),
//!         _ => {}
//!     }
//! }
//! let (tx, invite) = invite_tx.unwrap();
//! let ringing = Message::response_to(&invite, 180, None, Some("b2b-tag"));
//! layer.send_response(tx, ringing, now).unwrap();
//! assert!(matches!(layer.poll_action(), Some(Action::Send { .. })));
//! ```

pub mod builder;
pub mod check;
pub mod dialog;
pub mod error;
pub mod framer;
pub mod header;
pub mod message;
pub mod params;
pub(crate) mod scan;
pub mod transaction;
pub mod types;
pub mod uri;

pub use builder::{NewRequest, reason_phrase};
pub use check::{UaPolicy, check_request, check_response};
pub use dialog::{Dialog, DialogError, DialogId, DialogSet, DialogState};
pub use error::{Fault, Origin, ParseError};
pub use framer::{Frame, FrameError, Framer};
pub use header::{Header, HeaderName, Headers, Typed};
pub use message::{DEFAULT_MAX_SIZE, Message, ParseOptions, StartLine};
pub use params::{Param, Params};
pub use scan::{quote, unescape, unquote};
pub use transaction::{
    Action, TimerKind, TransactionConfig, TransactionLayer, TransportFlow, TxId,
};
pub use types::{
    CSeq, MAGIC_COOKIE, MediaType, Method, MinSe, NameAddr, Refresher, SessionExpires, Transport,
    Via,
};
pub use uri::{Host, SipUri, Uri};
