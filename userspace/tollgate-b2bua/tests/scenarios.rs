//! Scenario tests: RFC 3665 basic call flows and RFC 3666 PSTN interworking flows adapted to a
//! B2BUA, driven with SIP text on both legs and a simulated clock, asserting the messages sent
//! (start lines and key headers), the media flows and the CDRs.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::time::Duration;

use common::*;
use tollgate_b2bua::{CallEvent, Direction, EndCause, Input, Output, Side, Target, Transport};
use tollgate_common::spec::TransformSpec;
use tollgate_sip::Message;

/// An inbound call up to the 200 OK relayed to the gateway. Returns (gateway's UA view,
/// internal UA view, the INVITE sent to the proxy).
fn inbound_answered(h: &mut H, cid: &str, gw_extra: &str) -> (Ua, Ua, Message) {
    let out = h.gw(&gw_invite(cid, gw_extra, Some(&gw_offer())));
    let inv = find(&sent(&out, Side::Int), "INVITE").clone();
    let out = h.int(&reply(
        &inv,
        200,
        "OK",
        Some("int1"),
        Some("<sip:alice@203.0.113.20:5061;transport=tls>"),
        "",
        Some(&int_answer("a=sendrecv")),
    ));
    let ok = find(&sent(&out, Side::Ext), "200").clone();
    let gw = gw_ua(&ok, cid);
    let int = Ua::from_received(
        &inv,
        "int1",
        "SIP/2.0/TLS 203.0.113.10:5061",
        "<sip:alice@203.0.113.20:5061;transport=tls>",
    );
    let mut gw2 = gw.clone();
    let out = h.gw(&gw2.request("ACK", "", None));
    assert_eq!(
        lines(&out),
        vec!["int: ACK sip:alice@203.0.113.20:5061;transport=tls"]
    );
    (gw2, int, inv)
}

/// RFC 3666 §3.1 (successful PSTN to SIP call) / RFC 3665 §3.1 (successful session), through
/// the B2BUA: 100 at once, normalised numbers, SAVP offer to the proxy, 180 and 200 relayed
/// with the SDP rewritten back to AVP, media installed at answer, ACK per leg, BYE from the
/// gateway.
#[test]
fn inbound_successful_call_bye_from_gateway() {
    let mut h = H::new(config());
    let out = h.gw(&gw_invite("c1", "Supported: timer\r\n", Some(&gw_offer())));
    assert_eq!(
        lines(&out),
        vec![
            "ext: 100 Trying",
            "int: INVITE sip:+442079460000@proxy.corp.example:5061;transport=tls",
        ]
    );
    let s = sends(&out);
    assert_eq!(s[0].1, Target::Conn(tollgate_b2bua::ConnId(1)));
    assert_eq!(
        s[1].1,
        Target::Addr {
            addr: addr(PROXY),
            transport: Transport::Tls
        }
    );
    let inv = &s[1].2;
    assert!(
        hdr(inv, "Via")
            .unwrap()
            .starts_with("SIP/2.0/TLS 203.0.113.1:5061;branch=z9hG4bKtg")
    );
    assert_eq!(hdr(inv, "Max-Forwards").as_deref(), Some("69"));
    assert!(
        hdr(inv, "From")
            .unwrap()
            .starts_with("\"Alice\" <sip:+441632960001@203.0.113.1>;tag=")
    );
    assert_eq!(
        hdr(inv, "To").as_deref(),
        Some("<sip:+442079460000@proxy.corp.example>")
    );
    assert_ne!(inv.call_id(), Some("c1@192.0.2.10"));
    assert_eq!(
        hdr(inv, "Contact").as_deref(),
        Some("<sip:tollgate@203.0.113.1:5061;transport=tls>")
    );
    assert_eq!(hdr(inv, "Session-Expires").as_deref(), Some("1800"));
    assert_eq!(hdr(inv, "Min-SE").as_deref(), Some("90"));
    assert_eq!(hdr(inv, "Supported").as_deref(), Some("timer"));
    let offer = body(inv);
    assert!(offer.contains("c=IN IP4 203.0.113.1\r\n"), "{offer}");
    assert!(
        offer.contains("m=audio 30000 RTP/SAVP 0 8 101\r\n"),
        "{offer}"
    );
    assert!(
        offer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{offer}"
    );
    assert!(
        offer.contains("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:"),
        "{offer}"
    );
    assert!(offer.contains("a=fmtp:101 0-15\r\n"), "{offer}");
    assert!(matches!(
        h.events.last(),
        Some(CallEvent::Started { direction: Direction::Inbound, trunk: Some(t), .. }) if t == "gw1"
    ));

    // 180 Ringing.
    let out = h.int(&reply(
        inv,
        180,
        "Ringing",
        Some("int1"),
        Some("<sip:alice@203.0.113.20:5061;transport=tls>"),
        "",
        None,
    ));
    assert_eq!(lines(&out), vec!["ext: 180 Ringing"]);
    let ringing = &sent(&out, Side::Ext)[0];
    let our_tag = ringing.to().unwrap().tag().unwrap().to_owned();
    assert_eq!(
        hdr(ringing, "Contact").as_deref(),
        Some("<sip:tollgate@198.51.100.1:5060;transport=tcp>")
    );
    assert_eq!(ringing.call_id(), Some("c1@192.0.2.10"));

    // 200 OK with the SRTP answer: AVP toward the gateway, media installed.
    let out = h.int(&reply(
        inv,
        200,
        "OK",
        Some("int1"),
        Some("<sip:alice@203.0.113.20:5061;transport=tls>"),
        "",
        Some(&int_answer("a=sendrecv")),
    ));
    assert_eq!(lines(&out), vec!["ext: 200 OK"]);
    let ok = &sent(&out, Side::Ext)[0];
    assert_eq!(ok.to().unwrap().tag(), Some(our_tag.as_str()));
    let ans = body(ok);
    assert!(ans.contains("c=IN IP4 198.51.100.1\r\n"), "{ans}");
    assert!(ans.contains("m=audio 20000 RTP/AVP 0 101\r\n"), "{ans}");
    assert!(!ans.contains("crypto"), "{ans}");
    // The caller supports timers and asked no refresher: it refreshes.
    assert_eq!(
        hdr(ok, "Session-Expires").as_deref(),
        Some("1800;refresher=uac")
    );
    assert_eq!(hdr(ok, "Require").as_deref(), Some("timer"));
    let spec = out
        .iter()
        .find_map(|o| match o {
            Output::InstallMedia { spec, .. } => Some(spec.clone()),
            _ => None,
        })
        .expect("media installed at answer");
    assert_eq!(spec.ext.local_rtp, addr("198.51.100.1:20000"));
    assert_eq!(spec.ext.local_rtcp, Some(addr("198.51.100.1:20001")));
    assert_eq!(spec.ext.remote_rtp, Some(addr("192.0.2.10:40000")));
    assert_eq!(spec.int.local_rtp, addr("203.0.113.1:30000"));
    assert_eq!(spec.int.remote_rtp, Some(addr("203.0.113.20:50000")));
    match (&spec.ext_to_int, &spec.int_to_ext) {
        (TransformSpec::Protect(k), TransformSpec::Unprotect(p)) => {
            assert_eq!(k.profile(), tollgate_srtp::Profile::Aes128CmHmacSha1_80);
            assert_eq!(p.to_sdes(), KEY1);
        }
        other => panic!("transforms {other:?}"),
    }
    if let TransformSpec::Protect(k) = &spec.ext_to_int {
        let line = format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 {}", k.to_sdes());
        assert!(
            offer.contains(&line),
            "protect key = the key offered under tag 1"
        );
    }
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, CallEvent::Answered { .. }))
    );

    // ACK end to end, each leg its own.
    let mut gw = gw_ua(ok, "c1");
    let out = h.gw(&gw.request("ACK", "", None));
    assert_eq!(
        lines(&out),
        vec!["int: ACK sip:alice@203.0.113.20:5061;transport=tls"]
    );
    let ack = &sent(&out, Side::Int)[0];
    assert_eq!(hdr(ack, "CSeq").as_deref(), Some("1 ACK"));
    assert_eq!(ack.call_id(), inv.call_id());

    // BYE from the gateway: 200 at once, BYE to the proxy, teardown.
    let out = h.gw(&gw.request("BYE", "", None));
    assert_eq!(
        lines(&out),
        vec![
            "ext: 200 OK",
            "int: BYE sip:alice@203.0.113.20:5061;transport=tls"
        ]
    );
    assert_eq!(
        hdr(&sent(&out, Side::Int)[0], "CSeq").as_deref(),
        Some("2 BYE")
    );
    assert!(out.iter().any(|o| matches!(o, Output::RemoveMedia { .. })));
    let cdr = h.cdrs.last().unwrap();
    assert_eq!(cdr.cause, EndCause::Bye(Side::Ext));
    assert_eq!(cdr.status, 200);
    assert_eq!(cdr.calling_received, "01632960001");
    assert_eq!(cdr.calling_sent, "+441632960001");
    assert_eq!(cdr.called_received, "02079460000");
    assert_eq!(cdr.called_sent, "+442079460000");
    assert_eq!(cdr.trunk.as_deref(), Some("gw1"));
    assert_eq!(cdr.direction, Direction::Inbound);
    assert!(cdr.answer.is_some());
    assert_eq!(cdr.flows.len(), 1);
    let bye = &sent(&out, Side::Int)[0];
    let out = h.int(&reply(bye, 200, "OK", None, None, "", None));
    assert!(lines(&out).is_empty());
    assert_clean(&mut h);
}

