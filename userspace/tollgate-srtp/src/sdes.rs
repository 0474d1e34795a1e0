//! SDES key material (RFC 4568 §6.1): `inline:<base64 key||salt>[|lifetime][|MKI:length]`.
//!
//! Parsing never panics; every refusal names what was wrong, so the SDP layer can answer 488
//! with a precise reason.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::Profile;

/// Longest key‖salt of any profile (AES-256 key + 14-byte salt).
pub const MAX_KEY_SALT: usize = 32 + 14;

/// Why an `inline:` key parameter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum SdesError {
    /// The key method is not `inline`.
    #[error("key method must be inline:, found {0:?}")]
    NotInline(String),
    /// The key‖salt is not valid base64.
    #[error("key||salt is not valid base64")]
    BadBase64,
    /// The decoded key‖salt has the wrong length for the suite.
    #[error("key||salt is {got} bytes, {suite} needs {want}")]
    WrongLength {
        /// The suite.
        suite: Profile,
        /// Bytes needed.
        want: usize,
        /// Bytes found.
        got: usize,
    },
    /// The lifetime is not a number or `2^n`.
    #[error("bad key lifetime {0:?}")]
    BadLifetime(String),
    /// The MKI is not `value:length` with length 1..=128.
    #[error("bad MKI {0:?}")]
    BadMki(String),
    /// More `|`-separated fields than the grammar allows.
    #[error("unexpected key parameter field {0:?}")]
    ExtraField(String),
}

/// A master key and salt for one profile, with the optional lifetime and MKI.
///
/// Serialises (for the call-state store) as its profile and SDES key parameter, the form it
/// travels in on the wire; deserialising checks it as [`KeyMaterial::from_sdes`] does.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "StoredKey", try_from = "StoredKey")]
pub struct KeyMaterial {
    profile: Profile,
    key_salt: [u8; MAX_KEY_SALT],
    /// Key lifetime in packets, if the peer gave one.
    pub lifetime: Option<u64>,
    /// Master key identifier (value, length in bytes), if any.
    pub mki: Option<(u64, u8)>,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key bytes.
        f.debug_struct("KeyMaterial")
            .field("profile", &self.profile)
            .field("lifetime", &self.lifetime)
            .field("mki", &self.mki)
            .finish_non_exhaustive()
    }
}

impl KeyMaterial {
    /// Key material from raw key and salt; `None` if a length does not fit the profile.
    pub fn new(profile: Profile, key: &[u8], salt: &[u8]) -> Option<Self> {
        if key.len() != profile.key_len() || salt.len() != profile.salt_len() {
            return None;
        }
        let mut key_salt = [0u8; MAX_KEY_SALT];
        key_salt[..key.len()].copy_from_slice(key);
        key_salt[key.len()..key.len() + salt.len()].copy_from_slice(salt);
        Some(KeyMaterial {
            profile,
            key_salt,
            lifetime: None,
            mki: None,
        })
    }

    /// Fresh key material from a caller-supplied random source (a CSPRNG in production;
    /// tests inject a deterministic one). `fill` must fill the whole slice.
    pub fn generate(profile: Profile, fill: impl FnOnce(&mut [u8])) -> Self {
        let mut key_salt = [0u8; MAX_KEY_SALT];
        fill(&mut key_salt[..profile.key_len() + profile.salt_len()]);
        KeyMaterial {
            profile,
            key_salt,
            lifetime: None,
            mki: None,
        }
    }

    /// The profile this material is for.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The master key.
    pub fn key(&self) -> &[u8] {
        &self.key_salt[..self.profile.key_len()]
    }

    /// The master salt.
    pub fn salt(&self) -> &[u8] {
        let k = self.profile.key_len();
        &self.key_salt[k..k + self.profile.salt_len()]
    }

    /// Parses one key parameter (`inline:...`) for `profile`.
    pub fn from_sdes(profile: Profile, key_param: &str) -> Result<Self, SdesError> {
        let rest = key_param
            .strip_prefix("inline:")
            .ok_or_else(|| SdesError::NotInline(key_param.chars().take(16).collect()))?;
        let mut fields = rest.split('|');
        let b64 = fields.next().unwrap_or_default();
        let want = profile.key_len() + profile.salt_len();
        let mut buf = [0u8; MAX_KEY_SALT + 3];
        let got = STANDARD.decode_slice(b64, &mut buf).map_err(|e| match e {
            base64::DecodeSliceError::OutputSliceTooSmall => SdesError::WrongLength {
                suite: profile,
                want,
                got: b64.len() * 3 / 4,
            },
            base64::DecodeSliceError::DecodeError(_) => SdesError::BadBase64,
        })?;
        if got != want {
            return Err(SdesError::WrongLength {
                suite: profile,
                want,
                got,
            });
        }
        let mut km = KeyMaterial::new(
            profile,
            &buf[..profile.key_len()],
            &buf[profile.key_len()..want],
        )
        .ok_or(SdesError::WrongLength {
            suite: profile,
            want,
            got,
        })?;
        for f in fields {
            if f.contains(':') {
                if km.mki.is_some() {
                    return Err(SdesError::ExtraField(f.to_owned()));
                }
                km.mki = Some(parse_mki(f)?);
            } else {
                if km.lifetime.is_some() || km.mki.is_some() {
                    return Err(SdesError::ExtraField(f.to_owned()));
                }
                km.lifetime = Some(parse_lifetime(f)?);
            }
        }
        Ok(km)
    }

