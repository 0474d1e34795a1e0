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
//!
//! This module owns the sockets; the messages are built and parsed by `tollgate-netlink`.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub use tollgate_netlink::Changes;
use tollgate_netlink::{self as nl, Notifications};

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

/// A NETLINK_ROUTE socket of the calling thread's network namespace.
fn route_socket(extra_flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | extra_flags,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Resolver {
    /// Opens a NETLINK_ROUTE socket in the calling thread's network namespace.
    pub fn new() -> io::Result<Resolver> {
        let fd = route_socket(0)?;
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
        let msg = nl::request(ty, flags, seq, body);
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
            for m in nl::messages(buf.get(..n as usize).unwrap_or(&[])) {
                let Ok(m) = m else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "bad netlink length",
                    ));
                };
                if m.seq != seq {
                    continue;
                }
                match m.ty {
                    nl::NLMSG_DONE => return Ok(out),
                    nl::NLMSG_ERROR => {
                        let err = nl::error_code(m.payload);
                        if err == 0 {
                            return Ok(out);
                        }
                        return Err(io::Error::from_raw_os_error(-err));
                    }
                    _ => {
                        out.push(m.payload.to_vec());
                        if flags & 0x300 == 0 {
                            // Not a dump: one answer is the whole reply.
                            return Ok(out);
                        }
                    }
                }
            }
        }
    }

    /// The output interface and next hop IP toward `dst`.
    pub fn route(&mut self, dst: IpAddr) -> io::Result<(u32, IpAddr)> {
        let replies = self.request(nl::RTM_GETROUTE, 0, &nl::get_route(dst))?;
        replies
            .iter()
            .find_map(|r| nl::parse_route(r))
            .map(|(oif, gw)| (oif, gw.unwrap_or(dst)))
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no route to {dst}")))
    }

    /// The neighbour entry for `ip` on `ifindex`.
    fn neigh(&mut self, ifindex: u32, ip: IpAddr) -> io::Result<Option<nl::Neigh>> {
        match self.request(nl::RTM_GETNEIGH, 0, &nl::get_neigh(ifindex, ip)) {
            Ok(r) => Ok(r.iter().find_map(|p| nl::parse_neigh(p))),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Asks the kernel to resolve `ip` on `ifindex` (RTM_NEWNEIGH with NTF_USE).
    fn kick(&mut self, ifindex: u32, ip: IpAddr) -> io::Result<()> {
        self.request(
            nl::RTM_NEWNEIGH,
            nl::NLM_F_ACK | nl::NLM_F_CREATE | nl::NLM_F_REPLACE,
            &nl::use_neigh(ifindex, ip),
        )
        .map(|_| ())
    }

    /// Resolves the next hop toward `dst`, starting ARP/ND if needed.
    pub fn resolve(&mut self, dst: IpAddr) -> io::Result<NextHop> {
        let (ifindex, via) = self.route(dst)?;
        if let Some(n) = self.neigh(ifindex, via)?
            && n.usable()
            && let Some(mac) = n.mac
        {
            return Ok(NextHop::Resolved { ifindex, via, mac });
        }
        self.kick(ifindex, via)?;
        Ok(NextHop::Pending { ifindex, via })
    }
}

/// A non-blocking NETLINK_ROUTE socket subscribed to neighbour and route notifications.
#[derive(Debug)]
pub struct Watcher {
    fd: OwnedFd,
    news: Notifications,
    buf: Vec<u8>,
}

impl Watcher {
    /// Subscribes, in the calling thread's network namespace, to neighbour changes on
    /// `ifindexes` and to route changes.
    pub fn new(ifindexes: &[u32]) -> io::Result<Watcher> {
        let fd = route_socket(libc::SOCK_NONBLOCK)?;
        // SAFETY: a zeroed sockaddr_nl is valid; family and groups are set below.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = nl::RTMGRP_NEIGH | nl::RTMGRP_IPV4_ROUTE | nl::RTMGRP_IPV6_ROUTE;
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
            news: Notifications::new(ifindexes),
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
            self.news
                .fold(self.buf.get(..n as usize).unwrap_or(&[]), &mut c);
        }
    }
}
