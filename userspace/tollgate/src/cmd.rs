//! The subcommands of the `tollgate` binary, one module each.

use std::process::ExitCode;

pub mod capacity;
pub mod capture;
pub mod ctl;
pub mod daemon;
pub mod sip;
pub mod srtp;

/// What `tollgate` can do.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Run the Mediation Server with a configuration file (SIGTERM drains, SIGHUP reloads).
    Run(daemon::RunArgs),
    /// Validate a configuration file and print the effective configuration.
    CheckConfig(daemon::CheckArgs),
    /// Print the build's version and whether the XDP data path is compiled in.
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
        Command::Version => {
            println!("tollgate {}", env!("CARGO_PKG_VERSION"));
            let xdp = if tollgate_dataplane::xdp::object_built() {
                "built in"
            } else {
                "NOT built (bpf-linker was missing; run `cargo xtask setup` and rebuild)"
            };
            println!("XDP data path: {xdp}");
            ExitCode::SUCCESS
        }
        Command::Srtp(a) => srtp::run(a),
        Command::Sip { cmd } => sip::run(cmd),
        Command::Capacity(a) => capacity::run(a),
        Command::Ctl(a) => ctl::run(a),
    }
}
