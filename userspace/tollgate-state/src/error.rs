//! The crate's error type: what a store or the writer reports.

use std::path::PathBuf;

/// What went wrong in a call-state store or its writer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file backend's database failed (I/O, lock, transaction, storage).
    #[error("call-state file {path}: {source}")]
    File {
        /// The database file.
        path: PathBuf,
        /// What redb reported.
        #[source]
        source: Box<redb::Error>,
    },
    /// The file exists but is not a (readable) call-state database; it is left untouched.
    #[error("call-state file {path} is corrupt or not a call-state database: {reason}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// The Valkey/Redis server failed or could not be reached.
    #[error("call-state valkey {url}: {source}")]
    Valkey {
        /// The server's URL.
        url: String,
        /// What the client reported.
        #[source]
        source: redis::RedisError,
    },
    /// A call key or node id that cannot be stored (empty, too long, not printable ASCII).
    #[error(
        "invalid {what} {value:?}: must be 1..={max} printable ASCII characters",
        max = crate::MAX_KEY_LEN
    )]
    InvalidKey {
        /// "call key" or "node id".
        what: &'static str,
        /// The refused value (lossily decoded).
        value: String,
    },
    /// The configuration cannot work (for example a zero TTL).
    #[error("call-state config: {0}")]
    Config(String),
    /// `flush` did not complete in time: the store is down or slow; the writer keeps trying.
    #[error("call-state flush timed out with {unprotected} records not yet written")]
    Timeout {
        /// Records not yet written when the wait ended.
        unprotected: usize,
    },
    /// The writer gave up with records still unwritten (final flush at shutdown failed).
    #[error("call-state store unavailable: {unprotected} records not written")]
    Unavailable {
        /// Records not written.
        unprotected: usize,
    },
    /// The writer thread is gone (shut down, or could not be started).
    #[error("call-state writer is not running: {0}")]
    WriterGone(String),
}
