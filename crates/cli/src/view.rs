//! How an execution and its log read, the same whether it ran here or on a server: both
//! are shown from the API's types (`opsbook_api`), which local commands build from the
//! store and remote ones receive.

use std::io::IsTerminal;

use comfy_table::{Cell, Table, presets::UTF8_FULL_CONDENSED};
use console::style;
use opsbook_api::{ExecutionDoc, LogLine};
use opsbook_core::ExecStatus;
use opsbook_core::duration::human_ms;

use crate::render::{exec_status, step_cell, truncate};

/// Where an execution lives, for the commands a reader is told to run next.
#[derive(Debug, Clone, Copy)]
pub enum Where<'a> {
    Here,
    Server(&'a str),
}

impl Where<'_> {
    /// `opsbook` as the reader would type it to reach the execution.
    fn opsbook(&self) -> String {
        match self {
            Where::Here => "opsbook".into(),
            Where::Server(url) => format!("opsbook --server {url}"),
        }
    }
}

fn duration(ms: Option<i64>) -> String {
    ms.and_then(|d| u64::try_from(d).ok()).map(human_ms).unwrap_or_default()
}

/// The header `show` prints: runbook, actor, times, parameters, decisions.
pub fn print_header(doc: &ExecutionDoc) {
    let e = &doc.summary;
    let clock = crate::cmd::history::Clock::new();
    let dash = |t: &Option<String>| clock.show_text_zoned(t.as_deref());
    say!("{} {}", style("Execution").bold(), e.id);
    let sha = e.runbook.sha256.get(..12).unwrap_or(&e.runbook.sha256);
    say!("  runbook   {} v{} (sha256 {sha})", e.runbook.name, e.runbook.version);
    say!("  actor     {}", e.actor);
    say!("  started   {}", dash(&e.started_at));
    say!("  finished  {}", dash(&e.finished_at));
    say!("  params    {}", e.params);
    if let Some(p) = &e.parent {
        say!("  parent    execution {} (its step `{}` started this one)", p.id, p.step);
    }
    for a in &doc.approvals {
        let verb = match a.decision.as_str() {
            "confirmed" => "done, confirmed",
            "declined" => "not done, said",
            _ if a.approved => "approved",
            _ => "rejected",
        };
        let what = if a.phase == "rollback" { "the rollback of step" } else { "step" };
        let why =
            a.comment.as_deref().map(|c| format!(": {}", opsbook_core::terminal::plain_line(c))).unwrap_or_default();
        say!("  decision  {what} `{}` {verb} by {} at {}{why}", a.step, a.approver, dash(&a.at));
    }
    say!("");
}

/// The table of steps (with their rollbacks), the status, and what to do next.
/// `rollbacks`: whether its steps that succeeded may have rollbacks to run (false when
/// it is known they have none).
pub fn print_summary(doc: &ExecutionDoc, at: Where<'_>, rollbacks: bool) {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    if !std::io::stdout().is_terminal() {
        t.force_no_tty();
    }
    t.set_header(vec!["#", "Step", "Status", "Attempts", "Exit", "Duration", "Rollback", "Error"]);
    for (i, s) in doc.steps.iter().enumerate() {
        let rollback = doc.rollback.steps.iter().find(|r| r.id == s.id);
        let error = s.error.clone().or_else(|| rollback.and_then(|r| r.error.clone())).unwrap_or_default();
        t.add_row(vec![
            Cell::new(i + 1),
            Cell::new(&s.id),
            step_cell(s.status),
            Cell::new(s.attempts),
            Cell::new(s.exit_code.map(|c| c.to_string()).unwrap_or_default()),
            Cell::new(duration(s.duration_ms)),
            Cell::new(rollback.map(|r| r.status.to_string()).unwrap_or_default()),
            Cell::new(truncate(&error, 80)),
        ]);
    }
    say!("{t}");
    for s in &doc.steps {
        if !s.targets.is_empty() {
            print_parts(&s.id, "Target", &s.targets);
        }
        if !s.branches.is_empty() {
            print_parts(&s.id, "Branch", &s.branches);
        }
        if let Some(child) = &s.child {
            print_child(&s.id, child);
        }
    }
    let e = &doc.summary;
    let took = e.duration_ms.map(|d| format!(" in {}", duration(Some(d)))).unwrap_or_default();
    say!("Execution {} {}{took}", style(&e.id).bold(), exec_status(e.status));
    if let Some(err) = &e.error {
        say!("  {}", style(err).red());
    }
    if let Some(rb) = doc.rollback.status {
        say!("  rollback {rb}");
    }
    if let Some(next) = next_step(doc, at, rollbacks) {
        say!("  {next}");
    }
}

