//! Reading on after a problem: a runbook with four typos gets four messages in one
//! pass, not one per round. A problem of a key or a value is blanked out (spaces, so
//! every other position stays) and the document read again; a syntax error ends it.

use crate::diagnostic::Diagnostic;
use crate::document::RawRunbook;
use crate::parse::runbook_diagnostic;

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
            let mut d = runbook_diagnostic(&e, source);
            hint_shape(&mut d, source, true);
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
    // Where the last problem was blanked out inside a flow collection, if it was.
    let mut in_flow: Option<crate::Pos> = None;
    for _ in 0..MAX_RECOVERIES {
        let e = match serde_saphyr::from_str_with_options::<RawRunbook>(&text, options.clone()) {
            Ok(raw) => return (Some(raw), diags),
            Err(e) => e,
        };
        let mut d = runbook_diagnostic(&e, &text);
        hint_shape(&mut d, &text, is_syntax(&e));
        // After a key was blanked out, only a later problem of a key or a value is a
        // problem of its own: one before it, a missing field or an early end is what
        // blanking did (a parent left empty), and is not reported. (Later means on a later
        // line, or further on the same one after a blank inside a flow collection.)
        if let Some(last) = diags.last() {
            let later = match (d.pos, last.pos) {
                (Some(now), Some(before)) if in_flow.is_some() => (now.line, now.column) > (before.line, before.column),
                (Some(now), Some(before)) => now.line > before.line,
                _ => false,
            };
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
                // A collection left without a key it needs: blank out its whole entry, as
                // for block style, and read on.
                match in_flow.take() {
                    Some(pos) if blank_out(&mut text, pos, false).is_some() => continue,
                    _ => return (None, diags),
                }
            }
        }
        // A syntax error ends the reading: what follows it cannot be trusted.
        let syntax = is_syntax(&e);
        let at = d.pos;
        if matches!(e, E::SerdeMissingField { .. }) {
            d.pos = d.pos.map(|p| owner(&text, p));
        }
        diags.push(d);
        // A value of the wrong kind that a right one can stand in for (a misspelt `type`,
        // a duration in words) is replaced, not blanked: its mapping keeps what it needs,
        // and the problems after it are still found.
        if let Some(pos) = at.filter(|_| !syntax)
            && let Some(stand_in) = stand_in(&e)
            && replace_value(&mut text, pos, stand_in)
        {
            in_flow = Some(pos);
            continue;
        }
        match at.filter(|_| !syntax).map(|pos| (pos, blank_out(&mut text, pos, true))) {
            Some((pos, Some(Blanked::FlowEntry))) => in_flow = Some(pos),
            Some((_, Some(Blanked::Entry))) => in_flow = None,
            _ => return (None, diags),
        }
    }
    (None, diags)
}

/// A valid value to put in place of the one `e` is about: one of an enumeration's values
/// (the shortest), or a duration.
fn stand_in(e: &serde_saphyr::Error) -> Option<&'static str> {
    use serde_saphyr::Error as E;
    match e {
        E::SerdeUnknownVariant { expected, .. } => expected.iter().copied().min_by_key(|v| v.len()),
        _ if e.to_string().contains("invalid duration") => Some("1s"),
        _ => None,
    }
}

/// Writes `value` over the plain scalar at `pos` (padded with spaces, so that every other
/// position stays), if it fits there; `false` for a quoted scalar or one too short.
fn replace_value(text: &mut String, pos: crate::Pos, value: &str) -> bool {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let Some(line) = (pos.line as usize).checked_sub(1).and_then(|i| lines.get_mut(i)) else { return false };
    let chars: Vec<char> = line.chars().collect();
    let (from, len) = ((pos.column as usize).saturating_sub(1), pos.len as usize);
    let Some(old) = chars.get(from..from + len) else { return false };
    let quoted =
        old.first().is_some_and(|c| matches!(c, '"' | '\'')) || from > 0 && matches!(chars[from - 1], '"' | '\'');
    if quoted || value.chars().count() > len || len == 0 {
        return false;
    }
    let padded = format!("{value}{}", " ".repeat(len - value.chars().count()));
    *line = chars[..from].iter().chain(padded.chars().collect::<Vec<_>>().iter()).chain(&chars[from + len..]).collect();
    *text = lines.join("\n");
    true
}

