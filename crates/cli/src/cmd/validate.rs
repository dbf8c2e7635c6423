//! `opsbook validate PATH...`: check runbooks (and gates files), printing every problem
//! with its place.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{EXIT_FAILED, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Runbook files, or directories searched for *.yaml and *.yml
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Gates file that `gate: { use: NAME }` steps are checked against (default:
    /// opsbook.yaml beside each runbook, else in the current directory)
    #[arg(long, value_name = "FILE")]
    pub gates: Option<PathBuf>,
}

/// Whether a YAML text is a gates file (`gates:` at the top, no `apiVersion`).
fn is_gates_file(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "apiVersion")]
        api_version: Option<serde::de::IgnoredAny>,
        gates: Option<serde::de::IgnoredAny>,
    }
    serde_saphyr::from_str::<Probe>(text).is_ok_and(|p| p.api_version.is_none() && p.gates.is_some())
}

/// Gates files read so far, by path: runbooks side by side share one.
type GatesFiles = std::collections::HashMap<PathBuf, Result<opsbook_core::gate::GatesFile, String>>;

/// Checks a runbook's `use:` of named gates; the problems, rendered.
fn check_uses(
    rb: &opsbook_core::Runbook,
    file: &Path,
    explicit: Option<&Path>,
    read: &mut GatesFiles,
    shown: &str,
    text: &str,
) -> Vec<String> {
    let path = super::gates_file_for(file, explicit);
    let uses_named =
        rb.steps.iter().any(|s| matches!(&s.kind, opsbook_core::StepKind::Gate(g) if g.use_gate.is_some()));
    if !uses_named {
        return Vec::new();
    }
    let none = Default::default();
    let gates = match &path {
        Some(p) => match read.entry(p.clone()).or_insert_with(|| opsbook_gate::read_gates_file(p)) {
            Ok(g) => &g.gates,
            Err(e) => return vec![format!("{shown}: its gates file is invalid: {e}")],
        },
        None => &none,
    };
    super::unknown_gates(rb, gates, path.as_deref()).iter().map(|d| d.render(shown, text)).collect()
}

pub fn exec(args: Args) -> Result<u8> {
    let mut gates_files = GatesFiles::new();
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
        if is_gates_file(&text) {
            match opsbook_core::gate::GatesFile::parse(&text) {
                Ok(g) => println!(
                    "{shown}: ok (gates file, {} gate{})",
                    g.gates.len(),
                    if g.gates.len() == 1 { "" } else { "s" }
                ),
                Err(e) => {
                    bad += 1;
                    println!("{}\n", e.in_file(&shown));
                }
            }
            continue;
        }
        match opsbook_core::parse(&text) {
            Ok(rb) => {
                let problems = check_uses(&rb, f, args.gates.as_deref(), &mut gates_files, &shown, &text);
                if problems.is_empty() {
                    println!("{shown}: ok ({} v{}, {} steps)", rb.name, rb.version, rb.steps.len());
                } else {
                    bad += 1;
                    problems.iter().for_each(|p| println!("{p}\n"));
                }
            }
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
