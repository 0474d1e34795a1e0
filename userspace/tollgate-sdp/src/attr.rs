//! Attributes (`a=`): the raw form every attribute keeps, and typed views of the ones Tollgate
//! reads: `rtpmap`, `fmtp`, `ptime`/`maxptime`, `rtcp` (RFC 3605), `rtcp-mux` (RFC 5761), the
//! direction attributes (RFC 3264 §5.1) and `crypto` (RFC 4568, in [`crate::crypto`]).
//!
//! The raw attribute is what round-trips; typed views are parsed on demand and a malformed one
//! gives an [`AttrError`] naming the attribute and the fault.

use std::fmt::{self, Display};

use crate::crypto::Crypto;
use crate::session::{Connection, Media, is_token_byte};

/// One `a=<name>[:<value>]` line, verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute name.
    pub name: String,
    /// The value after `:`, if there is one (a flag attribute has none).
    pub value: Option<String>,
}

impl Attribute {
    /// A flag attribute (`a=<name>`).
    pub fn flag(name: &str) -> Self {
        Attribute {
            name: name.to_owned(),
            value: None,
        }
    }

    /// A value attribute (`a=<name>:<value>`).
    pub fn new(name: &str, value: impl Into<String>) -> Self {
        Attribute {
            name: name.to_owned(),
            value: Some(value.into()),
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let (name, value) = match text.split_once(':') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (text, None),
        };
        if name.is_empty() {
            return Err("empty attribute name".to_owned());
        }
        if !name.bytes().all(is_token_byte) {
            return Err(format!("bad attribute name {name:?}"));
        }
        Ok(Attribute {
            name: name.to_owned(),
            value,
        })
    }

    fn value_or_err(&self) -> Result<&str, AttrError> {
        self.value
            .as_deref()
            .ok_or_else(|| AttrError::new(&self.name, "value missing"))
    }
}

impl Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}:{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A malformed attribute value: which attribute and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("bad a={name}: {reason}")]
pub struct AttrError {
    /// The attribute name.
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

impl AttrError {
    pub(crate) fn new(name: &str, reason: impl Into<String>) -> Self {
        AttrError {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The media direction (RFC 3264 §5.1), from the offerer's or answerer's own point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Direction {
    /// `sendrecv` (the default).
    SendRecv,
    /// `sendonly`.
    SendOnly,
    /// `recvonly`.
    RecvOnly,
    /// `inactive`.
    Inactive,
}

impl Direction {
    /// The direction named by an attribute, if the name is one.
    pub fn from_attribute_name(name: &str) -> Option<Self> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The attribute name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Whether the party that wrote this direction sends media.
    pub const fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the party that wrote this direction wants to receive media.
    pub const fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

impl Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtpmap {
    /// RTP payload type (0..=127).
    pub payload_type: u8,
    /// Encoding name (`PCMU`, `telephone-event`, ...).
    pub encoding: String,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Encoding parameters (audio channels), if given.
    pub params: Option<String>,
}

impl Rtpmap {
    /// Parses the value of an `rtpmap` attribute.
    pub fn parse(value: &str) -> Result<Self, AttrError> {
        let bad = |r: String| AttrError::new("rtpmap", r);
        let (pt, rest) = value.split_once(' ').ok_or_else(|| {
            bad(format!(
                "expected <payload type> <encoding>, found {value:?}"
            ))
        })?;
        let payload_type = parse_payload_type(pt).map_err(bad)?;
        let mut parts = rest.splitn(3, '/');
        let encoding = parts.next().unwrap_or_default();
        if encoding.is_empty() || !encoding.bytes().all(is_token_byte) {
            return Err(bad(format!("bad encoding name {encoding:?}")));
        }
        let rate = parts
            .next()
            .ok_or_else(|| bad(format!("{encoding} has no clock rate")))?;
        let clock_rate = parse_u32(rate).ok_or_else(|| bad(format!("bad clock rate {rate:?}")))?;
        let params = parts.next().map(str::to_owned);
        Ok(Rtpmap {
            payload_type,
            encoding: encoding.to_owned(),
            clock_rate,
            params,
        })
    }
}

impl Display for Rtpmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.payload_type, self.encoding, self.clock_rate
        )?;
        if let Some(p) = &self.params {
            write!(f, "/{p}")?;
        }
        Ok(())
    }
}

/// `a=fmtp:<format> <format specific parameters>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fmtp {
    /// The format (payload type) the parameters are for.
    pub format: String,
    /// The parameters, verbatim.
    pub params: String,
}

impl Fmtp {
    /// Parses the value of an `fmtp` attribute.
    pub fn parse(value: &str) -> Result<Self, AttrError> {
        let (format, params) = value.split_once(' ').ok_or_else(|| {
            AttrError::new(
                "fmtp",
                format!("expected <format> <parameters>, found {value:?}"),
            )
        })?;
        if format.is_empty() || !format.bytes().all(is_token_byte) {
            return Err(AttrError::new("fmtp", format!("bad format {format:?}")));
        }
        Ok(Fmtp {
            format: format.to_owned(),
            params: params.to_owned(),
        })
    }

