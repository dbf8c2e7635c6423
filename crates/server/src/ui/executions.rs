//! Executions: the list, one execution's page with its live log, and what may be done
//! to it (approve, reject, cancel, resume, roll back, override a gate).

use std::collections::BTreeMap;
use std::convert::Infallible;

use askama::Template;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use opsbook_core::{ExecStatus, StepStatus};
use opsbook_store::{ExecutionFilter, LogLine, LogQuery, Store, Stream, WaitKind, now_ms};
use serde::Deserialize;

use super::{Layout, Stamp, UiResult, Web, WebForm, age, enc, escape, render, see_other, took};
use crate::auth::Perm;
use crate::error::ApiError;
use crate::state::AppState;

/// Lines shown when the page opens (the newest); earlier ones come a page at a time.
const TAIL: i64 = 500;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    runbook: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    actor: String,
    /// `7d` (the default), `24h`, `30d` or `all`.
    #[serde(default)]
    window: String,
    cursor: Option<String>,
}

struct ListRow {
    id: String,
    runbook: String,
    version: String,
    status: &'static str,
    actor: String,
    created: Stamp,
    took: String,
}

#[derive(Template)]
#[template(path = "executions.html")]
struct ListPage {
    l: Layout,
    f: ListQuery,
    rows: Vec<ListRow>,
    next: Option<String>,
    statuses: Vec<&'static str>,
    windows: Vec<(&'static str, &'static str)>,
}

/// One page of the list: the store's keyset index, no parameters or payloads.
pub async fn list(State(st): State<AppState>, web: Web, Query(f): Query<ListQuery>) -> UiResult<Response> {
    web.require(&st, Perm::Read, "executions").await?;
    let day = 86_400_000;
    let since = match f.window.as_str() {
        "24h" => Some(now_ms() - day),
        "30d" => Some(now_ms() - 30 * day),
        "all" => None,
        "" | "7d" => Some(now_ms() - 7 * day),
        w => return Err(ApiError::param("window", format!("unknown window `{w}`: use 24h, 7d, 30d or all")).into()),
    };
    let status = match f.status.as_str() {
        "" => None,
        s => Some(ExecStatus::parse(s).ok_or_else(|| ApiError::bad_request(format!("unknown status `{s}`")))?),
    };
    let before = f.cursor.as_deref().and_then(crate::routes::executions::parse_cursor);
    let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    let limit = 50;
    let filter = ExecutionFilter {
        runbook: some(&f.runbook),
        status,
        actor: some(&f.actor),
        since,
        before,
        limit,
        parent: None,
    };
    let found = st.store.executions(&filter).await?;
    let next = crate::routes::executions::next_cursor(&found, limit);
    let rows = found
        .iter()
        .map(|e| ListRow {
            id: e.id.clone(),
            runbook: e.runbook_name.clone(),
            version: e.runbook_version.clone(),
            status: e.status.as_str(),
            actor: e.actor.clone(),
            created: Stamp(e.created_at),
            took: match (e.started_at, e.finished_at) {
                (Some(a), Some(b)) => took(b - a),
                _ => String::new(),
            },
        })
        .collect();
    render(ListPage {
        l: web.layout("executions"),
        f,
        rows,
        next,
        statuses: ExecStatus::ALL.iter().map(|s| s.as_str()).collect(),
        windows: vec![("24h", "last 24 hours"), ("7d", "last 7 days"), ("30d", "last 30 days"), ("all", "all time")],
    })
}

struct StepView {
    id: String,
    name: String,
    kind: String,
    status: &'static str,
    attempts: i64,
    took: String,
    error: String,
    message: String,
    rollback: &'static str,
    /// A blocked gate's records (JSON, secrets masked), pretty.
    records: String,
    /// A step with `targets` (or a parallel step's branches): one row each.
    targets: Vec<TargetView>,
    /// `Target` or `Branch`.
    part: &'static str,
    /// A `runbook` step: the child execution it started.
    child: Option<ChildView>,
}

struct ChildView {
    id: String,
    runbook: String,
    version: String,
    status: &'static str,
    rollback: &'static str,
    /// Its steps, one row each.
    steps: Vec<TargetView>,
}

