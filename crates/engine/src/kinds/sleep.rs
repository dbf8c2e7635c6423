//! `sleep`: waits, unless cancelled.

use opsbook_core::StepStatus;
use opsbook_core::step::sleep::SleepSpec;

use super::AttemptResult;
use crate::runner::Run;

pub(crate) async fn attempt(run: &mut Run<'_, '_>, spec: &SleepSpec) -> AttemptResult {
    // A runbook test does not wait.
    if run.engine.config.mocks.is_some() {
        return AttemptResult::ok(Default::default());
    }
    let cancel = run.hooks.cancel.clone();
    tokio::select! {
        _ = tokio::time::sleep(spec.duration.0) => AttemptResult::ok(Default::default()),
        _ = cancel.reached(1) => AttemptResult::failed(StepStatus::Cancelled, "cancelled".into()),
    }
}
