//! Calls across a restart, in the sans-IO core: a stable call is stored, a new core restores
//! it from the record alone, and the call goes on (re-INVITE, session refresh, BYE from either
//! side) with its dialogs, ports, flows and keys, and one CDR that says it crossed a restart.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::time::Duration;

use common::*;
use tollgate_b2bua::record::{RestoreError, decode};
use tollgate_b2bua::{CallEvent, EndCause, Output, Side, Target, Transport};
use tollgate_sip::Message;

const T0_MS: u64 = 1_780_000_000_000;

fn stored_core() -> H {
    let mut h = H::new(config());
    h.b.enable_store(true);
    h.b.set_wall_clock(h.now, T0_MS);
    h
}

/// An inbound call up to the ACK: (gateway's view, proxy's view).
fn inbound_confirmed(h: &mut H, cid: &str) -> (Ua, Ua) {
    let out = h.gw(&gw_invite(cid, "", Some(&gw_offer())));
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
    let mut gw = gw_ua(&ok, cid);
    assert_eq!(h.stores, 0, "not stable before the ACK");
    h.gw(&gw.request("ACK", "", None));
    let int = Ua::from_received(
        &inv,
        "int1",
        "SIP/2.0/TLS 203.0.113.10:5061",
        "<sip:alice@203.0.113.20:5061;transport=tls>",
    );
    (gw, int)
}

/// A new core `after` later that takes over `old`'s store.
fn restarted(old: &H, after: Duration) -> (H, tollgate_b2bua::record::RestoreReport, Vec<Output>) {
    restarted_with(old, after, config())
}

fn restarted_with(
    old: &H,
    after: Duration,
    cfg: tollgate_b2bua::Config,
) -> (H, tollgate_b2bua::record::RestoreReport, Vec<Output>) {
    let mut h = H::new(cfg);
    h.b.enable_store(true);
    h.b.set_wall_clock(h.now, T0_MS + (old.now - old.t0 + after).as_millis() as u64);
    h.store = old.store.clone();
    let records: Vec<(String, Vec<u8>)> = old
        .store
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let mut out = Vec::new();
    let now = h.now;
    let report = h.b.restore(&records, now, &mut out);
    h.track(&out);
    (h, report, out)
}

