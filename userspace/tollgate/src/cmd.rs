//! The subcommands of the `tollgate` binary, one module each.

use std::process::ExitCode;

/// What `tollgate` can do.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Print the build's version and the features compiled in.
    Version,
}

/// Runs a subcommand and maps its outcome to the process exit code.
pub fn dispatch(cmd: Command) -> ExitCode {
    match cmd {
        Command::Version => {
            println!("tollgate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}
