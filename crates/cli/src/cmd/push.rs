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

/// A runbook to publish: where it is, its text, name and version, and its bundle.
struct Doc {
    path: String,
    text: String,
    name: String,
    version: String,
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
        let bytes = std::fs::read(f).map_err(|e| usage(format!("cannot read {shown}: {e}")))?;
        let text = opsbook_core::Diagnostic::utf8(bytes).map_err(|d| usage(d.headline(&shown)))?;
        // A runbook's tests, gates file and inventory are not runbooks: they travel in the
        // bundle of the runbook beside them.
        if super::test::runbook_of(f).is_some() || super::validate::is_companion_file(&text) {
            continue;
        }
        match opsbook_core::parse(&text) {
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
                let sha = match bundles.iter().find(|(k, _, _)| *k == key) {
                    Some((_, sha, _)) => sha.clone(),
                    None => match opsbook_engine::bundle::pack_dir(dir, args.max_bundle_bytes, &key.called) {
                        Ok(b) => {
                            let sha = b.sha256();
                            bundles.push((key, sha.clone(), b));
                            sha
                        }
                        Err(e) => {
                            invalid += 1;
                            eprintln!("{} {shown}: its files: {e}", style("error:").red().bold().for_stderr());
                            continue;
                        }
                    },
                };
                docs.push(Doc { path: shown, text, name: rb.name, version: rb.version.to_string(), bundle: sha });
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
            println!("{} {} ({}) would go with {} file(s):", d.name, d.version, d.path, list.len());
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
    if refused > 0 {
        eprintln!("{refused} file(s) refused by the server: nothing was pushed");
        return Ok(EXIT_FAILED);
    }
    for d in &docs {
        let path = format!("/api/v1/runbooks?bundle={}", d.bundle);
        let done: PublishResult = client.post_text(&path, d.text.clone()).await?;
        let files = bundles.iter().find(|(_, sha, _)| *sha == d.bundle).map_or(0, |(_, _, b)| b.len());
        println!("{:<9} {} {}  ({}, with {files} file(s) beside it)", done.result, d.name, d.version, d.path);
        // A draft may be published while its tests fail (an active runbook is refused).
        for t in &done.tests.failed {
            eprintln!("warning: {} {}: test `{}` fails: {}", d.name, d.version, t.test, t.failures.join("; "));
        }
    }
    Ok(EXIT_OK)
}
