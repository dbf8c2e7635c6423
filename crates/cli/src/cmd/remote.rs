//! The commands that also work against a server (`--server URL`): run, history, show,
//! logs, approve, reject, cancel.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use comfy_table::{Cell, Table, presets::UTF8_FULL_CONDENSED};
use console::style;
use opsbook_core::duration::human_ms;
use opsbook_core::{ExecStatus, StepStatus};
use opsbook_engine::{Event, Observer};
use opsbook_store::{Phase, Stream};
use serde_json::{Value, json};

use super::{EXIT_FAILED, EXIT_OK, EXIT_WAITING};
use crate::Output;
use crate::client::{Client, enc};
use crate::render::{Live, exec_cell, step_cell, truncate};

fn status_of(doc: &Value) -> ExecStatus {
    doc["status"].as_str().and_then(ExecStatus::parse).unwrap_or(ExecStatus::Failed)
}

/// Still going: queued, running, or waiting on a gate (which resumes by itself), as
/// opposed to waiting for people.
fn in_progress(doc: &Value) -> bool {
    match status_of(doc) {
        ExecStatus::Queued | ExecStatus::Running => true,
        ExecStatus::Waiting => waits_on_gate(doc),
        _ => false,
    }
}

fn waits_on_gate(doc: &Value) -> bool {
    doc["steps"].as_array().into_iter().flatten().any(|s| s["status"] == "waiting" && s["kind"] != "approval")
}

fn exit_for(status: ExecStatus) -> u8 {
    match status {
        ExecStatus::Succeeded => EXIT_OK,
        ExecStatus::Waiting => EXIT_WAITING,
        _ => EXIT_FAILED,
    }
}

/// Submits an execution of a published runbook and follows it until it stops running.
pub async fn run(client: &Client, name: &str, params: BTreeMap<String, Value>, output: Output) -> Result<u8> {
    let sub = client.post(&format!("/api/v1/runbooks/{}/executions", enc(name)), &json!({ "params": params })).await?;
    let id = sub["id"].as_str().unwrap_or_default().to_string();
    let first = client.get(&format!("/api/v1/executions/{id}")).await?;
    let live = Live::new(first["steps"].as_array().map_or(0, Vec::len));
    let json_out = output == Output::Json;
    if !json_out {
        let version = first["runbook"]["version"].as_str().unwrap_or_default();
        live.on_event(&Event::Started {
            execution_id: &id,
            runbook: name,
            version,
            start: opsbook_engine::Start::Fresh,
        });
    }
    let mut after = 0i64;
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let logs = client.get(&format!("/api/v1/executions/{id}/logs?after={after}")).await?;
        let doc = client.get(&format!("/api/v1/executions/{id}")).await?;
        if !json_out {
            // The same display as a local run: a step starts, its output streams beneath, it ends.
            let steps = doc["steps"].as_array().cloned().unwrap_or_default();
            let lines = logs["lines"].as_array().cloned().unwrap_or_default();
            // Steps before `upto` that ended are reported before anything of a later step.
            let finish = |upto: usize, seen: &mut BTreeMap<String, String>| {
                for (idx, s) in steps.iter().enumerate().take(upto) {
                    let sid = s["id"].as_str().unwrap_or_default();
                    let st = s["status"].as_str().unwrap_or("pending");
                    if matches!(st, "pending" | "running") || seen.get(sid).map(String::as_str) == Some(st) {
                        continue;
                    }
                    if !seen.contains_key(sid) {
                        let name = s["name"].as_str().unwrap_or(sid);
                        live.on_event(&Event::StepStarted { idx, step_id: sid, name, attempt: 1, max_attempts: 1 });
                    }
                    let status = StepStatus::parse(st).unwrap_or(StepStatus::Failed);
                    let duration_ms = s["duration_ms"].as_i64().unwrap_or(0);
                    live.on_event(&Event::StepFinished {
                        idx,
                        step_id: sid,
                        status,
                        duration_ms,
                        error: s["error"].as_str(),
                    });
                    seen.insert(sid.to_string(), st.to_string());
                }
            };
            let start = |idx: usize, seen: &mut BTreeMap<String, String>| {
                let sid = steps[idx]["id"].as_str().unwrap_or_default();
                if !seen.contains_key(sid) {
                    seen.insert(sid.to_string(), "running".into());
                    let name = steps[idx]["name"].as_str().unwrap_or(sid);
                    live.on_event(&Event::StepStarted { idx, step_id: sid, name, attempt: 1, max_attempts: 1 });
                }
            };
            for l in &lines {
                if let Some(idx) = steps.iter().position(|s| s["id"] == l["step"]) {
                    finish(idx, &mut seen);
                    start(idx, &mut seen);
                }
                let stream = Stream::parse(l["stream"].as_str().unwrap_or("stdout")).unwrap_or(Stream::Stdout);
                let phase = Phase::parse(l["phase"].as_str().unwrap_or("step")).unwrap_or(Phase::Step);
                live.on_event(&Event::Log {
                    step_id: l["step"].as_str(),
                    phase,
                    stream,
                    line: l["line"].as_str().unwrap_or(""),
                });
            }
            finish(steps.len(), &mut seen);
            if let Some(idx) = steps.iter().position(|s| s["status"] == "running") {
                start(idx, &mut seen);
            }
        }
        if let Some(next) = logs["next_after"].as_i64() {
            after = next;
        }
        let status = status_of(&doc);
        if !in_progress(&doc) && logs["lines"].as_array().is_none_or(|a| a.is_empty()) {
            print_doc(client, &doc, output)?;
            return Ok(exit_for(status));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn print_doc(client: &Client, doc: &Value, output: Output) -> Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(doc)?);
        return Ok(());
    }
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(vec!["#", "Step", "Status", "Attempts", "Exit", "Duration", "Error"]);
    for (i, s) in doc["steps"].as_array().into_iter().flatten().enumerate() {
        let status = StepStatus::parse(s["status"].as_str().unwrap_or("")).unwrap_or(StepStatus::Pending);
        t.add_row(vec![
            Cell::new(i + 1),
            Cell::new(s["id"].as_str().unwrap_or_default()),
            step_cell(status),
            Cell::new(s["attempts"].as_i64().unwrap_or(0)),
            Cell::new(s["exit_code"].as_i64().map(|c| c.to_string()).unwrap_or_default()),
            Cell::new(s["duration_ms"].as_u64().map(human_ms).unwrap_or_default()),
            Cell::new(truncate(s["error"].as_str().unwrap_or_default(), 80)),
        ]);
    }
    println!("{t}");
    let took = doc["duration_ms"].as_u64().map(|d| format!(" in {}", human_ms(d))).unwrap_or_default();
    println!(
        "Execution {} {}{took}",
        style(doc["id"].as_str().unwrap_or("?")).bold(),
        crate::render::exec_status(status_of(doc))
    );
    if let Some(err) = doc["error"].as_str() {
        println!("  {}", style(err).red());
    }
    let id = doc["id"].as_str().unwrap_or("?");
    if status_of(doc) == ExecStatus::Waiting && waits_on_gate(doc) {
        println!(
            "  waiting on a gate: it goes on by itself when the gate clears; an admin may override with \
             `opsbook --server {} gate override {id} --reason \"…\"`",
            client.base()
        );
    } else if status_of(doc) == ExecStatus::Waiting {
        println!("  approve with `opsbook --server {} approve {id}`", client.base());
    }
    Ok(())
}

