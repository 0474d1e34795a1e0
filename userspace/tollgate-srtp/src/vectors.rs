//! Known-answer and behaviour tests of the contexts (RFC 3711 B.2/B.3 are in `crypto`).

use crate::context::Keys;
use crate::{Config, Context, Error, ErrorKind, Job, KeyMaterial, Op, Profile, process_batch};

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn session_ctx(profile: Profile, key: &str, salt: &str) -> Context {
    let k = unhex(key);
    let s = unhex(salt);
    let rtp = Keys::from_session(profile, &k, &s, &[]);
    let rtcp = Keys::from_session(profile, &k, &s, &[]);
    Context::with_keys(profile, rtp, rtcp, Config::default()).unwrap()
}

const GCM_KEY_128: &str = "000102030405060708090a0b0c0d0e0f";
const GCM_KEY_256: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const GCM_SALT: &str = "517569642070726f2071756f";
const RFC7714_RTP: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973
                           20646976 69736120 696e2070 61727465 73207472 6573";
const RFC7714_RTCP: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930
                            4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef";

fn round(ctx_tx: &mut Context, ctx_rx: &mut Context, plain: &[u8], expect: &[u8], rtcp: bool) {
    let mut buf = vec![0u8; plain.len() + 64];
    buf[..plain.len()].copy_from_slice(plain);
    let n = if rtcp {
        ctx_tx.protect_rtcp(&mut buf, plain.len()).unwrap()
    } else {
        ctx_tx.protect_rtp(&mut buf, plain.len()).unwrap()
    };
    assert_eq!(hexs(&buf[..n]), hexs(expect));
    let m = if rtcp {
        ctx_rx.unprotect_rtcp(&mut buf, n).unwrap()
    } else {
        ctx_rx.unprotect_rtp(&mut buf, n).unwrap()
    };
    assert_eq!(&buf[..m], plain);
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// RFC 7714 §16.1.1: AEAD_AES_128_GCM SRTP (session key and salt given, ROC 0).
#[test]
fn rfc7714_16_rtp_aes128_gcm() {
    let p = Profile::AeadAes128Gcm;
    let expect = unhex(
        "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5 0d294e6f
         42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce",
    );
    round(
        &mut session_ctx(p, GCM_KEY_128, GCM_SALT),
        &mut session_ctx(p, GCM_KEY_128, GCM_SALT),
        &unhex(RFC7714_RTP),
        &expect,
        false,
    );
}

/// RFC 7714 §17.1.1 and §17.2.1: SRTCP with index 0x5d4, 128- and 256-bit keys.
#[test]
fn rfc7714_17_rtcp_gcm() {
    let cases = [
        (
            Profile::AeadAes128Gcm,
            GCM_KEY_128,
            "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d c676a5f1
             730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872 45d9eade 800005d4",
        ),
        (
            Profile::AeadAes256Gcm,
            GCM_KEY_256,
            "81c8000d 4d617273 d50ae4d1 f5ce5d30 4ba297e4 7d470c28 2c3ece5d bffe0a50 a2eaa5c1
             110555be 8415f658 c61de047 6f1b6fad 1d1eb30c 4446839f 57ff6f6c b26ac3be 800005d4",
        ),
    ];
    for (p, key, expect) in cases {
        let mut tx = session_ctx(p, key, GCM_SALT);
        tx.set_rtcp_tx(0x4d61_7273, 0x5d3);
        let mut rx = session_ctx(p, key, GCM_SALT);
        round(&mut tx, &mut rx, &unhex(RFC7714_RTCP), &unhex(expect), true);
    }
}

/// libsrtp's own known answer (test/srtp_driver.c, AES_CM_128_HMAC_SHA1_80 from the RFC 3711
/// B.3 master key): covers KDF, AES-CM and HMAC together.
#[test]
fn libsrtp_driver_aes_cm_128_hmac_sha1_80() {
    let key = unhex("e1f97a0d3e018be0d64fa32c06de4139");
    let salt = unhex("0ec675ad498afeebb6960b3aabe6");
    let km = KeyMaterial::new(Profile::Aes128CmHmacSha1_80, &key, &salt).unwrap();
    let plain = unhex("800f1234decafbadcafebabeabababababababababababababababab");
    let expect =
        unhex("800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb");
    round(
        &mut Context::new(&km, Config::default()).unwrap(),
        &mut Context::new(&km, Config::default()).unwrap(),
        &plain,
        &expect,
        false,
    );
}

fn km(p: Profile, seed: u8) -> KeyMaterial {
    KeyMaterial::generate(p, |b| {
        for (i, x) in b.iter_mut().enumerate() {
            *x = seed.wrapping_add(i as u8).wrapping_mul(31);
        }
    })
}

fn rtp(seq: u16, ssrc: u32, payload: usize) -> Vec<u8> {
    let mut v = vec![0x80, 0x00];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 160]);
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend((0..payload).map(|i| i as u8));
    v
}

