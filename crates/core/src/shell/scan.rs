//! The scanner behind [`super::interpolations`]: reads a script template as the shell
//! will read what it renders to (quotes, `$( )`, `${ }`, backquotes, comments,
//! here-documents, arithmetic, `case`, `[[ ]]`, the commands that evaluate their words),
//! skipping template tags, and gives each `{{ }}` its [`Context`].
//!
//! `{% if %}` and `{% for %}` blocks are followed: each branch is scanned from the state
//! where the block opened, and the branches must leave the shell in the same place. Where
//! they do not (a quote opened in one branch only), or where the template changes the
//! script's text around it (`{%-` trimming, a tag on a here-document's delimiter line),
//! the scanner cannot tell where later values land, and refuses them all.

use super::{Context, Heredoc, Interpolation, is_name};

mod blocks;
mod copy;
mod heredoc;
mod refusals;
mod ssh;
mod words;

use blocks::{Block, without_tags};
pub(super) use refusals::*;
pub use ssh::runs_as_command_line;

#[derive(Debug, Clone, PartialEq)]
enum Frame {
    /// Commands: the top level or inside `$( )`.
    Command(Cmd),
    Double,
    Single,
    AnsiC,
    Backquote,
    /// `${ … }`, with the depth of nested braces.
    Parameter(u32),
    Heredoc {
        delimiter: String,
        strip_tabs: bool,
        literal: bool,
        /// Read as code (by a shell or an interpreter).
        code: bool,
    },
    /// `$(( ))` and `(( ))` with the depth of plain parentheses, or a subscript or bash's
    /// `$[ ]` with the depth of brackets.
    Arithmetic {
        depth: u32,
        bracket: bool,
    },
    /// The words of `NAME=( … )`; an integer array's are arithmetic.
    Array {
        arithmetic: bool,
    },
    /// After `#`, to the end of the line.
    Comment,
}

/// Where a command list is: enough to know which `)` closes it, and what the current
/// simple command does with its words.
#[derive(Debug, Clone, PartialEq, Default)]
struct Cmd {
    /// Open plain parentheses (subshells, function definitions).
    depth: u32,
    /// Open `case … esac`.
    cases: u32,
    /// Reading a case pattern: its `)` ends it, and `esac` may come.
    pattern: bool,
    /// The next word is in command position (a command, reserved word or assignment).
    fresh: bool,
    kind: Kind,
    /// Where the current word began; `Some(usize::MAX)` if template logic built it.
    word: Option<usize>,
    /// Where the word that said what the command is began.
    command_word: Option<usize>,
    /// The next word is a redirection's target, not the command.
    target: bool,
    /// Template branches disagree on whether the next word is the command: it is read
    /// both ways, and the stricter reading counts.
    maybe_fresh: bool,
    /// `sh -c` and the like: the next word that is no option is code (`next_why`: why,
    /// when not as shell code)…
    code_next: bool,
    /// …but not the next word, an option's argument (`awk -F , PROGRAM`)…
    skip: bool,
    /// …which began here.
    argument: Option<usize>,
    next_why: Option<&'static str>,
    /// …and this is where it began.
    code: Option<usize>,
    /// A `[[ ]]` that compares numbers (`-eq`, `-lt`…).
    numeric: bool,
    /// The next redirection target is a here-string that a shell reads as code…
    code_target: bool,
    /// Why the word at `code` is code, when it is no `-c` argument (`AS_CODE`): a
    /// here-string a shell reads, an assignment to a prompt.
    code_why: Option<&'static str>,
    /// The redirection's target follows `>&` or `<&`…
    dup: bool,
    /// …and this is where it began.
    dup_word: Option<usize>,
    /// The roles of an `ssh` command's words.
    ssh: Box<ssh::Ssh>,
    /// The roles of an `scp` or `rsync` command's words.
    copy: Box<copy::Copy>,
}

