//! Message builders for a UA/B2BUA: responses (RFC 3261 §8.2.6), new out-of-dialog requests
//! (§8.1.1), and deriving the other leg's request from a received one.
//!
//! Randomness is the caller's: tags, Call-IDs and branches are passed in (sans-IO).

use crate::header::{Header, HeaderName};
use crate::message::{Message, StartLine};
use crate::types::{CSeq, Method, NameAddr, Via};
use crate::uri::Uri;

/// The standard reason phrase for a status code.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match code / 100 {
            1 => "Session Progress",
            2 => "OK",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

impl Message {
    /// Builds a response to `req` (RFC 3261 §8.2.6.2): Via (all values, in order), From,
    /// Call-ID, CSeq copied; To copied with `to_tag` added when it has none and the code is not
    /// 100; Record-Route copied for 101-299 responses to dialog-creating requests (§12.1.1);
    /// Content-Length 0. `reason` `None` uses the standard phrase.
    pub fn response_to(
        req: &Message,
        code: u16,
        reason: Option<&str>,
        to_tag: Option<&str>,
    ) -> Message {
        let mut resp = Message::new(StartLine::Response {
            code,
            reason: reason.unwrap_or_else(|| reason_phrase(code)).to_owned(),
        });
        let dialog_creating = matches!(
            req.method(),
            Some(Method::Invite | Method::Subscribe | Method::Refer)
        );
        for h in req.headers.iter() {
            match h.name() {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                    resp.headers.push(h.clone());
                }
                HeaderName::To => {
                    let mut h = h.clone();
                    if let (Some(tag), crate::header::Typed::Addr(a)) = (to_tag, h.typed_value())
                        && code != 100
                        && a.tag().is_none()
                    {
                        let mut a = a.clone();
                        a.set_tag(tag);
                        h = Header::typed(HeaderName::To, crate::header::Typed::Addr(a));
                    }
                    resp.headers.push(h);
                }
                HeaderName::RecordRoute if dialog_creating && (101..300).contains(&code) => {
                    resp.headers.push(h.clone());
                }
                _ => {}
            }
        }
        resp.headers.set_content_length(0);
        resp
    }

    /// A new request outside any dialog (§8.1.1) with the mandatory headers in the usual order.
    pub fn new_request(spec: NewRequest) -> Message {
        let mut m = Message::new(StartLine::Request {
            method: spec.method.clone(),
            uri: spec.uri,
        });
        m.headers.push_via_top(spec.via);
        m.headers.set_max_forwards(spec.max_forwards);
        m.headers.set_routes(&spec.routes);
        m.headers.set_from(spec.from);
        m.headers.set_to(spec.to);
        m.headers.set_call_id(&spec.call_id);
        m.headers.set_cseq(CSeq::new(spec.cseq, spec.method));
        if let Some(c) = spec.contact {
            m.headers.set_contact(c);
        }
        m.headers.set_content_length(0);
        m
    }

    /// Derives the other leg's request from a received one (B2BUA): new start line, Via,
    /// From/To (with the new leg's tags), Call-ID, CSeq, Contact, Route and Max-Forwards; every
    /// other header copied in order unless [`HeaderName::is_leg_specific`] or `drop` says
    /// otherwise; body copied. Max-Forwards is the received value minus one (70 if absent).
    pub fn derive_request(&self, spec: NewRequest, drop: impl Fn(&HeaderName) -> bool) -> Message {
        let mf = self
            .headers
            .max_forwards()
            .map_or(70, |n| n.saturating_sub(1))
            .min(spec.max_forwards);
        let mut spec = spec;
        spec.max_forwards = mf;
        let mut m = Message::new_request(spec);
        let cl = m.headers.get(&HeaderName::ContentLength).cloned();
        m.headers.remove(&HeaderName::ContentLength);
        for h in self.headers.iter() {
            if !h.name().is_leg_specific() && !drop(h.name()) {
                m.headers.push(h.clone());
            }
        }
        if let Some(cl) = cl {
            m.headers.push(cl);
        }
        m.body = self.body.clone();
        m.headers
            .set_content_length(u32::try_from(m.body.len()).unwrap_or(u32::MAX));
        m
    }
}

