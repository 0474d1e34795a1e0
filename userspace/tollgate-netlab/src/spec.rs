//! The lab's names and addresses, with defaults (10.201.1.0/24 outside,
//! 10.201.2.0/24 inside) and a per-test prefix so concurrent tests never share a namespace.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

pub use tollgate_common::Side;

/// One /N subnet between the relay and a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    /// The relay's address on it.
    pub relay: Ipv4Addr,
    /// The peer's (gateway's or internal endpoint's) address on it.
    pub peer: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

impl Subnet {
    pub(crate) fn relay_cidr(&self) -> String {
        format!("{}/{}", self.relay, self.prefix)
    }
    pub(crate) fn peer_cidr(&self) -> String {
        format!("{}/{}", self.peer, self.prefix)
    }
}

/// Names and addresses of one lab instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    /// Namespace of the simulated media gateway.
    pub gw_ns: String,
    /// Namespace that runs Tollgate.
    pub relay_ns: String,
    /// Namespace of the simulated internal endpoint.
    pub int_ns: String,
    /// The gateway's interface (in `gw_ns`).
    pub gw_if: String,
    /// The relay's external interface (in `relay_ns`).
    pub ext_if: String,
    /// The relay's internal interface (in `relay_ns`).
    pub int_if: String,
    /// The internal endpoint's interface (in `int_ns`).
    pub int_peer_if: String,
    /// Gateway-side subnet.
    pub ext_net: Subnet,
    /// Internal-side subnet.
    pub int_net: Subnet,
    /// Queues each veth is created with (the upper bound for `set_channels`).
    pub queues: u32,
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec::named("gw", "relay", "int")
    }
}

impl LabSpec {
    /// A lab with the given namespace names and the default interfaces and addresses.
    pub fn named(gw: &str, relay: &str, int: &str) -> Self {
        LabSpec {
            gw_ns: gw.to_owned(),
            relay_ns: relay.to_owned(),
            int_ns: int.to_owned(),
            gw_if: "veth-gw".to_owned(),
            ext_if: "ext0".to_owned(),
            int_if: "int0".to_owned(),
            int_peer_if: "veth-int".to_owned(),
            ext_net: Subnet {
                relay: Ipv4Addr::new(10, 201, 1, 1),
                peer: Ipv4Addr::new(10, 201, 1, 2),
                prefix: 24,
            },
            int_net: Subnet {
                relay: Ipv4Addr::new(10, 201, 2, 1),
                peer: Ipv4Addr::new(10, 201, 2, 2),
                prefix: 24,
            },
            queues: 4,
        }
    }

    /// A lab whose namespaces are `<prefix>-gw`, `<prefix>-relay`, `<prefix>-int`.
    pub fn with_prefix(prefix: &str) -> Self {
        LabSpec::named(
            &format!("{prefix}-gw"),
            &format!("{prefix}-relay"),
            &format!("{prefix}-int"),
        )
    }

    /// A lab with names unique to this process and call, for tests that run concurrently.
    pub fn unique(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        LabSpec::with_prefix(&format!("tgt{}{tag}{n}", std::process::id()))
    }

    /// The three namespace names.
    pub fn namespaces(&self) -> [&str; 3] {
        [&self.gw_ns, &self.relay_ns, &self.int_ns]
    }

    /// The peer namespace and interface on `side`.
    pub fn peer(&self, side: Side) -> (&str, &str) {
        match side {
            Side::Ext => (&self.gw_ns, &self.gw_if),
            Side::Int => (&self.int_ns, &self.int_peer_if),
        }
    }

    /// The relay's interface on `side`, and its address.
    pub fn relay_if(&self, side: Side) -> (&str, Ipv4Addr) {
        match side {
            Side::Ext => (&self.ext_if, self.ext_net.relay),
            Side::Int => (&self.int_if, self.int_net.relay),
        }
    }

    /// The subnet on `side`.
    pub fn net(&self, side: Side) -> &Subnet {
        match side {
            Side::Ext => &self.ext_net,
            Side::Int => &self.int_net,
        }
    }
}
