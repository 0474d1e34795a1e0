//! The SDP session model (RFC 8866 §5), its parser and its serializer.
//!
//! The model keeps every line in the order it came in: `v=`, `o=` and `s=` are typed fields
//! (they must come first, in that order), every later session-level line is a [`Line`] in
//! [`Sdp::lines`], and each `m=` line opens a [`Media`] that owns the lines up to the next `m=`.
//! Unknown line types and unknown attributes are kept verbatim, so a canonical body (CRLF line
//! ends, single spaces) serializes back byte for byte. Bare LF line ends are accepted on input;
//! output always uses CRLF.
//!
//! Parsing never panics: a malformed body yields a [`ParseError`] naming the line and the fault.

use std::fmt::{self, Display, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::attr::{Attribute, Direction};
use crate::error::{ParseError, ParseErrorKind};

/// A parsed SDP session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    /// `o=`: the originator and session identifier.
    pub origin: Origin,
    /// `s=`: the session name (kept verbatim; may be empty or `-`).
    pub session_name: String,
    /// Every session-level line after `s=` and before the first `m=`, in order.
    pub lines: Vec<Line>,
    /// The media descriptions, in `m=` order.
    pub media: Vec<Media>,
}

/// One line after `s=` (session level) or after `m=` (media level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `i=` session or media title.
    Info(String),
    /// `u=` URI of description.
    Uri(String),
    /// `e=` email address.
    Email(String),
    /// `p=` phone number.
    Phone(String),
    /// `c=` connection data.
    Connection(Connection),
    /// `b=` bandwidth.
    Bandwidth(Bandwidth),
    /// `t=` timing.
    Timing(Timing),
    /// `r=` repeat times (kept verbatim).
    Repeat(String),
    /// `z=` time zone adjustments (kept verbatim).
    TimeZones(String),
    /// `k=` encryption key (obsolete; kept verbatim).
    Key(String),
    /// `a=` attribute.
    Attribute(Attribute),
    /// A line with a type letter SDP does not define, kept verbatim.
    Other {
        /// The type letter.
        kind: char,
        /// Everything after `=`.
        value: String,
    },
}

impl Line {
    /// The type letter of the line.
    pub fn kind(&self) -> char {
        match self {
            Line::Info(_) => 'i',
            Line::Uri(_) => 'u',
            Line::Email(_) => 'e',
            Line::Phone(_) => 'p',
            Line::Connection(_) => 'c',
            Line::Bandwidth(_) => 'b',
            Line::Timing(_) => 't',
            Line::Repeat(_) => 'r',
            Line::TimeZones(_) => 'z',
            Line::Key(_) => 'k',
            Line::Attribute(_) => 'a',
            Line::Other { kind, .. } => *kind,
        }
    }
}

