//! Errors for malformed or unacceptable SIP input, and the response each one calls for.
//!
//! A [`ParseError`] carries a [`Fault`] (what is wrong), whether the offending message was a
//! request or a response (responses are never answered: RFC 3261 §18.1.2 / RFC 4475 say an
//! unparsable or out-of-range response is silently dropped), and, when the headers needed for
//! §8.2.6 could be located, a copy of them so that [`ParseError::error_response`] can build the
//! response to send.

use std::borrow::Cow;
use std::fmt;

use crate::header::{Header, HeaderName};
use crate::message::{Message, StartLine};

/// What is wrong with a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Fault {
    /// The input is empty (or only whitespace).
    #[error("empty message")]
    Empty,
    /// The message is larger than the configured cap (513, RFC 3261 §21.5.13).
    #[error("message of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Size seen so far (headers plus declared body).
        size: usize,
        /// The configured cap.
        limit: usize,
    },
    /// The start line is neither a valid Request-Line nor a valid Status-Line.
    #[error("malformed start line: {0}")]
    StartLine(&'static str),
    /// The Request-URI does not parse.
    #[error("malformed Request-URI: {0}")]
    RequestUri(String),
    /// The SIP version is not 2.0.
    #[error("SIP version {0} not supported")]
    Version(String),
    /// A Status-Line code outside 100..=699.
    #[error("status code {0} out of range 100-699")]
    StatusCode(String),
    /// A header line without a colon, with an invalid name, or a stray continuation line.
    #[error("malformed header line: {0}")]
    HeaderLine(&'static str),
    /// Header section or body not valid UTF-8 where text is required.
    #[error("invalid UTF-8 in {0}")]
    Utf8(&'static str),
    /// A header the codec understands has a value that does not match its grammar.
    #[error("malformed {header} header: {reason}")]
    Header {
        /// The header's canonical name.
        header: Cow<'static, str>,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// A mandatory header is absent.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A header that may appear only once appears several times.
    #[error("{0} header appears more than once")]
    Duplicate(&'static str),
    /// CSeq's method does not match the request method.
    #[error("CSeq method {cseq} does not match request method {method}")]
    CSeqMismatch {
        /// Method in the start line.
        method: String,
        /// Method in CSeq.
        cseq: String,
    },
    /// Same as [`Fault::CSeqMismatch`] but the request method is unknown: answered 501.
    #[error("unknown method {method} (CSeq says {cseq})")]
    UnknownMethodMismatch {
        /// Method in the start line.
        method: String,
        /// Method in CSeq.
        cseq: String,
    },
    /// Content-Length declares more body than is present (datagram framing).
    #[error("Content-Length {declared} exceeds the {available} body bytes present")]
    BodyTruncated {
        /// Declared length.
        declared: usize,
        /// Bytes actually present after the header section.
        available: usize,
    },
    /// Stream transports need Content-Length (RFC 3261 §18.3).
    #[error("Content-Length missing (required on stream transports)")]
    NoContentLength,
    /// Request-URI scheme the element does not serve (416).
    #[error("unsupported URI scheme {0}")]
    UnsupportedScheme(String),
    /// Require lists extensions the element does not support (420).
    #[error("unsupported extension(s): {}", .0.join(", "))]
    BadExtension(Vec<String>),
    /// Max-Forwards reached zero at a forwarding element (483).
    #[error("Max-Forwards is zero")]
    TooManyHops,
    /// The body's Content-Type is not one the element accepts (415).
    #[error("unsupported media type {0}")]
    UnsupportedMediaType(String),
    /// Accept excludes every body type the element could answer with (406).
    #[error("Accept header excludes {0}")]
    NotAcceptable(String),
    /// A response that an endpoint must discard (RFC 3261 §8.1.3.3: more than one Via).
    #[error("response has {0} Via values; a UA accepts exactly one")]
    ExtraVia(usize),
}

/// Whether the faulty message was a request or a response, if that could be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The start line looked like a Request-Line.
    Request,
    /// The start line looked like a Status-Line.
    Response,
    /// The start line could not be classified.
    Unknown,
}

/// Raw copies of the headers needed to answer a request (RFC 3261 §8.2.6.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Echo {
    pub(crate) headers: Vec<Header>,
}

/// Why a message was rejected, and what to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    fault: Fault,
    origin: Origin,
    echo: Option<Box<Echo>>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin {
            Origin::Request => write!(f, "request rejected: {}", self.fault),
            Origin::Response => write!(f, "response dropped: {}", self.fault),
            Origin::Unknown => write!(f, "message rejected: {}", self.fault),
        }
    }
}

impl std::error::Error for ParseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.fault)
    }
}

