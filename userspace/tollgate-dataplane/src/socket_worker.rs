//! The socket data path: the same relay core over ordinary UDP sockets.
//!
//! For hosts without XDP (loopback, laptops, unprivileged runs). Each flow is owned by one
//! worker, which holds the flow's bound sockets in an epoll set; a ready socket is drained with
//! `recvmmsg`; the datagrams of all the sockets ready at once form a burst that goes through the
//! same relay core as on the AF_XDP path (checks per datagram, the burst's SRTP in one batch
//! across flows), and the results leave with one `sendmmsg` per run of datagrams through the
//! same egress socket. Buffers, iovecs and address
//! storage are allocated once per worker. Sockets are bound to their side's NIC when the data
//! plane knows it (SO_BINDTODEVICE), so a relay port takes packets only from its own side.

use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use tollgate_relay::{Arrival, DropReason, Fronted, MediaFlowTable};
use tollgate_srtp::Job;

use crate::idle::{IdleAction, IdlePolicy, POLL_MS};
use crate::sys::{monotonic_ns, thread_cpu_ns};
use crate::worker::{WorkerCtx, add};

/// Datagrams per `recvmmsg`/`sendmmsg`.
const BATCH: usize = 32;
/// Buffer per datagram: the largest UDP payload we relay plus SRTP tailroom.
const BUF: usize = 2048;
/// Most sockets reported per `epoll_wait`.
const EVENTS: usize = 64;

struct Batch {
    bufs: Vec<[u8; BUF]>,
    /// The local (relay) address each datagram arrived at: a burst gathers datagrams from
    /// every ready socket.
    locals: Vec<SocketAddr>,
    iov: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    hdrs: Vec<libc::mmsghdr>,
    // Outgoing: one slot per received datagram.
    out_names: Vec<libc::sockaddr_storage>,
    out_iov: Vec<libc::iovec>,
    out_hdrs: Vec<libc::mmsghdr>,
}

impl Batch {
    fn new() -> Box<Batch> {
        // SAFETY: all-zero is a valid value for these C structs.
        let zero_ss: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
        // SAFETY: as above.
        let zero_h: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
        let zero_iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        Box::new(Batch {
            bufs: vec![[0u8; BUF]; BATCH],
            locals: vec![SocketAddr::from(([0, 0, 0, 0], 0)); BATCH],
            iov: vec![zero_iov; BATCH],
            names: vec![zero_ss; BATCH],
            hdrs: vec![zero_h; BATCH],
            out_names: vec![zero_ss; BATCH],
            out_iov: vec![zero_iov; BATCH],
            out_hdrs: vec![zero_h; BATCH],
        })
    }
}

