//! `srtp-bench`: ns per packet of SRTP protect and unprotect of a 172-byte G.711 packet
//! (12-byte header + 160-byte payload), one core, thread CPU time, median of several rounds,
//! for every profile: Tollgate (single-packet and batch API) side by side with libsrtp built
//! with OpenSSL and Debian's libsrtp2 (NSS), all in the same process.
//!
//! The batch API is measured twice: a batch of `--batch` packets of one flow (one context),
//! and a batch of `--batch` packets from as many flows, each packet from a different context
//! with its own keys (a relay's burst). The report ends with the goal lines of the latter for
//! AES_CM_128_HMAC_SHA1_80 and the VM's CPU steal during each row and the whole run.
//!
//! Each timed iteration copies the packet into the work buffer (and, for protect, stamps the
//! next sequence number) before the call, for every implementation alike.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use tollgate_bench::steal::CpuTimes;
use tollgate_bench::{median, pin_to_current_cpu, thread_cpu_ns};
use tollgate_libsrtp::{Direction, Lib, Options, Session};
use tollgate_srtp::{Config, Context, Job, KeyMaterial, Op, Profile, process_batch};

#[derive(Parser, Debug)]
#[command(about = "SRTP ns/packet: Tollgate vs libsrtp (OpenSSL and Debian builds)")]
struct Args {
    /// libsrtp built with OpenSSL (a shared object); omitted rows are marked n/a.
    #[arg(long)]
    openssl_lib: Option<PathBuf>,
    /// Skip Debian's libsrtp2.
    #[arg(long)]
    no_debian: bool,
    /// Rounds per measurement (the median is reported).
    #[arg(long, default_value_t = 9)]
    rounds: usize,
    /// Packets per round.
    #[arg(long, default_value_t = 20_000)]
    packets: usize,
    /// Packets per batch call.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Write the Markdown report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only these profiles (SDES names); default all.
    #[arg(long)]
    profile: Vec<String>,
}

const PKT: usize = 172;
const SLOT: usize = 256;
const SSRC: u32 = 0x1234_5678;

fn template() -> [u8; PKT] {
    let mut p = [0u8; PKT];
    p[0] = 0x80;
    p[4..8].copy_from_slice(&160u32.to_be_bytes());
    p[8..12].copy_from_slice(&SSRC.to_be_bytes());
    for (i, b) in p[12..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(7) ^ 0x55;
    }
    p
}

fn key_material(p: Profile) -> KeyMaterial {
    flow_key_material(p, 0)
}

/// The keys of flow `f` of the many-flow batch (flow 0's are [`key_material`]'s).
fn flow_key_material(p: Profile, f: usize) -> KeyMaterial {
    KeyMaterial::generate(p, |b| {
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(13).wrapping_add(1) ^ (f as u8).wrapping_mul(71);
        }
    })
}

/// Pre-protected packets (with Tollgate; byte-identical to libsrtp's, as the differential
/// tests prove) for the unprotect runs, SLOT bytes apart.
fn protected_stream(p: Profile, n: usize) -> anyhow::Result<(Vec<u8>, usize)> {
    protected_flow_stream(p, 0, n)
}

/// As [`protected_stream`], under the keys of flow `f`.
fn protected_flow_stream(p: Profile, f: usize, n: usize) -> anyhow::Result<(Vec<u8>, usize)> {
    let mut tx = Context::new(&flow_key_material(p, f), Config::default())?;
    let t = template();
    let mut out = vec![0u8; n * SLOT];
    let mut len = 0;
    for (i, slot) in out.chunks_mut(SLOT).enumerate() {
        slot[..PKT].copy_from_slice(&t);
        slot[2..4].copy_from_slice(&(i as u16).to_be_bytes());
        len = tx.protect_rtp(slot, PKT)?;
    }
    Ok((out, len))
}

/// The implementations under test.
enum Imp {
    Ours,
    /// Batches of this many packets of one context.
    OursBatch(usize),
    /// Batches of this many packets, each from a different context (the protected streams
    /// of the flows, for unprotect).
    OursFlows(usize),
    Lib(Arc<Lib>),
}

#[derive(Clone, Copy)]
enum Dir {
    Protect,
    Unprotect,
}

