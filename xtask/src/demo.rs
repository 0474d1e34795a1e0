//! `cargo xtask demo`: the main job. Builds Tollgate and the demo driver in release mode and
//! runs the end-to-end demo (see `userspace/tollgate-simua/src/bin/tollgate-demo.rs`).

use std::process::Command;

use anyhow::bail;

use crate::util::{Step, run_visible, workspace_root};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Calls per direction.
    #[arg(long, default_value_t = 20)]
    pub calls: usize,
    /// Seconds of audio per call.
    #[arg(long, default_value_t = 4)]
    pub talk_secs: u64,
    /// Data path: xdp (default as root) or socket (default otherwise).
    #[arg(long)]
    pub datapath: Option<String>,
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
    let s = Step::start("demo", "cargo build --release (tollgate, tollgate-demo)");
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
    ]);
    if root {
        build.env("TOLLGATE_REQUIRE_EBPF", "1");
    }
    run_visible(&mut build)?;
    s.done();
    let target = workspace_root().join("target/release");
    let mut demo = Command::new(target.join("tollgate-demo"));
    demo.current_dir(workspace_root())
        .arg("--tollgate")
        .arg(target.join("tollgate"))
        .args([
            "--calls",
            &a.calls.to_string(),
            "--talk-secs",
            &a.talk_secs.to_string(),
        ]);
    if let Some(d) = &a.datapath {
        demo.args(["--datapath", d]);
    }
    let status = demo.status()?;
    if !status.success() {
        bail!("the demo failed ({status})");
    }
    Ok(())
}
