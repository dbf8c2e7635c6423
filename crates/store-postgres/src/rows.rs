//! Rows: how records are read from and written to the tables.

use opsbook_core::{ExecStatus, StepStatus};
use opsbook_store::{Error, Execution, Phase, Result, StepRecord, WaitKind};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row};

use crate::Db;

pub(crate) type Tx<'a> = sqlx::Transaction<'a, Postgres>;

pub(crate) fn json_text(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).expect("JSON values always serialize")
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt(format!("{what}: {e}")))
}

pub(crate) fn exec_status(s: &str) -> Result<ExecStatus> {
    ExecStatus::parse(s).ok_or_else(|| Error::Corrupt(format!("unknown execution status `{s}`")))
}

pub(crate) fn step_status(s: &str) -> Result<StepStatus> {
    StepStatus::parse(s).ok_or_else(|| Error::Corrupt(format!("unknown step status `{s}`")))
}

fn opt_step_status(s: Option<String>) -> Result<Option<StepStatus>> {
    s.map(|s| step_status(&s)).transpose()
}

pub(crate) fn phase(s: &str) -> Result<Phase> {
    Phase::parse(s).ok_or_else(|| Error::Corrupt(format!("unknown phase `{s}`")))
}

/// A column of a row, by position, as `T`.
pub(crate) fn col<'r, T>(row: &'r PgRow, i: usize) -> Result<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(i).db()
}

/// The columns of `executions`, in the order [`execution_from`] reads them.
macro_rules! execution_columns {
    () => {
        "id, runbook_name, runbook_version, runbook_sha256, source_path, base_dir, status, actor, params, \
         secret_digests, created_at, started_at, finished_at, error, current_step, rollback_status, owner, \
         lease_expires_at, heartbeat_at, cancel_requested"
    };
}
pub(crate) use execution_columns;

pub(crate) fn execution_from(row: &PgRow) -> Result<Execution> {
    Ok(Execution {
        id: col(row, 0)?,
        runbook_name: col(row, 1)?,
        runbook_version: col(row, 2)?,
        runbook_sha256: col(row, 3)?,
        source_path: col(row, 4)?,
        base_dir: col(row, 5)?,
        status: exec_status(col(row, 6)?)?,
        actor: col(row, 7)?,
        params: parse_json(col(row, 8)?, "execution params")?,
        secret_digests: parse_json(col(row, 9)?, "secret digests")?,
        created_at: col(row, 10)?,
        started_at: col(row, 11)?,
        finished_at: col(row, 12)?,
        error: col(row, 13)?,
        current_step: col(row, 14)?,
        rollback_status: opt_step_status(col(row, 15)?)?,
        owner: col(row, 16)?,
        lease_expires_at: col(row, 17)?,
        heartbeat_at: col(row, 18)?,
        cancel_requested: col(row, 19)?,
    })
}

/// The columns of `execution_steps`, in the order [`step_from`] reads them.
macro_rules! step_columns {
    () => {
        "execution_id, idx, step_id, name, kind, status, attempts, exit_code, started_at, finished_at, error, \
         outputs, rendered, wait_deadline, rollback_status, rollback_exit_code, rollback_error, wait_kind, \
         overridden_by"
    };
}
pub(crate) use step_columns;

pub(crate) fn step_from(row: &PgRow) -> Result<StepRecord> {
    Ok(StepRecord {
        execution_id: col(row, 0)?,
        idx: col(row, 1)?,
        step_id: col(row, 2)?,
        name: col(row, 3)?,
        kind: col(row, 4)?,
        status: step_status(col(row, 5)?)?,
        attempts: col(row, 6)?,
        exit_code: col(row, 7)?,
        started_at: col(row, 8)?,
        finished_at: col(row, 9)?,
        error: col(row, 10)?,
        outputs: parse_json(col(row, 11)?, "step outputs")?,
        rendered: col(row, 12)?,
        wait_deadline: col(row, 13)?,
        rollback_status: opt_step_status(col(row, 14)?)?,
        rollback_exit_code: col(row, 15)?,
        rollback_error: col(row, 16)?,
        wait_kind: col::<Option<&str>>(row, 17)?.and_then(WaitKind::parse),
        overridden_by: col(row, 18)?,
    })
}

/// Maps every row, stopping at the first that does not read.
pub(crate) fn map_rows<T>(rows: &[PgRow], f: impl Fn(&PgRow) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}

/// What a step waits for, stored only while it waits.
fn wait_kind(s: &StepRecord) -> Option<&'static str> {
    s.wait_kind.filter(|_| s.status == StepStatus::Waiting).map(WaitKind::as_str)
}

