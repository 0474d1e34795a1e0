//! SIP messages: parsing from bytes (RFC 3261 §7, §25), validation of the mandatory headers,
//! and serialization.
//!
//! [`Message::parse`] has datagram semantics (a body without Content-Length runs to the end,
//! octets after Content-Length are ignored, RFC 3261 §18.3). [`Message::parse_with`] with
//! [`ParseOptions::stream`] requires Content-Length, as stream transports do; the
//! [`crate::Framer`] uses it.

use std::fmt::Write as _;

use crate::error::{Echo, Fault, Origin, ParseError};
use crate::header::{Header, HeaderName, Headers};
use crate::scan::is_token;
use crate::types::{CSeq, Method, NameAddr, Via};
use crate::uri::Uri;

/// Default cap on a message's size (headers plus body): 64 KiB.
pub const DEFAULT_MAX_SIZE: usize = 64 * 1024;

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `Method SP Request-URI SP SIP/2.0`
    Request {
        /// Method.
        method: Method,
        /// Request-URI.
        uri: Uri,
    },
    /// `SIP/2.0 SP Status-Code SP Reason-Phrase`
    Response {
        /// Status code 100..=699.
        code: u16,
        /// Reason phrase (UTF-8, may be empty).
        reason: String,
    },
}

/// A SIP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Request-Line or Status-Line.
    pub start: StartLine,
    /// Header lines in order.
    pub headers: Headers,
    /// Body octets.
    pub body: Vec<u8>,
}

/// How to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Content-Length must be present (stream transports, RFC 3261 §18.3).
    pub require_content_length: bool,
    /// Cap on the message size in bytes.
    pub max_size: usize,
}

impl ParseOptions {
    /// Datagram semantics, 64 KiB cap.
    pub const fn datagram() -> Self {
        ParseOptions {
            require_content_length: false,
            max_size: DEFAULT_MAX_SIZE,
        }
    }

    /// Stream semantics (Content-Length required), 64 KiB cap.
    pub const fn stream() -> Self {
        ParseOptions {
            require_content_length: true,
            max_size: DEFAULT_MAX_SIZE,
        }
    }
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self::datagram()
    }
}

/// Finds the end of the header section: returns (end of the last header line, start of body).
/// Accepts CRLF and bare-LF line ends.
pub(crate) fn find_head_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while let Some(off) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let nl = i + off;
        // Blank line follows this newline?
        match (buf.get(nl + 1), buf.get(nl + 2)) {
            (Some(b'\r'), Some(b'\n')) => return Some((nl + 1, nl + 3)),
            (Some(b'\n'), _) => return Some((nl + 1, nl + 2)),
            _ => {}
        }
        i = nl + 1;
    }
    None
}

/// Where the header section starts, after CRLFs that precede the start line (§18.3).
pub(crate) fn skip_leading_crlf(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// Parsed start line and headers, before the body is attached.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) start: StartLine,
    pub(crate) headers: Headers,
    pub(crate) origin: Origin,
}

