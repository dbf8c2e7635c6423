//! The PostgreSQL backend of the storage traits: any number of API nodes and worker
//! processes on one database.
//! Architecture invariant: with the other backends, the only crates that know SQL.
//!
//! The rules are the SQLite backend's, kept by PostgreSQL's own means: claims take the
//! oldest queued row with `FOR UPDATE SKIP LOCKED`; a fenced write holds a share lock
//! on its execution's row while it checks the owner, so no claim can pass in between;
//! serialised writes (the audit chain, a publish) take a transaction advisory lock;
//! migrations run in one transaction under a session-wide advisory lock, so nodes
//! starting together apply them once. `NOTIFY opsbook_queue` wakes idle workers in any
//! process when an execution is queued.

#![forbid(unsafe_code)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor};

use opsbook_store::{Error, Result, now_ms};

pub use copy::{Copied, copy_from_sqlite};

mod audit;
mod copy;
mod quality;
mod registry;
mod rows;
mod server;
mod store;

/// The channel `NOTIFY` announces queued executions on.
pub(crate) const QUEUE_CHANNEL: &str = "opsbook_queue";

/// How long a node waits for PostgreSQL to answer its first connection.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// A pooled connection idle this long is pinged before it is handed out.
const IDLE_PING: Duration = Duration::from_secs(1);

/// The session advisory lock migrations run under ("opsbook" in ASCII).
const MIGRATION_LOCK: i64 = 0x006f_7073_626f_6f6b;

/// Migrations, applied in order and recorded in `opsbook_migrations`. Append only.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_audit_append.sql")),
    (3, include_str!("../migrations/postgres/0003_queue_index.sql")),
    (4, include_str!("../migrations/postgres/0004_quality.sql")),
    (5, include_str!("../migrations/postgres/0005_step_targets.sql")),
    (6, include_str!("../migrations/postgres/0006_child_executions.sql")),
    (7, include_str!("../migrations/postgres/0007_schedule_roles.sql")),
];

/// `?` on a driver call: its error becomes the backend-neutral storage error.
pub(crate) trait Db<T> {
    fn db(self) -> Result<T>;
}

impl<T> Db<T> for std::result::Result<T, sqlx::Error> {
    fn db(self) -> Result<T> {
        self.map_err(classify)
    }
}

/// A driver error as the storage error: a server that cannot be reached, is starting or
/// shutting down, is out of connections, or broke the connection is unavailable (try
/// again); so are a serialisation failure and a deadlock (the transaction was rolled
/// back whole). The rest is a database error.
pub(crate) fn classify(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
            Error::Unavailable(format!("PostgreSQL cannot be reached: {e}"))
        }
        sqlx::Error::Protocol(_) => Error::Unavailable(format!("the connection to PostgreSQL broke: {e}")),
        // Raised by `opsbook_fail` (migration 2): a part of a one-statement write was missing.
        sqlx::Error::Database(d) if d.code().as_deref() == Some("P0002") => Error::NotFound(d.message().to_string()),
        sqlx::Error::Database(d) if d.code().as_deref() == Some("55P03") => {
            Error::Unavailable("the database is locked by another session; try again shortly".into())
        }
        sqlx::Error::Database(d) => match d.code().as_deref().map(|c| c.split_at(2)) {
            // 08: connection exception; 53: insufficient resources; 57P: operator
            // intervention (shutdown, restart, cannot connect now); 40: rollback.
            Some(("08" | "53", _)) | Some(("57", "P01" | "P02" | "P03")) | Some(("40", "001" | "P01")) => {
                Error::Unavailable(format!("PostgreSQL: {}", d.message()))
            }
            _ => Error::Database(Box::new(e)),
        },
        _ => Error::Database(Box::new(e)),
    }
}

/// Whether a driver error is a unique-key violation (another writer got there first).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

/// How a node connects.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// Connections this process may hold at once.
    pub max_connections: u32,
    /// How long a query waits for a free connection (or for the server to answer a
    /// connect) before the call fails as unavailable.
    pub acquire_timeout: Duration,
    /// How long a statement waits for a row or table another session locked before it
    /// fails as unavailable (SQLite's busy wait).
    pub lock_timeout: Duration,
}

impl Default for PgConfig {
    fn default() -> PgConfig {
        PgConfig { max_connections: 16, acquire_timeout: Duration::from_secs(5), lock_timeout: Duration::from_secs(10) }
    }
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Whether [`PgStore::on_queued`] listens already.
    listening: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgStore")
    }
}

impl PgStore {
    /// Connects to the database a `postgres://` URL names and brings its schema up to date.
    pub async fn open(url: &str) -> Result<PgStore> {
        PgStore::open_with(url, &PgConfig::default()).await
    }

