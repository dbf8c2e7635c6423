//! The registry: published versions (immutable, with their bundles), search.

use rusqlite::{OptionalExtension, Row, ToSql, TransactionBehavior, params, params_from_iter};

use opsbook_store::{Error, Publish, Published, PublishedVersion, RegistryEntry, Result, RunbookQuery, now_ms};

use crate::rows::{collect, json_text, parse_json};
use crate::{Db, SqliteStore};

pub(crate) const ENTRY_COLUMNS: &str = "name, status, latest_version, latest_sha256, title, description, runbook_type, owner, \
    tags, created_at, updated_at";

pub(crate) fn entry_from(row: &Row<'_>) -> Result<RegistryEntry> {
    Ok(RegistryEntry {
        name: row.get(0).db()?,
        status: row.get(1).db()?,
        latest_version: row.get(2).db()?,
        latest_sha256: row.get(3).db()?,
        title: row.get(4).db()?,
        description: row.get(5).db()?,
        runbook_type: row.get(6).db()?,
        owner: row.get(7).db()?,
        tags: parse_json(&row.get::<_, String>(8).db()?, "runbook tags")?,
        created_at: row.get(9).db()?,
        updated_at: row.get(10).db()?,
    })
}

pub(crate) fn version_from(row: &Row<'_>) -> Result<PublishedVersion> {
    Ok(PublishedVersion {
        name: row.get(0).db()?,
        version: row.get(1).db()?,
        sha256: row.get(2).db()?,
        published_by: row.get(3).db()?,
        published_at: row.get(4).db()?,
        bundle_sha256: row.get(5).db()?,
    })
}

/// Quotes user words for an FTS5 MATCH so that no query syntax can be injected.
/// Search words as FTS5 prefix phrases. Control characters (a NUL included) are not
/// text anyone searches for: they are dropped rather than handed to FTS5.
fn fts_query(q: &str) -> Option<String> {
    let words: Vec<String> = q
        .split_whitespace()
        .map(|w| w.chars().filter(|c| !c.is_control()).collect::<String>())
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{}\"*", w.replace('"', "\"\"")))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

