//! The embedded SQLite backend of the storage traits (WAL mode, versioned migrations).
//! Architecture invariant: with the other backends, the only crates that know SQL.
//!
//! One writing connection behind a mutex, used synchronously: every call is a few tens
//! of microseconds, and a step costs one commit, so a hand-off to a database thread per
//! query would cost more than the query (see ARCHITECTURE.md). A server also reads
//! through a pool of read-only connections ([`SqliteStore::read_pool`]): in WAL mode they
//! read beside the writer, so listing executions does not hold up the workers.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, params};

use opsbook_store::{Error, Result, now_ms};

mod quality;
mod registry;
mod rows;
mod server;
mod store;

/// `?` on a SQLite call: its error becomes the backend-neutral storage error.
pub(crate) trait Db<T> {
    fn db(self) -> Result<T>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T> {
        self.map_err(classify)
    }
}

const LOCKED: &str = "the database is locked by another process; try again shortly";

/// How long a call waits for a database another process holds before it gives up.
const BUSY_WAIT: Duration = Duration::from_secs(10);

/// Calls waiting out a database another process holds, in this process.
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// SQLite's busy handler: sleeps in short slices until [`BUSY_WAIT`] has passed since the
/// statement first met the lock. Calls are synchronous (see the module's comment), so
/// on a multi-threaded runtime the sleeping thread first hands its other tasks to
/// another thread: a database locked for seconds must not stall the server's requests,
/// connections and timers (hyper closed connections whose headers had waited out its
/// read deadline on stalled threads).
fn wait_for_other_process(tries: i32) -> bool {
    thread_local! {
        static SINCE: Cell<Option<std::time::Instant>> = const { Cell::new(None) };
    }
    let since = match SINCE.get() {
        Some(since) if tries > 0 => since,
        _ => {
            let now = std::time::Instant::now();
            SINCE.set(Some(now));
            now
        }
    };
    let waited = since.elapsed();
    if waited >= BUSY_WAIT {
        return false;
    }
    let slice = Duration::from_millis(1 << tries.clamp(0, 5) as u32).min(BUSY_WAIT - waited);
    WAITING.fetch_add(1, Ordering::Relaxed);
    off_the_runtime(|| std::thread::sleep(slice));
    WAITING.fetch_sub(1, Ordering::Relaxed);
    true
}

/// Runs `f`, which blocks, after handing this thread's runtime tasks to another thread
/// when it is a worker of a multi-threaded runtime (elsewhere that is not allowed, or
/// there is nothing to hand over).
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

thread_local! {
    /// Set when a call on this thread met a database another process held past the busy
    /// wait; the writer guard held around it tells its store (see [`SqliteStore::conn`]).
    static GAVE_UP: Cell<bool> = const { Cell::new(false) };
}

/// A driver error as the storage error: a database held by another process past the
/// busy wait, or one that cannot be read or written, is unavailable (try again); the
/// rest is a database error.
fn classify(e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode as C;
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            C::DatabaseBusy | C::DatabaseLocked => {
                GAVE_UP.set(true);
                Error::Unavailable(LOCKED.into())
            }
            C::CannotOpen | C::SystemIoFailure | C::DiskFull | C::ReadOnly => {
                Error::Unavailable(format!("the database cannot be used: {e}"))
            }
            _ => Error::Database(Box::new(e)),
        },
        _ => Error::Database(Box::new(e)),
    }
}

#[cfg(test)]
mod errors {
    #[test]
    fn busy_and_broken_databases_are_unavailable() {
        use rusqlite::ffi;
        let failure = |code| rusqlite::Error::SqliteFailure(ffi::Error::new(code), None);
        for code in [ffi::SQLITE_BUSY, ffi::SQLITE_LOCKED, ffi::SQLITE_IOERR, ffi::SQLITE_FULL] {
            assert!(matches!(super::classify(failure(code)), opsbook_store::Error::Unavailable(_)), "{code}");
        }
        assert!(matches!(super::classify(failure(ffi::SQLITE_CONSTRAINT)), opsbook_store::Error::Database(_)));
    }
}

