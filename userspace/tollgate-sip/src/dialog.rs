//! Dialogs (RFC 3261 §12): identity, local/remote CSeq, route set, remote target refresh,
//! early dialogs created by forked provisional responses ([`DialogSet`]), and in-dialog
//! requests (BYE, re-INVITE, UPDATE, ACK for 2xx, PRACK, INFO, OPTIONS…).
//!
//! The caller supplies every Via (with a fresh branch): randomness stays outside.

use crate::header::{Header, HeaderName};
use crate::message::{Message, StartLine};
use crate::types::{CSeq, Method, NameAddr, Via};
use crate::uri::Uri;

/// Dialog identifier (§12): Call-ID, local tag, remote tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
}

impl DialogId {
    /// The id of the dialog a received request belongs to (we are the To side).
    pub fn for_incoming_request(req: &Message) -> Option<DialogId> {
        Some(DialogId {
            call_id: req.call_id()?.to_owned(),
            local_tag: req.to()?.tag()?.to_owned(),
            remote_tag: req.from()?.tag().unwrap_or("").to_owned(),
        })
    }

    /// The id of the dialog a received response belongs to (we are the From side).
    pub fn for_incoming_response(resp: &Message) -> Option<DialogId> {
        Some(DialogId {
            call_id: resp.call_id()?.to_owned(),
            local_tag: resp.from()?.tag()?.to_owned(),
            remote_tag: resp.to()?.tag()?.to_owned(),
        })
    }
}

/// Dialog state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// Created by a provisional response with a To tag.
    Early,
    /// Created or confirmed by a 2xx.
    Confirmed,
    /// Ended (BYE, or the early dialog's INVITE failed).
    Terminated,
}

/// Why a dialog operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    /// The response or request lacks a needed tag.
    #[error("missing {0} tag")]
    MissingTag(&'static str),
    /// A needed header is missing.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// The response cannot create a dialog (100, or a final non-2xx).
    #[error("status {0} does not create a dialog")]
    NotDialogCreating(u16),
    /// A request's CSeq is lower than the last one seen (§12.2.2: answer 500).
    #[error("CSeq {got} is lower than the remote sequence number {last}")]
    OutOfOrder {
        /// CSeq received.
        got: u32,
        /// Remote sequence number so far.
        last: u32,
    },
    /// The message does not belong to this dialog.
    #[error("message does not match the dialog")]
    Mismatch,
}

impl DialogError {
    /// The response a UAS sends for this error on a received request, if any.
    pub fn response(&self) -> Option<(u16, &'static str)> {
        match self {
            DialogError::OutOfOrder { .. } => {
                Some((500, "Server Internal Error (CSeq out of order)"))
            }
            DialogError::Mismatch => Some((481, "Call/Transaction Does Not Exist")),
            DialogError::MissingHeader(_) | DialogError::MissingTag(_) => {
                Some((400, "Bad Request"))
            }
            DialogError::NotDialogCreating(_) => None,
        }
    }
}

/// One dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    /// Identity.
    pub id: DialogId,
    /// State.
    pub state: DialogState,
    /// Last CSeq number we used (`None` before our first request as UAS).
    pub local_seq: Option<u32>,
    /// Last CSeq number received from the peer.
    pub remote_seq: Option<u32>,
    /// Our address (From on our requests), with our tag.
    pub local_uri: NameAddr,
    /// The peer's address (To on our requests), with its tag.
    pub remote_uri: NameAddr,
    /// Where our requests go (the peer's Contact).
    pub remote_target: Uri,
    /// Route set, in the order our requests list it.
    pub route_set: Vec<NameAddr>,
    /// Our Contact.
    pub local_contact: NameAddr,
    /// The dialog was created over SIPS.
    pub secure: bool,
    /// CSeq of the last INVITE we sent (for the ACK of its 2xx).
    pub last_invite_seq: Option<u32>,
}

fn contact_uri(m: &Message) -> Option<Uri> {
    m.headers.contacts().next().map(|c| c.uri.clone())
}

