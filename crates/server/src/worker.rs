//! The worker pool: claims queued executions with a lease, runs them, and gives the
//! worker back when an execution waits for approval.

use std::path::{Path, PathBuf};
use std::time::Duration;

use opsbook_core::ExecStatus;
use opsbook_engine::{Hooks, Loaded, cancel_pair};
use opsbook_store::{Execution, ServerStore, Store, now_ms};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::AppState;

pub fn spawn(state: &AppState, n: usize, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    (0..n).map(|_| tokio::spawn(worker(state.clone(), stop.clone()))).collect()
}

async fn worker(state: AppState, mut stop: watch::Receiver<bool>) {
    let lease = state.engine.config.lease_ms();
    loop {
        if *stop.borrow() {
            return;
        }
        match state.store.claim_next(&state.engine.config.owner, lease).await {
            Ok(Some(c)) => {
                run_guarded_then(&state, c.execution, Some((c.steps, c.last_seq)), RunKind::Whole, None).await
            }
            Ok(None) => {
                tokio::select! {
                    _ = state.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.changed() => {}
                }
            }
            Err(e) => {
                tracing::error!(%e, "cannot claim an execution");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// What a runner does with an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunKind {
    /// All of it (a worker).
    Whole,
    /// Only a poll of the gate it waits on (the gate pool).
    GatePoll,
    /// Goes on with a stopped one (`POST …/resume`, checked by the caller).
    Resume,
    /// Rolls a stopped one back (`POST …/rollback`, checked by the caller).
    Rollback,
}

/// Runs a claimed execution on a task of its own, so that nothing in one execution (a
/// panic included) takes its worker down: the execution fails with what happened, and
/// the worker goes on to the next.
async fn run_guarded(state: &AppState, exec: Execution, kind: RunKind) {
    run_guarded_then(state, exec, None, kind, None).await
}

/// [`run_guarded`], saying on `taken_up` when the runner has taken the execution up (its
/// start is written), or dropping it if the runner never got that far.
async fn run_guarded_then(
    state: &AppState,
    exec: Execution,
    loaded: Option<Loaded>,
    kind: RunKind,
    taken_up: Option<TakenUp>,
) {
    let id = exec.id.clone();
    let mut task = AbortOnDrop({
        let state = state.clone();
        tokio::spawn(async move { run_one(&state, exec, loaded, kind, taken_up).await })
    });
    if let Err(e) = (&mut task.0).await {
        let why = match e.try_into_panic() {
            Ok(payload) => {
                let text = payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied())
                    .unwrap_or("no message");
                format!("internal error: the runner panicked ({text}); see the server log")
            }
            Err(_) => "internal error: the runner was cancelled".to_string(),
        };
        tracing::error!(id, %why, "execution failed inside its runner");
        state.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        fail(state, &id, why).await;
    }
}

/// A runner's task goes when its worker goes (at shutdown): dropping the run kills the
/// step's process group, as it would inline.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Ends an execution that could not run (or whose runner broke) as failed, saying why.
async fn fail(state: &AppState, id: &str, why: String) {
    if let Err(e) = state.engine.fail(id, why).await {
        tracing::error!(%e, id, "cannot record that the execution failed");
    }
    crate::vault::remove(state, id).await;
}

/// Where an execution of a version published with files runs: `executions/ID` under
/// the server's workdir.
pub fn execution_dir(workdir: &Path, id: &str) -> PathBuf {
    workdir.join("executions").join(id)
}

/// Writes out the files of the execution's version as its working directory, unless it
/// is there already (a later run of the same execution: a resume, a gate poll).
pub(crate) async fn prepare(store: &crate::state::Db, exec: &Execution) -> Result<(), String> {
    let dir = PathBuf::from(&exec.base_dir);
    if dir.exists() {
        return Ok(());
    }
    let (version, _) = store
        .registry_version(&exec.runbook_name, &exec.runbook_version)
        .await
        .map_err(|e| format!("cannot find the files of {} {}: {e}", exec.runbook_name, exec.runbook_version))?;
    let Some(sha) = version.bundle_sha256 else {
        return Err(format!("its working directory {} is gone", dir.display()));
    };
    let bytes = store
        .bundle(&sha)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the bundle {sha} of {} {} is missing", exec.runbook_name, exec.runbook_version))?;
    let bundle = opsbook_core::bundle::Bundle::decode(&bytes)?;
    let written = tokio::task::spawn_blocking(move || opsbook_engine::bundle::materialize(&bundle, &dir))
        .await
        .map_err(|e| e.to_string())?;
    written.map(|_| ()).map_err(|e| format!("cannot write out its files in {}: {e}", exec.base_dir))
}

/// An execution that succeeded needs its working directory no more (one that did not
/// keeps it for `keep_failed_workdirs`, to look into; see `sweep_workdirs`).
fn tidy(state: &AppState, id: &str, status: ExecStatus) {
    let dir = execution_dir(&state.config.workdir, id);
    if status == ExecStatus::Succeeded
        && dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        tracing::warn!(%e, id, "cannot remove the execution's working directory");
    }
}

/// Removes the working directories of executions that ended (or are gone) longer than
/// `keep_failed_workdirs` ago. Directories of executions still under way stay.
async fn sweep_workdirs(state: &AppState) {
    let root = state.config.workdir.join("executions");
    let Ok(entries) = std::fs::read_dir(&root) else { return };
    let keep = i64::try_from(crate::config::Config::duration(&state.config.keep_failed_workdirs).as_millis())
        .unwrap_or(i64::MAX);
    let now = now_ms();
    for entry in entries.flatten() {
        let Some(id) = entry.file_name().to_str().map(str::to_string) else { continue };
        if id.starts_with('.') {
            continue; // being written out
        }
        let ended = match state.store.execution(&id).await {
            Ok(e) if matches!(e.status, ExecStatus::Queued | ExecStatus::Running | ExecStatus::Waiting) => continue,
            Ok(e) => e.finished_at.unwrap_or(e.created_at),
            Err(opsbook_store::Error::NotFound(_)) => 0,
            Err(_) => continue,
        };
        if now - ended >= keep
            && let Err(e) = std::fs::remove_dir_all(entry.path())
        {
            tracing::warn!(%e, id, "cannot remove an old working directory");
        }
    }
}

/// Starts the log of a fresh execution of a deprecated runbook with a warning, as a
/// local run's does (the submitter was told in the answer; the log is for whoever reads
/// it later). Hands back what the claim brought, the log's new end included.
async fn note_deprecated(state: &AppState, exec: &Execution, loaded: Option<Loaded>) -> Option<Loaded> {
    let (steps, last) = match loaded {
        Some(l) => l,
        None => state.store.steps_and_last_seq(&exec.id).await.ok()?,
    };
    let fresh = last == 0 && steps.iter().all(|s| s.status == opsbook_core::StepStatus::Pending);
    let deprecated =
        fresh && state.store.registry_entry(&exec.runbook_name).await.is_ok_and(|e| e.status == "deprecated");
    if !deprecated {
        return Some((steps, last));
    }
    let line = opsbook_store::LogLine {
        execution_id: exec.id.clone(),
        seq: 1,
        step_id: None,
        phase: opsbook_store::Phase::Check,
        attempt: 0,
        stream: opsbook_store::Stream::System,
        ts: now_ms(),
        line: format!("warning: runbook `{}` is deprecated; prefer its replacement", exec.runbook_name),
    };
    match state.store.append_logs(&[line], None).await {
        Ok(()) => Some((steps, 1)),
        Err(e) => {
            tracing::warn!(%e, id = exec.id, "cannot note the runbook's deprecation in the log");
            Some((steps, last))
        }
    }
}

/// Runs a claimed execution (as its claim returned it): all of it (a worker), or only a
/// poll of the gate it waits on, or what a resume or rollback asked for.
async fn run_one(state: &AppState, exec: Execution, loaded: Option<Loaded>, kind: RunKind, taken_up: Option<TakenUp>) {
    let (id, runbook) = (exec.id.as_str(), exec.runbook_name.as_str());
    if let Err(why) = prepare(&state.store, &exec).await {
        tracing::warn!(id, %why, "execution could not run");
        fail(state, id, format!("cannot prepare the execution: {why}")).await;
        return;
    }
    let secrets = match crate::vault::get(state, &exec).await {
        Ok(secrets) => secrets,
        Err(why) => {
            tracing::warn!(id, %why, "execution could not run");
            fail(state, id, format!("cannot run: {why}")).await;
            return;
        }
    };
    let gate_poll = kind == RunKind::GatePoll;
    let (handle, cancel) = cancel_pair();
    state.running.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), handle.clone());
    let notifier = crate::notify::Notifier::new(id, runbook, exec.started_at, state.notify.clone());
    let observer = Announcing { inner: &notifier, taken_up: std::sync::Mutex::new(taken_up) };
    let hooks = Hooks { observer: &observer, prompt: None, cancel, cancel_handle: handle };
    let result = match kind {
        RunKind::Whole => {
            let loaded = note_deprecated(state, &exec, loaded).await;
            state.engine.run_claimed(exec.clone(), loaded, &secrets, &hooks).await
        }
        RunKind::GatePoll => state.engine.poll_gate(exec.clone(), &secrets, &hooks).await,
        RunKind::Resume => state.engine.resume(id, &secrets, &hooks).await,
        RunKind::Rollback => state.engine.rollback(id, &secrets, &hooks).await,
    };
    {
        // Only this run's entry: the next runner (a worker after a poll) may be in already.
        let mut running = state.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.get(id).is_some_and(|h| h.same(&hooks.cancel_handle)) {
            running.remove(id);
        }
    }
    if let Ok(outcome) = &result
        && !gate_poll
    {
        tracing::info!(id, runbook, status = %outcome.status, "execution {}", outcome.status);
    }
    match result {
        Ok(outcome) if outcome.status == ExecStatus::Waiting => {}
        // The gate cleared: a worker goes on from here.
        Ok(outcome) if outcome.status == ExecStatus::Queued => state.wake.notify_one(),
        Ok(outcome) => {
            if outcome.status.is_terminal() && crate::vault::has_secrets(&exec) {
                crate::vault::remove(state, id).await;
            }
            tidy(state, id, outcome.status);
            // A child that went on alone (after its approval, or its gate cleared) ended:
            // the execution waiting on it goes on.
            if outcome.status.is_terminal()
                && let Some(parent) = &exec.parent_id
            {
                match state.store.requeue(parent).await {
                    Ok(true) => state.wake.notify_one(),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(%e, id, parent, "cannot wake the parent execution; it looks again soon"),
                }
            }
        }
        // This runner's claim lapsed and another took the execution (it was paused, or cut
        // off from the database): it stopped and wrote nothing more; the execution is the
        // new holder's.
        Err(opsbook_engine::Error::Store(opsbook_store::Error::LostClaim(why))) => {
            tracing::warn!(id, %why, "stopped: the execution was taken over");
        }
        // A resume or rollback refused after all (it changed since the caller checked
        // it): nothing was done, and the execution stays as it was.
        Err(e) if matches!(kind, RunKind::Resume | RunKind::Rollback) => {
            tracing::warn!(%e, id, "could not go on with the execution");
        }
        Err(e) => {
            // The engine could not even start (e.g. secrets lost in a restart): say why.
            tracing::warn!(%e, id, "execution could not run");
            fail(state, id, e.to_string()).await;
        }
    }
}

