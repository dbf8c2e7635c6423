//! `runbook` steps on the server: a published runbook called by name and version, its
//! child execution parked on an approval, taken on by a worker after the decision, and
//! the parent woken when it ends.

use opsbook_store::Store;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Server, runbook};

fn migrate(version: &str) -> String {
    runbook(
        "db-migrate",
        version,
        "",
        "    db: { type: string, required: true }\n    token: { type: secret, required: true }\n",
        &format!(
            "    - id: apply\n      run: |\n        echo \"migrating {{{{ params.db }}}} with $OPSBOOK_PARAM_TOKEN\"\n        echo version={version} >> \"$OPSBOOK_OUTPUT\"\n      rollback: {{ run: touch undone-{version} }}\n    - id: ok\n      approval: {{ approvers: [\"role:release-manager\"] }}\n"
        ),
    )
}

fn release(requirement: &str) -> String {
    runbook(
        "release",
        "1.0.0",
        "",
        "    token: { type: secret, required: true }\n",
        &format!(
            "    - id: migrate\n      runbook: {{ name: db-migrate, version: \"{requirement}\", params: {{ db: orders, token: \"{{{{ params.token }}}}\" }} }}\n    - id: after\n      run: echo \"migrated to {{{{ steps.migrate.outputs.version }}}}\"\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_runbook_runs_as_a_child_and_its_end_wakes_the_parent() {
    let s = Server::start().await;
    let author = s.token("ann", &["operator", "author"]).await;
    let manager = s.token("max", &["approver", "release-manager"]).await;
    for v in ["1.0.0", "1.2.0", "2.0.0"] {
        let (status, answer) = s.publish(&author, &migrate(v)).await;
        assert!(status.is_success(), "{answer}");
    }
    assert!(s.publish(&author, &release("^1")).await.0.is_success());
    let body = json!({"params": {"token": "t0p-secret"}});
    let (status, sub) = s.post("/api/v1/runbooks/release/executions", &author, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sub}");
    let parent = sub["id"].as_str().unwrap().to_string();
    let doc = s.wait_for(&parent, &author, |d| d["status"] == "waiting").await;
    let step = &doc["steps"][0];
    assert_eq!(step["status"], "waiting", "{doc}");
    assert_eq!(step["child"]["runbook"], "db-migrate");
    assert_eq!(step["child"]["version"], "1.2.0", "the newest version ^1 allows");
    assert_eq!(step["child"]["status"], "waiting");
    let child = step["child"]["id"].as_str().unwrap().to_string();
    // Linked both ways; the children of an execution are listed by `parent`.
    let (_, c) = s.get(&format!("/api/v1/executions/{child}"), &author).await;
    assert_eq!(c["parent"], json!({"id": parent, "step": "migrate"}));
    assert_eq!(c["params"]["token"], "***");
    let (_, list) = s.get(&format!("/api/v1/executions?parent={parent}"), &author).await;
    let ids: Vec<&str> = list["items"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [child.as_str()]);
    // The child's approval is decided as any execution's; a worker goes on with the child
    // (its secret sealed for it), and its end wakes the parent.
    let approve = json!({"decision": "approve"});
    let (status, answer) = s.post(&format!("/api/v1/executions/{child}/approvals"), &manager, approve).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let ended = |d: &serde_json::Value| matches!(d["status"].as_str(), Some("succeeded" | "failed" | "cancelled"));
    let done = s.wait_for(&parent, &author, ended).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["steps"][0]["outputs"]["version"], "1.2.0");
    assert_eq!(done["steps"][0]["child"]["status"], "succeeded");
    let (_, logs) = s.get(&format!("/api/v1/executions/{parent}/logs"), &author).await;
    let lines: Vec<&str> = logs["lines"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap()).collect();
    assert!(lines.contains(&"migrated to 1.2.0"), "{lines:?}");
    let (_, logs) = s.get(&format!("/api/v1/executions/{child}/logs"), &author).await;
    let text = logs.to_string();
    assert!(text.contains("migrating orders with ***") && !text.contains("t0p-secret"), "{text}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_requirement_nothing_matches_fails_the_step_saying_what_is_published() {
    let s = Server::start().await;
    let author = s.token("ann", &["operator", "author"]).await;
    s.publish(&author, &migrate("1.0.0")).await;
    s.publish(&author, &release("^3")).await;
    let (_, sub) = s.post("/api/v1/runbooks/release/executions", &author, json!({"params": {"token": "t0k3n"}})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    let doc = s.settled(&id, &author).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(doc["steps"][0]["error"], "no published version of `db-migrate` matches ^3 (published: 1.0.0)");
    assert!(doc["steps"][0].get("child").is_none());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_a_runbook_that_would_call_itself_back_is_refused() {
    let s = Server::start().await;
    let author = s.token("ann", &["operator", "author"]).await;
    let call = |name: &str, to: &str, version: &str| {
        runbook(name, version, "", "", &format!("    - id: to_{to}\n      runbook: {{ name: {to} }}\n"))
    };
    assert!(s.publish(&author, &call("alpha", "beta", "1.0.0")).await.0.is_success(), "beta is not there yet");
    assert!(s.publish(&author, &call("beta", "gamma", "1.0.0")).await.0.is_success());
    let (status, answer) = s.publish(&author, &call("gamma", "alpha", "1.0.0")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(
        answer["error"]["message"],
        "invalid runbook: step `to_gamma` of `beta`: runbooks call each other in a cycle: gamma → alpha → beta → gamma"
    );
    assert_eq!(s.get("/api/v1/runbooks/gamma", &author).await.0, StatusCode::NOT_FOUND, "nothing was published");
    s.stop().await;
}

/// A child whose gate blocks parks; the gate pool polls the child (not the parent), a
/// worker goes on with it once the incident closes, and its end wakes the parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_waiting_on_a_gate_goes_on_by_itself_and_wakes_its_parent() {
    let (s, incident) = crate::gates::gated_server().await;
    let op = s.token("olga", &["operator", "author"]).await;
    crate::gates::set_incident(&incident, "incident open");
    let child = runbook(
        "guarded",
        "1.0.0",
        "",
        "",
        "    - id: health\n      gate: { use: prod, poll: 200ms, max_wait: 1h }\n    - id: ship\n      run: echo shipped=yes >> \"$OPSBOOK_OUTPUT\"\n",
    );
    assert!(s.publish(&op, &child).await.0.is_success());
    let parent = runbook(
        "train",
        "1.0.0",
        "",
        "",
        "    - id: call\n      runbook: { name: guarded }\n    - id: after\n      run: echo \"after {{ steps.call.outputs.shipped }}\"\n",
    );
    assert!(s.publish(&op, &parent).await.0.is_success());
    let (_, sub) = s.post("/api/v1/runbooks/train/executions", &op, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    let waiting = s.wait_for(&id, &op, |d| d["status"] == "waiting").await;
    let step = &waiting["steps"][0];
    assert!(step["error"].as_str().unwrap().ends_with("step `health` waits on a gate"), "{step}");
    let child_id = step["child"]["id"].as_str().unwrap().to_string();
    let (_, c) = s.get(&format!("/api/v1/executions/{child_id}"), &op).await;
    assert_eq!(c["status"], "waiting");
    assert_eq!(c["steps"][0]["error"], "gate `prod` blocked: command: incident open");
    std::fs::remove_file(&incident).unwrap();
    let done = s.wait_for(&id, &op, |d| d["status"] == "succeeded").await;
    assert_eq!(done["steps"][0]["child"]["status"], "succeeded");
    assert_eq!(done["steps"][0]["outputs"]["shipped"], "yes");
    s.stop().await;
}

/// A child runs as its parent's submitter: the policies of the runbooks a parent calls by
/// name apply when the parent is submitted (a parameter not known yet counts as matching).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policies_of_a_called_runbook_apply_to_whoever_runs_the_caller() {
    use opsbook_server::policy::{ParamCondition, Policy};
    let s = Server::start_with(|c| {
        c.policies = vec![Policy {
            description: Some("production databases".into()),
            names: vec!["db-*".into()],
            tags: vec![],
            param: Some(ParamCondition { name: "db".into(), value: "prod".into() }),
            roles: vec!["dba".into()],
        }];
    })
    .await;
    let author = s.token("ann", &["operator", "author"]).await;
    let dba = s.token("dora", &["operator", "dba"]).await;
    let child = runbook(
        "db-migrate",
        "1.0.0",
        "",
        "    db: { type: string, required: true }\n",
        "    - id: m\n      run: \"true\"\n",
    );
    assert!(s.publish(&author, &child).await.0.is_success());
    let parent = runbook(
        "release",
        "1.0.0",
        "",
        "    target: { type: string, required: true }\n",
        "    - id: pick\n      run: echo db=prod >> \"$OPSBOOK_OUTPUT\"\n    - id: by_param\n      runbook: { name: db-migrate, params: { db: \"{{ params.target }}\" } }\n",
    );
    assert!(s.publish(&author, &parent).await.0.is_success());
    assert_eq!(submit(&s, &author, "staging").await.0, StatusCode::ACCEPTED, "staging is not covered");
    let (status, answer) = submit(&s, &author, "prod").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(
        answer["error"]["message"],
        "step `by_param` of `release` runs `db-migrate`, and running `db-migrate` like this needs one of the roles dba (production databases)"
    );
    assert_eq!(submit(&s, &dba, "prod").await.0, StatusCode::ACCEPTED);
    // A value that comes from a step's output is not known at submission: refused unless allowed.
    let later = runbook(
        "release",
        "1.1.0",
        "",
        "    target: { type: string, required: true }\n",
        "    - id: pick\n      run: echo db=prod >> \"$OPSBOOK_OUTPUT\"\n    - id: by_output\n      runbook: { name: db-migrate, params: { db: \"{{ steps.pick.outputs.db }}\" } }\n",
    );
    assert!(s.publish(&author, &later).await.0.is_success());
    assert_eq!(submit(&s, &author, "staging").await.0, StatusCode::FORBIDDEN);
    assert_eq!(submit(&s, &dba, "staging").await.0, StatusCode::ACCEPTED);
    s.stop().await;
}

async fn submit(s: &Server, who: &str, target: &str) -> (StatusCode, serde_json::Value) {
    s.post("/api/v1/runbooks/release/executions", who, json!({"params": {"target": target}})).await
}

/// Cancelling a parent whose child runs on another worker (it went on after its approval)
/// asks that child to stop too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_parent_stops_a_child_running_on_another_worker() {
    let s = Server::start().await;
    let author = s.token("ann", &["operator", "author"]).await;
    let manager = s.token("max", &["approver", "release-manager"]).await;
    let child = runbook(
        "slow-child",
        "1.0.0",
        "",
        "",
        "    - id: ok\n      approval: { approvers: [\"role:release-manager\"] }\n    - id: long\n      run: echo $$ > long.pid; sleep 60\n",
    );
    assert!(s.publish(&author, &child).await.0.is_success());
    let parent = runbook("caller", "1.0.0", "", "", "    - id: call\n      runbook: { name: slow-child }\n");
    assert!(s.publish(&author, &parent).await.0.is_success());
    let (_, sub) = s.post("/api/v1/runbooks/caller/executions", &author, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    let doc = s.wait_for(&id, &author, |d| d["status"] == "waiting").await;
    let child_id = doc["steps"][0]["child"]["id"].as_str().unwrap().to_string();
    let approve = json!({"decision": "approve"});
    assert_eq!(s.post(&format!("/api/v1/executions/{child_id}/approvals"), &manager, approve).await.0, StatusCode::OK);
    s.wait_for(&child_id, &author, |d| d["steps"][1]["status"] == "running").await;
    let (status, answer) = s.post(&format!("/api/v1/executions/{id}/cancel"), &author, json!({})).await;
    assert!(status.is_success(), "{answer}");
    let ended = |d: &serde_json::Value| matches!(d["status"].as_str(), Some("succeeded" | "failed" | "cancelled"));
    let child_doc = s.wait_for(&child_id, &author, ended).await;
    assert_eq!(child_doc["status"], "cancelled", "{child_doc}");
    assert_eq!(child_doc["steps"][1]["status"], "cancelled");
    let parent_doc = s.wait_for(&id, &author, ended).await;
    assert_eq!(parent_doc["status"], "cancelled", "{parent_doc}");
    s.stop().await;
}

/// An execution queued again after it started (a parent looking at its child) is not
/// cancelled "before it started" (which would leave its child behind): the cancel is
/// recorded for the worker that takes it, which stops it with its rollbacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_of_a_parent_queued_again_is_left_to_its_worker() {
    let s = Server::start().await;
    let author = s.token("ann", &["operator", "author"]).await;
    let child = runbook(
        "gated-child",
        "1.0.0",
        "",
        "",
        "    - id: ok\n      approval: { approvers: [\"role:release-manager\"] }\n",
    );
    assert!(s.publish(&author, &child).await.0.is_success());
    let parent = runbook("caller", "1.0.0", "", "", "    - id: call\n      runbook: { name: gated-child }\n");
    assert!(s.publish(&author, &parent).await.0.is_success());
    let (_, sub) = s.post("/api/v1/runbooks/caller/executions", &author, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    s.wait_for(&id, &author, |d| d["status"] == "waiting").await;
    // Again with no worker, the parent queued as its 30 s look queues it.
    let dir = s.stop_keep_dir().await;
    let s = Server::start_in(dir, |c| c.workers = 0).await;
    let author = s.token("ann", &["operator", "author"]).await;
    s.sql(&format!("UPDATE executions SET status = 'queued', owner = NULL, lease_expires_at = NULL WHERE id = '{id}'"))
        .await;
    let (status, answer) = s.post(&format!("/api/v1/executions/{id}/cancel"), &author, json!({})).await;
    assert!(status.is_success(), "{answer}");
    let e = s.store.execution(&id).await.unwrap();
    assert_eq!(e.status, opsbook_core::ExecStatus::Queued, "left for a worker: {e:?}");
    assert!(e.cancel_requested);
    assert_eq!(e.error, None, "not cancelled before it started");
    s.stop().await;
}
