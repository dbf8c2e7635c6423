//! The engine's tables: runbook texts, executions, steps, attempts, logs, approvals
//! and claims.

use opsbook_core::ExecStatus;
use opsbook_store::{
    Approval, Attempt, Error, Execution, ExecutionFilter, Feedback, Head, LogLine, LogQuery, Result, RunbookVersion,
    StepRecord, Store, Stream, codec, now_ms,
};
use sqlx::QueryBuilder;

use crate::rows::{
    STEP_COLUMNS, check_fence, col, execution_columns, execution_from, insert_execution, map_rows, phase, push_attempt,
    push_execution_update, push_step_update, step_columns, step_from, step_status,
};
use crate::{Db, PgStore, is_unique_violation};

impl Store for PgStore {
    async fn save_runbook(&self, rb: &RunbookVersion) -> Result<()> {
        sqlx::query(
            "INSERT INTO runbook_versions (sha256, name, version, content, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(&rb.sha256)
        .bind(&rb.name)
        .bind(&rb.version)
        .bind(&rb.content)
        .bind(rb.created_at)
        .execute(self.pool())
        .await
        .db()?;
        Ok(())
    }

    async fn runbook(&self, sha256: &str) -> Result<RunbookVersion> {
        let row =
            sqlx::query("SELECT sha256, name, version, content, created_at FROM runbook_versions WHERE sha256 = $1")
                .bind(sha256)
                .fetch_optional(self.pool())
                .await
                .db()?
                .ok_or_else(|| Error::NotFound(format!("runbook version {sha256}")))?;
        Ok(RunbookVersion {
            sha256: col(&row, 0)?,
            name: col(&row, 1)?,
            version: col(&row, 2)?,
            content: col(&row, 3)?,
            created_at: col(&row, 4)?,
        })
    }

    async fn create_execution(&self, e: &Execution, steps: &[StepRecord]) -> Result<()> {
        insert_execution(self.pool(), e, steps, None, None).await?;
        Ok(())
    }

    async fn update_execution(&self, e: &Execution, fence: Option<&str>) -> Result<()> {
        // The row lock this takes (and PostgreSQL's recheck of the condition after waiting
        // for a concurrent writer) makes the owner test and the write one step.
        let mut q = QueryBuilder::new("");
        push_execution_update(&mut q, e, fence);
        if q.build().execute(self.pool()).await.db()?.rows_affected() == 0 {
            check_fence(self.pool(), &e.id, fence).await?;
            return Err(Error::NotFound(format!("execution {}", e.id)));
        }
        if e.status == ExecStatus::Queued {
            crate::announce_queued(self.pool()).await?;
        }
        Ok(())
    }

    async fn update_step(&self, s: &StepRecord, fence: Option<&str>) -> Result<()> {
        let mut q = QueryBuilder::new("");
        push_step_update(&mut q, s);
        q.push(" AND (").push_bind(fence).push("::text IS NULL OR EXISTS (SELECT 1 FROM executions WHERE id = ");
        q.push_bind(&s.execution_id).push(" AND owner = ").push_bind(fence).push(" FOR SHARE))");
        if q.build().execute(self.pool()).await.db()?.rows_affected() == 0 {
            check_fence(self.pool(), &s.execution_id, fence).await?;
            return Err(Error::NotFound(format!("step {} of execution {}", s.step_id, s.execution_id)));
        }
        Ok(())
    }

    async fn record_attempt(&self, a: &Attempt, steps: &[&StepRecord], fence: Option<&str>) -> Result<()> {
        // One statement, so one round trip and atomic: `f` share-locks the execution's row
        // while it is held by `fence` (no claim passes until the commit), and the attempt
        // and the steps are written only then; a step that is not there aborts it all.
        let mut q: QueryBuilder<sqlx::Postgres> = QueryBuilder::new("WITH f AS (SELECT 1 FROM executions WHERE id = ");
        q.push_bind(&a.execution_id).push(" AND (");
        q.push_bind(fence).push("::text IS NULL OR owner = ").push_bind(fence).push(") FOR SHARE)");
        push_attempt(&mut q, a, steps, "f");
        let row = q.build().fetch_one(self.pool()).await.db()?;
        if col::<i64>(&row, 0)? == 0 {
            check_fence(self.pool(), &a.execution_id, fence).await?;
            return Err(Error::NotFound(format!("execution {}", a.execution_id)));
        }
        Ok(())
    }

    async fn finish_execution(
        &self,
        e: &Execution,
        last: Option<(&Attempt, &[&StepRecord])>,
        fence: Option<&str>,
    ) -> Result<()> {
        let Some((a, steps)) = last else { return self.update_execution(e, fence).await };
        // One statement: the execution's write (its row lock is the fence, as in
        // `update_execution`), then the attempt and its steps only if it was written.
        let mut q: QueryBuilder<sqlx::Postgres> = QueryBuilder::new("WITH x AS (");
        push_execution_update(&mut q, e, fence);
        q.push(" RETURNING 1)");
        push_attempt(&mut q, a, steps, "x");
        let row = q.build().fetch_one(self.pool()).await.db()?;
        if col::<i64>(&row, 0)? == 0 {
            check_fence(self.pool(), &e.id, fence).await?;
            return Err(Error::NotFound(format!("execution {}", e.id)));
        }
        if e.status == ExecStatus::Queued {
            crate::announce_queued(self.pool()).await?;
        }
        Ok(())
    }

    async fn append_logs(&self, lines: &[LogLine], fence: Option<&str>) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        // A statement per chunk of lines (a round trip per line would bound a chatty
        // step; PostgreSQL takes at most 65,535 parameters, 8 a line), all in one commit.
        // With a fence, the execution's row is share-locked while `fence` holds it, as a
        // step write does (no claim passes until the commit), and the lines go in only then.
        let mut tx = self.pool().begin().await.db()?;
        if let Some(fence) = fence {
            let mut ids: Vec<&str> = lines.iter().map(|l| l.execution_id.as_str()).collect();
            ids.dedup();
            for id in ids {
                let held: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM executions WHERE id = $1 AND owner = $2 FOR SHARE")
                        .bind(id)
                        .bind(fence)
                        .fetch_optional(&mut *tx)
                        .await
                        .db()?;
                if held.is_none() {
                    check_fence(&mut *tx, id, Some(fence)).await?;
                    return Err(Error::NotFound(format!("execution {id}")));
                }
            }
        }
        for chunk in lines.chunks(4096) {
            let mut q = QueryBuilder::new(
                "INSERT INTO execution_logs (execution_id, seq, step_id, phase, attempt, stream, ts, line) ",
            );
            q.push_values(chunk, |mut b, l| {
                b.push_bind(&l.execution_id)
                    .push_bind(l.seq)
                    .push_bind(&l.step_id)
                    .push_bind(l.phase.as_str())
                    .push_bind(l.attempt)
                    .push_bind(l.stream.as_str())
                    .push_bind(l.ts)
                    .push_bind(&l.line);
            });
            // A retry after a commit whose answer was lost adds nothing twice.
            q.push(" ON CONFLICT (execution_id, seq) DO NOTHING");
            q.build().execute(&mut *tx).await.db()?;
        }
        tx.commit().await.db()
    }

