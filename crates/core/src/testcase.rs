//! Runbook tests: cases beside the runbook (`tests:` in the document, or a
//! `NAME.test.yaml` file next to it), each with parameters, per-step mocks and what to
//! expect. `opsbook test` runs them through the engine with nothing real behind it: no
//! process, no network.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::step::{Rollback, StepKind};
use crate::{ExecStatus, Runbook, StepStatus};

/// One test case as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTest {
    /// What the case shows, e.g. "a failed smoke test rolls back".
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// The parameters the run gets (checked as `run -p` would).
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// What each step does instead of running, by step id. Steps not named succeed at
    /// once with no output; approvals and manual steps not named wait.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, StepMock>")]
    pub mocks: BTreeMap<String, Spanned<StepMock>>,
    #[serde(default)]
    pub expect: Expect,
}

/// The result of one attempt of a `run`, `http` or AWS step (or of a rollback).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MockResult {
    /// A `run` step's exit code (default 0).
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// What it prints; checked by `validate` as real output would be.
    #[serde(default)]
    pub stdout: Option<String>,
    #[serde(default)]
    pub stderr: Option<String>,
    /// Outputs, as if written to `$OPSBOOK_OUTPUT`.
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// An `http` step's response.
    #[serde(default)]
    pub http: Option<HttpMock>,
    /// An AWS step's answer: its JSON response, or the error of the call.
    #[serde(default)]
    pub aws: Option<AwsMock>,
    /// The attempt ran out of time.
    #[serde(default)]
    pub timed_out: bool,
}

/// What a step does in a test.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepMock {
    /// The first attempt (and every one, without `attempts`): see [`MockResult`].
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub stdout: Option<String>,
    #[serde(default)]
    pub stderr: Option<String>,
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    #[serde(default)]
    pub http: Option<HttpMock>,
    #[serde(default)]
    pub aws: Option<AwsMock>,
    #[serde(default)]
    pub timed_out: bool,
    /// Attempt by attempt (with `retries`); the last one repeats.
    #[serde(default)]
    pub attempts: Vec<MockResult>,
    /// Its rollback's result (a script or AWS rollback).
    #[serde(default)]
    pub rollback: Option<MockResult>,
    /// A gate step's verdict.
    #[serde(default)]
    pub gate: Option<GateVerdict>,
    /// Why a blocked gate blocks (shown as the gate's reasons).
    #[serde(default)]
    pub reason: Option<String>,
    /// An approval step's decision (one person's, enough to settle it).
    #[serde(default)]
    pub approval: Option<ApprovalAnswer>,
    /// A manual step's answer.
    #[serde(default)]
    pub manual: Option<ManualAnswer>,
    /// A manual rollback's answer.
    #[serde(default)]
    pub rollback_manual: Option<ManualAnswer>,
    /// What a `validate: - lambda: F` check says: it fails with this message (by
    /// default it passes; the function is never called in a test).
    #[serde(default)]
    pub validator_error: Option<String>,
    /// Who decided or confirmed (default `tester`).
    #[serde(default)]
    pub by: Option<String>,
    /// The approval's comment, or the manual step's note.
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpMock {
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default)]
    pub body: String,
}