impl Dialog {
    /// UAC side: a dialog from our dialog-creating request and a 101-299 response with a To
    /// tag (§12.1.2). An 18x without a Contact gets the Request-URI as provisional target.
    pub fn from_uac(req: &Message, resp: &Message) -> Result<Dialog, DialogError> {
        let code = resp.status().ok_or(DialogError::NotDialogCreating(0))?;
        if !(101..300).contains(&code) {
            return Err(DialogError::NotDialogCreating(code));
        }
        let from = req.from().ok_or(DialogError::MissingHeader("From"))?;
        let to = resp.to().ok_or(DialogError::MissingHeader("To"))?;
        let local_tag = from.tag().ok_or(DialogError::MissingTag("From"))?;
        let remote_tag = to.tag().ok_or(DialogError::MissingTag("To"))?;
        let call_id = req.call_id().ok_or(DialogError::MissingHeader("Call-ID"))?;
        let remote_target = match contact_uri(resp) {
            Some(u) => u,
            None if code < 200 => req
                .request_uri()
                .cloned()
                .ok_or(DialogError::MissingHeader("Contact"))?,
            None => return Err(DialogError::MissingHeader("Contact")),
        };
        let mut route_set: Vec<NameAddr> = resp.headers.record_routes().cloned().collect();
        route_set.reverse();
        let seq = req.cseq().ok_or(DialogError::MissingHeader("CSeq"))?.seq;
        let secure = matches!(req.request_uri(), Some(Uri::Sip(u)) if u.secure);
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.to_owned(),
                local_tag: local_tag.to_owned(),
                remote_tag: remote_tag.to_owned(),
            },
            state: if code < 200 {
                DialogState::Early
            } else {
                DialogState::Confirmed
            },
            local_seq: Some(seq),
            remote_seq: None,
            local_uri: from.clone(),
            remote_uri: to.clone(),
            remote_target,
            route_set,
            local_contact: req
                .headers
                .contacts()
                .next()
                .cloned()
                .ok_or(DialogError::MissingHeader("Contact"))?,
            secure,
            last_invite_seq: (req.method() == Some(&Method::Invite)).then_some(seq),
        })
    }

    /// UAS side: a dialog from a received dialog-creating request, with the tag we put in To
    /// and our Contact (§12.1.1). `confirmed` is whether our response is a 2xx.
    pub fn from_uas(
        req: &Message,
        local_tag: &str,
        local_contact: NameAddr,
        confirmed: bool,
    ) -> Result<Dialog, DialogError> {
        let from = req.from().ok_or(DialogError::MissingHeader("From"))?;
        let to = req.to().ok_or(DialogError::MissingHeader("To"))?;
        let call_id = req.call_id().ok_or(DialogError::MissingHeader("Call-ID"))?;
        let remote_tag = from.tag().unwrap_or("");
        let remote_target = contact_uri(req).ok_or(DialogError::MissingHeader("Contact"))?;
        let mut local_uri = to.clone();
        local_uri.set_tag(local_tag);
        let secure = matches!(req.request_uri(), Some(Uri::Sip(u)) if u.secure);
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.to_owned(),
                local_tag: local_tag.to_owned(),
                remote_tag: remote_tag.to_owned(),
            },
            state: if confirmed {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            local_seq: None,
            remote_seq: Some(req.cseq().ok_or(DialogError::MissingHeader("CSeq"))?.seq),
            local_uri,
            remote_uri: from.clone(),
            remote_target,
            route_set: req.headers.record_routes().cloned().collect(),
            local_contact,
            secure,
            last_invite_seq: None,
        })
    }

    /// Whether a received request belongs to this dialog.
    pub fn matches_request(&self, req: &Message) -> bool {
        DialogId::for_incoming_request(req).as_ref() == Some(&self.id)
    }

    /// Whether a received response belongs to this dialog.
    pub fn matches_response(&self, resp: &Message) -> bool {
        DialogId::for_incoming_response(resp).as_ref() == Some(&self.id)
    }

    /// Processes a received in-dialog request (§12.2.2): checks and records the remote CSeq
    /// (ACK and CANCEL reuse their INVITE's number and are not checked) and applies a target
    /// refresh (re-INVITE, UPDATE, …) carrying a Contact. On error answer
    /// [`DialogError::response`].
    pub fn on_request(&mut self, req: &Message) -> Result<(), DialogError> {
        if !self.matches_request(req) {
            return Err(DialogError::Mismatch);
        }
        let cseq = req.cseq().ok_or(DialogError::MissingHeader("CSeq"))?;
        let method = req.method().ok_or(DialogError::Mismatch)?;
        if !matches!(method, Method::Ack | Method::Cancel) {
            if let Some(last) = self.remote_seq
                && cseq.seq < last
            {
                return Err(DialogError::OutOfOrder {
                    got: cseq.seq,
                    last,
                });
            }
            self.remote_seq = Some(cseq.seq);
        }
        if method.is_target_refresh()
            && let Some(u) = contact_uri(req)
        {
            self.remote_target = u;
        }
        if *method == Method::Bye {
            self.state = DialogState::Terminated;
        }
        Ok(())
    }

    /// Processes a response to a request we sent in (or to create) this dialog: a 2xx to the
    /// initial INVITE confirms the dialog and recomputes the route set (§13.2.2.4); a 1xx/2xx
    /// to a target-refresh request with a Contact updates the remote target; a final non-2xx
    /// to the INVITE of an early dialog terminates it.
    pub fn on_response(&mut self, resp: &Message) -> Result<(), DialogError> {
        let code = resp.status().ok_or(DialogError::Mismatch)?;
        let cseq = resp.cseq().ok_or(DialogError::MissingHeader("CSeq"))?;
        if !self.matches_response(resp) {
            return Err(DialogError::Mismatch);
        }
        let is_refresh = cseq.method.is_target_refresh();
        if self.state == DialogState::Early && cseq.method == Method::Invite {
            if (200..300).contains(&code) {
                self.state = DialogState::Confirmed;
                let mut rr: Vec<NameAddr> = resp.headers.record_routes().cloned().collect();
                rr.reverse();
                self.route_set = rr;
            } else if code >= 300 {
                self.state = DialogState::Terminated;
            }
        }
        if is_refresh
            && code < 300
            && code > 100
            && let Some(u) = contact_uri(resp)
        {
            self.remote_target = u;
        }
        Ok(())
    }

    /// Request-URI and Route headers per §12.2.1.1 (loose routing, strict-router fallback).
    fn target_and_routes(&self) -> (Uri, Vec<NameAddr>) {
        match self.route_set.first() {
            None => (self.remote_target.clone(), Vec::new()),
            Some(first) if first.uri.as_sip().is_none_or(|u| u.is_loose_router()) => {
                (self.remote_target.clone(), self.route_set.clone())
            }
            Some(first) => {
                let mut ruri = first.uri.clone();
                if let Uri::Sip(u) = &mut ruri {
                    // Parameters not allowed in a Request-URI (§19.1.1 table): headers.
                    u.headers.clear();
                }
                let mut routes: Vec<NameAddr> = self.route_set.iter().skip(1).cloned().collect();
                routes.push(NameAddr::new(self.remote_target.clone()));
                (ruri, routes)
            }
        }
    }

    /// Builds an in-dialog request (BYE, INVITE, UPDATE, INFO, OPTIONS, PRACK, …). The local
    /// CSeq is incremented (ACK: use [`Dialog::ack_for_2xx`]; CANCEL: see
    /// [`crate::transaction::cancel_for`]). Target-refresh methods carry our Contact.
    pub fn new_request(&mut self, method: Method, via: Via) -> Message {
        let seq = self.local_seq.map_or(1, |s| s.wrapping_add(1));
        self.local_seq = Some(seq);
        if method == Method::Invite {
            self.last_invite_seq = Some(seq);
        }
        let with_contact = method.is_target_refresh();
        self.build(method, seq, via, with_contact)
    }

    fn build(&self, method: Method, seq: u32, via: Via, with_contact: bool) -> Message {
        let (ruri, routes) = self.target_and_routes();
        let mut m = Message::new(StartLine::Request {
            method: method.clone(),
            uri: ruri,
        });
        m.headers.push_via_top(via);
        m.headers.set_max_forwards(70);
        m.headers.set_routes(&routes);
        m.headers.set_from(self.local_uri.clone());
        m.headers.set_to(self.remote_uri.clone());
        m.headers.set_call_id(&self.id.call_id);
        m.headers.set_cseq(CSeq::new(seq, method));
        if with_contact {
            m.headers.set_contact(self.local_contact.clone());
        }
        m.headers.set_content_length(0);
        m
    }

    /// The ACK for a 2xx to our last INVITE (§13.2.2.4): same CSeq number, method ACK, a new
    /// Via branch. `None` if we never sent an INVITE in this dialog.
    pub fn ack_for_2xx(&self, via: Via) -> Option<Message> {
        let seq = self.last_invite_seq?;
        Some(self.build(Method::Ack, seq, via, false))
    }

    /// PRACK for a reliable provisional response (RFC 3262 §7.2): `RAck: rseq cseq method`.
    /// `None` when the response has no RSeq or CSeq.
    pub fn prack(&mut self, resp: &Message, via: Via) -> Option<Message> {
        let rseq = resp.headers.rseq()?;
        let cseq = resp.cseq()?.clone();
        let mut m = self.new_request(Method::Prack, via);
        let rack = format!("{rseq} {} {}", cseq.seq, cseq.method);
        let h = Header::new(HeaderName::RAck, rack).ok()?;
        let at = m.headers.len().saturating_sub(1);
        m.headers.insert(at, h);
        Some(m)
    }
}

