//! HEP v3 packets and synthesised pcap frames through their parsers: never a panic; what
//! decodes re-encodes to a packet that decodes to the same message; frames read back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_capture::{frame, hep};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = hep::decode(data) {
        let mut out = Vec::new();
        if hep::encode(&h, &mut out).is_ok() {
            assert_eq!(hep::decode(&out), Ok(h));
        }
    }
    if let Ok(s) = frame::parse(data) {
        assert!(s.payload.len() <= data.len());
    }
    // Any payload between two addresses read back from its frames.
    let mut synth = frame::TcpSynth::new();
    let mut frames = Vec::new();
    let (a, b) = (
        "10.0.0.1:5061".parse().expect("addr"),
        "10.0.0.2:5061".parse().expect("addr"),
    );
    if synth.frames(a, b, data, &mut frames).is_ok() {
        let back: Vec<u8> = frames
            .iter()
            .flat_map(|f| {
                frame::parse(f)
                    .map(|s| s.payload.to_vec())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(back, data);
    }
});
