//! The embedded SQLite backend of the storage traits (WAL mode, versioned migrations).
//! Architecture invariant: with the other backends, the only crates that know SQL.
//!
//! One connection behind a mutex, used synchronously: every call is a few tens of
//! microseconds, and a step costs one commit, so a hand-off to a database thread per
//! query would cost more than the query (see ARCHITECTURE.md).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use opsbook_core::{ExecStatus, StepStatus};
use rusqlite::{Connection, OptionalExtension, Row, ToSql, params, params_from_iter};

use opsbook_store::{
    Approval, Attempt, Error, Execution, ExecutionFilter, LogLine, LogQuery, Phase, Result, RunbookVersion, StepRecord,
    Store, Stream, WaitKind, now_ms,
};

mod server;

/// `?` on a SQLite call: its error becomes the backend-neutral storage error.
pub(crate) trait Db<T> {
    fn db(self) -> Result<T>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T> {
        self.map_err(|e| Error::Database(Box::new(e)))
    }
}

/// Migrations, applied in order and recorded in `opsbook_migrations`. Append only.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_server.sql")),
    (3, include_str!("../migrations/sqlite/0003_notifications.sql")),
    (4, include_str!("../migrations/sqlite/0004_schedules.sql")),
    (5, include_str!("../migrations/sqlite/0005_execution_cursor.sql")),
    (6, include_str!("../migrations/sqlite/0006_step_process.sql")),
    (7, include_str!("../migrations/sqlite/0007_wait_kind.sql")),
    (8, include_str!("../migrations/sqlite/0008_step_override.sql")),
];

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Open(format!("cannot create directory {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).db()?;
        conn.busy_timeout(Duration::from_secs(10)).db()?;
        // WAL + NORMAL: a commit survives a crash of the process (kill -9); only an OS
        // crash or power loss can lose the last commits.
        conn.pragma_update(None, "journal_mode", "WAL").db()?;
        conn.pragma_update(None, "synchronous", "NORMAL").db()?;
        conn.pragma_update(None, "foreign_keys", "ON").db()?;
        // Every CLI command opens and closes the database; a checkpoint on each close
        // would cost more than the command. SQLite's automatic checkpoints (every 1000
        // pages) keep the WAL bounded instead.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true).db()?;
        let store = SqliteStore { conn: Arc::new(Mutex::new(conn)) };
        store.migrate()?;
        Ok(store)
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-done transaction behind
        // (rusqlite rolls back on drop), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.conn();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS opsbook_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .db()?;
        // Common case first: the schema is current, and checking needs no write lock.
        let current: i64 =
            conn.query_row("SELECT COALESCE(MAX(version), 0) FROM opsbook_migrations", [], |r| r.get(0)).db()?;
        if MIGRATIONS.last().is_some_and(|(newest, _)| current == *newest) {
            return Ok(());
        }
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).db()?;
        let current: i64 =
            tx.query_row("SELECT COALESCE(MAX(version), 0) FROM opsbook_migrations", [], |r| r.get(0)).db()?;
        if let Some((newest, _)) = MIGRATIONS.last()
            && current > *newest
        {
            return Err(Error::Corrupt(format!(
                "the database schema is version {current}, newer than this opsbook understands ({newest}); upgrade opsbook"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.execute_batch(sql).db()?;
            tx.execute(
                "INSERT INTO opsbook_migrations (version, applied_at) VALUES (?, ?)",
                params![version, now_ms()],
            )
            .db()?;
        }
        tx.commit().db()?;
        Ok(())
    }
}

pub(crate) fn json_text(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).expect("JSON values always serialize")
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
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

fn phase(s: &str) -> Result<Phase> {
    Phase::parse(s).ok_or_else(|| Error::Corrupt(format!("unknown phase `{s}`")))
}

pub(crate) const EXECUTION_COLUMNS: &str = "id, runbook_name, runbook_version, runbook_sha256, source_path, base_dir, status, \
    actor, params, secret_digests, created_at, started_at, finished_at, error, current_step, rollback_status, owner, \
    lease_expires_at, heartbeat_at, cancel_requested";

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
    })
}

const STEP_COLUMNS: &str = "execution_id, idx, step_id, name, kind, status, attempts, exit_code, started_at, \
    finished_at, error, outputs, rendered, wait_deadline, rollback_status, rollback_exit_code, rollback_error, wait_kind, \
    overridden_by";

