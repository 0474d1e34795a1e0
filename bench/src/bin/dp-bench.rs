//! `dp-bench`: the data plane benchmarks in the three-namespace lab.
//!
//! * `dataplane`: Tollgate's XDP path, its socket path and rtpengine (userspace forwarding,
//!   driven over ng to bridge RTP/AVP to RTP/SAVP) relay G.711 RTP from `gw` to `int` as SRTP,
//!   one after the other in the same lab, each pinned to the same core, with the same generator
//!   (in `gw`) and sink (in `int`, verifying SRTP) pinned to the other core. Per path: relay CPU
//!   per packet at the real-time paced load (`flows x 50 pps`), the maximum zero-loss rate
//!   (search), and loss and latency at 50% and 90% of it. Kernel IP forwarding of pre-encrypted
//!   SRTP through the relay namespace (no relay) is the latency floor of the lab.
//! * `scale`: the XDP path with 100, 10,000 and 100,000 flows: install time, memory, relay CPU
//!   per packet at a fixed rate and the maximum zero-loss rate.
//!
//! Results go to `<out>/results.json` (merged with what other benches wrote), a Markdown report
//! and SVG plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;
use serde_json::{Value, json};
use tollgate_bench::flows::{Plan, SSRC_BASE, SUITE};
use tollgate_bench::generator::{self, GenFlow, GenReport, GenState};
use tollgate_bench::ng::{self, Bencode, NgClient, dict};
use tollgate_bench::plot::{Series, line_chart};
use tollgate_bench::procstat::{self, CpuSample};
use tollgate_bench::sink::{self, SinkShared, SinkStats};
use tollgate_netlab::{LabGuard, LabSpec, in_netns, run as run_cmd, spawn_in_netns};
use tollgate_srtp::KeyMaterial;

#[derive(Parser, Debug)]
#[command(about = "Data plane benchmarks in the lab (needs root)")]
struct Cli {
    #[command(subcommand)]
    what: What,
    /// Where the reports go.
    #[arg(long, global = true, default_value = "target/bench-report")]
    out: PathBuf,
    /// The relay-bench binary (default: next to this one).
    #[arg(long, global = true)]
    relay_bin: Option<PathBuf>,
    /// CPU of the relay under test.
    #[arg(long, global = true, default_value_t = 1)]
    relay_cpu: usize,
    /// CPU of the generator and the sink.
    #[arg(long, global = true, default_value_t = 0)]
    load_cpu: usize,
    /// Tollgate's XDP interrupt moderation window, µs (0: wake per frame).
    #[arg(long, global = true, default_value_t = tollgate_dataplane::DEFAULT_COALESCE_US)]
    coalesce_us: u32,
    /// Seconds per search trial.
    #[arg(long, global = true, default_value_t = 2.0)]
    trial_secs: f64,
    /// Seconds per latency trial (50%, 90%, paced).
    #[arg(long, global = true, default_value_t = 4.0)]
    latency_secs: f64,
}

#[derive(Subcommand, Debug)]
enum What {
    /// XDP path vs socket path vs rtpengine.
    Dataplane {
        /// Concurrent flows (one G.711 stream each, gateway to internal).
        #[arg(long, default_value_t = 500)]
        flows: usize,
        /// Paths to measure, in order.
        #[arg(long, value_delimiter = ',', default_value = "xdp,socket,rtpengine")]
        paths: Vec<String>,
        /// Record a CPU profile of the XDP worker (perf) at 90% of its max rate.
        #[arg(long)]
        profile: bool,
    },
    /// XDP path with 100, 10,000 and 100,000 flows.
    Scale {
        /// Flow counts.
        #[arg(long, value_delimiter = ',', default_value = "100,10000,100000")]
        flows: Vec<usize>,
        /// Offered rate of the fixed-rate trial, packets/s.
        #[arg(long, default_value_t = 100_000.0)]
        rate: f64,
    },
}

const NG_PORT: u16 = 2223;
/// Real-time priority (SCHED_FIFO) of the relay under test. The VM is shared with other
/// tenants' builds and fuzzers; at normal priority (even nice -20) a relay got about half of
/// its core. Every relay, the generator and the sink run under SCHED_FIFO alike (the kernel's
/// RT throttling still leaves 5% of each core to everything else).
const RELAY_RT_PRIO: &str = "50";
/// SCHED_FIFO priority of the generator thread.
const GEN_RT_PRIO: i32 = 40;
/// SCHED_FIFO priority of the sink thread (above the generator, so it drains while the
/// generator is busy).
const SINK_RT_PRIO: i32 = 45;

/// One measured trial.
#[derive(Debug, Clone, Serialize)]
struct TrialResult {
    label: String,
    offered_pps: f64,
    secs: f64,
    sent: u64,
    delivered: u64,
    lost: u64,
    loss_pct: f64,
    auth_fail: u64,
    bad_payload: u64,
    stale: u64,
    reordered: u64,
    /// Relay process CPU (scheduler run time, all threads) per delivered packet, ns.
    relay_ns_per_pkt: f64,
    /// Relay CPU / wall.
    relay_busy: f64,
    relay_user_pct: f64,
    relay_sys_pct: f64,
    gen_busy: f64,
    sink_busy: f64,
    /// ksoftirqd run time / wall (softirq work that left the threads raising it).
    ksoftirqd_busy: f64,
    gen_kept_up: bool,
    gen_max_lag_us: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    ok: bool,
    /// Generator + sink CPU on the load core over wall: near 1 means the load core, not the
    /// relay, set the limit.
    load_core_busy: f64,
    /// Tollgate only: the worker's wall time in loop iterations that had packets, per packet
    /// received (its work without idle polling), ns.
    worker_busy_ns_per_pkt: f64,
    relay_stats: Option<Value>,
}

impl TrialResult {
    fn load_bound(&self) -> bool {
        !self.gen_kept_up || self.load_core_busy > 0.9
    }
}

/// How one data path did.
#[derive(Debug, Clone, Serialize)]
struct PathResult {
    name: String,
    flows: usize,
    paced: Option<TrialResult>,
    search: Vec<TrialResult>,
    max_zero_loss_pps: f64,
    /// Whether the load core (generator + sink), not the relay, limited the search.
    max_load_bound: bool,
    at50: Option<TrialResult>,
    at90: Option<TrialResult>,
    ready: Value,
    profile: Option<String>,
}

/// The lab with the benchmark's extras (static neighbours, RPS to the sink's core).
struct Lab {
    guard: LabGuard,
    ext_mac: [u8; 6],
    gw_mac: [u8; 6],
    int_mac: [u8; 6],
    peer_mac: [u8; 6],
}

fn mac_of(ns: &str, ifname: &str) -> anyhow::Result<[u8; 6]> {
    let out = run_cmd("ip", &["-n", ns, "-o", "link", "show", "dev", ifname])?;
    let word = out
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .context("no link/ether")?;
    let mut m = [0u8; 6];
    for (i, p) in word.split(':').enumerate().take(6) {
        m[i] = u8::from_str_radix(p, 16)?;
    }
    Ok(m)
}

fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn cpu_mask(cpu: usize) -> String {
    format!("{:x}", 1u64 << cpu)
}

/// RPS steering of a device that is undone when dropped.
struct Rps {
    ns: String,
    dev: String,
}

impl Rps {
    fn steer(ns: &str, dev: &str, cpu: usize) -> anyhow::Result<Rps> {
        set_rps(ns, dev, Some(cpu))?;
        Ok(Rps {
            ns: ns.to_owned(),
            dev: dev.to_owned(),
        })
    }
}

impl Drop for Rps {
    fn drop(&mut self) {
        if let Err(e) = set_rps(&self.ns, &self.dev, None) {
            eprintln!("undoing RPS on {}: {e:#}", self.dev);
        }
    }
}

/// Steers `dev`'s receive processing (RPS, queue rx-0) to `cpu`, or back to the receiving CPU.
fn set_rps(ns: &str, dev: &str, cpu: Option<usize>) -> anyhow::Result<()> {
    run_cmd(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "sh",
            "-c",
            &format!(
                "echo {} > /sys/class/net/{dev}/queues/rx-0/rps_cpus",
                cpu.map_or_else(|| "0".to_owned(), cpu_mask)
            ),
        ],
    )?;
    Ok(())
}

