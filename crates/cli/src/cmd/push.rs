//! `opsbook push PATH...`: publish runbooks to the server (GitOps), each with the files
//! beside it (its bundle: scripts, templates, configuration), so that a worker runs
//! `./scripts/deploy.sh` as a local run does. Every file is checked first — locally,
//! then against the registry — and nothing is published unless all of them can be.

use std::path::PathBuf;

use anyhow::Result;
use console::style;
use opsbook_api::{BundleStored, PublishResult};
use opsbook_core::bundle::Bundle;

use super::{EXIT_FAILED, EXIT_INVALID, EXIT_OK, usage};
use crate::client::Client;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Runbook files or directories (searched for *.yaml and *.yml)
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The most the files beside a runbook may weigh, in bytes (the server has its own limit)
    #[arg(long, default_value_t = opsbook_core::bundle::DEFAULT_MAX_BYTES)]
    pub max_bundle_bytes: usize,
    /// Check the files and list what each runbook would carry; send nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// What a bundle is packed from: a directory, with the runbooks called from it.
#[derive(PartialEq)]
struct Packed {
    dir: PathBuf,
    called: Vec<PathBuf>,
}

/// A runbook to publish: where it is, its text, what it reads as, and its bundle.
struct Doc {
    path: String,
    text: String,
    name: String,
    version: String,
    runbook: opsbook_core::Runbook,
    bundle: String,
}

