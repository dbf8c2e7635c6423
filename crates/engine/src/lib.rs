//! Executes runbooks step by step, recording every state change before the next action.
//!
//! Architecture invariant: this is the only crate that spawns step processes (the gate
//! crate runs its own `command` checks). It talks
//! to storage only through [`opsbook_store::Store`] and to people only through
//! [`Observer`] and [`ApprovalPrompt`].
// Audited exceptions: `process::parent_death_signal` and the guardian's fork (see
// ARCHITECTURE.md).
#![deny(unsafe_code)]

pub mod bundle;
mod cancel;
mod decide;
mod error;
mod feedback;
pub mod guardian;
mod kinds;
mod lines;
mod logsink;
mod observer;
mod patient;
pub mod plan;
mod process;
mod recovery;
mod runner;
mod scratch;
pub mod suite;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use opsbook_core::{Input, LifecycleStatus, ParamValues, Runbook};
use opsbook_store::Store;

pub use cancel::{Cancel, CancelHandle, cancel_pair};
pub use decide::{ApprovalWait, ManualWait, Overridden, Tally};
pub use error::{Error, Result};
pub use observer::{
    ApprovalPrompt, ApprovalRequest, Confirmation, Decision, Event, ManualRequest, Observer, Quiet, Start,
};
pub use process::ParentDeath;
pub use recovery::{local_owner, owner_pid};

/// What a secret parameter given again (to resume, roll back, reject) is told when it is
/// not the value the execution started with.
pub const SECRET_DIFFERS: &str = "differs from the value the execution started with";
pub use runner::Loaded;

/// The store every engine runs on. One concrete type, not a generic parameter: the
/// engine is compiled once, here, rather than again in each front end that uses it
/// (release builds do not share generic code between crates).
pub use opsbook_store_any::AnyStore as Db;

// The public async methods return `Boxed` futures: unboxed, the runner was compiled into
// the server's object code three times and once more into the CLI's.
pub(crate) use opsbook_core::{Boxed, boxed};

/// Settings of the engine; the defaults suit the local runner.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Time between SIGTERM and SIGKILL when a step is stopped.
    pub kill_grace: Duration,
    /// How long a claim on an execution holds without a heartbeat.
    pub lease: Duration,
    pub heartbeat: Duration,
    /// Who runs executions, e.g. `local:HOST:PID`.
    pub owner: String,
    /// Named health gates that `gate: { use: NAME }` steps refer to.
    pub gates: opsbook_core::gate::GateBook,
    /// While a gate step blocks, give the runner back (the execution waits and is queued
    /// again after `poll`) instead of waiting in place. The server sets this.
    pub release_gate_waits: bool,
    /// Whether step shells die with their runner at once, or are left to recovery.
    pub parent_death: ParentDeath,
    /// A runbook test's mocks: every step answers from them and nothing runs (no
    /// process, no network). `None` in real runs.
    pub mocks: Option<Arc<BTreeMap<String, opsbook_core::testcase::StepMock>>>,
    /// Where `runbook: { name }` steps find published runbooks, and what a child
    /// execution needs before it runs (the server's registry and vault). `None` here:
    /// only `runbook: { file }` runs.
    pub calls: Option<CallHooks>,
}

/// A published runbook found for a `runbook: { name, version }` step.
pub struct Resolved {
    pub runbook: Runbook,
    /// Its version was published with files (a bundle), written out for the child.
    pub has_files: bool,
}

/// What a server lends the engine for `runbook` steps.
pub trait Calls: Send + Sync {
    /// The newest version of published runbook `name` that `version` allows (any, when
    /// `None`), if the runbook may run.
    fn resolve<'a>(
        &'a self,
        name: &'a str,
        version: Option<&'a semver::VersionReq>,
    ) -> Boxed<'a, std::result::Result<Resolved, String>>;
    /// A child execution about to be stored: its working directory (set `base_dir`; a
    /// published version's files written out there when `has_files`) and its secret
    /// parameters kept for whichever runner goes on with it.
    fn prepare<'a>(
        &'a self,
        child: &'a mut opsbook_store::Execution,
        has_files: bool,
        secrets: &'a BTreeMap<String, Input>,
    ) -> Boxed<'a, std::result::Result<(), String>>;
}

/// [`Calls`] as the engine's settings hold it.
#[derive(Clone)]
pub struct CallHooks(pub Arc<dyn Calls>);

impl std::fmt::Debug for CallHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallHooks")
    }
}

