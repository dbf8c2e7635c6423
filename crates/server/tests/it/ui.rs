//! The web UI over HTTP: sessions, CSRF, roles on every page and form, the run form's
//! checks, the live log's handoff. (The browser tests are in browser.rs.)

use opsbook_store::{ServerStore, Store};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::support::{Server, runbook};

/// A browser without a browser: no redirects followed, the session cookie sent by hand.
pub struct Page {
    http: reqwest::Client,
    base: String,
    pub cookie: String,
}

impl Page {
    pub fn client() -> reqwest::Client {
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
    }

    /// Signs in with `token` through the form; panics unless it worked.
    pub async fn sign_in(srv: &Server, token: &str) -> Page {
        let http = Page::client();
        let resp = http.post(format!("{}/login", srv.url)).form(&[("token", token)]).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_string();
        let cookie = set.split(';').next().unwrap().to_string();
        Page { http, base: srv.url.clone(), cookie }
    }

    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let resp = self.http.get(format!("{}{path}", self.base)).header(COOKIE, &self.cookie).send().await.unwrap();
        (resp.status(), resp.text().await.unwrap())
    }

    /// Posts a form as the page itself would: same origin, with its form token.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let (_, html) = self.get("/runbooks").await;
        let csrf = between(&html, "name=\"csrf\" value=\"", "\"").to_string();
        let mut all: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        all.extend_from_slice(fields);
        self.http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .header("origin", &self.base)
            .header("sec-fetch-site", "same-origin")
            .form(&all)
            .send()
            .await
            .unwrap()
    }
}

pub fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).unwrap_or_else(|| panic!("no `{start}` in {text}")) + start.len();
    let to = text[from..].find(end).unwrap() + from;
    &text[from..to]
}

pub const DEPLOY: &str = "    - id: build\n      run: echo building {{ params.app }}\n    - id: ship\n      approval: { message: \"ship {{ params.app }}?\" }\n    - id: done\n      run: printf '\\033[1;32mshipped\\033[0m\\n'\n";
pub const PARAMS: &str = "    app: { type: string, required: true, pattern: \"[a-z]+\" }\n    replicas: { type: integer, min: 1, max: 5, default: 2 }\n    env: { type: enum, values: [staging, production], required: true }\n    canary: { type: boolean, default: true }\n    pw: { type: secret }\n";

pub async fn publish_deploy(srv: &Server, admin: &str) {
    let yaml = runbook("deploy", "1.0.0", "  status: active\n", PARAMS, DEPLOY);
    let (status, body) = srv.publish(admin, &yaml).await;
    assert!(status.is_success(), "{body}");
}

