//! The registry: published versions (immutable, with their bundles), search.

use sqlx::QueryBuilder;
use sqlx::postgres::PgRow;

use opsbook_store::{Error, Publish, Published, PublishedVersion, RegistryEntry, Result, RunbookQuery, now_ms};

use crate::rows::{col, json_text, map_rows, parse_json};
use crate::{Db, PgStore};

/// The columns of `runbooks`, in the order [`entry_from`] reads them.
macro_rules! entry_columns {
    () => {
        "name, status, latest_version, latest_sha256, title, description, runbook_type, owner, tags, created_at, \
         updated_at"
    };
}

fn entry_from(row: &PgRow) -> Result<RegistryEntry> {
    Ok(RegistryEntry {
        name: col(row, 0)?,
        status: col(row, 1)?,
        latest_version: col(row, 2)?,
        latest_sha256: col(row, 3)?,
        title: col(row, 4)?,
        description: col(row, 5)?,
        runbook_type: col(row, 6)?,
        owner: col(row, 7)?,
        tags: parse_json(col(row, 8)?, "runbook tags")?,
        created_at: col(row, 9)?,
        updated_at: col(row, 10)?,
    })
}

fn version_from(row: &PgRow) -> Result<PublishedVersion> {
    Ok(PublishedVersion {
        name: col(row, 0)?,
        version: col(row, 1)?,
        sha256: col(row, 2)?,
        published_by: col(row, 3)?,
        published_at: col(row, 4)?,
        bundle_sha256: col(row, 5)?,
    })
}

/// Search words as regular expressions that match a word starting with each (as FTS5
/// prefix phrases do on SQLite). Every character that means something to a regular
/// expression is escaped, so no pattern syntax gets through; control characters (a NUL
/// included) are dropped.
fn search_patterns(q: &str) -> Vec<String> {
    q.split_whitespace()
        .map(|w| {
            let mut p = String::from("(^|[^[:alnum:]_])");
            for c in w.chars().filter(|c| !c.is_control()).flat_map(char::to_lowercase) {
                if !c.is_alphanumeric() {
                    p.push('\\');
                }
                p.push(c);
            }
            p
        })
        .filter(|p| p.len() > "(^|[^[:alnum:]_])".len())
        .collect()
}

