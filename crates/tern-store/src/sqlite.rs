//! The SQLite engine: one database file `tern.db` in WAL mode, held with an exclusive lock.
//!
//! Schema (format version [`crate::FORMAT_VERSION`], kept in `PRAGMA user_version`; the file is
//! marked as Tern's by `PRAGMA application_id`):
//!
//! ```sql
//! CREATE TABLE messages      (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
//! CREATE TABLE sessions      (client_id TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
//! CREATE TABLE subscriptions (client_id TEXT, filter TEXT, data BLOB NOT NULL,
//!                             PRIMARY KEY (client_id, filter)) WITHOUT ROWID;
//! CREATE TABLE deliveries    (client_id TEXT, seq INTEGER, data BLOB NOT NULL,
//!                             PRIMARY KEY (client_id, seq)) WITHOUT ROWID;
//! CREATE TABLE incoming_qos2 (client_id TEXT, packet_id INTEGER, data BLOB NOT NULL,
//!                             PRIMARY KEY (client_id, packet_id)) WITHOUT ROWID;
//! CREATE TABLE retained      (topic TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
//! ```
//!
//! `data` is a sealed value (see `codec`): a delivery's and a retained entry's body start with
//! the id of their message.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, params};

use crate::index::WriteSet;
use crate::load::Loader;
use crate::writer::Backend;
use crate::{DurabilityMode, FORMAT_VERSION, StoreError};

/// `PRAGMA application_id`: "TERN".
const APPLICATION_ID: i32 = 0x5445_524E;

/// The file name in the data directory.
pub(crate) const FILE_NAME: &str = "tern.db";

const SCHEMA: &str = "
CREATE TABLE messages (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE sessions (client_id TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE subscriptions (client_id TEXT, filter TEXT, data BLOB NOT NULL,
    PRIMARY KEY (client_id, filter)) WITHOUT ROWID;
CREATE TABLE deliveries (client_id TEXT, seq INTEGER, data BLOB NOT NULL,
    PRIMARY KEY (client_id, seq)) WITHOUT ROWID;
CREATE TABLE incoming_qos2 (client_id TEXT, packet_id INTEGER, data BLOB NOT NULL,
    PRIMARY KEY (client_id, packet_id)) WITHOUT ROWID;
CREATE TABLE retained (topic TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
";

pub(crate) struct Sqlite {
    conn: Connection,
}

fn io_err(path: &Path, action: &'static str, e: io::Error) -> StoreError {
    if e.kind() == io::ErrorKind::PermissionDenied {
        StoreError::PermissionDenied {
            path: path.to_owned(),
        }
    } else if e.raw_os_error() == Some(30) {
        // EROFS
        StoreError::ReadOnly {
            path: path.to_owned(),
        }
    } else {
        StoreError::Io {
            path: path.to_owned(),
            action,
            source: e,
        }
    }
}

/// Maps an SQLite error met while opening or reading.
fn open_err(path: &Path, e: rusqlite::Error) -> StoreError {
    let detail = e.to_string();
    let code = match &e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
        _ => None,
    };
    match code {
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_owned(),
            detail,
        },
        Some(ErrorCode::NotADatabase) => StoreError::NotAStore {
            path: path.to_owned(),
            detail: "it is not an SQLite database (its header is damaged, or it is another kind of file)".into(),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::InUse { path: path.to_owned() },
        Some(ErrorCode::PermissionDenied) => StoreError::PermissionDenied { path: path.to_owned() },
        Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { path: path.to_owned() },
        _ => StoreError::Open {
            path: path.to_owned(),
            detail,
        },
    }
}

/// Reads the 100-byte header and checks what SQLite would not explain well: empty, truncated,
/// foreign, unreadable.
fn precheck(path: &Path) -> Result<(), StoreError> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| io_err(path, "open", e))?;
    let len = f.metadata().map_err(|e| io_err(path, "read", e))?.len();
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.to_owned(),
        detail,
    };
    if len == 0 {
        return Err(corrupt("the file is empty (it was truncated)".into()));
    }
    let mut h = [0u8; 100];
    if len < 100 {
        return Err(corrupt(format!("the file is truncated ({len} bytes)")));
    }
    f.read_exact(&mut h).map_err(|e| io_err(path, "read", e))?;
    if &h[..16] != b"SQLite format 3\0" {
        return Err(StoreError::NotAStore {
            path: path.to_owned(),
            detail:
                "it does not start with the SQLite header (it is damaged, or another kind of file)"
                    .into(),
        });
    }
    let page_size = match u16::from_be_bytes([h[16], h[17]]) {
        1 => 65_536u64,
        n => u64::from(n),
    };
    let change = u32::from_be_bytes([h[24], h[25], h[26], h[27]]);
    let pages = u64::from(u32::from_be_bytes([h[28], h[29], h[30], h[31]]));
    let valid_for = u32::from_be_bytes([h[92], h[93], h[94], h[95]]);
    if page_size < 512 || !page_size.is_power_of_two() {
        return Err(corrupt(format!(
            "its header gives an impossible page size ({page_size})"
        )));
    }
    // With a non-empty log the file may legitimately be shorter than its header says (a crash
    // during a checkpoint writes page 1 first); SQLite's own checks cover that case.
    let wal = path.with_file_name(format!("{FILE_NAME}-wal"));
    let wal_len = match fs::metadata(&wal) {
        Ok(m) => {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&wal)
                .map_err(|e| io_err(&wal, "open", e))?;
            m.len()
        }
        Err(_) => 0,
    };
    if wal_len == 0
        && (len % page_size != 0 || (change == valid_for && pages > 0 && len < pages * page_size))
    {
        return Err(corrupt(format!(
            "the file is truncated: {len} bytes where its header says {} pages of {page_size} bytes",
            pages
        )));
    }
    Ok(())
}

