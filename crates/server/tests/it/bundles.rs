//! Runbook bundles: the files published with a version, written out for its executions.

use opsbook_core::bundle::{Bundle, digest};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Body, Server, runbook};

fn bundle(files: &[(&str, bool, &str)]) -> Bundle {
    let mut b = Bundle::new();
    for (path, executable, text) in files {
        b.add(path, *executable, text.as_bytes().to_vec()).unwrap();
    }
    b
}

async fn upload(s: &Server, token: &str, b: &Bundle) -> (StatusCode, serde_json::Value) {
    s.call("PUT", &format!("/api/v1/bundles/{}", b.sha256()), Some(token), Some(Body::Bytes(b.encode()))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_runs_with_its_own_files() {
    let s = Server::start_with(|c| c.max_bundle_bytes = 4096).await;
    let author = s.token("ann", &["author"]).await;
    let ops = s.token("ops", &["operator"]).await;
    let v1 = bundle(&[
        ("scripts/deploy.sh", true, "#!/bin/sh\necho \"deploying $1 from $(pwd)\"\ntouch deployed\n"),
        ("config/app.env", false, "PORT=80\n"),
    ]);

    // Checked whole before anything is kept.
    let (status, doc) = s
        .call("PUT", &format!("/api/v1/bundles/{}", "0".repeat(64)), Some(&author), Some(Body::Bytes(v1.encode())))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(doc["error"]["message"].as_str().unwrap().starts_with("the body's SHA-256 is "), "{doc}");
    let forged = b"opsbook-bundle 1\n644 2 ../x\nhi\n".to_vec();
    let (status, doc) =
        s.call("PUT", &format!("/api/v1/bundles/{}", digest(&forged)), Some(&author), Some(Body::Bytes(forged))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(doc["error"]["message"].as_str().unwrap().contains("`..` would leave"), "{doc}");
    let big = bundle(&[("blob", false, &"x".repeat(5000))]);
    let (status, doc) = upload(&s, &author, &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(doc["error"]["message"].as_str().unwrap().contains("4096 bytes, max_bundle_bytes"), "{doc}");
    let (status, _) = upload(&s, &ops, &v1).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "uploading is an author's");

    let (status, doc) = upload(&s, &author, &v1).await;
    assert_eq!(status, StatusCode::CREATED, "{doc}");
    assert_eq!((doc["files"].as_u64(), doc["sha256"].as_str()), (Some(2), Some(v1.sha256().as_str())));
    assert_eq!(upload(&s, &author, &v1).await.0, StatusCode::OK, "stored once");
    let (status, _) = s.call("GET", &format!("/api/v1/bundles/{}", v1.sha256()), Some(&ops), None).await;
    assert_eq!(status, StatusCode::OK);

    let text = runbook(
        "svc",
        "1.0.0",
        "",
        "",
        "    - id: deploy\n      run: ./scripts/deploy.sh prod && . ./config/app.env && test \"$PORT\" = 80\n",
    );
    let (status, doc) = s.publish_with(&author, &text, Some(&"f".repeat(64))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(doc["error"]["message"].as_str().unwrap().contains("is not on this server: upload it first"), "{doc}");
    let (status, doc) = s.publish_with(&author, &text, Some(&v1.sha256())).await;
    assert_eq!(status, StatusCode::CREATED, "{doc}");
    assert_eq!(doc["bundle_sha256"], v1.sha256());
    // The files are part of the version: the same text with other files is refused.
    let v1b = bundle(&[("scripts/deploy.sh", true, "#!/bin/sh\nexit 1\n")]);
    upload(&s, &author, &v1b).await;
    let (status, doc) = s.publish_with(&author, &text, Some(&v1b.sha256())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{doc}");
    let (_, versions) = s.get("/api/v1/runbooks/svc/versions", &ops).await;
    assert_eq!(versions["items"][0]["bundle_sha256"], v1.sha256());

    // A worker runs it in a directory of its own holding those files, modes included.
    let (_, sub) = s.post("/api/v1/runbooks/svc/executions", &ops, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    let doc = s.wait_for(&id, &ops, |d| d["status"] != "queued" && d["status"] != "running").await;
    assert_eq!(doc["status"], "succeeded", "{doc}");
    let (_, logs) = s.get(&format!("/api/v1/executions/{id}/logs"), &ops).await;
    let dir = s.dir.path().join("executions").join(&id);
    let said = format!("deploying prod from {}", dir.display());
    let lines: Vec<&str> = logs["lines"].as_array().unwrap().iter().filter_map(|l| l["line"].as_str()).collect();
    assert!(lines.contains(&said.as_str()), "{said:?} in {lines:?}");
    // Removed by the worker right after it records the end, which the API may show first.
    let removed_by = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while dir.exists() && std::time::Instant::now() < removed_by {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!dir.exists(), "a successful execution's directory is removed");

    // One that fails keeps its directory, to look into.
    let v2 = bundle(&[
        ("scripts/deploy.sh", true, "#!/bin/sh\ntouch tried\nexit 3\n"),
        ("config/app.env", false, "PORT=80\n"),
    ]);
    upload(&s, &author, &v2).await;
    let (status, _) = s.publish_with(&author, &text.replace("1.0.0", "1.1.0"), Some(&v2.sha256())).await;
    assert_eq!(status, StatusCode::OK);
    let (_, sub) = s.post("/api/v1/runbooks/svc/executions", &ops, json!({})).await;
    let failed = sub["id"].as_str().unwrap().to_string();
    let doc = s.wait_for(&failed, &ops, |d| d["status"] == "failed").await;
    assert_eq!(doc["steps"][0]["exit_code"], 3, "{doc}");
    let kept = s.dir.path().join("executions").join(&failed);
    assert!(kept.join("tried").exists(), "kept with what the step left");

    // The diff of two versions shows their files too.
    let (status, diff) = s.call("GET", "/api/v1/runbooks/svc/diff?from=1.0.0&to=1.1.0", Some(&ops), None).await;
    assert_eq!(status, StatusCode::OK);
    let diff = diff.as_str().unwrap();
    assert!(diff.contains("--- svc 1.0.0: scripts/deploy.sh\n+++ svc 1.1.0: scripts/deploy.sh\n"), "{diff}");
    assert!(diff.contains("+exit 3\n"), "{diff}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_executions_keep_their_files_for_a_while() {
    let s = Server::start_with(|c| c.keep_failed_workdirs = "5s".into()).await;
    let author = s.token("root", &["admin"]).await;
    let files = bundle(&[("fail.sh", true, "#!/bin/sh\necho no >&2\nexit 1\n")]);
    assert_eq!(upload(&s, &author, &files).await.0, StatusCode::CREATED);
    let text = runbook("f", "1.0.0", "", "", "    - id: a\n      run: ./fail.sh\n");
    assert_eq!(s.publish_with(&author, &text, Some(&files.sha256())).await.0, StatusCode::CREATED);
    let (_, sub) = s.post("/api/v1/runbooks/f/executions", &author, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    s.wait_for(&id, &author, |d| d["status"] == "failed").await;
    let dir = s.dir.path().join("executions").join(&id);
    assert!(dir.join("fail.sh").exists(), "kept right after");
    let start = std::time::Instant::now();
    while dir.exists() && start.elapsed() < std::time::Duration::from_secs(30) {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(!dir.exists(), "removed once keep_failed_workdirs passed");
    assert!(start.elapsed() >= std::time::Duration::from_secs(1), "not at once");
    s.stop().await;
}
