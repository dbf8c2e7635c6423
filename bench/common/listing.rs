//! Timing `GET /api/v1/executions` with each filter, first page and a deep cursor page,
//! over a filled database (`common/fill.rs` on SQLite, a generated series on PostgreSQL:
//! 50 runbooks, 7 statuses, 20 actors, spread over the year).

use std::time::Instant;

/// Prints p50 and p99 of each query, `rounds` times each, through the server at `url`.
pub async fn time_queries(url: &str, token: &str, rounds: usize, indent: &str) {
    let http = reqwest::Client::new();
    let get = |q: String| {
        let (http, url, token) = (http.clone(), url.to_string(), token.to_string());
        async move {
            let t = Instant::now();
            let body: serde_json::Value = http
                .get(format!("{url}/api/v1/executions?{q}"))
                .bearer_auth(token)
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
    let (_, page) = get("limit=500".into()).await;
    let mut cursor = page["next_cursor"].as_str().unwrap_or_default().to_string();
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
    for (name, q) in &queries {
        let mut times = Vec::new();
        let mut n = 0;
        for _ in 0..rounds {
            let (ms, body) = get(q.clone()).await;
            n = body["items"].as_array().map_or(0, Vec::len);
            times.push(ms);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{indent}{name:<16} {n:>3} items  p50 {:>6.2} ms  p99 {:>6.2} ms",
            super::figures::pct(&times, 0.5),
            super::figures::pct(&times, 0.99)
        );
    }
}