fn is_version(s: &str) -> bool {
    let Some(rest) = s
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("SIP/"))
        .and(s.get(4..))
    else {
        return false;
    };
    match rest.split_once('.') {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

fn check_version(s: &str, origin: Origin) -> Result<(), ParseError> {
    if !is_version(s) {
        return Err(ParseError::new(Fault::StartLine("bad SIP-Version"), origin));
    }
    if s.get(4..) != Some("2.0") {
        return Err(ParseError::new(Fault::Version(s.to_owned()), origin));
    }
    Ok(())
}

fn parse_start(line: &str) -> Result<(StartLine, Origin), ParseError> {
    if line.is_empty() {
        return Err(ParseError::new(Fault::Empty, Origin::Unknown));
    }
    if line
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
    {
        let o = Origin::Response;
        let (ver, rest) = line.split_once(' ').ok_or(ParseError::new(
            Fault::StartLine("Status-Line without status code"),
            o,
        ))?;
        check_version(ver, o)?;
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let n = match code.parse::<u16>() {
            Ok(n) if code.len() == 3 && (100..=699).contains(&n) => n,
            _ => {
                return Err(ParseError::new(
                    Fault::StatusCode(crate::params::truncate(code).to_owned()),
                    o,
                ));
            }
        };
        if reason.bytes().any(|b| b < 0x20 && b != b'\t') {
            return Err(ParseError::new(
                Fault::StartLine("control character in reason phrase"),
                o,
            ));
        }
        return Ok((
            StartLine::Response {
                code: n,
                reason: reason.to_owned(),
            },
            o,
        ));
    }
    let o = Origin::Request;
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, uri, version] = parts.as_slice() else {
        return Err(ParseError::new(
            Fault::StartLine(
                "Request-Line must be Method SP Request-URI SP SIP-Version (single spaces, no whitespace inside the URI)",
            ),
            o,
        ));
    };
    if method.is_empty() || !method.bytes().all(is_token) {
        return Err(ParseError::new(Fault::StartLine("invalid method token"), o));
    }
    check_version(version, o)?;
    let uri = Uri::parse(uri).map_err(|e| ParseError::new(Fault::RequestUri(e.to_string()), o))?;
    if let Uri::Sip(s) = &uri
        && !s.headers.is_empty()
    {
        return Err(ParseError::new(
            Fault::RequestUri("headers (?…) are not allowed in a Request-URI".into()),
            o,
        ));
    }
    let method = Method::parse(method)
        .map_err(|_| ParseError::new(Fault::StartLine("invalid method token"), o))?;
    Ok((StartLine::Request { method, uri }, o))
}

/// Parses the header section (start line + header lines, without the blank line).
pub(crate) fn parse_head(head: &[u8]) -> Result<Head, ParseError> {
    let Ok(text) = std::str::from_utf8(head) else {
        let origin = origin_of(head);
        return Err(ParseError::new(Fault::Utf8("header section"), origin)
            .with_echo(salvage_echo(head, origin)));
    };
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    // A CR that does not end a line is not allowed anywhere in the header section.
    let b = text.as_bytes();
    let bare_cr = b
        .iter()
        .enumerate()
        .any(|(i, &c)| c == b'\r' && b.get(i + 1).is_some_and(|&n| n != b'\n'));
    if bare_cr {
        let origin = if text
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
        {
            Origin::Response
        } else {
            Origin::Request
        };
        return Err(
            ParseError::new(Fault::HeaderLine("bare CR inside a line"), origin)
                .with_echo(salvage_echo(head, origin)),
        );
    }
    let first = lines.next().unwrap_or("");
    // A bad start line does not stop the search for what an answer needs: with Via, From,
    // To, Call-ID and CSeq found in the header lines the request still gets its 400/505.
    let (start, origin) = parse_start(first).map_err(|e| {
        let origin = e.origin();
        e.with_echo(salvage_echo(head, origin))
    })?;

    // Unfold and split into (name, value) pairs.
    let mut raw: Vec<(HeaderName, String)> = Vec::with_capacity(16);
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let Some((_, v)) = raw.last_mut() else {
                return Err(ParseError::new(
                    Fault::HeaderLine("continuation line before any header"),
                    origin,
                ));
            };
            let cont = line.trim_matches([' ', '\t']);
            if !cont.is_empty() {
                if !v.is_empty() {
                    v.push(' ');
                }
                v.push_str(cont);
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError::new(
                Fault::HeaderLine("header line without ':'"),
                origin,
            ));
        };
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(ParseError::new(
                Fault::HeaderLine("invalid header name"),
                origin,
            ));
        }
        raw.push((
            HeaderName::parse(name),
            value.trim_matches([' ', '\t']).to_owned(),
        ));
    }

    let mut headers = Headers::new();
    let mut raw = raw.into_iter();
    while let Some((name, value)) = raw.next() {
        match Header::try_new(name, value) {
            Ok(h) => headers.push(h),
            Err((e, name, value)) => {
                let fault = Fault::Header {
                    header: std::borrow::Cow::Owned(name.as_str().to_owned()),
                    reason: e.0,
                };
                // Echo: what parsed so far, this header verbatim, and the rest verbatim.
                let mut echoed: Vec<Header> = headers
                    .iter()
                    .filter(|h| is_echoed(h.name()))
                    .cloned()
                    .collect();
                if is_echoed(&name) {
                    echoed.push(Header::raw(name, value));
                }
                echoed.extend(
                    raw.filter(|(n, _)| is_echoed(n))
                        .map(|(n, v)| Header::raw(n, v)),
                );
                let echo = echo_from(origin, echoed);
                return Err(ParseError::new(fault, origin).with_echo(echo));
            }
        }
    }
    let head = Head {
        start,
        headers,
        origin,
    };
    validate(&head)?;
    Ok(head)
}