#[test]
fn refused_packets_leave_buffer_and_state_untouched() {
    for p in Profile::ALL {
        let k = km(p, 1);
        let mut tx = Context::new(&k, Config::default()).unwrap();
        let mut rx = Context::new(&k, Config::default()).unwrap();
        let mut buf = vec![0u8; 300];
        let pkt = rtp(10, 7, 160);
        buf[..pkt.len()].copy_from_slice(&pkt);
        let n = tx.protect_rtp(&mut buf, pkt.len()).unwrap();
        let mut bad = buf.clone();
        bad[20] ^= 1;
        let before = bad.clone();
        assert_eq!(rx.unprotect_rtp(&mut bad, n), Err(Error::AuthFailed), "{p}");
        assert_eq!(bad, before, "{p}: refused packet modified");
        assert_eq!(rx.stream_count(), 0, "{p}: unauthenticated SSRC admitted");
        let m = rx.unprotect_rtp(&mut buf, n).unwrap();
        assert_eq!(&buf[..m], &pkt[..]);
        // Replays are refused.
        let mut again = vec![0u8; 300];
        again[..pkt.len()].copy_from_slice(&pkt);
        let mut tx2 = Context::new(&k, Config::default()).unwrap();
        let n = tx2.protect_rtp(&mut again, pkt.len()).unwrap();
        assert_eq!(
            rx.unprotect_rtp(&mut again, n).map_err(|e| e.kind()),
            Err(ErrorKind::Replayed)
        );
        // Protecting the same sequence number twice is refused.
        let mut b3 = vec![0u8; 300];
        b3[..pkt.len()].copy_from_slice(&pkt);
        assert_eq!(
            tx2.protect_rtp(&mut b3, pkt.len()).map_err(|e| e.kind()),
            Err(ErrorKind::Replayed)
        );
    }
}

#[test]
fn stream_table_is_bounded() {
    let k = km(Profile::Aes128CmHmacSha1_80, 2);
    let cfg = Config {
        max_streams: 2,
        ..Config::default()
    };
    let mut tx = Context::new(&k, cfg).unwrap();
    let mut buf = [0u8; 64];
    for ssrc in 1..=2 {
        let pkt = rtp(1, ssrc, 8);
        buf[..pkt.len()].copy_from_slice(&pkt);
        tx.protect_rtp(&mut buf, pkt.len()).unwrap();
    }
    let pkt = rtp(1, 3, 8);
    buf[..pkt.len()].copy_from_slice(&pkt);
    assert_eq!(
        tx.protect_rtp(&mut buf, pkt.len()).map_err(|e| e.kind()),
        Err(ErrorKind::TooManyStreams)
    );
    assert!(tx.remove_stream(1));
    assert!(tx.protect_rtp(&mut buf, pkt.len()).is_ok());
}

#[test]
fn config_and_mki_are_checked() {
    let mut k = km(Profile::Aes128CmHmacSha1_80, 3);
    let small = Config {
        replay_window: 64,
        ..Config::default()
    };
    assert_eq!(
        Context::new(&k, small).map(|_| ()).map_err(|e| e.kind()),
        Err(ErrorKind::BadConfig)
    );
    k.mki = Some((1, 4));
    assert_eq!(
        Context::new(&k, Config::default())
            .map(|_| ())
            .map_err(|e| e.kind()),
        Err(ErrorKind::UnsupportedMki)
    );
}

#[test]
fn short_and_malformed_packets_are_refused() {
    for p in Profile::ALL {
        let k = km(p, 4);
        let mut c = Context::new(&k, Config::default()).unwrap();
        let mut buf = [0u8; 64];
        for len in 0..40 {
            let _ = c.unprotect_rtp(&mut buf, len);
            let _ = c.unprotect_rtcp(&mut buf, len);
        }
        assert_eq!(
            c.protect_rtp(&mut buf, 65).map_err(|e| e.kind()),
            Err(ErrorKind::TooShort)
        );
        // Header extension longer than the packet.
        let mut pkt = rtp(1, 9, 0);
        pkt[0] |= 0x10;
        pkt.extend_from_slice(&[0xbe, 0xde, 0x00, 0x05]);
        buf[..pkt.len()].copy_from_slice(&pkt);
        assert_eq!(
            c.protect_rtp(&mut buf, pkt.len()).map_err(|e| e.kind()),
            Err(ErrorKind::BadHeader)
        );
        // No tailroom.
        let pkt = rtp(1, 9, 20);
        let mut tight = pkt.clone();
        assert_eq!(
            c.protect_rtp(&mut tight, pkt.len()).map_err(|e| e.kind()),
            Err(ErrorKind::NoTailroom)
        );
    }
}

