//! Tern's durable store: the [`tern_core::Store`] the broker writes its durable state through.
//!
//! [`open`] opens (or creates) the store in a data directory, checks it, loads everything into
//! a [`Snapshot`] for [`tern_core::Broker::restore`], and starts the writer: a dedicated thread
//! that commits submitted operations in groups (group commit), one transaction and one fsync per
//! group, and wakes whoever waits for them ([`tern_core::Store::notify`]).
//!
//! - [`tern_core::Store::submit`] never blocks on IO: it appends to a queue under a short lock.
//! - Changes that cancel out inside one group are never written: a delivery queued, sent and
//!   acknowledged within one commit window costs nothing on disk.
//! - A message is stored once, however many deliveries and retained entries refer to it.
//! - Times (session disconnection, message expiry) are stored as wall-clock time, so expiry
//!   keeps counting while the broker is stopped.
//! - A failed commit (disk full, IO error) reports its operations [`Durability::Failed`]; the
//!   writer keeps going, and writes the failed changes with the next group.
//! - A damaged, foreign, newer or unreadable store is an error ([`StoreError`]) that names the
//!   file, the problem and what to do; it is never discarded or recreated.
//!
//! [`Durability::Failed`]: tern_core::Durability::Failed

mod codec;
mod index;
mod load;
mod net;
mod sqlite;
mod writer;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tern_core::{Durability, Lsn, Snapshot, Store, StoreOp, Wake};

use crate::load::Loader;
use crate::writer::{Backend, Shared, Writer, WriterConfig, lock};

/// The version of the on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// How far a commit goes before its operations count as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DurabilityMode {
    /// Written and fsynced: survives a crash of the process, the OS or the machine (the
    /// default). SQLite: WAL with `synchronous=FULL`.
    #[default]
    Fsync,
    /// Written to the operating system without waiting for the disk: survives a crash of the
    /// process (kill -9) but not of the OS or a power loss, which may lose the last commits
    /// (never corrupt the store). SQLite: WAL with `synchronous=NORMAL`.
    Flush,
}

/// How a store is opened and written.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How far a commit goes.
    pub durability: DurabilityMode,
    /// How long an idle writer holds a group open after its first operation, to gather more
    /// (a busy writer takes everything that arrived during the previous commit at once).
    pub commit_window: Duration,
    /// The most operations in one group.
    pub max_batch: usize,
    fail_commits: Vec<u64>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            durability: DurabilityMode::Fsync,
            commit_window: Duration::from_micros(DEFAULT_COMMIT_WINDOW_US),
            max_batch: DEFAULT_MAX_BATCH,
            fail_commits: Vec::new(),
        }
    }
}

/// Default [`StoreOptions::commit_window`], in microseconds.
pub const DEFAULT_COMMIT_WINDOW_US: u64 = 0;
/// Default [`StoreOptions::max_batch`].
pub const DEFAULT_MAX_BATCH: usize = 10_000;

#[cfg(feature = "fault-injection")]
impl StoreOptions {
    /// Fault injection: commit number `n` (1-based, counting only commits that write something)
    /// runs its statements and then rolls back and reports failure.
    #[must_use]
    pub fn fail_commit(mut self, n: u64) -> Self {
        self.fail_commits.push(n);
        self
    }
}

const ADVICE_DAMAGED: &str = "Tern does not discard a damaged store: restore the data directory from a backup, or move \
     the store's files away to start with an empty store";

/// Why a store could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory operation failed.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was attempted.
        action: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The process may not read or write the store.
    #[error(
        "{}: permission denied: the store must be readable and writable by the user Tern runs as \
         (fix the owner or mode of the file and of its directory)",
        path.display()
    )]
    PermissionDenied {
        /// The file or directory.
        path: PathBuf,
    },
    /// The store is on a read-only file system or is a read-only file.
    #[error("{}: the store is read-only: Tern must be able to write it (check the mount and the file's mode)", path.display())]
    ReadOnly {
        /// The file.
        path: PathBuf,
    },
    /// The store is damaged.
    #[error("{}: the store is damaged: {detail}. {ADVICE_DAMAGED}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The file is not a Tern store.
    #[error(
        "{}: this is not a Tern store: {detail}. Point the data directory elsewhere, or move the file away \
         (restore it from a backup if it was a Tern store)",
        path.display()
    )]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// What it seems to be.
        detail: String,
    },
    /// The store was written in another format version.
    #[error(
        "{}: the store has format version {found}, and this Tern reads version {FORMAT_VERSION}: {}",
        path.display(),
        if *found > i64::from(FORMAT_VERSION) {
            "it was written by a newer Tern; run that version, or move the store away to start empty"
        } else {
            "it was written by an older Tern that this version cannot convert; run that version, or move the store away to start empty"
        }
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: i64,
    },
    /// Another process has the store open.
    #[error("{}: the store is in use by another process (is another Tern running on this data directory?)", path.display())]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// The engine failed to open the store.
    #[error("{}: cannot open the store: {detail}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The engine's message.
        detail: String,
    },
    /// A write, checkpoint or the final flush failed.
    #[error("{}: cannot write the store: {detail}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The store is closed.
    #[error("the store is closed")]
    Closed,
}

