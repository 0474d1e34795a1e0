//! `tollgate srtp decrypt|encrypt`: turn a capture of SDES-keyed SRTP/SRTCP into plain
//! RTP/RTCP (or the reverse), for debugging with analysers that cannot decrypt SRTP.
//!
//! Reads pcap or pcapng (Ethernet with VLAN tags, Linux cooked v1/v2, raw IP, BSD loopback;
//! IPv4 and IPv6 without extension headers), selects UDP packets by port (source or
//! destination; optionally by SSRC), keeps one SRTP context per direction (UDP 4-tuple), and
//! writes a pcap of the processed packets with IP lengths and IPv4/UDP checksums fixed. RTCP is
//! the RTCP port's traffic (default port + 1) and, on the RTP port (rtcp-mux, RFC 5761),
//! packets whose second octet is an RTCP packet type (200..=207). Refused packets are left out
//! of the output and counted per stream and reason.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use pcap_file::DataLink;
use tollgate_srtp::{Config, Context, KeyMaterial, Profile};

/// `tollgate srtp ...`
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    op: Op,
}

#[derive(clap::Subcommand, Debug)]
enum Op {
    /// SRTP/SRTCP in, plain RTP/RTCP out.
    Decrypt(Opts),
    /// Plain RTP/RTCP in, SRTP/SRTCP out.
    Encrypt(Opts),
}

/// Options shared by both directions.
#[derive(clap::Args, Debug, Clone)]
pub struct Opts {
    /// Input capture (pcap or pcapng).
    #[arg(long = "in", short = 'i')]
    pub input: PathBuf,
    /// Output capture (pcap, same link type).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// UDP port of the RTP stream (matched as source or destination port).
    #[arg(long, short = 'p')]
    pub port: u16,
    /// UDP port of RTCP (default: port + 1).
    #[arg(long)]
    pub rtcp_port: Option<u16>,
    /// Only this SSRC (decimal or 0x-hex).
    #[arg(long, value_parser = parse_ssrc)]
    pub ssrc: Option<u32>,
    /// Crypto suite (RFC 4568 / 6188 / 7714 name).
    #[arg(long, short = 's', default_value = "AES_CM_128_HMAC_SHA1_80")]
    pub suite: String,
    /// SDES key parameter, `inline:<base64 key||salt>[|lifetime]`.
    #[arg(long, short = 'k')]
    pub key: String,
    /// Replay window (packets) of the receiving contexts.
    #[arg(long, default_value_t = 1024)]
    pub replay_window: usize,
}

fn parse_ssrc(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("bad SSRC {s:?}: {e}"))
}