/// Request or response, from the first bytes alone (for errors raised before the start line
/// is understood).
pub(crate) fn origin_of(head: &[u8]) -> Origin {
    match head.get(..4) {
        Some(p) if p.eq_ignore_ascii_case(b"SIP/") => Origin::Response,
        Some(_) => Origin::Request,
        None => Origin::Unknown,
    }
}

/// Best-effort copies of Via, From, To, Call-ID and CSeq from a header section the parser could
/// not accept (bad start line, bad bytes, or cut short by the size cap): every line after the
/// first that reads `name: value` (folded lines joined) is looked at, anything else skipped.
/// `None` unless `origin` is a request and all five headers are present: only then can a
/// response be addressed (RFC 3261 §8.2.6).
pub(crate) fn salvage_echo(head: &[u8], origin: Origin) -> Option<Echo> {
    if origin != Origin::Request {
        return None;
    }
    let mut found: Vec<(HeaderName, String)> = Vec::new();
    // Whether the previous header line was one of the five (so a folded line continues it).
    let mut continues = false;
    for raw in head.split(|&b| b == b'\n').skip(1) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Ok(line) = std::str::from_utf8(raw) else {
            continues = false;
            continue;
        };
        if line.starts_with([' ', '\t']) {
            if continues && let Some((_, v)) = found.last_mut() {
                let cont = line.trim_matches([' ', '\t']);
                if !cont.is_empty() {
                    v.push(' ');
                    v.push_str(cont);
                }
            }
            continue;
        }
        continues = false;
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token) {
            continue;
        }
        let name = HeaderName::parse(name);
        if is_echoed(&name) {
            found.push((name, value.trim_matches([' ', '\t']).to_owned()));
            continues = true;
        }
    }
    let all = [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ]
    .iter()
    .all(|n| found.iter().any(|(f, _)| f == n));
    all.then(|| Echo {
        headers: found.into_iter().map(|(n, v)| Header::raw(n, v)).collect(),
    })
}

fn is_echoed(n: &HeaderName) -> bool {
    matches!(
        n,
        HeaderName::Via | HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::CSeq
    )
}

/// The echo for an error response: only for requests, and only with a Via to answer along.
fn echo_from(origin: Origin, headers: Vec<Header>) -> Option<Echo> {
    (origin == Origin::Request && headers.iter().any(|h| *h.name() == HeaderName::Via))
        .then_some(Echo { headers })
}

impl Head {
    /// Verbatim copies of Via/From/To/Call-ID/CSeq, built only when an error needs them.
    pub(crate) fn echo(&self) -> Option<Echo> {
        let headers = self
            .headers
            .iter()
            .filter(|h| is_echoed(h.name()))
            .cloned()
            .collect();
        echo_from(self.origin, headers)
    }
}

fn validate(head: &Head) -> Result<(), ParseError> {
    let err = |f: Fault| Err(ParseError::new(f, head.origin).with_echo(head.echo()));
    let h = &head.headers;
    for (name, text) in [
        (HeaderName::Via, "Via"),
        (HeaderName::From, "From"),
        (HeaderName::To, "To"),
        (HeaderName::CallId, "Call-ID"),
        (HeaderName::CSeq, "CSeq"),
    ] {
        if h.get(&name).is_none() {
            return err(Fault::Missing(text));
        }
    }
    for hdr in h.iter() {
        if hdr.name().is_single() && h.count(hdr.name()) > 1 {
            return err(Fault::Duplicate(hdr.static_name()));
        }
    }
    if let (StartLine::Request { method, .. }, Some(cseq)) = (&head.start, h.cseq())
        && &cseq.method != method
    {
        let (m, c) = (method.to_string(), cseq.method.to_string());
        return if method.is_known() {
            err(Fault::CSeqMismatch { method: m, cseq: c })
        } else {
            err(Fault::UnknownMethodMismatch { method: m, cseq: c })
        };
    }
    Ok(())
}

