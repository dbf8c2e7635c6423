//! Decisions on a waiting execution, the same for every front end: approving or
//! rejecting the approval step it waits on, and (on the server) overriding the gate it
//! waits on. Who may decide is the front end's to check; what a decision changes is here.

use opsbook_core::step::Rollback;
use opsbook_core::step::approval::ApprovalSpec;
use opsbook_core::step::manual::ManualSpec;
use opsbook_core::{ExecStatus, StepKind, StepStatus};
use opsbook_store::{Approval, Execution, LogLine, Phase, ServerStore, StepRecord, Store, Stream, WaitKind, now_ms};

use crate::{Boxed, Engine, Error, Result, boxed};

/// The approval step an execution waits on.
#[derive(Debug, Clone)]
pub struct ApprovalWait {
    pub execution: Execution,
    pub step: StepRecord,
    pub spec: ApprovalSpec,
}

impl ApprovalWait {
    /// Why no decision may be made any more, once the step's deadline has passed: the
    /// step has timed out, whether or not anything has marked it so yet (a local run has
    /// nothing watching the clock between commands).
    pub fn expired(&self) -> Option<String> {
        expired(&self.execution, &self.step, "no decision")
    }
}

/// Why a step that waits for people may not be answered any more: its deadline passed.
fn expired(execution: &Execution, step: &StepRecord, missing: &str) -> Option<String> {
    let deadline = step.wait_deadline?;
    if now_ms() <= deadline {
        return None;
    }
    let waited = u64::try_from(deadline - step.started_at.unwrap_or(deadline)).unwrap_or(0);
    Some(format!(
        "step `{}` of execution {} timed out: {missing} within {}",
        step.step_id,
        execution.id,
        opsbook_core::Dur(std::time::Duration::from_millis(waited))
    ))
}

/// Where the decisions on a step stand after one more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Approvals recorded for the step so far.
    pub approvals: usize,
    pub min_approvals: u32,
    /// The step is decided: rejected, or approved often enough. The execution goes on.
    pub settled: bool,
}

/// The manual step (or manual rollback) an execution waits on.
#[derive(Debug, Clone)]
pub struct ManualWait {
    pub execution: Execution,
    pub step: StepRecord,
    /// `Step`, or `Rollback` when it is the step's manual rollback that waits.
    pub phase: Phase,
    pub spec: ManualSpec,
}

impl ManualWait {
    /// Why the step may not be confirmed any more (see [`ApprovalWait::expired`]).
    pub fn expired(&self) -> Option<String> {
        expired(&self.execution, &self.step, "not confirmed")
    }
}

/// A gate waived by an admin (break glass).
#[derive(Debug, Clone)]
pub struct Overridden {
    pub execution: Execution,
    /// The step the execution waited at: the gate step, or the step a gate's recheck held.
    pub step: String,
    /// The gate steps waived.
    pub gate_steps: Vec<String>,
    /// What blocked it.
    pub blocked_by: Option<String>,
}

impl Engine {
    /// The approval step execution `id` waits on; refused (naming why) when it waits on
    /// nothing or on a gate.
    pub fn approval_wait<'a>(&'a self, id: &'a str) -> Boxed<'a, Result<ApprovalWait>> {
        boxed(async move {
            let execution = self.store.execution(id).await?;
            if execution.status != ExecStatus::Waiting {
                return Err(Error::Invalid(format!(
                    "execution {} {}, not waiting for approval",
                    execution.id,
                    execution.status.phrase()
                )));
            }
            let steps = self.store.steps(&execution.id).await?;
            let Some(step) = steps.into_iter().find(|s| s.status == StepStatus::Waiting) else {
                return Err(Error::Invalid(format!("execution {} has no step waiting for approval", execution.id)));
            };
            let rb = self.stored_runbook(&execution.runbook_sha256).await?;
            match usize::try_from(step.idx).ok().and_then(|i| rb.steps.get(i)).map(|s| &s.kind) {
                Some(StepKind::Approval(spec)) => Ok(ApprovalWait { spec: spec.clone(), execution, step }),
                Some(StepKind::Manual(_)) => Err(Error::Invalid(format!(
                    "execution {} waits for manual step `{}` to be done and confirmed (`opsbook confirm`), not for approval",
                    execution.id, step.step_id
                ))),
                // What waits is the child: its approval is decided on it.
                _ if step.wait_kind == Some(WaitKind::Child) => {
                    let children =
                        self.store.executions(&opsbook_store::ExecutionFilter::children(&execution.id)).await?;
                    let child = children.iter().find(|c| c.parent_step.as_deref() == Some(step.step_id.as_str()));
                    Err(Error::Invalid(match child {
                        Some(c) => format!(
                            "execution {} waits on its child execution {} (runbook `{}`) at step `{}`: decide on the \
                             child, `opsbook approve {}` (or `reject`)",
                            execution.id, c.id, c.runbook_name, step.step_id, c.id
                        ),
                        None => format!(
                            "execution {} waits on a child execution at step `{}`, not for approval",
                            execution.id, step.step_id
                        ),
                    }))
                }
                _ => Err(Error::Invalid(format!(
                    "execution {} waits on a gate at step `{}`, not for approval (an admin may override it)",
                    execution.id, step.step_id
                ))),
            }
        })
    }