/// The key or list item that owns the mapping holding `pos` (where a missing field is
/// missing: `metadata:`, a step's `- id: …`), found as the nearest line above that starts
/// further left; `pos` itself when there is none.
fn owner(text: &str, pos: crate::Pos) -> crate::Pos {
    let lines: Vec<&str> = text.lines().collect();
    let Some(here) = lines.get((pos.line as usize).saturating_sub(1)) else { return pos };
    // On a list item's own line (`- id: a`), the item is the owner.
    let col = (pos.column as usize).saturating_sub(1);
    if here.get(indent(here)..col).is_some_and(|before| before.trim_end().ends_with('-')) {
        let key = here[indent(here)..].trim_start_matches(['-', ' ']);
        return crate::Pos { column: (here.len() - key.len() + 1) as u32, len: key_len(key), ..pos };
    }
    let found = (0..(pos.line as usize).saturating_sub(1)).rev().find(|&i| {
        let l = lines[i];
        !l.trim().is_empty() && !l.trim_start().starts_with('#') && indent(l) < col
    });
    match found {
        Some(i) => {
            let l = lines[i];
            let key = l[indent(l)..].trim_start_matches(['-', ' ']);
            crate::Pos { line: i as u32 + 1, column: (l.len() - key.len() + 1) as u32, len: key_len(key) }
        }
        None => pos,
    }
}