impl Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Info(v) => write!(f, "i={v}"),
            Line::Uri(v) => write!(f, "u={v}"),
            Line::Email(v) => write!(f, "e={v}"),
            Line::Phone(v) => write!(f, "p={v}"),
            Line::Connection(c) => write!(f, "c={c}"),
            Line::Bandwidth(b) => write!(f, "b={b}"),
            Line::Timing(t) => write!(f, "t={t}"),
            Line::Repeat(v) => write!(f, "r={v}"),
            Line::TimeZones(v) => write!(f, "z={v}"),
            Line::Key(v) => write!(f, "k={v}"),
            Line::Attribute(a) => write!(f, "a={a}"),
            Line::Other { kind, value } => write!(f, "{kind}={value}"),
        }
    }
}

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`.
///
/// The session id and version are kept as the decimal digit strings they came as (RFC 8866
/// allows any number of digits), so they round-trip exactly and never overflow;
/// [`Origin::increment_version`] adds one in decimal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// User name (`-` when there is none).
    pub username: String,
    /// Session id: decimal digits.
    pub session_id: String,
    /// Session version: decimal digits.
    pub session_version: String,
    /// Network type (`IN`).
    pub net_type: String,
    /// Address type (`IP4`, `IP6`).
    pub addr_type: String,
    /// Unicast address or host name of the originator.
    pub address: String,
}

impl Origin {
    /// An origin for `address` with numeric id and version.
    pub fn new(username: &str, session_id: u64, session_version: u64, address: IpAddr) -> Self {
        Origin {
            username: username.to_owned(),
            session_id: session_id.to_string(),
            session_version: session_version.to_string(),
            net_type: "IN".to_owned(),
            addr_type: addr_type_of(address).to_owned(),
            address: address.to_string(),
        }
    }

    /// The session version as a number, if it fits 64 bits.
    pub fn version_u64(&self) -> Option<u64> {
        self.session_version.parse().ok()
    }

    /// Adds one to the session version (RFC 3264 §8: each changed SDP of a session carries the
    /// previous version plus one). Works on the decimal string, so it never overflows.
    /// A version that is not all digits (only possible if the field was set by hand) becomes
    /// `1`.
    pub fn increment_version(&mut self) {
        if self.session_version.is_empty()
            || !self.session_version.bytes().all(|b| b.is_ascii_digit())
        {
            self.session_version = "1".to_owned();
            return;
        }
        let mut digits: Vec<u8> = self.session_version.bytes().collect();
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, b'1');
                break;
            }
            i -= 1;
            match digits.get_mut(i) {
                Some(d) if *d == b'9' => *d = b'0',
                Some(d) => {
                    *d += 1;
                    break;
                }
                None => break,
            }
        }
        self.session_version = String::from_utf8(digits).unwrap_or_else(|_| "1".to_owned());
    }

    fn parse(value: &str) -> Result<Self, String> {
        let f: Vec<&str> = value.split(' ').collect();
        if f.len() != 6 {
            return Err(format!(
                "expected 6 space-separated fields, found {}",
                f.len()
            ));
        }
        if f.iter().any(|s| s.is_empty()) {
            return Err("empty field (double space?)".to_owned());
        }
        for (name, v) in [("session id", f[1]), ("session version", f[2])] {
            if !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{name} {v:?} is not a decimal number"));
            }
        }
        Ok(Origin {
            username: f[0].to_owned(),
            session_id: f[1].to_owned(),
            session_version: f[2].to_owned(),
            net_type: f[3].to_owned(),
            addr_type: f[4].to_owned(),
            address: f[5].to_owned(),
        })
    }
}

impl Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.username,
            self.session_id,
            self.session_version,
            self.net_type,
            self.addr_type,
            self.address
        )
    }
}

/// `c=<nettype> <addrtype> <connection-address>`.
///
/// The address is kept as written (an IP literal, a multicast address with `/ttl`, or a host
/// name); [`Connection::ip`] gives the typed unicast address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Network type (`IN`).
    pub net_type: String,
    /// Address type (`IP4`, `IP6`).
    pub addr_type: String,
    /// The connection address as written.
    pub address: String,
}

fn addr_type_of(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

impl Connection {
    /// `IN IP4 <a>` or `IN IP6 <a>` for an IP address.
    pub fn new(ip: IpAddr) -> Self {
        Connection {
            net_type: "IN".to_owned(),
            addr_type: addr_type_of(ip).to_owned(),
            address: ip.to_string(),
        }
    }

    /// The address as an IP, when it is an `IN` literal of the stated family without `/ttl`.
    pub fn ip(&self) -> Option<IpAddr> {
        if self.net_type != "IN" {
            return None;
        }
        match self.addr_type.as_str() {
            "IP4" => self.address.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
            "IP6" => self.address.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
            _ => None,
        }
    }

    /// Whether this is `0.0.0.0` or `::`: the RFC 2543 way of putting a stream on hold.
    pub fn is_unspecified(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }

    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        let f: Vec<&str> = value.split(' ').collect();
        let [net_type, addr_type, address] = f.as_slice() else {
            return Err(format!(
                "expected <nettype> <addrtype> <address>, found {} fields",
                f.len()
            ));
        };
        if net_type.is_empty() || addr_type.is_empty() || address.is_empty() {
            return Err("empty field (double space?)".to_owned());
        }
        if *net_type == "IN" {
            validate_address(addr_type, address)?;
        }
        Ok(Connection {
            net_type: (*net_type).to_owned(),
            addr_type: (*addr_type).to_owned(),
            address: (*address).to_owned(),
        })
    }
}

/// Checks an `IN` connection address: an IP literal of the stated family (optionally with the
/// multicast `/ttl[/count]` suffixes) or a host name.
fn validate_address(addr_type: &str, address: &str) -> Result<(), String> {
    let (host, suffix) = match address.split_once('/') {
        Some((h, s)) => (h, Some(s)),
        None => (address, None),
    };
    if let Some(s) = suffix
        && (s.is_empty()
            || !s
                .split('/')
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
    {
        return Err(format!("bad multicast suffix in {address:?}"));
    }
    let is_hostname = |h: &str| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    match addr_type {
        "IP4" => {
            if host.parse::<Ipv4Addr>().is_ok() {
                return Ok(());
            }
            if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') || !is_hostname(host) {
                return Err(format!("{host:?} is not an IPv4 address or host name"));
            }
            Ok(())
        }
        "IP6" => {
            if host.parse::<Ipv6Addr>().is_ok() {
                return Ok(());
            }
            if host.contains(':') || !is_hostname(host) {
                return Err(format!("{host:?} is not an IPv6 address or host name"));
            }
            Ok(())
        }
        // Other address types are kept as they are.
        _ => Ok(()),
    }
}

impl Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.net_type, self.addr_type, self.address)
    }
}

/// `b=<bwtype>:<bandwidth>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bandwidth {
    /// Bandwidth type (`AS`, `CT`, `TIAS`, ...).
    pub bw_type: String,
    /// The value (kbit/s for AS and CT, bit/s for TIAS).
    pub value: u64,
}