#[test]
fn rtcp_round_trip_and_first_index_is_one() {
    for p in Profile::ALL {
        let k = km(p, 5);
        let mut tx = Context::new(&k, Config::default()).unwrap();
        let mut rx = Context::new(&k, Config::default()).unwrap();
        let pkt = unhex(RFC7714_RTCP);
        let mut buf = vec![0u8; 200];
        buf[..pkt.len()].copy_from_slice(&pkt);
        let n = tx.protect_rtcp(&mut buf, pkt.len()).unwrap();
        assert_eq!(n, pkt.len() + p.rtcp_trailer_len());
        let at = if p.is_aead() { n - 4 } else { pkt.len() };
        assert_eq!(&buf[at..at + 4], &[0x80, 0, 0, 1], "{p}");
        let m = rx.unprotect_rtcp(&mut buf, n).unwrap();
        assert_eq!(&buf[..m], &pkt[..]);
        assert_eq!(
            rx.unprotect_rtcp(&mut buf, n).map_err(|e| e.kind()),
            Err(ErrorKind::Replayed)
        );
    }
}

#[test]
fn batch_equals_single() {
    for p in Profile::ALL {
        let k = km(p, 6);
        let mut single_tx = Context::new(&k, Config::default()).unwrap();
        let mut single_rx = Context::new(&k, Config::default()).unwrap();
        let mut ctxs = vec![
            Context::new(&k, Config::default()).unwrap(),
            Context::new(&k, Config::default()).unwrap(),
        ];
        let mut bufs: Vec<Vec<u8>> = Vec::new();
        let mut lens = Vec::new();
        let mut ops = Vec::new();
        for i in 0..100u16 {
            let seq = [0u16, 1, 5, 3, 3, 2, 900, 899, 40000][i as usize % 9].wrapping_add(i * 7);
            let payload = [0usize, 1, 15, 16, 17, 160, 500][i as usize % 7];
            let pkt = if i % 11 == 0 {
                unhex(RFC7714_RTCP)
            } else {
                rtp(seq, 1 + u32::from(i % 3), payload)
            };
            let mut b = vec![0u8; pkt.len() + 32];
            b[..pkt.len()].copy_from_slice(&pkt);
            lens.push(pkt.len());
            bufs.push(b);
            ops.push(i % 11 == 0);
        }
        // Protect: single vs batch.
        let mut single = bufs.clone();
        let mut single_res = Vec::new();
        for (i, b) in single.iter_mut().enumerate() {
            single_res.push(if ops[i] {
                single_tx.protect_rtcp(b, lens[i])
            } else {
                single_tx.protect_rtp(b, lens[i])
            });
        }
        let mut batch = bufs.clone();
        let mut jobs: Vec<Job<'_>> = batch
            .iter_mut()
            .enumerate()
            .map(|(i, b)| {
                let op = if ops[i] {
                    Op::ProtectRtcp
                } else {
                    Op::ProtectRtp
                };
                Job::new(0, op, b, lens[i])
            })
            .collect();
        process_batch(&mut ctxs[..], &mut jobs);
        let batch_res: Vec<_> = jobs.iter().map(|j| j.result).collect();
        drop(jobs);
        assert_eq!(batch_res, single_res, "{p}");
        assert_eq!(batch, single, "{p}");
        // Unprotect the protected packets: single vs batch (context 1), plus a bad id.
        let mut single_out = single.clone();
        let mut unres = Vec::new();
        for (i, b) in single_out.iter_mut().enumerate() {
            let Ok(n) = single_res[i] else {
                unres.push(None);
                continue;
            };
            unres.push(Some(if ops[i] {
                single_rx.unprotect_rtcp(b, n)
            } else {
                single_rx.unprotect_rtp(b, n)
            }));
        }
        let mut batch_out = single.clone();
        let mut jobs: Vec<Job<'_>> = Vec::new();
        let mut which = Vec::new();
        for (i, b) in batch_out.iter_mut().enumerate() {
            if let Ok(n) = single_res[i] {
                let op = if ops[i] {
                    Op::UnprotectRtcp
                } else {
                    Op::UnprotectRtp
                };
                jobs.push(Job::new(1, op, b, n));
                which.push(i);
            }
        }
        let mut extra = [0u8; 4];
        jobs.push(Job::new(7, Op::UnprotectRtp, &mut extra, 4));
        process_batch(&mut ctxs, &mut jobs);
        let last = jobs.pop().unwrap();
        assert_eq!(last.result.map_err(|e| e.kind()), Err(ErrorKind::NoContext));
        for (j, &i) in jobs.iter().zip(&which) {
            assert_eq!(Some(j.result), unres[i], "{p} job {i}");
        }
        drop(jobs);
        assert_eq!(batch_out, single_out, "{p}");
    }
}

