//! `targets`: a `run` step once per target, at most `max_concurrency` at a time, here
//! (`via: local`) or over SSH (`via: ssh`, see [`super::ssh`]). Each target is its own
//! attempt (with the step's retries), on record as it ends (the step's row keeps every
//! target's status, exit code, times and error); once more than `max_errors` targets
//! failed, no new target starts and the step fails. A rollback runs on the targets the
//! step succeeded on, and only there.
//!
//! Output lines carry the target's name (`[web-1] …`), so the live display, `logs` and
//! the web page keep targets apart.

use std::collections::BTreeMap;

use opsbook_core::step::run::Script;
use opsbook_core::step::targets::{Inventory, Source, Target, Targets};
use opsbook_core::{Step, StepStatus, template};
use opsbook_store::Phase;

use super::AttemptResult;
use super::fleet::{self, Fleet, Outcome, Part};
use super::parts;
use crate::Result;
use crate::runner::{Flow, Run};

/// Runs step `idx` on its targets.
pub(crate) async fn run_step(run: &mut Run<'_, '_>, idx: usize, step: &Step) -> Result<Flow> {
    let (opsbook_core::StepKind::Run(script), Some(targets)) = (&step.kind, &step.targets) else {
        unreachable!("a run step with targets");
    };
    parts::begin_step(run, idx, step);
    let resolved = match resolve(run, targets).await {
        Ok(t) => t,
        Err(e) => return parts::settle(run, idx, step, StepStatus::Failed, Some(format!("targets: {e}"))).await,
    };
    let names: Vec<&str> = resolved.iter().map(|t| t.name.as_str()).collect();
    let todo = parts::pending_parts(run, idx, &names).await?;
    let n = resolved.len();
    let fleet = Fleet {
        idx,
        phase: Phase::Step,
        parts: parts(step, script, resolved),
        via: targets.via,
        targets: Some(targets),
        concurrency: targets.max_concurrency.of(n, true),
        allowed_errors: Some(targets.max_errors.of(n, false)),
        fail_fast: false,
        cancel_level: 1,
    };
    let out = fleet::drive(run, &fleet, todo).await?;
    let names = |slots: &[usize]| Outcome::names(&fleet, slots);
    let why_not = if out.cancelled {
        "not started: cancelled".to_string()
    } else {
        format!("not started: more than {} target(s) failed", fleet.allowed_errors.unwrap_or(0))
    };
    for &i in &out.not_started {
        let t = &mut run.steps[idx].targets[i];
        t.status = StepStatus::Skipped;
        t.error = Some(why_not.clone());
    }
    // Outputs: which targets succeeded and failed, and each target's own as `NAME.KEY`.
    let mut outputs = serde_json::Map::new();
    let succeeded: Vec<usize> = (0..n).filter(|&i| run.steps[idx].targets[i].status == StepStatus::Succeeded).collect();
    outputs.insert("succeeded".into(), names(&succeeded).into());
    outputs.insert("failed".into(), names(&out.failed).into());
    for (k, v) in std::mem::take(&mut run.steps[idx].outputs) {
        if k.contains('.') {
            outputs.insert(k, v);
        }
    }
    run.steps[idx].outputs = outputs;
    let allowed = fleet.allowed_errors.unwrap_or(0);
    let detail = |run: &Run<'_, '_>| parts::errors(run, idx, &out.failed, false);
    let (status, error) = if out.cancelled {
        (StepStatus::Cancelled, Some("cancelled".to_string()))
    } else if out.failed.len() > allowed {
        let mut e = format!("{} of {n} targets failed ({})", out.failed.len(), detail(run));
        if !out.not_started.is_empty() {
            e.push_str(&format!("; not started: {}", names(&out.not_started)));
        }
        (StepStatus::Failed, Some(e))
    } else {
        if !out.failed.is_empty() {
            let msg =
                format!("{} of {n} targets failed, within max_errors ({allowed}): {}", out.failed.len(), detail(run));
            run.system(Some(&step.id), Phase::Step, &msg).await?;
        }
        (StepStatus::Succeeded, None)
    };
    parts::settle(run, idx, step, status, error).await
}

