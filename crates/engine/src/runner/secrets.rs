//! Secret parameters across an execution's life: read from their `from:` sources when
//! it runs, and, when it goes on (a resume, a rollback), which of them must be supplied
//! again and checked against the digests it started with.

use std::collections::BTreeMap;

use opsbook_core::params::ParamValues;
use opsbook_core::template::mentions;
use opsbook_core::{Input, Runbook, StepStatus};
use opsbook_store::{Execution, Phase, StepRecord, Store};

use crate::{Db, Engine, Error, Result};

/// What a secret's value is checked against when it is supplied again.
pub(super) fn secret_digest(id: &str, value: &str) -> String {
    opsbook_core::sha256_hex(format!("{id}:{value}").as_bytes())
}

/// How long reading one secret from AWS may take.
const SOURCE_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads each secret parameter that names a `from:` and was not given a value, from AWS,
/// each time an execution starts or goes on (never stored; masked like any secret);
/// `only`: just those the work left mentions.
pub(super) async fn resolve_sources(
    execution_id: &str,
    rb: &Runbook,
    params: &mut ParamValues,
    only: Option<&std::collections::BTreeSet<String>>,
) -> Result<()> {
    use opsbook_core::params::SecretSource;
    let mut errors = Vec::new();
    for p in &rb.params {
        let Some(source) = p.source() else { continue };
        if only.is_some_and(|names| !names.contains(&p.name)) {
            continue;
        }
        if params.values.get(&p.name).is_some_and(|v| !v.is_null()) {
            continue;
        }
        let target = opsbook_aws::Target {
            region: source.arn_region().map(str::to_string),
            role_arn: None,
            session: format!("opsbook-{execution_id}"),
        };
        let read = async {
            match &source {
                SecretSource::SecretsManager { id, key } => {
                    opsbook_aws::secrets::secrets_manager(&target, id, key.as_deref()).await
                }
                SecretSource::SsmParameter { name } => opsbook_aws::secrets::ssm_parameter(&target, name).await,
            }
        };
        let value = match tokio::time::timeout(SOURCE_WITHIN, read).await {
            Ok(Ok(text)) => p.coerce(&Input::Text(text)),
            Ok(Err(e)) => Err(e.message),
            Err(_) => Err(format!("no answer within {}", opsbook_core::Dur(SOURCE_WITHIN))),
        };
        match value {
            Ok(v) => {
                params.values.insert(p.name.clone(), v);
            }
            Err(e) => {
                errors.push(opsbook_core::ParamError { param: p.name.clone(), message: format!("from {source}: {e}") })
            }
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(Error::Params(errors)) }
}

pub(crate) async fn check_secrets(
    engine: &Engine,
    id: &str,
    secrets: &BTreeMap<String, Input>,
    work: Work,
) -> Result<()> {
    let exec = engine.store.execution(id).await?;
    let rb = engine.stored_runbook(&exec.runbook_sha256).await?;
    let steps = engine.store.steps(&exec.id).await?;
    let work = after_decisions(&engine.store, &rb, &exec.id, &steps, work).await?;
    restore_params(&rb, &exec, secrets, &needed_secrets(&rb, &steps, work)).map(|_| ())
}

/// What is left once people's decisions are counted: an approval the execution waits on
/// that was rejected fails, so only rollbacks follow it, whatever the steps after it
/// need. (Read only for a runbook with secrets and an approval waiting.)
pub(super) async fn after_decisions(
    store: &Db,
    rb: &Runbook,
    exec_id: &str,
    steps: &[StepRecord],
    work: Work,
) -> Result<Work> {
    if work != Work::Rest || !rb.params.iter().any(|p| p.is_secret()) {
        return Ok(work);
    }
    let waiting = rb.steps.iter().zip(steps).find(|(step, rec)| {
        rec.status == StepStatus::Waiting && matches!(step.kind, opsbook_core::StepKind::Approval(_))
    });
    let Some((step, _)) = waiting else { return Ok(work) };
    let rejected = store
        .approvals(exec_id)
        .await?
        .iter()
        .any(|a| a.step_id == step.id && !a.approved && !a.manual && a.phase == Phase::Step);
    Ok(if rejected { Work::Rollbacks } else { work })
}

/// What is left of an execution to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// The rest of its steps (and, should one fail, the rollbacks of those that succeeded).
    Rest,
    /// The rollbacks of the steps that succeeded.
    Rollbacks,
}

