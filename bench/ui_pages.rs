//! Benchmark: the web UI's pages over one million executions.
//!
//! Publishes 50 runbooks, fills a temporary SQLite database with 1,000,000 finished
//! executions of them over a year (and a few waiting on an approval), signs in, then
//! fetches every page through a real server on loopback. Prints each page's size (the
//! HTML, and with its script and style sheet on a first visit) and its time p50/p99.
//! Budgets: under 100 kB transferred, p99 under 20 ms.
//!
//!   bench/ui_pages                 # ROWS=1000000 ROUNDS=50

use std::time::Instant;

#[path = "common/figures.rs"]
mod figures;
#[path = "common/fill.rs"]
mod fill;
#[path = "common/server.rs"]
mod server;

use figures::env;
use opsbook_server::{Config, auth};
use opsbook_store::ServerStore;

const RUNBOOKS: i64 = 50;

fn runbook(i: i64) -> String {
    format!(
        "apiVersion: opsbook/v1\nkind: Runbook\nmetadata:\n  name: runbook-{i}\n  title: Runbook number {i}\n  \
         type: deployment\n  version: 1.0.0\n  status: active\n  owner: team-{}\n  tags: [web, tier-{}]\nspec:\n  \
         parameters:\n    app: {{ type: string, required: true, pattern: \"[a-z]+\" }}\n    \
         env: {{ type: enum, values: [staging, production], required: true }}\n  steps:\n    \
         - id: build\n      run: echo building {{{{ params.app }}}}\n    \
         - id: ship\n      approval: {{ message: \"ship {{{{ params.app }}}}?\" }}\n    \
         - id: done\n      run: echo shipped\n      rollback: {{ run: echo undone }}\n",
        i % 7,
        i % 3
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rows = env("ROWS", 1_000_000) as i64;
    let rounds = env("ROUNDS", 50) as usize;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.db");
    let store = opsbook_store_sqlite::SqliteStore::open(&path).await.expect("database");
    let config = Config { workers: 2, metrics_listen: String::new(), workdir: dir.path().into(), ..Config::default() };
    let server = server::start(store.clone(), config).await;
    let url = server.url.clone();
    let admin = auth::generate("bench", vec!["admin".into()], None);
    store.create_token(&admin.record, &admin.hash).await.expect("token");
    let operator = auth::generate("oper", vec!["operator".into()], None);
    store.create_token(&operator.record, &operator.hash).await.expect("token");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let mut shas = Vec::new();
    for i in 0..RUNBOOKS {
        let resp = http
            .post(format!("{url}/api/v1/runbooks"))
            .bearer_auth(&admin.secret)
            .header("content-type", "application/yaml")
            .body(runbook(i))
            .send()
            .await
            .expect("publish");
        let doc: serde_json::Value = resp.json().await.expect("json");
        shas.push(doc["sha256"].as_str().expect("published").to_string());
    }
    // A few real executions, waiting on their approval (the approvals and gates pages).
    let mut waiting = Vec::new();
    for i in 0..5 {
        let resp = http
            .post(format!("{url}/api/v1/runbooks/runbook-{i}/executions"))
            .bearer_auth(&operator.secret)
            .json(&serde_json::json!({ "params": { "app": "web", "env": "staging" } }))
            .send()
            .await
            .expect("submit");
        let doc: serde_json::Value = resp.json().await.expect("json");
        waiting.push(doc["id"].as_str().expect("queued").to_string());
    }
    let statuses = ["succeeded", "succeeded", "succeeded", "succeeded", "failed", "cancelled"];
    let filled = fill::executions(
        &path,
        &fill::Fill {
            rows,
            runbooks: RUNBOOKS,
            statuses: &statuses,
            sha: &|n| shas[n as usize].clone(),
            params: "{\"app\":\"web\",\"env\":\"staging\"}",
        },
    );

    // Sign in as a browser does.
    let resp = http.post(format!("{url}/login")).form(&[("token", admin.secret.as_str())]).send().await.expect("login");
    let cookie = resp.headers()["set-cookie"].to_str().expect("cookie").split(';').next().expect("pair").to_string();
    let fetch = |path: String, gzip: bool| {
        let (http, url, cookie) = (http.clone(), url.clone(), cookie.clone());
        async move {
            let t = Instant::now();
            let mut req = http.get(format!("{url}{path}")).header("cookie", cookie);
            if gzip {
                // As a browser asks: the body stays compressed here, as it travels.
                req = req.header("accept-encoding", "gzip");
            }
            let resp = req.send().await.expect("get");
            let status = resp.status();
            let body = resp.bytes().await.expect("body");
            assert!(status.is_success(), "{path}: {status}");
            (t.elapsed().as_secs_f64() * 1000.0, body)
        }
    };
    let get = |path: String| fetch(path, false);
    // What a first visit also loads (each page links the same three, kept for a year).
    let (_, base) = get("/runbooks".into()).await;
    let base = String::from_utf8_lossy(&base).into_owned();
    let mut assets = 0;
    for attr in ["<link rel=\"stylesheet\" href=\"", "<script src=\""] {
        for part in base.split(attr).skip(1) {
            let href = &part[..part.find('"').expect("quoted")];
            assets += fetch(href.to_string(), true).await.1.len();
        }
    }
    let (_, first) = get("/executions?window=all".into()).await;
    let first = String::from_utf8_lossy(&first).into_owned();
    let deep_cursor = {
        let mut cursor = first.split("cursor=").nth(1).map(|c| c[..c.find('"').expect("end")].to_string());
        for _ in 0..19 {
            let Some(c) = cursor.clone() else { break };
            let (_, page) = get(format!("/executions?window=all&cursor={c}")).await;
            let page = String::from_utf8_lossy(&page).into_owned();
            cursor = page.split("cursor=").nth(1).map(|c| c[..c.find('"').expect("end")].to_string());
        }
        cursor.unwrap_or_default()
    };
    let pages = [
        ("runbooks", "/runbooks".to_string()),
        ("runbooks search", "/runbooks?q=number+7".to_string()),
        ("runbook", "/runbooks/runbook-7".to_string()),
        ("run form", "/runbooks/runbook-7/run".to_string()),
        ("executions", "/executions".to_string()),
        ("executions filtered", "/executions?runbook=runbook-7&status=failed&window=all".to_string()),
        ("executions page 21", format!("/executions?window=all&cursor={deep_cursor}")),
        ("execution", format!("/executions/{}", waiting[0])),
        ("approvals", "/approvals".to_string()),
        ("gates", "/gates".to_string()),
        ("analytics", "/analytics".to_string()),
        ("audit", "/audit".to_string()),
        ("schedules", "/schedules".to_string()),
    ];
    println!(
        "ui_pages: {rows} executions (filled in {:.1} s), {rounds} rounds per page; script and style: {:.1} kB gzipped",
        filled.as_secs_f64(),
        assets as f64 / 1024.0
    );
    println!(
        "  {:<20} {:>8} {:>8} {:>12} {:>9} {:>8} {:>8}",
        "page", "HTML kB", "gzip kB", "first visit", "cold ms", "p50 ms", "p99 ms"
    );
    for (name, path) in &pages {
        // The first fetch, apart: caches (SQLite's pages, the analytics summary) fill.
        let (cold, _) = get(path.clone()).await;
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..rounds {
            let (ms, body) = get(path.clone()).await;
            size = body.len();
            times.push(ms);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let p50 = times[times.len() / 2];
        let p99 = times[((times.len() as f64 * 0.99).ceil() as usize).clamp(1, times.len()) - 1];
        let gz = fetch(path.clone(), true).await.1.len();
        let kb = size as f64 / 1024.0;
        let first = (gz + assets) as f64 / 1024.0;
        let gz = gz as f64 / 1024.0;
        println!("  {name:<20} {kb:>8.1} {gz:>8.1} {first:>9.1} kB {cold:>9.2} {p50:>8.2} {p99:>8.2}");
    }
    server.stop().await;
}