/// Carries a stopped execution on (a resume or a rollback, checked by the caller) on a
/// task of its own, as a worker runs one: with the secrets in the vault, guarded, its
/// working directory tidied when it ends.
///
/// Returns once the runner has taken it up (its start written, so that whoever follows
/// it sees it running rather than as it was), or could not (within 10 s).
pub(crate) async fn spawn_carry_on(state: &AppState, exec: Execution, kind: RunKind, hold: crate::state::Carrying) {
    let state = state.clone();
    let id = exec.id.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        run_guarded_then(&state, exec, None, kind, Some(tx)).await;
        drop(hold);
    });
    match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => tracing::warn!(id, ?kind, "the runner stopped before it took the execution up"),
        Err(_) => tracing::warn!(id, ?kind, "the runner has not taken the execution up within 10 s; answering anyway"),
    }
}

/// Told once when a runner takes an execution up.
type TakenUp = tokio::sync::oneshot::Sender<()>;

/// The notifier, and the signal that the run has started (its first event).
struct Announcing<'a> {
    inner: &'a crate::notify::Notifier,
    taken_up: std::sync::Mutex<Option<TakenUp>>,
}

impl opsbook_engine::Observer for Announcing<'_> {
    fn on_event(&self, e: &opsbook_engine::Event<'_>) {
        if let Some(tx) = self.taken_up.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = tx.send(());
        }
        self.inner.on_event(e);
    }
}

