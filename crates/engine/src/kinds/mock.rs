//! Runbook tests (`EngineConfig::mocks`): each kind answers from the test case's mocks
//! instead of running anything. No process starts and nothing goes over the network;
//! templates are still rendered (and recorded, masked), outputs and validations still
//! apply, retries, rollbacks, approvals and manual steps go through the engine as in a
//! real run.

use std::collections::BTreeMap;

use opsbook_core::step::gate::{GateStepSpec, OnBlocked};
use opsbook_core::step::http::HttpSpec;
use opsbook_core::testcase::{GateVerdict, MockResult, StepMock};
use opsbook_core::{Step, StepStatus};
use opsbook_store::{Phase, Stream};

use super::run::{ScriptRun, check_line, judge};
use super::{Action, AttemptResult};
use crate::Result;
use crate::runner::Run;

/// The mocks of a test case, by step id.
pub type Mocks = BTreeMap<String, StepMock>;

/// The result for attempt `n` of `step_id` in `phase`: its mock, or a quiet success.
fn result(mocks: &Mocks, step_id: Option<&str>, phase: Phase, attempt: u32) -> MockResult {
    let Some(m) = step_id.and_then(|id| mocks.get(id)) else { return MockResult::default() };
    match phase {
        Phase::Rollback => m.rollback.clone().unwrap_or_default(),
        _ => m.attempt(attempt),
    }
}

/// Writes a mock's output to the log, line by line, as a process's would be.
fn log(run: &mut Run<'_, '_>, step_id: Option<&str>, phase: Phase, attempt: u32, stream: Stream, text: &str) {
    for line in text.lines() {
        run.sink.push(run.hooks.observer, step_id, phase, attempt, stream, line.as_bytes());
    }
}

/// A `run` script (a step's attempt, a rollback, a prerequisite check, which passes).
pub(crate) async fn script(
    run: &mut Run<'_, '_>,
    sr: &ScriptRun<'_>,
    validations: &[opsbook_core::CheckedValidation],
    mocks: &Mocks,
) -> Result<AttemptResult> {
    let r = result(mocks, sr.step_id, sr.phase, sr.attempt);
    let mut seen = vec![false; validations.len()];
    let stdout = r.stdout.clone().unwrap_or_default();
    for line in stdout.lines() {
        check_line(validations, &mut seen, line.as_bytes());
    }
    log(run, sr.step_id, sr.phase, sr.attempt, Stream::Stdout, &stdout);
    log(run, sr.step_id, sr.phase, sr.attempt, Stream::Stderr, r.stderr.as_deref().unwrap_or_default());
    run.sink.flush().await?;
    if r.timed_out {
        let why = format!("timed out after {}", opsbook_core::Dur(sr.timeout));
        return Ok(AttemptResult::failed(StepStatus::TimedOut, why));
    }
    let code = r.exit_code.unwrap_or(0);
    let problems = judge(validations, &seen, Some(code));
    let mut result = if problems.is_empty() {
        AttemptResult::ok(r.outputs)
    } else {
        AttemptResult::failed(StepStatus::Failed, problems.join("; "))
    };
    result.exit_code = Some(code);
    Ok(result)
}

/// An `http` step: the mocked response is checked as a real one would be.
pub(crate) async fn http(
    run: &mut Run<'_, '_>,
    step: &Step,
    spec: &HttpSpec,
    attempt: u32,
    mocks: &Mocks,
) -> Result<AttemptResult> {
    // Rendered as for a real request, so that a test meets what a run would refuse.
    let (url, needle) = match super::http::Request::render(spec, &run.context(false)) {
        Ok(r) => (run.masker().mask(&r.url).into_owned(), r.needle),
        Err(e) => return Ok(AttemptResult::fatal(e)),
    };
    let r = result(mocks, Some(&step.id), Phase::Step, attempt);
    if r.timed_out {
        let why = format!("{} {url}: no response within {}", spec.method.as_str(), step.timeout);
        return Ok(AttemptResult::failed(StepStatus::TimedOut, why));
    }
    let (status, body) = r.http.map(|h| (h.status, h.body)).unwrap_or((200, String::new()));
    let line = format!("{} {url} -> {status} (mocked)", spec.method.as_str());
    run.system(Some(&step.id), Phase::Step, &line).await?;
    log(run, Some(&step.id), Phase::Step, attempt, Stream::Stdout, &body);
    run.sink.flush().await?;
    let mut problems = Vec::new();
    if !spec.accepts_status(status) {
        problems.push(format!("status {status} (expected {})", expected(spec)));
    }
    if let Some(needle) = &needle
        && !body.contains(needle.as_str())
    {
        problems.push(run.masker().mask(&format!("response body does not contain {needle:?}")).into_owned());
    }
    if !problems.is_empty() {
        return Ok(AttemptResult::failed(StepStatus::Failed, problems.join("; ")));
    }
    let mut outputs = BTreeMap::new();
    outputs.insert("status".to_string(), status.to_string());
    outputs.insert("body".to_string(), body.clone());
    Ok(AttemptResult { document: serde_json::from_str(&body).ok(), ..AttemptResult::ok(outputs) })
}

