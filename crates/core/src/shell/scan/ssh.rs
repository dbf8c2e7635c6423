//! Command lines a second shell reads again. `ssh` joins its remote command's words with
//! spaces and hands the line to the remote user's shell; git, less and editors run the
//! command line in `GIT_SSH_COMMAND`, `PAGER`, `EDITOR`… with `sh -c`. A value there is
//! written twice: first for where it lands in that line, then for where it is in the
//! script. For ssh, also which of its words are options and which is the destination.

use super::words::Unquoted;
use super::{
    ANSI_C_AGAIN, APPENDED_AGAIN, BLOCK_AGAIN, Cmd, Context, Frame, HEREDOC_AGAIN, Kind, SSH_CONFIG, SSH_FLAGS,
    SUBSTITUTED_AGAIN, Scanner,
};

/// Variables whose value programs run as a command line with `sh -c`.
const COMMAND_LINES: &[&str] = &[
    "GIT_SSH_COMMAND",
    "GIT_PROXY_COMMAND",
    "GIT_EDITOR",
    "GIT_SEQUENCE_EDITOR",
    "GIT_PAGER",
    "GIT_EXTERNAL_DIFF",
    "EDITOR",
    "VISUAL",
    "SUDO_EDITOR",
    "PAGER",
    "MANPAGER",
    "SYSTEMD_PAGER",
    "LESSOPEN",
    "LESSCLOSE",
    "RSYNC_RSH",
    "RSYNC_CONNECT_PROG",
];

/// Whether programs run the value of the environment variable `name` as a command line
/// (`GIT_SSH_COMMAND`, `PAGER`, `RSYNC_RSH`…), with `sh -c` or a split of their own.
pub fn runs_as_command_line(name: &str) -> bool {
    COMMAND_LINES.contains(&name)
}

/// ssh's options that take an argument (`-i KEY`, `-p PORT`…).
const ARGUMENTS: &str = "BbcDEeFIiJLlmOoPpQRSWw";

/// Where an `ssh` command is in its words, and where its roles began. OpenSSH reads
/// options before the destination and again right after it (`ssh web1 -p 22 uptime`),
/// up to the first other word or `--`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Ssh {
    state: State,
    /// The destination word (`[user@]host`, `ssh://…`).
    destination: Option<usize>,
    /// The argument of `-o`: a line of configuration, where `ProxyCommand`,
    /// `LocalCommand` and the like run commands.
    config: Option<usize>,
    /// The remote command's first word…
    remote: Option<usize>,
    /// …and whether ssh was still reading options there, so that a value leading it is
    /// an option if it begins with `-`.
    remote_optional: bool,
    /// A word before the remote command was made at run time (`ssh $SSH_OPTS web1 …`):
    /// which word is the destination, and where options end, cannot be told.
    uncertain: bool,
    /// The words that are (or hold, glued: `-ldeploy`) the argument of `-J` or `-l`: a
    /// jump host or a user, which older OpenSSH puts into a command line for a shell.
    hosts: Vec<usize>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum State {
    /// Options, before the destination…
    #[default]
    Options,
    /// …and after it, up to the first other word.
    OptionsAfter,
    /// The next word is an option's argument (`-o`: configuration; `-J`, `-l`: a host
    /// or a user).
    Argument { config: bool, host: bool, after: bool },
    /// After `--` before the destination: the destination, then the remote command.
    Destination,
    /// The remote command's words.
    Remote,
}

impl Ssh {
    /// The roles after a template block whose branches left ssh in different places
    /// (`ssh {{ h }} {% if sudo %}sudo {% endif %}systemctl …`): the furthest reading,
    /// with which word leads the remote command uncertain.
    pub(super) fn merged(a: &Ssh, b: &Ssh) -> Ssh {
        if a == b {
            return a.clone();
        }
        let rank = |s: State| match s {
            State::Options => 0,
            State::Argument { .. } => 1,
            State::Destination => 2,
            State::OptionsAfter => 3,
            State::Remote => 4,
        };
        let earliest = |x: Option<usize>, y: Option<usize>| match (x, y) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        Ssh {
            state: if rank(a.state) >= rank(b.state) { a.state } else { b.state },
            destination: earliest(a.destination, b.destination),
            config: a.config.or(b.config),
            remote: earliest(a.remote, b.remote),
            remote_optional: a.remote_optional || b.remote_optional,
            uncertain: true,
            hosts: a.hosts.iter().chain(&b.hosts).copied().collect(),
        }
    }

