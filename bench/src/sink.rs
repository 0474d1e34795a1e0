//! The counting and verifying sink: one UDP socket (every flow's internal peer), `recvmmsg` in
//! batches of 64, each SRTP packet unprotected with its flow's key (tollgate-srtp; the flow is
//! found from the SSRC), its payload checked against what the generator wrote, and its one-way
//! latency (`CLOCK_MONOTONIC` at `recvmmsg` return minus the send time in the payload) recorded.
//!
//! The sink runs for a whole benchmark phase; the orchestrator takes its counters at trial
//! boundaries. Packets of an earlier trial (late arrivals) are counted apart as stale.

use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tollgate_srtp::{Config, Context, KeyMaterial};

use crate::generator::{RTP_LEN, now_ns, payload};
use crate::hist::Hist;
use crate::procstat::gettid;

const BATCH: usize = 64;
const BUF: usize = 512;

/// Counters of one trial.
#[derive(Debug, Clone, Default)]
pub struct SinkStats {
    /// Packets of the current trial that verified.
    pub ok: u64,
    /// SRTP authentication (or other unprotect) failures.
    pub auth_fail: u64,
    /// Decrypted but not what the generator sent (wrong flow, size or bytes).
    pub bad_payload: u64,
    /// Unknown SSRC or not RTP.
    pub unknown: u64,
    /// Packets from an earlier trial.
    pub stale: u64,
    /// Packets whose per-flow counter went backwards (reordered or duplicated).
    pub reordered: u64,
    /// One-way latency of verified packets, ns.
    pub latency: Hist,
}

/// The sink's shared state.
#[derive(Debug)]
pub struct SinkShared {
    /// Current trial id (packets with another id are stale).
    pub trial: AtomicU32,
    /// Counters since the last `take`.
    pub stats: Mutex<SinkStats>,
    /// Stop request.
    pub stop: AtomicBool,
    /// The sink thread's id once running.
    pub tid: AtomicU32,
    /// Verify (decrypt) packets; when false, payloads are read as plain RTP.
    pub decrypt: bool,
}

impl SinkShared {
    /// New shared state.
    pub fn new(decrypt: bool) -> Arc<SinkShared> {
        Arc::new(SinkShared {
            trial: AtomicU32::new(0),
            stats: Mutex::new(SinkStats::default()),
            stop: AtomicBool::new(false),
            tid: AtomicU32::new(0),
            decrypt,
        })
    }

    /// Starts a trial: sets its id and clears the counters.
    pub fn begin(&self, trial: u32) {
        self.trial.store(trial, Ordering::SeqCst);
        if let Ok(mut s) = self.stats.lock() {
            *s = SinkStats::default();
        }
    }

    /// The counters so far.
    pub fn take(&self) -> SinkStats {
        self.stats
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }
}

fn udp_socket(bind: SocketAddrV4) -> anyhow::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        anyhow::bail!("socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fresh fd.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let big: libc::c_int = 64 << 20;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: valid options.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&big as *const libc::c_int).cast(),
            4,
        );
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
    }
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: bind.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*bind.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: valid sockaddr_in.
    let rc = unsafe {
        libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
    };
    if rc != 0 {
        anyhow::bail!("bind {bind}: {}", std::io::Error::last_os_error());
    }
    Ok(owned)
}

/// Runs the sink on `bind` (the caller is in the sink's namespace) until `shared.stop`.
/// `keys[i]` is flow `i`'s key (SSRC `ssrc_base + i`); `ready` is set once the socket is bound.
pub fn run(
    bind: SocketAddrV4,
    keys: &[KeyMaterial],
    ssrc_base: u32,
    shared: &SinkShared,
    ready: &AtomicBool,
) -> anyhow::Result<()> {
    let sock = udp_socket(bind)?;
    let fd = sock.as_raw_fd();
    shared.tid.store(gettid(), Ordering::SeqCst);
    let mut ctxs: Vec<Context> = if shared.decrypt {
        keys.iter()
            .map(|k| Context::new(k, Config::default()))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("SRTP context: {e}"))?
    } else {
        Vec::new()
    };
    let n_flows = keys.len();
    let mut last_counter: Vec<u32> = vec![u32::MAX; n_flows];
    ready.store(true, Ordering::SeqCst);
    let mut bufs = vec![[0u8; BUF]; BATCH];
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: BUF,
        })
        .collect();
    // SAFETY: all-zero mmsghdr is valid.
    let mut hdrs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (h, v) in hdrs.iter_mut().zip(iov.iter_mut()) {
        h.msg_hdr.msg_iov = v;
        h.msg_hdr.msg_iovlen = 1;
    }
    while !shared.stop.load(Ordering::Relaxed) {
        // SAFETY: hdrs point into bufs, alive for the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        let now = now_ns();
        if n <= 0 {
            continue;
        }
        let trial = shared.trial.load(Ordering::Relaxed);
        // Counted under the lock (uncontended: the orchestrator takes it once per trial).
        let Ok(mut guard) = shared.stats.lock() else {
            break;
        };
        let local = &mut *guard;
        for i in 0..n as usize {
            let len = hdrs[i].msg_len as usize;
            let b = &mut bufs[i];
            let Some(ssrc) = b
                .get(8..12)
                .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
            else {
                local.unknown += 1;
                continue;
            };
            let f = ssrc.wrapping_sub(ssrc_base) as usize;
            if f >= n_flows || len < RTP_LEN {
                local.unknown += 1;
                continue;
            }
            let plain = if shared.decrypt {
                match ctxs[f].unprotect_rtp(&mut b[..], len) {
                    Ok(m) => m,
                    Err(_) => {
                        local.auth_fail += 1;
                        continue;
                    }
                }
            } else {
                len
            };
            let p = &b[12..];
            let rd = |at: usize| u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]]);
            if plain != RTP_LEN || rd(payload::FLOW) as usize != f {
                local.bad_payload += 1;
                continue;
            }
            if rd(payload::TRIAL) != trial {
                local.stale += 1;
                continue;
            }
            let c = rd(payload::COUNTER);
            let lc = &mut last_counter[f];
            if *lc != u32::MAX && c <= *lc {
                local.reordered += 1;
            } else {
                *lc = c;
            }
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&p[payload::TS..payload::TS + 8]);
            local
                .latency
                .record(now.saturating_sub(u64::from_be_bytes(ts)));
            local.ok += 1;
        }
    }
    Ok(())
}
