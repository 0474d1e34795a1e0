//! [`StoreWriter`]: the thread that owns a [`CallStore`] and writes call state in batches.
//!
//! Callers ([`StoreWriter::put`], [`StoreWriter::delete`]) only send on an unbounded channel:
//! they never block and never lose the latest state. The thread keeps a mirror of every live
//! record and a dirty set (keys changed since their last successful write). It drains the
//! channel, and once the oldest dirty change is `max_delay` old (or `max_batch` keys are dirty,
//! or a flush waits) writes the dirty keys in [`CallStore::apply`] batches of at most
//! `max_batch`: a burst of call set-ups becomes one transaction, and many updates of one
//! call become one write of its latest record.
//!
//! Outage: when a write (or refresh) fails the writer marks the store down, logs one warning
//! with the number of unprotected calls, keeps every change dirty and keeps accepting new
//! ones, and retries with backoff (`retry_min` doubling up to `retry_max`). A retry is a full
//! resync: PING, then `load` the store's records (keys not in the mirror are deleted), then
//! rewrite the whole mirror, because a restarted Valkey may have lost everything or come back
//! with an old snapshot. Only then is the store up again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use crate::{CallStore, StoreError, valid_key};

/// Messages handled per wake-up before the writer checks whether a batch is due.
const DRAIN_LIMIT: usize = 65_536;

/// Tuning of a [`StoreWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// How long a change may wait for companions before its batch is written (default 5 ms).
    pub max_delay: Duration,
    /// Most records (puts + deletes) in one `apply` (default 512).
    pub max_batch: usize,
    /// Period of [`CallStore::refresh`] (default 60 s; use [`WriterOptions::for_ttl`]).
    pub refresh_interval: Duration,
    /// First retry delay after a failure (default 100 ms); doubles per failure ...
    pub retry_min: Duration,
    /// ... up to this (default 2 s).
    pub retry_max: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            max_delay: Duration::from_millis(5),
            max_batch: 512,
            refresh_interval: Duration::from_secs(60),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(2),
        }
    }
}

impl WriterOptions {
    /// The defaults with refreshes every `ttl / 3` (at least every 10 ms).
    pub fn for_ttl(ttl: Duration) -> Self {
        WriterOptions {
            refresh_interval: (ttl / 3).max(Duration::from_millis(10)),
            ..Self::default()
        }
    }
}

/// A snapshot of the writer's state, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStatus {
    /// The last write, refresh or resync succeeded.
    pub up: bool,
    /// Records changed but not yet written (calls a crash now would lose or leave stale).
    pub unprotected: usize,
    /// Live records in the writer's mirror.
    pub records: usize,
    /// Successful `apply` batches.
    pub writes_ok: u64,
    /// Failed store operations (apply, refresh, resync attempts).
    pub write_errors: u64,
    /// Completed full resyncs (each outage that ended).
    pub resyncs: u64,
    /// Records in the last successful batch.
    pub last_batch: usize,
    /// Duration of the last successful `apply`, in microseconds.
    pub last_latency_us: u64,
    /// Puts/deletes refused because the key is not a valid call key (see [`valid_key`]).
    pub rejected: u64,
}

#[derive(Debug, Default)]
struct Shared {
    up: AtomicBool,
    unprotected: AtomicUsize,
    records: AtomicUsize,
    writes_ok: AtomicU64,
    write_errors: AtomicU64,
    resyncs: AtomicU64,
    last_batch: AtomicUsize,
    last_latency_us: AtomicU64,
    rejected: AtomicU64,
}

type Reply = Sender<Result<(), StoreError>>;

#[derive(Debug)]
enum Msg {
    Put(String, Vec<u8>),
    Delete(String),
    Flush(Reply),
    Shutdown(Reply),
}

/// Handle to the writer thread. Cheap to clone; the thread stops (after a final write
/// attempt) on [`StoreWriter::shutdown`] or when every handle is dropped.
#[derive(Debug, Clone)]
pub struct StoreWriter {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    backend: &'static str,
}

