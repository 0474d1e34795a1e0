//! Header names (with RFC 3261 §7.3.3 compact forms) and header storage.
//!
//! Every header line is kept as a [`Header`]: its name, its value text (folding replaced by a
//! single space, surrounding whitespace trimmed) and, for the headers the B2BUA needs, the
//! typed value parsed once at receive time. Serialization writes `Name: value` from the text, so
//! a parsed message re-emits byte-identically when its input was canonical (long header names,
//! `": "` after the name, no folding). Typed setters regenerate the text. Unknown headers keep
//! their name spelling, value and position.

use std::fmt;

use crate::error::ValueError;
use crate::scan::split_commas;
use crate::types::{
    CSeq, MediaType, MinSe, NameAddr, SessionExpires, Via, check_call_id, check_date,
    parse_token_list,
};

macro_rules! header_names {
    ($( $(#[$doc:meta])* $var:ident => $text:literal $(, $compact:literal)? ;)*) => {
        /// A header name. Known names compare by variant; `Other` case-insensitively.
        #[derive(Debug, Clone, Eq)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( $(#[$doc])* $var, )*
            /// Any other header, spelled as received.
            Other(String),
        }

        impl HeaderName {
            /// Maps a received name (any case, compact forms expanded).
            pub fn parse(s: &str) -> HeaderName {
                $(
                    if s.eq_ignore_ascii_case($text) $( || s.eq_ignore_ascii_case($compact) )? {
                        return HeaderName::$var;
                    }
                )*
                HeaderName::Other(s.to_owned())
            }

            /// The canonical (long-form) name, or the spelling of an unknown header.
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$var => $text, )*
                    HeaderName::Other(s) => s,
                }
            }
        }
    };
}

header_names! {
    /// Via (v)
    Via => "Via", "v";
    /// From (f)
    From => "From", "f";
    /// To (t)
    To => "To", "t";
    /// Call-ID (i)
    CallId => "Call-ID", "i";
    /// CSeq
    CSeq => "CSeq";
    /// Contact (m)
    Contact => "Contact", "m";
    /// Route
    Route => "Route";
    /// Record-Route
    RecordRoute => "Record-Route";
    /// Max-Forwards
    MaxForwards => "Max-Forwards";
    /// Content-Length (l)
    ContentLength => "Content-Length", "l";
    /// Content-Type (c)
    ContentType => "Content-Type", "c";
    /// Content-Encoding (e)
    ContentEncoding => "Content-Encoding", "e";
    /// Supported (k)
    Supported => "Supported", "k";
    /// Require
    Require => "Require";
    /// Proxy-Require
    ProxyRequire => "Proxy-Require";
    /// Unsupported
    Unsupported => "Unsupported";
    /// Session-Expires (x)
    SessionExpires => "Session-Expires", "x";
    /// Min-SE
    MinSe => "Min-SE";
    /// P-Asserted-Identity
    PAssertedIdentity => "P-Asserted-Identity";
    /// Subject (s)
    Subject => "Subject", "s";
    /// Allow
    Allow => "Allow";
    /// Accept
    Accept => "Accept";
    /// Date
    Date => "Date";
    /// Expires
    Expires => "Expires";
    /// Event (o)
    Event => "Event", "o";
    /// Refer-To (r)
    ReferTo => "Refer-To", "r";
    /// Referred-By (b)
    ReferredBy => "Referred-By", "b";
    /// Allow-Events (u)
    AllowEvents => "Allow-Events", "u";
    /// RSeq (RFC 3262)
    RSeq => "RSeq";
    /// RAck (RFC 3262)
    RAck => "RAck";
    /// Reason (RFC 3326)
    Reason => "Reason";
    /// Authorization
    Authorization => "Authorization";
    /// Proxy-Authorization
    ProxyAuthorization => "Proxy-Authorization";
    /// WWW-Authenticate
    WwwAuthenticate => "WWW-Authenticate";
    /// Proxy-Authenticate
    ProxyAuthenticate => "Proxy-Authenticate";
    /// Authentication-Info
    AuthenticationInfo => "Authentication-Info";
    /// User-Agent
    UserAgent => "User-Agent";
    /// Server
    Server => "Server";
    /// Retry-After
    RetryAfter => "Retry-After";
    /// Warning
    Warning => "Warning";
    /// Path
    Path => "Path";
    /// Service-Route
    ServiceRoute => "Service-Route";
    /// Accept-Contact (a)
    AcceptContact => "Accept-Contact", "a";
    /// Reject-Contact (j)
    RejectContact => "Reject-Contact", "j";
    /// Request-Disposition (d)
    RequestDisposition => "Request-Disposition", "d";
    /// Identity (y)
    Identity => "Identity", "y";
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl HeaderName {
    /// Headers that may appear at most once in a message.
    pub fn is_single(&self) -> bool {
        matches!(
            self,
            HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::MaxForwards
                | HeaderName::ContentLength
                | HeaderName::ContentType
                | HeaderName::SessionExpires
                | HeaderName::MinSe
        )
    }

    /// Headers that belong to one leg of a B2BUA and must not be copied to the other leg's
    /// request: transaction/dialog identity, routing, hop counts, framing, credentials and
    /// per-leg reliability (RSeq/RAck).
    pub fn is_leg_specific(&self) -> bool {
        matches!(
            self,
            HeaderName::Via
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::Contact
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::MaxForwards
                | HeaderName::ContentLength
                | HeaderName::ProxyRequire
                | HeaderName::Authorization
                | HeaderName::ProxyAuthorization
                | HeaderName::WwwAuthenticate
                | HeaderName::ProxyAuthenticate
                | HeaderName::AuthenticationInfo
                | HeaderName::RSeq
                | HeaderName::RAck
                | HeaderName::Path
                | HeaderName::ServiceRoute
        )
    }

    fn static_name(&self) -> &'static str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::Contact => "Contact",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::Supported => "Supported",
            HeaderName::Require => "Require",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Unsupported => "Unsupported",
            HeaderName::SessionExpires => "Session-Expires",
            HeaderName::MinSe => "Min-SE",
            HeaderName::PAssertedIdentity => "P-Asserted-Identity",
            HeaderName::Date => "Date",
            HeaderName::Allow => "Allow",
            HeaderName::RSeq => "RSeq",
            HeaderName::Expires => "Expires",
            _ => "header",
        }
    }
}

