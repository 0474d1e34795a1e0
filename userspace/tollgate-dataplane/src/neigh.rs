//! Next-hop MAC resolution from the kernel's route and neighbour tables over rtnetlink.
//!
//! At flow install the control plane asks for the MAC of the next hop toward a peer:
//! `RTM_GETROUTE` gives the output interface and gateway (or the peer itself when it is on
//! link), `RTM_GETNEIGH` the neighbour entry. If the entry is missing or incomplete, an
//! `RTM_NEWNEIGH` with `NTF_USE` makes the kernel start ARP/ND as if a packet were waiting, and
//! the answer is [`NextHop::Pending`]: the caller retries shortly, and until then the flow is
//! reported unresolved (packets toward it are counted as `no_next_hop`, never sent blind).
//!
//! A [`Watcher`] follows the kernel's neighbour and route notifications, so a next hop that
//! changes its MAC, or gets resolved, is taken up at once rather than at the next periodic
//! refresh.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const RTMGRP_NEIGH: u32 = 0x4;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV6_ROUTE: u32 = 0x400;
const RTM_GETNEIGH: u16 = 30;
const RTM_GETROUTE: u16 = 26;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NUD_INCOMPLETE: u16 = 0x01;
const NUD_FAILED: u16 = 0x20;
const NUD_NONE: u16 = 0x00;
const NTF_USE: u8 = 0x01;

/// Where packets toward a peer go next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// Resolved: output interface index and the next hop's MAC.
    Resolved {
        /// Output interface.
        ifindex: u32,
        /// The next hop's IP (the peer itself, or its gateway).
        via: IpAddr,
        /// Its MAC.
        mac: [u8; 6],
    },
    /// Resolution was started; ask again shortly.
    Pending {
        /// Output interface.
        ifindex: u32,
        /// The next hop being resolved.
        via: IpAddr,
    },
}

/// An rtnetlink socket for route and neighbour queries.
#[derive(Debug)]
pub struct Resolver {
    fd: OwnedFd,
    seq: u32,
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
        IpAddr::V4(v4) => (libc::AF_INET as u8, v4.octets().to_vec()),
        IpAddr::V6(v6) => (libc::AF_INET6 as u8, v6.octets().to_vec()),
    }
}

/// Iterates over the rtattrs in `b`.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
        let ty = u16::from_ne_bytes([*b.get(2)?, *b.get(3)?]);
        if len < 4 || len > b.len() {
            return None;
        }
        let data = &b[4..len];
        let adv = (len + 3) & !3;
        b = b.get(adv..).unwrap_or(&[]);
        Some((ty, data))
    })
}

impl Resolver {
    /// Opens a NETLINK_ROUTE socket in the calling thread's network namespace.
    pub fn new() -> io::Result<Resolver> {
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: valid option value.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        Ok(Resolver { fd, seq: 1 })
    }

