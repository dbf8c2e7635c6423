//! `runbook`: another runbook run as a child execution of its own, here, in this run's
//! place (its own record, log, approvals, gates and rollbacks; the same people's prompt;
//! a cancel of this run cancels it). A child that waits makes this run wait on it
//! ([`WaitKind::Child`]); going on with this run goes on with the child. When this run
//! rolls back, a child that succeeded is rolled back as a whole.

use std::collections::BTreeMap;
use std::path::PathBuf;

use opsbook_core::step::call::{CallSpec, Callee, MAX_DEPTH};
use opsbook_core::{ExecStatus, Input, Runbook, Step, StepStatus, template};
use opsbook_store::{Execution, ExecutionFilter, Phase, Store, Stream, WaitKind};

use super::AttemptResult;
use crate::observer::{Event, Observer};
use crate::runner::{Flow, Run};
use crate::{Error, Hooks, Outcome, Result, StartRequest, cancel_pair};

/// Whether `step` calls a runbook.
pub(crate) fn is_call(step: &Step) -> bool {
    matches!(step.kind, opsbook_core::StepKind::Runbook(_))
}

/// A `runbook` step whose runner died while its child ran: the child may hold succeeded
/// steps to undo (rolled back as a whole, as a succeeded one is).
pub(crate) fn interrupted(step: &Step, rec: &opsbook_store::StepRecord) -> bool {
    is_call(step) && cut_by_crash(rec)
}

/// A step whose runner died while it ran (recovery recorded it so).
pub(crate) fn cut_by_crash(rec: &opsbook_store::StepRecord) -> bool {
    rec.status == StepStatus::Cancelled && rec.error.as_deref().is_some_and(|e| e.starts_with("interrupted"))
}

/// Why interrupted execution `id` could not go on, from its steps alone (as its resume
/// would refuse): a step that was cut by a crash and is not idempotent, in it or in a
/// child it was running, in turn. `None` if it could, or is not interrupted.
pub(crate) fn why_cannot_go_on<'a>(engine: &'a crate::Engine, id: &'a str) -> Boxed<'a, Option<String>> {
    Box::pin(async move {
        let exec = engine.store.execution(id).await?;
        if exec.status != ExecStatus::Interrupted {
            return Ok(None);
        }
        let rb = engine.stored_runbook(&exec.runbook_sha256).await?;
        let records = engine.store.steps(id).await?;
        let Some((step, _)) = rb.steps.iter().zip(&records).find(|(_, rec)| cut_by_crash(rec)) else {
            return Ok(None);
        };
        if !is_call(step) {
            return Ok((!step.idempotent).then(|| {
                format!("step `{}` was interrupted and is not idempotent, so it may have partly run", step.id)
            }));
        }
        let Some(child) = child_of(&engine.store, id, &step.id).await? else { return Ok(None) };
        let why = why_cannot_go_on(engine, &child.id).await?;
        Ok(why.map(|w| format!("step `{}`: child execution {} cannot go on: {w}", step.id, child.id)))
    })
}

/// How often a server execution waiting on a child looks at it, should its wake-up be missed.
const CHILD_LOOK_AGAIN_MS: i64 = 30_000;

/// A future whose type is not spelled out: a child's run holds its parent's step, so the
/// entry points here are boxed to keep the types (and what they prove) from looping.
type Boxed<'a, T> = opsbook_core::Boxed<'a, Result<T>>;

pub(crate) fn run_step<'a>(
    run: &'a mut Run<'_, '_>,
    idx: usize,
    step: &'a Step,
    spec: &'a CallSpec,
) -> Boxed<'a, Flow> {
    Box::pin(step_inner(run, idx, step, spec))
}

