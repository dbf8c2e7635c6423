//! Here-documents: their operators, where their bodies end, and where the two shells differ.

use super::{Frame, Pending, SHELLS_DIFFER, Scanner, TAG_AS_DELIMITER, without_tags};

impl Scanner<'_> {
    pub(super) fn start_heredoc(&mut self) {
        if matches!(self.top(), Frame::Command(_)) && !self.pending.is_empty() {
            let p = self.pending.remove(0);
            self.stack.push(Frame::Heredoc { delimiter: p.delimiter, strip_tabs: p.strip_tabs, literal: p.literal });
        }
    }

    /// `<<WORD` or `<<-WORD` at `self.i`: reads the delimiter (quoted parts make the body
    /// literal) and moves past it.
    pub(super) fn heredoc_operator(&mut self) -> Option<Pending> {
        self.i += 2;
        let strip_tabs = self.at(b"-");
        if strip_tabs {
            self.i += 1;
        }
        while self.i < self.b.len() && (self.b[self.i] == b' ' || self.b[self.i] == b'\t') {
            self.i += 1;
        }
        if self.at(b"{{") || self.at(b"{%") || self.at(b"{#") {
            self.lose(TAG_AS_DELIMITER);
            return None;
        }
        let mut delimiter: Vec<u8> = Vec::new();
        let mut literal = false;
        let mut quote: Option<u8> = None;
        while self.i < self.b.len() {
            let c = self.b[self.i];
            if c == b'{' && matches!(self.b.get(self.i + 1), Some(b'{' | b'%' | b'#')) {
                self.lose(TAG_AS_DELIMITER);
                break;
            }
            // bash reads `$'…'` (decoding its escapes) and `$"…"` in a delimiter as quotes,
            // dash as a `$` and a quote.
            if quote.is_none() && c == b'$' && matches!(self.b.get(self.i + 1), Some(b'\'' | b'"')) {
                self.lose(SHELLS_DIFFER);
            }
            match (quote, c) {
                (Some(q), _) if c == q => quote = None,
                (Some(_), _) => delimiter.push(c),
                (None, b'\'' | b'"') => {
                    quote = Some(c);
                    literal = true;
                }
                (None, b'\\') => {
                    literal = true;
                    self.i += 1;
                    if let Some(&n) = self.b.get(self.i) {
                        delimiter.push(n);
                    }
                }
                (None, b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')') => break,
                (None, _) => delimiter.push(c),
            }
            self.i += 1;
        }
        let delimiter = String::from_utf8_lossy(&delimiter).into_owned();
        let depth = self.stack.len();
        (!delimiter.is_empty()).then_some(Pending { delimiter, strip_tabs, literal, depth })
    }

    /// Whether the line starting at `self.i` is the delimiter line; `None` if template
    /// tags on it decide (without its `{% %}` and `{# #}` tags it would be).
    pub(super) fn delimiter_line(&self, delimiter: &str, strip_tabs: bool) -> Option<bool> {
        let rest = self.text(self.i, self.b.len());
        let line = rest.split('\n').next().unwrap_or_default();
        let line = if strip_tabs { line.trim_start_matches('\t') } else { line };
        if line == delimiter {
            return Some(true);
        }
        // bash also ends one inside `$( )` at `EOF)`; dash does not.
        if line.strip_prefix(delimiter).is_some_and(|rest| rest.starts_with(')')) {
            return None;
        }
        let plain = without_tags(line, None);
        let plain = if strip_tabs { plain.trim_start_matches('\t') } else { plain.as_str() };
        if plain != line && plain.starts_with(delimiter) { None } else { Some(false) }
    }

    pub(super) fn skip_line(&mut self) {
        while self.i < self.b.len() && self.b[self.i] != b'\n' {
            self.i += 1;
        }
        if self.i < self.b.len() {
            self.newline();
            self.i += 1;
        }
    }
}
