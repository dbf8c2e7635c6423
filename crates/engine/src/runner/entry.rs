//! Where runs begin: a new execution, a claimed one, a resume or a rollback of a stopped
//! one (claimed first), and the parameters restored from what was stored.

use std::collections::BTreeMap;

use opsbook_core::params::ParamValues;
use opsbook_core::{ExecStatus, Input, Runbook, StepStatus};
use opsbook_store::{Execution, Phase, RunbookVersion, StepRecord, Store, Stream, WaitKind, id::new_id, now_ms};

use crate::observer::{Event, Start};
use crate::{Engine, Error, Hooks, Outcome, Result, StartRequest, check_lifecycle};

use super::Run;
use super::secrets::{Work, after_decisions, needed_secrets, resolve_sources, restore_params, secret_digest};

/// The records of a new execution: the execution (in `status`) and its pending steps.
/// Also stores the runbook text it will run.
pub async fn new_execution(
    engine: &Engine,
    req: &StartRequest,
    status: ExecStatus,
) -> Result<(Execution, Vec<StepRecord>)> {
    let rb = &req.runbook;
    let now = now_ms();
    // A text this engine read from the store is there already (the server's case: every
    // submission of a published version); a local run saves its file's text.
    if !engine.has_stored_runbook(&rb.sha256) {
        engine
            .store
            .save_runbook(&RunbookVersion {
                sha256: rb.sha256.clone(),
                name: rb.name.clone(),
                version: rb.version.to_string(),
                content: rb.source.clone(),
                created_at: now,
            })
            .await?;
    }
    let id = new_id();
    let digests: serde_json::Map<String, serde_json::Value> = req
        .params
        .secret_names
        .iter()
        .filter_map(|n| Some((n.clone(), req.params.values.get(n)?.as_str()?)))
        .map(|(n, v)| (n, serde_json::Value::from(secret_digest(&id, v))))
        .collect();
    let running = status == ExecStatus::Running;
    let exec = Execution {
        id: id.clone(),
        runbook_name: rb.name.clone(),
        runbook_version: rb.version.to_string(),
        runbook_sha256: rb.sha256.clone(),
        source_path: req.source_path.clone(),
        base_dir: req.base_dir.to_string_lossy().into_owned(),
        status,
        actor: req.actor.clone(),
        params: stored_params(rb, &req.params),
        secret_digests: serde_json::Value::Object(digests),
        created_at: now,
        started_at: running.then_some(now),
        finished_at: None,
        error: None,
        current_step: None,
        rollback_status: None,
        owner: running.then(|| engine.config.owner.clone()),
        lease_expires_at: running.then(|| now + engine.config.lease_ms()),
        heartbeat_at: running.then_some(now),
        cancel_requested: false,
        parent_id: None,
        parent_step: None,
    };
    let steps: Vec<StepRecord> = rb
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| StepRecord::pending(&id, i as i64, &s.id, &s.name, s.kind.name()))
        .collect();
    Ok((exec, steps))
}

/// The parameters as stored: secrets masked, and a secret left to its `from:` source
/// shown as `<from SOURCE>` (its value is read when the execution runs, never stored).
fn stored_params(rb: &Runbook, params: &ParamValues) -> serde_json::Value {
    let mut shown = params.masked();
    for p in &rb.params {
        if let Some(source) = p.source()
            && shown.get(&p.name).is_none_or(serde_json::Value::is_null)
        {
            shown[&p.name] = serde_json::Value::from(format!("<from {source}>"));
        }
    }
    shown
}

pub(crate) async fn start(engine: &Engine, req: StartRequest, hooks: &Hooks<'_>) -> Result<Outcome> {
    let warning = check_lifecycle(&req.runbook, req.allow_draft)?;
    let (exec, steps) = new_execution(engine, &req, ExecStatus::Running).await?;
    begin(engine, req.runbook, req.params, (exec, steps), warning, hooks).await
}

