//! Executions: submit (queued for the workers), list, show, logs, live events, cancel, approvals.

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use opsbook_core::{ExecStatus, Input};
use opsbook_store::{ExecutionFilter, LogQuery, Store};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Ctx, Perm};
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult};
use crate::service;
use crate::state::AppState;

/// `POST /api/v1/runbooks/{name}/executions` → 202 `{id}`; parameters are checked first.
#[utoipa::path(post, path = "/api/v1/runbooks/{name}/executions", tag = "executions", params(("name" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Makes retries return the first execution")), request_body = opsbook_api::Submit, responses((status = 202, description = "Queued", body = opsbook_api::Submitted), (status = 404, description = "Unknown runbook or version", body = crate::openapi::ErrorBody), (status = 400, description = "Invalid parameters, each listed", body = crate::openapi::ErrorBody), (status = 409, description = "The runbook does not run (draft or archived)", body = crate::openapi::ErrorBody), (status = 422, description = "The Idempotency-Key was used for another runbook or other parameters", body = crate::openapi::ErrorBody), (status = 429, description = "The queue is full (max_queued): try again after Retry-After seconds", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn submit(
    State(st): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<opsbook_api::Submit>,
) -> ApiResult<(StatusCode, Json<opsbook_api::Submitted>)> {
    ctx.require(&st, Perm::Run, &name).await?;
    let inputs: BTreeMap<String, Input> = body.params.into_iter().map(|(k, v)| (k, Input::Value(v))).collect();
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).filter(|k| !k.is_empty());
    if let Some(k) = key
        && k.len() > service::MAX_IDEMPOTENCY_KEY
    {
        return Err(ApiError::bad_request(format!(
            "Idempotency-Key is {} bytes long; at most {}",
            k.len(),
            service::MAX_IDEMPOTENCY_KEY
        )));
    }
    let submitted = service::submit(&st, &ctx, &name, body.version, inputs, key).await?;
    Ok((StatusCode::ACCEPTED, Json(submitted)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    runbook: Option<String>,
    status: Option<String>,
    actor: Option<String>,
    /// Only the child executions of this execution (started by its `runbook` steps).
    parent: Option<String>,
    /// RFC 3339 time or epoch milliseconds.
    since: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// A list cursor, `CREATED_AT.ID` (the last item of the page before): the keyset to
/// go on from.
pub(crate) fn parse_cursor(cursor: &str) -> Option<(i64, String)> {
    let (t, id) = cursor.split_once('.')?;
    Some((t.parse().ok()?, id.to_string()))
}

/// The cursor of the page after `page` (none when it was not full: the last page).
pub(crate) fn next_cursor(page: &[opsbook_store::Execution], limit: i64) -> Option<String> {
    (page.len() as i64 == limit).then(|| page.last().map(|e| format!("{}.{}", e.created_at, e.id))).flatten()
}

pub(crate) fn parse_time(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().or_else(|| s.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond()))
}

/// `GET /api/v1/executions`: newest first, keyset-paginated (`next_cursor`).
#[utoipa::path(get, path = "/api/v1/executions", operation_id = "listExecutions", tag = "executions", params(ListQuery), responses((status = 200, description = "Executions, newest first, with next_cursor", body = opsbook_api::ExecutionPage), (status = 400, description = "Bad filter", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn list(
    State(st): State<AppState>,
    ctx: Ctx,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<opsbook_api::ExecutionPage>> {
    ctx.require(&st, Perm::Read, "executions").await?;
    let status = match q.status.as_deref() {
        Some(s) => Some(ExecStatus::parse(s).ok_or_else(|| {
            let all: Vec<&str> = ExecStatus::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::bad_request(format!("unknown status `{s}`: use one of {}", all.join(", ")))
                .with_details(json!({ "param": "status" }))
        })?),
        None => None,
    };
    let since = match q.since.as_deref() {
        Some(s) => Some(parse_time(s).ok_or_else(|| {
            ApiError::bad_request(format!("since: `{s}` is not a time")).with_details(json!({ "param": "since" }))
        })?),
        None => None,
    };
    let before = match q.cursor.as_deref() {
        Some(c) => Some(
            parse_cursor(c)
                .ok_or_else(|| ApiError::bad_request("invalid cursor").with_details(json!({ "param": "cursor" })))?,
        ),
        None => None,
    };
    let limit = crate::error::page_limit(q.limit, 50, 500)?;
    let list = st
        .store
        .executions(&ExecutionFilter {
            runbook: q.runbook,
            status,
            actor: q.actor,
            since,
            before,
            limit,
            parent: q.parent,
        })
        .await?;
    let next = next_cursor(&list, limit);
    let items = list.iter().map(opsbook_api::ExecutionSummary::from).collect();
    Ok(Json(opsbook_api::ExecutionPage { items, next_cursor: next }))
}

#[utoipa::path(get, path = "/api/v1/executions/{id}", operation_id = "getExecution", tag = "executions", params(("id" = String, Path)), responses((status = 200, description = "The execution document", body = opsbook_api::ExecutionDoc), (status = 400, description = "An id prefix that names more than one execution", body = crate::openapi::ErrorBody), (status = 404, description = "Unknown execution", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn get(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<opsbook_api::ExecutionDoc>> {
    ctx.require(&st, Perm::Read, &id).await?;
    let exec = st.store.execution(&id).await?;
    let steps = st.store.steps(&exec.id).await?;
    let approvals = st.store.approvals(&exec.id).await?;
    let children = st.store.children(&exec.id).await?;
    Ok(Json(opsbook_api::ExecutionDoc::new(&exec, &steps).with_approvals(&approvals).with_children(&children)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    step: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/executions/{id}/logs", tag = "executions", params(("id" = String, Path), LogsQuery), responses((status = 200, description = "Log lines after `after`", body = opsbook_api::LogPage), (status = 400, description = "An id prefix that names more than one execution, or a bad limit", body = crate::openapi::ErrorBody), (status = 404, description = "Unknown execution", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn logs(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> ApiResult<Json<opsbook_api::LogPage>> {
    ctx.require(&st, Perm::Read, &id).await?;
    let limit = crate::error::page_limit(q.limit, 1000, 10_000)?;
    let exec = st.store.execution(&id).await?;
    if let Some(step) = &q.step {
        let doc = opsbook_api::ExecutionDoc::new(&exec, &st.store.steps(&exec.id).await?);
        if let Err(why) = doc.check_step(step) {
            return Err(ApiError::bad_request(why).with_details(json!({ "param": "step" })));
        }
    }
    let lines = st
        .store
        .logs(&LogQuery { execution_id: exec.id, step_id: q.step, after_seq: q.after.unwrap_or(0), limit })
        .await?;
    let next = lines.last().map(|l| l.seq);
    Ok(Json(opsbook_api::LogPage { lines: lines.iter().map(opsbook_api::LogLine::from).collect(), next_after: next }))
}

/// `GET .../events`: server-sent events — `log` events (id = log sequence number, so
/// `Last-Event-ID` resumes after it) and `status` events; the stream ends when the
/// execution stops running (ends, or waits: for an approval, a person, a gate).
#[utoipa::path(get, path = "/api/v1/executions/{id}/events", tag = "executions", params(("id" = String, Path), ("Last-Event-ID" = Option<String>, Header, description = "Resume after this log sequence number")), responses((status = 200, description = "Server-sent events: log and status", content_type = "text/event-stream"), (status = 400, description = "A Last-Event-ID that is no log sequence number", body = crate::openapi::ErrorBody), (status = 404, description = "Unknown execution", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn events(
    State(st): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    ctx.require(&st, Perm::Read, &id).await?;
    let exec = st.store.execution(&id).await?;
    // A Last-Event-ID that is not one of this stream's ids (a log sequence number) would
    // replay the whole log silently: refused.
    let after = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v.to_str().ok().and_then(|v| v.trim().parse::<i64>().ok()).filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Last-Event-ID `{}`: expected the id of an event of this stream (a log sequence number)",
                crate::limits::bounded(&String::from_utf8_lossy(v.as_bytes()), 80)
            ))
            .with_details(json!({ "header": "Last-Event-ID" }))
        })?,
    };
    struct Cursor {
        store: crate::state::Db,
        id: String,
        after: i64,
        status: Option<ExecStatus>,
        pending: std::collections::VecDeque<Event>,
        done: bool,
        watch: crate::live::Watch,
    }
    let watch = st.live.follow(&exec.id);
    let cursor = Cursor {
        store: st.store.clone(),
        id: exec.id,
        after,
        status: None,
        pending: Default::default(),
        done: false,
        watch,
    };
    let stream = futures_util::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(ev) = c.pending.pop_front() {
                return Some((Ok(ev), c));
            }
            if c.done {
                return None;
            }
            c.watch.seen();
            // The status first: an execution's last lines are stored before its end, so
            // once a status read before the lines says it ended, no line can follow them.
            let exec = match c.store.execution(&c.id).await {
                Ok(e) => Some(e),
                Err(opsbook_store::Error::NotFound(_)) => None,
                Err(e) => {
                    // The database is failing (restarting, say): read again shortly,
                    // with nothing sent or skipped.
                    tracing::debug!(%e, "event stream cannot read its execution");
                    tokio::time::sleep(crate::live::TICK).await;
                    continue;
                }
            };
            let query = LogQuery { execution_id: c.id.clone(), step_id: None, after_seq: c.after, limit: 500 };
            let lines = match c.store.logs(&query).await {
                Ok(lines) => lines,
                Err(e) => {
                    tracing::debug!(%e, "event stream cannot read its logs");
                    tokio::time::sleep(crate::live::TICK).await;
                    continue;
                }
            };
            for l in &lines {
                c.after = l.seq;
                let data = service::to_value(&opsbook_api::LogLine::from(l)).to_string();
                c.pending.push_back(Event::default().event("log").id(l.seq.to_string()).data(data));
            }
            if let Some(e) = exec {
                if c.status != Some(e.status) {
                    c.status = Some(e.status);
                    let data = service::to_value(&opsbook_api::StatusEvent { status: e.status, error: e.error });
                    c.pending
                        .push_back(Event::default().event("status").id(c.after.to_string()).data(data.to_string()));
                }
                let live = matches!(e.status, ExecStatus::Queued | ExecStatus::Running);
                if !live && lines.is_empty() {
                    c.done = true;
                }
            } else {
                c.done = true;
            }
            if c.pending.is_empty() && !c.done {
                c.watch.changed().await;
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `POST .../cancel`: a running execution is stopped by its worker (rollbacks run);
/// a queued one is cancelled at once; a waiting one is queued for a worker, which stops
/// it and runs its rollbacks. The answer (202) comes at once in every case.
#[utoipa::path(post, path = "/api/v1/executions/{id}/cancel", tag = "executions", params(("id" = String, Path)), responses((status = 202, description = "Cancel requested or done", body = opsbook_api::CancelAccepted), (status = 404, description = "Unknown execution", body = crate::openapi::ErrorBody), (status = 400, description = "An id prefix that names more than one execution", body = crate::openapi::ErrorBody), (status = 409, description = "Already finished", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn cancel(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<opsbook_api::CancelAccepted>)> {
    ctx.require(&st, Perm::Run, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(service::cancel(&st, &ctx, &id).await?)))
}

