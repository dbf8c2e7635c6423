//! kill -9 in the middle of a step, approvals without a terminal, resume and rollback.

use opsbook_core::{ExecStatus, StepStatus};
use opsbook_store::Store;

use crate::support::{Env, SpawnWith, dead, out, runbook, wait_past, wait_until};

fn crashing_book(idempotent: bool) -> String {
    runbook(
        "",
        &format!(
            "    - id: a\n      run: echo a >> done\n      rollback:\n        run: echo a >> undone\n    - id: b\n      idempotent: {idempotent}\n      run: |\n        echo b >> done\n        if [ ! -e crashed ]; then touch crashed; echo $$ > pid; sleep 300; fi\n    - id: c\n      run: echo c >> done\n"
        ),
    )
}

fn crash(env: &Env) -> String {
    let mut child = env.spawn(&["run", "test.yaml"]);
    let pid = env.wait_for_pid("pid");
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    wait_until(|| dead(pid), "the orphaned step to die");
    let s = env.store();
    let e = s.block(s.store.executions(&Default::default())).unwrap().remove(0);
    assert_eq!(e.status, ExecStatus::Running, "nothing has noticed the crash yet");
    e.id
}

/// A runner killed and not reaped (its parent does not wait, as in a container without
/// an init) is a zombie: dead, so its execution is recovered without waiting for a reaper.
#[test]
fn a_killed_runner_left_a_zombie_counts_as_dead() {
    let env = Env::new();
    env.write("test.yaml", &crashing_book(true));
    let mut child = env.spawn(&["run", "test.yaml"]);
    let pid = env.wait_for_pid("pid");
    child.kill().unwrap(); // not waited for: a zombie
    let runner = child.id();
    wait_until(
        || {
            std::fs::read_to_string(format!("/proc/{runner}/stat"))
                .is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
        },
        "the runner to be a zombie",
    );
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    wait_until(|| dead(pid), "the orphaned step to die");
    let show = env.run(&["show", "--output", "json", &env.last().0.id]);
    assert_eq!(show.json()["status"], "interrupted", "{show:?}");
    let resumed = env.run(&["resume", &env.last().0.id]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    assert_eq!(env.read("done"), "a\nb\nb\nc\n");
    child.wait().unwrap();
}

#[test]
fn kill_9_then_resume_an_idempotent_step() {
    let env = Env::new();
    env.write("test.yaml", &crashing_book(true));
    let id = crash(&env);
    // The next command of any kind notices the dead runner.
    let show = env.run(&["show", &id, "--output", "json"]);
    assert!(show.stderr.contains(&format!("execution {id} was interrupted")), "{show:?}");
    let doc = show.json();
    assert_eq!(doc["status"], "interrupted");
    assert_eq!(doc["steps"][1]["status"], "cancelled");
    assert!(doc["error"].as_str().unwrap().contains("stopped unexpectedly during step `b`"), "{doc}");
    let resumed = env.run(&["resume", &id]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    assert_eq!(env.read("done"), "a\nb\nb\nc\n", "a ran once, b re-ran, c ran");
    let (e, steps) = env.last();
    assert_eq!(e.status, ExecStatus::Succeeded);
    assert_eq!(steps[1].attempts, 2);
}

#[test]
fn kill_9_then_a_non_idempotent_step_offers_rollback() {
    let env = Env::new();
    env.write("test.yaml", &crashing_book(false));
    let id = crash(&env);
    let resumed = env.run(&["resume", &id]);
    assert_eq!(resumed.code, 2, "{resumed:?}");
    assert!(
        resumed.stderr.contains(&format!(
            "step `b` was interrupted and is not idempotent, so it may have partly run; undo the steps that succeeded with `opsbook rollback {id}`"
        )),
        "{resumed:?}"
    );
    let rolled = env.run(&["rollback", &id, "--output", "json"]);
    assert_eq!(rolled.code, 0, "the rollback succeeded: {rolled:?}");
    assert_eq!(env.read("undone"), "a\n");
    let doc = rolled.json();
    assert_eq!(doc["status"], "interrupted");
    assert_eq!(doc["rollback"]["performed"], true);
    let again = env.run(&["rollback", &id]);
    assert!(again.stderr.contains("was already rolled back"), "{again:?}");
    // Rolled back, it is done with: no resume, and no hint that offers one.
    let resume = env.run(&["resume", &id]);
    assert_eq!(resume.code, 2, "{resume:?}");
    assert!(resume.stderr.contains(&format!("execution {id} was rolled back; it cannot resume")), "{resume:?}");
    let shown = env.run(&["show", &id]);
    assert!(!shown.stdout.contains("resume") && !shown.stderr.contains("resume"), "{shown:?}");
}

#[test]
fn state_is_committed_before_the_next_action() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: a\n      run: echo \"k=v\" >> $OPSBOOK_OUTPUT\n    - id: b\n      run: touch started; sleep 300\n",
    );
    env.write("test.yaml", &book);
    let mut child = env.spawn(&["run", "test.yaml"]);
    env.wait_for_file("started");
    // While b runs, a's outcome and outputs are already durable.
    let s = env.store();
    let e = s.block(s.store.running()).unwrap().remove(0);
    let steps = s.block(s.store.steps(&e.id)).unwrap();
    assert_eq!(steps[0].status, StepStatus::Succeeded);
    assert_eq!(steps[0].outputs["k"], "v");
    assert_eq!(steps[1].status, StepStatus::Running);
    assert_eq!(steps[1].attempts, 1);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A rejection runs only the rollbacks: a secret only the steps after the approval name is
/// not asked for again.
#[test]
fn a_rejection_needs_only_the_secrets_of_the_rollbacks() {
    let env = Env::new();
    let book = runbook(
        "    pw: { type: secret }\n",
        "    - id: a\n      run: echo a >> done\n      rollback:\n        run: echo a >> undone\n    - id: gate\n      approval: { message: \"ship it?\" }\n    - id: c\n      run: echo c {{ params.pw }} >> done\n",
    );
    assert_eq!(env.run_book(&book, &["-p", "pw=hunter2"]).code, 3);
    let (e, _) = env.last();
    let rejected = env.run(&["reject", &e.id, "--comment", "not today"]);
    assert_eq!(rejected.code, 0, "{rejected:?}");
    assert_eq!(env.read("undone"), "a\n");
    assert_eq!(env.read("done"), "a\n", "c never ran");
    assert_eq!(env.last().0.status, ExecStatus::Failed);
}

#[test]
fn approval_without_a_terminal_waits_then_resumes() {
    let env = Env::new();
    let book = runbook(
        "    pw: { type: secret }\n",
        "    - id: a\n      run: echo a >> done\n      rollback:\n        run: echo a >> undone\n    - id: gate\n      approval: { approvers: [\"role:release-manager\"], message: \"ship it?\" }\n    - id: c\n      run: echo c {{ params.pw }} >> done\n",
    );
    let waiting = env.run_book(&book, &["-p", "pw=hunter2"]);
    assert_eq!(waiting.code, 3, "{waiting:?}");
    assert!(waiting.stdout.contains("gate waits for approval: ship it?"), "{waiting:?}");
    let (e, steps) = env.last();
    assert_eq!(e.status, ExecStatus::Waiting);
    assert_eq!(steps[1].status, StepStatus::Waiting);
    assert_eq!(e.owner, None, "a waiting execution holds no runner");

    let early = env.run(&["resume", &e.id, "-p", "pw=hunter2"]);
    assert_eq!(early.code, 3, "still no approval: {early:?}");
    // What runs after the decision needs the secret again: refused before anything is recorded.
    let no_secret = env.run(&["approve", &e.id, "--comment", "go"]);
    assert_eq!(no_secret.code, 2, "{no_secret:?}");
    assert!(
        no_secret.stderr.contains("parameter `pw`: is a secret and is never stored: give it again (`-p pw=…` on"),
        "{no_secret:?}"
    );
    // Only secrets are given again, each once.
    for (args, says) in [
        (vec!["-p", "pw=hunter2", "-p", "foo=1"], "parameter `foo`: is not a secret parameter of this runbook"),
        (vec!["-p", "pw=hunter2", "-p", "pw=other"], "-p pw=…: parameter `pw` is given twice"),
    ] {
        let o = env.run(&[&["approve", e.id.as_str()][..], &args[..]].concat());
        assert_eq!(o.code, 2, "{o:?}");
        assert!(o.stderr.contains(says), "{o:?}");
    }
    let s = env.store();
    assert!(s.block(s.store.approvals(&e.id)).unwrap().is_empty(), "nothing half-applied");
    // Approving carries the execution on, in the foreground.
    let approve = env.run(&["approve", &e.id, "--comment", "go with hunter2", "-p", "pw=hunter2", "--output", "json"]);
    assert_eq!(approve.code, 0, "{approve:?}");
    assert_eq!(env.read("done"), "a\nc hunter2\n");
    let doc = approve.json();
    assert_eq!(doc["status"], "succeeded");
    let me = nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap().unwrap().name;
    assert_eq!(doc["steps"][1]["outputs"]["approved_by"], me.as_str());
    let twice = env.run(&["approve", &e.id]);
    assert_eq!(twice.code, 2, "{twice:?}");
    assert!(twice.stderr.contains("has succeeded, not waiting for approval"), "{twice:?}");
    let approvals = s.block(s.store.approvals(&e.id)).unwrap();
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].comment.as_deref(), Some("go with ***"), "a pasted secret is masked");
    let show = env.run(&["show", &e.id]);
    assert!(show.stdout.contains(&format!("step `gate` approved by {me}")), "{show:?}");
}

