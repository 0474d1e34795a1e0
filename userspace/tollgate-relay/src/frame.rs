//! Ethernet / 802.1Q / IPv4 / IPv6 / UDP framing: parse a received frame, write an egress
//! header in front of a payload, and the Internet checksum.
//!
//! Parsing never panics: every offset is checked. The egress header is written *in front of*
//! the payload, in the frame's headroom, so the payload never moves and the header may grow or
//! shrink (IPv4 in, IPv6 out, VLAN tag added or removed).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub use tollgate_common::wire::{ETH_HLEN, Mac};
use tollgate_common::wire::{
    ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_UDP, IPV6_HLEN, UDP_HLEN, VLAN_HLEN,
};

/// Largest egress header: Ethernet + VLAN + IPv6 + UDP.
pub const MAX_HEADER: usize = ETH_HLEN + VLAN_HLEN + IPV6_HLEN + UDP_HLEN;

/// Why a frame was not a UDP datagram we can relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than its headers claim.
    #[error("frame truncated")]
    Truncated,
    /// Not IPv4/IPv6 UDP (or IPv6 with extension headers).
    #[error("not a UDP datagram")]
    NotUdp,
    /// An IP fragment.
    #[error("IP fragment")]
    Fragment,
    /// IP or UDP length fields disagree with the frame.
    #[error("inconsistent IP/UDP lengths")]
    BadLength,
}

/// A parsed UDP frame: addresses, ports and where the payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFrame {
    /// Ethernet source MAC.
    pub src_mac: Mac,
    /// Ethernet destination MAC.
    pub dst_mac: Mac,
    /// VLAN ID if tagged.
    pub vlan: Option<u16>,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// IPv4 TOS / IPv6 traffic class (DSCP+ECN), carried to the egress header.
    pub tos: u8,
    /// Offset of the UDP payload in the frame.
    pub payload_off: usize,
    /// Length of the UDP payload.
    pub payload_len: usize,
}

#[inline]
fn be16(b: &[u8], off: usize) -> Result<u16, FrameError> {
    match b.get(off..off + 2) {
        Some(s) => Ok(u16::from_be_bytes([s[0], s[1]])),
        None => Err(FrameError::Truncated),
    }
}

#[inline]
fn arr<const N: usize>(b: &[u8], off: usize) -> Result<[u8; N], FrameError> {
    b.get(off..off + N)
        .and_then(|s| s.try_into().ok())
        .ok_or(FrameError::Truncated)
}

/// Parses an Ethernet frame carrying a UDP datagram.
pub fn parse(frame: &[u8]) -> Result<UdpFrame, FrameError> {
    let dst_mac: Mac = arr(frame, 0)?;
    let src_mac: Mac = arr(frame, 6)?;
    let mut proto = be16(frame, 12)?;
    let mut l3 = ETH_HLEN;
    let mut vlan = None;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        vlan = Some(be16(frame, 14)? & 0x0fff);
        proto = be16(frame, 16)?;
        l3 += 4;
    }
    let (src_ip, dst_ip, tos, l4, l3_end): (IpAddr, IpAddr, u8, usize, usize) = match proto {
        ETH_P_IPV4 => {
            let h: [u8; 20] = arr(frame, l3)?;
            if h[0] >> 4 != 4 {
                return Err(FrameError::NotUdp);
            }
            let ihl = usize::from(h[0] & 0x0f) * 4;
            if ihl < 20 {
                return Err(FrameError::BadLength);
            }
            if h[9] != IPPROTO_UDP {
                return Err(FrameError::NotUdp);
            }
            if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
                return Err(FrameError::Fragment);
            }
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
            let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
            (src.into(), dst.into(), h[1], l3 + ihl, l3 + total)
        }
        ETH_P_IPV6 => {
            let h: [u8; 40] = arr(frame, l3)?;
            if h[0] >> 4 != 6 {
                return Err(FrameError::NotUdp);
            }
            if h[6] != IPPROTO_UDP {
                return Err(FrameError::NotUdp);
            }
            let tc = (h[0] << 4) | (h[1] >> 4);
            let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
            let src: [u8; 16] = arr(&h, 8)?;
            let dst: [u8; 16] = arr(&h, 24)?;
            (
                Ipv6Addr::from(src).into(),
                Ipv6Addr::from(dst).into(),
                tc,
                l3 + 40,
                l3 + 40 + plen,
            )
        }
        _ => return Err(FrameError::NotUdp),
    };
    let sport = be16(frame, l4)?;
    let dport = be16(frame, l4 + 2)?;
    let ulen = usize::from(be16(frame, l4 + 4)?);
    // Ethernet may pad short frames: trust the IP length, which must fit the frame.
    if l3_end > frame.len() || ulen < 8 || l4 + ulen != l3_end {
        return Err(FrameError::BadLength);
    }
    Ok(UdpFrame {
        src_mac,
        dst_mac,
        vlan,
        src: SocketAddr::new(src_ip, sport),
        dst: SocketAddr::new(dst_ip, dport),
        tos,
        payload_off: l4 + 8,
        payload_len: ulen - 8,
    })
}

