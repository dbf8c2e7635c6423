//! The execution loop: prerequisites, steps with retries, approvals, rollbacks, and
//! the commit of every state change before the next action.

use crate::Db;
use std::path::PathBuf;

use opsbook_core::params::ParamValues;
use opsbook_core::secret::Masker;
use opsbook_core::template::{Context, StepContext};
use opsbook_core::{Runbook, StepStatus};
use opsbook_store::{Attempt, Execution, Phase, StepRecord, Store, Stream};
use tokio::task::JoinHandle;

use crate::logsink::LogSink;
use crate::observer::Event;
use crate::{Engine, Error, Hooks, Outcome, Result};

mod drive;
mod entry;
mod persist;
mod rollback;
mod secrets;

pub use entry::Loaded;
pub(crate) use entry::{begin, check_resume, new_execution, resume, rollback_child, rollback_only, run_claimed, start};
pub(crate) use secrets::{Work, check_secrets, needed_secrets};

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

pub(crate) struct Run<'e, 'h> {
    pub engine: &'e Engine,
    pub hooks: &'h Hooks<'h>,
    pub rb: Runbook,
    pub exec: Execution,
    pub steps: Vec<StepRecord>,
    pub params: ParamValues,
    pub sink: LogSink,
    pub base_dir: PathBuf,
    heartbeat: Option<JoinHandle<()>>,
    http: Option<reqwest::Client>,
    /// Scratch files given to this run's steps, removed when it ends.
    scratch: Vec<PathBuf>,
    /// The run's SSH control sockets (connections to targets), closed when it ends.
    ssh_dir: Option<PathBuf>,
    /// A step's final attempt, written with the next state change (see `save_step`).
    deferred: Option<(Attempt, usize)>,
    /// This run only polls a waiting gate (the server's gate pool, not a worker): when
    /// the gate is clear it queues the execution for a worker instead of going on.
    pub gate_poll_only: bool,
}

impl Drop for Run<'_, '_> {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        for path in &self.scratch {
            let _ = std::fs::remove_file(path);
        }
        if let Some(dir) = self.ssh_dir.take() {
            crate::kinds::ssh::close_connections(&dir);
        }
    }
}

