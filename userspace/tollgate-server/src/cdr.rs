//! Call detail records: one JSON object per line ([`to_json`]: the core's [`Cdr`] with the
//! call's media totals), appended to the configured file.
//!
//! File writes never run on the control plane's async threads: a write into the page cache is
//! usually microseconds, but when the kernel throttles dirty pages it can block for tens or
//! hundreds of milliseconds, which would stall every call's signalling. Records go over a
//! channel to a dedicated `tg-cdr` thread that writes them through a buffer and flushes
//! whenever the channel is empty, so a CDR reaches the file as soon as the writer is idle.

use std::io::Write;
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use tollgate_b2bua::Cdr;

use crate::media::CallMedia;

/// An append-only CDR file, written by its own thread.
#[derive(Debug)]
pub struct CdrWriter {
    tx: Option<mpsc::Sender<String>>,
    thread: Option<JoinHandle<()>>,
}

impl CdrWriter {
    /// Opens (creating) the file for appending and starts its writer thread; `None` writes
    /// nothing.
    pub fn open(path: Option<&Path>) -> std::io::Result<CdrWriter> {
        let Some(p) = path else {
            return Ok(CdrWriter {
                tx: None,
                thread: None,
            });
        };
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)?;
        let (tx, rx) = mpsc::channel::<String>();
        let thread = std::thread::Builder::new()
            .name("tg-cdr".into())
            .spawn(move || write_loop(file, &rx))?;
        Ok(CdrWriter {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues one record as a line (never blocks).
    pub fn write(&mut self, record: &serde_json::Value) {
        if let Some(tx) = &self.tx {
            let mut line = record.to_string();
            line.push('\n');
            if tx.send(line).is_err() {
                tracing::error!("CDR writer thread is gone; record dropped");
            }
        }
    }
}

impl Drop for CdrWriter {
    /// Lets the writer drain what is queued, flush and exit.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_loop(file: std::fs::File, rx: &mpsc::Receiver<String>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, file);
    let report = |e: std::io::Error| tracing::error!(error = %e, "cannot write CDR");
    // Each wakeup writes what is queued, then flushes while idle; the channel closing ends the
    // loop with everything written and flushed.
    while let Ok(first) = rx.recv() {
        for line in std::iter::once(first).chain(rx.try_iter()) {
            if let Err(e) = out.write_all(line.as_bytes()) {
                report(e);
            }
        }
        if let Err(e) = out.flush() {
            report(e);
        }
    }
}

/// Seconds since the Unix epoch of a core `Instant`, given the driver's clock epoch (an
/// `Instant` and the wall-clock time read with it) since the Unix epoch.
pub fn wall(epoch: (Instant, SystemTime), t: Instant) -> f64 {
    let (i0, w0) = epoch;
    let w = if t >= i0 {
        w0 + (t - i0)
    } else {
        w0 - (i0 - t)
    };
    w.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The CDR as a JSON object, with the call's media totals.
pub fn to_json(cdr: &Cdr, media: &CallMedia, epoch: (Instant, SystemTime)) -> serde_json::Value {
    let secs = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64();
    serde_json::json!({
        "call": cdr.call,
        "direction": cdr.direction.as_str(),
        "trunk": cdr.trunk,
        "calling": { "received": cdr.calling_received, "sent": cdr.calling_sent },
        "called": { "received": cdr.called_received, "sent": cdr.called_sent },
        "ext_call_id": cdr.ext_call_id,
        "int_call_id": cdr.int_call_id,
        "start": wall(epoch, cdr.start),
        "answer": cdr.answer.map(|a| wall(epoch, a)),
        "end": wall(epoch, cdr.end),
        "setup_s": cdr.answer.map(|a| secs(cdr.start, a)),
        "duration_s": cdr.answer.map(|a| secs(a, cdr.end)).unwrap_or(0.0),
        "cause": cdr.cause.as_str(),
        "note": cdr.note,
        "restarts": cdr.restarts,
        "status": cdr.status,
        "media": media.to_json(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_reach_the_file_in_order() {
        let dir = std::env::temp_dir().join(format!("tg-cdr-{}", std::process::id()));
        let path = dir.join("cdr.jsonl");
        let _ = std::fs::remove_file(&path);
        {
            let mut w = CdrWriter::open(Some(&path)).expect("open");
            for i in 0..1000 {
                w.write(&serde_json::json!({ "call": i }));
            }
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let calls: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("json")["call"]
                    .as_u64()
                    .expect("n")
            })
            .collect();
        assert_eq!(calls, (0..1000).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