impl PgStore {
    pub(crate) async fn publish_now(&self, p: &Publish) -> Result<Published> {
        let e = &p.entry;
        let mut tx = self.pool().begin().await.db()?;
        // Publishes of one runbook go one at a time (the version rule reads, then writes).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('opsbook publish ' || $1, 0))")
            .bind(&e.name)
            .execute(&mut *tx)
            .await
            .db()?;
        let existing =
            sqlx::query("SELECT sha256, bundle_sha256 FROM registry_versions WHERE name = $1 AND version = $2")
                .bind(&e.name)
                .bind(&e.latest_version)
                .fetch_optional(&mut *tx)
                .await
                .db()?;
        let existing: Option<(String, Option<String>)> =
            existing.map(|r| Ok::<_, Error>((col(&r, 0)?, col(&r, 1)?))).transpose()?;
        let current: Option<String> = sqlx::query_scalar("SELECT latest_version FROM runbooks WHERE name = $1")
            .bind(&e.name)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        if let Some(outcome) = opsbook_store::publish_rule(
            p,
            existing.as_ref().map(|(sha, bundle)| (sha.as_str(), bundle.as_deref())),
            current.as_deref(),
        )? {
            return Ok(outcome);
        }
        let now = now_ms();
        sqlx::query(
            "INSERT INTO runbook_versions (sha256, name, version, content, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(&e.latest_sha256)
        .bind(&e.name)
        .bind(&e.latest_version)
        .bind(&p.content)
        .bind(now)
        .execute(&mut *tx)
        .await
        .db()?;
        sqlx::query(
            "INSERT INTO registry_versions (name, version, sha256, published_by, published_at, bundle_sha256) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&e.name)
        .bind(&e.latest_version)
        .bind(&e.latest_sha256)
        .bind(&p.actor)
        .bind(now)
        .bind(&p.bundle_sha256)
        .execute(&mut *tx)
        .await
        .db()?;
        let tags = json_text(&e.tags);
        let outcome = match current {
            None => {
                sqlx::query(concat!(
                    "INSERT INTO runbooks (",
                    entry_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)"
                ))
                .bind(&e.name)
                .bind(&e.status)
                .bind(&e.latest_version)
                .bind(&e.latest_sha256)
                .bind(&e.title)
                .bind(&e.description)
                .bind(&e.runbook_type)
                .bind(&e.owner)
                .bind(&tags)
                .bind(now)
                .execute(&mut *tx)
                .await
                .db()?;
                sqlx::query(
                    "INSERT INTO lifecycle_events (name, from_status, to_status, actor, reason, at) \
                     VALUES ($1, NULL, $2, $3, 'first published', $4)",
                )
                .bind(&e.name)
                .bind(&e.status)
                .bind(&p.actor)
                .bind(now)
                .execute(&mut *tx)
                .await
                .db()?;
                Published::Created
            }
            Some(_) => {
                sqlx::query(
                    "UPDATE runbooks SET latest_version = $1, latest_sha256 = $2, title = $3, description = $4, \
                     runbook_type = $5, owner = $6, tags = $7, updated_at = $8 WHERE name = $9",
                )
                .bind(&e.latest_version)
                .bind(&e.latest_sha256)
                .bind(&e.title)
                .bind(&e.description)
                .bind(&e.runbook_type)
                .bind(&e.owner)
                .bind(&tags)
                .bind(now)
                .bind(&e.name)
                .execute(&mut *tx)
                .await
                .db()?;
                Published::Updated
            }
        };
        let text =
            [e.name.as_str(), &e.title, e.description.as_deref().unwrap_or(""), &e.tags.join(" "), &p.steps_text]
                .join(" ")
                .to_lowercase();
        sqlx::query(
            "INSERT INTO runbook_search (name, text) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET text = excluded.text",
        )
        .bind(&e.name)
        .bind(text)
        .execute(&mut *tx)
        .await
        .db()?;
        sqlx::query("DELETE FROM schedules WHERE runbook = $1 AND source = 'runbook'")
            .bind(&e.name)
            .execute(&mut *tx)
            .await
            .db()?;
        for s in &p.schedules {
            crate::server::insert_schedule(&mut *tx, s).await?;
        }
        tx.commit().await.db()?;
        Ok(outcome)
    }

    pub(crate) async fn registry_now(&self, q: &RunbookQuery) -> Result<Vec<RegistryEntry>> {
        let mut b = QueryBuilder::new(concat!("SELECT ", entry_columns!(), " FROM runbooks WHERE TRUE"));
        let patterns = q.q.as_deref().map(search_patterns).unwrap_or_default();
        if !patterns.is_empty() {
            b.push(" AND name IN (SELECT name FROM runbook_search WHERE TRUE");
            for p in patterns {
                b.push(" AND text ~ ").push_bind(p);
            }
            b.push(")");
        }
        for (column, v) in [("runbook_type", &q.runbook_type), ("status", &q.status), ("owner", &q.owner)] {
            if let Some(v) = v {
                b.push(format_args!(" AND {column} = ")).push_bind(v);
            }
        }
        if let Some(tag) = &q.tag {
            b.push(" AND tags::jsonb ? ").push_bind(tag);
        }
        b.push(" ORDER BY name");
        let rows = b.build().fetch_all(self.pool()).await.db()?;
        map_rows(&rows, entry_from)
    }

    pub(crate) async fn registry_entry_now(&self, name: &str) -> Result<RegistryEntry> {
        let row = sqlx::query(concat!("SELECT ", entry_columns!(), " FROM runbooks WHERE name = $1"))
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .db()?
            .ok_or_else(|| Error::NotFound(format!("runbook `{name}`")))?;
        entry_from(&row)
    }

    pub(crate) async fn registry_versions_now(&self, name: &str) -> Result<Vec<PublishedVersion>> {
        let rows = sqlx::query(
            "SELECT name, version, sha256, published_by, published_at, bundle_sha256 FROM registry_versions \
             WHERE name = $1 ORDER BY published_at DESC, seq DESC",
        )
        .bind(name)
        .fetch_all(self.pool())
        .await
        .db()?;
        let list = map_rows(&rows, version_from)?;
        if list.is_empty() {
            return Err(Error::NotFound(format!("runbook `{name}`")));
        }
        Ok(list)
    }

    pub(crate) async fn registry_version_now(&self, name: &str, version: &str) -> Result<(PublishedVersion, String)> {
        let row = sqlx::query(
            "SELECT r.name, r.version, r.sha256, r.published_by, r.published_at, r.bundle_sha256, v.content \
             FROM registry_versions r JOIN runbook_versions v ON v.sha256 = r.sha256 \
             WHERE r.name = $1 AND r.version = $2",
        )
        .bind(name)
        .bind(version)
        .fetch_optional(self.pool())
        .await
        .db()?
        .ok_or_else(|| Error::NotFound(format!("version {version} of runbook `{name}`")))?;
        Ok((version_from(&row)?, col(&row, 6)?))
    }

    pub(crate) async fn save_bundle_now(&self, sha256: &str, content: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO bundles (sha256, content, size, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(sha256)
        .bind(content)
        .bind(i64::try_from(content.len()).unwrap_or(i64::MAX))
        .bind(now_ms())
        .execute(self.pool())
        .await
        .db()?;
        Ok(())
    }

    pub(crate) async fn bundle_now(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT content FROM bundles WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(self.pool())
            .await
            .db()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn search_words_are_escaped_prefixes() {
        assert_eq!(super::search_patterns("Deploy  db-mig"), ["(^|[^[:alnum:]_])deploy", "(^|[^[:alnum:]_])db\\-mig"]);
        assert_eq!(super::search_patterns("a.*( \0"), ["(^|[^[:alnum:]_])a\\.\\*\\("]);
        assert!(super::search_patterns(" \u{1} ").is_empty());
    }
}
