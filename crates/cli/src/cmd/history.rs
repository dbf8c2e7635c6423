//! `opsbook history`: past executions, newest first.

use anyhow::Result;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use opsbook_core::ExecStatus;
use opsbook_core::duration::human_ms;
use opsbook_store::{ExecutionFilter, Store};

use super::{EXIT_OK, usage};
use comfy_table::Cell;

use crate::render::{exec_cell, truncate};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this runbook
    #[arg(long)]
    pub runbook: Option<String>,
    /// Only this status (queued, running, waiting, succeeded, failed, cancelled, interrupted)
    #[arg(long)]
    pub status: Option<String>,
    /// Only executions started by this user (or `schedule:ID`)
    #[arg(long)]
    pub actor: Option<String>,
    /// Only executions created since (RFC 3339 time, a date, or a duration ago such as 24h or 7d)
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    #[arg(long, value_enum, default_value_t)]
    pub output: crate::Output,
}

/// A point in time as people write it: RFC 3339, a date (midnight UTC), epoch
/// milliseconds, or a duration before now (`24h`, `7d`).
pub fn since_ms(text: &str) -> Result<i64> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    if let Ok(date) = t.parse::<jiff::civil::Date>()
        && let Ok(z) = date.to_zoned(jiff::tz::TimeZone::UTC)
    {
        return Ok(z.timestamp().as_millisecond());
    }
    if let Ok(d) = opsbook_core::duration::parse(t) {
        let ago = i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX);
        return Ok(opsbook_store::now_ms().saturating_sub(ago));
    }
    Err(usage(format!(
        "--since `{text}`: expected a time (2026-12-01T08:00:00Z), a date (2026-12-01) or a duration ago (24h, 7d)"
    )))
}

pub async fn exec(db: Option<opsbook_store::DatabaseUrl>, args: Args) -> Result<u8> {
    let status = match &args.status {
        Some(s) => Some(ExecStatus::parse(s).ok_or_else(|| {
            let all: Vec<&str> = ExecStatus::ALL.iter().map(|s| s.as_str()).collect();
            usage(format!("unknown status `{s}`: use one of {}", all.join(", ")))
        })?),
        None => None,
    };
    if args.limit < 1 {
        return Err(usage("--limit must be at least 1"));
    }
    let engine = super::open(db).await?;
    let list = engine
        .store
        .executions(&ExecutionFilter {
            runbook: args.runbook,
            status,
            actor: args.actor,
            since: args.since.as_deref().map(since_ms).transpose()?,
            limit: args.limit,
            ..Default::default()
        })
        .await?;
    if args.output == crate::Output::Json {
        let docs: Vec<_> = list.iter().map(opsbook_api::ExecutionSummary::from).collect();
        println!("{}", serde_json::to_string_pretty(&docs)?);
        return Ok(EXIT_OK);
    }
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(vec!["ID", "Runbook", "Version", "Status", "Started", "Duration", "Actor", "Error"]);
    for e in &list {
        let started = opsbook_api::time(e.started_at.or(Some(e.created_at)));
        t.add_row(vec![
            Cell::new(&e.id),
            Cell::new(&e.runbook_name),
            Cell::new(&e.runbook_version),
            exec_cell(e.status),
            Cell::new(started.as_deref().unwrap_or_default().chars().take(19).collect::<String>().replace('T', " ")),
            Cell::new(e.duration_ms().map(|d| human_ms(u64::try_from(d).unwrap_or(0))).unwrap_or_default()),
            Cell::new(&e.actor),
            Cell::new(truncate(e.error.as_deref().unwrap_or_default(), 60)),
        ]);
    }
    println!("{t}");
    Ok(EXIT_OK)
}
