//! One store type for the front ends, whichever backend a database URL names.
//!
//! The server and the CLI hold an [`AnyStore`] and call [`open`] with the URL they were
//! given; each trait method goes to the backend underneath. A new backend is a new
//! variant here and one arm in [`each!`]; nothing above this crate changes.
#![forbid(unsafe_code)]

use opsbook_core::{Boxed, boxed};
use opsbook_store::*;
use opsbook_store_postgres::PgStore;
use opsbook_store_sqlite::SqliteStore;

pub use opsbook_store_postgres::PgConfig;

/// A store on one of the backends opsbook knows.
#[derive(Debug, Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl From<SqliteStore> for AnyStore {
    fn from(s: SqliteStore) -> AnyStore {
        AnyStore::Sqlite(s)
    }
}

impl From<PgStore> for AnyStore {
    fn from(s: PgStore) -> AnyStore {
        AnyStore::Postgres(s)
    }
}

/// Opens (creating or migrating as needed) the database a URL names.
pub fn open(url: &DatabaseUrl) -> Boxed<'_, Result<AnyStore>> {
    boxed(async move { open_with(url, &PgConfig::default()).await })
}

/// [`open`], with the connection settings of a PostgreSQL database.
pub fn open_with<'a>(url: &'a DatabaseUrl, pg: &'a PgConfig) -> Boxed<'a, Result<AnyStore>> {
    boxed(async move {
        match url {
            DatabaseUrl::Sqlite(path) => Ok(AnyStore::Sqlite(SqliteStore::open(path).await?)),
            DatabaseUrl::Postgres(u) => Ok(AnyStore::Postgres(PgStore::open_with(u, pg).await?)),
        }
    })
}

impl AnyStore {
    /// A database in memory that keeps nothing (runbook tests).
    pub fn in_memory() -> Result<AnyStore> {
        Ok(AnyStore::Sqlite(SqliteStore::in_memory()?))
    }

    /// What to call the database in messages: the SQLite file's path, or the server
    /// without its credentials.
    pub fn describe(url: &DatabaseUrl) -> String {
        match url {
            DatabaseUrl::Sqlite(path) => path.display().to_string(),
            DatabaseUrl::Postgres(u) => opsbook_store_postgres::redact(u),
        }
    }

    /// The schema version of the database and the newest this build knows.
    pub fn schema_version(&self) -> Boxed<'_, Result<(i64, i64)>> {
        boxed(async move {
            match self {
                AnyStore::Sqlite(s) => s.schema_version(),
                AnyStore::Postgres(s) => s.schema_version().await,
            }
        })
    }

    /// Sets the store up for a server, whose clients read while its workers write: on
    /// SQLite, reads go through read-only connections beside the writer (one kept per
    /// core, at least two). PostgreSQL's pool serves both already.
    pub fn serve_reads(&self) {
        if let AnyStore::Sqlite(s) = self {
            s.read_pool(std::thread::available_parallelism().map_or(2, |n| n.get().max(2)));
        }
    }

    /// Calls `wake` whenever an execution is queued, by any process on the database, when
    /// the backend can tell (PostgreSQL's `LISTEN`); otherwise never (workers poll).
    pub fn on_queued(&self, wake: std::sync::Arc<dyn Fn() + Send + Sync>) {
        if let AnyStore::Postgres(s) = self {
            s.on_queued(wake);
        }
    }
}

/// Copies a SQLite server's database into an empty PostgreSQL one (`opsbook admin copy`):
/// every row, in one transaction; returns how many rows each table received.
pub fn copy<'a>(
    from: &'a DatabaseUrl,
    to: &'a DatabaseUrl,
) -> Boxed<'a, std::result::Result<opsbook_store_postgres::Copied, String>> {
    boxed(copy_now(from, to))
}

async fn copy_now(from: &DatabaseUrl, to: &DatabaseUrl) -> std::result::Result<opsbook_store_postgres::Copied, String> {
    let (DatabaseUrl::Sqlite(path), DatabaseUrl::Postgres(target)) = (from, to) else {
        return Err(
            "copy goes from a SQLite database to a PostgreSQL one: --from sqlite:///path --to postgres://…".into()
        );
    };
    if !path.exists() {
        return Err(format!("{}: no such database file", path.display()));
    }
    // Opening brings the source up to the newest schema, which the copy expects.
    SqliteStore::open(path).await.map_err(|e| format!("{}: {e}", path.display()))?;
    let target = PgStore::open(target).await.map_err(|e| e.to_string())?;
    let copied = opsbook_store_postgres::copy_from_sqlite(path, &target).await.map_err(|e| e.to_string());
    target.close().await;
    copied
}

/// The same call on whichever backend this is.
macro_rules! each {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $call,
            AnyStore::Postgres($s) => $call,
        }
    };
}