    /// The `;`-separated parameters as `(name, value)` pairs (`0-15` gives `("0-15", None)`).
    pub fn pairs(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.params
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (p, None),
            })
    }
}

impl Display for Fmtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.format, self.params)
    }
}

/// `a=rtcp:<port> [<nettype> <addrtype> <address>]` (RFC 3605).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtcp {
    /// RTCP port.
    pub port: u16,
    /// RTCP address, when it differs from the stream's `c=`.
    pub connection: Option<Connection>,
}

impl Rtcp {
    /// Parses the value of an `rtcp` attribute.
    pub fn parse(value: &str) -> Result<Self, AttrError> {
        let (port_s, rest) = match value.split_once(' ') {
            Some((p, r)) => (p, Some(r)),
            None => (value, None),
        };
        let port = port_s
            .parse::<u16>()
            .ok()
            .filter(|_| !port_s.is_empty() && port_s.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| AttrError::new("rtcp", format!("bad port {port_s:?}")))?;
        let connection = match rest {
            Some(r) => Some(Connection::parse(r).map_err(|e| AttrError::new("rtcp", e))?),
            None => None,
        };
        Ok(Rtcp { port, connection })
    }
}

impl Display for Rtcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.port)?;
        if let Some(c) = &self.connection {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}

fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_payload_type(s: &str) -> Result<u8, String> {
    match parse_u32(s) {
        Some(v) if v <= 127 => Ok(v as u8),
        _ => Err(format!("payload type {s:?} is not a number in 0..=127")),
    }
}

/// Typed views of a media description's attributes.
impl Media {
    /// Every `a=rtpmap`, in order.
    pub fn rtpmaps(&self) -> Result<Vec<Rtpmap>, AttrError> {
        self.attributes()
            .filter(|a| a.name == "rtpmap")
            .map(|a| Rtpmap::parse(a.value_or_err()?))
            .collect()
    }

    /// The `a=rtpmap` of payload type `pt`, if any.
    pub fn rtpmap(&self, pt: u8) -> Result<Option<Rtpmap>, AttrError> {
        Ok(self.rtpmaps()?.into_iter().find(|r| r.payload_type == pt))
    }

    /// The `a=fmtp` of `format`, if any.
    pub fn fmtp(&self, format: &str) -> Result<Option<Fmtp>, AttrError> {
        for a in self.attributes().filter(|a| a.name == "fmtp") {
            let f = Fmtp::parse(a.value_or_err()?)?;
            if f.format == format {
                return Ok(Some(f));
            }
        }
        Ok(None)
    }

    /// `a=ptime` in milliseconds, if given.
    pub fn ptime(&self) -> Result<Option<u32>, AttrError> {
        self.millis("ptime")
    }

    /// `a=maxptime` in milliseconds, if given.
    pub fn maxptime(&self) -> Result<Option<u32>, AttrError> {
        self.millis("maxptime")
    }

    fn millis(&self, name: &str) -> Result<Option<u32>, AttrError> {
        let Some(a) = self.attribute(name) else {
            return Ok(None);
        };
        let v = a.value_or_err()?;
        match parse_u32(v) {
            Some(ms) if ms > 0 => Ok(Some(ms)),
            _ => Err(AttrError::new(
                name,
                format!("{v:?} is not a whole positive number of milliseconds"),
            )),
        }
    }

    /// `a=rtcp` (RFC 3605), if given.
    pub fn rtcp(&self) -> Result<Option<Rtcp>, AttrError> {
        match self.attribute("rtcp") {
            Some(a) => Ok(Some(Rtcp::parse(a.value_or_err()?)?)),
            None => Ok(None),
        }
    }

    /// Whether `a=rtcp-mux` (RFC 5761) is present.
    pub fn rtcp_mux(&self) -> bool {
        self.has_attribute("rtcp-mux")
    }

    /// Every `a=crypto` (RFC 4568), in order.
    pub fn crypto(&self) -> Result<Vec<Crypto>, AttrError> {
        self.attributes()
            .filter(|a| a.name == "crypto")
            .map(|a| Crypto::parse(a.value_or_err()?))
            .collect()
    }
}
