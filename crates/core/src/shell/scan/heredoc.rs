//! Here-documents: their operators, where their bodies end, and where the two shells differ.

use super::{Frame, Pending, SHELLS_DIFFER, Scanner, TAG_AS_DELIMITER, without_tags};

/// Commands that read their standard input as code when given no script (or remote
/// command) to run instead.
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "ash", "mksh"];
const INTERPRETERS: &[&str] = &["python", "python2", "python3", "perl", "ruby", "node", "php", "lua"];
/// ssh's options that take an argument (`-i KEY`, `-p PORT`…).
const SSH_ARGUMENTS: &str = "BbcDEeFIiJLlmOopQRSWw";

impl Scanner<'_> {
    pub(super) fn start_heredoc(&mut self) {
        if matches!(self.top(), Frame::Command(_)) && !self.pending.is_empty() {
            let p = self.pending.remove(0);
            let (delimiter, strip_tabs, literal, code) = (p.delimiter, p.strip_tabs, p.literal, p.code);
            self.stack.push(Frame::Heredoc { delimiter, strip_tabs, literal, code });
        }
    }

    /// `<<WORD` or `<<-WORD` at `self.i`: reads the delimiter (quoted parts make the body
    /// literal) and moves past it.
    pub(super) fn heredoc_operator(&mut self) -> Option<Pending> {
        let code = self.feeds_code(self.i);
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
        (!delimiter.is_empty()).then_some(Pending { delimiter, strip_tabs, literal, code, depth })
    }

    /// Whether what a here-document or here-string at `at` (its operator) feeds is read as
    /// code: by the command it belongs to (`bash -s <<EOF`, `sudo su - app <<EOF`, `ssh
    /// HOST <<EOF`, `python3 - <<EOF`), or by a command its output is piped to (`cat
    /// <<EOF | sh`).
    pub(super) fn feeds_code(&self, at: usize) -> bool {
        let start = self.src[..at].rfind(['\n', ';', '&', '|', '(']).map_or(0, |p| p + 1);
        let end = self.src[at..].find('\n').map_or(self.src.len(), |p| at + p);
        let words = |text: &str| -> Vec<String> {
            let text = without_tags(text, Some("x"));
            text.split_whitespace().map(|w| w.trim_matches(['"', '\'']).to_string()).collect()
        };
        if reads_code(&words(self.text(start, at))) {
            return true;
        }
        // The first command of a pipe after the operator, on its line.
        let after = self.text(at, end);
        let piped = after.split_once('|').filter(|(before, _)| !before.ends_with('|') && !before.contains(['&', ';']));
        piped.is_some_and(|(_, rest)| reads_code(&words(rest.split(['|', ';', '&']).next().unwrap_or_default())))
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

/// Whether a simple command (its words, quotes removed) reads its standard input as code.
fn reads_code(words: &[String]) -> bool {
    let name = |w: &str| w.rsplit('/').next().unwrap_or(w).to_string();
    let Some(at) = words.iter().position(|w| {
        let n = name(w);
        SHELLS.contains(&n.as_str()) || INTERPRETERS.contains(&n.as_str()) || n == "su" || n == "ssh"
    }) else {
        return false;
    };
    let command = name(&words[at]);
    let rest = &words[at + 1..];
    match command.as_str() {
        // A login shell reads the commands, unless given one with -c.
        "su" => !rest.iter().any(|w| w == "-c" || w == "--command"),
        "ssh" => {
            // Options (some with an argument), the host, then the remote command if any.
            let mut i = 0;
            while i < rest.len() && rest[i].starts_with('-') {
                let takes = rest[i].len() == 2 && SSH_ARGUMENTS.contains(&rest[i][1..]);
                i += 1 + usize::from(takes);
            }
            let remote = rest.get(i + 1..).unwrap_or_default();
            remote.is_empty() || reads_code(remote)
        }
        _ if SHELLS.contains(&command.as_str()) => {
            // `-s`: the words after are arguments; `-c`: the code is a word; a first word that
            // is no option is a script file, which reads the input as data.
            let mut words = rest.iter();
            while let Some(w) = words.next() {
                if w == "--" || w == "-" {
                    return true;
                }
                let Some(flags) = w.strip_prefix('-').or_else(|| w.strip_prefix('+')) else { return false };
                if flags.starts_with('-') {
                    continue; // --norc, --login…
                }
                if flags.contains('s') {
                    return true;
                }
                if flags.contains('c') {
                    return false;
                }
                if flags.ends_with(['o', 'O']) {
                    words.next(); // -o pipefail
                }
            }
            true
        }
        // An interpreter with no script (or `-`): the input is the program.
        _ => match rest.iter().find(|w| !w.starts_with('-') || *w == "-") {
            Some(w) => w == "-",
            None => !rest.iter().any(|w| ["-c", "-e", "-E", "-m", "-r"].contains(&w.as_str())),
        },
    }
}
