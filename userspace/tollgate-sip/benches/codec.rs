//! Rough throughput of the hot paths a B2BUA call uses: parse + encode of a typical INVITE
//! with SDP, building a response, framing, and one INVITE client transaction round. Plain std
//! timing (`cargo bench -p tollgate-sip`; `BENCH_ONLY=parse` selects by name prefix); figures
//! are printed, nothing is asserted. Under `cargo test --all-targets` each case runs once.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tollgate_sip::{Framer, Message, TransactionLayer, TransportFlow};

const INVITE: &[u8] = b"INVITE sip:+15551234567@gw.example.com;user=phone SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:+15551234567@gw.example.com;user=phone>\r\n\
From: \"Alice\" <sip:+15550001111@192.0.2.10;user=phone>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@192.0.2.10\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:gw@192.0.2.10:5060;transport=tcp>\r\n\
Supported: timer, 100rel, replaces\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
P-Asserted-Identity: <sip:+15550001111@gw.example.com;user=phone>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO\r\n\
User-Agent: Gateway/1.0\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 142\r\n\
\r\n\
v=0\r\n\
o=gw 1 1 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=ptime:20\r\n";

fn bench(name: &str, iters: u32, mut f: impl FnMut()) {
    if std::env::var("BENCH_ONLY").is_ok_and(|o| !name.starts_with(o.as_str())) {
        return;
    }
    // `cargo test --all-targets` runs this binary without `--bench`: a smoke run only.
    if !std::env::args().any(|a| a == "--bench") {
        f();
        return;
    }
    for _ in 0..iters / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    let per = t.elapsed() / iters;
    println!("{name:<40} {:>8} ns/op", per.as_nanos());
}

fn main() {
    assert_eq!(Message::parse(INVITE).map(|m| m.body.len()).ok(), Some(142));
    bench("parse INVITE+SDP", 100_000, || {
        black_box(Message::parse(black_box(INVITE)).ok());
    });
    let m = Message::parse(INVITE).expect("bench message parses");
    bench("encode INVITE+SDP", 100_000, || {
        black_box(m.encode());
    });
    bench("response_to (180) + encode", 100_000, || {
        black_box(Message::response_to(&m, 180, None, Some("b2b1")).encode());
    });
    let mut framer = Framer::default();
    bench("framer push + next_frame", 100_000, || {
        framer.push(INVITE);
        black_box(framer.next_frame());
    });
    let t0 = Instant::now();
    let mut layer = TransactionLayer::default();
    let ok = Message::response_to(&m, 200, None, Some("x"));
    let mut n = 0u64;
    bench("client INVITE tx: send, 200, timer M", 50_000, || {
        n += 1;
        let mut req = m.clone();
        req.headers.pop_via();
        let mut via = m.top_via().expect("has Via").clone();
        via.params.set("branch", Some(&format!("z9hG4bK{n}")));
        req.headers.push_via_top(via.clone());
        let mut resp = ok.clone();
        resp.headers.pop_via();
        resp.headers.push_via_top(via);
        let now = t0 + Duration::from_secs(n);
        let _ = layer.send_request(req, TransportFlow(1), now);
        layer.on_message(resp, TransportFlow(1), now);
        layer.on_timeout(now);
        black_box(layer.drain_actions().count());
    });
}
