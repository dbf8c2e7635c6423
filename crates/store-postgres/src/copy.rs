//! `opsbook admin copy`: moves a SQLite server's data into an empty PostgreSQL database,
//! row for row (the schemas have the same tables and columns), in one transaction.
//!
//! The SQLite side is read in one read transaction (a consistent snapshot, even if a
//! server still writes to it) on a blocking thread, and streamed in batches to the
//! PostgreSQL side, which binds each value as its column's type. Nothing is half-copied:
//! a failure rolls the whole copy back. The audit chain is copied as it is (same hashes)
//! and checked on the target before the commit.

use std::path::Path;

use sqlx::{Postgres, QueryBuilder};
use tokio::sync::mpsc;

use opsbook_store::{Error, Result, ServerStore};

use crate::rows::Tx;
use crate::{Db, PgStore};

/// The tables in an order their references allow: PostgreSQL name, its columns, and
/// what to read from SQLite for them (a serial id comes from SQLite's rowid).
const TABLES: &[(&str, &str, &str)] = &[
    ("runbook_versions", "sha256, name, version, content, created_at", ""),
    ("bundles", "sha256, content, size, created_at", ""),
    (
        "executions",
        "id, runbook_name, runbook_version, runbook_sha256, source_path, base_dir, status, actor, params, \
         secret_digests, created_at, started_at, finished_at, error, current_step, rollback_status, owner, \
         lease_expires_at, heartbeat_at, cancel_requested, parent_id, parent_step",
        "",
    ),
    (
        "execution_steps",
        "execution_id, idx, step_id, name, kind, status, attempts, exit_code, started_at, finished_at, error, outputs, \
         rendered, wait_deadline, rollback_status, rollback_exit_code, rollback_error, process, wait_kind, overridden_by, targets",
        "",
    ),
    (
        "step_attempts",
        "id, execution_id, step_id, phase, attempt, status, exit_code, started_at, finished_at, error",
        "rowid, execution_id, step_id, phase, attempt, status, exit_code, started_at, finished_at, error",
    ),
    ("execution_logs", "execution_id, seq, step_id, phase, attempt, stream, ts, line", ""),
    ("approvals", "execution_id, step_id, phase, approver, decision, comment, created_at", ""),
    ("runbook_reviews", "name, version, reviewer, note, at", ""),
    ("execution_feedback", "execution_id, user_name, rating, comment, at", ""),
    (
        "runbooks",
        "name, status, latest_version, latest_sha256, title, description, runbook_type, owner, tags, created_at, \
         updated_at",
        "",
    ),
    (
        "registry_versions",
        "seq, name, version, sha256, published_by, published_at, bundle_sha256",
        "rowid, name, version, sha256, published_by, published_at, bundle_sha256",
    ),
    (
        "lifecycle_events",
        "id, name, from_status, to_status, actor, reason, at",
        "rowid, name, from_status, to_status, actor, reason, at",
    ),
    (
        "runbook_search",
        "name, text",
        "name, lower(name || ' ' || title || ' ' || description || ' ' || tags || ' ' || steps)",
    ),
    ("api_tokens", "id, hash, user_name, roles, created_at, expires_at, revoked_at, last_used_at", ""),
    ("idempotency_keys", "actor, key, execution_id, created_at", ""),
    ("audit_log", "seq, at, actor, action, target, request_id, details, prev_hash, hash", ""),
    ("notification_attempts", "id, delivery_id, execution_id, event, rule, attempt, status_code, error, at", ""),
    (
        "schedules",
        "id, runbook, source, cron, timezone, params, overlap, missed, created_by, created_at, next_run_at, \
         last_run_at, last_result, roles",
        "",
    ),
    ("web_sessions", "hash, token_id, created_at, expires_at, ended_at", ""),
    ("execution_secrets", "execution_id, key_id, nonce, ciphertext, created_at", ""),
];

/// Serial columns whose sequences must continue after the copied ids.
const SERIALS: &[(&str, &str)] = &[
    ("step_attempts", "id"),
    ("registry_versions", "seq"),
    ("lifecycle_events", "id"),
    ("notification_attempts", "id"),
];

/// Rows per statement (well under PostgreSQL's 65,535 parameters at 20 columns).
const BATCH: usize = 1000;

type Rows = Vec<Vec<rusqlite::types::Value>>;

/// How many rows each table received.
pub type Copied = Vec<(&'static str, u64)>;

/// Copies everything in the SQLite database at `from` into `to`, which must be empty.
/// The source must be at the newest schema (open it with the SQLite store first).
pub async fn copy_from_sqlite(from: &Path, to: &PgStore) -> Result<Copied> {
    let non_empty: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM executions) OR EXISTS (SELECT 1 FROM runbooks) \
         OR EXISTS (SELECT 1 FROM api_tokens) OR EXISTS (SELECT 1 FROM audit_log)",
    )
    .fetch_one(to.pool())
    .await
    .db()?;
    if non_empty {
        return Err(Error::Conflict(
            "the target database already holds executions, runbooks, tokens or audit records: copy into an empty one"
                .into(),
        ));
    }
    carries_every_column(to).await?;
    let (tx_rows, mut rx_rows) = mpsc::channel::<(usize, Rows)>(4);
    let path = from.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || read_sqlite(&path, &tx_rows));
    let mut tx = to.pool().begin().await.db()?;
    let mut copied: Copied = TABLES.iter().map(|(t, _, _)| (*t, 0)).collect();
    let mut types: Option<(usize, Vec<String>)> = None;
    while let Some((table, rows)) = rx_rows.recv().await {
        let (name, columns, _) = TABLES[table];
        if types.as_ref().is_none_or(|(t, _)| *t != table) {
            types = Some((table, column_types(&mut tx, name, columns).await?));
        }
        let (_, kinds) = types.as_ref().expect("set just above");
        insert(&mut tx, name, columns, kinds, &rows).await?;
        copied[table].1 += rows.len() as u64;
    }
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(e) => return Err(Error::Database(Box::new(e))),
    }
    for (table, column) in SERIALS {
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), COALESCE(MAX({column}), 0) + 1, false) \
             FROM {table}"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await.db()?;
    }
    tx.commit().await.db()?;
    if let Err(broken) = to.verify_audit().await? {
        return Err(Error::Corrupt(format!("the copied audit trail does not verify: {broken}")));
    }
    Ok(copied)
}

