//! Fuzz the stream framer: the first byte picks a chunk size; the rest is pushed in chunks.
//! Never panic, never buffer past the cap, and every framed message re-parses with stream rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_sip::{Frame, Framer, Message, ParseOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 64) + 1;
    let cap = 2048;
    let mut f = Framer::new(cap);
    for part in rest.chunks(chunk) {
        f.push(part);
        while let Some(ev) = f.next_frame() {
            match ev {
                Ok(Frame::Message(m)) => {
                    let enc = m.encode();
                    Message::parse_with(&enc, ParseOptions::stream())
                        .expect("framed message re-parses");
                }
                Ok(Frame::Ping) => {}
                Err(e) => {
                    let _ = e.error.response();
                    if let Some(r) = e.error.error_response("fz") {
                        let _ = r.encode();
                    }
                }
            }
        }
        assert!(f.buffered() <= cap, "framer buffered {} bytes", f.buffered());
    }
});
