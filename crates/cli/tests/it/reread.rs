//! Values in lines that a second shell (or interpreter) reads again: ssh's remote
//! command, variables that hold a command line, awk programs.

use crate::security::CORPUS;
use crate::support::{Env, out, runbook};

/// ssh hands its remote command, joined with spaces, to the remote user's shell, which
/// reads it again. A stand-in for ssh on PATH (OpenSSH's reading of options before and
/// after the destination, then `sh -c` of the joined words) shows every value arriving
/// as itself, and a value that ssh would read as an option refused before anything runs.
#[test]
fn ssh_remote_commands_never_run_a_value() {
    let env = Env::new();
    let bin = env.path("bin");
    std::fs::create_dir(&bin).unwrap();
    env.write_executable(
        "bin/ssh",
        concat!(
            "#!/bin/sh\n",
            "options() { while [ $# -gt 0 ]; do case $1 in\n",
            "  --) echo $(($n + 1)); return ;; -[BbcDEeFIiJLlmOoPpQRSWw]) n=$((n + 2)); shift 2 ;;\n",
            "  -*) n=$((n + 1)); shift ;; *) echo $n; return ;; esac; done; echo $n; }\n",
            "n=0; shift $(options \"$@\"); printf '%s\\n' \"$1\" >> destinations; shift\n",
            "n=0; shift $(options \"$@\"); exec sh -c \"$*\"\n",
        ),
    );
    let book = runbook(
        "    p: { type: string }\n    host: { type: string, default: web1 }\n",
        concat!(
            "    - id: remote\n",
            "      run: |\n",
            "        ssh -p 2222 deploy@web1 \"printf '%s' {{ params.p }} > r1\"\n",
            "        ssh {{ params.host }} -tt printf %s {{ params.p }} '>' r2\n",
            "        ssh -i key.pem web1 \"printf '%s' '<{{ params.p }}>' > r3\"\n",
            "        ssh web1 'printf \"%s\" \"[{{ params.p }}]\" > r4'\n",
        ),
    );
    env.write("ssh.yaml", &book);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    for payload in CORPUS.iter().filter(|p| !p.contains('\n')) {
        let o = out(env.cmd(&["run", "ssh.yaml", "-p", &format!("p={payload}")]).env("PATH", &path).output().unwrap());
        assert_eq!(o.code, 0, "payload {payload:?}: {o:?}");
        assert!(!env.path("pwned").exists(), "payload {payload:?} executed");
        assert_eq!(env.read("r1"), *payload, "double quotes, remote bare");
        assert_eq!(env.read("r2"), *payload, "bare words");
        assert_eq!(env.read("r3"), format!("<{payload}>"), "remote single quotes");
        assert_eq!(env.read("r4"), format!("[{payload}]"), "remote double quotes");
    }
    assert_eq!(env.read("destinations").lines().collect::<std::collections::BTreeSet<_>>().len(), 2);
    // A value where ssh reads options would be one: refused before any step runs.
    let o = out(env
        .cmd(&["run", "ssh.yaml", "-p", "p=x", "-p", "host=-oProxyCommand=touch pwned"])
        .env("PATH", &path)
        .output()
        .unwrap());
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("gives it to ssh, scp or rsync where they read options"), "{o:?}");
    assert!(o.stderr.contains("it may not begin with `-`"), "{o:?}");
    assert!(!env.path("pwned").exists());
}

