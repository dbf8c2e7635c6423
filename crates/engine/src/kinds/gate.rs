//! `gate`: checks a health gate; while it blocks, waits (polling) or fails. Also used to
//! re-check a gate before later steps (`recheck: between_steps`).

use std::time::Instant;

use opsbook_core::step::gate::{GateStepSpec, OnBlocked};
use opsbook_core::{StepStatus, gate::GateDef};
use opsbook_gate::Checker;
use opsbook_store::{Phase, WaitKind};

use super::AttemptResult;
use crate::Result;
use crate::observer::Event;
use crate::runner::Run;

/// Why a gate does not pass, masked: reasons come from outside and end up in logs,
/// step records and notifications.
fn describe(run: &Run<'_, '_>, r: &opsbook_gate::GateResult) -> String {
    run.masker().mask(&r.reasons().join("; ")).into_owned()
}

/// Checks the gate until it passes, it blocks under `on_blocked: fail`, `max_wait` runs
/// out, or the run is cancelled. Progress goes to the log under `step_id`.
pub(crate) async fn wait_until_clear(
    run: &mut Run<'_, '_>,
    step_id: &str,
    spec: &GateStepSpec,
    def: &GateDef,
) -> Result<AttemptResult> {
    let checker = match Checker::new(std::time::Duration::from_secs(20)) {
        Ok(c) => c,
        Err(e) => return Ok(AttemptResult::fatal(e)),
    };
    let name = spec.name().to_string();
    let started = Instant::now();
    let (max_wait, poll) = (spec.max_wait().0, spec.poll().0);
    let mut last_block: Option<String> = None;
    let cancel = run.hooks.cancel.clone();
    loop {
        let Some(r) = check_unless_cancelled(&cancel, &checker, &name, def).await else {
            return Ok(AttemptResult::failed(StepStatus::Cancelled, "cancelled".into()));
        };
        if r.passes() {
            let note = if r.verdict == opsbook_gate::Verdict::Unknown {
                format!(" (fail_mode: open, although {})", describe(run, &r))
            } else {
                String::new()
            };
            run.system(Some(step_id), Phase::Step, &format!("gate `{name}` is {}{note}", r.verdict.as_str())).await?;
            if last_block.is_some() {
                let waited_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
                run.event(&Event::GateCleared { step_id, gate: &name, waited_ms });
            }
            let mut ok = AttemptResult::ok([("verdict".to_string(), r.verdict.as_str().to_string())].into());
            ok.exit_code = None;
            return Ok(ok);
        }
        let why = describe(run, &r);
        if last_block.as_deref() != Some(why.as_str()) {
            run.event(&Event::GateBlocked { step_id, gate: &name, reasons: &why });
            last_block = Some(why.clone());
        }
        if spec.on_blocked == OnBlocked::Fail {
            let msg = format!("gate `{name}` is {}: {why}", r.verdict.as_str());
            run.system(Some(step_id), Phase::Step, &msg).await?;
            return Ok(AttemptResult::fatal(msg));
        }
        let waited = started.elapsed();
        if waited >= max_wait {
            let mut res = AttemptResult::failed(
                StepStatus::TimedOut,
                format!("gate `{name}` still {} after {}: {why}", r.verdict.as_str(), opsbook_core::Dur(max_wait)),
            );
            res.retryable = false;
            return Ok(res);
        }
        let msg = format!(
            "gate `{name}` {} for {}: {why}; checking again in {}",
            r.verdict.as_str(),
            opsbook_core::duration::human_ms(u64::try_from(waited.as_millis()).unwrap_or(0)),
            opsbook_core::Dur(poll)
        );
        run.system(Some(step_id), Phase::Step, &msg).await?;
        tokio::select! {
            // The last check lands on the deadline, not a poll after it.
            _ = tokio::time::sleep(poll.min(max_wait - waited)) => {}
            _ = cancel.reached(1) => return Ok(AttemptResult::failed(StepStatus::Cancelled, "cancelled".into())),
        }
    }
}