/// The dialogs created by one dialog-creating request we sent: forking may produce several
/// early dialogs (one per To tag); the first 2xx confirms one of them.
#[derive(Debug, Clone)]
pub struct DialogSet {
    request: Message,
    dialogs: Vec<Dialog>,
}

impl DialogSet {
    /// Tracks dialogs for our dialog-creating `request` (INVITE).
    pub fn new(request: Message) -> Self {
        DialogSet {
            request,
            dialogs: Vec::new(),
        }
    }

    /// The request.
    pub fn request(&self) -> &Message {
        &self.request
    }

    /// All dialogs (early, confirmed, terminated).
    pub fn dialogs(&self) -> &[Dialog] {
        &self.dialogs
    }

    /// The dialog with this remote tag.
    pub fn get_mut(&mut self, remote_tag: &str) -> Option<&mut Dialog> {
        self.dialogs
            .iter_mut()
            .find(|d| d.id.remote_tag == remote_tag)
    }

    /// Processes a response to the request: 101-299 with a To tag creates or updates the
    /// dialog for that tag (returned); a final non-2xx terminates every early dialog (returns
    /// `None`).
    pub fn on_response(&mut self, resp: &Message) -> Result<Option<&mut Dialog>, DialogError> {
        let code = resp.status().ok_or(DialogError::Mismatch)?;
        if code >= 300 {
            for d in &mut self.dialogs {
                if d.state == DialogState::Early {
                    d.state = DialogState::Terminated;
                }
            }
            return Ok(None);
        }
        let Some(tag) = resp.to().and_then(|t| t.tag()).map(str::to_owned) else {
            return Ok(None);
        };
        if code == 100 {
            return Ok(None);
        }
        match self.dialogs.iter().position(|d| d.id.remote_tag == tag) {
            Some(i) => {
                let d = self.dialogs.get_mut(i).ok_or(DialogError::Mismatch)?;
                d.on_response(resp)?;
                Ok(Some(d))
            }
            None => {
                let d = Dialog::from_uac(&self.request, resp)?;
                self.dialogs.push(d);
                Ok(self.dialogs.last_mut())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Transport;
    use crate::uri::Host;

    fn via(b: &str) -> Via {
        Via::new(
            Transport::Tcp,
            Host::parse("b2b.example.com").unwrap(),
            Some(5060),
            b,
        )
    }

    fn invite() -> Message {
        let raw = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP b2b.example.com:5060;branch=z9hG4bKinv\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@atlanta.example.com>;tag=ours\r\n\
To: <sip:bob@biloxi.example.com>\r\n\
Call-ID: call-1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:b2b@b2b.example.com:5060;transport=tcp>\r\n\
Content-Length: 0\r\n\r\n";
        Message::parse(raw.as_bytes()).unwrap()
    }

    fn resp(req: &Message, code: u16, tag: &str, contact: &str, rr: &[&str]) -> Message {
        let mut r = Message::response_to(req, code, None, Some(tag));
        for x in rr {
            r.headers.append(HeaderName::RecordRoute, x).unwrap();
        }
        if !contact.is_empty() {
            r.headers.append(HeaderName::Contact, contact).unwrap();
        }
        Message::parse(&r.encode()).unwrap()
    }

    #[test]
    fn forking_early_dialogs_then_confirm() {
        let inv = invite();
        let mut set = DialogSet::new(inv.clone());
        let rr = ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"];
        let d = set
            .on_response(&resp(&inv, 180, "t1", "<sip:bob@10.0.0.1>", &rr))
            .unwrap()
            .unwrap();
        assert_eq!(d.state, DialogState::Early);
        assert_eq!(d.route_set[0].to_string(), "<sip:p2.example.com;lr>");
        set.on_response(&resp(&inv, 183, "t2", "<sip:bob@10.0.0.2>", &[]))
            .unwrap();
        assert!(
            set.on_response(&resp(&inv, 100, "", "", &[]))
                .unwrap()
                .is_none()
        );
        assert_eq!(set.dialogs().len(), 2);
        // A second 18x on the same fork updates the same early dialog (target refresh).
        set.on_response(&resp(&inv, 180, "t1", "<sip:bob@10.0.0.9>", &rr))
            .unwrap();
        assert_eq!(set.dialogs().len(), 2);
        assert_eq!(
            set.get_mut("t1").unwrap().remote_target.to_string(),
            "sip:bob@10.0.0.9"
        );
        let d = set
            .on_response(&resp(&inv, 200, "t2", "<sip:bob@10.0.0.2>", &rr))
            .unwrap()
            .unwrap();
        assert_eq!(d.state, DialogState::Confirmed);
        assert_eq!(d.id.remote_tag, "t2");
        assert_eq!(d.route_set.len(), 2, "route set recomputed from the 2xx");
        let ack = d.ack_for_2xx(via("z9hG4bKack")).unwrap();
        let enc = String::from_utf8(ack.encode()).unwrap();
        assert_eq!(
            enc,
            "ACK sip:bob@10.0.0.2 SIP/2.0\r\n\
Via: SIP/2.0/TCP b2b.example.com:5060;branch=z9hG4bKack\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p2.example.com;lr>\r\n\
Route: <sip:p1.example.com;lr>\r\n\
From: <sip:alice@atlanta.example.com>;tag=ours\r\n\
To: <sip:bob@biloxi.example.com>;tag=t2\r\n\
Call-ID: call-1\r\n\
CSeq: 1 ACK\r\n\
Content-Length: 0\r\n\r\n"
        );
        // A final error would end the other early dialog.
        set.on_response(&resp(&inv, 487, "t1", "", &[])).unwrap();
        assert_eq!(set.get_mut("t1").unwrap().state, DialogState::Terminated);
        assert_eq!(set.get_mut("t2").unwrap().state, DialogState::Confirmed);
    }

    #[test]
    fn in_dialog_requests_and_cseq() {
        let inv = invite();
        let ok = resp(&inv, 200, "peer", "<sip:bob@10.0.0.2;transport=tcp>", &[]);
        let mut d = Dialog::from_uac(&inv, &ok).unwrap();
        let reinv = d.new_request(Method::Invite, via("z9hG4bKre"));
        assert_eq!(reinv.cseq(), Some(&CSeq::new(2, Method::Invite)));
        assert_eq!(
            reinv.request_uri().unwrap().to_string(),
            "sip:bob@10.0.0.2;transport=tcp"
        );
        assert!(reinv.headers.contacts().next().is_some());
        // 2xx to the re-INVITE refreshes the target.
        let ok2 = resp(&reinv, 200, "peer", "<sip:bob@10.0.0.3>", &[]);
        d.on_response(&ok2).unwrap();
        assert_eq!(d.remote_target.to_string(), "sip:bob@10.0.0.3");
        assert_eq!(
            d.ack_for_2xx(via("z9hG4bKa2")).unwrap().cseq().unwrap().seq,
            2
        );
        for (m, seq) in [
            (Method::Update, 3),
            (Method::Info, 4),
            (Method::Options, 5),
            (Method::Bye, 6),
        ] {
            let r = d.new_request(m.clone(), via("z9hG4bKx"));
            assert_eq!(r.cseq(), Some(&CSeq::new(seq, m.clone())));
            assert_eq!(r.headers.contacts().next().is_some(), m == Method::Update);
            assert_eq!(r.to().unwrap().tag(), Some("peer"));
            assert_eq!(r.from().unwrap().tag(), Some("ours"));
        }
        assert!(d.matches_response(&ok2));
    }

    #[test]
    fn strict_route_set() {
        let inv = invite();
        let ok = resp(
            &inv,
            200,
            "peer",
            "<sip:bob@10.0.0.2>",
            &["<sip:strict.example.com>"],
        );
        let mut d = Dialog::from_uac(&inv, &ok).unwrap();
        let bye = d.new_request(Method::Bye, via("z9hG4bKb"));
        assert_eq!(
            bye.request_uri().unwrap().to_string(),
            "sip:strict.example.com"
        );
        let routes: Vec<String> = bye.headers.routes().map(ToString::to_string).collect();
        assert_eq!(routes, vec!["<sip:bob@10.0.0.2>"]);
    }

    #[test]
    fn uas_side() {
        let mut inv = invite();
        inv.headers
            .append(HeaderName::RecordRoute, "<sip:p1.example.com;lr>")
            .unwrap();
        let inv = Message::parse(&inv.encode()).unwrap();
        let contact = NameAddr::new(Uri::parse("sip:b2b@192.0.2.1").unwrap());
        let mut d = Dialog::from_uas(&inv, "mine", contact, true).unwrap();
        assert_eq!(d.id.remote_tag, "ours");
        assert_eq!(d.remote_seq, Some(1));
        assert_eq!(d.route_set.len(), 1);
        let bye_from_us = d.new_request(Method::Bye, via("z9hG4bKu"));
        assert_eq!(bye_from_us.cseq().unwrap().seq, 1);
        assert_eq!(bye_from_us.to().unwrap().tag(), Some("ours"));
        assert_eq!(bye_from_us.from().unwrap().tag(), Some("mine"));
        assert_eq!(bye_from_us.headers.routes().count(), 1);

        // Requests from the peer: CSeq must not go backwards.
        let mk = |method: &str, seq: u32, contact: &str| {
            let raw = format!(
                "{method} sip:b2b@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK{seq}\r\nFrom: <sip:alice@atlanta.example.com>;tag=ours\r\nTo: <sip:bob@biloxi.example.com>;tag=mine\r\nCall-ID: call-1\r\nCSeq: {seq} {method}\r\n{contact}Content-Length: 0\r\n\r\n"
            );
            Message::parse(raw.as_bytes()).unwrap()
        };
        d.on_request(&mk("UPDATE", 5, "Contact: <sip:alice@10.9.9.9>\r\n"))
            .unwrap();
        assert_eq!(d.remote_target.to_string(), "sip:alice@10.9.9.9");
        let e = d.on_request(&mk("INFO", 4, "")).unwrap_err();
        assert_eq!(e.response().unwrap().0, 500);
        d.on_request(&mk("ACK", 1, "")).unwrap();
        let mut other = mk("BYE", 9, "");
        other.headers.set_call_id("other");
        assert_eq!(d.on_request(&other), Err(DialogError::Mismatch));
        d.on_request(&mk("BYE", 6, "")).unwrap();
        assert_eq!(d.state, DialogState::Terminated);
    }

    #[test]
    fn prack_carries_rack() {
        let inv = invite();
        let mut r = resp(&inv, 183, "peer", "<sip:bob@10.0.0.2>", &[]);
        r.headers.append(HeaderName::RSeq, "988789").unwrap();
        r.headers.append(HeaderName::Require, "100rel").unwrap();
        let mut d = Dialog::from_uac(&inv, &r).unwrap();
        assert_eq!(d.state, DialogState::Early);
        let prack = d.prack(&r, via("z9hG4bKpr")).unwrap();
        assert_eq!(prack.method(), Some(&Method::Prack));
        assert_eq!(
            prack.headers.get_value(&HeaderName::RAck),
            Some("988789 1 INVITE")
        );
        assert_eq!(prack.cseq().unwrap().seq, 2);
        Message::parse(&prack.encode()).unwrap();
    }

    #[test]
    fn dialog_creation_errors() {
        let inv = invite();
        let no_tag = Message::response_to(&inv, 180, None, None);
        assert_eq!(
            Dialog::from_uac(&inv, &no_tag),
            Err(DialogError::MissingTag("To"))
        );
        let e = Dialog::from_uac(&inv, &resp(&inv, 486, "x", "", &[])).unwrap_err();
        assert_eq!(e, DialogError::NotDialogCreating(486));
        let e = Dialog::from_uac(&inv, &resp(&inv, 200, "x", "", &[])).unwrap_err();
        assert_eq!(e, DialogError::MissingHeader("Contact"));
    }
}