    /// Formats the key parameter (`inline:<base64>[|2^n or lifetime][|mki:len]`).
    pub fn to_sdes(&self) -> String {
        let n = self.profile.key_len() + self.profile.salt_len();
        let mut s = format!("inline:{}", STANDARD.encode(&self.key_salt[..n]));
        if let Some(l) = self.lifetime {
            if l.is_power_of_two() {
                s.push_str(&format!("|2^{}", l.trailing_zeros()));
            } else {
                s.push_str(&format!("|{l}"));
            }
        }
        if let Some((v, len)) = self.mki {
            s.push_str(&format!("|{v}:{len}"));
        }
        s
    }
}

fn parse_lifetime(f: &str) -> Result<u64, SdesError> {
    let bad = || SdesError::BadLifetime(f.to_owned());
    if let Some(exp) = f.strip_prefix("2^") {
        let e: u32 = exp.parse().map_err(|_| bad())?;
        if e == 0 || e > 63 {
            return Err(bad());
        }
        return Ok(1u64 << e);
    }
    match f.parse::<u64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(bad()),
    }
}

fn parse_mki(f: &str) -> Result<(u64, u8), SdesError> {
    let bad = || SdesError::BadMki(f.to_owned());
    let (v, l) = f.split_once(':').ok_or_else(bad)?;
    let v: u64 = v.parse().map_err(|_| bad())?;
    let l: u8 = l.parse().map_err(|_| bad())?;
    if !(1..=128).contains(&l) {
        return Err(bad());
    }
    Ok((v, l))
}

/// The stored form of [`KeyMaterial`].
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredKey {
    profile: Profile,
    sdes: String,
}

impl From<KeyMaterial> for StoredKey {
    fn from(k: KeyMaterial) -> StoredKey {
        StoredKey {
            profile: k.profile,
            sdes: k.to_sdes(),
        }
    }
}

impl TryFrom<StoredKey> for KeyMaterial {
    type Error = SdesError;

    fn try_from(s: StoredKey) -> Result<KeyMaterial, SdesError> {
        KeyMaterial::from_sdes(s.profile, &s.sdes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4568_example_parses() {
        // RFC 4568 §10.1 example key.
        let km = KeyMaterial::from_sdes(
            Profile::Aes128CmHmacSha1_80,
            "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4",
        )
        .unwrap();
        assert_eq!(km.lifetime, Some(1 << 20));
        assert_eq!(km.mki, Some((1, 4)));
        assert_eq!(km.key().len(), 16);
        assert_eq!(km.salt().len(), 14);
        assert_eq!(
            km.to_sdes(),
            "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4"
        );
    }

    #[test]
    fn refusals_name_the_fault() {
        let p = Profile::Aes128CmHmacSha1_80;
        assert!(matches!(
            KeyMaterial::from_sdes(p, "uri:x"),
            Err(SdesError::NotInline(_))
        ));
        assert_eq!(
            KeyMaterial::from_sdes(p, "inline:!!!!"),
            Err(SdesError::BadBase64)
        );
        assert!(matches!(
            KeyMaterial::from_sdes(p, "inline:QUJD"),
            Err(SdesError::WrongLength {
                want: 30,
                got: 3,
                ..
            })
        ));
        let key = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
        assert!(matches!(
            KeyMaterial::from_sdes(p, &format!("{key}|2^99")),
            Err(SdesError::BadLifetime(_))
        ));
        assert!(matches!(
            KeyMaterial::from_sdes(p, &format!("{key}|1:0")),
            Err(SdesError::BadMki(_))
        ));
        assert!(matches!(
            KeyMaterial::from_sdes(p, &format!("{key}|1:4|2^20")),
            Err(SdesError::ExtraField(_))
        ));
        // A 256-bit suite needs 46 bytes.
        assert!(matches!(
            KeyMaterial::from_sdes(Profile::Aes256CmHmacSha1_80, key),
            Err(SdesError::WrongLength {
                want: 46,
                got: 30,
                ..
            })
        ));
    }

    #[test]
    fn generate_round_trips() {
        for p in Profile::ALL {
            let mut n = 0u8;
            let km = KeyMaterial::generate(p, |b| {
                for x in b {
                    n = n.wrapping_add(7);
                    *x = n;
                }
            });
            let back = KeyMaterial::from_sdes(p, &km.to_sdes()).unwrap();
            assert_eq!(back, km);
        }
    }
}