impl SqliteStore {
    pub(crate) fn publish_now(&self, p: &Publish) -> Result<Published> {
        let e = &p.entry;
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
        let existing: Option<(String, Option<String>)> = tx
            .query_row(
                "SELECT sha256, bundle_sha256 FROM registry_versions WHERE name = ? AND version = ?",
                [&e.name, &e.latest_version],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .db()?;
        let current: Option<(String, String)> = tx
            .query_row("SELECT latest_version, status FROM runbooks WHERE name = ?", [&e.name], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .db()?;
        if let Some(outcome) = opsbook_store::publish_rule(
            p,
            existing.as_ref().map(|(sha, bundle)| (sha.as_str(), bundle.as_deref())),
            current.as_ref().map(|c| c.0.as_str()),
        )? {
            return Ok(outcome);
        }
        let now = now_ms();
        tx.execute(
            "INSERT INTO runbook_versions (sha256, name, version, content, created_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (sha256) DO NOTHING",
            params![e.latest_sha256, e.name, e.latest_version, p.content, now],
        )
        .db()?;
        tx.execute(
            "INSERT INTO registry_versions (name, version, sha256, published_by, published_at, bundle_sha256) \
             VALUES (?, ?, ?, ?, ?, ?)",
            params![e.name, e.latest_version, e.latest_sha256, p.actor, now, p.bundle_sha256],
        )
        .db()?;
        let tags = json_text(&e.tags);
        let outcome = match current {
            None => {
                tx.execute(
                    &format!("INSERT INTO runbooks ({ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                    params![
                        e.name,
                        e.status,
                        e.latest_version,
                        e.latest_sha256,
                        e.title,
                        e.description,
                        e.runbook_type,
                        e.owner,
                        tags,
                        now,
                        now
                    ],
                )
                .db()?;
                tx.execute(
                    "INSERT INTO lifecycle_events (name, from_status, to_status, actor, reason, at) VALUES (?, NULL, ?, ?, ?, ?)",
                    params![e.name, e.status, p.actor, "first published", now],
                ).db()?;
                Published::Created
            }
            Some(_) => {
                tx.execute(
                    "UPDATE runbooks SET latest_version = ?, latest_sha256 = ?, title = ?, description = ?, \
                     runbook_type = ?, owner = ?, tags = ?, updated_at = ? WHERE name = ?",
                    params![
                        e.latest_version,
                        e.latest_sha256,
                        e.title,
                        e.description,
                        e.runbook_type,
                        e.owner,
                        tags,
                        now,
                        e.name
                    ],
                )
                .db()?;
                tx.execute("DELETE FROM runbook_search WHERE name = ?", [&e.name]).db()?;
                Published::Updated
            }
        };
        tx.execute(
            "INSERT INTO runbook_search (name, title, description, tags, steps) VALUES (?, ?, ?, ?, ?)",
            params![e.name, e.title, e.description.clone().unwrap_or_default(), e.tags.join(" "), p.steps_text],
        )
        .db()?;
        tx.execute("DELETE FROM schedules WHERE runbook = ? AND source = 'runbook'", [&e.name]).db()?;
        for s in &p.schedules {
            crate::server::insert_schedule(&tx, s)?;
        }
        tx.commit().db()?;
        Ok(outcome)
    }

    pub(crate) fn registry_now(&self, q: &RunbookQuery) -> Result<Vec<RegistryEntry>> {
        let mut sql = format!("SELECT {ENTRY_COLUMNS} FROM runbooks WHERE 1 = 1");
        let mut args: Vec<Box<dyn ToSql>> = Vec::new();
        if let Some(text) = q.q.as_deref().and_then(fts_query) {
            sql.push_str(" AND name IN (SELECT name FROM runbook_search WHERE runbook_search MATCH ?)");
            args.push(Box::new(text));
        }
        for (col, v) in [("runbook_type", &q.runbook_type), ("status", &q.status), ("owner", &q.owner)] {
            if let Some(v) = v {
                sql.push_str(&format!(" AND {col} = ?"));
                args.push(Box::new(v.clone()));
            }
        }
        if let Some(tag) = &q.tag {
            sql.push_str(" AND EXISTS (SELECT 1 FROM json_each(runbooks.tags) WHERE json_each.value = ?)");
            args.push(Box::new(tag.clone()));
        }
        sql.push_str(" ORDER BY name");
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&sql).db()?;
        collect(&mut stmt, params_from_iter(args.iter()), entry_from)
    }

    pub(crate) fn registry_entry_now(&self, name: &str) -> Result<RegistryEntry> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&format!("SELECT {ENTRY_COLUMNS} FROM runbooks WHERE name = ?")).db()?;
        collect(&mut stmt, [name], entry_from)?.pop().ok_or_else(|| Error::NotFound(format!("runbook `{name}`")))
    }

    pub(crate) fn registry_versions_now(&self, name: &str) -> Result<Vec<PublishedVersion>> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT name, version, sha256, published_by, published_at, bundle_sha256 FROM registry_versions WHERE name = ? \
             ORDER BY published_at DESC, rowid DESC",
            )
            .db()?;
        let list = collect(&mut stmt, [name], version_from)?;
        if list.is_empty() {
            return Err(Error::NotFound(format!("runbook `{name}`")));
        }
        Ok(list)
    }

    pub(crate) fn registry_version_now(&self, name: &str, version: &str) -> Result<(PublishedVersion, String)> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT r.name, r.version, r.sha256, r.published_by, r.published_at, r.bundle_sha256, v.content \
             FROM registry_versions r \
             JOIN runbook_versions v ON v.sha256 = r.sha256 WHERE r.name = ? AND r.version = ?",
            )
            .db()?;
        collect(&mut stmt, [name, version], |row| Ok((version_from(row)?, row.get::<_, String>(6).db()?)))?
            .pop()
            .ok_or_else(|| Error::NotFound(format!("version {version} of runbook `{name}`")))
    }

    pub(crate) fn save_bundle_now(&self, sha256: &str, content: &[u8]) -> Result<()> {
        let size = i64::try_from(content.len()).unwrap_or(i64::MAX);
        self.conn()?
            .execute(
                "INSERT INTO bundles (sha256, content, size, created_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (sha256) DO NOTHING",
                params![sha256, content, size, now_ms()],
            )
            .db()?;
        Ok(())
    }

    pub(crate) fn bundle_now(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        self.reader()?.query_row("SELECT content FROM bundles WHERE sha256 = ?", [sha256], |r| r.get(0)).optional().db()
    }
}