impl Lab {
    fn up(plan: &Plan, load_cpu: usize) -> anyhow::Result<Lab> {
        let guard = LabSpec::with_prefix("tgb").up_guarded()?;
        // One queue on every veth end (the relay runs one worker): native XDP on veth needs the
        // receiving end to have at least as many rx queues as its peer has tx queues.
        guard.set_channels(1)?;
        let l = guard.spec().clone();
        let [ext_extra, int_extra] = plan.extra_ips();
        for ip in ext_extra {
            run_cmd(
                "ip",
                &[
                    "-n",
                    &l.relay_ns,
                    "addr",
                    "add",
                    &format!("{ip}/24"),
                    "dev",
                    &l.ext_if,
                ],
            )?;
        }
        for ip in int_extra {
            run_cmd(
                "ip",
                &[
                    "-n",
                    &l.relay_ns,
                    "addr",
                    "add",
                    &format!("{ip}/24"),
                    "dev",
                    &l.int_if,
                ],
            )?;
        }
        let lab = Lab {
            ext_mac: mac_of(&l.relay_ns, &l.ext_if)?,
            int_mac: mac_of(&l.relay_ns, &l.int_if)?,
            gw_mac: mac_of(&l.gw_ns, &l.gw_if)?,
            peer_mac: mac_of(&l.int_ns, &l.int_peer_if)?,
            guard,
        };
        // Permanent neighbours: no ARP during trials.
        let nb = |ns: &str, ip: &str, mac: &[u8; 6], dev: &str| {
            run_cmd(
                "ip",
                &[
                    "-n",
                    ns,
                    "neigh",
                    "replace",
                    ip,
                    "lladdr",
                    &fmt_mac(mac),
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ],
            )
        };
        nb(&l.relay_ns, "10.201.1.2", &lab.gw_mac, &l.ext_if)?;
        nb(&l.relay_ns, "10.201.2.2", &lab.peer_mac, &l.int_if)?;
        for ip in &plan.ext_ips {
            nb(&l.gw_ns, &ip.to_string(), &lab.ext_mac, &l.gw_if)?;
        }
        for ip in &plan.int_ips {
            nb(&l.int_ns, &ip.to_string(), &lab.int_mac, &l.int_peer_if)?;
        }
        // veth delivers a frame to its peer on the sending CPU; RPS moves the sink's receive
        // processing to the load core so the relay's core is not charged with it.
        set_rps(&l.int_ns, &l.int_peer_if, Some(load_cpu))?;
        // The baseline (kernel forwarding) needs forwarding in relay and a route back in int.
        run_cmd(
            "ip",
            &[
                "netns",
                "exec",
                &l.relay_ns,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
        )?;
        run_cmd(
            "ip",
            &[
                "-n",
                &l.int_ns,
                "route",
                "add",
                "10.201.1.0/24",
                "via",
                "10.201.2.1",
            ],
        )?;
        Ok(lab)
    }

    fn spec(&self) -> &LabSpec {
        self.guard.spec()
    }
}

/// The relay under test.
enum Relay {
    Tollgate {
        child: Child,
        stdin: ChildStdin,
        lines: mpsc::Receiver<String>,
    },
    Rtpengine {
        child: Child,
    },
}

impl Relay {
    fn pid(&self) -> u32 {
        match self {
            Relay::Tollgate { child, .. } | Relay::Rtpengine { child } => child.id(),
        }
    }

    fn stats(&mut self) -> Option<Value> {
        let Relay::Tollgate { stdin, lines, .. } = self else {
            return None;
        };
        writeln!(stdin, "stats").ok()?;
        stdin.flush().ok()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(l) = lines.recv_timeout(Duration::from_millis(200))
                && let Some(j) = l.strip_prefix("STATS ")
            {
                return serde_json::from_str(j).ok();
            }
        }
        None
    }

