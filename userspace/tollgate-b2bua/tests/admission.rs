//! Call admission in the sans-IO core: rate and concurrency limits per trunk and overall, the
//! next hop's rate cap and its down marking after 503 or no answer. Every refusal is a 503
//! with a Retry-After, before any port, key or call state exists.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::time::Duration;

use common::*;
use tollgate_b2bua::{CallEvent, Input, RateLimit, RefuseReason, Side};

fn not_admitted(h: &H) -> Vec<(String, RefuseReason)> {
    h.events
        .iter()
        .filter_map(|e| match e {
            CallEvent::NotAdmitted { trunk, reason } => Some((trunk.clone(), *reason)),
            _ => None,
        })
        .collect()
}

/// Final (and 18x) statuses sent on `side`: the transaction layer's 100 Trying left out.
fn statuses(out: &[tollgate_b2bua::Output], side: Side) -> Vec<u16> {
    sent(out, side)
        .iter()
        .filter_map(|m| m.status())
        .filter(|s| *s != 100)
        .collect()
}

/// The one final response on `side`.
fn final_response(out: &[tollgate_b2bua::Output], side: Side) -> tollgate_sip::Message {
    let f: Vec<_> = sent(out, side)
        .into_iter()
        .filter(|m| m.status().is_some_and(|s| s >= 200))
        .collect();
    assert_eq!(f.len(), 1, "one final response");
    f[0].clone()
}

/// A flood from a trunk over its rate: the burst goes through, the rest gets 503 with a
/// Retry-After at once, without relay ports or a call; the internal side sees only what was
/// admitted, and the bucket refills at the configured rate.
#[test]
fn trunk_flood_gets_503_before_anything_is_allocated() {
    let mut cfg = config();
    cfg.trunks[0].max_cps = Some(RateLimit {
        per_second: 2,
        burst: 3,
    });
    cfg.media.ext_ports = 20000..=20099;
    cfg.media.int_ports = 30000..=30099;
    let mut h = H::new(cfg);
    let mut forwarded = 0;
    for i in 0..20 {
        let out = h.gw(&gw_invite(&format!("fl{i}"), "", Some(&gw_offer())));
        let to_int = sent(&out, Side::Int)
            .iter()
            .filter(|m| m.method().is_some_and(|m| m.as_str() == "INVITE"))
            .count();
        forwarded += to_int;
        if i >= 3 {
            assert_eq!(to_int, 0, "INVITE {i} passed the trunk's bucket");
            let refusal = final_response(&out, Side::Ext);
            assert_eq!(refusal.status(), Some(503));
            assert_eq!(hdr(&refusal, "Retry-After").as_deref(), Some("1"));
        }
    }
    assert_eq!(forwarded, 3);
    assert_eq!(h.b.active_calls(), 3);
    assert_eq!(h.b.trunk_calls("gw1"), 3);
    let (ext_ports, _) = h.b.allocated_ports();
    let per_call = ext_ports / 3;
    assert!(per_call > 0);
    let refused = not_admitted(&h);
    assert_eq!(refused.len(), 17);
    assert!(
        refused
            .iter()
            .all(|(t, r)| t == "gw1" && *r == RefuseReason::TrunkRate)
    );
    assert_eq!(
        ev_refused(&h)
            .iter()
            .filter(|(r, s)| r == "trunk_rate" && *s == 503)
            .count(),
        17
    );
    // 2 calls/s: half a second later one more goes through, then none.
    h.advance(Duration::from_millis(500));
    let out = h.gw(&gw_invite("late1", "", Some(&gw_offer())));
    assert_eq!(statuses(&out, Side::Ext), Vec::<u16>::new());
    let out = h.gw(&gw_invite("late2", "", Some(&gw_offer())));
    assert_eq!(statuses(&out, Side::Ext), vec![503]);
    assert_eq!(h.b.allocated_ports().0, 4 * per_call);
    // Calls that were admitted end as usual; nothing stays counted.
    assert_clean(&mut h);
}

