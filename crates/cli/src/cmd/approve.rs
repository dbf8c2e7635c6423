//! `opsbook approve|reject ID`: decide on the approval step an execution waits on, then
//! carry the execution on in the foreground (the rest of its steps, or its rollbacks).

use anyhow::Result;
use opsbook_store::Store;

use super::resume::{Mode, carry_on};
use super::{EXIT_FAILED, EXIT_WAITING, usage};
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
    #[command(flatten)]
    pub secret: super::SecretArgs,
    /// How to print: text for people, or json (one document on stdout) for programs
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
    let wait = engine.approval_wait(&args.id).await?;
    let (e, step) = (&wait.execution, &wait.step);
    let user = super::os_user();
    if !wait.spec.local_user_may_approve(&user) {
        let who: Vec<&str> = wait.spec.approvers.iter().map(|a| a.value.as_str()).collect();
        return Err(usage(format!("{user} may not decide on step `{}` (approvers: {})", step.step_id, who.join(", "))));
    }
    // What runs next needs the secrets again: refuse before recording anything. (A
    // rejection runs only the rollbacks: checked as if it were recorded.)
    let secrets = super::gather_params(&args.params, None, &args.secret)?;
    let approved = decision == Decision::Approve;
    // Too late to decide: the step timed out. Nothing watches the clock between local
    // commands, so this one carries the execution on, and its rollbacks run.
    if let Some(why) = wait.expired() {
        engine.check_secrets(&e.id, &secrets, true).await?;
        say_err!("{why}; the decision is not recorded, and the execution goes on as its runbook says on a failure");
        let id = e.id.clone();
        carry_on(&mut engine, &id, &secrets, args.output, Mode::Resume).await?;
        return Ok(EXIT_FAILED);
    }
    engine.check_secrets(&e.id, &secrets, !approved).await?;
    let verb = if approved { "approved" } else { "rejected" };
    // A secret pasted into the comment is masked, as everywhere (those given again here).
    let comment =
        args.comment.map(|c| opsbook_core::secret::Masker::for_inputs(secrets.values()).mask(&c).into_owned());
    let tally = engine.decide(&wait, &user, approved, comment).await?;
    if !tally.settled {
        say!(
            "{user} approved step `{}` of execution {} ({} of {} approvals); it waits for more",
            step.step_id,
            e.id,
            tally.approvals,
            tally.min_approvals
        );
        return Ok(EXIT_WAITING);
    }
    if args.output == Output::Text {
        let next = if approved { "going on" } else { "rolling back" };
        say!("{user} {verb} step `{}` of execution {}; {next}", step.step_id, e.id);
    }
    let id = e.id.clone();
    let code = carry_on(&mut engine, &id, &secrets, args.output, Mode::Resume).await?;
    if approved {
        return Ok(code);
    }
    // A rejection did what was asked when its rollbacks (if any) succeeded.
    Ok(super::rollback_exit(engine.store.execution(&id).await?.rollback_status))
}