/// One timed round: ns per packet. `flows` holds each flow's protected stream for
/// [`Imp::OursFlows`] unprotect.
fn round(
    imp: &Imp,
    p: Profile,
    dir: Dir,
    n: usize,
    stream: &[u8],
    plen: usize,
    flows: &[Vec<u8>],
) -> anyhow::Result<f64> {
    let km = key_material(p);
    let t = template();
    let mut work = vec![0u8; SLOT * 64];
    match imp {
        Imp::Ours => {
            let mut c = Context::new(&km, Config::default())?;
            let buf = &mut work[..SLOT];
            let t0 = thread_cpu_ns();
            match dir {
                Dir::Protect => {
                    for i in 0..n {
                        buf[..PKT].copy_from_slice(&t);
                        buf[2..4].copy_from_slice(&(i as u16).to_be_bytes());
                        c.protect_rtp(buf, PKT)
                            .map_err(|e| anyhow::anyhow!("{e}"))?;
                    }
                }
                Dir::Unprotect => {
                    for src in stream.chunks(SLOT).take(n) {
                        buf[..plen].copy_from_slice(&src[..plen]);
                        c.unprotect_rtp(buf, plen)
                            .map_err(|e| anyhow::anyhow!("{e}"))?;
                    }
                }
            }
            Ok((thread_cpu_ns() - t0) as f64 / n as f64)
        }
        Imp::OursBatch(b) => {
            let b = (*b).clamp(1, 64);
            let mut c = Context::new(&km, Config::default())?;
            let mut srcs = stream.chunks(SLOT);
            let mut done = 0;
            let t0 = thread_cpu_ns();
            while done < n {
                let k = b.min(n - done);
                let mut slots = work.chunks_mut(SLOT);
                let mut jobs: [Option<Job<'_>>; 64] = std::array::from_fn(|_| None);
                for (i, job) in jobs.iter_mut().take(k).enumerate() {
                    let Some(buf) = slots.next() else { break };
                    *job = Some(match dir {
                        Dir::Protect => {
                            buf[..PKT].copy_from_slice(&t);
                            buf[2..4].copy_from_slice(&((done + i) as u16).to_be_bytes());
                            Job::new(0, Op::ProtectRtp, buf, PKT)
                        }
                        Dir::Unprotect => {
                            let src = srcs.next().context("stream too short")?;
                            buf[..plen].copy_from_slice(&src[..plen]);
                            Job::new(0, Op::UnprotectRtp, buf, plen)
                        }
                    });
                }
                let mut flat: [Job<'_>; 64] =
                    std::array::from_fn(|_| Job::new(0, Op::ProtectRtp, &mut [], 0));
                let mut m = 0;
                for j in jobs.into_iter().flatten() {
                    flat[m] = j;
                    m += 1;
                }
                c.process_batch(&mut flat[..m]);
                if let Some(Err(e)) = flat[..m].iter().map(|j| j.result).find(|r| r.is_err()) {
                    anyhow::bail!("batch: {e}");
                }
                done += k;
            }
            Ok((thread_cpu_ns() - t0) as f64 / n as f64)
        }
        Imp::OursFlows(b) => {
            let b = (*b).clamp(1, 64).min(flows.len().max(1));
            let mut ctxs = (0..b)
                .map(|f| Context::new(&flow_key_material(p, f), Config::default()))
                .collect::<Result<Vec<_>, _>>()?;
            let mut done = 0;
            let t0 = thread_cpu_ns();
            while done < n {
                let k = b.min(n - done);
                // Packet `f` of burst `r` is flow f's packet r (sequence number r).
                let r = done / b;
                let mut jobs: [Job<'_>; 64] =
                    std::array::from_fn(|_| Job::new(0, Op::ProtectRtp, &mut [], 0));
                for (f, (job, buf)) in jobs.iter_mut().zip(work.chunks_mut(SLOT)).enumerate() {
                    if f == k {
                        break;
                    }
                    *job = match dir {
                        Dir::Protect => {
                            buf[..PKT].copy_from_slice(&t);
                            buf[2..4].copy_from_slice(&(r as u16).to_be_bytes());
                            Job::new(f, Op::ProtectRtp, buf, PKT)
                        }
                        Dir::Unprotect => {
                            let src = flows
                                .get(f)
                                .and_then(|s| s.get(r * SLOT..r * SLOT + plen))
                                .context("flow stream too short")?;
                            buf[..plen].copy_from_slice(src);
                            Job::new(f, Op::UnprotectRtp, buf, plen)
                        }
                    };
                }
                process_batch(&mut ctxs, &mut jobs[..k]);
                if let Some(Err(e)) = jobs[..k].iter().map(|j| j.result).find(|r| r.is_err()) {
                    anyhow::bail!("batch of flows: {e}");
                }
                done += k;
            }
            Ok((thread_cpu_ns() - t0) as f64 / n as f64)
        }
        Imp::Lib(lib) => {
            let key = [km.key(), km.salt()].concat();
            let d = match dir {
                Dir::Protect => Direction::Outbound,
                Dir::Unprotect => Direction::Inbound,
            };
            let mut s = Session::new(lib, p.sdes_name(), &key, d, Options::default())?;
            let buf = &mut work[..SLOT];
            let t0 = thread_cpu_ns();
            match dir {
                Dir::Protect => {
                    for i in 0..n {
                        buf[..PKT].copy_from_slice(&t);
                        buf[2..4].copy_from_slice(&(i as u16).to_be_bytes());
                        s.protect(buf, PKT)
                            .map_err(|e| anyhow::anyhow!("srtp_protect {e}"))?;
                    }
                }
                Dir::Unprotect => {
                    for src in stream.chunks(SLOT).take(n) {
                        buf[..plen].copy_from_slice(&src[..plen]);
                        s.unprotect(buf, plen)
                            .map_err(|e| anyhow::anyhow!("srtp_unprotect {e}"))?;
                    }
                }
            }
            Ok((thread_cpu_ns() - t0) as f64 / n as f64)
        }
    }
}

fn measure(
    imp: &Imp,
    p: Profile,
    dir: Dir,
    a: &Args,
    stream: &[u8],
    plen: usize,
    flows: &[Vec<u8>],
) -> anyhow::Result<f64> {
    // One warm-up round, then the median of the measured ones.
    round(imp, p, dir, a.packets.min(2000), stream, plen, flows)?;
    let mut v = Vec::with_capacity(a.rounds);
    for _ in 0..a.rounds.max(1) {
        v.push(round(imp, p, dir, a.packets, stream, plen, flows)?);
    }
    Ok(median(v))
}

fn fmt_ns(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |x| format!("{x:.0}"))
}

/// `base / ours` (how many times faster ours is), if both are finite and positive.
fn speedup(base: Option<f64>, ours: f64) -> Option<f64> {
    base.filter(|b| b.is_finite() && *b > 0.0 && ours.is_finite() && ours > 0.0)
        .map(|b| b / ours)
}

fn ratio(base: Option<f64>, ours: f64) -> String {
    speedup(base, ours).map_or_else(|| "n/a".into(), |r| format!("{r:.2}x"))
}

/// One row's figures for the goal lines.
struct Row {
    profile: Profile,
    op: &'static str,
    ours: f64,
    flows: f64,
    ossl: Option<f64>,
    steal: f64,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let cpu = pin_to_current_cpu();
    let openssl = match &a.openssl_lib {
        Some(p) => {
            Some(Lib::open(&p.to_string_lossy()).with_context(|| format!("{}", p.display()))?)
        }
        None => None,
    };
    let debian = if a.no_debian {
        None
    } else {
        Some(Lib::debian()?)
    };
    let profiles: Vec<Profile> = if a.profile.is_empty() {
        Profile::ALL.to_vec()
    } else {
        a.profile
            .iter()
            .map(|n| Profile::from_sdes_name(n).with_context(|| format!("unknown profile {n}")))
            .collect::<anyhow::Result<_>>()?
    };
    let mut md = String::new();
    writeln!(
        md,
        "# SRTP benchmark\n\nns per packet (172-byte RTP: 12-byte header + 160-byte payload), one core \
         (pinned to CPU {}), thread CPU time, median of {} rounds of {} packets. Batch 1 flow: {b} \
         packets per `process_batch` call on one context. Batch {b} flows: {b} packets per call, \
         each from a different context with its own keys (a relay's burst). Ratio = \
         libsrtp-OpenSSL ns / Tollgate ns (= packets/s speed-up); `flows/single` = Tollgate \
         single-packet ns / Tollgate batch-of-flows ns. Steal: the VM's CPU steal during the row \
         (vmstat `st`, from /proc/stat).\n",
        cpu.map_or_else(|| "?".into(), |c| c.to_string()),
        a.rounds,
        a.packets,
        b = a.batch
    )?;
    writeln!(
        md,
        "| profile | op | Tollgate | batch 1 flow | batch {b} flows | libsrtp OpenSSL | libsrtp Debian (NSS) | ratio single | ratio batch 1 flow | ratio batch {b} flows | flows/single | steal |",
        b = a.batch
    )?;
    writeln!(
        md,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    let run0 = CpuTimes::now().unwrap_or_default();
    let mut rows = Vec::new();
    let nflows = a.batch.clamp(1, 64);
    for p in profiles {
        let (stream, plen) = protected_stream(p, a.packets)?;
        let per_flow = a.packets.div_ceil(nflows) + 1;
        let flows = (0..nflows)
            .map(|f| protected_flow_stream(p, f, per_flow).map(|(s, _)| s))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (dir, name) in [(Dir::Protect, "protect"), (Dir::Unprotect, "unprotect")] {
            eprintln!("==> {p} {name}");
            let st0 = CpuTimes::now().unwrap_or_default();
            let m = |imp: &Imp| measure(imp, p, dir, &a, &stream, plen, &flows);
            let ours = m(&Imp::Ours)?;
            let batch = m(&Imp::OursBatch(a.batch))?;
            let many = m(&Imp::OursFlows(nflows))?;
            let ossl = match &openssl {
                Some(l) => Some(m(&Imp::Lib(l.clone()))?),
                None => None,
            };
            let deb = match &debian {
                Some(l) => Some(m(&Imp::Lib(l.clone()))?),
                None => None,
            };
            let steal = CpuTimes::now().unwrap_or_default().steal_pct_since(&st0);
            let row = format!(
                "| {p} | {name} | {ours:.0} | {batch:.0} | {many:.0} | {} | {} | {} | {} | {} | {} | {steal:.1}% |",
                fmt_ns(ossl),
                fmt_ns(deb),
                ratio(ossl, ours),
                ratio(ossl, batch),
                ratio(ossl, many),
                ratio(Some(ours), many),
            );
            eprintln!("    {row}");
            writeln!(md, "{row}")?;
            rows.push(Row {
                profile: p,
                op: name,
                ours,
                flows: many,
                ossl,
                steal,
            });
        }
    }
    let run_steal = CpuTimes::now().unwrap_or_default().steal_pct_since(&run0);
    writeln!(md, "\n## Goals\n")?;
    let goal_profile = Profile::Aes128CmHmacSha1_80;
    let mut goals = 0;
    for r in rows.iter().filter(|r| r.profile == goal_profile) {
        goals += 1;
        let vs_lib = speedup(r.ossl, r.flows);
        let vs_single = speedup(Some(r.ours), r.flows);
        let verdict = |v: Option<f64>, want: f64| match v {
            Some(x) if x >= want => format!("{x:.2}x — **met**"),
            Some(x) => format!("{x:.2}x — **not met**"),
            None => "not measured — **not met**".to_owned(),
        };
        writeln!(
            md,
            "* {p} {op}, batch of {nflows} packets from {nflows} flows >= 3x libsrtp-OpenSSL packets/s: {}.",
            verdict(vs_lib, 3.0),
            p = r.profile,
            op = r.op
        )?;
        writeln!(
            md,
            "* {p} {op}, batch of {nflows} packets from {nflows} flows >= 1.2x Tollgate single-packet packets/s: {} (steal {:.1}%).",
            verdict(vs_single, 1.2),
            r.steal,
            p = r.profile,
            op = r.op
        )?;
    }
    if goals == 0 {
        writeln!(
            md,
            "* {goal_profile} was not among the measured profiles — **not measured**."
        )?;
    }
    writeln!(md, "* CPU steal over the whole run: {run_steal:.1}%.")?;
    if run_steal >= 5.0 || rows.iter().any(|r| r.steal >= 5.0) {
        writeln!(
            md,
            "At least one row ran under CPU steal of 5% or more: its figures are lower than the machine can do."
        )?;
    }
    println!("{md}");
    if let Some(out) = &a.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, &md).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("report written to {}", out.display());
    }
    Ok(())
}
