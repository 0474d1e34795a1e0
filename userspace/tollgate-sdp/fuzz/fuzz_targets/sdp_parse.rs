//! Fuzz target: the SDP parser never panics; whatever it accepts serializes to a body that
//! parses back to the same session, and the typed views never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_sdp::Sdp;

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = Sdp::parse(data) else {
        return;
    };
    let text = sdp.to_string();
    let again = Sdp::parse(text.as_bytes()).expect("serialized SDP must parse");
    assert_eq!(again, sdp, "parse(serialize(x)) != x");
    assert_eq!(again.to_string(), text);
    let _ = sdp.direction();
    let _ = sdp.connection().map(|c| (c.ip(), c.is_unspecified()));
    let mut o = sdp.origin.clone();
    o.increment_version();
    let _ = o.version_u64();
    for (i, m) in sdp.media.iter().enumerate() {
        let _ = sdp.media_connection(i).map(|c| c.ip());
        let _ = sdp.media_direction(i);
        let _ = m.rtpmaps();
        let _ = m.ptime();
        let _ = m.maxptime();
        let _ = m.rtcp();
        let _ = m.rtcp_mux();
        for f in &m.formats {
            if let Ok(Some(fmtp)) = m.fmtp(f) {
                let _ = fmtp.pairs().count();
            }
        }
        if let Ok(lines) = m.crypto() {
            for c in &lines {
                let _ = c.typed_session_params();
                let _ = tollgate_sdp::CryptoPolicy::default().accept(c);
                assert_eq!(
                    tollgate_sdp::Crypto::parse(&c.to_string()).as_ref(),
                    Ok(c),
                    "a=crypto round trip"
                );
            }
        }
    }
});
