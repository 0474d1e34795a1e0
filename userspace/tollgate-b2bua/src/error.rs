//! Errors of the B2BUA crate. Call handling never fails with an error value toward the driver:
//! every fault on the wire becomes a SIP response, an event or a silent drop. What can fail is
//! building a [`crate::Config`].

/// A configuration the core cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A rewrite or route pattern is not a valid regular expression.
    #[error("pattern {pattern:?} is not a valid regular expression: {reason}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// The regex compiler's message.
        reason: String,
    },
    /// Two trunks share a name.
    #[error("trunk name {0:?} is used twice")]
    DuplicateTrunk(String),
    /// A route names a trunk that does not exist.
    #[error("route names unknown trunk {0:?}")]
    UnknownTrunk(String),
    /// A media port range holds no RTP/RTCP pair (an even port and the next one).
    #[error("media port range of the {0} side holds no even RTP port with its RTCP port")]
    PortRange(&'static str),
    /// No SRTP suite to offer.
    #[error("no SRTP suite to offer to the internal side")]
    NoSuites,
    /// Min-SE below RFC 4028's floor of 90 s.
    #[error("Min-SE {0} is below the RFC 4028 minimum of 90 seconds")]
    MinSe(u32),
    /// Session-Expires below Min-SE.
    #[error("Session-Expires {session_expires} is below Min-SE {min_se}")]
    SessionExpires {
        /// Session-Expires.
        session_expires: u32,
        /// Min-SE.
        min_se: u32,
    },
}
