//! RFC 4475 and RFC 5118 torture messages: each file under `tests/torture/` is parsed and
//! checked, and the outcome compared with the one the RFC gives (see each `expected.txt`).
//!
//! The outcome is what goes on the wire: a rejection counts only when
//! [`tollgate_sip::ParseError::error_response`] (the function the daemon sends from) builds a
//! response with the expected status; a fault Tollgate cannot answer (no Via/From/To/Call-ID/
//! CSeq to address it with) fails the test as `Unanswered`.
//!
//! Where RFC 4475 §3 allows more than one behaviour, Tollgate's choice:
//!
//! | message | RFC 4475 | Tollgate | why |
//! | --- | --- | --- | --- |
//! | badbranch (§3.2.1) | reject 400, or fall back to RFC 2543 matching | accept; RFC 2543 transaction matching | the message is valid; rejecting a whole source for a bare cookie gains nothing |
//! | mismatch02 (§3.1.2.18) | 501 (400 acceptable) | 501 | the method is unknown |
//! | sdp01 (§3.3.15) | 406 (400 appropriate) | 406 | names the cause |
//! | novelsc (§3.3.3) | proxy forwards; an element that cannot serve it 416 | 416 | Tollgate only serves `sip`/`sips` |
//! | invut (§3.3.6) | an endpoint answers 415 | 415 | the B2BUA terminates SDP like an endpoint |
//! | zeromf (§3.3.11) | a proxy answers 483, the target answers normally | 483 | the Request-URI has a user: it would be forwarded. An OPTIONS to Tollgate's own address without a user gets 200 |
//! | bcast (§3.3.10) | an endpoint discards | dropped | Tollgate is the UA that would receive it |
//! | clerr (§3.1.2.2) over TCP | 400 over UDP; on a stream, wait for more, close if none comes | the connection is closed at `sip.message_deadline_s` with no answer | the stream cannot be resynchronised |
//! | dblreq (§3.1.1.8) over TCP | trailing octets of a datagram are ignored | on a stream they are the next message and are handled as one | there are no datagram bounds on TCP |
//! | baddn (§3.1.2.15) over TCP | 400 | 400, once the sender ends the header section: the archive's file has no blank line (its datagram's end ended it) | a stream has no datagram end |
//! | ncl, mcl01 (§3.1.2.3, §3.3.9) over TCP | respond with an error | 400, then the connection is closed | without one Content-Length the stream cannot be resynchronised |
//! | inv2543 (§3.4.1) over TCP | accept (it arrived over UDP) | 400 (Content-Length missing), then the connection is closed | a stream needs Content-Length (RFC 3261 §18.3); over UDP it would be accepted |

use std::path::Path;

use tollgate_sip::{
    HeaderName, Message, Method, ParseError, UaPolicy, Uri, check_request, check_response, unescape,
};

#[derive(Debug, PartialEq)]
enum Outcome {
    Accept,
    Reject(u16, String),
    Drop(String),
    /// A fault that calls for a response which cannot be addressed: nothing goes on the wire.
    Unanswered(String),
}

/// The outcome of a rejection as the wire sees it.
fn on_the_wire(e: &ParseError) -> Outcome {
    match (e.response(), e.error_response("torture")) {
        (Some((code, _)), Some(resp)) => {
            assert_eq!(resp.status(), Some(code), "{e}");
            Outcome::Reject(code, e.to_string())
        }
        (Some(_), None) => Outcome::Unanswered(e.to_string()),
        (None, _) => Outcome::Drop(e.to_string()),
    }
}

fn evaluate(raw: &[u8]) -> Outcome {
    match Message::parse(raw) {
        Err(e) => on_the_wire(&e),
        Ok(m) => {
            let checked = if m.is_request() {
                check_request(&m, &UaPolicy::default())
            } else {
                check_response(&m)
            };
            match checked {
                Ok(()) => Outcome::Accept,
                Err(e) => on_the_wire(&e),
            }
        }
    }
}

struct Case {
    file: String,
    section: String,
    expected: String,
}

fn cases(dir: &str) -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/torture")
        .join(dir);
    let text =
        std::fs::read_to_string(root.join("expected.txt")).expect("expected.txt is readable");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('|').map(str::trim).collect();
            Case {
                file: f[0].to_owned(),
                section: f[1].to_owned(),
                expected: f[2].to_owned(),
            }
        })
        .collect()
}