    /// The manual step (or rollback) execution `id` waits on: `step`, when given, must
    /// be it. Refused, naming why, when nothing manual waits.
    pub fn manual_wait<'a>(&'a self, id: &'a str, step: Option<&'a str>) -> Boxed<'a, Result<ManualWait>> {
        boxed(async move {
            let execution = self.store.execution(id).await?;
            let steps = self.store.steps(&execution.id).await?;
            let rb = self.stored_runbook(&execution.runbook_sha256).await?;
            let spec_of = |s: &StepRecord| usize::try_from(s.idx).ok().and_then(|i| rb.steps.get(i));
            let waiting: Vec<ManualWait> = steps
                .iter()
                .filter_map(|s| {
                    let rb_step = spec_of(s)?;
                    match (&rb_step.kind, &rb_step.rollback) {
                        (StepKind::Manual(spec), _)
                            if execution.status == ExecStatus::Waiting
                                && s.status == StepStatus::Waiting
                                && s.wait_kind == Some(WaitKind::Manual) =>
                        {
                            Some((Phase::Step, spec.clone()))
                        }
                        (_, Some(Rollback::Manual(spec))) if s.rollback_status == Some(StepStatus::Waiting) => {
                            Some((Phase::Rollback, spec.clone()))
                        }
                        _ => None,
                    }
                    .map(|(phase, spec)| ManualWait {
                        execution: execution.clone(),
                        step: s.clone(),
                        phase,
                        spec,
                    })
                })
                .collect();
            let names = |w: &[ManualWait]| {
                w.iter()
                    .map(|w| match w.phase {
                        Phase::Rollback => format!("`{}` (its rollback)", w.step.step_id),
                        _ => format!("`{}`", w.step.step_id),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            match step {
                Some(want) => {
                    let listed = names(&waiting);
                    waiting.into_iter().find(|w| w.step.step_id == want).ok_or_else(|| {
                        let others = if listed.is_empty() { String::new() } else { format!("; it waits on {listed}") };
                        Error::Invalid(format!(
                            "step `{want}` of execution {} is not waiting for confirmation{others}",
                            execution.id
                        ))
                    })
                }
                None if waiting.is_empty() => {
                    let what = if execution.status == ExecStatus::Waiting { "on something else" } else { "on nothing" };
                    Err(Error::Invalid(format!(
                        "execution {} has no manual step waiting for confirmation (it {} and waits {what})",
                        execution.id,
                        execution.status.phrase()
                    )))
                }
                None => Ok(waiting.into_iter().next().expect("not empty")),
            }
        })
    }

    /// Records `who`'s answer to a manual step or rollback: done (every item on its
    /// checklist) or not done. The front end then carries the execution on (locally),
    /// queues it or runs its rollbacks (on the server).
    pub fn confirm<'a>(
        &'a self,
        wait: &'a ManualWait,
        who: &'a str,
        done: bool,
        note: Option<String>,
    ) -> Boxed<'a, Result<()>> {
        boxed(async move {
            let record = Approval {
                execution_id: wait.execution.id.clone(),
                step_id: wait.step.step_id.clone(),
                phase: wait.phase,
                approver: who.to_string(),
                approved: done,
                manual: true,
                comment: note,
                created_at: now_ms(),
            };
            if let Some(earlier) = self
                .store
                .approvals(&record.execution_id)
                .await?
                .into_iter()
                .find(|a| a.manual && a.step_id == record.step_id && a.phase == record.phase)
            {
                return Err(Error::Invalid(format!(
                    "step `{}` of execution {} was already answered by {} ({})",
                    record.step_id,
                    record.execution_id,
                    earlier.approver,
                    earlier.decision()
                )));
            }
            self.store.add_approval(&record).await?;
            Ok(())
        })
    }

    /// Records `who`'s decision on the step (one person decides once) and tallies them.
    /// A settled step is the runner's to act on: the front end carries the execution on
    /// (locally) or queues it (on the server).
    pub fn decide<'a>(
        &'a self,
        wait: &'a ApprovalWait,
        who: &'a str,
        approved: bool,
        comment: Option<String>,
    ) -> Boxed<'a, Result<Tally>> {
        boxed(async move {
            let id = &wait.execution.id;
            if let Some(why) = wait.expired() {
                return Err(Error::Invalid(why));
            }
            self.store
                .add_approval(&Approval {
                    execution_id: id.clone(),
                    step_id: wait.step.step_id.clone(),
                    approver: who.to_string(),
                    phase: Phase::Step,
                    approved,
                    manual: false,
                    comment,
                    created_at: now_ms(),
                })
                .await?;
            let approvals =
                self.store.approvals(id).await?.iter().filter(|a| a.step_id == wait.step.step_id && a.approved).count();
            let min_approvals = wait.spec.min_approvals;
            Ok(Tally { approvals, min_approvals, settled: !approved || approvals >= min_approvals as usize })
        })
    }
}

