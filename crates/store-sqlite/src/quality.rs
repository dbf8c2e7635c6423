//! What a runbook's quality is measured by: reviews and ratings of executions.

use opsbook_store::{Feedback, Result, Review};
use rusqlite::{ToSql, params};

use crate::Db;
use crate::SqliteStore;
use crate::rows::collect;

pub(crate) fn add_feedback(s: &SqliteStore, f: &Feedback) -> Result<()> {
    s.conn()?
        .prepare_cached(
            "INSERT INTO execution_feedback (execution_id, user_name, rating, comment, at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (execution_id, user_name) DO UPDATE SET rating = excluded.rating, \
             comment = excluded.comment, at = excluded.at",
        )
        .db()?
        .execute(params![f.execution_id, f.user, f.rating, f.comment, f.at])
        .db()?;
    Ok(())
}

fn feedback_from(row: &rusqlite::Row<'_>, at: usize) -> Result<Feedback> {
    Ok(Feedback {
        execution_id: row.get(at).db()?,
        user: row.get(at + 1).db()?,
        rating: row.get(at + 2).db()?,
        comment: row.get(at + 3).db()?,
        at: row.get(at + 4).db()?,
    })
}

pub(crate) fn feedback(s: &SqliteStore, execution_id: &str) -> Result<Vec<Feedback>> {
    let conn = s.reader()?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT execution_id, user_name, rating, comment, at FROM execution_feedback \
             WHERE execution_id = ? ORDER BY at, user_name",
        )
        .db()?;
    collect(&mut stmt, [execution_id], |row| feedback_from(row, 0))
}

pub(crate) fn feedback_since(s: &SqliteStore, since: i64, runbook: Option<&str>) -> Result<Vec<(String, Feedback)>> {
    let conn = s.reader()?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT e.runbook_name, f.execution_id, f.user_name, f.rating, f.comment, f.at \
             FROM execution_feedback f JOIN executions e ON e.id = f.execution_id \
             WHERE f.at >= ?1 AND (?2 IS NULL OR e.runbook_name = ?2) ORDER BY f.at, f.execution_id, f.user_name",
        )
        .db()?;
    let args: [&dyn ToSql; 2] = [&since, &runbook];
    collect(&mut stmt, args.as_slice(), |row| Ok((row.get(0).db()?, feedback_from(row, 1)?)))
}

pub(crate) fn add_review(s: &SqliteStore, r: &Review) -> Result<()> {
    s.conn()?
        .prepare_cached("INSERT INTO runbook_reviews (name, version, reviewer, note, at) VALUES (?, ?, ?, ?, ?)")
        .db()?
        .execute(params![r.name, r.version, r.reviewer, r.note, r.at])
        .db()?;
    Ok(())
}

pub(crate) fn reviews(s: &SqliteStore, name: Option<&str>) -> Result<Vec<Review>> {
    let conn = s.reader()?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT name, version, reviewer, note, at FROM runbook_reviews \
             WHERE ?1 IS NULL OR name = ?1 ORDER BY at, name, reviewer",
        )
        .db()?;
    collect(&mut stmt, [&name], |row| {
        Ok(Review {
            name: row.get(0).db()?,
            version: row.get(1).db()?,
            reviewer: row.get(2).db()?,
            note: row.get(3).db()?,
            at: row.get(4).db()?,
        })
    })
}