fn int_contact() -> &'static str {
    "<sip:alice@203.0.113.20:5061;transport=tls>"
}

/// RFC 3666 §2.1 (successful SIP to PSTN call) with early media (183 with SDP), BYE from the
/// internal side; the number is routed on its E.164 form and rewritten by the trunk's
/// outbound rule.
#[test]
fn outbound_call_early_media_bye_from_internal() {
    let mut h = H::new(config());
    let out = h.int(&int_invite(
        "o1",
        "+442079460001",
        "",
        Some(&int_offer("a=sendrecv", "203.0.113.20")),
    ));
    assert_eq!(
        lines(&out),
        vec![
            "int: 100 Trying",
            "ext: INVITE sip:02079460001@192.0.2.10:5060;transport=tcp"
        ]
    );
    let s = sends(&out);
    assert_eq!(
        s[1].1,
        Target::Addr {
            addr: addr(GW1),
            transport: Transport::Tcp
        }
    );
    let inv = s[1].2.clone();
    assert!(
        hdr(&inv, "Via")
            .unwrap()
            .starts_with("SIP/2.0/TCP 198.51.100.1:5060;branch=z9hG4bKtg")
    );
    assert_eq!(hdr(&inv, "Max-Forwards").as_deref(), Some("68"));
    assert!(
        hdr(&inv, "From")
            .unwrap()
            .starts_with("\"Bob\" <sip:02079460000@198.51.100.1>;tag=")
    );
    let offer = body(&inv);
    assert!(
        offer.contains("m=audio 20000 RTP/AVP 0 8 101\r\n"),
        "{offer}"
    );
    assert!(offer.contains("c=IN IP4 198.51.100.1\r\n"), "{offer}");
    assert!(!offer.contains("crypto"), "{offer}");

    // 183 with SDP: early media installed before answer.
    let out = h.gw(&reply(
        &inv,
        183,
        "Session Progress",
        Some("g1"),
        Some("<sip:gw@192.0.2.10:5060>"),
        "",
        Some(&gw_answer("a=sendrecv")),
    ));
    assert_eq!(lines(&out), vec!["int: 183 Session Progress"]);
    let p183 = &sent(&out, Side::Int)[0];
    let ans = body(p183);
    assert!(ans.contains("m=audio 30000 RTP/SAVP 0 101\r\n"), "{ans}");
    assert!(
        ans.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{ans}"
    );
    let spec = out
        .iter()
        .find_map(|o| match o {
            Output::InstallMedia { spec, .. } => Some(spec.clone()),
            _ => None,
        })
        .expect("early media flow");
    assert_eq!(spec.ext.remote_rtp, Some(addr("192.0.2.10:40000")));
    assert_eq!(spec.int.remote_rtp, Some(addr("203.0.113.20:50000")));
    match &spec.int_to_ext {
        TransformSpec::Unprotect(k) => assert_eq!(k.to_sdes(), KEY1),
        t => panic!("{t:?}"),
    }

    // 200 OK without SDP (the answer came in the 183): the 200 repeats our answer.
    let out = h.gw(&reply(
        &inv,
        200,
        "OK",
        Some("g1"),
        Some("<sip:gw@192.0.2.10:5060>"),
        "",
        None,
    ));
    assert_eq!(lines(&out), vec!["int: 200 OK"]);
    let ok = sent(&out, Side::Int)[0].clone();
    assert_eq!(body(&ok), ans, "the 2xx repeats the answer of the 183");
    assert!(
        !out.iter().any(|o| matches!(o, Output::InstallMedia { .. })),
        "unchanged flow not reinstalled"
    );
    let mut int = int_ua_from_resp(&ok, "o1");
    let out = h.int(&int.request("ACK", "", None));
    assert_eq!(lines(&out), vec!["ext: ACK sip:gw@192.0.2.10:5060"]);

    let out = h.int(&int.request("BYE", "", None));
    assert_eq!(
        lines(&out),
        vec!["int: 200 OK", "ext: BYE sip:gw@192.0.2.10:5060"]
    );
    let cdr = h.cdrs.last().unwrap();
    assert_eq!(cdr.cause, EndCause::Bye(Side::Int));
    assert_eq!(cdr.direction, Direction::Outbound);
    assert_eq!(cdr.called_received, "+442079460001");
    assert_eq!(cdr.called_sent, "02079460001");
    assert_clean(&mut h);
}

/// RFC 3665 §3.3 (unsuccessful, busy) / RFC 3666 §3.4: a 486 on the internal leg is a 486
/// on the gateway leg; the transaction layer ACKs the 486.
#[test]
fn busy_is_relayed() {
    let mut h = H::new(config());
    let out = h.gw(&gw_invite("b1", "", Some(&gw_offer())));
    let inv = find(&sent(&out, Side::Int), "INVITE").clone();
    let out = h.int(&reply(
        &inv,
        486,
        "Busy Here",
        Some("x"),
        None,
        "Retry-After: 60\r\n",
        None,
    ));
    assert_eq!(
        lines(&out),
        vec![
            "int: ACK sip:+442079460000@proxy.corp.example:5061;transport=tls",
            "ext: 486 Busy Here"
        ]
    );
    let busy = &sent(&out, Side::Ext)[0];
    assert_eq!(hdr(busy, "Retry-After").as_deref(), Some("60"));
    let cdr = h.cdrs.last().unwrap();
    assert_eq!(cdr.cause, EndCause::Rejected(486));
    assert_eq!(cdr.status, 486);
    assert_eq!(h.b.allocated_ports(), (0, 0));
    // The gateway ACKs the 486 (absorbed by the transaction layer).
    let ack = "ACK sip:02079460000@198.51.100.1:5060 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKb1\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:01632960001@192.0.2.10>;tag=gwb1\r\nTo: <sip:02079460000@198.51.100.1>;tag=zz\r\nCall-ID: b1@192.0.2.10\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    assert!(lines(&h.gw(ack)).is_empty());
    assert_clean(&mut h);
}

/// RFC 3665 §3.5/§3.6 (unsuccessful 4xx / 5xx): relayed with the same code; a credentials
/// challenge becomes 403, a redirect 480; a 503 is not failed over inbound.
#[test]
fn errors_are_mapped() {
    for (code, reason, expect) in [
        (404, "Not Found", "404 Not Found"),
        (503, "Service Unavailable", "503 Service Unavailable"),
        (407, "Proxy Authentication Required", "403 Forbidden"),
        (302, "Moved Temporarily", "480 Temporarily Unavailable"),
        (603, "Decline", "603 Decline"),
    ] {
        let mut h = H::new(config());
        let out = h.gw(&gw_invite("e1", "", Some(&gw_offer())));
        let inv = find(&sent(&out, Side::Int), "INVITE").clone();
        let out = h.int(&reply(&inv, code, reason, Some("x"), None, "", None));
        let ext = sent(&out, Side::Ext);
        assert_eq!(ext.len(), 1, "{code}");
        assert_eq!(line(&ext[0]), expect);
        assert_eq!(h.cdrs.last().unwrap().cause, EndCause::Rejected(code));
        assert_clean(&mut h);
    }
}

/// RFC 3665 §3.8 (unsuccessful no answer): the caller CANCELs after 180: 200 for the CANCEL,
/// 487 for the INVITE, CANCEL toward the proxy (carrying the caller's Reason, RFC 3326), whose
/// 487 is ACKed.
#[test]
fn cancel_before_answer() {
    let mut h = H::new(config());
    let out = h.gw(&gw_invite("n1", "", Some(&gw_offer())));
    let inv = find(&sent(&out, Side::Int), "INVITE").clone();
    h.int(&reply(
        &inv,
        180,
        "Ringing",
        Some("r1"),
        Some(int_contact()),
        "",
        None,
    ));
    let cancel = "CANCEL sip:02079460000@198.51.100.1:5060 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKn1\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:01632960001@192.0.2.10>;tag=gwn1\r\nTo: <sip:02079460000@198.51.100.1>\r\nCall-ID: n1@192.0.2.10\r\nCSeq: 1 CANCEL\r\nReason: Q.850;cause=16\r\nContent-Length: 0\r\n\r\n";
    let out = h.gw(cancel);
    assert_eq!(
        lines(&out),
        vec![
            "ext: 200 OK",
            "ext: 487 Request Terminated",
            "int: CANCEL sip:+442079460000@proxy.corp.example:5061;transport=tls"
        ]
    );
    let c = &sent(&out, Side::Int)[0];
    assert_eq!(
        hdr(c, "Via"),
        hdr(&inv, "Via"),
        "CANCEL reuses the INVITE's branch"
    );
    assert_eq!(
        hdr(c, "Reason").as_deref(),
        Some("Q.850;cause=16"),
        "the caller's hang-up cause goes on"
    );
    assert_eq!(hdr(&sent(&out, Side::Ext)[1], "Reason"), None);
    assert_eq!(h.cdrs.last().unwrap().cause, EndCause::Cancelled);
    assert_eq!(h.cdrs.last().unwrap().status, 487);
    assert_eq!(h.b.active_calls(), 0);
    let out = h.int(&reply(c, 200, "OK", Some("r1"), None, "", None));
    assert!(lines(&out).is_empty());
    let out = h.int(&reply(
        &inv,
        487,
        "Request Terminated",
        Some("r1"),
        None,
        "",
        None,
    ));
    assert_eq!(
        lines(&out),
        vec!["int: ACK sip:+442079460000@proxy.corp.example:5061;transport=tls"]
    );
    assert_clean(&mut h);
}

