//! Graceful shutdown and recovery after a restart.

use std::time::{Duration, Instant};

use opsbook_core::{ExecStatus, StepStatus};
use opsbook_store::{Execution, StepRecord, Store, now_ms};
use serde_json::json;

use crate::support::{Server, runbook};

fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_steps_finish_then_interrupts_the_rest() {
    let s = Server::start_with(|c| c.shutdown_grace = "1s".into()).await;
    let op = s.token("olga", &["operator", "author"]).await;
    let book = runbook(
        "long",
        "1.0.0",
        "",
        "",
        "    - id: hang\n      run: echo $$ > pid; sleep 300\n    - id: never\n      run: touch never\n",
    );
    s.publish(&op, &book).await;
    let (_, sub) = s.post("/api/v1/runbooks/long/executions", &op, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    let pid_file = s.dir.path().join("pid");
    let start = Instant::now();
    // The shell creates the file before it writes the number: wait for the number.
    let pid: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse().ok()) {
            break pid;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the step did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let store = s.store.clone();
    let dir = s.stop_keep_dir().await;
    let e = store.execution(&id).await.unwrap();
    assert_eq!(e.status, ExecStatus::Interrupted);
    assert_eq!(e.error.as_deref(), Some("the server shut down before this execution finished"));
    let steps = store.steps(&id).await.unwrap();
    assert_eq!(steps[0].status, StepStatus::Cancelled);
    let start = Instant::now();
    while !dead(pid) {
        assert!(start.elapsed() < Duration::from_secs(10), "the step's process group was not killed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!dir.path().join("never").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_of_a_dead_worker_are_recovered_on_start() {
    let s = Server::start().await;
    let op = s.token("olga", &["operator", "author"]).await;
    s.publish(&op, &runbook("job", "1.0.0", "", "", "    - id: a\n      run: \"true\"\n")).await;
    let store = s.store.clone();
    let dir = s.stop_keep_dir().await;
    // A worker on another machine claimed this and died: its lease ran out.
    let rb = opsbook_core::parse(&runbook("job", "1.0.0", "", "", "    - id: a\n      run: \"true\"\n")).unwrap();
    let sha = store.runbook(&rb.sha256).await.unwrap().sha256;
    let now = now_ms();
    let exec = Execution {
        id: "ghost000000000001".into(),
        runbook_name: "job".into(),
        runbook_version: "1.0.0".into(),
        runbook_sha256: sha,
        source_path: None,
        base_dir: dir.path().to_string_lossy().into(),
        status: ExecStatus::Running,
        actor: "olga".into(),
        params: json!({}),
        secret_digests: json!({}),
        created_at: now - 60_000,
        started_at: Some(now - 60_000),
        finished_at: None,
        error: None,
        current_step: Some(0),
        rollback_status: None,
        owner: Some("server:elsewhere:4242".into()),
        lease_expires_at: Some(now - 1_000),
        heartbeat_at: Some(now - 31_000),
        cancel_requested: false,
        parent_id: None,
        parent_step: None,
    };
    let mut step = StepRecord::pending(&exec.id, 0, "a", "a", "run");
    step.status = StepStatus::Running;
    store.create_execution(&exec, &[step]).await.unwrap();
    let s = Server::start_in(dir, |_| {}).await;
    let start = Instant::now();
    loop {
        let e = s.store.execution(&exec.id).await.unwrap();
        if e.status == ExecStatus::Interrupted {
            assert_eq!(
                e.error.as_deref(),
                Some("the runner (server:elsewhere:4242) stopped unexpectedly during step `a`")
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "not recovered: {e:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;
}

/// Fencing: a runner whose claim is taken while its step runs (it was paused, or cut off
/// from the database, past its lease) stops at its next heartbeat — its step's process
/// group killed — and writes nothing more: no attempt, no step, no final status, no next
/// step. The execution is the new holder's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_whose_claim_is_taken_stops_and_writes_nothing() {
    let s = Server::start().await;
    let op = s.token("olga", &["operator", "author"]).await;
    let dir = s.dir.path().to_path_buf();
    let book = runbook(
        "fenced",
        "1.0.0",
        "",
        "",
        &format!(
            "    - id: long\n      run: echo $$ > {d}/pid; touch {d}/started; i=0; while [ $i -lt 600 ]; do echo tick $i; i=$((i+1)); sleep 0.05; done; touch {d}/finished\n    - id: next\n      run: touch {d}/next\n",
            d = dir.display()
        ),
    );
    s.publish(&op, &book).await;
    let (_, sub) = s.post("/api/v1/runbooks/fenced/executions", &op, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    let start = Instant::now();
    while !dir.join("started").exists() {
        assert!(start.elapsed() < Duration::from_secs(20), "the step did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another runner takes the claim, as after a lapsed lease.
    let far = now_ms() + 3_600_000;
    s.sql(&format!("UPDATE executions SET owner = 'server:thief', lease_expires_at = {far} WHERE id = '{id}'")).await;
    // The step goes on printing until its runner notices; none of it is written any more.
    let lines_at_theft = s.store.last_log_seq(&id).await.unwrap();
    let pid: i32 = std::fs::read_to_string(dir.join("pid")).unwrap().trim().parse().unwrap();
    while !dead(pid) {
        assert!(start.elapsed() < Duration::from_secs(40), "the step's shell {pid} was not killed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Whatever the stale runner would still write has had time to land.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!dir.join("finished").exists(), "the step's process group was killed");
    assert!(!dir.join("next").exists(), "no next step");
    let exec = s.store.execution(&id).await.unwrap();
    assert_eq!((exec.status, exec.owner.as_deref()), (ExecStatus::Running, Some("server:thief")), "{exec:?}");
    let steps = s.store.steps(&id).await.unwrap();
    assert_eq!(steps[0].status, StepStatus::Running, "the stale runner did not settle it");
    assert_eq!(steps[1].status, StepStatus::Pending);
    assert!(s.store.attempts(&id).await.unwrap().is_empty(), "no attempt written");
    assert_eq!(s.store.last_log_seq(&id).await.unwrap(), lines_at_theft, "no log line written");
    s.stop().await;
}

/// Another process holds the database past the busy wait: the API answers 503
/// `database_unavailable` with Retry-After (never a 500), and works again once it is let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_answers_503_and_recovers() {
    let s = Server::start().await;
    let op = s.token("olga", &["operator", "author"]).await;
    s.publish(&op, &runbook("quick", "1.0.0", "", "", "    - id: a\n      run: \"true\"\n")).await;
    // Each on a new connection: a pooled one may sit idle past the server's idle limit.
    let submit = || {
        reqwest::Client::new()
            .post(format!("{}/api/v1/runbooks/quick/executions", s.url))
            .bearer_auth(&op)
            .json(&json!({}))
            .send()
    };
    let holder = Holder::lock(&s.database).await;
    let waiting = tokio::spawn(submit());
    // While writes wait for the database, the server still serves what needs no write:
    // the waits do not hold its threads (the submission is still waiting after these).
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let health = reqwest::get(format!("{}/healthz", s.url)).await.unwrap();
        assert_eq!(health.status(), reqwest::StatusCode::OK);
    }
    // The database answers (a lock held is no outage): ready, without waiting on the lock.
    let ready = reqwest::get(format!("{}/readyz", s.url)).await.unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
    assert!(!waiting.is_finished(), "the submission waits for the database meanwhile");
    let resp = waiting.await.unwrap().unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "2");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "database_unavailable", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("database unavailable: the database is locked"));
    holder.release().await;
    let resp = submit().await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED);
    let sub: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(s.settled(sub["id"].as_str().unwrap(), &op).await["status"], "succeeded");
    s.stop().await;
}

/// Another process holding the database: SQLite's exclusive transaction, or a PostgreSQL
/// session holding an exclusive lock on the executions table.
enum Holder {
    Sqlite(rusqlite::Connection),
    Postgres(sqlx::PgConnection),
}

impl Holder {
    async fn lock(url: &opsbook_store::DatabaseUrl) -> Holder {
        match url {
            opsbook_store::DatabaseUrl::Sqlite(path) => {
                let holder = rusqlite::Connection::open(path).unwrap();
                holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
                Holder::Sqlite(holder)
            }
            opsbook_store::DatabaseUrl::Postgres(url) => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::raw_sql("BEGIN; LOCK TABLE executions IN ACCESS EXCLUSIVE MODE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Holder::Postgres(conn)
            }
        }
    }

    async fn release(self) {
        match self {
            Holder::Sqlite(c) => c.execute_batch("ROLLBACK").unwrap(),
            Holder::Postgres(mut c) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut c).await.unwrap();
            }
        }
    }
}
