//! Command lines a second shell reads again. `ssh` joins its remote command's words with
//! spaces and hands the line to the remote user's shell; git, less and editors run the
//! command line in `GIT_SSH_COMMAND`, `PAGER`, `EDITOR`… with `sh -c`. A value there is
//! written twice: first for where it lands in that line, then for where it is in the
//! script. For ssh, also which of its words are options and which is the destination.

use super::words::Unquoted;
use super::{ANSI_C_AGAIN, Cmd, Context, SSH_CONFIG, Scanner};

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
];

/// ssh's options that take an argument (`-i KEY`, `-p PORT`…).
pub(super) const ARGUMENTS: &str = "BbcDEeFIiJLlmOoPpQRSWw";

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
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum State {
    /// Options, before the destination (`after`: after it).
    #[default]
    Options,
    OptionsAfter,
    /// The next word is an option's argument (`-o`: configuration).
    Argument {
        config: bool,
        after: bool,
    },
    /// After `--` before the destination: the destination, then the remote command.
    Destination,
    /// The remote command's words.
    Remote,
}

impl Ssh {
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
                    Some((at, c)) if at + c.len_utf8() == flags.len() => State::Argument { config: c == 'o', after },
                    Some((_, 'o')) => {
                        self.config = Some(start);
                        options(after)
                    }
                    _ => options(after),
                }
            }
            State::Argument { config, after } => {
                if config {
                    self.config = Some(start);
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
        let leads = before.is_some_and(|b| b.is_empty());
        if ssh.destination == Some(word) && leads {
            return Some(Context::NotAnOption(Box::new(self.quoting(start, end))));
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
        let prefix = self.text(word, start);
        let (name, _) = prefix.split_once('=')?;
        let name = name.trim_end_matches('+');
        let from = word + prefix.find('=')? + 1;
        COMMAND_LINES.contains(&name).then(|| self.read_again(from, start, end))
    }

    /// A value at `start..end` in a line that `from` begins and a second shell reads:
    /// where it lands in that line (the values before it as words of text), then where
    /// it is in the script.
    fn read_again(&self, from: usize, start: usize, end: usize) -> Context {
        let Some(line) = self.remote_line(from, start) else { return Context::Refused(ANSI_C_AGAIN) };
        let line = format!("{line}{{{{ x }}}}");
        match Scanner::new(&line).run().pop().map_or(Context::Bare, |i| i.context) {
            refused @ Context::Refused(_) => refused,
            remote => Context::Remote(Box::new(remote), Box::new(self.quoting(start, end))),
        }
    }

    /// The text from `from` to `to` as the script's shell passes it to ssh, which joins
    /// its words with spaces: quotes and backslashes gone, each value and expansion as
    /// one word of text (`x`), other template tags as nothing.
    fn remote_line(&self, from: usize, to: usize) -> Option<String> {
        let mut out = Vec::with_capacity(to - from);
        let mut quote: Option<u8> = None;
        let mut i = from;
        while i < to {
            if self.at_tag(i) {
                let close = match self.b[i + 1] {
                    b'{' => "}}",
                    b'%' => "%}",
                    _ => "#}",
                };
                if self.b[i + 1] == b'{' {
                    out.push(b'x');
                }
                i = self.text(i + 2, to).find(close).map_or(to, |p| i + 2 + p + 2);
                continue;
            }
            match self.unquote(&mut quote, &mut i, &mut out) {
                Unquoted::Text => {}
                // bash's `$'…'` would have to be decoded to know the line.
                Unquoted::Expansion if quote.is_none() && self.b.get(i + 1) == Some(&b'\'') => return None,
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
        Some(String::from_utf8_lossy(&out).into_owned())
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