struct TargetView {
    name: String,
    status: &'static str,
    attempts: i64,
    exit: String,
    took: String,
    error: String,
    rollback: &'static str,
}

#[derive(Template)]
#[template(path = "execution.html")]
struct ExecutionPage {
    l: Layout,
    d: opsbook_api::ExecutionDoc,
    /// When each of `d.approvals` was made, shown as every time on the pages is.
    decided_at: Vec<Option<Stamp>>,
    created: Stamp,
    took: String,
    status: &'static str,
    live: bool,
    steps: Vec<StepView>,
    lines: String,
    first_seq: i64,
    last_seq: i64,
    /// A waiting approval step this person may decide on.
    decide: Option<String>,
    /// Where that step's approvals stand ("1 of 2 approvals"), and why this person has
    /// no say in it, when they have none (they asked for the run, or decided already).
    decide_progress: String,
    decide_why_not: String,
    can_cancel: bool,
    can_resume: bool,
    can_rollback: bool,
    /// The gate step waiting, for an admin's override.
    override_gate: Option<String>,
    secrets_resume: Vec<String>,
    secrets_rollback: Vec<String>,
    /// A manual step (or rollback) waiting, for someone who may carry the execution on.
    manual: Option<ManualView>,
    /// Whether this person may rate it (it ended), and the ratings so far.
    can_rate: bool,
    ratings: Vec<opsbook_api::FeedbackDoc>,
    /// Why the runner seems gone, when it holds a lapsed lease.
    stuck: String,
    params: Vec<(String, String)>,
}

/// A manual step (or rollback) for a person to do, with the checklist to tick.
struct ManualView {
    step: String,
    rollback: bool,
    instructions: String,
    checklist: Vec<String>,
    /// For a manual rollback: the secrets the rollbacks after it need again.
    secrets: Vec<String>,
}

/// Log lines as HTML, one element each, carrying their sequence number.
fn lines_html(lines: &[LogLine]) -> String {
    let mut out = String::new();
    for l in lines {
        let class = match l.stream {
            Stream::Stderr => "l e",
            Stream::System => "l s",
            _ => "l",
        };
        let step = l.step_id.as_deref().map(|s| format!("<span class=sid>[{}]</span> ", escape(s))).unwrap_or_default();
        out.push_str(&format!(
            "<div class=\"{class}\" data-seq=\"{}\">{step}{}</div>",
            l.seq,
            super::ansi::to_html(&l.line)
        ));
    }
    out
}

