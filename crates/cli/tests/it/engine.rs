//! The execution rules, against real processes.

use opsbook_core::{ExecStatus, StepStatus};
use opsbook_store::{Phase, Store};

use crate::support::{Env, dead, runbook};

#[test]
fn timeout_kills_the_whole_process_group() {
    let env = Env::new();
    // The step starts a grandchild that ignores SIGTERM, then hangs.
    let book = runbook(
        "",
        "    - id: hang\n      run: |\n        sh -c 'trap \"\" TERM; echo $$ > grandchild; exec sleep 300' &\n        echo $$ > child\n        sleep 300\n      timeout: 5s\n",
    );
    let out = env.run_book(&book, &["--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    assert_eq!(doc["steps"][0]["status"], "timed_out");
    assert_eq!(doc["steps"][0]["error"], "timed out after 5s");
    let child: i32 = env.read("child").trim().parse().unwrap();
    let grandchild: i32 = env.read("grandchild").trim().parse().unwrap();
    assert!(dead(child), "the step's shell was killed");
    crate::support::wait_until(|| dead(grandchild), "the grandchild to be killed");
}

#[test]
fn background_processes_do_not_block_a_step() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: bg\n      run: |\n        sleep 300 >/dev/null 2>&1 &\n        echo $! > bgpid\n        echo started\n      timeout: 30s\n",
    );
    let out = env.run_book(&book, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let pid: i32 = env.read("bgpid").trim().parse().unwrap();
    assert!(!dead(pid), "a detached background process keeps running");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
}

#[test]
fn retries_count_attempts_and_back_off() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: flaky\n      run: |\n        n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count\n        echo \"attempt $OPSBOOK_ATTEMPT\"\n        test $n -ge 3\n      retries: { count: 5, delay: 10ms, backoff: 2.0, max_delay: 30ms }\n    - id: always\n      run: echo nope; exit 1\n      retries: { count: 2, delay: 10ms }\n",
    );
    let out = env.run_book(&book, &[]);
    assert_eq!(out.code, 1, "{out:?}");
    let (e, steps) = env.last();
    assert_eq!(steps[0].status, StepStatus::Succeeded);
    assert_eq!(steps[0].attempts, 3);
    assert_eq!(env.read("count"), "3\n");
    assert_eq!(steps[1].status, StepStatus::Failed);
    assert_eq!(steps[1].attempts, 3, "1 attempt + 2 retries");
    let s = env.store();
    let attempts = s.block(s.store.attempts(&e.id)).unwrap();
    let flaky: Vec<_> = attempts.iter().filter(|a| a.step_id == "flaky").map(|a| a.status).collect();
    assert_eq!(flaky, vec![StepStatus::Failed, StepStatus::Failed, StepStatus::Succeeded]);
    assert_eq!(attempts.iter().filter(|a| a.step_id == "always").count(), 3);
    assert!(out.stdout.contains("attempt 1 of 6 failed: exited with code 1; retrying in 10ms"), "{out:?}");
    assert!(out.stdout.contains("attempt 2 of 6 failed: exited with code 1; retrying in 20ms"), "{out:?}");
}

#[test]
fn a_failed_validation_is_a_failed_attempt() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: v\n      run: echo \"saved 12 files\"; exit 2\n      validate:\n        - exit_code: [0, 2]\n        - output_contains: saved\n        - output_matches: \"^saved \\\\d+ files$\"\n    - id: w\n      run: echo done\n      retries: { count: 1, delay: 10ms }\n      validate: [ { output_contains: complete } ]\n",
    );
    let out = env.run_book(&book, &["--output", "json"]);
    let doc = out.json();
    assert_eq!(doc["steps"][0]["status"], "succeeded", "{out:?}");
    assert_eq!(doc["steps"][0]["exit_code"], 2);
    assert_eq!(doc["steps"][1]["status"], "failed");
    assert_eq!(doc["steps"][1]["attempts"], 2);
    assert_eq!(doc["steps"][1]["error"], "output does not contain \"complete\"");
}

#[test]
fn rollbacks_run_newest_first_and_survive_a_failing_one() {
    let env = Env::new();
    let step = |id: &str, rollback: &str| {
        format!("    - id: {id}\n      run: echo {id} >> done\n      rollback:\n        run: {rollback}\n")
    };
    let steps = [
        step("a", "echo a >> undone"),
        step("b", "echo b >> undone; exit 7"),
        "    - id: no_rollback\n      run: \"true\"\n".to_string(),
        step("c", "echo c >> undone"),
        "    - id: optional\n      required: false\n      run: exit 1\n      rollback:\n        run: echo optional >> undone\n".into(),
        "    - id: boom\n      run: exit 1\n      rollback:\n        run: echo boom >> undone\n".into(),
        step("never", "echo never >> undone"),
    ]
    .concat();
    let out = env.run_book(&runbook("", &steps), &["--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(env.read("done"), "a\nb\nc\n");
    assert_eq!(env.read("undone"), "c\nb\na\n", "only succeeded steps, newest first, all despite b failing");
    let doc = out.json();
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["error"], "step `boom` failed: exited with code 1");
    assert_eq!(doc["steps"][4]["status"], "failed", "optional failed but the run went on");
    assert_eq!(doc["rollback"]["status"], "failed");
    let rolled: Vec<_> = doc["rollback"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].clone(), s["status"].clone(), s["exit_code"].clone()))
        .collect();
    assert_eq!(
        rolled,
        vec![
            ("c".into(), "succeeded".into(), 0.into()),
            ("b".into(), "failed".into(), 7.into()),
            ("a".into(), "succeeded".into(), 0.into())
        ]
    );
}