/// The CANCEL/200 race (RFC 3261 §9.1): the proxy's 200 crosses our CANCEL: ACK and BYE it.
#[test]
fn cancel_200_race() {
    let mut h = H::new(config());
    let out = h.gw(&gw_invite("r1", "", Some(&gw_offer())));
    let inv = find(&sent(&out, Side::Int), "INVITE").clone();
    h.int(&reply(
        &inv,
        180,
        "Ringing",
        Some("t1"),
        Some(int_contact()),
        "",
        None,
    ));
    let cancel = "CANCEL sip:02079460000@198.51.100.1:5060 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKr1\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:01632960001@192.0.2.10>;tag=gwr1\r\nTo: <sip:02079460000@198.51.100.1>\r\nCall-ID: r1@192.0.2.10\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    h.gw(cancel);
    let out = h.int(&reply(
        &inv,
        200,
        "OK",
        Some("t1"),
        Some(int_contact()),
        "",
        Some(&int_answer("a=sendrecv")),
    ));
    assert_eq!(
        lines(&out),
        vec![
            "int: ACK sip:alice@203.0.113.20:5061;transport=tls",
            "int: BYE sip:alice@203.0.113.20:5061;transport=tls"
        ]
    );
    assert!(!out.iter().any(|o| matches!(o, Output::InstallMedia { .. })));
    assert_eq!(h.cdrs.len(), 1);
    assert_clean(&mut h);
}

/// No answer within the no-answer timer: 408 to the caller, CANCEL to the callee.
#[test]
fn no_answer_timeout() {
    let mut h = H::new(config());
    let out = h.gw(&gw_invite("t1", "", Some(&gw_offer())));
    let inv = find(&sent(&out, Side::Int), "INVITE").clone();
    h.int(&reply(
        &inv,
        180,
        "Ringing",
        Some("t1"),
        Some(int_contact()),
        "",
        None,
    ));
    let out = h.advance(Duration::from_secs(181));
    assert_eq!(
        lines(&out),
        vec![
            "ext: 408 Request Timeout",
            "int: CANCEL sip:+442079460000@proxy.corp.example:5061;transport=tls"
        ]
    );
    assert_eq!(h.cdrs.last().unwrap().cause, EndCause::NoAnswer);
    // The proxy never answers the INVITE: the orphan guard ends its transaction.
    assert_clean(&mut h);
}

/// The next hop does not answer at all: Timer B -> 504 Server Time-out.
#[test]
fn next_hop_silent_gives_504() {
    let mut h = H::new(config());
    h.gw(&gw_invite("s1", "", Some(&gw_offer())));
    let out = h.advance(Duration::from_secs(33));
    assert_eq!(lines(&out), vec!["ext: 504 Server Time-out"]);
    assert_eq!(h.cdrs.last().unwrap().cause, EndCause::Timeout);
    assert_clean(&mut h);
}

/// The connection to the next hop cannot be made: 503 to the caller.
#[test]
fn connect_failure_gives_503() {
    let mut h = H::new(config());
    h.gw(&gw_invite("f1", "", Some(&gw_offer())));
    let out = h.input(Input::ConnectFailed {
        side: Side::Int,
        addr: addr(PROXY),
    });
    assert_eq!(lines(&out), vec!["ext: 503 Service Unavailable"]);
    assert_eq!(
        hdr(&sent(&out, Side::Ext)[0], "Retry-After").as_deref(),
        Some("30")
    );
    assert_eq!(h.cdrs.last().unwrap().cause, EndCause::TransportError);
    assert_clean(&mut h);
}

/// RFC 3665 §3.? hold and resume (RFC 3264 §8.4), re-INVITE from the internal side: the
/// offer is rewritten SAVP->AVP, the answer back, the flow updated in place (same id).
#[test]
fn hold_and_resume_from_internal() {
    let mut h = H::new(config());
    let (mut gw, mut int, _) = inbound_answered(&mut h, "h1", "");
    let flow_id = *h.installed.keys().next().unwrap();

    let out = h.int(&int.request("INVITE", "", Some(&int_offer("a=sendonly", "203.0.113.20"))));
    assert_eq!(
        lines(&out),
        vec![
            "int: 100 Trying",
            "ext: INVITE sip:gw@192.0.2.10:5060;transport=tcp"
        ]
    );
    let reinv = sent(&out, Side::Ext)[0].clone();
    let o = body(&reinv);
    assert!(o.contains("a=sendonly"), "{o}");
    assert!(o.contains("m=audio 20000 RTP/AVP"), "{o}");
    assert_eq!(hdr(&reinv, "CSeq").as_deref(), Some("1 INVITE"));
    let out = h.gw(&reply(
        &reinv,
        200,
        "OK",
        None,
        Some("<sip:gw@192.0.2.10:5060;transport=tcp>"),
        "",
        Some(&gw_answer("a=recvonly")),
    ));
    assert_eq!(lines(&out), vec!["int: 200 OK"]);
    let ok = &sent(&out, Side::Int)[0];
    assert!(body(ok).contains("a=recvonly"));
    assert!(body(ok).contains("RTP/SAVP"));
    let upd: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::InstallMedia { spec, .. } => Some(spec.id),
            _ => None,
        })
        .collect();
    assert!(
        upd.is_empty() || upd == vec![flow_id],
        "an update keeps the flow id"
    );
    let out = h.int(&int.request("ACK", "", None));
    assert_eq!(
        lines(&out),
        vec!["ext: ACK sip:gw@192.0.2.10:5060;transport=tcp"]
    );

    // Resume, with a new media address: the flow is updated.
    let out = h.int(&int.request("INVITE", "", Some(&int_offer("a=sendrecv", "203.0.113.21"))));
    let reinv = sent(&out, Side::Ext)[0].clone();
    let out = h.gw(&reply(
        &reinv,
        200,
        "OK",
        None,
        Some("<sip:gw@192.0.2.10:5060;transport=tcp>"),
        "",
        Some(&gw_answer("a=sendrecv")),
    ));
    let spec = out
        .iter()
        .find_map(|o| match o {
            Output::InstallMedia { spec, .. } => Some(spec.clone()),
            _ => None,
        })
        .expect("flow updated");
    assert_eq!(spec.id, flow_id);
    assert_eq!(spec.int.remote_rtp, Some(addr("203.0.113.21:50000")));
    h.int(&int.request("ACK", "", None));
    let out = h.gw(&gw.request("BYE", "", None));
    assert_eq!(
        lines(&out),
        vec![
            "ext: 200 OK",
            "int: BYE sip:alice@203.0.113.20:5061;transport=tls"
        ]
    );
    assert_clean(&mut h);
}

/// Glare (RFC 3261 §14.1): a re-INVITE arrives on one leg while ours is pending on it:
/// 491, and the relayed one's 491 goes back to its sender.
#[test]
fn glare_491() {
    let mut h = H::new(config());
    let (mut gw, mut int, _) = inbound_answered(&mut h, "g1", "");
    let out = h.int(&int.request("INVITE", "", Some(&int_offer("a=sendonly", "203.0.113.20"))));
    let reinv = sent(&out, Side::Ext)[0].clone();
    // The gateway's own re-INVITE crosses it.
    let out = h.gw(&gw.request("INVITE", "", Some(&gw_offer())));
    assert_eq!(
        lines(&out),
        vec!["ext: 100 Trying", "ext: 491 Request Pending"]
    );
    // The gateway answers ours with 491 too: relayed to the proxy, the offer dropped.
    let out = h.gw(&reply(&reinv, 491, "Request Pending", None, None, "", None));
    assert_eq!(
        lines(&out),
        vec![
            "ext: ACK sip:gw@192.0.2.10:5060;transport=tcp",
            "int: 491 Request Pending"
        ]
    );
    // The session goes on: a later re-INVITE works.
    let out = h.int(&int.request("INVITE", "", Some(&int_offer("a=sendonly", "203.0.113.20"))));
    assert_eq!(
        lines(&out)[1],
        "ext: INVITE sip:gw@192.0.2.10:5060;transport=tcp"
    );
    let reinv = sent(&out, Side::Ext)[0].clone();
    h.gw(&reply(
        &reinv,
        200,
        "OK",
        None,
        Some("<sip:gw@192.0.2.10:5060;transport=tcp>"),
        "",
        Some(&gw_answer("a=recvonly")),
    ));
    h.int(&int.request("ACK", "", None));
    let out = h.int(&int.request("BYE", "", None));
    assert_eq!(
        lines(&out),
        vec![
            "int: 200 OK",
            "ext: BYE sip:gw@192.0.2.10:5060;transport=tcp"
        ]
    );
    assert_clean(&mut h);
}