/// Stores a new execution (made by [`new_execution`], `running`) and runs it until it
/// finishes or waits.
pub(crate) async fn begin(
    engine: &Engine,
    runbook: Runbook,
    params: ParamValues,
    (exec, steps): (Execution, Vec<StepRecord>),
    warning: Option<String>,
    hooks: &Hooks<'_>,
) -> Result<Outcome> {
    // Read before anything is stored: a secret that cannot be read starts nothing.
    let mut params = params;
    if engine.config.mocks.is_some() {
        // A runbook test reads nothing from AWS: a secret read from there and not
        // given by the test gets a stand-in value (masked like any secret).
        for p in runbook.params.iter().filter(|p| p.source().is_some()) {
            let value = params.values.entry(p.name.clone()).or_insert(serde_json::Value::Null);
            if value.is_null() {
                *value = serde_json::Value::String(format!("mocked-{}", p.name));
                params.secret_names.insert(p.name.clone());
            }
        }
    } else {
        resolve_sources(&exec.id, &runbook, &mut params, None).await?;
    }
    engine.store.create_execution(&exec, &steps).await?;
    let id = exec.id.clone();
    let mut run = Run::new(engine, hooks, runbook, exec, steps, params, 0);
    run.event(&Event::Started {
        execution_id: &id,
        runbook: &run.rb.name,
        version: &run.exec.runbook_version,
        start: Start::Fresh,
    });
    if let Some(w) = warning {
        // Shown once (the event), kept in the log for later readers and server runs.
        run.event(&Event::Warning { message: &w });
        run.sink.push(&crate::Quiet, None, Phase::Check, 0, Stream::System, format!("warning: {w}").as_bytes());
        run.sink.flush().await?;
    }
    run.start_heartbeat();
    if !run.prerequisites().await? {
        return run.outcome();
    }
    run.drive(0).await?;
    run.outcome()
}

/// Runs an execution a worker has claimed (status `running`, owned by this engine):
/// a fresh one from its prerequisites, a requeued one (after an approval) from where it waited.
pub(crate) async fn run_claimed(
    engine: &Engine,
    exec: Execution,
    loaded: Option<Loaded>,
    secrets: &BTreeMap<String, Input>,
    hooks: &Hooks<'_>,
    gate_poll_only: bool,
) -> Result<Outcome> {
    // A gate poll runs no step: it needs no secret read from AWS.
    let mut run = load_exec(engine, exec, loaded, secrets, hooks, Work::Rest, !gate_poll_only).await?;
    run.gate_poll_only = gate_poll_only;
    // A cancel asked for while another runner had the execution (e.g. mid gate check)
    // is still owed.
    if run.exec.cancel_requested && run.cancel_level() == 0 {
        hooks.cancel_handle.escalate();
    }
    let fresh = run.steps.iter().all(|s| s.status == StepStatus::Pending);
    // Waiting on a gate: back to look again, not resumed.
    let people = run.waits_on(WaitKind::Approval) || run.waits_on(WaitKind::Manual);
    let start = match (fresh, run.waits_on(WaitKind::Gate), people) {
        (true, _, _) => Start::Fresh,
        // Looking at the child it waits on again is no news either.
        (false, true, _) | (false, false, false) if run.waits_on(WaitKind::Child) => Start::GatePoll,
        (false, true, _) => Start::GatePoll,
        (false, false, true) => Start::Resumed,
        // Queued again after a gate poll found its gate clear (the poll said so).
        (false, false, false) => Start::Continued,
    };
    let id = run.exec.id.clone();
    run.event(&Event::Started { execution_id: &id, runbook: &run.rb.name, version: &run.exec.runbook_version, start });
    run.start_heartbeat();
    // Cancelled while it waited (and queued so that a runner stops it): nothing more
    // runs; the rollbacks do, as the runbook says.
    if run.cancel_level() >= 1
        && let Some(why) = run.cancelled_waiting()
    {
        run.stop(ExecStatus::Cancelled, why.to_string()).await?;
        return run.outcome();
    }
    if fresh && !run.prerequisites().await? {
        return run.outcome();
    }
    run.drive(0).await?;
    run.outcome()
}

/// Loads a stored execution with its runbook and parameters for resuming or rolling back.
async fn load<'e, 'h>(
    engine: &'e Engine,
    id: &str,
    secrets: &BTreeMap<String, Input>,
    hooks: &'h Hooks<'h>,
    work: Work,
) -> Result<Run<'e, 'h>> {
    let exec = engine.store.execution(id).await?;
    load_exec(engine, exec, None, secrets, hooks, work, true).await
}

/// An execution's steps and the last sequence number of its log, when they came with
/// its claim (`ServerStore::claim_next`).
pub type Loaded = (Vec<opsbook_store::StepRecord>, i64);

