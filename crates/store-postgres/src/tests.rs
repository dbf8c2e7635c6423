//! The PostgreSQL backend against the suite every backend passes, on a real server.

use opsbook_store::conformance::{Tamper, run_all};
use sqlx::PgPool;

use crate::PgStore;

/// Edits the audit table over a connection of its own, as an attacker with database
/// access would.
struct PgTamper(PgPool);

impl PgTamper {
    fn exec(&self, sql: &'static str, seq: i64) {
        let pool = self.0.clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(async move { sqlx::query(sql).bind(seq).execute(&pool).await.unwrap() })
        });
    }
}

impl Tamper for PgTamper {
    fn edit(&self, seq: i64) {
        self.exec(
            "UPDATE audit_log SET actor = CASE actor WHEN 'mallory' THEN 'ann' ELSE 'mallory' END WHERE seq = $1",
            seq,
        );
    }

    fn delete(&self, seq: i64) {
        self.exec("DELETE FROM audit_log WHERE seq = $1", seq);
    }

    fn insert(&self) {
        self.exec(
            "INSERT INTO audit_log (seq, at, actor, action, target, request_id, details, prev_hash, hash) \
             SELECT seq + 1, at, 'mallory', 'forged', '', '', '{}', hash, $1::text FROM audit_log \
             ORDER BY seq DESC LIMIT 1",
            0,
        );
    }
}

/// PostgreSQL passes the suite every backend must pass.
#[test]
fn postgres_passes_the_conformance_suite() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    rt.block_on(run_all(
        || async { PgStore::open(&crate::testing::fresh_database().await).await.unwrap() },
        |s: &PgStore| PgTamper(s.pool().clone()),
    ));
}

/// Nodes starting together migrate once: the others wait on the advisory lock, then find
/// the schema current.
#[test]
fn nodes_starting_together_migrate_once() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    rt.block_on(async {
        let url = crate::testing::fresh_database().await;
        let opened = futures_util::future::join_all((0..6).map(|_| PgStore::open(&url))).await;
        for s in &opened {
            assert!(s.is_ok(), "{:?}", s.as_ref().err());
        }
        let s = opened.into_iter().next().unwrap().unwrap();
        assert_eq!(s.schema_version().await.unwrap(), (crate::newest(), crate::newest()));
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM opsbook_migrations").fetch_one(s.pool()).await.unwrap();
        assert_eq!(applied, crate::MIGRATIONS.len() as i64);
    });
}

/// A server that cannot be reached is "unavailable", and the message names it without
/// its password.
#[test]
fn an_unreachable_server_is_named_without_its_password() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = crate::PgConfig { acquire_timeout: std::time::Duration::from_millis(500), ..Default::default() };
    let err = rt.block_on(PgStore::open_with("postgres://me:hunter2@127.0.0.1:1/db", &config)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("postgres://127.0.0.1:1/db") && !text.contains("hunter2"), "{text}");
}

/// The audit hash the database computes (migration 2) is opsbook's, byte for byte, for
/// text beyond ASCII too: the chain verifies, and each append checked it.
#[test]
fn audit_hashes_match_beyond_ascii() {
    use opsbook_store::{NewAudit, ServerStore};
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let s = PgStore::open(&crate::testing::fresh_database().await).await.unwrap();
        for (i, actor) in ["zoë", "✓ ops", "李"].iter().enumerate() {
            let r = NewAudit {
                actor: actor.to_string(),
                action: "runbook.publish".into(),
                target: format!("déploiement-{i}"),
                request_id: "req-1".into(),
                details: serde_json::json!({ "note": "naïve — ✓ \"quoted\" \\ \u{1}", "n": i }),
            };
            let rec = s.append_audit(&r).await.unwrap();
            assert_eq!(rec.seq, i as i64 + 1);
        }
        assert_eq!(s.verify_audit().await.unwrap(), Ok(3));
    });
}

/// A one-statement write whose parts do not all apply writes nothing: an attempt recorded
/// with a step that is not there leaves no attempt behind.
#[test]
fn an_attempt_with_a_missing_step_writes_nothing() {
    use opsbook_core::{ExecStatus, StepStatus};
    use opsbook_store::{Attempt, Phase, RunbookVersion, StepRecord, Store};
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let s = PgStore::open(&crate::testing::fresh_database().await).await.unwrap();
        let rb = RunbookVersion {
            sha256: "1".repeat(64),
            name: "demo".into(),
            version: "1.0.0".into(),
            content: "text".into(),
            created_at: 1,
        };
        s.save_runbook(&rb).await.unwrap();
        let mut e = opsbook_store::conformance::execution("EXM001", "demo", ExecStatus::Running, 1);
        e.runbook_sha256 = rb.sha256.clone();
        let step = StepRecord::pending("EXM001", 0, "a", "A", "run");
        s.create_execution(&e, std::slice::from_ref(&step)).await.unwrap();
        let ghost = StepRecord::pending("EXM001", 7, "ghost", "Ghost", "run");
        let attempt = Attempt {
            execution_id: "EXM001".into(),
            step_id: "a".into(),
            phase: Phase::Step,
            attempt: 1,
            status: StepStatus::Succeeded,
            exit_code: Some(0),
            started_at: 2,
            finished_at: 3,
            error: None,
        };
        let err = s.record_attempt(&attempt, &[&step, &ghost], None).await.unwrap_err();
        assert!(matches!(&err, opsbook_store::Error::NotFound(m) if m.contains("missing")), "{err}");
        assert!(s.attempts("EXM001").await.unwrap().is_empty(), "nothing written");
        s.record_attempt(&attempt, &[&step], None).await.unwrap();
        assert_eq!(s.attempts("EXM001").await.unwrap().len(), 1);
    });
}
