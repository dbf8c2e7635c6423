//! `scp` and `rsync`. An operand `host:path` names a remote file: the host goes to ssh as
//! its destination, and the path to the remote user's shell, which reads it again, with
//! legacy scp (OpenSSH before 9.0, or `scp -O`) and with rsync before 3.2.4. So a value
//! in a host holds only a host name's characters, a value in a remote path only
//! characters no shell treats specially (unless `scp -s` or `rsync -s` keeps the path
//! from the shell), and a value leading an operand may not begin with `-`.

use super::blocks::without_tags;
use super::{COPY_PROGRAM, Cmd, Context, SSH_CONFIG, Scanner};

/// scp's options that take an argument (`-i KEY`, `-P PORT`…).
const SCP_ARGUMENTS: &str = "cDFiJloPSX";
/// rsync's short options that take an argument (`-e` is read as a command line elsewhere).
const RSYNC_ARGUMENTS: &str = "efBMT";
/// rsync's long options whose argument it sends to the remote rsync on its command line,
/// which the remote shell reads (rsync before 3.2.4, without `-s`).
const RSYNC_SENT: &[&str] = &[
    "backup-dir",
    "suffix",
    "compare-dest",
    "copy-dest",
    "link-dest",
    "partial-dir",
    "temp-dir",
    "chmod",
    "chown",
    "usermap",
    "groupmap",
    "iconv",
    "checksum-choice",
    "compress-choice",
    "skip-compress",
    "max-size",
    "min-size",
    "max-delete",
    "max-alloc",
    "timeout",
    "block-size",
    "modify-window",
    "compress-level",
    "checksum-seed",
    "bwlimit",
    "files-from",
];
/// rsync's other long options that take an argument, which stays on this side.
const RSYNC_LOCAL: &[&str] = &[
    "address",
    "contimeout",
    "copy-as",
    "debug",
    "early-input",
    "exclude",
    "exclude-from",
    "filter",
    "include",
    "include-from",
    "info",
    "log-file",
    "log-file-format",
    "only-write-batch",
    "out-format",
    "outbuf",
    "password-file",
    "port",
    "read-batch",
    "rsh",
    "sockopts",
    "stop-after",
    "stop-at",
    "write-batch",
];

/// What an option's argument is to the command.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    /// scp's `-o`: a line of ssh configuration.
    Config,
    /// A command run: scp's `-S` program; rsync's `--rsync-path` and `-M`, which go to
    /// the remote shell.
    Program,
    /// scp's `-J`: a jump host, put into a command line by older OpenSSH.
    Host,
    /// An rsync option's argument sent to the remote rsync on its command line, for the
    /// remote shell (`--backup-dir`, `--suffix`, `-T`…).
    Sent,
    /// Anything else (`-i KEY`, `-P PORT`): a word.
    Other,
}

/// Where an `scp` or `rsync` command is in its words.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Copy {
    /// After `--`: no word is an option.
    ended: bool,
    /// `scp -s` (SFTP), `rsync -s`/`--secluded-args`: remote paths reach no shell.
    protected: bool,
    /// The next word is the argument of an option…
    pending: Option<Role>,
    /// …and these words are (or hold, glued: `-Jbastion`) such arguments.
    arguments: Vec<(usize, Role)>,
}

impl Copy {
    /// The reading after a template block whose branches left the command in different
    /// places: the stricter of each.
    pub(super) fn merged(a: &Copy, b: &Copy) -> Copy {
        let mut arguments = a.arguments.clone();
        arguments.extend(b.arguments.iter().filter(|x| !a.arguments.contains(x)));
        Copy {
            ended: a.ended && b.ended,
            protected: a.protected && b.protected,
            pending: a.pending.or(b.pending),
            arguments,
        }
    }

    /// A word of the command (rsync's, or scp's) begins at `start`; `word` is what it is
    /// without its quotes, up to the first template tag (`None`: an expansion makes it).
    pub(super) fn word(&mut self, rsync: bool, word: Option<&str>, start: usize) {
        if let Some(role) = self.pending.take() {
            self.arguments.push((start, role));
            return;
        }
        let Some(word) = word.filter(|w| !self.ended && w.len() > 1 && w.starts_with('-')) else { return };
        if word == "--" {
            self.ended = true;
            return;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, glued) = long.split_once('=').map_or((long, false), |(n, _)| (n, true));
            let role = match name {
                "protect-args" | "secluded-args" if rsync => {
                    self.protected = true;
                    return;
                }
                "rsync-path" | "remote-option" if rsync => Role::Program,
                _ if rsync && RSYNC_SENT.contains(&name) => Role::Sent,
                _ if rsync && RSYNC_LOCAL.contains(&name) => Role::Other,
                // scp has no long options; rsync's others take no argument.
                _ => return,
            };
            if glued {
                self.arguments.push((start, role));
            } else {
                self.pending = Some(role);
            }
            return;
        }
        let takes = if rsync { RSYNC_ARGUMENTS } else { SCP_ARGUMENTS };
        let flags = &word[1..];
        for (at, c) in flags.char_indices() {
            if c == 's' {
                self.protected = true;
            }
            if takes.contains(c) {
                let role = match (rsync, c) {
                    (false, 'o') => Role::Config,
                    (false, 'S') | (true, 'M') => Role::Program,
                    (false, 'J') => Role::Host,
                    (true, 'B' | 'T') => Role::Sent,
                    _ => Role::Other,
                };
                if at + 1 == flags.len() {
                    self.pending = Some(role);
                } else {
                    self.arguments.push((start, role));
                }
                return;
            }
        }
    }
}

