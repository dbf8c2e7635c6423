//! Runbook quality: manual steps and rollbacks, ratings, and `opsbook doc`.

use opsbook_core::{ExecStatus, StepStatus};
use opsbook_store::{Phase, Store, WaitKind};

use crate::support::{Env, SpawnWith, assert_fails_saying, out, runbook, wait_past};

fn me() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap().unwrap().name
}

const DRAIN: &str = "    - id: before\n      run: echo before >> done\n      rollback:\n        run: echo before >> undone\n    - id: drain\n      manual:\n        instructions: \"Drain {{ params.node }} in the load balancer console\"\n        checklist: [\"Traffic to {{ params.node }} at 0\", \"Alarms quiet\"]\n    - id: after\n      run: echo after >> done\n";

#[test]
fn manual_step_waits_then_confirm_carries_it_on() {
    let env = Env::new();
    let book = runbook("    node: { type: string }\n", DRAIN);
    let waiting = env.run_book(&book, &["-p", "node=web-1"]);
    assert_eq!(waiting.code, 3, "{waiting:?}");
    assert!(
        waiting.stdout.contains("drain waits for a person: manual step: Drain web-1 in the load balancer console"),
        "{waiting:?}"
    );
    assert!(waiting.stdout.contains("- [ ] Traffic to web-1 at 0"), "{waiting:?}");
    assert!(waiting.stdout.contains("`opsbook confirm"), "the summary says what to do: {waiting:?}");
    assert!(
        waiting.stdout.contains("  - [ ] Alarms quiet\nstep `drain` is for a person to do: when it is done"),
        "the checklist set apart from what to do: {waiting:?}"
    );
    let (e, steps) = env.last();
    assert_eq!(e.status, ExecStatus::Waiting);
    assert_eq!((steps[1].status, steps[1].wait_kind), (StepStatus::Waiting, Some(WaitKind::Manual)));
    assert!(steps[1].wait_deadline.is_some(), "a manual step has a deadline (7 days by default)");
    assert_eq!(env.read("done"), "before\n");

    // `approve` is not how a manual step is answered, and says so.
    let wrong = env.run(&["approve", &e.id]);
    assert_fails_saying(&wrong, 2, "waits for manual step `drain` to be done and confirmed (`opsbook confirm`)");
    let other = env.run(&["confirm", &e.id, "--step", "after"]);
    assert_fails_saying(&other, 2, "step `after` of execution");
    assert!(other.stderr.contains("is not waiting for confirmation; it waits on `drain`"), "{other:?}");

    let done = env.run(&["confirm", &e.id, "--note", "drained at 14:02", "--output", "json"]);
    assert_eq!(done.code, 0, "{done:?}");
    let doc = done.json();
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(doc["steps"][1]["outputs"]["confirmed_by"], me().as_str());
    assert_eq!(doc["steps"][1]["outputs"]["note"], "drained at 14:02");
    assert_eq!(doc["approvals"][0]["decision"], "confirmed");
    assert_eq!(env.read("done"), "before\nafter\n");
    let s = env.store();
    let recorded = s.block(s.store.approvals(&e.id)).unwrap();
    assert_eq!(recorded.len(), 1);
    let c = &recorded[0];
    assert!(c.manual && c.approved && c.phase == Phase::Step, "{c:?}");
    assert_eq!((c.approver.as_str(), c.comment.as_deref()), (me().as_str(), Some("drained at 14:02")));
    let show = env.run(&["show", &e.id]);
    assert!(show.stdout.contains(&format!("step `drain` done, confirmed by {}", me())), "{show:?}");
    let logs = env.run(&["logs", &e.id]);
    assert!(logs.stdout.contains(&format!("done, confirmed by {}: drained at 14:02", me())), "{logs:?}");
    let twice = env.run(&["confirm", &e.id]);
    assert_fails_saying(&twice, 2, "has no manual step waiting for confirmation (it has succeeded");
}