impl Bandwidth {
    fn parse(value: &str) -> Result<Self, String> {
        let (t, v) = value
            .split_once(':')
            .ok_or_else(|| format!("expected <bwtype>:<bandwidth>, found {value:?}"))?;
        if t.is_empty() || !t.bytes().all(is_token_byte) {
            return Err(format!("bad bandwidth type {t:?}"));
        }
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("bandwidth {v:?} is not a decimal number"));
        }
        let value = v
            .parse()
            .map_err(|_| format!("bandwidth {v:?} does not fit 64 bits"))?;
        Ok(Bandwidth {
            bw_type: t.to_owned(),
            value,
        })
    }
}

impl Display for Bandwidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.bw_type, self.value)
    }
}

/// `t=<start-time> <stop-time>` (NTP seconds; `0 0` for an unbounded session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Start time.
    pub start: u64,
    /// Stop time.
    pub stop: u64,
}

impl Timing {
    fn parse(value: &str) -> Result<Self, String> {
        let (a, b) = value
            .split_once(' ')
            .ok_or_else(|| format!("expected <start> <stop>, found {value:?}"))?;
        let num = |s: &str| -> Result<u64, String> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("time {s:?} is not a decimal number"));
            }
            s.parse()
                .map_err(|_| format!("time {s:?} does not fit 64 bits"))
        };
        Ok(Timing {
            start: num(a)?,
            stop: num(b)?,
        })
    }
}

impl Display for Timing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.start, self.stop)
    }
}

/// The media type of an `m=` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MediaType {
    /// `audio`
    Audio,
    /// `video`
    Video,
    /// `text`
    Text,
    /// `application`
    Application,
    /// `message`
    Message,
    /// `image` (T.38 fax)
    Image,
    /// Anything else, as written.
    Other(String),
}

impl MediaType {
    /// Parses a media type token.
    pub fn parse(s: &str) -> Self {
        match s {
            "audio" => MediaType::Audio,
            "video" => MediaType::Video,
            "text" => MediaType::Text,
            "application" => MediaType::Application,
            "message" => MediaType::Message,
            "image" => MediaType::Image,
            other => MediaType::Other(other.to_owned()),
        }
    }

