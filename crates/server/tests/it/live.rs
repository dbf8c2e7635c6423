//! Event streams (SSE) of running executions: what many of them see at once.

use std::time::Duration;

use serde_json::json;

use crate::support::{Server, runbook};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_follow_running_executions_to_their_end() {
    let s = Server::start().await;
    let op = s.token("olga", &["operator", "author"]).await;
    let book =
        runbook("slow", "1.0.0", "", "", "    - id: a\n      run: for i in 1 2 3; do echo line $i; sleep 0.3; done\n");
    s.publish(&op, &book).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (_, sub) = s.post("/api/v1/runbooks/slow/executions", &op, json!({})).await;
        ids.push(sub["id"].as_str().unwrap().to_string());
    }
    // Ten streams on each, opened while they run; each ends when its execution does.
    let streams: Vec<_> = ids
        .iter()
        .flat_map(|id| std::iter::repeat_n(id.clone(), 10))
        .map(|id| {
            let (url, op) = (format!("{}/api/v1/executions/{id}/events", s.url), op.clone());
            tokio::spawn(async move {
                let r = reqwest::Client::new().get(url).bearer_auth(op).send().await.unwrap();
                tokio::time::timeout(Duration::from_secs(30), r.text()).await.expect("the stream ends").unwrap()
            })
        })
        .collect();
    for stream in streams {
        let text = stream.await.unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("data: {\"seq\"")).collect();
        assert_eq!(lines.len(), 3, "each line once: {text}");
        for (n, l) in lines.iter().enumerate() {
            assert!(l.contains(&format!("\"line\":\"line {}\"", n + 1)), "in order: {text}");
        }
        let last_status = text.lines().rfind(|l| l.starts_with("data: {\"status\""));
        assert!(last_status.is_some_and(|l| l.contains("\"succeeded\"")), "{text}");
    }
    s.stop().await;
}
