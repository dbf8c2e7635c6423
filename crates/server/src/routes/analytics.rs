//! `GET /api/v1/analytics?runbook=&since=`: how runbooks are used and how they fare.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::State;
use opsbook_api::{Analytics, Attention, Comment, ReviewOverdue, RunbookFigures, Totals, WeekFigures};
use opsbook_store::{AnalyticsRow, Feedback, RunbookQuery, ServerStore, now_ms};
use serde::Deserialize;

use crate::auth::{Ctx, Perm};
use crate::error::{ApiError, ApiQuery, ApiResult};
use crate::service::quality::{ReviewState, review_state};
use crate::state::AppState;

const WEEK_MS: f64 = 7.0 * 86_400_000.0;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsQuery {
    runbook: Option<String>,
    /// RFC 3339 time or epoch ms; default: 90 days ago.
    since: Option<String>,
}

/// The value at quantile `q` of sorted values (nearest rank).
fn percentile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// What summarizing a runbook needs besides its executions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Meta<'a> {
    /// `deployment`, `incident_response`, … (empty when unknown).
    pub runbook_type: &'a str,
    /// `metadata.manual_duration`, in ms.
    pub manual_duration_ms: Option<i64>,
    /// Its executions' ratings in the window, oldest first.
    pub feedback: &'a [(String, Feedback)],
}

fn finished(r: &AnalyticsRow) -> bool {
    matches!(r.status.as_str(), "succeeded" | "failed" | "cancelled" | "interrupted")
}

fn duration(r: &AnalyticsRow) -> Option<i64> {
    Some(r.finished_at? - r.started_at?).filter(|d| *d >= 0)
}

/// `n` of `of`, to three decimals (null when `of` is 0).
fn ratio(n: usize, of: usize) -> Option<f64> {
    (of > 0).then(|| (n as f64 / of as f64 * 1000.0).round() / 1000.0)
}

/// The window week by week, oldest first: the last seven days before `now`, the seven
/// before, … back to `window_start` (at most 53 weeks).
pub fn weekly(rows: &[&AnalyticsRow], window_start: i64, now: i64) -> Vec<WeekFigures> {
    let week = WEEK_MS as i64;
    let n = ((now - window_start).max(1) + week - 1) / week;
    (0..n.min(53))
        .rev()
        .map(|back| {
            let (from, to) = (now - (back + 1) * week, now - back * week);
            let inside: Vec<&&AnalyticsRow> =
                rows.iter().filter(|r| r.created_at >= from && r.created_at < to).collect();
            let done = inside.iter().filter(|r| finished(r)).count();
            let ok = inside.iter().filter(|r| r.status == "succeeded").count();
            let users: BTreeSet<&str> = inside.iter().map(|r| r.actor.as_str()).filter(|a| is_person(a)).collect();
            WeekFigures {
                week: opsbook_api::time(Some(from)).map(|t| t.chars().take(10).collect()).unwrap_or_default(),
                runs: inside.len(),
                finished: done,
                succeeded: ok,
                success_rate: ratio(ok, done),
                distinct_users: users.len(),
            }
        })
        .collect()
}

/// Deployment runs that failed or were rolled back, of those finished.
fn change_failures(finished: &[&AnalyticsRow]) -> Option<f64> {
    let bad = finished.iter().filter(|r| r.status != "succeeded" || r.rolled_back).count();
    ratio(bad, finished.len())
}

/// The mean duration of successful runs (an incident response's time to recovery).
fn mean_recovery(finished: &[&AnalyticsRow]) -> Option<i64> {
    let recovered: Vec<i64> = finished.iter().filter(|r| r.status == "succeeded").filter_map(|r| duration(r)).collect();
    (!recovered.is_empty()).then(|| recovered.iter().sum::<i64>() / recovered.len() as i64)
}

