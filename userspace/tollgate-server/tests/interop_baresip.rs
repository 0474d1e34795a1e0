//! Interop with a real SIP user agent: Debian's baresip (1.0) is the internal endpoint behind
//! Tollgate's internal side (SIP over TLS, mandatory SDES-SRTP), and the simulated gateway calls
//! it through Tollgate over plain SIP/TCP and RTP, on both data paths.
//!
//! baresip runs as a child process in the lab's `int` namespace from a generated configuration
//! directory: SIP/TLS on the internal endpoint's address (Tollgate's next hop) with the lab's
//! internal certificate and the lab CA, `mediaenc=srtp-mand`, auto-answer, G.711, a 440 Hz sine
//! source (`ausine`) and no audio player. Its `sndfile` filter records what it decodes, its
//! `ctrl_tcp` module reports call events and runs `audio_debug` (its own RTP statistics), and
//! its log carries a SIP trace and the end-of-call packet summary. (baresip 1.0 does not ask
//! for a client certificate on its SIP/TLS listener, so only Tollgate's verification of
//! baresip's certificate is exercised here; mutual TLS is covered by the other lab tests.)
//!
//! Per call the test asserts: baresip answered (200 OK through Tollgate; `CALL_ESTABLISHED`,
//! SRTP with AES_CM_128_HMAC_SHA1_80 and incoming RTP in baresip); RTP from baresip reached the
//! gateway (Tollgate decrypted baresip's SRTP and SRTCP: packets relayed int->ext, zero SRTP
//! authentication failures in the metrics and the CDR); baresip received and decrypted
//! Tollgate's SRTP (its RTP statistics count the packets, its log has no SRTP failure, and its
//! recording of the decoded audio is the gateway's 440 Hz tone); the gateway's BYE was answered
//! 200 by baresip and baresip closed the call; nothing is left in Tollgate.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Scratch, Server, addrs};
use tollgate_netlab::{LabSpec, in_netns, require_root, spawn_in_netns};
use tollgate_server::config::Config;
use tollgate_simua::certs::LabPki;
use tollgate_simua::media::MediaReport;
use tollgate_simua::ua::{Endpoint, EndpointConfig};

/// The number the gateway dials (national format) ...
const DIALLED: &str = "02079460001";
/// ... and the same number after Tollgate's inbound normalisation: baresip's account user, so
/// that baresip takes the call (it matches the Request-URI user against its accounts).
const E164: &str = "+442079460001";
/// The calling number the gateway sends.
const CALLING: &str = "01632960001";
/// baresip's `ctrl_tcp` port, on loopback inside the `int` namespace.
const CTRL_PORT: u16 = 4444;
/// The frequency of the gateway's test tone (and of baresip's `ausine` source).
const TONE_HZ: u32 = 440;
/// How long the call talks before the gateway hangs up: long enough for baresip's first SRTCP
/// report (libre sends one every 5 s from the start of the stream).
const TALK: Duration = Duration::from_secs(6);

