//! `parallel` steps: branches side by side, each with its own record, log, retries and
//! rollback, against real processes.

use opsbook_core::StepStatus;
use opsbook_store::{Phase, Store};

use crate::support::{Env, dead, runbook, wait_until};

#[test]
fn branches_run_side_by_side_and_roll_back_newest_first() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: warm\n      parallel:\n        steps:\n          - id: eu\n            run: |\n              sleep 1.5\n              echo region=eu >> \"$OPSBOOK_OUTPUT\"\n              echo \"warming eu\"\n              touch \"$T/eu-done\"\n            rollback: { run: echo eu >> \"$T/undone\" }\n          - id: us\n            run: test -e \"$T/eu-done\" && touch \"$T/in-turn\"; sleep 3; echo \"warming us\"\n            rollback: { run: echo us >> \"$T/undone\" }\n          - id: ap\n            run: |\n              n=$(cat \"$T/ap\" 2>/dev/null || echo 0); echo $((n+1)) > \"$T/ap\"; test $n -ge 1\n            retries: { count: 1, delay: 10ms }\n    - id: after\n      run: echo \"{{ steps.eu.outputs.region }} {{ steps.ap.status }}\"\n    - id: boom\n      run: exit 1\n",
    );
    let out = env.run_book(&book, &["--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    // us started while eu still slept (in turn, eu would have ended first). A proof that
    // holds on a loaded machine, where a bound on the run's time did not.
    assert!(env.path("eu-done").exists(), "eu ran to its end");
    assert!(!env.path("in-turn").exists(), "the branches ran side by side, not one after the other");
    let doc = out.json();
    let warm = &doc["steps"][0];
    assert_eq!(warm["kind"], "parallel");
    assert_eq!(warm["status"], "succeeded");
    let branches = warm["branches"].as_array().unwrap();
    assert_eq!(branches.iter().map(|b| b["name"].as_str().unwrap()).collect::<Vec<_>>(), ["eu", "us", "ap"]);
    assert_eq!(branches[2]["attempts"], 2, "a branch retries on its own");
    assert!(warm.get("targets").is_none());
    // Later steps read a branch's outputs and status by its id.
    let id = doc["id"].as_str().unwrap();
    let logs = env.run(&["logs", id]).stdout;
    assert!(logs.contains("[after] eu succeeded"), "{logs}");
    // Each branch's lines are its own.
    assert!(logs.contains("[eu] warming eu") && logs.contains("[us] warming us"), "{logs}");
    let only_us = env.run(&["logs", id, "--step", "us"]).stdout;
    assert!(only_us.contains("warming us") && !only_us.contains("warming eu"), "{only_us}");
    // The rollbacks ran one at a time, the branch that finished last first.
    assert_eq!(env.read("undone"), "us\neu\n");
    assert_eq!(branches[0]["rollback_status"], "succeeded");
    assert!(branches[2]["rollback_status"].is_null(), "ap has no rollback");
    // Every branch's attempts are on record under its own id.
    let (e, _) = env.last();
    let s = env.store();
    let attempts = s.block(s.store.attempts(&e.id)).unwrap();
    let ap: Vec<StepStatus> =
        attempts.iter().filter(|a| a.step_id == "ap" && a.phase == Phase::Step).map(|a| a.status).collect();
    assert_eq!(ap, [StepStatus::Failed, StepStatus::Succeeded]);
}

#[test]
fn fail_fast_cancels_the_running_branches_and_starts_no_more() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: group\n      parallel:\n        max: 2\n        steps:\n          - { id: slow, run: \"echo $$ > \\\"$T/slow\\\"; sleep 300\" }\n          - { id: bad, run: \"while [ ! -s \\\"$T/slow\\\" ]; do sleep 0.05; done; exit 4\" }\n          - { id: later, run: \"touch \\\"$T/later\\\"\" }\n",
    );
    let started = std::time::Instant::now();
    let out = env.run_book(&book, &["--output", "json"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "the slow branch was stopped");
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    let group = &doc["steps"][0];
    assert_eq!(group["status"], "failed");
    assert_eq!(group["error"], "branch bad: exited with code 4; cancelled: slow; not started: later");
    let status: Vec<&str> =
        group["branches"].as_array().unwrap().iter().map(|b| b["status"].as_str().unwrap()).collect();
    assert_eq!(status, ["cancelled", "failed", "skipped"]);
    assert_eq!(group["branches"][0]["error"], "cancelled: branch `bad` failed");
    assert_eq!(group["branches"][2]["error"], "not started: branch `bad` failed");
    let slow: i32 = env.read("slow").trim().parse().unwrap();
    wait_until(|| dead(slow), "the slow branch's process to be killed");
    assert!(!env.path("later").exists());
}

#[test]
fn fail_all_runs_every_branch_and_a_branch_not_required_does_not_fail_the_group() {
    let env = Env::new();
    let book = |mode: &str, required: &str| {
        runbook(
            "",
            &format!(
                "    - id: group\n      parallel:\n        fail: {mode}\n        steps:\n          - {{ id: a, run: exit 1, required: {required} }}\n          - {{ id: b, run: \"sleep 0.2; touch \\\"$T/b\\\"\", rollback: {{ run: \"touch \\\"$T/b-undone\\\"\" }} }}\n          - {{ id: c, run: exit 2, required: {required} }}\n"
            ),
        )
    };
    let out = env.run_book(&book("all", "true"), &["--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    assert_eq!(doc["steps"][0]["error"], "2 of 3 branches failed (a: exited with code 1; c: exited with code 2)");
    assert!(env.path("b").exists(), "b ran to its end");
    assert!(env.path("b-undone").exists(), "and was rolled back");
    let out = env.run_book(&book("fast", "false"), &["--output", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["steps"][0]["status"], "succeeded");
    let logs = env.run(&["logs", out.json()["id"].as_str().unwrap()]).stdout;
    assert!(logs.contains("branch a: exited with code 1 but is not required; continuing"), "{logs}");
}

#[test]
fn branch_mistakes_are_named_where_they_are() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: group\n      timeout: 5s\n      parallel:\n        max: 0\n        steps:\n          - { id: a, run: \"true\" }\n          - { id: a, run: \"true\" }\n          - { id: w, sleep: 1s }\n          - { id: r, run: \"true\", rollback: { manual: { instructions: undo } } }\n    - id: next\n      run: echo {{ steps.a.status }} {{ steps.zz.status }}\n",
    );
    env.write("test.yaml", &book);
    let out = env.run(&["validate", "test.yaml"]);
    assert_eq!(out.code, 1, "{out:?}");
    for want in [
        "test.yaml:9:7: step `group`: timeout belong on the branches of a parallel step",
        "test.yaml:12:14: step `group`: parallel.max must be at least 1",
        "test.yaml:15:19: duplicate step id `a`",
        "test.yaml:16:13: branch `w` of step `group`: a branch is a `run` step",
        "test.yaml:17:13: branch `r` of step `group`: a branch rolls back with `run`",
        "test.yaml:19:12: run: unknown step `steps.zz`",
    ] {
        assert!(out.stdout.contains(want), "{want}\n{}", out.stdout);
    }
}

#[test]
fn a_skipped_group_gives_its_branches_its_status() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: group\n      when: \"false\"\n      parallel:\n        steps:\n          - { id: a, run: \"true\" }\n    - id: next\n      run: echo \"a was {{ steps.a.status }}\"\n",
    );
    let out = env.run_book(&book, &["--output", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let logs = env.run(&["logs", out.json()["id"].as_str().unwrap()]).stdout;
    assert!(logs.contains("a was skipped"), "{logs}");
}

#[test]
fn runbook_tests_mock_and_check_branches() {
    let env = Env::new();
    let mut book = runbook(
        "    warm: { type: boolean, default: true }\n",
        "    - id: warm\n      when: params.warm\n      parallel:\n        fail: all\n        steps:\n          - { id: eu, run: ./warm.sh eu }\n          - { id: us, run: ./warm.sh us, retries: { count: 1, delay: 1s } }\n    - id: report\n      run: echo \"{{ steps.eu.outputs.hits | default('') }} {{ steps.eu.status }}\"\n",
    );
    book.push_str(
        "tests:\n  - name: a failing branch fails the group after both ran\n    mocks:\n      eu: { outputs: { hits: \"42\" } }\n      us: { attempts: [ { exit_code: 2 }, { exit_code: 3 } ] }\n    expect:\n      status: failed\n      steps: { eu: succeeded, us: failed, report: pending }\n      attempts: { us: 2 }\n      outputs: { eu: { hits: \"42\" } }\n      error_contains: \"us: exited with code 3\"\n  - name: a skipped group skips its branches\n    params: { warm: false }\n    expect:\n      status: succeeded\n      skipped: [warm, eu, us]\n      rendered: { report: 'echo \" skipped\"' }\n",
    );
    env.write("app.yaml", &book);
    let o = env.run(&["test", "app.yaml"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("2 passed"), "{o:?}");
}