/// Media inactivity: BYE on both legs with a Reason header, CDR cause media_timeout.
#[test]
fn media_timeout_ends_call() {
    let mut h = H::new(config());
    inbound_answered(&mut h, "m1", "");
    let call = h.cdrs.len(); // none yet
    assert_eq!(call, 0);
    let id = match h
        .events
        .iter()
        .find(|e| matches!(e, CallEvent::Started { .. }))
    {
        Some(CallEvent::Started { call, .. }) => *call,
        _ => unreachable!(),
    };
    let out = h.input(Input::MediaInactive { call: id });
    assert_eq!(
        lines(&out),
        vec![
            "ext: BYE sip:gw@192.0.2.10:5060;transport=tcp",
            "int: BYE sip:alice@203.0.113.20:5061;transport=tls"
        ]
    );
    for m in sent(&out, Side::Ext)
        .iter()
        .chain(sent(&out, Side::Int).iter())
    {
        assert_eq!(
            hdr(m, "Reason").as_deref(),
            Some("SIP;cause=408;text=\"Media Timeout\"")
        );
    }
    let cdr = h.cdrs.last().unwrap();
    assert_eq!(cdr.cause.as_str(), "media_timeout");
    assert_clean(&mut h);
}

/// Drain: new INVITEs get 503 with Retry-After, the existing call runs to its end.
#[test]
fn drain() {
    let mut h = H::new(config());
    let (mut gw, _, _) = inbound_answered(&mut h, "d1", "");
    h.input(Input::Drain);
    assert!(!h.b.is_drained());
    let out = h.gw(&gw_invite("d2", "", Some(&gw_offer())));
    assert_eq!(
        lines(&out),
        vec!["ext: 100 Trying", "ext: 503 Service Unavailable"]
    );
    assert_eq!(
        hdr(&sent(&out, Side::Ext)[1], "Retry-After").as_deref(),
        Some("30")
    );
    assert_eq!(h.b.active_calls(), 1);
    h.gw(&gw.request("BYE", "", None));
    assert!(h.b.is_drained());
    assert_clean(&mut h);
}

/// An INVITE from an address that is not a trunk: 403, counted, no transaction, no 100.
#[test]
fn unknown_trunk_403() {
    let mut h = H::new(config());
    let out = h.msg(
        Side::Ext,
        9,
        "192.0.2.99:5060",
        &gw_invite("u1", "", Some(&gw_offer())),
    );
    assert_eq!(lines(&out), vec!["ext: 403 Forbidden"]);
    assert_eq!(ev_refused(&h), vec![("unknown_trunk".to_owned(), 403)]);
    assert_eq!(h.b.transactions(), 0);
    assert_clean(&mut h);
}

/// A malformed INVITE gets 400 naming the fault; another call is untouched.
#[test]
fn malformed_invite_400_other_call_continues() {
    let mut h = H::new(config());
    let (mut gw, _, _) = inbound_answered(&mut h, "a1", "");
    let bad = gw_invite("a2", "", Some(&gw_offer())).replace("CSeq: 1 INVITE", "CSeq: one INVITE");
    let err = Message::parse(bad.as_bytes()).unwrap_err();
    let out = h.input(Input::Invalid {
        side: Side::Ext,
        conn: tollgate_b2bua::ConnId(1),
        peer: addr("192.0.2.10:41000"),
        error: err,
    });
    let l = lines(&out);
    assert_eq!(l.len(), 1);
    assert!(
        l[0].starts_with("ext: 400 Bad Request (malformed CSeq header"),
        "{l:?}"
    );
    assert_eq!(h.b.active_calls(), 1);
    let out = h.gw(&gw.request("BYE", "", None));
    assert_eq!(
        lines(&out),
        vec![
            "ext: 200 OK",
            "int: BYE sip:alice@203.0.113.20:5061;transport=tls"
        ]
    );
    assert_clean(&mut h);
}

/// Max-Forwards 0: 483.
#[test]
fn max_forwards_483() {
    let mut h = H::new(config());
    let inv = gw_invite("x1", "", Some(&gw_offer())).replace("Max-Forwards: 70", "Max-Forwards: 0");
    let out = h.gw(&inv);
    assert_eq!(lines(&out), vec!["ext: 483 Too Many Hops"]);
    assert_eq!(ev_refused(&h), vec![("too_many_hops".to_owned(), 483)]);
    assert_clean(&mut h);
}

