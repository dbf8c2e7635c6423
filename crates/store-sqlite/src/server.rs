//! The server's tables on SQLite: registry, queue, tokens, audit trail.

use opsbook_core::{ExecStatus, StepStatus};
use rusqlite::{OptionalExtension, Row, ToSql, TransactionBehavior, params, params_from_iter};

use opsbook_store::{
    AnalyticsRow, AuditFilter, AuditRecord, Error, Execution, Feedback, LifecycleEvent, NewAudit, NotificationAttempt,
    Publish, Published, PublishedVersion, RegistryEntry, Result, Review, RunbookQuery, ScheduleRecord, SealedSecrets,
    ServerStore, StepRecord, Token, WaitKind, WebSession, audit_hash, now_ms,
};

use crate::rows::{EXECUTION_COLUMNS, collect, execution_from, insert_execution, json_text, parse_json};
use crate::{Db, SqliteStore};

fn token_from(row: &Row<'_>) -> Result<Token> {
    Ok(Token {
        id: row.get(0).db()?,
        user: row.get(1).db()?,
        roles: parse_json(&row.get::<_, String>(2).db()?, "token roles")?,
        created_at: row.get(3).db()?,
        expires_at: row.get(4).db()?,
        revoked_at: row.get(5).db()?,
        last_used_at: row.get(6).db()?,
    })
}

fn audit_from(row: &Row<'_>) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: row.get(0).db()?,
        at: row.get(1).db()?,
        actor: row.get(2).db()?,
        action: row.get(3).db()?,
        target: row.get(4).db()?,
        request_id: row.get(5).db()?,
        details: parse_json(&row.get::<_, String>(6).db()?, "audit details")?,
        prev_hash: row.get(7).db()?,
        hash: row.get(8).db()?,
    })
}

const SCHEDULE_COLUMNS: &str = "id, runbook, source, cron, timezone, params, overlap, missed, created_by, created_at, \
    next_run_at, last_run_at, last_result, roles";

fn schedule_from(row: &Row<'_>) -> Result<ScheduleRecord> {
    Ok(ScheduleRecord {
        id: row.get(0).db()?,
        runbook: row.get(1).db()?,
        source: row.get(2).db()?,
        cron: row.get(3).db()?,
        timezone: row.get(4).db()?,
        params: parse_json(&row.get::<_, String>(5).db()?, "schedule params")?,
        overlap: row.get(6).db()?,
        missed: row.get(7).db()?,
        created_by: row.get(8).db()?,
        created_at: row.get(9).db()?,
        next_run_at: row.get(10).db()?,
        last_run_at: row.get(11).db()?,
        last_result: row.get(12).db()?,
        roles: row
            .get::<_, Option<String>>(13)
            .db()?
            .map(|r| parse_json::<Vec<String>>(&r, "schedule roles"))
            .transpose()?,
    })
}

