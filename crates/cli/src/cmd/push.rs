//! `opsbook push PATH...`: publish runbooks to the server (GitOps). Every file is
//! checked first — locally, then against the registry — and nothing is published
//! unless all of them can be.

use std::path::PathBuf;

use anyhow::Result;
use console::style;

use super::{EXIT_FAILED, EXIT_INVALID, EXIT_OK, usage};
use crate::client::Client;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Runbook files or directories (searched for *.yaml and *.yml)
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

pub async fn exec(server: Option<String>, args: Args) -> Result<u8> {
    let server = server.ok_or_else(|| usage("push needs --server URL (or OPSBOOK_SERVER)"))?;
    let client = Client::new(&server)?;
    let files = super::runbook_files(&args.paths)?;
    if files.is_empty() {
        return Err(usage("no runbook files found"));
    }
    let mut docs = Vec::new();
    let mut invalid = 0;
    for f in &files {
        let shown = f.display().to_string();
        let text = std::fs::read_to_string(f).map_err(|e| usage(format!("cannot read {shown}: {e}")))?;
        match opsbook_core::parse(&text) {
            Ok(rb) => docs.push((shown, text, rb.name, rb.version.to_string())),
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
    let mut refused = 0;
    for (path, text, name, version) in &docs {
        if let Err(e) =
            client.post_text::<opsbook_api::PublishResult>("/api/v1/runbooks?dry_run=true", text.clone()).await
        {
            refused += 1;
            eprintln!("{} {path} ({name} {version}): {e:#}", style("refused:").red().bold().for_stderr());
        }
    }
    if refused > 0 {
        eprintln!("{refused} file(s) refused by the server: nothing was pushed");
        return Ok(EXIT_FAILED);
    }
    for (path, text, name, version) in &docs {
        let done: opsbook_api::PublishResult = client.post_text("/api/v1/runbooks", text.clone()).await?;
        println!("{:<9} {name} {version}  ({path})", done.result);
    }
    Ok(EXIT_OK)
}