#[test]
fn lifetime_is_enforced() {
    let mut k = km(Profile::Aes128CmHmacSha1_80, 8);
    k.lifetime = Some(3);
    let mut tx = Context::new(&k, Config::default()).unwrap();
    let mut buf = [0u8; 64];
    for seq in 0..3 {
        let pkt = rtp(seq, 1, 4);
        buf[..pkt.len()].copy_from_slice(&pkt);
        tx.protect_rtp(&mut buf, pkt.len()).unwrap();
    }
    let pkt = rtp(3, 1, 4);
    buf[..pkt.len()].copy_from_slice(&pkt);
    assert_eq!(
        tx.protect_rtp(&mut buf, pkt.len()).map_err(|e| e.kind()),
        Err(ErrorKind::KeyExhausted)
    );
}

/// The batch unprotect computes tags ahead of the in-order stage against the state before the
/// chunk; across a sequence wrap inside a chunk, with reordering, duplicates and damage, its
/// results must still be exactly the single-packet ones.
#[test]
fn batch_unprotect_across_the_wrap_matches_single() {
    for p in [Profile::Aes128CmHmacSha1_80, Profile::Aes128CmHmacSha1_32] {
        let k = km(p, 3);
        let mut tx = Context::new(&k, Config::default()).unwrap();
        let mut wire: Vec<Vec<u8>> = Vec::new();
        for i in 0..120u16 {
            let pkt = rtp(65_480u16.wrapping_add(i), 9, 160);
            let mut b = vec![0u8; pkt.len() + 16];
            b[..pkt.len()].copy_from_slice(&pkt);
            let n = tx.protect_rtp(&mut b, pkt.len()).unwrap();
            b.truncate(n);
            wire.push(b);
        }
        // Reorder across the wrap, duplicate, damage.
        wire.swap(55, 57);
        wire.swap(56, 60);
        let dup = wire[58].clone();
        wire.insert(62, dup);
        wire[70][20] ^= 1;
        let late = wire[10].clone();
        wire.insert(90, late);
        let mut single_rx = Context::new(&k, Config::default()).unwrap();
        let mut batch_rx = Context::new(&k, Config::default()).unwrap();
        let mut single = wire.clone();
        let want: Vec<_> = single
            .iter_mut()
            .map(|b| {
                let n = b.len();
                single_rx.unprotect_rtp(b, n)
            })
            .collect();
        let mut batch = wire.clone();
        let mut jobs: Vec<Job<'_>> = batch
            .iter_mut()
            .map(|b| {
                let n = b.len();
                Job::new(0, Op::UnprotectRtp, b, n)
            })
            .collect();
        batch_rx.process_batch(&mut jobs);
        let got: Vec<_> = jobs.iter().map(|j| j.result).collect();
        drop(jobs);
        assert_eq!(got, want, "{p}");
        assert_eq!(batch, single, "{p}");
        assert!(want.iter().filter(|r| r.is_err()).count() >= 3, "{p}");
    }
}

/// Protects `pkt` (RTP or RTCP) with `tx` and returns the SRTP/SRTCP bytes.
fn protect(tx: &mut Context, pkt: &[u8], rtcp: bool) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; pkt.len() + 64];
    buf[..pkt.len()].copy_from_slice(pkt);
    let n = if rtcp {
        tx.protect_rtcp(&mut buf, pkt.len())?
    } else {
        tx.protect_rtp(&mut buf, pkt.len())?
    };
    buf.truncate(n);
    Ok(buf)
}

