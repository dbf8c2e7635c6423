//! The CLI as a client of the whole server: registry, schedules, analytics, audit,
//! tokens, and carrying executions on (resume, rollback) through it.

use std::process::Stdio;

use crate::server::{Serve, client, serve, token};
use crate::support::{Env, SpawnWith, runbook, start_server};

/// The registry, schedules, analytics, the audit trail and tokens from the command line.
#[test]
fn the_cli_is_a_client_of_the_whole_server() {
    let env = Env::new();
    let admin = token(&env, "ann", &["admin"]);
    let srv = serve(&env);
    let c = |args: &[&str]| client(&env, &srv.url, &admin, args);
    env.write("web/deploy.sh", "#!/bin/sh\necho one\n");
    env.write(
        "web/web.yaml",
        &runbook("", "    - id: go\n      run: sh ./deploy.sh\n").replace("name: test", "name: web"),
    );
    assert_eq!(c(&["push", "web"]).code, 0);
    env.write("web/deploy.sh", "#!/bin/sh\necho two\n");
    env.write(
        "web/web.yaml",
        &runbook("", "    - id: go\n      run: sh ./deploy.sh\n")
            .replace("name: test", "name: web")
            .replace("1.0.0", "1.1.0"),
    );
    assert_eq!(c(&["push", "web"]).code, 0);

    let listed = c(&["list", "--output", "json"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    assert_eq!(listed.json()[0]["latest_version"], "1.1.0");
    let found = c(&["search", "web"]);
    assert!(found.stdout.contains("web") && found.stdout.contains("1.1.0"), "{found:?}");
    let none = c(&["list", "--tag", "nothing-has-this"]);
    assert!(none.stderr.contains("no runbook matches"), "{none:?}");
    let versions = c(&["versions", "web"]);
    assert_eq!(versions.code, 0, "{versions:?}");
    assert!(versions.stdout.contains("1.0.0") && versions.stdout.contains("1.1.0"), "{versions:?}");
    let diff = c(&["diff", "web", "1.0.0", "1.1.0"]);
    assert_eq!(diff.code, 0, "{diff:?}");
    assert!(diff.stdout.contains("-  version: 1.0.0\n+  version: 1.1.0\n"), "{diff:?}");
    assert!(diff.stdout.contains("--- web 1.0.0: deploy.sh\n+++ web 1.1.0: deploy.sh\n"), "{diff:?}");
    assert!(diff.stdout.contains("-echo one\n+echo two\n"), "{diff:?}");
    let shown = c(&["show", "web"]);
    assert_eq!(shown.code, 0, "{shown:?}");
    assert!(shown.stdout.contains("web 1.1.0 (active, maintenance)"), "{shown:?}");
    let moved = c(&["lifecycle", "web", "deprecated", "--reason", "web2 replaces it"]);
    assert_eq!(moved.code, 0, "{moved:?}");
    assert!(moved.stdout.contains("web: active -> deprecated"), "{moved:?}");
    let bad = c(&["lifecycle", "web", "draft", "--reason", "no"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(
        bad.stderr.contains("cannot go from deprecated to draft; from deprecated it can go to active or archived"),
        "{bad:?}"
    );

    // A dry run of a published runbook is rendered here; nothing is submitted.
    let dry = c(&["run", "web", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(dry.stdout.contains("sh ./deploy.sh"), "{dry:?}");
    assert!(dry.stdout.contains("note: deprecated: a real run warns; prefer its replacement"), "{dry:?}");
    assert_eq!(c(&["history", "--output", "json"]).json().as_array().unwrap().len(), 0, "nothing ran");
    let ran = c(&["run", "web", "--output", "json"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    // (web was deprecated above.)
    assert!(ran.stderr.contains("warning: runbook `web` is deprecated; prefer its replacement"), "{ran:?}");
    // Its log says so too, for whoever reads it later.
    let logs = c(&["logs", ran.json()["id"].as_str().unwrap()]);
    assert!(logs.stdout.contains("[check] warning: runbook `web` is deprecated; prefer its replacement"), "{logs:?}");
    let mine = c(&["history", "--actor", "ann", "--since", "1h", "--output", "json"]);
    assert_eq!(mine.json().as_array().unwrap().len(), 1, "{mine:?}");
    let nobody = c(&["history", "--actor", "bob", "--output", "json"]);
    assert_eq!(nobody.json().as_array().unwrap().len(), 0, "{nobody:?}");
    let bogus = c(&["history", "--status", "bogus"]);
    assert!(bogus.stderr.contains("unknown status `bogus`: use one of queued, running"), "{bogus:?}");
    let short = c(&["logs", "06h"]);
    assert!(short.stderr.contains("a shortened id needs 4 or more characters"), "{short:?}");
    let empty = c(&["history", "--runbook", "nosuch"]);
    assert!(empty.stderr.contains("no execution matches"), "{empty:?}");
    let not_url = env.run(&["login", "notaurl", "--token", "x"]);
    assert_eq!(not_url.code, 2);
    assert!(not_url.stderr.contains("expected the server's http:// or https:// URL"), "{not_url:?}");
    let bad_since = c(&["history", "--since", "yesterday-ish"]);
    assert_eq!(bad_since.code, 2);
    assert!(bad_since.stderr.contains("--since `yesterday-ish`: expected a time"), "{bad_since:?}");

    let made = c(&["schedules", "create", "web", "--cron", "0 3 * * *", "--timezone", "Europe/Paris"]);
    assert_eq!(made.code, 0, "{made:?}");
    assert!(made.stdout.contains(" 03:00 CE"), "the next run in the schedule's zone: {made:?}");
    let id = made.stdout.split_whitespace().nth(1).unwrap().to_string();
    let schedules = c(&["schedules", "list", "--output", "json"]);
    assert_eq!(schedules.json()[0]["timezone"], "Europe/Paris", "{schedules:?}");
    assert_eq!(schedules.json()[0]["roles"], serde_json::json!(["admin"]), "{schedules:?}");
    let table = c(&["schedules", "list"]);
    assert!(table.stdout.contains("Roles") && table.stdout.contains("┆ admin │"), "{table:?}");
    let empty = c(&["schedules", "delete", ""]);
    assert_eq!(empty.code, 2, "{empty:?}");
    assert!(empty.stderr.contains("schedules delete: give the id of a schedule"), "{empty:?}");
    assert_eq!(c(&["schedules", "delete", &id[..6]]).code, 0, "a prefix names it");
    assert_eq!(c(&["schedules", "list", "--output", "json"]).json().as_array().unwrap().len(), 0);

    let figures = c(&["analytics", "--output", "json"]);
    assert_eq!(figures.json()["runbooks"][0]["succeeded"], 1, "{figures:?}");
    assert!(c(&["analytics"]).stdout.contains("100%"));
    let audit = c(&["audit", "--action", "runbook.lifecycle", "--since", "1h", "--output", "json"]);
    assert_eq!(audit.json().as_array().unwrap().len(), 1, "{audit:?}");
    assert_eq!(audit.json()[0]["details"]["reason"], "web2 replaces it");
    // The newest records by default, in order; the first with --oldest.
    let seqs = |args: &[&str]| {
        let all = [&["audit", "--output", "json"][..], args].concat();
        c(&all).json().as_array().unwrap().iter().map(|r| r["seq"].as_i64().unwrap()).collect::<Vec<_>>()
    };
    let every = seqs(&["--limit", "1000"]);
    assert!(every.len() > 3, "{every:?}");
    assert_eq!(seqs(&["--limit", "2"]), every[every.len() - 2..], "the newest two");
    assert_eq!(seqs(&["--limit", "2", "--oldest"]), every[..2], "the first two");

    let made = c(&["tokens", "create", "--user", "ci", "--role", "operator", "--expires", "30d"]);
    assert_eq!(made.code, 0, "{made:?}");
    assert!(made.stdout.trim().starts_with("obk_"), "{made:?}");
    let listed = c(&["tokens", "list", "--output", "json"]);
    let ci = listed.json().as_array().unwrap().iter().find(|t| t["user"] == "ci").cloned().unwrap();
    assert_eq!(c(&["tokens", "revoke", ci["id"].as_str().unwrap()]).code, 0);
    let refused = client(&env, &srv.url, made.stdout.trim(), &["history"]);
    assert_eq!(refused.code, 2, "a revoked token: {refused:?}");

    // Without a server these say where to go instead of answering from here.
    for args in [&["versions", "web"][..], &["schedules", "list"], &["audit"], &["search", "x"]] {
        let o = env.run(args);
        assert_eq!(o.code, 2, "{args:?}: {o:?}");
        assert!(o.stderr.contains("`opsbook login URL` first, or pass --server URL"), "{o:?}");
    }
}

/// `resume` and `rollback` through the server: refusals first (nothing changes), secrets
/// supplied again and checked, then the server carries the execution on and the CLI
/// follows it.
#[test]
fn resume_and_rollback_through_the_server() {
    let env = Env::new();
    let admin = token(&env, "ann", &["admin"]);
    let start = |env: &Env| {
        let args = ["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--workers", "2"];
        let (child, url, _) = start_server({
            let mut c = env.cmd(&args);
            c.env("OPSBOOK_LEASE", "4s");
            c
        });
        Serve { child, url }
    };
    let srv = start(&env);
    let c = |url: &str, args: &[&str]| client(&env, url, &admin, args);
    let params = "    pw: { type: secret, required: true }\n";
    env.write(
        "books/undo.yaml",
        &runbook(
            params,
            "    - id: make\n      run: touch \"$T/made\"\n      rollback: { run: \"test {{ params.pw }} = hunter2 && rm -- $T/made && echo undone\" }\n    - id: boom\n      run: exit 4\n",
        )
        .replace("name: test", "name: undo")
        .replace("spec:\n", "spec:\n  on_failure: stop\n"),
    );
    env.write(
        "books/slow.yaml",
        &runbook(params, "    - id: wait\n      idempotent: true\n      run: test -e \"$T/once\" || { touch \"$T/once\"; sleep 30; }\n    - id: after\n      run: touch \"$T/resumed\"\n")
            .replace("name: test", "name: slow"),
    );
    assert_eq!(c(&srv.url, &["push", "books"]).code, 0);

    // Shown as a local run is: the failure, then the rollbacks (with on_failure: rollback).
    env.write(
        "books/auto.yaml",
        &runbook("", "    - id: one\n      run: echo did\n      rollback: { run: echo undid }\n    - id: two\n      run: exit 3\n")
            .replace("name: test", "name: auto"),
    );
    assert_eq!(c(&srv.url, &["push", "books/auto.yaml"]).code, 0);
    let auto = c(&srv.url, &["run", "auto"]);
    assert_eq!(auto.code, 1, "{auto:?}");
    let failed_at = auto.stdout.find("two failed").unwrap_or_else(|| panic!("{auto:?}"));
    let undid_at = auto.stdout.find("undid").unwrap_or_else(|| panic!("{auto:?}"));
    assert!(failed_at < undid_at, "the failure, then the rollback: {auto:?}");
    assert!(auto.stdout.contains("rollback of one succeeded"), "{auto:?}");
    // A failure whose steps have no rollback: a rollback asked for finds nothing, says so
    // and changes nothing (as locally: no audit record, no run).
    env.write(
        "books/bare.yaml",
        &runbook("", "    - id: one\n      run: \"true\"\n    - id: two\n      run: exit 3\n")
            .replace("name: test", "name: bare")
            .replace("spec:\n", "spec:\n  on_failure: stop\n"),
    );
    assert_eq!(c(&srv.url, &["push", "books/bare.yaml"]).code, 0);
    let bare = c(&srv.url, &["run", "bare", "--output", "json"]);
    let bare_id = bare.json()["id"].as_str().unwrap().to_string();
    let nothing = c(&srv.url, &["rollback", &bare_id]);
    assert_eq!(nothing.code, 0, "{nothing:?}");
    assert!(nothing.stdout.contains("nothing to roll back: no step of execution"), "{nothing:?}");
    let audit = c(&srv.url, &["audit", "--action", "execution.rollback", "--output", "json"]);
    assert!(!audit.stdout.contains(&bare_id), "nothing was recorded: {audit:?}");
    let failed = c(&srv.url, &["run", "undo", "-p", "pw=hunter2", "--output", "json"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    let id = failed.json()["id"].as_str().unwrap().to_string();
    assert!(env.path("made").exists());
    let again = c(&srv.url, &["resume", &id, "-p", "pw=hunter2"]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains("has failed; only waiting or interrupted executions can resume"), "{again:?}");
    let no_secret = c(&srv.url, &["rollback", &id]);
    assert_eq!(no_secret.code, 2, "{no_secret:?}");
    assert!(no_secret.stderr.contains("parameter `pw`: is a secret and is never stored"), "{no_secret:?}");
    let wrong = c(&srv.url, &["rollback", &id, "-p", "pw=guess"]);
    assert!(wrong.stderr.contains("differs from the value the execution started with"), "{wrong:?}");
    assert!(env.path("made").exists(), "nothing was done");
    // On a terminal, the secret the server says it still needs is asked for (not echoed).
    let cmd = format!("exec {} --server {} rollback {id}", env!("CARGO_BIN_EXE_opsbook"), srv.url);
    let child = env.cmd(&[]).env("OPSBOOK_TOKEN", &admin).spawn_with_program("script", &["-qec", &cmd, "/dev/null"]);
    let (status, screen) = crate::support::answer_prompt(child, "pw (secret, not shown): ", "hunter2");
    assert!(status.success(), "{screen}");
    assert!(!screen.contains("hunter2"), "{screen}");
    assert!(!env.path("made").exists(), "the rollback ran on the server");
    // Shown as a local one is: header, rollback column, rollback lines.
    let shown = c(&srv.url, &["show", &id]);
    assert!(shown.stdout.contains("  runbook   undo v1.0.0 (sha256 "), "{shown:?}");
    assert!(shown.stdout.contains("  actor     ann"), "{shown:?}");
    assert!(shown.stdout.contains("Rollback") && shown.stdout.contains("  rollback succeeded"), "{shown:?}");
    let logs = c(&srv.url, &["logs", &id, "--timestamps"]);
    assert!(logs.stdout.lines().any(|l| l.ends_with("[make rollback] undone") && l.starts_with("20")), "{logs:?}");
    let twice = c(&srv.url, &["rollback", &id, "-p", "pw=hunter2"]);
    assert_eq!(twice.code, 2);
    assert!(twice.stderr.contains("was already rolled back"), "{twice:?}");

    // Interrupted by a server that died mid-step: resumed, the idempotent step again.
    let mut run = env.cmd(&["--server", &srv.url, "run", "slow", "-p", "pw=hunter2"]);
    let mut follower = run.env("OPSBOOK_TOKEN", &admin).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let slow = loop {
        let h = c(&srv.url, &["history", "--runbook", "slow", "--status", "running", "--output", "json"]);
        if let Some(id) = h.json()[0]["id"].as_str() {
            break id.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "never ran");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    drop(srv); // kill -9
    let _ = follower.kill();
    let _ = follower.wait();
    std::thread::sleep(std::time::Duration::from_millis(4500)); // the lease lapses (4 s: long enough for heartbeats on a loaded machine)
    let srv = start(&env);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let shown = c(&srv.url, &["show", &slow, "--output", "json"]);
        if shown.json()["status"] == "interrupted" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never marked interrupted: {shown:?}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let resumed = c(&srv.url, &["resume", &slow, "-p", "pw=hunter2", "--output", "json"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    assert_eq!(resumed.json()["status"], "succeeded");
    assert!(env.path("resumed").exists());
    let audit = c(&srv.url, &["audit", "--action", "execution.resume", "--output", "json"]);
    assert_eq!(audit.json()[0]["details"]["secrets_supplied"][0], "pw", "{audit:?}");
}

/// A server that cannot be reached, or says it is unavailable (as an API node does while
/// its database is down), exits 4: worth a retry, unlike a refusal (2) or a failure (1).
#[test]
fn an_unavailable_server_exits_4() {
    use std::io::Write;
    let env = Env::new();
    let run = |server: &str| {
        crate::support::out(env.cmd(&["--server", server, "history"]).env("OPSBOOK_TOKEN", "obk_x_y").output().unwrap())
    };
    let gone = run("http://127.0.0.1:9");
    assert_eq!(gone.code, 4, "{gone:?}");
    assert!(gone.stderr.contains("cannot reach http://127.0.0.1:9"), "{gone:?}");
    // A server answering each request with the next of these statuses.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let answers =
            [(503, "database unavailable"), (502, "bad gateway"), (500, "boom"), (403, "not allowed"), (504, "")];
        for ((status, message), stream) in answers.into_iter().zip(listener.incoming()) {
            let mut stream = stream.unwrap();
            let _ = crate::support::Request::read(&stream);
            // The last as a proxy answers: no error document of opsbook's.
            let body = if message.is_empty() {
                "<html>Gateway Timeout</html>".to_string()
            } else {
                format!(r#"{{"error":{{"code":"x","message":"{message}"}}}}"#)
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    for (code, says) in [
        (4, "server unavailable: database unavailable"),
        (4, "bad gateway"),
        (1, "server error: boom"),
        (2, "not allowed"),
        (
            4,
            "answered HTTP 504 Gateway Timeout to /api/v1/executions: the server (or the proxy before it) cannot serve now",
        ),
    ] {
        let o = run(&url);
        assert_eq!(o.code, code, "{o:?}");
        assert!(o.stderr.contains(says), "{o:?}");
    }
}
