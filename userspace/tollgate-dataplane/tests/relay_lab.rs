//! The data plane relays media between the lab's namespaces, on both paths.
//!
//! `gw` sends to the relay's gateway-side address, `int` receives from the relay's internal
//! address (and the reverse). The relay runs in `relay` with the XDP program and AF_XDP workers,
//! or with the socket path.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::time::Duration;

use common::{forward_flow, recv_n, rtp, sa, sync, udp};
use tollgate_dataplane::{DEFAULT_COALESCE_US, DataPath, Dataplane, DataplaneConfig, XdpSettings};
use tollgate_netlab::{LabSpec, in_netns, require_root};

/// The XDP path on the lab's two relay interfaces.
fn xdp(l: &LabSpec) -> DataPath {
    DataPath::Xdp(XdpSettings::new(&l.ext_if, &l.int_if))
}

/// `busy_poll` and `coalesce_us` as in [`DataplaneConfig`]: the XDP worker's three idle
/// policies (moderated naps, wake per frame, never sleep) must all relay every packet. Skipped
/// (with a line naming `test`) when not root.
fn forward_both_ways(
    test: &str,
    path_of: impl Fn(&LabSpec) -> DataPath + Send + 'static,
    busy_poll: bool,
    coalesce_us: u32,
) {
    require_root(test);
    let lab = LabSpec::unique("rl").up_guarded().expect("lab up");
    let spec = lab.spec().clone();
    in_netns(&lab.relay_ns, move || {
        let mut cfg = DataplaneConfig::new(path_of(&spec), 1);
        cfg.busy_poll = busy_poll;
        cfg.coalesce_us = coalesce_us;
        let mut dp = Dataplane::start(cfg).expect("start");
        dp.install(forward_flow(1, 30000, 30002, 40000, 50000))
            .expect("install");
        sync(&mut dp);

        // Each peer binds its port once for both directions: closing a socket and binding its
        // port again races with other tests' fork+exec (`ip ...`), whose child holds a copy of
        // the descriptor until it execs, and then fails with "Address already in use".
        let gw = in_netns(&spec.gw_ns, || udp(sa("10.201.1.2:40000"))).unwrap();
        let int = in_netns(&spec.int_ns, || udp(sa("10.201.2.2:50000"))).unwrap();
        let int_rx = int.try_clone().unwrap();
        // Bound above: datagrams wait in its buffer until the thread reads them.
        let rx_int = std::thread::spawn(move || recv_n(&int_rx, 200));
        for seq in 0..200u16 {
            gw.send_to(&rtp(seq, 0x1111, 160), sa("10.201.1.1:30000"))
                .unwrap();
            if seq % 50 == 49 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let got = rx_int.join().unwrap();
        assert_eq!(got.len(), 200, "every packet relayed gw -> int");
        for (i, (p, from)) in got.iter().enumerate() {
            assert_eq!(
                *from,
                sa("10.201.2.1:30002"),
                "sent from the relay's int port"
            );
            assert_eq!(
                p,
                &rtp(i as u16, 0x1111, 160),
                "payload intact and in order"
            );
        }

        let gw_rx = gw.try_clone().unwrap();
        let rx_gw = std::thread::spawn(move || recv_n(&gw_rx, 100));
        for seq in 0..100u16 {
            int.send_to(&rtp(seq, 0x2222, 160), sa("10.201.2.1:30002"))
                .unwrap();
        }
        let got = rx_gw.join().unwrap();
        assert_eq!(got.len(), 100, "every packet relayed int -> gw");
        assert!(got.iter().all(|(_, f)| *f == sa("10.201.1.1:30000")));

        // Counters are written right after the send: wait for the worker to be past it.
        sync(&mut dp);
        let c = dp.counters(1).unwrap();
        assert_eq!(c[0].packets, 200);
        assert_eq!(c[1].packets, 100);
        dp.remove(1).unwrap();
        let stats = dp.stats();
        eprintln!("stats: {stats:?}");
        dp.shutdown();
    })
    .unwrap();
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn xdp_path_forwards_both_ways() {
    forward_both_ways(
        "xdp_path_forwards_both_ways",
        xdp,
        false,
        DEFAULT_COALESCE_US,
    );
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn xdp_path_busy_poll_forwards_both_ways() {
    forward_both_ways(
        "xdp_path_busy_poll_forwards_both_ways",
        xdp,
        true,
        DEFAULT_COALESCE_US,
    );
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn xdp_path_without_moderation_forwards_both_ways() {
    forward_both_ways(
        "xdp_path_without_moderation_forwards_both_ways",
        xdp,
        false,
        0,
    );
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn socket_path_forwards_both_ways() {
    forward_both_ways(
        "socket_path_forwards_both_ways",
        |_| DataPath::Socket,
        false,
        DEFAULT_COALESCE_US,
    );
}

/// A peer whose next hop does not resolve is reported, and packets toward it are counted as
/// `no_next_hop`, never sent blind. A NATed gateway's source is learned once and reported.
#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn xdp_unresolved_next_hop_and_learning() {
    require_root("xdp_unresolved_next_hop_and_learning");
    let lab = LabSpec::unique("nh").up_guarded().expect("lab up");
    let spec = lab.spec().clone();
    in_netns(&lab.relay_ns, move || {
        let path = xdp(&spec);
        let mut dp = Dataplane::start(DataplaneConfig::new(path, 1)).expect("start");
        // Flow 1: the internal peer 10.201.2.99 does not exist.
        dp.install(forward_flow(1, 30000, 30002, 40000, 50000))
            .unwrap();
        let mut ghost = forward_flow(2, 30010, 30012, 40010, 50010);
        ghost.int.remote_rtp = Some(sa("10.201.2.99:50010"));
        dp.install(ghost).unwrap();
        assert_eq!(
            dp.stats().unresolved,
            1,
            "the unresolvable peer is reported"
        );
        assert!(dp.refresh_next_hops() >= 1);

        // Flow 3: the gateway's address is not known; it is learned from its first packet.
        let mut nat = forward_flow(3, 30020, 30022, 40020, 50020);
        nat.ext.remote_rtp = None;
        nat.ext.learn_window_ns = 10_000_000_000;
        dp.install(nat).unwrap();
        sync(&mut dp);

        let int = in_netns(&spec.int_ns, || udp(sa("10.201.2.2:50020"))).unwrap();
        let rx_int = std::thread::spawn(move || recv_n(&int, 5));
        in_netns(&spec.gw_ns, || {
            let s = udp(sa("10.201.1.2:41234"));
            let g = udp(sa("10.201.1.2:40010"));
            for seq in 0..5 {
                g.send_to(&rtp(seq, 7, 160), sa("10.201.1.1:30010"))
                    .unwrap();
                s.send_to(&rtp(seq, 8, 160), sa("10.201.1.1:30020"))
                    .unwrap();
            }
        })
        .unwrap();
        assert_eq!(rx_int.join().unwrap().len(), 5, "learned flow relays");
        sync(&mut dp);
        let mut ev = Vec::new();
        dp.drain_events(&mut ev);
        assert!(
            ev.iter()
                .any(|e| e.flow_id == 3 && e.learned && e.source == sa("10.201.1.2:41234")),
            "learning reported: {ev:?}"
        );
        let c = dp.counters(2).unwrap();
        assert_eq!(
            c[0].drop(tollgate_relay::DropReason::NoNextHop),
            5,
            "counted, not sent: {c:?}"
        );
        let c3 = dp.counters(3).unwrap();
        assert_eq!(c3[0].packets, 5);
        // The worker counts every drop under its reason too.
        let w = dp.stats().workers[0];
        assert_eq!(
            w.drops[tollgate_relay::DropReason::NoNextHop as usize],
            5,
            "{w:?}"
        );
        assert_eq!(w.drops.iter().sum::<u64>(), w.dropped, "{w:?}");
        dp.shutdown();
    })
    .unwrap();
}

/// A peer that appears after its flow was installed is taken up from the kernel's neighbour
/// notification (`watch_next_hops`), not from the periodic refresh, and its media then flows.
#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn xdp_next_hop_follows_neighbour_notifications() {
    require_root("xdp_next_hop_follows_neighbour_notifications");
    let lab = LabSpec::unique("nw").up_guarded().expect("lab up");
    let spec = lab.spec().clone();
    let peer_mac = {
        let out = tollgate_netlab::run(
            "ip",
            &["-n", &spec.int_ns, "link", "show", "dev", &spec.int_peer_if],
        )
        .unwrap();
        let at = out.find("link/ether ").unwrap() + "link/ether ".len();
        out[at..at + 17].to_owned()
    };
    in_netns(&lab.relay_ns, move || {
        let path = xdp(&spec);
        let mut dp = Dataplane::start(DataplaneConfig::new(path, 1)).expect("start");
        let mut late = forward_flow(1, 30010, 30012, 40010, 50010);
        late.int.remote_rtp = Some(sa("10.201.2.99:50010"));
        dp.install(late).unwrap();
        assert_eq!(dp.stats().unresolved, 1, "not there yet");
        // Nothing announced that concerns us yet (the failed resolution is not news).
        let _ = dp.watch_next_hops();
        assert!(!dp.watch_next_hops(), "no news twice");

        // The peer comes up: an address in `int`, a neighbour entry in `relay`.
        tollgate_netlab::run(
            "ip",
            &[
                "-n",
                &spec.int_ns,
                "addr",
                "add",
                "10.201.2.99/24",
                "dev",
                &spec.int_peer_if,
            ],
        )
        .unwrap();
        tollgate_netlab::run(
            "ip",
            &[
                "neigh",
                "replace",
                "10.201.2.99",
                "lladdr",
                &peer_mac,
                "dev",
                &spec.int_if,
                "nud",
                "permanent",
            ],
        )
        .unwrap();
        assert!(dp.watch_next_hops(), "the notification is taken up");
        assert_eq!(
            dp.stats().unresolved,
            0,
            "resolved without waiting for the refresh"
        );

        // The new next hop is in effect in the worker.
        sync(&mut dp);
        let int = in_netns(&spec.int_ns, || udp(sa("10.201.2.99:50010"))).unwrap();
        let rx_int = std::thread::spawn(move || recv_n(&int, 5));
        in_netns(&spec.gw_ns, || {
            let g = udp(sa("10.201.1.2:40010"));
            for seq in 0..5 {
                g.send_to(&rtp(seq, 7, 160), sa("10.201.1.1:30010"))
                    .unwrap();
            }
        })
        .unwrap();
        assert_eq!(rx_int.join().unwrap().len(), 5, "media flows");
        dp.shutdown();
    })
    .unwrap();
}