pub(crate) async fn attempt(run: &mut Run<'_, '_>, step_id: &str, spec: &GateStepSpec) -> Result<AttemptResult> {
    if let Some(mocks) = &run.engine.config.mocks {
        return Ok(super::mock::gate(mocks, step_id, spec));
    }
    let def = match spec.resolve(&run.engine.config.gates.snapshot(), &run.base_dir) {
        Ok(d) => d,
        Err(e) => return Ok(AttemptResult::fatal(e)),
    };
    wait_until_clear(run, step_id, spec, &def).await
}

/// The server's way: check once; while blocked, the execution waits without holding a
/// worker and is queued again when `poll` has passed (the reaper requeues expired waits).
pub(crate) async fn run_released(
    run: &mut Run<'_, '_>,
    idx: usize,
    step: &opsbook_core::Step,
    spec: &GateStepSpec,
) -> Result<crate::runner::Flow> {
    use crate::runner::Flow;
    let now = opsbook_store::now_ms();
    let def = match spec.resolve(&run.engine.config.gates.snapshot(), &run.base_dir) {
        Ok(d) => d,
        Err(e) => return settle(run, idx, StepStatus::Failed, Some(e)).await,
    };
    let started = run.started(idx);
    if run.steps[idx].status == StepStatus::Pending {
        // On record while the first check runs (an override waits for it).
        run.mark_running(idx, None).await?;
    }
    let checker = match Checker::new(std::time::Duration::from_secs(20)) {
        Ok(c) => c,
        Err(e) => return settle(run, idx, StepStatus::Failed, Some(e)).await,
    };
    let name = spec.name().to_string();
    let cancel = run.hooks.cancel.clone();
    // A worker gives a check a short while; a slower one is handed to the gate pool, so
    // a slow or hanging source never holds a worker for long.
    let on_worker = !run.gate_poll_only;
    let r = tokio::select! {
        r = check_unless_cancelled(&cancel, &checker, &name, &def) => match r {
            Some(r) => r,
            None => {
                return settle(run, idx, StepStatus::Cancelled, Some("cancelled while waiting on a gate".into()))
                    .await;
            }
        },
        _ = tokio::time::sleep(WORKER_CHECK_BUDGET), if on_worker => {
            let why = format!("gate `{name}`: checking (slow sources)");
            run.wait_step(idx, WaitKind::Gate, Some(now), Some(why)).await?;
            return Ok(Flow::Wait);
        }
    };
    let waited = now - started;
    let previous = waiting_on(&run.steps[idx]);
    // Blocked before (not merely handed over from a worker): its clearing is news.
    let was_blocked = previous.is_some() && run.steps[idx].outputs.contains_key("records");
    if r.passes() {
        run.system(Some(&step.id), Phase::Step, &format!("gate `{name}` is {}", r.verdict.as_str())).await?;
        run.steps[idx].outputs.insert("verdict".into(), r.verdict.as_str().into());
        // What blocked it is history now (in the log and the notifications).
        run.steps[idx].outputs.remove("records");
        if was_blocked {
            run.event(&Event::GateCleared { step_id: &step.id, gate: &name, waited_ms: waited });
        }
        return settle(run, idx, StepStatus::Succeeded, None).await;
    }
    let why = describe(run, &r);
    let message = format!("gate `{name}` {}: {why}", r.verdict.as_str());
    if previous.as_deref() != Some(message.as_str()) {
        run.event(&Event::GateBlocked { step_id: &step.id, gate: &name, reasons: &why });
    }
    let max_wait = i64::try_from(spec.max_wait().0.as_millis()).unwrap_or(i64::MAX / 2);
    let poll = i64::try_from(spec.poll().0.as_millis()).unwrap_or(60_000);
    if spec.on_blocked == OnBlocked::Fail {
        return settle(run, idx, StepStatus::Failed, Some(format!("gate `{name}` is {}: {why}", r.verdict.as_str())))
            .await;
    }
    if waited >= max_wait {
        let msg = format!("gate `{name}` still {} after {}: {why}", r.verdict.as_str(), spec.max_wait());
        return settle(run, idx, StepStatus::TimedOut, Some(msg)).await;
    }
    run.system(Some(&step.id), Phase::Step, &format!("{message}; checking again in {}", spec.poll())).await?;
    let records = run.masker().mask_json(&serde_json::to_value(&r.records).unwrap_or_default());
    run.steps[idx].outputs.insert("records".into(), records);
    run.wait_step(idx, WaitKind::Gate, Some(now + poll.min(max_wait - waited)), Some(message.clone())).await?;
    if !was_blocked {
        run.event(&Event::Waiting { step_id: &step.id, kind: WaitKind::Gate, message: &message });
    }
    Ok(Flow::Wait)
}

