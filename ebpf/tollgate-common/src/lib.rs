//! What both planes name: the binary interface between the XDP steering program and
//! userspace, the [`Side`] of Tollgate, the frame constants both parse by ([`wire`]), and
//! (feature `spec`, userspace only) the media flow specs the control plane hands to the data
//! plane ([`spec`]).
//!
//! Every type here is `#[repr(C)]`, has explicit padding fields and no `bool`, so that the
//! layout seen by the eBPF verifier, by the kernel's map code and by userspace is the same
//! byte for byte. Changing a type here changes the ABI: bump [`ABI_VERSION`].
//!
//! Addresses are 16 bytes: IPv6 as is, IPv4 as an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`).
//! Ports are stored in network byte order (`*_be`), exactly as they appear in the UDP header,
//! so the XDP program compares them without swapping.
#![no_std]

#[cfg(feature = "spec")]
extern crate std;

mod side;
#[cfg(feature = "spec")]
pub mod spec;
pub mod wire;

pub use side::Side;

/// Bumped whenever a type in this crate changes layout.
pub const ABI_VERSION: u32 = 3;

/// Name of the flow map (`HashMap<FlowKey, FlowEntry>`) in the XDP object.
pub const FLOWS_MAP: &str = "FLOWS";
/// Name of the AF_XDP socket map (`XskMap`, indexed by rx queue) in the XDP object.
pub const XSKS_MAP: &str = "XSKS";
/// Name of the per-CPU counter array in the XDP object.
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Name of the boundary policy map (`Array<BoundaryPolicy>`, one entry: each NIC loads its own
/// copy of the object, so the policy is per attachment) in the XDP object.
pub const BOUNDARY_MAP: &str = "BOUNDARY";
/// Capacity of the flow map (relay ports per NIC, RTP and RTCP counted separately).
pub const MAX_FLOWS: u32 = 262_144;
/// Capacity of the socket map: the highest rx queue index + 1 the program can redirect.
pub const MAX_QUEUES: u32 = 64;

/// Key of the flow map: the relay's own address and UDP port on this NIC.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// Local (relay) address, IPv6 or IPv4-mapped.
    pub addr: [u8; 16],
    /// Local UDP port, network byte order.
    pub port_be: u16,
    /// Explicit padding; always zero.
    pub _pad: [u8; 2],
}

/// [`FlowEntry::flags`]: the remote source may be learned once (NATed gateways), until
/// [`FlowEntry::learn_until_ns`].
pub const FLOW_F_LEARN: u16 = 1;
/// [`FlowEntry::flags`]: no remote is known yet; with [`FLOW_F_LEARN`], the first packet sets it.
pub const FLOW_F_REMOTE_UNKNOWN: u16 = 2;

/// Value of the flow map: who may send to this relay port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowEntry {
    /// Expected (or latched) remote source address.
    pub remote_addr: [u8; 16],
    /// Expected remote source port, network byte order.
    pub remote_port_be: u16,
    /// `FLOW_F_*` bits.
    pub flags: u16,
    /// Control-plane flow identifier (for diagnostics).
    pub flow_id: u32,
    /// While `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) is below this, a source different from
    /// the expected one is learned once, if [`FLOW_F_LEARN`] is set.
    pub learn_until_ns: u64,
    /// Packets dropped because their source did not match (approximate under concurrent
    /// CPUs; the per-CPU `DROP_SOURCE` counter is exact).
    pub src_mismatch: u64,
}

/// [`BoundaryPolicy::mode`]: no boundary; everything that is not a flow hit goes to the kernel.
pub const BOUNDARY_OFF: u32 = 0;
/// [`BoundaryPolicy::mode`] of the gateway (untrusted) NIC: the kernel gets only what is
/// addressed to one of [`BoundaryPolicy::own`] on a configured port (TCP SYNs only to
/// [`BoundaryPolicy::tcp_ports_be`], other TCP segments also to the ephemeral range, UDP to the
/// relay range), ICMP/ICMPv6 errors to an own address, ARP (except for an address in
/// [`BoundaryPolicy::other`]), and IPv6 neighbour discovery and MLD to any address. Everything
/// else is dropped and counted by reason.
pub const BOUNDARY_GATEWAY: u32 = 1;
/// [`BoundaryPolicy::mode`] of the internal (trusted) NIC: only what is addressed to one of
/// [`BoundaryPolicy::other`] (the gateway side's addresses), ARP included, is dropped; the rest
/// passes (the trusted side may carry management traffic).
pub const BOUNDARY_INTERNAL: u32 = 2;
/// Addresses per list in [`BoundaryPolicy`].
pub const BOUNDARY_ADDRS: usize = 4;
/// TCP listening ports in [`BoundaryPolicy`].
pub const BOUNDARY_TCP_PORTS: usize = 4;