/// What a simple command does with its words, where that matters for a value.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
enum Kind {
    #[default]
    Other,
    /// `let`: words are arithmetic.
    Arithmetic,
    /// `declare -i` and the like: words are arithmetic, and the names assigned are integers.
    DeclareInt,
    /// `declare`, `typeset`, `local`, `export`, `readonly`: a word before its `=` is a name.
    Declare,
    /// `unset`, `declare -n`: every word is a name.
    Names,
    /// `eval`, `trap`: words are code.
    Code,
    /// `sh`, `bash`…: the word after `-c` is code.
    Shell,
    /// `python3`, `perl`, `node`…: the word after one of these options is a program.
    Interpreter(&'static [&'static str]),
    /// `read`: words are names, except the arguments of its options.
    Read,
    /// The word after one of these options is a name (`printf -v`, `wait -p`).
    NameAfter(&'static [&'static str]),
    /// `[[ … ]]`: names after `-v`/`-R`, and the operands of `-eq`, `-lt`… are arithmetic.
    Test,
    /// `case WORD`, until `in`.
    Case,
    /// `function`: the next word is its name.
    Function,
    /// `coproc`: a name may come before the command.
    Coproc,
    /// `ssh`: options, the destination, then a remote command its shell reads again.
    Ssh,
    /// `awk`: the first word that is no option (nor an option's argument) is its program.
    Awk,
    /// `scp` or `rsync`: an operand may name a remote file (`host:path`), whose path a
    /// remote shell may read again.
    Copy { rsync: bool },
}

#[derive(Debug, Clone, PartialEq)]
struct Pending {
    delimiter: String,
    strip_tabs: bool,
    literal: bool,
    code: bool,
    /// How many frames were open at its operator.
    depth: usize,
}

pub(super) struct Scanner<'a> {
    b: &'a [u8],
    src: &'a str,
    i: usize,
    line: usize,
    nth: usize,
    stack: Vec<Frame>,
    pending: Vec<Pending>,
    blocks: Vec<Block>,
    out: Vec<Interpolation>,
    /// A `\` or `$` right before a tag at this offset, and why that is refused.
    glued: Option<(usize, &'static str)>,
    /// Why the rest of the script cannot be followed, once that happened.
    lost: Option<&'static str>,
    /// The end of the last template tag, the shell byte before the run of tags it ends,
    /// and whether a value was among them.
    tags: Option<(usize, Option<u8>, bool)>,
    /// Variables given the integer attribute (`declare -i n`).
    integers: Vec<String>,
    /// Variables assigned a value (`X={{ … }}`), with the value's place in `out`: if the
    /// shell later evaluates one as arithmetic (`$((X))`), only an integer may go in.
    assigned: Vec<(String, usize)>,
}

impl<'a> Scanner<'a> {
    pub(super) fn new(script: &'a str) -> Scanner<'a> {
        Scanner {
            b: script.as_bytes(),
            src: script,
            i: 0,
            line: 1,
            nth: 0,
            stack: vec![Frame::Command(Cmd { fresh: true, ..Cmd::default() })],
            pending: Vec::new(),
            blocks: Vec::new(),
            out: Vec::new(),
            glued: None,
            lost: None,
            tags: None,
            integers: Vec::new(),
            assigned: Vec::new(),
        }
    }

    fn top(&self) -> &Frame {
        self.stack.last().expect("the command frame is never popped")
    }

    fn at(&self, s: &[u8]) -> bool {
        self.b[self.i..].starts_with(s)
    }

    /// Text between two byte offsets, or nothing if they are not character boundaries.
    fn text(&self, from: usize, to: usize) -> &'a str {
        self.src.get(from..to).unwrap_or_default()
    }

    fn newline(&mut self) {
        self.line += 1;
        self.nth = 0;
    }

    fn lose(&mut self, why: &'static str) {
        self.lost.get_or_insert(why);
    }

    fn pop(&mut self) {
        if self.stack.len() > 1 {
            self.stack.pop();
        }
    }

