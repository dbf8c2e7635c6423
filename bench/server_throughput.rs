//! Benchmark: executions per second through `opsbook serve` on loopback, idle and under
//! read load.
//!
//! Starts a server in this process (release build, a temporary SQLite file), publishes a
//! one-step runbook (`true`), then N concurrent clients submit executions for a bounded
//! time, in four phases: alone; beside READERS clients listing and reading executions
//! (READ_RATE requests/s in all; by default 1,600, a load under which workers once starved); and
//! beside STREAMS executions that run all along, first without, then with an event stream
//! (SSE) open on each. Each phase has a server of its own and waits until its executions
//! have finished. Prints submitted and completed executions per second, submit
//! latency p50/p99, the engine's overhead per execution (end-to-end time minus the step's
//! process), and each loaded phase's completions as a share of the idle phase's (the
//! streams' as a share of the phase without them).
//!
//!   bench/server_throughput                      # 16 clients, 10 s, 4 workers
//!   CLIENTS=32 DURATION=20 WORKERS=8 READERS=32 READ_RATE=1600 STREAMS=200 bench/server_throughput
//!   READ_RATE=0 bench/server_throughput         # readers as fast as they can

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[path = "common/figures.rs"]
mod figures;
#[path = "common/load.rs"]
mod load;
#[path = "common/server.rs"]
mod server;
#[path = "common/side_load.rs"]
mod side_load;

use figures::{env, pct};
use opsbook_server::{Config, auth};
use opsbook_store::{ExecutionFilter, ServerStore, Store};
use opsbook_store_sqlite::SqliteStore;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let readers = env("READERS", 32) as usize;
    let streams = env("STREAMS", 200) as usize;
    let read_rate = env("READ_RATE", 1600);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("bench.db")).await.expect("database");
    let token = auth::generate("bench", vec!["admin".into()], None);
    store.create_token(&token.record, &token.hash).await.expect("token");
    let bench = Bench {
        store,
        dir,
        token: token.secret,
        clients: env("CLIENTS", 16) as usize,
        seconds: env("DURATION", 10),
        workers: env("WORKERS", 4) as usize,
    };
    println!(
        "server_throughput: {} clients, {} s of submissions per phase, {} workers, {} cores",
        bench.clients,
        bench.seconds,
        bench.workers,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let idle = bench.phase("idle", Load::None).await;
    idle.print("idle", None);
    let read = bench.phase("readers", Load::Readers(readers, read_rate)).await;
    let pace = if read_rate > 0 { format!("at {read_rate} requests/s") } else { "flat out".to_string() };
    read.print(&format!("{readers} reading clients, {pace}"), Some(("idle", &idle)));
    let held = bench.phase("held", Load::Held(streams, false)).await;
    held.print(&format!("{streams} executions running (sleep) beside, no streams"), Some(("idle", &idle)));
    let follow = bench.phase("streams", Load::Held(streams, true)).await;
    follow.print("the same, with an SSE stream open on each", Some(("no streams", &held)));
}

struct Bench {
    store: SqliteStore,
    dir: tempfile::TempDir,
    token: String,
    clients: usize,
    seconds: u64,
    workers: usize,
}

enum Load {
    None,
    /// Clients listing and reading executions, at about this many requests per second
    /// (0: flat out).
    Readers(usize, u64),
    /// As many executions that run all along (`sleep`), each on a worker of its own
    /// beside the phase's workers; with an events stream (SSE) open on each, or not.
    Held(usize, bool),
}

