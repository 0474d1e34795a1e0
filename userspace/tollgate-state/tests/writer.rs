//! StoreWriter: coalescing, batching, flush/shutdown, and a real Valkey outage and resync.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tollgate_state::testing::ValkeyServer;
use tollgate_state::{
    CallStore, FileStore, StoreError, StoreWriter, ValkeyStore, WriterOptions, WriterStatus,
};

type Batch = (Vec<(String, Vec<u8>)>, Vec<String>);

/// An in-memory store that records every `apply` and can be switched to failing.
#[derive(Clone, Default)]
struct Recorder {
    batches: Arc<Mutex<Vec<Batch>>>,
    data: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    down: Arc<AtomicBool>,
}

impl CallStore for Recorder {
    fn apply(&mut self, puts: &[(String, Vec<u8>)], deletes: &[String]) -> Result<(), StoreError> {
        self.ping()?;
        self.batches
            .lock()
            .unwrap()
            .push((puts.to_vec(), deletes.to_vec()));
        let mut d = self.data.lock().unwrap();
        for (k, v) in puts {
            d.insert(k.clone(), v.clone());
        }
        for k in deletes {
            d.remove(k);
        }
        Ok(())
    }
    fn load(&mut self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.ping()?;
        Ok(self.data.lock().unwrap().clone().into_iter().collect())
    }
    fn refresh(&mut self) -> Result<(), StoreError> {
        self.ping()
    }
    fn ping(&mut self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Config("recorder is down".into()))
        } else {
            Ok(())
        }
    }
    fn backend(&self) -> &'static str {
        "file"
    }
}

/// Polls `f` every 10 ms until it holds or 10 s pass.
fn eventually(what: &str, w: &StoreWriter, mut f: impl FnMut(&WriterStatus) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = w.status();
        if f(&s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

const FLUSH: Duration = Duration::from_secs(10);

#[test]
fn many_puts_of_one_key_become_one_write_of_the_latest() {
    let rec = Recorder::default();
    let opts = WriterOptions {
        max_delay: Duration::from_millis(100),
        ..WriterOptions::default()
    };
    let w = StoreWriter::spawn(Box::new(rec.clone()), opts).unwrap();
    for i in 0..5000u32 {
        w.put("17".into(), i.to_be_bytes().to_vec());
    }
    w.flush(FLUSH).unwrap();
    let batches = rec.batches.lock().unwrap().clone();
    assert_eq!(batches.len(), 1, "{batches:?}");
    assert_eq!(
        batches[0].0,
        vec![("17".to_owned(), 4999u32.to_be_bytes().to_vec())]
    );
    let s = w.status();
    assert!(s.up);
    assert_eq!(
        (s.unprotected, s.records, s.writes_ok, s.last_batch),
        (0, 1, 1, 1)
    );

    // Put then delete inside one window: one delete, no put.
    w.put("18".into(), b"x".to_vec());
    w.delete("18".into());
    w.flush(FLUSH).unwrap();
    let batches = rec.batches.lock().unwrap().clone();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[1], (vec![], vec!["18".to_owned()]));
    w.shutdown().unwrap();
    assert!(matches!(
        w.flush(FLUSH).unwrap_err(),
        StoreError::WriterGone(_)
    ));
}

#[test]
fn a_burst_is_one_batch_and_batches_are_bounded() {
    let rec = Recorder::default();
    let opts = WriterOptions {
        max_delay: Duration::from_millis(200),
        max_batch: 100,
        ..WriterOptions::default()
    };
    let w = StoreWriter::spawn(Box::new(rec.clone()), opts).unwrap();
    for i in 0..60 {
        w.put(format!("{i}"), vec![1]);
    }
    w.flush(FLUSH).unwrap();
    assert_eq!(rec.batches.lock().unwrap().len(), 1);
    assert_eq!(w.status().last_batch, 60);

    for i in 0..1000 {
        w.put(format!("k{i}"), vec![2]);
    }
    w.flush(FLUSH).unwrap();
    let batches = rec.batches.lock().unwrap().clone();
    assert!(batches.iter().all(|(p, d)| p.len() + d.len() <= 100));
    assert_eq!(batches.iter().map(|(p, _)| p.len()).sum::<usize>(), 1060);
    assert_eq!(rec.data.lock().unwrap().len(), 1060);
    assert_eq!(w.status().records, 1060);
}

#[test]
fn invalid_keys_are_rejected_and_counted() {
    let rec = Recorder::default();
    let w = StoreWriter::spawn(Box::new(rec.clone()), WriterOptions::default()).unwrap();
    w.put("".into(), vec![1]);
    w.put("a b".into(), vec![1]);
    w.delete("ünï".into());
    w.put("ok".into(), vec![1]);
    w.flush(FLUSH).unwrap();
    let s = w.status();
    assert_eq!(s.rejected, 3);
    assert!(s.up);
    assert_eq!(rec.data.lock().unwrap().keys().collect::<Vec<_>>(), ["ok"]);
}

#[test]
fn outage_of_a_fake_store_resyncs_and_deletes_stale_keys() {
    let rec = Recorder::default();
    let opts = WriterOptions {
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        ..WriterOptions::default()
    };
    let w = StoreWriter::spawn(Box::new(rec.clone()), opts).unwrap();
    w.put("1".into(), vec![1]);
    w.put("2".into(), vec![2]);
    w.flush(FLUSH).unwrap();
    rec.down.store(true, Ordering::SeqCst);
    w.put("3".into(), vec![3]);
    w.delete("1".into());
    eventually("outage", &w, |s| !s.up && s.unprotected == 2);
    let err = w.flush(Duration::from_millis(100)).unwrap_err();
    assert!(
        matches!(err, StoreError::Timeout { unprotected: 2 }),
        "{err}"
    );
    // The store comes back with a stale record the mirror no longer has.
    rec.data.lock().unwrap().insert("stale".into(), vec![9]);
    rec.down.store(false, Ordering::SeqCst);
    eventually("recovery", &w, |s| {
        s.up && s.unprotected == 0 && s.resyncs == 1
    });
    w.flush(FLUSH).unwrap();
    let data = rec.data.lock().unwrap().clone();
    assert_eq!(
        data,
        BTreeMap::from([("2".into(), vec![2]), ("3".into(), vec![3])])
    );
    assert!(w.status().write_errors >= 1);
}

#[test]
fn shutdown_while_down_reports_unwritten_records() {
    let rec = Recorder::default();
    let w = StoreWriter::spawn(Box::new(rec.clone()), WriterOptions::default()).unwrap();
    rec.down.store(true, Ordering::SeqCst);
    w.put("1".into(), vec![1]);
    let err = w.shutdown().unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable { unprotected: 1 }),
        "{err}"
    );
    assert!(matches!(
        w.shutdown().unwrap_err(),
        StoreError::WriterGone(_)
    ));
}

