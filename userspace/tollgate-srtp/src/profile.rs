//! SRTP protection profiles, named as in SDP (RFC 4568, RFC 6188, RFC 7714).

/// A protection profile: cipher, authentication and their sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Profile {
    /// AES-128 counter mode, HMAC-SHA1 with an 80-bit tag (RFC 3711 default).
    Aes128CmHmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 with a 32-bit RTP tag (SRTCP keeps 80 bits).
    Aes128CmHmacSha1_32,
    /// AES-256 counter mode, HMAC-SHA1 80 (RFC 6188).
    Aes256CmHmacSha1_80,
    /// AES-256 counter mode, HMAC-SHA1 32 (RFC 6188).
    Aes256CmHmacSha1_32,
    /// AES-128-GCM AEAD with a 16-byte tag (RFC 7714).
    AeadAes128Gcm,
    /// AES-256-GCM AEAD with a 16-byte tag (RFC 7714).
    AeadAes256Gcm,
}

impl Profile {
    /// Every profile, in Tollgate's order of preference for offers.
    pub const ALL: [Profile; 6] = [
        Profile::Aes128CmHmacSha1_80,
        Profile::Aes128CmHmacSha1_32,
        Profile::AeadAes128Gcm,
        Profile::AeadAes256Gcm,
        Profile::Aes256CmHmacSha1_80,
        Profile::Aes256CmHmacSha1_32,
    ];

    /// The SDP `a=crypto` suite name.
    pub const fn sdes_name(self) -> &'static str {
        match self {
            Profile::Aes128CmHmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Profile::Aes128CmHmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Profile::Aes256CmHmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            Profile::Aes256CmHmacSha1_32 => "AES_256_CM_HMAC_SHA1_32",
            Profile::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Profile::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    /// Parses an SDP suite name (case-sensitive, as RFC 4568 registers them).
    pub fn from_sdes_name(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.sdes_name() == name)
    }

    /// Master key length in bytes.
    pub const fn key_len(self) -> usize {
        match self {
            Profile::Aes128CmHmacSha1_80
            | Profile::Aes128CmHmacSha1_32
            | Profile::AeadAes128Gcm => 16,
            Profile::Aes256CmHmacSha1_80
            | Profile::Aes256CmHmacSha1_32
            | Profile::AeadAes256Gcm => 32,
        }
    }

    /// Master salt length in bytes (14 for counter mode, 12 for GCM).
    pub const fn salt_len(self) -> usize {
        if self.is_aead() { 12 } else { 14 }
    }

    /// Whether the profile is an AEAD (GCM) profile.
    pub const fn is_aead(self) -> bool {
        matches!(self, Profile::AeadAes128Gcm | Profile::AeadAes256Gcm)
    }

    /// Bytes appended to an SRTP packet (authentication tag).
    pub const fn rtp_tag_len(self) -> usize {
        match self {
            Profile::Aes128CmHmacSha1_80 | Profile::Aes256CmHmacSha1_80 => 10,
            Profile::Aes128CmHmacSha1_32 | Profile::Aes256CmHmacSha1_32 => 4,
            Profile::AeadAes128Gcm | Profile::AeadAes256Gcm => 16,
        }
    }

    /// Bytes appended to an SRTCP packet: the 4-byte E-flag/index word plus the tag
    /// (the _32 profiles use an 80-bit tag on SRTCP, as libsrtp does).
    pub const fn rtcp_trailer_len(self) -> usize {
        4 + if self.is_aead() { 16 } else { 10 }
    }

    /// The largest number of bytes protection adds to any packet: the tailroom a buffer needs.
    pub const fn max_overhead(self) -> usize {
        let rtp = self.rtp_tag_len();
        let rtcp = self.rtcp_trailer_len();
        if rtp > rtcp { rtp } else { rtcp }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.sdes_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Profile::ALL {
            assert_eq!(Profile::from_sdes_name(p.sdes_name()), Some(p));
        }
        assert_eq!(Profile::from_sdes_name("F8_128_HMAC_SHA1_80"), None);
    }
}