#[test]
fn rejection_fails_and_rolls_back() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: a\n      run: \"true\"\n      rollback:\n        run: touch undone\n    - id: gate\n      approval: {}\n",
    );
    let waiting = env.run_book(&book, &[]);
    assert_eq!(waiting.code, 3);
    assert!(waiting.stdout.contains("decide with `opsbook approve"), "{waiting:?}");
    let (e, _) = env.last();
    // The rejection rolls back at once: nothing is left waiting, and show says why.
    let reject = env.run(&["reject", &e.id, "-c", "not today"]);
    assert_eq!(reject.code, 0, "the rejection and its rollbacks went through: {reject:?}");
    assert!(reject.stdout.contains("rejected step `gate`"), "{reject:?}");
    assert!(env.path("undone").exists());
    let (e, steps) = env.last();
    assert_eq!(e.status, ExecStatus::Failed);
    assert_eq!(e.rollback_status, Some(StepStatus::Succeeded));
    let me = nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap().unwrap().name;
    assert_eq!(steps[1].error.as_deref(), Some(format!("rejected by {me}: not today").as_str()));
    let show = env.run(&["show", &e.id]);
    assert!(!show.stdout.contains("opsbook approve"), "{show:?}");
    assert!(show.stdout.contains(&format!("step `gate` rejected by {me}")), "{show:?}");
}

