//! The binary interface between the XDP steering program and userspace.
//!
//! Every type here is `#[repr(C)]`, has explicit padding fields and no `bool`, so that the
//! layout seen by the eBPF verifier, by the kernel's map code and by userspace is the same
//! byte for byte. Changing a type here changes the ABI: bump [`ABI_VERSION`].
//!
//! Addresses are 16 bytes: IPv6 as is, IPv4 as an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`).
//! Ports are stored in network byte order (`*_be`), exactly as they appear in the UDP header,
//! so the XDP program compares them without swapping.
#![no_std]

/// Bumped whenever a type in this crate changes layout.
pub const ABI_VERSION: u32 = 2;

/// Name of the flow map (`HashMap<FlowKey, FlowEntry>`) in the XDP object.
pub const FLOWS_MAP: &str = "FLOWS";
/// Name of the AF_XDP socket map (`XskMap`, indexed by rx queue) in the XDP object.
pub const XSKS_MAP: &str = "XSKS";
/// Name of the per-CPU counter array in the XDP object.
pub const COUNTERS_MAP: &str = "COUNTERS";
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
    /// Number of slots.
    pub const COUNT: u32 = 10;
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, repr(C), every bit pattern valid, explicit padding.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowEntry {}
}

/// Layout checks: these sizes are the ABI.
const _: () = {
    assert!(core::mem::size_of::<FlowKey>() == 20);
    assert!(core::mem::size_of::<FlowEntry>() == 40);
};
