//! Typed header values: [`NameAddr`] (From, To, Contact, Route, Record-Route,
//! P-Asserted-Identity), [`Via`], [`CSeq`], [`Method`], [`MediaType`], [`SessionExpires`],
//! [`MinSe`]. Each parses from one (comma-split) header value and displays canonically.

use std::fmt;
use std::net::IpAddr;

use crate::error::ValueError;
use crate::params::{Param, Params, parse_header_params};
use crate::scan::{Cursor, is_token, is_token_str, parse_digits, quote, unquote};
use crate::uri::{Host, Uri};

/// The RFC 3261 branch magic cookie.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// A SIP method. Methods are case-sensitive (RFC 3261 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// OPTIONS
    Options,
    /// REGISTER
    Register,
    /// PRACK (RFC 3262)
    Prack,
    /// UPDATE (RFC 3311)
    Update,
    /// INFO (RFC 6086)
    Info,
    /// SUBSCRIBE
    Subscribe,
    /// NOTIFY
    Notify,
    /// REFER
    Refer,
    /// MESSAGE
    Message,
    /// PUBLISH
    Publish,
    /// Any other token.
    Other(String),
}

impl Method {
    /// Parses a method token.
    pub fn parse(s: &str) -> Result<Method, ValueError> {
        if !is_token_str(s) {
            return Err(format!("invalid method {:?}", crate::params::truncate(s)).into());
        }
        Ok(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "PRACK" => Method::Prack,
            "UPDATE" => Method::Update,
            "INFO" => Method::Info,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_owned()),
        })
    }

    /// The method's text.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Info => "INFO",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }

    /// True for methods this codec names (everything but [`Method::Other`]).
    pub fn is_known(&self) -> bool {
        !matches!(self, Method::Other(_))
    }

    /// Methods that refresh the remote target of a dialog (RFC 3261 §12.2, RFC 3311).
    pub fn is_target_refresh(&self) -> bool {
        matches!(
            self,
            Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
        )
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `name-addr` or `addr-spec` with header parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name as written: a quoted string (with quotes) or a sequence of tokens.
    pub display: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters (tag, expires, q, …).
    pub params: Params,
    /// Whether the URI was enclosed in `<>` (serialization always uses `<>`).
    pub bracketed: bool,
}

impl NameAddr {
    /// `<uri>` with no display name or parameters.
    pub fn new(uri: impl Into<Uri>) -> Self {
        NameAddr {
            display: None,
            uri: uri.into(),
            params: Params::new(),
            bracketed: true,
        }
    }

    /// Sets the display name from plain text (quoted as needed).
    pub fn with_display(mut self, name: &str) -> Self {
        self.display = Some(quote(name));
        self
    }

    /// Adds/replaces a parameter.
    pub fn with_param(mut self, name: &str, value: Option<&str>) -> Self {
        self.params.set(name, value);
        self
    }

    /// The display name with quotes and escapes removed.
    pub fn display_name(&self) -> Option<String> {
        self.display.as_deref().map(|d| {
            if d.starts_with('"') {
                unquote(d)
            } else {
                d.to_owned()
            }
        })
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }

    /// Sets the `tag` parameter.
    pub fn set_tag(&mut self, tag: &str) {
        self.params.set("tag", Some(tag));
    }

    /// Parses one value (not a comma list).
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let mut c = Cursor::new(s);
        c.skip_ws();
        let mut display = None;
        let start = c.pos();
        let mut bracketed = false;
        if c.peek() == Some(b'"') {
            display = Some(c.quoted()?.to_owned());
            c.skip_ws();
            if c.peek() != Some(b'<') {
                return Err("display name must be followed by <URI>".into());
            }
            bracketed = true;
        } else if c.peek() == Some(b'<') {
            bracketed = true;
        } else {
            // Either `token *(LWS token) <URI>` or an addr-spec.
            loop {
                let t = c.token();
                if t.is_empty() {
                    break;
                }
                let end = c.pos();
                c.skip_ws();
                if c.peek() == Some(b'<') {
                    display = Some(c.slice(start, end).to_owned());
                    bracketed = true;
                    break;
                }
                if !c.peek().is_some_and(is_token) {
                    break;
                }
            }
            if !bracketed {
                c.set_pos(start);
            }
        }
        let uri = if bracketed {
            if !c.eat(b'<') {
                return Err("expected '<'".into());
            }
            let rest = c.rest();
            let close = rest.find('>').ok_or(ValueError::from("missing '>'"))?;
            let inner = rest.get(..close).unwrap_or("");
            if inner.starts_with([' ', '\t']) || inner.ends_with([' ', '\t']) {
                return Err("whitespace inside <>".into());
            }
            let uri = Uri::parse(inner)?;
            c.set_pos(c.pos() + close + 1);
            uri
        } else {
            // addr-spec: the URI ends at the first ';' (later ';' are header parameters, RFC
            // 3261 §20) or whitespace; `,` and `?` would have required <> (§20).
            let rest = c.rest();
            let end = rest.find([';', ' ', '\t']).unwrap_or(rest.len());
            let text = rest.get(..end).unwrap_or("");
            if text.contains(['?', ',']) {
                return Err("URI with headers or commas must be enclosed in <>".into());
            }
            let uri = Uri::parse(text)?;
            c.set_pos(c.pos() + end);
            uri
        };
        let params = parse_header_params(&mut c)?;
        Ok(NameAddr {
            display,
            uri,
            params,
            bracketed,
        })
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{d} ")?;
        }
        if self.bracketed || self.display.is_some() || !self.params.is_empty() {
            write!(f, "<{}>{}", self.uri, self.params)
        } else {
            write!(f, "{}", self.uri)
        }
    }
}

