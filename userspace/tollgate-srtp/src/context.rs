//! One direction of one SRTP session: the session keys derived once from the master key, a
//! preallocated table of streams (one per SSRC: ROC/highest index, SRTCP indices and the two
//! replay windows), and the four in-place transforms.
//!
//! Processing order for a received packet (matches libsrtp's accept/reject decisions):
//! parse the header, find the stream (a new SSRC is only admitted once its packet
//! authenticates), estimate the index, check the replay window, verify the tag, then commit
//! the index and decrypt. A refused packet leaves the stream state and the buffer untouched.
//!
//! Resuming after a restart ([`Context::resume`]): a stream can be pre-created *pending* at a
//! stored ROC. Pending streams live at the top of the stream table, outside the range the
//! per-packet lookup scans, so established streams pay nothing for them; only the path that
//! admits a new SSRC looks there. A pending stream's first RTP packet gets index
//! `ROC << 16 | SEQ` (RFC 3711 §3.3.1: the replay window starts empty and the first
//! authenticated packet sets the highest index) and the stream then joins the active range.

use crate::crypto::{Aes, Gcm, HmacSha1, kdf, label, tags_equal};
use crate::error::Error;
use crate::replay::{Check, Geometry, estimate};
use crate::{KeyMaterial, Profile};

/// Largest supported replay window (libsrtp's limit is below 0x8000 too).
pub const MAX_REPLAY_WINDOW: usize = 32768;
/// Largest supported stream table.
pub const MAX_STREAMS: usize = 65536;

/// Per-context settings, fixed at [`Context::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Replay window in packets (128..=32768; default 128, as libsrtp). Applies to SRTP and,
    /// in Tollgate, to SRTCP too (libsrtp's SRTCP window is fixed at 128).
    pub replay_window: usize,
    /// SSRCs per context (default 8). A new SSRC beyond this is refused with
    /// [`crate::ErrorKind::TooManyStreams`].
    pub max_streams: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            replay_window: 128,
            max_streams: 8,
        }
    }
}

/// Session keys of one of SRTP or SRTCP.
#[derive(Clone)]
pub(crate) enum Keys {
    /// AES counter mode + HMAC-SHA1.
    Cm {
        aes: Aes,
        salt: [u8; 14],
        mac: HmacSha1,
    },
    /// AES-GCM.
    Gcm { aead: Gcm, salt: [u8; 12] },
}

impl Keys {
    /// Derives the session keys with labels `enc`, `auth`, `salt` (RFC 3711 §4.3, KDR 0).
    fn derive(profile: Profile, master: &Aes, master_salt: &[u8], labels: [u8; 3]) -> Keys {
        let [enc, auth, salt_label] = labels;
        let mut key = [0u8; 32];
        let k = &mut key[..profile.key_len()];
        kdf(master, master_salt, enc, k);
        let keys = if profile.is_aead() {
            let mut salt = [0u8; 12];
            kdf(master, master_salt, salt_label, &mut salt);
            Keys::from_session(profile, k, &salt, &[])
        } else {
            let mut salt = [0u8; 14];
            kdf(master, master_salt, salt_label, &mut salt);
            let mut a = [0u8; 20];
            kdf(master, master_salt, auth, &mut a);
            let keys = Keys::from_session(profile, k, &salt, &a);
            a.fill(0);
            keys
        };
        key.fill(0);
        keys
    }

    /// Keys from session key, salt and (for CM) auth key. Lengths come from the profile, so
    /// the fallible constructors below cannot fail; a wrong length is a programming error.
    pub(crate) fn from_session(profile: Profile, key: &[u8], salt: &[u8], auth: &[u8]) -> Keys {
        if profile.is_aead() {
            let mut s = [0u8; 12];
            let n = salt.len().min(12);
            s[..n].copy_from_slice(&salt[..n]);
            Keys::Gcm {
                aead: Gcm::new(key).expect("GCM key length comes from the profile"),
                salt: s,
            }
        } else {
            let mut s = [0u8; 14];
            let n = salt.len().min(14);
            s[..n].copy_from_slice(&salt[..n]);
            Keys::Cm {
                aes: Aes::new(key).expect("AES key length comes from the profile"),
                salt: s,
                mac: HmacSha1::new(auth),
            }
        }
    }
}

/// State of one SSRC.
#[derive(Debug, Clone, Copy, Default)]
struct Stream {
    ssrc: u32,
    /// Highest SRTP index (ROC << 16 | SEQ) sent or received.
    rtp_index: u64,
    /// Highest SRTCP index received.
    rtcp_rx: u64,
    /// Last SRTCP index sent (the first sent is 1).
    rtcp_tx: u32,
}

