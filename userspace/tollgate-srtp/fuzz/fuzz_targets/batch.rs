//! Differential fuzzing of the batch API against the single-packet API, with bursts mixing
//! flows: several contexts (any profile, AES-CM `_80`/`_32` and GCM, each with its own keys),
//! jobs interleaved across them in any order. The same packets, protected then damaged,
//! reordered and duplicated as the input says, must give the same results and the same bytes
//! through `process_batch` (in bursts whose boundaries the input chooses) as through
//! `protect_rtp` / `unprotect_rtp` / `protect_rtcp` / `unprotect_rtcp` one by one on twin
//! contexts, in job order. (The batch computes unprotect tags ahead of its in-order stage,
//! against the state before each group, and tags many flows' packets together, so reordering
//! across a sequence wrap and several packets of one flow in a burst matter.)
//!
//! Input: byte 0 selects the number of flows (1..=8) and the first sequence numbers' high
//! bits; then one byte per flow selects its profile and key; then records of 4 bytes: flow
//! (one value beyond the flows names a missing context), sequence step and SSRC, payload
//! length and SRTCP, damage/duplicate/swap flags and burst boundaries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_srtp::{Config, Context, Error, Job, KeyMaterial, Op, Profile, process_batch};

fn rtp(seq: u16, ssrc: u32, payload: usize) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..payload).map(|i| i as u8));
    p
}

fn rtcp(ssrc: u32) -> Vec<u8> {
    // A sender report header (V=2, PT=200, length 6) and 20 bytes of sender info.
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..20u8).map(|i| i.wrapping_mul(3)));
    p
}

/// One job: context id, operation, packet, and whether a burst ends after it.
struct Spec {
    ctx: usize,
    op: Op,
    pkt: Vec<u8>,
    cut: bool,
}

/// Runs `specs` one by one on `single` and in bursts on `batch`; asserts the same results and
/// bytes and returns the single-packet outputs.
fn same_both_ways(
    single: &mut [Context],
    batch: &mut Vec<Context>,
    specs: &[Spec],
) -> Vec<Result<Vec<u8>, Error>> {
    let pad = |p: &[u8]| {
        let mut b = p.to_vec();
        b.resize(p.len() + 32, 0);
        b
    };
    let mut want = Vec::new();
    let mut want_bufs = Vec::new();
    for s in specs {
        let mut b = pad(&s.pkt);
        let n = s.pkt.len();
        let r = match single.get_mut(s.ctx) {
            None => Err(Error::NoContext(s.ctx)),
            Some(c) => match s.op {
                Op::ProtectRtp => c.protect_rtp(&mut b, n),
                Op::UnprotectRtp => c.unprotect_rtp(&mut b, n),
                Op::ProtectRtcp => c.protect_rtcp(&mut b, n),
                Op::UnprotectRtcp => c.unprotect_rtcp(&mut b, n),
            },
        };
        want.push(r);
        want_bufs.push(b);
    }
    let mut bufs: Vec<Vec<u8>> = specs.iter().map(|s| pad(&s.pkt)).collect();
    let mut got = Vec::new();
    let mut rest: &mut [Vec<u8>] = &mut bufs;
    let mut left = specs;
    while !rest.is_empty() {
        let n = left
            .iter()
            .position(|s| s.cut)
            .map_or(left.len(), |i| i + 1);
        let (now, later) = rest.split_at_mut(n);
        let (specs_now, specs_later) = left.split_at(n);
        let mut jobs: Vec<Job<'_>> = now
            .iter_mut()
            .zip(specs_now)
            .map(|(b, s)| Job::new(s.ctx, s.op, b, s.pkt.len()))
            .collect();
        process_batch(batch, &mut jobs);
        got.extend(jobs.iter().map(|j| j.result));
        rest = later;
        left = specs_later;
    }
    assert_eq!(got, want);
    assert_eq!(bufs, want_bufs);
    want.into_iter()
        .zip(want_bufs)
        .map(|(r, b)| r.map(|n| b[..n].to_vec()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let flows = 1 + usize::from(sel & 7);
    let Some((per_flow, recs)) = rest.split_at_checked(flows) else {
        return;
    };
    let kms: Vec<KeyMaterial> = per_flow
        .iter()
        .map(|&b| {
            let p = Profile::ALL[usize::from(b) % Profile::ALL.len()];
            KeyMaterial::generate(p, |k| {
                for (i, x) in k.iter_mut().enumerate() {
                    *x = (i as u8).wrapping_mul(31) ^ b;
                }
            })
        })
        .collect();
    let contexts = || -> Vec<Context> {
        kms.iter()
            .map(|k| Context::new(k, Config::default()).expect("context"))
            .collect()
    };

    // Plain packets from the records, flows interleaved as the records say.
    let mut seqs: Vec<[u16; 3]> = (0..flows)
        .map(|f| [u16::from(sel) << 8 | 0xF0 ^ (f as u16); 3])
        .collect();
    let mut specs = Vec::new();
    let mut flags = Vec::new();
    for r in recs.chunks_exact(4).take(300) {
        let ctx = usize::from(r[0]) % (flows + 1);
        let ssrc = u32::from(r[1] >> 6).min(2);
        let step = u16::from(r[1] & 7);
        let is_rtcp = r[2] & 0xC0 == 0xC0;
        let pkt = if is_rtcp {
            rtcp(1 + ssrc)
        } else {
            let seq = seqs.get_mut(ctx).map_or(0, |s| {
                let slot = &mut s[ssrc as usize];
                *slot = slot.wrapping_add(step);
                *slot
            });
            rtp(seq, 1 + ssrc, usize::from(r[2] & 0x3F) * 5)
        };
        let op = if is_rtcp {
            Op::ProtectRtcp
        } else {
            Op::ProtectRtp
        };
        specs.push(Spec {
            ctx,
            op,
            pkt,
            cut: r[3] & 0x80 != 0,
        });
        flags.push(r[3]);
    }

    // Protect: single vs batch.
    let out = same_both_ways(&mut contexts(), &mut contexts(), &specs);

    // The wire: damaged, duplicated and swapped (possibly across flows) as the flags say.
    let mut wire: Vec<Spec> = Vec::new();
    for ((s, r), f) in specs.iter().zip(out).zip(&flags) {
        let Ok(mut p) = r else { continue };
        if f & 1 != 0 && !p.is_empty() {
            let at = usize::from(f >> 3 & 15) * 7 % p.len();
            p[at] ^= 1 << (f & 7);
        }
        let op = if s.op == Op::ProtectRtcp {
            Op::UnprotectRtcp
        } else {
            Op::UnprotectRtp
        };
        let cut = f & 0x40 != 0;
        if f & 2 != 0 {
            wire.push(Spec {
                ctx: s.ctx,
                op,
                pkt: p.clone(),
                cut: false,
            });
        }
        wire.push(Spec {
            ctx: s.ctx,
            op,
            pkt: p,
            cut,
        });
        if f & 4 != 0 && wire.len() >= 2 {
            let l = wire.len();
            wire.swap(l - 1, l - 2);
        }
    }

    // Unprotect: single vs batch.
    same_both_ways(&mut contexts(), &mut contexts(), &wire);
});