async fn step_inner(run: &mut Run<'_, '_>, idx: usize, step: &Step, spec: &CallSpec) -> Result<Flow> {
    let child = latest_child(run, &step.id).await?;
    let server = run.engine.config.release_gate_waits;
    if let Some(c) = &child
        && (matches!(c.status, ExecStatus::Queued | ExecStatus::Running) || (server && c.status == ExecStatus::Waiting))
    {
        // Another runner has it (a server's worker), or it waits for people or a gate,
        // which wake it on a server: this run waits until it ends.
        if run.steps[idx].status == StepStatus::Waiting {
            // Looked at again, still not done: waiting on, quietly.
            let again = opsbook_store::now_ms() + CHILD_LOOK_AGAIN_MS;
            run.wait_step(idx, WaitKind::Child, Some(again), None).await?;
            return Ok(Flow::Wait);
        }
        let why = format!("waiting for child execution {} ({})", c.id, c.status.phrase());
        return wait(run, idx, step, why).await;
    }
    super::parts::begin_step(run, idx, step);
    run.steps[idx].attempts = run.steps[idx].attempts.max(1);
    run.save_step(idx).await?;
    let inputs = match inputs(run, spec) {
        Ok(i) => i,
        Err(e) => return run.settle(idx, StepStatus::Failed, Some(e)).await,
    };
    // The time the child runs here, this time (a wait for people or a gate is not counted).
    let deadline = opsbook_store::now_ms() + i64::try_from(step.timeout.0.as_millis()).unwrap_or(i64::MAX / 2);
    let (result, timed_out) = match child {
        None => match start(run, step, spec, inputs).await {
            Ok(job) => on_own_task(run, &step.id, deadline, job).await?,
            Err(e) => (Err(e), false),
        },
        Some(c) if matches!(c.status, ExecStatus::Waiting | ExecStatus::Interrupted) => {
            let msg = format!("going on with child execution {}", c.id);
            run.system(Some(&step.id), Phase::Step, &msg).await?;
            let secrets = child_secrets(run, &c, &inputs).await?;
            let interrupted = c.status == ExecStatus::Interrupted;
            let resumed = on_own_task(run, &step.id, deadline, Job::Resume { id: c.id.clone(), secrets }).await?;
            if interrupted && let (Err(e @ Error::Invalid(_)), _) = &resumed {
                // Held by another runner (a resume of its own): waited on, not undone.
                if run.store().execution(&c.id).await?.owner.is_some() {
                    let why = format!("waiting for child execution {}: another runner goes on with it", c.id);
                    return wait(run, idx, step, why).await;
                }
                // It cannot go on (a step of its own that may have partly run): it is
                // undone as a whole, and the step fails saying why.
                let e = e.to_string();
                let e = e.split("; undo").next().unwrap_or_default();
                let why = format!("child execution {} cannot go on: {e}", c.id);
                run.system(Some(&step.id), Phase::Step, &why).await?;
                let undone = rollback_inner(run, idx, spec).await?;
                let how = match undone.error {
                    Some(e) => format!("; {e}"),
                    None => "; it was rolled back".to_string(),
                };
                return run.settle(idx, StepStatus::Failed, Some(format!("{why}{how}"))).await;
            }
            resumed
        }
        Some(c) => (Ok(Outcome { execution_id: c.id, status: c.status, nothing_to_roll_back: false }), false),
    };
    let outcome = match result {
        Ok(o) => o,
        Err(e @ (Error::Invalid(_) | Error::Params(_) | Error::Io(_))) => {
            return run.settle(idx, StepStatus::Failed, Some(e.to_string())).await;
        }
        Err(e) => return Err(e),
    };
    let exec = run.store().execution(&outcome.execution_id).await?;
    let what = format!("child execution {} ({} {})", exec.id, exec.runbook_name, exec.runbook_version);
    match exec.status {
        ExecStatus::Succeeded => {
            run.steps[idx].outputs = outputs(run, &exec).await?;
            run.system(Some(&step.id), Phase::Step, &format!("{what} succeeded")).await?;
            run.settle(idx, StepStatus::Succeeded, None).await
        }
        ExecStatus::Waiting | ExecStatus::Queued | ExecStatus::Running => {
            let on = waits_on(run, &exec).await?;
            wait(run, idx, step, format!("waiting for {what}: {on}")).await
        }
        status => {
            let why = exec.error.clone().unwrap_or_else(|| status.phrase().to_string());
            let (status, error) = if timed_out {
                (
                    StepStatus::TimedOut,
                    format!("{what} did not finish within {} and was cancelled: {why}", step.timeout),
                )
            } else if status == ExecStatus::Cancelled {
                (StepStatus::Cancelled, format!("{what} was cancelled: {why}"))
            } else {
                (StepStatus::Failed, format!("{what} {}: {why}", status.as_str()))
            };
            run.settle(idx, status, Some(error)).await
        }
    }
}

