//! Interoperability of the HEP v3 encoder with a third-party decoder: sngrep listening for
//! HEP (`-L udp:127.0.0.1:PORT`, the Homer protocol) on loopback receives our packets and
//! writes them to a pcap that tshark reads back as the SIP messages, addresses and ports we
//! encoded. Needs `sngrep` and `tshark` (`cargo xtask setup` installs both); loopback only.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tollgate_capture::hep;

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Whether a UDP socket is bound to 127.0.0.1:`port` (from /proc/net/udp).
fn udp_bound(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
}

fn sip(method: &str, call_id: &str) -> Vec<u8> {
    format!(
        "{method} sip:100@10.201.2.2:5061;transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS 10.201.2.1:5061;branch=z9hG4bK{call_id}\r\n\
         From: <sip:+4420@tollgate>;tag=1\r\nTo: <sip:100@proxy>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn sngrep_decodes_our_hep_packets() {
    assert!(
        have("sngrep") && have("tshark"),
        "sngrep and tshark are needed as the HEP decoders (cargo xtask setup installs them)"
    );
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("tg-hep-sngrep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("hep.pcap");
    let mut sngrep = Command::new("sngrep")
        .args(["-N", "-q", "-L", &format!("udp:127.0.0.1:{port}"), "-O"])
        .arg(&pcap)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !udp_bound(port) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tg: SocketAddr = "10.201.2.1:5061".parse().unwrap();
    let proxy: SocketAddr = "10.201.2.2:5061".parse().unwrap();
    let sent = [
        ("INVITE", tg, proxy, "cid-one"),
        ("BYE", proxy, tg, "cid-one"),
        ("OPTIONS", tg, proxy, "cid-two"),
    ];
    for (i, (m, src, dst, cid)) in sent.iter().enumerate() {
        let payload = sip(m, cid);
        let mut pkt = Vec::new();
        hep::encode(
            &hep::Hep {
                ip_proto: hep::IPPROTO_TCP,
                src: *src,
                dst: *dst,
                ts_sec: 1_700_000_000 + i as u32,
                ts_usec: 0,
                proto_type: hep::PROTO_SIP,
                agent_id: 2001,
                auth_key: None,
                payload: &payload,
                correlation_id: Some(cid.as_bytes()),
            },
            &mut pkt,
        )
        .unwrap();
        tx.send_to(&pkt, ("127.0.0.1", port)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    // SIGTERM (sngrep flushes its pcap on it), by the PID of the process this test started.
    let _ = Command::new("kill")
        .args(["-TERM", &sngrep.id().to_string()])
        .status();
    let t = Instant::now();
    while sngrep.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(5) {
            let _ = sngrep.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = sngrep.wait();
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-d", "tcp.port==5061,sip", "-Y", "sip", "-T", "fields"])
        .args([
            "-e",
            "sip.Method",
            "-e",
            "sip.Call-ID",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let want: Vec<Vec<String>> = sent
        .iter()
        .map(|(m, s, d, c)| {
            vec![
                (*m).to_owned(),
                (*c).to_owned(),
                s.ip().to_string(),
                d.ip().to_string(),
            ]
        })
        .collect();
    assert_eq!(rows, want, "sngrep received our HEP packets as sent");
}
