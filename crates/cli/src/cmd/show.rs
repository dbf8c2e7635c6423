//! `opsbook show ID`: one execution with its steps.

use anyhow::Result;
use console::style;
use opsbook_store::Store;

use super::EXIT_OK;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Execution id (or a unique prefix of at least 4 characters)
    pub id: String,
    #[arg(long, value_enum, default_value_t)]
    pub output: crate::Output,
}

pub async fn exec(db: Option<opsbook_store::DatabaseUrl>, args: Args) -> Result<u8> {
    let engine = super::open(db).await?;
    let e = engine.store.execution(&args.id).await?;
    let steps = engine.store.steps(&e.id).await?;
    if args.output == crate::Output::Json {
        println!("{}", serde_json::to_string_pretty(&opsbook_api::ExecutionDoc::new(&e, &steps))?);
        return Ok(EXIT_OK);
    }
    let when = |ms| opsbook_api::time(ms).unwrap_or_else(|| "-".into());
    println!("{} {}", style("Execution").bold(), e.id);
    println!("  runbook   {} v{} (sha256 {})", e.runbook_name, e.runbook_version, &e.runbook_sha256[..12]);
    println!("  actor     {}", e.actor);
    println!("  started   {}", when(e.started_at));
    println!("  finished  {}", when(e.finished_at));
    println!("  params    {}", e.params);
    let decisions = engine.store.approvals(&e.id).await?;
    for a in &decisions {
        let verb = if a.approved { "approved" } else { "rejected" };
        let why = a.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default();
        println!("  decision  step `{}` {verb} by {} at {}{why}", a.step_id, a.approver, when(Some(a.created_at)));
    }
    println!();
    crate::render::print_summary(&e, &steps);
    Ok(EXIT_OK)
}
