//! One store type for the front ends, whichever backend a database URL names.
//!
//! The server and the CLI hold an [`AnyStore`] and call [`open`] with the URL they were
//! given; each trait method goes to the backend underneath. A new backend is a new
//! variant here and one arm in [`each!`]; nothing above this crate changes.
#![forbid(unsafe_code)]

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
pub async fn open(url: &DatabaseUrl) -> Result<AnyStore> {
    open_with(url, &PgConfig::default()).await
}

/// [`open`], with the connection settings of a PostgreSQL database.
pub async fn open_with(url: &DatabaseUrl, pg: &PgConfig) -> Result<AnyStore> {
    match url {
        DatabaseUrl::Sqlite(path) => Ok(AnyStore::Sqlite(SqliteStore::open(path).await?)),
        DatabaseUrl::Postgres(u) => Ok(AnyStore::Postgres(PgStore::open_with(u, pg).await?)),
    }
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
    pub async fn schema_version(&self) -> Result<(i64, i64)> {
        match self {
            AnyStore::Sqlite(s) => s.schema_version(),
            AnyStore::Postgres(s) => s.schema_version().await,
        }
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
pub async fn copy(from: &DatabaseUrl, to: &DatabaseUrl) -> std::result::Result<opsbook_store_postgres::Copied, String> {
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
/// The backend's future is boxed here: an `async fn`'s state machine is compiled again in
/// every crate (and codegen unit) that awaits it, so unboxed, each backend's whole call
/// tree (down into sqlx and rusqlite) was compiled into the engine, the server and the
/// CLI once per codegen unit that stores anything. Boxed, it is compiled once, here, and
/// what the callers compile is this small match. One allocation a call, beside a query.
macro_rules! delegate {
    ($( fn $name:ident(&self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty; )*) => {
        $(
            async fn $name(&self $(, $arg: $ty)*) -> $ret {
                each!(self, s => opsbook_core::boxed(s.$name($($arg),*)).await)
            }
        )*
    };
}

impl Store for AnyStore {
    delegate! {
        fn save_runbook(&self, rb: &RunbookVersion) -> Result<()>;
        fn runbook(&self, sha256: &str) -> Result<RunbookVersion>;
        fn create_execution(&self, exec: &Execution, steps: &[StepRecord]) -> Result<()>;
        fn update_execution(&self, exec: &Execution, fence: Option<&str>) -> Result<()>;
        fn update_step(&self, step: &StepRecord, fence: Option<&str>) -> Result<()>;
        fn record_attempt(&self, attempt: &Attempt, steps: &[&StepRecord], fence: Option<&str>) -> Result<()>;
        fn append_logs(&self, lines: &[LogLine]) -> Result<()>;
        fn execution(&self, id_or_prefix: &str) -> Result<Execution>;
        fn steps(&self, execution_id: &str) -> Result<Vec<StepRecord>>;
        fn attempts(&self, execution_id: &str) -> Result<Vec<Attempt>>;
        fn executions(&self, filter: &ExecutionFilter) -> Result<Vec<Execution>>;
        fn logs(&self, query: &LogQuery) -> Result<Vec<LogLine>>;
        fn last_log_seq(&self, execution_id: &str) -> Result<i64>;
        fn steps_and_last_seq(&self, execution_id: &str) -> Result<(Vec<StepRecord>, i64)>;
        fn finish_execution(
            &self,
            exec: &Execution,
            last: Option<(&Attempt, &[&StepRecord])>,
            fence: Option<&str>,
        ) -> Result<()>;
        fn add_approval(&self, approval: &Approval) -> Result<()>;
        fn approvals(&self, execution_id: &str) -> Result<Vec<Approval>>;
        fn add_feedback(&self, feedback: &Feedback) -> Result<()>;
        fn feedback(&self, execution_id: &str) -> Result<Vec<Feedback>>;
        fn heartbeat(&self, execution_id: &str, owner: &str, lease_ms: i64) -> Result<bool>;
        fn request_cancel(&self, execution_id: &str) -> Result<()>;
        fn claim_stopped(
            &self,
            execution_id: &str,
            owner: &str,
            lease_ms: i64,
            take_over_from: Option<&str>,
        ) -> Result<Option<Execution>>;
        fn set_process(&self, execution_id: &str, step_id: &str, process: Option<&str>) -> Result<()>;
        fn processes(&self, execution_id: &str) -> Result<Vec<(String, String)>>;
        fn release(&self, execution_id: &str, owner: &str) -> Result<()>;
        fn running(&self) -> Result<Vec<Execution>>;
    }
}

impl ServerStore for AnyStore {
    delegate! {
        fn publish(&self, p: &Publish) -> Result<Published>;
        fn registry(&self, q: &RunbookQuery) -> Result<Vec<RegistryEntry>>;
        fn registry_entry(&self, name: &str) -> Result<RegistryEntry>;
        fn registry_versions(&self, name: &str) -> Result<Vec<PublishedVersion>>;
        fn save_bundle(&self, sha256: &str, content: &[u8]) -> Result<()>;
        fn bundle(&self, sha256: &str) -> Result<Option<Vec<u8>>>;
        fn registry_version(&self, name: &str, version: &str) -> Result<(PublishedVersion, String)>;
        fn set_lifecycle(&self, e: &LifecycleEvent) -> Result<Vec<ScheduleRecord>>;
        fn lifecycle_events(&self, name: &str) -> Result<Vec<LifecycleEvent>>;
        fn create_execution_once(
            &self,
            exec: &Execution,
            steps: &[StepRecord],
            idempotency_key: Option<&str>,
            audit: &NewAudit,
        ) -> Result<String>;
        fn claim_queued(&self, owner: &str, lease_ms: i64) -> Result<Option<Execution>>;
        fn claim_waiting(&self, execution_id: &str, owner: &str, lease_ms: i64) -> Result<Option<Execution>>;
        fn requeue(&self, execution_id: &str) -> Result<bool>;
        fn count_by_status(&self) -> Result<Vec<(String, i64)>>;
        fn count_queued(&self) -> Result<i64>;
        fn count_waiting(&self) -> Result<(i64, i64)>;
        fn expired_waits(&self, now: i64) -> Result<Vec<(String, bool)>>;
        fn create_token(&self, token: &Token, hash: &str) -> Result<()>;
        fn token(&self, id: &str) -> Result<Option<(Token, String)>>;
        fn token_used(&self, id: &str, at: i64) -> Result<()>;
        fn tokens(&self) -> Result<Vec<Token>>;
        fn revoke_token(&self, id: &str) -> Result<()>;
        fn put_secrets(&self, s: &SealedSecrets) -> Result<()>;
        fn sealed_secrets(&self, execution_id: &str) -> Result<Option<SealedSecrets>>;
        fn delete_secrets(&self, execution_id: &str) -> Result<()>;
        fn prune_secrets(&self, before: i64) -> Result<u64>;
        fn create_session(&self, s: &WebSession) -> Result<()>;
        fn session(&self, hash: &str) -> Result<Option<WebSession>>;
        fn end_session(&self, hash: &str, at: i64) -> Result<()>;
        fn prune_sessions(&self, before: i64) -> Result<u64>;
        fn sync_schedules(&self, runbook: &str, schedules: &[ScheduleRecord]) -> Result<()>;
        fn create_schedule(&self, s: &ScheduleRecord) -> Result<()>;
        fn schedules(&self) -> Result<Vec<ScheduleRecord>>;
        fn delete_schedule(&self, id: &str) -> Result<()>;
        fn due_schedules(&self, now: i64) -> Result<Vec<ScheduleRecord>>;
        fn schedule_ran(&self, id: &str, ran_at: i64, next: Option<i64>, result: &str) -> Result<()>;
        fn has_active_execution(&self, actor: &str) -> Result<bool>;
        fn analytics_rows(&self, since: i64, runbook: Option<&str>) -> Result<Vec<AnalyticsRow>>;
        fn add_review(&self, review: &Review) -> Result<()>;
        fn reviews(&self, name: Option<&str>) -> Result<Vec<Review>>;
        fn feedback_since(&self, since: i64, runbook: Option<&str>) -> Result<Vec<(String, Feedback)>>;
        fn record_notification(&self, a: &NotificationAttempt) -> Result<()>;
        fn notifications(&self, execution_id: &str) -> Result<Vec<NotificationAttempt>>;
        fn append_audit(&self, record: &NewAudit) -> Result<AuditRecord>;
        fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>>;
        fn verify_audit(&self) -> Result<std::result::Result<i64, String>>;
    }
}