/// With two approvals needed, one decision is recorded and the execution keeps waiting.
#[test]
fn one_of_two_approvals_keeps_waiting() {
    let env = Env::new();
    let book = runbook("", "    - id: gate\n      approval: { min_approvals: 2 }\n    - id: b\n      run: touch ran\n");
    assert_eq!(env.run_book(&book, &[]).code, 3);
    let (e, _) = env.last();
    let approve = env.run(&["approve", &e.id]);
    assert_eq!(approve.code, 3, "{approve:?}");
    assert!(approve.stdout.contains("(1 of 2 approvals); it waits for more"), "{approve:?}");
    assert!(!env.path("ran").exists());
    assert_eq!(env.last().0.status, ExecStatus::Waiting);
}

#[test]
fn approval_timeout_fails_the_step() {
    let env = Env::new();
    let book = runbook("", "    - id: gate\n      approval: { timeout: 1s }\n");
    assert_eq!(env.run_book(&book, &[]).code, 3);
    let (e, steps) = env.last();
    // The deadline counts from the step's start (later than the execution's on a loaded machine).
    wait_past(steps[0].started_at.unwrap() + 1100);
    let resumed = env.run(&["resume", &e.id, "--output", "json"]);
    assert_eq!(resumed.code, 1, "{resumed:?}");
    assert_eq!(resumed.json()["steps"][0]["status"], "timed_out");
}

