//! What the API does, apart from how a request carried it: queueing an execution,
//! deciding on an approval, cancelling, overriding a gate. HTTP handlers (and next the
//! web UI's) are thin adapters over these: they check the permission, call one, and
//! answer with its typed result. The engine owns what a decision changes in the records;
//! this layer adds who may decide, the queue, the audit trail and notifications.

use std::collections::BTreeMap;

use opsbook_core::step::approval::Approver;
use opsbook_core::{ExecStatus, Input};
use opsbook_engine::{SECRET_DIFFERS, StartRequest};
use opsbook_store::{Execution, ServerStore, Store, now_ms};
use serde_json::{Value, json};

use crate::auth::{Ctx, same_user};
use crate::error::{ApiError, ApiResult, params_error};
use crate::state::AppState;

pub mod quality;

/// Longer keys are refused: a key names a request, it does not carry data.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// How a new execution goes on the audit trail: by whom, as what action, for which
/// request, and what its details add to the runbook, version and (masked) params.
pub struct AuditAs<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub request_id: &'a str,
    pub details: serde_json::Map<String, Value>,
}

/// An execution [`enqueue`] queued.
pub struct Queued {
    pub id: String,
    /// An earlier execution with the same idempotency key (nothing was queued or audited).
    pub repeated: bool,
    pub version: String,
    /// The params, secrets masked.
    pub masked: Value,
    /// What the submitter should know (a deprecated runbook).
    pub warnings: Vec<String>,
}

/// Queues an execution of a published runbook after checking its lifecycle, its
/// parameters (every problem listed) and the policies, and audits it as `audit` in the
/// same transaction. (Submissions, triggers and schedules all queue through here.)
pub async fn enqueue(
    st: &AppState,
    name: &str,
    version: Option<String>,
    inputs: BTreeMap<String, Input>,
    who: &crate::auth::Principal,
    key: Option<&str>,
    audit: AuditAs<'_>,
) -> ApiResult<Queued> {
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
    let mut warnings = Vec::new();
    if entry.status == "deprecated" {
        warnings.push(format!("runbook `{name}` is deprecated; prefer its replacement"));
    }
    let version = version.unwrap_or(entry.latest_version);
    let published = st.published_version(name, &version).await?;
    let rb = opsbook_core::Runbook::clone(&*st.engine.stored_runbook(&published.sha256).await?);
    let params = rb.check_params(&inputs).map_err(|e| params_error(&e))?;
    let values = params.values.clone().into_iter().collect();
    if let Some(p) = crate::policy::refusal(&st.config.policies, who, name, &rb.tags, &values) {
        let why = p.description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
        let details = json!({ "policy": p.description, "needs": p.roles, "roles": who.roles });
        st.audit(&who.user, "authz.denied", name, audit.request_id, details).await;
        return Err(ApiError::forbidden(format!(
            "running `{name}` like this needs one of the roles {}{why}",
            p.roles.join(", ")
        )));
    }
    if let Err(why) = crate::calls::check_child_policies(&st.store, &st.config.policies, who, &rb, &values).await {
        st.audit(&who.user, "authz.denied", name, audit.request_id, json!({ "policy": why, "roles": who.roles })).await;
        return Err(ApiError::forbidden(why));
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
    // Sealed in the store before the execution is, so no worker finds it without them.
    if !secrets.is_empty() {
        crate::vault::put(st, &exec.id, &secrets).await?;
    }
    let mut details = audit.details;
    details.insert("runbook".into(), json!(name));
    details.insert("version".into(), json!(version));
    details.insert("params".into(), masked.clone());
    let record = st.audit_record(audit.actor, audit.action, &exec.id, audit.request_id, &Value::Object(details));
    let id = match st.store.create_execution_once(&exec, &steps, key, &record).await {
        Ok(id) => id,
        Err(e) => {
            crate::vault::remove(st, &exec.id).await;
            return Err(e.into());
        }
    };
    let repeated = id != exec.id;
    if repeated {
        crate::vault::remove(st, &exec.id).await;
    } else {
        st.wake.notify_one();
    }
    Ok(Queued { id, repeated, version, masked, warnings })
}

/// Queues an execution for `ctx` (the API's submit and the web UI's run form), audited;
/// a repeated idempotency key answers the first execution, not audited again.
pub async fn submit(
    st: &AppState,
    ctx: &Ctx,
    name: &str,
    version: Option<String>,
    inputs: BTreeMap<String, Input>,
    key: Option<&str>,
) -> ApiResult<opsbook_api::Submitted> {
    let audit = AuditAs {
        actor: ctx.user(),
        action: "execution.submit",
        request_id: &ctx.request_id,
        details: Default::default(),
    };
    let q = enqueue(st, name, version, inputs, &ctx.principal, key, audit).await?;
    Ok(opsbook_api::Submitted { id: q.id, repeated: q.repeated, warnings: q.warnings })
}

/// The allowed transitions: draft → active → deprecated → archived, deprecated → active,
/// and a draft may be archived without ever running.
pub fn lifecycle_allowed(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("draft", "active")
            | ("draft", "archived")
            | ("active", "deprecated")
            | ("deprecated", "active")
            | ("deprecated", "archived")
    )
}

