//! `opsbook list DIR`: the runbooks in a directory, with their review dates.

use std::path::PathBuf;

use anyhow::Result;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use console::style;

use super::{EXIT_FAILED, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory searched recursively for *.yaml and *.yml (default: the current one;
    /// with a server, the registry is listed instead)
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub filters: super::registry::Filters,
    /// How to print: text for people, or json (one document on stdout) for programs
    #[arg(long, value_enum, default_value_t)]
    pub output: crate::Output,
}

#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// Words to look for
    pub query: String,
    #[command(flatten)]
    pub filters: super::registry::Filters,
    /// How to print: text for people, or json (one document on stdout) for programs
    #[arg(long, value_enum, default_value_t)]
    pub output: crate::Output,
}

pub fn exec(args: Args) -> Result<u8> {
    let f = &args.filters;
    if f.search.is_some() || f.tag.is_some() || f.status.is_some() || f.runbook_type.is_some() || f.owner.is_some() {
        return Err(super::usage(
            "--search, --tag, --status, --type and --owner filter the server's registry: `opsbook login URL` \
             first, or pass --server URL",
        ));
    }
    let files = match &args.dir {
        Some(dir) => super::runbook_files(std::slice::from_ref(dir))?,
        None => super::runbook_files_here()?,
    };
    let today = jiff::Zoned::now().date();
    let mut rows = Vec::new();
    let mut invalid = 0;
    for f in &files {
        // A runbook's tests (NAME.test.yaml), gates files and inventories are not runbooks to list.
        if super::test::runbook_of(f).is_some() {
            continue;
        }
        let text = match opsbook_core::Diagnostic::utf8(opsbook_core::read_document(f)?) {
            Ok(text) => text,
            Err(d) => {
                invalid += 1;
                eprintln!("{} {}", style("invalid:").red().bold().for_stderr(), d.headline(&f.display().to_string()));
                continue;
            }
        };
        if super::validate::is_companion_file(&text) {
            continue;
        }
        match opsbook_core::parse(&text) {
            Ok(rb) => {
                let review = match rb.review.as_ref().map(|r| r.due()) {
                    Some(Some(due)) if due < today => format!("overdue since {due}"),
                    Some(Some(due)) => format!("due {due}"),
                    Some(None) => "never reviewed".to_string(),
                    None => String::new(),
                };
                rows.push((f.display().to_string(), rb, review));
            }
            Err(diags) => {
                invalid += 1;
                eprintln!(
                    "{} {}",
                    style("invalid:").red().bold().for_stderr(),
                    diags[0].headline(&f.display().to_string())
                );
            }
        }
    }
    if args.output == crate::Output::Json {
        let list: Vec<_> = rows
            .iter()
            .map(|(path, rb, review)| {
                serde_json::json!({
                    "path": path, "name": rb.name, "title": rb.title, "type": rb.runbook_type.as_str(),
                    "version": rb.version.to_string(), "status": rb.status.as_str(), "owner": rb.owner,
                    "tags": rb.tags, "review": review,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        let mut t = Table::new();
        t.load_style(UTF8_FULL_CONDENSED);
        t.set_header(vec!["Name", "Type", "Version", "Status", "Owner", "Tags", "Review", "Path"]);
        for (path, rb, review) in &rows {
            let review = if review.starts_with("overdue") { style(review).red().to_string() } else { review.clone() };
            t.add_row(vec![
                rb.name.clone(),
                rb.runbook_type.as_str().to_string(),
                rb.version.to_string(),
                rb.status.as_str().to_string(),
                rb.owner.clone().unwrap_or_default(),
                rb.tags.join(", "),
                review,
                path.clone(),
            ]);
        }
        println!("{t}");
    }
    Ok(if invalid > 0 { EXIT_FAILED } else { EXIT_OK })
}
