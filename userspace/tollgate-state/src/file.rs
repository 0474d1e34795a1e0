//! File backend: one redb database, one table `calls` of call key → record.
//!
//! Every [`CallStore::apply`] is one redb write transaction committed with redb's default
//! durability (`Immediate`: the commit returns after fsync), so after a crash, power loss or
//! SIGKILL the database holds exactly the batches whose `apply` returned, plus possibly the
//! one in flight as a whole, never part of a batch. redb repairs its allocator state on the next
//! open after an unclean shutdown.
//!
//! redb panics on some damaged files (found by this crate's tests) instead of returning an
//! error: opening, loading and applying run under `catch_unwind` and report
//! [`StoreError::Corrupt`] instead (with the default `panic = "unwind"`; the panic message is
//! still printed by the panic hook). A store that reported `Corrupt` should be dropped.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use crate::{CallStore, StoreError, valid_key};

/// The single table: call key (bytes, ASCII when written by us) → opaque record.
const CALLS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("calls");

/// The first bytes of every redb file (its header's magic number).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// Call records in a local redb file. See the module doc for the durability argument.
pub struct FileStore {
    path: PathBuf,
    db: Database,
    skipped: u64,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl FileStore {
    /// Opens the database at `path`, creating it (and nothing else: the directory must exist)
    /// if absent. A file that is not a redb database is refused with [`StoreError::Corrupt`]
    /// and left as it is, so an operator can look at it.
    pub fn open(path: &Path) -> Result<FileStore, StoreError> {
        check_header(path)?;
        let opened = catch_unwind(AssertUnwindSafe(|| Database::create(path)));
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(e)) => {
                let e: redb::Error = e.into();
                return Err(match e {
                    redb::Error::Corrupted(reason) => StoreError::Corrupt {
                        path: path.to_path_buf(),
                        reason,
                    },
                    other => file_error(path, other),
                });
            }
            Err(_) => {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    reason: "the database library failed while opening it".into(),
                });
            }
        };
        let mut store = FileStore {
            path: path.to_path_buf(),
            db,
            skipped: 0,
        };
        // Create the table up front, so that a fresh file is a complete, valid store.
        store.apply(&[], &[])?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records skipped by [`CallStore::load`] so far because their key was not a valid call
    /// key (corruption, or written by something else). Each skip is also logged.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    fn apply_inner(
        &self,
        puts: &[(String, Vec<u8>)],
        deletes: &[String],
    ) -> Result<(), StoreError> {
        let e = |err: redb::Error| file_error(&self.path, err);
        let tx = self.db.begin_write().map_err(|x| e(x.into()))?;
        {
            let mut table = tx.open_table(CALLS).map_err(|x| e(x.into()))?;
            for (key, value) in puts {
                table
                    .insert(key.as_bytes(), value.as_slice())
                    .map_err(|x| e(x.into()))?;
            }
            for key in deletes {
                table.remove(key.as_bytes()).map_err(|x| e(x.into()))?;
            }
        }
        tx.commit().map_err(|x| e(x.into()))
    }

    fn load_inner(&mut self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let path = self.path.clone();
        let e = |err: redb::Error| file_error(&path, err);
        let tx = self.db.begin_read().map_err(|x| e(x.into()))?;
        let table = match tx.open_table(CALLS) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(x) => return Err(e(x.into())),
        };
        let mut out = Vec::new();
        for entry in table.iter().map_err(|x| e(x.into()))? {
            let (k, v) = entry.map_err(|x| e(x.into()))?;
            match std::str::from_utf8(k.value()) {
                Ok(key) if valid_key(key) => out.push((key.to_owned(), v.value().to_vec())),
                _ => {
                    self.skipped += 1;
                    tracing::warn!(
                        path = %self.path.display(),
                        key = %String::from_utf8_lossy(k.value()),
                        "call-state file: skipping a record with an invalid key"
                    );
                }
            }
        }
        Ok(out)
    }
}

impl CallStore for FileStore {
    fn apply(&mut self, puts: &[(String, Vec<u8>)], deletes: &[String]) -> Result<(), StoreError> {
        for key in puts.iter().map(|(k, _)| k).chain(deletes) {
            if !valid_key(key) {
                return Err(StoreError::InvalidKey {
                    what: "call key",
                    value: key.clone(),
                });
            }
        }
        match catch_unwind(AssertUnwindSafe(|| self.apply_inner(puts, deletes))) {
            Ok(r) => r,
            Err(_) => Err(StoreError::Corrupt {
                path: self.path.clone(),
                reason: "the database library failed while writing it".into(),
            }),
        }
    }

    fn load(&mut self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        match catch_unwind(AssertUnwindSafe(|| self.load_inner())) {
            Ok(r) => r,
            Err(_) => Err(StoreError::Corrupt {
                path: self.path.clone(),
                reason: "the database library failed while reading it".into(),
            }),
        }
    }

    fn refresh(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "file"
    }
}

fn file_error(path: &Path, source: redb::Error) -> StoreError {
    StoreError::File {
        path: path.to_path_buf(),
        source: Box::new(source),
    }
}

/// Refuses an existing, non-empty file that does not start with redb's magic number (redb
/// would report it too, but this way the message says what is wrong and the file is never
/// touched).
fn check_header(path: &Path) -> Result<(), StoreError> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(file_error(path, redb::Error::Io(e))),
    };
    let mut head = [0u8; REDB_MAGIC.len()];
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(file_error(path, redb::Error::Io(e))),
        }
    }
    if got == 0 {
        return Ok(()); // empty file: redb initialises it
    }
    if got < head.len() || head != REDB_MAGIC {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: "no redb header (the file was not written by this store)".into(),
        });
    }
    Ok(())
}
