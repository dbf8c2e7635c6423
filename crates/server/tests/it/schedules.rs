//! The scheduler, driven with a controllable clock through `scheduler::tick`.

use opsbook_server::scheduler::tick;
use opsbook_store::{ExecutionFilter, ServerStore, Store, now_ms};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Server, at_ms, runbook};

const DAY: i64 = 86_400_000;

fn next_3am_utc(after: i64) -> i64 {
    let day = after - after.rem_euclid(DAY);
    let at = day + 3 * 3_600_000;
    if at > after { at } else { at + DAY }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbook_schedules_fire_when_due() {
    let s = Server::start().await;
    let author = s.token("ann", &["author", "operator"]).await;
    let book = runbook(
        "nightly",
        "1.0.0",
        "",
        "    target: { type: string, required: true }\n",
        "    - id: a\n      run: echo backing up {{ params.target }}\n",
    )
    .replace(
        "  steps:",
        "  schedules:\n    - { cron: \"0 3 * * *\", timezone: UTC, params: { target: db } }\n  steps:",
    );
    let (status, doc) = s.publish(&author, &book).await;
    assert_eq!(status, StatusCode::CREATED, "{doc}");
    let before = now_ms();
    let (_, list) = s.get("/api/v1/schedules", &author).await;
    let sched = &list["items"][0];
    assert_eq!(sched["id"], "nightly#1");
    let next = at_ms(&sched["next_run_at"]);
    assert_eq!(next, next_3am_utc(before));

    assert!(tick(&s.state, next - 1).await.is_empty(), "not due yet");
    let ran = tick(&s.state, next).await;
    assert_eq!(ran.len(), 1);
    assert!(ran[0].1.starts_with("started "), "{ran:?}");
    let id = ran[0].1.trim_start_matches("started ").to_string();
    let done = s.settled(&id, &author).await;
    assert_eq!(done["actor"], "schedule:nightly#1");
    assert_eq!(done["status"], "succeeded");
    let (_, list) = s.get("/api/v1/schedules", &author).await;
    assert_eq!(at_ms(&list["items"][0]["next_run_at"]), next + DAY);
    assert_eq!(list["items"][0]["last_result"], format!("started {id}"));

    // A new version replaces the runbook's schedules.
    let v2 = book.replace("1.0.0", "1.1.0").replace("0 3 * * *", "30 4 * * *");
    s.publish(&author, &v2).await;
    let (_, list) = s.get("/api/v1/schedules", &author).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["cron"], "30 4 * * *");
    // It goes with a version, not by itself.
    let (status, doc) = s.call("DELETE", "/api/v1/schedules/nightly%231", Some(&author), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{doc}");
    assert_eq!(
        doc["error"]["message"],
        "schedule `nightly#1` is runbook `nightly`'s own (`schedules:` in its YAML): publish a version without it, \
         or archive the runbook"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_and_missed_runs_follow_their_policy() {
    let s = Server::start().await;
    let op = s.token("olga", &["author", "operator"]).await;
    // Waits for an approval, so a run stays active.
    s.publish(&op, &runbook("slow", "1.0.0", "", "", "    - id: gate\n      approval: {}\n")).await;
    let create = |overlap: &str, missed: &str| json!({ "runbook": "slow", "cron": "* * * * *", "overlap": overlap, "missed": missed });
    let (status, skip) = s.post("/api/v1/schedules", &op, create("skip", "skip")).await;
    assert_eq!(status, StatusCode::CREATED, "{skip}");
    let (status, bad) = s.post("/api/v1/schedules", &op, json!({ "runbook": "slow", "cron": "61 * * * *" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad["error"]["message"].as_str().unwrap().starts_with("invalid cron pattern `61 * * * *`"), "{bad}");
    let (status, bad) = s.post("/api/v1/schedules", &op, json!({ "runbook": "slow", "cron": "0 0 31 4 *" })).await;
    assert_eq!(
        (status, bad["error"]["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("cron pattern `0 0 31 4 *` never fires: no date matches it"))
    );
    let (status, bad) =
        s.post("/api/v1/schedules", &op, json!({ "runbook": "slow", "cron": "0 0 0 1 1 * 2020" })).await;
    assert_eq!(
        (status, bad["error"]["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("cron pattern `0 0 0 1 1 * 2020` never fires again"))
    );
    let (status, bad) = s
        .post("/api/v1/schedules", &op, json!({ "runbook": "slow", "cron": "* * * * *", "timezone": "Mars/Olympus" }))
        .await;
    assert_eq!(
        (status, bad["error"]["message"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("unknown time zone `Mars/Olympus` (an IANA name such as `Europe/Berlin`, or `UTC`)")
        )
    );

    let t1 = at_ms(&skip["next_run_at"]);
    let first = tick(&s.state, t1).await;
    assert!(first[0].1.starts_with("started "), "{first:?}");
    let id = first[0].1.trim_start_matches("started ").to_string();
    s.wait_for(&id, &op, |d| d["status"] == "waiting").await;
    let second = tick(&s.state, t1 + 60_000).await;
    assert_eq!(second[0].1, "skipped: the previous run is still going");

    // With overlap: queue, the next run waits for the previous one to end, then starts
    // (once, however many times it came due meanwhile).
    s.call("DELETE", &format!("/api/v1/schedules/{}", skip["id"].as_str().unwrap()), Some(&op), None).await;
    let (_, queue) = s.post("/api/v1/schedules", &op, create("queue", "skip")).await;
    let t = at_ms(&queue["next_run_at"]);
    let first = tick(&s.state, t).await;
    let id = first[0].1.trim_start_matches("started ").to_string();
    s.wait_for(&id, &op, |d| d["status"] == "waiting").await;
    assert_eq!(tick(&s.state, t + 60_000).await[0].1, "waiting for the previous run to end");
    let (_, list) = s.get("/api/v1/schedules", &op).await;
    assert_eq!(at_ms(&list["items"][0]["next_run_at"]), t + 60_000, "still due");
    // Held for minutes: neither missed nor run again while it waits.
    assert!(tick(&s.state, t + 5 * 60_000).await.is_empty(), "nothing new to say");
    let (status, _) = s.post(&format!("/api/v1/executions/{id}/cancel"), &op, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    s.settled(&id, &op).await;
    let next = tick(&s.state, t + 5 * 60_000 + 1_000).await;
    assert!(next[0].1.starts_with("started "), "{next:?}");
    let (_, list) = s.get("/api/v1/schedules", &op).await;
    assert_eq!(at_ms(&list["items"][0]["next_run_at"]), t + 6 * 60_000, "the times it waited through are folded");
    s.call("DELETE", &format!("/api/v1/schedules/{}", queue["id"].as_str().unwrap()), Some(&op), None).await;

    // Missed while down for three days: skip runs nothing; run_once runs once.
    let count = |s: &Server| {
        let store = s.store.clone();
        async move {
            store
                .executions(&ExecutionFilter { runbook: Some("slow".into()), limit: 100, ..Default::default() })
                .await
                .unwrap()
                .len()
        }
    };
    let before = count(&s).await;
    let (_, missed_skip) =
        s.post("/api/v1/schedules", &op, json!({ "runbook": "slow", "cron": "* * * * *", "overlap": "queue" })).await;
    // Back 30 s after a time it was due: that one is not missed.
    let late = at_ms(&missed_skip["next_run_at"]) + 3 * DAY + 30_000;
    let r = tick(&s.state, late).await;
    assert!(r[0].1.starts_with("started "), "{r:?}");
    assert_eq!(count(&s).await, before + 1);
    let before = before + 1;
    s.call("DELETE", &format!("/api/v1/schedules/{}", missed_skip["id"].as_str().unwrap()), Some(&op), None).await;
    let (_, missed_skip) =
        s.post("/api/v1/schedules", &op, json!({ "runbook": "slow", "cron": "0 * * * *", "overlap": "queue" })).await;
    let late = at_ms(&missed_skip["next_run_at"]) + 3 * DAY + 5 * 60_000;
    let r = tick(&s.state, late).await;
    assert_eq!(r[0].1, "missed while the server was down; skipped");
    assert_eq!(count(&s).await, before);
    s.call("DELETE", &format!("/api/v1/schedules/{}", missed_skip["id"].as_str().unwrap()), Some(&op), None).await;
    let (_, once) = s
        .post(
            "/api/v1/schedules",
            &op,
            json!({ "runbook": "slow", "cron": "* * * * *", "overlap": "queue", "missed": "run_once" }),
        )
        .await;
    let late = at_ms(&once["next_run_at"]) + 3 * DAY;
    let r = tick(&s.state, late).await;
    assert_eq!(r.len(), 1, "one run, not one per missed minute");
    assert!(r[0].1.starts_with("started "));
    assert_eq!(count(&s).await, before + 1);
    let (_, list) = s.get("/api/v1/schedules", &op).await;
    assert!(at_ms(&list["items"][0]["next_run_at"]) > late, "the next run is after now");
    assert!(s.store.schedules().await.unwrap().iter().all(|x| x.source == "api"));
    s.stop().await;
}

/// Drafts and archived runbooks never run, so they cannot be scheduled (409, naming the
/// state); archiving a runbook removes its schedules and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_runnable_runbooks_are_scheduled_and_archiving_removes_schedules() {
    let s = Server::start().await;
    let author = s.token("ann", &["author", "operator"]).await;
    let draft = runbook("later", "1.0.0", "  status: draft\n", "", "    - id: a\n      run: \"true\"\n");
    let (status, doc) = s.publish(&author, &draft).await;
    assert_eq!(status, StatusCode::CREATED, "{doc}");
    let body = json!({ "runbook": "later", "cron": "0 3 * * *" });
    let (status, doc) = s.post("/api/v1/schedules", &author, body.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{doc}");
    assert!(doc["error"]["message"].as_str().unwrap().starts_with("runbook `later` is a draft"), "{doc}");

    let reason = |status: &str| json!({ "status": status, "reason": "test" });
    let (status, _) = s.post("/api/v1/runbooks/later/lifecycle", &author, reason("active")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, created) = s.post("/api/v1/schedules", &author, body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    s.post("/api/v1/runbooks/later/lifecycle", &author, reason("deprecated")).await;
    let (status, doc) = s.post("/api/v1/runbooks/later/lifecycle", &author, reason("archived")).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["schedules_removed"], json!([created["id"]]));
    assert!(doc["note"].as_str().unwrap().contains("1 schedule(s) were removed"), "{doc}");
    let (_, list) = s.get("/api/v1/schedules", &author).await;
    assert_eq!(list["items"], json!([]));
    // A new version of it, with schedules of its own: published, its schedules not installed.
    let later = runbook("later", "1.1.0", "", "", "    - id: a\n      run: \"true\"\n")
        .replace("spec:\n", "spec:\n  schedules: [ { cron: \"*/10 * * * * *\" } ]\n");
    let (status, doc) = s.publish(&author, &later).await;
    assert!(status.is_success(), "{doc}");
    assert_eq!(
        doc["warnings"],
        json!(["metadata.status is `active`, but only a first publish reads it: `later` stays archived (`opsbook \
             lifecycle later STATUS` moves it)"])
    );
    let (_, list) = s.get("/api/v1/schedules", &author).await;
    assert_eq!(list["items"], json!([]), "an archived runbook's schedules are not installed");
    let (status, doc) = s.post("/api/v1/schedules", &author, body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{doc}");
    assert_eq!(
        doc["error"]["message"],
        "runbook `later` is archived and can never run again, so it cannot be scheduled"
    );
    // The removal is in the audit trail.
    let admin = s.token("root", &["admin"]).await;
    let (_, audit) = s.get("/api/v1/audit?action=runbook.lifecycle", &admin).await;
    let archived = audit["items"].as_array().unwrap().iter().find(|r| r["details"]["to_status"] == "archived");
    assert_eq!(archived.unwrap()["details"]["schedules_removed"], json!([created["id"]]));
    s.stop().await;
}

/// No secret value is ever stored in a schedule, required or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_never_scheduled() {
    let s = Server::start().await;
    let author = s.token("ann", &["author", "operator", "admin"]).await;
    let book = runbook("sec", "1.0.0", "", "    password: { type: secret }\n", "    - id: a\n      run: \"true\"\n");
    s.publish(&author, &book).await;
    let body = json!({ "runbook": "sec", "cron": "0 3 * * *", "params": { "password": "hunter2-in-clear" } });
    let (status, doc) = s.post("/api/v1/schedules", &author, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}");
    assert_eq!(
        doc["error"]["message"],
        "parameter `password` is a secret: secrets are never stored, so they cannot be scheduled"
    );
    assert_eq!(doc["error"]["details"]["param"], "password");
    let (_, list) = s.get("/api/v1/schedules", &author).await;
    assert_eq!(list["items"], json!([]));
    let (_, audit) = s.get("/api/v1/audit", &author).await;
    assert!(!audit.to_string().contains("hunter2-in-clear"), "{audit}");
    // Without the secret (it is optional), the schedule is fine.
    let (status, doc) = s.post("/api/v1/schedules", &author, json!({ "runbook": "sec", "cron": "0 3 * * *" })).await;
    assert_eq!(status, StatusCode::CREATED, "{doc}");
    s.stop().await;
}

/// A scheduled run was asked for by whoever scheduled it: they cannot approve it (the
/// two-person rule), whatever the case of their name; once they can no longer act (every
/// token revoked), their schedules stop firing and say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_is_its_creators_request() {
    let s = Server::start().await;
    let admin = s.token("root", &["admin"]).await;
    let (status, ann) =
        s.post("/api/v1/tokens", &admin, json!({ "user": " Ann ", "roles": ["operator", "approver", "author"] })).await;
    assert_eq!(status, StatusCode::CREATED, "{ann}");
    assert_eq!(ann["user"], "ann");
    let ann_token = ann["token"].as_str().unwrap().to_string();
    let other = s.token("bob", &["approver"]).await;
    let book =
        runbook("gated", "1.0.0", "", "", "    - id: gate\n      approval: {}\n    - id: b\n      run: \"true\"\n");
    s.publish(&ann_token, &book).await;
    let (status, sched) =
        s.post("/api/v1/schedules", &ann_token, json!({ "runbook": "gated", "cron": "0 3 * * *" })).await;
    assert_eq!(status, StatusCode::CREATED, "{sched}");
    let due = at_ms(&sched["next_run_at"]);
    let ran = tick(&s.state, due).await;
    let id = ran[0].1.trim_start_matches("started ").to_string();
    s.wait_for(&id, &ann_token, |d| d["status"] == "waiting").await;
    let (status, doc) =
        s.post(&format!("/api/v1/executions/{id}/approvals"), &ann_token, json!({ "decision": "approve" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{doc}");
    assert_eq!(doc["error"]["message"], "the requester cannot approve their own execution");
    // Still true once the schedule is gone (the run's audit record says who asked).
    let sched_id = sched["id"].as_str().unwrap();
    s.call("DELETE", &format!("/api/v1/schedules/{sched_id}"), Some(&ann_token), None).await;
    let (status, _) =
        s.post(&format!("/api/v1/executions/{id}/approvals"), &ann_token, json!({ "decision": "approve" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, doc) =
        s.post(&format!("/api/v1/executions/{id}/approvals"), &other, json!({ "decision": "approve" })).await;
    assert_eq!(status, StatusCode::OK, "{doc}");

    // Revoked: the schedules of that user stop firing, and say so.
    let (_, sched) = s.post("/api/v1/schedules", &ann_token, json!({ "runbook": "gated", "cron": "0 4 * * *" })).await;
    let due = at_ms(&sched["next_run_at"]);
    s.call("DELETE", &format!("/api/v1/tokens/{}", ann["id"].as_str().unwrap()), Some(&admin), None).await;
    let ran = tick(&s.state, due).await;
    assert_eq!(ran.len(), 1);
    assert!(ran[0].1.starts_with("not started: ann created this schedule and has no valid token"), "{ran:?}");
    s.stop().await;
}

/// Two servers on one database see the same schedule due at the same moment: one
/// execution for that fire, not two (the fire is the run's idempotency key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_starts_one_execution_however_many_servers_see_it() {
    let s = Server::start().await;
    let op = s.token("olga", &["operator", "author"]).await;
    s.publish(&op, &runbook("slow", "1.0.0", "", "", "    - id: a\n      run: \"true\"\n")).await;
    let (_, sched) =
        s.post("/api/v1/schedules", &op, json!({ "runbook": "slow", "cron": "0 4 * * *", "overlap": "queue" })).await;
    let due = at_ms(&sched["next_run_at"]);
    // A second server (its own connection and state) on the same database.
    let other_store = s.open_again().await;
    let config = opsbook_server::Config { secret_keys: Some(crate::support::TEST_KEY.into()), ..Default::default() };
    let other = opsbook_server::state(other_store, config);
    let a = tick(&s.state, due).await;
    assert!(a[0].1.starts_with("started "), "{a:?}");
    // (Ended, so that the other server does not hold its run back behind it.)
    s.settled(a[0].1.trim_start_matches("started "), &op).await;
    // The other server read the schedule as due before the first recorded the run.
    let id = sched["id"].as_str().unwrap();
    s.store.schedule_ran(id, due, Some(due), "as the other server saw it").await.unwrap();
    let b = tick(&other, due).await;
    assert_eq!(b[0].1, format!("{} (by another server)", a[0].1), "{b:?}");
    let runs = s
        .store
        .executions(&ExecutionFilter { runbook: Some("slow".into()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(runs.len(), 1, "one execution for the fire: {a:?} {b:?}");
    let submits = s
        .store
        .audit(&opsbook_store::AuditFilter {
            action: Some("execution.submit".into()),
            target: Some(runs[0].id.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(submits.len(), 1, "audited once");
    s.stop().await;
}

/// A schedule runs on the authority of whoever set it up: publishing a runbook's
/// schedules needs the right to run it so, and each run is checked against what its
/// creator may do at that moment, under the policies of the version that runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_run_on_their_creators_authority() {
    let s = Server::start_with(|c| {
        c.policies = toml::from_str::<opsbook_server::Config>(
            "[[policy]]\nparam = { name = \"environment\", value = \"production\" }\nroles = [\"prod-deployer\"]\n\n\
             [[policy]]\ntags = [\"web\"]\nroles = [\"team-web\"]\n",
        )
        .unwrap()
        .policies;
    })
    .await;
    let admin = s.token("root", &["admin"]).await;
    let book = |version: &str, env: &str| {
        runbook(
            "deploy",
            version,
            "",
            "    environment: { type: enum, values: [staging, production], required: true }\n",
            "    - id: a\n      run: \"true\"\n",
        )
        .replace(
            "  steps:",
            &format!("  schedules:\n    - {{ cron: \"0 3 * * *\", params: {{ environment: {env} }} }}\n  steps:"),
        )
    };
    let token = |user: &str, roles: &[&str]| {
        let (labels, roles): (Vec<&str>, Vec<&str>) = roles.iter().partition(|r| r.contains('-'));
        let body = json!({ "user": user, "roles": roles, "labels": labels });
        let s = &s;
        let admin = admin.clone();
        async move {
            let (status, doc) = s.post("/api/v1/tokens", &admin, body).await;
            assert_eq!(status, StatusCode::CREATED, "{doc}");
            (doc["token"].as_str().unwrap().to_string(), doc["id"].as_str().unwrap().to_string())
        }
    };
    // An author who may not run the runbook cannot make it run every night.
    let (ann, _) = token("ann", &["author"]).await;
    let (status, doc) = s.publish(&ann, &book("1.0.0", "staging")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{doc}");
    assert_eq!(
        doc["error"]["message"],
        "schedule 1 (`0 3 * * *`) would run `deploy` on your authority, and running it needs the operator or admin role"
    );
    assert_eq!(s.get("/api/v1/runbooks/deploy", &admin).await.0, StatusCode::NOT_FOUND, "nothing published");
    // Nor may an operator schedule what the policies keep from them.
    let (bob, bob_id) = token("bob", &["author", "operator"]).await;
    let (status, doc) = s.publish(&bob, &book("1.0.0", "production")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{doc}");
    assert_eq!(
        doc["error"]["message"],
        "schedule 1 (`0 3 * * *`) runs `deploy` like this, which needs one of the roles prod-deployer"
    );
    let (status, doc) = s.publish(&bob, &book("1.0.0", "staging")).await;
    assert_eq!(status, StatusCode::CREATED, "{doc}");
    let (_, list) = s.get("/api/v1/schedules", &admin).await;
    assert_eq!(list["items"][0]["created_by"], "bob");
    assert_eq!(list["items"][0]["roles"], json!(["author", "operator"]), "the roles it runs with, at most");
    let due = at_ms(&list["items"][0]["next_run_at"]);
    // Bob keeps only the author role: his schedule no longer starts runs.
    s.call("DELETE", &format!("/api/v1/tokens/{bob_id}"), Some(&admin), None).await;
    token("bob", &["author"]).await;
    let ran = tick(&s.state, due).await;
    assert_eq!(
        ran[0].1,
        "not started: bob created this schedule and has no role that may run runbooks now (operator or admin); \
         delete it, or recreate it as someone who may run it"
    );

    // A schedule made through the API by a production deployer who is one no more.
    let (pia, pia_id) = token("pia", &["operator", "prod-deployer"]).await;
    let (status, sched) = s
        .post(
            "/api/v1/schedules",
            &pia,
            json!({ "runbook": "deploy", "cron": "0 5 * * *", "params": { "environment": "production" } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sched}");
    let due = at_ms(&sched["next_run_at"]);
    s.call("DELETE", &format!("/api/v1/tokens/{pia_id}"), Some(&admin), None).await;
    token("pia", &["operator"]).await;
    let ran = tick(&s.state, due).await;
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].1, "not started: running `deploy` like this needs one of the roles prod-deployer");
    let audit = s
        .state
        .store
        .audit(&opsbook_store::AuditFilter { action: Some("authz.denied".into()), ..Default::default() })
        .await
        .unwrap();
    let sched_actor = format!("schedule:{}", sched["id"].as_str().unwrap());
    assert!(audit.iter().any(|r| r.actor == sched_actor), "{audit:?}");
    let runs = s.state.store.executions(&ExecutionFilter::default()).await.unwrap();
    assert!(runs.is_empty(), "no run started: {runs:?}");
    // Deleting someone else's schedule needs what creating it would; its creator may.
    let (wes, _) = token("wes", &["operator"]).await;
    let path = format!("/api/v1/schedules/{}", sched["id"].as_str().unwrap());
    let (status, doc) = s.call("DELETE", &path, Some(&wes), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{doc}");
    assert_eq!(doc["error"]["message"], "deleting pia's schedule of `deploy` needs one of the roles prod-deployer");
    let (pia, _) = token("pia", &["operator"]).await;
    assert_eq!(s.call("DELETE", &path, Some(&pia), None).await.0, StatusCode::OK);

    // A run never has more than the credential its schedule was made with, whatever
    // other tokens its creator holds.
    let (cara, _) = token("cara", &["operator"]).await;
    token("cara", &["operator", "team-web"]).await;
    let body = json!({ "runbook": "deploy", "cron": "0 6 * * *", "params": { "environment": "staging" } });
    let (status, sched) = s.post("/api/v1/schedules", &cara, body).await;
    assert_eq!(status, StatusCode::CREATED, "{sched}");
    assert_eq!(sched["roles"], json!(["operator"]), "the roles of the token it was made with");
    let web = book("1.1.0", "staging").replace("spec:\n", "  tags: [web]\nspec:\n");
    assert_eq!(s.publish(&admin, &web).await.0, StatusCode::OK);
    let ran = tick(&s.state, at_ms(&sched["next_run_at"])).await;
    let mine: Vec<_> = ran.iter().filter(|(id, _)| sched["id"] == id.as_str()).collect();
    assert_eq!(mine[0].1, "not started: running `deploy` like this needs one of the roles team-web");
    s.stop().await;
}

/// A scheduled run's requester is who it started for, even after someone else publishes
/// the runbook again (which makes them the creator of its schedules from then on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_runs_requester_stays_after_a_new_publisher() {
    let s = Server::start().await;
    let ann = s.token("ann", &["author", "operator", "approver"]).await;
    let bob = s.token("bob", &["author", "operator"]).await;
    let book =
        runbook("gated", "1.0.0", "", "", "    - id: gate\n      approval: {}\n    - id: b\n      run: \"true\"\n")
            .replace("  steps:", "  schedules:\n    - { cron: \"0 3 * * *\" }\n  steps:");
    assert_eq!(s.publish(&ann, &book).await.0, StatusCode::CREATED);
    let (_, list) = s.get("/api/v1/schedules", &ann).await;
    let ran = tick(&s.state, at_ms(&list["items"][0]["next_run_at"])).await;
    let id = ran[0].1.trim_start_matches("started ").to_string();
    s.wait_for(&id, &ann, |d| d["status"] == "waiting").await;
    assert_eq!(s.publish(&bob, &book.replace("1.0.0", "1.1.0")).await.0, StatusCode::OK);
    let (_, list) = s.get("/api/v1/schedules", &ann).await;
    assert_eq!(list["items"][0]["created_by"], "bob");
    let (status, doc) =
        s.post(&format!("/api/v1/executions/{id}/approvals"), &ann, json!({ "decision": "approve" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{doc}");
    assert_eq!(doc["error"]["message"], "the requester cannot approve their own execution");
    s.stop().await;
}

/// A new version a schedule's parameters no longer fit: publishing says so, and the due
/// run names the parameter at fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_a_schedule_no_longer_fits_is_named() {
    let s = Server::start().await;
    let op = s.token("olga", &["author", "operator"]).await;
    let step = "    - id: a\n      run: \"true\"\n";
    s.publish(&op, &runbook("lc", "1.0.0", "", "", step)).await;
    let (_, sched) = s.post("/api/v1/schedules", &op, json!({ "runbook": "lc", "cron": "0 4 * * *" })).await;
    let id = sched["id"].as_str().unwrap();
    let (status, doc) =
        s.publish(&op, &runbook("lc", "1.5.0", "", "    must: { type: string, required: true }\n", step)).await;
    assert!(status.is_success(), "{doc}");
    let warned = format!("schedule {id} will not start with this version: parameter `must`: ");
    assert!(doc["warnings"][0].as_str().unwrap().starts_with(&warned), "{doc}");
    let ran = tick(&s.state, at_ms(&sched["next_run_at"])).await;
    assert!(ran[0].1.starts_with("not started: 1 invalid parameter(s): parameter `must`: "), "{ran:?}");
    s.stop().await;
}
