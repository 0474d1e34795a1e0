//! Valkey/Redis backend: records as string keys with a TTL, plus a per-node index set.
//!
//! Key layout (see [`Namespace`]), for node `N` and call key `K`:
//!
//! * `tollgate:N:call:K` — the record, a string written with `SET … PX ttl`;
//! * `tollgate:N:calls` — a set of the node's call keys (`K`), `SADD`/`SREM`ed with the
//!   records and `PEXPIRE`d with the same TTL.
//!
//! A node that stops refreshing (it died) loses its records after the TTL; until then
//! another node can read them with [`ValkeyStore::load_node`]. Index members whose record has
//! expired are removed by `load` and `refresh`.
//!
//! The connection is made in [`ValkeyStore::connect`]; after any error it is dropped and the
//! next call reconnects, so a restarted server is picked up without re-creating the store.

use std::time::Duration;

use redis::{Client, Connection, RedisError};

use crate::{CallStore, StoreError, valid_key};

/// Connect timeout of each (re)connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Read and write timeout of every command: a hung server is an outage, not a hung writer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Keys per `MGET` / `PEXPIRE` pipeline chunk.
const CHUNK: usize = 1000;

/// The key names of one node's records. Everything that names a key goes through here, so
/// that an owner or epoch component can later be added in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    prefix: String,
}

impl Namespace {
    /// The namespace of `node_id` (which must pass [`valid_key`]).
    pub fn new(node_id: &str) -> Result<Namespace, StoreError> {
        if !valid_key(node_id) {
            return Err(StoreError::InvalidKey {
                what: "node id",
                value: node_id.to_owned(),
            });
        }
        Ok(Namespace {
            prefix: format!("tollgate:{node_id}:"),
        })
    }

    /// `tollgate:{node}:call:{key}`.
    pub fn call_key(&self, key: &str) -> String {
        format!("{}call:{key}", self.prefix)
    }

    /// `tollgate:{node}:calls`.
    pub fn index_key(&self) -> String {
        format!("{}calls", self.prefix)
    }
}

/// Call records in Valkey (or Redis), namespaced by node id, kept alive by TTL refreshes.
pub struct ValkeyStore {
    url: String,
    client: Client,
    conn: Option<Connection>,
    ns: Namespace,
    ttl_ms: u64,
    skipped: u64,
}

impl std::fmt::Debug for ValkeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValkeyStore")
            .field("url", &self.url)
            .field("namespace", &self.ns)
            .field("ttl_ms", &self.ttl_ms)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl ValkeyStore {
    /// Connects to `url` (`redis://host:port/[db]` or `unix:///path/to/socket`) and checks the
    /// server with a PING. Records of `node_id` are written with time-to-live `ttl`
    /// (millisecond precision, at least 1 ms).
    pub fn connect(url: &str, node_id: &str, ttl: Duration) -> Result<ValkeyStore, StoreError> {
        let mut store = ValkeyStore::new(url, node_id, ttl)?;
        store.ping()?;
        Ok(store)
    }

    /// Like [`ValkeyStore::connect`] but without connecting: only the URL, node id and TTL
    /// are checked. For a daemon that must start while the server is down (a
    /// [`crate::StoreWriter`] over it starts in outage mode and resyncs when it is reachable).
    pub fn new(url: &str, node_id: &str, ttl: Duration) -> Result<ValkeyStore, StoreError> {
        let ns = Namespace::new(node_id)?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        if ttl_ms == 0 {
            return Err(StoreError::Config(
                "valkey TTL must be at least 1 ms".into(),
            ));
        }
        let client = Client::open(url).map_err(|source| valkey_error(url, source))?;
        Ok(ValkeyStore {
            url: url.to_owned(),
            client,
            conn: None,
            ns,
            ttl_ms,
            skipped: 0,
        })
    }

    /// The key layout of this node.
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// Index members or records skipped by loads so far because they were not valid call
    /// keys (written by something else, or corrupt). Each skip is also logged.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Every live record of another node (`node_id`), for taking over a dead node's calls.
    /// Index members whose record has expired are removed from that node's index.
    pub fn load_node(&mut self, node_id: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let ns = Namespace::new(node_id)?;
        self.with_conn(|conn, skipped| load_ns(conn, &ns, skipped))
    }

    /// Runs `f` on the connection, connecting first if needed; drops the connection on error.
    fn with_conn<T>(
        &mut self,
        f: impl FnOnce(&mut Connection, &mut u64) -> Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        let ValkeyStore {
            url,
            client,
            conn,
            skipped,
            ..
        } = self;
        let c = match conn {
            Some(c) => c,
            None => conn.insert(connect(client).map_err(|source| valkey_error(url, source))?),
        };
        match f(c, skipped) {
            Ok(v) => Ok(v),
            Err(source) => {
                // Whatever it was (I/O, timeout, server error), start from a fresh connection.
                *conn = None;
                Err(valkey_error(url, source))
            }
        }
    }
}

fn valkey_error(url: &str, source: RedisError) -> StoreError {
    StoreError::Valkey {
        url: url.to_owned(),
        source,
    }
}