/// [`load`], for an execution just read (as a claim returned it, `loaded` with it or not).
async fn load_exec<'e, 'h>(
    engine: &'e Engine,
    exec: Execution,
    loaded: Option<Loaded>,
    secrets: &BTreeMap<String, Input>,
    hooks: &'h Hooks<'h>,
    work: Work,
    read_sources: bool,
) -> Result<Run<'e, 'h>> {
    let store = &engine.store;
    let rb = Runbook::clone(&*engine.stored_runbook(&exec.runbook_sha256).await?);
    let (steps, last_seq) = match loaded {
        Some(loaded) => loaded,
        None => store.steps_and_last_seq(&exec.id).await?,
    };
    let work = after_decisions(store, &rb, &exec.id, &steps, work).await?;
    let needed = needed_secrets(&rb, &steps, work);
    let mut params = restore_params(&rb, &exec, secrets, &needed)?;
    if read_sources {
        resolve_sources(&exec.id, &rb, &mut params, Some(&needed)).await?;
    }
    if steps.len() != rb.steps.len() {
        return Err(Error::Invalid(format!(
            "execution {} has {} step records for a runbook of {} steps",
            exec.id,
            steps.len(),
            rb.steps.len()
        )));
    }
    Ok(Run::new(engine, hooks, rb, exec, steps, params, last_seq))
}

/// Holds a stopped execution for this engine's owner before acting on it, so that two
/// commands (two `rollback`s, a `rollback` and a `resume`) never act at once. A holder
/// that is a dead local process is taken over; a live one is named in the refusal.
async fn claim(engine: &Engine, id: &str) -> Result<String> {
    let store = &engine.store;
    let exec = store.execution(id).await?;
    if exec.status == ExecStatus::Running {
        return Err(Error::Invalid(format!(
            "execution {} is still running ({})",
            exec.id,
            exec.owner.as_deref().unwrap_or("unknown owner")
        )));
    }
    let gone = exec.owner.clone().filter(|o| crate::recovery::holder_gone(o));
    let owner = &engine.config.owner;
    if store.claim_stopped(&exec.id, owner, engine.config.lease_ms(), gone.as_deref()).await?.is_some() {
        return Ok(exec.id);
    }
    let now = store.execution(&exec.id).await?;
    Err(Error::Invalid(match now.owner {
        Some(holder) => format!(
            "execution {} is held by {holder}: another resume, rollback or cancel is acting on it; \
             try again when it is done",
            now.id
        ),
        None => format!("execution {} {} now", now.id, now.status.phrase()),
    }))
}

/// Runs `act` on an execution held by [`claim`]; lets go of it if `act` fails before
/// the execution finished or was handed back.
async fn claimed<F: Future<Output = Result<Outcome>>>(
    engine: &Engine,
    id: &str,
    act: impl FnOnce(String) -> F,
) -> Result<Outcome> {
    let id = claim(engine, id).await?;
    let result = act(id.clone()).await;
    if result.is_err() {
        let _ = engine.store.release(&id, &engine.config.owner).await;
    }
    result
}

pub(crate) async fn resume(
    engine: &Engine,
    id: &str,
    secrets: &BTreeMap<String, Input>,
    hooks: &Hooks<'_>,
) -> Result<Outcome> {
    claimed(engine, id, |id| async move { resume_claimed(engine, &id, secrets, hooks).await }).await
}

async fn resume_claimed(
    engine: &Engine,
    id: &str,
    secrets: &BTreeMap<String, Input>,
    hooks: &Hooks<'_>,
) -> Result<Outcome> {
    let mut run = load(engine, id, secrets, hooks, Work::Rest).await?;
    let id = run.exec.id.clone();
    let (from, rerun) = resume_point(&run)?;
    refuse_cut_child(&run).await?;
    if let Some(i) = rerun {
        run.steps[i].status = StepStatus::Pending;
        run.steps[i].error = None;
    }
    let now = now_ms();
    run.exec.status = ExecStatus::Running;
    run.exec.error = None;
    run.exec.finished_at = None;
    run.exec.owner = Some(engine.config.owner.clone());
    run.exec.lease_expires_at = Some(now + engine.config.lease_ms());
    run.exec.heartbeat_at = Some(now);
    run.patient().update_execution(&run.exec, run.fence()).await?;
    run.event(&Event::Started {
        execution_id: &id,
        runbook: &run.rb.name,
        version: &run.exec.runbook_version,
        start: Start::Resumed,
    });
    run.start_heartbeat();
    run.drive(from).await?;
    run.outcome()
}

