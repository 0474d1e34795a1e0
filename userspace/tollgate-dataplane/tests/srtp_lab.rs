//! End to end through the lab with SRTP, on both data paths (issue: data plane tests):
//! * RTP from `gw` arrives at `int` as SRTP that libsrtp decrypts to the original packets, in
//!   order, for several concurrent flows (mux and separate RTCP ports); SRTP from `int` arrives
//!   at `gw` as the original RTP; RTCP/SRTCP likewise;
//! * tampered and replayed SRTP from `int` is dropped and counted, never forwarded;
//! * a packet from the wrong source is dropped and counted;
//! * a datagram to a port that is not a relay port reaches a kernel socket, and SIP over TCP
//!   works, while the XDP program is attached;
//! * with 2 NIC channels and 2 workers every flow is relayed whichever queue it lands on;
//! * the XDP path and the socket path put out byte-identical SRTP for the same input.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use common::{recv_n, rtcp_sr, rtp, sa, sync, udp, wait_until};
use tollgate_dataplane::{DataPath, Dataplane, DataplaneConfig, XdpSettings};
use tollgate_libsrtp::{Direction, Lib, Options, Session};
use tollgate_netlab::{LabSpec, in_netns, require_root, spawn_in_netns};
use tollgate_relay::{DropReason, LegSpec, MediaFlowSpec, TransformSpec};
use tollgate_srtp::{KeyMaterial, Profile};

const SUITE: Profile = Profile::Aes128CmHmacSha1_80;
const RTP_PER_FLOW: u16 = 120;
const RTCP_PER_FLOW: u32 = 3;

fn key(flow: u64, dir: u8) -> KeyMaterial {
    KeyMaterial::generate(SUITE, |b| {
        for (i, x) in b.iter_mut().enumerate() {
            *x = (flow as u8).wrapping_mul(31) ^ dir.wrapping_mul(97) ^ (i as u8);
        }
    })
}

fn key_salt(k: &KeyMaterial) -> Vec<u8> {
    [k.key(), k.salt()].concat()
}

/// Flow `i`: even flows multiplex RTCP, odd flows use port+1.
struct FlowPlan {
    id: u64,
    mux: bool,
    ext_local: SocketAddr,
    int_local: SocketAddr,
    gw: SocketAddr,
    peer: SocketAddr,
}

fn plan(i: u16) -> FlowPlan {
    FlowPlan {
        id: u64::from(i) + 1,
        mux: i.is_multiple_of(2),
        ext_local: sa(&format!("10.201.1.1:{}", 30000 + 4 * i)),
        int_local: sa(&format!("10.201.2.1:{}", 32000 + 4 * i)),
        gw: sa(&format!("10.201.1.2:{}", 40000 + 4 * i)),
        peer: sa(&format!("10.201.2.2:{}", 50000 + 4 * i)),
    }
}

fn rtcp_of(a: SocketAddr, mux: bool) -> SocketAddr {
    if mux {
        a
    } else {
        SocketAddr::new(a.ip(), a.port() + 1)
    }
}