#[test]
fn file_backed_writer_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("tollgate-state-writer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("calls.redb");
    {
        let store = FileStore::open(&path).unwrap();
        let w = StoreWriter::spawn(Box::new(store), WriterOptions::default()).unwrap();
        assert_eq!(w.backend(), "file");
        for i in 0..300 {
            w.put(format!("{i}"), format!("call {i}").into_bytes());
        }
        for i in (0..300).step_by(3) {
            w.delete(format!("{i}"));
        }
        w.shutdown().unwrap();
    }
    let mut store = FileStore::open(&path).unwrap();
    let got: BTreeMap<String, Vec<u8>> = store.load().unwrap().into_iter().collect();
    let want: BTreeMap<String, Vec<u8>> = (0..300)
        .filter(|i| i % 3 != 0)
        .map(|i| (format!("{i}"), format!("call {i}").into_bytes()))
        .collect();
    assert_eq!(got, want);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

fn server_state(srv: &ValkeyServer, node: &str) -> (BTreeMap<String, Vec<u8>>, BTreeSet<String>) {
    let mut c = redis::Client::open(srv.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let prefix = format!("tollgate:{node}:call:");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut c)
        .unwrap();
    let mut records = BTreeMap::new();
    for k in keys {
        let v: Vec<u8> = redis::cmd("GET").arg(&k).query(&mut c).unwrap();
        records.insert(k[prefix.len()..].to_owned(), v);
    }
    let index: BTreeSet<String> = redis::cmd("SMEMBERS")
        .arg(format!("tollgate:{node}:calls"))
        .query(&mut c)
        .unwrap();
    (records, index)
}

#[test]
fn valkey_outage_then_full_resync() {
    let mut srv = ValkeyServer::start()
        .unwrap_or_else(|e| panic!("cannot start a private valkey server: {e}"));
    let ttl = Duration::from_secs(30);
    let store = ValkeyStore::connect(&srv.url(), "n1", ttl).unwrap();
    let w = StoreWriter::spawn(Box::new(store), WriterOptions::for_ttl(ttl)).unwrap();
    let mut want = BTreeMap::new();
    for i in 0..200 {
        let v = format!("call {i} v1").into_bytes();
        w.put(format!("{i}"), v.clone());
        want.insert(format!("{i}"), v);
    }
    w.flush(FLUSH).unwrap();
    let (records, index) = server_state(&srv, "n1");
    assert_eq!(records, want);
    assert_eq!(index, want.keys().cloned().collect());

    srv.kill();
    // Calls keep changing during the outage.
    for i in 150..260 {
        let v = format!("call {i} v2").into_bytes();
        w.put(format!("{i}"), v.clone());
        want.insert(format!("{i}"), v);
    }
    for i in (0..260).step_by(4) {
        w.delete(format!("{i}"));
        want.remove(&format!("{i}"));
    }
    eventually("the outage to be seen", &w, |s| !s.up && s.unprotected > 0);
    let s = w.status();
    assert!(s.write_errors >= 1 && s.resyncs == 0, "{s:?}");
    assert!(matches!(
        w.flush(Duration::from_millis(50)).unwrap_err(),
        StoreError::Timeout { .. }
    ));
    // A few more after the writer noticed.
    w.put("late".into(), b"late".to_vec());
    want.insert("late".into(), b"late".to_vec());
    w.delete("1".into());
    want.remove("1");

    srv.restart().unwrap();
    eventually("the resync", &w, |s| {
        s.up && s.unprotected == 0 && s.resyncs == 1
    });
    w.flush(FLUSH).unwrap();
    let (records, index) = server_state(&srv, "n1");
    assert_eq!(records, want, "the server must hold exactly the mirror");
    assert_eq!(index, want.keys().cloned().collect());
    assert_eq!(w.status().records, want.len());

    // Normal service again.
    w.delete("2".into());
    want.remove("2");
    w.flush(FLUSH).unwrap();
    assert_eq!(server_state(&srv, "n1").0, want);
    w.shutdown().unwrap();
}

#[test]
fn writer_refreshes_valkey_ttls() {
    let srv = ValkeyServer::start()
        .unwrap_or_else(|e| panic!("cannot start a private valkey server: {e}"));
    let ttl = Duration::from_millis(300);
    let store = ValkeyStore::connect(&srv.url(), "n", ttl).unwrap();
    let w = StoreWriter::spawn(Box::new(store), WriterOptions::for_ttl(ttl)).unwrap();
    w.put("1".into(), b"kept".to_vec());
    w.flush(FLUSH).unwrap();
    // Three TTLs later the record is still there, because the writer refreshes every ttl/3.
    std::thread::sleep(ttl * 3);
    assert_eq!(server_state(&srv, "n").0.len(), 1);
    assert!(w.status().up);
    // After shutdown nobody refreshes: it expires.
    w.shutdown().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server_state(&srv, "n").0.is_empty() {
        assert!(Instant::now() < deadline, "the record should have expired");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn writer_started_while_valkey_is_down_catches_up() {
    let mut srv = ValkeyServer::start()
        .unwrap_or_else(|e| panic!("cannot start a private valkey server: {e}"));
    srv.kill();
    let ttl = Duration::from_secs(30);
    assert!(ValkeyStore::connect(&srv.url(), "n", ttl).is_err());
    let store = ValkeyStore::new(&srv.url(), "n", ttl).unwrap();
    let w = StoreWriter::spawn(Box::new(store), WriterOptions::for_ttl(ttl)).unwrap();
    w.put("1".into(), b"one".to_vec());
    w.put("2".into(), b"two".to_vec());
    w.delete("2".into());
    eventually("outage at start", &w, |s| !s.up && s.unprotected == 2);
    srv.restart().unwrap();
    eventually("catch-up", &w, |s| {
        s.up && s.unprotected == 0 && s.resyncs == 1
    });
    let (records, index) = server_state(&srv, "n");
    assert_eq!(records, BTreeMap::from([("1".to_owned(), b"one".to_vec())]));
    assert_eq!(index, BTreeSet::from(["1".to_owned()]));
    w.shutdown().unwrap();
}
