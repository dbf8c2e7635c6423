//! `opsbook validate PATH...`: check runbooks (and gates files), printing every problem
//! with its place.

use std::path::{Path, PathBuf};

use anyhow::Result;
use opsbook_core::diagnostic::Diagnostic;

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
    /// How to print: text for people, or json (one document on stdout) for programs
    #[arg(long, value_enum, default_value_t)]
    pub output: crate::Output,
}

/// The top-level keys that tell a runbook's companion files from runbooks.
#[derive(serde::Deserialize)]
struct Probe {
    #[serde(rename = "apiVersion")]
    api_version: Option<serde::de::IgnoredAny>,
    gates: Option<serde::de::IgnoredAny>,
    hosts: Option<serde::de::IgnoredAny>,
    groups: Option<serde::de::IgnoredAny>,
}

/// Whether a YAML text is a gates file (`gates:` at the top, no `apiVersion`).
pub(crate) fn is_gates_file(text: &str) -> bool {
    serde_saphyr::from_str::<Probe>(text).is_ok_and(|p| p.api_version.is_none() && p.gates.is_some())
}

/// Whether a YAML text is an inventory of targets (`hosts:` or `groups:` at the top, no
/// `apiVersion`).
pub(crate) fn is_inventory_file(text: &str) -> bool {
    serde_saphyr::from_str::<Probe>(text)
        .is_ok_and(|p| p.api_version.is_none() && p.gates.is_none() && (p.hosts.is_some() || p.groups.is_some()))
}

/// Whether a YAML text is one of a runbook's companions (gates file, inventory), not a runbook.
pub(crate) fn is_companion_file(text: &str) -> bool {
    is_gates_file(text) || is_inventory_file(text)
}

/// Gates files read so far, by path: runbooks side by side share one.
type GatesFiles = std::collections::HashMap<PathBuf, Result<opsbook_core::gate::GatesFile, String>>;

/// Freezes of a gates file that can no longer freeze anything: a window whose pattern
/// matches no time from `now` on (a year gone by), dates all past. Warnings, not errors:
/// a file that was right when written must not start failing as time passes.
fn stale_freezes(g: &opsbook_core::gate::GatesFile, now: jiff::Timestamp) -> Vec<Problem> {
    use opsbook_core::gate::{Source, date_range, timezone};
    let mut stale = Vec::new();
    for (name, gate) in &g.gates {
        for source in &gate.sources {
            let Source::Freeze(f) = source else { continue };
            for w in &f.windows {
                let tz = timezone(w.timezone.as_deref()).unwrap_or(jiff::tz::TimeZone::UTC);
                if opsbook_core::schedule::next_after(&w.start, &tz, now.as_millisecond()).is_err() {
                    stale.push(format!("gate `{name}`: freeze window `{}` never starts again", w.start));
                }
            }
            let today = now.to_zoned(timezone(f.timezone.as_deref()).unwrap_or(jiff::tz::TimeZone::UTC)).date();
            for d in &f.dates {
                if date_range(d).is_ok_and(|(_, end)| end < today) {
                    stale.push(format!("gate `{name}`: freeze dates `{d}` are past"));
                }
            }
        }
    }
    stale.into_iter().map(|message| Problem { line: None, column: None, message }).collect()
}

/// Checks a runbook's `use:` of named gates, from its text: also when the runbook has
/// other problems.
fn check_uses(text: &str, file: &Path, explicit: Option<&Path>, read: &mut GatesFiles) -> Vec<Diagnostic> {
    let path = super::gates_file_for(file, explicit);
    // No named gate at all (to an empty list, every name is unknown).
    if opsbook_core::gate::unknown_uses(text, &[]).is_empty() {
        return Vec::new();
    }
    let none = Default::default();
    let gates = match &path {
        Some(p) => match read.entry(p.clone()).or_insert_with(|| opsbook_gate::read_gates_file(p)) {
            Ok(g) => &g.gates,
            Err(e) => return vec![Diagnostic::new(None, format!("its gates file is invalid: {e}"))],
        },
        None => &none,
    };
    super::unknown_gates(text, gates, path.as_deref())
}