    /// Stops the relay: asks politely, then kills it by PID.
    fn stop(self) {
        let mut child = match self {
            Relay::Tollgate {
                child, mut stdin, ..
            } => {
                let _ = writeln!(stdin, "quit");
                drop(stdin);
                child
            }
            Relay::Rtpengine { child } => {
                // SAFETY: signalling the PID of our own child.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                child
            }
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn start_tollgate(
    lab: &Lab,
    bin: &Path,
    path: &str,
    flows: usize,
    cpu: usize,
    coalesce_us: u32,
) -> anyhow::Result<(Relay, Value)> {
    let l = lab.spec();
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &l.relay_ns,
            "chrt",
            "-f",
            RELAY_RT_PRIO,
            "taskset",
            "-c",
        ])
        .arg(cpu.to_string())
        .arg(bin)
        .args(["--path", path, "--flows", &flows.to_string()])
        .args([
            "--cpu",
            &cpu.to_string(),
            "--ext-if",
            &l.ext_if,
            "--int-if",
            &l.int_if,
            "--coalesce-us",
            &coalesce_us.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdin = child.stdin.take().context("relay stdin")?;
    let stdout = child.stdout.take().context("relay stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut relay = Relay::Tollgate {
        child,
        stdin,
        lines: rx,
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let Relay::Tollgate { lines, child, .. } = &mut relay else {
            unreachable!()
        };
        match lines.recv_timeout(Duration::from_millis(500)) {
            Ok(l) => {
                if let Some(j) = l.strip_prefix("READY ") {
                    let v: Value = serde_json::from_str(j)?;
                    return Ok((relay, v));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(st)) = child.try_wait() {
                    bail!("relay-bench exited before READY: {st}");
                }
                if Instant::now() > deadline {
                    relay.stop();
                    bail!("relay-bench not READY in 600 s");
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                relay.stop();
                bail!("relay-bench closed its output before READY");
            }
        }
    }
}

/// Starts rtpengine in the relay namespace and sets up one call per flow over ng; returns the
/// relay, the generator's flows (to rtpengine's gateway-side ports) and the sink's keys
/// (rtpengine's own SDES keys toward the internal side).
fn start_rtpengine(
    lab: &Lab,
    plan: &Plan,
    cpu: usize,
    log: &Path,
) -> anyhow::Result<(Relay, Vec<GenFlow>, Vec<KeyMaterial>, Value)> {
    let l = lab.spec().clone();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &l.relay_ns,
            "chrt",
            "-f",
            RELAY_RT_PRIO,
            "taskset",
            "-c",
        ])
        .arg(cpu.to_string())
        .args([
            "rtpengine",
            "--config-file=none",
            "--foreground",
            "--log-stderr",
            "--log-level=3",
            "--table=-1",
            "--interface=ext/10.201.1.1",
            "--interface=int/10.201.2.1",
            &format!("--listen-ng=127.0.0.1:{NG_PORT}"),
            "--num-threads=1",
            "--port-min=20000",
            "--port-max=60000",
            "--timeout=3600",
            "--silent-timeout=3600",
            "--delete-delay=0",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting rtpengine (cargo xtask setup --bench installs rtpengine-daemon)")?;
    let relay = Relay::Rtpengine { child };
    let setup = (|| -> anyhow::Result<(Vec<GenFlow>, Vec<KeyMaterial>, f64)> {
        let flows = plan.all();
        let t0 = Instant::now();
        let r = in_netns(&l.relay_ns, move || -> anyhow::Result<_> {
            let server: SocketAddr = format!("127.0.0.1:{NG_PORT}").parse()?;
            let mut ng = NgClient::connect(server)?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while ng.ping().is_err() {
                if Instant::now() > deadline {
                    bail!("rtpengine does not answer ng pings");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let t0 = Instant::now();
            let mut gen_flows = Vec::new();
            let mut keys = Vec::new();
            for f in &flows {
                let call = format!("tgbench-{}", f.index);
                let offer = dict(vec![
                    ("command", Bencode::s("offer")),
                    ("call-id", Bencode::s(&call)),
                    ("from-tag", Bencode::s("gw")),
                    (
                        "sdp",
                        Bencode::s(&ng::sdp_avp(&f.gw.ip().to_string(), f.gw.port(), "gw")),
                    ),
                    ("direction", Bencode::strs(&["ext", "int"])),
                    ("transport-protocol", Bencode::s("RTP/SAVP")),
                    ("ICE", Bencode::s("remove")),
                    ("replace", Bencode::strs(&["origin", "session-connection"])),
                ]);
                let o = ng.call(&offer)?;
                let osdp = ng::parse_sdp(&o.get_str("sdp").context("offer: no sdp")?)
                    .context("offer: unreadable sdp")?;
                let (tag, _, key) = osdp
                    .crypto
                    .iter()
                    .find(|(_, s, _)| s == SUITE.sdes_name())
                    .cloned()
                    .context("rtpengine offered no AES_CM_128_HMAC_SHA1_80")?;
                let km = KeyMaterial::from_sdes(SUITE, &key)
                    .map_err(|e| anyhow::anyhow!("rtpengine key: {e}"))?;
                let ours = Plan::key(f.index, 1).to_sdes();
                let answer = dict(vec![
                    ("command", Bencode::s("answer")),
                    ("call-id", Bencode::s(&call)),
                    ("from-tag", Bencode::s("gw")),
                    ("to-tag", Bencode::s("int")),
                    (
                        "sdp",
                        Bencode::s(&ng::sdp_savp(
                            &f.sink.ip().to_string(),
                            f.sink.port(),
                            "int",
                            tag,
                            SUITE.sdes_name(),
                            &ours,
                        )),
                    ),
                    ("direction", Bencode::strs(&["ext", "int"])),
                    ("replace", Bencode::strs(&["origin", "session-connection"])),
                ]);
                let a = ng.call(&answer)?;
                let asdp = ng::parse_sdp(&a.get_str("sdp").context("answer: no sdp")?)
                    .context("answer: unreadable sdp")?;
                let dst = SocketAddrV4::new(asdp.ip.parse()?, asdp.port);
                gen_flows.push(GenFlow {
                    src: f.gw,
                    dst,
                    ssrc: f.ssrc,
                });
                keys.push(km);
            }
            Ok((gen_flows, keys, t0.elapsed().as_secs_f64()))
        })??;
        let _ = t0;
        Ok(r)
    })();
    match setup {
        Ok((g, k, secs)) => {
            let ready = json!({"pid": relay.pid(), "flows": g.len(), "setup_secs": secs});
            Ok((relay, g, k, ready))
        }
        Err(e) => {
            relay.stop();
            Err(e)
        }
    }
}

/// A sink thread in `int` for one path.
struct SinkRun {
    shared: Arc<SinkShared>,
    handle: Option<JoinHandle<Result<anyhow::Result<()>, tollgate_netlab::LabError>>>,
}

impl SinkRun {
    fn start(
        lab: &Lab,
        plan: &Plan,
        keys: Vec<KeyMaterial>,
        cpu: usize,
    ) -> anyhow::Result<SinkRun> {
        let shared = SinkShared::new(true);
        let ready = Arc::new(AtomicBool::new(false));
        let (s2, r2, bind) = (Arc::clone(&shared), Arc::clone(&ready), plan.sink);
        let handle = spawn_in_netns(&lab.spec().int_ns, move || {
            pin(cpu, SINK_RT_PRIO);
            sink::run(bind, &keys, SSRC_BASE, &s2, &r2)
        })?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.load(Ordering::SeqCst) {
            if handle.is_finished() {
                let r = handle.join();
                bail!("sink stopped: {r:?}");
            }
            if Instant::now() > deadline {
                bail!("sink not ready in 60 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(SinkRun {
            shared,
            handle: Some(handle),
        })
    }

    fn stop(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for SinkRun {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

fn pin(cpu: usize, rt_prio: i32) {
    // SAFETY: zeroed cpu_set_t filled by CPU_SET; 0 = this thread; valid sched_param.
    unsafe {
        let p = libc::sched_param {
            sched_priority: rt_prio,
        };
        libc::sched_setscheduler(0, libc::SCHED_FIFO, &p);
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Starts a relay afresh with its sink and generator state.
type Restart<'a> = Box<dyn FnMut() -> anyhow::Result<(Relay, SinkRun, GenState)> + 'a>;

/// Everything one path's trials share. Dropping it stops the sink and the relay.
struct Bench<'a> {
    lab: &'a Lab,
    load_cpu: usize,
    relay: Option<Relay>,
    sink: Option<SinkRun>,
    gen_state: Option<GenState>,
    trial_id: u32,
    all: &'a mut Vec<(String, TrialResult)>,
    path: String,
    /// rtpengine stops relaying a stream for good after its receive queue overflowed a few
    /// times; such a relay is restarted (fresh calls, keys and sink) after a lossy trial.
    restart: Option<Restart<'a>>,
}

impl Drop for Bench<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.sink.take() {
            s.stop();
        }
        if let Some(r) = self.relay.take() {
            r.stop();
        }
    }
}

impl Bench<'_> {
    fn reset(&mut self) -> anyhow::Result<()> {
        let Some(restart) = self.restart.as_mut() else {
            return Ok(());
        };
        if let Some(s) = self.sink.take() {
            s.stop();
        }
        if let Some(r) = self.relay.take() {
            r.stop();
        }
        println!(
            "    {}: restarting the relay after a lossy trial",
            self.path
        );
        let (r, s, g) = restart()?;
        self.relay = Some(r);
        self.sink = Some(s);
        self.gen_state = Some(g);
        Ok(())
    }

    fn trial(&mut self, label: &str, rate: f64, secs: f64) -> anyhow::Result<TrialResult> {
        self.trial_id += 1;
        let id = self.trial_id;
        let sink = self.sink.as_ref().context("no sink")?;
        sink.shared.begin(id);
        let sink_shared = Arc::clone(&sink.shared);
        let me = std::process::id();
        let sink_tid = sink_shared.tid.load(Ordering::SeqCst);
        let relay_pid = self.relay.as_ref().map(|r| r.pid());
        let stats_a = self.relay.as_mut().and_then(|r| r.stats());
        let cpu_a = relay_pid
            .and_then(procstat::process_cpu)
            .unwrap_or_default();
        let sink_a = procstat::thread_run_ns(me, sink_tid).unwrap_or(0);
        let ksoft_a = procstat::ksoftirqd_ns();
        let st = self.gen_state.take().context("generator state lost")?;
        let iface = self.lab.spec().gw_if.clone();
        let cpu = self.load_cpu;
        let t = generator::Trial {
            rate,
            duration_ns: (secs * 1e9) as u64,
            trial_id: id,
        };
        let wall0 = Instant::now();
        let h = spawn_in_netns(&self.lab.spec().gw_ns, move || {
            pin(cpu, GEN_RT_PRIO);
            let stop = AtomicBool::new(false);
            generator::run(&iface, st, t, &stop)
        })?;
        let joined = h
            .join()
            .map_err(|_| anyhow::anyhow!("generator panicked"))?;
        let (st, g): (GenState, GenReport) = joined??;
        self.gen_state = Some(st);
        // Let the last packets through.
        std::thread::sleep(Duration::from_millis(300));
        let wall = wall0.elapsed().as_secs_f64();
        let cpu_b = relay_pid
            .and_then(procstat::process_cpu)
            .unwrap_or_default();
        let sink_b = procstat::thread_run_ns(me, sink_tid).unwrap_or(0);
        let ksoft_b = procstat::ksoftirqd_ns();
        let s: SinkStats = sink_shared.take();
        let relay_stats = self.relay.as_mut().and_then(|r| r.stats());
        let d: CpuSample = cpu_b.since(&cpu_a);
        let lost = g.sent.saturating_sub(s.ok);
        let us = |q: f64| s.latency.quantile(q) as f64 / 1000.0;
        let gen_wall = g.wall_ns.max(1) as f64;
        let sink_busy = (sink_b.saturating_sub(sink_a)) as f64 / (wall * 1e9);
        let r = TrialResult {
            label: label.to_owned(),
            offered_pps: rate,
            secs,
            sent: g.sent,
            delivered: s.ok,
            lost,
            loss_pct: if g.sent > 0 {
                100.0 * lost as f64 / g.sent as f64
            } else {
                0.0
            },
            auth_fail: s.auth_fail,
            bad_payload: s.bad_payload,
            stale: s.stale,
            reordered: s.reordered,
            relay_ns_per_pkt: if s.ok > 0 && relay_pid.is_some() {
                d.run_ns as f64 / s.ok as f64
            } else {
                f64::NAN
            },
            relay_busy: d.run_ns as f64 / (wall * 1e9),
            relay_user_pct: 100.0 * d.user_ns as f64 / (wall * 1e9),
            relay_sys_pct: 100.0 * d.sys_ns as f64 / (wall * 1e9),
            gen_busy: g.busy(),
            sink_busy,
            ksoftirqd_busy: ksoft_b.saturating_sub(ksoft_a) as f64 / (wall * 1e9),
            gen_kept_up: g.kept_up,
            gen_max_lag_us: g.max_lag_ns as f64 / 1000.0,
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: s.latency.max() as f64 / 1000.0,
            ok: lost == 0 && s.auth_fail == 0 && s.bad_payload == 0 && g.kept_up && g.sent > 0,
            load_core_busy: (g.cpu_ns as f64 + (sink_b.saturating_sub(sink_a)) as f64) / gen_wall,
            worker_busy_ns_per_pkt: worker_busy(stats_a.as_ref(), relay_stats.as_ref()),
            relay_stats,
        };
        println!(
            "    {:<9} {:<8} {:>9.0} pps  sent {:>9}  lost {:>7} ({:>6.3}%)  relay {:>6.0} ns/pkt ({:>5.1}% cpu)  gen {:>4.0}%  sink {:>4.0}%  p50 {:>7.1} p99 {:>8.1} p99.9 {:>8.1} us{}",
            self.path,
            label,
            rate,
            r.sent,
            r.lost,
            r.loss_pct,
            r.relay_ns_per_pkt,
            100.0 * r.relay_busy,
            100.0 * r.gen_busy,
            100.0 * r.sink_busy,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            if r.gen_kept_up {
                ""
            } else {
                "  [generator fell behind]"
            }
        );
        self.all.push((self.path.clone(), r.clone()));
        if !r.ok {
            self.reset()?;
        }
        Ok(r)
    }

    /// A trial that is retried once if it lost packets (the host is shared and noisy).
    fn trial_retry(&mut self, label: &str, rate: f64, secs: f64) -> anyhow::Result<TrialResult> {
        let r = self.trial(label, rate, secs)?;
        if r.ok {
            return Ok(r);
        }
        self.trial(&format!("{label}-retry"), rate, secs)
    }

    /// Highest zero-loss rate: doubling from `start`, then bisection (geometric) to 5%.
    fn search(
        &mut self,
        start: f64,
        cap: f64,
        secs: f64,
    ) -> anyhow::Result<(f64, bool, Vec<TrialResult>)> {
        let mut trials = Vec::new();
        let mut good: Option<f64> = None;
        let mut bad: Option<f64> = None;
        let mut load_bound = false;
        let mut rate = start;
        // Up.
        loop {
            let r = self.trial_retry("search", rate, secs)?;
            let ok = r.ok;
            if !r.gen_kept_up {
                load_bound = true;
            }
            trials.push(r);
            if ok {
                good = Some(rate);
                if rate >= cap {
                    break;
                }
                rate = (rate * 2.0).min(cap);
            } else {
                bad = Some(rate);
                break;
            }
        }
        if good.is_none() {
            // Down until something passes.
            let mut r = start / 2.0;
            while r >= 1000.0 {
                let t = self.trial_retry("search", r, secs)?;
                let ok = t.ok;
                trials.push(t);
                if ok {
                    good = Some(r);
                    break;
                }
                bad = Some(r);
                r /= 2.0;
            }
        }
        let Some(mut lo) = good else {
            return Ok((0.0, load_bound, trials));
        };
        if let Some(mut hi) = bad {
            for _ in 0..6 {
                if hi / lo <= 1.05 {
                    break;
                }
                let mid = (lo * hi).sqrt();
                let t = self.trial_retry("search", mid, secs)?;
                let ok = t.ok;
                let lb = !t.gen_kept_up;
                trials.push(t);
                if ok {
                    lo = mid;
                } else {
                    hi = mid;
                    if lb {
                        load_bound = true;
                    }
                }
            }
        }
        // Whether the load core was saturated around the limit.
        if let Some(t) = trials
            .iter()
            .filter(|t| !t.ok)
            .min_by(|a, b| a.offered_pps.total_cmp(&b.offered_pps))
            && t.load_bound()
        {
            load_bound = true;
        }
        Ok((lo, load_bound, trials))
    }
}

/// Worker busy ns per received packet between two `STATS` replies.
fn worker_busy(a: Option<&Value>, b: Option<&Value>) -> f64 {
    let sum = |v: &Value, k: &str| -> f64 {
        v["workers"].as_array().map_or(0.0, |w| {
            w.iter().map(|x| x[k].as_f64().unwrap_or(0.0)).sum()
        })
    };
    match (a, b) {
        (Some(a), Some(b)) => {
            let rx = sum(b, "rx") - sum(a, "rx");
            if rx > 0.0 {
                (sum(b, "busy_ns") - sum(a, "busy_ns")) / rx
            } else {
                f64::NAN
            }
        }
        _ => f64::NAN,
    }
}

fn host_facts() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rtpe = Command::new("rtpengine")
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
                + String::from_utf8_lossy(&o.stderr).trim()
        })
        .unwrap_or_default();
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!({
        "cpu": cpu, "cpus": cpus, "kernel": kernel.trim(), "rtpengine": rtpe,
        "loadavg_at_start": load.trim(),
        "date_unix": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    })
}

fn relay_bin(cli: &Cli) -> anyhow::Result<PathBuf> {
    if let Some(p) = &cli.relay_bin {
        return Ok(p.clone());
    }
    let me = std::env::current_exe()?;
    Ok(me.with_file_name("relay-bench"))
}

fn tollgate_flows(plan: &Plan) -> (Vec<GenFlow>, Vec<KeyMaterial>) {
    plan.all()
        .iter()
        .map(|f| {
            (
                GenFlow {
                    src: f.gw,
                    dst: f.ext_local,
                    ssrc: f.ssrc,
                },
                Plan::key(f.index, 0),
            )
        })
        .unzip()
}

/// Runs one path: start the relay, paced trial, search, 50% and 90% trials, stop.
#[allow(clippy::too_many_arguments)] // reason: one call site, the benchmark's knobs.
fn run_path(
    cli: &Cli,
    lab: &Lab,
    plan: &Plan,
    name: &str,
    all: &mut Vec<(String, TrialResult)>,
    trial_id: &mut u32,
    profile: bool,
) -> anyhow::Result<PathResult> {
    println!(
        "==> [bench dataplane] {name}: starting the relay with {} flows",
        plan.flows
    );
    let rtpe_log = cli.out.join("rtpengine.log");
    let (relay, gen_flows, keys, ready) = match name {
        "xdp" | "socket" => {
            let (r, v) = start_tollgate(
                lab,
                &relay_bin(cli)?,
                name,
                plan.flows,
                cli.relay_cpu,
                cli.coalesce_us,
            )?;
            let (g, k) = tollgate_flows(plan);
            (r, g, k, v)
        }
        "rtpengine" => {
            let (r, g, k, v) = start_rtpengine(lab, plan, cli.relay_cpu, &rtpe_log)?;
            (r, g, k, v)
        }
        other => bail!("unknown path {other}"),
    };
    println!("    ready: {ready}");
    let sink = match SinkRun::start(lab, plan, keys, cli.load_cpu) {
        Ok(s) => s,
        Err(e) => {
            relay.stop();
            return Err(e);
        }
    };
    let st = GenState::new(gen_flows, lab.gw_mac, lab.ext_mac, None)?;
    let (relay_cpu, load_cpu) = (cli.relay_cpu, cli.load_cpu);
    let restart: Option<Restart<'_>> = (name == "rtpengine").then(|| {
        Box::new(move || {
            let (r, g, k, _) = start_rtpengine(lab, plan, relay_cpu, &rtpe_log)?;
            let s = SinkRun::start(lab, plan, k, load_cpu)?;
            let st = GenState::new(g, lab.gw_mac, lab.ext_mac, None)?;
            Ok((r, s, st))
        }) as Restart<'_>
    });
    let mut b = Bench {
        lab,
        load_cpu: cli.load_cpu,
        relay: Some(relay),
        sink: Some(sink),
        gen_state: Some(st),
        trial_id: *trial_id,
        all,
        path: name.to_owned(),
        restart,
    };
    b.trial("warmup", (plan.flows as f64 * 50.0).min(20_000.0), 1.0)?;
    let paced = b.trial("paced", plan.flows as f64 * 50.0, cli.latency_secs)?;
    let (max, load_bound, search) = b.search(25_000.0, 4_000_000.0, cli.trial_secs)?;
    println!(
        "    {name}: max zero-loss {max:.0} pps{}",
        if load_bound {
            " (load core saturated: the relay may do more)"
        } else {
            ""
        }
    );
    let at50 = if max > 0.0 {
        Some(b.trial("50%", max * 0.5, cli.latency_secs)?)
    } else {
        None
    };
    let mut prof = None;
    let at90 = if max > 0.0 {
        if profile && name == "xdp" {
            prof = Some(perf_profile(&mut b, max * 0.9, cli)?);
        }
        Some(b.trial("90%", max * 0.9, cli.latency_secs)?)
    } else {
        None
    };
    *trial_id = b.trial_id;
    drop(b);
    Ok(PathResult {
        name: name.to_owned(),
        flows: plan.flows,
        paced: Some(paced),
        search,
        max_zero_loss_pps: max,
        max_load_bound: load_bound,
        at50,
        at90,
        ready,
        profile: prof,
    })
}

/// Records the XDP worker with perf while a trial runs; returns perf report's top lines.
fn perf_profile(b: &mut Bench<'_>, rate: f64, cli: &Cli) -> anyhow::Result<String> {
    let pid = b.relay.as_ref().map(|r| r.pid()).context("no relay")?;
    let data = cli.out.join("perf-xdp.data");
    let _ = std::fs::create_dir_all(&cli.out);
    let secs = cli.latency_secs.max(3.0);
    let mut perf = Command::new("perf")
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "4999",
            "-g",
            "-p",
            &pid.to_string(),
            "-o",
        ])
        .arg(&data)
        .args(["--", "sleep", &format!("{}", secs + 1.0)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("perf (cargo xtask setup --bench installs linux-perf)")?;
    std::thread::sleep(Duration::from_millis(300));
    let _ = b.trial("profiled", rate, secs)?;
    let _ = perf.wait();
    let out = Command::new("perf")
        .args([
            "report",
            "--no-children",
            "--stdio",
            "--sort",
            "sym",
            "-g",
            "none",
            "--percent-limit",
            "0.7",
            "-i",
        ])
        .arg(&data)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let dso = Command::new("perf")
        .args([
            "report",
            "--no-children",
            "--stdio",
            "--sort",
            "dso",
            "-g",
            "none",
            "-i",
        ])
        .arg(&data)
        .output()?;
    let text = format!(
        "{}\n--- by DSO ---\n{}",
        text,
        String::from_utf8_lossy(&dso.stdout)
    );
    std::fs::write(cli.out.join("perf-xdp.txt"), &text)?;
    Ok(text)
}

/// The baseline's trials at the given rates, and the lab's zero-loss limit (max pps, whether
/// the load core bounded it) when searched.
type BaselineOut = (Vec<TrialResult>, Option<(f64, bool)>);

/// Kernel IP forwarding of SRTP the generator protected itself: the lab's latency floor, at
/// the given rates, and (with `search`) the lab's own zero-loss limit without any relay.
fn baseline(
    cli: &Cli,
    lab: &Lab,
    plan: &Plan,
    rates: &[(String, f64)],
    search: bool,
    all: &mut Vec<(String, TrialResult)>,
    trial_id: &mut u32,
) -> anyhow::Result<BaselineOut> {
    println!(
        "==> [bench dataplane] baseline: kernel IP forwarding in the relay namespace (no relay)"
    );
    let (_, keys) = tollgate_flows(plan);
    let gen_flows: Vec<GenFlow> = plan
        .all()
        .iter()
        .map(|f| GenFlow {
            src: f.gw,
            dst: f.sink,
            ssrc: f.ssrc,
        })
        .collect();
    // Without a relay, veth would run the forwarding on the generator's CPU (a frame is
    // delivered on the sending CPU): RPS puts it on the relay's CPU, where a relay would do its
    // work, so the load core stays as free as in the relayed runs. Undone after the baseline
    // (the relayed paths' ingress stays as it was measured).
    let spec = lab.guard.spec();
    let _rps = Rps::steer(&spec.relay_ns, &spec.ext_if, cli.relay_cpu)?;
    let sink = SinkRun::start(lab, plan, keys.clone(), cli.load_cpu)?;
    let st = GenState::new(gen_flows, lab.gw_mac, lab.ext_mac, Some(keys))?;
    let mut b = Bench {
        lab,
        load_cpu: cli.load_cpu,
        relay: None,
        sink: Some(sink),
        gen_state: Some(st),
        trial_id: *trial_id,
        all,
        path: "kernel".into(),
        restart: None,
    };
    let mut out = Vec::new();
    b.trial("warmup", 10_000.0, 1.0)?;
    for (label, rate) in rates {
        out.push(b.trial(label, *rate, cli.latency_secs)?);
    }
    let mut lim = None;
    if search {
        let (max, lb, _) = b.search(25_000.0, 4_000_000.0, cli.trial_secs)?;
        println!("    kernel forwarding (lab limit without a relay): max zero-loss {max:.0} pps");
        lim = Some((max, lb));
    }
    *trial_id = b.trial_id;
    drop(b);
    Ok((out, lim))
}

fn merge_results(out: &Path, key: &str, v: Value) -> anyhow::Result<()> {
    let p = out.join("results.json");
    let mut root: BTreeMap<String, Value> = std::fs::read_to_string(&p)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    root.insert(key.to_owned(), v);
    std::fs::create_dir_all(out)?;
    std::fs::write(&p, serde_json::to_string_pretty(&root)?)?;
    Ok(())
}

fn f0(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0}")
    } else {
        "n/a".into()
    }
}
fn f1(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "n/a".into()
    }
}
fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 && a > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "n/a".into()
    }
}

