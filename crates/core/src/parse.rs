//! Turning YAML text into a checked [`Runbook`], collecting every problem found.

use std::collections::{BTreeMap, BTreeSet};

use serde_saphyr::{Location, Spanned};

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::document::RawRunbook;
use crate::params::Param;
use crate::step::run::Script;
use crate::template::{self, Scope};
use crate::{Prerequisite, Review, Runbook};

mod step;
mod targets;

const API_VERSION: &str = "opsbook/v1";

/// A document that is a mapping with none of a runbook's top-level keys (a parameters
/// file, another tool's YAML): one message saying so, rather than one per key.
fn not_a_runbook(source: &str) -> Option<Diagnostic> {
    use std::collections::BTreeMap;
    let keys = serde_saphyr::from_str::<BTreeMap<String, serde::de::IgnoredAny>>(source).ok()?;
    if keys.is_empty() || ["apiVersion", "kind", "metadata", "spec"].iter().any(|k| keys.contains_key(*k)) {
        return None;
    }
    let (line, text) = source
        .lines()
        .enumerate()
        .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#') && !l.starts_with("---"))?;
    let key = text.split(':').next().unwrap_or(text).trim_end();
    let pos = crate::Pos { line: line as u32 + 1, column: 1, len: key.chars().count().max(1) as u32 };
    let some: Vec<String> = keys.keys().take(3).map(|k| format!("`{k}`")).collect();
    Some(Diagnostic::new(
        Some(pos),
        format!(
            "not a runbook: it has {}{} but no `apiVersion: opsbook/v1`, `kind: Runbook`, `metadata` or `spec` \
             (a file of parameter values goes to `run --params-file`)",
            some.join(", "),
            if keys.len() > 3 { " and more" } else { "" }
        ),
    ))
}

/// Whether `source` has `name` as a key somewhere (`name:`, `{ name: …`), block or flow.
fn declares_key(source: &str, name: &str) -> bool {
    source.lines().any(|line| {
        line.match_indices(name).any(|(at, _)| {
            let before = line[..at].trim_end_matches(' ');
            let starts = before.is_empty() || before.ends_with(['{', ',', '-']);
            starts && line[at + name.len()..].trim_start_matches(' ').starts_with(':')
        })
    })
}

/// Parses and checks a runbook. On failure returns every problem found, in source order.
pub fn parse(source: &str) -> Result<Runbook, Vec<Diagnostic>> {
    if let Some(d) = not_a_runbook(source) {
        return Err(vec![d]);
    }
    let (raw, mut diags) = crate::recover::read_recovering(source);
    let mut c = Checker { diags: Vec::new(), source };
    let runbook = raw.and_then(|raw| c.runbook(raw, source));
    // Once the document had to be patched up, what it lacks may be what was misspelt:
    // a missing `name` after "unknown field `nmae` (did you mean `name`?)" says nothing new.
    let suggested: Vec<String> = diags.iter().filter_map(|d| crate::recover::suggestion(&d.message)).collect();
    // Likewise a step whose only kind key was blanked out (`sleep: 5x`) "does nothing".
    let blanked: Vec<crate::Pos> = diags.iter().filter_map(|d| d.pos).collect();
    let consequence = |d: &Diagnostic| {
        d.message.contains(step::DOES_NOTHING)
            && d.pos.is_some_and(|at| blanked.iter().any(|b| within_block(source, at, *b)))
    };
    // And a parameter whose declaration was blanked out (`type: int`) is no unknown one.
    let recovered = !diags.is_empty();
    let undeclared = |d: &Diagnostic| {
        let name = d.message.split("unknown parameter `params.").nth(1).and_then(|r| r.split('`').next());
        recovered && name.is_some_and(|n| declares_key(source, n))
    };
    // And what the checker says of a value the reading stood in for (`every: 6 months`
    // read as `1s`, then "reviews are counted in days") is about a value never written.
    let at = |d: &Diagnostic| d.pos.map(|p| (p.line, p.column));
    let stood_in = |d: &Diagnostic| blanked.iter().any(|b| Some((b.line, b.column)) == at(d));
    diags.extend(c.diags.into_iter().filter(|d| {
        !suggested.iter().any(|s| d.message == format!("missing required field `{s}`"))
            && !consequence(d)
            && !undeclared(d)
            && !stood_in(d)
    }));
    match runbook {
        Some(rb) if diags.is_empty() => Ok(rb),
        _ => {
            diags.sort_by_key(|d| d.pos.map(|p| (p.line, p.column)));
            diags.dedup_by(|a, b| a.pos == b.pos && a.message == b.message);
            Err(diags)
        }
    }
}

