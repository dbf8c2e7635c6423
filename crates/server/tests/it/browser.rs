//! The web UI in a real headless Chromium, driven over WebDriver (Debian's chromium and
//! chromium-driver, which ./scripts/test installs): sign in, search, the run form's
//! errors, a run followed live and approved by a second person, cancel, what a viewer
//! may not do, a cross-site form, a 50 MB log, and every page at phone width.
//!
//! With OPSBOOK_SCREENSHOTS=DIR, `every_page_fits_a_phone_and_a_desktop` saves each
//! page there (scripts/screenshots writes docs/ui/).

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use opsbook_store::{LogLine, Phase, Store, Stream};
use serde_json::json;

use crate::support::{Server, runbook};
use crate::ui::{DEPLOY, PARAMS, publish_deploy};

/// A chromedriver of our own on a free loopback port, in a process group of its own with
/// the browsers it starts; the whole group is ended when dropped (a test that fails
/// before closing its browser leaves none behind).
struct Driver {
    child: Child,
    url: String,
    profiles: tempfile::TempDir,
}

impl Driver {
    async fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; ./scripts/test installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Driver { child, url, profiles: tempfile::tempdir().unwrap() }
    }

    /// A new browser (its own profile: its own cookies), `width` pixels wide.
    async fn browser(&self, width: u32) -> Client {
        let profile = tempfile::tempdir_in(self.profiles.path()).unwrap().keep();
        let mut caps = json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--disable-extensions", format!("--window-size={width},900"),
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        if width < 500 {
            // A window is never narrower than 500 px: a phone's viewport is emulated.
            caps["goog:chromeOptions"]["mobileEmulation"] =
                json!({ "deviceMetrics": { "width": width, "height": 812, "pixelRatio": 2.0, "touch": true } });
        }
        let caps = caps.as_object().unwrap().clone().into_iter().collect();
        ClientBuilder::rustls().unwrap().capabilities(caps).connect(&self.url).await.expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is chromedriver's PID: it and every browser it started.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

async fn sign_in(b: &Client, srv: &Server, token: &str) {
    b.goto(&format!("{}/runbooks", srv.url)).await.unwrap();
    let field = b.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("input[name=token]")).await.unwrap();
    field.send_keys(token).await.unwrap();
    b.find(Locator::Css("form button[type=submit]")).await.unwrap().click().await.unwrap();
    b.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("header.top")).await.unwrap();
}

