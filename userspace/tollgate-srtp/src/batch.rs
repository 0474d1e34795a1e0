//! The batch API: many packets of one or many contexts per call.
//!
//! A data-plane worker receives a burst of packets, looks each one's flow up and hands the
//! whole burst over as [`Job`]s. [`process_batch`] walks the jobs; consecutive jobs of the same
//! context form a run that [`Context::process_batch`] handles in three stages:
//!
//! 1. per packet, in order: header, stream, index estimate, replay check, (unprotect) tag
//!    verification, and commit of the index: the stateful part, which must be sequential
//!    because packets of one stream depend on each other;
//! 2. for all AES-CM SRTP packets of the run together: the counter blocks of every packet are
//!    gathered into one array and encrypted in one AES call, so AES-NI's pipeline stays full
//!    across packet boundaries (a 160-byte payload is 10 blocks, which alone leaves the 8-wide
//!    pipeline half empty on its last round), then XORed into each packet;
//! 3. (protect) the HMAC-SHA1 tags, four packets' SHA-1 compressions interleaved (see
//!    `sha1x`); unprotect computes its tags the same way before stage 1 (stage 0), against
//!    the state before the chunk, and stage 1 uses each only if the packet's ROC is unchanged.
//!
//! GCM contexts and SRTCP jobs run through the single-packet path inside the same call. Results are
//! exactly those of calling the single-packet functions in job order.

use crate::context::Deferred;
use crate::crypto::{Block, KS_BLOCKS, xor_blocks};
use crate::{Context, Error};

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`Context::protect_rtp`].
    ProtectRtp,
    /// [`Context::unprotect_rtp`].
    UnprotectRtp,
    /// [`Context::protect_rtcp`].
    ProtectRtcp,
    /// [`Context::unprotect_rtcp`].
    UnprotectRtcp,
}

/// One packet of a batch: the packet is `buf[..len]`; `result` receives the new length or
/// the refusal (it is overwritten; initialise it with anything, e.g. `Ok(0)`).
#[derive(Debug)]
pub struct Job<'a> {
    /// Which context of the [`ContextSet`] (ignored by [`Context::process_batch`]).
    pub ctx: usize,
    /// The operation.
    pub op: Op,
    /// The packet buffer, with tailroom when protecting.
    pub buf: &'a mut [u8],
    /// The packet length.
    pub len: usize,
    /// The outcome, as the single-packet call would return it.
    pub result: Result<usize, Error>,
}

impl<'a> Job<'a> {
    /// A job with an empty result.
    pub fn new(ctx: usize, op: Op, buf: &'a mut [u8], len: usize) -> Self {
        Job {
            ctx,
            op,
            buf,
            len,
            result: Ok(0),
        }
    }
}

/// Where a batch finds its contexts: implemented for slices and vectors of [`Context`]; a
/// flow table implements it to hand out the context of flow `id`.
pub trait ContextSet {
    /// The context with this id, if any.
    fn context(&mut self, id: usize) -> Option<&mut Context>;
}

impl ContextSet for [Context] {
    fn context(&mut self, id: usize) -> Option<&mut Context> {
        self.get_mut(id)
    }
}

impl ContextSet for Vec<Context> {
    fn context(&mut self, id: usize) -> Option<&mut Context> {
        self.get_mut(id)
    }
}

