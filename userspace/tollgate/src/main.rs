//! `tollgate`: the Mediation Server daemon and the operator tools that share its code.
//!
//! Each subcommand lives in its own module under `cmd/`; `main` only parses and dispatches.

mod cmd;

use clap::Parser;

/// Tollgate: a SIP/TCP + RTP to SIP/MTLS + SRTP Mediation Server.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cmd::dispatch(cli.command)
}
