//! The behaviour every storage backend must have, as one suite any backend runs
//! unchanged (SQLite now; PostgreSQL next): records round-trip, claims are exclusive
//! under concurrency, leases lapse, idempotency keys hold under concurrent submits,
//! keyset pagination is complete at 10,000 rows, and the audit chain catches an edit,
//! an insert and a delete.
//!
//! A backend's test calls [`run_all`] on a multi-thread tokio runtime with a factory of
//! fresh, empty stores and a [`Tamper`] that edits its audit table behind its back.

use std::collections::BTreeSet;
use std::future::Future;

use opsbook_core::{ExecStatus, StepStatus};

mod accounts;
use accounts::tokens_and_schedules;

use crate::{
    Approval, Attempt, AuditFilter, Execution, ExecutionFilter, Feedback, Head, LifecycleEvent, LogLine, LogQuery,
    NewAudit, Phase, Publish, Published, RegistryEntry, Review, RunbookQuery, RunbookVersion, ScheduleRecord,
    SealedSecrets, ServerStore, StepRecord, Stream, Token, WaitKind, WebSession,
};

/// Edits a backend's audit trail directly, as an attacker with database access would.
pub trait Tamper {
    /// Changes the actor of record `seq`.
    fn edit(&self, seq: i64);
    /// Deletes record `seq`.
    fn delete(&self, seq: i64);
    /// Inserts a forged record after the last one, with a made-up hash.
    fn insert(&self);
}

/// Runs every check on fresh stores from `fresh`.
pub async fn run_all<S, F, Fut, T>(fresh: F, tamper: impl Fn(&S) -> T)
where
    S: ServerStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    T: Tamper,
{
    executions_round_trip(fresh().await).await;
    claims_are_exclusive(fresh().await).await;
    leases_lapse_and_holders_are_named(fresh().await).await;
    idempotency_keys_hold_under_concurrent_submits(fresh().await).await;
    keyset_pagination_is_complete(fresh().await).await;
    registry_rules(fresh().await).await;
    tokens_and_schedules(fresh().await).await;
    fenced_writes_need_the_claim(fresh().await).await;
    heads_follow_status_and_logs(fresh().await).await;
    let store = fresh().await;
    audit_chain_catches_tampering(&store, &tamper(&store)).await;
}

/// An execution of `runbook` as the suite writes them (for backends' own tests too).
pub fn execution(id: &str, runbook: &str, status: ExecStatus, created_at: i64) -> Execution {
    Execution {
        id: id.to_string(),
        runbook_name: runbook.to_string(),
        runbook_version: "1.0.0".into(),
        runbook_sha256: "0".repeat(64),
        source_path: None,
        base_dir: ".".into(),
        status,
        actor: "alice".into(),
        params: serde_json::json!({ "n": 1 }),
        secret_digests: serde_json::json!({}),
        created_at,
        started_at: None,
        finished_at: None,
        error: None,
        current_step: None,
        rollback_status: None,
        owner: None,
        lease_expires_at: None,
        heartbeat_at: None,
        cancel_requested: false,
        parent_id: None,
        parent_step: None,
    }
}

/// Saves the runbook text every execution here runs (executions refer to their runbook).
pub async fn runbook_text<S: ServerStore>(s: &S) -> RunbookVersion {
    let rb = RunbookVersion {
        sha256: "0".repeat(64),
        name: "demo".into(),
        version: "1.0.0".into(),
        content: "text".into(),
        created_at: 1,
    };
    s.save_runbook(&rb).await.unwrap();
    rb
}

fn steps(id: &str, n: i64) -> Vec<StepRecord> {
    (0..n).map(|i| StepRecord::pending(id, i, &format!("s{i}"), &format!("Step {i}"), "run")).collect()
}

