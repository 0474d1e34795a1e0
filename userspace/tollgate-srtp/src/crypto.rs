//! Crypto primitives behind the SRTP transforms: AES counter mode (the SRTP "AES-CM"/ICM
//! keystream), the AES-CM key derivation PRF (RFC 3711 §4.3, KDR 0), HMAC-SHA1 with
//! precomputed inner/outer state, and the AES-GCM AEAD (RFC 7714).
//!
//! All key schedules are computed once, when a [`crate::Context`] is built; the per-packet
//! work is block encryption, hashing and XOR.

use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use aes_gcm::aead::AeadInPlace;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// One AES block.
pub(crate) type Block = GenericArray<u8, aes::cipher::consts::U16>;

/// Counter blocks encrypted per AES call; a multiple of the AES-NI pipeline width (8).
pub(crate) const KS_BLOCKS: usize = 32;

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
        let mut blocks = [Block::default(); KS_BLOCKS];
        for chunk in data.chunks_mut(KS_BLOCKS * 16) {
            let n = chunk.len().div_ceil(16);
            for b in &mut blocks[..n] {
                *b = ctr.to_be_bytes().into();
                ctr = ctr.wrapping_add(1);
            }
            self.encrypt_blocks(&mut blocks[..n]);
            xor_blocks(chunk, &blocks[..n]);
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

/// HMAC-SHA1 keyed once: the inner (ipad) and outer (opad) states are hashed at construction
/// and cloned per packet.
#[derive(Clone)]
pub(crate) struct HmacSha1 {
    keyed: Hmac<Sha1>,
}

impl HmacSha1 {
    pub(crate) fn new(key: &[u8]) -> HmacSha1 {
        // HMAC accepts any key length; this cannot fail.
        let keyed = <Hmac<Sha1> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| <Hmac<Sha1> as KeyInit>::new(&GenericArray::default()));
        HmacSha1 { keyed }
    }

    /// HMAC over `data || trailer` (the ROC for SRTP; nothing for SRTCP, whose E/index word is
    /// part of `data`).
    #[inline]
    pub(crate) fn tag(&self, data: &[u8], trailer: &[u8]) -> [u8; 20] {
        let mut m = self.keyed.clone();
        m.update(data);
        m.update(trailer);
        m.finalize().into_bytes().into()
    }
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
