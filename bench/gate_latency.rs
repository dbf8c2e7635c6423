//! Benchmark: how long a gate takes to decide, per source, against local doubles that
//! speak each source's format; and how soon a waiting deployment resumes after the last
//! blocking incident closes (target: within one poll interval).
//!
//!   bench/gate_latency            # ROUNDS=200 POLL_MS=500
//!
//! AWS Health is measured against the Health double (Smithy RPCv2 CBOR, three pages of
//! events, DescribeEventDetails) when credentials are in the environment, as the wrapper
//! script sets them (example keys; the double does not check signatures).

#[path = "common/figures.rs"]
mod figures;

use figures::{env, pct};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::routing::get;
use opsbook_doubles::health::{Health, Script, event};
use opsbook_gate::{Checker, GatesFile};

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
    // AWS Health: 25 open events in other regions (filtered out by the double, as AWS
    // does) and 5 that match, two per page, so a check reads three pages and details.
    let now_secs = jiff::Timestamp::now().as_second() as f64;
    let mut events: Vec<_> =
        (0..25).map(|i| event(&format!("x{i}"), "EC2", "eu-west-1", "issue", "open", now_secs - 600.0)).collect();
    events.extend((0..5).map(|i| event(&format!("b{i}"), "EC2", "us-east-1", "issue", "open", now_secs - 600.0)));
    let health = Health::start(Script { events, page_size: 2, ..Script::default() });
    let aws = std::env::var_os("AWS_ACCESS_KEY_ID").is_some();
    let file = GatesFile::parse(&format!(
        "gates:\n  aws_health:\n    sources: [ {{ aws_health: {{ regions: [us-east-1, global], services: [EC2], endpoint_url: \"{}\" }} }} ]\n  statuspage:\n    sources: [ {{ statuspage: {{ url: \"{url}\" }} }} ]\n  alertmanager:\n    sources: [ {{ alertmanager: {{ url: \"{url}\", matchers: ['severity=\"critical\"'] }} }} ]\n  freeze:\n    sources: [ {{ freeze: {{ windows: [{{ start: \"0 17 * * FRI\", duration: 63h, timezone: Europe/Berlin }}] }} }} ]\n  command:\n    sources: [ {{ command: {{ run: \"exit 0\" }} }} ]\n  all:\n    sources:\n      - statuspage: {{ url: \"{url}\" }}\n      - alertmanager: {{ url: \"{url}\" }}\n      - freeze: {{ dates: [\"2000-01-01\"] }}\n",
        health.url
    ))
    .expect("gates");
    let checker = Checker::new(Duration::from_secs(5)).expect("client");
    println!(
        "gate_latency: {rounds} checks per gate against local doubles, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if !aws {
        println!("  (aws_health skipped: no AWS_ACCESS_KEY_ID; bench/gate_latency sets example keys)");
    }
    for name in ["statuspage", "alertmanager", "freeze", "command", "all", "aws_health"] {
        if name == "aws_health" && !aws {
            continue;
        }
        let gate = &file.gates[name];
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let t = Instant::now();
            let r = checker.check(name, gate, jiff::Timestamp::now()).await;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(r.sources.iter().all(|s| s.error.is_none()), "{name}: {:?}", r.sources);
            if name == "aws_health" {
                assert_eq!(r.records.len(), 5, "{:?}", r.records);
            }
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!("  {name:<13} decision p50 {:>6.2} ms  p99 {:>6.2} ms", pct(&times, 0.5), pct(&times, 0.99));
    }
    // Resume delay: wait on a gate, close its incident, measure how long after the close
    // the waiter sees it clear.
    let poll = Duration::from_millis(poll_ms);
    let inc = incident.clone();
    let set_statuspage = move |open: bool| inc.store(open, Ordering::SeqCst);
    report("statuspage", resume_delays(&checker, &file, "statuspage", poll, set_statuspage).await, poll_ms);
    if aws {
        let h = health.clone();
        let set_health = move |open: bool| {
            for e in h.script().events.iter_mut() {
                e["statusCode"] = serde_json::json!(if open { "open" } else { "closed" });
            }
        };
        report("aws_health", resume_delays(&checker, &file, "aws_health", poll, set_health).await, poll_ms);
    }
}

async fn resume_delays(
    checker: &Checker,
    file: &GatesFile,
    name: &'static str,
    poll: Duration,
    set_open: impl Fn(bool),
) -> Vec<f64> {
    let gate = file.gates[name].clone();
    let mut delays = Vec::new();
    for i in 0..5u32 {
        set_open(true);
        let (c, g) = (checker.clone(), gate.clone());
        let waiter = tokio::spawn(async move {
            loop {
                if c.check(name, &g, jiff::Timestamp::now()).await.passes() {
                    return Instant::now();
                }
                tokio::time::sleep(poll).await;
            }
        });
        // Close the incident at a different point of the poll cycle each round.
        tokio::time::sleep(poll * 2 + poll * i / 5).await;
        let closed = Instant::now();
        set_open(false);
        let cleared = waiter.await.expect("waiter");
        delays.push(cleared.duration_since(closed).as_secs_f64() * 1000.0);
    }
    delays.sort_by(|a, b| a.total_cmp(b));
    delays
}

fn report(name: &str, delays: Vec<f64>, poll_ms: u64) {
    println!(
        "  {name:<13} resume delay after the incident closes: max {:.0} ms, mean {:.0} ms (poll {poll_ms} ms; target: within one poll)",
        delays.last().copied().unwrap_or(0.0),
        delays.iter().sum::<f64>() / delays.len() as f64,
    );
}