impl ParseError {
    pub(crate) fn new(fault: Fault, origin: Origin) -> Self {
        ParseError {
            fault,
            origin,
            echo: None,
        }
    }

    pub(crate) fn with_echo(mut self, echo: Option<Echo>) -> Self {
        self.echo = echo.map(Box::new);
        self
    }

    /// Whether [`Self::error_response`] has the request headers it needs.
    pub fn can_respond(&self) -> bool {
        self.echo.is_some() && self.response().is_some()
    }

    /// What is wrong.
    pub fn fault(&self) -> &Fault {
        &self.fault
    }

    /// Whether the message was a request, a response or unclassifiable.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// True when the RFC says to drop the message without answering (every faulty response).
    pub fn is_silent_drop(&self) -> bool {
        self.response().is_none()
    }

    /// The status code and reason phrase to answer with, or `None` for a silent drop.
    ///
    /// 400 reason phrases name the fault, e.g. `Bad Request (malformed Via header: empty
    /// parameter name)`.
    pub fn response(&self) -> Option<(u16, Cow<'static, str>)> {
        if self.origin == Origin::Response {
            return None;
        }
        let fixed = |code: u16, reason: &'static str| Some((code, Cow::Borrowed(reason)));
        match &self.fault {
            Fault::Empty => None,
            Fault::TooLarge { .. } => fixed(513, "Message Too Large"),
            Fault::Version(_) => fixed(505, "Version Not Supported"),
            Fault::UnsupportedScheme(_) => fixed(416, "Unsupported URI Scheme"),
            Fault::BadExtension(_) => fixed(420, "Bad Extension"),
            Fault::TooManyHops => fixed(483, "Too Many Hops"),
            Fault::UnsupportedMediaType(_) => fixed(415, "Unsupported Media Type"),
            Fault::NotAcceptable(_) => fixed(406, "Not Acceptable"),
            Fault::UnknownMethodMismatch { .. } => fixed(501, "Not Implemented"),
            Fault::ExtraVia(_) => None,
            other => Some((
                400,
                Cow::Owned(reason_phrase(&format!("Bad Request ({other})"))),
            )),
        }
    }

    /// Builds the response to send (RFC 3261 §8.2.6): the status from [`Self::response`], the
    /// request's Via, From, To, Call-ID and CSeq copied verbatim, `to_tag` added to To if it has
    /// none, `Unsupported` for 420, `Content-Length: 0`. `None` for a silent drop or when the
    /// request's Via/From/To/Call-ID/CSeq could not be located (then the connection is the only
    /// thing left to act on).
    pub fn error_response(&self, to_tag: &str) -> Option<Message> {
        let (code, reason) = self.response()?;
        let echo = self.echo.as_ref()?;
        let mut resp = Message::new(StartLine::Response {
            code,
            reason: reason.into_owned(),
        });
        for h in &echo.headers {
            if h.name() == &HeaderName::To && !h.value().contains("tag=") && !to_tag.is_empty() {
                // Best effort on a raw (possibly malformed) To: append the tag parameter.
                let mut v = h.value().to_owned();
                v.push_str(";tag=");
                v.push_str(to_tag);
                resp.headers.push(Header::raw(HeaderName::To, v));
            } else {
                resp.headers.push(h.clone());
            }
        }
        if let Fault::BadExtension(list) = &self.fault {
            resp.headers
                .push(Header::raw(HeaderName::Unsupported, list.join(", ")));
        }
        resp.headers
            .push(Header::raw(HeaderName::ContentLength, "0".to_owned()));
        Some(resp)
    }
}

/// A reason phrase safe to put on the wire: the fault's text can quote the peer's bytes, so
/// anything but printable ASCII becomes `?` (a control character would make the response
/// itself unparseable, and CR/LF would end its start line), cut to 200 characters.
fn reason_phrase(text: &str) -> String {
    text.chars()
        .take(200)
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

impl From<ParseError> for Fault {
    fn from(e: ParseError) -> Self {
        e.fault
    }
}

/// Helper used by typed value parsers: the reason only; the caller adds the header name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError(pub Cow<'static, str>);

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ValueError {}

impl From<&'static str> for ValueError {
    fn from(s: &'static str) -> Self {
        ValueError(Cow::Borrowed(s))
    }
}

impl From<String> for ValueError {
    fn from(s: String) -> Self {
        ValueError(Cow::Owned(s))
    }
}

#[cfg(test)]
mod tests {
    use super::reason_phrase;

    #[test]
    fn reason_phrases_quote_no_control_bytes() {
        assert_eq!(
            reason_phrase("Bad Request (bad URI [::1\u{7}]\r\nX: y é)"),
            "Bad Request (bad URI [::1?]??X: y ?)"
        );
        assert_eq!(reason_phrase(&"x".repeat(500)).len(), 200);
    }
}
