//! Where each `{{ }}` of a `run` script lands in shell syntax, and how a value is written
//! there so that the shell reads back exactly the value.
//!
//! The scanner reads the template source as a POSIX shell would (quotes, `$( )`,
//! `${ }`, backquotes, comments, here-documents), skipping template tags, and gives
//! each `{{ }}` its [`Context`]. [`escape`] then writes a value for that context:
//! bare → one quoted word; in `"…"` → backslash escapes; in `'…'` → close, quoted word,
//! reopen; in a here-document → escapes (or the raw text after a quoted delimiter); in
//! ssh's remote command → written for the remote line, then for the script.

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
    /// After `#`: the value is shown as a quoted word with its line breaks as spaces (a
    /// line break would end the comment and run the rest).
    Comment,
    /// The value of `declare NAME=…` (and `local`, `typeset`…): as `inner`, but a value
    /// starting with `(` is refused, since bash reads it as an array and runs what is in it.
    Declared(Box<Context>),
    /// A word of ssh's remote command, which the remote shell reads again: the value is
    /// written for where it lands in the remote line (first), then for where it is in
    /// the script (second).
    Remote(Box<Context>, Box<Context>),
    /// The start of a word where ssh reads options (its destination, the word after it):
    /// as `inner`, but a value beginning with `-` is refused, since ssh would read it as
    /// an option (`-oProxyCommand=…` runs a command).
    NotAnOption(Box<Context>),
    /// ssh's destination (`[user@]host`): as `inner`, but only the characters of a host
    /// and user name; older OpenSSH puts it into `ProxyCommand` (`%h`) for a shell.
    Host(Box<Context>),
    /// A remote path of scp or rsync (`web1:{{ … }}`), or an rsync option's argument sent
    /// to the remote side (`--backup-dir`), which legacy scp and rsync before 3.2.4 hand to
    /// the remote shell: as `inner`, but only characters no shell treats specially.
    RemotePath(Box<Context>),
    /// An scp or rsync operand the value may make remote (`scp app.tar {{ dest }}`): as
    /// `inner`, but if the value holds a `:` before any `/`, the text before it is a host
    /// (as [`Context::Host`]) and, when the second field says a shell reads it again, the
    /// text after it a remote path (as [`Context::RemotePath`]).
    CopyOperand(Box<Context>, bool),
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

const SUBSCRIPT: &str = "a value with a name and `[` followed by `$(`, `${` or a backquote is refused: bash runs the \
     command in such a subscript wherever it evaluates the value as a variable name or arithmetic";
const DECLARED_ARRAY: &str = "a value starting with `(` after `declare NAME=` is read by bash as an array, running \
     what is in it: assign it with NAME=… first";
const SSH_OPTION: &str = "a value that begins a word where ssh, scp or rsync reads options (ssh's destination or \
     the word after it, an scp or rsync operand) must not begin with `-`: it would be read as an option \
     (-oProxyCommand=… runs a command); write `--` before the operands";
const SSH_HOST: &str = "a value in ssh's destination may hold only letters, digits and . _ - @ : % [ ] / +: \
     older OpenSSH hands the destination to a shell in ProxyCommand (%h, %r)";
const COPY_HOST: &str = "a value in the host of an scp or rsync operand (`host:path`) may hold only letters, digits \
     and . _ - @ % [ ] +: ssh gets it as its destination, which older OpenSSH hands to a shell in ProxyCommand";
const REMOTE_PATH: &str = "a value in a remote path of scp or rsync (`host:path`), or in an rsync option sent to the \
     remote side (--backup-dir, --suffix, -T…), may hold only letters, digits and . _ - / @ % + , = : ~ * ? [ ]: legacy \
     scp (OpenSSH before 9.0, or -O) and rsync before 3.2.4 hand it to the remote shell, which reads it again; with \
     scp -s (SFTP) or rsync -s (--secluded-args) it reaches no shell and may hold anything";
const NOT_AN_INTEGER: &str = "a value the shell evaluates as arithmetic ($(( )), (( )), let, [[ … -eq … ]], \
     declare -i, an array subscript) must be an integer: the shell would run a command hidden in anything else";

mod scan;
pub use scan::runs_as_command_line;

/// Finds every `{{ }}` of a script template and the shell context it lands in.
pub fn interpolations(script: &str) -> Vec<Interpolation> {
    scan::Scanner::new(script).run()
}

/// Writes `value` for its context, or says why it cannot go there.
pub fn escape(value: &str, context: &Context) -> Result<String, String> {
    if value.contains('\0') {
        return Err("a value contains a NUL byte, which no shell can take".into());
    }
    if !matches!(context, Context::Refused(_)) && runs_in_a_subscript(value) {
        return Err(SUBSCRIPT.into());
    }
    Ok(match context {
        Context::Declared(_) if value.starts_with('(') => return Err(DECLARED_ARRAY.into()),
        Context::Declared(inner) => escape(value, inner)?,
        Context::Remote(remote, local) => escape(&escape(value, remote)?, local)?,
        Context::NotAnOption(_) if value.starts_with('-') => return Err(SSH_OPTION.into()),
        Context::NotAnOption(inner) => escape(value, inner)?,
        Context::Host(_) if !value.chars().all(|c| c.is_ascii_alphanumeric() || "._-@:%[]/+".contains(c)) => {
            return Err(SSH_HOST.into());
        }
        Context::Host(inner) => escape(value, inner)?,
        Context::RemotePath(_) if !value.chars().all(in_a_remote_path) => return Err(REMOTE_PATH.into()),
        Context::RemotePath(inner) => escape(value, inner)?,
        Context::CopyOperand(inner, again) => {
            if let Some((host, path)) = value.split_once(':').filter(|(host, _)| !host.contains('/')) {
                if !host.chars().all(|c| c.is_ascii_alphanumeric() || "._-@%[]+".contains(c)) {
                    return Err(COPY_HOST.into());
                }
                if *again && !path.chars().all(in_a_remote_path) {
                    return Err(REMOTE_PATH.into());
                }
            }
            escape(value, inner)?
        }
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
            if !is_integer(value) {
                return Err(NOT_AN_INTEGER.into());
            }
            value.to_string()
        }
        // Quoted as a word too: were the `#` no comment after all, it would still be one.
        Context::Comment => quote_word(&value.replace(['\n', '\r'], " "))?,
        Context::Refused(why) => return Err((*why).to_string()),
    })
}

/// What a remote path may hold that a remote shell reads again: nothing a shell treats
/// specially but glob characters, which name files.
fn in_a_remote_path(c: char) -> bool {
    c.is_alphanumeric() || "._-/@%+,=:~*?[]".contains(c)
}

/// Whether bash would run a command from `value` if it ever evaluated it as a name or as
/// arithmetic (`a[$(cmd)]`): a name, `[`, then a command or parameter substitution. That
/// is how bash runs code from data, whichever way the script passes the value on
/// (`$((X))`, `${!X}`, `declare -n`, `printf -v`, a function's `$1`), so such a value is
/// refused everywhere.
pub fn runs_in_a_subscript(value: &str) -> bool {
    let b = value.as_bytes();
    let Some(open) = (0..b.len()).find(|&i| {
        b[i] == b'[' && b[..i].trim_ascii_end().last().is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    }) else {
        return false;
    };
    let rest = &value[open..];
    rest.contains("$(") || rest.contains("${") || rest.contains('`')
}

/// What may go where the shell evaluates arithmetic: an integer, written plainly.
pub fn is_integer(value: &str) -> bool {
    let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
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
                String::from_utf8_lossy(&line.as_bytes()[..matched]),
                h.delimiter
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
