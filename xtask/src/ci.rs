//! `cargo xtask ci`: the whole check that CI runs (`.ci/run` calls this).

use std::process::Command;

use crate::util::{Step, run_visible, workspace_root};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Skip `cargo xtask setup` (when the machine is known to be ready).
    #[arg(long)]
    pub no_setup: bool,
    /// Seconds per fuzz target (a bounded smoke run of each).
    #[arg(long, default_value_t = 20)]
    pub fuzz_seconds: u64,
    /// Seed of the property tests' generator. CI pins it so a run can be repeated exactly;
    /// plain `cargo test` draws a fresh one each time and so keeps exploring (proptest prints
    /// the minimal failing input, which then goes into that test's list of known sequences).
    #[arg(long, default_value_t = PROPTEST_SEED)]
    pub proptest_seed: u64,
    /// Skip the Debian package step (`cargo xtask package`: a release build, lintian and the
    /// install test).
    #[arg(long)]
    pub no_package: bool,
}

/// Ignored tests that are not lab tests, left out of the lab step: a crash test's child
/// process (its parent runs it) and a 40 s measurement run by hand.
const NOT_LAB_TESTS: [&str; 2] = ["crash_child", "advert_interval_takeover_times"];

/// The property-test seed CI uses unless told otherwise.
const PROPTEST_SEED: u64 = 20_261_127;

fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(workspace_root()).args(args);
    // In CI the XDP object must be built: a missing bpf-linker is an error, not a warning.
    c.env("TOLLGATE_REQUIRE_EBPF", "1");
    c
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let mut done = Vec::new();
    if !args.no_setup {
        let s = Step::start("ci", "setup");
        crate::setup::run(&crate::setup::Args::default())?;
        done.push(s.done());
    }
    if tollgate_netlab::is_root() {
        println!("running as root: the namespace/XDP/end-to-end lab tests will run");
    } else {
        println!(
            "not root: the namespace/XDP lab tests are not run (cargo test lists them as ignored)"
        );
    }

    let s = Step::start("ci", "cargo fmt --check");
    run_visible(&mut cargo(&["fmt", "--all", "--", "--check"]))?;
    done.push(s.done());

    let s = Step::start("ci", "cargo clippy --all-targets -D warnings");
    run_visible(&mut cargo(&[
        "clippy",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    done.push(s.done());

    let s = Step::start("ci", "cargo test (all default members; lab tests ignored)");
    println!("property tests use seed {}", args.proptest_seed);
    run_visible(
        cargo(&["test", "--all-targets"]).env("PROPTEST_RNG_SEED", args.proptest_seed.to_string()),
    )?;
    done.push(s.done());

    if tollgate_netlab::is_root() {
        let s = Step::start("ci", "cargo test -- --ignored (the lab tests, as root)");
        let mut lab = vec!["test", "--tests", "--", "--ignored"];
        for name in NOT_LAB_TESTS {
            lab.extend(["--skip", name]);
        }
        run_visible(&mut cargo(&lab))?;
        done.push(s.done());
    } else {
        println!("lab tests: not run (not root); they show as ignored above");
    }

    if args.no_package {
        println!("Debian package: not built (--no-package)");
    } else {
        let s = Step::start(
            "ci",
            "cargo xtask package (release build, lintian, install test)",
        );
        crate::package::run(&crate::package::Args::default())?;
        done.push(s.done());
    }

    let s = Step::start(
        "ci",
        &format!("fuzz every target for {} s", args.fuzz_seconds),
    );
    crate::fuzz::run(&crate::fuzz::Args {
        seconds: args.fuzz_seconds,
        only: None,
    })?;
    done.push(s.done());

    println!("ci summary:");
    for (name, secs) in &done {
        println!("  ok  {name:<60} {secs:>7.1}s");
    }
    Ok(())
}
