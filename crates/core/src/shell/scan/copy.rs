//! `scp` and `rsync`. An operand `host:path` names a remote file: the host goes to ssh as
//! its destination, and the path to the remote user's shell, which reads it again, with
//! legacy scp (OpenSSH before 9.0, or `scp -O`) and with rsync before 3.2.4. So a value
//! in a host holds only a host name's characters, a value in a remote path only
//! characters no shell treats specially (unless `scp -s` or `rsync -s` keeps the path
//! from the shell), and a value leading an operand may not begin with `-`.

use super::blocks::without_tags;
use super::{COPY_FLAGS, COPY_PROGRAM, Cmd, Context, SSH_CONFIG, Scanner};

/// scp's options that take an argument (`-i KEY`, `-P PORT`…).
const SCP_ARGUMENTS: &str = "cDFiJloPSX";
/// rsync's short options that take an argument (`-e` is read as a command line elsewhere).
pub(super) const RSYNC_ARGUMENTS: &str = "efBMT";
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
    /// A file that may be remote (`--files-from=host:list`): read as an operand is.
    Operand,
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
    /// An operand so far may name a remote file (`host:path`, or made at run time).
    remote: bool,
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
            remote: a.remote || b.remote,
        }
    }

    /// A word of the command (rsync's, or scp's) begins at `start`; `word` is what it is
    /// without its quotes, up to the first template tag (`None`: an expansion makes it).
    pub(super) fn word(&mut self, rsync: bool, word: Option<&str>, start: usize) {
        if let Some(role) = self.pending.take() {
            self.arguments.push((start, role));
            return;
        }
        if !word.is_some_and(|w| !self.ended && w.len() > 1 && w.starts_with('-')) {
            self.remote |= word.is_none_or(may_be_remote);
            return;
        }
        let Some(word) = word else { return };
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
                // The last of these wins.
                "no-protect-args" | "no-secluded-args" | "no-s" | "old-args" if rsync => {
                    self.protected = false;
                    return;
                }
                "rsync-path" | "remote-option" if rsync => Role::Program,
                "files-from" if rsync => Role::Operand,
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
            match c {
                's' => self.protected = true,
                // scp's legacy protocol, after `-s` or not.
                'O' if !rsync => self.protected = false,
                _ => {}
            }
            if takes.contains(c) {
                let role = match (rsync, c) {
                    (false, 'o') => Role::Config,
                    (false, 'S' | 'D') | (true, 'M') => Role::Program,
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
        let (name, tagged) = self.with_values(name, start);
        let copy = &mut self.command().copy;
        copy.word(rsync, name.as_deref(), start);
        // An operand with a value in it may be remote (`deploy@{{ host }}:/srv/`).
        if tagged && !name.as_deref().is_some_and(|n| n.starts_with('-')) {
            copy.remote = true;
        }
    }

    /// The context of a value at `start..end` in the word at `word` of an scp or rsync
    /// command, where it is more than a word of the script.
    pub(super) fn in_copy(&self, cmd: &Cmd, rsync: bool, word: usize, start: usize, end: usize) -> Option<Context> {
        let copy = &cmd.copy;
        let quoting = Box::new(self.quoting(start, end));
        let role = copy.arguments.iter().find(|(w, _)| *w == word).map(|&(_, role)| role);
        match role {
            Some(Role::Config) => return Some(Context::Refused(SSH_CONFIG)),
            Some(Role::Program) => return Some(Context::Refused(COPY_PROGRAM)),
            Some(Role::Host) => return Some(Context::Host(quoting)),
            // (Sent only when a file is remote: `rsync --link-dest=… /a/ /b/` is local.)
            Some(Role::Sent) if !copy.protected && (copy.remote || self.remote_operand_after(end)) => {
                return Some(Context::RemotePath(quoting));
            }
            Some(Role::Sent | Role::Other) => return None,
            Some(Role::Operand) | None => {}
        }
        // The word around the value as the command sees it, other values as `$` (made
        // when the step runs, as an expansion is).
        let plain = |text: &str| without_tags(text, Some("$")).replace(['"', '\'', '\\'], "");
        let mut before = plain(self.text(word, start));
        if role == Some(Role::Operand) {
            // `--files-from=web1:{{ … }}`: what follows the `=` is the operand.
            before = before.split_once('=').map_or(before.clone(), |(_, b)| b.to_string());
        } else if !copy.ended && before.starts_with('-') {
            // `--name=…` is that option's argument; a value in an option's name, or glued
            // to flags that take no argument (`-{{ … }}`, `-av{{ … }}`), would be options.
            let argument = before.starts_with("--") && before.contains('=');
            return if argument { None } else { Some(Context::Refused(COPY_FLAGS)) };
        }
        let after = plain(self.raw_word(end));
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

impl Scanner<'_> {
    /// Whether a word after `end`, to the end of the command, may name a remote file.
    fn remote_operand_after(&self, end: usize) -> bool {
        let rest = self.text(end, self.b.len());
        let mut command = rest;
        for (i, c) in rest.char_indices() {
            let continued = c == '\n' && rest[..i].ends_with('\\');
            if matches!(c, ';' | '&' | '|') || (c == '\n' && !continued) {
                command = &rest[..i];
                break;
            }
        }
        // (The rest of the value's own word first, if the value does not end it.)
        let own = usize::from(!command.starts_with([' ', '\t', '\\']));
        command.split_whitespace().skip(own).filter(|w| !w.starts_with('-')).any(may_be_remote)
    }
}

/// Whether an operand as written may name a remote file: a `:` before any `/`, or text
/// made when the step runs.
fn may_be_remote(word: &str) -> bool {
    let first = |c: char| word.find(c).unwrap_or(usize::MAX);
    first(':') < first('/') || word.contains(['$', '`']) || word.contains("{{")
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
    // rsync's daemon (`host::module`, `rsync://host/module`) reads paths itself; an IPv6
    // address's `::` (`[2001:db8::5]:/srv`) is no daemon's.
    let unbracketed: String = before.split('[').map(|s| s.split_once(']').map_or(s, |(_, rest)| rest)).collect();
    if let Some(url) = before.strip_prefix("rsync://").filter(|_| rsync) {
        return if url.contains('/') { Part::Local } else { Part::Host };
    }
    if rsync && unbracketed.find("::").is_some_and(|at| !unbracketed[..at].contains('/')) {
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
    use crate::shell::tests::contexts;
    use crate::shell::{Context, escape};

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
        // Found by an attack trial: arguments glued to their option, values as flags,
        // rsync's `-e` in a cluster or glued, two values in one operand, IPv6 hosts.
        for (script, expected) in [
            ("scp -o{{ o }} a web1:", Refused(super::SSH_CONFIG)),
            ("scp -S{{ p }} a web1:", Refused(super::COPY_PROGRAM)),
            ("scp -D {{ p }} a web1:", Refused(super::COPY_PROGRAM)),
            ("rsync -aT{{ d }} ./dist/ web1:/srv/", RemotePath(b())),
            ("rsync -az -M{{ m }} a web1:", Refused(super::COPY_PROGRAM)),
            ("scp -J{{ j }} a web1:", Host(b())),
            ("rsync -{{ flags }} ./dist/ web1:", Refused(super::COPY_FLAGS)),
            ("scp -v{{ flags }} a web1:", Refused(super::COPY_FLAGS)),
            ("rsync --{{ name }} a web1:", Refused(super::COPY_FLAGS)),
            ("rsync -avze \"ssh -i {{ k }}\" a web1:", Remote(b(), Box::new(Double))),
            ("rsync -az -e\"ssh -p {{ port }}\" a web1:", Remote(b(), Box::new(Double))),
            ("rsync -az \"--rsh=ssh -p {{ port }}\" a web1:", Remote(b(), Box::new(Double))),
            ("rsync -az -e{{ e }} a web1:", Remote(b(), b())),
            ("rsync -az \"-e\" \"ssh -i {{ k }}\" a web1:", Remote(b(), Box::new(Double))),
            ("rsync -az ./dist/ deploy@[2001:db8::5]:/srv/{{ p }}", RemotePath(b())),
            ("rsync -az ./dist/ rsync://{{ h }}/mod/", Host(b())),
            ("flock /tmp/lock rsync -a ./dist/ web1:{{ p }}", RemotePath(b())),
            ("flock -n /tmp/lock scp a web1:{{ p }}", RemotePath(b())),
            ("sudo flock /tmp/lock scp a web1:{{ p }}", RemotePath(b())),
            ("taskset 0x1 scp a web1:{{ p }}", RemotePath(b())),
            ("scp -s -O a web1:{{ p }}", RemotePath(b())),
            ("rsync -s --no-s a web1:{{ p }}", RemotePath(b())),
        ] {
            assert_eq!(contexts(script).last(), Some(&expected), "{script}");
        }
        assert_eq!(contexts("rsync ./dist/ {{ h }}{{ p }}")[1], leading(RemotePath(b())), "the first may hold `host:`");
        // An option sent to the remote side is no remote's when every file is local.
        assert_eq!(contexts("rsync -a --link-dest=\"{{ prev }}\" /srv/a/ /backup/b/"), [Double]);
        assert_eq!(contexts("rsync -a --suffix {{ s }} /srv/a/ web1:/b/"), [RemotePath(b())]);
        assert_eq!(contexts("rsync -a --suffix {{ s }} /srv/a/ \"$DEST\""), [RemotePath(b())]);
        // (Found by review.) An operand that is a value before the option, and a list of
        // files that may be remote.
        for script in [
            "rsync -a {{ src }} {{ dest }} --backup-dir={{ bk }}",
            "rsync -a {{ src }} \"{{ dest }}\" --backup-dir={{ bk }}",
            "rsync -a ./dist/ deploy@{{ host }}:/srv/ --backup-dir={{ bk }}",
        ] {
            assert_eq!(contexts(script).last(), Some(&RemotePath(b())), "{script}");
        }
        assert_eq!(contexts("rsync -a --files-from=web1:{{ p }} / /bk/"), [RemotePath(b())]);
        assert_eq!(contexts("rsync -a --files-from=\"{{ p }}\" / /bk/"), [CopyOperand(Box::new(Double), true)]);
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
        assert_eq!(operand_part("rsync://", "/module/", true), Part::Host);
        assert_eq!(operand_part("deploy@[2001:db8::5]:/srv/", "", true), Part::Path);
        assert_eq!(operand_part("$", "", true), Part::Path, "another value before it");
        assert_eq!(operand_part("web1::module/", "", false), Part::Path);
        assert_eq!(operand_part("web1:/srv/a::b/", "", true), Part::Path, "no daemon's `::`");
    }
}