/// A decision after the deadline is not taken: the step timed out, the execution fails
/// and rolls back, and the late approval is not recorded (as on a server, where it gets 409).
#[test]
fn a_late_approval_is_refused_and_the_step_times_out() {
    let env = Env::new();
    let steps = "    - id: a\n      run: touch made\n      rollback: { run: rm made }\n    - id: gate\n      approval: { timeout: 1s }\n    - id: b\n      run: touch shipped\n";
    assert_eq!(env.run_book(&runbook("", steps), &[]).code, 3);
    assert!(env.path("made").exists());
    let (e, steps) = env.last();
    wait_past(steps[1].started_at.unwrap() + 1100);
    let late = env.run(&["approve", &e.id]);
    assert_eq!(late.code, 1, "{late:?}");
    let why =
        format!("step `gate` of execution {} timed out: no decision within 1s; the decision is not recorded", e.id);
    assert!(late.stderr.contains(&why), "{late:?}");
    let (e, steps) = env.last();
    assert_eq!(e.status, ExecStatus::Failed);
    assert_eq!(steps[1].status, StepStatus::TimedOut);
    assert!(!env.path("shipped").exists(), "the step after it never ran");
    assert!(!env.path("made").exists(), "rolled back");
    let s = env.store();
    assert!(s.block(s.store.approvals(&e.id)).unwrap().is_empty(), "nothing recorded");
}

#[test]
fn a_second_runner_cannot_resume_a_running_execution() {
    let env = Env::new();
    env.write("test.yaml", &runbook("", "    - id: a\n      run: touch started; sleep 300\n"));
    let child = env.spawn(&["run", "test.yaml"]);
    env.wait_for_file("started");
    let s = env.store();
    let id = s.block(s.store.running()).unwrap()[0].id.clone();
    let r = env.run(&["resume", &id]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains(&format!("execution {id} is still running (local:")), "{r:?}");
    crate::support::signal(&child, nix::sys::signal::Signal::SIGTERM);
    let o = out(child.wait_with_output().unwrap());
    assert_eq!(o.code, 1, "SIGTERM cancels like Ctrl-C: {o:?}");
}

#[test]
fn interrupted_while_rolling_back_can_only_finish_the_rollback() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: a\n      run: \"true\"\n      rollback:\n        run: echo a >> undone\n    - id: b\n      run: \"true\"\n      rollback:\n        run: if [ ! -e crashed ]; then touch crashed; echo $$ > pid; sleep 300; fi; echo b >> undone\n    - id: c\n      run: exit 1\n",
    );
    env.write("test.yaml", &book);
    let id = crash(&env);
    let shown = env.run(&["show", &id]);
    assert!(
        shown.stdout.contains(&format!("it stopped while rolling back: finish with `opsbook rollback {id}`")),
        "the hint names only what can be done: {shown:?}"
    );
    let resumed = env.run(&["resume", &id]);
    assert_eq!(resumed.code, 2, "{resumed:?}");
    assert!(resumed.stderr.contains("finish the rollback with `opsbook rollback"), "{resumed:?}");
    let rolled = env.run(&["rollback", &id]);
    assert_eq!(rolled.code, 0, "the rollback succeeded: {rolled:?}");
    assert_eq!(env.read("undone"), "b\na\n", "b's rollback ran again (it never finished), then a's");
}

