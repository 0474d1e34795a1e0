//! `a=crypto` (RFC 4568 SDES): `<tag> <crypto-suite> <key-params> [<session-params>...]`.
//!
//! [`Crypto`] is the parsed line (it round-trips); [`SessionParam`] types the session
//! parameters; [`CryptoPolicy::accept`] decides whether Tollgate can use a line and, if not,
//! says why in a [`CryptoRefusal`] (that text ends up in the 488 reason).
//!
//! What Tollgate's SRTP supports, and so what it accepts: one master key per line, no MKI
//! (unless enabled), a key lifetime of at least [`CryptoPolicy::min_key_lifetime`] packets
//! (Tollgate never re-keys on lifetime), no key derivation rate (`KDR=0` is taken as the RFC
//! 3711 default of a single derivation), encryption and authentication always on (so no
//! `UNENCRYPTED_SRTP`, `UNENCRYPTED_SRTCP`, `UNAUTHENTICATED_SRTP`), no FEC key. `FEC_ORDER`
//! and `WSH` are accepted (no FEC is used; the replay window is at least 128 packets anyway),
//! unknown parameters are refused unless marked optional with a leading `-`.

use std::fmt::{self, Display};

use tollgate_srtp::{KeyMaterial, Profile, SdesError};

use crate::attr::AttrError;
use crate::session::is_token_byte;

/// One `a=crypto` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    /// The tag (1 to 9 digits) the answer echoes.
    pub tag: u32,
    /// The crypto suite name, as written.
    pub suite: String,
    /// The key parameters (`inline:...`), in order.
    pub key_params: Vec<String>,
    /// The session parameters, verbatim, in order.
    pub session_params: Vec<String>,
}

impl Crypto {
    /// A line carrying one key (`inline:`, with its lifetime and MKI if set).
    pub fn new(tag: u32, key: &KeyMaterial) -> Self {
        Crypto {
            tag,
            suite: key.profile().sdes_name().to_owned(),
            key_params: vec![key.to_sdes()],
            session_params: Vec::new(),
        }
    }

    /// Parses the value of an `a=crypto` attribute.
    pub fn parse(value: &str) -> Result<Self, AttrError> {
        let bad = |r: String| AttrError::new("crypto", r);
        let mut f = value.split(' ');
        let tag_s = f.next().unwrap_or_default();
        if tag_s.is_empty() || tag_s.len() > 9 || !tag_s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!("tag {tag_s:?} is not 1 to 9 digits")));
        }
        let tag = tag_s
            .parse()
            .map_err(|_| bad(format!("tag {tag_s:?} is not a number")))?;
        let suite = f
            .next()
            .ok_or_else(|| bad(format!("tag {tag}: no crypto suite")))?;
        if suite.is_empty() || !suite.bytes().all(is_token_byte) {
            return Err(bad(format!("tag {tag}: bad crypto suite {suite:?}")));
        }
        let keys = f
            .next()
            .ok_or_else(|| bad(format!("tag {tag}: no key parameters")))?;
        let key_params: Vec<String> = keys.split(';').map(str::to_owned).collect();
        for k in &key_params {
            match k.split_once(':') {
                Some((m, info)) if !m.is_empty() && !info.is_empty() => {}
                _ => return Err(bad(format!("tag {tag}: bad key parameter {k:?}"))),
            }
        }
        let session_params: Vec<String> = f.map(str::to_owned).collect();
        if session_params.iter().any(String::is_empty) {
            return Err(bad(format!(
                "tag {tag}: empty session parameter (double space?)"
            )));
        }
        Ok(Crypto {
            tag,
            suite: suite.to_owned(),
            key_params,
            session_params,
        })
    }

    /// The suite as a profile, if Tollgate knows it.
    pub fn profile(&self) -> Option<Profile> {
        Profile::from_sdes_name(&self.suite)
    }

    /// The typed session parameters.
    pub fn typed_session_params(&self) -> Result<Vec<SessionParam>, AttrError> {
        self.session_params
            .iter()
            .map(|p| SessionParam::parse(p).map_err(|r| AttrError::new("crypto", r)))
            .collect()
    }
}