impl StoreWriter {
    /// Starts the writer thread (named `tollgate-state`) that owns `store`. Fails only if the
    /// thread cannot be created.
    pub fn spawn(
        store: Box<dyn CallStore>,
        opts: WriterOptions,
    ) -> Result<StoreWriter, StoreError> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared::default());
        shared.up.store(true, Ordering::Relaxed);
        let backend = store.backend();
        let now = Instant::now();
        let writer = Writer {
            store,
            opts: WriterOptions {
                max_batch: opts.max_batch.max(1),
                ..opts
            },
            rx,
            shared: Arc::clone(&shared),
            mirror: HashMap::new(),
            dirty: HashMap::new(),
            seq: 0,
            dirty_since: None,
            up: true,
            backoff: opts.retry_min,
            retry_at: now,
            refresh_at: now + opts.refresh_interval,
            waiters: Vec::new(),
            shutdown: None,
        };
        let thread = std::thread::Builder::new()
            .name("tollgate-state".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::WriterGone(format!("cannot start the writer thread: {e}")))?;
        Ok(StoreWriter {
            tx,
            shared,
            thread: Arc::new(Mutex::new(Some(thread))),
            backend,
        })
    }

    /// Records `value` as the state of call `key` (insert or replace). Never blocks.
    pub fn put(&self, key: String, value: Vec<u8>) {
        // A send fails only once the writer has stopped: nothing left to record to.
        let _ = self.tx.send(Msg::Put(key, value));
    }

    /// Forgets call `key`. Never blocks.
    pub fn delete(&self, key: String) {
        let _ = self.tx.send(Msg::Delete(key));
    }

    /// Waits until everything put or deleted before this call is written to the store, or
    /// `timeout` passes ([`StoreError::Timeout`]; the writer keeps trying).
    pub fn flush(&self, timeout: Duration) -> Result<(), StoreError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.tx
            .send(Msg::Flush(tx))
            .map_err(|_| StoreError::WriterGone("flush after shutdown".into()))?;
        match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => Err(StoreError::Timeout {
                unprotected: self.status().unprotected,
            }),
            Err(RecvTimeoutError::Disconnected) => Err(StoreError::WriterGone(
                "the writer stopped during a flush".into(),
            )),
        }
    }

    /// Stops the thread after a final write attempt of everything dirty (one resync attempt
    /// if the store is down) and waits for it. Reports [`StoreError::Unavailable`] if records
    /// were left unwritten.
    pub fn shutdown(&self) -> Result<(), StoreError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.tx
            .send(Msg::Shutdown(tx))
            .map_err(|_| StoreError::WriterGone("already shut down".into()))?;
        let result = rx
            .recv()
            .unwrap_or_else(|_| Err(StoreError::WriterGone("the writer stopped".into())));
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        result
    }

    /// The writer's current state.
    pub fn status(&self) -> WriterStatus {
        let s = &self.shared;
        WriterStatus {
            up: s.up.load(Ordering::Relaxed),
            unprotected: s.unprotected.load(Ordering::Relaxed),
            records: s.records.load(Ordering::Relaxed),
            writes_ok: s.writes_ok.load(Ordering::Relaxed),
            write_errors: s.write_errors.load(Ordering::Relaxed),
            resyncs: s.resyncs.load(Ordering::Relaxed),
            last_batch: s.last_batch.load(Ordering::Relaxed),
            last_latency_us: s.last_latency_us.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
        }
    }

    /// The store's backend name ("file" or "valkey").
    pub fn backend(&self) -> &'static str {
        self.backend
    }
}

/// The thread's state.
struct Writer {
    store: Box<dyn CallStore>,
    opts: WriterOptions,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    /// Every live record, as last put.
    mirror: HashMap<String, Vec<u8>>,
    /// Keys changed since their last write → sequence number of the first such change. A key
    /// in `dirty` but not in `mirror` is a pending delete.
    dirty: HashMap<String, u64>,
    /// Sequence number of the last message handled.
    seq: u64,
    /// When the dirty set last went from empty to non-empty.
    dirty_since: Option<Instant>,
    up: bool,
    backoff: Duration,
    retry_at: Instant,
    refresh_at: Instant,
    /// Flushes waiting: (sequence number of the flush, reply).
    waiters: Vec<(u64, Reply)>,
    shutdown: Option<Reply>,
}

