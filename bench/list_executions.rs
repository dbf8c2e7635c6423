//! Benchmark: listing executions from a store of one million.
//!
//! Fills a temporary SQLite database with 1,000,000 executions (50 runbooks, 7 statuses,
//! 20 actors, spread over a year), then times `GET /api/v1/executions` with each filter
//! through a real server on loopback, first page and a deep cursor page.
//!
//!   bench/list_executions                 # ROWS=1000000 ROUNDS=50

#[path = "common/figures.rs"]
mod figures;
#[path = "common/fill.rs"]
mod fill;
#[path = "common/listing.rs"]
mod listing;
#[path = "common/server.rs"]
mod server;

use figures::env;
use opsbook_server::{Config, auth};
use opsbook_store::ServerStore;

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
    let token = auth::generate("bench", vec!["viewer".into()], None);
    store.create_token(&token.record, &token.hash).await.expect("token");
    println!("list_executions: {rows} executions (filled in {:.1} s), {rounds} rounds per query", filled.as_secs_f64());
    listing::time_queries(&server.url, &token.secret, rounds, "  ").await;
    server.stop().await;
}