/// An OPTIONS addressed to Tollgate itself (its address, no user) with Max-Forwards 0 is
/// answered 200 (RFC 3261 §11; §16.3 item 3 limits forwarding); with a user part it would be
/// forwarded, so 483.
#[test]
fn options_to_self_with_max_forwards_zero() {
    let mut h = H::new(config());
    let opt = |ruri: &str, id: &str| {
        format!(
            "OPTIONS {ruri} SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK{id}\r\nMax-Forwards: 0\r\nFrom: <sip:gw@192.0.2.10>;tag={id}\r\nTo: <{ruri}>\r\nCall-ID: {id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let out = h.gw(&opt("sip:198.51.100.1:5060", "mf0self"));
    assert_eq!(lines(&out), vec!["ext: 200 OK"]);
    let out = h.gw(&opt("sip:+15551234@198.51.100.1:5060", "mf0user"));
    assert_eq!(lines(&out), vec!["ext: 483 Too Many Hops"]);
    assert_clean(&mut h);
}

/// A request carrying one of our own Via branches is looping: 482.
#[test]
fn loop_482() {
    let mut h = H::new(config());
    let out = h.gw(&gw_invite("l1", "", Some(&gw_offer())));
    let inv = find(&sent(&out, Side::Int), "INVITE").clone();
    let ours = hdr(&inv, "Via").unwrap();
    // The proxy routes it back to us, through the gateway.
    let looped = gw_invite("l2", &format!("Via: {ours}\r\n"), Some(&gw_offer()));
    let out = h.gw(&looped);
    assert_eq!(lines(&out), vec!["ext: 482 Loop Detected"]);
    assert_eq!(h.b.active_calls(), 1);
    h.int(&reply(
        &inv,
        480,
        "Temporarily Unavailable",
        Some("z"),
        None,
        "",
        None,
    ));
    assert_clean(&mut h);
}

/// RFC 3666 §2.? (SIP to PSTN, first gateway unavailable): 503 from gw1 -> the same call to
/// gw2 with gw2's number format.
#[test]
fn outbound_failover_on_503() {
    let mut h = H::new(config());
    let out = h.int(&int_invite(
        "f1",
        "+442079460002",
        "",
        Some(&int_offer("a=sendrecv", "203.0.113.20")),
    ));
    let inv1 = find(&sent(&out, Side::Ext), "INVITE").clone();
    assert_eq!(
        line(&inv1),
        "INVITE sip:02079460002@192.0.2.10:5060;transport=tcp"
    );
    let out = h.gw(&reply(
        &inv1,
        503,
        "Service Unavailable",
        Some("q"),
        None,
        "",
        None,
    ));
    assert_eq!(
        lines(&out),
        vec![
            "ext: ACK sip:02079460002@192.0.2.10:5060;transport=tcp",
            "ext: INVITE sip:00442079460002@192.0.2.20:5060;transport=tcp"
        ]
    );
    let inv2 = sent(&out, Side::Ext)[1].clone();
    assert_eq!(body(&inv2), body(&inv1), "same offer, same relay ports");
    assert_eq!(hdr(&inv2, "CSeq").as_deref(), Some("2 INVITE"));
    assert!(h.events.iter().any(|e| matches!(e, CallEvent::Failover { from, to, status: 503, .. } if from == "gw1" && to == "gw2")));
    let out = h.msg(
        Side::Ext,
        2,
        "192.0.2.20:42000",
        &reply(
            &inv2,
            200,
            "OK",
            Some("g2"),
            Some("<sip:gw@192.0.2.20:5060>"),
            "",
            Some(&gw_answer("a=sendrecv")),
        ),
    );
    assert_eq!(lines(&out), vec!["int: 200 OK"]);
    let cdr_trunk = {
        let ok = sent(&out, Side::Int)[0].clone();
        let mut int = int_ua_from_resp(&ok, "f1");
        h.int(&int.request("ACK", "", None));
        h.int(&int.request("BYE", "", None));
        h.cdrs.last().unwrap().trunk.clone()
    };
    assert_eq!(cdr_trunk.as_deref(), Some("gw2"));
    assert_eq!(h.cdrs.last().unwrap().called_sent, "00442079460002");
    assert_clean(&mut h);
}

/// Failover on a connect failure; the last trunk times out (no response at all): 504.
#[test]
fn outbound_failover_on_connect_failure_then_exhausted() {
    let mut h = H::new(config());
    h.int(&int_invite(
        "f2",
        "+442079460003",
        "",
        Some(&int_offer("a=sendrecv", "203.0.113.20")),
    ));
    let out = h.input(Input::ConnectFailed {
        side: Side::Ext,
        addr: addr(GW1),
    });
    assert_eq!(
        lines(&out),
        vec!["ext: INVITE sip:00442079460003@192.0.2.20:5060;transport=tcp"]
    );
    let out = h.advance(Duration::from_secs(33));
    assert_eq!(lines(&out), vec!["int: 504 Server Time-out"]);
    assert_eq!(h.cdrs.last().unwrap().cause, EndCause::Timeout);
    assert_clean(&mut h);
}

/// No route for the number: 404.
#[test]
fn outbound_no_route_404() {
    let mut h = H::new(config());
    let out = h.int(&int_invite(
        "nr",
        "+15551234567",
        "",
        Some(&int_offer("a=sendrecv", "203.0.113.20")),
    ));
    assert_eq!(lines(&out), vec!["int: 100 Trying", "int: 404 Not Found"]);
    assert_eq!(ev_refused(&h), vec![("no_route".to_owned(), 404)]);
    assert_clean(&mut h);
}

/// PRACK pass-through (RFC 3262): a reliable 183 is relayed reliably with our RSeq; the
/// gateway's PRACK becomes a PRACK on the internal leg with the internal RSeq/CSeq.
#[test]
fn prack_passthrough() {
    let mut h = H::new(config());
    let out = h.gw(&gw_invite(
        "p1",
        "Supported: 100rel, timer\r\n",
        Some(&gw_offer()),
    ));
    let inv = find(&sent(&out, Side::Int), "INVITE").clone();
    assert_eq!(hdr(&inv, "Supported").as_deref(), Some("timer, 100rel"));
    let out = h.int(&reply(
        &inv,
        183,
        "Session Progress",
        Some("p"),
        Some(int_contact()),
        "Require: 100rel\r\nRSeq: 7001\r\n",
        Some(&int_answer("a=sendrecv")),
    ));
    assert_eq!(lines(&out), vec!["ext: 183 Session Progress"]);
    let p = &sent(&out, Side::Ext)[0];
    assert_eq!(hdr(p, "Require").as_deref(), Some("100rel"));
    assert_eq!(hdr(p, "RSeq").as_deref(), Some("1"));
    assert!(out.iter().any(|o| matches!(o, Output::InstallMedia { .. })));
    // A retransmission of the reliable 183 (same RSeq) is not relayed again.
    let out = h.int(&reply(
        &inv,
        183,
        "Session Progress",
        Some("p"),
        Some(int_contact()),
        "Require: 100rel\r\nRSeq: 7001\r\n",
        Some(&int_answer("a=sendrecv")),
    ));
    assert!(lines(&out).is_empty());
    let mut gw = gw_ua(p, "p1");
    let out = h.gw(&gw.request("PRACK", "RAck: 1 1 INVITE\r\n", None));
    assert_eq!(
        lines(&out),
        vec!["int: PRACK sip:alice@203.0.113.20:5061;transport=tls"]
    );
    let prack = &sent(&out, Side::Int)[0];
    assert_eq!(hdr(prack, "RAck").as_deref(), Some("7001 1 INVITE"));
    let out = h.int(&reply(prack, 200, "OK", None, None, "", None));
    assert_eq!(lines(&out), vec!["ext: 200 OK"]);
    assert_eq!(
        hdr(&sent(&out, Side::Ext)[0], "CSeq").as_deref(),
        Some("2 PRACK")
    );
    // Answer, ACK, BYE.
    let out = h.int(&reply(
        &inv,
        200,
        "OK",
        Some("p"),
        Some(int_contact()),
        "",
        None,
    ));
    assert_eq!(lines(&out), vec!["ext: 200 OK"]);
    h.gw(&gw.request("ACK", "", None));
    h.gw(&gw.request("BYE", "", None));
    assert_clean(&mut h);
}

/// Without 100rel support on the caller side Tollgate PRACKs the reliable 183 itself and
/// relays it unreliably.
#[test]
fn prack_local_when_caller_lacks_100rel() {
    let mut h = H::new(config());
    let out = h.gw(&gw_invite("p2", "", Some(&gw_offer())));
    let inv = find(&sent(&out, Side::Int), "INVITE").clone();
    let out = h.int(&reply(
        &inv,
        183,
        "Session Progress",
        Some("p"),
        Some(int_contact()),
        "Require: 100rel\r\nRSeq: 9\r\n",
        Some(&int_answer("a=sendrecv")),
    ));
    assert_eq!(
        lines(&out),
        vec![
            "int: PRACK sip:alice@203.0.113.20:5061;transport=tls",
            "ext: 183 Session Progress"
        ]
    );
    assert_eq!(
        hdr(&sent(&out, Side::Int)[0], "RAck").as_deref(),
        Some("9 1 INVITE")
    );
    assert_eq!(hdr(&sent(&out, Side::Ext)[0], "Require"), None);
    h.int(&reply(&inv, 603, "Decline", Some("p"), None, "", None));
    assert_clean(&mut h);
}

/// In-dialog INFO (DTMF relay) and OPTIONS pass through; out-of-dialog OPTIONS is answered.
#[test]
fn info_and_options() {
    let mut h = H::new(config());
    let out = h.gw("OPTIONS sip:198.51.100.1:5060 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKo1\r\nMax-Forwards: 70\r\nFrom: <sip:gw@192.0.2.10>;tag=o1\r\nTo: <sip:198.51.100.1>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(lines(&out), vec!["ext: 200 OK"]);
    assert!(
        hdr(&sent(&out, Side::Ext)[0], "Allow")
            .unwrap()
            .contains("UPDATE")
    );
    let (mut gw, mut int, _) = inbound_answered(&mut h, "i1", "");
    let info = gw.request("INFO", "", None).replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\nSignal=5\r\nDuration=160\r\n",
    );
    let out = h.gw(&info);
    assert_eq!(
        lines(&out),
        vec!["int: INFO sip:alice@203.0.113.20:5061;transport=tls"]
    );
    let fwd = &sent(&out, Side::Int)[0];
    assert_eq!(body(fwd), "Signal=5\r\nDuration=160\r\n");
    assert_eq!(
        hdr(fwd, "Content-Type").as_deref(),
        Some("application/dtmf-relay")
    );
    let out = h.int(&reply(fwd, 200, "OK", None, None, "", None));
    assert_eq!(lines(&out), vec!["ext: 200 OK"]);
    let out = h.int(&int.request("OPTIONS", "", None));
    assert_eq!(
        lines(&out),
        vec!["ext: OPTIONS sip:gw@192.0.2.10:5060;transport=tcp"]
    );
    let o = &sent(&out, Side::Ext)[0];
    let out = h.gw(&reply(o, 200, "OK", None, None, "", None));
    assert_eq!(lines(&out), vec!["int: 200 OK"]);
    h.gw(&gw.request("BYE", "", None));
    assert_clean(&mut h);
}

/// An SAVP offer from the gateway side cannot be relayed: 488 with a Warning.
#[test]
fn unacceptable_sdp_488() {
    let mut h = H::new(config());
    let offer = gw_offer().replace("RTP/AVP", "RTP/SAVP");
    let out = h.gw(&gw_invite("s1", "", Some(&offer)));
    assert_eq!(
        lines(&out),
        vec!["ext: 100 Trying", "ext: 488 Not Acceptable Here"]
    );
    assert!(
        hdr(&sent(&out, Side::Ext)[1], "Warning")
            .unwrap()
            .contains("plain RTP")
    );
    assert_eq!(ev_refused(&h), vec![("not_acceptable".to_owned(), 488)]);
    assert_clean(&mut h);
}

/// RFC 4028 §8.1: an interval below our Min-SE gets 422 with Min-SE.
#[test]
fn session_interval_too_small_422() {
    let mut h = H::new(config());
    let out = h.gw(&gw_invite(
        "s2",
        "Session-Expires: 60\r\n",
        Some(&gw_offer()),
    ));
    assert_eq!(
        lines(&out),
        vec!["ext: 100 Trying", "ext: 422 Session Interval Too Small"]
    );
    assert_eq!(
        hdr(&sent(&out, Side::Ext)[1], "Min-SE").as_deref(),
        Some("90")
    );
    assert_clean(&mut h);
}

/// Session timers: the gateway lacks timer support so Tollgate refreshes its leg (UPDATE,
/// which it allows); the proxy is the refresher of its leg and stops refreshing: the session
/// expires and both legs get a BYE with a Reason.
#[test]
fn session_timer_refresh_and_expiry() {
    let mut cfg = config();
    cfg.sip.session_expires = 300;
    let mut h = H::new(cfg);
    let out = h.gw(&gw_invite(
        "st",
        "Allow: INVITE, ACK, BYE, CANCEL, UPDATE\r\n",
        Some(&gw_offer()),
    ));
    let inv = find(&sent(&out, Side::Int), "INVITE").clone();
    assert_eq!(hdr(&inv, "Session-Expires").as_deref(), Some("300"));
    let out = h.int(&reply(
        &inv,
        200,
        "OK",
        Some("s"),
        Some(int_contact()),
        "Require: timer\r\nSession-Expires: 300;refresher=uas\r\n",
        Some(&int_answer("a=sendrecv")),
    ));
    let ok = sent(&out, Side::Ext)[0].clone();
    assert_eq!(
        hdr(&ok, "Session-Expires").as_deref(),
        Some("300;refresher=uas")
    );
    assert_eq!(hdr(&ok, "Require"), None, "caller does not support timer");
    let mut gw = gw_ua(&ok, "st");
    h.gw(&gw.request("ACK", "", None));

    // At 150 s Tollgate refreshes the gateway leg with UPDATE.
    let out = h.advance(Duration::from_secs(150));
    assert_eq!(
        lines(&out),
        vec!["ext: UPDATE sip:gw@192.0.2.10:5060;transport=tcp"]
    );
    let upd = &sent(&out, Side::Ext)[0];
    assert_eq!(
        hdr(upd, "Session-Expires").as_deref(),
        Some("300;refresher=uac")
    );
    assert!(upd.body.is_empty());
    let out = h.gw(&reply(
        upd,
        200,
        "OK",
        None,
        Some("<sip:gw@192.0.2.10:5060;transport=tcp>"),
        "",
        None,
    ));
    assert!(lines(&out).is_empty());

    // The proxy never refreshes: its leg expires at 300 - 32 s.
    let out = h.advance(Duration::from_secs(117));
    assert!(lines(&out).is_empty(), "{:?}", lines(&out));
    let out = h.advance(Duration::from_secs(1));
    assert_eq!(
        lines(&out),
        vec![
            "ext: BYE sip:gw@192.0.2.10:5060;transport=tcp",
            "int: BYE sip:alice@203.0.113.20:5061;transport=tls"
        ]
    );
    assert_eq!(
        hdr(&sent(&out, Side::Int)[0], "Reason").as_deref(),
        Some("SIP;cause=408;text=\"Session Timer Expired\"")
    );
    assert_eq!(h.cdrs.last().unwrap().cause, EndCause::SessionExpired);
    assert_clean(&mut h);
}

/// A re-INVITE relayed end to end refreshes both legs' session timers.
#[test]
fn session_refresh_by_reinvite_from_caller() {
    let mut cfg = config();
    cfg.sip.session_expires = 300;
    let mut h = H::new(cfg);
    let out = h.gw(&gw_invite(
        "sr",
        "Supported: timer\r\nSession-Expires: 300;refresher=uac\r\n",
        Some(&gw_offer()),
    ));
    let inv = find(&sent(&out, Side::Int), "INVITE").clone();
    let out = h.int(&reply(
        &inv,
        200,
        "OK",
        Some("s"),
        Some(int_contact()),
        "Require: timer\r\nSession-Expires: 300;refresher=uac\r\n",
        Some(&int_answer("a=sendrecv")),
    ));
    let ok = sent(&out, Side::Ext)[0].clone();
    assert_eq!(
        hdr(&ok, "Session-Expires").as_deref(),
        Some("300;refresher=uac")
    );
    let mut gw = gw_ua(&ok, "sr");
    h.gw(&gw.request("ACK", "", None));
    // Tollgate refreshes the proxy leg at 150 s (refresher=uac on that leg is us) by
    // re-INVITE with its last SDP (the proxy did not allow UPDATE).
    let out = h.advance(Duration::from_secs(140));
    assert!(lines(&out).is_empty());
    // The gateway refreshes with a re-INVITE at 140 s: relayed, which refreshes both legs.
    let out = h.gw(&gw.request(
        "INVITE",
        "Supported: timer\r\nSession-Expires: 300;refresher=uac\r\n",
        Some(&gw_offer()),
    ));
    let reinv = find(&sent(&out, Side::Int), "INVITE").clone();
    assert_eq!(
        hdr(&reinv, "Session-Expires").as_deref(),
        Some("300;refresher=uac")
    );
    let out = h.int(&reply(
        &reinv,
        200,
        "OK",
        None,
        Some(int_contact()),
        "",
        Some(&int_answer("a=sendrecv")),
    ));
    let ok = sent(&out, Side::Ext)[0].clone();
    assert_eq!(
        hdr(&ok, "Session-Expires").as_deref(),
        Some("300;refresher=uac")
    );
    h.gw(&gw.request("ACK", "", None));
    // Nothing before 150 s after the refresh on the proxy leg.
    let out = h.advance(Duration::from_secs(149));
    assert!(lines(&out).is_empty(), "{:?}", lines(&out));
    let out = h.advance(Duration::from_secs(1));
    assert_eq!(
        lines(&out),
        vec!["int: INVITE sip:alice@203.0.113.20:5061;transport=tls"]
    );
    let r = sent(&out, Side::Int)[0].clone();
    assert!(body(&r).contains("RTP/SAVP"));
    let out = h.int(&reply(
        &r,
        200,
        "OK",
        None,
        Some(int_contact()),
        "",
        Some(&int_answer("a=sendrecv")),
    ));
    assert_eq!(
        lines(&out),
        vec!["int: ACK sip:alice@203.0.113.20:5061;transport=tls"]
    );
    h.gw(&gw.request("BYE", "", None));
    assert_clean(&mut h);
}

/// OPTIONS keepalives mark a trunk down on 503/timeout and up on 200; outbound routing skips
/// a down trunk.
#[test]
fn keepalive_marks_trunks() {
    let mut cfg = config();
    cfg.trunks[0].keepalive = Duration::from_secs(30);
    let mut h = H::new(cfg);
    assert_eq!(h.timers.len(), 1);
    let out = h.advance(Duration::ZERO);
    assert_eq!(lines(&out), vec!["ext: OPTIONS sip:192.0.2.10:5060"]);
    let o = sent(&out, Side::Ext)[0].clone();
    let out = h.gw(&reply(
        &o,
        503,
        "Service Unavailable",
        Some("k"),
        None,
        "",
        None,
    ));
    assert!(lines(&out).is_empty());
    assert_eq!(
        h.b.trunk_status(),
        vec![("gw1".to_owned(), false), ("gw2".to_owned(), true)]
    );
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, CallEvent::TrunkStatus { trunk, up: false } if trunk == "gw1"))
    );
    // Routing skips gw1.
    let out = h.int(&int_invite(
        "k1",
        "+442079460009",
        "",
        Some(&int_offer("a=sendrecv", "203.0.113.20")),
    ));
    assert_eq!(
        lines(&out)[1],
        "ext: INVITE sip:00442079460009@192.0.2.20:5060;transport=tcp"
    );
    let inv = sent(&out, Side::Ext)[0].clone();
    h.msg(
        Side::Ext,
        2,
        "192.0.2.20:42000",
        &reply(&inv, 486, "Busy Here", Some("b"), None, "", None),
    );
    // Next keepalive: 200 -> up.
    let out = h.advance(Duration::from_secs(30));
    let o = find(&sent(&out, Side::Ext), "OPTIONS").clone();
    h.gw(&reply(&o, 200, "OK", Some("k"), None, "", None));
    assert_eq!(h.b.trunk_status()[0], ("gw1".to_owned(), true));
    // A keepalive that times out marks it down again.
    h.advance(Duration::from_secs(30));
    h.advance(Duration::from_secs(33));
    assert_eq!(h.b.trunk_status()[0], ("gw1".to_owned(), false));
    assert_eq!(h.b.active_calls(), 0);
}

