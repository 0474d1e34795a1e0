//! `tollgate ctl capture --pcap FILE [--call ID] [--seconds N]`: the daemon's stream of
//! decoded SIP messages (see `tollgate_server::control`) written as a pcap file.
//!
//! Each message becomes Ethernet + IP + TCP frames from `tollgate_capture::frame`, with
//! per-direction sequence numbers, so Wireshark and sngrep reassemble SIP over TCP. The
//! internal side's messages appear in clear text on port 5061, which Wireshark dissects as
//! TLS by default: use Decode As (`tcp.port == 5061` → SIP), or `tshark -d tcp.port==5061,sip`.
//! The file is written to `FILE.tmp` and renamed when the capture ends.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use serde_json::Value;
use tollgate_capture::frame::TcpSynth;

/// Writes one captured message (a JSON line of the stream) as frames.
fn record<W: Write>(
    synth: &mut TcpSynth,
    w: &mut PcapWriter<W>,
    m: &Value,
) -> anyhow::Result<usize> {
    let addr = |k: &str| -> anyhow::Result<SocketAddr> {
        m[k].as_str()
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("captured message without a valid {k}: {m}"))
    };
    let (local, peer) = (addr("local")?, addr("peer")?);
    let (src, dst) = if m["dir"] == "in" {
        (peer, local)
    } else {
        (local, peer)
    };
    let sip = m["sip"].as_str().unwrap_or_default();
    let t = Duration::new(
        m["time_s"].as_u64().unwrap_or(0),
        u32::try_from(m["time_us"].as_u64().unwrap_or(0) * 1000).unwrap_or(0),
    );
    let mut frames = Vec::new();
    synth
        .frames(src, dst, sip.as_bytes(), &mut frames)
        .with_context(|| format!("{src} -> {dst}"))?;
    for f in &frames {
        let len = u32::try_from(f.len()).unwrap_or(u32::MAX);
        w.write_packet(&PcapPacket::new(t, len, f))
            .context("writing the pcap")?;
    }
    Ok(frames.len())
}

fn capture(socket: &Path, req: &Value, pcap: &Path) -> anyhow::Result<Value> {
    let mut s = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the daemon at {} (is it running? see ops.control_socket, or --socket)",
            socket.display()
        )
    })?;
    let mut line = req.to_string();
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let tmp = pcap.with_extension("pcap.tmp");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        snaplen: 262_144,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(BufWriter::new(file), header).context("pcap header")?;
    let mut synth = TcpSynth::new();
    let mut rd = BufReader::new(s);
    let mut buf = String::new();
    let done = loop {
        buf.clear();
        if rd.read_line(&mut buf)? == 0 {
            let _ = std::fs::remove_file(&tmp);
            anyhow::bail!("the daemon closed the connection before the capture ended");
        }
        let v: Value = serde_json::from_str(&buf).context("the daemon's answer")?;
        if v.get("ok").is_some() {
            break v;
        }
        record(&mut synth, &mut w, &v)?;
    };
    if done["ok"] != true {
        let _ = std::fs::remove_file(&tmp);
        return Ok(done);
    }
    w.into_writer().flush()?;
    std::fs::rename(&tmp, pcap).with_context(|| format!("renaming to {}", pcap.display()))?;
    Ok(done)
}

/// Runs the capture; prints the summary (`--json`: the daemon's summary line).
pub fn run(socket: &Path, req: &Value, pcap: &Path, json: bool) -> ExitCode {
    match capture(socket, req, pcap) {
        Err(e) => {
            eprintln!("tollgate ctl capture: {e:#}");
            ExitCode::from(2)
        }
        Ok(v) if v["ok"] == true => {
            if json {
                println!("{v:#}");
            } else {
                println!(
                    "{} SIP message(s) written to {} ({} lost: the reader fell behind)",
                    v["messages"],
                    pcap.display(),
                    v["dropped"]
                );
            }
            ExitCode::SUCCESS
        }
        Ok(v) => {
            eprintln!(
                "tollgate ctl capture: {}",
                v["error"]
                    .as_str()
                    .unwrap_or("the daemon refused the request")
            );
            ExitCode::FAILURE
        }
    }
}