impl Writer {
    fn run(mut self) {
        // Start in outage mode if the store is not reachable (a lazily connected Valkey).
        if let Err(e) = self.store.ping() {
            self.fail("start-up ping", &e);
        }
        loop {
            let first = self.rx.recv_deadline(self.next_deadline());
            let mut disconnected = false;
            match first {
                Ok(m) => self.handle(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => disconnected = true,
            }
            for _ in 0..DRAIN_LIMIT {
                match self.rx.try_recv() {
                    Ok(m) => self.handle(m),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                }
            }
            if disconnected || self.shutdown.is_some() {
                self.finish();
                return;
            }
            self.tick(Instant::now());
            self.publish();
        }
    }

    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        if !self.up {
            return self.retry_at;
        }
        let mut at = self.refresh_at;
        if let Some(since) = self.dirty_since {
            if !self.waiters.is_empty() || self.dirty.len() >= self.opts.max_batch {
                return now;
            }
            at = at.min(since + self.opts.max_delay);
        }
        at
    }

    fn handle(&mut self, msg: Msg) {
        self.seq += 1;
        match msg {
            Msg::Put(key, value) => {
                if self.accept(&key) {
                    self.mirror.insert(key.clone(), value);
                    self.mark_dirty(key);
                }
            }
            Msg::Delete(key) => {
                if self.accept(&key) {
                    // Also for keys the mirror does not know: the store may hold them from
                    // before this writer started.
                    self.mirror.remove(&key);
                    self.mark_dirty(key);
                }
            }
            Msg::Flush(reply) => self.waiters.push((self.seq, reply)),
            Msg::Shutdown(reply) => self.shutdown = Some(reply),
        }
    }

    fn accept(&self, key: &str) -> bool {
        if valid_key(key) {
            return true;
        }
        let n = self.shared.rejected.fetch_add(1, Ordering::Relaxed);
        if n == 0 {
            tracing::warn!(
                key,
                "call-state writer: refusing an invalid call key (first of its kind)"
            );
        }
        false
    }

    fn mark_dirty(&mut self, key: String) {
        let seq = self.seq;
        self.dirty.entry(key).or_insert(seq);
        self.dirty_since.get_or_insert_with(Instant::now);
    }

    fn tick(&mut self, now: Instant) {
        if !self.up {
            if now >= self.retry_at {
                self.resync();
            }
        } else {
            let due = match self.dirty_since {
                Some(since) => {
                    !self.waiters.is_empty()
                        || self.dirty.len() >= self.opts.max_batch
                        || now >= since + self.opts.max_delay
                }
                None => false,
            };
            if due && let Err(e) = self.write_dirty() {
                self.fail("write", &e);
            }
            if self.up && now >= self.refresh_at {
                match self.store.refresh() {
                    Ok(()) => self.refresh_at = Instant::now() + self.opts.refresh_interval,
                    Err(e) => self.fail("refresh", &e),
                }
            }
        }
        self.answer_waiters();
    }

    /// Writes every dirty key, in batches of at most `max_batch`. Stops at the first failure
    /// (the keys of the failed batch stay dirty).
    fn write_dirty(&mut self) -> Result<(), StoreError> {
        while !self.dirty.is_empty() {
            let keys: Vec<String> = self
                .dirty
                .keys()
                .take(self.opts.max_batch)
                .cloned()
                .collect();
            let mut puts = Vec::with_capacity(keys.len());
            let mut deletes = Vec::new();
            for key in &keys {
                match self.mirror.get(key) {
                    Some(v) => puts.push((key.clone(), v.clone())),
                    None => deletes.push(key.clone()),
                }
            }
            let started = Instant::now();
            self.store.apply(&puts, &deletes)?;
            let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            for key in &keys {
                self.dirty.remove(key);
            }
            let s = &self.shared;
            s.writes_ok.fetch_add(1, Ordering::Relaxed);
            s.last_batch.store(keys.len(), Ordering::Relaxed);
            s.last_latency_us.store(us, Ordering::Relaxed);
            s.unprotected.store(self.dirty.len(), Ordering::Relaxed);
        }
        self.dirty_since = None;
        Ok(())
    }

