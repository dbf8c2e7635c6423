//! Values in lines a second shell or program reads again: ssh, command-line variables,
//! awk, and the commands that run them.

use super::contexts;
use crate::shell::Context;

#[test]
fn ssh_remote_commands_are_written_for_the_remote_shell_too() {
    use Context::*;
    let remote = |r: Context, l: Context| Remote(Box::new(r), Box::new(l));
    let leading = |c: Context| NotAnOption(Box::new(c));
    assert_eq!(contexts("ssh web1 deploy {{ v }}"), [remote(Bare, Bare)]);
    assert_eq!(contexts("ssh web1 \"deploy {{ v }}\""), [remote(Bare, Double)]);
    assert_eq!(contexts("ssh web1 \"deploy '{{ v }}'\""), [remote(Single, Double)]);
    assert_eq!(contexts("ssh web1 'deploy \"{{ v }}\"'"), [remote(Double, Single)]);
    assert_eq!(contexts("ssh web1 \"echo \\\"{{ v }}\\\"\""), [remote(Double, Double)]);
    assert_eq!(contexts("ssh web1 deploy \"'\" {{ v }} \"'\""), [remote(Single, Bare)]);
    assert_eq!(contexts("ssh web1 \"cd $DIR && deploy {{ v }}\" && echo {{ w }}"), [remote(Bare, Double), Bare]);
    assert_eq!(
        contexts("ssh -p 2222 -i key.pem deploy@{{ h }} uptime {{ v }}"),
        [Host(Box::new(Bare)), remote(Bare, Bare)]
    );
    assert_eq!(
        contexts("ssh -tt -l {{ u }} -p{{ port }} web1 -- {{ v }}"),
        [Host(Box::new(Bare)), Bare, remote(Bare, Bare)]
    );
    // A jump host or a user: older OpenSSH puts them into ProxyJump's command line.
    assert_eq!(
        contexts("ssh -J {{ j }} -vl{{ u }} -i {{ k }} web1 true"),
        [Host(Box::new(Bare)), Host(Box::new(Bare)), Bare]
    );
    assert_eq!(contexts("ssh web1 -p 22 {{ v }}"), [leading(remote(Bare, Bare))]);
    assert_eq!(contexts("ssh web1 deploy > {{ f }}"), [Bare]);
    assert_eq!(contexts("ssh web1 \"echo $(( {{ n }} + 1 ))\""), [Arithmetic], "the script's own");
    assert_eq!(contexts("ssh web1 'echo $(( {{ n }} + 1 ))'"), [remote(Arithmetic, Single)]);
    // Where ssh reads options, a value must not be one.
    assert_eq!(contexts("ssh {{ h }} uptime"), [leading(Host(Box::new(Bare)))]);
    assert_eq!(contexts("ssh -v \"{{ h }}\" uptime"), [leading(Host(Box::new(Double)))]);
    assert_eq!(contexts("ssh -- {{ h }} {{ v }}"), [Bare, remote(Bare, Bare)]);
    // Configuration runs commands (ProxyCommand…); a remote shell running code refuses as
    // a local one does.
    for script in [
        "ssh -o {{ o }} web1 uptime",
        "ssh -o \"ProxyCommand=nc {{ h }} 22\" web1",
        "ssh -o \"ProxyCommand=nc {{ params.host }} 22\" web1 uptime",
        "ssh \"-oProxyCommand={{ h }}\" web1",
        "ssh -vo StrictHostKeyChecking={{ s }} web1",
        "ssh web1 -o {{ o }} uptime",
    ] {
        assert_eq!(contexts(script), [Refused(crate::shell::scan::SSH_CONFIG)], "{script}");
    }
    assert_eq!(contexts("ssh web1 bash -c \"'deploy {{ v }}'\""), [Refused(crate::shell::scan::AS_CODE)]);
    assert_eq!(contexts("ssh web1 \"eval {{ v }}\""), [Refused(crate::shell::scan::AS_CODE)]);
    // Written twice: the script's shell hands ssh the value quoted for the remote shell,
    // which reads back the value.
    let sh = |script: &str| {
        let out = std::process::Command::new("sh").args(["-c", script]).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    for value in ["a'b; c", "$(touch pwned)", "\"x\" `y`", "plain", "-oProxyCommand=id"] {
        let once = crate::shell::escape(value, &Bare).unwrap();
        let twice = crate::shell::escape(value, &remote(Bare, Bare)).unwrap();
        assert_eq!(sh(&format!("printf %s {twice}")), once, "{value}");
        assert_eq!(sh(&format!("printf %s {once}")), value);
        let double = crate::shell::escape(value, &remote(Single, Double)).unwrap();
        assert_eq!(sh(&format!("printf %s \"'{double}'\"")), format!("''{once}''"), "{value}");
    }
    assert!(crate::shell::escape("-oProxyCommand=id", &leading(Bare)).unwrap_err().contains("must not begin with `-`"));
    assert_eq!(crate::shell::escape("web1", &leading(Bare)).unwrap(), "web1");
    let host = Host(Box::new(Bare));
    assert_eq!(crate::shell::escape("deploy@web-1.example.com", &host).unwrap(), "deploy@web-1.example.com");
    assert!(crate::shell::escape("web1 $(id)", &host).unwrap_err().contains("ssh's destination may hold only"));
}

#[test]
fn awk_programs_take_no_values() {
    use Context::*;
    let program = Refused(crate::shell::scan::AWK_PROGRAM);
    for script in [
        "awk '{ print \"{{ p }}\" }' file",
        "awk -F , '{ print $1, \"{{ p }}\" }'",
        "awk -F: -v n=1 {{ p }}",
        "gawk -e 'BEGIN { x = {{ p }} }'",
        "sudo -u app awk '{ print {{ p }} }' log",
        "/usr/bin/mawk -- '{{ p }}'",
        "sudo timeout 5 awk '{ print {{ p }} }' log",
        "find /var/log -name '*.log' -exec sudo awk '{ print \"{{ p }}\" }' {} +",
        "find . -exec awk '{{ p }}' {} ;",
        "timeout 60 find . -exec awk '{{ p }}' {} ;",
    ] {
        assert_eq!(contexts(script), std::slice::from_ref(&program), "{script}");
    }
    // Data: -v assignments, the argument of an option, files, a program from a file.
    assert_eq!(contexts("awk -v v={{ p }} '{ print v }' {{ f }}"), [Bare, Bare]);
    assert_eq!(contexts("awk -F {{ sep }} -v \"v={{ p }}\" '{ print v }' x=1 {{ f }}"), [Bare, Double, Bare]);
    assert_eq!(contexts("awk -f report.awk {{ f }}"), [Bare]);
    assert_eq!(contexts("echo awk {{ p }}"), [Bare]);
    assert_eq!(contexts("awk -v v={{ p }} '{ print v }' | awk '{ print $1 }' > {{ f }}"), [Bare, Bare]);
    // Commands named like awk that a wrapper does not run stay data.
    for script in [
        "sudo apt-get install -y gawk {{ p }}",
        "sudo timeout 5 apt-get install awk {{ p }}",
        "find . -name {{ p }} -print",
        "find . -exec grep -l x {} + | xargs -n1 echo {{ p }}",
    ] {
        assert_eq!(contexts(script), [Bare], "{script}");
    }
}

#[test]
fn command_lines_in_variables_are_written_for_the_shell_that_runs_them() {
    use Context::*;
    let remote = |r: Context, l: Context| Remote(Box::new(r), Box::new(l));
    assert_eq!(contexts("GIT_SSH_COMMAND=\"ssh -i {{ key }}\" git pull"), [remote(Bare, Double)]);
    assert_eq!(contexts("export GIT_SSH_COMMAND={{ cmd }}"), [remote(Bare, Bare)]);
    assert_eq!(contexts("PAGER='less -R {{ x }}' git log"), [remote(Bare, Single)]);
    assert_eq!(contexts("docker run -e EDITOR=\"vim '{{ f }}'\" img"), [remote(Single, Double)]);
    // rsync splits its remote shell's command line itself, quotes and all.
    assert_eq!(
        contexts("rsync -az -e \"ssh -i {{ key }} -o X=no\" {{ src }} h:/opt/"),
        [remote(Bare, Double), NotAnOption(Box::new(CopyOperand(Box::new(Bare), true)))]
    );
    assert_eq!(contexts("rsync --rsh=\"ssh -p {{ port }}\" a h:b"), [remote(Bare, Double)]);
    assert_eq!(contexts("GIT_SSH_COMMAND=\"sh -c {{ x }}\" git pull"), [Refused(crate::shell::scan::AS_CODE)]);
    // Other variables hold data.
    assert_eq!(contexts("GIT_AUTHOR_NAME=\"{{ n }}\" git commit"), [Double]);
    assert_eq!(contexts("export MY_PAGER={{ x }}"), [Declared(Box::new(Bare))]);
}

#[test]
fn commands_run_by_other_commands_are_read_as_themselves() {
    use Context::*;
    let remote = |r: Context, l: Context| Remote(Box::new(r), Box::new(l));
    let leading = |c: Context| NotAnOption(Box::new(c));
    for script in [
        "timeout 30 ssh web1 \"echo {{ v }}\"",
        "exec ssh web1 \"echo {{ v }}\"",
        "env FOO=1 ssh web1 \"echo {{ v }}\"",
        "nohup ssh web1 \"echo {{ v }}\"",
        "sudo -u deploy ssh web1 \"echo {{ v }}\"",
        "echo web1 | xargs -I{} ssh {} \"echo {{ v }}\"",
        "find . -name x -exec ssh web1 \"echo {{ v }}\" \\;",
    ] {
        assert_eq!(contexts(script), [remote(Bare, Double)], "{script}");
    }
    assert_eq!(contexts("timeout 10 ssh {{ h }} uptime"), [leading(Host(Box::new(Bare)))]);
    for script in [
        "exec awk 'BEGIN { print \"{{ v }}\" }'",
        "find . -name data.txt -exec awk '{ print \"{{ v }}\" }' {} \\;",
        "busybox awk '{ print \"{{ v }}\" }'",
    ] {
        assert_eq!(contexts(script), [Refused(crate::shell::scan::AWK_PROGRAM)], "{script}");
    }
    // Arguments named like them are words.
    assert_eq!(contexts("find . -name ssh -newer {{ f }}"), [Bare]);
    assert_eq!(contexts("echo ssh web1 {{ v }}"), [Bare]);
    // awk's own assignments, attached to their option.
    assert_eq!(contexts("awk -vv={{ v }} '{ print v }'"), [Bare]);
    assert_eq!(contexts("gawk --assign=v={{ v }} '{ print v }'"), [Bare]);
    // Where ssh's words are made at run time, no value may be an option.
    assert_eq!(contexts("ssh $SSH_OPTS web1 {{ v }}"), [leading(remote(Bare, Bare))]);
    assert_eq!(contexts("ssh $SSH_OPTS web1 deploy {{ v }}"), [leading(remote(Bare, Bare))]);
    assert_eq!(contexts("ssh -P tag web1 {{ v }}"), [leading(remote(Bare, Bare))]);
    // bash's $'…' in a line read again is not decoded: refused.
    assert_eq!(contexts("ssh web1 $'echo \"{{ v }}\"'"), [Refused(crate::shell::scan::ANSI_C_AGAIN)]);
    assert_eq!(contexts("ssh web1 $'cd /srv' deploy {{ v }}"), [Refused(crate::shell::scan::ANSI_C_AGAIN)]);
    // Wrappers read as shells for their `-c` run the command after them without it.
    assert_eq!(contexts("runuser -u app -- ssh web1 \"ls {{ p }}\"")[0], remote(Bare, Double));
    assert_eq!(contexts("sudo flock /tmp/l ssh web1 \"ls {{ p }}\"")[0], remote(Bare, Double));
    assert_eq!(contexts("flock /tmp/l -c \"deploy {{ p }}\"")[0], Refused(crate::shell::scan::AS_CODE));
}

#[test]
fn lines_read_again_hold_against_quotes_expansions_and_blocks() {
    use crate::shell::scan::{APPENDED_AGAIN, AWK_PROGRAM, BLOCK_AGAIN, HEREDOC_AGAIN, SSH_FLAGS, SUBSTITUTED_AGAIN};
    use Context::*;
    let remote = |r: Context, l: Context| Remote(Box::new(r), Box::new(l));
    let leading = |c: Context| NotAnOption(Box::new(c));
    // A `$` that starts nothing is text of the remote line; `$"…"` is a quote.
    assert_eq!(contexts("ssh web1 \"grep 'ERROR$' app.log; echo '{{ v }}'\""), [remote(Single, Double)]);
    assert_eq!(contexts("ssh web1 \"echo \\\"a$\\\" '{{ v }}'\""), [remote(Single, Double)]);
    // An expansion before the value may be empty: the value may lead the word.
    assert_eq!(contexts("ssh ${SSH_USER:+$SSH_USER@}{{ host }} uptime"), [leading(Host(Box::new(Bare)))]);
    // An assignment in the remote line is read by the remote shell, then by the pager's.
    assert_eq!(contexts("ssh web1 PAGER={{ x }} git log"), [remote(remote(Bare, Bare), Bare)]);
    // A `$( )` whose output is code, or is read again.
    for script in [
        "ssh web1 \"cd $(dirname {{ path }}) && ls\"",
        "GIT_SSH_COMMAND=\"ssh -i $(realpath {{ key }})\" git pull",
        "eval \"$(echo {{ p }})\"",
        "sh -c \"$(echo {{ p }})\"",
    ] {
        assert_eq!(contexts(script), [Refused(SUBSTITUTED_AGAIN)], "{script}");
    }
    assert_eq!(contexts("X=$(dirname {{ path }}); ssh web1 ls"), [Bare]);
    // Flags with no argument take no value glued to them.
    assert_eq!(contexts("ssh -v{{ f }} web1"), [Refused(SSH_FLAGS)]);
    assert_eq!(contexts("ssh -{{ f }} web1"), [Refused(SSH_FLAGS)]);
    assert_eq!(contexts("ssh -p{{ port }} web1"), [Bare]);
    // awk: mawk's -W takes a word; gawk's -e after -f is a program.
    assert_eq!(contexts("mawk -W interactive '{ print \"{{ v }}\" }'"), [Refused(AWK_PROGRAM)]);
    assert_eq!(contexts("gawk -f lib.awk -e '{{ p }}'"), [Refused(AWK_PROGRAM)]);
    // Wrappers: only the command they run, not a word named like one.
    assert_eq!(contexts("sudo apt-get install -y gawk {{ pkg }}"), [Bare]);
    assert_eq!(contexts("timeout 5 echo ssh h {{ v }}"), [Bare]);
    assert_eq!(contexts("sshpass -p secret ssh web1 \"deploy {{ v }}\""), [remote(Bare, Double)]);
    // Template blocks: ssh's roles are followed through them; quotes after one in the
    // remote line cannot be.
    assert_eq!(
        contexts("ssh {{ host }} {% if sudo %}sudo {% endif %}systemctl restart {{ svc }}"),
        [leading(Host(Box::new(Bare))), leading(remote(Bare, Bare))]
    );
    assert_eq!(contexts("ssh h \"echo {% if a %}'{% endif %}{{ v }}\""), [Refused(BLOCK_AGAIN)]);
    // Appending to a command line, and a here-document inside a remote line.
    assert_eq!(contexts("GIT_SSH_COMMAND+=\" -o X={{ v }}\" git pull"), [Refused(APPENDED_AGAIN)]);
    assert_eq!(contexts("ssh web1 'cat <<EOF\n{{ v }}\nEOF'"), [Refused(HEREDOC_AGAIN)]);
}

#[test]
fn here_documents_to_ssh_are_told_apart_by_ssh_s_own_reading() {
    use Context::*;
    // `-tp 2222`: the port, then the host; `web1 -t`: an option after the destination.
    for script in ["ssh -tp 2222 web1 <<EOF\necho {{ p }}\nEOF", "ssh web1 -t <<EOF\necho {{ p }}\nEOF"] {
        assert_eq!(contexts(script), [Refused(crate::shell::scan::FED_TO_SHELL)], "{script}");
    }
    let data = contexts("ssh -p 2222 web1 'cat > f' <<EOF\n{{ p }}\nEOF");
    assert!(matches!(data[0], Heredoc(_)), "{data:?}");
}
