//! `opsbook` on a shared PostgreSQL database: moving a SQLite server's data there, API
//! nodes and worker processes as separate processes, and what a kill -9 of a worker does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use opsbook_store_postgres::testing::{Cluster, Durability};

use crate::support::{Env, out, runbook};

/// A new, empty database on the test server.
pub(crate) fn fresh_database() -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(opsbook_store_postgres::testing::fresh_database())
}

/// `admin copy` moves everything a SQLite server holds (executions with their steps and
/// logs, tokens, the audit chain) into an empty PostgreSQL database, which then serves
/// it; a second copy into a database that is not empty is refused and changes nothing.
#[test]
fn admin_copy_moves_a_sqlite_server_to_postgres() {
    let env = Env::new();
    env.write(
        "test.yaml",
        &runbook("", "    - id: a\n      run: echo copied line\n    - id: b\n      run: \"true\"\n"),
    );
    let o = env.run(&["run", "test.yaml"]);
    assert_eq!(o.code, 0, "{o:?}");
    let o = env.run(&["admin", "token", "create", "--user", "ann", "--role", "admin"]);
    assert_eq!(o.code, 0, "{o:?}");
    let id = env.run(&["history", "--output", "json"]).json()[0]["id"].as_str().unwrap().to_string();
    // Feedback has the one 32-bit column (its rating).
    let o = env.run(&["feedback", &id, "--rating", "4", "--comment", "smooth"]);
    assert_eq!(o.code, 0, "{o:?}");
    let before = env.run(&["history", "--output", "json"]).json();

    let pg = fresh_database();
    let from = format!("sqlite://{}", env.path("state/opsbook.db").display());
    // Not while a server still writes to it: what it wrote after the copy would be lost.
    let live = crate::server::serve(&env);
    let o = env.run(&["admin", "copy", "--from", &from, "--to", &pg]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("a server is serving") && o.stderr.contains("stop it first"), "{o:?}");
    // However the file is named.
    std::os::unix::fs::symlink(env.path("state/opsbook.db"), env.path("alias.db")).unwrap();
    let alias = format!("sqlite://{}", env.path("alias.db").display());
    let o = env.run(&["admin", "copy", "--from", &alias, "--to", &pg]);
    assert_eq!(o.code, 2, "through a link: {o:?}");
    // A hard link is another name for the same file, with a lock file of its own: refused.
    std::fs::hard_link(env.path("state/opsbook.db"), env.path("hard.db")).unwrap();
    let hard = format!("sqlite://{}", env.path("hard.db").display());
    let o = env.run(&["admin", "copy", "--from", &hard, "--to", &pg]);
    assert_eq!(o.code, 2, "through a hard link: {o:?}");
    assert!(o.stderr.contains("has 2 hard links: a server may serve it under another name"), "{o:?}");
    std::fs::remove_file(env.path("hard.db")).unwrap();
    drop(live); // kill -9: the kernel lets go of its lock
    let o = env.run(&["admin", "copy", "--from", &from, "--to", &pg]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("the audit trail verifies"), "{o:?}");
    let copied = |table: &str| -> u64 {
        let line = o.stdout.lines().find(|l| l.split_whitespace().next() == Some(table)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert_eq!(copied("executions"), 1);
    assert_eq!(copied("execution_steps"), 2);
    assert_eq!(copied("api_tokens"), 1);
    assert_eq!(copied("execution_feedback"), 1);
    assert!(copied("execution_logs") >= 1 && copied("audit_log") >= 1, "{o:?}");

    let on_pg = |args: &[&str]| {
        let mut all = vec!["--database", pg.as_str()];
        all.extend_from_slice(args);
        env.run(&all)
    };
    let after = on_pg(&["history", "--output", "json"]).json();
    assert_eq!(after, before, "the same history, field for field");
    let logs = on_pg(&["logs", &id]);
    assert!(logs.stdout.contains("copied line"), "{logs:?}");
    let verify = on_pg(&["admin", "audit", "verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
    assert!(verify.stdout.contains("audit trail intact"), "{verify:?}");
    let tokens = on_pg(&["admin", "token", "list"]);
    assert!(tokens.stdout.contains("ann"), "{tokens:?}");

    let again = env.run(&["admin", "copy", "--from", &from, "--to", &pg]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains("already holds executions"), "{again:?}");
    assert_eq!(on_pg(&["history", "--output", "json"]).json().as_array().unwrap().len(), 1, "nothing added");

    let backwards = env.run(&["admin", "copy", "--from", &pg, "--to", &from]);
    assert_eq!(backwards.code, 2, "{backwards:?}");
    assert!(backwards.stderr.contains("from a SQLite database to a PostgreSQL one"), "{backwards:?}");
    // A database flag typed beside them would be ignored: refused (OPSBOOK_DB, set in the
    // environment of every run here, is not).
    let stray = env.run(&["admin", "copy", "--db", "x.db", "--from", &from, "--to", &pg]);
    assert_eq!(stray.code, 2, "{stray:?}");
    assert!(
        stray.stderr.contains("admin copy names both databases with --from and --to: --db does not apply"),
        "{stray:?}"
    );
    let stray = env.run(&["admin", "copy", "--local", "--from", &from, "--to", &pg, "--database", &from]);
    assert!(stray.stderr.contains("--database, --local do not apply"), "{stray:?}");
}

/// One HTTP/1.1 request over a new connection: the status and the body.
fn http(url: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    crate::support::request(url, method, path, &headers, body.as_bytes())
}

/// A process started for the test, killed (kill -9) when dropped.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The environment every node of the shared database gets: the database, the secret key
/// and a short lease (a killed worker's executions are recovered within seconds).
fn node(env: &Env, pg: &str, args: &[&str]) -> std::process::Command {
    let mut cmd = env.cmd(args);
    cmd.env("OPSBOOK_DATABASE_URL", pg)
        .env("OPSBOOK_SECRET_KEY", "5e0c2f8a1b3d4c6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6")
        .env("OPSBOOK_LEASE", "3s")
        .env("RUST_LOG", "warn");
    cmd
}

fn api_node(env: &Env, pg: &str) -> (Proc, String) {
    let cmd = node(env, pg, &["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--workers", "0"]);
    let (child, url, _) = crate::support::start_server(cmd);
    (Proc(child), url)
}

fn worker(env: &Env, pg: &str) -> Proc {
    let child = node(env, pg, &["worker", "--concurrency", "4"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

/// Five steps that append a marker per run of themselves; `deploy` and `migrate` are
/// not idempotent.
fn chaos_book() -> String {
    let step = |id: &str, idempotent: bool| {
        format!(
            "    - id: {id}\n      idempotent: {idempotent}\n      run: |\n        echo {{{{ params.n }}}}:{id} >> \"$T/markers\"\n        sleep 0.1\n"
        )
    };
    let steps: String = [("prepare", true), ("deploy", false), ("migrate", false), ("verify", true), ("report", true)]
        .iter()
        .map(|(id, idem)| step(id, *idem))
        .collect();
    format!(
        "apiVersion: opsbook/v1\nkind: Runbook\nmetadata:\n  name: chaos\n  type: deployment\n  version: 1.0.0\nspec:\n  parameters:\n    n: {{ type: integer, required: true }}\n  steps:\n{steps}"
    )
}

/// Two API nodes and three worker processes on one database; 500 executions of a 5-step
/// runbook; a random worker is killed (kill -9) every 2 s and a new one started. At the
/// end every execution is final, no step that is not idempotent ran twice, and every run
/// of a step (its marker) is a recorded attempt or the one recovery cancelled.
#[test]
fn kill_9_workers_on_a_shared_database() {
    let env = Env::new();
    let pg = fresh_database();
    let admin = {
        let o =
            out(node(&env, &pg, &["admin", "token", "create", "--user", "ann", "--role", "admin"]).output().unwrap());
        assert_eq!(o.code, 0, "{o:?}");
        o.stdout.trim().to_string()
    };
    let nodes = [api_node(&env, &pg), api_node(&env, &pg)];
    let mut workers: Vec<Proc> = (0..3).map(|_| worker(&env, &pg)).collect();
    env.write("chaos.yaml", &chaos_book());
    let push =
        out(env.cmd(&["--server", &nodes[0].1, "push", "chaos.yaml"]).env("OPSBOOK_TOKEN", &admin).output().unwrap());
    assert_eq!(push.code, 0, "{push:?}");

    let total = 500;
    let started = Instant::now();
    let mut ids = Vec::new();
    for n in 0..total {
        let url = &nodes[n % 2].1;
        let (status, body) =
            http(url, "POST", "/api/v1/runbooks/chaos/executions", &admin, &format!("{{\"params\":{{\"n\":{n}}}}}"));
        assert_eq!(status, 202, "{body}");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        ids.push(doc["id"].as_str().unwrap().to_string());
    }
    let submitted = started.elapsed();

    let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ u64::from(std::process::id());
    let mut killed = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    let unfinished = |url: &str| -> usize {
        ["queued", "running"]
            .iter()
            .map(|status| {
                let (_, body) = http(url, "GET", &format!("/api/v1/executions?status={status}&limit=500"), &admin, "");
                let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                doc["items"].as_array().map_or(0, Vec::len)
            })
            .sum()
    };
    while unfinished(&nodes[1].1) > 0 {
        assert!(Instant::now() < deadline, "executions still unfinished after 90 s");
        std::thread::sleep(Duration::from_secs(2));
        if killed < 12 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let victim = (rng % workers.len() as u64) as usize;
            drop(workers.remove(victim));
            killed += 1;
            workers.push(worker(&env, &pg));
        }
    }
    let elapsed = started.elapsed();

    // As a person would: resume each interrupted execution (the server refuses those
    // whose interrupted step is not idempotent: they are for a person to look at).
    let (mut resumed, mut refused) = (0, 0);
    for (n, id) in ids.iter().enumerate() {
        let (_, body) = http(&nodes[n % 2].1, "GET", &format!("/api/v1/executions/{id}"), &admin, "");
        if body.contains("\"status\":\"interrupted\"") {
            match http(&nodes[n % 2].1, "POST", &format!("/api/v1/executions/{id}/resume"), &admin, "{}") {
                (202 | 200, _) => resumed += 1,
                (409, _) => refused += 1,
                (status, body) => panic!("resume {id}: {status} {body}"),
            }
        }
    }
    while unfinished(&nodes[0].1) > 0 {
        assert!(Instant::now() < deadline + Duration::from_secs(30), "resumed executions unfinished");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Every execution is final; count each outcome.
    let mut outcomes = BTreeMap::<String, usize>::new();
    let markers = std::fs::read_to_string(env.path("markers")).unwrap_or_default();
    let mut reruns = 0;
    for (n, id) in ids.iter().enumerate() {
        let (status, body) = http(&nodes[n % 2].1, "GET", &format!("/api/v1/executions/{id}"), &admin, "");
        assert_eq!(status, 200, "{body}");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        let state = doc["status"].as_str().unwrap().to_string();
        assert!(matches!(state.as_str(), "succeeded" | "failed" | "interrupted" | "cancelled"), "{id}: {state}");
        *outcomes.entry(state).or_default() += 1;
        for step in doc["steps"].as_array().unwrap() {
            let step_id = step["id"].as_str().unwrap();
            let runs = markers.lines().filter(|l| *l == format!("{n}:{step_id}")).count();
            let attempts = step["attempts"].as_u64().unwrap() as usize;
            let cancelled = usize::from(step["status"] == "cancelled");
            if matches!(step_id, "deploy" | "migrate") {
                assert!(runs <= 1, "execution {n}: `{step_id}` ran {runs} times");
            }
            assert!(
                runs <= attempts + cancelled,
                "execution {n}: `{step_id}` ran {runs} times, {attempts} attempts recorded"
            );
            reruns += runs.saturating_sub(1);
        }
    }
    eprintln!(
        "shared-database chaos: {total} executions on 2 API nodes and 3 workers, {killed} workers killed (kill -9); \
         submitted in {submitted:.1?}, all final in {elapsed:.1?}; {resumed} interrupted ones resumed, {refused} refused \
         (a step that is not idempotent); outcomes {outcomes:?}; {reruns} step re-runs"
    );
    assert!(outcomes.get("succeeded").copied().unwrap_or(0) > total / 2, "{outcomes:?}");
    drop(nodes);
}

/// PostgreSQL stops while a step runs: the API answers 503 `database_unavailable` (never
/// a 500), the step goes on, and once the database is back its result and the next
/// step are recorded; nothing is lost.
#[test]
fn postgres_going_down_mid_step_loses_nothing() {
    let env = Env::new();
    let cluster = Cluster::start(Durability::Throwaway);
    let admin = {
        let o = out(node(&env, &cluster.url, &["admin", "token", "create", "--user", "ann", "--role", "admin"])
            .output()
            .unwrap());
        o.stdout.trim().to_string()
    };
    let (child, url, _) = crate::support::start_server(node(
        &env,
        &cluster.url,
        &["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--workers", "1"],
    ));
    let _server = Proc(child);
    env.write(
        "outage.yaml",
        &runbook(
            "",
            "    - id: long\n      run: |\n        touch \"$T/started\"\n        sleep 4\n        echo done > \"$T/long\"\n    - id: next\n      run: echo next > \"$T/next\"\n",
        ),
    );
    let push = out(env.cmd(&["--server", &url, "push", "outage.yaml"]).env("OPSBOOK_TOKEN", &admin).output().unwrap());
    assert_eq!(push.code, 0, "{push:?}");
    let (status, body) = http(&url, "POST", "/api/v1/runbooks/test/executions", &admin, "{}");
    assert_eq!(status, 202, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
    crate::support::wait_until(|| env.path("started").exists(), "the step to start");

    cluster.down();
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(http(&url, "GET", &format!("/api/v1/executions/{id}"), &admin, ""));
        std::thread::sleep(Duration::from_millis(300));
    }
    for (status, body) in &answers {
        assert_eq!(*status, 503, "{body}");
        assert!(body.contains("database_unavailable"), "{body}");
    }
    // The step finishes while the database is down; its result waits.
    crate::support::wait_until(|| env.path("long").exists(), "the step to finish");
    std::thread::sleep(Duration::from_secs(1));
    cluster.up();

    let start = Instant::now();
    let doc = loop {
        let (status, body) = http(&url, "GET", &format!("/api/v1/executions/{id}"), &admin, "");
        if status == 200 {
            let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
            if doc["status"] == "succeeded" {
                break doc;
            }
            assert!(matches!(doc["status"].as_str(), Some("running" | "queued")), "{doc}");
        } else {
            assert_eq!(status, 503, "{body}");
        }
        assert!(start.elapsed() < Duration::from_secs(30), "not recorded after the database came back: {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let steps = doc["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["status"] == "succeeded" && s["attempts"] == 1), "{doc}");
    assert_eq!(env.read("next"), "next\n");
}

/// A worker process runs what one API node queued, with a secret parameter sealed by
/// that node; `logs --follow` on the other API node shows every line once, in order,
/// with the secret masked.
#[test]
fn output_and_secrets_travel_between_nodes() {
    let env = Env::new();
    let pg = fresh_database();
    let o = out(node(&env, &pg, &["admin", "migrate"]).output().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("schema at version"), "{o:?}");
    let admin = {
        let o =
            out(node(&env, &pg, &["admin", "token", "create", "--user", "ann", "--role", "admin"]).output().unwrap());
        o.stdout.trim().to_string()
    };
    let (a, b) = (api_node(&env, &pg), api_node(&env, &pg));
    let _worker = worker(&env, &pg);
    env.write(
        "talk.yaml",
        &runbook(
            "    password: { type: secret, required: true }\n",
            "    - id: talk\n      run: |\n        for i in $(seq 1 40); do echo \"line $i\"; sleep 0.05; done\n        echo \"using {{ params.password }}\"\n        printf %s {{ params.password }} > \"$T/seen\"\n",
        ),
    );
    let push = out(env.cmd(&["--server", &a.1, "push", "talk.yaml"]).env("OPSBOOK_TOKEN", &admin).output().unwrap());
    assert_eq!(push.code, 0, "{push:?}");
    let (status, body) = http(
        &a.1,
        "POST",
        "/api/v1/runbooks/test/executions",
        &admin,
        "{\"params\":{\"password\":\"hunter2-s3cret\"}}",
    );
    assert_eq!(status, 202, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
    let follow =
        out(env.cmd(&["--server", &b.1, "logs", "--follow", &id]).env("OPSBOOK_TOKEN", &admin).output().unwrap());
    assert_eq!(follow.code, 0, "{follow:?}");
    let lines: Vec<&str> = follow.stdout.lines().filter_map(|l| l.split("line ").nth(1)).collect();
    let expected: Vec<String> = (1..=40).map(|i| i.to_string()).collect();
    assert_eq!(lines, expected, "every line once, in order: {}", follow.stdout);
    assert!(follow.stdout.contains("using ***") && !follow.stdout.contains("hunter2"), "{}", follow.stdout);
    assert_eq!(env.read("seen"), "hunter2-s3cret", "the worker opened the secret the other node sealed");
    let (_, doc) = http(&b.1, "GET", &format!("/api/v1/executions/{id}"), &admin, "");
    assert!(doc.contains("\"status\":\"succeeded\""), "{doc}");
}

/// A server that takes the connection and never answers (not PostgreSQL, or hung) is
/// named after a bounded wait, not waited on for ever.
#[test]
fn a_database_that_never_answers_is_named() {
    let env = Env::new();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("postgres://ops:pw@{}/opsbook", silent.local_addr().unwrap());
    // Connections are accepted (by the kernel's backlog) and never answered.
    let started = std::time::Instant::now();
    let o = env.run(&["admin", "migrate", "--database", &url]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("no answer within 10s (is it a PostgreSQL server, and is it up?)"), "{o:?}");
    assert!(!o.stderr.contains(":pw@"), "{o:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "bounded");
    drop(silent);
}