#[test]
fn manual_step_not_done_fails_and_rolls_back() {
    let env = Env::new();
    let book = runbook("    node: { type: string }\n", DRAIN);
    assert_eq!(env.run_book(&book, &["-p", "node=web-1"]).code, 3);
    let (e, _) = env.last();
    let said = env.run(&["confirm", &e.id, "--not-done", "-n", "console down"]);
    assert_eq!(said.code, 1, "the step failed: {said:?}");
    assert!(said.stdout.contains("not done"), "{said:?}");
    let (e, steps) = env.last();
    assert_eq!(e.status, ExecStatus::Failed);
    assert_eq!(steps[1].status, StepStatus::Failed);
    assert_eq!(steps[1].error.as_deref(), Some(format!("not done, said {}: console down", me()).as_str()));
    assert_eq!(env.read("undone"), "before\n", "the rollbacks ran");
    assert!(!env.read("done").contains("after"));
}

#[test]
fn manual_rollback_waits_for_a_person_then_the_older_rollbacks_run() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: a\n      run: \"true\"\n      rollback:\n        run: echo a >> undone\n    - id: switch\n      run: \"true\"\n      rollback:\n        manual: { instructions: \"Point DNS back at the old pool\", checklist: [\"TTL expired\"] }\n    - id: boom\n      run: exit 1\n",
    );
    let first = env.run_book(&book, &[]);
    assert_eq!(first.code, 3, "the rollback waits for a person: {first:?}");
    assert!(first.stdout.contains("manual rollback: Point DNS back at the old pool"), "{first:?}");
    assert!(first.stdout.contains("the rollback of step `switch` is for a person to do"), "{first:?}");
    assert!(!env.path("undone").exists(), "a's rollback waits for the newer manual one");
    let (e, steps) = env.last();
    assert_eq!(e.status, ExecStatus::Failed);
    assert_eq!(e.rollback_status, Some(StepStatus::Waiting));
    assert_eq!(steps[1].rollback_status, Some(StepStatus::Waiting));

    let done = env.run(&["confirm", &e.id, "--step", "switch", "--note", "TTL 60s"]);
    assert_eq!(done.code, 0, "{done:?}");
    assert!(done.stdout.contains("confirmed the rollback of step `switch`"), "{done:?}");
    assert_eq!(env.read("undone"), "a\n");
    let (e, steps) = env.last();
    assert_eq!(e.rollback_status, Some(StepStatus::Succeeded));
    assert_eq!(steps[1].rollback_status, Some(StepStatus::Succeeded));
    let s = env.store();
    let recorded = s.block(s.store.approvals(&e.id)).unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!((recorded[0].phase, recorded[0].manual), (Phase::Rollback, true));
}

#[test]
fn manual_step_on_a_terminal_asks_each_item() {
    let env = Env::new();
    let book = runbook("    node: { type: string }\n", DRAIN);
    env.write("test.yaml", &book);
    let cmd = format!("exec {} run test.yaml -p node=web-2", env!("CARGO_BIN_EXE_opsbook"));
    let mut child = env
        .cmd(&[])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn_with_program("script", &["-qec", &cmd, "/dev/null"]);
    use std::io::Write;
    child.stdin.as_mut().unwrap().write_all(b"y\ny\nall quiet\n").unwrap();
    let o = out(child.wait_with_output().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("[1/2] Traffic to web-2 at 0: done?"), "{o:?}");
    assert!(o.stdout.contains("[2/2] Alarms quiet: done?"), "{o:?}");
    assert_eq!(env.read("done"), "before\nafter\n");
    let (e, _) = env.last();
    let s = env.store();
    let recorded = s.block(s.store.approvals(&e.id)).unwrap();
    assert_eq!(recorded[0].comment.as_deref(), Some("all quiet"));
    assert_eq!(recorded[0].approver, me());
}

