//! The registry (published runbooks, their versions and lifecycle), schedules and
//! analytics.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A runbook in the registry: its lifecycle and newest version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunbookEntry {
    pub name: String,
    /// `draft`, `active`, `deprecated` or `archived`.
    pub status: String,
    pub latest_version: String,
    pub latest_sha256: String,
    pub title: String,
    pub description: Option<String>,
    pub runbook_type: String,
    pub owner: Option<String>,
    pub tags: Vec<String>,
    /// When it was first published.
    #[schema(value_type = String, format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    #[serde(with = "crate::rfc3339")]
    pub created_at: i64,
    #[schema(value_type = String, format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    #[serde(with = "crate::rfc3339")]
    pub updated_at: i64,
}

impl From<opsbook_store::RegistryEntry> for RunbookEntry {
    fn from(e: opsbook_store::RegistryEntry) -> RunbookEntry {
        RunbookEntry {
            name: e.name,
            status: e.status,
            latest_version: e.latest_version,
            latest_sha256: e.latest_sha256,
            title: e.title,
            description: e.description,
            runbook_type: e.runbook_type,
            owner: e.owner,
            tags: e.tags,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// `GET /api/v1/runbooks/{name}`: the entry and its lifecycle history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunbookDoc {
    #[serde(flatten)]
    pub entry: RunbookEntry,
    pub lifecycle: Vec<LifecycleEvent>,
}

/// `POST /api/v1/runbooks` (the runbook's YAML text is the body).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublishResult {
    pub name: String,
    pub version: String,
    pub sha256: String,
    /// `created` (a new runbook), `updated` (a new version) or `unchanged`.
    pub result: String,
    /// Set when `?dry_run=true`: nothing was stored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The bundle of files published with it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_sha256: Option<String>,
    /// Its tests, run on publish (a draft may be published with failing tests; an
    /// active runbook may not).
    #[serde(default)]
    pub tests: TestsRun,
    /// What the publisher should know: a `metadata.status` that a new version does not
    /// change (only a first publish reads it; `lifecycle` moves a runbook).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// How a runbook's tests went.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TestsRun {
    pub passed: usize,
    pub failed: Vec<FailedTest>,
}

/// A test that failed, and why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FailedTest {
    pub test: String,
    pub failures: Vec<String>,
}

/// One published version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VersionEntry {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub published_by: String,
    #[schema(value_type = String, format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    #[serde(with = "crate::rfc3339")]
    pub published_at: i64,
    /// The files published with this version (`GET /api/v1/bundles/{sha256}`), if any.
    pub bundle_sha256: Option<String>,
}

impl From<opsbook_store::PublishedVersion> for VersionEntry {
    fn from(v: opsbook_store::PublishedVersion) -> VersionEntry {
        VersionEntry {
            name: v.name,
            version: v.version,
            sha256: v.sha256,
            published_by: v.published_by,
            published_at: v.published_at,
            bundle_sha256: v.bundle_sha256,
        }
    }
}

/// `GET /api/v1/runbooks/{name}/versions/{version}`: the version and its exact text.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionDoc {
    #[serde(flatten)]
    pub version: VersionEntry,
    pub content: String,
}

/// `PUT /api/v1/bundles/{sha256}`: a bundle of files is stored (or was already).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BundleStored {
    pub sha256: String,
    /// How many files it holds.
    pub files: usize,
    /// Its size in bytes (encoded).
    pub size: usize,
}

/// `POST /api/v1/runbooks/{name}/lifecycle`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LifecycleChange {
    /// `draft`, `active`, `deprecated` or `archived`.
    pub status: String,
    /// Required: why (kept in the runbook's history and the audit trail).
    pub reason: Option<String>,
}

/// A lifecycle transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LifecycleEvent {
    pub name: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub actor: String,
    pub reason: Option<String>,
    #[schema(value_type = String, format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    #[serde(with = "crate::rfc3339")]
    pub at: i64,
}

impl From<opsbook_store::LifecycleEvent> for LifecycleEvent {
    fn from(e: opsbook_store::LifecycleEvent) -> LifecycleEvent {
        LifecycleEvent {
            name: e.name,
            from_status: e.from_status,
            to_status: e.to_status,
            actor: e.actor,
            reason: e.reason,
            at: e.at,
        }
    }
}

/// The answer to a lifecycle change; archiving also says which schedules went with it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LifecycleChanged {
    #[serde(flatten)]
    pub event: LifecycleEvent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedules_removed: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `POST /api/v1/schedules`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    pub runbook: String,
    /// Five fields (minute hour day month weekday).
    pub cron: String,
    /// IANA name (default UTC).
    pub timezone: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    /// `skip` (default) or `queue`: when the previous run is still going.
    pub overlap: Option<String>,
    /// `skip` (default) or `run_once`: runs missed while the server was down.
    pub missed: Option<String>,
}

/// A schedule: a runbook's own (`source: runbook`) or created through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    pub id: String,
    pub runbook: String,
    pub source: String,
    pub cron: String,
    pub timezone: String,
    #[schema(value_type = Object)]
    pub params: Value,
    pub overlap: String,
    pub missed: String,
    pub created_by: String,
    #[schema(value_type = String, format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    #[serde(with = "crate::rfc3339")]
    pub created_at: i64,
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    #[serde(default, with = "crate::rfc3339::option")]
    pub next_run_at: Option<i64>,
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    #[serde(default, with = "crate::rfc3339::option")]
    pub last_run_at: Option<i64>,
    pub last_result: Option<String>,
    /// The roles of the token the schedule was created with. A run acts with those of
    /// them its creator still holds. Absent for a runbook's own schedules published before
    /// roles were recorded and for restored ones: those act with the creator's roles of now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