    pub(super) fn run(mut self) -> Vec<Interpolation> {
        let mut raw = false;
        while self.i < self.b.len() {
            // Template tags are not shell text; `{{ }}` is where a value lands.
            if !raw && (self.at(b"{{") || self.at(b"{%") || self.at(b"{#")) {
                raw = self.tag();
                continue;
            }
            if raw && self.at(b"{%") && self.tag_is("endraw") {
                raw = self.tag();
                continue;
            }
            let c = self.b[self.i];
            if c == b'\n' {
                self.line_break();
                continue;
            }
            if (c.is_ascii_alphabetic() || c == b'_') && !self.i.checked_sub(1).is_some_and(|p| is_word_byte(self.b[p]))
            {
                self.identifier();
            }
            match self.top().clone() {
                Frame::Comment => {}
                Frame::Single => {
                    if c == b'\'' {
                        self.pop();
                    }
                }
                Frame::AnsiC => match c {
                    b'\\' if self.b.get(self.i + 1) == Some(&b'\'') => {
                        self.lose(ANSI_C_QUOTE);
                        self.i += 1;
                    }
                    b'\\' => self.escape_next(),
                    b'\'' => self.pop(),
                    _ => {}
                },
                Frame::Double => match c {
                    b'\\' => self.escape_next(),
                    b'"' => self.pop(),
                    _ => self.expansion(),
                },
                Frame::Heredoc { literal: true, .. } => {}
                Frame::Heredoc { literal: false, .. } => match c {
                    b'\\' => self.escape_next(),
                    _ => self.expansion(),
                },
                Frame::Backquote => match c {
                    b'\\' => self.escape_next(),
                    b'`' => self.pop(),
                    _ => self.quote_or_expansion(),
                },
                Frame::Parameter(depth) => match c {
                    b'}' if depth == 0 => self.pop(),
                    b'}' => self.set_depth(depth - 1),
                    b'{' => self.set_depth(depth + 1),
                    // `${a[…]}`: a subscript.
                    b'[' => self.stack.push(Frame::Arithmetic { depth: 0, bracket: true }),
                    b'\\' => self.escape_next(),
                    _ => self.quote_or_expansion(),
                },
                Frame::Command(cmd) => {
                    if self.command_byte(c, &cmd) {
                        continue;
                    }
                }
                Frame::Arithmetic { depth, bracket } => match c {
                    b'(' if !bracket => self.set_depth(depth + 1),
                    b'[' if bracket => self.set_depth(depth + 1),
                    b')' if !bracket && depth > 0 => self.set_depth(depth - 1),
                    b']' if bracket && depth > 0 => self.set_depth(depth - 1),
                    b')' if !bracket => self.pop(),
                    b']' if bracket => self.pop(),
                    b'\\' => self.escape_next(),
                    _ => self.quote_or_expansion(),
                },
                Frame::Array { .. } => match c {
                    b')' => self.pop(),
                    b'#' if b" \t\n(".contains(&self.b[self.i - 1]) => self.stack.push(Frame::Comment),
                    b'[' if b" \t(".contains(&self.b[self.i - 1]) => {
                        self.stack.push(Frame::Arithmetic { depth: 0, bracket: true });
                    }
                    b'\\' => self.escape_next(),
                    _ => self.quote_or_expansion(),
                },
            }
            self.i += 1;
        }
        self.out
    }