/// Whether `inner` lies in the YAML node that starts at `at`: later on its line, or on a
/// following line, every line up to it indented at least as far as `at` (blank lines
/// aside).
fn within_block(source: &str, at: crate::Pos, inner: crate::Pos) -> bool {
    if inner.line == at.line {
        return inner.column > at.column;
    }
    if inner.line < at.line {
        return false;
    }
    let indent = at.column.saturating_sub(1) as usize;
    (source.lines())
        .skip(at.line as usize)
        .take((inner.line - at.line) as usize)
        .all(|l| l.trim().is_empty() || crate::recover::indent(l) >= indent)
}

/// A YAML or shape problem of a file (a gates file, an inventory, tests).
pub fn yaml_diagnostic(e: &serde_saphyr::Error, source: &str) -> Diagnostic {
    diagnostic(e, source, &[])
}

/// [`yaml_diagnostic`] for a runbook: a key at the wrong level says where it belongs.
pub(crate) fn runbook_diagnostic(e: &serde_saphyr::Error, source: &str) -> Diagnostic {
    diagnostic(e, source, LEVELS)
}

fn diagnostic(e: &serde_saphyr::Error, source: &str, levels: &[(&str, &[&str])]) -> Diagnostic {
    use serde_saphyr::Error as E;
    let loc = e.location();
    let message = match e {
        E::SerdeUnknownField { field, expected, .. } => unknown("field", field, expected, levels),
        E::SerdeUnknownVariant { variant, expected, .. } => unknown("value", variant, expected, levels),
        E::SerdeMissingField { field, .. } => format!("missing required field `{field}`"),
        E::MultipleDocuments { .. } => {
            "a second YAML document (after `---`): a file holds one runbook, gates file or test list".to_string()
        }
        E::Budget { .. } => "the file is too large or too deeply nested to be read: it holds more nodes than \
                             a runbook ever needs (split it, or call other runbooks with `runbook:` steps)"
            .to_string(),
        other => {
            let msg = clean_message(&other.without_snippet().to_string());
            // The scanner names the token before the tab; the tab is what to fix.
            if msg.contains("found a tab") || msg.contains("tabs") {
                let from = loc.as_ref().and_then(crate::Pos::from_location).map_or(1, |p| p.line);
                if let Some(at) = first_tab(source, from) {
                    let message = "a tab character: YAML indents with spaces only (replace the tab with spaces)";
                    return Diagnostic::new(Some(at), message.to_string());
                }
            }
            if msg.contains("flow mapping") || msg.contains("flow sequence") {
                format!(
                    "{msg} (hint: a value containing `{{{{ }}}}` inside `{{ }}` or `[ ]` must be quoted, or use block style)"
                )
            } else {
                msg
            }
        }
    };
    Diagnostic::new(loc.as_ref().and_then(crate::Pos::from_location), message)
}

/// The first tab on line `from` or after it, outside quotes on its line.
fn first_tab(source: &str, from: u32) -> Option<crate::Pos> {
    for (i, line) in source.lines().enumerate().skip(from.saturating_sub(1) as usize) {
        let mut quote = None;
        for (col, c) in line.chars().enumerate() {
            match (quote, c) {
                (None, '\t') => {
                    let (line, column) = (u32::try_from(i + 1).ok()?, u32::try_from(col + 1).ok()?);
                    return Some(crate::Pos { line, column, len: 1 });
                }
                (None, '#') => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                _ => {}
            }
        }
    }
    None
}

