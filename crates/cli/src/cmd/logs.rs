//! `opsbook logs ID`: the stored output of an execution, optionally followed live.

use std::time::Duration;

use anyhow::Result;
use console::style;
use opsbook_core::ExecStatus;
use opsbook_store::{LogQuery, Phase, Store, Stream};

use super::EXIT_OK;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Execution id (or a unique prefix)
    pub id: String,
    /// Only this step
    #[arg(long)]
    pub step: Option<String>,
    /// Keep printing new lines until the execution stops running
    #[arg(short, long)]
    pub follow: bool,
}

pub async fn exec(db: Option<opsbook_store::DatabaseUrl>, args: Args) -> Result<u8> {
    let engine = super::open(db).await?;
    let store = &engine.store;
    let id = store.execution(&args.id).await?.id;
    let mut after = 0;
    loop {
        let lines = store
            .logs(&LogQuery { execution_id: id.clone(), step_id: args.step.clone(), after_seq: after, limit: 10_000 })
            .await?;
        for l in &lines {
            let step = l.step_id.as_deref().unwrap_or("-");
            let tag = match (l.phase, l.stream) {
                (_, Stream::System) => style(format!("[{step}]")).cyan(),
                (Phase::Rollback, _) => style(format!("[{step} rollback]")).magenta(),
                (_, Stream::Stderr) => style(format!("[{step}]")).red(),
                _ => style(format!("[{step}]")).dim(),
            };
            println!("{tag} {}", l.line);
            after = l.seq;
        }
        if lines.len() == 10_000 {
            continue;
        }
        if !args.follow {
            break;
        }
        let status = store.execution(&id).await?.status;
        if status != ExecStatus::Running && status != ExecStatus::Queued {
            // One last read so nothing written just before the end is missed.
            let rest = store
                .logs(&LogQuery { execution_id: id.clone(), step_id: args.step.clone(), after_seq: after, limit: 0 })
                .await?;
            for l in rest {
                println!("[{}] {}", l.step_id.as_deref().unwrap_or("-"), l.line);
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(EXIT_OK)
}
