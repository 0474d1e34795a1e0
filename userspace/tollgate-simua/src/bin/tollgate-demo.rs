//! `tollgate-demo`: the main job, end to end. `cargo xtask demo` builds Tollgate and runs this.
//!
//! As root: a lab of three network namespaces (`tgdemo-gw`, `tgdemo-relay`, `tgdemo-int`),
//! Tollgate running in the relay namespace on the XDP data path, N calls from the simulated
//! gateway (SIP/TCP, RTP) to the simulated internal endpoint (SIP/mTLS, SRTP) and N calls the
//! other way, audio checked packet by packet in both directions, calls hung up from alternating
//! sides. Without root: the same on loopback addresses with the socket data path.
//!
//! With `--restart`: N concurrent calls (gateway -> internal endpoint, SRTP inside) are set up
//! with the call-state store on (`[state]`, a local file or, with `--store valkey`, a private
//! Valkey/Redis server), Tollgate is killed with SIGKILL mid-call and started again, and the
//! calls carry on to the end. It prints each call's media gap in both directions, the split of
//! the restart (kill to new process, store load, start to listening, restore and flow
//! install), and PASS or FAIL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tollgate_netlab::{LabSpec, is_root};
use tollgate_simua::labconf::LabAddrs;
use tollgate_simua::process::{Launch, TollgateProcess, metric, scrape, wait_listening};
use tollgate_simua::scenario::{Direction, Parties, Plan, Report};

struct Args {
    tollgate: PathBuf,
    calls: usize,
    talk: Duration,
    out: PathBuf,
    datapath: Option<String>,
    /// `--talk-secs` as given (the restart demo picks its own default).
    talk_given: bool,
    restart: bool,
    store: String,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        tollgate: PathBuf::from("target/release/tollgate"),
        calls: 20,
        talk: Duration::from_secs(4),
        out: PathBuf::from("target/demo"),
        datapath: None,
        talk_given: false,
        restart: false,
        store: "file".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or_else(|| format!("{k} needs a value"));
        match k.as_str() {
            "--tollgate" => a.tollgate = PathBuf::from(v()?),
            "--calls" => a.calls = v()?.parse().map_err(|_| "--calls takes a number")?,
            "--talk-secs" => {
                a.talk =
                    Duration::from_secs(v()?.parse().map_err(|_| "--talk-secs takes a number")?);
                a.talk_given = true;
            }
            "--restart" => a.restart = true,
            "--store" => a.store = v()?,
            "--out" => a.out = PathBuf::from(v()?),
            "--datapath" => a.datapath = Some(v()?),
            "-h" | "--help" => {
                println!(
                    "tollgate-demo [--calls N] [--talk-secs S] [--datapath xdp|socket] [--tollgate PATH] [--out DIR] [--restart [--store file|valkey]]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.calls == 0 {
        return Err("--calls must be at least 1".into());
    }
    if a.store != "file" && a.store != "valkey" {
        return Err("--store is file or valkey".into());
    }
    if !a.restart && a.store != "file" {
        return Err("--store needs --restart".into());
    }
    Ok(a)
}

#[path = "demo/restart.rs"]
mod restart;

fn progress(
    label: &'static str,
    total: usize,
    parties: &Parties,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let done = parties.progress();
    let base = done.load(Ordering::Relaxed);
    let t = std::thread::spawn(move || {
        let start = Instant::now();
        while !s2.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_secs(1));
            let d = done.load(Ordering::Relaxed) - base;
            println!(
                "  [{label}] {:>4.0}s  {d}/{total} calls finished",
                start.elapsed().as_secs_f64()
            );
        }
    });
    (stop, t)
}

