//! The Grafana dashboard (`deploy/grafana/tollgate-dashboard.json`) against the real daemon.
//!
//! Starts `tollgate run` on loopback addresses with the socket data path (no root needed),
//! scrapes `/metrics`, and checks that every metric name in the dashboard's PromQL (panel
//! targets and template variable queries) is one the daemon exposes. Exposed names come from
//! the `# TYPE` lines, which prometheus-client writes for every registered family even before
//! it has a sample: a counter family `x` is queried as `x_total`, a histogram `x` as
//! `x_bucket`, `x_sum` and `x_count`, anything else as `x`. Also checks the dashboard is
//! importable: one Prometheus data source variable that every panel and query uses.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use common::Scratch;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tollgate_simua::hostile;
use tollgate_simua::labconf::LabAddrs;
use tollgate_simua::process::{Launch, TollgateProcess, scrape, wait_listening};

/// The data source variable every panel refers to.
const DS: &str = "${DS_PROMETHEUS}";

fn dashboard() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/grafana/tollgate-dashboard.json");
    let text = std::fs::read_to_string(&p).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A scratch directory removed on drop.
/// Every PromQL string in the dashboard: panel targets' `expr`, template variables' `query`
/// and `definition`.
fn promql(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "definition" | "query", Value::String(s)) => out.push(s.clone()),
                    _ => promql(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| promql(v, out)),
        _ => {}
    }
}

/// The metric names in a PromQL expression: identifiers (`[A-Za-z_:][A-Za-z0-9_:]*`) that
/// start with `tollgate_`. Label values inside quotes are skipped.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = expr.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' || c == '\'' {
            // A string literal (label value, regex): skip to its closing quote.
            let mut escaped = false;
            for (_, d) in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if d == '\\' {
                    escaped = true;
                } else if d == c {
                    break;
                }
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' || d == ':' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let word = &expr[i..end];
            if word.starts_with("tollgate_") {
                names.push(word.to_owned());
            }
        } else if c.is_ascii_digit() {
            // A number (or a duration such as 5m): not an identifier.
            while chars
                .peek()
                .is_some_and(|&(_, d)| d.is_ascii_alphanumeric() || d == '.')
            {
                chars.next();
            }
        }
    }
    names
}

/// Sample names the exposition allows queries for, from its `# TYPE` lines (and any sample
/// lines, for completeness).
fn exposed_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut f = rest.split_whitespace();
            let (Some(name), Some(kind)) = (f.next(), f.next()) else {
                continue;
            };
            match kind {
                "counter" => {
                    names.insert(format!("{}_total", name.trim_end_matches("_total")));
                }
                "histogram" => {
                    for s in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{s}"));
                    }
                }
                _ => {
                    names.insert(name.to_owned());
                }
            }
        } else if !line.starts_with('#')
            && let Some(name) = line.split(['{', ' ']).next()
            && !name.is_empty()
        {
            names.insert(name.to_owned());
        }
    }
    names
}

#[test]
fn tokenizer_finds_metric_names_and_skips_label_values() {
    let e = r#"histogram_quantile(0.95, sum by (le) (rate(tollgate_call_setup_seconds_bucket{instance=~"tollgate_x.*"}[5m]))) / 8e3 + tollgate_calls_active"#;
    assert_eq!(
        metric_names(e),
        [
            "tollgate_call_setup_seconds_bucket",
            "tollgate_calls_active"
        ]
    );
}

#[test]
fn dashboard_is_importable_with_one_prometheus_variable() {
    let d = dashboard();
    let vars = d["templating"]["list"].as_array().unwrap();
    let ds: Vec<&Value> = vars.iter().filter(|v| v["type"] == "datasource").collect();
    assert_eq!(ds.len(), 1, "one data source variable");
    assert_eq!(ds[0]["name"], "DS_PROMETHEUS");
    assert_eq!(ds[0]["query"], "prometheus");
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap();
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate id: {title}"
        );
        assert!(p["gridPos"]["w"].as_u64().unwrap() > 0, "{title}: no size");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], DS, "{title}: panel data source");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no queries");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], DS, "{title}: query data source");
            assert!(
                !t["expr"].as_str().unwrap().is_empty(),
                "{title}: empty query"
            );
        }
    }
}

