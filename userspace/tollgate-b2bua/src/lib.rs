//! Tollgate's B2BUA call core, sans-IO: [`Input`]s and `now` in, [`Output`]s out. No sockets,
//! clocks, threads or async runtime: the daemon's tokio driver owns those.
//!
//! Every call has two independent SIP dialogs, one per side ([`Side::Ext`]: gateways over
//! SIP/TCP with plain RTP; [`Side::Int`]: the internal network over SIP/TLS with SRTP). The core
//! builds on `tollgate-sip` (codec, transactions, dialogs, builders) and `tollgate-sdp` (the
//! AVP <-> SAVP offer/answer rewrite) and programs the media relay with
//! [`MediaFlowSpec`](tollgate_common::spec::MediaFlowSpec)s (the vocabulary both planes share,
//! `tollgate-common`), which the data plane carries out.
//!
//! * [`types`] — the driver contract ([`Input`], [`Output`], [`Cdr`], [`CallEvent`], ids).
//! * [`config`] — [`Config`] (sides, trunks, routes, media, SIP settings), number rewriting.
//! * [`b2bua`] — [`B2bua`], the state machine the driver calls. Its parts live in private
//!   modules, each owning its state: `calls` (the call table and its dialog/transaction
//!   indexes), `timers` (timer ids and purposes), `trunks` (trunk state, OPTIONS keepalives),
//!   `transport` (flows, sending). Call logic: `newcall` (route, negotiate, open legs, one
//!   refusal path), `setup` (the callee side's responses, failover), `indialog` (relays,
//!   session timers), `teardown` (ending calls, orphaned INVITEs); per-call state and its
//!   `Phase` in `call`, the effects context in `effects`, the plan-to-flow mapping in `media`.
//! * [`ports`] — relay port pools.
//! * [`inspect`] — read-only views of calls and trunks for operators (keys redacted).
//! * `admission` — rate and concurrency limits per trunk and overall, next hops' rate caps and
//!   down marking (checked before a new call allocates anything).
//! * `headers` — which headers cross from one leg to the other (an allowlist: topology hiding
//!   and the trust boundary).
//! * [`error`] — [`ConfigError`].
//! * [`record`] — a stable call's stored form (the call-state store) and its restoration.

//! # Behaviour the driver can rely on
//!
//! * Every received request is answered (or, for ACK, absorbed); requests refused before a
//!   transaction exists (unknown trunk 403, loop 482, Max-Forwards 483, 416/420/415/406) are
//!   answered statelessly without 100 Trying. Every refusal emits [`CallEvent::Refused`].
//! * A call is torn down in the [`B2bua::handle`] call that decides it: BYE is answered 200 at
//!   once and the other leg gets its BYE; flows are removed, ports freed, the CDR written.
//!   Transactions still open toward a peer are finished without the call: a 2xx that arrives
//!   for an abandoned INVITE is ACKed and BYEd (the CANCEL/200 race).
//! * Status mapping toward the caller: a callee-side final error is relayed with its code,
//!   except 401/407 (credentials cannot cross the B2BUA) -> 403 and 3xx (redirects are not
//!   followed) -> 480. No response at all from the next hop (Timer B) -> 504; the no-answer
//!   timer -> 408; transport failure -> 503 with Retry-After. Outbound calls fail over to the
//!   route's next trunk that is up on 503, 408, Timer B or a transport failure.
//! * Session timers (RFC 4028), per leg: the callee leg uses the refresher of its 2xx (none:
//!   Tollgate); the caller leg's refresher is the caller when it supports timers (or the one it
//!   asked for), else Tollgate. Tollgate refreshes with UPDATE when the peer allows it, else
//!   with a re-INVITE carrying the SDP it last sent on that leg; a leg the peer should refresh
//!   expires at interval - min(32 s, interval/3) and the call ends with BYE (Reason) on both
//!   legs. A relayed re-INVITE/UPDATE refreshes both legs.
//! * Offer/answer may sit in the INVITE/2xx, a delayed offer's 2xx/ACK, a provisional (early
//!   media; each fork's answer is kept and the answering fork's is in force at the 2xx), or a
//!   callee's reliable provisional answered in the caller's PRACK (when the caller takes
//!   100rel). A relayed re-INVITE/UPDATE whose 2xx cannot be used is answered (502/488) and
//!   ends the call.
//! * Only allowlisted headers cross from one leg to the other (`headers`); Reason crosses on
//!   BYE and CANCEL.
//! * Every call ends by itself even if both peers vanish: the no-answer timer before answer,
//!   the ACK wait (64·T1), Timer C on re-INVITEs, and session timers after answer (with
//!   `session_expires = 0` only BYE or [`Input::MediaInactive`] end a confirmed call).

mod admission;
pub mod b2bua;
mod call;
mod calls;
pub mod config;
mod effects;
pub mod error;
mod failover;
mod headers;
mod indialog;
pub mod inspect;
mod media;
mod newcall;
mod offer;
mod own_headers;
pub mod ports;
pub mod record;
mod session;
mod setup;
mod teardown;
mod timers;
mod transport;
mod trunks;
pub mod types;

pub use b2bua::{B2bua, Rng, supported_tags};
pub use config::{
    Config, ExtConfig, IntConfig, MediaConfig, RateLimit, Rewrite, Route, SipConfig, Trunk,
    normalize,
};
pub use error::ConfigError;
pub use types::{
    CallEvent, CallId, Cdr, ConnId, Direction, EndCause, Input, Output, RefuseReason, Side, Target,
    TimerId, Transport,
};
