//! Small OS helpers: the monotonic clock, timed naps, eventfd wakers, thread CPU time, interface facts
//! (index, MAC, channel count via the ethtool ioctl, which interface holds an address), and
//! binding a socket to its NIC (SO_BINDTODEVICE).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// CLOCK_MONOTONIC in nanoseconds (the clock `bpf_ktime_get_ns` uses). A vDSO call, not a
/// syscall; workers read it once per batch.
#[inline]
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CPU time consumed by the calling thread, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps for `ns` nanoseconds on CLOCK_MONOTONIC (an interrupted sleep just ends early).
pub fn nap_ns(ns: u64) {
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: valid timespec; a null remainder pointer is allowed.
    unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, 0, &ts, std::ptr::null_mut()) };
}

/// Sets the calling thread's timer slack (how late the kernel may end its timed sleeps; 50 µs by
/// default for normal threads, which would stretch a 100 µs moderation window by half).
pub fn set_timer_slack_ns(ns: u64) {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong) };
}

/// An eventfd used to wake an idle worker when the control plane sends it a message.
#[derive(Debug)]
pub struct Waker(OwnedFd);

impl Waker {
    /// A new non-blocking eventfd.
    pub fn new() -> io::Result<Waker> {
        // SAFETY: plain eventfd(2).
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh fd we own.
        Ok(Waker(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Wakes the waiter.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: 8-byte write to our eventfd.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Clears pending wakeups.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: 8-byte read from our eventfd (non-blocking).
        unsafe { libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }

    /// The fd, for poll/epoll.
    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Interface index of `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c =
        std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(i)
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: zeroed POD.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let b = name.as_bytes();
    if b.len() >= req.ifr_name.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(b) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The MAC address of interface `name`.
pub fn mac_of(name: &str) -> io::Result<[u8; 6]> {
    let mut req = ifreq(name)?;
    let s = ctl_socket()?;
    // SAFETY: SIOCGIFHWADDR with a valid ifreq.
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled ifru_hwaddr.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(mac)
}

/// `struct ethtool_channels` (linux/ethtool.h).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct Channels {
    cmd: u32,
    /// Maximum RX-only channels.
    pub max_rx: u32,
    /// Maximum TX-only channels.
    pub max_tx: u32,
    /// Maximum other channels.
    pub max_other: u32,
    /// Maximum combined channels.
    pub max_combined: u32,
    /// RX-only channels.
    pub rx: u32,
    /// TX-only channels.
    pub tx: u32,
    /// Other channels.
    pub other: u32,
    /// Combined channels.
    pub combined: u32,
}

impl Channels {
    /// Receive queues in use (combined channels, or RX channels for drivers like veth).
    pub fn rx_queues(&self) -> u32 {
        self.combined.max(self.rx)
    }
}

const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETHTOOL_SCHANNELS: u32 = 0x3d;

fn ethtool(name: &str, ch: &mut Channels) -> io::Result<()> {
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_data = (ch as *mut Channels).cast();
    let s = ctl_socket()?;
    // SAFETY: SIOCETHTOOL with a valid ifreq pointing at a live ethtool_channels.
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCETHTOOL, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the channel configuration of `name`.
pub fn channels(name: &str) -> io::Result<Channels> {
    let mut ch = Channels {
        cmd: ETHTOOL_GCHANNELS,
        ..Channels::default()
    };
    ethtool(name, &mut ch)?;
    Ok(ch)
}

/// Sets the number of receive queues of `name` to `n` (combined channels where the driver has
/// them, else RX and TX channels, as veth does).
pub fn set_rx_queues(name: &str, n: u32) -> io::Result<()> {
    let mut ch = channels(name)?;
    ch.cmd = ETHTOOL_SCHANNELS;
    if ch.max_combined > 0 {
        ch.combined = n;
    } else {
        ch.rx = n;
        ch.tx = n.min(ch.max_tx.max(1));
    }
    ethtool(name, &mut ch)
}

/// Binds socket `fd` to interface `name` (SO_BINDTODEVICE): it then takes packets only from
/// that NIC, and its sends leave only through it. Unprivileged processes may do this on an
/// unbound socket since Linux 5.7.
pub fn bind_to_device(fd: RawFd, name: &str) -> io::Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= libc::IFNAMSIZ || b.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name"),
        ));
    }
    // SAFETY: `b` is a readable buffer of b.len() bytes; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            b.as_ptr().cast(),
            b.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("SO_BINDTODEVICE {name}: {e}"),
        ));
    }
    Ok(())
}

/// The interface that holds local address `ip` in the calling thread's network namespace, and
/// whether it is a loopback interface; `None` if no interface has it. A loopback address that
/// no interface lists (127.0.1.1: the kernel's `127.0.0.0/8` local route) is the loopback
/// interface's.
pub fn device_of(ip: std::net::IpAddr) -> io::Result<Option<(String, bool)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = None;
    let mut loopback = None;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: non-null sockaddr of the family it states.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        let addr: Option<std::net::IpAddr> = match family {
            libc::AF_INET => {
                // SAFETY: family says sockaddr_in.
                let a = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
                Some(std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)).into())
            }
            libc::AF_INET6 => {
                // SAFETY: family says sockaddr_in6.
                let a = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in6>() };
                Some(std::net::Ipv6Addr::from(a.sin6_addr.s6_addr).into())
            }
            _ => None,
        };
        let lo = ifa.ifa_flags & libc::IFF_LOOPBACK as libc::c_uint != 0;
        if addr == Some(ip) || (lo && loopback.is_none()) {
            // SAFETY: NUL-terminated name from the kernel.
            let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
            let name = name.to_string_lossy().into_owned();
            if addr == Some(ip) {
                found = Some((name, lo));
                break;
            }
            loopback = Some((name, lo));
        }
    }
    // SAFETY: the list from getifaddrs above, freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(found.or(if ip.is_loopback() { loopback } else { None }))
}
