//! A trunk floods Tollgate with INVITEs while a call is up (issue: admission per trunk).
//!
//! In the namespace lab, on both data paths, with the gateway trunk limited to
//! [`TRUNK_CPS`] new calls a second:
//! * an outbound call (internal endpoint -> Tollgate -> gateway) carries audio both ways for
//!   the whole test, and must arrive intact;
//! * the gateway's address opens one more SIP/TCP connection and sends [`FLOOD`] INVITEs in
//!   [`FLOOD_SECS`] seconds (10x the trunk's rate), ACKing every final response;
//! * the internal next hop is a counting proxy (SIP over mutual TLS) that answers 486 to every
//!   INVITE, so it sees exactly what admission let through.
//!
//! Checked: every INVITE gets a final response (none left hanging), the proxy receives at most
//! the trunk's burst plus its rate over the flood, the rest get 503 with Retry-After and are
//! counted per trunk, the call keeps its audio, and Tollgate's RSS comes back to within 10% of
//! where it started. Tollgate runs as its own process (`tollgate run`), so its RSS is its own.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{Scratch, start_tollgate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate_netlab::{LabSpec, require_root, spawn_in_netns};
use tollgate_simua::hostile::{self, FloodReport};
use tollgate_simua::labconf::LabAddrs;
use tollgate_simua::process::{metric, scrape};
use tollgate_simua::scenario::{Direction, Parties, Plan};
use tollgate_simua::ua::UaTls;
use tollgate_sip::{Frame, Framer, Message};

/// The gateway trunk's configured calls per second (and burst).
const TRUNK_CPS: u32 = 30;
/// INVITEs in the flood.
const FLOOD: usize = 3000;
/// Over this long (10x the trunk's rate).
const FLOOD_SECS: u64 = 10;

/// Reads SIP messages off a stream and hands each to `on`, which may answer.
async fn sip_loop<S>(stream: S, mut on: impl FnMut(Message) -> Vec<Vec<u8>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut framer = Framer::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        framer.push(&buf[..n]);
        while let Some(f) = framer.next_frame() {
            if let Ok(Frame::Message(m)) = f {
                for out in on(m) {
                    if wr.write_all(&out).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// The internal next hop: counts INVITEs and answers each 486; ACK is absorbed, anything
/// else gets 200. Runs until `stop`.
fn counting_proxy(
    ns: &str,
    listen: SocketAddr,
    tls: UaTls,
    invites: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<(), tollgate_netlab::LabError>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = spawn_in_netns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind(listen).await.unwrap();
            ready_tx.send(()).unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.server));
            while !stop.load(Ordering::Relaxed) {
                let Ok(Ok((s, _))) =
                    tokio::time::timeout(Duration::from_millis(200), l.accept()).await
                else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let invites = Arc::clone(&invites);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(s).await else {
                        return;
                    };
                    sip_loop(tls, |m| {
                        let Some(method) = m.method() else {
                            return Vec::new();
                        };
                        match method.as_str() {
                            "ACK" => Vec::new(),
                            "INVITE" => {
                                invites.fetch_add(1, Ordering::Relaxed);
                                vec![
                                    Message::response_to(&m, 486, None, Some("busyproxy")).encode(),
                                ]
                            }
                            _ => vec![Message::response_to(&m, 200, None, None).encode()],
                        }
                    })
                    .await;
                });
            }
        });
    })
    .unwrap();
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    h
}

/// Sends the flood from the gateway's address and collects every final response.
fn flood(ns: &str, from: IpAddr, to: SocketAddr) -> FloodReport {
    tollgate_netlab::in_netns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(hostile::flood(
            from,
            to,
            0,
            FLOOD,
            Duration::from_secs(FLOOD_SECS),
            Duration::from_secs(20),
        ))
        .unwrap()
    })
    .unwrap()
}