    fn request(&mut self, ty: u16, flags: u16, body: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut msg = Vec::with_capacity(16 + body.len());
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&ty.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        // SAFETY: valid buffer.
        let rc = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16384];
        loop {
            // SAFETY: valid buffer.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut b = &buf[..n as usize];
            while b.len() >= 16 {
                let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let mty = u16::from_ne_bytes([b[4], b[5]]);
                let mseq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
                if len < 16 || len > b.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "bad netlink length",
                    ));
                }
                let payload = &b[16..len];
                if mseq == seq {
                    match mty {
                        NLMSG_DONE => return Ok(out),
                        NLMSG_ERROR => {
                            let err = payload
                                .get(..4)
                                .map_or(0, |e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]));
                            if err == 0 {
                                return Ok(out);
                            }
                            return Err(io::Error::from_raw_os_error(-err));
                        }
                        _ => {
                            out.push(payload.to_vec());
                            if flags & 0x300 == 0 {
                                // Not a dump: one answer is the whole reply.
                                return Ok(out);
                            }
                        }
                    }
                }
                b = b.get((len + 3) & !3..).unwrap_or(&[]);
            }
        }
    }

    /// The output interface and next hop IP toward `dst`.
    pub fn route(&mut self, dst: IpAddr) -> io::Result<(u32, IpAddr)> {
        let (fam, bytes) = ip_bytes(dst);
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags(u32)
        let mut body = vec![fam, (bytes.len() * 8) as u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        push_attr(&mut body, RTA_DST, &bytes);
        let replies = self.request(RTM_GETROUTE, 0, &body)?;
        for r in replies {
            let Some(a) = r.get(12..) else { continue };
            let mut oif = None;
            let mut gw = None;
            for (ty, data) in attrs(a) {
                match ty {
                    RTA_OIF if data.len() == 4 => {
                        oif = Some(u32::from_ne_bytes([data[0], data[1], data[2], data[3]]));
                    }
                    RTA_GATEWAY if data.len() == 4 => {
                        gw = Some(IpAddr::from([data[0], data[1], data[2], data[3]]));
                    }
                    RTA_GATEWAY if data.len() == 16 => {
                        let mut o = [0u8; 16];
                        o.copy_from_slice(data);
                        gw = Some(IpAddr::from(o));
                    }
                    _ => {}
                }
            }
            if let Some(oif) = oif {
                return Ok((oif, gw.unwrap_or(dst)));
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no route to {dst}"),
        ))
    }

    /// The neighbour entry for `ip` on `ifindex`: (state, MAC if any).
    fn neigh(&mut self, ifindex: u32, ip: IpAddr) -> io::Result<Option<(u16, Option<[u8; 6]>)>> {
        let (fam, bytes) = ip_bytes(ip);
        // struct ndmsg: family, pad1, pad2(u16), ifindex(i32), state(u16), flags(u8), type(u8)
        let mut body = vec![fam, 0, 0, 0];
        body.extend_from_slice(&(ifindex as i32).to_ne_bytes());
        body.extend_from_slice(&0u16.to_ne_bytes());
        body.extend_from_slice(&[0, 0]);
        push_attr(&mut body, NDA_DST, &bytes);
        let replies = match self.request(RTM_GETNEIGH, 0, &body) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        for r in replies {
            let (Some(st), Some(a)) = (r.get(8..10), r.get(12..)) else {
                continue;
            };
            let state = u16::from_ne_bytes([st[0], st[1]]);
            let mut mac = None;
            for (ty, data) in attrs(a) {
                if ty == NDA_LLADDR && data.len() == 6 {
                    let mut m = [0u8; 6];
                    m.copy_from_slice(data);
                    mac = Some(m);
                }
            }
            return Ok(Some((state, mac)));
        }
        Ok(None)
    }

    /// Asks the kernel to resolve `ip` on `ifindex` (RTM_NEWNEIGH with NTF_USE).
    fn kick(&mut self, ifindex: u32, ip: IpAddr) -> io::Result<()> {
        let (fam, bytes) = ip_bytes(ip);
        let mut body = vec![fam, 0, 0, 0];
        body.extend_from_slice(&(ifindex as i32).to_ne_bytes());
        body.extend_from_slice(&NUD_NONE.to_ne_bytes());
        body.extend_from_slice(&[NTF_USE, 0]);
        push_attr(&mut body, NDA_DST, &bytes);
        self.request(
            RTM_NEWNEIGH,
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            &body,
        )
        .map(|_| ())
    }

    /// Resolves the next hop toward `dst`, starting ARP/ND if needed.
    pub fn resolve(&mut self, dst: IpAddr) -> io::Result<NextHop> {
        let (ifindex, via) = self.route(dst)?;
        if let Some((state, Some(mac))) = self.neigh(ifindex, via)?
            && state & (NUD_INCOMPLETE | NUD_FAILED) == 0
        {
            return Ok(NextHop::Resolved { ifindex, via, mac });
        }
        self.kick(ifindex, via)?;
        Ok(NextHop::Pending { ifindex, via })
    }
}

/// What the kernel announced since the last [`Watcher::drain`].
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

/// A non-blocking NETLINK_ROUTE socket subscribed to neighbour and route notifications.
#[derive(Debug)]
pub struct Watcher {
    fd: OwnedFd,
    ifindexes: Vec<u32>,
    /// The last MAC announced per (interface, neighbour): state changes that keep the MAC
    /// (REACHABLE to STALE and back) are not news.
    seen: HashMap<(u32, IpAddr), [u8; 6]>,
    buf: Vec<u8>,
}

