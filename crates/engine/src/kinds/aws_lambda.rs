//! `aws_lambda`: one synchronous Invoke; the function's JSON answer is the step's result.

use std::collections::BTreeMap;
use std::time::Instant;

use opsbook_core::step::aws::LambdaSpec;
use opsbook_core::{Dur, StepStatus, template};
use opsbook_store::Stream;

use super::{Action, AttemptResult};
use crate::Result;
use crate::runner::Run;

/// Longest output value kept from an answer (the whole answer is the step's document).
const MAX_OUTPUT: usize = 64 * 1024;
/// Outputs taken from an answer (its first keys).
const MAX_OUTPUTS: usize = 100;
/// Answer lines copied into the log.
const LOGGED_LINES: usize = 20;

pub(crate) async fn attempt(run: &mut Run<'_, '_>, act: &Action<'_>, spec: &LambdaSpec) -> Result<AttemptResult> {
    let field = act.field("aws_lambda");
    let ctx = run.context(false);
    let function = match template::render_plain(&spec.function.value, &ctx) {
        Ok(f) => f,
        Err(e) => return Ok(AttemptResult::fatal(format!("{field}.function: {e}"))),
    };
    let payload = match spec.payload.as_ref().map(|p| template::render_json(p, &ctx)).transpose() {
        Ok(p) => p.unwrap_or_else(|| serde_json::json!({})),
        Err(e) => return Ok(AttemptResult::fatal(format!("{field}.payload: {e}"))),
    };
    let body = serde_json::to_vec(&payload).expect("a JSON value serializes");
    let target = run.aws_target(spec.target());
    let timeout = act.timeout;
    let started = Instant::now();
    let cancel = run.hooks.cancel.clone();
    let call = opsbook_aws::lambda::invoke(&target, &function, spec.qualifier.as_deref(), body);
    let invoked = tokio::select! {
        r = tokio::time::timeout(timeout, call) => r,
        _ = cancel.reached(act.cancel_level) => {
            return Ok(AttemptResult::failed(StepStatus::Cancelled, format!("cancelled while `{function}` ran (Lambda runs a started invocation to its end)")));
        }
    };
    let out = match invoked {
        Err(_) => {
            // It may still be running (Lambda has no way to stop an invocation): a retry
            // could run it twice.
            return Ok(AttemptResult {
                retryable: false,
                ..AttemptResult::failed(
                    StepStatus::TimedOut,
                    format!("Lambda function `{function}` did not answer within {}", Dur(timeout)),
                )
            });
        }
        Ok(Err(e)) => {
            return Ok(AttemptResult::aws(e));
        }
        Ok(Ok(out)) => out,
    };
    let elapsed = started.elapsed().as_millis();
    let version = out.version.as_deref().map(|v| format!(", version {v}")).unwrap_or_default();
    let verdict = out.function_error.as_deref().map_or_else(|| "answered".to_string(), |e| format!("failed ({e})"));
    run.system(Some(act.step_id), act.phase, &format!("Lambda `{function}` {verdict} in {elapsed}ms{version}")).await?;
    act.log(run, Stream::Stderr, "", &out.log_tail, usize::MAX).await?;
    let text = String::from_utf8_lossy(&out.payload).into_owned();
    act.log(run, Stream::Stdout, "", &text, LOGGED_LINES).await?;
    let document: serde_json::Value =
        serde_json::from_slice(&out.payload).unwrap_or_else(|_| serde_json::Value::String(text.clone()));
    if let Some(kind) = out.function_error {
        let field = |k: &str| document.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let (error_type, message) = (field("errorType"), field("errorMessage"));
        let what = match (error_type.is_empty(), message.is_empty()) {
            (true, true) => text.chars().take(500).collect(),
            (true, false) => message,
            (false, true) => error_type,
            (false, false) => format!("{error_type}: {message}"),
        };
        return Ok(AttemptResult::failed(
            StepStatus::Failed,
            format!("Lambda function `{function}` failed ({kind}): {what}"),
        ));
    }
    let mut result = AttemptResult::ok(outputs(&document));
    result.document = Some(document);
    Ok(result)
}

/// The step's outputs from an answer: each top-level key of an object (strings as they
/// are, other values as JSON), or `result` for any other answer.
pub(crate) fn outputs(doc: &serde_json::Value) -> BTreeMap<String, String> {
    let text = |v: &serde_json::Value| -> String {
        let s = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        s.chars().take(MAX_OUTPUT).collect()
    };
    match doc {
        serde_json::Value::Object(map) => map.iter().take(MAX_OUTPUTS).map(|(k, v)| (k.clone(), text(v))).collect(),
        other => BTreeMap::from([("result".to_string(), text(other))]),
    }
}