pub async fn show(client: &Client, id: &str, output: Output) -> Result<u8> {
    let doc = client.get(&format!("/api/v1/executions/{}", enc(id))).await?;
    print_doc(client, &doc, output)?;
    Ok(EXIT_OK)
}

pub async fn history(
    client: &Client,
    runbook: Option<&str>,
    status: Option<&str>,
    limit: i64,
    output: Output,
) -> Result<u8> {
    let mut q = format!("/api/v1/executions?limit={limit}");
    if let Some(r) = runbook {
        q.push_str(&format!("&runbook={}", enc(r)));
    }
    if let Some(s) = status {
        q.push_str(&format!("&status={}", enc(s)));
    }
    let page = client.get(&q).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&page["items"])?);
        return Ok(EXIT_OK);
    }
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(vec!["ID", "Runbook", "Version", "Status", "Started", "Duration", "Actor", "Error"]);
    for e in page["items"].as_array().into_iter().flatten() {
        t.add_row(vec![
            Cell::new(e["id"].as_str().unwrap_or_default()),
            Cell::new(e["runbook"]["name"].as_str().unwrap_or_default()),
            Cell::new(e["runbook"]["version"].as_str().unwrap_or_default()),
            exec_cell(status_of(e)),
            Cell::new(
                e["started_at"].as_str().unwrap_or_default().chars().take(19).collect::<String>().replace('T', " "),
            ),
            Cell::new(e["duration_ms"].as_u64().map(human_ms).unwrap_or_default()),
            Cell::new(e["actor"].as_str().unwrap_or_default()),
            Cell::new(truncate(e["error"].as_str().unwrap_or_default(), 60)),
        ]);
    }
    println!("{t}");
    Ok(EXIT_OK)
}

pub async fn logs(client: &Client, id: &str, step: Option<&str>, follow: bool) -> Result<u8> {
    let mut after = 0;
    loop {
        let mut q = format!("/api/v1/executions/{}/logs?after={after}", enc(id));
        if let Some(s) = step {
            q.push_str(&format!("&step={}", enc(s)));
        }
        let page = client.get(&q).await?;
        let lines = page["lines"].as_array().cloned().unwrap_or_default();
        for l in &lines {
            println!("[{}] {}", l["step"].as_str().unwrap_or("-"), l["line"].as_str().unwrap_or_default());
        }
        if let Some(n) = page["next_after"].as_i64() {
            after = n;
        }
        if !lines.is_empty() {
            continue;
        }
        if !follow {
            return Ok(EXIT_OK);
        }
        let doc = client.get(&format!("/api/v1/executions/{}", enc(id))).await?;
        if !in_progress(&doc) {
            // How it ended, on stderr so the log lines on stdout stay just those.
            eprintln!("execution {id} {}", crate::render::exec_status(status_of(&doc)));
            return Ok(EXIT_OK);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub async fn decide(client: &Client, id: &str, approved: bool, comment: Option<String>) -> Result<u8> {
    let body = json!({ "decision": if approved { "approve" } else { "reject" }, "comment": comment });
    let doc = client.post(&format!("/api/v1/executions/{}/approvals", enc(id)), &body).await?;
    let verb = if approved { "approved" } else { "rejected" };
    println!(
        "{verb} step `{}` of execution {} ({} of {} approvals{})",
        doc["step"].as_str().unwrap_or("?"),
        doc["execution"].as_str().unwrap_or("?"),
        doc["approvals"],
        doc["min_approvals"],
        if doc["settled"].as_bool() == Some(true) { "; the execution continues" } else { "" }
    );
    Ok(EXIT_OK)
}

pub async fn cancel(client: &Client, id: &str) -> Result<u8> {
    client.post(&format!("/api/v1/executions/{}/cancel", enc(id)), &json!({})).await?;
    println!("cancel requested for execution {id}");
    Ok(EXIT_OK)
}
