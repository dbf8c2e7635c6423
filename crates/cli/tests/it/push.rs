//! `opsbook push`: runbooks go to the server with the files beside them (their bundles),
//! other tools' YAML travels as files, and runbooks called by file travel with their caller.

use crate::server::{client, serve, token};
use crate::support::{Env, out, runbook};

/// `push` sends the files beside each runbook (its bundle), so scripts run on the server
/// as they do locally: the README's example deploys through a server, and runbooks that
/// share a directory do not change each other's versions.
#[test]
fn pushed_runbooks_bring_their_files() {
    let env = Env::new();
    let admin = token(&env, "ann", &["admin"]);
    let srv = serve(&env);
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/web-app-deploy/runbook.yaml");
    let pushed = client(&env, &srv.url, &admin, &["push", example.to_str().unwrap()]);
    assert_eq!(pushed.code, 0, "{pushed:?}");
    assert!(pushed.stdout.contains("created   web-app-deploy"), "{pushed:?}");
    assert!(pushed.stdout.contains("with 8 file(s) beside it"), "its scripts and its tests: {pushed:?}");
    let ran = out(env
        .cmd(&[
            "--server",
            &srv.url,
            "run",
            "web-app-deploy",
            "-p",
            "application_name=shop",
            "-p",
            "version=1.4.2",
            "-p",
            "environment=staging",
        ])
        .env("OPSBOOK_TOKEN", &admin)
        .env("OPSBOOK_EXAMPLE_ROOT", env.path("servers"))
        .output()
        .unwrap());
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.contains("succeeded"), "{ran:?}");

    // Two runbooks in one directory, with a script each uses.
    env.write("svc/scripts/ctl.sh", "#!/bin/sh\necho \"ctl $1 ($(cat ../VERSION 2>/dev/null || cat VERSION))\"\n");
    std::fs::set_permissions(env.path("svc/scripts/ctl.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    env.write("svc/VERSION", "v7\n");
    env.write(
        "svc/start.yaml",
        &runbook("", "    - id: go\n      run: ./scripts/ctl.sh start\n").replace("name: test", "name: start"),
    );
    env.write(
        "svc/stop.yaml",
        &runbook("", "    - id: go\n      run: ./scripts/ctl.sh stop\n").replace("name: test", "name: stop"),
    );
    let pushed = client(&env, &srv.url, &admin, &["push", "svc"]);
    assert_eq!(pushed.code, 0, "{pushed:?}");
    let ran = client(&env, &srv.url, &admin, &["run", "start", "--output", "json"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let logs = client(&env, &srv.url, &admin, &["logs", ran.json()["id"].as_str().unwrap()]);
    assert_eq!(logs.stdout, "[go] ctl start (v7)\n", "{logs:?}");
    // Editing one runbook (with a new version) leaves the other's published version as it is.
    env.write(
        "svc/stop.yaml",
        &runbook("", "    - id: go\n      run: ./scripts/ctl.sh halt\n")
            .replace("name: test", "name: stop")
            .replace("1.0.0", "1.1.0"),
    );
    let again = client(&env, &srv.url, &admin, &["push", "svc"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("unchanged start 1.0.0"), "{again:?}");
    assert!(again.stdout.contains("updated   stop 1.1.0"), "{again:?}");

    // What would travel can be seen first; what looks private is refused.
    let listed = client(&env, &srv.url, &admin, &["push", "svc", "--dry-run"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(listed.stdout.contains("start 1.0.0 (svc/start.yaml) would go with 2 file(s):"), "{listed:?}");
    assert!(listed.stdout.contains("    scripts/ctl.sh (") && listed.stdout.contains("executable)"), "{listed:?}");
    env.write("svc/token.txt", "obk_secret\n");
    std::fs::set_permissions(env.path("svc/token.txt"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let private = client(&env, &srv.url, &admin, &["push", "svc"]);
    assert_eq!(private.code, 2, "{private:?}");
    assert!(private.stderr.contains("token.txt (readable by its owner only): these look private"), "{private:?}");
    std::fs::remove_file(env.path("svc/token.txt")).unwrap();
    // A parameters file giving a secret parameter its value is refused too, naming both.
    env.write(
        "vault/deploy.yaml",
        &runbook("    api_token: { type: secret }\n    env: { type: string }\n", "    - id: go\n      run: \"true\"\n")
            .replace("name: test", "name: vaulted"),
    );
    env.write("vault/staging.yaml", "env: staging\napi_token: abcdefghij\n");
    env.write("vault/prod.json", "{\"env\": \"prod\", \"api_token\": \"\"}\n");
    let secret = client(&env, &srv.url, &admin, &["push", "vault"]);
    assert_eq!(secret.code, 2, "{secret:?}");
    assert!(
        secret.stderr.contains("its files: staging.yaml (`api_token`): these hold a value for a secret"),
        "{secret:?}"
    );
    assert!(!secret.stderr.contains("prod.json"), "an empty value gives nothing away: {secret:?}");
    env.write("vault/.opsbookignore", "staging.yaml\n");
    let ignored = client(&env, &srv.url, &admin, &["push", "vault"]);
    assert_eq!(ignored.code, 0, "{ignored:?}");

    // A link out of the directory is refused before anything is sent.
    env.write("outside.txt", "secret\n");
    std::os::unix::fs::symlink(env.path("outside.txt"), env.path("svc/leak.txt")).unwrap();
    let refused = client(&env, &srv.url, &admin, &["push", "svc"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("leak.txt: a symbolic link to"), "{refused:?}");
    assert!(refused.stderr.contains("nothing was pushed"), "{refused:?}");

    // Other tools' YAML beside a runbook travels with it; it is not taken for a runbook.
    env.write("c/deploy.yaml", &runbook("", "    - id: go\n      run: \"true\"\n").replace("name: test", "name: kube"));
    env.write(
        "c/k8s/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n---\nkind: Service\n",
    );
    env.write("c/values.yaml", "replicas: 3\n");
    env.write("c/rules.yaml", "groups:\n  - name: web\n    rules:\n      - alert: Down\n        expr: up == 0\n");
    env.write(
        "c/typo.yaml",
        &runbook("", "    - id: go\n      run: \"true\"\n").replace("apiVersion: opsbook/", "apiVersion: opsbok/"),
    );
    let typo = client(&env, &srv.url, &admin, &["push", "c", "--dry-run"]);
    assert_eq!(typo.code, 2, "a runbook with a mistyped apiVersion is still checked: {typo:?}");
    assert!(typo.stderr.contains("c/typo.yaml") && !typo.stderr.contains("values.yaml:"), "{typo:?}");
    // What was left out is named, so that nothing is skipped unseen.
    assert!(typo.stderr.contains("note: left out 3 YAML file(s) that are not opsbook's"), "{typo:?}");
    std::fs::remove_file(env.path("c/typo.yaml")).unwrap();
    let listed = client(&env, &srv.url, &admin, &["push", "c", "--dry-run"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(listed.stdout.contains("kube 1.0.0 (c/deploy.yaml) would go with 3 file(s)"), "{listed:?}");
    assert!(
        listed.stdout.contains("    k8s/deployment.yaml (")
            && listed.stdout.contains("    values.yaml (")
            && listed.stdout.contains("    rules.yaml ("),
        "{listed:?}"
    );
    let checked = env.run(&["validate", "c"]);
    assert_eq!(checked.code, 0, "{checked:?}");
    assert_eq!(checked.stdout.lines().count(), 1, "only the runbook: {checked:?}");
}

/// `push` of a whole directory (the examples) publishes its runbooks and leaves their
/// tests and inventories to travel beside them; runbooks called by file travel with
/// their caller, so the release train runs its children on the server; a call out of
/// the directory is refused before anything is sent.
#[test]
fn pushed_directories_bring_called_runbooks_and_skip_companions() {
    let env = Env::new();
    let admin = token(&env, "ann", &["admin"]);
    let srv = serve(&env);
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let listed = client(&env, &srv.url, &admin, &["push", examples.to_str().unwrap(), "--dry-run"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    let block: String = listed
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("release-train 1.0.0"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(block.contains("    db-migrate.yaml (") && block.contains("    smoke-test.yaml ("), "{listed:?}");
    assert!(!listed.stdout.contains("hosts.yaml 1."), "an inventory is no runbook: {listed:?}");
    let pushed = client(&env, &srv.url, &admin, &["push", examples.to_str().unwrap()]);
    assert_eq!(pushed.code, 0, "{pushed:?}");
    assert!(pushed.stdout.contains("created   release-train 1.0.0"), "{pushed:?}");
    assert!(pushed.stdout.contains("created   log-cleanup"), "{pushed:?}");
    let ran = client(&env, &srv.url, &admin, &["run", "release-train", "-p", "version=2.4.0", "--output", "json"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let doc = ran.json();
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(doc["steps"][0]["child"]["runbook"], "db-migrate", "{doc}");
    assert_eq!(doc["steps"][0]["child"]["status"], "succeeded", "{doc}");

    env.write("a/outer.yaml", &runbook("", "    - id: call\n      runbook: { file: ../b/inner.yaml }\n"));
    env.write("b/inner.yaml", &runbook("", "    - id: go\n      run: \"true\"\n").replace("name: test", "name: inner"));
    let refused = client(&env, &srv.url, &admin, &["push", "a"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("inner.yaml, outside its directory: a server would not have it"), "{refused:?}");
    assert!(refused.stderr.contains("nothing was pushed"), "{refused:?}");
}

/// Runbooks pushed together that call one another by name: a cycle or a chain too deep,
/// through one another and what is published, is refused before any is published.
#[test]
fn runbooks_pushed_together_are_checked_together() {
    let env = Env::new();
    let admin = token(&env, "ann", &["admin"]);
    let srv = serve(&env);
    let book = |name: &str, calls: Option<&str>| {
        let step = match calls {
            Some(c) => format!("    - id: call\n      runbook: {{ name: {c} }}\n"),
            None => "    - id: go\n      run: \"true\"\n".to_string(),
        };
        runbook("", &step).replace("name: test", &format!("name: {name}"))
    };
    let listed = |env: &Env| client(env, &srv.url, &admin, &["list", "--output", "json"]).json();
    // Seven deep, in one push: refused as a whole.
    for n in 1..=7 {
        let next = format!("deep-{}", n + 1);
        env.write(&format!("deep/deep-{n}.yaml"), &book(&format!("deep-{n}"), (n < 7).then_some(next.as_str())));
    }
    let deep = client(&env, &srv.url, &admin, &["push", "deep"]);
    assert_eq!(deep.code, 1, "{deep:?}");
    assert!(
        deep.stderr.contains(
            "runbooks may call runbooks at most 5 deep: deep-1 → deep-2 → deep-3 → deep-4 → deep-5 → deep-6 → deep-7"
        ),
        "{deep:?}"
    );
    assert!(deep.stderr.contains("nothing was pushed"), "{deep:?}");
    assert_eq!(listed(&env), serde_json::json!([]), "nothing published");
    // A cycle through a published runbook: mid calls low (not published yet), then top
    // and low come together, low calling top.
    env.write("mid/mid.yaml", &book("mid", Some("low")));
    assert_eq!(client(&env, &srv.url, &admin, &["push", "mid"]).code, 0);
    env.write("cyc/top.yaml", &book("top", Some("mid")));
    env.write("cyc/low.yaml", &book("low", Some("top")));
    let cyc = client(&env, &srv.url, &admin, &["push", "cyc"]);
    assert_eq!(cyc.code, 1, "{cyc:?}");
    assert!(cyc.stderr.contains("runbooks call each other in a cycle: "), "{cyc:?}");
    let names: Vec<String> =
        listed(&env).as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["mid"], "only what was published before");
    // Without the cycle, together they go.
    env.write("cyc/low.yaml", &book("low", None));
    let ok = client(&env, &srv.url, &admin, &["push", "cyc"]);
    assert_eq!(ok.code, 0, "{ok:?}");
}
