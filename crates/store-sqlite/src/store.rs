//! The engine's tables: runbook texts, executions, steps, attempts, logs, approvals
//! and claims.

use opsbook_core::{ExecStatus, StepStatus};
use opsbook_store::{
    Approval, Attempt, Error, Execution, ExecutionFilter, Feedback, Head, LogLine, LogQuery, Result, RunbookVersion,
    StepRecord, Store, Stream, codec, now_ms,
};
use rusqlite::{OptionalExtension, ToSql, params, params_from_iter};

use crate::Db;
use crate::SqliteStore;
use crate::rows::{
    EXECUTION_COLUMNS, STEP_COLUMNS, collect, execution_from, insert_execution, phase, step_from, step_status,
    update_step,
};

/// Executions a statement of `heads` asks about at most.
const HEADS_CHUNK: usize = 64;
impl Store for SqliteStore {
    async fn save_runbook(&self, rb: &RunbookVersion) -> Result<()> {
        self.conn()?
            .prepare_cached(
                "INSERT INTO runbook_versions (sha256, name, version, content, created_at) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (sha256) DO NOTHING",
            )
            .db()?
            .execute(params![rb.sha256, rb.name, rb.version, rb.content, rb.created_at])
            .db()?;
        Ok(())
    }

    async fn runbook(&self, sha256: &str) -> Result<RunbookVersion> {
        self.reader()?
            .prepare_cached("SELECT sha256, name, version, content, created_at FROM runbook_versions WHERE sha256 = ?")
            .db()?
            .query_row([sha256], |r| {
                Ok(RunbookVersion {
                    sha256: r.get(0)?,
                    name: r.get(1)?,
                    version: r.get(2)?,
                    content: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })
            .optional()
            .db()?
            .ok_or_else(|| Error::NotFound(format!("runbook version {sha256}")))
    }

    async fn create_execution(&self, e: &Execution, steps: &[StepRecord]) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().db()?;
        insert_execution(&tx, e, steps)?;
        tx.commit().db()?;
        Ok(())
    }

    async fn update_execution(&self, e: &Execution, fence: Option<&str>) -> Result<()> {
        let conn = self.conn()?;
        write_execution(&conn, e, fence)
    }

    async fn update_step(&self, s: &StepRecord, fence: Option<&str>) -> Result<()> {
        let conn = self.conn()?;
        update_step(&conn, s, fence)
    }

    async fn record_attempt(&self, a: &Attempt, steps: &[&StepRecord], fence: Option<&str>) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().db()?;
        write_attempt(&tx, a, steps, fence)?;
        tx.commit().db()?;
        Ok(())
    }

    async fn finish_execution(
        &self,
        e: &Execution,
        last: Option<(&Attempt, &[&StepRecord])>,
        fence: Option<&str>,
    ) -> Result<()> {
        // One commit for the last attempt and the execution's end (a commit less per
        // execution, of the five a one-step execution makes on a server).
        let mut conn = self.conn()?;
        let tx = conn.transaction().db()?;
        if let Some((a, steps)) = last {
            write_attempt(&tx, a, steps, fence)?;
        }
        write_execution(&tx, e, fence)?;
        tx.commit().db()?;
        Ok(())
    }

