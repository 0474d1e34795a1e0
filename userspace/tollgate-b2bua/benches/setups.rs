//! Call setup throughput of the core on one thread: complete inbound calls (gateway INVITE
//! with SDP -> INVITE with SAVP to the proxy -> 200 with SRTP answer -> ACK -> BYE -> 200),
//! including the SIP parsing of every received message, as the driver's framer would do it.
//! Prints calls per second; the daemon's target is >= 1,000 setups/s on one core.
//!
//! Run: `cargo bench -p tollgate-b2bua --bench setups`.

#![allow(clippy::unwrap_used, reason = "benchmark code")]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use tollgate_b2bua::{Input, Output, Side};
use tollgate_sip::Message;

fn main() {
    let mut cfg = config();
    cfg.media.ext_ports = 20000..=29999;
    cfg.media.int_ports = 30000..=39999;
    let mut b = tollgate_b2bua::B2bua::new(cfg, rng(1));
    let mut now = Instant::now();
    // `cargo test --all-targets` runs this binary without `--bench`: a smoke run only.
    let calls = if std::env::args().any(|a| a == "--bench") {
        20_000u32
    } else {
        200
    };
    let offer = gw_offer();
    let answer = int_answer("a=sendrecv");
    let peer_gw = addr("192.0.2.10:41000");
    let peer_int = addr("203.0.113.10:45000");
    let mut out: Vec<Output> = Vec::with_capacity(64);
    let feed = |b: &mut tollgate_b2bua::B2bua,
                out: &mut Vec<Output>,
                now: Instant,
                side: Side,
                text: &str| {
        let msg = Message::parse(text.as_bytes()).unwrap();
        let (conn, peer) = match side {
            Side::Ext => (1, peer_gw),
            Side::Int => (100, peer_int),
        };
        out.clear();
        b.handle(
            Input::Message {
                side,
                conn: tollgate_b2bua::ConnId(conn),
                peer,
                msg,
            },
            now,
            out,
        );
    };
    let start = Instant::now();
    let mut setup_total = Duration::ZERO;
    for i in 0..calls {
        let cid = format!("bench{i}");
        let t = Instant::now();
        feed(
            &mut b,
            &mut out,
            now,
            Side::Ext,
            &gw_invite(&cid, "", Some(&offer)),
        );
        let inv = sent(&out, Side::Int).pop().unwrap();
        let ok = reply(
            &inv,
            200,
            "OK",
            Some("b"),
            Some("<sip:alice@203.0.113.20:5061;transport=tls>"),
            "",
            Some(&answer),
        );
        feed(&mut b, &mut out, now, Side::Int, &ok);
        setup_total += t.elapsed();
        let ok = sent(&out, Side::Ext).pop().unwrap();
        let mut gw = gw_ua(&ok, &cid);
        feed(
            &mut b,
            &mut out,
            now,
            Side::Ext,
            &gw.request("ACK", "", None),
        );
        feed(
            &mut b,
            &mut out,
            now,
            Side::Ext,
            &gw.request("BYE", "", None),
        );
        let bye = sent(&out, Side::Int).pop().unwrap();
        feed(
            &mut b,
            &mut out,
            now,
            Side::Int,
            &reply(&bye, 200, "OK", None, None, "", None),
        );
        now += Duration::from_micros(100);
    }
    let total = start.elapsed();
    assert_eq!(b.active_calls(), 0);
    assert_eq!(b.allocated_ports(), (0, 0));
    println!(
        "{calls} complete calls in {:.3} s: {:.0} calls/s (whole call, 5 messages in); setup (INVITE + 200) {:.1} us/call = {:.0} setups/s",
        total.as_secs_f64(),
        f64::from(calls) / total.as_secs_f64(),
        setup_total.as_secs_f64() * 1e6 / f64::from(calls),
        f64::from(calls) / setup_total.as_secs_f64()
    );
}
