//! Where each `{{ }}` of a `run` script lands in shell syntax, and how a value is written
//! there so that the shell reads back exactly the value.
//!
//! The scanner reads the template source as a POSIX shell would (quotes, `$( )`,
//! `${ }`, backquotes, comments, here-documents), skipping template tags, and gives
//! each `{{ }}` its [`Context`]. [`escape`] then writes a value for that context:
//! bare → one quoted word; in `"…"` → backslash escapes; in `'…'` → close, quoted word,
//! reopen; in a here-document → escapes (or the raw text after a quoted delimiter).

/// The shell context of one interpolation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Context {
    /// Where a word goes: the value becomes one shell-quoted word.
    Bare,
    /// Inside `"…"`: `\`, `$`, `` ` `` and `"` are backslash-escaped.
    Double,
    /// Inside `'…'`: the quote is closed, the value goes in as a quoted word, and reopened.
    Single,
    /// Inside bash's `$'…'`: closed, quoted word, reopened with `$'`.
    AnsiC,
    /// The body of a here-document whose delimiter is unquoted: `\`, `$` and `` ` `` are
    /// escaped. A value with a line that would end the here-document is refused.
    Heredoc(Heredoc),
    /// The body of a here-document with a quoted delimiter (`<<'EOF'`): the raw value.
    HeredocLiteral(Heredoc),
    /// Where the shell evaluates the value as arithmetic (`$(( ))`, `(( ))`, `let`,
    /// `[[ … -eq … ]]`, `declare -i`, an array subscript): only an integer is written,
    /// because both bash and dash run a command substitution hidden in anything else.
    Arithmetic,
    /// After `#`: the value is shown with its line breaks as spaces (a line break would
    /// end the comment and run the rest).
    Comment,
    /// A place where no value can be made safe; the message says why and what to write.
    Refused(&'static str),
}

/// The here-document an interpolation is in, and the text around it on its line, so
/// that a value which would complete the delimiter line can be refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub delimiter: String,
    /// `<<-`: leading tabs are stripped before comparing with the delimiter.
    pub strip_tabs: bool,
    /// Template text before the tag on its line, and after it.
    pub before: String,
    pub after: String,
}

/// One `{{ … }}` of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpolation {
    /// Byte range of the whole tag, `{{` to `}}`.
    pub start: usize,
    pub end: usize,
    /// 1-based line of the `{{`.
    pub line: usize,
    /// Which `{{`/`{%` tag of its line it is (0-based).
    pub nth: usize,
    pub context: Context,
}

const IN_BACKQUOTES: &str = "inside backquotes `…` a value cannot be quoted safely: write $( … ) instead";
const AFTER_BACKSLASH: &str =
    "a backslash right before {{ … }} would quote the first character of the value: remove it";
const AFTER_DOLLAR: &str =
    "a `$` right before {{ … }} would make the shell read the value as code or a variable name: remove it";
const IN_PARAMETER: &str =
    "inside ${…} a value cannot be quoted safely: set a variable first (X={{ … }}) and use ${X…}";
const AS_NAME: &str = "here a value would be a variable name, which bash evaluates (`a[$(cmd)]` runs cmd): \
     write the name in the script";
const NOT_AN_INTEGER: &str = "a value the shell evaluates as arithmetic ($(( )), (( )), let, [[ … -eq … ]], \
     declare -i, an array subscript) must be an integer: the shell would run a command hidden in anything else";

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
    },
    /// `$(( ))` and `(( ))` with the depth of plain parentheses, or bash's `$[ ]` with
    /// the depth of brackets.
    Arithmetic {
        depth: u32,
        bracket: bool,
    },
}

/// Where a command list is: enough to know which `)` closes it, and what the current
/// simple command does with its words.
#[derive(Debug, Clone, PartialEq, Default)]
struct Cmd {
    /// Open plain parentheses (subshells, a case pattern's optional `(`).
    depth: u32,
    /// Open `case … esac`: a `)` there ends a pattern, not the `$( )`.
    cases: u32,
    /// The next word is in command position (a command, reserved word or assignment).
    fresh: bool,
    kind: Kind,
    /// Where the current word began.
    word: Option<usize>,
}

