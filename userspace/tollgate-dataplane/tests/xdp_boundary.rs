//! The XDP program's boundary decisions, checked with BPF_PROG_TEST_RUN on hand-built frames:
//! the gateway NIC passes only ARP, ND, and what is addressed to its own address on an open
//! port (SIP SYNs, replies to the ephemeral range, relay UDP, ICMP errors) and drops the rest by
//! reason; the internal NIC drops only what is addressed to the gateway side; off passes all.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use tollgate_common::counter;
use tollgate_dataplane::boundary::{BoundaryMode, SidePolicy};
use tollgate_dataplane::xdp::{XdpProgram, flow_key};
use tollgate_netlab::require_root;
use tollgate_relay::frame::{EgressHeader, build};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

const EXT: &str = "10.201.1.1";
const INT: &str = "10.201.2.1";
const GW: &str = "10.201.1.2";
const EXT6: &str = "fd00:201:1::1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn eth(ethertype: u16) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// Ethernet + IPv4 (no options) + `l4`.
fn ipv4(src: &str, dst: &str, proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (ip(src), ip(dst)) else {
        unreachable!("IPv4 addresses")
    };
    let mut f = eth(0x0800);
    let total = (20 + l4.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1]);
    f.extend_from_slice(&frag.to_be_bytes());
    f.extend_from_slice(&[64, proto, 0, 0]);
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&d.octets());
    f.extend_from_slice(l4);
    f
}

/// Ethernet + IPv6 + `l4` with next header `next`.
fn ipv6(src: &str, dst: &str, next: u8, l4: &[u8]) -> Vec<u8> {
    let s: Ipv6Addr = src.parse().unwrap();
    let d: Ipv6Addr = dst.parse().unwrap();
    let mut f = eth(0x86DD);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    f.extend_from_slice(&[next, 255]);
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&d.octets());
    f.extend_from_slice(l4);
    f
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t
}

fn icmp(ty: u8) -> Vec<u8> {
    vec![ty, 0, 0, 0, 0, 0, 0, 0]
}

fn udp(src: &str, dst: &str) -> Vec<u8> {
    let h = EgressHeader {
        src_mac: [2, 0, 0, 0, 0, 2],
        dst_mac: [2, 0, 0, 0, 0, 1],
        vlan: None,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
    };
    build(&h, &[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9, 9, 9], 0)
}

/// An Ethernet/IPv4 ARP request from the gateway for `target`.
fn arp_request(target: &str) -> Vec<u8> {
    let IpAddr::V4(t) = ip(target) else {
        unreachable!("IPv4 address")
    };
    let IpAddr::V4(s) = ip(GW) else {
        unreachable!("IPv4 address")
    };
    let mut f = eth(0x0806);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 2]);
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&t.octets());
    f
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fn gateway_policy() -> SidePolicy {
    SidePolicy {
        mode: BoundaryMode::Gateway,
        own: vec![ip(EXT), ip(EXT6)],
        other: vec![ip(INT)],
        tcp_ports: vec![5060, 5061],
        udp_ports: [30000, 31999],
        tcp_reply_ports: [32768, 60999],
    }
}

