//! Parameters never reach a shell unquoted; secrets never reach storage or output.

use crate::support::{Env, SpawnWith, out, runbook};

/// Payloads that would run `touch pwned` (or worse) if a value were pasted into the script.
pub(crate) const CORPUS: &[&str] = &[
    "; touch pwned",
    "&& touch pwned",
    "|| touch pwned",
    "| touch pwned",
    "$(touch pwned)",
    "`touch pwned`",
    "${IFS}touch${IFS}pwned",
    "'; touch pwned; '",
    "\"; touch pwned; \"",
    "\\\"; touch pwned; \\\"",
    "a'b\"c",
    "x\ntouch pwned",
    "x\r\ntouch pwned",
    "$((1+1))",
    "$HOME",
    "~root",
    "*",
    "?",
    "[a-z]*",
    "{a,b}",
    "--output=pwned",
    "-rf /",
    "--help",
    "> pwned",
    ">> pwned",
    "< /etc/passwd",
    "2>pwned",
    "& touch pwned &",
    "#comment",
    "!!",
    "$(printf pwned > pwned)",
    "a b  c",
    "",
    "\t",
    "'",
    "\"",
    "\\",
    "$'\\x74ouch' pwned",
    "<(touch pwned)",
    "%s%n%x",
    "ünïcødé 🚀",
];

#[test]
fn injection_corpus_never_executes() {
    assert!(CORPUS.len() >= 30);
    let env = Env::new();
    env.write_executable("argv.sh", "#!/bin/sh\nprintf '%s' \"$#\" > count\nprintf '%s' \"$1\" > value\n");
    let book = runbook(
        "    p: { type: string }\n",
        "    - id: echo\n      run: ./argv.sh {{ params.p }}\n      rollback:\n        run: ./argv.sh {{ params.p }}\n    - id: out\n      run: printf 'v=%s\\n' \"$OPSBOOK_PARAM_P\" | head -n 1 >> \"$OPSBOOK_OUTPUT\"\n    - id: again\n      run: ./argv.sh {{ steps.out.outputs.v }} && test -e count\n",
    );
    env.write("test.yaml", &book);
    for payload in CORPUS {
        let o = env.run(&["run", "test.yaml", "-p", &format!("p={payload}")]);
        assert_eq!(o.code, 0, "payload {payload:?}: {o:?}");
        assert!(!env.path("pwned").exists(), "payload {payload:?} executed");
        assert_eq!(env.read("count"), "1", "payload {payload:?} must stay one argument");
        let first_line = payload.split('\n').next().unwrap().trim_end_matches('\r');
        assert_eq!(env.read("value"), first_line, "payload {payload:?} via a step output");
    }
    // And through the first step directly (the last run overwrote `value` via `again`).
    let direct = runbook("    p: { type: string }\n", "    - id: echo\n      run: ./argv.sh {{ params.p }}\n");
    env.write("direct.yaml", &direct);
    for payload in CORPUS {
        let o = env.run(&["run", "direct.yaml", "-p", &format!("p={payload}")]);
        assert_eq!(o.code, 0, "{o:?}");
        assert_eq!(env.read("value"), *payload);
        assert!(!env.path("pwned").exists());
    }
}