/// Moves runbook `name` to lifecycle `status`, with a reason (required); archiving
/// removes its schedules and says which.
pub async fn change_lifecycle(
    st: &AppState,
    ctx: &Ctx,
    name: &str,
    status: &str,
    reason: Option<String>,
) -> ApiResult<opsbook_api::LifecycleChanged> {
    use opsbook_core::LifecycleStatus;
    ApiError::check_text("reason", reason.as_deref())?;
    if LifecycleStatus::parse(status).is_none() {
        return Err(ApiError::field(
            "status",
            format!("unknown status `{status}`: use draft, active, deprecated or archived"),
        ));
    }
    let reason =
        reason.filter(|r| !r.trim().is_empty()).ok_or_else(|| ApiError::field("reason", "a reason is required"))?;
    let entry = st.store.registry_entry(name).await?;
    if !lifecycle_allowed(&entry.status, status) {
        let next: Vec<&str> = ["draft", "active", "deprecated", "archived"]
            .into_iter()
            .filter(|to| lifecycle_allowed(&entry.status, to))
            .collect();
        let next = if next.is_empty() { "nowhere (it is final)".to_string() } else { next.join(" or ") };
        return Err(ApiError::conflict(format!(
            "runbook `{name}` cannot go from {} to {status}; from {} it can go to {next}",
            entry.status, entry.status
        )));
    }
    if status == LifecycleStatus::Active.as_str() {
        // Its newest version's tests must pass (they are run again: nothing is cached).
        let rb = st.engine.stored_runbook(&entry.latest_sha256).await?;
        let bundle = st.store.registry_version(name, &entry.latest_version).await?.0.bundle_sha256;
        quality::refuse_failing(name, &quality::run_tests(st, &rb, bundle.as_deref()).await?)?;
    }
    let event = opsbook_store::LifecycleEvent {
        name: name.to_string(),
        from_status: Some(entry.status.clone()),
        to_status: status.to_string(),
        actor: ctx.user().to_string(),
        reason: Some(reason),
        at: now_ms(),
    };
    let removed = st.store.set_lifecycle(&event).await?;
    let archived = event.to_status == LifecycleStatus::Archived.as_str();
    let mut doc = opsbook_api::LifecycleChanged { event: event.into(), schedules_removed: None, note: None };
    if archived {
        // An archived runbook never runs again: its schedules went with it. Say which.
        let ids: Vec<String> = removed.into_iter().map(|s| s.id).collect();
        doc.note = Some(match ids.len() {
            0 => "archived; it had no schedules".to_string(),
            n => format!("archived; its {n} schedule(s) were removed, since an archived runbook never runs again"),
        });
        doc.schedules_removed = Some(ids);
    }
    st.audit(ctx.user(), "runbook.lifecycle", name, &ctx.request_id, to_value(&doc)).await;
    Ok(doc)
}