    async fn append_logs(&self, lines: &[LogLine], fence: Option<&str>) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn()?;
        let tx = conn.transaction().db()?;
        if fence.is_some() {
            let mut ids: Vec<&str> = lines.iter().map(|l| l.execution_id.as_str()).collect();
            ids.dedup();
            for id in ids {
                check_fence(&tx, id, fence)?;
            }
        }
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO execution_logs (execution_id, seq, step_id, phase, attempt, stream, ts, line) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .db()?;
            for l in lines {
                stmt.execute(params![
                    l.execution_id,
                    l.seq,
                    l.step_id,
                    l.phase.as_str(),
                    l.attempt,
                    l.stream.as_str(),
                    l.ts,
                    l.line
                ])
                .db()?;
            }
        }
        tx.commit().db()?;
        Ok(())
    }

    async fn execution(&self, id: &str) -> Result<Execution> {
        let conn = self.reader()?;
        let mut exact =
            conn.prepare_cached(&format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?")).db()?;
        if let Some(e) = collect(&mut exact, [id], execution_from)?.pop() {
            return Ok(e);
        }
        if id.len() < 4 && id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::NotFound(format!("execution `{id}` (a shortened id needs 4 or more characters)")));
        }
        if !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::NotFound(format!("execution `{id}`")));
        }
        let mut prefix = conn
            .prepare_cached(&format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id LIKE ? ORDER BY id LIMIT ?"))
            .db()?;
        let shown = opsbook_store::AMBIGUOUS_SHOWN as i64;
        let mut found = collect(&mut prefix, params![format!("{id}%"), shown], execution_from)?;
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(Error::NotFound(format!("execution `{id}`"))),
            _ => Err(Error::Ambiguous { prefix: id.to_string(), matches: found.into_iter().map(|e| e.id).collect() }),
        }
    }

    async fn steps(&self, execution_id: &str) -> Result<Vec<StepRecord>> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {STEP_COLUMNS} FROM execution_steps WHERE execution_id = ? ORDER BY idx"))
            .db()?;
        collect(&mut stmt, [execution_id], step_from)
    }

    async fn attempts(&self, execution_id: &str) -> Result<Vec<Attempt>> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT execution_id, step_id, phase, attempt, status, exit_code, started_at, finished_at, error \
             FROM step_attempts WHERE execution_id = ? ORDER BY started_at, rowid",
            )
            .db()?;
        collect(&mut stmt, [execution_id], |row| {
            Ok(Attempt {
                execution_id: row.get(0).db()?,
                step_id: row.get(1).db()?,
                phase: phase(&row.get::<_, String>(2).db()?)?,
                attempt: row.get(3).db()?,
                status: step_status(&row.get::<_, String>(4).db()?)?,
                exit_code: row.get(5).db()?,
                started_at: row.get(6).db()?,
                finished_at: row.get(7).db()?,
                error: row.get(8).db()?,
            })
        })
    }

    async fn executions(&self, f: &ExecutionFilter) -> Result<Vec<Execution>> {
        let mut sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE 1 = 1");
        let mut args: Vec<Box<dyn ToSql>> = Vec::new();
        if let Some(r) = &f.runbook {
            sql.push_str(" AND runbook_name = ?");
            args.push(Box::new(r.clone()));
        }
        if let Some(s) = f.status {
            sql.push_str(" AND status = ?");
            args.push(Box::new(s.as_str()));
        }
        if let Some(a) = &f.actor {
            sql.push_str(" AND actor = ?");
            args.push(Box::new(a.clone()));
        }
        if let Some(p) = &f.parent {
            sql.push_str(" AND parent_id = ?");
            args.push(Box::new(p.clone()));
        }
        if let Some(t) = f.since {
            sql.push_str(" AND created_at >= ?");
            args.push(Box::new(t));
        }
        if let Some((t, id)) = &f.before {
            // A row value, so SQLite walks the (created_at, id) index from the cursor.
            sql.push_str(" AND (created_at, id) < (?, ?)");
            args.push(Box::new(*t));
            args.push(Box::new(id.clone()));
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
        args.push(Box::new(if f.limit > 0 { f.limit } else { 20 }));
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&sql).db()?;
        collect(&mut stmt, params_from_iter(args.iter()), execution_from)
    }

    async fn logs(&self, q: &LogQuery) -> Result<Vec<LogLine>> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT execution_id, seq, step_id, phase, attempt, stream, ts, line FROM execution_logs \
             WHERE execution_id = ? AND seq > ? AND (?3 IS NULL OR step_id = ?3) ORDER BY seq LIMIT ?4",
            )
            .db()?;
        let limit = if q.limit > 0 { q.limit } else { i64::MAX };
        collect(&mut stmt, params![q.execution_id, q.after_seq, q.step_id, limit], |row| {
            let stream: String = row.get(5).db()?;
            Ok(LogLine {
                execution_id: row.get(0).db()?,
                seq: row.get(1).db()?,
                step_id: row.get(2).db()?,
                phase: phase(&row.get::<_, String>(3).db()?)?,
                attempt: row.get(4).db()?,
                stream: Stream::parse(&stream).ok_or_else(|| Error::Corrupt(format!("unknown stream `{stream}`")))?,
                ts: row.get(6).db()?,
                line: row.get(7).db()?,
            })
        })
    }

    async fn last_log_seq(&self, execution_id: &str) -> Result<i64> {
        let seq: Option<i64> = self
            .reader()?
            .prepare_cached("SELECT MAX(seq) FROM execution_logs WHERE execution_id = ?")
            .db()?
            .query_row([execution_id], |r| r.get(0))
            .db()?;
        Ok(seq.unwrap_or(0))
    }

    async fn heads(&self, ids: &[String]) -> Result<Vec<Head>> {
        let conn = self.reader()?;
        let mut out = Vec::with_capacity(ids.len());
        // Statements of a few sizes, each prepared once: chunks of 64, the last padded
        // (a repeated id finds its row once).
        for chunk in ids.chunks(HEADS_CHUNK) {
            let size = chunk.len().next_power_of_two();
            let marks = vec!["?"; size].join(", ");
            let sql = format!(
                "SELECT id, status, (SELECT MAX(seq) FROM execution_logs l WHERE l.execution_id = e.id) \
                 FROM executions e WHERE id IN ({marks})"
            );
            let mut stmt = conn.prepare_cached(&sql).db()?;
            let padded = chunk.iter().chain(std::iter::repeat(&chunk[0])).take(size);
            out.extend(collect(&mut stmt, params_from_iter(padded), |row| {
                Ok(Head {
                    id: row.get(0).db()?,
                    status: row.get(1).db()?,
                    last_seq: row.get::<_, Option<i64>>(2).db()?.unwrap_or(0),
                })
            })?);
        }
        Ok(out)
    }

    async fn add_approval(&self, a: &Approval) -> Result<()> {
        let res = self
            .conn()?
            .prepare_cached(
                "INSERT INTO approvals (execution_id, step_id, phase, approver, decision, comment, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .db()?
            .execute(params![
                a.execution_id,
                a.step_id,
                a.phase.as_str(),
                a.approver,
                a.decision(),
                a.comment,
                a.created_at
            ]);
        match res {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(Error::Conflict(codec::decided_twice(a)))
            }
            Err(e) => Err(Error::Database(Box::new(e))),
        }
    }

    async fn approvals(&self, execution_id: &str) -> Result<Vec<Approval>> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT execution_id, step_id, approver, decision, comment, created_at, phase FROM approvals \
             WHERE execution_id = ? ORDER BY created_at",
            )
            .db()?;
        collect(&mut stmt, [execution_id], |row| {
            let (approved, manual) = codec::decision(&row.get::<_, String>(3).db()?)?;
            Ok(Approval {
                execution_id: row.get(0).db()?,
                step_id: row.get(1).db()?,
                phase: phase(&row.get::<_, String>(6).db()?)?,
                approver: row.get(2).db()?,
                approved,
                manual,
                comment: row.get(4).db()?,
                created_at: row.get(5).db()?,
            })
        })
    }

    async fn add_feedback(&self, f: &Feedback) -> Result<()> {
        crate::quality::add_feedback(self, f)
    }

    async fn feedback(&self, execution_id: &str) -> Result<Vec<Feedback>> {
        crate::quality::feedback(self, execution_id)
    }

    async fn heartbeat(&self, execution_id: &str, owner: &str, lease_ms: i64) -> Result<bool> {
        let now = now_ms();
        let cancel: Option<i64> = self
            .conn()?
            .prepare_cached(
                "UPDATE executions SET heartbeat_at = ?, lease_expires_at = ? WHERE id = ? AND owner = ? \
                 RETURNING cancel_requested",
            )
            .db()?
            .query_row(params![now, now + lease_ms, execution_id, owner], |r| r.get(0))
            .optional()
            .db()?;
        match cancel {
            Some(c) => Ok(c != 0),
            None => Err(Error::Conflict(format!("execution {execution_id} is no longer owned by {owner}"))),
        }
    }

    async fn request_cancel(&self, execution_id: &str) -> Result<()> {
        self.conn()?
            .prepare_cached("UPDATE executions SET cancel_requested = 1 WHERE id = ?")
            .db()?
            .execute([execution_id])
            .db()?;
        Ok(())
    }

    async fn claim_stopped(
        &self,
        execution_id: &str,
        owner: &str,
        lease_ms: i64,
        take_over_from: Option<&str>,
    ) -> Result<Option<Execution>> {
        let now = now_ms();
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "UPDATE executions SET owner = ?1, lease_expires_at = ?2, heartbeat_at = ?3 \
             WHERE id = ?4 AND status NOT IN (?6, ?7) \
             AND (owner IS NULL OR owner = ?1 OR owner = ?5 OR lease_expires_at IS NULL OR lease_expires_at < ?3) \
             RETURNING {EXECUTION_COLUMNS}"
            ))
            .db()?;
        let (running, queued) = (ExecStatus::Running.as_str(), ExecStatus::Queued.as_str());
        let args = params![owner, now + lease_ms, now, execution_id, take_over_from, running, queued];
        Ok(collect(&mut stmt, args, execution_from)?.pop())
    }

    async fn set_process(&self, execution_id: &str, step_id: &str, process: Option<&str>) -> Result<()> {
        self.conn()?
            .prepare_cached("UPDATE execution_steps SET process = ? WHERE execution_id = ? AND step_id = ?")
            .db()?
            .execute(params![process, execution_id, step_id])
            .db()?;
        Ok(())
    }

    async fn processes(&self, execution_id: &str) -> Result<Vec<(String, String)>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT step_id, process FROM execution_steps WHERE execution_id = ? AND process IS NOT NULL ORDER BY idx",
        ).db()?;
        collect(&mut stmt, [execution_id], |r| Ok((r.get(0).db()?, r.get(1).db()?)))
    }

    async fn release(&self, execution_id: &str, owner: &str) -> Result<()> {
        self.conn()?
            .prepare_cached("UPDATE executions SET owner = NULL, lease_expires_at = NULL WHERE id = ? AND owner = ?")
            .db()?
            .execute([execution_id, owner])
            .db()?;
        Ok(())
    }

    async fn running(&self) -> Result<Vec<Execution>> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions \
                 WHERE status = ?1 OR (status = ?2 AND owner IS NOT NULL)"
            ))
            .db()?;
        collect(&mut stmt, [ExecStatus::Running.as_str(), ExecStatus::Waiting.as_str()], execution_from)
    }
}