fn init_tracing() {
    // RUST_LOG=tollgate_server=debug shows Tollgate's own account of the call.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Writes baresip's configuration directory: `config`, `accounts`, and `sip.pem` (baresip 1.0
/// takes the certificate and its private key from one PEM file).
fn write_baresip_config(dir: &Path, pki: &LabPki, sip_ip: IpAddr, ifname: &str) {
    let cert = std::fs::read_to_string(&pki.internal.cert).unwrap();
    let key = std::fs::read_to_string(&pki.internal.key).unwrap();
    std::fs::write(dir.join("sip.pem"), format!("{}\n{}", cert.trim_end(), key)).unwrap();
    std::fs::create_dir_all(dir.join("snd")).unwrap();
    let pem = dir.join("sip.pem").display().to_string();
    let snd = dir.join("snd").display().to_string();
    let settings: &[(&str, String)] = &[
        ("poll_method", "epoll".into()),
        // baresip 1.0 listens for SIP/UDP and SIP/TCP on `sip_listen` and for SIP/TLS on its
        // port + 1: 5060 here puts TLS on 5061, Tollgate's next hop.
        ("sip_listen", format!("{sip_ip}:5060")),
        // The lab's internal certificate (names proxy.int.example and the endpoint's address),
        // key included, and the lab CA.
        ("sip_certificate", pem),
        ("sip_cafile", pki.ca.display().to_string()),
        // Media and SDP on the lab interface only.
        ("net_interface", ifname.into()),
        ("call_local_timeout", "30".into()),
        ("call_max_calls", "4".into()),
        ("audio_buffer", "20-160".into()),
        // Headless: a 440 Hz sine as the microphone (ausine only produces 48 kHz stereo;
        // baresip resamples to the codec's 8 kHz mono) and no player at all.
        ("audio_source", format!("ausine,{TONE_HZ}")),
        ("ausrc_srate", "48000".into()),
        ("ausrc_channels", "2".into()),
        ("rtp_ports", "42000-42999".into()),
        ("rtcp_mux", "no".into()),
        ("jitter_buffer_delay", "1-10".into()),
        // The per-stream packet/error summary printed when the call ends.
        ("rtp_stats", "yes".into()),
        ("statmode_default", "off".into()),
        ("module_path", "/usr/lib/baresip/modules".into()),
        ("module", "g711.so".into()),
        ("module", "ausine.so".into()),
        // SDES-SRTP (provides srtp, srtp-mand, srtp-mandf).
        ("module", "srtp.so".into()),
        // Audio filter: records the encoded and the decoded audio of each call as WAV files.
        ("module", "sndfile.so".into()),
        ("snd_path", snd),
        ("module_tmp", "account.so".into()),
        // The menu module provides the commands (audio_debug) that ctrl_tcp runs.
        ("module_app", "menu.so".into()),
        ("module_app", "ctrl_tcp.so".into()),
        ("ctrl_tcp_listen", format!("127.0.0.1:{CTRL_PORT}")),
    ];
    let mut config = String::from("# baresip configuration for the Tollgate interop test\n");
    for (key, value) in settings {
        config.push_str(&format!("{key:<24}{value}\n"));
    }
    std::fs::write(dir.join("config"), config).unwrap();
    // One account: the dialled number (baresip takes a call whose Request-URI user is an
    // account's user), SIP over TLS, auto-answer, mandatory SDES-SRTP, G.711 only, and no
    // registration.
    let account = format!(
        "<sip:{E164}@{sip_ip};transport=tls>;answermode=auto;mediaenc=srtp-mand;\
         audio_codecs=pcmu,pcma;regint=0\n"
    );
    std::fs::write(dir.join("accounts"), account).unwrap();
}

/// baresip as a child process; stopped by its PID when dropped (also when a test fails).
struct Baresip {
    child: Option<Child>,
    log: PathBuf,
}

impl Baresip {
    /// Starts `baresip -f DIR` inside namespace `ns`, its output (line-buffered) in DIR/baresip.log.
    fn start(ns: &str, dir: &Path) -> Baresip {
        let log = dir.join("baresip.log");
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let dir = dir.to_owned();
        let child = in_netns(ns, move || {
            Command::new("stdbuf")
                .args(["-oL", "-eL", "baresip", "-v", "-s", "-f"])
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot start baresip (cargo xtask setup installs it): {e}"));
        Baresip {
            child: Some(child),
            log,
        }
    }

    /// The exit status, if it has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Everything baresip printed so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM (baresip ends its calls and exits), then SIGKILL after 5 s; waits for the exit.
    fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        let pid = libc::pid_t::try_from(child.id()).ok()?;
        // SAFETY: kill(2) on the PID of our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A client of baresip's `ctrl_tcp` module: JSON messages in netstrings, commands answered by
/// responses carrying the command's token, and call events pushed as they happen.
struct Ctrl {
    stream: TcpStream,
    rx: mpsc::Receiver<serde_json::Value>,
    /// Every message received so far, in order.
    seen: Vec<serde_json::Value>,
    token: u32,
}

impl Ctrl {
    /// Connects once baresip listens (its control socket opens after its SIP transports).
    fn connect(ns: &str, baresip: &mut Baresip, timeout: Duration) -> Ctrl {
        let deadline = Instant::now() + timeout;
        let addr = SocketAddr::from(([127, 0, 0, 1], CTRL_PORT));
        let stream = loop {
            let r = in_netns(ns, move || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(500))
            })
            .unwrap();
            match r {
                Ok(s) => break s,
                Err(e) => {
                    if let Some(s) = baresip.exited() {
                        panic!(
                            "baresip exited ({s}) before it was ready:\n{}",
                            baresip.log()
                        );
                    }
                    assert!(
                        Instant::now() < deadline,
                        "baresip's control socket did not open ({e}):\n{}",
                        baresip.log()
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        let mut reader = stream.try_clone().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                let n = match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some((msg, used)) = netstring(&buf) {
                    let v = serde_json::from_slice(msg).unwrap_or(serde_json::Value::Null);
                    buf.drain(..used);
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        Ctrl {
            stream,
            rx,
            seen: Vec::new(),
            token: 0,
        }
    }

    /// Runs a baresip command; returns (ok, the text it printed).
    fn command(&mut self, command: &str) -> (bool, String) {
        self.token += 1;
        let token = format!("t{}", self.token);
        let msg = serde_json::json!({ "command": command, "params": "", "token": token });
        let text = msg.to_string();
        self.stream
            .write_all(format!("{}:{text},", text.len()).as_bytes())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no response to `{command}` from baresip"));
            self.seen.push(v.clone());
            if v["response"] == true && v["token"] == token.as_str() {
                return (
                    v["ok"] == true,
                    v["data"].as_str().unwrap_or_default().to_owned(),
                );
            }
        }
    }

    /// Waits for a call event of this type (e.g. `CALL_ESTABLISHED`), seen before or arriving.
    fn event(&mut self, kind: &str, timeout: Duration) -> Option<serde_json::Value> {
        let is = |v: &serde_json::Value| v["event"] == true && v["type"] == kind;
        if let Some(v) = self.seen.iter().find(|v| is(v)) {
            return Some(v.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let v = self.rx.recv_timeout(left).ok()?;
            self.seen.push(v.clone());
            if is(&v) {
                return Some(v);
            }
        }
    }
}

/// The first netstring in `buf` ("LEN:DATA,"): its data and the bytes it took.
fn netstring(buf: &[u8]) -> Option<(&[u8], usize)> {
    let colon = buf.iter().position(|b| *b == b':')?;
    let len: usize = std::str::from_utf8(buf.get(..colon)?).ok()?.parse().ok()?;
    let end = colon.checked_add(1)?.checked_add(len)?;
    let data = buf.get(colon + 1..end)?;
    (buf.get(end) == Some(&b',')).then_some((data, end + 1))
}

/// What the simulated gateway reports to the test.
enum GwEvent {
    /// Listening (or why not).
    Ready(Result<(), String>),
    /// The call's final answer: setup time on 200 OK, or why it failed.
    Answered(Result<Duration, String>),
    /// After the hang-up: the BYE's outcome with the call's final media report.
    HungUp(Result<Box<MediaReport>, String>),
}

/// The simulated gateway in its namespace (plain SIP/TCP, RTP with the test tone). It listens
/// at once (Tollgate's OPTIONS find the trunk up), places one call to `DIALLED` through
/// Tollgate on the first order and hangs up on the second (or 20 s after the answer).
struct Gateway {
    orders: tokio::sync::mpsc::UnboundedSender<()>,
    events: mpsc::Receiver<GwEvent>,
}

impl Gateway {
    fn start(ns: &str, cfg: EndpointConfig, target: SocketAddr) -> Gateway {
        let (orders, mut rx_orders) = tokio::sync::mpsc::unbounded_channel::<()>();
        let (tx, events) = mpsc::channel();
        spawn_in_netns(ns, move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let ep = match Endpoint::start(cfg).await {
                    Ok(ep) => ep,
                    Err(e) => {
                        let _ = tx.send(GwEvent::Ready(Err(e.to_string())));
                        return;
                    }
                };
                let _ = tx.send(GwEvent::Ready(Ok(())));
                if rx_orders.recv().await.is_none() {
                    return;
                }
                let name = target.ip().to_string();
                let timeout = Duration::from_secs(15);
                let call = match ep.call(target, &name, CALLING, DIALLED, timeout).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(GwEvent::Answered(Err(e.to_string())));
                        return;
                    }
                };
                let _ = tx.send(GwEvent::Answered(Ok(call.setup)));
                let _ = tokio::time::timeout(Duration::from_secs(20), rx_orders.recv()).await;
                let r = call.hangup().await.map(|r| r.media);
                let _ = tx.send(GwEvent::HungUp(r.map(Box::new).map_err(|e| e.to_string())));
            });
        })
        .unwrap();
        let gw = Gateway { orders, events };
        match gw.next(Duration::from_secs(10)) {
            Some(GwEvent::Ready(Ok(()))) => gw,
            Some(GwEvent::Ready(Err(e))) => panic!("gateway did not start: {e}"),
            _ => panic!("gateway did not start"),
        }
    }

    /// Orders the call, then the hang-up.
    fn order(&self) {
        self.orders.send(()).unwrap();
    }

    fn next(&self, timeout: Duration) -> Option<GwEvent> {
        self.events.recv_timeout(timeout).ok()
    }
}

/// A metric's value summed over the series whose line contains `filter`.
fn metric(server: &Server, name: &str, filter: &str) -> f64 {
    server
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sample rate and 16-bit PCM samples (first channel) of a WAV file.
fn wav_samples(bytes: &[u8]) -> Option<(u32, Vec<i16>)> {
    if bytes.get(..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let le16 = |b: &[u8], at: usize| Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?));
    let le32 = |b: &[u8], at: usize| Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?));
    let (mut rate, mut channels, mut samples) = (None, 1usize, None);
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let id = bytes.get(pos..pos + 4)?;
        let len = usize::try_from(le32(bytes, pos + 4)?).ok()?;
        let body = bytes.get(pos + 8..(pos + 8 + len).min(bytes.len()))?;
        if id == b"fmt " {
            // PCM, 16 bits per sample.
            if le16(body, 0)? != 1 || le16(body, 14)? != 16 {
                return None;
            }
            channels = usize::from(le16(body, 2)?.max(1));
            rate = Some(le32(body, 4)?);
        } else if id == b"data" {
            samples = Some(
                body.chunks_exact(2 * channels)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            );
        }
        pos += 8 + len + (len & 1);
    }
    Some((rate?, samples?))
}