#[tokio::test]
async fn sessions_start_end_and_follow_their_token() {
    let srv = Server::start().await;
    let admin = srv.token("ann", &["admin"]).await;
    let http = Page::client();

    // Every page wants a session: to the sign-in form, keeping where it was going.
    let resp = http.get(format!("{}/executions?window=all", srv.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/login?next=%2Fexecutions%3Fwindow%3Dall");
    // A fragment asked for by htmx: the whole page goes to sign in.
    let resp = http.get(format!("{}/gates/prod/verdict", srv.url)).header("hx-request", "true").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["hx-redirect"], "/login?next=%2Fgates%2Fprod%2Fverdict");
    let resp = http.get(format!("{}/login", srv.url)).send().await.unwrap();
    let csp = resp.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let form = resp.text().await.unwrap();
    assert!(form.contains("name=\"token\""), "{form}");

    // A wrong token: 401 with the form again, and an audit record.
    let resp = http.post(format!("{}/login", srv.url)).form(&[("token", "obk_nope_nope")]).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.text().await.unwrap().contains("That token is not valid"));
    // An expired one is told so.
    let old = opsbook_server::auth::generate("eve", vec!["viewer".into()], Some(1_764_000_000_000));
    opsbook_store::ServerStore::create_token(&srv.store, &old.record, &old.hash).await.unwrap();
    let resp = http.post(format!("{}/login", srv.url)).form(&[("token", old.secret.as_str())]).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let page = resp.text().await.unwrap();
    assert!(page.contains("This API token expired at 2025-11-24 16:00:00 UTC; ask an admin for a new one."), "{page}");

    // A good one: an HttpOnly, SameSite=Strict cookie; the store keeps only its hash.
    let resp = http
        .post(format!("{}/login", srv.url))
        .form(&[("token", admin.as_str()), ("next", "/executions")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/executions");
    let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"), "{set}");
    assert!(!set.contains("Secure"), "plain http here: {set}");
    let value = between(&set, "opsbook_session=", ";").to_string();
    let stored = srv.store.session(&opsbook_server::auth::hash(&value)).await.unwrap().unwrap();
    assert!(stored.expires_at - stored.created_at == 12 * 3600 * 1000, "the default session_ttl");
    assert!(srv.store.session(&value).await.unwrap().is_none(), "never the cookie itself");

    // An off-site `next` is not followed (a browser reads `/<tab>/host` as `//host`), nor
    // one with a line break.
    for next in ["//evil.example/", "/\t/evil.example", "/runbooks\r\nX: y"] {
        let resp = http
            .post(format!("{}/login", srv.url))
            .form(&[("token", admin.as_str()), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(resp.headers()[LOCATION], "/", "the home page (the catalog): {next:?}");
    }

    // Signing out ends it in the store: the same cookie no longer works.
    let page = Page::sign_in(&srv, &admin).await;
    assert_eq!(page.get("/runbooks").await.0, StatusCode::OK);
    assert_eq!(page.post("/logout", &[]).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(page.get("/runbooks").await.0, StatusCode::SEE_OTHER);

    // Revoking the token ends its sessions too, on the API as on pages.
    let page = Page::sign_in(&srv, &admin).await;
    let id = between(&admin, "obk_", "_").to_string();
    srv.store.revoke_token(&id).await.unwrap();
    assert_eq!(page.get("/runbooks").await.0, StatusCode::SEE_OTHER);
    let api = http.get(format!("{}/api/v1/whoami", srv.url)).header(COOKIE, &page.cookie).send().await.unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    let audit = srv.store.audit(&opsbook_store::AuditFilter { limit: 100, ..Default::default() }).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|r| r.action.as_str()).collect();
    assert!(actions.contains(&"session.start") && actions.contains(&"session.end"), "{actions:?}");
    srv.stop().await;
}

#[tokio::test]
async fn sessions_expire_on_the_server_and_are_secure_behind_https() {
    let srv = Server::start_with(|c| {
        c.session_ttl = "5s".into();
        c.public_url = Some("https://ops.example.com".into());
    })
    .await;
    let admin = srv.token("ann", &["admin"]).await;
    let resp =
        Page::client().post(format!("{}/login", srv.url)).form(&[("token", admin.as_str())]).send().await.unwrap();
    assert!(resp.headers()[SET_COOKIE].to_str().unwrap().contains("; Secure"));
    let page = Page::sign_in(&srv, &admin).await;
    assert_eq!(page.get("/runbooks").await.0, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(5100)).await;
    assert_eq!(page.get("/runbooks").await.0, StatusCode::SEE_OTHER, "expired on the server, whatever the cookie says");
    srv.stop().await;
}

#[tokio::test]
async fn forms_from_other_sites_and_without_the_form_token_are_refused() {
    let srv = Server::start().await;
    let admin = srv.token("ann", &["admin"]).await;
    publish_deploy(&srv, &admin).await;
    let page = Page::sign_in(&srv, &admin).await;
    // A comparison with a version the runbook lacks (an edited address) is said on the
    // page, which still shows (it was a 404 for the whole page).
    let (status, html) = page.get("/runbooks/deploy?from=1.0.0&to=9.9.9").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("cannot compare: this runbook has no version 9.9.9"), "{html}");
    let (_, html) = page.get("/runbooks/deploy/run").await;
    let csrf = between(&html, "name=\"csrf\" value=\"", "\"").to_string();
    let fields = [("csrf", csrf.as_str()), ("p.app", "web"), ("p.env", "staging"), ("action", "run")];
    let http = Page::client();
    let url = format!("{}/runbooks/deploy/run", srv.url);
    let post = |headers: Vec<(&'static str, String)>, fields: Vec<(&'static str, String)>| {
        let mut req = http.post(&url).header(COOKIE, &page.cookie).form(&fields);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let owned = |f: &[(&'static str, &str)]| f.iter().map(|(k, v)| (*k, v.to_string())).collect::<Vec<_>>();
    // A page on another site posting here (the browser sends the cookie with it).
    let cross = post(vec![("origin", "https://evil.example".into())], owned(&fields)).await.unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert!(cross.text().await.unwrap().contains("a form from another site is refused"));
    let cross = post(vec![("sec-fetch-site", "cross-site".into())], owned(&fields)).await.unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    // Same site, no or a wrong form token.
    let no_token = post(vec![("origin", srv.url.clone())], owned(&fields[1..])).await.unwrap();
    assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
    assert!(no_token.text().await.unwrap().contains("token is missing or stale"));
    let mut wrong = owned(&fields);
    wrong[0].1 = "0".repeat(64);
    assert_eq!(post(vec![], wrong).await.unwrap().status(), StatusCode::FORBIDDEN);
    let listed = srv.store.executions(&opsbook_store::ExecutionFilter { limit: 10, ..Default::default() }).await;
    assert!(listed.unwrap().is_empty(), "nothing was queued");

    // The API takes the cookie for reads; a write with it needs the form token header.
    let api = format!("{}/api/v1/runbooks/deploy/executions", srv.url);
    let body = json!({ "params": { "app": "web", "env": "staging" } });
    let bare = http.post(&api).header(COOKIE, &page.cookie).json(&body).send().await.unwrap();
    assert_eq!(bare.status(), StatusCode::FORBIDDEN);
    let ok = http
        .post(&api)
        .header(COOKIE, &page.cookie)
        .header("origin", &srv.url)
        .header("x-csrf-token", &csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::ACCEPTED);
    let whoami = http.get(format!("{}/api/v1/whoami", srv.url)).header(COOKIE, &page.cookie).send().await.unwrap();
    assert_eq!(whoami.status(), StatusCode::OK);
    srv.stop().await;
}

#[tokio::test]
async fn roles_decide_pages_and_forms_not_buttons() {
    let srv = Server::start().await;
    let admin = srv.token("ann", &["admin"]).await;
    let viewer = srv.token("vic", &["viewer"]).await;
    publish_deploy(&srv, &admin).await;
    let vic = Page::sign_in(&srv, &viewer).await;
    let (status, html) = vic.get("/runbooks/deploy").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains(">Run</a>"), "a viewer sees no Run button");
    assert!(!html.contains("Change lifecycle"), "nor lifecycle actions");
    assert_eq!(vic.get("/runbooks/deploy/run").await.0, StatusCode::FORBIDDEN);
    // A forged POST from the viewer's own session: refused by the server, audited.
    let forged = vic.post("/runbooks/deploy/run", &[("p.app", "web"), ("p.env", "staging"), ("action", "run")]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.text().await.unwrap().contains("this needs the operator or admin role"));
    let forged = vic.post("/runbooks/deploy/lifecycle", &[("status", "deprecated"), ("reason", "x")]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(vic.get("/audit").await.0, StatusCode::FORBIDDEN, "the audit trail is for admins");
    for page in ["/runbooks", "/executions", "/approvals", "/gates", "/analytics", "/schedules"] {
        assert_eq!(vic.get(page).await.0, StatusCode::OK, "{page}");
    }
    let body =
        serde_json::json!({ "runbook": "deploy", "cron": "0 3 * * *", "params": { "app": "web", "env": "staging" } });
    assert_eq!(srv.post("/api/v1/schedules", &admin, body).await.0, StatusCode::CREATED);
    let (_, html) = vic.get("/schedules").await;
    assert!(html.contains("api · ann<div class=\"muted\">as admin</div>"), "who it runs as: {html}");
    let executions = srv.store.executions(&opsbook_store::ExecutionFilter { limit: 10, ..Default::default() }).await;
    assert!(executions.unwrap().is_empty());
    let denied = srv
        .store
        .audit(&opsbook_store::AuditFilter { action: Some("authz.denied".into()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert!(denied.iter().any(|r| r.actor == "vic"), "{denied:?}");

    let ann = Page::sign_in(&srv, &admin).await;
    let (_, html) = ann.get("/runbooks/deploy").await;
    assert!(html.contains(">Run</a>") && html.contains("Change lifecycle"));
    let moved = ann.post("/runbooks/deploy/lifecycle", &[("status", "deprecated"), ("reason", "v2 is out")]).await;
    assert_eq!(moved.status(), StatusCode::SEE_OTHER);
    assert_eq!(srv.store.registry_entry("deploy").await.unwrap().status, "deprecated");
    let no_reason = ann.post("/runbooks/deploy/lifecycle", &[("status", "active")]).await;
    assert_eq!(no_reason.status(), StatusCode::BAD_REQUEST);
    assert!(no_reason.text().await.unwrap().contains("a reason is required"));
    srv.stop().await;
}

#[tokio::test]
async fn the_run_form_names_inputs_after_parameters_and_shows_every_problem() {
    let srv = Server::start().await;
    let admin = srv.token("ann", &["admin"]).await;
    publish_deploy(&srv, &admin).await;
    let ann = Page::sign_in(&srv, &admin).await;
    let (status, html) = ann.get("/runbooks/deploy/run").await;
    assert_eq!(status, StatusCode::OK);
    for expected in [
        "name=\"p.app\" type=\"text\"",
        "name=\"p.replicas\" type=\"number\" value=\"2\"",
        "min=\"1\" max=\"5\" step=\"1\"",
        "<select id=\"p-env\" name=\"p.env\" required>",
        "<option value=\"production\">production</option>",
        "type=\"checkbox\" id=\"p-canary\" name=\"p.canary\" value=\"true\" checked",
        "name=\"p.pw\" type=\"password\"",
        ">Run</button>",
    ] {
        assert!(html.contains(expected), "{expected} in {html}");
    }
    let key = between(&html, "name=\"idempotency_key\" value=\"", "\"").to_string();

    // Every problem at once, each at its input; what was typed stays.
    let bad = ann.post("/runbooks/deploy/run", &[("p.app", "Web1"), ("p.replicas", "9"), ("action", "run")]).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let page = bad.text().await.unwrap();
    assert!(page.contains("3 invalid parameter(s)"), "{page}");
    assert!(page.contains("id=\"err-app\""), "{page}");
    assert!(page.contains("id=\"err-replicas\">9 is greater than the maximum 5"), "{page}");
    assert!(page.contains("id=\"err-env\""), "{page}");
    assert!(page.contains("value=\"Web1\""), "{page}");

    // The preview renders the steps (secrets masked) and queues nothing.
    let preview = ann
        .post(
            "/runbooks/deploy/run",
            &[("p.app", "web"), ("p.env", "staging"), ("p.pw", "hunter2"), ("action", "preview")],
        )
        .await;
    assert_eq!(preview.status(), StatusCode::OK);
    let page = preview.text().await.unwrap();
    assert!(page.contains("echo building web") && page.contains("ship web?"), "{page}");
    assert!(!page.contains("hunter2"), "{page}");
    // An action the form does not have starts nothing.
    let bogus = ann.post("/runbooks/deploy/run", &[("p.app", "web"), ("p.env", "staging"), ("action", "bogus")]).await;
    assert_eq!(bogus.status(), StatusCode::BAD_REQUEST);
    assert!(bogus.text().await.unwrap().contains("unknown action `bogus`: run or preview"));

    // Submitted twice with the form's key (a double click): one execution.
    let fields = [
        ("p.app", "web"),
        ("p.env", "staging"),
        ("p.canary", "false"),
        ("idempotency_key", key.as_str()),
        ("action", "run"),
    ];
    let first = ann.post("/runbooks/deploy/run", &fields).await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let to = first.headers()[LOCATION].to_str().unwrap().to_string();
    let again = ann.post("/runbooks/deploy/run", &fields).await;
    assert_eq!(again.headers()[LOCATION].to_str().unwrap(), to);
    let all = srv.store.executions(&opsbook_store::ExecutionFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].params["canary"], false, "an unticked box is false, not its default");
    assert_eq!(all[0].actor, "ann");
    srv.stop().await;
}

#[tokio::test]
async fn the_live_log_takes_over_where_the_page_ends() {
    let srv = Server::start().await;
    let admin = srv.token("ann", &["admin"]).await;
    let yaml = runbook(
        "count",
        "1.0.0",
        "  status: active\n",
        "",
        "    - id: count\n      run: for i in $(seq 1 30); do echo line $i; sleep 0.1; done\n",
    );
    assert!(srv.publish(&admin, &yaml).await.0.is_success());
    let ann = Page::sign_in(&srv, &admin).await;
    let (_, run) = srv.post("/api/v1/runbooks/count/executions", &admin, json!({})).await;
    let id = run["id"].as_str().unwrap().to_string();
    // Open the page while it runs: its stored lines, then the stream after the last.
    srv.wait_for(&id, &admin, |d| d["status"] == "running").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while srv.store.last_log_seq(&id).await.unwrap() < 1 {
        assert!(std::time::Instant::now() < deadline, "no line stored");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (_, html) = ann.get(&format!("/executions/{id}")).await;
    let after: i64 = between(&html, &format!("/executions/{id}/live?after="), "&").parse().unwrap();
    let shown: Vec<String> = html.split("data-seq=\"").skip(1).map(|s| s[..s.find('"').unwrap()].to_string()).collect();
    assert_eq!(shown.last().map(|s| s.parse::<i64>().unwrap()), Some(after).filter(|a| *a > 0), "{html}");
    let resp = Page::client()
        .get(format!("{}/executions/{id}/live?after={after}&status=running", srv.url))
        .header(COOKIE, &ann.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let stream = resp.text().await.unwrap();
    let streamed: Vec<String> =
        stream.split("data-seq=\"").skip(1).map(|s| s[..s.find('"').unwrap()].to_string()).collect();
    let all: Vec<i64> = shown.iter().chain(&streamed).map(|s| s.parse().unwrap()).collect();
    let expected: Vec<i64> = (1..=*all.last().unwrap()).collect();
    assert_eq!(all, expected, "every line once, in order");
    assert!(stream.contains("event: status\ndata: succeeded"), "{stream}");
    let q = opsbook_store::LogQuery { execution_id: id.clone(), limit: 100, ..Default::default() };
    assert!(srv.store.logs(&q).await.unwrap().iter().any(|l| l.line == "line 30"));
    // Earlier pages: the lines before a sequence number; before the first, nothing.
    let (_, page) = ann.get(&format!("/executions/{id}/log?before=5")).await;
    let seqs: Vec<&str> = page.split("data-seq=\"").skip(1).map(|s| &s[..s.find('"').unwrap()]).collect();
    assert_eq!(seqs, ["1", "2", "3", "4"]);
    for before in ["1", "0", "-5"] {
        let (status, page) = ann.get(&format!("/executions/{id}/log?before={before}")).await;
        assert_eq!((status, page.as_str()), (StatusCode::OK, ""), "before={before}");
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_gate_shows_why_and_an_admin_breaks_glass_from_the_page() {
    let (srv, incident) = crate::gates::gated_server().await;
    let admin = srv.token("root", &["admin"]).await;
    let operator = srv.token("olga", &["operator"]).await;
    crate::gates::set_incident(&incident, "database failover in progress");
    let book = runbook(
        "deploy",
        "1.0.0",
        "  status: active\n",
        "",
        "    - id: health\n      gate: { use: prod, poll: 200ms, max_wait: 1h }\n    - id: ship\n      run: echo shipped\n",
    );
    assert!(srv.publish(&admin, &book).await.0.is_success());
    let (_, sub) = srv.post("/api/v1/runbooks/deploy/executions", &operator, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    srv.wait_for(&id, &admin, |d| d["status"] == "waiting").await;

    let root = Page::sign_in(&srv, &admin).await;
    let olga = Page::sign_in(&srv, &operator).await;
    let (_, page) = root.get(&format!("/executions/{id}")).await;
    assert!(page.contains("What blocks the gate") && page.contains("database failover in progress"), "{page}");
    assert!(page.contains(&format!("action=\"/executions/{id}/override\"")), "{page}");
    let (_, page) = olga.get(&format!("/executions/{id}")).await;
    assert!(!page.contains("/override\""), "only an admin breaks glass: {page}");
    let (_, gates) = olga.get("/gates").await;
    assert!(gates.contains("/gates/prod/verdict") && gates.contains(&format!("/executions/{id}")), "{gates}");
    let (status, verdict) = olga.get("/gates/prod/verdict").await;
    assert_eq!(status, StatusCode::OK);
    assert!(verdict.contains("blocked") && verdict.contains("database failover in progress"), "{verdict}");

    let path = format!("/executions/{id}/override");
    assert_eq!(olga.post(&path, &[("reason", "me too")]).await.status(), StatusCode::FORBIDDEN);
    let blank = root.post(&path, &[("reason", "  ")]).await;
    assert_eq!(blank.status(), StatusCode::BAD_REQUEST);
    assert!(blank.text().await.unwrap().contains("an override needs a reason"));
    let done = root.post(&path, &[("reason", "the failover is the fix")]).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let doc = srv.wait_for(&id, &admin, |d| d["status"] == "succeeded").await;
    assert_eq!(doc["steps"][0]["outputs"]["overridden_by"], "root");
    let audit = srv
        .store
        .audit(&opsbook_store::AuditFilter { action: Some("gate.override".into()), limit: 5, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(audit[0].details["reason"], "the failover is the fix");
    srv.stop().await;
}

#[tokio::test]
async fn a_rollback_from_the_page_asks_for_the_secrets_it_needs() {
    let srv = Server::start().await;
    let admin = srv.token("root", &["admin"]).await;
    let viewer = srv.token("vic", &["viewer"]).await;
    let marker = srv.dir.path().join("made");
    let book = runbook(
        "undo",
        "1.0.0",
        "  status: active\n",
        "    pw: { type: secret, required: true }\n",
        &format!(
            "    - id: make\n      run: touch {m}\n      rollback: {{ run: \"test {{{{ params.pw }}}} = hunter2 && rm {m}\" }}\n    - id: boom\n      run: exit 3\n",
            m = marker.display()
        ),
    )
    .replace("spec:\n", "spec:\n  on_failure: stop\n");
    assert!(srv.publish(&admin, &book).await.0.is_success());
    let (_, sub) = srv.post("/api/v1/runbooks/undo/executions", &admin, json!({ "params": { "pw": "hunter2" } })).await;
    let id = sub["id"].as_str().unwrap().to_string();
    assert_eq!(srv.settled(&id, &admin).await["status"], "failed");
    assert!(marker.exists());

    let vic = Page::sign_in(&srv, &viewer).await;
    let (_, page) = vic.get(&format!("/executions/{id}")).await;
    assert!(!page.contains("Roll back"), "{page}");
    let path = format!("/executions/{id}/rollback");
    assert_eq!(vic.post(&path, &[("secret.pw", "hunter2")]).await.status(), StatusCode::FORBIDDEN);

    let root = Page::sign_in(&srv, &admin).await;
    let (_, page) = root.get(&format!("/executions/{id}")).await;
    assert!(page.contains("Roll back") && page.contains("name=\"secret.pw\" required"), "{page}");
    let missing = root.post(&path, &[]).await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let text = missing.text().await.unwrap();
    assert!(text.contains("is a secret and is never stored"), "{text}");
    let wrong = root.post(&path, &[("secret.pw", "guess")]).await;
    assert!(wrong.text().await.unwrap().contains("differs from the value the execution started with"));
    assert!(marker.exists(), "nothing was done");
    assert_eq!(root.post(&path, &[("secret.pw", "hunter2")]).await.status(), StatusCode::SEE_OTHER);
    srv.wait_for(&id, &admin, |d| d["rollback"]["status"] == "succeeded").await;
    assert!(!marker.exists(), "rolled back on the server");
    let (_, page) = root.get(&format!("/executions/{id}")).await;
    assert!(!page.contains("Roll back</button>"), "once only: {page}");
    assert!(!page.contains("hunter2"));
    srv.stop().await;
}

/// The execution page shows a table of a step's targets, and of a parallel step's branches.
#[tokio::test]
async fn the_execution_page_lists_targets_and_branches() {
    let srv = Server::start().await;
    let admin = srv.token("ann", &["admin"]).await;
    let yaml = runbook(
        "fleet",
        "1.0.0",
        "  status: active\n",
        "",
        "    - id: fan\n      required: false\n      run: test {{ target }} != web-2\n      targets: { hosts: [web-1, web-2], via: local, max_concurrency: 2 }\n    - id: warm\n      parallel:\n        steps:\n          - { id: cache_eu, run: \"true\" }\n          - { id: cache_us, run: \"true\" }\n",
    );
    assert!(srv.publish(&admin, &yaml).await.0.is_success());
    let ann = Page::sign_in(&srv, &admin).await;
    let (_, run) = srv.post("/api/v1/runbooks/fleet/executions", &admin, json!({})).await;
    let id = run["id"].as_str().unwrap().to_string();
    assert_eq!(srv.settled(&id, &admin).await["status"], "succeeded");
    let (status, html) = ann.get(&format!("/executions/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<th>Target</th>") && html.contains("<th>Branch</th>"), "{html}");
    assert!(html.contains("<td><code>web-2</code></td><td><span class=\"badge failed\">failed</span></td>"), "{html}");
    assert!(html.contains("<td>exited with code 1</td>"), "{html}");
    assert!(
        html.contains("<td><code>cache_us</code></td><td><span class=\"badge succeeded\">succeeded</span></td>"),
        "{html}"
    );
    srv.stop().await;
}

/// The execution page of a parent links to its child and lists the child's steps; the
/// child's page links back.
#[tokio::test]
async fn the_execution_page_links_parent_and_child() {
    let srv = Server::start().await;
    let admin = srv.token("ann", &["admin"]).await;
    let child = runbook("db-migrate", "1.3.0", "  status: active\n", "", "    - id: apply\n      run: exit 4\n");
    assert!(srv.publish(&admin, &child).await.0.is_success());
    let parent = runbook(
        "release",
        "1.0.0",
        "  status: active\n",
        "",
        "    - id: migrate\n      runbook: { name: db-migrate, version: \"^1\" }\n",
    );
    assert!(srv.publish(&admin, &parent).await.0.is_success());
    let ann = Page::sign_in(&srv, &admin).await;
    let (_, run) = srv.post("/api/v1/runbooks/release/executions", &admin, json!({})).await;
    let id = run["id"].as_str().unwrap().to_string();
    let doc = srv.settled(&id, &admin).await;
    assert_eq!(doc["status"], "failed");
    let child_id = doc["steps"][0]["child"]["id"].as_str().unwrap().to_string();
    let (status, html) = ann.get(&format!("/executions/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let link = format!(
        "<a href=\"/executions/{child_id}\" class=\"child-link\">db-migrate v1.3.0 · <code>{child_id}</code></a>"
    );
    assert!(html.contains(&link), "{html}");
    assert!(html.contains("<td><code>apply</code></td><td><span class=\"badge failed\">failed</span></td>"), "{html}");
    assert!(html.contains("<td>exited with code 4</td>"), "{html}");
    let (_, html) = ann.get(&format!("/executions/{child_id}")).await;
    assert!(
        html.contains(&format!(
            "Started by step <code>migrate</code> of <a href=\"/executions/{id}\" id=\"parent-link\">"
        )),
        "{html}"
    );
    srv.stop().await;
}

/// A parameter may be named like the run form's own fields (`action`, `csrf`,
/// `idempotency_key`): the form names its inputs `p.NAME`, so both reach the server.
#[tokio::test]
async fn parameters_named_like_the_forms_own_fields_run() {
    let srv = Server::start().await;
    let admin = srv.token("ann", &["admin"]).await;
    let params = "    action: { type: enum, values: [start, stop], required: true }\n    csrf: { type: string, required: true }\n    idempotency_key: { type: string, default: k }\n";
    let yaml = runbook(
        "collide",
        "1.0.0",
        "  status: active\n",
        params,
        "    - id: s\n      run: echo {{ params.action }} {{ params.csrf }}\n",
    );
    assert!(srv.publish(&admin, &yaml).await.0.is_success());
    let ann = Page::sign_in(&srv, &admin).await;
    let (_, html) = ann.get("/runbooks/collide/run").await;
    let key = between(&html, "name=\"idempotency_key\" value=\"", "\"").to_string();
    let fields = [
        ("p.action", "stop"),
        ("p.csrf", "mine"),
        ("p.idempotency_key", "x"),
        ("idempotency_key", key.as_str()),
        ("action", "run"),
    ];
    let sent = ann.post("/runbooks/collide/run", &fields).await;
    assert_eq!(sent.status(), StatusCode::SEE_OTHER);
    let all = srv.store.executions(&opsbook_store::ExecutionFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(all[0].params, serde_json::json!({ "action": "stop", "csrf": "mine", "idempotency_key": "x" }));
    // A field for no parameter, or a parameter twice, is refused (not run on defaults).
    for (fields, says) in [
        (vec![("p.action", "stop"), ("p.csrf", "c"), ("p.zzz", "1"), ("action", "run")], "has no parameter `zzz`"),
        (
            vec![("p.action", "stop"), ("p.action", "start"), ("p.csrf", "c"), ("action", "run")],
            "`action` is given twice",
        ),
    ] {
        let sent = ann.post("/runbooks/collide/run", &fields).await;
        assert_eq!(sent.status(), StatusCode::BAD_REQUEST);
        assert!(sent.text().await.unwrap().contains(says), "{says}");
    }
    srv.stop().await;
}

/// What the router refuses on a page (an unknown address, a method, a query string that
/// does not read) is the UI's error page, not the API's JSON or plain text.
#[tokio::test]
async fn router_refusals_are_error_pages() {
    let srv = Server::start().await;
    let admin = srv.token("ann", &["admin"]).await;
    let page = Page::sign_in(&srv, &admin).await;
    for (path, status, says) in [
        ("/analytics?days=bogus", StatusCode::BAD_REQUEST, "days"),
        ("/audit?after=abc", StatusCode::BAD_REQUEST, "after"),
        ("/nonexistent", StatusCode::NOT_FOUND, "no such endpoint: /nonexistent"),
        ("/logout", StatusCode::METHOD_NOT_ALLOWED, "GET is not served at /logout"),
        // Filters that could only mislead are refused, saying why.
        ("/runbooks?status=bogus", StatusCode::BAD_REQUEST, "unknown status `bogus`"),
        ("/runbooks?type=bogus", StatusCode::BAD_REQUEST, "unknown type `bogus`"),
        ("/executions?window=bogus", StatusCode::BAD_REQUEST, "unknown window `bogus`: use 24h, 7d, 30d or all"),
        ("/analytics?days=0", StatusCode::BAD_REQUEST, "days: 0 is not from 1 to 3650"),
    ] {
        let (got, html) = page.get(path).await;
        assert_eq!(got, status, "{path}: {html}");
        assert!(html.starts_with("<!doctype html>") && html.contains(says), "{path}: {html}");
    }
    // A rating that is no number says what it was given.
    let book = runbook("quick", "1.0.0", "", "", "    - id: a\n      run: \"true\"\n");
    assert!(srv.publish(&admin, &book).await.0.is_success());
    let (_, sub) = srv.post("/api/v1/runbooks/quick/executions", &admin, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    srv.settled(&id, &admin).await;
    let rated = page.post(&format!("/executions/{id}/feedback"), &[("rating", "abc")]).await;
    assert_eq!(rated.status(), StatusCode::BAD_REQUEST);
    assert!(rated.text().await.unwrap().contains("rating: `abc` is not a number from 1 to 5"));
    srv.stop().await;
}

/// The execution page offers a decision only to who may make it, and says where the
/// approvals stand.
#[tokio::test]
async fn the_decision_is_offered_to_who_may_make_it() {
    let srv = Server::start().await;
    let ann = srv.token("ann", &["admin"]).await;
    let bob = srv.token("bob", &["approver"]).await;
    let book = runbook("two", "1.0.0", "", "", "    - id: gate\n      approval: { min_approvals: 2 }\n");
    assert!(srv.publish(&ann, &book).await.0.is_success());
    let (_, sub) = srv.post("/api/v1/runbooks/two/executions", &ann, json!({})).await;
    let id = sub["id"].as_str().unwrap().to_string();
    srv.wait_for(&id, &ann, |d| d["status"] == "waiting").await;
    let path = format!("/executions/{id}");
    let (_, html) = Page::sign_in(&srv, &ann).await.get(&path).await;
    assert!(!html.contains("value=\"approve\""), "the requester gets no Approve button: {html}");
    assert!(html.contains("Step `gate` waits for approval (0 of 2 approvals). You asked for this run"), "{html}");
    let bob_page = Page::sign_in(&srv, &bob).await;
    let (_, html) = bob_page.get(&path).await;
    assert!(html.contains("value=\"approve\"") && html.contains("(0 of 2 approvals so far)"), "{html}");
    let csrf = between(&html, "name=\"csrf\" value=\"", "\"").to_string();
    let decided = bob_page.post(&format!("/executions/{id}/decide"), &[("csrf", &csrf), ("decision", "approve")]).await;
    assert!(decided.status().is_redirection(), "{}", decided.status());
    let (_, html) = bob_page.get(&path).await;
    assert!(!html.contains("value=\"approve\""), "{html}");
    assert!(html.contains("(1 of 2 approvals). You have decided on it"), "{html}");
    // The decision's time as every time on the pages is: readable, with its zone.
    let decision = between(&html, "<strong>bob</strong> approved", "</li>").to_string();
    assert!(decision.contains(" UTC\">") && decision.contains(" UTC</time>"), "{decision}");
    srv.stop().await;
}
