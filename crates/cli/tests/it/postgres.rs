//! `opsbook` on a shared PostgreSQL database: moving a SQLite server's data there, API
//! nodes and worker processes as separate processes, and what a kill -9 of a worker does.

use crate::support::{Env, runbook};

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
    let before = env.run(&["history", "--output", "json"]).json();
    let id = before[0]["id"].as_str().unwrap().to_string();

    let pg = fresh_database();
    let from = format!("sqlite://{}", env.path("state/opsbook.db").display());
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
}