/// Waits until `css` exists and its text contains `text`.
async fn wait_text(b: &Client, css: &str, text: &str) {
    let start = Instant::now();
    loop {
        if let Ok(e) = b.find(Locator::Css(css)).await
            && e.text().await.is_ok_and(|t| t.contains(text))
        {
            return;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let page = b.source().await.unwrap_or_default();
            panic!("no `{text}` in `{css}` at {}: {page}", b.current_url().await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sign_in_search_run_follow_and_approve_in_a_browser() {
    let srv = Server::start().await;
    let admin = srv.token("root", &["admin"]).await;
    let ann = srv.token("ann", &["operator"]).await;
    let bob = srv.token("bob", &["approver"]).await;
    publish_deploy(&srv, &admin).await;
    let other = runbook("nightly-backup", "1.0.0", "  status: active\n", "", "    - id: b\n      run: echo ok\n");
    assert!(srv.publish(&admin, &other).await.0.is_success());
    let driver = Driver::start().await;
    let a = driver.browser(1280).await;

    sign_in(&a, &srv, &ann).await;
    assert!(a.current_url().await.unwrap().path().ends_with("/runbooks"));
    wait_text(&a, "header .user", "ann").await;
    // Search: the same full-text search as the API.
    let q = a.find(Locator::Css("input[name=q]")).await.unwrap();
    q.send_keys("backup").await.unwrap();
    a.find(Locator::Css("form[role=search] button")).await.unwrap().click().await.unwrap();
    wait_text(&a, "table.list tbody", "nightly-backup").await;
    assert!(!a.find(Locator::Css("table.list tbody")).await.unwrap().text().await.unwrap().contains("deploy\n"));

    // The run form: nothing filled in, every problem shown at its input.
    a.goto(&format!("{}/runbooks/deploy", srv.url)).await.unwrap();
    a.find(Locator::LinkText("Run")).await.unwrap().click().await.unwrap();
    let run = a.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("button[value=run]")).await.unwrap();
    run.click().await.unwrap();
    wait_text(&a, "#form-error", "2 invalid parameter(s)").await;
    wait_text(&a, "#err-app", "required").await;
    wait_text(&a, "#err-env", "required").await;
    // Filled in: the run starts and its page follows it live.
    a.find(Locator::Css("input[id=p-app]")).await.unwrap().send_keys("web").await.unwrap();
    a.find(Locator::Css("select[id=p-env]")).await.unwrap().select_by_value("production").await.unwrap();
    a.find(Locator::Css("button[value=run]")).await.unwrap().click().await.unwrap();
    wait_text(&a, "#status", "waiting").await;
    wait_text(&a, "#log", "building web").await;
    let id = a.current_url().await.unwrap().path().rsplit('/').next().unwrap().to_string();
    assert!(a.find_all(Locator::Css("button[value=approve]")).await.unwrap().is_empty(), "ann may not approve");

    // A second person, in another browser, decides from the approvals page.
    let b = driver.browser(1280).await;
    sign_in(&b, &srv, &bob).await;
    b.goto(&format!("{}/approvals", srv.url)).await.unwrap();
    wait_text(&b, "table.list", "ship web?").await;
    b.find(Locator::Css("input[name=comment]")).await.unwrap().send_keys("go").await.unwrap();
    b.find(Locator::Css("button[value=approve]")).await.unwrap().click().await.unwrap();
    wait_text(&b, "table.list", "Nothing waits on an approval").await;

    // The first browser's page sees it through, colours and all.
    wait_text(&a, "#status", "succeeded").await;
    wait_text(&a, "#log", "shipped").await;
    let green = a.find(Locator::Css("#log span.b.f2")).await.unwrap();
    assert_eq!(green.text().await.unwrap(), "shipped");
    wait_text(&a, ".history", "bob approved").await;
    let exec = srv.store.execution(&id).await.unwrap();
    assert_eq!((exec.status.as_str(), exec.actor.as_str()), ("succeeded", "ann"));
    let approvals = srv.store.approvals(&id).await.unwrap();
    assert_eq!((approvals[0].approver.as_str(), approvals[0].comment.as_deref()), ("bob", Some("go")));

    // Cancel, confirmed in the dialog: the run stops and says so.
    let slow = runbook("slow", "1.0.0", "  status: active\n", "", "    - id: wait\n      run: sleep 30\n");
    assert!(srv.publish(&admin, &slow).await.0.is_success());
    let (_, started) = srv.post("/api/v1/runbooks/slow/executions", &ann, json!({})).await;
    let slow_id = started["id"].as_str().unwrap().to_string();
    srv.wait_for(&slow_id, &ann, |d| d["status"] == "running").await;
    a.goto(&format!("{}/executions/{slow_id}", srv.url)).await.unwrap();
    a.wait().for_element(Locator::Css("form[action$=cancel] button")).await.unwrap().click().await.unwrap();
    a.accept_alert().await.unwrap();
    wait_text(&a, "#status", "cancelled").await;
    assert_eq!(srv.store.execution(&slow_id).await.unwrap().status.as_str(), "cancelled");
    a.close().await.unwrap();
    b.close().await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn a_viewer_cannot_run_even_by_forging_and_other_sites_cannot_post() {
    let srv = Server::start().await;
    let admin = srv.token("root", &["admin"]).await;
    let viewer = srv.token("vic", &["viewer"]).await;
    publish_deploy(&srv, &admin).await;
    let driver = Driver::start().await;
    let v = driver.browser(1280).await;
    sign_in(&v, &srv, &viewer).await;
    v.goto(&format!("{}/runbooks/deploy", srv.url)).await.unwrap();
    wait_text(&v, "h1", "deploy").await;
    assert!(v.find_all(Locator::LinkText("Run")).await.unwrap().is_empty(), "no Run button for a viewer");
    // The viewer's own session posts the form anyway, token and all: 403 from the server.
    let status = v
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               const csrf = document.querySelector("input[name=csrf]").value;
               const body = new URLSearchParams({ csrf, "p.app": "web", "p.env": "staging", action: "run" });
               fetch("/runbooks/deploy/run", { method: "POST", body }).then(r => done(r.status));"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403));

    // Pages elsewhere with a form aimed here, which the browser sends. From another
    // site (localhost is not 127.0.0.1), SameSite=Strict keeps the cookie back; from
    // another origin of the same site (another port), the Origin check refuses it.
    let admin_browser = driver.browser(1280).await;
    sign_in(&admin_browser, &srv, &admin).await;
    let evil = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil_port = evil.local_addr().unwrap().port();
    let target = format!("{}/runbooks/deploy/run", srv.url);
    let page = format!(
        "<!doctype html><form method=post action=\"{target}\"><input name=app value=web>\
         <input name=env value=production><input name=action value=run><button id=go>go</button></form>"
    );
    let app = axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(page) }));
    let evil_server = tokio::spawn(async move { axum::serve(evil, app).await });
    admin_browser.goto(&format!("http://localhost:{evil_port}/")).await.unwrap();
    admin_browser.find(Locator::Id("go")).await.unwrap().click().await.unwrap();
    wait_text(&admin_browser, "main", "Sign in with an API token").await;
    admin_browser.goto(&format!("http://127.0.0.1:{evil_port}/")).await.unwrap();
    admin_browser.find(Locator::Id("go")).await.unwrap().click().await.unwrap();
    wait_text(&admin_browser, "body", "a form from another site is refused").await;
    let all = srv.store.executions(&opsbook_store::ExecutionFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert!(all.is_empty(), "nothing ran: {all:?}");
    evil_server.abort();
    v.close().await.unwrap();
    admin_browser.close().await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn a_50_mb_log_opens_at_its_tail_and_pages_back() {
    let srv = Server::start().await;
    let admin = srv.token("root", &["admin"]).await;
    let yaml = runbook("chatty", "1.0.0", "  status: active\n", "", "    - id: talk\n      run: echo first\n");
    assert!(srv.publish(&admin, &yaml).await.0.is_success());
    let (_, started) = srv.post("/api/v1/runbooks/chatty/executions", &admin, json!({})).await;
    let id = started["id"].as_str().unwrap().to_string();
    srv.settled(&id, &admin).await;
    // 50 MB more of it, as a noisy step would have written.
    let filler = "x".repeat(90);
    let mut seq = srv.store.last_log_seq(&id).await.unwrap();
    let mut bytes = 0usize;
    while bytes < 50 * 1024 * 1024 {
        let batch: Vec<LogLine> = (0..10_000)
            .map(|_| {
                seq += 1;
                bytes += 100;
                LogLine {
                    execution_id: id.clone(),
                    seq,
                    step_id: Some("talk".into()),
                    phase: Phase::Step,
                    attempt: 1,
                    stream: Stream::Stdout,
                    ts: opsbook_store::now_ms(),
                    line: format!("{seq:>8} {filler}"),
                }
            })
            .collect();
        srv.store.append_logs(&batch, None).await.unwrap();
    }
    let driver = Driver::start().await;
    let b = driver.browser(1280).await;
    sign_in(&b, &srv, &admin).await;
    b.goto(&format!("{}/executions/{id}", srv.url)).await.unwrap();
    wait_text(&b, "#log", &format!("{seq:>8}")).await;
    let shown = b.execute("return document.querySelectorAll('#log .l').length", vec![]).await.unwrap();
    assert_eq!(shown, json!(500), "the tail only");
    let size = b.execute("return performance.getEntriesByType('navigation')[0].transferSize", vec![]).await.unwrap();
    assert!(size.as_u64().unwrap() < 100_000, "the page stays small: {size}");
    // Earlier lines on demand, a page at a time, in order.
    b.find(Locator::Css("#log button.more")).await.unwrap().click().await.unwrap();
    let start = Instant::now();
    while b.execute("return document.querySelectorAll('#log .l').length", vec![]).await.unwrap() != json!(1000) {
        assert!(start.elapsed() < Duration::from_secs(20), "the earlier page did not arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seqs = b
        .execute("return Array.from(document.querySelectorAll('#log .l')).map(e => +e.dataset.seq)", vec![])
        .await
        .unwrap();
    let seqs: Vec<i64> = serde_json::from_value(seqs).unwrap();
    assert_eq!(seqs, ((seq - 999)..=seq).collect::<Vec<_>>());
    // The whole of it, as a download.
    let cookie = b.get_named_cookie("opsbook_session").await.unwrap();
    let raw = reqwest::Client::new()
        .get(format!("{}/executions/{id}/log.txt", srv.url))
        .header("cookie", format!("opsbook_session={}", cookie.value()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(raw.len() > 50 * 1024 * 1024, "{}", raw.len());
    assert!(raw.starts_with(b"[talk] first\n"));
    b.close().await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn every_page_fits_a_phone_and_a_desktop() {
    let srv = Server::start().await;
    let admin = srv.token("ann", &["admin"]).await;
    let bob = srv.token("bob", &["approver"]).await;
    publish_deploy(&srv, &admin).await;
    let v2 = runbook(
        "deploy",
        "1.1.0",
        "  status: active\n  owner: web-team\n  tags: [web]\n",
        PARAMS,
        &DEPLOY.replace("building", "compiling"),
    );
    assert!(srv.publish(&admin, &v2).await.0.is_success());
    let (_, done) = srv
        .post("/api/v1/runbooks/deploy/executions", &admin, json!({ "params": { "app": "web", "env": "staging" } }))
        .await;
    let (_, waiting) = srv
        .post("/api/v1/runbooks/deploy/executions", &admin, json!({ "params": { "app": "api", "env": "production" } }))
        .await;
    let done = done["id"].as_str().unwrap_or_else(|| panic!("{done}")).to_string();
    let waiting = waiting["id"].as_str().unwrap().to_string();
    srv.wait_for(&done, &admin, |d| d["status"] == "waiting").await;
    let (status, body) = srv
        .post(
            &format!("/api/v1/executions/{done}/approvals"),
            &bob,
            json!({ "decision": "approve", "comment": "looks right" }),
        )
        .await;
    assert!(status.is_success(), "{body}");
    srv.settled(&done, &admin).await;
    srv.wait_for(&waiting, &admin, |d| d["status"] == "waiting").await;
    let pages = [
        ("runbooks", "/runbooks".to_string()),
        ("runbook", "/runbooks/deploy?from=1.0.0&to=1.1.0".to_string()),
        ("run", "/runbooks/deploy/run".to_string()),
        ("executions", "/executions".to_string()),
        ("execution", format!("/executions/{done}")),
        ("approvals", "/approvals".to_string()),
        ("gates", "/gates".to_string()),
        ("analytics", "/analytics".to_string()),
        ("audit", "/audit".to_string()),
        ("schedules", "/schedules".to_string()),
    ];
    let shots = std::env::var_os("OPSBOOK_SCREENSHOTS").map(std::path::PathBuf::from);
    let driver = Driver::start().await;
    for width in [375, 1280] {
        let b = driver.browser(width).await;
        sign_in(&b, &srv, &admin).await;
        for (name, path) in &pages {
            b.goto(&format!("{}{path}", srv.url)).await.unwrap();
            b.wait().for_element(Locator::Css("main h1")).await.unwrap();
            let overflow = b
                .execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth", vec![])
                .await
                .unwrap();
            assert!(overflow.as_i64().unwrap() <= 0, "{path} is wider than {width} px by {overflow}");
            let inner = b.execute("return window.innerWidth", vec![]).await.unwrap();
            assert_eq!(inner, json!(width), "{path}");
            // The page's own scripts ran under its Content-Security-Policy.
            let htmx = b.execute("return typeof htmx", vec![]).await.unwrap();
            assert_eq!(htmx, json!("object"), "{path}");
            if *name == "execution" {
                // Shown in the browser's zone by the page script, UTC on hover.
                let local = b.find(Locator::Css("time[data-local]")).await.unwrap();
                assert!(local.attr("title").await.unwrap().unwrap().ends_with(" UTC"), "{path}");
            }
            if let Some(dir) = &shots {
                std::fs::create_dir_all(dir).unwrap();
                let png = b.screenshot().await.unwrap();
                let file = if width == 1280 { format!("{name}.png") } else { format!("{name}-phone.png") };
                std::fs::write(dir.join(file), png).unwrap();
            }
        }
        b.close().await.unwrap();
    }
    srv.stop().await;
}