pub async fn exec(server: Option<String>, profile: Option<&str>, args: Args) -> Result<u8> {
    let files = super::runbook_files(&args.paths)?;
    if files.is_empty() {
        return Err(usage("no runbook files found"));
    }
    let mut docs = Vec::new();
    // Packed once per directory and set of runbooks called from it.
    let mut bundles: Vec<(Packed, String, Bundle)> = Vec::new();
    let mut invalid = 0;
    for f in &files {
        let shown = f.display().to_string();
        let bytes = opsbook_core::read_document(f).map_err(|e| usage(format!("cannot read {shown}: {e}")))?;
        let text = opsbook_core::Diagnostic::utf8(bytes).map_err(|d| usage(d.headline(&shown)))?;
        // A runbook's tests, gates file and inventory are not runbooks: they travel in the
        // bundle of the runbook beside them.
        if super::test::runbook_of(f).is_some() || super::validate::is_companion_file(&text) {
            continue;
        }
        let read = opsbook_core::parse(&text).and_then(|rb| {
            let problems = opsbook_core::step::targets::check_inventories(f, &rb);
            if problems.is_empty() { Ok(rb) } else { Err(problems) }
        });
        match read {
            Ok(rb) => {
                // The files beside it travel with it, and the runbooks it calls.
                let dir = f.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
                let called = opsbook_core::step::call::called_files(f, &rb);
                let root = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
                if let Some(outside) = called.iter().find(|c| !c.starts_with(&root)) {
                    invalid += 1;
                    eprintln!(
                        "{} {shown}: calls {}, outside its directory: a server would not have it (move it beside \
                         the runbook, or publish it and call it by name)",
                        style("error:").red().bold().for_stderr(),
                        outside.display()
                    );
                    continue;
                }
                let key = Packed { dir: dir.to_path_buf(), called };
                let at = match bundles.iter().position(|(k, _, _)| *k == key) {
                    Some(at) => at,
                    None => match opsbook_engine::bundle::pack_dir(dir, args.max_bundle_bytes, &key.called) {
                        Ok(b) => {
                            bundles.push((key, b.sha256(), b));
                            bundles.len() - 1
                        }
                        Err(e) => {
                            invalid += 1;
                            eprintln!("{} {shown}: its files: {e}", style("error:").red().bold().for_stderr());
                            continue;
                        }
                    },
                };
                let (_, sha, bundle) = &bundles[at];
                let sha = sha.clone();
                let holding = secret_values_in(bundle, &rb);
                if !holding.is_empty() {
                    invalid += 1;
                    eprintln!(
                        "{} {shown}: its files: {}: these hold a value for a secret parameter, and a runbook's files \
                         can be read by everyone who may read runbooks; list them in {}/{} (and pass secrets with \
                         --secret or a secret store)",
                        style("error:").red().bold().for_stderr(),
                        holding.join(", "),
                        dir.display(),
                        opsbook_engine::bundle::IGNORE_FILE,
                    );
                    continue;
                }
                docs.push(Doc {
                    path: shown,
                    text,
                    name: rb.name.clone(),
                    version: rb.version.to_string(),
                    runbook: rb,
                    bundle: sha,
                });
            }
            Err(diags) => {
                invalid += 1;
                for d in diags {
                    eprintln!("{}\n", d.render(&shown, &text));
                }
            }
        }
    }
    if invalid > 0 {
        eprintln!("{invalid} invalid file(s): nothing was pushed");
        return Ok(EXIT_INVALID);
    }
    if args.dry_run {
        for d in &docs {
            let files = bundles.iter().find(|(_, sha, _)| *sha == d.bundle).map(|(_, _, b)| b);
            let list: Vec<String> = files
                .into_iter()
                .flat_map(|b| b.files())
                .map(|(p, f)| {
                    format!("    {p} ({} bytes{})", f.data.len(), if f.executable { ", executable" } else { "" })
                })
                .collect();
            let colon = if list.is_empty() { "" } else { ":" };
            println!("{} {} ({}) would go with {} file(s){colon}", d.name, d.version, d.path, list.len());
            list.iter().for_each(|l| println!("{l}"));
        }
        return Ok(EXIT_OK);
    }
    let server = server
        .ok_or_else(|| usage("push needs a server: `opsbook login URL` once, or --server URL (or OPSBOOK_SERVER)"))?;
    let client = Client::new(&server, profile)?;
    // Bundles are stored by their digest: uploading one is not publishing anything.
    for (key, sha, bundle) in &bundles {
        let stored: BundleStored = client
            .put_bytes(&format!("/api/v1/bundles/{sha}"), bundle.encode())
            .await
            .map_err(|e| e.context(format!("cannot upload the files of {}", key.dir.display())))?;
        debug_assert_eq!(&stored.sha256, sha);
    }
    let mut refused = 0;
    for d in &docs {
        let path = format!("/api/v1/runbooks?dry_run=true&bundle={}", d.bundle);
        if let Err(e) = client.post_text::<PublishResult>(&path, d.text.clone()).await {
            refused += 1;
            eprintln!("{} {} ({} {}): {e:#}", style("refused:").red().bold().for_stderr(), d.path, d.name, d.version);
        }
    }
    // The server checks each runbook's calls by name against what is published, which
    // cannot see the others pushed with it: their calls to one another are checked here.
    if let Err((d, e)) = check_calls_together(&client, &docs).await? {
        refused += 1;
        eprintln!("{} {} ({} {}): {e}", style("refused:").red().bold().for_stderr(), d.path, d.name, d.version);
    }
    if refused > 0 {
        eprintln!("{refused} file(s) refused by the server: nothing was pushed");
        return Ok(EXIT_FAILED);
    }
    for d in &docs {
        let path = format!("/api/v1/runbooks?bundle={}", d.bundle);
        let done: PublishResult = client.post_text(&path, d.text.clone()).await?;
        let files = bundles.iter().find(|(_, sha, _)| *sha == d.bundle).map_or(0, |(_, _, b)| b.len());
        println!("{:<9} {} {}  ({}, with {files} file(s) beside it)", done.result, d.name, d.version, d.path);
        for w in &done.warnings {
            eprintln!("warning: {} {}: {w}", d.name, d.version);
        }
        // A draft may be published while its tests fail (an active runbook is refused).
        for t in &done.tests.failed {
            eprintln!("warning: {} {}: test `{}` fails: {}", d.name, d.version, t.test, t.failures.join("; "));
        }
    }
    Ok(EXIT_OK)
}

