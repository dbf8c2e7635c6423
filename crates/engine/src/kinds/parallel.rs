//! `parallel`: the branches (`run` steps) side by side, at most `max` at a time, each with
//! its own attempts, log (its own step id) and records (the step's `targets`: one per
//! branch). `fail: fast` cancels the running branches and starts no more at the first
//! failure; `fail: all` lets every branch run. The rollbacks of the branches that
//! succeeded run one at a time, the branch that finished last first.

use std::collections::BTreeMap;

use opsbook_core::step::Rollback;
use opsbook_core::step::parallel::{FailMode, ParallelSpec};
use opsbook_core::step::targets::Via;
use opsbook_core::{Step, StepKind, StepStatus};
use opsbook_store::Phase;

use super::AttemptResult;
use super::fleet::{self, Fleet, Outcome, Part};
use super::parts;
use crate::Result;
use crate::runner::{Flow, Run};

/// Runs parallel step `idx`.
pub(crate) async fn run_step(run: &mut Run<'_, '_>, idx: usize, step: &Step, spec: &ParallelSpec) -> Result<Flow> {
    parts::begin_step(run, idx, step);
    let names: Vec<&str> = spec.branches.iter().map(|b| b.id.as_str()).collect();
    let todo = parts::pending_parts(run, idx, &names).await?;
    let fast = spec.fail == FailMode::Fast;
    let fleet = Fleet {
        idx,
        phase: Phase::Step,
        parts: parts(spec, Phase::Step),
        via: Via::Local,
        targets: None,
        concurrency: spec.max,
        allowed_errors: fast.then_some(0),
        fail_fast: fast,
        cancel_level: 1,
    };
    let out = fleet::drive(run, &fleet, todo).await?;
    let why = |run: &Run<'_, '_>, slots: &[usize]| parts::errors(run, idx, slots, false);
    if let Some(&first) = out.failed.first() {
        let name = run.steps[idx].targets[first].name.clone();
        for &i in &out.stopped {
            run.steps[idx].targets[i].error = Some(format!("cancelled: branch `{name}` failed"));
        }
        for &i in &out.not_started {
            let t = &mut run.steps[idx].targets[i];
            t.status = StepStatus::Skipped;
            t.error = Some(format!("not started: branch `{name}` failed"));
        }
    } else if out.cancelled {
        for &i in &out.not_started {
            let t = &mut run.steps[idx].targets[i];
            t.status = StepStatus::Skipped;
            t.error = Some("not started: cancelled".into());
        }
    }
    for &i in &out.tolerated {
        let msg = format!("branch {} but is not required; continuing", why(run, &[i]));
        run.system(Some(&step.id), Phase::Step, &msg).await?;
    }
    let n = spec.branches.len();
    let (status, error) = if out.cancelled {
        (StepStatus::Cancelled, Some("cancelled".to_string()))
    } else if out.failed.is_empty() {
        (StepStatus::Succeeded, None)
    } else if fast {
        let mut e = format!("branch {}", why(run, &out.failed));
        if !out.stopped.is_empty() {
            e.push_str(&format!("; cancelled: {}", Outcome::names(&fleet, &out.stopped)));
        }
        if !out.not_started.is_empty() {
            e.push_str(&format!("; not started: {}", Outcome::names(&fleet, &out.not_started)));
        }
        (StepStatus::Failed, Some(e))
    } else {
        (StepStatus::Failed, Some(format!("{} of {n} branches failed ({})", out.failed.len(), why(run, &out.failed))))
    };
    parts::settle(run, idx, step, status, error).await
}

/// The rollbacks of the branches that succeeded (and have one), one at a time, the
/// branch that finished last first; every one is tried.
pub(crate) async fn rollback(run: &mut Run<'_, '_>, idx: usize, spec: &ParallelSpec) -> Result<AttemptResult> {
    let records = run.steps[idx].targets.clone();
    let mut todo: Vec<usize> = (0..records.len().min(spec.branches.len()))
        .filter(|&i| {
            records[i].status == StepStatus::Succeeded
                && spec.branches[i].rollback.is_some()
                && records[i].rollback_status != Some(StepStatus::Succeeded)
        })
        .collect();
    todo.sort_by_key(|&i| std::cmp::Reverse(records[i].finished_at));
    if todo.is_empty() {
        return Ok(AttemptResult::ok(BTreeMap::new()));
    }
    let fleet = Fleet {
        idx,
        phase: Phase::Rollback,
        parts: parts(spec, Phase::Rollback),
        via: Via::Local,
        targets: None,
        concurrency: 1,
        allowed_errors: None,
        fail_fast: false,
        cancel_level: 2,
    };
    let out = fleet::drive(run, &fleet, todo).await?;
    Ok(parts::rolled_back(run, &fleet, &out, "branches"))
}

/// Whether a parallel step has anything to roll back with.
pub(crate) fn has_rollback(step: &Step) -> bool {
    matches!(&step.kind, StepKind::Parallel(p) if p.branches.iter().any(|b| b.rollback.is_some()))
}

/// The branches as parts of a fleet: their scripts, or their rollbacks'.
fn parts(spec: &ParallelSpec, phase: Phase) -> Vec<Part<'_>> {
    spec.branches
        .iter()
        .map(|b| {
            let StepKind::Run(script) = &b.kind else { unreachable!("a branch is a run step") };
            let script = match (&b.rollback, phase) {
                (Some(Rollback::Run(r)), Phase::Rollback) => r,
                _ => script,
            };
            Part { name: b.id.clone(), step: b, script, target: None, prefix: false }
        })
        .collect()
}