fn flood_while_a_call_is_up(datapath: &str) {
    let lab = LabSpec::unique(&format!("fl{}", &datapath[..1]))
        .up_guarded()
        .expect("lab up");
    let spec = lab.spec().clone();
    let dir = Scratch::new(&format!("flood-{datapath}"));
    let a = LabAddrs::from_lab(&spec).with_trunk_limits(TRUNK_CPS, 0);
    let pki = a.pki(&dir.0.join("certs")).expect("certificates");
    let metrics_at = SocketAddr::new(a.relay_int, 9100);
    let cfg_path = dir.0.join("tollgate.toml");
    std::fs::write(
        &cfg_path,
        a.tollgate_config(
            &pki,
            datapath,
            1,
            &dir.0.join("cdr.jsonl"),
            Some(metrics_at),
        ),
    )
    .unwrap();

    // The counting proxy is the next hop (int:5061); the internal endpoint that places the
    // call listens beside it on 5062.
    let proxy_invites = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let proxy_tls =
        UaTls::from_pem(&pki.internal.cert, &pki.internal.key, &pki.ca).expect("proxy TLS");
    let proxy = counting_proxy(
        &spec.int_ns,
        SocketAddr::new(a.int, 5061),
        proxy_tls,
        Arc::clone(&proxy_invites),
        Arc::clone(&stop),
    );
    let mut topo = a.topology(&pki);
    topo.int_sip = SocketAddr::new(a.int, 5062);
    let parties = Parties::start(&topo, Duration::from_millis(100), true).expect("endpoints");

    let ext_sip = SocketAddr::new(a.relay_ext, 5060);
    let mut tg = start_tollgate(&spec, &cfg_path, &dir.0, ext_sip);

    let talk = Duration::from_secs(FLOOD_SECS + 8);
    std::thread::scope(|s| {
        let call = s.spawn(|| {
            parties.run(&Plan {
                direction: Direction::Outbound,
                calls: 1,
                concurrency: 1,
                talk,
                ring: Duration::from_millis(100),
                media: true,
                first_index: 700,
                rate: None,
            })
        });
        // The call is up (and its media flowing) before the flood starts.
        let t = Instant::now();
        while metric(
            &scrape(Some(&spec.relay_ns), metrics_at),
            "tollgate_media_flows",
            &[],
        ) < 1.0
        {
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "the call never came up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(1));
        let rss0 = tg.rss_mib().unwrap();
        let t_flood = Instant::now();
        let r = flood(&spec.gw_ns, a.gw, ext_sip);
        let flood_secs = t_flood.elapsed().as_secs_f64();
        let through = proxy_invites.load(Ordering::Relaxed);
        eprintln!("{datapath}: flood {r:?} over {flood_secs:.1} s; proxy saw {through} INVITEs");
        assert_eq!(r.finals, FLOOD as u64, "every INVITE got a final response");
        assert_eq!(
            r.other, 0,
            "only 503 (not admitted) and 486 (the proxy's answer)"
        );
        assert_eq!(r.s486, through, "every admitted call reached the proxy");
        let allowed = f64::from(TRUNK_CPS) * (1.0 + flood_secs) + 1.0;
        assert!(
            through as f64 <= allowed,
            "the next hop got {through} INVITEs in {flood_secs:.1} s; the trunk allows {allowed:.0}"
        );
        assert!(through >= u64::from(TRUNK_CPS), "the burst went through");
        assert_eq!(r.retry_after, r.s503, "every 503 carries Retry-After");
        let m = scrape(Some(&spec.relay_ns), metrics_at);
        assert_eq!(
            metric(
                &m,
                "tollgate_calls_not_admitted_total",
                &["trunk=\"gw1\"", "reason=\"trunk_rate\""]
            ),
            r.s503 as f64,
            "each refusal counted per trunk and reason"
        );

        let report = call.join().unwrap().expect("call scenario");
        let c = &report.calls[0];
        eprintln!(
            "{datapath}: call {:?} caller {:?} callee {:?}",
            c.error, c.caller, c.callee
        );
        assert!(
            c.ok(),
            "the call kept intact audio both ways through the flood"
        );
        let min = (talk.as_secs_f64() * 50.0 * 0.9) as u64;
        assert!(
            c.caller.received >= min && c.callee.received >= min,
            "no audio lost during the flood ({} / {} packets, {min} expected)",
            c.caller.received,
            c.callee.received
        );

        // Memory comes back: poll for up to 30 s (the allocator returns freed pages lazily).
        let t = Instant::now();
        let mut rss1 = tg.rss_mib().unwrap();
        while rss1 > rss0 * 1.10 && t.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(500));
            rss1 = tg.rss_mib().unwrap();
        }
        eprintln!(
            "{datapath}: RSS {rss0:.1} MiB before the flood, {rss1:.1} MiB after ({:.1} s to settle)",
            t.elapsed().as_secs_f64()
        );
        assert!(
            rss1 <= rss0 * 1.10,
            "RSS {rss1:.1} MiB after the flood, {rss0:.1} MiB before"
        );
    });
    stop.store(true, Ordering::Relaxed);
    assert!(
        tg.stop(Duration::from_secs(15)).is_some(),
        "tollgate drains and exits"
    );
    let _ = proxy.join();
    drop(parties);
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn trunk_flood_socket_path() {
    require_root("trunk_flood_socket_path");
    flood_while_a_call_is_up("socket");
}

#[test]
#[ignore = "lab: needs root (network namespaces, XDP); cargo xtask ci runs it as root"]
fn trunk_flood_xdp_path() {
    require_root("trunk_flood_xdp_path");
    flood_while_a_call_is_up("xdp");
}
