//! The words of a simple command: which command it is, and what it makes of a value.

use super::{
    AS_CODE, AS_NAME, AWK_PROGRAM, Context, FED_TO_SHELL, Frame, Kind, PROGRAM, PROMPT_CODE, Scanner, is_name,
    is_word_byte, without_tags,
};

/// Variables bash reads as code (prompts, expanded when shown; PS4 on every traced line)
/// or as the name of a file it runs.
const CODE_VARIABLES: &[&str] = &["PS0", "PS1", "PS2", "PS4", "PROMPT_COMMAND", "BASH_ENV"];
/// The variables that name a shell, as a command (`$SHELL -c …`).
const SHELL_VARIABLES: &[&str] = &["SHELL", "BASH", "SH", "ZSH_NAME"];
/// Commands whose `-c` argument is a command line run by a shell.
const RUN_C: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "su", "runuser", "script", "flock"];

/// Commands that run the command in their words (`sudo awk …`).
const WRAPPERS: &[&str] = &[
    "sudo",
    "doas",
    "timeout",
    "nice",
    "ionice",
    "nohup",
    "env",
    "xargs",
    "stdbuf",
    "busybox",
    "setsid",
    "sshpass",
    "flock",
    "chrt",
    "taskset",
    "unbuffer",
    "systemd-run",
    "runuser",
    "nsenter",
    "chronic",
    "trickle",
    "eatmydata",
];
/// Words that leave the next word in command position.
const PREFIXES: &[&str] =
    &["!", "{", "}", "if", "then", "else", "elif", "do", "while", "until", "time", "builtin", "command", "exec"];
/// How far around a value its neighbouring words are looked for.
const WINDOW: usize = 512;
pub(super) const ARITHMETIC_TESTS: &[&str] = &["-eq", "-ne", "-lt", "-le", "-gt", "-ge"];

