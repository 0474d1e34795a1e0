//! The subcommands of the `tollgate` binary, one module each.

use std::process::ExitCode;

mod sip;

/// What `tollgate` can do.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Print the build's version and the features compiled in.
    Version,
    /// SIP tools (`tollgate sip lint FILE`).
    Sip {
        /// What to do.
        #[command(subcommand)]
        cmd: sip::SipCommand,
    },
}

/// Runs a subcommand and maps its outcome to the process exit code.
pub fn dispatch(cmd: Command) -> ExitCode {
    match cmd {
        Command::Version => {
            println!("tollgate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Sip { cmd } => sip::run(cmd),
    }
}
