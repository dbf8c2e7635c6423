//! The loop: prerequisites, steps in order with retries, conditions, gate rechecks,
//! waits (approvals, gates) and stopping on a failure or a cancel.

use opsbook_core::template;
use opsbook_core::{ExecStatus, OnFailure, Step, StepKind, StepStatus};
use opsbook_store::{Phase, WaitKind, now_ms};

use crate::Result;
use crate::kinds::{self, AttemptResult};
use crate::observer::Event;

use super::{Flow, Recheck, Run, describe};

impl<'e, 'h> Run<'e, 'h> {
    /// Runs the prerequisite checks; false when one failed (the execution is then finished).
    pub(super) async fn prerequisites(&mut self) -> Result<bool> {
        let prereqs = self.rb.prerequisites.clone();
        for (i, p) in prereqs.iter().enumerate() {
            let Some(check) = &p.check else {
                self.event(&Event::CheckFinished {
                    description: &p.description,
                    checked: false,
                    ok: true,
                    error: None,
                });
                continue;
            };
            self.event(&Event::CheckStarted { description: &p.description });
            let name = format!("prerequisite-{}", i + 1);
            let started = now_ms();
            let result = match template::render_shell(&check.template, &self.context(false)) {
                Ok(text) => {
                    let timeout = check.timeout.map_or(std::time::Duration::from_secs(300), |d| d.0);
                    let sr = kinds::run::ScriptRun {
                        text: &text,
                        script: check,
                        timeout,
                        step_id: None,
                        phase: Phase::Check,
                        attempt: 1,
                        validations: &[],
                        cancel_level: 1,
                        target: None,
                    };
                    kinds::run::exec_script(self, &sr).await?
                }
                Err(e) => AttemptResult::fatal(format!("check.run: {e}")),
            };
            self.record(&name, Phase::Check, 1, started, &result, None).await?;
            let ok = result.status == StepStatus::Succeeded;
            let error = result.error.clone().map(|e| self.masker().mask(&e).into_owned());
            self.event(&Event::CheckFinished {
                description: &p.description,
                checked: true,
                ok,
                error: error.as_deref(),
            });
            if !ok {
                let status =
                    if result.status == StepStatus::Cancelled { ExecStatus::Cancelled } else { ExecStatus::Failed };
                self.exec.error = Some(format!(
                    "prerequisite not met: {} ({})",
                    p.description,
                    error.unwrap_or_else(|| "check failed".into())
                ));
                self.finish(status).await?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Runs the steps from `from` on, until the end, a failure, a cancel or a wait.
    pub(super) async fn drive(&mut self, from: usize) -> Result<()> {
        for idx in from..self.rb.steps.len() {
            let step = self.rb.steps[idx].clone();
            if self.cancel_level() >= 1 {
                return self.stop(ExecStatus::Cancelled, "cancelled".to_string()).await;
            }
            let status = self.steps[idx].status;
            if status == StepStatus::Succeeded
                || status == StepStatus::Skipped
                || (status.is_failure() && !step.required)
            {
                continue;
            }
            // A step looking again at the child it waits on is not starting: no recheck.
            let child_wait = status == StepStatus::Waiting && self.steps[idx].wait_kind == Some(WaitKind::Child);
            let recheck = if child_wait { Recheck::Go } else { self.recheck_gates(idx, &step).await? };
            match recheck {
                Recheck::Go => {}
                Recheck::Stop(why) => return self.stop(ExecStatus::Failed, why).await,
                Recheck::Wait if self.cancel_level() >= 1 => {
                    return self.stop(ExecStatus::Cancelled, format!("cancelled before step `{}`", step.id)).await;
                }
                Recheck::Wait => return self.park().await,
            }
            // A gate poll never runs anything but gates: once they are clear, the rest
            // is a worker's.
            if self.gate_poll_only && !matches!(step.kind, StepKind::Gate(_)) {
                self.save_step(idx).await?;
                return self.requeue().await;
            }
            // Kept in memory and written with the next execution update: the step rows
            // already say which step runs, and one write less per step matters.
            self.exec.current_step = Some(idx as i64);

            let flow = match self.condition(idx, &step).await? {
                Some(flow) => flow,
                None => match &step.kind {
                    StepKind::Approval(spec) => kinds::approval::run(self, idx, &step, spec).await?,
                    StepKind::Manual(spec) => kinds::manual::run(self, idx, &step, spec).await?,
                    StepKind::Run(_) if step.targets.is_some() => kinds::targets::run_step(self, idx, &step).await?,
                    StepKind::Parallel(spec) => kinds::parallel::run_step(self, idx, &step, spec).await?,
                    StepKind::Runbook(spec) if self.engine.config.mocks.is_none() => {
                        kinds::call::run_step(self, idx, &step, spec).await?
                    }
                    StepKind::Gate(spec) if self.engine.config.release_gate_waits => {
                        kinds::gate::run_released(self, idx, &step, spec).await?
                    }
                    _ => self.attempts(idx, &step).await?,
                },
            };
            match flow {
                Flow::Wait if self.cancel_level() >= 1 => {
                    return self.stop(ExecStatus::Cancelled, format!("cancelled during step `{}`", step.id)).await;
                }
                Flow::Wait => return self.park().await,
                Flow::Done(StepStatus::Succeeded | StepStatus::Skipped) => {}
                Flow::Done(StepStatus::Cancelled) => {
                    return self.stop(ExecStatus::Cancelled, format!("cancelled during step `{}`", step.id)).await;
                }
                Flow::Done(s) if !step.required => {
                    let msg = format!("step `{}` {} but is not required; continuing", step.id, describe(s));
                    self.system(Some(&step.id), Phase::Step, &msg).await?;
                }
                Flow::Done(s) => {
                    let why = self.steps[idx].error.clone().unwrap_or_default();
                    let msg = format!("step `{}` {}: {why}", step.id, describe(s));
                    return self.stop(ExecStatus::Failed, msg).await;
                }
            }
        }
        self.finish(ExecStatus::Succeeded).await
    }

    /// Whether a step waits, for the given reason.
    pub(super) fn waits_on(&self, what: WaitKind) -> bool {
        self.steps.iter().any(|rec| rec.status == StepStatus::Waiting && rec.wait_kind == Some(what))
    }

    /// How a cancel reads while the run waits (on people or a gate); `None` when nothing waits.
    pub(super) fn cancelled_waiting(&self) -> Option<&'static str> {
        if self.waits_on(WaitKind::Approval) {
            Some("cancelled while waiting for approval")
        } else if self.waits_on(WaitKind::Manual) {
            Some("cancelled while waiting for confirmation")
        } else if self.waits_on(WaitKind::Gate) {
            Some("cancelled while waiting on a gate")
        } else if self.waits_on(WaitKind::Child) {
            Some("cancelled while waiting on a child execution")
        } else {
            None
        }
    }

    /// The execution waits (for people or a gate) and gives its runner back.
    pub(super) async fn park(&mut self) -> Result<()> {
        self.hand_back(ExecStatus::Waiting).await
    }

    /// Back to the queue for a worker, after a gate poll found every gate clear.
    pub(super) async fn requeue(&mut self) -> Result<()> {
        self.hand_back(ExecStatus::Queued).await
    }

    pub(super) async fn hand_back(&mut self, status: ExecStatus) -> Result<()> {
        self.exec.status = status;
        self.exec.owner = None;
        self.exec.lease_expires_at = None;
        self.flush_deferred().await?;
        self.patient().update_execution(&self.exec, self.fence()).await?;
        self.stop_heartbeat();
        Ok(())
    }

    /// Before step `idx`: every earlier gate step that passed with `recheck: between_steps`
    /// is checked again. In place (waiting or failing as it says), or — on the server, for
    /// `on_blocked: wait` — by parking the execution until the next poll.
    pub(super) async fn recheck_gates(&mut self, idx: usize, step: &Step) -> Result<Recheck> {
        let gates: Vec<(String, opsbook_core::step::gate::GateStepSpec)> = (0..idx)
            // An admin's override (break glass) waives a gate for the rest of the run.
            // (not the gate step just before: it has only now been checked)
            .filter(|&i| {
                i + 1 < idx && self.steps[i].status == StepStatus::Succeeded && self.steps[i].overridden_by.is_none()
            })
            .filter_map(|i| match &self.rb.steps[i].kind {
                StepKind::Gate(g) if g.recheck.is_some() => Some((self.rb.steps[i].id.clone(), g.clone())),
                _ => None,
            })
            .collect();
        for (gate_step, spec) in gates {
            if let Some(mocks) = &self.engine.config.mocks {
                let r = kinds::mock::gate(mocks, &gate_step, &spec);
                if r.status != StepStatus::Succeeded {
                    let why = r.error.unwrap_or_default();
                    return Ok(Recheck::Stop(format!("recheck before step `{}`: {why}", step.id)));
                }
                continue;
            }
            let def = match spec.resolve(&self.engine.config.gates.snapshot(), &self.base_dir) {
                Ok(d) => d,
                Err(e) => {
                    return Ok(Recheck::Stop(format!(
                        "gate `{}` (recheck before step `{}`): {e}",
                        spec.name(),
                        step.id
                    )));
                }
            };
            let release = self.engine.config.release_gate_waits
                && spec.on_blocked == opsbook_core::step::gate::OnBlocked::Wait
                && !matches!(step.kind, StepKind::Approval(_) | StepKind::Manual(_));
            if release {
                match kinds::gate::recheck_released(self, idx, &gate_step, &spec, &def).await? {
                    Recheck::Go => continue,
                    other => return Ok(other),
                }
            }
            let r = kinds::gate::wait_until_clear(self, &gate_step, &spec, &def).await?;
            if r.status != StepStatus::Succeeded {
                let why = r.error.unwrap_or_default();
                return Ok(Recheck::Stop(format!("recheck before step `{}`: {why}", step.id)));
            }
        }
        Ok(Recheck::Go)
    }

    /// Evaluates `when`; `Some` when the step is settled without running (skipped or failed).
    pub(super) async fn condition(&mut self, idx: usize, step: &Step) -> Result<Option<Flow>> {
        let Some(when) = &step.when else {
            return Ok(None);
        };
        let (status, error) = match template::eval_condition(when, &self.context(false)) {
            Ok(true) => return Ok(None),
            Ok(false) => (StepStatus::Skipped, None),
            Err(e) => (StepStatus::Failed, Some(format!("when: {e}"))),
        };
        let now = now_ms();
        let rec = &mut self.steps[idx];
        rec.status = status;
        rec.started_at = Some(now);
        rec.finished_at = Some(now);
        rec.error = error.clone();
        self.save_step(idx).await?;
        // Why it was skipped, for whoever watches (not an error: none is stored).
        let why = error.unwrap_or_else(|| {
            let shown: String = when.chars().take(80).collect();
            let more = if shown.len() < when.len() { "…" } else { "" };
            format!("`when: {shown}{more}` is false")
        });
        self.event(&Event::StepFinished { idx, step_id: &step.id, status, duration_ms: 0, error: Some(&why) });
        Ok(Some(Flow::Done(status)))
    }

    /// Runs the attempts of a run/http/sleep step, with retries and backoff.
    pub(super) async fn attempts(&mut self, idx: usize, step: &Step) -> Result<Flow> {
        let max = step.attempts();
        let first = u32::try_from(self.steps[idx].attempts).unwrap_or(0) + 1;
        let mut n = 0;
        loop {
            let attempt = first + n;
            let started = now_ms();
            {
                let rec = &mut self.steps[idx];
                rec.status = StepStatus::Running;
                rec.started_at.get_or_insert(started);
                rec.finished_at = None;
                rec.attempts = i64::from(attempt);
                rec.error = None;
            }
            self.steps[idx].rendered = kinds::display(self, step);
            self.save_step(idx).await?;
            self.event(&Event::StepStarted {
                idx,
                step_id: &step.id,
                name: &step.name,
                attempt: n + 1,
                max_attempts: max,
            });
            let result = match &step.kind {
                StepKind::Run(script) => kinds::run::attempt(self, step, script, attempt).await?,
                StepKind::Http(spec) => kinds::http::attempt(self, step, spec, attempt).await?,
                StepKind::Sleep(spec) => kinds::sleep::attempt(self, spec).await,
                StepKind::Gate(spec) => kinds::gate::attempt(self, &step.id, spec).await?,
                StepKind::Approval(_) | StepKind::Manual(_) | StepKind::Parallel(_) => {
                    unreachable!("people's steps and parallel groups are not attempted")
                }
                // A runbook test: the child answers from the step's mock.
                StepKind::Runbook(_) => {
                    let mocks = self.engine.config.mocks.clone().expect("real calls run in kinds::call");
                    let act = kinds::Action::step(&step.id, attempt, step.timeout.0);
                    kinds::mock::call(self, &act, &mocks).await?
                }
                aws => {
                    let act = kinds::Action::step(&step.id, attempt, step.timeout.0);
                    kinds::aws(self, &act, aws).await?.expect("the AWS kinds")
                }
            };
            let mut result = result;
            kinds::validate::after(self, step, &mut result).await?;
            self.sink.flush().await?;
            let finished = now_ms();
            let error = result.error.as_ref().map(|e| self.masker().mask(e).into_owned());
            let last = result.status == StepStatus::Succeeded
                || result.status == StepStatus::Cancelled
                || !result.retryable
                || n + 1 >= max;
            {
                let masker = self.sink.masker().clone();
                let rec = &mut self.steps[idx];
                rec.exit_code = result.exit_code.map(i64::from);
                rec.error = error.clone();
                if result.status == StepStatus::Succeeded {
                    rec.outputs =
                        result.outputs.iter().map(|(k, v)| (k.clone(), masker.mask(v).into_owned().into())).collect();
                }
                if last {
                    rec.status = result.status;
                    rec.finished_at = Some(finished);
                }
            }
            if last {
                self.flush_deferred().await?;
                let row = self.attempt_row(&step.id, Phase::Step, attempt, started, &result);
                self.deferred = Some((row, idx));
            } else {
                self.record(&step.id, Phase::Step, attempt, started, &result, Some(idx)).await?;
            }
            if last {
                self.note_end(&step.id, Phase::Step, result.status, error.as_deref()).await?;
                let duration_ms = finished - self.steps[idx].started_at.unwrap_or(finished);
                self.event(&Event::StepFinished {
                    idx,
                    step_id: &step.id,
                    status: result.status,
                    duration_ms,
                    error: error.as_deref(),
                });
                return Ok(Flow::Done(result.status));
            }
            let mut delay = step.retries.as_ref().map(|r| r.delay_before(n)).unwrap_or_default();
            if self.engine.config.mocks.is_some() {
                // A runbook test does not wait between attempts.
                delay = std::time::Duration::ZERO;
            }
            let msg = format!(
                "attempt {} of {max} {}: {}; retrying in {}",
                n + 1,
                describe(result.status),
                error.unwrap_or_default(),
                opsbook_core::duration::human_ms(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
            );
            self.system(Some(&step.id), Phase::Step, &msg).await?;
            let cancel = self.hooks.cancel.clone();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cancel.reached(1) => {
                    self.cancel_step(idx, "cancelled while waiting to retry").await?;
                    self.event(&Event::StepFinished { idx, step_id: &step.id, status: StepStatus::Cancelled, duration_ms: 0, error: Some("cancelled") });
                    return Ok(Flow::Done(StepStatus::Cancelled));
                }
            }
            n += 1;
        }
    }

    /// Ends the run as failed or cancelled, rolling back first when the runbook says so.
    pub(super) async fn stop(&mut self, status: ExecStatus, error: String) -> Result<()> {
        // Nothing waits any more: a step held by a gate's recheck never ran (pending
        // again); a gate or approval step that waited was cancelled with the run.
        for idx in 0..self.steps.len() {
            if self.steps[idx].status != StepStatus::Waiting {
                continue;
            }
            if let StepKind::Runbook(spec) = &self.rb.steps[idx].kind.clone() {
                kinds::call::cancel_waiting(self, idx, spec).await?;
            }
            let held = !matches!(
                self.rb.steps[idx].kind,
                StepKind::Approval(_) | StepKind::Manual(_) | StepKind::Gate(_) | StepKind::Runbook(_)
            );
            let rec = &mut self.steps[idx];
            rec.wait_deadline = None;
            if held {
                rec.status = StepStatus::Pending;
                rec.started_at = None;
            } else {
                rec.status = StepStatus::Cancelled;
                rec.finished_at = Some(now_ms());
            }
            self.save_step(idx).await?;
        }
        // On record as running while rollbacks run (a gate poll held it as waiting).
        self.exec.status = ExecStatus::Running;
        self.exec.error = Some(self.masker().mask(&error).into_owned());
        // The failure is on record before any rollback runs.
        self.flush_deferred().await?;
        self.patient().update_execution(&self.exec, self.fence()).await?;
        if self.rb.on_failure == OnFailure::Rollback && self.cancel_level() < 2 {
            self.rollback_all().await?;
        }
        self.finish(status).await
    }
}