impl Scanner<'_> {
    /// `at`, or the character boundary before it.
    fn boundary(&self, mut at: usize) -> usize {
        while !self.src.is_char_boundary(at) {
            at -= 1;
        }
        at
    }

    /// A word begins at `self.i` unless one is under way; in command position it says
    /// what the command is.
    pub(super) fn word_starts(&mut self) {
        let start = self.i;
        let mut end = start;
        while end < self.b.len() && !b" \t\n;&|()<>\"'`$\\".contains(&self.b[end]) && !self.at_tag(end) {
            end += 1;
        }
        let text = self.text(start, end);
        let fd = !text.is_empty()
            && text.bytes().all(|b| b.is_ascii_digit())
            && matches!(self.b.get(end), Some(b'<' | b'>'));
        let numeric = text == "[[" && {
            let test = self.text(start, self.b.len());
            let test = &test[..test.find("]]").unwrap_or(test.len())];
            test.split_whitespace().any(|w| ARITHMETIC_TESTS.contains(&w))
        };
        // `coproc NAME { … }`: the name, then the command.
        let names_coproc = {
            let after = self.text(end, self.b.len()).trim_start_matches([' ', '\t']);
            after.starts_with("{ ") || after.starts_with("{\n") || after.starts_with('(')
        };
        let cmd = self.command();
        if cmd.word.is_some() {
            return;
        }
        cmd.word = Some(start);
        // A redirection's target, or the file descriptor before one (`2>`), is no
        // command and no argument.
        let target = std::mem::take(&mut cmd.target);
        if target && std::mem::take(&mut cmd.dup) {
            cmd.dup_word = Some(start);
        }
        if target && std::mem::take(&mut cmd.code_target) {
            cmd.code = Some(start);
            cmd.code_why = Some(FED_TO_SHELL);
        }
        if target || fd {
            return;
        }
        // What the word is once quotes and backslashes are gone (`"eval"`, `e\val`);
        // `None` when an expansion makes it (`$(…)`, `$X`), known only at run time, except
        // the variables that name the shell (`$SHELL`, `"${BASH}"`), taken for `sh`.
        let quoted = self.b.get(end).is_some_and(|c| b"\"'\\$`".contains(c));
        let name =
            if quoted { self.dequoted(start).or_else(|| self.names_shell(start)) } else { Some(text.to_string()) };
        // `PS4=…`, `export PROMPT_COMMAND=…`: an assignment bash later runs as code.
        let assigns_code = text.split_once('=').is_some_and(|(n, _)| CODE_VARIABLES.contains(&n.trim_end_matches('+')));
        let cmd = self.command();
        if assigns_code && (cmd.fresh || matches!(cmd.kind, Kind::Declare | Kind::DeclareInt)) {
            cmd.code = Some(start);
            cmd.code_why = Some(PROMPT_CODE);
        }
        // `sh -c CODE`, wherever the shell comes in the command (`timeout 5 sh -c …`).
        let shell = name.as_deref().is_some_and(|n| RUN_C.contains(&basename(n)));
        let option = text.starts_with('-') && text != "--";
        if !option && text != "--" && std::mem::take(&mut cmd.skip) {
            cmd.argument = Some(start);
        } else if !option && text != "--" && std::mem::take(&mut cmd.code_next) {
            cmd.code = Some(start);
            cmd.code_why = cmd.next_why.take();
        }
        if cmd.kind == Kind::Shell && option && !text.starts_with("--") && text.contains('c') {
            cmd.code_next = true;
        }
        // `python3 -c CODE`, `perl -ne CODE`, `node --eval CODE`.
        if let Kind::Interpreter(options) = cmd.kind
            && option
            && options
                .iter()
                .any(|o| *o == text || (o.len() == 2 && !text.starts_with("--") && text.ends_with(&o[1..])))
        {
            cmd.code_follows(PROGRAM);
        }
        // (On an ssh command line a shell is remote: the remote line is read as a script.)
        if shell && !cmd.fresh && !cmd.maybe_fresh && cmd.kind != Kind::Ssh {
            cmd.kind = if cmd.kind == Kind::Other { Kind::Shell } else { super::strictest(cmd.kind, Kind::Shell) };
        }
        let program = name.as_deref().and_then(|n| interpreter(basename(n)));
        if let Some(kind) = program.filter(|_| !cmd.fresh && !cmd.maybe_fresh && cmd.kind == Kind::Other) {
            cmd.kind = kind;
        }
        if self.wrapped_command(name.as_deref(), start) {
            return;
        }
        let cmd = self.command();
        if cmd.fresh {
            cmd.command_word = Some(start);
        }
        if cmd.pattern {
            if text == "esac" {
                cmd.cases = cmd.cases.saturating_sub(1);
                cmd.pattern = false;
                cmd.fresh = false;
            }
            return;
        }
        let assignment = text.split_once('=').is_some_and(|(name, _)| {
            let name = name.trim_end_matches('+');
            is_name(name.split_once('[').map_or(name, |(n, _)| n))
        });
        let prefix = assignment || PREFIXES.contains(&text) || option;
        if cmd.maybe_fresh {
            // Template branches disagree on whether this is the command: both readings.
            if prefix {
                return;
            }
            cmd.maybe_fresh = false;
            cmd.kind = super::strictest(cmd.kind, name.as_deref().map_or(Kind::Other, command_kind));
            cmd.numeric |= numeric;
            if matches!(text, "case" | "esac" | "function") {
                self.lose(super::CONDITIONAL_SHELL);
            }
            return;
        }
        if !cmd.fresh {
            let flags = text.strip_prefix('-').filter(|_| matches!(cmd.kind, Kind::Declare | Kind::DeclareInt));
            match cmd.kind {
                _ if flags.is_some_and(|f| f.contains('n')) => cmd.kind = Kind::Names,
                _ if flags.is_some_and(|f| f.contains('i')) => cmd.kind = Kind::DeclareInt,
                Kind::DeclareInt if flags.is_none() => {
                    let name = text.split(['=', '+', '[']).next().unwrap_or_default();
                    if is_name(name) {
                        let name = name.to_string();
                        self.integers.push(name);
                    }
                }
                Kind::Test if text == "]]" => cmd.kind = Kind::Other,
                Kind::Ssh => self.ssh_word(name.as_deref(), start),
                Kind::Copy { rsync } => self.copy_word(rsync, name.as_deref(), start),
                Kind::Case if text == "in" => {
                    cmd.kind = Kind::Other;
                    cmd.pattern = true;
                }
                Kind::Awk if option && cmd.code.is_none() => cmd.awk_option(text),
                _ => {}
            }
            return;
        }
        if prefix {
            return;
        }
        if cmd.kind == Kind::Function || (cmd.kind == Kind::Coproc && names_coproc) {
            // The function's or the coprocess's name; its body follows.
            cmd.kind = Kind::Other;
            return;
        }
        cmd.fresh = matches!(text, "function" | "coproc");
        cmd.kind = name.as_deref().map_or(Kind::Other, command_kind);
        if cmd.kind == Kind::Awk {
            cmd.code_follows(AWK_PROGRAM);
        }
        cmd.numeric = numeric;
        match text {
            "case" => cmd.cases += 1,
            "esac" => cmd.cases = cmd.cases.saturating_sub(1),
            _ => {}
        }
    }

    /// What the command a value is a word of (perhaps in quotes) makes of it, where
    /// that is more than a word: arithmetic, code, or a variable name.
    pub(super) fn in_command(&self, start: usize, end: usize) -> Option<Context> {
        let cmd = self.word_of()?;
        if cmd.word == Some(usize::MAX) {
            return Some(Context::Refused(super::BUILT_WORD));
        }
        let word = cmd.word.unwrap_or(start);
        let prefix = without_tags(self.text(word, start), Some("x"));
        let prefix = prefix.as_str();
        // The words around it on its line, as the shell sees them (template tags aside),
        // within a window: a long line costs no more per value.
        let from = self.boundary(word.min(start).saturating_sub(WINDOW));
        let line_start = self.text(from, word.min(start)).rfind('\n').map_or(from, |p| from + p + 1);
        let before = without_tags(self.text(line_start, word.min(start)), Some("x"));
        let before = before.trim_end_matches([' ', '\t']);
        let previous = &before[before.rfind([' ', '\t']).map_or(0, |p| p + 1)..];
        let window = self.boundary((end + WINDOW).min(self.b.len()));
        let line_end = self.text(end, window).find('\n').map_or(window, |p| end + p);
        let after = without_tags(self.text(end, line_end), Some("x"));
        let after = &after[after.find([' ', '\t']).unwrap_or(after.len())..];
        let next = after.trim_start_matches([' ', '\t']).split([' ', '\t']).next().unwrap_or_default();
        let integer = prefix
            .split_once('=')
            .is_some_and(|(name, _)| self.integers.iter().any(|n| n == name.trim_end_matches('+')));
        let again = self.run_by_a_shell(word, start, end).or_else(|| self.rsync_shell(cmd, word, start, end));
        match cmd.kind {
            _ if cmd.code.is_some() && cmd.code == cmd.word && cmd.code_why == Some(PROMPT_CODE) => {
                Some(Context::Refused(PROMPT_CODE))
            }
            Kind::Arithmetic | Kind::DeclareInt => Some(Context::Arithmetic),
            Kind::Names => Some(Context::Refused(AS_NAME)),
            Kind::Code => Some(Context::Refused(AS_CODE)),
            _ if cmd.target && cmd.code_target => Some(Context::Refused(FED_TO_SHELL)),
            // (A value in an option's own word, `-vv={{ … }}`, is no code word.)
            _ if cmd.code_next && !cmd.skip && cmd.argument != Some(word) && !prefix.starts_with('-') => {
                Some(Context::Refused(cmd.next_why.unwrap_or(AS_CODE)))
            }
            _ if cmd.code.is_some() && cmd.code == cmd.word => Some(Context::Refused(cmd.code_why.unwrap_or(AS_CODE))),
            // (ssh's remote line first: an assignment in it is read there, a shell later.)
            Kind::Ssh => self.in_ssh(cmd, word, start, end),
            // `GIT_SSH_COMMAND="ssh -i {{ … }}"`, `export PAGER={{ … }}`: a command line.
            _ if again.is_some() => again,
            // `scp app.tar {{ host }}:/srv`: a host, and a remote path a shell may read again.
            Kind::Copy { rsync } => self.in_copy(cmd, rsync, word, start, end),
            Kind::Declare if !prefix.contains('=') => Some(Context::Refused(AS_NAME)),
            Kind::Declare if prefix.trim_end_matches(['"', '\'']).ends_with('=') => {
                Some(Context::Declared(Box::new(Context::Bare)))
            }
            Kind::Read if !matches!(previous, "-p" | "-d" | "-t" | "-u" | "-n" | "-N" | "-i") => {
                Some(Context::Refused(AS_NAME))
            }
            Kind::NameAfter(options) if options.contains(&previous) || options.contains(&prefix) => {
                Some(Context::Refused(AS_NAME))
            }
            Kind::Test if matches!(previous, "-v" | "-R") || matches!(prefix, "-v" | "-R") => {
                Some(Context::Refused(AS_NAME))
            }
            Kind::Test if ARITHMETIC_TESTS.contains(&previous) || ARITHMETIC_TESTS.contains(&next) => {
                Some(Context::Arithmetic)
            }
            _ if integer => Some(Context::Arithmetic),
            _ => None,
        }
    }
}

