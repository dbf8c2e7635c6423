//! Gates on the server: the verdict over HTTP, executions that wait on a gate without
//! holding a worker and resume by themselves, and the audited break-glass override.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Server, runbook};

/// A one-worker server with gate `prod`, blocked while the returned file exists.
async fn gated_server() -> (Server, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let incident = dir.path().join("incident");
    let gates = format!(
        "gates:\n  prod:\n    sources:\n      - command: {{ run: \"test ! -e {} || {{ echo incident open; exit 1; }}\" }}\n",
        incident.display()
    );
    let s = Server::start_in(dir, |c| {
        c.workers = 1;
        c.gates = opsbook_core::gate::GatesFile::parse(&gates).unwrap().gates;
    })
    .await;
    (s, incident)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_wait_on_gates_without_a_worker_and_resume_by_themselves() {
    let (s, incident) = gated_server().await;
    let op = s.token("olga", &["operator", "author"]).await;
    let admin = s.token("root", &["admin"]).await;
    std::fs::write(&incident, "").unwrap();

    let (status, verdict) = s.get("/api/v1/gates/prod", &op).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verdict["verdict"], "blocked");
    assert_eq!(verdict["records"][0]["title"], "incident open");

    let book = runbook(
        "deploy",
        "1.0.0",
        "",
        "",
        "    - id: health\n      gate: { use: prod, poll: 200ms, max_wait: 1h }\n    - id: ship\n      run: echo shipped\n",
    );
    s.publish(&op, &book).await;
    let (_, sub) = s.post("/api/v1/runbooks/deploy/executions", &op, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    let waiting = s.wait_for(&id, &op, |d| d["status"] == "waiting").await;
    assert_eq!(waiting["steps"][0]["status"], "waiting");
    assert_eq!(waiting["steps"][0]["error"], "gate `prod` blocked: command: incident open");
    assert_eq!(waiting["steps"][0]["outputs"]["records"][0]["source"], "command");

    // The only worker is free while the gate blocks.
    s.publish(&op, &runbook("quick", "1.0.0", "", "", "    - id: a\n      run: \"true\"\n")).await;
    let (_, other) = s.post("/api/v1/runbooks/quick/executions", &op, json!({})).await;
    assert_eq!(s.settled(other["id"].as_str().unwrap(), &op).await["status"], "succeeded");

    // The incident closes: the execution goes on by itself.
    std::fs::remove_file(&incident).unwrap();
    let done = s.wait_for(&id, &op, |d| d["status"] == "succeeded").await;
    assert_eq!(done["steps"][0]["outputs"]["verdict"], "clear");

    // Break glass: an admin overrides a blocking gate, with a reason, on record.
    std::fs::write(&incident, "").unwrap();
    let (_, sub) = s.post("/api/v1/runbooks/deploy/executions", &op, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    s.wait_for(&id, &op, |d| d["status"] == "waiting").await;
    let path = format!("/api/v1/executions/{id}/override");
    assert_eq!(s.post(&path, &op, json!({"reason": "x"})).await.0, StatusCode::FORBIDDEN);
    assert_eq!(s.post(&path, &admin, json!({"reason": " "})).await.0, StatusCode::BAD_REQUEST);
    let (status, doc) = s.post(&path, &admin, json!({"reason": "customer outage fix, approved by CTO"})).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    let done = s.wait_for(&id, &op, |d| d["status"] == "succeeded").await;
    assert_eq!(done["steps"][0]["outputs"]["overridden_by"], "root");
    let (_, audit) = s.get("/api/v1/audit?action=gate.override", &admin).await;
    assert_eq!(audit["items"][0]["details"]["reason"], "customer outage fix, approved by CTO");
    assert_eq!(audit["items"][0]["details"]["blocked_by"], "gate `prod` blocked: command: incident open");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_mid_run_parks_the_execution_before_the_next_step() {
    let (s, incident) = gated_server().await;
    let op = s.token("olga", &["operator", "author"]).await;
    let book = runbook(
        "rolling",
        "1.0.0",
        "",
        "",
        &format!(
            "    - id: health\n      gate: {{ use: prod, poll: 200ms, recheck: between_steps }}\n    - id: first\n      run: touch {}\n    - id: second\n      run: echo second\n",
            incident.display()
        ),
    );
    s.publish(&op, &book).await;
    let (_, sub) = s.post("/api/v1/runbooks/rolling/executions", &op, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    let parked = s.wait_for(&id, &op, |d| d["status"] == "waiting").await;
    assert_eq!(parked["steps"][1]["status"], "succeeded");
    assert_eq!(parked["steps"][2]["status"], "waiting");
    assert_eq!(
        parked["steps"][2]["error"],
        "waiting before step `second`: gate `prod` blocked: command: incident open"
    );
    std::fs::remove_file(&incident).unwrap();
    let done = s.wait_for(&id, &op, |d| d["status"] == "succeeded").await;
    assert_eq!(done["steps"][2]["status"], "succeeded");
    s.stop().await;
}