/// The targets of a step with `targets` (or a parallel step's branches): each one's
/// status, attempts, exit code, duration, rollback and error.
fn print_parts(step: &str, what: &str, parts: &[opsbook_api::TargetDoc]) {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    if !std::io::stdout().is_terminal() {
        t.force_no_tty();
    }
    t.set_header(vec![what, "Status", "Attempts", "Exit", "Duration", "Rollback", "Error"]);
    for target in parts {
        let error = target.error.clone().or_else(|| target.rollback_error.clone()).unwrap_or_default();
        t.add_row(vec![
            Cell::new(&target.name),
            step_cell(target.status),
            Cell::new(target.attempts),
            Cell::new(target.exit_code.map(|c| c.to_string()).unwrap_or_default()),
            Cell::new(duration(target.duration_ms)),
            Cell::new(target.rollback_status.map(|r| r.to_string()).unwrap_or_default()),
            Cell::new(truncate(&error, 80)),
        ]);
    }
    let whose = if what == "Branch" { "Branches" } else { "Targets" };
    say!("{whose} of step `{step}`:");
    say!("{t}");
}

/// The steps of the child execution a `runbook` step started.
fn print_child(step: &str, c: &opsbook_api::ChildRef) {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    if !std::io::stdout().is_terminal() {
        t.force_no_tty();
    }
    t.set_header(vec!["Step", "Kind", "Status", "Attempts", "Duration", "Rollback", "Error"]);
    for s in &c.steps {
        t.add_row(vec![
            Cell::new(&s.id),
            Cell::new(&s.kind),
            step_cell(s.status),
            Cell::new(s.attempts),
            Cell::new(duration(s.duration_ms)),
            Cell::new(s.rollback_status.map(|r| r.to_string()).unwrap_or_default()),
            Cell::new(truncate(s.error.as_deref().unwrap_or_default(), 80)),
        ]);
    }
    let rolled = c.rollback_status.map(|r| format!(", rollback {r}")).unwrap_or_default();
    say!("Step `{step}` ran {} {} as execution {}: {}{rolled}", c.runbook, c.version, c.id, exec_status(c.status));
    say!("{t}");
}