impl Scanner<'_> {
    /// `sh` when the word at `start` is only a variable that names the shell (`$SHELL`,
    /// `"${BASH}"`).
    fn names_shell(&self, start: usize) -> Option<String> {
        let rest = self.text(start, self.b.len());
        let word = rest.split([' ', '\t', '\n', ';', '&', '|', '<', '>', '(', ')']).next().unwrap_or_default();
        let var = word.trim_matches('"').strip_prefix('$')?;
        let var = var.strip_prefix('{').and_then(|v| v.strip_suffix('}')).unwrap_or(var);
        SHELL_VARIABLES.contains(&var).then(|| "sh".to_string())
    }

    /// Whether the command word at `command` runs the command that starts at `start`: it
    /// is a wrapper (`sudo`, `timeout`…), or `find` with `-exec`, and every word between
    /// is one of its options, an option's argument, an assignment, a number or another
    /// wrapper (`timeout 30`, `sudo -u app`, `env A=1`, `sudo timeout 5`, `find . -exec
    /// sudo`), not a command of its own (`sudo apt-get install gawk`).
    fn wraps(&self, command: usize, start: usize) -> bool {
        let text = self.text(command, start);
        let mut words: Vec<&str> = text.split_whitespace().collect();
        let exec = words.iter().rposition(|w| matches!(*w, "-exec" | "-execdir" | "-ok" | "-okdir"));
        match exec {
            Some(at) if words.first().is_some_and(|w| basename(w) == "find") => {
                words.drain(..=at);
                if words.is_empty() {
                    return true;
                }
            }
            _ => {}
        }
        if !words.first().is_some_and(|w| WRAPPERS.contains(&basename(w))) {
            return false;
        }
        let mut argument = false;
        // `flock FILE command…`: the lock's file comes before the command.
        let mut lock_file = basename(words[0]) == "flock";
        words[1..].iter().all(|w| {
            let option = w.starts_with('-');
            let wrapper = WRAPPERS.contains(&basename(w));
            let plain = std::mem::take(&mut argument)
                || option
                || w.split_once('=').is_some_and(|(n, _)| is_name(n))
                || w.trim_end_matches(['s', 'm', 'h', 'd']).parse::<f64>().is_ok()
                || w.strip_prefix("0x").is_some_and(|h| u64::from_str_radix(h, 16).is_ok())
                || std::mem::take(&mut lock_file)
                || wrapper;
            lock_file |= basename(w) == "flock";
            argument = w.len() == 2 && option && "ugnskIPpfdCUhrTDLEcx".contains(&w[1..]);
            plain
        })
    }

    /// A value at `start` that starts a word of an ssh, scp or rsync command gives that
    /// word its role (the destination, an option's argument…).
    pub(super) fn value_starts_a_word(&mut self, start: usize) {
        if let Some(Frame::Command(cmd)) = self.stack.last_mut()
            && cmd.word.is_none()
            && !cmd.fresh
            && !cmd.target
        {
            match cmd.kind {
                Kind::Ssh => cmd.ssh.word(Some(""), start),
                Kind::Copy { rsync } => cmd.copy.word(rsync, None, start),
                _ => {}
            }
        }
    }

    /// The text from `at` to where its word ends (a blank or an operator), as written.
    pub(super) fn raw_word(&self, at: usize) -> &str {
        let rest = self.text(at, self.b.len());
        &rest[..rest.find([' ', '\t', '\n', ';', '&', '|', '<', '>', ')']).unwrap_or(rest.len())]
    }

    /// The name of the word at `start` (without its quotes, up to its first template tag)
    /// with a value in it read as text of it (`-p{{ port }}`: `-px`, the port is there),
    /// and whether it holds one.
    pub(super) fn with_values(&self, name: Option<&str>, start: usize) -> (Option<String>, bool) {
        let tagged = self.raw_word(start).contains("{{");
        (name.map(|n| if tagged { format!("{n}x") } else { n.to_string() }), tagged)
    }

    /// The word before `start` on its line (within a window), as written.
    pub(super) fn previous_word(&self, start: usize) -> &str {
        let from = self.boundary(start.saturating_sub(WINDOW));
        let before = self.text(from, start);
        let line = &before[before.rfind('\n').map_or(0, |p| p + 1)..];
        line.trim_end().rsplit([' ', '\t']).next().unwrap_or_default()
    }

    /// The word at `start` without its quotes and backslashes, up to where it ends or a
    /// template tag begins; `None` if part of it is an expansion (`$…`, a backquote).
    pub(super) fn dequoted(&self, start: usize) -> Option<String> {
        let mut out = Vec::new();
        let mut quote: Option<u8> = None;
        let mut i = start;
        while i < self.b.len() && !self.at_tag(i) {
            match self.unquote(&mut quote, &mut i, &mut out) {
                Unquoted::Text => {}
                Unquoted::Expansion => return None,
                Unquoted::Blank | Unquoted::Operator => break,
            }
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    /// Whether a template tag begins at `i`.
    pub(super) fn at_tag(&self, i: usize) -> bool {
        self.b[i] == b'{' && matches!(self.b.get(i + 1), Some(b'{' | b'%' | b'#'))
    }
}

/// What closes the template tag whose second character is `kind` (`{{`, `{%`, `{#`).
pub(super) fn closing(kind: u8) -> &'static str {
    match kind {
        b'{' => "}}",
        b'%' => "%}",
        _ => "#}",
    }
}