/// A delayed-offer INVITE (no SDP): the internal side's offer comes in its 200, the
/// gateway's answer in its ACK, rewritten into the internal ACK.
#[test]
fn delayed_offer() {
    let mut h = H::new(config());
    let out = h.gw(&gw_invite("do", "", None));
    let inv = find(&sent(&out, Side::Int), "INVITE").clone();
    assert!(inv.body.is_empty());
    let out = h.int(&reply(
        &inv,
        200,
        "OK",
        Some("d"),
        Some(int_contact()),
        "",
        Some(&int_offer("a=sendrecv", "203.0.113.20")),
    ));
    assert_eq!(lines(&out), vec!["ext: 200 OK"]);
    let ok = sent(&out, Side::Ext)[0].clone();
    assert!(body(&ok).contains("RTP/AVP"));
    let mut gw = gw_ua(&ok, "do");
    let out = h.gw(&gw.request("ACK", "", Some(&gw_answer("a=sendrecv"))));
    assert_eq!(
        lines(&out),
        vec!["int: ACK sip:alice@203.0.113.20:5061;transport=tls"]
    );
    let ack = &sent(&out, Side::Int)[0];
    assert!(body(ack).contains("RTP/SAVP"));
    assert!(body(ack).contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80"));
    assert!(out.iter().any(|o| matches!(o, Output::InstallMedia { .. })));
    h.gw(&gw.request("BYE", "", None));
    assert_clean(&mut h);
}

/// No ACK for the 2xx within 64·T1: the call is ended with BYE on both legs.
#[test]
fn missing_ack_ends_call() {
    let mut h = H::new(config());
    let out = h.gw(&gw_invite("na", "", Some(&gw_offer())));
    let inv = find(&sent(&out, Side::Int), "INVITE").clone();
    h.int(&reply(
        &inv,
        200,
        "OK",
        Some("a"),
        Some(int_contact()),
        "",
        Some(&int_answer("a=sendrecv")),
    ));
    let out = h.advance(Duration::from_secs(33));
    assert_eq!(
        lines(&out),
        vec![
            "int: ACK sip:alice@203.0.113.20:5061;transport=tls",
            "ext: BYE sip:gw@192.0.2.10:5060;transport=tcp",
            "int: BYE sip:alice@203.0.113.20:5061;transport=tls"
        ]
    );
    assert_eq!(h.cdrs.last().unwrap().cause, EndCause::NoAck);
    assert_clean(&mut h);
}

/// Requests for dialogs that do not exist get 481; they never touch another call.
#[test]
fn unknown_dialog_481() {
    let mut h = H::new(config());
    let (mut gw, _, _) = inbound_answered(&mut h, "u1", "");
    let mut stranger = gw.clone();
    stranger.them = stranger.them.replace("tag=", "tag=x");
    let out = h.gw(&stranger.request("BYE", "", None));
    assert_eq!(
        lines(&out),
        vec!["ext: 481 Call/Transaction Does Not Exist"]
    );
    assert_eq!(h.b.active_calls(), 1);
    h.gw(&gw.request("BYE", "", None));
    assert_clean(&mut h);
}

/// Timer C on a relayed re-INVITE: the gateway answers 180 and then nothing; after the
/// no-answer time the re-INVITE is CANCELed, the requester gets 487 and the call ends.
#[test]
fn stuck_reinvite_is_bounded() {
    let mut h = H::new(config());
    let (_, mut int, _) = inbound_answered(&mut h, "tc", "");
    let out = h.int(&int.request("INVITE", "", Some(&int_offer("a=sendonly", "203.0.113.20"))));
    let reinv = sent(&out, Side::Ext)[0].clone();
    h.gw(&reply(&reinv, 180, "Ringing", None, None, "", None));
    let out = h.advance(Duration::from_secs(181));
    assert_eq!(
        lines(&out),
        vec![
            "ext: BYE sip:gw@192.0.2.10:5060;transport=tcp",
            "int: BYE sip:alice@203.0.113.20:5061;transport=tls",
            "int: 487 Request Terminated",
            "ext: CANCEL sip:gw@192.0.2.10:5060;transport=tcp"
        ]
    );
    assert_eq!(h.cdrs.last().unwrap().cause, EndCause::Timeout);
    assert_clean(&mut h);
}

/// UPDATE with a new offer from the gateway (RFC 3311), then a re-INVITE from the internal
/// side with a new SRTP key (re-keying): each updates the flow in place.
#[test]
fn update_and_rekeying() {
    let mut h = H::new(config());
    let (mut gw, mut int, _) = inbound_answered(&mut h, "uk", "");
    let flow_id = *h.installed.keys().next().unwrap();
    let moved = gw_offer().replace("c=IN IP4 192.0.2.10", "c=IN IP4 192.0.2.11");
    let out = h.gw(&gw.request("UPDATE", "", Some(&moved)));
    assert_eq!(
        lines(&out),
        vec!["int: UPDATE sip:alice@203.0.113.20:5061;transport=tls"]
    );
    let upd = sent(&out, Side::Int)[0].clone();
    assert!(body(&upd).contains("RTP/SAVP"));
    let out = h.int(&reply(
        &upd,
        200,
        "OK",
        None,
        Some(int_contact()),
        "",
        Some(&int_answer("a=sendrecv")),
    ));
    assert_eq!(lines(&out), vec!["ext: 200 OK"]);
    assert!(body(&sent(&out, Side::Ext)[0]).contains("RTP/AVP"));
    let spec = &h.installed[&flow_id].1;
    assert_eq!(spec.ext.remote_rtp, Some(addr("192.0.2.11:40000")));

    // Re-keying from the internal side.
    let rekey = int_offer("a=sendrecv", "203.0.113.20")
        .replace(KEY1, "inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk")
        .replace(
            &format!("a=crypto:2 AES_CM_128_HMAC_SHA1_32 {KEY2}\r\n"),
            "",
        );
    let out = h.int(&int.request("INVITE", "", Some(&rekey)));
    let reinv = sent(&out, Side::Ext)[0].clone();
    assert!(!body(&reinv).contains("crypto"));
    h.gw(&reply(
        &reinv,
        200,
        "OK",
        None,
        Some("<sip:gw@192.0.2.10:5060;transport=tcp>"),
        "",
        Some(&gw_answer("a=sendrecv")),
    ));
    match &h.installed[&flow_id].1.int_to_ext {
        TransformSpec::Unprotect(k) => {
            assert_eq!(
                k.to_sdes(),
                "inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk"
            );
        }
        t => panic!("{t:?}"),
    }
    h.int(&int.request("ACK", "", None));
    h.int(&int.request("BYE", "", None));
    assert_clean(&mut h);
}

/// Reload: new routes and limits apply to new calls; the call in progress continues.
#[test]
fn reload_keeps_calls() {
    let mut h = H::new(config());
    let (mut gw, _, _) = inbound_answered(&mut h, "rl", "");
    let mut cfg = config();
    cfg.routes = vec![tollgate_b2bua::Route::new(r"^\+", &["gw2"]).unwrap()];
    cfg.sip.max_calls = 1;
    h.input(Input::Reload(Box::new(cfg)));
    assert_eq!(h.b.active_calls(), 1);
    // max_calls = 1: a second call is refused while the first runs.
    let out = h.int(&int_invite(
        "rl2",
        "+442079460001",
        "",
        Some(&int_offer("a=sendrecv", "203.0.113.20")),
    ));
    assert_eq!(
        lines(&out),
        vec!["int: 100 Trying", "int: 503 Service Unavailable"]
    );
    let out = h.gw(&gw.request("BYE", "", None));
    assert_eq!(
        lines(&out),
        vec![
            "ext: 200 OK",
            "int: BYE sip:alice@203.0.113.20:5061;transport=tls"
        ]
    );
    // Now the new route (gw2 only) is used.
    let out = h.int(&int_invite(
        "rl3",
        "+442079460001",
        "",
        Some(&int_offer("a=sendrecv", "203.0.113.20")),
    ));
    assert_eq!(
        lines(&out)[1],
        "ext: INVITE sip:00442079460001@192.0.2.20:5060;transport=tcp"
    );
    let inv = sent(&out, Side::Ext)[0].clone();
    h.msg(
        Side::Ext,
        2,
        "192.0.2.20:42000",
        &reply(&inv, 404, "Not Found", Some("n"), None, "", None),
    );
    assert_clean(&mut h);
}

/// Relay ports run out: the next INVITE is Tollgate's overload, answered 503 with Retry-After
/// (not 488: the offer was fine), and the call in progress is unaffected.
#[test]
fn out_of_relay_ports_is_503() {
    let mut cfg = config();
    // One RTP/RTCP pair per side.
    let ext0 = *cfg.media.ext_ports.start();
    let int0 = *cfg.media.int_ports.start();
    cfg.media.ext_ports = ext0..=ext0 + 1;
    cfg.media.int_ports = int0..=int0 + 1;
    let mut h = H::new(cfg);
    let (mut gw, _, _) = inbound_answered(&mut h, "p1", "");
    assert_eq!(h.b.allocated_ports(), (1, 1));
    let out = h.gw(&gw_invite("p2", "", Some(&gw_offer())));
    assert_eq!(
        lines(&out),
        vec!["ext: 100 Trying", "ext: 503 Service Unavailable"]
    );
    let ext_msgs = sent(&out, Side::Ext);
    let refusal = find(&ext_msgs, "503");
    assert!(
        refusal
            .headers
            .get_value(&tollgate_sip::header::HeaderName::RetryAfter)
            .is_some()
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(CallEvent::Refused { status: 503, .. })))
    );
    let out = h.gw(&gw.request("BYE", "", None));
    assert_eq!(lines(&out)[0], "ext: 200 OK");
    assert_clean(&mut h);
}

