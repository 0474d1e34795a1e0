//! The data plane with the boundary policy on, in the lab: media still relays both ways while
//! the gateway NIC drops what the gateway sends to the internal address (the relay port of the
//! live flow among it) and to closed ports of its own address. On the XDP path with the
//! program attached natively and in skb mode (AF_XDP in copy mode), and on the socket path
//! (the program as a pure filter, relay sockets bound to their NIC).
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use common::{forward_flow, recv_n, rtp, sa, sync, udp};
use tollgate_common::counter;
use tollgate_dataplane::afxdp::BindMode;
use tollgate_dataplane::boundary::{Boundary, BoundaryMode, SidePolicy};
use tollgate_dataplane::xdp::{AttachMode, ModeRequest};
use tollgate_dataplane::{DataPath, Dataplane, DataplaneConfig, XdpSettings};
use tollgate_netlab::{LabSpec, in_netns, require_root, run};

fn policies() -> [SidePolicy; 2] {
    let ext = sa("10.201.1.1:0").ip();
    let int = sa("10.201.2.1:0").ip();
    [
        SidePolicy {
            mode: BoundaryMode::Gateway,
            own: vec![ext],
            other: vec![int],
            tcp_ports: vec![5060],
            udp_ports: [30000, 31999],
            tcp_reply_ports: [32768, 60999],
        },
        SidePolicy {
            mode: BoundaryMode::Internal,
            own: vec![int],
            other: vec![ext],
            tcp_ports: vec![5061],
            udp_ports: [32000, 33999],
            tcp_reply_ports: [32768, 60999],
        },
    ]
}

fn relay_with_boundary(test: &str, path_of: impl Fn(&LabSpec) -> DataPath + Send + 'static) {
    require_root(test);
    let lab = LabSpec::unique("br").up_guarded().expect("lab up");
    // Native XDP on veth needs as many rx queues as the peer has tx queues: one worker, one
    // queue on both ends.
    lab.set_channels(1).expect("channels");
    let spec = lab.spec().clone();
    // The gateway routes the internal subnet via the relay, as an attacker would.
    run(
        "ip",
        &[
            "-n",
            &spec.gw_ns,
            "route",
            "add",
            "10.201.2.0/24",
            "via",
            "10.201.1.1",
        ],
    )
    .unwrap();
    in_netns(&lab.relay_ns, move || {
        let path = path_of(&spec);
        let socket_path = matches!(path, DataPath::Socket);
        let mut cfg = DataplaneConfig::new(path, 1);
        cfg.boundary = Some(Boundary {
            sides: policies(),
            interfaces: [spec.ext_if.clone(), spec.int_if.clone()],
            attach: ModeRequest::Skb,
        });
        if socket_path {
            cfg.devices = Some([spec.ext_if.clone(), spec.int_if.clone()]);
        }
        let mut dp = Dataplane::start(cfg).expect("start");
        eprintln!("attached: {:?}", dp.stats().attach);
        dp.install(forward_flow(1, 30000, 32000, 40000, 50000))
            .expect("install");
        sync(&mut dp);

        let gw = in_netns(&spec.gw_ns, || udp(sa("10.201.1.2:40000"))).unwrap();
        let int = in_netns(&spec.int_ns, || udp(sa("10.201.2.2:50000"))).unwrap();
        let int_rx = int.try_clone().unwrap();
        // Bound above: datagrams wait in its buffer until the thread reads them.
        let rx_int = std::thread::spawn(move || recv_n(&int_rx, 150));
        for seq in 0..100u16 {
            gw.send_to(&rtp(seq, 0x1111, 160), sa("10.201.1.1:30000"))
                .unwrap();
            // From the flow's own source to the internal relay port: must never arrive.
            gw.send_to(&rtp(seq, 0x6666, 160), sa("10.201.2.1:32000"))
                .unwrap();
            // A closed port of the gateway-side address.
            gw.send_to(&rtp(seq, 0x7777, 160), sa("10.201.1.1:5070"))
                .unwrap();
        }
        let got = rx_int.join().unwrap();
        assert_eq!(got.len(), 100, "every relayed packet and nothing else");
        assert!(
            got.iter().all(|(p, _)| p[8..12] == 0x1111u32.to_be_bytes()),
            "only the gateway's media reached the inside"
        );

        let gw_rx = gw.try_clone().unwrap();
        let rx_gw = std::thread::spawn(move || recv_n(&gw_rx, 150));
        for seq in 0..100u16 {
            int.send_to(&rtp(seq, 0x2222, 160), sa("10.201.2.1:32000"))
                .unwrap();
        }
        let got = rx_gw.join().unwrap();
        assert_eq!(got.len(), 100, "every packet relayed int -> gw, no ICMP");
        assert!(got.iter().all(|(_, f)| *f == sa("10.201.1.1:30000")));

        let stats = dp.stats();
        let [ext, int] = stats.xdp.expect("the program's counters");
        let want = match (&stats.attach, socket_path) {
            (Some([a, b]), true) => *a == AttachMode::Skb && *b == AttachMode::Skb,
            (Some(_), false) => true,
            (None, _) => false,
        };
        assert!(want, "attached as asked: {:?}", stats.attach);
        assert!(ext.get(counter::BOUNDARY_OTHER_SIDE) >= 100, "{ext:?}");
        assert!(ext.get(counter::BOUNDARY_PORT) >= 100, "{ext:?}");
        assert_eq!(int.get(counter::BOUNDARY_OTHER_SIDE), 0, "{int:?}");
        dp.shutdown();
    })
    .unwrap();
}

fn xdp(l: &LabSpec, attach: ModeRequest) -> DataPath {
    let mut x = XdpSettings::new(&l.ext_if, &l.int_if);
    x.attach = attach;
    x.bind = BindMode::Copy;
    DataPath::Xdp(x)
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn boundary_xdp_path_native_copy_mode() {
    relay_with_boundary("boundary_xdp_path_native_copy_mode", |l| {
        xdp(l, ModeRequest::Native)
    });
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn boundary_xdp_path_skb_mode() {
    relay_with_boundary("boundary_xdp_path_skb_mode", |l| xdp(l, ModeRequest::Skb));
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn boundary_socket_path() {
    relay_with_boundary("boundary_socket_path", |_| DataPath::Socket);
}
