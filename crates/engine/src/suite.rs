//! Runs a runbook's test cases: each case is an execution on the engine with the case's
//! mocks (nothing runs for real), then its records are held against what the case
//! expects. The same for `opsbook test` and for the server's check on publish.

use crate::Db;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opsbook_core::testcase::TestCase;
use opsbook_core::{Input, Runbook, StepStatus};
use opsbook_store::{Phase, Store};

use crate::{Boxed, Engine, EngineConfig, Hooks, Quiet, StartRequest, boxed, cancel_pair};

/// How one case went: `failures` empty when it passed.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub runbook: String,
    pub name: String,
    pub failures: Vec<String>,
    /// What may be a mistake in the case without failing it: mocks of steps that never ran.
    pub notes: Vec<String>,
    pub took: Duration,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs every test case of `rb` (with `extra` cases from a test file), each as a new
/// execution in `store` (an in-memory one keeps nothing), with the gates of `config`.
pub fn run_tests<'a>(
    store: Db,
    config: &'a EngineConfig,
    rb: &'a Runbook,
    extra: &'a [TestCase],
    base_dir: PathBuf,
) -> Boxed<'a, Vec<CaseResult>> {
    boxed(async move {
        let mut out = Vec::new();
        for case in rb.tests.iter().chain(extra) {
            let started = Instant::now();
            let (failures, notes) = match run_case(store.clone(), config, rb, case, base_dir.clone()).await {
                Ok(f) => f,
                Err(e) => (vec![e.to_string()], Vec::new()),
            };
            let took = started.elapsed();
            out.push(CaseResult { runbook: rb.name.clone(), name: case.name.clone(), failures, notes, took });
        }
        out
    })
}

