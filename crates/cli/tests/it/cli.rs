//! Exit codes, JSON documents, validation output and the helper subcommands.

use crate::support::{Env, out, runbook};

const PARAMS: &str = "    version: { type: string, required: true, pattern: \"\\\\d+\\\\.\\\\d+\\\\.\\\\d+\" }
    replicas: { type: integer, default: 2, min: 1, max: 20 }
    environment: { type: enum, values: [staging, production], required: true }
";

#[test]
fn exit_codes() {
    let env = Env::new();
    let ok = env.run_book(&runbook("", "    - id: a\n      run: \"true\"\n"), &[]);
    assert_eq!(ok.code, 0, "{ok:?}");
    let failed = env.run_book(&runbook("", "    - id: a\n      run: exit 4\n"), &[]);
    assert_eq!(failed.code, 1, "{failed:?}");
    let invalid = env.run_book(&runbook("", "    - id: a\n      runn: exit 4\n"), &[]);
    assert_eq!(invalid.code, 2, "{invalid:?}");
    assert!(invalid.stderr.contains("test.yaml:10:7: unknown field `runn` (did you mean `run`?)"), "{invalid:?}");
    let waiting = env.run_book(&runbook("", "    - id: a\n      approval: { approvers: [\"role:sre\"] }\n"), &[]);
    assert_eq!(waiting.code, 3, "{waiting:?}");
    let missing = env.run(&["run", "nope.yaml"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("cannot read nope.yaml"), "{missing:?}");
    let unknown = env.run(&["show", "zzzzzzzz"]);
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("execution `zzzzzzzz` not found"), "{unknown:?}");
}

#[test]
fn every_parameter_problem_is_reported_and_nothing_runs() {
    let env = Env::new();
    let book = runbook(PARAMS, "    - id: a\n      run: touch ran\n");
    let out = env.run_book(&book, &["-p", "version=1.x", "-p", "replicas=25", "-p", "colour=red"]);
    assert_eq!(out.code, 2, "{out:?}");
    for msg in [
        "parameter `colour`: unknown parameter; known: version, replicas, environment",
        "parameter `version`: \"1.x\" does not match the pattern \\d+\\.\\d+\\.\\d+",
        "parameter `replicas`: 25 is greater than the maximum 20",
        "parameter `environment`: is required",
    ] {
        assert!(out.stderr.contains(msg), "missing {msg:?} in {out:?}");
    }
    assert!(!env.path("ran").exists());
    assert!(!env.db.exists(), "no execution is recorded for invalid parameters");
    // A program that asked for JSON gets the refusal as JSON on standard output.
    let json = env.run_book(&book, &["-p", "replicas=25", "--output", "json"]);
    assert_eq!(json.code, 2, "{json:?}");
    let doc = json.json();
    assert_eq!(doc["error"]["exit_code"], 2);
    assert_eq!(doc["error"]["message"], "nothing ran: 3 invalid parameters", "{doc}");
    assert_eq!(
        doc["error"]["details"][1],
        serde_json::json!({ "param": "replicas", "message": "25 is greater than the maximum 20" })
    );
    let unknown = env.run(&["show", "zzzzzzzz", "--output", "json"]);
    assert_eq!(unknown.json()["error"]["message"], "execution `zzzzzzzz` not found");
}

