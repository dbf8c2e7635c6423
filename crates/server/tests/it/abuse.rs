//! Hostile and malformed requests: every refusal is a 4xx in the API's error shape,
//! names what is wrong, and echoes nothing large back.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Body, Server};

fn error_shape(doc: &Value) -> &str {
    let e = &doc["error"];
    assert!(e["code"].is_string() && e["details"].is_object() || e["details"].is_null(), "{doc}");
    e["message"].as_str().unwrap_or_else(|| panic!("not the error shape: {doc}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_named_refusals_in_the_error_shape() {
    let s = Server::start().await;
    let op = s.token("olga", &["operator", "author"]).await;
    s.publish(&op, &crate::support::runbook("a", "1.0.0", "", "", "    - id: a\n      run: \"true\"\n")).await;

    // A NUL in a search is no server error.
    let (status, doc) = s.get("/api/v1/runbooks?q=%00", &op).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    let (status, _) = s.get("/api/v1/runbooks?q=a%00", &op).await;
    assert_eq!(status, StatusCode::OK);

    // Unknown fields are refused, naming the field.
    let (status, doc) = s.post("/api/v1/runbooks/a/executions", &op, json!({ "params": {}, "parms": {} })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}");
    assert!(error_shape(&doc).contains("unknown field `parms`"), "{doc}");
    assert_eq!(doc["error"]["details"]["field"], "parms");
    let (status, doc) = s.post("/api/v1/runbooks/a/executions", &op, json!({ "params": [] })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}");
    assert_eq!(doc["error"]["details"]["field"], "params");

    // Megabytes of input are not echoed back.
    let huge = "x".repeat(500_000);
    let (status, doc) = s.post("/api/v1/runbooks/a/executions", &op, json!({ "version": [huge] })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(doc.to_string().len() < 2_000, "{} bytes", doc.to_string().len());
    let (status, doc) = s.get(&format!("/api/v1/executions?limit={}", "9".repeat(5_000)), &op).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(doc.to_string().len() < 2_000);

    // Over the body limit: 413, same shape.
    let big = json!({ "params": { "x": "y".repeat(3 * 1024 * 1024) } });
    let (status, doc) = s.call("POST", "/api/v1/runbooks/a/executions", Some(&op), Some(Body::Json(big))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error_shape(&doc).starts_with("request body: too large"), "{doc}");
    let yaml = format!("# {}\n", "z".repeat(3 * 1024 * 1024));
    let (status, doc) = s.call("POST", "/api/v1/runbooks", Some(&op), Some(Body::Yaml(yaml))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    error_shape(&doc);

    // Unknown paths and methods.
    let (status, doc) = s.get("/api/v1/nothing-here", &op).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_shape(&doc), "no such endpoint: /api/v1/nothing-here");
    let (status, doc) = s.call("DELETE", "/api/v1/runbooks", Some(&op), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    error_shape(&doc);

    // The authentication scheme is case-insensitive.
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/whoami", s.url))
        .header("Authorization", format!("bearer {op}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
}
