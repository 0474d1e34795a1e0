//! Trials: one offered rate through one relay (relay CPU, loss, latency), the max zero-loss
//! search and latency points per path, the kernel-forwarding baseline, and a perf profile.

use super::*;

/// One measured trial.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TrialResult {
    pub(crate) label: String,
    pub(crate) offered_pps: f64,
    pub(crate) secs: f64,
    pub(crate) sent: u64,
    pub(crate) delivered: u64,
    pub(crate) lost: u64,
    pub(crate) loss_pct: f64,
    pub(crate) auth_fail: u64,
    pub(crate) bad_payload: u64,
    pub(crate) stale: u64,
    pub(crate) reordered: u64,
    /// Relay process CPU (scheduler run time, all threads) per delivered packet, ns.
    pub(crate) relay_ns_per_pkt: f64,
    /// Relay CPU / wall.
    pub(crate) relay_busy: f64,
    pub(crate) relay_user_pct: f64,
    pub(crate) relay_sys_pct: f64,
    pub(crate) gen_busy: f64,
    pub(crate) sink_busy: f64,
    /// ksoftirqd run time / wall (softirq work that left the threads raising it).
    pub(crate) ksoftirqd_busy: f64,
    pub(crate) gen_kept_up: bool,
    pub(crate) gen_max_lag_us: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) max_us: f64,
    pub(crate) ok: bool,
    /// Generator + sink CPU on the load core over wall: near 1 means the load core, not the
    /// relay, set the limit.
    pub(crate) load_core_busy: f64,
    /// Tollgate only: the worker's wall time in loop iterations that had packets, per packet
    /// received (its work without idle polling), ns.
    pub(crate) worker_busy_ns_per_pkt: f64,
    /// Tollgate only: the worker threads' scheduler run time per delivered packet, ns (their
    /// userspace work, their syscalls and the softirq work charged to them).
    pub(crate) worker_run_ns_per_pkt: f64,
    /// Tollgate only: the worker threads' user time per delivered packet, ns (from clock
    /// ticks: their own code only, no kernel work).
    pub(crate) worker_user_ns_per_pkt: f64,
    /// Tollgate only: the worker threads' system time per delivered packet, ns (from clock
    /// ticks: syscalls, the copy-mode TX and softirq work charged to them).
    pub(crate) worker_sys_ns_per_pkt: f64,
    /// CPU steal of the VM during the trial, % of all CPU time (`st` in vmstat).
    pub(crate) steal_pct: f64,
    pub(crate) relay_stats: Option<Value>,
}

impl TrialResult {
    pub(crate) fn load_bound(&self) -> bool {
        !self.gen_kept_up || self.load_core_busy > 0.9
    }
}

/// How one data path did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PathResult {
    pub(crate) name: String,
    pub(crate) flows: usize,
    pub(crate) paced: Option<TrialResult>,
    pub(crate) search: Vec<TrialResult>,
    pub(crate) max_zero_loss_pps: f64,
    /// Whether the load core (generator + sink), not the relay, limited the search.
    pub(crate) max_load_bound: bool,
    pub(crate) at50: Option<TrialResult>,
    pub(crate) at90: Option<TrialResult>,
    pub(crate) ready: Value,
    pub(crate) profile: Option<String>,
}

/// Starts a relay afresh with its sink and generator state.
pub(crate) type Restart<'a> = Box<dyn FnMut() -> anyhow::Result<(Relay, SinkRun, GenState)> + 'a>;