/// The trunk's concurrent call limit counts calls in both directions and frees a place when
/// a call ends.
#[test]
fn trunk_concurrent_calls_limit() {
    let mut cfg = config();
    cfg.trunks[0].max_calls = 2;
    let mut h = H::new(cfg);
    let out1 = h.gw(&gw_invite("cc1", "", Some(&gw_offer())));
    assert_eq!(statuses(&out1, Side::Ext), Vec::<u16>::new());
    // An outbound call routed to gw1 counts too.
    let out2 = h.int(&int_invite(
        "cc2",
        "+442079460002",
        "",
        Some(&int_offer("a=sendrecv", "203.0.113.20")),
    ));
    assert_eq!(
        line(find(&sent(&out2, Side::Ext), "INVITE")),
        "INVITE sip:02079460002@192.0.2.10:5060;transport=tcp"
    );
    assert_eq!(h.b.trunk_calls("gw1"), 2);
    let out3 = h.gw(&gw_invite("cc3", "", Some(&gw_offer())));
    let r = final_response(&out3, Side::Ext);
    assert_eq!(r.status(), Some(503));
    assert_eq!(hdr(&r, "Retry-After").as_deref(), Some("30"));
    // A third outbound call skips the full gw1 and goes to gw2.
    let out4 = h.int(&int_invite(
        "cc4",
        "+442079460004",
        "",
        Some(&int_offer("a=sendrecv", "203.0.113.20")),
    ));
    assert_eq!(
        line(find(&sent(&out4, Side::Ext), "INVITE")),
        "INVITE sip:00442079460004@192.0.2.20:5060;transport=tcp"
    );
    assert_eq!(
        not_admitted(&h),
        vec![("gw1".to_owned(), RefuseReason::TrunkCalls)]
    );
    // The first call is cancelled: its place is free again.
    let inv = find(&sent(&out1, Side::Int), "INVITE").clone();
    let out = h.int(&reply(&inv, 486, "Busy Here", Some("p1"), None, "", None));
    assert!(statuses(&out, Side::Ext).contains(&486));
    assert_eq!(h.b.trunk_calls("gw1"), 1);
    let out5 = h.gw(&gw_invite("cc5", "", Some(&gw_offer())));
    assert_eq!(statuses(&out5, Side::Ext), Vec::<u16>::new());
    assert_clean(&mut h);
}

/// The internal next hop answers 503 with Retry-After: it is marked down for that long, new
/// inbound calls get 503 at once (with the time left), and calls go to it again afterwards.
#[test]
fn next_hop_503_marks_it_down_for_its_retry_after() {
    let mut h = H::new(config());
    let out = h.gw(&gw_invite("nh1", "", Some(&gw_offer())));
    let inv = find(&sent(&out, Side::Int), "INVITE").clone();
    let out = h.int(&reply(
        &inv,
        503,
        "Service Unavailable",
        Some("p1"),
        None,
        "Retry-After: 20\r\n",
        None,
    ));
    assert!(statuses(&out, Side::Ext).contains(&503));
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, CallEvent::NextHop { addr: a, up: false } if *a == addr(PROXY)))
    );
    assert!(h.b.next_hop_down(addr(PROXY), h.now));
    h.advance(Duration::from_secs(5));
    let out = h.gw(&gw_invite("nh2", "", Some(&gw_offer())));
    let r = final_response(&out, Side::Ext);
    assert_eq!(r.status(), Some(503));
    assert_eq!(hdr(&r, "Retry-After").as_deref(), Some("15"));
    assert!(
        sent(&out, Side::Int).is_empty(),
        "nothing sent to a next hop marked down"
    );
    assert_eq!(
        not_admitted(&h),
        vec![("gw1".to_owned(), RefuseReason::NextHopDown)]
    );
    h.advance(Duration::from_secs(16));
    let out = h.gw(&gw_invite("nh3", "", Some(&gw_offer())));
    let inv = find(&sent(&out, Side::Int), "INVITE").clone();
    let out = h.int(&reply(&inv, 486, "Busy Here", Some("p3"), None, "", None));
    assert!(statuses(&out, Side::Ext).contains(&486));
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, CallEvent::NextHop { addr: a, up: true } if *a == addr(PROXY)))
    );
    assert_clean(&mut h);
}

/// An outbound next hop that does not answer at all (Timer B) is marked down: the call fails
/// over, and the next call goes straight to the route's other trunk.
#[test]
fn unanswering_trunk_is_skipped_by_later_calls() {
    let mut h = H::new(config());
    let out = h.int(&int_invite(
        "ua1",
        "+442079460001",
        "",
        Some(&int_offer("a=sendrecv", "203.0.113.20")),
    ));
    assert!(
        line(find(&sent(&out, Side::Ext), "INVITE")).ends_with("@192.0.2.10:5060;transport=tcp")
    );
    let out = h.input(Input::ConnectFailed {
        side: Side::Ext,
        addr: addr(GW1),
    });
    assert_eq!(
        lines(&out),
        vec!["ext: INVITE sip:00442079460001@192.0.2.20:5060;transport=tcp"]
    );
    let out = h.int(&int_invite(
        "ua2",
        "+442079460002",
        "",
        Some(&int_offer("a=sendrecv", "203.0.113.20")),
    ));
    assert_eq!(
        line(find(&sent(&out, Side::Ext), "INVITE")),
        "INVITE sip:00442079460002@192.0.2.20:5060;transport=tcp",
        "gw1 is marked down: straight to gw2"
    );
    assert_eq!(h.b.trunk_calls("gw2"), 2);
    assert_eq!(
        h.b.trunk_calls("gw1"),
        0,
        "the failed-over call moved to gw2"
    );
    assert_clean(&mut h);
}

