//! `manual`: a person does it by hand and confirms it (every checklist item): on the
//! terminal when one is at hand, otherwise with `opsbook confirm`, the API or the web UI,
//! and meanwhile the execution waits. A manual rollback is confirmed the same way.

use std::time::Duration;

use opsbook_core::step::manual::ManualSpec;
use opsbook_core::{Step, StepStatus, template};
use opsbook_store::{Approval, Phase, Store, WaitKind, now_ms};

use crate::observer::{Event, ManualRequest};
use crate::runner::{Flow, Run};
use crate::{Error, Result};

/// Where a manual step (or rollback) stands.
pub(crate) enum Answer {
    Done {
        by: String,
        note: Option<String>,
    },
    NotDone {
        by: String,
        note: Option<String>,
    },
    TimedOut,
    Cancelled,
    /// Nobody has answered and nobody here can: the execution waits.
    Waits,
}

/// The request for step `step_id`'s manual action in `phase`, rendered and masked.
pub(crate) fn request(run: &Run<'_, '_>, step_id: &str, phase: Phase, spec: &ManualSpec) -> ManualRequest {
    let ctx = run.context(true);
    let render = |t: &str| {
        let text = template::render_plain(t, &ctx).unwrap_or_else(|e| format!("{t} (could not render: {e})"));
        opsbook_core::terminal::plain_text(&run.masker().mask(&text))
    };
    ManualRequest {
        execution_id: run.exec.id.clone(),
        step_id: step_id.to_string(),
        phase,
        instructions: render(&spec.instructions.value),
        checklist: spec.checklist.iter().map(|i| render(&i.value)).collect(),
    }
}

/// How a manual action reads in the step's record, the log and notifications.
pub fn describe(r: &ManualRequest) -> String {
    let mut text = r.instructions.clone();
    for item in &r.checklist {
        text.push_str(&format!("\n- [ ] {item}"));
    }
    text
}

/// Settles the request from the recorded confirmation or, when there is none yet, from
/// a person at hand (whose answer is recorded first); `deadline` in ms since the epoch.
pub(crate) async fn answer(
    run: &mut Run<'_, '_>,
    req: &ManualRequest,
    deadline: i64,
    cancel_level: u8,
) -> Result<Answer> {
    // A runbook test's answer, recorded as a person's would be.
    if let Some(m) = run.engine.config.mocks.as_ref().and_then(|m| m.get(&req.step_id)).cloned() {
        let answer = if req.phase == Phase::Rollback { m.rollback_manual } else { m.manual };
        if let Some(a) = answer {
            let record = Approval {
                execution_id: run.exec.id.clone(),
                step_id: req.step_id.clone(),
                phase: req.phase,
                approver: m.who(),
                approved: a == opsbook_core::testcase::ManualAnswer::Done,
                manual: true,
                comment: m.comment.clone(),
                created_at: now_ms(),
            };
            let recorded = run.store().approvals(&run.exec.id).await?;
            if !recorded.iter().any(|a| a.manual && a.step_id == record.step_id && a.phase == record.phase) {
                run.store().add_approval(&record).await?;
            }
        }
    }
    loop {
        let decided = run
            .store()
            .approvals(&run.exec.id)
            .await?
            .into_iter()
            .find(|a| a.manual && a.step_id == req.step_id && a.phase == req.phase);
        if let Some(a) = decided {
            let (by, note) = (a.approver, a.comment);
            return Ok(if a.approved { Answer::Done { by, note } } else { Answer::NotDone { by, note } });
        }
        if now_ms() > deadline {
            return Ok(Answer::TimedOut);
        }
        let Some(prompt) = run.hooks.prompt.clone() else {
            return Ok(Answer::Waits);
        };
        let left = Duration::from_millis(u64::try_from(deadline.saturating_sub(now_ms())).unwrap_or(0));
        let cancel = run.hooks.cancel.clone();
        let asked = {
            let req = req.clone();
            tokio::task::spawn_blocking(move || prompt.confirm(&req))
        };
        let given = tokio::select! {
            c = asked => c.map_err(|e| Error::Io(format!("confirmation prompt failed: {e}")))?,
            _ = tokio::time::sleep(left) => continue,
            _ = cancel.reached(cancel_level) => return Ok(Answer::Cancelled),
        };
        let Some(c) = given else {
            return Ok(Answer::Waits);
        };
        let record = Approval {
            execution_id: run.exec.id.clone(),
            step_id: req.step_id.clone(),
            phase: req.phase,
            approver: c.by.clone(),
            approved: c.done,
            manual: true,
            comment: c.note.clone(),
            created_at: now_ms(),
        };
        if let Err(e) = run.store().add_approval(&record).await {
            run.system(Some(&req.step_id), req.phase, &e.to_string()).await?;
            return Ok(Answer::Waits);
        }
    }
}

/// What a settled answer says, for the log and the step's error.
pub(crate) fn said(done: bool, by: &str, note: Option<&str>) -> String {
    let note = note.map(|n| format!(": {n}")).unwrap_or_default();
    if done { format!("done, confirmed by {by}{note}") } else { format!("not done, said {by}{note}") }
}

pub(crate) async fn run(run: &mut Run<'_, '_>, idx: usize, step: &Step, spec: &ManualSpec) -> Result<Flow> {
    let wait_ms = i64::try_from(spec.wait().0.as_millis()).unwrap_or(i64::MAX / 2);
    run.mark_running(idx, Some(now_ms().saturating_add(wait_ms))).await?;
    let req = request(run, &step.id, Phase::Step, spec);
    run.steps[idx].rendered = Some(describe(&req));
    let deadline = run.steps[idx].wait_deadline.unwrap_or(i64::MAX);
    match answer(run, &req, deadline, 1).await? {
        Answer::Done { by, note } => {
            run.system(Some(&step.id), Phase::Step, &said(true, &by, note.as_deref())).await?;
            let outputs = &mut run.steps[idx].outputs;
            outputs.insert("confirmed_by".into(), by.into());
            if let Some(n) = note {
                outputs.insert("note".into(), n.into());
            }
            run.settle(idx, StepStatus::Succeeded, None).await
        }
        Answer::NotDone { by, note } => {
            let why = said(false, &by, note.as_deref());
            run.system(Some(&step.id), Phase::Step, &why).await?;
            run.settle(idx, StepStatus::Failed, Some(why)).await
        }
        Answer::TimedOut => {
            let why = format!("not confirmed within {}", spec.wait());
            run.settle(idx, StepStatus::TimedOut, Some(why)).await
        }
        Answer::Cancelled => {
            run.cancel_step(idx, "cancelled while waiting for confirmation").await?;
            Ok(Flow::Done(StepStatus::Cancelled))
        }
        Answer::Waits => {
            run.wait_step(idx, WaitKind::Manual, None, None).await?;
            let message = format!("manual step: {}", describe(&req));
            run.event(&Event::Waiting { step_id: &step.id, kind: WaitKind::Manual, message: &message });
            Ok(Flow::Wait)
        }
    }
}