struct Figures {
    submitted: usize,
    submit_window: f64,
    completed: usize,
    /// Completed per second, from the first start to the last finish.
    rate: f64,
    latencies: Vec<f64>,
    overhead: Vec<f64>,
    drained_after: f64,
    /// Reads per second while it ran, or streams open.
    side: Option<(&'static str, f64)>,
    /// The size of the database's write-ahead log at the end (checkpoints keep up).
    wal: u64,
}

impl Bench {
    /// One phase on a server of its own (over the same database).
    async fn phase(&self, name: &str, load: Load) -> Figures {
        let held = if let Load::Held(n, _) = load { n } else { 0 };
        let config = Config {
            workers: self.workers + held,
            workdir: self.dir.path().to_path_buf(),
            metrics_listen: String::new(),
            ..Config::default()
        };
        let server = server::start(self.store.clone(), config).await;
        let (url, token) = (server.url.as_str(), self.token.as_str());
        let runbook = format!("bench-{name}");
        self.publish(url, &runbook, "true").await;
        let stop = Arc::new(AtomicBool::new(false));
        let mut watched = Vec::new();
        let side = match load {
            Load::None => None,
            Load::Readers(n, rate) => Some(("reads", side_load::read_until(url, token, n, rate, stop.clone()))),
            Load::Held(n, streams) => {
                watched = self.hold_workers(url, n).await;
                streams.then(|| ("streams open", side_load::hold_streams(url, token, watched.clone(), stop.clone())))
            }
        };
        let started = Instant::now();
        let latencies = load::submit_for(url, token, &runbook, self.clients, self.seconds).await;
        let submit_window = started.elapsed().as_secs_f64();
        // Wait (bounded) until every submitted execution has finished; the side load goes on.
        let drain_deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let counts = self.store.count_by_status().await.expect("counts");
            let count = |status: &str| counts.iter().filter(|(s, _)| s == status).map(|(_, n)| *n).sum::<i64>();
            if count("queued") == 0 && count("running") <= held as i64 {
                break;
            }
            assert!(Instant::now() < drain_deadline, "the executions did not finish within 120 s: {counts:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let drained_after = started.elapsed().as_secs_f64();
        let side = side.map(|(what, n)| {
            let n = n.load(Ordering::Relaxed) as f64;
            (what, if held > 0 { n } else { n / drained_after })
        });
        stop.store(true, Ordering::Relaxed);
        let http = reqwest::Client::new();
        for id in &watched {
            let r = http.post(format!("{url}/api/v1/executions/{id}/cancel")).bearer_auth(token).send().await;
            assert!(r.is_ok_and(|r| r.status().as_u16() == 202), "cannot cancel {id}");
        }
        let filter = ExecutionFilter { runbook: Some(runbook), limit: 1_000_000, ..Default::default() };
        let done = self.store.executions(&filter).await.expect("executions");
        let completed = done.iter().filter(|e| e.status == opsbook_core::ExecStatus::Succeeded).count();
        let first = done.iter().filter_map(|e| e.started_at).min().unwrap_or(0);
        let last = done.iter().filter_map(|e| e.finished_at).max().unwrap_or(0);
        let busy = ((last - first) as f64 / 1000.0).max(0.001);
        // Overhead: a run's wall time minus its step's own time, averaged.
        let mut overhead = Vec::new();
        for e in done.iter().take(500) {
            let steps = self.store.steps(&e.id).await.expect("steps");
            if let (Some(d), Some(s)) = (e.duration_ms(), steps.first().and_then(|s| s.duration_ms())) {
                overhead.push((d - s) as f64);
            }
        }
        server.stop().await;
        let wal = std::fs::metadata(self.dir.path().join("bench.db-wal")).map_or(0, |m| m.len());
        Figures {
            wal,
            submitted: latencies.len(),
            submit_window,
            completed,
            rate: completed as f64 / busy,
            latencies,
            overhead,
            drained_after,
            side,
        }
    }

    async fn publish(&self, url: &str, name: &str, run: &str) {
        let book = format!(
            "apiVersion: opsbook/v1\nkind: Runbook\nmetadata:\n  name: {name}\n  type: maintenance\n  version: 1.0.0\nspec:\n  steps:\n    - id: one\n      run: \"{run}\"\n      timeout: 1h\n"
        );
        let r = reqwest::Client::new()
            .post(format!("{url}/api/v1/runbooks"))
            .bearer_auth(&self.token)
            .body(book)
            .send()
            .await
            .expect("publish");
        assert!(r.status().is_success(), "publish failed: {}", r.text().await.unwrap_or_default());
    }

    /// Starts `n` executions that run (sleep) until cancelled, and waits until they all
    /// run; returns their ids.
    async fn hold_workers(&self, url: &str, n: usize) -> Vec<String> {
        self.publish(url, "bench-watched", "sleep 3600").await;
        let http = reqwest::Client::new();
        let mut ids = Vec::new();
        for _ in 0..n {
            let r = http
                .post(format!("{url}/api/v1/runbooks/bench-watched/executions"))
                .bearer_auth(&self.token)
                .json(&serde_json::json!({}))
                .send()
                .await
                .expect("submit");
            let body: serde_json::Value = r.json().await.expect("json");
            ids.push(body["id"].as_str().expect("an id").to_string());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let counts = self.store.count_by_status().await.expect("counts");
            let running: i64 = counts.iter().filter(|(s, _)| s == "running").map(|(_, n)| n).sum();
            if running >= n as i64 {
                return ids;
            }
            assert!(Instant::now() < deadline, "only {running} of {n} held executions run after 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Figures {
    fn print(&self, title: &str, base: Option<(&str, &Figures)>) {
        println!("  {title}:");
        println!(
            "    submitted             {:>8}  ({:.0}/s)",
            self.submitted,
            self.submitted as f64 / self.submit_window
        );
        println!("    completed             {:>8}  ({:.0}/s end-to-end, target >= 1000)", self.completed, self.rate);
        println!("    submit latency p50    {:>8.1} ms", pct(&self.latencies, 0.50));
        println!("    submit latency p99    {:>8.1} ms  (target < 25 ms)", pct(&self.latencies, 0.99));
        let mean = self.overhead.iter().sum::<f64>() / self.overhead.len().max(1) as f64;
        println!("    engine overhead mean  {mean:>8.2} ms per execution beyond its step (ms-resolution timestamps)");
        println!("    all done after        {:>8.1} s", self.drained_after);
        println!("    WAL file at the end   {:>8.1} MB", self.wal as f64 / 1e6);
        match self.side {
            Some(("reads", rate)) => println!("    reads                 {rate:>8.0}/s"),
            Some((what, n)) => println!("    {what:<21} {n:>8.0}"),
            None => {}
        }
        if let Some((name, base)) = base {
            let share = 100.0 * self.rate / base.rate.max(0.001);
            println!("    {:<24} {share:>5.0} %", format!("completions vs {name}"));
        }
    }
}
