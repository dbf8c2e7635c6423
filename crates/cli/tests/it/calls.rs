//! `runbook` steps: a child execution of its own, linked both ways, with real processes.

use opsbook_store::Store;

use crate::support::{Env, dead, runbook, wait_until};

/// `NAME.yaml`, a runbook named NAME with the given parameters and steps.
fn child(env: &Env, name: &str, params: &str, steps: &str) {
    let text = runbook(params, steps).replace("name: test", &format!("name: {name}"));
    env.write(&format!("{name}.yaml"), &text);
}

const DB: &str = "    db: { type: string, required: true }\n";

fn migrate(env: &Env) {
    child(
        env,
        "db-migrate",
        DB,
        "    - id: apply\n      run: |\n        echo \"migrating {{ params.db }}\"\n        echo schema=42 >> \"$OPSBOOK_OUTPUT\"\n      rollback: { run: \"echo undo-apply-{{ params.db }} >> \\\"$T/marks\\\"\" }\n",
    );
}

fn release(fail: bool) -> String {
    runbook(
        DB,
        &format!(
            "    - id: prepare\n      run: echo preparing\n      rollback: {{ run: echo undo-prepare >> \"$T/marks\" }}\n    - id: migrate\n      runbook: {{ file: ./db-migrate.yaml, params: {{ db: \"{{{{ params.db }}}}\" }} }}\n    - id: use\n      run: echo \"schema {{{{ steps.migrate.outputs.schema }}}} by {{{{ steps.migrate.outputs.execution_id }}}}\"\n    - id: last\n      run: exit {}\n",
            if fail { 3 } else { 0 }
        ),
    )
}

