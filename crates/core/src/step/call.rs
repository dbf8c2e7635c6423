//! The `runbook` kind: run another runbook as a child execution of its own (its own
//! record, approvals, gates and rollbacks), linked both ways to the step that called it.
//! The child's outputs become the step's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// How deep runbooks may call runbooks (the top one is depth 0).
pub const MAX_DEPTH: usize = 5;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCall {
    /// A runbook file, relative to this runbook's directory (runs here and, when inside
    /// the published directory, on the server).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub file: Option<Spanned<String>>,
    /// A runbook published to the server's registry (server runs only).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    /// With `name`: which published version, as a semver requirement (`^1`, `=1.4.2`);
    /// the newest active version that matches. Default: the newest active version.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub version: Option<Spanned<String>>,
    /// The child's parameters: templates rendered with this runbook's parameters and
    /// earlier steps' outputs, then checked against the child's parameter types.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub params: BTreeMap<String, Spanned<String>>,
}

/// Which runbook a step calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callee {
    /// A file, relative to the calling runbook's directory.
    File(String),
    /// A published runbook and the versions that may run.
    Name { name: String, version: Option<semver::VersionReq> },
}

impl std::fmt::Display for Callee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Callee::File(path) => write!(f, "{path}"),
            Callee::Name { name, version: Some(v) } => write!(f, "{name} {v}"),
            Callee::Name { name, version: None } => write!(f, "{name}"),
        }
    }
}

/// A checked `runbook` step.
#[derive(Debug, Clone)]
pub struct CallSpec {
    pub callee: Callee,
    /// Parameter name → template, in name order.
    pub params: Vec<(String, String)>,
}

/// Walks the `runbook: { file }` calls from `root` (a parsed runbook read from
/// `root_path`): every called file must read and parse, name only parameters it has and
/// give every required one, call no runbook that is already being called (a cycle), and
/// stay within [`MAX_DEPTH`]. A problem in the root's own steps is placed at the step; one
/// deeper names the file, line and column of the call.
pub fn check_calls(root_path: &Path, root: &crate::Runbook) -> Vec<crate::Diagnostic> {
    let mut problems = Vec::new();
    let canonical = root_path.canonicalize().unwrap_or_else(|_| root_path.to_path_buf());
    walk(&canonical, root, &mut vec![canonical.clone()], &mut problems, &mut Vec::new());
    problems
        .into_iter()
        .map(|(file, step, message)| {
            let text = format!("step `{}`: {message}", step.id);
            if file == canonical {
                let pos = crate::diagnostic::Pos { line: step.line, column: step.column, len: 1 };
                crate::Diagnostic::new(Some(pos), text)
            } else {
                crate::Diagnostic::new(None, format!("{}:{}:{}: {text}", file.display(), step.line, step.column))
            }
        })
        .collect()
}

type Problem = (PathBuf, crate::Step, String);

/// Walks the calls from `rb` (read from `path`), noting each problem and each file
/// called (once, in `called`).
fn walk(
    path: &Path,
    rb: &crate::Runbook,
    chain: &mut Vec<PathBuf>,
    problems: &mut Vec<Problem>,
    called: &mut Vec<PathBuf>,
) {
    let dir = path.parent().unwrap_or(Path::new("."));
    for step in &rb.steps {
        let crate::StepKind::Runbook(call) = &step.kind else { continue };
        let Callee::File(file) = &call.callee else { continue };
        let mut problem = |msg: String| problems.push((path.to_path_buf(), step.clone(), msg));
        let target = dir.join(file);
        let target = match target.canonicalize() {
            Ok(t) => t,
            Err(e) => {
                problem(format!("cannot read runbook {}: {e}", target.display()));
                continue;
            }
        };
        if let Some(from) = chain.iter().position(|p| *p == target) {
            let names: Vec<String> = chain[from..].iter().chain([&target]).map(|p| short(p, dir)).collect();
            problem(format!("runbooks call each other in a cycle: {}", names.join(" → ")));
            continue;
        }
        if chain.len() > MAX_DEPTH {
            problem(format!(
                "calls {} at depth {}; runbooks may call runbooks at most {MAX_DEPTH} deep",
                short(&target, dir),
                chain.len()
            ));
            continue;
        }
        if !called.contains(&target) {
            called.push(target.clone());
        }
        let child = match crate::read_document_text(&target) {
            Ok(text) => match crate::parse(&text) {
                Ok(c) => c,
                Err(diags) => {
                    let first = diags.first().map(|d| d.to_string()).unwrap_or_default();
                    problem(format!("the runbook it calls, {}, is invalid: {first}", target.display()));
                    continue;
                }
            },
            Err(e) => {
                problem(format!("cannot read runbook {}: {e}", target.display()));
                continue;
            }
        };
        for p in param_problems(call, rb, &child) {
            problem(p);
        }
        chain.push(target.clone());
        walk(&target, &child, chain, problems, called);
        chain.pop();
    }
}

