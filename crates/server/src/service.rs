//! What the API does, apart from how a request carried it: queueing an execution,
//! deciding on an approval, cancelling, overriding a gate. HTTP handlers (and next the
//! web UI's) are thin adapters over these: they check the permission, call one, and
//! answer with its typed result. The engine owns what a decision changes in the records;
//! this layer adds who may decide, the queue, the audit trail and notifications.

use std::collections::BTreeMap;

use opsbook_core::step::approval::Approver;
use opsbook_core::{ExecStatus, Input};
use opsbook_engine::StartRequest;
use opsbook_store::{Execution, ServerStore, Store, now_ms};
use serde_json::{Value, json};

use crate::auth::{Ctx, same_user};
use crate::error::{ApiError, ApiResult, params_error};
use crate::state::AppState;

/// Longer keys are refused: a key names a request, it does not carry data.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// Queues an execution of a published runbook after checking its lifecycle, its
/// parameters (every problem listed) and the policies. Returns the id, whether it is an
/// earlier execution with the same idempotency key, the version and the masked params.
/// (Submissions and schedules both queue through here; the caller audits.)
pub async fn enqueue(
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
    let (mut exec, steps) = st.engine.new_execution(&req, ExecStatus::Queued).await?;
    if published.bundle_sha256.is_some() {
        // Its files are written out there when a worker takes it (see `worker::prepare`).
        exec.base_dir = crate::worker::execution_dir(&st.config.workdir, &exec.id).to_string_lossy().into_owned();
    }
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

/// Records `ctx`'s decision on the approval step execution `id` waits on: never the
/// requester's own (two-person rule), only an eligible approver's, one per person. A
/// settled step queues the execution for a worker.
pub async fn decide(
    st: &AppState,
    ctx: &Ctx,
    id: &str,
    approved: bool,
    comment: Option<String>,
) -> ApiResult<opsbook_api::Decided> {
    let wait = st.engine.approval_wait(id).await?;
    let exec_id = wait.execution.id.clone();
    let rid = &ctx.request_id;
    if same_user(&requester(st, &wait.execution).await?, ctx.user()) {
        st.audit(ctx.user(), "authz.denied", &exec_id, rid, json!({ "reason": "two-person rule" })).await;
        return Err(ApiError::forbidden("the requester cannot approve their own execution"));
    }
    let approvers = wait.spec.approvers();
    let eligible = approvers.is_empty()
        || ctx.principal.has_role("admin")
        || approvers.iter().any(|a| match a {
            Approver::User(u) => same_user(u, ctx.user()),
            Approver::Role(r) => ctx.principal.has_role(r),
        });
    if !eligible {
        st.audit(ctx.user(), "authz.denied", &exec_id, rid, json!({ "reason": "not an approver of this step" })).await;
        let who: Vec<&str> = wait.spec.approvers.iter().map(|a| a.value.as_str()).collect();
        return Err(ApiError::forbidden(format!("only {} may decide on step `{}`", who.join(", "), wait.step.step_id)));
    }
    let tally = st.engine.decide(&wait, ctx.user(), approved, comment.clone()).await?;
    if tally.settled && st.store.requeue(&exec_id).await? {
        st.wake.notify_one();
    }
    let decided = opsbook_api::Decided {
        execution: exec_id.clone(),
        step: wait.step.step_id.clone(),
        decision: if approved { "approve" } else { "reject" }.into(),
        comment,
        approvals: tally.approvals,
        min_approvals: tally.min_approvals,
        settled: tally.settled,
    };
    st.audit(ctx.user(), "execution.approval", &exec_id, rid, to_value(&decided)).await;
    Ok(decided)
}

/// Who asked for an execution, for the two-person rule: its actor, or for a scheduled
/// run the user who created the schedule (from the schedule, or from the audit record
/// of the run once the schedule is gone).
async fn requester(st: &AppState, exec: &Execution) -> ApiResult<String> {
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

/// Cancels execution `id`: a running one is stopped by its worker (rollbacks run); a
/// queued one is cancelled at once; a waiting one is queued for a worker, which stops it
/// and runs its rollbacks (never this request: a client that gives up must not cut a
/// rollback short).
pub async fn cancel(st: &AppState, ctx: &Ctx, id: &str) -> ApiResult<opsbook_api::CancelAccepted> {
    let mut exec = st.store.execution(id).await?;
    let was = exec.status;
    match exec.status {
        ExecStatus::Running => {
            st.store.request_cancel(&exec.id).await?;
            st.stop_running(&exec.id);
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
            st.store.request_cancel(&exec.id).await?;
            if st.store.requeue(&exec.id).await? {
                st.wake.notify_one();
            } else {
                st.stop_running(&exec.id);
            }
        }
        other => return Err(ApiError::conflict(format!("execution {} is already {other}", exec.id))),
    }
    st.audit(ctx.user(), "execution.cancel", &exec.id, &ctx.request_id, json!({ "was": was.as_str() })).await;
    Ok(opsbook_api::CancelAccepted { id: exec.id })
}

/// Break glass (admins): the gate execution `id` waits on counts as passed; the reason
/// goes to the audit trail, the execution's log and the notifications, and the
/// execution is queued to go on.
pub async fn override_gate(st: &AppState, ctx: &Ctx, id: &str, reason: &str) -> ApiResult<opsbook_api::Overridden> {
    if reason.trim().is_empty() {
        return Err(ApiError::bad_request("a reason is required to override a gate"));
    }
    let done = st.engine.override_gate(id, ctx.user(), reason).await?;
    let exec_id = done.execution.id.clone();
    let answer = opsbook_api::Overridden {
        execution: exec_id.clone(),
        step: done.step,
        gate_steps: done.gate_steps,
        reason: reason.to_string(),
        blocked_by: done.blocked_by,
    };
    st.audit(ctx.user(), "gate.override", &exec_id, &ctx.request_id, to_value(&answer)).await;
    let _ = st.notify.send(crate::notify::Note {
        execution_id: exec_id,
        event: "overridden",
        detail: Some(format!(
            "{} overrode {}: {reason}",
            ctx.principal.user,
            answer.blocked_by.as_deref().unwrap_or("the gate")
        )),
    });
    st.wake.notify_one();
    Ok(answer)
}

/// Resumes (`rollback` false) or rolls back a stopped execution on this server, in the
/// background, as a worker would run it (claimed, heartbeating, recovered if the server
/// dies). Refusals come first, changing nothing: not stopped, a secret missing or wrong,
/// a step that may not run again.
pub async fn resume(
    st: &AppState,
    ctx: &Ctx,
    id: &str,
    params: BTreeMap<String, Value>,
    rollback: bool,
) -> ApiResult<opsbook_api::Resumed> {
    let exec = st.store.execution(id).await?;
    // Carrying an execution on is running its runbook: the same policies decide.
    let rb = st.engine.stored_runbook(&exec.runbook_sha256).await?;
    let values = exec.params.as_object().cloned().unwrap_or_default();
    if let Some(p) = crate::policy::refusal(&st.config.policies, &ctx.principal, &exec.runbook_name, &rb.tags, &values)
    {
        st.audit(ctx.user(), "authz.denied", &exec.id, &ctx.request_id, json!({ "roles": ctx.principal.roles })).await;
        return Err(ApiError::forbidden(format!(
            "carrying `{}` on needs one of the roles {}",
            exec.runbook_name,
            p.roles.join(", ")
        )));
    }
    let secrets: BTreeMap<String, Input> = params.into_iter().map(|(k, v)| (k, Input::Value(v))).collect();
    st.engine.check_resume(&exec.id, &secrets, rollback).await?;
    crate::worker::prepare(st, &exec.id)
        .await
        .map_err(|why| ApiError::conflict(format!("cannot prepare the execution: {why}")))?;
    let action = if rollback { "rollback" } else { "resume" };
    let secret_names: Vec<&String> = secrets.keys().collect();
    let details = json!({ "was": exec.status.as_str(), "secrets_supplied": secret_names });
    st.audit(ctx.user(), &format!("execution.{action}"), &exec.id, &ctx.request_id, details).await;
    // In the vault, where the runner (and later runs of it, after an approval or a gate)
    // finds them: exactly the ones supplied now.
    {
        let mut vault = st.secrets.lock().unwrap_or_else(|p| p.into_inner());
        if secrets.is_empty() {
            vault.remove(&exec.id);
        } else {
            vault.insert(exec.id.clone(), secrets);
        }
    }
    let kind = if rollback { crate::worker::RunKind::Rollback } else { crate::worker::RunKind::Resume };
    crate::worker::spawn_carry_on(st, exec.id.clone(), exec.runbook_name.clone(), kind);
    Ok(opsbook_api::Resumed { id: exec.id, action: action.into() })
}

/// A wire type as the audit trail records it.
pub fn to_value(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