/// Processes `jobs` against the contexts of `set`; runs of consecutive jobs with the same
/// `ctx` share the keystream stage. A job naming a missing context gets
/// [`Error::NoContext`].
pub fn process_batch<S: ContextSet + ?Sized>(set: &mut S, jobs: &mut [Job<'_>]) {
    let mut rest = jobs;
    while let Some(first) = rest.first() {
        let id = first.ctx;
        let run = rest.iter().take_while(|j| j.ctx == id).count();
        let (now, later) = rest.split_at_mut(run);
        match set.context(id) {
            Some(c) => c.process_batch(now),
            None => {
                for j in now.iter_mut() {
                    j.result = Err(Error::NoContext(id));
                }
            }
        }
        rest = later;
    }
}

/// Jobs whose keystream stage is shared per chunk.
const CHUNK: usize = 32;
/// Packets whose HMAC-SHA1 compressions are interleaved ([`crate::sha1x`]): four chains keep
/// the SHA unit busy where one leaves it waiting on `sha1rnds4`'s latency.
const LANES: usize = 4;

impl Context {
    /// Processes `jobs` (all against this context, whatever their `ctx`).
    pub fn process_batch(&mut self, jobs: &mut [Job<'_>]) {
        for chunk in jobs.chunks_mut(CHUNK) {
            self.process_chunk(chunk);
        }
    }

    /// One job through the single-packet API.
    fn process_one(&mut self, j: &mut Job<'_>) {
        j.result = match j.op {
            Op::ProtectRtp => self.protect_rtp(j.buf, j.len),
            Op::UnprotectRtp => self.unprotect_rtp(j.buf, j.len),
            Op::ProtectRtcp => self.protect_rtcp(j.buf, j.len),
            Op::UnprotectRtcp => self.unprotect_rtcp(j.buf, j.len),
        };
    }

    /// Stage 0 (unprotect): the tags of a chunk's AES-CM RTP packets, LANES at a time, against
    /// the state as it stands before the chunk, with the ROC each was computed for.
    fn precompute_tags(&self, jobs: &[Job<'_>], pre: &mut [Option<(u32, [u8; 20])>]) {
        let Some((_, mac)) = self.rtp_cm() else {
            return;
        };
        let mut lane = [(0usize, &[][..], 0u32); LANES];
        let mut nl = 0;
        for (i, j) in jobs.iter().enumerate() {
            if j.op != Op::UnprotectRtp {
                continue;
            }
            let Some((data, roc)) = self.unprotect_rtp_auth_input(j.buf, j.len) else {
                continue;
            };
            lane[nl] = (i, data, roc);
            nl += 1;
            if nl == LANES {
                let tags = mac.tags_roc(lane.map(|l| l.1), lane.map(|l| l.2));
                for ((i, _, roc), t) in lane.iter().zip(tags) {
                    if let Some(p) = pre.get_mut(*i) {
                        *p = Some((*roc, t));
                    }
                }
                nl = 0;
            }
        }
    }

    fn process_chunk(&mut self, jobs: &mut [Job<'_>]) {
        if self.rtp_cm().is_none() {
            // GCM: nothing to share across packets (the AEAD does keystream and tag in one
            // pass per packet), so the single-packet calls, without the stages' bookkeeping.
            for j in jobs.iter_mut() {
                self.process_one(j);
            }
            return;
        }
        // Stage 0. Stage 1 uses a precomputed tag only if the packet's ROC is still the one it
        // was computed for (an earlier packet of the chunk may have moved the stream across a
        // wrap); otherwise it computes the tag itself.
        let mut pre: [Option<(u32, [u8; 20])>; CHUNK] = [None; CHUNK];
        self.precompute_tags(jobs, &mut pre);
        // Stage 1: the stateful part, in order.
        let mut pending: [(usize, Deferred); CHUNK] = [(
            0,
            Deferred {
                iv: [0; 16],
                start: 0,
                end: 0,
                protect_roc: None,
            },
        ); CHUNK];
        let mut np = 0;
        for (i, j) in jobs.iter_mut().enumerate() {
            let r = match j.op {
                Op::ProtectRtp => self.protect_rtp_front(j.buf, j.len),
                Op::UnprotectRtp => {
                    self.unprotect_rtp_front(j.buf, j.len, pre.get(i).copied().flatten())
                }
                Op::ProtectRtcp | Op::UnprotectRtcp => {
                    self.process_one(j);
                    continue;
                }
            };
            j.result = r.map(|(len, _)| len);
            if let Ok((_, Some(d))) = r
                && let Some(p) = pending.get_mut(np)
            {
                *p = (i, d);
                np += 1;
            }
        }
        let Some((aes, mac)) = self.rtp_cm() else {
            return;
        };
        let pending = pending.get(..np).unwrap_or(&[]);

        // Stage 2: keystream for all packets, KS_BLOCKS counter blocks per AES call.
        let mut blocks = [Block::default(); KS_BLOCKS];
        // (job, first byte, end byte, first block) per segment of a packet's payload.
        let mut segs = [(0usize, 0usize, 0usize, 0usize); KS_BLOCKS];
        let mut nb = 0;
        let mut ns = 0;
        let flush = |blocks: &mut [Block; KS_BLOCKS],
                     segs: &[(usize, usize, usize, usize)],
                     nb: usize,
                     jobs: &mut [Job<'_>]| {
            aes.encrypt_blocks(&mut blocks[..nb]);
            for &(j, from, to, first) in segs {
                let (Some(job), Some(ks)) = (jobs.get_mut(j), blocks.get(first..)) else {
                    continue;
                };
                if let Some(data) = job.buf.get_mut(from..to) {
                    xor_blocks(data, ks);
                }
            }
        };
        for (j, d) in pending {
            let mut ctr = u128::from_be_bytes(d.iv);
            let mut off = d.start;
            while off < d.end {
                let want = (d.end - off).div_ceil(16).min(KS_BLOCKS - nb);
                for b in &mut blocks[nb..nb + want] {
                    *b = ctr.to_be_bytes().into();
                    ctr = ctr.wrapping_add(1);
                }
                let to = (off + want * 16).min(d.end);
                segs[ns] = (*j, off, to, nb);
                ns += 1;
                nb += want;
                off = to;
                if nb == KS_BLOCKS {
                    flush(&mut blocks, &segs[..ns], nb, jobs);
                    nb = 0;
                    ns = 0;
                }
            }
        }
        if nb > 0 {
            flush(&mut blocks, &segs[..ns], nb, jobs);
        }

        // Stage 3: tags of protected packets, LANES at a time.
        let tag_len = self.profile().rtp_tag_len();
        let mut lane = [(0usize, 0usize, 0u32); LANES];
        let mut nl = 0;
        for (j, d) in pending {
            let Some(roc) = d.protect_roc else {
                continue;
            };
            lane[nl] = (*j, d.end, roc);
            nl += 1;
            if nl < LANES {
                continue;
            }
            nl = 0;
            let view: &[Job<'_>] = jobs;
            let data = lane.map(|(j, end, _)| {
                view.get(j)
                    .and_then(|job| job.buf.get(..end))
                    .unwrap_or(&[])
            });
            let tags = mac.tags_roc(data, lane.map(|l| l.2));
            for ((j, end, _), t) in lane.iter().zip(tags) {
                if let (Some(job), Some(src)) = (jobs.get_mut(*j), t.get(..tag_len))
                    && let Some(dst) = job.buf.get_mut(*end..*end + tag_len)
                {
                    dst.copy_from_slice(src);
                }
            }
        }
        for (j, end, roc) in lane.iter().take(nl) {
            if let Some(job) = jobs.get_mut(*j) {
                self.write_rtp_tag(job.buf, *end, *roc, mac);
            }
        }
    }
}