/// Everything constant about the header of the frames sent for one relay port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EgressHeader {
    /// Our MAC on the egress NIC.
    pub src_mac: Mac,
    /// The next hop's MAC.
    pub dst_mac: Mac,
    /// VLAN tag to add, if the egress side is tagged.
    pub vlan: Option<u16>,
    /// Our address and port on the egress side.
    pub src: SocketAddr,
    /// The peer's address and port.
    pub dst: SocketAddr,
}

impl EgressHeader {
    /// Length of the header this writes.
    pub fn len(&self) -> usize {
        let ip = if self.src.is_ipv4() { 20 } else { 40 };
        ETH_HLEN + if self.vlan.is_some() { 4 } else { 0 } + ip + 8
    }

    /// Always false: a header is never empty (for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the header for a `payload_len`-byte UDP payload into `out` (exactly
    /// [`EgressHeader::len`] bytes), with `payload` for the UDP checksum. Returns `None` if
    /// `out` is too short, the families of `src` and `dst` differ, or the payload is too long.
    pub fn write(&self, out: &mut [u8], payload: &[u8], tos: u8) -> Option<usize> {
        let hlen = self.len();
        let out = out.get_mut(..hlen)?;
        let udp_len = u16::try_from(payload.len() + 8).ok()?;
        out[0..6].copy_from_slice(&self.dst_mac);
        out[6..12].copy_from_slice(&self.src_mac);
        let mut l3 = 12;
        if let Some(vid) = self.vlan {
            out[12..14].copy_from_slice(&ETH_P_8021Q.to_be_bytes());
            out[14..16].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
            l3 += 4;
        }
        let sum_payload = sum_words(payload, 0);
        let l4;
        let mut csum: u64;
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                out[l3..l3 + 2].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
                let ip = &mut out[l3 + 2..l3 + 22];
                let total = udp_len.checked_add(20)?;
                ip[0] = 0x45;
                ip[1] = tos;
                ip[2..4].copy_from_slice(&total.to_be_bytes());
                ip[4..6].copy_from_slice(&[0, 0]); // ID 0: atomic datagram (RFC 6864)
                ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
                ip[8] = 64;
                ip[9] = IPPROTO_UDP;
                ip[10..12].copy_from_slice(&[0, 0]);
                ip[12..16].copy_from_slice(&s.octets());
                ip[16..20].copy_from_slice(&d.octets());
                let c = fold(sum_words(ip, 0));
                ip[10..12].copy_from_slice(&(!c).to_be_bytes());
                csum = sum_words(&s.octets(), 0) + sum_words(&d.octets(), 0);
                l4 = l3 + 22;
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                out[l3..l3 + 2].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
                let ip = &mut out[l3 + 2..l3 + 42];
                ip[0] = 0x60 | (tos >> 4);
                ip[1] = tos << 4;
                ip[2] = 0;
                ip[3] = 0;
                ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
                ip[6] = IPPROTO_UDP;
                ip[7] = 64;
                ip[8..24].copy_from_slice(&s.octets());
                ip[24..40].copy_from_slice(&d.octets());
                csum = sum_words(&s.octets(), 0) + sum_words(&d.octets(), 0);
                l4 = l3 + 42;
            }
            _ => return None,
        }
        let udp = &mut out[l4..l4 + 8];
        udp[0..2].copy_from_slice(&self.src.port().to_be_bytes());
        udp[2..4].copy_from_slice(&self.dst.port().to_be_bytes());
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        udp[6..8].copy_from_slice(&[0, 0]);
        csum += u64::from(IPPROTO_UDP) + u64::from(udp_len);
        csum += sum_words(udp, 0) + sum_payload;
        let mut c = !fold(csum);
        if c == 0 {
            c = 0xffff; // RFC 768: a computed zero is sent as all ones.
        }
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        Some(hlen)
    }
}