/// Runs the subcommand.
pub fn run(args: Args) -> ExitCode {
    let (opts, encrypt) = match args.op {
        Op::Decrypt(o) => (o, false),
        Op::Encrypt(o) => (o, true),
    };
    match run_files(&opts, encrypt) {
        Ok(report) => {
            print!("{}", report.render(encrypt));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tollgate srtp: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_files(opts: &Opts, encrypt: bool) -> anyhow::Result<Report> {
    let input =
        std::fs::read(&opts.input).with_context(|| format!("reading {}", opts.input.display()))?;
    let (out, report) = process(&input, opts, encrypt)?;
    std::fs::write(&opts.out, out).with_context(|| format!("writing {}", opts.out.display()))?;
    Ok(report)
}

/// An IP address and UDP port.
pub type Endpoint = (IpAddr, u16);

/// One direction of one stream, as reported.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamKey {
    /// Source address and port.
    pub src: (IpAddr, u16),
    /// Destination address and port.
    pub dst: (IpAddr, u16),
    /// SSRC (RTP) or sender SSRC (RTCP).
    pub ssrc: u32,
    /// Whether this is the RTCP of the stream.
    pub rtcp: bool,
}

/// Counts of one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Packets selected.
    pub packets: u64,
    /// Packets processed and written.
    pub ok: u64,
    /// Refusals by reason.
    pub refused: BTreeMap<&'static str, u64>,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    /// Per stream.
    pub streams: BTreeMap<StreamKey, Counts>,
    /// Frames read.
    pub frames: u64,
    /// Frames written.
    pub written: u64,
}

impl Report {
    fn render(&self, encrypt: bool) -> String {
        let verb = if encrypt { "encrypted" } else { "decrypted" };
        let mut s = format!(
            "{} frames read, {} written\n{:<48} {:>10} {:>8} {:>10}  refused by reason\n",
            self.frames, self.written, "stream", "ssrc", "packets", verb
        );
        for (k, c) in &self.streams {
            let name = format!(
                "{} {}:{} -> {}:{}",
                if k.rtcp { "RTCP" } else { "RTP " },
                k.src.0,
                k.src.1,
                k.dst.0,
                k.dst.1
            );
            let refused: Vec<String> = c.refused.iter().map(|(r, n)| format!("{r}={n}")).collect();
            s.push_str(&format!(
                "{name:<48} {:#010x} {:>8} {:>10}  {}\n",
                k.ssrc,
                c.packets,
                c.ok,
                if refused.is_empty() {
                    "-".into()
                } else {
                    refused.join(" ")
                }
            ));
        }
        s
    }
}

/// A captured frame.
struct Frame {
    ts: std::time::Duration,
    link: DataLink,
    data: Vec<u8>,
    orig_len: u32,
}

fn read_frames(input: &[u8]) -> anyhow::Result<Vec<Frame>> {
    let mut frames = Vec::new();
    if input.get(..4) == Some(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut r = pcap_file::pcapng::PcapNgReader::new(input).context("pcapng header")?;
        while let Some(b) = r.next_block() {
            let b = b.context("pcapng block")?;
            if let pcap_file::pcapng::Block::EnhancedPacket(p) = b {
                let (id, ts, orig_len) = (p.interface_id, p.timestamp, p.original_len);
                let data = p.data.into_owned();
                let link = r
                    .interfaces()
                    .get(id as usize)
                    .map(|i| i.linktype)
                    .context("packet of an undeclared interface")?;
                frames.push(Frame {
                    ts,
                    link,
                    orig_len,
                    data,
                });
            }
        }
    } else {
        let mut r = pcap_file::pcap::PcapReader::new(input).context("pcap header")?;
        let link = r.header().datalink;
        while let Some(p) = r.next_packet() {
            let p = p.context("pcap packet")?;
            frames.push(Frame {
                ts: p.timestamp,
                link,
                orig_len: p.orig_len,
                data: p.data.into_owned(),
            });
        }
    }
    Ok(frames)
}

/// Offsets of a UDP datagram inside a frame.
struct Udp {
    ip: usize,
    v6: bool,
    udp: usize,
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    /// Payload end (from the UDP length).
    end: usize,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn ip_offset(link: DataLink, f: &[u8]) -> Option<usize> {
    let mut at;
    let mut ethertype;
    match link {
        DataLink::ETHERNET => {
            at = 14;
            ethertype = be16(f, 12)?;
            while ethertype == 0x8100 || ethertype == 0x88a8 {
                ethertype = be16(f, at + 2)?;
                at += 4;
            }
        }
        DataLink::LINUX_SLL => {
            at = 16;
            ethertype = be16(f, 14)?;
        }
        DataLink::LINUX_SLL2 => {
            at = 20;
            ethertype = be16(f, 0)?;
        }
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => return Some(0),
        DataLink::NULL | DataLink::LOOP => return Some(4),
        _ => return None,
    }
    matches!(ethertype, 0x0800 | 0x86dd).then_some(at)
}

fn parse_udp(link: DataLink, f: &[u8]) -> Option<Udp> {
    let ip = ip_offset(link, f)?;
    let v = f.get(ip)? >> 4;
    let (udp, src, dst, v6) = match v {
        4 => {
            let ihl = usize::from(f.get(ip)? & 0x0f) * 4;
            let frag = be16(f, ip + 6)?;
            if *f.get(ip + 9)? != 17 || frag & 0x3fff != 0 || ihl < 20 {
                return None;
            }
            let s: [u8; 4] = f.get(ip + 12..ip + 16)?.try_into().ok()?;
            let d: [u8; 4] = f.get(ip + 16..ip + 20)?.try_into().ok()?;
            (ip + ihl, IpAddr::from(s), IpAddr::from(d), false)
        }
        6 => {
            if *f.get(ip + 6)? != 17 {
                return None;
            }
            let s: [u8; 16] = f.get(ip + 8..ip + 24)?.try_into().ok()?;
            let d: [u8; 16] = f.get(ip + 24..ip + 40)?.try_into().ok()?;
            (ip + 40, IpAddr::from(s), IpAddr::from(d), true)
        }
        _ => return None,
    };
    let ulen = usize::from(be16(f, udp + 4)?);
    let end = udp + ulen;
    if ulen < 8 || end > f.len() {
        return None;
    }
    Some(Udp {
        ip,
        v6,
        udp,
        src: (src, be16(f, udp)?),
        dst: (dst, be16(f, udp + 2)?),
        end,
    })
}

fn csum_add(mut sum: u32, b: &[u8]) -> u32 {
    let mut it = b.chunks_exact(2);
    for c in &mut it {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [x] = it.remainder() {
        sum += u32::from(u16::from_be_bytes([*x, 0]));
    }
    sum
}

fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Rebuilds a frame with a new UDP payload: lengths, IPv4 header checksum and UDP checksum.
fn rebuild(f: &[u8], u: &Udp, payload: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(u.udp + 8 + payload.len());
    out.extend_from_slice(f.get(..u.udp + 8)?);
    out.extend_from_slice(payload);
    let ulen = u16::try_from(8 + payload.len()).ok()?;
    out.get_mut(u.udp + 4..u.udp + 6)?
        .copy_from_slice(&ulen.to_be_bytes());
    out.get_mut(u.udp + 6..u.udp + 8)?.copy_from_slice(&[0, 0]);
    let mut sum = 0u32;
    if u.v6 {
        out.get_mut(u.ip + 4..u.ip + 6)?
            .copy_from_slice(&ulen.to_be_bytes());
        sum = csum_add(sum, out.get(u.ip + 8..u.ip + 40)?);
    } else {
        let ihl = u.udp - u.ip;
        let tot = u16::try_from(ihl + 8 + payload.len()).ok()?;
        out.get_mut(u.ip + 2..u.ip + 4)?
            .copy_from_slice(&tot.to_be_bytes());
        out.get_mut(u.ip + 10..u.ip + 12)?.copy_from_slice(&[0, 0]);
        let hc = csum_fold(csum_add(0, out.get(u.ip..u.udp)?));
        out.get_mut(u.ip + 10..u.ip + 12)?
            .copy_from_slice(&hc.to_be_bytes());
        sum = csum_add(sum, out.get(u.ip + 12..u.ip + 20)?);
    }
    sum += 17 + u32::from(ulen);
    sum = csum_add(sum, out.get(u.udp..)?);
    let mut c = csum_fold(sum);
    if c == 0 {
        c = 0xffff;
    }
    out.get_mut(u.udp + 6..u.udp + 8)?
        .copy_from_slice(&c.to_be_bytes());
    Some(out)
}

/// Processes a capture held in memory; returns the output pcap and the report.
pub fn process(input: &[u8], opts: &Opts, encrypt: bool) -> anyhow::Result<(Vec<u8>, Report)> {
    let profile = Profile::from_sdes_name(&opts.suite)
        .with_context(|| format!("unknown suite {}", opts.suite))?;
    let km = KeyMaterial::from_sdes(profile, &opts.key).context("SDES key")?;
    let cfg = Config {
        replay_window: opts.replay_window,
        max_streams: 64,
    };
    // Fail early on a key or configuration Context::new refuses.
    Context::new(&km, cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rtcp_port = opts.rtcp_port.unwrap_or(opts.port.wrapping_add(1));
    let frames = read_frames(input)?;
    let mut report = Report {
        frames: frames.len() as u64,
        ..Report::default()
    };
    let mut ctxs: BTreeMap<(Endpoint, Endpoint), Context> = BTreeMap::new();
    let mut writer: Option<pcap_file::pcap::PcapWriter<Vec<u8>>> = None;
    let mut link_out: Option<DataLink> = None;
    for fr in frames {
        let Some(u) = parse_udp(fr.link, &fr.data) else {
            continue;
        };
        let on_rtp = u.src.1 == opts.port || u.dst.1 == opts.port;
        let on_rtcp = u.src.1 == rtcp_port || u.dst.1 == rtcp_port;
        if !on_rtp && !on_rtcp {
            continue;
        }
        let payload = fr.data.get(u.udp + 8..u.end).unwrap_or(&[]);
        let rtcp = !on_rtp || payload.get(1).is_some_and(|pt| (200..=207).contains(pt));
        let ssrc_at = if rtcp { 4 } else { 8 };
        let ssrc = payload
            .get(ssrc_at..ssrc_at + 4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if opts.ssrc.is_some_and(|s| s != ssrc) {
            continue;
        }
        let key = StreamKey {
            src: u.src,
            dst: u.dst,
            ssrc,
            rtcp,
        };
        let counts = report.streams.entry(key).or_default();
        counts.packets += 1;
        let mut refuse = |why: &'static str| *counts.refused.entry(why).or_insert(0) += 1;
        if (fr.data.len() as u64) < u64::from(fr.orig_len) {
            refuse("truncated_capture");
            continue;
        }
        if link_out.is_some_and(|l| l != fr.link) {
            refuse("other_link_type");
            continue;
        }
        let ctx = match ctxs.entry((u.src, u.dst)) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(Context::new(&km, cfg).map_err(|e| anyhow::anyhow!("{e}"))?)
            }
        };
        let mut buf = vec![0u8; payload.len() + profile.max_overhead()];
        buf[..payload.len()].copy_from_slice(payload);
        let r = match (encrypt, rtcp) {
            (false, false) => ctx.unprotect_rtp(&mut buf, payload.len()),
            (false, true) => ctx.unprotect_rtcp(&mut buf, payload.len()),
            (true, false) => ctx.protect_rtp(&mut buf, payload.len()),
            (true, true) => ctx.protect_rtcp(&mut buf, payload.len()),
        };
        let n = match r {
            Ok(n) => n,
            Err(e) => {
                refuse(e.kind().as_str());
                continue;
            }
        };
        let Some(frame) = rebuild(&fr.data, &u, &buf[..n]) else {
            refuse("frame_rebuild");
            continue;
        };
        counts.ok += 1;
        if writer.is_none() {
            let header = pcap_file::pcap::PcapHeader {
                datalink: fr.link,
                ..Default::default()
            };
            writer = Some(pcap_file::pcap::PcapWriter::with_header(
                Vec::new(),
                header,
            )?);
            link_out = Some(fr.link);
        }
        if let Some(w) = writer.as_mut() {
            let len = u32::try_from(frame.len())?;
            w.write_packet(&pcap_file::pcap::PcapPacket::new(fr.ts, len, &frame))?;
            report.written += 1;
        }
    }
    let out = match writer {
        Some(w) => w.into_writer(),
        None => {
            if report.streams.is_empty() {
                bail!(
                    "no UDP packets on port {} or {rtcp_port} in the capture",
                    opts.port
                );
            }
            let mut v = Vec::new();
            pcap_file::pcap::PcapWriter::new(&mut v)?;
            v
        }
    };
    Ok((out, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";

    /// An Ethernet/IPv4-or-IPv6/UDP frame with valid lengths and checksums.
    fn udp_frame(payload: &[u8], sport: u16, dport: u16, v6: bool) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 8, 17, 64]);
            f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, 17, 0, 0]);
            f.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 2]);
        }
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 8, 0, 0]);
        let u = parse_udp(DataLink::ETHERNET, &f).unwrap();
        rebuild(&f, &u, payload).unwrap()
    }

    fn pcap_of(frames: &[Vec<u8>]) -> Vec<u8> {
        let header = pcap_file::pcap::PcapHeader {
            datalink: DataLink::ETHERNET,
            ..Default::default()
        };
        let mut w = pcap_file::pcap::PcapWriter::with_header(Vec::new(), header).unwrap();
        for (i, f) in frames.iter().enumerate() {
            let ts = std::time::Duration::from_millis(20 * i as u64);
            w.write_packet(&pcap_file::pcap::PcapPacket::new(ts, f.len() as u32, f))
                .unwrap();
        }
        w.into_writer()
    }

    /// UDP payloads of a pcap, checking every IPv4 header and UDP checksum.
    fn payloads(pcap: &[u8]) -> Vec<Vec<u8>> {
        read_frames(pcap)
            .unwrap()
            .into_iter()
            .map(|fr| {
                let u = parse_udp(fr.link, &fr.data).unwrap();
                if !u.v6 {
                    assert_eq!(csum_fold(csum_add(0, &fr.data[u.ip..u.udp])), 0);
                }
                let mut sum = 17 + (u.end - u.udp) as u32;
                sum = if u.v6 {
                    csum_add(sum, &fr.data[u.ip + 8..u.ip + 40])
                } else {
                    csum_add(sum, &fr.data[u.ip + 12..u.ip + 20])
                };
                assert_eq!(
                    csum_fold(csum_add(sum, &fr.data[u.udp..u.end])),
                    0,
                    "UDP checksum"
                );
                fr.data[u.udp + 8..u.end].to_vec()
            })
            .collect()
    }

    fn rtp(seq: u16, ssrc: u32, n: usize) -> Vec<u8> {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend((0..n).map(|i| (i as u8) ^ (seq as u8)));
        p
    }

    fn rtcp_sr(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 200, 0, 6];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[7u8; 20]);
        p
    }

    fn opts(input: &str, suite: &str) -> Opts {
        Opts {
            input: input.into(),
            out: "unused".into(),
            port: 40000,
            rtcp_port: None,
            ssrc: None,
            suite: suite.into(),
            key: KEY.into(),
            replay_window: 1024,
        }
    }

    /// A plain capture (two directions, RTP across the sequence wrap, RTCP on port + 1 and
    /// multiplexed, IPv4 and IPv6, a non-matching flow) encrypted then decrypted by the tool.
    #[test]
    fn encrypt_then_decrypt_round_trips() {
        let mut plain = Vec::new();
        let mut frames = Vec::new();
        for i in 0..200u16 {
            let seq = 65_400u16.wrapping_add(i);
            let (a, b) = (
                rtp(seq, 0xaaaa, 160),
                rtp(i, 0xbbbb, 20 + usize::from(i % 50)),
            );
            frames.push(udp_frame(&a, 40000, 50000, false));
            frames.push(udp_frame(&b, 50000, 40000, i % 2 == 0));
            plain.push(a);
            plain.push(b);
            if i % 50 == 0 {
                let r = rtcp_sr(0xaaaa);
                frames.push(udp_frame(&r, 40001, 50001, false));
                plain.push(r.clone());
                frames.push(udp_frame(&r, 40000, 50000, false)); // rtcp-mux
                plain.push(r);
            }
            frames.push(udp_frame(&[1, 2, 3], 1234, 5678, false)); // not selected
        }
        let input = pcap_of(&frames);
        let o = opts("in", "AES_CM_128_HMAC_SHA1_80");
        let (enc, rep) = process(&input, &o, true).unwrap();
        assert_eq!(rep.written as usize, plain.len());
        let protected = payloads(&enc);
        for (p, q) in protected.iter().zip(&plain) {
            assert_ne!(p, q);
        }
        let (dec, rep) = process(&enc, &o, false).unwrap();
        assert_eq!(rep.written as usize, plain.len(), "{}", rep.render(false));
        assert_eq!(payloads(&dec), plain);
        assert!(rep.streams.values().all(|c| c.refused.is_empty()));
        // SSRC filter.
        let mut o2 = o.clone();
        o2.ssrc = Some(0xbbbb);
        let (_, rep) = process(&enc, &o2, false).unwrap();
        assert_eq!(rep.written, 200);
    }

    /// A capture protected by libsrtp (Debian's), with one damaged and one replayed packet.
    #[test]
    fn decrypts_libsrtp_capture() {
        let lib = tollgate_libsrtp::Lib::debian().expect("libsrtp2 installed");
        for suite in [
            "AES_CM_128_HMAC_SHA1_80",
            "AES_CM_128_HMAC_SHA1_32",
            "AEAD_AES_256_GCM",
        ] {
            let profile = Profile::from_sdes_name(suite).unwrap();
            let key = if profile.key_len() == 16 && !profile.is_aead() {
                KEY.to_owned()
            } else {
                KeyMaterial::generate(profile, |b| b.fill(9)).to_sdes()
            };
            let km = KeyMaterial::from_sdes(profile, &key).unwrap();
            let ks = [km.key(), km.salt()].concat();
            let mut tx = tollgate_libsrtp::Session::new(
                &lib,
                suite,
                &ks,
                tollgate_libsrtp::Direction::Outbound,
                tollgate_libsrtp::Options::default(),
            )
            .unwrap();
            let mut plain = Vec::new();
            let mut frames = Vec::new();
            for i in 0..100u16 {
                let p = if i % 10 == 9 {
                    rtcp_sr(0xcccc)
                } else {
                    rtp(i, 0xcccc, 160)
                };
                let mut b = vec![0u8; p.len() + 64];
                b[..p.len()].copy_from_slice(&p);
                let n = if i % 10 == 9 {
                    tx.protect_rtcp(&mut b, p.len()).unwrap()
                } else {
                    tx.protect(&mut b, p.len()).unwrap()
                };
                let port = if i % 10 == 9 { 40001 } else { 40000 };
                if i == 20 {
                    // A damaged copy first (the genuine one follows): auth failure.
                    let mut bad = b[..n].to_vec();
                    bad[30] ^= 0x40;
                    frames.push(udp_frame(&bad, 6000, port, false));
                }
                frames.push(udp_frame(&b[..n], 6000, port, false));
                plain.push(p);
                if i == 30 {
                    frames.push(frames[frames.len() - 1].clone());
                }
            }
            let mut o = opts("in", suite);
            o.key = key;
            let (dec, rep) = process(&pcap_of(&frames), &o, false).unwrap();
            assert_eq!(payloads(&dec), plain, "{suite}");
            let refused: BTreeMap<&str, u64> = rep
                .streams
                .values()
                .flat_map(|c| c.refused.clone())
                .collect();
            assert_eq!(refused.get("auth_failed"), Some(&1), "{suite}: {refused:?}");
            assert_eq!(refused.get("replayed"), Some(&1), "{suite}: {refused:?}");
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(process(b"not a pcap", &opts("x", "AES_CM_128_HMAC_SHA1_80"), false).is_err());
        let input = pcap_of(&[udp_frame(&[1, 2, 3], 1, 2, false)]);
        assert!(process(&input, &opts("x", "AES_CM_128_HMAC_SHA1_80"), false).is_err());
        assert!(process(&input, &opts("x", "NOPE"), false).is_err());
        assert_eq!(parse_ssrc("0x10"), Ok(16));
        assert_eq!(parse_ssrc("10"), Ok(10));
    }
}
