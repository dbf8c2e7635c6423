//! `opsbook logs ID`: the stored output of an execution, optionally followed live.

use anyhow::Result;
use opsbook_api::{ExecutionDoc, LogLine};
use opsbook_store::{LogQuery, Store};

use super::EXIT_OK;
use crate::view::{Follow, Where};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Execution id (or a unique prefix)
    pub id: String,
    /// Only this step
    #[arg(long)]
    pub step: Option<String>,
    /// Keep printing new lines until the execution ends (through approval and gate waits)
    #[arg(short, long)]
    pub follow: bool,
    /// Start each line with the time it was written (local, with its offset; `--utc`: UTC)
    #[arg(short, long)]
    pub timestamps: bool,
    /// How to print: text for people, or json (one JSON object per line, as the API's
    /// log lines: seq, step, phase, attempt, stream, ts, line) for programs
    #[arg(long, value_enum, default_value_t)]
    pub output: crate::Output,
}

impl Args {
    pub fn follow<'a>(&'a self, at: Where<'a>) -> Follow<'a> {
        let json = self.output == crate::Output::Json;
        Follow { step: self.step.as_deref(), follow: self.follow, timestamps: self.timestamps, json, at }
    }
}

/// The document of a stored execution, as a server would send it.
pub async fn doc(store: &impl Store, id: &str) -> Result<ExecutionDoc> {
    let e = store.execution(id).await?;
    let steps = store.steps(&e.id).await?;
    let approvals = store.approvals(&e.id).await?;
    let children = store.children(&e.id).await?;
    Ok(ExecutionDoc::new(&e, &steps).with_approvals(&approvals).with_children(&children))
}

pub async fn exec(db: Option<opsbook_store::DatabaseUrl>, args: Args) -> Result<u8> {
    let engine = super::open(db).await?;
    let store = &engine.store;
    let first = doc(store, &args.id).await?;
    let id = first.summary.id.clone();
    let fetch = async |after: i64| -> Result<Vec<LogLine>> {
        let q = LogQuery { execution_id: id.clone(), step_id: args.step.clone(), after_seq: after, limit: 10_000 };
        Ok(store.logs(&q).await?.iter().map(LogLine::from).collect())
    };
    let state = async || doc(store, &id).await;
    crate::view::logs(args.follow(Where::Here), &first, fetch, state).await?;
    Ok(EXIT_OK)
}