impl From<opsbook_store::ScheduleRecord> for Schedule {
    fn from(s: opsbook_store::ScheduleRecord) -> Schedule {
        Schedule {
            id: s.id,
            runbook: s.runbook,
            source: s.source,
            cron: s.cron,
            timezone: s.timezone,
            params: s.params,
            overlap: s.overlap,
            missed: s.missed,
            created_by: s.created_by,
            created_at: s.created_at,
            next_run_at: s.next_run_at,
            last_run_at: s.last_run_at,
            last_result: s.last_result,
            roles: s.roles,
        }
    }
}

/// `DELETE /api/v1/schedules/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    pub id: String,
    pub deleted: bool,
}

/// `GET /api/v1/analytics`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Analytics {
    /// RFC 3339: the start of the window.
    #[schema(format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    pub since: Option<String>,
    pub runbooks: Vec<RunbookFigures>,
    pub review_overdue: Vec<ReviewOverdue>,
    /// Every runbook together.
    #[serde(default)]
    pub totals: Totals,
    /// Runbooks flagged "needs attention": an average rating below 3, or a failure rate
    /// rising week over week.
    #[serde(default)]
    pub needs_attention: Vec<Attention>,
    /// Active or deprecated runbooks not run in the last 90 days.
    #[serde(default)]
    pub never_run_90d: Vec<String>,
}

/// The KPIs over every runbook in the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Totals {
    pub runs: usize,
    pub finished: usize,
    pub success_rate: Option<f64>,
    /// Deployment runbooks' runs that failed or were rolled back, of those finished.
    pub change_failure_rate: Option<f64>,
    /// The mean time a successful incident-response run took.
    pub mttr_ms: Option<i64>,
    pub distinct_users: usize,
    /// What `metadata.manual_duration` estimates the work took by hand, minus what the
    /// succeeded runs took, summed.
    pub time_saved_ms: i64,
    /// Runs and distinct users per week, oldest first.
    pub weekly: Vec<WeekFigures>,
}

/// One week of the window (the last seven days, the seven before, …).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WeekFigures {
    /// YYYY-MM-DD, the week's first day (UTC).
    pub week: String,
    pub runs: usize,
    pub finished: usize,
    pub succeeded: usize,
    pub success_rate: Option<f64>,
    pub distinct_users: usize,
}

/// A runbook that needs attention, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attention {
    pub runbook: String,
    pub reasons: Vec<String>,
}

/// A rating with its comment, for the recent comments of a runbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Comment {
    pub execution: String,
    pub user: String,
    pub rating: u8,
    pub comment: String,
    /// RFC 3339.
    #[schema(format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    pub at: Option<String>,
}

/// How one runbook fares over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunbookFigures {
    pub runbook: String,
    pub runs: usize,
    pub finished: usize,
    pub succeeded: usize,
    /// Of finished runs, to three decimals (null: none finished).
    pub success_rate: Option<f64>,
    pub p50_duration_ms: Option<i64>,
    pub p95_duration_ms: Option<i64>,
    pub runs_per_week: f64,
    pub distinct_users: usize,
    pub rollback_rate: Option<f64>,
    /// Incident-response runbooks only: the mean time a successful run took (null: none yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mttr_ms: Option<Option<i64>>,
    /// `deployment`, `incident_response`, … (empty when not in the registry).
    #[serde(default)]
    pub runbook_type: String,
    /// Deployment runbooks only: runs that failed or were rolled back, of those finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_failure_rate: Option<Option<f64>>,
    /// The success rate of the last seven days minus that of the seven before (null
    /// when either week has no finished run).
    #[serde(default)]
    pub success_trend: Option<f64>,
    /// Week by week, oldest first: runs, successes and distinct users (adoption).
    #[serde(default)]
    pub weekly: Vec<WeekFigures>,
    /// `metadata.manual_duration` minus the duration, summed over succeeded runs (null:
    /// the runbook gives no estimate).
    #[serde(default)]
    pub time_saved_ms: Option<i64>,
    /// Feedback: the mean rating (null: none), how many, and the latest comments.
    #[serde(default)]
    pub rating_avg: Option<f64>,
    #[serde(default)]
    pub ratings: usize,
    #[serde(default)]
    pub recent_comments: Vec<Comment>,
    /// Where its review stands: `overdue`, `never` (a cycle, never reviewed), `ok`, or
    /// empty (no review cycle).
    #[serde(default)]
    pub review: String,
    /// YYYY-MM-DD: when the next review is due.
    #[serde(default)]
    #[schema(format = Date, example = "2026-12-31")]
    pub review_due: Option<String>,
    /// Why it needs attention (empty: it does not).
    #[serde(default)]
    pub attention: Vec<String>,
}

/// A runbook whose review is due (or that was never reviewed and names no due date).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewOverdue {
    pub runbook: String,
    /// YYYY-MM-DD, or null.
    #[schema(format = Date, example = "2026-12-31")]
    pub due: Option<String>,
    pub owner: Option<String>,
}