/// Refuses to copy when a column of the target is not in [`TABLES`] (a column added to
/// the schema and not to the copy), which would be left empty.
async fn carries_every_column(to: &PgStore) -> Result<()> {
    for (table, columns, _) in TABLES {
        let have: Vec<String> = sqlx::query_scalar(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() \
             AND table_name = $1",
        )
        .bind(table)
        .fetch_all(to.pool())
        .await
        .db()?;
        let listed: Vec<&str> = columns.split(',').map(str::trim).collect();
        left_behind(table, have.iter().map(String::as_str).filter(|c| !listed.contains(c)))?;
    }
    Ok(())
}

/// An error naming the columns of `table` that the copy would leave behind, if any.
fn left_behind<'a>(table: &str, columns: impl Iterator<Item = &'a str>) -> Result<()> {
    let missing: Vec<&str> = columns.collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Conflict(format!(
        "this build's copy does not carry {table}.{}: nothing was copied",
        missing.join(&format!(", {table}."))
    )))
}

/// Reads every table of [`TABLES`] in one read transaction and sends it in batches.
fn read_sqlite(path: &Path, out: &mpsc::Sender<(usize, Rows)>) -> Result<()> {
    let sqlite = |e: rusqlite::Error| Error::Open(format!("{}: {e}", path.display()));
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite)?;
    conn.execute_batch("BEGIN").map_err(sqlite)?;
    for (table, columns, select) in TABLES {
        // Every column of the source is read (by name, or in the expression that reads it).
        let select = if select.is_empty() { columns } else { select };
        let words: Vec<&str> = select.split(|c: char| !(c.is_alphanumeric() || c == '_')).collect();
        let mut stmt = conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')")).map_err(sqlite)?;
        let names = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(sqlite)?;
        let names: Vec<String> = names.collect::<rusqlite::Result<_>>().map_err(sqlite)?;
        left_behind(table, names.iter().map(String::as_str).filter(|n| !words.contains(n)))?;
    }
    for (i, (table, columns, select)) in TABLES.iter().enumerate() {
        let select = if select.is_empty() { columns } else { select };
        let mut stmt = conn.prepare(&format!("SELECT {select} FROM {table}")).map_err(sqlite)?;
        let width = stmt.column_count();
        let mut rows = stmt.query([]).map_err(sqlite)?;
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(row) = rows.next().map_err(sqlite)? {
            let values = (0..width).map(|c| row.get::<_, rusqlite::types::Value>(c)).collect::<rusqlite::Result<_>>();
            batch.push(values.map_err(sqlite)?);
            if batch.len() == BATCH && out.blocking_send((i, std::mem::take(&mut batch))).is_err() {
                return Ok(()); // the writer stopped; it reports why
            }
        }
        if !batch.is_empty() && out.blocking_send((i, batch)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// The PostgreSQL type of each of `columns` of `table`.
async fn column_types(tx: &mut Tx<'_>, table: &str, columns: &str) -> Result<Vec<String>> {
    let mut kinds = Vec::new();
    for column in columns.split(',').map(str::trim) {
        let kind: String = sqlx::query_scalar(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema() \
             AND table_name = $1 AND column_name = $2",
        )
        .bind(table)
        .bind(column)
        .fetch_optional(&mut **tx)
        .await
        .db()?
        .ok_or_else(|| Error::Corrupt(format!("the target has no column {table}.{column}")))?;
        kinds.push(kind);
    }
    Ok(kinds)
}

async fn insert(tx: &mut Tx<'_>, table: &str, columns: &str, kinds: &[String], rows: &Rows) -> Result<()> {
    use rusqlite::types::Value;
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("INSERT INTO {table} ({columns}) "));
    let mut bad = None;
    q.push_values(rows, |mut b, row| {
        for (value, kind) in row.iter().zip(kinds) {
            match (kind.as_str(), value) {
                ("bigint", Value::Integer(n)) => b.push_bind(*n),
                ("bigint", Value::Null) => b.push_bind(None::<i64>),
                ("integer", Value::Integer(n)) if i32::try_from(*n).is_ok() => b.push_bind(*n as i32),
                ("integer", Value::Null) => b.push_bind(None::<i32>),
                ("boolean", Value::Integer(n)) => b.push_bind(*n != 0),
                ("boolean", Value::Null) => b.push_bind(None::<bool>),
                ("bytea", Value::Blob(bytes)) => b.push_bind(bytes.clone()),
                ("bytea", Value::Null) => b.push_bind(None::<Vec<u8>>),
                ("text", Value::Text(t)) => b.push_bind(t.clone()),
                ("text", Value::Null) => b.push_bind(None::<String>),
                (kind, value) => {
                    bad.get_or_insert_with(|| format!("{table}: a {:?} value for a {kind} column", value.data_type()));
                    b.push_bind(None::<String>)
                }
            };
        }
    });
    if let Some(bad) = bad {
        return Err(Error::Corrupt(bad));
    }
    q.build().execute(&mut **tx).await.db()?;
    Ok(())
}