fn connect(client: &Client) -> Result<Connection, RedisError> {
    let conn = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(conn)
}

/// The index members of `ns` that are valid call keys; others are counted and removed.
fn members(
    conn: &mut Connection,
    ns: &Namespace,
    skipped: &mut u64,
) -> Result<Vec<String>, RedisError> {
    let raw: Vec<Vec<u8>> = redis::cmd("SMEMBERS").arg(ns.index_key()).query(conn)?;
    let mut keys = Vec::with_capacity(raw.len());
    let mut bad = Vec::new();
    for m in raw {
        match String::from_utf8(m) {
            Ok(k) if valid_key(&k) => keys.push(k),
            Ok(k) => bad.push(k.into_bytes()),
            Err(e) => bad.push(e.into_bytes()),
        }
    }
    if !bad.is_empty() {
        *skipped += bad.len() as u64;
        tracing::warn!(
            index = %ns.index_key(),
            count = bad.len(),
            "call-state valkey: removing invalid index members"
        );
        redis::cmd("SREM")
            .arg(ns.index_key())
            .arg(&bad)
            .query::<()>(conn)?;
    }
    Ok(keys)
}

fn load_ns(
    conn: &mut Connection,
    ns: &Namespace,
    skipped: &mut u64,
) -> Result<Vec<(String, Vec<u8>)>, RedisError> {
    let keys = members(conn, ns, skipped)?;
    let mut out = Vec::with_capacity(keys.len());
    let mut gone = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        let names: Vec<String> = chunk.iter().map(|k| ns.call_key(k)).collect();
        // A key of another type (not a string) reads as nil in MGET: treated as gone.
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&names).query(conn)?;
        for (key, value) in chunk.iter().zip(values) {
            match value {
                Some(v) => out.push((key.clone(), v)),
                None => gone.push(key.clone()),
            }
        }
    }
    for chunk in gone.chunks(CHUNK) {
        redis::cmd("SREM")
            .arg(ns.index_key())
            .arg(chunk)
            .query::<()>(conn)?;
    }
    Ok(out)
}

impl CallStore for ValkeyStore {
    fn apply(&mut self, puts: &[(String, Vec<u8>)], deletes: &[String]) -> Result<(), StoreError> {
        for key in puts.iter().map(|(k, _)| k).chain(deletes) {
            if !valid_key(key) {
                return Err(StoreError::InvalidKey {
                    what: "call key",
                    value: key.clone(),
                });
            }
        }
        if puts.is_empty() && deletes.is_empty() {
            return Ok(());
        }
        let ns = self.ns.clone();
        let ttl_ms = self.ttl_ms;
        self.with_conn(|conn, _| {
            let index = ns.index_key();
            let mut pipe = redis::pipe();
            // MULTI/EXEC: the batch lands whole or (connection lost before EXEC) not at all.
            pipe.atomic();
            for (key, value) in puts {
                pipe.cmd("SET")
                    .arg(ns.call_key(key))
                    .arg(value)
                    .arg("PX")
                    .arg(ttl_ms)
                    .ignore();
            }
            if !puts.is_empty() {
                let keys: Vec<&str> = puts.iter().map(|(k, _)| k.as_str()).collect();
                pipe.cmd("SADD").arg(&index).arg(keys).ignore();
            }
            if !deletes.is_empty() {
                let names: Vec<String> = deletes.iter().map(|k| ns.call_key(k)).collect();
                pipe.cmd("DEL").arg(names).ignore();
                pipe.cmd("SREM").arg(&index).arg(deletes).ignore();
            }
            pipe.cmd("PEXPIRE").arg(&index).arg(ttl_ms).ignore();
            pipe.query::<()>(conn)
        })
    }

    fn load(&mut self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let ns = self.ns.clone();
        self.with_conn(|conn, skipped| load_ns(conn, &ns, skipped))
    }

    fn refresh(&mut self) -> Result<(), StoreError> {
        let ns = self.ns.clone();
        let ttl_ms = self.ttl_ms;
        self.with_conn(|conn, skipped| {
            let keys = members(conn, &ns, skipped)?;
            let mut gone = Vec::new();
            for chunk in keys.chunks(CHUNK) {
                let mut pipe = redis::pipe();
                for key in chunk {
                    pipe.cmd("PEXPIRE").arg(ns.call_key(key)).arg(ttl_ms);
                }
                let alive: Vec<bool> = pipe.query(conn)?;
                gone.extend(
                    chunk
                        .iter()
                        .zip(alive)
                        .filter(|(_, a)| !a)
                        .map(|(k, _)| k.clone()),
                );
            }
            let mut pipe = redis::pipe();
            for chunk in gone.chunks(CHUNK) {
                pipe.cmd("SREM").arg(ns.index_key()).arg(chunk).ignore();
            }
            pipe.cmd("PEXPIRE").arg(ns.index_key()).arg(ttl_ms).ignore();
            pipe.query::<()>(conn)
        })
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        self.with_conn(|conn, _| redis::cmd("PING").query::<()>(conn))
    }

    fn backend(&self) -> &'static str {
        "valkey"
    }
}