impl Scanner<'_> {
    /// Reads the byte at `*i` as the shell does, inside the quote `quote` or none: what it
    /// stands for goes to `out` and `*i` moves past it, or it says where the word stops
    /// (`*i` left there).
    pub(super) fn unquote(&self, quote: &mut Option<u8>, i: &mut usize, out: &mut Vec<u8>) -> Unquoted {
        let c = self.b[*i];
        match (*quote, c) {
            (Some(q), _) if c == q => *quote = None,
            (Some(b'"') | None, b'$' | b'`') => return Unquoted::Expansion,
            (Some(b'"'), b'\\') if matches!(self.b.get(*i + 1), Some(b'$' | b'`' | b'"' | b'\\')) => {
                *i += 1;
                out.push(self.b[*i]);
            }
            (Some(_), _) => out.push(c),
            (None, b'\'' | b'"') => *quote = Some(c),
            (None, b'\\') => {
                *i += 1;
                out.extend(self.b.get(*i).filter(|&&n| n != b'\n'));
            }
            (None, b' ' | b'\t' | b'\n') => return Unquoted::Blank,
            (None, b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')') => return Unquoted::Operator,
            (None, _) => out.push(c),
        }
        *i += 1;
        Unquoted::Text
    }
}

impl super::Cmd {
    /// The next word that is no option is code, for `why`.
    fn code_follows(&mut self, why: &'static str) {
        self.code_next = true;
        self.next_why = Some(why);
    }