impl Display for Crypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.tag,
            self.suite,
            self.key_params.join(";")
        )?;
        for p in &self.session_params {
            write!(f, " {p}")?;
        }
        Ok(())
    }
}

/// The order of FEC and SRTP processing (`FEC_ORDER=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FecOrder {
    /// `FEC_SRTP`: FEC before SRTP on the sender.
    FecSrtp,
    /// `SRTP_FEC`: SRTP before FEC (the default).
    SrtpFec,
}

/// One RFC 4568 §6.3 session parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionParam {
    /// `KDR=n`: key derivation rate 2^n (n in 0..=24).
    Kdr(u8),
    /// `UNENCRYPTED_SRTP`.
    UnencryptedSrtp,
    /// `UNENCRYPTED_SRTCP`.
    UnencryptedSrtcp,
    /// `UNAUTHENTICATED_SRTP`.
    UnauthenticatedSrtp,
    /// `FEC_ORDER=`.
    FecOrder(FecOrder),
    /// `FEC_KEY=<key-params>`.
    FecKey(String),
    /// `WSH=n`: replay window size hint (at least 64).
    Wsh(u32),
    /// Anything else; `optional` when written with a leading `-` (may be ignored).
    Extension {
        /// Whether the receiver may ignore it.
        optional: bool,
        /// The parameter as written.
        text: String,
    },
}

impl SessionParam {
    /// Parses one session parameter.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(n) = s.strip_prefix("KDR=") {
            return match n.parse::<u8>() {
                Ok(v) if v <= 24 && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok(SessionParam::Kdr(v))
                }
                _ => Err(format!("KDR={n} is not a number in 0..=24")),
            };
        }
        if let Some(o) = s.strip_prefix("FEC_ORDER=") {
            return match o {
                "FEC_SRTP" => Ok(SessionParam::FecOrder(FecOrder::FecSrtp)),
                "SRTP_FEC" => Ok(SessionParam::FecOrder(FecOrder::SrtpFec)),
                _ => Err(format!("FEC_ORDER={o} is neither FEC_SRTP nor SRTP_FEC")),
            };
        }
        if let Some(k) = s.strip_prefix("FEC_KEY=") {
            return Ok(SessionParam::FecKey(k.to_owned()));
        }
        if let Some(w) = s.strip_prefix("WSH=") {
            return match w.parse::<u32>() {
                Ok(v) if v >= 64 && w.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok(SessionParam::Wsh(v))
                }
                _ => Err(format!("WSH={w} is not a number of at least 64")),
            };
        }
        Ok(match s {
            "UNENCRYPTED_SRTP" => SessionParam::UnencryptedSrtp,
            "UNENCRYPTED_SRTCP" => SessionParam::UnencryptedSrtcp,
            "UNAUTHENTICATED_SRTP" => SessionParam::UnauthenticatedSrtp,
            other => SessionParam::Extension {
                optional: other.starts_with('-'),
                text: other.to_owned(),
            },
        })
    }
}

/// What Tollgate accepts in `a=crypto` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoPolicy {
    /// Acceptable suites, best first (the choice among several offered lines follows this order).
    pub suites: Vec<Profile>,
    /// Whether a key with an MKI is accepted (the SRTP data path must then carry MKIs).
    pub accept_mki: bool,
    /// The shortest key lifetime (packets) accepted; Tollgate never re-keys on lifetime.
    pub min_key_lifetime: u64,
}

impl Default for CryptoPolicy {
    fn default() -> Self {
        CryptoPolicy {
            suites: Profile::ALL.to_vec(),
            accept_mki: false,
            min_key_lifetime: 1 << 31,
        }
    }
}

