//! Executions: submit (queued for the workers), list, show, logs, live events, cancel, approvals.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use opsbook_core::step::approval::Approver;
use opsbook_core::{ExecStatus, Input, StepKind, StepStatus};
use opsbook_engine::StartRequest;
use opsbook_store::{Approval, ExecutionFilter, LogQuery, ServerStore, Store, now_ms};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Ctx, Perm, same_user};
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult, params_error};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    #[serde(default)]
    params: BTreeMap<String, Value>,
    version: Option<String>,
}

/// Longer keys are refused: a key names a request, it does not carry data.
const MAX_IDEMPOTENCY_KEY: usize = 200;

/// Queues an execution of a published runbook after checking its lifecycle, its
/// parameters (every problem listed) and the policies. Returns the id, whether it is an
/// earlier execution with the same idempotency key, the version and the masked params.
pub(crate) async fn enqueue(
    st: &AppState,
    name: &str,
    version: Option<String>,
    inputs: BTreeMap<String, Input>,
    who: &crate::auth::Principal,
    key: Option<&str>,
) -> ApiResult<(String, bool, String, Value)> {
    let queued = st.queued().await?;
    if queued >= i64::try_from(st.config.max_queued).unwrap_or(i64::MAX) {
        return Err(ApiError::too_many(
            format!("{queued} executions are queued already (max_queued); try again shortly"),
            5,
        ));
    }
    let entry = st.store.registry_entry(name).await?;
    if entry.status != "active" && entry.status != "deprecated" {
        return Err(ApiError::conflict(format!(
            "runbook `{name}` is {}; only active and deprecated runbooks run",
            entry.status
        )));
    }
    let version = version.unwrap_or(entry.latest_version);
    let (published, _) = st.store.registry_version(name, &version).await?;
    let rb = opsbook_core::Runbook::clone(&*st.engine.stored_runbook(&published.sha256).await?);
    let params = rb.check_params(&inputs).map_err(|e| params_error(&e))?;
    let values = params.values.clone().into_iter().collect();
    if let Some(p) = crate::policy::refusal(&st.config.policies, who, name, &rb.tags, &values) {
        let why = p.description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
        st.audit(&who.user, "authz.denied", name, "", json!({ "policy": why, "roles": who.roles })).await;
        return Err(ApiError::forbidden(format!(
            "running `{name}` like this needs one of the roles {}{why}",
            p.roles.join(", ")
        )));
    }
    let secrets: BTreeMap<String, Input> =
        inputs.into_iter().filter(|(k, _)| params.secret_names.contains(k)).collect();
    let masked = params.masked();
    let req = StartRequest {
        runbook: rb,
        source_path: None,
        base_dir: st.config.workdir.clone(),
        params,
        actor: who.user.clone(),
        allow_draft: false,
    };
    let (exec, steps) = st.engine.new_execution(&req, ExecStatus::Queued).await?;
    if !secrets.is_empty() {
        st.secrets.lock().unwrap_or_else(|p| p.into_inner()).insert(exec.id.clone(), secrets);
    }
    let id = st.store.create_execution_once(&exec, &steps, key).await?;
    if id != exec.id {
        st.secrets.lock().unwrap_or_else(|p| p.into_inner()).remove(&exec.id);
        return Ok((id, true, version, masked));
    }
    st.wake.notify_one();
    Ok((id, false, version, masked))
}