/// What a NIC passes to the kernel when a frame is not a flow hit (the single entry of
/// [`BOUNDARY_MAP`]). Addresses as in [`FlowKey`]; unused slots are beyond the counts.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BoundaryPolicy {
    /// `BOUNDARY_*`.
    pub mode: u32,
    /// Number of valid entries in [`BoundaryPolicy::own`].
    pub own_count: u32,
    /// Number of valid entries in [`BoundaryPolicy::other`].
    pub other_count: u32,
    /// Interface index the policy was written for (diagnostics; the program does not read it).
    pub ifindex: u32,
    /// This side's own addresses.
    pub own: [[u8; 16]; BOUNDARY_ADDRS],
    /// Addresses of the other side (and of other local services, e.g. metrics): always dropped.
    pub other: [[u8; 16]; BOUNDARY_ADDRS],
    /// TCP listening ports on the own addresses, network byte order; 0 = unused.
    pub tcp_ports_be: [u16; BOUNDARY_TCP_PORTS],
    /// Relay UDP port range, host byte order, inclusive.
    pub udp_first: u16,
    /// See `udp_first`.
    pub udp_last: u16,
    /// Range (host order, inclusive) where TCP segments other than a connection request
    /// (SYN without ACK) pass: the kernel's ephemeral ports, which outbound connections use.
    pub tcp_reply_first: u16,
    /// See `tcp_reply_first`.
    pub tcp_reply_last: u16,
}

/// Slots of the per-CPU counter array [`COUNTERS_MAP`].
pub mod counter {
    /// Every frame the program saw.
    pub const RX: u32 = 0;
    /// IPv4 UDP frames.
    pub const UDP4: u32 = 1;
    /// IPv6 UDP frames.
    pub const UDP6: u32 = 2;
    /// Frames handed to the kernel stack (not a relay port).
    pub const PASS: u32 = 3;
    /// Frames too short for the headers they claim.
    pub const DROP_MALFORMED: u32 = 4;
    /// Frames to a relay port from the wrong source (RTP Bleed / injection defence).
    pub const DROP_SOURCE: u32 = 5;
    /// Frames to a relay port redirected to an AF_XDP socket.
    pub const REDIRECT: u32 = 6;
    /// Frames to a relay port whose rx queue has no AF_XDP socket (dropped).
    pub const DROP_NO_SOCKET: u32 = 7;
    /// Sources learned (NAT latching).
    pub const LEARNED: u32 = 8;
    /// IP fragments to a relay port (dropped: RTP is never fragmented legitimately).
    pub const DROP_FRAGMENT: u32 = 9;
    /// Boundary: addressed to the other side's address (or another local service's).
    pub const BOUNDARY_OTHER_SIDE: u32 = 10;
    /// Boundary (gateway NIC): to an own address on a port that is not open to this side.
    pub const BOUNDARY_PORT: u32 = 11;
    /// Boundary (gateway NIC): a protocol, ICMP type or ethertype this side does not take.
    pub const BOUNDARY_PROTO: u32 = 12;
    /// Boundary (gateway NIC): not addressed to us (other hosts, broadcast, multicast).
    pub const BOUNDARY_NOT_OURS: u32 = 13;
    /// Number of slots.
    pub const COUNT: u32 = 14;
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, repr(C), every bit pattern valid, explicit padding.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::BoundaryPolicy {}
}

/// Layout checks: these sizes are the ABI.
const _: () = {
    assert!(core::mem::size_of::<FlowKey>() == 20);
    assert!(core::mem::size_of::<FlowEntry>() == 40);
    assert!(core::mem::size_of::<BoundaryPolicy>() == 160);
    assert!(core::mem::align_of::<BoundaryPolicy>() == 4);
};
