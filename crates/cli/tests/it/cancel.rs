//! Ctrl-C and `opsbook cancel`: the step's group dies, rollbacks run, a second Ctrl-C skips them.

use nix::sys::signal::Signal;
use opsbook_core::{ExecStatus, StepStatus};
use opsbook_store::Store;

use crate::support::{Env, dead, out, runbook, signal, wait_until};

fn book(rollback_of_a: &str) -> String {
    runbook(
        "",
        &format!(
            "    - id: a\n      run: \"true\"\n      rollback:\n        run: {rollback_of_a}\n    - id: b\n      run: |\n        echo $$ > pid\n        touch started\n        sleep 300\n    - id: c\n      run: touch never\n"
        ),
    )
}

#[test]
fn ctrl_c_kills_the_step_and_rolls_back() {
    let env = Env::new();
    env.write("test.yaml", &book("touch undone"));
    let child = env.spawn(&["run", "test.yaml"]);
    env.wait_for_file("started");
    signal(&child, Signal::SIGINT);
    let o = out(child.wait_with_output().unwrap());
    assert_eq!(o.code, 1, "{o:?}");
    let pid: i32 = env.read("pid").trim().parse().unwrap();
    wait_until(|| dead(pid), "the step to die");
    assert!(env.path("undone").exists(), "rollback of a ran");
    assert!(!env.path("never").exists());
    let (e, steps) = env.last();
    assert_eq!(e.status, ExecStatus::Cancelled);
    assert_eq!(e.error.as_deref(), Some("cancelled during step `b`"));
    assert_eq!(steps[1].status, StepStatus::Cancelled);
    assert_eq!(steps[2].status, StepStatus::Pending);
    assert_eq!(e.rollback_status, Some(StepStatus::Succeeded));
}

#[test]
fn second_ctrl_c_skips_rollbacks() {
    let env = Env::new();
    env.write("test.yaml", &book("\"if [ ! -e rolling ]; then touch rolling; sleep 300; fi; touch undone\""));
    let child = env.spawn(&["run", "test.yaml"]);
    env.wait_for_file("started");
    signal(&child, Signal::SIGINT);
    env.wait_for_file("rolling");
    signal(&child, Signal::SIGINT);
    let o = out(child.wait_with_output().unwrap());
    assert_eq!(o.code, 1, "{o:?}");
    assert!(!env.path("undone").exists());
    let (e, steps) = env.last();
    assert_eq!(e.status, ExecStatus::Cancelled);
    assert_eq!(steps[0].rollback_status, Some(StepStatus::Cancelled));
    assert_eq!(e.rollback_status, Some(StepStatus::Cancelled));
    // The skipped rollback can still be finished.
    let finish = env.run(&["rollback", &e.id]);
    assert_eq!(finish.code, 0, "the rollback succeeded (the execution stays cancelled): {finish:?}");
    assert_eq!(env.last().0.status, ExecStatus::Cancelled);
    assert!(env.path("undone").exists());
    assert_eq!(env.last().0.rollback_status, Some(StepStatus::Succeeded));
    let again = env.run(&["rollback", &e.id]);
    assert!(again.stderr.contains("was already rolled back"), "{again:?}");
}

#[test]
fn cancel_command_stops_a_run_in_another_process() {
    let env = Env::new();
    env.write("test.yaml", &book("touch undone"));
    let child = env.spawn(&["run", "test.yaml"]);
    env.wait_for_file("started");
    let s = env.store();
    let id = s.block(s.store.running()).unwrap()[0].id.clone();
    let cancel = env.run(&["cancel", &id]);
    assert_eq!(cancel.code, 0, "{cancel:?}");
    assert!(cancel.stdout.contains(&format!("execution {id} cancelled")), "{cancel:?}");
    let o = out(child.wait_with_output().unwrap());
    assert_eq!(o.code, 1, "{o:?}");
    assert!(env.path("undone").exists());
    // The runner says where the cancel came from: no key was pressed there.
    assert!(o.stderr.contains("(cancelled from elsewhere; cancel again to skip rollbacks)"), "{o:?}");
    assert!(!o.stderr.contains("Ctrl-C"), "{o:?}");
}

#[test]
fn cancelling_a_waiting_execution_rolls_it_back() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: a\n      run: \"true\"\n      rollback:\n        run: touch undone\n    - id: gate\n      approval: {}\n",
    );
    assert_eq!(env.run_book(&book, &[]).code, 3);
    let (e, _) = env.last();
    let cancel = env.run(&["cancel", &e.id, "--output", "json"]);
    assert_eq!(cancel.code, 0, "{cancel:?}");
    assert!(env.path("undone").exists());
    // For programs: the execution's document alone on stdout.
    let doc = cancel.json();
    assert_eq!((doc["status"].as_str(), doc["rollback"]["status"].as_str()), (Some("cancelled"), Some("succeeded")));
    let (e, steps) = env.last();
    assert_eq!(e.status, ExecStatus::Cancelled);
    assert_eq!(steps[1].status, StepStatus::Cancelled);
    let again = env.run(&["cancel", &e.id]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("was cancelled already"), "{again:?}");
}

