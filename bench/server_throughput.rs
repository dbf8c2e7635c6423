//! Benchmark: executions per second through `opsbook serve` on loopback.
//!
//! Starts a server in this process (release build, a temporary SQLite file), publishes a
//! one-step runbook (`true`), then N concurrent clients submit executions for a bounded
//! time. Prints submitted and completed executions per second, submit latency p50/p99,
//! and the engine's overhead per execution (end-to-end time minus the step's process).
//!
//!   bench/server_throughput                      # 16 clients, 10 s, 4 workers
//!   CLIENTS=32 DURATION=20 WORKERS=8 bench/server_throughput

use std::time::{Duration, Instant};

#[path = "common/figures.rs"]
mod figures;
#[path = "common/load.rs"]
mod load;
#[path = "common/server.rs"]
mod server;

use figures::{env, pct};
use opsbook_server::{Config, auth};
use opsbook_store::{ExecutionFilter, ServerStore, Store};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let clients = env("CLIENTS", 16) as usize;
    let seconds = env("DURATION", 10);
    let workers = env("WORKERS", 4) as usize;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = opsbook_store_sqlite::SqliteStore::open(&dir.path().join("bench.db")).await.expect("database");
    let config =
        Config { workers, workdir: dir.path().to_path_buf(), metrics_listen: String::new(), ..Config::default() };
    let server = server::start(store.clone(), config).await;
    let url = server.url.clone();
    let token = auth::generate("bench", vec!["admin".into()], None);
    store.create_token(&token.record, &token.hash).await.expect("token");
    let http = reqwest::Client::new();
    let book = "apiVersion: opsbook/v1\nkind: Runbook\nmetadata:\n  name: bench\n  type: maintenance\n  version: 1.0.0\nspec:\n  steps:\n    - id: one\n      run: \"true\"\n";
    let r = http
        .post(format!("{url}/api/v1/runbooks"))
        .bearer_auth(&token.secret)
        .body(book)
        .send()
        .await
        .expect("publish");
    assert!(r.status().is_success(), "publish failed: {}", r.text().await.unwrap_or_default());

    let started = Instant::now();
    let latencies = load::submit_for(&url, &token.secret, "bench", clients, seconds).await;
    let submit_window = started.elapsed().as_secs_f64();
    let submitted = latencies.len();
    // Wait (bounded) until every submitted execution has finished.
    let drain_deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let counts = store.count_by_status().await.expect("counts");
        let live: i64 = counts.iter().filter(|(s, _)| s == "queued" || s == "running").map(|(_, n)| n).sum();
        if live == 0 || Instant::now() > drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = started.elapsed().as_secs_f64();
    let done = store.executions(&ExecutionFilter { limit: 1_000_000, ..Default::default() }).await.expect("executions");
    let succeeded = done.iter().filter(|e| e.status == opsbook_core::ExecStatus::Succeeded).count();
    let first = done.iter().filter_map(|e| e.started_at).min().unwrap_or(0);
    let last = done.iter().filter_map(|e| e.finished_at).max().unwrap_or(0);
    let busy = ((last - first) as f64 / 1000.0).max(0.001);
    // Overhead: a run's wall time minus its step's own time, averaged.
    let mut overhead = Vec::new();
    for e in done.iter().take(500) {
        let steps = store.steps(&e.id).await.expect("steps");
        if let (Some(d), Some(s)) = (e.duration_ms(), steps.first().and_then(|s| s.duration_ms())) {
            overhead.push((d - s) as f64);
        }
    }
    overhead.sort_by(|a, b| a.total_cmp(b));
    server.stop().await;
    println!(
        "server_throughput: {clients} clients, {seconds} s of submissions, {workers} workers, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("  submitted             {submitted:>8}  ({:.0}/s)", submitted as f64 / submit_window);
    println!("  completed             {succeeded:>8}  ({:.0}/s end-to-end, target >= 500)", succeeded as f64 / busy);
    println!("  submit latency p50    {:>8.1} ms", pct(&latencies, 0.50));
    println!("  submit latency p99    {:>8.1} ms  (target < 50 ms)", pct(&latencies, 0.99));
    let mean = overhead.iter().sum::<f64>() / overhead.len().max(1) as f64;
    println!(
        "  engine overhead mean  {mean:>8.2} ms per execution beyond its step (target < 2 ms; ms-resolution timestamps)"
    );
    println!("  all done after        {total:>8.1} s");
}
