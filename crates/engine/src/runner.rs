//! The execution loop: prerequisites, steps with retries, approvals, rollbacks, and
//! the commit of every state change before the next action.

use std::collections::BTreeMap;
use std::path::PathBuf;

use opsbook_core::params::ParamValues;
use opsbook_core::secret::Masker;
use opsbook_core::template::{self, Context, StepContext};
use opsbook_core::{ExecStatus, Input, OnFailure, Runbook, Step, StepKind, StepStatus};
use opsbook_store::{
    Attempt, Execution, Phase, RunbookVersion, StepRecord, Store, Stream, WaitKind, id::new_id, now_ms,
};
use tokio::task::JoinHandle;

use crate::kinds::{self, AttemptResult};
use crate::logsink::LogSink;
use crate::observer::{Event, Start};
use crate::{Engine, Error, Hooks, Outcome, Result, StartRequest, check_lifecycle};

/// What a re-check of the gates before a step decided.
pub(crate) enum Recheck {
    Go,
    Stop(String),
    Wait,
}

/// What became of a step.
pub(crate) enum Flow {
    Done(StepStatus),
    Wait,
}

pub(crate) struct Run<'e, 'h, S: Store> {
    pub engine: &'e Engine<S>,
    pub hooks: &'h Hooks<'h>,
    pub rb: Runbook,
    pub exec: Execution,
    pub steps: Vec<StepRecord>,
    pub params: ParamValues,
    pub sink: LogSink<S>,
    pub base_dir: PathBuf,
    heartbeat: Option<JoinHandle<()>>,
    http: Option<reqwest::Client>,
    scratch: Option<tempfile::TempDir>,
    files: u64,
    /// A step's final attempt, written with the next state change (see `save_step`).
    deferred: Option<(Attempt, usize)>,
    /// This run only polls a waiting gate (the server's gate pool, not a worker): when
    /// the gate is clear it queues the execution for a worker instead of going on.
    pub gate_poll_only: bool,
}

impl<S: Store> Drop for Run<'_, '_, S> {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

fn secret_digest(id: &str, value: &str) -> String {
    opsbook_core::sha256_hex(format!("{id}:{value}").as_bytes())
}

/// The records of a new execution: the execution (in `status`) and its pending steps.
/// Also stores the runbook text it will run.
pub async fn new_execution<S: Store>(
    engine: &Engine<S>,
    req: &StartRequest,
    status: ExecStatus,
) -> Result<(Execution, Vec<StepRecord>)> {
    let rb = &req.runbook;
    let now = now_ms();
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
        params: req.params.masked(),
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
    };
    let steps: Vec<StepRecord> = rb
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| StepRecord::pending(&id, i as i64, &s.id, &s.name, s.kind.name()))
        .collect();
    Ok((exec, steps))
}

