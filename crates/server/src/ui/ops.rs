//! The operator's other pages: approvals waiting, gates, analytics, audit, schedules.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use opsbook_core::{ExecStatus, StepStatus};
use opsbook_store::{AuditFilter, ExecutionFilter, ServerStore, Store, WaitKind, now_ms};
use serde::Deserialize;

use super::{Layout, Stamp, UiResult, Web, age, escape, render, took};
use crate::auth::Perm;
use crate::state::AppState;

struct Waiting {
    id: String,
    runbook: String,
    actor: String,
    step: String,
    message: String,
    age: String,
    since: Stamp,
    /// Whether this person may decide (eligible, and not the requester).
    mine: bool,
}

#[derive(Template)]
#[template(path = "approvals.html")]
struct ApprovalsPage {
    l: Layout,
    waiting: Vec<Waiting>,
}

/// `GET /approvals`: what waits on an approval, the ones this person may decide first.
pub async fn approvals(State(st): State<AppState>, web: Web) -> UiResult<Response> {
    web.require(&st, Perm::Read, "approvals").await?;
    let filter = ExecutionFilter { status: Some(ExecStatus::Waiting), limit: 500, ..Default::default() };
    let now = now_ms();
    let mut waiting = Vec::new();
    for e in st.store.executions(&filter).await? {
        let Ok(wait) = st.engine.approval_wait(&e.id).await else { continue };
        let since = wait.step.started_at.unwrap_or(e.created_at);
        let mine = web.can(Perm::Approve) && crate::service::may_decide(&st, &web.ctx.principal, &wait).await?.is_ok();
        // What it asks, as rendered when the step began waiting (secrets masked).
        let message = wait.step.rendered.clone();
        waiting.push(Waiting {
            id: e.id.clone(),
            runbook: e.runbook_name.clone(),
            actor: e.actor.clone(),
            step: wait.step.step_id.clone(),
            message: message.unwrap_or_default(),
            age: age(since, now),
            since: Stamp(since),
            mine,
        });
    }
    waiting.sort_by_key(|w| !w.mine);
    render(ApprovalsPage { l: web.layout("approvals"), waiting })
}

struct GateRow {
    name: String,
    sources: usize,
    fail_mode: String,
    /// Executions waiting on it: id, runbook, step, since.
    waiting: Vec<(String, String, String, Stamp)>,
}

#[derive(Template)]
#[template(path = "gates.html")]
struct GatesPage {
    l: Layout,
    gates: Vec<GateRow>,
}

/// `GET /gates`: each gate, and who waits on it; each verdict is checked as the page
/// loads (`/gates/{name}/verdict`), so a slow source does not hold the page.
pub async fn gates(State(st): State<AppState>, web: Web) -> UiResult<Response> {
    web.require(&st, Perm::Read, "gates").await?;
    let defs = st.engine.config.gates.snapshot();
    let filter = ExecutionFilter { status: Some(ExecStatus::Waiting), limit: 500, ..Default::default() };
    let mut waits = Vec::new();
    for e in st.store.executions(&filter).await? {
        let Ok(rb) = st.engine.stored_runbook(&e.runbook_sha256).await else { continue };
        for s in st.store.steps(&e.id).await? {
            if s.status != StepStatus::Waiting || s.wait_kind != Some(WaitKind::Gate) {
                continue;
            }
            let gate = usize::try_from(s.idx).ok().and_then(|i| rb.steps.get(i)).and_then(|step| match &step.kind {
                opsbook_core::StepKind::Gate(g) => Some(g.name().to_string()),
                _ => None,
            });
            if let Some(gate) = gate {
                waits.push((
                    gate,
                    e.id.clone(),
                    e.runbook_name.clone(),
                    s.step_id.clone(),
                    Stamp(s.started_at.unwrap_or(e.created_at)),
                ));
            }
        }
    }
    let gates = defs
        .iter()
        .map(|(name, def)| GateRow {
            name: name.clone(),
            sources: def.sources.len(),
            fail_mode: format!("{:?}", def.fail_mode).to_lowercase(),
            waiting: waits
                .iter()
                .filter(|w| &w.0 == name)
                .map(|w| (w.1.clone(), w.2.clone(), w.3.clone(), w.4))
                .collect(),
        })
        .collect();
    render(GatesPage { l: web.layout("gates"), gates })
}

