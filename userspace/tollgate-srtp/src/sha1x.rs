//! Multi-lane SHA-1 compression for the batch API: the compressions of several independent
//! messages interleaved instruction by instruction.
//!
//! One SHA-1 compression is a chain of 20 dependent `sha1rnds4` steps; on current cores that
//! instruction's latency is several times its issue interval, so a single message leaves the
//! SHA unit idle most of the time. Interleaving `N` messages (the packets of a batch, whose
//! HMACs are independent) fills those slots: N chains in flight for roughly the time of one.
//! Without SHA-NI the lanes are compressed one after the other by the `sha1` crate.

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
    fn lanes_match_the_scalar_compression() {
        lanes::<1>(1);
        lanes::<2>(2);
        lanes::<3>(3);
        lanes::<4>(4);
    }
}
