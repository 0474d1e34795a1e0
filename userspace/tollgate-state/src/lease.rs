//! The service lease in Valkey: which host carries a service (its addresses and its calls)
//! right now. Fencing for active/standby pairs and N+1 pools.
//!
//! One key per service, `tollgate:{node_id}:lease`, holds the holder's name with a TTL. A host
//! takes it with `SET NX PX` only when no one holds it, and keeps it by renewing (a script that
//! extends the TTL only if the value is still its own name). So two hosts that both believe
//! they should carry the service (VRRP split brain) cannot both relay: the one without the
//! lease waits, and a holder that finds another name in the key stops at once. A holder that
//! dies stops renewing; its lease expires after the TTL and a standby takes it.

use std::time::Duration;

use redis::{Client, Connection, RedisError, Value};

use crate::{StoreError, valid_key};

/// Extends the TTL if the lease is ours, takes it if it is free; else returns the holder.
const RENEW: &str = "local v = redis.call('GET', KEYS[1]) \
    if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end \
    if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end \
    return v";

/// Deletes the lease only if it is ours.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('DEL', KEYS[1]) end return 0";

/// Who holds a service's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// This host.
    Held,
    /// Another host (its name).
    HeldBy(String),
}

/// A service lease held (or wanted) by one host.
pub struct Lease {
    url: String,
    client: Client,
    conn: Option<Connection>,
    key: String,
    holder: String,
    ttl_ms: u64,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.key)
            .field("holder", &self.holder)
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// The lease of service `node_id` for host `holder`, in the Valkey at `url`, with
    /// time-to-live `ttl`. Does not connect yet.
    pub fn new(url: &str, node_id: &str, holder: &str, ttl: Duration) -> Result<Lease, StoreError> {
        for (what, v) in [("node id", node_id), ("lease holder", holder)] {
            if !valid_key(v) {
                return Err(StoreError::InvalidKey {
                    what,
                    value: v.to_owned(),
                });
            }
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        if ttl_ms < 30 {
            return Err(StoreError::Config(
                "lease TTL must be at least 30 ms".into(),
            ));
        }
        let client = Client::open(url).map_err(|source| StoreError::Valkey {
            url: url.to_owned(),
            source,
        })?;
        Ok(Lease {
            url: url.to_owned(),
            client,
            conn: None,
            key: format!("tollgate:{node_id}:lease"),
            holder: holder.to_owned(),
            ttl_ms,
        })
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Takes the lease if it is free (or already ours, extending it); else says who holds it.
    pub fn acquire(&mut self) -> Result<LeaseState, StoreError> {
        self.renew()
    }

    /// Extends the lease if it is ours (or takes it if it lapsed and no one took it since);
    /// else says who holds it.
    pub fn renew(&mut self) -> Result<LeaseState, StoreError> {
        let (key, holder, ttl) = (self.key.clone(), self.holder.clone(), self.ttl_ms);
        let v: Value = self.with_conn(|c| {
            redis::cmd("EVAL")
                .arg(RENEW)
                .arg(1)
                .arg(&key)
                .arg(&holder)
                .arg(ttl)
                .query(c)
        })?;
        Ok(match v {
            Value::Int(1) => LeaseState::Held,
            Value::BulkString(b) => LeaseState::HeldBy(String::from_utf8_lossy(&b).into_owned()),
            Value::SimpleString(s) => LeaseState::HeldBy(s),
            other => LeaseState::HeldBy(format!("{other:?}")),
        })
    }

    /// Gives the lease up if it is ours (a clean stop lets a standby take over at once).
    pub fn release(&mut self) -> Result<(), StoreError> {
        let (key, holder) = (self.key.clone(), self.holder.clone());
        let _: i64 = self.with_conn(|c| {
            redis::cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg(&key)
                .arg(&holder)
                .query(c)
        })?;
        Ok(())
    }

    fn with_conn<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        // Every command must answer well within the TTL: a slow answer is an outage.
        let timeout = Duration::from_millis((self.ttl_ms / 3).max(10));
        let err = |source| StoreError::Valkey {
            url: self.url.clone(),
            source,
        };
        let c = match &mut self.conn {
            Some(c) => c,
            None => {
                let c = self
                    .client
                    .get_connection_with_timeout(timeout)
                    .map_err(err)?;
                c.set_read_timeout(Some(timeout)).map_err(err)?;
                c.set_write_timeout(Some(timeout)).map_err(err)?;
                self.conn.insert(c)
            }
        };
        match f(c) {
            Ok(v) => Ok(v),
            Err(e) => {
                self.conn = None;
                Err(StoreError::Valkey {
                    url: self.url.clone(),
                    source: e,
                })
            }
        }
    }
}