/// A check of the gate, or `None` when the run is cancelled first (dropping the check
/// kills the processes of its `command` sources).
async fn check_unless_cancelled(
    cancel: &crate::cancel::Cancel,
    checker: &Checker,
    name: &str,
    def: &GateDef,
) -> Option<opsbook_gate::GateResult> {
    tokio::select! {
        r = checker.check(name, def, jiff::Timestamp::now()) => Some(r),
        _ = cancel.reached(1) => None,
    }
}

/// How long a worker checks a gate before handing the check to the gate pool.
const WORKER_CHECK_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

/// What a step waiting on a gate was last blocked by; `None` when it was not waiting.
fn waiting_on(rec: &opsbook_store::StepRecord) -> Option<String> {
    (rec.status == StepStatus::Waiting).then(|| rec.error.clone().unwrap_or_default())
}

async fn settle(
    run: &mut Run<'_, '_>,
    idx: usize,
    status: StepStatus,
    error: Option<String>,
) -> Result<crate::runner::Flow> {
    run.settle_once(idx, status, error).await
}

/// One re-check before step `idx` on the server: clear goes on; blocked parks the
/// execution (the step waits until the next poll) or, after `max_wait`, stops the run.
pub(crate) async fn recheck_released(
    run: &mut Run<'_, '_>,
    idx: usize,
    gate_step: &str,
    spec: &GateStepSpec,
    def: &GateDef,
) -> Result<crate::runner::Recheck> {
    use crate::runner::Recheck;
    let checker = match Checker::new(std::time::Duration::from_secs(20)) {
        Ok(c) => c,
        Err(e) => return Ok(Recheck::Stop(e)),
    };
    let name = spec.name().to_string();
    // Cancelled mid-check: the run stops at its next look at the cancel level.
    let Some(r) = check_unless_cancelled(&run.hooks.cancel, &checker, &name, def).await else {
        return Ok(Recheck::Wait);
    };
    let step_id = run.steps[idx].step_id.clone();
    let previous = waiting_on(&run.steps[idx]);
    let now = opsbook_store::now_ms();
    if r.passes() {
        // Every check is in the log, as in a local run.
        let clear = format!("recheck before step `{step_id}`: gate `{name}` is {}", r.verdict.as_str());
        run.system(Some(gate_step), Phase::Step, &clear).await?;
        if previous.is_some() {
            let waited_ms = now - run.steps[idx].started_at.unwrap_or(now);
            run.release_hold(idx);
            run.event(&Event::GateCleared { step_id: &step_id, gate: &name, waited_ms });
        }
        return Ok(Recheck::Go);
    }
    let why = describe(run, &r);
    let message = format!("waiting before step `{step_id}`: gate `{name}` {}: {why}", r.verdict.as_str());
    if previous.as_deref() != Some(message.as_str()) {
        run.event(&Event::GateBlocked { step_id: &step_id, gate: &name, reasons: &why });
    }
    let first = run.started(idx);
    let max_wait = i64::try_from(spec.max_wait().0.as_millis()).unwrap_or(i64::MAX / 2);
    let poll = i64::try_from(spec.poll().0.as_millis()).unwrap_or(60_000);
    if now - first >= max_wait {
        return Ok(Recheck::Stop(format!(
            "recheck before step `{step_id}`: gate `{name}` still {} after {}: {why}",
            r.verdict.as_str(),
            spec.max_wait()
        )));
    }
    run.system(Some(gate_step), Phase::Step, &format!("{message}; checking again in {}", spec.poll())).await?;
    run.wait_step(idx, WaitKind::Gate, Some(now + poll.min(max_wait - (now - first))), Some(message.clone())).await?;
    if previous.is_none() {
        run.event(&Event::Waiting { step_id: &step_id, kind: WaitKind::Gate, message: &message });
    }
    Ok(Recheck::Wait)
}