/// Migrations, applied in order and recorded in `opsbook_migrations`. Append only.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_server.sql")),
    (3, include_str!("../migrations/sqlite/0003_notifications.sql")),
    (4, include_str!("../migrations/sqlite/0004_schedules.sql")),
    (5, include_str!("../migrations/sqlite/0005_execution_cursor.sql")),
    (6, include_str!("../migrations/sqlite/0006_step_process.sql")),
    (7, include_str!("../migrations/sqlite/0007_wait_kind.sql")),
    (8, include_str!("../migrations/sqlite/0008_step_override.sql")),
    (9, include_str!("../migrations/sqlite/0009_bundles.sql")),
    (10, include_str!("../migrations/sqlite/0010_web_sessions.sql")),
    (11, include_str!("../migrations/sqlite/0011_runbook_status_index.sql")),
    (12, include_str!("../migrations/sqlite/0012_execution_secrets.sql")),
    (13, include_str!("../migrations/sqlite/0013_quality.sql")),
    (14, include_str!("../migrations/sqlite/0014_claim_index.sql")),
    (15, include_str!("../migrations/sqlite/0015_claim_index_queued_only.sql")),
    (16, include_str!("../migrations/sqlite/0016_step_targets.sql")),
    (17, include_str!("../migrations/sqlite/0017_child_executions.sql")),
    (18, include_str!("../migrations/sqlite/0018_schedule_roles.sql")),
];

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    readers: Arc<Readers>,
    /// How many times a write gave up on a database another process held.
    gave_up: Arc<AtomicU64>,
}

/// The writing connection, held: tells the store when a call made with it gave up on a
/// database another process held.
pub(crate) struct Writer<'a> {
    conn: MutexGuard<'a, Connection>,
    gave_up: &'a AtomicU64,
}

impl std::ops::Deref for Writer<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Writer<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        // Before the lock is released: whoever waited for it sees this.
        if GAVE_UP.take() {
            self.gave_up.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Read-only connections to the same file, opened when needed and kept for reuse.
struct Readers {
    /// The database file; `None` in memory, where reads use the writer.
    path: Option<PathBuf>,
    /// How many idle connections to keep; 0 (the default): reads use the writer.
    keep: AtomicUsize,
    /// Whether a failure to open a read connection was logged (once is enough).
    warned: AtomicBool,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn new(path: Option<PathBuf>) -> Arc<Readers> {
        Arc::new(Readers { path, keep: 0.into(), warned: AtomicBool::new(false), idle: Mutex::new(Vec::new()) })
    }

    fn open(path: &Path) -> Result<Connection> {
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).db()?;
        conn.busy_handler(Some(wait_for_other_process)).db()?;
        Ok(conn)
    }
}

