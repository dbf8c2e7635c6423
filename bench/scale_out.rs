//! Benchmark: executions per second end to end with 1, 2 and 4 `opsbook worker`
//! processes on one PostgreSQL database, beside one `opsbook serve` on SQLite; how soon
//! an idle worker claims a queued execution; and `GET /api/v1/executions` over a million
//! executions on PostgreSQL.
//!
//! The PostgreSQL server is `OPSBOOK_TEST_POSTGRES` if set, else a cluster of its own
//! (`scripts/postgres start durable`: fsync on, commits as SQLite's WAL + NORMAL make
//! them), removed at the end. Worker processes are the release binary
//! (`target/release/opsbook`, built by `bench/scale_out`).
//!
//!   bench/scale_out                      # 16 clients, 8 s per setup, ROWS=1000000
//!   CLIENTS=32 DURATION=15 ROWS=200000 bench/scale_out
//!   SETUPS=sqlite,2 bench/scale_out      # only some of: sqlite,node,1,2,4,wake,list

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/figures.rs"]
mod figures;
#[path = "common/listing.rs"]
mod listing;
#[path = "common/load.rs"]
mod load;
#[path = "common/server.rs"]
mod server;

use figures::{env, pct};
use opsbook_server::{Config, auth};
use opsbook_store::{ExecutionFilter, ServerStore, Store};
use sqlx::Connection;

const BOOK: &str = "apiVersion: opsbook/v1\nkind: Runbook\nmetadata:\n  name: bench\n  type: maintenance\n  version: 1.0.0\nspec:\n  steps:\n    - id: one\n      run: \"true\"\n";
const KEY: &str = "5e0c2f8a1b3d4c6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6";

/// The PostgreSQL server: the test server, or a cluster of the benchmark's own.
struct Postgres {
    url: String,
    _own: Option<opsbook_store_postgres::testing::Cluster>,
}

impl Postgres {
    fn start() -> Postgres {
        if let Ok(url) = std::env::var("OPSBOOK_TEST_POSTGRES") {
            return Postgres { url, _own: None };
        }
        use opsbook_store_postgres::testing::{Cluster, Durability};
        let own = Cluster::start(Durability::Durable);
        Postgres { url: own.url.clone(), _own: Some(own) }
    }