/// A cancel whose rollbacks leave a manual one for a person ends waiting (exit 3), as a
/// run does, saying how to confirm it.
#[test]
fn a_cancel_that_leaves_a_manual_rollback_waits() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: m\n      run: \"true\"\n      rollback:\n        manual: { instructions: \"Switch back by hand\" }\n    - id: gate\n      approval: {}\n",
    );
    assert_eq!(env.run_book(&book, &[]).code, 3);
    let (e, _) = env.last();
    let cancel = env.run(&["cancel", &e.id]);
    assert_eq!(cancel.code, 3, "{cancel:?}");
    assert!(cancel.stdout.contains(&format!("opsbook confirm {} --step m", e.id)), "{cancel:?}");
    let (e, _) = env.last();
    assert_eq!(e.status, ExecStatus::Cancelled);
    assert_eq!(e.rollback_status, Some(StepStatus::Waiting));
}

/// With `on_failure: stop`, Ctrl-C says what happens: the step stops, nothing rolls back.
#[test]
fn ctrl_c_says_nothing_is_rolled_back_with_on_failure_stop() {
    let env = Env::new();
    let text = book("touch undone").replace("  steps:", "  on_failure: stop\n  steps:");
    env.write("test.yaml", &text);
    let child = env.spawn(&["run", "test.yaml"]);
    env.wait_for_file("started");
    signal(&child, Signal::SIGINT);
    let o = out(child.wait_with_output().unwrap());
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("nothing is rolled back (the runbook says on_failure: stop)"), "{o:?}");
    assert!(!o.stderr.contains("then rolling back"), "{o:?}");
    assert!(!env.path("undone").exists());
    let (e, _) = env.last();
    assert_eq!(e.status, ExecStatus::Cancelled);
    assert_eq!(e.rollback_status, None);
}

/// `rollback` with nothing to roll back says so, exits 0 and changes nothing (the
/// finish time, which analytics read, included).
#[test]
fn rollback_with_nothing_to_roll_back_changes_nothing() {
    let env = Env::new();
    let text = runbook("", "    - id: a\n      run: \"true\"\n    - id: b\n      run: exit 1\n");
    let failed = env.run_book(&text, &[]);
    assert_eq!(failed.code, 1);
    let (before, steps_before) = env.last();
    // The summary says nothing could be rolled back, and suggests no `rollback`.
    let hint = "nothing was rolled back: no step that succeeded has a rollback";
    assert!(failed.stdout.contains(hint) && !failed.stdout.contains("opsbook rollback"), "{failed:?}");
    std::thread::sleep(std::time::Duration::from_millis(20));
    for _ in 0..2 {
        let o = env.run(&["rollback", &before.id]);
        assert_eq!(o.code, 0, "{o:?}");
        assert!(o.stdout.contains("nothing to roll back"), "{o:?}");
    }
    let (after, steps_after) = env.last();
    assert_eq!(after.finished_at, before.finished_at);
    assert_eq!(after.status, before.status);
    assert_eq!(after.rollback_status, None);
    assert_eq!(format!("{steps_after:?}"), format!("{steps_before:?}"));
}

/// Two commands never act on one execution at once: while `rollback` runs, a second
/// `rollback` and a `resume` are refused, naming who holds it; every rollback runs once.
#[test]
fn a_second_rollback_or_resume_is_refused_while_one_runs() {
    let env = Env::new();
    let text = runbook(
        "",
        "    - id: a\n      run: \"true\"\n      rollback:\n        run: touch rolling; while [ ! -e go ]; do sleep 0.05; done; echo a >> undone\n    - id: b\n      run: exit 1\n",
    )
    .replace("  steps:", "  on_failure: stop\n  steps:");
    assert_eq!(env.run_book(&text, &[]).code, 1);
    let (e, _) = env.last();
    let first = env.spawn(&["rollback", &e.id]);
    env.wait_for_file("rolling");
    for args in [vec!["rollback", &e.id], vec!["resume", &e.id]] {
        let o = env.run(&args);
        assert_eq!(o.code, 2, "{o:?}");
        assert!(o.stderr.contains(&format!("execution {} is held by local:", e.id)), "{o:?}");
    }
    env.write("go", "");
    let o = out(first.wait_with_output().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(env.read("undone"), "a\n", "the rollback ran once");
    let (e, _) = env.last();
    assert_eq!(e.owner, None, "let go when done");
    assert_eq!(e.rollback_status, Some(StepStatus::Succeeded));
}
