//! Test helper: a private Valkey (or Redis) server on a Unix socket in a temp directory.
//!
//! Used by this crate's tests and by other crates' lab tests. The server binary is
//! `$TOLLGATE_VALKEY_SERVER` if set, else `valkey-server` on `PATH`, else `redis-server`; if
//! none exists [`ValkeyServer::start`] fails with a message saying so (tests must fail, not
//! pass silently). The server persists nothing (`--save '' --appendonly no`) and listens on
//! no TCP port. Dropping the guard kills it (by its PID, SIGKILL) and removes the directory.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a starting server may take to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A private Valkey/Redis server process; see the module doc.
#[derive(Debug)]
pub struct ValkeyServer {
    binary: PathBuf,
    dir: PathBuf,
    socket: PathBuf,
    child: Option<Child>,
}

impl ValkeyServer {
    /// Creates a temp directory and starts a server on `<dir>/s.sock`; returns once it
    /// answers PING.
    pub fn start() -> io::Result<ValkeyServer> {
        let binary = find_binary()?;
        let dir = temp_dir()?;
        let socket = dir.join("s.sock");
        let mut server = ValkeyServer {
            binary,
            dir,
            socket,
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    /// `unix://<dir>/s.sock`, for [`crate::ValkeyStore::connect`].
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The server binary in use.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// PID of the running server, `None` after [`ValkeyServer::kill`].
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL, by PID) and reaps it. Its data is gone (nothing is saved).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server if running and starts a fresh, empty one on the same socket.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()
    }

    fn spawn(&mut self) -> io::Result<()> {
        let _ = std::fs::remove_file(&self.socket);
        let log = std::fs::File::create(self.dir.join("server.log"))?;
        let child = Command::new(&self.binary)
            .arg("--port")
            .arg("0")
            .arg("--unixsocket")
            .arg(&self.socket)
            .arg("--unixsocketperm")
            .arg("700")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--daemonize")
            .arg("no")
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot run {}: {e}", self.binary.display()),
                )
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.answers_ping() {
                return Ok(());
            }
            let exited = match self.child.as_mut() {
                Some(c) => c.try_wait()?.is_some(),
                None => true,
            };
            if exited || Instant::now() > deadline {
                self.kill();
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "{} did not come up on {} ({}); its log:\n{log}",
                    self.binary.display(),
                    self.socket.display(),
                    if exited { "it exited" } else { "timed out" },
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn answers_ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(&self.socket) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for ValkeyServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn find_binary() -> io::Result<PathBuf> {
    if let Some(p) = std::env::var_os("TOLLGATE_VALKEY_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["valkey-server", "redis-server"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "neither valkey-server nor redis-server is on PATH (install one, e.g. \
         `apt-get install -y redis-server`, or set TOLLGATE_VALKEY_SERVER)",
    ))
}

/// A fresh directory under the system temp dir, unique per process and call.
fn temp_dir() -> io::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Unix socket paths are limited to ~107 bytes: keep the name short.
    let dir = std::env::temp_dir().join(format!("tgv-{}-{n}-{nanos:x}", std::process::id()));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}
