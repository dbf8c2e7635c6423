//! The hash-chained audit trail on PostgreSQL: appended in one statement (migration 2),
//! read with filters, and checked record by record.

use sqlx::QueryBuilder;
use sqlx::postgres::PgRow;

use opsbook_store::{AuditFilter, AuditRecord, Error, NewAudit, Result, audit_hash, now_ms};

use crate::rows::{col, json_text, map_rows, parse_json};
use crate::{Db, PgStore};

/// The transaction advisory lock appends to the audit chain take, one at a time.
const AUDIT_LOCK: i64 = 0x6f70_7361_7564_6974;

fn audit_from(row: &PgRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: col(row, 0)?,
        at: col(row, 1)?,
        actor: col(row, 2)?,
        action: col(row, 3)?,
        target: col(row, 4)?,
        request_id: col(row, 5)?,
        details: parse_json(col(row, 6)?, "audit details")?,
        prev_hash: col(row, 7)?,
        hash: col(row, 8)?,
    })
}

/// `, au AS (…)`: appends `r` (whose target is the execution `guard` yields) to the audit
/// chain in the statement being built, only when the CTE `guard` has a row; read
/// `o_seq, o_prev, o_hash` from `au`. The function's argument from `guard` makes the
/// join lateral, so it runs once per row of `guard`, never without one.
pub(crate) fn push_append(q: &mut QueryBuilder<sqlx::Postgres>, r: &NewAudit, at: i64, guard: &str) {
    q.push(", au AS (SELECT f.o_seq, f.o_prev, f.o_hash FROM ").push(guard);
    q.push(" g CROSS JOIN LATERAL opsbook_append_audit(").push_bind(AUDIT_LOCK);
    q.push(", ").push_bind(at).push(", ").push_bind(&r.actor).push(", ").push_bind(&r.action);
    q.push(", g.id, ").push_bind(&r.request_id).push(", ").push_bind(json_text(&r.details)).push(") f)");
}

/// The record the database appended for `r` at `at`, once its hash is checked against
/// opsbook's own computation.
pub(crate) fn appended(r: &NewAudit, at: i64, seq: i64, prev_hash: String, hash: String) -> Result<AuditRecord> {
    if hash != audit_hash(&prev_hash, seq, at, r) {
        return Err(Error::Corrupt(format!(
            "audit record {seq}: the database's hash differs from opsbook's (is migration 2 intact?)"
        )));
    }
    Ok(r.recorded(seq, at, prev_hash, hash))
}

impl PgStore {
    pub(crate) async fn append_audit_now(&self, r: &NewAudit) -> Result<AuditRecord> {
        // One statement (see migration 2): appends from every node go one at a time, each
        // holding the lock only while the function runs.
        let at = now_ms();
        let row = sqlx::query("SELECT o_seq, o_prev, o_hash FROM opsbook_append_audit($1, $2, $3, $4, $5, $6, $7)")
            .bind(AUDIT_LOCK)
            .bind(at)
            .bind(&r.actor)
            .bind(&r.action)
            .bind(&r.target)
            .bind(&r.request_id)
            .bind(json_text(&r.details))
            .fetch_one(self.pool())
            .await
            .db()?;
        appended(r, at, col(&row, 0)?, col(&row, 1)?, col(&row, 2)?)
    }

    pub(crate) async fn audit_now(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let mut q = QueryBuilder::new(
            "SELECT seq, at, actor, action, target, request_id, details, prev_hash, hash FROM audit_log WHERE seq > ",
        );
        q.push_bind(f.after_seq);
        for (column, v) in [("actor", &f.actor), ("action", &f.action), ("target", &f.target)] {
            if let Some(v) = v {
                q.push(format_args!(" AND {column} = ")).push_bind(v);
            }
        }
        if let Some(since) = f.since {
            q.push(" AND at >= ").push_bind(since);
        }
        q.push(if f.newest { " ORDER BY seq DESC LIMIT " } else { " ORDER BY seq LIMIT " }).push_bind(if f.limit > 0 {
            f.limit
        } else {
            100
        });
        let rows = q.build().fetch_all(self.pool()).await.db()?;
        let mut records = map_rows(&rows, audit_from)?;
        if f.newest {
            records.reverse();
        }
        Ok(records)
    }

    pub(crate) async fn verify_audit_now(&self) -> Result<std::result::Result<i64, String>> {
        use futures_util::TryStreamExt;
        // Streamed: the chain can be long, and only one record is needed at a time.
        let mut rows = sqlx::query(
            "SELECT seq, at, actor, action, target, request_id, details, prev_hash, hash FROM audit_log ORDER BY seq",
        )
        .fetch(self.pool());
        let mut chain = opsbook_store::AuditChain::new();
        while let Some(row) = rows.try_next().await.db()? {
            if let Err(broken) = chain.next(audit_from(&row)?) {
                return Ok(Err(broken));
            }
        }
        Ok(Ok(chain.count()))
    }
}
