//! HEP v3 (Homer Encapsulation Protocol, version 3): one captured message per packet.
//!
//! Layout: the ASCII magic `HEP3`, the total length (u16, big endian, header included), then
//! chunks. Each chunk is a vendor id (u16, 0 = generic), a type id (u16) and a length (u16,
//! the 6-byte chunk header included), followed by its data. All integers are big endian.
//!
//! Chunks written by [`encode`] (generic vendor), in this order:
//!
//! | type | meaning | data |
//! | --- | --- | --- |
//! | 1 | IP family | u8: 2 IPv4, 10 IPv6 |
//! | 2 | IP protocol | u8: 6 TCP, 17 UDP |
//! | 3 / 4 | IPv4 source / destination address | 4 bytes |
//! | 5 / 6 | IPv6 source / destination address | 16 bytes |
//! | 7 / 8 | source / destination port | u16 |
//! | 9 | timestamp, seconds since the Unix epoch | u32 |
//! | 10 | timestamp, microseconds | u32 |
//! | 11 | protocol type | u8: 1 SIP |
//! | 12 | capture agent id | u32 |
//! | 14 | authentication key (password), if any | bytes |
//! | 15 | the captured payload (the SIP message) | bytes |
//! | 17 | correlation id (the Call-ID), if any | bytes |
//!
//! [`decode`] accepts chunks in any order, skips vendor-specific and unknown chunks, and
//! refuses a packet whose lengths do not add up or that lacks an address, port, timestamp or
//! payload.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The magic that starts every HEP v3 packet.
pub const MAGIC: &[u8; 4] = b"HEP3";
/// Protocol type of SIP (chunk 11).
pub const PROTO_SIP: u8 = 1;
/// IP protocol number of TCP (chunk 2).
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP (chunk 2).
pub const IPPROTO_UDP: u8 = 17;
/// Chunk 1's value for IPv4 (`AF_INET`).
pub const FAMILY_V4: u8 = 2;
/// Chunk 1's value for IPv6 (`AF_INET6`).
pub const FAMILY_V6: u8 = 10;

/// Generic chunk type ids.
pub mod chunk {
    /// IP family.
    pub const FAMILY: u16 = 1;
    /// IP protocol.
    pub const PROTO: u16 = 2;
    /// IPv4 source.
    pub const SRC4: u16 = 3;
    /// IPv4 destination.
    pub const DST4: u16 = 4;
    /// IPv6 source.
    pub const SRC6: u16 = 5;
    /// IPv6 destination.
    pub const DST6: u16 = 6;
    /// Source port.
    pub const SRC_PORT: u16 = 7;
    /// Destination port.
    pub const DST_PORT: u16 = 8;
    /// Timestamp, seconds.
    pub const TS_SEC: u16 = 9;
    /// Timestamp, microseconds.
    pub const TS_USEC: u16 = 10;
    /// Protocol type.
    pub const PROTO_TYPE: u16 = 11;
    /// Capture agent id.
    pub const AGENT_ID: u16 = 12;
    /// Authentication key.
    pub const AUTH_KEY: u16 = 14;
    /// Payload.
    pub const PAYLOAD: u16 = 15;
    /// Correlation id.
    pub const CORRELATION_ID: u16 = 17;
}

/// One captured message, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hep<'a> {
    /// IP protocol (6 TCP, 17 UDP).
    pub ip_proto: u8,
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// Capture time: seconds since the Unix epoch.
    pub ts_sec: u32,
    /// Capture time: microseconds (0..1,000,000).
    pub ts_usec: u32,
    /// Protocol type (1 SIP).
    pub proto_type: u8,
    /// Capture agent id.
    pub agent_id: u32,
    /// Authentication key (the collector's password), if any.
    pub auth_key: Option<&'a [u8]>,
    /// The captured message.
    pub payload: &'a [u8],
    /// Correlation id (for SIP, the Call-ID), if any.
    pub correlation_id: Option<&'a [u8]>,
}

