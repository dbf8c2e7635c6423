//! Logs: streamed to the store line by line, bounded memory, any bytes.

use std::process::Stdio;

use opsbook_store::{LogQuery, Phase, Store, Stream};

use crate::support::{Env, out, runbook, wait_until};

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn fifty_megabytes_of_output_in_bounded_memory() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: big\n      run: head -c 52428800 /dev/zero | tr '\\0' x | fold -w 99\n    - id: pause\n      run: touch paused; while [ ! -e go ]; do sleep 0.05; done\n",
    );
    env.write("test.yaml", &book);
    let mut child = env.cmd(&["run", "test.yaml"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // 50 MB through a debug build: seconds alone, over a minute beside the other suites on
    // two cores, so a longer wait than other tests' (and the runner killed if it is spent).
    let started = std::time::Instant::now();
    while !env.path("paused").exists() {
        if started.elapsed() > std::time::Duration::from_secs(300) {
            let _ = child.kill();
            panic!("the 50 MB step did not end within 5 minutes");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let peak_kb = vm_hwm_kb(child.id()).expect("peak memory of the runner");
    env.write("go", "");
    assert!(child.wait().unwrap().success());
    assert!(peak_kb < 60 * 1024, "peak RSS {peak_kb} kB while streaming 50 MB");
    let (e, _) = env.last();
    let s = env.store();
    let lines = 52_428_800 / 99 + 1;
    assert_eq!(s.block(s.store.last_log_seq(&e.id)).unwrap(), lines as i64);
    let tail = s
        .block(s.store.logs(&LogQuery {
            execution_id: e.id.clone(),
            after_seq: lines as i64 - 2,
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(tail[0].line, "x".repeat(99));
    assert_eq!(tail[1].line.len(), 52_428_800 % 99);
}

#[test]
fn invalid_utf8_and_endless_lines_are_stored() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: bytes\n      run: |\n        printf 'ok \\377\\376 done\\n'\n        printf 'to stderr\\n' >&2\n        head -c 200000 /dev/zero | tr '\\0' y\n",
    );
    let o = env.run_book(&book, &[]);
    assert_eq!(o.code, 0, "{o:?}");
    let (e, _) = env.last();
    let s = env.store();
    let logs = s.block(s.store.logs(&LogQuery { execution_id: e.id.clone(), ..Default::default() })).unwrap();
    let out: Vec<_> = logs.iter().filter(|l| l.stream == Stream::Stdout).map(|l| l.line.as_str()).collect();
    assert_eq!(out[0], "ok \u{FFFD}\u{FFFD} done");
    let long: Vec<usize> = out[1..].iter().map(|l| l.len()).collect();
    assert_eq!(long, vec![65536, 65536, 65536, 200000 - 3 * 65536]);
    let err = logs.iter().find(|l| l.stream == Stream::Stderr).unwrap();
    assert_eq!((err.line.as_str(), err.phase, err.step_id.as_deref()), ("to stderr", Phase::Step, Some("bytes")));
}

/// Escape sequences in a step's output other than colours (a window title, the
/// clipboard, clearing the screen) are stored as printed but never reach the terminal.
#[test]
fn output_cannot_drive_the_operators_terminal() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: esc\n      run: printf 'a\\033]0;TITLE\\007\\033]52;c;eA==\\007\\033[2J\\033[1mbold\\033[0m\\r!\\n'\n",
    );
    let o = env.run_book(&book, &[]);
    assert_eq!(o.code, 0, "{o:?}");
    let (e, _) = env.last();
    let logs = env.run(&["logs", &e.id]);
    for shown in [&o.stdout, &logs.stdout] {
        assert!(shown.contains("a\x1b[1mbold\x1b[0m!"), "colours kept: {shown:?}");
        assert!(!shown.contains("TITLE") && !shown.contains("]52;") && !shown.contains("\x1b[2J"), "{shown:?}");
        assert!(!shown.contains('\r'), "{shown:?}");
    }
    let s = env.store();
    let stored = s.block(s.store.logs(&LogQuery { execution_id: e.id.clone(), ..Default::default() })).unwrap();
    assert!(stored.iter().any(|l| l.line.contains("\x1b]0;TITLE")), "stored as printed: {stored:?}");
}

#[test]
fn logs_command_filters_and_follows() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: one\n      run: echo first\n    - id: two\n      run: |\n        echo second\n        touch waiting\n        while [ ! -e go ]; do sleep 0.05; done\n        echo third\n",
    );
    env.write("test.yaml", &book);
    let run = env.spawn(&["run", "test.yaml"]);
    env.wait_for_file("waiting");
    let s = env.store();
    let id = s.block(s.store.running()).unwrap()[0].id.clone();
    let follow = env.spawn(&["logs", &id, "--follow"]);
    // Wait until the follower has printed what exists so far, then let the step finish.
    wait_until(|| s.block(s.store.last_log_seq(&id)).unwrap() >= 2, "the first lines");
    env.write("go", "");
    assert_eq!(out(run.wait_with_output().unwrap()).code, 0);
    let f = out(follow.wait_with_output().unwrap());
    assert_eq!(f.code, 0, "{f:?}");
    assert_eq!(f.stdout, "[one] first\n[two] second\n[two] third\n");
    let only = env.run(&["logs", &id[..6], "--step", "one"]);
    assert_eq!(only.stdout, "[one] first\n");
    // For programs: one JSON object per line, as the API gives them.
    let json = env.run(&["logs", &id, "--output", "json"]);
    let lines: Vec<serde_json::Value> = json.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{json:?}");
    assert_eq!((lines[2]["step"].as_str(), lines[2]["stream"].as_str()), (Some("two"), Some("stdout")));
    assert_eq!((lines[2]["line"].as_str(), lines[2]["seq"].as_i64()), (Some("third"), Some(3)));
}

