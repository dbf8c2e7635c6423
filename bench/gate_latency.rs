//! Benchmark: how long a gate takes to decide, per source, against local doubles that
//! speak each source's format; and how soon a waiting deployment resumes after the last
//! blocking incident closes (target: within one poll interval).
//!
//!   bench/gate_latency            # ROUNDS=200 POLL_MS=500

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::routing::get;
use opsbook_gate::{Checker, GatesFile};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rounds = env("ROUNDS", 200) as usize;
    let poll_ms = env("POLL_MS", 500);
    let incident = Arc::new(AtomicBool::new(true));
    let inc = incident.clone();
    let app = axum::Router::new()
        .route(
            "/api/v2/summary.json",
            get(move || {
                let open = inc.load(Ordering::SeqCst);
                async move {
                    let incidents = if open {
                        r#"[{"id":"i1","name":"Delayed jobs","status":"investigating","impact":"major","created_at":"2026-11-23T10:00:00Z","updated_at":"2026-11-23T10:00:00Z","components":[{"name":"Actions"}]}]"#
                    } else {
                        "[]"
                    };
                    format!(r#"{{"page":{{"url":"https://status.example"}},"components":[{{"id":"c","name":"Actions","status":"operational"}}],"incidents":{incidents}}}"#)
                }
            }),
        )
        .route("/api/v2/alerts", get(|| async { "[]" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let file = GatesFile::parse(&format!(
        "gates:\n  statuspage:\n    sources: [ {{ statuspage: {{ url: \"{url}\" }} }} ]\n  alertmanager:\n    sources: [ {{ alertmanager: {{ url: \"{url}\", matchers: ['severity=\"critical\"'] }} }} ]\n  freeze:\n    sources: [ {{ freeze: {{ windows: [{{ start: \"0 17 * * FRI\", duration: 63h, timezone: Europe/Berlin }}] }} }} ]\n  command:\n    sources: [ {{ command: {{ run: \"exit 0\" }} }} ]\n  all:\n    sources:\n      - statuspage: {{ url: \"{url}\" }}\n      - alertmanager: {{ url: \"{url}\" }}\n      - freeze: {{ dates: [\"2000-01-01\"] }}\n"
    ))
    .expect("gates");
    let checker = Checker::new(Duration::from_secs(5)).expect("client");
    println!(
        "gate_latency: {rounds} checks per gate against local doubles, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for name in ["statuspage", "alertmanager", "freeze", "command", "all"] {
        let gate = &file.gates[name];
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let t = Instant::now();
            let r = checker.check(name, gate, jiff::Timestamp::now()).await;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(r.sources.iter().all(|s| s.error.is_none()), "{name}: {:?}", r.sources);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!("  {name:<13} decision p50 {:>6.2} ms  p99 {:>6.2} ms", pct(&times, 0.5), pct(&times, 0.99));
    }
    // Resume delay: wait on the status page gate, close the incident, measure how long
    // after the close the waiter sees it clear.
    let gate = file.gates["statuspage"].clone();
    let poll = Duration::from_millis(poll_ms);
    let mut delays = Vec::new();
    for i in 0..5u64 {
        incident.store(true, Ordering::SeqCst);
        let (c, g) = (checker.clone(), gate.clone());
        let waiter = tokio::spawn(async move {
            loop {
                if c.check("statuspage", &g, jiff::Timestamp::now()).await.passes() {
                    return Instant::now();
                }
                tokio::time::sleep(poll).await;
            }
        });
        // Close the incident at a different point of the poll cycle each round.
        tokio::time::sleep(poll * 2 + Duration::from_millis(i * poll_ms / 5)).await;
        let closed = Instant::now();
        incident.store(false, Ordering::SeqCst);
        let cleared = waiter.await.expect("waiter");
        delays.push(cleared.duration_since(closed).as_secs_f64() * 1000.0);
    }
    delays.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  resume delay after the incident closes: max {:.0} ms, mean {:.0} ms (poll {} ms; target: within one poll)",
        delays.last().copied().unwrap_or(0.0),
        delays.iter().sum::<f64>() / delays.len() as f64,
        poll_ms
    );
}
