//! `approval`: settles from recorded decisions, asks a person if one is at hand,
//! otherwise leaves the execution `waiting`.

use std::time::Duration;

use opsbook_core::step::approval::ApprovalSpec;
use opsbook_core::{Step, StepStatus, template};
use opsbook_store::{Approval, Phase, Store, WaitKind, now_ms};

use crate::observer::{ApprovalRequest, Event};
use crate::runner::{Flow, Run};
use crate::{Error, Result};

pub(crate) async fn run(run: &mut Run<'_, '_>, idx: usize, step: &Step, spec: &ApprovalSpec) -> Result<Flow> {
    let now = now_ms();
    let timeout_ms = i64::try_from(step.kind.default_timeout().0.as_millis()).unwrap_or(i64::MAX / 2);
    run.mark_running(idx, Some(now.saturating_add(timeout_ms))).await?;
    let message = match &spec.message {
        Some(m) => template::render_plain(&m.value, &run.context(true)).unwrap_or_else(|e| format!("(message: {e})")),
        None => format!("Approve step `{}` of {}?", step.name, run.rb.name),
    };
    // Values from parameters may hold escape sequences: shown as plain text.
    let message = opsbook_core::terminal::plain_text(&run.masker().mask(&message));
    run.steps[idx].rendered = Some(message.clone());
    // A runbook test's decision, recorded as a person's would be.
    if let Some(m) = run.engine.config.mocks.as_ref().and_then(|m| m.get(&step.id)).cloned()
        && let Some(answer) = m.approval
        && !run.store().approvals(&run.exec.id).await?.iter().any(|a| a.step_id == step.id && !a.manual)
    {
        let decision = Approval {
            execution_id: run.exec.id.clone(),
            step_id: step.id.clone(),
            phase: Phase::Step,
            approver: m.who(),
            approved: answer == opsbook_core::testcase::ApprovalAnswer::Approved,
            manual: false,
            comment: m.comment.clone(),
            created_at: now_ms(),
        };
        for n in 0..spec.min_approvals {
            let approver = if n == 0 { decision.approver.clone() } else { format!("{}-{}", decision.approver, n + 1) };
            run.store().add_approval(&Approval { approver, ..decision.clone() }).await?;
            if !decision.approved {
                break;
            }
        }
    }
    loop {
        let deadline = run.steps[idx].wait_deadline.unwrap_or(i64::MAX);
        let decisions: Vec<Approval> =
            run.store().approvals(&run.exec.id).await?.into_iter().filter(|a| a.step_id == step.id).collect();
        let approved: Vec<&str> = decisions.iter().filter(|a| a.approved).map(|a| a.approver.as_str()).collect();
        let settled = if let Some(r) = decisions.iter().find(|a| !a.approved) {
            let why = r.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default();
            Some((StepStatus::Failed, Some(format!("rejected by {}{why}", r.approver))))
        } else if approved.len() >= spec.min_approvals as usize {
            run.steps[idx].outputs.insert("approved_by".into(), approved.join(",").into());
            Some((StepStatus::Succeeded, None))
        } else if now_ms() > deadline {
            Some((StepStatus::TimedOut, Some(format!("no decision within {}", step.kind.default_timeout()))))
        } else {
            None
        };
        if let Some((status, error)) = settled {
            return run.settle(idx, status, error).await;
        }
        let Some(prompt) = run.hooks.prompt.clone() else {
            break;
        };
        let request = ApprovalRequest {
            execution_id: run.exec.id.clone(),
            step_id: step.id.clone(),
            message: message.clone(),
            approvers: spec.approvers.iter().map(|a| a.value.clone()).collect(),
            min_approvals: spec.min_approvals,
            approvals_so_far: u32::try_from(approved.len()).unwrap_or(u32::MAX),
        };
        let left = Duration::from_millis(u64::try_from(deadline.saturating_sub(now_ms())).unwrap_or(0));
        let cancel = run.hooks.cancel.clone();
        let asked = tokio::task::spawn_blocking(move || prompt.ask(&request));
        let decision = tokio::select! {
            d = asked => d.map_err(|e| Error::Io(format!("approval prompt failed: {e}")))?,
            _ = tokio::time::sleep(left) => continue,
            _ = cancel.reached(1) => {
                run.cancel_step(idx, "cancelled while waiting for approval").await?;
                return Ok(Flow::Done(StepStatus::Cancelled));
            }
        };
        let Some(d) = decision else { break };
        if !spec.local_user_may_approve(&d.approver) {
            let msg = format!("{} is not among the approvers of step `{}`", d.approver, step.id);
            run.system(Some(&step.id), Phase::Step, &msg).await?;
            break;
        }
        let approval = Approval {
            execution_id: run.exec.id.clone(),
            step_id: step.id.clone(),
            approver: d.approver.clone(),
            phase: Phase::Step,
            approved: d.approved,
            manual: false,
            comment: d.comment.clone(),
            created_at: now_ms(),
        };
        if let Err(e) = run.store().add_approval(&approval).await {
            run.system(Some(&step.id), Phase::Step, &e.to_string()).await?;
            break;
        }
        let verb = if d.approved { "approved" } else { "rejected" };
        run.system(Some(&step.id), Phase::Step, &format!("{verb} by {}", d.approver)).await?;
    }
    run.wait_step(idx, WaitKind::Approval, None, None).await?;
    run.event(&Event::Waiting { step_id: &step.id, kind: WaitKind::Approval, message: &message });
    Ok(Flow::Wait)
}
