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
}

/// The Markdown report of one `dataplane` run, section by section.
pub(crate) fn dataplane_report(rep: &Report<'_>) -> anyhow::Result<String> {
    let mut md = String::new();
    header(&mut md, rep)?;
    summary(&mut md, rep)?;
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
    Ok(())
}

/// One row per path.
fn summary(md: &mut String, rep: &Report<'_>) -> anyhow::Result<()> {
    let Report { r, base, .. } = *rep;
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

/// The goal lines, each with its verdict.
fn goals(md: &mut String, rep: &Report<'_>) -> anyhow::Result<()> {
    let Report { r, base, .. } = *rep;
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
        let path = cli.out.join(file);
        std::fs::create_dir_all(&cli.out)?;
        match line_chart(&path, title, "offered load (kpps)", y, &s, log) {
            Ok(()) => writeln!(md, "* [{title}]({file})")?,
            Err(e) => writeln!(md, "* {title}: plot failed: {e}")?,
        }
    }
    Ok(())
}