/// Rolls back the child of step `idx` as a whole (every succeeded step's rollback, newest
/// first, recorded in the child's execution).
pub(crate) fn rollback<'a>(run: &'a mut Run<'_, '_>, idx: usize, spec: &'a CallSpec) -> Boxed<'a, AttemptResult> {
    Box::pin(rollback_inner(run, idx, spec))
}

async fn rollback_inner(run: &mut Run<'_, '_>, idx: usize, spec: &CallSpec) -> Result<AttemptResult> {
    let step_id = run.steps[idx].step_id.clone();
    let Some(child) = latest_child(run, &step_id).await? else {
        return Ok(AttemptResult::ok(BTreeMap::new()));
    };
    if child.rollback_status == Some(StepStatus::Succeeded) {
        let msg = format!("child execution {} was rolled back already", child.id);
        run.system(Some(&step_id), Phase::Rollback, &msg).await?;
        return Ok(AttemptResult::ok(BTreeMap::new()));
    }
    let inputs = inputs(run, spec).unwrap_or_default();
    let secrets = child_secrets(run, &child, &inputs).await?;
    let (result, _) = on_own_task(run, &step_id, i64::MAX, Job::Rollback { id: child.id.clone(), secrets }).await?;
    let what = format!("child execution {}", child.id);
    Ok(match result {
        Ok(o) if o.nothing_to_roll_back => {
            run.system(Some(&step_id), Phase::Rollback, &format!("{what}: nothing to roll back")).await?;
            AttemptResult::ok(BTreeMap::new())
        }
        Ok(_) => match run.store().execution(&child.id).await?.rollback_status {
            Some(StepStatus::Succeeded) | None => AttemptResult::ok(BTreeMap::new()),
            Some(StepStatus::Waiting) => AttemptResult::failed(
                StepStatus::Failed,
                format!("{what} waits for a manual rollback to be confirmed; then `opsbook rollback` this execution"),
            ),
            Some(s) => AttemptResult::failed(s, format!("the rollback of {what} {}", s.as_str().replace('_', " "))),
        },
        Err(e) => AttemptResult::fatal(format!("cannot roll back {what}: {e}")),
    })
}

/// Cancels the child a waiting step `idx` waits on (its waiting steps cancelled, its
/// succeeded steps rolled back), as this run is cancelled.
pub(crate) fn cancel_waiting<'a>(run: &'a mut Run<'_, '_>, idx: usize, spec: &'a CallSpec) -> Boxed<'a, ()> {
    Box::pin(cancel_inner(run, idx, spec))
}