    /// The token as written in SDP.
    pub fn as_str(&self) -> &str {
        match self {
            MediaType::Audio => "audio",
            MediaType::Video => "video",
            MediaType::Text => "text",
            MediaType::Application => "application",
            MediaType::Message => "message",
            MediaType::Image => "image",
            MediaType::Other(s) => s,
        }
    }
}

impl Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transport protocol of an `m=` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Proto {
    /// `RTP/AVP`: plain RTP.
    RtpAvp,
    /// `RTP/AVPF`: plain RTP with RTCP feedback.
    RtpAvpf,
    /// `RTP/SAVP`: SRTP (keys by SDES `a=crypto` here).
    RtpSavp,
    /// `RTP/SAVPF`: SRTP with RTCP feedback.
    RtpSavpf,
    /// `UDP/TLS/RTP/SAVP`: DTLS-SRTP.
    UdpTlsRtpSavp,
    /// `UDP/TLS/RTP/SAVPF`: DTLS-SRTP with feedback.
    UdpTlsRtpSavpf,
    /// `udptl`: T.38 fax over UDPTL.
    Udptl,
    /// `udp`: unspecified protocol over UDP.
    Udp,
    /// Anything else, as written.
    Other(String),
}

impl Proto {
    /// Parses a protocol token (case-sensitive as registered, except `udptl`, which is seen in
    /// both cases in the field).
    pub fn parse(s: &str) -> Self {
        match s {
            "RTP/AVP" => Proto::RtpAvp,
            "RTP/AVPF" => Proto::RtpAvpf,
            "RTP/SAVP" => Proto::RtpSavp,
            "RTP/SAVPF" => Proto::RtpSavpf,
            "UDP/TLS/RTP/SAVP" => Proto::UdpTlsRtpSavp,
            "UDP/TLS/RTP/SAVPF" => Proto::UdpTlsRtpSavpf,
            "udptl" => Proto::Udptl,
            "udp" => Proto::Udp,
            other => Proto::Other(other.to_owned()),
        }
    }

    /// The token as written in SDP.
    pub fn as_str(&self) -> &str {
        match self {
            Proto::RtpAvp => "RTP/AVP",
            Proto::RtpAvpf => "RTP/AVPF",
            Proto::RtpSavp => "RTP/SAVP",
            Proto::RtpSavpf => "RTP/SAVPF",
            Proto::UdpTlsRtpSavp => "UDP/TLS/RTP/SAVP",
            Proto::UdpTlsRtpSavpf => "UDP/TLS/RTP/SAVPF",
            Proto::Udptl => "udptl",
            Proto::Udp => "udp",
            Proto::Other(s) => s,
        }
    }

    /// Whether the protocol is SRTP keyed by SDES (`RTP/SAVP`, `RTP/SAVPF`).
    pub fn is_sdes_srtp(&self) -> bool {
        matches!(self, Proto::RtpSavp | Proto::RtpSavpf)
    }

    /// Whether the protocol is plain RTP (`RTP/AVP`, `RTP/AVPF`).
    pub fn is_plain_rtp(&self) -> bool {
        matches!(self, Proto::RtpAvp | Proto::RtpAvpf)
    }

    /// Whether the protocol is DTLS-SRTP.
    pub fn is_dtls_srtp(&self) -> bool {
        matches!(self, Proto::UdpTlsRtpSavp | Proto::UdpTlsRtpSavpf)
    }

    /// Whether the protocol is T.38 UDPTL (either case).
    pub fn is_udptl(&self) -> bool {
        match self {
            Proto::Udptl => true,
            Proto::Other(s) => s.eq_ignore_ascii_case("udptl"),
            _ => false,
        }
    }