fn from_storage(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: family says sockaddr_in.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: family says sockaddr_in6.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                0,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `a` into `ss`; returns the length to pass to the kernel.
pub(crate) fn to_storage(a: SocketAddr, ss: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let s =
                unsafe { &mut *(ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = v4.port().to_be();
            s.sin_addr = libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above for sockaddr_in6.
            let s =
                unsafe { &mut *(ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = v6.port().to_be();
            s.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            s.sin6_flowinfo = 0;
            s.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

struct Sockets {
    epoll: OwnedFd,
    by_fd: FxHashMap<RawFd, SocketAddr>,
    by_addr: FxHashMap<SocketAddr, OwnedFd>,
    by_flow: FxHashMap<u64, Vec<SocketAddr>>,
}

impl Sockets {
    fn add(&mut self, flow: u64, local: SocketAddr, fd: OwnedFd) {
        let raw = fd.as_raw_fd();
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: raw as u64,
        };
        // SAFETY: valid epoll fd and socket fd.
        unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, raw, &mut ev) };
        self.by_fd.insert(raw, local);
        if let Some(old) = self.by_addr.insert(local, fd) {
            self.by_fd.remove(&old.as_raw_fd());
        }
        self.by_flow.entry(flow).or_default().push(local);
    }

    fn remove_flow(&mut self, flow: u64) {
        for a in self.by_flow.remove(&flow).unwrap_or_default() {
            if let Some(fd) = self.by_addr.remove(&a) {
                self.by_fd.remove(&fd.as_raw_fd());
                // Closing the fd removes it from the epoll set.
            }
        }
    }
}

/// Runs the socket worker until `ctx.stop` is set.
pub fn run(ctx: WorkerCtx) {
    // SAFETY: plain epoll_create1.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        tracing::error!(
            worker = ctx.index,
            "epoll_create1 failed: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    // SAFETY: fresh fd we own.
    let epoll = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(ep) };
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: u64::MAX,
    };
    // SAFETY: valid fds.
    unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, ctx.waker.fd(), &mut ev) };
    let mut socks = Sockets {
        epoll,
        by_fd: FxHashMap::default(),
        by_addr: FxHashMap::default(),
        by_flow: FxHashMap::default(),
    };
    let mut table = MediaFlowTable::new(ctx.srtp);
    let mut batch = Batch::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    let mut loops = 0u64;
    // When to look again, nap or block: the same sans-IO policy as the AF_XDP worker's.
    let mut idle = IdlePolicy::new(ctx.busy_poll, ctx.coalesce_ns);
    if idle.moderates() {
        crate::sys::set_timer_slack_ns(1_000);
    }
    let mut timeout = POLL_MS;
    while !ctx.stop.load(Ordering::Relaxed) {
        // Blocks (`timeout` ms) until a datagram or a control message (the waker) arrives, or
        // only looks (0) while the policy spins or after a moderation nap; the longest block
        // bounds how late a stop request is seen, as on the AF_XDP path.
        // SAFETY: valid buffer of EVENTS entries.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), EVENTS as i32, timeout) };
        let start = monotonic_ns();
        let mut work = 0;
        // One burst gathers the datagrams of every ready socket (up to BATCH), so their SRTP
        // runs together across flows.
        let mut used = 0;
        for e in events.iter().take(n.max(0) as usize) {
            if e.u64 == u64::MAX {
                ctx.waker.drain();
                continue;
            }
            let fd = e.u64 as RawFd;
            let Some(&local) = socks.by_fd.get(&fd) else {
                continue;
            };
            // At most BATCH datagrams per socket per round, as one `recvmmsg` took before: a
            // flood on one port cannot keep the worker from the other sockets or from its
            // control messages (the rest waits for the next round, epoll is level-triggered).
            let mut taken = 0;
            while taken < BATCH {
                let room = (BATCH - used).min(BATCH - taken);
                let got = receive(&mut batch, fd, local, used, room);
                used += got;
                taken += got;
                work += got;
                if used == BATCH {
                    relay_burst(&ctx, &mut table, &socks, &mut batch, used, start);
                    used = 0;
                }
                // A socket that filled every slot offered may hold more.
                if got < room {
                    break;
                }
            }
        }
        if used > 0 {
            relay_burst(&ctx, &mut table, &socks, &mut batch, used, start);
        }
        let mut applied = false;
        while let Ok(msg) = ctx.rx.try_recv() {
            let is_remove = matches!(msg, crate::worker::Control::Remove(_));
            if let Some((id, sockets)) = ctx.apply(&mut table, msg, start) {
                if is_remove {
                    socks.remove_flow(id);
                }
                for (a, fd) in sockets {
                    socks.add(id, a, fd);
                }
            }
            applied = true;
        }
        if applied {
            ctx.stats.ack(ctx.stats.control.load(Ordering::Relaxed));
        }
        loops += 1;
        if work > 0 || applied {
            idle.busy(start, u32::try_from(work).unwrap_or(u32::MAX));
            timeout = 0;
        } else {
            timeout = match idle.idle(start) {
                IdleAction::Spin => 0,
                IdleAction::Nap(ns) => {
                    // Moderation: one wakeup for every datagram of the window, on any socket.
                    crate::sys::nap_ns(ns);
                    0
                }
                IdleAction::Poll(ms) => ms,
            };
        }
        if work > 0 {
            add(&ctx.stats.busy_ns, monotonic_ns().saturating_sub(start));
        }
        if loops.is_multiple_of(256) {
            ctx.stats.loops.store(loops, Ordering::Relaxed);
            ctx.stats.cpu_ns.store(thread_cpu_ns(), Ordering::Relaxed);
        }
    }
    ctx.stats.loops.store(loops, Ordering::Relaxed);
    ctx.stats.cpu_ns.store(thread_cpu_ns(), Ordering::Relaxed);
}

