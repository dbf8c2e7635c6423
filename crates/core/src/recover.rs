//! Reading on after a problem: a runbook with four typos gets four messages in one
//! pass, not one per round. A problem of a key or a value is blanked out (spaces, so
//! every other position stays) and the document read again; a syntax error ends it.

use crate::diagnostic::Diagnostic;
use crate::document::RawRunbook;
use crate::parse::yaml_diagnostic;

/// Most problems a document can hold, at most this many per pass.
const MAX_RECOVERIES: usize = 30;

/// Reads the document; on a problem, blanks out the key it is at (and what is nested
/// under it) and reads again, so one pass reports every problem it can, not the first
/// one only. Returns the document read in the end (with its problems blanked out).
pub(crate) fn read_recovering(source: &str) -> (Option<RawRunbook>, Vec<Diagnostic>) {
    let options = serde_saphyr::options! { with_snippet: false };
    // A syntax error is always reported (with the problems before it): read as a runbook,
    // a problem of a key before it in the same entry is found first, and blanking that
    // entry out would hide it.
    // (A document read without a problem has none: the check costs nothing then.)
    let (raw, mut diags) = read_problems(source, options.clone());
    if diags.is_empty() {
        return (raw, diags);
    }
    let syntax = match serde_saphyr::from_str_with_options::<serde::de::IgnoredAny>(source, options) {
        Err(e) if is_syntax(&e) => {
            let mut d = yaml_diagnostic(&e);
            hint_shape(&mut d, source);
            d
        }
        _ => return (raw, diags),
    };
    if !diags.iter().any(|d| d.pos == syntax.pos) {
        let at = |d: &Diagnostic| d.pos.map(|p| (p.line, p.column));
        diags.retain(|d| at(d) < at(&syntax));
        diags.push(syntax);
    }
    (None, diags)
}

/// The reading and blanking out of [`read_recovering`].
fn read_problems(source: &str, options: serde_saphyr::Options) -> (Option<RawRunbook>, Vec<Diagnostic>) {
    use serde_saphyr::Error as E;
    let mut text = source.to_string();
    let mut diags: Vec<Diagnostic> = Vec::new();
    for _ in 0..MAX_RECOVERIES {
        let e = match serde_saphyr::from_str_with_options::<RawRunbook>(&text, options.clone()) {
            Ok(raw) => return (Some(raw), diags),
            Err(e) => e,
        };
        let mut d = yaml_diagnostic(&e);
        hint_shape(&mut d, &text);
        // After a key was blanked out, only a later problem of a key or a value is a
        // problem of its own: one before it, a missing field or an early end is what
        // blanking did (a parent left empty), and is not reported.
        if let Some(last) = diags.last() {
            let later = matches!((d.pos, last.pos), (Some(now), Some(before)) if now.line > before.line);
            let own = matches!(
                e,
                E::SerdeUnknownField { .. }
                    | E::SerdeUnknownVariant { .. }
                    | E::SerdeInvalidType { .. }
                    | E::SerdeInvalidValue { .. }
                    | E::SerdeInvalidLength { .. }
                    | E::Unexpected { .. }
                    | E::Message { .. }
                    | E::DuplicateMappingKey { .. }
                    | E::InvalidScalar { .. }
                    | E::InvalidBooleanStrict { .. }
                    | E::ExternalMessage { .. }
            );
            if !(later && own) {
                return (None, diags);
            }
        }
        // A syntax error ends the reading: what follows it cannot be trusted.
        let syntax = is_syntax(&e);
        let at = d.pos;
        diags.push(d);
        match at.filter(|_| !syntax) {
            Some(pos) if blank_out(&mut text, pos) => {}
            _ => return (None, diags),
        }
    }
    (None, diags)
}

/// Whether `e` is the YAML's own (a syntax error, an early end), not a runbook's.
fn is_syntax(e: &serde_saphyr::Error) -> bool {
    use serde_saphyr::Error as E;
    matches!(
        e,
        E::ExternalMessage { .. }
            | E::IndentationError { .. }
            | E::IOError { .. }
            | E::Eof { .. }
            | E::MultipleDocuments { .. }
            | E::Budget { .. }
            | E::InvalidUtf8Input
    )
}

/// Replaces the entry on the line of `pos` (its key and value; a list item's `- `
/// stays) and the lines nested under it with spaces, keeping every other position.
/// False when there is nothing left to blank out there.
fn blank_out(text: &mut String, pos: crate::Pos) -> bool {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let Some(idx) = (pos.line as usize).checked_sub(1).filter(|&i| i < lines.len()) else { return false };
    let line = lines[idx].clone();
    // Where the entry starts: after the indentation and any `- ` of a list item.
    let start = line.len() - line.trim_start_matches([' ', '-']).len();
    if line[start..].trim().is_empty() {
        return false;
    }
    let spaces = |n: usize| " ".repeat(n);
    lines[idx] = format!("{}{}", &line[..start], spaces(line[start..].chars().count()));
    let indent = |s: &str| s.len() - s.trim_start_matches(' ').len();
    for next in lines.iter_mut().skip(idx + 1) {
        let trimmed = next.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if indent(next) <= start {
            break;
        }
        *next = spaces(next.chars().count());
    }
    *text = lines.join("\n");
    true
}

/// What a key takes, for a value of the wrong shape (`retries: 3`).
const SHAPES: &[(&str, &str)] = &[
    ("retries", "retries: { count: 3, delay: 10s, backoff: 2.0 }"),
    ("rollback", "rollback: { run: ./undo.sh }"),
    ("approval", "approval: { approvers: [\"role:oncall\"], min_approvals: 1 }"),
    ("gate", "gate: { use: NAME }"),
    ("http", "http: { url: \"https://…\", method: GET, expect_status: [200] }"),
    ("check", "check: { run: test -f build.tar }"),
    ("review", "review: { every: 90d, last_reviewed: 2026-01-31 }"),
    ("validate", "validate: [ { output_matches: \"^OK$\" } ]"),
    ("steps", "steps: with one `- id: …` entry per step"),
    ("prerequisites", "prerequisites: with one `- description: …` entry each"),
    ("parameters", "parameters: { name: { type: string } }"),
    ("env", "env: { NAME: value }"),
    ("tags", "tags: [web, prod]"),
];

/// Adds what was meant to a diagnostic about a value of the wrong shape, from the key on
/// its line; and to a syntax error, that indentation is the usual cause.
fn hint_shape(d: &mut Diagnostic, text: &str) {
    let Some(pos) = d.pos else { return };
    let Some(line) = text.lines().nth((pos.line as usize).saturating_sub(1)) else { return };
    let key = line.trim_start_matches([' ', '-']).split(':').next().unwrap_or("").trim();
    if d.message.starts_with("expected a ") || d.message.starts_with("invalid type") {
        if let Some((_, shape)) = SHAPES.iter().find(|(k, _)| *k == key) {
            d.message.push_str(&format!(" (write `{shape}`)"));
        }
    } else if (d.message.contains("did not find expected") || d.message.contains("mapping values are not allowed"))
        && !d.message.contains("(hint:")
    {
        d.message.push_str(
            " (check the indentation: the keys of one mapping line up, and a step's keys line up under its \
             first one, after `- `)",
        );
    }
}

/// The key a diagnostic suggests (`did you mean `X`?`).
pub(crate) fn suggestion(message: &str) -> Option<String> {
    let rest = message.split("(did you mean `").nth(1)?;
    Some(rest.split('`').next()?.to_string())
}