fn dataplane(cli: &Cli, flows: usize, paths: &[String], profile: bool) -> anyhow::Result<()> {
    let plan = Plan::lab(flows);
    println!(
        "==> [bench dataplane] lab up (tgb-gw, tgb-relay, tgb-int); relay on CPU {}, generator and sink on CPU {}",
        cli.relay_cpu, cli.load_cpu
    );
    let lab = Lab::up(&plan, cli.load_cpu)?;
    let host = host_facts();
    let mut all = Vec::new();
    let mut results: Vec<PathResult> = Vec::new();
    let mut trial_id = 0;
    for p in paths.iter().filter(|p| *p != "kernel") {
        match run_path(cli, &lab, &plan, p, &mut all, &mut trial_id, profile) {
            Ok(r) => results.push(r),
            Err(e) => {
                println!("    {p}: FAILED: {e:#}");
                eprintln!("bench dataplane: path {p} failed: {e:#}");
            }
        }
    }
    let mut rates = vec![("paced".to_owned(), flows as f64 * 50.0)];
    for r in &results {
        if let Some(t) = &r.at50 {
            rates.push((format!("{}@50%", r.name), t.offered_pps));
        }
        if let Some(t) = &r.at90 {
            rates.push((format!("{}@90%", r.name), t.offered_pps));
        }
    }
    let want_lab_limit = paths.iter().any(|p| p == "kernel");
    let (base, lab_limit) = baseline(
        cli,
        &lab,
        &plan,
        &rates,
        want_lab_limit,
        &mut all,
        &mut trial_id,
    )
    .unwrap_or_else(|e| {
        eprintln!("baseline failed: {e:#}");
        (Vec::new(), None)
    });
    drop(lab);
    let md = dataplane_report(cli, &host, flows, &results, &base, lab_limit, &all)?;
    println!("{md}");
    merge_results(
        &cli.out,
        "dataplane",
        json!({"host": host, "flows": flows, "relay_cpu": cli.relay_cpu, "load_cpu": cli.load_cpu,
               "paths": results, "baseline": base,
               "kernel_forwarding_max_zero_loss_pps": lab_limit.map(|l| l.0)}),
    )?;
    std::fs::write(cli.out.join("dataplane.md"), md)?;
    println!("report: {}", cli.out.join("dataplane.md").display());
    Ok(())
}