/// `POST .../approvals {decision: approve|reject, comment}`. The requester can never
/// approve their own execution; one person decides once.
#[utoipa::path(post, path = "/api/v1/executions/{id}/approvals", tag = "executions", params(("id" = String, Path)), request_body = opsbook_api::Decide, responses((status = 200, description = "Decision recorded", body = opsbook_api::Decided), (status = 404, description = "Unknown execution", body = crate::openapi::ErrorBody), (status = 400, description = "No valid decision, a secret missing or wrong, or an ambiguous id prefix", body = crate::openapi::ErrorBody), (status = 409, description = "Not waiting, or already decided", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn approve(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<opsbook_api::Decide>,
) -> ApiResult<Json<opsbook_api::Decided>> {
    ctx.require(&st, Perm::Approve, &id).await?;
    let approved = match body.decision.as_str() {
        "approve" | "approved" => true,
        "reject" | "rejected" => false,
        other => return Err(ApiError::field("decision", format!("decision must be approve or reject, not `{other}`"))),
    };
    Ok(Json(service::decide(&st, &ctx, &id, approved, body.comment).await?))
}

/// `POST .../resume {params}`: goes on with an interrupted execution (runs again an
/// interrupted step only if it is idempotent); secret parameters are supplied again.
#[utoipa::path(post, path = "/api/v1/executions/{id}/resume", tag = "executions", params(("id" = String, Path)), request_body = opsbook_api::Resume, responses((status = 202, description = "Resuming on the server; follow it like any execution", body = opsbook_api::Resumed), (status = 404, description = "Unknown execution", body = crate::openapi::ErrorBody), (status = 400, description = "A secret missing or not the one it started with", body = crate::openapi::ErrorBody), (status = 409, description = "Not stopped, or it may not resume (the message says what to do)", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn resume(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<opsbook_api::Resume>,
) -> ApiResult<(StatusCode, Json<opsbook_api::Resumed>)> {
    ctx.require(&st, Perm::Run, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(service::resume(&st, &ctx, &id, body.params, false).await?)))
}

/// `POST .../rollback {params}`: runs the rollbacks of the succeeded steps of a stopped
/// execution, newest first (a waiting one is cancelled first).
#[utoipa::path(post, path = "/api/v1/executions/{id}/rollback", tag = "executions", params(("id" = String, Path)), request_body = opsbook_api::Resume, responses((status = 202, description = "Rolling back on the server; follow it like any execution", body = opsbook_api::Resumed), (status = 404, description = "Unknown execution", body = crate::openapi::ErrorBody), (status = 400, description = "A secret missing or not the one it started with", body = crate::openapi::ErrorBody), (status = 409, description = "Not stopped, succeeded, or rolled back already", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn rollback(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<opsbook_api::Resume>,
) -> ApiResult<(StatusCode, Json<opsbook_api::Resumed>)> {
    ctx.require(&st, Perm::Run, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(service::resume(&st, &ctx, &id, body.params, true).await?)))
}
