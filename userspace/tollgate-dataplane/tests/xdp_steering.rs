//! The XDP program's steering decisions, checked with BPF_PROG_TEST_RUN on hand-built frames:
//! miss passes, wrong source drops and counts, learning latches once, a hit without a socket is
//! dropped and counted, VLAN and IPv6 are parsed, truncated frames are dropped.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::net::SocketAddr;

use tollgate_common::{FLOW_F_LEARN, FLOW_F_REMOTE_UNKNOWN, FlowEntry, counter};
use tollgate_dataplane::xdp::{XdpProgram, addr16, flow_key};
use tollgate_netlab::require_root;
use tollgate_relay::frame::{EgressHeader, build};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn frame(src: &str, dst: &str, vlan: Option<u16>) -> Vec<u8> {
    let h = EgressHeader {
        src_mac: [2, 0, 0, 0, 0, 2],
        dst_mac: [2, 0, 0, 0, 0, 1],
        vlan,
        src: sa(src),
        dst: sa(dst),
    };
    build(&h, &[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9, 9, 9], 0)
}

fn entry(remote: &str, flags: u16, learn_until_ns: u64) -> FlowEntry {
    let r = sa(remote);
    FlowEntry {
        remote_addr: addr16(r.ip()),
        remote_port_be: r.port().to_be(),
        flags,
        flow_id: 7,
        learn_until_ns,
        src_mismatch: 0,
    }
}

fn ktime_ns() -> u64 {
    tollgate_dataplane::sys::monotonic_ns()
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn steering_decisions() {
    require_root("steering_decisions");
    let mut p = XdpProgram::load().expect("load XDP program");
    let local = sa("10.201.1.1:30000");
    p.insert_flow(flow_key(local), entry("10.201.1.2:40000", 0, 0))
        .unwrap();

    // Not a relay port: to the kernel.
    assert_eq!(
        p.test_run(&frame("10.201.1.2:40000", "10.201.1.1:5060", None))
            .unwrap(),
        XDP_PASS
    );
    // Relay port, right source, no AF_XDP socket on the queue: dropped and counted.
    assert_eq!(
        p.test_run(&frame("10.201.1.2:40000", "10.201.1.1:30000", None))
            .unwrap(),
        XDP_DROP
    );
    // Wrong address, then wrong port: dropped as source mismatches (RTP Bleed defence).
    assert_eq!(
        p.test_run(&frame("10.201.1.9:40000", "10.201.1.1:30000", None))
            .unwrap(),
        XDP_DROP
    );
    assert_eq!(
        p.test_run(&frame("10.201.1.2:40001", "10.201.1.1:30000", None))
            .unwrap(),
        XDP_DROP
    );
    // Same with one VLAN tag.
    assert_eq!(
        p.test_run(&frame("10.201.1.9:40000", "10.201.1.1:30000", Some(100)))
            .unwrap(),
        XDP_DROP
    );
    assert_eq!(
        p.test_run(&frame("10.201.1.2:40000", "10.201.1.1:5060", Some(100)))
            .unwrap(),
        XDP_PASS
    );
    // Truncated UDP header.
    let f = frame("10.201.1.2:40000", "10.201.1.1:30000", None);
    assert_eq!(p.test_run(&f[..14 + 20 + 4]).unwrap(), XDP_DROP);

    let c = p.counters().unwrap();
    assert_eq!(c.get(counter::DROP_SOURCE), 3);
    assert_eq!(c.get(counter::DROP_NO_SOCKET), 1);
    assert_eq!(c.get(counter::PASS), 2);
    assert_eq!(c.get(counter::DROP_MALFORMED), 1);
    assert_eq!(p.flow(&flow_key(local)).unwrap().unwrap().src_mismatch, 3);

    // IPv6.
    let l6 = sa("[fd00:201:1::1]:30000");
    p.insert_flow(flow_key(l6), entry("[fd00:201:1::2]:40000", 0, 0))
        .unwrap();
    assert_eq!(
        p.test_run(&frame(
            "[fd00:201:1::2]:40000",
            "[fd00:201:1::1]:30000",
            None
        ))
        .unwrap(),
        XDP_DROP
    );
    assert_eq!(
        p.test_run(&frame(
            "[fd00:201:1::3]:40000",
            "[fd00:201:1::1]:30000",
            None
        ))
        .unwrap(),
        XDP_DROP
    );
    assert_eq!(
        p.test_run(&frame(
            "[fd00:201:1::2]:40000",
            "[fd00:201:1::1]:5060",
            None
        ))
        .unwrap(),
        XDP_PASS
    );
    let c = p.counters().unwrap();
    assert_eq!(c.get(counter::DROP_SOURCE), 4);
    assert_eq!(c.get(counter::DROP_NO_SOCKET), 2);
    assert_eq!(c.get(counter::UDP6), 3);

    // Learning: the first source inside the window is latched, once.
    let l2 = sa("10.201.1.1:30010");
    p.insert_flow(
        flow_key(l2),
        entry(
            "0.0.0.0:0",
            FLOW_F_LEARN | FLOW_F_REMOTE_UNKNOWN,
            ktime_ns() + 10_000_000_000,
        ),
    )
    .unwrap();
    p.test_run(&frame("10.201.1.77:41000", "10.201.1.1:30010", None))
        .unwrap();
    let e = p.flow(&flow_key(l2)).unwrap().unwrap();
    assert_eq!(e.remote_addr, addr16(sa("10.201.1.77:0").ip()));
    assert_eq!(u16::from_be(e.remote_port_be), 41000);
    assert_eq!(e.flags & FLOW_F_LEARN, 0, "learned once");
    // A second, different source is now a mismatch.
    p.test_run(&frame("10.201.1.78:41000", "10.201.1.1:30010", None))
        .unwrap();
    assert_eq!(p.flow(&flow_key(l2)).unwrap().unwrap().src_mismatch, 1);
    assert_eq!(p.counters().unwrap().get(counter::LEARNED), 1);

    // An expired window learns nothing.
    let l3 = sa("10.201.1.1:30020");
    p.insert_flow(
        flow_key(l3),
        entry(
            "10.201.1.2:40000",
            FLOW_F_LEARN,
            ktime_ns().saturating_sub(1),
        ),
    )
    .unwrap();
    p.test_run(&frame("10.201.1.77:41000", "10.201.1.1:30020", None))
        .unwrap();
    assert_eq!(p.flow(&flow_key(l3)).unwrap().unwrap().src_mismatch, 1);

    // Removal: back to the kernel.
    p.remove_flow(&flow_key(local)).unwrap();
    assert_eq!(
        p.test_run(&frame("10.201.1.2:40000", "10.201.1.1:30000", None))
            .unwrap(),
        XDP_PASS
    );
    assert_eq!(p.flow_count().unwrap(), 3);
}
