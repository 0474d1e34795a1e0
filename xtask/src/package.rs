//! `cargo xtask package`: the Debian package, linted and install-tested.
//!
//! 1. `cargo build --release -p tollgate` with the XDP program required (a package without it
//!    would be a package without the XDP data path);
//! 2. the man page (help2man), then `cargo deb` (cargo-deb, installed by `cargo xtask setup`)
//!    packs it all with the metadata in `userspace/tollgate/Cargo.toml`: the binary, the
//!    systemd unit, the example configuration as a conffile, the maintainer scripts in
//!    `deploy/debian/`; debug symbols go to a separate `-dbgsym.ddeb`;
//! 3. lintian, failing on any error or warning not overridden (with its reason) in
//!    `deploy/debian/lintian-overrides`;
//! 4. as root, the install test (`package-install-test.sh`): install, upgrade, remove and purge
//!    in a throwaway copy-on-write root, running `tollgate version` from `/usr/bin`. Without
//!    root it is skipped, and says so.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::util::{Step, run_visible, workspace_root};

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Package the release binary already built (skip `cargo build --release`).
    #[arg(long)]
    pub no_build: bool,
    /// Build and lint only: skip the install test.
    #[arg(long)]
    pub no_install_test: bool,
}

/// The install test, run by `sh` inside a private mount namespace.
const INSTALL_TEST: &str = include_str!("package-install-test.sh");

/// Lintian tags that fail the package (overrides are in `deploy/debian/lintian-overrides`).
const LINTIAN_FAIL_ON: &str = "error,warning";

