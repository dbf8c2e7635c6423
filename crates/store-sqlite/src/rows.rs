//! Rows: how records are read from and written to the tables.

use opsbook_core::StepStatus;
use opsbook_store::{Error, Execution, Result, StepRecord, WaitKind};
use rusqlite::{Connection, Row, params};

use crate::Db;

pub(crate) use opsbook_store::codec::{exec_status, json_text, opt_step_status, parse_json, phase, step_status};

pub(crate) const EXECUTION_COLUMNS: &str = "id, runbook_name, runbook_version, runbook_sha256, source_path, base_dir, status, \
    actor, params, secret_digests, created_at, started_at, finished_at, error, current_step, rollback_status, owner, \
    lease_expires_at, heartbeat_at, cancel_requested, parent_id, parent_step";

pub(crate) fn execution_from(row: &Row<'_>) -> Result<Execution> {
    Ok(Execution {
        id: row.get(0).db()?,
        runbook_name: row.get(1).db()?,
        runbook_version: row.get(2).db()?,
        runbook_sha256: row.get(3).db()?,
        source_path: row.get(4).db()?,
        base_dir: row.get(5).db()?,
        status: exec_status(&row.get::<_, String>(6).db()?)?,
        actor: row.get(7).db()?,
        params: parse_json(&row.get::<_, String>(8).db()?, "execution params")?,
        secret_digests: parse_json(&row.get::<_, String>(9).db()?, "secret digests")?,
        created_at: row.get(10).db()?,
        started_at: row.get(11).db()?,
        finished_at: row.get(12).db()?,
        error: row.get(13).db()?,
        current_step: row.get(14).db()?,
        rollback_status: opt_step_status(row.get(15).db()?)?,
        owner: row.get(16).db()?,
        lease_expires_at: row.get(17).db()?,
        heartbeat_at: row.get(18).db()?,
        cancel_requested: row.get::<_, i64>(19).db()? != 0,
        parent_id: row.get(20).db()?,
        parent_step: row.get(21).db()?,
    })
}

pub(crate) const STEP_COLUMNS: &str = "execution_id, idx, step_id, name, kind, status, attempts, exit_code, started_at, \
    finished_at, error, outputs, rendered, wait_deadline, rollback_status, rollback_exit_code, rollback_error, wait_kind, \
    overridden_by, targets";

pub(crate) fn step_from(row: &Row<'_>) -> Result<StepRecord> {
    Ok(StepRecord {
        execution_id: row.get(0).db()?,
        idx: row.get(1).db()?,
        step_id: row.get(2).db()?,
        name: row.get(3).db()?,
        kind: row.get(4).db()?,
        status: step_status(&row.get::<_, String>(5).db()?)?,
        attempts: row.get(6).db()?,
        exit_code: row.get(7).db()?,
        started_at: row.get(8).db()?,
        finished_at: row.get(9).db()?,
        error: row.get(10).db()?,
        outputs: parse_json(&row.get::<_, String>(11).db()?, "step outputs")?,
        rendered: row.get(12).db()?,
        wait_deadline: row.get(13).db()?,
        rollback_status: opt_step_status(row.get(14).db()?)?,
        rollback_exit_code: row.get(15).db()?,
        rollback_error: row.get(16).db()?,
        wait_kind: row.get::<_, Option<String>>(17).db()?.as_deref().and_then(WaitKind::parse),
        overridden_by: row.get(18).db()?,
        targets: opsbook_store::codec::parse_targets(row.get(19).db()?)?,
    })
}

/// Collects rows through a fallible mapper (rusqlite's own mapper can only fail with its error type).
pub(crate) fn collect<T>(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    f: impl Fn(&Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut rows = stmt.query(params).db()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().db()? {
        out.push(f(row)?);
    }
    Ok(out)
}

pub(crate) fn insert_step(conn: &Connection, s: &StepRecord) -> Result<()> {
    let outputs = json_text(&s.outputs);
    conn.prepare_cached(&format!(
        "INSERT INTO execution_steps ({STEP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .db()?
    .execute(params![
        s.execution_id,
        s.idx,
        s.step_id,
        s.name,
        s.kind,
        s.status.as_str(),
        s.attempts,
        s.exit_code,
        s.started_at,
        s.finished_at,
        s.error,
        outputs,
        s.rendered,
        s.wait_deadline,
        s.rollback_status.map(StepStatus::as_str),
        s.rollback_exit_code,
        s.rollback_error,
        wait_kind(s),
        s.overridden_by,
        opsbook_store::codec::targets_text(&s.targets),
    ])
    .db()?;
    Ok(())
}

/// What a step waits for, stored only while it waits.
pub(crate) fn wait_kind(s: &StepRecord) -> Option<&'static str> {
    s.wait_kind.filter(|_| s.status == StepStatus::Waiting).map(WaitKind::as_str)
}

/// Writes a step's state; with a `fence`, only while its execution is held by that owner
/// (checked by the same statement, so nothing can take the claim in between).
pub(crate) fn update_step(conn: &Connection, s: &StepRecord, fence: Option<&str>) -> Result<()> {
    let outputs = json_text(&s.outputs);
    let done = conn
        .prepare_cached(
            "UPDATE execution_steps SET status = ?, attempts = ?, exit_code = ?, started_at = ?, finished_at = ?, \
             error = ?, outputs = ?, rendered = ?, wait_deadline = ?, rollback_status = ?, rollback_exit_code = ?, \
             rollback_error = ?, wait_kind = ?, overridden_by = ?, targets = ? WHERE execution_id = ?16 AND idx = ?17 \
             AND (?18 IS NULL OR EXISTS (SELECT 1 FROM executions WHERE id = ?16 AND owner = ?18))",
        )
        .db()?
        .execute(params![
            s.status.as_str(),
            s.attempts,
            s.exit_code,
            s.started_at,
            s.finished_at,
            s.error,
            outputs,
            s.rendered,
            s.wait_deadline,
            s.rollback_status.map(StepStatus::as_str),
            s.rollback_exit_code,
            s.rollback_error,
            wait_kind(s),
            s.overridden_by,
            opsbook_store::codec::targets_text(&s.targets),
            s.execution_id,
            s.idx,
            fence,
        ])
        .db()?;
    if done == 0 {
        crate::store::check_fence(conn, &s.execution_id, fence)?;
        return Err(Error::NotFound(format!("step {} of execution {}", s.step_id, s.execution_id)));
    }
    Ok(())
}

/// Inserts an execution and its steps (inside the caller's transaction).
pub(crate) fn insert_execution(tx: &rusqlite::Transaction<'_>, e: &Execution, steps: &[StepRecord]) -> Result<()> {
    tx.prepare_cached(&format!(
        "INSERT INTO executions ({EXECUTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )).db()?
    .execute(params![
        e.id,
        e.runbook_name,
        e.runbook_version,
        e.runbook_sha256,
        e.source_path,
        e.base_dir,
        e.status.as_str(),
        e.actor,
        json_text(&e.params),
        json_text(&e.secret_digests),
        e.created_at,
        e.started_at,
        e.finished_at,
        e.error,
        e.current_step,
        e.rollback_status.map(StepStatus::as_str),
        e.owner,
        e.lease_expires_at,
        e.heartbeat_at,
        i64::from(e.cancel_requested),
        e.parent_id,
        e.parent_step,
    ]).db()?;
    for s in steps {
        insert_step(tx, s)?;
    }
    Ok(())
}
