//! `gate`: checks a health gate; while it blocks, waits (polling) or fails. Also used to
//! re-check a gate before later steps (`recheck: between_steps`).

use std::time::Instant;

use opsbook_core::step::gate::{GateStepSpec, OnBlocked};
use opsbook_core::{StepStatus, gate::GateDef};
use opsbook_gate::Checker;
use opsbook_store::{Phase, Store};

use super::AttemptResult;
use crate::Result;
use crate::runner::Run;

fn describe(r: &opsbook_gate::GateResult) -> String {
    let mut why: Vec<String> = r.records.iter().map(|b| format!("{}: {}", b.source, b.title)).collect();
    why.extend(r.unreadable().into_iter().map(|u| format!("cannot read {u}")));
    why.join("; ")
}

/// Checks the gate until it passes, it blocks under `on_blocked: fail`, `max_wait` runs
/// out, or the run is cancelled. Progress goes to the log under `step_id`.
pub(crate) async fn wait_until_clear<S: Store>(
    run: &mut Run<'_, '_, S>,
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
    loop {
        let r = checker.check(&name, def, jiff::Timestamp::now()).await;
        if r.passes() {
            let note = if r.verdict == opsbook_gate::Verdict::Unknown {
                format!(" (fail_mode: open, although {})", describe(&r))
            } else {
                String::new()
            };
            run.system(Some(step_id), Phase::Step, &format!("gate `{name}` is {}{note}", r.verdict.as_str())).await?;
            let mut ok = AttemptResult::ok([("verdict".to_string(), r.verdict.as_str().to_string())].into());
            ok.exit_code = None;
            return Ok(ok);
        }
        let why = describe(&r);
        if spec.on_blocked == OnBlocked::Fail {
            return Ok(AttemptResult::fatal(format!("gate `{name}` is {}: {why}", r.verdict.as_str())));
        }
        let waited = started.elapsed();
        if waited + poll > max_wait {
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
        let cancel = run.hooks.cancel.clone();
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = cancel.reached(1) => return Ok(AttemptResult::failed(StepStatus::Cancelled, "cancelled".into())),
        }
    }
}

pub(crate) async fn attempt<S: Store>(
    run: &mut Run<'_, '_, S>,
    step_id: &str,
    spec: &GateStepSpec,
) -> Result<AttemptResult> {
    let def = match spec.resolve(&run.engine.config.gates) {
        Ok(d) => d,
        Err(e) => return Ok(AttemptResult::fatal(e)),
    };
    wait_until_clear(run, step_id, spec, &def).await
}