    /// One byte of a command list; `true` if it moved `self.i` itself.
    fn command_byte(&mut self, c: u8, cmd: &Cmd) -> bool {
        match c {
            // Inside `[[ ]]`, `&&`, `||` and parentheses group conditions.
            b'(' | b')' | b'&' | b'|' if cmd.kind == Kind::Test => self.command().word = None,
            // In a case pattern, `(` may open it, `|` separates alternatives, `)` ends it.
            b'(' | b'|' if cmd.pattern => {}
            b')' if cmd.pattern => {
                self.command().pattern = false;
                self.end_command();
            }
            b'(' if self.at(b"((") => {
                self.command().depth += 1;
                self.command().fresh = false;
                self.stack.push(Frame::Arithmetic { depth: 0, bracket: false });
                self.i += 2;
                return true;
            }
            // `NAME=( … )`: an array's words.
            b'(' if cmd.word.is_some() && self.b[self.i - 1] == b'=' => {
                let name = self.text(cmd.word.unwrap_or(self.i), self.i - 1).trim_end_matches('+');
                let arithmetic = cmd.kind == Kind::DeclareInt || self.integers.iter().any(|n| n == name);
                self.stack.push(Frame::Array { arithmetic });
            }
            b'(' => {
                self.end_command();
                self.command().depth += 1;
            }
            b')' if cmd.depth > 0 => {
                self.end_command();
                self.command().depth -= 1;
            }
            b')' => {
                self.pop();
                // dash gives a here-document opened inside a `$( )` that closes on its
                // line no body; bash reads the next lines as its body.
                if self.pending.iter().any(|p| p.depth > self.stack.len()) {
                    self.lose(SHELLS_DIFFER);
                }
            }
            b';' => {
                // `;;`, `;&` and `;;&` end a case item: a pattern comes next.
                if cmd.cases > 0 && matches!(self.b.get(self.i + 1), Some(b';' | b'&')) {
                    self.command().pattern = true;
                    self.i += 1 + usize::from(self.at(b";;&"));
                }
                self.end_command();
            }
            b'&' | b'|' => self.end_command(),
            b' ' | b'\t' => self.command().word = None,
            b'#' if self.starts_comment(cmd) => self.stack.push(Frame::Comment),
            b'<' if self.at(b"<<<") => {
                let code = self.feeds_code(self.i);
                self.command().target = true;
                self.command().code_target = code;
                self.i += 2;
            }
            b'<' if self.at(b"<<") => {
                if let Some(p) = self.heredoc_operator() {
                    self.pending.push(p);
                }
                return true;
            }
            // Redirections end a word; `>&` and `<&` do not end the command.
            b'<' | b'>' => {
                self.command().word = None;
                self.command().target = true;
                if self.b.get(self.i + 1) == Some(&b'&') {
                    self.command().dup = true;
                    self.i += 1;
                }
            }
            // A subscript: `a[…]=`, `declare a[…]`.
            b'[' if cmd.word.is_some_and(|w| is_name(self.text(w, self.i))) => {
                self.stack.push(Frame::Arithmetic { depth: 0, bracket: true });
            }
            b'\\' => {
                self.word_starts();
                self.escape_next();
            }
            _ => {
                self.word_starts();
                self.quote_or_expansion();
            }
        }
        false
    }

    /// Whether a `#` at `self.i` starts a comment: at the start of a word, judged by the
    /// shell text before it (template tags are no text; a value is at least `''`).
    fn starts_comment(&self, cmd: &Cmd) -> bool {
        let before = match self.tags {
            Some((end, before, value)) if end == self.i => {
                if value {
                    return false;
                }
                before
            }
            _ => self.i.checked_sub(1).map(|p| self.b[p]),
        };
        let separators: &[u8] = if cmd.kind == Kind::Test { b" \t\n" } else { b" \t\n;&|(" };
        before.is_none_or(|b| separators.contains(&b))
    }

    fn line_break(&mut self) {
        if matches!(self.top(), Frame::Comment) {
            self.pop();
        }
        // Inside `[[ ]]` a line break is a space.
        if !matches!(self.top(), Frame::Command(c) if c.kind == Kind::Test) {
            self.end_command();
        }
        self.newline();
        self.i += 1;
        // Here-documents start on the line after their operator, one after another.
        self.start_heredoc();
        while let Frame::Heredoc { delimiter, strip_tabs, .. } = self.top().clone() {
            match self.delimiter_line(&delimiter, strip_tabs) {
                Some(true) => {
                    self.stack.pop();
                    self.skip_line();
                    self.start_heredoc();
                }
                Some(false) => break,
                None => {
                    let line = self.text(self.i, self.b.len()).trim_start_matches('\t');
                    let paren = line.strip_prefix(delimiter.as_str()).is_some_and(|r| r.starts_with(')'));
                    self.lose(if paren { SHELLS_DIFFER } else { TAG_ON_DELIMITER_LINE });
                    break;
                }
            }
        }
    }

    /// The command list at the top of the stack (the bottom one is never popped).
    fn command(&mut self) -> &mut Cmd {
        let at = self.stack.iter().rposition(|f| matches!(f, Frame::Command(_))).unwrap_or(0);
        match &mut self.stack[at] {
            Frame::Command(cmd) => cmd,
            _ => unreachable!("the bottom frame is a command list"),
        }
    }

    /// After `;`, `&`, `|`, `(`, a case pattern's `)` or a line break, the next word
    /// starts a new command.
    fn end_command(&mut self) {
        if let Some(Frame::Command(cmd)) = self.stack.last_mut() {
            cmd.fresh = true;
            cmd.kind = Kind::Other;
            cmd.word = None;
            cmd.target = false;
            cmd.maybe_fresh = false;
            cmd.code_next = false;
            cmd.skip = false;
            cmd.argument = None;
            cmd.next_why = None;
            cmd.code = None;
            cmd.code_target = false;
            cmd.code_why = None;
            cmd.dup = false;
            cmd.dup_word = None;
            *cmd.ssh = Default::default();
            *cmd.copy = Default::default();
        }
    }