/// `POST /api/v1/runbooks/{name}/executions` → 202 `{id}`; parameters are checked first.
#[utoipa::path(post, path = "/api/v1/runbooks/{name}/executions", tag = "executions", params(("name" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Makes retries return the first execution")), request_body = SubmitBody, responses((status = 202, description = "Queued: {id}"), (status = 400, description = "Invalid parameters, each listed", body = crate::openapi::ErrorBody), (status = 409, description = "The runbook does not run (draft or archived)", body = crate::openapi::ErrorBody), (status = 422, description = "The Idempotency-Key was used for another runbook", body = crate::openapi::ErrorBody), (status = 429, description = "The queue is full (max_queued): try again after Retry-After seconds", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn submit(
    State(st): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SubmitBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let rid = ctx.request_id.clone();
    ctx.require(&st, Perm::Run, &name).await?;
    let inputs: BTreeMap<String, Input> = body.params.into_iter().map(|(k, v)| (k, Input::Value(v))).collect();
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).filter(|k| !k.is_empty());
    if let Some(k) = key
        && k.len() > MAX_IDEMPOTENCY_KEY
    {
        return Err(ApiError::bad_request(format!(
            "Idempotency-Key is {} bytes long; at most {MAX_IDEMPOTENCY_KEY}",
            k.len()
        )));
    }
    let (id, repeated, version, masked) = enqueue(&st, &name, body.version, inputs, &ctx.principal, key).await?;
    if repeated {
        return Ok((StatusCode::ACCEPTED, Json(json!({ "id": id, "repeated": true }))));
    }
    st.audit(
        ctx.user(),
        "execution.submit",
        &id,
        &rid,
        json!({ "runbook": name, "version": version, "params": masked }),
    )
    .await;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    runbook: Option<String>,
    status: Option<String>,
    actor: Option<String>,
    /// RFC 3339 time or epoch milliseconds.
    since: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

fn parse_time(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().or_else(|| s.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond()))
}

/// `GET /api/v1/executions`: newest first, keyset-paginated (`next_cursor`).
#[utoipa::path(get, path = "/api/v1/executions", operation_id = "listExecutions", tag = "executions", params(ListQuery), responses((status = 200, description = "Executions, newest first, with next_cursor"), (status = 400, description = "Bad filter", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn list(State(st): State<AppState>, ctx: Ctx, ApiQuery(q): ApiQuery<ListQuery>) -> ApiResult<Json<Value>> {
    ctx.require(&st, Perm::Read, "executions").await?;
    let status = match q.status.as_deref() {
        Some(s) => Some(ExecStatus::parse(s).ok_or_else(|| ApiError::bad_request(format!("unknown status `{s}`")))?),
        None => None,
    };
    let since = match q.since.as_deref() {
        Some(s) => Some(parse_time(s).ok_or_else(|| ApiError::bad_request(format!("since: `{s}` is not a time")))?),
        None => None,
    };
    let before = match q.cursor.as_deref() {
        Some(c) => {
            let (t, id) = c.split_once('.').ok_or_else(|| ApiError::bad_request("invalid cursor"))?;
            Some((t.parse().map_err(|_| ApiError::bad_request("invalid cursor"))?, id.to_string()))
        }
        None => None,
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let list = st
        .store
        .executions(&ExecutionFilter { runbook: q.runbook, status, actor: q.actor, since, before, limit })
        .await?;
    let next =
        (list.len() as i64 == limit).then(|| list.last().map(|e| format!("{}.{}", e.created_at, e.id))).flatten();
    let items: Vec<Value> = list.iter().map(opsbook_engine::report::summary).collect();
    Ok(Json(json!({ "items": items, "next_cursor": next })))
}