/// The next hop's rate cap: calls over it get 503 (inbound) even when the trunk's own rate
/// allows them.
#[test]
fn next_hop_rate_cap() {
    let mut cfg = config();
    cfg.int.next_hop_max_cps = Some(RateLimit {
        per_second: 1,
        burst: 2,
    });
    let mut h = H::new(cfg);
    for i in 0..2 {
        let out = h.gw(&gw_invite(&format!("cap{i}"), "", Some(&gw_offer())));
        assert_eq!(statuses(&out, Side::Ext), Vec::<u16>::new());
    }
    let out = h.gw(&gw_invite("cap2", "", Some(&gw_offer())));
    assert_eq!(statuses(&out, Side::Ext), vec![503]);
    assert_eq!(
        not_admitted(&h),
        vec![("gw1".to_owned(), RefuseReason::NextHopRate)]
    );
    assert_clean(&mut h);
}

const PROXY2: &str = "203.0.113.11:5061";

fn with_alternate() -> tollgate_b2bua::Config {
    let mut cfg = config();
    cfg.int.alternates = vec![(addr(PROXY2), "proxy2.corp.example".into())];
    cfg.validate().unwrap();
    cfg
}

/// The internal next hop answers 503: the same call (same offer, CSeq + 1) goes to the
/// alternate, named in its Request-URI; the next call goes straight to the alternate while the
/// first is marked down, and to the first again afterwards.
#[test]
fn internal_alternate_takes_over_after_503() {
    let mut h = H::new(with_alternate());
    let out = h.gw(&gw_invite("alt1", "", Some(&gw_offer())));
    let inv1 = find(&sent(&out, Side::Int), "INVITE").clone();
    let out = h.int(&reply(
        &inv1,
        503,
        "Service Unavailable",
        Some("p1"),
        None,
        "Retry-After: 60\r\n",
        None,
    ));
    let to_alt = sends(&out);
    let inv2 = to_alt
        .iter()
        .find(|(_, t, m)| {
            m.method().is_some_and(|m| m.as_str() == "INVITE")
                && *t
                    == tollgate_b2bua::Target::Addr {
                        addr: addr(PROXY2),
                        transport: tollgate_b2bua::Transport::Tls,
                    }
        })
        .map(|(_, _, m)| m.clone())
        .expect("the INVITE went to the alternate");
    assert_eq!(
        line(&inv2),
        "INVITE sip:+442079460000@proxy2.corp.example:5061;transport=tls"
    );
    assert_eq!(body(&inv2), body(&inv1), "same offer, same relay ports");
    assert_eq!(hdr(&inv2, "CSeq").as_deref(), Some("2 INVITE"));
    assert!(
        statuses(&out, Side::Ext).is_empty(),
        "the caller sees no failure"
    );
    // The next call skips the marked-down proxy.
    let out = h.gw(&gw_invite("alt2", "", Some(&gw_offer())));
    let inv3 = find(&sent(&out, Side::Int), "INVITE").clone();
    assert!(
        line(&inv3).contains("@proxy2.corp.example:5061"),
        "{}",
        line(&inv3)
    );
    // Both proxies refuse: the caller gets the error.
    let out = h.msg(
        Side::Int,
        101,
        "203.0.113.11:45000",
        &reply(&inv2, 486, "Busy Here", Some("q1"), None, "", None),
    );
    assert!(statuses(&out, Side::Ext).contains(&486));
    h.advance(Duration::from_secs(61));
    let out = h.gw(&gw_invite("alt3", "", Some(&gw_offer())));
    let inv4 = find(&sent(&out, Side::Int), "INVITE").clone();
    assert!(
        line(&inv4).contains("@proxy.corp.example:5061"),
        "back to the first"
    );
    h.advance(Duration::from_secs(200));
    assert_clean(&mut h);
}