/// Work left after the header/replay/auth stage of an AES-CM SRTP packet: the keystream to
/// apply to `buf[start..end]` and, when protecting, the tag to write at `end`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deferred {
    pub(crate) iv: [u8; 16],
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// `Some(roc)` when protecting: HMAC(buf[..end] || roc) goes at `end`.
    pub(crate) protect_roc: Option<u32>,
}

/// An SRTP packet located against the state: see `Context::unprotect_rtp_locate`.
struct Located {
    h: RtpHeader,
    slot: Option<usize>,
    body: usize,
    delta: i64,
    est: u64,
}

/// One direction of one SRTP session (one master key), any number of SSRCs up to
/// [`Config::max_streams`]. Protect and unprotect never allocate, lock or make syscalls.
pub struct Context {
    profile: Profile,
    rtp: Keys,
    rtcp: Keys,
    geo: Geometry,
    /// `streams[..n_streams]` are active; `streams[len - n_pending..]` are pending (resumed,
    /// no RTP packet yet: `rtp_index` holds `ROC << 16`, the base of their first index).
    streams: Box<[Stream]>,
    n_streams: usize,
    n_pending: usize,
    /// Two windows (SRTP, SRTCP) of `geo.words` words per stream slot.
    windows: Box<[u64]>,
    lifetime: Option<u64>,
    used: u64,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys.
        f.debug_struct("Context")
            .field("profile", &self.profile)
            .field("replay_window", &self.geo.size)
            .field("streams", &self.n_streams)
            .field("pending", &self.n_pending)
            .field("max_streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

/// Parsed fixed RTP header fields.
#[derive(Debug, Clone, Copy)]
struct RtpHeader {
    /// Header length including CSRCs and the extension.
    len: usize,
    seq: u16,
    ssrc: u32,
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, c, d, e]) => u32::from_be_bytes([a, c, d, e]),
        _ => 0,
    }
}

/// Parses an RTP header; `avail` is how many bytes it may occupy (the packet minus the tag).
#[inline]
fn parse_rtp(pkt: &[u8], avail: usize) -> Result<RtpHeader, Error> {
    let b0 = *pkt.first().ok_or(Error::TooShort { len: 0, need: 12 })?;
    if pkt.len() < 12 {
        return Err(Error::TooShort {
            len: pkt.len(),
            need: 12,
        });
    }
    if b0 >> 6 != 2 {
        return Err(Error::BadVersion(b0 >> 6));
    }
    let mut len = 12 + 4 * usize::from(b0 & 0x0f);
    if b0 & 0x10 != 0 {
        if len + 4 > avail {
            return Err(Error::HeaderOverrun {
                header: len + 4,
                avail,
            });
        }
        len += 4 + 4 * usize::from(be16(pkt, len + 2));
    }
    if len > avail {
        return Err(Error::HeaderOverrun { header: len, avail });
    }
    Ok(RtpHeader {
        len,
        seq: be16(pkt, 2),
        ssrc: be32(pkt, 8),
    })
}

/// The AES-CM IV: salt XOR (SSRC at octets 4..8) XOR (48-bit index at octets 8..14).
#[inline]
fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (d, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *d ^= s;
    }
    for (d, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *d ^= s;
    }
    iv
}

/// The RFC 7714 §8.1 SRTP nonce: salt XOR (00 00 || SSRC || ROC || SEQ).
#[inline]
fn gcm_rtp_nonce(salt: &[u8; 12], ssrc: u32, index: u64) -> [u8; 12] {
    let mut n = *salt;
    for (d, s) in n[2..6].iter_mut().zip(ssrc.to_be_bytes()) {
        *d ^= s;
    }
    for (d, s) in n[6..12].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *d ^= s;
    }
    n
}

/// The RFC 7714 §9.1 SRTCP nonce: salt XOR (00 00 || SSRC || 00 00 || 0 || index31).
#[inline]
fn gcm_rtcp_nonce(salt: &[u8; 12], ssrc: u32, index: u32) -> [u8; 12] {
    let mut n = *salt;
    for (d, s) in n[2..6].iter_mut().zip(ssrc.to_be_bytes()) {
        *d ^= s;
    }
    for (d, s) in n[8..12].iter_mut().zip(index.to_be_bytes()) {
        *d ^= s;
    }
    n
}

const RTCP_E: u32 = 0x8000_0000;
const MAX_RTP_INDEX: u64 = (1 << 48) - 1;