fn expected(spec: &HttpSpec) -> String {
    if spec.expect_status.is_empty() {
        "2xx".to_string()
    } else {
        spec.expect_status.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
    }
}

/// An AWS step or rollback: the mocked answer (its top-level keys become outputs) or
/// the mocked error.
pub(crate) async fn aws(run: &mut Run<'_, '_>, act: &Action<'_>, mocks: &Mocks) -> Result<AttemptResult> {
    let r = result(mocks, Some(act.step_id), act.phase, act.attempt);
    if r.timed_out {
        return Ok(AttemptResult::failed(
            StepStatus::TimedOut,
            format!("timed out after {}", opsbook_core::Dur(act.timeout)),
        ));
    }
    let aws = r.aws.unwrap_or(opsbook_core::testcase::AwsMock { response: Some(serde_json::json!({})), error: None });
    if let Some(e) = aws.error {
        return Ok(AttemptResult::failed(StepStatus::Failed, e));
    }
    let answer = aws.response.unwrap_or_default();
    act.log(run, Stream::Stdout, "", &format!("{answer:#}"), 20).await?;
    let outputs = match &answer {
        serde_json::Value::Object(map) => {
            map.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect()
        }
        _ => BTreeMap::new(),
    };
    Ok(AttemptResult { document: Some(answer), ..AttemptResult::ok(outputs) })
}

/// A `runbook` step (or its rollback): the child's outputs as mocked; `exit_code` other
/// than 0 is a child that failed, `timed_out` one that ran out of time.
pub(crate) async fn call(run: &mut Run<'_, '_>, act: &Action<'_>, mocks: &Mocks) -> Result<AttemptResult> {
    let r = result(mocks, Some(act.step_id), act.phase, act.attempt);
    log(run, Some(act.step_id), act.phase, act.attempt, Stream::Stdout, r.stdout.as_deref().unwrap_or_default());
    if r.timed_out {
        let error = format!("child execution (mocked) did not finish within {}", opsbook_core::Dur(act.timeout));
        return Ok(AttemptResult::failed(StepStatus::TimedOut, error));
    }
    match r.exit_code.unwrap_or(0) {
        0 => Ok(AttemptResult::ok(r.outputs.clone())),
        code => Ok(AttemptResult::failed(StepStatus::Failed, format!("child execution (mocked) failed ({code})"))),
    }
}

/// A gate (its step, or a recheck of it): clear, or blocked as the mock says. Blocked
/// fails the step as a real block would once it gave up: at once with `on_blocked:
/// fail`, as timed out after `max_wait` otherwise.
pub(crate) fn gate(mocks: &Mocks, step_id: &str, spec: &GateStepSpec) -> AttemptResult {
    let m = mocks.get(step_id);
    if m.and_then(|m| m.gate) != Some(GateVerdict::Blocked) {
        return AttemptResult::ok(BTreeMap::new());
    }
    let reason = m.and_then(|m| m.reason.clone()).unwrap_or_else(|| "blocked (mocked)".into());
    match spec.on_blocked {
        OnBlocked::Fail => {
            AttemptResult::failed(StepStatus::Failed, format!("gate `{}` blocks: {reason}", spec.name()))
        }
        OnBlocked::Wait => AttemptResult::failed(
            StepStatus::TimedOut,
            format!("gate `{}` still blocked after {}: {reason}", spec.name(), spec.max_wait()),
        ),
    }
}