/// The transport in a Via (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, … or an extension token).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP
    Udp,
    /// TCP
    Tcp,
    /// TLS
    Tls,
    /// SCTP
    Sctp,
    /// Any other token, upper-cased.
    Other(String),
}

impl Transport {
    /// Parses a transport token (case-insensitive).
    pub fn parse(s: &str) -> Transport {
        for (name, t) in [
            ("UDP", Transport::Udp),
            ("TCP", Transport::Tcp),
            ("TLS", Transport::Tls),
            ("SCTP", Transport::Sctp),
        ] {
            if s.eq_ignore_ascii_case(name) {
                return t;
            }
        }
        Transport::Other(s.to_ascii_uppercase())
    }

    /// Reliable (stream or SCTP) transports.
    pub fn is_reliable(&self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The canonical token.
    pub fn as_str(&self) -> &str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Sctp => "SCTP",
            Transport::Other(s) => s,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Via value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport.
    pub transport: Transport,
    /// sent-by host.
    pub host: Host,
    /// sent-by port.
    pub port: Option<u16>,
    /// via-params (branch, received, rport, maddr, ttl, extensions).
    pub params: Params,
}

impl Via {
    /// `SIP/2.0/<transport> host[:port];branch=<branch>`. `branch` should start with
    /// [`MAGIC_COOKIE`]; see [`Via::branch_with_cookie`].
    pub fn new(transport: Transport, host: Host, port: Option<u16>, branch: &str) -> Self {
        let mut params = Params::new();
        params.0.push(Param::new("branch", branch));
        Via {
            transport,
            host,
            port,
            params,
        }
    }

    /// Prefixes `unique` with the magic cookie (unless already there).
    pub fn branch_with_cookie(unique: &str) -> String {
        if unique.starts_with(MAGIC_COOKIE) {
            unique.to_owned()
        } else {
            format!("{MAGIC_COOKIE}{unique}")
        }
    }

    /// Parses one Via value.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let mut c = Cursor::new(s);
        c.skip_ws();
        let name = c.token();
        if !c.eat_sep(b'/') {
            return Err("expected protocol-name/version/transport".into());
        }
        let version = c.token();
        if !c.eat_sep(b'/') {
            return Err("expected protocol-name/version/transport".into());
        }
        let transport = c.token();
        if name.is_empty() || version.is_empty() || transport.is_empty() {
            return Err("empty protocol, version or transport".into());
        }
        if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return Err(format!("unsupported protocol {name}/{version}").into());
        }
        let before = c.pos();
        c.skip_ws();
        if c.pos() == before {
            return Err("expected whitespace before sent-by".into());
        }
        // sent-by = host [ COLON port ]; LWS allowed around the colon.
        let hs = c.pos();
        if c.peek() == Some(b'[') {
            c.take_while(|b| b != b']');
            if !c.eat(b']') {
                return Err("IPv6 reference missing ']'".into());
            }
        } else {
            c.take_while(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        }
        let host_text = c.slice(hs, c.pos());
        let host = Host::parse(host_text)?;
        let port = if c.eat_sep(b':') {
            let p = c.take_while(|b| b.is_ascii_digit());
            let v = parse_digits(p).ok_or(ValueError::from("invalid sent-by port"))?;
            Some(u16::try_from(v).map_err(|_| ValueError::from("sent-by port out of range"))?)
        } else {
            None
        };
        let params = parse_header_params(&mut c)?;
        let via = Via {
            transport: Transport::parse(transport),
            host,
            port,
            params,
        };
        via.validate()?;
        Ok(via)
    }

