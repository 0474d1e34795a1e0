//! The driver contract: what goes into the core ([`Input`]) and what comes out ([`Output`]),
//! with the identifiers both sides share, the CDR and the events for metrics and logs.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::Config;

pub use tollgate_common::Side;

/// A transport connection, numbered by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A SIP transport Tollgate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Transport {
    /// SIP over TCP.
    Tcp,
    /// SIP over TLS.
    Tls,
}

impl Transport {
    pub(crate) fn sip(self) -> tollgate_sip::Transport {
        match self {
            Transport::Tcp => tollgate_sip::Transport::Tcp,
            Transport::Tls => tollgate_sip::Transport::Tls,
        }
    }

    /// "tcp" or "tls" (the URI `transport` parameter).
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// Where the driver sends a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// On an existing connection (responses, requests toward a peer that connected to us).
    Conn(ConnId),
    /// To an address: reuse a connection to it or open one.
    Addr {
        /// Peer address.
        addr: SocketAddr,
        /// Transport to use.
        transport: Transport,
    },
}

/// A timer, numbered by the core. A fired timer comes back as [`Input::Timer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub u64);

/// Tollgate's own call number (never reused by one [`crate::B2bua`]).
pub type CallId = u64;

/// An event for the core.
#[derive(Debug)]
pub enum Input {
    /// A complete, parsed SIP message from a connection.
    Message {
        /// Side the connection is on.
        side: Side,
        /// The connection.
        conn: ConnId,
        /// The peer's address (source of the connection).
        peer: SocketAddr,
        /// The message.
        msg: tollgate_sip::Message,
    },
    /// Bytes from a connection that did not parse. The core answers when the RFC says to
    /// (e.g. 400 naming the fault) or ignores it; no call is affected.
    Invalid {
        /// Side.
        side: Side,
        /// Connection.
        conn: ConnId,
        /// Peer.
        peer: SocketAddr,
        /// The parse error (carries the response it calls for).
        error: tollgate_sip::ParseError,
    },
    /// A timer set with [`Output::SetTimer`] is due.
    Timer(TimerId),
    /// An outbound connection to `addr` could not be made: every transaction waiting on it
    /// gets a transport error (failover to the next trunk, 503 to the other leg).
    ConnectFailed {
        /// Side.
        side: Side,
        /// The address the driver tried.
        addr: SocketAddr,
    },
    /// A connection closed: transport error for the transactions using it.
    ConnClosed {
        /// Side.
        side: Side,
        /// The connection.
        conn: ConnId,
    },
    /// The data plane saw no media on this call's flows for the configured time.
    MediaInactive {
        /// The call.
        call: CallId,
    },
    /// Stop taking new calls: new INVITEs get 503 with Retry-After; existing calls run.
    Drain,
    /// New trunks, routes, limits and media settings, without dropping calls.
    Reload(Box<Config>),
    /// An operator ends a call (`tollgate ctl hangup`): BYE on both legs with a Reason
    /// carrying `reason`, which the CDR keeps as its note. Nothing happens if the call is gone.
    Hangup {
        /// The call.
        call: CallId,
        /// Why (free text).
        reason: String,
    },
    /// The data plane reports where a flow's SRTP stream stands (its rollover counter
    /// advanced, or a new SSRC): the call's stored record is brought up to date.
    SrtpPosition {
        /// The call.
        call: CallId,
        /// The flow id.
        flow: u64,
        /// The side the stream's packets arrive on.
        side: Side,
        /// Where it stands.
        pos: crate::record::SrtpPosition,
    },
}

/// An action for the driver.
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "outputs are moved once into the driver's Vec; boxing would add an allocation per message"
)]
pub enum Output {
    /// Encode `msg` and write it on `target` (opening or reusing a connection for `Addr`).
    Send {
        /// Side to send on.
        side: Side,
        /// Where.
        target: Target,
        /// The message.
        msg: tollgate_sip::Message,
    },
    /// Arm a timer; it comes back as [`Input::Timer`] at `at` (or later).
    SetTimer {
        /// Timer id (unique).
        id: TimerId,
        /// Deadline.
        at: Instant,
    },
    /// Disarm a timer (it may still fire if already queued; the core ignores stale ids).
    CancelTimer(TimerId),
    /// Program the data plane. `spec.id` is unique among installed flows; installing an id
    /// that is already installed is an update (re-INVITE/UPDATE: new addresses, re-keying).
    /// The core leaves `nic_mac`, `vlan` and `next_hop_mac` of both legs zero/`None`: the
    /// driver fills them from its NIC and neighbour tables.
    InstallMedia {
        /// The call the flow belongs to.
        call: CallId,
        /// The flow.
        spec: tollgate_common::spec::MediaFlowSpec,
    },
    /// Remove an installed flow.
    RemoveMedia {
        /// The call.
        call: CallId,
        /// Flow id (`spec.id` of its install).
        flow: u64,
    },
    /// One CDR per call, emitted after all its [`Output::RemoveMedia`] (the driver adds the
    /// media counters it read for the call's flows).
    Cdr(Cdr),
    /// For metrics and logs.
    Event(CallEvent),
    /// Write (or overwrite) the call's record in the call-state store: the call reached a
    /// stable state that differs from the one last stored. `record` is opaque to the driver
    /// (see [`crate::record`]).
    StoreCall {
        /// The call (its store key).
        call: CallId,
        /// The encoded [`crate::record::CallRecord`].
        record: Vec<u8>,
    },
    /// Delete the call's record: the call ended.
    ForgetCall {
        /// The call.
        call: CallId,
    },
}