impl Context {
    /// Builds a context: derives the session keys (KDR 0), expands the AES key schedules and
    /// hashes the HMAC ipad/opad blocks, and preallocates the stream table and windows.
    pub fn new(km: &KeyMaterial, cfg: Config) -> Result<Context, Error> {
        if let Some((_, len)) = km.mki {
            return Err(Error::UnsupportedMki { len });
        }
        let profile = km.profile();
        let master = Aes::new(km.key()).ok_or(Error::BadConfig("master key length"))?;
        let rtp = Keys::derive(
            profile,
            &master,
            km.salt(),
            [label::RTP_ENC, label::RTP_AUTH, label::RTP_SALT],
        );
        let rtcp = Keys::derive(
            profile,
            &master,
            km.salt(),
            [label::RTCP_ENC, label::RTCP_AUTH, label::RTCP_SALT],
        );
        let mut ctx = Context::with_keys(profile, rtp, rtcp, cfg)?;
        ctx.lifetime = km.lifetime;
        Ok(ctx)
    }

    pub(crate) fn with_keys(
        profile: Profile,
        rtp: Keys,
        rtcp: Keys,
        cfg: Config,
    ) -> Result<Context, Error> {
        if !(128..=MAX_REPLAY_WINDOW).contains(&cfg.replay_window) {
            return Err(Error::BadConfig("replay_window must be 128..=32768"));
        }
        if !(1..=MAX_STREAMS).contains(&cfg.max_streams) {
            return Err(Error::BadConfig("max_streams must be 1..=65536"));
        }
        let geo = Geometry::new(cfg.replay_window);
        Ok(Context {
            profile,
            rtp,
            rtcp,
            geo,
            streams: vec![Stream::default(); cfg.max_streams].into_boxed_slice(),
            n_streams: 0,
            n_pending: 0,
            windows: vec![0u64; cfg.max_streams * 2 * geo.words].into_boxed_slice(),
            lifetime: None,
            used: 0,
        })
    }

    /// The protection profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Number of SSRCs the context currently tracks (resumed ones included).
    pub fn stream_count(&self) -> usize {
        self.n_streams + self.n_pending
    }

    /// The rollover counter and highest sequence number of an SSRC's SRTP stream, if it has
    /// seen an RTP packet (`None` for a resumed stream still waiting for its first one).
    pub fn rtp_index(&self, ssrc: u32) -> Option<(u32, u16)> {
        let s = self.streams.get(self.find(ssrc)?)?;
        Some(((s.rtp_index >> 16) as u32, s.rtp_index as u16))
    }

    /// The last SRTCP index sent for an SSRC (0: none sent yet), if the SSRC has a stream
    /// (active or resumed).
    pub fn srtcp_tx_index(&self, ssrc: u32) -> Option<u32> {
        let i = self.find(ssrc).or_else(|| self.find_pending(ssrc))?;
        self.streams.get(i).map(|s| s.rtcp_tx)
    }

    /// Pre-creates the stream of `ssrc` where it stood before a restart (RFC 3711 §3.3.1):
    /// its first RTP packet, protected or unprotected, gets index `roc << 16 | seq`, and the
    /// first SRTCP packet protected for it gets index `srtcp_index + 1`.
    ///
    /// Unprotecting, the replay windows start empty and the first packet's index becomes the
    /// highest only once it authenticates: a forged or stale first packet is refused and
    /// commits nothing. SRTCP on the stream before its first RTP packet keeps it resumed.
    /// Calling it again before the first RTP packet replaces the stored position.
    ///
    /// Refused with [`crate::ErrorKind::BadConfig`] if the SSRC already carried RTP or SRTCP
    /// in this context (its state is newer than any stored one; re-keying builds a new
    /// context), or `srtcp_index` is not a 31-bit SRTCP index; with
    /// [`crate::ErrorKind::TooManyStreams`] if the table is full. Costs nothing per packet on
    /// established streams: the work happens where a new SSRC is admitted.
    pub fn resume(&mut self, ssrc: u32, roc: u32, srtcp_index: u32) -> Result<(), Error> {
        if srtcp_index > 0x7fff_ffff {
            return Err(Error::BadConfig("resume: SRTCP index must be below 2^31"));
        }
        if self.find(ssrc).is_some() {
            return Err(Error::BadConfig("resume: the SSRC already has a stream"));
        }
        let i = match self.find_pending(ssrc) {
            Some(i) => i,
            None => {
                self.room_for(ssrc)?;
                self.n_pending += 1;
                self.streams.len() - self.n_pending
            }
        };
        if let Some(s) = self.streams.get_mut(i) {
            *s = Stream {
                ssrc,
                rtp_index: u64::from(roc) << 16,
                rtcp_rx: 0,
                rtcp_tx: srtcp_index,
            };
        }
        let w = 2 * self.geo.words;
        if let Some(win) = self.windows.get_mut(i * w..i * w + w) {
            win.fill(0);
        }
        Ok(())
    }

