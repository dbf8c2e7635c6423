//! `opsbook report [--since D] [--runbook R] [--output table|csv|json]`: the server's
//! KPIs: success rate and its trend, durations, change failure rate, MTTR, adoption,
//! reviews, feedback and time saved.

use anyhow::Result;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use opsbook_api::{Analytics, RunbookFigures};

use super::EXIT_OK;
use super::insights::percent;
use crate::client::{Client, enc};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this runbook
    #[arg(long)]
    pub runbook: Option<String>,
    /// From this time (RFC 3339, a date, or a duration ago such as 30d; default 90 days)
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub output: Format,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Table,
    Csv,
    Json,
}

fn points(trend: Option<f64>) -> String {
    trend.map(|t| format!("{:+.0} pts", t * 100.0)).unwrap_or_else(|| "-".into())
}

fn ms(v: Option<i64>) -> String {
    match v {
        Some(d) if d < 0 => format!("-{}", opsbook_core::duration::human_ms(d.unsigned_abs())),
        Some(d) => opsbook_core::duration::human_ms(d.unsigned_abs()),
        None => "-".into(),
    }
}

pub async fn exec(client: &Client, a: &Args) -> Result<u8> {
    let mut q = Vec::new();
    if let Some(r) = &a.runbook {
        q.push(format!("runbook={}", enc(r)));
    }
    if let Some(s) = &a.since {
        q.push(format!("since={}", super::history::since_ms(s)?));
    }
    let doc: Analytics = client.get(&format!("/api/v1/analytics?{}", q.join("&"))).await?;
    match a.output {
        Format::Json => say!("{}", serde_json::to_string_pretty(&doc)?),
        Format::Csv => print!("{}", csv(&doc)),
        Format::Table => table(&doc),
    }
    Ok(EXIT_OK)
}

/// One line per runbook, raw values (rates as fractions, durations in ms), for
/// spreadsheets and scripts.
pub fn csv(doc: &Analytics) -> String {
    let header = "runbook,type,runs,finished,succeeded,success_rate,success_trend,p50_ms,p95_ms,\
                  change_failure_rate,rollback_rate,mttr_ms,runs_per_week,distinct_users,time_saved_ms,\
                  rating_avg,ratings,review,review_due,needs_attention";
    let mut out = format!("{header}\n");
    let opt = |v: Option<String>| v.unwrap_or_default();
    for f in &doc.runbooks {
        let fields = [
            f.runbook.clone(),
            f.runbook_type.clone(),
            f.runs.to_string(),
            f.finished.to_string(),
            f.succeeded.to_string(),
            opt(f.success_rate.map(|v| v.to_string())),
            opt(f.success_trend.map(|v| v.to_string())),
            opt(f.p50_duration_ms.map(|v| v.to_string())),
            opt(f.p95_duration_ms.map(|v| v.to_string())),
            opt(f.change_failure_rate.flatten().map(|v| v.to_string())),
            opt(f.rollback_rate.map(|v| v.to_string())),
            opt(f.mttr_ms.flatten().map(|v| v.to_string())),
            f.runs_per_week.to_string(),
            f.distinct_users.to_string(),
            opt(f.time_saved_ms.map(|v| v.to_string())),
            opt(f.rating_avg.map(|v| v.to_string())),
            f.ratings.to_string(),
            f.review.clone(),
            opt(f.review_due.clone()),
            f.attention.join("; "),
        ];
        let line: Vec<String> = fields.iter().map(|v| field(v)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// A CSV field, quoted when it must be (RFC 4180).
fn field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v.to_string() }
}

fn table(doc: &Analytics) {
    let t = &doc.totals;
    let trend = match t.weekly.as_slice() {
        [.., a, b] => b.success_rate.zip(a.success_rate).map(|(b, a)| b - a),
        _ => None,
    };
    say!("KPIs since {}", doc.since.as_deref().unwrap_or("?"));
    say!(
        "  {} runs ({} finished) by {} people; success rate {} ({} week over week)",
        t.runs,
        t.finished,
        t.distinct_users,
        percent(t.success_rate),
        points(trend)
    );
    say!(
        "  change failure rate {}; MTTR {}; time saved {}",
        percent(t.change_failure_rate),
        ms(t.mttr_ms),
        ms(Some(t.time_saved_ms))
    );
    let mut rows = Table::new();
    rows.load_style(UTF8_FULL_CONDENSED);
    rows.set_header(vec![
        "Runbook", "Runs", "Success", "Trend", "p50", "p95", "CFR", "MTTR", "Users", "Saved", "Rating", "Review",
    ]);
    for f in &doc.runbooks {
        rows.add_row(row(f));
    }
    say!("{rows}");
    if !t.weekly.is_empty() {
        let mut weeks = Table::new();
        weeks.load_style(UTF8_FULL_CONDENSED);
        weeks.set_header(vec!["Week of", "Runs", "Users", "Success"]);
        for w in t.weekly.iter().filter(|w| w.runs > 0) {
            weeks.add_row(vec![
                w.week.clone(),
                w.runs.to_string(),
                w.distinct_users.to_string(),
                percent(w.success_rate),
            ]);
        }
        say!("Adoption\n{weeks}");
    }
    if !doc.never_run_90d.is_empty() {
        say!("Not run in 90 days: {}", doc.never_run_90d.join(", "));
    }
    for r in &doc.review_overdue {
        let due = r.due.as_deref().map(|d| format!("due {d}")).unwrap_or_else(|| "never reviewed".into());
        let owner = r.owner.as_deref().map(|o| format!(" (owner {o})")).unwrap_or_default();
        say!("Review overdue: {} — {due}{owner}", r.runbook);
    }
    for a in &doc.needs_attention {
        say!("Needs attention: {} — {}", a.runbook, a.reasons.join("; "));
    }
    for f in &doc.runbooks {
        for c in &f.recent_comments {
            let comment = opsbook_core::terminal::plain_line(&c.comment);
            say!("Comment on {} ({}/5 by {}): {comment}", f.runbook, c.rating, c.user);
        }
    }
}

fn row(f: &RunbookFigures) -> Vec<String> {
    let review = match (f.review.as_str(), &f.review_due) {
        ("overdue", Some(d)) => format!("overdue since {d}"),
        ("never", _) => "never reviewed".into(),
        ("ok", Some(d)) => format!("due {d}"),
        _ => "-".into(),
    };
    let rating = f.rating_avg.map(|r| format!("{r:.1} ({})", f.ratings)).unwrap_or_else(|| "-".into());
    vec![
        f.runbook.clone(),
        f.runs.to_string(),
        percent(f.success_rate),
        points(f.success_trend),
        ms(f.p50_duration_ms),
        ms(f.p95_duration_ms),
        f.change_failure_rate.map(percent).unwrap_or_else(|| "-".into()),
        f.mttr_ms.map(ms).unwrap_or_else(|| "-".into()),
        f.distinct_users.to_string(),
        ms(f.time_saved_ms),
        rating,
        review,
    ]
}
