//! `cargo xtask setup`: everything a fresh Debian machine needs, installed idempotently.
//!
//! Each piece is checked first and reported as "present" or "installed"; a second run installs
//! nothing.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

use crate::util::{output_of, run_visible};

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Also install what `cargo xtask bench` needs (the peer relay, perf tools).
    #[arg(long)]
    pub bench: bool,
}

/// Debian packages the build and the tests need, and why.
const PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "ip netns / veth for the lab"),
    ("ethtool", "veth channels and offloads in the lab"),
    ("pkg-config", "locating C libraries for test harnesses"),
    (
        "libsrtp2-dev",
        "libsrtp, the SRTP oracle of the differential tests",
    ),
    (
        "libssl-dev",
        "OpenSSL for the libsrtp-with-OpenSSL baseline",
    ),
    ("clang", "libFuzzer runtime for cargo fuzz"),
    (
        "lintian",
        "checks the Debian package that `cargo xtask package` builds",
    ),
    ("help2man", "the package's man page, from `tollgate --help`"),
    (
        "binutils",
        "objcopy: cargo-deb moves the package's debug symbols into a -dbgsym.ddeb",
    ),
    (
        "baresip",
        "a real SIP user agent (SIP/TLS, SDES-SRTP; ausine, srtp, sndfile, ctrl_tcp modules \
         from baresip-core) for the interop test",
    ),
    (
        "tshark",
        "reads the pcaps of `tollgate ctl capture` in the capture lab test (SIP on 5061 via \
         -d tcp.port==5061,sip)",
    ),
    (
        "keepalived",
        "VRRP in the failover lab: moves the service addresses between relay nodes (its packaged \
         service is stopped and disabled; the lab runs one per node namespace)",
    ),
    (
        "nftables",
        "nft: the failover lab's partition drops VRRP on the switch's bridge (the kernel has no \
         tc drop action)",
    ),
    (
        "sngrep",
        "opens those pcaps (-I FILE -N) and decodes our HEP packets (-L) in the capture tests",
    ),
];

/// Extra packages for the benchmarks.
const BENCH_PACKAGES: &[(&str, &str)] = &[
    (
        "rtpengine-daemon",
        "the peer relay measured side by side (bench dataplane runs it in the lab, --table=-1)",
    ),
    (
        "linux-perf",
        "profiles of the relay and of SRTP (bench dataplane --profile)",
    ),
    (
        "util-linux",
        "taskset and chrt: the relay under test is pinned and run SCHED_FIFO",
    ),
    (
        "make",
        "building libsrtp with OpenSSL (bench srtp's baseline) from Debian's source",
    ),
];

/// What setup found or did, for the summary.
#[derive(Default)]
struct Report {
    present: Vec<String>,
    installed: Vec<String>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let mut r = Report::default();
    let mut pkgs: Vec<(&str, &str)> = PACKAGES.to_vec();
    let store = store_server_package();
    pkgs.push((
        store,
        "the call-state store's Valkey backend: tests and the demo start private instances on \
         Unix sockets (valkey-server where the archive has it, else redis-server)",
    ));
    if args.bench {
        pkgs.extend_from_slice(BENCH_PACKAGES);
    }
    let had_store = dpkg_installed(store);
    let had_keepalived = dpkg_installed("keepalived");
    let had_rtpengine = dpkg_installed("rtpengine-daemon");
    debian_packages(&pkgs, &mut r)?;
    if args.bench && !had_rtpengine {
        quiet_packaged_service("rtpengine-daemon");
    }
    if !had_store {
        quiet_packaged_service(store);
    }
    if !had_keepalived {
        quiet_packaged_service("keepalived");
    }
    rust_src(&mut r)?;
    bpf_linker(&mut r)?;
    cargo_fuzz(&mut r)?;
    cargo_deb(&mut r)?;
    println!("setup summary:");
    for p in &r.present {
        println!("  present    {p}");
    }
    for p in &r.installed {
        println!("  installed  {p}");
    }
    if r.installed.is_empty() {
        println!("  nothing to do: everything was already there");
    }
    Ok(())
}

/// Installs the benchmarks' Debian packages (what `setup --bench` adds) that are missing:
/// `cargo xtask bench` calls it first, so a peer it compares against is installed, not
/// skipped. Fails (with the apt error) if they cannot be installed.
pub fn bench_packages() -> anyhow::Result<()> {
    let had_rtpengine = dpkg_installed("rtpengine-daemon");
    let mut r = Report::default();
    debian_packages(BENCH_PACKAGES, &mut r)?;
    if !had_rtpengine {
        // The bench runs its own rtpengine in the lab's relay namespace.
        quiet_packaged_service("rtpengine-daemon");
    }
    for p in &r.installed {
        println!("  installed  {p}");
    }
    Ok(())
}

/// `valkey-server` if the Debian archive has it (trixie and later), else `redis-server`
/// (bookworm): the same protocol, and the tests take either binary.
fn store_server_package() -> &'static str {
    let has_valkey = output_of(Command::new("apt-cache").args(["policy", "valkey-server"]))
        .is_some_and(|s| s.contains("Candidate:") && !s.contains("Candidate: (none)"));
    if has_valkey || dpkg_installed("valkey-server") {
        "valkey-server"
    } else {
        "redis-server"
    }
}

/// The store's package starts a system-wide server on 127.0.0.1:6379, keepalived's a VRRP
/// daemon on /etc/keepalived/keepalived.conf; Tollgate's tests and demo run their own (private
/// sockets, lab namespaces), so the packaged service is stopped and disabled.
fn quiet_packaged_service(pkg: &str) {
    if Command::new("systemctl").arg("--version").output().is_err() {
        return;
    }
    let _ = Command::new("systemctl")
        .args(["disable", "--now", pkg])
        .status();
}

