//! Multi-lane SHA-1 compression for the batch API: the compressions of several independent
//! messages interleaved instruction by instruction.
//!
//! One SHA-1 compression is a chain of 20 dependent `sha1rnds4` steps; on current cores that
//! instruction's latency is several times its issue interval, so a single message leaves the
//! SHA unit idle most of the time. Interleaving `N` messages (the packets of a batch, whose
//! HMACs are independent) fills those slots: N chains in flight for roughly the time of one.
//! Without SHA-NI the lanes are compressed one after the other by the `sha1` crate.
//!
//! Where SHA-NI is throughput-bound rather than latency-bound (measured on Sapphire Rapids: about
//! 40 ns per block per lane whether 1 or 4 lanes run), interleaving gains little; there the
//! wide engine ([`compress_wide`], AVX-512F) does better for many messages: SHA-1 computed in
//! plain 32-bit vector arithmetic, one message per 32-bit element of a 512-bit register, 16
//! messages at once (the "multi-buffer" technique), several times SHA-NI's throughput per
//! message. States and message words are kept transposed (`[word][lane]`).

/// Messages per run of the wide engine.
pub(crate) const WIDE: usize = 16;

/// Whether [`compress_wide`] and [`compress_wide_blocks`] run vectorised (AVX-512F and BW);
/// without them, they compress the lanes one by one.
#[inline]
pub(crate) fn wide_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// For every lane `l` whose bit is set in `active`: compresses the block whose big-endian
/// words are `w[0][l]..w[15][l]` into the state `st[0][l]..st[4][l]`, exactly as
/// `sha1::compress` would. Other lanes are left as they are.
#[inline]
pub(crate) fn compress_wide(st: &mut [[u32; WIDE]; 5], w: &[[u32; WIDE]; 16], active: u16) {
    #[cfg(target_arch = "x86_64")]
    {
        if wide_available() {
            // SAFETY: the CPU supports AVX-512F/BW, the features `compress16` is compiled for.
            unsafe { avx512::compress16(st, w, active) };
            return;
        }
    }
    for l in 0..WIDE {
        if active & (1 << l) == 0 {
            continue;
        }
        let mut block = [0u8; 64];
        for (d, row) in block.chunks_exact_mut(4).zip(w) {
            d.copy_from_slice(&row[l].to_be_bytes());
        }
        let mut s = [st[0][l], st[1][l], st[2][l], st[3][l], st[4][l]];
        compress_lanes(std::array::from_mut(&mut s), [&block]);
        for (row, v) in st.iter_mut().zip(s) {
            row[l] = v;
        }
    }
}