    /// The SRTP counterpart of a plain RTP protocol (`RTP/AVP` to `RTP/SAVP`); others unchanged.
    pub fn to_secure(&self) -> Proto {
        match self {
            Proto::RtpAvp => Proto::RtpSavp,
            Proto::RtpAvpf => Proto::RtpSavpf,
            other => other.clone(),
        }
    }

    /// The plain counterpart of an SRTP protocol (`RTP/SAVP` to `RTP/AVP`); others unchanged.
    pub fn to_plain(&self) -> Proto {
        match self {
            Proto::RtpSavp => Proto::RtpAvp,
            Proto::RtpSavpf => Proto::RtpAvpf,
            other => other.clone(),
        }
    }
}

impl Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One media description: the `m=` line and the lines under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// Media type.
    pub media_type: MediaType,
    /// Transport port (0: the stream is rejected or disabled).
    pub port: u16,
    /// The `/<number of ports>` suffix, if present.
    pub port_count: Option<u16>,
    /// Transport protocol.
    pub proto: Proto,
    /// Media formats (RTP payload types for RTP; `t38` for T.38).
    pub formats: Vec<String>,
    /// The media-level lines after `m=`, in order.
    pub lines: Vec<Line>,
}

impl Media {
    fn parse(value: &str) -> Result<Self, String> {
        let mut f = value.split(' ');
        let media = f.next().unwrap_or_default();
        if media.is_empty() || !media.bytes().all(is_token_byte) {
            return Err(format!("bad media type {media:?}"));
        }
        let port_field = f.next().ok_or_else(|| "missing port".to_owned())?;
        let (port_s, count_s) = match port_field.split_once('/') {
            Some((p, c)) => (p, Some(c)),
            None => (port_field, None),
        };
        let num16 = |s: &str, what: &str| -> Result<u16, String> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{what} {s:?} is not a decimal number"));
            }
            s.parse().map_err(|_| format!("{what} {s} is above 65535"))
        };
        let port = num16(port_s, "port")?;
        let port_count = match count_s {
            Some(c) => {
                let n = num16(c, "port count")?;
                if n == 0 {
                    return Err("port count 0".to_owned());
                }
                Some(n)
            }
            None => None,
        };
        let proto = f.next().ok_or_else(|| "missing protocol".to_owned())?;
        if proto.is_empty() || !proto.bytes().all(|b| is_token_byte(b) || b == b'/') {
            return Err(format!("bad protocol {proto:?}"));
        }
        let formats: Vec<String> = f.map(str::to_owned).collect();
        if formats.iter().any(|s| s.is_empty()) {
            return Err("empty format (double space?)".to_owned());
        }
        if formats.is_empty() && port != 0 {
            return Err("no media formats".to_owned());
        }
        Ok(Media {
            media_type: MediaType::parse(media),
            port,
            port_count,
            proto: Proto::parse(proto),
            formats,
            lines: Vec::new(),
        })
    }

    /// The `m=` value (without `m=`).
    pub fn media_line(&self) -> String {
        let mut s = format!("{} {}", self.media_type, self.port);
        if let Some(n) = self.port_count {
            let _ = write!(s, "/{n}");
        }
        let _ = write!(s, " {}", self.proto);
        for fmt in &self.formats {
            let _ = write!(s, " {fmt}");
        }
        s
    }

    /// The media-level `c=` line, if any.
    pub fn connection(&self) -> Option<&Connection> {
        self.lines.iter().find_map(|l| match l {
            Line::Connection(c) => Some(c),
            _ => None,
        })
    }

    /// The media-level attributes, in order.
    pub fn attributes(&self) -> impl Iterator<Item = &Attribute> {
        attributes_of(&self.lines)
    }

    /// The first media-level attribute called `name`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes().find(|a| a.name == name)
    }

    /// Whether a media-level flag attribute (such as `rtcp-mux`) is present.
    pub fn has_attribute(&self, name: &str) -> bool {
        self.attribute(name).is_some()
    }

    /// The media-level direction attribute, if any (the last one wins if several are given).
    pub fn direction(&self) -> Option<Direction> {
        direction_of(&self.lines)
    }
}

