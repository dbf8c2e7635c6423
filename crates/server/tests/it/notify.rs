//! Notifications reach a real local webhook receiver, signed, with retries recorded.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use opsbook_server::notify::{Kind, Rule, hmac_sha256};
use opsbook_store::ServerStore;
use serde_json::{Value, json};

use crate::support::{Server, runbook};

#[derive(Default, Clone)]
pub(crate) struct Received {
    pub(crate) calls: Arc<Mutex<Vec<(HeaderMap, String)>>>,
}

/// A receiver that answers 500 to the first `fail_first` requests, then 200.
pub(crate) async fn receiver(fail_first: usize) -> (String, Received) {
    let got = Received::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let g = g.clone();
            async move {
                let mut calls = g.calls.lock().unwrap();
                calls.push((headers, body));
                if calls.len() <= fail_first { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

pub(crate) fn rule(name: &str, kind: Kind, url: &str, events: &[&str]) -> Rule {
    Rule {
        name: name.into(),
        kind: Some(kind),
        url: url.into(),
        sns: None,
        events: events.iter().map(|e| e.to_string()).collect(),
        runbooks: vec![],
        secret_env: None,
        secret: Some("k3y".into()),
        attempts: 4,
        backoff: "20ms".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_and_recorded() {
    let (hook, got) = receiver(2).await;
    let (slack, slack_got) = receiver(0).await;
    let s = Server::start_with(|c| {
        c.public_url = Some("https://ops.example".into());
        c.notify = vec![
            rule("hook", Kind::Webhook, &hook, &["failed", "rolled_back"]),
            rule("chat", Kind::Slack, &slack, &[]),
        ];
    })
    .await;
    let op = s.token("olga", &["operator", "author"]).await;
    let book = runbook(
        "deploy",
        "1.0.0",
        "",
        "",
        "    - id: a\n      run: \"true\"\n      rollback:\n        run: \"true\"\n    - id: b\n      run: exit 1\n",
    );
    s.publish(&op, &book).await;
    let (_, sub) = s.post("/api/v1/runbooks/deploy/executions", &op, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    assert_eq!(s.settled(&id, &op).await["status"], "failed");

    // rolled_back: 2 failures then success; failed: delivered first time → 4 calls.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while got.calls.lock().unwrap().len() < 4 || slack_got.calls.lock().unwrap().len() < 3 {
        assert!(std::time::Instant::now() < deadline, "deliveries did not arrive");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for (headers, body) in got.calls.lock().unwrap().iter() {
        let sig = headers["x-opsbook-signature"].to_str().unwrap();
        assert_eq!(sig, format!("sha256={}", hex::encode(hmac_sha256(b"k3y", body.as_bytes()))));
        let doc: Value = serde_json::from_str(body).unwrap();
        assert_eq!(doc["execution"]["id"], id.as_str());
        // The execution's web page: the API's URL would answer 401 in a browser.
        assert_eq!(doc["url"], format!("https://ops.example/executions/{id}"));
        assert_eq!(headers["x-opsbook-event"], doc["event"].as_str().unwrap());
    }
    let events: Vec<String> =
        got.calls.lock().unwrap().iter().map(|(h, _)| h["x-opsbook-event"].to_str().unwrap().to_string()).collect();
    assert!(events.iter().all(|e| e == "rolled_back" || e == "failed"), "{events:?}");
    let slack_events: Vec<Value> =
        slack_got.calls.lock().unwrap().iter().map(|(_, b)| serde_json::from_str::<Value>(b).unwrap()).collect();
    let texts: Vec<&str> = slack_events.iter().map(|v| v["text"].as_str().unwrap()).collect();
    for e in ["started", "rolled_back", "failed"] {
        assert!(texts.contains(&format!("deploy 1.0.0: {e}").as_str()), "{texts:?}");
    }
    assert_eq!(slack_events[0]["blocks"][1]["fields"][2]["text"], "*Actor*\nolga");
    let link = slack_events[0]["blocks"].as_array().unwrap().last().unwrap()["text"]["text"].clone();
    assert_eq!(link, format!("<https://ops.example/executions/{id}|Open execution {id}>"));

    // Every attempt is on record: for the webhook, two 500s and a 200 for one event. (An
    // attempt is recorded once its answer is in, just after the receiver counted it.)
    let hook_attempts = |attempts: &[opsbook_store::NotificationAttempt]| -> Vec<(i64, Option<i64>)> {
        attempts.iter().filter(|a| a.rule == "hook").map(|a| (a.attempt, a.status_code)).collect()
    };
    let mut attempts = s.store.notifications(&id).await.unwrap();
    while hook_attempts(&attempts).len() < 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        attempts = s.store.notifications(&id).await.unwrap();
    }
    let hook_attempts = hook_attempts(&attempts);
    assert_eq!(hook_attempts.len(), 4, "{attempts:?}");
    assert_eq!(hook_attempts.iter().filter(|(_, c)| *c == Some(500)).count(), 2);
    assert_eq!(hook_attempts.iter().filter(|(_, c)| *c == Some(200)).count(), 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_never_slows_an_execution() {
    // Nothing listens on this port: every attempt fails at once; the run is unaffected.
    // The port stays bound (never listening) for the whole test, so no other test's
    // server can take it meanwhile and answer in its place.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead = format!("http://{}/hook", held.local_addr().unwrap());
    let s = Server::start_with(|c| {
        c.notify = vec![Rule { attempts: 3, backoff: "50ms".into(), ..rule("dead", Kind::Webhook, &dead, &[]) }]
    })
    .await;
    let op = s.token("olga", &["operator", "author"]).await;
    s.publish(&op, &runbook("quick", "1.0.0", "", "", "    - id: a\n      run: \"true\"\n")).await;
    let (_, sub) = s.post("/api/v1/runbooks/quick/executions", &op, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    assert_eq!(s.settled(&id, &op).await["status"], "succeeded");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let a = s.store.notifications(&id).await.unwrap();
        if a.len() == 6 {
            assert!(a.iter().all(|x| x.status_code.is_none() && x.error.is_some()), "{a:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{a:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    s.stop().await;
}

/// A `waiting` notification says what the execution waits for and how to decide, and
/// links to the page where that is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_says_what_for_and_how_to_decide() {
    let (hook, got) = receiver(0).await;
    let s = Server::start_with(|c| {
        c.public_url = Some("https://ops.example/".into());
        c.notify = vec![rule("hook", Kind::Webhook, &hook, &["waiting"])];
    })
    .await;
    let op = s.token("olga", &["operator", "author"]).await;
    let book = runbook("ship", "1.0.0", "", "", "    - id: go\n      approval: { message: \"ship it?\" }\n");
    s.publish(&op, &book).await;
    let (_, sub) = s.post("/api/v1/runbooks/ship/executions", &op, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    s.wait_for(&id, &op, |d| d["status"] == "waiting").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while got.calls.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no waiting notification");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let doc: Value = serde_json::from_str(&got.calls.lock().unwrap()[0].1).unwrap();
    assert_eq!(doc["event"], "waiting");
    let detail = doc["detail"].as_str().unwrap();
    assert!(detail.starts_with("step `go` waits for approval: ship it? To go on: "), "{detail}");
    assert!(
        detail.ends_with(&format!(
            "? To go on: decide on https://ops.example/executions/{id}, or with `opsbook approve {id}` or `opsbook reject {id}`."
        )),
        "{detail}"
    );
    assert_eq!(doc["url"], format!("https://ops.example/executions/{id}"));
    s.stop().await;
}
