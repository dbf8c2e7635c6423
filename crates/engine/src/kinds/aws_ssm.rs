//! `aws_ssm_command` (Run Command on instances) and `aws_ssm_automation`: each starts
//! the work in AWS, then polls it with backoff until it ends; a timeout or a cancel stops
//! it in AWS too (CancelCommand, StopAutomationExecution).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use opsbook_aws::Target;
use opsbook_core::step::aws::{SsmAutomationSpec, SsmCommandSpec, ssm_parameters};
use opsbook_core::template::{self, Context};
use opsbook_core::{Dur, StepStatus};
use opsbook_store::Stream;

use super::{Action, AttemptResult};
use crate::Result;
use crate::runner::Run;

/// The first pause between polls; each pause is half again as long, up to `MAX_POLL`.
const FIRST_POLL: Duration = Duration::from_millis(500);
const MAX_POLL: Duration = Duration::from_secs(10);
/// A poll that fails this many times in a row (after the call's own retries) fails the step.
const POLL_FAILURES: u32 = 5;
/// How long stopping the work in AWS may take once the step gave up on it.
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// Renders each SSM parameter value (or tag value) as a template.
fn render_lists(
    values: &BTreeMap<String, serde_json::Value>,
    ctx: &Context,
    field: &str,
) -> std::result::Result<BTreeMap<String, Vec<String>>, String> {
    let lists = ssm_parameters(values).map_err(|e| format!("{field}.{e}"))?;
    lists
        .into_iter()
        .map(|(k, vs)| {
            let rendered = vs
                .iter()
                .map(|v| template::render_plain(v, ctx).map_err(|e| format!("{field}.{k}: {e}")))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok((k, rendered))
        })
        .collect()
}

/// A command as it will be sent: every template rendered.
pub(crate) struct PreparedCommand {
    pub document: String,
    pub instance_ids: Vec<String>,
    pub tags: BTreeMap<String, Vec<String>>,
    pub parameters: BTreeMap<String, Vec<String>>,
}

pub(crate) fn prepare_command(
    spec: &SsmCommandSpec,
    ctx: &Context,
    field: &str,
) -> std::result::Result<PreparedCommand, String> {
    let document = template::render_plain(&spec.document.value, ctx).map_err(|e| format!("{field}.document: {e}"))?;
    let instance_ids = spec
        .targets
        .instance_ids
        .iter()
        .map(|i| template::render_plain(i, ctx).map_err(|e| format!("{field}.targets.instance_ids: {e}")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let tags = render_lists(&spec.targets.tags, ctx, &format!("{field}.targets.tags"))?;
    let parameters = render_lists(&spec.parameters, ctx, &format!("{field}.parameters"))?;
    Ok(PreparedCommand { document, instance_ids, tags, parameters })
}

impl PreparedCommand {
    /// `i-1, i-2` or `tag:role=web`, for messages.
    pub fn targets(&self) -> String {
        if self.instance_ids.is_empty() {
            self.tags.iter().map(|(k, v)| format!("tag:{k}={}", v.join("|"))).collect::<Vec<_>>().join(", ")
        } else {
            self.instance_ids.join(", ")
        }
    }
}

/// What the step shows as about to run (masked by the caller).
pub(crate) fn display_command(spec: &SsmCommandSpec, ctx: &Context) -> Option<String> {
    let p = prepare_command(spec, ctx, "aws_ssm_command").ok()?;
    Some(format!("aws_ssm_command {} on {} {}", p.document, p.targets(), serde_json::json!(p.parameters)))
}

pub(crate) fn display_automation(spec: &SsmAutomationSpec, ctx: &Context) -> Option<String> {
    let doc = template::render_plain(&spec.document.value, ctx).ok()?;
    let params = render_lists(&spec.parameters, ctx, "aws_ssm_automation.parameters").ok()?;
    Some(format!("aws_ssm_automation {doc} {}", serde_json::json!(params)))
}

fn cancelled(what: String) -> AttemptResult {
    AttemptResult::failed(StepStatus::Cancelled, what)
}

/// Runs `f` until it ends, the deadline passes or the action is cancelled.
async fn bounded<T>(
    run: &Run<'_, '_>,
    act: &Action<'_>,
    deadline: Instant,
    f: impl std::future::Future<Output = T>,
) -> Bounded<T> {
    let cancel = run.hooks.cancel.clone();
    tokio::select! {
        r = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), f) => match r {
            Ok(v) => Bounded::Done(v),
            Err(_) => Bounded::TimedOut,
        },
        _ = cancel.reached(act.cancel_level) => Bounded::Cancelled,
    }
}

