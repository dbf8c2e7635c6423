//! Persistence: attempts and steps committed before the next action (one commit per
//! step on the hot path), and the end of a run.

use opsbook_core::{ExecStatus, StepStatus};
use opsbook_store::{Attempt, Phase, StepRecord, Store, now_ms};

use crate::Result;
use crate::kinds::AttemptResult;
use crate::observer::Event;

use super::{Flow, Run};

impl<'e, 'h, S: Store> Run<'e, 'h, S> {
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
        self.store().record_attempt(&attempt, &steps).await?;
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
                self.store().record_attempt(&attempt, &[&self.steps[prev], &self.steps[idx]]).await?
            }
            Some((attempt, prev)) => self.store().record_attempt(&attempt, &[&self.steps[prev]]).await?,
            None => self.store().update_step(&self.steps[idx]).await?,
        }
        Ok(())
    }

    /// Writes a step's final attempt if it is still waiting to go out with the next write.
    pub async fn flush_deferred(&mut self) -> Result<()> {
        if let Some((attempt, idx)) = self.deferred.take() {
            self.store().record_attempt(&attempt, &[&self.steps[idx]]).await?;
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
        self.flush_deferred().await?;
        self.store().update_execution(&self.exec).await?;
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
}