impl Scanner<'_> {
    /// A word of an scp or rsync command begins at `start`, `name` without its quotes.
    pub(super) fn copy_word(&mut self, rsync: bool, name: Option<&str>, start: usize) {
        self.command().copy.word(rsync, name, start);
    }

    /// The context of a value at `start..end` in the word at `word` of an scp or rsync
    /// command, where it is more than a word of the script.
    pub(super) fn in_copy(&self, cmd: &Cmd, rsync: bool, word: usize, start: usize, end: usize) -> Option<Context> {
        let copy = &cmd.copy;
        let quoting = Box::new(self.quoting(start, end));
        if let Some(&(_, role)) = copy.arguments.iter().find(|(w, _)| *w == word) {
            return match role {
                Role::Config => Some(Context::Refused(SSH_CONFIG)),
                Role::Program => Some(Context::Refused(COPY_PROGRAM)),
                Role::Host => Some(Context::Host(quoting)),
                Role::Sent if !copy.protected => Some(Context::RemotePath(quoting)),
                Role::Sent | Role::Other => None,
            };
        }
        // The word around the value as the command sees it, other values as `x`.
        let plain = |text: &str| without_tags(text, Some("x")).replace(['"', '\'', '\\'], "");
        let before = plain(self.text(word, start));
        if !copy.ended && before.starts_with('-') {
            return None;
        }
        let rest = self.text(end, self.b.len());
        let after = plain(&rest[..rest.find([' ', '\t', '\n', ';', '&', '|', '<', '>', ')']).unwrap_or(rest.len())]);
        let operand = match operand_part(&before, &after, rsync) {
            Part::Local => return None,
            Part::Host => Context::Host(quoting),
            Part::Path if copy.protected => return None,
            Part::Path => Context::RemotePath(quoting),
            Part::Either => Context::CopyOperand(quoting, !copy.protected),
        };
        Some(if !copy.ended && self.may_lead(word, start) { Context::NotAnOption(Box::new(operand)) } else { operand })
    }
}

/// Where a value lands in an operand: `before` and `after` are the operand's text on
/// either side of it.
#[derive(Debug, PartialEq)]
enum Part {
    /// A local file, or a remote one reached without a shell (rsync's daemon).
    Local,
    /// The host (`{{ h }}:/srv`).
    Host,
    /// A remote path (`web1:{{ p }}`), or text an expansion made may have made one.
    Path,
    /// Either, as the value says (`{{ dest }}`): see [`Context::CopyOperand`].
    Either,
}

fn operand_part(before: &str, after: &str, rsync: bool) -> Part {
    if rsync && (before.contains("::") || before.starts_with("rsync://")) {
        return Part::Local;
    }
    if let Some(url) = before.strip_prefix("scp://") {
        return if url.contains('/') { Part::Path } else { Part::Host };
    }
    let first = |s: &str, cs: &[char]| s.find(cs).unwrap_or(usize::MAX);
    let (slash, colon, expansion) = (first(before, &['/']), first(before, &[':']), first(before, &['$', '`']));
    // A `/` before any `:` makes a local file name (scp and rsync read it so).
    if slash < colon && slash < expansion {
        return Part::Local;
    }
    if colon < usize::MAX || expansion < usize::MAX {
        return Part::Path;
    }
    if first(after, &[':']) < first(after, &['/']) { Part::Host } else { Part::Either }
}

#[cfg(test)]
mod tests {
    use super::{Part, operand_part};
    use crate::shell::{Context, escape, interpolations};

    fn contexts(script: &str) -> Vec<Context> {
        interpolations(script).into_iter().map(|i| i.context).collect()
    }