enum Bounded<T> {
    Done(T),
    TimedOut,
    Cancelled,
}

/// A failure after the work may have started in AWS: retrying could run it twice.
fn unknown_outcome(status: StepStatus, error: String) -> AttemptResult {
    AttemptResult { retryable: false, ..AttemptResult::failed(status, error) }
}

/// Polls work started in AWS (a command, an automation) with backoff until the caller
/// sees it end: each `next` pauses, then reads its state once. A read that fails is tried
/// again at the next pause, up to `POLL_FAILURES` in a row.
struct Poller {
    /// `command ID` or `automation ID`, for messages.
    what: String,
    deadline: Instant,
    delay: Duration,
    failures: u32,
}

/// What `Poller::next` gave: the work's state, or why polling stops (the work must then
/// be stopped in AWS).
enum Polled<T> {
    State(T),
    Stop(StepStatus, String),
}

impl Poller {
    fn new(what: String, deadline: Instant) -> Poller {
        Poller { what, deadline, delay: FIRST_POLL, failures: 0 }
    }

    async fn next<T, F, Fut>(&mut self, run: &mut Run<'_, '_>, act: &Action<'_>, read: F) -> Result<Polled<T>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, opsbook_aws::Error>>,
    {
        let what = &self.what;
        loop {
            let pause = Instant::now() + self.delay;
            self.delay = (self.delay * 3 / 2).min(MAX_POLL);
            let deadline = self.deadline;
            let polled = bounded(run, act, deadline, async {
                tokio::time::sleep_until(pause.min(deadline).into()).await;
                if Instant::now() >= deadline { None } else { Some(read().await) }
            })
            .await;
            match polled {
                Bounded::Cancelled => return Ok(Polled::Stop(StepStatus::Cancelled, format!("cancelled {what}"))),
                Bounded::TimedOut | Bounded::Done(None) => {
                    let why = format!("{what} did not finish within {}", Dur(act.timeout));
                    return Ok(Polled::Stop(StepStatus::TimedOut, why));
                }
                Bounded::Done(Some(Ok(state))) => {
                    self.failures = 0;
                    return Ok(Polled::State(state));
                }
                Bounded::Done(Some(Err(e))) if e.retryable && self.failures + 1 < POLL_FAILURES => {
                    self.failures += 1;
                    run.system(Some(act.step_id), act.phase, &format!("warning: polling {what}: {e}")).await?;
                }
                Bounded::Done(Some(Err(e))) => {
                    return Ok(Polled::Stop(StepStatus::Failed, format!("polling {what}: {e}")));
                }
            }
        }
    }

    /// The attempt's result once polling stopped and `stop_call` was sent. Not retried
    /// (unless cancelled): the work may still have run in AWS.
    fn stopped(&self, status: StepStatus, why: String, stop_call: &str) -> AttemptResult {
        if status == StepStatus::Cancelled {
            cancelled(format!("cancelled; {stop_call} sent for {}", self.what))
        } else {
            unknown_outcome(status, format!("{why}; {stop_call} sent"))
        }
    }
}

pub(crate) async fn command(run: &mut Run<'_, '_>, act: &Action<'_>, spec: &SsmCommandSpec) -> Result<AttemptResult> {
    let prepared = match prepare_command(spec, &run.context(false), act.field("aws_ssm_command").as_str()) {
        Ok(p) => p,
        Err(e) => return Ok(AttemptResult::fatal(e)),
    };
    let target = run.aws_target(spec.target());
    let (max_concurrency, max_errors) = spec.rates();
    let comment = spec.comment.clone().unwrap_or_else(|| format!("opsbook {} step {}", run.exec.id, act.step_id));
    let req = opsbook_aws::ssm::CommandRequest {
        document: &prepared.document,
        document_version: spec.document_version.as_deref(),
        instance_ids: &prepared.instance_ids,
        tags: &prepared.tags,
        parameters: &prepared.parameters,
        max_concurrency: max_concurrency.as_deref(),
        max_errors: max_errors.as_deref(),
        comment: Some(&comment),
    };
    let deadline = Instant::now() + act.timeout;
    let id = match bounded(run, act, deadline, opsbook_aws::ssm::send_command(&target, &req)).await {
        Bounded::Cancelled => return Ok(cancelled("cancelled before SSM answered SendCommand".into())),
        Bounded::TimedOut => {
            return Ok(unknown_outcome(
                StepStatus::TimedOut,
                format!("SendCommand did not answer within {}; the command may have started", Dur(act.timeout)),
            ));
        }
        Bounded::Done(Err(e)) => return Ok(AttemptResult::aws(e)),
        Bounded::Done(Ok(id)) => id,
    };
    let msg = format!("SendCommand `{}` to {}: command {id}", prepared.document, prepared.targets());
    run.system(Some(act.step_id), act.phase, &msg).await?;

    let mut reported = BTreeSet::new();
    let mut poller = Poller::new(format!("command {id}"), deadline);
    let state = loop {
        let state = match poller.next(run, act, || opsbook_aws::ssm::command_state(&target, &id)).await? {
            Polled::State(s) => s,
            Polled::Stop(status, why) => {
                stop_command(run, act, &target, &id).await?;
                return Ok(poller.stopped(status, why, "CancelCommand"));
            }
        };
        for inv in &state.invocations {
            if !inv.terminal || !reported.insert(inv.instance_id.clone()) {
                continue;
            }
            let code = inv.exit_code.map(|c| format!(", exit {c}")).unwrap_or_default();
            run.system(Some(act.step_id), act.phase, &format!("{}: {}{code}", inv.instance_id, inv.status)).await?;
            act.log(run, Stream::Stdout, &format!("[{}] ", inv.instance_id), &inv.output, usize::MAX).await?;
        }
        if state.terminal && state.invocations.iter().all(|i| i.terminal) {
            break state;
        }
    };
    let instances: serde_json::Map<String, serde_json::Value> =
        state.invocations.iter().map(|i| (i.instance_id.clone(), i.status.clone().into())).collect();
    let mut outputs = BTreeMap::new();
    outputs.insert("command_id".to_string(), id.clone());
    outputs.insert("status".to_string(), state.status.clone());
    outputs.insert("instances".to_string(), serde_json::Value::Object(instances.clone()).to_string());
    let failed: Vec<String> = state
        .invocations
        .iter()
        .filter(|i| !i.success)
        .map(|i| {
            let code = i.exit_code.map(|c| format!(", exit {c}")).unwrap_or_default();
            format!("{} {}{code}", i.instance_id, i.status)
        })
        .collect();
    let document = serde_json::json!({ "command_id": id, "status": state.status, "instances": instances });
    if state.invocations.is_empty() {
        return Ok(AttemptResult::failed(
            StepStatus::Failed,
            format!("command {id} ran on no instance: nothing matched {}", prepared.targets()),
        ));
    }
    if failed.is_empty() && state.status == "Success" {
        return Ok(AttemptResult { document: Some(document), ..AttemptResult::ok(outputs) });
    }
    let detail = state.details.map(|d| format!(" ({d})")).unwrap_or_default();
    let error = if failed.is_empty() {
        format!("command {id} ended {}{detail}", state.status)
    } else {
        format!(
            "command {id} ended {}{detail}: {} of {} instances did not succeed: {}",
            state.status,
            failed.len(),
            state.invocations.len(),
            failed.join("; ")
        )
    };
    Ok(AttemptResult { outputs, document: Some(document), ..AttemptResult::failed(StepStatus::Failed, error) })
}

async fn stop_command(run: &mut Run<'_, '_>, act: &Action<'_>, target: &Target, id: &str) -> Result<()> {
    let msg = match tokio::time::timeout(STOP_WITHIN, opsbook_aws::ssm::cancel_command(target, id)).await {
        Ok(Ok(())) => format!("CancelCommand sent for command {id}"),
        Ok(Err(e)) => format!("warning: CancelCommand for command {id} failed: {e}"),
        Err(_) => format!("warning: CancelCommand for command {id} did not answer"),
    };
    run.system(Some(act.step_id), act.phase, &msg).await
}

/// An idempotency token in the UUID form SSM asks for.
fn client_token(parts: &[&str]) -> String {
    let h = opsbook_core::sha256_hex(parts.join("\u{0}").as_bytes());
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

pub(crate) async fn automation(
    run: &mut Run<'_, '_>,
    act: &Action<'_>,
    spec: &SsmAutomationSpec,
) -> Result<AttemptResult> {
    let field = act.field("aws_ssm_automation");
    let ctx = run.context(false);
    let document = match template::render_plain(&spec.document.value, &ctx) {
        Ok(d) => d,
        Err(e) => return Ok(AttemptResult::fatal(format!("{field}.document: {e}"))),
    };
    let parameters = match render_lists(&spec.parameters, &ctx, &format!("{field}.parameters")) {
        Ok(p) => p,
        Err(e) => return Ok(AttemptResult::fatal(e)),
    };
    let target = run.aws_target(spec.target());
    let attempt = act.attempt.to_string();
    // One token per start: the call's own retries reuse it; a later attempt
    // (or a rollback run again) starts anew.
    let nonce = opsbook_store::id::new_id();
    let token = client_token(&[&run.exec.id, act.step_id, act.phase.as_str(), &attempt, &nonce]);
    let deadline = Instant::now() + act.timeout;
    let start =
        opsbook_aws::ssm::start_automation(&target, &document, spec.document_version.as_deref(), &parameters, &token);
    let id = match bounded(run, act, deadline, start).await {
        Bounded::Cancelled => return Ok(cancelled("cancelled before SSM answered StartAutomationExecution".into())),
        Bounded::TimedOut => {
            return Ok(unknown_outcome(
                StepStatus::TimedOut,
                format!(
                    "StartAutomationExecution did not answer within {}; the automation may have started",
                    Dur(act.timeout)
                ),
            ));
        }
        Bounded::Done(Err(e)) => return Ok(AttemptResult::aws(e)),
        Bounded::Done(Ok(id)) => id,
    };
    run.system(Some(act.step_id), act.phase, &format!("StartAutomationExecution `{document}`: execution {id}")).await?;
    let mut last_seen = String::new();
    let mut poller = Poller::new(format!("automation {id}"), deadline);
    let state = loop {
        let state = match poller.next(run, act, || opsbook_aws::ssm::automation_state(&target, &id)).await? {
            Polled::State(s) => s,
            Polled::Stop(status, why) => {
                stop_automation(run, act, &target, &id).await?;
                return Ok(poller.stopped(status, why, "StopAutomationExecution"));
            }
        };
        let seen = match &state.current_step {
            Some(step) => format!("automation {id}: {} (step {step})", state.status),
            None => format!("automation {id}: {}", state.status),
        };
        if seen != last_seen {
            run.system(Some(act.step_id), act.phase, &seen).await?;
            last_seen = seen;
        }
        if state.terminal {
            break state;
        }
    };
    let mut outputs: BTreeMap<String, String> = state
        .outputs
        .iter()
        .map(|(k, v)| (k.clone(), if v.len() == 1 { v[0].clone() } else { serde_json::json!(v).to_string() }))
        .collect();
    outputs.insert("automation_execution_id".to_string(), id.clone());
    outputs.insert("status".to_string(), state.status.clone());
    let document =
        serde_json::json!({ "automation_execution_id": id, "status": state.status, "outputs": state.outputs });
    if state.success {
        return Ok(AttemptResult { document: Some(document), ..AttemptResult::ok(outputs) });
    }
    let why = state.failure.map(|f| format!(": {f}")).unwrap_or_default();
    let error = format!("automation {id} ended {}{why}", state.status);
    Ok(AttemptResult { outputs, document: Some(document), ..AttemptResult::failed(StepStatus::Failed, error) })
}

async fn stop_automation(run: &mut Run<'_, '_>, act: &Action<'_>, target: &Target, id: &str) -> Result<()> {
    let msg = match tokio::time::timeout(STOP_WITHIN, opsbook_aws::ssm::stop_automation(target, id)).await {
        Ok(Ok(())) => format!("StopAutomationExecution sent for {id}"),
        Ok(Err(e)) => format!("warning: StopAutomationExecution for {id} failed: {e}"),
        Err(_) => format!("warning: StopAutomationExecution for {id} did not answer"),
    };
    run.system(Some(act.step_id), act.phase, &msg).await
}
