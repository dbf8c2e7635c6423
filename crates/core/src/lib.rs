//! The runbook document model: parsing, validation, parameters, templates and masking.
//!
//! Architecture invariant: this crate does no IO and knows nothing of processes,
//! storage or HTTP. Everything here is a pure function of its inputs.
#![forbid(unsafe_code)]

pub mod aws_regions;
pub mod bundle;
pub mod diagnostic;
pub mod doc;
pub mod document;
pub mod duration;
pub mod gate;
pub mod jsonpath;
pub mod params;
mod parse;
mod recover;
pub mod schedule;
mod schema;
pub mod secret;
pub mod shell;
pub mod status;
pub mod step;
pub mod template;
pub mod terminal;
pub mod testcase;
#[cfg(test)]
mod testing;
pub mod trigger;

use std::collections::BTreeMap;

pub use diagnostic::{Diagnostic, Pos};
pub use document::{LifecycleStatus, OnFailure, RunbookType, Shell, Validation};
pub use duration::Dur;
pub use params::{Input, Param, ParamError, ParamValues};
pub use parse::parse;
/// A YAML problem of any file opsbook reads, at its place.
pub use parse::yaml_diagnostic;
pub use status::{ExecStatus, StepStatus};
pub use step::StepKind;

/// A checked runbook, ready to execute.
#[derive(Debug, Clone)]
pub struct Runbook {
    pub name: String,
    pub title: String,
    pub description: Option<String>,
    pub runbook_type: RunbookType,
    pub version: semver::Version,
    pub status: LifecycleStatus,
    pub owner: Option<String>,
    pub tags: Vec<String>,
    pub review: Option<Review>,
    /// How long the procedure takes by hand (`metadata.manual_duration`).
    pub manual_duration: Option<Dur>,
    pub prerequisites: Vec<Prerequisite>,
    pub params: Vec<Param>,
    pub on_failure: OnFailure,
    pub steps: Vec<Step>,
    pub schedules: Vec<schedule::Schedule>,
    pub triggers: Vec<trigger::Trigger>,
    /// The exact text this runbook was parsed from, and its SHA-256.
    pub source: String,
    pub sha256: String,
    /// Its test cases (`tests:`), for `opsbook test`.
    pub tests: Vec<testcase::TestCase>,
}

#[derive(Debug, Clone)]
pub struct Review {
    pub every: Dur,
    pub last_reviewed: Option<jiff::civil::Date>,
}

impl Review {
    /// The date the next review is due, if the runbook was ever reviewed.
    pub fn due(&self) -> Option<jiff::civil::Date> {
        self.due_after(None)
    }

    /// The date the next review is due, counting a review recorded apart from the
    /// document (`opsbook review`) as well as `last_reviewed`: the later of the two.
    pub fn due_after(&self, recorded: Option<jiff::civil::Date>) -> Option<jiff::civil::Date> {
        let last = self.last_reviewed.max(recorded)?;
        let days = i64::try_from(self.every.0.as_secs() / 86_400).ok()?;
        last.checked_add(jiff::Span::new().days(days)).ok()
    }
}

#[derive(Debug, Clone)]
pub struct Prerequisite {
    pub description: String,
    pub check: Option<step::run::Script>,
}

/// One checked step.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub kind: StepKind,
    pub timeout: Dur,
    pub retries: Option<document::Retries>,
    pub validate: Vec<CheckedValidation>,
    pub rollback: Option<step::Rollback>,
    pub required: bool,
    pub when: Option<String>,
    pub idempotent: bool,
    /// Run steps: the hosts the step runs for, one attempt each.
    pub targets: Option<step::targets::Targets>,
    /// Line and column of the step in the source, for messages.
    pub line: u32,
    pub column: u32,
}

impl Step {
    pub fn attempts(&self) -> u32 {
        1 + self.retries.as_ref().map_or(0, |r| r.count)
    }
}

/// A validation with its regular expression compiled.
#[derive(Debug, Clone)]
pub enum CheckedValidation {
    ExitCode(document::ExitCodes),
    OutputContains(String),
    OutputMatches(regex::Regex),
    /// The value at `path` in the step's JSON result must equal `equals`.
    Json {
        path: jsonpath::JsonPath,
        equals: serde_json::Value,
    },
    /// A Lambda function given the step's result decides.
    Lambda(String),
}

