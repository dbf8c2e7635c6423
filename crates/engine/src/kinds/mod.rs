//! Executors of the step kinds, one file each (the document side lives in `opsbook_core::step`).

pub(crate) mod approval;
pub(crate) mod aws_lambda;
pub(crate) mod aws_ssm;
pub(crate) mod call;
pub(crate) mod fleet;
pub(crate) mod gate;
pub(crate) mod http;
pub(crate) mod manual;
pub(crate) mod mock;
pub(crate) mod parallel;
pub(crate) mod parts;
pub(crate) mod run;
pub(crate) mod sleep;
pub(crate) mod ssh;
pub(crate) mod ssm_run;
pub(crate) mod targets;
pub(crate) mod validate;

use std::collections::BTreeMap;

use opsbook_core::{Step, StepKind, StepStatus, template};
use opsbook_store::Phase;

use crate::runner::Run;

/// What a step is about to do, as shown and stored (secrets masked).
pub(crate) fn display(run: &Run<'_, '_>, step: &Step) -> Option<String> {
    let mut ctx = match &step.kind {
        StepKind::Run(script) => run.context_for(true, &[&script.template]),
        _ => run.context(true),
    };
    if step.targets.is_some() {
        ctx.target = Some("<target>".into());
    }
    let text = match &step.kind {
        StepKind::Run(script) => template::render_shell(&script.template, &ctx).ok()?,
        StepKind::Http(h) => format!("{} {}", h.method.as_str(), template::render_url(&h.url.value, &ctx).ok()?),
        StepKind::Sleep(s) => format!("sleep {}", s.duration),
        StepKind::Approval(_) => return None,
        StepKind::Manual(m) => return Some(manual::describe(&manual::request(run, &step.id, Phase::Step, m))),
        StepKind::Gate(g) => format!("gate {}", g.name()),
        StepKind::AwsLambda(l) => {
            let payload = l.payload.as_ref().map(|p| template::render_json(p, &ctx)).transpose().ok()?;
            let function = template::render_plain(&l.function.value, &ctx).ok()?;
            format!("aws_lambda {function} {}", payload.unwrap_or_else(|| serde_json::json!({})))
        }
        StepKind::AwsSsmCommand(c) => aws_ssm::display_command(c, &ctx)?,
        StepKind::AwsSsmAutomation(a) => aws_ssm::display_automation(a, &ctx)?,
        StepKind::Runbook(c) => {
            let params: Vec<String> = (c.params.iter())
                .map(|(k, v)| Ok(format!("{k}={}", template::render_plain(v, &ctx)?)))
                .collect::<std::result::Result<_, String>>()
                .ok()?;
            format!("runbook {} {}", c.callee, params.join(" ")).trim_end().to_string()
        }
        StepKind::Parallel(p) => {
            let ids: Vec<&str> = p.branches.iter().map(|b| b.id.as_str()).collect();
            format!("parallel: {} (at most {} at once, fail {})", ids.join(", "), p.max, p.fail.as_str())
        }
    };
    Some(run.masker().mask(&text).into_owned())
}

/// One run of an action (a step's attempt, or a rollback): whose, in which phase, which
/// attempt, and the time it has.
pub(crate) struct Action<'a> {
    pub step_id: &'a str,
    pub phase: Phase,
    pub attempt: u32,
    pub timeout: std::time::Duration,
    /// The cancel level that stops it: 1 for a step, 2 for a rollback (a first cancel
    /// starts the rollbacks; only a second one stops them).
    pub cancel_level: u8,
}

impl<'a> Action<'a> {
    pub fn step(step_id: &'a str, attempt: u32, timeout: std::time::Duration) -> Action<'a> {
        Action { step_id, phase: Phase::Step, attempt, timeout, cancel_level: 1 }
    }

    pub fn rollback(step_id: &'a str, timeout: std::time::Duration) -> Action<'a> {
        Action { step_id, phase: Phase::Rollback, attempt: 1, timeout, cancel_level: 2 }
    }

    /// Writes `text` to the log, line by line, each prefixed and cut to the longest line
    /// a process's output may have; at most `max` lines.
    pub async fn log(
        &self,
        run: &mut Run<'_, '_>,
        stream: opsbook_store::Stream,
        prefix: &str,
        text: &str,
        max: usize,
    ) -> crate::Result<()> {
        for line in text.lines().take(max) {
            let mut line = format!("{prefix}{line}");
            if line.len() > crate::lines::MAX_LINE {
                let mut at = crate::lines::MAX_LINE;
                while !line.is_char_boundary(at) {
                    at -= 1;
                }
                line.truncate(at);
            }
            run.sink.push(run.hooks.observer, Some(self.step_id), self.phase, self.attempt, stream, line.as_bytes());
        }
        run.sink.flush().await?;
        Ok(())
    }
}

impl Action<'_> {
    /// The field of the runbook messages name: `KIND`, or `rollback.KIND` in a rollback.
    pub fn field(&self, kind: &str) -> String {
        if self.phase == Phase::Rollback { format!("rollback.{kind}") } else { kind.to_string() }
    }
}

/// Runs one of the AWS kinds (`None` for any other kind).
pub(crate) async fn aws(
    run: &mut Run<'_, '_>,
    act: &Action<'_>,
    kind: &StepKind,
) -> crate::Result<Option<AttemptResult>> {
    if let Some(mocks) = run.engine.config.mocks.clone()
        && kind.name().starts_with("aws_")
    {
        return Ok(Some(mock::aws(run, act, &mocks).await?));
    }
    Ok(Some(match kind {
        StepKind::AwsLambda(spec) => aws_lambda::attempt(run, act, spec).await?,
        StepKind::AwsSsmCommand(spec) => aws_ssm::command(run, act, spec).await?,
        StepKind::AwsSsmAutomation(spec) => aws_ssm::automation(run, act, spec).await?,
        _ => return Ok(None),
    }))
}

/// The result of one attempt of a step (or of a rollback or prerequisite check).
#[derive(Debug, Clone)]
pub(crate) struct AttemptResult {
    pub status: StepStatus,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub outputs: BTreeMap<String, String>,
    /// False when retrying cannot help (e.g. a template that does not render).
    pub retryable: bool,
    /// The JSON the step returned (an aws_lambda answer, an http body), for `json` checks.
    pub document: Option<serde_json::Value>,
}

impl AttemptResult {
    pub fn ok(outputs: BTreeMap<String, String>) -> AttemptResult {
        AttemptResult {
            status: StepStatus::Succeeded,
            exit_code: None,
            error: None,
            outputs,
            retryable: true,
            document: None,
        }
    }

    pub fn failed(status: StepStatus, error: String) -> AttemptResult {
        AttemptResult {
            status,
            exit_code: None,
            error: Some(error),
            outputs: BTreeMap::new(),
            retryable: true,
            document: None,
        }
    }

    /// A failed AWS call: retried only when trying again can help.
    pub fn aws(e: opsbook_aws::Error) -> AttemptResult {
        AttemptResult { retryable: e.retryable, ..AttemptResult::failed(StepStatus::Failed, e.message) }
    }

    /// A failure that no retry can fix.
    pub fn fatal(error: String) -> AttemptResult {
        AttemptResult { retryable: false, ..AttemptResult::failed(StepStatus::Failed, error) }
    }
}
