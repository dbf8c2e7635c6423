//! `GET /api/v1/analytics?runbook=&since=`: how runbooks are used and how they fare.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::State;
use opsbook_api::{Analytics, ReviewOverdue, RunbookFigures};
use opsbook_store::{AnalyticsRow, RunbookQuery, ServerStore, now_ms};
use serde::Deserialize;

use crate::auth::{Ctx, Perm};
use crate::error::{ApiError, ApiQuery, ApiResult};
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

/// The figures of one runbook's executions over the window.
pub fn summarize(runbook: &str, rows: &[AnalyticsRow], window_start: i64, now: i64, incident: bool) -> RunbookFigures {
    let finished: Vec<&AnalyticsRow> = rows
        .iter()
        .filter(|r| matches!(r.status.as_str(), "succeeded" | "failed" | "cancelled" | "interrupted"))
        .collect();
    let succeeded = finished.iter().filter(|r| r.status == "succeeded").count();
    let mut durations: Vec<i64> =
        finished.iter().filter_map(|r| Some(r.finished_at? - r.started_at?)).filter(|d| *d >= 0).collect();
    durations.sort_unstable();
    let first = rows.iter().map(|r| r.created_at).min().unwrap_or(now).max(window_start);
    let weeks = ((now - first) as f64 / WEEK_MS).max(1.0);
    let users: BTreeSet<&str> = rows.iter().map(|r| r.actor.as_str()).collect();
    let rate = |n: usize| (!finished.is_empty()).then(|| (n as f64 / finished.len() as f64 * 1000.0).round() / 1000.0);
    // Time to recovery: how long a successful incident response took, on average.
    let mttr_ms = incident.then(|| {
        let recovered: Vec<i64> = finished
            .iter()
            .filter(|r| r.status == "succeeded")
            .filter_map(|r| Some(r.finished_at? - r.started_at?))
            .collect();
        (!recovered.is_empty()).then(|| recovered.iter().sum::<i64>() / recovered.len() as i64)
    });
    RunbookFigures {
        runbook: runbook.to_string(),
        runs: rows.len(),
        finished: finished.len(),
        succeeded,
        success_rate: rate(succeeded),
        p50_duration_ms: percentile(&durations, 0.5),
        p95_duration_ms: percentile(&durations, 0.95),
        runs_per_week: ((rows.len() as f64 / weeks) * 100.0).round() / 100.0,
        distinct_users: users.len(),
        rollback_rate: rate(finished.iter().filter(|r| r.rolled_back).count()),
        mttr_ms,
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
            .ok_or_else(|| ApiError::bad_request(format!("since: `{s}` is not a time")))?,
        None => now_ms() - 90 * 86_400_000,
    };
    Ok(Json(figures(&st, since, q.runbook.as_deref()).await?))
}

/// The figures of every runbook (or one) since `since`, and the overdue reviews: what
/// the API answers and the web UI draws.
pub async fn figures(st: &AppState, since: i64, runbook: Option<&str>) -> ApiResult<Analytics> {
    let now = now_ms();
    let rows = st.store.analytics_rows(since, runbook).await?;
    let mut by_runbook: BTreeMap<&str, Vec<AnalyticsRow>> = BTreeMap::new();
    for r in &rows {
        by_runbook.entry(r.runbook.as_str()).or_default().push(r.clone());
    }
    let registry = st.store.registry(&RunbookQuery::default()).await?;
    let kind_of = |name: &str| registry.iter().find(|e| e.name == name).map(|e| e.runbook_type.clone());
    let runbooks = by_runbook
        .iter()
        .map(|(name, rows)| {
            let incident = kind_of(name).as_deref() == Some("incident_response");
            summarize(name, rows, since, now, incident)
        })
        .collect();
    // Runbooks whose review is overdue, from their newest published text.
    let today = jiff::Zoned::now().date();
    let mut overdue = Vec::new();
    for e in registry.iter().filter(|e| runbook.is_none_or(|r| r == e.name)) {
        let Ok(rb) = st.engine.stored_runbook(&e.latest_sha256).await else { continue };
        match rb.review.as_ref().map(|r| (r.due(), r.last_reviewed)) {
            Some((Some(due), _)) if due < today => overdue.push(ReviewOverdue {
                runbook: e.name.clone(),
                due: Some(due.to_string()),
                owner: e.owner.clone(),
            }),
            Some((None, None)) => {
                overdue.push(ReviewOverdue { runbook: e.name.clone(), due: None, owner: e.owner.clone() })
            }
            _ => {}
        }
    }
    Ok(Analytics { since: opsbook_api::time(Some(since)), runbooks, review_overdue: overdue })
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
        let f = summarize("r", &rows, 0, 2 * week, true);
        assert_eq!(f.runs, 4);
        assert_eq!(f.success_rate, Some(0.75));
        assert_eq!(f.p50_duration_ms, Some(200));
        assert_eq!(f.p95_duration_ms, Some(400));
        assert_eq!(f.runs_per_week, 2.0);
        assert_eq!(f.distinct_users, 3);
        assert_eq!(f.rollback_rate, Some(0.25));
        assert_eq!(f.mttr_ms, Some(Some(233)));
        // Not an incident response: no time to recovery at all (not even null).
        let doc = serde_json::to_value(summarize("r", &rows, 0, 2 * week, false)).unwrap();
        assert!(doc.get("mttr_ms").is_none(), "{doc}");
    }
}
