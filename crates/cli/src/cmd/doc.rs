//! `opsbook doc FILE [--format md|html] [-o OUT]`: the runbook written out for people
//! reading it during an incident without the tool.

use std::path::PathBuf;

use anyhow::Result;
use opsbook_core::doc::{Format as DocFormat, render};

use super::EXIT_OK;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The runbook file
    pub file: PathBuf,
    /// Markdown, or a standalone HTML page
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Write it to this file instead of standard output
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Md,
    Html,
}

pub fn exec(args: Args) -> Result<u8> {
    let rb = super::load_runbook(&args.file)?;
    let format = match args.format {
        Format::Md => DocFormat::Markdown,
        Format::Html => DocFormat::Html,
    };
    let text = render(&rb, format);
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| super::usage(format!("cannot write {}: {e}", path.display())))?;
            say_err!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(EXIT_OK)
}
