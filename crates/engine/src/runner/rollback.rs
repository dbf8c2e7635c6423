//! Rollbacks: the rollback of every succeeded step, newest first, each on record
//! before it runs.

use opsbook_core::StepStatus;
use opsbook_core::step::Rollback;
use opsbook_core::step::manual::ManualSpec;
use opsbook_core::template;
use opsbook_store::{Phase, WaitKind, now_ms};

use crate::Result;
use crate::kinds::manual::Answer;
use crate::kinds::{self, AttemptResult};
use crate::observer::Event;

use super::Run;

impl<'e, 'h> Run<'e, 'h> {
    /// The steps whose rollback is still to run, newest first: they succeeded, have a
    /// rollback, and it has not succeeded yet.
    pub(super) fn rollbacks_left(&self) -> Vec<usize> {
        (0..self.steps.len())
            .rev()
            .filter(|&i| {
                // A step with targets is undone where it succeeded, even when it failed on others.
                let done_somewhere = self.steps[i].status == StepStatus::Succeeded
                    || self.steps[i].targets.iter().any(|t| t.status == StepStatus::Succeeded)
                    || kinds::call::interrupted(&self.rb.steps[i], &self.steps[i]);
                done_somewhere
                    && (self.rb.steps[i].rollback.is_some()
                        || kinds::parallel::has_rollback(&self.rb.steps[i])
                        || matches!(self.rb.steps[i].kind, opsbook_core::StepKind::Runbook(_)))
                    && self.steps[i].rollback_status != Some(StepStatus::Succeeded)
            })
            .collect()
    }

    /// Runs the rollback of every succeeded step, newest first. A failing rollback is
    /// recorded and the others still run; a second cancel skips the rest. Rollbacks that
    /// already succeeded never run twice; ones that failed or were skipped run again
    /// (that is what `opsbook rollback` is for after fixing the cause).
    pub async fn rollback_all(&mut self) -> Result<()> {
        let todo = self.rollbacks_left();
        if todo.is_empty() {
            return Ok(());
        }
        let mut overall = StepStatus::Succeeded;
        for idx in todo {
            let step = self.rb.steps[idx].clone();
            let rollback = step.rollback.as_ref();
            if self.cancel_level() >= 2 {
                self.steps[idx].rollback_status = Some(StepStatus::Cancelled);
                self.steps[idx].rollback_error = Some("skipped: cancelled twice".into());
                self.save_step(idx).await?;
                overall = StepStatus::Cancelled;
                continue;
            }
            // A manual rollback still waiting is looked at again, not run again.
            let waited = self.steps[idx].rollback_status == Some(StepStatus::Waiting);
            // On record before it runs: a rollback never runs (or runs again) unrecorded.
            // And before it is announced: whoever hears of it (a server answering the
            // request for it) finds it on record as running.
            let again = self.steps[idx].rollback_status.is_some() && !waited;
            self.steps[idx].rollback_status = Some(StepStatus::Running);
            self.steps[idx].rollback_error = None;
            self.save_step(idx).await?;
            if !waited {
                self.event(&Event::RollbackStarted { step_id: &step.id });
            }
            if again {
                let msg = format!("running the rollback of step `{}` again (it did not succeed before)", step.id);
                self.system(Some(&step.id), Phase::Rollback, &msg).await?;
            }
            let started = now_ms();
            let timeout = rollback.and_then(Rollback::timeout).unwrap_or(step.timeout).0;
            let result = match (rollback, &step.kind) {
                (_, opsbook_core::StepKind::Parallel(spec)) => kinds::parallel::rollback(self, idx, spec).await?,
                (_, opsbook_core::StepKind::Runbook(spec)) if self.engine.config.mocks.is_none() => {
                    kinds::call::rollback(self, idx, spec).await?
                }
                (None, opsbook_core::StepKind::Runbook(_)) => {
                    let act = kinds::Action::rollback(&step.id, timeout);
                    let mocks = self.engine.config.mocks.clone().expect("real calls roll back in kinds::call");
                    kinds::mock::call(self, &act, &mocks).await?
                }
                (None, _) => unreachable!("filtered on having a rollback"),
                (Some(Rollback::Run(script)), _) if step.targets.is_some() => {
                    kinds::targets::rollback(self, idx, &step, script).await?
                }
                (Some(Rollback::Run(script)), _) => {
                    match template::render_shell(&script.template, &self.context(false)) {
                        Ok(text) => {
                            let sr = kinds::run::ScriptRun {
                                text: &text,
                                script,
                                timeout,
                                step_id: Some(&step.id),
                                phase: Phase::Rollback,
                                attempt: 1,
                                validations: &[],
                                cancel_level: 2,
                                target: None,
                            };
                            kinds::run::exec_script(self, &sr).await?
                        }
                        Err(e) => AttemptResult::fatal(format!("rollback.run: {e}")),
                    }
                }
                (Some(Rollback::Aws { kind, .. }), _) => {
                    let act = kinds::Action::rollback(&step.id, timeout);
                    kinds::aws(self, &act, kind).await?.expect("the AWS kinds")
                }
                (Some(Rollback::Manual(spec)), _) => match self.manual_rollback(idx, spec).await? {
                    Some(result) => result,
                    None => {
                        // Older rollbacks wait for this one: undone newest first.
                        overall = StepStatus::Waiting;
                        break;
                    }
                },
            };
            self.sink.flush().await?;
            let error = result.error.as_ref().map(|e| self.masker().mask(e).into_owned());
            let rec = &mut self.steps[idx];
            rec.rollback_status = Some(result.status);
            rec.rollback_exit_code = result.exit_code.map(i64::from);
            rec.rollback_error = error.clone();
            self.record(&step.id, Phase::Rollback, 1, started, &result, Some(idx)).await?;
            self.note_end(&step.id, Phase::Rollback, result.status, error.as_deref()).await?;
            self.event(&Event::RollbackFinished { step_id: &step.id, status: result.status, error: error.as_deref() });
            if result.status != StepStatus::Succeeded && overall == StepStatus::Succeeded {
                overall =
                    if result.status == StepStatus::Cancelled { StepStatus::Cancelled } else { StepStatus::Failed };
            }
        }
        self.exec.rollback_status = Some(overall);
        self.flush_deferred().await?;
        self.patient().update_execution(&self.exec, self.fence()).await?;
        Ok(())
    }