/// The relative paths (`./x`, `../x`) a script names, as written.
fn relative_paths(script: &str) -> Vec<&str> {
    let bytes = script.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = bytes[i..].starts_with(b"./") || bytes[i..].starts_with(b"../");
        let boundary =
            i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'\n' | b'"' | b'\'' | b'=' | b'(' | b';' | b'|' | b'&');
        if starts && boundary {
            let end = script[i..]
                .find(|c: char| !(c.is_alphanumeric() || "._-/".contains(c)))
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

/// `when: params.NAME` (or `not params.NAME`) of a text parameter: true for any value
/// but the empty one, `"false"` and `"no"` included, which is seldom what was meant.
fn text_conditions(rb: &opsbook_core::Runbook) -> Vec<Diagnostic> {
    use opsbook_core::params::ParamType;
    let mut warnings = Vec::new();
    for s in rb.all_steps() {
        let Some(when) = s.when.as_deref().map(str::trim) else { continue };
        let name = when.strip_prefix("not ").unwrap_or(when).trim().strip_prefix("params.").unwrap_or_default();
        let Some(p) = rb.param(name) else { continue };
        if matches!(p.spec.ty, ParamType::String | ParamType::Enum) {
            let at = opsbook_core::Pos { line: s.line, column: s.column, len: 0 };
            let message = format!(
                "step `{}`: when: `{when}` is true for any {} value but an empty one (\"false\" and \"no\" \
                 included): compare it (`params.{name} == 'yes'`) or declare the parameter `type: boolean`",
                s.id,
                p.spec.ty.as_str()
            );
            warnings.push(Diagnostic::new(Some(at), message));
        }
    }
    warnings
}

/// Warnings for files a runbook's scripts name that would not travel with it to a
/// server (`opsbook push` sends what is beside it: its bundle).
fn bundle_warnings(rb: &opsbook_core::Runbook, file: &Path) -> Vec<Diagnostic> {
    use opsbook_engine::bundle::{IGNORE_FILE, Ignore};
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Ok(root) = dir.canonicalize() else { return Vec::new() };
    let ignore = Ignore::read(&root.join(IGNORE_FILE)).unwrap_or_default();
    let mut scripts: Vec<(String, u32, u32, &opsbook_core::step::run::Script)> = Vec::new();
    for s in &rb.steps {
        if let opsbook_core::StepKind::Run(script) = &s.kind {
            scripts.push((format!("step `{}`", s.id), s.line, s.column, script));
        }
        if let Some(r) = s.rollback.as_ref().and_then(|r| r.script()) {
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
            let at = (line > 0).then_some(opsbook_core::Pos { line, column, len: 0 });
            let target = base.join(path);
            let Some(rel) = normalize(&target).and_then(|t| t.strip_prefix(&root).ok().map(Path::to_path_buf)) else {
                warnings.push(Diagnostic::new(
                    at,
                    format!(
                        "{what} names `{path}`, outside the runbook's directory: it is not in the files `opsbook \
                         push` sends with the runbook"
                    ),
                ));
                continue;
            };
            if !target.exists() {
                warnings.push(Diagnostic::new(
                    at,
                    format!("{what} names `{path}`, which is not beside the runbook: a server would not have it"),
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
                warnings.push(Diagnostic::new(
                    at,
                    format!(
                        "{what} names `{path}`, which is hidden or listed in {IGNORE_FILE}, so it is not sent with \
                         the runbook"
                    ),
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

/// What `validate` found in one file (`--output json` prints a list of these).
#[derive(Debug, serde::Serialize)]
struct Report {
    file: String,
    /// `runbook`, `gates` (a gates file), `tests` (a runbook's test file), `inventory`
    /// (targets' hosts), or `unreadable`.
    kind: &'static str,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<usize>,
    /// Gates in a gates file, hosts in an inventory.
    #[serde(skip_serializing_if = "Option::is_none")]
    gates: Option<usize>,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
    /// How the problems read as text (with snippets), for the text output.
    #[serde(skip)]
    rendered: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
struct Problem {
    line: Option<u32>,
    column: Option<u32>,
    message: String,
}

impl From<&Diagnostic> for Problem {
    fn from(d: &Diagnostic) -> Problem {
        Problem { line: d.pos.map(|p| p.line), column: d.pos.map(|p| p.column), message: d.message.clone() }
    }
}

fn check_file(f: &Path, explicit: Option<&Path>, gates_files: &mut GatesFiles) -> Report {
    let shown = f.display().to_string();
    let mut report = Report {
        file: shown.clone(),
        kind: "runbook",
        valid: false,
        name: None,
        version: None,
        steps: None,
        gates: None,
        problems: Vec::new(),
        warnings: Vec::new(),
        rendered: Vec::new(),
    };
    let text = match opsbook_core::read_document(f).map(Diagnostic::utf8) {
        Ok(Ok(text)) => text,
        Ok(Err(d)) => {
            report.kind = "unreadable";
            let pos = d.pos.expect("a UTF-8 problem has a place");
            report.problems.push(Problem {
                line: Some(pos.line),
                column: Some(pos.column),
                message: d.message.clone(),
            });
            report.rendered.push(d.headline(&shown));
            return report;
        }
        Err(e) => {
            report.kind = "unreadable";
            report.problems.push(Problem { line: None, column: None, message: format!("cannot read: {e}") });
            report.rendered.push(format!("{shown}: cannot read: {e}"));
            return report;
        }
    };
    if let Some(runbook) = super::test::runbook_of(f) {
        report.kind = "tests";
        let diags = match std::fs::read_to_string(&runbook).ok().and_then(|t| opsbook_core::parse(&t).ok()) {
            Some(rb) => match opsbook_core::testcase::parse_file(&text, &rb) {
                Ok(cases) => {
                    report.name = Some(rb.name.clone());
                    report.steps = Some(cases.len());
                    Vec::new()
                }
                Err(diags) => diags,
            },
            None => vec![Diagnostic::new(
                None,
                format!("the tests of {}, which is missing or not valid", runbook.display()),
            )],
        };
        report.valid = diags.is_empty();
        report.problems = diags.iter().map(Problem::from).collect();
        report.rendered = diags.iter().map(|d| d.render(&shown, &text)).collect();
        return report;
    }
    if is_inventory_file(&text) {
        report.kind = "inventory";
        match opsbook_core::step::targets::Inventory::parse(&text, &shown) {
            Ok(inv) => {
                report.valid = true;
                report.gates = Some(inv.hosts.len());
            }
            Err(e) => {
                report.problems.push(Problem { line: None, column: None, message: e.clone() });
                report.rendered.push(e);
            }
        }
        return report;
    }
    if is_gates_file(&text) {
        report.kind = "gates";
        match opsbook_core::gate::GatesFile::parse(&text) {
            Ok(g) => {
                report.valid = true;
                report.gates = Some(g.gates.len());
                report.warnings = stale_freezes(&g, jiff::Timestamp::now());
            }
            Err(e) => {
                let place = |n: Option<u64>| n.and_then(|n| u32::try_from(n).ok());
                report.problems.push(Problem {
                    line: place(e.line),
                    column: place(e.column),
                    message: e.message.clone(),
                });
                report.rendered.push(e.render(&shown, &text));
            }
        }
        return report;
    }
    let diags = match opsbook_core::parse(&text) {
        Ok(rb) => {
            report.name = Some(rb.name.clone());
            report.version = Some(rb.version.to_string());
            report.steps = Some(rb.steps.len());
            report.warnings = bundle_warnings(&rb, f).iter().map(Problem::from).collect();
            report.warnings.extend(text_conditions(&rb).iter().map(Problem::from));
            let mut diags = check_uses(&text, f, explicit, gates_files);
            diags.extend(opsbook_core::step::call::check_calls(f, &rb));
            diags.extend(opsbook_core::step::targets::check_inventories(f, &rb));
            diags
        }
        Err(mut diags) => {
            diags.extend(check_uses(&text, f, explicit, gates_files));
            diags.sort_by_key(|d| d.pos.map(|p| (p.line, p.column)));
            diags
        }
    };
    report.valid = diags.is_empty();
    report.problems = diags.iter().map(Problem::from).collect();
    report.rendered = diags.iter().map(|d| d.render(&shown, &text)).collect();
    report
}

pub fn exec(args: Args) -> Result<u8> {
    let mut gates_files = GatesFiles::new();
    let files = super::runbook_files(&args.paths)?;
    let reports: Vec<Report> = files.iter().map(|f| check_file(f, args.gates.as_deref(), &mut gates_files)).collect();
    let bad = reports.iter().filter(|r| !r.valid).count();
    if args.output == crate::Output::Json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            for w in &r.warnings {
                let at = match (w.line, w.column) {
                    (Some(l), Some(c)) => format!("{}:{l}:{c}", r.file),
                    _ => r.file.clone(),
                };
                println!("{at}: warning: {}", w.message);
            }
            match (r.valid, r.kind) {
                (true, "tests") => {
                    let n = r.steps.unwrap_or(0);
                    println!(
                        "{}: ok (tests of {}, {n} case{})",
                        r.file,
                        r.name.as_deref().unwrap_or("?"),
                        if n == 1 { "" } else { "s" }
                    );
                }
                (true, "gates") => {
                    let n = r.gates.unwrap_or(0);
                    println!("{}: ok (gates file, {n} gate{})", r.file, if n == 1 { "" } else { "s" });
                }
                (true, "inventory") => {
                    let n = r.gates.unwrap_or(0);
                    println!("{}: ok (inventory, {n} host{})", r.file, if n == 1 { "" } else { "s" });
                }
                (true, _) => {
                    let n = r.steps.unwrap_or(0);
                    println!(
                        "{}: ok ({} v{}, {n} step{})",
                        r.file,
                        r.name.as_deref().unwrap_or("?"),
                        r.version.as_deref().unwrap_or("?"),
                        if n == 1 { "" } else { "s" }
                    )
                }
                (false, _) => r.rendered.iter().for_each(|p| println!("{p}\n")),
            }
        }
    }
    if files.is_empty() {
        eprintln!("no runbook files found");
        return Ok(EXIT_FAILED);
    }
    if bad > 0 {
        let problems: usize = reports.iter().map(|r| r.problems.len()).sum();
        eprintln!(
            "{bad} of {} file{} invalid ({problems} problem{})",
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            if problems == 1 { "" } else { "s" }
        );
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
        assert_eq!(super::relative_paths("cat ./données/été.csv|x"), vec!["./données/été.csv"], "paths in any script");
    }
}
