//! Two UAs built from the crate's pieces (framer, transaction layer, dialogs, builders) talk to
//! each other over an in-memory "TCP" byte pipe with a simulated clock: a basic call (RFC 3665
//! §3.1 shape: INVITE, 100, 180, 200, ACK, BYE, 200) and a cancelled call (INVITE, 180,
//! CANCEL, 200, 487, ACK).

use std::time::{Duration, Instant};

use tollgate_sip::transaction::cancel_for;
use tollgate_sip::{
    Action, Dialog, DialogSet, DialogState, Frame, Framer, Host, Message, Method, NameAddr,
    NewRequest, TransactionLayer, Transport, TransportFlow, TxId, Uri, Via,
};

/// One endpoint: a transaction layer plus the framer of its single connection.
struct Ua {
    layer: TransactionLayer,
    framer: Framer,
    host: &'static str,
    branch: u32,
}

const FLOW: TransportFlow = TransportFlow(1);

impl Ua {
    fn new(host: &'static str) -> Self {
        Ua {
            layer: TransactionLayer::default(),
            framer: Framer::default(),
            host,
            branch: 0,
        }
    }

    fn via(&mut self) -> Via {
        self.branch += 1;
        Via::new(
            Transport::Tcp,
            Host::parse(self.host).expect("host"),
            Some(5060),
            &Via::branch_with_cookie(&format!("{}-{}", self.host, self.branch)),
        )
    }

    fn contact(&self) -> NameAddr {
        NameAddr::new(Uri::parse(&format!("sip:ua@{}:5060;transport=tcp", self.host)).expect("uri"))
    }

    /// Drains actions: bytes to send go to `wire`, everything else is returned for the test.
    fn pump(&mut self, wire: &mut Vec<u8>) -> Vec<Action> {
        let mut rest = Vec::new();
        while let Some(a) = self.layer.poll_action() {
            match a {
                Action::Send { msg, flow, .. } => {
                    assert_eq!(flow, FLOW);
                    msg.encode_into(wire);
                }
                Action::SetTimer { .. } => {}
                other => rest.push(other),
            }
        }
        rest
    }

    /// Feeds bytes from the wire through the framer into the transaction layer.
    fn receive(&mut self, wire: &mut Vec<u8>, now: Instant) {
        self.framer.push(wire);
        wire.clear();
        while let Some(ev) = self.framer.next_frame() {
            match ev.expect("peer sends valid SIP") {
                Frame::Message(m) => self.layer.on_message(m, FLOW, now),
                Frame::Ping => {}
            }
        }
    }
}

fn invite(alice: &mut Ua) -> Message {
    let via = alice.via();
    let mut spec = NewRequest::new(
        Method::Invite,
        Uri::parse("sip:bob@bob.example.com").expect("uri"),
        via,
        NameAddr::new(Uri::parse("sip:alice@alice.example.com").expect("uri"))
            .with_param("tag", Some("a1")),
        NameAddr::new(Uri::parse("sip:bob@bob.example.com").expect("uri")),
        "call-1@alice.example.com",
        1,
    );
    spec.contact = Some(alice.contact());
    let mut m = Message::new_request(spec);
    m.set_body(Some(tollgate_sip::MediaType::sdp()), b"v=0\r\n".to_vec());
    m
}

fn only_request(actions: Vec<Action>) -> (TxId, Message, Option<TxId>) {
    match <[Action; 1]>::try_from(actions) {
        Ok(
            [
                Action::Request {
                    tx, msg, cancels, ..
                },
            ],
        ) => (tx, msg, cancels),
        other => panic!("expected one request, got {other:?}"),
    }
}

fn responses(actions: Vec<Action>) -> Vec<u16> {
    actions
        .into_iter()
        .filter_map(|a| match a {
            Action::Response { msg, .. } => msg.status(),
            _ => None,
        })
        .collect()
}

