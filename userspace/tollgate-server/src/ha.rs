//! Node failover: a standby that takes a service over from a failed node, and the fencing that
//! keeps two nodes from relaying the same calls.
//!
//! A *service* is one pair of addresses (gateway side and internal side) with its calls; its
//! name is `state.node_id`, so every node that can carry it reads and writes the same records
//! in Valkey. keepalived (VRRP) decides which node holds the addresses; Tollgate adds a lease
//! in Valkey (`tollgate_state::Lease`) so that a VRRP split brain cannot make two nodes relay:
//!
//! * In `ha.mode = "standby"`, `tollgate run` binds nothing and loads nothing until this host
//!   holds every configured address of the service (keepalived's notify is not needed: the
//!   addresses arriving are the trigger) **and** the service lease. Then it starts as usual:
//!   it reads the service's calls from Valkey, attaches XDP, binds, installs the flows and
//!   continues the SRTP streams.
//! * While it runs it renews the lease every third of `ha.lease_ms` and checks the addresses.
//!   If another host holds the lease, or the addresses are gone, it is *fenced*: it exits at
//!   once (no BYE; the kernel detaches its XDP program and closes its sockets) with status
//!   [`FENCED_EXIT`], and systemd starts it again into standby.
//! * If Valkey cannot be reached the node keeps relaying (a Valkey outage must not end calls)
//!   and says so; a standby cannot take the lease meanwhile, so two nodes still never relay
//!   the same service. A holder that dies stops renewing: its lease expires after
//!   `ha.lease_ms` and a standby that has the addresses takes it.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tollgate_state::{Lease, LeaseState, StoreError};

use crate::config::{Config, ConfigError};
use crate::state::StateBackend;

/// The exit status of a fenced node.
pub const FENCED_EXIT: i32 = 75;

/// How a node takes part in failover.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HaMode {
    /// A single node: start at once.
    #[default]
    Off,
    /// Wait for the service addresses and lease; stop when either is lost.
    Standby,
}

/// `[ha]`: failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaConfig {
    /// `off` or `standby`.
    #[serde(default)]
    pub mode: HaMode,
    /// This host's name in the lease (default: the host name).
    #[serde(default)]
    pub holder: Option<String>,
    /// The lease's time to live, ms: how long a dead holder keeps a standby waiting.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
}

const fn default_lease_ms() -> u64 {
    1000
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            mode: HaMode::Off,
            holder: None,
            lease_ms: default_lease_ms(),
        }
    }
}

fn invalid(key: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        problem: why.into(),
    }
}

impl HaConfig {
    /// Checks `[ha]` against the rest of the configuration.
    pub fn validate(&self, state: StateBackend) -> Result<(), ConfigError> {
        if self.mode == HaMode::Off {
            return Ok(());
        }
        if state != StateBackend::Valkey {
            return Err(invalid(
                "ha.mode",
                "standby needs state.backend = \"valkey\" (the calls and the lease are shared there)",
            ));
        }
        if !(100..=60_000).contains(&self.lease_ms) {
            return Err(invalid("ha.lease_ms", "100..=60000"));
        }
        if let Some(h) = &self.holder
            && !tollgate_state::valid_key(h)
        {
            return Err(invalid(
                "ha.holder",
                "letters, digits, '-', '_' and '.' only",
            ));
        }
        Ok(())
    }

    /// This host's name in the lease.
    pub fn holder(&self) -> String {
        self.holder.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_owned())
                .ok()
                .filter(|h| tollgate_state::valid_key(h))
                .unwrap_or_else(|| "tollgate".into())
        })
    }
}

/// The addresses that make up the service: every address the configuration binds.
pub fn service_addresses(cfg: &Config) -> Vec<IpAddr> {
    let mut v = vec![
        cfg.ext.sip_listen.ip(),
        cfg.ext.media_address,
        cfg.int.sip_listen.ip(),
        cfg.int.media_address,
    ];
    v.extend(cfg.ext.tls_listen.map(|a| a.ip()));
    v.sort();
    v.dedup();
    v
}

