//! Transaction state machines and matching, driven by a simulated clock.

use std::time::{Duration, Instant};

use super::*;
use crate::types::Method;

fn invite(branch: &str) -> Message {
    let raw = format!(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP pc33.atlanta.example.com;branch={branch}\r\n\
Max-Forwards: 70\r\n\
Route: <sip:proxy.example.com;lr>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com;transport=tcp>\r\n\
Content-Length: 0\r\n\r\n"
    );
    Message::parse(raw.as_bytes()).unwrap()
}

fn options(branch: &str) -> Message {
    let raw = format!(
        "OPTIONS sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP pc33.atlanta.example.com;branch={branch}\r\n\
Max-Forwards: 70\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
Call-ID: opt1\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n"
    );
    Message::parse(raw.as_bytes()).unwrap()
}

fn response(req: &Message, code: u16, tag: Option<&str>) -> Message {
    Message::response_to(req, code, None, tag)
}

const FLOW: TransportFlow = TransportFlow(7);

fn actions(l: &mut TransactionLayer) -> Vec<Action> {
    l.drain_actions().collect()
}

fn sent(a: &[Action]) -> Vec<(Option<TxId>, String)> {
    a.iter()
        .filter_map(|x| match x {
            Action::Send { tx, msg, .. } => Some((
                *tx,
                match &msg.start {
                    StartLine::Request { method, .. } => method.to_string(),
                    StartLine::Response { code, .. } => code.to_string(),
                },
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn client_invite_non_2xx_sends_ack_and_terminates() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::default();
    let req = invite("z9hG4bKnashds8");
    let tx = l.send_request(req.clone(), FLOW, t0).unwrap();
    let a = actions(&mut l);
    assert_eq!(sent(&a), vec![(Some(tx), "INVITE".into())]);
    assert!(a.contains(&Action::SetTimer {
        tx,
        timer: TimerKind::B,
        at: t0 + Duration::from_secs(32)
    }));
    assert_eq!(l.state(tx), Some(State::Calling));

    l.on_message(
        response(&req, 180, Some("b1")),
        FLOW,
        t0 + Duration::from_millis(100),
    );
    let a = actions(&mut l);
    assert!(matches!(&a[..], [Action::Response { msg, .. }] if msg.status() == Some(180)));
    assert_eq!(l.state(tx), Some(State::Proceeding));

    // Timer B no longer applies once Proceeding.
    l.on_timeout(t0 + Duration::from_secs(40));
    assert!(actions(&mut l).is_empty());

    l.on_message(
        response(&req, 486, Some("b1")),
        FLOW,
        t0 + Duration::from_secs(41),
    );
    let a = actions(&mut l);
    let Action::Send { msg: ack, .. } = &a[0] else {
        panic!("{a:?}")
    };
    // §17.1.1.3: ACK reuses the INVITE's top Via, Route, From, Call-ID, CSeq number, and the
    // response's To (with tag).
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.top_via(), req.top_via());
    assert_eq!(ack.cseq().unwrap().seq, 314159);
    assert_eq!(ack.to().unwrap().tag(), Some("b1"));
    assert_eq!(ack.headers.routes().count(), 1);
    assert_eq!(ack.request_uri(), req.request_uri());
    assert!(matches!(&a[1], Action::Response { msg, .. } if msg.status() == Some(486)));
    assert_eq!(a[2], Action::Terminated { tx });
    assert!(l.is_empty());
}

#[test]
fn client_invite_timer_b() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::default();
    let tx = l.send_request(invite("z9hG4bK1"), FLOW, t0).unwrap();
    actions(&mut l);
    assert_eq!(l.next_deadline(), Some(t0 + Duration::from_secs(32)));
    l.on_timeout(t0 + Duration::from_millis(31_999));
    assert!(actions(&mut l).is_empty());
    l.on_timeout(t0 + Duration::from_secs(32));
    assert_eq!(
        actions(&mut l),
        vec![
            Action::Timeout {
                tx,
                timer: TimerKind::B
            },
            Action::Terminated { tx }
        ]
    );
    assert_eq!(l.next_deadline(), None);
}

#[test]
fn client_invite_2xx_accepted_then_timer_m() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TransactionConfig {
        t1: Duration::from_millis(100),
        auto_trying: true,
    });
    let req = invite("z9hG4bK2");
    let tx = l.send_request(req.clone(), FLOW, t0).unwrap();
    actions(&mut l);
    l.on_message(response(&req, 200, Some("a")), FLOW, t0);
    // A forked 2xx with another tag also reaches the TU (RFC 6026).
    l.on_message(response(&req, 200, Some("b")), FLOW, t0);
    let a = actions(&mut l);
    let tags: Vec<_> = a
        .iter()
        .filter_map(|x| match x {
            Action::Response { msg, .. } => msg.to().and_then(|t| t.tag()).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(tags, vec!["a", "b"]);
    assert!(sent(&a).is_empty(), "no ACK for 2xx from the transaction");
    assert_eq!(l.state(tx), Some(State::Accepted));
    l.on_timeout(t0 + Duration::from_millis(6400));
    assert_eq!(actions(&mut l), vec![Action::Terminated { tx }]);
    // A late 2xx retransmission is now stray.
    l.on_message(
        response(&req, 200, Some("a")),
        FLOW,
        t0 + Duration::from_secs(7),
    );
    assert!(matches!(
        &actions(&mut l)[..],
        [Action::StrayResponse { .. }]
    ));
}

#[test]
fn client_non_invite_final_and_timer_f() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::default();
    let req = options("z9hG4bKopt");
    let tx = l.send_request(req.clone(), FLOW, t0).unwrap();
    actions(&mut l);
    l.on_message(response(&req, 200, Some("x")), FLOW, t0);
    let a = actions(&mut l);
    assert!(matches!(&a[0], Action::Response { msg, .. } if msg.status() == Some(200)));
    assert_eq!(a[1], Action::Terminated { tx });

    let tx2 = l.send_request(options("z9hG4bKopt2"), FLOW, t0).unwrap();
    actions(&mut l);
    l.on_timeout(t0 + Duration::from_secs(32));
    assert_eq!(
        actions(&mut l),
        vec![
            Action::Timeout {
                tx: tx2,
                timer: TimerKind::F
            },
            Action::Terminated { tx: tx2 }
        ]
    );
}

#[test]
fn duplicate_and_invalid_client_requests() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::default();
    l.send_request(options("z9hG4bKdup"), FLOW, t0).unwrap();
    assert_eq!(
        l.send_request(options("z9hG4bKdup"), FLOW, t0),
        Err(TxError::Duplicate("z9hG4bKdup".into()))
    );
    let mut ack = invite("z9hG4bKack");
    ack.start = StartLine::Request {
        method: Method::Ack,
        uri: ack.request_uri().unwrap().clone(),
    };
    ack.headers.set_cseq(CSeq::new(314159, Method::Ack));
    assert_eq!(
        l.send_request(ack, FLOW, t0),
        Err(TxError::AckNotTransaction)
    );
}

