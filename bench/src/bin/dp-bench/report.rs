//! The Markdown report and plots of a `dataplane` run, and the shared results file.

use super::*;

pub(crate) fn merge_results(out: &Path, key: &str, v: Value) -> anyhow::Result<()> {
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

pub(crate) fn f0(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0}")
    } else {
        "n/a".into()
    }
}
pub(crate) fn f1(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "n/a".into()
    }
}
pub(crate) fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 && a > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "n/a".into()
    }
}

/// Relay CPU per packet of two paths at the highest offered rate both relayed without loss in
/// their searches (the same load for both).
pub(crate) fn common_rate_ns(a: &PathResult, b: &PathResult) -> (f64, f64) {
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

pub(crate) fn find<'a>(r: &'a [PathResult], n: &str) -> Option<&'a PathResult> {
    r.iter().find(|p| p.name == n)
}

/// The baseline trial at `label`'s rate, if the lab itself kept up there (above the lab's own
/// limit the baseline's latency is the generator's backlog, not a reference).
pub(crate) fn base_for<'a>(base: &'a [TrialResult], label: &str) -> Option<&'a TrialResult> {
    base.iter()
        .find(|t| t.label == label)
        .filter(|t| t.gen_kept_up && t.loss_pct == 0.0 && t.gen_busy + t.sink_busy <= 0.9)
}

pub(crate) fn added(v: f64, b: Option<f64>) -> f64 {
    match b {
        Some(b) => (v - b).max(0.0),
        None => f64::NAN,
    }
}

/// What the data plane report is made of: one run's results.
#[derive(Clone, Copy)]
pub(crate) struct Report<'a> {
    pub(crate) cli: &'a Cli,
    pub(crate) host: &'a Value,
    pub(crate) flows: usize,
    pub(crate) r: &'a [PathResult],
    pub(crate) base: &'a [TrialResult],
    pub(crate) lab_limit: Option<(f64, bool)>,
    pub(crate) all: &'a [(String, TrialResult)],
    /// The paths asked for (`--paths`): a goal whose paths were all asked for must be measured.
    pub(crate) paths: &'a [String],
    /// Injected noise (duty, period ms), if any.
    pub(crate) noise: Option<(f64, f64)>,
    /// The CPUs the noise ran on.
    pub(crate) noise_cpus: &'a [usize],
    /// CPU steal over the whole run, % of all CPU time.
    pub(crate) steal_pct: f64,
    /// Noisy runs: the last clean run with as many flows (`results.json`'s `dataplane`), if any.
    pub(crate) clean: Option<&'a Value>,
}

impl Report<'_> {
    /// Whether every one of `paths` was asked for.
    fn asked(&self, paths: &[&str]) -> bool {
        paths.iter().all(|p| self.paths.iter().any(|q| q == p))
    }
}

/// A goal's input: a finite figure, or the run fails (a goal line is never printed without
/// its inputs).
pub(crate) fn need(v: f64, what: &str) -> anyhow::Result<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        bail!("goal input not measured: {what}")
    }
}

/// Assumed kernel and driver CPU per relayed packet with a zero-copy AF_XDP driver (RX
/// descriptor into the UMEM, the XDP program and redirect, TX descriptor and completion; no
/// copies, no skb), ns: an assumption for the projection, not a measurement (this lab has veth,
/// copy mode only). The order of magnitude of published xdpsock l2fwd results on 25-100 GbE
/// NICs (tens of Mpps per core, all-in).
pub(crate) const ZC_DRIVER_NS_ASSUMED: f64 = 50.0;

/// Mean and max steal of a path's trials.
fn steal_of(all: &[(String, TrialResult)], path: &str) -> (f64, f64) {
    let v: Vec<f64> = all
        .iter()
        .filter(|(p, _)| p == path)
        .map(|(_, t)| t.steal_pct)
        .collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    (
        v.iter().sum::<f64>() / v.len() as f64,
        v.iter().copied().fold(0.0, f64::max),
    )
}

