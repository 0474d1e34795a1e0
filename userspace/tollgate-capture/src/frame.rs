//! Ethernet + IPv4/IPv6 + TCP frames around decoded SIP, for pcap files (link type Ethernet).
//!
//! Tollgate's SIP runs over TCP (and TLS); what an operator wants to read is the SIP itself.
//! [`TcpSynth`] wraps each message in synthetic TCP segments (flags PSH+ACK, window 65535,
//! correct IP and TCP checksums, MACs `02:00:00:00:00:01`/`02`), keeping a sequence number
//! per direction of each address pair and acknowledging the other direction's, so that
//! Wireshark's and sngrep's TCP reassembly stitch the segments back into SIP messages.
//! No handshake is synthesised (Wireshark copes with a capture that starts mid-stream).
//! A message longer than [`MAX_SEGMENT`] bytes is split over several segments (an IP packet
//! holds at most 65,535 bytes).
//!
//! [`parse`] reads such a frame back (tests, fuzzing).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The most payload one synthesised segment carries.
pub const MAX_SEGMENT: usize = 65_000;
/// Ethernet header length.
pub const ETH_LEN: usize = 14;
/// TCP header length (no options).
pub const TCP_LEN: usize = 20;
/// The first sequence number of every direction.
pub const INITIAL_SEQ: u32 = 1;

const ETHERTYPE_V4: u16 = 0x0800;
const ETHERTYPE_V6: u16 = 0x86dd;
const PSH_ACK: u8 = 0x18;

/// Why a frame could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Source and destination are of different IP families.
    #[error("source and destination are of different IP families")]
    MixedFamilies,
    /// The frame is shorter than its headers say.
    #[error("truncated: {0}")]
    Truncated(&'static str),
    /// Not IPv4/IPv6 carrying TCP.
    #[error("not a TCP/IP frame: {0}")]
    NotTcp(&'static str),
}

/// One TCP segment read back from a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// TCP flags.
    pub flags: u8,
    /// Whether the IP (v4) and TCP checksums verify.
    pub checksums_ok: bool,
    /// The segment's payload.
    pub payload: &'a [u8],
}

/// Sequence numbers per direction; turns messages into frames.
#[derive(Debug, Default, Clone)]
pub struct TcpSynth {
    next_seq: HashMap<(SocketAddr, SocketAddr), u32>,
}

impl TcpSynth {
    /// A synthesiser with no direction seen yet.
    pub fn new() -> TcpSynth {
        TcpSynth::default()
    }

    /// The frames carrying `payload` from `src` to `dst`, appended to `out` (one per segment
    /// of at most [`MAX_SEGMENT`] bytes; one empty segment for an empty payload).
    pub fn frames(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FrameError> {
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(FrameError::MixedFamilies);
        }
        let ack = *self.next_seq.get(&(dst, src)).unwrap_or(&INITIAL_SEQ);
        let seq = self.next_seq.entry((src, dst)).or_insert(INITIAL_SEQ);
        let mut chunks: Vec<&[u8]> = payload.chunks(MAX_SEGMENT).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        for c in chunks {
            out.push(frame(src, dst, *seq, ack, c));
            // Sequence numbers wrap (RFC 9293 arithmetic modulo 2^32).
            *seq = seq.wrapping_add(u32::try_from(c.len()).unwrap_or(0));
        }
        Ok(())
    }
}

fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut it = data.chunks_exact(2);
    for w in &mut it {
        acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = it.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn pseudo(src: IpAddr, dst: IpAddr, tcp_len: usize) -> u32 {
    let mut acc = 0;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = sum16(acc, &s.octets());
            acc = sum16(acc, &d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            acc = sum16(acc, &s.octets());
            acc = sum16(acc, &d.octets());
        }
        _ => {}
    }
    acc + 6 + (tcp_len as u32 & 0xffff) + ((tcp_len as u32) >> 16)
}

