//! `opsbook confirm ID [--step S] [--note TEXT] [--not-done]`: answer the manual step
//! (or manual rollback) an execution waits on, then carry the execution on in the
//! foreground (the rest of its steps, or the rest of its rollbacks).

use anyhow::Result;
use opsbook_store::Phase;

use super::resume::{Mode, carry_on};
use crate::Output;
use crate::client::{Client, enc};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Execution id (or a unique prefix)
    pub id: String,
    /// The manual step (default: the one that waits)
    #[arg(long)]
    pub step: Option<String>,
    /// What was done, seen or decided
    #[arg(short, long)]
    pub note: Option<String>,
    /// It could not be done: the step fails (and the rollbacks run as the runbook says)
    #[arg(long)]
    pub not_done: bool,
    /// Secret parameters again, for the steps (or, on a server, the rollbacks) that run next
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    #[command(flatten)]
    pub secret: super::SecretArgs,
    /// How to print: text for people, or json (one document on stdout) for programs
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

pub async fn exec(db: Option<opsbook_store::DatabaseUrl>, args: Args) -> Result<u8> {
    let mut engine = super::open(db).await?;
    let wait = engine.manual_wait(&args.id, args.step.as_deref()).await?;
    let rollback = wait.phase == Phase::Rollback;
    // What runs next needs the secrets again: refuse before recording anything.
    let secrets = super::gather_params(&args.params, None, &args.secret)?;
    engine.check_resume(&wait.execution.id, &secrets, rollback).await?;
    let mode = if rollback { Mode::Rollback } else { Mode::Resume };
    // Too late: the step timed out (nothing watches the clock between local commands).
    if let Some(why) = wait.expired() {
        say_err!("{why}; the confirmation is not recorded, and the execution goes on as its runbook says on a failure");
        carry_on(&mut engine, &wait.execution.id, &secrets, args.output, mode).await?;
        return Ok(super::EXIT_FAILED);
    }
    let user = super::os_user();
    let done = !args.not_done;
    // A secret pasted into the note is masked, as everywhere (those given again here).
    let note = args.note.map(|n| opsbook_core::secret::Masker::for_inputs(secrets.values()).mask(&n).into_owned());
    engine.confirm(&wait, &user, done, note).await?;
    if args.output == Output::Text {
        let what = if rollback { "the rollback of step" } else { "step" };
        let said = if done { "done" } else { "not done" };
        let next = match (rollback, done) {
            (true, _) => "the rollbacks go on",
            (false, true) => "going on",
            (false, false) => "it fails",
        };
        say!("{user} confirmed {what} `{}` of execution {} {said}; {next}", wait.step.step_id, wait.execution.id);
    }
    carry_on(&mut engine, &wait.execution.id, &secrets, args.output, mode).await
}

/// The same on the server: recorded there, and the server carries the execution on.
pub async fn remote(client: &Client, args: &Args) -> Result<u8> {
    let params = super::as_json(super::gather_params(&args.params, None, &args.secret)?);
    let body = opsbook_api::Confirm { step: args.step.clone(), done: !args.not_done, note: args.note.clone(), params };
    let done: opsbook_api::Confirmed =
        client.post(&format!("/api/v1/executions/{}/confirmations", enc(&args.id)), &body).await?;
    if args.output == Output::Json {
        say!("{}", serde_json::to_string_pretty(&done)?);
        return Ok(super::EXIT_OK);
    }
    let what = if done.phase == "rollback" { "the rollback of step" } else { "step" };
    let said = if done.done { "done" } else { "not done" };
    let next = if done.next == "rolling_back" { "the rollbacks go on" } else { "the execution goes on" };
    say!("confirmed {what} `{}` of execution {} {said} as {}; {next}", done.step, done.execution, done.by);
    Ok(super::EXIT_OK)
}
