//! The registry, executions, approvals, live events and the audit trail.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Server, runbook};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_versions_are_immutable_and_increasing() {
    let s = Server::start().await;
    let author = s.token("ann", &["author"]).await;
    let v1 = runbook(
        "web",
        "1.0.0",
        "  title: Web deploy\n  tags: [web, prod]\n",
        "",
        "    - id: build\n      name: Build the bundle\n      run: \"true\"\n",
    );
    let (status, doc) = s.publish(&author, &v1).await;
    assert_eq!((status, doc["result"].as_str()), (StatusCode::CREATED, Some("created")), "{doc}");
    let (status, doc) = s.publish(&author, &v1).await;
    assert_eq!((status, doc["result"].as_str()), (StatusCode::OK, Some("unchanged")));
    let changed_same_version = v1.replace("\"true\"", "\"false\"");
    let (status, doc) = s.publish(&author, &changed_same_version).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        doc["error"]["message"],
        "web 1.0.0 is already published with different content; published versions never change, so bump the version"
    );
    let v0 = runbook("web", "0.9.0", "", "", "    - id: a\n      run: \"true\"\n");
    let (status, doc) = s.publish(&author, &v0).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(doc["error"]["message"], "web 0.9.0 is not newer than the published 1.0.0; versions must increase");
    let v2 = changed_same_version.replace("1.0.0", "1.1.0");
    assert_eq!(s.publish(&author, &v2).await.1["result"], "updated");

    let (status, doc) = s.publish(&author, "apiVersion: opsbook/v1\nkind: Runbook\nmetadata:\n  nmae: x\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(doc["error"]["code"], "invalid_runbook");
    assert_eq!(doc["error"]["details"][0]["line"], 4);
    assert_eq!(doc["error"]["details"][0]["column"], 3);
    assert!(
        doc["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown field `nmae` (did you mean `name`?)")
    );

    let (_, versions) = s.get("/api/v1/runbooks/web/versions", &author).await;
    let listed: Vec<&str> =
        versions["items"].as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap()).collect();
    assert_eq!(listed, vec!["1.1.0", "1.0.0"]);
    let (_, one) = s.get("/api/v1/runbooks/web/versions/1.0.0", &author).await;
    assert_eq!(one["content"], v1);
    let (status, diff) = s.call("GET", "/api/v1/runbooks/web/diff?from=1.0.0&to=1.1.0", Some(&author), None).await;
    assert_eq!(status, StatusCode::OK);
    let diff = diff.as_str().unwrap();
    assert!(diff.contains("-  version: 1.0.0\n+  version: 1.1.0\n"), "{diff}");
    assert!(diff.contains("-      run: \"true\"\n+      run: \"false\"\n"), "{diff}");

    // Search over name, title, tags and step names.
    for (q, hits) in [("bundle", 1), ("web", 1), ("prod", 1), ("nothing", 0), ("\"unbalanced", 0)] {
        let (status, found) = s.get(&format!("/api/v1/runbooks?q={}", q.replace('"', "%22")), &author).await;
        assert_eq!(status, StatusCode::OK, "{q}: {found}");
        assert_eq!(found["items"].as_array().unwrap().len(), hits, "{q}");
    }
    assert_eq!(s.get("/api/v1/runbooks?tag=web&type=deployment", &author).await.1["items"][0]["name"], "web");
    assert_eq!(s.get("/api/v1/runbooks?tag=nope", &author).await.1["items"], json!([]));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_rules_and_who_when_why() {
    let s = Server::start().await;
    let author = s.token("ann", &["author", "operator"]).await;
    let draft = runbook("job", "1.0.0", "  status: draft\n", "", "    - id: a\n      run: \"true\"\n");
    s.publish(&author, &draft).await;
    let (status, doc) = s.post("/api/v1/runbooks/job/executions", &author, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(doc["error"]["message"], "runbook `job` is draft; only active and deprecated runbooks run");
    let go = |to: &str, reason: &str| json!({ "status": to, "reason": reason });
    assert_eq!(s.post("/api/v1/runbooks/job/lifecycle", &author, go("deprecated", "x")).await.0, StatusCode::CONFLICT);
    assert_eq!(
        s.post("/api/v1/runbooks/job/lifecycle", &author, json!({"status": "active"})).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(s.post("/api/v1/runbooks/job/lifecycle", &author, go("active", "reviewed")).await.0, StatusCode::OK);
    let (status, active) = s.post("/api/v1/runbooks/job/executions", &author, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(active.get("warnings").is_none(), "{active}");
    assert_eq!(
        s.post("/api/v1/runbooks/job/lifecycle", &author, go("deprecated", "replaced by job2")).await.0,
        StatusCode::OK
    );
    let (status, deprecated) = s.post("/api/v1/runbooks/job/executions", &author, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(deprecated["warnings"], json!(["runbook `job` is deprecated; prefer its replacement"]));
    assert_eq!(s.post("/api/v1/runbooks/job/lifecycle", &author, go("archived", "retired")).await.0, StatusCode::OK);
    assert_eq!(s.post("/api/v1/runbooks/job/executions", &author, json!({})).await.0, StatusCode::CONFLICT);
    let (_, doc) = s.get("/api/v1/runbooks/job", &author).await;
    assert_eq!(doc["status"], "archived");
    let trail: Vec<(String, String, String)> = doc["lifecycle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["to_status"].as_str().unwrap().into(),
                e["actor"].as_str().unwrap().into(),
                e["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        trail,
        vec![
            ("draft".into(), "ann".into(), "first published".into()),
            ("active".into(), "ann".into(), "reviewed".into()),
            ("deprecated".into(), "ann".into(), "replaced by job2".into()),
            ("archived".into(), "ann".into(), "retired".into()),
        ]
    );
    // Archived runbooks stay readable.
    assert_eq!(s.get("/api/v1/runbooks/job/versions/1.0.0", &author).await.0, StatusCode::OK);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_validate_run_and_page() {
    let s = Server::start().await;
    let op = s.token("olga", &["operator", "author"]).await;
    let book = runbook(
        "greet",
        "1.0.0",
        "",
        "    who: { type: string, required: true, pattern: \"[a-z]+\" }\n    times: { type: integer, default: 1, max: 3 }\n    pw: { type: secret }\n",
        "    - id: hello\n      run: echo hello {{ params.who }} {{ params.times }} {{ params.pw }}\n",
    );
    s.publish(&op, &book).await;
    let (status, doc) =
        s.post("/api/v1/runbooks/greet/executions", &op, json!({"params": {"who": "B0b", "times": 9, "x": 1}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(doc["error"]["code"], "invalid_parameters");
    assert_eq!(
        doc["error"]["details"],
        json!([
            {"param": "x", "message": "unknown parameter; known: who, times, pw"},
            {"param": "who", "message": "\"B0b\" does not match the pattern [a-z]+"},
            {"param": "times", "message": "9 is greater than the maximum 3"},
        ])
    );
    assert_eq!(s.get("/api/v1/executions", &op).await.1["items"], json!([]), "nothing was queued");

    let body = json!({"params": {"who": "bob", "times": 2, "pw": "s3cr3t-pw"}});
    let (status, sub) = s.post("/api/v1/runbooks/greet/executions", &op, body.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = sub["id"].as_str().unwrap().to_string();
    let doc = s.settled(&id, &op).await;
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(doc["params"], json!({"who": "bob", "times": 2, "pw": "***"}));
    let (_, logs) = s.get(&format!("/api/v1/executions/{id}/logs"), &op).await;
    assert_eq!(logs["lines"][0]["line"], "hello bob 2 ***");

    // Idempotency-Key: a retried submission returns the first execution.
    let key_req = |key: &str| {
        reqwest::Client::new()
            .post(format!("{}/api/v1/runbooks/greet/executions", s.url))
            .bearer_auth(&op)
            .header("Idempotency-Key", key)
            .json(&json!({"params": {"who": "kim"}}))
    };
    let first: serde_json::Value = key_req("abc").send().await.unwrap().json().await.unwrap();
    let again: serde_json::Value = key_req("abc").send().await.unwrap().json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    assert_eq!(again["repeated"], true);

    // Keyset pagination, newest first.
    for _ in 0..3 {
        s.post("/api/v1/runbooks/greet/executions", &op, json!({"params": {"who": "amy"}})).await;
    }
    let (_, page1) = s.get("/api/v1/executions?runbook=greet&limit=2", &op).await;
    let (_, page2) = s
        .get(
            &format!("/api/v1/executions?runbook=greet&limit=2&cursor={}", page1["next_cursor"].as_str().unwrap()),
            &op,
        )
        .await;
    let (_, page3) = s
        .get(
            &format!("/api/v1/executions?runbook=greet&limit=2&cursor={}", page2["next_cursor"].as_str().unwrap()),
            &op,
        )
        .await;
    let ids: Vec<String> = [&page1, &page2, &page3]
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(ids.len(), 5);
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first, no repeats");
    assert_eq!(s.get("/api/v1/executions?actor=nobody", &op).await.1["items"], json!([]));
    for (query, param) in [("status=finished", "status"), ("since=yesterday", "since"), ("cursor=x", "cursor")] {
        let (status, doc) = s.get(&format!("/api/v1/executions?{query}"), &op).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}");
        assert_eq!(doc["error"]["details"]["param"], param, "the refusal names the parameter: {doc}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_follow_the_two_person_rule() {
    let s = Server::start().await;
    let requester = s.token("rita", &["operator", "author", "approver"]).await;
    let other = s.token("sam", &["approver", "release-manager"]).await;
    let outsider = s.token("otto", &["approver"]).await;
    let book = runbook(
        "release",
        "1.0.0",
        "",
        "",
        "    - id: prep\n      run: touch prepped\n      rollback:\n        run: touch undone\n    - id: gate\n      approval: { approvers: [\"role:release-manager\"], message: ship? }\n    - id: ship\n      run: touch shipped\n",
    );
    s.publish(&requester, &book).await;
    let (_, sub) = s.post("/api/v1/runbooks/release/executions", &requester, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    s.wait_for(&id, &requester, |d| d["status"] == "waiting").await;
    let approve = json!({"decision": "approve", "comment": "lgtm"});
    let (status, doc) = s.post(&format!("/api/v1/executions/{id}/approvals"), &requester, approve.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(doc["error"]["message"], "the requester cannot approve their own execution");
    let (status, doc) = s.post(&format!("/api/v1/executions/{id}/approvals"), &outsider, approve.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(doc["error"]["message"], "only role:release-manager may decide on step `gate`");
    let (status, doc) = s.post(&format!("/api/v1/executions/{id}/approvals"), &other, approve.clone()).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["settled"], true);
    let done = s.settled(&id, &requester).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["steps"][1]["outputs"]["approved_by"], "sam");
    assert!(s.dir.path().join("shipped").exists());

    // A rejection fails the execution and rolls back.
    std::fs::remove_file(s.dir.path().join("shipped")).unwrap();
    let (_, sub) = s.post("/api/v1/runbooks/release/executions", &requester, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    s.wait_for(&id, &requester, |d| d["status"] == "waiting").await;
    s.post(
        &format!("/api/v1/executions/{id}/approvals"),
        &other,
        json!({"decision": "reject", "comment": "not today"}),
    )
    .await;
    let done = s.settled(&id, &requester).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"], "step `gate` failed: rejected by sam: not today");
    assert!(s.dir.path().join("undone").exists());
    assert!(!s.dir.path().join("shipped").exists());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_resume_after_the_last_event_id() {
    let s = Server::start().await;
    let op = s.token("olga", &["operator", "author"]).await;
    let book = runbook("count", "1.0.0", "", "", "    - id: a\n      run: for i in 1 2 3 4 5; do echo line $i; done\n");
    s.publish(&op, &book).await;
    let (_, sub) = s.post("/api/v1/runbooks/count/executions", &op, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    s.settled(&id, &op).await;
    let events = |last: Option<&str>| {
        let mut req = reqwest::Client::new().get(format!("{}/api/v1/executions/{id}/events", s.url)).bearer_auth(&op);
        if let Some(l) = last {
            req = req.header("Last-Event-ID", l);
        }
        req
    };
    let all = events(None).send().await.unwrap().text().await.unwrap();
    let lines: Vec<&str> = all.lines().filter(|l| l.starts_with("data: {\"seq\"")).collect();
    assert_eq!(lines.len(), 5, "{all}");
    assert!(all.contains("event: status\n"), "{all}");
    assert!(all.contains("\"status\":\"succeeded\""), "{all}");
    let rest = events(Some("3")).send().await.unwrap().text().await.unwrap();
    let resumed: Vec<&str> = rest.lines().filter(|l| l.starts_with("data: {\"seq\"")).collect();
    assert_eq!(resumed.len(), 2, "{rest}");
    assert!(resumed[0].contains("\"line\":\"line 4\""), "{rest}");
    // An id this stream never sent is refused, not taken as "from the start".
    let bad = events(Some("abc")).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let doc: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(doc["error"]["details"]["header"], "Last-Event-ID", "{doc}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_trail_records_and_detects_tampering() {
    let s = Server::start().await;
    let admin = s.token("root", &["admin"]).await;
    let book = runbook("a", "1.0.0", "", "", "    - id: a\n      run: \"true\"\n");
    s.publish(&admin, &book).await;
    s.post("/api/v1/runbooks/a/executions", &admin, json!({})).await;
    s.call("GET", "/api/v1/runbooks", Some("obk_bad"), None).await;
    let (_, audit) = s.get("/api/v1/audit", &admin).await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["runbook.publish", "execution.submit", "auth.failed"]);
    use opsbook_store::ServerStore;
    assert_eq!(s.store.verify_audit().await.unwrap(), Ok(3));
    s.sql("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2").await;
    assert_eq!(
        s.store.verify_audit().await.unwrap(),
        Err("record 2 was edited: its content no longer matches its hash".into())
    );
    s.sql("UPDATE audit_log SET actor = 'root' WHERE seq = 2").await;
    s.sql("DELETE FROM audit_log WHERE seq = 2").await;
    assert_eq!(s.store.verify_audit().await.unwrap(), Err("record 2 is missing (the next record is 3)".into()));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_analytics() {
    let s = Server::start().await;
    let op = s.token("olga", &["operator", "author"]).await;
    let book = runbook(
        "metered",
        "1.0.0",
        "  type: incident_response\n  review: { every: 30d, last_reviewed: 2020-01-01 }\n",
        "    fail: { type: boolean, default: false }\n",
        "    - id: first\n      run: \"true\"\n      rollback:\n        run: \"true\"\n    - id: second\n      run: test {{ params.fail }} = false\n",
    )
    .replace("  type: deployment\n", "");
    let (status, doc) = s.publish(&op, &book).await;
    assert_eq!(status, StatusCode::CREATED, "{doc}");
    for fail in [false, true, false] {
        let (_, sub) = s.post("/api/v1/runbooks/metered/executions", &op, json!({"params": {"fail": fail}})).await;
        s.settled(sub["id"].as_str().unwrap(), &op).await;
    }
    let text = reqwest::get(&s.metrics_url).await.unwrap().text().await.unwrap();
    for needle in [
        "opsbook_executions_finished_total{runbook=\"metered\",status=\"succeeded\"} 2",
        "opsbook_executions_finished_total{runbook=\"metered\",status=\"failed\"} 1",
        "opsbook_execution_duration_seconds_bucket{runbook=\"metered\"",
        "opsbook_step_duration_seconds_bucket{runbook=\"metered\",step=\"first\",status=\"succeeded\"",
        "opsbook_queue_depth 0",
        "opsbook_waiting_approvals 0",
        "opsbook_executions{status=\"succeeded\"} 2",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    let (status, a) = s.get("/api/v1/analytics?runbook=metered", &op).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    let m = &a["runbooks"][0];
    assert_eq!(m["runbook"], "metered");
    assert_eq!(m["runs"], 3);
    assert_eq!(m["success_rate"], 0.667);
    assert_eq!(m["rollback_rate"], 0.333);
    assert_eq!(m["distinct_users"], 1);
    assert!(m["p95_duration_ms"].as_i64().unwrap() >= m["p50_duration_ms"].as_i64().unwrap());
    assert!(m["mttr_ms"].is_number(), "incident_response runbooks get a time to recovery: {m}");
    assert_eq!(a["review_overdue"][0]["runbook"], "metered");
    assert_eq!(a["review_overdue"][0]["due"], "2020-01-31");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_approval_times_out_without_holding_a_worker() {
    let s = Server::start_with(|c| c.workers = 1).await;
    let op = s.token("olga", &["operator", "author"]).await;
    let book = runbook(
        "waits",
        "1.0.0",
        "",
        "",
        "    - id: a\n      run: \"true\"\n      rollback:\n        run: touch undone\n    - id: wait\n      approval: { timeout: 5s }\n",
    );
    s.publish(&op, &book).await;
    let (_, sub) = s.post("/api/v1/runbooks/waits/executions", &op, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    s.wait_for(&id, &op, |d| d["status"] == "waiting").await;
    // The only worker is free: another execution runs while the first waits.
    s.publish(&op, &runbook("quick", "1.0.0", "", "", "    - id: a\n      run: \"true\"\n")).await;
    let (_, other) = s.post("/api/v1/runbooks/quick/executions", &op, json!({})).await;
    assert_eq!(s.settled(other["id"].as_str().unwrap(), &op).await["status"], "succeeded");
    // The reaper requeues the expired wait; the step then fails as timed out and rolls back.
    let done = s.wait_for(&id, &op, |d| d["status"] == "failed").await;
    assert_eq!(done["steps"][1]["status"], "timed_out");
    assert_eq!(done["steps"][1]["error"], "no decision within 5s");
    assert!(s.dir.path().join("undone").exists());
    // Its duration is the whole execution's, the wait included, not its last stretch.
    let text = reqwest::get(&s.metrics_url).await.unwrap().text().await.unwrap();
    let sum = text
        .lines()
        .find_map(|l| l.strip_prefix("opsbook_execution_duration_seconds_sum{runbook=\"waits\"} "))
        .unwrap_or_else(|| panic!("no duration in\n{text}"));
    assert!(sum.parse::<f64>().unwrap() >= 5.0, "{sum}");
    s.stop().await;
}

/// A token is "used" only when a request with it is accepted: an expired or revoked
/// token, or a wrong secret with a real id, leaves `last_used_at` alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_are_not_marked_used() {
    use opsbook_store::ServerStore;
    let s = Server::start().await;
    let expired = opsbook_server::auth::generate("eve", vec!["viewer".into()], Some(opsbook_store::now_ms() - 1));
    s.store.create_token(&expired.record, &expired.hash).await.unwrap();
    let (status, _) = s.get("/api/v1/runbooks", &expired.secret).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let forged = format!("obk_{}_{}", expired.record.id, "0".repeat(64));
    let (status, _) = s.get("/api/v1/runbooks", &forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let used = |id: String| {
        let store = s.store.clone();
        async move { store.tokens().await.unwrap().into_iter().find(|t| t.id == id).unwrap().last_used_at }
    };
    assert_eq!(used(expired.record.id.clone()).await, None);
    let good = opsbook_server::auth::generate("val", vec!["viewer".into()], None);
    s.store.create_token(&good.record, &good.hash).await.unwrap();
    let (status, _) = s.get("/api/v1/runbooks", &good.secret).await;
    assert_eq!(status, StatusCode::OK);
    assert!(used(good.record.id.clone()).await.is_some());
    s.stop().await;
}

/// Identical keyed submissions racing each other: one execution per key, every request
/// answered with it, nothing left behind without steps, and every worker still working.
/// A key reused for another runbook is 422; an oversized key is 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_keys_are_claimed_atomically() {
    use opsbook_store::{ExecutionFilter, Store};
    let s = Server::start().await;
    let op = s.token("olga", &["operator", "author"]).await;
    s.publish(&op, &runbook("quick", "1.0.0", "", "", "    - id: a\n      run: \"true\"\n")).await;
    s.publish(&op, &runbook("other", "1.0.0", "", "", "    - id: a\n      run: \"true\"\n")).await;
    let http = reqwest::Client::new();
    let submit = |runbook: &str, key: String| {
        http.post(format!("{}/api/v1/runbooks/{runbook}/executions", s.url))
            .bearer_auth(&op)
            .header("Idempotency-Key", key)
            .json(&json!({}))
            .send()
    };
    for round in 0..40 {
        let key = format!("race-{round}");
        let answers = futures_util::future::join_all((0..8).map(|_| submit("quick", key.clone()))).await;
        let mut ids = std::collections::BTreeSet::new();
        for a in answers {
            let a = a.unwrap();
            assert_eq!(a.status(), StatusCode::ACCEPTED);
            ids.insert(a.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string());
        }
        assert_eq!(ids.len(), 1, "round {round}: {ids:?}");
    }
    let all = s.store.executions(&ExecutionFilter { limit: 1000, ..ExecutionFilter::default() }).await.unwrap();
    assert_eq!(all.len(), 40, "one execution per key");
    for e in &all {
        let done = s.settled(&e.id, &op).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(s.store.steps(&e.id).await.unwrap().len(), 1);
    }

    let (status, doc) = {
        let r = submit("other", "race-0".into()).await.unwrap();
        (r.status(), r.json::<serde_json::Value>().await.unwrap())
    };
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{doc}");
    assert!(doc["error"]["message"].as_str().unwrap().starts_with("this Idempotency-Key was used for runbook `quick`"));
    let r = submit("quick", "k".repeat(201)).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    s.stop().await;
}

/// An execution that cannot run (its step records are gone) fails with why; the worker
/// lives on and runs the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_execution_fails_and_the_worker_goes_on() {
    let s = Server::start_with(|c| c.workers = 1).await;
    let op = s.token("olga", &["operator", "author"]).await;
    s.publish(
        &op,
        &runbook("slow", "1.0.0", "", "", "    - id: a\n      run: while [ ! -e go ]; do sleep 0.05; done\n"),
    )
    .await;
    s.publish(&op, &runbook("quick", "1.0.0", "", "", "    - id: a\n      run: \"true\"\n")).await;
    // The only worker is busy while the next execution loses its steps.
    let (_, first) = s.post("/api/v1/runbooks/slow/executions", &op, json!({})).await;
    let (_, broken) = s.post("/api/v1/runbooks/quick/executions", &op, json!({})).await;
    let broken = broken["id"].as_str().unwrap().to_string();
    s.sql(&format!("DELETE FROM execution_steps WHERE execution_id = '{broken}'")).await;
    let (_, next) = s.post("/api/v1/runbooks/quick/executions", &op, json!({})).await;
    std::fs::write(s.dir.path().join("go"), "").unwrap();
    let failed = s.settled(&broken, &op).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("has 0 step records for a runbook of 1 steps"), "{failed}");
    assert_eq!(s.settled(first["id"].as_str().unwrap(), &op).await["status"], "succeeded");
    assert_eq!(s.settled(next["id"].as_str().unwrap(), &op).await["status"], "succeeded");
    s.stop().await;
}

/// Cancelling a waiting execution answers at once (202); a worker stops it and runs its
/// rollbacks, whatever the client does meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_a_waiting_execution_answers_at_once_and_a_worker_rolls_back() {
    let s = Server::start().await;
    let op = s.token("olga", &["operator", "author"]).await;
    let book = runbook(
        "slowundo",
        "1.0.0",
        "",
        "",
        "    - id: a\n      run: \"true\"\n      rollback:\n        run: while [ ! -e go ]; do sleep 0.05; done; touch undone\n    - id: gate\n      approval: {}\n",
    );
    s.publish(&op, &book).await;
    let (_, doc) = s.post("/api/v1/runbooks/slowundo/executions", &op, json!({})).await;
    let id = doc["id"].as_str().unwrap().to_string();
    s.wait_for(&id, &op, |d| d["status"] == "waiting").await;
    let (status, _) = s.post(&format!("/api/v1/executions/{id}/cancel"), &op, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(!s.dir.path().join("undone").exists(), "answered before the rollback ended");
    std::fs::write(s.dir.path().join("go"), "").unwrap();
    let done = s.settled(&id, &op).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(done["error"], "cancelled while waiting for approval");
    assert_eq!(done["rollback"]["status"], "succeeded", "{done}");
    assert!(s.dir.path().join("undone").exists());
    s.stop().await;
}

/// A rollback of a stopped execution is answered once it is on record as running, so a
/// client following it (`opsbook rollback`) sees it in progress rather than as it was,
/// and follows it to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_is_answered_once_it_is_on_record_as_running() {
    let s = Server::start().await;
    let op = s.token("olga", &["operator", "author"]).await;
    let steps = "    - id: a\n      run: \"true\"\n      rollback:\n        run: while [ ! -e go ]; do sleep 0.05; done; touch undone\n    - id: b\n      run: exit 3\n";
    let book = runbook("undo", "1.0.0", "", "", steps).replace("spec:\n", "spec:\n  on_failure: stop\n");
    s.publish(&op, &book).await;
    let (_, doc) = s.post("/api/v1/runbooks/undo/executions", &op, json!({})).await;
    let id = doc["id"].as_str().unwrap().to_string();
    let failed = s.settled(&id, &op).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["rollback"]["steps"].as_array().unwrap().is_empty(), "{failed}");
    let (status, answer) = s.post(&format!("/api/v1/executions/{id}/rollback"), &op, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let (_, now) = s.get(&format!("/api/v1/executions/{id}"), &op).await;
    assert_eq!(now["status"], "failed", "the execution's own status stays: {now}");
    assert_eq!(now["rollback"]["steps"][0]["id"], "a", "{now}");
    assert_eq!(now["rollback"]["steps"][0]["status"], "running", "{now}");
    let typed: opsbook_api::ExecutionDoc = serde_json::from_value(now).unwrap();
    assert!(typed.in_progress(), "a running rollback is progress");
    assert!(!s.dir.path().join("undone").exists());
    std::fs::write(s.dir.path().join("go"), "").unwrap();
    let done = s.wait_for(&id, &op, |d| d["rollback"]["status"] == "succeeded").await;
    let typed: opsbook_api::ExecutionDoc = serde_json::from_value(done).unwrap();
    assert!(!typed.in_progress());
    assert!(s.dir.path().join("undone").exists());
    s.stop().await;
}

/// Every time in every answer is RFC 3339 in UTC (`…Z`), whatever it is the time of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_time_is_rfc3339_utc() {
    let s = Server::start().await;
    let admin = s.token("ada", &["admin"]).await;
    let book = runbook("timed", "1.0.0", "", "", "    - id: a\n      run: echo hi\n")
        .replace("spec:\n", "spec:\n  schedules:\n    - cron: \"0 3 * * *\"\n");
    s.publish(&admin, &book).await;
    let (_, sub) = s.post("/api/v1/runbooks/timed/executions", &admin, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    s.settled(&id, &admin).await;
    let mut seen = 0;
    for path in [
        "/api/v1/runbooks".to_string(),
        "/api/v1/runbooks/timed".into(),
        "/api/v1/runbooks/timed/versions".into(),
        "/api/v1/schedules".into(),
        "/api/v1/tokens".into(),
        "/api/v1/audit".into(),
        "/api/v1/executions".into(),
        format!("/api/v1/executions/{id}"),
        format!("/api/v1/executions/{id}/logs"),
    ] {
        let (status, doc) = s.get(&path, &admin).await;
        assert_eq!(status, StatusCode::OK, "{path}: {doc}");
        seen += check_times(&path, &doc);
    }
    assert!(seen >= 15, "only {seen} times seen");
    s.stop().await;
}

/// Checks every field named like a time in `v`; returns how many held a time.
fn check_times(path: &str, v: &serde_json::Value) -> usize {
    const TIMES: [&str; 12] = [
        "created_at",
        "updated_at",
        "published_at",
        "started_at",
        "finished_at",
        "at",
        "ts",
        "next_run_at",
        "last_run_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    ];
    match v {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                if TIMES.contains(&k.as_str()) && !v.is_null() {
                    let t = v.as_str().unwrap_or_else(|| panic!("{path}: `{k}` is {v}, not RFC 3339 text"));
                    assert!(t.ends_with('Z') && t.parse::<jiff::Timestamp>().is_ok(), "{path}: `{k}` = {t}");
                    // Milliseconds always written, so that times sort as text.
                    assert!(t.len() == 24 && &t[19..20] == ".", "{path}: `{k}` = {t}");
                    1
                } else {
                    check_times(path, v)
                }
            })
            .sum(),
        serde_json::Value::Array(a) => a.iter().map(|v| check_times(path, v)).sum(),
        _ => 0,
    }
}