fn create(dir: &Path, path: &Path) -> Result<(), StoreError> {
    let tmp = dir.join(format!("{FILE_NAME}.new"));
    for p in [tmp.clone(), dir.join(format!("{FILE_NAME}.new-journal"))] {
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&p, "remove", e)),
        }
    }
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    drop(o.open(&tmp).map_err(|e| io_err(&tmp, "create", e))?);
    {
        let conn = Connection::open_with_flags(
            &tmp,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_err(&tmp, e))?;
        let init = format!(
            "PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL; BEGIN; {SCHEMA} \
             PRAGMA application_id={APPLICATION_ID}; PRAGMA user_version={FORMAT_VERSION}; COMMIT;"
        );
        conn.execute_batch(&init).map_err(|e| open_err(&tmp, e))?;
        conn.close().map_err(|(_, e)| open_err(&tmp, e))?;
    }
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err(&tmp, "sync", e))?;
    fs::rename(&tmp, path).map_err(|e| io_err(path, "create", e))?;
    crate::sync_dir(dir)?;
    Ok(())
}

impl Sqlite {
    pub(crate) fn open(
        dir: &Path,
        durability: DurabilityMode,
        loader: &mut Loader,
    ) -> Result<Self, StoreError> {
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            create(dir, &path)?;
        }
        precheck(&path)?;
        let e = |err| open_err(&path, err);
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_EXRESCODE,
        )
        .map_err(e)?;
        conn.set_prepared_statement_cache_capacity(32);
        // A broker that is still stopping may hold the lock for a moment.
        conn.busy_timeout(Duration::from_secs(1)).map_err(e)?;
        // Exclusive locking: one broker per store, and no shared-memory index file.
        conn.execute_batch("PRAGMA locking_mode=EXCLUSIVE;")
            .map_err(e)?;
        let app: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(e)?;
        if app != APPLICATION_ID {
            return Err(StoreError::NotAStore {
                path: path.clone(),
                detail: format!(
                    "it is an SQLite database but not a Tern store (application id {app:#x})"
                ),
            });
        }
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(e)?;
        if version != i64::from(FORMAT_VERSION) {
            return Err(StoreError::Version {
                path: path.clone(),
                found: version,
            });
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(e)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open {
                path: path.clone(),
                detail: format!("SQLite refused WAL mode (journal mode {mode})"),
            });
        }
        // Takes the exclusive lock now, so that a second broker on the same store fails here.
        conn.execute_batch("BEGIN IMMEDIATE; COMMIT;").map_err(e)?;
        let check: Vec<String> = {
            let mut st = conn.prepare("PRAGMA quick_check(5)").map_err(e)?;
            st.query_map([], |r| r.get(0))
                .map_err(e)?
                .collect::<Result<_, _>>()
                .map_err(e)?
        };
        if check.len() != 1 || check[0] != "ok" {
            return Err(StoreError::Corrupt {
                path: path.clone(),
                detail: format!(
                    "the integrity check failed: {}",
                    check
                        .join("; ")
                        .replace("*** in database main ***", "")
                        .trim()
                        .replace('\n', "; ")
                ),
            });
        }
        let sync = match durability {
            DurabilityMode::Fsync => "FULL",
            DurabilityMode::Flush => "NORMAL",
        };
        // A 32 MiB page cache; a checkpoint every 64 MiB of log (measured: about 15% more
        // throughput than SQLite's 4 MiB default when messages are large; the log is replayed at
        // startup after a crash, which takes well under a second for 64 MiB).
        conn.execute_batch(&format!(
            "PRAGMA synchronous={sync}; PRAGMA cache_size=-32768; PRAGMA wal_autocheckpoint=16384;"
        ))
        .map_err(e)?;
        let me = Self { conn };
        me.load(loader).map_err(|err| match err {
            LoadErr::Sql(x) => open_err(&path, x),
            LoadErr::Store(s) => s,
        })?;
        Ok(me)
    }

    fn load(&self, l: &mut Loader) -> Result<(), LoadErr> {
        let c = &self.conn;
        let mut st = c.prepare("SELECT id, data FROM messages ORDER BY id")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            l.message(r.get::<_, i64>(0)? as u64, r.get_ref(1)?.as_blob()?)?;
        }
        let mut st = c.prepare("SELECT client_id, data FROM sessions ORDER BY client_id")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            l.session(r.get_ref(0)?.as_bytes()?, r.get_ref(1)?.as_blob()?)?;
        }
        let mut st = c.prepare(
            "SELECT client_id, filter, data FROM subscriptions ORDER BY client_id, filter",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            l.subscription(
                r.get_ref(0)?.as_bytes()?,
                r.get_ref(1)?.as_bytes()?,
                r.get_ref(2)?.as_blob()?,
            )?;
        }
        let mut st =
            c.prepare("SELECT client_id, seq, data FROM deliveries ORDER BY client_id, seq")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            l.delivery(
                r.get_ref(0)?.as_bytes()?,
                r.get::<_, i64>(1)? as u64,
                r.get_ref(2)?.as_blob()?,
            )?;
        }
        let mut st = c.prepare(
            "SELECT client_id, packet_id, data FROM incoming_qos2 ORDER BY client_id, packet_id",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            l.incoming(
                r.get_ref(0)?.as_bytes()?,
                r.get::<_, u16>(1)?,
                r.get_ref(2)?.as_blob()?,
            )?;
        }
        let mut st = c.prepare("SELECT topic, data FROM retained")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            l.retained(r.get_ref(0)?.as_bytes()?, r.get_ref(1)?.as_blob()?)?;
        }
        Ok(())
    }

    fn write(&mut self, ws: &WriteSet) -> rusqlite::Result<()> {
        let c = &self.conn;
        for client in &ws.cleared {
            let id: &str = client;
            for sql in [
                "DELETE FROM sessions WHERE client_id = ?1",
                "DELETE FROM subscriptions WHERE client_id = ?1",
                "DELETE FROM deliveries WHERE client_id = ?1",
                "DELETE FROM incoming_qos2 WHERE client_id = ?1",
            ] {
                c.prepare_cached(sql)?.execute([id])?;
            }
        }
        if !ws.messages_put.is_empty() {
            let mut st =
                c.prepare_cached("INSERT OR REPLACE INTO messages (id, data) VALUES (?1, ?2)")?;
            for (id, data) in &ws.messages_put {
                st.execute(params![*id as i64, data])?;
            }
        }
        if !ws.sessions_put.is_empty() {
            let mut st = c.prepare_cached(
                "INSERT OR REPLACE INTO sessions (client_id, data) VALUES (?1, ?2)",
            )?;
            for (client, data) in &ws.sessions_put {
                st.execute(params![&**client, data])?;
            }
        }
        if !ws.subs_put.is_empty() {
            let mut st =
                c.prepare_cached("INSERT OR REPLACE INTO subscriptions (client_id, filter, data) VALUES (?1, ?2, ?3)")?;
            for (client, filter, data) in &ws.subs_put {
                st.execute(params![&**client, &**filter, data])?;
            }
        }
        if !ws.subs_del.is_empty() {
            let mut st =
                c.prepare_cached("DELETE FROM subscriptions WHERE client_id = ?1 AND filter = ?2")?;
            for (client, filter) in &ws.subs_del {
                st.execute(params![&**client, &**filter])?;
            }
        }
        if !ws.deliveries_put.is_empty() {
            let mut st = c.prepare_cached(
                "INSERT OR REPLACE INTO deliveries (client_id, seq, data) VALUES (?1, ?2, ?3)",
            )?;
            for (client, seq, data) in &ws.deliveries_put {
                st.execute(params![&**client, *seq as i64, data])?;
            }
        }
        if !ws.deliveries_del.is_empty() {
            let mut st =
                c.prepare_cached("DELETE FROM deliveries WHERE client_id = ?1 AND seq = ?2")?;
            for (client, seq) in &ws.deliveries_del {
                st.execute(params![&**client, *seq as i64])?;
            }
        }
        if !ws.incoming_put.is_empty() {
            let mut st = c.prepare_cached(
                "INSERT OR REPLACE INTO incoming_qos2 (client_id, packet_id, data) VALUES (?1, ?2, ?3)",
            )?;
            for (client, pid, data) in &ws.incoming_put {
                st.execute(params![&**client, *pid, data])?;
            }
        }
        if !ws.incoming_del.is_empty() {
            let mut st = c.prepare_cached(
                "DELETE FROM incoming_qos2 WHERE client_id = ?1 AND packet_id = ?2",
            )?;
            for (client, pid) in &ws.incoming_del {
                st.execute(params![&**client, *pid])?;
            }
        }
        if !ws.retained_put.is_empty() {
            let mut st =
                c.prepare_cached("INSERT OR REPLACE INTO retained (topic, data) VALUES (?1, ?2)")?;
            for (topic, data) in &ws.retained_put {
                st.execute(params![&**topic, data])?;
            }
        }
        if !ws.retained_del.is_empty() {
            let mut st = c.prepare_cached("DELETE FROM retained WHERE topic = ?1")?;
            for topic in &ws.retained_del {
                st.execute([&**topic])?;
            }
        }
        if !ws.messages_del.is_empty() {
            let mut st = c.prepare_cached("DELETE FROM messages WHERE id = ?1")?;
            for id in &ws.messages_del {
                st.execute([*id as i64])?;
            }
        }
        Ok(())
    }

    fn rollback(&self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

enum LoadErr {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for LoadErr {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

impl From<rusqlite::types::FromSqlError> for LoadErr {
    fn from(e: rusqlite::types::FromSqlError) -> Self {
        Self::Sql(e.into())
    }
}

impl From<StoreError> for LoadErr {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl Backend for Sqlite {
    fn apply(&mut self, ws: &WriteSet, fail: bool) -> Result<(), String> {
        if let Err(e) = self.conn.execute_batch("BEGIN") {
            return Err(e.to_string());
        }
        if let Err(e) = self.write(ws) {
            self.rollback();
            return Err(e.to_string());
        }
        if fail {
            self.rollback();
            return Err("injected commit failure (fault injection)".into());
        }
        match self.conn.execute_batch("COMMIT") {
            Ok(()) => Ok(()),
            Err(e) => {
                self.rollback();
                Err(e.to_string())
            }
        }
    }

    fn checkpoint(&mut self) -> Result<(), String> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| e.to_string())
            .and_then(|busy| {
                if busy == 0 {
                    Ok(())
                } else {
                    Err("the checkpoint could not complete".into())
                }
            })
    }

    fn close(&mut self) -> Result<(), String> {
        self.checkpoint()
    }
}