    /// A backslash at `self.i` quotes the next character, which is skipped; a template
    /// tag is not skipped (it is no character of the script), but noted: the backslash
    /// would then quote the first character of the value.
    fn escape_next(&mut self) {
        match self.b.get(self.i + 1) {
            Some(b'\n') => {
                let in_word = matches!(self.top(), Frame::Command(c)
                    if c.word.is_some_and(|w| w < self.i) && c.word == c.command_word);
                if in_word {
                    self.lose(CONTINUATION);
                }
                self.newline();
                self.i += 1;
            }
            Some(b'{') => self.glued = Some((self.i + 1, AFTER_BACKSLASH)),
            Some(_) => self.i += 1,
            None => {}
        }
    }

    fn set_depth(&mut self, d: u32) {
        if let Some(Frame::Parameter(depth) | Frame::Arithmetic { depth, .. }) = self.stack.last_mut() {
            *depth = d;
        }
    }

    /// `'`, `"`, `$'` and the expansions, where they start something (at `self.i`).
    fn quote_or_expansion(&mut self) {
        match self.b[self.i] {
            b'\'' => self.stack.push(Frame::Single),
            b'"' => self.stack.push(Frame::Double),
            b'$' if self.b.get(self.i + 1) == Some(&b'\'') => {
                self.stack.push(Frame::AnsiC);
                self.i += 1;
            }
            _ => self.expansion(),
        }
    }

    /// `$(`, `$((`, `$[`, `${` and `` ` `` (the expansions that also work inside double quotes).
    fn expansion(&mut self) {
        if self.b[self.i] == b'$' && self.b[self.i + 1..].starts_with(b"{{") {
            self.glued = Some((self.i + 1, AFTER_DOLLAR));
            return;
        }
        match (self.b[self.i], self.b.get(self.i + 1)) {
            (b'$', Some(b'(')) if self.b.get(self.i + 2) == Some(&b'(') => {
                self.stack.push(Frame::Command(Cmd::default()));
                self.stack.push(Frame::Arithmetic { depth: 0, bracket: false });
                self.i += 2;
            }
            (b'$', Some(b'(')) => {
                self.stack.push(Frame::Command(Cmd { fresh: true, ..Cmd::default() }));
                self.i += 1;
            }
            (b'$', Some(b'[')) => {
                self.stack.push(Frame::Arithmetic { depth: 0, bracket: true });
                self.i += 1;
            }
            (b'$', Some(b'{')) => {
                self.stack.push(Frame::Parameter(0));
                self.i += 1;
            }
            (b'`', _) => self.stack.push(Frame::Backquote),
            _ => {}
        }
    }

    /// Skips the template tag at `self.i`, recording `{{ }}`; returns whether it opened
    /// a `{% raw %}` block.
    fn tag(&mut self) -> bool {
        let start = self.i;
        let kind = self.b[start + 1];
        let close = words::closing(kind);
        let end = self.tag_end(start + 2, close, kind != b'#');
        let space = |b: Option<&u8>| b.is_some_and(|b| b" \t\r\n".contains(b));
        let trims_before = self.b.get(start + 2) == Some(&b'-') && start > 0 && space(self.b.get(start - 1));
        let trims_after = end >= start + 5 && self.b[end - 3] == b'-' && space(self.b.get(end));
        if trims_before || trims_after {
            self.lose(TRIMMING);
        }
        let opens_raw = kind == b'%' && self.tag_is("raw");
        if kind == b'%' {
            self.control(start);
        }
        if kind == b'{' {
            self.value_starts_a_word(start);
            let context = self.context_here(start, end);
            self.out.push(Interpolation { start, end, line: self.line, nth: self.nth, context });
            if let Some(name) = self.assigns_to(start) {
                self.assigned.push((name, self.out.len() - 1));
            }
            // A value that starts a word in command position is the command.
            if let Some(Frame::Command(cmd)) = self.stack.last_mut()
                && cmd.word.is_none()
            {
                cmd.word = Some(start);
                let target = std::mem::take(&mut cmd.target);
                if target && std::mem::take(&mut cmd.dup) {
                    cmd.dup_word = Some(start);
                }
                if target && std::mem::take(&mut cmd.code_target) {
                    cmd.code = Some(start);
                    cmd.code_why = Some(FED_TO_SHELL);
                }
                if !target {
                    if std::mem::take(&mut cmd.skip) {
                        cmd.argument = Some(start);
                    } else if std::mem::take(&mut cmd.code_next) {
                        cmd.code = Some(start);
                    }
                    if std::mem::take(&mut cmd.maybe_fresh) {
                        cmd.kind = strictest(cmd.kind, Kind::Other);
                    } else if cmd.fresh {
                        cmd.fresh = false;
                        cmd.kind = Kind::Other;
                    }
                }
            }
        }
        if kind != b'#' {
            self.nth += 1;
        }
        let before = match self.tags {
            Some((last_end, before, _)) if last_end == start => before,
            _ => start.checked_sub(1).map(|p| self.b[p]),
        };
        let value = kind == b'{' || matches!(self.tags, Some((last_end, _, true)) if last_end == start);
        self.tags = Some((end, before, value));
        let newlines = self.b[start..end].iter().filter(|&&x| x == b'\n').count();
        for _ in 0..newlines {
            self.newline();
        }
        self.i = end;
        opens_raw
    }

