//! Differential fuzzing of the batch API against the single-packet API: the same packets,
//! protected then damaged, reordered and duplicated as the input says, must give the same
//! results and the same bytes through `Context::process_batch` as through `protect_rtp` /
//! `unprotect_rtp` one by one (the batch computes unprotect tags ahead of its in-order stage,
//! against the state before each chunk, so reordering across a sequence wrap matters).
//!
//! Input: byte 0 selects the profile (AES-CM ones) and the first sequence number's high byte;
//! then records of 4 bytes: sequence step, SSRC choice, payload length, damage/duplicate flags.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_srtp::{Config, Context, Job, KeyMaterial, Op, Profile};

const CM: [Profile; 4] = [
    Profile::Aes128CmHmacSha1_80,
    Profile::Aes128CmHmacSha1_32,
    Profile::Aes256CmHmacSha1_80,
    Profile::Aes256CmHmacSha1_32,
];

fn rtp(seq: u16, ssrc: u32, payload: usize) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..payload).map(|i| i as u8));
    p
}

/// Runs `bufs` through `op` on one context packet by packet and on a twin context as one batch;
/// asserts both give the same results and bytes, and returns the single-packet bytes and results.
fn same_both_ways(
    km: &KeyMaterial,
    cfg: Config,
    op: Op,
    bufs: Vec<Vec<u8>>,
    lens: &[usize],
) -> (Vec<Vec<u8>>, Vec<Result<usize, tollgate_srtp::Error>>) {
    let mut one = Context::new(km, cfg).expect("context");
    let mut many = Context::new(km, cfg).expect("context");
    let mut single = bufs.clone();
    let mut batch = bufs;
    let want: Vec<_> = single
        .iter_mut()
        .zip(lens)
        .map(|(b, &n)| match op {
            Op::ProtectRtp => one.protect_rtp(b, n),
            Op::UnprotectRtp => one.unprotect_rtp(b, n),
            Op::ProtectRtcp => one.protect_rtcp(b, n),
            Op::UnprotectRtcp => one.unprotect_rtcp(b, n),
        })
        .collect();
    let mut jobs: Vec<Job<'_>> = batch
        .iter_mut()
        .zip(lens)
        .map(|(b, &n)| Job::new(0, op, b, n))
        .collect();
    many.process_batch(&mut jobs);
    let got: Vec<_> = jobs.iter().map(|j| j.result).collect();
    drop(jobs);
    assert_eq!(got, want);
    assert_eq!(batch, single);
    (single, want)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, recs)) = data.split_first() else {
        return;
    };
    let profile = CM[usize::from(sel & 3)];
    let km = KeyMaterial::generate(profile, |b| {
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(31) ^ sel;
        }
    });
    let cfg = Config::default();
    let tail = profile.rtp_tag_len();

    // Plain packets from the records.
    let mut seq = u16::from(sel) << 8 | 0xF0;
    let mut plain: Vec<Vec<u8>> = Vec::new();
    let mut flags = Vec::new();
    for r in recs.chunks_exact(4).take(200) {
        seq = seq.wrapping_add(u16::from(r[0] % 8));
        plain.push(rtp(seq, 1 + u32::from(r[1] % 3), usize::from(r[2] % 200)));
        flags.push(r[3]);
    }

    // Protect: single vs batch.
    let bufs: Vec<Vec<u8>> = plain
        .iter()
        .map(|p| {
            let mut b = p.clone();
            b.resize(p.len() + tail, 0);
            b
        })
        .collect();
    let lens: Vec<usize> = plain.iter().map(Vec::len).collect();
    let (single, want) = same_both_ways(&km, cfg, Op::ProtectRtp, bufs, &lens);

    // The wire: damaged, duplicated and swapped as the flags say.
    let mut wire: Vec<Vec<u8>> = Vec::new();
    for ((b, r), f) in single.iter().zip(&want).zip(&flags) {
        let Ok(n) = *r else { continue };
        let mut p = b[..n].to_vec();
        if f & 1 != 0 {
            let at = usize::from(f >> 3) % n;
            p[at] ^= 1 << (f >> 5);
        }
        wire.push(p.clone());
        if f & 2 != 0 {
            wire.push(p);
        }
        if f & 4 != 0 && wire.len() >= 2 {
            let l = wire.len();
            wire.swap(l - 1, l - 2);
        }
    }

    // Unprotect: single vs batch.
    let lens: Vec<usize> = wire.iter().map(Vec::len).collect();
    same_both_ways(&km, cfg, Op::UnprotectRtp, wire, &lens);
});
