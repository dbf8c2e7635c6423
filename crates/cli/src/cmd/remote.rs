//! The commands that also work against a server (`--server URL`): run, history, show,
//! logs, approve, reject, cancel. Answers are read as the API's own types
//! (`opsbook_api`), the ones the server sends.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use comfy_table::{Cell, Table, presets::UTF8_FULL_CONDENSED};

use opsbook_api::{
    CancelAccepted, Decide, Decided, ExecutionDoc, ExecutionPage, LogPage, Resume, Resumed, StepDoc, Submit, Submitted,
};
use opsbook_core::duration::human_ms;
use opsbook_core::{ExecStatus, StepStatus};
use opsbook_engine::{Event, Observer};
use opsbook_store::{Phase, Stream};
use serde_json::Value;

use super::{EXIT_FAILED, EXIT_OK, EXIT_WAITING};
use crate::Output;
use crate::client::{Client, enc};
use crate::render::{Live, exec_cell, truncate};
use crate::view::{self, Where};

fn exit_for(status: ExecStatus) -> u8 {
    match status {
        ExecStatus::Succeeded => EXIT_OK,
        ExecStatus::Waiting => EXIT_WAITING,
        _ => EXIT_FAILED,
    }
}

fn duration(ms: Option<i64>) -> Option<String> {
    ms.and_then(|d| u64::try_from(d).ok()).map(human_ms)
}

async fn execution(client: &Client, id: &str) -> Result<ExecutionDoc> {
    client.get(&format!("/api/v1/executions/{}", enc(id))).await
}

/// Submits an execution of a published runbook and follows it until it stops running.
pub async fn run(client: &Client, name: &str, params: BTreeMap<String, Value>, output: Output) -> Result<u8> {
    let submit = Submit { params, version: None };
    let sub: Submitted = client.post(&format!("/api/v1/runbooks/{}/executions", enc(name)), &submit).await?;
    for w in &sub.warnings {
        say_err!("{} {w}", console::style("warning:").yellow().bold().for_stderr());
    }
    follow(client, &sub.id, Some(opsbook_engine::Start::Fresh), output).await
}

/// The newest published version of a runbook, parsed (to know its parameters).
pub async fn published(client: &Client, name: &str) -> Result<opsbook_core::Runbook> {
    let entry: opsbook_api::RunbookDoc = client.get(&format!("/api/v1/runbooks/{}", enc(name))).await?;
    let version = &entry.entry.latest_version;
    let path = format!("/api/v1/runbooks/{}/versions/{}", enc(name), enc(version));
    let doc: opsbook_api::VersionDoc = client.get(&path).await?;
    let mut rb = opsbook_core::parse(&doc.content).map_err(|d| {
        anyhow::anyhow!(
            "{name} {version}: the published text no longer parses: {}",
            d.first().map(ToString::to_string).unwrap_or_default()
        )
    })?;
    // Its lifecycle is the registry's (a version's own `metadata.status` is not).
    rb.status = opsbook_core::LifecycleStatus::parse(&entry.entry.status).unwrap_or(rb.status);
    Ok(rb)
}

/// Resumes (or rolls back) an execution on the server, with the secrets it needs, and
/// follows it until it stops running.
pub async fn resume(
    client: &Client,
    id: &str,
    mut params: BTreeMap<String, Value>,
    rollback: bool,
    output: Output,
) -> Result<u8> {
    let action = if rollback { "rollback" } else { "resume" };
    let path = format!("/api/v1/executions/{}/{action}", enc(id));
    let done: Resumed = match client.try_post(&path, &Resume { params: params.clone() }).await? {
        Ok(done) => done,
        Err((status, refusal)) => {
            // The secrets it still needs (the server names only those): asked for on a
            // terminal, once, then the request again.
            let needed: Vec<String> = refusal
                .error
                .details
                .as_ref()
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|d| d["message"].as_str().is_some_and(|m| m.contains("is a secret and is never stored")))
                .filter_map(|d| d["param"].as_str().map(str::to_string))
                .collect();
            let asked = super::prompt_secrets(&needed)?;
            if needed.is_empty() || asked.is_empty() {
                let text = serde_json::to_string(&refusal).unwrap_or_default();
                return Err(client.refusal(status, &path, &text));
            }
            params.extend(super::as_json(asked));
            client.post(&path, &Resume { params }).await?
        }
    };
    if done.nothing_to_roll_back {
        if output == Output::Json {
            println!("{}", serde_json::to_string_pretty(&execution(client, &done.id).await?)?);
        } else {
            say!(
                "nothing to roll back: no step of execution {} that succeeded has a rollback left to run; nothing was changed",
                done.id
            );
        }
        return Ok(EXIT_OK);
    }
    let start = (!rollback).then_some(opsbook_engine::Start::Resumed);
    let code = follow(client, &done.id, start, output).await?;
    if !rollback {
        return Ok(code);
    }
    rollback_code(client, &done.id).await
}