fn read(dir: &str, file: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/torture")
        .join(dir)
        .join(file);
    std::fs::read(p).expect("torture message file is readable")
}

fn matches_expectation(got: &Outcome, expected: &str) -> bool {
    let mut words = expected.splitn(3, ' ');
    let kind = words.next().unwrap_or("");
    match (kind, got) {
        ("accept", Outcome::Accept) => true,
        ("reject", Outcome::Reject(code, text)) => {
            let want: u16 = words
                .next()
                .and_then(|w| w.parse().ok())
                .expect("reject needs a status code");
            let kw = words.next().unwrap_or("").to_ascii_lowercase();
            *code == want && text.to_ascii_lowercase().contains(&kw)
        }
        ("drop", Outcome::Drop(text)) => {
            let kw = expected
                .split_once(' ')
                .map_or("", |x| x.1)
                .to_ascii_lowercase();
            text.to_ascii_lowercase().contains(&kw)
        }
        _ => false,
    }
}

fn run_suite(dir: &str, total_expected: usize) {
    let cases = cases(dir);
    assert_eq!(cases.len(), total_expected, "{dir}: number of messages");
    let mut failures = Vec::new();
    for c in &cases {
        let raw = read(dir, &c.file);
        let got = evaluate(&raw);
        if matches_expectation(&got, &c.expected) {
            println!("ok   {} {:<40} {:?}", c.section, c.file, got);
        } else {
            failures.push(format!(
                "{} {}: expected {}, got {:?}",
                c.section, c.file, c.expected, got
            ));
        }
    }
    println!(
        "{dir}: {}/{} messages handled as the RFC says",
        cases.len() - failures.len(),
        cases.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rfc4475_outcomes() {
    run_suite("rfc4475", 49);
}

#[test]
fn rfc5118_outcomes() {
    run_suite("rfc5118", 12);
}

/// Every message that parses re-encodes to something that parses to the same message, and
/// encoding is idempotent.
#[test]
fn accepted_messages_round_trip() {
    for dir in ["rfc4475", "rfc5118"] {
        for c in cases(dir) {
            let Ok(m) = Message::parse(&read(dir, &c.file)) else {
                continue;
            };
            let enc = m.encode();
            let again = Message::parse(&enc).unwrap_or_else(|e| panic!("{}: {e}", c.file));
            let strip = |x: &Message| {
                let mut x = x.clone();
                x.headers.remove(&HeaderName::ContentLength);
                x
            };
            assert_eq!(strip(&again), strip(&m), "{}", c.file);
            assert_eq!(again.encode(), enc, "{}", c.file);
        }
    }
}

fn parse(file: &str) -> Message {
    Message::parse(&read("rfc4475", file)).expect("valid torture message parses")
}

#[test]
fn wsinv_details() {
    let m = parse("wsinv.dat");
    let to = m.to().unwrap();
    assert_eq!(to.tag(), Some("1918181833n"));
    assert!(to.display.is_none());
    let from = m.from().unwrap();
    assert_eq!(from.display_name().unwrap(), "J Rosenberg \\\"");
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(m.headers.max_forwards(), Some(68));
    assert_eq!(m.call_id(), Some("wsinv.ndaksdj@192.0.2.1"));
    assert_eq!(m.cseq().unwrap().seq, 9);
    assert_eq!(m.cseq().unwrap().method, Method::Invite);
    let vias: Vec<_> = m.headers.vias().collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].host.as_str(), "192.0.2.2");
    assert_eq!(vias[0].branch(), Some("390skdjuw"));
    assert_eq!(vias[1].host.as_str(), "spindle.example.com");
    assert_eq!(vias[1].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    assert_eq!(m.headers.get_value(&HeaderName::Subject), Some(""));
    assert_eq!(
        m.headers.get_value(&HeaderName::parse("NewFangledHeader")),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(
        m.headers
            .get_value(&HeaderName::parse("UnknownHeaderWithUnusualValue")),
        Some(";;,,;;,;")
    );
    let contact = m.headers.contacts().next().unwrap();
    assert_eq!(contact.display_name().unwrap(), "Quoted string \"\"");
    assert_eq!(contact.params.value("newparam"), Some("newvalue"));
    assert_eq!(contact.params.get("secondparam"), Some(None));
    assert_eq!(contact.params.value("q"), Some("0.33"));
    let route = m.headers.routes().next().unwrap();
    assert!(route.uri.as_sip().unwrap().is_loose_router());
    assert_eq!(m.body.len(), 150);
    // Unknown headers keep their place relative to the others.
    let names: Vec<&str> = m.headers.iter().map(|h| h.name().as_str()).collect();
    let nf = names.iter().position(|n| *n == "NewFangledHeader").unwrap();
    assert_eq!(names[nf + 1], "UnknownHeaderWithUnusualValue");
}

#[test]
fn intmeth_details() {
    let m = parse("intmeth.dat");
    assert_eq!(
        m.method().unwrap().as_str(),
        "!interesting-Method0123456789_*+`.%indeed'~"
    );
    assert!(!m.method().unwrap().is_known());
    let u = m.request_uri().unwrap().as_sip().unwrap();
    assert_eq!(
        u.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK-.!%66*_+`'~"));
    assert_eq!(
        m.to().unwrap().display_name().unwrap(),
        "BEL:\u{7} NUL:\0 DEL:\u{7f}"
    );
    assert_eq!(m.from().unwrap().tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        m.call_id(),
        Some("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
    );
    assert_eq!(m.headers.max_forwards(), Some(255));
}

#[test]
fn escapes_and_semicolons() {
    let m = parse("esc01.dat");
    let ruri = m.request_uri().unwrap().as_sip().unwrap();
    assert_eq!(ruri.user_unescaped().unwrap(), b"sips:user@example.com");
    assert_eq!(
        m.to()
            .unwrap()
            .uri
            .as_sip()
            .unwrap()
            .user_unescaped()
            .unwrap(),
        b"user"
    );
    let c = m.headers.contacts().next().unwrap().uri.as_sip().unwrap();
    assert_eq!(c.user_unescaped().unwrap(), b"caller");
    assert_eq!(unescape(c.params.value("n%61me").unwrap()), b"value%41");

    let m = parse("escnull.dat");
    let users: Vec<Vec<u8>> = m
        .headers
        .contacts()
        .map(|c| c.uri.as_sip().unwrap().user_unescaped().unwrap())
        .collect();
    assert_eq!(users, vec![b"\0".to_vec(), b"\0\0".to_vec()]);

    let m = parse("esc02.dat");
    assert_eq!(m.method().unwrap().as_str(), "RE%47IST%45R");
    assert_eq!(
        m.headers.contacts().count(),
        2,
        "C%6Fntact is another header"
    );
    assert!(m.headers.get(&HeaderName::parse("C%6Fntact")).is_some());

    let m = parse("semiuri.dat");
    let u = m.request_uri().unwrap().as_sip().unwrap();
    assert_eq!(u.user_unescaped().unwrap(), b"user;par=u@example.net");
    assert_eq!(u.host.as_str(), "example.com");
}

#[test]
fn framing_cases() {
    let m = parse("dblreq.dat");
    assert_eq!(m.method(), Some(&Method::Register));
    assert!(m.body.is_empty());
    let m = parse("mpart01.dat");
    assert_eq!(m.body.len(), 553);
    assert!(m.body.contains(&0));
    let m = parse("inv2543.dat");
    assert!(m.body.starts_with(b"v=0"));
    assert!(!m.top_via().unwrap().is_rfc3261());
    let m = parse("longreq.dat");
    assert_eq!(m.headers.vias().count(), 34);
    assert_eq!(m.to().unwrap().uri.as_sip().unwrap().port, Some(6000));
    let m = parse("transports.dat");
    let t: Vec<&str> = m.headers.vias().map(|v| v.transport.as_str()).collect();
    assert_eq!(t, vec!["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
}

#[test]
fn responses() {
    let m = parse("noreason.dat");
    assert_eq!(m.status(), Some(100));
    assert_eq!(m.reason(), Some(""));
    let m = parse("unreason.dat");
    assert_eq!(m.status(), Some(200));
    assert!(m.reason().unwrap().starts_with("= 2**3 * 5**2 "));
}

#[test]
fn contact_param_placement() {
    let m = parse("cparam01.dat");
    let c = m.headers.contacts().next().unwrap();
    assert!(c.params.contains("unknownparam"));
    assert!(c.uri.as_sip().unwrap().params.is_empty());
    let m = parse("cparam02.dat");
    let c = m.headers.contacts().next().unwrap();
    assert!(c.params.is_empty());
    assert!(c.uri.as_sip().unwrap().params.contains("unknownparam"));
    let m = parse("regescrt.dat");
    let c = m.headers.contacts().next().unwrap().uri.as_sip().unwrap();
    assert_eq!(c.headers[0].0, "Route");
    assert_eq!(unescape(&c.headers[0].1), b"<sip:sip.example.com>");
    let m = parse("unksm2.dat");
    assert!(matches!(&m.to().unwrap().uri, Uri::Other { scheme, .. } if scheme == "isbn"));
}

#[test]
fn rfc5118_details() {
    let p = |f: &str| Message::parse(&read("rfc5118", f)).unwrap();
    let m = p("port-ambiguous.dat");
    let u = m.request_uri().unwrap().as_sip().unwrap();
    assert_eq!(u.port, None);
    assert_eq!(u.host.ip_addr(), Some("2001:db8::10:5070".parse().unwrap()));
    let m = p("port-unambiguous.dat");
    let u = m.request_uri().unwrap().as_sip().unwrap();
    assert_eq!(u.port, Some(5070));
    let m = p("via-received-param-with-delim.dat");
    assert_eq!(
        m.top_via().unwrap().received(),
        Some("2001:db8::9:255".parse().unwrap())
    );
    let m = p("mult-ip-in-header.dat");
    let vias: Vec<_> = m.headers.vias().collect();
    assert_eq!(vias[0].port, Some(6050));
    assert_eq!(vias[2].received(), Some("192.0.2.200".parse().unwrap()));
    let m = p("ipv4-mapped-ipv6.dat");
    assert_eq!(m.top_via().unwrap().port, Some(19823));
    assert_eq!(
        m.top_via().unwrap().host.ip_addr(),
        Some("::ffff:192.0.2.10".parse().unwrap())
    );
    let m = p("ipv6-correct-abnf-2-colons.dat");
    assert_eq!(
        m.request_uri().unwrap().to_string(),
        "sip:user@[2001:db8::192.0.2.1]"
    );
}

/// Content-Length as a stream receiver would read it from raw bytes: one consistent value.
fn raw_cl(raw: &[u8]) -> Option<(usize, usize)> {
    let text = String::from_utf8_lossy(raw);
    let head_end = text.find("\r\n\r\n")? + 4;
    let mut cl = None;
    for line in text[..head_end].split("\r\n").skip(1) {
        let Some((n, v)) = line.split_once(':') else {
            continue;
        };
        let n = n.trim();
        if n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("l") {
            let v: usize = v.trim().parse().ok()?;
            if cl.is_some_and(|c| c != v) {
                return None;
            }
            cl = Some(v);
        }
    }
    Some((head_end, cl?))
}

/// The RFC 4475 messages that frame cleanly on a stream (Content-Length present and exact),
/// sent back to back over one "connection" with keepalives between them and split into odd
/// chunks, come out of the framer one by one with the same verdict as datagram parsing.
#[test]
fn rfc4475_over_a_stream() {
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for c in cases("rfc4475") {
        let raw = read("rfc4475", &c.file);
        let Some((head, cl)) = raw_cl(&raw) else {
            continue;
        };
        if head + cl != raw.len() {
            continue; // clerr (declares more), dblreq (trailing octets)
        }
        expected.push((c.file.clone(), Message::parse(&raw)));
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(&raw);
    }
    assert!(expected.len() >= 40, "{}", expected.len());
    let mut framer = tollgate_sip::Framer::default();
    let mut got = Vec::new();
    for chunk in stream.chunks(97) {
        framer.push(chunk);
        while let Some(ev) = framer.next_frame() {
            match ev {
                Ok(tollgate_sip::Frame::Ping) => {}
                Ok(tollgate_sip::Frame::Message(m)) => got.push(Ok(m)),
                Err(e) => {
                    assert!(!e.fatal, "fatal framing error: {e}");
                    got.push(Err(e.error));
                }
            }
        }
    }
    assert_eq!(got.len(), expected.len());
    for ((file, want), got) in expected.iter().zip(&got) {
        match (want, got) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{file}"),
            (Err(a), Err(b)) => assert_eq!(a.fault(), b.fault(), "{file}"),
            _ => panic!("{file}: datagram {want:?} vs stream {got:?}"),
        }
    }
}

/// What one connection carrying one torture message gets, decided sans-IO by the framer the
/// transport uses: answers (status codes, in order), whether the framer gave up on the stream
/// (the connection is closed), and whether bytes of an unfinished message are left (the
/// transport closes it at `sip.message_deadline_s`).
#[derive(Debug, PartialEq)]
struct StreamOutcome {
    answers: Vec<u16>,
    accepted: usize,
    closed: bool,
    pending: bool,
}

/// The bytes a sender puts on a stream for a torture message: baddn.dat, alone in the archive,
/// ends without the blank line that ends a header section (the end of its datagram did); on a
/// stream the sender must add it, or the message never ends.
fn as_sent_on_a_stream(raw: &[u8]) -> Vec<u8> {
    let mut out = raw.to_vec();
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn on_a_stream(raw: &[u8]) -> StreamOutcome {
    let mut framer = tollgate_sip::Framer::default();
    framer.push(raw);
    let mut out = StreamOutcome {
        answers: Vec::new(),
        accepted: 0,
        closed: false,
        pending: false,
    };
    while let Some(ev) = framer.next_frame() {
        match ev {
            Ok(tollgate_sip::Frame::Ping) => {}
            Ok(tollgate_sip::Frame::Message(m)) => {
                let checked = if m.is_request() {
                    check_request(&m, &UaPolicy::default())
                } else {
                    check_response(&m)
                };
                match checked {
                    Ok(()) => out.accepted += 1,
                    Err(e) => out
                        .answers
                        .extend(e.error_response("t").and_then(|r| r.status())),
                }
            }
            Err(e) => {
                out.answers
                    .extend(e.error.error_response("t").and_then(|r| r.status()));
                out.closed |= e.fatal;
            }
        }
    }
    out.pending = framer.is_partial();
    out
}

/// Every RFC 4475 message alone on a stream: a request the RFC rejects gets that status
/// (never silence), a valid one is delivered, a faulty response is dropped; the stream-only
/// alternatives (see the table in the crate docs above) are checked explicitly.
#[test]
fn rfc4475_each_on_its_own_stream() {
    for c in cases("rfc4475") {
        let got = on_a_stream(&as_sent_on_a_stream(&read("rfc4475", &c.file)));
        let kind = c.expected.split(' ').next().unwrap_or("");
        match c.file.as_str() {
            // Declares 9999 body bytes: wait for them; the deadline closes the connection.
            "clerr.dat" => assert!(
                got.answers.is_empty() && !got.closed && got.pending,
                "{}: {got:?}",
                c.file
            ),
            // The "trailing octets" are the next message on a stream: both are delivered.
            "dblreq.dat" => assert_eq!(
                (got.accepted, got.answers.len()),
                (2, 0),
                "{}: {got:?}",
                c.file
            ),
            // No single Content-Length: answered 400, then the stream is given up.
            "ncl.dat" | "mcl01.dat" | "inv2543.dat" => assert_eq!(
                (got.answers.as_slice(), got.closed),
                (&[400][..], true),
                "{}",
                c.file
            ),
            _ => match kind {
                "accept" => assert_eq!(
                    (got.accepted, got.answers.len()),
                    (1, 0),
                    "{}: {got:?}",
                    c.file
                ),
                "drop" => assert!(
                    got.accepted == 0 && got.answers.is_empty() && !got.pending,
                    "{}: {got:?}",
                    c.file
                ),
                _ => {
                    let want: u16 = c.expected.split(' ').nth(1).unwrap().parse().unwrap();
                    assert_eq!(got.answers, vec![want], "{}", c.file);
                    assert!(!got.pending, "{}: {got:?}", c.file);
                }
            },
        }
    }
}