pub async fn page(State(st): State<AppState>, web: Web, Path(id): Path<String>) -> UiResult<Response> {
    web.require(&st, Perm::Read, &id).await?;
    let exec = st.store.execution(&id).await?;
    let steps = st.store.steps(&exec.id).await?;
    let approvals = st.store.approvals(&exec.id).await?;
    let children = st.store.children(&exec.id).await?;
    let d = opsbook_api::ExecutionDoc::new(&exec, &steps).with_approvals(&approvals).with_children(&children);
    let last_seq = st.store.last_log_seq(&exec.id).await?;
    let tail = st
        .store
        .logs(&LogQuery {
            execution_id: exec.id.clone(),
            step_id: None,
            after_seq: (last_seq - TAIL).max(0),
            limit: TAIL,
        })
        .await?;
    let first_seq = tail.first().map_or(last_seq + 1, |l| l.seq);
    let views = steps
        .iter()
        .zip(&d.steps)
        .map(|(s, doc)| StepView {
            id: s.step_id.clone(),
            name: s.name.clone(),
            kind: s.kind.clone(),
            status: s.status.as_str(),
            attempts: s.attempts,
            took: match (s.started_at, s.finished_at) {
                (Some(a), Some(b)) => took(b - a),
                (Some(a), None) if s.status == StepStatus::Running || s.status == StepStatus::Waiting => {
                    format!("{} so far", super::age(a, now_ms()))
                }
                _ => String::new(),
            },
            error: s.error.clone().unwrap_or_default(),
            message: doc.message.clone().unwrap_or_default(),
            rollback: s.rollback_status.map(|r| r.as_str()).unwrap_or(""),
            records: s
                .outputs
                .get("records")
                .map(|r| serde_json::to_string_pretty(r).unwrap_or_default())
                .unwrap_or_default(),
            part: if s.kind == "parallel" { "Branch" } else { "Target" },
            child: doc.child.as_ref().map(|c| ChildView {
                id: c.id.clone(),
                runbook: c.runbook.clone(),
                version: c.version.clone(),
                status: c.status.as_str(),
                rollback: c.rollback_status.map(|r| r.as_str()).unwrap_or(""),
                steps: (c.steps.iter())
                    .map(|cs| TargetView {
                        name: cs.id.clone(),
                        status: cs.status.as_str(),
                        attempts: cs.attempts,
                        exit: cs.kind.clone(),
                        took: cs.duration_ms.map(took).unwrap_or_default(),
                        error: cs.error.clone().unwrap_or_default(),
                        rollback: cs.rollback_status.map(|r| r.as_str()).unwrap_or(""),
                    })
                    .collect(),
            }),
            targets: s
                .targets
                .iter()
                .map(|t| TargetView {
                    name: t.name.clone(),
                    status: t.status.as_str(),
                    attempts: t.attempts,
                    exit: t.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                    took: t.started_at.zip(t.finished_at).map(|(a, b)| took(b - a)).unwrap_or_default(),
                    error: t.error.clone().or_else(|| t.rollback_error.clone()).unwrap_or_default(),
                    rollback: t.rollback_status.map(|r| r.as_str()).unwrap_or(""),
                })
                .collect(),
        })
        .collect();
    let waiting = |kind: WaitKind| {
        steps.iter().find(|s| s.status == StepStatus::Waiting && s.wait_kind == Some(kind)).map(|s| s.step_id.clone())
    };
    let stopped = matches!(exec.status, ExecStatus::Failed | ExecStatus::Cancelled | ExecStatus::Interrupted);
    let mut decide =
        (exec.status == ExecStatus::Waiting && web.can(Perm::Approve)).then(|| waiting(WaitKind::Approval)).flatten();
    let (mut decide_progress, mut decide_why_not) = (String::new(), String::new());
    if let Some(step) = decide.clone()
        && let Ok(wait) = st.engine.approval_wait(&exec.id).await
    {
        let approvals = st.store.approvals(&exec.id).await?;
        let on_step: Vec<_> = approvals
            .iter()
            .filter(|a| a.step_id == *step && !a.manual && a.phase == opsbook_store::Phase::Step)
            .collect();
        let yes = on_step.iter().filter(|a| a.approved).count();
        decide_progress = format!(
            "{yes} of {} approval{}",
            wait.spec.min_approvals,
            if wait.spec.min_approvals == 1 { "" } else { "s" }
        );
        // Who may decide is the service's call, as when the decision is posted.
        if on_step.iter().any(|a| crate::auth::same_user(&a.approver, web.ctx.user())) {
            decide_why_not = "You have decided on it; it waits for other approvers.".into();
        } else if let Err((reason, message)) = crate::service::may_decide(&st, &web.ctx.principal, &wait).await? {
            decide_why_not = match reason {
                "two-person rule" => "You asked for this run: another approver decides (two-person rule).".into(),
                _ => format!("{message}."),
            };
        }
        if !decide_why_not.is_empty() {
            decide = None;
            decide_why_not = format!("Step `{step}` waits for approval ({decide_progress}). {decide_why_not}");
        }
    }
    let override_gate =
        (exec.status == ExecStatus::Waiting && web.can(Perm::Admin)).then(|| waiting(WaitKind::Gate)).flatten();
    let can_run = web.can(Perm::Run);
    let can_resume = can_run && matches!(exec.status, ExecStatus::Interrupted | ExecStatus::Waiting);
    let can_rollback = can_run && (stopped || exec.status == ExecStatus::Waiting) && exec.rollback_status.is_none();
    let secrets_resume =
        if can_resume { st.engine.secrets_needed(&exec.id, false).await.unwrap_or_default() } else { Vec::new() };
    let secrets_rollback =
        if can_rollback { st.engine.secrets_needed(&exec.id, true).await.unwrap_or_default() } else { Vec::new() };
    let manual = match st.engine.manual_wait(&exec.id, None).await {
        Ok(w) if can_run => {
            let rollback = w.phase == opsbook_store::Phase::Rollback;
            let instructions = if rollback {
                w.step.rollback_error.clone().unwrap_or_default()
            } else {
                w.step.rendered.clone().unwrap_or_default().lines().next().unwrap_or_default().to_string()
            };
            let checklist = crate::service::quality::checklist(&w);
            let secrets =
                if rollback { st.engine.secrets_needed(&exec.id, true).await.unwrap_or_default() } else { Vec::new() };
            Some(ManualView { step: w.step.step_id, rollback, instructions, checklist, secrets })
        }
        _ => None,
    };
    let ratings = st.store.feedback(&exec.id).await?.iter().map(opsbook_api::FeedbackDoc::from).collect();
    let can_rate = exec.status.is_terminal() && exec.status != ExecStatus::Interrupted;
    let stuck = match (exec.status, exec.lease_expires_at) {
        (ExecStatus::Running, Some(t)) if t < now_ms() => format!(
            "Its runner ({}) has not checked in for {}: it is probably gone. A server recovers such runs when its \
             lease lapses; Cancel stops it for good.",
            exec.owner.clone().unwrap_or_default(),
            age(t, now_ms())
        ),
        _ => String::new(),
    };
    let params = d
        .summary
        .params
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let decided_at = d
        .approvals
        .iter()
        .map(|a| a.at.as_deref().and_then(|t| t.parse::<jiff::Timestamp>().ok()).map(|t| Stamp(t.as_millisecond())))
        .collect();
    render(ExecutionPage {
        decided_at,
        l: web.layout("executions"),
        created: Stamp(exec.created_at),
        took: d.summary.duration_ms.map(took).unwrap_or_default(),
        status: exec.status.as_str(),
        live: matches!(exec.status, ExecStatus::Queued | ExecStatus::Running | ExecStatus::Waiting),
        steps: views,
        lines: lines_html(&tail),
        first_seq,
        last_seq,
        decide,
        decide_progress,
        decide_why_not,
        can_cancel: can_run && !exec.status.is_terminal(),
        can_resume,
        can_rollback,
        override_gate,
        secrets_resume,
        secrets_rollback,
        manual,
        can_rate,
        ratings,
        stuck,
        params,
        d,
    })
}

