//! rtnetlink messages for next-hop resolution, without I/O.
//!
//! The data plane's resolver and watcher own the sockets; this crate builds the requests they
//! send and parses what the kernel sends back: replies to `RTM_GETROUTE`/`RTM_GETNEIGH` and the
//! neighbour and route notifications of the `RTMGRP_NEIGH` and route groups. Every parser takes
//! untrusted bytes and returns `None` or skips what it cannot read; none panics (fuzz target
//! `netlink`).

use std::collections::HashMap;
use std::net::IpAddr;

/// Message types.
pub const RTM_NEWROUTE: u16 = 24;
/// Route removed.
pub const RTM_DELROUTE: u16 = 25;
/// Route query.
pub const RTM_GETROUTE: u16 = 26;
/// Neighbour added or changed (also the request that starts resolution).
pub const RTM_NEWNEIGH: u16 = 28;
/// Neighbour removed.
pub const RTM_DELNEIGH: u16 = 29;
/// Neighbour query.
pub const RTM_GETNEIGH: u16 = 30;
/// Error or ACK.
pub const NLMSG_ERROR: u16 = 2;
/// End of a dump.
pub const NLMSG_DONE: u16 = 3;
/// Request flag.
pub const NLM_F_REQUEST: u16 = 1;
/// Ask for an ACK.
pub const NLM_F_ACK: u16 = 4;
/// Replace an existing object.
pub const NLM_F_REPLACE: u16 = 0x100;
/// Create if missing.
pub const NLM_F_CREATE: u16 = 0x400;
/// Multicast group: neighbour changes.
pub const RTMGRP_NEIGH: u32 = 0x4;
/// Multicast group: IPv4 route changes.
pub const RTMGRP_IPV4_ROUTE: u32 = 0x40;
/// Multicast group: IPv6 route changes.
pub const RTMGRP_IPV6_ROUTE: u32 = 0x400;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// Neighbour state: resolution in progress.
pub const NUD_INCOMPLETE: u16 = 0x01;
/// Neighbour state: resolution failed.
pub const NUD_FAILED: u16 = 0x20;
const NUD_NONE: u16 = 0x00;
const NTF_USE: u8 = 0x01;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// One netlink message of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg<'a> {
    /// `nlmsg_type`.
    pub ty: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// What follows the 16-byte header.
    pub payload: &'a [u8],
}

/// The messages of one received datagram, in order; stops at the first malformed header
/// (reported as `Err(())`, the rest of the datagram is not trusted).
pub fn messages(mut b: &[u8]) -> impl Iterator<Item = Result<Msg<'_>, ()>> {
    std::iter::from_fn(move || {
        let h = b.get(..16)?;
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let ty = u16::from_ne_bytes([h[4], h[5]]);
        let seq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
        let Some(payload) = b.get(16..len) else {
            b = &[];
            return Some(Err(()));
        };
        b = b.get((len + 3) & !3..).unwrap_or(&[]);
        Some(Ok(Msg { ty, seq, payload }))
    })
}

/// The errno of an `NLMSG_ERROR` payload (0 is an ACK).
pub fn error_code(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .map_or(0, |e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]))
}

/// Iterates over the rtattrs in `b`.
pub fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
        let ty = u16::from_ne_bytes([*b.get(2)?, *b.get(3)?]);
        let data = b.get(4..len)?;
        b = b.get((len + 3) & !3..).unwrap_or(&[]);
        Some((ty, data))
    })
}

fn push_attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

fn ip_bytes(ip: IpAddr) -> (u8, Vec<u8>) {
    match ip {
        IpAddr::V4(v4) => (AF_INET, v4.octets().to_vec()),
        IpAddr::V6(v6) => (AF_INET6, v6.octets().to_vec()),
    }
}

fn ip_of(d: &[u8]) -> Option<IpAddr> {
    match d.len() {
        4 => Some(IpAddr::from([d[0], d[1], d[2], d[3]])),
        16 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(d);
            Some(IpAddr::from(o))
        }
        _ => None,
    }
}

/// A whole request: header with `seq` and `NLM_F_REQUEST | flags`, then `body`.
pub fn request(ty: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(16 + body.len());
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&ty.to_ne_bytes());
    msg.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(body);
    msg
}