#[test]
fn manual_step_times_out() {
    let env = Env::new();
    let book = runbook("", "    - id: drain\n      manual: { instructions: \"Drain it\", timeout: 1s }\n");
    assert_eq!(env.run_book(&book, &[]).code, 3);
    let (e, steps) = env.last();
    // The deadline counts from the step's start (later than the execution's on a loaded machine).
    wait_past(steps[0].started_at.unwrap() + 1100);
    let resumed = env.run(&["resume", &e.id, "--output", "json"]);
    assert_eq!(resumed.code, 1, "{resumed:?}");
    assert_eq!(resumed.json()["steps"][0]["status"], "timed_out");
    assert_eq!(resumed.json()["steps"][0]["error"], "not confirmed within 1s");
    // A confirmation after the deadline is not taken: the step timed out.
    let book = format!("{book}    - id: after\n      run: touch after\n");
    assert_eq!(env.run_book(&book, &[]).code, 3);
    let (e, steps) = env.last();
    wait_past(steps[0].started_at.unwrap() + 1100);
    let late = env.run(&["confirm", &e.id, "--output", "json"]);
    assert_eq!(late.code, 1, "{late:?}");
    assert!(late.stderr.contains("timed out: not confirmed within 1s; the confirmation is not recorded"), "{late:?}");
    assert_eq!(late.json()["steps"][0]["status"], "timed_out");
    assert!(!env.path("after").exists());
}

#[test]
fn manual_steps_are_checked() {
    let env = Env::new();
    let cases = [
        ("    - id: m\n      manual: { instructions: \"  \" }\n", "manual.instructions: say what to do"),
        (
            "    - id: m\n      timeout: 5m\n      manual: { instructions: x }\n",
            "a manual step sets its wait as manual.timeout",
        ),
        (
            "    - id: m\n      retries: { count: 2 }\n      manual: { instructions: x }\n",
            "retries do not apply to manual steps",
        ),
        ("    - id: m\n      manual: { instructions: \"{{ params.nope }}\" }\n", "manual.instructions"),
        ("    - id: m\n      manual: { instruction: x }\n", "instruction"),
        (
            "    - id: m\n      run: \"true\"\n      rollback: { manual: { instructions: x, checklist: [\"\"] } }\n",
            "rollback.manual.checklist: an item is empty",
        ),
    ];
    for (steps, message) in cases {
        env.write("bad.yaml", &runbook("", steps));
        let o = env.run(&["validate", "bad.yaml"]);
        assert_eq!(o.code, 1, "{steps}: {o:?}");
        let text = format!("{}{}", o.stdout, o.stderr);
        assert!(text.contains(message), "{steps}: expected `{message}` in {o:?}");
        assert!(text.contains("bad.yaml:"), "the place is named: {o:?}");
    }
}

#[test]
fn feedback_rates_executions_that_ended() {
    let env = Env::new();
    assert_eq!(env.run_book(&runbook("", "    - id: a\n      run: \"true\"\n"), &[]).code, 0);
    let (e, _) = env.last();
    let rated = env.run(&["feedback", &e.id, "--rating", "4", "--comment", "smooth"]);
    assert_eq!(rated.code, 0, "{rated:?}");
    assert_eq!(rated.stdout.trim(), format!("{} rated execution {} 4/5", me(), e.id));
    // Given again, it replaces the person's rating.
    assert_eq!(env.run(&["feedback", &e.id, "--rating", "2"]).code, 0);
    let s = env.store();
    let ratings = s.block(s.store.feedback(&e.id)).unwrap();
    assert_eq!(ratings.len(), 1);
    assert_eq!((ratings[0].rating, ratings[0].comment.as_deref()), (2, None));
    let too_high = env.run(&["feedback", &e.id, "--rating", "6"]);
    assert_fails_saying(&too_high, 2, "6 is not in 1..=5");

    let book = runbook("", "    - id: gate\n      approval: {}\n");
    assert_eq!(env.run_book(&book, &[]).code, 3);
    let (waiting, _) = env.last();
    let early = env.run(&["feedback", &waiting.id, "--rating", "5"]);
    assert_fails_saying(&early, 2, "is waiting: feedback is for executions that ended");
}

