//! Tollgate as a child process (the demo and the call benchmark): started by path, optionally in
//! a network namespace and pinned to a CPU, observed through /proc, stopped by PID with SIGTERM
//! (drain) and, if it does not exit, SIGKILL.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `tollgate run`.
#[derive(Debug)]
pub struct TollgateProcess {
    child: Child,
}

/// How to start it.
#[derive(Debug, Clone, Default)]
pub struct Launch<'a> {
    /// Network namespace to run in (via `ip netns exec`).
    pub netns: Option<&'a str>,
    /// Control-plane threads (`--threads`).
    pub threads: Option<usize>,
    /// CPU list to pin the whole process to (via `taskset -c`).
    pub cpus: Option<&'a str>,
    /// Log filter (`--log`).
    pub log_filter: Option<&'a str>,
}

impl TollgateProcess {
    /// Starts `binary run --config config`, logging to `log`.
    pub fn spawn(
        binary: &Path,
        config: &Path,
        log: &Path,
        how: &Launch<'_>,
    ) -> std::io::Result<TollgateProcess> {
        let out = std::fs::File::create(log)?;
        let err = out.try_clone()?;
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(ns) = how.netns {
            argv.extend(["ip", "netns", "exec", ns].map(Into::into));
        }
        if let Some(c) = how.cpus {
            argv.extend(["taskset", "-c", c].map(Into::into));
        }
        argv.push(binary.as_os_str().to_owned());
        argv.extend(["run", "--config"].map(Into::into));
        argv.push(config.as_os_str().to_owned());
        if let Some(t) = how.threads {
            argv.push("--threads".into());
            argv.push(t.to_string().into());
        }
        if let Some(l) = how.log_filter {
            argv.push("--log".into());
            argv.push(l.into());
        }
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        let child = Command::new(prog)
            .args(args)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()?;
        Ok(TollgateProcess { child })
    }

    /// Its PID (`ip netns exec` and `taskset` exec, so this is Tollgate's own).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// User + system CPU seconds so far.
    pub fn cpu_secs(&self) -> Option<f64> {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        let rest = s.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Some(ticks / hz.max(1.0))
    }

    /// Resident memory in MiB.
    pub fn rss_mib(&self) -> Option<f64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let kb: f64 = s
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    }

    /// SIGKILL (a crash: nothing is flushed, no BYE is sent) and reap it.
    pub fn kill(&mut self) -> Option<std::process::ExitStatus> {
        if let Some(s) = self.exited() {
            return Some(s);
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    /// Sends `sig` to it (e.g. `libc::SIGUSR2`: hand the calls over).
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits up to `wait` for it to exit.
    pub fn wait_exit(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        let t = Instant::now();
        while t.elapsed() < wait {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM (drain) and wait up to `wait` for it to exit.
    pub fn stop(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        if let Some(s) = self.exited() {
            return Some(s);
        }
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < wait {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for TollgateProcess {
    fn drop(&mut self) {
        if self.exited().is_none() && self.stop(Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until something accepts TCP connections on `addr` (from namespace `ns`, if given).
pub fn wait_listening(ns: Option<&str>, addr: std::net::SocketAddr, timeout: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        let probe =
            move || std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok();
        let up = match ns {
            Some(n) => tollgate_netlab::in_netns(n, probe).unwrap_or(false),
            None => probe(),
        };
        if up {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// `GET /metrics` from `addr` (in namespace `ns`, if given).
pub fn scrape(ns: Option<&str>, addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let get = move || -> Option<String> {
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
    };
    match ns {
        Some(n) => tollgate_netlab::in_netns(n, get).ok().flatten(),
        None => get(),
    }
    .unwrap_or_default()
}

/// Sum of the samples of metric `name` whose labels contain every `labels` fragment.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.split(['{', ' ']).next() == Some(name))
        .filter(|l| labels.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}
