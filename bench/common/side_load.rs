//! Load beside the submissions: clients reading, and event streams held open.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Clients reading until `stop` is set: each lists the newest 50 executions, then reads
/// one of them, over and over (what a dashboard or a CLI poll does), all together at
/// about `rate` requests per second (0: as fast as they can). Returns the request counter.
pub fn read_until(
    url: &str,
    token: &str,
    clients: usize,
    rate: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Arc<AtomicU64> {
    let http = reqwest::Client::new();
    let count = Arc::new(AtomicU64::new(0));
    // Each pass is two requests.
    let pass = (rate > 0).then(|| Duration::from_secs_f64(2.0 * clients as f64 / rate as f64));
    for _ in 0..clients {
        let (http, url, token, stop, count) =
            (http.clone(), url.to_string(), token.to_string(), stop.clone(), count.clone());
        tokio::spawn(async move {
            let mut tick = pass.map(|p| {
                let mut t = tokio::time::interval(p);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            while !stop.load(Ordering::Relaxed) {
                if let Some(t) = &mut tick {
                    t.tick().await;
                }
                let list = http.get(format!("{url}/api/v1/executions?limit=50")).bearer_auth(&token).send().await;
                let Ok(r) = list.and_then(|r| r.error_for_status()) else { continue };
                let Ok(page) = r.json::<serde_json::Value>().await else { continue };
                count.fetch_add(1, Ordering::Relaxed);
                if let Some(id) = page["items"][0]["id"].as_str() {
                    let one = http.get(format!("{url}/api/v1/executions/{id}")).bearer_auth(&token).send().await;
                    if one.is_ok_and(|r| r.status().is_success()) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    count
}

/// Opens one events stream (SSE) on each execution of `ids` and keeps it open, reading
/// what comes, until `stop` is set or the stream ends — as the web page of a running
/// execution and `opsbook logs --follow` do. Returns how many streams opened.
pub fn hold_streams(
    url: &str,
    token: &str,
    ids: Vec<String>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Arc<AtomicU64> {
    let http = reqwest::Client::new();
    let opened = Arc::new(AtomicU64::new(0));
    for id in ids {
        let (http, url, token, stop, opened) =
            (http.clone(), url.to_string(), token.to_string(), stop.clone(), opened.clone());
        tokio::spawn(async move {
            let events = http.get(format!("{url}/api/v1/executions/{id}/events")).bearer_auth(&token).send().await;
            let Ok(mut r) = events.and_then(|r| r.error_for_status()) else { return };
            opened.fetch_add(1, Ordering::Relaxed);
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), r.chunk()).await {
                    Ok(Ok(Some(_))) | Err(_) => {}
                    Ok(_) => return,
                }
            }
        });
    }
    opened
}
