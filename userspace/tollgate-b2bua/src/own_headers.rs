//! What Tollgate writes into outgoing messages itself: its capabilities (Allow, Supported,
//! Require, Accept), session timers (Session-Expires, Min-SE, RFC 4028), reliable provisionals
//! (RSeq, RAck, RFC 3262), and why it refused or ended something (Retry-After, Reason per
//! RFC 3326, Warning code 399). Every such header is added here and nowhere else.
//!
//! What crosses from one leg to the other is a different question, answered by the allowlist
//! in `headers.rs`; this module never copies anything from the other leg.

use tollgate_sip::{Header, HeaderName, Message, Refresher, SessionExpires};

/// Methods Tollgate serves (Allow).
pub(crate) const ALLOW: &[&str] = &[
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "PRACK", "UPDATE", "INFO",
];

/// The option tag of session timers (RFC 4028).
pub(crate) const TIMER: &str = "timer";
/// The option tag of reliable provisional responses (RFC 3262).
pub(crate) const REL_100: &str = "100rel";

/// The agent named in Tollgate's Warning headers.
const WARN_AGENT: &str = "tollgate";

/// Adds a header given as text, before Content-Length. Values written here are always valid
/// header text; one that were not would be left out rather than sent malformed.
fn add(msg: &mut Message, name: HeaderName, value: &str) {
    if let Ok(h) = Header::new(name, value) {
        let at = msg
            .headers
            .iter()
            .position(|x| *x.name() == HeaderName::ContentLength)
            .unwrap_or(msg.headers.len());
        msg.headers.insert(at, h);
    }
}

/// `Allow:` every method Tollgate serves, added.
pub(crate) fn allow(msg: &mut Message) {
    add(msg, HeaderName::Allow, &ALLOW.join(", "));
}

/// `Allow:` every method Tollgate serves, replacing any Allow (405 and OPTIONS answers).
pub(crate) fn set_allow(msg: &mut Message) {
    msg.headers.set_tokens(HeaderName::Allow, ALLOW);
}

/// `Supported:` the given option tags, added (nothing when there are none).
pub(crate) fn supported(msg: &mut Message, tags: &[&str]) {
    if !tags.is_empty() {
        add(msg, HeaderName::Supported, &tags.join(", "));
    }
}

/// `Supported:` the given option tags, replacing any Supported.
pub(crate) fn set_supported(msg: &mut Message, tags: &[&str]) {
    msg.headers.set_tokens(HeaderName::Supported, tags);
}

/// `Require:` one option tag.
pub(crate) fn require(msg: &mut Message, tag: &str) {
    add(msg, HeaderName::Require, tag);
}

/// `Accept: application/sdp` (OPTIONS answers).
pub(crate) fn accept_sdp(msg: &mut Message) {
    add(msg, HeaderName::Accept, "application/sdp");
}

/// `Session-Expires:` as given (an offer of a session timer, refresher left to the peer).
pub(crate) fn session_expires(msg: &mut Message, se: u32) {
    add(msg, HeaderName::SessionExpires, &se.to_string());
}

/// `Session-Expires: <interval>;refresher=<r>`, replacing any Session-Expires.
pub(crate) fn set_session_expires(msg: &mut Message, interval: u32, refresher: Refresher) {
    msg.headers.remove(&HeaderName::SessionExpires);
    let se = SessionExpires::new(interval, Some(refresher));
    add(msg, HeaderName::SessionExpires, &se.to_string());
}

/// `Min-SE:` the shortest session interval Tollgate accepts.
pub(crate) fn min_se(msg: &mut Message, secs: u32) {
    add(msg, HeaderName::MinSe, &secs.to_string());
}

/// `RSeq:` of a reliable provisional response.
pub(crate) fn rseq(msg: &mut Message, rseq: u32) {
    add(msg, HeaderName::RSeq, &rseq.to_string());
}

/// `RAck: <rseq> <cseq> INVITE` of a PRACK.
pub(crate) fn rack(msg: &mut Message, rseq: u32, invite_cseq: u32) {
    add(
        msg,
        HeaderName::RAck,
        &format!("{rseq} {invite_cseq} INVITE"),
    );
}

/// `Retry-After:` seconds until a retry can succeed.
pub(crate) fn retry_after(msg: &mut Message, secs: u64) {
    add(msg, HeaderName::RetryAfter, &secs.to_string());
}

/// `Reason:` why a call ended or a request was cancelled (RFC 3326), as a header value.
pub(crate) fn reason(msg: &mut Message, value: &str) {
    add(msg, HeaderName::Reason, value);
}

/// `Warning: 399 tollgate "<why>"`: what Tollgate could not do, in words (double quotes in
/// `why` become single ones).
pub(crate) fn warning(msg: &mut Message, why: &str) {
    let text = why.replace('"', "'");
    add(
        msg,
        HeaderName::Warning,
        &format!("399 {WARN_AGENT} \"{text}\""),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response() -> Message {
        Message::parse(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\n\
              From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\n\
              CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        )
        .expect("parses")
    }

    fn text(m: &Message) -> String {
        String::from_utf8(m.encode()).expect("utf-8")
    }

    #[test]
    fn headers_go_before_content_length() {
        let mut m = response();
        allow(&mut m);
        supported(&mut m, &[TIMER, REL_100]);
        retry_after(&mut m, 30);
        let t = text(&m);
        let cl = t.find("Content-Length").expect("content-length");
        for h in [
            "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, PRACK, UPDATE, INFO\r\n",
            "Supported: timer, 100rel\r\n",
            "Retry-After: 30\r\n",
        ] {
            let at = t.find(h).unwrap_or_else(|| panic!("{h:?} in {t}"));
            assert!(at < cl, "{h:?} before Content-Length");
        }
    }

    #[test]
    fn warning_quotes_its_text() {
        let mut m = response();
        warning(&mut m, "the \"a=crypto\" line is bad");
        assert!(
            text(&m).contains("Warning: 399 tollgate \"the 'a=crypto' line is bad\"\r\n"),
            "{}",
            text(&m)
        );
    }

    #[test]
    fn no_supported_without_tags() {
        let mut m = response();
        supported(&mut m, &[]);
        assert!(!text(&m).contains("Supported"));
    }
}