/// `GET /gates/{name}/verdict`: the gate checked now, as a fragment.
pub async fn verdict(State(st): State<AppState>, web: Web, Path(name): Path<String>) -> UiResult<Response> {
    web.require(&st, Perm::Read, &name).await?;
    let defs = st.engine.config.gates.snapshot();
    let def = defs.get(&name).ok_or_else(|| crate::error::ApiError::not_found(format!("gate `{name}` not found")))?;
    let checker =
        opsbook_gate::Checker::new(std::time::Duration::from_secs(20)).map_err(crate::error::ApiError::internal)?;
    let report = checker.check(&name, def, jiff::Timestamp::now()).await;
    let verdict = report.verdict.as_str();
    let mut html = format!(
        "<span class=\"badge {}\">{verdict}</span> <span class=muted>checked {}</span>",
        if report.passes() { "ok" } else { "bad" },
        Stamp(now_ms())
    );
    let reasons = report.reasons();
    if !reasons.is_empty() {
        html.push_str("<ul class=reasons>");
        for r in reasons {
            html.push_str(&format!("<li>{}</li>", escape(&r)));
        }
        html.push_str("</ul>");
    }
    Ok(Html(html).into_response())
}

struct FigureRow {
    f: opsbook_api::RunbookFigures,
    success: String,
    p50: String,
    p95: String,
    rollback: String,
    mttr: String,
    rating: String,
}