/// The figures of one runbook's executions over the window.
pub fn summarize(runbook: &str, rows: &[AnalyticsRow], window_start: i64, now: i64, meta: Meta<'_>) -> RunbookFigures {
    let all: Vec<&AnalyticsRow> = rows.iter().collect();
    let done: Vec<&AnalyticsRow> = rows.iter().filter(|r| finished(r)).collect();
    let succeeded = done.iter().filter(|r| r.status == "succeeded").count();
    let mut durations: Vec<i64> = done.iter().filter_map(|r| duration(r)).collect();
    durations.sort_unstable();
    let first = rows.iter().map(|r| r.created_at).min().unwrap_or(now).max(window_start);
    let weeks = ((now - first) as f64 / WEEK_MS).max(1.0);
    let users: BTreeSet<&str> = rows.iter().map(|r| r.actor.as_str()).filter(|a| is_person(a)).collect();
    let weekly = weekly(&all, window_start, now);
    let last_two = weekly.len().checked_sub(2).map(|i| (&weekly[i], &weekly[i + 1]));
    let success_trend =
        last_two.and_then(|(a, b)| Some(((b.success_rate? - a.success_rate?) * 1000.0).round() / 1000.0));
    let time_saved_ms = meta.manual_duration_ms.map(|manual| {
        done.iter().filter(|r| r.status == "succeeded").filter_map(|r| duration(r)).map(|d| manual - d).sum()
    });
    let ratings: Vec<&Feedback> = meta.feedback.iter().map(|(_, f)| f).collect();
    let rating_avg = (!ratings.is_empty()).then(|| {
        let sum: u32 = ratings.iter().map(|f| u32::from(f.rating)).sum();
        (f64::from(sum) / ratings.len() as f64 * 100.0).round() / 100.0
    });
    let recent_comments = ratings
        .iter()
        .rev()
        .filter_map(|f| {
            Some(Comment {
                execution: f.execution_id.clone(),
                user: f.user.clone(),
                rating: f.rating,
                comment: f.comment.clone()?,
                at: opsbook_api::time(Some(f.at)),
            })
        })
        .take(5)
        .collect();
    let mut attention = Vec::new();
    if let Some(avg) = rating_avg.filter(|a| *a < 3.0) {
        attention.push(format!("average rating {avg} is below 3"));
    }
    if let Some((a, b)) = last_two {
        let failing = |w: &WeekFigures| ratio(w.finished - w.succeeded, w.finished);
        if let (Some(before), Some(now)) = (failing(a), failing(b))
            && b.finished >= 2
            && now > before
        {
            let pct = |x: f64| format!("{}%", (x * 100.0).round());
            attention.push(format!("failure rate rose from {} to {} week over week", pct(before), pct(now)));
        }
    }
    RunbookFigures {
        runbook: runbook.to_string(),
        runs: rows.len(),
        finished: done.len(),
        succeeded,
        success_rate: ratio(succeeded, done.len()),
        p50_duration_ms: percentile(&durations, 0.5),
        p95_duration_ms: percentile(&durations, 0.95),
        runs_per_week: ((rows.len() as f64 / weeks) * 100.0).round() / 100.0,
        distinct_users: users.len(),
        rollback_rate: ratio(done.iter().filter(|r| r.rolled_back).count(), done.len()),
        mttr_ms: (meta.runbook_type == "incident_response").then(|| mean_recovery(&done)),
        runbook_type: meta.runbook_type.to_string(),
        change_failure_rate: (meta.runbook_type == "deployment").then(|| change_failures(&done)),
        success_trend,
        weekly,
        time_saved_ms,
        rating_avg,
        ratings: ratings.len(),
        recent_comments,
        review: String::new(),
        review_due: None,
        attention,
    }
}

#[utoipa::path(get, path = "/api/v1/analytics", tag = "analytics", params(AnalyticsQuery), responses((status = 200, description = "Per-runbook figures and overdue reviews", body = opsbook_api::Analytics), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn analytics(
    State(st): State<AppState>,
    ctx: Ctx,
    ApiQuery(q): ApiQuery<AnalyticsQuery>,
) -> ApiResult<Json<Analytics>> {
    ctx.require(&st, Perm::Read, "analytics").await?;
    let since = match q.since.as_deref() {
        Some(s) => s
            .parse::<i64>()
            .ok()
            .or_else(|| s.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond()))
            .ok_or_else(|| ApiError::param("since", format!("since: `{s}` is not a time")))?,
        None => now_ms() - 90 * 86_400_000,
    };
    // A misspelt name is not a runbook that never ran.
    if let Some(name) = &q.runbook
        && let Err(opsbook_store::Error::NotFound(_)) = st.store.registry_entry(name).await
    {
        return Err(ApiError::not_found(format!("runbook `{name}` not found")));
    }
    Ok(Json(figures(&st, since, q.runbook.as_deref()).await?))
}