#[test]
fn params_file_and_overrides() {
    let env = Env::new();
    env.write("p.yaml", "version: 2.0.0\nreplicas: 3\nenvironment: staging\n");
    let book = runbook(
        PARAMS,
        "    - id: a\n      run: echo {{ params.version }}/{{ params.replicas }}/$OPSBOOK_PARAM_ENVIRONMENT > got\n",
    );
    let out = env.run_book(&book, &["--params-file", "p.yaml", "-p", "replicas=4"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(env.read("got"), "2.0.0/4/staging\n");
    // A file that is not YAML says so at its place; one of another shape is told its shape.
    env.write("bad.yaml", "version: 2.0.0\n\treplicas: 3\n");
    let o = env.run_book(&book, &["--params-file", "bad.yaml"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("bad.yaml:2:1: a tab character: YAML indents with spaces only"), "{o:?}");
    env.write("list.yaml", "- version\n");
    let o = env.run_book(&book, &["--params-file", "list.yaml"]);
    assert!(o.stderr.contains("list.yaml:1:1: expected a mapping of parameter names to values"), "{o:?}");
    // A tab in a runbook is named where it is, not at the token before it.
    let tabbed = runbook("", "    - id: a\n\trun: echo a\n");
    let o = env.run_book(&tabbed, &[]);
    assert!(o.stderr.contains("test.yaml:10:1: a tab character: YAML indents with spaces only"), "{o:?}");
}

#[test]
fn json_document() {
    let env = Env::new();
    let book = runbook(
        "    token: { type: secret }\n    n: { type: integer, default: 1 }\n",
        "    - id: first\n      name: First step\n      run: echo \"port=8080\" >> $OPSBOOK_OUTPUT\n      rollback:\n        run: \"true\"\n    - id: second\n      run: exit 3\n",
    );
    let out = env.run_book(&book, &["-p", "token=abc123", "--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    assert_eq!(doc["runbook"]["name"], "test");
    assert_eq!(doc["runbook"]["version"], "1.0.0");
    assert_eq!(doc["runbook"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["params"], serde_json::json!({"token": "***", "n": 1}));
    assert!(doc["duration_ms"].as_i64().unwrap() >= 0);
    assert!(doc["started_at"].as_str().unwrap().ends_with('Z'));
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(steps[0]["id"], "first");
    assert_eq!(steps[0]["name"], "First step");
    assert_eq!(steps[0]["status"], "succeeded");
    assert_eq!(steps[0]["attempts"], 1);
    assert_eq!(steps[0]["exit_code"], 0);
    assert_eq!(steps[0]["outputs"], serde_json::json!({"port": "8080"}));
    assert_eq!(steps[1]["status"], "failed");
    assert_eq!(steps[1]["exit_code"], 3);
    assert_eq!(steps[1]["error"], "exited with code 3");
    assert_eq!(
        doc["rollback"],
        serde_json::json!({"performed": true, "status": "succeeded", "steps": [{"id": "first", "status": "succeeded", "exit_code": 0, "error": null}]})
    );

    let id = doc["id"].as_str().unwrap();
    let shown = env.run(&["show", id, "--output", "json"]);
    assert_eq!(shown.json(), doc, "show prints the same document");
    let history = env.run(&["history", "--output", "json"]).json();
    assert_eq!(history[0]["id"], id);
    assert!(history[0].get("steps").is_none());
    let by_status = env.run(&["history", "--status", "succeeded", "--output", "json"]).json();
    assert_eq!(by_status, serde_json::json!([]));
    let bad = env.run(&["history", "--status", "done"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("unknown status `done`"), "{bad:?}");
}

#[test]
fn validate_reports_every_file() {
    let env = Env::new();
    env.write("books/good.yaml", &runbook("", "    - id: a\n      run: \"true\"\n"));
    env.write("books/nested/bad.yml", &runbook("", "    - id: a\n      run: \"true\"\n      timeout: soon\n"));
    env.write("books/notes.txt", "not a runbook");
    let out = env.run(&["validate", "books"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("books/good.yaml: ok (test v1.0.0, 1 step)"), "{out:?}");
    assert!(out.stdout.contains(
        "books/nested/bad.yml:11:16: invalid duration `soon`: expected a number followed by ms, s, m, h or d (e.g. 30s, 10m, 1h30m)\n   |\n11 |       timeout: soon\n   |                ^^^^"
    ), "{out:?}");
    assert!(out.stderr.contains("1 of 2 files invalid"), "{out:?}");
    assert_eq!(env.run(&["validate", "books/good.yaml"]).code, 0);
}

/// A file that is not UTF-8 (Latin-1 here) is refused by every command, at its first
/// bad byte: `validate` does not pass what `run` and `push` then refuse.
#[test]
fn a_file_that_is_not_utf8_is_refused_at_its_place() {
    let env = Env::new();
    let text = runbook("", "    - id: a\n      run: echo caf\u{e9}\n");
    let mut bytes = text.into_bytes();
    let at = bytes.windows(2).position(|w| w == [0xC3, 0xA9]).unwrap();
    bytes.splice(at..at + 2, [0xE9]);
    std::fs::write(env.path("latin1.yaml"), &bytes).unwrap();
    let place = "latin1.yaml:10:20: not valid UTF-8 (byte 0xE9): save the file as UTF-8";
    let o = env.run(&["validate", "latin1.yaml"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains(place), "{o:?}");
    let o = env.run(&["validate", "latin1.yaml", "--output", "json"]);
    let problem = &o.json()[0]["problems"][0];
    assert_eq!((problem["line"].as_u64(), problem["column"].as_u64()), (Some(10), Some(20)), "{o:?}");
    for args in [&["run", "latin1.yaml", "--dry-run"][..], &["list", "."][..]] {
        let o = env.run(args);
        assert_ne!(o.code, 0, "{args:?}: {o:?}");
        assert!(o.stderr.contains(place), "{args:?}: {o:?}");
    }
    std::fs::write(env.path("gates.yaml"), b"gates:\n  g:\n    sources: [] # \xff\n").unwrap();
    let o = env.run(&["gate", "check", "g", "--config", "gates.yaml"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("gates.yaml:3:19: not valid UTF-8 (byte 0xFF)"), "{o:?}");
    // A file no document is that large (a device that never ends) is read no further.
    let huge = "larger than 16 MiB, which no runbook, gates file or inventory is";
    let o = env.run(&["validate", "/dev/zero"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains(huge), "{o:?}");
    for args in [&["run", "/dev/zero"][..], &["gate", "check", "g", "--config", "/dev/zero"][..]] {
        let o = env.run(args);
        assert_eq!(o.code, 2, "{args:?}: {o:?}");
        assert!(o.stderr.contains(huge), "{args:?}: {o:?}");
    }
}

#[test]
fn examples_are_valid() {
    let env = Env::new();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let out = env.run(&["validate", examples]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.matches(": ok (").count() >= 4, "{out:?}");
}

#[test]
fn new_schema_and_list() {
    let env = Env::new();
    let out = env.run(&["new", "db-vacuum", "--type", "maintenance"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(env.run(&["validate", "db-vacuum.yaml"]).code, 0);
    // The command it suggests works as printed: a dry run of the draft.
    let suggested = out.stdout.split('`').nth(1).unwrap().to_string();
    let args: Vec<&str> = suggested.split_whitespace().skip(1).collect();
    let tried = env.run(&args);
    assert_eq!(tried.code, 0, "{suggested}: {tried:?}");
    // So do its tests (its steps mocked).
    let tested = env.run(&["test", "db-vacuum.yaml"]);
    assert_eq!(tested.code, 0, "{tested:?}");
    assert!(tested.stdout.ends_with("1 passed, 0 failed\n"), "{tested:?}");
    let again = env.run(&["new", "db-vacuum", "--type", "maintenance"]);
    assert_eq!(again.code, 2, "never overwrites: {again:?}");
    assert!(
        again.stderr.contains("exists already: choose another name with -o, or overwrite it with --force"),
        "{again:?}"
    );
    std::fs::write(env.path("db-vacuum.yaml"), "changed").unwrap();
    assert_eq!(env.run(&["new", "db-vacuum", "--type", "maintenance", "--force"]).code, 0);
    // The first line is a modeline as the YAML language server (VS Code's YAML extension)
    // reads it: `^#\s+yaml-language-server\s*:`, then `$schema=` and a path up to a space.
    let text = env.read("db-vacuum.yaml");
    let first = text.lines().next().unwrap();
    let rest = first.strip_prefix("# yaml-language-server:").unwrap_or_else(|| panic!("{first}"));
    let at = rest.find("$schema=").unwrap_or_else(|| panic!("{first}"));
    let path = rest[at + "$schema=".len()..].split_whitespace().next();
    assert_eq!(path, Some("opsbook.schema.json"), "{first}");
    assert_eq!(rest.matches("$schema").count(), 1, "one $schema: {first}");
    let printed = env.run(&["new", "other", "--type", "backup_restore", "-o", "-"]);
    assert!(printed.stdout.contains("name: other"), "{printed:?}");
    assert!(!env.path("other.yaml").exists() && !env.path("-").exists());
    let bad = env.run(&["new", "x", "--type", "deploy"]);
    assert!(bad.stderr.contains("unknown type `deploy`"), "{bad:?}");
    let typo = env.run(&["new", "x", "--type", "maintainance"]);
    assert!(typo.stderr.contains("unknown type `maintainance` (did you mean `maintenance`?): use one of"), "{typo:?}");
    // A fresh draft runs only with --allow-draft.
    let draft = env.run(&["run", "db-vacuum.yaml", "-p", "environment=staging"]);
    assert_eq!(draft.code, 2);
    assert!(draft.stderr.contains("is a draft; pass --allow-draft"), "{draft:?}");
    let ran = env.run(&["run", "db-vacuum.yaml", "-p", "environment=staging", "--allow-draft"]);
    assert_eq!(ran.code, 0, "{ran:?}");

    let printed = env.run(&["schema"]);
    let schema = printed.json();
    assert_eq!(schema["title"], "opsbook runbook");
    // The copy the examples point their editors at stays current.
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/opsbook.schema.json"));
    assert_eq!(
        committed.ok().as_deref(),
        Some(printed.stdout.as_str()),
        "examples/opsbook.schema.json is stale: run `opsbook schema > examples/opsbook.schema.json`"
    );
    assert!(schema["properties"]["apiVersion"].is_object());
    assert!(schema.to_string().contains("output_matches"));
    // Draft 7, with definitions under the names authors know, each titled.
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["definitions"]["Step"]["title"], "Step");
    assert!(schema["definitions"].get("RawStep").is_none() && schema["definitions"].get("RawMetadata").is_none());

    env.write(
        "old.yaml",
        &runbook("", "    - id: a\n      run: \"true\"\n").replace(
            "version: 1.0.0",
            "version: 1.0.0\n  review: { every: 30d, last_reviewed: 2020-01-01 }\n  owner: team-db\n  tags: [db]",
        ),
    );
    let list = env.run(&["list", ".", "--output", "json"]).json();
    let old = list.as_array().unwrap().iter().find(|r| r["path"].as_str().unwrap().ends_with("old.yaml")).unwrap();
    assert_eq!(old["review"], "overdue since 2020-01-31");
    assert_eq!(old["owner"], "team-db");
    // Without a directory: here, leaving out test fixtures; the table says where each is.
    env.write(
        "tests/fixture.yaml",
        &runbook("", "    - id: a\n      run: \"true\"\n").replace("name: test", "name: fixture"),
    );
    env.write("ops/db.yaml", &runbook("", "    - id: a\n      run: \"true\"\n").replace("name: test", "name: dbops"));
    let here = env.run(&["list", "--output", "json"]).json();
    let paths: Vec<&str> = here.as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"ops/db.yaml") && paths.contains(&"old.yaml"), "{paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("tests/")), "{paths:?}");
    let table = env.run(&["list"]);
    assert!(table.stdout.contains("Path") && table.stdout.contains("ops/db.yaml"), "{table:?}");
    let named = env.run(&["list", "tests", "--output", "json"]).json();
    assert_eq!(named[0]["name"], "fixture", "named, it is listed");
    // The shipped examples hold runbooks, their tests and gates files: only the runbooks
    // are listed, and nothing is called invalid.
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let shipped = env.run(&["list", examples, "--output", "json"]);
    assert_eq!(shipped.code, 0, "{shipped:?}");
    assert!(!shipped.stderr.contains("invalid"), "{shipped:?}");
    let listed = shipped.json();
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"web-app-deploy") && !names.is_empty(), "{names:?}");
}

#[test]
fn lifecycle_status() {
    let env = Env::new();
    let book = runbook("", "    - id: a\n      run: touch ran\n");
    let archived = env.run_book(&book.replace("version: 1.0.0", "version: 1.0.0\n  status: archived"), &[]);
    assert_eq!(archived.code, 2);
    assert!(archived.stderr.contains("runbook `test` is archived and can no longer run"), "{archived:?}");
    assert!(!env.path("ran").exists());
    let deprecated = env.run_book(&book.replace("version: 1.0.0", "version: 1.0.0\n  status: deprecated"), &[]);
    assert_eq!(deprecated.code, 0);
    assert!(deprecated.stdout.contains("warning: runbook `test` is deprecated"), "{deprecated:?}");
    assert_eq!(deprecated.stdout.matches("is deprecated").count(), 1, "said once: {deprecated:?}");
}

#[test]
fn dry_run_renders_and_runs_nothing() {
    let env = Env::new();
    let book = runbook(
        "    pw: { type: secret }\n    target: { type: string }\n",
        "    - id: a\n      run: touch ran && echo {{ params.target }} {{ params.pw }}\n      env: { PW: \"{{ params.pw }}\", T: \"at {{ params.target }}\" }\n    - id: b\n      when: \"params.target == 'x y'\"\n      http: { url: \"http://localhost:{{ steps.a.outputs.port }}/\" }\n    - id: c\n      when: \"steps.a.outputs.port == '80'\"\n      run: \"true\"\n",
    );
    let out = env.run_book(&book, &["--dry-run", "-p", "pw=hunter2", "-p", "target=x y"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("touch ran && echo 'x y' '***'"), "{out:?}");
    assert!(out.stdout.contains("when params.target == 'x y' → true"), "{out:?}");
    assert!(out.stdout.contains("GET http://localhost:<steps.a.outputs.port>/"), "{out:?}");
    assert!(
        out.stdout
            .contains("when steps.a.outputs.port == '80' → unknown until it runs (it reads earlier steps' outputs)"),
        "{out:?}"
    );
    // The step's environment shows, rendered, secrets masked.
    assert!(out.stdout.contains("    env PW=***\n    env T=at x y\n"), "{out:?}");
    assert!(!out.stdout.contains("hunter2"));
    let json = env.run_book(&book, &["--dry-run", "-p", "pw=hunter2", "-p", "target=x y", "--output", "json"]);
    assert_eq!(json.json()["steps"][0]["env"], serde_json::json!({ "PW": "***", "T": "at x y" }), "{json:?}");
    assert!(!json.stdout.contains("hunter2"));
    assert!(!out.stdout.contains("note:"), "an active runbook runs: {out:?}");
    // A draft is tried with a dry run, which says what a real run would meet.
    let draft = env.run_book(
        &book.replace("version: 1.0.0", "version: 1.0.0\n  status: draft"),
        &["--dry-run", "-p", "pw=xxxx", "-p", "target=y"],
    );
    assert!(
        draft.stdout.contains("note: a draft: a real run is refused (locally, `--allow-draft` tries it)"),
        "{draft:?}"
    );
    assert!(!env.path("ran").exists());
    assert!(!env.db.exists());
}

/// On a terminal, streamed output lines end with a newline, not with spaces to the
/// terminal's width (copied output stays clean).
#[test]
fn terminal_output_lines_are_not_padded() {
    use crate::support::SpawnWith;
    let env = Env::new();
    env.write("test.yaml", &runbook("", "    - id: a\n      run: echo first-line && echo second-line\n"));
    let cmd = format!("exec {} run test.yaml", env!("CARGO_BIN_EXE_opsbook"));
    let child = env
        .cmd(&[])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn_with_program("script", &["-qec", &cmd, "/dev/null"]);
    let o = out(child.wait_with_output().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    for line in ["first-line", "second-line"] {
        let at = o.stdout.find(line).unwrap_or_else(|| panic!("{line} in {o:?}"));
        let after = &o.stdout[at + line.len()..];
        assert!(after.starts_with("\r\n"), "{line} ends with a newline: {:?}", &after[..after.len().min(20)]);
    }
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let env = Env::new();
    let mut child =
        env.cmd(&["schema"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take()); // the reader goes away at once, like `| head -0`
    let o = crate::support::out(child.wait_with_output().unwrap());
    assert!(o.code == 141 || o.code == 0, "{o:?}");
    assert!(!o.stderr.contains("panicked"), "{o:?}");
}

/// The database holds every execution's parameters, output and audit trail: a new one is
/// its owner's only (0600, its `-wal` and `-shm` too, in a new directory made 0700).
#[test]
fn a_new_database_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let ok = env.run_book(&runbook("", "    - id: a\n      run: \"true\"\n"), &[]);
    assert_eq!(ok.code, 0, "{ok:?}");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = env.db.parent().unwrap();
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    let files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(files.iter().any(|f| f.to_string_lossy().ends_with("-wal")), "{files:?}");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    // An existing file keeps the mode its owner gave it.
    std::fs::set_permissions(&env.db, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(env.run(&["history"]).code, 0);
    assert_eq!(mode(&env.db), 0o640);
}

/// `--database URL` (and `database_url` in opsbook.toml) name the database as a URL;
/// a database that cannot be opened is named (without credentials) before anything runs.
#[test]
fn the_database_is_named_by_a_url() {
    let env = Env::new();
    env.write("test.yaml", &runbook("", "    - id: a\n      run: touch ran\n"));
    let url = format!("sqlite://{}", env.path("by-url.db").display());
    let o = env.run(&["--database", &url, "run", "test.yaml"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(env.path("by-url.db").exists());
    let o = env.run(&["--database", &url, "history", "--output", "json"]);
    assert_eq!(o.json().as_array().unwrap().len(), 1, "{o:?}");

    // A PostgreSQL server that does not answer: named, without the password.
    let o = env.run(&["--database", "postgres://ops:hunter2@127.0.0.1:1/opsbook", "run", "test.yaml"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("cannot open the database postgres://127.0.0.1:1/opsbook"), "{o:?}");
    assert!(o.stderr.contains("Connection refused") && !o.stderr.contains("hunter2"), "{o:?}");
    let o = env.run(&["--database", "mysql://x/y", "history"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("not a database URL opsbook knows"), "{o:?}");

    env.write("opsbook.toml", "database_url = \"sqlite://from-toml.db\"\n");
    let o = out(env.cmd(&["admin", "token", "list"]).env_remove("OPSBOOK_DB").output().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("database from-toml.db (chosen by opsbook.toml)"), "{o:?}");
    // A server the environment names does not take `admin` from a database named here.
    let db = env.db.display().to_string();
    let mut cmd = env.cmd(&["admin", "token", "list", "--db", &db]);
    let o = out(cmd.env_remove("OPSBOOK_DB").env("OPSBOOK_SERVER", "http://127.0.0.1:9").output().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    let o = out(env.cmd(&["admin", "token", "list"]).env("OPSBOOK_SERVER", "http://127.0.0.1:9").output().unwrap());
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("without --server (and with --database URL, or --db PATH"), "{o:?}");
    // Help names the variable but never shows its value (a password may be in it).
    let url = "postgres://ops:hunter2secret@db:5432/opsbook";
    let o = out(env.cmd(&["serve", "--help"]).env("OPSBOOK_DATABASE_URL", url).output().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("[env: OPSBOOK_DATABASE_URL]") && !o.stdout.contains("hunter2"), "{o:?}");
}

/// `validate` warns about files a script names that would not travel with the runbook
/// to a server (`push` sends what is beside it), naming the step's place; it still passes.
#[test]
fn validate_warns_of_files_a_server_would_not_have() {
    let env = Env::new();
    env.write("rb/scripts/ok.sh", "true\n");
    env.write("rb/.secret.sh", "true\n");
    env.write("rb/build/tool.sh", "true\n");
    env.write("rb/.opsbookignore", "build/\n");
    env.write("rb/other.sh", "true\n");
    env.write(
        "rb/deploy.yaml",
        &runbook(
            "",
            "    - id: fine\n      run: ./scripts/ok.sh\n    - id: missing\n      run: ./scripts/gone.sh\n    - id: out\n      run: sh ../other.sh\n    - id: hidden\n      run: ./.secret.sh && ./build/tool.sh\n",
        ),
    );
    let o = env.run(&["validate", "rb/deploy.yaml"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains(
            "rb/deploy.yaml:11:7: warning: step `missing` names `./scripts/gone.sh`, which is not beside the runbook"
        ),
        "{o:?}"
    );
    assert!(o.stdout.contains("step `out` names `../other.sh`, outside the runbook's directory"), "{o:?}");
    assert!(
        o.stdout.contains("step `hidden` names `./.secret.sh`, which is hidden or listed in .opsbookignore"),
        "{o:?}"
    );
    assert!(
        o.stdout.contains("step `hidden` names `./build/tool.sh`, which is hidden or listed in .opsbookignore"),
        "{o:?}"
    );
    assert!(!o.stdout.contains("`fine`"), "{o:?}");
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let o = env.run(&["validate", examples.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(!o.stdout.contains("warning"), "the examples bring what they use: {o:?}");
}

/// Completions and a man page come from the same definitions as `--help`; history
/// names the time zone its times are in.
#[test]
fn completions_man_page_and_time_zones() {
    let env = Env::new();
    let bash = env.run(&["completions", "bash"]);
    assert_eq!(bash.code, 0, "{bash:?}");
    assert!(bash.stdout.contains("_opsbook()") && bash.stdout.contains("rollback"), "{}", &bash.stdout[..200]);
    let fish = env.run(&["completions", "fish"]);
    assert!(fish.stdout.contains("complete -c opsbook"), "{fish:?}");
    let man = env.run(&["man"]);
    assert_eq!(man.code, 0);
    assert!(
        man.stdout.starts_with(".ie \\n(.g .ds Aq") || man.stdout.contains(".TH opsbook"),
        "{}",
        &man.stdout[..200]
    );
    // Every page the main one names, written out.
    let pages = env.run(&["man", "--dir", "man1"]);
    assert_eq!(pages.code, 0, "{pages:?}");
    assert!(man.stdout.contains("opsbook\\-run(1)"), "the main page names the run page");
    for page in ["opsbook.1", "opsbook-run.1", "opsbook-admin-token-create.1", "opsbook-gate-check.1"] {
        let text = env.read(&format!("man1/{page}"));
        assert!(text.contains(".TH "), "{page}: {}", &text[..text.len().min(200)]);
    }
    let bad = env.run(&["completions", "tcsh"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    // Statuses and types are offered, not file names.
    let statuses = "compgen -W \"queued running waiting succeeded failed cancelled interrupted\"";
    assert!(bash.stdout.contains(statuses), "history --status");
    assert!(bash.stdout.contains("compgen -W \"draft active deprecated archived\""), "list --status");
    assert!(bash.stdout.contains("compgen -W \"deployment maintenance incident_response"), "--type");
    // Help lists only the flags a command uses.
    let help = env.run(&["validate", "--help"]);
    assert!(help.stdout.contains("--gates") && !help.stdout.contains("--server") && !help.stdout.contains("--db"));
    let help = env.run(&["serve", "--help"]);
    assert!(help.stdout.contains("--db") && !help.stdout.contains("--server"), "{help:?}");
    let help = env.run(&["history", "--help"]);
    assert!(help.stdout.contains("--server") && help.stdout.contains("At most this many executions"));
    let far = env.run(&["history", "--since", "99999d"]);
    assert_eq!(far.code, 2);
    assert!(far.stderr.contains("--since: invalid duration `99999d`: longer than 10 years (3650d)"), "{far:?}");

    env.write("test.yaml", &runbook("", "    - id: a\n      run: echo hi\n"));
    let ran = env.run(&["run", "test.yaml", "--output", "json"]);
    let utc_start = ran.json()["started_at"].as_str().unwrap().to_string();
    let tokyo = out(env.cmd(&["history"]).env("TZ", "Asia/Tokyo").output().unwrap());
    assert!(tokyo.stdout.contains("Started (Asia/Tokyo)"), "{tokyo:?}");
    let t = utc_start.parse::<jiff::Timestamp>().unwrap();
    let local = t.to_zoned(jiff::tz::TimeZone::get("Asia/Tokyo").unwrap()).strftime("%Y-%m-%d %H:%M:%S").to_string();
    assert!(tokyo.stdout.contains(&local), "{local} in {tokyo:?}");
    let utc = out(env.cmd(&["history", "--utc"]).env("TZ", "Asia/Tokyo").output().unwrap());
    assert!(utc.stdout.contains("Started (UTC)") && utc.stdout.contains(&utc_start[..19].replace('T', " ")), "{utc:?}");
    // `show` names the zone with each time; `--utc` is global; JSON stays RFC 3339 in UTC.
    assert!(utc_start.ends_with('Z'), "{utc_start}");
    let id = ran.json()["id"].as_str().unwrap().to_string();
    let shown = out(env.cmd(&["show", &id]).env("TZ", "Asia/Tokyo").output().unwrap());
    assert!(shown.stdout.contains(&format!("  started   {local} JST\n")), "{local} JST in {shown:?}");
    let shown = out(env.cmd(&["--utc", "show", &id]).env("TZ", "Asia/Tokyo").output().unwrap());
    assert!(shown.stdout.contains(&format!("  started   {} UTC\n", &utc_start[..19].replace('T', " "))), "{shown:?}");
    let logs = out(env.cmd(&["logs", &id, "--timestamps"]).env("TZ", "Asia/Tokyo").output().unwrap());
    assert!(logs.stdout.contains("[a] hi"), "{logs:?}");
    assert!(logs.stdout.lines().all(|l| l.get(23..29) == Some("+09:00")), "local stamps with offset: {logs:?}");
    let logs = out(env.cmd(&["logs", &id, "--timestamps", "--utc"]).env("TZ", "Asia/Tokyo").output().unwrap());
    assert!(logs.stdout.lines().all(|l| l.get(23..24) == Some("Z")), "UTC stamps: {logs:?}");
}

/// One `validate` pass reports every problem it can (not the first only), says what a
/// misshapen value should look like and when indentation is the likely cause, and
/// `--output json` gives the same as data.
#[test]
fn validate_reports_every_problem_in_one_pass() {
    let env = Env::new();
    env.write(
        "many.yaml",
        "apiVersion: opsbook/v1\nkind: Runbook\nmetadata:\n  name: demo\n  type: maintenance\n  version: 1.0.0\n  ownr: me\nspec:\n  steps:\n    - id: a\n      run: echo hi\n      retries: 3\n    - id: b\n      run: echo b\n      rollback: echo undo\n    - id: c\n      run: echo c\n      timout: 5s\n",
    );
    env.write(
        "when.yaml",
        &runbook(
            "    x: { type: integer, default: 1 }\n",
            "    - id: c\n      run: echo c\n      when: \"{{ params.x == 1 }}\"\n",
        ),
    );
    let o = env.run(&["validate", "many.yaml", "when.yaml"]);
    assert_eq!(o.code, 1, "{o:?}");
    for expected in [
        "many.yaml:7:3: unknown field `ownr` (did you mean `owner`?)",
        "many.yaml:12:16: expected a mapping here: `key: value` lines, or `{ key: value }` (write `retries: { count: 3, delay: 10s, backoff: 2.0 }`)",
        "(write `rollback: { run: ./undo.sh }`)",
        "many.yaml:18:7: unknown field `timout` (did you mean `timeout`?)",
        "when: an expression, not a template: drop the braces (`when: \"params.x == 1\"`)",
    ] {
        assert!(o.stdout.contains(expected), "{expected} in {o:?}");
    }
    assert!(o.stderr.contains("2 of 2 files invalid (5 problems)"), "{o:?}");
    let json = env.run(&["validate", "many.yaml", "when.yaml", "--output", "json"]).json();
    assert_eq!(json[0]["valid"], false);
    assert_eq!(json[0]["problems"].as_array().unwrap().len(), 4, "{json}");
    assert_eq!(json[0]["problems"][3]["line"], 18);
    assert_eq!(json[1]["problems"][0]["column"], 13);
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let ok = env.run(&["validate", examples.to_str().unwrap(), "--output", "json"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(
        ok.json()
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["valid"] == true && r["problems"].as_array().unwrap().is_empty())
    );
}

/// A template in a step's name (never rendered), and integer bounds that are fractions or
/// left empty, are refused where they are written.
#[test]
fn validate_refuses_names_with_templates_and_loose_bounds() {
    let env = Env::new();
    env.write(
        "loose.yaml",
        &runbook(
            "    n: { type: integer, min: 1.5, default: 2 }\n    m: { type: integer, max: , default: 2 }\n",
            "    - id: a\n      name: \"Deploy {{ params.n }}\"\n      run: echo a\n    - id: b\n      workdir: \"{{ params.m }}\"\n      run: pwd\n",
        ),
    );
    let o = env.run(&["validate", "loose.yaml"]);
    assert_eq!(o.code, 1, "{o:?}");
    for expected in [
        "parameter `n`: min 1.5 is not a whole number (the parameter is an integer)",
        "the bound is empty: give a number, or leave the key out",
        "step `a`: name: a step's name is shown as written, templates are not rendered in it",
        "step `b`: workdir is a directory as written, templates are not rendered in it",
    ] {
        assert!(o.stdout.contains(expected), "{expected} in {o:?}");
    }
    assert!(o.stdout.contains("loose.yaml:10:28:") && o.stdout.contains("loose.yaml:13:13:"), "{o:?}");
}

/// A `when` that names an output its step does not have says which; a failure whose
/// succeeded steps have no rollback does not suggest `opsbook rollback`.
#[test]
fn a_missing_output_is_named_and_no_rollback_is_suggested_without_one() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: a\n      run: echo \"url=x\" >> \"$OPSBOOK_OUTPUT\"\n    - id: b\n      when: \"steps.a.outputs.missing == 'x'\"\n      run: echo b\n",
    );
    let o = env.run_book(&book, &[]);
    assert_eq!(o.code, 1, "{o:?}");
    let why = "when: `steps.a.outputs.missing` is undefined: step `a` (succeeded) has no output `missing`; its outputs: `url`";
    assert!(o.stdout.contains(why), "{o:?}");
    assert!(o.stdout.contains("nothing was rolled back: no step that succeeded has a rollback"), "{o:?}");
    assert!(!o.stdout.contains("opsbook rollback") && !o.stdout.contains("-p)"), "{o:?}");
    // Stopped where it failed, with a rollback left to run: that one is suggested, and
    // the secrets asked for again.
    let stop = runbook(
        "    pw: { type: secret }\n",
        "    - id: a\n      run: \"true\"\n      rollback: { run: \"true\" }\n    - id: b\n      run: exit 1\n",
    )
    .replace("spec:\n", "spec:\n  on_failure: stop\n");
    let o = env.run_book(&stop, &["-p", "pw=hunter2"]);
    assert_eq!(o.code, 1, "{o:?}");
    let id = env.last().0.id;
    let hint = format!(
        "nothing was rolled back: the steps that succeeded stay done (`opsbook rollback {id}` (pass secret parameters again with -p) runs the rollbacks they have)"
    );
    assert!(o.stdout.contains(&hint), "{o:?}");
}

/// A `when` that tests a text parameter as it is warns: "false" is true there.
#[test]
fn validate_warns_of_a_text_parameter_taken_for_a_boolean() {
    let env = Env::new();
    env.write(
        "when.yaml",
        &runbook(
            "    flag: { type: string, default: \"false\" }\n    on: { type: boolean, default: false }\n",
            "    - id: a\n      when: params.flag\n      run: touch a\n    - id: b\n      when: params.on\n      run: touch b\n",
        ),
    );
    let o = env.run(&["validate", "when.yaml"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("when.yaml:12:7: warning: step `a`: when: `params.flag` is true for any string value but an empty one (\"false\" and \"no\" included)"), "{o:?}");
    assert!(!o.stdout.contains("step `b`"), "{o:?}");
    // As it warns: the step runs with the default "false".
    assert_eq!(env.run(&["run", "when.yaml"]).code, 0);
    assert!(env.path("a").exists() && !env.path("b").exists());
}