/// Unprotects `pkt` with `rx`; returns the plain length.
fn unprotect(rx: &mut Context, pkt: &[u8], rtcp: bool) -> Result<usize, Error> {
    let mut buf = pkt.to_vec();
    if rtcp {
        rx.unprotect_rtcp(&mut buf, pkt.len())
    } else {
        rx.unprotect_rtp(&mut buf, pkt.len())
    }
}

fn rtcp_sr(ssrc: u32) -> Vec<u8> {
    let mut p = unhex(RFC7714_RTCP);
    p[4..8].copy_from_slice(&ssrc.to_be_bytes());
    p
}

#[test]
fn resumed_protect_continues_the_index_and_srtcp() {
    const S: u32 = 0x0bad_cafe;
    for p in Profile::ALL {
        let k = km(p, 7);
        let mut tx = Context::new(&k, Config::default()).unwrap();
        let mut rx = Context::new(&k, Config::default()).unwrap();
        // Before the restart: through the wrap (ROC 1), three SRTCP packets.
        for seq in [65533u16, 65534, 65535, 0, 1] {
            let s = protect(&mut tx, &rtp(seq, S, 40), false).unwrap();
            unprotect(&mut rx, &s, false).unwrap();
        }
        for _ in 0..3 {
            let s = protect(&mut tx, &rtcp_sr(S), true).unwrap();
            unprotect(&mut rx, &s, true).unwrap();
        }
        assert_eq!(tx.rtp_index(S), Some((1, 1)));
        assert_eq!(tx.srtcp_tx_index(S), Some(3));
        // After: a fresh context at the stored position produces exactly the bytes the old
        // one would have, and the receiver takes them.
        let mut tx2 = Context::new(&k, Config::default()).unwrap();
        tx2.resume(S, 1, 3).unwrap();
        assert_eq!(tx2.rtp_index(S), None, "{p}: no RTP yet");
        assert_eq!(tx2.srtcp_tx_index(S), Some(3));
        assert_eq!(tx2.stream_count(), 1);
        // SRTCP before the first RTP packet keeps the stream resumed.
        let old = protect(&mut tx, &rtcp_sr(S), true).unwrap();
        let new = protect(&mut tx2, &rtcp_sr(S), true).unwrap();
        assert_eq!(old, new, "{p}: SRTCP index 4");
        unprotect(&mut rx, &new, true).unwrap();
        assert_eq!(tx2.srtcp_tx_index(S), Some(4));
        assert_eq!(tx2.rtp_index(S), None, "{p}: still waiting for RTP");
        for seq in [2u16, 3, 4] {
            let old = protect(&mut tx, &rtp(seq, S, 40), false).unwrap();
            let new = protect(&mut tx2, &rtp(seq, S, 40), false).unwrap();
            assert_eq!(old, new, "{p}: seq {seq}");
            unprotect(&mut rx, &new, false).unwrap();
        }
        assert_eq!(tx2.rtp_index(S), Some((1, 4)));
        assert_eq!(tx2.stream_count(), 1);
        // Without resume the receiver refuses both (ROC 0 / SRTCP index 1).
        let mut tx3 = Context::new(&k, Config::default()).unwrap();
        let s = protect(&mut tx3, &rtp(5, S, 40), false).unwrap();
        assert_eq!(
            unprotect(&mut rx, &s, false).map_err(|e| e.kind()),
            Err(ErrorKind::AuthFailed)
        );
        let s = protect(&mut tx3, &rtcp_sr(S), true).unwrap();
        assert_eq!(
            unprotect(&mut rx, &s, true).map_err(|e| e.kind()),
            Err(ErrorKind::Replayed)
        );
    }
}

#[test]
fn resumed_first_index_is_exact_whatever_the_seq() {
    // A highest index of ROC << 16 alone would estimate SEQ >= 2^15 as ROC - 1.
    const S: u32 = 77;
    for p in [Profile::Aes128CmHmacSha1_80, Profile::AeadAes128Gcm] {
        let k = km(p, 8);
        for (roc, seq) in [(1u32, 40000u16), (1, 0), (7, 65535), (0, 0), (0, 50000)] {
            let mut tx = Context::new(&k, Config::default()).unwrap();
            let mut rx = Context::new(&k, Config::default()).unwrap();
            tx.resume(S, roc, 0).unwrap();
            rx.resume(S, roc, 0).unwrap();
            let s = protect(&mut tx, &rtp(seq, S, 20), false).unwrap();
            assert_eq!(tx.rtp_index(S), Some((roc, seq)), "{p} {roc} {seq}");
            assert_eq!(unprotect(&mut rx, &s, false), Ok(32), "{p} {roc} {seq}");
            assert_eq!(rx.rtp_index(S), Some((roc, seq)));
            // The next packets continue from there, across a wrap too.
            for d in 1..=3u16 {
                let s = protect(&mut tx, &rtp(seq.wrapping_add(d), S, 20), false).unwrap();
                assert_eq!(unprotect(&mut rx, &s, false), Ok(32), "{p} {roc} {seq}+{d}");
            }
            let want = (u64::from(roc) << 16 | u64::from(seq)) + 3;
            assert_eq!(rx.rtp_index(S), Some(((want >> 16) as u32, want as u16)));
        }
    }
}

