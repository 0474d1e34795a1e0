//! Builds the XDP program (`ebpf/tollgate-xdp`) for bpfel-unknown-none with the nightly toolchain
//! and bpf-linker, and leaves it in OUT_DIR for `include_bytes!`.
//!
//! Without bpf-linker (a machine where `cargo xtask setup` has not run) the host crates still
//! build: the object is left empty, a warning says why, and loading the program at run time
//! fails with `EbpfError::NotBuilt`. Set TOLLGATE_REQUIRE_EBPF=1 to make that a build error
//! instead (CI and the xtask do).

use std::path::{Path, PathBuf};

fn on_path(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let ebpf_root = manifest.join("../../ebpf");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    println!(
        "cargo:rerun-if-changed={}",
        ebpf_root.join("tollgate-common").display()
    );
    println!("cargo:rerun-if-env-changed=TOLLGATE_REQUIRE_EBPF");
    println!("cargo:rerun-if-env-changed=PATH");

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
    let xdp_dir = ebpf_root.join("tollgate-xdp");
    let xdp_dir = xdp_dir.to_str().expect("UTF-8 path");
    let pkg = aya_build::Package {
        name: "tollgate-xdp",
        root_dir: xdp_dir,
        ..Default::default()
    };
    if let Err(e) = aya_build::build_ebpf([pkg], aya_build::Toolchain::Nightly) {
        panic!("building the XDP program failed: {e:#}");
    }
}

fn write_empty(p: &Path) {
    std::fs::write(p, []).expect("write to OUT_DIR");
}