fn step_from(row: &Row<'_>) -> Result<StepRecord> {
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

fn insert_step(conn: &Connection, s: &StepRecord) -> Result<()> {
    let outputs = json_text(&s.outputs);
    conn.prepare_cached(&format!(
        "INSERT INTO execution_steps ({STEP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
    ])
    .db()?;
    Ok(())
}

/// What a step waits for, stored only while it waits.
fn wait_kind(s: &StepRecord) -> Option<&'static str> {
    s.wait_kind.filter(|_| s.status == StepStatus::Waiting).map(WaitKind::as_str)
}

fn update_step(conn: &Connection, s: &StepRecord) -> Result<()> {
    let outputs = json_text(&s.outputs);
    let done = conn
        .prepare_cached(
            "UPDATE execution_steps SET status = ?, attempts = ?, exit_code = ?, started_at = ?, finished_at = ?, \
             error = ?, outputs = ?, rendered = ?, wait_deadline = ?, rollback_status = ?, rollback_exit_code = ?, \
             rollback_error = ?, wait_kind = ?, overridden_by = ? WHERE execution_id = ? AND idx = ?",
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
            s.execution_id,
            s.idx,
        ])
        .db()?;
    if done == 0 {
        return Err(Error::NotFound(format!("step {} of execution {}", s.step_id, s.execution_id)));
    }
    Ok(())
}

impl Store for SqliteStore {
    async fn save_runbook(&self, rb: &RunbookVersion) -> Result<()> {
        self.conn()
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
        self.conn()
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
        let mut conn = self.conn();
        let tx = conn.transaction().db()?;
        insert_execution(&tx, e, steps)?;
        tx.commit().db()?;
        Ok(())
    }

    async fn update_execution(&self, e: &Execution) -> Result<()> {
        let done = self
            .conn()
            .prepare_cached(
                "UPDATE executions SET status = ?, started_at = ?, finished_at = ?, error = ?, current_step = ?, \
                 rollback_status = ?, owner = ?, lease_expires_at = ?, heartbeat_at = ?, actor = ? WHERE id = ?",
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
                e.actor,
                e.id,
            ])
            .db()?;
        if done == 0 {
            return Err(Error::NotFound(format!("execution {}", e.id)));
        }
        Ok(())
    }

    async fn update_step(&self, s: &StepRecord) -> Result<()> {
        update_step(&self.conn(), s)
    }

    async fn record_attempt(&self, a: &Attempt, steps: &[&StepRecord]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().db()?;
        tx.prepare_cached(
            "INSERT INTO step_attempts (execution_id, step_id, phase, attempt, status, exit_code, started_at, \
             finished_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        ])
        .db()?;
        for s in steps {
            update_step(&tx, s)?;
        }
        tx.commit().db()?;
        Ok(())
    }

    async fn append_logs(&self, lines: &[LogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().db()?;
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
        let conn = self.conn();
        let mut exact =
            conn.prepare_cached(&format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?")).db()?;
        if let Some(e) = collect(&mut exact, [id], execution_from)?.pop() {
            return Ok(e);
        }
        if id.len() < 4 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::NotFound(format!("execution `{id}`")));
        }
        let mut prefix =
            conn.prepare_cached(&format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id LIKE ? LIMIT 2")).db()?;
        let mut found = collect(&mut prefix, [format!("{id}%")], execution_from)?;
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(Error::NotFound(format!("execution `{id}`"))),
            _ => Err(Error::Ambiguous(id.to_string())),
        }
    }

    async fn steps(&self, execution_id: &str) -> Result<Vec<StepRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {STEP_COLUMNS} FROM execution_steps WHERE execution_id = ? ORDER BY idx"))
            .db()?;
        collect(&mut stmt, [execution_id], step_from)
    }

    async fn attempts(&self, execution_id: &str) -> Result<Vec<Attempt>> {
        let conn = self.conn();
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
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql).db()?;
        collect(&mut stmt, params_from_iter(args.iter()), execution_from)
    }

    async fn logs(&self, q: &LogQuery) -> Result<Vec<LogLine>> {
        let conn = self.conn();
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
            .conn()
            .prepare_cached("SELECT MAX(seq) FROM execution_logs WHERE execution_id = ?")
            .db()?
            .query_row([execution_id], |r| r.get(0))
            .db()?;
        Ok(seq.unwrap_or(0))
    }

    async fn add_approval(&self, a: &Approval) -> Result<()> {
        let res = self
            .conn()
            .prepare_cached(
                "INSERT INTO approvals (execution_id, step_id, approver, decision, comment, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .db()?
            .execute(params![
                a.execution_id,
                a.step_id,
                a.approver,
                if a.approved { "approved" } else { "rejected" },
                a.comment,
                a.created_at
            ]);
        match res {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(Error::Conflict(format!(
                    "{} has already decided on step `{}` of execution {}",
                    a.approver, a.step_id, a.execution_id
                )))
            }
            Err(e) => Err(Error::Database(Box::new(e))),
        }
    }

    async fn approvals(&self, execution_id: &str) -> Result<Vec<Approval>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT execution_id, step_id, approver, decision, comment, created_at FROM approvals \
             WHERE execution_id = ? ORDER BY created_at",
            )
            .db()?;
        collect(&mut stmt, [execution_id], |row| {
            Ok(Approval {
                execution_id: row.get(0).db()?,
                step_id: row.get(1).db()?,
                approver: row.get(2).db()?,
                approved: row.get::<_, String>(3).db()? == "approved",
                comment: row.get(4).db()?,
                created_at: row.get(5).db()?,
            })
        })
    }

    async fn heartbeat(&self, execution_id: &str, owner: &str, lease_ms: i64) -> Result<bool> {
        let now = now_ms();
        let cancel: Option<i64> = self
            .conn()
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
        self.conn()
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
        let conn = self.conn();
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
        self.conn()
            .prepare_cached("UPDATE execution_steps SET process = ? WHERE execution_id = ? AND step_id = ?")
            .db()?
            .execute(params![process, execution_id, step_id])
            .db()?;
        Ok(())
    }

    async fn processes(&self, execution_id: &str) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT step_id, process FROM execution_steps WHERE execution_id = ? AND process IS NOT NULL ORDER BY idx",
        ).db()?;
        collect(&mut stmt, [execution_id], |r| Ok((r.get(0).db()?, r.get(1).db()?)))
    }

    async fn release(&self, execution_id: &str, owner: &str) -> Result<()> {
        self.conn()
            .prepare_cached("UPDATE executions SET owner = NULL, lease_expires_at = NULL WHERE id = ? AND owner = ?")
            .db()?
            .execute([execution_id, owner])
            .db()?;
        Ok(())
    }

    async fn running(&self) -> Result<Vec<Execution>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions \
                 WHERE status = ?1 OR (status = ?2 AND owner IS NOT NULL)"
            ))
            .db()?;
        collect(&mut stmt, [ExecStatus::Running.as_str(), ExecStatus::Waiting.as_str()], execution_from)
    }
}