/// What a simple command does with its words, where that matters for a value.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
enum Kind {
    #[default]
    Other,
    /// `let`, `declare -i` and the like: words are arithmetic.
    Arithmetic,
    /// `declare`, `typeset`, `local`, `export`, `readonly`: a word before its `=` is a name.
    Declare,
    /// `unset`, `declare -n`: every word is a name.
    Names,
    /// `read`: words are names, except the arguments of its options.
    Read,
    /// `printf`, `test`, `[`: the word after `-v` (or `-R`) is a name.
    NameAfterOption,
    /// `[[ … ]]`: names after `-v`/`-R`, and the operands of `-eq`, `-lt`… are arithmetic.
    Test,
}

const RESERVED_WORDS: &[&str] = &["!", "{", "}", "if", "then", "else", "elif", "do", "while", "until", "time"];
const ARITHMETIC_TESTS: &[&str] = &["-eq", "-ne", "-lt", "-le", "-gt", "-ge"];

struct Pending {
    delimiter: String,
    strip_tabs: bool,
    literal: bool,
}

/// Finds every `{{ }}` of a script template and the shell context it lands in.
pub fn interpolations(script: &str) -> Vec<Interpolation> {
    Scanner {
        b: script.as_bytes(),
        src: script,
        i: 0,
        line: 1,
        nth: 0,
        stack: vec![Frame::Command(Cmd { fresh: true, ..Cmd::default() })],
        out: Vec::new(),
        glued: None,
    }
    .run()
}

struct Scanner<'a> {
    b: &'a [u8],
    src: &'a str,
    i: usize,
    line: usize,
    nth: usize,
    stack: Vec<Frame>,
    out: Vec<Interpolation>,
    /// A `\` or `$` right before a tag at this offset, and why that is refused.
    glued: Option<(usize, &'static str)>,
}