/// Where a resume of `run` goes on from (and the interrupted idempotent step it runs
/// again, if any), or why it cannot resume. Changes nothing.
fn resume_point(run: &Run<'_, '_>) -> Result<(usize, Option<usize>)> {
    let id = &run.exec.id;
    refused_by_state(&run.exec, false, false)?;
    let point = match run.exec.status {
        ExecStatus::Waiting => (run.steps.iter().position(|s| s.status == StepStatus::Waiting).unwrap_or(0), None),
        ExecStatus::Interrupted => {
            let failed_required =
                run.steps.iter().zip(&run.rb.steps).any(|(rec, step)| {
                    step.required && matches!(rec.status, StepStatus::Failed | StepStatus::TimedOut)
                });
            if failed_required || run.steps.iter().any(|s| s.rollback_status.is_some()) {
                return Err(Error::Invalid(format!(
                    "execution {id} was interrupted after a failure (while rolling back); \
                     finish the rollback with `opsbook rollback {id}`"
                )));
            }
            let hit = run.steps.iter().position(crate::kinds::call::cut_by_crash);
            match hit {
                // A child execution decides by its own steps whether it can go on.
                Some(i) if !run.rb.steps[i].idempotent && !crate::kinds::call::is_call(&run.rb.steps[i]) => {
                    return Err(Error::Invalid(format!(
                        "step `{}` was interrupted and is not idempotent, so it may have partly run; \
                         undo the steps that succeeded with `opsbook rollback {id}`",
                        run.rb.steps[i].id
                    )));
                }
                Some(i) => (i, Some(i)),
                None => {
                    (run.steps.iter().position(|s| s.status == StepStatus::Pending).unwrap_or(run.steps.len()), None)
                }
            }
        }
        // (Refused above; a running execution, by the claim.)
        _ => return Err(not_resumable(&run.exec)),
    };
    Ok(point)
}

fn not_resumable(exec: &Execution) -> Error {
    Error::Invalid(format!(
        "execution {} {}; only waiting or interrupted executions can resume",
        exec.id,
        exec.status.phrase()
    ))
}

/// The refusal of a resume (or, `rollback`, a rollback) that `exec`'s state alone gives,
/// its steps and parameters aside.
fn refused_by_state(exec: &Execution, rollback: bool, succeeded_too: bool) -> Result<()> {
    let id = &exec.id;
    if rollback {
        if exec.status == ExecStatus::Succeeded && !succeeded_too {
            return Err(Error::Invalid(format!(
                "execution {id} succeeded; rolling back a success is not supported (only a stopped execution's \
                 steps are undone): run the runbook again with the earlier version, or one written to undo it"
            )));
        }
        if exec.rollback_status == Some(StepStatus::Succeeded) {
            return Err(Error::Invalid(format!("execution {id} was already rolled back")));
        }
    } else if exec.rollback_status.is_some() {
        return Err(Error::Invalid(format!("execution {id} was rolled back; it cannot resume")));
    } else if !matches!(exec.status, ExecStatus::Waiting | ExecStatus::Interrupted) {
        return Err(not_resumable(exec));
    }
    Ok(())
}

/// Whether a rollback of `run` may start: `Ok(true)` when there is nothing to do.
fn rollback_point(run: &Run<'_, '_>, succeeded_too: bool) -> Result<bool> {
    refused_by_state(&run.exec, true, succeeded_too)?;
    Ok(run.exec.status != ExecStatus::Waiting && run.rollbacks_left().is_empty())
}