/// One flow's endpoint on a peer: its RTP socket and its RTCP socket (a clone of the RTP one
/// when RTCP is multiplexed). Bound once for the whole run: closing a socket and binding its
/// port again races with other tests' fork+exec (`ip ...`), whose child holds a copy of the
/// descriptor until it execs, and then fails with "Address already in use".
struct Peer {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

impl Peer {
    fn try_clone(&self) -> Peer {
        Peer {
            rtp: self.rtp.try_clone().unwrap(),
            rtcp: self.rtcp.try_clone().unwrap(),
        }
    }
}

/// Binds every flow's endpoint (`addr` of each plan) inside namespace `ns`.
fn bind_peers(ns: &str, plans: &[FlowPlan], addr: fn(&FlowPlan) -> SocketAddr) -> Vec<Peer> {
    let addrs: Vec<(SocketAddr, bool)> = plans.iter().map(|p| (addr(p), p.mux)).collect();
    in_netns(ns, move || {
        addrs
            .iter()
            .map(|(a, mux)| {
                let rtp = udp(*a);
                let rtcp = if *mux {
                    rtp.try_clone().unwrap()
                } else {
                    udp(rtcp_of(*a, false))
                };
                Peer { rtp, rtcp }
            })
            .collect()
    })
    .unwrap()
}

fn spec(p: &FlowPlan) -> MediaFlowSpec {
    let leg = |local: SocketAddr, remote: SocketAddr| LegSpec {
        local_rtp: local,
        local_rtcp: (!p.mux).then(|| rtcp_of(local, false)),
        remote_rtp: Some(remote),
        remote_rtcp: None,
        learn_window_ns: 0,
        nic_mac: [0; 6],
        vlan: None,
        next_hop_mac: None,
    };
    MediaFlowSpec {
        id: p.id,
        ext: leg(p.ext_local, p.gw),
        int: leg(p.int_local, p.peer),
        ext_to_int: TransformSpec::Protect(key(p.id, 0)),
        int_to_ext: TransformSpec::Unprotect(key(p.id, 1)),
        resume: [None, None],
    }
}

/// What one run produced, for comparing the two paths.
#[derive(Debug, PartialEq, Eq)]
struct Output {
    /// Per flow: the SRTP and SRTCP bytes `int` received, in order.
    srtp_at_int: Vec<Vec<Vec<u8>>>,
    /// Per flow: the plain RTP/RTCP `gw` received.
    plain_at_gw: Vec<Vec<Vec<u8>>>,
}

/// libsrtp is initialised once per process (tests run concurrently).
fn libsrtp() -> Arc<Lib> {
    static LIB: std::sync::OnceLock<Arc<Lib>> = std::sync::OnceLock::new();
    LIB.get_or_init(|| Lib::debian().expect("libsrtp (Debian libsrtp2-dev) must be installed"))
        .clone()
}

fn run(xdp: bool, flows: u16, workers: usize) -> Output {
    let lab = LabSpec::unique(if xdp { "sx" } else { "ss" })
        .up_guarded()
        .expect("lab up");
    if workers > 1 {
        lab.set_channels(workers as u32).expect("set channels");
    }
    let l = lab.spec().clone();
    let lib = libsrtp();
    in_netns(&l.relay_ns.clone(), move || {
        let path = if xdp {
            DataPath::Xdp(XdpSettings::new(&l.ext_if, &l.int_if))
        } else {
            DataPath::Socket
        };
        let mut dp =
            Dataplane::start(DataplaneConfig::new(path, workers)).expect("start data plane");
        let plans: Vec<FlowPlan> = (0..flows).map(plan).collect();
        for p in &plans {
            dp.install(spec(p)).expect("install");
        }
        let gws = bind_peers(&l.gw_ns, &plans, |p| p.gw);
        let ints = bind_peers(&l.int_ns, &plans, |p| p.peer);
        // Kernel services next to the relay: a UDP socket on a non-relay port, SIP over TCP.
        let kernel_udp = udp(sa("10.201.1.1:5555"));
        let sip = TcpListener::bind(sa("10.201.1.1:5060")).unwrap();
        sync(&mut dp);

        let out = gw_to_int(&plans, &gws, &ints, &lib);
        let back = int_to_gw(&plans, &gws, &ints, &lib);

        // Tampered and replayed SRTP from int: dropped and counted, not forwarded.
        let p0 = &plans[0];
        // A fresh SSRC protected with the right key, then one bit flipped in its payload.
        let mut tx = Session::new(
            &lib,
            SUITE.sdes_name(),
            &key_salt(&key(p0.id, 1)),
            Direction::Outbound,
            Options::default(),
        )
        .unwrap();
        let mut buf = vec![0u8; 2048];
        let p = rtp(RTP_PER_FLOW + 10, 0x5000, 160);
        buf[..p.len()].copy_from_slice(&p);
        let n = tx.protect(&mut buf, p.len()).unwrap();
        let mut bad = buf[..n].to_vec();
        bad[20] ^= 0x01;
        // A replay: int_to_gw's last packet on this flow, protected again identically.
        let mut tx2 = Session::new(
            &lib,
            SUITE.sdes_name(),
            &key_salt(&key(p0.id, 1)),
            Direction::Outbound,
            Options::default(),
        )
        .unwrap();
        let mut replay = Vec::new();
        for seq in 0..RTP_PER_FLOW {
            let r = rtp(seq, 0x2000, 160);
            buf[..r.len()].copy_from_slice(&r);
            let m = tx2.protect(&mut buf, r.len()).unwrap();
            replay = buf[..m].to_vec();
        }
        let gw0 = gws[0].rtp.try_clone().unwrap();
        let got_bad = std::thread::spawn(move || recv_n(&gw0, 1));
        ints[0].rtp.send_to(&bad, p0.int_local).unwrap();
        ints[0].rtp.send_to(&replay, p0.int_local).unwrap();
        assert!(
            got_bad.join().unwrap().is_empty(),
            "tampered/replayed SRTP was forwarded"
        );
        sync(&mut dp);
        let c = dp.counters(p0.id).unwrap();
        assert_eq!(
            c[1].drop(DropReason::AuthFailed),
            1,
            "tampered packet counted: {c:?}"
        );
        assert_eq!(
            c[1].drop(DropReason::Replayed),
            1,
            "replayed packet counted: {c:?}"
        );

        // Wrong source: dropped and counted.
        let ext_local = p0.ext_local;
        in_netns(&l.gw_ns, move || {
            let s = UdpSocket::bind(sa("10.201.1.2:40999")).unwrap();
            s.send_to(&rtp(1, 0x1234, 160), ext_local).unwrap();
        })
        .unwrap();
        // Dropped by the XDP program or by the worker, once the datagram gets there.
        wait_until(Duration::from_secs(2), || {
            dp.counters(p0.id).unwrap()[0].drop(DropReason::Source) > 0
        });
        let c = dp.counters(p0.id).unwrap();
        assert_eq!(
            c[0].drop(DropReason::Source),
            1,
            "wrong source counted: {c:?}"
        );

        // Not a relay port: the kernel gets it. SIP over TCP still works.
        let client = spawn_in_netns(&l.gw_ns, || {
            let s = UdpSocket::bind(sa("10.201.1.2:0")).unwrap();
            s.send_to(b"to the kernel", sa("10.201.1.1:5555")).unwrap();
            let mut t = TcpStream::connect_timeout(&sa("10.201.1.1:5060"), Duration::from_secs(2))
                .expect("TCP connect to the relay");
            t.write_all(b"OPTIONS sip:relay SIP/2.0\r\n\r\n").unwrap();
            let mut resp = [0u8; 16];
            t.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let n = t.read(&mut resp).unwrap();
            resp[..n].to_vec()
        })
        .unwrap();
        let mut b = [0u8; 64];
        let (n, _) = kernel_udp
            .recv_from(&mut b)
            .expect("non-relay port reaches the kernel");
        assert_eq!(&b[..n], b"to the kernel");
        let (mut conn, _) = sip.accept().unwrap();
        let mut req = [0u8; 64];
        let n = conn.read(&mut req).unwrap();
        assert!(req[..n].starts_with(b"OPTIONS"));
        conn.write_all(b"SIP/2.0 200 OK\r\n").unwrap();
        assert_eq!(client.join().unwrap().unwrap(), b"SIP/2.0 200 OK\r\n");

        let stats = dp.stats();
        if workers > 1 {
            let busy = stats.workers.iter().filter(|w| w.rx > 0).count();
            eprintln!(
                "per-worker rx: {:?}",
                stats.workers.iter().map(|w| w.rx).collect::<Vec<_>>()
            );
            if xdp {
                assert_eq!(
                    busy, workers,
                    "RSS spread the flows over both queues and both workers relayed"
                );
            }
        }
        for p in &plans {
            dp.remove(p.id).unwrap();
        }
        assert_eq!(dp.flow_count(), 0);
        dp.shutdown();
        Output {
            srtp_at_int: out,
            plain_at_gw: back,
        }
    })
    .unwrap()
}

/// Sends RTP and RTCP from gw on every flow; returns what int received per flow, after
/// checking it decrypts (libsrtp) to exactly what was sent, in order.
fn gw_to_int(plans: &[FlowPlan], gws: &[Peer], ints: &[Peer], lib: &Arc<Lib>) -> Vec<Vec<Vec<u8>>> {
    let mut receivers = Vec::new();
    for (p, int) in plans.iter().zip(ints) {
        let (int, mux) = (int.try_clone(), p.mux);
        receivers.push(std::thread::spawn(move || {
            let mut got = recv_n(
                &int.rtp,
                usize::from(RTP_PER_FLOW) + if mux { RTCP_PER_FLOW as usize } else { 0 },
            );
            if !mux {
                got.extend(recv_n(&int.rtcp, RTCP_PER_FLOW as usize));
            }
            got
        }));
    }
    // The sockets are bound: datagrams wait in their buffers until the threads read them.
    for seq in 0..RTP_PER_FLOW {
        for (p, gw) in plans.iter().zip(gws) {
            let ssrc = 0x1000 + p.id as u32;
            gw.rtp.send_to(&rtp(seq, ssrc, 160), p.ext_local).unwrap();
            if seq % 40 == 20 {
                gw.rtcp
                    .send_to(&rtcp_sr(ssrc, u32::from(seq)), rtcp_of(p.ext_local, p.mux))
                    .unwrap();
            }
        }
        std::thread::sleep(Duration::from_micros(300));
    }
    let mut all = Vec::new();
    for (p, h) in plans.iter().zip(receivers) {
        let got = h.join().unwrap();
        let mut rx = Session::new(
            lib,
            SUITE.sdes_name(),
            &key_salt(&key(p.id, 0)),
            Direction::Inbound,
            Options::default(),
        )
        .unwrap();
        let ssrc = 0x1000 + p.id as u32;
        let (mut rtp_seen, mut rtcp_seen) = (0u16, 0u32);
        let mut raw = Vec::new();
        for (bytes, from) in &got {
            raw.push(bytes.clone());
            let mut b = bytes.clone();
            b.resize(bytes.len() + 64, 0);
            let is_rtcp = (192..=223).contains(&bytes[1]);
            if is_rtcp {
                assert_eq!(*from, rtcp_of(p.int_local, p.mux), "SRTCP source");
                let n = rx
                    .unprotect_rtcp(&mut b, bytes.len())
                    .expect("libsrtp accepts our SRTCP");
                let seq = 20 + 40 * rtcp_seen;
                assert_eq!(
                    &b[..n],
                    &rtcp_sr(ssrc, seq)[..],
                    "SRTCP decrypts to the original"
                );
                rtcp_seen += 1;
            } else {
                assert_eq!(*from, p.int_local, "SRTP source");
                let n = rx
                    .unprotect(&mut b, bytes.len())
                    .expect("libsrtp accepts our SRTP");
                assert_eq!(
                    &b[..n],
                    &rtp(rtp_seen, ssrc, 160)[..],
                    "flow {} packet {rtp_seen}",
                    p.id
                );
                rtp_seen += 1;
            }
        }
        assert_eq!(rtp_seen, RTP_PER_FLOW, "flow {}: all RTP arrived", p.id);
        assert_eq!(rtcp_seen, RTCP_PER_FLOW, "flow {}: all RTCP arrived", p.id);
        all.push(raw);
    }
    all
}

/// (relay RTP port, relay RTCP port, SRTP packets, one SRTCP packet).
type Outgoing = (SocketAddr, SocketAddr, Vec<Vec<u8>>, Vec<u8>);

/// Sends SRTP/SRTCP (protected by libsrtp) from int; returns what gw received per flow after
/// checking it is exactly the original plain RTP/RTCP.
fn int_to_gw(plans: &[FlowPlan], gws: &[Peer], ints: &[Peer], lib: &Arc<Lib>) -> Vec<Vec<Vec<u8>>> {
    let mut receivers = Vec::new();
    for (p, gw) in plans.iter().zip(gws) {
        let (gw, mux) = (gw.try_clone(), p.mux);
        receivers.push(std::thread::spawn(move || {
            let mut got = recv_n(&gw.rtp, usize::from(RTP_PER_FLOW) + if mux { 1 } else { 0 });
            if !mux {
                got.extend(recv_n(&gw.rtcp, 1));
            }
            got
        }));
    }
    let mut packets: Vec<Outgoing> = Vec::new();
    for p in plans {
        let mut tx = Session::new(
            lib,
            SUITE.sdes_name(),
            &key_salt(&key(p.id, 1)),
            Direction::Outbound,
            Options::default(),
        )
        .unwrap();
        let ssrc = 0x2000 + p.id as u32 - 1;
        let mut v = Vec::new();
        for seq in 0..RTP_PER_FLOW {
            let r = rtp(seq, 0x2000, 160);
            let _ = ssrc;
            let mut b = r.clone();
            b.resize(r.len() + 64, 0);
            let n = tx.protect(&mut b, r.len()).unwrap();
            v.push(b[..n].to_vec());
        }
        let sr = rtcp_sr(0x2000, 7);
        let mut b = sr.clone();
        b.resize(sr.len() + 64, 0);
        let n = tx.protect_rtcp(&mut b, sr.len()).unwrap();
        packets.push((p.int_local, rtcp_of(p.int_local, p.mux), v, b[..n].to_vec()));
    }
    for ((local, local_rtcp, v, sr), int) in packets.iter().zip(ints) {
        for (i, b) in v.iter().enumerate() {
            int.rtp.send_to(b, *local).unwrap();
            if i == 50 {
                int.rtcp.send_to(sr, *local_rtcp).unwrap();
            }
        }
    }
    let mut all = Vec::new();
    for (p, h) in plans.iter().zip(receivers) {
        let got = h.join().unwrap();
        let mut seq = 0u16;
        let mut rtcp = 0;
        let mut raw = Vec::new();
        for (b, from) in &got {
            raw.push(b.clone());
            if (192..=223).contains(&b[1]) {
                assert_eq!(*from, rtcp_of(p.ext_local, p.mux));
                assert_eq!(b, &rtcp_sr(0x2000, 7));
                rtcp += 1;
            } else {
                assert_eq!(*from, p.ext_local);
                assert_eq!(b, &rtp(seq, 0x2000, 160), "flow {} packet {seq}", p.id);
                seq += 1;
            }
        }
        assert_eq!(
            (seq, rtcp),
            (RTP_PER_FLOW, 1),
            "flow {}: every packet decrypted and relayed",
            p.id
        );
        all.push(raw);
    }
    all
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn xdp_and_socket_paths_relay_srtp_identically() {
    require_root("xdp_and_socket_paths_relay_srtp_identically");
    let xdp = run(true, 4, 1);
    let sock = run(false, 4, 1);
    assert_eq!(
        xdp.srtp_at_int, sock.srtp_at_int,
        "byte-identical SRTP from both paths"
    );
    assert_eq!(
        xdp.plain_at_gw, sock.plain_at_gw,
        "byte-identical RTP from both paths"
    );
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn two_channels_two_workers() {
    require_root("two_channels_two_workers");
    run(true, 8, 2);
}