async fn run_case(
    store: Db,
    config: &EngineConfig,
    rb: &Runbook,
    case: &TestCase,
    base_dir: PathBuf,
) -> crate::Result<(Vec<String>, Vec<String>)> {
    let inputs: BTreeMap<String, Input> =
        case.params.iter().map(|(k, v)| (k.clone(), Input::Value(v.clone()))).collect();
    let params = match opsbook_core::params::check_values(&rb.params, &inputs) {
        Ok(p) => p,
        Err(errors) => {
            return Ok((
                errors.iter().map(|e| format!("parameter `{}`: {}", e.param, e.message)).collect(),
                Vec::new(),
            ));
        }
    };
    let config = EngineConfig { mocks: Some(Arc::new(case.mocks.clone())), ..config.clone() };
    let engine = Engine::new(store, config);
    let (handle, cancel) = cancel_pair();
    let hooks = Hooks { observer: &Quiet, prompt: None, cancel, cancel_handle: handle };
    let req = StartRequest {
        runbook: rb.clone(),
        source_path: None,
        base_dir,
        params,
        actor: "opsbook-test".into(),
        allow_draft: true,
    };
    let outcome = engine.start(req, &hooks).await?;
    let id = outcome.execution_id;
    let exec = engine.store.execution(&id).await?;
    let mut steps = engine.store.steps(&id).await?;
    // `ran` is about the runbook's own steps; the rest reads branches as steps too.
    let top = steps.len();
    steps.extend(branch_records(rb, &steps));
    let attempts = engine.store.attempts(&id).await?;
    let e = &case.expect;
    let mut failures = Vec::new();
    if let Some(want) = e.status.as_ref().map(|s| s.value.as_str()).filter(|w| *w != exec.status.as_str()) {
        let why = exec.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
        failures.push(format!("status: expected {want}, got {}{why}", exec.status));
    }
    let mut check = |what: String, want: &str, got: &str| {
        if want != got {
            failures.push(format!("{what}: expected {want}, got {got}"));
        }
    };
    let list = |v: &[String]| format!("[{}]", v.join(", "));
    let values = opsbook_core::testcase::values;
    if let Some(want) = &e.ran {
        let ran: Vec<String> = steps[..top]
            .iter()
            .filter(|s| !matches!(s.status, StepStatus::Pending | StepStatus::Skipped))
            .map(|s| s.step_id.clone())
            .collect();
        check("ran".into(), &list(&values(want)), &list(&ran));
    }
    let step = |id: &str| steps.iter().find(|s| s.step_id == id);
    for id in values(&e.skipped) {
        let got = step(&id).map(|s| s.status.as_str()).unwrap_or("missing");
        check(format!("step `{id}`"), "skipped", got);
    }
    for (id, want) in &e.steps {
        let got = step(id).map(|s| s.status.as_str()).unwrap_or("missing");
        check(format!("step `{id}`"), &want.value, got);
    }
    for (id, want) in &e.attempts {
        let got = step(id).map(|s| s.attempts.to_string()).unwrap_or_default();
        check(format!("attempts of `{id}`"), &want.to_string(), &got);
    }
    for (id, outputs) in &e.outputs {
        for (k, want) in outputs {
            let got = step(id)
                .and_then(|s| s.outputs.get(k))
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
            check(
                format!("output `{k}` of `{id}`"),
                &format!("{want:?}"),
                &got.map_or("nothing".into(), |g| format!("{g:?}")),
            );
        }
    }
    if let Some(want) = &e.rollback_order {
        let mut order: Vec<String> = Vec::new();
        for a in attempts.iter().filter(|a| a.phase == Phase::Rollback) {
            if !order.contains(&a.step_id) {
                order.push(a.step_id.clone());
            }
        }
        check("rollback order".into(), &list(&values(want)), &list(&order));
    }
    if let Some(want) = &e.rollback_status {
        check("rollback status".into(), &want.value, exec.rollback_status.map_or("none", |s| s.as_str()));
    }
    for (id, want) in &e.rendered {
        let got = step(id).and_then(|s| s.rendered.clone());
        check(format!("rendered `{id}`"), &format!("{want:?}"), &got.map_or("nothing".into(), |g| format!("{g:?}")));
    }
    if let Some(want) = &e.error_contains {
        let got = exec.error.clone().unwrap_or_default();
        if !got.contains(want.as_str()) {
            failures.push(format!("error: expected it to contain {want:?}, got {got:?}"));
        }
    }
    let notes = case
        .mocks
        .iter()
        .filter_map(|(id, mock)| {
            let s = steps.iter().find(|s| &s.step_id == id)?;
            let why = match s.status {
                StepStatus::Pending => "it never ran",
                StepStatus::Skipped => "it was skipped",
                // Attempts the step never made: the retries, or the mock, are not as meant.
                _ if mock.attempts.len() > usize::try_from(s.attempts).unwrap_or(0) => {
                    return Some(format!(
                        "the mock of step `{id}` gives {} attempts; the step made {}",
                        mock.attempts.len(),
                        s.attempts
                    ));
                }
                _ => return None,
            };
            Some(format!("the mock of step `{id}` was not used ({why})"))
        })
        .collect();
    Ok((failures, notes))
}

/// A parallel step's branches as step records of their own (for a case's expectations):
/// from the group's records, or, for a group that never ran its branches (skipped by
/// `when`, or failed before), with the group's status, as templates see them.
fn branch_records(rb: &opsbook_core::Runbook, steps: &[opsbook_store::StepRecord]) -> Vec<opsbook_store::StepRecord> {
    let mut out = Vec::new();
    for (group, step) in steps.iter().zip(&rb.steps) {
        let opsbook_core::StepKind::Parallel(spec) = &step.kind else { continue };
        for branch in &spec.branches {
            let mut rec =
                opsbook_store::StepRecord::pending(&group.execution_id, group.idx, &branch.id, &branch.id, "run");
            match group.targets.iter().find(|b| b.name == branch.id) {
                Some(b) => {
                    let prefix = format!("{}.", b.name);
                    rec.status = b.status;
                    rec.attempts = b.attempts;
                    rec.exit_code = b.exit_code;
                    rec.error = b.error.clone();
                    rec.rollback_status = b.rollback_status;
                    rec.outputs = (group.outputs.iter())
                        .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v.clone())))
                        .collect();
                }
                None if group.status == StepStatus::Skipped || group.status.is_failure() => rec.status = group.status,
                None => {}
            }
            out.push(rec);
        }
    }
    out
}
