//! The server's tables on PostgreSQL: registry, queue, tokens, sessions, secrets,
//! schedules, notifications and the audit trail.

use opsbook_core::{ExecStatus, StepStatus};
use sqlx::postgres::PgRow;

use opsbook_store::{
    AnalyticsRow, AuditFilter, AuditRecord, Error, Execution, Feedback, LifecycleEvent, NewAudit, NotificationAttempt,
    Publish, Published, PublishedVersion, RegistryEntry, Result, Review, RunbookQuery, ScheduleRecord, SealedSecrets,
    ServerStore, StepRecord, Token, WaitKind, WebSession, now_ms,
};

use crate::rows::{col, execution_columns, execution_from, insert_execution, json_text, map_rows, parse_json};
use crate::{Db, PgStore};

fn token_from(row: &PgRow) -> Result<Token> {
    Ok(Token {
        id: col(row, 0)?,
        user: col(row, 1)?,
        roles: parse_json(col(row, 2)?, "token roles")?,
        created_at: col(row, 3)?,
        expires_at: col(row, 4)?,
        revoked_at: col(row, 5)?,
        last_used_at: col(row, 6)?,
    })
}

/// The columns of `schedules`, in the order [`schedule_from`] reads them.
macro_rules! schedule_columns {
    () => {
        "id, runbook, source, cron, timezone, params, overlap, missed, created_by, created_at, next_run_at, \
         last_run_at, last_result, roles"
    };
}

fn schedule_from(row: &PgRow) -> Result<ScheduleRecord> {
    Ok(ScheduleRecord {
        id: col(row, 0)?,
        runbook: col(row, 1)?,
        source: col(row, 2)?,
        cron: col(row, 3)?,
        timezone: col(row, 4)?,
        params: parse_json(col(row, 5)?, "schedule params")?,
        overlap: col(row, 6)?,
        missed: col(row, 7)?,
        created_by: col(row, 8)?,
        created_at: col(row, 9)?,
        next_run_at: col(row, 10)?,
        last_run_at: col(row, 11)?,
        last_result: col(row, 12)?,
        roles: col::<Option<&str>>(row, 13)?.map(|r| parse_json::<Vec<String>>(r, "schedule roles")).transpose()?,
    })
}

pub(crate) async fn insert_schedule<'e>(
    e: impl sqlx::Executor<'e, Database = sqlx::Postgres>,
    s: &ScheduleRecord,
) -> Result<()> {
    sqlx::query(concat!(
        "INSERT INTO schedules (",
        schedule_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ))
    .bind(&s.id)
    .bind(&s.runbook)
    .bind(&s.source)
    .bind(&s.cron)
    .bind(&s.timezone)
    .bind(json_text(&s.params))
    .bind(&s.overlap)
    .bind(&s.missed)
    .bind(&s.created_by)
    .bind(s.created_at)
    .bind(s.next_run_at)
    .bind(s.last_run_at)
    .bind(&s.last_result)
    .bind(s.roles.as_ref().map(json_text))
    .execute(e)
    .await
    .db()?;
    Ok(())
}

/// The execution an idempotency key was first used for.
async fn keyed_execution<'c>(
    c: impl sqlx::Executor<'c, Database = sqlx::Postgres>,
    actor: &str,
    key: &str,
) -> Result<Option<Execution>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        execution_columns!(),
        " FROM executions WHERE id = (SELECT execution_id FROM idempotency_keys WHERE actor = $1 AND key = $2)"
    ))
    .bind(actor)
    .bind(key)
    .fetch_optional(c)
    .await
    .db()?;
    row.as_ref().map(execution_from).transpose()
}

impl ServerStore for PgStore {
    async fn publish(&self, p: &Publish) -> Result<Published> {
        self.publish_now(p).await
    }

    async fn registry(&self, q: &RunbookQuery) -> Result<Vec<RegistryEntry>> {
        self.registry_now(q).await
    }

