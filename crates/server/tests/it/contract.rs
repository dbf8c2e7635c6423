//! The API's answers are its typed wire types (`opsbook_api`), the ones clients read:
//! every JSON answer deserializes into the type its OpenAPI entry names, and every
//! answer the document lists has a schema.

use opsbook_api::*;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::support::{Server, runbook};

/// `doc` read as `T`, failing the test with the document when it does not fit.
fn typed<T: DeserializeOwned>(what: &str, doc: Value) -> T {
    match serde_json::from_value(doc.clone()) {
        Ok(t) => t,
        Err(e) => panic!("{what}: {e}\n{doc:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_its_wire_type() {
    let s = Server::start().await;
    let admin = s.token("root", &["admin"]).await;
    let ops = s.token("ops", &["operator"]).await;
    let boss = s.token("boss", &["approver"]).await;
    let text = runbook(
        "web",
        "1.0.0",
        "",
        "    env: { type: string, default: dev }\n",
        "    - id: build\n      run: echo built\n    - id: ok\n      approval: { approvers: [\"role:approver\"] }\n",
    );
    let (status, doc) = s.publish(&admin, &text).await;
    assert_eq!(status, StatusCode::CREATED);
    let published: PublishResult = typed("publish", doc);
    assert_eq!((published.result.as_str(), published.dry_run), ("created", false));
    let (_, doc) =
        s.post("/api/v1/runbooks/web/lifecycle", &admin, json!({ "status": "deprecated", "reason": "v2 soon" })).await;
    let changed: LifecycleChanged = typed("lifecycle", doc);
    assert_eq!(changed.event.to_status, "deprecated");

    let list: Items<RunbookEntry> = typed("runbooks", s.get("/api/v1/runbooks", &ops).await.1);
    assert_eq!(list.items[0].name, "web");
    let one: RunbookDoc = typed("runbook", s.get("/api/v1/runbooks/web", &ops).await.1);
    assert!(one.lifecycle.iter().any(|e| e.reason.as_deref() == Some("v2 soon")), "{one:?}");
    let versions: Items<VersionEntry> = typed("versions", s.get("/api/v1/runbooks/web/versions", &ops).await.1);
    assert_eq!(versions.items[0].version, "1.0.0");
    let version: VersionDoc = typed("version", s.get("/api/v1/runbooks/web/versions/1.0.0", &ops).await.1);
    assert_eq!(version.content, text);

    let (status, doc) = s.post("/api/v1/runbooks/web/executions", &ops, json!({ "params": { "env": "prod" } })).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let submitted: Submitted = typed("submit", doc);
    let id = submitted.id;
    let doc = s.wait_for(&id, &ops, |d| d["status"] == "waiting").await;
    let execution: ExecutionDoc = typed("execution", doc);
    assert_eq!(execution.steps.len(), 2);
    assert!(!execution.waits_on_gate() && !execution.in_progress());
    let page: ExecutionPage = typed("executions", s.get("/api/v1/executions", &ops).await.1);
    assert_eq!(page.items[0].id, id);
    let logs: LogPage = typed("logs", s.get(&format!("/api/v1/executions/{id}/logs"), &ops).await.1);
    assert!(logs.lines.iter().any(|l| l.line == "built"), "{logs:?}");
    let decided: Decided = typed(
        "decide",
        s.post(&format!("/api/v1/executions/{id}/approvals"), &boss, json!({ "decision": "approve" })).await.1,
    );
    assert!(decided.settled);
    s.wait_for(&id, &ops, |d| d["status"] == "succeeded").await;

    let (status, doc) = s.post(&format!("/api/v1/executions/{id}/cancel"), &ops, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let refusal: ErrorBody = typed("refusal", doc);
    assert_eq!(refusal.error.code, "conflict");

    let (status, doc) =
        s.post("/api/v1/schedules", &ops, json!({ "runbook": "web", "cron": "0 3 * * *", "params": {} })).await;
    assert_eq!(status, StatusCode::CREATED);
    let schedule: Schedule = typed("schedule", doc);
    let schedules: Items<Schedule> = typed("schedules", s.get("/api/v1/schedules", &ops).await.1);
    assert_eq!(schedules.items[0].id, schedule.id);
    let (_, doc) = s.call("DELETE", &format!("/api/v1/schedules/{}", schedule.id), Some(&ops), None).await;
    assert!(typed::<Deleted>("delete schedule", doc).deleted);

    let (status, doc) = s.post("/api/v1/tokens", &admin, json!({ "user": "ci", "roles": ["operator"] })).await;
    assert_eq!(status, StatusCode::CREATED);
    let created: CreatedToken = typed("token", doc);
    assert!(created.token.starts_with("obk_"));
    let tokens: Items<TokenInfo> = typed("tokens", s.get("/api/v1/tokens", &admin).await.1);
    assert!(tokens.items.iter().any(|t| t.id == created.info.id));
    let (_, doc) = s.call("DELETE", &format!("/api/v1/tokens/{}", created.info.id), Some(&admin), None).await;
    assert!(typed::<Revoked>("revoke", doc).revoked);
    let audit: Items<AuditEntry> = typed("audit", s.get("/api/v1/audit", &admin).await.1);
    assert!(audit.items.iter().any(|r| r.action == "execution.approval"));
    let me: Whoami = typed("whoami", s.get("/api/v1/whoami", &ops).await.1);
    assert_eq!(me.user, "ops");
    let figures: Analytics = typed("analytics", s.get("/api/v1/analytics", &ops).await.1);
    assert_eq!(figures.runbooks[0].succeeded, 1);
    let health: Health = typed("readyz", s.call("GET", "/readyz", None, None).await.1);
    assert_eq!(health.status, "ready");
    s.stop().await;
}

/// Every JSON answer in the OpenAPI document names its schema (a client generated
/// from the document gets types, not `any`).
#[test]
fn every_documented_answer_has_a_schema() {
    let doc = opsbook_server::openapi::document();
    let mut untyped = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            for (code, answer) in op["responses"].as_object().unwrap() {
                let open = path.ends_with("/events") || path.ends_with("/diff") || path.ends_with("openapi.json");
                // A bundle's bytes are its own format (docs/bundles.md).
                let bytes = method == "get" && path == "/api/v1/bundles/{sha256}";
                // A gate verdict is the gate crate's document, shared with `opsbook gate check`.
                let verdict = path == "/api/v1/gates/{name}";
                if open || verdict || bytes {
                    continue;
                }
                if answer["content"]["application/json"]["schema"].is_null() {
                    untyped.push(format!("{method} {path} {code}"));
                }
            }
        }
    }
    assert!(untyped.is_empty(), "answers without a schema: {untyped:#?}");
}

/// Every refusal is in the `{"error": …}` shape and names what it is about: the body's
/// `field`, or the query's `param`; a filter that can match nothing is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_names_what_it_is_about() {
    let s = Server::start().await;
    let admin = s.token("root", &["admin"]).await;
    let book = runbook("a", "1.0.0", "  status: active\n", "", "    - id: a\n      run: \"true\"\n");
    assert!(s.publish(&admin, &book).await.0.is_success());
    let (_, sub) = s.post("/api/v1/runbooks/a/executions", &admin, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    s.settled(&id, &admin).await;
    let schedule = |extra: Value| {
        let mut body = json!({ "runbook": "a", "cron": "0 3 * * *" });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let gets = [
        ("/api/v1/runbooks?status=bogus", "param", "status", "unknown status `bogus`: use draft, active"),
        ("/api/v1/runbooks?type=bogus", "param", "type", "unknown type `bogus`: use one of deployment"),
        ("/api/v1/analytics?since=bogus", "param", "since", "since: `bogus` is not a time"),
    ];
    for (path, kind, name, says) in gets {
        let (status, doc) = s.get(path, &admin).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {doc}");
        assert_eq!(doc["error"]["details"][kind], name, "{path}: {doc}");
        assert!(doc["error"]["message"].as_str().unwrap().starts_with(says), "{path}: {doc}");
    }
    let posts = [
        ("/api/v1/schedules".to_string(), schedule(json!({ "overlap": "sometimes" })), "overlap"),
        ("/api/v1/schedules".into(), schedule(json!({ "missed": "all" })), "missed"),
        ("/api/v1/schedules".into(), schedule(json!({ "cron": "nope" })), "cron"),
        ("/api/v1/schedules".into(), schedule(json!({ "timezone": "Mars/Olympus" })), "timezone"),
        (format!("/api/v1/executions/{id}/approvals"), json!({ "decision": "maybe" }), "decision"),
        ("/api/v1/runbooks/a/lifecycle".into(), json!({ "status": "gone", "reason": "x" }), "status"),
        ("/api/v1/runbooks/a/lifecycle".into(), json!({ "status": "deprecated" }), "reason"),
        (format!("/api/v1/executions/{id}/feedback"), json!({ "rating": 9 }), "rating"),
        ("/api/v1/runbooks/a/reviews".into(), json!({ "note": " " }), "note"),
        ("/api/v1/tokens".into(), json!({ "user": "u", "roles": ["viewer"], "expires_in": "soon" }), "expires_in"),
    ];
    for (path, body, field) in posts {
        let (status, doc) = s.post(&path, &admin, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {doc}");
        assert_eq!(doc["error"]["details"]["field"], field, "{path} {body}: {doc}");
    }
    let http = reqwest::Client::new();
    // A body cut short is about no field.
    let cut = http
        .post(format!("{}/api/v1/runbooks/a/executions", s.url))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(r#"{"params":{"n":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(cut.status(), StatusCode::BAD_REQUEST);
    let doc: Value = cut.json().await.unwrap();
    assert!(doc["error"]["message"].as_str().unwrap().starts_with("request body: EOF while parsing"), "{doc}");
    assert_eq!(doc["error"]["details"], Value::Null, "{doc}");
    // A path segment that is not UTF-8: refused by the router, in the API's shape all the same.
    let bad = http.get(format!("{}/api/v1/executions/%FF%FE", s.url)).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let doc: Value = bad.json().await.unwrap();
    assert_eq!(doc["error"]["code"], "bad_request", "{doc}");
    assert!(doc["error"]["message"].as_str().unwrap().contains("UTF-8"), "{doc}");
    s.stop().await;
}

/// What the server answers about an execution it does not have is in the document, for
/// every route that takes one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_executions_answer_as_documented() {
    let s = Server::start().await;
    let admin = s.token("root", &["admin"]).await;
    let doc = opsbook_server::openapi::document();
    let routes = [
        ("GET", "", None),
        ("GET", "/logs", None),
        ("GET", "/feedback", None),
        ("POST", "/cancel", Some(json!({}))),
        ("POST", "/approvals", Some(json!({ "decision": "approve" }))),
        ("POST", "/resume", Some(json!({}))),
        ("POST", "/rollback", Some(json!({}))),
        ("POST", "/confirmations", Some(json!({ "step": "x" }))),
        ("POST", "/feedback", Some(json!({ "rating": 3 }))),
        ("POST", "/override", Some(json!({ "reason": "x" }))),
    ];
    for (method, tail, body) in routes {
        let path = format!("/api/v1/executions/nosuchexecution{tail}");
        let (status, answer) = s.call(method, &path, Some(&admin), body.map(crate::support::Body::Json)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        let documented =
            &doc["paths"][format!("/api/v1/executions/{{id}}{tail}")][method.to_lowercase()]["responses"]["404"];
        assert!(documented.is_object(), "{method} {tail}: 404 is not documented");
    }
    s.stop().await;
}

/// Query-string refusals answer in the API's error shape, naming the parameter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_string_errors_name_the_parameter() {
    let s = Server::start().await;
    let admin = s.token("root", &["admin"]).await;
    let book = runbook("a", "1.0.0", "", "", "    - id: a\n      run: \"true\"\n");
    s.publish(&admin, &book).await;
    let (status, doc) = s.get("/api/v1/runbooks/a/diff?to=1.0.0", &admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}");
    assert_eq!(doc["error"]["code"], "bad_request");
    assert_eq!(doc["error"]["message"], "query parameter `from` is required");
    assert_eq!(doc["error"]["details"]["param"], "from");
    let (status, doc) = s.get("/api/v1/executions?limit=abc", &admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}");
    assert!(doc["error"]["message"].as_str().unwrap().starts_with("query parameter `limit`: "), "{doc}");
    assert_eq!(doc["error"]["details"]["param"], "limit");
    let (status, doc) = s.get("/api/v1/audit?after=soon", &admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}");
    assert_eq!(doc["error"]["details"]["param"], "after");
    let (status, doc) = s.get("/api/v1/audit?since=soon", &admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}");
    assert_eq!(doc["error"]["details"]["param"], "since");
    // A page of nothing is a mistake, not a page of one; a page too large is lowered.
    for path in ["/api/v1/executions?limit=0", "/api/v1/audit?limit=-1", "/api/v1/executions/x/logs?limit=0"] {
        let (status, doc) = s.get(path, &admin).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {doc}");
        assert!(doc["error"]["message"].as_str().unwrap().starts_with("query parameter `limit`: must be at least 1"));
        assert_eq!(doc["error"]["details"]["param"], "limit", "{path}");
    }
    let (status, doc) = s.get("/api/v1/audit?limit=5000", &admin).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert!(!doc["items"].as_array().unwrap().is_empty());
    s.stop().await;
}
