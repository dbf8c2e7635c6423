//! Gates over HTTP: the verdict for CI systems that prefer it, and the break-glass override.

use axum::Json;
use axum::extract::{Path, State};
use opsbook_core::{ExecStatus, StepKind, StepStatus};
use opsbook_store::{ServerStore, Store, now_ms};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Ctx, Perm};
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::state::AppState;

/// `GET /api/v1/gates/{name}`: evaluates a named gate now.
#[utoipa::path(get, path = "/api/v1/gates/{name}", tag = "gates", params(("name" = String, Path)), responses((status = 200, description = "The verdict with its block records"), (status = 404, description = "Unknown gate", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn check(State(st): State<AppState>, ctx: Ctx, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    ctx.require(&st, Perm::Read, &name).await?;
    let gates = st.engine.config.gates.snapshot();
    let def = gates.get(&name).ok_or_else(|| ApiError::not_found(format!("gate `{name}` not found")))?;
    let checker = opsbook_gate::Checker::new(std::time::Duration::from_secs(20)).map_err(ApiError::internal)?;
    Ok(Json(checker.check(&name, def, jiff::Timestamp::now()).await.document()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideBody {
    reason: String,
}

/// `POST /api/v1/executions/{id}/override {reason}` (admin): break glass — the gate step
/// the execution waits on counts as passed; the reason goes to the audit trail.
#[utoipa::path(post, path = "/api/v1/executions/{id}/override", tag = "gates", params(("id" = String, Path)), request_body = OverrideBody, responses((status = 200, description = "Overridden; the execution goes on"), (status = 400, description = "No reason", body = crate::openapi::ErrorBody), (status = 409, description = "Not waiting on a gate", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn override_gate(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<OverrideBody>,
) -> ApiResult<Json<Value>> {
    let rid = ctx.request_id.clone();
    ctx.require(&st, Perm::Admin, &id).await?;
    if body.reason.trim().is_empty() {
        return Err(ApiError::bad_request("a reason is required to override a gate"));
    }
    let exec = st.store.execution(&id).await?;
    let rb = st.engine.stored_runbook(&exec.runbook_sha256).await?;
    // Waiting on a gate: at a gate step, or before a later step on a gate's recheck.
    let gate_wait = |steps: &[opsbook_store::StepRecord]| {
        steps.iter().position(|s| {
            s.status == StepStatus::Waiting
                && !matches!(rb.steps.get(s.idx as usize).map(|x| &x.kind), Some(StepKind::Approval(_)) | None)
        })
    };
    // Hold the execution while the override is written. A gate check under way (a poll,
    // or the first check on a worker) is waited for, so the override never races it; a
    // check is bounded by its timeout.
    let gate_checking = |steps: &[opsbook_store::StepRecord]| {
        steps.iter().any(|s| {
            s.status == StepStatus::Running
                && matches!(rb.steps.get(s.idx as usize).map(|x| &x.kind), Some(StepKind::Gate(_)))
        })
    };
    let owner = format!("override:{}", ctx.principal.user);
    let deadline = now_ms() + 30_000;
    let (exec, mut steps, i) = loop {
        let steps = st.store.steps(&exec.id).await?;
        let current = st.store.execution(&exec.id).await?;
        let waiting = gate_wait(&steps).is_some();
        let busy = now_ms() < deadline && gate_checking(&steps);
        match current.status {
            ExecStatus::Waiting if waiting => {
                if let Some(held) = st.store.claim_waiting(&exec.id, &owner, st.engine.config.lease_ms()).await? {
                    // Read again: a poll that just ended may have changed them.
                    let steps = st.store.steps(&exec.id).await?;
                    match gate_wait(&steps) {
                        Some(i) => break (held, steps, i),
                        None => {
                            release(&st, held, ExecStatus::Waiting).await?;
                            return Err(ApiError::conflict(format!(
                                "execution {} is no longer waiting on a gate",
                                exec.id
                            )));
                        }
                    }
                }
                // Else a poll holds it: try again when it is done.
            }
            ExecStatus::Running | ExecStatus::Queued if busy || (waiting && now_ms() < deadline) => {}
            other => {
                return Err(ApiError::conflict(format!("execution {} is {other}, not waiting on a gate", exec.id)));
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let now = now_ms();
    let blocked_by = steps[i].error.clone();
    let at_gate_step = matches!(rb.steps[steps[i].idx as usize].kind, StepKind::Gate(_));
    // The gates waived: the gate step itself, or every gate whose recheck holds step `i`.
    let waived: Vec<usize> = if at_gate_step {
        vec![i]
    } else {
        (0..i)
            .filter(|&g| steps[g].status == StepStatus::Succeeded && steps[g].overridden_by.is_none())
            .filter(
                |&g| matches!(&rb.steps[steps[g].idx as usize].kind, StepKind::Gate(spec) if spec.recheck.is_some()),
            )
            .collect()
    };
    let mut changed = Vec::new();
    for g in waived {
        let gate = &mut steps[g];
        if g == i {
            gate.status = StepStatus::Succeeded;
            gate.finished_at = Some(now);
            gate.wait_deadline = None;
            gate.attempts = gate.attempts.max(1);
        }
        gate.overridden_by = Some(ctx.user().to_string());
        // Also shown with the step's outputs, where people read what a step produced.
        gate.outputs.insert("overridden_by".into(), ctx.user().to_string().into());
        gate.outputs.insert("override_reason".into(), body.reason.clone().into());
        // What blocked it is in the audit record (`blocked_by`); the step passed.
        gate.error = None;
        changed.push(g);
    }
    if !at_gate_step {
        // The held step runs when the execution goes on; its waiting is over.
        let held = &mut steps[i];
        held.status = StepStatus::Pending;
        held.error = None;
        held.wait_deadline = None;
        held.started_at = None;
        changed.push(i);
    }
    for &c in &changed {
        st.store.update_step(&steps[c]).await?;
    }
    // In the execution's log too, where people following it look.
    let line = format!(
        "gate overridden by {}: {} (was: {})",
        ctx.principal.user,
        body.reason,
        blocked_by.as_deref().unwrap_or("blocked")
    );
    let seq = st.store.last_log_seq(&exec.id).await? + 1;
    st.store
        .append_logs(&[opsbook_store::LogLine {
            execution_id: exec.id.clone(),
            seq,
            step_id: Some(steps[i].step_id.clone()),
            phase: opsbook_store::Phase::Step,
            attempt: 0,
            stream: opsbook_store::Stream::System,
            ts: now,
            line,
        }])
        .await?;
    let gates: Vec<&str> =
        changed.iter().filter(|&&c| c != i || at_gate_step).map(|&c| steps[c].step_id.as_str()).collect();
    let doc = json!({
        "execution": exec.id,
        "step": steps[i].step_id,
        "gate_steps": gates,
        "reason": body.reason,
        "blocked_by": blocked_by,
    });
    st.audit(ctx.user(), "gate.override", &exec.id, &rid, doc.clone()).await;
    let _ = st.notify.send(crate::notify::Note {
        execution_id: exec.id.clone(),
        event: "overridden",
        detail: Some(format!(
            "{} overrode {}: {}",
            ctx.principal.user,
            blocked_by.as_deref().unwrap_or("the gate"),
            body.reason
        )),
    });
    release(&st, exec, ExecStatus::Queued).await?;
    st.wake.notify_one();
    Ok(Json(doc))
}

/// Gives a held execution back: to the queue (it goes on) or to waiting.
async fn release(st: &AppState, mut exec: opsbook_store::Execution, to: ExecStatus) -> Result<(), ApiError> {
    exec.status = to;
    exec.owner = None;
    exec.lease_expires_at = None;
    st.store.update_execution(&exec).await?;
    Ok(())
}