fn installs(out: &[Output]) -> Vec<tollgate_common::spec::MediaFlowSpec> {
    out.iter()
        .filter_map(|o| match o {
            Output::InstallMedia { spec, .. } => Some(spec.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_restored_call_keeps_its_media_and_takes_a_reinvite_on_a_new_connection() {
    let mut h = stored_core();
    let (mut gw, mut int) = inbound_confirmed(&mut h, "r1");
    assert_eq!(h.stores, 1, "stored once, at the ACK");
    let (&id, bytes) = h.store.iter().next().unwrap();
    let rec = decode(bytes).unwrap();
    assert_eq!(rec.call, id);
    assert_eq!(rec.restarts, 0);
    assert_eq!(rec.start_ms, T0_MS);
    let before: Vec<_> = h.installed.values().map(|(_, s)| s.clone()).collect();

    let (mut h2, report, out) = restarted(&h, Duration::from_secs(5));
    assert_eq!(report.restored, vec![id]);
    assert!(report.ended.is_empty() && report.unreadable.is_empty());
    // Same flows: ids, ports, peers and keys.
    assert_eq!(installs(&out), before);
    assert_eq!(h2.b.allocated_ports(), (1, 1));
    assert_eq!(h2.b.trunk_calls("gw1"), 1);
    assert!(
        h2.events
            .iter()
            .any(|e| matches!(e, CallEvent::Restored { call } if *call == id))
    );
    // Stored again: one more restart crossed.
    assert_eq!(decode(&h2.store[&id]).unwrap().restarts, 1);

    // The gateway reconnects (connection 2) and re-INVITEs: relayed to the proxy on a new
    // connection, with a CSeq above anything the old process could have used.
    let out = h2.msg(
        Side::Ext,
        2,
        "192.0.2.10:41002",
        &gw.request("INVITE", "", Some(&gw_offer())),
    );
    assert_eq!(
        lines(&out),
        vec![
            "ext: 100 Trying",
            "int: INVITE sip:alice@203.0.113.20:5061;transport=tls"
        ]
    );
    let s = sends(&out);
    assert_eq!(
        s[1].1,
        Target::Addr {
            addr: addr(PROXY),
            transport: Transport::Tls
        }
    );
    let reinv = s[1].2.clone();
    assert_eq!(hdr(&reinv, "CSeq").as_deref(), Some("12 INVITE"));
    let o = body(&reinv);
    assert!(o.contains("m=audio 30000 RTP/SAVP"), "same relay port: {o}");
    let stores = h2.stores;
    let out = h2.int(&reply(
        &reinv,
        200,
        "OK",
        None,
        Some("<sip:alice@203.0.113.20:5061;transport=tls>"),
        "",
        Some(&int_answer("a=sendrecv")),
    ));
    let ok = find(&sent(&out, Side::Ext), "200").clone();
    assert_eq!(
        sends(&out)
            .iter()
            .find(|(side, ..)| *side == Side::Ext)
            .unwrap()
            .1,
        Target::Conn(tollgate_b2bua::ConnId(2))
    );
    assert!(body(&ok).contains("m=audio 20000 RTP/AVP"));
    h2.msg(
        Side::Ext,
        2,
        "192.0.2.10:41002",
        &gw.request("ACK", "", None),
    );
    assert!(h2.stores > stores, "the re-INVITE's outcome is stored");

    // BYE from the internal side ends both legs; one CDR, marked as having crossed a restart.
    let out = h2.int(&int.request("BYE", "", None));
    assert_eq!(
        lines(&out),
        vec![
            "int: 200 OK",
            "ext: BYE sip:gw@192.0.2.10:5060;transport=tcp"
        ]
    );
    let cdr = h2.cdrs.last().unwrap();
    assert_eq!(cdr.call, id);
    assert_eq!(cdr.cause, EndCause::Bye(Side::Int));
    assert_eq!(cdr.restarts, 1);
    assert_eq!(cdr.calling_received, "01632960001");
    assert_eq!(cdr.trunk.as_deref(), Some("gw1"));
    assert!(h2.store.is_empty(), "the record is deleted at the end");
    let bye = find(&sent(&out, Side::Ext), "BYE").clone();
    h2.gw(&reply(&bye, 200, "OK", None, None, "", None));
    assert_clean(&mut h2);
}

#[test]
fn session_refreshes_go_on_and_a_gateway_bye_ends_it() {
    let mut h = stored_core();
    let (mut gw, _int) = inbound_confirmed(&mut h, "r2");
    let id = *h.store.keys().next().unwrap();
    let (mut h2, report, _) = restarted(&h, Duration::from_secs(1));
    assert_eq!(report.restored, vec![id]);
    // The restored core refreshes the legs the old one would have: at half the interval.
    let refreshing = |out: &[Output]| -> Vec<Message> {
        [Side::Ext, Side::Int]
            .into_iter()
            .flat_map(|s| sent(out, s))
            .filter(|m| matches!(m.method().map(|m| m.as_str()), Some("UPDATE" | "INVITE")))
            .collect()
    };
    let expected = lines(&h.advance(Duration::from_secs(901)));
    let out = h2.advance(Duration::from_secs(901));
    let refreshes = refreshing(&out);
    assert!(!refreshes.is_empty(), "{:?}", lines(&out));
    assert_eq!(lines(&out), expected, "as without the restart");
    let stores = h2.stores;
    for r in &refreshes {
        let from_ext = r.call_id() == Some("r2@192.0.2.10");
        let reply_text = reply(
            r,
            200,
            "OK",
            None,
            Some(if from_ext {
                "<sip:gw@192.0.2.10:5060;transport=tcp>"
            } else {
                "<sip:alice@203.0.113.20:5061;transport=tls>"
            }),
            "",
            None,
        );
        if from_ext {
            h2.gw(&reply_text);
        } else {
            h2.int(&reply_text);
        }
    }
    assert!(h2.stores > stores, "refreshed state stored");
    let out = h2.gw(&gw.request("BYE", "", None));
    assert_eq!(
        lines(&out),
        vec![
            "ext: 200 OK",
            "int: BYE sip:alice@203.0.113.20:5061;transport=tls"
        ]
    );
    assert_eq!(h2.cdrs.last().unwrap().cause, EndCause::Bye(Side::Ext));
    let bye = find(&sent(&out, Side::Int), "BYE").clone();
    h2.int(&reply(&bye, 200, "OK", None, None, "", None));
    assert_clean(&mut h2);
}

#[test]
fn an_inconsistent_record_ends_the_call_with_bye_on_both_legs() {
    let mut h = stored_core();
    inbound_confirmed(&mut h, "r3");
    let id = *h.store.keys().next().unwrap();
    // The new process has other relay ports: the call's ports cannot be taken again.
    let mut cfg = config();
    cfg.media.ext_ports = 21000..=21999;
    let (mut h2, report, out) = restarted_with(&h, Duration::from_secs(1), cfg);
    assert!(report.restored.is_empty());
    assert!(matches!(
        report.ended.as_slice(),
        [(c, RestoreError::Port(_))] if *c == id
    ));
    assert_eq!(
        lines(&out),
        vec![
            "ext: BYE sip:gw@192.0.2.10:5060;transport=tcp",
            "int: BYE sip:alice@203.0.113.20:5061;transport=tls"
        ]
    );
    assert!(installs(&out).is_empty(), "nothing half-alive");
    let cdr = h2.cdrs.last().unwrap();
    assert_eq!(cdr.cause, EndCause::RestoreFailed);
    assert_eq!(cdr.restarts, 1);
    assert!(h2.store.is_empty());
    for s in [Side::Ext, Side::Int] {
        let bye = find(&sent(&out, s), "BYE").clone();
        let r = reply(&bye, 200, "OK", None, None, "", None);
        match s {
            Side::Ext => h2.gw(&r),
            Side::Int => h2.int(&r),
        };
    }
    assert_clean(&mut h2);
}

#[test]
fn unreadable_records_are_reported_and_nothing_is_sent() {
    let mut h = H::new(config());
    let mut out = Vec::new();
    let now = h.now;
    let report = h.b.restore(
        &[
            ("7".into(), b"{not json".to_vec()),
            ("8".into(), br#"{"version":99}"#.to_vec()),
        ],
        now,
        &mut out,
    );
    h.track(&out);
    assert_eq!(report.unreadable.len(), 2);
    assert!(out.iter().all(|o| !matches!(o, Output::Send { .. })));
    assert_clean(&mut h);
}

#[test]
fn without_a_store_nothing_is_serialised() {
    let mut h = H::new(config());
    let (mut gw, _) = inbound_confirmed(&mut h, "r4");
    assert_eq!(h.stores, 0);
    let out = h.gw(&gw.request("BYE", "", None));
    let bye = find(&sent(&out, Side::Int), "BYE").clone();
    h.int(&reply(&bye, 200, "OK", None, None, "", None));
    assert_eq!(h.cdrs.last().unwrap().restarts, 0);
    assert_clean(&mut h);
}

/// Records name the sides as they did before the sides had one enum: "Gateway", "Internal".
#[test]
fn stored_sides_keep_their_names() {
    assert_eq!(serde_json::to_string(&Side::Ext).unwrap(), "\"Gateway\"");
    assert_eq!(serde_json::to_string(&Side::Int).unwrap(), "\"Internal\"");
    assert_eq!(
        serde_json::from_str::<Side>("\"Internal\"").unwrap(),
        Side::Int
    );
}
