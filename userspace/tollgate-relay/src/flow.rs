//! What the control plane asks the data plane to relay: one media stream (one SDP m-line)
//! between a gateway-side leg and an internal-side leg, and the counters it can read back.
//!
//! Calls survive a restart: each side's counters publish where its SRTP stream stands
//! ([`SideSnapshot::srtp_resume`]), the control plane stores that, and a restarted process
//! installs the flow again with [`MediaFlowSpec::resume`] so the streams continue there.

use std::sync::atomic::{AtomicU64, Ordering};

pub use tollgate_common::Side;
pub use tollgate_common::spec::{LegSpec, MediaFlowSpec, SrtpResume, TransformSpec};

/// Why a packet was not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DropReason {
    /// Not a well-formed Ethernet/IP/UDP frame (or a datagram whose source address the socket
    /// worker cannot read). Counted per worker: no flow is known for such a frame.
    Malformed = 0,
    /// No flow on this port (raced with removal), or no socket for the flow's egress port.
    /// Counted per worker, and per flow when the flow is known.
    NoFlow,
    /// Source address not the expected one (socket path; XDP drops these before us).
    Source,
    /// The egress peer's address is not known yet.
    NoRemote,
    /// The next hop's MAC is not resolved (XDP path).
    NoNextHop,
    /// Too short to be RTP/RTCP.
    NotRtp,
    /// SRTP/SRTCP authentication failed.
    AuthFailed,
    /// Replayed packet.
    Replayed,
    /// Too old for the replay window.
    TooOld,
    /// Any other SRTP refusal (too many SSRCs, header, tailroom…).
    SrtpOther,
    /// No room in the frame for the egress header or tag.
    NoRoom,
    /// The TX ring was full.
    TxFull,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 12;

    /// Every reason, in index order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Malformed,
        DropReason::NoFlow,
        DropReason::Source,
        DropReason::NoRemote,
        DropReason::NoNextHop,
        DropReason::NotRtp,
        DropReason::AuthFailed,
        DropReason::Replayed,
        DropReason::TooOld,
        DropReason::SrtpOther,
        DropReason::NoRoom,
        DropReason::TxFull,
    ];

    /// Label for metrics and CDRs.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NoFlow => "no_flow",
            DropReason::Source => "source",
            DropReason::NoRemote => "no_remote",
            DropReason::NoNextHop => "no_next_hop",
            DropReason::NotRtp => "not_rtp",
            DropReason::AuthFailed => "auth_failed",
            DropReason::Replayed => "replayed",
            DropReason::TooOld => "too_old",
            DropReason::SrtpOther => "srtp_other",
            DropReason::NoRoom => "no_room",
            DropReason::TxFull => "tx_full",
        }
    }

    /// Maps an SRTP refusal to a drop reason.
    pub fn from_srtp(kind: tollgate_srtp::ErrorKind) -> DropReason {
        use tollgate_srtp::ErrorKind as K;
        match kind {
            K::AuthFailed => DropReason::AuthFailed,
            K::Replayed => DropReason::Replayed,
            K::TooOld => DropReason::TooOld,
            K::TooShort => DropReason::NotRtp,
            _ => DropReason::SrtpOther,
        }
    }
}

/// Counters for packets arriving on one side of one flow. Written by exactly one worker
/// (plain relaxed load+store, no read-modify-write), read by the control plane at any time.
#[derive(Debug, Default)]
pub struct SideCounters {
    /// Packets relayed.
    pub packets: AtomicU64,
    /// Payload bytes relayed (after the transform).
    pub bytes: AtomicU64,
    /// RTCP packets among `packets`.
    pub rtcp: AtomicU64,
    /// Drops by [`DropReason`] index.
    pub drops: [AtomicU64; DropReason::COUNT],
    /// CLOCK_MONOTONIC ns of the last packet relayed (0 = never).
    pub last_seen_ns: AtomicU64,
    /// RTP packets lost, from sequence numbers (RFC 3550 A.3), all sources so far.
    pub lost: AtomicU64,
    /// Interarrival jitter in RTP timestamp units at 8 kHz (RFC 3550 A.8).
    pub jitter_ts: AtomicU64,
    /// Where the SRTP stream last relayed (protected or unprotected) on this side stands:
    /// `0` = none yet, else `((ssrc << 32) | roc) + 1` (see [`SideSnapshot::srtp_ssrc`]).
    /// Stored when the SSRC changes or the ROC advances, not per packet.
    pub srtp_pos: AtomicU64,
    /// The last SRTCP index sent (protect side; 0 = none), for the sender SSRC of the last
    /// RTCP packet protected on this side (normally the SSRC of `srtp_pos`), stored per
    /// protected RTCP packet.
    pub srtcp_tx: AtomicU64,
}

/// [`SideCounters::srtp_pos`] of a stream. The encoding cannot represent SSRC `0xffff_ffff` at
/// ROC `0xffff_ffff` (2^48 packets into the stream), which would read as "none".
#[inline]
pub(crate) fn srtp_pos(ssrc: u32, roc: u32) -> u64 {
    ((u64::from(ssrc) << 32) | u64::from(roc)).wrapping_add(1)
}

/// A plain snapshot of [`SideCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SideSnapshot {
    /// Packets relayed.
    pub packets: u64,
    /// Bytes relayed.
    pub bytes: u64,
    /// RTCP packets relayed.
    pub rtcp: u64,
    /// Drops by reason.
    pub drops: [u64; DropReason::COUNT],
    /// Last packet time (CLOCK_MONOTONIC ns), 0 if none.
    pub last_seen_ns: u64,
    /// RTP packets lost (sequence gaps).
    pub lost: u64,
    /// Interarrival jitter, RTP timestamp units at 8 kHz.
    pub jitter_ts: u64,
    /// SSRC of the SRTP stream last relayed on this side, if any (SRTP transforms only).
    pub srtp_ssrc: Option<u32>,
    /// Its rollover counter (meaningful with `srtp_ssrc`).
    pub srtp_roc: u32,
    /// The last SRTCP index sent (protect side; 0 = none).
    pub srtcp_tx: u32,
}

