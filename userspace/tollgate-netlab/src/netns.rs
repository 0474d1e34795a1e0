//! Running code inside a network namespace.
//!
//! `setns(CLONE_NEWNET)` changes the namespace of the calling thread only, so each closure runs
//! on a fresh thread that enters the namespace first; the caller's thread is never moved.
//! Sockets and netlink handles created there stay bound to that namespace for their lifetime.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;

use crate::LabError;

fn enter(ns: &str) -> Result<(), LabError> {
    let path = format!("/run/netns/{ns}");
    let f = File::open(&path).map_err(|source| LabError::Netns {
        ns: ns.to_owned(),
        source,
    })?;
    // SAFETY: plain syscall on a valid fd; affects only the current thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(LabError::Netns {
            ns: ns.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Runs `f` on a new thread inside namespace `ns` and waits for its result.
pub fn in_netns<T, F>(ns: &str, f: F) -> Result<T, LabError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    spawn_in_netns(ns, f)?
        .join()
        .map_err(|_| LabError::Panicked(ns.to_owned()))?
}

/// Starts `f` on a new thread inside namespace `ns`; join the handle for its result.
pub fn spawn_in_netns<T, F>(ns: &str, f: F) -> Result<JoinHandle<Result<T, LabError>>, LabError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let ns = ns.to_owned();
    std::thread::Builder::new()
        .name(format!("netns-{ns}"))
        .spawn(move || {
            enter(&ns)?;
            Ok(f())
        })
        .map_err(|source| LabError::Spawn {
            cmd: "thread spawn".to_owned(),
            source,
        })
}

/// Whether the process runs as root (needed to create namespaces and attach XDP).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// First line of every lab test. Lab tests are `#[ignore]`d with the reason, so a run without
/// root lists them as ignored (never as passed); `cargo xtask ci` runs them as root with
/// `--ignored`. Run by hand without root they fail here, saying why.
pub fn require_root(test: &str) {
    assert!(
        is_root(),
        "{test} needs root for network namespaces and XDP: run it as root \
         (cargo xtask ci, or cargo test -- --ignored)"
    );
}