impl EngineConfig {
    /// The lease in epoch-ms arithmetic, as the store takes it.
    pub fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(30_000)
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            kill_grace: Duration::from_secs(5),
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(1),
            owner: local_owner(),
            gates: Default::default(),
            release_gate_waits: false,
            parent_death: ParentDeath::Kill,
            mocks: None,
            calls: None,
        }
    }
}

#[derive(Clone)]
pub struct Engine {
    pub store: Db,
    pub config: EngineConfig,
    /// Stored runbooks already parsed, by sha256 (a version never changes).
    parsed: Arc<std::sync::Mutex<BTreeMap<String, Arc<Runbook>>>>,
    /// Where steps' scratch files go.
    scratch: Arc<scratch::Scratch>,
}

/// Parsed runbooks kept at most; past it the cache starts over.
const PARSED_RUNBOOKS: usize = 256;

/// How a front end takes part in a run.
pub struct Hooks<'a> {
    pub observer: &'a dyn Observer,
    pub prompt: Option<Arc<dyn ApprovalPrompt>>,
    pub cancel: Cancel,
    /// Used by the heartbeat to pass on a cancel requested through the store.
    pub cancel_handle: CancelHandle,
}

/// A new execution to start.
pub struct StartRequest {
    pub runbook: Runbook,
    pub source_path: Option<String>,
    /// Directory `workdir` is relative to (the runbook file's directory).
    pub base_dir: PathBuf,
    pub params: ParamValues,
    pub actor: String,
    pub allow_draft: bool,
}

/// Where an execution ended up when the engine returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub execution_id: String,
    pub status: opsbook_core::ExecStatus,
    /// A rollback was asked for, but no step that succeeded has one left to run:
    /// nothing was changed.
    pub nothing_to_roll_back: bool,
}

/// Refuses archived runbooks and drafts (unless allowed); warns for deprecated ones.
pub fn check_lifecycle(rb: &Runbook, allow_draft: bool) -> Result<Option<String>> {
    match rb.status {
        LifecycleStatus::Archived => {
            Err(Error::Invalid(format!("runbook `{}` is archived and can no longer run", rb.name)))
        }
        LifecycleStatus::Draft if !allow_draft => {
            Err(Error::Invalid(format!("runbook `{}` is a draft; pass --allow-draft to run it anyway", rb.name)))
        }
        LifecycleStatus::Deprecated => Ok(Some(format!("runbook `{}` is deprecated; prefer its replacement", rb.name))),
        _ => Ok(None),
    }
}

impl Engine {
    pub fn new(store: Db, config: EngineConfig) -> Engine {
        Engine { store, config, parsed: Arc::default(), scratch: Arc::default() }
    }

    /// Whether the runbook text with this digest was read from the store (so it is there).
    fn has_stored_runbook(&self, sha256: &str) -> bool {
        self.parsed.lock().unwrap_or_else(|p| p.into_inner()).contains_key(sha256)
    }

    /// The runbook stored under `sha256`, parsed once and kept (every front end loads
    /// stored runbooks through this).
    pub fn stored_runbook<'a>(&'a self, sha256: &'a str) -> Boxed<'a, Result<Arc<Runbook>>> {
        boxed(async move {
            if let Some(rb) = self.parsed.lock().unwrap_or_else(|p| p.into_inner()).get(sha256) {
                return Ok(rb.clone());
            }
            let content = self.store.runbook(sha256).await?.content;
            let rb = Arc::new(opsbook_core::parse(&content).map_err(|d| {
                Error::Store(opsbook_store::Error::Corrupt(format!(
                    "the stored runbook {} no longer parses: {}",
                    &sha256[..sha256.len().min(12)],
                    d.first().map(ToString::to_string).unwrap_or_default()
                )))
            })?);
            let mut parsed = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
            if parsed.len() >= PARSED_RUNBOOKS {
                parsed.clear();
            }
            parsed.insert(sha256.to_string(), rb.clone());
            Ok(rb)
        })
    }

