//! `srtp-bench`: ns per packet of SRTP protect and unprotect of a 172-byte G.711 packet
//! (12-byte header + 160-byte payload), one core, thread CPU time, median of several rounds,
//! for every profile: Tollgate (single-packet and batch API) side by side with libsrtp built
//! with OpenSSL and Debian's libsrtp2 (NSS), all in the same process.
//!
//! Each timed iteration copies the packet into the work buffer (and, for protect, stamps the
//! next sequence number) before the call, for every implementation alike.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use tollgate_bench::{median, pin_to_current_cpu, thread_cpu_ns};
use tollgate_libsrtp::{Direction, Lib, Options, Session};
use tollgate_srtp::{Config, Context, Job, KeyMaterial, Op, Profile};

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
    KeyMaterial::generate(p, |b| {
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(13).wrapping_add(1);
        }
    })
}

/// Pre-protected packets (with Tollgate; byte-identical to libsrtp's, as the differential
/// tests prove) for the unprotect runs, SLOT bytes apart.
fn protected_stream(p: Profile, n: usize) -> anyhow::Result<(Vec<u8>, usize)> {
    let mut tx = Context::new(&key_material(p), Config::default())?;
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
    OursBatch(usize),
    Lib(Arc<Lib>),
}

#[derive(Clone, Copy)]
enum Dir {
    Protect,
    Unprotect,
}

/// One timed round: ns per packet.
fn round(
    imp: &Imp,
    p: Profile,
    dir: Dir,
    n: usize,
    stream: &[u8],
    plen: usize,
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
) -> anyhow::Result<f64> {
    // One warm-up round, then the median of the measured ones.
    round(imp, p, dir, a.packets.min(2000), stream, plen)?;
    let mut v = Vec::with_capacity(a.rounds);
    for _ in 0..a.rounds.max(1) {
        v.push(round(imp, p, dir, a.packets, stream, plen)?);
    }
    Ok(median(v))
}

fn fmt_ns(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |x| format!("{x:.0}"))
}

fn ratio(base: Option<f64>, ours: f64) -> String {
    base.map_or_else(|| "n/a".into(), |b| format!("{:.2}x", b / ours))
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
         (pinned to CPU {}), thread CPU time, median of {} rounds of {} packets. Batch: {} packets \
         per `process_batch` call on one context. Ratio = libsrtp-OpenSSL ns / Tollgate ns \
         (= packets/s speed-up).\n",
        cpu.map_or_else(|| "?".into(), |c| c.to_string()),
        a.rounds,
        a.packets,
        a.batch
    )?;
    writeln!(
        md,
        "| profile | op | Tollgate | Tollgate batch | libsrtp OpenSSL | libsrtp Debian (NSS) | ratio single | ratio batch |"
    )?;
    writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|")?;
    for p in profiles {
        let (stream, plen) = protected_stream(p, a.packets)?;
        for (dir, name) in [(Dir::Protect, "protect"), (Dir::Unprotect, "unprotect")] {
            eprintln!("==> {p} {name}");
            let ours = measure(&Imp::Ours, p, dir, &a, &stream, plen)?;
            let batch = measure(&Imp::OursBatch(a.batch), p, dir, &a, &stream, plen)?;
            let ossl = match &openssl {
                Some(l) => Some(measure(&Imp::Lib(l.clone()), p, dir, &a, &stream, plen)?),
                None => None,
            };
            let deb = match &debian {
                Some(l) => Some(measure(&Imp::Lib(l.clone()), p, dir, &a, &stream, plen)?),
                None => None,
            };
            let row = format!(
                "| {p} | {name} | {ours:.0} | {batch:.0} | {} | {} | {} | {} |",
                fmt_ns(ossl),
                fmt_ns(deb),
                ratio(ossl, ours),
                ratio(ossl, batch)
            );
            eprintln!("    {row}");
            writeln!(md, "{row}")?;
        }
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
