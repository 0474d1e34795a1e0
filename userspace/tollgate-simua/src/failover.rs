//! Failover test equipment, shared by the failover lab tests and `cargo xtask demo
//! --failover`: a `tollgate run` per node and service in the HA lab (`tollgate_netlab::ha`),
//! its configuration (`[state]` in the lab's Valkey, `[ha] mode = "standby"`), an active/
//! standby pair brought up with keepalived, and one failover round with its figures.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate_netlab::ha::{HaLab, HaSpec, KeepalivedConfig, Service};

use crate::certs::LabPki;
use crate::labconf::{GATEWAY_NAME, LabAddrs, PROXY_NAME, TOLLGATE_NAME};
use crate::process::{Launch, TollgateProcess, wait_listening};
use crate::scenario::{Direction, Parties, Plan, Report};

/// The service lease's TTL (`[ha] lease_ms`) in the lab.
pub const LEASE_MS: u64 = 1000;

/// Polls `f` every 20 ms until it holds (how long that took) or `deadline` passes (`what`).
pub fn wait_for(
    what: &str,
    deadline: Duration,
    mut f: impl FnMut() -> bool,
) -> Result<Duration, String> {
    let t = Instant::now();
    while !f() {
        if t.elapsed() >= deadline {
            return Err(format!("timed out after {deadline:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(t.elapsed())
}

/// The `p`th percentile (0..=100) of `v` (sorted in place); 0 if empty.
pub fn percentile(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    let i = ((p / 100.0) * (v.len().saturating_sub(1)) as f64).round() as usize;
    v.get(i).copied().unwrap_or(0)
}

/// The lab PKI: Tollgate's certificate names every service's addresses (the same identity on
/// every node: the internal side verifies it by name).
pub fn pki(dir: &Path) -> Result<LabPki, String> {
    let mut tollgate_ips: Vec<IpAddr> = Vec::new();
    for n in 1..=2 {
        let s = Service::numbered(n);
        tollgate_ips.extend([IpAddr::from(s.ext), IpAddr::from(s.int)]);
    }
    LabPki::create(
        dir,
        (&[TOLLGATE_NAME], &tollgate_ips),
        (&[PROXY_NAME], &[[10, 201, 2, 2].into()]),
        (&[GATEWAY_NAME], &[[10, 201, 1, 2].into()]),
    )
    .map_err(|e| format!("lab PKI: {e}"))
}

/// The Tollgate configuration of service `svc` on node `k` of `lab`: the lab's configuration
/// with the service addresses as the relay's (interfaces ext0/int0), metrics on the node's own
/// internal address, `[state]` in the lab's Valkey under the service's name, `[ha]` standby.
pub fn node_config(
    lab: &HaLab,
    k: usize,
    svc: &Service,
    pki: &LabPki,
    datapath: &str,
    cdr: &Path,
    metrics: SocketAddr,
) -> String {
    let a = LabAddrs::from_lab(&lab.lab_spec(k, svc));
    a.tollgate_config(pki, datapath, 1, cdr, Some(metrics))
        + &format!(
            "\n[state]\nbackend = \"valkey\"\nurl = \"{url}\"\nnode_id = \"{svc}\"\n\n\
             [ha]\nmode = \"standby\"\nholder = \"n{k}\"\nlease_ms = {LEASE_MS}\n",
            url = lab.valkey_url(),
            svc = svc.name,
        )
}

/// One `tollgate run` for one service on one node.
#[derive(Debug)]
pub struct Node {
    /// Its holder name in the lease (`n<k>`).
    pub name: String,
    /// The service it carries or stands by for.
    pub svc: Service,
    /// Its directory (configuration, log, CDRs, control socket).
    pub dir: PathBuf,
    /// Its configuration file.
    pub cfg: PathBuf,
    /// Its CDR file.
    pub cdr: PathBuf,
    /// Its control socket.
    pub socket: PathBuf,
    /// Its metrics endpoint (the node's own internal address).
    pub metrics: SocketAddr,
    /// The node's namespace.
    pub ns: String,
    /// The process, once started.
    pub tg: Option<TollgateProcess>,
    bin: PathBuf,
}

impl Node {
    /// Writes the configuration of service `svc` on node `k` (see [`node_config`]) under
    /// `scratch`; `bin` is the `tollgate` binary.
    pub fn new(
        lab: &HaLab,
        k: usize,
        svc: &Service,
        pki: &LabPki,
        datapath: &str,
        scratch: &Path,
        bin: &Path,
    ) -> Result<Node, String> {
        let name = format!("n{k}");
        let dir = scratch.join(format!("{name}-{}", svc.name));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let cdr = dir.join("cdr.jsonl");
        let socket = dir.join("control.sock");
        let (_, own_int) = lab.node_addrs(k);
        let svc_no: u16 = svc.name.trim_start_matches("svc").parse().unwrap_or(0);
        let metrics = SocketAddr::new(own_int.into(), 9100 + svc_no);
        let cfg = dir.join("tollgate.toml");
        std::fs::write(&cfg, node_config(lab, k, svc, pki, datapath, &cdr, metrics))
            .map_err(|e| format!("{}: {e}", cfg.display()))?;
        Ok(Node {
            name,
            svc: svc.clone(),
            dir,
            cfg,
            cdr,
            socket,
            metrics,
            ns: lab.node_ns(k),
            tg: None,
            bin: bin.to_owned(),
        })
    }

    /// Starts `tollgate run` in the node's namespace.
    pub fn start(&mut self) -> Result<(), String> {
        let tg = TollgateProcess::spawn(
            &self.bin,
            &self.cfg,
            &self.log_path(),
            &Launch {
                netns: Some(&self.ns),
                ..Launch::default()
            },
        )
        .map_err(|e| format!("{}: tollgate does not start: {e}", self.name))?;
        self.tg = Some(tg);
        Ok(())
    }

    /// Its log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("tollgate.log")
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `tollgate ctl --json status`, if its control socket answers.
    pub fn status(&self) -> Option<Value> {
        let out = Command::new(&self.bin)
            .args(["ctl", "--socket"])
            .arg(&self.socket)
            .args(["--json", "status"])
            .output()
            .ok()?;
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["ok"] == true).then_some(v)
    }

    /// Whether its metrics endpoint accepts connections.
    pub fn metrics_up(&self) -> bool {
        let addr = self.metrics;
        tollgate_netlab::in_netns(&self.ns, move || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
        })
        .unwrap_or(false)
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(tg) = &mut self.tg {
            tg.kill();
        }
    }

    /// Its exit status, once it exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.tg.as_mut().and_then(TollgateProcess::exited)
    }

    /// SIGTERM (drain) and wait up to `wait`.
    pub fn stop(&mut self, wait: Duration) -> bool {
        self.tg.as_mut().is_some_and(|t| t.stop(wait).is_some())
    }

    /// Its CDRs so far (lines that do not parse are skipped).
    pub fn cdrs(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.cdr)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until it serves the service: its SIP listener answers on the service address
    /// (from the gateway) and its control socket answers.
    pub fn wait_serving(&self, lab: &HaLab, deadline: Duration) -> Result<Duration, String> {
        let t = Instant::now();
        let ext = SocketAddr::new(self.svc.ext.into(), 5060);
        if !wait_listening(Some(&lab.gw_ns()), ext, deadline) {
            return Err(format!(
                "{}/{} does not listen on {ext}; log:\n{}",
                self.name,
                self.svc.name,
                self.log()
            ));
        }
        wait_for("the control socket", deadline, || self.status().is_some())
            .map_err(|e| format!("{}: {e}; log:\n{}", self.name, self.log()))?;
        Ok(t.elapsed())
    }

    /// UDP sockets bound to the service's addresses in the node's namespace (`ss`).
    pub fn bound_udp(&self) -> usize {
        let out = tollgate_netlab::run("ip", &["netns", "exec", &self.ns, "ss", "-Hunl"])
            .unwrap_or_default();
        let (e, i) = (self.svc.ext.to_string(), self.svc.int.to_string());
        out.lines()
            .filter(|l| l.contains(&format!("{e}:")) || l.contains(&format!("{i}:")))
            .count()
    }
}

/// An active/standby pair for svc1 in a fresh HA lab.
pub struct Pair {
    /// The lab (torn down when dropped).
    pub lab: HaLab,
    /// The service.
    pub svc: Service,
    /// The active node (n1, keepalived priority 150).
    pub n1: Node,
    /// The standby (n2, priority 100).
    pub n2: Node,
    /// The simulated gateway and internal endpoint.
    pub parties: Parties,
    /// How long n1 took from its start to serving.
    pub n1_start: Duration,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("n1", &self.n1.name)
            .field("n2", &self.n2.name)
            .finish_non_exhaustive()
    }
}