fn ok() -> u16 {
    200
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsMock {
    /// The JSON answer (a Lambda function's payload; an SSM command's or automation's outputs).
    #[serde(default)]
    pub response: Option<serde_json::Value>,
    /// The call failed with this message (e.g. `AccessDeniedException: …`).
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GateVerdict {
    Clear,
    Blocked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalAnswer {
    Approved,
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ManualAnswer {
    Done,
    NotDone,
}

/// What the run must come to. Everything named is checked; nothing named is not.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The execution's status: succeeded, failed, waiting, cancelled.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub status: Option<Spanned<String>>,
    /// Exactly the steps that ran (attempted, decided or confirmed), in order.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub ran: Option<Vec<Spanned<String>>>,
    /// Steps skipped (their `when` was false).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub skipped: Vec<Spanned<String>>,
    /// Steps' statuses, by step id.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub steps: BTreeMap<String, Spanned<String>>,
    /// Attempts made, by step id.
    #[serde(default)]
    pub attempts: BTreeMap<String, u32>,
    /// Outputs, by step id then name.
    #[serde(default)]
    pub outputs: BTreeMap<String, BTreeMap<String, String>>,
    /// Exactly the rollbacks that ran, in order (newest step first).
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub rollback_order: Option<Vec<Spanned<String>>>,
    /// The rollbacks' overall status (`none`: no rollback ran).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub rollback_status: Option<Spanned<String>>,
    /// Each step's rendered command as recorded (secrets masked), exactly.
    #[serde(default)]
    pub rendered: BTreeMap<String, String>,
    /// A piece of the execution's error.
    #[serde(default)]
    pub error_contains: Option<String>,
}

/// The values of a list read with their places (`ran`, `skipped`, `rollback_order`).
pub fn values(v: &[Spanned<String>]) -> Vec<String> {
    v.iter().map(|s| s.value.clone()).collect()
}

impl Expect {
    /// Nothing is expected.
    pub fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.ran.is_none()
            && self.skipped.is_empty()
            && self.steps.is_empty()
            && self.attempts.is_empty()
            && self.outputs.is_empty()
            && self.rollback_order.is_none()
            && self.rollback_status.is_none()
            && self.rendered.is_empty()
            && self.error_contains.is_none()
    }
}

/// A file of test cases beside a runbook (`NAME.test.yaml`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTestFile {
    pub tests: Vec<RawTest>,
}

/// A checked test case.
#[derive(Debug, Clone)]
pub struct TestCase {
    pub name: String,
    pub params: BTreeMap<String, serde_json::Value>,
    pub mocks: BTreeMap<String, StepMock>,
    pub expect: Expect,
    /// Where it is written: the line of its name.
    pub line: u32,
}

impl StepMock {
    /// The result of attempt `n` (from 1): `attempts[n - 1]`, the last one past the end,
    /// or the fields of the mock itself.
    pub fn attempt(&self, n: u32) -> MockResult {
        if let Some(last) = self.attempts.last() {
            let i = usize::try_from(n.saturating_sub(1)).unwrap_or(usize::MAX);
            return self.attempts.get(i).unwrap_or(last).clone();
        }
        MockResult {
            exit_code: self.exit_code,
            stdout: self.stdout.clone(),
            stderr: self.stderr.clone(),
            outputs: self.outputs.clone(),
            http: self.http.clone(),
            aws: self.aws.clone(),
            timed_out: self.timed_out,
        }
    }

    pub fn who(&self) -> String {
        self.by.clone().unwrap_or_else(|| "tester".into())
    }
}

/// Checks test cases against their runbook: steps named exist, mocks fit the step's
/// kind, statuses are statuses, names are unique.
pub fn check(rb: &Runbook, raw: Vec<RawTest>) -> Result<Vec<TestCase>, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let ids: Vec<&str> = rb.all_steps().map(|s| s.id.as_str()).collect();
    let step_ref = |diags: &mut Vec<Diagnostic>, at: &Location, id: &str, field: &str| -> bool {
        if ids.contains(&id) {
            return true;
        }
        let hint = did_you_mean(id, &ids).map(|m| format!(" (did you mean `{m}`?)")).unwrap_or_default();
        diags.push(Diagnostic::at(at, format!("{field}: no step `{id}` in runbook `{}`{hint}", rb.name)));
        false
    };
    let mut names = Vec::new();
    let mut out = Vec::new();
    for t in raw {
        let at = t.name.referenced;
        let name = t.name.value.trim().to_string();
        if name.is_empty() {
            diags.push(Diagnostic::at(&at, "tests: a test needs a name"));
        } else if names.contains(&name) {
            diags.push(Diagnostic::at(&at, format!("tests: duplicate test `{name}`")));
        }
        names.push(name.clone());
        let mut mocks = BTreeMap::new();
        for (id, m) in t.mocks {
            let place = m.referenced;
            if !step_ref(&mut diags, &place, &id, "mocks") {
                continue;
            }
            let step = rb.all_steps().find(|s| s.id == id).expect("checked just above");
            for problem in fits(&m.value, &step.kind, step.rollback.as_ref()) {
                diags.push(Diagnostic::at(&place, format!("mocks.{id}: {problem}")));
            }
            mocks.insert(id, m.value);
        }
        let e = &t.expect;
        if e.is_empty() {
            diags.push(Diagnostic::at(
                &at,
                format!(
                    "test `{name}`: expect: say what the run must come to (status, ran, steps, outputs, \
                     rollback_order, rendered…); a test that checks nothing passes whatever happens"
                ),
            ));
        }
        // Each at the id in a list, at the value of a step's status, else at the test.
        let mut named: Vec<(&str, Location, &str)> = Vec::new();
        let lists = [
            (Some(&e.skipped), "expect.skipped"),
            (e.ran.as_ref(), "expect.ran"),
            (e.rollback_order.as_ref(), "expect.rollback_order"),
        ];
        for (list, field) in lists {
            named.extend(list.into_iter().flatten().map(|s| (s.value.as_str(), s.referenced, field)));
        }
        named.extend(e.steps.iter().map(|(id, s)| (id.as_str(), s.referenced, "expect.steps")));
        named.extend(e.attempts.keys().map(|s| (s.as_str(), at, "expect.attempts")));
        named.extend(e.outputs.keys().map(|s| (s.as_str(), at, "expect.outputs")));
        named.extend(e.rendered.keys().map(|s| (s.as_str(), at, "expect.rendered")));
        for (id, place, field) in named {
            step_ref(&mut diags, &place, id, field);
        }
        // Each placed at the value it is about.
        if let Some(s) = &e.status
            && ExecStatus::parse(&s.value).is_none()
        {
            let v = &s.value;
            diags.push(Diagnostic::at(&s.referenced, format!("expect.status: `{v}` is not an execution status")));
        }
        for (id, s) in e.steps.iter().map(|(k, v)| (k.as_str(), v)).chain(e.rollback_status.iter().map(|s| ("", s))) {
            // `rollback_status: none`: nothing was rolled back.
            if StepStatus::parse(&s.value).is_none() && !(id.is_empty() && s.value == "none") {
                let field = if id.is_empty() { "expect.rollback_status".into() } else { format!("expect.steps.{id}") };
                diags.push(Diagnostic::at(&s.referenced, format!("{field}: `{}` is not a step status", s.value)));
            }
        }
        out.push(TestCase {
            name,
            params: t.params,
            mocks,
            expect: t.expect,
            line: u32::try_from(at.line()).unwrap_or(0),
        });
    }
    if diags.is_empty() { Ok(out) } else { Err(diags) }
}