/// Splits `samples` into 20 ms blocks (one RTP packet each, so a late or concealed packet spoils
/// one block, not five) and returns (blocks carrying signal, of those the blocks whose energy is
/// at least 90 % a tone of `freq` Hz), measured with the Goertzel filter.
fn tone_blocks(samples: &[i16], rate: u32, freq: u32) -> (usize, usize) {
    let n = usize::try_from(rate / 50).unwrap_or(1).max(1);
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * f64::from(freq) / f64::from(rate)).cos();
    let (mut signal, mut tonal) = (0, 0);
    for block in samples.chunks_exact(n) {
        let mean_square = block.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / n as f64;
        if mean_square < 500.0 * 500.0 {
            continue;
        }
        signal += 1;
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for x in block {
            let s = f64::from(*x) + coeff * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        let tone_mean_square = 2.0 * power / (n as f64 * n as f64);
        if tone_mean_square >= 0.9 * mean_square {
            tonal += 1;
        }
    }
    (signal, tonal)
}

/// The number after `key` in `text` (e.g. `rcvd=` in baresip's RTCP session debug).
fn number_after(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(key)? + key.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// baresip's end-of-call audio summary ("packets: <tx> <rx>", "errors: <tx> <rx>").
fn call_summary(log: &str, row: &str) -> Option<(u64, u64)> {
    let table = &log[log.find("Transmit:")?..];
    let line = table.lines().find(|l| l.trim_start().starts_with(row))?;
    let mut v = line
        .split_whitespace()
        .skip(1)
        .filter_map(|w| w.parse().ok());
    Some((v.next()?, v.next()?))
}

/// Whether baresip's SIP trace shows it answering a BYE with 200 OK.
fn answered_bye(log: &str) -> bool {
    log.match_indices("SIP/2.0 200 OK").any(|(i, _)| {
        log[i..]
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .any(|l| l.starts_with("CSeq:") && l.trim_end().ends_with(" BYE"))
    })
}

fn baresip_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("baresip").is_file()))
}