#[derive(Deserialize)]
pub struct Before {
    before: i64,
}

/// `GET /executions/{id}/log?before=SEQ`: the page of lines before SEQ (an HTML
/// fragment for the "earlier lines" button), newest last.
pub async fn earlier(
    State(st): State<AppState>,
    web: Web,
    Path(id): Path<String>,
    Query(q): Query<Before>,
) -> UiResult<Response> {
    web.require(&st, Perm::Read, &id).await?;
    let exec = st.store.execution(&id).await?;
    let from = q.before.saturating_sub(1 + TAIL).max(0);
    // Lines `from + 1` to `before - 1`: none when `before` is 1 or less (a limit of 0
    // would mean no limit to the store).
    let count = q.before.saturating_sub(1 + from);
    if count <= 0 {
        return Ok(Html(String::new()).into_response());
    }
    let lines = st
        .store
        .logs(&LogQuery { execution_id: exec.id.clone(), step_id: None, after_seq: from, limit: count })
        .await?;
    let mut html = String::new();
    if let Some(first) = lines.first().filter(|l| l.seq > 1) {
        html.push_str(&more_button(&exec.id, first.seq));
    }
    html.push_str(&lines_html(&lines));
    Ok(Html(html).into_response())
}

fn more_button(id: &str, before: i64) -> String {
    format!(
        "<button class=more hx-get=\"/executions/{}/log?before={before}\" hx-target=\"this\" hx-swap=\"outerHTML\">\
         Earlier lines</button>",
        enc(id)
    )
}