/// Counters of a store's writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Operations submitted and processed.
    pub operations: u64,
    /// Groups processed.
    pub batches: u64,
    /// Transactions committed (groups whose changes all cancelled out commit nothing).
    pub commits: u64,
    /// Commits that failed.
    pub failed_commits: u64,
    /// Rows written or deleted.
    pub rows_written: u64,
    /// Messages stored.
    pub messages: u64,
    /// Every operation up to this sequence number is settled.
    pub settled: Lsn,
}

/// An open store: implements [`Store`]; [`DiskStore::close`] (or dropping it) writes everything
/// and stops the writer.
pub struct DiskStore {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<Result<(), StoreError>>>>,
    dir: PathBuf,
    file: PathBuf,
}

impl fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskStore")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl DiskStore {
    /// The data directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The main database file.
    #[must_use]
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The writer's counters.
    #[must_use]
    pub fn stats(&self) -> StoreStats {
        self.shared.stats()
    }

    /// Records the latency of every successful commit (transaction and fsync) in `histogram`
    /// from now on (the broker's `Metrics::store_commit`). Only the first call counts.
    pub fn record_commit_latency(&self, histogram: Arc<tern_core::Histogram>) {
        let _ = self.shared.commit_latency.set(histogram);
    }

    /// Writes everything submitted so far, then moves the log into the main file and trims it.
    /// Blocks until done: call it from a blocking context (`spawn_blocking`).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.shared
            .request_checkpoint()
            .recv()
            .unwrap_or(Err(StoreError::Closed))
    }

    /// Writes everything submitted so far and stops the writer; later operations are reported
    /// failed. Blocks until done. Returns an error if something could not be written.
    pub fn close(&self) -> Result<(), StoreError> {
        self.shared.close();
        let handle = lock(&self.thread).take();
        match handle {
            Some(h) => h.join().unwrap_or_else(|_| {
                Err(StoreError::Write {
                    path: self.file.clone(),
                    detail: "the writer thread panicked".into(),
                })
            }),
            None => Ok(()),
        }
    }
}

#[cfg(feature = "fault-injection")]
impl DiskStore {
    /// Fault injection: the writer takes no new group until [`DiskStore::resume`] (a group being
    /// written is finished). Operations submitted meanwhile then form one group (up to
    /// `max_batch`), which lets tests decide what is committed together.
    pub fn pause(&self) {
        self.shared.pause(true);
    }

    /// Fault injection: releases the writer held by [`DiskStore::pause`].
    pub fn resume(&self) {
        self.shared.pause(false);
    }
}

impl Drop for DiskStore {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!("{e}");
        }
    }
}

impl Store for DiskStore {
    fn submit(&self, op: StoreOp) -> Lsn {
        self.shared.submit(op)
    }

    fn durability(&self, lsn: Lsn) -> Durability {
        self.shared.durability(lsn)
    }

    fn notify(&self, lsn: Lsn, waker: Arc<dyn Wake>) {
        self.shared.notify(lsn, waker);
    }

    fn begin_atomic(&self) -> Lsn {
        self.shared.begin_atomic()
    }

    fn end_atomic(&self, group: Lsn) {
        self.shared.end_atomic(group);
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        fs::File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| StoreError::Io {
                path: dir.to_owned(),
                action: "sync the directory",
                source: e,
            })?;
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied => StoreError::PermissionDenied {
            path: dir.to_owned(),
        },
        _ => StoreError::Io {
            path: dir.to_owned(),
            action: "create the data directory",
            source: e,
        },
    })
}

/// Opens the store in `dir` (creating both if absent: directory mode 0700, files 0600), checks
/// it, loads it, and starts its writer.
pub fn open(dir: &Path, options: StoreOptions) -> Result<(Arc<DiskStore>, Snapshot), StoreError> {
    create_dir(dir)?;
    let file = dir.join(sqlite::FILE_NAME);
    let mut loader = Loader::new(file.clone());
    let backend: Box<dyn Backend> =
        Box::new(sqlite::Sqlite::open(dir, options.durability, &mut loader)?);
    let (snapshot, index, carry) = loader.finish();
    let shared = Arc::new(Shared::new(options.max_batch));
    shared.stats.messages.store(
        index.message_count() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    let writer = Writer {
        shared: shared.clone(),
        backend,
        index,
        carry,
        config: WriterConfig {
            commit_window: options.commit_window,
            fail_commits: options.fail_commits,
        },
        commits: 0,
        path: file.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("tern-store".into())
        .spawn(move || {
            let shared = writer.shared.clone();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| writer.run()));
            // Whatever happened, nothing waits forever: what was not written is failed.
            shared.stop();
            result.unwrap_or_else(|_| {
                Err(StoreError::Write {
                    path: PathBuf::new(),
                    detail: "the store's writer thread panicked; what it had not written is reported failed".into(),
                })
            })
        })
        .map_err(|e| StoreError::Io {
            path: file.clone(),
            action: "start the writer thread",
            source: e,
        })?;
    Ok((
        Arc::new(DiskStore {
            shared,
            thread: Mutex::new(Some(thread)),
            dir: dir.to_owned(),
            file,
        }),
        snapshot,
    ))
}
