//! Problems found in a document, with the place they were found and a source snippet.

use std::fmt;

/// A position in a source text: 1-based line and column, plus the byte range when known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
    /// Length of the offending text in characters (at least 1 when rendered).
    pub len: u32,
}

impl Pos {
    pub fn from_location(loc: &serde_saphyr::Location) -> Option<Pos> {
        if loc.line() == 0 {
            return None;
        }
        Some(Pos {
            line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
            column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
            len: u32::try_from(loc.span().len()).unwrap_or(1),
        })
    }
}

/// One problem in a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub pos: Option<Pos>,
    pub message: String,
}

impl Diagnostic {
    pub fn new(pos: Option<Pos>, message: impl Into<String>) -> Diagnostic {
        Diagnostic { pos, message: message.into() }
    }

    pub fn at(loc: &serde_saphyr::Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Pos::from_location(loc), message)
    }

    /// A file's bytes as text, or where the first byte that is not UTF-8 is (every file
    /// opsbook reads is UTF-8).
    pub fn utf8(bytes: Vec<u8>) -> Result<String, Diagnostic> {
        String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let valid = std::str::from_utf8(valid).unwrap_or_default();
            let line = valid.matches('\n').count() + 1;
            let column = valid.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            let byte = e.as_bytes()[valid.len()];
            let pos = Pos { line: line as u32, column: column as u32, len: 1 };
            Diagnostic::new(Some(pos), format!("not valid UTF-8 (byte 0x{byte:02X}): save the file as UTF-8"))
        })
    }

    /// `path:line:col: message`, the first line of every rendered problem.
    pub fn headline(&self, path: &str) -> String {
        match self.pos {
            Some(p) => format!("{path}:{}:{}: {}", p.line, p.column, self.message),
            None => format!("{path}: {}", self.message),
        }
    }

    /// The headline followed by the offending source line with a caret underneath (at
    /// most [`SNIPPET`] characters of it).
    pub fn render(&self, path: &str, source: &str) -> String {
        let mut out = self.headline(path);
        let Some(pos) = self.pos else { return out };
        let Some(line) = source.lines().nth(pos.line.saturating_sub(1) as usize) else {
            return out;
        };
        let gutter = pos.line.to_string();
        let pad = " ".repeat(gutter.len());
        let col = pos.column.saturating_sub(1) as usize;
        let line_chars = line.chars().count();
        // A long line (minified, generated) is shown around the place only, marked `…`.
        let (from, to) = if line_chars <= SNIPPET {
            (0, line_chars)
        } else {
            let from = col.saturating_sub(SNIPPET / 3).min(line_chars - SNIPPET);
            (from, from + SNIPPET)
        };
        let shown: String = line.chars().skip(from).take(to - from).collect();
        let (before, after) = (if from > 0 { "…" } else { "" }, if to < line_chars { "…" } else { "" });
        let width = (pos.len.max(1) as usize).min(to.saturating_sub(col).max(1));
        let lead: String = before
            .chars()
            .map(|_| ' ')
            .chain(line.chars().skip(from).take(col.saturating_sub(from)).map(|c| if c == '\t' { '\t' } else { ' ' }))
            .collect();
        out.push_str(&format!("\n{pad} |\n{gutter} | {before}{shown}{after}\n{pad} | {lead}{}", "^".repeat(width)));
        out
    }
}

/// The most of a source line a rendered problem shows.
pub const SNIPPET: usize = 160;

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "{}:{}: {}", p.line, p.column, self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Levenshtein distance, for "did you mean" hints.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate to `word`, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1) + 1;
    let close = candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        // A "match" that changes every character of the word is no hint.
        .filter(|(d, _)| *d <= limit && *d < word.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c);
    // Else a word cut short, or all but its last letter a beginning (`prod` for
    // `production`, `retry` for `retries`).
    let n = word.chars().count();
    let common = |c: &str| word.chars().zip(c.chars()).take_while(|(a, b)| a == b).count();
    close.or_else(|| {
        candidates
            .iter()
            .filter(|c| n >= 3 && common(c) >= n.saturating_sub(1).max(3) && c.chars().count() > n)
            .max_by_key(|c| (common(c), std::cmp::Reverse(c.len())))
            .copied()
    })
}

/// Why something failed, in words a person can act on: the innermost cause of an error
/// ("Connection refused (os error 111)") rather than the outermost ("error sending request").
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_a_close_word_or_one_cut_short() {
        assert_eq!(did_you_mean("nmae", &["name", "type"]), Some("name"));
        assert_eq!(did_you_mean("prod", &["staging", "production"]), Some("production"));
        assert_eq!(did_you_mean("retry", &["retries", "timeout"]), Some("retries"));
        assert_eq!(did_you_mean("onee", &["one", "two"]), Some("one"));
        assert_eq!(did_you_mean("xyz", &["production"]), None);
        assert_eq!(did_you_mean("pr", &["production"]), None, "too short to say");
    }

    #[test]
    fn renders_snippet_with_caret() {
        let d = Diagnostic::new(Some(Pos { line: 2, column: 3, len: 4 }), "unknown field `nmae`");
        assert_eq!(
            d.render("rb.yaml", "metadata:\n  nmae: x\n"),
            "rb.yaml:2:3: unknown field `nmae`\n  |\n2 |   nmae: x\n  |   ^^^^"
        );
    }

    #[test]
    fn a_long_line_is_shown_around_the_place() {
        let line = format!("x: {}BAD{}", "a".repeat(500), "b".repeat(500));
        let d = Diagnostic::new(Some(Pos { line: 1, column: 504, len: 3 }), "bad");
        let shown = d.render("f.yaml", &line);
        let lines: Vec<&str> = shown.lines().collect();
        assert!(lines[2].starts_with("1 | …aaa") && lines[2].ends_with("bbb…"), "{shown}");
        assert_eq!(lines[2].chars().count(), "1 | ".len() + SNIPPET + 2);
        // In characters, as a terminal shows them (`…` is one).
        let caret = lines[3].chars().position(|c| c == '^').unwrap();
        assert_eq!(lines[2].chars().skip(caret).take(3).collect::<String>(), "BAD", "{shown}");
    }

    #[test]
    fn suggests() {
        assert_eq!(did_you_mean("nmae", &["name", "title"]), Some("name"));
        assert_eq!(did_you_mean("timout", &["timeout", "retries"]), Some("timeout"));
        assert_eq!(did_you_mean("zzzzzz", &["name", "title"]), None);
        assert_eq!(did_you_mean("x", &["pw", "who"]), None);
    }
}
