//! Why a packet (or a context) was refused: a detailed [`Error`] and its small, `Copy`
//! [`ErrorKind`] that the data plane uses as a counter index.

/// The class of a refusal, usable as an index into a per-flow counter array
/// (`counters[err.kind() as usize]`, with `ErrorKind::COUNT` slots).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The packet is shorter than its header plus tag/trailer, or than the stated length.
    TooShort = 0,
    /// The RTP/RTCP header is malformed (version, CSRC count or extension runs past the end).
    BadHeader = 1,
    /// The authentication tag (HMAC or GCM) did not verify.
    AuthFailed = 2,
    /// The packet index was already seen (replay or duplicate).
    Replayed = 3,
    /// The packet index is behind the replay window.
    TooOld = 4,
    /// A new SSRC arrived but the context's stream table is full.
    TooManyStreams = 5,
    /// The buffer has no room after the packet for the tag/trailer.
    NoTailroom = 6,
    /// The key material carries an MKI, which Tollgate does not support.
    UnsupportedMki = 7,
    /// An SRTCP packet's E flag does not match the context (unencrypted SRTCP refused).
    EFlagMismatch = 8,
    /// The key may not protect more packets (index space or SDES lifetime used up).
    KeyExhausted = 9,
    /// The configuration is out of range.
    BadConfig = 10,
    /// A batch job named a context the caller's set does not have.
    NoContext = 11,
}

impl ErrorKind {
    /// Number of kinds: the size of a counter array indexed by `kind as usize`.
    pub const COUNT: usize = 12;

    /// Every kind, in index order.
    pub const ALL: [ErrorKind; Self::COUNT] = [
        ErrorKind::TooShort,
        ErrorKind::BadHeader,
        ErrorKind::AuthFailed,
        ErrorKind::Replayed,
        ErrorKind::TooOld,
        ErrorKind::TooManyStreams,
        ErrorKind::NoTailroom,
        ErrorKind::UnsupportedMki,
        ErrorKind::EFlagMismatch,
        ErrorKind::KeyExhausted,
        ErrorKind::BadConfig,
        ErrorKind::NoContext,
    ];

    /// A stable snake_case name for metrics and reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::TooShort => "too_short",
            ErrorKind::BadHeader => "bad_header",
            ErrorKind::AuthFailed => "auth_failed",
            ErrorKind::Replayed => "replayed",
            ErrorKind::TooOld => "too_old",
            ErrorKind::TooManyStreams => "too_many_streams",
            ErrorKind::NoTailroom => "no_tailroom",
            ErrorKind::UnsupportedMki => "unsupported_mki",
            ErrorKind::EFlagMismatch => "e_flag_mismatch",
            ErrorKind::KeyExhausted => "key_exhausted",
            ErrorKind::BadConfig => "bad_config",
            ErrorKind::NoContext => "no_context",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a packet or a context was refused. Cheap to build and `Copy`: no allocation on the
/// packet path.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The packet is shorter than the minimum for its kind.
    #[error("packet is {len} bytes, needs at least {need}")]
    TooShort {
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The stated packet length exceeds the buffer.
    #[error("packet length {len} exceeds the {buf}-byte buffer")]
    LengthBeyondBuffer {
        /// Stated length.
        len: usize,
        /// Buffer size.
        buf: usize,
    },
    /// RTP/RTCP version is not 2.
    #[error("RTP/RTCP version {0} (expected 2)")]
    BadVersion(u8),
    /// The CSRC list or header extension runs past the packet (or into the tag).
    #[error("RTP header with CSRCs/extension is {header} bytes, only {avail} available")]
    HeaderOverrun {
        /// Header length the packet claims.
        header: usize,
        /// Bytes available for it.
        avail: usize,
    },
    /// Authentication failed.
    #[error("authentication tag does not verify")]
    AuthFailed,
    /// The index was already received (or, on protect, already sent).
    #[error("packet index {index} is a replay")]
    Replayed {
        /// The packet index (48-bit SRTP or 31-bit SRTCP).
        index: u64,
    },
    /// The index is behind the replay window.
    #[error("packet index {index} is older than the replay window (highest {highest})")]
    TooOld {
        /// The packet index.
        index: u64,
        /// The highest index seen on the stream.
        highest: u64,
    },
    /// The stream table is full.
    #[error("new SSRC {ssrc:#010x} refused: the context already has {max} streams")]
    TooManyStreams {
        /// The refused SSRC.
        ssrc: u32,
        /// The table size.
        max: usize,
    },
    /// The buffer lacks tailroom for the tag/trailer.
    #[error("buffer has {have} bytes, protecting needs {need}")]
    NoTailroom {
        /// Bytes needed (packet plus tag/trailer).
        need: usize,
        /// Buffer size.
        have: usize,
    },
    /// MKI is not supported.
    #[error("key material has an MKI ({len} bytes); MKI is not supported")]
    UnsupportedMki {
        /// MKI length in bytes.
        len: u8,
    },
    /// An SRTCP packet without the E flag where the context encrypts SRTCP.
    #[error("SRTCP packet is not encrypted (E flag clear) but the session encrypts SRTCP")]
    UnencryptedSrtcp,
    /// The SRTP (48-bit) or SRTCP (31-bit) index space is used up.
    #[error("packet index space exhausted; re-key")]
    IndexExhausted,
    /// The SDES key lifetime (packets) is used up.
    #[error("key lifetime of {lifetime} packets reached; re-key")]
    LifetimeExpired {
        /// The lifetime in packets.
        lifetime: u64,
    },
    /// A configuration value is out of range.
    #[error("bad configuration: {0}")]
    BadConfig(&'static str),
    /// A batch job named a context the set does not have.
    #[error("batch job names context {0}, which does not exist")]
    NoContext(usize),
}

impl Error {
    /// The refusal's class, for counters.
    pub const fn kind(&self) -> ErrorKind {
        match self {
            Error::TooShort { .. } | Error::LengthBeyondBuffer { .. } => ErrorKind::TooShort,
            Error::BadVersion(_) | Error::HeaderOverrun { .. } => ErrorKind::BadHeader,
            Error::AuthFailed => ErrorKind::AuthFailed,
            Error::Replayed { .. } => ErrorKind::Replayed,
            Error::TooOld { .. } => ErrorKind::TooOld,
            Error::TooManyStreams { .. } => ErrorKind::TooManyStreams,
            Error::NoTailroom { .. } => ErrorKind::NoTailroom,
            Error::UnsupportedMki { .. } => ErrorKind::UnsupportedMki,
            Error::UnencryptedSrtcp => ErrorKind::EFlagMismatch,
            Error::IndexExhausted | Error::LifetimeExpired { .. } => ErrorKind::KeyExhausted,
            Error::BadConfig(_) => ErrorKind::BadConfig,
            Error::NoContext(_) => ErrorKind::NoContext,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_index_densely() {
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
        let mut names: Vec<_> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::COUNT);
    }
}
