//! The server's registry from the command line: `list`/`search`, `versions`, `diff`,
//! `lifecycle`, and `show NAME` for a published runbook. Answers are the API's types.

use anyhow::Result;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use opsbook_api::{Items, LifecycleChange, LifecycleChanged, RunbookDoc, RunbookEntry, VersionEntry};

use super::{EXIT_OK, usage};
use crate::Output;
use crate::client::{Client, enc};

/// Filters of `list`/`search` against a server.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct Filters {
    /// Words in the name, title, description, tags or steps
    #[arg(long)]
    pub search: Option<String>,
    /// Only runbooks with this tag
    #[arg(long)]
    pub tag: Option<String>,
    /// Only this lifecycle status (draft, active, deprecated, archived)
    #[arg(long)]
    pub status: Option<String>,
    /// Only this type (deployment, maintenance, incident_response, backup, scaling, …)
    #[arg(long = "type")]
    pub runbook_type: Option<String>,
    /// Only runbooks this owner owns
    #[arg(long)]
    pub owner: Option<String>,
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// The registry, filtered.
pub async fn list(client: &Client, f: &Filters, output: Output) -> Result<u8> {
    let mut q = Vec::new();
    for (k, v) in
        [("q", &f.search), ("tag", &f.tag), ("status", &f.status), ("type", &f.runbook_type), ("owner", &f.owner)]
    {
        if let Some(v) = v {
            q.push(format!("{k}={}", enc(v)));
        }
    }
    let path = if q.is_empty() { "/api/v1/runbooks".to_string() } else { format!("/api/v1/runbooks?{}", q.join("&")) };
    let found: Items<RunbookEntry> = client.get(&path).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&found.items)?);
        return Ok(EXIT_OK);
    }
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(vec!["Name", "Type", "Version", "Status", "Owner", "Tags", "Title"]);
    for e in &found.items {
        t.add_row(vec![
            e.name.clone(),
            e.runbook_type.clone(),
            e.latest_version.clone(),
            e.status.clone(),
            e.owner.clone().unwrap_or_default(),
            e.tags.join(", "),
            crate::render::truncate(&e.title, 50),
        ]);
    }
    println!("{t}");
    if found.items.is_empty() {
        eprintln!("no runbook matches");
    }
    Ok(EXIT_OK)
}

/// A published runbook: its entry and lifecycle history.
pub async fn show(client: &Client, name: &str, output: Output) -> Result<u8> {
    let doc: RunbookDoc = client.get(&format!("/api/v1/runbooks/{}", enc(name))).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(EXIT_OK);
    }
    let e = &doc.entry;
    println!("{} {} ({}, {})", e.name, e.latest_version, e.status, e.runbook_type);
    println!("  {}", e.title);
    if let Some(d) = &e.description {
        println!("  {}", d.trim());
    }
    if let Some(o) = &e.owner {
        println!("  owner: {o}");
    }
    if !e.tags.is_empty() {
        println!("  tags: {}", e.tags.join(", "));
    }
    // What it takes and does: from its newest published text.
    let path = format!("/api/v1/runbooks/{}/versions/{}", enc(&e.name), enc(&e.latest_version));
    let version: opsbook_api::VersionDoc = client.get(&path).await?;
    if let Ok(rb) = opsbook_core::parse(&version.content) {
        if !rb.params.is_empty() {
            println!("Parameters:");
        }
        for p in &rb.params {
            let s = &p.spec;
            let mut what = vec![s.ty.as_str().to_string()];
            if !s.values.is_empty() {
                what.push(format!("one of {}", s.values.join(", ")));
            }
            if s.required {
                what.push("required".into());
            }
            if let Some(d) = &s.default {
                what.push(format!("default {d}"));
            }
            let about = s.description.as_deref().map(|d| format!(" — {d}")).unwrap_or_default();
            println!("  {} ({}){about}", p.name, what.join(", "));
        }
        println!("Steps:");
        for (i, st) in rb.steps.iter().enumerate() {
            let rollback = if st.rollback.is_some() { " (with a rollback)" } else { "" };
            println!("  {}. {} [{}] {}{rollback}", i + 1, st.id, st.kind.name(), st.name);
        }
    }
    println!("Lifecycle:");
    let clock = super::history::Clock::new();
    for ev in &doc.lifecycle {
        let from = ev.from_status.as_deref().map(|f| format!("{f} -> ")).unwrap_or_default();
        let why =
            ev.reason.as_deref().map(|r| format!(": {}", opsbook_core::terminal::plain_line(r))).unwrap_or_default();
        let at = clock.show_zoned(Some(ev.at)).unwrap_or_default();
        println!("  {at}  {from}{} by {}{why}", ev.to_status, ev.actor);
    }
    Ok(EXIT_OK)
}

#[derive(clap::Args, Debug)]
pub struct VersionsArgs {
    /// A published runbook
    pub name: String,
    /// How to print: text for people, or json (one document on stdout) for programs
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

pub async fn versions(client: &Client, a: &VersionsArgs) -> Result<u8> {
    let found: Items<VersionEntry> = client.get(&format!("/api/v1/runbooks/{}/versions", enc(&a.name))).await?;
    if a.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&found.items)?);
        return Ok(EXIT_OK);
    }
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    let clock = super::history::Clock::new();
    let published = format!("Published ({})", clock.label);
    t.set_header(vec!["Version", &published, "By", "Text", "Files"]);
    for v in &found.items {
        t.add_row(vec![
            v.version.clone(),
            clock.show(Some(v.published_at)),
            v.published_by.clone(),
            short(&v.sha256).to_string(),
            v.bundle_sha256.as_deref().map(short).unwrap_or("-").to_string(),
        ]);
    }
    println!("{t}");
    Ok(EXIT_OK)
}

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    pub name: String,
    pub from: String,
    pub to: String,
}

/// The unified diff of two published versions: their text, then their files.
pub async fn diff(client: &Client, a: &DiffArgs) -> Result<u8> {
    let path = format!("/api/v1/runbooks/{}/diff?from={}&to={}", enc(&a.name), enc(&a.from), enc(&a.to));
    let text = client.get_text(&path).await?;
    if text.is_empty() {
        eprintln!("{} {} and {} are the same", a.name, a.from, a.to);
    }
    print!("{text}");
    Ok(EXIT_OK)
}

#[derive(clap::Args, Debug)]
pub struct LifecycleArgs {
    pub name: String,
    /// draft, active, deprecated or archived
    pub status: String,
    /// Why (kept in the runbook's history and the audit trail)
    #[arg(long)]
    pub reason: String,
}

pub async fn lifecycle(client: &Client, a: &LifecycleArgs) -> Result<u8> {
    if a.reason.trim().is_empty() {
        return Err(usage("--reason: say why (it is kept in the runbook's history)"));
    }
    let body = LifecycleChange { status: a.status.clone(), reason: Some(a.reason.clone()) };
    let done: LifecycleChanged = client.post(&format!("/api/v1/runbooks/{}/lifecycle", enc(&a.name)), &body).await?;
    let from = done.event.from_status.as_deref().unwrap_or("?");
    println!("{}: {from} -> {}", a.name, done.event.to_status);
    if let Some(note) = &done.note {
        println!("  {note}");
    }
    Ok(EXIT_OK)
}