fn is_root() -> bool {
    tollgate_netlab::is_root()
}

fn dpkg_installed(pkg: &str) -> bool {
    output_of(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_some_and(|s| s.contains("install ok installed"))
}

fn debian_packages(pkgs: &[(&str, &str)], r: &mut Report) -> anyhow::Result<()> {
    let missing: Vec<&str> = pkgs
        .iter()
        .filter(|(p, _)| !dpkg_installed(p))
        .map(|(p, _)| *p)
        .collect();
    for (p, why) in pkgs {
        if !missing.contains(p) {
            r.present.push(format!("debian {p} ({why})"));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {missing:?}; run as root or `apt-get install {}`",
            missing.join(" ")
        );
    }
    println!("==> apt-get install {}", missing.join(" "));
    if missing
        .iter()
        .any(|p| p.starts_with("tshark") || p.starts_with("wireshark"))
    {
        // wireshark-common asks whether non-root users may capture (a setuid dumpcap):
        // answer no before the install, so it never prompts.
        run_stdin(
            &mut Command::new("debconf-set-selections"),
            "wireshark-common wireshark-common/install-setuid boolean false\n",
        )?;
    }
    run_visible(Command::new("apt-get").args(["update", "-q"]))?;
    run_visible(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing),
    )?;
    for p in missing {
        r.installed.push(format!("debian {p}"));
    }
    Ok(())
}

/// Runs `cmd` with `input` on its standard input; fails if it does.
fn run_stdin(cmd: &mut Command, input: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("could not run {cmd:?}"))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(input.as_bytes())?;
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn rust_src(r: &mut Report) -> anyhow::Result<()> {
    let installed = output_of(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .context("the nightly toolchain is needed for the eBPF program (rustup toolchain list)")?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        r.present.push("rust-src for nightly".into());
        return Ok(());
    }
    println!("==> rustup component add rust-src --toolchain nightly");
    run_visible(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))?;
    r.installed.push("rust-src for nightly".into());
    Ok(())
}

/// The nightly toolchain's sysroot.
fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    let s =
        output_of(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))
            .context("cannot find the nightly toolchain's sysroot")?;
    Ok(PathBuf::from(s.trim()))
}

/// The nightly's own libLLVM shared object and its major version, found by name
/// (`libLLVM.so.<major>.<minor>-rust-...`), never hard-coded.
fn nightly_libllvm(sysroot: &std::path::Path) -> anyhow::Result<(PathBuf, u32)> {
    let lib = sysroot.join("lib");
    for e in std::fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix("libLLVM.so.") {
            let major = rest.split(['.', '-']).next().and_then(|m| m.parse().ok());
            if let Some(major) = major {
                return Ok((e.path(), major));
            }
        }
    }
    bail!("no libLLVM.so.<version> in {}", lib.display())
}

fn bpf_linker_works() -> bool {
    // Under `rustup run nightly` the nightly's lib directory is on LD_LIBRARY_PATH, exactly as
    // when aya-build invokes the linker.
    output_of(Command::new("rustup").args(["run", "nightly", "bpf-linker", "--version"])).is_some()
}

fn bpf_linker(r: &mut Report) -> anyhow::Result<()> {
    if bpf_linker_works() {
        r.present
            .push("bpf-linker (runs against the nightly's libLLVM)".into());
        return Ok(());
    }
    let sysroot = nightly_sysroot()?;
    let (libllvm, major) = nightly_libllvm(&sysroot)?;
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    let prefix = home
        .join(".cache/tollgate")
        .join(format!("llvm-{major}-prefix"));
    std::fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link)
        .with_context(|| format!("symlink {} -> {}", link.display(), libllvm.display()))?;
    println!(
        "==> building bpf-linker 0.13 against {} (LLVM {major}); this takes about a minute",
        libllvm.display()
    );
    run_visible(
        Command::new("cargo")
            .env("LLVM_PREFIX", &prefix)
            .env("LD_LIBRARY_PATH", sysroot.join("lib"))
            .args([
                "install",
                "bpf-linker",
                "--version",
                "0.13.0",
                "--locked",
                "--no-default-features",
            ])
            .args(["--features", &format!("llvm-{major}")]),
    )?;
    if !bpf_linker_works() {
        bail!("bpf-linker was built but does not run under `rustup run nightly`");
    }
    r.installed
        .push(format!("bpf-linker 0.13.0 (LLVM {major})"));
    Ok(())
}

fn cargo_fuzz(r: &mut Report) -> anyhow::Result<()> {
    if output_of(Command::new("cargo").args(["fuzz", "--version"])).is_some() {
        r.present.push("cargo-fuzz".into());
        return Ok(());
    }
    println!("==> cargo install cargo-fuzz");
    run_visible(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    r.installed.push("cargo-fuzz".into());
    Ok(())
}

/// cargo-deb, pinned: its maintainer-script templates and flags are what `cargo xtask package`
/// and its install test were written against.
const CARGO_DEB_VERSION: &str = "3.8.0";

fn cargo_deb(r: &mut Report) -> anyhow::Result<()> {
    let have = output_of(Command::new("cargo").args(["deb", "--version"]));
    if have
        .as_deref()
        .is_some_and(|v| v.split_whitespace().any(|w| w == CARGO_DEB_VERSION))
    {
        r.present.push(format!("cargo-deb {CARGO_DEB_VERSION}"));
        return Ok(());
    }
    println!("==> cargo install cargo-deb --version {CARGO_DEB_VERSION} --locked");
    run_visible(Command::new("cargo").args([
        "install",
        "cargo-deb",
        "--version",
        CARGO_DEB_VERSION,
        "--locked",
    ]))?;
    r.installed.push(format!("cargo-deb {CARGO_DEB_VERSION}"));
    Ok(())
}