/// What the reader can do about a waiting or interrupted execution (`rollbacks` as for
/// [`print_summary`]).
pub fn next_step(doc: &ExecutionDoc, at: Where<'_>, rollbacks: bool) -> Option<String> {
    let (id, ops) = (&doc.summary.id, at.opsbook());
    // Its secrets are shown masked: only then are they asked for again.
    let has_secrets = (doc.summary.params.as_object())
        .is_some_and(|p| p.values().any(|v| v.as_str() == Some(opsbook_core::params::MASK)));
    let secrets = match at {
        Where::Here if has_secrets => " (pass secret parameters again with -p)",
        _ => "",
    };
    let asks = doc
        .steps
        .iter()
        .find(|s| s.status == opsbook_core::StepStatus::Waiting)
        .and_then(|s| s.message.as_deref())
        .map(|m| match m.trim_end() {
            // Instructions with a checklist: set apart, then what to do on a line of its own.
            m if m.contains('\n') => format!("step asks:\n  {}\n", m.replace('\n', "\n  ")),
            m => format!("step asks: {m}; "),
        })
        .unwrap_or_default();
    if let Some((step, rollback)) = doc.waits_for_confirmation() {
        let what = if rollback { format!("the rollback of step `{step}`") } else { format!("step `{step}`") };
        let then = if rollback { "the other rollbacks then run" } else { "the execution then goes on" };
        return Some(format!(
            "{asks}{what} is for a person to do: when it is done, `{ops} confirm {id} --step {step}` (or \
             `--not-done`){secrets}; {then}"
        ));
    }
    if doc.summary.status == ExecStatus::Waiting
        && let Some(s) = doc.steps.iter().find(|s| s.status == opsbook_core::StepStatus::Waiting && s.kind == "runbook")
        && let Some(c) = &s.child
    {
        let what = match c.steps.iter().find(|cs| cs.status == opsbook_core::StepStatus::Waiting) {
            Some(cs) if cs.kind == "approval" => {
                format!("decide on its step `{}` with `{ops} approve {}` (or reject)", cs.id, c.id)
            }
            Some(cs) if cs.kind == "manual" => format!("confirm its step `{}` with `{ops} confirm {}`", cs.id, c.id),
            _ => "let it go on".to_string(),
        };
        return Some(match at {
            Where::Here => format!(
                "step `{}` waits on child execution {}: {what}, then `{ops} resume {id}`{secrets} goes on with both",
                s.id, c.id
            ),
            Where::Server(_) => format!(
                "step `{}` waits on child execution {}: {what}; this execution goes on when the child ends",
                s.id, c.id
            ),
        });
    }
    if let (Some(p), Where::Here) = (&doc.summary.parent, at)
        && doc.summary.status.is_terminal()
    {
        return Some(format!(
            "it was started by step `{}` of execution {}: `{ops} resume {}` goes on with that one",
            p.step, p.id, p.id
        ));
    }
    match (doc.summary.status, doc.waits_for_people(), at) {
        (ExecStatus::Waiting, Some(true), _) => Some(format!(
            "{asks}decide with `{ops} approve {id}` or `{ops} reject {id}`{secrets}; the execution then goes on"
        )),
        (ExecStatus::Waiting, _, Where::Here) => {
            Some(format!("it waits for a gate; continue with `{ops} resume {id}`"))
        }
        (ExecStatus::Waiting, _, Where::Server(_)) => Some(format!(
            "waiting on a gate: it goes on by itself when the gate clears; an admin may override with `{ops} gate \
             override {id} --reason \"…\"`"
        )),
        // Rolled back: nothing is left to do with it.
        (ExecStatus::Interrupted, _, _) if doc.rollback.status == Some(opsbook_core::StepStatus::Succeeded) => None,
        // Its rollback had begun: only finishing it is left (a resume is refused).
        (ExecStatus::Interrupted, _, _) if doc.rollback.status.is_some() || !doc.rollback.steps.is_empty() => {
            Some(format!("it stopped while rolling back: finish with `{ops} rollback {id}`{secrets}"))
        }
        (ExecStatus::Interrupted, _, _) => Some(format!("see `{ops} resume {id}` or `{ops} rollback {id}`")),
        // A failure that rolled nothing back (`on_failure: stop`): what succeeded stays done.
        (ExecStatus::Failed, _, _)
            if doc.rollback.status.is_none()
                && doc.steps.iter().any(|s| s.status == opsbook_core::StepStatus::Succeeded) =>
        {
            if !rollbacks {
                return Some("nothing was rolled back: no step that succeeded has a rollback".to_string());
            }
            Some(format!(
                "nothing was rolled back: the steps that succeeded stay done (`{ops} rollback {id}`{secrets} runs \
                 the rollbacks they have)"
            ))
        }
        _ => None,
    }
}

/// How `logs` shows a line: `[step]` for its output, `[step stderr]` for what it wrote
/// to standard error, `[step rollback]` for its rollback's, in colour on a terminal; with
/// `clock`, the time first.
pub fn log_line(l: &LogLine, clock: Option<&crate::cmd::history::Clock>) -> String {
    // A prerequisite's check belongs to no step.
    let step = l.step.as_deref().unwrap_or(if l.phase == "check" { "check" } else { "-" });
    let tag = match (l.phase.as_str(), l.stream.as_str()) {
        ("rollback", "system") => style(format!("[{step} rollback]")).cyan(),
        (_, "system") => style(format!("[{step}]")).cyan(),
        ("rollback", "stderr") => style(format!("[{step} rollback stderr]")).magenta(),
        ("rollback", _) => style(format!("[{step} rollback]")).magenta(),
        (_, "stderr") => style(format!("[{step} stderr]")).red(),
        _ => style(format!("[{step}]")).dim(),
    };
    let time = match clock.and_then(|c| c.stamp(l.ts)) {
        Some(t) => format!("{t} "),
        None => String::new(),
    };
    format!("{time}{tag} {}", opsbook_core::terminal::for_terminal(&l.line))
}