fn summarize(label: &str, r: &Report) -> bool {
    let ok = r.ok();
    let (sent, recv, lost) = r.packets();
    let intact: u64 = r
        .calls
        .iter()
        .map(|c| c.caller.intact + c.callee.intact)
        .sum();
    println!(
        "  {label:<9} calls {ok}/{} ok | setup p50 {:.1} ms p99 {:.1} ms | packets sent {sent} received {recv} intact {intact} lost {lost} ({:.2}%)",
        r.calls.len(),
        r.setup_percentile(50.0).unwrap_or(f64::NAN),
        r.setup_percentile(99.0).unwrap_or(f64::NAN),
        if sent > 0 {
            lost as f64 * 100.0 / sent as f64
        } else {
            0.0
        },
    );
    for c in r.calls.iter().filter(|c| !c.ok()) {
        println!(
            "    call {} FAILED: {:?} caller {:?} callee {:?}",
            c.index, c.error, c.caller, c.callee
        );
    }
    ok == r.calls.len()
}

/// The demo's lab: as root the three namespaces `tgdemo-*` (removed when the guard drops),
/// else loopback addresses; its addresses, and the relay's namespace.
fn demo_lab(
    root: bool,
) -> Result<(Option<tollgate_netlab::LabGuard>, LabAddrs, Option<String>), String> {
    if root {
        println!(
            "==> lab: namespaces tgdemo-gw, tgdemo-relay, tgdemo-int (10.201.1.0/24 outside, 10.201.2.0/24 inside)"
        );
        let lab = LabSpec::with_prefix("tgdemo")
            .up_guarded()
            .map_err(|e| format!("lab: {e}"))?;
        let s = lab.spec();
        let addrs = LabAddrs::from_lab(s);
        let relay_ns = Some(s.relay_ns.clone());
        Ok((Some(lab), addrs, relay_ns))
    } else {
        println!(
            "==> not root: running on loopback (127.0.1.x outside, 127.0.2.x inside) with the socket data path;"
        );
        println!("    run as root for the namespace lab and the XDP data path");
        Ok((None, LabAddrs::loopback(), None))
    }
}

