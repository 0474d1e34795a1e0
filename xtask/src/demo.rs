//! `cargo xtask demo`: the main job. Builds Tollgate and the demo drivers in release mode and
//! runs the end-to-end demo (`userspace/tollgate-simua/src/bin/tollgate-demo.rs`; `--restart`
//! there too), or with `--failover` the two-node failover demo (`tollgate-demo-failover.rs`).

use std::process::Command;

use anyhow::bail;

use crate::util::{Step, run_visible, workspace_root};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Calls per direction (with --restart: concurrent calls, all inbound).
    #[arg(long, default_value_t = 20)]
    pub calls: usize,
    /// Seconds of audio per call (default 4; with --restart, long enough to outlast the
    /// restart: 12 s plus the time to set the calls up).
    #[arg(long)]
    pub talk_secs: Option<u64>,
    /// Data path: xdp (default as root) or socket (default otherwise).
    #[arg(long)]
    pub datapath: Option<String>,
    /// Calls survive a restart: `--calls` concurrent calls with the call-state store on,
    /// Tollgate killed with SIGKILL mid-call and started again; prints each call's media gap
    /// and the split of the restart, then PASS or FAIL.
    #[arg(long)]
    pub restart: bool,
    /// With --restart: the call-state store, `file` (a redb file) or `valkey` (a private
    /// Valkey/Redis server started for the demo).
    #[arg(long, default_value = "file", value_parser = ["file", "valkey"], requires = "restart")]
    pub store: String,
    /// Node failover (root only): two relay nodes with keepalived and Valkey, `--calls` calls
    /// (default 20) through node A; node A is killed, then in a second round its links are
    /// cut; the calls continue through node B. Prints each call's media gap, then PASS or FAIL.
    #[arg(long, conflicts_with = "restart")]
    pub failover: bool,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let root = tollgate_netlab::is_root();
    if root {
        let s = Step::start("demo", "setup (toolchain pieces and Debian packages)");
        crate::setup::run(&crate::setup::Args::default())?;
        s.done();
    } else {
        println!(
            "==> not root: skipping setup; the demo runs on loopback with the socket data path"
        );
    }
    if a.failover && !root {
        bail!("demo --failover needs root (namespaces, bridges, keepalived, XDP)");
    }
    let s = Step::start(
        "demo",
        "cargo build --release (tollgate, tollgate-demo, tollgate-demo-failover)",
    );
    let mut build = Command::new("cargo");
    build.current_dir(workspace_root()).args([
        "build",
        "--release",
        "-p",
        "tollgate",
        "-p",
        "tollgate-simua",
        "--bin",
        "tollgate",
        "--bin",
        "tollgate-demo",
        "--bin",
        "tollgate-demo-failover",
    ]);
    if root {
        build.env("TOLLGATE_REQUIRE_EBPF", "1");
    }
    run_visible(&mut build)?;
    s.done();
    let target = workspace_root().join("target/release");
    if a.failover {
        let mut demo = Command::new(target.join("tollgate-demo-failover"));
        demo.current_dir(workspace_root())
            .arg("--tollgate")
            .arg(target.join("tollgate"))
            .args(["--calls", &a.calls.to_string()]);
        if let Some(t) = a.talk_secs {
            demo.args(["--talk-secs", &t.to_string()]);
        }
        if let Some(d) = &a.datapath {
            demo.args(["--datapath", d]);
        }
        let status = demo.status()?;
        if !status.success() {
            bail!("the failover demo failed ({status})");
        }
        return Ok(());
    }
    let mut demo = Command::new(target.join("tollgate-demo"));
    demo.current_dir(workspace_root())
        .arg("--tollgate")
        .arg(target.join("tollgate"))
        .args(["--calls", &a.calls.to_string()]);
    match (a.talk_secs, a.restart) {
        (Some(t), _) => {
            demo.args(["--talk-secs", &t.to_string()]);
        }
        // The restart demo picks a talk time that outlasts the restart.
        (None, true) => {}
        (None, false) => {
            demo.args(["--talk-secs", "4"]);
        }
    }
    if a.restart {
        demo.args(["--restart", "--store", &a.store]);
    }
    if let Some(d) = &a.datapath {
        demo.args(["--datapath", d]);
    }
    let status = demo.status()?;
    if !status.success() {
        bail!("the demo failed ({status})");
    }
    Ok(())
}