async fn executions_round_trip<S: ServerStore>(s: S) {
    let rb = runbook_text(&s).await;
    s.save_runbook(&rb).await.unwrap();
    assert_eq!(s.runbook(&rb.sha256).await.unwrap(), rb);

    let e = execution("EX0001", "demo", ExecStatus::Running, 100);
    s.create_execution(&e, &steps("EX0001", 2)).await.unwrap();
    assert_eq!(s.execution("EX0001").await.unwrap(), e);
    assert_eq!(s.execution("EX00").await.unwrap().id, "EX0001", "a unique prefix finds it");
    assert!(matches!(s.execution("NOPE").await, Err(crate::Error::NotFound(_))));
    // A child execution names its parent and the step that started it; the parent finds it.
    let child = Execution {
        parent_id: Some("EX0001".into()),
        parent_step: Some("s1".into()),
        ..execution("CH0001", "demo", ExecStatus::Queued, 101)
    };
    s.create_execution(&child, &steps("CH0001", 1)).await.unwrap();
    // A prefix several share names them, the first few by id.
    for id in ["AMB001", "AMB002", "AMB003", "AMB004", "AMB005", "AMB006"] {
        s.create_execution(&execution(id, "demo", ExecStatus::Queued, 102), &steps(id, 1)).await.unwrap();
    }
    let Err(crate::Error::Ambiguous { prefix, matches }) = s.execution("AMB0").await else { panic!("ambiguous") };
    assert_eq!(
        (prefix.as_str(), matches),
        (
            "AMB0",
            vec!["AMB001", "AMB002", "AMB003", "AMB004", "AMB005"].into_iter().map(String::from).collect::<Vec<_>>()
        )
    );
    assert_eq!(s.execution("CH0001").await.unwrap(), child);
    assert_eq!(s.executions(&ExecutionFilter::children("EX0001")).await.unwrap(), vec![child.clone()]);
    assert_eq!(s.children("EX0001").await.unwrap(), vec![(child, steps("CH0001", 1))]);
    assert!(s.executions(&ExecutionFilter::children("CH0001")).await.unwrap().is_empty());

    let mut st = s.steps("EX0001").await.unwrap();
    assert_eq!(st.len(), 2);
    st[0].status = StepStatus::Succeeded;
    st[0].attempts = 1;
    st[0].outputs.insert("port".into(), "8080".into());
    st[1].status = StepStatus::Running;
    let attempt = Attempt {
        execution_id: "EX0001".into(),
        step_id: "s0".into(),
        phase: Phase::Step,
        attempt: 1,
        status: StepStatus::Succeeded,
        exit_code: Some(0),
        started_at: 101,
        finished_at: 102,
        error: None,
    };
    s.record_attempt(&attempt, &[&st[0], &st[1]], None).await.unwrap();
    assert_eq!(s.steps("EX0001").await.unwrap(), st, "the attempt and both steps in one write");
    assert_eq!(s.attempts("EX0001").await.unwrap(), vec![attempt]);
    st[1].error = Some("boom".into());
    s.update_step(&st[1], None).await.unwrap();
    assert_eq!(s.steps("EX0001").await.unwrap()[1].error.as_deref(), Some("boom"));
    // What a waiting step waits for is stored with it, and only while it waits.
    st[1].wait_for(WaitKind::Gate);
    s.update_step(&st[1], None).await.unwrap();
    assert_eq!(s.steps("EX0001").await.unwrap()[1].wait_kind, Some(WaitKind::Gate));
    st[1].status = StepStatus::Running;
    s.update_step(&st[1], None).await.unwrap();
    assert_eq!(s.steps("EX0001").await.unwrap()[1].wait_kind, None);
    st[1].overridden_by = Some("root".into());
    s.update_step(&st[1], None).await.unwrap();
    assert_eq!(s.steps("EX0001").await.unwrap()[1].overridden_by.as_deref(), Some("root"));
    // A step's targets are stored with it, each with its own status and rollback.
    let mut web1 = crate::TargetRecord::pending("web-1");
    web1.status = StepStatus::Succeeded;
    web1.exit_code = Some(0);
    web1.rollback_status = Some(StepStatus::Failed);
    let mut web2 = crate::TargetRecord::pending("web-2");
    web2.status = StepStatus::Skipped;
    st[1].targets = vec![web1, web2];
    s.update_step(&st[1], None).await.unwrap();
    assert_eq!(s.steps("EX0001").await.unwrap()[1].targets, st[1].targets);
    assert!(s.steps("EX0001").await.unwrap()[0].targets.is_empty());

    let lines: Vec<LogLine> = (1..=3).map(|seq| log_line("EX0001", "s0", seq, 100 + seq)).collect();
    s.append_logs(&lines, None).await.unwrap();
    let q = LogQuery { execution_id: "EX0001".into(), step_id: None, after_seq: 1, limit: 10 };
    assert_eq!(s.logs(&q).await.unwrap(), lines[1..].to_vec());
    assert_eq!(s.last_log_seq("EX0001").await.unwrap(), 3);
    assert_eq!(s.steps_and_last_seq("EX0001").await.unwrap(), (s.steps("EX0001").await.unwrap(), 3));
    let fresh = execution("EX0002", "demo", ExecStatus::Queued, 100);
    s.create_execution(&fresh, &steps("EX0002", 1)).await.unwrap();
    assert_eq!(s.steps_and_last_seq("EX0002").await.unwrap(), (s.steps("EX0002").await.unwrap(), 0), "no logs yet");

    let a = Approval {
        execution_id: "EX0001".into(),
        step_id: "s1".into(),
        phase: Phase::Step,
        approver: "bob".into(),
        approved: true,
        manual: false,
        comment: Some("go".into()),
        created_at: 5,
    };
    s.add_approval(&a).await.unwrap();
    let twice = s.add_approval(&a).await.unwrap_err().to_string();
    assert!(twice.contains("bob has already decided on step `s1` of execution EX0001"), "{twice}");
    // A manual rollback's confirmation is a decision apart from its step's.
    let undone = Approval { phase: Phase::Rollback, manual: true, approved: false, created_at: 6, ..a.clone() };
    s.add_approval(&undone).await.unwrap();
    let twice = s.add_approval(&undone).await.unwrap_err().to_string();
    assert!(twice.contains("bob has already confirmed the rollback of step `s1`"), "{twice}");
    assert_eq!(s.approvals("EX0001").await.unwrap(), vec![a, undone]);

    // Ratings: one per person, given again it replaces theirs.
    let f = Feedback { execution_id: "EX0001".into(), user: "bob".into(), rating: 2, comment: None, at: 7 };
    s.add_feedback(&f).await.unwrap();
    let again = Feedback { rating: 5, comment: Some("smooth".into()), at: 8, ..f.clone() };
    s.add_feedback(&again).await.unwrap();
    let carol = Feedback { user: "carol".into(), rating: 3, at: 9, ..f.clone() };
    s.add_feedback(&carol).await.unwrap();
    assert_eq!(s.feedback("EX0001").await.unwrap(), vec![again.clone(), carol.clone()]);
    let other = Feedback { execution_id: "EX0002".into(), at: 9, ..f.clone() };
    s.add_feedback(&other).await.unwrap();
    let since = s.feedback_since(8, None).await.unwrap();
    let demo = |f: &Feedback| ("demo".to_string(), f.clone());
    assert_eq!(since, vec![demo(&again), demo(&carol), demo(&other)], "by time, then execution, then person");
    assert_eq!(s.feedback_since(9, Some("demo")).await.unwrap(), vec![demo(&carol), demo(&other)]);
    assert!(s.feedback_since(0, Some("other")).await.unwrap().is_empty());

    let mut done = s.execution("EX0001").await.unwrap();
    done.status = ExecStatus::Failed;
    done.finished_at = Some(200);
    done.error = Some("step `s1` failed".into());
    s.update_execution(&done, None).await.unwrap();
    assert_eq!(s.execution("EX0001").await.unwrap(), done);
    // The actor is set at creation: a write of the state does not change it.
    let impostor = Execution { actor: "mallory".into(), ..done.clone() };
    s.update_execution(&impostor, None).await.unwrap();
    assert_eq!(s.execution("EX0001").await.unwrap().actor, done.actor);
    s.set_process("EX0001", "s1", Some("123:abc.1")).await.unwrap();
    assert_eq!(s.processes("EX0001").await.unwrap(), vec![("s1".to_string(), "123:abc.1".to_string())]);
    s.set_process("EX0001", "s1", None).await.unwrap();
    assert!(s.processes("EX0001").await.unwrap().is_empty());
}

