//! The packet generator: G.711-sized RTP (12-byte header + 160-byte payload = 172 bytes of UDP
//! payload) over many flows, from an `AF_PACKET` socket that bypasses the qdisc, in batches of
//! up to 64 frames per `sendmmsg`.
//!
//! Frames are built from a per-flow template (Ethernet, IPv4 with a precomputed header checksum,
//! UDP, RTP); per packet only the RTP sequence number and timestamp and the first 20 payload
//! bytes change, and the UDP checksum is finished incrementally from the template's partial sum.
//! The payload carries the send time (`CLOCK_MONOTONIC`, taken just before the batch is handed
//! to the kernel), the flow index, a per-flow packet counter and the trial id.
//!
//! Pacing: packet `k` of a trial is due at `t0 + k / rate`, flows in round-robin order, so each
//! flow gets `rate / flows` packets/s; with `rate = 50 * flows` that is real-time G.711 at 20 ms
//! ptime. When ahead, the generator sleeps (absolute `clock_nanosleep`) until a small burst is
//! due, so its own CPU time measures its real work: its headroom is `1 - cpu / wall`.
//! Optionally it SRTP-protects each packet itself (for the kernel-forwarding baseline).

use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use tollgate_relay::frame::{fold, sum_words};
use tollgate_srtp::{Config, Context};

use crate::procstat::gettid;

/// Frames per `sendmmsg`.
pub const BATCH: usize = 64;
/// UDP payload bytes (RTP header + G.711 20 ms).
pub const RTP_LEN: usize = 172;
const HDRS: usize = 14 + 20 + 8;
const SLOT: usize = 256;

/// What the payload's first bytes carry.
pub mod payload {
    /// Send time, ns, `CLOCK_MONOTONIC`, big endian (bytes 0..8 of the RTP payload).
    pub const TS: usize = 0;
    /// Flow index (8..12).
    pub const FLOW: usize = 8;
    /// Per-flow packet counter (12..16).
    pub const COUNTER: usize = 12;
    /// Trial id (16..20).
    pub const TRIAL: usize = 16;
    /// Bytes that change per packet.
    pub const VARIABLE: usize = 20;
}

/// One flow the generator sends.
#[derive(Debug, Clone, Copy)]
pub struct GenFlow {
    /// Source (the gateway).
    pub src: SocketAddrV4,
    /// Destination (the relay's port, or the sink for the baseline).
    pub dst: SocketAddrV4,
    /// RTP SSRC.
    pub ssrc: u32,
}

/// Per-flow sending state that persists across trials (sequence numbers must keep rising, or
/// the receiver's replay protection would reject a restarted stream).
#[derive(Debug)]
pub struct GenState {
    flows: Vec<GenFlow>,
    templates: Vec<[u8; SLOT]>,
    /// UDP checksum partial sum of each template (variable fields zero).
    base_sum: Vec<u64>,
    seq: Vec<u16>,
    counter: Vec<u32>,
    /// SRTP contexts when the generator protects packets itself.
    srtp: Option<Vec<Context>>,
    next_flow: usize,
}