/// Checks, changing nothing, that execution `id` could resume (`rollback` false) or be
/// rolled back now with these secrets: the refusal `resume`/`rollback` would give.
/// A front end that runs them in the background answers with this first.
pub(crate) async fn check_resume(
    engine: &Engine,
    id: &str,
    secrets: &BTreeMap<String, Input>,
    rollback: bool,
) -> Result<bool> {
    let exec = engine.store.execution(id).await?;
    if matches!(exec.status, ExecStatus::Running | ExecStatus::Queued) {
        return Err(Error::Invalid(format!("execution {} {}; it is not stopped", exec.id, exec.status.phrase())));
    }
    // What the execution's state alone refuses comes before any secret is compared: an
    // execution that could not go on anyway is no oracle for its secrets' values.
    refused_by_state(&exec, rollback, false)?;
    let (_handle, cancel) = crate::cancel::cancel_pair();
    let hooks = Hooks { observer: &crate::Quiet, prompt: None, cancel, cancel_handle: _handle };
    let run = match load(engine, id, secrets, &hooks, if rollback { Work::Rollbacks } else { Work::Rest }).await {
        Ok(run) => run,
        // A rollback that would find nothing to do says so whatever secrets were given:
        // found without them (nothing left to run needs one), so none is compared.
        Err(refused) if rollback => {
            return match load(engine, id, &BTreeMap::new(), &hooks, Work::Rollbacks).await {
                Ok(bare) if rollback_point(&bare, false)? => Ok(true),
                _ => Err(refused),
            };
        }
        Err(refused) => return Err(refused),
    };
    if rollback {
        return rollback_point(&run, false);
    }
    resume_point(&run)?;
    refuse_cut_child(&run).await?;
    Ok(false)
}

/// A `runbook` step cut by its runner's death goes on with its child, which decides by
/// its own steps: refused as the child would be (after [`resume_point`], which refuses a
/// step of this execution's own), with the rollback that undoes the child as a whole.
async fn refuse_cut_child(run: &Run<'_, '_>) -> Result<()> {
    let id = &run.exec.id;
    match crate::kinds::call::why_cannot_go_on(run.engine, id).await? {
        Some(why) => Err(Error::Invalid(format!(
            "{why}; undo the steps that succeeded, the child's with them, with `opsbook rollback {id}`"
        ))),
        None => Ok(()),
    }
}

pub(crate) async fn rollback_only(
    engine: &Engine,
    id: &str,
    secrets: &BTreeMap<String, Input>,
    hooks: &Hooks<'_>,
) -> Result<Outcome> {
    claimed(engine, id, |id| async move { rollback_claimed(engine, &id, secrets, hooks, false).await }).await
}

/// Rolls back a child execution as a whole, when the runbook that called it rolls back:
/// one that succeeded too.
pub(crate) async fn rollback_child(
    engine: &Engine,
    id: &str,
    secrets: &BTreeMap<String, Input>,
    hooks: &Hooks<'_>,
) -> Result<Outcome> {
    claimed(engine, id, |id| async move { rollback_claimed(engine, &id, secrets, hooks, true).await }).await
}

async fn rollback_claimed(
    engine: &Engine,
    id: &str,
    secrets: &BTreeMap<String, Input>,
    hooks: &Hooks<'_>,
    succeeded_too: bool,
) -> Result<Outcome> {
    let mut run = load(engine, id, secrets, hooks, Work::Rollbacks).await?;
    let id = run.exec.id.clone();
    // Nothing to undo and nothing waiting to cancel: change nothing (not even the
    // finish time, which analytics read).
    if rollback_point(&run, succeeded_too)? {
        engine.store.release(&id, &engine.config.owner).await?;
        return Ok(Outcome { execution_id: id, status: run.exec.status, nothing_to_roll_back: true });
    }
    // The claim holds while the rollbacks run (and a cancel asked for meanwhile is seen).
    run.start_heartbeat();
    if run.exec.status == ExecStatus::Waiting {
        let why = run.cancelled_waiting().unwrap_or("cancelled while waiting");
        for idx in 0..run.steps.len() {
            if let opsbook_core::StepKind::Runbook(spec) = &run.rb.steps[idx].kind.clone()
                && run.steps[idx].status == StepStatus::Waiting
            {
                crate::kinds::call::cancel_waiting(&mut run, idx, spec).await?;
            }
        }
        for s in run.steps.iter_mut().filter(|s| s.status == StepStatus::Waiting) {
            s.status = StepStatus::Cancelled;
            s.finished_at = Some(now_ms());
            s.error = Some(why.into());
            engine.store.update_step(s, Some(&engine.config.owner)).await?;
        }
        run.exec.status = ExecStatus::Cancelled;
        run.exec.error = Some(why.into());
    }
    run.rollback_all().await?;
    let status = run.exec.status;
    run.finish(status).await?;
    run.outcome()
}