/// RFC 3311 in an early dialog (a delayed-offer INVITE, so the UPDATE carries the first
/// offer): the gateway's UPDATE is relayed, but the proxy's 2xx carries no answer. The UPDATE gets 502, the still-ringing INVITE gets 502 too, the proxy's
/// INVITE is cancelled, and nothing is left behind.
#[test]
fn early_update_answered_without_sdp_fails_both_transactions() {
    let mut h = H::new(config());
    let out = h.gw(&gw_invite("eu", "", None));
    let inv = find(&sent(&out, Side::Int), "INVITE").clone();
    let out = h.int(&reply(
        &inv,
        180,
        "Ringing",
        Some("int1"),
        Some(int_contact()),
        "",
        None,
    ));
    let ringing = find(&sent(&out, Side::Ext), "180").clone();
    let mut gw = gw_ua(&ringing, "eu");
    let moved = gw_offer().replace("c=IN IP4 192.0.2.10", "c=IN IP4 192.0.2.11");
    let out = h.gw(&gw.request("UPDATE", "", Some(&moved)));
    let upd = find(&sent(&out, Side::Int), "UPDATE").clone();
    let out = h.int(&reply(&upd, 200, "OK", None, Some(int_contact()), "", None));
    assert_eq!(
        lines(&out),
        vec![
            "ext: 502 Bad Gateway",
            "ext: 502 Bad Gateway",
            "int: CANCEL sip:+442079460000@proxy.corp.example:5061;transport=tls"
        ]
    );
    let ext = sent(&out, Side::Ext);
    assert_eq!(hdr(&ext[0], "CSeq").as_deref(), Some("2 UPDATE"));
    assert!(hdr(&ext[0], "Warning").unwrap().contains("no SDP"));
    assert_eq!(hdr(&ext[1], "CSeq").as_deref(), Some("1 INVITE"));
    let cdr = h.cdrs.last().unwrap();
    assert_eq!((cdr.cause, cdr.status), (EndCause::ProtocolError, 502));
    let cancel = find(&sent(&out, Side::Int), "CANCEL").clone();
    h.int(&reply(&cancel, 200, "OK", None, None, "", None));
    h.int(&reply(
        &inv,
        487,
        "Request Terminated",
        Some("int1"),
        None,
        "",
        None,
    ));
    assert_clean(&mut h);
}

/// A confirmed call whose re-offer (UPDATE) gets a 2xx with SDP that cannot be negotiated:
/// the requester's UPDATE gets 488 and the call ends with BYE on both legs.
#[test]
fn update_answered_with_unusable_sdp_ends_call() {
    let mut h = H::new(config());
    let (mut gw, _, _) = inbound_answered(&mut h, "ub", "");
    let out = h.gw(&gw.request("UPDATE", "", Some(&gw_offer())));
    let upd = find(&sent(&out, Side::Int), "UPDATE").clone();
    // Plain RTP on the internal side is not acceptable.
    let bad = int_answer("a=sendrecv").replace("RTP/SAVP", "RTP/AVP");
    let out = h.int(&reply(
        &upd,
        200,
        "OK",
        None,
        Some(int_contact()),
        "",
        Some(&bad),
    ));
    assert_eq!(
        lines(&out),
        vec![
            "ext: 488 Not Acceptable Here",
            "ext: BYE sip:gw@192.0.2.10:5060;transport=tcp",
            "int: BYE sip:alice@203.0.113.20:5061;transport=tls"
        ]
    );
    let cdr = h.cdrs.last().unwrap();
    assert_eq!((cdr.cause, cdr.status), (EndCause::MediaNegotiation, 200));
    assert_clean(&mut h);
}

