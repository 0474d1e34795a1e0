//! `tollgate capacity`: how many cores and NIC queues for N concurrent G.711 calls, and how
//! many calls fit on C cores, per data path, from measured per-packet relay costs.
//!
//! The costs come from the benchmark results file (`cargo xtask bench dataplane` writes
//! `target/bench-report/results.json`) or, without one, from built-in defaults whose provenance
//! is printed. The model and its assumptions are documented in `deploy/CAPACITY.md`; in short:
//!
//! * a call is two media directions, each `1000 / ptime` RTP packets/s plus one RTCP packet
//!   every `rtcp_interval` seconds;
//! * the gateway-to-internal direction costs the measured RTP-to-SRTP relay CPU per packet; the
//!   reverse direction costs that times `unprotect_factor` (1.0 by default: SRTP unprotect and
//!   protect cost about the same, see `bench srtp`); RTCP packets cost the same as RTP;
//! * CPU needed = calls x packets/s per call x cost; cores = ceil(CPU needed x headroom);
//! * on the XDP path each worker core owns one queue of each NIC, so queues per NIC = cores;
//!   the socket path and rtpengine do not bind NIC queues.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

/// Arguments of `tollgate capacity`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Size for this many concurrent calls (cores and NIC queues needed).
    #[arg(long)]
    calls: Option<u64>,
    /// How many calls fit on this many cores (the reverse question).
    #[arg(long)]
    cores: Option<u32>,
    /// Benchmark results (default: target/bench-report/results.json if present, else built-in
    /// defaults).
    #[arg(long)]
    results: Option<PathBuf>,
    /// Provision CPU = needed CPU x headroom (1.5 plans for cores at most 67% busy).
    #[arg(long, default_value_t = 1.5)]
    headroom: f64,
    /// Packetization time in milliseconds.
    #[arg(long, default_value_t = 20)]
    ptime_ms: u32,
    /// Seconds between RTCP packets per direction.
    #[arg(long, default_value_t = 5.0)]
    rtcp_interval: f64,
    /// Cost of an internal-to-gateway (SRTP-to-RTP) packet relative to a gateway-to-internal one.
    #[arg(long, default_value_t = 1.0)]
    unprotect_factor: f64,
    /// Only this data path (xdp, socket, rtpengine).
    #[arg(long)]
    path: Option<String>,
}

/// The traffic model of one call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallModel {
    /// Packetization time, ms.
    pub ptime_ms: u32,
    /// Seconds between RTCP packets, per direction.
    pub rtcp_interval_s: f64,
    /// Cost of the SRTP-to-RTP direction relative to RTP-to-SRTP.
    pub unprotect_factor: f64,
}

impl CallModel {
    /// Packets per second in one direction (RTP + RTCP).
    pub fn pps_per_direction(&self) -> f64 {
        let rtp = 1000.0 / f64::from(self.ptime_ms.max(1));
        let rtcp = if self.rtcp_interval_s > 0.0 {
            1.0 / self.rtcp_interval_s
        } else {
            0.0
        };
        rtp + rtcp
    }

    /// Packets per second of one call, both directions.
    pub fn pps_per_call(&self) -> f64 {
        2.0 * self.pps_per_direction()
    }

    /// Relay CPU seconds per second (cores at 100%) one call needs at `ns_per_pkt`.
    pub fn cpu_per_call(&self, ns_per_pkt: f64) -> f64 {
        self.pps_per_direction() * ns_per_pkt * (1.0 + self.unprotect_factor) / 1e9
    }
}

/// One data path's measured cost.
#[derive(Debug, Clone, PartialEq)]
pub struct PathCost {
    /// `xdp`, `socket` or `rtpengine`.
    pub path: String,
    /// Relay CPU per RTP-to-SRTP packet, ns.
    pub ns_per_pkt: f64,
    /// Where the figure comes from.
    pub source: String,
}

