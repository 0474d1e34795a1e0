//! The XDP program really runs: attached to the relay's external veth in a lab, its UDP counter
//! moves by exactly the number of datagrams the gateway sends.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::net::{SocketAddrV4, UdpSocket};
use std::time::Duration;

use tollgate_common::counter;
use tollgate_dataplane::xdp::{ModeRequest, XdpProgram};
use tollgate_netlab::{LabSpec, in_netns, require_root, spawn_in_netns};

fn send_and_count(request: ModeRequest) {
    let lab = LabSpec::unique("xc").up_guarded().expect("lab up");
    let relay_addr = lab.ext_net.relay;
    let ext_if = lab.ext_if.clone();

    // A receiver in the relay namespace proves XDP_PASS delivers to the kernel stack.
    let prog = in_netns(&lab.relay_ns, move || XdpProgram::attach(&ext_if, request))
        .unwrap()
        .expect("attach XDP");
    eprintln!("attached in {} mode", prog.mode().unwrap());
    let before = prog.counters().unwrap();

    const N: u64 = 1000;
    let (bound_tx, bound) = std::sync::mpsc::channel();
    let receiver = spawn_in_netns(&lab.relay_ns, move || {
        let rx = UdpSocket::bind(SocketAddrV4::new(relay_addr, 40000)).expect("bind");
        let _ = bound_tx.send(());
        rx.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut got = 0u64;
        let mut buf = [0u8; 64];
        while got < N && rx.recv(&mut buf).is_ok() {
            got += 1;
        }
        got
    })
    .unwrap();
    // The receiver has bound (or failed: then the join below reports its panic).
    let _ = bound.recv();

    let gw = lab.ext_net.peer;
    in_netns(&lab.gw_ns, move || {
        let tx = UdpSocket::bind(SocketAddrV4::new(gw, 0)).unwrap();
        for i in 0..N {
            tx.send_to(&i.to_be_bytes(), SocketAddrV4::new(relay_addr, 40000))
                .unwrap();
            if i % 64 == 63 {
                std::thread::sleep(Duration::from_millis(1)); // stay under the socket buffer
            }
        }
    })
    .unwrap();

    let got = receiver.join().unwrap().unwrap();
    assert_eq!(
        got, N,
        "every datagram must reach the relay's socket through XDP_PASS"
    );
    let after = prog.counters().unwrap();
    assert_eq!(
        after.get(counter::UDP4) - before.get(counter::UDP4),
        N,
        "UDP/IPv4 counter must move by exactly {N}"
    );
    assert!(after.get(counter::RX) - before.get(counter::RX) >= N);
    assert_eq!(after.get(counter::DROP_MALFORMED), 0);
    assert_eq!(
        after.get(counter::REDIRECT),
        0,
        "no flows installed: nothing is redirected"
    );
    eprintln!(
        "XDP counter test: sent {N}, counted {}, delivered {got}",
        after.get(counter::UDP4) - before.get(counter::UDP4)
    );
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn xdp_counts_every_udp_datagram_native() {
    require_root("xdp_counts_every_udp_datagram_native");
    send_and_count(ModeRequest::Native);
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn xdp_counts_every_udp_datagram_skb() {
    require_root("xdp_counts_every_udp_datagram_skb");
    send_and_count(ModeRequest::Skb);
}