/// Inputs for [`Message::new_request`] / [`Message::derive_request`].
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// Method.
    pub method: Method,
    /// Request-URI.
    pub uri: Uri,
    /// Our Via (with a fresh branch).
    pub via: Via,
    /// From, with our tag.
    pub from: NameAddr,
    /// To (no tag for a dialog-creating request).
    pub to: NameAddr,
    /// Call-ID.
    pub call_id: String,
    /// CSeq number.
    pub cseq: u32,
    /// Contact (required for INVITE, SUBSCRIBE, REFER…).
    pub contact: Option<NameAddr>,
    /// Route set to put in Route headers (pre-loaded route), in order.
    pub routes: Vec<NameAddr>,
    /// Max-Forwards (70 recommended; derive_request caps the received value minus one by it).
    pub max_forwards: u32,
}

impl NewRequest {
    /// A spec with Max-Forwards 70, no Contact, no routes.
    pub fn new(
        method: Method,
        uri: Uri,
        via: Via,
        from: NameAddr,
        to: NameAddr,
        call_id: &str,
        cseq: u32,
    ) -> Self {
        NewRequest {
            method,
            uri,
            via,
            from,
            to,
            call_id: call_id.to_owned(),
            cseq,
            contact: None,
            routes: Vec::new(),
            max_forwards: 70,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Transport;
    use crate::uri::Host;

    fn invite() -> Message {
        let raw = "INVITE sip:+15551234@gw.example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKgw1\r\n\
Max-Forwards: 69\r\n\
Record-Route: <sip:proxy.example.com;lr>\r\n\
From: <sip:+15550001@gw.example.com>;tag=gwtag\r\n\
To: <sip:+15551234@gw.example.com>\r\n\
Call-ID: gwcall1\r\n\
CSeq: 10 INVITE\r\n\
Contact: <sip:gw@192.0.2.10:5060;transport=tcp>\r\n\
Supported: timer, 100rel\r\n\
Session-Expires: 1800\r\n\
Authorization: Digest x\r\n\
X-Trunk-Info: keep me\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n";
        Message::parse(raw.as_bytes()).unwrap()
    }

    #[test]
    fn response_copies_per_8_2_6() {
        let req = invite();
        let r = Message::response_to(&req, 180, None, Some("b2b1"));
        let enc = String::from_utf8(r.encode()).unwrap();
        assert_eq!(
            enc,
            "SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKgw1\r\n\
Record-Route: <sip:proxy.example.com;lr>\r\n\
From: <sip:+15550001@gw.example.com>;tag=gwtag\r\n\
To: <sip:+15551234@gw.example.com>;tag=b2b1\r\n\
Call-ID: gwcall1\r\n\
CSeq: 10 INVITE\r\n\
Content-Length: 0\r\n\r\n"
        );
        let t = Message::response_to(&req, 100, None, Some("b2b1"));
        assert_eq!(t.to().unwrap().tag(), None);
        assert!(t.headers.record_routes().next().is_none());
    }

    #[test]
    fn derive_for_other_leg() {
        let req = invite();
        let via = Via::new(
            Transport::Tls,
            Host::parse("10.0.0.5").unwrap(),
            Some(5061),
            "z9hG4bKleg2",
        );
        let uri = Uri::parse("sip:+15551234@internal.example.com;transport=tls").unwrap();
        let mut spec = NewRequest::new(
            Method::Invite,
            uri.clone(),
            via,
            NameAddr::new(Uri::parse("sip:+15550001@tollgate.example.com").unwrap())
                .with_param("tag", Some("t2")),
            NameAddr::new(uri),
            "leg2call",
            1,
        );
        spec.contact = Some(NameAddr::new(
            Uri::parse("sip:tollgate@10.0.0.5:5061;transport=tls").unwrap(),
        ));
        let out = req.derive_request(spec, |n| *n == HeaderName::SessionExpires);
        let enc = String::from_utf8(out.encode()).unwrap();
        assert_eq!(
            enc,
            "INVITE sip:+15551234@internal.example.com;transport=tls SIP/2.0\r\n\
Via: SIP/2.0/TLS 10.0.0.5:5061;branch=z9hG4bKleg2\r\n\
Max-Forwards: 68\r\n\
From: <sip:+15550001@tollgate.example.com>;tag=t2\r\n\
To: <sip:+15551234@internal.example.com;transport=tls>\r\n\
Call-ID: leg2call\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:tollgate@10.0.0.5:5061;transport=tls>\r\n\
Supported: timer, 100rel\r\n\
X-Trunk-Info: keep me\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n"
        );
        Message::parse(&out.encode()).unwrap();
    }
}