#[utoipa::path(get, path = "/api/v1/executions/{id}", operation_id = "getExecution", tag = "executions", params(("id" = String, Path)), responses((status = 200, description = "The execution document"), (status = 404, description = "Unknown execution", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn get(State(st): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    ctx.require(&st, Perm::Read, &id).await?;
    Ok(Json(opsbook_engine::report::load(&st.store, &id).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    step: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

fn log_json(l: &opsbook_store::LogLine) -> Value {
    json!({
        "seq": l.seq, "step": l.step_id, "phase": l.phase.as_str(), "attempt": l.attempt,
        "stream": l.stream.as_str(), "ts": l.ts, "line": l.line,
    })
}

#[utoipa::path(get, path = "/api/v1/executions/{id}/logs", tag = "executions", params(("id" = String, Path), LogsQuery), responses((status = 200, description = "Log lines after `after`"), (status = 404, description = "Unknown execution", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn logs(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> ApiResult<Json<Value>> {
    ctx.require(&st, Perm::Read, &id).await?;
    let exec = st.store.execution(&id).await?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let lines = st
        .store
        .logs(&LogQuery { execution_id: exec.id, step_id: q.step, after_seq: q.after.unwrap_or(0), limit })
        .await?;
    let next = lines.last().map(|l| l.seq);
    Ok(Json(json!({ "lines": lines.iter().map(log_json).collect::<Vec<_>>(), "next_after": next })))
}

/// `GET .../events`: server-sent events — `log` events (id = log sequence number, so
/// `Last-Event-ID` resumes after it) and `status` events; the stream ends when the
/// execution stops running.
#[utoipa::path(get, path = "/api/v1/executions/{id}/events", tag = "executions", params(("id" = String, Path), ("Last-Event-ID" = Option<String>, Header, description = "Resume after this log sequence number")), responses((status = 200, description = "Server-sent events: log and status", content_type = "text/event-stream"), (status = 404, description = "Unknown execution", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn events(
    State(st): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    ctx.require(&st, Perm::Read, &id).await?;
    let exec = st.store.execution(&id).await?;
    let after =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    struct Cursor {
        store: crate::state::Db,
        id: String,
        after: i64,
        status: Option<ExecStatus>,
        pending: std::collections::VecDeque<Event>,
        done: bool,
    }
    let cursor =
        Cursor { store: st.store.clone(), id: exec.id, after, status: None, pending: Default::default(), done: false };
    let stream = futures_util::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(ev) = c.pending.pop_front() {
                return Some((Ok(ev), c));
            }
            if c.done {
                return None;
            }
            let lines = c
                .store
                .logs(&LogQuery { execution_id: c.id.clone(), step_id: None, after_seq: c.after, limit: 500 })
                .await
                .unwrap_or_default();
            for l in &lines {
                c.after = l.seq;
                c.pending.push_back(Event::default().event("log").id(l.seq.to_string()).data(log_json(l).to_string()));
            }
            if let Ok(e) = c.store.execution(&c.id).await {
                if c.status != Some(e.status) {
                    c.status = Some(e.status);
                    let data = json!({ "status": e.status.as_str(), "error": e.error });
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
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `POST .../cancel`: a running execution is stopped by its worker (rollbacks run);
/// a queued one is cancelled at once; a waiting one is queued for a worker, which stops
/// it and runs its rollbacks. The answer (202) comes at once in every case.
#[utoipa::path(post, path = "/api/v1/executions/{id}/cancel", tag = "executions", params(("id" = String, Path)), responses((status = 202, description = "Cancel requested or done"), (status = 409, description = "Already finished", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn cancel(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let rid = ctx.request_id.clone();
    ctx.require(&st, Perm::Run, &id).await?;
    let mut exec = st.store.execution(&id).await?;
    match exec.status {
        ExecStatus::Running => {
            st.store.request_cancel(&exec.id).await?;
            if let Some(h) = st.running.lock().unwrap_or_else(|p| p.into_inner()).get(&exec.id) {
                h.at_least(1);
            }
        }
        ExecStatus::Queued => {
            exec.status = ExecStatus::Cancelled;
            exec.finished_at = Some(now_ms());
            exec.error = Some(format!("cancelled by {} before it started", ctx.principal.user));
            st.store.update_execution(&exec).await?;
            st.secrets.lock().unwrap_or_else(|p| p.into_inner()).remove(&exec.id);
        }
        ExecStatus::Waiting => {
            // Recorded first: a gate poll holding the execution sees it and cancels.
            // Otherwise it is queued: a worker stops it and runs its rollbacks, never
            // this request (a client that gives up must not cut a rollback short).
            st.store.request_cancel(&exec.id).await?;
            if st.store.requeue(&exec.id).await? {
                st.wake.notify_one();
            } else if let Some(h) = st.running.lock().unwrap_or_else(|p| p.into_inner()).get(&exec.id) {
                h.at_least(1);
            }
        }
        other => return Err(ApiError::conflict(format!("execution {} is already {other}", exec.id))),
    }
    st.audit(ctx.user(), "execution.cancel", &exec.id, &rid, json!({ "was": exec.status.as_str() })).await;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": exec.id }))))
}

/// Who asked for an execution, for the two-person rule: its actor, or for a scheduled
/// run the user who created the schedule (from the schedule, or from the audit record
/// of the run once the schedule is gone).
async fn requester(st: &AppState, exec: &opsbook_store::Execution) -> ApiResult<String> {
    let Some(schedule) = exec.actor.strip_prefix("schedule:") else {
        return Ok(exec.actor.clone());
    };
    if let Some(s) = st.store.schedules().await?.into_iter().find(|s| s.id == schedule) {
        return Ok(s.created_by);
    }
    let filter = opsbook_store::AuditFilter {
        action: Some("execution.submit".into()),
        target: Some(exec.id.clone()),
        limit: 1,
        ..Default::default()
    };
    let submitted = st.store.audit(&filter).await?;
    Ok(submitted
        .first()
        .and_then(|r| r.details["requested_by"].as_str().map(str::to_string))
        .unwrap_or_else(|| exec.actor.clone()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalBody {
    decision: String,
    comment: Option<String>,
}

/// `POST .../approvals {decision: approve|reject, comment}`. The requester can never
/// approve their own execution; one person decides once.
#[utoipa::path(post, path = "/api/v1/executions/{id}/approvals", tag = "executions", params(("id" = String, Path)), request_body = ApprovalBody, responses((status = 200, description = "Decision recorded"), (status = 409, description = "Not waiting, or already decided", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn approve(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ApprovalBody>,
) -> ApiResult<Json<Value>> {
    let rid = ctx.request_id.clone();
    ctx.require(&st, Perm::Approve, &id).await?;
    let approved = match body.decision.as_str() {
        "approve" | "approved" => true,
        "reject" | "rejected" => false,
        other => return Err(ApiError::bad_request(format!("decision must be approve or reject, not `{other}`"))),
    };
    let exec = st.store.execution(&id).await?;
    if exec.status != ExecStatus::Waiting {
        return Err(ApiError::conflict(format!("execution {} is {}, not waiting for approval", exec.id, exec.status)));
    }
    let steps = st.store.steps(&exec.id).await?;
    let step = steps
        .iter()
        .find(|s| s.status == StepStatus::Waiting)
        .ok_or_else(|| ApiError::conflict(format!("execution {} has no step waiting for approval", exec.id)))?;
    let rb = st.engine.stored_runbook(&exec.runbook_sha256).await?;
    let Some(StepKind::Approval(spec)) = rb.steps.get(step.idx as usize).map(|s| &s.kind) else {
        return Err(ApiError::conflict(format!(
            "execution {} waits on a gate at step `{}`, not for approval (an admin may override it)",
            exec.id, step.step_id
        )));
    };
    if same_user(&requester(&st, &exec).await?, ctx.user()) {
        st.audit(ctx.user(), "authz.denied", &exec.id, &rid, json!({ "reason": "two-person rule" })).await;
        return Err(ApiError::forbidden("the requester cannot approve their own execution"));
    }
    let approvers = spec.approvers();
    let eligible = approvers.is_empty()
        || ctx.principal.has_role("admin")
        || approvers.iter().any(|a| match a {
            Approver::User(u) => same_user(u, ctx.user()),
            Approver::Role(r) => ctx.principal.has_role(r),
        });
    if !eligible {
        st.audit(ctx.user(), "authz.denied", &exec.id, &rid, json!({ "reason": "not an approver of this step" })).await;
        let who: Vec<&str> = spec.approvers.iter().map(|a| a.value.as_str()).collect();
        return Err(ApiError::forbidden(format!("only {} may decide on step `{}`", who.join(", "), step.step_id)));
    }
    st.store
        .add_approval(&Approval {
            execution_id: exec.id.clone(),
            step_id: step.step_id.clone(),
            approver: ctx.user().to_string(),
            approved,
            comment: body.comment.clone(),
            created_at: now_ms(),
        })
        .await?;
    let decisions: Vec<Approval> =
        st.store.approvals(&exec.id).await?.into_iter().filter(|a| a.step_id == step.step_id).collect();
    let count = decisions.iter().filter(|a| a.approved).count();
    let settled = !approved || count >= spec.min_approvals as usize;
    if settled && st.store.requeue(&exec.id).await? {
        st.wake.notify_one();
    }
    let doc = json!({
        "execution": exec.id, "step": step.step_id, "decision": if approved { "approve" } else { "reject" },
        "comment": body.comment, "approvals": count, "min_approvals": spec.min_approvals, "settled": settled,
    });
    st.audit(ctx.user(), "execution.approval", &exec.id, &rid, doc.clone()).await;
    Ok(Json(doc))
}