#[test]
fn every_dashboard_metric_is_exposed_by_the_daemon() {
    let mut exprs = Vec::new();
    promql(&dashboard(), &mut exprs);
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(
        used.len() >= 20,
        "the dashboard should use most of the daemon's metrics, found {used:?}"
    );

    // The daemon, on loopback addresses of its own (not the demo's 127.0.1.x/127.0.2.x, so a
    // demo running meanwhile does not collide), socket data path: no root needed. The gateway
    // trunk takes 2 calls a second, and nothing listens at the internal next hop.
    let lab = LabAddrs {
        relay_ext: IpAddr::from([127, 0, 61, 1]),
        relay_int: IpAddr::from([127, 0, 62, 1]),
        gw: IpAddr::from([127, 0, 61, 2]),
        int: IpAddr::from([127, 0, 62, 2]),
        ..LabAddrs::loopback()
    }
    .with_trunk_limits(2, 0);
    let dir = Scratch::new("dashboard");
    let pki = lab.pki(&dir.0.join("certs")).unwrap();
    let metrics_addr = {
        // A free port on the internal address (the listener is closed again before tollgate
        // binds it; nothing else uses this address).
        let l = std::net::TcpListener::bind(SocketAddr::new(lab.relay_int, 0)).unwrap();
        l.local_addr().unwrap()
    };
    let cfg = lab.tollgate_config(
        &pki,
        "socket",
        1,
        &dir.0.join("cdr.jsonl"),
        Some(metrics_addr),
    );
    let cfg_path = dir.0.join("tollgate.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let log = dir.0.join("tollgate.log");
    let mut tg = TollgateProcess::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_tollgate")),
        &cfg_path,
        &log,
        &Launch::default(),
    )
    .unwrap();
    let ext_sip = SocketAddr::new(lab.relay_ext, 5060);
    let int_sip = SocketAddr::new(lab.relay_int, 5061);
    let up = wait_listening(None, metrics_addr, Duration::from_secs(30))
        && wait_listening(None, ext_sip, Duration::from_secs(10));
    let text = if up {
        drive(lab.gw, ext_sip, int_sip);
        scrape(None, metrics_addr)
    } else {
        String::new()
    };
    let status = tg.stop(Duration::from_secs(10));
    assert!(
        up && text.contains("# TYPE "),
        "no metrics from tollgate on {metrics_addr}; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "tollgate did not drain cleanly: {status:?}"
    );

    // The body, after the HTTP response head.
    let body = text
        .split_once("\r\n\r\n")
        .map_or(text.as_str(), |(_, b)| b);
    let exposed = exposed_names(body);
    let not_live: Vec<&String> = used.iter().filter(|n| !exposed.contains(*n)).collect();
    let unexplained: Vec<&&String> = not_live
        .iter()
        .filter(|n| !NOT_DRIVEN.iter().any(|(m, _)| *m == n.as_str()))
        .collect();
    assert!(
        unexplained.is_empty(),
        "dashboard queries metrics the daemon does not expose: {unexplained:?}\nexposed: {exposed:?}"
    );
    // What this test cannot make happen must still be a name the daemon registers.
    let registered = registered_not_driven();
    let unregistered: Vec<&&String> = not_live
        .iter()
        .filter(|n| !registered.contains(**n))
        .collect();
    assert!(
        unregistered.is_empty(),
        "dashboard queries metrics the daemon does not register: {unregistered:?}"
    );
    println!(
        "{} metric names in the dashboard: {} seen on the running daemon's /metrics, {:?} \
         checked against its registry",
        used.len(),
        used.len() - not_live.len(),
        not_live
    );
}

/// Metrics whose series this test cannot make appear (prometheus-client writes a family only
/// once it has a series), and why. Each is checked against the daemon's registry in process
/// instead ([`registered_not_driven`]).
const NOT_DRIVEN: &[(&str, &str)] = &[
    (
        "tollgate_media_drops_total",
        "a drop needs a relayed media flow and a bad packet on it",
    ),
    (
        "tollgate_xdp_total",
        "XDP data path only: needs root and a NIC with XDP",
    ),
    (
        "tollgate_boundary_drops_total",
        "the XDP boundary filter: needs root and a NIC with XDP (this daemon runs on loopback with ext.boundary off)",
    ),
];

/// The sample names of the [`NOT_DRIVEN`] families, as `tollgate_server`'s own `Metrics`
/// renders them once they have a series.
fn registered_not_driven() -> BTreeSet<String> {
    use tollgate_server::metrics::{Metrics, labels};
    let m = Metrics::new();
    m.media_drops
        .get_or_create(&labels(&[("side", "ext"), ("reason", "test")]))
        .inc();
    m.xdp
        .get_or_create(&labels(&[("nic", "ext"), ("counter", "rx")]))
        .inc();
    m.boundary_drops
        .get_or_create(&labels(&[("side", "ext"), ("reason", "port")]))
        .inc();
    exposed_names(&m.render())
}

/// Makes the daemon count things: a gateway floods 10 INVITEs in a second (2 admitted, whose
/// next hop does not answer; 8 refused by the trunk's rate), a stranger connects to the
/// gateway side, a client sends garbage instead of a TLS handshake on the internal side; then
/// waits for the media thread's once-a-second refresh.
fn drive(gw: IpAddr, ext_sip: SocketAddr, int_sip: SocketAddr) {
    use tokio::io::AsyncWriteExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let flood = hostile::flood(
            gw,
            ext_sip,
            0,
            10,
            Duration::from_secs(1),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert!(flood.s503 > 0, "nothing refused by admission: {flood:?}");
        // A stranger (not a trunk address) is refused before any SIP.
        let stranger = IpAddr::from([127, 0, 61, 9]);
        if let Ok(mut s) = hostile::connect(stranger, ext_sip).await {
            let _ = s.write_all(&hostile::options(0, ext_sip, stranger)).await;
        }
        // Not a TLS ClientHello: the handshake fails.
        let mut s = hostile::connect(IpAddr::from([127, 0, 62, 9]), int_sip)
            .await
            .unwrap();
        let _ = s.write_all(b"OPTIONS sip:x SIP/2.0\r\n\r\n").await;
        let _ = s.shutdown().await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    });
}
