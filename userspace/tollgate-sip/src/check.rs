//! UA-layer acceptance checks that follow a successful parse (RFC 3261 §8.2.2, §8.2.3,
//! §8.1.3.3, §16.3): Max-Forwards exhaustion (483) at a forwarding element, unsupported
//! Request-URI scheme (416), unsupported Require extensions (420), unsupported body type (415),
//! an Accept that excludes SDP (406), and responses a UA must discard.
//!
//! Failures are [`ParseError`]s, so [`ParseError::error_response`] builds the answer (with
//! `Unsupported:` for 420).

use std::net::IpAddr;

use crate::error::{Echo, Fault, Origin, ParseError};
use crate::header::HeaderName;
use crate::message::Message;
use crate::types::Method;

/// What this element accepts.
#[derive(Debug, Clone)]
pub struct UaPolicy<'a> {
    /// Request-URI schemes served (lower case). Default: `sip`, `sips`.
    pub schemes: &'a [&'a str],
    /// Option tags this element supports (for Require).
    pub supported: &'a [&'a str],
    /// The element forwards requests (a B2BUA does): Max-Forwards 0 is answered 483, except
    /// for an OPTIONS addressed to the element itself (see [`UaPolicy::local_addrs`]).
    pub forwarding: bool,
    /// Body media types accepted in session requests (INVITE, UPDATE, PRACK), as (type,
    /// subtype); other methods' bodies are the TU's business.
    pub body_types: &'a [(&'a str, &'a str)],
    /// The element's own addresses. An OPTIONS whose Request-URI has no user part and whose
    /// host is one of these is addressed to the element, which answers it itself: Max-Forwards
    /// 0 then does not apply (RFC 3261 §11; §16.3 item 3 limits forwarding only). Default: none.
    pub local_addrs: &'a [IpAddr],
}

impl Default for UaPolicy<'_> {
    fn default() -> Self {
        UaPolicy {
            schemes: &["sip", "sips"],
            supported: &["timer", "100rel", "replaces"],
            forwarding: true,
            body_types: &[("application", "sdp")],
            local_addrs: &[],
        }
    }
}

fn echo_of(msg: &Message) -> Option<Echo> {
    let headers: Vec<_> = msg
        .headers
        .iter()
        .filter(|h| {
            matches!(
                h.name(),
                HeaderName::Via
                    | HeaderName::From
                    | HeaderName::To
                    | HeaderName::CallId
                    | HeaderName::CSeq
            )
        })
        .cloned()
        .collect();
    (!headers.is_empty()).then_some(Echo { headers })
}

/// True when the Request-URI names the element itself: a SIP URI without a user part whose host
/// is one of `local` (a host name never matches: the element does not know its DNS names).
fn addressed_to_self(msg: &Message, local: &[IpAddr]) -> bool {
    msg.request_uri()
        .and_then(|u| u.as_sip())
        .is_some_and(|u| u.user.is_none() && u.host.ip_addr().is_some_and(|ip| local.contains(&ip)))
}