/// A typed header value, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Typed {
    /// Not typed: the text is the value (unknown headers, Subject, …; also Call-ID and Date
    /// after validation).
    Raw,
    /// Via values on this line.
    Via(Vec<Via>),
    /// From or To.
    Addr(Box<NameAddr>),
    /// Contact, Route, Record-Route, P-Asserted-Identity values on this line.
    Addrs(Vec<NameAddr>),
    /// `Contact: *`.
    Star,
    /// CSeq.
    CSeq(CSeq),
    /// Max-Forwards, Content-Length, RSeq, Expires.
    Number(u32),
    /// Supported, Require, Proxy-Require, Unsupported, Allow.
    Tokens(Vec<String>),
    /// Content-Type.
    MediaType(Box<MediaType>),
    /// Session-Expires.
    SessionExpires(SessionExpires),
    /// Min-SE.
    MinSe(MinSe),
}

/// One header line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    name: HeaderName,
    value: String,
    typed: Typed,
}

fn list<T>(v: &str, f: impl Fn(&str) -> Result<T, ValueError>) -> Result<Vec<T>, ValueError> {
    split_commas(v)?.into_iter().map(f).collect()
}

fn number(v: &str, max: u64) -> Result<u32, ValueError> {
    let n = crate::scan::parse_digits(v.trim_matches([' ', '\t']))
        .ok_or(ValueError::from("not a non-negative integer"))?;
    if n > max {
        return Err(format!("value {n} exceeds {max}").into());
    }
    u32::try_from(n).map_err(|_| ValueError::from("value exceeds 32 bits"))
}

impl Header {
    /// Parses `value` for `name`. Known headers are typed; an invalid value is an error.
    pub fn new(name: HeaderName, value: impl Into<String>) -> Result<Header, ValueError> {
        let value = value.into();
        let typed = Self::parse_typed(&name, &value)?;
        Ok(Header { name, value, typed })
    }

    /// Like [`Header::new`] but hands the text back on failure (no copy needed).
    pub(crate) fn try_new(
        name: HeaderName,
        value: String,
    ) -> Result<Header, (ValueError, HeaderName, String)> {
        match Self::parse_typed(&name, &value) {
            Ok(typed) => Ok(Header { name, value, typed }),
            Err(e) => Err((e, name, value)),
        }
    }