/// Keys by where they belong, to tell a mis-indented key from a misspelt one.
const LEVELS: &[(&str, &[&str])] = &[
    ("the document", &["apiVersion", "kind", "metadata", "spec", "tests"]),
    (
        "metadata",
        &["name", "title", "description", "type", "version", "status", "owner", "tags", "review", "manual_duration"],
    ),
    ("spec", &["prerequisites", "parameters", "on_failure", "steps", "schedules", "triggers"]),
    (
        "a step",
        &[
            "id",
            "run",
            "shell",
            "env",
            "workdir",
            "http",
            "sleep",
            "approval",
            "manual",
            "gate",
            "aws_lambda",
            "aws_ssm_command",
            "aws_ssm_automation",
            "parallel",
            "runbook",
            "targets",
            "timeout",
            "retries",
            "validate",
            "rollback",
            "required",
            "when",
            "idempotent",
        ],
    ),
];

fn unknown(what: &str, got: &str, expected: &[&str], levels: &[(&str, &[&str])]) -> String {
    let elsewhere = levels
        .iter()
        .find(|(_, keys)| keys.contains(&got) && !expected.contains(&got))
        .map(|(level, _)| format!(" (check the indentation: `{got}` is a key of {level})"));
    let hint = did_you_mean(got, expected).map(|m| format!(" (did you mean `{m}`?)")).or(elsewhere).unwrap_or_default();
    if expected.is_empty() {
        format!("unknown {what} `{got}`{hint}")
    } else {
        format!("unknown {what} `{got}`{hint}; expected one of: {}", expected.join(", "))
    }
}

/// Drops the position suffix serde-saphyr appends, since we print our own, and says
/// its terser messages in words that tell what to write.
fn clean_message(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg).trim();
    let first = match first.rfind(" at line ") {
        Some(i) => first[..i].trim_end_matches(','),
        None => first,
    };
    let range = |ty: &str| match ty {
        "u8" => Some("0 to 255"),
        "u16" => Some("0 to 65535"),
        "u32" => Some("0 to 4294967295"),
        "u64" | "usize" => Some("0 or more"),
        "i64" | "i32" => Some("without a fraction"),
        _ => None,
    };
    if first == "expected sequence start" {
        "expected a list here: `[a, b]`, or one `- item` per line".into()
    } else if first == "expected mapping start" {
        "expected a mapping here: `key: value` lines, or `{ key: value }`".into()
    } else if first == "expected end of mapping after enum variant value" {
        "one kind per entry: this entry already has one; start the next with `- `".into()
    } else if let Some(key) = first.strip_prefix("duplicate mapping key: ") {
        format!("duplicate key `{}`", key.split(", set DuplicateKeyPolicy").next().unwrap_or(key))
    } else if first == "invalid floating point" || first.starts_with("non-finite float") {
        "expected a finite number (at most about 1.8e308; not inf or nan)".into()
    } else if let Some(r) = first.strip_prefix("invalid ").and_then(range) {
        format!("expected a whole number ({r})")
    } else {
        first.to_string()
    }
}

struct Checker<'s> {
    diags: Vec<Diagnostic>,
    source: &'s str,
}