    /// One of awk's options, before its program: the program from a file (`-f FILE`)
    /// leaves no program word; `-F`, `-v`… take the next word; `-e` (gawk) gives the
    /// program.
    fn awk_option(&mut self, option: &str) {
        match option {
            "-f" | "--file" => {
                self.code_next = false;
                self.skip = true;
            }
            _ if option.starts_with("-f") || option.starts_with("--file=") => self.code_next = false,
            "-F" | "-v" | "-i" | "-l" | "-W" | "--assign" | "--field-separator" | "--include" | "--load" => {
                self.skip = true
            }
            // gawk's program as an option's argument, a program file or not.
            "-e" | "--source" => self.code_follows(AWK_PROGRAM),
            _ => {}
        }
    }
}

impl Scanner<'_> {
    /// `sudo awk …`, `timeout 5 ssh …`, `find … -exec awk …`: when the word at `start`,
    /// named `name`, is awk, ssh, scp or rsync run by the command before it, it becomes
    /// the command; whether it did.
    fn wrapped_command(&mut self, name: Option<&str>, start: usize) -> bool {
        let cmd = self.command();
        let command_word = cmd.command_word;
        // (`flock` and `runuser` are read as shells for their `-c`; without it they run
        // the command after them, which `wraps` checks.)
        let shell = cmd.kind == Kind::Shell && !cmd.code_next && cmd.code.is_none();
        let open = !cmd.fresh && !cmd.maybe_fresh && (cmd.kind == Kind::Other || shell);
        if !open {
            return false;
        }
        let wrapped = command_word.is_some_and(|w| self.wraps(w, start))
            || matches!(self.previous_word(start), "-exec" | "-execdir" | "-ok" | "-okdir");
        let cmd = self.command();
        match name.map(basename).filter(|_| wrapped) {
            Some(n) if is_awk(n) => {
                cmd.kind = Kind::Awk;
                cmd.code_follows(AWK_PROGRAM);
                true
            }
            Some("ssh") => {
                cmd.kind = Kind::Ssh;
                true
            }
            Some(n @ ("scp" | "rsync")) => {
                cmd.kind = Kind::Copy { rsync: n == "rsync" };
                true
            }
            _ => false,
        }
    }
}

