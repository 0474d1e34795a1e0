//! Differential tests against libsrtp (Debian's `libsrtp2.so.1`, loaded at run time).
//!
//! For every profile: more than 100,000 SRTP packets over three SSRCs (two of them crossing the
//! 65535 -> 0 wrap, so the ROC increments), with mixed headers (CSRCs, header extensions,
//! padding, payloads 0..=300 bytes), plus SRTCP compound-ish packets, must be byte-identical
//! when protected by Tollgate and by libsrtp, and each side must unprotect the other's output
//! back to the original. Then a damaged stream (reordered, duplicated, dropped, bit-flipped,
//! very late, far-ahead packets) must get the same accept/reject decision, refusal class and
//! plaintext from both.

use tollgate_libsrtp::{Direction, Lib, Options, Session, status};
use tollgate_srtp::{Config, Context, ErrorKind, KeyMaterial, Profile};

/// Deterministic xorshift64* generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn fill(&mut self, b: &mut [u8]) {
        for x in b {
            *x = self.next() as u8;
        }
    }
}

const RTP_PACKETS: usize = 102_000;
const RTCP_EVERY: usize = 10;
const SSRCS: [(u32, u16); 3] = [
    (0x1111_1111, 65_000),
    (0x2222_2222, 31_000),
    (0x3333_3333, 7),
];