/// A Ctrl-C while the terminal asks for an approval stops the question at once and rolls
/// back, without waiting for an Enter (the display the question held is let go).
#[test]
fn ctrl_c_at_an_approval_prompt_rolls_back_at_once() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: ok\n      run: \"true\"\n      rollback:\n        run: touch undone\n    - id: gate\n      approval: { message: \"ship it?\" }\n",
    );
    env.write("test.yaml", &book);
    let cmd = format!("exec {} run test.yaml", env!("CARGO_BIN_EXE_opsbook"));
    let child = env.cmd(&[]).spawn_with_program("script", &["-qec", &cmd, "/dev/null"]);
    let started = std::time::Instant::now();
    let (status, screen) = crate::support::type_at_prompt(child, "[l]ater: ", b"\x03");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "it did not hang: {screen}");
    assert!(screen.contains("cancelled"), "{screen}");
    assert!(env.path("undone").exists(), "rolled back: {screen}");
    let (e, _) = env.last();
    assert_eq!(e.status, opsbook_core::ExecStatus::Cancelled, "{screen}");
    assert_eq!(status.code(), Some(1), "{screen}");
}

#[test]
fn terminal_approval_records_the_os_user_and_comment() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: gate\n      approval: { message: \"ship it?\" }\n    - id: after\n      run: touch shipped\n",
    );
    env.write("test.yaml", &book);
    // `script` gives opsbook a real terminal; the answers arrive on it.
    let cmd = format!("exec {} run test.yaml", env!("CARGO_BIN_EXE_opsbook"));
    let mut child = env
        .cmd(&[])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn_with_program("script", &["-qec", &cmd, "/dev/null"]);
    use std::io::Write;
    child.stdin.as_mut().unwrap().write_all(b"y\nlooks fine\n").unwrap();
    let o = out(child.wait_with_output().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("step `gate` needs approval"), "{o:?}");
    assert!(env.path("shipped").exists());
    let (e, _) = env.last();
    let s = env.store();
    let approvals = s.block(s.store.approvals(&e.id)).unwrap();
    assert_eq!(approvals.len(), 1);
    assert!(approvals[0].approved);
    assert_eq!(approvals[0].approver, nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap().unwrap().name);
    assert_eq!(approvals[0].comment.as_deref(), Some("looks fine"));
}

