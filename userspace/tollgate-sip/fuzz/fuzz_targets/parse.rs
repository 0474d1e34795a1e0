//! Fuzz the datagram parser: never panic; anything accepted re-encodes to a message that parses
//! to the same thing; every rejection maps to a response or a silent drop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_sip::{HeaderName, Message, UaPolicy, check_request, check_response};

fuzz_target!(|data: &[u8]| {
    match Message::parse(data) {
        Ok(m) => {
            let enc = m.encode();
            let again = Message::parse(&enc).expect("re-encoded message must parse");
            let strip = |x: &Message| {
                let mut x = x.clone();
                x.headers.remove(&HeaderName::ContentLength);
                x
            };
            assert_eq!(strip(&again), strip(&m));
            assert_eq!(again.encode(), enc);
            if m.is_request() {
                if let Err(e) = check_request(&m, &UaPolicy::default()) {
                    let r = e.error_response("fz").expect("check failures are answerable");
                    let _ = r.encode();
                }
                let r = Message::response_to(&m, 200, None, Some("fz"));
                Message::parse(&r.encode()).expect("response to a valid request parses");
            } else {
                let _ = check_response(&m);
            }
        }
        Err(e) => {
            let _ = e.to_string();
            let _ = e.response();
            if let Some(r) = e.error_response("fz") {
                let _ = r.encode();
            }
        }
    }
});
