//! One call's media: an RTP (or SRTP) stream paced at 20 ms carrying the test tone, and a
//! receiver that checks every packet against the tone it must carry.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tollgate_srtp::{Config, Context, KeyMaterial};

use crate::tone;

/// What to send and how.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Where Tollgate relays this leg (from its SDP).
    pub remote: SocketAddr,
    /// SRTP: (our key, used to protect what we send; the peer's key, to unprotect).
    pub srtp: Option<(KeyMaterial, KeyMaterial)>,
    /// Our SSRC; also selects the tone variant the peer expects from us.
    pub ssrc: u32,
    /// Packet interval.
    pub ptime: Duration,
}

/// What a stream saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaReport {
    /// Packets sent.
    pub sent: u64,
    /// Packets received.
    pub received: u64,
    /// Received packets whose payload is exactly the tone frame their timestamp says.
    pub intact: u64,
    /// Received packets that decrypted but carried the wrong bytes.
    pub corrupted: u64,
    /// Received packets that failed SRTP authentication or replay checks.
    pub auth_failures: u64,
    /// Packets missing from the received sequence range.
    pub lost: u64,
    /// Time from start to the first packet received.
    pub first_packet_ms: Option<u64>,
    /// Time from start to the last packet received.
    pub last_packet_ms: Option<u64>,
    /// The longest silence between two received packets, ms (a relay restart shows here).
    pub max_gap_ms: u64,
    /// When the stream started (the origin of the `_ms` times above).
    pub started_at: Option<Instant>,
    /// The longest silences of at least [`LONG_GAP_MS`], as (end ms since start, length ms);
    /// unused slots are (0, 0). Tells a restart's gap from silences at other times.
    pub long_gaps: [(u64, u64); 32],
}

/// The shortest silence [`MediaReport::long_gaps`] records, ms (five packet intervals).
pub const LONG_GAP_MS: u64 = 100;

impl MediaReport {
    /// Records a silence of `gap_ms` that ended `end_ms` after the start, if it is among the
    /// longest.
    fn note_gap(&mut self, end_ms: u64, gap_ms: u64) {
        if let Some(slot) = self.long_gaps.iter_mut().min_by_key(|g| g.1)
            && gap_ms > slot.1
        {
            *slot = (end_ms, gap_ms);
        }
    }

    /// The silence in progress at instant `t` (the last packet before `t` to the first after
    /// it), ms, if it was at least [`LONG_GAP_MS`]; `None` if none was recorded.
    pub fn gap_at(&self, t: Instant) -> Option<u64> {
        let t_ms = t.checked_duration_since(self.started_at?)?.as_millis() as u64;
        self.long_gaps
            .iter()
            .filter(|&&(end, len)| len > 0 && end >= t_ms && end - len <= t_ms)
            .map(|g| g.1)
            .max()
    }

    /// The longest silence other than the one in progress at `t`, ms (from the recorded long
    /// silences; 0 if there was none of at least [`LONG_GAP_MS`]).
    pub fn longest_gap_besides(&self, t: Instant) -> u64 {
        let t_ms = self
            .started_at
            .and_then(|s| t.checked_duration_since(s))
            .map_or(0, |d| d.as_millis() as u64);
        self.long_gaps
            .iter()
            .filter(|&&(end, len)| len > 0 && !(end >= t_ms && end - len <= t_ms))
            .map(|g| g.1)
            .max()
            .unwrap_or(0)
    }

    /// Whether audio flowed and every packet received was intact.
    pub fn ok(&self) -> bool {
        self.received > 0
            && self.corrupted == 0
            && self.auth_failures == 0
            && self.intact == self.received
    }
}

