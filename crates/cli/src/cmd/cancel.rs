//! `opsbook cancel ID`: stop a running execution (through its runner) or a waiting one.

use std::time::{Duration, Instant};

use anyhow::Result;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use opsbook_core::ExecStatus;
use opsbook_engine::{Hooks, cancel_pair};
use opsbook_store::Store;

use super::{EXIT_FAILED, usage};
use crate::render::{Live, exec_status};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Execution id (or a unique prefix)
    pub id: String,
    /// Secret parameters again, needed by rollbacks of a waiting execution
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    #[command(flatten)]
    pub secret: super::SecretArgs,
    /// How to print: text for people, or json (the execution's document once it stopped;
    /// with --server, `{"id": …}` once the cancel is asked for) for programs
    #[arg(long, value_enum, default_value_t)]
    pub output: crate::Output,
}

pub async fn exec(db: Option<opsbook_store::DatabaseUrl>, args: Args) -> Result<u8> {
    let engine = super::open(db).await?;
    let store = &engine.store;
    let e = store.execution(&args.id).await?;
    let json = args.output == crate::Output::Json;
    match e.status {
        ExecStatus::Running => {
            store.request_cancel(&e.id).await?;
            // The runner also polls the flag; a signal makes it immediate on this host.
            if let Some(pid) = e.owner.as_deref().and_then(opsbook_engine::owner_pid)
                && let Ok(pid) = i32::try_from(pid)
            {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            if !json {
                say!("cancel requested for execution {}", e.id);
            }
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(120) {
                let now = store.execution(&e.id).await?;
                if now.status != ExecStatus::Running {
                    if json {
                        say!("{}", serde_json::to_string_pretty(&super::logs::doc(store, &e.id).await?)?);
                    } else {
                        say!("execution {} {}", e.id, exec_status(now.status));
                    }
                    return Ok(if now.status == ExecStatus::Cancelled {
                        super::rollback_exit(now.rollback_status)
                    } else {
                        EXIT_FAILED
                    });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            say!("the runner has not stopped yet; check with `opsbook show {}`", e.id);
            Ok(EXIT_FAILED)
        }
        ExecStatus::Waiting => {
            let secrets = super::gather_params(&args.params, None, &args.secret)?;
            let live = Live::new(store.steps(&e.id).await?.len());
            let (handle, cancel) = cancel_pair();
            super::watch_signals(handle.clone(), super::OnCancel::RollingBack);
            let observer: &dyn opsbook_engine::Observer = if json { &opsbook_engine::Quiet } else { &live };
            let hooks = Hooks { observer, prompt: None, cancel, cancel_handle: handle };
            let outcome = engine.rollback(&e.id, &secrets, &hooks).await?;
            super::run::finish(&engine, &outcome.execution_id, args.output).await?;
            Ok(super::rollback_exit(store.execution(&e.id).await?.rollback_status))
        }
        ExecStatus::Interrupted => Err(usage(format!(
            "execution {} was interrupted and is not running; undo it with `opsbook rollback {}`",
            e.id, e.id
        ))),
        other => Err(usage(format!("execution {} {} already", e.id, other.phrase()))),
    }
}
