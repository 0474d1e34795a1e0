//! The batch API: many packets of one or many contexts per call.
//!
//! A data-plane worker receives a burst of packets, looks each one's flow up and hands the
//! whole burst over as [`Job`]s, typically one packet per flow. [`process_batch`] shares the
//! HMAC-SHA1 work of the burst *across* contexts: the tags of up to a *group* of packets, each
//! under its own context's key, are computed together, every lane starting from its key's
//! precomputed inner/outer midstates (copied out of the context). A group is 16 packets on the
//! wide engine of `sha1x` (AVX-512: SHA-1 in 32-bit vector arithmetic, one packet per element,
//! the "multi-buffer" technique; used from 5 packets on), else 4, whose SHA-NI compressions
//! run interleaved in 4 lanes. (On the Sapphire Rapids this was measured on, SHA-NI is
//! throughput-bound: 4 interleaved lanes gain next to nothing, the wide engine is about 3.5x
//! faster per packet.)
//!
//! The burst is walked in groups, each ending at its group-size-th AES-CM SRTP unprotect job
//! that reaches tag verification (or at the end of the burst):
//!
//! 0. (unprotect) pre-verification: the tags of the group's unprotect jobs are computed
//!    together against the state as it stands before the group, and kept with the ROC, key
//!    and profile they were computed for;
//! 1. per job, in job order: the context is fetched from the [`ContextSet`], then header,
//!    stream, index estimate, replay check, (unprotect) tag verification, commit of the index
//!    (the stateful part, which must be sequential because packets of one stream depend on
//!    each other), and the AES-CM keystream with the context's own key (a 160-byte payload is
//!    10 blocks, one pipelined AES call). An unprotect job uses its stage-0 tag only if the
//!    ROC, key and profile are still the ones it was computed for (an earlier job of the same
//!    context may have moved the stream across a wrap); otherwise it computes the tag itself;
//! 2. (protect) the encrypted packets are queued with a copy of their key and ROC; every full
//!    group of queued packets (whatever their contexts) is tagged together, and the remainder at
//!    the end of the call.
//!
//! Work arrays are group-sized (at most 16 entries), filled as the walk goes and initialised
//! once per call or group, not per packet; nothing is allocated. GCM contexts and SRTCP jobs
//! run through the single-packet path inside the same walk. Results and bytes are exactly those
//! of calling the single-packet functions in job order, including several jobs of one context
//! in a burst.

use crate::crypto::{HmacSha1, WIDE_MIN};
use crate::sha1x::WIDE;
use crate::{Context, Error, Profile};

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
/// flow table implements it to hand out the context of flow `id`. The batch asks for a
/// context once per job (twice for an SRTP unprotect job) and holds it only for that job.
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

/// One context for every id: [`Context::process_batch`].
struct Only<'c>(&'c mut Context);

impl ContextSet for Only<'_> {
    fn context(&mut self, _id: usize) -> Option<&mut Context> {
        Some(&mut *self.0)
    }
}

/// Packets whose HMAC-SHA1 compressions are interleaved with SHA-NI ([`crate::sha1x`]): four
/// chains keep the SHA unit busy where one leaves it waiting on `sha1rnds4`'s latency (on cores
/// where that latency, not the unit's throughput, is the limit).
const LANES: usize = 4;

/// Most packets tagged together: the wide engine's 16 lanes ([`crate::sha1x::WIDE`]).
const GROUP: usize = WIDE;

/// Packets tagged together on this CPU: [`GROUP`] with the wide engine (AVX-512F), else
/// [`LANES`].
#[inline]
fn group_size() -> usize {
    if crate::sha1x::wide_available() {
        GROUP
    } else {
        LANES
    }
}

/// A stage-0 tag: job `job`'s tag under `key` for ROC `roc`, with `profile` (which fixes the
/// tag length, hence the authenticated bytes).
#[derive(Clone, Copy)]
struct PreTag {
    job: usize,
    roc: u32,
    key: HmacSha1,
    profile: Profile,
    tag: [u8; 20],
}

