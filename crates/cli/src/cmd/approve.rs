//! `opsbook approve|reject ID`: decide on the approval step an execution waits on, then
//! carry the execution on in the foreground (the rest of its steps, or its rollbacks).

use anyhow::Result;
use opsbook_core::{ExecStatus, StepKind, StepStatus};
use opsbook_store::{Approval, Store, now_ms};

use super::resume::{Mode, carry_on};
use super::{EXIT_FAILED, EXIT_OK, EXIT_WAITING, usage};
use crate::Output;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Execution id (or a unique prefix)
    pub id: String,
    /// Why
    #[arg(short, long)]
    pub comment: Option<String>,
    /// Secret parameters again, for the steps that run after the decision (local only)
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// A decision on an approval step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

pub async fn exec(db: Option<opsbook_store::DatabaseUrl>, args: Args, decision: Decision) -> Result<u8> {
    let mut engine = super::open(db).await?;
    let store = &engine.store;
    let e = store.execution(&args.id).await?;
    if e.status != ExecStatus::Waiting {
        return Err(usage(format!("execution {} is {}, not waiting for approval", e.id, e.status)));
    }
    let steps = store.steps(&e.id).await?;
    let rb = engine.stored_runbook(&e.runbook_sha256).await?;
    let (step, spec) = steps
        .iter()
        .filter(|s| s.status == StepStatus::Waiting)
        .find_map(|s| match rb.steps.get(usize::try_from(s.idx).ok()?).map(|st| &st.kind) {
            Some(StepKind::Approval(spec)) => Some((s, spec)),
            _ => None,
        })
        .ok_or_else(|| usage(format!("execution {} has no step waiting for approval (it waits on a gate)", e.id)))?;
    let user = super::os_user();
    if !spec.local_user_may_approve(&user) {
        let who: Vec<&str> = spec.approvers.iter().map(|a| a.value.as_str()).collect();
        return Err(usage(format!("{user} may not decide on step `{}` (approvers: {})", step.step_id, who.join(", "))));
    }
    // What runs next needs the secrets again: refuse before recording anything.
    let secrets = super::collect_params(&args.params, None)?;
    engine.check_secrets(&e.id, &secrets).await?;
    let approved = decision == Decision::Approve;
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
    let decisions: Vec<Approval> =
        store.approvals(&e.id).await?.into_iter().filter(|a| a.step_id == step.step_id).collect();
    let approvals = decisions.iter().filter(|a| a.approved).count();
    let settled = !approved || approvals >= spec.min_approvals as usize;
    if !settled {
        say!(
            "{user} approved step `{}` of execution {} ({approvals} of {} approvals); it waits for more",
            step.step_id,
            e.id,
            spec.min_approvals
        );
        return Ok(EXIT_WAITING);
    }
    if args.output == Output::Text {
        let next = if approved { "going on" } else { "rolling back" };
        say!("{user} {verb} step `{}` of execution {}; {next}", step.step_id, e.id);
    }
    let code = carry_on(&mut engine, &e.id, &secrets, args.output, Mode::Resume).await?;
    if approved {
        return Ok(code);
    }
    // A rejection did what was asked when its rollbacks (if any) succeeded.
    let rolled = engine.store.execution(&e.id).await?.rollback_status;
    Ok(if matches!(rolled, None | Some(StepStatus::Succeeded)) { EXIT_OK } else { EXIT_FAILED })
}
