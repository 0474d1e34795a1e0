//! Node failover in the namespace lab (`tollgate_netlab::ha`): relay nodes on two switched
//! segments, keepalived (VRRPv3 on the internal side) moving the service addresses, Valkey
//! holding the calls and the service lease, and `tollgate run` in `[ha] mode = "standby"` on
//! every node.
//!
//! * Host failure: the active node's Tollgate and keepalived die (`kill -9`); the standby's
//!   keepalived takes the addresses, its Tollgate the lease and the calls; audio continues on
//!   every call with SRTP authenticating; the calls end cleanly with one CDR each, from the
//!   standby.
//! * The same with the active node's links cut: its keepalived (no carrier) drops the
//!   addresses and its Tollgate fences itself.
//! * Partition: VRRP blocked into the standby, which goes master too; its Tollgate stays in
//!   standby (the lease is the active node's) and the calls are intact on the active node.
//! * N+1: one standby for two services; when one active node dies the standby takes only that
//!   service's calls, the other service's calls are untouched.
//!
//! Each test prints its figures (takeover times, media gap per call and p50/p99/max). The tests
//! run one at a time (a lock), so their timings do not disturb each other.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod common;

use common::{Scratch, assert_calls_intact, assert_cdrs, bin};
use tollgate_netlab::ha::{HaSpec, KeepalivedConfig, Service};
use tollgate_netlab::require_root;
use tollgate_simua::failover::{self, Node, percentile};
use tollgate_simua::labconf::LabAddrs;
use tollgate_simua::scenario::{Direction, Parties, Plan, Report};

/// The media gap every call must stay under at p99 across a failover.
const GAP_P99_GOAL_MS: u64 = 2000;

/// One test at a time: each runs several relays, keepalived and 20 calls with audio.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Polls `f` every 20 ms until it holds; how long that took. Panics with `ctx()` after
/// `deadline`.
fn wait_for(
    what: &str,
    deadline: Duration,
    mut f: impl FnMut() -> bool,
    ctx: impl Fn() -> String,
) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < deadline,
            "timed out waiting for {what}:\n{}",
            ctx()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    t.elapsed()
}

fn plan(direction: Direction, calls: usize, first_index: usize) -> Plan {
    Plan {
        direction,
        calls,
        concurrency: calls,
        talk: Duration::from_secs(12),
        ring: Duration::from_millis(100),
        media: true,
        first_index,
        rate: None,
    }
}

/// Prints every call's media and returns the media gaps' (p50, p99, max), both directions.
fn gaps(what: &str, report: &Report, indices: std::ops::Range<usize>) -> (u64, u64, u64) {
    let mut v = Vec::new();
    for c in report.calls.iter().filter(|c| indices.contains(&c.index)) {
        eprintln!(
            "{what} call {:3}: err {:?} caller rx {} gap {} ms auth_fail {} | callee rx {} gap {} ms auth_fail {}",
            c.index,
            c.error,
            c.caller.received,
            c.caller.max_gap_ms,
            c.caller.auth_failures,
            c.callee.received,
            c.callee.max_gap_ms,
            c.callee.auth_failures
        );
        v.push(c.caller.max_gap_ms);
        v.push(c.callee.max_gap_ms);
    }
    let r = (
        percentile(&mut v, 50.0),
        percentile(&mut v, 99.0),
        percentile(&mut v, 100.0),
    );
    eprintln!(
        "{what}: media gap p50 {} ms  p99 {} ms  max {} ms",
        r.0, r.1, r.2
    );
    r
}

