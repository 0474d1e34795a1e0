//! The boundary between the two NICs, enforced by the XDP program where packets arrive.
//!
//! Linux's weak host model delivers a packet for any local address arriving on any NIC, so a
//! service bound to the internal address answers from the gateway NIC too. The XDP program
//! (the one that steers media) also judges every frame that is not a flow hit against the
//! NIC's [`SidePolicy`], written into its `BOUNDARY` map before it is attached:
//!
//! * gateway NIC ([`BoundaryMode::Gateway`]): the kernel gets ARP (not for the other side's
//!   addresses), IPv6 neighbour discovery and MLD, and what is addressed to an own address: TCP to the SIP listening ports, TCP
//!   segments that are not a connection request to the ephemeral port range (replies on the
//!   connections Tollgate dials), UDP to the relay port range, ICMP/ICMPv6 errors. The rest is
//!   dropped, counted by reason ([`DROP_REASONS`]).
//! * internal NIC ([`BoundaryMode::Internal`]): what is addressed to the gateway side's
//!   addresses (ARP included) is dropped; the rest passes (the trusted side carries management traffic).
//!
//! On the socket data path the same program is attached with an empty flow map, so every
//! relay packet is a miss that the policy passes to the kernel's sockets.

use std::net::IpAddr;

use tollgate_common::{
    BOUNDARY_ADDRS, BOUNDARY_GATEWAY, BOUNDARY_INTERNAL, BOUNDARY_TCP_PORTS, BoundaryPolicy,
    counter,
};

use crate::xdp::{XdpCounters, addr16};

/// What a NIC lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundaryMode {
    /// Untrusted NIC: only own addresses on open ports (and ARP, ND, ICMP errors).
    Gateway,
    /// Trusted NIC: everything except what is addressed to the gateway side.
    Internal,
}

/// One NIC's boundary policy, as the control plane states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidePolicy {
    /// Strict (gateway) or lenient (internal).
    pub mode: BoundaryMode,
    /// This NIC's own addresses (listeners, media).
    pub own: Vec<IpAddr>,
    /// Addresses that must never be reached through this NIC (the other side's, metrics).
    pub other: Vec<IpAddr>,
    /// TCP listening ports open on the own addresses (gateway mode).
    pub tcp_ports: Vec<u16>,
    /// Relay UDP port range, inclusive (gateway mode).
    pub udp_ports: [u16; 2],
    /// Ports where TCP segments other than a SYN pass (gateway mode): the ephemeral range
    /// outbound connections leave from ([`ephemeral_ports`]).
    pub tcp_reply_ports: [u16; 2],
}

/// Why a policy cannot be written into the program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// More addresses than the ABI holds.
    #[error("boundary policy: {what} lists {n} addresses, at most {BOUNDARY_ADDRS} fit")]
    TooManyAddresses {
        /// Which list.
        what: &'static str,
        /// How many.
        n: usize,
    },
    /// More TCP ports than the ABI holds.
    #[error("boundary policy: {n} TCP listening ports, at most {BOUNDARY_TCP_PORTS} fit")]
    TooManyPorts {
        /// How many.
        n: usize,
    },
    /// A port range is empty or reversed.
    #[error("boundary policy: {what} range [{first}, {last}] is empty")]
    BadRange {
        /// Which range.
        what: &'static str,
        /// First port.
        first: u16,
        /// Last port.
        last: u16,
    },
}

fn dedup(list: &[IpAddr]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for a in list {
        if !out.contains(a) {
            out.push(*a);
        }
    }
    out
}