/// Inserts an execution and its steps (inside the caller's transaction).
pub(crate) async fn insert_execution(tx: &mut Tx<'_>, e: &Execution, steps: &[StepRecord]) -> Result<()> {
    sqlx::query(concat!(
        "INSERT INTO executions (",
        execution_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
    ))
    .bind(&e.id)
    .bind(&e.runbook_name)
    .bind(&e.runbook_version)
    .bind(&e.runbook_sha256)
    .bind(&e.source_path)
    .bind(&e.base_dir)
    .bind(e.status.as_str())
    .bind(&e.actor)
    .bind(json_text(&e.params))
    .bind(json_text(&e.secret_digests))
    .bind(e.created_at)
    .bind(e.started_at)
    .bind(e.finished_at)
    .bind(&e.error)
    .bind(e.current_step)
    .bind(e.rollback_status.map(StepStatus::as_str))
    .bind(&e.owner)
    .bind(e.lease_expires_at)
    .bind(e.heartbeat_at)
    .bind(e.cancel_requested)
    .execute(&mut **tx)
    .await
    .db()?;
    for s in steps {
        sqlx::query(concat!(
            "INSERT INTO execution_steps (",
            step_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
        ))
        .bind(&s.execution_id)
        .bind(s.idx)
        .bind(&s.step_id)
        .bind(&s.name)
        .bind(&s.kind)
        .bind(s.status.as_str())
        .bind(s.attempts)
        .bind(s.exit_code)
        .bind(s.started_at)
        .bind(s.finished_at)
        .bind(&s.error)
        .bind(json_text(&s.outputs))
        .bind(&s.rendered)
        .bind(s.wait_deadline)
        .bind(s.rollback_status.map(StepStatus::as_str))
        .bind(s.rollback_exit_code)
        .bind(&s.rollback_error)
        .bind(wait_kind(s))
        .bind(&s.overridden_by)
        .execute(&mut **tx)
        .await
        .db()?;
    }
    if e.status == ExecStatus::Queued {
        crate::announce_queued(&mut **tx).await?;
    }
    Ok(())
}

/// Writes a step's state through `e`. With a `fence`, only while the execution is held by
/// that owner: the statement share-locks the execution's row while it checks, so a claim
/// cannot pass until this write commits. Returns whether a row was written.
pub(crate) async fn update_step<'e>(
    e: impl sqlx::Executor<'e, Database = Postgres>,
    s: &StepRecord,
    fence: Option<&str>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE execution_steps SET status = $1, attempts = $2, exit_code = $3, started_at = $4, finished_at = $5, \
         error = $6, outputs = $7, rendered = $8, wait_deadline = $9, rollback_status = $10, \
         rollback_exit_code = $11, rollback_error = $12, wait_kind = $13, overridden_by = $14 \
         WHERE execution_id = $15 AND idx = $16 \
         AND ($17::text IS NULL OR EXISTS (SELECT 1 FROM executions WHERE id = $15 AND owner = $17 FOR SHARE))",
    )
    .bind(s.status.as_str())
    .bind(s.attempts)
    .bind(s.exit_code)
    .bind(s.started_at)
    .bind(s.finished_at)
    .bind(&s.error)
    .bind(json_text(&s.outputs))
    .bind(&s.rendered)
    .bind(s.wait_deadline)
    .bind(s.rollback_status.map(StepStatus::as_str))
    .bind(s.rollback_exit_code)
    .bind(&s.rollback_error)
    .bind(wait_kind(s))
    .bind(&s.overridden_by)
    .bind(&s.execution_id)
    .bind(s.idx)
    .bind(fence)
    .execute(e)
    .await
    .db()?;
    Ok(done.rows_affected() > 0)
}

/// `Error::LostClaim` unless execution `id` is held by `fence` (when there is one).
pub(crate) async fn check_fence<'e>(
    e: impl sqlx::Executor<'e, Database = Postgres>,
    id: &str,
    fence: Option<&str>,
) -> Result<()> {
    let Some(fence) = fence else { return Ok(()) };
    let holder: Option<Option<String>> =
        sqlx::query_scalar("SELECT owner FROM executions WHERE id = $1").bind(id).fetch_optional(e).await.db()?;
    match holder {
        None => Err(Error::NotFound(format!("execution {id}"))),
        Some(Some(h)) if h == fence => Ok(()),
        Some(h) => Err(Error::LostClaim(format!(
            "execution {id} is held by {}, not {fence}: this runner's claim lapsed and was taken, so it stops",
            h.as_deref().unwrap_or("no one")
        ))),
    }
}
