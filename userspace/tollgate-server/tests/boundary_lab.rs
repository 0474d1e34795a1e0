//! The boundary between the NICs, probed from the gateway namespace while a call is up, on both
//! data paths. An attacker on the gateway segment routes the internal subnet via the relay's
//! gateway-side address and probes the internal address: the internal SIP/mTLS port, the
//! metrics port and other TCP ports, UDP to every internal relay port (the live call's among
//! them) and one outside the range. Nothing may answer: no SYN-ACK, no RST, no ICMP error, no
//! HTTP, and no probe relayed into the internal namespace. The drops are counted as
//! `other_side`. Positive controls: the gateway-side SIP port does answer, metrics answer from
//! the internal side, and the call keeps its audio.
//!
//! With `ext.boundary = "off"` (sockets bound to their NIC, no packet filter) the same probes
//! get RSTs from the kernel but never a service: that test shows the probes see answers when
//! there are any. A metrics address on the gateway NIC is refused at start.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Scratch, Server, addrs};
use tollgate_netlab::{LabSpec, in_netns, require_root, run, spawn_in_netns};
use tollgate_server::config::Config;
use tollgate_simua::scenario::Parties;

/// The attacker's own address on the gateway segment: every frame to it is an answer.
const PROBER: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 9);
const METRICS_PORT: u16 = 9100;
/// Internal relay range of the lab config.
const INT_RELAY: std::ops::RangeInclusive<u16> = 32000..=33999;
/// UDP probe payload size: far above the lab's audio (172 bytes), so a relayed probe stands out.
const PROBE_LEN: usize = 1000;

/// One IPv4 packet seen by a sniffer: source, destination, protocol, total length.
#[derive(Debug, Clone)]
struct Seen {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    len: usize,
}

/// Captures the IPv4 packets on `iface` (in the calling thread's namespace) until `stop`.
fn sniff(iface: &str, stop: &AtomicBool) -> Vec<Seen> {
    let proto = (libc::ETH_P_IP as u16).to_be();
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, i32::from(proto)) };
    assert!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fresh fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(iface).unwrap();
    // SAFETY: valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(index > 0, "no interface {iface}");
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = index as i32;
    // SAFETY: valid sockaddr_ll.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(rc, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: valid timeval option.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 20 {
            continue;
        }
        let p = &buf[..n as usize];
        out.push(Seen {
            src: Ipv4Addr::new(p[12], p[13], p[14], p[15]),
            dst: Ipv4Addr::new(p[16], p[17], p[18], p[19]),
            proto: p[9],
            len: usize::from(u16::from_be_bytes([p[2], p[3]])),
        });
    }
    out
}

/// A sniffer running in namespace `ns` on `iface`; `finish` stops it and returns what it saw.
struct Sniffer {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<Vec<Seen>, tollgate_netlab::LabError>>,
}

impl Sniffer {
    fn start(ns: &str, iface: &str) -> Sniffer {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        let iface = iface.to_owned();
        let thread = spawn_in_netns(ns, move || sniff(&iface, &s2)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        Sniffer { stop, thread }
    }

    fn finish(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap().unwrap()
    }
}

/// What a TCP connection attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tcp {
    /// SYN-ACK: the port is open (and `reply` is what a GET brought back).
    Connected { reply: String },
    /// RST.
    Refused,
    /// ICMP error or other failure.
    Failed(String),
    /// Nothing came back.
    Silent,
}