/// Two nodes for svc1: keepalived on n1 (150, master) and n2 (100), the parties, a standby
/// Tollgate on each node; returns once n1 serves and n2 waits. `tag` names the lab, `scratch`
/// holds the nodes' files, `bin` is the `tollgate` binary.
pub fn pair(tag: &str, datapath: &str, scratch: &Path, bin: &Path) -> Result<Pair, String> {
    let lab = HaSpec::unique(tag, 2)
        .up_guarded()
        .map_err(|e| format!("HA lab: {e}"))?;
    let pki = pki(&scratch.join("certs"))?;
    let svc = Service::numbered(1);
    lab.start_keepalived(1, &KeepalivedConfig::new(std::slice::from_ref(&svc), 150))
        .map_err(|e| format!("keepalived n1: {e}"))?;
    lab.wait_until(Duration::from_secs(10), |l| l.holds(1, &svc))
        .ok_or_else(|| format!("n1 takes svc1; keepalived:\n{}", lab.keepalived_log(1)))?;
    lab.start_keepalived(2, &KeepalivedConfig::new(std::slice::from_ref(&svc), 100))
        .map_err(|e| format!("keepalived n2: {e}"))?;
    // The parties first: a Tollgate that starts before the gateway listens marks the trunk
    // down until its next OPTIONS.
    let a = LabAddrs::from_lab(&lab.lab_spec(1, &svc));
    let parties = Parties::start(&a.topology(&pki), Duration::from_millis(100), true)?;
    let mut n1 = Node::new(&lab, 1, &svc, &pki, datapath, scratch, bin)?;
    let mut n2 = Node::new(&lab, 2, &svc, &pki, datapath, scratch, bin)?;
    n1.start()?;
    n2.start()?;
    let n1_start = n1.wait_serving(&lab, Duration::from_secs(20))?;
    wait_for("n2 in standby", Duration::from_secs(10), || {
        n2.log()
            .contains("standby: the service addresses are elsewhere")
    })
    .map_err(|e| format!("{e}; n2 logged:\n{}", n2.log()))?;
    Ok(Pair {
        lab,
        svc,
        n1,
        n2,
        parties,
        n1_start,
    })
}

