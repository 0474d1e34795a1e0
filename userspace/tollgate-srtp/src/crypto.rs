//! Crypto primitives behind the SRTP transforms: AES counter mode (the SRTP "AES-CM"/ICM
//! keystream), the AES-CM key derivation PRF (RFC 3711 §4.3, KDR 0), HMAC-SHA1 with
//! precomputed inner/outer state, and the AES-GCM AEAD (RFC 7714).
//!
//! All key schedules are computed once, when a [`crate::Context`] is built; the per-packet
//! work is block encryption, hashing and XOR.

use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use aes_gcm::aead::AeadInPlace;

use crate::sha1x::WIDE;

/// One AES block.
pub(crate) type Block = GenericArray<u8, aes::cipher::consts::U16>;

/// Counter blocks encrypted per AES call; a multiple of the AES-NI pipeline width (8), and
/// enough for a 160-byte payload (10 blocks) in one call.
pub(crate) const KS_BLOCKS: usize = 16;

/// An expanded AES key (128 or 256 bits).
// Kept inline: boxing would add a pointer chase per packet; the size is per context.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub(crate) enum Aes {
    A128(aes::Aes128),
    A256(aes::Aes256),
}

impl Aes {
    /// Expands a 16- or 32-byte key.
    pub(crate) fn new(key: &[u8]) -> Option<Aes> {
        match key.len() {
            16 => Some(Aes::A128(aes::Aes128::new(GenericArray::from_slice(key)))),
            32 => Some(Aes::A256(aes::Aes256::new(GenericArray::from_slice(key)))),
            _ => None,
        }
    }

    /// Encrypts blocks in place (AES-NI pipelines several blocks at once).
    #[inline]
    pub(crate) fn encrypt_blocks(&self, blocks: &mut [Block]) {
        match self {
            Aes::A128(c) => c.encrypt_blocks(blocks),
            Aes::A256(c) => c.encrypt_blocks(blocks),
        }
    }

    /// XORs the counter-mode keystream starting at counter block `iv` into `data`.
    /// The counter is a 128-bit big-endian integer; SRTP IVs leave the low 16 bits zero, so
    /// any packet under 1 MiB never carries out of them (as libsrtp's 16-bit counter).
    pub(crate) fn apply_keystream(&self, iv: &[u8; 16], data: &mut [u8]) {
        let mut ctr = u128::from_be_bytes(*iv);
        for chunk in data.chunks_mut(KS_BLOCKS * 16) {
            let n = chunk.len().div_ceil(16);
            // The counter blocks are written once, not zero-filled first.
            let mut blocks: [Block; KS_BLOCKS] =
                std::array::from_fn(|i| ctr.wrapping_add(i as u128).to_be_bytes().into());
            let blocks = blocks.get_mut(..n).unwrap_or_default();
            self.encrypt_blocks(blocks);
            xor_blocks(chunk, blocks);
            ctr = ctr.wrapping_add(n as u128);
        }
    }
}

/// `data ^= keystream`, where `ks` has at least `data.len()` bytes of blocks.
#[inline]
pub(crate) fn xor_blocks(data: &mut [u8], ks: &[Block]) {
    let mut chunks = data.chunks_exact_mut(16);
    let mut ks_it = ks.iter();
    for (d, k) in (&mut chunks).zip(&mut ks_it) {
        let x =
            u128::from_ne_bytes(d.try_into().unwrap_or([0; 16])) ^ u128::from_ne_bytes((*k).into());
        d.copy_from_slice(&x.to_ne_bytes());
    }
    let rem = chunks.into_remainder();
    if let Some(k) = ks_it.next() {
        for (d, k) in rem.iter_mut().zip(k.iter()) {
            *d ^= *k;
        }
    }
}