    /// A header stored without typing (used for verbatim copies).
    pub(crate) fn raw(name: HeaderName, value: String) -> Header {
        Header {
            name,
            value,
            typed: Typed::Raw,
        }
    }

    /// Builds a header from a typed value (the text is generated canonically).
    pub fn typed(name: HeaderName, typed: Typed) -> Header {
        let value = render(&typed);
        Header { name, value, typed }
    }

    fn parse_typed(name: &HeaderName, v: &str) -> Result<Typed, ValueError> {
        // Header injection guard: a value is one line; a name is a token.
        if v.bytes().any(|b| b == b'\r' || b == b'\n') {
            return Err("line break inside header value".into());
        }
        if let HeaderName::Other(n) = name
            && !crate::scan::is_token_str(n)
        {
            return Err("header name is not a token".into());
        }
        Ok(match name {
            HeaderName::Via => Typed::Via(list(v, Via::parse)?),
            HeaderName::From | HeaderName::To => Typed::Addr(Box::new(NameAddr::parse(v)?)),
            HeaderName::Contact if v.trim_matches([' ', '\t']) == "*" => Typed::Star,
            HeaderName::Contact
            | HeaderName::Route
            | HeaderName::RecordRoute
            | HeaderName::PAssertedIdentity => Typed::Addrs(list(v, NameAddr::parse)?),
            HeaderName::CallId => {
                check_call_id(v)?;
                Typed::Raw
            }
            HeaderName::CSeq => Typed::CSeq(CSeq::parse(v)?),
            HeaderName::MaxForwards => Typed::Number(number(v, 255)?),
            HeaderName::ContentLength | HeaderName::RSeq => {
                Typed::Number(number(v, u64::from(u32::MAX))?)
            }
            HeaderName::Expires => Typed::Number(number(v, u64::from(u32::MAX))?),
            HeaderName::ContentType => Typed::MediaType(Box::new(MediaType::parse(v)?)),
            HeaderName::Supported | HeaderName::Allow => Typed::Tokens(parse_token_list(v, true)?),
            HeaderName::Require | HeaderName::ProxyRequire | HeaderName::Unsupported => {
                Typed::Tokens(parse_token_list(v, false)?)
            }
            HeaderName::SessionExpires => Typed::SessionExpires(SessionExpires::parse(v)?),
            HeaderName::MinSe => Typed::MinSe(MinSe::parse(v)?),
            HeaderName::Date => {
                check_date(v)?;
                Typed::Raw
            }
            _ => Typed::Raw,
        })
    }

    /// The header's name.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The value text.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The typed value.
    pub fn typed_value(&self) -> &Typed {
        &self.typed
    }

    pub(crate) fn static_name(&self) -> &'static str {
        self.name.static_name()
    }
}

fn join<T: fmt::Display>(items: &[T], sep: &str) -> String {
    let mut s = String::new();
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            s.push_str(sep);
        }
        s.push_str(&it.to_string());
    }
    s
}

fn render(t: &Typed) -> String {
    match t {
        Typed::Raw => String::new(),
        Typed::Via(v) => join(v, ", "),
        Typed::Addr(a) => a.to_string(),
        Typed::Addrs(a) => join(a, ", "),
        Typed::Star => "*".into(),
        Typed::CSeq(c) => c.to_string(),
        Typed::Number(n) => n.to_string(),
        Typed::Tokens(t) => t.join(", "),
        Typed::MediaType(m) => m.to_string(),
        Typed::SessionExpires(s) => s.to_string(),
        Typed::MinSe(m) => m.to_string(),
    }
}

impl fmt::Display for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.value)
    }
}

/// The ordered header list of a message, with typed accessors.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers(Vec<Header>);

impl Headers {
    /// An empty list.
    pub fn new() -> Self {
        Headers(Vec::with_capacity(16))
    }

    /// All header lines in order.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends a line.
    pub fn push(&mut self, h: Header) {
        self.0.push(h);
    }

    /// Inserts a line at `index` (clamped).
    pub fn insert(&mut self, index: usize, h: Header) {
        let i = index.min(self.0.len());
        self.0.insert(i, h);
    }

