//! `opsbook resume ID` and `opsbook rollback ID`: continue or undo a stopped execution.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use opsbook_core::Input;
use opsbook_engine::{ApprovalPrompt, Engine, Hooks, Quiet, cancel_pair};
use opsbook_store::Store;

use super::{EXIT_OK, OnCancel};
use crate::Output;
use crate::prompt::TerminalPrompt;
use crate::render::Live;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Execution id (or a unique prefix)
    pub id: String,
    /// Secret parameters again (secrets are never stored)
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    #[command(flatten)]
    pub secret: super::SecretArgs,
    /// How to print: text for people, or json (one document on stdout) for programs
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// What to do with a stopped execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run the rest (after approvals, or what an interruption left).
    Resume,
    /// Run the rollbacks of the steps that succeeded.
    Rollback,
}

pub async fn exec(db: Option<opsbook_store::DatabaseUrl>, args: Args, mode: Mode) -> Result<u8> {
    let mut engine = super::open(db).await?;
    let mut secrets = super::gather_params(&args.params, None, &args.secret)?;
    // Only the secrets what is left to run uses are asked for (on a terminal).
    let needed = engine.secrets_needed(&args.id, mode == Mode::Rollback).await?;
    let missing: Vec<String> = needed.into_iter().filter(|n| !secrets.contains_key(n)).collect();
    secrets.extend(super::prompt_secrets(&missing)?);
    carry_on(&mut engine, &args.id, &secrets, args.output, mode).await
}

/// Resumes or rolls back execution `id` in the foreground, with the live display, and
/// returns the exit code: for a rollback, 0 when it succeeded (or there was nothing to
/// roll back); otherwise that of the execution's status.
pub async fn carry_on(
    engine: &mut Engine,
    id: &str,
    secrets: &BTreeMap<String, Input>,
    output: Output,
    mode: Mode,
) -> Result<u8> {
    let exec = engine.store.execution(id).await?;
    let rb = engine.stored_runbook(&exec.runbook_sha256).await?;
    // Gate steps name gates from opsbook.yaml beside the runbook (or here), as `run` does.
    let file = [PathBuf::from(&exec.base_dir).join("opsbook.yaml"), PathBuf::from("opsbook.yaml")]
        .into_iter()
        .find(|p| p.exists());
    if let Some(p) = file {
        engine.config.gates = opsbook_core::gate::GateBook::new(super::read_gates(&p)?.gates);
    }
    let steps = engine.store.steps(&exec.id).await?;
    let (handle, cancel) = cancel_pair();
    let on_cancel = match mode {
        Mode::Rollback => OnCancel::RollingBack,
        Mode::Resume => OnCancel::running(rb.on_failure),
    };
    super::watch_signals(handle.clone(), on_cancel);
    let live = Live::new(steps.len());
    let json = output == Output::Json;
    // Rollbacks ask only for manual ones to be confirmed.
    let prompt: Option<Arc<dyn ApprovalPrompt>> = (TerminalPrompt::available() && !json).then(|| {
        Arc::new(TerminalPrompt { progress: live.progress(), user: super::os_user(), cancel: cancel.clone() }) as _
    });
    let hooks = Hooks { observer: if json { &Quiet } else { &live }, prompt, cancel, cancel_handle: handle };
    let outcome = match mode {
        Mode::Rollback => engine.rollback(&exec.id, secrets, &hooks).await?,
        Mode::Resume => engine.resume(&exec.id, secrets, &hooks).await?,
    };
    if outcome.nothing_to_roll_back {
        if json {
            super::run::finish(engine, &outcome.execution_id, output).await?;
        } else {
            say!(
                "nothing to roll back: no step of execution {} that succeeded has a rollback left to run; nothing was changed",
                outcome.execution_id
            );
        }
        return Ok(EXIT_OK);
    }
    let code = super::run::finish(engine, &outcome.execution_id, output).await?;
    if mode == Mode::Rollback {
        return Ok(super::rollback_exit(engine.store.execution(&outcome.execution_id).await?.rollback_status));
    }
    Ok(code)
}