/// The Markdown report of one `dataplane` run, section by section.
pub(crate) fn dataplane_report(rep: &Report<'_>) -> anyhow::Result<String> {
    let mut md = String::new();
    header(&mut md, rep)?;
    summary(&mut md, rep)?;
    floor(&mut md, rep)?;
    workers(&mut md, rep)?;
    with_without_noise(&mut md, rep)?;
    ratios(&mut md, rep)?;
    goals(&mut md, rep)?;
    headroom(&mut md, rep)?;
    startup(&mut md, rep)?;
    plots(&mut md, rep)?;
    Ok(md)
}

/// The title, the lab and method paragraphs.
fn header(md: &mut String, rep: &Report<'_>) -> anyhow::Result<()> {
    let Report {
        cli, host, flows, ..
    } = *rep;
    writeln!(
        md,
        "# Data plane benchmark: Tollgate XDP path vs socket path vs rtpengine vs the floor{}\n",
        if rep.noise.is_some() {
            " (NOISY RUN: injected noise)"
        } else {
            ""
        }
    )?;
    if let Some((duty, period)) = rep.noise {
        writeln!(
            md,
            "**Noisy run.** Injected noise: a SCHED_FIFO {NOISE_RT_PRIO} thread (above the relay's 50, the sink's 45 and the \
             generator's 40) on CPUs {:?} (relay on CPU {}, load on CPU {}), busy {:.0}% of every {period} ms (it spins {:.1} ms, then sleeps), \
             for the whole run: the relay, the generator and the sink are preempted for those slices as a VM's vCPU is by \
             steal. Figures here are not comparable with a clean run's except as ratios. The hog's CPU is not in \
             the `load core` figures; a generator held off its schedule by the hog marks the trial (and the maximum \
             next to it) as load-bound. Relay CPU per packet can be *lower* than in a clean run: packets that \
             queue up during a slice are relayed in fewer, fuller batches with fewer wakeups.\n",
            rep.noise_cpus,
            cli.relay_cpu,
            cli.load_cpu,
            duty * 100.0,
            duty * period
        )?;
    }
    writeln!(
        md,
        "CPU steal of the VM over the whole run (`st` in vmstat, from /proc/stat): **{:.2}%** of all CPU time; per trial in the tables below.\n",
        rep.steal_pct
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
    Ok(())
}

/// One row per path.
fn summary(md: &mut String, rep: &Report<'_>) -> anyhow::Result<()> {
    let Report { r, base, .. } = *rep;
    writeln!(md, "## Summary\n")?;
    writeln!(
        md,
        "| path | max zero-loss pps | limit | relay ns/pkt @paced | pkts per relay-CPU-s @paced | relay ns/pkt @90% | worker busy ns/pkt @90% | relay CPU @90% | p50/p99/p99.9 us @50% | added p99 us @50% | loss @90% | steal mean/max % |"
    )?;
    writeln!(
        md,
        "|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"
    )?;
    for p in r {
        let paced = p.paced.as_ref();
        let b50 = p
            .at50
            .as_ref()
            .and_then(|_| base_for(base, &format!("{}@50%", p.name)))
            .map(|t| t.p99_us);
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
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
            {
                let (m, x) = steal_of(rep.all, &p.name);
                format!("{} / {}", f1(m), f1(x))
            },
        )?;
    }
    Ok(())
}

