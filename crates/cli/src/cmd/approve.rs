//! `opsbook approve|reject ID`: record a decision on the approval step an execution waits on.

use std::path::PathBuf;

use anyhow::Result;
use opsbook_core::{ExecStatus, StepKind, StepStatus};
use opsbook_store::{Approval, Store, now_ms};

use super::{EXIT_OK, usage};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Execution id (or a unique prefix)
    pub id: String,
    /// Why
    #[arg(short, long)]
    pub comment: Option<String>,
}

pub async fn exec(db: Option<PathBuf>, args: Args, approved: bool) -> Result<u8> {
    let engine = super::open(db).await?;
    let store = &engine.store;
    let e = store.execution(&args.id).await?;
    if e.status != ExecStatus::Waiting {
        return Err(usage(format!("execution {} is {}, not waiting for approval", e.id, e.status)));
    }
    let steps = store.steps(&e.id).await?;
    let step = steps
        .iter()
        .find(|s| s.status == StepStatus::Waiting)
        .ok_or_else(|| usage(format!("execution {} has no step waiting for approval", e.id)))?;
    let content = store.runbook(&e.runbook_sha256).await?.content;
    let rb = opsbook_core::parse(&content).map_err(|_| usage("the stored runbook no longer parses"))?;
    let user = super::os_user();
    if let Some(StepKind::Approval(spec)) =
        rb.steps.get(usize::try_from(step.idx).unwrap_or(usize::MAX)).map(|s| &s.kind)
        && !spec.local_user_may_approve(&user)
    {
        let who: Vec<&str> = spec.approvers.iter().map(|a| a.value.as_str()).collect();
        return Err(usage(format!("{user} may not decide on step `{}` (approvers: {})", step.step_id, who.join(", "))));
    }
    store
        .add_approval(&Approval {
            execution_id: e.id.clone(),
            step_id: step.step_id.clone(),
            approver: user.clone(),
            approved,
            comment: args.comment,
            created_at: now_ms(),
        })
        .await?;
    let verb = if approved { "approved" } else { "rejected" };
    println!("{user} {verb} step `{}` of execution {}", step.step_id, e.id);
    println!("continue with `opsbook resume {}`", e.id);
    Ok(EXIT_OK)
}
