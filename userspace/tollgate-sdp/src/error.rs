//! Parse errors of the SDP codec: each names the line and what is wrong with it.
//!
//! A [`ParseError`] on an SDP body in a request maps to `400 Bad Request` (see
//! [`ParseError::status_code`]); negotiation failures live in
//! [`crate::rewrite::NegotiationError`] and map to `488 Not Acceptable Here`.

/// A malformed SDP body: the 1-based line number and the fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SDP line {line}: {kind}")]
pub struct ParseError {
    /// 1-based line number (0 when the fault is about the body as a whole).
    pub line: usize,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

impl ParseError {
    pub(crate) fn new(line: usize, kind: ParseErrorKind) -> Self {
        ParseError { line, kind }
    }

    /// The SIP status a request carrying this body is refused with.
    pub const fn status_code(&self) -> u16 {
        400
    }
}

/// The fault in a malformed SDP body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The body has no lines at all.
    #[error("the SDP body is empty")]
    Empty,
    /// A line is not valid UTF-8.
    #[error("line is not valid UTF-8")]
    InvalidUtf8,
    /// A line contains a NUL or a carriage return that does not end the line.
    #[error("line contains a NUL or a stray CR")]
    ControlCharacter,
    /// An empty line before the end of the body.
    #[error("empty line inside the SDP body")]
    EmptyLine,
    /// A line is not `<letter>=<value>`.
    #[error("line is not <type letter>=<value>: {0:?}")]
    NotTypeValue(String),
    /// The first line is not `v=`.
    #[error("the first line must be v=0, found {0:?}")]
    FirstLineNotVersion(String),
    /// `v=` is not 0.
    #[error("unsupported SDP version v={0}")]
    UnsupportedVersion(String),
    /// The second line is not `o=`.
    #[error("o= must follow v=, found {0:?}")]
    MissingOrigin(String),
    /// The third line is not `s=`.
    #[error("s= must follow o=, found {0:?}")]
    MissingSessionName(String),
    /// The body ends before the mandatory `v=`, `o=`, `s=` lines.
    #[error("the body ends before the mandatory v=, o=, s= lines")]
    Truncated,
    /// A line type that may appear once appears again.
    #[error("{0}= may appear only once per session")]
    Duplicate(char),
    /// A line type that is only valid at session level appears in a media section.
    #[error("{0}= is not allowed inside a media description")]
    NotAtMediaLevel(char),
    /// The session has no `t=` line.
    #[error("the session has no t= line")]
    MissingTiming,
    /// Malformed `o=`.
    #[error("bad o= line: {0}")]
    BadOrigin(String),
    /// Malformed `c=`.
    #[error("bad c= line: {0}")]
    BadConnection(String),
    /// Malformed `b=`.
    #[error("bad b= line: {0}")]
    BadBandwidth(String),
    /// Malformed `t=`.
    #[error("bad t= line: {0}")]
    BadTiming(String),
    /// Malformed `m=`.
    #[error("bad m= line: {0}")]
    BadMedia(String),
    /// Malformed `a=` (the attribute name).
    #[error("bad a= line: {0}")]
    BadAttribute(String),
    /// An active media stream has no connection address at either level.
    #[error("m= line {index} has no c= line and the session has none")]
    MissingConnection {
        /// 0-based m= line index.
        index: usize,
    },
}