/// `GET /executions/{id}/log.txt`: every line as plain text, streamed a page at a time.
pub async fn raw_log(State(st): State<AppState>, web: Web, Path(id): Path<String>) -> UiResult<Response> {
    web.require(&st, Perm::Read, &id).await?;
    let exec = st.store.execution(&id).await?;
    let store = st.store.clone();
    let stream = futures_util::stream::unfold(Some((store, exec.id.clone(), 0i64)), |state| async move {
        let (store, id, after) = state?;
        let q = LogQuery { execution_id: id.clone(), step_id: None, after_seq: after, limit: 5000 };
        let lines = match store.logs(&q).await {
            Ok(lines) if !lines.is_empty() => lines,
            Ok(_) => return None,
            Err(e) => return Some((Err(std::io::Error::other(e.to_string())), None)),
        };
        let next = lines.last().map_or(after, |l| l.seq);
        let mut text = String::new();
        for l in &lines {
            if let Some(s) = &l.step_id {
                text.push_str(&format!("[{s}] "));
            }
            text.push_str(&l.line);
            text.push('\n');
        }
        Some((Ok::<_, std::io::Error>(text), Some((store, id, next))))
    });
    let name = format!("attachment; filename=\"opsbook-{}.log\"", exec.id);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, name)],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct After {
    #[serde(default)]
    after: i64,
    /// The status the page shows: any other is news (even one reached before this
    /// stream opened, or between a drop and a reconnect).
    status: Option<String>,
}