/// Writes an execution's state (not its actor, which is set at creation and never
/// changes: naming it in the `SET` list rewrote its index entry on every write).
fn write_execution(conn: &rusqlite::Connection, e: &Execution, fence: Option<&str>) -> Result<()> {
    let done = conn
        .prepare_cached(
            "UPDATE executions SET status = ?, started_at = ?, finished_at = ?, error = ?, current_step = ?, \
             rollback_status = ?, owner = ?, lease_expires_at = ?, heartbeat_at = ? \
             WHERE id = ?10 AND (?11 IS NULL OR owner = ?11)",
        )
        .db()?
        .execute(params![
            e.status.as_str(),
            e.started_at,
            e.finished_at,
            e.error,
            e.current_step,
            e.rollback_status.map(StepStatus::as_str),
            e.owner,
            e.lease_expires_at,
            e.heartbeat_at,
            e.id,
            fence,
        ])
        .db()?;
    if done == 0 {
        check_fence(conn, &e.id, fence)?;
        return Err(Error::NotFound(format!("execution {}", e.id)));
    }
    Ok(())
}

/// Records a finished attempt and the state of `steps`, inside the caller's transaction.
fn write_attempt(tx: &rusqlite::Connection, a: &Attempt, steps: &[&StepRecord], fence: Option<&str>) -> Result<()> {
    // The fence is checked by the first write; from there the transaction holds the
    // write lock, so no one can take the claim before the commit.
    let inserted = tx
        .prepare_cached(
            "INSERT INTO step_attempts (execution_id, step_id, phase, attempt, status, exit_code, started_at, \
             finished_at, error) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 \
             WHERE ?10 IS NULL OR EXISTS (SELECT 1 FROM executions WHERE id = ?1 AND owner = ?10)",
        )
        .db()?
        .execute(params![
            a.execution_id,
            a.step_id,
            a.phase.as_str(),
            a.attempt,
            a.status.as_str(),
            a.exit_code,
            a.started_at,
            a.finished_at,
            a.error,
            fence,
        ])
        .db()?;
    if inserted == 0 {
        check_fence(tx, &a.execution_id, fence)?;
    }
    for s in steps {
        update_step(tx, s, None)?;
    }
    Ok(())
}

/// `Error::LostClaim` unless execution `id` is held by `fence` (when there is one).
pub(crate) fn check_fence(conn: &rusqlite::Connection, id: &str, fence: Option<&str>) -> Result<()> {
    let Some(fence) = fence else { return Ok(()) };
    let holder: Option<Option<String>> = conn
        .prepare_cached("SELECT owner FROM executions WHERE id = ?")
        .db()?
        .query_row([id], |r| r.get(0))
        .optional()
        .db()?;
    match holder {
        None => Err(Error::NotFound(format!("execution {id}"))),
        Some(Some(h)) if h == fence => Ok(()),
        Some(h) => Err(Error::LostClaim(format!(
            "execution {id} is held by {}, not {fence}: this runner's claim lapsed and was taken, so it stops",
            h.as_deref().unwrap_or("no one")
        ))),
    }
}
