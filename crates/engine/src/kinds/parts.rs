//! A step made of parts (targets, or a parallel step's branches): its start, its parts'
//! records kept across a re-run, what its failures and rollbacks come to, its end. The
//! parts themselves run in [`super::fleet`].

use std::collections::BTreeMap;

use opsbook_core::{Step, StepStatus};
use opsbook_store::{TargetRecord, now_ms};

use super::AttemptResult;
use super::fleet::{Fleet, Outcome};
use crate::Result;
use crate::runner::{Flow, Run};

/// A step with parts starts: running (on record with its parts, by `pending_parts`),
/// what it does shown, announced.
pub(crate) fn begin_step(run: &mut Run<'_, '_>, idx: usize, step: &Step) {
    let rec = &mut run.steps[idx];
    rec.status = StepStatus::Running;
    rec.started_at.get_or_insert(now_ms());
    rec.finished_at = None;
    rec.error = None;
    run.steps[idx].rendered = super::display(run, step);
    let max_attempts = if step.targets.is_some() { step.attempts() } else { 1 };
    run.event(&crate::observer::Event::StepStarted {
        idx,
        step_id: &step.id,
        name: &step.name,
        attempt: 1,
        max_attempts,
    });
}

/// `NAME: error; NAME: error` of the parts at `slots`, in the order written (their step's errors, or their
/// rollbacks' with `rollback`).
pub(crate) fn errors(run: &Run<'_, '_>, idx: usize, slots: &[usize], rollback: bool) -> String {
    // In the order written, whichever ended first.
    let mut slots = slots.to_vec();
    slots.sort_unstable();
    (slots.iter())
        .map(|&i| {
            let t = &run.steps[idx].targets[i];
            let error = if rollback { &t.rollback_error } else { &t.error };
            format!("{}: {}", t.name, error.as_deref().unwrap_or("failed"))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The step's final state, on record and announced.
pub(crate) async fn settle(
    run: &mut Run<'_, '_>,
    idx: usize,
    step: &Step,
    status: StepStatus,
    error: Option<String>,
) -> Result<Flow> {
    let finished = now_ms();
    let error = error.map(|e| run.masker().mask(&e).into_owned());
    let rec = &mut run.steps[idx];
    rec.status = status;
    rec.finished_at = Some(finished);
    rec.error = error.clone();
    rec.attempts = rec.targets.iter().map(|t| t.attempts).sum();
    let duration_ms = finished - rec.started_at.unwrap_or(finished);
    run.save_step(idx).await?;
    run.event(&crate::observer::Event::StepFinished {
        idx,
        step_id: &step.id,
        status,
        duration_ms,
        error: error.as_deref(),
    });
    Ok(Flow::Done(status))
}

/// A step's part records, on record before they run: kept when the names are those of
/// the step's last run (run again after a crash or a `resume`, only the parts that had
/// not succeeded run), fresh otherwise. Returns the slots to run.
pub(crate) async fn pending_parts(run: &mut Run<'_, '_>, idx: usize, names: &[&str]) -> Result<Vec<usize>> {
    let same = run.steps[idx].targets.iter().map(|t| t.name.as_str()).eq(names.iter().copied());
    if !same {
        run.steps[idx].targets = names.iter().map(|n| TargetRecord::pending(n)).collect();
    }
    let mut todo = Vec::new();
    for (i, t) in run.steps[idx].targets.iter_mut().enumerate() {
        if t.status != StepStatus::Succeeded {
            t.status = StepStatus::Pending;
            t.error = None;
            t.exit_code = None;
            t.started_at = None;
            t.finished_at = None;
            todo.push(i);
        }
    }
    run.save_step(idx).await?;
    Ok(todo)
}

/// What a rollback on parts came to (`what`: "targets", "branches"); the parts it did
/// not reach (a second cancel) are marked.
pub(crate) fn rolled_back(run: &mut Run<'_, '_>, fleet: &Fleet<'_>, out: &Outcome, what: &str) -> AttemptResult {
    for &i in &out.not_started {
        let t = &mut run.steps[fleet.idx].targets[i];
        t.rollback_status = Some(StepStatus::Cancelled);
        t.rollback_error = Some("skipped: cancelled twice".into());
    }
    if out.cancelled {
        return AttemptResult::failed(StepStatus::Cancelled, "cancelled".into());
    }
    if out.failed.is_empty() {
        return AttemptResult::ok(BTreeMap::new());
    }
    let n = run.steps[fleet.idx].targets.len();
    let detail = errors(run, fleet.idx, &out.failed, true);
    let msg = format!("the rollback failed on {} of {n} {what} ({detail})", out.failed.len());
    AttemptResult::failed(StepStatus::Failed, msg)
}