fn call_through_tollgate_to_baresip(datapath: &str) {
    init_tracing();
    assert!(
        baresip_installed(),
        "baresip is not installed (Debian package baresip; `cargo xtask setup` installs it)"
    );
    let lab = LabSpec::unique(&format!("b{}", &datapath[..1]))
        .up_guarded()
        .expect("lab up");
    let spec = lab.spec();
    let dir = Scratch::new(&format!("baresip-{datapath}"));
    let a = addrs(spec);
    let pki = a.pki(&dir.0.join("certs")).expect("certificates");
    let text = a.tollgate_config(&pki, datapath, 1, &dir.0.join("cdr.jsonl"), None);
    let cfg = Config::parse(&text, &dir.0).expect("config");
    let gw = Gateway::start(
        &spec.gw_ns,
        EndpointConfig {
            name: "gw".into(),
            sip_listen: SocketAddr::new(a.gw, 5060),
            tls: None,
            media_ip: a.gw,
            media_port_base: 40000,
            srtp: false,
            ring: Duration::ZERO,
            media: true,
            peer_tls_name: String::new(),
        },
        SocketAddr::new(a.relay_ext, 5060),
    );
    let server = Server::start(&spec.relay_ns, cfg);

    let bdir = dir.0.join("baresip");
    std::fs::create_dir_all(&bdir).unwrap();
    write_baresip_config(&bdir, &pki, a.int, &spec.int_peer_if);
    let mut baresip = Baresip::start(&spec.int_ns, &bdir);
    let mut ctrl = Ctrl::connect(&spec.int_ns, &mut baresip, Duration::from_secs(10));
    gw.order();

    // Answered by baresip: 200 OK through Tollgate, and baresip says the call is up, secured
    // with SDES-SRTP, and receiving RTP.
    let setup = match gw.next(Duration::from_secs(20)) {
        Some(GwEvent::Answered(Ok(setup))) => setup,
        Some(GwEvent::Answered(Err(e))) => {
            panic!(
                "the call was not answered: {e}\nbaresip:\n{}",
                baresip.log()
            )
        }
        _ => panic!("no answer on the gateway side\nbaresip:\n{}", baresip.log()),
    };
    eprintln!("[{datapath}] 200 OK after {setup:?}");
    let established = ctrl
        .event("CALL_ESTABLISHED", Duration::from_secs(5))
        .unwrap_or_else(|| {
            panic!(
                "baresip did not establish the call; its messages: {:?}\n{}",
                ctrl.seen,
                baresip.log()
            )
        });
    eprintln!("[{datapath}] baresip CALL_ESTABLISHED: {established}");
    assert_eq!(
        established["peeruri"],
        format!("sip:+44{}@{}", &CALLING[1..], a.relay_int),
        "baresip sees Tollgate's internal address and the normalised calling number"
    );
    let menc = ctrl
        .event("CALL_MENC", Duration::from_secs(5))
        .expect("baresip reports its media encryption");
    assert_eq!(
        menc["param"], "0,audio,AES_CM_128_HMAC_SHA1_80",
        "baresip's audio is secured with SDES-SRTP"
    );
    ctrl.event("CALL_RTPESTAB", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("baresip receives no RTP\n{}", baresip.log()));

    // Talk, then read baresip's own statistics while the call is still up.
    std::thread::sleep(TALK);
    let (ok, audio) = ctrl.command("audio_debug");
    eprintln!("[{datapath}] baresip audio_debug:\n{audio}");
    assert!(ok, "baresip's audio_debug failed: {audio}");
    assert!(
        audio.contains("menc: srtp-mand (secure=yes)"),
        "baresip's stream is secure: {audio}"
    );
    let rcvd = number_after(&audio, "rcvd=").expect("baresip's RTP receive count");
    assert!(
        rcvd >= 200,
        "baresip received and decrypted Tollgate's SRTP during the call: rcvd={rcvd}"
    );

    // Hang up from the gateway: BYE through Tollgate, 200 OK from baresip.
    gw.order();
    let gw_media = match gw.next(Duration::from_secs(15)) {
        Some(GwEvent::HungUp(Ok(m))) => *m,
        Some(GwEvent::HungUp(Err(e))) => panic!("hang-up failed: {e}\n{}", baresip.log()),
        _ => panic!("the gateway did not report the hang-up"),
    };
    eprintln!("[{datapath}] gateway media: {gw_media:?}");
    let closed = ctrl
        .event("CALL_CLOSED", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("baresip did not close the call\n{}", baresip.log()));
    eprintln!("[{datapath}] baresip CALL_CLOSED: {closed}");
    // libre ends a session on the peer's BYE with ECONNRESET, which baresip prints like this.
    assert_eq!(closed["param"], "Connection reset by peer", "closed by BYE");

    let status = baresip.stop();
    let log = baresip.log();
    // Only the end of the log (the call summary): a failing assertion below must stay near the
    // end of the test's output, where a CI log excerpt shows it.
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    eprintln!(
        "[{datapath}] baresip exited ({status:?}); the last lines of its log:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert!(answered_bye(&log), "baresip answered the BYE with 200 OK");

    // baresip -> Tollgate -> gateway: Tollgate decrypted baresip's SRTP (and SRTCP).
    assert!(
        gw_media.received >= 200,
        "RTP from baresip reached the gateway: {gw_media:?}"
    );

    // Tollgate -> baresip: baresip decrypted every packet and recorded the gateway's tone.
    assert!(
        log.contains("srtp: audio: SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)"),
        "baresip negotiated SRTP"
    );
    let srtp_failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("srtp: failed to"))
        .collect();
    assert!(
        srtp_failures.is_empty(),
        "no SRTP/SRTCP failures in baresip: {srtp_failures:?}"
    );
    let (sent, received) = call_summary(&log, "packets:").expect("baresip's call summary");
    assert!(
        sent >= 200 && received >= 200,
        "baresip's own count: {sent} RTP packets sent, {received} received"
    );
    assert_eq!(
        call_summary(&log, "errors:"),
        Some((0, 0)),
        "baresip counted no stream errors"
    );
    let dec: Vec<PathBuf> = std::fs::read_dir(bdir.join("snd"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .collect();
    assert_eq!(dec.len(), 1, "one recording of decoded audio: {dec:?}");
    let (rate, samples) = wav_samples(&std::fs::read(&dec[0]).unwrap()).expect("a PCM WAV file");
    let (signal, tonal) = tone_blocks(&samples, rate, TONE_HZ);
    eprintln!(
        "[{datapath}] baresip decoded {} samples at {rate} Hz: {signal} blocks of 20 ms with \
         signal, {tonal} of them a {TONE_HZ} Hz tone",
        samples.len()
    );
    assert!(
        signal >= 200,
        "baresip decoded at least 4 s of audio from Tollgate's SRTP ({signal} blocks)"
    );
    assert!(
        tonal * 10 >= signal * 9,
        "what baresip decoded is the gateway's {TONE_HZ} Hz tone ({tonal} of {signal} blocks)"
    );

    // Tollgate's side: no SRTP authentication failure, media both ways, nothing left.
    assert_eq!(metric(&server, "tollgate_srtp_auth_failures", ""), 0.0);
    assert_eq!(server.metric("tollgate_calls_active"), 0.0);
    let summary = server.drain();
    assert_eq!(summary.calls_left, 0);
    assert_eq!(summary.ports_left, (0, 0), "every relay port released");
    let cdrs = std::fs::read_to_string(dir.0.join("cdr.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = cdrs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "one CDR: {cdrs}");
    let cdr = &lines[0];
    eprintln!("[{datapath}] CDR: {cdr}");
    assert_eq!(cdr["status"], 200, "{cdr}");
    assert_eq!(cdr["cause"], "bye_ext", "{cdr}");
    assert_eq!(cdr["called"]["sent"], E164, "{cdr}");
    let media = &cdr["media"];
    assert_eq!(media["srtp_auth_failures"].as_u64(), Some(0), "{cdr}");
    assert_eq!(media["int_to_ext"]["dropped"].as_u64(), Some(0), "{cdr}");
    assert!(
        media["int_to_ext"]["packets"].as_u64().unwrap() >= 200,
        "{cdr}"
    );
    assert!(
        media["int_to_ext"]["rtcp_packets"].as_u64().unwrap() >= 1,
        "baresip's SRTCP report (every 5 s) decrypted and relayed: {cdr}"
    );
    assert!(
        media["ext_to_int"]["packets"].as_u64().unwrap() >= 200,
        "{cdr}"
    );
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn baresip_answers_through_tollgate_socket_path() {
    require_root("baresip_answers_through_tollgate_socket_path");
    call_through_tollgate_to_baresip("socket");
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn baresip_answers_through_tollgate_xdp_path() {
    require_root("baresip_answers_through_tollgate_xdp_path");
    call_through_tollgate_to_baresip("xdp");
}

/// The parsers above, on known input (no root, no baresip needed).
#[test]
fn parsers_read_baresip_output() {
    assert_eq!(
        netstring(b"11:{\"a\":\"bcd\"},3:"),
        Some((&b"{\"a\":\"bcd\"}"[..], 15))
    );
    assert_eq!(netstring(b"11:{\"a\":"), None, "incomplete");
    assert_eq!(netstring(b"3:abcd"), None, "no comma");

    let log = "audio: destroyed (started=1)\n\naudio           Transmit:     Receive:\n\
               packets:            301          299\n\
               avg. bitrate:      64.3         64.3  (kbit/s)\n\
               errors:               0            2\n";
    assert_eq!(call_summary(log, "packets:"), Some((301, 299)));
    assert_eq!(call_summary(log, "errors:"), Some((0, 2)));
    assert_eq!(
        number_after("IP=10.201.2.1:32000 psent=0 rcvd=301\n", "rcvd="),
        Some(301)
    );

    let bye = "#\nTLS a -> b\nSIP/2.0 200 OK\nVia: x\nCSeq: 2 BYE\n\n";
    let invite = "#\nTLS a -> b\nSIP/2.0 200 OK\nVia: x\nCSeq: 1 INVITE\n\n";
    assert!(answered_bye(bye));
    assert!(!answered_bye(invite));

    // One second of 440 Hz at 8 kHz in a WAV file, then one second of 1 kHz.
    let samples: Vec<i16> = (0..16000)
        .map(|n| {
            let f = if n < 8000 { 440.0 } else { 1000.0 };
            (8000.0 * (2.0 * std::f64::consts::PI * f * f64::from(n) / 8000.0).sin()) as i16
        })
        .collect();
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    for v in [1u16, 1] {
        wav.extend_from_slice(&v.to_le_bytes());
    }
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&16000u32.to_le_bytes());
    for v in [2u16, 16] {
        wav.extend_from_slice(&v.to_le_bytes());
    }
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    let (rate, read) = wav_samples(&wav).unwrap();
    assert_eq!((rate, read.len()), (8000, 16000));
    assert_eq!(read, samples);
    // 2 s in 20 ms blocks: 100 with signal, the 50 of one second a tone of each frequency.
    assert_eq!(tone_blocks(&read, rate, 440), (100, 50));
    assert_eq!(tone_blocks(&read, rate, 1000), (100, 50));
    assert_eq!(tone_blocks(&[0; 8000], 8000, 440), (0, 0), "silence");
    assert_eq!(wav_samples(b"RIFF\0\0\0\0WAVE"), None, "no data");
}