impl Message {
    /// A message with the given start line, no headers and no body.
    pub fn new(start: StartLine) -> Self {
        Message {
            start,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// Parses one message with datagram semantics (see module docs).
    pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
        Self::parse_with(buf, ParseOptions::datagram())
    }

    /// Parses one message.
    pub fn parse_with(buf: &[u8], opts: ParseOptions) -> Result<Message, ParseError> {
        if buf.len() > opts.max_size {
            return Err(ParseError::new(
                Fault::TooLarge {
                    size: buf.len(),
                    limit: opts.max_size,
                },
                Origin::Unknown,
            ));
        }
        let skip = skip_leading_crlf(buf);
        let buf = buf.get(skip..).unwrap_or(&[]);
        if buf.is_empty() {
            return Err(ParseError::new(Fault::Empty, Origin::Unknown));
        }
        let (head_end, body_start) = match find_head_end(buf, 0) {
            Some(x) => x,
            // No blank line: the whole buffer is the header section and there is no body.
            None => (buf.len(), buf.len()),
        };
        let head = parse_head(buf.get(..head_end).unwrap_or(&[]))?;
        let available = buf.get(body_start..).unwrap_or(&[]);
        let body = match head.headers.content_length() {
            Some(cl) => {
                let cl = cl as usize;
                match available.get(..cl) {
                    Some(b) => b.to_vec(),
                    None => {
                        return Err(ParseError::new(
                            Fault::BodyTruncated {
                                declared: cl,
                                available: available.len(),
                            },
                            head.origin,
                        )
                        .with_echo(head.echo()));
                    }
                }
            }
            None if opts.require_content_length => {
                return Err(
                    ParseError::new(Fault::NoContentLength, head.origin).with_echo(head.echo())
                );
            }
            None => available.to_vec(),
        };
        Ok(Message {
            start: head.start,
            headers: head.headers,
            body,
        })
    }

    /// Serializes into `out`. Content-Length always states the real body length: an existing
    /// header whose value disagrees is rewritten, a missing one is appended.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut line = String::with_capacity(128);
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(line, "{method} {uri} SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                let _ = write!(line, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        out.extend_from_slice(line.as_bytes());
        let mut wrote_cl = false;
        for h in self.headers.iter() {
            out.extend_from_slice(h.name().as_str().as_bytes());
            out.extend_from_slice(b": ");
            if *h.name() == HeaderName::ContentLength {
                if wrote_cl {
                    continue;
                }
                wrote_cl = true;
                let n = u32::try_from(self.body.len()).unwrap_or(u32::MAX);
                if h.value().parse::<u32>() == Ok(n) {
                    out.extend_from_slice(h.value().as_bytes());
                } else {
                    out.extend_from_slice(self.body.len().to_string().as_bytes());
                }
            } else {
                out.extend_from_slice(h.value().as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        if !wrote_cl {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(self.body.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }

    /// Serializes to a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        self.encode_into(&mut out);
        out
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method (for responses: `None`; see [`Message::cseq`] for the method a
    /// response answers).
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI.
    pub fn request_uri(&self) -> Option<&Uri> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase of a response.
    pub fn reason(&self) -> Option<&str> {
        match &self.start {
            StartLine::Response { reason, .. } => Some(reason),
            StartLine::Request { .. } => None,
        }
    }

    /// Top Via (present in every parsed message).
    pub fn top_via(&self) -> Option<&Via> {
        self.headers.top_via()
    }

    /// From.
    pub fn from(&self) -> Option<&NameAddr> {
        self.headers.from()
    }

    /// To.
    pub fn to(&self) -> Option<&NameAddr> {
        self.headers.to()
    }

    /// Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        self.headers.call_id()
    }

    /// CSeq.
    pub fn cseq(&self) -> Option<&CSeq> {
        self.headers.cseq()
    }

    /// Replaces the body and sets Content-Type (or removes it for an empty body) and
    /// Content-Length.
    pub fn set_body(&mut self, content_type: Option<crate::types::MediaType>, body: Vec<u8>) {
        match content_type {
            Some(ct) if !body.is_empty() => self.headers.set_content_type(ct),
            _ => {
                self.headers.remove(&HeaderName::ContentType);
            }
        }
        self.headers
            .set_content_length(u32::try_from(body.len()).unwrap_or(u32::MAX));
        self.body = body;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n\
Max-Forwards: 70\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@client.atlanta.example.com;transport=tcp>\r\n\
X-Unknown: ;;,,;;,;\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    #[test]
    fn canonical_round_trip() {
        let m = Message::parse(INVITE.as_bytes()).unwrap();
        assert_eq!(m.method(), Some(&Method::Invite));
        assert_eq!(m.body, b"v=0\n");
        assert_eq!(m.encode(), INVITE.as_bytes());
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK74bf9"));
        assert_eq!(m.from().unwrap().tag(), Some("9fxced76sl"));
        assert_eq!(m.headers.max_forwards(), Some(70));
    }

    #[test]
    fn folding_and_compact() {
        let raw = "OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/TCP h;branch=z9hG4bKx\r\nf: <sip:c@d>;tag=1\r\nt: sip:a@b\r\ni: id1\r\nCSeq: 1\r\n  OPTIONS\r\nSubject: a\r\n\tb\r\nl: 0\r\n\r\n";
        let m = Message::parse(raw.as_bytes()).unwrap();
        assert_eq!(m.cseq().unwrap().seq, 1);
        assert_eq!(m.headers.get_value(&HeaderName::Subject), Some("a b"));
        let out = String::from_utf8(m.encode()).unwrap();
        assert!(out.contains("\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\n"));
        assert!(out.contains("\r\nCSeq: 1 OPTIONS\r\n"));
    }

    #[test]
    fn errors_map_to_responses() {
        let bad_via = INVITE.replace("branch=z9hG4bK74bf9", "branch=z9hG4bK74bf9;;");
        let e = Message::parse(bad_via.as_bytes()).unwrap_err();
        let (code, reason) = e.response().unwrap();
        assert_eq!(code, 400);
        assert!(reason.contains("Via"), "{reason}");
        let resp = e.error_response("srvtag").unwrap();
        assert_eq!(resp.status(), Some(400));
        let enc = String::from_utf8(resp.encode()).unwrap();
        assert!(
            enc.contains("To: Bob <sip:bob@biloxi.example.com>;tag=srvtag\r\n"),
            "{enc}"
        );
        assert!(enc.contains("Call-ID: 3848276298220188511@atlanta.example.com\r\n"));

        let v7 = INVITE.replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia");
        assert_eq!(
            Message::parse(v7.as_bytes())
                .unwrap_err()
                .response()
                .unwrap()
                .0,
            505
        );

        let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\nCSeq: 99999999999 INVITE\r\n\r\n";
        assert!(
            Message::parse(resp.as_bytes())
                .unwrap_err()
                .is_silent_drop()
        );

        let bare_cr = INVITE.replace("X-Unknown: ;;", "X-Unknown: a\rb;;");
        assert_eq!(
            Message::parse(bare_cr.as_bytes()).unwrap_err().fault(),
            &Fault::HeaderLine("bare CR inside a line")
        );

        let trunc = INVITE.replace("Content-Length: 4", "Content-Length: 40");
        assert!(matches!(
            Message::parse(trunc.as_bytes()).unwrap_err().fault(),
            Fault::BodyTruncated {
                declared: 40,
                available: 4
            }
        ));
        let no_cl = INVITE.replace("Content-Length: 4\r\n", "");
        assert_eq!(
            Message::parse_with(no_cl.as_bytes(), ParseOptions::stream())
                .unwrap_err()
                .fault(),
            &Fault::NoContentLength
        );
        assert_eq!(Message::parse(no_cl.as_bytes()).unwrap().body, b"v=0\n");
    }

    #[test]
    fn content_length_is_fixed_on_encode() {
        let mut m = Message::parse(INVITE.as_bytes()).unwrap();
        m.body = b"v=0\r\no=x\r\n".to_vec();
        let enc = String::from_utf8(m.encode()).unwrap();
        assert!(enc.contains("Content-Length: 10\r\n"));
        let again = Message::parse(enc.as_bytes()).unwrap();
        assert_eq!(again.body, m.body);
    }

    /// The status line of the response a request gets on the wire (`None`: nothing is sent).
    fn wire_status(raw: &str) -> Option<u16> {
        let e = Message::parse(raw.as_bytes()).unwrap_err();
        e.error_response("t").and_then(|r| r.status())
    }

    const FIVE: &str = "Via: SIP/2.0/TCP h;branch=z9hG4bKx\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: id1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn bad_start_line_still_answered() {
        for (start, code) in [
            ("OPTIONS sip:a@b SIP/7.0", 505),
            ("OPTIONS  sip:a@b SIP/2.0", 400),
            ("OPTIONS sip:a@b SIP/2.0 ", 400),
            ("OPTIONS <sip:a@b> SIP/2.0", 400),
            ("OPTIONS sip:a@b; lr SIP/2.0", 400),
            ("OPTIONS sip:a@b?Route=x SIP/2.0", 400),
            ("OPTI\"NS sip:a@b SIP/2.0", 400),
            ("OPTIONS sip:a@b SIP/2", 400),
        ] {
            let raw = format!("{start}\r\n{FIVE}");
            assert_eq!(wire_status(&raw), Some(code), "{start:?}");
            let resp = Message::parse(raw.as_bytes())
                .unwrap_err()
                .error_response("t")
                .unwrap();
            let enc = String::from_utf8(resp.encode()).unwrap();
            assert!(enc.contains("\r\nCall-ID: id1\r\n"), "{enc}");
            assert!(enc.contains("\r\nTo: <sip:a@b>;tag=t\r\n"), "{enc}");
            assert!(enc.contains("\r\nCSeq: 1 OPTIONS\r\n"), "{enc}");
        }
    }

    #[test]
    fn bad_start_line_recovery_needs_all_five_and_a_request() {
        // Folded and compact headers count; a malformed line among them is skipped.
        let raw = "OPTIONS sip:a@b SIP/7.0\r\nv: SIP/2.0/TCP h\r\n ;branch=z9hG4bKx\r\nnonsense\r\nf: <sip:c@d>;tag=1\r\nt: <sip:a@b>\r\ni: id1\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let e = Message::parse(raw.as_bytes()).unwrap_err();
        let resp = String::from_utf8(e.error_response("t").unwrap().encode()).unwrap();
        assert!(resp.starts_with("SIP/2.0 505 "), "{resp}");
        assert!(
            resp.contains("\r\nVia: SIP/2.0/TCP h ;branch=z9hG4bKx\r\n"),
            "{resp}"
        );
        // Without Call-ID there is nothing to address: no response, though the fault is known.
        let raw = format!(
            "OPTIONS sip:a@b SIP/7.0\r\n{}",
            FIVE.replace("Call-ID: id1\r\n", "")
        );
        let e = Message::parse(raw.as_bytes()).unwrap_err();
        assert_eq!(e.response().unwrap().0, 505);
        assert!(e.error_response("t").is_none());
        assert!(!e.can_respond());
        // A bad Status-Line is a response: never answered.
        let raw = format!("SIP/2.0 2000 OK\r\n{FIVE}");
        assert!(Message::parse(raw.as_bytes()).unwrap_err().is_silent_drop());
        // Invalid UTF-8 in a header: still a request with the five headers, so 400.
        let mut raw = format!("OPTIONS sip:a@b SIP/2.0\r\nSubject: x\r\n{FIVE}").into_bytes();
        let x = raw.iter().position(|&b| b == b'x').unwrap();
        raw[x] = 0xff;
        let e = Message::parse(&raw).unwrap_err();
        assert_eq!(e.fault(), &Fault::Utf8("header section"));
        assert_eq!(e.error_response("t").and_then(|r| r.status()), Some(400));
    }

    #[test]
    fn head_end() {
        assert_eq!(find_head_end(b"A\r\nB\r\n\r\nbody", 0), Some((6, 8)));
        assert_eq!(find_head_end(b"A\nB\n\nbody", 0), Some((4, 5)));
        assert_eq!(find_head_end(b"A\r\nB\r\n", 0), None);
    }
}
