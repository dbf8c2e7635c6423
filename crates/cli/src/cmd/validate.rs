//! `opsbook validate PATH...`: check runbooks, printing every problem with its place.

use std::path::PathBuf;

use anyhow::Result;

use super::{EXIT_FAILED, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Runbook files, or directories searched for *.yaml and *.yml
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

pub fn exec(args: Args) -> Result<u8> {
    let files = super::runbook_files(&args.paths)?;
    let mut bad = 0;
    for f in &files {
        let shown = f.display().to_string();
        let text = match std::fs::read(f) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                println!("{shown}: cannot read: {e}");
                bad += 1;
                continue;
            }
        };
        match opsbook_core::parse(&text) {
            Ok(rb) => println!("{shown}: ok ({} v{}, {} steps)", rb.name, rb.version, rb.steps.len()),
            Err(diags) => {
                bad += 1;
                for d in diags {
                    println!("{}\n", d.render(&shown, &text));
                }
            }
        }
    }
    if files.is_empty() {
        eprintln!("no runbook files found");
        return Ok(EXIT_FAILED);
    }
    if bad > 0 {
        eprintln!("{bad} of {} file{} invalid", files.len(), if files.len() == 1 { "" } else { "s" });
        return Ok(EXIT_FAILED);
    }
    Ok(EXIT_OK)
}