    fn validate(&self) -> Result<(), ValueError> {
        if let Some(b) = self.params.get("branch") {
            match b {
                None => return Err("branch parameter without value".into()),
                Some(v) if !is_token_str(v) => return Err("branch is not a token".into()),
                Some(_) => {}
            }
        }
        if let Some(r) = self.params.get("received") {
            let ok = r.is_some_and(|v| parse_ip(v).is_some());
            if !ok {
                return Err("received is not an IP address".into());
            }
        }
        if let Some(Some(p)) = self.params.get("rport")
            && parse_digits(p).is_none_or(|v| v > 65535)
        {
            return Err("rport is not a port number".into());
        }
        if let Some(t) = self.params.get("ttl")
            && t.and_then(parse_digits).is_none_or(|v| v > 255)
        {
            return Err("ttl out of range 0-255".into());
        }
        Ok(())
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// True when the branch carries the RFC 3261 magic cookie followed by a transaction
    /// identifier. A bare `z9hG4bK` (RFC 4475 §3.2.1 badbranch) is well formed but identifies
    /// nothing, so transactions fall back to RFC 2543 matching for it.
    pub fn is_rfc3261(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    /// The `received` parameter as an address (accepts `[v6]` and bare v6, RFC 5118 §4.5).
    pub fn received(&self) -> Option<IpAddr> {
        self.params.value("received").and_then(parse_ip)
    }

    /// Sets `received` (IPv6 written without brackets, as RFC 5118 §4.5 asks of senders).
    pub fn set_received(&mut self, ip: IpAddr) {
        self.params.set("received", Some(&ip.to_string()));
    }

    /// `None`: no rport; `Some(None)`: rport requested (flag); `Some(Some(p))`: filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse::<u16>().ok()))
    }

    /// Fills in rport (RFC 3581).
    pub fn set_rport(&mut self, port: u16) {
        self.params.set("rport", Some(&port.to_string()));
    }

    /// sent-by as `host[:port]` text, lower-cased, used for transaction matching.
    pub fn sent_by_key(&self) -> String {
        let mut s = self.host.as_str().to_ascii_lowercase();
        if let Some(p) = self.port {
            s.push(':');
            s.push_str(&p.to_string());
        }
        s
    }
}

fn parse_ip(v: &str) -> Option<IpAddr> {
    let inner = v
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(v);
    inner.parse().ok()
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The protocol is always SIP/2.0: anything else is rejected when parsing.
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}

/// CSeq: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CSeq {
    /// Sequence number (32-bit, RFC 3261 §8.1.1.5).
    pub seq: u32,
    /// Method.
    pub method: Method,
}

impl CSeq {
    /// A CSeq.
    pub fn new(seq: u32, method: Method) -> Self {
        CSeq { seq, method }
    }

    /// Parses `1*DIGIT LWS Method`.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let s = s.trim_matches([' ', '\t']);
        let split = s
            .find([' ', '\t'])
            .ok_or(ValueError::from("expected number and method"))?;
        let (n, m) = s.split_at(split);
        let m = m.trim_start_matches([' ', '\t']);
        let seq = parse_digits(n).ok_or(ValueError::from(
            "sequence number is not a number or overflows",
        ))?;
        let seq =
            u32::try_from(seq).map_err(|_| ValueError::from("sequence number exceeds 32 bits"))?;
        Ok(CSeq {
            seq,
            method: Method::parse(m)?,
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// `type/subtype;params` (Content-Type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    /// Type, as written.
    pub kind: String,
    /// Subtype, as written.
    pub subtype: String,
    /// Parameters.
    pub params: Params,
}

impl MediaType {
    /// `type/subtype` without parameters.
    pub fn new(kind: &str, subtype: &str) -> Self {
        MediaType {
            kind: kind.to_owned(),
            subtype: subtype.to_owned(),
            params: Params::new(),
        }
    }

    /// `application/sdp`.
    pub fn sdp() -> Self {
        MediaType::new("application", "sdp")
    }

    /// Case-insensitive type/subtype comparison.
    pub fn is(&self, kind: &str, subtype: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind) && self.subtype.eq_ignore_ascii_case(subtype)
    }

    /// Parses one media-type.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let mut c = Cursor::new(s);
        c.skip_ws();
        let kind = c.token();
        if kind.is_empty() || !c.eat_sep(b'/') {
            return Err("expected type/subtype".into());
        }
        let subtype = c.token();
        if subtype.is_empty() {
            return Err("empty subtype".into());
        }
        let (kind, subtype) = (kind.to_owned(), subtype.to_owned());
        let params = parse_header_params(&mut c)?;
        Ok(MediaType {
            kind,
            subtype,
            params,
        })
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.kind, self.subtype, self.params)
    }
}