/// Connects from `from` to each of `to` at once and waits `wait` for answers.
fn tcp_probes(from: Ipv4Addr, to: &[SocketAddrV4], wait: Duration) -> Vec<Tcp> {
    let socks: Vec<OwnedFd> = to
        .iter()
        .map(|dst| {
            // SAFETY: plain socket/bind/connect on a fresh fd owned right away.
            unsafe {
                let fd = libc::socket(
                    libc::AF_INET,
                    libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    0,
                );
                assert!(fd >= 0);
                let fd = OwnedFd::from_raw_fd(fd);
                let sin = |a: SocketAddrV4| libc::sockaddr_in {
                    sin_family: libc::AF_INET as u16,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*a.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                let l = sin(SocketAddrV4::new(from, 0));
                assert_eq!(
                    libc::bind(fd.as_raw_fd(), (&l as *const libc::sockaddr_in).cast(), 16),
                    0
                );
                let r = sin(*dst);
                libc::connect(fd.as_raw_fd(), (&r as *const libc::sockaddr_in).cast(), 16);
                fd
            }
        })
        .collect();
    std::thread::sleep(wait);
    socks
        .into_iter()
        .map(|fd| {
            let mut pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut pfd, 1, 0) } == 1;
            if !ready {
                return Tcp::Silent;
            }
            let mut err: libc::c_int = 0;
            let mut len = 4u32;
            // SAFETY: valid int option buffer.
            unsafe {
                libc::getsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_ERROR,
                    (&mut err as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            match err {
                0 => {
                    let mut s = TcpStream::from(fd);
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
                    let mut b = [0u8; 256];
                    let n = s.read(&mut b).unwrap_or(0);
                    Tcp::Connected {
                        reply: String::from_utf8_lossy(&b[..n]).into_owned(),
                    }
                }
                libc::ECONNREFUSED => Tcp::Refused,
                e => Tcp::Failed(std::io::Error::from_raw_os_error(e).to_string()),
            }
        })
        .collect()
}

/// Sends one `PROBE_LEN`-byte RTP-looking datagram from `from` to each of `to`.
fn udp_probes(from: Ipv4Addr, to: &[SocketAddrV4]) {
    let s = UdpSocket::bind(SocketAddrV4::new(from, 0)).unwrap();
    let mut payload = vec![0u8; PROBE_LEN];
    payload[0] = 0x80;
    payload[1] = 0;
    for (i, dst) in to.iter().enumerate() {
        payload[2..4].copy_from_slice(&(i as u16).to_be_bytes());
        let _ = s.send_to(&payload, dst);
        if i % 64 == 63 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// What the gateway-side attacker saw and got while probing the internal address.
struct Probed {
    tcp: Vec<(SocketAddrV4, Tcp)>,
    /// Frames to the prober's address (answers of any kind).
    answers: Vec<Seen>,
    /// Probes that came out of the relay on the internal side.
    relayed: Vec<Seen>,
    udp_sent: usize,
}

fn probe_internal(lab: &LabSpec) -> Probed {
    let int_addr = lab.int_net.relay;
    let gw_sniff = Sniffer::start(&lab.gw_ns, &lab.gw_if);
    let int_sniff = Sniffer::start(&lab.int_ns, &lab.int_peer_if);
    let mut udp: Vec<SocketAddrV4> = INT_RELAY.map(|p| SocketAddrV4::new(int_addr, p)).collect();
    udp.push(SocketAddrV4::new(int_addr, 40000));
    udp.push(SocketAddrV4::new(int_addr, 5061));
    let udp_sent = udp.len();
    let tcp: Vec<SocketAddrV4> = [5061, METRICS_PORT, 5060, 22, 80, 32000]
        .iter()
        .map(|p| SocketAddrV4::new(int_addr, *p))
        .collect();
    let tcp2 = tcp.clone();
    let results = in_netns(&lab.gw_ns, move || {
        udp_probes(PROBER, &udp);
        tcp_probes(PROBER, &tcp2, Duration::from_millis(2500))
    })
    .unwrap();
    let answers: Vec<Seen> = gw_sniff
        .finish()
        .into_iter()
        .filter(|s| s.dst == PROBER)
        .collect();
    let relayed: Vec<Seen> = int_sniff
        .finish()
        .into_iter()
        .filter(|s| s.src == int_addr && s.proto == 17 && s.len >= PROBE_LEN)
        .collect();
    Probed {
        tcp: tcp.into_iter().zip(results).collect(),
        answers,
        relayed,
        udp_sent,
    }
}

/// A lab with Tollgate on `datapath` (metrics on the internal address), a call up for
/// `talk`, and the attacker set up on the gateway segment. Calls `probe` while the call talks,
/// then checks the call kept its audio.
fn with_call_up(
    tag: &str,
    datapath: &str,
    boundary_off: bool,
    probe: impl FnOnce(&LabSpec, &Server),
) {
    let lab = LabSpec::unique(tag).up_guarded().expect("lab up");
    let dir = Scratch::new(tag);
    let a = addrs(lab.spec());
    let pki = a.pki(&dir.0.join("certs")).unwrap();
    let metrics = SocketAddr::new(a.relay_int, METRICS_PORT);
    let mut text = a.tollgate_config(&pki, datapath, 1, &dir.0.join("cdr.jsonl"), Some(metrics));
    if boundary_off {
        text = text.replacen("[int]", "boundary = \"off\"\n\n[int]", 1);
    }
    let cfg = Config::parse(&text, &dir.0).expect("config");
    let topo = a.topology(&pki);
    let parties = Arc::new(Parties::start(&topo, Duration::ZERO, true).unwrap());
    let server = Server::start(&lab.relay_ns, cfg);

    // The attacker: its own address, and the internal subnet routed via the relay.
    let gw_if = lab.gw_if.clone();
    run(
        "ip",
        &[
            "-n",
            &lab.gw_ns,
            "addr",
            "add",
            &format!("{PROBER}/24"),
            "dev",
            &gw_if,
        ],
    )
    .unwrap();
    run(
        "ip",
        &[
            "-n",
            &lab.gw_ns,
            "route",
            "add",
            &format!("{}.0/24", {
                let o = lab.int_net.relay.octets();
                format!("{}.{}.{}", o[0], o[1], o[2])
            }),
            "via",
            &lab.ext_net.relay.to_string(),
        ],
    )
    .unwrap();

    let call = common::one_call_in_background(&parties, Duration::from_secs(7));
    // Wait for the call's media flow.
    let t0 = Instant::now();
    while server.metric("tollgate_media_flows") < 1.0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "the call set up");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));

    probe(lab.spec(), &server);

    let report = call.join().unwrap().unwrap();
    assert_eq!(
        report.ok(),
        1,
        "the call kept its audio both ways: {:?}",
        report.calls
    );
    let summary = server.drain();
    assert_eq!((summary.calls_left, summary.ports_left), (0, (0, 0)));
}