/// Sums `data` as big-endian 16-bit words (odd trailing byte padded with zero) onto `acc`,
/// without folding. Eight bytes at a time; the caller folds with [`fold`].
pub fn sum_words(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // Add the two 32-bit halves: no carry is lost in 64 bits for any frame size.
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a wide one's-complement sum into 16 bits.
pub fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Whether a received frame's UDP checksum verifies (0 = "no checksum" for IPv4 counts as ok).
pub fn udp_checksum_ok(frame: &[u8], f: &UdpFrame) -> bool {
    let Some(udp) = frame.get(f.payload_off - 8..f.payload_off + f.payload_len) else {
        return false;
    };
    if f.src.is_ipv4() && udp[6] == 0 && udp[7] == 0 {
        return true;
    }
    let (s, d) = (f.src.ip(), f.dst.ip());
    let mut acc = match (s, d) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum_words(&s.octets(), sum_words(&d.octets(), 0)),
        (IpAddr::V6(s), IpAddr::V6(d)) => sum_words(&s.octets(), sum_words(&d.octets(), 0)),
        _ => return false,
    };
    acc += u64::from(IPPROTO_UDP) + udp.len() as u64;
    acc = sum_words(udp, acc);
    fold(acc) == 0xffff
}

/// Builds a complete frame (for tests, generators and the lab): header + payload.
pub fn build(hdr: &EgressHeader, payload: &[u8], tos: u8) -> Vec<u8> {
    let mut v = vec![0u8; hdr.len() + payload.len()];
    let (h, p) = v.split_at_mut(hdr.len());
    p.copy_from_slice(payload);
    // A header for a well-formed EgressHeader always fits: lengths are checked above.
    let _ = hdr.write(h, p, tos);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(src: &str, dst: &str, vlan: Option<u16>) -> EgressHeader {
        EgressHeader {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            vlan,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
        }
    }

    #[test]
    fn build_then_parse_v4_v6_vlan() {
        for (s, d, vlan) in [
            ("10.201.1.1:30000", "10.201.1.2:4000", None),
            ("10.201.1.1:30000", "10.201.1.2:4000", Some(42)),
            ("[fd00::1]:30000", "[fd00::2]:4000", None),
            ("[fd00::1]:30000", "[fd00::2]:4000", Some(7)),
        ] {
            let h = hdr(s, d, vlan);
            for plen in [0usize, 1, 7, 160, 1400] {
                let payload: Vec<u8> = (0..plen).map(|i| (i * 7) as u8).collect();
                let f = build(&h, &payload, 0xb8);
                let p = parse(&f).unwrap();
                assert_eq!(p.src, h.src);
                assert_eq!(p.dst, h.dst);
                assert_eq!(p.vlan, vlan);
                assert_eq!(p.tos, 0xb8);
                assert_eq!(
                    &f[p.payload_off..p.payload_off + p.payload_len],
                    &payload[..]
                );
                assert!(udp_checksum_ok(&f, &p), "checksum {s} {plen}");
                if h.src.is_ipv4() {
                    let l3 = ETH_HLEN + if vlan.is_some() { 4 } else { 0 };
                    assert_eq!(
                        fold(sum_words(&f[l3..l3 + 20], 0)),
                        0xffff,
                        "IPv4 header checksum"
                    );
                }
            }
        }
    }

    #[test]
    fn known_checksum() {
        // A frame captured from Linux: 10.0.0.1:1234 -> 10.0.0.2:5678, payload "hello".
        let h = hdr("10.0.0.1:1234", "10.0.0.2:5678", None);
        let f = build(&h, b"hello", 0);
        let p = parse(&f).unwrap();
        let c = u16::from_be_bytes([f[p.payload_off - 2], f[p.payload_off - 1]]);
        // Independently computed: pseudo header + UDP header + data.
        let mut acc: u32 = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 17 + 13;
        acc += 1234 + 5678 + 13 + 0x6865 + 0x6c6c + 0x6f00;
        while acc >> 16 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        assert_eq!(c, !(acc as u16));
    }

    #[test]
    fn parse_rejects_without_panicking() {
        let h = hdr("10.201.1.1:30000", "10.201.1.2:4000", None);
        let f = build(&h, &[1, 2, 3, 4], 0);
        for n in 0..f.len() {
            assert!(parse(&f[..n]).is_err(), "truncated to {n}");
        }
        let mut frag = f.clone();
        frag[14 + 6] = 0x20; // MF
        assert_eq!(parse(&frag), Err(FrameError::Fragment));
        let mut tcp = f.clone();
        tcp[14 + 9] = 6;
        assert_eq!(parse(&tcp), Err(FrameError::NotUdp));
        let mut badlen = f.clone();
        badlen[14 + 20 + 5] = 200;
        assert_eq!(parse(&badlen), Err(FrameError::BadLength));
        // Ethernet padding after the datagram is fine.
        let mut padded = f.clone();
        padded.extend_from_slice(&[0; 20]);
        assert_eq!(parse(&padded).unwrap().payload_len, 4);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u32 = 0x1234_5678;
        for len in 0..200 {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = parse(&v);
            let mut v2 = v.clone();
            if v2.len() > 14 {
                v2[12] = 0x08;
                v2[13] = 0x00;
                let _ = parse(&v2);
            }
        }
    }
}
