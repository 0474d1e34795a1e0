//! What an operator sees and does through the core (`tollgate ctl`): calls and their legs with
//! keys redacted, ending a call by hand, taking a trunk out of service.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::time::Duration;

use common::*;
use tollgate_b2bua::inspect::CallPhase;
use tollgate_b2bua::{Direction, EndCause, Input, Output, Side};

/// An inbound call up to the ACK; returns the gateway's and the proxy's 2xx-side views.
fn confirmed_inbound_call(h: &mut H, id: &str) {
    let out = h.gw(&gw_invite(id, "", Some(&gw_offer())));
    let inv = find(&sent(&out, Side::Int), "INVITE").clone();
    let out = h.int(&reply(
        &inv,
        200,
        "OK",
        Some(&format!("p{id}")),
        Some("<sip:alice@203.0.113.20:5061;transport=tls>"),
        "",
        Some(&int_answer("a=sendrecv")),
    ));
    let ok = find(&sent(&out, Side::Ext), "200").clone();
    let mut gw = gw_ua(&ok, id);
    h.gw(&gw.request("ACK", "", None));
}

#[test]
fn calls_are_listed_with_both_legs_and_no_key() {
    let mut h = H::new(config());
    confirmed_inbound_call(&mut h, "op1");
    h.advance(Duration::from_secs(3));
    let calls = h.b.call_summaries(h.now);
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c.direction, Direction::Inbound);
    assert_eq!(c.trunk.as_deref(), Some("gw1"));
    assert_eq!(c.called, "02079460000");
    assert_eq!(c.phase, CallPhase::Confirmed);
    assert_eq!(c.age, Duration::from_secs(3));
    assert_eq!(c.flows.len(), 1);
    let d = h.b.call_detail(c.id, h.now).unwrap();
    assert_eq!(d.called_sent, "+442079460000");
    let [ext, int] = &d.legs;
    assert_eq!(ext.call_id, "op1@192.0.2.10");
    assert_eq!(ext.remote_tag.as_deref(), Some("gwop1"));
    assert_eq!(int.remote_tag.as_deref(), Some("pop1"));
    assert_eq!(
        int.remote_target.as_deref(),
        Some("sip:alice@203.0.113.20:5061;transport=tls")
    );
    assert_eq!(int.session, Some((1800, "tollgate")));
    let sdp = int.sdp_sent.as_deref().unwrap();
    assert!(
        sdp.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<redacted>"),
        "{sdp}"
    );
    let f = &d.flows[0];
    assert_eq!(f.ext_to_int, "protect AES_CM_128_HMAC_SHA1_80");
    assert_eq!(f.int_to_ext, "unprotect AES_CM_128_HMAC_SHA1_80");
    // No key material anywhere in what an operator can print.
    let printed = format!("{d:?}");
    let offer_key = sdp.contains("inline:<redacted>");
    assert!(offer_key && !printed.contains("KeyMaterial"), "{printed}");
    assert!(h.b.call_detail(999, h.now).is_none());
    assert_clean_after_bye(&mut h);
}

fn assert_clean_after_bye(h: &mut H) {
    let id = h.b.call_summaries(h.now)[0].id;
    h.input(Input::Hangup {
        call: id,
        reason: "test over".into(),
    });
    assert_clean(h);
}

#[test]
fn hangup_sends_bye_both_ways_with_the_reason_in_the_cdr() {
    let mut h = H::new(config());
    confirmed_inbound_call(&mut h, "op2");
    let id = h.b.call_summaries(h.now)[0].id;
    let out = h.input(Input::Hangup {
        call: id,
        reason: "stuck \"call\"\r\nX: y".into(),
    });
    let byes: Vec<_> = [Side::Ext, Side::Int]
        .into_iter()
        .map(|s| find(&sent(&out, s), "BYE").clone())
        .collect();
    for b in &byes {
        assert_eq!(
            hdr(b, "Reason").as_deref(),
            Some("Q.850;cause=16;text=\"operator: stuck callX: y\"")
        );
    }
    let cdr = h.cdrs.last().unwrap();
    assert_eq!(cdr.cause, EndCause::Operator);
    assert_eq!(cdr.note.as_deref(), Some("stuck \"call\"\r\nX: y"));
    let again = h.input(Input::Hangup {
        call: id,
        reason: "again".into(),
    });
    assert!(
        again.iter().all(|o| !matches!(o, Output::Send { .. })),
        "gone"
    );
    assert!(out.iter().any(|o| matches!(o, Output::RemoveMedia { .. })));
    // The peers answer their BYEs.
    h.gw(&reply(&byes[0], 200, "OK", None, None, "", None));
    h.int(&reply(&byes[1], 200, "OK", None, None, "", None));
    assert_clean(&mut h);
}

#[test]
fn a_disabled_trunk_takes_no_new_calls_either_way() {
    let mut h = H::new(config());
    confirmed_inbound_call(&mut h, "op3");
    assert!(h.b.set_trunk_enabled("gw1", false));
    assert!(!h.b.set_trunk_enabled("nope", false));
    let v = h.b.trunk_views(h.now);
    let gw1 = v.iter().find(|t| t.name == "gw1").unwrap();
    assert!(gw1.disabled && gw1.options_up);
    assert_eq!(gw1.calls, 1, "the call in progress goes on");
    assert!(gw1.cps > 0.0);
    let out = h.gw(&gw_invite("op4", "", Some(&gw_offer())));
    let r = find(&sent(&out, Side::Ext), "503").clone();
    assert_eq!(hdr(&r, "Retry-After").as_deref(), Some("30"));
    assert!(ev_refused(&h).contains(&("trunk_disabled".to_owned(), 503)));
    // Outbound: the route skips gw1 for gw2.
    let out = h.int(&int_invite(
        "op5",
        "+442079460005",
        "",
        Some(&int_offer("a=sendrecv", "203.0.113.20")),
    ));
    assert_eq!(
        line(find(&sent(&out, Side::Ext), "INVITE")),
        "INVITE sip:00442079460005@192.0.2.20:5060;transport=tcp"
    );
    assert!(h.b.set_trunk_enabled("gw1", true));
    let out = h.gw(&gw_invite("op6", "", Some(&gw_offer())));
    assert!(!sent(&out, Side::Int).is_empty(), "gw1 takes calls again");
    assert_eq!(h.b.call_summaries(h.now).len(), 3);
    for c in h.b.call_summaries(h.now) {
        h.input(Input::Hangup {
            call: c.id,
            reason: "end of test".into(),
        });
    }
    assert_clean(&mut h);
}
