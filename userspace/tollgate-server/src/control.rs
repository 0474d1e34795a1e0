//! The operator's control socket (`tollgate ctl`): a Unix stream socket, owner and group only
//! (mode 0660, in a directory of mode 0750), never a network address.
//!
//! The protocol is one JSON object per line each way. A request names a command:
//! `{"cmd":"calls"}`, `{"cmd":"call","id":7}`, `{"cmd":"hangup","id":7,"reason":"stuck"}`,
//! `{"cmd":"trunks"}`, `{"cmd":"trunk","name":"gw1","enable":false}`, `{"cmd":"drain"}`, `{"cmd":"handover"}`,
//! `{"cmd":"reload"}`, `{"cmd":"status"}`. The answer is `{"ok":true,...}` with the command's
//! data, or `{"ok":false,"error":"..."}`. A connection may send several requests.
//!
//! `{"cmd":"capture","seconds":10,"call":7}` (both optional; default 10 s, at most 3600)
//! answers with a stream instead: one JSON line per SIP message of either side (all calls, or
//! call 7's two legs) — `time`, `side`, `dir`, `local`, `peer`, `transport`, `call_id`, `sip`
//! — for that many seconds, then a summary line `{"ok":true,"done":true,"messages":N,
//! "dropped":D,...}`; the connection then closes. A refused capture is one `{"ok":false}` line.
//! The tap behind it is a bounded channel ([`crate::capture::TAP_QUEUE`]): a reader that
//! falls behind loses messages (counted in `dropped`), never slows the daemon. Closing the
//! connection ends the tap.
//!
//! Requests go to the driver as [`Control::Ctl`]; the driver answers from the core's views
//! (keys never leave the core) and the media thread's counters.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::driver::Control;

/// Where a daemon started the usual way listens, and where `tollgate ctl` looks by default.
pub const DEFAULT_SOCKET: &str = "/run/tollgate/control.sock";

/// The longest request line accepted.
const MAX_REQUEST: usize = 4096;

/// One operator request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase", deny_unknown_fields)]
pub enum CtlRequest {
    /// Every call in progress.
    Calls,
    /// One call in full.
    Call {
        /// Call number.
        id: u64,
    },
    /// End a call: BYE on both legs; `reason` goes into the Reason header and the CDR.
    Hangup {
        /// Call number.
        id: u64,
        /// Why.
        #[serde(default)]
        reason: Option<String>,
    },
    /// Every trunk with its state.
    Trunks,
    /// Take a trunk out of service or put it back.
    Trunk {
        /// Trunk name.
        name: String,
        /// Whether it takes new calls.
        enable: bool,
    },
    /// Stop taking new calls; exit when the last call ends (as SIGTERM).
    Drain,
    /// Write every call to the call-state store and exit without BYE (as SIGUSR2).
    Handover,
    /// Re-read the configuration file (as SIGHUP).
    Reload,
    /// Version, uptime, calls, ports, data path.
    Status,
    /// Stream every SIP message (or one call's) for some seconds.
    Capture {
        /// How long (default [`DEFAULT_CAPTURE_S`], at most [`MAX_CAPTURE_S`]).
        #[serde(default)]
        seconds: Option<u64>,
        /// Only this call's two legs.
        #[serde(default)]
        call: Option<u64>,
    },
}

/// How long a capture runs when the request does not say.
pub const DEFAULT_CAPTURE_S: u64 = 10;
/// The longest capture.
pub const MAX_CAPTURE_S: u64 = 3600;

/// A capture request for the driver.
#[derive(Debug)]
pub struct CaptureCall {
    /// Only this call.
    pub call: Option<u64>,
    /// When the tap ends.
    pub until: std::time::Instant,
    /// Where messages go.
    pub tx: mpsc::Sender<crate::capture::Captured>,
    /// Messages lost.
    pub dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// `{"ok":true,...}` when the tap is in place, or an error.
    pub reply: oneshot::Sender<serde_json::Value>,
}

/// A request and where its answer goes.
#[derive(Debug)]
pub struct CtlCall {
    /// The request.
    pub request: CtlRequest,
    /// The answer (`{"ok":...}`).
    pub reply: oneshot::Sender<serde_json::Value>,
}