    pub async fn open_with(url: &str, config: &PgConfig) -> Result<PgStore> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| Error::Open(format!("{}: {e}", redact(url))))?
            .application_name("opsbook")
            // Notices ("already exists, skipping") are not news for the log.
            .options([
                ("client_min_messages", "warning".to_string()),
                ("lock_timeout", format!("{}ms", config.lock_timeout.as_millis())),
            ]);
        // One connection first, so that what is wrong (refused, no such database, a
        // password refused) is said rather than a pool's time-out.
        // Bounded: a server that takes the connection and never answers must not hang a
        // node's start (or `admin migrate`) without a word.
        let first = match tokio::time::timeout(CONNECT_WAIT, sqlx::PgConnection::connect_with(&options)).await {
            Ok(connected) => connected.map_err(|e| {
                // PostgreSQL's own message, not the place in its sources it came from.
                let why = e.as_database_error().map_or_else(|| e.to_string(), |d| d.message().to_string());
                Error::Open(format!("PostgreSQL at {}: {why}", redact(url)))
            })?,
            Err(_) => {
                return Err(Error::Open(format!(
                    "PostgreSQL at {}: no answer within {}s (is it a PostgreSQL server, and is it up?)",
                    redact(url),
                    CONNECT_WAIT.as_secs()
                )));
            }
        };
        let _ = first.close().await;
        // sqlx pings every connection it hands out (a round trip of its own, as many as
        // the queries themselves); one used within the last second is alive, and should it
        // have died since, the query fails as unavailable like any other lost connection.
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(2))
            .acquire_timeout(config.acquire_timeout)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_PING {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        let store = PgStore { pool, listening: Arc::default() };
        store.migrate().await?;
        Ok(store)
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema version of the database and the newest this build knows.
    pub async fn schema_version(&self) -> Result<(i64, i64)> {
        let current: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM opsbook_migrations")
            .fetch_one(&self.pool)
            .await
            .db()?;
        Ok((current, newest()))
    }

    /// Applies the migrations this database lacks, once, however many nodes start at the
    /// same time: the first takes the advisory lock and migrates in one transaction; the
    /// others wait for it, then find nothing to do.
    async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await.db()?;
        sqlx::query("SELECT pg_advisory_lock($1)").bind(MIGRATION_LOCK).execute(&mut *conn).await.db()?;
        let applied = async {
            let mut tx = conn.begin().await.db()?;
            tx.execute(
                "CREATE TABLE IF NOT EXISTS opsbook_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .await
            .db()?;
            let current: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM opsbook_migrations")
                .fetch_one(&mut *tx)
                .await
                .db()?;
            if current > newest() {
                return Err(Error::Corrupt(format!(
                    "the database schema is version {current}, newer than this opsbook understands ({}); upgrade opsbook",
                    newest()
                )));
            }
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
                tx.execute(*sql).await.db()?;
                sqlx::query("INSERT INTO opsbook_migrations (version, applied_at) VALUES ($1, $2)")
                    .bind(version)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await
                    .db()?;
            }
            tx.commit().await.db()
        }
        .await;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATION_LOCK).execute(&mut *conn).await;
        applied?;
        unlocked.db()?;
        Ok(())
    }

    /// Calls `wake` for every execution queued from now on, by this process or any other
    /// on the database (`LISTEN opsbook_queue`), so an idle worker claims it at once
    /// rather than at its next poll. The listener reconnects after a lost connection;
    /// what was queued meanwhile is found by the workers' slow poll. Once per store.
    pub fn on_queued(&self, wake: Arc<dyn Fn() + Send + Sync>) {
        if self.listening.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                let mut listener = match PgListener::connect_with(&pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(%e, "cannot listen for queued executions; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen(QUEUE_CHANNEL).await {
                    tracing::warn!(%e, "cannot listen for queued executions; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => wake(),
                        // The connection was lost: wake everyone once (something may have
                        // been queued meanwhile), then listen again.
                        Ok(None) => wake(),
                        Err(e) => {
                            tracing::warn!(%e, "listening for queued executions failed; reconnecting");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            break;
                        }
                    }
                }
            }
        });
    }

    /// Closes the pool (waits for connections in use to come back).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn newest() -> i64 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// A URL as messages show it: without its user and password.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.rsplit('@').next().unwrap_or(rest)),
        None => url.to_string(),
    }
}

/// Sends `NOTIFY opsbook_queue` through `e` (inside a transaction, it is delivered at commit).
pub(crate) async fn announce_queued<'e>(e: impl Executor<'e, Database = sqlx::Postgres>) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, '')").bind(QUEUE_CHANNEL).execute(e).await.db()?;
    Ok(())
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;