#[test]
fn resumed_unprotect_commits_only_an_authenticated_first_packet() {
    const S: u32 = 0x5555;
    for p in Profile::ALL {
        let k = km(p, 9);
        let mut tx = Context::new(&k, Config::default()).unwrap();
        let mut sent = Vec::new();
        for seq in [65534u16, 65535, 0, 1, 2, 3] {
            sent.push(protect(&mut tx, &rtp(seq, S, 40), false).unwrap());
        }
        let mut rx = Context::new(&k, Config::default()).unwrap();
        rx.resume(S, 1, 0).unwrap();
        // Forged (bit flip) and stale (ROC 0, taken as ROC 1) first packets: refused, and
        // nothing is committed.
        let mut forged = sent[3].clone();
        forged[20] ^= 1;
        for (what, bad) in [("forged", &forged), ("stale", &sent[1])] {
            assert_eq!(
                unprotect(&mut rx, bad, false).map_err(|e| e.kind()),
                Err(ErrorKind::AuthFailed),
                "{p}: {what}"
            );
            assert_eq!(rx.rtp_index(S), None, "{p}: {what} committed");
            assert_eq!(rx.stream_count(), 1);
        }
        // The real one sets the highest index; a late one within the window still passes.
        assert_eq!(unprotect(&mut rx, &sent[3], false), Ok(52), "{p}");
        assert_eq!(rx.rtp_index(S), Some((1, 1)));
        assert_eq!(
            unprotect(&mut rx, &sent[2], false),
            Ok(52),
            "{p}: late seq 0"
        );
        assert_eq!(unprotect(&mut rx, &sent[4], false), Ok(52), "{p}");
        assert_eq!(
            unprotect(&mut rx, &sent[3], false).map_err(|e| e.kind()),
            Err(ErrorKind::Replayed)
        );
        assert_eq!(rx.rtp_index(S), Some((1, 2)));
        // SRTCP received before the first RTP leaves the stream resumed.
        let mut rx2 = Context::new(&k, Config::default()).unwrap();
        rx2.resume(S, 1, 0).unwrap();
        let c = protect(&mut tx, &rtcp_sr(S), true).unwrap();
        assert!(unprotect(&mut rx2, &c, true).is_ok(), "{p}");
        assert_eq!(
            unprotect(&mut rx2, &c, true).map_err(|e| e.kind()),
            Err(ErrorKind::Replayed),
            "{p}: SRTCP window kept while pending"
        );
        assert_eq!(rx2.rtp_index(S), None);
        assert_eq!(unprotect(&mut rx2, &sent[5], false), Ok(52), "{p}");
        assert_eq!(
            unprotect(&mut rx2, &c, true).map_err(|e| e.kind()),
            Err(ErrorKind::Replayed),
            "{p}: SRTCP window carried into the active stream"
        );
        assert_eq!(rx2.rtp_index(S), Some((1, 3)));
    }
}