#[test]
fn server_invite_trying_error_ack() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::default();
    let req = invite("z9hG4bKsrv");
    l.on_message(req.clone(), FLOW, t0);
    let a = actions(&mut l);
    let Action::Request {
        tx, flow, cancels, ..
    } = &a[0]
    else {
        panic!("{a:?}")
    };
    let tx = *tx;
    assert_eq!((*flow, *cancels), (FLOW, None));
    assert_eq!(sent(&a), vec![(Some(tx), "100".into())]);

    // A retransmitted INVITE gets the last provisional again.
    l.on_message(req.clone(), FLOW, t0);
    assert_eq!(sent(&actions(&mut l)), vec![(Some(tx), "100".into())]);

    l.send_response(tx, response(&req, 486, Some("srv")), t0)
        .unwrap();
    let a = actions(&mut l);
    assert_eq!(sent(&a), vec![(Some(tx), "486".into())]);
    assert!(a.contains(&Action::SetTimer {
        tx,
        timer: TimerKind::H,
        at: t0 + Duration::from_secs(32)
    }));
    assert_eq!(
        l.send_response(tx, response(&req, 200, Some("srv")), t0),
        Err(TxError::BadState {
            tx,
            state: State::Completed
        })
    );

    // The ACK for the 486 is absorbed and ends the transaction (Timer I = 0).
    let ack = ack_for_non_2xx(&req, &response(&req, 486, Some("srv"))).unwrap();
    l.on_message(ack, FLOW, t0 + Duration::from_millis(50));
    assert_eq!(actions(&mut l), vec![Action::Terminated { tx }]);
}