fn attributes_of(lines: &[Line]) -> impl Iterator<Item = &Attribute> {
    lines.iter().filter_map(|l| match l {
        Line::Attribute(a) => Some(a),
        _ => None,
    })
}

fn direction_of(lines: &[Line]) -> Option<Direction> {
    attributes_of(lines)
        .filter_map(|a| Direction::from_attribute_name(&a.name))
        .last()
}

/// RFC 8866 `token-char`.
pub(crate) fn is_token_byte(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x27 | 0x2A | 0x2B | 0x2D | 0x2E | 0x30..=0x39 | 0x41..=0x5A | 0x5E..=0x7E)
}

impl Sdp {
    /// Parses an SDP body. Lines end in CRLF or a bare LF; the last line may lack its line end;
    /// trailing empty lines are ignored.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let lines = split_lines(body)?;
        let mut it = lines.into_iter();
        let (n, v) = it
            .next()
            .ok_or_else(|| ParseError::new(0, ParseErrorKind::Empty))?;
        let version = v
            .strip_prefix("v=")
            .ok_or_else(|| ParseError::new(n, ParseErrorKind::FirstLineNotVersion(clip(v))))?;
        if version != "0" {
            return Err(ParseError::new(
                n,
                ParseErrorKind::UnsupportedVersion(clip(version)),
            ));
        }
        let (n, o) = it
            .next()
            .ok_or_else(|| ParseError::new(n, ParseErrorKind::Truncated))?;
        let o = o
            .strip_prefix("o=")
            .ok_or_else(|| ParseError::new(n, ParseErrorKind::MissingOrigin(clip(o))))?;
        let origin =
            Origin::parse(o).map_err(|e| ParseError::new(n, ParseErrorKind::BadOrigin(e)))?;
        let (n, s) = it
            .next()
            .ok_or_else(|| ParseError::new(n, ParseErrorKind::Truncated))?;
        let session_name = s
            .strip_prefix("s=")
            .ok_or_else(|| ParseError::new(n, ParseErrorKind::MissingSessionName(clip(s))))?
            .to_owned();

        let mut sdp = Sdp {
            origin,
            session_name,
            lines: Vec::new(),
            media: Vec::new(),
        };
        let mut last_line = n;
        for (n, text) in it {
            last_line = n;
            let err = |kind| ParseError::new(n, kind);
            let bytes = text.as_bytes();
            let (Some(&kind), Some(b'=')) = (bytes.first(), bytes.get(1)) else {
                return Err(err(ParseErrorKind::NotTypeValue(clip(text))));
            };
            if !kind.is_ascii_lowercase() {
                return Err(err(ParseErrorKind::NotTypeValue(clip(text))));
            }
            let kind = char::from(kind);
            let value = text.get(2..).unwrap_or_default();
            match kind {
                'v' | 'o' | 's' => return Err(err(ParseErrorKind::Duplicate(kind))),
                'm' => {
                    let m = Media::parse(value).map_err(|e| err(ParseErrorKind::BadMedia(e)))?;
                    sdp.media.push(m);
                    continue;
                }
                _ => {}
            }
            let in_media = !sdp.media.is_empty();
            if in_media && matches!(kind, 'u' | 'e' | 'p' | 't' | 'r' | 'z') {
                return Err(err(ParseErrorKind::NotAtMediaLevel(kind)));
            }
            let line = parse_line(kind, value).map_err(err)?;
            let target = match sdp.media.last_mut() {
                Some(m) => &mut m.lines,
                None => &mut sdp.lines,
            };
            let once = matches!(kind, 'c' | 'i' | 'u' | 'k');
            if once && target.iter().any(|l| l.kind() == kind) {
                return Err(err(ParseErrorKind::Duplicate(kind)));
            }
            target.push(line);
        }
        if !sdp.lines.iter().any(|l| matches!(l, Line::Timing(_))) {
            return Err(ParseError::new(last_line, ParseErrorKind::MissingTiming));
        }
        let session_c = sdp.connection().is_some();
        for (index, m) in sdp.media.iter().enumerate() {
            if m.port != 0 && !session_c && m.connection().is_none() {
                return Err(ParseError::new(
                    0,
                    ParseErrorKind::MissingConnection { index },
                ));
            }
        }
        Ok(sdp)
    }

    /// The body as bytes (CRLF line ends).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// The session-level `c=` line, if any.
    pub fn connection(&self) -> Option<&Connection> {
        self.lines.iter().find_map(|l| match l {
            Line::Connection(c) => Some(c),
            _ => None,
        })
    }

    /// The session-level attributes, in order.
    pub fn attributes(&self) -> impl Iterator<Item = &Attribute> {
        attributes_of(&self.lines)
    }

    /// The first session-level attribute called `name`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes().find(|a| a.name == name)
    }

    /// The session-level direction attribute, if any.
    pub fn direction(&self) -> Option<Direction> {
        direction_of(&self.lines)
    }

    /// The connection that applies to media `index`: its own `c=` or else the session's.
    pub fn media_connection(&self, index: usize) -> Option<&Connection> {
        let m = self.media.get(index)?;
        m.connection().or_else(|| self.connection())
    }

    /// The direction that applies to media `index` (media level, else session level, else
    /// `sendrecv` as RFC 3264 §5.1 defaults).
    pub fn media_direction(&self, index: usize) -> Direction {
        self.media
            .get(index)
            .and_then(Media::direction)
            .or_else(|| self.direction())
            .unwrap_or(Direction::SendRecv)
    }
}