/// The XDP path with one worker against two (`xdp2`: two NIC queues, two workers), and what
/// that predicts for a host with more cores.
fn workers(md: &mut String, rep: &Report<'_>) -> anyhow::Result<()> {
    let Report { r, .. } = *rep;
    let (Some(one), Some(two)) = (find(r, "xdp"), find(r, "xdp2")) else {
        return Ok(());
    };
    let ns = |t: Option<&TrialResult>| t.map_or(f64::NAN, |t| t.relay_ns_per_pkt);
    writeln!(md, "\n## Multi-queue: one worker against two (same run)\n")?;
    writeln!(
        md,
        "`xdp2` is the XDP path with every veth end set to two queues and two AF_XDP workers, one per \
         queue, each owning its queue of both NICs; the generator's flows spread over the two queues by \
         their hash. This lab has two cores and the load (generator and sink) needs one, so both workers \
         are pinned to the relay's core: the figure that carries over to a bigger host is the relay CPU \
         per packet, not the rate (each added worker would have a core of its own there).\n"
    )?;
    writeln!(
        md,
        "| | 1 worker (`xdp`) | 2 workers (`xdp2`) | 2 workers / 1 worker |\n|---|---:|---:|---:|"
    )?;
    let (a, b) = common_rate_ns(two, one);
    for (label, x1, x2) in [
        (
            "relay ns/pkt at the paced load",
            ns(one.paced.as_ref()),
            ns(two.paced.as_ref()),
        ),
        (
            "relay ns/pkt at 90% of own max",
            ns(one.at90.as_ref()),
            ns(two.at90.as_ref()),
        ),
        ("relay ns/pkt at the highest rate both relayed", b, a),
        (
            "max zero-loss pps (one core for all workers)",
            one.max_zero_loss_pps,
            two.max_zero_loss_pps,
        ),
    ] {
        writeln!(
            md,
            "| {label} | {} | {} | {} |",
            f0(x1),
            f0(x2),
            ratio(x2, x1)
        )?;
    }
    let c1 = ns(one.at90.as_ref());
    let c2 = ns(two.at90.as_ref());
    if c1.is_finite() && c2.is_finite() && c2 > 0.0 {
        writeln!(
            md,
            "\nPrediction (not a measurement): with a core per worker and a load that does not bind, \
             N workers relay about N x {} pps at 90% of a core each ({} ns per packet with 2 workers \
             sharing a core, against {} with one: per-packet cost {} as workers are added).",
            f0(0.9e9 / c2),
            f0(c2),
            f0(c1),
            if c2 <= c1 * 1.1 { "holds" } else { "rises" }
        )?;
    }
    Ok(())
}

/// Every path against the floor, and where the XDP worker's CPU goes.
fn floor(md: &mut String, rep: &Report<'_>) -> anyhow::Result<()> {
    let Report { r, .. } = *rep;
    let Some(fl) = find(r, "floor") else {
        return Ok(());
    };
    let ns = |t: Option<&TrialResult>| t.map_or(f64::NAN, |t| t.relay_ns_per_pkt);
    writeln!(md, "\n## Against the floor (same run)\n")?;
    writeln!(
        md,
        "The floor path is the XDP path with a null worker (`tollgate_dataplane::floor_worker`): the same XDP program \
         and steering map, the same AF_XDP sockets, UMEM, rings, batch, TX kick, fill and idle policy as the XDP \
         worker, but per frame only a header parse and the egress Ethernet/IPv4/UDP header (UDP checksum \
         included) written from a table precomputed per relay port. No SRTP, no flow state; its sink counts \
         plain RTP. Whatever the floor costs, any relay on AF_XDP copy mode over veth in this VM costs too; a path's \
         multiple of the floor is what its own work adds on top. The relay process's CPU includes, on veth, \
         the receive processing of the frames it transmits (the peer's IP/UDP input into the sink's socket runs \
         in the softirq raised by the worker's TX kick), the same for every path.\n"
    )?;
    writeln!(
        md,
        "| path | relay ns/pkt @paced | x floor @paced | relay ns/pkt @90% of own max | x floor @90% | ns/pkt at the highest rate both relayed (path / floor) | x floor there |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|")?;
    for p in r {
        let (a, b) = common_rate_ns(p, fl);
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} / {} | {} |",
            p.name,
            f0(ns(p.paced.as_ref())),
            ratio(ns(p.paced.as_ref()), ns(fl.paced.as_ref())),
            f0(ns(p.at90.as_ref())),
            ratio(ns(p.at90.as_ref()), ns(fl.at90.as_ref())),
            f0(a),
            f0(b),
            ratio(a, b)
        )?;
    }
    writeln!(
        md,
        "\n### Where the worker's CPU goes (at 90% of each path's max)\n"
    )?;
    writeln!(
        md,
        "Measured per trial, per packet delivered: the relay process's scheduler run time (all threads); the \
         worker thread's run time (`/proc/<pid>/task/<tid>/schedstat`), split into user and system time from the \
         thread's `stat` (clock ticks, so sampled: a few % over a {:.0} s trial); the rest of the process \
         (control thread, idle loops of other threads); and ksoftirqd's share of the machine (softirq work that \
         left the threads raising it: not in the relay process's figure). The worker's *user* time is its own code \
         (ring handling, parse, lookup, SRTP, header); its *system* time is its syscalls (the TX kick, `poll`), the \
         kernel's copy-mode transmit (an skb per frame, copied out of the UMEM) and the softirq work charged to it. \
         The receive-side copy into the UMEM and the XDP program run in the generator's `sendmmsg` on the load \
         core (veth delivers on the sending CPU), so no relay figure here contains them.\n",
        rep.cli.latency_secs
    )?;
    writeln!(
        md,
        "| path | relay process ns/pkt | worker run ns/pkt | worker user ns/pkt | worker system ns/pkt | worker busy (wall) ns/pkt | ksoftirqd % |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|")?;
    for p in r.iter().filter(|p| p.name != "rtpengine") {
        let Some(t) = p.at90.as_ref() else { continue };
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.1} |",
            p.name,
            f0(t.relay_ns_per_pkt),
            f0(t.worker_run_ns_per_pkt),
            f0(t.worker_user_ns_per_pkt),
            f0(t.worker_sys_ns_per_pkt),
            f0(t.worker_busy_ns_per_pkt),
            100.0 * t.ksoftirqd_busy
        )?;
    }
    if let Some(x) = find(r, "xdp").and_then(|p| p.at90.as_ref()) {
        let fu = fl
            .at90
            .as_ref()
            .map_or(f64::NAN, |t| t.worker_user_ns_per_pkt);
        let xu = x.worker_user_ns_per_pkt;
        writeln!(
            md,
            "\n**Projection for zero-copy drivers (not a measurement).** With a NIC whose driver does AF_XDP in \
             zero-copy mode, the kernel's copies and skb handling above go away; what remains is the worker's \
             userspace work (measured here) plus the driver's per-packet descriptor work, which this lab cannot \
             measure (veth has copy mode only) and which is *assumed* to be {ZC_DRIVER_NS_ASSUMED:.0} ns/packet (RX \
             descriptor, XDP program and redirect, TX descriptor and completion; the order of magnitude of published \
             xdpsock l2fwd results on 25-100 GbE NICs). Projected XDP path: {} ns user + {ZC_DRIVER_NS_ASSUMED:.0} ns \
             assumed = **~{} ns/packet** (userspace part alone: {} ns); projected floor: {} + {ZC_DRIVER_NS_ASSUMED:.0} = \
             ~{} ns/packet; ratio {}. The worker's user time includes its empty polls of the rings between batches \
             (it naps rather than spins below capacity); the syscall per TX kick remains in zero-copy mode \
             (about one per 32 frames) and is not counted.\n",
            f0(xu),
            f0(xu + ZC_DRIVER_NS_ASSUMED),
            f0(xu),
            f0(fu),
            f0(fu + ZC_DRIVER_NS_ASSUMED),
            ratio(xu + ZC_DRIVER_NS_ASSUMED, fu + ZC_DRIVER_NS_ASSUMED)
        )?;
    }
    Ok(())
}