    /// Forgets an SSRC (e.g. after the peer changed SSRC), freeing its slot. Returns whether
    /// it was present (active or resumed). Its indices start afresh if it reappears.
    pub fn remove_stream(&mut self, ssrc: u32) -> bool {
        let Some(i) = self.find(ssrc) else {
            let Some(p) = self.find_pending(ssrc) else {
                return false;
            };
            let lo = self.streams.len() - self.n_pending;
            self.swap_slots(p, lo);
            self.n_pending -= 1;
            return true;
        };
        let last = self.n_streams - 1;
        if i != last {
            self.streams.swap(i, last);
            let w = 2 * self.geo.words;
            let (a, b) = self.windows.split_at_mut(last * w);
            if let (Some(dst), Some(src)) = (a.get_mut(i * w..i * w + w), b.get(..w)) {
                dst.copy_from_slice(src);
            }
        }
        self.n_streams = last;
        true
    }

    #[inline]
    fn find(&self, ssrc: u32) -> Option<usize> {
        self.streams
            .get(..self.n_streams)?
            .iter()
            .position(|s| s.ssrc == ssrc)
    }

    /// The slot of a resumed stream that has not seen RTP yet (only looked at when
    /// [`Context::find`] missed).
    fn find_pending(&self, ssrc: u32) -> Option<usize> {
        if self.n_pending == 0 {
            return None;
        }
        let lo = self.streams.len() - self.n_pending;
        self.streams
            .get(lo..)?
            .iter()
            .position(|s| s.ssrc == ssrc)
            .map(|i| lo + i)
    }

    /// Swaps two slots' streams and windows.
    fn swap_slots(&mut self, a: usize, b: usize) {
        if a == b {
            return;
        }
        let (a, b) = (a.min(b), a.max(b));
        self.streams.swap(a, b);
        let w = 2 * self.geo.words;
        let (lo, hi) = self.windows.split_at_mut(b * w);
        if let (Some(x), Some(y)) = (lo.get_mut(a * w..a * w + w), hi.get_mut(..w)) {
            x.swap_with_slice(y);
        }
    }

    /// Refuses a new SSRC when the table is full (checked before any crypto). A resumed SSRC
    /// already has its slot.
    #[inline]
    fn room_for(&self, ssrc: u32) -> Result<(), Error> {
        if self.n_streams + self.n_pending >= self.streams.len()
            && self.find_pending(ssrc).is_none()
        {
            return Err(Error::TooManyStreams {
                ssrc,
                max: self.streams.len(),
            });
        }
        Ok(())
    }

    /// Admits a new SSRC to the active range: a resumed stream moves there with its state
    /// (`rtp_index` = `ROC << 16`, the base of its first index), any other starts at zero.
    fn alloc(&mut self, ssrc: u32) -> Result<usize, Error> {
        if let Some(p) = self.find_pending(ssrc) {
            let lo = self.streams.len() - self.n_pending;
            self.swap_slots(p, lo);
            self.n_pending -= 1;
            let i = self.n_streams;
            self.swap_slots(lo, i);
            self.n_streams += 1;
            return Ok(i);
        }
        self.room_for(ssrc)?;
        let i = self.n_streams;
        if let Some(s) = self.streams.get_mut(i) {
            *s = Stream {
                ssrc,
                ..Stream::default()
            };
        }
        let w = 2 * self.geo.words;
        if let Some(win) = self.windows.get_mut(i * w..i * w + w) {
            win.fill(0);
        }
        self.n_streams += 1;
        Ok(i)
    }

    /// The slot SRTCP uses: an active or resumed stream (a resumed one stays pending, its
    /// first RTP packet still to come), else a new active one.
    #[inline]
    fn rtcp_slot_or_alloc(&mut self, ssrc: u32) -> Result<usize, Error> {
        match self.find(ssrc).or_else(|| self.find_pending(ssrc)) {
            Some(i) => Ok(i),
            None => self.alloc(ssrc),
        }
    }

    /// The replay window of `slot` (`rtcp` selects the SRTCP one).
    #[inline]
    fn window(&self, slot: usize, rtcp: bool) -> &[u64] {
        let at = (2 * slot + usize::from(rtcp)) * self.geo.words;
        self.windows.get(at..at + self.geo.words).unwrap_or(&[])
    }

    #[inline]
    fn check_lifetime(&self) -> Result<(), Error> {
        match self.lifetime {
            Some(l) if self.used >= l => Err(Error::LifetimeExpired { lifetime: l }),
            _ => Ok(()),
        }
    }

    /// Checks a (stream, index) against its window; `slot` None is a stream not yet created.
    #[inline]
    fn replay_check(
        &self,
        slot: Option<usize>,
        rtcp: bool,
        index: u64,
        delta: i64,
    ) -> Result<u64, Error> {
        let est = index.checked_add_signed(delta).ok_or(Error::TooOld {
            index: 0,
            highest: index,
        })?;
        if let Some(i) = slot {
            match self.geo.check(self.window(i, rtcp), index, delta) {
                Check::Fresh => {}
                Check::Replayed => return Err(Error::Replayed { index: est }),
                Check::TooOld => {
                    return Err(Error::TooOld {
                        index: est,
                        highest: index,
                    });
                }
            }
        }
        Ok(est)
    }

