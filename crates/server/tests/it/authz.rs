//! Every endpoint × every role → the expected status; 401 for missing or bad tokens.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Body, Server, runbook};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_checks_every_role() {
    // Every endpoint is tried without a token, many times a minute from one address.
    let s = Server::start_with(|c| c.auth_failures_per_minute = 0).await;
    let admin = s.token("root", &["admin"]).await;
    let book = runbook("demo", "1.0.0", "", "", "    - id: a\n      run: \"true\"\n");
    assert_eq!(s.publish(&admin, &book).await.0, StatusCode::CREATED);
    let (_, sub) = s.post("/api/v1/runbooks/demo/executions", &admin, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    s.settled(&id, &admin).await;

    let roles = ["viewer", "operator", "approver", "author", "admin", "release-manager"];
    let mut tokens = Vec::new();
    for r in roles {
        tokens.push(s.token(&format!("user-{r}"), &[r]).await);
    }
    let book2 = runbook("demo", "9.9.9", "", "", "    - id: a\n      run: \"true\"\n");
    let mut files = opsbook_core::bundle::Bundle::new();
    files.add("run.sh", true, b"true\n".to_vec()).unwrap();
    let sha = files.sha256();
    // (method, path, body, expected status per role in the order above)
    use StatusCode as S;
    let (ok, created, acc, forb, conf) = (S::OK, S::CREATED, S::ACCEPTED, S::FORBIDDEN, S::CONFLICT);
    let cases: Vec<(&str, String, Option<Body>, [StatusCode; 6])> = vec![
        ("GET", "/api/v1/runbooks".into(), None, [ok, ok, ok, ok, ok, forb]),
        ("GET", "/api/v1/runbooks/demo".into(), None, [ok, ok, ok, ok, ok, forb]),
        ("GET", "/api/v1/runbooks/demo/versions".into(), None, [ok, ok, ok, ok, ok, forb]),
        ("GET", "/api/v1/runbooks/demo/versions/1.0.0".into(), None, [ok, ok, ok, ok, ok, forb]),
        ("GET", "/api/v1/runbooks/demo/diff?from=1.0.0&to=1.0.0".into(), None, [ok, ok, ok, ok, ok, forb]),
        (
            "POST",
            "/api/v1/runbooks?dry_run=true".into(),
            Some(Body::Yaml(book2.clone())),
            [forb, forb, forb, ok, ok, forb],
        ),
        (
            "POST",
            "/api/v1/runbooks/demo/lifecycle".into(),
            Some(Body::Json(json!({"status": "draft", "reason": "x"}))),
            [forb, forb, forb, conf, conf, forb],
        ),
        (
            "POST",
            "/api/v1/runbooks/demo/executions".into(),
            Some(Body::Json(json!({}))),
            [forb, acc, forb, forb, acc, forb],
        ),
        (
            "PUT",
            format!("/api/v1/bundles/{sha}"),
            Some(Body::Bytes(files.encode())),
            [forb, forb, forb, created, ok, forb],
        ),
        ("GET", format!("/api/v1/bundles/{sha}"), None, [ok, ok, ok, ok, ok, forb]),
        ("GET", "/api/v1/executions".into(), None, [ok, ok, ok, ok, ok, forb]),
        ("GET", format!("/api/v1/executions/{id}"), None, [ok, ok, ok, ok, ok, forb]),
        ("GET", format!("/api/v1/executions/{id}/logs"), None, [ok, ok, ok, ok, ok, forb]),
        (
            "POST",
            format!("/api/v1/executions/{id}/cancel"),
            Some(Body::Json(json!({}))),
            [forb, conf, forb, forb, conf, forb],
        ),
        (
            "POST",
            format!("/api/v1/executions/{id}/resume"),
            Some(Body::Json(json!({}))),
            [forb, conf, forb, forb, conf, forb],
        ),
        (
            "POST",
            format!("/api/v1/executions/{id}/rollback"),
            Some(Body::Json(json!({}))),
            [forb, conf, forb, forb, conf, forb],
        ),
        (
            "POST",
            format!("/api/v1/executions/{id}/approvals"),
            Some(Body::Json(json!({"decision": "approve"}))),
            [forb, forb, conf, forb, conf, forb],
        ),
        ("GET", "/api/v1/schedules".into(), None, [ok, ok, ok, ok, ok, forb]),
        (
            "POST",
            "/api/v1/schedules".into(),
            Some(Body::Json(json!({"runbook": "demo", "cron": "0 3 * * *"}))),
            [forb, created, forb, forb, created, forb],
        ),
        ("DELETE", "/api/v1/schedules/nope".into(), None, [forb, S::NOT_FOUND, forb, forb, S::NOT_FOUND, forb]),
        ("GET", "/api/v1/tokens".into(), None, [forb, forb, forb, forb, ok, forb]),
        (
            "POST",
            "/api/v1/tokens".into(),
            Some(Body::Json(json!({"user": "x", "roles": ["viewer"]}))),
            [forb, forb, forb, forb, created, forb],
        ),
        ("DELETE", "/api/v1/tokens/nope".into(), None, [forb, forb, forb, forb, S::NOT_FOUND, forb]),
        ("GET", "/api/v1/audit".into(), None, [forb, forb, forb, forb, ok, forb]),
        ("GET", "/api/v1/analytics".into(), None, [ok, ok, ok, ok, ok, forb]),
        (
            "GET",
            "/api/v1/gates/nope".into(),
            None,
            [S::NOT_FOUND, S::NOT_FOUND, S::NOT_FOUND, S::NOT_FOUND, S::NOT_FOUND, forb],
        ),
        (
            "POST",
            format!("/api/v1/executions/{id}/override"),
            Some(Body::Json(json!({"reason": "outage is over"}))),
            [forb, forb, forb, forb, conf, forb],
        ),
        ("GET", "/api/v1/whoami".into(), None, [ok, ok, ok, ok, ok, ok]),
    ];
    let mut failures = Vec::new();
    for (method, path, body, expected) in &cases {
        // No token and a bad token: always 401, with nothing about the resource.
        for token in [None, Some("obk_000000000000_nope"), Some("garbage")] {
            let (status, doc) = s.call(method, path, token, body.as_ref().map(clone_body)).await;
            if status != StatusCode::UNAUTHORIZED || doc["error"]["code"] != "unauthenticated" {
                failures.push(format!("{method} {path} with {token:?}: {status} {doc}"));
            }
        }
        for (i, role) in roles.iter().enumerate() {
            let (status, doc) = s.call(method, path, Some(&tokens[i]), body.as_ref().map(clone_body)).await;
            if status != expected[i] {
                failures.push(format!("{method} {path} as {role}: expected {} got {status} {doc}", expected[i]));
            }
            if status == StatusCode::FORBIDDEN && doc["error"]["code"] != "forbidden" {
                failures.push(format!("{method} {path} as {role}: 403 without code forbidden: {doc}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Health endpoints need no token.
    assert_eq!(s.call("GET", "/healthz", None, None).await.0, StatusCode::OK);
    assert_eq!(s.call("GET", "/readyz", None, None).await.0, StatusCode::OK);
    let (status, spec) = s.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!((status, spec["openapi"].as_str()), (StatusCode::OK, Some("3.1.0")));
    s.stop().await;
}

fn clone_body(b: &Body) -> Body {
    match b {
        Body::Json(v) => Body::Json(v.clone()),
        Body::Yaml(t) => Body::Yaml(t.clone()),
        Body::Bytes(b) => Body::Bytes(b.clone()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_tokens_are_refused_and_audited() {
    let s = Server::start().await;
    let admin = s.token("root", &["admin"]).await;
    let (status, created) =
        s.post("/api/v1/tokens", &admin, json!({"user": "temp", "roles": ["viewer"], "expires_in": "1h"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let temp = created["token"].as_str().unwrap().to_string();
    assert_eq!(s.get("/api/v1/whoami", &temp).await.0, StatusCode::OK);
    // A label is never a role, and a user never one of opsbook's own actors.
    let (status, doc) =
        s.post("/api/v1/tokens", &admin, json!({"user": "lab", "roles": ["viewer"], "labels": ["admin"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}");
    assert_eq!(doc["error"]["details"]["field"], "labels");
    // Each role once, however often it was given.
    let (status, doc) = s
        .post("/api/v1/tokens", &admin, json!({"user": "dup", "roles": ["viewer", "viewer"], "labels": ["x", "x"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{doc}");
    assert_eq!(doc["roles"], json!(["viewer", "x"]), "{doc}");
    let (status, doc) = s.post("/api/v1/tokens", &admin, json!({"user": "schedule:a#1", "roles": ["admin"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}");
    assert_eq!(doc["error"]["message"], "invalid user `schedule:a#1`: use letters, digits, - _ . @ + (at most 64)");
    assert_eq!(doc["error"]["details"]["field"], "user");
    // The secret is never listed or stored.
    let (_, list) = s.get("/api/v1/tokens", &admin).await;
    assert!(!list.to_string().contains(&temp));
    let (_, revoke) =
        s.call("DELETE", &format!("/api/v1/tokens/{}", created["id"].as_str().unwrap()), Some(&admin), None).await;
    assert_eq!(revoke["revoked"], true);
    // Whoever holds a revoked token is told so; a wrong secret learns nothing.
    let (status, doc) = s.get("/api/v1/whoami", &temp).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(doc["error"]["message"], "this API token was revoked; ask an admin for a new one");
    let (_, audit) = s.get("/api/v1/audit?action=auth.failed", &admin).await;
    assert_eq!(audit["items"][0]["details"]["reason"], "token revoked");
    let expired = opsbook_server::auth::generate("eve", vec!["viewer".into()], Some(1_764_000_000_000));
    opsbook_store::ServerStore::create_token(&s.store, &expired.record, &expired.hash).await.unwrap();
    let (status, doc) = s.get("/api/v1/whoami", &expired.secret).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        doc["error"]["message"],
        "this API token expired at 2025-11-24 16:00:00 UTC; ask an admin for a new one"
    );
    let wrong = format!("obk_{}_{}", created["id"].as_str().unwrap(), "0".repeat(64));
    let (status, doc) = s.get("/api/v1/whoami", &wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(doc["error"]["message"], "a valid API token is required (Authorization: Bearer ...)");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_narrow_who_may_run_what() {
    let s = Server::start_with(|c| {
        c.policies = toml::from_str::<opsbook_server::Config>(
            "[[policy]]\ndescription = \"web is run by the web team\"\ntags = [\"web\"]\nroles = [\"team-web\"]\n\n\
             [[policy]]\nparam = { name = \"environment\", value = \"production\" }\nroles = [\"prod-deployer\"]\n",
        )
        .unwrap()
        .policies;
    })
    .await;
    let admin = s.token("root", &["admin"]).await;
    let book = runbook(
        "site",
        "1.0.0",
        "  tags: [web]\n",
        "    environment: { type: enum, values: [staging, production], required: true }\n",
        "    - id: a\n      run: \"true\"\n",
    );
    s.publish(&admin, &book).await;
    let plain = s.token("pat", &["operator"]).await;
    let web = s.token("wes", &["operator", "team-web"]).await;
    let prod = s.token("pia", &["operator", "team-web", "prod-deployer"]).await;
    let submit = |env: &str| json!({ "params": { "environment": env } });
    let path = "/api/v1/runbooks/site/executions";
    let (status, doc) = s.post(path, &plain, submit("staging")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        doc["error"]["message"],
        "running `site` like this needs one of the roles team-web (web is run by the web team)"
    );
    assert_eq!(s.post(path, &web, submit("staging")).await.0, StatusCode::ACCEPTED);
    let (status, doc) = s.post(path, &web, submit("production")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(doc["error"]["message"], "running `site` like this needs one of the roles prod-deployer");
    // The refusal is audited with the request's id and which policy refused it.
    let (_, audit) = s.get("/api/v1/audit?action=authz.denied", &admin).await;
    let last = audit["items"].as_array().unwrap().iter().rfind(|r| r["actor"] == "wes").unwrap().clone();
    assert_eq!(last["details"]["needs"], json!(["prod-deployer"]), "{last}");
    assert!(last["request_id"].as_str().is_some_and(|r| !r.is_empty()), "{last}");
    let (_, sub) = s.post(path, &prod, submit("production")).await;
    assert_eq!(s.post(path, &admin, submit("production")).await.0, StatusCode::ACCEPTED);
    // Carrying an execution on (resume, rollback) is running it: the same policies apply.
    let id = sub["id"].as_str().unwrap().to_string();
    s.settled(&id, &admin).await;
    let (status, doc) = s.post(&format!("/api/v1/executions/{id}/rollback"), &web, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{doc}");
    assert_eq!(doc["error"]["message"], "carrying `site` on needs one of the roles prod-deployer");
    let (status, _) = s.post(&format!("/api/v1/executions/{id}/rollback"), &prod, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "allowed, and refused for what it is: a success");
    // Cancelling runs rollbacks: the same policies apply (an ended one is 409 for all).
    let (status, _) = s.post(&format!("/api/v1/executions/{id}/cancel"), &web, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let gated = runbook(
        "site-gated",
        "1.0.0",
        "  tags: [web]\n",
        "    environment: { type: enum, values: [staging, production], required: true }\n",
        "    - id: ask\n      approval: {}\n",
    );
    s.publish(&admin, &gated).await;
    let (_, sub) = s.post("/api/v1/runbooks/site-gated/executions", &prod, submit("production")).await;
    let id = sub["id"].as_str().unwrap().to_string();
    s.wait_for(&id, &admin, |d| d["status"] == "waiting").await;
    let (status, doc) = s.post(&format!("/api/v1/executions/{id}/cancel"), &web, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{doc}");
    assert_eq!(doc["error"]["message"], "cancelling `site-gated` needs one of the roles prod-deployer");
    let (status, doc) = s.post(&format!("/api/v1/executions/{id}/cancel"), &prod, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    s.stop().await;
}

/// Giving a secret again is no way to test guesses at it: an execution that could not go
/// on anyway says so before any secret is compared, and a wrong one is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_given_again_are_no_oracle() {
    let s = Server::start().await;
    let op = s.token("olga", &["operator", "author"]).await;
    let admin = s.token("root", &["admin"]).await;
    let steps = |last: &str| {
        format!(
            "    - id: a\n      run: \"true\"\n      rollback:\n        run: test {{{{ params.pw }}}} = hunter2\n    - id: b\n      run: {last}\n"
        )
    };
    let params = "    pw: { type: secret, required: true }\n";
    for (name, last) in [("fine", "\"true\""), ("stops", "exit 3")] {
        let book = runbook(name, "1.0.0", "", params, &steps(last)).replace("spec:\n", "spec:\n  on_failure: stop\n");
        assert!(s.publish(&op, &book).await.0.is_success());
    }
    let run = |name: &'static str| {
        let (s, op) = (&s, op.clone());
        async move {
            let (_, sub) =
                s.post(&format!("/api/v1/runbooks/{name}/executions"), &op, json!({"params": {"pw": "hunter2"}})).await;
            let id = sub["id"].as_str().unwrap().to_string();
            s.settled(&id, &op).await;
            id
        }
    };
    let (fine, stops) = (run("fine").await, run("stops").await);
    let guess = json!({"params": {"pw": "guess"}});
    for (id, action, says) in [
        (&fine, "resume", "has succeeded; only waiting or interrupted executions can resume"),
        (&fine, "rollback", "succeeded; rolling back a success is not supported"),
        (&stops, "resume", "has failed; only waiting or interrupted executions can resume"),
    ] {
        let (status, doc) = s.post(&format!("/api/v1/executions/{id}/{action}"), &op, guess.clone()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{action}: {doc}");
        assert!(doc["error"]["message"].as_str().unwrap().contains(says), "{doc}");
    }
    // A rollback that could run compares, refuses, and leaves a record of the attempt.
    let (status, doc) = s.post(&format!("/api/v1/executions/{stops}/rollback"), &op, guess).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}");
    assert_eq!(doc["error"]["details"][0]["message"], "differs from the value the execution started with");
    let (_, audit) = s.get("/api/v1/audit?action=execution.secret_mismatch", &admin).await;
    let records = audit["items"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{audit}");
    assert_eq!(records[0]["actor"], "olga");
    assert_eq!(records[0]["target"], stops.as_str());
    assert_eq!(records[0]["details"], json!({"action": "rollback", "params": ["pw"]}));
    assert!(!audit.to_string().contains("guess"), "never the value: {audit}");
    // Nothing to roll back: said whatever the secret, which is not compared.
    let book = runbook(
        "norb",
        "1.0.0",
        "",
        params,
        "    - id: a\n      run: \"true\"\n      env: { PW: \"{{ params.pw }}\" }\n    - id: b\n      run: exit 4\n",
    )
    .replace("spec:\n", "spec:\n  on_failure: stop\n");
    assert!(s.publish(&op, &book).await.0.is_success());
    let norb = run("norb").await;
    for pw in ["guess", "hunter2"] {
        let (status, doc) =
            s.post(&format!("/api/v1/executions/{norb}/rollback"), &op, json!({"params": {"pw": pw}})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
        assert_eq!(doc["nothing_to_roll_back"], true, "{pw}: {doc}");
    }
    s.stop().await;
}