fn loaded(policy: Option<&SidePolicy>) -> XdpProgram {
    let mut p = XdpProgram::load().expect("load XDP program (verifier)");
    if let Some(policy) = policy {
        p.set_boundary(&policy.to_abi(1).unwrap()).unwrap();
    }
    p
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn gateway_nic_passes_only_what_is_open() {
    require_root("gateway_nic_passes_only_what_is_open");
    let p = loaded(Some(&gateway_policy()));
    assert_eq!(p.boundary().unwrap().own_count, 2);
    let cases: [(&str, Vec<u8>, u32, Option<u32>); 27] = [
        // SIP listeners on the own address: any segment.
        (
            "SYN to SIP/TCP",
            ipv4(GW, EXT, 6, 0, &tcp(40000, 5060, SYN)),
            XDP_PASS,
            None,
        ),
        (
            "SYN to SIP/TLS",
            ipv4(GW, EXT, 6, 0, &tcp(40000, 5061, SYN)),
            XDP_PASS,
            None,
        ),
        (
            "ACK to SIP",
            ipv4(GW, EXT, 6, 0, &tcp(40000, 5060, ACK)),
            XDP_PASS,
            None,
        ),
        // Replies on our outbound connections: SYN-ACK and segments to the ephemeral range.
        (
            "SYN-ACK to ephemeral",
            ipv4(GW, EXT, 6, 0, &tcp(5060, 40000, SYN | ACK)),
            XDP_PASS,
            None,
        ),
        (
            "ACK to ephemeral",
            ipv4(GW, EXT, 6, 0, &tcp(5060, 40000, ACK)),
            XDP_PASS,
            None,
        ),
        // New connections elsewhere on the own address.
        (
            "SYN to ssh",
            ipv4(GW, EXT, 6, 0, &tcp(40000, 22, SYN)),
            XDP_DROP,
            Some(counter::BOUNDARY_PORT),
        ),
        (
            "SYN to ephemeral",
            ipv4(GW, EXT, 6, 0, &tcp(40000, 40001, SYN)),
            XDP_DROP,
            Some(counter::BOUNDARY_PORT),
        ),
        (
            "ACK to ssh",
            ipv4(GW, EXT, 6, 0, &tcp(40000, 22, ACK)),
            XDP_DROP,
            Some(counter::BOUNDARY_PORT),
        ),
        // The internal address, whatever the port or protocol.
        (
            "SYN to int mTLS",
            ipv4(GW, INT, 6, 0, &tcp(40000, 5061, SYN)),
            XDP_DROP,
            Some(counter::BOUNDARY_OTHER_SIDE),
        ),
        (
            "SYN to int metrics",
            ipv4(GW, INT, 6, 0, &tcp(40000, 9100, SYN)),
            XDP_DROP,
            Some(counter::BOUNDARY_OTHER_SIDE),
        ),
        (
            "UDP to int relay",
            udp("10.201.1.2:40000", "10.201.2.1:32000"),
            XDP_DROP,
            Some(counter::BOUNDARY_OTHER_SIDE),
        ),
        (
            "ping to int",
            ipv4(GW, INT, 1, 0, &icmp(8)),
            XDP_DROP,
            Some(counter::BOUNDARY_OTHER_SIDE),
        ),
        // UDP on the own address: relay range only.
        (
            "UDP to relay range",
            udp("10.201.1.2:40000", "10.201.1.1:30002"),
            XDP_PASS,
            None,
        ),
        (
            "UDP below the range",
            udp("10.201.1.2:40000", "10.201.1.1:5060"),
            XDP_DROP,
            Some(counter::BOUNDARY_PORT),
        ),
        (
            "UDP above the range",
            udp("10.201.1.2:40000", "10.201.1.1:32000"),
            XDP_DROP,
            Some(counter::BOUNDARY_PORT),
        ),
        // ICMP: errors pass, the rest does not.
        (
            "ICMP unreachable",
            ipv4(GW, EXT, 1, 0, &icmp(3)),
            XDP_PASS,
            None,
        ),
        (
            "ICMP time exceeded",
            ipv4(GW, EXT, 1, 0, &icmp(11)),
            XDP_PASS,
            None,
        ),
        (
            "ping",
            ipv4(GW, EXT, 1, 0, &icmp(8)),
            XDP_DROP,
            Some(counter::BOUNDARY_PROTO),
        ),
        (
            "GRE",
            ipv4(GW, EXT, 47, 0, &[0; 8]),
            XDP_DROP,
            Some(counter::BOUNDARY_PROTO),
        ),
        // Neither side's address.
        (
            "to another host",
            ipv4(GW, "10.201.1.7", 6, 0, &tcp(1, 5060, SYN)),
            XDP_DROP,
            Some(counter::BOUNDARY_NOT_OURS),
        ),
        (
            "broadcast UDP",
            udp("10.201.1.2:68", "255.255.255.255:67"),
            XDP_DROP,
            Some(counter::BOUNDARY_NOT_OURS),
        ),
        // A later fragment has no ports: passes to be reassembled with its (judged) first one.
        (
            "later fragment",
            ipv4(GW, EXT, 17, 100, &[0; 8]),
            XDP_PASS,
            None,
        ),
        // IPv6: ND to multicast passes, errors pass, echo and closed ports do not.
        (
            "IPv6 neighbour solicitation",
            ipv6("fe80::2", "ff02::1:ff00:1", 58, &icmp(135)),
            XDP_PASS,
            None,
        ),
        (
            "IPv6 packet too big",
            ipv6("fd00:201:1::2", EXT6, 58, &icmp(2)),
            XDP_PASS,
            None,
        ),
        (
            "IPv6 echo",
            ipv6("fd00:201:1::2", EXT6, 58, &icmp(128)),
            XDP_DROP,
            Some(counter::BOUNDARY_PROTO),
        ),
        (
            "IPv6 SYN to ssh",
            ipv6("fd00:201:1::2", EXT6, 6, &tcp(40000, 22, SYN)),
            XDP_DROP,
            Some(counter::BOUNDARY_PORT),
        ),
        (
            "IPv6 SYN to SIP",
            ipv6("fd00:201:1::2", EXT6, 6, &tcp(40000, 5060, SYN)),
            XDP_PASS,
            None,
        ),
    ];
    for (what, frame, verdict, slot) in cases {
        let before = p.counters().unwrap();
        assert_eq!(p.test_run(&frame).unwrap(), verdict, "{what}");
        let after = p.counters().unwrap();
        if let Some(slot) = slot {
            assert_eq!(after.get(slot), before.get(slot) + 1, "{what}: counted");
        }
    }
    // Non-IP: ARP passes, except for the other side's address; other ethertypes do not.
    assert_eq!(
        p.test_run(&arp_request(EXT)).unwrap(),
        XDP_PASS,
        "ARP for us"
    );
    let before = p.counters().unwrap();
    assert_eq!(
        p.test_run(&arp_request(INT)).unwrap(),
        XDP_DROP,
        "ARP for the internal address"
    );
    assert_eq!(
        p.counters().unwrap().get(counter::BOUNDARY_OTHER_SIDE),
        before.get(counter::BOUNDARY_OTHER_SIDE) + 1
    );
    let mut lldp = eth(0x88cc);
    lldp.extend_from_slice(&[0; 28]);
    assert_eq!(p.test_run(&lldp).unwrap(), XDP_DROP, "LLDP");
    // One 802.1Q tag is looked through: the same rules apply to the inner packet.
    let tagged = |f: Vec<u8>| {
        let mut t = f[..12].to_vec();
        t.extend_from_slice(&[0x81, 0x00, 0x00, 100]);
        t.extend_from_slice(&f[12..]);
        t
    };
    assert_eq!(
        p.test_run(&tagged(ipv4(GW, INT, 6, 0, &tcp(40000, 5061, SYN))))
            .unwrap(),
        XDP_DROP,
        "tagged SYN to the internal address"
    );
    assert_eq!(
        p.test_run(&tagged(ipv4(GW, EXT, 6, 0, &tcp(40000, 5060, SYN))))
            .unwrap(),
        XDP_PASS,
        "tagged SYN to SIP"
    );
    // A first UDP fragment is judged by its ports like a whole datagram.
    let mut first = udp("10.201.1.2:40000", "10.201.1.1:22");
    first[20] |= 0x20; // more fragments
    assert_eq!(
        p.test_run(&first).unwrap(),
        XDP_DROP,
        "first fragment, closed port"
    );
    // A truncated TCP header on the own address is malformed, not passed.
    let short = ipv4(GW, EXT, 6, 0, &tcp(40000, 5060, SYN)[..8]);
    assert_eq!(p.test_run(&short).unwrap(), XDP_DROP, "truncated TCP");
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn flow_hits_skip_the_policy() {
    require_root("flow_hits_skip_the_policy");
    let mut p = loaded(Some(&gateway_policy()));
    let local: SocketAddr = "10.201.1.1:30000".parse().unwrap();
    let e = tollgate_common::FlowEntry {
        remote_addr: tollgate_dataplane::xdp::addr16(ip(GW)),
        remote_port_be: 40000u16.to_be(),
        flow_id: 1,
        ..Default::default()
    };
    p.insert_flow(flow_key(local), e).unwrap();
    let before = p.counters().unwrap();
    // A hit goes to the (absent) AF_XDP socket: dropped as no_socket, not by the boundary.
    assert_eq!(
        p.test_run(&udp("10.201.1.2:40000", "10.201.1.1:30000"))
            .unwrap(),
        XDP_DROP
    );
    let after = p.counters().unwrap();
    assert_eq!(
        after.get(counter::DROP_NO_SOCKET),
        before.get(counter::DROP_NO_SOCKET) + 1
    );
    assert_eq!(after.get(counter::PASS), before.get(counter::PASS));
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn internal_nic_drops_only_the_gateway_side() {
    require_root("internal_nic_drops_only_the_gateway_side");
    let policy = SidePolicy {
        mode: BoundaryMode::Internal,
        own: vec![ip(INT)],
        other: vec![ip(EXT)],
        tcp_ports: vec![5061],
        udp_ports: [32000, 33999],
        tcp_reply_ports: [32768, 60999],
    };
    let p = loaded(Some(&policy));
    let peer = "10.201.2.2";
    assert_eq!(
        p.test_run(&ipv4(peer, INT, 6, 0, &tcp(40000, 22, SYN)))
            .unwrap(),
        XDP_PASS,
        "management traffic on the trusted side"
    );
    assert_eq!(
        p.test_run(&ipv4(peer, INT, 1, 0, &icmp(8))).unwrap(),
        XDP_PASS
    );
    let before = p.counters().unwrap();
    assert_eq!(
        p.test_run(&ipv4(peer, EXT, 6, 0, &tcp(40000, 5060, SYN)))
            .unwrap(),
        XDP_DROP,
        "the gateway side's address is not reachable from inside"
    );
    assert_eq!(
        p.test_run(&udp("10.201.2.2:40000", "10.201.1.1:30000"))
            .unwrap(),
        XDP_DROP
    );
    assert_eq!(
        p.test_run(&arp_request(EXT)).unwrap(),
        XDP_DROP,
        "ARP for ext"
    );
    assert_eq!(
        p.test_run(&arp_request(INT)).unwrap(),
        XDP_PASS,
        "ARP for int"
    );
    let after = p.counters().unwrap();
    assert_eq!(
        after.get(counter::BOUNDARY_OTHER_SIDE),
        before.get(counter::BOUNDARY_OTHER_SIDE) + 3
    );
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn no_policy_passes_everything() {
    require_root("no_policy_passes_everything");
    let p = loaded(None);
    for f in [
        ipv4(GW, INT, 6, 0, &tcp(40000, 9100, SYN)),
        ipv4(GW, EXT, 1, 0, &icmp(8)),
        udp("10.201.1.2:40000", "10.201.2.1:32000"),
    ] {
        assert_eq!(p.test_run(&f).unwrap(), XDP_PASS);
    }
}
