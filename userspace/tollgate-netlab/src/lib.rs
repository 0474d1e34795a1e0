//! The lab: three network namespaces joined by two veth pairs.
//!
//! ```text
//!  [gw] veth-gw ──── ext0 [relay] int0 ──── veth-int [int]
//!   10.201.1.2/24  10.201.1.1/24   10.201.2.1/24   10.201.2.2/24
//! ```
//!
//! `gw` plays the PSTN media gateway, `relay` runs Tollgate with one interface per side, and
//! `int` plays the internal proxy or phone. The same code serves `cargo xtask lab up|down|status`,
//! the demo and the privileged tests; tests hold a [`LabGuard`] that removes the namespaces
//! even when the test panics.
//!
//! Everything is done with iproute2 (`ip`) and `ethtool`, so what a test builds can be inspected
//! and reproduced by hand.

pub mod ha;
mod netns;
mod spec;

pub use netns::{in_netns, is_root, require_root, spawn_in_netns};
pub use spec::{LabSpec, Side, Subnet};

use std::process::Command;

/// What went wrong while building, inspecting or removing the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command could not be started at all (typically: the tool is not installed).
    #[error("could not run `{cmd}`: {source} (is iproute2/ethtool installed? `cargo xtask setup`)")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why it failed to start.
        source: std::io::Error,
    },
    /// A command ran and failed.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Entering a namespace failed.
    #[error("cannot enter network namespace {ns}: {source}")]
    Netns {
        /// The namespace name.
        ns: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The thread running a closure inside a namespace panicked.
    #[error("the task running inside namespace {0} panicked")]
    Panicked(String),
}

/// Runs a command and returns its stdout, or a [`LabError`] carrying its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, LabError> {
    let cmd = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| LabError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String, LabError> {
    run("ip", args)
}

/// One line of what `up` did or found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The piece was created now.
    Created(String),
    /// The piece was already there.
    Present(String),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Created(s) => write!(f, "created {s}"),
            Step::Present(s) => write!(f, "present {s}"),
        }
    }
}

