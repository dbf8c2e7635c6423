//! Durable storage of runbooks, executions, steps, attempts, logs and approvals.
//!
//! Architecture invariant: this is the only crate that knows SQL. The engine
//! and the front ends talk to the [`Store`] trait; SQLite is the embedded
//! default and PostgreSQL will be a second implementation of the same trait.
#![forbid(unsafe_code)]

mod error;
pub mod id;
mod records;
mod sqlite;

use std::future::Future;

pub use error::{Error, Result};
pub use records::*;
pub use sqlite::SqliteStore;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Everything the engine and front ends need from storage. Every method commits
/// before it returns, so a crash never loses an acknowledged state change.
pub trait Store: Send + Sync + Clone + 'static {
    /// Stores the exact text of a runbook version (no-op if already stored).
    fn save_runbook(&self, rb: &RunbookVersion) -> impl Future<Output = Result<()>> + Send;
    fn runbook(&self, sha256: &str) -> impl Future<Output = Result<RunbookVersion>> + Send;

    /// Creates an execution and its pending steps in one transaction.
    fn create_execution(&self, exec: &Execution, steps: &[StepRecord]) -> impl Future<Output = Result<()>> + Send;
    fn update_execution(&self, exec: &Execution) -> impl Future<Output = Result<()>> + Send;
    fn update_step(&self, step: &StepRecord) -> impl Future<Output = Result<()>> + Send;
    /// Records a finished attempt and, in the same transaction, the new state of the given
    /// steps (its own, and possibly the next step's start).
    fn record_attempt(&self, attempt: &Attempt, steps: &[&StepRecord]) -> impl Future<Output = Result<()>> + Send;
    fn append_logs(&self, lines: &[LogLine]) -> impl Future<Output = Result<()>> + Send;

    /// Finds an execution by full id or unique prefix (at least 4 characters).
    fn execution(&self, id_or_prefix: &str) -> impl Future<Output = Result<Execution>> + Send;
    fn steps(&self, execution_id: &str) -> impl Future<Output = Result<Vec<StepRecord>>> + Send;
    fn attempts(&self, execution_id: &str) -> impl Future<Output = Result<Vec<Attempt>>> + Send;
    fn executions(&self, filter: &ExecutionFilter) -> impl Future<Output = Result<Vec<Execution>>> + Send;
    fn logs(&self, query: &LogQuery) -> impl Future<Output = Result<Vec<LogLine>>> + Send;
    fn last_log_seq(&self, execution_id: &str) -> impl Future<Output = Result<i64>> + Send;

    /// Records a decision; one person decides once per step.
    fn add_approval(&self, approval: &Approval) -> impl Future<Output = Result<()>> + Send;
    fn approvals(&self, execution_id: &str) -> impl Future<Output = Result<Vec<Approval>>> + Send;

    /// Extends the claim of `owner` on a running execution; returns whether cancel was requested.
    fn heartbeat(&self, execution_id: &str, owner: &str, lease_ms: i64) -> impl Future<Output = Result<bool>> + Send;
    fn request_cancel(&self, execution_id: &str) -> impl Future<Output = Result<()>> + Send;
    /// Executions in `running` state, for crash recovery.
    fn running(&self) -> impl Future<Output = Result<Vec<Execution>>> + Send;
}
