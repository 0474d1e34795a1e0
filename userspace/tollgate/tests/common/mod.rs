//! Helpers shared by the `tollgate` binary's lab tests: a scratch directory, the binary, and
//! the daemon started in the lab's relay namespace.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tollgate_netlab::LabSpec;
use tollgate_simua::process::{Launch, TollgateProcess, wait_listening};

/// A directory under the system's temp dir, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// `tg-<tag>-<pid>`, created.
    pub fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("tg-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `tollgate` binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tollgate"))
}

/// `tollgate run --config cfg` in the lab's relay namespace, logging to `dir/tollgate.log`,
/// once it listens on `ext_sip` (seen from the gateway namespace); panics with the log if it
/// never does.
pub fn start_tollgate(
    spec: &LabSpec,
    cfg: &Path,
    dir: &Path,
    ext_sip: SocketAddr,
) -> TollgateProcess {
    let log = dir.join("tollgate.log");
    let tg = TollgateProcess::spawn(
        &bin(),
        cfg,
        &log,
        &Launch {
            netns: Some(&spec.relay_ns),
            ..Launch::default()
        },
    )
    .expect("tollgate starts");
    assert!(
        wait_listening(Some(&spec.gw_ns), ext_sip, Duration::from_secs(20)),
        "tollgate listens on {ext_sip}; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    tg
}

/// `calls` CDRs in `cdrs` (JSON lines), each answered with SRTP audio both ways and no SRTP
/// reject, half ended by a BYE from each side.
pub fn assert_cdrs(cdrs: &[serde_json::Value], calls: usize) {
    assert_eq!(cdrs.len(), calls, "one CDR per call");
    let mut by_side = [0, 0];
    for l in cdrs {
        assert!(l["answer"].as_f64().is_some(), "{l}");
        assert_eq!(l["media"]["srtp_auth_failures"].as_u64(), Some(0), "{l}");
        for d in ["ext_to_int", "int_to_ext"] {
            assert!(l["media"][d]["packets"].as_u64().unwrap() > 100, "{d}: {l}");
        }
        match l["cause"].as_str() {
            Some("bye_ext") => by_side[0] += 1,
            Some("bye_int") => by_side[1] += 1,
            other => panic!("cause {other:?}: {l}"),
        }
    }
    assert_eq!(
        by_side,
        [calls / 2, calls / 2],
        "BYEs from alternating sides"
    );
}

/// Every call worked with authenticated audio both ways until its end.
pub fn assert_calls_intact(
    report: &tollgate_simua::scenario::Report,
    plan: &tollgate_simua::scenario::Plan,
    expected: usize,
) {
    assert_eq!(
        report.ok(),
        expected,
        "every call carried on with intact, authenticated audio both ways"
    );
    for c in &report.calls {
        for (who, m) in [("caller", &c.caller), ("callee", &c.callee)] {
            assert_eq!(m.auth_failures, 0, "call {} {who}: SRTP rejects", c.index);
            let last = m.last_packet_ms.unwrap_or(0);
            assert!(
                last + 1500 >= plan.talk.as_millis() as u64,
                "call {} {who}: audio stopped at {last} ms",
                c.index
            );
        }
    }
}