/// Many claimers at once over a queue: each execution is claimed exactly once.
/// A runner whose claim was taken writes nothing: every fenced write checks the holder in
/// its own transaction.
async fn fenced_writes_need_the_claim<S: ServerStore>(s: S) {
    runbook_text(&s).await;
    let mut e = execution("EXF001", "demo", ExecStatus::Running, 100);
    e.owner = Some("w1".into());
    s.create_execution(&e, &steps("EXF001", 1)).await.unwrap();
    let mut st = s.steps("EXF001").await.unwrap();
    st[0].status = StepStatus::Running;
    s.update_step(&st[0], Some("w1")).await.unwrap();
    // The claim passes to w2 (w1's lease lapsed).
    let mut taken = e.clone();
    taken.owner = Some("w2".into());
    s.update_execution(&taken, None).await.unwrap();
    st[0].status = StepStatus::Failed;
    let lost = |r: crate::Result<()>| matches!(r, Err(crate::Error::LostClaim(m)) if m.contains("w2"));
    assert!(lost(s.update_step(&st[0], Some("w1")).await), "a step write");
    let attempt = Attempt {
        execution_id: "EXF001".into(),
        step_id: "s0".into(),
        phase: Phase::Step,
        attempt: 1,
        status: StepStatus::Failed,
        exit_code: Some(1),
        started_at: 101,
        finished_at: 102,
        error: None,
    };
    assert!(lost(s.record_attempt(&attempt, &[&st[0]], Some("w1")).await), "an attempt");
    let mut finished = e.clone();
    finished.status = ExecStatus::Failed;
    finished.owner = None;
    assert!(lost(s.update_execution(&finished, Some("w1")).await), "the execution");
    assert!(lost(s.finish_execution(&finished, Some((&attempt, &[&st[0]])), Some("w1")).await), "the end");
    assert!(lost(s.append_logs(&[log_line("EXF001", "s0", 1, 103)], Some("w1")).await), "log lines");
    assert_eq!(s.last_log_seq("EXF001").await.unwrap(), 0, "no line written");
    s.append_logs(&[log_line("EXF001", "s0", 1, 104)], Some("w2")).await.unwrap();
    assert_eq!(s.last_log_seq("EXF001").await.unwrap(), 1, "the holder's line");
    assert_eq!(s.steps("EXF001").await.unwrap()[0].status, StepStatus::Running, "nothing written");
    assert!(s.attempts("EXF001").await.unwrap().is_empty());
    assert_eq!(s.execution("EXF001").await.unwrap(), taken);
    // The end with a step that is not there writes nothing.
    let mut ghost_step = st[0].clone();
    ghost_step.idx = 7;
    assert!(s.finish_execution(&finished, Some((&attempt, &[&ghost_step])), Some("w2")).await.is_err());
    assert!(s.attempts("EXF001").await.unwrap().is_empty(), "no attempt without its step");
    assert_eq!(s.execution("EXF001").await.unwrap(), taken, "nor the execution's end");
    // The holder writes: the last attempt, its step and the execution's end at once.
    finished.owner = None;
    s.finish_execution(&finished, Some((&attempt, &[&st[0]])), Some("w2")).await.unwrap();
    assert_eq!(s.execution("EXF001").await.unwrap().status, ExecStatus::Failed);
    assert_eq!(s.attempts("EXF001").await.unwrap(), vec![attempt.clone()]);
    assert_eq!(s.steps("EXF001").await.unwrap()[0].status, StepStatus::Failed);
    assert!(
        matches!(s.update_step(&st[0], Some("w2")).await, Err(crate::Error::LostClaim(_))),
        "released: no one holds it"
    );
    assert!(matches!(s.update_execution(&finished, Some("w2")).await, Err(crate::Error::LostClaim(_))));
    let mut ghost = finished.clone();
    ghost.id = "NOPE01".into();
    assert!(matches!(s.update_execution(&ghost, Some("w2")).await, Err(crate::Error::NotFound(_))));
}