impl GenState {
    /// Builds the templates. `protect`: keys per flow to SRTP-protect with (baseline runs).
    pub fn new(
        flows: Vec<GenFlow>,
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        protect: Option<Vec<tollgate_srtp::KeyMaterial>>,
    ) -> anyhow::Result<GenState> {
        let tag = if protect.is_some() { 10 } else { 0 };
        let udp_len = 8 + RTP_LEN + tag;
        let mut templates = Vec::with_capacity(flows.len());
        let mut base_sum = Vec::with_capacity(flows.len());
        for f in &flows {
            let mut t = [0u8; SLOT];
            t[0..6].copy_from_slice(&dst_mac);
            t[6..12].copy_from_slice(&src_mac);
            t[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            let ip = &mut t[14..34];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
            ip[6] = 0x40; // DF
            ip[8] = 64;
            ip[9] = 17;
            ip[12..16].copy_from_slice(&f.src.ip().octets());
            ip[16..20].copy_from_slice(&f.dst.ip().octets());
            let c = !fold(sum_words(ip, 0));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let udp = &mut t[34..42];
            udp[0..2].copy_from_slice(&f.src.port().to_be_bytes());
            udp[2..4].copy_from_slice(&f.dst.port().to_be_bytes());
            udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
            let rtp = &mut t[42..42 + RTP_LEN];
            rtp[0] = 0x80; // V=2, PT 0 (PCMU)
            rtp[8..12].copy_from_slice(&f.ssrc.to_be_bytes());
            for (i, b) in rtp[12 + payload::VARIABLE..].iter_mut().enumerate() {
                *b = 0xd5 ^ (i as u8); // PCMU-ish filler
            }
            let mut s = sum_words(&f.src.ip().octets(), 0) + sum_words(&f.dst.ip().octets(), 0);
            s += 17 + udp_len as u64;
            s = sum_words(&t[34..42 + RTP_LEN], s);
            templates.push(t);
            base_sum.push(s);
        }
        let srtp = match protect {
            Some(keys) => Some(
                keys.iter()
                    .map(|k| Context::new(k, Config::default()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| anyhow::anyhow!("SRTP context: {e}"))?,
            ),
            None => None,
        };
        let n = flows.len();
        Ok(GenState {
            flows,
            templates,
            base_sum,
            seq: vec![0; n],
            counter: vec![0; n],
            srtp,
            next_flow: 0,
        })
    }

    /// Flows.
    pub fn flows(&self) -> usize {
        self.flows.len()
    }
}

/// What one trial's sending did.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct GenReport {
    /// Packets handed to the kernel.
    pub sent: u64,
    /// Packets that were due by the end (the offered load).
    pub due: u64,
    /// `sendmmsg` failures (or short sends), in packets.
    pub send_errors: u64,
    /// Wall time of the sending phase, ns.
    pub wall_ns: u64,
    /// The generator thread's CPU time during it, ns.
    pub cpu_ns: u64,
    /// Largest lateness of a batch behind its schedule, ns.
    pub max_lag_ns: u64,
    /// Whether it kept up (sent at least 99.5% of what was due, never more than 20 ms late).
    pub kept_up: bool,
}

impl GenReport {
    /// CPU / wall of the generator thread.
    pub fn busy(&self) -> f64 {
        if self.wall_ns == 0 {
            0.0
        } else {
            self.cpu_ns as f64 / self.wall_ns as f64
        }
    }
}

/// Monotonic clock, ns.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn sleep_until(t: u64) {
    let ts = libc::timespec {
        tv_sec: (t / 1_000_000_000) as libc::time_t,
        tv_nsec: (t % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: valid timespec; absolute monotonic sleep.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

fn ifindex(name: &str) -> anyhow::Result<i32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        anyhow::bail!("no interface {name}: {}", std::io::Error::last_os_error());
    }
    Ok(i as i32)
}

/// An `AF_PACKET` socket bound to `iface`, bypassing the qdisc.
pub fn packet_socket(iface: &str) -> anyhow::Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        anyhow::bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fresh fd we own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    let big: libc::c_int = 8 << 20;
    // SAFETY: valid int options on our socket.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            (&one as *const libc::c_int).cast(),
            4,
        );
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            (&big as *const libc::c_int).cast(),
            4,
        );
    }
    // SAFETY: zeroed sockaddr_ll filled below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = 0; // send only: receive nothing
    let _ = proto;
    sll.sll_ifindex = ifindex(iface)?;
    // SAFETY: valid sockaddr_ll.
    let rc = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        anyhow::bail!(
            "bind AF_PACKET to {iface}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(owned)
}

/// Trial parameters.
#[derive(Debug, Clone, Copy)]
pub struct Trial {
    /// Offered packets/s over all flows.
    pub rate: f64,
    /// Sending time, ns.
    pub duration_ns: u64,
    /// Id written into every payload.
    pub trial_id: u32,
}