/// The RFC 3711 §4.3 key derivation function with key derivation rate 0: AES-CM keyed with
/// the master key, IV = (master salt XOR label at octet 7) || 0x0000. A 12-byte (GCM) master
/// salt is zero-padded to 14 bytes, as libsrtp does (RFC 7714 §11).
pub(crate) fn kdf(master: &Aes, master_salt: &[u8], label: u8, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    let n = master_salt.len().min(14);
    iv[..n].copy_from_slice(&master_salt[..n]);
    iv[7] ^= label;
    out.fill(0);
    master.apply_keystream(&iv, out);
}

/// Key derivation labels (RFC 3711 §4.3.1).
pub(crate) mod label {
    pub const RTP_ENC: u8 = 0;
    pub const RTP_AUTH: u8 = 1;
    pub const RTP_SALT: u8 = 2;
    pub const RTCP_ENC: u8 = 3;
    pub const RTCP_AUTH: u8 = 4;
    pub const RTCP_SALT: u8 = 5;
}

/// HMAC-SHA1 keyed once: the inner (ipad) and outer (opad) blocks are compressed at
/// construction; a tag costs only the compressions of the message and of one outer block.
///
/// Hand-rolled on `sha1::compress` (which uses SHA-NI when the CPU has it) rather than the
/// `hmac` crate: profiles of a 172-byte packet showed the crate's per-call state clone and
/// block buffering costing about as much as AES-CM; here the packet's full blocks are hashed
/// in place, with no copy.
#[derive(Clone, Copy)]
pub(crate) struct HmacSha1 {
    inner: [u32; 5],
    outer: [u32; 5],
}

const SHA1_H0: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

#[inline]
fn sha1_block(state: &mut [u32; 5], block: &[u8]) {
    if block.len() == 64 {
        sha1::compress(state, std::slice::from_ref(GenericArray::from_slice(block)));
    }
}