fn run(a: &Args) -> Result<bool, String> {
    let root = is_root();
    let _ = std::fs::remove_dir_all(&a.out);
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let out = std::fs::canonicalize(&a.out).map_err(|e| e.to_string())?;
    let tollgate =
        std::fs::canonicalize(&a.tollgate).map_err(|e| format!("{}: {e}", a.tollgate.display()))?;

    let (lab, addrs, relay_ns) = demo_lab(root)?;
    let datapath = a
        .datapath
        .clone()
        .unwrap_or_else(|| if root { "xdp".into() } else { "socket".into() });
    let pki = addrs.pki(&out.join("certs")).map_err(|e| e.to_string())?;
    let metrics_addr = SocketAddr::new(addrs.relay_int, 9100);
    let cfg = addrs.tollgate_config(
        &pki,
        &datapath,
        1,
        &out.join("cdr.jsonl"),
        Some(metrics_addr),
    );
    let cfg_path = out.join("tollgate.toml");
    std::fs::write(&cfg_path, cfg).map_err(|e| e.to_string())?;
    let topo = addrs.topology(&pki);

    println!(
        "==> starting the simulated gateway ({}) and internal endpoint ({}, mTLS)",
        topo.gw_sip, topo.int_sip
    );
    let parties = Parties::start(&topo, Duration::ZERO, true)?;

    println!(
        "==> starting tollgate ({datapath} data path); log in {}",
        out.join("tollgate.log").display()
    );
    let launch = Launch {
        netns: relay_ns.as_deref(),
        ..Launch::default()
    };
    let mut tg = TollgateProcess::spawn(&tollgate, &cfg_path, &out.join("tollgate.log"), &launch)
        .map_err(|e| format!("starting {}: {e}", tollgate.display()))?;
    let ext_sip = SocketAddr::new(addrs.relay_ext, 5060);
    if !wait_listening(addrs.gw_ns.as_deref(), ext_sip, Duration::from_secs(20)) {
        return Err(format!(
            "tollgate did not start listening on {ext_sip}; see {}",
            out.join("tollgate.log").display()
        ));
    }
    std::thread::sleep(Duration::from_millis(300));
    let cpu0 = tg.cpu_secs().unwrap_or(0.0);
    let t0 = Instant::now();

    let concurrency = a.calls.min(50);
    let mut all_ok = true;
    let mut reports = Vec::new();
    for (label, dir, first) in [
        ("inbound", Direction::Inbound, 0),
        ("outbound", Direction::Outbound, 5000),
    ] {
        println!(
            "==> {label}: {} calls ({}), {} s of audio each, hung up from alternating sides",
            a.calls,
            if dir == Direction::Inbound {
                "PSTN gateway -> Tollgate -> internal endpoint"
            } else {
                "internal endpoint -> Tollgate -> PSTN gateway"
            },
            a.talk.as_secs()
        );
        let (stop, t) = progress(label, a.calls, &parties);
        let plan = Plan {
            direction: dir,
            calls: a.calls,
            concurrency,
            talk: a.talk,
            ring: Duration::ZERO,
            media: true,
            first_index: first,
            rate: None,
        };
        let r = parties.run(&plan);
        stop.store(true, Ordering::Relaxed);
        let _ = t.join();
        reports.push((label, r?));
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = tg.cpu_secs().unwrap_or(0.0) - cpu0;
    let rss = tg.rss_mib();
    std::thread::sleep(Duration::from_millis(1200));
    let m = scrape(relay_ns.as_deref(), metrics_addr);

    println!();
    println!("==> summary");
    for (label, r) in &reports {
        all_ok &= summarize(label, r);
    }
    println!(
        "  relay     CPU {cpu:.2} s over {wall:.1} s ({:.1}% of one core), RSS {}",
        cpu * 100.0 / wall.max(0.001),
        rss.map_or("?".into(), |r| format!("{r:.1} MiB"))
    );
    println!(
        "  metrics   calls {} | media packets ext->int {} int->ext {} | drops {} | SRTP auth failures {} | XDP redirects {}",
        metric(&m, "tollgate_calls_total", &[]),
        metric(
            &m,
            "tollgate_media_packets_total",
            &["direction=\"ext_to_int\""]
        ),
        metric(
            &m,
            "tollgate_media_packets_total",
            &["direction=\"int_to_ext\""]
        ),
        metric(&m, "tollgate_media_drops_total", &[]),
        metric(&m, "tollgate_srtp_auth_failures_total", &[]),
        metric(&m, "tollgate_xdp_total", &["counter=\"redirect\""]),
    );
    let active = metric(&m, "tollgate_calls_active", &[]);
    let ports = metric(&m, "tollgate_ports_allocated", &[]);
    println!("  teardown  calls active {active}, relay ports allocated {ports}");
    all_ok &= active == 0.0 && ports == 0.0;
    let cdrs = std::fs::read_to_string(out.join("cdr.jsonl"))
        .map(|s| s.lines().count())
        .unwrap_or(0);
    println!(
        "  CDRs      {cdrs} lines in {}",
        out.join("cdr.jsonl").display()
    );
    all_ok &= cdrs == 2 * a.calls;

    println!("==> stopping tollgate (SIGTERM: drain)");
    match tg.stop(Duration::from_secs(15)) {
        Some(s) if s.success() => println!("  tollgate drained and exited"),
        Some(s) => {
            println!("  tollgate exited with {s}");
            all_ok = false;
        }
        None => {
            println!("  tollgate did not exit in time");
            all_ok = false;
        }
    }
    drop(parties);
    drop(tg);
    if lab.is_some() {
        println!("==> lab removed");
    }
    drop(lab);
    println!();
    println!(
        "{}",
        if all_ok {
            "DEMO PASSED: every call connected and every packet of audio arrived intact"
        } else {
            "DEMO FAILED (see above)"
        }
    );
    Ok(all_ok)
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tollgate-demo: {e}");
            return ExitCode::from(2);
        }
    };
    let result = if a.restart { restart::run(&a) } else { run(&a) };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("tollgate-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