#[derive(Template)]
#[template(path = "analytics.html")]
struct AnalyticsPage {
    l: Layout,
    rows: Vec<FigureRow>,
    overdue: Vec<opsbook_api::ReviewOverdue>,
    attention: Vec<opsbook_api::Attention>,
    never_run: Vec<String>,
    totals: opsbook_api::Totals,
    /// The KPIs over every runbook, in words.
    kpis: Vec<(&'static str, String)>,
    chart_success: String,
    chart_duration: String,
    chart_runs: String,
    window: String,
    days: i64,
    /// When the figures were summarized (at most a minute ago, or being refreshed).
    at: Stamp,
}

#[derive(Deserialize)]
pub struct Window {
    #[serde(default)]
    days: Option<i64>,
}

fn percent(v: Option<f64>) -> String {
    v.map(|v| format!("{:.1} %", v * 100.0)).unwrap_or_else(|| "–".into())
}

/// `GET /analytics`: per runbook, as charts drawn here (inline SVG) and as a table.
pub async fn analytics(State(st): State<AppState>, web: Web, Query(w): Query<Window>) -> UiResult<Response> {
    web.require(&st, Perm::Read, "analytics").await?;
    let days = w.days.unwrap_or(90);
    if !(1..=3650).contains(&days) {
        return Err(crate::error::ApiError::param("days", format!("days: {days} is not from 1 to 3650")).into());
    }
    let (at, a) = crate::routes::analytics::cached(&st, days, None).await?;
    let a = opsbook_api::Analytics::clone(&a);
    let chart_success = super::chart::bars(
        "Success rate",
        " %",
        &a.runbooks.iter().map(|f| (f.runbook.as_str(), f.success_rate.map(|r| r * 100.0))).collect::<Vec<_>>(),
    );
    // Seconds, unless every run is quicker than ten of them.
    let slowest = a.runbooks.iter().filter_map(|f| f.p95_duration_ms).max().unwrap_or(0);
    let (unit, per) = if slowest < 10_000 { (" ms", 1.0) } else { (" s", 1000.0) };
    let chart_duration = super::chart::bars(
        "p95 duration",
        unit,
        &a.runbooks.iter().map(|f| (f.runbook.as_str(), f.p95_duration_ms.map(|d| d as f64 / per))).collect::<Vec<_>>(),
    );
    let chart_runs = super::chart::bars(
        "Runs per week",
        "",
        &a.runbooks.iter().map(|f| (f.runbook.as_str(), Some(f.runs_per_week))).collect::<Vec<_>>(),
    );
    let rows = a
        .runbooks
        .into_iter()
        .map(|f| FigureRow {
            success: percent(f.success_rate),
            p50: f.p50_duration_ms.map(took).unwrap_or_default(),
            p95: f.p95_duration_ms.map(took).unwrap_or_default(),
            rollback: percent(f.rollback_rate),
            mttr: match f.mttr_ms {
                Some(Some(ms)) => took(ms),
                Some(None) => "none yet".into(),
                None => String::new(),
            },
            rating: f.rating_avg.map(|r| format!("{r:.1} ({})", f.ratings)).unwrap_or_default(),
            f,
        })
        .collect();
    let t = &a.totals;
    let kpis = vec![
        ("Success rate", percent(t.success_rate)),
        ("Change failure rate", percent(t.change_failure_rate)),
        ("MTTR", t.mttr_ms.map(took).unwrap_or_else(|| "–".into())),
        ("People", t.distinct_users.to_string()),
        ("Time saved", if t.time_saved_ms > 0 { took(t.time_saved_ms) } else { "–".into() }),
    ];
    render(AnalyticsPage {
        l: web.layout("analytics"),
        rows,
        overdue: a.review_overdue,
        attention: a.needs_attention,
        never_run: a.never_run_90d,
        totals: a.totals,
        kpis,
        chart_success,
        chart_duration,
        chart_runs,
        window: if days == 1 { "last day".to_string() } else { format!("last {days} days") },
        days,
        at: Stamp(at),
    })
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    after: i64,
}

struct AuditRow {
    seq: i64,
    at: Stamp,
    actor: String,
    action: String,
    target: String,
    details: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    l: Layout,
    f: AuditQuery,
    rows: Vec<AuditRow>,
    next: Option<i64>,
    /// The chain's state: Ok(records verified) or what broke it.
    chain: Result<i64, String>,
}

/// `GET /audit` (admin): the trail, oldest first from `after`, and whether its hash
/// chain holds.
pub async fn audit(State(st): State<AppState>, web: Web, Query(f): Query<AuditQuery>) -> UiResult<Response> {
    web.require(&st, Perm::Admin, "audit").await?;
    let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    let limit = 200;
    let filter = AuditFilter {
        actor: some(&f.actor),
        action: some(&f.action),
        target: some(&f.target),
        after_seq: f.after,
        since: None,
        limit,
        newest: false,
    };
    let records = st.store.audit(&filter).await?;
    let next = (records.len() as i64 == limit).then(|| records.last().map(|r| r.seq)).flatten();
    let rows = records
        .into_iter()
        .map(|r| AuditRow {
            seq: r.seq,
            at: Stamp(r.at),
            actor: r.actor,
            action: r.action,
            target: r.target,
            details: if r.details.is_null() { String::new() } else { r.details.to_string() },
        })
        .collect();
    let chain = st.store.verify_audit().await?;
    render(AuditPage { l: web.layout("audit"), f, rows, next, chain })
}

struct ScheduleRow {
    s: opsbook_store::ScheduleRecord,
    next: Option<Stamp>,
    last: Option<Stamp>,
}

#[derive(Template)]
#[template(path = "schedules.html")]
struct SchedulesPage {
    l: Layout,
    rows: Vec<ScheduleRow>,
}

pub async fn schedules(State(st): State<AppState>, web: Web) -> UiResult<Response> {
    web.require(&st, Perm::Read, "schedules").await?;
    let rows = st
        .store
        .schedules()
        .await?
        .into_iter()
        .map(|s| ScheduleRow { next: s.next_run_at.map(Stamp), last: s.last_run_at.map(Stamp), s })
        .collect();
    render(SchedulesPage { l: web.layout("schedules"), rows })
}
