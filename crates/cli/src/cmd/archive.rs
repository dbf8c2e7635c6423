//! `opsbook export -o FILE` and `opsbook import FILE`: the registry (every version's
//! text and files, the lifecycle and review history, optionally the executions) as one
//! `.tar.gz` of YAML and JSON, read from a database or a server, and restored into a
//! database (either backend) that does not have those runbooks yet.
//!
//! ```text
//! opsbook-export/manifest.json
//! opsbook-export/runbooks/NAME/runbook.json      entry, lifecycle, versions, reviews
//! opsbook-export/runbooks/NAME/VERSION.yaml      each version's exact text
//! opsbook-export/bundles/SHA256.bundle           the files published with versions
//! opsbook-export/executions/ID.json              with --executions: each execution and its log
//! ```

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context as _, Result, anyhow};
use opsbook_api::{Items, LifecycleEvent, ReviewDoc, RunbookDoc, RunbookEntry, VersionEntry};
use opsbook_store::{ExecutionFilter, LogQuery, Publish, RegistryEntry, RunbookQuery, ServerStore, Store};
use opsbook_store_any::AnyStore;
use serde::{Deserialize, Serialize};

use super::{EXIT_OK, usage};
use crate::client::{Client, enc};

/// What the archive says of itself.
/// Version 2 writes times as RFC 3339 (version 1 wrote some as epoch milliseconds);
/// both read, since every time field takes either.
const FORMAT: &str = "opsbook-export/2";
const READS: [&str; 2] = ["opsbook-export/1", FORMAT];
const ROOT: &str = "opsbook-export";

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The archive to write (.tar.gz)
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also every execution with its steps, decisions and log
    #[arg(long)]
    pub executions: bool,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// An archive written by `opsbook export`
    pub file: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    exported_at: Option<String>,
    source: String,
    runbooks: Vec<String>,
    versions: usize,
    bundles: usize,
    executions: usize,
}

/// One runbook of the registry, as archived.
#[derive(Debug, Serialize, Deserialize)]
struct Archived {
    #[serde(flatten)]
    doc: RunbookDoc,
    /// Oldest first.
    versions: Vec<VersionEntry>,
    reviews: Vec<ReviewDoc>,
}

/// Everything an archive holds, in memory.
#[derive(Default)]
struct Contents {
    runbooks: Vec<Archived>,
    texts: BTreeMap<(String, String), String>,
    bundles: BTreeMap<String, Vec<u8>>,
    executions: Vec<(String, serde_json::Value)>,
}

/// Reads the registry from a database.
async fn from_store(store: &AnyStore, executions: bool) -> Result<Contents> {
    let mut c = Contents::default();
    for e in store.registry(&RunbookQuery::default()).await? {
        let mut versions: Vec<VersionEntry> =
            store.registry_versions(&e.name).await?.into_iter().map(VersionEntry::from).collect();
        versions.sort_by_key(|v| v.published_at);
        for v in &versions {
            let (_, text) = store.registry_version(&e.name, &v.version).await?;
            c.texts.insert((e.name.clone(), v.version.clone()), text);
            if let Some(sha) = &v.bundle_sha256
                && !c.bundles.contains_key(sha)
            {
                let bytes = store.bundle(sha).await?.ok_or_else(|| anyhow!("bundle {sha} is missing"))?;
                c.bundles.insert(sha.clone(), bytes);
            }
        }
        let lifecycle = store.lifecycle_events(&e.name).await?.into_iter().map(LifecycleEvent::from).collect();
        let reviews = store.reviews(Some(&e.name)).await?.iter().map(ReviewDoc::from).collect();
        c.runbooks.push(Archived { doc: RunbookDoc { entry: e.into(), lifecycle }, versions, reviews });
    }
    if executions {
        let mut filter = ExecutionFilter { limit: 500, ..Default::default() };
        loop {
            let page = store.executions(&filter).await?;
            for e in &page {
                let doc = super::logs::doc(store, &e.id).await?;
                let q = LogQuery { execution_id: e.id.clone(), step_id: None, after_seq: 0, limit: 0 };
                let log: Vec<opsbook_api::LogLine> = store.logs(&q).await?.iter().map(Into::into).collect();
                c.executions.push((e.id.clone(), serde_json::json!({ "execution": doc, "log": log })));
            }
            match page.last() {
                Some(last) if page.len() as i64 == filter.limit => {
                    filter.before = Some((last.created_at, last.id.clone()));
                }
                _ => break,
            }
        }
    }
    Ok(c)
}

