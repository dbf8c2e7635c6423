//! `opsbook resume ID` and `opsbook rollback ID`: continue or undo a stopped execution.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use opsbook_engine::{ApprovalPrompt, Hooks, Quiet, cancel_pair};
use opsbook_store::Store;

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
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

pub async fn exec(db: Option<PathBuf>, args: Args, rollback: bool) -> Result<u8> {
    let mut engine = super::open(db).await?;
    let secrets = super::collect_params(&args.params, None)?;
    // Gate steps name gates from opsbook.yaml beside the runbook (or here), as `run` does.
    let base = engine.store.execution(&args.id).await?.base_dir;
    let file = [std::path::PathBuf::from(&base).join("opsbook.yaml"), std::path::PathBuf::from("opsbook.yaml")]
        .into_iter()
        .find(|p| p.exists());
    if let Some(p) = file {
        engine.config.gates = opsbook_core::gate::GateBook::new(super::read_gates(&p)?.gates);
    }
    let steps = engine.store.steps(&engine.store.execution(&args.id).await?.id).await?;
    let (handle, cancel) = cancel_pair();
    super::watch_signals(handle.clone());
    let live = Live::new(steps.len());
    let json = args.output == Output::Json;
    let prompt: Option<Arc<dyn ApprovalPrompt>> = (TerminalPrompt::available() && !json && !rollback)
        .then(|| Arc::new(TerminalPrompt { progress: live.progress(), user: super::os_user() }) as _);
    let hooks = Hooks { observer: if json { &Quiet } else { &live }, prompt, cancel, cancel_handle: handle };
    let outcome = if rollback {
        engine.rollback(&args.id, &secrets, &hooks).await?
    } else {
        engine.resume(&args.id, &secrets, &hooks).await?
    };
    super::run::finish(&engine.store, &outcome.execution_id, args.output).await
}
