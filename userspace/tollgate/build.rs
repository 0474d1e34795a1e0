//! Records the git commit the binary is built from, for `tollgate version`.
//!
//! `TOLLGATE_GIT_COMMIT` in the environment wins (builds from a source tarball); otherwise
//! `git rev-parse --short=12 HEAD` if this is a git checkout; otherwise nothing, and the
//! binary says "unknown". Never fails the build.

use std::path::PathBuf;
use std::process::Command;

/// Runs git with `args` in this crate's directory; trimmed stdout if it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// Asks cargo to run this again when `path` changes; only for paths that exist (a missing
/// path would make cargo rebuild the binary every time).
fn watch(path: &str) {
    let p = PathBuf::from(path);
    if p.exists() {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=TOLLGATE_GIT_COMMIT");
    if let Some(c) = std::env::var("TOLLGATE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
    {
        println!("cargo:rustc-env=TOLLGATE_GIT_COMMIT={c}");
        return;
    }
    let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return;
    };
    println!("cargo:rustc-env=TOLLGATE_GIT_COMMIT={commit}");
    // A new commit moves HEAD (detached) or the branch it points at (a loose ref, or
    // packed-refs); watch all three. Paths come from git, so worktrees work too.
    for what in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--path-format=absolute", "--git-path", what]) {
            watch(&p);
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = git(&["rev-parse", "--path-format=absolute", "--git-path", &branch])
    {
        let p = PathBuf::from(p);
        if p.exists() {
            watch(&p.to_string_lossy());
        } else if let Some(dir) = p.parent() {
            // Packed now; a commit writes the loose ref into this directory.
            watch(&dir.to_string_lossy());
        }
    }
}