/// Noisy runs: each path's max zero-loss rate beside the last clean run's.
fn with_without_noise(md: &mut String, rep: &Report<'_>) -> anyhow::Result<()> {
    let (Some(_), Some(clean)) = (rep.noise, rep.clean) else {
        return Ok(());
    };
    let when = clean["host"]["date_unix"].as_u64().unwrap_or(0);
    let ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_sub(when);
    writeln!(md, "\n## With and without noise\n")?;
    writeln!(
        md,
        "Clean figures from the last clean run in `results.json` (same flows, started {} min before this \
         report; CPU steal over it {}%): a different run on the same shared VM, so the clean/noisy ratio is \
         indicative, not exact.\n",
        ago / 60,
        clean["steal_pct"]
            .as_f64()
            .map_or("n/a".into(), |v| format!("{v:.2}"))
    )?;
    writeln!(
        md,
        "| path | max zero-loss pps, clean | with noise | noisy / clean | relay ns/pkt @90%, clean | with noise |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|")?;
    for p in rep.r {
        let c = clean["paths"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"].as_str() == Some(&p.name)));
        let cmax = c
            .and_then(|c| c["max_zero_loss_pps"].as_f64())
            .unwrap_or(f64::NAN);
        let c90 = c
            .and_then(|c| c["at90"]["relay_ns_per_pkt"].as_f64())
            .unwrap_or(f64::NAN);
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            p.name,
            f0(cmax),
            f0(p.max_zero_loss_pps),
            ratio(p.max_zero_loss_pps, cmax),
            f0(c90),
            p.at90
                .as_ref()
                .map_or("n/a".into(), |t| f0(t.relay_ns_per_pkt)),
        )?;
    }
    Ok(())
}