/// The secret parameters what is left to run mentions (`params.NAME`, `params["NAME"]`,
/// `OPSBOOK_PARAM_NAME`, or `params` whole): only those must be supplied again. Judged
/// from the text, erring towards asking: a secret left out is undefined, so a template
/// that used it after all fails loudly rather than running with a wrong value.
pub(crate) fn needed_secrets(rb: &Runbook, steps: &[StepRecord], work: Work) -> std::collections::BTreeSet<String> {
    let secrets: Vec<&str> = rb.params.iter().filter(|p| p.is_secret()).map(|p| p.name.as_str()).collect();
    if secrets.is_empty() {
        // The common case, and every claim by a worker passes here: nothing to look for.
        return Default::default();
    }
    let mut texts: Vec<String> = Vec::new();
    let script_text = |s: &opsbook_core::step::run::Script| {
        let mut t = s.template.clone();
        for v in s.env.values().chain(s.workdir.iter()) {
            t.push('\n');
            t.push_str(v);
        }
        t
    };
    let lines: Vec<&str> = rb.source.lines().collect();
    // Step `i`'s whole text in the runbook: every field, from its line to the next step's.
    let step_text = |i: usize| {
        let from = (rb.steps[i].line as usize).saturating_sub(1);
        let to = rb.steps.get(i + 1).map_or(lines.len(), |n| (n.line as usize).saturating_sub(1));
        lines.get(from..to.max(from)).map(|l| l.join("\n")).unwrap_or_default()
    };
    let done = |rec: &StepRecord| matches!(rec.status, StepStatus::Succeeded | StepStatus::Skipped);
    for (i, (step, rec)) in rb.steps.iter().zip(steps).enumerate() {
        // (also one interrupted or waiting: its child is rolled back or cancelled as a whole)
        if matches!(rec.status, StepStatus::Succeeded | StepStatus::Waiting | StepStatus::Cancelled)
            && rec.rollback_status != Some(StepStatus::Succeeded)
            && matches!(step.kind, opsbook_core::StepKind::Runbook(_))
        {
            // A child is rolled back with the parameters the step hands it.
            texts.push(step_text(i));
        }
        if rec.status == StepStatus::Succeeded
            && rec.rollback_status != Some(StepStatus::Succeeded)
            && let Some(r) = &step.rollback
        {
            match r.script() {
                Some(script) => texts.push(script_text(script)),
                // An AWS rollback: the step's whole text, which holds it.
                None => {
                    texts.push(step_text(i));
                }
            }
        }
        if work == Work::Rest && !done(rec) {
            // All of a step that is still to run: its text in the runbook, every field.
            texts.push(step_text(i));
        }
    }
    if work == Work::Rest && steps.iter().all(|s| s.status == StepStatus::Pending) {
        texts.extend(rb.prerequisites.iter().filter_map(|p| p.check.as_ref()).map(script_text));
    }
    secrets.into_iter().filter(|name| texts.iter().any(|t| mentions(t, name))).map(str::to_string).collect()
}

/// Stored (masked) values plus the secrets supplied again, checked against their digests.
/// A secret is required only when what is left to run needs it (`needed`); one not
/// needed and not given stays undefined.
pub(super) fn restore_params(
    rb: &Runbook,
    exec: &Execution,
    secrets: &BTreeMap<String, Input>,
    needed: &std::collections::BTreeSet<String>,
) -> Result<ParamValues> {
    let mut out = ParamValues::default();
    let mut errors = Vec::new();
    // Only secrets are given again (the rest are stored): another name is a slip.
    for name in secrets.keys().filter(|n| !rb.params.iter().any(|p| p.is_secret() && p.name == **n)) {
        let message = if rb.params.iter().any(|p| p.name == *name) {
            "is not a secret: its value is the one the execution started with, and cannot be given again"
        } else {
            "is not a secret parameter of this runbook"
        };
        errors.push(opsbook_core::ParamError { param: name.clone(), message: message.into() });
    }
    let stored = exec.params.as_object().cloned().unwrap_or_default();
    for p in &rb.params {
        let name = &p.name;
        if p.is_secret() {
            out.secret_names.insert(name.clone());
            let digest = exec.secret_digests.get(name).and_then(|d| d.as_str());
            match (secrets.get(name), digest) {
                (Some(input), Some(digest)) => match p.coerce(input) {
                    Ok(v) if v.as_str().map(|s| secret_digest(&exec.id, s)).as_deref() == Some(digest) => {
                        out.values.insert(name.clone(), v);
                    }
                    _ => errors
                        .push(opsbook_core::ParamError { param: name.clone(), message: crate::SECRET_DIFFERS.into() }),
                },
                (None, Some(_)) if !needed.contains(name) => {}
                (None, Some(_)) => errors.push(opsbook_core::ParamError {
                    param: name.clone(),
                    message: format!(
                        "is a secret and is never stored: give it again (`-p {name}=…` on the command line, \
                         `params` in the API)"
                    ),
                }),
                (_, None) => {
                    out.values.insert(name.clone(), serde_json::Value::Null);
                }
            }
        } else {
            out.values.insert(name.clone(), stored.get(name).cloned().unwrap_or(serde_json::Value::Null));
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(Error::Params(errors)) }
}