/// Why one `a=crypto` line is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum CryptoRefusal {
    /// The suite is not one Tollgate knows.
    #[error("unknown crypto suite {0}")]
    UnknownSuite(String),
    /// The suite is known but not enabled in the configuration.
    #[error("crypto suite {0} is not enabled")]
    SuiteNotEnabled(Profile),
    /// More than one master key on one line.
    #[error("{0} master keys on one line (MKI-indexed keys) are not supported")]
    SeveralKeys(usize),
    /// The key parameter is malformed.
    #[error("{0}")]
    Key(SdesError),
    /// The key carries an MKI and MKIs are not enabled.
    #[error("MKI is not supported")]
    Mki,
    /// The key lifetime is shorter than Tollgate accepts.
    #[error(
        "key lifetime {lifetime} packets is below the minimum {min}; re-keying on lifetime is not supported"
    )]
    ShortLifetime {
        /// The offered lifetime.
        lifetime: u64,
        /// The configured minimum.
        min: u64,
    },
    /// A session parameter Tollgate cannot honour.
    #[error("session parameter {0} is not supported")]
    SessionParam(String),
    /// A malformed session parameter.
    #[error("{0}")]
    BadSessionParam(String),
}

impl CryptoPolicy {
    /// Checks one line; on success returns the peer's key (the key it sends with).
    pub fn accept(&self, c: &Crypto) -> Result<KeyMaterial, CryptoRefusal> {
        let profile = c
            .profile()
            .ok_or_else(|| CryptoRefusal::UnknownSuite(c.suite.clone()))?;
        if !self.suites.contains(&profile) {
            return Err(CryptoRefusal::SuiteNotEnabled(profile));
        }
        let [key] = c.key_params.as_slice() else {
            return Err(CryptoRefusal::SeveralKeys(c.key_params.len()));
        };
        let km = KeyMaterial::from_sdes(profile, key).map_err(CryptoRefusal::Key)?;
        if km.mki.is_some() && !self.accept_mki {
            return Err(CryptoRefusal::Mki);
        }
        if let Some(l) = km.lifetime
            && l < self.min_key_lifetime
        {
            return Err(CryptoRefusal::ShortLifetime {
                lifetime: l,
                min: self.min_key_lifetime,
            });
        }
        for p in &c.session_params {
            match SessionParam::parse(p).map_err(CryptoRefusal::BadSessionParam)? {
                SessionParam::Kdr(0)
                | SessionParam::FecOrder(_)
                | SessionParam::Wsh(_)
                | SessionParam::Extension { optional: true, .. } => {}
                SessionParam::Kdr(_)
                | SessionParam::UnencryptedSrtp
                | SessionParam::UnencryptedSrtcp
                | SessionParam::UnauthenticatedSrtp
                | SessionParam::FecKey(_)
                | SessionParam::Extension {
                    optional: false, ..
                } => return Err(CryptoRefusal::SessionParam(p.clone())),
            }
        }
        Ok(km)
    }

    /// The best acceptable line among `offered` (suite order of this policy, then the offer's
    /// order), with the peer's key; or every line's refusal.
    pub fn select<'a>(
        &self,
        offered: &'a [Crypto],
    ) -> Result<(&'a Crypto, KeyMaterial), Vec<(u32, CryptoRefusal)>> {
        let mut refusals = Vec::new();
        let mut best: Option<(usize, &Crypto, KeyMaterial)> = None;
        for c in offered {
            match self.accept(c) {
                Ok(km) => {
                    let rank = self
                        .suites
                        .iter()
                        .position(|p| *p == km.profile())
                        .unwrap_or(usize::MAX);
                    if best.as_ref().is_none_or(|(r, _, _)| rank < *r) {
                        best = Some((rank, c, km));
                    }
                }
                Err(e) => refusals.push((c.tag, e)),
            }
        }
        match best {
            Some((_, c, km)) => Ok((c, km)),
            None => Err(refusals),
        }
    }
}