/// Trait methods that hand their arguments to the backend's method of the same name.
///
/// The backend's future is boxed here, in a plain function: an `async fn`'s state machine
/// is compiled again in every crate (and codegen unit) that awaits it, so unboxed, each
/// backend's whole call tree (down into sqlx and rusqlite) was compiled into the engine,
/// the server and the CLI once per codegen unit that stores anything. Boxed inside an
/// `async fn` it still was (the box, and the vtable naming the backend's state machine,
/// were built in the caller's copy of that `async fn`). Boxed in a function that is not
/// `async` nor generic, it is compiled once, here, and what the callers compile is a
/// call and a poll through the box. One allocation a call, beside a query.
macro_rules! delegate {
    ($( fn $name:ident<$lt:lifetime>(&$self_lt:lifetime self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty; )*) => {
        $(
            fn $name<$lt>(&$self_lt self $(, $arg: $ty)*) -> impl std::future::Future<Output = $ret> + Send {
                let fut: Boxed<$lt, $ret> = each!(self, s => Box::pin(s.$name($($arg),*)));
                fut
            }
        )*
    };
}

impl Store for AnyStore {
    delegate! {
        fn save_runbook<'a>(&'a self, rb: &'a RunbookVersion) -> Result<()>;
        fn runbook<'a>(&'a self, sha256: &'a str) -> Result<RunbookVersion>;
        fn create_execution<'a>(&'a self, exec: &'a Execution, steps: &'a [StepRecord]) -> Result<()>;
        fn update_execution<'a>(&'a self, exec: &'a Execution, fence: Option<&'a str>) -> Result<()>;
        fn update_step<'a>(&'a self, step: &'a StepRecord, fence: Option<&'a str>) -> Result<()>;
        fn record_attempt<'a>(&'a self, attempt: &'a Attempt, steps: &'a [&'a StepRecord], fence: Option<&'a str>) -> Result<()>;
        fn append_logs<'a>(&'a self, lines: &'a [LogLine], fence: Option<&'a str>) -> Result<()>;
        fn execution<'a>(&'a self, id_or_prefix: &'a str) -> Result<Execution>;
        fn steps<'a>(&'a self, execution_id: &'a str) -> Result<Vec<StepRecord>>;
        fn attempts<'a>(&'a self, execution_id: &'a str) -> Result<Vec<Attempt>>;
        fn executions<'a>(&'a self, filter: &'a ExecutionFilter) -> Result<Vec<Execution>>;
        fn logs<'a>(&'a self, query: &'a LogQuery) -> Result<Vec<LogLine>>;
        fn last_log_seq<'a>(&'a self, execution_id: &'a str) -> Result<i64>;
        fn heads<'a>(&'a self, ids: &'a [String]) -> Result<Vec<Head>>;
        fn steps_and_last_seq<'a>(&'a self, execution_id: &'a str) -> Result<(Vec<StepRecord>, i64)>;
        fn finish_execution<'a>(
            &'a self,
            exec: &'a Execution,
            last: Option<(&'a Attempt, &'a [&'a StepRecord])>,
            fence: Option<&'a str>,
        ) -> Result<()>;
        fn add_approval<'a>(&'a self, approval: &'a Approval) -> Result<()>;
        fn approvals<'a>(&'a self, execution_id: &'a str) -> Result<Vec<Approval>>;
        fn add_feedback<'a>(&'a self, feedback: &'a Feedback) -> Result<()>;
        fn feedback<'a>(&'a self, execution_id: &'a str) -> Result<Vec<Feedback>>;
        fn heartbeat<'a>(&'a self, execution_id: &'a str, owner: &'a str, lease_ms: i64) -> Result<bool>;
        fn request_cancel<'a>(&'a self, execution_id: &'a str) -> Result<()>;
        fn claim_stopped<'a>(
            &'a self,
            execution_id: &'a str,
            owner: &'a str,
            lease_ms: i64,
            take_over_from: Option<&'a str>,
        ) -> Result<Option<Execution>>;
        fn set_process<'a>(&'a self, execution_id: &'a str, step_id: &'a str, process: Option<&'a str>) -> Result<()>;
        fn processes<'a>(&'a self, execution_id: &'a str) -> Result<Vec<(String, String)>>;
        fn release<'a>(&'a self, execution_id: &'a str, owner: &'a str) -> Result<()>;
        fn running<'a>(&'a self) -> Result<Vec<Execution>>;
    }
}