impl Runbook {
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Every step, a parallel step's branches after it.
    pub fn all_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().flat_map(|s| {
            let branches: &[Step] = match &s.kind {
                StepKind::Parallel(p) => &p.branches,
                _ => &[],
            };
            std::iter::once(s).chain(branches)
        })
    }

    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }

    /// Checks submitted values against the declared parameters, and against what the
    /// scripts do with them: a value a script takes as a number in shell arithmetic must
    /// be an integer, and one given to ssh where it reads options must not be one, known
    /// before any step runs (else the run stops at that step).
    pub fn check_params(&self, inputs: &BTreeMap<String, Input>) -> Result<ParamValues, Vec<ParamError>> {
        let values = params::check_values(&self.params, inputs)?;
        let errors = self.misplaced_params(&values);
        if errors.is_empty() { Ok(values) } else { Err(errors) }
    }

    /// The parameters written (as `{{ params.NAME }}`) where a script's shell evaluates
    /// arithmetic, whose values are no integers, or where ssh, scp or rsync read options or
    /// a host or a remote path, whose values do not fit there.
    fn misplaced_params(&self, values: &ParamValues) -> Vec<ParamError> {
        let scripts = self.prerequisites.iter().filter_map(|p| p.check.as_ref().map(|c| ("a prerequisite", c)));
        // Steps a `when` may skip are checked when they run, as values a template makes are.
        let steps = self.all_steps().filter(|s| s.when.is_none()).flat_map(|s| {
            let own = match &s.kind {
                StepKind::Run(c) => Some((s.id.as_str(), c)),
                _ => None,
            };
            own.into_iter().chain(s.rollback.as_ref().and_then(step::Rollback::script).map(|c| (s.id.as_str(), c)))
        });
        let mut errors: Vec<ParamError> = Vec::new();
        for (step, script) in scripts.chain(steps) {
            for i in shell::interpolations(&script.template) {
                use shell::Context::{Arithmetic, CopyOperand, Host, NotAnOption, RemotePath};
                let arithmetic = i.context == Arithmetic;
                if !matches!(i.context, Arithmetic | NotAnOption(_) | Host(_) | RemotePath(_) | CopyOperand(..)) {
                    continue;
                }
                let expr = script.template[i.start + 2..i.end - 2].trim();
                let Some(name) = expr.strip_prefix("params.").filter(|n| params::is_param_name(n)) else { continue };
                let Some(value) = values.values.get(name) else { continue };
                let text = value.as_str().map_or_else(|| value.to_string(), str::to_string);
                let empty = text.is_empty() && value.is_string();
                let option = matches!(i.context, NotAnOption(_)) && text.starts_with('-');
                let unfit =
                    if arithmetic { !shell::is_integer(&text) } else { shell::escape(&text, &i.context).is_err() };
                if !unfit || value.is_null() || empty || errors.iter().any(|e| e.param == name) {
                    continue;
                }
                let shown = if values.secret_names.contains(name) { String::new() } else { format!(", not `{text}`") };
                let place = if step == "a prerequisite" { step.to_string() } else { format!("step `{step}`") };
                let message = if arithmetic {
                    format!(
                        "{place} uses it as a number in shell arithmetic ($(( )), let, [[ … -eq … ]]): \
                         it must be an integer{shown}"
                    )
                } else if option {
                    format!(
                        "{place} gives it to ssh, scp or rsync where they read options (ssh's destination or the \
                         word after it, an scp or rsync operand): it may not begin with `-`{shown}"
                    )
                } else {
                    let why = shell::escape(&text, &i.context).err().unwrap_or_default();
                    format!("{place} cannot take it where it is{shown}: {why}")
                };
                errors.push(ParamError { param: name.to_string(), message });
            }
        }
        errors
    }
}

/// The most a document opsbook reads (a runbook, its tests, a gates file, an inventory,
/// a parameters file) may hold: far more than any needs, and a bound on what a wrong
/// path (`/dev/zero`, a log file) can cost.
pub const DOCUMENT_LIMIT: u64 = 16 * 1024 * 1024;

/// Reads a document, refusing one larger than [`DOCUMENT_LIMIT`] (a device or pipe
/// included: it is read up to the limit, no further).
pub fn read_document(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(DOCUMENT_LIMIT + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > DOCUMENT_LIMIT {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB, which no runbook, gates file or inventory is: is it the file you meant?",
            DOCUMENT_LIMIT / (1024 * 1024)
        )));
    }
    Ok(bytes)
}

/// Reads a document as text (see [`read_document`]).
pub fn read_document_text(path: &std::path::Path) -> std::io::Result<String> {
    String::from_utf8(read_document(path)?).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// SHA-256 of a text, hex encoded.
pub fn sha256_hex(text: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text))
}

pub use schema::json_schema;

/// A future built and compiled where it is defined, polled through the box by callers.
/// Public async functions of the library crates return these: an `async fn`'s state
/// machine is otherwise compiled again in every crate, and every codegen unit, that
/// awaits it (with everything it awaits in turn).
pub type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Boxes `f` as a [`Boxed`] future.
pub fn boxed<'a, T>(f: impl std::future::Future<Output = T> + Send + 'a) -> Boxed<'a, T> {
    Box::pin(f)
}