    /// Records an accepted index in a stream's window (creating the stream if needed).
    #[inline]
    fn commit(&mut self, slot: Option<usize>, ssrc: u32, rtcp: bool, delta: i64) {
        let i = match slot {
            Some(i) => i,
            // Room was checked before the crypto; alloc cannot fail here.
            None => match self.alloc(ssrc) {
                Ok(i) => i,
                Err(_) => return,
            },
        };
        let geo = self.geo;
        let at = (2 * i + usize::from(rtcp)) * geo.words;
        let Some(stream) = self.streams.get_mut(i) else {
            return;
        };
        let index = if rtcp {
            &mut stream.rtcp_rx
        } else {
            &mut stream.rtp_index
        };
        if let Some(bits) = self.windows.get_mut(at..at + geo.words) {
            geo.add(bits, index, delta);
        }
        self.used += 1;
    }

    // ----------------------------------------------------------------------------------
    // SRTP
    // ----------------------------------------------------------------------------------

    /// Hints the CPU to load what the next RTP packet of this context will touch (the keys,
    /// the counters, the stream table and its replay windows). A data plane with more
    /// contexts than fit in cache calls it for a whole burst before processing the burst, so
    /// the cache misses of different packets overlap instead of queueing one behind another.
    #[inline]
    pub fn prefetch(&self) {
        prefetch_bytes(self as *const Context as *const u8, 64);
        match &self.rtp {
            Keys::Cm { aes, mac, salt } => {
                prefetch_bytes(
                    aes as *const Aes as *const u8,
                    std::mem::size_of::<Aes>().min(256),
                );
                prefetch_bytes(mac as *const HmacSha1 as *const u8, 40);
                prefetch_bytes(salt.as_ptr(), 14);
            }
            Keys::Gcm { aead, .. } => prefetch_bytes(aead as *const Gcm as *const u8, 256),
        }
        prefetch_bytes(&self.used as *const u64 as *const u8, 8);
        prefetch_bytes(&self.n_streams as *const usize as *const u8, 8);
        prefetch_bytes(self.streams.as_ptr() as *const u8, 64);
        prefetch_bytes(self.windows.as_ptr() as *const u8, 64);
    }