/// A connection to read with: one of the pool's, given back when dropped, or the writer.
pub(crate) enum Reader<'a> {
    Pooled(Option<Connection>, &'a Readers),
    Writer(Writer<'a>),
}

impl std::ops::Deref for Reader<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self {
            Reader::Pooled(c, _) => c.as_ref().expect("a pooled connection is held until dropped"),
            Reader::Writer(c) => c,
        }
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Reader::Pooled(conn, readers) = self
            && let Some(conn) = conn.take()
        {
            let mut idle = readers.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < readers.keep.load(Ordering::Relaxed) {
                idle.push(conn);
            }
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

/// Creates the database file where it does not exist yet, readable by its owner only (0600,
/// in a directory of its own made 0700): it holds every execution's parameters, output
/// and audit trail. SQLite gives its `-wal` and `-shm` files the database file's mode.
/// An existing file or directory keeps the mode it has.
fn create_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if path.as_os_str() == ":memory:" || path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        if let Some(above) = dir.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(above)
                .map_err(|e| Error::Open(format!("cannot create directory {}: {e}", above.display())))?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Open(format!("cannot create directory {}: {e}", dir.display())));
            }
            _ => {}
        }
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(Error::Open(format!("cannot create {}: {e}", path.display())))
        }
        _ => Ok(()),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        create_private(path)?;
        let conn = Connection::open(path).db()?;
        conn.busy_handler(Some(wait_for_other_process)).db()?;
        // WAL + NORMAL: a commit survives a crash of the process (kill -9); only an OS
        // crash or power loss can lose the last commits.
        let journal: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).db()?;
        conn.pragma_update(None, "synchronous", "NORMAL").db()?;
        conn.pragma_update(None, "foreign_keys", "ON").db()?;
        // Every CLI command opens and closes the database; a checkpoint on each close
        // would cost more than the command. SQLite's automatic checkpoints (every 1000
        // pages) keep the WAL bounded instead.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true).db()?;
        // Every statement the engine and the server use stays prepared: rusqlite keeps 16
        // by default, and SQLite's SQL parser still showed in a local run's profile.
        conn.set_prepared_statement_cache_capacity(128);
        // Other connections read beside the writer only in a WAL file (not in memory,
        // `:memory:`, nor where WAL mode could not be set).
        let shared = journal.eq_ignore_ascii_case("wal") && conn.path().is_some_and(|p| !p.is_empty());
        let readers = Readers::new(shared.then(|| path.to_path_buf()));
        let store = SqliteStore { conn: Arc::new(Mutex::new(conn)), readers, gave_up: Arc::default() };
        store.migrate()?;
        Ok(store)
    }

    /// Lets reads go through up to `keep` idle read-only connections (more are opened
    /// while more threads read at once) instead of waiting for the writer: for a server,
    /// whose clients read while its workers write. A CLI command, which reads and
    /// writes in turn, is better off with the one connection it has (the default).
    pub fn read_pool(&self, keep: usize) {
        self.readers.keep.store(keep, Ordering::Relaxed);
        let mut idle = self.readers.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.truncate(keep);
    }

    /// A database in memory, gone when the store is dropped: for runbook tests, which
    /// keep nothing.
    pub fn in_memory() -> Result<SqliteStore> {
        let conn = Connection::open_in_memory().db()?;
        conn.pragma_update(None, "foreign_keys", "ON").db()?;
        let store =
            SqliteStore { conn: Arc::new(Mutex::new(conn)), readers: Readers::new(None), gave_up: Arc::default() };
        store.migrate()?;
        Ok(store)
    }

    /// A connection for a read-only query: from the read pool when there is one (a read
    /// that cannot open a connection of its own falls back to the writer), else the writer.
    /// In WAL mode every read sees every commit made before it began, on any connection.
    pub(crate) fn reader(&self) -> Result<Reader<'_>> {
        let readers = &*self.readers;
        let Some(path) = readers.path.as_deref().filter(|_| readers.keep.load(Ordering::Relaxed) > 0) else {
            return Ok(Reader::Writer(self.conn()?));
        };
        let pooled = readers.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match pooled.map(Ok).unwrap_or_else(|| Readers::open(path)) {
            Ok(conn) => Ok(Reader::Pooled(Some(conn), readers)),
            Err(e) => {
                if !readers.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%e, "cannot open a read connection; reading through the writer");
                }
                Ok(Reader::Writer(self.conn()?))
            }
        }
    }

    /// The writing connection. A caller that waited for it while the call holding it gave
    /// up on a database another process held gives up too, at once: without this, every
    /// writer in the process waited out SQLite's busy timeout (10 s) in turn, so a request
    /// behind a worker's claim took 20 s or more to be told the database is locked.
    pub(crate) fn conn(&self) -> Result<Writer<'_>> {
        let seen = self.gave_up.load(Ordering::Relaxed);
        // A panic while holding the lock cannot leave a half-done transaction behind
        // (rusqlite rolls back on drop), so a poisoned lock is still usable.
        let lock = || self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = match self.conn.try_lock() {
            Ok(conn) => conn,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            // Held by a call waiting out another process's lock: wait off the runtime.
            Err(std::sync::TryLockError::WouldBlock) if WAITING.load(Ordering::Relaxed) > 0 => off_the_runtime(lock),
            Err(std::sync::TryLockError::WouldBlock) => lock(),
        };
        GAVE_UP.set(false);
        if self.gave_up.load(Ordering::Relaxed) != seen {
            return Err(Error::Unavailable(LOCKED.into()));
        }
        Ok(Writer { conn, gave_up: &self.gave_up })
    }

    /// The schema version of the database and the newest this build knows.
    pub fn schema_version(&self) -> Result<(i64, i64)> {
        let current: i64 = self
            .conn()?
            .query_row("SELECT COALESCE(MAX(version), 0) FROM opsbook_migrations", [], |r| r.get(0))
            .db()?;
        Ok((current, MIGRATIONS.last().map_or(0, |(v, _)| *v)))
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.conn()?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS opsbook_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .db()?;
        // Common case first: the schema is current, and checking needs no write lock.
        let current: i64 =
            conn.query_row("SELECT COALESCE(MAX(version), 0) FROM opsbook_migrations", [], |r| r.get(0)).db()?;
        if MIGRATIONS.last().is_some_and(|(newest, _)| current == *newest) {
            return Ok(());
        }
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).db()?;
        let current: i64 =
            tx.query_row("SELECT COALESCE(MAX(version), 0) FROM opsbook_migrations", [], |r| r.get(0)).db()?;
        if let Some((newest, _)) = MIGRATIONS.last()
            && current > *newest
        {
            return Err(Error::Corrupt(format!(
                "the database schema is version {current}, newer than this opsbook understands ({newest}); upgrade opsbook"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.execute_batch(sql).db()?;
            tx.execute(
                "INSERT INTO opsbook_migrations (version, applied_at) VALUES (?, ?)",
                params![version, now_ms()],
            )
            .db()?;
        }
        tx.commit().db()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Mutex;

    use opsbook_store::conformance::{Tamper, run_all};

    use crate::{LOCKED, SqliteStore};

    /// Edits the SQLite file directly, beside the store's own connection.
    struct SqliteTamper(PathBuf);

    impl SqliteTamper {
        fn exec(&self, sql: &str, seq: i64) {
            rusqlite::Connection::open(&self.0).unwrap().execute(sql, [seq]).unwrap();
        }
    }

    impl Tamper for SqliteTamper {
        fn edit(&self, seq: i64) {
            self.exec(
                "UPDATE audit_log SET actor = CASE actor WHEN 'mallory' THEN 'ann' ELSE 'mallory' END WHERE seq = ?",
                seq,
            );
        }

        fn delete(&self, seq: i64) {
            self.exec("DELETE FROM audit_log WHERE seq = ?", seq);
        }

        fn insert(&self) {
            self.exec(
                "INSERT INTO audit_log (seq, at, actor, action, target, request_id, details, prev_hash, hash) \
                 SELECT seq + 1, at, 'mallory', 'forged', '', '', '{}', hash, ? FROM audit_log ORDER BY seq DESC LIMIT 1",
                0,
            );
        }
    }

    /// SQLite passes the suite every backend must pass: as the CLI uses it (one
    /// connection) and as a server does (reads through a pool of read-only connections).
    #[test]
    fn sqlite_passes_the_conformance_suite() {
        conformance(0);
        conformance(2);
    }

    fn conformance(read_pool: usize) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let made = Mutex::new(Vec::<PathBuf>::new());
        rt.block_on(run_all(
            || {
                let mut made = made.lock().unwrap();
                let path = dir.path().join(format!("{}.db", made.len()));
                made.push(path.clone());
                async move {
                    let store = SqliteStore::open(&path).await.unwrap();
                    store.read_pool(read_pool);
                    store
                }
            },
            |_| SqliteTamper(made.lock().unwrap().last().cloned().unwrap()),
        ));
    }

    fn version_abc() -> opsbook_store::RunbookVersion {
        opsbook_store::RunbookVersion {
            sha256: "abc".into(),
            name: "book".into(),
            version: "1.0.0".into(),
            content: "x".into(),
            created_at: 1,
        }
    }

    /// A database that is not a WAL file (here `:memory:`, as `--db :memory:` opens) has
    /// no read pool: other connections would see another, empty database.
    #[test]
    fn a_database_in_memory_reads_through_its_writer() {
        use opsbook_store::Store;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let store = rt.block_on(SqliteStore::open(std::path::Path::new(":memory:"))).unwrap();
        store.read_pool(2);
        let rb = version_abc();
        rt.block_on(store.save_runbook(&rb)).unwrap();
        assert_eq!(rt.block_on(store.runbook("abc")).unwrap().name, "book");
        assert!(store.readers.path.is_none());
    }

    /// While another process holds the database, a write gives up after the busy wait;
    /// a write that waited behind it gives up at once, not after a busy wait of its own.
    #[test]
    fn writes_queued_behind_a_locked_out_write_give_up_with_it() {
        use opsbook_store::Store;
        use std::time::{Duration, Instant};
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let store = rt.block_on(SqliteStore::open(&path)).unwrap();
        store.conn().unwrap().busy_timeout(Duration::from_secs(5)).unwrap();
        let holder = rusqlite::Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let write = |store: SqliteStore| {
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                let started = Instant::now();
                let result = rt.block_on(store.save_runbook(&version_abc()));
                (result, started.elapsed())
            })
        };
        let first = write(store.clone());
        std::thread::sleep(Duration::from_secs(1));
        let second = write(store.clone());
        let (first, first_took) = first.join().unwrap();
        let (second, second_took) = second.join().unwrap();
        assert!(matches!(first, Err(opsbook_store::Error::Unavailable(_))), "{first:?}");
        assert!(first_took >= Duration::from_secs(5), "the first write waited out the busy timeout");
        match second {
            Err(opsbook_store::Error::Unavailable(m)) => assert_eq!(m, LOCKED),
            other => panic!("{other:?}"),
        }
        assert!(second_took < Duration::from_secs(7), "the second write gave up with the first: {second_took:?}");
        // Once the lock is gone, writes go through again.
        holder.execute_batch("ROLLBACK").unwrap();
        rt.block_on(store.save_runbook(&version_abc())).unwrap();
    }

    /// With a read pool, a read does not wait for the writer: it answers while another
    /// thread holds the writing connection, and sees what was committed before it.
    #[test]
    fn reads_go_beside_a_busy_writer() {
        use opsbook_store::Store;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = rt.block_on(SqliteStore::open(&dir.path().join("r.db"))).unwrap();
        store.read_pool(2);
        let rb = version_abc();
        rt.block_on(store.save_runbook(&rb)).unwrap();
        let writer = store.conn().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reading = store.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let _ = tx.send(rt.block_on(reading.runbook("abc")).map(|r| r.name));
        });
        let read = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("the read waited for the writer");
        assert_eq!(read.unwrap(), "book");
        drop(writer);
        // The pool keeps the connection it opened for the next read.
        assert_eq!(store.readers.idle.lock().unwrap().len(), 1);
    }
}