async fn cancel_inner(run: &mut Run<'_, '_>, idx: usize, spec: &CallSpec) -> Result<()> {
    let step_id = run.steps[idx].step_id.clone();
    let Some(child) = latest_child(run, &step_id).await? else { return Ok(()) };
    match child.status {
        ExecStatus::Waiting => {
            let msg = format!("cancelling child execution {} (its succeeded steps roll back)", child.id);
            run.system(Some(&step_id), Phase::Step, &msg).await?;
            let result = rollback_inner(run, idx, spec).await?;
            if let Some(e) = result.error {
                run.system(Some(&step_id), Phase::Step, &e).await?;
            }
        }
        // Another runner has it (a worker went on with it after its approval): that
        // runner sees the cancel at its next heartbeat (a queued one, when it is taken).
        ExecStatus::Running | ExecStatus::Queued => {
            run.store().request_cancel(&child.id).await?;
            let msg =
                format!("asked child execution {} to stop (it runs elsewhere; its rollbacks run there)", child.id);
            run.system(Some(&step_id), Phase::Step, &msg).await?;
        }
        _ => {}
    }
    Ok(())
}

/// The step waits on its child, on record and announced.
async fn wait(run: &mut Run<'_, '_>, idx: usize, step: &Step, why: String) -> Result<Flow> {
    run.system(Some(&step.id), Phase::Step, &why).await?;
    // On a server the child's runner wakes this one when the child ends; should that be
    // missed (a crash between), the execution is looked at again after a while.
    let again = run.engine.config.release_gate_waits.then(|| opsbook_store::now_ms() + CHILD_LOOK_AGAIN_MS);
    run.wait_step(idx, WaitKind::Child, again, Some(why.clone())).await?;
    run.event(&Event::Waiting { step_id: &step.id, kind: WaitKind::Child, message: &why });
    Ok(Flow::Wait)
}

/// A child execution made, not stored yet, and what it runs.
struct NewChild {
    runbook: Runbook,
    params: opsbook_core::ParamValues,
    exec: Execution,
    steps: Vec<opsbook_store::StepRecord>,
    warning: Option<String>,
}

/// What a child's own task does.
enum Job {
    /// Stores a new child execution and runs it.
    Start(Box<NewChild>),
    Resume {
        id: String,
        secrets: BTreeMap<String, Input>,
    },
    /// Rolls a child back as a whole (one that succeeded too).
    Rollback {
        id: String,
        secrets: BTreeMap<String, Input>,
    },
}

/// Runs `job` on a task of its own (a child's run is as deep as any run, and would
/// otherwise stack on this one's), with this run's prompt, a cancel that follows this
/// run's and fires at `deadline` (epoch ms), and its events shown as this step's lines.
/// Returns its result and whether the deadline cancelled it.
async fn on_own_task(run: &Run<'_, '_>, step_id: &str, deadline: i64, job: Job) -> Result<(Result<Outcome>, bool)> {
    let (handle, cancel) = cancel_pair();
    let relay = relay_cancel(run, handle.clone(), deadline);
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let engine = run.engine.clone();
    let prompt = run.hooks.prompt.clone();
    let task = tokio::spawn(async move {
        let observer = Nested { lines: tx };
        let hooks = Hooks { observer: &observer, prompt, cancel, cancel_handle: handle };
        match job {
            Job::Start(c) => {
                let NewChild { runbook, params, exec, steps, warning } = *c;
                crate::runner::begin(&engine, runbook, params, (exec, steps), warning, &hooks).await
            }
            Job::Resume { id, secrets } => crate::runner::resume(&engine, &id, &secrets, &hooks).await,
            Job::Rollback { id, secrets } => crate::runner::rollback_child(&engine, &id, &secrets, &hooks).await,
        }
    });
    let mut task = AbortOnDrop(task);
    let show = |(phase, stream, line): (Phase, Stream, String)| {
        run.event(&Event::Log { step_id: Some(step_id), phase, stream, line: &line });
    };
    let result = loop {
        tokio::select! {
            Some(line) = lines.recv() => show(line),
            done = &mut task.0 => break done,
        }
    };
    while let Ok(line) = lines.try_recv() {
        show(line);
    }
    let timed_out = relay.timed_out();
    drop(relay);
    let result = result.map_err(|e| Error::Io(format!("the child execution's task failed: {e}")))?;
    Ok((result, timed_out))
}