#[test]
fn on_failure_stop_skips_rollbacks_and_optional_failures_continue() {
    let env = Env::new();
    let book = runbook("", "    - id: a\n      run: \"true\"\n      rollback:\n        run: touch undone\n    - id: b\n      run: exit 1\n")
        .replace("  steps:", "  on_failure: stop\n  steps:");
    let out = env.run_book(&book, &[]);
    assert_eq!(out.code, 1);
    assert!(!env.path("undone").exists());
    let (e, _) = env.last();
    assert_eq!(e.rollback_status, None);

    let book =
        runbook("", "    - id: a\n      required: false\n      run: exit 1\n    - id: b\n      run: touch ran\n");
    let out = env.run_book(&book, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(env.path("ran").exists());
    assert!(out.stdout.contains("step `a` failed but is not required; continuing"), "{out:?}");
}

#[test]
fn outputs_conditions_and_templates_flow_between_steps() {
    let env = Env::new();
    let book = runbook(
        "    env: { type: enum, values: [staging, production], required: true }\n",
        "    - id: make\n      run: |\n        echo \"port=8080\" >> \"$OPSBOOK_OUTPUT\"\n        printf 'notes<<EOT\\nline one\\nline two\\nEOT\\n' >> \"$OPSBOOK_OUTPUT\"\n    - id: prod_only\n      when: \"params.env == 'production'\"\n      run: touch prod\n    - id: use\n      run: echo {{ steps.make.outputs.port }} {{ steps.make.status }} {{ steps.prod_only.status }} {{ execution.id }} > used; echo {{ steps.make.outputs.notes }} > notes\n    - id: by_env\n      env:\n        PORT: \"{{ steps.make.outputs.port }}\"\n      run: echo \"port $PORT\" | tee by_env; echo {{ params.env }}\n      validate:\n        - output_contains: \"{{ steps.make.outputs.port }}\"\n",
    );
    let out = env.run_book(&book, &["-p", "env=staging", "--output", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let doc = out.json();
    assert_eq!(doc["steps"][1]["status"], "skipped");
    assert!(!env.path("prod").exists());
    assert_eq!(env.read("used"), format!("8080 succeeded skipped {}\n", doc["id"].as_str().unwrap()));
    assert_eq!(env.read("notes"), "line one\nline two\n");
    // Templates outside the script (env, validations) see the steps too.
    assert_eq!(env.read("by_env"), "port 8080\n");
    assert_eq!(doc["steps"][3]["status"], "succeeded");
}

#[test]
fn prerequisites_gate_every_step() {
    let env = Env::new();
    let book = runbook("", "    - id: a\n      run: touch ran\n").replace(
        "  steps:",
        "  prerequisites:\n    - description: Tests passed\n    - description: Artifact exists\n      check: { run: \"test -f artifact.tar\" }\n  steps:",
    );
    let out = env.run_book(&book, &["--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.json()["error"], "prerequisite not met: Artifact exists (exited with code 1)");
    assert!(!env.path("ran").exists());
    env.write("artifact.tar", "");
    let out = env.run_book(&book, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("prerequisite: Tests passed"), "{out:?}");
    assert!(env.path("ran").exists());
}

#[test]
fn workdir_env_and_shell() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("sub")).unwrap();
    let book = runbook(
        "    who: { type: string, default: world }\n",
        "    - id: a\n      workdir: sub\n      shell: bash\n      env: { GREETING: \"hello {{ params.who }}\" }\n      run: |\n        false | true\n        echo \"$GREETING from $(basename $PWD) $BASH_VERSION\" > out\n",
    );
    let out = env.run_book(&book, &[]);
    assert_eq!(out.code, 1, "pipefail makes `false | true` fail: {out:?}");
    let book = book.replace("false | true\n        ", "");
    let out = env.run_book(&book, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(env.read("sub/out").starts_with("hello world from sub 5."));
}

#[test]
fn http_steps_check_status_and_body() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        // First request: 503; then 200 with a body.
        for (i, stream) in listener.incoming().take(3).enumerate() {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let (status, body) = if i == 0 { ("503 Service Unavailable", "busy") } else { ("200 OK", "status: ok") };
            let _ = write!(s, "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        }
    });
    let env = Env::new();
    let book = runbook(
        "    port: { type: integer }\n",
        "    - id: health\n      http: { url: \"http://127.0.0.1:{{ params.port }}/health\", expect_status: [200], expect_body_contains: ok, timeout: 5s }\n      retries: { count: 3, delay: 10ms }\n    - id: wrong\n      http: { method: POST, url: \"http://127.0.0.1:{{ params.port }}/\", body: x, expect_body_contains: nope }\n",
    );
    let out = env.run_book(&book, &["-p", &format!("port={port}"), "--output", "json"]);
    server.join().unwrap();
    let doc = out.json();
    assert_eq!(doc["steps"][0]["status"], "succeeded", "{out:?}");
    assert_eq!(doc["steps"][0]["attempts"], 2);
    assert_eq!(doc["steps"][0]["outputs"]["status"], "200");
    assert_eq!(doc["steps"][1]["status"], "failed");
    assert_eq!(doc["steps"][1]["error"], "response body does not contain \"nope\"");
    let (e, _) = env.last();
    let s = env.store();
    let logs =
        s.block(s.store.logs(&opsbook_store::LogQuery { execution_id: e.id.clone(), ..Default::default() })).unwrap();
    assert!(logs.iter().any(|l| l.line.starts_with(&format!("GET http://127.0.0.1:{port}/health -> 503"))));
    assert!(logs.iter().any(|l| l.phase == Phase::Step && l.line == "status: ok"));
    assert_eq!(e.status, ExecStatus::Failed);
}

/// A script longer than one command-line argument may be (128 KiB on Linux) runs from a
/// file instead of `sh -c`.
#[test]
fn a_script_longer_than_an_argument_runs() {
    let env = Env::new();
    let book = runbook("", "    - id: big\n      run: printf %s {{ \"x\" * 200000 }} | wc -c > count\n");
    let o = env.run_book(&book, &[]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(env.read("count").trim(), "200000");
}

/// A misspelt output in quotes fails its step before it runs, as it does written bare: it
/// was written as nothing, so `rm -rf "data/{{ typo }}"` removed all of `data/`.
#[test]
fn an_undefined_value_in_quotes_fails_its_step() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("data/keep")).unwrap();
    let book = runbook(
        "",
        concat!(
            "    - id: a\n      run: echo \"dir=old\" >> \"$OPSBOOK_OUTPUT\"\n",
            "    - id: b\n      run: rm -rf \"data/{{ steps.a.outputs.dri }}\"\n",
        ),
    );
    env.write("typo.yaml", &book);
    let o = env.run(&["run", "typo.yaml"]);
    assert_eq!(o.code, 1, "{o:?}");
    let why = "`steps.a.outputs.dri` is undefined: step `a` (succeeded) has no output `dri`; its outputs: `dir`";
    assert!(o.stdout.contains(why), "{o:?}");
    assert!(env.path("data/keep").exists(), "the step ran");
}

/// An http step that cannot connect says so in a few words, not reqwest's whole chain.
#[test]
fn an_http_step_that_cannot_connect_says_why() {
    let env = Env::new();
    let book = runbook("", "    - id: ping\n      http: { url: \"http://127.0.0.1:9/health\", timeout: 5s }\n");
    env.write("ping.yaml", &book);
    let o = env.run(&["run", "ping.yaml"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("GET http://127.0.0.1:9/health: cannot connect: Connection refused"), "{o:?}");
    assert!(!o.stdout.contains("error sending request"), "{o:?}");
}

/// A step its `when` skips says why as it goes by.
#[test]
fn a_skipped_step_says_why() {
    let env = Env::new();
    let book = runbook(
        "    env: { type: string, default: staging }\n",
        "    - id: page\n      when: \"params.env == 'production'\"\n      run: \"true\"\n",
    );
    env.write("skip.yaml", &book);
    let o = env.run(&["run", "skip.yaml"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("[1/1] page skipped — `when: params.env == 'production'` is false"), "{o:?}");
}

/// A dry run shows an http step's request as a run would send it, secrets masked.
#[test]
fn a_dry_run_shows_an_http_request_whole() {
    let env = Env::new();
    let book = runbook(
        "    v: { type: string }\n    tok: { type: secret }\n",
        concat!(
            "    - id: notify\n      http:\n        method: POST\n",
            "        url: \"https://hooks.example.com/deploy?v={{ params.v }}\"\n",
            "        headers: { Authorization: \"Bearer {{ params.tok }}\" }\n",
            "        body: '{\"version\": \"{{ params.v }}\"}'\n",
        ),
    );
    env.write("notify.yaml", &book);
    let o = env.run(&["run", "notify.yaml", "--dry-run", "-p", "v=1.4 rc", "-p", "tok=s3cr3t-token"]);
    assert_eq!(o.code, 0, "{o:?}");
    for line in [
        "POST https://hooks.example.com/deploy?v=1.4%20rc",
        "Authorization: Bearer ***",
        "Content-Type: application/json",
        "{\"version\": \"1.4 rc\"}",
    ] {
        assert!(o.stdout.contains(line), "{line}: {o:?}");
    }
    assert!(!o.stdout.contains("s3cr3t"), "{o:?}");
}