/// What a byte of a word is, read as the shell does.
pub(super) enum Unquoted {
    /// Text of the word (perhaps none: a quote).
    Text,
    /// An expansion begins (`$…`, a backquote).
    Expansion,
    /// Unquoted space, tab or line break.
    Blank,
    /// An unquoted operator (`;`, `|`, `<`…).
    Operator,
}

/// A command's name without its directory (`/usr/bin/awk`: `awk`).
pub(super) fn basename(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// awk by any of its names.
fn is_awk(name: &str) -> bool {
    matches!(basename(name), "awk" | "gawk" | "mawk" | "nawk" | "busybox-awk")
}

/// An interpreter's kind (`python3.11`, `perl`, `node`…): the options whose next word is
/// its program.
pub(super) fn interpreter(name: &str) -> Option<Kind> {
    let versioned =
        |base: &str| name.strip_prefix(base).is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'));
    Some(Kind::Interpreter(match name {
        _ if versioned("python") => &["-c"],
        _ if versioned("perl") => &["-e", "-E"],
        _ if versioned("ruby") => &["-e"],
        "node" | "nodejs" => &["-e", "-p", "--eval", "--print"],
        _ if versioned("php") => &["-r"],
        _ if versioned("lua") => &["-e"],
        "bun" => &["-e", "--eval"],
        "deno" => &[],
        _ => return None,
    }))
}

/// What a command named `text` does with its words, where that matters for a value.
fn command_kind(text: &str) -> Kind {
    match basename(text) {
        "let" => Kind::Arithmetic,
        "declare" | "typeset" | "local" | "export" | "readonly" => Kind::Declare,
        "unset" => Kind::Names,
        "eval" | "trap" | "alias" | "watch" => Kind::Code,
        name if RUN_C.contains(&name) => Kind::Shell,
        name if interpreter(name).is_some() => interpreter(name).unwrap_or(Kind::Other),
        "read" => Kind::Read,
        "printf" | "test" | "[" => Kind::NameAfter(&["-v", "-R"]),
        "wait" => Kind::NameAfter(&["-p"]),
        "[[" => Kind::Test,
        "case" => Kind::Case,
        "function" => Kind::Function,
        "coproc" => Kind::Coproc,
        "ssh" => Kind::Ssh,
        "scp" => Kind::Copy { rsync: false },
        "rsync" => Kind::Copy { rsync: true },
        name if is_awk(name) => Kind::Awk,
        _ => Kind::Other,
    }
}

impl Scanner<'_> {
    /// An identifier starts at `self.i`: if the shell evaluates it as arithmetic here, the
    /// values assigned to that variable must be integers.
    pub(super) fn identifier(&mut self) {
        let end = self.b[self.i..].iter().position(|&b| !is_word_byte(b)).map_or(self.b.len(), |p| self.i + p);
        let name = self.text(self.i, end);
        if !self.evaluates_names() {
            return;
        }
        for (n, at) in &self.assigned {
            if n == name
                && let Some(i) = self.out.get_mut(*at)
                && !matches!(i.context, Context::Refused(_) | Context::Comment)
            {
                i.context = Context::Arithmetic;
            }
        }
    }

    /// Whether a variable name here is evaluated as arithmetic: in `$(( ))`, `(( ))`, a
    /// subscript, `let`, `declare -i`, or a `[[ ]]` that compares numbers.
    pub(super) fn evaluates_names(&self) -> bool {
        if self.stack.iter().any(|f| matches!(f, Frame::Arithmetic { .. } | Frame::Array { arithmetic: true })) {
            return true;
        }
        self.word_of().is_some_and(|cmd| match cmd.kind {
            Kind::Arithmetic | Kind::DeclareInt => true,
            Kind::Test => cmd.numeric,
            _ => false,
        })
    }

    /// The variable a value at `start` is assigned to (`X={{ … }}`, `export X="…{{ … }}"`).
    pub(super) fn assigns_to(&self, start: usize) -> Option<String> {
        let cmd = self.word_of()?;
        let prefix = without_tags(self.text(cmd.word.unwrap_or(start), start), Some("x"));
        let (name, _) = prefix.split_once('=')?;
        let name = name.trim_end_matches('+');
        is_name(name).then(|| name.to_string())
    }

    /// The command whose word is being read here, perhaps inside quotes.
    fn word_of(&self) -> Option<&super::Cmd> {
        let quotes = self.stack.iter().rev().take_while(|f| matches!(f, Frame::Double | Frame::Single | Frame::AnsiC));
        match self.stack.iter().rev().nth(quotes.count()) {
            Some(Frame::Command(cmd)) => Some(cmd),
            _ => None,
        }
    }
}