    /// Where the remote command begins, if it has.
    pub(super) fn remote(&self) -> Option<usize> {
        self.remote
    }

    /// A word of the command begins at `start`; `word` is what it is without its quotes,
    /// up to the first template tag (`None`: an expansion makes it, known at run time).
    pub(super) fn word(&mut self, word: Option<&str>, start: usize) {
        if word.is_none() && self.state != State::Remote {
            self.uncertain = true;
        }
        let word = word.unwrap_or("x");
        let options = |after| if after { State::OptionsAfter } else { State::Options };
        self.state = match self.state {
            State::Options if word == "--" => State::Destination,
            State::OptionsAfter if word == "--" => State::Remote,
            State::Options | State::OptionsAfter if word.len() > 1 && word.starts_with('-') => {
                let after = self.state == State::OptionsAfter;
                // Flags, up to the first that takes an argument: the rest of the word is
                // that argument, or the next word is when nothing is left (`-tp 22`).
                let flags = &word[1..];
                match flags.char_indices().find(|&(_, c)| ARGUMENTS.contains(c)) {
                    Some((at, c)) if at + c.len_utf8() == flags.len() => {
                        State::Argument { config: c == 'o', host: matches!(c, 'J' | 'l'), after }
                    }
                    Some((_, 'o')) => {
                        self.config = Some(start);
                        options(after)
                    }
                    Some((_, 'J' | 'l')) => {
                        self.hosts.push(start);
                        options(after)
                    }
                    _ => options(after),
                }
            }
            State::Argument { config, host, after } => {
                if config {
                    self.config = Some(start);
                }
                if host {
                    self.hosts.push(start);
                }
                options(after)
            }
            State::Options => {
                self.destination = Some(start);
                State::OptionsAfter
            }
            // After `--` the destination is never an option, nor is anything after it.
            State::Destination => State::Remote,
            State::OptionsAfter | State::Remote => {
                if self.remote.is_none() {
                    self.remote = Some(start);
                    self.remote_optional = self.state == State::OptionsAfter;
                }
                State::Remote
            }
        };
    }
}

