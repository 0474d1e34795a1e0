//! `cargo xtask fuzz`: a bounded run of every cargo-fuzz target in the workspace.
//!
//! Fuzz crates live next to the crate they fuzz (`userspace/<crate>/fuzz`). Each target runs for
//! `--seconds` from its committed seed corpus; new inputs go to a scratch corpus under
//! `target/fuzz-corpus/`, so the committed corpus only changes on purpose, and crashes are kept
//! under `target/fuzz-artifacts/`. All fuzz crates share one target directory (`target/fuzz`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::util::{Step, workspace_root};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Only targets whose name contains this.
    #[arg(long)]
    pub only: Option<String>,
}

/// (fuzz dir, target name) for every target in the workspace.
pub fn targets(root: &Path) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root.join("userspace"))? {
        let dir = e?.path().join("fuzz");
        let targets = dir.join("fuzz_targets");
        if !targets.is_dir() {
            continue;
        }
        let mut names: Vec<String> = std::fs::read_dir(&targets)?
            .filter_map(|f| f.ok())
            .filter_map(|f| {
                f.file_name()
                    .to_str()?
                    .strip_suffix(".rs")
                    .map(str::to_owned)
            })
            .collect();
        names.sort();
        out.extend(names.into_iter().map(|n| (dir.clone(), n)));
    }
    out.sort();
    Ok(out)
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let root = workspace_root();
    let all = targets(&root)?;
    let chosen: Vec<_> = all
        .iter()
        .filter(|(_, n)| a.only.as_ref().is_none_or(|o| n.contains(o.as_str())))
        .collect();
    if chosen.is_empty() {
        bail!("no fuzz targets found");
    }
    println!("fuzz: {} targets, {} s each", chosen.len(), a.seconds);
    let mut results = Vec::new();
    for (dir, name) in chosen {
        let crate_name = dir
            .parent()
            .and_then(Path::file_name)
            .and_then(|s| s.to_str())
            .unwrap_or("?");
        let s = Step::start("fuzz", &format!("{crate_name}/{name}"));
        let scratch = root.join("target/fuzz-corpus").join(name);
        let artifacts = root.join("target/fuzz-artifacts").join(name);
        std::fs::create_dir_all(&scratch)?;
        std::fs::create_dir_all(&artifacts)?;
        let seeds = dir.join("corpus").join(name);
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&root)
            .env("CARGO_TARGET_DIR", root.join("target/fuzz"))
            .args(["+nightly", "fuzz", "run", "--fuzz-dir"])
            .arg(dir)
            .arg(name)
            .arg(&scratch);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        cmd.arg("--")
            .arg(format!("-max_total_time={}", a.seconds))
            .arg("-rss_limit_mb=3072")
            .arg(format!("-artifact_prefix={}/", artifacts.display()));
        // libFuzzer reports every new coverage point; keep the log short unless it fails.
        let out = cmd
            .output()
            .with_context(|| format!("could not run cargo fuzz for {name}"))?;
        let text = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = text.lines().collect();
        if !out.status.success() {
            for l in lines.iter().rev().take(80).rev() {
                println!("    {l}");
            }
            bail!(
                "fuzz target {name} found a failure ({}); artifacts in {}",
                out.status,
                artifacts.display()
            );
        }
        if let Some(l) = lines.iter().rev().find(|l| l.starts_with("Done ")) {
            println!("    {l}");
        }
        results.push(s.done());
    }
    println!("fuzz summary: every target ran clean");
    for (n, secs) in results {
        println!("  ok  {n:<40} {secs:>6.1}s");
    }
    Ok(())
}