pub(crate) async fn start<S: Store>(engine: &Engine<S>, req: StartRequest, hooks: &Hooks<'_>) -> Result<Outcome> {
    let warning = check_lifecycle(&req.runbook, req.allow_draft)?;
    let (exec, steps) = new_execution(engine, &req, ExecStatus::Running).await?;
    engine.store.create_execution(&exec, &steps).await?;
    let id = exec.id.clone();
    let mut run = Run::new(engine, hooks, req.runbook, exec, steps, req.params, 0);
    run.event(&Event::Started {
        execution_id: &id,
        runbook: &run.rb.name,
        version: &run.exec.runbook_version,
        start: Start::Fresh,
    });
    if let Some(w) = warning {
        run.event(&Event::Warning { message: &w });
        run.system(None, Phase::Check, &format!("warning: {w}")).await?;
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
pub(crate) async fn run_claimed<S: Store>(
    engine: &Engine<S>,
    id: &str,
    secrets: &BTreeMap<String, Input>,
    hooks: &Hooks<'_>,
    gate_poll_only: bool,
) -> Result<Outcome> {
    let mut run = load(engine, id, secrets, hooks).await?;
    run.gate_poll_only = gate_poll_only;
    // A cancel asked for while another runner had the execution (e.g. mid gate check)
    // is still owed.
    if run.exec.cancel_requested && run.cancel_level() == 0 {
        hooks.cancel_handle.escalate();
    }
    let fresh = run.steps.iter().all(|s| s.status == StepStatus::Pending);
    // Waiting on a gate: back to look again, not resumed.
    let start = match (fresh, run.waits_on(WaitKind::Gate), run.waits_on(WaitKind::Approval)) {
        (true, _, _) => Start::Fresh,
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
    if run.cancel_level() >= 1 && (run.waits_on(WaitKind::Approval) || run.waits_on(WaitKind::Gate)) {
        let why = if run.waits_on(WaitKind::Approval) {
            "cancelled while waiting for approval"
        } else {
            "cancelled while waiting on a gate"
        };
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
async fn load<'e, 'h, S: Store>(
    engine: &'e Engine<S>,
    id: &str,
    secrets: &BTreeMap<String, Input>,
    hooks: &'h Hooks<'h>,
) -> Result<Run<'e, 'h, S>> {
    let store = &engine.store;
    let exec = store.execution(id).await?;
    let rb = Runbook::clone(&*engine.stored_runbook(&exec.runbook_sha256).await?);
    let params = restore_params(&rb, &exec, secrets)?;
    let steps = store.steps(&exec.id).await?;
    if steps.len() != rb.steps.len() {
        return Err(Error::Invalid(format!(
            "execution {} has {} step records for a runbook of {} steps",
            exec.id,
            steps.len(),
            rb.steps.len()
        )));
    }
    let last_seq = store.last_log_seq(&exec.id).await?;
    Ok(Run::new(engine, hooks, rb, exec, steps, params, last_seq))
}

pub(crate) async fn check_secrets<S: Store>(
    engine: &Engine<S>,
    id: &str,
    secrets: &BTreeMap<String, Input>,
) -> Result<()> {
    let exec = engine.store.execution(id).await?;
    let rb = engine.stored_runbook(&exec.runbook_sha256).await?;
    restore_params(&rb, &exec, secrets).map(|_| ())
}

/// Stored (masked) values plus the secrets supplied again, checked against their digests.
fn restore_params(rb: &Runbook, exec: &Execution, secrets: &BTreeMap<String, Input>) -> Result<ParamValues> {
    let mut out = ParamValues::default();
    let mut errors = Vec::new();
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
                    _ => errors.push(opsbook_core::ParamError {
                        param: name.clone(),
                        message: "differs from the value the execution started with".into(),
                    }),
                },
                (None, Some(_)) => errors.push(opsbook_core::ParamError {
                    param: name.clone(),
                    message: "is a secret and is never stored: pass it again with -p".into(),
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

/// Holds a stopped execution for this engine's owner before acting on it, so that two
/// commands (two `rollback`s, a `rollback` and a `resume`) never act at once. A holder
/// that is a dead local process is taken over; a live one is named in the refusal.
async fn claim<S: Store>(engine: &Engine<S>, id: &str) -> Result<String> {
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
        None => format!("execution {} is {} now", now.id, now.status),
    }))
}

/// Runs `act` on an execution held by [`claim`]; lets go of it if `act` fails before
/// the execution finished or was handed back.
async fn claimed<S: Store, F: Future<Output = Result<Outcome>>>(
    engine: &Engine<S>,
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

pub(crate) async fn resume<S: Store>(
    engine: &Engine<S>,
    id: &str,
    secrets: &BTreeMap<String, Input>,
    hooks: &Hooks<'_>,
) -> Result<Outcome> {
    claimed(engine, id, |id| async move { resume_claimed(engine, &id, secrets, hooks).await }).await
}

async fn resume_claimed<S: Store>(
    engine: &Engine<S>,
    id: &str,
    secrets: &BTreeMap<String, Input>,
    hooks: &Hooks<'_>,
) -> Result<Outcome> {
    let mut run = load(engine, id, secrets, hooks).await?;
    let id = run.exec.id.clone();
    let from = match run.exec.status {
        ExecStatus::Waiting => run.steps.iter().position(|s| s.status == StepStatus::Waiting).unwrap_or(0),
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
            let hit = run.steps.iter().position(|s| {
                s.status == StepStatus::Cancelled && s.error.as_deref().is_some_and(|e| e.starts_with("interrupted"))
            });
            match hit {
                Some(i) if !run.rb.steps[i].idempotent => {
                    return Err(Error::Invalid(format!(
                        "step `{}` was interrupted and is not idempotent, so it may have partly run; \
                         undo the steps that succeeded with `opsbook rollback {id}`",
                        run.rb.steps[i].id
                    )));
                }
                Some(i) => {
                    run.steps[i].status = StepStatus::Pending;
                    run.steps[i].error = None;
                    i
                }
                None => run.steps.iter().position(|s| s.status == StepStatus::Pending).unwrap_or(run.steps.len()),
            }
        }
        ExecStatus::Running => {
            return Err(Error::Invalid(format!(
                "execution {id} is still running ({})",
                run.exec.owner.as_deref().unwrap_or("unknown owner")
            )));
        }
        other => {
            return Err(Error::Invalid(format!(
                "execution {id} is {other}; only waiting or interrupted executions can resume"
            )));
        }
    };
    if run.exec.rollback_status.is_some() {
        return Err(Error::Invalid(format!("execution {id} was rolled back; it cannot resume")));
    }
    let now = now_ms();
    run.exec.status = ExecStatus::Running;
    run.exec.error = None;
    run.exec.finished_at = None;
    run.exec.owner = Some(engine.config.owner.clone());
    run.exec.lease_expires_at = Some(now + engine.config.lease_ms());
    run.exec.heartbeat_at = Some(now);
    engine.store.update_execution(&run.exec).await?;
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

pub(crate) async fn rollback_only<S: Store>(
    engine: &Engine<S>,
    id: &str,
    secrets: &BTreeMap<String, Input>,
    hooks: &Hooks<'_>,
) -> Result<Outcome> {
    claimed(engine, id, |id| async move { rollback_claimed(engine, &id, secrets, hooks).await }).await
}

async fn rollback_claimed<S: Store>(
    engine: &Engine<S>,
    id: &str,
    secrets: &BTreeMap<String, Input>,
    hooks: &Hooks<'_>,
) -> Result<Outcome> {
    let mut run = load(engine, id, secrets, hooks).await?;
    let id = run.exec.id.clone();
    if run.exec.status == ExecStatus::Running {
        return Err(Error::Invalid(format!("execution {id} is still running; cancel it first")));
    }
    if run.exec.status == ExecStatus::Succeeded {
        return Err(Error::Invalid(format!("execution {id} succeeded; rolling back a success is not supported")));
    }
    if run.exec.rollback_status == Some(StepStatus::Succeeded) {
        return Err(Error::Invalid(format!("execution {id} was already rolled back")));
    }
    // Nothing to undo and nothing waiting to cancel: change nothing (not even the
    // finish time, which analytics read).
    if run.exec.status != ExecStatus::Waiting && run.rollbacks_left().is_empty() {
        engine.store.release(&id, &engine.config.owner).await?;
        return Ok(Outcome { execution_id: id, status: run.exec.status, nothing_to_roll_back: true });
    }
    // The claim holds while the rollbacks run (and a cancel asked for meanwhile is seen).
    run.start_heartbeat();
    if run.exec.status == ExecStatus::Waiting {
        let why = if run.waits_on(WaitKind::Approval) {
            "cancelled while waiting for approval"
        } else {
            "cancelled while waiting on a gate"
        };
        for s in run.steps.iter_mut().filter(|s| s.status == StepStatus::Waiting) {
            s.status = StepStatus::Cancelled;
            s.finished_at = Some(now_ms());
            s.error = Some(why.into());
            engine.store.update_step(s).await?;
        }
        run.exec.status = ExecStatus::Cancelled;
        run.exec.error = Some(why.into());
    }
    run.rollback_all().await?;
    let status = run.exec.status;
    run.finish(status).await?;
    run.outcome()
}

impl<'e, 'h, S: Store> Run<'e, 'h, S> {
    fn new(
        engine: &'e Engine<S>,
        hooks: &'h Hooks<'h>,
        rb: Runbook,
        exec: Execution,
        steps: Vec<StepRecord>,
        params: ParamValues,
        last_seq: i64,
    ) -> Self {
        let masker = Masker::new(params.secret_values());
        let sink = LogSink::new(engine.store.clone(), &exec.id, last_seq, masker);
        let base_dir = PathBuf::from(&exec.base_dir);
        Run {
            engine,
            hooks,
            rb,
            exec,
            steps,
            params,
            sink,
            base_dir,
            heartbeat: None,
            http: None,
            scratch: None,
            files: 0,
            deferred: None,
            gate_poll_only: false,
        }
    }

    pub fn store(&self) -> &S {
        &self.engine.store
    }

    pub fn event(&self, e: &Event<'_>) {
        self.hooks.observer.on_event(e);
    }

    pub fn masker(&self) -> &Masker {
        self.sink.masker()
    }

    pub fn cancel_level(&self) -> u8 {
        self.hooks.cancel.level()
    }

    fn outcome(&self) -> Result<Outcome> {
        Ok(Outcome { execution_id: self.exec.id.clone(), status: self.exec.status, nothing_to_roll_back: false })
    }

    /// A message from opsbook itself, shown and stored with the logs.
    pub async fn system(&mut self, step_id: Option<&str>, phase: Phase, msg: &str) -> Result<()> {
        self.sink.push(self.hooks.observer, step_id, phase, 0, Stream::System, msg.as_bytes());
        self.sink.flush().await?;
        Ok(())
    }

    /// A fresh path in this run's scratch directory (removed when the run ends). The file
    /// is not created: `>> "$OPSBOOK_OUTPUT"` creates it, and most steps never do.
    pub fn scratch_path(&mut self, prefix: &str) -> Result<PathBuf> {
        if self.scratch.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("opsbook-")
                .tempdir()
                .map_err(|e| Error::Io(format!("cannot create a temporary directory: {e}")))?;
            self.scratch = Some(dir);
        }
        self.files += 1;
        Ok(self.scratch.as_ref().expect("just created").path().join(format!("{prefix}-{}", self.files)))
    }

    pub fn http_client(&mut self) -> Result<reqwest::Client> {
        if self.http.is_none() {
            let client = reqwest::Client::builder()
                .user_agent(concat!("opsbook/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Error::Io(format!("cannot create the HTTP client: {e}")))?;
            self.http = Some(client);
        }
        Ok(self.http.clone().expect("just created"))
    }

    fn start_heartbeat(&mut self) {
        let store = self.engine.store.clone();
        let id = self.exec.id.clone();
        let owner = self.engine.config.owner.clone();
        let lease = self.engine.config.lease_ms();
        let every = self.engine.config.heartbeat;
        let cancel = self.hooks.cancel_handle.clone();
        self.heartbeat = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Ok(true) = store.heartbeat(&id, &owner, lease).await {
                    cancel.at_least(1);
                }
            }
        }));
    }

    /// What templates see. `masked`: secrets replaced, for display.
    pub fn context(&self, masked: bool) -> Context {
        let params = if masked {
            self.params.masked()
        } else {
            serde_json::Value::Object(self.params.values.clone().into_iter().collect())
        };
        let steps = self
            .steps
            .iter()
            .filter(|s| s.status != StepStatus::Pending)
            .map(|s| {
                let outputs = s
                    .outputs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                    .collect();
                (s.step_id.clone(), StepContext { status: s.status.as_str().to_string(), outputs })
            })
            .collect();
        Context { params, steps: std::sync::Arc::new(steps), execution_id: self.exec.id.clone(), placeholders: false }
    }

    /// Runs the prerequisite checks; false when one failed (the execution is then finished).
    async fn prerequisites(&mut self) -> Result<bool> {
        let prereqs = self.rb.prerequisites.clone();
        for (i, p) in prereqs.iter().enumerate() {
            let Some(check) = &p.check else {
                self.event(&Event::CheckFinished {
                    description: &p.description,
                    checked: false,
                    ok: true,
                    error: None,
                });
                continue;
            };
            self.event(&Event::CheckStarted { description: &p.description });
            let name = format!("prerequisite-{}", i + 1);
            let started = now_ms();
            let result = match template::render_shell(&check.template, &self.context(false)) {
                Ok(text) => {
                    let timeout = check.timeout.map_or(std::time::Duration::from_secs(300), |d| d.0);
                    let sr = kinds::run::ScriptRun {
                        text: &text,
                        script: check,
                        timeout,
                        step_id: None,
                        phase: Phase::Check,
                        attempt: 1,
                        validations: &[],
                        cancel_level: 1,
                    };
                    kinds::run::exec_script(self, &sr).await?
                }
                Err(e) => AttemptResult::fatal(format!("check.run: {e}")),
            };
            self.record(&name, Phase::Check, 1, started, &result, None).await?;
            let ok = result.status == StepStatus::Succeeded;
            let error = result.error.clone().map(|e| self.masker().mask(&e).into_owned());
            self.event(&Event::CheckFinished {
                description: &p.description,
                checked: true,
                ok,
                error: error.as_deref(),
            });
            if !ok {
                let status =
                    if result.status == StepStatus::Cancelled { ExecStatus::Cancelled } else { ExecStatus::Failed };
                self.exec.error = Some(format!(
                    "prerequisite not met: {} ({})",
                    p.description,
                    error.unwrap_or_else(|| "check failed".into())
                ));
                self.finish(status).await?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub async fn record(
        &mut self,
        step_id: &str,
        phase: Phase,
        attempt: u32,
        started: i64,
        r: &AttemptResult,
        step_idx: Option<usize>,
    ) -> Result<()> {
        self.flush_deferred().await?;
        let attempt = self.attempt_row(step_id, phase, attempt, started, r);
        let steps: Vec<&StepRecord> = step_idx.map(|i| &self.steps[i]).into_iter().collect();
        self.store().record_attempt(&attempt, &steps).await?;
        Ok(())
    }

    fn attempt_row(&self, step_id: &str, phase: Phase, attempt: u32, started: i64, r: &AttemptResult) -> Attempt {
        Attempt {
            execution_id: self.exec.id.clone(),
            step_id: step_id.to_string(),
            phase,
            attempt: i64::from(attempt),
            status: r.status,
            exit_code: r.exit_code.map(i64::from),
            started_at: started,
            finished_at: now_ms(),
            error: r.error.as_ref().map(|e| self.masker().mask(e).into_owned()),
        }
    }

    /// Commits a step's state. A step's final attempt is written together with this
    /// write (usually the next step's start): one transaction per step on the hot path,
    /// and still committed before the next action.
    pub async fn save_step(&mut self, idx: usize) -> Result<()> {
        match self.deferred.take() {
            Some((attempt, prev)) if prev != idx => {
                self.store().record_attempt(&attempt, &[&self.steps[prev], &self.steps[idx]]).await?
            }
            Some((attempt, prev)) => self.store().record_attempt(&attempt, &[&self.steps[prev]]).await?,
            None => self.store().update_step(&self.steps[idx]).await?,
        }
        Ok(())
    }

    /// Writes a step's final attempt if it is still waiting to go out with the next write.
    pub async fn flush_deferred(&mut self) -> Result<()> {
        if let Some((attempt, idx)) = self.deferred.take() {
            self.store().record_attempt(&attempt, &[&self.steps[idx]]).await?;
        }
        Ok(())
    }

    /// Runs the steps from `from` on, until the end, a failure, a cancel or a wait.
    async fn drive(&mut self, from: usize) -> Result<()> {
        for idx in from..self.rb.steps.len() {
            let step = self.rb.steps[idx].clone();
            if self.cancel_level() >= 1 {
                return self.stop(ExecStatus::Cancelled, "cancelled".to_string()).await;
            }
            let status = self.steps[idx].status;
            if status == StepStatus::Succeeded
                || status == StepStatus::Skipped
                || (status.is_failure() && !step.required)
            {
                continue;
            }
            match self.recheck_gates(idx, &step).await? {
                Recheck::Go => {}
                Recheck::Stop(why) => return self.stop(ExecStatus::Failed, why).await,
                Recheck::Wait if self.cancel_level() >= 1 => {
                    return self.stop(ExecStatus::Cancelled, format!("cancelled before step `{}`", step.id)).await;
                }
                Recheck::Wait => return self.park().await,
            }
            // A gate poll never runs anything but gates: once they are clear, the rest
            // is a worker's.
            if self.gate_poll_only && !matches!(step.kind, StepKind::Gate(_)) {
                self.save_step(idx).await?;
                return self.requeue().await;
            }
            // Kept in memory and written with the next execution update: the step rows
            // already say which step runs, and one write less per step matters.
            self.exec.current_step = Some(idx as i64);

            let flow = match self.condition(idx, &step).await? {
                Some(flow) => flow,
                None => match &step.kind {
                    StepKind::Approval(spec) => kinds::approval::run(self, idx, &step, spec).await?,
                    StepKind::Gate(spec) if self.engine.config.release_gate_waits => {
                        kinds::gate::run_released(self, idx, &step, spec).await?
                    }
                    _ => self.attempts(idx, &step).await?,
                },
            };
            match flow {
                Flow::Wait if self.cancel_level() >= 1 => {
                    return self.stop(ExecStatus::Cancelled, format!("cancelled during step `{}`", step.id)).await;
                }
                Flow::Wait => return self.park().await,
                Flow::Done(StepStatus::Succeeded | StepStatus::Skipped) => {}
                Flow::Done(StepStatus::Cancelled) => {
                    return self.stop(ExecStatus::Cancelled, format!("cancelled during step `{}`", step.id)).await;
                }
                Flow::Done(s) if !step.required => {
                    let msg = format!("step `{}` {} but is not required; continuing", step.id, describe(s));
                    self.system(Some(&step.id), Phase::Step, &msg).await?;
                }
                Flow::Done(s) => {
                    let why = self.steps[idx].error.clone().unwrap_or_default();
                    let msg = format!("step `{}` {}: {why}", step.id, describe(s));
                    return self.stop(ExecStatus::Failed, msg).await;
                }
            }
        }
        self.finish(ExecStatus::Succeeded).await
    }

    /// Whether a step waits, for the given reason.
    fn waits_on(&self, what: WaitKind) -> bool {
        self.steps.iter().any(|rec| rec.status == StepStatus::Waiting && rec.wait_kind == Some(what))
    }

    /// The execution waits (for people or a gate) and gives its runner back.
    async fn park(&mut self) -> Result<()> {
        self.hand_back(ExecStatus::Waiting).await
    }

    /// Back to the queue for a worker, after a gate poll found every gate clear.
    async fn requeue(&mut self) -> Result<()> {
        self.hand_back(ExecStatus::Queued).await
    }

    async fn hand_back(&mut self, status: ExecStatus) -> Result<()> {
        self.exec.status = status;
        self.exec.owner = None;
        self.exec.lease_expires_at = None;
        self.flush_deferred().await?;
        self.store().update_execution(&self.exec).await?;
        self.stop_heartbeat();
        Ok(())
    }

    /// Before step `idx`: every earlier gate step that passed with `recheck: between_steps`
    /// is checked again. In place (waiting or failing as it says), or — on the server, for
    /// `on_blocked: wait` — by parking the execution until the next poll.
    async fn recheck_gates(&mut self, idx: usize, step: &Step) -> Result<Recheck> {
        let gates: Vec<(String, opsbook_core::step::gate::GateStepSpec)> = (0..idx)
            // An admin's override (break glass) waives a gate for the rest of the run.
            // (not the gate step just before: it has only now been checked)
            .filter(|&i| {
                i + 1 < idx && self.steps[i].status == StepStatus::Succeeded && self.steps[i].overridden_by.is_none()
            })
            .filter_map(|i| match &self.rb.steps[i].kind {
                StepKind::Gate(g) if g.recheck.is_some() => Some((self.rb.steps[i].id.clone(), g.clone())),
                _ => None,
            })
            .collect();
        for (gate_step, spec) in gates {
            let def = match spec.resolve(&self.engine.config.gates.snapshot(), &self.base_dir) {
                Ok(d) => d,
                Err(e) => {
                    return Ok(Recheck::Stop(format!(
                        "gate `{}` (recheck before step `{}`): {e}",
                        spec.name(),
                        step.id
                    )));
                }
            };
            let release = self.engine.config.release_gate_waits
                && spec.on_blocked == opsbook_core::step::gate::OnBlocked::Wait
                && !matches!(step.kind, StepKind::Approval(_));
            if release {
                match kinds::gate::recheck_released(self, idx, &gate_step, &spec, &def).await? {
                    Recheck::Go => continue,
                    other => return Ok(other),
                }
            }
            let r = kinds::gate::wait_until_clear(self, &gate_step, &spec, &def).await?;
            if r.status != StepStatus::Succeeded {
                let why = r.error.unwrap_or_default();
                return Ok(Recheck::Stop(format!("recheck before step `{}`: {why}", step.id)));
            }
        }
        Ok(Recheck::Go)
    }

    /// Evaluates `when`; `Some` when the step is settled without running (skipped or failed).
    async fn condition(&mut self, idx: usize, step: &Step) -> Result<Option<Flow>> {
        let Some(when) = &step.when else {
            return Ok(None);
        };
        let (status, error) = match template::eval_condition(when, &self.context(false)) {
            Ok(true) => return Ok(None),
            Ok(false) => (StepStatus::Skipped, None),
            Err(e) => (StepStatus::Failed, Some(format!("when: {e}"))),
        };
        let now = now_ms();
        let rec = &mut self.steps[idx];
        rec.status = status;
        rec.started_at = Some(now);
        rec.finished_at = Some(now);
        rec.error = error.clone();
        self.save_step(idx).await?;
        self.event(&Event::StepFinished { idx, step_id: &step.id, status, duration_ms: 0, error: error.as_deref() });
        Ok(Some(Flow::Done(status)))
    }

    /// Runs the attempts of a run/http/sleep step, with retries and backoff.
    async fn attempts(&mut self, idx: usize, step: &Step) -> Result<Flow> {
        let max = step.attempts();
        let first = u32::try_from(self.steps[idx].attempts).unwrap_or(0) + 1;
        let mut n = 0;
        loop {
            let attempt = first + n;
            let started = now_ms();
            {
                let rec = &mut self.steps[idx];
                rec.status = StepStatus::Running;
                rec.started_at.get_or_insert(started);
                rec.finished_at = None;
                rec.attempts = i64::from(attempt);
                rec.error = None;
            }
            self.steps[idx].rendered = kinds::display(self, step);
            self.save_step(idx).await?;
            self.event(&Event::StepStarted {
                idx,
                step_id: &step.id,
                name: &step.name,
                attempt: n + 1,
                max_attempts: max,
            });
            let result = match &step.kind {
                StepKind::Run(script) => kinds::run::attempt(self, step, script, attempt).await?,
                StepKind::Http(spec) => kinds::http::attempt(self, step, spec, attempt).await?,
                StepKind::Sleep(spec) => kinds::sleep::attempt(self, spec).await,
                StepKind::Gate(spec) => kinds::gate::attempt(self, &step.id, spec).await?,
                StepKind::Approval(_) => unreachable!("approvals are not attempted"),
            };
            self.sink.flush().await?;
            let finished = now_ms();
            let error = result.error.as_ref().map(|e| self.masker().mask(e).into_owned());
            let last = result.status == StepStatus::Succeeded
                || result.status == StepStatus::Cancelled
                || !result.retryable
                || n + 1 >= max;
            {
                let masker = self.sink.masker().clone();
                let rec = &mut self.steps[idx];
                rec.exit_code = result.exit_code.map(i64::from);
                rec.error = error.clone();
                if result.status == StepStatus::Succeeded {
                    rec.outputs =
                        result.outputs.iter().map(|(k, v)| (k.clone(), masker.mask(v).into_owned().into())).collect();
                }
                if last {
                    rec.status = result.status;
                    rec.finished_at = Some(finished);
                }
            }
            if last {
                self.flush_deferred().await?;
                let row = self.attempt_row(&step.id, Phase::Step, attempt, started, &result);
                self.deferred = Some((row, idx));
            } else {
                self.record(&step.id, Phase::Step, attempt, started, &result, Some(idx)).await?;
            }
            if last {
                let duration_ms = finished - self.steps[idx].started_at.unwrap_or(finished);
                self.event(&Event::StepFinished {
                    idx,
                    step_id: &step.id,
                    status: result.status,
                    duration_ms,
                    error: error.as_deref(),
                });
                return Ok(Flow::Done(result.status));
            }
            let delay = step.retries.as_ref().map(|r| r.delay_before(n)).unwrap_or_default();
            let msg = format!(
                "attempt {} of {max} {}: {}; retrying in {}",
                n + 1,
                describe(result.status),
                error.unwrap_or_default(),
                opsbook_core::duration::human_ms(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
            );
            self.system(Some(&step.id), Phase::Step, &msg).await?;
            let cancel = self.hooks.cancel.clone();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cancel.reached(1) => {
                    let rec = &mut self.steps[idx];
                    rec.status = StepStatus::Cancelled;
                    rec.finished_at = Some(now_ms());
                    rec.error = Some("cancelled while waiting to retry".into());
                    self.save_step(idx).await?;
                    self.event(&Event::StepFinished { idx, step_id: &step.id, status: StepStatus::Cancelled, duration_ms: 0, error: Some("cancelled") });
                    return Ok(Flow::Done(StepStatus::Cancelled));
                }
            }
            n += 1;
        }
    }

    /// Ends the run as failed or cancelled, rolling back first when the runbook says so.
    async fn stop(&mut self, status: ExecStatus, error: String) -> Result<()> {
        // Nothing waits any more: a step held by a gate's recheck never ran (pending
        // again); a gate or approval step that waited was cancelled with the run.
        for idx in 0..self.steps.len() {
            if self.steps[idx].status != StepStatus::Waiting {
                continue;
            }
            let held = !matches!(self.rb.steps[idx].kind, StepKind::Approval(_) | StepKind::Gate(_));
            let rec = &mut self.steps[idx];
            rec.wait_deadline = None;
            if held {
                rec.status = StepStatus::Pending;
                rec.started_at = None;
            } else {
                rec.status = StepStatus::Cancelled;
                rec.finished_at = Some(now_ms());
            }
            self.save_step(idx).await?;
        }
        // On record as running while rollbacks run (a gate poll held it as waiting).
        self.exec.status = ExecStatus::Running;
        self.exec.error = Some(self.masker().mask(&error).into_owned());
        // The failure is on record before any rollback runs.
        self.flush_deferred().await?;
        self.store().update_execution(&self.exec).await?;
        if self.rb.on_failure == OnFailure::Rollback && self.cancel_level() < 2 {
            self.rollback_all().await?;
        }
        self.finish(status).await
    }

    pub async fn finish(&mut self, status: ExecStatus) -> Result<()> {
        self.sink.flush().await?;
        self.exec.status = status;
        // A later rollback of a finished execution does not move its finish (or duration).
        self.exec.finished_at.get_or_insert_with(now_ms);
        self.exec.owner = None;
        self.exec.lease_expires_at = None;
        self.flush_deferred().await?;
        self.store().update_execution(&self.exec).await?;
        self.stop_heartbeat();
        self.event(&Event::Finished { status });
        Ok(())
    }

    fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }

    /// The steps whose rollback is still to run, newest first: they succeeded, have a
    /// rollback, and it has not succeeded yet.
    fn rollbacks_left(&self) -> Vec<usize> {
        (0..self.steps.len())
            .rev()
            .filter(|&i| {
                self.steps[i].status == StepStatus::Succeeded
                    && self.rb.steps[i].rollback.is_some()
                    && self.steps[i].rollback_status != Some(StepStatus::Succeeded)
            })
            .collect()
    }

    /// Runs the rollback of every succeeded step, newest first. A failing rollback is
    /// recorded and the others still run; a second cancel skips the rest. Rollbacks that
    /// already succeeded never run twice; ones that failed or were skipped run again
    /// (that is what `opsbook rollback` is for after fixing the cause).
    pub async fn rollback_all(&mut self) -> Result<()> {
        let todo = self.rollbacks_left();
        if todo.is_empty() {
            return Ok(());
        }
        let mut overall = StepStatus::Succeeded;
        for idx in todo {
            let step = self.rb.steps[idx].clone();
            let script = step.rollback.as_ref().expect("filtered on rollback");
            if self.cancel_level() >= 2 {
                self.steps[idx].rollback_status = Some(StepStatus::Cancelled);
                self.steps[idx].rollback_error = Some("skipped: cancelled twice".into());
                self.save_step(idx).await?;
                overall = StepStatus::Cancelled;
                continue;
            }
            self.event(&Event::RollbackStarted { step_id: &step.id });
            // On record before it runs: a rollback never runs (or runs again) unrecorded.
            let again = self.steps[idx].rollback_status.is_some();
            self.steps[idx].rollback_status = Some(StepStatus::Running);
            self.steps[idx].rollback_error = None;
            self.save_step(idx).await?;
            if again {
                let msg = format!("running the rollback of step `{}` again (it did not succeed before)", step.id);
                self.system(Some(&step.id), Phase::Rollback, &msg).await?;
            }
            let started = now_ms();
            let result = match template::render_shell(&script.template, &self.context(false)) {
                Ok(text) => {
                    let timeout = script.timeout.unwrap_or(step.timeout).0;
                    let sr = kinds::run::ScriptRun {
                        text: &text,
                        script,
                        timeout,
                        step_id: Some(&step.id),
                        phase: Phase::Rollback,
                        attempt: 1,
                        validations: &[],
                        cancel_level: 2,
                    };
                    kinds::run::exec_script(self, &sr).await?
                }
                Err(e) => AttemptResult::fatal(format!("rollback.run: {e}")),
            };
            self.sink.flush().await?;
            let error = result.error.as_ref().map(|e| self.masker().mask(e).into_owned());
            let rec = &mut self.steps[idx];
            rec.rollback_status = Some(result.status);
            rec.rollback_exit_code = result.exit_code.map(i64::from);
            rec.rollback_error = error.clone();
            self.record(&step.id, Phase::Rollback, 1, started, &result, Some(idx)).await?;
            self.event(&Event::RollbackFinished { step_id: &step.id, status: result.status, error: error.as_deref() });
            if result.status != StepStatus::Succeeded && overall == StepStatus::Succeeded {
                overall =
                    if result.status == StepStatus::Cancelled { StepStatus::Cancelled } else { StepStatus::Failed };
            }
        }
        self.exec.rollback_status = Some(overall);
        self.flush_deferred().await?;
        self.store().update_execution(&self.exec).await?;
        Ok(())
    }
}

fn describe(s: StepStatus) -> &'static str {
    match s {
        StepStatus::TimedOut => "timed out",
        StepStatus::Cancelled => "was cancelled",
        _ => "failed",
    }
}