/// Relay CPU per packet of two paths at the highest offered rate both relayed without loss in
/// their searches (the same load for both).
fn common_rate_ns(a: &PathResult, b: &PathResult) -> (f64, f64) {
    let ok = |p: &PathResult| -> Vec<(f64, f64)> {
        p.search
            .iter()
            .chain(p.at50.iter())
            .chain(p.at90.iter())
            .chain(p.paced.iter())
            .filter(|t| t.ok)
            .map(|t| (t.offered_pps, t.relay_ns_per_pkt))
            .collect()
    };
    let (ta, tb) = (ok(a), ok(b));
    let mut best = (f64::NAN, f64::NAN, 0.0);
    for (ra, na) in &ta {
        for (rb, nb) in &tb {
            if (ra - rb).abs() < 1.0 && *ra > best.2 {
                best = (*na, *nb, *ra);
            }
        }
    }
    (best.0, best.1)
}

fn find<'a>(r: &'a [PathResult], n: &str) -> Option<&'a PathResult> {
    r.iter().find(|p| p.name == n)
}

/// The baseline trial at `label`'s rate, if the lab itself kept up there (above the lab's own
/// limit the baseline's latency is the generator's backlog, not a reference).
fn base_for<'a>(base: &'a [TrialResult], label: &str) -> Option<&'a TrialResult> {
    base.iter()
        .find(|t| t.label == label)
        .filter(|t| t.gen_kept_up && t.loss_pct == 0.0 && t.gen_busy + t.sink_busy <= 0.9)
}

fn added(v: f64, b: Option<f64>) -> f64 {
    match b {
        Some(b) => (v - b).max(0.0),
        None => f64::NAN,
    }
}