#[test]
fn doc_writes_the_runbook_for_people() {
    let env = Env::new();
    let book = runbook(
        "    node: { type: string, description: \"Node to drain <img src=x onerror=alert(1)>\" }\n    pw: { type: secret }\n",
        "    - id: check\n      run: curl -sf \"http://{{ params.node }}/health\" | grep -q '<ok>'\n      env: { NODE: \"{{ params.node }}\" }\n      retries: { count: 2 }\n      rollback:\n        run: echo undo\n    - id: drain\n      manual: { instructions: \"Drain {{ params.node }}\", checklist: [\"Traffic at 0\", \"Alarms quiet\"] }\n    - id: ok\n      approval: { approvers: [\"role:sre\"], message: \"Go?\" }\n    - id: health\n      gate: { sources: [ { freeze: { dates: [\"2000-01-01\"] } } ], on_blocked: fail }\n",
    );
    env.write("book.yaml", &book);
    let md = env.run(&["doc", "book.yaml"]);
    assert_eq!(md.code, 0, "{md:?}");
    for part in [
        "# test\n",
        "| node | string | no |  | Node to drain &lt;img src=x onerror=alert(1)&gt; |",
        "| pw | secret | no |  |  |",
        "### 1. check (`check`)",
        "- **Limits:** times out after 1h, up to 3 attempts",
        "export NODE='{{ params.node }}'\ncurl -sf \"http://{{ params.node }}/health\" | grep -q '<ok>'",
        "Rollback (undoes this step):\n\n```\nexport NODE='{{ params.node }}'\necho undo\n```",
        "the `KEY=value` line it wrote to the file `$OPSBOOK_OUTPUT` names",
        "By hand: Drain {{ params.node }}\n\n- [ ] Traffic at 0\n- [ ] Alarms quiet\n",
        "Approval: 1 approval(s) needed, from role:sre. They are asked: “Go?”",
        "Health gate of its own (freeze): go on only while no incident, alert or freeze window blocks it; if it \
         does, stop (the step fails).\n",
    ] {
        assert!(md.stdout.contains(part), "expected {part:?} in\n{}", md.stdout);
    }
    assert!(!md.stdout.contains("gate check inline"), "{}", md.stdout);
    let nowhere = env.run(&["doc", "book.yaml", "-o", "no/such/dir/book.md"]);
    assert_fails_saying(&nowhere, 2, "cannot write no/such/dir/book.md: No such file or directory");
    let html = env.run(&["doc", "book.yaml", "--format", "html", "-o", "book.html"]);
    assert_eq!(html.code, 0, "{html:?}");
    let page = env.read("book.html");
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert!(
        page.contains("grep -q &#x27;&lt;ok&gt;&#x27;") || page.contains("grep -q '&lt;ok&gt;'"),
        "escaped: {page}"
    );
    assert!(!page.contains("<ok>"), "nothing from the runbook is taken as HTML");
    assert!(page.contains("<li><label><input type=\"checkbox\"> Traffic at 0</label></li>"), "{page}");
    let missing = env.run(&["doc", "nope.yaml"]);
    assert_fails_saying(&missing, 2, "nope.yaml");
}

const TESTED: &str = "    - id: build\n      run: make {{ params.target }}\n      validate: [ { output_contains: built } ]\n      rollback:\n        run: make clean\n    - id: ship\n      run: ./ship.sh --token {{ params.token }}\n      retries: { count: 1, delay: 30s }\n    - id: notify\n      when: \"params.target == 'release'\"\n      run: ./notify.sh\n";