/// How many spaces a line starts with.
pub(crate) fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The length in characters of the key a line starts with (`metadata` of `metadata:`).
fn key_len(key: &str) -> u32 {
    key.split(':').next().unwrap_or(key).trim_end().chars().count().max(1) as u32
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

/// What [`blank_out`] replaced with spaces.
enum Blanked {
    /// The entry of the line, and the lines nested under it.
    Entry,
    /// One entry of a flow collection on the line.
    FlowEntry,
}

/// Replaces the entry on the line of `pos` (its key and value; a list item's `- `
/// stays) and the lines nested under it with spaces, keeping every other position; or,
/// with `flow` and `pos` inside a flow collection (`- { id: x, sleep: 5x }`), that
/// entry of the collection only, so the rest of it is still read. `None` when there is
/// nothing left to blank out there.
fn blank_out(text: &mut String, pos: crate::Pos, flow: bool) -> Option<Blanked> {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let idx = (pos.line as usize).checked_sub(1).filter(|&i| i < lines.len())?;
    let line = lines[idx].clone();
    if flow && let Some(mut blanked) = blank_flow_entry(&line, (pos.column as usize).saturating_sub(1)) {
        // A collection left empty inside another goes too (`[{ bad: 1 }]` reads as `[]`),
        // as a block-style item does, rather than as an empty entry.
        while let Some(again) =
            emptied(&blanked, (pos.column as usize).saturating_sub(1)).and_then(|open| blank_flow_entry(&blanked, open))
        {
            blanked = again;
        }
        lines[idx] = blanked;
        *text = lines.join("\n");
        return Some(Blanked::FlowEntry);
    }
    // Where the entry starts: after the indentation and any `- ` of a list item.
    let start = line.len() - line.trim_start_matches([' ', '-']).len();
    if line[start..].trim().is_empty() {
        return None;
    }
    let spaces = |n: usize| " ".repeat(n);
    lines[idx] = format!("{}{}", &line[..start], spaces(line[start..].chars().count()));
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
    Some(Blanked::Entry)
}

/// Where the flow collection around character `at` of `line` opens, when it holds
/// nothing but spaces and is an entry of another flow collection.
fn emptied(line: &str, at: usize) -> Option<usize> {
    let chars: Vec<char> = line.chars().collect();
    let mut open: Vec<usize> = Vec::new();
    let mut quote = None;
    for (i, &c) in chars.iter().enumerate().take(at.min(chars.len())) {
        if quoted(&mut quote, c, true) {
            continue;
        }
        match c {
            '{' | '[' => open.push(i),
            '}' | ']' => {
                open.pop();
            }
            _ => {}
        }
    }
    let (&inner, outer) = open.split_last()?;
    let close = chars.iter().skip(inner + 1).position(|c| !c.is_whitespace()).map(|p| inner + 1 + p)?;
    (!outer.is_empty() && matches!(chars[close], '}' | ']')).then_some(inner)
}

/// `line` with the entry of a flow collection at character `at` (`key: value` or an
/// item, with one comma beside it) replaced by spaces; `None` when `at` is not inside a
/// flow collection, or the entry does not end on this line.
fn blank_flow_entry(line: &str, at: usize) -> Option<String> {
    let chars: Vec<char> = line.chars().collect();
    if at >= chars.len() {
        return None;
    }
    // Where each open collection's current entry starts, innermost last.
    let mut starts: Vec<usize> = Vec::new();
    let mut quote = None;
    for (i, &c) in chars.iter().enumerate().take(at) {
        if quoted(&mut quote, c, true) {
            continue;
        }
        match c {
            '#' if i > 0 && chars[i - 1] == ' ' => return None,
            '{' | '[' => starts.push(i + 1),
            '}' | ']' => {
                starts.pop();
            }
            ',' => *starts.last_mut()? = i + 1,
            _ => {}
        }
    }
    let start = *starts.last()?;
    let mut depth = 0usize;
    let mut end = None;
    for (i, &c) in chars.iter().enumerate().skip(at) {
        if quoted(&mut quote, c, true) {
            continue;
        }
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' if depth > 0 => depth -= 1,
            ',' if depth > 0 => {}
            '}' | ']' | ',' => {
                end = Some((i, c == ','));
                break;
            }
            _ => {}
        }
    }
    let (end, comma) = end?;
    // The comma after the entry goes with it; for the last entry, the comma before it.
    let (from, to) = match (comma, chars[..start].last()) {
        (true, _) => (start, end + 1),
        (false, Some(',')) => (start - 1, end),
        (false, _) => (start, end),
    };
    let mut out: String = chars[..from].iter().collect();
    out.push_str(&" ".repeat(to - from));
    out.extend(&chars[to..]);
    Some(out)
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
/// its line; and to a syntax error, a `[` or `{` left open before it, or else that
/// indentation is the usual cause.
fn hint_shape(d: &mut Diagnostic, text: &str, syntax: bool) {
    let Some(pos) = d.pos else { return };
    if syntax
        && !d.message.contains("(hint:")
        && let Some((line, column, open)) = unclosed_flow(text, pos)
    {
        let close = if open == '[' { ']' } else { '}' };
        d.message.push_str(&format!(" (hint: the `{open}` at line {line}, column {column} has no `{close}`)"));
        return;
    }
    let Some(line) = text.lines().nth((pos.line as usize).saturating_sub(1)) else { return };
    // The key the diagnostic points at (`{exit_code: "0"}` in a flow mapping), or else the
    // line's first.
    let at = line.char_indices().nth((pos.column as usize).saturating_sub(1)).map_or("", |(i, _)| &line[i..]);
    let pointed = at
        .split_once(':')
        .map(|(k, _)| k)
        .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    let key = pointed.unwrap_or_else(|| line.trim_start_matches([' ', '-']).split(':').next().unwrap_or("").trim());
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

/// Whether `c` belongs to a quoted scalar (its quotes too), following `quote`, the quote
/// open before it; a quote opens one only where `may_open`.
fn quoted(quote: &mut Option<char>, c: char, may_open: bool) -> bool {
    match *quote {
        Some(q) => {
            if c == q {
                *quote = None;
            }
            true
        }
        None if may_open && matches!(c, '"' | '\'') => {
            *quote = Some(c);
            true
        }
        None => false,
    }
}

/// The innermost flow collection (`[` or `{`, at its line and column) still open at
/// `pos`: one that starts a value (after `:`, `- `, `,` or another opener, or a line's
/// start), outside quotes and comments.
fn unclosed_flow(text: &str, pos: crate::Pos) -> Option<(usize, usize, char)> {
    let mut open: Vec<(usize, usize, char)> = Vec::new();
    for (n, line) in text.lines().enumerate().take(pos.line as usize) {
        let mut quote = None;
        let mut prev = None; // the character before, on this line
        let mut before = None; // the last one that is not a space
        for (i, c) in line.chars().enumerate() {
            if n + 1 == pos.line as usize && i + 1 >= pos.column as usize {
                break;
            }
            let starts_value = !open.is_empty() || matches!(before, None | Some(':' | '-' | ',' | '[' | '{'));
            if !quoted(&mut quote, c, starts_value) {
                match c {
                    '#' if matches!(prev, None | Some(' ' | '\t')) => break,
                    '[' | '{' if starts_value => open.push((n + 1, i + 1, c)),
                    ']' | '}' if !open.is_empty() => {
                        open.pop();
                    }
                    _ => {}
                }
            }
            prev = Some(c);
            if c != ' ' {
                before = Some(c);
            }
        }
    }
    open.pop()
}

/// The key a diagnostic suggests (`did you mean `X`?`).
pub(crate) fn suggestion(message: &str) -> Option<String> {
    let rest = message.split("(did you mean `").nth(1)?;
    Some(rest.split('`').next()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::blank_flow_entry;

    #[test]
    fn an_unclosed_flow_collection_is_found_before_a_syntax_error() {
        let at = |line, column| crate::Pos { line, column, len: 1 };
        let text = "a:\n  tags: [web, db\nspec:\n";
        assert_eq!(super::unclosed_flow(text, at(3, 5)), Some((2, 9, '[')));
        let text = "a: { b: [1, 2], c: \"[\" # [\n  d: 1\ne: f: g\n";
        assert_eq!(super::unclosed_flow(text, at(3, 5)), Some((1, 4, '{')), "not what is in strings or comments");
        let text = "a: [1]\nrun: echo [x\nb: c: d\n";
        assert_eq!(super::unclosed_flow(text, at(3, 5)), None, "nor in plain text");
    }

    #[test]
    fn a_flow_entry_is_blanked_with_one_comma() {
        let at = |line: &str, word: &str| blank_flow_entry(line, line.find(word).unwrap());
        let line = "    - { id: x, sleep: 10 minutes }";
        assert_eq!(at(line, "10").as_deref(), Some("    - { id: x                    }"));
        let line = "    - { sleep: 5x, id: y }";
        assert_eq!(at(line, "5x").as_deref(), Some("    - {            id: y }"));
        let line = "    - { id: z, check: { run: \"a, b\", bad: 1 }, run: \"c\" }";
        assert_eq!(at(line, "bad").as_deref(), Some("    - { id: z, check: { run: \"a, b\"         }, run: \"c\" }"));
        assert_eq!(at("      sleep: 5x", "5x"), None, "not in a flow collection");
        assert_eq!(at("    - { id: x, run: [a,", "run"), None, "the entry goes on past the line");
        let line = "    - { run: [a, b], sleep: 5x }";
        assert_eq!(at(line, "run").as_deref(), Some("    - {              sleep: 5x }"));
    }

    #[test]
    fn a_flow_collection_left_empty_inside_another_is_blanked_too() {
        let original = "      validate: [{exit_code: \"0\"}, {output_contains: ok}]";
        let mut text = original.to_string();
        let pos = crate::Pos { line: 1, column: 19, len: 9 };
        assert!(super::blank_out(&mut text, pos, true).is_some());
        assert_eq!(text, format!("      validate: [{}{{output_contains: ok}}]", " ".repeat(18)));
        assert_eq!(text.len(), original.len(), "every other position kept");
        let mut text = "    - { id: x, check: { bad: 1 } }".to_string();
        let pos = crate::Pos { line: 1, column: 25, len: 3 };
        assert!(super::blank_out(&mut text, pos, true).is_some());
        assert_eq!(text, "    - { id: x                    }");
        let mut text = "  tags: {bad: 1}".to_string();
        let pos = crate::Pos { line: 1, column: 10, len: 3 };
        assert!(super::blank_out(&mut text, pos, true).is_some());
        assert_eq!(text, "  tags: {      }", "no collection around it: it stays");
    }
}