/// Checks a parsed request against `policy`. ACK is never rejected (it cannot be answered).
pub fn check_request(msg: &Message, policy: &UaPolicy<'_>) -> Result<(), ParseError> {
    let Some(method) = msg.method() else {
        return Ok(());
    };
    if *method == Method::Ack {
        return Ok(());
    }
    let fail = |f: Fault| Err(ParseError::new(f, Origin::Request).with_echo(echo_of(msg)));
    if policy.forwarding
        && msg.headers.max_forwards() == Some(0)
        && !(*method == Method::Options && addressed_to_self(msg, policy.local_addrs))
    {
        return fail(Fault::TooManyHops);
    }
    if let Some(uri) = msg.request_uri() {
        let scheme = uri.scheme();
        if !policy
            .schemes
            .iter()
            .any(|s| s.eq_ignore_ascii_case(scheme))
        {
            return fail(Fault::UnsupportedScheme(scheme.to_owned()));
        }
    }
    if *method != Method::Cancel {
        let unsupported: Vec<String> = msg
            .headers
            .require()
            .filter(|t| !policy.supported.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .map(str::to_owned)
            .collect();
        if !unsupported.is_empty() {
            return fail(Fault::BadExtension(unsupported));
        }
    }
    let carries_session = matches!(method, Method::Invite | Method::Update | Method::Prack);
    if carries_session
        && !msg.body.is_empty()
        && let Some(ct) = msg.headers.content_type()
        && !policy.body_types.iter().any(|(t, s)| ct.is(t, s))
    {
        return fail(Fault::UnsupportedMediaType(format!(
            "{}/{}",
            ct.kind, ct.subtype
        )));
    }
    if matches!(method, Method::Invite) {
        let accepts: Vec<&str> = msg
            .headers
            .get_all(&HeaderName::Accept)
            .flat_map(|h| h.value().split(','))
            .map(|s| s.split(';').next().unwrap_or("").trim())
            .collect();
        let has_accept = msg.headers.get(&HeaderName::Accept).is_some();
        let ok = accepts.iter().any(|a| {
            a.eq_ignore_ascii_case("application/sdp")
                || *a == "*/*"
                || a.eq_ignore_ascii_case("application/*")
        });
        if has_accept && !ok {
            return fail(Fault::NotAcceptable("application/sdp".into()));
        }
    }
    Ok(())
}

/// Checks a response a UA received (§8.1.3.3): more than one Via means it was misrouted and is
/// discarded (RFC 4475 §3.3.10 bcast).
pub fn check_response(msg: &Message) -> Result<(), ParseError> {
    let n = msg.headers.vias().count();
    if msg.status().is_some() && n != 1 {
        return Err(ParseError::new(Fault::ExtraVia(n), Origin::Response));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(extra: &str, ruri: &str) -> Message {
        let raw = format!(
            "OPTIONS {ruri} SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: id1\r\nCSeq: 1 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(raw.as_bytes()).unwrap()
    }

    #[test]
    fn policy_rejections() {
        let p = UaPolicy::default();
        assert!(check_request(&req("Max-Forwards: 5\r\n", "sip:a@b"), &p).is_ok());
        let e = check_request(&req("Max-Forwards: 0\r\n", "sip:a@b"), &p).unwrap_err();
        assert_eq!(e.response().unwrap().0, 483);
        let e = check_request(&req("", "tel:+1555"), &p).unwrap_err();
        assert_eq!(e.response().unwrap().0, 416);
        let e = check_request(&req("Require: foo, timer\r\n", "sip:a@b"), &p).unwrap_err();
        assert_eq!(e.response().unwrap().0, 420);
        let r = String::from_utf8(e.error_response("x").unwrap().encode()).unwrap();
        assert!(r.contains("\r\nUnsupported: foo\r\n"), "{r}");
    }

    #[test]
    fn options_to_self_with_max_forwards_zero() {
        let own: [IpAddr; 1] = ["192.0.2.1".parse().unwrap()];
        let p = UaPolicy {
            local_addrs: &own,
            ..UaPolicy::default()
        };
        let mf0 = "Max-Forwards: 0\r\n";
        // Addressed to this element: answered as a UAS would (RFC 3261 §11).
        assert!(check_request(&req(mf0, "sip:192.0.2.1"), &p).is_ok());
        assert!(check_request(&req(mf0, "sip:192.0.2.1:5060;transport=tcp"), &p).is_ok());
        // A user part, another host or a name: to be forwarded, so 483 (RFC 4475 zeromf).
        for ruri in [
            "sip:user@192.0.2.1",
            "sip:192.0.2.9",
            "sip:tollgate.example",
        ] {
            let e = check_request(&req(mf0, ruri), &p).unwrap_err();
            assert_eq!(e.response().unwrap().0, 483, "{ruri}");
        }
        // Only OPTIONS is answered locally.
        let raw = "INFO sip:192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: id1\r\nCSeq: 1 INFO\r\nMax-Forwards: 0\r\nContent-Length: 0\r\n\r\n";
        let info = Message::parse(raw.as_bytes()).unwrap();
        assert_eq!(
            check_request(&info, &p).unwrap_err().response().unwrap().0,
            483
        );
    }
}