/// The answer for one path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sizing {
    /// CPU needed without headroom, in cores.
    pub cpu_needed: f64,
    /// Cores to provision (with headroom, rounded up, at least 1).
    pub cores: u32,
    /// NIC queues per NIC (XDP path only).
    pub nic_queues: Option<u32>,
    /// Calls one core carries with headroom.
    pub calls_per_core: f64,
}

/// Whether the path binds one NIC queue per worker core.
pub fn binds_queues(path: &str) -> bool {
    path == "xdp"
}

/// Cores and queues for `calls` concurrent calls.
pub fn size_for_calls(calls: u64, cost: &PathCost, m: &CallModel, headroom: f64) -> Sizing {
    let per_call = m.cpu_per_call(cost.ns_per_pkt);
    let cpu_needed = calls as f64 * per_call;
    let cores = ((cpu_needed * headroom.max(1.0)) - 1e-9).ceil().max(1.0) as u32;
    Sizing {
        cpu_needed,
        cores,
        nic_queues: binds_queues(&cost.path).then_some(cores),
        calls_per_core: calls_per_core(cost, m, headroom),
    }
}

/// Calls one core carries with `headroom`.
pub fn calls_per_core(cost: &PathCost, m: &CallModel, headroom: f64) -> f64 {
    let per_call = m.cpu_per_call(cost.ns_per_pkt) * headroom.max(1.0);
    if per_call > 0.0 { 1.0 / per_call } else { 0.0 }
}

/// Calls that fit on `cores` cores with `headroom`.
pub fn calls_for_cores(cores: u32, cost: &PathCost, m: &CallModel, headroom: f64) -> u64 {
    (f64::from(cores) * calls_per_core(cost, m, headroom)).floor() as u64
}

/// Built-in costs, used when no results file is found.
///
/// Provenance: `cargo xtask bench dataplane` (500 flows) on the development VM: a shared
/// 2-vCPU AMD EPYC guest, kernel 6.18, veth (AF_XDP copy mode, native XDP, interrupt
/// moderation bounded at 500 µs), rtpengine 10.5 userspace; relay CPU per packet at 90% of each path's
/// maximum zero-loss rate. See
/// `deploy/CAPACITY.md` for the run these come from.
pub const DEFAULTS: [(&str, f64); 3] =
    [("xdp", 2776.0), ("socket", 13307.0), ("rtpengine", 21070.0)];

/// Reads per-path costs from a results file (`dataplane.paths[]`): the relay CPU per packet at
/// 90% of the path's maximum zero-loss rate, or at the paced load if that is missing.
pub fn costs_from_results(text: &str, file: &Path) -> anyhow::Result<Vec<PathCost>> {
    let v: serde_json::Value = serde_json::from_str(text).context("results file is not JSON")?;
    let paths = v
        .get("dataplane")
        .and_then(|d| d.get("paths"))
        .and_then(|p| p.as_array())
        .context("no dataplane.paths in the results file (run `cargo xtask bench dataplane`)")?;
    let date = v
        .get("dataplane")
        .and_then(|d| d.get("host"))
        .and_then(|h| h.get("date_unix"))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let mut out = Vec::new();
    for p in paths {
        let Some(name) = p.get("name").and_then(|n| n.as_str()) else {
            continue;
        };
        let pick = |k: &str| {
            p.get(k)
                .and_then(|t| t.get("relay_ns_per_pkt"))
                .and_then(serde_json::Value::as_f64)
                .filter(|x| x.is_finite() && *x > 0.0)
                .map(|ns| {
                    let rate = p
                        .get(k)
                        .and_then(|t| t.get("offered_pps"))
                        .and_then(serde_json::Value::as_f64)
                        .unwrap_or(0.0);
                    (
                        ns,
                        format!(
                            "{} ({k} trial, {rate:.0} pps offered, run at unix time {date})",
                            file.display()
                        ),
                    )
                })
        };
        if let Some((ns, source)) = pick("at90").or_else(|| pick("paced")) {
            out.push(PathCost {
                path: name.to_owned(),
                ns_per_pkt: ns,
                source,
            });
        }
    }
    if out.is_empty() {
        bail!("the results file has no usable per-packet costs");
    }
    Ok(out)
}