    async fn registry_entry(&self, name: &str) -> Result<RegistryEntry> {
        self.registry_entry_now(name).await
    }

    async fn registry_versions(&self, name: &str) -> Result<Vec<PublishedVersion>> {
        self.registry_versions_now(name).await
    }

    async fn registry_version(&self, name: &str, version: &str) -> Result<(PublishedVersion, String)> {
        self.registry_version_now(name, version).await
    }

    async fn save_bundle(&self, sha256: &str, content: &[u8]) -> Result<()> {
        self.save_bundle_now(sha256, content).await
    }

    async fn bundle(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        self.bundle_now(sha256).await
    }

    async fn set_lifecycle(&self, e: &LifecycleEvent) -> Result<Vec<ScheduleRecord>> {
        let mut tx = self.pool().begin().await.db()?;
        let current: Option<String> = sqlx::query_scalar("SELECT status FROM runbooks WHERE name = $1 FOR UPDATE")
            .bind(&e.name)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        match current {
            None => return Err(Error::NotFound(format!("runbook `{}`", e.name))),
            Some(c) if Some(&c) != e.from_status.as_ref() => {
                return Err(Error::Conflict(format!("runbook `{}` is {c}, not {:?}", e.name, e.from_status)));
            }
            Some(_) => {}
        }
        sqlx::query("UPDATE runbooks SET status = $1, updated_at = $2 WHERE name = $3")
            .bind(&e.to_status)
            .bind(e.at)
            .bind(&e.name)
            .execute(&mut *tx)
            .await
            .db()?;
        sqlx::query(
            "INSERT INTO lifecycle_events (name, from_status, to_status, actor, reason, at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&e.name)
        .bind(&e.from_status)
        .bind(&e.to_status)
        .bind(&e.actor)
        .bind(&e.reason)
        .bind(e.at)
        .execute(&mut *tx)
        .await
        .db()?;
        let mut removed = Vec::new();
        if e.to_status == opsbook_core::LifecycleStatus::Archived.as_str() {
            let rows = sqlx::query(concat!("DELETE FROM schedules WHERE runbook = $1 RETURNING ", schedule_columns!()))
                .bind(&e.name)
                .fetch_all(&mut *tx)
                .await
                .db()?;
            removed = map_rows(&rows, schedule_from)?;
            removed.sort_by(|a, b| a.id.cmp(&b.id));
        }
        tx.commit().await.db()?;
        Ok(removed)
    }

    async fn lifecycle_events(&self, name: &str) -> Result<Vec<LifecycleEvent>> {
        let rows = sqlx::query(
            "SELECT name, from_status, to_status, actor, reason, at FROM lifecycle_events WHERE name = $1 \
             ORDER BY at, id",
        )
        .bind(name)
        .fetch_all(self.pool())
        .await
        .db()?;
        map_rows(&rows, |row| {
            Ok(LifecycleEvent {
                name: col(row, 0)?,
                from_status: col(row, 1)?,
                to_status: col(row, 2)?,
                actor: col(row, 3)?,
                reason: col(row, 4)?,
                at: col(row, 5)?,
            })
        })
    }

    async fn create_execution_once(
        &self,
        exec: &Execution,
        steps: &[StepRecord],
        key: Option<&str>,
        audit: &NewAudit,
    ) -> Result<String> {
        // The key and the audit record go in with the execution, in one statement; a
        // concurrent submit with the same key waits for it, then finds the key taken and
        // returns this execution.
        let audit = NewAudit { target: exec.id.clone(), ..audit.clone() };
        if insert_execution(self.pool(), exec, steps, key, Some(&audit)).await? {
            return Ok(exec.id.clone());
        }
        let Some(key) = key else {
            return Err(Error::Conflict(format!("execution {} exists already", exec.id)));
        };
        let earlier = keyed_execution(self.pool(), &exec.actor, key)
            .await?
            .ok_or_else(|| Error::Corrupt(format!("idempotency key of {} without its execution", exec.actor)))?;
        opsbook_store::keyed_repeat(&earlier, exec)
    }

    async fn claim_queued(&self, owner: &str, lease_ms: i64) -> Result<Option<Execution>> {
        let now = now_ms();
        // SKIP LOCKED: claimers in other processes pass over a row being claimed rather
        // than queue behind it, and each takes a different execution. `queued` is written
        // out, not bound, so that the planner uses the partial queue index (migration 3).
        let row = sqlx::query(concat!(
            "UPDATE executions SET status = $4, owner = $1, lease_expires_at = $2, heartbeat_at = $3, \
             started_at = COALESCE(started_at, $3) \
             WHERE id = (SELECT id FROM executions WHERE status = 'queued' \
             ORDER BY COALESCE(heartbeat_at, created_at), id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING ",
            execution_columns!()
        ))
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .bind(ExecStatus::Running.as_str())
        .fetch_optional(self.pool())
        .await
        .db()?;
        row.as_ref().map(execution_from).transpose()
    }

    async fn claim_waiting(&self, execution_id: &str, owner: &str, lease_ms: i64) -> Result<Option<Execution>> {
        let now = now_ms();
        let row = sqlx::query(concat!(
            "UPDATE executions SET owner = $1, lease_expires_at = $2, heartbeat_at = $3 \
             WHERE id = $4 AND status = $5 AND (owner IS NULL OR lease_expires_at < $3) RETURNING ",
            execution_columns!()
        ))
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .bind(execution_id)
        .bind(ExecStatus::Waiting.as_str())
        .fetch_optional(self.pool())
        .await
        .db()?;
        row.as_ref().map(execution_from).transpose()
    }

    async fn requeue(&self, execution_id: &str) -> Result<bool> {
        let mut tx = self.pool().begin().await.db()?;
        let n = sqlx::query(
            "UPDATE executions SET status = $3, owner = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND status = $4 AND (owner IS NULL OR lease_expires_at < $2)",
        )
        .bind(execution_id)
        .bind(now_ms())
        .bind(ExecStatus::Queued.as_str())
        .bind(ExecStatus::Waiting.as_str())
        .execute(&mut *tx)
        .await
        .db()?;
        if n.rows_affected() == 1 {
            crate::announce_queued(&mut *tx).await?;
        }
        tx.commit().await.db()?;
        Ok(n.rows_affected() == 1)
    }

    async fn cancel_unstarted(&self, execution_id: &str, at: i64, error: &str) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE executions SET status = $2, finished_at = $3, error = $4 \
             WHERE id = $1 AND status = $5 AND owner IS NULL AND NOT EXISTS \
             (SELECT 1 FROM execution_steps WHERE execution_id = $1 AND status <> $6)",
        )
        .bind(execution_id)
        .bind(ExecStatus::Cancelled.as_str())
        .bind(at)
        .bind(error)
        .bind(ExecStatus::Queued.as_str())
        .bind(StepStatus::Pending.as_str())
        .execute(self.pool())
        .await
        .db()?;
        Ok(n.rows_affected() == 1)
    }

    async fn count_queued(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM executions WHERE status = $1")
            .bind(ExecStatus::Queued.as_str())
            .fetch_one(self.pool())
            .await
            .db()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(self.pool()).await.db().map(drop)
    }

    async fn count_by_status(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT status, COUNT(*) FROM executions GROUP BY status ORDER BY status")
            .fetch_all(self.pool())
            .await
            .db()?;
        map_rows(&rows, |r| Ok((col(r, 0)?, col(r, 1)?)))
    }

    async fn count_waiting(&self) -> Result<(i64, i64)> {
        // A gate poll leaves the execution `waiting`, so polled waits count too.
        let row = sqlx::query(
            "SELECT COUNT(*) FILTER (WHERE s.wait_kind IN ($3, $5)), COUNT(*) FILTER (WHERE s.wait_kind = $4) \
             FROM executions e JOIN execution_steps s ON s.execution_id = e.id \
             WHERE e.status = $1 AND s.status = $2",
        )
        .bind(ExecStatus::Waiting.as_str())
        .bind(StepStatus::Waiting.as_str())
        .bind(WaitKind::Approval.as_str())
        .bind(WaitKind::Gate.as_str())
        .bind(WaitKind::Manual.as_str())
        .fetch_one(self.pool())
        .await
        .db()?;
        Ok((col(&row, 0)?, col(&row, 1)?))
    }

    async fn expired_waits(&self, now: i64) -> Result<Vec<(String, bool)>> {
        // Due (or asked to cancel), not held by anyone; the longest overdue first, so a
        // busy gate pool gets to every one in turn.
        let rows = sqlx::query(
            "SELECT e.id, bool_or(s.wait_kind = $4) FROM executions e \
             JOIN execution_steps s ON s.execution_id = e.id \
             WHERE e.status = $2 AND s.status = $3 \
             AND (s.wait_deadline < $1 OR e.cancel_requested) \
             AND (e.owner IS NULL OR e.lease_expires_at < $1) \
             GROUP BY e.id ORDER BY MIN(COALESCE(s.wait_deadline, 0))",
        )
        .bind(now)
        .bind(ExecStatus::Waiting.as_str())
        .bind(StepStatus::Waiting.as_str())
        .bind(WaitKind::Gate.as_str())
        .fetch_all(self.pool())
        .await
        .db()?;
        map_rows(&rows, |r| Ok((col(r, 0)?, col::<Option<bool>>(r, 1)?.unwrap_or(false))))
    }

    async fn create_schedule(&self, s: &ScheduleRecord) -> Result<()> {
        insert_schedule(self.pool(), s).await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>> {
        let rows = sqlx::query(concat!("SELECT ", schedule_columns!(), " FROM schedules ORDER BY runbook, id"))
            .fetch_all(self.pool())
            .await
            .db()?;
        map_rows(&rows, schedule_from)
    }

    async fn delete_schedule(&self, id: &str) -> Result<()> {
        let n = sqlx::query("DELETE FROM schedules WHERE id = $1 AND source = 'api'")
            .bind(id)
            .execute(self.pool())
            .await
            .db()?;
        if n.rows_affected() == 0 {
            return Err(Error::NotFound(format!(
                "schedule `{id}` (a runbook's own schedules change with the runbook)"
            )));
        }
        Ok(())
    }

    async fn due_schedules(&self, now: i64) -> Result<Vec<ScheduleRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            schedule_columns!(),
            " FROM schedules WHERE next_run_at IS NOT NULL AND next_run_at <= $1 ORDER BY next_run_at"
        ))
        .bind(now)
        .fetch_all(self.pool())
        .await
        .db()?;
        map_rows(&rows, schedule_from)
    }

    async fn schedule_ran(&self, id: &str, ran_at: i64, next: Option<i64>, result: &str) -> Result<()> {
        sqlx::query("UPDATE schedules SET last_run_at = $1, next_run_at = $2, last_result = $3 WHERE id = $4")
            .bind(ran_at)
            .bind(next)
            .bind(result)
            .bind(id)
            .execute(self.pool())
            .await
            .db()?;
        Ok(())
    }

    async fn has_active_execution(&self, actor: &str) -> Result<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM executions WHERE actor = $1 AND status IN ($2, $3, $4))")
            .bind(actor)
            .bind(ExecStatus::Queued.as_str())
            .bind(ExecStatus::Running.as_str())
            .bind(ExecStatus::Waiting.as_str())
            .fetch_one(self.pool())
            .await
            .db()
    }

    async fn analytics_rows(&self, since: i64, runbook: Option<&str>) -> Result<Vec<AnalyticsRow>> {
        let rows = sqlx::query(
            "SELECT runbook_name, status, actor, created_at, started_at, finished_at, rollback_status IS NOT NULL \
             FROM executions WHERE created_at >= $1 AND ($2::text IS NULL OR runbook_name = $2) ORDER BY runbook_name",
        )
        .bind(since)
        .bind(runbook)
        .fetch_all(self.pool())
        .await
        .db()?;
        map_rows(&rows, |row| {
            Ok(AnalyticsRow {
                runbook: col(row, 0)?,
                status: col(row, 1)?,
                actor: col(row, 2)?,
                created_at: col(row, 3)?,
                started_at: col(row, 4)?,
                finished_at: col(row, 5)?,
                rolled_back: col(row, 6)?,
            })
        })
    }

    async fn add_review(&self, r: &Review) -> Result<()> {
        crate::quality::add_review(self, r).await
    }

    async fn reviews(&self, name: Option<&str>) -> Result<Vec<Review>> {
        crate::quality::reviews(self, name).await
    }

    async fn feedback_since(&self, since: i64, runbook: Option<&str>) -> Result<Vec<(String, Feedback)>> {
        crate::quality::feedback_since(self, since, runbook).await
    }

    async fn record_notification(&self, a: &NotificationAttempt) -> Result<()> {
        sqlx::query(
            "INSERT INTO notification_attempts (delivery_id, execution_id, event, rule, attempt, status_code, error, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&a.delivery_id)
        .bind(&a.execution_id)
        .bind(&a.event)
        .bind(&a.rule)
        .bind(a.attempt)
        .bind(a.status_code)
        .bind(&a.error)
        .bind(a.at)
        .execute(self.pool())
        .await
        .db()?;
        Ok(())
    }

    async fn notifications(&self, execution_id: &str) -> Result<Vec<NotificationAttempt>> {
        let rows = sqlx::query(
            "SELECT delivery_id, execution_id, event, rule, attempt, status_code, error, at FROM notification_attempts \
             WHERE execution_id = $1 ORDER BY id",
        )
        .bind(execution_id)
        .fetch_all(self.pool())
        .await
        .db()?;
        map_rows(&rows, |row| {
            Ok(NotificationAttempt {
                delivery_id: col(row, 0)?,
                execution_id: col(row, 1)?,
                event: col(row, 2)?,
                rule: col(row, 3)?,
                attempt: col(row, 4)?,
                status_code: col(row, 5)?,
                error: col(row, 6)?,
                at: col(row, 7)?,
            })
        })
    }

    async fn create_token(&self, t: &Token, hash: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, hash, user_name, roles, created_at, expires_at, revoked_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&t.id)
        .bind(hash)
        .bind(&t.user)
        .bind(json_text(&t.roles))
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(t.revoked_at)
        .bind(t.last_used_at)
        .execute(self.pool())
        .await
        .db()?;
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<(Token, String)>> {
        let row = sqlx::query(
            "SELECT id, user_name, roles, created_at, expires_at, revoked_at, last_used_at, hash \
             FROM api_tokens WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .db()?;
        row.map(|r| Ok((token_from(&r)?, col(&r, 7)?))).transpose()
    }

    async fn token_used(&self, id: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(self.pool())
            .await
            .db()?;
        Ok(())
    }

    async fn tokens(&self) -> Result<Vec<Token>> {
        let rows = sqlx::query(
            "SELECT id, user_name, roles, created_at, expires_at, revoked_at, last_used_at FROM api_tokens \
             ORDER BY created_at, id",
        )
        .fetch_all(self.pool())
        .await
        .db()?;
        map_rows(&rows, token_from)
    }

    async fn revoke_token(&self, id: &str) -> Result<()> {
        let n = sqlx::query("UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(self.pool())
            .await
            .db()?;
        if n.rows_affected() == 0 {
            return Err(Error::NotFound(format!("token `{id}`")));
        }
        Ok(())
    }

    async fn put_secrets(&self, s: &SealedSecrets) -> Result<()> {
        sqlx::query(
            "INSERT INTO execution_secrets (execution_id, key_id, nonce, ciphertext, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (execution_id) DO UPDATE SET key_id = excluded.key_id, \
             nonce = excluded.nonce, ciphertext = excluded.ciphertext, created_at = excluded.created_at",
        )
        .bind(&s.execution_id)
        .bind(&s.key_id)
        .bind(&s.nonce)
        .bind(&s.ciphertext)
        .bind(s.created_at)
        .execute(self.pool())
        .await
        .db()?;
        Ok(())
    }

    async fn sealed_secrets(&self, execution_id: &str) -> Result<Option<SealedSecrets>> {
        let row = sqlx::query(
            "SELECT execution_id, key_id, nonce, ciphertext, created_at FROM execution_secrets WHERE execution_id = $1",
        )
        .bind(execution_id)
        .fetch_optional(self.pool())
        .await
        .db()?;
        row.map(|r| {
            Ok(SealedSecrets {
                execution_id: col(&r, 0)?,
                key_id: col(&r, 1)?,
                nonce: col(&r, 2)?,
                ciphertext: col(&r, 3)?,
                created_at: col(&r, 4)?,
            })
        })
        .transpose()
    }

    async fn delete_secrets(&self, execution_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM execution_secrets WHERE execution_id = $1")
            .bind(execution_id)
            .execute(self.pool())
            .await
            .db()?;
        Ok(())
    }

    async fn secret_key_ids(&self) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT DISTINCT key_id FROM execution_secrets ORDER BY key_id")
            .fetch_all(self.pool())
            .await
            .db()
    }

    async fn prune_secrets(&self, before: i64) -> Result<u64> {
        let n = sqlx::query(
            "DELETE FROM execution_secrets s WHERE s.created_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM executions e WHERE e.id = s.execution_id AND e.status NOT IN ($2, $3, $4))",
        )
        .bind(before)
        .bind(ExecStatus::Succeeded.as_str())
        .bind(ExecStatus::Failed.as_str())
        .bind(ExecStatus::Cancelled.as_str())
        .execute(self.pool())
        .await
        .db()?;
        Ok(n.rows_affected())
    }

    async fn create_session(&self, s: &WebSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO web_sessions (hash, token_id, created_at, expires_at, ended_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&s.hash)
        .bind(&s.token_id)
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(s.ended_at)
        .execute(self.pool())
        .await
        .db()?;
        Ok(())
    }

    async fn session(&self, hash: &str) -> Result<Option<WebSession>> {
        let row =
            sqlx::query("SELECT hash, token_id, created_at, expires_at, ended_at FROM web_sessions WHERE hash = $1")
                .bind(hash)
                .fetch_optional(self.pool())
                .await
                .db()?;
        row.map(|r| {
            Ok(WebSession {
                hash: col(&r, 0)?,
                token_id: col(&r, 1)?,
                created_at: col(&r, 2)?,
                expires_at: col(&r, 3)?,
                ended_at: col(&r, 4)?,
            })
        })
        .transpose()
    }

    async fn end_session(&self, hash: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE web_sessions SET ended_at = COALESCE(ended_at, $1) WHERE hash = $2")
            .bind(at)
            .bind(hash)
            .execute(self.pool())
            .await
            .db()?;
        Ok(())
    }

    async fn prune_sessions(&self, before: i64) -> Result<u64> {
        let n =
            sqlx::query("DELETE FROM web_sessions WHERE expires_at < $1 OR (ended_at IS NOT NULL AND ended_at < $1)")
                .bind(before)
                .execute(self.pool())
                .await
                .db()?;
        Ok(n.rows_affected())
    }
    async fn append_audit(&self, r: &NewAudit) -> Result<AuditRecord> {
        self.append_audit_now(r).await
    }

    async fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
        self.audit_now(f).await
    }

    async fn verify_audit(&self) -> Result<std::result::Result<i64, String>> {
        self.verify_audit_now().await
    }
}