/// Runs a step's `run` rollback on each target it succeeded on (and whose rollback has
/// not), as many at a time as the step ran; all are tried, whatever fails.
pub(crate) async fn rollback(run: &mut Run<'_, '_>, idx: usize, step: &Step, script: &Script) -> Result<AttemptResult> {
    let Some(targets) = &step.targets else { unreachable!("a step with targets") };
    let records = run.steps[idx].targets.clone();
    // The targets as the step ran them (their addresses may have moved since: the step's
    // names are what it succeeded on).
    // (Instances by tag are their ids already: not looked up again.)
    let looked_up = match &targets.source {
        Source::Tags(_) => Err(String::new()),
        _ => resolve(run, targets).await,
    };
    let resolved = match looked_up {
        Ok(found) => records
            .iter()
            .map(|r| found.iter().find(|t| t.name == r.name).cloned().unwrap_or_else(|| named(&r.name)))
            .collect(),
        Err(_) => records.iter().map(|r| named(&r.name)).collect::<Vec<_>>(),
    };
    let todo: Vec<usize> = (0..records.len())
        .filter(|&i| {
            records[i].status == StepStatus::Succeeded && records[i].rollback_status != Some(StepStatus::Succeeded)
        })
        .collect();
    if todo.is_empty() {
        return Ok(AttemptResult::ok(BTreeMap::new()));
    }
    let fleet = Fleet {
        idx,
        phase: Phase::Rollback,
        parts: parts(step, script, resolved),
        via: targets.via,
        targets: Some(targets),
        concurrency: targets.max_concurrency.of(records.len(), true),
        allowed_errors: None,
        fail_fast: false,
        cancel_level: 2,
    };
    let out = fleet::drive(run, &fleet, todo).await?;
    Ok(parts::rolled_back(run, &fleet, &out, "targets"))
}

/// The step's targets as parts of a fleet.
fn parts<'a>(step: &'a Step, script: &'a Script, targets: Vec<Target>) -> Vec<Part<'a>> {
    targets.into_iter().map(|t| Part { name: t.name.clone(), step, script, target: Some(t), prefix: true }).collect()
}

/// A target known only by its name (how the rollback reaches it when the inventory is gone).
fn named(name: &str) -> Target {
    Target { name: name.to_string(), address: name.to_string(), user: None, port: None }
}

/// The targets a step names: its hosts (templates rendered), an inventory's group, or
/// the instances SSM manages with its tags (looked up in AWS; in a runbook test, one
/// stand-in target named after the tags).
async fn resolve(run: &Run<'_, '_>, targets: &Targets) -> std::result::Result<Vec<Target>, String> {
    let found = match &targets.source {
        Source::Tags(tags) => {
            let ctx = run.context(false);
            let mut rendered = BTreeMap::new();
            for (k, values) in tags {
                let vs = (values.iter())
                    .map(|v| template::render_plain(v, &ctx).map_err(|e| format!("tags.{k}: {e}")))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                rendered.insert(k.clone(), vs);
            }
            let shown: Vec<String> = rendered.iter().map(|(k, v)| format!("{k}={}", v.join("|"))).collect();
            if run.engine.config.mocks.is_some() {
                return Ok(vec![named(&format!("tag:{}", shown.join(",")))]);
            }
            let aws = run.aws_target(targets.aws.clone());
            let ids = opsbook_aws::ssm::managed_instances(&aws, &rendered).await.map_err(|e| e.message)?;
            if ids.is_empty() {
                return Err(format!("SSM manages no instance tagged {}", shown.join(", ")));
            }
            ids.iter().map(|id| named(id)).collect()
        }
        Source::Hosts(hosts) => {
            let ctx = run.context(false);
            let mut found = Vec::new();
            for h in hosts {
                let text = template::render_plain(h, &ctx).map_err(|e| format!("hosts: {e}"))?;
                found.extend(Target::parse_list(&text).map_err(|e| format!("hosts: {e}"))?);
            }
            if targets.via == opsbook_core::step::targets::Via::Ssm
                && let Some(bad) = found.iter().find(|t| !Target::is_instance_id(&t.name))
            {
                return Err(format!(
                    "hosts: `{}` is not an instance id (i-0abc12345def67890) for `via: ssm`",
                    bad.name
                ));
            }
            found
        }
        Source::Inventory { path, group } => {
            let full = run.base_dir.join(path);
            let text = std::fs::read_to_string(&full).map_err(|e| format!("cannot read the inventory {path}: {e}"))?;
            Inventory::parse(&text, path)?.targets(group.as_deref(), path)?
        }
    };
    if found.is_empty() {
        return Err("no targets (the list is empty)".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in &found {
        if !seen.insert(&t.name) {
            return Err(format!("target `{}` is listed twice", t.name));
        }
    }
    Ok(found)
}