fn dataplane_report(
    cli: &Cli,
    host: &Value,
    flows: usize,
    r: &[PathResult],
    base: &[TrialResult],
    lab_limit: Option<(f64, bool)>,
    all: &[(String, TrialResult)],
) -> anyhow::Result<String> {
    let mut md = String::new();
    writeln!(
        md,
        "# Data plane benchmark: Tollgate XDP path vs socket path vs rtpengine\n"
    )?;
    writeln!(
        md,
        "Host: {} ({} CPUs), kernel {}, {}. Lab: three network namespaces joined by veth (AF_XDP in \
         copy mode; XDP attach mode in `ready` below). {flows} concurrent flows, each a G.711 stream \
         gateway -> internal (172-byte RTP, RTP/AVP in, SRTP AES_CM_128_HMAC_SHA1_80 out). The relay \
         under test runs on CPU {} (Tollgate: 1 worker pinned there, the whole process bound \
         with taskset, XDP interrupt moderation {} µs (`media.coalesce_us`; the socket path blocks \
         in `epoll_wait` and wakes per datagram); rtpengine: `--num-threads=1`, `--table=-1` (no kernel module), whole process \
         bound with taskset), under SCHED_FIFO 50. Generator (AF_PACKET, batched sendmmsg, paced; \
         SCHED_FIFO 40) and sink (recvmmsg, SRTP verified with tollgate-srtp, latency from a \
         CLOCK_MONOTONIC stamp in the payload; SCHED_FIFO 45) share CPU {}. Real-time priority for \
         every path alike shields the measurement from other tenants of the shared VM (at normal \
         priority a relay got about half of its core). **Every figure comes from this one run; the machine is a shared 2-core VM, so only \
         ratios between paths measured in the same run are meaningful.** Load average at start: {}.\n",
        host["cpu"].as_str().unwrap_or("?"),
        host["cpus"],
        host["kernel"].as_str().unwrap_or("?"),
        host["rtpengine"].as_str().unwrap_or("rtpengine ?"),
        cli.relay_cpu,
        cli.coalesce_us,
        cli.load_cpu,
        host["loadavg_at_start"].as_str().unwrap_or("?"),
    )?;
    writeln!(
        md,
        "Relay CPU = scheduler run time of all the relay process's threads (`/proc/<pid>/task/*/schedstat`; \
         user/system split from `/proc/<pid>/stat`) per packet delivered to the sink. Max zero-loss = \
         highest offered rate (doubling, then bisection to 5%) at which a {:.0} s trial lost nothing \
         (a failed trial is retried once). Added latency = one-way gw->int latency minus that of \
         kernel IP forwarding through the relay namespace (steered by RPS to the relay's CPU) at the same offered rate (same generator, \
         same sink, same SRTP verification).\n",
        cli.trial_secs
    )?;
    // Summary.
    writeln!(md, "## Summary\n")?;
    writeln!(
        md,
        "| path | max zero-loss pps | limit | relay ns/pkt @paced | pkts per relay-CPU-s @paced | relay ns/pkt @90% | worker busy ns/pkt @90% | relay CPU @90% | p50/p99/p99.9 us @50% | added p99 us @50% | loss @90% |"
    )?;
    writeln!(md, "|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|")?;
    for p in r {
        let paced = p.paced.as_ref();
        let b50 = p
            .at50
            .as_ref()
            .and_then(|_| base_for(base, &format!("{}@50%", p.name)))
            .map(|t| t.p99_us);
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            p.name,
            f0(p.max_zero_loss_pps),
            if p.max_load_bound {
                "load core (generator+sink)"
            } else {
                "relay"
            },
            paced.map_or("n/a".into(), |t| f0(t.relay_ns_per_pkt)),
            paced.map_or("n/a".into(), |t| f0(1e9 / t.relay_ns_per_pkt)),
            p.at90
                .as_ref()
                .map_or("n/a".into(), |t| f0(t.relay_ns_per_pkt)),
            p.at90
                .as_ref()
                .map_or("n/a".into(), |t| f0(t.worker_busy_ns_per_pkt)),
            p.at90
                .as_ref()
                .map_or("n/a".into(), |t| format!("{:.0}%", 100.0 * t.relay_busy)),
            p.at50.as_ref().map_or("n/a".into(), |t| format!(
                "{} / {} / {}",
                f1(t.p50_us),
                f1(t.p99_us),
                f1(t.p999_us)
            )),
            p.at50
                .as_ref()
                .map_or("n/a".into(), |t| f1(added(t.p99_us, b50))),
            p.at90
                .as_ref()
                .map_or("n/a".into(), |t| format!("{:.3}%", t.loss_pct)),
        )?;
    }
    // Ratio tables.
    for other in ["socket", "rtpengine"] {
        let (Some(x), Some(o)) = (find(r, "xdp"), find(r, other)) else {
            continue;
        };
        writeln!(md, "\n## Ratios: XDP vs {other} (same run)\n")?;
        writeln!(md, "| metric | xdp | {other} | ratio (>1 = XDP better) |")?;
        writeln!(md, "|---|---:|---:|---:|")?;
        let g = |p: &PathResult, f: &dyn Fn(&TrialResult) -> f64, which: &str| -> f64 {
            match which {
                "paced" => p.paced.as_ref().map_or(f64::NAN, f),
                "50" => p.at50.as_ref().map_or(f64::NAN, f),
                _ => p.at90.as_ref().map_or(f64::NAN, f),
            }
        };
        let ns = |t: &TrialResult| t.relay_ns_per_pkt;
        let rows: Vec<(String, f64, f64, bool)> = vec![
            (
                "relay CPU ns/pkt at the paced load (same offered rate)".into(),
                g(x, &ns, "paced"),
                g(o, &ns, "paced"),
                false,
            ),
            (
                "relay CPU ns/pkt at 90% of own max".into(),
                g(x, &ns, "90"),
                g(o, &ns, "90"),
                false,
            ),
            (
                "relay CPU ns/pkt at the highest rate both relayed without loss".into(),
                common_rate_ns(x, o).0,
                common_rate_ns(x, o).1,
                false,
            ),
            (
                "packets per relay-CPU-second at the paced load".into(),
                1e9 / g(x, &ns, "paced"),
                1e9 / g(o, &ns, "paced"),
                true,
            ),
            (
                "max zero-loss packets/s".into(),
                x.max_zero_loss_pps,
                o.max_zero_loss_pps,
                true,
            ),
            (
                "latency p50 us at 50% load".into(),
                g(x, &|t| t.p50_us, "50"),
                g(o, &|t| t.p50_us, "50"),
                false,
            ),
            (
                "latency p99 us at 50% load".into(),
                g(x, &|t| t.p99_us, "50"),
                g(o, &|t| t.p99_us, "50"),
                false,
            ),
            (
                "latency p99.9 us at 50% load".into(),
                g(x, &|t| t.p999_us, "50"),
                g(o, &|t| t.p999_us, "50"),
                false,
            ),
            (
                "added latency p99 us at 50% load".into(),
                added(
                    g(x, &|t| t.p99_us, "50"),
                    base_for(base, "xdp@50%").map(|t| t.p99_us),
                ),
                added(
                    g(o, &|t| t.p99_us, "50"),
                    base_for(base, &format!("{other}@50%")).map(|t| t.p99_us),
                ),
                false,
            ),
            (
                "added latency p99 us at the paced load".into(),
                added(
                    g(x, &|t| t.p99_us, "paced"),
                    base_for(base, "paced").map(|t| t.p99_us),
                ),
                added(
                    g(o, &|t| t.p99_us, "paced"),
                    base_for(base, "paced").map(|t| t.p99_us),
                ),
                false,
            ),
            (
                "latency p99 us at 90% load".into(),
                g(x, &|t| t.p99_us, "90"),
                g(o, &|t| t.p99_us, "90"),
                false,
            ),
            (
                "latency p99 us at the paced load".into(),
                g(x, &|t| t.p99_us, "paced"),
                g(o, &|t| t.p99_us, "paced"),
                false,
            ),
        ];
        for (name, a, b, higher_better) in rows {
            let rt = if higher_better {
                ratio(a, b)
            } else {
                ratio(b, a)
            };
            writeln!(md, "| {name} | {} | {} | {rt} |", f1(a), f1(b))?;
        }
    }
    // Goals.
    writeln!(md, "\n## Goals\n")?;
    let x = find(r, "xdp");
    let sock = find(r, "socket");
    let rtpe = find(r, "rtpengine");
    let paced_ns = |p: Option<&PathResult>| {
        p.and_then(|p| p.paced.as_ref())
            .map_or(f64::NAN, |t| t.relay_ns_per_pkt)
    };
    let ns90 = |p: Option<&PathResult>| {
        p.and_then(|p| p.at90.as_ref())
            .map_or(f64::NAN, |t| t.relay_ns_per_pkt)
    };
    let common = |o: Option<&PathResult>| match (x, o) {
        (Some(a), Some(b)) => {
            let (na, nb) = common_rate_ns(a, b);
            na / nb
        }
        _ => f64::NAN,
    };
    let verdict = |ok: bool, v: f64| {
        if !v.is_finite() {
            "not measured"
        } else if ok {
            "met"
        } else {
            "not met"
        }
    };
    // Three operating points: the same light load (wakeups dominate, the VM's timer and IPI
    // exits most of all), the highest rate both paths relay, and each path near its own
    // capacity (what `tollgate capacity` sizes with).
    writeln!(
        md,
        "* XDP CPU per packet <= 1/3 of the socket path's (XDP/socket):"
    )?;
    for (label, v) in [
        (
            "at the paced load (same offered rate, light)",
            paced_ns(x) / paced_ns(sock),
        ),
        (
            "at the highest rate both relayed without loss",
            common(sock),
        ),
        (
            "at 90% of each path's own maximum (capacity)",
            ns90(x) / ns90(sock),
        ),
    ] {
        writeln!(
            md,
            "  * {label}: {v:.3} ({:.2}x) -> **{}**",
            1.0 / v,
            verdict(v <= 1.0 / 3.0, v)
        )?;
    }
    writeln!(md, "* XDP >= 10x rtpengine's packets per relay-CPU-second:")?;
    for (label, v) in [
        (
            "at the paced load (same offered rate, light)",
            paced_ns(rtpe) / paced_ns(x),
        ),
        (
            "at the highest rate both relayed without loss",
            1.0 / common(rtpe),
        ),
        (
            "at 90% of each path's own maximum (capacity)",
            ns90(rtpe) / ns90(x),
        ),
    ] {
        writeln!(md, "  * {label}: {v:.2}x -> **{}**", verdict(v >= 10.0, v))?;
    }
    let a50 = |p: Option<&PathResult>, n: &str| {
        p.and_then(|p| p.at50.as_ref()).map_or(f64::NAN, |t| {
            added(
                t.p99_us,
                base_for(base, &format!("{n}@50%")).map(|b| b.p99_us),
            )
        })
    };
    let (mut lx, mut lr) = (a50(x, "xdp"), a50(rtpe, "rtpengine"));
    let mut at = "at each path's 50% load";
    let raw_x50 = x
        .and_then(|p| p.at50.as_ref())
        .map_or(f64::NAN, |t| t.p99_us);
    if lx.is_nan() && lr.is_finite() && raw_x50.is_finite() {
        // The kernel-forwarding baseline cannot follow XDP's own 50% point, but added latency
        // is at most the raw one-way latency (the baseline's is >= 0): an upper bound.
        lx = raw_x50;
        at = "at each path's 50% load, XDP's added latency bounded above by its raw p99 (the \
              kernel-forwarding baseline cannot follow XDP's 50% point; added <= raw)";
    }
    if !(lx / lr).is_finite() {
        // XDP's 50% point can lie beyond what the lab forwards cleanly without a relay; then
        // compare at the paced load, the same offered rate for both.
        let ap = |p: Option<&PathResult>| {
            p.and_then(|p| p.paced.as_ref()).map_or(f64::NAN, |t| {
                added(t.p99_us, base_for(base, "paced").map(|b| b.p99_us))
            })
        };
        (lx, lr) = (ap(x), ap(rtpe));
        at = "at the paced load (the kernel-forwarding baseline cannot follow XDP's own 50% point)";
    }
    writeln!(
        md,
        "* Added latency p99 at 50% load <= 1/5 of rtpengine's, {at}: XDP {} us vs rtpengine {} us (ratio {:.3}) -> **{}**",
        f1(lx),
        f1(lr),
        lx / lr,
        if lx.is_nan() || lr.is_nan() {
            "not measured"
        } else if lx <= 0.0 || lr <= 0.0 {
            "inconclusive (the kernel-forwarding baseline's p99 at that rate was as high as the relay's: noise dominates)"
        } else if lx / lr <= 0.2 {
            "met"
        } else {
            "not met"
        }
    )?;
    let raw = |p: Option<&PathResult>| {
        p.and_then(|p| p.at50.as_ref())
            .map_or(f64::NAN, |t| t.p99_us)
    };
    writeln!(
        md,
        "  (raw one-way p99 at 50% load: XDP {} us, rtpengine {} us; note each path's 50% point is at its own rate)",
        f1(raw(x)),
        f1(raw(rtpe))
    )?;
    // Headroom.
    writeln!(md, "\n## Generator and sink headroom\n")?;
    if let Some((lim, _)) = lab_limit {
        writeln!(
            md,
            "Without any relay (kernel IP forwarding in the relay namespace on the relay's CPU, the generator SRTP-protecting \
             each packet itself, the same sink), the lab delivers up to **{} pps** with zero loss: no \
             relay figure above that can be measured here.\n",
            f0(lim)
        )?;
    }
    writeln!(
        md,
        "The generator and the sink share CPU {}. Their CPU time (scheduler run time of their threads) over \
         the trial's wall time is shown per trial; `load core` is the sum. The generator sleeps when \
         ahead of schedule, so its busy fraction is its real work (including, on veth, the relay-side \
         ingress processing that runs in its `sendmmsg` softirq: XDP program and copy into the UMEM, or \
         the kernel's UDP receive). A trial where the generator fell behind its schedule or the load \
         core was over 90% busy is marked; a maximum found next to such trials is a bound of the lab, \
         not of the relay.\n",
        cli.load_cpu
    )?;
    writeln!(
        md,
        "| path | trial | offered pps | delivered | loss % | relay ns/pkt | relay CPU % (usr/sys) | gen busy | sink busy | load core | ksoftirqd | gen kept up | p50 us | p99 us | p99.9 us |"
    )?;
    writeln!(
        md,
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|"
    )?;
    for (p, t) in all {
        writeln!(
            md,
            "| {p} | {} | {} | {} | {:.3} | {} | {:.0} ({:.0}/{:.0}) | {:.0}% | {:.0}% | {:.0}% | {:.1}% | {} | {} | {} | {} |",
            t.label,
            f0(t.offered_pps),
            t.delivered,
            t.loss_pct,
            f0(t.relay_ns_per_pkt),
            100.0 * t.relay_busy,
            t.relay_user_pct,
            t.relay_sys_pct,
            100.0 * t.gen_busy,
            100.0 * t.sink_busy,
            100.0 * t.load_core_busy,
            100.0 * t.ksoftirqd_busy,
            if t.gen_kept_up { "yes" } else { "**no**" },
            f1(t.p50_us),
            f1(t.p99_us),
            f1(t.p999_us)
        )?;
    }
    writeln!(md, "\n## Relay start-up\n")?;
    for p in r {
        writeln!(md, "* {}: `{}`", p.name, p.ready)?;
    }
    if let Some(pr) = r.iter().find_map(|p| p.profile.as_ref()) {
        writeln!(
            md,
            "\n## Profile of the XDP worker at 90% of its max rate (perf, cpu-clock)\n"
        )?;
        writeln!(md, "```")?;
        for l in pr
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .take(60)
        {
            writeln!(md, "{l}")?;
        }
        writeln!(md, "```")?;
    }
    // Plots.
    let series = |f: &dyn Fn(&TrialResult) -> f64, only_ok: bool| -> Vec<Series> {
        let mut names: Vec<&str> = Vec::new();
        for (p, _) in all {
            if !names.contains(&p.as_str()) {
                names.push(p);
            }
        }
        names
            .into_iter()
            .map(|n| Series {
                name: n.to_owned(),
                points: all
                    .iter()
                    .filter(|(p, t)| p == n && t.label != "warmup" && (!only_ok || t.ok))
                    .map(|(_, t)| (t.offered_pps / 1000.0, f(t)))
                    .filter(|(_, y)| y.is_finite())
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect()
    };
    let plots = [
        (
            "dataplane-cpu.svg",
            "Relay CPU per packet vs offered load",
            "relay CPU ns per packet",
            series(&|t| t.relay_ns_per_pkt, false),
            true,
        ),
        (
            "dataplane-loss.svg",
            "Loss vs offered load",
            "loss %",
            series(&|t| t.loss_pct, false),
            false,
        ),
        (
            "dataplane-p99.svg",
            "One-way latency p99 vs offered load (zero-loss trials)",
            "p99 latency us",
            series(&|t| t.p99_us, true),
            true,
        ),
    ];
    writeln!(md, "\n## Plots\n")?;
    for (file, title, y, s, log) in plots {
        let path = cli.out.join(file);
        std::fs::create_dir_all(&cli.out)?;
        match line_chart(&path, title, "offered load (kpps)", y, &s, log) {
            Ok(()) => writeln!(md, "* [{title}]({file})")?,
            Err(e) => writeln!(md, "* {title}: plot failed: {e}")?,
        }
    }
    Ok(md)
}

/// One flow count of the scale benchmark.
#[derive(Debug, Clone, Serialize)]
struct ScaleResult {
    flows: usize,
    install_ns_per_flow: f64,
    rss_before_kib: u64,
    rss_after_install_kib: u64,
    rss_after_traffic_kib: u64,
    bytes_per_flow: f64,
    bpf_maps: usize,
    bpf_memlock_bytes: u64,
    fixed: TrialResult,
    max_zero_loss_pps: f64,
    max_load_bound: bool,
    search: Vec<TrialResult>,
}

fn scale(cli: &Cli, counts: &[usize], rate: f64) -> anyhow::Result<()> {
    let maxn = counts.iter().copied().max().unwrap_or(100);
    let big_plan = Plan::lab(maxn);
    println!(
        "==> [bench scale] lab up with {} relay addresses per side",
        big_plan.ext_ips.len()
    );
    let lab = Lab::up(&big_plan, cli.load_cpu)?;
    let mut all = Vec::new();
    let mut out: Vec<ScaleResult> = Vec::new();
    let mut trial_id = 1000;
    for &n in counts {
        println!("==> [bench scale] {n} flows (XDP path)");
        let plan = Plan::lab(n);
        let (relay, ready) = start_tollgate(
            &lab,
            &relay_bin(cli)?,
            "xdp",
            n,
            cli.relay_cpu,
            cli.coalesce_us,
        )?;
        println!("    ready: {ready}");
        let (bpf_maps, bpf_mem) = procstat::bpf_maps(relay.pid());
        let res = (|| -> anyhow::Result<ScaleResult> {
            let (g, k) = tollgate_flows(&plan);
            let mut b = Bench {
                lab: &lab,
                load_cpu: cli.load_cpu,
                relay: Some(relay),
                sink: None,
                gen_state: None,
                trial_id,
                all: &mut all,
                path: format!("{n}"),
                restart: None,
            };
            b.sink = Some(SinkRun::start(&lab, &plan, k, cli.load_cpu)?);
            b.gen_state = Some(GenState::new(g, lab.gw_mac, lab.ext_mac, None)?);
            // Touch every flow once before measuring.
            let warm_rate = 50_000.0f64;
            b.trial("warmup", warm_rate, (n as f64 / warm_rate).max(1.0) + 0.5)?;
            let fixed = b.trial("fixed", rate, cli.latency_secs)?;
            let (max, lb, search) = b.search(50_000.0, 4_000_000.0, cli.trial_secs)?;
            trial_id = b.trial_id;
            let rss_after = b
                .relay
                .as_mut()
                .and_then(Relay::stats)
                .and_then(|v| v["rss_kib"].as_u64())
                .unwrap_or(0);
            drop(b);
            let before = ready["rss_before_kib"].as_u64().unwrap_or(0);
            let after_inst = ready["rss_after_kib"].as_u64().unwrap_or(0);
            Ok(ScaleResult {
                flows: n,
                install_ns_per_flow: ready["install_applied_ns"].as_f64().unwrap_or(f64::NAN)
                    / n as f64,
                rss_before_kib: before,
                rss_after_install_kib: after_inst,
                rss_after_traffic_kib: rss_after,
                bytes_per_flow: (rss_after.max(after_inst).saturating_sub(before)) as f64 * 1024.0
                    / n as f64,
                bpf_maps,
                bpf_memlock_bytes: bpf_mem,
                fixed,
                max_zero_loss_pps: max,
                max_load_bound: lb,
                search,
            })
        })();
        match res {
            Ok(r) => out.push(r),
            Err(e) => {
                println!("    {n} flows: FAILED: {e:#}");
            }
        }
    }
    drop(lab);
    let mut md = String::new();
    writeln!(
        md,
        "# Scale benchmark: XDP path with many concurrent flows\n"
    )?;
    writeln!(
        md,
        "Same lab and method as `dataplane.md` (shared 2-core VM: compare rows of this run only). Each \
         flow: 4 eBPF map entries (RTP and RTCP ports on both NICs), one SRTP context per direction in \
         the worker. The generator sends round-robin over all flows, so at 100,000 flows every packet \
         hits a different flow (cold caches). Fixed-rate trial: {rate:.0} pps for {:.0} s. Per-flow \
         memory = growth of the relay's RSS from before the installs to after traffic, divided by the \
         flow count (the eBPF maps are kernel memory, preallocated at their maximum size, shown apart).\n",
        cli.latency_secs
    )?;
    writeln!(
        md,
        "| flows | install us/flow | RSS before MiB | RSS after MiB | bytes/flow | eBPF maps (memlock MiB) | relay ns/pkt @fixed | pkts per relay-CPU-s | loss @fixed | p99 us @fixed | max zero-loss pps | limit |"
    )?;
    writeln!(
        md,
        "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|"
    )?;
    for s in &out {
        writeln!(
            md,
            "| {} | {:.1} | {:.1} | {:.1} | {:.0} | {} ({:.1}) | {} | {} | {:.3}% | {} | {} | {} |",
            s.flows,
            s.install_ns_per_flow / 1000.0,
            s.rss_before_kib as f64 / 1024.0,
            s.rss_after_traffic_kib.max(s.rss_after_install_kib) as f64 / 1024.0,
            s.bytes_per_flow,
            s.bpf_maps,
            s.bpf_memlock_bytes as f64 / 1048576.0,
            f0(s.fixed.relay_ns_per_pkt),
            f0(1e9 / s.fixed.relay_ns_per_pkt),
            s.fixed.loss_pct,
            f1(s.fixed.p99_us),
            f0(s.max_zero_loss_pps),
            if s.max_load_bound {
                "load core"
            } else {
                "relay"
            }
        )?;
    }
    if let (Some(small), Some(big)) = (out.first(), out.last())
        && small.flows != big.flows
    {
        let cap = (1e9 / big.fixed.relay_ns_per_pkt) / (1e9 / small.fixed.relay_ns_per_pkt);
        let mx = big.max_zero_loss_pps / small.max_zero_loss_pps;
        writeln!(
            md,
            "\n## {} flows as a ratio of {} flows (same run)\n",
            big.flows, small.flows
        )?;
        writeln!(
            md,
            "* packets per relay-CPU-second at {rate:.0} pps: **{:.1}%** ({} vs {} ns/pkt)",
            100.0 * cap,
            f0(big.fixed.relay_ns_per_pkt),
            f0(small.fixed.relay_ns_per_pkt)
        )?;
        writeln!(
            md,
            "* max zero-loss packets/s: **{:.1}%** ({} vs {}{})",
            100.0 * mx,
            f0(big.max_zero_loss_pps),
            f0(small.max_zero_loss_pps),
            if big.max_load_bound || small.max_load_bound {
                "; at least one is bounded by the load core, so this ratio understates any relay difference"
            } else {
                ""
            }
        )?;
        // A maximum the load core bounded measures the generator (which at 100k flows also
        // walks 100k flows' state), not the relay: then the relay's own packets per CPU-second
        // is the throughput measure; otherwise the lower of the two counts.
        let lab_bound = big.max_load_bound || small.max_load_bound;
        let (goal, which) = if lab_bound {
            (
                cap,
                "packets per relay-CPU-second; the maxima are the load core's",
            )
        } else {
            (cap.min(mx), "the lower of the two ratios")
        };
        writeln!(
            md,
            "* goal (100k flows >= 90% of 100-flow throughput): **{}** ({which}: {:.1}%)",
            if goal >= 0.9 { "met" } else { "not met" },
            100.0 * goal
        )?;
    }
    writeln!(md, "\n## Trials\n")?;
    writeln!(
        md,
        "| flows | trial | offered pps | delivered | loss % | relay ns/pkt | relay CPU % | gen busy | load core | gen kept up | p99 us |"
    )?;
    writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")?;
    for (p, t) in &all {
        writeln!(
            md,
            "| {p} | {} | {} | {} | {:.3} | {} | {:.0}% | {:.0}% | {:.0}% | {} | {} |",
            t.label,
            f0(t.offered_pps),
            t.delivered,
            t.loss_pct,
            f0(t.relay_ns_per_pkt),
            100.0 * t.relay_busy,
            100.0 * t.gen_busy,
            100.0 * t.load_core_busy,
            if t.gen_kept_up { "yes" } else { "**no**" },
            f1(t.p99_us)
        )?;
    }
    let pts = |f: &dyn Fn(&ScaleResult) -> f64| -> Vec<(f64, f64)> {
        out.iter()
            .map(|s| ((s.flows as f64).log10(), f(s)))
            .collect()
    };
    let plots = [
        (
            "scale-cpu.svg",
            "XDP relay CPU per packet vs flows",
            "relay ns per packet",
            vec![Series {
                name: "relay ns/pkt".into(),
                points: pts(&|s| s.fixed.relay_ns_per_pkt),
            }],
        ),
        (
            "scale-memory.svg",
            "Relay RSS vs flows",
            "RSS MiB",
            vec![Series {
                name: "RSS".into(),
                points: pts(&|s| {
                    s.rss_after_traffic_kib.max(s.rss_after_install_kib) as f64 / 1024.0
                }),
            }],
        ),
    ];
    writeln!(md, "\n## Plots\n")?;
    for (file, title, y, s) in plots {
        match line_chart(&cli.out.join(file), title, "log10(flows)", y, &s, false) {
            Ok(()) => writeln!(md, "* [{title}]({file})")?,
            Err(e) => writeln!(md, "* {title}: plot failed: {e}")?,
        }
    }
    println!("{md}");
    merge_results(&cli.out, "scale", json!({"rate": rate, "counts": out}))?;
    std::fs::write(cli.out.join("scale.md"), md)?;
    println!("report: {}", cli.out.join("scale.md").display());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !tollgate_netlab::is_root() {
        bail!("dp-bench needs root (network namespaces, XDP, AF_PACKET)");
    }
    let _ = Ipv4Addr::LOCALHOST;
    std::fs::create_dir_all(&cli.out)?;
    match &cli.what {
        What::Dataplane {
            flows,
            paths,
            profile,
        } => dataplane(&cli, *flows, paths, *profile),
        What::Scale { flows, rate } => scale(&cli, flows, *rate),
    }
}
