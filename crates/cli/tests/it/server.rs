//! `opsbook serve` as a real process, and the CLI as its client.

use std::process::{Child, Stdio};

use crate::support::{Env, Out, SpawnWith, out, runbook, start_server};

pub(crate) struct Serve {
    pub(crate) child: Child,
    pub(crate) url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn serve(env: &Env) -> Serve {
    serve_with(env, &[])
}

fn serve_with(env: &Env, extra: &[&str]) -> Serve {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--workers", "2"];
    args.extend_from_slice(extra);
    let (child, url, _) = start_server(env.cmd(&args));
    Serve { child, url }
}

pub(crate) fn token(env: &Env, user: &str, roles: &[&str]) -> String {
    let mut args = vec!["admin", "token", "create", "--user", user];
    for r in roles {
        args.extend(["--role", r]);
    }
    let o = env.run(&args);
    assert_eq!(o.code, 0, "{o:?}");
    o.stdout.trim().to_string()
}

pub(crate) fn client(env: &Env, url: &str, token: &str, args: &[&str]) -> Out {
    let mut all = vec!["--server", url];
    all.extend_from_slice(args);
    out(env.cmd(&all).env("OPSBOOK_TOKEN", token).env("XDG_CONFIG_HOME", env.path("config")).output().unwrap())
}

#[test]
fn push_run_and_approve_through_the_server() {
    let env = Env::new();
    let author = token(&env, "ann", &["author", "operator", "approver"]);
    let approver = token(&env, "sam", &["approver"]);
    let second = token(&env, "rob", &["approver"]);
    let srv = serve(&env);

    env.write(
        "books/hello.yaml",
        &runbook(
            "    who: { type: string, default: world }\n",
            "    - id: hi\n      run: echo hello {{ params.who }}\n",
        ),
    );
    env.write(
        "books/gated.yaml",
        &runbook("", "    - id: gate\n      approval: {}\n    - id: after\n      run: echo approved\n")
            .replace("name: test", "name: gated"),
    );
    let pushed = client(&env, &srv.url, &author, &["push", "books"]);
    assert_eq!(pushed.code, 0, "{pushed:?}");
    assert!(pushed.stdout.contains("created   gated 1.0.0"), "{pushed:?}");
    assert!(pushed.stdout.contains("created   test 1.0.0"), "{pushed:?}");

    // A changed file under the same version is refused, and nothing else is pushed either.
    env.write("books/hello.yaml", &runbook("", "    - id: hi\n      run: echo changed\n"));
    env.write(
        "books/new.yaml",
        &runbook("", "    - id: x\n      run: \"true\"\n").replace("name: test", "name: fresh"),
    );
    let refused = client(&env, &srv.url, &author, &["push", "books"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("test 1.0.0 is already published with different content"), "{refused:?}");
    assert!(refused.stderr.contains("nothing was pushed"), "{refused:?}");
    let listed = client(&env, &srv.url, &author, &["show", "nope"]);
    assert_eq!(listed.code, 2);
    // The same text with a file beside it that did not go before: said so.
    let hello = runbook(
        "    who: { type: string, default: world }\n",
        "    - id: hi\n      run: echo hello {{ params.who }}\n",
    );
    env.write("books/hello.yaml", &hello);
    std::fs::remove_file(env.path("books/new.yaml")).unwrap();
    env.write("books/notes.txt", "on-call notes\n");
    let refused = client(&env, &srv.url, &author, &["push", "books"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    let why = "test 1.0.0 is already published with the same text but with other files beside it";
    assert!(refused.stderr.contains(why), "{refused:?}");
    std::fs::remove_file(env.path("books/notes.txt")).unwrap();
    let unchanged = client(&env, &srv.url, &author, &["push", "books"]);
    assert_eq!(unchanged.code, 0, "{unchanged:?}");

    let ran = client(&env, &srv.url, &author, &["run", "test", "-p", "who=cli", "--output", "json"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let doc = ran.json();
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(doc["actor"], "ann");
    let logs = client(&env, &srv.url, &author, &["logs", doc["id"].as_str().unwrap()]);
    assert_eq!(logs.stdout, "[hi] hello cli\n");

    let waiting = client(&env, &srv.url, &author, &["run", "gated"]);
    assert_eq!(waiting.code, 3, "{waiting:?}");
    assert!(waiting.stdout.contains("step asks: Approve step `gate` of gated?; decide with"), "{waiting:?}");
    let history = client(&env, &srv.url, &author, &["history", "--status", "waiting", "--output", "json"]);
    let id = history.json()[0]["id"].as_str().unwrap().to_string();
    let own = client(&env, &srv.url, &author, &["approve", &id]);
    assert_eq!(own.code, 2);
    assert!(own.stderr.contains("the requester cannot approve their own execution"), "{own:?}");
    let ok = client(&env, &srv.url, &approver, &["approve", &id, "--comment", "go"]);
    assert_eq!(ok.code, 0, "followed to its end, as a local approve carries it on: {ok:?}");
    assert!(ok.stdout.contains(&format!("approved step `gate` of execution {id}; going on")), "{ok:?}");
    assert!(ok.stdout.contains("approved"), "{ok:?}");
    let shown = client(&env, &srv.url, &approver, &["show", &id, "--output", "json"]);
    assert_eq!(shown.json()["status"], "succeeded", "{shown:?}");
    // Two approvals: the first leaves it waiting (exit 3); a rejection ends it.
    env.write(
        "books/two.yaml",
        &runbook("", "    - id: gate\n      approval: { min_approvals: 2 }\n    - id: after\n      run: \"true\"\n")
            .replace("name: test", "name: two"),
    );
    assert_eq!(client(&env, &srv.url, &author, &["push", "books/two.yaml"]).code, 0);
    let waiting = client(&env, &srv.url, &author, &["run", "two", "--output", "json"]);
    let id = waiting.json()["id"].as_str().unwrap().to_string();
    let first = client(&env, &srv.url, &approver, &["approve", &id]);
    assert_eq!(first.code, 3, "{first:?}");
    assert!(first.stdout.contains("(1 of 2 approvals); it waits for more"), "{first:?}");
    let no = client(&env, &srv.url, &second, &["reject", &id, "--comment", "not today"]);
    assert!(no.stdout.contains(&format!("rejected step `gate` of execution {id}; rolling back")), "{no:?}");
    assert_eq!(no.code, 0, "nothing to roll back: done as asked: {no:?}");
    let shown = client(&env, &srv.url, &approver, &["show", &id, "--output", "json"]);
    assert_eq!(shown.json()["status"], "failed", "{shown:?}");

    // login keeps the token for later commands.
    let login = out(env
        .cmd(&["--server", &srv.url, "login", "--token", &approver])
        .env("XDG_CONFIG_HOME", env.path("config"))
        .output()
        .unwrap());
    assert_eq!(login.code, 0, "{login:?}");
    assert!(login.stdout.contains(&format!("logged in to {} as sam (role approver);", srv.url)), "{login:?}");
    let shown = out(env
        .cmd(&["--server", &srv.url, "show", &id, "--output", "json"])
        .env("XDG_CONFIG_HOME", env.path("config"))
        .output()
        .unwrap());
    assert_eq!(shown.code, 0, "{shown:?}");
    let creds = std::fs::metadata(env.path("config/opsbook/credentials.toml")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&creds.permissions()) & 0o777, 0o600);

    let verify = env.run(&["admin", "audit", "verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
    assert!(verify.stdout.starts_with("audit trail intact: "), "{verify:?}");
}

#[test]
fn gate_check_and_wait_ask_the_server() {
    let env = Env::new();
    // The server's gate: blocked while the file `incident` exists; each check leaves a line in `checks`.
    env.write(
        "opsbook.yaml",
        "gates:\n  prod:\n    sources:\n      - command: { run: \"echo >> checks; test ! -e incident || { echo maintenance running; exit 1; }\" }\n",
    );
    env.write("server.toml", "gates_file = \"opsbook.yaml\"\n");
    let viewer = token(&env, "vic", &["viewer"]);
    let srv = serve_with(&env, &["--config", "server.toml"]);
    // The client's directory has no gates file: the verdict is the server's.
    let elsewhere = env.path("ci");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let gate = |args: &[&str]| {
        let mut all = vec!["--server", srv.url.as_str(), "gate"];
        all.extend_from_slice(args);
        let mut cmd = env.cmd(&all);
        cmd.current_dir(&elsewhere).env("OPSBOOK_TOKEN", &viewer).env("XDG_CONFIG_HOME", env.path("config"));
        cmd
    };

    let clear = out(gate(&["check", "prod", "--output", "json"]).output().unwrap());
    assert_eq!(clear.code, 0, "{clear:?}");
    assert_eq!(clear.json()["verdict"], "clear");
    assert_eq!(clear.json()["sources"][0]["type"], "command");

    env.write("incident", "");
    let blocked = out(gate(&["check", "prod"]).output().unwrap());
    assert_eq!(blocked.code, 3, "{blocked:?}");
    assert!(blocked.stdout.contains("gate prod: blocked"), "{blocked:?}");
    assert!(blocked.stdout.contains("maintenance running"), "{blocked:?}");

    let unknown = out(gate(&["check", "prdo"]).output().unwrap());
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(unknown.stderr.contains("gate `prdo` not found"), "{unknown:?}");
    let both = out(gate(&["check", "prod", "--config", "x.yaml"]).output().unwrap());
    assert_eq!(both.code, 2, "{both:?}");
    assert!(both.stderr.contains("--config and --server"), "{both:?}");

    // wait: the reasons once, then short lines, and exit 0 once the server says clear.
    let child = gate(&["wait", "prod", "--poll", "200ms", "--max-wait", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let checks = || std::fs::read_to_string(env.path("checks")).unwrap_or_default().lines().count();
    let before = checks();
    crate::support::wait_until(|| checks() >= before + 3, "three checks on the server");
    std::fs::remove_file(env.path("incident")).unwrap();
    let waited = out(child.wait_with_output().unwrap());
    assert_eq!(waited.code, 0, "{waited:?}");
    assert_eq!(waited.stderr.matches("command: maintenance running").count(), 1, "{waited:?}");
    assert!(waited.stderr.contains("gate prod still blocked"), "{waited:?}");
    assert!(waited.stderr.contains("(same reasons)"), "{waited:?}");
    assert!(waited.stderr.contains("gate prod is clear after"), "{waited:?}");

    // Break glass from the CLI: an admin lets a waiting deployment go on, with a reason.
    let author = token(&env, "ann", &["author", "operator"]);
    let admin = token(&env, "ada", &["admin"]);
    env.write(
        "books/deploy.yaml",
        &runbook(
            "",
            "    - id: health\n      gate: { use: prod, poll: 200ms }\n    - id: ship\n      run: echo shipped\n",
        )
        .replace("name: test", "name: deploy"),
    );
    assert_eq!(client(&env, &srv.url, &author, &["push", "books/deploy.yaml"]).code, 0);
    env.write("incident", "");
    // `run` follows the execution through its gate wait (it goes on by itself).
    let follower = env
        .cmd(&["--server", &srv.url, "run", "deploy", "--output", "json"])
        .env("OPSBOOK_TOKEN", &author)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let newest = || client(&env, &srv.url, &author, &["history", "--output", "json"]).json()[0].clone();
    crate::support::wait_until(|| newest()["status"] == "waiting", "the deployment to wait on its gate");
    let id = newest()["id"].as_str().unwrap().to_string();
    let shown = client(&env, &srv.url, &author, &["show", &id]);
    assert!(
        shown.stdout.contains(&format!(
            "waiting on a gate: it goes on by itself when the gate clears; an admin may override with `opsbook --server {} gate override {id} --reason",
            srv.url
        )),
        "{shown:?}"
    );
    let denied = client(&env, &srv.url, &author, &["gate", "override", &id, "--reason", "hotfix"]);
    assert_eq!(denied.code, 2, "{denied:?}");
    assert!(denied.stderr.contains("this needs the admin role"), "{denied:?}");
    let bare = client(&env, &srv.url, &admin, &["gate", "override", &id, "--reason", " "]);
    assert_eq!(bare.code, 2, "{bare:?}");
    assert!(bare.stderr.contains("--reason: say why the gate is overridden"), "{bare:?}");
    let broke = client(&env, &srv.url, &admin, &["gate", "override", &id, "--reason", "hotfix for the outage"]);
    assert_eq!(broke.code, 0, "{broke:?}");
    assert_eq!(
        broke.stdout.trim(),
        format!(
            "overrode gate step `health` of execution {id}: the execution goes on \
             (was: gate `prod` blocked: command: maintenance running)"
        )
    );
    let followed = out(follower.wait_with_output().unwrap());
    assert_eq!(followed.code, 0, "followed through the wait and the override: {followed:?}");
    assert_eq!(followed.json()["status"], "succeeded");
    assert_eq!(followed.json()["id"], id.as_str());
    assert_eq!(followed.json()["steps"][0]["attempts"], 1, "a gate step counts once");
    let logs = client(&env, &srv.url, &author, &["logs", &id, "--follow"]);
    assert_eq!(logs.code, 0, "{logs:?}");
    assert!(logs.stdout.contains("gate overridden by ada: hotfix for the outage"), "{logs:?}");
    assert!(logs.stderr.contains(&format!("execution {id} succeeded")), "{logs:?}");
    let again = client(&env, &srv.url, &admin, &["gate", "override", &id, "--reason", "again"]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains(&format!("execution {id} has succeeded, not waiting on a gate")), "{again:?}");
    std::fs::remove_file(env.path("incident")).unwrap();

    // A server that cannot be reached blocks (fail closed) and says why.
    drop(srv);
    let gone = out(env
        .cmd(&["--server", "http://127.0.0.1:9", "gate", "check", "prod"])
        .current_dir(&elsewhere)
        .env("OPSBOOK_TOKEN", &viewer)
        .output()
        .unwrap());
    assert_eq!(gone.code, 3, "{gone:?}");
    assert!(
        gone.stderr.contains(
            "blocking under fail_mode: closed because server: cannot reach http://127.0.0.1:9: Connection refused"
        ),
        "{gone:?}"
    );
}

#[test]
fn the_gates_file_can_come_from_the_environment_and_must_be_valid() {
    let env = Env::new();
    env.write("bad.yaml", "gates:\n  x:\n    sources:\n      - statuspag: { url: \"http://x\" }\n");
    let serve = |gates: &str| {
        out(env
            .cmd(&["serve", "--listen", "127.0.0.1:0", "--metrics-listen", ""])
            .env("OPSBOOK_GATES_FILE", gates)
            .output()
            .unwrap())
    };
    crate::support::assert_fails_saying(
        &serve("bad.yaml"),
        2,
        "bad.yaml:4:9: unknown value `statuspag` (did you mean `statuspage`?)",
    );
    crate::support::assert_fails_saying(&serve("missing.yaml"), 2, "cannot read missing.yaml");
}

/// `admin` finds the database as `serve` does: in a directory whose `opsbook.toml` names
/// one, a token created there is accepted by the server started there (and `admin` says
/// which database it wrote to).
#[test]
fn admin_and_serve_find_the_same_database() {
    let env = Env::new();
    env.write("opsbook.toml", "db = \"team/opsbook.db\"\nmetrics_listen = \"\"\n");
    // No OPSBOOK_DB: the settings file decides, for both commands.
    let bare = |args: &[&str]| {
        let mut c = env.cmd(args);
        c.env_remove("OPSBOOK_DB").env("XDG_DATA_HOME", env.path("xdg"));
        c
    };
    let o = out(bare(&["admin", "token", "create", "--user", "alice", "--role", "viewer"]).output().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("database team/opsbook.db (chosen by opsbook.toml)"), "{o:?}");
    let secret = o.stdout.trim().to_string();
    assert!(env.path("team/opsbook.db").exists());
    assert!(!env.path("xdg/opsbook/opsbook.db").exists());
    let (child, url, first) = start_server(bare(&["serve", "--listen", "127.0.0.1:0", "--workers", "1"]));
    let srv = Serve { url, child };
    assert!(first.contains("database team/opsbook.db"), "{first}");
    let list = client(&env, &srv.url, &secret, &["history"]);
    assert_eq!(list.code, 0, "the token is known to the server: {list:?}");
}

/// Roles are the built-in ones; other names are labels, given as such.
#[test]
fn token_roles_are_checked() {
    let env = Env::new();
    for (role, says) in [
        ("superuser", "unknown role `superuser`: the roles are viewer, operator, approver, author, admin."),
        ("admn", "unknown role `admn` (did you mean `admin`?)"),
    ] {
        let o = env.run(&["admin", "token", "create", "--user", "u", "--role", role]);
        assert_eq!(o.code, 2, "{o:?}");
        assert!(o.stderr.contains(says), "{o:?}");
    }
    let s = env.store();
    assert!(s.block(opsbook_store::ServerStore::tokens(&s.store)).unwrap().is_empty(), "nothing was created");
    // Neither a label that reads as a role nor a user that reads as opsbook's own actor.
    for (args, says) in [
        (["--user", "u", "--role", "viewer", "--label", "admin"], "label `admin` is the built-in role `admin`"),
        (["--user", "schedule:x", "--role", "viewer", "--label", "x"], "--user: invalid user `schedule:x`"),
    ] {
        let o = env.run(&[&["admin", "token", "create"][..], &args[..]].concat());
        assert_eq!(o.code, 2, "{o:?}");
        assert!(o.stderr.contains(says), "{o:?}");
    }
    assert!(s.block(opsbook_store::ServerStore::tokens(&s.store)).unwrap().is_empty(), "nothing was created");
    let o = env.run(&["admin", "token", "create", "--user", "u", "--role", "approver", "--label", "release-manager"]);
    assert_eq!(o.code, 0, "{o:?}");
    let tokens = s.block(opsbook_store::ServerStore::tokens(&s.store)).unwrap();
    assert_eq!(tokens[0].roles, vec!["approver", "release-manager"]);
}

/// A second server on the same host says how to move (or turn off) its metrics.
#[test]
fn a_taken_metrics_port_names_the_flag() {
    let env = Env::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = env.run(&["serve", "--listen", "127.0.0.1:0", "--metrics-listen", &addr]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains(&format!("cannot listen on {addr} for /metrics")), "{o:?}");
    assert!(o.stderr.contains("--metrics-listen ADDR") && o.stderr.contains("--metrics-listen \"\""), "{o:?}");
    // A notification rule's mistake names the file it is in.
    env.write("bad.toml", "[[notify]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"https://x\"\nevents = [\"faild\"]\n");
    let o = env.run(&["serve", "--config", "bad.toml", "--listen", "127.0.0.1:0", "--metrics-listen", ""]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("bad.toml: notify `a`: unknown event `faild`"), "{o:?}");
}

/// `serve --workers 0` serves the API only; `opsbook worker` processes on the same
/// database run what it queues, secrets included (sealed in the database, opened with
/// the key beside it), and a cancel on the API node reaches a step running in a worker.
#[test]
fn api_nodes_and_worker_processes_share_one_database() {
    use std::io::{BufRead, BufReader};
    let env = Env::new();
    let admin = token(&env, "ann", &["admin"]);
    let (child, url, line) =
        start_server(env.cmd(&["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--workers", "0"]));
    assert!(line.contains("(no workers: an API node, database"), "{line}");
    let api = Serve { child, url };
    let mut worker = env
        .cmd(&["worker", "--concurrency", "2", "--metrics-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(worker.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("opsbook worker running up to 2 executions at once"), "{first}");
    let metrics = first.split_whitespace().find(|w| w.starts_with("http://")).expect("metrics address").to_string();
    let metrics = metrics.trim_end_matches(')').trim_end_matches("/metrics").to_string();
    let _worker = Serve { child: worker, url: String::new() };
    env.write(
        "books/secret.yaml",
        &runbook(
            "    pw: { type: secret, required: true }\n",
            "    - id: use\n      run: test \"$(printf %s \"$PW\" | wc -c)\" -eq 7 && echo \"worker $PPID got it\"\n      env: { PW: \"{{ params.pw }}\" }\n",
        ),
    );
    env.write(
        "books/slow.yaml",
        &runbook("", "    - id: wait\n      run: sleep 300\n").replace("name: test", "name: slow"),
    );
    assert_eq!(client(&env, &api.url, &admin, &["push", "books"]).code, 0);
    let ran = client(&env, &api.url, &admin, &["run", "test", "-p", "pw=hunter2", "--output", "json"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.json()["status"], "succeeded");
    let id = ran.json()["id"].as_str().unwrap().to_string();
    let logs = client(&env, &api.url, &admin, &["logs", &id]);
    assert!(logs.stdout.contains("got it") && !logs.stdout.contains("hunter2"), "{logs:?}");
    // The worker's own /metrics counts what it ran.
    let scrape = || {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(metrics.trim_start_matches("http://")).unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        answer
    };
    assert!(scrape().starts_with("HTTP/1.1 200"));
    // Counted as the worker's runner ends, just after the execution's end is stored.
    let finished = "opsbook_executions_finished_total{runbook=\"test\",status=\"succeeded\"} 1";
    crate::support::wait_until(|| scrape().contains(finished), "the worker's metric");

    // Cancelled on the API node while its step runs in the worker: it stops there.
    let mut follower = env
        .cmd(&["--server", &api.url, "run", "slow"])
        .env("OPSBOOK_TOKEN", &admin)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let slow = loop {
        let h = client(
            &env,
            &api.url,
            &admin,
            &["history", "--runbook", "slow", "--status", "running", "--output", "json"],
        );
        if let Some(id) = h.json()[0]["id"].as_str() {
            break id.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "the worker did not start it: {h:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let started = std::time::Instant::now();
    assert_eq!(client(&env, &api.url, &admin, &["cancel", &slow]).code, 0);
    let status = follower.wait().unwrap();
    assert_eq!(status.code(), Some(1), "the follower sees it end");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "stopped, not waited out");
    let shown = client(&env, &api.url, &admin, &["show", &slow, "--output", "json"]);
    assert_eq!(shown.json()["status"], "cancelled", "{shown:?}");
}

/// The server seals secret parameters with a key kept beside its database (made, 0600,
/// on the first start) unless OPSBOOK_SECRET_KEY or secret_key_file names one.
#[test]
fn serve_keeps_its_secret_key_beside_the_database() {
    let env = Env::new();
    let args = ["serve", "--listen", "127.0.0.1:0", "--metrics-listen", ""];
    let bad = out(env.cmd(&args).env("OPSBOOK_SECRET_KEY", "abc").output().unwrap());
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("OPSBOOK_SECRET_KEY: key 1: expected 64 hex digits"), "{bad:?}");
    let key = env.db.with_file_name("opsbook-secret.key");
    assert!(!key.exists(), "nothing made when the key given is wrong");
    let srv = serve(&env);
    drop(srv);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    let first = text.lines().find(|l| !l.starts_with('#')).unwrap().to_string();
    assert_eq!(first.len(), 64);
    // The next start keeps it.
    drop(serve(&env));
    assert!(std::fs::read_to_string(&key).unwrap().contains(&first));
    env.write("bad.key", "not a key\n");
    env.write("opsbook.toml", &format!("secret_key_file = \"{}\"\n", env.path("bad.key").display()));
    let o = out(env.cmd(&args).arg("--config").arg(env.path("opsbook.toml")).output().unwrap());
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("bad.key: key 1: expected 64 hex digits"), "{o:?}");
}

/// `opsbook login URL` keeps the server and token as a profile; later commands use it
/// unless told `--local` (or `--db`); a command with no server form refuses `--server`
/// rather than quietly acting here.
#[test]
fn login_profiles_choose_the_server() {
    let env = Env::new();
    let admin = token(&env, "ann", &["admin"]);
    let viewer = token(&env, "vic", &["viewer"]);
    let srv = serve(&env);
    // Without OPSBOOK_DB, so the profile decides; the local database is another file.
    let cmd = |args: &[&str]| {
        out(env
            .cmd(args)
            .env_remove("OPSBOOK_DB")
            .env("XDG_CONFIG_HOME", env.path("config"))
            .env("XDG_DATA_HOME", env.path("local-data"))
            .output()
            .unwrap())
    };
    let refused = cmd(&["login", &srv.url, "--token", "obk_not_a_token"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("did not accept the token (unknown, or none was given)"), "{refused:?}");
    let login = cmd(&["login", &srv.url, "--token", &admin]);
    assert_eq!(login.code, 0, "{login:?}");
    assert!(login.stdout.contains("as ann (role admin); saved as profile `default`, the default"), "{login:?}");
    let file = env.path("config/opsbook/credentials.toml");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // On a terminal, the token is asked for and not echoed.
    let login_cmd = format!("exec {} login {} --profile readonly", env!("CARGO_BIN_EXE_opsbook"), srv.url);
    let child = env
        .cmd(&[])
        .env_remove("OPSBOOK_DB")
        .env("XDG_CONFIG_HOME", env.path("config"))
        .spawn_with_program("script", &["-qec", &login_cmd, "/dev/null"]);
    let (status, screen) = crate::support::answer_prompt(child, "(not shown): ", &viewer);
    assert!(status.success(), "{screen}");
    assert!(screen.contains("saved as profile `readonly` in"), "{screen}");
    assert!(!screen.contains(&viewer), "not echoed: {screen}");

    env.write("books/hi.yaml", &runbook("", "    - id: hi\n      run: echo hi\n"));
    let pushed = cmd(&["push", "books"]);
    assert_eq!(pushed.code, 0, "push goes to the default profile's server: {pushed:?}");
    let ran = cmd(&["run", "test", "--output", "json"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.json()["actor"], "ann");
    let refused = cmd(&["--profile", "readonly", "run", "test"]);
    assert_eq!(refused.code, 2, "a viewer may not run: {refused:?}");
    let unknown = cmd(&["--profile", "nope", "history"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("no profile `nope`") && unknown.stderr.contains("default, readonly"),
        "{unknown:?}"
    );

    // A file given to `run` while logged in: say how to run it here.
    let file = cmd(&["run", "books/hi.yaml"]);
    assert_eq!(file.code, 2, "{file:?}");
    assert!(
        file.stderr.contains("is a file, and you are logged in to a server") && file.stderr.contains("--local"),
        "{file:?}"
    );
    let local = cmd(&["--local", "run", "books/hi.yaml", "--output", "json"]);
    assert_eq!(local.code, 0, "{local:?}");
    let remote = cmd(&["history", "--output", "json"]);
    let local = cmd(&["--local", "history", "--output", "json"]);
    assert_eq!(remote.json().as_array().unwrap().len(), 1, "{remote:?}");
    assert_eq!(local.json().as_array().unwrap().len(), 1, "{local:?}");
    assert_ne!(remote.json()[0]["id"], local.json()[0]["id"]);

    // Commands with no server form: refused when a server is asked for, local otherwise.
    let validate = cmd(&["--server", &srv.url, "validate", "books"]);
    assert_eq!(validate.code, 2, "{validate:?}");
    assert!(validate.stderr.contains("validate checks files here and has no server form"), "{validate:?}");
    assert_eq!(cmd(&["validate", "books"]).code, 0);
    assert_eq!(cmd(&["--local", "--server", &srv.url, "history"]).code, 2);
    // `--local` wins over OPSBOOK_SERVER from the environment; admin is always here.
    let env_local = out(env
        .cmd(&["--local", "validate", "books"])
        .env_remove("OPSBOOK_DB")
        .env("OPSBOOK_SERVER", &srv.url)
        .env("XDG_CONFIG_HOME", env.path("config"))
        .output()
        .unwrap());
    assert_eq!(env_local.code, 0, "{env_local:?}");
    // Under OPSBOOK_SERVER alone (a CI job that pushes), what only acts here runs here.
    let env_only = out(env
        .cmd(&["validate", "books"])
        .env_remove("OPSBOOK_DB")
        .env("OPSBOOK_SERVER", &srv.url)
        .env("XDG_CONFIG_HOME", env.path("config"))
        .output()
        .unwrap());
    assert_eq!(env_only.code, 0, "{env_only:?}");
    assert!(env_only.stdout.contains("ok"), "{env_only:?}");
    let admin_here = cmd(&["admin", "token", "list"]);
    assert_eq!(admin_here.code, 0, "admin works on this machine's database: {admin_here:?}");

    // A broken credentials file is an error naming it, not silently ignored.
    std::fs::write(env.path("config/opsbook/credentials.toml"), "default = [\n").unwrap();
    let broken = cmd(&["history"]);
    assert_eq!(broken.code, 2, "{broken:?}");
    assert!(broken.stderr.contains("credentials.toml"), "{broken:?}");
}

/// A worker that would run nothing says which setting made it so.
#[test]
fn a_worker_with_no_concurrency_names_the_setting() {
    let env = Env::new();
    let o = env.run(&["worker", "--concurrency", "0"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("--concurrency is 0, but a worker runs at least one execution at once"), "{o:?}");
    env.write("opsbook.toml", "workers = 0\n");
    let o = env.run(&["worker", "--config", "opsbook.toml"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("workers (in the settings) is 0"), "{o:?}");
    let o = out(env.cmd(&["worker"]).env("OPSBOOK_LEASE", "1s").output().unwrap());
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("lease (OPSBOOK_LEASE): at least 2s"), "{o:?}");
    let o = out(env.cmd(&["worker"]).env("OPSBOOK_LEASE", "bogus").output().unwrap());
    assert!(o.stderr.contains("OPSBOOK_LEASE: "), "{o:?}");
}

/// A node without the key that sealed the secrets the database keeps does not start: each
/// execution it claimed with them would fail for good.
#[test]
fn a_node_without_the_key_of_kept_secrets_does_not_start() {
    let env = Env::new();
    let op = token(&env, "olga", &["author", "operator"]);
    let srv = serve(&env);
    env.write(
        "books/held.yaml",
        &runbook(
            "    pw: { type: secret }\n",
            "    - id: gate\n      approval: {}\n    - id: use\n      run: test -n \"$OPSBOOK_PARAM_PW\"\n",
        )
        .replace("name: test", "name: held"),
    );
    assert_eq!(client(&env, &srv.url, &op, &["push", "books"]).code, 0);
    let waiting = client(&env, &srv.url, &op, &["run", "held", "-p", "pw=hunter22"]);
    assert_eq!(waiting.code, 3, "{waiting:?}");
    drop(srv);
    let old = std::fs::read_to_string(env.db.with_file_name("opsbook-secret.key")).unwrap();
    let old = old.lines().find(|l| !l.starts_with('#')).unwrap().to_string();
    let new = "5e0c2f8a1b3d4c6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6";
    let args = ["serve", "--listen", "127.0.0.1:0", "--metrics-listen", ""];
    let o = out(env.cmd(&args).env("OPSBOOK_SECRET_KEY", new).output().unwrap());
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("the database keeps secret parameters sealed with key "), "{o:?}");
    assert!(o.stderr.contains("which this node does not have"), "{o:?}");
    // With the old key beside the new one (rotation), it starts.
    let mut cmd = env.cmd(&args);
    cmd.env("OPSBOOK_SECRET_KEY", format!("{new},{old}"));
    let (mut child, _, _) = start_server(cmd);
    let _ = child.kill();
    let _ = child.wait();
}