/// A running stream; stopped on [`MediaStream::stop`] or drop.
#[derive(Debug)]
pub struct MediaStream {
    stop: watch::Sender<bool>,
    report: Arc<Mutex<MediaReport>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn lock(r: &Mutex<MediaReport>) -> std::sync::MutexGuard<'_, MediaReport> {
    r.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MediaStream {
    /// Starts sending and receiving on `sock`.
    pub fn start(sock: UdpSocket, cfg: MediaConfig) -> Result<MediaStream, tollgate_srtp::Error> {
        let sock = Arc::new(sock);
        let (stop, mut stopped) = watch::channel(false);
        let started = Instant::now();
        let report = Arc::new(Mutex::new(MediaReport {
            started_at: Some(started),
            ..MediaReport::default()
        }));
        let (mut tx_ctx, mut rx_ctx) = match &cfg.srtp {
            Some((ours, theirs)) => (
                Some(Context::new(ours, Config::default())?),
                Some(Context::new(theirs, Config::default())?),
            ),
            None => (None, None),
        };
        let s2 = Arc::clone(&sock);
        let r2 = Arc::clone(&report);
        let remote = cfg.remote;
        let sender = tokio::spawn(async move {
            let mut tick = tokio::time::interval(cfg.ptime);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut buf = [0u8; 256];
            for k in 0u64.. {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                buf[0] = 0x80;
                buf[1] = if k == 0 { 0x80 } else { 0 };
                buf[2..4].copy_from_slice(&(k as u16).to_be_bytes());
                buf[4..8].copy_from_slice(&((k * tone::FRAME as u64) as u32).to_be_bytes());
                buf[8..12].copy_from_slice(&cfg.ssrc.to_be_bytes());
                buf[12..12 + tone::FRAME].copy_from_slice(&tone::frame(k, cfg.ssrc));
                let mut len = 12 + tone::FRAME;
                if let Some(c) = tx_ctx.as_mut() {
                    match c.protect_rtp(&mut buf, len) {
                        Ok(n) => len = n,
                        Err(_) => continue,
                    }
                }
                if s2.send_to(&buf[..len], remote).await.is_ok() {
                    lock(&r2).sent += 1;
                }
            }
        });
        let r3 = Arc::clone(&report);
        let mut stopped2 = stop.subscribe();
        let receiver = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut seqs: Option<(u64, u64)> = None; // (first extended seq, highest)
            let mut last: u16 = 0;
            loop {
                let n = tokio::select! {
                    r = sock.recv_from(&mut buf) => match r { Ok((n, _)) => n, Err(_) => continue },
                    _ = stopped2.changed() => break,
                };
                let mut r = lock(&r3);
                let len = match rx_ctx.as_mut() {
                    Some(c) => match c.unprotect_rtp(&mut buf, n) {
                        Ok(l) => l,
                        Err(_) => {
                            r.auth_failures += 1;
                            continue;
                        }
                    },
                    None => n,
                };
                r.received += 1;
                let at = started.elapsed().as_millis() as u64;
                if r.first_packet_ms.is_none() {
                    r.first_packet_ms = Some(at);
                }
                if let Some(last) = r.last_packet_ms {
                    let gap = at.saturating_sub(last);
                    r.max_gap_ms = r.max_gap_ms.max(gap);
                    if gap >= LONG_GAP_MS {
                        r.note_gap(at, gap);
                    }
                }
                r.last_packet_ms = Some(at);
                if len < 12 + tone::FRAME || buf[0] >> 6 != 2 {
                    r.corrupted += 1;
                    continue;
                }
                let seq = u16::from_be_bytes([buf[2], buf[3]]);
                let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                let k = u64::from(ts) / tone::FRAME as u64;
                if buf[12..12 + tone::FRAME] == tone::frame(k, ssrc) {
                    r.intact += 1;
                } else {
                    r.corrupted += 1;
                }
                let ext = match seqs {
                    None => u64::from(seq),
                    Some((_, hi)) => {
                        let d = seq.wrapping_sub(last) as i16;
                        if d > 0 { hi + d as u64 } else { hi }
                    }
                };
                if d_positive(seqs, seq, last) {
                    last = seq;
                }
                seqs = Some(match seqs {
                    None => {
                        last = seq;
                        (ext, ext)
                    }
                    Some((lo, hi)) => (lo, hi.max(ext)),
                });
                if let Some((lo, hi)) = seqs {
                    r.lost = (hi - lo + 1).saturating_sub(r.received);
                }
            }
        });
        Ok(MediaStream {
            stop,
            report,
            tasks: vec![sender, receiver],
        })
    }

    /// The report so far.
    pub fn report(&self) -> MediaReport {
        *lock(&self.report)
    }

    /// Stops both directions and returns the final report.
    pub async fn stop(mut self) -> MediaReport {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.report()
    }
}

fn d_positive(seqs: Option<(u64, u64)>, seq: u16, last: u16) -> bool {
    seqs.is_some() && (seq.wrapping_sub(last) as i16) > 0
}

impl Drop for MediaStream {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
