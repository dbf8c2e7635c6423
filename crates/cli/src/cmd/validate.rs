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

/// The relative paths (`./x`, `../x`) a script names, as written.
fn relative_paths(script: &str) -> Vec<&str> {
    let bytes = script.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = script[i..].starts_with("./") || script[i..].starts_with("../");
        let boundary =
            i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'\n' | b'"' | b'\'' | b'=' | b'(' | b';' | b'|' | b'&');
        if starts && boundary {
            let end = script[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || "._-/".contains(c)))
                .map_or(script.len(), |n| i + n);
            let token = script[i..end].trim_end_matches('.');
            if token.len() > 2 && !token.ends_with('/') && !script[end..].starts_with("{{") {
                found.push(token);
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    found
}

/// Warnings for files a runbook's scripts name that would not travel with it to a
/// server (`opsbook push` sends what is beside it: its bundle).
fn bundle_warnings(rb: &opsbook_core::Runbook, file: &Path, shown: &str) -> Vec<String> {
    use opsbook_engine::bundle::{IGNORE_FILE, Ignore};
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Ok(root) = dir.canonicalize() else { return Vec::new() };
    let ignore = Ignore::read(&root.join(IGNORE_FILE)).unwrap_or_default();
    let mut scripts: Vec<(String, u32, u32, &opsbook_core::step::run::Script)> = Vec::new();
    for s in &rb.steps {
        if let opsbook_core::StepKind::Run(script) = &s.kind {
            scripts.push((format!("step `{}`", s.id), s.line, s.column, script));
        }
        if let Some(r) = &s.rollback {
            scripts.push((format!("the rollback of step `{}`", s.id), s.line, s.column, r));
        }
    }
    for p in &rb.prerequisites {
        if let Some(check) = &p.check {
            scripts.push((format!("prerequisite `{}`", p.description), 0, 0, check));
        }
    }
    let mut warnings = Vec::new();
    for (what, line, column, script) in scripts {
        let base = root.join(script.workdir.as_deref().unwrap_or(""));
        for path in relative_paths(&script.template) {
            let at = if line > 0 { format!("{shown}:{line}:{column}") } else { shown.to_string() };
            let target = base.join(path);
            let Some(rel) = normalize(&target).and_then(|t| t.strip_prefix(&root).ok().map(Path::to_path_buf)) else {
                warnings.push(format!(
                    "{at}: warning: {what} names `{path}`, outside the runbook's directory: it is not in the files \
                     `opsbook push` sends with the runbook"
                ));
                continue;
            };
            if !target.exists() {
                warnings.push(format!(
                    "{at}: warning: {what} names `{path}`, which is not beside the runbook: a server would not have it"
                ));
                continue;
            }
            let mut prefix = String::new();
            let left_out = rel.components().any(|c| {
                let name = c.as_os_str().to_string_lossy();
                prefix = if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
                let is_dir = root.join(&prefix).is_dir();
                name.starts_with('.') || ignore.excludes(&prefix, &name, is_dir)
            });
            if left_out {
                warnings.push(format!(
                    "{at}: warning: {what} names `{path}`, which is hidden or listed in {IGNORE_FILE}, so it is \
                     not sent with the runbook"
                ));
            }
        }
    }
    warnings
}

/// A path with `.` and `..` resolved lexically (None when `..` climbs above the root).
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
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
                for w in bundle_warnings(&rb, f, &shown) {
                    println!("{w}");
                }
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

#[cfg(test)]
mod tests {
    #[test]
    fn relative_paths_are_found_as_written() {
        let script = "./scripts/deploy.sh {{ x }} && cd ../up; cat \"./a b\" x=./conf/app.env ./{{ y }} / ./";
        assert_eq!(super::relative_paths(script), vec!["./scripts/deploy.sh", "../up", "./a", "./conf/app.env"]);
        assert!(super::relative_paths("echo a./b http://x/./y").is_empty());
    }
}