/// How the active node fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// `kill -9` of the active node's Tollgate and keepalived.
    Kill,
    /// The active node's two links cut.
    Cut,
}

impl Failure {
    /// For reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Kill => "kill -9",
            Failure::Cut => "links cut",
        }
    }
}

/// What one failover round saw.
#[derive(Debug)]
pub struct Round {
    /// The calls' outcomes.
    pub report: Report,
    /// From the failure to the standby holding the addresses.
    pub vrrp: Duration,
    /// From the failure to the standby serving the calls.
    pub serving: Duration,
}

/// A plan of `calls` calls, each talking `talk`: up to 50 at once, more at 100 calls/s (a
/// burst of hundreds of INVITEs at once has the simulated gateway open a connection per call,
/// over Tollgate's per-source connection limit).
pub fn plan(direction: Direction, calls: usize, talk: Duration) -> Plan {
    Plan {
        direction,
        calls,
        concurrency: calls,
        talk,
        ring: Duration::from_millis(100),
        media: true,
        first_index: 0,
        rate: (calls > 50).then_some(100.0),
    }
}

/// Runs `plan` through the pair's n1, fails n1 once every call is stored and has talked a
/// second, and waits for n2 to carry the calls to their end.
pub fn round(p: &mut Pair, plan: &Plan, failure: Failure) -> Result<Round, String> {
    let Pair {
        lab,
        svc,
        n1,
        n2,
        parties,
        ..
    } = p;
    let calls = plan.calls;
    std::thread::scope(|sc| {
        let run = sc.spawn(|| parties.run(plan));
        let mut last = None;
        let stored = wait_for("the calls stored on n1", Duration::from_secs(60), || {
            last = n1.status();
            last.as_ref().is_some_and(|v| {
                v["state"]["stored_calls"] == calls && v["state"]["unprotected_calls"] == 0
            })
        })
        .map_err(|e| {
            let l = last.as_ref();
            format!(
                "{e}: holders {:?}, peers steered to n{:?}; n1 has {} calls, {} stored, {} unprotected; its warnings:\n{}",
                lab.holders(svc),
                lab.steered_to(svc),
                l.map_or(Value::Null, |v| v["calls"].clone()),
                l.map_or(Value::Null, |v| v["state"]["stored_calls"].clone()),
                l.map_or(Value::Null, |v| v["state"]["unprotected_calls"].clone()),
                n1.log()
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .take(20)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        let failed_over = stored.and_then(|_| {
            std::thread::sleep(Duration::from_secs(1));
            if lab.holders(svc) != vec![1] {
                return Err(format!(
                    "VRRP flapped under load before the failure: holders {:?}",
                    lab.holders(svc)
                ));
            }
            let t0 = Instant::now();
            match failure {
                Failure::Kill => {
                    n1.kill();
                    lab.kill_keepalived(1);
                }
                Failure::Cut => lab.cut_links(1).map_err(|e| format!("cut links: {e}"))?,
            }
            let vrrp = lab
                .wait_until(Duration::from_secs(10), |l| l.holds(2, svc))
                .ok_or_else(|| format!("n2 takes the addresses:\n{}", lab.keepalived_log(2)))?;
            wait_for("n2 to take the calls over", Duration::from_secs(10), || {
                n2.log().contains("calls taken over") && n2.status().is_some()
            })
            .map_err(|e| format!("{e}; n2 logged:\n{}", n2.log()))?;
            Ok((vrrp, t0.elapsed()))
        });
        let report = run
            .join()
            .map_err(|_| "the scenario thread panicked".to_owned())??;
        let (vrrp, serving) = failed_over.map_err(|e| {
            let first = report.calls.iter().find_map(|c| c.error.clone());
            format!("{e}\nfirst call error: {first:?}")
        })?;
        Ok(Round {
            report,
            vrrp,
            serving,
        })
    })
}