#[test]
fn resume_rules_and_table_bookkeeping() {
    let k = km(Profile::Aes128CmHmacSha1_80, 10);
    let cfg = Config {
        max_streams: 3,
        ..Config::default()
    };
    let mut tx = Context::new(&k, cfg).unwrap();
    assert_eq!(
        tx.resume(1, 0, 0x8000_0000).map_err(|e| e.kind()),
        Err(ErrorKind::BadConfig)
    );
    protect(&mut tx, &rtp(9, 1, 8), false).unwrap();
    assert_eq!(
        tx.resume(1, 5, 0).map_err(|e| e.kind()),
        Err(ErrorKind::BadConfig),
        "an active stream is newer than any stored position"
    );
    tx.resume(2, 20, 200).unwrap();
    tx.resume(3, 3, 300).unwrap();
    tx.resume(3, 30, 300).unwrap(); // replaces, takes no new slot
    assert_eq!(tx.stream_count(), 3);
    assert_eq!(
        tx.resume(4, 0, 0).map_err(|e| e.kind()),
        Err(ErrorKind::TooManyStreams)
    );
    assert_eq!(
        protect(&mut tx, &rtp(1, 4, 8), false).map_err(|e| e.kind()),
        Err(ErrorKind::TooManyStreams)
    );
    // Promotion moves streams and windows without mixing them up, whatever the order.
    protect(&mut tx, &rtcp_sr(3), true).unwrap();
    protect(&mut tx, &rtp(60000, 2, 8), false).unwrap();
    assert_eq!(tx.rtp_index(2), Some((20, 60000)));
    assert_eq!(tx.rtp_index(3), None);
    assert_eq!(tx.srtcp_tx_index(3), Some(301));
    assert_eq!(tx.srtcp_tx_index(2), Some(200));
    protect(&mut tx, &rtp(5, 3, 8), false).unwrap();
    assert_eq!(tx.rtp_index(3), Some((30, 5)));
    assert_eq!(tx.srtcp_tx_index(3), Some(301));
    assert_eq!(tx.rtp_index(1), Some((0, 9)));
    assert_eq!(tx.stream_count(), 3);
    // Forgetting a resumed stream frees its slot.
    assert!(tx.remove_stream(1));
    tx.resume(4, 4, 0).unwrap();
    assert!(tx.remove_stream(4));
    assert!(!tx.remove_stream(4));
    assert_eq!(tx.srtcp_tx_index(4), None);
    assert_eq!(tx.stream_count(), 2);
    protect(&mut tx, &rtp(1, 4, 8), false).unwrap();
    assert_eq!(
        tx.rtp_index(4),
        Some((0, 1)),
        "a forgotten position is not reused"
    );
}

#[test]
fn batch_unprotect_of_a_resumed_stream() {
    const S: u32 = 0x7777;
    for p in Profile::ALL {
        let k = km(p, 11);
        let mut tx = Context::new(&k, Config::default()).unwrap();
        tx.resume(S, 2, 0).unwrap();
        let mut bufs: Vec<Vec<u8>> = [40000u16, 40001, 40002]
            .iter()
            .map(|&s| {
                let mut b = protect(&mut tx, &rtp(s, S, 30), false).unwrap();
                b.resize(b.len() + 32, 0);
                b
            })
            .collect();
        let len = 12 + 30 + p.rtp_tag_len();
        bufs[0][15] ^= 1; // forged first packet
        let mut ctxs = vec![Context::new(&k, Config::default()).unwrap()];
        ctxs[0].resume(S, 2, 0).unwrap();
        let mut jobs: Vec<Job<'_>> = bufs
            .iter_mut()
            .map(|b| Job::new(0, Op::UnprotectRtp, b, len))
            .collect();
        process_batch(&mut ctxs, &mut jobs);
        let got: Vec<_> = jobs
            .iter()
            .map(|j| j.result.map_err(|e| e.kind()))
            .collect();
        assert_eq!(got, vec![Err(ErrorKind::AuthFailed), Ok(42), Ok(42)], "{p}");
        assert_eq!(ctxs[0].rtp_index(S), Some((2, 40002)));
    }
}

/// Runs `jobs` (context id, op, packet) in bursts of the sizes `bursts` gives through
/// [`process_batch`] on `batch`, and one by one through the single-packet calls on `single`;
/// asserts the same results and bytes, and returns the single-packet outputs.
fn bursts_equal_single(
    batch: &mut Vec<Context>,
    single: &mut [Context],
    jobs: &[(usize, Op, Vec<u8>)],
    mut burst: impl FnMut() -> usize,
) -> Vec<Result<Vec<u8>, Error>> {
    let mut want = Vec::new();
    let mut want_bufs = Vec::new();
    for (ctx, op, pkt) in jobs {
        let mut b = pkt.clone();
        b.resize(pkt.len() + 32, 0);
        let r = match single.get_mut(*ctx) {
            None => Err(Error::NoContext(*ctx)),
            Some(c) => match op {
                Op::ProtectRtp => c.protect_rtp(&mut b, pkt.len()),
                Op::UnprotectRtp => c.unprotect_rtp(&mut b, pkt.len()),
                Op::ProtectRtcp => c.protect_rtcp(&mut b, pkt.len()),
                Op::UnprotectRtcp => c.unprotect_rtcp(&mut b, pkt.len()),
            },
        };
        want.push(r);
        want_bufs.push(b);
    }
    let mut bufs: Vec<Vec<u8>> = jobs
        .iter()
        .map(|(_, _, p)| {
            let mut b = p.clone();
            b.resize(p.len() + 32, 0);
            b
        })
        .collect();
    let mut got = Vec::new();
    let mut rest: &mut [Vec<u8>] = &mut bufs;
    let mut specs = jobs;
    while !rest.is_empty() {
        let n = burst().clamp(1, rest.len());
        let (now, later) = rest.split_at_mut(n);
        let (spec_now, spec_later) = specs.split_at(n);
        let mut js: Vec<Job<'_>> = now
            .iter_mut()
            .zip(spec_now)
            .map(|(b, (ctx, op, p))| Job::new(*ctx, *op, b, p.len()))
            .collect();
        process_batch(batch, &mut js);
        got.extend(js.iter().map(|j| j.result));
        rest = later;
        specs = spec_later;
    }
    assert_eq!(got, want);
    assert_eq!(bufs, want_bufs);
    want.iter()
        .zip(want_bufs)
        .map(|(r, b)| r.map(|n| b[..n].to_vec()))
        .collect()
}

