//! Builds the XDP program (`ebpf/tollgate-xdp`) for bpfel-unknown-none with the nightly toolchain
//! and bpf-linker, and leaves it in OUT_DIR for `include_bytes!`.
//!
//! The nested build uses one shared target directory (`target/ebpf`), so the many host build
//! variants (check, test, release, clippy) reuse one incremental eBPF build instead of each
//! compiling `core` for BPF again (what aya-build's per-OUT_DIR target directory would do).
//!
//! Without bpf-linker (a machine where `cargo xtask setup` has not run) the host crates still
//! build: the object is left empty, a warning says why, and loading the program at run time
//! fails with `XdpError::NotBuilt`. Set TOLLGATE_REQUIRE_EBPF=1 to make that a build error
//! instead (CI and the xtask do).

use std::path::{Path, PathBuf};
use std::process::Command;

fn on_path(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.join("../..");
    let ebpf = root.join("ebpf");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    for dir in ["tollgate-common", "tollgate-xdp"] {
        println!("cargo:rerun-if-changed={}", ebpf.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=TOLLGATE_REQUIRE_EBPF");

    let required = std::env::var("TOLLGATE_REQUIRE_EBPF").is_ok_and(|v| v == "1");
    match on_path("bpf-linker") {
        Some(linker) => println!("cargo:rerun-if-changed={}", linker.display()),
        None if required => {
            panic!("bpf-linker is not on PATH and TOLLGATE_REQUIRE_EBPF=1: run `cargo xtask setup`")
        }
        None => {
            println!(
                "cargo:warning=bpf-linker not found: the XDP program is not built, so the XDP \
                 data path will refuse to start (run `cargo xtask setup`)"
            );
            write_empty(&out.join("tollgate-xdp"));
            return;
        }
    }

    // aya-ebpf picks architecture-specific definitions (pt_regs) by `bpf_target_arch`.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("ebpf");
    // `rustup run nightly` puts the nightly's lib directory (its libLLVM, which bpf-linker
    // links against) on LD_LIBRARY_PATH.
    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        "nightly",
        "cargo",
        "build",
        "--package",
        "tollgate-xdp",
        "--bins",
        "--release",
    ])
    .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
    .arg("--target-dir")
    .arg(&target_dir)
    .current_dir(&root)
    .env(
        "CARGO_ENCODED_RUSTFLAGS",
        format!("--cfg=bpf_target_arch=\"{arch}\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf"),
    );
    for key in [
        "RUSTC",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "RUSTFLAGS",
    ] {
        cmd.env_remove(key);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run rustup/cargo for the eBPF build: {e}"));
    if !status.success() {
        panic!("building the XDP program failed ({status}); run `cargo xtask setup`");
    }
    let built = target_dir.join("bpfel-unknown-none/release/tollgate-xdp");
    std::fs::copy(&built, out.join("tollgate-xdp"))
        .unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
}

fn write_empty(p: &Path) {
    std::fs::write(p, []).expect("write to OUT_DIR");
}
