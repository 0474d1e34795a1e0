//! `cargo xtask`: set up the toolchain, run the lab, run CI, the demo and the benchmarks.
//!
//! Every long-running step prints what it is doing and a summary at the end.

mod bench;
mod ci;
mod demo;
mod fuzz;
mod lab;
mod package;
mod setup;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Tollgate developer tasks", long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what builds and tests need (idempotent): Debian packages, rust-src for nightly,
    /// bpf-linker built against the nightly's own LLVM, cargo-fuzz, cargo-deb.
    Setup(setup::Args),
    /// The three-namespace lab: gw <-> relay <-> int.
    Lab(lab::Args),
    /// Everything CI checks: setup, fmt, clippy, all tests (namespace tests need root), the
    /// Debian package (release build, lintian, install test), fuzzing.
    Ci(ci::Args),
    /// The main job: N calls each way through Tollgate in the lab, audio verified.
    Demo(demo::Args),
    /// The Debian package: release build, cargo-deb, lintian, and (as root) an install,
    /// upgrade, remove and purge in a throwaway root.
    Package(package::Args),
    /// A bounded run of every cargo-fuzz target (nightly).
    Fuzz(fuzz::Args),
    /// Benchmarks, reports under target/bench-report/ (`bench [all|srtp|dataplane|scale]`).
    Bench(bench::Args),
}

/// Runs the command; a failure prints its chain of causes (never a backtrace, which would push
/// the failing test's own message out of a CI log excerpt) and exits with 1.
fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Setup(a) => setup::run(&a),
        Cmd::Lab(a) => lab::run(&a),
        Cmd::Ci(a) => ci::run(&a),
        Cmd::Demo(a) => demo::run(&a),
        Cmd::Package(a) => package::run(&a),
        Cmd::Fuzz(a) => fuzz::run(&a),
        Cmd::Bench(a) => bench::run(&a),
    }
}