impl Checker<'_> {
    fn err(&mut self, loc: &Location, msg: impl Into<String>) {
        self.diags.push(Diagnostic::at(loc, msg));
    }

    fn runbook(&mut self, raw: RawRunbook, source: &str) -> Option<Runbook> {
        if raw.api_version.value != API_VERSION {
            let msg = format!("unsupported apiVersion `{}`: expected `{API_VERSION}`", raw.api_version.value);
            self.err(&raw.api_version.referenced, msg);
        }
        if raw.kind.value != "Runbook" {
            self.err(&raw.kind.referenced, format!("unsupported kind `{}`: expected `Runbook`", raw.kind.value));
        }
        let m = raw.metadata;
        if !is_slug(&m.name.value) {
            let msg = format!(
                "invalid name `{}`: use lowercase letters, digits and dashes, starting with a letter or digit, at most 63 characters",
                m.name.value
            );
            self.err(&m.name.referenced, msg);
        }
        let version = match semver::Version::parse(m.version.value.trim()) {
            Ok(v) => Some(v),
            Err(e) => {
                let msg = format!("invalid version `{}`: {e} (expected semver such as 1.2.0)", m.version.value);
                self.err(&m.version.referenced, msg);
                None
            }
        };
        let review = m.review.map(|r| {
            let last_reviewed = r.last_reviewed.and_then(|d| match crate::gate::calendar_date(&d.value) {
                // A review to come has not happened: it would keep the runbook from ever being due.
                Ok(date) if date > jiff::Zoned::now().date() => {
                    self.err(&d.referenced, format!("last_reviewed `{date}` is in the future"));
                    None
                }
                Ok(date) => Some(date),
                Err(shaped) => {
                    let why = if shaped { "is no day of the calendar" } else { "is not a date: expected YYYY-MM-DD" };
                    self.err(&d.referenced, format!("last_reviewed `{}` {why}", d.value));
                    None
                }
            });
            if r.every.value.0 < std::time::Duration::from_secs(86_400) {
                let msg = format!("review.every `{}`: reviews are counted in days; at least 1d", r.every.value);
                self.err(&r.every.referenced, msg);
            }
            Review { every: r.every.value, last_reviewed }
        });

        let spec = raw.spec;
        let mut params = Vec::new();
        for (name, pspec) in &spec.parameters.0 {
            match Param::check_spec(&name.value, pspec) {
                Ok(p) => params.push(p),
                Err(errs) => errs.into_iter().for_each(|e| self.err(&name.referenced, e)),
            }
        }
        let param_names: BTreeSet<String> = spec.parameters.0.iter().map(|(n, _)| n.value.clone()).collect();
        let secret_names: BTreeSet<String> = (spec.parameters.0.iter())
            .filter(|(_, p)| p.ty == crate::params::ParamType::Secret)
            .map(|(n, _)| n.value.clone())
            .collect();
        let mut all_steps: BTreeMap<String, usize> = BTreeMap::new();
        for (i, s) in spec.steps.value.iter().enumerate() {
            all_steps.entry(s.value.id.value.clone()).or_insert(i);
        }
        // A parallel step's branches are steps too, seen from where their group is.
        for (i, s) in spec.steps.value.iter().enumerate() {
            for b in s.value.parallel.iter().flat_map(|p| &p.steps.value) {
                all_steps.entry(b.value.id.value.clone()).or_insert(i);
            }
        }

        // What templates may reference, seen from before the first step.
        let base =
            Scope { params: &param_names, secrets: &secret_names, steps: &all_steps, visible_below: 0, target: false };
        let prerequisites = spec
            .prerequisites
            .into_iter()
            .map(|p| {
                let check = p.check.map(|c| {
                    self.script(&c.run, &base, "check.run");
                    Script {
                        template: c.run.value,
                        shell: c.shell,
                        env: Default::default(),
                        workdir: None,
                        timeout: c.timeout,
                    }
                });
                Prerequisite { description: p.description, check }
            })
            .collect();

        if spec.steps.value.is_empty() {
            self.err(&spec.steps.referenced, "spec.steps: a runbook needs at least one step");
        }
        let mut steps = Vec::new();
        for (i, raw_step) in spec.steps.value.into_iter().enumerate() {
            let id = &raw_step.value.id.value;
            if all_steps.get(id) != Some(&i) {
                self.err(&raw_step.value.id.referenced, format!("duplicate step id `{id}`"));
            }
            let scope = Scope { visible_below: i, ..base };
            let rollback_scope = Scope { visible_below: i + 1, ..base };
            if let Some(step) = self.step(raw_step, &scope, &rollback_scope) {
                steps.push(step);
            }
        }

        let mut schedules = Vec::new();
        for sched in spec.schedules {
            if let Err(e) = crate::schedule::check_cron_fires(&sched.cron.value) {
                self.err(&sched.cron.referenced, format!("schedules: {e}"));
                continue;
            }
            let tz = sched.timezone.clone().unwrap_or_else(|| "UTC".into());
            let valid_tz =
                !tz.is_empty() && tz.len() <= 64 && tz.chars().all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c));
            if !valid_tz {
                self.err(&sched.cron.referenced, format!("schedules: invalid time zone `{tz}`"));
            } else if let Err(e) = crate::gate::timezone(Some(&tz)) {
                self.err(&sched.cron.referenced, format!("schedules: {e}"));
            }
            if params.iter().any(|p| p.is_secret() && p.spec.required) {
                self.err(
                    &sched.cron.referenced,
                    "schedules: this runbook needs a secret parameter, and secrets cannot be scheduled",
                );
            }
            for p in params.iter().filter(|p| p.is_secret() && sched.params.contains_key(&p.name)) {
                self.err(
                    &sched.cron.referenced,
                    format!(
                        "schedules: parameter `{}` is a secret: secrets are never stored, so they cannot be scheduled",
                        p.name
                    ),
                );
            }
            let inputs = sched.params.iter().map(|(k, v)| (k.clone(), crate::Input::Value(v.clone()))).collect();
            if let Err(errors) = crate::params::check_values(&params, &inputs) {
                for e in errors {
                    self.err(&sched.cron.referenced, format!("schedules: {e}"));
                }
            }
            schedules.push(crate::schedule::Schedule {
                cron: sched.cron.value,
                timezone: tz,
                params: sched.params,
                overlap: sched.overlap,
                missed: sched.missed,
            });
        }

        let mut triggers = Vec::new();
        let mut trigger_names = BTreeSet::new();
        for raw in &spec.triggers {
            if !trigger_names.insert(raw.name.value.as_str()) {
                self.err(&raw.name.referenced, format!("duplicate trigger `{}`", raw.name.value));
                continue;
            }
            match crate::trigger::check(raw, &params) {
                Ok(t) => triggers.push(t),
                Err(errs) => errs.into_iter().for_each(|e| self.err(&raw.name.referenced, e)),
            }
        }

        if !self.diags.is_empty() {
            return None;
        }
        let mut rb = Runbook {
            schedules,
            triggers,
            title: m.title.unwrap_or_else(|| m.name.value.clone()),
            name: m.name.value,
            description: m.description,
            runbook_type: m.runbook_type,
            version: version?,
            status: m.status,
            owner: m.owner,
            tags: m.tags,
            review,
            manual_duration: m.manual_duration,
            prerequisites,
            params,
            on_failure: spec.on_failure,
            steps,
            source: source.to_string(),
            sha256: crate::sha256_hex(source.as_bytes()),
            tests: Vec::new(),
        };
        match crate::testcase::check(&rb, raw.tests) {
            Ok(tests) => rb.tests = tests,
            Err(diags) => {
                self.diags.extend(diags);
                return None;
            }
        }
        Some(rb)
    }

    /// Checks a shell script template: references, and no `{{ }}` where no value can be
    /// written safely (inside backquotes or `${…}`, right after `\` or `$`).
    fn script(&mut self, text: &Spanned<String>, scope: &Scope<'_>, field: &str) {
        // The shell's `${#VAR}` (a length) opens a template comment, which would take the
        // script's text up to the next `#}` away, or fail to parse.
        if let Some(at) = outside_raw(&text.value, "${#") {
            let line = text.value[..at].matches('\n').count() + 1;
            let pos = self.locate_text(&text.referenced, line, "${#");
            let msg = format!(
                "{field}: `{{#` starts a template comment here, which would take the script's text up to the \
                 next `#}}` out (or not parse): for the shell's length of a variable write \
                 {{% raw %}}${{#VAR}}{{% endraw %}}"
            );
            self.diags.push(Diagnostic::new(pos, msg));
            return;
        }
        self.template(text, false, scope, field);
        for i in crate::shell::interpolations(&text.value) {
            if let crate::shell::Context::Refused(why) = i.context {
                let pos = self.locate_tag(&text.referenced, i.line, i.nth);
                self.diags.push(Diagnostic::new(pos, format!("{field}: {why}")));
            }
        }
        if text.value.contains(template::RESERVED) {
            self.err(&text.referenced, format!("{field}: `{}…` names are reserved", template::RESERVED));
        }
    }

    /// The position of `needle` on line `line` of a script that starts at `at`.
    fn locate_text(&self, at: &Location, line: usize, needle: &str) -> Option<crate::Pos> {
        let start = crate::Pos::from_location(at)?;
        // A block scalar (`run: |`) starts on the line after its indicator.
        let first = self.source.lines().nth(start.line as usize - 1)?;
        // `|`, `>`, with a chomping or indentation indicator (`|-`, `>+`, `|2`).
        let indicator = first.trim_end().rsplit([' ', ':']).next().unwrap_or_default();
        let block = indicator.starts_with(['|', '>']);
        let file_line = start.line as usize + line - usize::from(!block);
        let text = self.source.lines().nth(file_line - 1)?;
        let byte = text.find(needle)?;
        Some(crate::Pos {
            line: u32::try_from(file_line).ok()?,
            column: u32::try_from(text[..byte].chars().count() + 1).ok()?,
            len: u32::try_from(needle.len()).ok()?,
        })
    }

    /// The position of the `nth` template tag on line `line` of a script that starts at `at`.
    fn locate_tag(&self, at: &Location, line: usize, nth: usize) -> Option<crate::Pos> {
        let start = crate::Pos::from_location(at)?;
        let file_line = start.line as usize + line - 1;
        let text = self.source.lines().nth(file_line - 1)?;
        let from = if line == 1 {
            text.char_indices().nth((start.column as usize).saturating_sub(1)).map_or(0, |(b, _)| b)
        } else {
            0
        };
        let mut found = text[from..]
            .match_indices("{{")
            .chain(text[from..].match_indices("{%"))
            .map(|(i, _)| i)
            .collect::<Vec<_>>();
        found.sort_unstable();
        let byte = from + *found.get(nth)?;
        Some(crate::Pos {
            line: u32::try_from(file_line).ok()?,
            column: u32::try_from(text[..byte].chars().count() + 1).ok()?,
            len: 2,
        })
    }

    fn template(&mut self, text: &Spanned<String>, expression: bool, scope: &Scope<'_>, field: &str) {
        for e in template::check(&text.value, expression, scope) {
            self.err(&text.referenced, format!("{field}: {e}"));
        }
    }

    fn plain_template(&mut self, text: &str, loc: &Location, scope: &Scope<'_>, field: &str) {
        for e in template::check(text, false, scope) {
            self.err(loc, format!("{field}: {e}"));
        }
    }
}