/// What in a mock does not fit the step it is for.
fn fits(m: &StepMock, kind: &StepKind, rollback: Option<&Rollback>) -> Vec<String> {
    let mut problems = Vec::new();
    let kind_name = kind.name();
    // "a run step", "an approval step".
    let a_kind = format!("{} {kind_name}", if kind_name.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" });
    let result_set = m.exit_code.is_some()
        || m.stdout.is_some()
        || m.stderr.is_some()
        || !m.outputs.is_empty()
        || m.http.is_some()
        || m.aws.is_some()
        || m.timed_out
        || !m.attempts.is_empty();
    let attempted = matches!(
        kind,
        StepKind::Run(_)
            | StepKind::Http(_)
            | StepKind::AwsLambda(_)
            | StepKind::AwsSsmCommand(_)
            | StepKind::AwsSsmAutomation(_)
            | StepKind::Runbook(_)
    );
    if result_set && !attempted {
        problems.push(format!("{a_kind} step has no attempt result to mock (exit_code, stdout, http, aws…)"));
    }
    let mut results: Vec<&MockResult> = m.attempts.iter().collect();
    let first = m.attempt(1);
    if m.attempts.is_empty() {
        results.push(&first);
    }
    for r in results {
        if r.http.is_some() && !matches!(kind, StepKind::Http(_)) {
            problems.push(format!("`http` mocks an http step, not {a_kind} step"));
        }
        if r.aws.is_some() && !kind_name.starts_with("aws_") {
            problems.push(format!("`aws` mocks an AWS step, not {a_kind} step"));
        }
        if r.exit_code.is_some() && !matches!(kind, StepKind::Run(_) | StepKind::Runbook(_)) {
            problems.push(format!("`exit_code` mocks a run step (or a runbook step's child), not {a_kind} step"));
        }
        if let Some(a) = &r.aws
            && a.response.is_some() == a.error.is_some()
        {
            problems.push("`aws` sets one of response and error".into());
        }
    }
    if m.gate.is_some() != matches!(kind, StepKind::Gate(_)) && m.gate.is_some() {
        problems.push(format!("`gate` mocks a gate step, not {a_kind} step"));
    }
    if m.reason.is_some() && m.gate != Some(GateVerdict::Blocked) {
        problems.push("`reason` goes with `gate: blocked`".into());
    }
    if m.approval.is_some() && !matches!(kind, StepKind::Approval(_)) {
        problems.push(format!("`approval` mocks an approval step, not {a_kind} step"));
    }
    if m.manual.is_some() && !matches!(kind, StepKind::Manual(_)) {
        problems.push(format!("`manual` mocks a manual step, not {a_kind} step"));
    }
    let called = matches!(kind, StepKind::Runbook(_));
    match (rollback, &m.rollback, &m.rollback_manual) {
        // A called runbook rolls back as a whole: its rollback is mocked as one.
        (None, Some(_), None) if called => {}
        (None, Some(_), _) | (None, _, Some(_)) => problems.push("the step has no rollback to mock".into()),
        (Some(Rollback::Manual(_)), Some(_), _) => {
            problems.push("its rollback is manual: mock it with `rollback_manual: done|not_done`".into())
        }
        (Some(Rollback::Run(_) | Rollback::Aws { .. }), _, Some(_)) => {
            problems.push("`rollback_manual` mocks a manual rollback; this one runs something: use `rollback`".into())
        }
        _ => {}
    }
    problems
}

/// Reads and checks a test file written beside `rb` (`NAME.test.yaml`).
pub fn parse_file(source: &str, rb: &Runbook) -> Result<Vec<TestCase>, Vec<Diagnostic>> {
    let options = serde_saphyr::options! { with_snippet: false };
    let file: RawTestFile = serde_saphyr::from_str_with_options(source, options)
        .map_err(|e| vec![crate::parse::yaml_diagnostic(&e, source)])?;
    check(rb, file.tests)
}
