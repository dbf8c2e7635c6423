//! `opsbook schedules list|create|delete`: the server's schedules.

use anyhow::Result;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use opsbook_api::{Deleted, Items, NewSchedule, Schedule};

use super::EXIT_OK;
use crate::Output;
use crate::client::{Client, enc};

#[derive(clap::Subcommand, Debug)]
pub enum Schedules {
    /// Every schedule: the runbooks' own and those created here
    List {
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Run a published runbook on a cron schedule
    Create {
        /// The runbook
        runbook: String,
        /// minute hour day-of-month month day-of-week, e.g. "0 3 * * 1-5" (six fields: seconds first)
        #[arg(long)]
        cron: String,
        /// IANA time zone (default UTC)
        #[arg(long)]
        timezone: Option<String>,
        /// Parameters, KEY=VALUE (secrets cannot be scheduled)
        #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// When the previous run is still going: skip (default) or queue
        #[arg(long)]
        overlap: Option<String>,
        /// Runs missed while the server was down: skip (default) or run_once
        #[arg(long)]
        missed: Option<String>,
    },
    /// Delete a schedule created through the API (a runbook's own go with its versions)
    Delete { id: String },
}

pub async fn exec(client: &Client, cmd: &Schedules) -> Result<u8> {
    match cmd {
        Schedules::List { output } => {
            let found: Items<Schedule> = client.get("/api/v1/schedules").await?;
            if *output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&found.items)?);
                return Ok(EXIT_OK);
            }
            let mut t = Table::new();
            t.load_style(UTF8_FULL_CONDENSED);
            let clock = super::history::Clock::new();
            let (next, last) = (format!("Next run ({})", clock.label), format!("Last run ({})", clock.label));
            t.set_header(vec!["ID", "Runbook", "Cron", "Zone", &next, &last, "Last result", "By", "Roles"]);
            let time = |ms: Option<i64>| if ms.is_some() { clock.show(ms) } else { "-".into() };
            for s in &found.items {
                t.add_row(vec![
                    s.id.clone(),
                    s.runbook.clone(),
                    s.cron.clone(),
                    s.timezone.clone(),
                    time(s.next_run_at),
                    time(s.last_run_at),
                    s.last_result.clone().unwrap_or_default(),
                    s.created_by.clone(),
                    // A schedule without recorded roles runs with its creator's of now.
                    s.roles.as_ref().map_or_else(|| "(creator's)".into(), |r| r.join(", ")),
                ]);
            }
            println!("{t}");
        }
        Schedules::Create { runbook, cron, timezone, params, overlap, missed } => {
            let params = super::as_json(super::collect_params(params, None)?).into_iter().collect();
            let body = NewSchedule {
                runbook: runbook.clone(),
                cron: cron.clone(),
                timezone: timezone.clone(),
                params,
                overlap: overlap.clone(),
                missed: missed.clone(),
            };
            let s: Schedule = client.post("/api/v1/schedules", &body).await?;
            // The next run in the schedule's own zone, as its cron reads.
            let next = s
                .next_run_at
                .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                .zip(jiff::tz::TimeZone::get(&s.timezone).ok())
                .map(|(t, tz)| {
                    // Seconds only for a cron that has them (six fields or more).
                    let format = if s.cron.split_whitespace().count() > 5 {
                        "%Y-%m-%d %H:%M:%S %Z"
                    } else {
                        "%Y-%m-%d %H:%M %Z"
                    };
                    t.to_zoned(tz).strftime(format).to_string()
                })
                .or_else(|| super::history::Clock::new().show_zoned(s.next_run_at))
                .unwrap_or_else(|| "never".into());
            println!("schedule {} runs {} at `{}` ({}); next run {next}", s.id, s.runbook, s.cron, s.timezone);
        }
        Schedules::Delete { id } => {
            if id.trim().is_empty() {
                return Err(super::usage(
                    "schedules delete: give the id of a schedule (`opsbook schedules list` shows them)",
                ));
            }
            let done: Deleted = client.delete(&format!("/api/v1/schedules/{}", enc(id))).await?;
            println!("deleted schedule {}", done.id);
        }
    }
    Ok(EXIT_OK)
}
