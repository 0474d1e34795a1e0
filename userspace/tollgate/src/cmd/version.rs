//! `tollgate version`: what this binary is, for operators and for the package test.
//!
//! Prints the package version, the git commit it was built from (when the build knew it), the
//! eBPF ABI version shared with the XDP program, and the data paths compiled in. The first
//! line is always `tollgate <version>`.

use std::process::ExitCode;

/// The git commit recorded by `build.rs` (`TOLLGATE_GIT_COMMIT`, or `git rev-parse` at build
/// time); `None` when built outside a git checkout.
fn commit() -> Option<&'static str> {
    option_env!("TOLLGATE_GIT_COMMIT").filter(|c| !c.is_empty())
}

/// The report, one `key: value` per line after the first.
pub fn report() -> String {
    let xdp = if tollgate_dataplane::xdp::object_built() {
        "socket, xdp (XDP program built in)"
    } else {
        "socket only (XDP program NOT built: bpf-linker was missing; run `cargo xtask setup` \
         and rebuild)"
    };
    format!(
        "tollgate {version}\ncommit: {commit}\nebpf abi: {abi}\ndata paths: {xdp}\n",
        version = env!("CARGO_PKG_VERSION"),
        commit = commit().unwrap_or("unknown"),
        abi = tollgate_common::ABI_VERSION,
    )
}

/// Prints the report.
pub fn run() -> ExitCode {
    print!("{}", report());
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_version_abi_and_data_paths() {
        let r = report();
        let mut lines = r.lines();
        assert_eq!(
            lines.next(),
            Some(format!("tollgate {}", env!("CARGO_PKG_VERSION")).as_str())
        );
        assert!(r.contains(&format!("ebpf abi: {}\n", tollgate_common::ABI_VERSION)));
        assert!(r.contains("data paths: socket"));
        assert!(r.lines().any(|l| l.starts_with("commit: ")));
    }
}
