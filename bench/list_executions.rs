//! Benchmark: listing executions from a store of one million.
//!
//! Fills a temporary SQLite database with 1,000,000 executions (50 runbooks, 7 statuses,
//! 20 actors, spread over a year), then times `GET /api/v1/executions` with each filter
//! through a real server on loopback, first page and a deep cursor page.
//!
//!   bench/list_executions                 # ROWS=1000000 ROUNDS=50

use std::time::Instant;

#[path = "common/fill.rs"]
mod fill;
#[path = "common/server.rs"]
mod server;

use opsbook_server::{Config, auth};
use opsbook_store::ServerStore;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rows = env("ROWS", 1_000_000) as i64;
    let rounds = env("ROUNDS", 50) as usize;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.db");
    let store = opsbook_store_sqlite::SqliteStore::open(&path).await.expect("database");
    {
        let db = rusqlite::Connection::open(&path).expect("open");
        db.execute(
            "INSERT INTO runbook_versions (sha256, name, version, content, created_at) VALUES ('s', 'rb', '1.0.0', '', 0)",
            [],
        )
        .expect("runbook");
    }
    let statuses = ["succeeded", "succeeded", "succeeded", "failed", "cancelled", "waiting", "interrupted"];
    let filled = fill::executions(
        &path,
        &fill::Fill { rows, runbooks: 50, statuses: &statuses, sha: &|_| "s".to_string(), params: "{}" },
    );
    let config = Config { workers: 1, metrics_listen: String::new(), ..Config::default() };
    let server = server::start(store.clone(), config).await;
    let url = server.url.clone();
    let token = auth::generate("bench", vec!["viewer".into()], None);
    store.create_token(&token.record, &token.hash).await.expect("token");
    let http = reqwest::Client::new();
    let get = |q: String| {
        let (http, url, secret) = (http.clone(), url.clone(), token.secret.clone());
        async move {
            let t = Instant::now();
            let body: serde_json::Value = http
                .get(format!("{url}/api/v1/executions?{q}"))
                .bearer_auth(secret)
                .send()
                .await
                .expect("get")
                .json()
                .await
                .expect("json");
            (t.elapsed().as_secs_f64() * 1000.0, body)
        }
    };
    // A cursor deep in the list: the 10,000th newest.
    let (_, deep) = get("limit=500".into()).await;
    let mut cursor = deep["next_cursor"].as_str().unwrap_or_default().to_string();
    for _ in 0..19 {
        let (_, page) = get(format!("limit=500&cursor={cursor}")).await;
        cursor = page["next_cursor"].as_str().unwrap_or_default().to_string();
    }
    let since = opsbook_store::now_ms() - 7 * 86_400_000;
    let queries = [
        ("newest 50", "limit=50".to_string()),
        ("runbook", "runbook=runbook-7&limit=50".to_string()),
        ("status", "status=failed&limit=50".to_string()),
        ("actor", "actor=user-3&limit=50".to_string()),
        ("since last week", format!("since={since}&limit=50")),
        ("runbook+status", "runbook=runbook-7&status=waiting&limit=50".to_string()),
        ("cursor page 21", format!("limit=50&cursor={cursor}")),
    ];
    println!("list_executions: {rows} executions (filled in {:.1} s), {rounds} rounds per query", filled.as_secs_f64());
    for (name, q) in &queries {
        let mut times = Vec::new();
        let mut n = 0;
        for _ in 0..rounds {
            let (ms, body) = get(q.clone()).await;
            n = body["items"].as_array().map_or(0, Vec::len);
            times.push(ms);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let p50 = times[times.len() / 2];
        let p99 = times[((times.len() as f64 * 0.99).ceil() as usize).clamp(1, times.len()) - 1];
        println!("  {name:<16} {n:>3} items  p50 {p50:>6.2} ms  p99 {p99:>6.2} ms");
    }
    server.stop().await;
}