/// `logs` marks what a step wrote to standard error and what its rollback wrote,
/// `--timestamps` puts the time first, and an unknown `--step` lists the steps.
#[test]
fn logs_marks_streams_and_times() {
    let env = Env::new();
    env.write(
        "test.yaml",
        &runbook("", "    - id: one\n      run: echo out; echo err >&2\n      rollback: { run: echo undone }\n    - id: two\n      run: exit 1\n"),
    );
    let ran = env.run(&["run", "test.yaml", "--output", "json"]);
    let id = ran.json()["id"].as_str().unwrap().to_string();
    let o = env.run(&["logs", &id]);
    assert!(o.stdout.contains("[one] out\n"), "{o:?}");
    assert!(o.stdout.contains("[one stderr] err\n"), "{o:?}");
    assert!(o.stdout.contains("[one rollback] undone\n"), "{o:?}");
    let t = env.run(&["logs", &id, "--timestamps", "--step", "one"]);
    let first = t.stdout.lines().find(|l| l.ends_with("[one] out")).unwrap_or_else(|| panic!("{t:?}"));
    assert!(first.starts_with("20") && first.as_bytes()[10] == b'T' && first[..24].ends_with('Z'), "{first}");
    let bad = env.run(&["logs", &id, "--step", "three"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains(&format!("execution {id} has no step `three`; its steps: one, two")), "{bad:?}");
}

/// `logs --follow` goes on through an approval wait, saying once how to go on, until
/// the execution ends.
#[test]
fn logs_follow_through_an_approval() {
    let env = Env::new();
    env.write(
        "test.yaml",
        &runbook("", "    - id: before\n      run: echo before\n    - id: ok\n      approval: {}\n    - id: after\n      run: echo after\n"),
    );
    let ran = env.run(&["run", "test.yaml", "--output", "json"]);
    assert_eq!(ran.code, 3, "{ran:?}");
    let id = ran.json()["id"].as_str().unwrap().to_string();
    let stderr = std::fs::File::create(env.path("follow.err")).unwrap();
    let follow = env.cmd(&["logs", &id, "--follow"]).stdout(Stdio::piped()).stderr(stderr).spawn().unwrap();
    let decide = format!("decide with `opsbook approve {id}`");
    wait_until(|| env.read("follow.err").contains(&decide), "the follower to show the approval");
    let approved = env.run(&["approve", &id]);
    assert_eq!(approved.code, 0, "{approved:?}");
    let f = out(follow.wait_with_output().unwrap());
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stdout.contains("[before] before\n") && f.stdout.contains("[after] after\n"), "{f:?}");
    assert!(env.read("follow.err").contains(&format!("execution {id} succeeded")), "{f:?}");
}

/// `logs` tells how a step and a rollback that did not succeed ended, as the live display
/// did, and labels a prerequisite's check and a rollback's notes.
#[test]
fn logs_show_how_failures_ended() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: a\n      run: \"true\"\n      rollback: { run: \"exit 7\" }\n    - id: b\n      run: echo trying; exit 1\n",
    )
    .replace("spec:\n", "spec:\n  prerequisites:\n    - { description: ready, check: { run: echo looking } }\n");
    let o = env.run_book(&book, &[]);
    assert_eq!(o.code, 1, "{o:?}");
    let (e, _) = env.last();
    let logs = env.run(&["logs", &e.id]).stdout;
    assert!(logs.contains("[check] looking\n"), "{logs}");
    assert!(logs.contains("[b] trying\n[b] failed: exited with code 1\n"), "{logs}");
    assert!(logs.contains("[a rollback] failed: exited with code 7\n"), "{logs}");
}
