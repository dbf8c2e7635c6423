//! Persistence: attempts and steps committed before the next action (one commit per
//! step on the hot path), and the end of a run.

use opsbook_core::{ExecStatus, StepStatus};
use opsbook_store::{Attempt, Phase, StepRecord, WaitKind, now_ms};

use crate::Result;
use crate::kinds::AttemptResult;
use crate::observer::Event;

use super::{Flow, Run};

impl<'e, 'h> Run<'e, 'h> {
    pub async fn record(
        &mut self,
        step_id: &str,
        phase: Phase,
        attempt: u32,
        started: i64,
        r: &AttemptResult,
        step_idx: Option<usize>,
    ) -> Result<()> {
        self.flush_deferred().await?;
        let attempt = self.attempt_row(step_id, phase, attempt, started, r);
        let steps: Vec<&StepRecord> = step_idx.map(|i| &self.steps[i]).into_iter().collect();
        self.patient().record_attempt(&attempt, &steps, self.fence()).await?;
        Ok(())
    }

    pub(super) fn attempt_row(
        &self,
        step_id: &str,
        phase: Phase,
        attempt: u32,
        started: i64,
        r: &AttemptResult,
    ) -> Attempt {
        Attempt {
            execution_id: self.exec.id.clone(),
            step_id: step_id.to_string(),
            phase,
            attempt: i64::from(attempt),
            status: r.status,
            exit_code: r.exit_code.map(i64::from),
            started_at: started,
            finished_at: now_ms(),
            error: r.error.as_ref().map(|e| self.masker().mask(e).into_owned()),
        }
    }

    /// Commits a step's state. A step's final attempt is written together with this
    /// write (usually the next step's start): one transaction per step on the hot path,
    /// and still committed before the next action.
    pub async fn save_step(&mut self, idx: usize) -> Result<()> {
        match self.deferred.take() {
            Some((attempt, prev)) if prev != idx => {
                self.patient().record_attempt(&attempt, &[&self.steps[prev], &self.steps[idx]], self.fence()).await?
            }
            Some((attempt, prev)) => {
                self.patient().record_attempt(&attempt, &[&self.steps[prev]], self.fence()).await?
            }
            None => self.patient().update_step(&self.steps[idx], self.fence()).await?,
        }
        Ok(())
    }

    /// Writes a step's final attempt if it is still waiting to go out with the next write.
    pub async fn flush_deferred(&mut self) -> Result<()> {
        if let Some((attempt, idx)) = self.deferred.take() {
            self.patient().record_attempt(&attempt, &[&self.steps[idx]], self.fence()).await?;
        }
        Ok(())
    }

    pub async fn finish(&mut self, status: ExecStatus) -> Result<()> {
        self.sink.flush().await?;
        self.exec.status = status;
        // A later rollback of a finished execution does not move its finish (or duration).
        self.exec.finished_at.get_or_insert_with(now_ms);
        self.exec.owner = None;
        self.exec.lease_expires_at = None;
        // The last attempt goes out with the execution's end: one write.
        match self.deferred.take() {
            Some((attempt, idx)) => {
                let last = (&attempt, &[&self.steps[idx]][..]);
                self.patient().finish_execution(&self.exec, Some(last), self.fence()).await?
            }
            None => self.patient().finish_execution(&self.exec, None, self.fence()).await?,
        }
        self.stop_heartbeat();
        self.event(&Event::Finished { status });
        Ok(())
    }

    pub(super) fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }

    /// Ends step `idx` with `status` (and `error`): on record, then announced. The one
    /// way a step kind settles a step.
    pub async fn settle(&mut self, idx: usize, status: StepStatus, error: Option<String>) -> Result<Flow> {
        let now = now_ms();
        let rec = &mut self.steps[idx];
        rec.status = status;
        rec.error = error;
        rec.finished_at = Some(now);
        rec.wait_deadline = None;
        let duration_ms = now - rec.started_at.unwrap_or(now);
        self.save_step(idx).await?;
        let rec = &self.steps[idx];
        let event =
            Event::StepFinished { idx, step_id: &rec.step_id, status, duration_ms, error: rec.error.as_deref() };
        self.hooks.observer.on_event(&event);
        Ok(Flow::Done(status))
    }

    /// When step `idx` started (now, if it had not).
    pub fn started(&mut self, idx: usize) -> i64 {
        *self.steps[idx].started_at.get_or_insert_with(now_ms)
    }

    /// Step `idx` is under way (a first gate check, or a wait for people), on record;
    /// `deadline`, when given, is kept if it had one already.
    pub async fn mark_running(&mut self, idx: usize, deadline: Option<i64>) -> Result<()> {
        self.started(idx);
        let rec = &mut self.steps[idx];
        if let Some(d) = deadline {
            rec.wait_deadline.get_or_insert(d);
        }
        rec.status = StepStatus::Running;
        rec.finished_at = None;
        self.save_step(idx).await
    }

    /// Step `idx` waits for `kind`, on record: looked at again at `deadline`, and `why`
    /// says what it waits on (both kept when not given).
    pub async fn wait_step(
        &mut self,
        idx: usize,
        kind: WaitKind,
        deadline: Option<i64>,
        why: Option<String>,
    ) -> Result<()> {
        let rec = &mut self.steps[idx];
        rec.wait_for(kind);
        if let Some(d) = deadline {
            rec.wait_deadline = Some(d);
        }
        if let Some(why) = why {
            rec.error = Some(why);
        }
        self.save_step(idx).await
    }

    /// Step `idx` was cancelled while it waited (for people, or to retry), on record;
    /// the caller announces it if it should.
    pub async fn cancel_step(&mut self, idx: usize, why: &str) -> Result<()> {
        let rec = &mut self.steps[idx];
        rec.status = StepStatus::Cancelled;
        rec.finished_at = Some(now_ms());
        rec.error = Some(why.to_string());
        self.save_step(idx).await
    }

    /// Step `idx`, held by a gate's recheck, may run: pending again, nothing to wait on.
    /// (Saved when it starts.)
    pub fn release_hold(&mut self, idx: usize) {
        let rec = &mut self.steps[idx];
        rec.status = StepStatus::Pending;
        rec.error = None;
        rec.wait_deadline = None;
        rec.wait_kind = None;
    }

    /// [`Run::settle`] for a step done once whatever it took (a gate's polls are not
    /// retries): it counts one attempt, as a local run counts it.
    pub async fn settle_once(&mut self, idx: usize, status: StepStatus, error: Option<String>) -> Result<Flow> {
        let rec = &mut self.steps[idx];
        rec.attempts = rec.attempts.max(1);
        self.settle(idx, status, error).await
    }
}
