//! Fuzzes SRTP and SRTCP unprotect with arbitrary bytes, and checks that whatever protect
//! accepts, unprotect restores.
//!
//! Input: byte 0 selects the profile (low 3 bits, modulo 6), byte 1 the SSRC table size;
//! the rest is the packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_srtp::{Config, Context, KeyMaterial, Profile};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Some((&streams, pkt)) = rest.split_first() else {
        return;
    };
    let profile = Profile::ALL[usize::from(sel & 7) % Profile::ALL.len()];
    let km = KeyMaterial::generate(profile, |b| {
        for (i, x) in b.iter_mut().enumerate() {
            *x = i as u8 ^ 0x5a;
        }
    });
    let cfg = Config {
        max_streams: 1 + usize::from(streams % 4),
        replay_window: if streams & 0x80 != 0 { 1024 } else { 128 },
    };
    let mut rx = Context::new(&km, cfg).expect("context");
    let mut buf = vec![0u8; pkt.len() + 64];

    // Arbitrary bytes as SRTP and SRTCP: never a panic; a success shortens the packet.
    for rtcp in [false, true] {
        buf[..pkt.len()].copy_from_slice(pkt);
        let r = if rtcp {
            rx.unprotect_rtcp(&mut buf, pkt.len())
        } else {
            rx.unprotect_rtp(&mut buf, pkt.len())
        };
        match r {
            Ok(n) => assert!(n < pkt.len()),
            Err(e) => {
                let _ = e.kind().as_str();
                // A refused packet is left untouched.
                assert_eq!(&buf[..pkt.len()], pkt);
            }
        }
    }

    // Round trip: what protect accepts, a fresh receiver restores.
    let mut tx = Context::new(&km, cfg).expect("context");
    let mut rx = Context::new(&km, cfg).expect("context");
    for rtcp in [false, true] {
        buf[..pkt.len()].copy_from_slice(pkt);
        let r = if rtcp {
            tx.protect_rtcp(&mut buf, pkt.len())
        } else {
            tx.protect_rtp(&mut buf, pkt.len())
        };
        if let Ok(n) = r {
            let back = if rtcp {
                rx.unprotect_rtcp(&mut buf, n)
            } else {
                rx.unprotect_rtp(&mut buf, n)
            };
            assert_eq!(back, Ok(pkt.len()), "round trip of an accepted packet");
            assert_eq!(&buf[..pkt.len()], pkt);
        }
    }
});