impl Display for Sdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v=0\r\no={}\r\ns={}\r\n", self.origin, self.session_name)?;
        for l in &self.lines {
            write!(f, "{l}\r\n")?;
        }
        for m in &self.media {
            write!(f, "m={}\r\n", m.media_line())?;
            for l in &m.lines {
                write!(f, "{l}\r\n")?;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Sdp {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sdp::parse(s.as_bytes())
    }
}

fn parse_line(kind: char, value: &str) -> Result<Line, ParseErrorKind> {
    Ok(match kind {
        'i' => Line::Info(value.to_owned()),
        'u' => Line::Uri(value.to_owned()),
        'e' => Line::Email(value.to_owned()),
        'p' => Line::Phone(value.to_owned()),
        'c' => Line::Connection(Connection::parse(value).map_err(ParseErrorKind::BadConnection)?),
        'b' => Line::Bandwidth(Bandwidth::parse(value).map_err(ParseErrorKind::BadBandwidth)?),
        't' => Line::Timing(Timing::parse(value).map_err(ParseErrorKind::BadTiming)?),
        'r' => Line::Repeat(value.to_owned()),
        'z' => Line::TimeZones(value.to_owned()),
        'k' => Line::Key(value.to_owned()),
        'a' => Line::Attribute(Attribute::parse(value).map_err(ParseErrorKind::BadAttribute)?),
        other => Line::Other {
            kind: other,
            value: value.to_owned(),
        },
    })
}

/// Splits the body into numbered non-empty lines (1-based), stripping CRLF or LF.
fn split_lines(body: &[u8]) -> Result<Vec<(usize, &str)>, ParseError> {
    let mut out = Vec::new();
    let mut empty_at: Option<usize> = None;
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            empty_at.get_or_insert(n);
            continue;
        }
        if let Some(e) = empty_at {
            return Err(ParseError::new(e, ParseErrorKind::EmptyLine));
        }
        if raw.iter().any(|&b| b == b'\r' || b == 0) {
            return Err(ParseError::new(n, ParseErrorKind::ControlCharacter));
        }
        let s = std::str::from_utf8(raw)
            .map_err(|_| ParseError::new(n, ParseErrorKind::InvalidUtf8))?;
        out.push((n, s));
    }
    Ok(out)
}

/// The start of a line, for error messages.
fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}
