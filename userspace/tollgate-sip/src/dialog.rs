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
            if let Some(last) = self.remote_seq {
                if cseq.seq < last {
                    return Err(DialogError::OutOfOrder {
                        got: cseq.seq,
                        last,
                    });
                }
            }
            self.remote_seq = Some(cseq.seq);
        }
        if method.is_target_refresh() {
            if let Some(u) = contact_uri(req) {
                self.remote_target = u;
            }
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
        if is_refresh && code < 300 && code > 100 {
            if let Some(u) = contact_uri(resp) {
                self.remote_target = u;
            }
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