/// How a rollback the CLI followed ended: exit 0 when its rollbacks (if any) succeeded.
/// The overall result is written a moment after the last rollback ended: waited for,
/// briefly.
async fn rollback_code(client: &Client, id: &str) -> Result<u8> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let doc = loop {
        let doc = execution(client, id).await?;
        let settled = !matches!(doc.rollback.status, None | Some(StepStatus::Running));
        let untouched = doc.rollback.steps.is_empty();
        if settled || untouched || tokio::time::Instant::now() >= deadline {
            break doc;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    Ok(super::rollback_exit(doc.rollback.status))
}

/// Follows an execution on the server until it stops running, shown as a local run is.
async fn follow(client: &Client, id: &str, start: Option<opsbook_engine::Start>, output: Output) -> Result<u8> {
    let id = id.to_string();
    let first = execution(client, &id).await?;
    let live = Live::new(first.steps.len());
    let json_out = output == Output::Json;
    if let Some(start) = start.filter(|_| !json_out) {
        live.on_event(&Event::Started {
            execution_id: &id,
            runbook: &first.summary.runbook.name,
            version: &first.summary.runbook.version,
            start,
        });
    }
    let mut after = 0i64;
    let mut shown = Shown::default();
    loop {
        // The state first, then the log: every line of a step the state shows ended is in
        // the log read after it, so no line shows up under a later step.
        let doc = execution(client, &id).await?;
        let logs: LogPage = client.get(&format!("/api/v1/executions/{id}/logs?after={after}&limit=10000")).await?;
        let shown_upto = if json_out { None } else { show_progress(&live, &doc, &logs, &mut shown) };
        match shown_upto {
            // Lines the state read before them does not account for yet: the next round.
            Some(seq) => after = seq,
            None => {
                if let Some(next) = logs.next_after {
                    after = next;
                }
            }
        }
        if !doc.in_progress() && logs.lines.is_empty() {
            print_doc(client, &doc, output)?;
            return Ok(exit_for(doc.status()));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// What a follower has shown so far: each step's last status, each rollback's.
#[derive(Default)]
struct Shown {
    steps: BTreeMap<String, StepStatus>,
    rollbacks: BTreeMap<String, Option<StepStatus>>,
}

/// The same display as a local run: a step starts, its output streams beneath, it ends;
/// then the rollbacks, each with its output and how it ended. A rollback's line that the
/// state (read just before) does not account for yet is held back, with every line after
/// it, for the next round: the failure is shown before the rollbacks. Returns the
/// sequence number of the last line shown when it held lines back.
fn show_progress(live: &Live, doc: &ExecutionDoc, logs: &LogPage, shown: &mut Shown) -> Option<i64> {
    let steps = &doc.steps;
    let started = |idx: usize, s: &StepDoc| {
        live.on_event(&Event::StepStarted { idx, step_id: &s.id, name: &s.name, attempt: 1, max_attempts: 1 });
    };
    // Steps before `upto` that ended are reported before anything of a later step.
    let finish = |upto: usize, seen: &mut BTreeMap<String, StepStatus>| {
        for (idx, s) in steps.iter().enumerate().take(upto) {
            if matches!(s.status, StepStatus::Pending | StepStatus::Running) || seen.get(&s.id) == Some(&s.status) {
                continue;
            }
            if !seen.contains_key(&s.id) {
                started(idx, s);
            }
            live.on_event(&Event::StepFinished {
                idx,
                step_id: &s.id,
                status: s.status,
                duration_ms: s.duration_ms.unwrap_or(0),
                error: s.error.as_deref(),
            });
            seen.insert(s.id.clone(), s.status);
        }
    };
    let start = |idx: usize, seen: &mut BTreeMap<String, StepStatus>| {
        if !seen.contains_key(&steps[idx].id) {
            seen.insert(steps[idx].id.clone(), StepStatus::Running);
            started(idx, &steps[idx]);
        }
    };
    let rollback_started = |id: &str, rolled: &mut BTreeMap<String, Option<StepStatus>>| {
        if !rolled.contains_key(id) {
            rolled.insert(id.to_string(), None);
            live.on_event(&Event::RollbackStarted { step_id: id });
        }
    };
    let mut last_shown = None;
    for l in &logs.lines {
        let phase = Phase::parse(&l.phase).unwrap_or(Phase::Step);
        // The step a line belongs to: a step, or the parallel step whose branch it is.
        let owner = l
            .step
            .as_ref()
            .and_then(|id| steps.iter().position(|s| &s.id == id || s.branches.iter().any(|b| &b.name == id)));
        // Held for the next round while the execution goes on: a line of a step (or
        // branch) the state read before it does not know yet, and a rollback's line
        // whose rollback it does not know yet (on record as running before it writes
        // anything). A finished execution's state knows everything: nothing waits then.
        let unknown_rollback = |i: usize| !doc.rollback.steps.iter().any(|r| r.id == steps[i].id);
        let hold = doc.in_progress()
            && match owner {
                None => l.step.is_some(),
                Some(i) => phase == Phase::Rollback && unknown_rollback(i),
            };
        if hold {
            return Some(last_shown.unwrap_or(l.seq - 1));
        }
        last_shown = Some(l.seq);
        match (phase, owner) {
            // Rollbacks come after every step that ran has ended.
            (Phase::Rollback, _) => {
                finish(steps.len(), &mut shown.steps);
                if let Some(i) = owner {
                    rollback_started(&steps[i].id, &mut shown.rollbacks);
                }
            }
            (_, Some(idx)) => {
                finish(idx, &mut shown.steps);
                start(idx, &mut shown.steps);
            }
            _ => {}
        }
        live.on_event(&Event::Log {
            step_id: l.step.as_deref(),
            phase,
            stream: Stream::parse(&l.stream).unwrap_or(Stream::Stdout),
            line: &l.line,
        });
    }
    finish(steps.len(), &mut shown.steps);
    if let Some(idx) = steps.iter().position(|s| s.status == StepStatus::Running) {
        start(idx, &mut shown.steps);
    }
    for r in &doc.rollback.steps {
        if r.status == StepStatus::Running || shown.rollbacks.get(&r.id) == Some(&Some(r.status)) {
            continue;
        }
        rollback_started(&r.id, &mut shown.rollbacks);
        live.on_event(&Event::RollbackFinished { step_id: &r.id, status: r.status, error: r.error.as_deref() });
        shown.rollbacks.insert(r.id.clone(), Some(r.status));
    }
    None
}

fn print_doc(client: &Client, doc: &ExecutionDoc, output: Output) -> Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(doc)?);
        return Ok(());
    }
    view::print_summary(doc, Where::Server(client.base()), true);
    Ok(())
}

/// An execution by id, else a published runbook by name.
pub async fn show(client: &Client, id: &str, output: Output) -> Result<u8> {
    match execution(client, id).await {
        Ok(doc) if output == Output::Text => {
            view::print_header(&doc);
            print_doc(client, &doc, output)?;
            Ok(EXIT_OK)
        }
        Ok(doc) => {
            print_doc(client, &doc, output)?;
            Ok(EXIT_OK)
        }
        Err(e) if e.to_string().contains("not found") => match super::registry::show(client, id, output).await {
            Ok(code) => Ok(code),
            Err(_) => Err(super::usage(format!("no execution or runbook `{id}` on {}", client.base()))),
        },
        Err(e) => Err(e),
    }
}

pub async fn history(client: &Client, a: &super::history::Args) -> Result<u8> {
    if a.limit < 1 {
        return Err(super::usage("--limit must be at least 1"));
    }
    let mut q = format!("/api/v1/executions?limit={}", a.limit);
    for (k, v) in [("runbook", &a.runbook), ("status", &a.status), ("actor", &a.actor)] {
        if let Some(v) = v {
            q.push_str(&format!("&{k}={}", enc(v)));
        }
    }
    if let Some(s) = &a.since {
        q.push_str(&format!("&since={}", super::history::since_ms(s)?));
    }
    let page: ExecutionPage = client.get(&q).await?;
    if a.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&page.items)?);
        return Ok(EXIT_OK);
    }
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    let clock = super::history::Clock::new();
    let started_in = format!("Started ({})", clock.label);
    t.set_header(vec!["ID", "Runbook", "Version", "Status", &started_in, "Duration", "Actor", "Error"]);
    for e in &page.items {
        let started = clock.show_text(e.started_at.as_deref().or(e.created_at.as_deref()));
        t.add_row(vec![
            Cell::new(&e.id),
            Cell::new(match &e.parent {
                Some(p) => format!("{} (child of {}, step {})", e.runbook.name, p.id, p.step),
                None => e.runbook.name.clone(),
            }),
            Cell::new(&e.runbook.version),
            exec_cell(e.status),
            Cell::new(started),
            Cell::new(duration(e.duration_ms).unwrap_or_default()),
            Cell::new(&e.actor),
            Cell::new(truncate(e.error.as_deref().unwrap_or_default(), 60)),
        ]);
    }
    println!("{t}");
    if page.items.is_empty() {
        eprintln!("no execution matches");
    }
    Ok(EXIT_OK)
}