/// Whether an execution's actor is a person: not a schedule or a trigger starting it
/// (`schedule:ID`, `trigger:NAME`), which adoption figures do not count as users.
fn is_person(actor: &str) -> bool {
    !actor.starts_with("schedule:") && !actor.starts_with("trigger:")
}

/// The figures of every runbook (or one) since `since`, and the overdue reviews: what
/// the API answers, `opsbook report` prints and the web UI draws.
pub async fn figures(st: &AppState, since: i64, runbook: Option<&str>) -> ApiResult<Analytics> {
    let now = now_ms();
    // Adoption looks 90 days back whatever the window: read that far at least.
    let horizon = now - 90 * 86_400_000;
    let rows = st.store.analytics_rows(since.min(horizon), runbook).await?;
    let ran_lately: BTreeSet<&str> =
        rows.iter().filter(|r| r.created_at >= horizon).map(|r| r.runbook.as_str()).collect();
    let rows: Vec<&AnalyticsRow> = rows.iter().filter(|r| r.created_at >= since).collect();
    let mut by_runbook: BTreeMap<&str, Vec<AnalyticsRow>> = BTreeMap::new();
    for r in &rows {
        by_runbook.entry(r.runbook.as_str()).or_default().push((*r).clone());
    }
    let feedback = st.store.feedback_since(since, runbook).await?;
    let registry = st.store.registry(&RunbookQuery::default()).await?;
    let reviews = st.store.reviews(runbook).await?;
    let today = jiff::Zoned::now().date();
    let mut texts = BTreeMap::new();
    for e in registry.iter().filter(|e| runbook.is_none_or(|r| r == e.name)) {
        if let Ok(rb) = st.engine.stored_runbook(&e.latest_sha256).await {
            texts.insert(e.name.as_str(), rb);
        }
    }
    let mut runbooks = Vec::new();
    let mut time_saved_ms = 0;
    for (name, rows) in &by_runbook {
        let entry = registry.iter().find(|e| e.name == *name);
        let rb = texts.get(name);
        let ratings: Vec<(String, Feedback)> = feedback.iter().filter(|(r, _)| r == name).cloned().collect();
        let meta = Meta {
            runbook_type: entry.map(|e| e.runbook_type.as_str()).unwrap_or_default(),
            manual_duration_ms: rb.and_then(|rb| rb.manual_duration).and_then(|d| i64::try_from(d.0.as_millis()).ok()),
            feedback: &ratings,
        };
        let f = summarize(name, rows, since, now, meta);
        time_saved_ms += f.time_saved_ms.unwrap_or(0);
        runbooks.push(f);
    }
    // Where each runbook's review stands, from its newest published text and reviews.
    let mut overdue = Vec::new();
    for e in registry.iter().filter(|e| runbook.is_none_or(|r| r == e.name)) {
        let Some(rb) = texts.get(e.name.as_str()) else { continue };
        let last = reviews.iter().rev().find(|r| r.name == e.name);
        let state = review_state(rb.review.as_ref(), last, today);
        let (word, due) = match state {
            ReviewState::NoCycle => ("", None),
            ReviewState::Never => ("never", None),
            ReviewState::Overdue(d) => ("overdue", Some(d.to_string())),
            ReviewState::Due(d) => ("ok", Some(d.to_string())),
        };
        if state.overdue() {
            overdue.push(ReviewOverdue { runbook: e.name.clone(), due: due.clone(), owner: e.owner.clone() });
        }
        if let Some(f) = runbooks.iter_mut().find(|f| f.runbook == e.name) {
            f.review = word.to_string();
            f.review_due = due;
        }
    }
    let needs_attention = runbooks
        .iter()
        .filter(|f| !f.attention.is_empty())
        .map(|f| Attention { runbook: f.runbook.clone(), reasons: f.attention.clone() })
        .collect();
    let never_run_90d = registry
        .iter()
        .filter(|e| runbook.is_none_or(|r| r == e.name))
        .filter(|e| matches!(e.status.as_str(), "active" | "deprecated") && !ran_lately.contains(e.name.as_str()))
        .map(|e| e.name.clone())
        .collect();
    let type_of = |name: &str| registry.iter().find(|e| e.name == name).map(|e| e.runbook_type.as_str());
    let done: Vec<&AnalyticsRow> = rows.iter().copied().filter(|r| finished(r)).collect();
    let of_type =
        |t: &str| -> Vec<&AnalyticsRow> { done.iter().copied().filter(|r| type_of(&r.runbook) == Some(t)).collect() };
    let users: BTreeSet<&str> = rows.iter().map(|r| r.actor.as_str()).filter(|a| is_person(a)).collect();
    let totals = Totals {
        runs: rows.len(),
        finished: done.len(),
        success_rate: ratio(done.iter().filter(|r| r.status == "succeeded").count(), done.len()),
        change_failure_rate: change_failures(&of_type("deployment")),
        mttr_ms: mean_recovery(&of_type("incident_response")),
        distinct_users: users.len(),
        time_saved_ms,
        weekly: weekly(&rows, since, now),
    };
    Ok(Analytics {
        since: opsbook_api::time(Some(since)),
        runbooks,
        review_overdue: overdue,
        totals,
        needs_attention,
        never_run_90d,
    })
}

