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
    /// At most this many executions, newest first
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    /// How to print: text for people, or json (one document on stdout) for programs
    #[arg(long, value_enum, default_value_t)]
    pub output: crate::Output,
}

/// How the CLI shows times: in this machine's zone, or in UTC with `--utc`, the zone
/// named once in a table's header (`label`) or with each time (`show_zoned`).
pub struct Clock {
    zone: jiff::tz::TimeZone,
    pub label: String,
}

/// `--utc`, set once at start.
static UTC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Clock {
    pub fn set_utc(utc: bool) {
        UTC.store(utc, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn new() -> Clock {
        let utc = UTC.load(std::sync::atomic::Ordering::Relaxed);
        let zone = if utc { jiff::tz::TimeZone::UTC } else { jiff::tz::TimeZone::system() };
        let label = match zone.iana_name() {
            Some(name) => name.to_string(),
            None if utc => "UTC".into(),
            None => jiff::Timestamp::now().to_zoned(zone.clone()).strftime("%Z").to_string(),
        };
        Clock { zone, label }
    }

    /// An epoch-ms time in this clock's zone.
    fn zoned(&self, ms: Option<i64>) -> Option<jiff::Zoned> {
        Some(jiff::Timestamp::from_millisecond(ms?).ok()?.to_zoned(self.zone.clone()))
    }

    /// An RFC 3339 time (as the API sends them) as epoch milliseconds.
    fn ms_of(text: Option<&str>) -> Option<i64> {
        text?.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
    }

    /// `2026-12-02 09:14:03` in this clock's zone.
    pub fn show(&self, ms: Option<i64>) -> String {
        self.zoned(ms).map(|z| z.strftime("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()
    }

    /// The same for an RFC 3339 time; empty for none or one that does not read.
    pub fn show_text(&self, text: Option<&str>) -> String {
        self.show(Clock::ms_of(text))
    }

    /// `2026-12-02 10:14:03 CET`: with the zone, for a time shown alone.
    pub fn show_zoned(&self, ms: Option<i64>) -> Option<String> {
        self.zoned(ms).map(|z| z.strftime("%Y-%m-%d %H:%M:%S %Z").to_string())
    }

    /// The same for an RFC 3339 time; `-` for none.
    pub fn show_text_zoned(&self, text: Option<&str>) -> String {
        self.show_zoned(Clock::ms_of(text)).unwrap_or_else(|| "-".into())
    }

    /// `2026-12-02T10:14:03.512+01:00`: a log line's time, to the millisecond (`Z` when
    /// the zone is at UTC's offset).
    pub fn stamp(&self, ms: i64) -> Option<String> {
        let z = self.zoned(Some(ms))?;
        Some(if z.offset() == jiff::tz::Offset::UTC {
            z.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
        } else {
            z.strftime("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
        })
    }
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
    match opsbook_core::duration::parse(t) {
        Ok(d) => {
            let ago = i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX);
            return Ok(opsbook_store::now_ms().saturating_sub(ago));
        }
        // A duration, but one out of range (`99999d`): that is what to say.
        Err(e) if !e.contains("expected a number") => return Err(usage(format!("--since: {e}"))),
        Err(_) => {}
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
    let clock = Clock::new();
    let started_in = format!("Started ({})", clock.label);
    t.set_header(vec!["ID", "Runbook", "Version", "Status", &started_in, "Duration", "Actor", "Error"]);
    for e in &list {
        let started = clock.show(e.started_at.or(Some(e.created_at)));
        t.add_row(vec![
            Cell::new(&e.id),
            // A child names the execution (and step) that started it.
            Cell::new(match (&e.parent_id, &e.parent_step) {
                (Some(p), Some(step)) => format!("{} (child of {p}, step {step})", e.runbook_name),
                _ => e.runbook_name.clone(),
            }),
            Cell::new(&e.runbook_version),
            exec_cell(e.status),
            Cell::new(started),
            Cell::new(e.duration_ms().map(|d| human_ms(u64::try_from(d).unwrap_or(0))).unwrap_or_default()),
            Cell::new(&e.actor),
            Cell::new(truncate(e.error.as_deref().unwrap_or_default(), 60)),
        ]);
    }
    println!("{t}");
    if list.is_empty() {
        eprintln!("no execution matches");
    }
    Ok(EXIT_OK)
}