/// Which way a call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Direction {
    /// PSTN to enterprise: the caller is on the ext side.
    Inbound,
    /// Enterprise to PSTN: the caller is on the int side.
    Outbound,
}

impl Direction {
    /// "inbound" or "outbound".
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }

    /// The caller's side.
    pub const fn caller(self) -> Side {
        match self {
            Direction::Inbound => Side::Ext,
            Direction::Outbound => Side::Int,
        }
    }
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndCause {
    /// A BYE from the given side.
    Bye(Side),
    /// The caller cancelled before answer (CANCEL, or BYE in an early dialog).
    Cancelled,
    /// The callee side answered the INVITE with this final error status (relayed).
    Rejected(u16),
    /// The callee side did not answer in time (no-answer timer).
    NoAnswer,
    /// The callee side's next hop did not respond (INVITE transaction timeout).
    Timeout,
    /// The connection toward the callee side failed (connect failure or closed).
    TransportError,
    /// The caller never acknowledged the 2xx.
    NoAck,
    /// The data plane saw no media for the inactivity timeout.
    MediaTimeout,
    /// A session timer (RFC 4028) expired without refresh.
    SessionExpired,
    /// A session refresh Tollgate sent failed.
    RefreshFailed,
    /// The SDP could not be negotiated (offer or answer unusable).
    MediaNegotiation,
    /// A message on one leg made the call unusable (e.g. a 2xx without an answer).
    ProtocolError,
    /// No route / every trunk of the route failed or is down.
    NoRoute,
    /// An operator ended the call (`tollgate ctl hangup`).
    Operator,
    /// The call's stored record could not be restored after a restart: both legs got a BYE.
    RestoreFailed,
}

impl EndCause {
    /// Label for CDRs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            EndCause::Bye(Side::Ext) => "bye_ext",
            EndCause::Bye(Side::Int) => "bye_int",
            EndCause::Cancelled => "cancelled",
            EndCause::Rejected(_) => "rejected",
            EndCause::NoAnswer => "no_answer",
            EndCause::Timeout => "timeout",
            EndCause::TransportError => "transport_error",
            EndCause::NoAck => "no_ack",
            EndCause::MediaTimeout => "media_timeout",
            EndCause::SessionExpired => "session_expired",
            EndCause::RefreshFailed => "refresh_failed",
            EndCause::MediaNegotiation => "media_negotiation",
            EndCause::ProtocolError => "protocol_error",
            EndCause::NoRoute => "no_route",
            EndCause::Operator => "operator",
            EndCause::RestoreFailed => "restore_failed",
        }
    }
}

impl fmt::Display for EndCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request was refused without creating a call (for the refused counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefuseReason {
    /// An ext-side request from an address that is not a configured trunk (403).
    UnknownTrunk,
    /// Unparsable or invalid request (400, 505, 513, ...).
    BadRequest,
    /// Unsupported extension / scheme / media type (420, 416, 415, 406).
    Unsupported,
    /// Max-Forwards exhausted (483).
    TooManyHops,
    /// Our own Via branch in a request (482).
    Loop,
    /// No route for the number, or every trunk of the route is down (404 / 503).
    NoRoute,
    /// The call limit is reached (503).
    Overload,
    /// Draining (503).
    Draining,
    /// The SDP offer is unacceptable (488) or malformed (400).
    NotAcceptable,
    /// Session interval below our minimum (422).
    IntervalTooSmall,
    /// A method Tollgate does not serve out of dialog (405).
    MethodNotAllowed,
    /// A request for a dialog or transaction that does not exist (481).
    NoSuchCall,
    /// Over the overall new-call rate (503).
    RateLimited,
    /// Over the trunk's new-call rate (503).
    TrunkRate,
    /// The trunk's concurrent call limit is reached (503).
    TrunkCalls,
    /// The next hop is marked down after a 503 or no answer (503).
    NextHopDown,
    /// Over the next hop's new-call rate cap (503).
    NextHopRate,
    /// The trunk is taken out of service by an operator (503).
    TrunkDisabled,
}

impl RefuseReason {
    /// Label for metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            RefuseReason::UnknownTrunk => "unknown_trunk",
            RefuseReason::BadRequest => "bad_request",
            RefuseReason::Unsupported => "unsupported",
            RefuseReason::TooManyHops => "too_many_hops",
            RefuseReason::Loop => "loop",
            RefuseReason::NoRoute => "no_route",
            RefuseReason::Overload => "overload",
            RefuseReason::Draining => "draining",
            RefuseReason::NotAcceptable => "not_acceptable",
            RefuseReason::IntervalTooSmall => "interval_too_small",
            RefuseReason::MethodNotAllowed => "method_not_allowed",
            RefuseReason::NoSuchCall => "no_such_call",
            RefuseReason::RateLimited => "rate_limited",
            RefuseReason::TrunkRate => "trunk_rate",
            RefuseReason::TrunkCalls => "trunk_calls",
            RefuseReason::NextHopDown => "next_hop_down",
            RefuseReason::NextHopRate => "next_hop_rate",
            RefuseReason::TrunkDisabled => "trunk_disabled",
        }
    }

    /// A refusal by call admission (rate, concurrency or next-hop state): expected under
    /// load, counted per trunk, not worth a log line each.
    pub fn is_admission(&self) -> bool {
        matches!(
            self,
            RefuseReason::RateLimited
                | RefuseReason::TrunkRate
                | RefuseReason::TrunkCalls
                | RefuseReason::NextHopDown
                | RefuseReason::NextHopRate
                | RefuseReason::TrunkDisabled
                | RefuseReason::Overload
        )
    }
}

