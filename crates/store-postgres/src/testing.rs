//! Empty databases on the PostgreSQL server the tests use, and clusters of a test's own
//! (to stop and start), for this crate's tests and those of the crates above it (feature
//! `testing`).
//!
//! `./scripts/test` starts a throwaway cluster and exports its URL as
//! `OPSBOOK_TEST_POSTGRES`; without it, PostgreSQL tests fail (they are never skipped).

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, Executor, PgConnection};

/// The variable naming the test server (a URL to a database tests may connect to).
pub const ENV: &str = "OPSBOOK_TEST_POSTGRES";

/// The test server's URL.
pub fn server_url() -> String {
    std::env::var(ENV).unwrap_or_else(|_| {
        panic!(
            "the PostgreSQL tests need a server: run ./scripts/test, or start one with \
             `eval $(./scripts/postgres start)` (it sets {ENV})"
        )
    })
}

/// Creates an empty database on the test server and returns its URL.
pub async fn fresh_database() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let base = server_url();
    let name = format!(
        "opsbook_t{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        opsbook_store::now_ms() % 1_000_000
    );
    let mut admin = PgConnection::connect(&base).await.unwrap_or_else(|e| panic!("cannot reach {ENV} ({base}): {e}"));
    admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create a test database");
    let (server, _) = base.rsplit_once('/').expect("a URL with a database");
    format!("{server}/{name}")
}

/// A PostgreSQL cluster of a test's or benchmark's own (`scripts/postgres`), to stop and
/// start again; stopped and removed when dropped.
pub struct Cluster {
    pub dir: String,
    /// A URL to its `postgres` database.
    pub url: String,
}

/// How a cluster keeps its commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync off: for tests, thrown away afterwards.
    Throwaway,
    /// fsync on, asynchronous commit (as SQLite's WAL + NORMAL): for benchmarks.
    Durable,
}

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/postgres");

fn script(args: &[&str]) -> String {
    let o = std::process::Command::new(SCRIPT).args(args).output().expect("run scripts/postgres");
    assert!(o.status.success(), "scripts/postgres {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).expect("text")
}

impl Cluster {
    pub fn start(durability: Durability) -> Cluster {
        let args: &[&str] = match durability {
            Durability::Throwaway => &["start"],
            Durability::Durable => &["start", "durable"],
        };
        // The port it picks is free when picked; a server the other tests start at the
        // same moment can take it first. Then it picks another.
        let mut exports = None;
        for _ in 0..3 {
            let o = std::process::Command::new(SCRIPT).args(args).output().expect("run scripts/postgres");
            let err = String::from_utf8_lossy(&o.stderr).to_string();
            if o.status.success() {
                exports = Some(String::from_utf8(o.stdout).expect("text"));
                break;
            }
            assert!(err.contains("Address already in use"), "scripts/postgres {args:?}: {err}");
        }
        let exports = exports.expect("a free port in 3 tries");
        let value = |name: &str| {
            let line = exports.lines().find(|l| l.starts_with(&format!("export {name}="))).expect("exported");
            line.split_once('=').expect("NAME=VALUE").1.to_string()
        };
        Cluster { dir: value("OPSBOOK_TEST_PGDATA"), url: value("OPSBOOK_TEST_POSTGRES") }
    }

    /// Stops the server (fast shutdown), keeping its data.
    pub fn down(&self) {
        script(&["down", &self.dir]);
    }

    /// Starts it again on the same port.
    pub fn up(&self) {
        script(&["up", &self.dir]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(SCRIPT).args(["stop", &self.dir]).output();
    }
}