/// XDP against the socket path and against rtpengine, metric by metric.
fn ratios(md: &mut String, rep: &Report<'_>) -> anyhow::Result<()> {
    let Report { r, base, .. } = *rep;
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
    Ok(())
}

/// The goal lines, each with its verdict. A goal whose paths were all asked for is judged
/// from figures of this run; if one is missing, the run fails rather than print a goal
/// without its inputs. A goal whose paths were not asked for is listed as not run.
fn goals(md: &mut String, rep: &Report<'_>) -> anyhow::Result<()> {
    let Report { r, base, .. } = *rep;
    writeln!(md, "\n## Goals\n")?;
    if rep.noise.is_some() {
        writeln!(
            md,
            "(Noisy run: every figure below was measured under injected noise.)\n"
        )?;
    }
    let x = find(r, "xdp");
    let sock = find(r, "socket");
    let rtpe = find(r, "rtpengine");
    let flo = find(r, "floor");
    let paced_ns = |p: Option<&PathResult>, n: &str| {
        need(
            p.and_then(|p| p.paced.as_ref())
                .map_or(f64::NAN, |t| t.relay_ns_per_pkt),
            &format!("{n} relay ns/pkt at the paced load"),
        )
    };
    let ns90 = |p: Option<&PathResult>, n: &str| {
        need(
            p.and_then(|p| p.at90.as_ref())
                .map_or(f64::NAN, |t| t.relay_ns_per_pkt),
            &format!("{n} relay ns/pkt at 90% of its max"),
        )
    };
    let common = |o: Option<&PathResult>, n: &str| -> anyhow::Result<f64> {
        let v = match (x, o) {
            (Some(a), Some(b)) => {
                let (na, nb) = common_rate_ns(a, b);
                na / nb
            }
            _ => f64::NAN,
        };
        need(
            v,
            &format!("xdp and {n} relay ns/pkt at a rate both relayed without loss"),
        )
    };
    let verdict = |ok: bool| if ok { "met" } else { "not met" };
    let not_run = |md: &mut String, goal: &str, paths: &str| {
        writeln!(md, "* {goal}: not run (needs paths {paths})")
    };
    // Three operating points: the same light load (wakeups dominate, the VM's timer and IPI
    // exits most of all), the highest rate both paths relay, and each path near its own
    // capacity (what `tollgate capacity` sizes with).
    let g1 = "XDP CPU per packet <= 1/3 of the socket path's (XDP/socket)";
    if rep.asked(&["xdp", "socket"]) {
        writeln!(md, "* {g1}:")?;
        for (label, v) in [
            (
                "at the paced load (same offered rate, light)",
                paced_ns(x, "xdp")? / paced_ns(sock, "socket")?,
            ),
            (
                "at the highest rate both relayed without loss",
                common(sock, "socket")?,
            ),
            (
                "at 90% of each path's own maximum (capacity)",
                ns90(x, "xdp")? / ns90(sock, "socket")?,
            ),
        ] {
            writeln!(
                md,
                "  * {label}: {v:.3} ({:.2}x) -> **{}**",
                1.0 / v,
                verdict(v <= 1.0 / 3.0)
            )?;
        }
    } else {
        not_run(md, g1, "xdp, socket")?;
    }
    // Tollgate's paths against the peer relay, in packets per relay-CPU-second (the inverse of
    // relay ns per packet), at the paced load and near each path's own capacity.
    for (path, want) in [("xdp", 6.0), ("socket", 3.0)] {
        let goal = format!("{path} path >= {want}x rtpengine's packets per relay-CPU-second");
        if !rep.asked(&[path, "rtpengine"]) {
            not_run(md, &goal, &format!("{path}, rtpengine"))?;
            continue;
        }
        let p = find(r, path);
        writeln!(md, "* {goal}:")?;
        for (label, v) in [
            (
                "at the paced load (same offered rate)",
                paced_ns(rtpe, "rtpengine")? / paced_ns(p, path)?,
            ),
            (
                "at 90% of each path's own maximum (capacity)",
                ns90(rtpe, "rtpengine")? / ns90(p, path)?,
            ),
        ] {
            writeln!(md, "  * {label}: {v:.2}x -> **{}**", verdict(v >= want))?;
        }
    }
    let g3 = "XDP path relay ns per packet at 90%: at most 1.3x the floor path's";
    if rep.asked(&["xdp", "floor"]) {
        let v = ns90(x, "xdp")? / ns90(flo, "floor")?;
        writeln!(
            md,
            "* {g3}: {v:.2}x ({} / {} ns, each at 90% of its own max) -> **{}**",
            f0(ns90(x, "xdp")?),
            f0(ns90(flo, "floor")?),
            verdict(v <= 1.3)
        )?;
    } else {
        not_run(md, g3, "xdp, floor")?;
    }
    let g4 = "With injected noise: XDP's max zero-loss rate at least the socket path's";
    match (rep.noise, x, sock) {
        (Some((duty, period)), Some(a), Some(b)) => {
            let (va, vb) = (
                need(a.max_zero_loss_pps, "xdp max zero-loss rate")?,
                need(b.max_zero_loss_pps, "socket max zero-loss rate")?,
            );
            writeln!(
                md,
                "* {g4} (hog busy {:.0}% of every {period} ms on CPUs {:?}): XDP {} pps vs socket {} pps ({}) -> **{}**",
                duty * 100.0,
                rep.noise_cpus,
                f0(va),
                f0(vb),
                ratio(va, vb),
                verdict(va >= vb)
            )?;
        }
        (Some(_), _, _) => not_run(md, g4, "xdp, socket")?,
        (None, _, _) => writeln!(
            md,
            "* {g4}: judged in noisy runs only (`--noise`, report `dataplane-noise.md`)"
        )?,
    }
    let g5 = "Added latency p99 at 50% load <= 1/5 of rtpengine's";
    if !rep.asked(&["xdp", "rtpengine"]) {
        not_run(md, g5, "xdp, rtpengine")?;
        return Ok(());
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
    let lx = need(lx, "xdp added latency p99 (50% load or paced)")?;
    let lr = need(lr, "rtpengine added latency p99 (50% load or paced)")?;
    writeln!(
        md,
        "* {g5}, {at}: XDP {} us vs rtpengine {} us (ratio {:.3}) -> **{}**",
        f1(lx),
        f1(lr),
        lx / lr,
        if lx <= 0.0 || lr <= 0.0 {
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
    Ok(())
}

/// Whether the generator and the sink kept up (the lab's own limit).
fn headroom(md: &mut String, rep: &Report<'_>) -> anyhow::Result<()> {
    let Report {
        cli,
        lab_limit,
        all,
        ..
    } = *rep;
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
        "| path | trial | offered pps | delivered | loss % | relay ns/pkt | relay CPU % (usr/sys) | gen busy | sink busy | load core | ksoftirqd | gen kept up | p50 us | p99 us | p99.9 us | steal % |"
    )?;
    writeln!(
        md,
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"
    )?;
    for (p, t) in all {
        writeln!(
            md,
            "| {p} | {} | {} | {} | {:.3} | {} | {:.0} ({:.0}/{:.0}) | {:.0}% | {:.0}% | {:.0}% | {:.1}% | {} | {} | {} | {} | {:.1} |",
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
            f1(t.p999_us),
            t.steal_pct
        )?;
    }
    Ok(())
}

/// What each relay reported at start, and the XDP worker's profile when taken.
fn startup(md: &mut String, rep: &Report<'_>) -> anyhow::Result<()> {
    let Report { r, .. } = *rep;
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
    Ok(())
}

/// The SVG plots of CPU, loss and latency against offered load.
fn plots(md: &mut String, rep: &Report<'_>) -> anyhow::Result<()> {
    let Report { cli, all, .. } = *rep;
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
        let file = if rep.noise.is_some() {
            format!("noise-{file}")
        } else {
            file.to_owned()
        };
        let path = cli.out.join(&file);
        std::fs::create_dir_all(&cli.out)?;
        match line_chart(&path, title, "offered load (kpps)", y, &s, log) {
            Ok(()) => writeln!(md, "* [{title}]({file})")?,
            Err(e) => writeln!(md, "* {title}: plot failed: {e}")?,
        }
    }
    Ok(())
}