/// Everything one path's trials share. Dropping it stops the sink and the relay.
pub(crate) struct Bench<'a> {
    pub(crate) lab: &'a Lab,
    pub(crate) load_cpu: usize,
    pub(crate) relay: Option<Relay>,
    pub(crate) sink: Option<SinkRun>,
    pub(crate) gen_state: Option<GenState>,
    pub(crate) trial_id: u32,
    pub(crate) all: &'a mut Vec<(String, TrialResult)>,
    pub(crate) path: String,
    /// Tollgate only: the relay's worker threads (per-thread CPU time).
    pub(crate) worker_tids: Vec<u32>,
    /// rtpengine stops relaying a stream for good after its receive queue overflowed a few
    /// times; such a relay is restarted (fresh calls, keys and sink) after a lossy trial.
    pub(crate) restart: Option<Restart<'a>>,
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
    pub(crate) fn reset(&mut self) -> anyhow::Result<()> {
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

    pub(crate) fn trial(
        &mut self,
        label: &str,
        rate: f64,
        secs: f64,
    ) -> anyhow::Result<TrialResult> {
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
        let workers_cpu = |tids: &[u32]| -> Option<CpuSample> {
            let pid = relay_pid?;
            let mut sum = CpuSample::default();
            for t in tids {
                let c = procstat::thread_cpu(pid, *t)?;
                sum.user_ns += c.user_ns;
                sum.sys_ns += c.sys_ns;
                sum.run_ns += c.run_ns;
            }
            (!tids.is_empty()).then_some(sum)
        };
        let wk_a = workers_cpu(&self.worker_tids);
        let steal_a = CpuTimes::now().unwrap_or_default();
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
        let wk = match (wk_a, workers_cpu(&self.worker_tids)) {
            (Some(a), Some(b)) => Some(b.since(&a)),
            _ => None,
        };
        let steal_pct = CpuTimes::now()
            .unwrap_or_default()
            .steal_pct_since(&steal_a);
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
            worker_run_ns_per_pkt: per_pkt(wk.map(|c| c.run_ns), s.ok),
            worker_user_ns_per_pkt: per_pkt(wk.map(|c| c.user_ns), s.ok),
            worker_sys_ns_per_pkt: per_pkt(wk.map(|c| c.sys_ns), s.ok),
            steal_pct,
            relay_stats,
        };
        println!(
            "    {:<9} {:<8} {:>9.0} pps  sent {:>9}  lost {:>7} ({:>6.3}%)  relay {:>6.0} ns/pkt ({:>5.1}% cpu)  gen {:>4.0}%  sink {:>4.0}%  p50 {:>7.1} p99 {:>8.1} p99.9 {:>8.1} us  steal {:.1}%{}",
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
            r.steal_pct,
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
    pub(crate) fn trial_retry(
        &mut self,
        label: &str,
        rate: f64,
        secs: f64,
    ) -> anyhow::Result<TrialResult> {
        let r = self.trial(label, rate, secs)?;
        if r.ok {
            return Ok(r);
        }
        self.trial(&format!("{label}-retry"), rate, secs)
    }

    /// Highest zero-loss rate: doubling from `start`, then bisection (geometric) to 5%.
    pub(crate) fn search(
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

/// `ns` per packet of `pkts`, or NaN when either is missing.
fn per_pkt(ns: Option<u64>, pkts: u64) -> f64 {
    match ns {
        Some(ns) if pkts > 0 => ns as f64 / pkts as f64,
        _ => f64::NAN,
    }
}

/// Worker busy ns per received packet between two `STATS` replies.
pub(crate) fn worker_busy(a: Option<&Value>, b: Option<&Value>) -> f64 {
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

pub(crate) fn host_facts() -> Value {
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

/// Runs one path: start the relay, paced trial, search, 50% and 90% trials, stop.
pub(crate) fn run_path(
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
        "xdp" | "socket" | "floor" | "xdp2" => {
            // `xdp2`: the XDP path on two NIC queues with two workers (both on the relay's
            // core: this lab has two), so per-packet cost can be compared as workers are added.
            let (path, workers) = if name == "xdp2" {
                ("xdp", 2)
            } else {
                (name, 1)
            };
            lab.set_queues(workers, cli.load_cpu)?;
            let (r, v) = start_tollgate(
                lab,
                &relay_bin(cli)?,
                path,
                plan.flows,
                cli.relay_cpu,
                cli.coalesce_us,
                workers,
            )?;
            let (g, k) = tollgate_flows(plan);
            (r, g, k, v)
        }
        "rtpengine" => {
            let (r, g, k, v) = start_rtpengine(lab, plan, cli.relay_cpu, &rtpe_log)?;
            (r, g, k, v)
        }
        other => bail!("unknown path {other} (xdp, xdp2, socket, floor, rtpengine, kernel)"),
    };
    println!("    ready: {ready}");
    // The floor relays RTP as it came (no SRTP): its sink counts plain RTP.
    let decrypt = name != "floor";
    let sink = match SinkRun::start(lab, plan, keys, cli.load_cpu, decrypt) {
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
            let s = SinkRun::start(lab, plan, k, load_cpu, true)?;
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
        worker_tids: ready["workers"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter_map(|x| x["tid"].as_u64().map(|t| t as u32))
                    .collect()
            })
            .unwrap_or_default(),
        restart,
    };
    b.trial("warmup", (plan.flows as f64 * 50.0).min(20_000.0), 1.0)?;
    let paced = b.trial("paced", plan.flows as f64 * 50.0, cli.latency_secs)?;
    let (max, load_bound, search) = b.search(25_000.0, 4_000_000.0, cli.trial_secs)?;
    if max <= 0.0 {
        bail!(
            "{name}: no trial relayed without loss, down to 1000 pps: nothing to measure at 50% and 90%"
        );
    }
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
pub(crate) fn perf_profile(b: &mut Bench<'_>, rate: f64, cli: &Cli) -> anyhow::Result<String> {
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
pub(crate) type BaselineOut = (Vec<TrialResult>, Option<(f64, bool)>);

/// Kernel IP forwarding of SRTP the generator protected itself: the lab's latency floor, at
/// the given rates, and (with `search`) the lab's own zero-loss limit without any relay.
pub(crate) fn baseline(
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
    lab.set_queues(1, cli.load_cpu)?;
    let _rps = Rps::steer(&spec.relay_ns, &spec.ext_if, cli.relay_cpu)?;
    let sink = SinkRun::start(lab, plan, keys.clone(), cli.load_cpu, true)?;
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
        worker_tids: Vec::new(),
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