#[test]
fn basic_call() {
    let t0 = Instant::now();
    let (mut alice, mut bob) = (Ua::new("alice.example.com"), Ua::new("bob.example.com"));
    let (mut to_bob, mut to_alice) = (Vec::new(), Vec::new());

    // INVITE ->
    let inv = invite(&mut alice);
    let mut dialogs = DialogSet::new(inv.clone());
    let inv_tx = alice.layer.send_request(inv, FLOW, t0).expect("send");
    alice.pump(&mut to_bob);
    bob.receive(&mut to_bob, t0);
    let (b_tx, b_inv, _) = only_request(bob.pump(&mut to_alice));
    assert_eq!(b_inv.body, b"v=0\r\n");

    // <- 100 (automatic), 180, 200
    let mut ringing = Message::response_to(&b_inv, 180, None, Some("b1"));
    ringing.headers.set_contact(bob.contact());
    bob.layer.send_response(b_tx, ringing, t0).expect("180");
    let mut b_dialog = Dialog::from_uas(&b_inv, "b1", bob.contact(), false).expect("uas dialog");
    let mut ok = Message::response_to(&b_inv, 200, None, Some("b1"));
    ok.headers.set_contact(bob.contact());
    bob.layer.send_response(b_tx, ok, t0).expect("200");
    b_dialog.state = DialogState::Confirmed;
    bob.pump(&mut to_alice);
    alice.receive(&mut to_alice, t0 + Duration::from_millis(20));
    let acts = alice.pump(&mut to_bob);
    let mut codes = Vec::new();
    for a in &acts {
        if let Action::Response { tx, msg } = a {
            assert_eq!(*tx, inv_tx);
            codes.push(msg.status().expect("status"));
            dialogs.on_response(msg).expect("dialog");
        }
    }
    assert_eq!(codes, vec![100, 180, 200]);
    let a_dialog = dialogs.get_mut("b1").expect("dialog b1");
    assert_eq!(a_dialog.state, DialogState::Confirmed);

    // ACK -> (end to end, outside any transaction)
    let ack = a_dialog.ack_for_2xx(alice.via()).expect("ack");
    alice.layer.send_stateless(ack, FLOW);
    alice.pump(&mut to_bob);
    bob.receive(&mut to_bob, t0 + Duration::from_millis(30));
    let acts = bob.pump(&mut to_alice);
    assert!(matches!(&acts[..], [Action::Ack { msg, .. }] if b_dialog.matches_request(msg)));

    // <- BYE from Bob, 200 ->
    let bye = b_dialog.new_request(Method::Bye, bob.via());
    assert_eq!(
        bye.request_uri().map(ToString::to_string).as_deref(),
        Some("sip:ua@alice.example.com:5060;transport=tcp")
    );
    let bye_tx = bob
        .layer
        .send_request(bye, FLOW, t0 + Duration::from_secs(60))
        .expect("bye");
    bob.pump(&mut to_alice);
    alice.receive(&mut to_alice, t0 + Duration::from_secs(60));
    let (a_bye_tx, a_bye, _) = only_request(alice.pump(&mut to_bob));
    let a_dialog = dialogs.get_mut("b1").expect("dialog b1");
    a_dialog.on_request(&a_bye).expect("in-dialog BYE");
    assert_eq!(a_dialog.state, DialogState::Terminated);
    alice
        .layer
        .send_response(a_bye_tx, Message::response_to(&a_bye, 200, None, None), t0)
        .expect("200 BYE");
    alice.pump(&mut to_bob);
    bob.receive(&mut to_bob, t0 + Duration::from_secs(60));
    let acts = bob.pump(&mut to_alice);
    assert_eq!(responses(acts.clone()), vec![200]);
    assert!(acts.contains(&Action::Terminated { tx: bye_tx }));

    // Accepted INVITE transactions end after 64*T1.
    let later = t0 + Duration::from_secs(120);
    alice.layer.on_timeout(later);
    bob.layer.on_timeout(later);
    alice.pump(&mut to_bob);
    bob.pump(&mut to_alice);
    assert!(alice.layer.is_empty() && bob.layer.is_empty());
}

#[test]
fn cancelled_call() {
    let t0 = Instant::now();
    let (mut alice, mut bob) = (Ua::new("alice.example.com"), Ua::new("bob.example.com"));
    let (mut to_bob, mut to_alice) = (Vec::new(), Vec::new());
    let inv = invite(&mut alice);
    let inv_tx = alice
        .layer
        .send_request(inv.clone(), FLOW, t0)
        .expect("send");
    alice.pump(&mut to_bob);
    bob.receive(&mut to_bob, t0);
    let (b_tx, b_inv, _) = only_request(bob.pump(&mut to_alice));
    bob.layer
        .send_response(
            b_tx,
            Message::response_to(&b_inv, 180, None, Some("b1")),
            t0,
        )
        .expect("180");
    bob.pump(&mut to_alice);
    alice.receive(&mut to_alice, t0);
    assert_eq!(responses(alice.pump(&mut to_bob)), vec![100, 180]);

    // CANCEL -> matched to the INVITE server transaction.
    let cancel = cancel_for(&inv).expect("cancel");
    let c_tx = alice
        .layer
        .send_request(cancel, FLOW, t0)
        .expect("cancel tx");
    alice.pump(&mut to_bob);
    bob.receive(&mut to_bob, t0);
    let (bc_tx, b_cancel, cancels) = only_request(bob.pump(&mut to_alice));
    assert_eq!(cancels, Some(b_tx));
    bob.layer
        .send_response(
            bc_tx,
            Message::response_to(&b_cancel, 200, None, Some("b1")),
            t0,
        )
        .expect("200 CANCEL");
    bob.layer
        .send_response(
            b_tx,
            Message::response_to(&b_inv, 487, None, Some("b1")),
            t0,
        )
        .expect("487");
    bob.pump(&mut to_alice);

    // Alice: 200 for CANCEL, 487 for INVITE; her INVITE transaction ACKs the 487 itself.
    alice.receive(&mut to_alice, t0);
    let acts = alice.pump(&mut to_bob);
    assert!(acts.contains(&Action::Terminated { tx: c_tx }));
    assert!(acts.contains(&Action::Terminated { tx: inv_tx }));
    assert_eq!(responses(acts), vec![200, 487]);
    bob.receive(&mut to_bob, t0);
    let acts = bob.pump(&mut to_alice);
    assert!(acts.contains(&Action::Terminated { tx: b_tx }), "{acts:?}");
    assert!(alice.layer.is_empty() && bob.layer.is_empty());
}
