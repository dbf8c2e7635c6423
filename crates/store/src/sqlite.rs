//! The embedded SQLite store (WAL mode, versioned migrations).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use opsbook_core::{ExecStatus, StepStatus};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use crate::{
    Approval, Attempt, Error, Execution, ExecutionFilter, LogLine, LogQuery, Phase, Result, RunbookVersion, StepRecord,
    Store, Stream, now_ms,
};

/// Migrations, applied in order and recorded in `opsbook_migrations`. Append only.
const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/sqlite/0001_init.sql"))];

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Database(sqlx::Error::Configuration(
                    format!("cannot create directory {}: {e}", dir.display()).into(),
                ))
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a commit survives a crash of the process (kill -9); only
            // an OS crash or power loss can lose the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        let store = SqliteStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS opsbook_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        let mut tx = self.pool.begin().await?;
        let current: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM opsbook_migrations").fetch_one(&mut *tx).await?;
        let current = current.unwrap_or(0);
        if let Some((newest, _)) = MIGRATIONS.last()
            && current > *newest
        {
            return Err(Error::Corrupt(format!(
                "the database schema is version {current}, newer than this opsbook understands ({newest}); upgrade opsbook"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            sqlx::raw_sql(sqlx::AssertSqlSafe(*sql)).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO opsbook_migrations (version, applied_at) VALUES (?, ?)")
                .bind(version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn json_text(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).expect("JSON values always serialize")
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt(format!("{what}: {e}")))
}

fn exec_status(s: &str) -> Result<ExecStatus> {
    ExecStatus::parse(s).ok_or_else(|| Error::Corrupt(format!("unknown execution status `{s}`")))
}

fn step_status(s: &str) -> Result<StepStatus> {
    StepStatus::parse(s).ok_or_else(|| Error::Corrupt(format!("unknown step status `{s}`")))
}

fn opt_step_status(s: Option<String>) -> Result<Option<StepStatus>> {
    s.map(|s| step_status(&s)).transpose()
}

fn execution_from(row: &SqliteRow) -> Result<Execution> {
    Ok(Execution {
        id: row.try_get("id")?,
        runbook_name: row.try_get("runbook_name")?,
        runbook_version: row.try_get("runbook_version")?,
        runbook_sha256: row.try_get("runbook_sha256")?,
        source_path: row.try_get("source_path")?,
        base_dir: row.try_get("base_dir")?,
        status: exec_status(row.try_get("status")?)?,
        actor: row.try_get("actor")?,
        params: parse_json(row.try_get("params")?, "execution params")?,
        secret_digests: parse_json(row.try_get("secret_digests")?, "secret digests")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        error: row.try_get("error")?,
        current_step: row.try_get("current_step")?,
        rollback_status: opt_step_status(row.try_get("rollback_status")?)?,
        owner: row.try_get("owner")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        heartbeat_at: row.try_get("heartbeat_at")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
    })
}

fn step_from(row: &SqliteRow) -> Result<StepRecord> {
    Ok(StepRecord {
        execution_id: row.try_get("execution_id")?,
        idx: row.try_get("idx")?,
        step_id: row.try_get("step_id")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        status: step_status(row.try_get("status")?)?,
        attempts: row.try_get("attempts")?,
        exit_code: row.try_get("exit_code")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        error: row.try_get("error")?,
        outputs: parse_json(row.try_get("outputs")?, "step outputs")?,
        rendered: row.try_get("rendered")?,
        wait_deadline: row.try_get("wait_deadline")?,
        rollback_status: opt_step_status(row.try_get("rollback_status")?)?,
        rollback_exit_code: row.try_get("rollback_exit_code")?,
        rollback_error: row.try_get("rollback_error")?,
    })
}

const EXECUTION_COLUMNS: &str = "id, runbook_name, runbook_version, runbook_sha256, source_path, base_dir, status, \
    actor, params, secret_digests, created_at, started_at, finished_at, error, current_step, rollback_status, owner, \
    lease_expires_at, heartbeat_at, cancel_requested";

/// Inserts step rows, many per statement (a runbook can have hundreds of steps).
async fn insert_steps(tx: &mut Transaction<'_, Sqlite>, steps: &[StepRecord]) -> Result<()> {
    // 17 columns; SQLite allows 32766 parameters per statement.
    for chunk in steps.chunks(500) {
        let mut sql = String::from(
            "INSERT INTO execution_steps (execution_id, idx, step_id, name, kind, status, attempts, exit_code, \
             started_at, finished_at, error, outputs, rendered, wait_deadline, rollback_status, rollback_exit_code, \
             rollback_error) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for s in chunk {
            q = q
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
                .bind(&s.rollback_error);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

const UPDATE_STEP: &str = "UPDATE execution_steps SET status = ?, attempts = ?, exit_code = ?, started_at = ?, \
    finished_at = ?, error = ?, outputs = ?, rendered = ?, wait_deadline = ?, rollback_status = ?, \
    rollback_exit_code = ?, rollback_error = ? WHERE execution_id = ? AND idx = ?";

type Query<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>;

fn bind_step<'q>(q: Query<'q>, s: &'q StepRecord) -> Query<'q> {
    q.bind(s.status.as_str())
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
        .bind(&s.execution_id)
        .bind(s.idx)
}

impl Store for SqliteStore {
    async fn save_runbook(&self, rb: &RunbookVersion) -> Result<()> {
        sqlx::query(
            "INSERT INTO runbook_versions (sha256, name, version, content, created_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(&rb.sha256)
        .bind(&rb.name)
        .bind(&rb.version)
        .bind(&rb.content)
        .bind(rb.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn runbook(&self, sha256: &str) -> Result<RunbookVersion> {
        let row =
            sqlx::query("SELECT sha256, name, version, content, created_at FROM runbook_versions WHERE sha256 = ?")
                .bind(sha256)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| Error::NotFound(format!("runbook version {sha256}")))?;
        Ok(RunbookVersion {
            sha256: row.try_get("sha256")?,
            name: row.try_get("name")?,
            version: row.try_get("version")?,
            content: row.try_get("content")?,
            created_at: row.try_get("created_at")?,
        })
    }

    async fn create_execution(&self, e: &Execution, steps: &[StepRecord]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO executions ({EXECUTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )))
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
        .bind(i64::from(e.cancel_requested))
        .execute(&mut *tx)
        .await?;
        insert_steps(&mut tx, steps).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_execution(&self, e: &Execution) -> Result<()> {
        let done = sqlx::query(
            "UPDATE executions SET status = ?, started_at = ?, finished_at = ?, error = ?, current_step = ?, \
             rollback_status = ?, owner = ?, lease_expires_at = ?, heartbeat_at = ?, actor = ? WHERE id = ?",
        )
        .bind(e.status.as_str())
        .bind(e.started_at)
        .bind(e.finished_at)
        .bind(&e.error)
        .bind(e.current_step)
        .bind(e.rollback_status.map(StepStatus::as_str))
        .bind(&e.owner)
        .bind(e.lease_expires_at)
        .bind(e.heartbeat_at)
        .bind(&e.actor)
        .bind(&e.id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("execution {}", e.id)));
        }
        Ok(())
    }

    async fn update_step(&self, s: &StepRecord) -> Result<()> {
        let done = bind_step(sqlx::query(UPDATE_STEP), s).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("step {} of execution {}", s.step_id, s.execution_id)));
        }
        Ok(())
    }

    async fn record_attempt(&self, a: &Attempt, steps: &[&StepRecord]) -> Result<()> {
        // One round trip to SQLite's worker thread for the whole transaction: this runs
        // once per attempt, so it is on the hot path of every step.
        let mut sql = String::from(
            "BEGIN; INSERT INTO step_attempts (execution_id, step_id, phase, attempt, status, exit_code, started_at, \
             finished_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?);",
        );
        for _ in steps {
            sql.push_str(UPDATE_STEP);
            sql.push(';');
        }
        sql.push_str(" COMMIT;");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&a.execution_id)
            .bind(&a.step_id)
            .bind(a.phase.as_str())
            .bind(a.attempt)
            .bind(a.status.as_str())
            .bind(a.exit_code)
            .bind(a.started_at)
            .bind(a.finished_at)
            .bind(&a.error);
        for s in steps {
            q = bind_step(q, s);
        }
        let mut conn = self.pool.acquire().await?;
        if let Err(e) = q.execute(&mut *conn).await {
            // Leave the connection clean for the pool whatever statement failed.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            return Err(e.into());
        }
        Ok(())
    }

    async fn append_logs(&self, lines: &[LogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        // Multi-row inserts: one statement per 100 lines keeps a 50 MB log fast.
        const ROWS: usize = 100;
        let mut tx = self.pool.begin().await?;
        for chunk in lines.chunks(ROWS) {
            let mut sql = String::from(
                "INSERT INTO execution_logs (execution_id, seq, step_id, phase, attempt, stream, ts, line) VALUES ",
            );
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 { "(?, ?, ?, ?, ?, ?, ?, ?)" } else { ", (?, ?, ?, ?, ?, ?, ?, ?)" });
            }
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for l in chunk {
                q = q
                    .bind(&l.execution_id)
                    .bind(l.seq)
                    .bind(&l.step_id)
                    .bind(l.phase.as_str())
                    .bind(l.attempt)
                    .bind(l.stream.as_str())
                    .bind(l.ts)
                    .bind(&l.line);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn execution(&self, id: &str) -> Result<Execution> {
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?");
        if let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await? {
            return execution_from(&row);
        }
        if id.len() < 4 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::NotFound(format!("execution `{id}`")));
        }
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id LIKE ? LIMIT 2");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(format!("{id}%")).fetch_all(&self.pool).await?;
        match rows.as_slice() {
            [one] => execution_from(one),
            [] => Err(Error::NotFound(format!("execution `{id}`"))),
            _ => Err(Error::Ambiguous(id.to_string())),
        }
    }

    async fn steps(&self, execution_id: &str) -> Result<Vec<StepRecord>> {
        let rows = sqlx::query("SELECT * FROM execution_steps WHERE execution_id = ? ORDER BY idx")
            .bind(execution_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(step_from).collect()
    }

    async fn attempts(&self, execution_id: &str) -> Result<Vec<Attempt>> {
        let rows = sqlx::query("SELECT * FROM step_attempts WHERE execution_id = ? ORDER BY started_at, rowid")
            .bind(execution_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let phase: String = row.try_get("phase")?;
                Ok(Attempt {
                    execution_id: row.try_get("execution_id")?,
                    step_id: row.try_get("step_id")?,
                    phase: Phase::parse(&phase).ok_or_else(|| Error::Corrupt(format!("unknown phase `{phase}`")))?,
                    attempt: row.try_get("attempt")?,
                    status: step_status(row.try_get("status")?)?,
                    exit_code: row.try_get("exit_code")?,
                    started_at: row.try_get("started_at")?,
                    finished_at: row.try_get("finished_at")?,
                    error: row.try_get("error")?,
                })
            })
            .collect()
    }

    async fn executions(&self, f: &ExecutionFilter) -> Result<Vec<Execution>> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions WHERE (? IS NULL OR runbook_name = ?) \
             AND (? IS NULL OR status = ?) ORDER BY created_at DESC, id DESC LIMIT ?"
        );
        let status = f.status.map(ExecStatus::as_str);
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&f.runbook)
            .bind(&f.runbook)
            .bind(status)
            .bind(status)
            .bind(if f.limit > 0 { f.limit } else { 20 })
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(execution_from).collect()
    }

    async fn logs(&self, q: &LogQuery) -> Result<Vec<LogLine>> {
        let rows = sqlx::query(
            "SELECT * FROM execution_logs WHERE execution_id = ? AND seq > ? AND (? IS NULL OR step_id = ?) \
             ORDER BY seq LIMIT ?",
        )
        .bind(&q.execution_id)
        .bind(q.after_seq)
        .bind(&q.step_id)
        .bind(&q.step_id)
        .bind(if q.limit > 0 { q.limit } else { i64::MAX })
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let phase: String = row.try_get("phase")?;
                let stream: String = row.try_get("stream")?;
                Ok(LogLine {
                    execution_id: row.try_get("execution_id")?,
                    seq: row.try_get("seq")?,
                    step_id: row.try_get("step_id")?,
                    phase: Phase::parse(&phase).ok_or_else(|| Error::Corrupt(format!("unknown phase `{phase}`")))?,
                    attempt: row.try_get("attempt")?,
                    stream: Stream::parse(&stream)
                        .ok_or_else(|| Error::Corrupt(format!("unknown stream `{stream}`")))?,
                    ts: row.try_get("ts")?,
                    line: row.try_get("line")?,
                })
            })
            .collect()
    }

    async fn last_log_seq(&self, execution_id: &str) -> Result<i64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM execution_logs WHERE execution_id = ?")
            .bind(execution_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    async fn add_approval(&self, a: &Approval) -> Result<()> {
        let res = sqlx::query(
            "INSERT INTO approvals (execution_id, step_id, approver, decision, comment, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.execution_id)
        .bind(&a.step_id)
        .bind(&a.approver)
        .bind(if a.approved { "approved" } else { "rejected" })
        .bind(&a.comment)
        .bind(a.created_at)
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(Error::Conflict(format!(
                "{} has already decided on step `{}` of execution {}",
                a.approver, a.step_id, a.execution_id
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn approvals(&self, execution_id: &str) -> Result<Vec<Approval>> {
        let rows = sqlx::query("SELECT * FROM approvals WHERE execution_id = ? ORDER BY created_at")
            .bind(execution_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Approval {
                    execution_id: row.try_get("execution_id")?,
                    step_id: row.try_get("step_id")?,
                    approver: row.try_get("approver")?,
                    approved: row.try_get::<String, _>("decision")? == "approved",
                    comment: row.try_get("comment")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn heartbeat(&self, execution_id: &str, owner: &str, lease_ms: i64) -> Result<bool> {
        let now = now_ms();
        let row = sqlx::query(
            "UPDATE executions SET heartbeat_at = ?, lease_expires_at = ? WHERE id = ? AND owner = ? \
             RETURNING cancel_requested",
        )
        .bind(now)
        .bind(now + lease_ms)
        .bind(execution_id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::Conflict(format!("execution {execution_id} is no longer owned by {owner}")))?;
        Ok(row.try_get::<i64, _>("cancel_requested")? != 0)
    }

    async fn request_cancel(&self, execution_id: &str) -> Result<()> {
        sqlx::query("UPDATE executions SET cancel_requested = 1 WHERE id = ?")
            .bind(execution_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn running(&self) -> Result<Vec<Execution>> {
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE status = 'running'");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.iter().map(execution_from).collect()
    }
}
