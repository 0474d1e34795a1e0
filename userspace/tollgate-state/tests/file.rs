//! File backend: apply/load/delete, reopen, corrupt files, and a SIGKILL crash test.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tollgate_state::{Backend, CallStore, FileStore, StoreConfig, StoreError};

/// A temp directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "tollgate-state-{tag}-{}-{nanos:x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn as_map(v: Vec<(String, Vec<u8>)>) -> BTreeMap<String, Vec<u8>> {
    v.into_iter().collect()
}

fn put(k: &str, v: &[u8]) -> (String, Vec<u8>) {
    (k.to_owned(), v.to_vec())
}

#[test]
fn apply_load_delete_reopen() {
    let dir = Scratch::new("basic");
    let path = dir.path("calls.redb");
    {
        let mut s = FileStore::open(&path).unwrap();
        assert_eq!(s.backend(), "file");
        assert!(s.load().unwrap().is_empty());
        s.apply(&[put("1", b"one"), put("2", b"two"), put("3", b"")], &[])
            .unwrap();
        s.apply(
            &[put("2", b"TWO")],
            &["1".to_owned(), "never-there".to_owned()],
        )
        .unwrap();
        s.ping().unwrap();
        s.refresh().unwrap();
        let m = as_map(s.load().unwrap());
        assert_eq!(m.len(), 2);
        assert_eq!(m["2"], b"TWO");
        assert_eq!(m["3"], b"");
    }
    let cfg = StoreConfig {
        backend: Backend::File { path: path.clone() },
        node_id: "n1".into(),
        ttl: std::time::Duration::from_secs(60),
    };
    let mut s = tollgate_state::open(&cfg).unwrap();
    let m = as_map(s.load().unwrap());
    assert_eq!(m.keys().collect::<Vec<_>>(), ["2", "3"]);
    // Invalid keys are refused whole, and nothing of the batch is written.
    let err = s
        .apply(&[put("4", b"x"), put("bad key", b"x")], &[])
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidKey { .. }), "{err}");
    assert_eq!(s.load().unwrap().len(), 2);
}

#[test]
fn garbage_file_is_refused_and_left_alone() {
    let dir = Scratch::new("garbage");
    let path = dir.path("calls.redb");
    let garbage: Vec<u8> = (0..65_536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).unwrap();
    let err = FileStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("corrupt"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "the file must not be modified"
    );

    // A short file too.
    std::fs::write(&path, b"redb").unwrap();
    assert!(matches!(
        FileStore::open(&path).unwrap_err(),
        StoreError::Corrupt { .. }
    ));
}

#[test]
fn damaged_redb_file_is_an_error_not_a_panic() {
    let dir = Scratch::new("damaged");
    let good = dir.path("good.redb");
    {
        let mut s = FileStore::open(&good).unwrap();
        let batch: Vec<_> = (0..500)
            .map(|i| (format!("{i}"), vec![i as u8; 300]))
            .collect();
        s.apply(&batch, &[]).unwrap();
    }
    let bytes = std::fs::read(&good).unwrap();
    // Truncated after the header, and the header's body overwritten: each opens with an
    // error (or, if redb can repair it, opens and loads without panicking).
    let mut cases: Vec<Vec<u8>> = vec![bytes[..bytes.len().min(700)].to_vec()];
    let mut scribbled = bytes.clone();
    for b in scribbled.iter_mut().skip(9).take(4096) {
        *b = 0xA5;
    }
    cases.push(scribbled);
    let mut tail = bytes.clone();
    let n = tail.len();
    for b in tail.iter_mut().skip(n / 2) {
        *b = !*b;
    }
    cases.push(tail);
    for (i, case) in cases.iter().enumerate() {
        let path = dir.path(&format!("bad{i}.redb"));
        std::fs::write(&path, case).unwrap();
        match FileStore::open(&path) {
            Err(e) => eprintln!("case {i}: refused: {e}"),
            Ok(mut s) => match s.load() {
                Ok(v) => eprintln!("case {i}: opened, {} records", v.len()),
                Err(e) => eprintln!("case {i}: opened, load failed: {e}"),
            },
        }
    }
}