fn boundary_holds(datapath: &str) {
    with_call_up(
        &format!("bd{}", &datapath[..1]),
        datapath,
        false,
        |lab, server| {
            let before = server.metric_with(
                "tollgate_boundary_drops_total",
                &["side=\"ext\"", "reason=\"other_side\""],
            );
            let p = probe_internal(lab);
            for (dst, got) in &p.tcp {
                eprintln!("TCP {dst}: {got:?}");
            }
            for s in &p.answers {
                eprintln!("answer to the prober: {s:?}");
            }
            for s in &p.relayed {
                eprintln!("relayed into the internal side: {s:?}");
            }
            assert!(
                p.tcp.iter().all(|(_, t)| *t == Tcp::Silent),
                "no SYN-ACK, RST or ICMP error from the internal address: {:?}",
                p.tcp
            );
            assert!(p.answers.is_empty(), "nothing answers the prober");
            assert!(p.relayed.is_empty(), "no probe relayed inside");

            // Positive controls: the gateway-side SIP port answers the same prober (a TCP
            // connection; Tollgate then closes it, the prober is no trunk), metrics answer from
            // the internal side.
            let ext_sip = SocketAddrV4::new(lab.ext_net.relay, 5060);
            let got = in_netns(&lab.gw_ns, move || {
                tcp_probes(PROBER, &[ext_sip], Duration::from_millis(500))
            })
            .unwrap();
            assert!(
                matches!(got[0], Tcp::Connected { .. }),
                "the gateway-side SIP port answers: {got:?}"
            );
            let int_metrics = SocketAddrV4::new(lab.int_net.relay, METRICS_PORT);
            let peer = lab.int_net.peer;
            let got = in_netns(&lab.int_ns, move || {
                tcp_probes(peer, &[int_metrics], Duration::from_millis(500))
            })
            .unwrap();
            match &got[0] {
                Tcp::Connected { reply } => assert!(
                    reply.starts_with("HTTP/1.1 200"),
                    "metrics from the internal side: {reply:?}"
                ),
                other => panic!("metrics unreachable from the internal side: {other:?}"),
            }

            // The drops were counted on the gateway NIC as `other_side` (metrics refresh each
            // second): every UDP probe, and at least one SYN per TCP probe.
            let want = before + (p.udp_sent + p.tcp.len()) as f64;
            let t0 = Instant::now();
            let mut after;
            loop {
                after = server.metric_with(
                    "tollgate_boundary_drops_total",
                    &["side=\"ext\"", "reason=\"other_side\""],
                );
                if after >= want || t0.elapsed() > Duration::from_secs(4) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            eprintln!(
                "boundary drops: ext other_side {before} -> {after}; ext port {}, proto {}, not_ours {}; int other_side {}",
                server.metric_with(
                    "tollgate_boundary_drops_total",
                    &["side=\"ext\"", "reason=\"port\""]
                ),
                server.metric_with(
                    "tollgate_boundary_drops_total",
                    &["side=\"ext\"", "reason=\"proto\""]
                ),
                server.metric_with(
                    "tollgate_boundary_drops_total",
                    &["side=\"ext\"", "reason=\"not_ours\""]
                ),
                server.metric_with(
                    "tollgate_boundary_drops_total",
                    &["side=\"int\"", "reason=\"other_side\""]
                ),
            );
            assert!(
                after >= want,
                "other_side drops rose by at least {} (got {before} -> {after})",
                want - before
            );
        },
    );
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn boundary_holds_socket_path() {
    require_root("boundary_holds_socket_path");
    boundary_holds("socket");
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn boundary_holds_xdp_path() {
    require_root("boundary_holds_xdp_path");
    boundary_holds("xdp");
}

/// Without the packet filter the probes do see the kernel's RSTs for the internal address (so
/// they would catch a broken filter), but no service answers: every socket is bound to its
/// own NIC.
#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn boundary_off_sockets_stay_on_their_nic() {
    require_root("boundary_off_sockets_stay_on_their_nic");
    with_call_up("bo", "socket", true, |lab, _server| {
        let p = probe_internal(lab);
        for (dst, got) in &p.tcp {
            eprintln!("TCP {dst}: {got:?}");
        }
        assert!(
            p.tcp.iter().all(|(_, t)| *t == Tcp::Refused),
            "the kernel refuses (no socket on this NIC), no service accepts: {:?}",
            p.tcp
        );
        assert!(!p.answers.is_empty(), "the sniffer sees the answers");
        assert!(p.relayed.is_empty(), "no probe relayed inside");
    });
}

/// Whatever the config says, metrics are never served on the gateway NIC: an address that
/// validation cannot know is on it (a second address of the gateway NIC) is refused at start,
/// naming the key.
#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn metrics_on_the_gateway_nic_refused_at_start() {
    require_root("metrics_on_the_gateway_nic_refused_at_start");
    let lab = LabSpec::unique("bm").up_guarded().expect("lab up");
    let dir = Scratch::new("bm");
    let a = addrs(lab.spec());
    let pki = a.pki(&dir.0.join("certs")).unwrap();
    run(
        "ip",
        &[
            "-n",
            &lab.relay_ns,
            "addr",
            "add",
            "10.201.1.5/24",
            "dev",
            &lab.ext_if,
        ],
    )
    .unwrap();
    let metrics: SocketAddr = "10.201.1.5:9100".parse().unwrap();
    let text = a.tollgate_config(&pki, "socket", 1, &dir.0.join("cdr.jsonl"), Some(metrics));
    let cfg = Config::parse(&text, &dir.0).expect("valid as far as the file can tell");
    let err = in_netns(&lab.relay_ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            match tollgate_server::start(cfg).await {
                Ok(_) => String::new(),
                Err(e) => e.to_string(),
            }
        })
    })
    .unwrap();
    assert!(
        err.contains("ops.metrics_listen") && err.contains("gateway-side interface"),
        "refused at start, naming the key: {err:?}"
    );
}
