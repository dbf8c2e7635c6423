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

#[derive(Debug, Clone, PartialEq)]
enum Frame {
    /// Commands: the top level or inside `$( )` (with the depth of plain parentheses).
    Command(u32),
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
}

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
        stack: vec![Frame::Command(0)],
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
                Frame::Command(depth) => match c {
                    b'\\' => self.escape_next(),
                    b'(' => self.set_depth(depth + 1),
                    b')' if depth > 0 => self.set_depth(depth - 1),
                    b')' => self.pop(),
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
                    _ => self.quote_or_expansion(),
                },
            }
            self.i += 1;
        }
        self.out
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
        if let Some(Frame::Command(depth) | Frame::Parameter(depth)) = self.stack.last_mut() {
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
            (b'$', Some(b'(')) => {
                self.stack.push(Frame::Command(0));
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
        match self.top() {
            Frame::Command(_) => Context::Bare,
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
        Context::Comment => value.replace(['\n', '\r'], " "),
        Context::Refused(why) => return Err((*why).to_string()),
    })
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
mod tests {
    use super::{Context, interpolations};

    fn contexts(script: &str) -> Vec<Context> {
        interpolations(script).into_iter().map(|i| i.context).collect()
    }

    fn heredoc(c: &Context) -> (&str, bool) {
        match c {
            Context::Heredoc(h) => (h.delimiter.as_str(), false),
            Context::HeredocLiteral(h) => (h.delimiter.as_str(), true),
            other => panic!("not a here-document: {other:?}"),
        }
    }

    #[test]
    fn finds_the_context_of_each_value() {
        use Context::*;
        assert_eq!(contexts("echo {{ x }}"), [Bare]);
        assert_eq!(contexts("echo \"Deploying {{ x }}\" '{{ y }}' {{ z }}"), [Double, Single, Bare]);
        assert_eq!(contexts("echo \"$(cat {{ f }})\" \"$(echo \"{{ g }}\")\""), [Bare, Double]);
        assert_eq!(contexts("echo \"it's\" {{ x }}\necho \"{{ y }}\""), [Bare, Double]);
        assert_eq!(contexts("echo {{ x | replace('a', \"b\") }} \"ok\""), [Bare]);
        assert_eq!(contexts("# don't {{ x }}\necho {{ y }}"), [Comment, Bare]);
        assert_eq!(contexts("echo a#{{ x }} $#"), [Bare]);
        assert_eq!(contexts("echo \\\"{{ x }}"), [Bare]);
        assert_eq!(contexts("echo $'a {{ x }}'"), [AnsiC]);
        assert_eq!(contexts("echo $((1 + {{ n }})) {{ m }}"), [Bare, Bare]);
        assert_eq!(contexts("echo `echo {{ x }}`")[0], Refused(super::IN_BACKQUOTES));
        assert_eq!(contexts("echo \"`echo {{ x }}`\"")[0], Refused(super::IN_BACKQUOTES));
        assert_eq!(contexts("echo ${A:-{{ x }}}")[0], Refused(super::IN_PARAMETER));
        assert_eq!(contexts("echo \"${A:-{{ x }}}\" {{ y }}")[1], Bare);
        assert_eq!(contexts("{% raw %}echo \"{{ x }}\"{% endraw %} {{ y }}"), [Bare]);
        assert_eq!(contexts("echo {# \" #} {{ x }}"), [Bare]);
        assert_eq!(
            contexts("echo \\{{ x }} \"\\{{ y }}\" '\\{{ z }}'"),
            [Refused(super::AFTER_BACKSLASH), Refused(super::AFTER_BACKSLASH), Single]
        );
        assert_eq!(
            contexts("echo ${{ x }} \"${{ y }}\""),
            [Refused(super::AFTER_DOLLAR), Refused(super::AFTER_DOLLAR)]
        );
        assert_eq!(contexts("echo a\\\n{{ x }}"), [Bare]);
        assert_eq!(interpolations("echo a\\\n{{ x }}")[0].line, 2);
    }

    #[test]
    fn reads_here_documents() {
        let script = "cat <<EOF > out\nDeploying {{ v }} \"{{ w }}\"\nEOF\necho {{ x }}\ncat <<'END'\n{{ y }}\nEND\ncat <<-\"T\" <<U\n\t{{ z }}\n\tT\n$(echo {{ q }})\nU\n";
        let found = interpolations(script);
        let cs: Vec<&Context> = found.iter().map(|i| &i.context).collect();
        assert_eq!(heredoc(cs[0]), ("EOF", false));
        assert_eq!(heredoc(cs[1]), ("EOF", false), "quotes mean nothing in a here-document");
        assert_eq!(*cs[2], Context::Bare);
        assert_eq!(heredoc(cs[3]), ("END", true));
        assert_eq!(heredoc(cs[4]), ("T", true));
        assert_eq!(*cs[5], Context::Bare, "a command substitution in an unquoted body");
        assert_eq!(found[0].line, 2);
        assert_eq!((found[1].line, found[1].nth), (2, 1));
        match cs[0] {
            Context::Heredoc(h) => assert_eq!((h.before.as_str(), h.after.as_str()), ("Deploying ", " \"{{ w }}\"")),
            _ => unreachable!(),
        }
        // Here-strings are not here-documents.
        assert_eq!(contexts("cat <<< {{ x }}\necho {{ y }}"), [Context::Bare, Context::Bare]);
    }

    #[test]
    fn writes_values_for_their_context() {
        use super::escape;
        let dq = escape("a\"b$c`d\\e", &Context::Double).unwrap();
        assert_eq!(dq, "a\\\"b\\$c\\`d\\\\e");
        assert_eq!(escape("it's", &Context::Single).unwrap(), "'\"it's\"'");
        assert_eq!(escape("a\nb", &Context::Comment).unwrap(), "a b");
        let h =
            super::Heredoc { delimiter: "EOF".into(), strip_tabs: false, before: String::new(), after: String::new() };
        assert!(escape("x\nEOF\nrm -rf /", &Context::Heredoc(h.clone())).unwrap_err().contains("here-document"));
        assert!(escape("EOF", &Context::HeredocLiteral(h.clone())).is_err());
        assert_eq!(escape("$HOME `x` \\", &Context::Heredoc(h.clone())).unwrap(), "\\$HOME \\`x\\` \\\\");
        assert_eq!(escape("$HOME", &Context::HeredocLiteral(h)).unwrap(), "$HOME");
        let tabs =
            super::Heredoc { delimiter: "EOF".into(), strip_tabs: true, before: "E".into(), after: String::new() };
        assert!(escape("OF", &Context::Heredoc(tabs.clone())).is_err(), "completes the delimiter line");
        assert!(escape("x\n\t\tEOF", &Context::Heredoc(tabs)).is_err());
        assert!(escape("a\0b", &Context::Bare).is_err());
        // dash drops the first byte of a non-ASCII character after a delimiter prefix.
        let eof =
            super::Heredoc { delimiter: "EOF".into(), strip_tabs: false, before: String::new(), after: String::new() };
        assert!(escape("x\nE¡", &Context::Heredoc(eof.clone())).unwrap_err().contains("dash"));
        assert!(escape("x\nEOFx", &Context::Heredoc(eof.clone())).is_err());
        assert!(escape("x\nEz¡ and E", &Context::Heredoc(eof)).is_ok());
        assert!(escape("x", &Context::Refused("no")).is_err());
    }
}
