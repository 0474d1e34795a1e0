//! The subcommands of the `tollgate` binary, one module each.

use std::process::ExitCode;

pub mod capacity;
pub mod capture;
pub mod ctl;
pub mod daemon;
pub mod sip;
pub mod srtp;
pub mod version;

/// What `tollgate` can do.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Run the Mediation Server with a configuration file (SIGTERM drains, SIGHUP reloads).
    Run(daemon::RunArgs),
    /// Validate a configuration file and print the effective configuration.
    CheckConfig(daemon::CheckArgs),
    /// Print the version, the git commit, the eBPF ABI version and the data paths built in.
    Version,
    /// Decrypt SDES-keyed SRTP/SRTCP in a capture into plain RTP/RTCP, or encrypt the reverse.
    Srtp(srtp::Args),
    /// SIP tools (`tollgate sip lint FILE`).
    Sip {
        /// What to do.
        #[command(subcommand)]
        cmd: sip::SipCommand,
    },
    /// Talk to a running daemon over its control socket: calls, hangup, trunks, drain, ...
    Ctl(ctl::Args),
    /// Cores and NIC queues for N concurrent G.711 calls (and calls per C cores), per data
    /// path, from measured per-packet costs (deploy/CAPACITY.md).
    Capacity(capacity::Args),
}

/// Runs a subcommand and maps its outcome to the process exit code.
pub fn dispatch(cmd: Command) -> ExitCode {
    match cmd {
        Command::Run(a) => daemon::run(a),
        Command::CheckConfig(a) => daemon::check(a),
        Command::Version => version::run(),
        Command::Srtp(a) => srtp::run(a),
        Command::Sip { cmd } => sip::run(cmd),
        Command::Capacity(a) => capacity::run(a),
        Command::Ctl(a) => ctl::run(a),
    }
}