/// Gate polls at once. They run beside the workers, never on them, so executions waiting
/// on slow or unreachable gate sources cannot hold up other work.
const GATE_POLLS: usize = 16;

/// Every second: mark executions whose runner died as interrupted; requeue waiting
/// executions whose approval deadline passed (so they fail as timed out); and poll the
/// gates of those whose gate poll is due, on the gate pool. Every minute or so: sweep old
/// working directories and forget old web sessions. On shutdown, polls under way
/// get the shutdown grace period to finish.
pub fn spawn_reaper(state: &AppState, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let lease = state.engine.config.lease_ms();
        let mut polls = tokio::task::JoinSet::new();
        let mut swept_at = 0;
        let mut outage_at: Option<i64> = None;
        // Old working directories are looked for every minute (more often when they are
        // kept a short while).
        let keep = crate::config::Config::duration(&state.config.keep_failed_workdirs);
        let sweep_every = i64::try_from((keep / 4).as_millis()).unwrap_or(i64::MAX).clamp(1_000, 60_000);
        loop {
            while polls.try_join_next().is_some() {}
            if now_ms() - swept_at >= sweep_every {
                swept_at = now_ms();
                sweep_workdirs(&state).await;
                // Web sessions a day past their end are forgotten (any node may do it), and
                // the secrets of executions that ended (should deleting them have failed).
                if let Err(e) = state.store.prune_sessions(now_ms() - 86_400_000).await {
                    tracing::warn!(%e, "cannot prune old web sessions");
                }
                if let Err(e) = state.store.prune_secrets(now_ms() - 60_000).await {
                    tracing::warn!(%e, "cannot prune the secrets of ended executions");
                }
            }
            // After the database was out of reach, every lease looks lapsed, its holders'
            // too: they could not renew it either. They get one lease from its return to
            // renew before anyone takes their executions over.
            let back_for = outage_at.map_or(i64::MAX, |t| now_ms() - t);
            if back_for >= lease {
                match state.engine.recover().await {
                    Ok(_) => {}
                    Err(opsbook_engine::Error::Store(opsbook_store::Error::Unavailable(e))) => {
                        tracing::warn!(%e, "recovery waits for the database");
                        outage_at = Some(now_ms());
                    }
                    Err(e) => tracing::error!(%e, "recovery failed"),
                }
            }
            match state.store.expired_waits(now_ms()).await {
                Ok(waits) => {
                    for (id, gate) in waits {
                        if !gate {
                            if state.store.requeue(&id).await.unwrap_or(false) {
                                state.wake.notify_one();
                            }
                            continue;
                        }
                        if polls.len() >= GATE_POLLS {
                            continue; // the rest at the next round
                        }
                        match state.store.claim_waiting(&id, &state.engine.config.owner, lease).await {
                            Ok(Some(exec)) => {
                                let state = state.clone();
                                polls.spawn(async move { run_guarded(&state, exec, RunKind::GatePoll).await });
                            }
                            Ok(None) => {}
                            Err(e) => tracing::error!(%e, id, "cannot claim a gate poll"),
                        }
                    }
                }
                Err(e) => {
                    if matches!(e, opsbook_store::Error::Unavailable(_)) {
                        outage_at = Some(now_ms());
                    }
                    tracing::error!(%e, "cannot look for expired waits");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => break,
            }
        }
        let grace = crate::config::Config::duration(&state.config.shutdown_grace);
        let _ = tokio::time::timeout(grace, async { while polls.join_next().await.is_some() {} }).await;
    })
}

/// After the shutdown grace period: executions still running here are marked
/// interrupted, as a crash would leave them for the next start.
pub async fn interrupt_remaining(state: &AppState, ids: &[String]) {
    for id in ids {
        let why = "the server shut down before this execution finished".to_string();
        if let Err(e) = state.engine.interrupt(id, "the server shut down", why).await {
            tracing::error!(%e, id, "cannot mark the execution interrupted");
        }
    }
}
