//! Executions with targets and parallel branches, as the API reports them.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Server, runbook};

/// A step with targets on the server: each target's state in the execution's document,
/// the output lines named by target, the rollback where the step succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_are_reported_per_target() {
    let s = Server::start().await;
    let op = s.token("olga", &["operator", "author"]).await;
    let book = runbook(
        "fleet",
        "1.0.0",
        "",
        "    hosts: { type: string, required: true }\n",
        "    - id: restart\n      run: |\n        echo \"restarting {{ target }}\"\n        test {{ target }} != web-2\n      targets: { hosts: [\"{{ params.hosts }}\"], via: local, max_concurrency: 2, max_errors: 0 }\n      rollback:\n        run: echo \"undo {{ target }}\"\n",
    );
    s.publish(&op, &book).await;
    let (status, sub) =
        s.post("/api/v1/runbooks/fleet/executions", &op, json!({"params": {"hosts": "web-1,web-2"}})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sub}");
    let id = sub["id"].as_str().unwrap().to_string();
    let doc = s.settled(&id, &op).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    let targets = &doc["steps"][0]["targets"];
    assert_eq!(targets[0]["name"], "web-1");
    assert_eq!(targets[0]["status"], "succeeded");
    assert_eq!(targets[0]["exit_code"], 0);
    assert_eq!(targets[0]["rollback_status"], "succeeded");
    assert_eq!(targets[1]["status"], "failed");
    assert_eq!(targets[1]["error"], "exited with code 1");
    assert!(targets[1]["rollback_status"].is_null(), "no rollback where it failed");
    assert_eq!(doc["steps"][0]["error"], "1 of 2 targets failed (web-2: exited with code 1)");
    let (_, logs) = s.get(&format!("/api/v1/executions/{id}/logs"), &op).await;
    let lines: Vec<&str> = logs["lines"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap()).collect();
    assert!(lines.contains(&"[web-2] restarting web-2"), "{lines:?}");
    assert!(lines.contains(&"[web-1] undo web-1"), "{lines:?}");
    assert!(!lines.contains(&"[web-2] undo web-2"), "{lines:?}");
    s.stop().await;
}

/// A parallel step on the server: its branches side by side on one worker, each with its
/// own log, reported in the document, their outputs read by a later step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_branches_are_reported_per_branch() {
    let s = Server::start().await;
    let op = s.token("olga", &["operator", "author"]).await;
    let book = runbook(
        "warm",
        "1.0.0",
        "",
        "",
        "    - id: warm\n      parallel:\n        fail: all\n        steps:\n          - { id: eu, run: \"echo warming eu; echo hits=7 >> $OPSBOOK_OUTPUT\" }\n          - { id: us, run: \"echo warming us; exit 2\" }\n    - id: never\n      run: echo {{ steps.eu.outputs.hits }}\n",
    );
    s.publish(&op, &book).await;
    let (status, sub) = s.post("/api/v1/runbooks/warm/executions", &op, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sub}");
    let id = sub["id"].as_str().unwrap().to_string();
    let doc = s.settled(&id, &op).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    let warm = &doc["steps"][0];
    assert_eq!(warm["kind"], "parallel");
    assert_eq!(warm["error"], "1 of 2 branches failed (us: exited with code 2)");
    assert_eq!(warm["branches"][0]["name"], "eu");
    assert_eq!(warm["branches"][0]["status"], "succeeded");
    assert_eq!(warm["branches"][1]["exit_code"], 2);
    assert_eq!(warm["outputs"]["eu.hits"], "7");
    let (_, logs) = s.get(&format!("/api/v1/executions/{id}/logs"), &op).await;
    let by_step: Vec<(&str, &str)> = (logs["lines"].as_array().unwrap().iter())
        .filter(|l| l["stream"] == "stdout")
        .map(|l| (l["step"].as_str().unwrap(), l["line"].as_str().unwrap()))
        .collect();
    assert!(by_step.contains(&("eu", "warming eu")) && by_step.contains(&("us", "warming us")), "{by_step:?}");
    // A branch is a step to ask the log for; a name the execution does not have is refused.
    let (status, eu) = s.get(&format!("/api/v1/executions/{id}/logs?step=eu"), &op).await;
    assert_eq!(status, StatusCode::OK, "{eu}");
    assert!(eu["lines"].as_array().unwrap().iter().all(|l| l["step"] == "eu"), "{eu}");
    let (status, nope) = s.get(&format!("/api/v1/executions/{id}/logs?step=nope"), &op).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{nope}");
    assert_eq!(nope["error"]["message"], format!("execution {id} has no step `nope`; its steps: warm, eu, us, never"));
    assert_eq!(nope["error"]["details"]["param"], "step");
    s.stop().await;
}