/// Why the control socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket's directory could not be created or secured.
    #[error("control socket directory {dir}: {source}")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// Another running daemon answers on this socket.
    #[error("{0} is in use by a running daemon")]
    InUse(PathBuf),
    /// Something that is not a socket is in the way.
    #[error("{0} exists and is not a socket")]
    NotASocket(PathBuf),
    /// Binding or securing the socket failed.
    #[error("control socket {path}: {source}")]
    Bind {
        /// The path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
}

/// Binds the control socket at `path`: creates its directory (0750) if missing, replaces a
/// stale socket left by an earlier process, and restricts the socket to owner and group.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::create_dir_all(dir).map_err(|source| ControlError::Dir {
            dir: dir.to_owned(),
            source,
        })?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)).map_err(
            |source| ControlError::Dir {
                dir: dir.to_owned(),
                source,
            },
        )?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            // A socket someone still answers on belongs to a running daemon: never steal it.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse(path.to_owned()));
            }
            let _ = std::fs::remove_file(path);
        }
        Ok(_) => return Err(ControlError::NotASocket(path.to_owned())),
        Err(_) => {}
    }
    let l = UnixListener::bind(path).map_err(|source| ControlError::Bind {
        path: path.to_owned(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(|source| {
        ControlError::Bind {
            path: path.to_owned(),
            source,
        }
    })?;
    Ok(l)
}

/// An error answer.
pub fn error(msg: impl std::fmt::Display) -> serde_json::Value {
    serde_json::json!({ "ok": false, "error": msg.to_string() })
}

/// Serves `listener` until the task is dropped, passing each request to the driver.
pub async fn serve(listener: UnixListener, driver: mpsc::UnboundedSender<Control>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let driver = driver.clone();
        tokio::spawn(connection(stream, driver));
    }
}

async fn connection(stream: UnixStream, driver: mpsc::UnboundedSender<Control>) {
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd);
    let mut line = String::new();
    loop {
        line.clear();
        let n = match (&mut lines)
            .take(MAX_REQUEST as u64 + 1)
            .read_line(&mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let answer = if n > MAX_REQUEST {
            error(format!("request longer than {MAX_REQUEST} bytes"))
        } else {
            match serde_json::from_str::<CtlRequest>(line.trim()) {
                Err(e) => error(format!("bad request: {e}")),
                Ok(CtlRequest::Capture { seconds, call }) => {
                    let secs = seconds.unwrap_or(DEFAULT_CAPTURE_S);
                    if !(1..=MAX_CAPTURE_S).contains(&secs) {
                        error(format!("seconds must be 1..={MAX_CAPTURE_S}"))
                    } else {
                        capture(&mut lines, &mut wr, &driver, secs, call).await;
                        return;
                    }
                }
                Ok(request) => {
                    let (reply, rx) = oneshot::channel();
                    if driver
                        .send(Control::Ctl(CtlCall { request, reply }))
                        .is_err()
                    {
                        error("the daemon is stopping")
                    } else {
                        rx.await.unwrap_or_else(|_| error("the daemon is stopping"))
                    }
                }
            }
        };
        let mut out = answer.to_string();
        out.push('\n');
        if wr.write_all(out.as_bytes()).await.is_err() {
            return;
        }
        if n > MAX_REQUEST {
            return;
        }
    }
}

/// Serves one capture: registers the tap with the driver, streams what it sees until the
/// deadline or until the client goes away, then writes the summary.
async fn capture<R, W>(
    rd: &mut BufReader<R>,
    wr: &mut W,
    driver: &mpsc::UnboundedSender<Control>,
    secs: u64,
    call: Option<u64>,
) where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    let (tx, mut rx) = mpsc::channel(crate::capture::TAP_QUEUE);
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (reply, answer) = oneshot::channel();
    let sent = driver.send(Control::Capture(CaptureCall {
        call,
        until,
        tx,
        dropped: std::sync::Arc::clone(&dropped),
        reply,
    }));
    let started = match sent {
        Err(_) => error("the daemon is stopping"),
        Ok(()) => answer
            .await
            .unwrap_or_else(|_| error("the daemon is stopping")),
    };
    if started["ok"] != true {
        let _ = wr.write_all(format!("{started}\n").as_bytes()).await;
        return;
    }
    let deadline = tokio::time::Instant::from_std(until);
    let mut messages = 0u64;
    let mut scratch = Vec::new();
    let mut client_gone = false;
    loop {
        tokio::select! {
            m = rx.recv() => {
                let Some(m) = m else { break };
                let mut line = m.to_json().to_string();
                line.push('\n');
                if wr.write_all(line.as_bytes()).await.is_err() {
                    client_gone = true;
                    break;
                }
                messages += 1;
            }
            r = rd.read_until(b'\n', &mut scratch) => {
                // The client closed (or sent more): the tap ends.
                if matches!(r, Ok(0) | Err(_)) {
                    client_gone = true;
                    break;
                }
                scratch.clear();
            }
            _ = tokio::time::sleep_until(deadline) => {
                // What the tap saw before its deadline still goes out.
                while let Ok(m) = rx.try_recv() {
                    let mut line = m.to_json().to_string();
                    line.push('\n');
                    if wr.write_all(line.as_bytes()).await.is_err() {
                        return;
                    }
                    messages += 1;
                }
                break;
            }
        }
    }
    drop(rx);
    if client_gone {
        return;
    }
    let mut done = serde_json::json!({
        "ok": true,
        "done": true,
        "messages": messages,
        "dropped": dropped.load(std::sync::atomic::Ordering::Relaxed),
        "seconds": secs,
        "call_ids": started["call_ids"],
    });
    if let Some(c) = call {
        done["call"] = c.into();
    }
    let _ = wr.write_all(format!("{done}\n").as_bytes()).await;
}