/// A plain RTP packet with random header shape.
fn rtp_packet(rng: &mut Rng, ssrc: u32, seq: u16) -> Vec<u8> {
    let cc = if rng.below(4) == 0 {
        rng.below(4) as u8
    } else {
        0
    };
    let ext = rng.below(5) == 0;
    let pad = rng.below(8) == 0;
    let mut p = vec![0x80 | cc | if ext { 0x10 } else { 0 } | if pad { 0x20 } else { 0 }];
    p.push(if rng.below(50) == 0 { 0x80 | 8 } else { 8 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(rng.next() as u32).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    for _ in 0..cc {
        p.extend_from_slice(&(rng.next() as u32).to_be_bytes());
    }
    if ext {
        let words = rng.below(4) as u16;
        p.extend_from_slice(&[0xbe, 0xde]);
        p.extend_from_slice(&words.to_be_bytes());
        let mut e = vec![0u8; 4 * words as usize];
        rng.fill(&mut e);
        p.extend_from_slice(&e);
    }
    let payload = match rng.below(4) {
        0 => 160,
        1 => rng.below(301) as usize,
        2 => 20,
        _ => rng.below(40) as usize,
    };
    let mut body = vec![0u8; payload];
    rng.fill(&mut body);
    p.extend_from_slice(&body);
    if pad {
        let n = 1 + rng.below(8) as u8;
        p.extend(std::iter::repeat_n(0u8, n as usize - 1));
        p.push(n);
    }
    p
}

/// A plain RTCP packet (SR or RR header, random report body).
fn rtcp_packet(rng: &mut Rng, ssrc: u32) -> Vec<u8> {
    let words = 1 + rng.below(20) as u16;
    let pt = 200 + rng.below(5) as u8;
    let mut p = vec![0x80 | rng.below(4) as u8, pt];
    p.extend_from_slice(&words.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    let mut body = vec![0u8; 4 * words as usize - 4];
    rng.fill(&mut body);
    p.extend_from_slice(&body);
    p
}

#[derive(Debug, Clone)]
struct Pkt {
    rtcp: bool,
    bytes: Vec<u8>,
}

fn generate(seed: u64) -> Vec<Pkt> {
    let mut rng = Rng(seed);
    let mut seqs: Vec<u16> = SSRCS.iter().map(|s| s.1).collect();
    let mut out = Vec::with_capacity(RTP_PACKETS + RTP_PACKETS / RTCP_EVERY);
    for i in 0..RTP_PACKETS {
        let s = i % SSRCS.len();
        let ssrc = SSRCS[s].0;
        out.push(Pkt {
            rtcp: false,
            bytes: rtp_packet(&mut rng, ssrc, seqs[s]),
        });
        seqs[s] = seqs[s].wrapping_add(1);
        if i % RTCP_EVERY == 0 {
            out.push(Pkt {
                rtcp: true,
                bytes: rtcp_packet(&mut rng, ssrc),
            });
        }
    }
    out
}

fn key_material(p: Profile, seed: u64) -> KeyMaterial {
    let mut rng = Rng(seed);
    KeyMaterial::generate(p, |b| rng.fill(b))
}

fn key_salt(km: &KeyMaterial) -> Vec<u8> {
    [km.key(), km.salt()].concat()
}

fn lib() -> std::sync::Arc<Lib> {
    Lib::debian().expect("Debian libsrtp2 (libsrtp2-1) must be installed: cargo xtask setup")
}

fn ours(_p: Profile, km: &KeyMaterial, window: usize) -> Context {
    Context::new(
        km,
        Config {
            replay_window: window,
            ..Config::default()
        },
    )
    .expect("context")
}

fn theirs(p: Profile, km: &KeyMaterial, dir: Direction, window: u64) -> Session {
    Session::new(
        &lib(),
        p.sdes_name(),
        &key_salt(km),
        dir,
        Options {
            window,
            ..Options::default()
        },
    )
    .expect("libsrtp session")
}

const ROOM: usize = 64;

/// Protect with both, compare; unprotect each with the other, compare to the original.
fn identical_both_ways(p: Profile) -> (usize, usize, usize) {
    let km = key_material(p, 0x5eed ^ p as u64);
    let pkts = generate(0xabcdef ^ p as u64);
    let mut tx = ours(p, &km, 128);
    let mut rx = ours(p, &km, 128);
    let mut ltx = theirs(p, &km, Direction::Outbound, 128);
    let mut lrx = theirs(p, &km, Direction::Inbound, 128);
    let (mut nrtp, mut nrtcp, mut nboth) = (0, 0, 0);
    let mut a = vec![0u8; 512];
    let mut b = vec![0u8; 512];
    for (i, pk) in pkts.iter().enumerate() {
        let n = pk.bytes.len();
        a[..n].copy_from_slice(&pk.bytes);
        b[..n].copy_from_slice(&pk.bytes);
        let (la, lb) = if pk.rtcp {
            (tx.protect_rtcp(&mut a, n), ltx.protect_rtcp(&mut b, n))
        } else {
            (tx.protect_rtp(&mut a, n), ltx.protect(&mut b, n))
        };
        let la = la.unwrap_or_else(|e| panic!("{p} packet {i}: ours refused protect: {e}"));
        let lb = lb.unwrap_or_else(|e| panic!("{p} packet {i}: libsrtp refused protect: {e}"));
        assert_eq!(
            &a[..la],
            &b[..lb],
            "{p} packet {i} (rtcp {}): protected bytes differ",
            pk.rtcp
        );
        // Ours unprotects every packet libsrtp protected.
        let ua = if pk.rtcp {
            rx.unprotect_rtcp(&mut b, lb)
        } else {
            rx.unprotect_rtp(&mut b, lb)
        };
        let ua = ua.unwrap_or_else(|e| panic!("{p} packet {i}: ours refused libsrtp's: {e}"));
        assert_eq!(&b[..ua], &pk.bytes[..], "{p} packet {i}: our plaintext");
        // libsrtp unprotects ours. The bytes are identical to its own output (checked above),
        // so this only re-proves libsrtp against itself; do it for every 4th packet (and
        // every packet around the wraps) to keep the test within seconds (libsrtp on NSS costs
        // several microseconds per call). Skipped packets are losses to its receiver.
        if i % 4 == 0 || pk.bytes.get(2) == Some(&0xff) || pk.bytes.get(2) == Some(&0) {
            let ub = if pk.rtcp {
                lrx.unprotect_rtcp(&mut a, la)
            } else {
                lrx.unprotect(&mut a, la)
            };
            let ub = ub.unwrap_or_else(|e| panic!("{p} packet {i}: libsrtp refused ours: {e}"));
            assert_eq!(&a[..ub], &pk.bytes[..], "{p} packet {i}: libsrtp plaintext");
            nboth += 1;
        }
        if pk.rtcp {
            nrtcp += 1;
        } else {
            nrtp += 1;
        }
    }
    // Every SSRC that started above 65535 - RTP_PACKETS/3 crossed the wrap: ROC 1.
    for (ssrc, start) in SSRCS {
        let (roc, _) = rx.rtp_index(ssrc).expect("stream");
        let expect = u32::from(usize::from(start) + RTP_PACKETS / SSRCS.len() > 65_536);
        assert_eq!(roc, expect, "{p} SSRC {ssrc:#x} ROC");
    }
    (nrtp, nrtcp, nboth)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    Auth,
    Replay,
    Old,
    Other,
}

fn ours_verdict(r: Result<usize, tollgate_srtp::Error>) -> Verdict {
    match r.map_err(|e| e.kind()) {
        Ok(_) => Verdict::Ok,
        Err(ErrorKind::AuthFailed) => Verdict::Auth,
        Err(ErrorKind::Replayed) => Verdict::Replay,
        Err(ErrorKind::TooOld) => Verdict::Old,
        Err(_) => Verdict::Other,
    }
}

fn their_verdict(r: Result<usize, i32>) -> Verdict {
    match r {
        Ok(_) => Verdict::Ok,
        Err(status::AUTH_FAIL) => Verdict::Auth,
        Err(status::REPLAY_FAIL) => Verdict::Replay,
        Err(status::REPLAY_OLD) => Verdict::Old,
        Err(_) => Verdict::Other,
    }
}

/// Protected packets, then damaged: same decisions (and plaintexts) from both receivers.
fn damaged_stream(p: Profile, window: usize, packets: usize) -> [usize; 5] {
    let km = key_material(p, 0xdead ^ p as u64);
    let mut rng = Rng(0xfeed ^ p as u64 ^ window as u64);
    let mut tx = ours(p, &km, 128);
    let mut prot: Vec<Pkt> = Vec::new();
    let mut buf = vec![0u8; 512];
    let mut seqs: Vec<u16> = vec![65_400, 100, 40_000];
    for i in 0..packets {
        let s = i % 3;
        let ssrc = SSRCS[s].0;
        let (bytes, rtcp) = if i % 13 == 0 {
            (rtcp_packet(&mut rng, ssrc), true)
        } else {
            let b = rtp_packet(&mut rng, ssrc, seqs[s]);
            seqs[s] = seqs[s].wrapping_add(1);
            // Occasional gaps (lost at the sender side): the index jumps ahead.
            if rng.below(500) == 0 {
                seqs[s] = seqs[s].wrapping_add(rng.below(3000) as u16);
            }
            (b, false)
        };
        let n = bytes.len();
        buf[..n].copy_from_slice(&bytes);
        let l = if rtcp {
            tx.protect_rtcp(&mut buf, n)
        } else {
            tx.protect_rtp(&mut buf, n)
        }
        .expect("protect");
        prot.push(Pkt {
            rtcp,
            bytes: buf[..l].to_vec(),
        });
    }
    // Damage: a wire order with reorders, duplicates, drops, bit flips and very late packets.
    let mut wire: Vec<Pkt> = Vec::with_capacity(prot.len() * 2);
    let mut i = 0;
    while i < prot.len() {
        match rng.below(100) {
            0..=4 => {} // dropped
            5..=9 if i + 1 < prot.len() => {
                // reordered
                wire.push(prot[i + 1].clone());
                wire.push(prot[i].clone());
                i += 1;
            }
            10..=13 => {
                // duplicated
                wire.push(prot[i].clone());
                wire.push(prot[i].clone());
            }
            14..=19 => {
                // bit flip somewhere, then (sometimes) the genuine packet
                let mut d = prot[i].clone();
                let bit = rng.below(d.bytes.len() as u64 * 8) as usize;
                d.bytes[bit / 8] ^= 1 << (bit % 8);
                wire.push(d);
                if rng.below(2) == 0 {
                    wire.push(prot[i].clone());
                }
            }
            20..=22 if i > 10 => {
                // very late (or replayed) packet from up to 1500 packets back
                let back = 1 + rng.below(1500.min(i as u64)) as usize;
                wire.push(prot[i - back].clone());
                wire.push(prot[i].clone());
            }
            23 => {
                // truncated
                let mut d = prot[i].clone();
                let cut = rng.below(d.bytes.len() as u64) as usize;
                d.bytes.truncate(cut);
                wire.push(d);
            }
            _ => wire.push(prot[i].clone()),
        }
        i += 1;
    }
    let mut rx = ours(p, &km, window);
    let mut lrx = theirs(p, &km, Direction::Inbound, window as u64);
    let mut counts = [0usize; 5];
    let mut a = vec![0u8; 512];
    let mut b = vec![0u8; 512];
    for (k, pk) in wire.iter().enumerate() {
        let n = pk.bytes.len();
        a[..n].copy_from_slice(&pk.bytes);
        b[..n].copy_from_slice(&pk.bytes);
        let (ra, rb) = if pk.rtcp {
            (rx.unprotect_rtcp(&mut a, n), lrx.unprotect_rtcp(&mut b, n))
        } else {
            (rx.unprotect_rtp(&mut a, n), lrx.unprotect(&mut b, n))
        };
        let (va, vb) = (ours_verdict(ra), their_verdict(rb));
        let same = match (va, vb) {
            (Verdict::Other, Verdict::Other) => true,
            // Malformed input: libsrtp may call it bad_param or auth_fail; both refuse.
            (x, y)
                if x != Verdict::Ok
                    && y != Verdict::Ok
                    && (x == Verdict::Other || y == Verdict::Other) =>
            {
                true
            }
            (x, y) => x == y,
        };
        assert!(
            same,
            "{p} window {window} wire packet {k} (rtcp {}): ours {ra:?} / libsrtp {rb:?}",
            pk.rtcp
        );
        if let (Ok(la), Ok(lb)) = (ra, rb) {
            assert_eq!(&a[..la], &b[..lb], "{p} wire packet {k}: plaintexts differ");
        }
        counts[va as usize] += 1;
    }
    counts
}

#[test]
fn byte_identical_with_libsrtp_every_profile() {
    let mut report = Vec::new();
    for p in Profile::ALL {
        let (rtp, rtcp, both) = identical_both_ways(p);
        assert!(rtp >= 100_000);
        report.push(format!(
            "{p}: {rtp} SRTP + {rtcp} SRTCP protected identically and unprotected by us; \
             {both} of ours unprotected by libsrtp"
        ));
    }
    for r in report {
        println!("{r}");
    }
}

#[test]
fn same_decisions_as_libsrtp_on_a_damaged_stream() {
    for p in Profile::ALL {
        let c = damaged_stream(p, 128, 20_000);
        println!(
            "{p}: accepted {} auth-fail {} replay {} too-old {} malformed {}",
            c[0], c[1], c[2], c[3], c[4]
        );
        assert!(
            c[1] > 0 && c[2] > 0 && c[3] > 0,
            "{p}: damage exercised every class"
        );
    }
    // A larger configured window behaves like libsrtp's window_size.
    let c = damaged_stream(Profile::Aes128CmHmacSha1_80, 1024, 20_000);
    println!("window 1024: {c:?}");
}

/// GCM SRTCP with authentication only (E flag clear, RFC 7714 §9.2), produced by libsrtp.
#[test]
fn gcm_unencrypted_srtcp_from_libsrtp() {
    for p in [Profile::AeadAes128Gcm, Profile::AeadAes256Gcm] {
        let km = key_material(p, 77);
        let mut ltx = Session::new(
            &lib(),
            p.sdes_name(),
            &key_salt(&km),
            Direction::Outbound,
            Options {
                rtcp_auth_only: true,
                ..Options::default()
            },
        )
        .unwrap();
        let mut rx = ours(p, &km, 128);
        let mut rng = Rng(5);
        for _ in 0..200 {
            let pkt = rtcp_packet(&mut rng, 0x4242_4242);
            let mut b = vec![0u8; pkt.len() + ROOM];
            b[..pkt.len()].copy_from_slice(&pkt);
            let l = ltx.protect_rtcp(&mut b, pkt.len()).unwrap();
            assert_eq!(b[l - 4] & 0x80, 0, "E flag clear");
            let mut bad = b.clone();
            bad[5] ^= 4;
            assert!(rx.unprotect_rtcp(&mut bad, l).is_err());
            assert_eq!(bad, {
                let mut x = b.clone();
                x[5] ^= 4;
                x
            });
            let n = rx.unprotect_rtcp(&mut b, l).unwrap();
            assert_eq!(&b[..n], &pkt[..]);
        }
    }
}

/// Sequence numbers a sender used before a restart: across the wrap to ROC 1, then on (in
/// steps below 2^15, so both ends keep the ROC) to 40000, past the half of the seq space.
fn before_restart() -> Vec<u16> {
    let mut v: Vec<u16> = (65_530..=65_535).collect();
    v.extend(0..=10);
    v.extend([16_000, 32_000]);
    v.extend(39_990..=40_000);
    v
}

/// Resume (a): libsrtp sent through a wrap to ROC 1 and 40000, its receiver took it all; a
/// fresh Tollgate context resumed at (ROC 1, last SRTCP index) carries on, and the libsrtp
/// receiver accepts its SRTP and SRTCP. Without resume it would refuse both.
#[test]
fn libsrtp_receiver_takes_a_resumed_tollgate_sender() {
    const SSRC: u32 = 0x1234_5678;
    for p in Profile::ALL {
        let km = key_material(p, 0xa11 ^ p as u64);
        let mut rng = Rng(0x5e5 ^ p as u64);
        let mut ltx = theirs(p, &km, Direction::Outbound, 128);
        let mut lrx = theirs(p, &km, Direction::Inbound, 128);
        let mut b = vec![0u8; 512];
        let mut srtcp_sent = 0u32;
        for (i, seq) in before_restart().into_iter().enumerate() {
            let pkt = rtp_packet(&mut rng, SSRC, seq);
            b[..pkt.len()].copy_from_slice(&pkt);
            let l = ltx.protect(&mut b, pkt.len()).unwrap();
            let n = lrx.unprotect(&mut b, l).unwrap();
            assert_eq!(&b[..n], &pkt[..]);
            if i % 5 == 0 {
                let c = rtcp_packet(&mut rng, SSRC);
                b[..c.len()].copy_from_slice(&c);
                let l = ltx.protect_rtcp(&mut b, c.len()).unwrap();
                lrx.unprotect_rtcp(&mut b, l).unwrap();
                srtcp_sent += 1;
            }
        }
        let mut tx = ours(p, &km, 128);
        tx.resume(SSRC, 1, srtcp_sent).unwrap();
        for seq in 40_001..=40_040u16 {
            let pkt = rtp_packet(&mut rng, SSRC, seq);
            b[..pkt.len()].copy_from_slice(&pkt);
            let l = tx.protect_rtp(&mut b, pkt.len()).unwrap();
            let n = lrx
                .unprotect(&mut b, l)
                .unwrap_or_else(|e| panic!("{p} seq {seq}: libsrtp refused ours: {e}"));
            assert_eq!(&b[..n], &pkt[..], "{p} seq {seq}");
            if seq % 10 == 0 {
                let c = rtcp_packet(&mut rng, SSRC);
                b[..c.len()].copy_from_slice(&c);
                let l = tx.protect_rtcp(&mut b, c.len()).unwrap();
                let n = lrx
                    .unprotect_rtcp(&mut b, l)
                    .unwrap_or_else(|e| panic!("{p} seq {seq}: libsrtp refused our SRTCP: {e}"));
                assert_eq!(&b[..n], &c[..]);
            }
        }
        assert_eq!(tx.rtp_index(SSRC), Some((1, 40_040)));
        assert_eq!(tx.srtcp_tx_index(SSRC), Some(srtcp_sent + 4));
        // The same restart without resume: ROC 0 fails authentication, SRTCP index 1 is a
        // replay.
        let mut fresh = ours(p, &km, 128);
        let pkt = rtp_packet(&mut rng, SSRC, 40_041);
        b[..pkt.len()].copy_from_slice(&pkt);
        let l = fresh.protect_rtp(&mut b, pkt.len()).unwrap();
        assert_eq!(lrx.unprotect(&mut b, l), Err(status::AUTH_FAIL), "{p}");
        let c = rtcp_packet(&mut rng, SSRC);
        b[..c.len()].copy_from_slice(&c);
        let l = fresh.protect_rtcp(&mut b, c.len()).unwrap();
        assert!(
            matches!(
                lrx.unprotect_rtcp(&mut b, l),
                Err(status::REPLAY_FAIL | status::REPLAY_OLD)
            ),
            "{p}"
        );
    }
}

/// Resume (b): a fresh Tollgate receiver resumed at ROC 1 takes libsrtp's continuing packets
/// (the first at SEQ >= 2^15), refuses a forged first packet without committing it, then
/// accepts the real one; libsrtp's continuing SRTCP passes too.
#[test]
fn resumed_tollgate_receiver_takes_libsrtp_continuing() {
    const SSRC: u32 = 0x0abc_def0;
    for p in Profile::ALL {
        let km = key_material(p, 0xb22 ^ p as u64);
        let mut rng = Rng(0x6e6 ^ p as u64);
        let mut ltx = theirs(p, &km, Direction::Outbound, 128);
        let mut b = vec![0u8; 512];
        for seq in before_restart() {
            let pkt = rtp_packet(&mut rng, SSRC, seq);
            b[..pkt.len()].copy_from_slice(&pkt);
            ltx.protect(&mut b, pkt.len()).unwrap();
        }
        for _ in 0..7 {
            let c = rtcp_packet(&mut rng, SSRC);
            b[..c.len()].copy_from_slice(&c);
            ltx.protect_rtcp(&mut b, c.len()).unwrap();
        }
        let mut rx = ours(p, &km, 128);
        rx.resume(SSRC, 1, 0).unwrap();
        for seq in 40_001..=40_040u16 {
            let pkt = rtp_packet(&mut rng, SSRC, seq);
            b[..pkt.len()].copy_from_slice(&pkt);
            let l = ltx.protect(&mut b, pkt.len()).unwrap();
            if seq == 40_001 {
                let mut forged = b[..l].to_vec();
                let at = forged.len() / 2;
                forged[at] ^= 0x40;
                let before = forged.clone();
                assert_eq!(
                    rx.unprotect_rtp(&mut forged, l).map_err(|e| e.kind()),
                    Err(ErrorKind::AuthFailed),
                    "{p}: forged first packet"
                );
                assert_eq!(forged, before, "{p}: refused packet modified");
                assert_eq!(rx.rtp_index(SSRC), None, "{p}: forged packet committed");
            }
            let n = rx
                .unprotect_rtp(&mut b, l)
                .unwrap_or_else(|e| panic!("{p} seq {seq}: ours refused libsrtp's: {e}"));
            assert_eq!(&b[..n], &pkt[..], "{p} seq {seq}");
            if seq % 10 == 0 {
                let c = rtcp_packet(&mut rng, SSRC);
                b[..c.len()].copy_from_slice(&c);
                let l = ltx.protect_rtcp(&mut b, c.len()).unwrap();
                let n = rx
                    .unprotect_rtcp(&mut b, l)
                    .unwrap_or_else(|e| panic!("{p} seq {seq}: ours refused SRTCP: {e}"));
                assert_eq!(&b[..n], &c[..]);
            }
        }
        assert_eq!(rx.rtp_index(SSRC), Some((1, 40_040)), "{p}");
    }
}