/// `opsbook run … | head -1`: the reader goes away after the first line, and the run
/// goes on to the end, recorded (no SIGPIPE death, no interrupted execution).
#[test]
fn a_closed_stdout_does_not_stop_the_run() {
    use std::io::{BufRead, BufReader};
    let env = Env::new();
    env.write(
        "test.yaml",
        &runbook(
            "",
            "    - id: a\n      run: echo first\n    - id: b\n      run: sleep 0.3; seq 1 2000\n    - id: c\n      run: touch finished\n",
        ),
    );
    let mut child = env.spawn(&["run", "test.yaml"]);
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    // The reader is gone (dropped with the BufReader).
    let o = crate::support::out(child.wait_with_output().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    assert!(env.path("finished").exists());
    let (e, steps) = env.last();
    assert_eq!(e.status, ExecStatus::Succeeded);
    assert!(steps.iter().all(|s| s.status == StepStatus::Succeeded));
}

/// A runner is its PID *and* its start (and boot): a PID that now belongs to another
/// process (here PID 1) does not keep an execution running, nor a claim held.
#[test]
fn a_reused_pid_does_not_keep_an_execution_running() {
    let env = Env::new();
    let text = runbook(
        "",
        "    - id: a\n      run: \"true\"\n      rollback:\n        run: echo a >> undone\n    - id: gate\n      approval: {}\n",
    );
    assert_eq!(env.run_book(&text, &[]).code, 3);
    let (mut e, _) = env.last();
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let s = env.store();
    // As if a runner had died and its PID gone to another process.
    e.status = ExecStatus::Running;
    e.owner = Some(format!("local:{host}:1:deadbeef.42"));
    e.lease_expires_at = Some(opsbook_store::now_ms() + 3_600_000);
    s.block(s.store.update_execution(&e, None)).unwrap();
    let o = env.run(&["history"]);
    assert!(o.stderr.contains(&format!("execution {} was interrupted", e.id)), "{o:?}");
    let (e2, _) = env.last();
    assert_eq!(e2.status, ExecStatus::Interrupted);

    // A claim held by such a runner (a rollback that died) is taken over.
    let mut held = e2.clone();
    held.owner = Some(format!("local:{host}:1:deadbeef.42"));
    held.lease_expires_at = Some(opsbook_store::now_ms() + 3_600_000);
    s.block(s.store.update_execution(&held, None)).unwrap();
    let o = env.run(&["rollback", &e.id]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(env.read("undone"), "a\n");
}

/// kill -9 of the runner: its guardian process kills the step's whole process group at
/// once (the shell and what it started in the background); the next command says the
/// execution was interrupted, and `OPSBOOK_STEP_PARENT_DEATH=recovery` leaves the group
/// to that command, which kills it and says so.
#[test]
fn kill_9_leaves_no_process_running() {
    let book = runbook(
        "    pw: { type: secret }\n",
        "    - id: a\n      run: |\n        echo {{ params.pw }} > /dev/null\n        echo $$ > shell\n        sleep 300 &\n        echo $! > child\n        wait\n",
    );
    for leave_to_recovery in [false, true] {
        let env = Env::new();
        env.write("test.yaml", &book);
        std::fs::create_dir(env.path("tmp")).unwrap();
        let mut cmd = env.cmd(&["run", "test.yaml", "-p", "pw=Sc4atch-secret"]);
        // Its scratch directory (the script, secret and all) where the test can see it.
        cmd.env("TMPDIR", env.path("tmp"));
        if leave_to_recovery {
            cmd.env("OPSBOOK_STEP_PARENT_DEATH", "recovery");
        }
        let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        let orphan = env.wait_for_pid("child");
        let guardian = guardian_of(child.id());
        assert!(guardian.is_some(), "`opsbook run` has a guardian process");
        let scratch = || std::fs::read_dir(env.path("tmp")).unwrap().count();
        assert_eq!(scratch(), 1, "the runner's scratch directory");
        child.kill().unwrap();
        child.wait().unwrap();
        let shell: i32 = env.read("shell").trim().parse().unwrap();
        if leave_to_recovery {
            assert!(!dead(shell) && !dead(orphan), "the step's group runs on, orphaned");
        } else {
            wait_until(|| dead(shell) && dead(orphan), "the step's group to die with its runner");
        }
        wait_until(|| dead(guardian.unwrap()), "the guardian to end after its runner");
        assert_eq!(scratch(), 0, "the guardian removed the scratch directory with its script");
        let o = env.run(&["history"]);
        assert!(o.stderr.contains("was interrupted"), "{o:?}");
        wait_until(|| dead(shell) && dead(orphan), "the orphaned group to be killed");
        let (e, _) = env.last();
        let error = e.error.as_deref().unwrap();
        assert_eq!(error.contains("processes it left running (step `a`) were killed"), leave_to_recovery, "{e:?}");
    }
}

/// A step that runs on has its process group on record (for recovery to kill, should
/// the runner die), and once it ends no longer: what it left behind is not a later
/// attempt's to kill.
#[test]
fn a_running_steps_process_group_is_on_record_until_it_ends() {
    let env = Env::new();
    env.write(
        "test.yaml",
        &runbook(
            "",
            "    - id: a\n      run: |\n        echo $$ > shell\n        while [ ! -e go ]; do sleep 0.05; done\n",
        ),
    );
    let child = env.spawn(&["run", "test.yaml"]);
    let shell = env.wait_for_pid("shell");
    let recorded = || {
        let s = env.store();
        let (e, _) = env.last();
        s.block(s.store.processes(&e.id)).unwrap()
    };
    wait_until(|| !recorded().is_empty(), "the step's process group to be on record");
    let processes = recorded();
    assert_eq!(processes[0].0, "a");
    assert!(processes[0].1.starts_with(&format!("{shell}:")), "the shell leads the group: {processes:?}");
    env.write("go", "");
    let out = out(child.wait_with_output().unwrap());
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(recorded(), Vec::<(String, String)>::new());
}

/// The child of `pid` named `opsbook-guard`, if any.
fn guardian_of(pid: u32) -> Option<i32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|c| c.parse::<i32>().ok())
        .find(|c| std::fs::read_to_string(format!("/proc/{c}/comm")).is_ok_and(|name| name.trim() == "opsbook-guard"))
}
