//! `cargo xtask bench`: benchmarks and their reports under `target/bench-report/`.
//!
//! `bench srtp` builds libsrtp with OpenSSL from Debian's own source package (downloaded with
//! `apt-get source --download-only` through a private apt configuration, so the machine's
//! sources lists are not touched; built into `target/libsrtp-openssl/`, never committed), then
//! runs `srtp-bench` in release mode against it and Debian's libsrtp2, and writes
//! `target/bench-report/srtp.md`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::util::{Step, run_visible, workspace_root};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand, Debug)]
enum What {
    /// SRTP protect/unprotect ns/packet vs libsrtp (OpenSSL build and Debian's).
    Srtp(SrtpArgs),
}

#[derive(clap::Args, Debug)]
struct SrtpArgs {
    /// Rounds per measurement (median reported).
    #[arg(long, default_value_t = 9)]
    rounds: usize,
    /// Packets per round.
    #[arg(long, default_value_t = 20_000)]
    packets: usize,
    /// Rebuild libsrtp-with-OpenSSL even if present.
    #[arg(long)]
    rebuild_libsrtp: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.what {
        What::Srtp(a) => srtp(a),
    }
}

const LIBSRTP_PKG: &str = "libsrtp2";

fn srtp(a: &SrtpArgs) -> anyhow::Result<()> {
    let root = workspace_root();
    let target = root.join("target");
    let mut steps = Vec::new();

    let s = Step::start(
        "bench srtp",
        "libsrtp built with OpenSSL (from Debian's source)",
    );
    let lib = libsrtp_openssl(&target.join("libsrtp-openssl"), a.rebuild_libsrtp)?;
    steps.push(s.done());

    let s = Step::start("bench srtp", "build srtp-bench (release)");
    run_visible(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "tollgate-bench",
        "--bin",
        "srtp-bench",
    ]))?;
    steps.push(s.done());

    let report = target.join("bench-report/srtp.md");
    let s = Step::start("bench srtp", "measure (one core, thread CPU time)");
    run_visible(
        Command::new(target.join("release/srtp-bench"))
            .arg("--openssl-lib")
            .arg(&lib)
            .args(["--rounds", &a.rounds.to_string()])
            .args(["--packets", &a.packets.to_string()])
            .arg("--out")
            .arg(&report),
    )?;
    steps.push(s.done());

    println!("bench srtp summary:");
    for (name, secs) in steps {
        println!("  {secs:6.1}s  {name}");
    }
    println!("  report: {}", report.display());
    Ok(())
}

/// apt options for a private, source-only configuration under `dir`.
fn apt_opts(dir: &Path) -> Vec<String> {
    vec![
        format!(
            "-oDir::Etc::SourceList={}",
            dir.join("sources.list").display()
        ),
        "-oDir::Etc::SourceParts=/dev/null".into(),
        format!("-oDir::State::Lists={}", dir.join("lists").display()),
        format!("-oDir::Cache={}", dir.join("cache").display()),
    ]
}

/// The Debian suite of this machine (`VERSION_CODENAME` of /etc/os-release).
fn codename() -> anyhow::Result<String> {
    let os = std::fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    os.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|s| s.trim_matches('"').to_owned())
        .context("no VERSION_CODENAME in /etc/os-release")
}

/// Downloads Debian's libsrtp2 source, configures it with `--enable-openssl` (libsrtp's own
/// default flags: -O3) and links the objects into `libsrtp2-openssl.so`.
fn libsrtp_openssl(dir: &Path, rebuild: bool) -> anyhow::Result<PathBuf> {
    let so = dir.join("libsrtp2-openssl.so");
    if so.exists() && !rebuild {
        println!("    present: {}", so.display());
        return Ok(so);
    }
    let apt = dir.join("apt");
    std::fs::create_dir_all(apt.join("lists/partial"))?;
    std::fs::create_dir_all(apt.join("cache/archives/partial"))?;
    std::fs::write(
        apt.join("sources.list"),
        format!(
            "deb-src http://deb.debian.org/debian {} main\n",
            codename()?
        ),
    )?;
    let opts = apt_opts(&apt);
    run_visible(Command::new("apt-get").args(&opts).args(["-q", "update"]))?;
    let src = dir.join("src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src)?;
    run_visible(Command::new("apt-get").current_dir(&src).args(&opts).args([
        "-q",
        "source",
        "--download-only",
        LIBSRTP_PKG,
    ]))?;
    let tarball = std::fs::read_dir(&src)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".orig.tar.gz"))
        .context("apt-get source left no .orig.tar.gz")?;
    run_visible(
        Command::new("tar")
            .current_dir(&src)
            .arg("xzf")
            .arg(&tarball),
    )?;
    let tree = std::fs::read_dir(&src)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .context("no source tree in the tarball")?;
    run_visible(
        Command::new("./configure")
            .current_dir(&tree)
            .env_remove("CFLAGS")
            .args(["--enable-openssl", "--quiet"]),
    )?;
    run_visible(
        Command::new("make")
            .current_dir(&tree)
            .args(["-j2", "libsrtp2.a"]),
    )?;
    run_visible(
        Command::new("cc")
            .current_dir(&tree)
            .args(["-shared", "-o"])
            .arg(&so)
            .args([
                "-Wl,-soname,libsrtp2-openssl.so",
                "-Wl,--whole-archive",
                "libsrtp2.a",
                "-Wl,--no-whole-archive",
                "-lcrypto",
            ]),
    )?;
    if !so.exists() {
        bail!("{} was not produced", so.display());
    }
    Ok(so)
}