    /// Step `idx`'s manual rollback: its result once confirmed (or declined, timed out,
    /// cancelled), or `None` when it waits for a person, on record (`waiting`, with the
    /// deadline in the step's `wait_deadline`) and announced.
    async fn manual_rollback(&mut self, idx: usize, spec: &ManualSpec) -> Result<Option<AttemptResult>> {
        let step_id = self.steps[idx].step_id.clone();
        let req = kinds::manual::request(self, &step_id, Phase::Rollback, spec);
        let wait_ms = i64::try_from(spec.wait().0.as_millis()).unwrap_or(i64::MAX / 2);
        let deadline = *self.steps[idx].wait_deadline.get_or_insert(now_ms().saturating_add(wait_ms));
        let result = match kinds::manual::answer(self, &req, deadline, 2).await? {
            Answer::Done { by, note } => {
                let mut outputs = std::collections::BTreeMap::new();
                outputs.insert("confirmed_by".to_string(), by.clone());
                self.system(Some(&step_id), Phase::Rollback, &kinds::manual::said(true, &by, note.as_deref())).await?;
                AttemptResult::ok(outputs)
            }
            Answer::NotDone { by, note } => {
                let why = kinds::manual::said(false, &by, note.as_deref());
                self.system(Some(&step_id), Phase::Rollback, &why).await?;
                AttemptResult::failed(StepStatus::Failed, why)
            }
            Answer::TimedOut => {
                AttemptResult::failed(StepStatus::TimedOut, format!("not confirmed within {}", spec.wait()))
            }
            Answer::Cancelled => {
                AttemptResult::failed(StepStatus::Cancelled, "cancelled while waiting for confirmation".into())
            }
            Answer::Waits => {
                let rec = &mut self.steps[idx];
                rec.rollback_status = Some(StepStatus::Waiting);
                rec.rollback_error = Some(format!("waiting for confirmation: {}", req.instructions));
                self.save_step(idx).await?;
                let message = format!("manual rollback: {}", kinds::manual::describe(&req));
                self.event(&Event::Waiting { step_id: &step_id, kind: WaitKind::Manual, message: &message });
                return Ok(None);
            }
        };
        self.steps[idx].wait_deadline = None;
        Ok(Some(result))
    }
}