/// Who refreshes a session (RFC 4028).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// The UAC refreshes.
    Uac,
    /// The UAS refreshes.
    Uas,
}

/// Session-Expires (RFC 4028 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionExpires {
    /// Interval in seconds.
    pub delta: u32,
    /// Other parameters (`refresher` included, as written).
    pub params: Params,
}

impl SessionExpires {
    /// A Session-Expires value.
    pub fn new(delta: u32, refresher: Option<Refresher>) -> Self {
        let mut params = Params::new();
        if let Some(r) = refresher {
            params.set(
                "refresher",
                Some(if r == Refresher::Uac { "uac" } else { "uas" }),
            );
        }
        SessionExpires { delta, params }
    }

    /// The refresher parameter, if present and valid.
    pub fn refresher(&self) -> Option<Refresher> {
        match self.params.value("refresher") {
            Some(v) if v.eq_ignore_ascii_case("uac") => Some(Refresher::Uac),
            Some(v) if v.eq_ignore_ascii_case("uas") => Some(Refresher::Uas),
            _ => None,
        }
    }

    /// Parses `delta-seconds *(;se-params)`.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let (delta, params) = delta_with_params(s)?;
        if let Some(r) = params.get("refresher")
            && !r.is_some_and(|v| v.eq_ignore_ascii_case("uac") || v.eq_ignore_ascii_case("uas"))
        {
            return Err("refresher must be uac or uas".into());
        }
        Ok(SessionExpires { delta, params })
    }
}

impl fmt::Display for SessionExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.delta, self.params)
    }
}

/// Min-SE (RFC 4028 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinSe {
    /// Minimum interval in seconds.
    pub delta: u32,
    /// Extension parameters.
    pub params: Params,
}

impl MinSe {
    /// Parses `delta-seconds *(;generic-param)`.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let (delta, params) = delta_with_params(s)?;
        Ok(MinSe { delta, params })
    }
}

impl fmt::Display for MinSe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.delta, self.params)
    }
}

fn delta_with_params(s: &str) -> Result<(u32, Params), ValueError> {
    let mut c = Cursor::new(s);
    c.skip_ws();
    let d = c.take_while(|b| b.is_ascii_digit());
    let delta = parse_digits(d)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or(ValueError::from("delta-seconds missing or out of range"))?;
    let params = parse_header_params(&mut c)?;
    Ok((delta, params))
}

/// Parses a comma list of tokens (Supported, Require, Proxy-Require, Unsupported, Allow).
pub(crate) fn parse_token_list(s: &str, allow_empty: bool) -> Result<Vec<String>, ValueError> {
    if s.trim_matches([' ', '\t']).is_empty() {
        return if allow_empty {
            Ok(Vec::new())
        } else {
            Err("empty list".into())
        };
    }
    crate::scan::split_commas(s)?
        .into_iter()
        .map(|t| {
            if is_token_str(t) {
                Ok(t.to_owned())
            } else {
                Err(ValueError::from(format!("{t:?} is not a token")))
            }
        })
        .collect()
}

/// Validates a Call-ID (`word [ "@" word ]`).
pub(crate) fn check_call_id(s: &str) -> Result<(), ValueError> {
    let ok_word = |w: &str| !w.is_empty() && w.bytes().all(crate::scan::is_word);
    let ok = match s.split_once('@') {
        Some((a, b)) => ok_word(a) && ok_word(b),
        None => ok_word(s),
    };
    if ok {
        Ok(())
    } else {
        Err("not a word[@word]".into())
    }
}