#[test]
fn server_invite_timer_h_without_ack() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::default();
    let req = invite("z9hG4bKh");
    l.on_message(req.clone(), FLOW, t0);
    let Some(Action::Request { tx, .. }) = l.poll_action() else {
        panic!()
    };
    actions(&mut l);
    l.send_response(tx, response(&req, 503, Some("s")), t0)
        .unwrap();
    actions(&mut l);
    l.on_timeout(t0 + Duration::from_secs(32));
    assert_eq!(
        actions(&mut l),
        vec![
            Action::Timeout {
                tx,
                timer: TimerKind::H
            },
            Action::Terminated { tx }
        ]
    );
}

#[test]
fn server_invite_2xx_accepted_ack_to_tu() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::default();
    let req = invite("z9hG4bKok");
    l.on_message(req.clone(), FLOW, t0);
    let Some(Action::Request { tx, .. }) = l.poll_action() else {
        panic!()
    };
    actions(&mut l);
    let ok = response(&req, 200, Some("s"));
    l.send_response(tx, ok.clone(), t0).unwrap();
    assert_eq!(l.state(tx), Some(State::Accepted));
    // The TU may retransmit its 2xx while Accepted.
    l.send_response(tx, ok, t0).unwrap();
    assert_eq!(sent(&actions(&mut l)).len(), 2);
    // ACK for 2xx: in-dialog, new branch; it does not match the INVITE transaction by branch and
    // goes to the TU.
    let mut ack = ack_for_non_2xx(&req, &response(&req, 200, Some("s"))).unwrap();
    ack.headers.pop_via();
    ack.headers.push_via_top(
        crate::types::Via::parse("SIP/2.0/TCP pc33.atlanta.example.com;branch=z9hG4bKnew").unwrap(),
    );
    l.on_message(ack, FLOW, t0);
    assert!(matches!(
        &actions(&mut l)[..],
        [Action::Ack { tx: None, .. }]
    ));
    l.on_timeout(t0 + Duration::from_secs(32));
    assert_eq!(actions(&mut l), vec![Action::Terminated { tx }]);
}

#[test]
fn server_non_invite_and_cancel_matching() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::default();
    let inv = invite("z9hG4bKcanc");
    l.on_message(inv.clone(), FLOW, t0);
    let Some(Action::Request { tx: inv_tx, .. }) = l.poll_action() else {
        panic!()
    };
    actions(&mut l);
    let cancel = cancel_for(&inv).unwrap();
    assert_eq!(cancel.top_via(), inv.top_via());
    assert_eq!(cancel.cseq(), Some(&CSeq::new(314159, Method::Cancel)));
    l.on_message(cancel.clone(), FLOW, t0);
    let a = actions(&mut l);
    let [
        Action::Request {
            tx: c_tx, cancels, ..
        },
    ] = &a[..]
    else {
        panic!("{a:?}")
    };
    assert_eq!(*cancels, Some(inv_tx));
    assert_ne!(*c_tx, inv_tx);
    l.send_response(*c_tx, response(&cancel, 200, Some("s")), t0)
        .unwrap();
    let a = actions(&mut l);
    assert_eq!(sent(&a), vec![(Some(*c_tx), "200".into())]);
    assert_eq!(a.last(), Some(&Action::Terminated { tx: *c_tx }));
    l.send_response(inv_tx, response(&inv, 487, Some("s")), t0)
        .unwrap();
    assert_eq!(sent(&actions(&mut l)), vec![(Some(inv_tx), "487".into())]);

    // A CANCEL for an unknown INVITE has no target.
    l.on_message(cancel_for(&invite("z9hG4bKother")).unwrap(), FLOW, t0);
    assert!(matches!(
        &actions(&mut l)[..],
        [Action::Request { cancels: None, .. }]
    ));
}