    async fn execution(&self, id: &str) -> Result<Execution> {
        let exact = sqlx::query(concat!("SELECT ", execution_columns!(), " FROM executions WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .db()?;
        if let Some(row) = exact {
            return execution_from(&row);
        }
        if id.len() < 4 && id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::NotFound(format!("execution `{id}` (a shortened id needs 4 or more characters)")));
        }
        if !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::NotFound(format!("execution `{id}`")));
        }
        // A range on the primary key (ids compare byte by byte; `~` sorts after every
        // letter and digit).
        let found = sqlx::query(concat!(
            "SELECT ",
            execution_columns!(),
            " FROM executions WHERE id >= $1 AND id < $1 || '~' ORDER BY id LIMIT $2"
        ))
        .bind(id)
        .bind(opsbook_store::AMBIGUOUS_SHOWN as i64)
        .fetch_all(self.pool())
        .await
        .db()?;
        match found.len() {
            1 => execution_from(&found[0]),
            0 => Err(Error::NotFound(format!("execution `{id}`"))),
            _ => {
                let matches = found.iter().map(execution_from).map(|e| e.map(|e| e.id)).collect::<Result<_>>()?;
                Err(Error::Ambiguous { prefix: id.to_string(), matches })
            }
        }
    }

    async fn steps(&self, execution_id: &str) -> Result<Vec<StepRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            step_columns!(),
            " FROM execution_steps WHERE execution_id = $1 ORDER BY idx"
        ))
        .bind(execution_id)
        .fetch_all(self.pool())
        .await
        .db()?;
        map_rows(&rows, step_from)
    }

    async fn attempts(&self, execution_id: &str) -> Result<Vec<Attempt>> {
        let rows = sqlx::query(
            "SELECT execution_id, step_id, phase, attempt, status, exit_code, started_at, finished_at, error \
             FROM step_attempts WHERE execution_id = $1 ORDER BY started_at, id",
        )
        .bind(execution_id)
        .fetch_all(self.pool())
        .await
        .db()?;
        map_rows(&rows, |row| {
            Ok(Attempt {
                execution_id: col(row, 0)?,
                step_id: col(row, 1)?,
                phase: phase(col(row, 2)?)?,
                attempt: col(row, 3)?,
                status: step_status(col(row, 4)?)?,
                exit_code: col(row, 5)?,
                started_at: col(row, 6)?,
                finished_at: col(row, 7)?,
                error: col(row, 8)?,
            })
        })
    }

    async fn executions(&self, f: &ExecutionFilter) -> Result<Vec<Execution>> {
        let mut q = QueryBuilder::new(concat!("SELECT ", execution_columns!(), " FROM executions WHERE TRUE"));
        if let Some(r) = &f.runbook {
            q.push(" AND runbook_name = ").push_bind(r);
        }
        if let Some(s) = f.status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(a) = &f.actor {
            q.push(" AND actor = ").push_bind(a);
        }
        if let Some(p) = &f.parent {
            q.push(" AND parent_id = ").push_bind(p);
        }
        if let Some(t) = f.since {
            q.push(" AND created_at >= ").push_bind(t);
        }
        if let Some((t, id)) = &f.before {
            // A row value, so the planner walks the (created_at, id) index from the cursor.
            q.push(" AND (created_at, id) < (").push_bind(*t).push(", ").push_bind(id).push(")");
        }
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(if f.limit > 0 { f.limit } else { 20 });
        let rows = q.build().fetch_all(self.pool()).await.db()?;
        map_rows(&rows, execution_from)
    }

    async fn logs(&self, q: &LogQuery) -> Result<Vec<LogLine>> {
        let rows = sqlx::query(
            "SELECT execution_id, seq, step_id, phase, attempt, stream, ts, line FROM execution_logs \
             WHERE execution_id = $1 AND seq > $2 AND ($3::text IS NULL OR step_id = $3) ORDER BY seq LIMIT $4",
        )
        .bind(&q.execution_id)
        .bind(q.after_seq)
        .bind(&q.step_id)
        .bind(if q.limit > 0 { q.limit } else { i64::MAX })
        .fetch_all(self.pool())
        .await
        .db()?;
        map_rows(&rows, |row| {
            let stream: &str = col(row, 5)?;
            Ok(LogLine {
                execution_id: col(row, 0)?,
                seq: col(row, 1)?,
                step_id: col(row, 2)?,
                phase: phase(col(row, 3)?)?,
                attempt: col(row, 4)?,
                stream: Stream::parse(stream).ok_or_else(|| Error::Corrupt(format!("unknown stream `{stream}`")))?,
                ts: col(row, 6)?,
                line: col(row, 7)?,
            })
        })
    }

    async fn steps_and_last_seq(&self, execution_id: &str) -> Result<(Vec<StepRecord>, i64)> {
        // The last sequence number rides on every step row: one round trip.
        let rows = sqlx::query(concat!(
            "SELECT ",
            step_columns!(),
            ", (SELECT MAX(seq) FROM execution_logs WHERE execution_id = $1) \
             FROM execution_steps WHERE execution_id = $1 ORDER BY idx"
        ))
        .bind(execution_id)
        .fetch_all(self.pool())
        .await
        .db()?;
        let steps = map_rows(&rows, step_from)?;
        let last = match rows.first() {
            Some(row) => col::<Option<i64>>(row, STEP_COLUMNS)?,
            None => self.last_log_seq(execution_id).await.map(Some)?,
        };
        Ok((steps, last.unwrap_or(0)))
    }

    async fn last_log_seq(&self, execution_id: &str) -> Result<i64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM execution_logs WHERE execution_id = $1")
            .bind(execution_id)
            .fetch_one(self.pool())
            .await
            .db()?;
        Ok(seq.unwrap_or(0))
    }

    async fn heads(&self, ids: &[String]) -> Result<Vec<Head>> {
        let rows = sqlx::query(
            "SELECT id, status, (SELECT MAX(seq) FROM execution_logs l WHERE l.execution_id = e.id) \
             FROM executions e WHERE id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(self.pool())
        .await
        .db()?;
        map_rows(&rows, |row| {
            Ok(Head { id: col(row, 0)?, status: col(row, 1)?, last_seq: col::<Option<i64>>(row, 2)?.unwrap_or(0) })
        })
    }

    async fn add_approval(&self, a: &Approval) -> Result<()> {
        let res = sqlx::query(
            "INSERT INTO approvals (execution_id, step_id, phase, approver, decision, comment, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&a.execution_id)
        .bind(&a.step_id)
        .bind(a.phase.as_str())
        .bind(&a.approver)
        .bind(a.decision())
        .bind(&a.comment)
        .bind(a.created_at)
        .execute(self.pool())
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::Conflict(codec::decided_twice(a))),
            Err(e) => Err(crate::classify(e)),
        }
    }

    async fn approvals(&self, execution_id: &str) -> Result<Vec<Approval>> {
        let rows = sqlx::query(
            "SELECT execution_id, step_id, approver, decision, comment, created_at, phase FROM approvals \
             WHERE execution_id = $1 ORDER BY created_at, approver",
        )
        .bind(execution_id)
        .fetch_all(self.pool())
        .await
        .db()?;
        map_rows(&rows, |row| {
            let (approved, manual) = codec::decision(col(row, 3)?)?;
            Ok(Approval {
                execution_id: col(row, 0)?,
                step_id: col(row, 1)?,
                phase: phase(col(row, 6)?)?,
                approver: col(row, 2)?,
                approved,
                manual,
                comment: col(row, 4)?,
                created_at: col(row, 5)?,
            })
        })
    }

    async fn add_feedback(&self, f: &Feedback) -> Result<()> {
        crate::quality::add_feedback(self, f).await
    }

    async fn feedback(&self, execution_id: &str) -> Result<Vec<Feedback>> {
        crate::quality::feedback(self, execution_id).await
    }

    async fn heartbeat(&self, execution_id: &str, owner: &str, lease_ms: i64) -> Result<bool> {
        let now = now_ms();
        let cancel: Option<bool> = sqlx::query_scalar(
            "UPDATE executions SET heartbeat_at = $1, lease_expires_at = $2 WHERE id = $3 AND owner = $4 \
             RETURNING cancel_requested",
        )
        .bind(now)
        .bind(now + lease_ms)
        .bind(execution_id)
        .bind(owner)
        .fetch_optional(self.pool())
        .await
        .db()?;
        cancel.ok_or_else(|| Error::Conflict(format!("execution {execution_id} is no longer owned by {owner}")))
    }

    async fn request_cancel(&self, execution_id: &str) -> Result<()> {
        sqlx::query("UPDATE executions SET cancel_requested = TRUE WHERE id = $1")
            .bind(execution_id)
            .execute(self.pool())
            .await
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
        let row = sqlx::query(concat!(
            "UPDATE executions SET owner = $1, lease_expires_at = $2, heartbeat_at = $3 \
             WHERE id = $4 AND status NOT IN ($6, $7) \
             AND (owner IS NULL OR owner = $1 OR owner = $5 OR lease_expires_at IS NULL OR lease_expires_at < $3) \
             RETURNING ",
            execution_columns!()
        ))
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .bind(execution_id)
        .bind(take_over_from)
        .bind(ExecStatus::Running.as_str())
        .bind(ExecStatus::Queued.as_str())
        .fetch_optional(self.pool())
        .await
        .db()?;
        row.as_ref().map(execution_from).transpose()
    }

    async fn set_process(&self, execution_id: &str, step_id: &str, process: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE execution_steps SET process = $1 WHERE execution_id = $2 AND step_id = $3")
            .bind(process)
            .bind(execution_id)
            .bind(step_id)
            .execute(self.pool())
            .await
            .db()?;
        Ok(())
    }

    async fn processes(&self, execution_id: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT step_id, process FROM execution_steps WHERE execution_id = $1 AND process IS NOT NULL ORDER BY idx",
        )
        .bind(execution_id)
        .fetch_all(self.pool())
        .await
        .db()?;
        map_rows(&rows, |r| Ok((col(r, 0)?, col(r, 1)?)))
    }

    async fn release(&self, execution_id: &str, owner: &str) -> Result<()> {
        sqlx::query("UPDATE executions SET owner = NULL, lease_expires_at = NULL WHERE id = $1 AND owner = $2")
            .bind(execution_id)
            .bind(owner)
            .execute(self.pool())
            .await
            .db()?;
        Ok(())
    }

    async fn running(&self) -> Result<Vec<Execution>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            execution_columns!(),
            " FROM executions WHERE status = $1 OR (status = $2 AND owner IS NOT NULL)"
        ))
        .bind(ExecStatus::Running.as_str())
        .bind(ExecStatus::Waiting.as_str())
        .fetch_all(self.pool())
        .await
        .db()?;
        map_rows(&rows, execution_from)
    }
}