/// Bursts mixing many flows (contexts of every profile, each with its own keys), in any order,
/// with several packets of one flow in a burst across a sequence wrap, duplicates, damage,
/// SRTCP and missing contexts: the batch gives what the single-packet calls give in job order.
#[test]
fn batch_of_many_flows_equals_single() {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..60 {
        let flows = 1 + (next() % 40) as usize;
        let kms: Vec<KeyMaterial> = (0..flows)
            .map(|f| {
                let p = Profile::ALL[(next() % Profile::ALL.len() as u64) as usize];
                km(p, (round * 64 + f) as u8)
            })
            .collect();
        let make = |kms: &[KeyMaterial]| -> Vec<Context> {
            kms.iter()
                .map(|k| Context::new(k, Config::default()).unwrap())
                .collect()
        };
        // Per flow: next sequence number per SSRC, starting near the wrap.
        let mut seqs: Vec<[u16; 2]> = (0..flows)
            .map(|_| [0xFFFF - (next() % 40) as u16, (next() % 0x10000) as u16])
            .collect();
        let mut jobs = Vec::new();
        for _ in 0..(next() % 300) as usize {
            let r = next();
            let f = (r % (flows as u64 + 1)) as usize; // `flows` itself: a missing context
            let rtcp = r >> 8 & 15 == 0;
            let s = (r >> 12 & 1) as usize;
            let pkt = if rtcp {
                rtcp_sr(0x100 + s as u32)
            } else {
                let seq = seqs.get_mut(f).map_or(0, |q| {
                    let v = q[s];
                    q[s] = v.wrapping_add(1 + (r >> 16 & 1) as u16);
                    v
                });
                let payload =
                    [160usize, 160, 160, 0, 1, 20, 51, 52, 100, 300][(r >> 20) as usize % 10];
                rtp(seq, 0x100 + s as u32, payload)
            };
            let op = if rtcp {
                Op::ProtectRtcp
            } else {
                Op::ProtectRtp
            };
            jobs.push((f, op, pkt));
        }
        let mut batch_tx = make(&kms);
        let mut single_tx = make(&kms);
        let mut burst = || 1 + (next() % 48) as usize;
        let out = bursts_equal_single(&mut batch_tx, &mut single_tx, &jobs, &mut burst);

        // The wire: what was protected, damaged, duplicated and swapped now and then.
        let mut wire: Vec<(usize, Op, Vec<u8>)> = Vec::new();
        for ((f, op, _), r) in jobs.iter().zip(out) {
            let Ok(mut p) = r else { continue };
            let v = next();
            if v & 15 == 0 {
                let at = (v >> 8) as usize % p.len();
                p[at] ^= 1 << (v >> 16 & 7);
            }
            let op = if *op == Op::ProtectRtcp {
                Op::UnprotectRtcp
            } else {
                Op::UnprotectRtp
            };
            wire.push((*f, op, p.clone()));
            if v >> 24 & 7 == 0 {
                wire.push((*f, op, p));
            }
            if v >> 28 & 7 == 0 && wire.len() >= 2 {
                let l = wire.len();
                wire.swap(l - 1, l - 2);
            }
        }
        if next() & 1 == 0 {
            wire.push((flows + 3, Op::UnprotectRtp, rtp(1, 1, 160)));
        }
        let mut batch_rx = make(&kms);
        let mut single_rx = make(&kms);
        let mut burst = || 1 + (next() % 48) as usize;
        bursts_equal_single(&mut batch_rx, &mut single_rx, &wire, &mut burst);
    }
}