#[test]
fn a_child_is_an_execution_of_its_own_whose_outputs_become_the_steps() {
    let env = Env::new();
    migrate(&env);
    let out = env.run_book(&release(false), &["-p", "db=orders", "--output", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let doc = out.json();
    let step = &doc["steps"][1];
    assert_eq!(step["kind"], "runbook");
    assert_eq!(step["status"], "succeeded");
    let child_id = step["child"]["id"].as_str().unwrap().to_string();
    assert_eq!(step["child"]["runbook"], "db-migrate");
    assert_eq!(step["child"]["status"], "succeeded");
    assert_eq!(step["child"]["steps"][0]["id"], "apply");
    assert_eq!(step["outputs"]["schema"], "42");
    assert_eq!(step["outputs"]["execution_id"], child_id.as_str());
    // Linked both ways, in the store and in the documents.
    let parent_id = doc["id"].as_str().unwrap();
    let s = env.store();
    let c = s.block(s.store.execution(&child_id)).unwrap();
    assert_eq!((c.parent_id.as_deref(), c.parent_step.as_deref()), (Some(parent_id), Some("migrate")));
    assert_eq!(c.params["db"], "orders");
    let shown = env.run(&["show", &child_id, "--output", "json"]).json();
    assert_eq!(shown["parent"]["id"], parent_id);
    assert_eq!(shown["parent"]["step"], "migrate");
    let text = env.run(&["show", parent_id]).stdout;
    assert!(text.contains(&format!("Step `migrate` ran db-migrate 1.0.0 as execution {child_id}")), "{text}");
    // The child's lines are in its own log; the parent's says where they went.
    let logs = env.run(&["logs", parent_id]).stdout;
    assert!(logs.contains(&format!("[use] schema 42 by {child_id}")), "{logs}");
    assert!(logs.contains(&format!("as child execution {child_id}")), "{logs}");
    assert!(!logs.contains("migrating orders"), "{logs}");
    assert!(env.run(&["logs", &child_id]).stdout.contains("[apply] migrating orders"));
    let history = env.run(&["history"]).stdout;
    assert!(history.contains(&format!("db-migrate (child of {parent_id}, step migrate)")), "{history}");
    assert!(!env.path("marks").exists(), "nothing rolled back");
}

#[test]
fn a_parent_that_fails_rolls_back_a_succeeded_child_as_a_whole() {
    let env = Env::new();
    migrate(&env);
    let out = env.run_book(&release(true), &["-p", "db=orders", "--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    // Newest first: the child's steps (inside it), then the step before it.
    assert_eq!(env.read("marks"), "undo-apply-orders\nundo-prepare\n");
    assert_eq!(doc["steps"][1]["child"]["rollback_status"], "succeeded");
    assert_eq!(doc["rollback"]["steps"][0]["id"], "migrate");
    assert_eq!(doc["rollback"]["steps"][0]["status"], "succeeded");
    let child_id = doc["steps"][1]["child"]["id"].as_str().unwrap();
    let s = env.store();
    let c = s.block(s.store.execution(child_id)).unwrap();
    assert_eq!(c.status, opsbook_core::ExecStatus::Succeeded, "it did succeed; it was rolled back after");
    assert_eq!(c.rollback_status, Some(opsbook_core::StepStatus::Succeeded));
    // A second rollback finds nothing left to undo.
    let again = env.run(&["rollback", doc["id"].as_str().unwrap()]);
    assert_eq!(env.read("marks"), "undo-apply-orders\nundo-prepare\n", "{again:?}");
}

#[test]
fn a_failing_child_rolls_itself_back_and_fails_the_step() {
    let env = Env::new();
    child(
        &env,
        "two",
        "",
        "    - id: one\n      run: \"true\"\n      rollback: { run: echo undo-one >> \"$T/marks\" }\n    - id: two\n      run: exit 3\n",
    );
    let book = runbook(
        "",
        "    - id: first\n      run: \"true\"\n      rollback: { run: echo undo-first >> \"$T/marks\" }\n    - id: call\n      runbook: { file: two.yaml }\n    - id: never\n      run: touch \"$T/never\"\n",
    );
    let out = env.run_book(&book, &["--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    let step = &doc["steps"][1];
    let child_id = step["child"]["id"].as_str().unwrap();
    assert_eq!(step["status"], "failed");
    assert_eq!(
        step["error"],
        format!("child execution {child_id} (two 1.0.0) failed: step `two` failed: exited with code 3")
    );
    assert_eq!(step["child"]["status"], "failed");
    // The child undid its own step once; the parent undid its own, not the child again.
    assert_eq!(env.read("marks"), "undo-one\nundo-first\n");
    assert!(!env.path("never").exists());
}

/// A child that waits for an approval; its step hands it a secret.
fn gated(env: &Env) -> String {
    let me = nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap().unwrap().name;
    child(
        env,
        "needs-ok",
        "    token: { type: secret, required: true }\n",
        &format!(
            "    - id: work\n      run: |\n        echo \"using $OPSBOOK_PARAM_TOKEN\"\n        echo done=yes >> \"$OPSBOOK_OUTPUT\"\n      rollback: {{ run: echo undo-work >> \"$T/marks\" }}\n    - id: ok\n      approval: {{ approvers: [\"user:{me}\"] }}\n"
        ),
    );
    runbook(
        "    token: { type: secret, required: true }\n",
        "    - id: call\n      runbook: { file: needs-ok.yaml, params: { token: \"{{ params.token }}\" } }\n    - id: after\n      run: echo \"after {{ steps.call.outputs.done }}\"\n",
    )
}

#[test]
fn a_waiting_child_parks_its_parent_and_resuming_the_parent_goes_on_with_it() {
    let env = Env::new();
    let out = env.run_book(&gated(&env), &["-p", "token=s3cret-value", "--output", "json"]);
    assert_eq!(out.code, 3, "waiting: {out:?}");
    let doc = out.json();
    let (parent, step) = (doc["id"].as_str().unwrap().to_string(), &doc["steps"][0]);
    assert_eq!(doc["status"], "waiting");
    assert_eq!(step["status"], "waiting");
    let child_id = step["child"]["id"].as_str().unwrap().to_string();
    assert_eq!(step["child"]["status"], "waiting");
    assert!(step["error"].as_str().unwrap().contains("step `ok` waits for approval"), "{step}");
    let text = env.run(&["show", &parent]).stdout;
    assert!(text.contains(&format!("waits on child execution {child_id}: decide on its step `ok`")), "{text}");
    // The secret went to the child, masked wherever it shows.
    let shown = env.run(&["show", &child_id, "--output", "json"]).json();
    assert_eq!(shown["params"]["token"], "***");
    let logs = env.run(&["logs", &child_id]).stdout;
    assert!(logs.contains("using ***") && !logs.contains("s3cret-value"), "{logs}");
    // The approval is the child's; then the parent goes on from where it waited.
    let wrong = env.run(&["approve", &parent, "-p", "token=s3cret-value"]);
    assert_eq!(wrong.code, 2, "{wrong:?}");
    assert!(
        wrong.stderr.contains(&format!(
            "waits on its child execution {child_id} (runbook `needs-ok`) at step `call`: decide on the child, \
             `opsbook approve {child_id}`"
        )),
        "{wrong:?}"
    );
    let approved = env.run(&["approve", &child_id, "-p", "token=s3cret-value"]);
    assert_eq!(approved.code, 0, "{approved:?}");
    assert!(approved.stdout.contains(&format!("`opsbook resume {parent}` goes on with that one")), "{approved:?}");
    let resumed = env.run(&["resume", &parent, "-p", "token=s3cret-value", "--output", "json"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    let doc = resumed.json();
    assert_eq!(doc["steps"][0]["status"], "succeeded");
    assert_eq!(doc["steps"][0]["child"]["id"], child_id.as_str(), "the same child, not a new one");
    let logs = env.run(&["logs", &parent]).stdout;
    assert!(logs.contains("[after] after yes"), "{logs}");
}

#[test]
fn cancelling_a_parent_that_waits_on_its_child_cancels_the_child() {
    let env = Env::new();
    let out = env.run_book(&gated(&env), &["-p", "token=s3cret-value", "--output", "json"]);
    assert_eq!(out.code, 3, "{out:?}");
    let parent = out.json()["id"].as_str().unwrap().to_string();
    let cancelled = env.run(&["cancel", &parent, "-p", "token=s3cret-value"]);
    assert_eq!(cancelled.code, 0, "{cancelled:?}");
    let doc = env.run(&["show", &parent, "--output", "json"]).json();
    assert_eq!(doc["status"], "cancelled", "{cancelled:?}");
    assert_eq!(doc["steps"][0]["status"], "cancelled");
    assert_eq!(doc["steps"][0]["child"]["status"], "cancelled");
    assert_eq!(doc["steps"][0]["child"]["rollback_status"], "succeeded");
    assert_eq!(env.read("marks"), "undo-work\n", "the child's succeeded step was undone");
}

#[test]
fn ctrl_c_cancels_the_running_child_and_kills_its_process() {
    let env = Env::new();
    child(&env, "slow", "", "    - id: wait\n      run: echo $$ > \"$T/pid\"; sleep 300\n");
    let book = runbook("", "    - id: call\n      runbook: { file: slow.yaml }\n");
    env.write("test.yaml", &book);
    let run = env.spawn(&["run", "test.yaml", "--output", "json"]);
    let pid = env.wait_for_pid("pid");
    crate::support::signal(&run, nix::sys::signal::Signal::SIGINT);
    let out = crate::support::out(run.wait_with_output().unwrap());
    assert_eq!(out.code, 1, "{out:?}");
    wait_until(|| dead(pid), "the child's process to be killed");
    let doc = out.json();
    assert_eq!(doc["status"], "cancelled");
    assert_eq!(doc["steps"][0]["status"], "cancelled");
    assert_eq!(doc["steps"][0]["child"]["status"], "cancelled");
}

#[test]
fn a_step_timeout_cancels_the_child() {
    let env = Env::new();
    child(&env, "slow", "", "    - id: wait\n      run: echo $$ > \"$T/pid\"; sleep 300\n");
    let book = runbook("", "    - id: call\n      runbook: { file: slow.yaml }\n      timeout: 5s\n");
    let started = std::time::Instant::now();
    let out = env.run_book(&book, &["--output", "json"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(out.code, 1, "{out:?}");
    let step = &out.json()["steps"][0];
    assert_eq!(step["status"], "timed_out");
    assert!(step["error"].as_str().unwrap().contains("did not finish within 5s and was cancelled"), "{step}");
    let pid: i32 = env.read("pid").trim().parse().unwrap();
    wait_until(|| dead(pid), "the child's process to be killed");
}

#[test]
fn cycles_and_wrong_parameters_are_refused_before_anything_runs() {
    let env = Env::new();
    child(&env, "a", "", "    - id: to_b\n      runbook: { file: b.yaml }\n");
    child(&env, "b", "", "    - id: to_a\n      runbook: { file: ./a.yaml }\n");
    let out = env.run(&["validate", "a.yaml"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("runbooks call each other in a cycle: a.yaml → b.yaml → a.yaml"), "{out:?}");
    let out = env.run(&["run", "a.yaml"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("a cycle"), "{out:?}");
    migrate(&env);
    let book = runbook("", "    - id: m\n      runbook: { file: db-migrate.yaml, params: { dbb: x } }\n");
    env.write("test.yaml", &book);
    let out = env.run(&["validate", "test.yaml"]);
    assert!(
        out.stdout
            .contains("test.yaml:9:7: step `m`: runbook `db-migrate` has no parameter `dbb` (did you mean `db`?)"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("step `m`: parameter `db` of runbook `db-migrate` is required: set it in params"),
        "{out:?}"
    );
    assert_eq!(env.run(&["run", "test.yaml"]).code, 2);
    let s = env.store();
    assert!(s.block(s.store.executions(&Default::default())).unwrap().is_empty(), "nothing ran");
}

/// A secret handed to a parameter the called runbook does not keep secret would be
/// stored and shown in the clear: refused by `validate`, and before anything runs.
#[test]
fn a_secret_handed_to_a_plain_parameter_is_refused() {
    let env = Env::new();
    migrate(&env);
    let book = runbook(
        "    pw: { type: secret, required: true }\n",
        "    - id: first\n      run: touch ran\n    - id: m\n      runbook: { file: db-migrate.yaml, params: { db: \"x{{ params.pw }}\" } }\n",
    );
    env.write("test.yaml", &book);
    let says = "step `m`: parameter `db` of runbook `db-migrate` would receive the secret `pw`; declare it `type: secret` there";
    let checked = env.run(&["validate", "test.yaml"]);
    assert_eq!(checked.code, 1, "{checked:?}");
    assert!(checked.stdout.contains(says), "{checked:?}");
    let out = env.run(&["run", "test.yaml", "-p", "pw=hunter2"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains(says), "{out:?}");
    assert!(!env.path("ran").exists(), "nothing ran");
    let s = env.store();
    assert!(s.block(s.store.executions(&Default::default())).unwrap().is_empty(), "nothing was stored");
    // Through an earlier step's output (stored masked) the child would get `***`: the step
    // fails before the child starts.
    let through = runbook(
        "    pw: { type: secret, required: true }\n",
        "    - id: first\n      run: echo \"token=$OPSBOOK_PARAM_PW\" >> \"$OPSBOOK_OUTPUT\"\n    - id: m\n      runbook: { file: db-migrate.yaml, params: { db: \"{{ steps.first.outputs.token }}\" } }\n",
    );
    let out = env.run_book(&through, &["-p", "pw=hunter2", "--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let error = out.json()["steps"][1]["error"].as_str().unwrap().to_string();
    assert!(error.contains("an earlier step's output it names held a secret and is stored masked"), "{error}");
    let s = env.store();
    assert_eq!(s.block(s.store.executions(&Default::default())).unwrap().len(), 1, "no child execution");
}

/// An optional secret left out is left out of the call too (not refused as empty), and
/// a call that only tests whether a secret was given passes no secret on.
#[test]
fn an_optional_secret_left_out_is_not_handed_on() {
    let env = Env::new();
    env.write(
        "child.yaml",
        &runbook(
            "    tok: { type: secret }\n    has: { type: string, default: \"?\" }\n",
            "    - id: show\n      run: echo \"has={{ params.has }} tok-set=${OPSBOOK_PARAM_TOK:+yes}\"\n",
        )
        .replace("name: test", "name: child"),
    );
    let book = runbook(
        "    tok: { type: secret }\n",
        "    - id: call\n      runbook: { file: child.yaml, params: { tok: \"{{ params.tok }}\", has: \"{{ 'yes' if params.tok else 'no' }}\" } }\n",
    );
    env.write("test.yaml", &book);
    let checked = env.run(&["validate", "test.yaml"]);
    assert_eq!(checked.code, 0, "a test of the secret hands no secret on: {checked:?}");
    let out = env.run(&["run", "test.yaml", "--output", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let child = out.json()["steps"][0]["child"]["id"].as_str().unwrap().to_string();
    assert!(env.run(&["logs", &child]).stdout.contains("has=no tok-set=\n"), "{out:?}");
}

#[test]
fn runbook_tests_mock_a_called_runbook() {
    let env = Env::new();
    migrate(&env);
    env.write("test.yaml", &release(false));
    env.write(
        "test.test.yaml",
        "tests:\n  - name: the schema comes from the child\n    params: { db: orders }\n    mocks:\n      migrate: { outputs: { schema: \"7\", execution_id: x } }\n    expect:\n      status: succeeded\n      rendered:\n        use: echo \"schema 7 by x\"\n  - name: a failed child fails the step\n    params: { db: orders }\n    mocks:\n      migrate: { exit_code: 1 }\n    expect:\n      status: failed\n      steps: { prepare: succeeded, migrate: failed, use: pending }\n      error_contains: \"child execution (mocked) failed\"\n",
    );
    let out = env.run(&["test", "test.yaml"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("2 passed, 0 failed"), "{out:?}");
    assert!(!env.path("marks").exists());
}

/// The runner dies (kill -9) while the child runs: `resume` goes on with the child when
/// its step may run again; when it may not, the child is rolled back as a whole and the
/// step fails, and the parent rolls back.
#[test]
fn after_a_crash_resume_goes_on_with_the_child_or_undoes_it() {
    for idempotent in [true, false] {
        let env = Env::new();
        child(
            &env,
            "slow",
            "",
            &format!(
                "    - id: a\n      run: \"true\"\n      rollback: {{ run: echo undo-a >> \"$T/marks\" }}\n    - id: wait\n      run: echo $$ > \"$T/pid\"; if [ ! -e \"$T/crashed\" ]; then touch \"$T/crashed\"; sleep 300; fi; echo done\n      idempotent: {idempotent}\n"
            ),
        );
        let book = runbook(
            "",
            "    - id: one\n      run: \"true\"\n      rollback: { run: echo undo-one >> \"$T/marks\" }\n    - id: call\n      runbook: { file: slow.yaml }\n",
        );
        env.write("test.yaml", &book);
        let mut run = env.spawn(&["run", "test.yaml"]);
        let pid = env.wait_for_pid("pid");
        run.kill().unwrap();
        run.wait().unwrap();
        wait_until(|| dead(pid), "the step's shell to die with its runner");
        let (parent, _) = {
            let s = env.store();
            let all = s.block(s.store.executions(&Default::default())).unwrap();
            let p = all.iter().find(|e| e.parent_id.is_none()).unwrap().clone();
            (p.id, ())
        };
        let out = env.run(&["resume", &parent, "--output", "json"]);
        let doc = out.json();
        let step = &doc["steps"][1];
        if idempotent {
            assert_eq!(out.code, 0, "{out:?}");
            assert_eq!(step["status"], "succeeded");
            assert_eq!(step["child"]["status"], "succeeded", "the same child went on");
            assert!(!env.path("marks").exists());
        } else {
            // Refused as a resume of the child would be, changing nothing; the parent's
            // rollback undoes the child as a whole, then the parent.
            assert_eq!(out.code, 2, "{out:?}");
            assert!(
                out.stderr.contains("step `call`: child execution ")
                    && out.stderr.contains(
                        "cannot go on: step `wait` was interrupted and is not idempotent, so it may have partly run; \
                         undo the steps that succeeded, the child's with them, with `opsbook rollback"
                    ),
                "{out:?}"
            );
            assert!(!env.path("marks").exists(), "nothing undone by a resume");
            let (e, _) = env.last();
            assert_eq!(e.status, opsbook_core::ExecStatus::Interrupted);
            let undone = env.run(&["rollback", &parent]);
            assert_eq!(undone.code, 0, "{undone:?}");
            assert_eq!(env.read("marks"), "undo-a\nundo-one\n");
        }
    }
}

/// Runbooks may call runbooks 5 deep: `validate` and a run agree on where the line is.
#[test]
fn calls_go_at_most_five_deep() {
    let env = Env::new();
    for n in 0..7 {
        let steps = if n < 6 {
            format!("    - id: down\n      runbook: {{ file: d{}.yaml }}\n", n + 1)
        } else {
            "    - id: bottom\n      run: echo bottom\n".to_string()
        };
        child(&env, &format!("d{n}"), "", &steps);
    }
    assert_eq!(env.run(&["validate", "d1.yaml"]).code, 0, "d1 to d6: five calls deep");
    let out = env.run(&["validate", "d0.yaml"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("calls d6.yaml at depth 6; runbooks may call runbooks at most 5 deep"), "{out:?}");
    let out = env.run(&["run", "d1.yaml", "--output", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let s = env.store();
    assert_eq!(s.block(s.store.executions(&Default::default())).unwrap().len(), 6);
    assert_eq!(env.run(&["run", "d0.yaml"]).code, 2, "refused before it starts");
}
