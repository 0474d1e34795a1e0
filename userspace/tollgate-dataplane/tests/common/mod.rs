//! Helpers shared by the lab tests: RTP packets, UDP endpoints inside namespaces.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]
#![allow(dead_code)] // reason: each test binary uses a different subset.

use std::net::{SocketAddr, UdpSocket};

use std::time::{Duration, Instant};
use tollgate_dataplane::Dataplane;
use tollgate_relay::{LegSpec, MediaFlowSpec, TransformSpec};

/// Waits until every worker has applied the commands sent so far and counted the packets it
/// handled (the data plane's acknowledgement, not a guess at how long that takes).
pub fn sync(dp: &mut Dataplane) {
    dp.sync(Duration::from_secs(5))
        .expect("every worker applied its commands");
}

/// Polls `cond` until it holds or `timeout` passes (for what only the network decides, such as
/// when a datagram the data plane drops reaches it); returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// An RTP packet: version 2, PT 0 (PCMU), `seq`, `ts`, `ssrc`, 160 bytes of payload that
/// encode `seq` so loss and reordering are visible.
pub fn rtp(seq: u16, ssrc: u32, plen: usize) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..plen).map(|i| (seq as usize * 31 + i) as u8));
    p
}

/// An RTCP sender report (PT 200) from `ssrc`.
pub fn rtcp_sr(ssrc: u32, n: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0; 8]); // NTP
    p.extend_from_slice(&(n * 160).to_be_bytes());
    p.extend_from_slice(&n.to_be_bytes());
    p.extend_from_slice(&(n * 172).to_be_bytes());
    p
}

/// Binds a UDP socket with a receive timeout and a 4 MiB receive buffer: a test's whole burst
/// must fit even when the receiving thread is starved of CPU (with the default ~208 KiB, a
/// starved receiver on a loaded 2-core CI machine lost the last packets of a 200-packet burst
/// that the relay had sent).
pub fn udp(addr: SocketAddr) -> UdpSocket {
    use std::os::fd::AsRawFd;
    let s = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let size: libc::c_int = 4 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: valid socket and option value.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            break;
        }
    }
    s
}

/// Receives until `n` datagrams or a timeout; returns (payload, source) pairs.
pub fn recv_n(s: &UdpSocket, n: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while out.len() < n {
        match s.recv_from(&mut buf) {
            Ok((len, from)) => out.push((buf[..len].to_vec(), from)),
            Err(_) => break,
        }
    }
    out
}

/// A socket address from text.
pub fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A leg relaying between `local` (the relay) and `remote` (the peer), no learning.
pub fn leg(local: &str, remote: &str) -> LegSpec {
    LegSpec {
        local_rtp: sa(local),
        local_rtcp: None,
        remote_rtp: Some(sa(remote)),
        remote_rtcp: None,
        learn_window_ns: 0,
        nic_mac: [0; 6],
        vlan: None,
        next_hop_mac: None,
    }
}

/// A flow that relays unchanged between the lab's gateway (`gw_port`) and internal peer
/// (`int_peer_port`) through relay ports `ext_port` and `int_port`.
pub fn forward_flow(
    id: u64,
    ext_port: u16,
    int_port: u16,
    gw_port: u16,
    int_peer_port: u16,
) -> MediaFlowSpec {
    MediaFlowSpec {
        id,
        ext: leg(
            &format!("10.201.1.1:{ext_port}"),
            &format!("10.201.1.2:{gw_port}"),
        ),
        int: leg(
            &format!("10.201.2.1:{int_port}"),
            &format!("10.201.2.2:{int_peer_port}"),
        ),
        ext_to_int: TransformSpec::Forward,
        int_to_ext: TransformSpec::Forward,
        resume: [None, None],
    }
}