/// Validates the shape of a SIP-date (RFC 3261 §25.1: rfc1123-date, zone must be GMT).
pub(crate) fn check_date(s: &str) -> Result<(), ValueError> {
    let parts: Vec<&str> = s.split([' ', '\t']).filter(|p| !p.is_empty()).collect();
    let [wkday, day, month, year, time, zone] = parts.as_slice() else {
        return Err("expected \"Wkd, DD Mon YYYY HH:MM:SS GMT\"".into());
    };
    let wk_ok = ["Mon,", "Tue,", "Wed,", "Thu,", "Fri,", "Sat,", "Sun,"].contains(wkday);
    let mon_ok = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .contains(month);
    let num = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_digit());
    let time_ok = time.split(':').count() == 3 && time.split(':').all(|t| num(t, 2));
    if !(wk_ok && mon_ok && num(day, 2) && num(year, 4) && time_ok) {
        return Err("malformed date".into());
    }
    if *zone != "GMT" {
        return Err(format!("time zone {zone} is not GMT").into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(n.display_name().unwrap(), r#"J Rosenberg \""#);
        assert_eq!(n.tag(), Some("98asjd8"));
        let n =
            NameAddr::parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert!(!n.bracketed);
        assert_eq!(n.tag(), Some("1918181833n"));
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display.as_deref(), Some("caller"));
        let n = NameAddr::parse("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=x")
            .unwrap();
        assert_eq!(n.display.as_deref(), Some("token1~` token2'+_ token3*%!.-"));
        let n = NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert!(n.params.contains("unknownparam"));
        assert!(n.uri.as_sip().unwrap().params.is_empty());
        let n = NameAddr::parse("<sip:+19725552222@gw1.example.net;unknownparam>").unwrap();
        assert!(n.params.is_empty());
        assert!(n.uri.as_sip().unwrap().params.contains("unknownparam"));
        assert!(NameAddr::parse(r#""Mr. J. User <sip:j.user@example.com>"#).is_err());
        assert!(NameAddr::parse("< sip:t.watson@example.org >").is_err());
        assert!(NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(NameAddr::parse(r#""Joe" <sip:joe@example.org>;;;;"#).is_err());
        let n = NameAddr::new(Uri::parse("sip:a@b").unwrap())
            .with_display("A \"B\"")
            .with_param("tag", Some("1"));
        assert_eq!(n.to_string(), r#""A \"B\"" <sip:a@b>;tag=1"#);
    }

    #[test]
    fn via_forms() {
        let v = Via::parse("SIP  /   2.0 /UDP     192.0.2.2;rport;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, Transport::Udp);
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.is_rfc3261());
        let v = Via::parse(
            "SIP/2.0/UDP [2001:db8::9:1]:6050;received=[2001:db8::9:255];branch=z9hG4bKas3-111",
        )
        .unwrap();
        assert_eq!(v.port, Some(6050));
        assert_eq!(v.received(), Some("2001:db8::9:255".parse().unwrap()));
        let v =
            Via::parse("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3")
                .unwrap();
        assert!(v.received().is_some());
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;").is_err());
        // RFC 4475 §3.2.1 badbranch: the cookie alone parses, but is no RFC 3261 branch.
        let bare = Via::parse("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK").unwrap();
        assert_eq!(bare.branch(), Some("z9hG4bK"));
        assert!(!bare.is_rfc3261());
        assert!(
            Via::parse("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa")
                .unwrap()
                .is_rfc3261()
        );
        assert!(Via::parse("SIP/7.0/UDP c.example.com").is_err());
        let v = Via::parse("SIP / 2.0 / TCP spindle.example.com ; branch = z9hG4bK9ikj8").unwrap();
        assert_eq!(
            v.to_string(),
            "SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8"
        );
        assert_eq!(v.sent_by_key(), "spindle.example.com");
    }

    #[test]
    fn cseq_and_lists() {
        assert_eq!(
            CSeq::parse("0009\r\n  INVITE".replace("\r\n", "").as_str())
                .unwrap()
                .seq,
            9
        );
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("8").is_err());
        assert_eq!(
            parse_token_list("timer, 100rel", false).unwrap(),
            vec!["timer", "100rel"]
        );
        assert!(parse_token_list("", true).unwrap().is_empty());
        assert!(parse_token_list("a b", false).is_err());
        let se = SessionExpires::parse("1800;refresher=uas").unwrap();
        assert_eq!(se.refresher(), Some(Refresher::Uas));
        assert!(SessionExpires::parse("1800;refresher=me").is_err());
        assert_eq!(MinSe::parse(" 90").unwrap().delta, 90);
        let ct = MediaType::parse("multipart/mixed;boundary=7a9cbec02ceef655").unwrap();
        assert!(ct.is("Multipart", "MIXED"));
        assert!(check_date("Sat, 15 Oct 2005 04:44:56 GMT").is_ok());
        assert!(check_date("Fri, 01 Jan 2010 16:00:00 EST").is_err());
        assert!(check_call_id("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{").is_ok());
        assert!(check_call_id("a b").is_err());
    }
}
