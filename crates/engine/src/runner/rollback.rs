//! Rollbacks: the rollback of every succeeded step, newest first, each on record
//! before it runs.

use opsbook_core::StepStatus;
use opsbook_core::step::Rollback;
use opsbook_core::template;
use opsbook_store::{Phase, Store, now_ms};

use crate::Result;
use crate::kinds::{self, AttemptResult};
use crate::observer::Event;

use super::Run;

impl<'e, 'h, S: Store> Run<'e, 'h, S> {
    /// The steps whose rollback is still to run, newest first: they succeeded, have a
    /// rollback, and it has not succeeded yet.
    pub(super) fn rollbacks_left(&self) -> Vec<usize> {
        (0..self.steps.len())
            .rev()
            .filter(|&i| {
                self.steps[i].status == StepStatus::Succeeded
                    && self.rb.steps[i].rollback.is_some()
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
            let rollback = step.rollback.as_ref().expect("filtered on rollback");
            if self.cancel_level() >= 2 {
                self.steps[idx].rollback_status = Some(StepStatus::Cancelled);
                self.steps[idx].rollback_error = Some("skipped: cancelled twice".into());
                self.save_step(idx).await?;
                overall = StepStatus::Cancelled;
                continue;
            }
            self.event(&Event::RollbackStarted { step_id: &step.id });
            // On record before it runs: a rollback never runs (or runs again) unrecorded.
            let again = self.steps[idx].rollback_status.is_some();
            self.steps[idx].rollback_status = Some(StepStatus::Running);
            self.steps[idx].rollback_error = None;
            self.save_step(idx).await?;
            if again {
                let msg = format!("running the rollback of step `{}` again (it did not succeed before)", step.id);
                self.system(Some(&step.id), Phase::Rollback, &msg).await?;
            }
            let started = now_ms();
            let timeout = rollback.timeout().unwrap_or(step.timeout).0;
            let result = match rollback {
                Rollback::Run(script) => match template::render_shell(&script.template, &self.context(false)) {
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
                        };
                        kinds::run::exec_script(self, &sr).await?
                    }
                    Err(e) => AttemptResult::fatal(format!("rollback.run: {e}")),
                },
                Rollback::Aws { kind, .. } => {
                    let act = kinds::Action::rollback(&step.id, timeout);
                    kinds::aws(self, &act, kind).await?.expect("the AWS kinds")
                }
            };
            self.sink.flush().await?;
            let error = result.error.as_ref().map(|e| self.masker().mask(e).into_owned());
            let rec = &mut self.steps[idx];
            rec.rollback_status = Some(result.status);
            rec.rollback_exit_code = result.exit_code.map(i64::from);
            rec.rollback_error = error.clone();
            self.record(&step.id, Phase::Rollback, 1, started, &result, Some(idx)).await?;
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
}
