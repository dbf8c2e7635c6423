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
    env.write(
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
    let mut perms = std::fs::metadata(env.path("bin/ssh")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(env.path("bin/ssh"), perms).unwrap();
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
    assert!(o.stderr.contains("gives it to ssh where ssh reads options"), "{o:?}");
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
    env.write("pager.sh", "#!/bin/sh\nexec sh -c \"$PAGER\"\n");
    let mut perms = std::fs::metadata(env.path("pager.sh")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(env.path("pager.sh"), perms).unwrap();
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
}