async fn claims_are_exclusive<S: ServerStore>(s: S) {
    runbook_text(&s).await;
    for i in 0..40 {
        let id = format!("Q{i:04}");
        s.create_execution(&execution(&id, "demo", ExecStatus::Queued, 1000 + i), &steps(&id, 1)).await.unwrap();
    }
    let claimers: Vec<_> = (0..8)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(c) = s.claim_next(&format!("worker-{w}"), 30_000).await.unwrap() {
                    assert_eq!(c.execution.status, ExecStatus::Running);
                    assert_eq!(c.steps, s.steps(&c.execution.id).await.unwrap(), "its steps come with it");
                    assert_eq!(c.last_seq, 0, "no log yet");
                    mine.push(c.execution.id);
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in claimers {
        all.extend(c.await.unwrap());
    }
    let unique: BTreeSet<&String> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (40, 40), "every execution claimed once");
    assert_eq!(s.count_queued().await.unwrap(), 0);
    let first = s.execution("Q0000").await.unwrap();
    assert!(first.owner.as_deref().is_some_and(|o| o.starts_with("worker-")));

    // Queued again after it ran a while (a gate cleared): its steps, in order, and the
    // last sequence number of its log come with its claim.
    let e = execution("QLOG", "demo", ExecStatus::Queued, 5000);
    s.create_execution(&e, &steps("QLOG", 3)).await.unwrap();
    s.append_logs(&[log_line("QLOG", "s1", 1, 5001), log_line("QLOG", "s1", 2, 5002)], None).await.unwrap();
    let c = s.claim_next("worker-x", 30_000).await.unwrap().expect("a queued execution");
    assert_eq!((c.execution.id.as_str(), c.execution.owner.as_deref(), c.last_seq), ("QLOG", Some("worker-x"), 2));
    assert_eq!(c.steps, s.steps("QLOG").await.unwrap());
    assert_eq!(c.steps.iter().map(|s| s.idx).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(s.claim_next("worker-x", 30_000).await.unwrap().is_none(), "nothing left");

    // Cancelling before it starts is one conditional write: it loses to a worker's claim,
    // and to a step that started.
    for (i, id) in ["QC1", "QC2", "QC3"].into_iter().enumerate() {
        let e = execution(id, "demo", ExecStatus::Queued, 6000 + i as i64);
        s.create_execution(&e, &steps(id, 2)).await.unwrap();
    }
    assert!(s.cancel_unstarted("QC1", 6001, "cancelled by ann before it started").await.unwrap());
    let gone = s.execution("QC1").await.unwrap();
    assert_eq!(
        (gone.status, gone.finished_at, gone.error.as_deref()),
        (ExecStatus::Cancelled, Some(6001), Some("cancelled by ann before it started"))
    );
    assert!(!s.cancel_unstarted("QC1", 6002, "again").await.unwrap(), "not queued any more");
    let c = s.claim_next("worker-y", 30_000).await.unwrap().expect("QC2");
    assert_eq!(c.execution.id, "QC2", "the oldest first");
    assert!(!s.cancel_unstarted("QC2", 6003, "late").await.unwrap(), "a worker holds it");
    assert_eq!(s.execution("QC2").await.unwrap().status, ExecStatus::Running);
    let mut started = s.steps("QC3").await.unwrap();
    started[0].status = StepStatus::Succeeded;
    s.update_step(&started[0], None).await.unwrap();
    assert!(!s.cancel_unstarted("QC3", 6004, "late").await.unwrap(), "a step ran");
    assert_eq!(s.execution("QC3").await.unwrap().status, ExecStatus::Queued);
}

/// Line `seq` of a step's standard output, logged at `ts`.
fn log_line(execution_id: &str, step_id: &str, seq: i64, ts: i64) -> LogLine {
    LogLine {
        execution_id: execution_id.into(),
        seq,
        step_id: Some(step_id.into()),
        phase: Phase::Step,
        attempt: 1,
        stream: Stream::Stdout,
        ts,
        line: format!("line {seq}"),
    }
}

async fn leases_lapse_and_holders_are_named<S: ServerStore>(s: S) {
    runbook_text(&s).await;
    let e = execution("L0001", "demo", ExecStatus::Waiting, 1);
    s.create_execution(&e, &steps("L0001", 1)).await.unwrap();
    // Two holders at once: the second is refused.
    assert!(s.claim_stopped("L0001", "me", 30_000, None).await.unwrap().is_some());
    assert!(s.claim_stopped("L0001", "you", 30_000, None).await.unwrap().is_none());
    assert!(s.claim_stopped("L0001", "me", 30_000, None).await.unwrap().is_some(), "re-entrant");
    assert!(s.claim_stopped("L0001", "you", 30_000, Some("me")).await.unwrap().is_some(), "taken over from the dead");
    s.release("L0001", "me").await.unwrap();
    assert_eq!(s.execution("L0001").await.unwrap().owner.as_deref(), Some("you"), "only the holder lets go");
    s.release("L0001", "you").await.unwrap();
    assert_eq!(s.execution("L0001").await.unwrap().owner, None);
    // A lapsed lease frees it.
    assert!(s.claim_stopped("L0001", "me", -1, None).await.unwrap().is_some());
    assert!(s.claim_stopped("L0001", "you", 30_000, None).await.unwrap().is_some());
    // Heartbeats extend only the holder's lease and carry a cancel request.
    assert!(!s.heartbeat("L0001", "you", 30_000).await.unwrap());
    assert!(s.heartbeat("L0001", "me", 30_000).await.is_err());
    s.request_cancel("L0001").await.unwrap();
    assert!(s.heartbeat("L0001", "you", 30_000).await.unwrap());
    // Running executions are found for recovery.
    let r = execution("L0002", "demo", ExecStatus::Running, 2);
    s.create_execution(&r, &steps("L0002", 1)).await.unwrap();
    assert!(s.running().await.unwrap().iter().any(|e| e.id == "L0002"));
    assert!(s.claim_stopped("L0002", "me", 30_000, None).await.unwrap().is_none(), "running is not stopped");
}

/// The audit record a submission passes with its execution.
fn submitted(i: i64) -> NewAudit {
    NewAudit {
        actor: "alice".into(),
        action: "execution.submit".into(),
        target: String::new(),
        request_id: format!("req-{i}"),
        details: serde_json::json!({ "runbook": "demo" }),
    }
}

/// Identical keyed submissions racing: one execution, every caller gets its id, and
/// the audit trail holds one record for it, in the same transaction (with the
/// execution's id as its target), none for the repeats.
async fn idempotency_keys_hold_under_concurrent_submits<S: ServerStore>(s: S) {
    runbook_text(&s).await;
    for round in 0..20 {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    let id = format!("K{round:02}{i}");
                    let e = execution(&id, "demo", ExecStatus::Queued, 10 + round);
                    let key = format!("key-{round}");
                    s.create_execution_once(&e, &steps(&id, 2), Some(&key), &submitted(round)).await.unwrap()
                })
            })
            .collect();
        let mut ids = BTreeSet::new();
        for t in tasks {
            ids.insert(t.await.unwrap());
        }
        assert_eq!(ids.len(), 1, "round {round}: {ids:?}");
        let id = ids.into_iter().next().unwrap();
        assert_eq!(s.steps(&id).await.unwrap().len(), 2);
    }
    let all = s.executions(&ExecutionFilter { limit: 1000, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 20, "one execution per key, no leftovers");
    let audited = s.audit(&AuditFilter { limit: 1000, ..Default::default() }).await.unwrap();
    let targets: BTreeSet<&str> = audited.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(audited.len(), 20, "one record per execution: {audited:?}");
    assert_eq!(targets, all.iter().map(|e| e.id.as_str()).collect(), "each names its execution");
    assert!(audited.iter().all(|r| r.action == "execution.submit" && r.details["runbook"] == "demo"));
    assert_eq!(s.verify_audit().await.unwrap(), Ok(20), "the chain holds");
    let other = execution("KX", "other", ExecStatus::Queued, 99);
    assert!(matches!(
        s.create_execution_once(&other, &steps("KX", 1), Some("key-0"), &submitted(99)).await,
        Err(crate::Error::Mismatch(_))
    ));
    // The same runbook with other parameters is another request, not a retry.
    let mut changed = execution("KY", "demo", ExecStatus::Queued, 99);
    changed.params = serde_json::json!({ "n": 2 });
    match s.create_execution_once(&changed, &steps("KY", 2), Some("key-0"), &submitted(99)).await {
        Err(crate::Error::Mismatch(m)) => {
            assert!(m.starts_with("this Idempotency-Key was used with other parameters"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.verify_audit().await.unwrap(), Ok(20), "a refused submit audits nothing");
}

async fn keyset_pagination_is_complete<S: ServerStore>(s: S) {
    runbook_text(&s).await;
    const N: i64 = 10_000;
    for i in 0..N {
        // Ten share each creation time: the id breaks ties.
        let id = format!("P{i:06}");
        s.create_execution(
            &execution(&id, if i % 2 == 0 { "even" } else { "odd" }, ExecStatus::Succeeded, i / 10),
            &[],
        )
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page =
            s.executions(&ExecutionFilter { before: before.clone(), limit: 333, ..Default::default() }).await.unwrap();
        let Some(last) = page.last() else { break };
        before = Some((last.created_at, last.id.clone()));
        seen.extend(page.into_iter().map(|e| (e.created_at, e.id)));
    }
    assert_eq!(seen.len() as i64, N, "every row once");
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first, no repeats");
    let odd = s.executions(&ExecutionFilter { runbook: Some("odd".into()), limit: 20_000, ..Default::default() }).await;
    assert_eq!(odd.unwrap().len() as i64, N / 2);
    let counts = s.count_by_status().await.unwrap();
    assert!(counts.contains(&(ExecStatus::Succeeded.as_str().to_string(), N)), "{counts:?}");
}

fn entry(name: &str, version: &str, status: &str) -> RegistryEntry {
    RegistryEntry {
        name: name.into(),
        status: status.into(),
        latest_version: version.into(),
        latest_sha256: format!("{name}-{version}"),
        title: format!("{name} title"),
        description: None,
        runbook_type: "deployment".into(),
        owner: Some("team".into()),
        tags: vec!["web".into()],
        created_at: 1,
        updated_at: 1,
    }
}

async fn registry_rules<S: ServerStore>(s: S) {
    let publish = |version: &str, content: &str| Publish {
        entry: RegistryEntry { latest_sha256: format!("sha-of-{content}"), ..entry("web", version, "active") },
        content: content.into(),
        steps_text: "deploy".into(),
        actor: "ann".into(),
        bundle_sha256: None,
        schedules: Vec::new(),
    };
    assert_eq!(s.publish(&publish("1.0.0", "a")).await.unwrap(), Published::Created);
    assert_eq!(s.publish(&publish("1.0.0", "a")).await.unwrap(), Published::Unchanged);
    assert!(matches!(s.publish(&publish("1.0.0", "b")).await, Err(crate::Error::Conflict(_))), "immutable");
    assert_eq!(s.publish(&publish("1.1.0", "b")).await.unwrap(), Published::Updated);
    assert!(matches!(s.publish(&publish("1.0.5", "c")).await, Err(crate::Error::Conflict(_))), "versions increase");
    assert_eq!(s.registry_entry("web").await.unwrap().latest_version, "1.1.0");
    assert_eq!(s.registry_versions("web").await.unwrap().len(), 2);
    assert_eq!(s.registry_version("web", "1.0.0").await.unwrap().1, "a");
    // A bundle is content-addressed and part of the version it is published with: the
    // same text with other files is another content.
    assert_eq!(s.bundle("b1").await.unwrap(), None);
    s.save_bundle("b1", b"files").await.unwrap();
    s.save_bundle("b1", b"files").await.unwrap();
    assert_eq!(s.bundle("b1").await.unwrap().as_deref(), Some(&b"files"[..]));
    let bundled = |b: Option<&str>| Publish { bundle_sha256: b.map(str::to_string), ..publish("1.2.0", "b") };
    assert_eq!(s.publish(&bundled(Some("b1"))).await.unwrap(), Published::Updated);
    assert_eq!(s.publish(&bundled(Some("b1"))).await.unwrap(), Published::Unchanged);
    assert!(matches!(s.publish(&bundled(None)).await, Err(crate::Error::Conflict(_))), "files are content");
    let (v, _) = s.registry_version("web", "1.2.0").await.unwrap();
    assert_eq!(v.bundle_sha256.as_deref(), Some("b1"));
    assert_eq!(s.registry_versions("web").await.unwrap()[0].bundle_sha256.as_deref(), Some("b1"));
    assert_eq!(s.registry_version("web", "1.0.0").await.unwrap().0.bundle_sha256, None);
    let found = s.registry(&RunbookQuery { q: Some("deploy".into()), ..Default::default() }).await.unwrap();
    assert_eq!(found.len(), 1);
    let ev = |from: &str, to: &str| LifecycleEvent {
        name: "web".into(),
        from_status: Some(from.into()),
        to_status: to.into(),
        actor: "ann".into(),
        reason: Some("why".into()),
        at: 5,
    };
    s.set_lifecycle(&ev("active", "deprecated")).await.unwrap();
    assert!(
        matches!(s.set_lifecycle(&ev("active", "archived")).await, Err(crate::Error::Conflict(_))),
        "from must match"
    );
    let events = s.lifecycle_events("web").await.unwrap();
    assert_eq!(events.len(), 2, "publishing starts the history: {events:?}");
    assert!(events.iter().any(|e| e.from_status.as_deref() == Some("active") && e.to_status == "deprecated"));
    assert_eq!(s.registry_entry("web").await.unwrap().status, "deprecated");

    let review = |name: &str, who: &str, at| Review {
        name: name.into(),
        version: "1.0.0".into(),
        reviewer: who.into(),
        note: format!("read by {who}"),
        at,
    };
    let (first, second, other) = (review("web", "ann", 10), review("web", "bob", 20), review("db", "ann", 15));
    for r in [&second, &first, &other] {
        s.add_review(r).await.unwrap();
    }
    assert_eq!(s.reviews(Some("web")).await.unwrap(), vec![first.clone(), second.clone()], "oldest first");
    assert_eq!(s.reviews(None).await.unwrap(), vec![first, other, second]);
    assert!(s.reviews(Some("nothing")).await.unwrap().is_empty());
}

async fn audit_chain_catches_tampering<S: ServerStore>(s: &S, tamper: &impl Tamper) {
    for i in 0..5 {
        let r = NewAudit {
            actor: "ann".into(),
            action: "test".into(),
            target: format!("t{i}"),
            request_id: "r".into(),
            details: serde_json::json!({ "i": i }),
        };
        s.append_audit(&r).await.unwrap();
    }
    assert_eq!(s.verify_audit().await.unwrap(), Ok(5));
    assert_eq!(s.audit(&AuditFilter { limit: 10, ..Default::default() }).await.unwrap().len(), 5);
    let seqs = |records: Vec<crate::AuditRecord>| records.iter().map(|r| r.seq).collect::<Vec<_>>();
    let first = s.audit(&AuditFilter { limit: 2, ..Default::default() }).await.unwrap();
    let newest = s.audit(&AuditFilter { limit: 2, newest: true, ..Default::default() }).await.unwrap();
    assert_eq!((seqs(first), seqs(newest)), (vec![1, 2], vec![4, 5]), "the newest, in order");
    tamper.edit(2);
    assert!(s.verify_audit().await.unwrap().is_err_and(|e| e.contains("record 2")), "an edit");
    tamper.edit(2); // edits it back
    assert_eq!(s.verify_audit().await.unwrap(), Ok(5));
    tamper.insert();
    assert!(s.verify_audit().await.unwrap().is_err(), "an insert");
    tamper.delete(6);
    tamper.delete(3);
    assert!(s.verify_audit().await.unwrap().is_err_and(|e| e.contains("record 3 is missing")), "a delete");
}

/// `heads` answers for the executions that exist, and moves with their status and logs.
async fn heads_follow_status_and_logs<S: ServerStore>(s: S) {
    runbook_text(&s).await;
    let ids: Vec<String> = (0..150).map(|i| format!("HD{i:04}")).collect();
    for id in &ids {
        s.create_execution(&execution(id, "demo", ExecStatus::Queued, 100), &steps(id, 1)).await.unwrap();
    }
    let line = |seq: i64| LogLine {
        execution_id: "HD0007".into(),
        seq,
        step_id: Some("s0".into()),
        phase: Phase::Step,
        attempt: 1,
        stream: Stream::Stdout,
        ts: 200,
        line: format!("line {seq}"),
    };
    s.append_logs(&[line(1), line(2)], None).await.unwrap();
    let mut done = execution("HD0009", "demo", ExecStatus::Succeeded, 100);
    done.finished_at = Some(300);
    s.update_execution(&done, None).await.unwrap();
    // More than one statement's worth, one unknown id, one asked twice.
    let mut asked = ids.clone();
    asked.push("NOPE".into());
    asked.push("HD0007".into());
    let mut heads = s.heads(&asked).await.unwrap();
    heads.sort_by(|a, b| a.id.cmp(&b.id));
    heads.dedup();
    assert_eq!(heads.len(), 150, "one head per execution that exists");
    let head = |id: &str| heads.iter().find(|h| h.id == id).unwrap().clone();
    assert_eq!(head("HD0007"), Head { id: "HD0007".into(), status: ExecStatus::Queued.as_str().into(), last_seq: 2 });
    assert_eq!(
        head("HD0009"),
        Head { id: "HD0009".into(), status: ExecStatus::Succeeded.as_str().into(), last_seq: 0 }
    );
    assert_eq!(head("HD0000"), Head { id: "HD0000".into(), status: ExecStatus::Queued.as_str().into(), last_seq: 0 });
    assert!(s.heads(&[]).await.unwrap().is_empty());
}