    /// A store operation failed: count it, enter (or stay in) the outage, schedule a retry.
    fn fail(&mut self, what: &str, e: &StoreError) {
        self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
        if self.up {
            self.up = false;
            self.backoff = self.opts.retry_min;
            tracing::warn!(
                error = %e,
                unprotected = self.dirty.len(),
                records = self.mirror.len(),
                backend = self.store.backend(),
                "call-state store {what} failed: calls are unprotected until it is back; retrying"
            );
        } else {
            self.backoff = (self.backoff * 2).min(self.opts.retry_max);
        }
        self.retry_at = Instant::now() + self.backoff;
        self.publish();
    }

    /// One attempt to end an outage: PING, reconcile the store's keys, rewrite the mirror.
    fn resync(&mut self) {
        let result = (|| {
            self.store.ping()?;
            let stored = self.store.load()?;
            // Everything is suspect: mark the whole mirror dirty, and every stored key that
            // the mirror does not have as a delete. New entries get a sequence number after
            // every waiting flush's, which therefore wait for this resync to finish.
            let seq = self.seq + 1;
            for (key, _) in stored {
                if !self.mirror.contains_key(&key) {
                    self.dirty.entry(key).or_insert(seq);
                }
            }
            for key in self.mirror.keys() {
                if !self.dirty.contains_key(key) {
                    self.dirty.insert(key.clone(), seq);
                }
            }
            if !self.dirty.is_empty() {
                self.dirty_since.get_or_insert_with(Instant::now);
            }
            self.publish();
            self.write_dirty()?;
            self.store.refresh()
        })();
        match result {
            Ok(()) => {
                self.up = true;
                self.backoff = self.opts.retry_min;
                self.refresh_at = Instant::now() + self.opts.refresh_interval;
                self.shared.resyncs.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    records = self.mirror.len(),
                    backend = self.store.backend(),
                    "call-state store is back: every call rewritten"
                );
            }
            Err(e) => self.fail("resync", &e),
        }
    }

    /// Answers the flushes all of whose changes are written (only while the store is up).
    fn answer_waiters(&mut self) {
        if !self.up || self.waiters.is_empty() {
            return;
        }
        let oldest_dirty = self.dirty.values().copied().min().unwrap_or(u64::MAX);
        self.waiters.retain(|(seq, reply)| {
            if oldest_dirty > *seq {
                let _ = reply.send(Ok(()));
                false
            } else {
                true
            }
        });
    }

    /// Final write attempt before the thread ends.
    fn finish(&mut self) {
        if self.up {
            if let Err(e) = self.write_dirty() {
                self.fail("final write", &e);
            }
        } else {
            self.resync();
        }
        self.answer_waiters();
        self.publish();
        let unprotected = self.dirty.len();
        for (_, reply) in self.waiters.drain(..) {
            let _ = reply.send(Err(StoreError::Unavailable { unprotected }));
        }
        if let Some(reply) = self.shutdown.take() {
            let r = if unprotected == 0 && self.up {
                Ok(())
            } else {
                Err(StoreError::Unavailable { unprotected })
            };
            let _ = reply.send(r);
        }
        if unprotected > 0 {
            tracing::warn!(
                unprotected,
                "call-state writer stopped with records not written"
            );
        }
    }

    fn publish(&self) {
        let s = &self.shared;
        s.up.store(self.up, Ordering::Relaxed);
        s.unprotected.store(self.dirty.len(), Ordering::Relaxed);
        s.records.store(self.mirror.len(), Ordering::Relaxed);
    }
}
