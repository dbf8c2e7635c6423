//! Rows: how records are read from and written to the tables.

use opsbook_core::{ExecStatus, StepStatus};
use opsbook_store::{Attempt, Error, Execution, NewAudit, Result, StepRecord, WaitKind, now_ms};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};

use crate::Db;

pub(crate) type Tx<'a> = sqlx::Transaction<'a, Postgres>;

pub(crate) use opsbook_store::codec::{exec_status, json_text, opt_step_status, parse_json, phase, step_status};

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
         lease_expires_at, heartbeat_at, cancel_requested, parent_id, parent_step"
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
        parent_id: col(row, 20)?,
        parent_step: col(row, 21)?,
    })
}

/// The columns of `execution_steps`, in the order [`step_from`] reads them.
macro_rules! step_columns {
    () => {
        "execution_id, idx, step_id, name, kind, status, attempts, exit_code, started_at, finished_at, error, \
         outputs, rendered, wait_deadline, rollback_status, rollback_exit_code, rollback_error, wait_kind, \
         overridden_by, targets"
    };
}
pub(crate) use step_columns;

/// How many columns `step_columns!()` names: the index of a column a query adds after them.
pub(crate) const STEP_COLUMNS: usize = 20;

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
        targets: opsbook_store::codec::parse_targets(col(row, 19)?)?,
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

/// Inserts an execution and its steps in one statement (so in one round trip, and
/// atomically without a transaction around it), announcing it to idle workers when it
/// is queued. With `key` (`actor`, idempotency key), only if the key is new: the key is
/// inserted first (`ON CONFLICT DO NOTHING`, which waits for a concurrent insert of the
/// same key to commit or roll back) and the rest only when it went in. With `audit`
/// (whose target is the execution's id), its record is appended in the same statement.
/// Returns whether the execution was inserted.
pub(crate) async fn insert_execution<'c>(
    c: impl sqlx::Executor<'c, Database = Postgres>,
    e: &Execution,
    steps: &[StepRecord],
    key: Option<&str>,
    audit: Option<&NewAudit>,
) -> Result<bool> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("WITH ");
    let gate = match key {
        Some(key) => {
            q.push("k AS (INSERT INTO idempotency_keys (actor, key, execution_id, created_at) VALUES (")
                .push_bind(&e.actor)
                .push(", ")
                .push_bind(key)
                .push(", ")
                .push_bind(&e.id)
                .push(", ")
                .push_bind(opsbook_store::now_ms())
                .push(") ON CONFLICT (actor, key) DO NOTHING RETURNING 1), ");
            " WHERE EXISTS (SELECT 1 FROM k)"
        }
        None => "",
    };
    q.push(concat!("e AS (INSERT INTO executions (", execution_columns!(), ") SELECT "));
    {
        let mut v = q.separated(", ");
        v.push_bind(&e.id)
            .push_bind(&e.runbook_name)
            .push_bind(&e.runbook_version)
            .push_bind(&e.runbook_sha256)
            .push_bind(&e.source_path)
            .push_bind(&e.base_dir)
            .push_bind(e.status.as_str())
            .push_bind(&e.actor)
            .push_bind(json_text(&e.params))
            .push_bind(json_text(&e.secret_digests))
            .push_bind(e.created_at)
            .push_bind(e.started_at)
            .push_bind(e.finished_at)
            .push_bind(&e.error)
            .push_bind(e.current_step)
            .push_bind(e.rollback_status.map(StepStatus::as_str))
            .push_bind(&e.owner)
            .push_bind(e.lease_expires_at)
            .push_bind(e.heartbeat_at)
            .push_bind(e.cancel_requested)
            .push_bind(&e.parent_id)
            .push_bind(&e.parent_step);
    }
    q.push(gate).push(" RETURNING id)");
    // The steps refer to the execution; references are checked at the statement's end.
    for (i, chunk) in steps.chunks(1000).enumerate() {
        q.push(format_args!(", s{i} AS (INSERT INTO execution_steps ("))
            .push(step_columns!())
            .push(") SELECT v.* FROM (");
        q.push_values(chunk, |mut b, s| {
            b.push_bind(&s.execution_id)
                .push_bind(s.idx)
                .push_bind(&s.step_id)
                .push_bind(&s.name)
                .push_bind(&s.kind)
                .push_bind(s.status.as_str())
                .push_bind(s.attempts)
                .push_bind(s.exit_code)
                .push_bind(s.started_at)
                .push_bind(s.finished_at)
                .push_bind(&s.error)
                .push_bind(json_text(&s.outputs))
                .push_bind(&s.rendered)
                .push_bind(s.wait_deadline)
                .push_bind(s.rollback_status.map(StepStatus::as_str))
                .push_bind(s.rollback_exit_code)
                .push_bind(&s.rollback_error)
                .push_bind(wait_kind(s))
                .push_bind(&s.overridden_by)
                .push_bind(opsbook_store::codec::targets_text(&s.targets));
        });
        q.push(") AS v WHERE EXISTS (SELECT 1 FROM e))");
    }
    // A plain SELECT in WITH runs only if read: the main query reads it.
    q.push(", n AS (SELECT pg_notify(").push_bind(crate::QUEUE_CHANNEL).push(", '') FROM e WHERE ");
    q.push_bind(e.status == ExecStatus::Queued).push(")");
    let at = now_ms();
    if let Some(r) = audit {
        crate::audit::push_append(&mut q, r, at, "e");
    }
    q.push(" SELECT EXISTS (SELECT 1 FROM e), (SELECT COUNT(*) FROM n)");
    if audit.is_some() {
        q.push(", (SELECT o_seq FROM au), (SELECT o_prev FROM au), (SELECT o_hash FROM au)");
    }
    let row = q.build().fetch_one(c).await.db()?;
    let inserted = col::<bool>(&row, 0)?;
    // Committed already: a record that does not check out is reported (and `opsbook admin
    // audit verify` finds it), but the execution it audits stands, and so does the answer.
    if let (true, Some(r)) = (inserted, audit) {
        let checked = (|| crate::audit::appended(r, at, col(&row, 2)?, col(&row, 3)?, col(&row, 4)?))();
        if let Err(why) = checked {
            tracing::error!(%why, execution = %e.id, "the audit record of a new execution does not check out");
        }
    }
    Ok(inserted)
}