pub(crate) fn insert_schedule(conn: &rusqlite::Connection, s: &ScheduleRecord) -> Result<()> {
    conn.execute(
        &format!("INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
        params![
            s.id,
            s.runbook,
            s.source,
            s.cron,
            s.timezone,
            json_text(&s.params),
            s.overlap,
            s.missed,
            s.created_by,
            s.created_at,
            s.next_run_at,
            s.last_run_at,
            s.last_result,
            s.roles.as_ref().map(json_text)
        ],
    )
    .db()?;
    Ok(())
}

impl ServerStore for SqliteStore {
    async fn publish(&self, p: &Publish) -> Result<Published> {
        self.publish_now(p)
    }

    async fn registry(&self, q: &RunbookQuery) -> Result<Vec<RegistryEntry>> {
        self.registry_now(q)
    }

    async fn registry_entry(&self, name: &str) -> Result<RegistryEntry> {
        self.registry_entry_now(name)
    }

    async fn registry_versions(&self, name: &str) -> Result<Vec<PublishedVersion>> {
        self.registry_versions_now(name)
    }

    async fn registry_version(&self, name: &str, version: &str) -> Result<(PublishedVersion, String)> {
        self.registry_version_now(name, version)
    }

    async fn save_bundle(&self, sha256: &str, content: &[u8]) -> Result<()> {
        self.save_bundle_now(sha256, content)
    }

    async fn bundle(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        self.bundle_now(sha256)
    }

    async fn set_lifecycle(&self, e: &LifecycleEvent) -> Result<Vec<ScheduleRecord>> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
        let current: Option<String> =
            tx.query_row("SELECT status FROM runbooks WHERE name = ?", [&e.name], |r| r.get(0)).optional().db()?;
        match current {
            None => return Err(Error::NotFound(format!("runbook `{}`", e.name))),
            Some(c) if Some(&c) != e.from_status.as_ref() => {
                return Err(Error::Conflict(format!("runbook `{}` is {c}, not {:?}", e.name, e.from_status)));
            }
            Some(_) => {}
        }
        tx.execute("UPDATE runbooks SET status = ?, updated_at = ? WHERE name = ?", params![e.to_status, e.at, e.name])
            .db()?;
        tx.execute(
            "INSERT INTO lifecycle_events (name, from_status, to_status, actor, reason, at) VALUES (?, ?, ?, ?, ?, ?)",
            params![e.name, e.from_status, e.to_status, e.actor, e.reason, e.at],
        )
        .db()?;
        let mut removed = Vec::new();
        if e.to_status == opsbook_core::LifecycleStatus::Archived.as_str() {
            let mut stmt =
                tx.prepare(&format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE runbook = ? ORDER BY id")).db()?;
            removed = collect(&mut stmt, [&e.name], schedule_from)?;
            drop(stmt);
            tx.execute("DELETE FROM schedules WHERE runbook = ?", [&e.name]).db()?;
        }
        tx.commit().db()?;
        Ok(removed)
    }

    async fn lifecycle_events(&self, name: &str) -> Result<Vec<LifecycleEvent>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT name, from_status, to_status, actor, reason, at FROM lifecycle_events WHERE name = ? ORDER BY at, rowid",
        ).db()?;
        collect(&mut stmt, [name], |row| {
            Ok(LifecycleEvent {
                name: row.get(0).db()?,
                from_status: row.get(1).db()?,
                to_status: row.get(2).db()?,
                actor: row.get(3).db()?,
                reason: row.get(4).db()?,
                at: row.get(5).db()?,
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
        // One transaction: either the earlier execution with this key is returned, or the
        // new one, its key and its audit record are stored together. No window in which a
        // worker could claim an execution that is then taken back, or that is unaudited.
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
        if let Some(key) = key {
            let mut earlier = tx
                .prepare_cached(&format!(
                    "SELECT {EXECUTION_COLUMNS} FROM executions \
                     WHERE id = (SELECT execution_id FROM idempotency_keys WHERE actor = ? AND key = ?)"
                ))
                .db()?;
            if let Some(earlier) = collect(&mut earlier, [&exec.actor, key], execution_from)?.pop() {
                return opsbook_store::keyed_repeat(&earlier, exec);
            }
        }
        insert_execution(&tx, exec, steps)?;
        if let Some(key) = key {
            tx.execute(
                "INSERT INTO idempotency_keys (actor, key, execution_id, created_at) VALUES (?, ?, ?, ?)",
                params![exec.actor, key, exec.id, now_ms()],
            )
            .db()?;
        }
        append_audit_in(&tx, &NewAudit { target: exec.id.clone(), ..audit.clone() })?;
        tx.commit().db()?;
        Ok(exec.id.clone())
    }

    async fn claim_queued(&self, owner: &str, lease_ms: i64) -> Result<Option<Execution>> {
        let now = now_ms();
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "UPDATE executions SET status = ?4, owner = ?1, lease_expires_at = ?2, heartbeat_at = ?3, \
             started_at = COALESCE(started_at, ?3) \
             WHERE id = (SELECT id FROM executions INDEXED BY executions_claim WHERE status = 'queued' \
             ORDER BY COALESCE(heartbeat_at, created_at), id LIMIT 1) \
             RETURNING {EXECUTION_COLUMNS}"
            ))
            .db()?;
        let running = ExecStatus::Running.as_str();
        Ok(collect(&mut stmt, params![owner, now + lease_ms, now, running], execution_from)?.pop())
    }

    async fn claim_waiting(&self, execution_id: &str, owner: &str, lease_ms: i64) -> Result<Option<Execution>> {
        let now = now_ms();
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "UPDATE executions SET owner = ?1, lease_expires_at = ?2, heartbeat_at = ?3 \
             WHERE id = ?4 AND status = ?5 AND (owner IS NULL OR lease_expires_at < ?3) \
             RETURNING {EXECUTION_COLUMNS}"
            ))
            .db()?;
        let args = params![owner, now + lease_ms, now, execution_id, ExecStatus::Waiting.as_str()];
        Ok(collect(&mut stmt, args, execution_from)?.pop())
    }

    async fn requeue(&self, execution_id: &str) -> Result<bool> {
        let n = self
            .conn()?
            .execute(
                "UPDATE executions SET status = ?3, owner = NULL, lease_expires_at = NULL \
             WHERE id = ?1 AND status = ?4 AND (owner IS NULL OR lease_expires_at < ?2)",
                params![execution_id, now_ms(), ExecStatus::Queued.as_str(), ExecStatus::Waiting.as_str()],
            )
            .db()?;
        Ok(n == 1)
    }

    async fn cancel_unstarted(&self, execution_id: &str, at: i64, error: &str) -> Result<bool> {
        let n = self
            .conn()?
            .prepare_cached(
                "UPDATE executions SET status = ?2, finished_at = ?3, error = ?4 \
                 WHERE id = ?1 AND status = ?5 AND owner IS NULL AND NOT EXISTS \
                 (SELECT 1 FROM execution_steps WHERE execution_id = ?1 AND status <> ?6)",
            )
            .db()?
            .execute(params![
                execution_id,
                ExecStatus::Cancelled.as_str(),
                at,
                error,
                ExecStatus::Queued.as_str(),
                StepStatus::Pending.as_str()
            ])
            .db()?;
        Ok(n == 1)
    }

    async fn count_queued(&self) -> Result<i64> {
        self.reader()?
            .prepare_cached("SELECT COUNT(*) FROM executions WHERE status = ?")
            .db()?
            .query_row([ExecStatus::Queued.as_str()], |r| r.get(0))
            .db()
    }

    async fn ping(&self) -> Result<()> {
        self.reader()?.query_row("SELECT 1", [], |_| Ok(())).db()
    }

    async fn count_by_status(&self) -> Result<Vec<(String, i64)>> {
        let conn = self.reader()?;
        let mut stmt =
            conn.prepare_cached("SELECT status, COUNT(*) FROM executions GROUP BY status ORDER BY status").db()?;
        collect(&mut stmt, [], |row| Ok((row.get(0).db()?, row.get(1).db()?)))
    }

    async fn count_waiting(&self) -> Result<(i64, i64)> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached(
                // A gate poll leaves the execution `waiting`, so polled waits count too.
                "SELECT COALESCE(SUM(s.wait_kind IN (?3, ?5)), 0), COALESCE(SUM(s.wait_kind = ?4), 0) \
             FROM executions e JOIN execution_steps s ON s.execution_id = e.id \
             WHERE e.status = ?1 AND s.status = ?2",
            )
            .db()?;
        let args = params![
            ExecStatus::Waiting.as_str(),
            StepStatus::Waiting.as_str(),
            WaitKind::Approval.as_str(),
            WaitKind::Gate.as_str(),
            WaitKind::Manual.as_str()
        ];
        stmt.query_row(args, |row| Ok((row.get(0)?, row.get(1)?))).db()
    }

    async fn expired_waits(&self, now: i64) -> Result<Vec<(String, bool)>> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached(
                // Due (or asked to cancel), not held by anyone; the longest overdue first, so
                // a busy gate pool gets to every one in turn.
                "SELECT e.id, MAX(s.wait_kind = ?4) FROM executions e JOIN execution_steps s ON s.execution_id = e.id \
             WHERE e.status = ?2 AND s.status = ?3 \
             AND (s.wait_deadline < ?1 OR e.cancel_requested = 1) \
             AND (e.owner IS NULL OR e.lease_expires_at < ?1) \
             GROUP BY e.id ORDER BY MIN(COALESCE(s.wait_deadline, 0))",
            )
            .db()?;
        let args = params![now, ExecStatus::Waiting.as_str(), StepStatus::Waiting.as_str(), WaitKind::Gate.as_str()];
        collect(&mut stmt, args, |row| Ok((row.get(0).db()?, row.get(1).db()?)))
    }

    async fn create_schedule(&self, s: &ScheduleRecord) -> Result<()> {
        let conn = self.conn()?;
        insert_schedule(&conn, s)
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>> {
        let conn = self.reader()?;
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY runbook, id")).db()?;
        collect(&mut stmt, [], schedule_from)
    }

    async fn delete_schedule(&self, id: &str) -> Result<()> {
        let n = self.conn()?.execute("DELETE FROM schedules WHERE id = ? AND source = 'api'", [id]).db()?;
        if n == 0 {
            return Err(Error::NotFound(format!(
                "schedule `{id}` (a runbook's own schedules change with the runbook)"
            )));
        }
        Ok(())
    }

    async fn due_schedules(&self, now: i64) -> Result<Vec<ScheduleRecord>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE next_run_at IS NOT NULL AND next_run_at <= ? ORDER BY next_run_at"
        )).db()?;
        collect(&mut stmt, [now], schedule_from)
    }

    async fn schedule_ran(&self, id: &str, ran_at: i64, next: Option<i64>, result: &str) -> Result<()> {
        self.conn()?
            .execute(
                "UPDATE schedules SET last_run_at = ?, next_run_at = ?, last_result = ? WHERE id = ?",
                params![ran_at, next, result, id],
            )
            .db()?;
        Ok(())
    }

    async fn has_active_execution(&self, actor: &str) -> Result<bool> {
        let n: i64 = self
            .reader()?
            .query_row(
                "SELECT COUNT(*) FROM executions WHERE actor = ? AND status IN (?, ?, ?)",
                [actor, ExecStatus::Queued.as_str(), ExecStatus::Running.as_str(), ExecStatus::Waiting.as_str()],
                |r| r.get(0),
            )
            .db()?;
        Ok(n > 0)
    }

    async fn analytics_rows(&self, since: i64, runbook: Option<&str>) -> Result<Vec<AnalyticsRow>> {
        let conn = self.reader()?;
        // Two statements, so that one runbook's rows come through its index.
        let columns = "SELECT runbook_name, status, actor, created_at, started_at, finished_at, rollback_status \
                       FROM executions WHERE created_at >= ?1";
        let (sql, args): (String, Vec<&dyn ToSql>) = match &runbook {
            Some(r) => (format!("{columns} AND runbook_name = ?2"), vec![&since, r]),
            None => (format!("{columns} ORDER BY runbook_name"), vec![&since]),
        };
        let mut stmt = conn.prepare_cached(&sql).db()?;
        collect(&mut stmt, args.as_slice(), |row| {
            Ok(AnalyticsRow {
                runbook: row.get(0).db()?,
                status: row.get(1).db()?,
                actor: row.get(2).db()?,
                created_at: row.get(3).db()?,
                started_at: row.get(4).db()?,
                finished_at: row.get(5).db()?,
                rolled_back: row.get::<_, Option<String>>(6).db()?.is_some(),
            })
        })
    }

    async fn add_review(&self, r: &Review) -> Result<()> {
        crate::quality::add_review(self, r)
    }

    async fn reviews(&self, name: Option<&str>) -> Result<Vec<Review>> {
        crate::quality::reviews(self, name)
    }

    async fn feedback_since(&self, since: i64, runbook: Option<&str>) -> Result<Vec<(String, Feedback)>> {
        crate::quality::feedback_since(self, since, runbook)
    }

    async fn record_notification(&self, a: &NotificationAttempt) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO notification_attempts (delivery_id, execution_id, event, rule, attempt, status_code, error, at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            params![a.delivery_id, a.execution_id, a.event, a.rule, a.attempt, a.status_code, a.error, a.at],
        ).db()?;
        Ok(())
    }

    async fn notifications(&self, execution_id: &str) -> Result<Vec<NotificationAttempt>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT delivery_id, execution_id, event, rule, attempt, status_code, error, at FROM notification_attempts \
             WHERE execution_id = ? ORDER BY id",
        ).db()?;
        collect(&mut stmt, [execution_id], |row| {
            Ok(NotificationAttempt {
                delivery_id: row.get(0).db()?,
                execution_id: row.get(1).db()?,
                event: row.get(2).db()?,
                rule: row.get(3).db()?,
                attempt: row.get(4).db()?,
                status_code: row.get(5).db()?,
                error: row.get(6).db()?,
                at: row.get(7).db()?,
            })
        })
    }

    async fn create_token(&self, t: &Token, hash: &str) -> Result<()> {
        self.conn()?
            .execute(
                "INSERT INTO api_tokens (id, hash, user_name, roles, created_at, expires_at, revoked_at, last_used_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                params![
                    t.id,
                    hash,
                    t.user,
                    json_text(&t.roles),
                    t.created_at,
                    t.expires_at,
                    t.revoked_at,
                    t.last_used_at
                ],
            )
            .db()?;
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<(Token, String)>> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, user_name, roles, created_at, expires_at, revoked_at, last_used_at, hash \
             FROM api_tokens WHERE id = ?",
            )
            .db()?;
        Ok(collect(&mut stmt, params![id], |row| Ok((token_from(row)?, row.get::<_, String>(7).db()?)))?.pop())
    }

    async fn token_used(&self, id: &str, at: i64) -> Result<()> {
        self.conn()?
            .prepare_cached("UPDATE api_tokens SET last_used_at = ? WHERE id = ?")
            .db()?
            .execute(params![at, id])
            .db()?;
        Ok(())
    }

    async fn tokens(&self) -> Result<Vec<Token>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, user_name, roles, created_at, expires_at, revoked_at, last_used_at FROM api_tokens ORDER BY created_at",
        ).db()?;
        collect(&mut stmt, [], token_from)
    }

    async fn revoke_token(&self, id: &str) -> Result<()> {
        let n = self
            .conn()?
            .execute("UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", params![now_ms(), id])
            .db()?;
        if n == 0 {
            return Err(Error::NotFound(format!("token `{id}`")));
        }
        Ok(())
    }

    async fn put_secrets(&self, s: &SealedSecrets) -> Result<()> {
        self.conn()?
            .execute(
                "INSERT INTO execution_secrets (execution_id, key_id, nonce, ciphertext, created_at) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (execution_id) DO UPDATE SET key_id = excluded.key_id, \
                 nonce = excluded.nonce, ciphertext = excluded.ciphertext, created_at = excluded.created_at",
                params![s.execution_id, s.key_id, s.nonce, s.ciphertext, s.created_at],
            )
            .db()?;
        Ok(())
    }

    async fn sealed_secrets(&self, execution_id: &str) -> Result<Option<SealedSecrets>> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT execution_id, key_id, nonce, ciphertext, created_at FROM execution_secrets \
                 WHERE execution_id = ?",
            )
            .db()?;
        let found = collect(&mut stmt, params![execution_id], |row| {
            Ok(SealedSecrets {
                execution_id: row.get(0).db()?,
                key_id: row.get(1).db()?,
                nonce: row.get(2).db()?,
                ciphertext: row.get(3).db()?,
                created_at: row.get(4).db()?,
            })
        })?;
        Ok(found.into_iter().next())
    }

    async fn delete_secrets(&self, execution_id: &str) -> Result<()> {
        self.conn()?.execute("DELETE FROM execution_secrets WHERE execution_id = ?", params![execution_id]).db()?;
        Ok(())
    }

    async fn secret_key_ids(&self) -> Result<Vec<String>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached("SELECT DISTINCT key_id FROM execution_secrets ORDER BY key_id").db()?;
        collect(&mut stmt, [], |row| row.get(0).db())
    }

    async fn prune_secrets(&self, before: i64) -> Result<u64> {
        let ended = [ExecStatus::Succeeded, ExecStatus::Failed, ExecStatus::Cancelled];
        let n = self
            .conn()?
            .execute(
                "DELETE FROM execution_secrets WHERE created_at < ?1 AND execution_id NOT IN \
                 (SELECT id FROM executions WHERE status NOT IN (?2, ?3, ?4))",
                params![before, ended[0].as_str(), ended[1].as_str(), ended[2].as_str()],
            )
            .db()?;
        Ok(n as u64)
    }

    async fn create_session(&self, s: &WebSession) -> Result<()> {
        self.conn()?
            .execute(
                "INSERT INTO web_sessions (hash, token_id, created_at, expires_at, ended_at) VALUES (?, ?, ?, ?, ?)",
                params![s.hash, s.token_id, s.created_at, s.expires_at, s.ended_at],
            )
            .db()?;
        Ok(())
    }

    async fn session(&self, hash: &str) -> Result<Option<WebSession>> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached("SELECT hash, token_id, created_at, expires_at, ended_at FROM web_sessions WHERE hash = ?")
            .db()?;
        let found = collect(&mut stmt, params![hash], |row| {
            Ok(WebSession {
                hash: row.get(0).db()?,
                token_id: row.get(1).db()?,
                created_at: row.get(2).db()?,
                expires_at: row.get(3).db()?,
                ended_at: row.get(4).db()?,
            })
        })?;
        Ok(found.into_iter().next())
    }

    async fn end_session(&self, hash: &str, at: i64) -> Result<()> {
        self.conn()?
            .execute("UPDATE web_sessions SET ended_at = COALESCE(ended_at, ?) WHERE hash = ?", params![at, hash])
            .db()?;
        Ok(())
    }

    async fn prune_sessions(&self, before: i64) -> Result<u64> {
        let n = self
            .conn()?
            .execute(
                "DELETE FROM web_sessions WHERE expires_at < ?1 OR (ended_at IS NOT NULL AND ended_at < ?1)",
                params![before],
            )
            .db()?;
        Ok(n as u64)
    }

    async fn append_audit(&self, r: &NewAudit) -> Result<AuditRecord> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
        let record = append_audit_in(&tx, r)?;
        tx.commit().db()?;
        Ok(record)
    }

    async fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let mut sql = String::from(
            "SELECT seq, at, actor, action, target, request_id, details, prev_hash, hash FROM audit_log WHERE seq > ?",
        );
        let mut args: Vec<Box<dyn ToSql>> = vec![Box::new(f.after_seq)];
        for (col, v) in [("actor", &f.actor), ("action", &f.action), ("target", &f.target)] {
            if let Some(v) = v {
                sql.push_str(&format!(" AND {col} = ?"));
                args.push(Box::new(v.clone()));
            }
        }
        if let Some(since) = f.since {
            sql.push_str(" AND at >= ?");
            args.push(Box::new(since));
        }
        sql.push_str(if f.newest { " ORDER BY seq DESC LIMIT ?" } else { " ORDER BY seq LIMIT ?" });
        args.push(Box::new(if f.limit > 0 { f.limit } else { 100 }));
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&sql).db()?;
        let mut records = collect(&mut stmt, params_from_iter(args.iter()), audit_from)?;
        if f.newest {
            records.reverse();
        }
        Ok(records)
    }

    async fn verify_audit(&self) -> Result<std::result::Result<i64, String>> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare(
            "SELECT seq, at, actor, action, target, request_id, details, prev_hash, hash FROM audit_log ORDER BY seq",
        ).db()?;
        let mut rows = stmt.query([]).db()?;
        let mut chain = opsbook_store::AuditChain::new();
        while let Some(row) = rows.next().db()? {
            if let Err(broken) = chain.next(audit_from(row)?) {
                return Ok(Err(broken));
            }
        }
        Ok(Ok(chain.count()))
    }
}

/// Appends `r` to the audit chain inside `tx` (an IMMEDIATE transaction: it holds the
/// write lock, so the last record read is the last there is).
fn append_audit_in(tx: &rusqlite::Transaction<'_>, r: &NewAudit) -> Result<AuditRecord> {
    let (seq, prev_hash): (i64, String) = tx
        .query_row("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()
        .db()?
        .map_or((1, String::new()), |(s, h): (i64, String)| (s + 1, h));
    let at = now_ms();
    let hash = audit_hash(&prev_hash, seq, at, r);
    let details = json_text(&r.details);
    tx.prepare_cached(
        "INSERT INTO audit_log (seq, at, actor, action, target, request_id, details, prev_hash, hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .db()?
    .execute(params![seq, at, r.actor, r.action, r.target, r.request_id, details, prev_hash, hash])
    .db()?;
    Ok(r.recorded(seq, at, prev_hash, hash))
}