/// Sends one trial from `iface` (the caller is in the generator's namespace). Returns the
/// state (for the next trial) and the report.
pub fn run(
    iface: &str,
    mut st: GenState,
    t: Trial,
    stop: &AtomicBool,
) -> anyhow::Result<(GenState, GenReport)> {
    let sock = packet_socket(iface)?;
    let fd = sock.as_raw_fd();
    // SAFETY: prctl with an integer argument.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0, 0, 0) };
    let tid = gettid();
    let pid = std::process::id();
    let n_flows = st.flows.len();
    if n_flows == 0 || t.rate.is_nan() || t.rate <= 0.0 {
        anyhow::bail!("nothing to send");
    }
    let tag = if st.srtp.is_some() { 10 } else { 0 };
    let frame_len = HDRS + RTP_LEN + tag;
    let mut slots = vec![[0u8; SLOT]; BATCH];
    let mut iov: Vec<libc::iovec> = slots
        .iter_mut()
        .map(|s| libc::iovec {
            iov_base: s.as_mut_ptr().cast(),
            iov_len: frame_len,
        })
        .collect();
    // SAFETY: all-zero mmsghdr is valid.
    let mut hdrs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (h, v) in hdrs.iter_mut().zip(iov.iter_mut()) {
        h.msg_hdr.msg_iov = v;
        h.msg_hdr.msg_iovlen = 1;
    }
    let ns_per_pkt = 1e9 / t.rate;
    // Sleep until about 100 us worth of packets (1..=BATCH) is due.
    let burst = ((t.rate * 100e-6) as u64).clamp(1, BATCH as u64);
    let cpu0 = crate::procstat::thread_run_ns(pid, tid).unwrap_or(0);
    let t0 = now_ns() + 1_000_000;
    let end = t0 + t.duration_ns;
    let total = (t.duration_ns as f64 / ns_per_pkt) as u64;
    let mut rep = GenReport::default();
    sleep_until(t0);
    while !stop.load(Ordering::Relaxed) {
        let now = now_ns();
        if now >= end || rep.sent >= total {
            break;
        }
        let due = ((((now - t0) as f64) / ns_per_pkt) as u64 + 1).min(total);
        if rep.sent >= due {
            let next = t0 + ((rep.sent + burst) as f64 * ns_per_pkt) as u64;
            sleep_until(next.min(end));
            continue;
        }
        let lag = now.saturating_sub(t0 + (rep.sent as f64 * ns_per_pkt) as u64);
        rep.max_lag_ns = rep.max_lag_ns.max(lag);
        let n = ((due - rep.sent) as usize).min(BATCH);
        // Build: template, RTP seq/ts, payload fields except the time.
        let mut flow_of = [0usize; BATCH];
        for (k, slot) in slots.iter_mut().take(n).enumerate() {
            let f = st.next_flow;
            st.next_flow = if f + 1 == n_flows { 0 } else { f + 1 };
            flow_of[k] = f;
            slot.copy_from_slice(&st.templates[f]);
            let seq = st.seq[f];
            st.seq[f] = seq.wrapping_add(1);
            let cnt = st.counter[f];
            st.counter[f] = cnt.wrapping_add(1);
            let rtp = &mut slot[HDRS..];
            rtp[2..4].copy_from_slice(&seq.to_be_bytes());
            rtp[4..8].copy_from_slice(&cnt.wrapping_mul(160).to_be_bytes());
            let p = &mut rtp[12..];
            p[payload::FLOW..payload::FLOW + 4].copy_from_slice(&(f as u32).to_be_bytes());
            p[payload::COUNTER..payload::COUNTER + 4].copy_from_slice(&cnt.to_be_bytes());
            p[payload::TRIAL..payload::TRIAL + 4].copy_from_slice(&t.trial_id.to_be_bytes());
        }
        let stamp = now_ns().to_be_bytes();
        for (k, slot) in slots.iter_mut().take(n).enumerate() {
            let f = flow_of[k];
            slot[HDRS + 12..HDRS + 20].copy_from_slice(&stamp);
            if let Some(ctxs) = st.srtp.as_mut() {
                let rtp = &mut slot[HDRS..];
                if ctxs[f].protect_rtp(rtp, RTP_LEN).is_err() {
                    rep.send_errors += 1;
                }
                // Full checksum over the protected datagram.
                let ip = &slot[14..34];
                let mut s = sum_words(&ip[12..20], 0) + 17 + (8 + RTP_LEN + tag) as u64;
                slot[40..42].copy_from_slice(&[0, 0]);
                s = sum_words(&slot[34..HDRS + RTP_LEN + tag], s);
                let mut c = !fold(s);
                if c == 0 {
                    c = 0xffff;
                }
                slot[40..42].copy_from_slice(&c.to_be_bytes());
            } else {
                let s = sum_words(&slot[HDRS..HDRS + 12 + payload::VARIABLE], 0) + st.base_sum[f]
                    - sum_words(&st.templates[f][HDRS..HDRS + 12 + payload::VARIABLE], 0);
                let mut c = !fold(s);
                if c == 0 {
                    c = 0xffff;
                }
                slot[40..42].copy_from_slice(&c.to_be_bytes());
            }
        }
        let mut done = 0usize;
        while done < n {
            // SAFETY: hdrs/iov point into `slots`, alive for the call.
            let rc = unsafe { libc::sendmmsg(fd, hdrs[done..].as_mut_ptr(), (n - done) as u32, 0) };
            if rc <= 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ENOBUFS) || e.raw_os_error() == Some(libc::EAGAIN)
                {
                    rep.send_errors += (n - done) as u64;
                }
                break;
            }
            done += rc as usize;
        }
        rep.sent += n as u64;
    }
    let stop_at = now_ns().min(end).max(t0);
    rep.wall_ns = stop_at - t0;
    rep.due = ((rep.wall_ns as f64 / ns_per_pkt) as u64).min(total);
    rep.cpu_ns = crate::procstat::thread_run_ns(pid, tid)
        .unwrap_or(0)
        .saturating_sub(cpu0);
    rep.kept_up = rep.sent as f64 >= rep.due as f64 * 0.995 && rep.max_lag_ns < 20_000_000;
    Ok((st, rep))
}