/// Where `needle` first is in a template outside its `{% raw %}` blocks.
fn outside_raw(template: &str, needle: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = template[from..].find(needle).map(|p| from + p) {
        let opened = template[..found].rfind("{% raw").or_else(|| template[..found].rfind("{%- raw"));
        let closed = template[..found].rfind("endraw");
        match (opened, closed) {
            (Some(o), c) if c.is_none_or(|c| c < o) => from = found + needle.len(),
            _ => return Some(found),
        }
    }
    None
}

pub(crate) fn is_slug(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every file in tests/data/valid parses; every file in tests/data/invalid fails with
    /// exactly the messages in the `.expected` file beside it (OPSBOOK_BLESS=1 rewrites them).
    #[test]
    fn fixtures() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let mut seen = 0;
        for entry in std::fs::read_dir(root.join("valid")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(d) = super::parse(&text) {
                panic!("{} should be valid:\n{}", path.display(), d[0].render("", &text));
            }
            seen += 1;
        }
        let bless = std::env::var_os("OPSBOOK_BLESS").is_some();
        let mut failures = Vec::new();
        for entry in std::fs::read_dir(root.join("invalid")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let diags = super::parse(&text).err().unwrap_or_else(|| panic!("{name} should be invalid"));
            let got: String = diags.iter().map(|d| d.render(&name, &text) + "\n").collect();
            let expected_path = path.with_extension("expected");
            if bless {
                std::fs::write(&expected_path, &got).unwrap();
            }
            let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
            if got != expected {
                failures.push(format!("{name}:\n--- expected\n{expected}--- got\n{got}"));
            }
            seen += 1;
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(seen >= 20, "only {seen} fixtures");
    }

    const EXAMPLE: &str = include_str!("../../../examples/web-app-deploy/runbook.yaml");

    proptest::proptest! {
        /// Any edit of a valid runbook is read or refused with messages, never a panic; every
        /// placed message points inside the file and renders.
        #[test]
        fn any_edit_is_read_or_refused_with_places(text in crate::testing::edits(EXAMPLE)) {
            if let Err(diags) = super::parse(&text) {
                proptest::prop_assert!(!diags.is_empty());
                for d in diags {
                    proptest::prop_assert!(!d.message.is_empty());
                    proptest::prop_assert!(d.pos.is_none_or(|p| crate::testing::within(&text, p.line.into())), "{d:?}");
                    proptest::prop_assert!(d.render("x.yaml", &text).contains(&d.message));
                }
            }
        }
    }
}