/// The corpus in every shell context a value can take: inside double and single quotes,
/// and in here-documents with unquoted and quoted delimiters. Each prints exactly the value.
#[test]
fn injection_corpus_never_executes_in_any_quoting_context() {
    let env = Env::new();
    let book = runbook(
        "    p: { type: string }\n",
        concat!(
            "    - id: contexts\n",
            "      run: |\n",
            "        echo \"Deploying {{ params.p }}\" > dq\n",
            "        printf '%s' '<{{ params.p }}>' > sq\n",
            "        printf '%s' \"$(printf '%s' {{ params.p }})\" > sub\n",
            "        cat > hd <<EOF\n",
            "        [{{ params.p }}]\n",
            "        EOF\n",
            "        cat > hl <<'EOF'\n",
            "        [{{ params.p }}]\n",
            "        EOF\n",
            // `<<` in arithmetic is a shift, and a case pattern's `)` does not end `$( )`.
            "        n=$((1 << 2)); printf '%s' {{ params.p }} > ar\n",
            "        printf '%s' \"$(case a in a) echo x;; esac){{ params.p }}\" > cs\n",
        ),
    );
    env.write("contexts.yaml", &book);
    for payload in CORPUS {
        let o = env.run(&["run", "contexts.yaml", "-p", &format!("p={payload}")]);
        assert_eq!(o.code, 0, "payload {payload:?}: {o:?}");
        assert!(!env.path("pwned").exists(), "payload {payload:?} executed");
        assert_eq!(env.read("dq"), format!("Deploying {payload}\n"), "double quotes");
        assert_eq!(env.read("sq"), format!("<{payload}>"), "single quotes");
        assert_eq!(env.read("sub"), payload.trim_end_matches('\n'), "command substitution in double quotes");
        assert_eq!(env.read("hd"), format!("[{payload}]\n"), "here-document");
        assert_eq!(env.read("hl"), format!("[{payload}]\n"), "here-document, quoted delimiter");
        assert_eq!(env.read("ar"), *payload, "after an arithmetic shift");
        assert_eq!(env.read("cs"), format!("x{payload}"), "after a case pattern in $( )");
    }
    // A value that would end the here-document early is refused before anything runs.
    let o = env.run(&["run", "contexts.yaml", "-p", "p=x\nEOF\ntouch pwned"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("would end the here-document early"), "{o:?}");
    assert!(!env.path("pwned").exists());
}

/// Where bash or dash evaluate a value as arithmetic, or as a variable name, a quoted
/// word is not enough (`$((1 + '$(cmd)'))` runs cmd): only integers go in, names never.
#[test]
fn arithmetic_takes_only_integers() {
    let env = Env::new();
    let book = runbook(
        "    n: { type: string }\n",
        concat!(
            "    - id: sums\n",
            "      shell: bash\n",
            "      run: |\n",
            "        echo $(( {{ params.n }} + 1 )) > sum\n",
            "        (( m = {{ params.n }} << 1 )); let k={{ params.n }}\n",
            "        if [[ \"{{ params.n }}\" -gt 0 ]]; then echo \"$m $k\" > more; fi\n",
        ),
    );
    env.write("sums.yaml", &book);
    let o = env.run(&["run", "sums.yaml", "-p", "n=41"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!((env.read("sum").as_str(), env.read("more").as_str()), ("42\n", "82 41\n"));
    // Known before anything runs: the parameter is refused with the step that uses it.
    for payload in ["a[$(touch pwned)]", "$(touch pwned)", "1; touch pwned", "x", "1.5"] {
        std::fs::remove_file(env.path("sum")).unwrap_or_default();
        let o = env.run(&["run", "sums.yaml", "-p", &format!("n={payload}")]);
        assert_eq!(o.code, 2, "{payload:?}: {o:?}");
        let why = "parameter `n`: step `sums` uses it as a number in shell arithmetic";
        assert!(o.stderr.contains(why) && o.stderr.contains("it must be an integer, not `"), "{o:?}");
        assert!(!env.path("pwned").exists(), "payload {payload:?} executed");
        assert!(!env.path("sum").exists(), "nothing ran");
    }
    // A value made by a template (not the parameter as it is) is checked when its step runs.
    env.write(
        "made.yaml",
        &runbook("    n: { type: string }\n", "    - id: made\n      run: echo $(( {{ params.n ~ '' }} + 1 )) > sum\n"),
    );
    for payload in ["a[$(touch pwned)]", "1; touch pwned"] {
        let o = env.run(&["run", "made.yaml", "-p", &format!("n={payload}")]);
        assert_eq!(o.code, 1, "{payload:?}: {o:?}");
        let why =
            if payload.starts_with("a[") { "bash runs the command in such a subscript" } else { "must be an integer" };
        assert!(o.stdout.contains(why), "{o:?}");
        assert!(!env.path("pwned").exists() && !env.path("sum").exists(), "payload {payload:?} executed");
    }
    // A value as a variable name is refused when the runbook is read.
    env.write("names.yaml", &runbook("    n: { type: string }\n", "    - id: u\n      run: unset {{ params.n }}\n"));
    let o = env.run(&["validate", "names.yaml"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("names.yaml:") && o.stdout.contains("would be a variable name"), "{o:?}");
}

#[test]
fn secrets_never_reach_storage_or_output() {
    const SECRET: &str = "S3cr3t-'Value'!";
    let env = Env::new();
    let book = runbook(
        "    pw: { type: secret }\n",
        "    - id: leak\n      run: |\n        echo stdout {{ params.pw }}\n        printf 'split %s\\033[1m%s\\033[0m\\n' \"$(printf %s \"$OPSBOOK_PARAM_PW\" | cut -c1-3)\" \"$(printf %s \"$OPSBOOK_PARAM_PW\" | cut -c4-)\"\n        echo \"stderr $OPSBOOK_PARAM_PW\" >&2\n        echo \"token=$OPSBOOK_PARAM_PW\" >> \"$OPSBOOK_OUTPUT\"\n      rollback:\n        run: echo rollback {{ params.pw }}\n    - id: fail\n      env: { PW: \"{{ params.pw }}\" }\n      run: echo \"$PW\" >&2; exit 1\n      validate: [ { output_contains: \"{{ params.pw }}\" } ]\n",
    );
    let arg = format!("pw={SECRET}");
    let o = env.run_book(&book, &["-p", &arg, "--output", "json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let doc = o.json();
    assert_eq!(doc["params"]["pw"], "***");
    assert_eq!(doc["steps"][0]["outputs"]["token"], "***");
    assert_eq!(doc["steps"][1]["error"], "exited with code 1; output does not contain \"***\"");
    let text = env.run_book(&book, &["-p", &arg]);
    let id = doc["id"].as_str().unwrap();
    let mut shown = vec![o.stdout, o.stderr, text.stdout, text.stderr];
    for args in [vec!["show", id], vec!["show", id, "--output", "json"], vec!["history"], vec!["logs", id]] {
        let r = env.run(&args);
        shown.push(r.stdout);
        shown.push(r.stderr);
    }
    // `r3t-'Value'` is the secret's second half: split from the first by a colour
    // sequence, the secret is masked whole all the same.
    for s in &shown {
        assert!(!s.contains(SECRET) && !s.contains("S3cr3t") && !s.contains("r3t-'Value'"), "secret shown:\n{s}");
    }
    assert!(shown.iter().any(|s| s.contains("stdout ***")), "the masked line is still shown");
    assert!(shown.iter().any(|s| s.contains("split ***")), "and the split one: {shown:?}");
    // Nothing in the database files either (WAL included).
    for entry in std::fs::read_dir(env.db.parent().unwrap()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(6).any(|w| w == b"S3cr3t"), "secret stored on disk");
        assert!(!bytes.windows(11).any(|w| w == b"r3t-'Value'"), "secret stored on disk, split");
    }
}

/// What a template filter makes of a secret (`upper`, a slice, a variable) is no longer
/// the secret's text: it is masked all the same, in output, logs, outputs and storage.
#[test]
fn secrets_through_template_filters_are_masked() {
    let env = Env::new();
    let book = runbook(
        "    pw: { type: secret }\n",
        "    - id: shout\n      env: { LOUD: \"{{ params.pw | lower }}\" }\n      run: |\n        {% set tail = params.pw[3:] %}\n        echo upper {{ params.pw | upper }} tail {{ tail }}\n        echo \"env $LOUD\" >&2\n        echo \"token={{ params.pw | reverse }}\" >> \"$OPSBOOK_OUTPUT\"\n        echo length {{ params.pw | length }}\n",
    );
    let o = env.run_book(&book, &["-p", "pw=HuntEr2-Zulu", "--output", "json"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.json()["steps"][0]["outputs"]["token"], "***");
    let id = o.json()["id"].as_str().unwrap().to_string();
    let logs = env.run(&["logs", &id]);
    assert!(logs.stdout.contains("upper *** tail ***"), "{logs:?}");
    assert!(logs.stdout.contains("env ***") && logs.stdout.contains("length 12"), "{logs:?}");
    let text = env.run_book(&book, &["-p", "pw=HuntEr2-Zulu"]);
    let derived = ["HUNTER2-ZULU", "hunter2-zulu", "tEr2-Zulu", "uluZ-2rEtnuH"];
    for shown in [&o.stdout, &o.stderr, &logs.stdout, &text.stdout, &text.stderr] {
        assert!(!derived.iter().any(|d| shown.contains(d)), "derived secret shown:\n{shown}");
    }
    for entry in std::fs::read_dir(env.db.parent().unwrap()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for d in derived {
            assert!(!bytes.windows(d.len()).any(|w| w == d.as_bytes()), "{d} stored on disk");
        }
    }
    // A secret a character at a time cannot be masked: the step fails before it runs.
    let spelled = runbook(
        "    pw: { type: secret }\n",
        "    - id: spell\n      env: { C: \"{% for c in params.pw %}{{ c }} {% endfor %}\" }\n      run: echo \"$C\" > spelled\n",
    );
    let o = env.run_book(&spelled, &["-p", "pw=HuntEr2-Zulu", "--output", "json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let error = o.json()["steps"][0]["error"].as_str().unwrap().to_string();
    assert!(error.contains("a piece of a secret parameter too short to mask"), "{error}");
    assert!(!env.path("spelled").exists());
    // A target's name is shown and stored: it may not come from a secret.
    let hosts = runbook(
        "    pw: { type: secret }\n",
        "    - id: on\n      targets: { hosts: [\"{{ params.pw }}\"], via: local }\n      run: \"true\"\n",
    );
    env.write("hosts.yaml", &hosts);
    let o = env.run(&["validate", "hosts.yaml"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout.contains(
            "targets.hosts: a target's name is shown and stored as it is, so it may not carry secret parameter `pw`"
        ),
        "{o:?}"
    );
}

/// A secret in an `http` step's URL, which the HTTP client would quote back encoded its
/// own way (`/` and `&` as they are, a space as %20) in its error, never shows.
#[test]
fn secrets_in_urls_stay_out_of_http_errors() {
    let env = Env::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let book = runbook(
        "    tok: { type: secret, required: true }\n",
        &format!("    - id: h\n      http: {{ url: \"http://127.0.0.1:{closed}/x?token={{{{ params.tok }}}}\" }}\n"),
    );
    let o = env.run_book(&book, &["-p", "tok=s3cr3t/with space&x", "--output", "json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let error = o.json()["steps"][0]["error"].as_str().unwrap().to_string();
    assert!(error.starts_with(&format!("GET http://127.0.0.1:{closed}/x?token=***: ")), "{error}");
    let id = o.json()["id"].as_str().unwrap().to_string();
    let shown = [o.stdout, o.stderr, env.run(&["show", &id]).stdout, env.run(&["logs", &id]).stdout];
    for s in &shown {
        assert!(!s.contains("s3cr3t"), "secret shown:\n{s}");
    }
    for entry in std::fs::read_dir(env.db.parent().unwrap()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(6).any(|w| w == b"s3cr3t"), "secret stored on disk");
    }
}

/// Scripts are not passed on the command line (any local user can read
/// /proc/PID/cmdline), and a secret's variable goes only to the steps that name it.
#[test]
fn secrets_stay_out_of_process_lists_and_unrelated_steps() {
    const SECRET: &str = "S3cr3t-in-argv";
    let env = Env::new();
    let book = runbook(
        "    pw: { type: secret }\n",
        concat!(
            "    - id: uses\n",
            "      run: |\n",
            "        test -n \"$OPSBOOK_PARAM_PW\" && echo {{ params.pw }} > /dev/null\n",
            "        tr '\\0' ' ' < /proc/$$/cmdline > cmdline\n",
            "    - id: other\n",
            "      run: env > environment\n",
        ),
    );
    let o = env.run_book(&book, &["-p", &format!("pw={SECRET}")]);
    assert_eq!(o.code, 0, "{o:?}");
    let cmdline = env.read("cmdline");
    assert!(cmdline.contains("sh -e /") && cmdline.contains("/script-"), "{cmdline}");
    assert!(!cmdline.contains(SECRET), "{cmdline}");
    let environment = env.read("environment");
    assert!(!environment.contains("OPSBOOK_PARAM_PW") && !environment.contains(SECRET), "{environment}");
    // The script files are gone once the run is over.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("opsbook-"))
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter(|f| std::fs::read_to_string(f.path()).is_ok_and(|t| t.contains(SECRET)))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Secret values can come from the environment, a file, standard input or a prompt
/// that does not echo: never from the command line, so never in `ps` or the shell's
/// history; and wherever they come from, they are checked and masked alike.
#[test]
fn secrets_come_from_the_environment_a_file_stdin_or_a_prompt() {
    let env = Env::new();
    env.write(
        "test.yaml",
        &runbook(
            "    pw: { type: secret, required: true }\n",
            "    - id: use\n      env: { PW: \"{{ params.pw }}\" }\n      run: test \"$PW\" = hunter2 && echo \"got $PW\"\n",
        ),
    );
    env.write("pw.txt", "hunter2\n");
    let logs_of = |o: &crate::support::Out| {
        let id = o.json()["id"].as_str().unwrap().to_string();
        env.run(&["logs", &id]).stdout
    };
    let from_env = out(env
        .cmd(&["run", "test.yaml", "-p", "pw=@env:THE_PW", "--output", "json"])
        .env("THE_PW", "hunter2")
        .output()
        .unwrap());
    assert_eq!(from_env.code, 0, "{from_env:?}");
    assert_eq!(logs_of(&from_env), "[use] got ***\n");
    let from_file = env.run(&["run", "test.yaml", "-p", "pw=@file:pw.txt", "--output", "json"]);
    assert_eq!(from_file.code, 0, "{from_file:?}");
    let unset = env.run(&["run", "test.yaml", "-p", "pw=@env:NOT_SET_ANYWHERE"]);
    assert_eq!(unset.code, 2);
    assert!(unset.stderr.contains("-p pw=@env:NOT_SET_ANYWHERE: NOT_SET_ANYWHERE is not set"), "{unset:?}");
    let mut child = env
        .cmd(&["run", "test.yaml", "--secret", "pw", "--output", "json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"hunter2\n").unwrap();
    let from_stdin = out(child.wait_with_output().unwrap());
    assert_eq!(from_stdin.code, 0, "{from_stdin:?}");
    let empty = env.run(&["run", "test.yaml", "--secret", "pw"]);
    assert!(empty.stderr.contains("--secret pw: standard input ended before its value"), "{empty:?}");

    // On a terminal, a required secret not given is asked for, and not echoed.
    let cmd = format!("exec {} run test.yaml", env!("CARGO_BIN_EXE_opsbook"));
    let child = env.cmd(&[]).spawn_with_program("script", &["-qec", &cmd, "/dev/null"]);
    // Answer once the prompt is shown (echo is off by then).
    let (status, shown) = crate::support::answer_prompt(child, "not shown): ", "hunter2");
    assert!(status.success(), "{shown}");
    assert!(shown.contains("got ***"), "{shown}");
    assert!(!shown.contains("hunter2"), "not echoed: {shown}");
}

/// `rollback` (and `resume`) need again only the secrets what is left to run uses.
#[test]
fn rollback_asks_only_for_the_secrets_it_uses() {
    let env = Env::new();
    env.write(
        "test.yaml",
        &runbook(
            "    deploy_pw: { type: secret, required: true }\n    undo_pw: { type: secret, required: true }\n    spare_pw: { type: secret, required: true }\n",
            "    - id: deploy\n      run: test {{ params.deploy_pw }} = dddd && touch deployed\n      rollback: { run: test \"$OPSBOOK_PARAM_UNDO_PW\" = uuuu && rm deployed }\n    - id: boom\n      run: exit 1\n",
        )
        .replace("spec:\n", "spec:\n  on_failure: stop\n"),
    );
    let ran = env.run(&[
        "run",
        "test.yaml",
        "-p",
        "deploy_pw=dddd",
        "-p",
        "undo_pw=uuuu",
        "-p",
        "spare_pw=ssss",
        "--output",
        "json",
    ]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let id = ran.json()["id"].as_str().unwrap().to_string();
    let none = env.run(&["rollback", &id]);
    assert_eq!(none.code, 2, "{none:?}");
    assert!(none.stderr.contains("`undo_pw`: is a secret and is never stored"), "{none:?}");
    assert!(
        !none.stderr.contains("deploy_pw") && !none.stderr.contains("spare_pw"),
        "only what the rollback uses: {none:?}"
    );
    let rolled = env.run(&["rollback", &id, "-p", "undo_pw=uuuu"]);
    assert_eq!(rolled.code, 0, "{rolled:?}");
    assert!(!env.path("deployed").exists());
}

/// A server's own credentials (its secret key, its database password) do not reach its
/// steps: the variables are not passed on, and a value a step finds anyway is masked.
#[test]
fn a_servers_own_credentials_stay_out_of_its_steps() {
    let env = Env::new();
    let key = "5e0c2f8a1b3d4c6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6";
    let op = crate::server::token(&env, "olga", &["author", "operator"]);
    let mut cmd = env.cmd(&["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--workers", "1"]);
    cmd.env("OPSBOOK_SECRET_KEY", key).env("OPSBOOK_TOKEN", &op).env("PGPASSWORD", "pg-password-1");
    let (mut child, url, _) = crate::support::start_server(cmd);
    env.write("found.txt", &format!("key={key}\n"));
    env.write(
        "books/leak.yaml",
        &runbook(
            "",
            "    - id: look\n      run: env | grep -E 'OPSBOOK_(SECRET_KEY|TOKEN)|PGPASSWORD' || echo none passed on\n    - id: find\n      run: cat $T/found.txt\n",
        )
        .replace("name: test", "name: leak"),
    );
    assert_eq!(crate::server::client(&env, &url, &op, &["push", "books"]).code, 0);
    let ran = crate::server::client(&env, &url, &op, &["run", "leak", "--output", "json"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let id = ran.json()["id"].as_str().unwrap().to_string();
    let logs = crate::server::client(&env, &url, &op, &["logs", &id]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(logs.stdout, "[look] none passed on\n[find] key=***\n", "{logs:?}");
}

/// A here-document a shell reads as its program is code: a value there is refused before
/// anything runs, and the form the message gives (an argument) carries any value as data.
#[test]
fn here_documents_read_by_a_shell_take_no_values() {
    let env = Env::new();
    let fed = runbook(
        "    app: { type: string }\n",
        "    - id: first\n      run: touch first-ran\n    - id: restart\n      run: |\n        bash -s <<OPSBOOK_END\n        echo \"restarting {{ params.app }}\" > restarted\n        OPSBOOK_END\n",
    );
    env.write("fed.yaml", &fed);
    let o = env.run(&["validate", "fed.yaml"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("fed.yaml:16:26: run: this here-document"), "{o:?}");
    assert!(o.stdout.contains("is read by a shell or an interpreter"), "{o:?}");
    let o = env.run(&["run", "fed.yaml", "-p", "app=x\"; touch pwned; echo \""]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(!env.path("pwned").exists() && !env.path("first-ran").exists(), "nothing ran");
    let safe = runbook(
        "    app: { type: string }\n",
        "    - id: restart\n      run: |\n        bash -s -- {{ params.app }} <<'OPSBOOK_END'\n        echo \"restarting $1\" > restarted\n        OPSBOOK_END\n",
    );
    env.write("safe.yaml", &safe);
    let o = env.run(&["run", "safe.yaml", "-p", "app=x\"; touch pwned; echo \""]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(env.read("restarted"), "restarting x\"; touch pwned; echo \"\n");
    assert!(!env.path("pwned").exists());
}

/// Escape sequences in a parameter reach no terminal through what a runbook renders for
/// people (an approval's message, a manual step's instructions) or through an error
/// quoting what was typed.
#[test]
fn escape_sequences_in_parameters_are_shown_as_plain_text() {
    let env = Env::new();
    let book = runbook(
        "    s: { type: string }\n",
        "    - id: b\n      approval: { message: \"Promote {{ params.s }}?\" }\n    - id: m\n      manual: { instructions: \"Drain {{ params.s }}\", checklist: [\"Check {{ params.s }}\"] }\n",
    );
    env.write("esc.yaml", &book);
    let value = "s=1.2\x1b]52;c;cGF3bmVk\x07\x1b[2J";
    let o = env.run(&["run", "esc.yaml", "-p", value]);
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stdout.contains("Promote 1.2?"), "{o:?}");
    let (e, _) = env.last();
    let shown = env.run(&["show", &e.id]);
    let typed = env.run(&["run", "esc.yaml", "-p", "s=1", "-p", "zz\x1b[2J=1"]);
    assert_eq!(typed.code, 2, "{typed:?}");
    assert!(typed.stderr.contains("parameter `zz`: unknown parameter"), "{typed:?}");
    for out in [&o.stdout, &o.stderr, &shown.stdout, &typed.stderr] {
        assert!(!out.contains('\x1b') && !out.contains('\x07'), "an escape sequence reached the terminal: {out:?}");
    }
}

/// An output that held a secret is stored masked: a later step that would be handed it
/// fails before it runs, rather than run with `***` for the value.
#[test]
fn a_masked_output_is_never_handed_on_as_stars() {
    let env = Env::new();
    let book = runbook(
        "    pw: { type: secret }\n",
        "    - id: a\n      env: { P: \"{{ params.pw }}\" }\n      run: echo \"conn=postgres://app:$P@db/x\" >> \"$OPSBOOK_OUTPUT\"\n    - id: b\n      run: printf '%s\\n' {{ steps.a.outputs.conn }} > received\n",
    );
    let o = env.run_book(&book, &["-p", "pw=hunter22", "--output", "json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let doc = o.json();
    assert_eq!(doc["steps"][0]["outputs"]["conn"], "postgres://app:***@db/x");
    let error = doc["steps"][1]["error"].as_str().unwrap();
    assert!(error.starts_with("run: an earlier step's output it names held a secret and is stored masked"), "{error}");
    assert!(!env.path("received").exists(), "the step did not run");
}

/// An `http` step's values stay values: the corpus through a JSON body (inside a string
/// and as a value), a form body and the URL's path and query arrive at a real server
/// on loopback as exactly the value, and never as JSON fields, form fields or path
/// segments of their own.
#[test]
fn http_requests_carry_values_as_values() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some(req) = crate::support::Request::read(&stream) else { continue };
            let _ = write!(stream, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            log.lock().unwrap().push(req);
        }
    });
    let env = Env::new();
    let book = runbook(
        "    p: { type: string }\n    port: { type: integer }\n",
        concat!(
            "    - id: json\n",
            "      http:\n",
            "        method: POST\n",
            "        url: \"http://127.0.0.1:{{ params.port }}/items/{{ params.p }}?q={{ params.p }}&env=staging\"\n",
            "        body: '{\"text\": \"Deploying {{ params.p }}\", \"env\": \"staging\", \"raw\": {{ params.p }}, \"n\": {{ params.port }}}'\n",
            "    - id: form\n",
            "      http:\n",
            "        method: POST\n",
            "        url: \"http://127.0.0.1:{{ params.port }}/form\"\n",
            "        headers: { Content-Type: application/x-www-form-urlencoded }\n",
            "        body: \"text={{ params.p }}&env=staging\"\n",
        ),
    );
    env.write("http.yaml", &book);
    for payload in CORPUS.iter().filter(|p| !matches!(**p, "" | "." | "..")) {
        seen.lock().unwrap().clear();
        let o = env.run(&["run", "http.yaml", "-p", &format!("p={payload}"), "-p", &format!("port={port}")]);
        assert_eq!(o.code, 0, "payload {payload:?}: {o:?}");
        let requests = std::mem::take(&mut *seen.lock().unwrap());
        assert_eq!(requests.len(), 2, "payload {payload:?}");
        let (json, form) = (&requests[0], &requests[1]);
        assert_eq!(json.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
        let expected = serde_json::json!({
            "text": format!("Deploying {payload}"), "env": "staging", "raw": payload, "n": port,
        });
        assert_eq!(body, expected, "payload {payload:?}");
        let (path, query) = json.path.split_once('?').unwrap();
        let segments: Vec<String> = path.split('/').map(|s| decode(s, false)).collect();
        assert_eq!(segments, ["", "items", payload], "payload {payload:?}");
        let pairs: Vec<(String, String)> = query
            .split('&')
            .map(|kv| kv.split_once('=').map(|(k, v)| (decode(k, true), decode(v, true))).unwrap())
            .collect();
        assert_eq!(pairs, [("q".to_string(), payload.to_string()), ("env".into(), "staging".into())]);
        let form: Vec<(String, String)> = String::from_utf8_lossy(&form.body)
            .split('&')
            .map(|kv| kv.split_once('=').map(|(k, v)| (decode(k, true), decode(v, true))).unwrap())
            .collect();
        assert_eq!(form, [("text".to_string(), payload.to_string()), ("env".into(), "staging".into())]);
    }
    // A whole path segment of `..` would move up the path: refused, nothing sent.
    seen.lock().unwrap().clear();
    let o = env.run(&["run", "http.yaml", "-p", "p=..", "-p", &format!("port={port}")]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("would move up the path"), "{o:?}");
    assert!(seen.lock().unwrap().is_empty());
}

/// Percent-decoding (and `+` as a space in a query or form).
fn decode(text: &str, plus: bool) -> String {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b'+' if plus => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// A runbook test mocks an `http` step's answer, not how its request is written: what a
/// run would refuse (a `..` segment, a line break in a header) fails the test's run too.
#[test]
fn mocked_http_steps_render_their_request() {
    let env = Env::new();
    let book = runbook(
        "    p: { type: string }\n",
        "    - id: get\n      http:\n        url: \"http://127.0.0.1:9/files/{{ params.p }}\"\n        headers: { X-Note: \"{{ params.p }}\" }\n",
    );
    env.write("h.yaml", &book);
    env.write(
        "h.test.yaml",
        concat!(
            "tests:\n",
            "  - name: a plain value\n    params: { p: a }\n    mocks: { get: { http: { status: 200 } } }\n    expect: { status: succeeded }\n",
            "  - name: up the path\n    params: { p: \"..\" }\n    mocks: { get: { http: { status: 200 } } }\n",
            "    expect: { status: failed, error_contains: would move up the path }\n",
            "  - name: a header's line break\n    params: { p: \"a\\nb\" }\n    mocks: { get: { http: { status: 200 } } }\n",
            "    expect: { status: failed, error_contains: \"http.headers.X-Note: a header's value may not hold a line break\" }\n",
        ),
    );
    let o = env.run(&["test", "h.yaml"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("3 passed, 0 failed"), "{o:?}");
}
