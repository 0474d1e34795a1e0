//! `tollgate run` and `tollgate check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use tollgate_server::config::Config;

/// `tollgate run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The configuration file (see deploy/tollgate.toml).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Control-plane threads (SIP, TLS, timers).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Log filter (tracing EnvFilter syntax), overridden by RUST_LOG.
    #[arg(long, default_value = "info")]
    pub log: String,
}

/// `tollgate check-config`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The configuration file.
    pub config: PathBuf,
}

fn init_logs(filter: &str, json: bool) {
    let f = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let b = tracing_subscriber::fmt()
        .with_env_filter(f)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

/// Runs the daemon.
pub fn run(a: RunArgs) -> ExitCode {
    let json = Config::load(&a.config)
        .ok()
        .and_then(|c| c.ops.log_format)
        .is_some_and(|f| f == "json");
    init_logs(&a.log, json);
    match tollgate_server::run(&a.config, a.threads) {
        Ok(s) => {
            if s.calls_left > 0 {
                tracing::warn!(calls = s.calls_left, "exited with calls still up");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("tollgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Validates a configuration and prints the effective one.
pub fn check(a: CheckArgs) -> ExitCode {
    match Config::load(&a.config) {
        Ok(c) => match tollgate_server::convert::b2bua_config(&c) {
            Ok(_) => {
                println!("# {}: valid. Effective configuration:", a.config.display());
                print!("{}", c.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", a.config.display());
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("{}: {e}", a.config.display());
            ExitCode::FAILURE
        }
    }
}