/// Lists the network namespaces that exist.
pub fn namespaces() -> Result<Vec<String>, LabError> {
    let out = ip(&["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

fn link_exists(ns: &str, ifname: &str) -> bool {
    ip(&["-n", ns, "link", "show", "dev", ifname]).is_ok()
}

fn has_addr(ns: &str, ifname: &str, cidr: &str) -> Result<bool, LabError> {
    let out = ip(&["-n", ns, "-o", "addr", "show", "dev", ifname])?;
    Ok(out.split_whitespace().any(|w| w == cidr))
}

impl LabSpec {
    /// Brings the lab up. Idempotent: pieces already present are left alone and reported as such.
    pub fn up(&self) -> Result<Vec<Step>, LabError> {
        let mut steps = Vec::new();
        let existing = namespaces()?;
        for ns in self.namespaces() {
            if existing.iter().any(|e| e == ns) {
                steps.push(Step::Present(format!("netns {ns}")));
            } else {
                ip(&["netns", "add", ns])?;
                steps.push(Step::Created(format!("netns {ns}")));
            }
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        for side in [Side::Ext, Side::Int] {
            let (peer_ns, peer_if) = self.peer(side);
            let (relay_if, _) = self.relay_if(side);
            let q = self.queues.to_string();
            if link_exists(&self.relay_ns, relay_if) && link_exists(peer_ns, peer_if) {
                steps.push(Step::Present(format!(
                    "veth {peer_ns}/{peer_if} <-> {}/{relay_if}",
                    self.relay_ns
                )));
            } else {
                // A half-built pair (interrupted earlier run): remove what is left and rebuild.
                let _ = ip(&["-n", &self.relay_ns, "link", "del", relay_if]);
                let _ = ip(&["-n", peer_ns, "link", "del", peer_if]);
                ip(&[
                    "link",
                    "add",
                    peer_if,
                    "netns",
                    peer_ns,
                    "numtxqueues",
                    &q,
                    "numrxqueues",
                    &q,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    relay_if,
                    "netns",
                    &self.relay_ns,
                    "numtxqueues",
                    &q,
                    "numrxqueues",
                    &q,
                ])?;
                steps.push(Step::Created(format!(
                    "veth {peer_ns}/{peer_if} <-> {}/{relay_if}",
                    self.relay_ns
                )));
            }
            let net = self.net(side);
            for (ns, ifname, addr) in [
                (peer_ns, peer_if, net.peer_cidr()),
                (self.relay_ns.as_str(), relay_if, net.relay_cidr()),
            ] {
                if has_addr(ns, ifname, &addr)? {
                    steps.push(Step::Present(format!("address {addr} on {ns}/{ifname}")));
                } else {
                    ip(&["-n", ns, "addr", "add", &addr, "dev", ifname])?;
                    steps.push(Step::Created(format!("address {addr} on {ns}/{ifname}")));
                }
                ip(&["-n", ns, "link", "set", ifname, "up"])?;
                // veth hands out CHECKSUM_PARTIAL skbs; with offload off every frame carries its
                // real UDP checksum, as frames from a physical NIC would when they reach XDP.
                run(
                    "ip",
                    &["netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off"],
                )?;
            }
        }
        Ok(steps)
    }

    /// Removes the lab. Removing a namespace removes the veth ends inside it.
    /// Returns the namespaces that were removed.
    pub fn down(&self) -> Result<Vec<String>, LabError> {
        let existing = namespaces()?;
        let mut removed = Vec::new();
        for ns in self.namespaces() {
            if existing.iter().any(|e| e == ns) {
                ip(&["netns", "del", ns])?;
                removed.push(ns.to_owned());
            }
        }
        Ok(removed)
    }

    /// A human-readable report of what exists.
    pub fn status(&self) -> Result<String, LabError> {
        let existing = namespaces()?;
        let mut out = String::new();
        for ns in self.namespaces() {
            if !existing.iter().any(|e| e == ns) {
                out.push_str(&format!("{ns}: absent\n"));
                continue;
            }
            out.push_str(&format!("{ns}:\n"));
            let addrs = ip(&["-n", ns, "-br", "addr", "show"])?;
            for l in addrs.lines() {
                out.push_str(&format!("  {l}\n"));
            }
        }
        Ok(out)
    }

    /// Whether all three namespaces exist.
    pub fn is_up(&self) -> Result<bool, LabError> {
        let existing = namespaces()?;
        Ok(self
            .namespaces()
            .iter()
            .all(|ns| existing.iter().any(|e| e == ns)))
    }

    /// Sets the number of combined channels on both relay interfaces and on their peers (veth
    /// must have been created with at least that many queues, see [`LabSpec::queues`]).
    pub fn set_channels(&self, channels: u32) -> Result<(), LabError> {
        let n = channels.to_string();
        for side in [Side::Ext, Side::Int] {
            let (peer_ns, peer_if) = self.peer(side);
            let (relay_if, _) = self.relay_if(side);
            for (ns, ifname) in [(peer_ns, peer_if), (self.relay_ns.as_str(), relay_if)] {
                run(
                    "ip",
                    &[
                        "netns", "exec", ns, "ethtool", "-L", ifname, "rx", &n, "tx", &n,
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// Brings the lab up and returns a guard that takes it down when dropped (also on panic).
    pub fn up_guarded(self) -> Result<LabGuard, LabError> {
        // Start from nothing: a leftover lab of the same name from a crashed run is replaced.
        self.down()?;
        let guard = LabGuard { spec: self };
        guard.spec.up()?;
        Ok(guard)
    }
}

/// Removes the lab's namespaces when dropped, including during a panic unwind.
#[derive(Debug)]
pub struct LabGuard {
    spec: LabSpec,
}

impl LabGuard {
    /// The lab this guard owns.
    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }
}

impl std::ops::Deref for LabGuard {
    type Target = LabSpec;
    fn deref(&self) -> &LabSpec {
        &self.spec
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Err(e) = self.spec.down() {
            eprintln!("warning: could not remove lab {}: {e}", self.spec.relay_ns);
        }
    }
}