#[test]
fn invalid_stored_keys_are_skipped_and_counted() {
    let dir = Scratch::new("badkey");
    let path = dir.path("calls.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let table: redb::TableDefinition<'_, &[u8], &[u8]> = redb::TableDefinition::new("calls");
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(table).unwrap();
            t.insert(b"\xff\xfe".as_slice(), b"x".as_slice()).unwrap();
            t.insert(b"has space".as_slice(), b"y".as_slice()).unwrap();
            t.insert(b"7".as_slice(), b"seven".as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    let mut s = FileStore::open(&path).unwrap();
    assert_eq!(s.load().unwrap(), vec![put("7", b"seven")]);
    assert_eq!(s.skipped(), 2);
}

#[test]
fn second_open_of_the_same_file_is_an_error() {
    let dir = Scratch::new("lock");
    let path = dir.path("calls.redb");
    let _first = FileStore::open(&path).unwrap();
    let err = FileStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::File { .. }), "{err}");
}

// ---- SIGKILL crash test -------------------------------------------------------------------

const KEYS_PER_BATCH: usize = 10;
const CHILD_ENV: &str = "TOLLGATE_STATE_CRASH_DB";

fn value(batch: u64, j: usize) -> Vec<u8> {
    let mut v = format!("{batch}:{j}:").into_bytes();
    v.resize(700, (batch as u8) ^ (j as u8));
    v
}

/// Batch `i` puts `b{i}-0..9` and deletes `b{i-1}-0`. So after batches `0..=m` the store holds
/// `b{i}-1..9` for every `i <= m` and `b{m}-0` only for the last one.
fn check_store(path: &Path, at_least: Option<u64>) -> Option<u64> {
    let mut s = FileStore::open(path).expect("the database must open after SIGKILL");
    let m = as_map(s.load().unwrap());
    assert_eq!(s.skipped(), 0);
    let last = m
        .keys()
        .filter_map(|k| k.strip_prefix('b')?.strip_suffix("-1")?.parse::<u64>().ok())
        .max();
    if let Some(min) = at_least {
        let last = last.expect("reported commits are missing");
        assert!(
            last >= min,
            "batch {min} was reported committed but the store ends at {last}"
        );
    }
    let Some(last) = last else {
        assert!(m.is_empty());
        return None;
    };
    for i in 0..=last {
        for j in 1..KEYS_PER_BATCH {
            assert_eq!(
                m.get(&format!("b{i}-{j}")),
                Some(&value(i, j)),
                "batch {i} key {j}"
            );
        }
        assert_eq!(
            m.contains_key(&format!("b{i}-0")),
            i == last,
            "b{i}-0 (last batch {last})"
        );
    }
    assert_eq!(
        m.len(),
        (last as usize + 1) * (KEYS_PER_BATCH - 1) + 1,
        "no stray records"
    );
    Some(last)
}

/// Child process of `file_survives_sigkill`: writes batches until killed, reporting each
/// commit on stdout. Does nothing when run without the environment variable.
#[test]
#[ignore = "child process of file_survives_sigkill"]
fn crash_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut s = FileStore::open(Path::new(&path)).unwrap();
    let start = as_map(s.load().unwrap())
        .keys()
        .filter_map(|k| k.strip_prefix('b')?.strip_suffix("-1")?.parse::<u64>().ok())
        .max()
        .map_or(0, |m| m + 1);
    for i in start..start + 100_000 {
        let puts: Vec<_> = (0..KEYS_PER_BATCH)
            .map(|j| (format!("b{i}-{j}"), value(i, j)))
            .collect();
        let deletes = if i == 0 {
            vec![]
        } else {
            vec![format!("b{}-0", i - 1)]
        };
        s.apply(&puts, &deletes).unwrap();
        println!("committed {i}");
    }
}

#[test]
fn file_survives_sigkill() {
    let dir = Scratch::new("crash");
    let path = dir.path("calls.redb");
    let exe = std::env::current_exe().unwrap();
    let mut reported = None;
    for round in 0..4 {
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        let target = 15 + round * 7;
        while let Some(Ok(line)) = lines.next() {
            if let Some(n) = line.strip_prefix("committed ") {
                reported = Some(n.trim().parse::<u64>().unwrap());
                seen += 1;
                if seen >= target {
                    break;
                }
            }
        }
        assert!(seen >= target, "the child stopped early (round {round})");
        // SIGKILL while it is in the middle of further transactions.
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
        let last = check_store(&path, reported);
        eprintln!("round {round}: reported {reported:?}, store ends at batch {last:?}");
    }
}