fn default_costs() -> Vec<PathCost> {
    DEFAULTS
        .iter()
        .map(|(p, ns)| PathCost {
            path: (*p).to_owned(),
            ns_per_pkt: *ns,
            source: "built-in default (see `tollgate capacity --help` and deploy/CAPACITY.md)"
                .into(),
        })
        .collect()
}

fn load(a: &Args) -> anyhow::Result<Vec<PathCost>> {
    let file = a.results.clone().or_else(|| {
        let p = PathBuf::from("target/bench-report/results.json");
        p.exists().then_some(p)
    });
    let mut costs = match file {
        Some(f) => {
            let text =
                std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            costs_from_results(&text, &f)?
        }
        None => default_costs(),
    };
    if let Some(p) = &a.path {
        costs.retain(|c| &c.path == p);
        if costs.is_empty() {
            bail!("no cost for path {p}");
        }
    }
    Ok(costs)
}

fn run_inner(a: &Args) -> anyhow::Result<()> {
    if a.calls.is_none() && a.cores.is_none() {
        bail!("give --calls N (cores needed) and/or --cores C (calls that fit)");
    }
    if a.headroom.is_nan() || a.headroom < 1.0 {
        bail!("--headroom must be at least 1.0");
    }
    let costs = load(a)?;
    let m = CallModel {
        ptime_ms: a.ptime_ms,
        rtcp_interval_s: a.rtcp_interval,
        unprotect_factor: a.unprotect_factor,
    };
    println!(
        "model: G.711, {} ms ptime -> {:.1} packets/s per call (2 directions x ({:.0} RTP + {:.2} RTCP)); \
         SRTP->RTP costs {:.2}x RTP->SRTP; headroom x{:.2}",
        a.ptime_ms,
        m.pps_per_call(),
        1000.0 / f64::from(a.ptime_ms.max(1)),
        m.pps_per_direction() - 1000.0 / f64::from(a.ptime_ms.max(1)),
        a.unprotect_factor,
        a.headroom
    );
    for c in &costs {
        println!(
            "cost  {:<10} {:>8.0} ns/packet  from {}",
            c.path, c.ns_per_pkt, c.source
        );
    }
    println!();
    if let Some(n) = a.calls {
        println!("{n} concurrent calls:");
        println!(
            "  {:<10} {:>12} {:>8} {:>16} {:>14}",
            "path", "CPU needed", "cores", "NIC queues/NIC", "calls/core"
        );
        for c in &costs {
            let s = size_for_calls(n, c, &m, a.headroom);
            println!(
                "  {:<10} {:>12.2} {:>8} {:>16} {:>14.0}",
                c.path,
                s.cpu_needed,
                s.cores,
                s.nic_queues
                    .map_or_else(|| "n/a (no binding)".to_owned(), |q| q.to_string()),
                s.calls_per_core
            );
        }
    }
    if let Some(k) = a.cores {
        println!("calls on {k} core(s):");
        for c in &costs {
            println!(
                "  {:<10} {:>10} calls{}",
                c.path,
                calls_for_cores(k, c, &m, a.headroom),
                if binds_queues(&c.path) {
                    format!(" ({k} NIC queue(s) per NIC, one per worker core)")
                } else {
                    String::new()
                }
            );
        }
    }
    println!(
        "\nNot included: the control plane (SIP, TLS), the OS and NIC interrupt work outside the relay \
         process; see deploy/CAPACITY.md."
    );
    Ok(())
}