impl<'e, 'h> Run<'e, 'h> {
    fn new(
        engine: &'e Engine,
        hooks: &'h Hooks<'h>,
        rb: Runbook,
        exec: Execution,
        steps: Vec<StepRecord>,
        params: ParamValues,
        last_seq: i64,
    ) -> Self {
        let masker = Masker::new(params.secret_values());
        let fence = Some(engine.config.owner.clone());
        let sink = LogSink::new(engine.store.clone(), &exec.id, last_seq, masker, fence);
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
            scratch: Vec::new(),
            ssh_dir: None,
            deferred: None,
            gate_poll_only: false,
        }
    }

    pub fn store(&self) -> &Db {
        &self.engine.store
    }

    /// The store, for the run's own writes: they wait out an unavailable database.
    pub fn patient(&self) -> crate::patient::Patient<'_> {
        crate::patient::Patient(&self.engine.store)
    }

    /// The owner this runner claimed the execution as: every write it makes is fenced by
    /// it (a runner whose claim lapsed and was taken writes nothing more, and stops).
    pub fn fence(&self) -> Option<&str> {
        Some(&self.engine.config.owner)
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

    /// How a step (or its rollback) that did not succeed ended, in its log, for `logs`
    /// to show what the live display did (which says it otherwise, so not to it again).
    pub(crate) async fn note_end(
        &mut self,
        step_id: &str,
        phase: Phase,
        status: StepStatus,
        error: Option<&str>,
    ) -> Result<()> {
        if status == StepStatus::Succeeded {
            return Ok(());
        }
        // (The line's phase says whether it was the rollback.)
        let msg = match error {
            Some(e) => format!("{status}: {e}"),
            None => status.to_string(),
        };
        self.sink.push(&crate::Quiet, Some(step_id), phase, 0, Stream::System, msg.as_bytes());
        self.sink.flush().await?;
        Ok(())
    }

    /// A fresh path in the engine's private scratch directory, removed when the run ends.
    /// The file is not created: `>> "$OPSBOOK_OUTPUT"` creates it, and most steps never do.
    pub fn scratch_path(&mut self, prefix: &str) -> Result<PathBuf> {
        let path = self.engine.scratch.path(prefix)?;
        self.scratch.push(path.clone());
        Ok(path)
    }

    /// The run's own directory for SSH control sockets (made on first use, private).
    pub fn ssh_dir(&mut self) -> Result<PathBuf> {
        if let Some(d) = &self.ssh_dir {
            return Ok(d.clone());
        }
        let dir = self.engine.scratch.path("s")?;
        std::fs::create_dir(&dir).map_err(|e| Error::Io(format!("cannot create {}: {e}", dir.display())))?;
        self.ssh_dir = Some(dir.clone());
        Ok(dir)
    }

    pub fn http_client(&mut self) -> Result<reqwest::Client> {
        if self.http.is_none() {
            let client = opsbook_aws::wire::client_builder()
                .build()
                .map_err(|e| Error::Io(format!("cannot create the HTTP client: {e}")))?;
            self.http = Some(client);
        }
        Ok(self.http.clone().expect("just created"))
    }

    /// Where this run's AWS calls for `target` go; an assumed role's session is named
    /// after the execution, so CloudTrail shows which one acted.
    pub fn aws_target(&self, target: opsbook_core::step::aws::Target) -> opsbook_aws::Target {
        opsbook_aws::Target {
            region: target.region,
            role_arn: target.role_arn,
            session: format!("opsbook-{}", self.exec.id),
        }
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
                match store.heartbeat(&id, &owner, lease).await {
                    // Cancelled by someone: rollbacks still run.
                    Ok(true) => cancel.at_least(1),
                    Ok(false) => {}
                    // The claim lapsed and another runner took it: stop now (the running
                    // step's process group is killed), write nothing more, roll nothing
                    // back; the new holder carries the execution on.
                    Err(opsbook_store::Error::Conflict(_) | opsbook_store::Error::LostClaim(_)) => {
                        cancel.at_least(2);
                        return;
                    }
                    // The database did not answer: try again at the next beat.
                    Err(_) => {}
                }
            }
        }));
    }

    /// [`Run::context`] for rendering `templates` only: the finished steps (rebuilt for
    /// every context, so a cost that grows with the runbook) are left out when none of
    /// them names `steps`.
    pub fn context_for(&self, masked: bool, templates: &[&str]) -> Context {
        self.context_with(masked, templates.iter().any(|t| t.contains("steps")))
    }

    /// What templates see. `masked`: secrets replaced, for display.
    pub fn context(&self, masked: bool) -> Context {
        self.context_with(masked, true)
    }

    fn context_with(&self, masked: bool, with_steps: bool) -> Context {
        let params = if masked {
            self.params.masked()
        } else {
            serde_json::Value::Object(self.params.values.clone().into_iter().collect())
        };
        let text = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
        let mut steps: std::collections::BTreeMap<String, StepContext> = self
            .steps
            .iter()
            .filter(|s| with_steps && s.status != StepStatus::Pending)
            .map(|s| {
                let outputs = s.outputs.iter().map(|(k, v)| (k.clone(), text(v))).collect();
                (s.step_id.clone(), StepContext { status: s.status.as_str().to_string(), outputs })
            })
            .collect();
        // A parallel step's branches, as steps of their own (their outputs are the group's
        // `BRANCH.KEY`); a group settled without running (skipped by `when`) gives its
        // branches its own status.
        for (s, step) in self.steps.iter().zip(&self.rb.steps).filter(|(s, _)| with_steps && s.kind == "parallel") {
            let opsbook_core::StepKind::Parallel(spec) = &step.kind else { continue };
            for branch in &spec.branches {
                let status = match s.targets.iter().find(|b| b.name == branch.id) {
                    Some(b) => b.status,
                    None if s.status == StepStatus::Skipped || s.status.is_failure() => s.status,
                    None => continue,
                };
                if status == StepStatus::Pending {
                    continue;
                }
                let prefix = format!("{}.", branch.id);
                let outputs = (s.outputs.iter())
                    .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), text(v))))
                    .collect();
                steps.insert(branch.id.clone(), StepContext { status: status.as_str().to_string(), outputs });
            }
        }
        Context {
            params,
            steps: std::sync::Arc::new(steps),
            execution_id: self.exec.id.clone(),
            placeholders: false,
            target: None,
            // In the clear: what a template makes of a secret is masked as the secret is.
            secrets: (!masked && !self.params.secret_names.is_empty()).then(|| opsbook_core::template::Secrets {
                names: self.params.secret_names.iter().cloned().collect(),
                masker: self.masker().clone(),
            }),
        }
    }
}

fn describe(s: StepStatus) -> &'static str {
    match s {
        StepStatus::TimedOut => "timed out",
        StepStatus::Cancelled => "was cancelled",
        _ => "failed",
    }
}