/// Aborts the child's task should the step's future be dropped (its runner stopped).
struct AbortOnDrop(tokio::task::JoinHandle<Result<Outcome>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Checks and makes the child execution (linked to this run's step, not stored yet).
async fn start(
    run: &mut Run<'_, '_>,
    step: &Step,
    spec: &CallSpec,
    mut inputs: BTreeMap<String, Input>,
) -> Result<Job> {
    let (runbook, path, has_files) = callee(run, spec).await?;
    // A secret handed on that renders empty was not given to this run (an optional
    // secret left out): not given to the child either, rather than refused as empty.
    inputs.retain(|k, v| {
        !(runbook.param(k).is_some_and(|p| p.is_secret()) && matches!(v, Input::Text(t) if t.is_empty()))
    });
    let chain = ancestors(run).await?;
    if chain.len() > MAX_DEPTH {
        return Err(Error::Invalid(format!(
            "runbooks may call runbooks at most {MAX_DEPTH} deep: {} → {}",
            chain.join(" → "),
            runbook.name
        )));
    }
    if chain.contains(&runbook.name) {
        return Err(Error::Invalid(format!(
            "runbooks call each other in a cycle: {} → {}",
            chain.join(" → "),
            runbook.name
        )));
    }
    let problems = opsbook_core::step::call::param_problems(spec, &run.rb, &runbook);
    if !problems.is_empty() {
        return Err(Error::Invalid(problems.join("; ")));
    }
    let params = opsbook_core::params::check_values(&runbook.params, &inputs).map_err(|errs| {
        let errs: Vec<String> = errs.iter().map(|e| format!("runbook.params.{}", e)).collect();
        Error::Invalid(format!("the parameters of runbook `{}`: {}", runbook.name, errs.join("; ")))
    })?;
    // A secret of this run handed to a parameter the child does not keep secret would be
    // stored and shown in the clear: whatever this run masks (its secrets, and what
    // templates made of them).
    for (name, value) in &params.values {
        let text = value.as_str().map_or_else(|| value.to_string(), str::to_string);
        if !params.secret_names.contains(name) && run.masker().mask(&text) != text {
            return Err(Error::Invalid(format!(
                "parameter `{name}` of runbook `{}` would receive a secret; declare it `type: secret` there",
                runbook.name
            )));
        }
    }
    let warning = crate::check_lifecycle(&runbook, true)?;
    let base_dir = path.as_ref().and_then(|p| p.parent()).map(PathBuf::from).unwrap_or_else(|| run.base_dir.clone());
    let secrets: BTreeMap<String, Input> =
        inputs.into_iter().filter(|(k, _)| params.secret_names.contains(k)).collect();
    let req = StartRequest {
        runbook,
        source_path: path.map(|p| p.display().to_string()),
        base_dir,
        params,
        actor: run.exec.actor.clone(),
        allow_draft: true,
    };
    let (mut exec, steps) = crate::runner::new_execution(run.engine, &req, ExecStatus::Running).await?;
    exec.parent_id = Some(run.exec.id.clone());
    exec.parent_step = Some(step.id.clone());
    if let Some(calls) = &run.engine.config.calls {
        calls.0.prepare(&mut exec, has_files, &secrets).await.map_err(Error::Invalid)?;
    }
    let msg = format!("starting runbook `{}` {} as child execution {}", req.runbook.name, req.runbook.version, exec.id);
    run.system(Some(&step.id), Phase::Step, &msg).await?;
    Ok(Job::Start(Box::new(NewChild { runbook: req.runbook, params: req.params, exec, steps, warning })))
}

/// The runbook a step calls, the path it was read from (a file) and whether it comes with
/// published files.
async fn callee(run: &Run<'_, '_>, spec: &CallSpec) -> Result<(Runbook, Option<PathBuf>, bool)> {
    match &spec.callee {
        Callee::File(file) => {
            let path = run.base_dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::Invalid(format!("cannot read runbook {}: {e}", path.display())))?;
            let rb = opsbook_core::parse(&text).map_err(|d| {
                let first = d.first().map(ToString::to_string).unwrap_or_default();
                Error::Invalid(format!("runbook {} is invalid: {first}", path.display()))
            })?;
            Ok((rb, Some(path), false))
        }
        Callee::Name { name, version } => {
            let Some(calls) = &run.engine.config.calls else {
                return Err(Error::Invalid(format!(
                    "`runbook: {{ name: {name} }}` runs on a server, from its registry; here, call a file \
                     (`runbook: {{ file: ... }}`)"
                )));
            };
            let found = calls.0.resolve(name, version.as_ref()).await.map_err(Error::Invalid)?;
            Ok((found.runbook, None, found.has_files))
        }
    }
}

/// The runbook names from the top execution down to this one.
async fn ancestors(run: &Run<'_, '_>) -> Result<Vec<String>> {
    let mut chain = vec![run.exec.runbook_name.clone()];
    let mut parent = run.exec.parent_id.clone();
    while let Some(id) = parent {
        let exec = run.store().execution(&id).await?;
        chain.insert(0, exec.runbook_name);
        parent = exec.parent_id;
        if chain.len() > MAX_DEPTH + 1 {
            break;
        }
    }
    Ok(chain)
}

/// The child's parameters, rendered (secrets in the clear: they go to the child only).
fn inputs(run: &Run<'_, '_>, spec: &CallSpec) -> std::result::Result<BTreeMap<String, Input>, String> {
    let ctx = run.context(false);
    let mut out = BTreeMap::new();
    for (name, tpl) in &spec.params {
        // An output that held a secret was stored masked: rendering refuses to hand on `***`.
        let value = template::render_plain(tpl, &ctx).map_err(|e| format!("runbook.params.{name}: {e}"))?;
        out.insert(name.clone(), Input::Text(value));
    }
    Ok(out)
}

/// The secret parameters a child gets again when it goes on (or rolls back): those this
/// step hands it.
async fn child_secrets(
    run: &Run<'_, '_>,
    child: &Execution,
    inputs: &BTreeMap<String, Input>,
) -> Result<BTreeMap<String, Input>> {
    let rb = run.engine.stored_runbook(&child.runbook_sha256).await?;
    Ok(inputs
        .iter()
        .filter(|(k, _)| rb.param(k).is_some_and(|p| p.is_secret()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

/// The newest child execution step `step_id` of this run started.
async fn latest_child(run: &Run<'_, '_>, step_id: &str) -> Result<Option<Execution>> {
    child_of(run.store(), &run.exec.id, step_id).await
}

/// The newest child execution that step `step_id` of execution `parent` started.
async fn child_of(store: &crate::Db, parent: &str, step_id: &str) -> Result<Option<Execution>> {
    let children = store.executions(&ExecutionFilter::children(parent)).await?;
    Ok(children.into_iter().find(|c| c.parent_step.as_deref() == Some(step_id)))
}

/// The child's outputs, as the step's: every output of its steps (a later step's wins
/// over an earlier one of the same name), and `execution_id`.
async fn outputs(run: &Run<'_, '_>, child: &Execution) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut out = serde_json::Map::new();
    for s in run.store().steps(&child.id).await? {
        out.extend(s.outputs);
    }
    out.insert("execution_id".into(), child.id.clone().into());
    Ok(out)
}

/// What a waiting child waits on, in words.
async fn waits_on(run: &Run<'_, '_>, child: &Execution) -> Result<String> {
    let steps = run.store().steps(&child.id).await?;
    let Some(s) =
        steps.iter().find(|s| s.status == StepStatus::Waiting || s.rollback_status == Some(StepStatus::Waiting))
    else {
        return Ok(child.status.phrase().to_string());
    };
    Ok(match s.wait_kind {
        Some(WaitKind::Approval) => format!("step `{}` waits for approval", s.step_id),
        Some(WaitKind::Manual) => format!("step `{}` waits for confirmation", s.step_id),
        Some(WaitKind::Gate) => format!("step `{}` waits on a gate", s.step_id),
        Some(WaitKind::Child) | None => format!("step `{}` waits", s.step_id),
    })
}

/// Passes this run's cancels on to the child, and cancels it at `deadline` (epoch ms).
struct Relay {
    task: tokio::task::JoinHandle<()>,
    timed_out: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    fn timed_out(&self) -> bool {
        self.timed_out.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn relay_cancel(run: &Run<'_, '_>, child: crate::CancelHandle, deadline: i64) -> Relay {
    let ours = run.hooks.cancel.clone();
    let timed_out = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = timed_out.clone();
    let left = u64::try_from(deadline.saturating_sub(opsbook_store::now_ms())).unwrap_or(0);
    let task = tokio::spawn(async move {
        let timer = tokio::time::sleep(std::time::Duration::from_millis(left));
        tokio::pin!(timer);
        tokio::select! {
            _ = ours.reached(1) => child.at_least(1),
            _ = &mut timer => {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                child.at_least(1);
            }
        }
        ours.reached(2).await;
        child.at_least(2);
    });
    Relay { task, timed_out }
}

/// Turns a child's events into lines of the step that called it, `[STEP] …` (its own
/// log keeps them under its own steps), sent to the step's runner to show.
struct Nested {
    lines: tokio::sync::mpsc::UnboundedSender<(Phase, Stream, String)>,
}

impl Observer for Nested {
    fn on_event(&self, e: &Event<'_>) {
        let line = match e {
            // The step's own line names the child as it starts.
            Event::Started { start: crate::Start::Fresh, .. } => return,
            Event::Started { execution_id, runbook, version, .. } => {
                format!("child execution {execution_id}: {runbook} {version} goes on")
            }
            Event::Warning { message } => format!("warning: {message}"),
            Event::CheckStarted { .. } => return,
            Event::CheckFinished { description, ok, error, .. } => match (ok, error) {
                (true, _) => format!("prerequisite met: {description}"),
                (false, e) => format!("prerequisite not met: {description} ({})", e.unwrap_or("check failed")),
            },
            Event::StepStarted { step_id, attempt, max_attempts, .. } if *max_attempts > 1 => {
                format!("[{step_id}] started (attempt {attempt} of {max_attempts})")
            }
            Event::StepStarted { step_id, .. } => format!("[{step_id}] started"),
            Event::Log { step_id, phase, stream, line } => {
                let text = format!("[{}] {line}", step_id.unwrap_or("-"));
                let _ = self.lines.send((*phase, *stream, text));
                return;
            }
            Event::StepFinished { step_id, status, error, .. } => match error {
                Some(e) => format!("[{step_id}] {}: {e}", status.as_str().replace('_', " ")),
                None => format!("[{step_id}] {}", status.as_str().replace('_', " ")),
            },
            Event::Waiting { step_id, message, .. } => format!("[{step_id}] waiting: {message}"),
            Event::GateBlocked { step_id, gate, reasons } => format!("[{step_id}] gate `{gate}` blocks: {reasons}"),
            Event::GateCleared { step_id, gate, .. } => format!("[{step_id}] gate `{gate}` is clear"),
            Event::RollbackStarted { step_id } => format!("[{step_id}] rolling back"),
            Event::RollbackFinished { step_id, status, error } => match error {
                Some(e) => format!("[{step_id}] rollback {}: {e}", status.as_str().replace('_', " ")),
                None => format!("[{step_id}] rollback {}", status.as_str().replace('_', " ")),
            },
            // The step's own line says how the child ended.
            Event::Finished { .. } => return,
        };
        let _ = self.lines.send((Phase::Step, Stream::System, line));
    }
}