    fn context_here(&self, start: usize, end: usize) -> Context {
        if let Some(why) = self.lost {
            return Context::Refused(why);
        }
        if let Some((at, why)) = self.glued
            && at == start
        {
            return Context::Refused(why);
        }
        // Anywhere in a here-document read as code, `$( … )` within it included.
        if self.stack.iter().any(|f| matches!(f, Frame::Heredoc { code: true, .. })) {
            return Context::Refused(FED_TO_SHELL);
        }
        let duplicated = |f: &Frame| matches!(f, Frame::Command(c) if (c.target && c.dup) || (c.dup_word.is_some() && c.dup_word == c.word));
        if self.stack.iter().any(duplicated) {
            return Context::Refused(DUP_TARGET);
        }
        let arithmetic = |f: &Frame| matches!(f, Frame::Arithmetic { .. } | Frame::Array { arithmetic: true });
        if self.stack.iter().any(arithmetic) {
            return Context::Arithmetic;
        }
        if let Some(why) = self.substituted_into_code(start) {
            return Context::Refused(why);
        }
        match self.in_command(start, end) {
            Some(Context::Declared(_)) => Context::Declared(Box::new(self.quoting(start, end))),
            Some(context) => context,
            None => self.quoting(start, end),
        }
    }

    /// The context of a value at `start..end` from the quotes (or their absence) around it.
    fn quoting(&self, start: usize, end: usize) -> Context {
        match self.top() {
            Frame::Command(_) | Frame::Arithmetic { .. } | Frame::Array { .. } => Context::Bare,
            Frame::Comment => Context::Comment,
            Frame::Double => Context::Double,
            Frame::Single => Context::Single,
            Frame::AnsiC => Context::AnsiC,
            Frame::Backquote => Context::Refused(IN_BACKQUOTES),
            Frame::Parameter(_) => Context::Refused(IN_PARAMETER),
            Frame::Heredoc { code: true, .. } => Context::Refused(FED_TO_SHELL),
            Frame::Heredoc { delimiter, strip_tabs, literal, .. } => {
                let line_start = self.src[..start].rfind('\n').map_or(0, |p| p + 1);
                let line_end = self.src[end..].find('\n').map_or(self.src.len(), |p| end + p);
                let h = Heredoc {
                    delimiter: delimiter.clone(),
                    strip_tabs: *strip_tabs,
                    before: self.src[line_start..start].to_string(),
                    after: self.src[end..line_end].to_string(),
                };
                if *literal { Context::HeredocLiteral(h) } else { Context::Heredoc(h) }
            }
        }
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The stricter of two readings of a command, for a value in it: the same, or one that
/// refuses it, or else integers only (safe wherever a value goes).
fn strictest(a: Kind, b: Kind) -> Kind {
    if a == b {
        return a;
    }
    [Kind::Code, Kind::Names].into_iter().find(|k| a == *k || b == *k).unwrap_or(Kind::Arithmetic)
}