    #[test]
    fn scp_and_rsync_operands() {
        use Context::*;
        let b = || Box::new(Bare);
        let leading = |c: Context| NotAnOption(Box::new(c));
        for (script, expected) in [
            ("scp app.tar {{ dest }}", vec![leading(CopyOperand(b(), true))]),
            ("scp app.tar web1:{{ path }}", vec![RemotePath(b())]),
            ("scp app.tar \"deploy@{{ h }}:/srv/{{ p }}\"", vec![Host(Box::new(Double)), RemotePath(Box::new(Double))]),
            ("scp {{ h }}:/var/log/app.log .", vec![leading(Host(b()))]),
            ("scp /srv/{{ f }} web1:", vec![Bare]),
            ("scp -P {{ port }} -i {{ key }} a web1:", vec![Bare, Bare]),
            ("scp -s app.tar web1:{{ path }}", vec![Bare]),
            ("scp -- {{ src }} web1:", vec![CopyOperand(b(), true)]),
            ("sudo scp -q a web1:{{ p }}", vec![RemotePath(b())]),
            ("rsync -az ./dist/ {{ h }}:/srv/app/", vec![leading(Host(b()))]),
            ("rsync -az ./dist/ web1:{{ p }}", vec![RemotePath(b())]),
            ("rsync -azs ./dist/ web1:{{ p }}", vec![Bare]),
            ("rsync --secluded-args a web1:{{ p }}", vec![Bare]),
            ("rsync a web1::backups/{{ p }}", vec![Bare]),
            ("rsync --exclude={{ x }} a web1:", vec![Bare]),
            ("rsync --exclude \"{{ x }}\" a web1:", vec![Double]),
            ("rsync -a --delete {{ src }} web1:", vec![leading(CopyOperand(b(), true))]),
            ("rsync --backup-dir={{ d }} a web1:", vec![RemotePath(b())]),
            ("rsync --suffix \"{{ s }}\" -T {{ t }} a web1:", vec![RemotePath(Box::new(Double)), RemotePath(b())]),
            ("rsync -s --backup-dir {{ d }} a web1:", vec![Bare]),
            ("rsync a $DEST/{{ p }}", vec![RemotePath(b())]),
            ("timeout 60 rsync -a {{ src }} /tmp/", vec![leading(CopyOperand(b(), true))]),
        ] {
            assert_eq!(contexts(script), expected, "{script}");
        }
        for script in
            ["scp -S {{ prog }} a web1:", "rsync --rsync-path={{ p }} a web1:", "rsync --rsync-path \"{{ p }}\" a b:"]
        {
            assert_eq!(contexts(script), [Refused(super::COPY_PROGRAM)], "{script}");
        }
        assert_eq!(contexts("scp -o {{ o }} a web1:"), [Refused(super::SSH_CONFIG)]);
        assert_eq!(contexts("scp -J {{ j }} a web1:"), [Host(b())]);
        assert_eq!(contexts("rsync -e \"ssh -p {{ port }}\" a web1:"), [Remote(b(), Box::new(Double))]);
        assert_eq!(contexts("sudo rsync -e \"ssh -i {{ k }}\" a web1:"), [Remote(b(), Box::new(Double))]);
    }

    #[test]
    fn values_in_operands_fit_where_they_land() {
        use Context::*;
        let either = CopyOperand(Box::new(Bare), true);
        for ok in ["app.tar", "my report.pdf", "web1:/srv/app", "deploy@web1:releases/1.4.2", "web1:"] {
            assert!(escape(ok, &either).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("web1:/tmp/x;touch pwned", "remote path of scp or rsync"),
            ("web1:$(id)", "remote path"),
            ("web 1:/srv", "host of an scp or rsync operand"),
        ] {
            assert!(escape(bad, &either).unwrap_err().contains(why), "{bad}");
        }
        assert!(escape("web1:/a b", &CopyOperand(Box::new(Bare), false)).is_ok(), "no shell reads it");
        let path = RemotePath(Box::new(Bare));
        assert_eq!(escape("/srv/app-1.4.2/*.tar", &path).unwrap(), "'/srv/app-1.4.2/*.tar'");
        assert!(escape("/srv/a'b", &path).is_err());
    }

    #[test]
    fn operand_parts() {
        for (before, after, part) in [
            ("", "", Part::Either),
            ("backup-", ".tar", Part::Either),
            ("", ":/srv", Part::Host),
            ("deploy@", ":", Part::Host),
            ("web1:", "", Part::Path),
            ("web1:/srv/", "", Part::Path),
            ("$HOST", "", Part::Path),
            ("/srv/", "", Part::Local),
            ("./a:", "", Part::Local),
            ("scp://web1/", "", Part::Path),
            ("scp://", "/srv", Part::Host),
        ] {
            assert_eq!(operand_part(before, after, false), part, "{before:?} {after:?}");
        }
        assert_eq!(operand_part("web1::module/", "", true), Part::Local);
        assert_eq!(operand_part("rsync://web1/", "", true), Part::Local);
        assert_eq!(operand_part("web1::module/", "", false), Part::Path);
    }
}