/// A value in an awk program would be awk code (`system()` runs commands): refused at its
/// place; passed with `-v` it is data, and arrives as itself.
#[test]
fn awk_programs_take_values_only_through_v() {
    let env = Env::new();
    let program =
        runbook("    p: { type: string }\n", "    - id: a\n      run: echo x | awk '{ print \"{{ params.p }}\" }'\n");
    env.write("program.yaml", &program);
    let o = env.run(&["validate", "program.yaml"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("program.yaml:") && o.stdout.contains("awk runs this word as its program"), "{o:?}");
    let data = runbook(
        "    p: { type: string }\n",
        "    - id: a\n      run: echo x | awk -v v={{ params.p }} '{ printf \"%s\", v }' > out\n",
    );
    env.write("data.yaml", &data);
    let payload = "\"); system(\"touch pwned\"); print(\"";
    let o = env.run(&["run", "data.yaml", "-p", &format!("p={payload}")]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(env.read("out"), payload);
    assert!(!env.path("pwned").exists());
}

/// git, less and editors run the command line in `GIT_SSH_COMMAND`, `PAGER`, `EDITOR`…
/// with `sh -c`: a value there arrives as itself through both shells.
#[test]
fn command_line_variables_never_run_a_value() {
    let env = Env::new();
    env.write_executable("pager.sh", "#!/bin/sh\nexec sh -c \"$PAGER\"\n");
    let book = runbook(
        "    p: { type: string }\n",
        "    - id: page\n      run: |\n        PAGER=\"printf '%s' {{ params.p }} > out\" ./pager.sh\n        export PAGER='printf \"%s\" \"[{{ params.p }}]\" > out2'\n        ./pager.sh\n",
    );
    env.write("pager.yaml", &book);
    for payload in CORPUS.iter().filter(|p| !p.contains('\n')) {
        let o = env.run(&["run", "pager.yaml", "-p", &format!("p={payload}")]);
        assert_eq!(o.code, 0, "payload {payload:?}: {o:?}");
        assert!(!env.path("pwned").exists(), "payload {payload:?} executed");
        assert_eq!(env.read("out"), *payload);
        assert_eq!(env.read("out2"), format!("[{payload}]"));
    }
    // The same variable set in the step's `env:` is a command line too.
    let book = runbook(
        "    p: { type: string }\n",
        "    - id: page\n      env: { PAGER: \"printf '%s' {{ params.p }} > out3\" }\n      run: ./pager.sh\n",
    );
    env.write("env.yaml", &book);
    for payload in CORPUS.iter().filter(|p| !p.contains('\n')) {
        let o = env.run(&["run", "env.yaml", "-p", &format!("p={payload}")]);
        assert_eq!(o.code, 0, "payload {payload:?}: {o:?}");
        assert!(!env.path("pwned").exists(), "payload {payload:?} executed");
        assert_eq!(env.read("out3"), *payload);
    }
}

/// Legacy scp (OpenSSH before 9.0, or `-O`) and rsync before 3.2.4 hand a remote path
/// (`host:path`) to the remote user's shell. A stand-in for such an scp on PATH reads its
/// options, records each operand's host, and has `sh -c` read each remote path again
/// (with `-s`, SFTP, it takes the path as it is): no value runs; one that does not fit a
/// remote path or a host, or that would be an option, is refused before any step runs.
#[test]
fn scp_remote_paths_never_run_a_value() {
    let env = Env::new();
    std::fs::create_dir(env.path("bin")).unwrap();
    env.write_executable(
        "bin/scp",
        concat!(
            "#!/bin/sh\n",
            "sftp=\n",
            "while [ $# -gt 0 ]; do case $1 in\n",
            "  --) shift; break ;; -s) sftp=1; shift ;; -[cDFiJloPSX]) shift 2 ;; -*) shift ;; *) break ;;\n",
            "esac; done\n",
            "for a in \"$@\"; do case ${a%%/*} in\n",
            "  *:*) printf '%s\\n' \"${a%%:*}\" >> hosts; path=${a#*:}\n",
            "    if [ -n \"$sftp\" ]; then printf '%s\\n' \"$path\" >> remote\n",
            "    else sh -c \"printf '%s\\n' $path >> remote\"; fi ;;\n",
            "  *) printf '%s\\n' \"$a\" >> locals ;;\n",
            "esac; done\n",
        ),
    );
    let path = format!("{}:{}", env.path("bin").display(), std::env::var("PATH").unwrap());
    let last = |file: &str| env.read(file).lines().last().unwrap_or_default().to_string();
    let book = runbook(
        "    p: { type: string }\n",
        "    - id: copy\n      run: scp -P 2222 app.tar deploy@web1:/srv/x-{{ params.p }}\n",
    );
    env.write("scp.yaml", &book);
    let mut arrived = 0;
    for payload in CORPUS.iter().filter(|p| !p.contains('\n')) {
        let o = out(env.cmd(&["run", "scp.yaml", "-p", &format!("p={payload}")]).env("PATH", &path).output().unwrap());
        assert!(!env.path("pwned").exists(), "payload {payload:?} executed");
        if o.code == 0 {
            assert_eq!(last("remote"), format!("/srv/x-{payload}"), "payload {payload:?}");
            assert_eq!(last("hosts"), "deploy@web1");
            arrived += 1;
        } else {
            assert_eq!(o.code, 2, "payload {payload:?}: {o:?}");
            assert!(o.stderr.contains("a value in a remote path of scp or rsync"), "{o:?}");
        }
    }
    assert!(arrived >= 5, "{arrived} payloads fit a remote path");
    // With SFTP (`-s`) the path reaches no shell: any value goes, as itself.
    let sftp =
        runbook("    p: { type: string }\n", "    - id: copy\n      run: scp -s app.tar web1:/srv/{{ params.p }}\n");
    env.write("sftp.yaml", &sftp);
    let o = out(env.cmd(&["run", "sftp.yaml", "-p", "p=a b; c"]).env("PATH", &path).output().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(last("remote"), "/srv/a b; c");
    // A whole operand: local, remote, or refused as it says.
    let whole = runbook("    dest: { type: string }\n", "    - id: copy\n      run: scp app.tar {{ params.dest }}\n");
    env.write("whole.yaml", &whole);
    let run = |dest: &str| {
        out(env.cmd(&["run", "whole.yaml", "-p", &format!("dest={dest}")]).env("PATH", &path).output().unwrap())
    };
    let o = run("web1:/srv/releases");
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!((last("hosts"), last("remote")), ("web1".to_string(), "/srv/releases".to_string()));
    let o = run("backup copy.tar");
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(last("locals"), "backup copy.tar");
    for (dest, why) in [
        ("web1:/srv/x;touch pwned", "a value in a remote path of scp or rsync"),
        ("web1 x:/srv", "a value in the host of an scp or rsync operand"),
        ("-oProxyCommand=touch pwned", "where they read options"),
    ] {
        let o = run(dest);
        assert_eq!(o.code, 2, "{dest}: {o:?}");
        assert!(o.stderr.contains(why), "{dest}: {o:?}");
        assert!(o.stderr.contains("step `copy`"), "{o:?}");
    }
    assert!(!env.path("pwned").exists());
}

/// rsync before 3.2.4 sends some options' arguments (`--backup-dir`, `--suffix`…) to the
/// remote rsync on its command line, which the remote shell reads, as it reads the remote
/// path. A stand-in for such an rsync on PATH does that with `sh -c`: no value runs.
#[test]
fn rsync_remote_arguments_never_run_a_value() {
    let env = Env::new();
    env.write_executable(
        "bin/rsync",
        concat!(
            "#!/bin/sh\n",
            "line=\n",
            "while [ $# -gt 0 ]; do case $1 in\n",
            "  --backup-dir=*|--suffix=*) line=\"$line $1\"; shift ;; --backup-dir|--suffix) line=\"$line $1=$2\"; shift 2 ;;\n",
            "  -*) shift ;; *:*) line=\"$line ${1#*:}\"; shift ;; *) shift ;;\n",
            "esac; done\n",
            "exec sh -c \"printf '%s\\n' $line >> remote\"\n",
        ),
    );
    let path = format!("{}:{}", env.path("bin").display(), std::env::var("PATH").unwrap());
    let book = runbook(
        "    b: { type: string }\n",
        "    - id: sync\n      run: rsync -az --backup-dir={{ params.b }} --suffix \"~{{ params.b }}\" dist/ web1:/srv/\n",
    );
    env.write("rsync.yaml", &book);
    let run =
        |b: &str| out(env.cmd(&["run", "rsync.yaml", "-p", &format!("b={b}")]).env("PATH", &path).output().unwrap());
    let o = run("/srv/backups/2026-12-06");
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(env.read("remote"), "--backup-dir=/srv/backups/2026-12-06\n--suffix=~/srv/backups/2026-12-06\n/srv/\n");
    for payload in ["x;touch pwned", "$(touch pwned)", "`touch pwned`", "a b", "'"] {
        let o = run(payload);
        assert_eq!(o.code, 2, "{payload}: {o:?}");
        assert!(o.stderr.contains("or in an rsync option sent to the remote side"), "{o:?}");
    }
    assert!(!env.path("pwned").exists());
}