/// How long the web UI shows figures before summarizing again.
const FRESH_MS: i64 = 60_000;

/// Figures over the last N days, for pages: summarizing a million executions takes the
/// better part of a second, so each window's figures are kept a minute; past that they
/// are still shown while one refresh runs behind them. (The API always summarizes anew.)
#[derive(Default)]
pub struct FiguresCache {
    entries: std::sync::Mutex<BTreeMap<(i64, Option<String>), Entry>>,
}

struct Entry {
    at: i64,
    figures: std::sync::Arc<Analytics>,
    refreshing: bool,
}

/// The figures of the last `days` days (of every runbook, or one) and when they were
/// summarized.
pub async fn cached(st: &AppState, days: i64, runbook: Option<&str>) -> ApiResult<(i64, std::sync::Arc<Analytics>)> {
    let now = now_ms();
    let key = (days, runbook.map(str::to_string));
    let stale = {
        let mut entries = st.figures.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get_mut(&key) {
            Some(e) if now - e.at < FRESH_MS => return Ok((e.at, e.figures.clone())),
            Some(e) => {
                let started = !e.refreshing;
                e.refreshing = true;
                Some((e.at, e.figures.clone(), started))
            }
            None => None,
        }
    };
    let refresh = move |st: AppState, key: (i64, Option<String>)| async move {
        let figures = std::sync::Arc::new(figures(&st, now_ms() - key.0 * 86_400_000, key.1.as_deref()).await?);
        let entry = Entry { at: now_ms(), figures: figures.clone(), refreshing: false };
        st.figures.entries.lock().unwrap_or_else(|p| p.into_inner()).insert(key, entry);
        Ok::<_, ApiError>(figures)
    };
    match stale {
        Some((at, figures, started)) => {
            if started {
                let st = st.clone();
                tokio::spawn(async move {
                    if let Err(e) = refresh(st.clone(), key.clone()).await {
                        tracing::warn!(error = %e.message, "cannot summarize the analytics");
                        let mut entries = st.figures.entries.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(e) = entries.get_mut(&key) {
                            e.refreshing = false;
                        }
                    }
                });
            }
            Ok((at, figures))
        }
        None => Ok((now_ms(), refresh(st.clone(), key).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str, actor: &str, start: i64, dur: i64, rolled: bool) -> AnalyticsRow {
        AnalyticsRow {
            runbook: "r".into(),
            status: status.into(),
            actor: actor.into(),
            created_at: start,
            started_at: Some(start),
            finished_at: Some(start + dur),
            rolled_back: rolled,
        }
    }

    #[test]
    fn summarizes() {
        let week = WEEK_MS as i64;
        let rows = vec![
            row("succeeded", "a", 0, 100, false),
            row("succeeded", "b", 10, 200, false),
            row("failed", "a", 20, 300, true),
            row("succeeded", "c", 30, 400, false),
        ];
        let incident = Meta { runbook_type: "incident_response", ..Meta::default() };
        let f = summarize("r", &rows, 0, 2 * week, incident);
        assert_eq!(f.runs, 4);
        assert_eq!(f.success_rate, Some(0.75));
        assert_eq!(f.p50_duration_ms, Some(200));
        assert_eq!(f.p95_duration_ms, Some(400));
        assert_eq!(f.runs_per_week, 2.0);
        assert_eq!(f.distinct_users, 3);
        assert_eq!(f.rollback_rate, Some(0.25));
        // Runs a schedule or a trigger started are runs, not users.
        let mut more = rows.clone();
        more.push(row("succeeded", "schedule:r#1", 40, 400, false));
        more.push(row("succeeded", "trigger:alarm", 50, 400, false));
        let g = summarize("r", &more, 0, 2 * week, Meta::default());
        assert_eq!((g.runs, g.distinct_users), (6, 3));
        assert_eq!(f.mttr_ms, Some(Some(233)));
        // Not an incident response: no time to recovery at all (not even null).
        let doc = serde_json::to_value(summarize("r", &rows, 0, 2 * week, Meta::default())).unwrap();
        assert!(doc.get("mttr_ms").is_none(), "{doc}");
    }

    #[test]
    fn kpis_trend_and_attention() {
        let (week, now) = (WEEK_MS as i64, 4 * WEEK_MS as i64);
        // The week before last: 3 succeeded. The last week: 1 succeeded, 2 failed (one rolled back).
        let rows = vec![
            row("succeeded", "a", now - week - 3_000_000, 60_000, false),
            row("succeeded", "a", now - week - 2_000_000, 120_000, false),
            row("succeeded", "b", now - week - 1_000_000, 60_000, false),
            row("succeeded", "c", now - 3_000_000, 60_000, false),
            row("failed", "c", now - 2_000_000, 30_000, true),
            row("failed", "d", now - 1_000_000, 30_000, false),
        ];
        let fb = |rating, comment: Option<&str>, at| {
            let f =
                Feedback { execution_id: "E".into(), user: "u".into(), rating, comment: comment.map(Into::into), at };
            ("r".to_string(), f)
        };
        let feedback = vec![fb(2, Some("confusing step 3"), 1), fb(3, None, 2), fb(1, Some("broke prod"), 3)];
        let meta = Meta { runbook_type: "deployment", manual_duration_ms: Some(600_000), feedback: &feedback };
        let f = summarize("r", &rows, 0, now, meta);
        assert_eq!(f.weekly.len(), 4);
        let last = &f.weekly[3];
        assert_eq!((last.runs, last.finished, last.succeeded, last.distinct_users), (3, 3, 1, 2));
        assert_eq!(f.weekly[2].success_rate, Some(1.0));
        assert_eq!(f.success_trend, Some(-0.667));
        assert_eq!(f.change_failure_rate, Some(Some(0.333)), "2 of 6 failed or rolled back");
        // 4 successes of 60 s, 120 s, 60 s, 60 s against 10 minutes by hand.
        assert_eq!(f.time_saved_ms, Some(4 * 600_000 - 300_000));
        assert_eq!(f.rating_avg, Some(2.0));
        assert_eq!(f.ratings, 3);
        let comments: Vec<&str> = f.recent_comments.iter().map(|c| c.comment.as_str()).collect();
        assert_eq!(comments, ["broke prod", "confusing step 3"], "newest first, only those with a comment");
        assert_eq!(f.attention, ["average rating 2 is below 3", "failure rate rose from 0% to 67% week over week"]);
        // No estimate, no time saved; not a deployment, no change failure rate.
        let plain = summarize("r", &rows, 0, now, Meta::default());
        assert_eq!((plain.time_saved_ms, plain.change_failure_rate), (None, None));
        assert!(plain.attention.iter().all(|a| !a.contains("rating")));
    }
}
