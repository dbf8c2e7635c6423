//! Filling a benchmark's SQLite database with many executions at once, behind the
//! store's back (one transaction, one prepared statement): a million in seconds.

use std::path::Path;

/// How the executions look.
pub struct Fill<'a> {
    pub rows: i64,
    pub runbooks: i64,
    /// Cycled through: row i has `statuses[i % len]`.
    pub statuses: &'a [&'a str],
    /// The runbook text (sha256) row i refers to, by its runbook's number.
    pub sha: &'a dyn Fn(i64) -> String,
    /// The stored (masked) parameters, JSON.
    pub params: &'a str,
}

/// Writes `f.rows` executions spread over the year before now, oldest first, of
/// `runbook-0` … `runbook-N` by `user-0` … `user-19`; returns how long it took.
pub fn executions(path: &Path, f: &Fill<'_>) -> std::time::Duration {
    let started = std::time::Instant::now();
    let mut db = rusqlite::Connection::open(path).expect("open");
    let tx = db.transaction().expect("tx");
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO executions (id, runbook_name, runbook_version, runbook_sha256, base_dir, status, actor, \
                 params, secret_digests, created_at, started_at, finished_at) \
                 VALUES (?, ?, '1.0.0', ?, '.', ?, ?, ?, '{}', ?, ?, ?)",
            )
            .expect("prepare");
        let year_ms = 365 * 86_400_000i64;
        let start = opsbook_store::now_ms() - year_ms - 60_000;
        for i in 0..f.rows {
            let t = start + i * (year_ms / f.rows.max(1));
            let runbook = i % f.runbooks;
            stmt.execute(rusqlite::params![
                format!("{t:013}{i:07}"),
                format!("runbook-{runbook}"),
                (f.sha)(runbook),
                f.statuses[(i as usize) % f.statuses.len()],
                format!("user-{}", i % 20),
                f.params,
                t,
                t,
                t + 1000 + (i % 97) * 100
            ])
            .expect("insert");
        }
    }
    tx.commit().expect("commit");
    started.elapsed()
}
