//! Conformance: tokens, sessions, secrets and schedules.

use super::*;

pub(super) async fn tokens_and_schedules<S: ServerStore>(s: S) {
    let t = Token {
        id: "tok1".into(),
        user: "ann".into(),
        roles: vec!["viewer".into()],
        created_at: 1,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    };
    s.create_token(&t, "hash").await.unwrap();
    assert_eq!(s.token("tok1").await.unwrap(), Some((t.clone(), "hash".to_string())));
    let web = WebSession { hash: "h1".into(), token_id: "tok1".into(), created_at: 5, expires_at: 50, ended_at: None };
    s.create_session(&web).await.unwrap();
    s.create_session(&WebSession { hash: "h2".into(), expires_at: 500, ..web.clone() }).await.unwrap();
    assert_eq!(s.session("h1").await.unwrap(), Some(web.clone()));
    assert_eq!(s.session("nope").await.unwrap(), None);
    s.end_session("h1", 7).await.unwrap();
    s.end_session("h1", 8).await.unwrap();
    assert_eq!(s.session("h1").await.unwrap().unwrap().ended_at, Some(7), "the first end stays");
    assert!(s.create_session(&web).await.is_err(), "a session hash is unique");
    assert_eq!(s.prune_sessions(60).await.unwrap(), 1, "only the expired one");
    assert_eq!(s.session("h1").await.unwrap(), None);
    assert!(s.session("h2").await.unwrap().is_some());

    // Sealed secrets: kept, replaced, deleted; pruned once their execution ended.
    runbook_text(&s).await;
    let running = execution("e-running", "demo", ExecStatus::Running, 1);
    let done = execution("e-done", "demo", ExecStatus::Succeeded, 2);
    s.create_execution(&running, &[]).await.unwrap();
    s.create_execution(&done, &[]).await.unwrap();
    let sealed = |id: &str, key: &str| SealedSecrets {
        execution_id: id.into(),
        key_id: key.into(),
        nonce: vec![1; 12],
        ciphertext: vec![0, 255, 7],
        created_at: 10,
    };
    s.put_secrets(&sealed("e-running", "k1")).await.unwrap();
    s.put_secrets(&sealed("e-running", "k2")).await.unwrap();
    assert_eq!(s.sealed_secrets("e-running").await.unwrap(), Some(sealed("e-running", "k2")), "replaced");
    s.put_secrets(&sealed("e-done", "k1")).await.unwrap();
    s.put_secrets(&sealed("e-gone", "k1")).await.unwrap();
    s.put_secrets(&SealedSecrets { created_at: 100, ..sealed("e-new", "k1") }).await.unwrap();
    assert_eq!(s.prune_secrets(50).await.unwrap(), 2, "the ended one and the one with no execution");
    assert!(s.sealed_secrets("e-done").await.unwrap().is_none());
    assert!(s.sealed_secrets("e-running").await.unwrap().is_some());
    assert!(s.sealed_secrets("e-new").await.unwrap().is_some(), "too new to judge");
    s.delete_secrets("e-running").await.unwrap();
    assert!(s.sealed_secrets("e-running").await.unwrap().is_none());
    s.token_used("tok1", 9).await.unwrap();
    assert_eq!(s.tokens().await.unwrap()[0].last_used_at, Some(9));
    s.revoke_token("tok1").await.unwrap();
    assert!(s.tokens().await.unwrap()[0].revoked_at.is_some());
    assert!(matches!(s.revoke_token("nope").await, Err(crate::Error::NotFound(_))));

    let sched = ScheduleRecord {
        id: "sch1".into(),
        runbook: "web".into(),
        source: "api".into(),
        cron: "0 3 * * *".into(),
        timezone: "UTC".into(),
        params: serde_json::json!({}),
        overlap: "skip".into(),
        missed: "skip".into(),
        created_by: "ann".into(),
        created_at: 1,
        next_run_at: Some(100),
        last_run_at: None,
        last_result: None,
        roles: Some(vec!["operator".into(), "team-web".into()]),
    };
    s.create_schedule(&sched).await.unwrap();
    assert!(s.due_schedules(99).await.unwrap().is_empty());
    assert_eq!(s.due_schedules(100).await.unwrap(), vec![sched.clone()]);
    s.schedule_ran("sch1", 100, Some(200), "started X").await.unwrap();
    let now = s.schedules().await.unwrap();
    assert_eq!((now[0].next_run_at, now[0].last_result.as_deref()), (Some(200), Some("started X")));
    s.delete_schedule("sch1").await.unwrap();
    assert!(s.schedules().await.unwrap().is_empty());

    // A runbook's own schedules change with its published versions, in the publishing
    // transaction; a schedule made through the API stays.
    s.create_schedule(&sched).await.unwrap();
    let own = ScheduleRecord { id: "nightly#1".into(), runbook: "nightly".into(), source: "runbook".into(), ..sched };
    let publish = |version: &str, schedules: Vec<ScheduleRecord>| Publish {
        entry: RegistryEntry { latest_sha256: format!("sha-{version}"), ..entry("nightly", version, "active") },
        content: version.into(),
        steps_text: String::new(),
        actor: "ann".into(),
        bundle_sha256: None,
        schedules,
    };
    let ids = || async { s.schedules().await.unwrap().into_iter().map(|r| r.id).collect::<Vec<_>>() };
    assert_eq!(s.publish(&publish("1.0.0", vec![own.clone()])).await.unwrap(), Published::Created);
    assert_eq!(ids().await, ["nightly#1", "sch1"]);
    assert_eq!(s.publish(&publish("1.0.0", Vec::new())).await.unwrap(), Published::Unchanged);
    assert_eq!(ids().await, ["nightly#1", "sch1"], "an unchanged version changes nothing");
    assert!(s.publish(&publish("0.9.0", Vec::new())).await.is_err());
    assert_eq!(ids().await, ["nightly#1", "sch1"], "a refused version changes nothing");
    assert_eq!(s.publish(&publish("1.1.0", Vec::new())).await.unwrap(), Published::Updated);
    assert_eq!(ids().await, ["sch1"]);
}