pub async fn logs(client: &Client, args: &super::logs::Args) -> Result<u8> {
    let first = execution(client, &args.id).await?;
    let id = first.summary.id.clone();
    let fetch = async |after: i64| -> Result<Vec<opsbook_api::LogLine>> {
        let mut q = format!("/api/v1/executions/{}/logs?after={after}&limit=10000", enc(&id));
        if let Some(s) = &args.step {
            q.push_str(&format!("&step={}", enc(s)));
        }
        Ok(client.get::<LogPage>(&q).await?.lines)
    };
    let state = async || execution(client, &id).await;
    view::logs(args.follow(Where::Server(client.base())), &first, fetch, state).await?;
    Ok(EXIT_OK)
}

/// Decides on the approval step an execution waits on, then follows it as the local
/// commands carry it on: the rest of its steps (exit as `run`), or, rejected, its
/// rollbacks (exit 0 when they succeeded); exit 3 while it waits for more approvals.
pub async fn decide(client: &Client, id: &str, approved: bool, comment: Option<String>, output: Output) -> Result<u8> {
    let body = Decide { decision: if approved { "approve" } else { "reject" }.into(), comment };
    let done: Decided = client.post(&format!("/api/v1/executions/{}/approvals", enc(id)), &body).await?;
    let verb = if approved { "approved" } else { "rejected" };
    if !done.settled {
        say!(
            "{verb} step `{}` of execution {} ({} of {} approvals); it waits for more",
            done.step,
            done.execution,
            done.approvals,
            done.min_approvals
        );
        return Ok(EXIT_WAITING);
    }
    if output == Output::Text {
        let next = if approved { "going on" } else { "rolling back" };
        say!("{verb} step `{}` of execution {}; {next}", done.step, done.execution);
    }
    let code = follow(client, &done.execution, approved.then_some(opsbook_engine::Start::Resumed), output).await?;
    if approved { Ok(code) } else { rollback_code(client, &done.execution).await }
}

pub async fn cancel(client: &Client, id: &str, output: Output) -> Result<u8> {
    let done: CancelAccepted =
        client.post(&format!("/api/v1/executions/{}/cancel", enc(id)), &serde_json::json!({})).await?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&done)?),
        Output::Text => println!("cancel requested for execution {}", done.id),
    }
    Ok(EXIT_OK)
}
