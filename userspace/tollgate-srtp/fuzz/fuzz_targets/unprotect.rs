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

    // Resumed streams (ROC and SRTCP index from the input): an arbitrary first packet is
    // refused without committing, and what a resumed sender protects, a receiver resumed at
    // the same place restores at the same index.
    let be32 = |at: usize| {
        pkt.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let roc = u32::from(sel >> 3).wrapping_mul(0x0101_0101) >> (streams & 31);
    let srtcp = roc & 0x7fff_ffff;
    for rtcp in [false, true] {
        let Some(ssrc) = be32(if rtcp { 4 } else { 8 }) else {
            continue;
        };
        let mut tx = Context::new(&km, cfg).expect("context");
        let mut rx = Context::new(&km, cfg).expect("context");
        tx.resume(ssrc, roc, srtcp).expect("room for one stream");
        rx.resume(ssrc, roc, 0).expect("room for one stream");
        buf[..pkt.len()].copy_from_slice(pkt);
        let r = if rtcp {
            rx.unprotect_rtcp(&mut buf, pkt.len())
        } else {
            rx.unprotect_rtp(&mut buf, pkt.len())
        };
        if r.is_err() {
            assert_eq!(rx.rtp_index(ssrc), None, "a refused packet committed");
        }
        let mut rx = Context::new(&km, cfg).expect("context");
        rx.resume(ssrc, roc, 0).expect("room for one stream");
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
            // Protect refuses past the index space; the receiver then never sees it.
            assert_eq!(back, Ok(pkt.len()), "round trip of a resumed stream");
            assert_eq!(&buf[..pkt.len()], pkt);
            if rtcp {
                assert_eq!(tx.srtcp_tx_index(ssrc), Some(srtcp + 1));
            } else {
                assert_eq!(tx.rtp_index(ssrc).map(|r| r.0), Some(roc));
                assert_eq!(rx.rtp_index(ssrc), tx.rtp_index(ssrc));
            }
        }
    }
});
