//! Scenario tests: RFC 3665 basic call flows and RFC 3666 PSTN interworking flows adapted to a
//! B2BUA, driven with SIP text on both legs and a simulated clock, asserting the messages sent
//! (start lines and key headers), the media flows and the CDRs.

mod common;

use std::time::Duration;

use common::*;
use tollgate_b2bua::{CallEvent, Direction, EndCause, Input, Output, Side, Target, Transport};
use tollgate_relay::TransformSpec;
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
            "int: INVITE sip:+442079460000@proxy.corp.example",
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