/// The log's warnings and errors, and what it said about the service.
fn warnings(log: &str) -> String {
    log.lines()
        .filter(|l| {
            l.contains("WARN")
                || l.contains("ERROR")
                || l.contains("standby")
                || l.contains("taken over")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// No call, port or stored record left on `node`.
fn assert_drained(node: &Node) {
    wait_for(
        &format!("{}/{} drained", node.name, node.svc.name),
        Duration::from_secs(20),
        || {
            node.status().is_some_and(|v| {
                v["calls"] == 0
                    && v["ports"]["ext"] == 0
                    && v["ports"]["int"] == 0
                    && v["state"]["stored_calls"] == 0
            })
        },
        || format!("{:?}", node.status()),
    );
}

/// Two nodes for svc1 (`tollgate_simua::failover::pair`): n1 serves, n2 waits in standby.
fn pair(tag: &str, datapath: &str) -> (failover::Pair, Scratch) {
    let scratch = Scratch::new(&format!("failover-{tag}"));
    let p = failover::pair(tag, datapath, &scratch.0, &bin()).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "n1 serves svc1 {} ms after its start",
        p.n1_start.as_millis()
    );
    assert!(p.n1.log().contains("standby: holding the service lease"));
    assert!(p.n2.status().is_none(), "the standby serves nothing");
    (p, scratch)
}

use failover::Failure;

fn host_failure(tag: &str, failure: Failure, datapath: &str, direction: Direction) {
    let _serial = serial();
    let t_test = Instant::now();
    let (mut p, _scratch) = pair(tag, datapath);
    let plan = plan(direction, 20, 0);
    let failover::Round {
        report,
        vrrp,
        serving,
    } = failover::round(&mut p, &plan, failure).unwrap_or_else(|e| panic!("{e}"));
    let failover::Pair {
        lab,
        svc,
        mut n1,
        mut n2,
        ..
    } = p;
    let (vrrp, serving) = (vrrp.as_millis(), serving.as_millis());
    let what = match failure {
        Failure::Kill => "kill -9",
        Failure::Cut => "links cut",
    };
    let (_, p99, _) = gaps(what, &report, 0..plan.calls);
    eprintln!("{what}: n2 had the addresses after {vrrp} ms, served the calls after {serving} ms");
    if report.ok() != plan.calls {
        for n in [&n1, &n2] {
            eprintln!("{} logged:\n{}", n.name, warnings(&n.log()));
        }
    }
    assert_calls_intact(&report, &plan, plan.calls);
    assert!(
        p99 <= GAP_P99_GOAL_MS,
        "media gap p99 {p99} ms over {GAP_P99_GOAL_MS} ms"
    );
    if let Failure::Cut = failure {
        // Without carrier n1's keepalived dropped the addresses, and its Tollgate fenced
        // itself (exit 75, no BYE).
        let st = n1.exited().expect("n1's Tollgate fenced itself");
        eprintln!("links cut: n1's Tollgate exited with {st}");
        assert_eq!(st.code(), Some(75), "the fenced exit status");
        assert!(n1.log().contains("fenced:"), "{}", n1.log());
    }
    assert_drained(&n2);
    let cdrs = n2.cdrs();
    for l in &cdrs {
        assert!(l["duration_s"].as_f64().unwrap() >= 10.0, "{l}");
    }
    assert_cdrs(&cdrs, plan.calls);
    assert!(n1.cdrs().is_empty(), "no CDR from the failed node");
    if let Failure::Cut = failure {
        // The links come back: nopreempt, n1 stays backup and its keepalived does not take
        // the addresses back.
        lab.restore_links(1).unwrap();
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(lab.holders(&svc), vec![2], "n2 keeps svc1 after n1 is back");
    }
    assert!(
        n2.tg
            .as_mut()
            .unwrap()
            .stop(Duration::from_secs(10))
            .is_some()
    );
    eprintln!("{what}: test took {} s", t_test.elapsed().as_secs());
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn host_failure_kill9_the_standby_takes_the_calls() {
    require_root("host_failure_kill9_the_standby_takes_the_calls");
    host_failure("hk", Failure::Kill, "xdp", Direction::Inbound);
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn host_failure_links_cut_the_standby_takes_the_calls() {
    require_root("host_failure_links_cut_the_standby_takes_the_calls");
    host_failure("hc", Failure::Cut, "socket", Direction::Outbound);
}

/// VRRP blocked into n2: its keepalived goes master too (both nodes hold the addresses), but
/// its Tollgate never passes standby (the lease is n1's); n1 keeps relaying every call.
#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn partition_two_vrrp_masters_one_relay() {
    require_root("partition_two_vrrp_masters_one_relay");
    let _serial = serial();
    let (p, _scratch) = pair("pt", "xdp");
    let failover::Pair {
        lab,
        svc,
        mut n1,
        mut n2,
        parties,
        ..
    } = p;
    let plan = plan(Direction::Inbound, 20, 0);
    let report = std::thread::scope(|sc| {
        let run = sc.spawn(|| parties.run(&plan));
        wait_for(
            "20 calls stored on n1",
            Duration::from_secs(30),
            || {
                n1.status()
                    .is_some_and(|v| v["state"]["stored_calls"] == 20)
            },
            || format!("{:?}\n{}", n1.status(), n1.log()),
        );
        std::thread::sleep(Duration::from_secs(1));
        lab.block_vrrp_into(2).unwrap();
        let t = lab
            .wait_until(Duration::from_secs(10), |l| l.holds(2, &svc))
            .expect("n2's keepalived goes master too");
        eprintln!(
            "partition: n2 master too after {} ms; holders {:?}",
            t.as_millis(),
            lab.holders(&svc)
        );
        wait_for(
            "n2 sees n1's lease",
            Duration::from_secs(10),
            || n2.log().contains("n1 holds the lease"),
            || n2.log(),
        );
        // For the rest of the calls: n2 has the addresses and relays nothing.
        let mut checks = 0;
        while !run.is_finished() {
            assert!(n2.exited().is_none(), "n2's Tollgate stays up, in standby");
            assert!(n2.status().is_none(), "n2's control socket does not serve");
            assert!(!n2.metrics_up(), "n2's metrics do not serve");
            assert_eq!(n2.bound_udp(), 0, "n2 binds no media port");
            assert!(n1.exited().is_none(), "n1 carries on");
            checks += 1;
            std::thread::sleep(Duration::from_millis(500));
        }
        eprintln!(
            "partition: {checks} checks, both holders {:?}, peers steered to n{:?}",
            lab.holders(&svc),
            lab.steered_to(&svc)
        );
        run.join().unwrap().expect("scenario")
    });
    gaps("partition", &report, 0..plan.calls);
    assert_calls_intact(&report, &plan, plan.calls);
    assert!(!n2.log().contains("calls taken over"), "{}", n2.log());
    assert!(n1.metrics_up(), "n1 serves metrics");
    assert_drained(&n1);
    assert_cdrs(&n1.cdrs(), plan.calls);
    assert!(n2.cdrs().is_empty(), "n2 relayed nothing");
    lab.unblock_vrrp_into(2).unwrap();
    lab.wait_until(Duration::from_secs(10), |l| l.holders(&svc) == vec![1])
        .expect("n2 back to backup once it hears n1");
    assert!(
        n1.tg
            .as_mut()
            .unwrap()
            .stop(Duration::from_secs(10))
            .is_some()
    );
}

/// N+1: n1 carries svc1, n2 svc2, n3 stands by for both (one keepalived with two instances,
/// two Tollgates). n1 dies: n3 takes svc1's calls; svc2's calls on n2 are untouched.
#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn n_plus_one_standby_takes_the_dead_nodes_service_only() {
    require_root("n_plus_one_standby_takes_the_dead_nodes_service_only");
    let _serial = serial();
    let lab = HaSpec::unique("np", 3).up_guarded().expect("HA lab up");
    let scratch = Scratch::new("failover-np");
    let pki = failover::pki(&scratch.0.join("certs")).unwrap();
    let (s1, s2) = (Service::numbered(1), Service::numbered(2));
    lab.start_keepalived(1, &KeepalivedConfig::new(std::slice::from_ref(&s1), 150))
        .unwrap();
    lab.start_keepalived(2, &KeepalivedConfig::new(std::slice::from_ref(&s2), 150))
        .unwrap();
    lab.wait_until(Duration::from_secs(10), |l| {
        l.holds(1, &s1) && l.holds(2, &s2)
    })
    .expect("n1 takes svc1, n2 svc2");
    lab.start_keepalived(3, &KeepalivedConfig::new(&[s1.clone(), s2.clone()], 100))
        .unwrap();
    let a = LabAddrs::from_lab(&lab.lab_spec(1, &s1));
    let parties = Parties::start(&a.topology(&pki), Duration::from_millis(100), true).unwrap();
    let datapath = "socket";
    let mut n1 = Node::new(&lab, 1, &s1, &pki, datapath, &scratch.0, &bin()).unwrap();
    let mut n2 = Node::new(&lab, 2, &s2, &pki, datapath, &scratch.0, &bin()).unwrap();
    let mut n3a = Node::new(&lab, 3, &s1, &pki, datapath, &scratch.0, &bin()).unwrap();
    let mut n3b = Node::new(&lab, 3, &s2, &pki, datapath, &scratch.0, &bin()).unwrap();
    for n in [&mut n1, &mut n2, &mut n3a, &mut n3b] {
        n.start().unwrap();
    }
    n1.wait_serving(&lab, Duration::from_secs(20)).unwrap();
    n2.wait_serving(&lab, Duration::from_secs(20)).unwrap();
    for n in [&n3a, &n3b] {
        wait_for(
            "n3 in standby",
            Duration::from_secs(10),
            || {
                n.log()
                    .contains("standby: the service addresses are elsewhere")
            },
            || n.log(),
        );
    }
    let via = |s: &Service| {
        (
            SocketAddr::new(s.ext.into(), 5060),
            SocketAddr::new(s.int.into(), 5061),
        )
    };
    let (p1, p2) = (
        plan(Direction::Inbound, 10, 0),
        plan(Direction::Inbound, 10, 100),
    );
    let plans = [
        (p1.clone(), via(&s1).0, via(&s1).1),
        (p2.clone(), via(&s2).0, via(&s2).1),
    ];
    let (report, vrrp, serving) = std::thread::scope(|sc| {
        let run = sc.spawn(|| parties.run_many(&plans));
        for (n, calls) in [(&n1, 10), (&n2, 10)] {
            wait_for(
                "the calls stored",
                Duration::from_secs(30),
                || {
                    n.status()
                        .is_some_and(|v| v["state"]["stored_calls"] == calls)
                },
                || format!("{:?}\n{}", n.status(), n.log()),
            );
        }
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            (lab.holders(&s1), lab.holders(&s2)),
            (vec![1], vec![2]),
            "no VRRP flap under load before the failure"
        );
        let t0 = Instant::now();
        n1.kill();
        lab.kill_keepalived(1);
        let vrrp = lab
            .wait_until(Duration::from_secs(10), |l| l.holds(3, &s1))
            .expect("n3 takes svc1's addresses")
            .as_millis();
        wait_for(
            "n3 takes svc1's calls",
            Duration::from_secs(10),
            || n3a.log().contains("calls taken over") && n3a.status().is_some(),
            || n3a.log(),
        );
        let serving = t0.elapsed().as_millis();
        (run.join().unwrap().expect("scenario"), vrrp, serving)
    });
    let (_, p99_1, _) = gaps("N+1 svc1 (failed over)", &report, 0..10);
    let (_, _, max_2) = gaps("N+1 svc2 (untouched)", &report, 100..110);
    eprintln!("N+1: n3 had svc1's addresses after {vrrp} ms, served its calls after {serving} ms");
    assert_eq!(report.calls.len(), 20);
    assert_calls_intact(&report, &p1, 20);
    assert!(p99_1 <= GAP_P99_GOAL_MS, "svc1 media gap p99 {p99_1} ms");
    assert!(
        max_2 < 1000,
        "svc2's calls untouched: media gap at most {max_2} ms"
    );
    assert_eq!(lab.holders(&s2), vec![2], "svc2 stays on n2");
    assert!(
        n3b.status().is_none(),
        "n3's svc2 Tollgate still in standby"
    );
    assert!(!n3b.log().contains("calls taken over"));
    assert!(n2.exited().is_none() && n3b.exited().is_none());
    assert_drained(&n3a);
    assert_drained(&n2);
    assert_cdrs(&n3a.cdrs(), 10);
    assert_cdrs(&n2.cdrs(), 10);
    assert!(n1.cdrs().is_empty() && n3b.cdrs().is_empty());
    for n in [&mut n2, &mut n3a] {
        assert!(
            n.tg.as_mut()
                .unwrap()
                .stop(Duration::from_secs(10))
                .is_some()
        );
    }
}