/// For metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// A call was accepted for setup (its INVITE passed every check).
    Started {
        /// The call.
        call: CallId,
        /// Direction.
        direction: Direction,
        /// The trunk (inbound: the one it came from; outbound: the first tried).
        trunk: Option<String>,
    },
    /// A call was taken over from the call-state store after a restart (an answered call:
    /// no [`CallEvent::Started`] or [`CallEvent::Answered`] follows).
    Restored {
        /// The call.
        call: CallId,
    },
    /// The call was answered.
    Answered {
        /// The call.
        call: CallId,
        /// From the INVITE's arrival to the 2xx relayed to the caller.
        setup: Duration,
    },
    /// The call ended (its CDR follows).
    Ended {
        /// The call.
        call: CallId,
        /// Why.
        cause: EndCause,
        /// The final status the caller got (200 for an answered call).
        status: u16,
    },
    /// A request was refused without creating a call.
    Refused {
        /// Side it came from.
        side: Side,
        /// Its source.
        peer: SocketAddr,
        /// Method.
        method: String,
        /// Why.
        reason: RefuseReason,
        /// The status answered (0 when nothing could be answered).
        status: u16,
    },
    /// A new call from or to `trunk` was refused by admission (also reported as
    /// [`CallEvent::Refused`]); for the per-trunk counters.
    NotAdmitted {
        /// The trunk.
        trunk: String,
        /// Why.
        reason: RefuseReason,
    },
    /// A next hop was marked down (503 or no answer) or came back.
    NextHop {
        /// Its address.
        addr: SocketAddr,
        /// Whether it now takes calls.
        up: bool,
    },
    /// An outbound attempt moved to the next trunk of the route.
    Failover {
        /// The call.
        call: CallId,
        /// The trunk that failed.
        from: String,
        /// The next one.
        to: String,
        /// The status (or 408 timeout / 503 transport) that caused it.
        status: u16,
    },
    /// A trunk changed state (OPTIONS keepalive).
    TrunkStatus {
        /// Trunk name.
        trunk: String,
        /// Up or down.
        up: bool,
    },
}

/// One call detail record. Times are [`Instant`]s from the driver's clock (the `now` values
/// it passed in); the driver converts them to wall-clock time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cdr {
    /// Tollgate's call number.
    pub call: CallId,
    /// Direction.
    pub direction: Direction,
    /// The trunk used (inbound: the source trunk; outbound: the last trunk tried), if any.
    pub trunk: Option<String>,
    /// Calling number as received.
    pub calling_received: String,
    /// Calling number as sent on the other leg.
    pub calling_sent: String,
    /// Called number as received.
    pub called_received: String,
    /// Called number as sent on the other leg.
    pub called_sent: String,
    /// Call-ID on the ext leg.
    pub ext_call_id: String,
    /// Call-ID on the int leg (empty if no int leg was created).
    pub int_call_id: String,
    /// INVITE arrival.
    pub start: Instant,
    /// 2xx relayed to the caller.
    pub answer: Option<Instant>,
    /// Teardown.
    pub end: Instant,
    /// Why it ended.
    pub cause: EndCause,
    /// The final status the caller got (200 for an answered call).
    pub status: u16,
    /// The media flows the call used (the driver adds their counters).
    pub flows: Vec<u64>,
    /// Why an operator ended the call, if one did.
    pub note: Option<String>,
    /// Restarts of Tollgate the call crossed (restored from the call-state store).
    pub restarts: u32,
}
