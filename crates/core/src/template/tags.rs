//! Template tags as minijinja reads them, for the checks done before a template renders:
//! where a tag ends (a `}}` in a string literal does not end it), and which tags run.

/// Where `close` starts in `text` (a tag's text after its opening); `None` when the tag
/// is not closed. With `code`, as minijinja's lexer reads a tag: outside string literals,
/// and not inside brackets (`{{ {'a': {'b': 1}} | tojson }}` ends at its last `}}`).
pub(crate) fn close_at(text: &str, close: &str, code: bool) -> Option<usize> {
    if !code {
        return text.find(close);
    }
    let mut depth = 0isize;
    for (i, c) in code_chars(text) {
        if depth <= 0 && text[i..].starts_with(close) {
            return Some(i);
        }
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The characters of a tag's text outside its string literals (`'…'`, `"…"`, with
/// backslash escapes), with their byte offsets; the quotes themselves are left out.
pub(crate) fn code_chars(text: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let mut quote = None;
    let mut chars = text.char_indices();
    std::iter::from_fn(move || {
        while let Some((i, c)) = chars.next() {
            match (quote, c) {
                (Some(_), '\\') => {
                    chars.next();
                }
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, _) => return Some((i, c)),
            }
        }
        None
    })
}

/// The text of each `{{ }}` and `{% %}` tag of `source`, in order: comments (`{# #}`)
/// and `{% raw %}` blocks are text, and run nothing.
pub(crate) fn tags(source: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(open) = ["{{", "{%", "{#"].iter().filter_map(|t| rest.find(t)).min() {
        let inner = &rest[open + 2..];
        let close = match &rest[open..open + 2] {
            "{{" => "}}",
            "{%" => "%}",
            _ => "#}",
        };
        let end = close_at(inner, close, close != "#}").unwrap_or(inner.len());
        let after = &inner[(end + 2).min(inner.len())..];
        rest = after;
        match close {
            "#}" => {}
            "%}" if words(&inner[..end]) == "raw" => rest = raw_end(after),
            _ => found.push(&inner[..end]),
        }
    }
    found
}

/// A `{% %}` tag's text without its whitespace control.
fn words(tag: &str) -> &str {
    tag.trim_matches(|c: char| c.is_whitespace() || "-+~".contains(c))
}

/// What follows the `{% endraw %}` that ends a raw block `text` is in (nothing, if none).
fn raw_end(text: &str) -> &str {
    let mut rest = text;
    while let Some(open) = rest.find("{%") {
        let inner = &rest[open + 2..];
        let Some(close) = inner.find("%}") else { return "" };
        if words(&inner[..close]) == "endraw" {
            return &inner[close + 2..];
        }
        rest = &inner[close + 2..];
    }
    ""
}