impl Watcher {
    /// Subscribes, in the calling thread's network namespace, to neighbour changes on
    /// `ifindexes` and to route changes.
    pub fn new(ifindexes: &[u32]) -> io::Result<Watcher> {
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a zeroed sockaddr_nl is valid; family and groups are set below.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
        // SAFETY: valid sockaddr_nl and its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Watcher {
            fd,
            ifindexes: ifindexes.to_vec(),
            seen: HashMap::new(),
            buf: vec![0u8; 32768],
        })
    }

    /// Reads every pending notification (never blocks).
    pub fn drain(&mut self) -> Changes {
        let mut c = Changes::default();
        loop {
            // SAFETY: valid buffer.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                    c.overflowed = true;
                    continue;
                }
                return c;
            }
            let buf = std::mem::take(&mut self.buf);
            if let Some(data) = buf.get(..n as usize) {
                self.parse(data, &mut c);
            }
            self.buf = buf;
        }
    }

    /// Folds one datagram of netlink messages into `c`.
    fn parse(&mut self, mut b: &[u8], c: &mut Changes) {
        while let Some(h) = b.get(..16) {
            let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
            let ty = u16::from_ne_bytes([h[4], h[5]]);
            let Some(payload) = b.get(16..len) else {
                return;
            };
            match ty {
                RTM_NEWROUTE | RTM_DELROUTE => c.routes = true,
                RTM_NEWNEIGH | RTM_DELNEIGH => self.neighbour(ty, payload, c),
                _ => {}
            }
            b = b.get((len + 3) & !3..).unwrap_or(&[]);
        }
    }

    fn neighbour(&mut self, ty: u16, m: &[u8], c: &mut Changes) {
        // struct ndmsg: family, pad1, pad2(u16), ifindex(i32), state(u16), flags(u8), type(u8)
        let (Some(ix), Some(st), Some(a)) = (m.get(4..8), m.get(8..10), m.get(12..)) else {
            return;
        };
        let ifindex = u32::from_ne_bytes([ix[0], ix[1], ix[2], ix[3]]);
        if !self.ifindexes.contains(&ifindex) {
            return;
        }
        let state = u16::from_ne_bytes([st[0], st[1]]);
        let (mut ip, mut mac) = (None, None);
        for (t, d) in attrs(a) {
            match (t, d.len()) {
                (NDA_DST, 4) => ip = Some(IpAddr::from([d[0], d[1], d[2], d[3]])),
                (NDA_DST, 16) => {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(d);
                    ip = Some(IpAddr::from(o));
                }
                (NDA_LLADDR, 6) => {
                    let mut o = [0u8; 6];
                    o.copy_from_slice(d);
                    mac = Some(o);
                }
                _ => {}
            }
        }
        let Some(ip) = ip else { return };
        match mac {
            Some(mac) if ty == RTM_NEWNEIGH && state & (NUD_INCOMPLETE | NUD_FAILED) == 0 => {
                if self.seen.insert((ifindex, ip), mac) != Some(mac) {
                    c.neighbours.push(ip);
                }
            }
            // Gone, failed or being resolved: nothing to send to yet (flows keep their last
            // MAC until a usable one is announced); forget it so that one counts as news.
            _ => {
                self.seen.remove(&(ifindex, ip));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neigh_msg(ty: u16, ifindex: u32, state: u16, ip: [u8; 4], mac: Option<[u8; 6]>) -> Vec<u8> {
        let mut body = vec![2, 0, 0, 0];
        body.extend_from_slice(&(ifindex as i32).to_ne_bytes());
        body.extend_from_slice(&state.to_ne_bytes());
        body.extend_from_slice(&[0, 1]);
        push_attr(&mut body, NDA_DST, &ip);
        if let Some(m) = mac {
            push_attr(&mut body, NDA_LLADDR, &m);
        }
        let mut msg = Vec::new();
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&ty.to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn neighbour_news_is_a_new_or_changed_mac_on_a_watched_interface() {
        let Ok(mut w) = Watcher::new(&[7]) else {
            return; // no netlink here
        };
        const REACHABLE: u16 = 0x02;
        const STALE: u16 = 0x04;
        let ip = [10, 201, 2, 2];
        let (m1, m2) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let mut c = Changes::default();
        // Being resolved, then resolved: news once.
        w.parse(
            &neigh_msg(RTM_NEWNEIGH, 7, NUD_INCOMPLETE, ip, None),
            &mut c,
        );
        assert!(!c.any());
        let mut two = neigh_msg(RTM_NEWNEIGH, 7, REACHABLE, ip, Some(m1));
        two.extend(neigh_msg(RTM_NEWNEIGH, 7, STALE, ip, Some(m1)));
        w.parse(&two, &mut c);
        assert_eq!(c.neighbours, vec![IpAddr::from(ip)]);
        // Another interface is not ours; a new MAC is news; a route change is.
        let mut c = Changes::default();
        w.parse(&neigh_msg(RTM_NEWNEIGH, 8, REACHABLE, ip, Some(m2)), &mut c);
        assert!(!c.any());
        w.parse(&neigh_msg(RTM_NEWNEIGH, 7, REACHABLE, ip, Some(m2)), &mut c);
        assert_eq!(c.neighbours.len(), 1);
        let mut route = neigh_msg(RTM_NEWROUTE, 7, 0, ip, None);
        route.truncate(28);
        route[..4].copy_from_slice(&28u32.to_ne_bytes());
        w.parse(&route, &mut c);
        assert!(c.routes);
        // Deleted, then back with the same MAC: news again.
        let mut c = Changes::default();
        w.parse(&neigh_msg(RTM_DELNEIGH, 7, STALE, ip, Some(m2)), &mut c);
        assert!(!c.any());
        w.parse(&neigh_msg(RTM_NEWNEIGH, 7, REACHABLE, ip, Some(m2)), &mut c);
        assert_eq!(c.neighbours.len(), 1);
        // Garbage never panics.
        for cut in 0..40 {
            let m = neigh_msg(RTM_NEWNEIGH, 7, REACHABLE, ip, Some(m1));
            w.parse(&m[..cut.min(m.len())], &mut Changes::default());
        }
        w.parse(&[0xff; 64], &mut Changes::default());
    }
}