#[test]
fn rfc2543_fallback_matching() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::default();
    let raw = "INVITE sip:UserB@example.com SIP/2.0\r\nVia: SIP/2.0/TCP iftgw.example.com\r\nFrom: <sip:+13035551111@ift.client.example.net;user=phone>\r\nTo: sip:+16505552222@ss1.example.net;user=phone\r\nCall-ID: inv2543.1717@ift.client.example.com\r\nCSeq: 56 INVITE\r\nContent-Length: 0\r\n\r\n";
    let req = Message::parse(raw.as_bytes()).unwrap();
    l.on_message(req.clone(), FLOW, t0);
    let Some(Action::Request { tx, .. }) = l.poll_action() else {
        panic!()
    };
    actions(&mut l);
    // Retransmission matches by the 2543 key.
    l.on_message(req.clone(), FLOW, t0);
    assert_eq!(sent(&actions(&mut l)), vec![(Some(tx), "100".into())]);
    let resp = response(&req, 404, Some("t404"));
    l.send_response(tx, resp.clone(), t0).unwrap();
    actions(&mut l);
    // An ACK whose To tag is not the one we sent does not match (§17.2.3, RFC 2543 rules).
    let wrong = ack_for_non_2xx(&req, &response(&req, 404, Some("other"))).unwrap();
    l.on_message(wrong, FLOW, t0);
    assert!(matches!(
        &actions(&mut l)[..],
        [Action::Ack { tx: None, .. }]
    ));
    // The ACK (To now carries our tag) still matches the INVITE transaction.
    let ack = ack_for_non_2xx(&req, &resp).unwrap();
    l.on_message(ack, FLOW, t0);
    assert_eq!(actions(&mut l), vec![Action::Terminated { tx }]);
}

/// RFC 4475 §3.2.1 badbranch: a bare magic cookie identifies no transaction. Two different
/// requests carrying it are two transactions (RFC 2543 matching), not one retransmitted.
#[test]
fn bare_cookie_branch_falls_back_to_rfc2543_matching() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::default();
    let a = options("z9hG4bK");
    let raw = String::from_utf8(a.encode())
        .unwrap()
        .replace("Call-ID: opt1", "Call-ID: opt2");
    let b = Message::parse(raw.as_bytes()).unwrap();
    let mut txs = Vec::new();
    for m in [a.clone(), b, a] {
        l.on_message(m, FLOW, t0);
        txs.extend(actions(&mut l).into_iter().filter_map(|x| match x {
            Action::Request { tx, .. } => Some(tx),
            _ => None,
        }));
    }
    // The third message is a retransmission of the first: absorbed, no new transaction.
    assert_eq!(txs.len(), 2, "{txs:?}");
    assert_ne!(txs[0], txs[1]);
}

#[test]
fn transport_errors() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::default();
    let a = l
        .send_request(invite("z9hG4bKt1"), TransportFlow(1), t0)
        .unwrap();
    let b = l
        .send_request(options("z9hG4bKt2"), TransportFlow(1), t0)
        .unwrap();
    let c = l
        .send_request(options("z9hG4bKt3"), TransportFlow(2), t0)
        .unwrap();
    actions(&mut l);
    l.flow_failed(TransportFlow(1));
    assert_eq!(
        actions(&mut l),
        vec![
            Action::TransportError { tx: a },
            Action::Terminated { tx: a },
            Action::TransportError { tx: b },
            Action::Terminated { tx: b },
        ]
    );
    assert_eq!(l.len(), 1);
    l.transport_error(c);
    assert_eq!(actions(&mut l).len(), 2);
    assert!(l.is_empty());
}

#[test]
fn responses_match_by_branch_and_method() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::default();
    let inv = invite("z9hG4bKm");
    let inv_tx = l.send_request(inv.clone(), FLOW, t0).unwrap();
    let cancel = cancel_for(&inv).unwrap();
    let c_tx = l.send_request(cancel.clone(), FLOW, t0).unwrap();
    actions(&mut l);
    l.on_message(response(&cancel, 200, Some("x")), FLOW, t0);
    let a = actions(&mut l);
    assert!(matches!(&a[0], Action::Response { tx, .. } if *tx == c_tx));
    l.on_message(response(&inv, 487, Some("x")), FLOW, t0);
    let a = actions(&mut l);
    assert!(matches!(&a[1], Action::Response { tx, .. } if *tx == inv_tx));
}