#[test]
fn opsbook_test_runs_cases_without_running_anything() {
    let env = Env::new();
    let params = "    target: { type: string, required: true }\n    token: { type: secret }\n";
    let tests = "tests:\n  - name: a release ships and notifies\n    params: { target: release, token: s3cr3t }\n    mocks:\n      build: { stdout: built }\n    expect:\n      status: succeeded\n      ran: [build, ship, notify]\n      rendered: { ship: \"./ship.sh --token '***'\" }\n  - name: a failed ship is retried then rolled back\n    params: { target: dev }\n    mocks:\n      build: { stdout: built }\n      ship: { attempts: [ { exit_code: 2 }, { exit_code: 3, stderr: refused } ] }\n    expect:\n      status: failed\n      attempts: { ship: 2 }\n      steps: { notify: pending }\n      rollback_order: [build]\n      error_contains: exited with code 3\n";
    env.write("app.yaml", &format!("{}{tests}", runbook(params, TESTED)));
    // A test file beside it adds cases, one of them wrong on purpose.
    env.write(
        "app.test.yaml",
        "tests:\n  - name: wrong on purpose\n    params: { target: dev }\n    mocks: { notify: { stdout: sent } }\n    expect: { status: succeeded, ran: [build] }\n",
    );
    let started = std::time::Instant::now();
    let o = env.run(&["test", ".", "--junit", "report.xml"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "retry delays are not waited for");
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("ok   test › a release ships and notifies"), "{o:?}");
    assert!(o.stdout.contains("ok   test › a failed ship is retried then rolled back"), "{o:?}");
    assert!(o.stdout.contains("FAIL test › wrong on purpose"), "{o:?}");
    assert!(
        o.stdout.contains(
            "status: expected succeeded, got failed (step `build` failed: output does not contain \"built\")"
        ),
        "{o:?}"
    );
    assert!(o.stdout.ends_with("2 passed, 1 failed\n"), "{o:?}");
    assert!(o.stdout.contains("note: the mock of step `notify` was not used (it never ran)"), "{o:?}");
    assert!(!env.path("state/opsbook.db").exists(), "nothing was stored");
    let xml = env.read("report.xml");
    assert!(xml.contains("<testsuites name=\"opsbook\" tests=\"3\" failures=\"1\""), "{xml}");
    assert!(xml.contains("<testcase name=\"wrong on purpose\" classname=\"test\""), "{xml}");
    assert!(xml.contains("<failure message=\"status: expected succeeded, got failed (step `build` failed: output does not contain &quot;built&quot;)\">"), "{xml}");

    // Tests beside no runbook (renamed away) are not skipped quietly: the run fails.
    env.write("orphan.test.yaml", "tests:\n  - name: x\n    expect: { status: succeeded }\n");
    let o = env.run(&["test", "."]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("error: ./orphan.test.yaml: the tests of ./orphan.yaml, which is missing"), "{o:?}");
    std::fs::remove_file(env.path("orphan.test.yaml")).unwrap();
    // A mock of more attempts than the step makes is noted (its retries are not as meant).
    env.write("m/one.yaml", &runbook("", "    - id: once\n      run: \"true\"\n"));
    env.write(
        "m/one.test.yaml",
        "tests:\n  - name: x\n    mocks: { once: { attempts: [ { exit_code: 1 }, {}, {} ] } }\n    expect: { status: failed }\n",
    );
    let o = env.run(&["test", "m"]);
    assert!(o.stdout.contains("note: the mock of step `once` gives 3 attempts; the step made 1"), "{o:?}");

    // Cases that name no step of the runbook, or check nothing, are refused with their place.
    env.write(
        "app.test.yaml",
        "tests:\n  - name: typo\n    mocks:\n      biuld: { stdout: built }\n    expect: { status: succeeded }\n  - name: checks nothing\n",
    );
    let bad = env.run(&["test", "app.yaml"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("app.test.yaml:4:"), "{bad:?}");
    assert!(bad.stderr.contains("mocks: no step `biuld` in runbook `test` (did you mean `build`?)"), "{bad:?}");
    assert!(bad.stderr.contains("test `checks nothing`: expect: say what the run must come to"), "{bad:?}");
    let wrong_kind =
        "tests:\n  - name: x\n    mocks:\n      notify: { http: { status: 500 } }\n    expect: { status: failed }\n";
    env.write("app.test.yaml", wrong_kind);
    let bad = env.run(&["test", "app.yaml"]);
    assert!(bad.stderr.contains("mocks.notify: `http` mocks an http step, not a run step"), "{bad:?}");
    assert!(bad.stdout.contains("0 passed, 0 failed; 1 file(s) not valid, not run"), "{bad:?}");
    // A value that is no status is placed at the value.
    env.write(
        "app.test.yaml",
        "tests:\n  - name: x\n    expect:\n      status: finished\n      steps: { ship: bogus }\n      ran: [build, biuld]\n",
    );
    let bad = env.run(&["test", "app.yaml"]);
    assert!(bad.stderr.contains("app.test.yaml:4:15: expect.status: `finished` is not an execution status"), "{bad:?}");
    assert!(bad.stderr.contains("app.test.yaml:5:22: expect.steps.ship: `bogus` is not a step status"), "{bad:?}");
    assert!(bad.stderr.contains("app.test.yaml:6:20: expect.ran: no step `biuld` in runbook `test`"), "{bad:?}");
    let validate = env.run(&["validate", "app.test.yaml"]);
    assert_eq!(validate.code, 1, "{validate:?}");

    std::fs::remove_file(env.path("app.test.yaml")).unwrap();
    env.write("plain.yaml", &runbook("", "    - id: a\n      run: \"true\"\n"));
    let none = env.run(&["test", "plain.yaml"]);
    assert_fails_saying(&none, 2, "found no test cases");
    assert!(none.stdout.contains("without tests: plain.yaml"), "{none:?}");
}

#[test]
fn export_and_import_carry_the_registry_to_another_database() {
    use crate::server::{client, serve, token};
    let env = Env::new();
    let author = token(&env, "ann", &["author", "operator"]);
    let srv = serve(&env);
    env.write("books/scripts/hello.sh", "echo hello\n");
    env.write(
        "books/web.yaml",
        &runbook("", "    - id: hi\n      run: sh scripts/hello.sh\n").replace("name: test", "name: web"),
    );
    assert_eq!(client(&env, &srv.url, &author, &["push", "books"]).code, 0);
    env.write(
        "books/web.yaml",
        &runbook("", "    - id: hi\n      run: sh scripts/hello.sh twice\n")
            .replace("name: test", "name: web")
            .replace("1.0.0", "1.1.0")
            .replace("spec:\n", "spec:\n  schedules: [ { cron: \"0 3 * * *\", timezone: UTC } ]\n"),
    );
    assert_eq!(client(&env, &srv.url, &author, &["push", "books"]).code, 0);
    let moved = client(&env, &srv.url, &author, &["lifecycle", "web", "deprecated", "--reason", "replaced by web2"]);
    assert_eq!(moved.code, 0, "{moved:?}");
    assert_eq!(client(&env, &srv.url, &author, &["review", "web", "--note", "still right"]).code, 0);
    let ran = client(&env, &srv.url, &author, &["run", "web", "--output", "json"]);
    assert_eq!(ran.code, 0, "{ran:?}");

    let exported = client(&env, &srv.url, &author, &["export", "-o", "registry.tar.gz", "--executions"]);
    assert_eq!(exported.code, 0, "{exported:?}");
    assert!(
        exported.stdout.contains("exported 1 runbooks (2 versions, 1 bundles, 1 executions) to registry.tar.gz"),
        "{exported:?}"
    );
    // An ordinary archive of YAML and JSON.
    let listing = std::process::Command::new("tar").args(["tzf"]).arg(env.path("registry.tar.gz")).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for f in [
        "opsbook-export/manifest.json",
        "opsbook-export/runbooks/web/runbook.json",
        "opsbook-export/runbooks/web/1.1.0.yaml",
    ] {
        assert!(listing.contains(f), "{f} in {listing}");
    }
    assert!(listing.contains("opsbook-export/executions/"), "{listing}");
    drop(srv);

    let other = env.path("other/opsbook.db");
    let other = other.to_str().unwrap();
    let imported = env.run(&["--db", other, "import", "registry.tar.gz"]);
    assert_eq!(imported.code, 0, "{imported:?}");
    assert!(imported.stdout.contains("imported 1 runbooks (2 versions)"), "{imported:?}");
    assert!(imported.stdout.contains("its 1 executions are kept in the archive for the record"), "{imported:?}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use opsbook_store::{ServerStore, Store};
        let s = opsbook_store_sqlite::SqliteStore::open(std::path::Path::new(other)).await.unwrap();
        let e = s.registry_entry("web").await.unwrap();
        assert_eq!((e.latest_version.as_str(), e.status.as_str()), ("1.1.0", "deprecated"));
        let versions = s.registry_versions("web").await.unwrap();
        assert_eq!(versions.len(), 2);
        assert!(versions.iter().all(|v| v.published_by == "ann" && v.bundle_sha256.is_some()));
        let bundle = versions[0].bundle_sha256.clone().unwrap();
        assert!(s.bundle(&bundle).await.unwrap().is_some(), "the files came along");
        let events = s.lifecycle_events("web").await.unwrap();
        assert!(
            events.iter().any(|e| e.to_status == "deprecated"
                && e.actor == "ann"
                && e.reason.as_deref() == Some("replaced by web2")),
            "{events:?}"
        );
        let reviews = s.reviews(Some("web")).await.unwrap();
        assert_eq!((reviews[0].reviewer.as_str(), reviews[0].note.as_str()), ("ann", "still right"));
        assert!(s.executions(&Default::default()).await.unwrap().is_empty(), "executions are not imported");
        let schedules = s.schedules().await.unwrap();
        assert_eq!(schedules.len(), 1, "its own schedule, as publishing sets it: {schedules:?}");
        assert_eq!((schedules[0].id.as_str(), schedules[0].cron.as_str()), ("web#1", "0 3 * * *"));
        assert!(schedules[0].next_run_at.is_some());
    });
    // Again: every conflict listed, nothing written.
    let again = env.run(&["--db", other, "import", "registry.tar.gz"]);
    assert_fails_saying(
        &again,
        2,
        "nothing was imported from registry.tar.gz:\n  - runbook `web` exists already (v1.1.0, deprecated)",
    );
    // The server's own database exports the same registry.
    let direct = env.run(&["export", "-o", "direct.tar.gz"]);
    assert_eq!(direct.code, 0, "{direct:?}");
    assert!(direct.stdout.contains("exported 1 runbooks (2 versions, 1 bundles)"), "{direct:?}");
    env.write("junk.tar.gz", "not an archive");
    let junk = env.run(&["--db", other, "import", "junk.tar.gz"]);
    assert_fails_saying(&junk, 2, "junk.tar.gz: not an opsbook export");

    // Crafted archives, unpacked and packed again with tar: a text filed under another
    // runbook's name (its sha256 fixed up) is refused, not imported under its own name.
    let tar = |args: &[&str]| {
        assert!(std::process::Command::new("tar").args(args).current_dir(env.path("")).status().unwrap().success())
    };
    tar(&["xzf", "registry.tar.gz"]);
    let text = env.read("opsbook-export/runbooks/web/1.0.0.yaml");
    let renamed = text.replace("name: web", "name: other");
    env.write("opsbook-export/runbooks/web/1.0.0.yaml", &renamed);
    let record = env.read("opsbook-export/runbooks/web/runbook.json");
    let (old, new) = (opsbook_core::sha256_hex(text.as_bytes()), opsbook_core::sha256_hex(renamed.as_bytes()));
    env.write("opsbook-export/runbooks/web/runbook.json", &record.replace(&old, &new));
    tar(&["czf", "renamed.tar.gz", "opsbook-export"]);
    let fresh = env.path("fresh/opsbook.db");
    let renamed = env.run(&["--db", fresh.to_str().unwrap(), "import", "renamed.tar.gz"]);
    assert_fails_saying(&renamed, 2, "runbook `web` v1.0.0: its text is runbook `other` v1.0.0");
    // A lifecycle status opsbook does not have (the runbook could never leave it).
    env.write("opsbook-export/runbooks/web/1.0.0.yaml", &text);
    let mut doc: serde_json::Value = serde_json::from_str(&record).unwrap();
    let last = doc["lifecycle"].as_array_mut().unwrap().last_mut().unwrap();
    last["to_status"] = "bogus".into();
    env.write("opsbook-export/runbooks/web/runbook.json", &doc.to_string());
    tar(&["czf", "bogus.tar.gz", "opsbook-export"]);
    let bogus = env.run(&["--db", fresh.to_str().unwrap(), "import", "bogus.tar.gz"]);
    assert_eq!(bogus.code, 2, "{bogus:?}");
    assert!(bogus.stderr.contains("runbook `web`: runbook.json: lifecycle[1]: unknown status `bogus`"), "{bogus:?}");
    // A small archive that unpacks to a huge file is refused as it unpacks.
    std::fs::write(env.path("opsbook-export/manifest.json"), vec![b' '; 41 << 20]).unwrap();
    tar(&["czf", "bomb.tar.gz", "opsbook-export"]);
    let bomb = env.run(&["--db", fresh.to_str().unwrap(), "import", "bomb.tar.gz"]);
    assert_fails_saying(&bomb, 2, "bomb.tar.gz: manifest.json unpacks to more than 40 MiB, more than an export holds");
}