/// A protected packet waiting for its tag: HMAC(`key`, `buf[..end]` || `roc`), `tag_len`
/// bytes of it written at `end`.
#[derive(Clone, Copy)]
struct TagJob {
    job: usize,
    end: usize,
    roc: u32,
    key: HmacSha1,
    tag_len: usize,
}

const NO_PRE: PreTag = PreTag {
    job: usize::MAX,
    roc: 0,
    key: HmacSha1::UNUSED,
    profile: Profile::Aes128CmHmacSha1_80,
    tag: [0; 20],
};

const NO_TAG: TagJob = TagJob {
    job: usize::MAX,
    end: 0,
    roc: 0,
    key: HmacSha1::UNUSED,
    tag_len: 0,
};

/// The tags of the first `n` entries (`n` <= [`GROUP`]), each under its own key: on the wide
/// engine from [`WIDE_MIN`] packets, else four at a time with SHA-NI. The rest of the result is
/// zeros.
fn tags(
    keys: [&HmacSha1; GROUP],
    data: [&[u8]; GROUP],
    roc: [u32; GROUP],
    n: usize,
) -> [[u8; 20]; GROUP] {
    if n >= WIDE_MIN && crate::sha1x::wide_available() {
        return HmacSha1::tags_wide(keys, data, roc, n);
    }
    fn first<const N: usize>(
        keys: &[&HmacSha1],
        data: &[&[u8]],
        roc: &[u32],
        out: &mut [[u8; 20]],
    ) {
        if let (Some(k), Some(d), Some(r)) = (
            keys.first_chunk::<N>(),
            data.first_chunk::<N>(),
            roc.first_chunk::<N>(),
        ) {
            let t = HmacSha1::tags_lanes(*k, *d, *r);
            for (o, t) in out.iter_mut().zip(t) {
                *o = t;
            }
        }
    }
    let mut out = [[0u8; 20]; GROUP];
    let mut at = 0;
    while at < n.min(GROUP) {
        let m = (n - at).min(LANES);
        let (Some(k), Some(d), Some(r), Some(o)) = (
            keys.get(at..),
            data.get(at..),
            roc.get(at..),
            out.get_mut(at..),
        ) else {
            break;
        };
        match m {
            1 => first::<1>(k, d, r, o),
            2 => first::<2>(k, d, r, o),
            3 => first::<3>(k, d, r, o),
            _ => first::<4>(k, d, r, o),
        }
        at += m;
    }
    out
}

