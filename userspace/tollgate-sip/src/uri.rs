//! URIs: SIP/SIPS URIs (RFC 3261 §19.1, §25.1) with IPv6 references (RFC 5118), and any other
//! absolute URI kept opaque (`tel:`, `http:`, `isbn:`…).
//!
//! Components are stored as written (escapes included) so that `to_string()` reproduces the
//! input; [`SipUri::user_unescaped`] and [`SipUri::matches`] apply the §19.1.4 rules.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::ValueError;
use crate::params::{Params, parse_uri_params};
use crate::scan::{check_escaped, is_unreserved, unescape};

/// A host: a domain name, an IPv4 address or an IPv6 reference. The text is kept as written
/// (IPv6 with its brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    text: String,
    ip: Option<IpAddr>,
}

impl Host {
    /// A host from an IP address (IPv6 gets brackets).
    pub fn ip(ip: IpAddr) -> Self {
        let text = match ip {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        Host { text, ip: Some(ip) }
    }

    /// A host from a domain name or address literal, validated.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or(ValueError::from("IPv6 reference missing ']'"))?;
            let a: Ipv6Addr = inner
                .parse()
                .map_err(|_| ValueError::from(format!("invalid IPv6 reference [{inner}]")))?;
            return Ok(Host {
                text: s.to_owned(),
                ip: Some(IpAddr::V6(a)),
            });
        }
        if s.is_empty() {
            return Err("empty host".into());
        }
        if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            let a: Ipv4Addr = s
                .parse()
                .map_err(|_| ValueError::from(format!("invalid IPv4 address {s}")))?;
            return Ok(Host {
                text: s.to_owned(),
                ip: Some(IpAddr::V4(a)),
            });
        }
        if s.contains(':') {
            return Err(format!("IPv6 address {s} must be enclosed in [ ]").into());
        }
        let labels_ok = s.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
        // RFC 3261 also allows `_` in practice-free hostnames? No: hostname = alphanum / "-".
        if !labels_ok {
            return Err(format!("invalid host name {s:?}").into());
        }
        Ok(Host {
            text: s.to_owned(),
            ip: None,
        })
    }

    /// The host as written (IPv6 with brackets).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The IP address, if the host is one.
    pub fn ip_addr(&self) -> Option<IpAddr> {
        self.ip
    }

    /// §19.1.4 host comparison: addresses by value, names case-insensitively.
    pub fn matches(&self, other: &Host) -> bool {
        match (self.ip, other.ip) {
            (Some(a), Some(b)) => a == b,
            (None, None) => self
                .text
                .trim_end_matches('.')
                .eq_ignore_ascii_case(other.text.trim_end_matches('.')),
            _ => false,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Splits `host[:port]` (host may be an IPv6 reference). Used by URIs and Via sent-by.
pub(crate) fn parse_hostport(s: &str) -> Result<(Host, Option<u16>), ValueError> {
    let (host, port) = if s.starts_with('[') {
        let close = s
            .find(']')
            .ok_or(ValueError::from("IPv6 reference missing ']'"))?;
        let (h, rest) = s.split_at(close + 1);
        let port = match rest {
            "" => None,
            r => Some(
                r.strip_prefix(':')
                    .ok_or(ValueError::from("garbage after IPv6 reference"))?,
            ),
        };
        (h, port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let host = Host::parse(host)?;
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("invalid port {p:?}").into());
            }
            Some(
                p.parse::<u16>()
                    .map_err(|_| ValueError::from(format!("port {p} out of range")))?,
            )
        }
    };
    Ok((host, port))
}

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// User part as written (escapes kept).
    pub user: Option<String>,
    /// Password as written.
    pub password: Option<String>,
    /// Host.
    pub host: Host,
    /// Port, if given.
    pub port: Option<u16>,
    /// uri-parameters.
    pub params: Params,
    /// `?name=value&…` headers as written.
    pub headers: Vec<(String, String)>,
}

fn is_user_char(b: u8) -> bool {
    is_unreserved(b) || b"&=+$,;?/".contains(&b)
}

fn is_password_char(b: u8) -> bool {
    is_unreserved(b) || b"&=+$,".contains(&b)
}

fn is_hchar(b: u8) -> bool {
    is_unreserved(b) || b"[]/?:+$".contains(&b)
}

impl SipUri {
    /// A plain `sip:[user@]host[:port]`.
    pub fn new(user: Option<&str>, host: Host, port: Option<u16>) -> Self {
        SipUri {
            secure: false,
            user: user.map(str::to_owned),
            password: None,
            host,
            port,
            params: Params::new(),
            headers: Vec::new(),
        }
    }