impl HmacSha1 {
    pub(crate) fn new(key: &[u8]) -> HmacSha1 {
        let mut k = [0u8; 64];
        if key.len() > 64 {
            use sha1::Digest;
            k[..20].copy_from_slice(&sha1::Sha1::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for ((i, o), k) in ipad.iter_mut().zip(opad.iter_mut()).zip(k) {
            *i ^= k;
            *o ^= k;
        }
        let mut inner = SHA1_H0;
        let mut outer = SHA1_H0;
        sha1_block(&mut inner, &ipad);
        sha1_block(&mut outer, &opad);
        k.fill(0);
        HmacSha1 { inner, outer }
    }

    /// HMAC over `data || trailer` (the ROC for SRTP; nothing for SRTCP, whose E/index word is
    /// part of `data`). `trailer` is at most 64 bytes.
    #[inline]
    pub(crate) fn tag(&self, data: &[u8], trailer: &[u8]) -> [u8; 20] {
        let mut st = self.inner;
        let mut chunks = data.chunks_exact(64);
        for c in &mut chunks {
            sha1_block(&mut st, c);
        }
        let rem = chunks.remainder();
        let trailer = trailer.get(..trailer.len().min(64)).unwrap_or(&[]);
        let mut last = [0u8; 192];
        let n = rem.len() + trailer.len();
        last[..rem.len()].copy_from_slice(rem);
        last[rem.len()..n].copy_from_slice(trailer);
        last[n] = 0x80;
        let blocks = (n + 9).div_ceil(64);
        let bits = ((64 + data.len() + trailer.len()) as u64) * 8;
        last[blocks * 64 - 8..blocks * 64].copy_from_slice(&bits.to_be_bytes());
        for b in last[..blocks * 64].chunks_exact(64) {
            sha1_block(&mut st, b);
        }
        let mut ob = [0u8; 64];
        for (d, w) in ob.chunks_exact_mut(4).zip(st) {
            d.copy_from_slice(&w.to_be_bytes());
        }
        ob[20] = 0x80;
        ob[56..].copy_from_slice(&((64u64 + 20) * 8).to_be_bytes());
        let mut o = self.outer;
        sha1_block(&mut o, &ob);
        let mut out = [0u8; 20];
        for (d, w) in out.chunks_exact_mut(4).zip(o) {
            d.copy_from_slice(&w.to_be_bytes());
        }
        out
    }
}

impl HmacSha1 {
    /// A placeholder key (zero midstates) for unused lanes of the batch API's fixed arrays;
    /// never used to tag anything.
    pub(crate) const UNUSED: HmacSha1 = HmacSha1 {
        inner: [0; 5],
        outer: [0; 5],
    };

    /// Whether `other` holds the same key (compares every word, no early exit).
    #[inline]
    pub(crate) fn same_key(&self, other: &HmacSha1) -> bool {
        let diff = self
            .inner
            .iter()
            .chain(&self.outer)
            .zip(other.inner.iter().chain(&other.outer))
            .fold(0u32, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }

    /// The SRTP tags of `N` packets, each under its own key: HMAC(`keys[l]`, `data[l]` ||
    /// `roc[l]`), their SHA-1 compressions interleaved lane by lane ([`crate::sha1x`]); equal
    /// to `N` calls of [`HmacSha1::tag`]. The lanes' own inner/outer midstates start each
    /// chain, so packets of different contexts share one interleaved run. Lanes of different
    /// lengths run together for the blocks they all have; the longer ones finish alone.
    #[inline]
    pub(crate) fn tags_lanes<const N: usize>(
        keys: [&HmacSha1; N],
        data: [&[u8]; N],
        roc: [u32; N],
    ) -> [[u8; 20]; N] {
        // Full 64-byte blocks of each message are hashed in place; the tail (rest of the data,
        // the ROC, padding and length: one or two blocks) is built per lane.
        let full: [usize; N] = data.map(|d| d.len() / 64);
        let mut tails = [[0u8; 128]; N];
        let mut tail_blocks = [0usize; N];
        for l in 0..N {
            let (d, t) = (data[l], &mut tails[l]);
            let rem = d.get(full[l] * 64..).unwrap_or(&[]);
            let n = rem.len() + 4;
            let tb = (n + 9).div_ceil(64);
            t[..rem.len()].copy_from_slice(rem);
            t[rem.len()..n].copy_from_slice(&roc[l].to_be_bytes());
            t[n] = 0x80;
            let bits = ((64 + d.len() + 4) as u64) * 8;
            t[tb * 64 - 8..tb * 64].copy_from_slice(&bits.to_be_bytes());
            tail_blocks[l] = tb;
        }
        let count: [usize; N] = std::array::from_fn(|l| full[l] + tail_blocks[l]);
        let common = count.iter().copied().min().unwrap_or(0);
        let mut st: [[u32; 5]; N] = keys.map(|k| k.inner);
        for b in 0..common {
            let blocks = std::array::from_fn(|l| msg_block(data[l], &tails[l], full[l], b));
            crate::sha1x::compress_lanes(&mut st, blocks);
        }
        for (l, s) in st.iter_mut().enumerate() {
            for b in common..count[l] {
                let blk = msg_block(data[l], &tails[l], full[l], b);
                crate::sha1x::compress_lanes(std::array::from_mut(s), [blk]);
            }
        }
        let mut ob = [[0u8; 64]; N];
        for (o, s) in ob.iter_mut().zip(&st) {
            for (d, w) in o.chunks_exact_mut(4).zip(s) {
                d.copy_from_slice(&w.to_be_bytes());
            }
            o[20] = 0x80;
            o[56..].copy_from_slice(&((64u64 + 20) * 8).to_be_bytes());
        }
        let mut os: [[u32; 5]; N] = keys.map(|k| k.outer);
        crate::sha1x::compress_lanes(&mut os, std::array::from_fn(|l| &ob[l]));
        std::array::from_fn(|l| {
            let mut out = [0u8; 20];
            for (d, w) in out.chunks_exact_mut(4).zip(os[l]) {
                d.copy_from_slice(&w.to_be_bytes());
            }
            out
        })
    }
}

/// Below this many messages the wide engine's fixed cost per block outweighs its speed:
/// [`HmacSha1::tags_wide`] is only used from this many, and finishes with SHA-NI once fewer
/// lanes than this still have blocks left.
pub(crate) const WIDE_MIN: usize = 5;

impl HmacSha1 {
    /// As [`HmacSha1::tags_lanes`] for the first `n` lanes (up to [`crate::sha1x::WIDE`]),
    /// on the wide engine ([`crate::sha1x::compress_wide`]); lanes from `n` on are zeros.
    pub(crate) fn tags_wide(
        keys: [&HmacSha1; WIDE],
        data: [&[u8]; WIDE],
        roc: [u32; WIDE],
        n: usize,
    ) -> [[u8; 20]; WIDE] {
        let n = n.min(WIDE);
        // Full 64-byte blocks of each message are read in place; the tail (rest of the data,
        // the ROC, padding and length: one or two blocks) is built per lane.
        let full: [usize; WIDE] = data.map(|d| d.len() / 64);
        let mut count = [0usize; WIDE];
        let mut tails = [[0u8; 128]; WIDE];
        let mut st = [[0u32; WIDE]; 5];
        for l in 0..n {
            let (d, t) = (data[l], &mut tails[l]);
            let rem = d.get(full[l] * 64..).unwrap_or(&[]);
            let m = rem.len() + 4;
            let tb = (m + 9).div_ceil(64);
            t[..rem.len()].copy_from_slice(rem);
            t[rem.len()..m].copy_from_slice(&roc[l].to_be_bytes());
            t[m] = 0x80;
            let bits = ((64 + d.len() + 4) as u64) * 8;
            t[tb * 64 - 8..tb * 64].copy_from_slice(&bits.to_be_bytes());
            count[l] = full[l] + tb;
            for (row, v) in st.iter_mut().zip(keys[l].inner) {
                row[l] = v;
            }
        }
        let mut b = 0;
        loop {
            let mut active = 0u16;
            for (l, c) in count.iter().enumerate().take(n) {
                if b < *c {
                    active |= 1 << l;
                }
            }
            if (active.count_ones() as usize) < WIDE_MIN {
                break;
            }
            let blocks: [&[u8; 64]; WIDE] = std::array::from_fn(|l| {
                if active & (1 << l) != 0 {
                    msg_block(data[l], &tails[l], full[l], b)
                } else {
                    &[0u8; 64]
                }
            });
            crate::sha1x::compress_wide_blocks(&mut st, blocks, active);
            b += 1;
        }
        // The lanes still running finish one by one.
        for l in 0..n {
            if b >= count[l] {
                continue;
            }
            let mut s = [st[0][l], st[1][l], st[2][l], st[3][l], st[4][l]];
            for bb in b..count[l] {
                let blk = msg_block(data[l], &tails[l], full[l], bb);
                crate::sha1x::compress_lanes(std::array::from_mut(&mut s), [blk]);
            }
            for (row, v) in st.iter_mut().zip(s) {
                row[l] = v;
            }
        }
        // Outer hash: the inner digest (5 words), padding, length 64 + 20 bytes; built row by
        // row in the transposed layout.
        let mut w = [[0u32; WIDE]; 16];
        for (row, s) in w.iter_mut().zip(&st) {
            *row = *s;
        }
        w[5] = [0x8000_0000; WIDE];
        w[15] = [(64 + 20) * 8; WIDE];
        let mut os = [[0u32; WIDE]; 5];
        for (l, k) in keys.iter().enumerate().take(n) {
            for (row, v) in os.iter_mut().zip(k.outer) {
                row[l] = v;
            }
        }
        let all = if n >= WIDE { u16::MAX } else { (1u16 << n) - 1 };
        crate::sha1x::compress_wide(&mut os, &w, all);
        let mut out = [[0u8; 20]; WIDE];
        for (l, o) in out.iter_mut().enumerate().take(n) {
            for (d, row) in o.chunks_exact_mut(4).zip(&os) {
                d.copy_from_slice(&row[l].to_be_bytes());
            }
        }
        out
    }
}

/// Block `b` of an SRTP HMAC message (after the ipad block): the `full` whole blocks of `data`,
/// then the blocks of `tail`.
#[inline(always)]
fn msg_block<'a>(data: &'a [u8], tail: &'a [u8; 128], full: usize, b: usize) -> &'a [u8; 64] {
    let s = if b < full {
        data.get(b * 64..b * 64 + 64)
    } else {
        let at = (b - full) * 64;
        tail.get(at..at + 64)
    };
    s.and_then(|s| s.try_into().ok()).unwrap_or(&[0u8; 64])
}

/// Constant-time equality of two tags (no early exit on the first differing byte).
#[inline]
pub(crate) fn tags_equal(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// AES-GCM with a 12-byte nonce and 16-byte tag.
// Kept inline, as `Aes`.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub(crate) enum Gcm {
    A128(aes_gcm::Aes128Gcm),
    A256(aes_gcm::Aes256Gcm),
}

impl Gcm {
    pub(crate) fn new(key: &[u8]) -> Option<Gcm> {
        match key.len() {
            16 => Some(Gcm::A128(aes_gcm::Aes128Gcm::new(
                GenericArray::from_slice(key),
            ))),
            32 => Some(Gcm::A256(aes_gcm::Aes256Gcm::new(
                GenericArray::from_slice(key),
            ))),
            _ => None,
        }
    }

    /// Encrypts `data` in place and returns the tag.
    pub(crate) fn seal(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
        let n = GenericArray::from_slice(nonce);
        let r = match self {
            Gcm::A128(c) => c.encrypt_in_place_detached(n, aad, data),
            Gcm::A256(c) => c.encrypt_in_place_detached(n, aad, data),
        };
        // Only fails for messages over 64 GiB, which a packet cannot be.
        r.map(Into::into).unwrap_or([0; 16])
    }

    /// Verifies the tag, then (only if it verifies) decrypts `data` in place.
    pub(crate) fn open(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8], tag: &[u8]) -> bool {
        if tag.len() != 16 {
            return false;
        }
        let n = GenericArray::from_slice(nonce);
        let t = GenericArray::from_slice(tag);
        match self {
            Gcm::A128(c) => c.decrypt_in_place_detached(n, aad, data, t).is_ok(),
            Gcm::A256(c) => c.decrypt_in_place_detached(n, aad, data, t).is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 3711 Appendix B.2: AES-CM keystream segments for session key 2B7E..., salt
    /// F0F1...FCFD, counters 0000..0002 and FEFF..FF01.
    #[test]
    fn rfc3711_b2_keystream() {
        let aes = Aes::new(&unhex("2B7E151628AED2A6ABF7158809CF4F3C")).unwrap();
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&unhex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD"));
        let mut ks = vec![0u8; 16 * 0xff02];
        aes.apply_keystream(&iv, &mut ks);
        let at = |ctr: usize| &ks[ctr * 16..ctr * 16 + 16];
        assert_eq!(at(0), unhex("E03EAD0935C95E80E166B16DD92B4EB4"));
        assert_eq!(at(1), unhex("D23513162B02D0F72A43A2FE4A5F97AB"));
        assert_eq!(at(2), unhex("41E95B3BB0A2E8DD477901E4FCA894C0"));
        assert_eq!(at(0xfeff), unhex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
        assert_eq!(at(0xff00), unhex("362B7C3C6773516318A077D7FC5073AE"));
        assert_eq!(at(0xff01), unhex("6A2CC3787889374FBEB4C81B17BA6C44"));
    }

    /// RFC 3711 Appendix B.3: key derivation.
    #[test]
    fn rfc3711_b3_key_derivation() {
        let master = Aes::new(&unhex("E1F97A0D3E018BE0D64FA32C06DE4139")).unwrap();
        let salt = unhex("0EC675AD498AFEEBB6960B3AABE6");
        let mut k = [0u8; 16];
        kdf(&master, &salt, label::RTP_ENC, &mut k);
        assert_eq!(k.to_vec(), unhex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut s = [0u8; 14];
        kdf(&master, &salt, label::RTP_SALT, &mut s);
        assert_eq!(s.to_vec(), unhex("30CBBC08863D8C85D49DB34A9AE1"));
        let mut a = [0u8; 32];
        kdf(&master, &salt, label::RTP_AUTH, &mut a);
        assert_eq!(
            a.to_vec(),
            unhex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE")
        );
    }

    /// RFC 2202 HMAC-SHA1 test cases 1, 2 and 6, and the `hmac` crate on many lengths.
    #[test]
    fn hmac_sha1_known_answers() {
        let cases: [(&[u8], &[u8], &str); 3] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b617318655057264e28bc0b6fb378c8ef146be00",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
            ),
            (
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "aa4ae5e15272d00e95705637ce8a3b55ed402112",
            ),
        ];
        for (key, data, want) in cases {
            assert_eq!(HmacSha1::new(key).tag(data, &[]).to_vec(), unhex(want));
        }
        use hmac::Mac;
        let key = [0x42u8; 20];
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        for len in 0..300 {
            for tl in [0usize, 4] {
                let mut m = <hmac::Hmac<sha1::Sha1> as Mac>::new_from_slice(&key).unwrap();
                m.update(&data[..len]);
                m.update(&data[..tl]);
                let want: [u8; 20] = m.finalize().into_bytes().into();
                assert_eq!(
                    HmacSha1::new(&key).tag(&data[..len], &data[..tl]),
                    want,
                    "{len}/{tl}"
                );
            }
        }
        assert!(tags_equal(b"abc", b"abc"));
        assert!(!tags_equal(b"abc", b"abd"));
        assert!(!tags_equal(b"abc", b"ab"));
    }

    #[test]
    fn multi_lane_tags_equal_single_tags() {
        let macs: Vec<HmacSha1> = (0..4u8)
            .map(|k| HmacSha1::new(&[k.wrapping_mul(17).wrapping_add(1); 20]))
            .collect();
        let data: Vec<u8> = (0..400u32).map(|i| (i * 7 + 3) as u8).collect();
        // Equal lengths and mixed ones, across the block boundaries of the tail
        // (51/52/59/60/64 bytes + 4 of ROC), with one key for all lanes and one per lane.
        for lens in [
            [172, 172, 172, 172],
            [12, 12, 12, 12],
            [51, 51, 51, 51],
            [52, 52, 52, 52],
            [60, 60, 60, 60],
            [64, 64, 64, 64],
            [300, 300, 300, 300],
            [172, 171, 60, 12],
            [52, 51, 52, 51],
            [0, 64, 128, 300],
            [300, 12, 200, 52],
        ] {
            for per_lane in [false, true] {
                let keys: [&HmacSha1; 4] =
                    std::array::from_fn(|l| &macs[if per_lane { l } else { 0 }]);
                let d: [&[u8]; 4] = std::array::from_fn(|l| &data[l..l + lens[l]]);
                let roc = [0, 1, 0xFFFF_FFFF, 0x1234_5678];
                let got = HmacSha1::tags_lanes(keys, d, roc);
                for l in 0..4 {
                    assert_eq!(
                        got[l],
                        keys[l].tag(d[l], &roc[l].to_be_bytes()),
                        "{lens:?} lane {l}"
                    );
                }
                let got3 = HmacSha1::tags_lanes(
                    [keys[3], keys[1], keys[2]],
                    [d[3], d[1], d[2]],
                    [roc[3], roc[1], roc[2]],
                );
                assert_eq!(got3[0], keys[3].tag(d[3], &roc[3].to_be_bytes()));
                assert_eq!(got3[2], keys[2].tag(d[2], &roc[2].to_be_bytes()));
                let got1 = HmacSha1::tags_lanes([keys[1]], [d[1]], [roc[1]]);
                assert_eq!(got1[0], keys[1].tag(d[1], &roc[1].to_be_bytes()));
            }
        }
        assert!(macs[0].same_key(&{ macs[0] }));
        // The wide engine, with every lane count and mixed lengths and keys.
        let wide_macs: Vec<HmacSha1> = (0..WIDE as u8).map(|k| HmacSha1::new(&[k; 20])).collect();
        for n in 0..=WIDE {
            for spread in [0usize, 1, 7, 61] {
                let lens: [usize; WIDE] = std::array::from_fn(|l| (172 + l * spread) % 390);
                let d: [&[u8]; WIDE] = std::array::from_fn(|l| &data[l % 7..l % 7 + lens[l]]);
                let keys: [&HmacSha1; WIDE] = std::array::from_fn(|l| &wide_macs[l]);
                let roc: [u32; WIDE] =
                    std::array::from_fn(|l| (l as u32).wrapping_mul(0x9E37_79B9));
                let got = HmacSha1::tags_wide(keys, d, roc, n);
                for l in 0..WIDE {
                    let want = if l < n {
                        keys[l].tag(d[l], &roc[l].to_be_bytes())
                    } else {
                        [0; 20]
                    };
                    assert_eq!(got[l], want, "n {n} spread {spread} lane {l}");
                }
            }
        }
        assert!(!macs[0].same_key(&macs[1]));
    }

    #[test]
    fn xor_handles_partial_blocks() {
        let aes = Aes::new(&[7u8; 16]).unwrap();
        let iv = [3u8; 16];
        for len in [0usize, 1, 15, 16, 17, 160, 511, 512, 513, 2000] {
            let mut a = vec![0u8; len];
            aes.apply_keystream(&iv, &mut a);
            // Block-by-block reference.
            let mut b = vec![0u8; len];
            for (ctr, chunk) in (u128::from_be_bytes(iv)..).zip(b.chunks_mut(16)) {
                let mut blk: Block = ctr.to_be_bytes().into();
                aes.encrypt_blocks(std::slice::from_mut(&mut blk));
                chunk.copy_from_slice(&blk[..chunk.len()]);
            }
            assert_eq!(a, b, "len {len}");
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// ns per packet of the SRTP HMAC of a 172-byte packet, one by one, 4 SHA-NI lanes and
    /// 16 wide lanes, every packet under its own key: `cargo test --release -p tollgate-srtp
    /// --lib hmac_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn hmac_speed() {
        let macs: [HmacSha1; WIDE] = std::array::from_fn(|k| HmacSha1::new(&[k as u8; 20]));
        let data = [7u8; 172];
        let n = 160_000u32;
        let mut acc = 0u8;
        let t = std::time::Instant::now();
        for i in 0..n {
            acc ^= macs[i as usize % WIDE].tag(&data, &i.to_be_bytes())[0];
        }
        let single = t.elapsed().as_nanos() as f64 / f64::from(n);
        let t = std::time::Instant::now();
        for i in 0..n / 4 {
            let r = HmacSha1::tags_lanes(
                std::array::from_fn::<_, 4, _>(|l| &macs[l]),
                [&data[..]; 4],
                [i; 4],
            );
            acc ^= r[0][0] ^ r[3][0];
        }
        let lanes = t.elapsed().as_nanos() as f64 / f64::from(n);
        let t = std::time::Instant::now();
        for i in 0..n / WIDE as u32 {
            let r = HmacSha1::tags_wide(macs.each_ref(), [&data[..]; WIDE], [i; WIDE], WIDE);
            acc ^= r[0][0] ^ r[WIDE - 1][0];
        }
        let wide = t.elapsed().as_nanos() as f64 / f64::from(n);
        println!(
            "HMAC-SHA1 172+4 bytes, ns/packet: single {single:.1}, 4 lanes {lanes:.1}, wide {wide:.1} ({acc})"
        );
    }
}