/// Receives at most `max` datagrams from `fd` (which is bound to `local`) into the batch's
/// slots `at..`; returns the number received.
fn receive(b: &mut Batch, fd: RawFd, local: SocketAddr, at: usize, max: usize) -> usize {
    let end = (at + max).min(BATCH);
    for i in at..end {
        b.iov[i] = libc::iovec {
            iov_base: b.bufs[i].as_mut_ptr().cast(),
            iov_len: BUF - 64,
        };
        let h = &mut b.hdrs[i].msg_hdr;
        h.msg_name = (&mut b.names[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        h.msg_iov = &mut b.iov[i];
        h.msg_iovlen = 1;
        h.msg_control = std::ptr::null_mut();
        h.msg_controllen = 0;
        h.msg_flags = 0;
        b.hdrs[i].msg_len = 0;
    }
    if at >= end {
        return 0;
    }
    // SAFETY: hdrs[at..end] point into b's preallocated buffers, which outlive the call.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            b.hdrs[at..].as_mut_ptr(),
            (end - at) as u32,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    let n = usize::try_from(n).unwrap_or(0);
    for l in b.locals.iter_mut().skip(at).take(n) {
        *l = local;
    }
    n
}

/// Relays the first `n` datagrams of the batch and sends the results: the relay's checks per
/// datagram in arrival order ([`MediaFlowTable::relay_front`]), the burst's SRTP in one
/// [`tollgate_srtp::process_batch`] call across flows, then per datagram the result
/// ([`MediaFlowTable::relay_back`]) and one `sendmmsg` per run of datagrams leaving through
/// the same socket.
fn relay_burst(
    ctx: &WorkerCtx,
    table: &mut MediaFlowTable,
    socks: &Sockets,
    b: &mut Batch,
    n: usize,
    now: u64,
) {
    let n = n.min(BATCH);
    add(&ctx.stats.rx, n as u64);
    // Look every datagram's flow up and start loading its state, then the checks in order.
    let mut routes: [Option<tollgate_relay::Route>; BATCH] = [None; BATCH];
    for (r, local) in routes.iter_mut().zip(&b.locals).take(n) {
        *r = table.route(*local);
        if let Some(r) = r {
            table.prefetch(r);
        }
    }
    let mut fronts: [Result<Fronted, DropReason>; BATCH] =
        [const { Err(DropReason::Malformed) }; BATCH];
    for i in 0..n {
        let len = b.hdrs[i].msg_len as usize;
        fronts[i] = match (from_storage(&b.names[i]), routes[i]) {
            (None, _) => Err(DropReason::Malformed),
            (Some(_), None) => Err(DropReason::NoFlow),
            (Some(src), Some(route)) => table.relay_front(
                &route,
                Arrival {
                    src,
                    src_mac: None,
                    now_ns: now,
                    src_checked: false,
                },
                &b.bufs[i],
                len,
            ),
        };
    }
    // The burst's SRTP, all flows at once.
    let mut outcome: [Option<Result<usize, tollgate_srtp::Error>>; BATCH] = [None; BATCH];
    {
        let mut jobs: SmallVec<[Job<'_>; BATCH]> = SmallVec::new();
        let mut job_of = [0usize; BATCH];
        for (i, (buf, f)) in b.bufs.iter_mut().zip(&fronts).take(n).enumerate() {
            if let Ok(fr) = f
                && let Some((id, op)) = fr.srtp_job()
            {
                job_of[jobs.len()] = i;
                jobs.push(Job::new(id, op, buf, fr.payload_len()));
            }
        }
        if !jobs.is_empty() {
            tollgate_srtp::process_batch(table, &mut jobs);
            for (j, &i) in jobs.iter().zip(&job_of) {
                outcome[i] = Some(j.result);
            }
        }
    }
    // Outgoing datagrams grouped by egress socket, in arrival order.
    let mut out_fd: RawFd = -1;
    let mut out_n = 0usize;
    let mut sent = 0u64;
    let mut dropped = 0u64;
    let mut pending: [Option<tollgate_relay::Relayed>; BATCH] = [None; BATCH];
    for i in 0..n {
        let fr = match fronts[i] {
            Ok(fr) => fr,
            Err(reason) => {
                // Counted in the flow's counters too, when it has one.
                ctx.stats.count_drop(reason);
                dropped += 1;
                continue;
            }
        };
        if let Some(e) = fr.event() {
            ctx.emit(e);
        }
        let r = match table.relay_back(&fr, outcome[i], &b.bufs[i]) {
            Ok(r) => r,
            Err(reason) => {
                ctx.stats.count_drop(reason);
                dropped += 1;
                continue;
            }
        };
        let Some(efd) = socks.by_addr.get(&r.header.src).map(AsRawFd::as_raw_fd) else {
            table.dropped(&r, DropReason::NoFlow);
            ctx.stats.count_drop(DropReason::NoFlow);
            dropped += 1;
            continue;
        };
        if efd != out_fd && out_n > 0 {
            let (s, d) = flush(table, b, out_fd, out_n, &mut pending, now);
            sent += s;
            dropped += d;
            add(&ctx.stats.drops[DropReason::TxFull as usize], d);
            out_n = 0;
        }
        out_fd = efd;
        let namelen = to_storage(r.header.dst, &mut b.out_names[out_n]);
        b.out_iov[out_n] = libc::iovec {
            iov_base: b.bufs[i].as_mut_ptr().cast(),
            iov_len: r.len,
        };
        let h = &mut b.out_hdrs[out_n].msg_hdr;
        h.msg_name = (&mut b.out_names[out_n] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = namelen;
        h.msg_iov = &mut b.out_iov[out_n];
        h.msg_iovlen = 1;
        h.msg_control = std::ptr::null_mut();
        h.msg_controllen = 0;
        h.msg_flags = 0;
        pending[out_n] = Some(r);
        out_n += 1;
    }
    if out_n > 0 {
        let (s, d) = flush(table, b, out_fd, out_n, &mut pending, now);
        sent += s;
        dropped += d;
        add(&ctx.stats.drops[DropReason::TxFull as usize], d);
    }
    add(&ctx.stats.tx, sent);
    add(&ctx.stats.dropped, dropped);
}

/// Sends the first `n` queued datagrams on `fd`; counts each as sent or dropped (`TxFull`) in
/// its flow's counters. Returns (sent, dropped).
fn flush(
    table: &MediaFlowTable,
    b: &mut Batch,
    fd: RawFd,
    n: usize,
    pending: &mut [Option<tollgate_relay::Relayed>; BATCH],
    now: u64,
) -> (u64, u64) {
    let mut done = 0usize;
    while done < n {
        // SAFETY: out_hdrs[done..n] point into b's buffers, which outlive the call.
        let rc = unsafe {
            libc::sendmmsg(
                fd,
                b.out_hdrs[done..].as_mut_ptr(),
                (n - done) as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if rc <= 0 {
            break;
        }
        done += rc as usize;
    }
    for (i, p) in pending.iter_mut().take(n).enumerate() {
        if let Some(r) = p.take() {
            if i < done {
                table.sent(&r, now);
            } else {
                table.dropped(&r, DropReason::TxFull);
            }
        }
    }
    (done as u64, (n - done) as u64)
}

/// Binds a non-blocking UDP socket to `local` (the control plane does this at install time),
/// and to `device` (SO_BINDTODEVICE) if given, so it takes packets only from its side's NIC.
pub fn bind_udp(local: SocketAddr, device: Option<&str>) -> std::io::Result<OwnedFd> {
    let fam = if local.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            fam,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh fd we own.
    let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let big: libc::c_int = 1 << 20;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: valid int option.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&big as *const libc::c_int).cast(),
                4,
            )
        };
    }
    if local.ip().is_ipv6() {
        let one: libc::c_int = 1;
        // SAFETY: valid int option.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                (&one as *const libc::c_int).cast(),
                4,
            )
        };
    }
    if let Some(d) = device {
        crate::sys::bind_to_device(fd, d)?;
    }
    // SAFETY: zeroed storage filled by to_storage.
    let mut ss: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
    let len = to_storage(local, &mut ss);
    // SAFETY: valid sockaddr of `len` bytes.
    if unsafe { libc::bind(fd, (&ss as *const libc::sockaddr_storage).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(owned)
}