    /// Parses and appends `name: value`.
    pub fn append(&mut self, name: HeaderName, value: &str) -> Result<(), ValueError> {
        self.0.push(Header::new(name, value)?);
        Ok(())
    }

    /// Replaces every line of `h`'s name by `h`, placed where the first one was (else appended).
    pub fn set(&mut self, h: Header) {
        match self.0.iter().position(|x| x.name == h.name) {
            Some(i) => {
                if let Some(slot) = self.0.get_mut(i) {
                    *slot = h.clone();
                }
                let name = h.name;
                let mut idx = 0;
                self.0.retain(|x| {
                    let keep = idx == i || x.name != name;
                    idx += 1;
                    keep
                });
            }
            None => self.0.push(h),
        }
    }

    /// Removes every line named `name`; returns how many were removed.
    pub fn remove(&mut self, name: &HeaderName) -> usize {
        let before = self.0.len();
        self.0.retain(|x| &x.name != name);
        before - self.0.len()
    }

    /// Keeps only lines for which `f` holds.
    pub fn retain(&mut self, f: impl FnMut(&Header) -> bool) {
        self.0.retain(f);
    }

    /// First line named `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&Header> {
        self.0.iter().find(|h| &h.name == name)
    }

    /// Value text of the first line named `name`.
    pub fn get_value(&self, name: &HeaderName) -> Option<&str> {
        self.get(name).map(Header::value)
    }

    /// Every line named `name`.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a Header> + 'a {
        self.0.iter().filter(move |h| &h.name == name)
    }

    /// Number of lines named `name`.
    pub fn count(&self, name: &HeaderName) -> usize {
        self.0.iter().filter(|h| &h.name == name).count()
    }

    /// All Via values, top first.
    pub fn vias(&self) -> impl Iterator<Item = &Via> {
        self.0.iter().flat_map(|h| match &h.typed {
            Typed::Via(v) if h.name == HeaderName::Via => v.as_slice(),
            _ => &[],
        })
    }

    /// The topmost Via.
    pub fn top_via(&self) -> Option<&Via> {
        self.vias().next()
    }

    /// Inserts `via` as the new topmost Via line.
    pub fn push_via_top(&mut self, via: Via) {
        let at = self
            .0
            .iter()
            .position(|h| h.name == HeaderName::Via)
            .unwrap_or(0);
        self.insert(at, Header::typed(HeaderName::Via, Typed::Via(vec![via])));
    }

    /// Removes the topmost Via value (re-rendering its line if it held several). Returns it.
    pub fn pop_via(&mut self) -> Option<Via> {
        let i = self.0.iter().position(|h| h.name == HeaderName::Via)?;
        let h = self.0.get_mut(i)?;
        let Typed::Via(list) = &mut h.typed else {
            return None;
        };
        if list.is_empty() {
            return None;
        }
        let top = list.remove(0);
        if list.is_empty() {
            self.0.remove(i);
        } else {
            h.value = render(&h.typed);
        }
        Some(top)
    }

    fn addr(&self, name: &HeaderName) -> Option<&NameAddr> {
        match &self.get(name)?.typed {
            Typed::Addr(a) => Some(a),
            _ => None,
        }
    }

    fn addrs<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a NameAddr> + 'a {
        self.get_all(name).flat_map(|h| match &h.typed {
            Typed::Addrs(v) => v.as_slice(),
            _ => &[],
        })
    }

    fn number(&self, name: &HeaderName) -> Option<u32> {
        match self.get(name)?.typed {
            Typed::Number(n) => Some(n),
            _ => None,
        }
    }

    fn tokens<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.get_all(name).flat_map(|h| {
            match &h.typed {
                Typed::Tokens(v) => v.as_slice(),
                _ => &[],
            }
            .iter()
            .map(String::as_str)
        })
    }

    /// From.
    pub fn from(&self) -> Option<&NameAddr> {
        self.addr(&HeaderName::From)
    }

    /// To.
    pub fn to(&self) -> Option<&NameAddr> {
        self.addr(&HeaderName::To)
    }

    /// Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        self.get_value(&HeaderName::CallId)
    }

    /// CSeq.
    pub fn cseq(&self) -> Option<&CSeq> {
        match &self.get(&HeaderName::CSeq)?.typed {
            Typed::CSeq(c) => Some(c),
            _ => None,
        }
    }

    /// Contact values (empty for `Contact: *`, see [`Headers::contact_is_star`]).
    pub fn contacts(&self) -> impl Iterator<Item = &NameAddr> {
        self.addrs(&HeaderName::Contact)
    }

    /// True for `Contact: *`.
    pub fn contact_is_star(&self) -> bool {
        self.get_all(&HeaderName::Contact)
            .any(|h| h.typed == Typed::Star)
    }

    /// Route values in order.
    pub fn routes(&self) -> impl Iterator<Item = &NameAddr> {
        self.addrs(&HeaderName::Route)
    }

    /// Record-Route values in order.
    pub fn record_routes(&self) -> impl Iterator<Item = &NameAddr> {
        self.addrs(&HeaderName::RecordRoute)
    }

    /// P-Asserted-Identity values.
    pub fn p_asserted_identities(&self) -> impl Iterator<Item = &NameAddr> {
        self.addrs(&HeaderName::PAssertedIdentity)
    }

    /// Max-Forwards.
    pub fn max_forwards(&self) -> Option<u32> {
        self.number(&HeaderName::MaxForwards)
    }

    /// Content-Length.
    pub fn content_length(&self) -> Option<u32> {
        self.number(&HeaderName::ContentLength)
    }

    /// RSeq.
    pub fn rseq(&self) -> Option<u32> {
        self.number(&HeaderName::RSeq)
    }

    /// Content-Type.
    pub fn content_type(&self) -> Option<&MediaType> {
        match &self.get(&HeaderName::ContentType)?.typed {
            Typed::MediaType(m) => Some(m),
            _ => None,
        }
    }

    /// Supported option tags.
    pub fn supported(&self) -> impl Iterator<Item = &str> {
        self.tokens(&HeaderName::Supported)
    }

    /// Require option tags.
    pub fn require(&self) -> impl Iterator<Item = &str> {
        self.tokens(&HeaderName::Require)
    }

    /// Proxy-Require option tags.
    pub fn proxy_require(&self) -> impl Iterator<Item = &str> {
        self.tokens(&HeaderName::ProxyRequire)
    }

    /// Whether `tag` is listed in Supported or Require.
    pub fn supports(&self, tag: &str) -> bool {
        self.supported()
            .chain(self.require())
            .any(|t| t.eq_ignore_ascii_case(tag))
    }

    /// Session-Expires.
    pub fn session_expires(&self) -> Option<&SessionExpires> {
        match &self.get(&HeaderName::SessionExpires)?.typed {
            Typed::SessionExpires(s) => Some(s),
            _ => None,
        }
    }

    /// Min-SE.
    pub fn min_se(&self) -> Option<&MinSe> {
        match &self.get(&HeaderName::MinSe)?.typed {
            Typed::MinSe(s) => Some(s),
            _ => None,
        }
    }

    /// Sets From.
    pub fn set_from(&mut self, a: NameAddr) {
        self.set(Header::typed(HeaderName::From, Typed::Addr(Box::new(a))));
    }

    /// Sets To.
    pub fn set_to(&mut self, a: NameAddr) {
        self.set(Header::typed(HeaderName::To, Typed::Addr(Box::new(a))));
    }

    /// Sets the To tag (re-rendering the To line). No-op without a To.
    pub fn set_to_tag(&mut self, tag: &str) {
        if let Some(mut to) = self.to().cloned() {
            to.set_tag(tag);
            self.set_to(to);
        }
    }

    /// Sets Call-ID (the caller guarantees `word[@word]` syntax).
    pub fn set_call_id(&mut self, id: &str) {
        self.set(Header::raw(HeaderName::CallId, id.to_owned()));
    }

    /// Sets CSeq.
    pub fn set_cseq(&mut self, c: CSeq) {
        self.set(Header::typed(HeaderName::CSeq, Typed::CSeq(c)));
    }

    /// Sets Max-Forwards.
    pub fn set_max_forwards(&mut self, n: u32) {
        self.set(Header::typed(
            HeaderName::MaxForwards,
            Typed::Number(n.min(255)),
        ));
    }

    /// Sets Contact to a single value.
    pub fn set_contact(&mut self, a: NameAddr) {
        self.set(Header::typed(HeaderName::Contact, Typed::Addrs(vec![a])));
    }

    /// Replaces all Route lines with one Route line per value (none if empty).
    pub fn set_routes(&mut self, routes: &[NameAddr]) {
        self.set_addr_lines(HeaderName::Route, routes);
    }

    /// Replaces all Record-Route lines.
    pub fn set_record_routes(&mut self, rr: &[NameAddr]) {
        self.set_addr_lines(HeaderName::RecordRoute, rr);
    }

    fn set_addr_lines(&mut self, name: HeaderName, v: &[NameAddr]) {
        let at = self.0.iter().position(|h| h.name == name);
        self.remove(&name);
        let at = at.unwrap_or(self.0.len()).min(self.0.len());
        let lines = v
            .iter()
            .map(|a| Header::typed(name.clone(), Typed::Addrs(vec![a.clone()])));
        self.0.splice(at..at, lines);
    }

    /// Sets Content-Type.
    pub fn set_content_type(&mut self, m: MediaType) {
        self.set(Header::typed(
            HeaderName::ContentType,
            Typed::MediaType(Box::new(m)),
        ));
    }

    /// Sets Content-Length.
    pub fn set_content_length(&mut self, n: u32) {
        self.set(Header::typed(HeaderName::ContentLength, Typed::Number(n)));
    }

    /// Sets a token-list header (Supported, Require, Unsupported, Allow, Proxy-Require).
    pub fn set_tokens(&mut self, name: HeaderName, tokens: &[&str]) {
        let t = tokens.iter().map(|s| (*s).to_owned()).collect();
        self.set(Header::typed(name, Typed::Tokens(t)));
    }

    /// Sets Session-Expires.
    pub fn set_session_expires(&mut self, se: SessionExpires) {
        self.set(Header::typed(
            HeaderName::SessionExpires,
            Typed::SessionExpires(se),
        ));
    }

    /// Sets Min-SE.
    pub fn set_min_se(&mut self, delta: u32) {
        self.set(Header::typed(
            HeaderName::MinSe,
            Typed::MinSe(MinSe {
                delta,
                params: crate::params::Params::new(),
            }),
        ));
    }

    /// Sets P-Asserted-Identity values.
    pub fn set_p_asserted_identities(&mut self, ids: &[NameAddr]) {
        self.set(Header::typed(
            HeaderName::PAssertedIdentity,
            Typed::Addrs(ids.to_vec()),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(HeaderName::parse("v"), HeaderName::Via);
        assert_eq!(HeaderName::parse("cAlL-iD"), HeaderName::CallId);
        assert_eq!(HeaderName::parse("l"), HeaderName::ContentLength);
        assert_eq!(HeaderName::parse("X-Foo"), HeaderName::parse("x-foo"));
        assert_eq!(HeaderName::parse("X-Foo").as_str(), "X-Foo");
        assert_ne!(HeaderName::parse("X-Foo"), HeaderName::Via);
    }

    #[test]
    fn typed_set_get() {
        let mut h = Headers::new();
        h.append(
            HeaderName::Via,
            "SIP/2.0/TCP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com;branch=z9hG4bK2",
        )
        .unwrap();
        h.append(HeaderName::parse("X-Custom"), ";;,,;;,;").unwrap();
        h.append(HeaderName::Supported, "timer, 100rel").unwrap();
        assert_eq!(h.vias().count(), 2);
        let top = h.pop_via().unwrap();
        assert_eq!(top.branch(), Some("z9hG4bK1"));
        assert_eq!(
            h.get_value(&HeaderName::Via),
            Some("SIP/2.0/TCP b.example.com;branch=z9hG4bK2")
        );
        assert!(h.supports("100REL"));
        h.set_max_forwards(70);
        h.set_max_forwards(69);
        assert_eq!(h.count(&HeaderName::MaxForwards), 1);
        assert_eq!(h.max_forwards(), Some(69));
        assert_eq!(h.remove(&HeaderName::parse("x-custom")), 1);
        assert!(Header::new(HeaderName::MaxForwards, "256").is_err());
        assert!(Header::new(HeaderName::ContentLength, "-999").is_err());
        // Injection guards.
        assert!(Header::new(HeaderName::parse("X-A"), "v\r\nVia: evil").is_err());
        assert!(Header::new(HeaderName::parse("X A"), "v").is_err());
    }
}