/// `RTM_GETROUTE` body for the route toward `dst`.
pub fn get_route(dst: IpAddr) -> Vec<u8> {
    let (fam, bytes) = ip_bytes(dst);
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags(u32)
    let mut body = vec![fam, (bytes.len() * 8) as u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    push_attr(&mut body, RTA_DST, &bytes);
    body
}

/// `RTM_GETNEIGH` body for `ip` on `ifindex`.
pub fn get_neigh(ifindex: u32, ip: IpAddr) -> Vec<u8> {
    neigh_body(ifindex, ip, 0, 0)
}

/// `RTM_NEWNEIGH` body with `NTF_USE`: makes the kernel resolve `ip` on `ifindex` as if a
/// packet were waiting.
pub fn use_neigh(ifindex: u32, ip: IpAddr) -> Vec<u8> {
    neigh_body(ifindex, ip, NUD_NONE, NTF_USE)
}

fn neigh_body(ifindex: u32, ip: IpAddr, state: u16, flags: u8) -> Vec<u8> {
    let (fam, bytes) = ip_bytes(ip);
    // struct ndmsg: family, pad1, pad2(u16), ifindex(i32), state(u16), flags(u8), type(u8)
    let mut body = vec![fam, 0, 0, 0];
    body.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    body.extend_from_slice(&state.to_ne_bytes());
    body.extend_from_slice(&[flags, 0]);
    push_attr(&mut body, NDA_DST, &bytes);
    body
}

/// A route message's output interface and gateway, if it names an output interface.
pub fn parse_route(payload: &[u8]) -> Option<(u32, Option<IpAddr>)> {
    let mut oif = None;
    let mut gw = None;
    for (ty, data) in attrs(payload.get(12..)?) {
        match ty {
            RTA_OIF if data.len() == 4 => {
                oif = Some(u32::from_ne_bytes([data[0], data[1], data[2], data[3]]));
            }
            RTA_GATEWAY => gw = ip_of(data).or(gw),
            _ => {}
        }
    }
    Some((oif?, gw))
}

/// A neighbour message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neigh {
    /// Interface.
    pub ifindex: u32,
    /// `NUD_*` state bits.
    pub state: u16,
    /// The neighbour's address, if given.
    pub ip: Option<IpAddr>,
    /// Its link-layer address, if given and Ethernet-sized.
    pub mac: Option<[u8; 6]>,
}

impl Neigh {
    /// Whether the entry holds a MAC that can be sent to.
    pub fn usable(&self) -> bool {
        self.mac.is_some() && self.state & (NUD_INCOMPLETE | NUD_FAILED) == 0
    }
}

/// Parses a neighbour message (`struct ndmsg` and its attributes).
pub fn parse_neigh(payload: &[u8]) -> Option<Neigh> {
    let (ix, st, a) = (payload.get(4..8)?, payload.get(8..10)?, payload.get(12..)?);
    let mut n = Neigh {
        ifindex: u32::from_ne_bytes([ix[0], ix[1], ix[2], ix[3]]),
        state: u16::from_ne_bytes([st[0], st[1]]),
        ip: None,
        mac: None,
    };
    for (ty, d) in attrs(a) {
        match ty {
            NDA_DST => n.ip = ip_of(d).or(n.ip),
            NDA_LLADDR if d.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(d);
                n.mac = Some(m);
            }
            _ => {}
        }
    }
    Some(n)
}

/// What the kernel announced since the last look.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Neighbours on a watched interface that got a usable MAC, or a different one.
    pub neighbours: Vec<IpAddr>,
    /// A route was added or removed (next hops may now be other neighbours).
    pub routes: bool,
    /// Notifications were lost (the socket overflowed): assume anything changed.
    pub overflowed: bool,
}

impl Changes {
    /// Whether next hops should be resolved again.
    pub fn any(&self) -> bool {
        !self.neighbours.is_empty() || self.routes || self.overflowed
    }
}

/// Turns neighbour and route notifications into [`Changes`]: only a neighbour on a watched
/// interface that gets a usable MAC, or a different one, is news (state changes that keep the
/// MAC, such as REACHABLE to STALE and back, are not).
#[derive(Debug, Default)]
pub struct Notifications {
    ifindexes: Vec<u32>,
    seen: HashMap<(u32, IpAddr), [u8; 6]>,
}

impl Notifications {
    /// Watches neighbours on `ifindexes`.
    pub fn new(ifindexes: &[u32]) -> Notifications {
        Notifications {
            ifindexes: ifindexes.to_vec(),
            seen: HashMap::new(),
        }
    }

    /// Folds one received datagram into `c`.
    pub fn fold(&mut self, datagram: &[u8], c: &mut Changes) {
        for m in messages(datagram) {
            let Ok(m) = m else { return };
            match m.ty {
                RTM_NEWROUTE | RTM_DELROUTE => c.routes = true,
                RTM_NEWNEIGH | RTM_DELNEIGH => {
                    if let Some(n) = parse_neigh(m.payload) {
                        self.neighbour(m.ty, n, c);
                    }
                }
                _ => {}
            }
        }
    }

    fn neighbour(&mut self, ty: u16, n: Neigh, c: &mut Changes) {
        if !self.ifindexes.contains(&n.ifindex) {
            return;
        }
        let Some(ip) = n.ip else { return };
        match n.mac {
            Some(mac) if ty == RTM_NEWNEIGH && n.usable() => {
                if self.seen.insert((n.ifindex, ip), mac) != Some(mac) {
                    c.neighbours.push(ip);
                }
            }
            // Gone, failed or being resolved: nothing to send to yet (flows keep their last
            // MAC until a usable one is announced); forget it so that one counts as news.
            _ => {
                self.seen.remove(&(n.ifindex, ip));
            }
        }
    }
}

#[cfg(test)]
mod tests;
