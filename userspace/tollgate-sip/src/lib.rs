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
pub use transaction::{Action, Flow, TimerKind, TransactionConfig, TransactionLayer, TxId};
pub use types::{
    CSeq, MAGIC_COOKIE, MediaType, Method, MinSe, NameAddr, Refresher, SessionExpires, Transport,
    Via,
};
pub use uri::{Host, SipUri, Uri};