    /// Protects the RTP packet `buf[..len]` in place, appending the tag; `buf` must have
    /// `profile().rtp_tag_len()` bytes of tailroom. Returns the SRTP length. A duplicate or
    /// too-old sequence number is refused (the index would be reused), as libsrtp does.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        let (out, d) = self.protect_rtp_front(buf, len)?;
        if let Some(d) = d {
            self.finish_cm(buf, &d);
        }
        Ok(out)
    }

    /// Unprotects the SRTP packet `buf[..len]` in place. Returns the RTP length. A refused
    /// packet leaves the buffer and the stream state untouched (the tag is verified first).
    pub fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        let (out, d) = self.unprotect_rtp_front(buf, len, None)?;
        if let Some(d) = d {
            self.finish_cm(buf, &d);
        }
        Ok(out)
    }

    /// The keystream (and, protecting, the tag) of an AES-CM SRTP packet.
    #[inline]
    pub(crate) fn finish_cm(&self, buf: &mut [u8], d: &Deferred) {
        let Keys::Cm { mac, .. } = &self.rtp else {
            return;
        };
        self.keystream_cm(buf, d);
        if let Some(roc) = d.protect_roc {
            self.write_rtp_tag(buf, d.end, roc, mac);
        }
    }

    /// The keystream of an AES-CM SRTP packet (encrypts or decrypts `buf[d.start..d.end]`).
    #[inline]
    pub(crate) fn keystream_cm(&self, buf: &mut [u8], d: &Deferred) {
        if let (Keys::Cm { aes, .. }, Some(data)) = (&self.rtp, buf.get_mut(d.start..d.end)) {
            aes.apply_keystream(&d.iv, data);
        }
    }

    #[inline]
    pub(crate) fn write_rtp_tag(&self, buf: &mut [u8], end: usize, roc: u32, mac: &HmacSha1) {
        let tag_len = self.profile.rtp_tag_len();
        let Some(data) = buf.get(..end) else {
            return;
        };
        let t = mac.tag(data, &roc.to_be_bytes());
        if let (Some(dst), Some(src)) = (buf.get_mut(end..end + tag_len), t.get(..tag_len)) {
            dst.copy_from_slice(src);
        }
    }

    /// Header, tailroom, stream and index stage of protect; GCM packets are finished here,
    /// AES-CM packets return the keystream/tag work as [`Deferred`].
    pub(crate) fn protect_rtp_front(
        &mut self,
        buf: &mut [u8],
        len: usize,
    ) -> Result<(usize, Option<Deferred>), Error> {
        self.check_lifetime()?;
        let tag_len = self.profile.rtp_tag_len();
        let pkt = buf.get(..len).ok_or(Error::LengthBeyondBuffer {
            len,
            buf: buf.len(),
        })?;
        let h = parse_rtp(pkt, len)?;
        if buf.len() < len + tag_len {
            return Err(Error::NoTailroom {
                need: len + tag_len,
                have: buf.len(),
            });
        }
        let (slot, index, delta) = match self.find(h.ssrc) {
            Some(slot) => {
                let index = self.streams.get(slot).map_or(0, |s| s.rtp_index);
                (slot, index, estimate(index, h.seq))
            }
            // A new stream's first index is its base (0, or ROC << 16 if resumed) + SEQ.
            None => {
                let slot = self.alloc(h.ssrc)?;
                let index = self.streams.get(slot).map_or(0, |s| s.rtp_index);
                (slot, index, i64::from(h.seq))
            }
        };
        let est = self.replay_check(Some(slot), false, index, delta)?;
        if est > MAX_RTP_INDEX {
            return Err(Error::IndexExhausted);
        }
        self.commit(Some(slot), h.ssrc, false, delta);
        match &self.rtp {
            Keys::Cm { salt, .. } => Ok((
                len + tag_len,
                Some(Deferred {
                    iv: cm_iv(salt, h.ssrc, est),
                    start: h.len,
                    end: len,
                    protect_roc: Some((est >> 16) as u32),
                }),
            )),
            Keys::Gcm { aead, salt } => {
                let nonce = gcm_rtp_nonce(salt, h.ssrc, est);
                let (head, rest) = buf.split_at_mut(h.len);
                let (data, tail) = rest.split_at_mut(len - h.len);
                let tag = aead.seal(&nonce, head, data);
                if let Some(dst) = tail.get_mut(..16) {
                    dst.copy_from_slice(&tag);
                }
                Ok((len + 16, None))
            }
        }
    }

    /// What unprotect learns before any crypto: the header, the stream slot, where the tag
    /// starts and the estimated index (replay already checked). Reads the state only.
    #[inline]
    fn unprotect_rtp_locate(&self, buf: &[u8], len: usize) -> Result<Located, Error> {
        self.check_lifetime()?;
        let tag_len = self.profile.rtp_tag_len();
        let pkt = buf.get(..len).ok_or(Error::LengthBeyondBuffer {
            len,
            buf: buf.len(),
        })?;
        if len < 12 + tag_len {
            return Err(Error::TooShort {
                len,
                need: 12 + tag_len,
            });
        }
        let body = len - tag_len;
        let h = parse_rtp(pkt, body)?;
        let slot = self.find(h.ssrc);
        let (index, delta) = match slot.and_then(|i| self.streams.get(i)) {
            Some(s) => (s.rtp_index, estimate(s.rtp_index, h.seq)),
            // Not active: the first index is the base (0, or ROC << 16 if resumed) + SEQ; the
            // stream is admitted (`commit` -> `alloc`) only if the packet authenticates. Its
            // RTP window is empty, so there is no replay to check.
            None => {
                self.room_for(h.ssrc)?;
                let base = self
                    .find_pending(h.ssrc)
                    .and_then(|p| self.streams.get(p))
                    .map_or(0, |s| s.rtp_index);
                (base, i64::from(h.seq))
            }
        };
        let est = self.replay_check(slot, false, index, delta)?;
        Ok(Located {
            h,
            slot,
            body,
            delta,
            est,
        })
    }

    /// For the batch API: the ROC and the bytes an AES-CM unprotect would authenticate, as the
    /// state stands now (`None` if the packet would be refused before that, or is GCM).
    #[inline]
    pub(crate) fn unprotect_rtp_auth_input<'b>(
        &self,
        buf: &'b [u8],
        len: usize,
    ) -> Option<(&'b [u8], u32)> {
        if !matches!(self.rtp, Keys::Cm { .. }) {
            return None;
        }
        let l = self.unprotect_rtp_locate(buf, len).ok()?;
        Some((buf.get(..l.body)?, (l.est >> 16) as u32))
    }

    /// Header, stream, replay and authentication stage of unprotect. On success the index is
    /// committed; AES-CM packets return the decryption as [`Deferred`], GCM packets are
    /// already decrypted. `pre` is a tag the batch API computed for some ROC; it is used if
    /// the ROC is still the one this packet needs.
    pub(crate) fn unprotect_rtp_front(
        &mut self,
        buf: &mut [u8],
        len: usize,
        pre: Option<(u32, [u8; 20])>,
    ) -> Result<(usize, Option<Deferred>), Error> {
        let Located {
            h,
            slot,
            body,
            delta,
            est,
        } = self.unprotect_rtp_locate(buf, len)?;
        let tag_len = self.profile.rtp_tag_len();
        let pkt = buf.get(..len).unwrap_or(&[]);
        let roc = (est >> 16) as u32;
        match &self.rtp {
            Keys::Cm { salt, mac, .. } => {
                let (data, tag) = pkt.split_at(body);
                let t = match pre {
                    Some((r, t)) if r == roc => t,
                    _ => mac.tag(data, &roc.to_be_bytes()),
                };
                let ok = t.get(..tag_len).is_some_and(|t| tags_equal(t, tag));
                if !ok {
                    return Err(Error::AuthFailed);
                }
                let d = Deferred {
                    iv: cm_iv(salt, h.ssrc, est),
                    start: h.len,
                    end: body,
                    protect_roc: None,
                };
                self.commit(slot, h.ssrc, false, delta);
                Ok((body, Some(d)))
            }
            Keys::Gcm { aead, salt } => {
                let nonce = gcm_rtp_nonce(salt, h.ssrc, est);
                let (head, rest) = buf.split_at_mut(h.len);
                let (data, rest) = rest.split_at_mut(body - h.len);
                let tag = rest.get(..16).unwrap_or(&[]);
                if !aead.open(&nonce, head, data, tag) {
                    return Err(Error::AuthFailed);
                }
                self.commit(slot, h.ssrc, false, delta);
                Ok((body, None))
            }
        }
    }

    // ----------------------------------------------------------------------------------
    // SRTCP
    // ----------------------------------------------------------------------------------

    /// Protects the RTCP (compound) packet `buf[..len]` in place: encrypts it (E flag set),
    /// appends the E/index word and the tag (AES-CM: `E|index || tag80`; GCM:
    /// `tag128 || E|index`, RFC 7714 §9). The first SRTCP index of an SSRC is 1, as libsrtp.
    /// `buf` needs `profile().rtcp_trailer_len()` bytes of tailroom.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        self.check_lifetime()?;
        let trailer = self.profile.rtcp_trailer_len();
        let pkt = buf.get(..len).ok_or(Error::LengthBeyondBuffer {
            len,
            buf: buf.len(),
        })?;
        let (ssrc, b0) = parse_rtcp(pkt)?;
        let _ = b0;
        if buf.len() < len + trailer {
            return Err(Error::NoTailroom {
                need: len + trailer,
                have: buf.len(),
            });
        }
        let slot = self.rtcp_slot_or_alloc(ssrc)?;
        let stream = self.streams.get_mut(slot).ok_or(Error::IndexExhausted)?;
        let idx = stream.rtcp_tx + 1;
        if idx > 0x7fff_ffff {
            return Err(Error::IndexExhausted);
        }
        stream.rtcp_tx = idx;
        self.used += 1;
        let word = (RTCP_E | idx).to_be_bytes();
        let (head, rest) = buf.split_at_mut(8);
        let (data, tail) = rest.split_at_mut(len - 8);
        match &self.rtcp {
            Keys::Cm { aes, salt, mac } => {
                aes.apply_keystream(&cm_iv(salt, ssrc, u64::from(idx)), data);
                if let Some(w) = tail.get_mut(..4) {
                    w.copy_from_slice(&word);
                }
                let t = mac.tag(buf.get(..len + 4).unwrap_or(&[]), &[]);
                if let Some(dst) = buf.get_mut(len + 4..len + 14) {
                    dst.copy_from_slice(&t[..10]);
                }
                Ok(len + 14)
            }
            Keys::Gcm { aead, salt } => {
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(head);
                aad[8..].copy_from_slice(&word);
                let tag = aead.seal(&gcm_rtcp_nonce(salt, ssrc, idx), &aad, data);
                if let Some(dst) = tail.get_mut(..16) {
                    dst.copy_from_slice(&tag);
                }
                if let Some(dst) = tail.get_mut(16..20) {
                    dst.copy_from_slice(&word);
                }
                Ok(len + 20)
            }
        }
    }

    /// Unprotects the SRTCP packet `buf[..len]` in place; returns the RTCP length. AES-CM
    /// refuses a packet without the E flag (as libsrtp 2.5); GCM accepts one (the whole
    /// packet is then authenticated only, RFC 7714 §9.2). A refused packet leaves the buffer
    /// and the stream state untouched.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        self.check_lifetime()?;
        let trailer = self.profile.rtcp_trailer_len();
        let pkt = buf.get(..len).ok_or(Error::LengthBeyondBuffer {
            len,
            buf: buf.len(),
        })?;
        if len < 8 + trailer {
            return Err(Error::TooShort {
                len,
                need: 8 + trailer,
            });
        }
        let (ssrc, _) = parse_rtcp(pkt)?;
        let body = len - trailer;
        let word_at = match self.rtcp {
            Keys::Cm { .. } => body,
            Keys::Gcm { .. } => len - 4,
        };
        let word = be32(pkt, word_at);
        let encrypted = word & RTCP_E != 0;
        let idx = word & !RTCP_E;
        let slot = self.find(ssrc).or_else(|| self.find_pending(ssrc));
        if slot.is_none() {
            self.room_for(ssrc)?;
        }
        let highest = slot
            .and_then(|i| self.streams.get(i))
            .map_or(0, |s| s.rtcp_rx);
        let delta = i64::from(idx) - highest as i64;
        match &self.rtcp {
            Keys::Cm { aes, salt, mac } => {
                if !encrypted {
                    return Err(Error::UnencryptedSrtcp);
                }
                self.replay_check(slot, true, highest, delta)?;
                let (data, tag) = pkt.split_at(body + 4);
                let t = mac.tag(data, &[]);
                let ok = tags_equal(&t[..10], tag);
                if !ok {
                    return Err(Error::AuthFailed);
                }
                if let Some(data) = buf.get_mut(8..body) {
                    aes.apply_keystream(&cm_iv(salt, ssrc, u64::from(idx)), data);
                }
            }
            Keys::Gcm { aead, salt } => {
                self.replay_check(slot, true, highest, delta)?;
                let nonce = gcm_rtcp_nonce(salt, ssrc, idx);
                let mut tag = [0u8; 16];
                tag.copy_from_slice(pkt.get(body..body + 16).unwrap_or(&[0; 16]));
                if encrypted {
                    let mut aad = [0u8; 12];
                    aad[..8].copy_from_slice(pkt.get(..8).unwrap_or(&[0; 8]));
                    aad[8..].copy_from_slice(&word.to_be_bytes());
                    let data = buf.get_mut(8..body).unwrap_or_default();
                    if !aead.open(&nonce, &aad, data, &tag) {
                        return Err(Error::AuthFailed);
                    }
                } else {
                    // AAD = packet || E|index: move the word next to the packet (over the
                    // tag, saved above), verify, and put the tag back if it fails.
                    if let Some(w) = buf.get_mut(body..body + 4) {
                        w.copy_from_slice(&word.to_be_bytes());
                    }
                    let aad = buf.get(..body + 4).unwrap_or(&[]);
                    let ok = aead.open(&nonce, aad, &mut [], &tag);
                    if let Some(t) = buf.get_mut(body..body + 16) {
                        t.copy_from_slice(&tag);
                    }
                    if !ok {
                        return Err(Error::AuthFailed);
                    }
                }
            }
        }
        self.commit(slot, ssrc, true, delta);
        Ok(body)
    }
}

