//! Tollgate's B2BUA call core, sans-IO: [`Input`]s and `now` in, [`Output`]s out. No sockets,
//! clocks, threads or async runtime: the daemon's tokio driver owns those.
//!
//! Every call has two independent SIP dialogs, one per side ([`Side::Ext`]: gateways over
//! SIP/TCP with plain RTP; [`Side::Int`]: the internal network over SIP/TLS with SRTP). The core
//! builds on `tollgate-sip` (codec, transactions, dialogs, builders) and `tollgate-sdp` (the
//! AVP <-> SAVP offer/answer rewrite) and programs the media relay with
//! `tollgate-relay` [`MediaFlowSpec`](tollgate_relay::MediaFlowSpec)s.
//!
//! * [`types`] — the driver contract ([`Input`], [`Output`], [`Cdr`], [`CallEvent`], ids).
//! * [`config`] — [`Config`] (sides, trunks, routes, media, SIP settings), number rewriting.
//! * [`b2bua`] — [`B2bua`], the state machine the driver calls; call setup and in-dialog
//!   handling live in private modules (`setup`, `indialog`), per-call state in `call`, the
//!   plan-to-flow mapping in `media`.
//! * [`ports`] — relay port pools.
//! * [`error`] — [`ConfigError`].

pub mod b2bua;
mod call;
pub mod config;
pub mod error;
mod indialog;
mod media;
pub mod ports;
mod setup;
pub mod types;

pub use b2bua::{B2bua, Rng};
pub use config::{
    Config, ExtConfig, IntConfig, MediaConfig, Rewrite, Route, SipConfig, Trunk, normalize,
};
pub use error::ConfigError;
pub use types::{
    CallEvent, CallId, Cdr, ConnId, Direction, EndCause, Input, Output, RefuseReason, Side, Target,
    TimerId, Transport,
};