/// One frame: Ethernet, IP, TCP (PSH+ACK), `payload` (at most [`MAX_SEGMENT`] bytes; the
/// caller checked the families match).
fn frame(src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let ip_len = if src.is_ipv4() { 20 } else { 40 };
    let tcp_len = TCP_LEN + payload.len();
    let mut f = Vec::with_capacity(ETH_LEN + ip_len + tcp_len);
    f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&ETHERTYPE_V4.to_be_bytes());
            let total = u16::try_from(20 + tcp_len).unwrap_or(u16::MAX);
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ip[6] = 0x40; // DF
            ip[8] = 64;
            ip[9] = 6;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = fold(sum16(0, &ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&ETHERTYPE_V6.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&u16::try_from(tcp_len).unwrap_or(u16::MAX).to_be_bytes());
            f.extend_from_slice(&[6, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => {}
    }
    let tcp_at = f.len();
    f.extend_from_slice(&src.port().to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[(TCP_LEN as u8 / 4) << 4, PSH_ACK, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    let c = fold(sum16(pseudo(src.ip(), dst.ip(), tcp_len), &f[tcp_at..]));
    f[tcp_at + 16..tcp_at + 18].copy_from_slice(&c.to_be_bytes());
    f
}

fn be16(b: &[u8], at: usize) -> Result<u16, FrameError> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or(FrameError::Truncated("header field"))
}

fn be32(b: &[u8], at: usize) -> Result<u32, FrameError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(FrameError::Truncated("header field"))
}

/// Reads an Ethernet/IPv4-or-IPv6/TCP frame back (no VLAN tags, no IPv6 extension headers).
pub fn parse(f: &[u8]) -> Result<Segment<'_>, FrameError> {
    let ethertype = be16(f, 12)?;
    let ip = f.get(ETH_LEN..).ok_or(FrameError::Truncated("ethernet"))?;
    let (src, dst, tcp, ip_ok) = match ethertype {
        ETHERTYPE_V4 => {
            let ihl = usize::from(ip.first().ok_or(FrameError::Truncated("ip"))? & 0x0f) * 4;
            if ip.first().map(|b| b >> 4) != Some(4) || ihl < 20 {
                return Err(FrameError::NotTcp("bad IPv4 header"));
            }
            let total = usize::from(be16(ip, 2)?);
            if ip.get(9) != Some(&6) {
                return Err(FrameError::NotTcp("IPv4 protocol is not TCP"));
            }
            let hdr = ip.get(..ihl).ok_or(FrameError::Truncated("ipv4 header"))?;
            let ok = fold(sum16(0, hdr)) == 0;
            let s: [u8; 4] = ip
                .get(12..16)
                .and_then(|s| s.try_into().ok())
                .ok_or(FrameError::Truncated("ipv4"))?;
            let d: [u8; 4] = ip
                .get(16..20)
                .and_then(|s| s.try_into().ok())
                .ok_or(FrameError::Truncated("ipv4"))?;
            if total < ihl {
                return Err(FrameError::NotTcp("IPv4 total length below its header"));
            }
            let tcp = ip
                .get(ihl..total)
                .ok_or(FrameError::Truncated("ipv4 payload"))?;
            (
                IpAddr::V4(Ipv4Addr::from(s)),
                IpAddr::V4(Ipv4Addr::from(d)),
                tcp,
                ok,
            )
        }
        ETHERTYPE_V6 => {
            if ip.get(6) != Some(&6) {
                return Err(FrameError::NotTcp("IPv6 next header is not TCP"));
            }
            let plen = usize::from(be16(ip, 4)?);
            let s: [u8; 16] = ip
                .get(8..24)
                .and_then(|s| s.try_into().ok())
                .ok_or(FrameError::Truncated("ipv6"))?;
            let d: [u8; 16] = ip
                .get(24..40)
                .and_then(|s| s.try_into().ok())
                .ok_or(FrameError::Truncated("ipv6"))?;
            let tcp = ip
                .get(40..40 + plen)
                .ok_or(FrameError::Truncated("ipv6 payload"))?;
            (
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(d)),
                tcp,
                true,
            )
        }
        _ => return Err(FrameError::NotTcp("ethertype")),
    };
    let off = usize::from(tcp.get(12).ok_or(FrameError::Truncated("tcp"))? >> 4) * 4;
    if off < TCP_LEN {
        return Err(FrameError::NotTcp("TCP data offset below 20"));
    }
    let payload = tcp.get(off..).ok_or(FrameError::Truncated("tcp header"))?;
    let tcp_ok = fold(sum16(pseudo(src, dst, tcp.len()), tcp)) == 0;
    Ok(Segment {
        src: SocketAddr::new(src, be16(tcp, 0)?),
        dst: SocketAddr::new(dst, be16(tcp, 2)?),
        seq: be32(tcp, 4)?,
        ack: be32(tcp, 8)?,
        flags: *tcp.get(13).ok_or(FrameError::Truncated("tcp"))?,
        checksums_ok: ip_ok && tcp_ok,
        payload,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn frames_parse_back_with_sequence_numbers_per_direction() {
        for (a, b) in [
            (sa("10.201.1.2:40000"), sa("10.201.1.1:5060")),
            (sa("[2001:db8::2]:40000"), sa("[2001:db8::1]:5061")),
        ] {
            let mut s = TcpSynth::new();
            let mut out = Vec::new();
            let invite = b"INVITE sip:1@x SIP/2.0\r\nContent-Length: 0\r\n\r\n";
            let ok = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
            s.frames(a, b, invite, &mut out).unwrap();
            s.frames(b, a, ok, &mut out).unwrap();
            s.frames(a, b, b"ACK", &mut out).unwrap();
            let segs: Vec<Segment<'_>> = out.iter().map(|f| parse(f).unwrap()).collect();
            assert_eq!(segs.len(), 3);
            assert!(segs.iter().all(|g| g.checksums_ok && g.flags == PSH_ACK));
            assert_eq!((segs[0].src, segs[0].dst), (a, b));
            assert_eq!(segs[0].payload, invite);
            assert_eq!((segs[0].seq, segs[0].ack), (1, 1));
            assert_eq!((segs[1].src, segs[1].dst), (b, a));
            assert_eq!(segs[1].payload, ok);
            assert_eq!((segs[1].seq, segs[1].ack), (1, 1 + invite.len() as u32));
            assert_eq!(segs[2].seq, 1 + invite.len() as u32);
            assert_eq!(segs[2].ack, 1 + ok.len() as u32);
        }
    }

    #[test]
    fn large_payloads_are_split() {
        let mut s = TcpSynth::new();
        let mut out = Vec::new();
        let big: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let (a, b) = (sa("10.0.0.1:5061"), sa("10.0.0.2:5061"));
        s.frames(a, b, &big, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        let segs: Vec<Segment<'_>> = out.iter().map(|f| parse(f).unwrap()).collect();
        assert_eq!(segs[0].payload.len(), MAX_SEGMENT);
        assert_eq!(segs[1].seq, 1 + MAX_SEGMENT as u32);
        assert_eq!(segs[2].seq, 1 + 2 * MAX_SEGMENT as u32);
        assert!(segs.iter().all(|g| g.checksums_ok));
        let joined: Vec<u8> = segs.iter().flat_map(|g| g.payload.to_vec()).collect();
        assert_eq!(joined, big);
        assert_eq!(
            s.frames(a, sa("[::1]:1"), b"x", &mut out),
            Err(FrameError::MixedFamilies)
        );
        // Truncations never panic.
        for cut in 0..out[2].len().min(200) {
            let _ = parse(&out[2][..cut]);
        }
    }
}