pub fn run(args: &Args) -> anyhow::Result<()> {
    let root = workspace_root();
    let mut done = Vec::new();
    let version = package_version(&root)?;
    check_changelog(&root, &version)?;

    if !args.no_build {
        let s = Step::start(
            "package",
            "cargo build --release -p tollgate (XDP required)",
        );
        run_visible(
            Command::new("cargo")
                .current_dir(&root)
                .env("TOLLGATE_REQUIRE_EBPF", "1")
                .args(["build", "--release", "-p", "tollgate"]),
        )?;
        done.push(s.done());
    }

    let bin = target_dir(&root).join("release/tollgate");
    check_binary(&bin)?;
    man_page(&root, &bin)?;

    let s = Step::start("package", "cargo deb (with a -dbgsym.ddeb)");
    let out = target_dir(&root).join("debian");
    std::fs::create_dir_all(&out).with_context(|| format!("{}", out.display()))?;
    let deb = cargo_deb(
        &root,
        &[
            "--dbgsym",
            "--compress-debug-symbols=zlib",
            "--output",
            &format!("{}/", out.display()),
        ],
    )?;
    done.push(s.done());
    let size = std::fs::metadata(&deb)
        .with_context(|| format!("{}", deb.display()))?
        .len();

    let s = Step::start("package", &format!("lintian (fails on {LINTIAN_FAIL_ON})"));
    run_visible(
        Command::new("lintian")
            .args([
                "--display-info",
                "--display-experimental",
                "--pedantic",
                "--tag-display-limit",
                "0",
                "--fail-on",
                LINTIAN_FAIL_ON,
            ])
            .arg(&deb),
    )
    .context("lintian found errors or warnings (override only with a reason)")?;
    done.push(s.done());

    if args.no_install_test {
        println!("install test: not run (--no-install-test)");
    } else if !tollgate_netlab::is_root() {
        println!(
            "install test: SKIPPED (needs root: a mount namespace, an overlay root and chroot)"
        );
    } else {
        let s = Step::start(
            "package",
            "install test: install, upgrade, remove, purge in a throwaway root",
        );
        install_test(&deb)?;
        done.push(s.done());
    }

    println!("package: {} ({:.1} MiB)", deb.display(), mib(size));
    println!("package summary:");
    for (name, secs) in &done {
        println!("  ok  {name:<60} {secs:>7.1}s");
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The cargo target directory (`CARGO_TARGET_DIR` or `<workspace>/target`); the packages go
/// to its `debian/`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// The binary about to be packaged runs and carries the XDP program (`--no-build` could
/// otherwise package a build made without bpf-linker).
fn check_binary(bin: &Path) -> anyhow::Result<()> {
    let out = Command::new(bin)
        .arg("version")
        .output()
        .with_context(|| format!("running {} version", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    if !out.status.success() || !text.contains("XDP program built in") {
        bail!(
            "{} has no XDP program built in; rebuild with `cargo xtask setup` done (bpf-linker)",
            bin.display()
        );
    }
    Ok(())
}

/// The `tollgate` crate's version (`cargo pkgid`: `path+file:///...#0.1.0` or `...#name@0.1.0`).
fn package_version(root: &Path) -> anyhow::Result<String> {
    let out = Command::new("cargo")
        .current_dir(root)
        .args(["pkgid", "-p", "tollgate"])
        .output()
        .context("cargo pkgid")?;
    if !out.status.success() {
        bail!("cargo pkgid -p tollgate failed");
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let v = id
        .rsplit_once('#')
        .map(|(_, v)| v.rsplit_once('@').map_or(v, |(_, v)| v))
        .context("no version in `cargo pkgid`")?;
    Ok(v.to_owned())
}

/// The Debian changelog's newest entry must be this version (revision 1): a release bumps
/// both.
fn check_changelog(root: &Path, version: &str) -> anyhow::Result<()> {
    let path = root.join("deploy/debian/changelog");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let want = format!("tollgate ({version}-1) ");
    if !text.lines().next().is_some_and(|l| l.starts_with(&want)) {
        bail!(
            "{}: the newest entry must be `{want}...` (the crate's version); add an entry",
            path.display()
        );
    }
    Ok(())
}

/// The man page, `tollgate.1.gz` next to the binary (where the package's assets take it
/// from): help2man on `tollgate --help`, with `deploy/debian/tollgate.h2m` for the
/// description, files and see-also sections.
fn man_page(root: &Path, bin: &Path) -> anyhow::Result<()> {
    let page = bin.with_file_name("tollgate.1");
    run_visible(
        Command::new("help2man")
            .args(["--no-info", "--section", "1", "--name"])
            .arg(SYNOPSIS)
            .arg("--include")
            .arg(root.join("deploy/debian/tollgate.h2m"))
            .arg("--output")
            .arg(&page)
            .arg(bin),
    )
    .context("help2man (installed by `cargo xtask setup`)")?;
    let gz = bin.with_file_name("tollgate.1.gz");
    let _ = std::fs::remove_file(&gz);
    // -n: no name or time stamp in the gzip header, so the same page compresses the same.
    run_visible(Command::new("gzip").args(["-9", "-n"]).arg(&page))
}

/// The package's synopsis (the `tollgate` crate's description), also the man page's NAME line.
const SYNOPSIS: &str = "SIP Mediation Server: B2BUA with an XDP/AF_XDP SRTP media relay";

/// Runs `cargo deb -p tollgate --no-build` with `extra` arguments; the .deb's path (cargo-deb
/// prints the paths it wrote on stdout, the .deb first).
fn cargo_deb(root: &Path, extra: &[&str]) -> anyhow::Result<PathBuf> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .args(["deb", "-p", "tollgate", "--no-build"])
        .args(extra)
        .stderr(std::process::Stdio::inherit());
    let line = format!("{cmd:?}");
    let out = cmd.output().with_context(|| {
        format!("could not start {line} (is cargo-deb installed? `cargo xtask setup`)")
    })?;
    if !out.status.success() {
        bail!("{line} failed: {}", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    stdout
        .lines()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .with_context(|| format!("{line} printed no .deb path"))
}

/// A scratch directory removed on drop (after the namespace that mounted on it is gone).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the install test in a private mount namespace; its mounts go with the namespace,
/// its mount point with the scratch directory.
fn install_test(deb: &Path) -> anyhow::Result<()> {
    let scratch =
        Scratch(std::env::temp_dir().join(format!("tollgate-pkgtest-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&scratch.0);
    let mnt = scratch.0.join("mnt");
    std::fs::create_dir_all(&mnt)?;
    let script = scratch.0.join("package-install-test.sh");
    std::fs::write(&script, INSTALL_TEST)?;
    run_visible(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh"])
            .arg(&script)
            .arg(&mnt)
            .arg(deb),
    )
    .context("the install test failed (its output above says where)")
}