/// Runs `tollgate capacity`.
pub fn run(a: Args) -> ExitCode {
    match run_inner(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate capacity: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m() -> CallModel {
        CallModel {
            ptime_ms: 20,
            rtcp_interval_s: 5.0,
            unprotect_factor: 1.0,
        }
    }

    fn cost(path: &str, ns: f64) -> PathCost {
        PathCost {
            path: path.into(),
            ns_per_pkt: ns,
            source: "test".into(),
        }
    }

    #[test]
    fn packets_per_call() {
        assert!((m().pps_per_call() - 100.4).abs() < 1e-9);
        let no_rtcp = CallModel {
            rtcp_interval_s: 0.0,
            ..m()
        };
        assert!((no_rtcp.pps_per_call() - 100.0).abs() < 1e-9);
        let p30 = CallModel {
            ptime_ms: 30,
            ..m()
        };
        assert!((p30.pps_per_direction() - (1000.0 / 30.0 + 0.2)).abs() < 1e-9);
    }

    #[test]
    fn cores_for_calls_round_up_with_headroom() {
        // 1000 ns/pkt: one call = 100.4 pps x 1 us = 100.4 us/s of CPU.
        let c = cost("xdp", 1000.0);
        let s = size_for_calls(10_000, &c, &m(), 1.0);
        assert!((s.cpu_needed - 1.004).abs() < 1e-9);
        assert_eq!(s.cores, 2);
        assert_eq!(s.nic_queues, Some(2));
        let s = size_for_calls(9_960, &c, &m(), 1.0);
        assert_eq!(s.cores, 1, "0.99998 cores fits on one");
        let s = size_for_calls(10_000, &c, &m(), 1.5);
        assert_eq!(s.cores, 2, "1.506 -> 2");
        let s = size_for_calls(1, &cost("socket", 1000.0), &m(), 1.5);
        assert_eq!(s.cores, 1, "at least one core");
        assert_eq!(s.nic_queues, None, "the socket path binds no queues");
    }

    #[test]
    fn reverse_matches_forward() {
        let c = cost("xdp", 2500.0);
        for cores in [1u32, 2, 8, 32] {
            let n = calls_for_cores(cores, &c, &m(), 1.5);
            assert!(
                size_for_calls(n, &c, &m(), 1.5).cores <= cores,
                "{n} calls fit on {cores}"
            );
            assert!(size_for_calls(n + 1, &c, &m(), 1.5).cores >= cores);
        }
        // Unprotect twice as expensive: 2/3 of the calls.
        let heavy = CallModel {
            unprotect_factor: 2.0,
            ..m()
        };
        let a = calls_per_core(&c, &m(), 1.0);
        let b = calls_per_core(&c, &heavy, 1.0);
        assert!((b / a - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn reads_results_file() {
        let text = r#"{"dataplane": {"host": {"date_unix": 5}, "paths": [
            {"name": "xdp", "at90": {"relay_ns_per_pkt": 1500.0, "offered_pps": 90000.0}, "paced": {"relay_ns_per_pkt": 4000.0}},
            {"name": "socket", "at90": null, "paced": {"relay_ns_per_pkt": 6000.0, "offered_pps": 25000.0}},
            {"name": "rtpengine", "at90": {"relay_ns_per_pkt": null}}
        ]}}"#;
        let c = costs_from_results(text, Path::new("r.json")).expect("parses");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].path, "xdp");
        assert_eq!(c[0].ns_per_pkt, 1500.0);
        assert!(c[0].source.contains("at90"));
        assert_eq!(c[1].ns_per_pkt, 6000.0);
        assert!(c[1].source.contains("paced"));
        assert!(costs_from_results("{}", Path::new("x")).is_err());
        assert!(costs_from_results("not json", Path::new("x")).is_err());
    }

    #[test]
    fn defaults_are_sane() {
        for c in default_costs() {
            assert!(c.ns_per_pkt > 0.0);
            assert!(calls_per_core(&c, &m(), 1.5) > 1.0);
        }
    }
}
