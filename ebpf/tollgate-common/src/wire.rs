//! Frame constants both planes parse by: Ethernet, 802.1Q/802.1ad, IP protocol numbers and
//! header lengths. The XDP program and the relay's frame parser read the same fields with the
//! same numbers from here.

/// A MAC address.
pub type Mac = [u8; 6];

/// Ethernet header length without a VLAN tag.
pub const ETH_HLEN: usize = 14;
/// Length of one 802.1Q/802.1ad tag.
pub const VLAN_HLEN: usize = 4;
/// IPv4 header length without options.
pub const IPV4_HLEN: usize = 20;
/// IPv6 fixed header length.
pub const IPV6_HLEN: usize = 40;
/// UDP header length.
pub const UDP_HLEN: usize = 8;

/// Ethertype of IPv4.
pub const ETH_P_IPV4: u16 = 0x0800;
/// Ethertype of IPv6.
pub const ETH_P_IPV6: u16 = 0x86DD;
/// Ethertype of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// Ethertype of an 802.1Q VLAN tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// Ethertype of an 802.1ad (QinQ) service tag.
pub const ETH_P_8021AD: u16 = 0x88A8;

/// IPv6 hop-by-hop options (next header 0).
pub const IPPROTO_HOPOPTS: u8 = 0;
/// ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// TCP.
pub const IPPROTO_TCP: u8 = 6;
/// UDP.
pub const IPPROTO_UDP: u8 = 17;
/// ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;
