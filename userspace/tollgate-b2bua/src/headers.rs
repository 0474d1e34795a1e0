//! Which headers cross the B2BUA from one leg to the other: Tollgate sits on the edge of the
//! enterprise's trust domain, so only headers with end-to-end meaning and no topology cross, on
//! an allowlist.
//!
//! * Both ways: Subject, Priority, Reason (Q.850 causes), Privacy, Accept, Accept-Language,
//!   Content-Disposition, Content-Language, Date, Expires, Timestamp, In-Reply-To,
//!   Retry-After, Session-ID, Resource-Priority, Diversion (redirecting numbers) and Identity
//!   (STIR/SHAKEN).
//! * Internal to gateway only: P-Asserted-Identity (the trusted side asserts the caller's
//!   identity to the carrier). From a gateway it is dropped: RFC 3325 §5, a gateway is outside
//!   the trust domain and must not be able to assert identities inside it.
//! * Never: the leg-specific headers each leg builds itself (Via, Route, Contact, CSeq, ...,
//!   see `HeaderName::is_leg_specific`), extension negotiation (Supported, Require,
//!   Unsupported: per leg), and anything that reveals the other side's topology or software:
//!   User-Agent, Server, Warning, Organization, Call-Info, History-Info, Record-Route,
//!   P-Preferred-Identity, caller preferences, unknown and `X-` headers.
//!
//! `sip.pass_headers` in the configuration adds names that cross both ways.

use tollgate_sip::{HeaderName, Message};

use crate::types::Side;

/// Unregistered (in `tollgate_sip::HeaderName`) names that cross both ways, lower case.
const BOTH_WAYS_OTHER: &[&str] = &[
    "priority",
    "privacy",
    "accept-language",
    "content-disposition",
    "content-language",
    "timestamp",
    "in-reply-to",
    "session-id",
    "resource-priority",
    "diversion",
];

/// Whether header `name`, received on leg `from`, is copied to the other leg. `extra`:
/// operator-configured names that cross both ways.
pub(crate) fn crosses(name: &HeaderName, from: Side, extra: &[String]) -> bool {
    if name.is_leg_specific() {
        return false;
    }
    let allowed = match name {
        HeaderName::Subject
        | HeaderName::Reason
        | HeaderName::Accept
        | HeaderName::Date
        | HeaderName::Expires
        | HeaderName::RetryAfter
        | HeaderName::Identity => true,
        HeaderName::PAssertedIdentity => from == Side::Int,
        HeaderName::Other(n) => BOTH_WAYS_OTHER.iter().any(|a| n.eq_ignore_ascii_case(a)),
        _ => false,
    };
    allowed || extra.iter().any(|e| name.as_str().eq_ignore_ascii_case(e))
}

/// Copies the headers of `from` (received on leg `side`) that cross to `to`, keeping `to`'s
/// Content-Length last.
pub(crate) fn copy_headers(from: &Message, side: Side, to: &mut Message, extra: &[String]) {
    let cl = to.headers.get(&HeaderName::ContentLength).cloned();
    to.headers.remove(&HeaderName::ContentLength);
    for h in from.headers.iter() {
        if crosses(h.name(), side, extra) {
            to.headers.push(h.clone());
        }
    }
    if let Some(cl) = cl {
        to.headers.push(cl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, from: Side) -> bool {
        crosses(
            &HeaderName::parse(name),
            from,
            &["X-Carrier-Ref".to_owned()],
        )
    }

    #[test]
    fn allowlist() {
        for side in [Side::Ext, Side::Int] {
            for n in [
                "Subject",
                "s",
                "Reason",
                "Privacy",
                "PRIVACY",
                "Diversion",
                "Session-ID",
                "Retry-After",
                "x-carrier-ref",
            ] {
                assert!(c(n, side), "{n} from {side:?}");
            }
            for n in [
                "User-Agent",
                "Server",
                "Warning",
                "History-Info",
                "Organization",
                "Call-Info",
                "X-Internal-Host",
                "P-Preferred-Identity",
                "Record-Route",
                "Via",
                "Contact",
                "Supported",
                "Require",
                "Unsupported",
                "Content-Type",
                "Accept-Contact",
            ] {
                assert!(!c(n, side), "{n} from {side:?}");
            }
        }
        assert!(c("P-Asserted-Identity", Side::Int));
        assert!(
            !c("P-Asserted-Identity", Side::Ext),
            "a gateway cannot assert identities inside the trust domain"
        );
    }
}