    /// Runs a new execution until it finishes or waits for approval.
    pub fn start<'a>(&'a self, req: StartRequest, hooks: &'a Hooks<'_>) -> Boxed<'a, Result<Outcome>> {
        boxed(runner::start(self, req, hooks))
    }

    /// Continues a `waiting` or `interrupted` execution. Secret parameters must be
    /// supplied again (they are never stored); they are checked against digests.
    pub fn resume<'a>(
        &'a self,
        id: &'a str,
        secrets: &'a BTreeMap<String, Input>,
        hooks: &'a Hooks<'_>,
    ) -> Boxed<'a, Result<Outcome>> {
        boxed(runner::resume(self, id, secrets, hooks))
    }

    /// Checks, without changing anything, that `secrets` are what a `resume` of execution
    /// `id` needs (the secret parameters it started with that what is left names), or,
    /// `rejecting`, what is left once the approval it waits on is rejected: its rollbacks.
    pub fn check_secrets<'a>(
        &'a self,
        id: &'a str,
        secrets: &'a BTreeMap<String, Input>,
        rejecting: bool,
    ) -> Boxed<'a, Result<()>> {
        boxed(async move {
            let work = if rejecting { runner::Work::Rollbacks } else { runner::Work::Rest };
            runner::check_secrets(self, id, secrets, work).await
        })
    }

    /// The secret parameters a resume (or, `rollback`, a rollback) of execution `id` needs
    /// again: those that what is left to run mentions.
    pub fn secrets_needed<'a>(&'a self, id: &'a str, rollback: bool) -> Boxed<'a, Result<Vec<String>>> {
        boxed(async move {
            let exec = self.store.execution(id).await?;
            let rb = self.stored_runbook(&exec.runbook_sha256).await?;
            let steps = self.store.steps(&exec.id).await?;
            let work = if rollback { runner::Work::Rollbacks } else { runner::Work::Rest };
            Ok(runner::needed_secrets(&rb, &steps, work).into_iter().collect())
        })
    }

    /// Checks, changing nothing, that execution `id` could resume (or, `rollback`, be
    /// rolled back) now with these secrets; the error is the refusal it would get.
    /// `Ok(true)`: a rollback that would find nothing to roll back.
    pub fn check_resume<'a>(
        &'a self,
        id: &'a str,
        secrets: &'a BTreeMap<String, Input>,
        rollback: bool,
    ) -> Boxed<'a, Result<bool>> {
        boxed(runner::check_resume(self, id, secrets, rollback))
    }

    /// Rolls back a stopped execution: the rollback of every succeeded step, newest first.
    pub fn rollback<'a>(
        &'a self,
        id: &'a str,
        secrets: &'a BTreeMap<String, Input>,
        hooks: &'a Hooks<'_>,
    ) -> Boxed<'a, Result<Outcome>> {
        boxed(runner::rollback_only(self, id, secrets, hooks))
    }

    /// The records of a new execution in `status` (the server enqueues them as `queued`).
    pub fn new_execution<'a>(
        &'a self,
        req: &'a StartRequest,
        status: opsbook_core::ExecStatus,
    ) -> Boxed<'a, Result<(opsbook_store::Execution, Vec<opsbook_store::StepRecord>)>> {
        boxed(runner::new_execution(self, req, status))
    }

    /// Runs an execution this engine's owner has claimed from the queue; `loaded`: its
    /// steps and last log sequence number when they came with the claim (else read here).
    pub fn run_claimed<'a>(
        &'a self,
        exec: opsbook_store::Execution,
        loaded: Option<Loaded>,
        secrets: &'a BTreeMap<String, Input>,
        hooks: &'a Hooks<'_>,
    ) -> Boxed<'a, Result<Outcome>> {
        boxed(runner::run_claimed(self, exec, loaded, secrets, hooks, false))
    }

    /// Checks the gate a claimed execution waits on, and nothing more: still blocked, it
    /// waits again; clear, it is queued for a worker (which checks once more and goes
    /// on). The server's gate pool runs these, so polls never take a worker.
    pub fn poll_gate<'a>(
        &'a self,
        exec: opsbook_store::Execution,
        secrets: &'a BTreeMap<String, Input>,
        hooks: &'a Hooks<'_>,
    ) -> Boxed<'a, Result<Outcome>> {
        boxed(runner::run_claimed(self, exec, None, secrets, hooks, true))
    }

    /// Ends an execution still running in this process as `interrupted` because `what`
    /// happened (e.g. "the server shut down"), with `error` as its error; its running
    /// step is cancelled. False when it was no longer running.
    pub fn interrupt<'a>(&'a self, id: &'a str, what: &'a str, error: String) -> Boxed<'a, Result<bool>> {
        boxed(recovery::interrupt(&self.store, id, what, error))
    }

    /// Ends an execution that could not run (or whose runner broke) as failed, saying why.
    pub fn fail<'a>(&'a self, id: &'a str, why: String) -> Boxed<'a, Result<()>> {
        boxed(recovery::fail(&self.store, id, why))
    }

    /// Marks executions whose runner died as `interrupted`. Returns their ids.
    pub fn recover<'a>(&'a self) -> Boxed<'a, Result<Vec<String>>> {
        boxed(recovery::recover(&self.store, &self.config.owner, self.config.lease_ms()))
    }
}