/// Why a packet could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HepError {
    /// Source and destination are of different IP families.
    #[error("source and destination are of different IP families")]
    MixedFamilies,
    /// The packet would exceed HEP's 16-bit length.
    #[error("a HEP packet holds at most 65535 bytes; this one needs {0}")]
    TooLarge(usize),
    /// The packet does not start with `HEP3`.
    #[error("not a HEP v3 packet (no HEP3 magic)")]
    Magic,
    /// The packet is shorter than its header or than its stated length.
    #[error("truncated: {0}")]
    Truncated(&'static str),
    /// A chunk's length is below the chunk header's or runs past the packet.
    #[error("chunk type {chunk} has a bad length {len}")]
    ChunkLength {
        /// Chunk type.
        chunk: u16,
        /// Its stated length.
        len: u16,
    },
    /// A fixed-size chunk has the wrong size, or the family is unknown.
    #[error("chunk type {0} has a bad value")]
    BadChunk(u16),
    /// A chunk the packet needs is missing.
    #[error("missing chunk: {0}")]
    Missing(&'static str),
}

fn put_chunk(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
    // Lengths are checked by `encoded_len` before anything is written.
    let len = u16::try_from(data.len() + 6).unwrap_or(u16::MAX);
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
}

/// The size of `h` encoded.
pub fn encoded_len(h: &Hep<'_>) -> usize {
    let addr = if h.src.is_ipv4() { 4 } else { 16 };
    6 + (6 + 1)
        + (6 + 1)
        + 2 * (6 + addr)
        + 2 * (6 + 2)
        + 2 * (6 + 4)
        + (6 + 1)
        + (6 + 4)
        + h.auth_key.map_or(0, |k| 6 + k.len())
        + 6
        + h.payload.len()
        + h.correlation_id.map_or(0, |c| 6 + c.len())
}

/// Appends `h` as one HEP v3 packet to `out`.
pub fn encode(h: &Hep<'_>, out: &mut Vec<u8>) -> Result<(), HepError> {
    let total = encoded_len(h);
    let total16 = u16::try_from(total).map_err(|_| HepError::TooLarge(total))?;
    out.reserve(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&total16.to_be_bytes());
    match (h.src.ip(), h.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            put_chunk(out, chunk::FAMILY, &[FAMILY_V4]);
            put_chunk(out, chunk::PROTO, &[h.ip_proto]);
            put_chunk(out, chunk::SRC4, &s.octets());
            put_chunk(out, chunk::DST4, &d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            put_chunk(out, chunk::FAMILY, &[FAMILY_V6]);
            put_chunk(out, chunk::PROTO, &[h.ip_proto]);
            put_chunk(out, chunk::SRC6, &s.octets());
            put_chunk(out, chunk::DST6, &d.octets());
        }
        _ => {
            out.truncate(out.len() - 6);
            return Err(HepError::MixedFamilies);
        }
    }
    put_chunk(out, chunk::SRC_PORT, &h.src.port().to_be_bytes());
    put_chunk(out, chunk::DST_PORT, &h.dst.port().to_be_bytes());
    put_chunk(out, chunk::TS_SEC, &h.ts_sec.to_be_bytes());
    put_chunk(out, chunk::TS_USEC, &h.ts_usec.to_be_bytes());
    put_chunk(out, chunk::PROTO_TYPE, &[h.proto_type]);
    put_chunk(out, chunk::AGENT_ID, &h.agent_id.to_be_bytes());
    if let Some(k) = h.auth_key {
        put_chunk(out, chunk::AUTH_KEY, k);
    }
    put_chunk(out, chunk::PAYLOAD, h.payload);
    if let Some(c) = h.correlation_id {
        put_chunk(out, chunk::CORRELATION_ID, c);
    }
    Ok(())
}

fn fixed<const N: usize>(ty: u16, d: &[u8]) -> Result<[u8; N], HepError> {
    d.try_into().map_err(|_| HepError::BadChunk(ty))
}

/// Decodes one HEP v3 packet (bytes past its stated length are ignored).
pub fn decode(buf: &[u8]) -> Result<Hep<'_>, HepError> {
    let head = buf.get(..6).ok_or(HepError::Truncated("header"))?;
    if &head[..4] != MAGIC {
        return Err(HepError::Magic);
    }
    let total = usize::from(u16::from_be_bytes([head[4], head[5]]));
    if total < 6 {
        return Err(HepError::Truncated("stated length below the header's"));
    }
    let body = buf
        .get(6..total)
        .ok_or(HepError::Truncated("shorter than its stated length"))?;
    let mut family = None;
    let mut ip_proto = None;
    let (mut src4, mut dst4, mut src6, mut dst6) = (None, None, None, None);
    let (mut sport, mut dport, mut sec, mut usec) = (None, None, None, None);
    let (mut proto_type, mut agent_id, mut auth_key, mut payload, mut correlation_id) =
        (None, None, None, None, None);
    let mut rest = body;
    while !rest.is_empty() {
        let h = rest.get(..6).ok_or(HepError::Truncated("chunk header"))?;
        let vendor = u16::from_be_bytes([h[0], h[1]]);
        let ty = u16::from_be_bytes([h[2], h[3]]);
        let len = u16::from_be_bytes([h[4], h[5]]);
        let l = usize::from(len);
        let data = rest
            .get(6..l.max(6))
            .filter(|_| l >= 6)
            .ok_or(HepError::ChunkLength { chunk: ty, len })?;
        rest = rest.get(l..).unwrap_or(&[]);
        if vendor != 0 {
            continue;
        }
        match ty {
            chunk::FAMILY => family = Some(fixed::<1>(ty, data)?[0]),
            chunk::PROTO => ip_proto = Some(fixed::<1>(ty, data)?[0]),
            chunk::SRC4 => src4 = Some(Ipv4Addr::from(fixed::<4>(ty, data)?)),
            chunk::DST4 => dst4 = Some(Ipv4Addr::from(fixed::<4>(ty, data)?)),
            chunk::SRC6 => src6 = Some(Ipv6Addr::from(fixed::<16>(ty, data)?)),
            chunk::DST6 => dst6 = Some(Ipv6Addr::from(fixed::<16>(ty, data)?)),
            chunk::SRC_PORT => sport = Some(u16::from_be_bytes(fixed(ty, data)?)),
            chunk::DST_PORT => dport = Some(u16::from_be_bytes(fixed(ty, data)?)),
            chunk::TS_SEC => sec = Some(u32::from_be_bytes(fixed(ty, data)?)),
            chunk::TS_USEC => usec = Some(u32::from_be_bytes(fixed(ty, data)?)),
            chunk::PROTO_TYPE => proto_type = Some(fixed::<1>(ty, data)?[0]),
            chunk::AGENT_ID => agent_id = Some(u32::from_be_bytes(fixed(ty, data)?)),
            chunk::AUTH_KEY => auth_key = Some(data),
            chunk::PAYLOAD => payload = Some(data),
            chunk::CORRELATION_ID => correlation_id = Some(data),
            _ => {}
        }
    }
    let (src, dst): (IpAddr, IpAddr) = match family {
        Some(FAMILY_V4) => (
            src4.ok_or(HepError::Missing("IPv4 source"))?.into(),
            dst4.ok_or(HepError::Missing("IPv4 destination"))?.into(),
        ),
        Some(FAMILY_V6) => (
            src6.ok_or(HepError::Missing("IPv6 source"))?.into(),
            dst6.ok_or(HepError::Missing("IPv6 destination"))?.into(),
        ),
        Some(_) => return Err(HepError::BadChunk(chunk::FAMILY)),
        None => return Err(HepError::Missing("IP family")),
    };
    Ok(Hep {
        ip_proto: ip_proto.ok_or(HepError::Missing("IP protocol"))?,
        src: SocketAddr::new(src, sport.ok_or(HepError::Missing("source port"))?),
        dst: SocketAddr::new(dst, dport.ok_or(HepError::Missing("destination port"))?),
        ts_sec: sec.ok_or(HepError::Missing("timestamp seconds"))?,
        ts_usec: usec.unwrap_or(0),
        proto_type: proto_type.ok_or(HepError::Missing("protocol type"))?,
        agent_id: agent_id.unwrap_or(0),
        auth_key,
        payload: payload.ok_or(HepError::Missing("payload"))?,
        correlation_id,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    fn sample<'a>(src: &str, dst: &str, payload: &'a [u8]) -> Hep<'a> {
        Hep {
            ip_proto: IPPROTO_TCP,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            ts_sec: 1_700_000_000,
            ts_usec: 123_456,
            proto_type: PROTO_SIP,
            agent_id: 2001,
            auth_key: Some(b"secret"),
            payload,
            correlation_id: Some(b"abc@host"),
        }
    }

    #[test]
    fn round_trip_v4_and_v6() {
        for (s, d) in [
            ("10.201.2.1:5061", "10.201.2.2:40000"),
            ("[2001:db8::1]:5061", "[2001:db8::2]:5062"),
        ] {
            let h = sample(s, d, b"INVITE sip:x SIP/2.0\r\n\r\n");
            let mut out = Vec::new();
            encode(&h, &mut out).unwrap();
            assert_eq!(out.len(), encoded_len(&h));
            assert_eq!(decode(&out).unwrap(), h);
        }
        let mut h = sample("10.0.0.1:1", "10.0.0.2:2", b"x");
        h.auth_key = None;
        h.correlation_id = None;
        let mut out = Vec::new();
        encode(&h, &mut out).unwrap();
        assert_eq!(decode(&out).unwrap(), h);
    }

    #[test]
    fn known_layout() {
        let mut h = sample("10.0.0.1:5060", "10.0.0.2:5061", b"OPTIONS");
        h.auth_key = None;
        h.correlation_id = Some(b"c");
        let mut out = Vec::new();
        encode(&h, &mut out).unwrap();
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &b"HEP3"[..], &[0, 113],
            &[0, 0, 0, 1, 0, 7, 2],
            &[0, 0, 0, 2, 0, 7, 6],
            &[0, 0, 0, 3, 0, 10, 10, 0, 0, 1],
            &[0, 0, 0, 4, 0, 10, 10, 0, 0, 2],
            &[0, 0, 0, 7, 0, 8, 0x13, 0xc4],
            &[0, 0, 0, 8, 0, 8, 0x13, 0xc5],
            &[0, 0, 0, 9, 0, 10], &1_700_000_000u32.to_be_bytes(),
            &[0, 0, 0, 10, 0, 10], &123_456u32.to_be_bytes(),
            &[0, 0, 0, 11, 0, 7, 1],
            &[0, 0, 0, 12, 0, 10, 0, 0, 0x07, 0xd1],
            &[0, 0, 0, 15, 0, 13], b"OPTIONS",
            &[0, 0, 0, 17, 0, 7], b"c",
        ]
        .concat();
        assert_eq!(out, want);
        assert_eq!(out.len(), 113);
    }

    #[test]
    fn refusals() {
        let mut out = Vec::new();
        let big = vec![b'x'; 70_000];
        assert!(matches!(
            encode(&sample("10.0.0.1:1", "10.0.0.2:2", &big), &mut out),
            Err(HepError::TooLarge(_))
        ));
        assert_eq!(
            encode(&sample("10.0.0.1:1", "[::1]:2", b"x"), &mut out),
            Err(HepError::MixedFamilies)
        );
        assert!(out.is_empty());
        encode(&sample("10.0.0.1:1", "10.0.0.2:2", b"x"), &mut out).unwrap();
        for cut in 0..out.len() {
            assert!(decode(&out[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = out.clone();
        bad[0] = b'X';
        assert_eq!(decode(&bad), Err(HepError::Magic));
        // A chunk length of 0 is refused, not looped on.
        let mut z = b"HEP3\x00\x0c".to_vec();
        z.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
        assert!(matches!(decode(&z), Err(HepError::ChunkLength { .. })));
        // Vendor chunks are skipped.
        let mut v = out.clone();
        v.extend_from_slice(&[0, 9, 0, 1, 0, 7, 42]);
        let n = u16::try_from(v.len()).unwrap().to_be_bytes();
        v[4..6].copy_from_slice(&n);
        assert_eq!(decode(&v).unwrap(), decode(&out).unwrap());
    }
}
