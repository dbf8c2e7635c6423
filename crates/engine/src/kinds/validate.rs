//! The checks of a step's result that apply after any kind has run: `json` (a value of
//! the JSON the step returned must equal one written in the runbook) and `lambda` (a
//! function given the step's result decides). `run`'s own checks (exit code, output)
//! are applied while its process runs.

use opsbook_core::{CheckedValidation, Step, StepStatus};
use opsbook_store::Phase;

use super::AttemptResult;
use crate::Result;
use crate::runner::Run;

/// Applies the step's `json` and `lambda` checks to a succeeded attempt; a failed check
/// fails it (and may be retried like any failure).
pub(crate) async fn after(run: &mut Run<'_, '_>, step: &Step, result: &mut AttemptResult) -> Result<()> {
    if result.status != StepStatus::Succeeded {
        return Ok(());
    }
    let mut problems = Vec::new();
    let mut retryable = true;
    for v in &step.validate {
        match v {
            CheckedValidation::Json { path, equals } => {
                let found = result.document.as_ref().and_then(|d| path.find(d));
                match found {
                    Some(got) if got == equals => {}
                    Some(got) => problems.push(format!("{path} is {}, expected {equals}", short(got))),
                    None if result.document.is_none() => problems.push(format!("{path}: the step returned no JSON")),
                    None => problems.push(format!("{path} is missing from the result, expected {equals}")),
                }
            }
            CheckedValidation::Lambda(function) if run.engine.config.mocks.is_some() => {
                // A runbook test calls no function: the case says what it would answer.
                let mocks = run.engine.config.mocks.as_ref().expect("checked");
                if let Some(e) = mocks.get(&step.id).and_then(|m| m.validator_error.clone()) {
                    problems.push(format!("validation function `{function}`: {e}"));
                }
            }
            CheckedValidation::Lambda(function) => match lambda_check(run, step, result, function).await? {
                Verdict::Pass => {}
                Verdict::Problem { message, retry } => {
                    problems.push(message);
                    retryable &= retry;
                }
                Verdict::Cancelled => {
                    let error = format!("cancelled while the validation function `{function}` ran");
                    *result = AttemptResult {
                        exit_code: result.exit_code,
                        ..AttemptResult::failed(StepStatus::Cancelled, error)
                    };
                    return Ok(());
                }
            },
            _ => {}
        }
    }
    if !problems.is_empty() {
        let error = format!("validate: {}", problems.join("; "));
        *result = AttemptResult {
            exit_code: result.exit_code,
            retryable,
            ..AttemptResult::failed(StepStatus::Failed, error)
        };
    }
    Ok(())
}

/// What a validation function decided.
enum Verdict {
    Pass,
    Problem { message: String, retry: bool },
    Cancelled,
}

/// A value for a message, cut to a readable length.
fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 200 { format!("{}…", s.chars().take(200).collect::<String>()) } else { s }
}

/// Invokes the validation function with the step's result (secrets masked): it passes
/// on `true` (or `{"valid": true}`), fails on `false` (or `{"valid": false, "reason": …}`)
/// or when the function fails.
async fn lambda_check(run: &mut Run<'_, '_>, step: &Step, result: &AttemptResult, function: &str) -> Result<Verdict> {
    let masker = run.masker().clone();
    let outputs: serde_json::Map<String, serde_json::Value> =
        result.outputs.iter().map(|(k, v)| (k.clone(), masker.mask(v).into_owned().into())).collect();
    let document = result.document.as_ref().map(|d| {
        let text = masker.mask(&d.to_string()).into_owned();
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    });
    let event = serde_json::json!({
        "execution_id": run.exec.id,
        "runbook": run.rb.name,
        "version": run.rb.version.to_string(),
        "step": step.id,
        "kind": step.kind.name(),
        "status": "succeeded",
        "exit_code": result.exit_code,
        "outputs": outputs,
        "result": document,
    });
    let target = run.aws_target(Default::default());
    let body = serde_json::to_vec(&event).expect("a JSON value serializes");
    let cancel = run.hooks.cancel.clone();
    let call = opsbook_aws::lambda::invoke(&target, function, None, body);
    let problem = |message: String, retry: bool| Ok(Verdict::Problem { message, retry });
    let out = tokio::select! {
        r = tokio::time::timeout(step.timeout.0, call) => r,
        _ = cancel.reached(1) => return Ok(Verdict::Cancelled),
    };
    let out = match out {
        Err(_) => return problem(format!("the validation function `{function}` did not answer in time"), true),
        Ok(Err(e)) => return problem(format!("the validation function `{function}`: {e}"), e.retryable),
        Ok(Ok(out)) => out,
    };
    let answer: serde_json::Value = serde_json::from_slice(&out.payload).unwrap_or(serde_json::Value::Null);
    let msg = format!("validation function `{function}` answered {}", short(&answer));
    run.system(Some(&step.id), Phase::Step, &masker.mask(&msg)).await?;
    if let Some(kind) = out.function_error {
        let field = |k: &str| answer.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let message = format!(
            "the validation function `{function}` failed ({kind}): {}: {}",
            field("errorType"),
            field("errorMessage")
        );
        return problem(message, true);
    }
    let verdict = match &answer {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::Object(m) => m.get("valid").and_then(serde_json::Value::as_bool),
        _ => None,
    };
    let message = match verdict {
        Some(true) => return Ok(Verdict::Pass),
        Some(false) => {
            let reason = answer.get("reason").or_else(|| answer.get("message")).and_then(|v| v.as_str());
            match reason {
                Some(r) => format!("the validation function `{function}` refused the result: {r}"),
                None => format!("the validation function `{function}` refused the result"),
            }
        }
        None => format!(
            "the validation function `{function}` answered {}: expected true, false or {{\"valid\": …}}",
            short(&answer)
        ),
    };
    problem(message, true)
}