impl Scanner<'_> {
    /// The context of a value at `start..end` in the word at `word` of an ssh command, where
    /// it is more than a word of the script.
    pub(super) fn in_ssh(&self, cmd: &Cmd, word: usize, start: usize, end: usize) -> Option<Context> {
        let ssh = &cmd.ssh;
        let before = self.dequoted(word);
        // Options come before the remote command: in `-o`'s argument a value is refused.
        let option = ssh.remote.is_none_or(|r| word < r);
        if ssh.config == Some(word) || (option && before.as_deref().is_some_and(|w| w.starts_with("-o"))) {
            return Some(Context::Refused(SSH_CONFIG));
        }
        // A jump host (`-J`) or a user (`-l`): older OpenSSH puts them into the command
        // line of ProxyJump's ssh (`%r`), for a shell.
        if option && ssh.hosts.contains(&word) {
            return Some(Context::Host(Box::new(self.quoting(start, end))));
        }
        // Glued to flags that take no argument (`-v{{ … }}`), a value is more flags.
        if option
            && let Some(flags) = before.as_deref().and_then(|w| w.strip_prefix('-'))
            && !flags.starts_with('-')
            && !flags.contains(|c| ARGUMENTS.contains(c))
        {
            return Some(Context::Refused(SSH_FLAGS));
        }
        let leads = self.may_lead(word, start);
        if ssh.destination == Some(word) {
            let host = Context::Host(Box::new(self.quoting(start, end)));
            return Some(if leads { Context::NotAnOption(Box::new(host)) } else { host });
        }
        let from = ssh.remote.filter(|&r| word >= r)?;
        // A redirection's target is the script's own file, not ssh's.
        if cmd.target || self.text(from, word).trim_end().ends_with(['<', '>']) {
            return None;
        }
        Some(match self.read_again(from, start, end) {
            written @ Context::Remote(..) if leads && (ssh.uncertain || (word == from && ssh.remote_optional)) => {
                Context::NotAnOption(Box::new(written))
            }
            context => context,
        })
    }

    /// The context of a value at `start..end` in the assignment at `word` to a variable
    /// whose value programs run as a command line (`GIT_SSH_COMMAND="ssh -i {{ … }}"`).
    pub(super) fn run_by_a_shell(&self, word: usize, start: usize, end: usize) -> Option<Context> {
        let (at, appended) = command_line_assignment(self.text(word, start))?;
        // What the line holds already is not known here.
        Some(if appended { Context::Refused(APPENDED_AGAIN) } else { self.read_again(word + at + 1, start, end) })
    }

    /// The context of a value at `start..end` in rsync's remote shell command line (`-e
    /// "ssh -i {{ … }}"`, `--rsh=…`), which rsync splits into words itself, with quotes.
    pub(super) fn rsync_shell(&self, cmd: &Cmd, word: usize, start: usize, end: usize) -> Option<Context> {
        if cmd.kind != (Kind::Copy { rsync: true }) {
            return None;
        }
        // Flags up to the first that takes an argument, if it is `-e` (`-avze`): where that
        // argument begins in `raw` (its length: the next word).
        let after_e = |raw: &str| {
            let flags = raw.trim_start_matches(['"', '\'']).strip_prefix('-').filter(|f| !f.starts_with('-'))?;
            let at = flags.find(|c| super::copy::RSYNC_ARGUMENTS.contains(c))?;
            (flags[at..].starts_with('e')).then(|| raw.len() - flags.len() + at + 1)
        };
        let prefix = self.text(word, start);
        let previous = self.previous_word(word).trim_matches(['"', '\'']);
        let from = if previous == "--rsh" || after_e(previous) == Some(previous.len()) {
            word
        } else if let Some(at) = prefix.find("--rsh=").filter(|&at| prefix[..at].chars().all(|c| c == '"' || c == '\''))
        {
            word + at + "--rsh=".len()
        } else if let Some(at) = after_e(prefix) {
            word + at
        } else {
            return None;
        };
        Some(self.read_again(from, start, end))
    }

    /// A word of an ssh command begins at `start`, `name` without its quotes (`None`: made
    /// by an expansion); a value in it is text of it (`-p{{ port }}`: the port is there).
    pub(super) fn ssh_word(&mut self, name: Option<&str>, start: usize) {
        let (word, _) = self.with_values(name, start);
        self.command().ssh.word(word.as_deref(), start);
    }

    /// Whether a value at `start` may begin the word at `word`: nothing but quotes and
    /// expansions, which may be empty (`${U:+$U@}{{ host }}`), come before it.
    pub(super) fn may_lead(&self, word: usize, start: usize) -> bool {
        let (mut quote, mut i, mut text) = (None, word, Vec::new());
        while i < start && !self.at_tag(i) {
            match self.unquote(&mut quote, &mut i, &mut text) {
                Unquoted::Expansion => i = self.expansion_end(i),
                Unquoted::Text if text.is_empty() => {}
                _ => return false,
            }
        }
        text.is_empty()
    }

    /// Why a value at `start` inside `$( )` is refused: the substitution's output lands in
    /// code (`eval "$(…)"`, `sh -c "$(…)"`) or in a line another shell reads again (ssh's
    /// remote command, `GIT_SSH_COMMAND=…`), unquoted there whatever the value held.
    pub(super) fn substituted_into_code(&self, start: usize) -> Option<&'static str> {
        let mut commands: Vec<&Cmd> = self
            .stack
            .iter()
            .filter_map(|f| match f {
                Frame::Command(c) => Some(c),
                _ => None,
            })
            .collect();
        commands.pop(); // the value's own command
        commands
            .into_iter()
            .any(|c| {
                let Some(word) = c.word.filter(|&w| w != usize::MAX && w < start) else { return false };
                let code = (c.code.is_some() && c.code == c.word) || c.kind == Kind::Code;
                let remote = c.kind == Kind::Ssh && c.ssh.remote().is_some_and(|r| word >= r);
                let line = command_line_assignment(self.text(word, start)).is_some();
                code || remote || line
            })
            .then_some(SUBSTITUTED_AGAIN)
    }

    /// A value at `start..end` in a line that `from` begins and a second shell reads:
    /// where it lands in that line (the values before it as words of text), then where
    /// it is in the script.
    fn read_again(&self, from: usize, start: usize, end: usize) -> Context {
        let line = match self.remote_line(from, start) {
            Ok(line) => format!("{line}{{{{ x }}}}"),
            Err(why) => return Context::Refused(why),
        };
        match Scanner::new(&line).run().pop().map_or(Context::Bare, |i| i.context) {
            refused @ Context::Refused(_) => refused,
            // The rest of a here-document's delimiter line is not in the line read.
            Context::Heredoc(_) | Context::HeredocLiteral(_) => Context::Refused(HEREDOC_AGAIN),
            remote => Context::Remote(Box::new(remote), Box::new(self.quoting(start, end))),
        }
    }

    /// The text from `from` to `to` as the script's shell passes it on (ssh joins its
    /// words with spaces): quotes and backslashes gone, each value and expansion as one
    /// word of text (`x`), comments as nothing; or why that line cannot be known.
    fn remote_line(&self, from: usize, to: usize) -> Result<String, &'static str> {
        let mut out = Vec::with_capacity(to - from);
        let mut quote: Option<u8> = None;
        // Where the line stood at the first `{% %}` tag in it, if any.
        let mut block_at = None;
        let mut i = from;
        while i < to {
            if self.at_tag(i) {
                let close = super::words::closing(self.b[i + 1]);
                match self.b[i + 1] {
                    b'{' => out.push(b'x'),
                    b'%' => _ = block_at.get_or_insert(out.len()),
                    _ => {}
                }
                i = self.tag_end(i + 2, close, close != "#}").min(to);
                continue;
            }
            match self.unquote(&mut quote, &mut i, &mut out) {
                Unquoted::Text => {}
                Unquoted::Expansion if self.b[i] == b'$' => match self.b.get(i + 1) {
                    // bash's `$'…'` would have to be decoded to know the line.
                    Some(b'\'') if quote.is_none() => return Err(ANSI_C_AGAIN),
                    // `$"…"`: a double-quoted string.
                    Some(b'"') if quote.is_none() => i += 1,
                    Some(&c) if c.is_ascii_alphanumeric() || b"_({[@*#?$!-".contains(&c) => {
                        out.push(b'x');
                        i = self.expansion_end(i).min(to);
                    }
                    // A `$` that starts nothing (`'ERROR$'`, `"a$"`) is itself.
                    _ => {
                        out.push(b'$');
                        i += 1;
                    }
                },
                Unquoted::Expansion => {
                    out.push(b'x');
                    i = self.expansion_end(i).min(to);
                }
                Unquoted::Blank => {
                    if out.last().is_some_and(|&l| l != b' ') {
                        out.push(b' ');
                    }
                    i += 1;
                }
                Unquoted::Operator => {
                    out.push(self.b[i]);
                    i += 1;
                }
            }
        }
        // After a `{% if %}` or `{% for %}` in the line, its branches may leave its quotes
        // apart: where the value lands is known only if nothing after it quotes.
        if block_at.is_some_and(|at| out[at..].iter().any(|c| b"'\"\\$`#".contains(c))) {
            return Err(BLOCK_AGAIN);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Where the expansion starting at `at` (`$NAME`, `${…}`, `$(…)`, `` `…` ``) ends.
    fn expansion_end(&self, at: usize) -> usize {
        let b = self.b;
        let closing = |open: u8, close: u8, from: usize| {
            let mut depth = 0usize;
            for (i, &c) in b.iter().enumerate().skip(from) {
                if c == open {
                    depth += 1;
                } else if c == close {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return i + 1;
                    }
                }
            }
            b.len()
        };
        if b[at] == b'`' {
            return b[at + 1..].iter().position(|&c| c == b'`').map_or(b.len(), |p| at + p + 2);
        }
        match b.get(at + 1) {
            Some(b'(') => closing(b'(', b')', at + 1),
            Some(b'{') => closing(b'{', b'}', at + 1),
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => b[at + 1..]
                .iter()
                .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                .map_or(b.len(), |p| at + 1 + p),
            Some(_) => at + 2,
            None => at + 1,
        }
    }
}

/// Where the `=` is in `prefix`, the text of a word up to a value, when the word assigns
/// (`=`, or appends, `+=`) to a variable that holds a command line.
fn command_line_assignment(prefix: &str) -> Option<(usize, bool)> {
    let at = prefix.find('=')?;
    let (name, appended) = match prefix[..at].strip_suffix('+') {
        Some(name) => (name, true),
        None => (&prefix[..at], false),
    };
    COMMAND_LINES.contains(&name).then_some((at, appended))
}
