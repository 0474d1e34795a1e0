//! Next-hop MAC resolution from the kernel's route and neighbour tables over rtnetlink.
//!
//! At flow install the control plane asks for the MAC of the next hop toward a peer:
//! `RTM_GETROUTE` gives the output interface and gateway (or the peer itself when it is on
//! link), `RTM_GETNEIGH` the neighbour entry. If the entry is missing or incomplete, an
//! `RTM_NEWNEIGH` with `NTF_USE` makes the kernel start ARP/ND as if a packet were waiting, and
//! the answer is [`NextHop::Pending`]: the caller retries shortly, and until then the flow is
//! reported unresolved (packets toward it are counted as `no_next_hop`, never sent blind).

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const RTM_NEWNEIGH: u16 = 28;
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