/// Refuses registry filters that can match nothing (an unknown runbook type or
/// lifecycle status): a mistake, said as one, by the API and the web UI alike.
pub fn check_registry_filters(runbook_type: Option<&str>, status: Option<&str>) -> ApiResult<()> {
    if let Some(t) = runbook_type.filter(|t| opsbook_core::RunbookType::parse(t).is_none()) {
        let all: Vec<&str> = opsbook_core::RunbookType::ALL.iter().map(|t| t.as_str()).collect();
        return Err(ApiError::param("type", format!("unknown type `{t}`: use one of {}", all.join(", "))));
    }
    if let Some(s) = status.filter(|s| opsbook_core::LifecycleStatus::parse(s).is_none()) {
        return Err(ApiError::param(
            "status",
            format!("unknown status `{s}`: use draft, active, deprecated or archived"),
        ));
    }
    Ok(())
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
    ApiError::check_text("comment", comment.as_deref())?;
    let wait = st.engine.approval_wait(id).await?;
    let exec_id = wait.execution.id.clone();
    let rid = &ctx.request_id;
    if let Err((reason, message)) = may_decide(st, &ctx.principal, &wait).await? {
        st.audit(ctx.user(), "authz.denied", &exec_id, rid, json!({ "reason": reason })).await;
        return Err(ApiError::forbidden(message));
    }
    let comment = crate::vault::masked(st, &wait.execution, &BTreeMap::new(), comment).await;
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

/// Whether `who` may decide on the approval `wait` is for: never the requester (the
/// two-person rule), else an eligible approver (or an admin). A refusal carries the
/// reason audited and the message shown.
pub async fn may_decide(
    st: &AppState,
    who: &crate::auth::Principal,
    wait: &opsbook_engine::ApprovalWait,
) -> ApiResult<Result<(), (&'static str, String)>> {
    if same_user(&requester(st, &wait.execution).await?, &who.user) {
        return Ok(Err(("two-person rule", "the requester cannot approve their own execution".into())));
    }
    let approvers = wait.spec.approvers();
    let eligible = approvers.is_empty()
        || who.has_role("admin")
        || approvers.iter().any(|a| match a {
            Approver::User(u) => same_user(u, &who.user),
            Approver::Role(r) => who.has_role(r),
        });
    if !eligible {
        let names: Vec<&str> = wait.spec.approvers.iter().map(|a| a.value.as_str()).collect();
        let message = format!("only {} may decide on step `{}`", names.join(", "), wait.step.step_id);
        return Ok(Err(("not an approver of this step", message)));
    }
    Ok(Ok(()))
}

/// Who asked for an execution, for the two-person rule: its actor, or for a scheduled
/// run the user on whose authority it started, as the run's audit record says (the
/// schedule's creator changes when its runbook is published again). Without that record,
/// the schedule's creator now.
async fn requester(st: &AppState, exec: &Execution) -> ApiResult<String> {
    let Some(schedule) = exec.actor.strip_prefix("schedule:") else {
        return Ok(exec.actor.clone());
    };
    let filter = opsbook_store::AuditFilter {
        action: Some("execution.submit".into()),
        target: Some(exec.id.clone()),
        limit: 1,
        ..Default::default()
    };
    let submitted = st.store.audit(&filter).await?;
    if let Some(by) = submitted.first().and_then(|r| r.details["requested_by"].as_str()) {
        return Ok(by.to_string());
    }
    Ok(st.store.schedules().await?.into_iter().find(|s| s.id == schedule).map_or(exec.actor.clone(), |s| s.created_by))
}

/// Cancels execution `id`: a running one is stopped by its worker (rollbacks run); a
/// queued one that never started is cancelled at once (one queued again after it started
/// is stopped by the worker that takes it); a waiting one is queued for a worker, which stops it
/// and runs its rollbacks (never this request: a client that gives up must not cut a
/// rollback short).
pub async fn cancel(st: &AppState, ctx: &Ctx, id: &str) -> ApiResult<opsbook_api::CancelAccepted> {
    let exec = st.store.execution(id).await?;
    if exec.status.is_terminal() {
        return Err(ended(&exec));
    }
    // Cancelling runs the rollbacks: the runbook's policies apply as to carrying it on.
    allowed(st, ctx, &exec, &format!("cancelling `{}`", exec.runbook_name)).await?;
    let was = exec.status;
    match exec.status {
        ExecStatus::Running => {
            st.store.request_cancel(&exec.id).await?;
            st.stop_running(&exec.id);
        }
        ExecStatus::Queued => {
            let error = format!("cancelled by {} before it started", ctx.principal.user);
            if st.store.cancel_unstarted(&exec.id, now_ms(), &error).await? {
                crate::vault::remove(st, &exec.id).await;
            } else if let now = st.store.execution(&exec.id).await?
                && now.status.is_terminal()
            {
                // It ended meanwhile (ran to its end, or another cancel came first).
                return Err(ended(&now));
            } else {
                // Queued again after it started (a decision, a cleared gate, a look at its
                // child), or taken by a worker since it was read: its runner stops it,
                // running its rollbacks.
                st.store.request_cancel(&exec.id).await?;
                st.stop_running(&exec.id);
                st.wake.notify_one();
            }
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
        _ => return Err(ended(&exec)),
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
    ApiError::check_text("reason", Some(reason))?;
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
        runbook: None,
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
    may_carry_on(st, ctx, &exec).await?;
    // Held from the checks on: a second request now is refused, not run twice.
    let hold = st.carry(&exec.id)?;
    let secrets: BTreeMap<String, Input> = params.into_iter().map(|(k, v)| (k, Input::Value(v))).collect();
    let action = if rollback { "rollback" } else { "resume" };
    let nothing = match st.engine.check_resume(&exec.id, &secrets, rollback).await {
        Ok(nothing) => nothing,
        Err(e) => {
            audit_secret_mismatch(st, ctx, &exec.id, action, &e).await;
            return Err(e.into());
        }
    };
    // Nothing to undo: nothing changes, nothing runs (as `opsbook rollback` says locally).
    if nothing {
        return Ok(opsbook_api::Resumed { id: exec.id, action: action.into(), nothing_to_roll_back: true });
    }
    crate::worker::prepare(&st.store, &exec)
        .await
        .map_err(|why| ApiError::conflict(format!("cannot prepare the execution: {why}")))?;
    let secret_names: Vec<&String> = secrets.keys().collect();
    // In the vault, where the runner (and later runs of it, after an approval or a gate)
    // finds them: exactly the ones supplied now. Before the audit record: a failure here
    // leaves no record of a resume that did not happen.
    crate::vault::put(st, &exec.id, &secrets).await?;
    let details = json!({ "was": exec.status.as_str(), "secrets_supplied": secret_names });
    st.audit(ctx.user(), &format!("execution.{action}"), &exec.id, &ctx.request_id, details).await;
    let kind = if rollback { crate::worker::RunKind::Rollback } else { crate::worker::RunKind::Resume };
    crate::worker::spawn_carry_on(st, exec.clone(), kind, hold).await;
    Ok(opsbook_api::Resumed { id: exec.id, action: action.into(), nothing_to_roll_back: false })
}

/// A secret given again that differs from the one the execution started with is a
/// guess as far as anyone can tell: audited (`execution.secret_mismatch`, which
/// parameters, never the values), so that repeated guessing shows.
pub(crate) async fn audit_secret_mismatch(st: &AppState, ctx: &Ctx, id: &str, action: &str, e: &opsbook_engine::Error) {
    let opsbook_engine::Error::Params(errors) = e else { return };
    let wrong: Vec<&str> = errors.iter().filter(|p| p.message == SECRET_DIFFERS).map(|p| p.param.as_str()).collect();
    if !wrong.is_empty() {
        let details = json!({ "action": action, "params": wrong });
        st.audit(ctx.user(), "execution.secret_mismatch", id, &ctx.request_id, details).await;
    }
}

fn ended(exec: &Execution) -> ApiError {
    ApiError::conflict(format!("execution {} {} already", exec.id, exec.status.phrase()))
}

/// Carrying an execution on is running its runbook: the same policies decide (refusals
/// audited).
pub async fn may_carry_on(st: &AppState, ctx: &Ctx, exec: &Execution) -> ApiResult<()> {
    allowed(st, ctx, exec, &format!("carrying `{}` on", exec.runbook_name)).await
}

/// Refuses `doing` something to `exec` that its runbook's policies keep from the caller.
async fn allowed(st: &AppState, ctx: &Ctx, exec: &Execution, doing: &str) -> ApiResult<()> {
    // The tags of the version it runs; the registry's if that text no longer reads (a
    // cancel must still be possible then).
    let tags = match st.engine.stored_runbook(&exec.runbook_sha256).await {
        Ok(rb) => rb.tags.clone(),
        Err(e) => match st.store.registry_entry(&exec.runbook_name).await {
            Ok(entry) => entry.tags,
            Err(_) => return Err(e.into()),
        },
    };
    let values = exec.params.as_object().cloned().unwrap_or_default();
    if let Some(p) = crate::policy::refusal(&st.config.policies, &ctx.principal, &exec.runbook_name, &tags, &values) {
        st.audit(ctx.user(), "authz.denied", &exec.id, &ctx.request_id, json!({ "roles": ctx.principal.roles })).await;
        return Err(ApiError::forbidden(format!("{doing} needs one of the roles {}", p.roles.join(", "))));
    }
    Ok(())
}

/// A wire type as the audit trail records it.
pub fn to_value(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