    /// Parses the part after `sip:`/`sips:`.
    fn parse_rest(secure: bool, rest: &str) -> Result<Self, ValueError> {
        let (userinfo, hostpart) = match rest.find('@') {
            Some(at) => (
                Some(rest.get(..at).unwrap_or("")),
                rest.get(at + 1..).unwrap_or(""),
            ),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                let (u, p) = match ui.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (ui, None),
                };
                if u.is_empty() {
                    return Err("empty user part before '@'".into());
                }
                if !check_escaped(u, is_user_char) {
                    return Err(format!("invalid character in user part {u:?}").into());
                }
                if let Some(p) = p
                    && !check_escaped(p, is_password_char)
                {
                    return Err("invalid character in password".into());
                }
                (Some(u.to_owned()), p.map(str::to_owned))
            }
        };
        // hostport ends at ';' or '?', except inside an IPv6 reference.
        let hp_end = if hostpart.starts_with('[') {
            let close = hostpart
                .find(']')
                .ok_or(ValueError::from("IPv6 reference missing ']'"))?;
            hostpart
                .get(close..)
                .and_then(|t| t.find([';', '?']))
                .map_or(hostpart.len(), |i| i + close)
        } else {
            hostpart.find([';', '?']).unwrap_or(hostpart.len())
        };
        let (hp, tail) = hostpart.split_at(hp_end);
        let (host, port) = parse_hostport(hp)?;
        let (param_str, header_str) = match tail.find('?') {
            Some(q) => (tail.get(..q).unwrap_or(""), tail.get(q + 1..)),
            None => (tail, None),
        };
        let params = parse_uri_params(param_str)?;
        let mut headers = Vec::new();
        if let Some(hs) = header_str {
            for h in hs.split('&') {
                let (n, v) = h
                    .split_once('=')
                    .ok_or(ValueError::from("URI header without '='"))?;
                if n.is_empty() || !check_escaped(n, is_hchar) || !check_escaped(v, is_hchar) {
                    return Err("invalid URI header".into());
                }
                headers.push((n.to_owned(), v.to_owned()));
            }
        }
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// The user part with `%HH` escapes decoded (bytes: may contain NUL).
    pub fn user_unescaped(&self) -> Option<Vec<u8>> {
        self.user.as_deref().map(unescape)
    }

    /// `transport` parameter, if any.
    pub fn transport(&self) -> Option<&str> {
        self.params.value("transport")
    }

    /// Whether the `lr` parameter is present (loose router, RFC 3261 §16.12).
    pub fn is_loose_router(&self) -> bool {
        self.params.contains("lr")
    }

    /// URI equality per RFC 3261 §19.1.4 (user/password case-sensitive after unescaping, host
    /// case-insensitive, parameters user/ttl/method/maddr/transport must match when present in
    /// either, other parameters only when in both; headers compared as a set).
    pub fn matches(&self, other: &SipUri) -> bool {
        if self.secure != other.secure
            || self.user_unescaped() != other.user_unescaped()
            || self.password.as_deref().map(unescape) != other.password.as_deref().map(unescape)
            || !self.host.matches(&other.host)
            || self.port != other.port
        {
            return false;
        }
        let norm = |v: Option<Option<&str>>| {
            v.map(|o| o.map(|s| String::from_utf8_lossy(&unescape(s)).to_ascii_lowercase()))
        };
        for special in ["user", "ttl", "method", "maddr", "transport"] {
            if norm(self.params.get(special)) != norm(other.params.get(special)) {
                return false;
            }
        }
        for p in self.params.iter() {
            if let Some(ov) = other.params.get(&p.name)
                && norm(Some(p.value.as_deref())) != norm(Some(ov))
            {
                return false;
            }
        }
        if self.headers.len() != other.headers.len() {
            return false;
        }
        self.headers.iter().all(|(n, v)| {
            other.headers.iter().any(|(on, ov)| {
                unescape(n).eq_ignore_ascii_case(&unescape(on)) && unescape(v) == unescape(ov)
            })
        })
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                f.write_str(":")?;
                f.write_str(p)?;
            }
            f.write_str("@")?;
        }
        f.write_str(self.host.as_str())?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)?;
        for (i, (n, v)) in self.headers.iter().enumerate() {
            f.write_str(if i == 0 { "?" } else { "&" })?;
            f.write_str(n)?;
            f.write_str("=")?;
            f.write_str(v)?;
        }
        Ok(())
    }
}

/// Any URI: SIP/SIPS parsed, others kept opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// Any other absolute URI, e.g. `tel:+1555…`, kept as written.
    Other {
        /// Scheme as written.
        scheme: String,
        /// Everything after the colon.
        rest: String,
    },
}

