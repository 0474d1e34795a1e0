//! Small helpers for running commands with visible progress.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.parent().map(PathBuf::from).unwrap_or(dir)
}

/// Runs a command with inherited stdio, failing with its command line if it fails.
pub fn run_visible(cmd: &mut Command) -> anyhow::Result<()> {
    let line = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {line}"))?;
    if !status.success() {
        bail!("{line} failed: {status}");
    }
    Ok(())
}

/// Runs a command and captures stdout; `None` if it could not run or failed.
pub fn output_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Times a named step and prints its start and end.
pub struct Step {
    name: String,
    start: Instant,
}

impl Step {
    pub fn start(prefix: &str, name: &str) -> Self {
        println!("==> [{prefix}] {name}");
        Step {
            name: name.to_owned(),
            start: Instant::now(),
        }
    }

    pub fn done(self) -> (String, f64) {
        let secs = self.start.elapsed().as_secs_f64();
        println!("    done: {} ({secs:.1}s)", self.name);
        (self.name, secs)
    }
}