/// Inserts an execution and its steps (inside the caller's transaction).
pub(crate) fn insert_execution(tx: &rusqlite::Transaction<'_>, e: &Execution, steps: &[StepRecord]) -> Result<()> {
    tx.prepare_cached(&format!(
        "INSERT INTO executions ({EXECUTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
    ]).db()?;
    for s in steps {
        insert_step(tx, s)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Mutex;

    use opsbook_store::conformance::{Tamper, run_all};

    use crate::SqliteStore;

    /// Edits the SQLite file directly, beside the store's own connection.
    struct SqliteTamper(PathBuf);

    impl SqliteTamper {
        fn exec(&self, sql: &str, seq: i64) {
            rusqlite::Connection::open(&self.0).unwrap().execute(sql, [seq]).unwrap();
        }
    }

    impl Tamper for SqliteTamper {
        fn edit(&self, seq: i64) {
            self.exec(
                "UPDATE audit_log SET actor = CASE actor WHEN 'mallory' THEN 'ann' ELSE 'mallory' END WHERE seq = ?",
                seq,
            );
        }

        fn delete(&self, seq: i64) {
            self.exec("DELETE FROM audit_log WHERE seq = ?", seq);
        }

        fn insert(&self) {
            self.exec(
                "INSERT INTO audit_log (seq, at, actor, action, target, request_id, details, prev_hash, hash) \
                 SELECT seq + 1, at, 'mallory', 'forged', '', '', '{}', hash, ? FROM audit_log ORDER BY seq DESC LIMIT 1",
                0,
            );
        }
    }

    /// SQLite passes the suite every backend must pass.
    #[test]
    fn sqlite_passes_the_conformance_suite() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let made = Mutex::new(Vec::<PathBuf>::new());
        rt.block_on(run_all(
            || {
                let mut made = made.lock().unwrap();
                let path = dir.path().join(format!("{}.db", made.len()));
                made.push(path.clone());
                async move { SqliteStore::open(&path).await.unwrap() }
            },
            |_| SqliteTamper(made.lock().unwrap().last().cloned().unwrap()),
        ));
    }
}