/// Checks an RTCP header (version 2, at least 8 bytes) and returns the sender SSRC and the
/// first octet.
#[inline]
fn parse_rtcp(pkt: &[u8]) -> Result<(u32, u8), Error> {
    if pkt.len() < 8 {
        return Err(Error::TooShort {
            len: pkt.len(),
            need: 8,
        });
    }
    let b0 = pkt.first().copied().unwrap_or(0);
    if b0 >> 6 != 2 {
        return Err(Error::BadVersion(b0 >> 6));
    }
    Ok((be32(pkt, 4), b0))
}

impl Context {
    /// The AES-CM SRTP keys, for the batch keystream stage.
    pub(crate) fn rtp_cm(&self) -> Option<(&Aes, &HmacSha1)> {
        match &self.rtp {
            Keys::Cm { aes, mac, .. } => Some((aes, mac)),
            Keys::Gcm { .. } => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn set_rtcp_tx(&mut self, ssrc: u32, last: u32) {
        if let Ok(i) = self.rtcp_slot_or_alloc(ssrc)
            && let Some(s) = self.streams.get_mut(i)
        {
            s.rtcp_tx = last;
        }
    }
}

/// Prefetches the cache lines of `len` bytes at `p` (a hint: no effect on results; `p` is never
/// dereferenced). Also used by the relay core for its flow state.
#[inline(always)]
pub fn prefetch_bytes(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let skew = p as usize & 63;
        let p = p.wrapping_sub(skew);
        let len = len + skew;
        let mut off = 0;
        while off < len {
            // SAFETY: prefetch never faults and reads nothing architecturally; the address is
            // only a hint (computed with wrapping arithmetic, never dereferenced).
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    p.wrapping_add(off).cast(),
                )
            };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (p, len);
    }
}