/// Sends one request to the socket at `path` and returns the answer (for `tollgate ctl` and
/// tests).
pub async fn request(path: &Path, req: &serde_json::Value) -> std::io::Result<serde_json::Value> {
    let s = UnixStream::connect(path).await?;
    let (rd, mut wr) = s.into_split();
    let mut line = req.to_string();
    line.push('\n');
    wr.write_all(line.as_bytes()).await?;
    let mut answer = String::new();
    BufReader::new(rd).read_line(&mut answer).await?;
    serde_json::from_str(&answer)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_are_refused() {
        let p = |s: &str| serde_json::from_str::<CtlRequest>(s);
        assert_eq!(p(r#"{"cmd":"calls"}"#).unwrap(), CtlRequest::Calls);
        assert_eq!(
            p(r#"{"cmd":"hangup","id":3}"#).unwrap(),
            CtlRequest::Hangup {
                id: 3,
                reason: None
            }
        );
        assert_eq!(
            p(r#"{"cmd":"trunk","name":"gw1","enable":false}"#).unwrap(),
            CtlRequest::Trunk {
                name: "gw1".into(),
                enable: false
            }
        );
        assert!(p(r#"{"cmd":"call","id":1,"x":1}"#).is_err());
        assert!(p(r#"{"cmd":"call"}"#).is_err(), "a missing id is refused");
        assert!(p(r#"{"cmd":"rm -rf"}"#).is_err());
        assert!(p("not json").is_err());
    }

    /// A fake driver: answers capture requests, feeds each tap `n` messages, and reports
    /// the tap's sender once the client has gone (its channel closed).
    async fn fake_driver(
        mut rx: mpsc::UnboundedReceiver<Control>,
        n: usize,
        closed: oneshot::Sender<()>,
    ) {
        let Some(Control::Capture(c)) = rx.recv().await else {
            return;
        };
        if c.call == Some(99) {
            let _ = c.reply.send(error("no call 99"));
            return;
        }
        let _ = c
            .reply
            .send(serde_json::json!({ "ok": true, "call_ids": null }));
        for i in 0..n {
            let m = crate::capture::Captured {
                time: std::time::SystemTime::now(),
                side: crate::transport::Side::Int,
                dir: crate::capture::Dir::In,
                local: "10.0.0.1:5061".parse().unwrap(),
                peer: "10.0.0.2:40000".parse().unwrap(),
                transport: crate::transport::NetTransport::Tls,
                call_id: Some(format!("c{i}")),
                sip: std::sync::Arc::from(&b"OPTIONS sip:x SIP/2.0\r\n\r\n"[..]),
            };
            if c.tx.try_send(m).is_err() {
                c.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        c.tx.closed().await;
        let _ = closed.send(());
    }

    async fn capture_client(
        path: &Path,
        req: &str,
    ) -> (Vec<serde_json::Value>, tokio::net::unix::OwnedWriteHalf) {
        let s = UnixStream::connect(path).await.unwrap();
        let (rd, mut wr) = s.into_split();
        wr.write_all(format!("{req}\n").as_bytes()).await.unwrap();
        let mut lines = BufReader::new(rd).lines();
        let mut got = Vec::new();
        while let Ok(Ok(Some(l))) =
            tokio::time::timeout(Duration::from_millis(1500), lines.next_line()).await
        {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            let last = v.get("ok").is_some();
            got.push(v);
            if last {
                break;
            }
        }
        (got, wr)
    }

    #[tokio::test]
    async fn capture_streams_until_the_deadline_and_ends_when_the_client_goes() {
        let dir = std::env::temp_dir().join(format!("tg-ctl-cap-{}", std::process::id()));
        let path = dir.join("control.sock");
        let l = bind(&path).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let server = tokio::spawn(serve(l, tx));

        // Runs to its deadline: every message, then the summary.
        let (closed_tx, closed) = oneshot::channel();
        let drv = tokio::spawn(fake_driver(rx, 3, closed_tx));
        let (got, _wr) = capture_client(&path, r#"{"cmd":"capture","seconds":1}"#).await;
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0]["side"], "int");
        assert_eq!(got[0]["dir"], "in");
        assert_eq!(got[0]["call_id"], "c0");
        assert_eq!(got[0]["transport"], "tls");
        assert_eq!(got[3]["done"], true);
        assert_eq!(got[3]["messages"], 3);
        assert_eq!(got[3]["dropped"], 0);
        tokio::time::timeout(Duration::from_secs(2), closed)
            .await
            .unwrap()
            .unwrap();
        drv.await.unwrap();
        server.abort();

        // The client goes away mid-capture: the tap's channel closes long before 60 s.
        let path = dir.join("control2.sock");
        let l = bind(&path).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let server = tokio::spawn(serve(l, tx));
        let (closed_tx, closed) = oneshot::channel();
        let drv = tokio::spawn(fake_driver(rx, 0, closed_tx));
        let s = UnixStream::connect(&path).await.unwrap();
        let (_rd, mut wr) = s.into_split();
        wr.write_all(b"{\"cmd\":\"capture\",\"seconds\":60}\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(wr);
        drop(_rd);
        tokio::time::timeout(Duration::from_secs(2), closed)
            .await
            .expect("the tap ends when its client disconnects")
            .unwrap();
        drv.await.unwrap();
        server.abort();

        // Refusals are one line.
        let path = dir.join("control3.sock");
        let l = bind(&path).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let server = tokio::spawn(serve(l, tx));
        let (closed_tx, _closed) = oneshot::channel();
        tokio::spawn(fake_driver(rx, 0, closed_tx));
        let (got, _wr) = capture_client(&path, r#"{"cmd":"capture","seconds":1,"call":99}"#).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["ok"], false);
        assert_eq!(got[0]["error"], "no call 99");
        let (got, _wr) = capture_client(&path, r#"{"cmd":"capture","seconds":0}"#).await;
        assert_eq!(got[0]["error"], "seconds must be 1..=3600");
        server.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn socket_is_owner_and_group_only_and_replaces_a_stale_one() {
        let dir = std::env::temp_dir().join(format!("tg-ctl-{}", std::process::id()));
        let path = dir.join("sub").join("control.sock");
        let l = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o750);
        // A live socket is never taken over; one left behind is replaced.
        assert!(matches!(bind(&path), Err(ControlError::InUse(_))));
        drop(l);
        let _l2 = bind(&path).unwrap();
        std::fs::write(dir.join("file"), "x").unwrap();
        assert!(matches!(
            bind(&dir.join("file")),
            Err(ControlError::NotASocket(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