impl Scanner<'_> {
    fn top(&self) -> &Frame {
        self.stack.last().expect("the command frame is never popped")
    }

    fn at(&self, s: &[u8]) -> bool {
        self.b[self.i..].starts_with(s)
    }

    fn newline(&mut self) {
        self.line += 1;
        self.nth = 0;
    }

    fn pop(&mut self) {
        if self.stack.len() > 1 {
            self.stack.pop();
        }
    }

    fn run(mut self) -> Vec<Interpolation> {
        let mut pending: Vec<Pending> = Vec::new();
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
                self.end_command();
                self.newline();
                self.i += 1;
                // Here-documents start on the line after their operator, one after another.
                self.start_heredoc(&mut pending);
                while let Frame::Heredoc { delimiter, strip_tabs, .. } = self.top().clone()
                    && self.ends_heredoc(&delimiter, strip_tabs)
                {
                    self.stack.pop();
                    self.skip_line();
                    self.start_heredoc(&mut pending);
                }
                continue;
            }
            match self.top().clone() {
                Frame::Single => {
                    if c == b'\'' {
                        self.pop();
                    }
                }
                Frame::AnsiC => match c {
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
                    b'\\' => self.escape_next(),
                    _ => self.quote_or_expansion(),
                },
                Frame::Command(cmd) => match c {
                    b'(' if self.at(b"((") => {
                        self.command().depth += 1;
                        self.command().fresh = false;
                        self.stack.push(Frame::Arithmetic { depth: 0, bracket: false });
                        self.i += 2;
                        continue;
                    }
                    // Inside `[[ ]]`, `&&`, `||` and parentheses group conditions.
                    b'(' | b')' | b'&' | b'|' if cmd.kind == Kind::Test => self.command().word = None,
                    b'(' => {
                        self.end_command();
                        self.command().depth += 1;
                    }
                    b')' if cmd.depth > 0 => {
                        self.end_command();
                        self.command().depth -= 1;
                    }
                    // The end of a case pattern.
                    b')' if cmd.cases > 0 => self.end_command(),
                    b')' => self.pop(),
                    b';' | b'&' | b'|' => self.end_command(),
                    b' ' | b'\t' => self.command().word = None,
                    b'#' if self.i == 0 || b" \t\n;&|(".contains(&self.b[self.i - 1]) => {
                        self.comment();
                        continue;
                    }
                    b'<' if self.at(b"<<<") => self.i += 2,
                    b'<' if self.at(b"<<") => {
                        if let Some(p) = self.heredoc_operator() {
                            pending.push(p);
                        }
                        continue;
                    }
                    // Redirections end a word; `>&` and `<&` do not end the command.
                    b'<' | b'>' => {
                        self.command().word = None;
                        if self.b.get(self.i + 1) == Some(&b'&') {
                            self.i += 1;
                        }
                    }
                    _ => {
                        self.word_starts();
                        if c == b'\\' {
                            self.escape_next();
                        } else {
                            self.quote_or_expansion();
                        }
                    }
                },
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
            }
            self.i += 1;
        }
        self.out
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
        }
    }

    /// A word begins at `self.i` unless one is under way; in command position it says
    /// what the command is.
    fn word_starts(&mut self) {
        let (start, src) = (self.i, self.src);
        let mut end = start;
        while end < self.b.len()
            && !b" \t\n;&|()<>\"'`$\\".contains(&self.b[end])
            && !(self.b[end] == b'{' && matches!(self.b.get(end + 1), Some(b'{' | b'%' | b'#')))
        {
            end += 1;
        }
        let text = &src[start..end];
        let cmd = self.command();
        if cmd.word.is_some() {
            return;
        }
        cmd.word = Some(start);
        if !cmd.fresh {
            match cmd.kind {
                Kind::Declare if text.starts_with('-') && text.contains('i') => cmd.kind = Kind::Arithmetic,
                Kind::Declare if text.starts_with('-') && text.contains('n') => cmd.kind = Kind::Names,
                Kind::Test if text == "]]" => cmd.kind = Kind::Other,
                _ => {}
            }
            return;
        }
        let assignment = text.split_once('=').is_some_and(|(name, _)| is_name(name));
        if assignment || RESERVED_WORDS.contains(&text) {
            return;
        }
        cmd.fresh = false;
        cmd.kind = match text {
            "let" => Kind::Arithmetic,
            "declare" | "typeset" | "local" | "export" | "readonly" => Kind::Declare,
            "unset" => Kind::Names,
            "read" => Kind::Read,
            "printf" | "test" | "[" => Kind::NameAfterOption,
            "[[" => Kind::Test,
            _ => Kind::Other,
        };
        match text {
            "case" => cmd.cases += 1,
            "esac" => cmd.cases = cmd.cases.saturating_sub(1),
            _ => {}
        }
    }

    fn start_heredoc(&mut self, pending: &mut Vec<Pending>) {
        if matches!(self.top(), Frame::Command(_)) && !pending.is_empty() {
            let p = pending.remove(0);
            self.stack.push(Frame::Heredoc { delimiter: p.delimiter, strip_tabs: p.strip_tabs, literal: p.literal });
        }
    }

    /// A backslash at `self.i` quotes the next character, which is skipped; a template
    /// tag is not skipped (it is no character of the script), but noted: the backslash
    /// would then quote the first character of the value.
    fn escape_next(&mut self) {
        match self.b.get(self.i + 1) {
            Some(b'\n') => {
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

    /// `$(`, `${` and `` ` `` (the expansions that also work inside double quotes).
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

    /// Whether the tag at `self.i` is `{% NAME %}` (with any whitespace control).
    fn tag_is(&self, name: &str) -> bool {
        let rest = &self.src[self.i + 2..];
        let Some(end) = rest.find("%}") else { return false };
        rest[..end].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace()) == name
    }

    /// Skips the template tag at `self.i`, recording `{{ }}`; returns whether it opened
    /// a `{% raw %}` block.
    fn tag(&mut self) -> bool {
        let start = self.i;
        let close: &[u8] = match self.b[start + 1] {
            b'{' => b"}}",
            b'%' => b"%}",
            _ => b"#}",
        };
        let end = match self.b[start + 2..].windows(2).position(|w| w == close) {
            Some(p) => start + 2 + p + 2,
            None => self.b.len(),
        };
        let opens_raw = self.b[start + 1] == b'%' && self.tag_is("raw");
        if self.b[start + 1] == b'{' {
            let context = self.context_here(start, end);
            self.out.push(Interpolation { start, end, line: self.line, nth: self.nth, context });
            // A value that starts a word in command position is the command.
            if let Some(Frame::Command(cmd)) = self.stack.last_mut()
                && cmd.word.is_none()
            {
                cmd.word = Some(start);
                if cmd.fresh {
                    cmd.fresh = false;
                    cmd.kind = Kind::Other;
                }
            }
        }
        if self.b[start + 1] != b'#' {
            self.nth += 1;
        }
        let newlines = self.b[start..end].iter().filter(|&&x| x == b'\n').count();
        for _ in 0..newlines {
            self.newline();
        }
        self.i = end;
        opens_raw
    }

    fn context_here(&self, start: usize, end: usize) -> Context {
        if let Some((at, why)) = self.glued
            && at == start
        {
            return Context::Refused(why);
        }
        if self.stack.iter().any(|f| matches!(f, Frame::Arithmetic { .. })) {
            return Context::Arithmetic;
        }
        if let Some(context) = self.in_command(start, end) {
            return context;
        }
        match self.top() {
            Frame::Command(_) | Frame::Arithmetic { .. } => Context::Bare,
            Frame::Double => Context::Double,
            Frame::Single => Context::Single,
            Frame::AnsiC => Context::AnsiC,
            Frame::Backquote => Context::Refused(IN_BACKQUOTES),
            Frame::Parameter(_) => Context::Refused(IN_PARAMETER),
            Frame::Heredoc { delimiter, strip_tabs, literal } => {
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

    /// What the command a value is a word of (perhaps in quotes) makes of it, where
    /// that is more than a word: arithmetic, or a variable name.
    fn in_command(&self, start: usize, end: usize) -> Option<Context> {
        let quotes = self.stack.iter().rev().take_while(|f| matches!(f, Frame::Double | Frame::Single | Frame::AnsiC));
        let Some(Frame::Command(cmd)) = self.stack.iter().rev().nth(quotes.count()) else { return None };
        let word = cmd.word.unwrap_or(start);
        let prefix = &self.src[word..start];
        let before = self.src[..word].trim_end_matches([' ', '\t']);
        let previous = &before[before.rfind([' ', '\t', '\n']).map_or(0, |p| p + 1)..];
        let after = &self.src[end..];
        let after = &after[after.find([' ', '\t', '\n']).unwrap_or(after.len())..];
        let next = after.trim_start_matches([' ', '\t']).split([' ', '\t', '\n']).next().unwrap_or_default();
        let named_by_option = matches!(previous, "-v" | "-R");
        let subscript = prefix.split_once('[').is_some_and(|(name, rest)| is_name(name) && !rest.contains(']'));
        match cmd.kind {
            Kind::Arithmetic => Some(Context::Arithmetic),
            Kind::Names => Some(Context::Refused(AS_NAME)),
            Kind::Declare if !prefix.contains('=') => Some(Context::Refused(AS_NAME)),
            Kind::Read if !matches!(previous, "-p" | "-d" | "-t" | "-u" | "-n" | "-N" | "-i") => {
                Some(Context::Refused(AS_NAME))
            }
            Kind::NameAfterOption | Kind::Test if named_by_option => Some(Context::Refused(AS_NAME)),
            Kind::Test if ARITHMETIC_TESTS.contains(&previous) || ARITHMETIC_TESTS.contains(&next) => {
                Some(Context::Arithmetic)
            }
            _ if subscript => Some(Context::Arithmetic),
            _ => None,
        }
    }

    /// A comment, to the end of its line; `{{ }}` in it are recorded as such.
    fn comment(&mut self) {
        while self.i < self.b.len() && self.b[self.i] != b'\n' {
            if self.at(b"{{") || self.at(b"{%") || self.at(b"{#") {
                let before = self.out.len();
                self.tag();
                for x in &mut self.out[before..] {
                    x.context = Context::Comment;
                }
            } else {
                self.i += 1;
            }
        }
    }

    /// `<<WORD` or `<<-WORD` at `self.i`: reads the delimiter (quoted parts make the body
    /// literal) and moves past it.
    fn heredoc_operator(&mut self) -> Option<Pending> {
        self.i += 2;
        let strip_tabs = self.at(b"-");
        if strip_tabs {
            self.i += 1;
        }
        while self.i < self.b.len() && (self.b[self.i] == b' ' || self.b[self.i] == b'\t') {
            self.i += 1;
        }
        let mut delimiter: Vec<u8> = Vec::new();
        let mut literal = false;
        let mut quote: Option<u8> = None;
        while self.i < self.b.len() {
            let c = self.b[self.i];
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
        (!delimiter.is_empty()).then_some(Pending { delimiter, strip_tabs, literal })
    }

    /// Whether the line starting at `self.i` is the delimiter line.
    fn ends_heredoc(&self, delimiter: &str, strip_tabs: bool) -> bool {
        let rest = &self.src[self.i..];
        let line = rest.split('\n').next().unwrap_or_default();
        let line = if strip_tabs { line.trim_start_matches('\t') } else { line };
        line == delimiter
    }

    fn skip_line(&mut self) {
        while self.i < self.b.len() && self.b[self.i] != b'\n' {
            self.i += 1;
        }
        if self.i < self.b.len() {
            self.newline();
            self.i += 1;
        }
    }
}

/// Writes `value` for its context, or says why it cannot go there.
pub fn escape(value: &str, context: &Context) -> Result<String, String> {
    if value.contains('\0') {
        return Err("a value contains a NUL byte, which no shell can take".into());
    }
    Ok(match context {
        Context::Bare => quote_word(value)?,
        Context::Double => {
            let mut out = String::with_capacity(value.len());
            for c in value.chars() {
                if matches!(c, '\\' | '$' | '`' | '"') {
                    out.push('\\');
                }
                out.push(c);
            }
            out
        }
        Context::Single => format!("'{}'", quote_word(value)?),
        Context::AnsiC => format!("'{}$'", quote_word(value)?),
        Context::Heredoc(h) => {
            refuse_delimiter_lines(value, h)?;
            let mut out = String::with_capacity(value.len());
            for c in value.chars() {
                if matches!(c, '\\' | '$' | '`') {
                    out.push('\\');
                }
                out.push(c);
            }
            out
        }
        Context::HeredocLiteral(h) => {
            refuse_delimiter_lines(value, h)?;
            value.to_string()
        }
        Context::Arithmetic => {
            let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(NOT_AN_INTEGER.into());
            }
            value.to_string()
        }
        Context::Comment => value.replace(['\n', '\r'], " "),
        Context::Refused(why) => return Err((*why).to_string()),
    })
}

/// A shell variable name.
fn is_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn quote_word(value: &str) -> Result<String, String> {
    shlex::try_quote(value).map(|q| q.into_owned()).map_err(|_| "a value contains a NUL byte".to_string())
}

/// A here-document ends at a line equal to its delimiter: a value must not make one.
fn refuse_delimiter_lines(value: &str, h: &Heredoc) -> Result<(), String> {
    let text = format!("{}{value}{}", h.before, h.after);
    for line in text.split('\n') {
        let line = if h.strip_tabs { line.trim_start_matches('\t') } else { line };
        // A line that merely begins with the delimiter is refused too (shells differ on
        // it), and so is one whose start matches the delimiter's up to a non-ASCII
        // character: dash (Debian's /bin/sh) drops that character's first byte.
        let matched = line.bytes().zip(h.delimiter.bytes()).take_while(|(a, b)| a == b).count();
        if matched == h.delimiter.len() {
            return Err(format!(
                "a value has a line beginning with `{}`, which would end the here-document early; choose another delimiter",
                h.delimiter
            ));
        }
        if matched > 0 && line.as_bytes().get(matched).is_some_and(|b| !b.is_ascii()) {
            return Err(format!(
                "a value has a line beginning with `{}` and a non-ASCII character, which /bin/sh (dash) misreads in a \
                 here-document with delimiter `{}`; choose another delimiter",
                &line[..matched],
                h.delimiter
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