impl SideSnapshot {
    /// Total drops.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Drops for one reason.
    pub fn drop(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }

    /// Where this side's SRTP stream continues after a restart: for
    /// [`MediaFlowSpec::resume`] at this side's index.
    pub fn srtp_resume(&self) -> Option<SrtpResume> {
        Some(SrtpResume {
            ssrc: self.srtp_ssrc?,
            roc: self.srtp_roc,
            srtcp_index: self.srtcp_tx,
        })
    }

    /// Adds another worker's snapshot of the same flow side. The SRTP position is the one of
    /// the worker that relayed last; the SRTCP index the highest (continuing above it is safe).
    pub fn merge(&mut self, o: &SideSnapshot) {
        if o.srtp_ssrc.is_some() && (self.srtp_ssrc.is_none() || o.last_seen_ns > self.last_seen_ns)
        {
            self.srtp_ssrc = o.srtp_ssrc;
            self.srtp_roc = o.srtp_roc;
        }
        self.srtcp_tx = self.srtcp_tx.max(o.srtcp_tx);
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.rtcp += o.rtcp;
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
        self.last_seen_ns = self.last_seen_ns.max(o.last_seen_ns);
        self.lost += o.lost;
        self.jitter_ts = self.jitter_ts.max(o.jitter_ts);
    }
}

#[inline]
fn bump(c: &AtomicU64, by: u64) {
    c.store(
        c.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

impl SideCounters {
    #[inline]
    pub(crate) fn relayed(&self, bytes: usize, rtcp: bool, now_ns: u64) {
        bump(&self.packets, 1);
        bump(&self.bytes, bytes as u64);
        if rtcp {
            bump(&self.rtcp, 1);
        }
        self.last_seen_ns.store(now_ns, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn dropped(&self, r: DropReason) {
        bump(&self.drops[r as usize], 1);
    }

    /// A consistent-enough snapshot (each field read once).
    pub fn snapshot(&self) -> SideSnapshot {
        let mut drops = [0; DropReason::COUNT];
        for (d, c) in drops.iter_mut().zip(self.drops.iter()) {
            *d = c.load(Ordering::Relaxed);
        }
        let pos = self.srtp_pos.load(Ordering::Relaxed);
        let (srtp_ssrc, srtp_roc) = match pos.checked_sub(1) {
            Some(p) => (Some((p >> 32) as u32), p as u32),
            None => (None, 0),
        };
        SideSnapshot {
            srtp_ssrc,
            srtp_roc,
            srtcp_tx: self.srtcp_tx.load(Ordering::Relaxed) as u32,
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            rtcp: self.rtcp.load(Ordering::Relaxed),
            drops,
            last_seen_ns: self.last_seen_ns.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            jitter_ts: self.jitter_ts.load(Ordering::Relaxed),
        }
    }
}

/// Counters of one flow in one worker: index by the side packets arrive on.
#[derive(Debug, Default)]
pub struct FlowCounters {
    /// `[ext, int]`.
    pub sides: [SideCounters; 2],
}

/// Receive statistics of one RTP source (RFC 3550 A.1, A.3, A.8), kept by the worker.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RtpStats {
    ssrc: u32,
    started: bool,
    base: u64,
    max: u64,
    received: u64,
    lost_before: u64,
    transit: i64,
    jitter_q4: u64,
}

impl RtpStats {
    /// Accounts one RTP packet (header in clear: `hdr` is at least 12 bytes) arriving at
    /// `now_ns`, and publishes loss and jitter into `c`.
    #[inline]
    pub(crate) fn packet(&mut self, hdr: &[u8], now_ns: u64, c: &SideCounters) {
        let (Some(s), Some(t), Some(x)) = (hdr.get(2..4), hdr.get(4..8), hdr.get(8..12)) else {
            return;
        };
        let seq = u16::from_be_bytes([s[0], s[1]]);
        let ts = u32::from_be_bytes([t[0], t[1], t[2], t[3]]);
        let ssrc = u32::from_be_bytes([x[0], x[1], x[2], x[3]]);
        // Arrival time in 8 kHz timestamp units (G.711, G.722 and telephone-event all tick at 8 kHz).
        let arrival = (now_ns / 125_000) as i64;
        if !self.started || ssrc != self.ssrc {
            self.lost_before += self.lost();
            *self = RtpStats {
                ssrc,
                started: true,
                base: u64::from(seq),
                max: u64::from(seq),
                received: 0,
                lost_before: self.lost_before,
                transit: arrival - i64::from(ts),
                jitter_q4: self.jitter_q4,
            };
        } else {
            let delta = seq.wrapping_sub(self.max as u16) as i16;
            if delta > 0 {
                self.max += delta as u64;
            }
            let transit = arrival.wrapping_sub(i64::from(ts));
            let d = transit.wrapping_sub(self.transit).unsigned_abs();
            self.transit = transit;
            // J += (|D| - J) / 16, with J kept scaled by 16.
            self.jitter_q4 = self.jitter_q4 + d.min(1 << 24) - ((self.jitter_q4 + 8) >> 4);
        }
        self.received += 1;
        c.lost
            .store(self.lost_before + self.lost(), Ordering::Relaxed);
        c.jitter_ts.store(self.jitter_q4 >> 4, Ordering::Relaxed);
    }

    fn lost(&self) -> u64 {
        if !self.started {
            return 0;
        }
        (self.max - self.base + 1).saturating_sub(self.received)
    }
}
