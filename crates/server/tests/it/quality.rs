//! Runbook quality on the server: manual steps confirmed through the API and the web
//! UI, ratings, reviews, the KPIs of analytics, the review-overdue metric and the
//! `review_due` notification.

use opsbook_server::notify::Kind;
use opsbook_store::ServerStore;
use reqwest::StatusCode;
use serde_json::json;

use crate::notify::{receiver, rule};
use crate::support::{Server, runbook};
use crate::ui::Page;

fn drain_book(dir: &std::path::Path) -> String {
    let m = dir.display();
    runbook(
        "drain",
        "1.0.0",
        "  status: active\n",
        "    node: { type: string, required: true }\n    fail: { type: boolean, default: false }\n",
        &format!(
            "    - id: prep\n      run: touch {m}/prepped\n      rollback:\n        run: touch {m}/unprepped\n    - id: cutover\n      manual:\n        instructions: \"Drain {{{{ params.node }}}} in the console\"\n        checklist: [\"Traffic to {{{{ params.node }}}} at 0\", \"Alarms quiet\"]\n      rollback:\n        manual: {{ instructions: \"Put {{{{ params.node }}}} back\" }}\n    - id: finish\n      run: test {{{{ params.fail }}}} = false && touch {m}/finished\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_steps_and_rollbacks_are_confirmed_through_the_api() {
    let s = Server::start().await;
    let op = s.token("olga", &["operator", "author"]).await;
    let viewer = s.token("vic", &["viewer"]).await;
    assert!(s.publish(&op, &drain_book(s.dir.path())).await.0.is_success());
    let (_, sub) = s.post("/api/v1/runbooks/drain/executions", &op, json!({"params": {"node": "web-1"}})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    let doc = s.wait_for(&id, &op, |d| d["status"] == "waiting").await;
    let message = doc["steps"][1]["message"].as_str().unwrap();
    assert_eq!(message, "Drain web-1 in the console\n- [ ] Traffic to web-1 at 0\n- [ ] Alarms quiet");

    let path = format!("/api/v1/executions/{id}/confirmations");
    let (status, _) = s.post(&path, &viewer, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "viewers cannot carry an execution on");
    let (status, body) = s.post(&path, &op, json!({"step": "finish"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("is not waiting for confirmation"), "{body}");
    let (status, body) = s.post(&path, &op, json!({"note": "drained", "extra": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "unknown fields are refused: {body}");
    let (status, done) = s.post(&path, &op, json!({"note": "drained"})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["checklist"], json!(["Traffic to web-1 at 0", "Alarms quiet"]));
    assert_eq!(
        (done["phase"].as_str(), done["by"].as_str(), done["next"].as_str()),
        (Some("step"), Some("olga"), Some("queued"))
    );
    let doc = s.settled(&id, &op).await;
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(doc["approvals"][0]["decision"], "confirmed");
    assert_eq!(doc["approvals"][0]["comment"], "drained");
    assert!(s.dir.path().join("finished").exists());
    let (status, _) = s.post(&path, &op, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "answered once");
    let audit = s
        .store
        .audit(&opsbook_store::AuditFilter {
            action: Some("execution.confirm".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].details["checklist"][1], "Alarms quiet");
    assert_eq!(audit[0].target, id);

    // The last step fails: the manual rollback waits for a person; the older rollback
    // runs after it is confirmed.
    let (_, sub) =
        s.post("/api/v1/runbooks/drain/executions", &op, json!({"params": {"node": "web-2", "fail": true}})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    s.wait_for(&id, &op, |d| d["status"] == "waiting").await;
    s.post(&format!("/api/v1/executions/{id}/confirmations"), &op, json!({})).await;
    // (The rollback's wait is written just before the execution's end: both, then.)
    let doc = s.wait_for(&id, &op, |d| d["rollback"]["status"] == "waiting" && d["status"] != "running").await;
    assert_eq!(doc["status"], "failed");
    assert!(!s.dir.path().join("unprepped").exists(), "prep's rollback waits for the manual one");
    let (status, done) = s
        .post(&format!("/api/v1/executions/{id}/confirmations"), &op, json!({"step": "cutover", "note": "back in"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!((done["phase"].as_str(), done["next"].as_str()), (Some("rollback"), Some("rolling_back")));
    let doc = s.wait_for(&id, &op, |d| d["rollback"]["status"] == "succeeded").await;
    assert!(s.dir.path().join("unprepped").exists(), "{doc}");
    let phases: Vec<&str> = doc["approvals"].as_array().unwrap().iter().map(|a| a["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["step", "rollback"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_confirms_every_checklist_item() {
    let s = Server::start().await;
    let op = s.token("olga", &["operator", "author"]).await;
    assert!(s.publish(&op, &drain_book(s.dir.path())).await.0.is_success());
    let (_, sub) = s.post("/api/v1/runbooks/drain/executions", &op, json!({"params": {"node": "web-3"}})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    s.wait_for(&id, &op, |d| d["status"] == "waiting").await;
    let page = Page::sign_in(&s, &op).await;
    let (_, html) = page.get(&format!("/executions/{id}")).await;
    assert!(
        html.contains("Step <code>cutover</code> is for a person to do:</strong> Drain web-3 in the console"),
        "{html}"
    );
    assert!(html.contains("<input type=\"checkbox\" name=\"item\" value=\"1\"> Traffic to web-3 at 0"), "{html}");
    let path = format!("/executions/{id}/confirm");
    let half = page.post(&path, &[("step", "cutover"), ("answer", "done"), ("item", "1")]).await;
    assert_eq!(half.status(), StatusCode::BAD_REQUEST);
    assert!(half.text().await.unwrap().contains("tick every checklist item of step `cutover` (1 of 2 ticked)"));
    let all = page
        .post(&path, &[("step", "cutover"), ("answer", "done"), ("item", "1"), ("item", "2"), ("note", "ok")])
        .await;
    assert_eq!(all.status(), StatusCode::SEE_OTHER);
    let doc = s.settled(&id, &op).await;
    assert_eq!(doc["status"], "succeeded");
    // Rated from the page once it ended.
    let (_, html) = page.get(&format!("/executions/{id}")).await;
    assert!(html.contains("id=\"feedback\""), "{html}");
    assert_eq!(
        page.post(&format!("/executions/{id}/feedback"), &[("rating", "4"), ("comment", "clear")]).await.status(),
        StatusCode::SEE_OTHER
    );
    let (_, html) = page.get(&format!("/executions/{id}")).await;
    assert!(html.contains("<strong>olga</strong> rated it 4/5 — “clear”"), "{html}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratings_and_reviews_feed_the_kpis() {
    let s = Server::start().await;
    let author = s.token("ann", &["author", "operator"]).await;
    let op = s.token("olga", &["operator"]).await;
    let meta = "  status: active\n  manual_duration: 10m\n  review: { every: 30d, last_reviewed: 2020-01-01 }\n";
    let book = runbook("ship", "1.0.0", meta, "", "    - id: a\n      run: \"true\"\n");
    assert!(s.publish(&author, &book).await.0.is_success());
    let idle = runbook("idle", "1.0.0", "  status: active\n", "", "    - id: a\n      run: \"true\"\n");
    assert!(s.publish(&author, &idle).await.0.is_success());
    let (_, sub) = s.post("/api/v1/runbooks/ship/executions", &op, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    assert_eq!(s.settled(&id, &op).await["status"], "succeeded");

    let path = format!("/api/v1/executions/{id}/feedback");
    let (status, body) = s.post(&path, &op, json!({"rating": 0})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["message"], "rating: 0 is not between 1 and 5");
    let (status, body) = s.post(&path, &op, json!({"rating": 2, "comment": "step a is unclear"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, list) = s.get(&path, &op).await;
    assert_eq!(list["items"][0]["rating"], 2);

    let (_, a) = s.get("/api/v1/analytics", &op).await;
    let ship = a["runbooks"].as_array().unwrap().iter().find(|f| f["runbook"] == "ship").unwrap().clone();
    assert_eq!(ship["rating_avg"], 2.0);
    assert_eq!(ship["recent_comments"][0]["comment"], "step a is unclear");
    assert_eq!(ship["attention"], json!(["average rating 2 is below 3"]));
    assert_eq!(ship["change_failure_rate"], 0.0, "a deployment runbook");
    assert!(ship["time_saved_ms"].as_i64().unwrap() > 590_000, "{ship}");
    assert_eq!(ship["review"], "overdue");
    assert_eq!(a["needs_attention"][0]["runbook"], "ship");
    assert_eq!(a["never_run_90d"], json!(["idle"]));
    assert_eq!(a["totals"]["runs"], 1);
    assert_eq!(a["totals"]["weekly"].as_array().unwrap().last().unwrap()["runs"], 1);
    let metric = |text: &str| -> String {
        text.lines().find(|l| l.starts_with("opsbook_runbooks_review_overdue ")).unwrap_or_default().to_string()
    };
    let scrape = reqwest::get(&s.metrics_url).await.unwrap().text().await.unwrap();
    assert_eq!(metric(&scrape), "opsbook_runbooks_review_overdue 1");
    let (_, page) = Page::sign_in(&s, &op).await.get("/analytics").await;
    assert!(page.contains("<a href=\"/runbooks/ship\">ship</a>: average rating 2 is below 3"), "{page}");
    assert!(page.contains("<td>2.0 (1)</td>"), "the rating column: {page}");
    assert!(page.contains("Not run in 90 days: <a href=\"/runbooks/idle\">idle</a>"), "{page}");

    let reviews = "/api/v1/runbooks/ship/reviews";
    let (status, _) = s.post(reviews, &op, json!({"note": "read it"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "reviewing is an author's");
    let (status, body) = s.post(reviews, &author, json!({"note": "  "})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, r) = s.post(reviews, &author, json!({"note": "checked the commands against prod"})).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let due = jiff::Zoned::now().date().checked_add(jiff::Span::new().days(30)).unwrap().to_string();
    assert_eq!((r["version"].as_str(), r["reviewer"].as_str()), (Some("1.0.0"), Some("ann")));
    assert_eq!(r["next_due"], due.as_str());
    let (_, list) = s.get(reviews, &op).await;
    assert_eq!(list["items"][0]["note"], "checked the commands against prod");
    let (_, a) = s.get("/api/v1/analytics?runbook=ship", &op).await;
    assert_eq!(a["runbooks"][0]["review"], "ok");
    assert_eq!(a["runbooks"][0]["review_due"], due.as_str());
    assert_eq!(a["review_overdue"], json!([]));
    let (status, nope) = s.get("/api/v1/analytics?runbook=shp", &op).await;
    assert_eq!((status, nope["error"]["message"].as_str()), (StatusCode::NOT_FOUND, Some("runbook `shp` not found")));
    let scrape = reqwest::get(&s.metrics_url).await.unwrap().text().await.unwrap();
    assert_eq!(metric(&scrape), "opsbook_runbooks_review_overdue 0");
    assert_eq!(s.get("/api/v1/runbooks/nope/reviews", &op).await.0, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overdue_review_is_notified_once() {
    let (hook, got) = receiver(0).await;
    let s = Server::start_with(|c| {
        c.public_url = Some("https://ops.example".into());
        c.notify = vec![rule("reviews", Kind::Webhook, &hook, &["review_due"])];
    })
    .await;
    let author = s.token("ann", &["author"]).await;
    let meta = "  status: active\n  owner: team-web\n  review: { every: 30d, last_reviewed: 2020-01-01 }\n";
    assert!(
        s.publish(&author, &runbook("ship", "1.0.0", meta, "", "    - id: a\n      run: \"true\"\n"))
            .await
            .0
            .is_success()
    );
    let today = jiff::Zoned::now().date();
    // The scheduler looked at start; this is the same look, done again: nothing new.
    let start = std::time::Instant::now();
    while got.calls.lock().unwrap().is_empty() {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "no review_due sent");
        let sent = opsbook_server::service::quality::remind_reviews(&s.state, today).await.unwrap();
        assert!(sent.len() <= 1);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        opsbook_server::service::quality::remind_reviews(&s.state, today).await.unwrap().is_empty(),
        "once per due date"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let calls = got.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&calls[0].1).unwrap();
    assert_eq!(body["event"], "review_due");
    assert_eq!(body["detail"], "the review of ship (v1.0.0) was due on 2020-01-31");
    assert_eq!(body["execution"]["runbook"]["name"], "ship");
    assert_eq!(body["url"], "https://ops.example/runbooks/ship");
    let audit = s
        .store
        .audit(&opsbook_store::AuditFilter {
            action: Some("runbook.review_due".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].details["due"], "2020-01-31");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runbook_cannot_be_active_while_its_tests_fail() {
    let s = Server::start().await;
    let author = s.token("ann", &["author"]).await;
    let tests = |expected: &str| {
        format!(
            "tests:\n  - name: the check passes\n    mocks:\n      check: {{ stdout: \"all {expected}\" }}\n    expect:\n      status: succeeded\n      rendered: {{ check: \"./check.sh --strict\" }}\n"
        )
    };
    let book = |status: &str, version: &str, expected: &str| {
        let steps =
            "    - id: check\n      run: ./check.sh --strict\n      validate: [ { output_contains: \"all good\" } ]\n";
        format!("{}{}", runbook("checked", version, &format!("  status: {status}\n"), "", steps), tests(expected))
    };
    // Its test fails (the mock prints "all bad"): refused as active, with every failure listed.
    let (status, body) = s.publish(&author, &book("active", "1.0.0", "bad")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "tests_failed");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("runbook `checked` cannot be active while its tests fail: 1 of 1 failed"), "{message}");
    assert_eq!(body["error"]["details"][0]["test"], "the check passes");
    let failures = body["error"]["details"][0]["failures"][0].as_str().unwrap();
    assert!(failures.contains("step `check` failed: output does not contain \"all good\""), "{failures}");
    assert_eq!(s.get("/api/v1/runbooks/checked", &author).await.0, StatusCode::NOT_FOUND, "nothing was stored");

    // A draft may be published with failing tests (the answer says so), not activated.
    let (status, body) = s.publish(&author, &book("draft", "1.0.0", "bad")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["tests"]["passed"], 0);
    assert_eq!(body["tests"]["failed"][0]["test"], "the check passes");
    let activate = json!({"status": "active", "reason": "ready"});
    let (status, body) = s.post("/api/v1/runbooks/checked/lifecycle", &author, activate.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(s.get("/api/v1/runbooks/checked", &author).await.1["status"], "draft");

    // Fixed: the next version's tests pass, and it goes active.
    let (status, body) = s.publish(&author, &book("draft", "1.0.1", "good")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tests"], json!({"passed": 1, "failed": []}));
    let (status, body) = s.post("/api/v1/runbooks/checked/lifecycle", &author, activate).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // And an active runbook's next version must pass too.
    let (status, _) = s.publish(&author, &book("active", "1.0.2", "bad")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_rollback_takes_the_secrets_the_older_rollbacks_need() {
    let s = Server::start().await;
    let op = s.token("olga", &["operator", "author"]).await;
    let m = s.dir.path().display().to_string();
    let steps = format!(
        "    - id: open\n      run: \"true\"\n      rollback:\n        run: test {{{{ params.pw }}}} = hunter2 && touch {m}/closed\n    - id: switch\n      run: \"true\"\n      rollback:\n        manual: {{ instructions: \"Switch back by hand\" }}\n    - id: boom\n      run: exit 1\n"
    );
    let book = runbook("vaulted", "1.0.0", "  status: active\n", "    pw: { type: secret, required: true }\n", &steps);
    assert!(s.publish(&op, &book).await.0.is_success());
    let (_, sub) = s.post("/api/v1/runbooks/vaulted/executions", &op, json!({"params": {"pw": "hunter2"}})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    // (Its runner lets go of it a moment after the rollback starts waiting.)
    s.wait_for(&id, &op, |d| d["rollback"]["status"] == "waiting" && d["status"] != "running").await;
    let path = format!("/api/v1/executions/{id}/confirmations");
    // The execution ended: its secrets are gone, and the rollback after the manual one needs one.
    let (status, body) = s.post(&path, &op, json!({"step": "switch"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["details"][0]["param"], "pw", "{body}");
    let (status, body) = s.post(&path, &op, json!({"step": "switch", "params": {"pw": "guess"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("differs from the value the execution started with"),
        "{body}"
    );
    let (_, doc) = s.get(&format!("/api/v1/executions/{id}"), &op).await;
    assert!(doc["approvals"].as_array().unwrap().is_empty(), "nothing recorded while refused: {doc}");
    let (status, body) = s.post(&path, &op, json!({"step": "switch", "params": {"pw": "hunter2"}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.wait_for(&id, &op, |d| d["rollback"]["status"] == "succeeded").await;
    assert!(s.dir.path().join("closed").exists());
    s.stop().await;
}