/// For every lane `l` whose bit is set in `active`: compresses the 64-byte block `blocks[l]`
/// into the state `st[0][l]..st[4][l]`, exactly as `sha1::compress` would (the blocks are
/// byte-swapped and transposed in registers). Other lanes are left as they are.
#[inline]
pub(crate) fn compress_wide_blocks(
    st: &mut [[u32; WIDE]; 5],
    blocks: [&[u8; 64]; WIDE],
    active: u16,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if wide_available() {
            // SAFETY: the CPU supports AVX-512F/BW, the features `compress16_blocks` is
            // compiled for.
            unsafe { avx512::compress16_blocks(st, blocks, active) };
            return;
        }
    }
    for (l, block) in blocks.iter().enumerate() {
        if active & (1 << l) == 0 {
            continue;
        }
        let mut s = [st[0][l], st[1][l], st[2][l], st[3][l], st[4][l]];
        compress_lanes(std::array::from_mut(&mut s), [block]);
        for (row, v) in st.iter_mut().zip(s) {
            row[l] = v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::WIDE;
    use std::arch::x86_64::*;

    /// Twenty rounds with round function `F` (a `vpternlogd` truth table over b, c, d) and
    /// constant `k`, from round `t0`; the message schedule is computed in place in `w`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn rounds<const F: i32>(t0: usize, k: u32, s: &mut [__m512i; 5], w: &mut [__m512i; 16]) {
        let [mut a, mut b, mut c, mut d, mut e] = *s;
        let k = _mm512_set1_epi32(k as i32);
        for t in t0..t0 + 20 {
            let wt = if t < 16 {
                w[t]
            } else {
                // W[t] = rol1(W[t-3] ^ W[t-8] ^ W[t-14] ^ W[t-16]); W[t-16] sits in slot t % 16.
                let x = _mm512_ternarylogic_epi32::<0x96>(
                    w[(t - 3) % 16],
                    w[(t - 8) % 16],
                    w[(t - 14) % 16],
                );
                let x = _mm512_rol_epi32::<1>(_mm512_xor_si512(x, w[t % 16]));
                w[t % 16] = x;
                x
            };
            let f = _mm512_ternarylogic_epi32::<F>(b, c, d);
            let sum = _mm512_add_epi32(
                _mm512_add_epi32(_mm512_rol_epi32::<5>(a), f),
                _mm512_add_epi32(_mm512_add_epi32(e, k), wt),
            );
            e = d;
            d = c;
            c = _mm512_rol_epi32::<30>(b);
            b = a;
            a = sum;
        }
        *s = [a, b, c, d, e];
    }

    /// The AVX-512F compression of 16 lanes (see [`super::compress_wide`]).
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn compress16(st: &mut [[u32; WIDE]; 5], w: &[[u32; WIDE]; 16], active: u16) {
        let zero = _mm512_setzero_si512();
        let mut regs = [zero; 16];
        for (r, row) in regs.iter_mut().zip(w) {
            // SAFETY: a row is 16 u32 = 64 bytes, one unaligned 512-bit load.
            *r = unsafe { _mm512_loadu_si512(row.as_ptr().cast()) };
        }
        compress_regs(st, regs, active);
    }

    /// The AVX-512F/BW compression of 16 lanes from their blocks (see
    /// [`super::compress_wide_blocks`]).
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn compress16_blocks(
        st: &mut [[u32; WIDE]; 5],
        blocks: [&[u8; 64]; WIDE],
        active: u16,
    ) {
        // Big-endian words: reverse the bytes of every 32-bit element.
        let swap = _mm512_broadcast_i32x4(_mm_set_epi8(
            12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3,
        ));
        let zero = _mm512_setzero_si512();
        let mut r = [zero; 16];
        for (r, b) in r.iter_mut().zip(blocks) {
            // SAFETY: a block is 64 bytes, one unaligned 512-bit load.
            *r = _mm512_shuffle_epi8(unsafe { _mm512_loadu_si512(b.as_ptr().cast()) }, swap);
        }
        compress_regs(st, transpose(r), active);
    }

    /// Transposes a 16x16 matrix of 32-bit words (row `i` = register `i`): in the result,
    /// register `t` holds word `t` of every row.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose(r: [__m512i; 16]) -> [__m512i; 16] {
        // Within each 128-bit lane k, u[4g + c] gets word 4k + c of rows 4g..4g+3.
        let zero = _mm512_setzero_si512();
        let mut u = [zero; 16];
        for g in 0..4 {
            let (r0, r1, r2, r3) = (r[4 * g], r[4 * g + 1], r[4 * g + 2], r[4 * g + 3]);
            let t0 = _mm512_unpacklo_epi32(r0, r1);
            let t1 = _mm512_unpackhi_epi32(r0, r1);
            let t2 = _mm512_unpacklo_epi32(r2, r3);
            let t3 = _mm512_unpackhi_epi32(r2, r3);
            u[4 * g] = _mm512_unpacklo_epi64(t0, t2);
            u[4 * g + 1] = _mm512_unpackhi_epi64(t0, t2);
            u[4 * g + 2] = _mm512_unpacklo_epi64(t1, t3);
            u[4 * g + 3] = _mm512_unpackhi_epi64(t1, t3);
        }
        // Then gather lane k of u[c], u[4 + c], u[8 + c], u[12 + c] into word 4k + c.
        let mut w = [zero; 16];
        for c in 0..4 {
            let x = _mm512_shuffle_i32x4::<0x88>(u[c], u[4 + c]);
            let y = _mm512_shuffle_i32x4::<0xDD>(u[c], u[4 + c]);
            let x2 = _mm512_shuffle_i32x4::<0x88>(u[8 + c], u[12 + c]);
            let y2 = _mm512_shuffle_i32x4::<0xDD>(u[8 + c], u[12 + c]);
            w[c] = _mm512_shuffle_i32x4::<0x88>(x, x2);
            w[8 + c] = _mm512_shuffle_i32x4::<0xDD>(x, x2);
            w[4 + c] = _mm512_shuffle_i32x4::<0x88>(y, y2);
            w[12 + c] = _mm512_shuffle_i32x4::<0xDD>(y, y2);
        }
        w
    }

    /// 80 rounds on the message words `w` (register `t` = word `t` of every lane), added into
    /// the states of the `active` lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn compress_regs(st: &mut [[u32; WIDE]; 5], mut w: [__m512i; 16], active: u16) {
        let zero = _mm512_setzero_si512();
        let mut init = [zero; 5];
        for (r, row) in init.iter_mut().zip(st.iter()) {
            // SAFETY: a row is 16 u32 = 64 bytes, one unaligned 512-bit load.
            *r = unsafe { _mm512_loadu_si512(row.as_ptr().cast()) };
        }
        let mut s = init;
        // Round functions over (b, c, d): Ch = 0xCA, Parity = 0x96, Maj = 0xE8.
        rounds::<0xCA>(0, 0x5A82_7999, &mut s, &mut w);
        rounds::<0x96>(20, 0x6ED9_EBA1, &mut s, &mut w);
        rounds::<0xE8>(40, 0x8F1B_BCDC, &mut s, &mut w);
        rounds::<0x96>(60, 0xCA62_C1D6, &mut s, &mut w);
        for (row, (x, y)) in st.iter_mut().zip(init.iter().zip(s)) {
            let v = _mm512_mask_add_epi32(*x, active, *x, y);
            // SAFETY: as the loads above.
            unsafe { _mm512_storeu_si512(row.as_mut_ptr().cast(), v) };
        }
    }
}