impl Uri {
    /// Parses an absolute URI (no surrounding whitespace or brackets allowed).
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let colon = s.find(':').ok_or_else(|| {
            ValueError::from(format!("no scheme in URI {:?}", crate::params::truncate(s)))
        })?;
        let scheme = s.get(..colon).unwrap_or("");
        let rest = s.get(colon + 1..).unwrap_or("");
        let scheme_ok = scheme
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphabetic)
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !scheme_ok {
            return Err(format!("invalid URI scheme {:?}", crate::params::truncate(scheme)).into());
        }
        if crate::params::has_ws(s) {
            return Err("whitespace inside URI".into());
        }
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse_rest(false, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_rest(true, rest).map(Uri::Sip)
        } else {
            if rest.is_empty()
                || rest
                    .bytes()
                    .any(|b| b < 0x21 || b == 0x7f || b == b'<' || b == b'>' || b == b'"')
            {
                return Err(format!("malformed {scheme}: URI").into());
            }
            Ok(Uri::Other {
                scheme: scheme.to_owned(),
                rest: rest.to_owned(),
            })
        }
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other { .. } => None,
        }
    }

    /// Mutable SIP URI, if this is one.
    pub fn as_sip_mut(&mut self) -> Option<&mut SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other { .. } => None,
        }
    }

    /// The scheme, lower-cased for sip/sips.
    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) if u.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Other { scheme, .. } => scheme,
        }
    }
}

impl From<SipUri> for Uri {
    fn from(u: SipUri) -> Self {
        Uri::Sip(u)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

impl std::str::FromStr for Uri {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uri::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri {
        match Uri::parse(s).unwrap() {
            Uri::Sip(u) => u,
            other => panic!("not sip: {other:?}"),
        }
    }

    #[test]
    fn unusual_user_and_password() {
        let s = "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com";
        let u = sip(s);
        assert_eq!(
            u.user.as_deref(),
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            u.password.as_deref(),
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
        assert_eq!(u.host.as_str(), "example.com");
        assert_eq!(u.to_string(), s);
    }

    #[test]
    fn escaped_user_and_semicolon_user() {
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user_unescaped().unwrap(), b"user;par=u@example.net");
        let u = sip("sip:null-%00-null@example.com");
        assert_eq!(u.user_unescaped().unwrap(), b"null-\0-null");
    }

    #[test]
    fn ipv6_hosts_and_ports() {
        let u = sip("sip:[2001:db8::10]:5070");
        assert_eq!(u.port, Some(5070));
        assert!(matches!(u.host.ip_addr(), Some(IpAddr::V6(_))));
        let u = sip("sip:[2001:db8::10:5070]");
        assert_eq!(u.port, None);
        assert!(Uri::parse("sip:2001:db8::10").is_err());
        assert!(Uri::parse("sip:user@[2001:db8:::192.0.2.1]").is_err());
        let u = sip("sip:user@[2001:db8::192.0.2.1];transport=tcp");
        assert_eq!(
            u.to_string(),
            "sip:user@[2001:db8::192.0.2.1];transport=tcp"
        );
        assert_eq!(u.transport(), Some("tcp"));
        let u = sip("sip:ted@[::ffff:192.0.2.2]");
        assert!(u.host.ip_addr().is_some());
    }

    #[test]
    fn headers_in_uri() {
        let u = sip("sip:user@example.com?Route=%3Csip:sip.example.com%3E");
        assert_eq!(
            u.headers,
            vec![("Route".into(), "%3Csip:sip.example.com%3E".into())]
        );
    }

    #[test]
    fn other_schemes() {
        let u = Uri::parse("nobodyKnowsThisScheme:totallyopaquecontent").unwrap();
        assert_eq!(u.scheme(), "nobodyKnowsThisScheme");
        assert_eq!(
            Uri::parse("soap.beep://192.0.2.103:3002").unwrap().scheme(),
            "soap.beep"
        );
        assert!(Uri::parse("<sip:user@example.com>").is_err());
        assert!(Uri::parse("sip:user@example.com; lr").is_err());
        assert!(Uri::parse("tel:").is_err());
    }

    #[test]
    fn comparison() {
        assert!(
            sip("sip:%61lice@atlanta.com;transport=TCP")
                .matches(&sip("sip:alice@AtLanTa.CoM;Transport=tcp"))
        );
        assert!(!sip("sip:alice@atlanta.com").matches(&sip("sip:ALICE@atlanta.com")));
        assert!(!sip("sip:bob@biloxi.com").matches(&sip("sip:bob@biloxi.com:5060")));
        assert!(
            sip("sip:carol@chicago.com;security=on")
                .matches(&sip("sip:carol@chicago.com;newparam=5"))
        );
        assert!(!sip("sip:carol@chicago.com;transport=udp").matches(&sip("sip:carol@chicago.com")));
        assert!(sip("sip:[2001:db8::9:01]").matches(&sip("sip:[2001:db8::9:1]")));
    }
}