impl ServerStore for AnyStore {
    delegate! {
        fn publish<'a>(&'a self, p: &'a Publish) -> Result<Published>;
        fn registry<'a>(&'a self, q: &'a RunbookQuery) -> Result<Vec<RegistryEntry>>;
        fn registry_entry<'a>(&'a self, name: &'a str) -> Result<RegistryEntry>;
        fn registry_versions<'a>(&'a self, name: &'a str) -> Result<Vec<PublishedVersion>>;
        fn save_bundle<'a>(&'a self, sha256: &'a str, content: &'a [u8]) -> Result<()>;
        fn bundle<'a>(&'a self, sha256: &'a str) -> Result<Option<Vec<u8>>>;
        fn registry_version<'a>(&'a self, name: &'a str, version: &'a str) -> Result<(PublishedVersion, String)>;
        fn set_lifecycle<'a>(&'a self, e: &'a LifecycleEvent) -> Result<Vec<ScheduleRecord>>;
        fn lifecycle_events<'a>(&'a self, name: &'a str) -> Result<Vec<LifecycleEvent>>;
        fn create_execution_once<'a>(
            &'a self,
            exec: &'a Execution,
            steps: &'a [StepRecord],
            idempotency_key: Option<&'a str>,
            audit: &'a NewAudit,
        ) -> Result<String>;
        fn claim_queued<'a>(&'a self, owner: &'a str, lease_ms: i64) -> Result<Option<Execution>>;
        fn claim_waiting<'a>(&'a self, execution_id: &'a str, owner: &'a str, lease_ms: i64) -> Result<Option<Execution>>;
        fn requeue<'a>(&'a self, execution_id: &'a str) -> Result<bool>;
        fn cancel_unstarted<'a>(&'a self, execution_id: &'a str, at: i64, error: &'a str) -> Result<bool>;
        fn count_by_status<'a>(&'a self) -> Result<Vec<(String, i64)>>;
        fn ping<'a>(&'a self) -> Result<()>;
        fn count_queued<'a>(&'a self) -> Result<i64>;
        fn count_waiting<'a>(&'a self) -> Result<(i64, i64)>;
        fn expired_waits<'a>(&'a self, now: i64) -> Result<Vec<(String, bool)>>;
        fn create_token<'a>(&'a self, token: &'a Token, hash: &'a str) -> Result<()>;
        fn token<'a>(&'a self, id: &'a str) -> Result<Option<(Token, String)>>;
        fn token_used<'a>(&'a self, id: &'a str, at: i64) -> Result<()>;
        fn tokens<'a>(&'a self) -> Result<Vec<Token>>;
        fn revoke_token<'a>(&'a self, id: &'a str) -> Result<()>;
        fn put_secrets<'a>(&'a self, s: &'a SealedSecrets) -> Result<()>;
        fn sealed_secrets<'a>(&'a self, execution_id: &'a str) -> Result<Option<SealedSecrets>>;
        fn delete_secrets<'a>(&'a self, execution_id: &'a str) -> Result<()>;
        fn prune_secrets<'a>(&'a self, before: i64) -> Result<u64>;
        fn secret_key_ids<'a>(&'a self) -> Result<Vec<String>>;
        fn create_session<'a>(&'a self, s: &'a WebSession) -> Result<()>;
        fn session<'a>(&'a self, hash: &'a str) -> Result<Option<WebSession>>;
        fn end_session<'a>(&'a self, hash: &'a str, at: i64) -> Result<()>;
        fn prune_sessions<'a>(&'a self, before: i64) -> Result<u64>;
        fn create_schedule<'a>(&'a self, s: &'a ScheduleRecord) -> Result<()>;
        fn schedules<'a>(&'a self) -> Result<Vec<ScheduleRecord>>;
        fn delete_schedule<'a>(&'a self, id: &'a str) -> Result<()>;
        fn due_schedules<'a>(&'a self, now: i64) -> Result<Vec<ScheduleRecord>>;
        fn schedule_ran<'a>(&'a self, id: &'a str, ran_at: i64, next: Option<i64>, result: &'a str) -> Result<()>;
        fn has_active_execution<'a>(&'a self, actor: &'a str) -> Result<bool>;
        fn analytics_rows<'a>(&'a self, since: i64, runbook: Option<&'a str>) -> Result<Vec<AnalyticsRow>>;
        fn add_review<'a>(&'a self, review: &'a Review) -> Result<()>;
        fn reviews<'a>(&'a self, name: Option<&'a str>) -> Result<Vec<Review>>;
        fn feedback_since<'a>(&'a self, since: i64, runbook: Option<&'a str>) -> Result<Vec<(String, Feedback)>>;
        fn record_notification<'a>(&'a self, a: &'a NotificationAttempt) -> Result<()>;
        fn notifications<'a>(&'a self, execution_id: &'a str) -> Result<Vec<NotificationAttempt>>;
        fn append_audit<'a>(&'a self, record: &'a NewAudit) -> Result<AuditRecord>;
        fn audit<'a>(&'a self, f: &'a AuditFilter) -> Result<Vec<AuditRecord>>;
        fn verify_audit<'a>(&'a self) -> Result<std::result::Result<i64, String>>;
    }
}