/// Reads the registry through a server's API.
async fn from_server(client: &Client, executions: bool) -> Result<Contents> {
    let mut c = Contents::default();
    let entries: Items<RunbookEntry> = client.get("/api/v1/runbooks").await?;
    for e in entries.items {
        let name = enc(&e.name);
        let doc: RunbookDoc = client.get(&format!("/api/v1/runbooks/{name}")).await?;
        let mut versions: Items<VersionEntry> = client.get(&format!("/api/v1/runbooks/{name}/versions")).await?;
        versions.items.sort_by_key(|v| v.published_at);
        for v in &versions.items {
            let text: opsbook_api::VersionDoc =
                client.get(&format!("/api/v1/runbooks/{name}/versions/{}", enc(&v.version))).await?;
            c.texts.insert((e.name.clone(), v.version.clone()), text.content);
            if let Some(sha) = &v.bundle_sha256
                && !c.bundles.contains_key(sha)
            {
                c.bundles.insert(sha.clone(), client.get_bytes(&format!("/api/v1/bundles/{sha}")).await?);
            }
        }
        let reviews: Items<ReviewDoc> = client.get(&format!("/api/v1/runbooks/{name}/reviews")).await?;
        c.runbooks.push(Archived { doc, versions: versions.items, reviews: reviews.items });
    }
    if executions {
        let mut cursor: Option<String> = None;
        loop {
            let q = cursor.as_deref().map(|c| format!("&cursor={}", enc(c))).unwrap_or_default();
            let page: opsbook_api::ExecutionPage = client.get(&format!("/api/v1/executions?limit=200{q}")).await?;
            for e in &page.items {
                let id = enc(&e.id);
                let doc: serde_json::Value = client.get(&format!("/api/v1/executions/{id}")).await?;
                let log: opsbook_api::LogPage =
                    client.get(&format!("/api/v1/executions/{id}/logs?after=0&limit=10000")).await?;
                c.executions.push((e.id.clone(), serde_json::json!({ "execution": doc, "log": log.lines })));
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    Ok(c)
}

fn add(tar: &mut tar::Builder<impl std::io::Write>, path: &str, data: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(jiff::Timestamp::now().as_second().max(0) as u64);
    h.set_cksum();
    tar.append_data(&mut h, format!("{ROOT}/{path}"), data).with_context(|| format!("cannot add {path}"))
}

pub async fn export(source: Result<AnyStore, Client>, args: ExportArgs) -> Result<u8> {
    let (c, from) = match &source {
        Ok(store) => (from_store(store, args.executions).await?, "database".to_string()),
        Err(client) => (from_server(client, args.executions).await?, client.base().to_string()),
    };
    let manifest = Manifest {
        format: FORMAT.into(),
        exported_at: opsbook_api::time(Some(opsbook_store::now_ms())),
        source: from,
        runbooks: c.runbooks.iter().map(|r| r.doc.entry.name.clone()).collect(),
        versions: c.texts.len(),
        bundles: c.bundles.len(),
        executions: c.executions.len(),
    };
    // Written beside the target and renamed into place: never half an archive.
    let part = args.output.with_extension("part");
    let file = std::fs::File::create(&part).with_context(|| format!("cannot write {}", part.display()))?;
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
    add(&mut tar, "manifest.json", &serde_json::to_vec_pretty(&manifest)?)?;
    for r in &c.runbooks {
        let name = &r.doc.entry.name;
        add(&mut tar, &format!("runbooks/{name}/runbook.json"), &serde_json::to_vec_pretty(r)?)?;
        for v in &r.versions {
            let text = &c.texts[&(name.clone(), v.version.clone())];
            add(&mut tar, &format!("runbooks/{name}/{}.yaml", v.version), text.as_bytes())?;
        }
    }
    for (sha, bytes) in &c.bundles {
        add(&mut tar, &format!("bundles/{sha}.bundle"), bytes)?;
    }
    for (id, doc) in &c.executions {
        add(&mut tar, &format!("executions/{id}.json"), &serde_json::to_vec_pretty(doc)?)?;
    }
    tar.into_inner()?.finish()?.sync_all()?;
    std::fs::rename(&part, &args.output).with_context(|| format!("cannot write {}", args.output.display()))?;
    say!(
        "exported {} runbooks ({} versions, {} bundles{}) to {}",
        manifest.runbooks.len(),
        manifest.versions,
        manifest.bundles,
        if args.executions { format!(", {} executions", manifest.executions) } else { String::new() },
        args.output.display()
    );
    Ok(EXIT_OK)
}

/// The most one file of an archive may hold once unpacked: a bundle's limit, with room.
/// (A small `.tar.gz` can unpack to gigabytes.)
const MAX_ENTRY: u64 = 4 * opsbook_core::bundle::DEFAULT_MAX_BYTES as u64;

/// Reads an archive; every file under `opsbook-export/`, by its path below it, except
/// executions, which are kept for the record and only counted (an empty entry each).
fn read_archive(path: &std::path::Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let file = std::fs::File::open(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = BTreeMap::new();
    let bad = |e: std::io::Error| usage(format!("{}: not an opsbook export ({e})", path.display()));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let Some(rel) = name.strip_prefix(&format!("{ROOT}/")).map(str::to_string) else { continue };
        if rel.starts_with("executions/") {
            files.insert(rel, Vec::new());
            continue;
        }
        let mut data = Vec::new();
        (&mut entry).take(MAX_ENTRY + 1).read_to_end(&mut data).map_err(bad)?;
        if data.len() as u64 > MAX_ENTRY {
            return Err(usage(format!(
                "{}: {rel} unpacks to more than {} MiB, more than an export holds",
                path.display(),
                MAX_ENTRY >> 20
            )));
        }
        files.insert(rel, data);
    }
    Ok(files)
}

pub async fn import(store: &AnyStore, args: ImportArgs) -> Result<u8> {
    let shown = args.file.display().to_string();
    let files = read_archive(&args.file)?;
    let manifest: Manifest = files
        .get("manifest.json")
        .ok_or_else(|| usage(format!("{shown}: not an opsbook export (no manifest.json)")))
        .and_then(|m| {
            serde_json::from_slice(m).map_err(|e| usage(format!("{shown}: not an opsbook export (manifest.json: {e})")))
        })?;
    if !READS.contains(&manifest.format.as_str()) {
        return Err(usage(format!("{shown}: format `{}`; this opsbook reads {}", manifest.format, READS.join(", "))));
    }
    let mut runbooks = Vec::new();
    for name in &manifest.runbooks {
        let path = format!("runbooks/{name}/runbook.json");
        let r: Archived = files
            .get(&path)
            .map(|d| serde_json::from_slice(d))
            .transpose()
            .map_err(|e| usage(format!("{shown}: {path}: {e}")))?
            .ok_or_else(|| usage(format!("{shown}: {path} is missing")))?;
        runbooks.push(r);
    }
    // Everything is checked before anything is written: conflicts, texts, bundles.
    let mut problems = Vec::new();
    for r in &runbooks {
        let name = &r.doc.entry.name;
        if let Ok(there) = store.registry_entry(name).await {
            problems.push(format!("runbook `{name}` exists already (v{}, {})", there.latest_version, there.status));
        }
        for v in &r.versions {
            match files.get(&format!("runbooks/{name}/{}.yaml", v.version)) {
                // The text names the runbook and version it is filed under (the check
                // on existing runbooks above is by that name).
                Some(text) if opsbook_core::sha256_hex(text) == v.sha256 => {
                    match std::str::from_utf8(text).ok().map(opsbook_core::parse) {
                        Some(Ok(rb)) if rb.name == *name && rb.version.to_string() == v.version => {}
                        Some(Ok(rb)) => problems.push(format!(
                            "runbook `{name}` v{}: its text is runbook `{}` v{}",
                            v.version, rb.name, rb.version
                        )),
                        _ => problems.push(format!("runbook `{name}` v{}: its text is not a valid runbook", v.version)),
                    }
                }
                Some(_) => {
                    problems.push(format!("runbook `{name}` v{}: its text does not match its sha256", v.version))
                }
                None => problems.push(format!("runbook `{name}` v{}: its text is missing", v.version)),
            }
            if let Some(sha) = &v.bundle_sha256 {
                match files.get(&format!("bundles/{sha}.bundle")) {
                    Some(b) if opsbook_core::bundle::digest(b) == *sha => {}
                    _ => problems.push(format!("runbook `{name}` v{}: bundle {sha} is missing or damaged", v.version)),
                }
            }
        }
        problems.extend(lifecycle_problems(r).into_iter().map(|p| format!("runbook `{name}`: runbook.json: {p}")));
    }
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
        return Err(usage(format!("nothing was imported from {shown}:\n{}", list.join("\n"))));
    }
    let mut versions = 0;
    for r in &runbooks {
        versions += restore(store, r, &files).await.with_context(|| format!("importing `{}`", r.doc.entry.name))?;
    }
    let executions = files.keys().filter(|k| k.starts_with("executions/")).count();
    let kept = if executions > 0 {
        format!("; its {executions} executions are kept in the archive for the record, not imported")
    } else {
        String::new()
    };
    say!("imported {} runbooks ({versions} versions) from {shown}{kept}", runbooks.len());
    Ok(EXIT_OK)
}

/// What is wrong with a runbook's recorded lifecycle: a status opsbook does not have, a
/// transition it does not make, or one that does not start where the one before ended.
fn lifecycle_problems(r: &Archived) -> Vec<String> {
    let known = |s: &str| opsbook_core::LifecycleStatus::parse(s).is_some();
    let mut problems = Vec::new();
    let mut now: Option<&str> = None;
    for (i, e) in r.doc.lifecycle.iter().enumerate() {
        let at = format!("lifecycle[{i}]");
        for s in std::iter::once(&e.to_status).chain(&e.from_status) {
            if !known(s) {
                problems.push(format!("{at}: unknown status `{s}` (draft, active, deprecated or archived)"));
            }
        }
        match (e.from_status.as_deref(), now) {
            (None, None) => {}
            (None, Some(_)) => problems.push(format!("{at}: a first status after the runbook had one")),
            (Some(from), last) if last != Some(from) => {
                problems.push(format!("{at}: goes from {from}, but the runbook was {}", last.unwrap_or("nothing yet")))
            }
            (Some(from), _) if !opsbook_server::service::lifecycle_allowed(from, &e.to_status) => {
                problems.push(format!("{at}: a runbook cannot go from {from} to {}", e.to_status))
            }
            _ => {}
        }
        now = Some(&e.to_status);
    }
    problems
}

/// Publishes a runbook's versions oldest first (with their bundles), then replays its
/// lifecycle transitions and reviews as recorded. Returns the versions written.
async fn restore(store: &AnyStore, r: &Archived, files: &BTreeMap<String, Vec<u8>>) -> Result<usize> {
    let name = &r.doc.entry.name;
    for v in &r.versions {
        let text = String::from_utf8_lossy(&files[&format!("runbooks/{name}/{}.yaml", v.version)]).into_owned();
        let rb = opsbook_core::parse(&text).map_err(|d| anyhow!("v{}: {}", v.version, d[0]))?;
        if let Some(sha) = &v.bundle_sha256 {
            store.save_bundle(sha, &files[&format!("bundles/{sha}.bundle")]).await?;
        }
        let first_status = r.doc.lifecycle.first().map(|e| e.to_status.clone()).unwrap_or_else(|| "active".into());
        let entry = RegistryEntry {
            name: rb.name.clone(),
            status: first_status,
            latest_version: rb.version.to_string(),
            latest_sha256: rb.sha256.clone(),
            title: rb.title.clone(),
            description: rb.description.clone(),
            runbook_type: rb.runbook_type.as_str().to_string(),
            owner: rb.owner.clone(),
            tags: rb.tags.clone(),
            created_at: r.doc.entry.created_at,
            updated_at: v.published_at,
        };
        let steps_text = rb.steps.iter().map(|s| format!("{} {}", s.id, s.name)).collect::<Vec<_>>().join(" ");
        // Each version brings its own schedules, as publishing it did: the newest's stay.
        let publish = Publish {
            entry,
            content: text,
            steps_text,
            actor: v.published_by.clone(),
            bundle_sha256: v.bundle_sha256.clone(),
            schedules: opsbook_server::scheduler::runbook_schedules(
                &rb,
                &v.published_by,
                None,
                opsbook_store::now_ms(),
            ),
        };
        store.publish(&publish).await?;
    }
    for e in r.doc.lifecycle.iter().filter(|e| e.from_status.is_some()) {
        let event = opsbook_store::LifecycleEvent {
            name: name.clone(),
            from_status: e.from_status.clone(),
            to_status: e.to_status.clone(),
            actor: e.actor.clone(),
            reason: e.reason.clone(),
            at: e.at,
        };
        store.set_lifecycle(&event).await?;
    }
    for rv in &r.reviews {
        let at = rv.at.as_deref().and_then(|t| t.parse::<jiff::Timestamp>().ok()).map_or(0, |t| t.as_millisecond());
        let review = opsbook_store::Review {
            name: name.clone(),
            version: rv.version.clone(),
            reviewer: rv.reviewer.clone(),
            note: rv.note.clone(),
            at,
        };
        store.add_review(&review).await?;
    }
    Ok(r.versions.len())
}
