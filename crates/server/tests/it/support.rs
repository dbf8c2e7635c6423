//! A server per test, tokens for each role, and a small JSON client.
//!
//! The database is a SQLite file in the test's directory, or, with
//! `OPSBOOK_TEST_BACKEND=postgres`, a new database on the PostgreSQL server named by
//! `OPSBOOK_TEST_POSTGRES` (`./scripts/test` runs this suite once on each).

use std::time::{Duration, Instant};

use opsbook_server::{Config, Db, auth};
use opsbook_store::{DatabaseUrl, ServerStore};
use reqwest::StatusCode;
use serde_json::Value;

/// The backend the tests run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn current() -> Backend {
        match std::env::var("OPSBOOK_TEST_BACKEND").as_deref() {
            Ok("postgres") => Backend::Postgres,
            Ok("sqlite") | Err(_) => Backend::Sqlite,
            Ok(other) => panic!("OPSBOOK_TEST_BACKEND={other}: use sqlite or postgres"),
        }
    }
}

/// The database of a test directory: made on first use and remembered in the directory,
/// so a restarted server (`start_in`) finds the same one.
pub async fn database_of(dir: &std::path::Path) -> DatabaseUrl {
    let remembered = dir.join("database-url");
    if let Ok(url) = std::fs::read_to_string(&remembered) {
        return DatabaseUrl::parse(&url).unwrap();
    }
    let url = match Backend::current() {
        Backend::Sqlite => format!("sqlite://{}", dir.join("opsbook.db").display()),
        Backend::Postgres => opsbook_store_postgres::testing::fresh_database().await,
    };
    std::fs::write(&remembered, &url).unwrap();
    DatabaseUrl::parse(&url).unwrap()
}

/// Runs one statement on a test's database over a connection of its own (as another
/// process, or an attacker with database access, would).
pub async fn sql(url: &DatabaseUrl, statement: &str) {
    match url {
        DatabaseUrl::Sqlite(path) => {
            rusqlite::Connection::open(path).unwrap().execute_batch(statement).unwrap();
        }
        DatabaseUrl::Postgres(url) => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string())).execute(&mut conn).await.unwrap();
        }
    }
}

/// The secret key of test servers (64 hex digits).
pub const TEST_KEY: &str = "5e0c2f8a1b3d4c6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6";

pub struct Server {
    pub url: String,
    pub metrics_url: String,
    pub dir: tempfile::TempDir,
    pub database: DatabaseUrl,
    pub store: Db,
    pub state: opsbook_server::AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    http: reqwest::Client,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(|_| {}).await
    }

    pub async fn start_with(change: impl FnOnce(&mut Config)) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), change).await
    }

    /// Starts on an existing directory (and its database), e.g. after a restart.
    pub async fn start_in(dir: tempfile::TempDir, change: impl FnOnce(&mut Config)) -> Server {
        let database = database_of(dir.path()).await;
        let store = opsbook_store_any::open(&database).await.unwrap();
        let mut config = Config {
            workers: 2,
            workdir: dir.path().to_path_buf(),
            shutdown_grace: "5s".into(),
            kill_grace: "1s".into(),
            // One key for every test server, so a restarted one opens what it sealed.
            secret_keys: Some(TEST_KEY.into()),
            ..Config::default()
        };
        change(&mut config);
        let state = opsbook_server::state(store.clone(), config);
        let shared = state.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics_url = format!("http://{}/metrics", metrics.local_addr().unwrap());
        let task = tokio::spawn(opsbook_server::serve(state, listener, Some(metrics), async {
            let _ = rx.await;
        }));
        Server {
            url,
            metrics_url,
            dir,
            database,
            store,
            state: shared,
            stop: Some(tx),
            task: Some(task),
            // Idle connections are dropped before the server's idle limit (10 s) closes
            // them: one reused as the server closes it fails the request.
            http: reqwest::Client::builder().pool_idle_timeout(std::time::Duration::from_secs(5)).build().unwrap(),
        }
    }

    pub async fn stop(self) {
        self.stop_keep_dir().await;
    }

    /// Stops the server (graceful shutdown) and hands back its directory.
    pub async fn stop_keep_dir(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        self.dir
    }

    /// Another store on this server's database (as a second server would open it).
    pub async fn open_again(&self) -> Db {
        opsbook_store_any::open(&self.database).await.unwrap()
    }

    /// Runs one statement on this server's database behind its back.
    pub async fn sql(&self, statement: &str) {
        sql(&self.database, statement).await
    }

    /// A token for `user` with these roles.
    pub async fn token(&self, user: &str, roles: &[&str]) -> String {
        let t = auth::generate(user, roles.iter().map(|r| r.to_string()).collect(), None);
        self.store.create_token(&t.record, &t.hash).await.unwrap();
        t.secret
    }

    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Body>) -> (StatusCode, Value) {
        let mut req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req = match body {
            Some(Body::Json(v)) => req.json(&v),
            Some(Body::Yaml(t)) => req.header("content-type", "application/yaml").body(t),
            Some(Body::Bytes(b)) => req.header("content-type", "application/vnd.opsbook.bundle").body(b),
            None => req,
        };
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call("GET", path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", path, Some(token), Some(Body::Json(body))).await
    }

    /// Publishes with a bundle of files (uploaded before).
    pub async fn publish_with(&self, token: &str, yaml: &str, bundle: Option<&str>) -> (StatusCode, Value) {
        let path = match bundle {
            Some(sha) => format!("/api/v1/runbooks?bundle={sha}"),
            None => "/api/v1/runbooks".to_string(),
        };
        self.call("POST", &path, Some(token), Some(Body::Yaml(yaml.to_string()))).await
    }

    pub async fn publish(&self, token: &str, yaml: &str) -> (StatusCode, Value) {
        self.call("POST", "/api/v1/runbooks", Some(token), Some(Body::Yaml(yaml.to_string()))).await
    }

    /// Polls the execution until `done` says so (at most 60 s: it only catches hangs).
    pub async fn wait_for(&self, id: &str, token: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (_, doc) = self.get(&format!("/api/v1/executions/{id}"), token).await;
            if done(&doc) {
                return doc;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting on {id}: {doc}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn settled(&self, id: &str, token: &str) -> Value {
        self.wait_for(id, token, |d| !matches!(d["status"].as_str(), Some("queued" | "running"))).await
    }
}

pub enum Body {
    Json(Value),
    Yaml(String),
    Bytes(Vec<u8>),
}

pub fn runbook(name: &str, version: &str, extra_meta: &str, params: &str, steps: &str) -> String {
    format!(
        "apiVersion: opsbook/v1\nkind: Runbook\nmetadata:\n  name: {name}\n  type: deployment\n  version: {version}\n{extra_meta}spec:\n{}  steps:\n{steps}",
        if params.is_empty() { String::new() } else { format!("  parameters:\n{params}") }
    )
}

/// An RFC 3339 time of an answer (as every time in the API is) as epoch milliseconds.
pub fn at_ms(v: &serde_json::Value) -> i64 {
    let text = v.as_str().unwrap_or_else(|| panic!("{v} is not an RFC 3339 time"));
    text.parse::<jiff::Timestamp>().unwrap_or_else(|e| panic!("{text}: {e}")).as_millisecond()
}
