//! Here-documents: their operators, where their bodies end, and where the two shells differ.

use super::{Frame, Kind, Pending, SHELLS_DIFFER, Scanner, TAG_AS_DELIMITER, without_tags};

/// Commands that read their standard input as code when given no script (or remote
/// command) to run instead.
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "ash", "mksh"];
/// Commands that start a shell (or run commands) reading the input: `su`, `sudo -i`…
const READERS: &[&str] = &["su", "ssh", "sudo", "doas", "at", "batch", "source", "."];

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
            if self.at_tag(self.i) {
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
    /// HOST <<EOF`, `python3 - <<EOF`), by a command its output is piped to (`cat <<EOF |
    /// tee f | sh`), or by the command around the `$( )` it is in (`eval "$(cat <<EOF`).
    pub(super) fn feeds_code(&self, at: usize) -> bool {
        let around = self.stack[..self.stack.len().saturating_sub(1)].iter();
        if around.filter_map(|f| if let Frame::Command(c) = f { Some(c.kind) } else { None }).any(|k| k == Kind::Code) {
            return true;
        }
        // The logical line (continued lines joined), template tags taken out.
        let mut start = self.src[..at].rfind('\n').map_or(0, |p| p + 1);
        while start > 1 && self.src[..start - 1].ends_with('\\') {
            start = self.src[..start - 2].rfind('\n').map_or(0, |p| p + 1);
        }
        let end = self.src[at..].find('\n').map_or(self.src.len(), |p| at + p);
        let before = without_tags(self.text(start, at), Some("x")).replace("\\\n", " ");
        let after = without_tags(self.text(at, end), Some("x"));
        let own = commands(&before).pop().unwrap_or_default();
        if reads_code(&own) {
            return true;
        }
        // The commands its output is piped to, on its line.
        let piped = pipeline_after(&after);
        piped.iter().any(|c| reads_code(c))
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

/// The simple commands of a line, in order: their words (quotes taken off), without
/// redirections. `&` of a redirection (`2>&1`, `&>`) separates nothing.
fn commands(line: &str) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = line.chars().peekable();
    let mut redirect = false;
    let end_word = |word: &mut String, out: &mut Vec<Vec<String>>, redirect: &mut bool| {
        if !word.is_empty() {
            if !std::mem::take(redirect) {
                out.last_mut().expect("one at least").push(std::mem::take(word));
            }
            word.clear();
        }
    };
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => word.push(c),
            (None, '\'' | '"') => quote = Some(c),
            (None, '\\') => word.extend(chars.next()),
            (None, ' ' | '\t') => end_word(&mut word, &mut out, &mut redirect),
            (None, '<' | '>') => {
                // `2>`, `>>`, `&>`, `<`: the next word is a file, not an argument.
                if word.chars().all(|c| c.is_ascii_digit()) {
                    word.clear();
                } else {
                    end_word(&mut word, &mut out, &mut redirect);
                }
                while chars.next_if(|&n| matches!(n, '>' | '<' | '&')).is_some() {}
                redirect = true;
            }
            (None, '&') if chars.peek() == Some(&'>') => {}
            (None, ';' | '|' | '&' | '(' | ')') => {
                end_word(&mut word, &mut out, &mut redirect);
                redirect = false;
                out.push(Vec::new());
            }
            (None, _) => word.push(c),
        }
    }
    end_word(&mut word, &mut out, &mut redirect);
    out.retain(|c| !c.is_empty());
    out
}

/// The commands a line pipes its first command's output to (`| tee f | sh`), up to the
/// end of that pipeline.
fn pipeline_after(line: &str) -> Vec<Vec<String>> {
    let mut rest = line;
    let mut piped = Vec::new();
    while let Some(bar) = rest.find(['|', ';', '&']) {
        let (sep, tail) = (&rest[bar..], &rest[bar + 1..]);
        // `||`, `;`, `&&`, `&`: the pipeline ends; `|` and `|&` go on.
        if !sep.starts_with('|') || tail.starts_with('|') {
            break;
        }
        let tail = tail.strip_prefix('&').unwrap_or(tail);
        let next = tail.find(['|', ';', '&']).map_or(tail.len(), |p| p);
        piped.extend(commands(&tail[..next]));
        rest = &tail[next..];
    }
    piped
}

/// Whether a simple command (its words, quotes removed) reads its standard input as code.
fn reads_code(words: &[String]) -> bool {
    let name = |w: &str| super::words::basename(w).to_string();
    // A program, not a path under a directory of data (`secret/ssh`).
    let program = |w: &str| !w.contains('/') || w.starts_with('/') || w.starts_with('.');
    let interpreter = |n: &str| super::words::interpreter(n).is_some();
    let dynamic = |w: &str| w.starts_with('$');
    let Some(at) = words.iter().position(|w| {
        let n = name(w);
        (program(w) && (SHELLS.contains(&n.as_str()) || interpreter(&n) || READERS.contains(&n.as_str()))) || dynamic(w)
    }) else {
        return false;
    };
    let command = if dynamic(&words[at]) { "sh".to_string() } else { name(&words[at]) };
    let rest = &words[at + 1..];
    let from_stdin = |w: &str| matches!(w, "-" | "/dev/stdin" | "/dev/fd/0" | "/proc/self/fd/0");
    match command.as_str() {
        // A login shell reads the commands, unless given one with -c.
        "su" => !rest.iter().any(|w| w == "-c" || w == "--command"),
        // `sudo -i`, `sudo -s` with no command start a shell reading the input.
        "sudo" | "doas" => {
            // Options, some with an argument (`-u USER`, `-iu USER`), then the command.
            let (mut i, mut shell) = (0, false);
            while let Some(o) = rest.get(i).filter(|o| o.starts_with('-')) {
                let flags = o.strip_prefix('-').unwrap_or(o);
                shell |= o == "--login" || o == "--shell" || (!flags.starts_with('-') && flags.contains(['i', 's']));
                let takes =
                    !flags.starts_with('-') && flags.ends_with(['u', 'g', 'C', 'D', 'h', 'p', 'r', 't', 'U', 'T']);
                i += 1 + usize::from(takes);
            }
            let command = rest.get(i..).unwrap_or_default();
            (shell && command.is_empty()) || reads_code(command)
        }
        // `at` and `batch` read the commands to run later.
        "at" | "batch" => true,
        "source" | "." => rest.first().is_some_and(|w| from_stdin(w)),
        "ssh" => {
            // Options, the destination, options again, then the remote command if any.
            let mut ssh = super::ssh::Ssh::default();
            for (i, w) in rest.iter().enumerate() {
                ssh.word(Some(w), i);
            }
            ssh.remote().is_none_or(|i| reads_code(&rest[i..]))
        }
        _ if SHELLS.contains(&command.as_str()) => {
            // `-s`: the words after are arguments; `-c`: the code is a word; a first word
            // that is no option is a script file, which reads the input as data (unless it
            // is the input itself, `/dev/stdin`).
            let mut words = rest.iter();
            while let Some(w) = words.next() {
                if w == "--" || from_stdin(w) {
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
            Some(w) => from_stdin(w),
            None => !rest.iter().any(|w| ["-c", "-e", "-E", "-m", "-r"].contains(&w.as_str())),
        },
    }
}
