//! Gates on the server: the verdict over HTTP, executions that wait on a gate without
//! holding a worker and resume by themselves, and the audited break-glass override.

use reqwest::StatusCode;
use serde_json::json;

use opsbook_server::config::Config;
use opsbook_server::notify::Kind;
use serde_json::Value;

use crate::notify::{receiver, rule};
use crate::support::{Server, at_ms, runbook};

/// A one-worker server with gate `prod`, blocked while the returned file exists, for the
/// reason written in it.
pub async fn gated_server() -> (Server, std::path::PathBuf) {
    gated_server_with(|_| {}).await
}

/// Opens (or changes) the incident the `prod` gate reads, all at once: a poll never sees
/// the file empty (a write in place truncates it first).
pub fn set_incident(incident: &std::path::Path, text: &str) {
    let next = incident.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, incident).unwrap();
}

async fn gated_server_with(change: impl FnOnce(&mut Config)) -> (Server, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let incident = dir.path().join("incident");
    let gates = format!(
        "gates:\n  prod:\n    sources:\n      - command: {{ run: \"test ! -e {} || {{ cat {}; exit 1; }}\" }}\n",
        incident.display(),
        incident.display()
    );
    let s = Server::start_in(dir, |c| {
        c.workers = 1;
        c.gates = opsbook_core::gate::GatesFile::parse(&gates).unwrap().gates;
        change(c);
    })
    .await;
    (s, incident)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_wait_on_gates_without_a_worker_and_resume_by_themselves() {
    let (s, incident) = gated_server().await;
    let op = s.token("olga", &["operator", "author"]).await;
    let admin = s.token("root", &["admin"]).await;
    crate::gates::set_incident(&incident, "incident open");

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
    assert!(done["steps"][0]["outputs"]["records"].is_null(), "what blocked it is history: {done}");

    // Break glass: an admin overrides a blocking gate, with a reason, on record.
    crate::gates::set_incident(&incident, "incident open");
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

/// Starts a rolling deployment whose first step opens the incident: a recheck holds
/// `second` (and would hold `third`).
async fn start_rolling(s: &Server, op: &str, incident: &std::path::Path) -> String {
    let book = runbook(
        "rolling",
        "1.0.0",
        "",
        "",
        &format!(
            "    - id: health\n      gate: {{ use: prod, poll: 200ms, recheck: between_steps }}\n    - id: first\n      run: printf \"incident open\" > {}\n    - id: second\n      run: echo second\n    - id: third\n      run: echo third\n",
            incident.display()
        ),
    );
    s.publish(op, &book).await;
    let (_, sub) = s.post("/api/v1/runbooks/rolling/executions", op, json!({})).await;
    sub["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_mid_run_parks_the_execution_before_the_next_step() {
    let (s, incident) = gated_server().await;
    let op = s.token("olga", &["operator", "author"]).await;
    let id = start_rolling(&s, &op, &incident).await;
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
    // Every check is in the log, the clear ones too.
    let (_, logs) = s.get(&format!("/api/v1/executions/{id}/logs"), &op).await;
    let lines: Vec<&str> = logs["lines"].as_array().unwrap().iter().filter_map(|l| l["line"].as_str()).collect();
    assert!(lines.contains(&"recheck before step `third`: gate `prod` is clear"), "{lines:?}");
    s.stop().await;
}

/// What a webhook received, as (event, detail) pairs.
fn deliveries(got: &crate::notify::Received) -> Vec<(String, String)> {
    let calls = got.calls.lock().unwrap();
    calls
        .iter()
        .map(|(_, body)| {
            let doc: Value = serde_json::from_str(body).unwrap();
            (doc["event"].as_str().unwrap().to_string(), doc["detail"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

async fn wait_deliveries(got: &crate::notify::Received, event: &str, n: usize) -> Vec<(String, String)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let all = deliveries(got);
        if all.iter().filter(|(e, _)| e == event).count() >= n {
            return all;
        }
        assert!(std::time::Instant::now() < deadline, "no {n} `{event}` deliveries: {all:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_say_what_blocks_once_per_change_and_when_it_clears() {
    let (hook, got) = receiver(0).await;
    let (s, incident) = gated_server_with(|c| {
        c.notify = vec![rule("oncall", Kind::Webhook, &hook, &[])];
    })
    .await;
    let op = s.token("olga", &["operator", "author"]).await;
    crate::gates::set_incident(&incident, "incident open");
    let book = runbook(
        "deploy",
        "1.0.0",
        "",
        "",
        "    - id: health\n      gate: { use: prod, poll: 100ms, max_wait: 1h }\n    - id: ship\n      run: echo shipped\n",
    );
    s.publish(&op, &book).await;
    let (_, sub) = s.post("/api/v1/runbooks/deploy/executions", &op, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    s.wait_for(&id, &op, |d| d["status"] == "waiting").await;
    wait_deliveries(&got, "blocked", 1).await;
    // Several polls find the same block: nobody is told again.
    let polls_before = polls(&s, &id, &op).await;
    while polls(&s, &id, &op).await < polls_before + 4 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The incident changes: that is news.
    crate::gates::set_incident(&incident, "incident worse");
    wait_deliveries(&got, "blocked", 2).await;
    std::fs::remove_file(&incident).unwrap();
    s.wait_for(&id, &op, |d| d["status"] == "succeeded").await;
    let all = wait_deliveries(&got, "succeeded", 1).await;
    let of = |e: &str| all.iter().filter(|(ev, _)| ev == e).map(|(_, d)| d.as_str()).collect::<Vec<_>>();
    assert_eq!(of("started"), vec![""], "{all:?}");
    assert_eq!(
        of("blocked"),
        vec![
            "step `health`: gate `prod` blocks: command: incident open",
            "step `health`: gate `prod` blocks: command: incident worse"
        ],
        "{all:?}"
    );
    // A block is one notification (`blocked`, which says what blocks), not `waiting` too.
    assert_eq!(of("waiting"), Vec::<&str>::new(), "{all:?}");
    let resumed = of("resumed");
    assert_eq!(resumed.len(), 1, "{all:?}");
    assert!(resumed[0].starts_with("step `health`: gate `prod` is clear after "), "{all:?}");
    assert_eq!(all.len(), 5, "{all:?}");
    s.stop().await;
}

/// How many times the gate of execution `id` has been checked (one log line per check).
async fn polls(s: &Server, id: &str, token: &str) -> usize {
    let (_, logs) = s.get(&format!("/api/v1/executions/{id}/logs"), token).await;
    logs["lines"]
        .as_array()
        .map_or(0, |l| l.iter().filter(|x| x["line"].as_str().is_some_and(|t| t.contains("checking again"))).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaking_glass_on_a_recheck_waives_the_gate_for_the_rest_of_the_run() {
    let (hook, got) = receiver(0).await;
    let (s, incident) = gated_server_with(|c| {
        c.notify = vec![rule("oncall", Kind::Webhook, &hook, &["overridden", "blocked"])];
    })
    .await;
    let op = s.token("olga", &["operator", "author"]).await;
    let admin = s.token("root", &["admin"]).await;
    let id = start_rolling(&s, &op, &incident).await;
    s.wait_for(&id, &op, |d| d["status"] == "waiting").await;
    // The notice names the step the recheck holds.
    let blocked = wait_deliveries(&got, "blocked", 1).await;
    assert_eq!(blocked[0].1, "step `second`: gate `prod` blocks: command: incident open");
    let (status, doc) = s
        .post(&format!("/api/v1/executions/{id}/override"), &admin, json!({"reason": "hotfix for the incident itself"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["step"], "second");
    assert_eq!(doc["gate_steps"], json!(["health"]));
    // The incident is still open, yet `second` and `third` run: the gate is waived.
    let done = s.wait_for(&id, &op, |d| d["status"] == "succeeded").await;
    assert!(incident.exists());
    assert_eq!(done["steps"][0]["outputs"]["overridden_by"], "root");
    assert_eq!(done["steps"][3]["status"], "succeeded");
    let all: Vec<_> =
        wait_deliveries(&got, "overridden", 1).await.into_iter().filter(|(e, _)| e == "overridden").collect();
    assert_eq!(
        all[0].1,
        "root overrode waiting before step `second`: gate `prod` blocked: command: incident open: hotfix for the incident itself"
    );
    // Nothing left to override.
    let (status, _) = s.post(&format!("/api/v1/executions/{id}/override"), &admin, json!({"reason": "again"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    s.stop().await;
}

/// Scrapes `/metrics` until every needle is there (the recorder is process-wide and other
/// tests' servers set the gauges too, so one scrape may see theirs).
async fn scrape_until(s: &Server, needles: &[&str]) -> String {
    let start = std::time::Instant::now();
    loop {
        let text = reqwest::get(&s.metrics_url).await.unwrap().text().await.unwrap();
        let missing: Vec<&&str> = needles.iter().filter(|n| !text.contains(**n)).collect();
        if missing.is_empty() {
            return text;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "missing {missing:?} in\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_checks_and_waits_show_in_metrics() {
    let (s, incident) = gated_server_with(|c| {
        let prod = c.gates.remove("prod").unwrap();
        c.gates.insert("metered".into(), prod);
    })
    .await;
    let op = s.token("olga", &["operator", "author"]).await;
    crate::gates::set_incident(&incident, "incident open");
    let book = runbook("watched", "1.0.0", "", "", "    - id: health\n      gate: { use: metered, poll: 200ms }\n");
    s.publish(&op, &book).await;
    let (_, sub) = s.post("/api/v1/runbooks/watched/executions", &op, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    s.wait_for(&id, &op, |d| d["status"] == "waiting").await;
    scrape_until(
        &s,
        &[
            "opsbook_waiting_gates 1",
            "opsbook_waiting_approvals 0",
            "opsbook_gate_blocked{gate=\"metered\"} 1",
            "opsbook_gate_checks_total{gate=\"metered\",verdict=\"blocked\"}",
            "opsbook_gate_source_duration_seconds_bucket{type=\"command\",verdict=\"blocked\",le=\"0.001\"}",
        ],
    )
    .await;
    std::fs::remove_file(&incident).unwrap();
    s.wait_for(&id, &op, |d| d["status"] == "succeeded").await;
    scrape_until(
        &s,
        &[
            "opsbook_waiting_gates 0",
            "opsbook_gate_blocked{gate=\"metered\"} 0",
            "opsbook_gate_checks_total{gate=\"metered\",verdict=\"clear\"} 1",
            // Every series explains itself.
            "# HELP opsbook_gate_checks_total Gate checks by gate and verdict\n",
            "# HELP opsbook_waiting_gates Executions waiting on a health gate (including one being polled)\n",
        ],
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_gates_file_is_picked_up_and_a_broken_one_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gates.yaml");
    let one = "gates:\n  prod:\n    sources:\n      - command: { run: \"exit 0\" }\n";
    std::fs::write(&file, one).unwrap();
    let gates = opsbook_gate::read_gates_file(&file).unwrap().gates;
    let s = Server::start_in(dir, |c| {
        c.gates_file = Some(file.clone());
        c.gates = gates;
    })
    .await;
    let viewer = s.token("vera", &["viewer"]).await;
    assert_eq!(s.get("/api/v1/gates/staging", &viewer).await.0, StatusCode::NOT_FOUND);

    // A new gate appears without a restart, and its command runs beside the file.
    std::fs::write(s.dir.path().join("check.sh"), "echo staging frozen; exit 1\n").unwrap();
    std::fs::write(&file, format!("{one}  staging:\n    sources:\n      - command: {{ run: \"sh check.sh\" }}\n"))
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let verdict = loop {
        let (status, v) = s.get("/api/v1/gates/staging", &viewer).await;
        if status == StatusCode::OK {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "the edited gates file was not picked up");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(verdict["verdict"], "blocked", "{verdict}");
    assert_eq!(verdict["records"][0]["title"], "staging frozen", "{verdict}");

    // A broken edit keeps the gates in use.
    scrape_until(&s, &["opsbook_gates_reloads_total{result=\"ok\"}"]).await;
    std::fs::write(&file, "gates:\n  staging:\n    sources: [ { statuspag: {} } ]\n").unwrap();
    scrape_until(&s, &["opsbook_gates_reloads_total{result=\"error\"} 1"]).await;
    assert_eq!(s.get("/api/v1/gates/staging", &viewer).await.0, StatusCode::OK);
    assert_eq!(s.get("/api/v1/gates/prod", &viewer).await.0, StatusCode::OK);

    // Nor may an edit drop a gate a runbook still uses: its runs would fail.
    let op = s.token("olga", &["author"]).await;
    let uses = runbook("stage-deploy", "1.0.0", "", "", "    - id: health\n      gate: { use: staging }\n");
    assert_eq!(s.publish(&op, &uses).await.0, StatusCode::CREATED);
    std::fs::write(&file, one).unwrap();
    scrape_until(&s, &["opsbook_gates_reloads_total{result=\"error\"} 2"]).await;
    assert_eq!(s.get("/api/v1/gates/staging", &viewer).await.0, StatusCode::OK);

    // Once nothing uses it, it goes, and its gauge says it blocks nothing (an alert clears).
    scrape_until(&s, &["opsbook_gate_blocked{gate=\"staging\"} 1"]).await;
    for status in ["deprecated", "archived"] {
        let change = json!({ "status": status, "reason": "replaced" });
        assert_eq!(s.post("/api/v1/runbooks/stage-deploy/lifecycle", &op, change).await.0, StatusCode::OK);
    }
    std::fs::write(&file, format!("{one}\n")).unwrap();
    scrape_until(&s, &["opsbook_gate_blocked{gate=\"staging\"} 0"]).await;
    assert_eq!(s.get("/api/v1/gates/staging", &viewer).await.0, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// A server with a single worker and these gates (YAML).
async fn one_worker(dir: tempfile::TempDir, gates: &str) -> Server {
    Server::start_in(dir, |c| {
        c.workers = 1;
        c.gates = opsbook_core::gate::GatesFile::parse(gates).unwrap().gates;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_gates_never_hold_workers_and_cancel_and_override_reach_a_poll() {
    let dir = tempfile::tempdir().unwrap();
    let incident = dir.path().join("incident");
    // Every check of this gate takes a second: a poll is nearly always under way.
    let gates = format!(
        "gates:\n  slow:\n    sources:\n      - command: {{ run: \"sleep 1; test ! -e {} || {{ echo incident open; exit 1; }}\" }}\n",
        incident.display()
    );
    let s = one_worker(dir, &gates).await;
    let op = s.token("olga", &["operator", "author", "approver"]).await;
    let admin = s.token("root", &["admin"]).await;
    crate::gates::set_incident(&incident, "");
    let gated = "    - id: health\n      gate: { use: slow, poll: 100ms }\n    - id: ship\n      run: echo shipped\n";
    s.publish(&op, &runbook("slowgated", "1.0.0", "", "", gated)).await;
    s.publish(&op, &runbook("plain", "1.0.0", "", "", "    - id: a\n      run: \"true\"\n")).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, sub) = s.post("/api/v1/runbooks/slowgated/executions", &op, json!({})).await;
        ids.push(sub["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        s.wait_for(id, &op, |d| d["status"] == "waiting").await;
    }

    // Three executions polling a slow gate, one worker: other work still runs at once.
    let (_, plain) = s.post("/api/v1/runbooks/plain/executions", &op, json!({})).await;
    let plain = s.settled(plain["id"].as_str().unwrap(), &op).await;
    assert_eq!(plain["status"], "succeeded");
    assert_queued_briefly(&plain, 3000);
    // Being polled, they still say what they do: wait.
    let (_, listed) = s.get("/api/v1/executions?status=waiting", &op).await;
    let waiting: Vec<&str> = listed["items"].as_array().unwrap().iter().filter_map(|e| e["id"].as_str()).collect();
    assert!(ids.iter().all(|id| waiting.contains(&id.as_str())), "{listed}");

    // Approving an execution that waits on a gate is a conflict, not a server error.
    let (status, body) =
        s.post(&format!("/api/v1/executions/{}/approvals", ids[0]), &op, json!({"decision": "approve"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("waits on a gate at step `health`, not for approval"),
        "{body}"
    );

    // A body that is not the JSON asked for answers in the API's error shape.
    let path = format!("/api/v1/executions/{}/override", ids[0]);
    let (status, body) = s.post(&path, &admin, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("request body: "), "{body}");

    // Cancel and override land whether or not a poll is under way at that moment.
    for id in &ids[..2] {
        let (status, _) = s.post(&format!("/api/v1/executions/{id}/cancel"), &op, json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    for id in &ids[..2] {
        let done = s.wait_for(id, &op, |d| d["status"] == "cancelled").await;
        assert_eq!(done["steps"][0]["status"], "cancelled", "nothing is left waiting: {done}");
        assert_eq!(done["steps"][1]["status"], "pending", "{done}");
    }
    let (status, doc) =
        s.post(&format!("/api/v1/executions/{}/override", ids[2]), &admin, json!({"reason": "hotfix"})).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    let done = s.wait_for(&ids[2], &op, |d| d["status"] == "succeeded").await;
    assert_eq!(done["steps"][0]["outputs"]["override_reason"], "hotfix");
    assert!(done["steps"][0]["error"].is_null(), "{done}");
    let (_, logs) = s.get(&format!("/api/v1/executions/{}/logs", ids[2]), &op).await;
    assert!(
        logs["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["line"] == "gate overridden by root: hotfix (was: gate `slow` blocked: command: incident open)"),
        "{logs}"
    );

    // An override sent during the very first check (on a worker) waits for it.
    let (_, sub) = s.post("/api/v1/runbooks/slowgated/executions", &op, json!({})).await;
    let fresh = sub["id"].as_str().unwrap().to_string();
    s.wait_for(&fresh, &op, |d| d["steps"][0]["status"] == "running").await;
    let (status, doc) = s.post(&format!("/api/v1/executions/{fresh}/override"), &admin, json!({"reason": "now"})).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    s.wait_for(&fresh, &op, |d| d["status"] == "succeeded").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_a_runbook_that_names_an_unknown_gate_is_refused() {
    let (s, _) = gated_server().await;
    let op = s.token("olga", &["operator", "author"]).await;
    let book = runbook("typo", "1.0.0", "", "", "    - id: health\n      gate: { use: prdo }\n");
    let (status, body) = s.publish(&op, &book).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error"]["message"],
        "invalid runbook: step `health` uses gate `prdo`, which this server does not define (its gates_file) (did you mean `prod`?)"
    );
    assert_eq!(body["error"]["details"][0]["message"], "step `health`: no gate `prdo` on this server");
    assert!(body["error"]["details"][0]["line"].as_u64().is_some(), "{body}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_check_that_is_slow_is_handed_from_the_worker_to_the_gate_pool() {
    let dir = tempfile::tempdir().unwrap();
    // One check takes 8 seconds, well beyond what a worker gives a check (2 s).
    let gates = "gates:\n  sluggish:\n    sources:\n      - command: { run: \"sleep 8; echo still under maintenance; exit 1\" }\n";
    let s = one_worker(dir, gates).await;
    let op = s.token("olga", &["operator", "author"]).await;
    let book = "    - id: health\n      gate: { use: sluggish, poll: 1s }\n    - id: ship\n      run: echo shipped\n";
    s.publish(&op, &runbook("sluggish", "1.0.0", "", "", book)).await;
    s.publish(&op, &runbook("plain", "1.0.0", "", "", "    - id: a\n      run: \"true\"\n")).await;
    // Asked over the API with a CI job's own bound, each source gets that long.
    let started = std::time::Instant::now();
    let (status, verdict) = s.get("/api/v1/gates/sluggish?timeout=1s", &op).await;
    assert_eq!(status, StatusCode::OK, "{verdict}");
    assert!(verdict["sources"][0]["error"].as_str().unwrap().ends_with("did not finish within 1s"), "{verdict}");
    assert!(started.elapsed() < std::time::Duration::from_secs(7), "not the source's 8 s");
    let (status, bad) = s.get("/api/v1/gates/sluggish?timeout=soon", &op).await;
    assert_eq!((status, bad["error"]["details"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("timeout")));
    let (_, gated) = s.post("/api/v1/runbooks/sluggish/executions", &op, json!({})).await;
    let gated = gated["id"].as_str().unwrap().to_string();
    s.wait_for(&gated, &op, |d| d["steps"][0]["status"] == "running").await;
    let (_, plain) = s.post("/api/v1/runbooks/plain/executions", &op, json!({})).await;
    let plain = s.settled(plain["id"].as_str().unwrap(), &op).await;
    assert_eq!(plain["status"], "succeeded");
    assert_queued_briefly(&plain, 5000);
    // The check goes on in the gate pool and its verdict lands as usual.
    let doc = s.wait_for(&gated, &op, |d| d["steps"][0]["outputs"]["records"].is_array()).await;
    assert_eq!(doc["status"], "waiting");
    assert_eq!(doc["steps"][0]["error"], "gate `sluggish` blocked: command: still under maintenance");
    let (status, _) = s.post(&format!("/api/v1/executions/{gated}/cancel"), &op, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    s.wait_for(&gated, &op, |d| d["status"] == "cancelled").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_whose_holder_died_is_let_go_and_polled_again() {
    use opsbook_store::{ServerStore, Store};
    let (s, incident) = gated_server().await;
    let op = s.token("olga", &["operator", "author"]).await;
    crate::gates::set_incident(&incident, "incident open");
    let book = "    - id: health\n      gate: { use: prod, poll: 100ms }\n    - id: ship\n      run: echo shipped\n";
    s.publish(&op, &runbook("deploy", "1.0.0", "", "", book)).await;
    let (_, sub) = s.post("/api/v1/runbooks/deploy/executions", &op, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    s.wait_for(&id, &op, |d| d["status"] == "waiting").await;
    // Someone (a poll on a server that then died) holds it, and its lease runs out.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.store.claim_waiting(&id, "server:gone:1", 1).await.unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "never free to hold");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    s.state.engine.recover().await.unwrap();
    let exec = s.store.execution(&id).await.unwrap();
    // Let go (this server's own gate poll may hold it again already).
    assert_eq!(exec.status.as_str(), "waiting");
    assert_ne!(exec.owner.as_deref(), Some("server:gone:1"), "the dead holder's hold was let go");
    // Polled again: it goes on once the incident closes.
    std::fs::remove_file(&incident).unwrap();
    s.wait_for(&id, &op, |d| d["status"] == "succeeded").await;
    s.stop().await;
}

/// The execution waited in the queue less than `ms` (its own times: a loaded machine
/// slows the test's requests, not what is measured).
fn assert_queued_briefly(doc: &Value, ms: i64) {
    let waited = at_ms(&doc["started_at"]) - at_ms(&doc["created_at"]);
    assert!(waited < ms, "queued {waited} ms: {doc}");
}
