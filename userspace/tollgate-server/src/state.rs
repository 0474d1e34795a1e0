//! The call-state store in the daemon: the `[state]` configuration, loading the stored calls
//! at start, and the store writer that takes the core's [`Output::StoreCall`] and
//! [`Output::ForgetCall`] off the control plane's loop.
//!
//! The core decides what is stored and when (`tollgate_b2bua::record`); this module only moves
//! opaque records. Writes go to a writer thread (`tollgate-state`) over a channel that never
//! blocks the driver; the writer coalesces them into batches, rides out store outages (calls
//! go on and new calls still work; the metrics name how many calls are unprotected) and
//! re-writes everything when the store is back. Media workers never touch the store.
//!
//! [`Output::StoreCall`]: tollgate_b2bua::Output::StoreCall
//! [`Output::ForgetCall`]: tollgate_b2bua::Output::ForgetCall

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tollgate_state::{Backend, StoreConfig, StoreError, StoreWriter, WriterOptions, WriterStatus};

use crate::config::ConfigError;
use crate::metrics::Metrics;

/// Where calls are stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// Not stored: a restart ends every call (the default).
    #[default]
    None,
    /// A local crash-safe file (`state.path`).
    File,
    /// Valkey or Redis (`state.url`), shared between nodes.
    Valkey,
}

/// `[state]`: the call-state store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `none`, `file` or `valkey`.
    #[serde(default)]
    pub backend: StateBackend,
    /// The file (backend `file`); its directory must exist.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `redis://host:port/` or `unix:///path/to/socket` (backend `valkey`).
    #[serde(default)]
    pub url: Option<String>,
    /// This node's name: its calls' keys are namespaced by it (backend `valkey`).
    #[serde(default = "default_node_id")]
    pub node_id: String,
    /// Seconds a node's records live without refresh (the writer refreshes every third of
    /// it): a dead node's calls expire from Valkey after this.
    #[serde(default = "default_ttl_s")]
    pub ttl_s: u64,
}

fn default_node_id() -> String {
    "tollgate".into()
}

const fn default_ttl_s() -> u64 {
    60
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: StateBackend::None,
            path: None,
            url: None,
            node_id: default_node_id(),
            ttl_s: default_ttl_s(),
        }
    }
}

fn invalid(key: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        problem: why.into(),
    }
}

impl StateConfig {
    /// Checks that the backend has what it needs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.backend {
            StateBackend::None => Ok(()),
            StateBackend::File => match &self.path {
                Some(p) if !p.as_os_str().is_empty() => Ok(()),
                _ => Err(invalid("state.path", "backend = \"file\" needs a path")),
            },
            StateBackend::Valkey => {
                let Some(url) = &self.url else {
                    return Err(invalid("state.url", "backend = \"valkey\" needs a url"));
                };
                if !(url.starts_with("redis://") || url.starts_with("unix://")) {
                    return Err(invalid(
                        "state.url",
                        format!("{url:?}: use redis://host:port/ or unix:///path/to/socket"),
                    ));
                }
                if !tollgate_state::valid_key(&self.node_id) {
                    return Err(invalid(
                        "state.node_id",
                        "letters, digits, '-', '_' and '.' only",
                    ));
                }
                if self.ttl_s < 3 {
                    return Err(invalid("state.ttl_s", "at least 3 seconds"));
                }
                Ok(())
            }
        }
    }

    fn store_config(&self) -> Option<StoreConfig> {
        let backend = match self.backend {
            StateBackend::None => return None,
            StateBackend::File => Backend::File {
                path: self.path.clone().unwrap_or_default(),
            },
            StateBackend::Valkey => Backend::Valkey {
                url: self.url.clone().unwrap_or_default(),
            },
        };
        Some(StoreConfig {
            backend,
            node_id: self.node_id.clone(),
            ttl: Duration::from_secs(self.ttl_s),
        })
    }
}

/// The stored calls found at start, and the writer for the ones to come.
#[derive(Debug)]
pub struct Loaded {
    /// The writer.
    pub store: CallState,
    /// `(key, record)` of every stored call of this node.
    pub records: Vec<(String, Vec<u8>)>,
    /// How long opening and reading the store took.
    pub load_time: Duration,
}

/// Opens the configured store and reads its calls; `None` for `backend = "none"`.
pub fn open(cfg: &StateConfig) -> Result<Option<Loaded>, StoreError> {
    let Some(sc) = cfg.store_config() else {
        return Ok(None);
    };
    let t = Instant::now();
    let mut store = tollgate_state::open(&sc)?;
    let records = store.load()?;
    let load_time = t.elapsed();
    let writer = StoreWriter::spawn(store, WriterOptions::for_ttl(sc.ttl))?;
    for (k, v) in &records {
        // The writer's mirror starts with what is stored: a resync after an outage rewrites
        // these too, and the restore that follows overwrites or deletes each of them.
        writer.put(k.clone(), v.clone());
    }
    Ok(Some(Loaded {
        store: CallState { writer },
        records,
        load_time,
    }))
}

/// The driver's handle on the store writer.
#[derive(Debug, Clone)]
pub struct CallState {
    writer: StoreWriter,
}

impl CallState {
    /// Stores (overwrites) call `call`'s record.
    pub fn put(&self, call: u64, record: Vec<u8>) {
        self.writer.put(call.to_string(), record);
    }

    /// Deletes call `call`'s record.
    pub fn forget(&self, call: u64) {
        self.writer.delete(call.to_string());
    }

    /// Deletes a record by its store key (one that could not be read).
    pub fn delete_key(&self, key: &str) {
        self.writer.delete(key.to_owned());
    }

    /// Waits until everything sent so far is written (a handover), at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), StoreError> {
        self.writer.flush(timeout)
    }

    /// Stops the writer after a last write attempt.
    pub fn shutdown(&self) -> Result<(), StoreError> {
        self.writer.shutdown()
    }

    /// The writer's state.
    pub fn status(&self) -> WriterStatus {
        self.writer.status()
    }

    /// "file" or "valkey".
    pub fn backend(&self) -> &'static str {
        self.writer.backend()
    }

    /// Publishes the writer's state; logs when the store goes down or comes back.
    pub fn publish(&self, metrics: &Metrics, was_up: &mut Option<bool>) {
        let s = self.status();
        metrics.state_up.set(i64::from(s.up));
        metrics.state_unprotected.set(s.unprotected as i64);
        // One family guard at a time: a second get_or_create while one is held deadlocks.
        for (result, total) in [("ok", s.writes_ok), ("error", s.write_errors)] {
            let c = metrics
                .state_writes
                .get_or_create(&vec![("result".to_owned(), result.to_owned())]);
            c.inc_by(total.saturating_sub(c.get()));
        }
        metrics
            .state_resyncs
            .inc_by(s.resyncs.saturating_sub(metrics.state_resyncs.get()));
        match (*was_up, s.up) {
            (Some(true) | None, false) if s.write_errors > 0 => tracing::warn!(
                backend = self.backend(),
                unprotected_calls = s.unprotected,
                "call-state store unreachable: calls go on, their latest state is not stored"
            ),
            (Some(false), true) => tracing::info!(
                backend = self.backend(),
                calls = s.records,
                "call-state store back: every call re-written"
            ),
            _ => {}
        }
        *was_up = Some(s.up);
    }
}