/// `GET /executions/{id}/live?after=SEQ&status=S`: server-sent events for the page —
/// `lines` (HTML of the lines after SEQ, the event id their last sequence number, so a
/// reconnect's Last-Event-ID goes on exactly there) and `status` once it is no longer S
/// (the page then reloads). The page's stored tail ends at SEQ: nothing is shown twice
/// or skipped.
pub async fn live(
    State(st): State<AppState>,
    web: Web,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<After>,
) -> UiResult<Response> {
    web.require(&st, Perm::Read, &id).await?;
    let exec = st.store.execution(&id).await?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(q.after);
    let shown = q.status.as_deref().and_then(ExecStatus::parse).unwrap_or(exec.status);
    let watch = st.live.follow(&exec.id);
    let state = (st.store.clone(), exec.id, after, shown, false, watch);
    let stream = futures_util::stream::unfold(state, |(store, id, after, status, done, mut watch)| async move {
        if done {
            return None;
        }
        loop {
            watch.seen();
            let q = LogQuery { execution_id: id.clone(), step_id: None, after_seq: after, limit: 1000 };
            let lines = match store.logs(&q).await {
                Ok(lines) => lines,
                Err(e) => {
                    // The database is failing (restarting, say): read again shortly.
                    tracing::debug!(%e, "live log cannot read its lines");
                    tokio::time::sleep(crate::live::TICK).await;
                    continue;
                }
            };
            if let Some(last) = lines.last() {
                let ev = Event::default().event("lines").id(last.seq.to_string()).data(lines_html(&lines));
                return Some((Ok::<_, Infallible>(ev), (store, id, last.seq, status, false, watch)));
            }
            let now = match store.execution(&id).await {
                Ok(e) => e.status,
                Err(opsbook_store::Error::NotFound(_)) => return None,
                Err(e) => {
                    tracing::debug!(%e, "live log cannot read its execution");
                    tokio::time::sleep(crate::live::TICK).await;
                    continue;
                }
            };
            if now != status || now.is_terminal() {
                // Sent once the lines before it are: the page reloads for the final state.
                let ev = Event::default().event("status").data(now.as_str());
                return Some((Ok(ev), (store, id, after, now, now.is_terminal(), watch)));
            }
            watch.changed().await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

pub async fn decide(State(st): State<AppState>, Path(id): Path<String>, form: WebForm) -> UiResult<Response> {
    let web = &form.web;
    web.require(&st, Perm::Approve, &id).await?;
    let approved = match form.get("decision") {
        Some("approve") => true,
        Some("reject") => false,
        _ => return Err(ApiError::bad_request("decision must be approve or reject").into()),
    };
    crate::service::decide(&st, &web.ctx, &id, approved, form.text("comment")).await?;
    Ok(back(&form, &id))
}

/// The manual step's form: `done` (every checklist item ticked, `item` fields) or
/// `not_done`, with an optional note.
pub async fn confirm(State(st): State<AppState>, Path(id): Path<String>, form: WebForm) -> UiResult<Response> {
    let web = &form.web;
    web.require(&st, Perm::Run, &id).await?;
    let done = match form.get("answer") {
        Some("done") => true,
        Some("not_done") => false,
        _ => return Err(ApiError::bad_request("answer must be done or not_done").into()),
    };
    let step = form.text("step");
    if done {
        let wait = st.engine.manual_wait(&id, step.as_deref()).await?;
        let ticked = form.fields.iter().filter(|(k, _)| k == "item").count();
        if ticked < wait.spec.checklist.len() {
            return Err(ApiError::bad_request(format!(
                "tick every checklist item of step `{}` ({} of {} ticked)",
                wait.step.step_id,
                ticked,
                wait.spec.checklist.len()
            ))
            .into());
        }
    }
    let body = opsbook_api::Confirm { step, done, note: form.text("note"), params: secrets(&form) };
    crate::service::quality::confirm(&st, &web.ctx, &id, body).await?;
    Ok(back(&form, &id))
}

/// The rating form of an execution that ended.
pub async fn rate(State(st): State<AppState>, Path(id): Path<String>, form: WebForm) -> UiResult<Response> {
    let web = &form.web;
    web.require(&st, Perm::Read, &id).await?;
    let given = form.get("rating").unwrap_or_default();
    let rating = given.trim().parse::<u8>().map_err(|_| {
        ApiError::field(
            "rating",
            format!("rating: `{}` is not a number from 1 to 5", crate::limits::bounded(given, 40)),
        )
    })?;
    let body = opsbook_api::FeedbackIn { rating, comment: form.text("comment") };
    crate::service::quality::feedback(&st, &web.ctx, &id, body).await?;
    Ok(back(&form, &id))
}

/// Where a form goes after it did its work: back to the page it came from (`back`), or
/// to the execution's page.
fn back(form: &WebForm, id: &str) -> Response {
    match form.get("back") {
        Some(b) if b.starts_with('/') && !b.starts_with("//") => see_other(b),
        _ => see_other(&format!("/executions/{}", enc(id))),
    }
}

pub async fn cancel(State(st): State<AppState>, Path(id): Path<String>, form: WebForm) -> UiResult<Response> {
    let web = &form.web;
    web.require(&st, Perm::Run, &id).await?;
    crate::service::cancel(&st, &web.ctx, &id).await?;
    Ok(back(&form, &id))
}

/// The secret values a resume or rollback form carried (`secret.NAME` fields).
fn secrets(form: &WebForm) -> BTreeMap<String, serde_json::Value> {
    form.fields
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("secret.")?.to_string(), serde_json::Value::String(v.clone()))))
        .collect()
}

pub async fn resume(State(st): State<AppState>, Path(id): Path<String>, form: WebForm) -> UiResult<Response> {
    let web = &form.web;
    web.require(&st, Perm::Run, &id).await?;
    crate::service::resume(&st, &web.ctx, &id, secrets(&form), false).await?;
    Ok(back(&form, &id))
}

pub async fn rollback(State(st): State<AppState>, Path(id): Path<String>, form: WebForm) -> UiResult<Response> {
    let web = &form.web;
    web.require(&st, Perm::Run, &id).await?;
    crate::service::resume(&st, &web.ctx, &id, secrets(&form), true).await?;
    Ok(back(&form, &id))
}

pub async fn override_gate(State(st): State<AppState>, Path(id): Path<String>, form: WebForm) -> UiResult<Response> {
    let web = &form.web;
    web.require(&st, Perm::Admin, &id).await?;
    let reason = form.text("reason").ok_or_else(|| ApiError::bad_request("an override needs a reason"))?;
    crate::service::override_gate(&st, &web.ctx, &id, &reason).await?;
    Ok(back(&form, &id))
}
