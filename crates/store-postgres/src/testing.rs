//! Empty databases on the PostgreSQL server the tests use, for this crate's tests and
//! those of the crates above it (feature `testing`).
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