/// Follows the `runbook: { name }` calls of the runbooks pushed together through one
/// another and what the server has published (the newest version a call allows, as the
/// server follows them): the first runbook whose calls come back to it, or go deeper than
/// runbooks may call runbooks, with why.
async fn check_calls_together<'a>(client: &Client, docs: &'a [Doc]) -> Result<Result<(), (&'a Doc, String)>> {
    use opsbook_core::step::call::{Callee, MAX_DEPTH};
    let named = |rb: &opsbook_core::Runbook| -> Vec<(String, Option<semver::VersionReq>)> {
        let calls = rb.all_steps().filter_map(|s| match &s.kind {
            opsbook_core::StepKind::Runbook(c) => Some(&c.callee),
            _ => None,
        });
        calls
            .filter_map(|c| match c {
                Callee::Name { name, version } => Some((name.clone(), version.clone())),
                Callee::File(_) => None,
            })
            .collect()
    };
    // Nothing to add to the server's checks unless one calls another pushed with it.
    let pushed = |n: &str| docs.iter().any(|d| d.name == n);
    if !docs.iter().any(|d| named(&d.runbook).iter().any(|(n, _)| pushed(n))) {
        return Ok(Ok(()));
    }
    let mut published: std::collections::HashMap<(String, String), Option<opsbook_core::Runbook>> = Default::default();
    for root in docs {
        let mut todo = vec![(vec![root.name.clone()], root.runbook.clone())];
        while let Some((chain, book)) = todo.pop() {
            for (name, req) in named(&book) {
                let path = format!("{} → {name}", chain.join(" → "));
                if chain.contains(&name) {
                    return Ok(Err((root, format!("runbooks call each other in a cycle: {path}"))));
                }
                if chain.len() > MAX_DEPTH {
                    return Ok(Err((root, format!("runbooks may call runbooks at most {MAX_DEPTH} deep: {path}"))));
                }
                let allows = |v: &semver::Version| req.as_ref().is_none_or(|r| r.matches(v));
                let next = match docs.iter().find(|d| d.name == name && allows(&d.runbook.version)) {
                    Some(d) => Some(d.runbook.clone()),
                    None => {
                        let key = (name.clone(), req.as_ref().map(ToString::to_string).unwrap_or_default());
                        if !published.contains_key(&key) {
                            let found = newest_published(client, &name, &allows).await?;
                            published.insert(key.clone(), found);
                        }
                        published[&key].clone()
                    }
                };
                if let Some(next) = next {
                    let mut chain = chain.clone();
                    chain.push(name);
                    todo.push((chain, next));
                }
            }
        }
    }
    Ok(Ok(()))
}

/// The newest published version of `name` that `allows`, read as a runbook (`None` if
/// there is none, or it no longer reads: the server does not follow those either).
async fn newest_published(
    client: &Client,
    name: &str,
    allows: &dyn Fn(&semver::Version) -> bool,
) -> Result<Option<opsbook_core::Runbook>> {
    let path = format!("/api/v1/runbooks/{name}/versions");
    let Some(versions) = client.get_opt::<opsbook_api::Items<opsbook_api::VersionEntry>>(&path).await? else {
        return Ok(None);
    };
    let newest =
        versions.items.iter().filter_map(|v| semver::Version::parse(&v.version).ok()).filter(|v| allows(v)).max();
    let Some(newest) = newest else { return Ok(None) };
    let doc: opsbook_api::VersionDoc = client.get(&format!("{path}/{newest}")).await?;
    Ok(opsbook_core::parse(&doc.content).ok())
}

/// The YAML and JSON files of `bundle` that give a value to one of `rb`'s secret
/// parameters (a parameters file: `api_token: …`), with the parameter's name.
fn secret_values_in(bundle: &opsbook_core::bundle::Bundle, rb: &opsbook_core::Runbook) -> Vec<String> {
    let secrets: Vec<&str> = rb.params.iter().filter(|p| p.is_secret()).map(|p| p.name.as_str()).collect();
    if secrets.is_empty() {
        return Vec::new();
    }
    let mut found = Vec::new();
    for (path, file) in bundle.files() {
        if ![".yaml", ".yml", ".json"].iter().any(|e| path.ends_with(e)) {
            continue;
        }
        let Ok(text) = std::str::from_utf8(&file.data) else { continue };
        let Ok(map) = serde_saphyr::from_str::<std::collections::BTreeMap<String, serde_json::Value>>(text) else {
            continue;
        };
        let given = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => !s.trim().is_empty(),
            serde_json::Value::Null => false,
            _ => true,
        };
        if let Some(name) = secrets.iter().find(|n| map.get(**n).is_some_and(given)) {
            found.push(format!("{path} (`{name}`)"));
        }
    }
    found
}