/// Processes `jobs` against the contexts of `set`, with the results and bytes of the
/// single-packet calls in job order; the HMAC-SHA1 work is shared across contexts (see the
/// module documentation). A job naming a missing context gets [`Error::NoContext`].
pub fn process_batch<S: ContextSet + ?Sized>(set: &mut S, jobs: &mut [Job<'_>]) {
    let size = group_size();
    let mut queued = [NO_TAG; GROUP];
    let mut nq = 0;
    let mut pre = [NO_PRE; GROUP];
    let mut from = 0;
    while from < jobs.len() {
        let (end, np) = pre_verify(set, jobs, from, size, &mut pre);
        let pre = pre.get(..np).unwrap_or(&[]);
        for i in from..end {
            let Some(j) = jobs.get_mut(i) else {
                break;
            };
            let Some(ctx) = set.context(j.ctx) else {
                j.result = Err(Error::NoContext(j.ctx));
                continue;
            };
            let front = match j.op {
                Op::ProtectRtp => ctx.protect_rtp_front(j.buf, j.len),
                Op::UnprotectRtp => {
                    let tag = pre.iter().find(|p| p.job == i).and_then(|p| {
                        let (_, key) = ctx.rtp_cm()?;
                        (p.profile == ctx.profile() && p.key.same_key(key))
                            .then_some((p.roc, p.tag))
                    });
                    ctx.unprotect_rtp_front(j.buf, j.len, tag)
                }
                Op::ProtectRtcp | Op::UnprotectRtcp => {
                    ctx.process_one(j);
                    continue;
                }
            };
            j.result = front.map(|(len, _)| len);
            let Ok((_, Some(d))) = front else {
                continue;
            };
            ctx.keystream_cm(j.buf, &d);
            let (Some(roc), Some((_, key))) = (d.protect_roc, ctx.rtp_cm()) else {
                continue;
            };
            let t = TagJob {
                job: i,
                end: d.end,
                roc,
                key: *key,
                tag_len: ctx.profile().rtp_tag_len(),
            };
            if let Some(q) = queued.get_mut(nq) {
                *q = t;
                nq += 1;
            }
            if nq >= size {
                write_tags(jobs, &queued, nq);
                nq = 0;
            }
        }
        from = end;
    }
    write_tags(jobs, &queued, nq);
}

/// Stage 0 from job `from`: the group ends after the `size`-th AES-CM RTP unprotect job that
/// reaches tag verification (or at the end of the burst); returns that end and the number of
/// the group's unprotect jobs, whose tags, computed against the state before the group, it
/// writes to the start of `pre`.
fn pre_verify<S: ContextSet + ?Sized>(
    set: &mut S,
    jobs: &[Job<'_>],
    from: usize,
    size: usize,
    pre: &mut [PreTag; GROUP],
) -> (usize, usize) {
    let mut data: [&[u8]; GROUP] = [&[]; GROUP];
    let mut n = 0;
    let mut end = jobs.len();
    for (i, j) in jobs.iter().enumerate().skip(from) {
        if j.op != Op::UnprotectRtp {
            continue;
        }
        let Some(ctx) = set.context(j.ctx) else {
            continue;
        };
        let (Some((_, key)), Some((d, roc))) =
            (ctx.rtp_cm(), ctx.unprotect_rtp_auth_input(j.buf, j.len))
        else {
            continue;
        };
        if let (Some(p), Some(dd)) = (pre.get_mut(n), data.get_mut(n)) {
            *p = PreTag {
                job: i,
                roc,
                key: *key,
                profile: ctx.profile(),
                tag: [0; 20],
            };
            *dd = d;
            n += 1;
        }
        if n >= size {
            end = i + 1;
            break;
        }
    }
    let t = tags(
        pre.each_ref().map(|p| &p.key),
        data,
        pre.each_ref().map(|p| p.roc),
        n,
    );
    for (p, t) in pre.iter_mut().zip(t).take(n) {
        p.tag = t;
    }
    (end, n)
}

/// Writes the tags of the first `n` queued protected packets.
fn write_tags(jobs: &mut [Job<'_>], queued: &[TagJob; GROUP], n: usize) {
    if n == 0 {
        return;
    }
    let view: &[Job<'_>] = jobs;
    let data = queued.each_ref().map(|q| {
        view.get(q.job)
            .and_then(|j| j.buf.get(..q.end))
            .unwrap_or(&[])
    });
    let t = tags(
        queued.each_ref().map(|q| &q.key),
        data,
        queued.each_ref().map(|q| q.roc),
        n,
    );
    for (q, t) in queued.iter().zip(t).take(n) {
        if let (Some(job), Some(src)) = (jobs.get_mut(q.job), t.get(..q.tag_len))
            && let Some(dst) = job.buf.get_mut(q.end..q.end + q.tag_len)
        {
            dst.copy_from_slice(src);
        }
    }
}

impl Context {
    /// Processes `jobs`, all against this context whatever their `ctx`, as [`process_batch`]
    /// does.
    pub fn process_batch(&mut self, jobs: &mut [Job<'_>]) {
        process_batch(&mut Only(self), jobs);
    }

    /// One job through the single-packet API.
    fn process_one(&mut self, j: &mut Job<'_>) {
        j.result = self.apply(j.op, j.buf, j.len);
    }

    /// One packet through the single-packet call that `op` names.
    #[inline]
    pub fn apply(&mut self, op: Op, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        match op {
            Op::ProtectRtp => self.protect_rtp(buf, len),
            Op::UnprotectRtp => self.unprotect_rtp(buf, len),
            Op::ProtectRtcp => self.protect_rtcp(buf, len),
            Op::UnprotectRtcp => self.unprotect_rtcp(buf, len),
        }
    }
}