/// The runbook files `root` (read from `root_path`) calls with `runbook: { file }`, and
/// those they call in turn, each once, as canonical paths: the walk of [`check_calls`],
/// whose problems it leaves to that (a missing file is not listed, one that does not
/// parse is listed but not followed).
pub fn called_files(root_path: &Path, root: &crate::Runbook) -> Vec<PathBuf> {
    let mut called = Vec::new();
    let canonical = root_path.canonicalize().unwrap_or_else(|_| root_path.to_path_buf());
    walk(&canonical, root, &mut vec![canonical.clone()], &mut Vec::new(), &mut called);
    called
}

/// What is wrong with the parameters a call from `caller` gives `child`: names it does
/// not have, required ones (no default, no `from:`) left out, and a secret of the caller
/// given to a parameter the child does not keep secret (stored and shown in the clear).
pub fn param_problems(call: &CallSpec, caller: &crate::Runbook, child: &crate::Runbook) -> Vec<String> {
    let mut problems = Vec::new();
    let known: Vec<&str> = child.params.iter().map(|p| p.name.as_str()).collect();
    for (name, _) in &call.params {
        if !known.contains(&name.as_str()) {
            let hint = crate::diagnostic::did_you_mean(name, &known)
                .map(|m| format!(" (did you mean `{m}`?)"))
                .unwrap_or_default();
            problems.push(format!("runbook `{}` has no parameter `{name}`{hint}", child.name));
        }
    }
    for (name, template) in &call.params {
        let Some(p) = child.params.iter().find(|p| p.name == *name).filter(|p| !p.is_secret()) else { continue };
        if let Some(secret) = caller.params.iter().find(|s| s.is_secret() && hands_on(template, &s.name)) {
            problems.push(format!(
                "parameter `{}` of runbook `{}` would receive the secret `{}`; declare it `type: secret` there",
                p.name, child.name, secret.name
            ));
        }
    }
    for p in &child.params {
        let given = call.params.iter().any(|(n, _)| *n == p.name);
        if !given && p.spec.required && p.spec.default.is_none() && p.spec.from.is_none() {
            problems.push(format!("parameter `{}` of runbook `{}` is required: set it in params", p.name, child.name));
        }
    }
    problems
}

/// Whether `template` may write secret parameter `name` out: any use of it in a tag
/// (`{{ }}`, `{% %}`: sliced, joined, set to a variable…) except a test of it (`if
/// params.tok`, `not params.tok`, `params.tok == …`) or a measure (`params.tok | length`,
/// `count`, `bool`). What this cannot see, the value check when the call starts does.
fn hands_on(template: &str, name: &str) -> bool {
    let refs = [format!("params.{name}"), format!("params['{name}']"), format!("params[\"{name}\"]")];
    for tag in crate::template::tags(template) {
        for r in &refs {
            for (at, _) in tag.match_indices(r.as_str()) {
                let after = &tag[at + r.len()..];
                if after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                    continue; // `params.tok_hint`: another parameter
                }
                let before = tag[..at].trim_end();
                let word = |w: &str| before.strip_suffix(w).is_some_and(|b| b.is_empty() || b.ends_with([' ', '(']));
                let tested = word("if") || word("not") || word("and") || word("or");
                let after = after.trim_start();
                let compared = ["==", "!="].iter().any(|op| after.starts_with(op));
                let measured = after.strip_prefix('|').is_some_and(|f| {
                    let f = f.trim_start();
                    ["length", "count", "bool"].iter().any(|m| {
                        f.strip_prefix(m)
                            .is_some_and(|x| !x.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
                    })
                });
                let ended = after.is_empty() || after.starts_with(['%', ')', 'e']) || after.starts_with("else");
                if !(compared || measured || (tested && (ended || after.starts_with("and") || after.starts_with("or"))))
                {
                    return true;
                }
            }
        }
    }
    false
}

/// `path` as written relative to `dir` when it is below it.
fn short(path: &Path, dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    path.strip_prefix(&dir).unwrap_or(path).display().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn writing_a_secret_out_is_told_from_testing_it() {
        for t in [
            "{{ params.tok }}",
            "x{{- params.tok -}}y",
            "{{ params['tok'] | upper }}",
            "{{ params.tok ~ '!' }}",
            "{{ 'x' ~ params.tok }}",
            "{{ params.tok[1:] }}",
            "{{ (params.tok) }}",
            "{{ params.tok if true }}",
            "{% set t = params.tok %}{{ t }}",
        ] {
            assert!(super::hands_on(t, "tok"), "{t}");
        }
        for t in [
            "{{ 'yes' if params.tok else 'no' }}",
            "{{ params.tok | length }}",
            "{% if not params.tok %}none{% endif %}",
            "{{ params.tok == 'x' }}",
            "{{ params.token }}",
            "params",
        ] {
            assert!(!super::hands_on(t, "tok"), "{t}");
        }
    }
}
