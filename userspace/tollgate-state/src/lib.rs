//! Call-state store: answered calls survive a restart of the daemon.
//!
//! The control plane serialises each answered call into an opaque record (bytes; this crate
//! never looks inside) under an opaque call key (printable ASCII, e.g. `"17"`; see
//! [`valid_key`]). This crate persists them behind one trait, [`CallStore`], with two
//! backends, and writes them from a dedicated thread, [`StoreWriter`].
//!
//! # What is stored where
//!
//! * **file** ([`FileStore`]): one [redb](https://docs.rs/redb) database file, one table
//!   `calls`: call key (its bytes) → record.
//! * **valkey** ([`ValkeyStore`]), for node `N` (see [`valkey::Namespace`]):
//!   * `tollgate:N:call:K` — record of call `K`, a string with a TTL (`SET … PX ttl`);
//!   * `tollgate:N:calls` — set of `N`'s call keys, with the same TTL.
//!
//!   [`CallStore::refresh`] re-arms the TTL of every key in the index and of the index; a
//!   node that dies stops refreshing and its records expire after the TTL, unless another
//!   node takes them over first ([`ValkeyStore::load_node`]). Index members whose record
//!   expired are removed by `load` and `refresh`.
//!
//! # Writing: [`StoreWriter`]
//!
//! `put`/`delete` never block: they send on an unbounded channel to the writer thread, which
//! keeps a mirror of every live record and a dirty set, and writes the dirty records at most
//! `max_delay` (5 ms) after the first change, in `apply` batches of at most `max_batch`: a
//! burst of call set-ups is one transaction, many updates of one call are one write of its
//! latest record. `refresh` runs every `ttl / 3` ([`WriterOptions::for_ttl`]).
//! [`StoreWriter::flush`] waits until everything sent before it is written (graceful
//! restart); [`StoreWriter::status`] gives the numbers for metrics.
//!
//! # Outage behaviour
//!
//! When a write or refresh fails the writer marks the store down (`status().up == false`),
//! logs one `warn!` per outage with the number of unprotected calls, keeps accepting changes
//! (the mirror always has the latest state; `status().unprotected` counts changed records not
//! yet written), and retries with backoff from 100 ms doubling to 2 s. Each retry is a full
//! resync — PING, load the store's keys, rewrite the whole mirror and delete stored keys the
//! mirror does not have — because a restarted Valkey may have lost everything or come back
//! from an old snapshot. Only a complete resync ends the outage (`status().resyncs` + 1). The
//! Valkey connection is re-made after any error, so a server restarted on the same address is
//! picked up without intervention.
//!
//! # Crash safety
//!
//! * file: each `apply` is one redb write transaction with `Durability::Immediate` (fsync
//!   before `commit` returns). redb's commit is a copy-on-write tree plus a checksummed,
//!   double-buffered header flip, so after SIGKILL or power loss the file holds every batch
//!   whose `apply` returned and no partial batch; redb repairs its free-space state on the next
//!   open. The test `file_survives_sigkill` (tests/file.rs) kills a writing child with SIGKILL
//!   and checks exactly this. A file that is not a redb database is refused with
//!   [`StoreError::Corrupt`] and left alone; redb panics on damaged files are caught and
//!   reported as `Corrupt`; a record whose key is not a valid call key is skipped and counted.
//! * valkey: each `apply` is one `MULTI … EXEC`, so a batch lands whole or not at all.
//!   Durability is the server's (its persistence settings); the writer's resync covers a
//!   server that restarted empty. Records a crashed daemon did not write in time are the
//!   `unprotected` ones: at most `max_delay` worth while the store is up.

pub mod error;
pub mod file;
pub mod lease;
pub mod testing;
pub mod valkey;
pub mod writer;

use std::path::PathBuf;
use std::time::Duration;

pub use error::StoreError;
pub use file::FileStore;
pub use lease::{Lease, LeaseState};
pub use valkey::ValkeyStore;
pub use writer::{StoreWriter, WriterOptions, WriterStatus};

/// Longest call key or node id accepted.
pub const MAX_KEY_LEN: usize = 256;

/// Whether `key` can be a call key or node id: 1..=[`MAX_KEY_LEN`] printable ASCII characters
/// (no spaces or control characters).
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic())
}

/// A persistent map of call key → opaque record, owned by one node.
///
/// Key: an opaque call key chosen by the caller (ASCII, e.g. "17"). Value: opaque bytes.
pub trait CallStore: Send {
    /// Writes (upserts) and deletes in one batch; atomic for the file backend, pipelined
    /// (`MULTI`/`EXEC`) for valkey. A key both put and deleted in one batch ends up deleted.
    fn apply(&mut self, puts: &[(String, Vec<u8>)], deletes: &[String]) -> Result<(), StoreError>;
    /// Every record this node owns (at start-up, for recovery).
    fn load(&mut self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Keeps this node's records alive (valkey: refresh TTLs; file: no-op). Called
    /// periodically.
    fn refresh(&mut self) -> Result<(), StoreError>;
    /// Cheap liveness check (valkey: PING; file: no-op).
    fn ping(&mut self) -> Result<(), StoreError>;
    /// "file" or "valkey".
    fn backend(&self) -> &'static str;
}

/// Which backend, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A redb file at `path` (its directory must exist).
    File {
        /// The database file.
        path: PathBuf,
    },
    /// A Valkey/Redis server: `redis://host:port/[db]` or `unix:///path/to/socket`.
    Valkey {
        /// The server's URL.
        url: String,
    },
}

/// Configuration of [`open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Backend and location.
    pub backend: Backend,
    /// This node's id (namespace in Valkey; unused by the file backend).
    pub node_id: String,
    /// Record lifetime without refresh (Valkey); the writer refreshes every `ttl / 3`.
    pub ttl: Duration,
}

/// Opens the configured store.
pub fn open(cfg: &StoreConfig) -> Result<Box<dyn CallStore>, StoreError> {
    Ok(match &cfg.backend {
        Backend::File { path } => Box::new(FileStore::open(path)?),
        Backend::Valkey { url } => Box::new(ValkeyStore::connect(url, &cfg.node_id, cfg.ttl)?),
    })
}
