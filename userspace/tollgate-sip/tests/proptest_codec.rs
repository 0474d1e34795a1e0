//! Property tests: built messages round-trip byte-exactly through encode/parse; arbitrary and
//! mutated input never panics the parser or the framer.

use proptest::prelude::*;
use tollgate_sip::{
    Frame, Framer, Header, HeaderName, Host, MediaType, Message, Method, NameAddr, NewRequest,
    SipUri, Transport, Uri, Via,
};

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,12}"
}

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        "[a-z]([a-z0-9-]{0,6}[a-z0-9])?(\\.[a-z][a-z0-9]{0,6}){0,3}"
            .prop_map(|h| Host::parse(&h).expect("generated host name is valid")),
        any::<[u8; 4]>().prop_map(|o| Host::ip(std::net::Ipv4Addr::from(o).into())),
        any::<[u16; 8]>().prop_map(|o| Host::ip(std::net::Ipv6Addr::from(o).into())),
    ]
}

fn sip_uri() -> impl Strategy<Value = SipUri> {
    (
        proptest::option::of("[a-zA-Z0-9+._-]{1,12}"),
        host(),
        proptest::option::of(1u16..),
        proptest::collection::vec(("[a-z]{1,6}", proptest::option::of("[a-z0-9]{1,6}")), 0..3),
        any::<bool>(),
    )
        .prop_map(|(user, host, port, params, secure)| {
            let mut u = SipUri::new(user.as_deref(), host, port);
            u.secure = secure;
            for (n, v) in params {
                u.params.set(&n, v.as_deref());
            }
            u
        })
}

fn name_addr() -> impl Strategy<Value = NameAddr> {
    (
        sip_uri(),
        proptest::option::of("[ -~]{0,16}"),
        proptest::option::of(token()),
    )
        .prop_map(|(u, display, tag)| {
            let mut n = NameAddr::new(u);
            if let Some(d) = display {
                n = n.with_display(&d);
            }
            if let Some(t) = tag {
                n.set_tag(&t);
            }
            n
        })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Invite),
        Just(Method::Options),
        Just(Method::Bye),
        Just(Method::Update),
        "[A-Z]{3,10}".prop_map(|m| Method::parse(&m).expect("generated method is a token")),
    ]
}

fn request() -> impl Strategy<Value = Message> {
    (
        method(),
        sip_uri(),
        name_addr(),
        name_addr(),
        "[a-zA-Z0-9.-]{1,20}(@[a-z0-9.]{1,10})?",
        0u32..=u32::MAX,
        token(),
        host(),
        proptest::collection::vec(("X-[A-Za-z]{1,8}", "[!-~]([ -~]{0,30}[!-~])?"), 0..4),
        proptest::collection::vec(any::<u8>(), 0..200),
        any::<bool>(),
    )
        .prop_map(
            |(
                method,
                uri,
                from,
                to,
                call_id,
                cseq,
                branch,
                via_host,
                extra,
                body,
                with_contact,
            )| {
                let via = Via::new(
                    Transport::Tcp,
                    via_host,
                    Some(5060),
                    &Via::branch_with_cookie(&branch),
                );
                let mut spec =
                    NewRequest::new(method, Uri::Sip(uri), via, from, to, &call_id, cseq);
                if with_contact {
                    spec.contact = Some(NameAddr::new(
                        Uri::parse("sip:b2b@192.0.2.1;transport=tcp").expect("literal URI"),
                    ));
                }
                let mut m = Message::new_request(spec);
                for (n, v) in extra {
                    m.headers.push(
                        Header::new(HeaderName::parse(&n), v).expect("generated header is valid"),
                    );
                }
                let ct = (!body.is_empty()).then(MediaType::sdp);
                m.set_body(ct, body);
                m
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn built_requests_round_trip(m in request()) {
        let enc = m.encode();
        let parsed = Message::parse(&enc).unwrap();
        prop_assert_eq!(&parsed, &m);
        prop_assert_eq!(parsed.encode(), enc.clone());
        // Responses built from it round-trip too.
        let r = Message::response_to(&m, 183, None, Some("tag1"));
        let renc = r.encode();
        prop_assert_eq!(Message::parse(&renc).unwrap().encode(), renc);
        // And the stream framer yields the same message, however the bytes are split.
        let mut f = Framer::default();
        let split = enc.len() / 3;
        f.push(&enc[..split]);
        let first = f.next_frame();
        f.push(&enc[split..]);
        let got = first.or_else(|| f.next_frame());
        prop_assert_eq!(got, Some(Ok(Frame::Message(m))));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Message::parse(&data);
        let mut f = Framer::new(512);
        for chunk in data.chunks(37) {
            f.push(chunk);
            while let Some(ev) = f.next_frame() {
                if let Err(e) = ev {
                    let _ = e.error.response();
                    let _ = e.error.error_response("t");
                }
            }
        }
    }

    #[test]
    fn mutated_messages_never_panic(m in request(), pos in any::<prop::sample::Index>(), junk in proptest::collection::vec(any::<u8>(), 1..8), cut in any::<bool>()) {
        let mut enc = m.encode();
        let at = pos.index(enc.len());
        if cut {
            enc.truncate(at);
        } else {
            for (i, b) in junk.iter().enumerate() {
                enc.insert((at + i).min(enc.len()), *b);
            }
        }
        if let Err(e) = Message::parse(&enc) {
            let _ = e.to_string();
            if let Some(r) = e.error_response("x") {
                // The answer parses whenever the copied headers themselves are sound.
                let sound = [HeaderName::Via, HeaderName::From, HeaderName::To, HeaderName::CallId, HeaderName::CSeq]
                    .iter()
                    .all(|n| {
                        let lines: Vec<_> = r.headers.get_all(n).collect();
                        (lines.len() == 1 || (*n == HeaderName::Via && !lines.is_empty()))
                            && lines.iter().all(|h| Header::new(n.clone(), h.value()).is_ok())
                    });
                if sound {
                    let again = Message::parse(&r.encode());
                    prop_assert!(again.is_ok(), "{e} -> {again:?}");
                }
            }
        }
    }
}