/// A forking proxy (parallel ringing): two forks give early media in turn, then the first
/// answers with a 2xx without SDP (its answer was in its 183). The media in force follows the
/// fork that answered, not the one that spoke last.
#[test]
fn forked_early_media_then_answer_from_the_first_fork() {
    let mut h = H::new(config());
    let out = h.gw(&gw_invite("fk", "", Some(&gw_offer())));
    let inv = find(&sent(&out, Side::Int), "INVITE").clone();
    let fork_b_key = "inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk";
    let fork_b = int_answer("a=sendrecv")
        .replace("c=IN IP4 203.0.113.20", "c=IN IP4 203.0.113.21")
        .replace("m=audio 50000", "m=audio 50002")
        .replace(KEY1, fork_b_key);
    let out = h.int(&reply(
        &inv,
        183,
        "Session Progress",
        Some("fa"),
        Some(int_contact()),
        "",
        Some(&int_answer("a=sendrecv")),
    ));
    assert_eq!(lines(&out), vec!["ext: 183 Session Progress"]);
    let flow = *h.installed.keys().next().expect("early media flow");
    assert_eq!(
        h.installed[&flow].1.int.remote_rtp,
        Some(addr("203.0.113.20:50000"))
    );
    let out = h.int(&reply(
        &inv,
        183,
        "Session Progress",
        Some("fb"),
        Some("<sip:bob@203.0.113.21:5061;transport=tls>"),
        "",
        Some(&fork_b),
    ));
    assert_eq!(lines(&out), vec!["ext: 183 Session Progress"]);
    assert_eq!(
        h.installed[&flow].1.int.remote_rtp,
        Some(addr("203.0.113.21:50002")),
        "the latest early media plays"
    );

    let out = h.int(&reply(
        &inv,
        200,
        "OK",
        Some("fa"),
        Some(int_contact()),
        "",
        None,
    ));
    assert_eq!(lines(&out), vec!["ext: 200 OK"]);
    assert!(body(&sent(&out, Side::Ext)[0]).contains("RTP/AVP"));
    let spec = &h.installed[&flow].1;
    assert_eq!(
        spec.int.remote_rtp,
        Some(addr("203.0.113.20:50000")),
        "the answering fork's media"
    );
    match &spec.int_to_ext {
        TransformSpec::Unprotect(k) => assert_eq!(k.to_sdes(), KEY1, "the answering fork's key"),
        t => panic!("{t:?}"),
    }
    let ok = sent(&out, Side::Ext)[0].clone();
    let mut gw = gw_ua(&ok, "fk");
    h.gw(&gw.request("ACK", "", None));
    h.gw(&gw.request("BYE", "", None));
    assert_clean(&mut h);
}

/// Topology hiding and the trust boundary: only allowlisted headers cross. A gateway cannot
/// assert an identity inside (P-Asserted-Identity dropped) nor smuggle unknown headers in; the
/// internal side's software, hosts and history do not leak out, its asserted identity does.
/// An operator-listed header crosses both ways.
#[test]
fn only_allowlisted_headers_cross() {
    let mut cfg = config();
    cfg.sip.pass_headers = vec!["X-Carrier-Ref".into()];
    let mut h = H::new(cfg);
    let extra = "Subject: urgent\r\nP-Asserted-Identity: <sip:ceo@corp.example>\r\nUser-Agent: GW/1.0\r\nX-Secret: 1\r\nPrivacy: id\r\nDiversion: <sip:01632960009@192.0.2.10>;reason=unconditional\r\nX-Carrier-Ref: 42\r\n";
    let out = h.gw(&gw_invite("hd", extra, Some(&gw_offer())));
    let inv = find(&sent(&out, Side::Int), "INVITE").clone();
    for (name, want) in [
        ("Subject", Some("urgent")),
        ("Privacy", Some("id")),
        (
            "Diversion",
            Some("<sip:01632960009@192.0.2.10>;reason=unconditional"),
        ),
        ("X-Carrier-Ref", Some("42")),
        ("P-Asserted-Identity", None),
        ("User-Agent", None),
        ("X-Secret", None),
    ] {
        assert_eq!(hdr(&inv, name).as_deref(), want, "INVITE to int: {name}");
    }
    let extra = "Server: PBX/9.1\r\nP-Asserted-Identity: <sip:+442079460000@corp.example>\r\nWarning: 399 pbx7.corp.example \"routed\"\r\nHistory-Info: <sip:alice@pbx7.corp.example>;index=1\r\nX-Carrier-Ref: 43\r\n";
    let out = h.int(&reply(
        &inv,
        200,
        "OK",
        Some("int1"),
        Some(int_contact()),
        extra,
        Some(&int_answer("a=sendrecv")),
    ));
    let ok = find(&sent(&out, Side::Ext), "200").clone();
    for (name, want) in [
        (
            "P-Asserted-Identity",
            Some("<sip:+442079460000@corp.example>"),
        ),
        ("X-Carrier-Ref", Some("43")),
        ("Server", None),
        ("Warning", None),
        ("History-Info", None),
    ] {
        assert_eq!(hdr(&ok, name).as_deref(), want, "200 to gw: {name}");
    }
    let mut gw = gw_ua(&ok, "hd");
    h.gw(&gw.request("ACK", "", None));
    // In-dialog: a BYE's Reason (Q.850 cause) crosses, its User-Agent does not.
    let out = h.gw(&gw.request(
        "BYE",
        "Reason: Q.850;cause=16\r\nUser-Agent: GW/1.0\r\n",
        None,
    ));
    let bye = find(&sent(&out, Side::Int), "BYE").clone();
    assert_eq!(hdr(&bye, "Reason").as_deref(), Some("Q.850;cause=16"));
    assert_eq!(hdr(&bye, "User-Agent"), None);
    assert_clean(&mut h);
}

/// Delayed offer with early media (RFC 3262 §5): the gateway's INVITE has no SDP; the proxy
/// offers SRTP in a reliable 183, which reaches the gateway reliably as an RTP/AVP offer; the
/// gateway's PRACK answers, and the PRACK toward the proxy carries the SRTP answer. Media is
/// installed then, and the 2xx carries no new offer.
#[test]
fn delayed_offer_answered_in_prack() {
    let mut h = H::new(config());
    let out = h.gw(&gw_invite("dp", "Supported: 100rel\r\n", None));
    let inv = find(&sent(&out, Side::Int), "INVITE").clone();
    assert!(body(&inv).is_empty(), "delayed offer goes on as one");
    let out = h.int(&reply(
        &inv,
        183,
        "Session Progress",
        Some("p"),
        Some(int_contact()),
        "Require: 100rel\r\nRSeq: 51\r\n",
        Some(&int_offer("a=sendrecv", "203.0.113.20")),
    ));
    assert_eq!(lines(&out), vec!["ext: 183 Session Progress"]);
    let p183 = sent(&out, Side::Ext)[0].clone();
    assert_eq!(hdr(&p183, "Require").as_deref(), Some("100rel"));
    let offer = body(&p183);
    assert!(offer.contains("RTP/AVP"), "{offer}");
    assert!(!offer.contains("crypto"), "{offer}");
    assert!(!out.iter().any(|o| matches!(o, Output::InstallMedia { .. })));

    let mut gw = gw_ua(&p183, "dp");
    let out = h.gw(&gw.request(
        "PRACK",
        "RAck: 1 1 INVITE\r\n",
        Some(&gw_answer("a=sendrecv")),
    ));
    assert_eq!(
        lines(&out),
        vec!["int: PRACK sip:alice@203.0.113.20:5061;transport=tls"]
    );
    let prack = sent(&out, Side::Int)[0].clone();
    assert_eq!(hdr(&prack, "RAck").as_deref(), Some("51 1 INVITE"));
    let answer = body(&prack);
    assert!(answer.contains("RTP/SAVP"), "{answer}");
    assert!(answer.contains("a=crypto:"), "{answer}");
    let spec = out
        .iter()
        .find_map(|o| match o {
            Output::InstallMedia { spec, .. } => Some(spec.clone()),
            _ => None,
        })
        .expect("media installed on the answer");
    assert_eq!(spec.ext.remote_rtp, Some(addr("192.0.2.10:40000")));
    assert_eq!(spec.int.remote_rtp, Some(addr("203.0.113.20:50000")));

    let out = h.int(&reply(&prack, 200, "OK", None, None, "", None));
    assert_eq!(lines(&out), vec!["ext: 200 OK"]);
    let out = h.int(&reply(
        &inv,
        200,
        "OK",
        Some("p"),
        Some(int_contact()),
        "",
        None,
    ));
    assert_eq!(lines(&out), vec!["ext: 200 OK"]);
    assert!(body(&sent(&out, Side::Ext)[0]).is_empty());
    h.gw(&gw.request("ACK", "", None));
    let out = h.gw(&gw.request("BYE", "", None));
    assert!(lines(&out).contains(&"int: BYE sip:alice@203.0.113.20:5061;transport=tls".to_owned()));
    assert_clean(&mut h);
}
