//! Load: concurrent clients submitting executions of one runbook until a deadline.

use std::time::{Duration, Instant};

/// `clients` clients each submit `runbook` (no parameters) back to back for `seconds`;
/// returns the latency of every accepted (202) submission, in ms, sorted.
pub async fn submit_for(url: &str, token: &str, runbook: &str, clients: usize, seconds: u64) -> Vec<f64> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, token) = (http.clone(), token.to_string());
            let target = format!("{url}/api/v1/runbooks/{runbook}/executions");
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let r = http.post(&target).bearer_auth(&token).json(&serde_json::json!({})).send().await;
                    if matches!(&r, Ok(resp) if resp.status().as_u16() == 202) {
                        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("client"));
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    latencies
}
