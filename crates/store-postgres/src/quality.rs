//! What a runbook's quality is measured by: reviews and ratings of executions.

use opsbook_store::{Error, Feedback, Result, Review};
use sqlx::postgres::PgRow;

use crate::rows::{col, map_rows};
use crate::{Db, PgStore};

pub(crate) async fn add_feedback(s: &PgStore, f: &Feedback) -> Result<()> {
    sqlx::query(
        "INSERT INTO execution_feedback (execution_id, user_name, rating, comment, at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (execution_id, user_name) DO UPDATE SET rating = excluded.rating, \
         comment = excluded.comment, at = excluded.at",
    )
    .bind(&f.execution_id)
    .bind(&f.user)
    .bind(i32::from(f.rating))
    .bind(&f.comment)
    .bind(f.at)
    .execute(s.pool())
    .await
    .db()?;
    Ok(())
}

fn feedback_from(row: &PgRow, at: usize) -> Result<Feedback> {
    let rating: i32 = col(row, at + 2)?;
    Ok(Feedback {
        execution_id: col(row, at)?,
        user: col(row, at + 1)?,
        rating: u8::try_from(rating).map_err(|_| Error::Corrupt(format!("rating {rating} out of range")))?,
        comment: col(row, at + 3)?,
        at: col(row, at + 4)?,
    })
}

pub(crate) async fn feedback(s: &PgStore, execution_id: &str) -> Result<Vec<Feedback>> {
    let rows = sqlx::query(
        "SELECT execution_id, user_name, rating, comment, at FROM execution_feedback \
         WHERE execution_id = $1 ORDER BY at, user_name",
    )
    .bind(execution_id)
    .fetch_all(s.pool())
    .await
    .db()?;
    map_rows(&rows, |row| feedback_from(row, 0))
}

pub(crate) async fn feedback_since(s: &PgStore, since: i64, runbook: Option<&str>) -> Result<Vec<(String, Feedback)>> {
    let rows = sqlx::query(
        "SELECT e.runbook_name, f.execution_id, f.user_name, f.rating, f.comment, f.at \
         FROM execution_feedback f JOIN executions e ON e.id = f.execution_id \
         WHERE f.at >= $1 AND ($2::text IS NULL OR e.runbook_name = $2) ORDER BY f.at, f.execution_id, f.user_name",
    )
    .bind(since)
    .bind(runbook)
    .fetch_all(s.pool())
    .await
    .db()?;
    map_rows(&rows, |row| Ok((col(row, 0)?, feedback_from(row, 1)?)))
}

pub(crate) async fn add_review(s: &PgStore, r: &Review) -> Result<()> {
    sqlx::query("INSERT INTO runbook_reviews (name, version, reviewer, note, at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&r.name)
        .bind(&r.version)
        .bind(&r.reviewer)
        .bind(&r.note)
        .bind(r.at)
        .execute(s.pool())
        .await
        .db()?;
    Ok(())
}

pub(crate) async fn reviews(s: &PgStore, name: Option<&str>) -> Result<Vec<Review>> {
    let rows = sqlx::query(
        "SELECT name, version, reviewer, note, at FROM runbook_reviews \
         WHERE $1::text IS NULL OR name = $1 ORDER BY at, name, reviewer",
    )
    .bind(name)
    .fetch_all(s.pool())
    .await
    .db()?;
    map_rows(&rows, |row| {
        Ok(Review {
            name: col(row, 0)?,
            version: col(row, 1)?,
            reviewer: col(row, 2)?,
            note: col(row, 3)?,
            at: col(row, 4)?,
        })
    })
}