/// How long an override waits for a gate check under way before giving up.
const OVERRIDE_PATIENCE_MS: i64 = 30_000;

impl Engine {
    /// Break glass: the gate execution `id` waits on counts as passed (the gate step, or
    /// every gate whose recheck holds a later step), recorded on the steps (who, why) and
    /// in the execution's log; the execution is then queued to go on. A gate check under
    /// way is waited for (at most 30 s), so an override never races it.
    pub fn override_gate<'a>(&'a self, id: &'a str, by: &'a str, reason: &'a str) -> Boxed<'a, Result<Overridden>> {
        boxed(async move {
            let exec = self.store.execution(id).await?;
            let rb = self.stored_runbook(&exec.runbook_sha256).await?;
            let kind = |s: &StepRecord| usize::try_from(s.idx).ok().and_then(|i| rb.steps.get(i)).map(|x| &x.kind);
            let gate_wait = |steps: &[StepRecord]| {
                steps.iter().position(|s| s.status == StepStatus::Waiting && s.wait_kind == Some(WaitKind::Gate))
            };
            let gate_checking = |steps: &[StepRecord]| {
                steps.iter().any(|s| s.status == StepStatus::Running && matches!(kind(s), Some(StepKind::Gate(_))))
            };
            let owner = format!("override:{by}");
            let deadline = now_ms() + OVERRIDE_PATIENCE_MS;
            let (held, mut steps, i) = loop {
                let steps = self.store.steps(&exec.id).await?;
                let current = self.store.execution(&exec.id).await?;
                let waiting = gate_wait(&steps).is_some();
                let patient = now_ms() < deadline;
                match current.status {
                    ExecStatus::Waiting if waiting => {
                        if let Some(held) = self.store.claim_waiting(&exec.id, &owner, self.config.lease_ms()).await? {
                            // Read again: a poll that just ended may have changed them.
                            let steps = self.store.steps(&exec.id).await?;
                            match gate_wait(&steps) {
                                Some(i) => break (held, steps, i),
                                None => {
                                    self.let_go(held, ExecStatus::Waiting).await?;
                                    return Err(Error::Invalid(format!(
                                        "execution {} is no longer waiting on a gate",
                                        exec.id
                                    )));
                                }
                            }
                        }
                        // Else a poll holds it: try again when it is done.
                    }
                    ExecStatus::Running | ExecStatus::Queued if patient && (waiting || gate_checking(&steps)) => {}
                    other => {
                        return Err(Error::Invalid(format!(
                            "execution {} {}, not waiting on a gate",
                            exec.id,
                            other.phrase()
                        )));
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            };
            let now = now_ms();
            let blocked_by = steps[i].error.clone();
            let at_gate_step = matches!(kind(&steps[i]), Some(StepKind::Gate(_)));
            // The gates waived: the gate step itself, or every gate whose recheck holds step `i`.
            let waived: Vec<usize> = if at_gate_step {
                vec![i]
            } else {
                (0..i)
                    .filter(|&g| steps[g].status == StepStatus::Succeeded && steps[g].overridden_by.is_none())
                    .filter(|&g| matches!(kind(&steps[g]), Some(StepKind::Gate(spec)) if spec.recheck.is_some()))
                    .collect()
            };
            for &g in &waived {
                steps[g].waive(by, reason, now);
            }
            let mut changed = waived.clone();
            if !at_gate_step {
                // The held step runs when the execution goes on; its waiting is over.
                steps[i].unhold();
                changed.push(i);
            }
            for &c in &changed {
                self.store.update_step(&steps[c], None).await?;
            }
            // In the execution's log too, where people following it look.
            let seq = self.store.last_log_seq(&exec.id).await? + 1;
            let line = LogLine {
                execution_id: exec.id.clone(),
                seq,
                step_id: Some(steps[i].step_id.clone()),
                phase: Phase::Step,
                attempt: 0,
                stream: Stream::System,
                ts: now,
                line: format!(
                    "gate overridden by {by}: {reason} (was: {})",
                    blocked_by.as_deref().unwrap_or("blocked")
                ),
            };
            self.store.append_logs(&[line], None).await?;
            let gate_steps = waived.iter().map(|&g| steps[g].step_id.clone()).collect();
            let step = steps[i].step_id.clone();
            let execution = self.let_go(held, ExecStatus::Queued).await?;
            Ok(Overridden { execution, step, gate_steps, blocked_by })
        })
    }

    /// Gives a held execution back: to the queue (it goes on) or to waiting.
    async fn let_go(&self, mut exec: Execution, to: ExecStatus) -> Result<Execution> {
        exec.status = to;
        exec.owner = None;
        exec.lease_expires_at = None;
        self.store.update_execution(&exec, None).await?;
        Ok(exec)
    }
}