#[test]
fn every_example_ships_passing_tests() {
    let env = Env::new();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let o = env.run(&["test", examples.to_str().unwrap(), "--junit", "examples.xml"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(!o.stdout.contains("without tests"), "every example has tests: {o:?}");
    assert!(o.stdout.contains(" passed, 0 failed"), "{o:?}");
    let xml = env.read("examples.xml");
    for name in ["web-app-deploy", "aws-web-app-deploy", "directory-backup", "high-error-rate", "log-cleanup"] {
        assert!(xml.contains(&format!("<testsuite name=\"{name}\"")), "{name} in {xml}");
    }
}

#[test]
fn confirm_feedback_and_report_through_a_server() {
    use crate::server::{client, serve, token};
    let env = Env::new();
    let op = token(&env, "olga", &["operator", "author"]);
    let srv = serve(&env);
    let meta = "  type: deployment\n  manual_duration: 30m\n";
    let book = runbook("    node: { type: string }\n", DRAIN)
        .replace("name: test", "name: drain")
        .replace("  type: maintenance\n", meta);
    env.write("books/drain.yaml", &book);
    assert_eq!(client(&env, &srv.url, &op, &["push", "books"]).code, 0);
    let waiting = client(&env, &srv.url, &op, &["run", "drain", "-p", "node=web-9", "--output", "json"]);
    assert_eq!(waiting.code, 3, "{waiting:?}");
    let id = waiting.json()["id"].as_str().unwrap().to_string();
    let hint = client(&env, &srv.url, &op, &["show", &id]);
    assert!(hint.stdout.contains(&format!("confirm {id} --step drain` (or `--not-done`)")), "{hint:?}");
    let done = client(&env, &srv.url, &op, &["confirm", &id, "--note", "drained"]);
    assert_eq!(done.code, 0, "{done:?}");
    assert_eq!(
        done.stdout.trim(),
        format!("confirmed step `drain` of execution {id} done as olga; the execution goes on")
    );
    crate::support::wait_until(
        || client(&env, &srv.url, &op, &["show", &id, "--output", "json"]).json()["status"] == "succeeded",
        "the execution to go on",
    );
    let rated = client(&env, &srv.url, &op, &["feedback", &id, "--rating", "5", "--comment", "clear steps"]);
    assert_eq!(rated.stdout.trim(), format!("olga rated execution {id} 5/5"), "{rated:?}");

    let table = client(&env, &srv.url, &op, &["report"]);
    assert_eq!(table.code, 0, "{table:?}");
    assert!(table.stdout.contains("1 runs (1 finished) by 1 people; success rate 100%"), "{table:?}");
    assert!(table.stdout.contains("change failure rate 0%"), "{table:?}");
    assert!(table.stdout.contains("Comment on drain (5/5 by olga): clear steps"), "{table:?}");
    let csv = client(&env, &srv.url, &op, &["report", "--output", "csv"]);
    let mut lines = csv.stdout.lines();
    assert!(
        lines.next().unwrap().starts_with("runbook,type,runs,finished,succeeded,success_rate,success_trend,"),
        "{csv:?}"
    );
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&row[..6], ["drain", "deployment", "1", "1", "1", "1"], "{csv:?}");
    assert_eq!(row[15], "5", "the average rating: {csv:?}");
    let json = client(&env, &srv.url, &op, &["report", "--output", "json"]).json();
    assert_eq!(json["runbooks"][0]["change_failure_rate"], 0.0);
    assert!(json["runbooks"][0]["time_saved_ms"].as_i64().unwrap() > 0, "30 minutes by hand against a few seconds");
    let local = env.run(&["--local", "report"]);
    assert_fails_saying(&local, 2, "this asks a server");
}