impl SidePolicy {
    /// The map value for this policy on interface `ifindex`.
    pub fn to_abi(&self, ifindex: u32) -> Result<BoundaryPolicy, PolicyError> {
        let own = dedup(&self.own);
        let other: Vec<IpAddr> = dedup(&self.other)
            .into_iter()
            .filter(|a| !own.contains(a))
            .collect();
        let mut ports = self.tcp_ports.clone();
        ports.sort_unstable();
        ports.dedup();
        if own.len() > BOUNDARY_ADDRS {
            return Err(PolicyError::TooManyAddresses {
                what: "own",
                n: own.len(),
            });
        }
        if other.len() > BOUNDARY_ADDRS {
            return Err(PolicyError::TooManyAddresses {
                what: "other",
                n: other.len(),
            });
        }
        if ports.len() > BOUNDARY_TCP_PORTS {
            return Err(PolicyError::TooManyPorts { n: ports.len() });
        }
        for (what, [first, last]) in [
            ("UDP relay", self.udp_ports),
            ("TCP reply", self.tcp_reply_ports),
        ] {
            if first > last {
                return Err(PolicyError::BadRange { what, first, last });
            }
        }
        let mut p = BoundaryPolicy {
            mode: match self.mode {
                BoundaryMode::Gateway => BOUNDARY_GATEWAY,
                BoundaryMode::Internal => BOUNDARY_INTERNAL,
            },
            own_count: own.len() as u32,
            other_count: other.len() as u32,
            ifindex,
            udp_first: self.udp_ports[0],
            udp_last: self.udp_ports[1],
            tcp_reply_first: self.tcp_reply_ports[0],
            tcp_reply_last: self.tcp_reply_ports[1],
            ..BoundaryPolicy::default()
        };
        for (slot, a) in p.own.iter_mut().zip(&own) {
            *slot = addr16(*a);
        }
        for (slot, a) in p.other.iter_mut().zip(&other) {
            *slot = addr16(*a);
        }
        for (slot, port) in p
            .tcp_ports_be
            .iter_mut()
            .zip(ports.iter().filter(|p| **p != 0))
        {
            *slot = port.to_be();
        }
        Ok(p)
    }
}

/// The boundary policies of both NICs, `[ext, int]`, and how to attach the program when the
/// media path itself does not (socket data path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boundary {
    /// Policies `[ext, int]`.
    pub sides: [SidePolicy; 2],
    /// The NICs `[ext, int]` the program is attached to on the socket data path (the XDP path
    /// uses the interfaces of its settings).
    pub interfaces: [String; 2],
    /// Attach mode on the socket data path (the XDP path uses its own setting).
    pub attach: crate::xdp::ModeRequest,
}

/// Boundary drop reasons with their counter slots, for metrics (`reason` label values).
/// Truncated headers are counted under the program's `drop_malformed`, as before.
pub const DROP_REASONS: [(&str, u32); 4] = [
    ("other_side", counter::BOUNDARY_OTHER_SIDE),
    ("port", counter::BOUNDARY_PORT),
    ("proto", counter::BOUNDARY_PROTO),
    ("not_ours", counter::BOUNDARY_NOT_OURS),
];

/// `(reason, count)` of the boundary drops in one NIC's counters.
pub fn drops(c: &XdpCounters) -> impl Iterator<Item = (&'static str, u64)> + '_ {
    DROP_REASONS
        .iter()
        .map(|(name, slot)| (*name, c.get(*slot)))
}

/// The kernel's ephemeral port range in the calling thread's network namespace
/// (`net.ipv4.ip_local_port_range`, which IPv6 shares): where outbound TCP connections leave
/// from. Read at start; changing the sysctl afterwards needs a restart.
pub fn ephemeral_ports() -> std::io::Result<[u16; 2]> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")?;
    let mut it = text.split_whitespace().map(str::parse::<u16>);
    match (it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b))) if a <= b => Ok([a, b]),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("ip_local_port_range reads {text:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_to_abi() {
        let p = SidePolicy {
            mode: BoundaryMode::Gateway,
            own: vec!["10.0.0.1".parse().unwrap(), "10.0.0.1".parse().unwrap()],
            other: vec!["10.0.1.1".parse().unwrap(), "10.0.0.1".parse().unwrap()],
            tcp_ports: vec![5061, 5060, 5060],
            udp_ports: [30000, 31999],
            tcp_reply_ports: [32768, 60999],
        };
        let a = p.to_abi(7).unwrap();
        assert_eq!(
            (a.mode, a.own_count, a.other_count),
            (BOUNDARY_GATEWAY, 1, 1)
        );
        assert_eq!(a.own[0], addr16("10.0.0.1".parse().unwrap()));
        assert_eq!(a.other[0], addr16("10.0.1.1".parse().unwrap()));
        assert_eq!(a.tcp_ports_be, [5060u16.to_be(), 5061u16.to_be(), 0, 0]);
        assert_eq!((a.udp_first, a.udp_last), (30000, 31999));
        let mut big = p.clone();
        big.own = (1..=5).map(|i| IpAddr::from([10, 0, 0, i])).collect();
        assert!(matches!(
            big.to_abi(1),
            Err(PolicyError::TooManyAddresses { what: "own", .. })
        ));
    }

    #[test]
    fn ephemeral_range_reads() {
        let [a, b] = ephemeral_ports().unwrap();
        assert!(a <= b && a > 0);
    }
}