    async fn database(&self, name: &str) -> String {
        let mut admin = sqlx::PgConnection::connect(&self.url).await.expect("connect");
        let drop = format!("DROP DATABASE IF EXISTS {name}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&mut admin).await.expect("drop");
        let create = format!("CREATE DATABASE {name}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(create)).execute(&mut admin).await.expect("create");
        format!("{}/{name}", self.url.rsplit_once('/').expect("a database").0)
    }
}

/// Worker processes, killed at the end.
struct Workers(Vec<Child>);

impl Workers {
    fn start(n: usize, url: &str, dir: &std::path::Path) -> Workers {
        let bin = std::env::var("OPSBOOK_BIN")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/release/opsbook").into());
        Workers(
            (0..n)
                .map(|_| {
                    Command::new(&bin)
                        .args(["worker", "--concurrency", "4"])
                        .current_dir(dir)
                        .env("OPSBOOK_DATABASE_URL", url)
                        .env("OPSBOOK_SECRET_KEY", KEY)
                        .env("RUST_LOG", "warn")
                        .stdout(Stdio::null())
                        .spawn()
                        .unwrap_or_else(|e| panic!("{bin}: {e} (build it: cargo build --release)"))
                })
                .collect(),
        )
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What one setup measured.
struct Figures {
    submitted: usize,
    completed_per_s: f64,
    p50: f64,
    p99: f64,
}

/// Publishes the one-step runbook, lets `clients` submit for `seconds`, waits for the
/// queue to drain, and reads the figures from the store.
async fn drive(store: &opsbook_server::Db, url: &str, clients: usize, seconds: u64) -> Figures {
    let token = auth::generate("bench", vec!["admin".into()], None);
    store.create_token(&token.record, &token.hash).await.expect("token");
    let http = reqwest::Client::new();
    let r = http.post(format!("{url}/api/v1/runbooks")).bearer_auth(&token.secret).body(BOOK).send().await;
    assert!(r.expect("publish").status().is_success(), "publish failed");
    let latencies = load::submit_for(url, &token.secret, "bench", clients, seconds).await;
    let drain = Instant::now() + Duration::from_secs(180);
    while Instant::now() < drain {
        let counts = store.count_by_status().await.expect("counts");
        if counts.iter().all(|(s, n)| *n == 0 || (s != "queued" && s != "running")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = store.executions(&ExecutionFilter { limit: 10_000_000, ..Default::default() }).await.expect("list");
    let ok: Vec<_> = done.iter().filter(|e| e.status == opsbook_core::ExecStatus::Succeeded).collect();
    let first = ok.iter().filter_map(|e| e.started_at).min().unwrap_or(0);
    let last = ok.iter().filter_map(|e| e.finished_at).max().unwrap_or(0);
    Figures {
        submitted: latencies.len(),
        completed_per_s: ok.len() as f64 / ((last - first) as f64 / 1000.0).max(0.001),
        p50: pct(&latencies, 0.5),
        p99: pct(&latencies, 0.99),
    }
}

fn api_config(dir: &std::path::Path, workers: usize) -> Config {
    Config {
        workers,
        workdir: dir.to_path_buf(),
        metrics_listen: String::new(),
        secret_keys: Some(KEY.into()),
        ..Config::default()
    }
}

fn print(name: &str, f: &Figures) {
    println!(
        "  {name:<28} {:>7} submitted  {:>6.0}/s completed  submit p50 {:>5.1} ms  p99 {:>5.1} ms",
        f.submitted, f.completed_per_s, f.p50, f.p99
    );
}

/// How long a queued execution waits for an idle worker in another process: `rounds`
/// submissions one at a time, each claim time minus its creation time.
async fn wake_latency(pg: &Postgres, dir: &std::path::Path, rounds: usize) -> (f64, f64) {
    let url = pg.database("opsbook_bench_wake").await;
    let store = opsbook_store_any::open(&opsbook_store::DatabaseUrl::parse(&url).expect("url")).await.expect("db");
    let api = server::start(store.clone(), api_config(dir, 0)).await;
    let _workers = Workers::start(1, &url, dir);
    let token = auth::generate("bench", vec!["admin".into()], None);
    store.create_token(&token.record, &token.hash).await.expect("token");
    let http = reqwest::Client::new();
    let r = http.post(format!("{}/api/v1/runbooks", api.url)).bearer_auth(&token.secret).body(BOOK).send().await;
    assert!(r.expect("publish").status().is_success());
    tokio::time::sleep(Duration::from_secs(1)).await; // the worker is up and listening
    let mut waits = Vec::new();
    for _ in 0..rounds {
        let r = http
            .post(format!("{}/api/v1/runbooks/bench/executions", api.url))
            .bearer_auth(&token.secret)
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("submit");
        let id = r.json::<serde_json::Value>().await.expect("json")["id"].as_str().expect("id").to_string();
        let exec = loop {
            let e = store.execution(&id).await.expect("execution");
            if e.status != opsbook_core::ExecStatus::Queued && e.status != opsbook_core::ExecStatus::Running {
                break e;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        waits.push((exec.started_at.unwrap_or(exec.created_at) - exec.created_at) as f64);
        // Idle again between submissions, past any poll's phase.
        tokio::time::sleep(Duration::from_millis(137)).await;
    }
    api.stop().await;
    waits.sort_by(|a, b| a.total_cmp(b));
    (pct(&waits, 0.5), pct(&waits, 0.99))
}

/// `GET /api/v1/executions` with each filter over `rows` executions on PostgreSQL.
async fn list_at_scale(pg: &Postgres, dir: &std::path::Path, rows: i64, rounds: usize) {
    let url = pg.database("opsbook_bench_list").await;
    let store = opsbook_store_any::open(&opsbook_store::DatabaseUrl::parse(&url).expect("url")).await.expect("db");
    let filled = Instant::now();
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::raw_sql(
        "INSERT INTO runbook_versions (sha256, name, version, content, created_at) VALUES ('s', 'rb', '1.0.0', '', 0)",
    )
    .execute(&mut conn)
    .await
    .expect("runbook");
    // As bench/list_executions fills SQLite: spread over the year, 50 runbooks, 7
    // statuses, 20 actors.
    let year_ms = 365 * 86_400_000i64;
    let start = opsbook_store::now_ms() - year_ms - 60_000;
    sqlx::query(
        "INSERT INTO executions (id, runbook_name, runbook_version, runbook_sha256, base_dir, status, actor, params, \
         secret_digests, created_at, started_at, finished_at) \
         SELECT lpad(t::text, 13, '0') || lpad(i::text, 7, '0'), 'runbook-' || (i % 50), '1.0.0', 's', '.', \
         (ARRAY['succeeded','succeeded','succeeded','failed','cancelled','waiting','interrupted'])[i % 7 + 1], \
         'user-' || (i % 20), '{}', '{}', t, t, t + 1000 + (i % 97) * 100 \
         FROM (SELECT i, $1 + i * ($2 / $3) AS t FROM generate_series(0, $3 - 1) AS i) AS g",
    )
    .bind(start)
    .bind(year_ms)
    .bind(rows)
    .execute(&mut conn)
    .await
    .expect("fill");
    sqlx::raw_sql("ANALYZE executions").execute(&mut conn).await.expect("analyze");
    let filled = filled.elapsed();
    let api = server::start(store.clone(), api_config(dir, 0)).await;
    let token = auth::generate("bench", vec!["viewer".into()], None);
    store.create_token(&token.record, &token.hash).await.expect("token");
    println!(
        "  GET /api/v1/executions over {rows} executions on PostgreSQL (filled in {:.1} s), target p99 < 10 ms:",
        filled.as_secs_f64()
    );
    listing::time_queries(&api.url, &token.secret, rounds, "    ").await;
    api.stop().await;
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let clients = env("CLIENTS", 16) as usize;
    let seconds = env("DURATION", 8);
    let rows = env("ROWS", 1_000_000) as i64;
    let setups = std::env::var("SETUPS").unwrap_or_else(|_| "sqlite,node,1,2,4,wake,list".into());
    let wanted = |name: &str| setups.split(',').any(|s| s.trim() == name);
    let dir = tempfile::tempdir().expect("temp dir");
    let pg = Postgres::start();
    println!(
        "scale_out: {clients} clients, {seconds} s of submissions per setup, a one-step runbook (`true`), {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // One node on SQLite, its workers in the process, as `opsbook serve` runs by default.
    if wanted("sqlite") {
        let path = dir.path().join("sqlite.db");
        let store: opsbook_server::Db = opsbook_store_sqlite::SqliteStore::open(&path).await.expect("sqlite").into();
        let api = server::start(store.clone(), api_config(dir.path(), 4)).await;
        let f = drive(&store, &api.url, clients, seconds).await;
        api.stop().await;
        print("SQLite, 1 node, 4 workers", &f);
    }
    // The same single node on PostgreSQL: what the database costs, apart from processes.
    if wanted("node") {
        let url = pg.database("opsbook_bench_node").await;
        let store = opsbook_store_any::open(&opsbook_store::DatabaseUrl::parse(&url).expect("url")).await.expect("pg");
        let api = server::start(store.clone(), api_config(dir.path(), 4)).await;
        let f = drive(&store, &api.url, clients, seconds).await;
        api.stop().await;
        print("PostgreSQL, 1 node, 4 workers", &f);
    }
    // An API node (no workers) and N worker processes (4 at once each) on PostgreSQL.
    for n in [1usize, 2, 4].into_iter().filter(|n| wanted(&n.to_string())) {
        let url = pg.database(&format!("opsbook_bench_{n}")).await;
        let store = opsbook_store_any::open(&opsbook_store::DatabaseUrl::parse(&url).expect("url")).await.expect("pg");
        let api = server::start(store.clone(), api_config(dir.path(), 0)).await;
        let workers = Workers::start(n, &url, dir.path());
        let f = drive(&store, &api.url, clients, seconds).await;
        drop(workers);
        api.stop().await;
        print(&format!("PostgreSQL, {n} worker process{}", if n == 1 { "" } else { "es" }), &f);
    }
    if wanted("wake") {
        let (p50, p99) = wake_latency(&pg, dir.path(), 40).await;
        println!(
            "  queued to claimed by an idle worker in another process: p50 {p50:.0} ms, p99 {p99:.0} ms (target < 50 ms)"
        );
    }
    if wanted("list") && rows > 0 {
        list_at_scale(&pg, dir.path(), rows, 30).await;
    }
}