/// `UPDATE execution_steps SET … WHERE execution_id = … AND idx = …` for a step's state;
/// the caller adds its conditions (the fence) after it.
pub(crate) fn push_step_update(q: &mut QueryBuilder<Postgres>, s: &StepRecord) {
    q.push("UPDATE execution_steps SET ");
    let mut set = q.separated(", ");
    set.push("status = ").push_bind_unseparated(s.status.as_str());
    set.push("attempts = ").push_bind_unseparated(s.attempts);
    set.push("exit_code = ").push_bind_unseparated(s.exit_code);
    set.push("started_at = ").push_bind_unseparated(s.started_at);
    set.push("finished_at = ").push_bind_unseparated(s.finished_at);
    set.push("error = ").push_bind_unseparated(&s.error);
    set.push("outputs = ").push_bind_unseparated(json_text(&s.outputs));
    set.push("rendered = ").push_bind_unseparated(&s.rendered);
    set.push("wait_deadline = ").push_bind_unseparated(s.wait_deadline);
    set.push("rollback_status = ").push_bind_unseparated(s.rollback_status.map(StepStatus::as_str));
    set.push("rollback_exit_code = ").push_bind_unseparated(s.rollback_exit_code);
    set.push("rollback_error = ").push_bind_unseparated(&s.rollback_error);
    set.push("wait_kind = ").push_bind_unseparated(wait_kind(s));
    set.push("overridden_by = ").push_bind_unseparated(&s.overridden_by);
    set.push("targets = ").push_bind_unseparated(opsbook_store::codec::targets_text(&s.targets));
    q.push(" WHERE execution_id = ").push_bind(&s.execution_id).push(" AND idx = ").push_bind(s.idx);
}

/// `UPDATE executions SET … WHERE id = …`, only while `fence` (when there is one) holds it;
/// not the actor, which is set at creation and never changes.
pub(crate) fn push_execution_update(q: &mut QueryBuilder<Postgres>, e: &Execution, fence: Option<&str>) {
    q.push("UPDATE executions SET ");
    let mut set = q.separated(", ");
    set.push("status = ").push_bind_unseparated(e.status.as_str());
    set.push("started_at = ").push_bind_unseparated(e.started_at);
    set.push("finished_at = ").push_bind_unseparated(e.finished_at);
    set.push("error = ").push_bind_unseparated(&e.error);
    set.push("current_step = ").push_bind_unseparated(e.current_step);
    set.push("rollback_status = ").push_bind_unseparated(e.rollback_status.map(StepStatus::as_str));
    set.push("owner = ").push_bind_unseparated(&e.owner);
    set.push("lease_expires_at = ").push_bind_unseparated(e.lease_expires_at);
    set.push("heartbeat_at = ").push_bind_unseparated(e.heartbeat_at);
    q.push(" WHERE id = ").push_bind(&e.id);
    q.push(" AND (").push_bind(fence).push("::text IS NULL OR owner = ").push_bind(fence).push(")");
}

/// `, a AS (INSERT the attempt), u0 AS (the steps' updates) … SELECT …` after a CTE
/// named `guard` that yields one row when the write may go ahead. The statement's row
/// says how many rows `guard` had; when it had one, a step that is not there aborts the
/// whole statement.
pub(crate) fn push_attempt(q: &mut QueryBuilder<Postgres>, a: &Attempt, steps: &[&StepRecord], guard: &str) {
    q.push(
        ", a AS (INSERT INTO step_attempts (execution_id, step_id, phase, attempt, status, exit_code, started_at, \
         finished_at, error) SELECT ",
    );
    {
        let mut v = q.separated(", ");
        v.push_bind(&a.execution_id)
            .push_bind(&a.step_id)
            .push_bind(a.phase.as_str())
            .push_bind(a.attempt)
            .push_bind(a.status.as_str())
            .push_bind(a.exit_code)
            .push_bind(a.started_at)
            .push_bind(a.finished_at)
            .push_bind(&a.error);
    }
    q.push(format_args!(" FROM {guard} RETURNING 1)"));
    for (i, s) in steps.iter().enumerate() {
        q.push(format_args!(", u{i} AS ("));
        push_step_update(q, s);
        q.push(format_args!(" AND EXISTS (SELECT 1 FROM {guard}) RETURNING 1)"));
    }
    q.push(format_args!(" SELECT (SELECT COUNT(*) FROM {guard}), CASE WHEN (SELECT COUNT(*) FROM {guard}) = 1 AND (SELECT COUNT(*) FROM a)"));
    for i in 0..steps.len() {
        q.push(format_args!(" + (SELECT COUNT(*) FROM u{i})"));
    }
    q.push(format_args!(" <> {} THEN opsbook_fail(", steps.len() + 1));
    q.push_bind(format!("a step of execution {} is missing", a.execution_id)).push(") END");
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

#[cfg(test)]
mod tests {
    /// The count that places a column after the steps' (the last log sequence number)
    /// matches the list.
    #[test]
    fn the_step_column_count_matches_the_list() {
        assert_eq!(step_columns!().split(',').count(), super::STEP_COLUMNS);
    }
}