/// The service addresses this host does not hold.
pub fn missing_addresses(addrs: &[IpAddr]) -> Vec<IpAddr> {
    addrs
        .iter()
        .copied()
        .filter(|ip| !matches!(tollgate_dataplane::sys::device_of(*ip), Ok(Some(_))))
        .collect()
}

/// The service lease of this configuration.
pub fn lease(cfg: &Config) -> Result<Lease, StoreError> {
    Lease::new(
        cfg.state.url.as_deref().unwrap_or_default(),
        &cfg.state.node_id,
        &cfg.ha.holder(),
        Duration::from_millis(cfg.ha.lease_ms),
    )
}

/// What the standby is waiting for (logged when it changes).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Waiting {
    Addresses(Vec<IpAddr>),
    HeldBy(String),
    Store(String),
}

/// Blocks (polling every 20 ms) until this host holds the service addresses and the lease;
/// returns the lease, held.
pub async fn wait_for_service(cfg: &Config) -> Result<Lease, StoreError> {
    let mut lease = lease(cfg)?;
    let addrs = service_addresses(cfg);
    let since = Instant::now();
    tracing::info!(
        service = %cfg.state.node_id,
        holder = %cfg.ha.holder(),
        addresses = ?addrs,
        "standby: waiting for the service addresses"
    );
    let mut last: Option<Waiting> = None;
    loop {
        let missing = missing_addresses(&addrs);
        let now = if !missing.is_empty() {
            Waiting::Addresses(missing)
        } else {
            let (l, r) = tokio::task::spawn_blocking(move || {
                let r = lease.acquire();
                (lease, r)
            })
            .await
            .map_err(|e| StoreError::Config(format!("lease task: {e}")))?;
            lease = l;
            match r {
                Ok(LeaseState::Held) => {
                    tracing::info!(
                        service = %cfg.state.node_id,
                        waited_ms = since.elapsed().as_millis() as u64,
                        "standby: holding the service lease; taking the service over"
                    );
                    return Ok(lease);
                }
                Ok(LeaseState::HeldBy(h)) => Waiting::HeldBy(h),
                Err(e) => Waiting::Store(e.to_string()),
            }
        };
        if last.as_ref() != Some(&now) {
            match &now {
                Waiting::Addresses(m) => {
                    tracing::info!(missing = ?m, "standby: the service addresses are elsewhere")
                }
                Waiting::HeldBy(h) => tracing::warn!(
                    holder = %h,
                    "standby: this host has the service addresses but {h} holds the lease: not relaying"
                ),
                Waiting::Store(e) => {
                    tracing::warn!(error = %e, "standby: cannot reach Valkey for the lease")
                }
            }
            last = Some(now);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Renews the lease and watches the addresses for as long as the process runs; exits the
/// process with [`FENCED_EXIT`] when the service is no longer this host's.
pub async fn hold(cfg: Config, mut lease: Lease) {
    let addrs = service_addresses(&cfg);
    let period = Duration::from_millis((cfg.ha.lease_ms / 3).max(30));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut store_down = false;
    loop {
        tick.tick().await;
        let missing = missing_addresses(&addrs);
        if !missing.is_empty() {
            fence(&format!("the service addresses {missing:?} left this host"));
        }
        let (l, r) = match tokio::task::spawn_blocking(move || {
            let r = lease.renew();
            (lease, r)
        })
        .await
        {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "lease task failed");
                return;
            }
        };
        lease = l;
        match r {
            Ok(LeaseState::Held) => {
                if store_down {
                    tracing::info!("lease renewed again: Valkey is back");
                    store_down = false;
                }
            }
            Ok(LeaseState::HeldBy(h)) => fence(&format!("{h} holds the service lease")),
            Err(e) => {
                if !store_down {
                    tracing::warn!(error = %e, "cannot renew the service lease (Valkey unreachable): relaying on; no standby can take the lease meanwhile");
                    store_down = true;
                }
            }
        }
    }
}

fn fence(why: &str) -> ! {
    tracing::error!(
        reason = why,
        "fenced: stopping at once without BYE (another node carries the calls)"
    );
    // The process's exit detaches its XDP programs and closes its sockets: it relays nothing
    // from here on. systemd (Restart=on-failure) starts it again, into standby.
    std::process::exit(FENCED_EXIT);
}