/// How `logs` reads: the options both local and remote follow.
#[derive(Debug, Clone, Copy)]
pub struct Follow<'a> {
    pub step: Option<&'a str>,
    pub follow: bool,
    pub timestamps: bool,
    /// Each line as a JSON object of its own (JSON Lines), as the API gives it.
    pub json: bool,
    pub at: Where<'a>,
}

/// Prints an execution's log, and with `follow` keeps printing until the execution
/// ends: through approval and gate waits (saying once what it waits for and how to go
/// on), not only while it runs. `fetch(after)` gives the lines after a sequence number,
/// `state()` the execution now.
pub async fn logs(
    opts: Follow<'_>,
    first: &ExecutionDoc,
    mut fetch: impl AsyncFnMut(i64) -> anyhow::Result<Vec<LogLine>>,
    mut state: impl AsyncFnMut() -> anyhow::Result<ExecutionDoc>,
) -> anyhow::Result<()> {
    // A parallel step's branches are steps too (known once the step has started).
    if let Some(step) = opts.step
        && let Err(why) = first.check_step(step)
    {
        return Err(crate::cmd::usage(why));
    }
    let clock = opts.timestamps.then(crate::cmd::history::Clock::new);
    let show = |l: &LogLine| -> anyhow::Result<()> {
        if opts.json {
            say!("{}", serde_json::to_string(l)?);
        } else {
            say!("{}", log_line(l, clock.as_ref()));
        }
        Ok(())
    };
    let mut after = 0;
    let mut said: Option<String> = None;
    loop {
        let lines = fetch(after).await?;
        for l in lines.iter().filter(|l| opts.step.is_none() || l.step.as_deref() == opts.step) {
            show(l)?;
        }
        if let Some(last) = lines.last() {
            after = last.seq;
            continue;
        }
        if !opts.follow {
            return Ok(());
        }
        let doc = state().await?;
        let ended = match doc.summary.status {
            ExecStatus::Queued | ExecStatus::Running => false,
            ExecStatus::Waiting => {
                // Once per wait: what it waits for and how it goes on (on stderr, so the
                // log lines on stdout stay just those).
                let now = next_step(&doc, opts.at, true);
                if now != said {
                    if let Some(n) = &now {
                        say_err!("execution {} waits: {n}", doc.summary.id);
                    }
                    said = now;
                }
                false
            }
            _ => true,
        };
        if ended {
            // One last read, so nothing written just before the end is missed.
            for l in fetch(after).await?.iter().filter(|l| opts.step.is_none() || l.step.as_deref() == opts.step) {
                show(l)?;
            }
            say_err!("execution {} {}", doc.summary.id, exec_status(doc.summary.status));
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// The table of API tokens (never their secrets), for `tokens list` and `admin token list`.
pub fn tokens_table(tokens: &[opsbook_api::TokenInfo]) -> Table {
    let clock = crate::cmd::history::Clock::new();
    let time = |ms: Option<i64>| clock.show(ms);
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    let created = format!("Created ({})", clock.label);
    t.set_header(vec!["ID", "User", "Roles", &created, "Expires", "Revoked", "Last used"]);
    for k in tokens {
        t.add_row(vec![
            k.id.clone(),
            k.user.clone(),
            k.roles.join(", "),
            time(Some(k.created_at)),
            time(k.expires_at),
            time(k.revoked_at),
            time(k.last_used_at),
        ]);
    }
    t
}

/// A new token: its secret on stdout (for scripts), what it is on stderr.
pub fn print_new_token(secret: &str, info: &opsbook_api::TokenInfo) {
    println!("{secret}");
    eprintln!(
        "token {} for {} ({}) — shown once, only its SHA-256 is stored",
        info.id,
        info.user,
        info.roles.join(", ")
    );
}
