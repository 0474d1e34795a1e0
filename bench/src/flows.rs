//! The benchmark's flow plan: relay ports, peer addresses, SSRCs and SRTP keys, all derived
//! deterministically from the flow index, so the relay process, the generator and the sink agree
//! without exchanging anything but the flow count.
//!
//! Flow `i` is one G.711 stream from the gateway to the internal side:
//! * the relay's gateway-side RTP port is `10000 + 2*(i mod PORTS_PER_IP)` on the
//!   `i / PORTS_PER_IP`-th gateway-side address (RTCP on the next port: no rtcp-mux, as PSTN
//!   gateways do), and likewise on the internal side, so each flow uses 4 eBPF map entries, 2
//!   per NIC (the worst case for map space);
//! * the gateway sends from `10.201.1.2:10000 + 2*(i mod PORTS_PER_IP)`;
//! * every flow's internal peer is the sink, `10.201.2.2:50000`, which tells flows apart by SSRC
//!   (`SSRC_BASE + i`), so one socket receives them all.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use tollgate_relay::{LegSpec, MediaFlowSpec, TransformSpec};
use tollgate_srtp::{KeyMaterial, Profile};

/// Relay ports used per address (even RTP ports 10000..63998, RTCP on the odd one above).
pub const PORTS_PER_IP: usize = 27_000;
/// First relay/gateway port.
pub const FIRST_PORT: u16 = 10_000;
/// The sink's port (every flow's internal peer).
pub const SINK_PORT: u16 = 50_000;
/// SSRC of flow 0; flow `i` uses `SSRC_BASE + i`.
pub const SSRC_BASE: u32 = 0x5000_0000;
/// The SRTP suite of the benchmark (the one every SDES peer supports).
pub const SUITE: Profile = Profile::Aes128CmHmacSha1_80;

/// Addresses of the lab (`tollgate-netlab`) and the flow count.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Flows.
    pub flows: usize,
    /// The relay's gateway-side addresses (the lab's own first, then extra ones).
    pub ext_ips: Vec<Ipv4Addr>,
    /// The relay's internal-side addresses.
    pub int_ips: Vec<Ipv4Addr>,
    /// The gateway.
    pub gw_ip: Ipv4Addr,
    /// The sink.
    pub sink: SocketAddrV4,
}

/// One flow's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Index in the plan.
    pub index: usize,
    /// The relay's gateway-side RTP address (where the gateway sends).
    pub ext_local: SocketAddrV4,
    /// The relay's internal-side RTP address (where SRTP leaves from).
    pub int_local: SocketAddrV4,
    /// The gateway's RTP address.
    pub gw: SocketAddrV4,
    /// The internal peer (the sink).
    pub sink: SocketAddrV4,
    /// The stream's SSRC.
    pub ssrc: u32,
}

fn plus1(a: SocketAddrV4) -> SocketAddrV4 {
    SocketAddrV4::new(*a.ip(), a.port() + 1)
}

impl Plan {
    /// The plan for `flows` flows in the default lab, with as many extra relay addresses
    /// (10.201.1.11.., 10.201.2.11..) as the port space needs.
    pub fn lab(flows: usize) -> Plan {
        let ips = flows.div_ceil(PORTS_PER_IP).max(1);
        let extra = |net: u8| {
            std::iter::once(Ipv4Addr::new(10, 201, net, 1))
                .chain((1..ips).map(move |k| Ipv4Addr::new(10, 201, net, 10 + k as u8)))
                .collect::<Vec<_>>()
        };
        Plan {
            flows,
            ext_ips: extra(1),
            int_ips: extra(2),
            gw_ip: Ipv4Addr::new(10, 201, 1, 2),
            sink: SocketAddrV4::new(Ipv4Addr::new(10, 201, 2, 2), SINK_PORT),
        }
    }

    /// Relay addresses beyond the lab's own (`[ext, int]`), to add before starting.
    pub fn extra_ips(&self) -> [Vec<Ipv4Addr>; 2] {
        [
            self.ext_ips.iter().skip(1).copied().collect(),
            self.int_ips.iter().skip(1).copied().collect(),
        ]
    }

    /// Flow `i`'s addresses.
    pub fn flow(&self, i: usize) -> Flow {
        let ip_ix = i / PORTS_PER_IP;
        let port = FIRST_PORT + 2 * (i % PORTS_PER_IP) as u16;
        let pick = |v: &[Ipv4Addr]| v.get(ip_ix).or(v.last()).copied().unwrap_or(self.gw_ip);
        Flow {
            index: i,
            ext_local: SocketAddrV4::new(pick(&self.ext_ips), port),
            int_local: SocketAddrV4::new(pick(&self.int_ips), port),
            gw: SocketAddrV4::new(self.gw_ip, port),
            sink: self.sink,
            ssrc: SSRC_BASE.wrapping_add(i as u32),
        }
    }

    /// All flows.
    pub fn all(&self) -> Vec<Flow> {
        (0..self.flows).map(|i| self.flow(i)).collect()
    }

    /// The key of flow `i` in direction `dir` (0: gateway to internal, 1: the reverse).
    pub fn key(i: usize, dir: u8) -> KeyMaterial {
        let mut x = (i as u64) << 1 | u64::from(dir);
        KeyMaterial::generate(SUITE, |b| {
            for c in b.chunks_mut(8) {
                x = splitmix64(x);
                let bytes = x.to_le_bytes();
                c.copy_from_slice(&bytes[..c.len()]);
            }
        })
    }

    /// Flow `i` as the data plane installs it: SRTP-protect toward the internal side,
    /// unprotect from it.
    pub fn spec(&self, i: usize) -> MediaFlowSpec {
        let f = self.flow(i);
        let leg = |local: SocketAddrV4, remote: SocketAddrV4| LegSpec {
            local_rtp: SocketAddr::V4(local),
            local_rtcp: Some(SocketAddr::V4(plus1(local))),
            remote_rtp: Some(SocketAddr::V4(remote)),
            remote_rtcp: None,
            learn_window_ns: 0,
            nic_mac: [0; 6],
            vlan: None,
            next_hop_mac: None,
        };
        MediaFlowSpec {
            id: i as u64 + 1,
            ext: leg(f.ext_local, f.gw),
            int: leg(f.int_local, f.sink),
            ext_to_int: TransformSpec::Protect(Plan::key(i, 0)),
            int_to_ext: TransformSpec::Unprotect(Plan::key(i, 1)),
            resume: [None, None],
        }
    }
}

/// A small, well-mixed deterministic sequence (for keys only; not a CSPRNG).
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn plan_is_unique_and_deterministic() {
        let p = Plan::lab(100_000);
        assert_eq!(p.ext_ips.len(), 4);
        let mut seen = HashSet::new();
        for i in 0..p.flows {
            let f = p.flow(i);
            assert!(seen.insert(f.ext_local), "ext port reused at {i}");
            assert!(seen.insert(f.int_local), "int port reused at {i}");
            assert!(f.ext_local.port() < 64_000);
        }
        assert_eq!(Plan::key(7, 0), Plan::key(7, 0));
        assert_ne!(Plan::key(7, 0), Plan::key(7, 1));
        assert_ne!(Plan::key(7, 0), Plan::key(8, 0));
        let s = p.spec(3);
        assert_eq!(s.local_ports().count(), 4);
    }
}
