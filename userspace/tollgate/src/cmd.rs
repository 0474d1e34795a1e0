//! The subcommands of the `tollgate` binary, one module each.

use std::process::ExitCode;

pub mod capacity;
pub mod srtp;

/// What `tollgate` can do.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Print the build's version and the features compiled in.
    Version,
    /// Decrypt SDES-keyed SRTP/SRTCP in a capture into plain RTP/RTCP, or encrypt the reverse.
    Srtp(srtp::Args),
    /// Cores and NIC queues for N concurrent G.711 calls (and calls per C cores), per data
    /// path, from measured per-packet costs (deploy/CAPACITY.md).
    Capacity(capacity::Args),
}

/// Runs a subcommand and maps its outcome to the process exit code.
pub fn dispatch(cmd: Command) -> ExitCode {
    match cmd {
        Command::Version => {
            println!("tollgate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Srtp(a) => srtp::run(a),
        Command::Capacity(a) => capacity::run(a),
    }
}