/// Compresses `blocks[l]` into `states[l]` for every lane `l`, exactly as `N` calls of
/// `sha1::compress` would.
#[inline]
pub(crate) fn compress_lanes<const N: usize>(states: &mut [[u32; 5]; N], blocks: [&[u8; 64]; N]) {
    #[cfg(target_arch = "x86_64")]
    {
        if shani::available() {
            // SAFETY: the CPU supports the features `compress` is compiled for.
            unsafe { shani::compress(states, blocks) };
            return;
        }
    }
    for (s, b) in states.iter_mut().zip(blocks) {
        sha1::compress(
            s,
            std::slice::from_ref(sha1::digest::generic_array::GenericArray::from_slice(b)),
        );
    }
}

#[cfg(target_arch = "x86_64")]
mod shani {
    use std::arch::x86_64::*;

    /// Whether the CPU has SHA-NI and the SSE levels the lanes use (std caches the answer).
    #[inline]
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse4.1")
            && std::arch::is_x86_feature_detected!("ssse3")
    }

    /// Four rounds of every lane: message schedule word group `i` (computed in place in the
    /// ring `w` from `i >= 4`), `E` from the state before the previous group, then `sha1rnds4`
    /// with round function `F`.
    #[inline(always)]
    unsafe fn group<const F: i32, const N: usize>(
        i: usize,
        abcd: &mut [__m128i; N],
        prev: &mut [__m128i; N],
        w: &mut [[__m128i; 4]; N],
    ) {
        for l in 0..N {
            // SAFETY (all intrinsics): the caller is compiled with sha/sse4.1/ssse3 enabled.
            unsafe {
                let wi = if i < 4 {
                    w[l][i]
                } else {
                    // W[i] = msg2(msg1(W[i-4], W[i-3]) ^ W[i-2], W[i-1]); W[i-4] sits in slot i % 4.
                    let x = _mm_sha1msg2_epu32(
                        _mm_xor_si128(
                            _mm_sha1msg1_epu32(w[l][i % 4], w[l][(i + 1) % 4]),
                            w[l][(i + 2) % 4],
                        ),
                        w[l][(i + 3) % 4],
                    );
                    w[l][i % 4] = x;
                    x
                };
                let e = _mm_sha1nexte_epu32(prev[l], wi);
                prev[l] = abcd[l];
                abcd[l] = _mm_sha1rnds4_epu32::<F>(abcd[l], e);
            }
        }
    }

    /// The SHA-NI compression of `N` lanes, interleaved.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(super) unsafe fn compress<const N: usize>(
        states: &mut [[u32; 5]; N],
        blocks: [&[u8; 64]; N],
    ) {
        let mask = _mm_set_epi64x(0x0001_0203_0405_0607, 0x0809_0a0b_0c0d_0e0f);
        let zero = _mm_setzero_si128();
        let mut abcd = [zero; N];
        let mut e_save = [zero; N];
        let mut w = [[zero; 4]; N];
        for l in 0..N {
            // SAFETY: `states[l]` has 5 words (4 read here), `blocks[l]` 64 bytes.
            unsafe {
                abcd[l] = _mm_shuffle_epi32::<0x1B>(_mm_loadu_si128(states[l].as_ptr().cast()));
                e_save[l] = _mm_set_epi32(states[l][4] as i32, 0, 0, 0);
                for (k, wk) in w[l].iter_mut().enumerate() {
                    *wk = _mm_shuffle_epi8(
                        _mm_loadu_si128(blocks[l].as_ptr().add(16 * k).cast()),
                        mask,
                    );
                }
            }
        }
        let abcd_save = abcd;
        let mut prev = abcd;
        // Group 0: E is the saved e plus W[0], not a nexte of a previous state.
        for l in 0..N {
            let e = _mm_add_epi32(e_save[l], w[l][0]);
            abcd[l] = _mm_sha1rnds4_epu32::<0>(abcd[l], e);
        }
        // SAFETY: same target features as this function.
        unsafe {
            group::<0, N>(1, &mut abcd, &mut prev, &mut w);
            group::<0, N>(2, &mut abcd, &mut prev, &mut w);
            group::<0, N>(3, &mut abcd, &mut prev, &mut w);
            group::<0, N>(4, &mut abcd, &mut prev, &mut w);
            group::<1, N>(5, &mut abcd, &mut prev, &mut w);
            group::<1, N>(6, &mut abcd, &mut prev, &mut w);
            group::<1, N>(7, &mut abcd, &mut prev, &mut w);
            group::<1, N>(8, &mut abcd, &mut prev, &mut w);
            group::<1, N>(9, &mut abcd, &mut prev, &mut w);
            group::<2, N>(10, &mut abcd, &mut prev, &mut w);
            group::<2, N>(11, &mut abcd, &mut prev, &mut w);
            group::<2, N>(12, &mut abcd, &mut prev, &mut w);
            group::<2, N>(13, &mut abcd, &mut prev, &mut w);
            group::<2, N>(14, &mut abcd, &mut prev, &mut w);
            group::<3, N>(15, &mut abcd, &mut prev, &mut w);
            group::<3, N>(16, &mut abcd, &mut prev, &mut w);
            group::<3, N>(17, &mut abcd, &mut prev, &mut w);
            group::<3, N>(18, &mut abcd, &mut prev, &mut w);
            group::<3, N>(19, &mut abcd, &mut prev, &mut w);
        }
        for l in 0..N {
            let e = _mm_sha1nexte_epu32(prev[l], e_save[l]);
            let s = _mm_shuffle_epi32::<0x1B>(_mm_add_epi32(abcd[l], abcd_save[l]));
            // SAFETY: `states[l]` has room for 4 words at its start.
            unsafe { _mm_storeu_si128(states[l].as_mut_ptr().cast(), s) };
            states[l][4] = _mm_extract_epi32::<3>(e) as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(state: &mut [u32; 5], block: &[u8; 64]) {
        sha1::compress(
            state,
            std::slice::from_ref(sha1::digest::generic_array::GenericArray::from_slice(block)),
        );
    }

    fn lanes<const N: usize>(seed: u64) {
        let mut x = seed;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200 {
            let mut blocks = [[0u8; 64]; N];
            let mut states = [[0u32; 5]; N];
            for l in 0..N {
                for b in blocks[l].iter_mut() {
                    *b = next() as u8;
                }
                for s in states[l].iter_mut() {
                    *s = next() as u32;
                }
            }
            let mut want = states;
            for l in 0..N {
                scalar(&mut want[l], &blocks[l]);
            }
            let refs: [&[u8; 64]; N] = std::array::from_fn(|l| &blocks[l]);
            compress_lanes(&mut states, refs);
            assert_eq!(states, want);
        }
    }

    #[test]
    fn wide_matches_the_scalar_compression() {
        let mut x = 99u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..100 {
            let mut w = [[0u32; WIDE]; 16];
            let mut st = [[0u32; WIDE]; 5];
            for row in w.iter_mut().chain(st.iter_mut()) {
                for v in row.iter_mut() {
                    *v = next() as u32;
                }
            }
            let active: u16 = if round % 3 == 0 {
                0xFFFF
            } else {
                next() as u16
            };
            let mut want = st;
            for l in 0..WIDE {
                if active & (1 << l) == 0 {
                    continue;
                }
                let mut block = [0u8; 64];
                for (d, row) in block.chunks_exact_mut(4).zip(&w) {
                    d.copy_from_slice(&row[l].to_be_bytes());
                }
                let mut s = [st[0][l], st[1][l], st[2][l], st[3][l], st[4][l]];
                scalar(&mut s, &block);
                for (row, v) in want.iter_mut().zip(s) {
                    row[l] = v;
                }
            }
            let mut st2 = st;
            compress_wide(&mut st, &w, active);
            assert_eq!(st, want, "round {round}");
            let blocks: [[u8; 64]; WIDE] = std::array::from_fn(|l| {
                let mut b = [0u8; 64];
                for (d, row) in b.chunks_exact_mut(4).zip(&w) {
                    d.copy_from_slice(&row[l].to_be_bytes());
                }
                b
            });
            compress_wide_blocks(&mut st2, std::array::from_fn(|l| &blocks[l]), active);
            assert_eq!(st2, want, "blocks, round {round}");
        }
    }

    #[test]
    fn lanes_match_the_scalar_compression() {
        lanes::<1>(1);
        lanes::<2>(2);
        lanes::<3>(3);
        lanes::<4>(4);
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    fn run<const N: usize>(rounds: u32) -> f64 {
        let blocks = [[5u8; 64]; N];
        let mut st = [[1u32; 5]; N];
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            compress_lanes(&mut st, std::array::from_fn(|l| &blocks[l]));
        }
        let ns = t.elapsed().as_nanos() as f64 / f64::from(rounds) / N as f64;
        std::hint::black_box(st);
        ns
    }

    /// ns per block per message of each engine: `cargo test --release -p tollgate-srtp --lib
    /// sha1x_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn sha1x_speed() {
        for _ in 0..3 {
            let w = [[5u32; WIDE]; 16];
            let mut st = [[1u32; WIDE]; 5];
            let t = std::time::Instant::now();
            for _ in 0..50_000 {
                compress_wide(&mut st, std::hint::black_box(&w), 0xFFFF);
            }
            let wide = t.elapsed().as_nanos() as f64 / 50_000.0 / WIDE as f64;
            std::hint::black_box(st);
            println!(
                "ns/block/message: SHA-NI lanes 1 {:.1}, 2 {:.1}, 4 {:.1}; AVX-512 x16 {wide:.1}",
                run::<1>(400_000),
                run::<2>(200_000),
                run::<4>(100_000)
            );
        }
    }
}
