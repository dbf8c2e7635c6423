//! `opsbook gate check|wait` against local servers speaking the real Statuspage and
//! Alertmanager formats, plus freeze, http and command sources.

use crate::support::{Env, FakeHttp, out};

const CLEAR_PAGE: &str = r#"{"page":{"url":"https://status.example"},"components":[{"id":"c1","name":"Actions","status":"operational"},{"id":"c2","name":"Pages","status":"operational"}],"incidents":[]}"#;

fn page_with_incident(impact: &str, component: &str) -> String {
    format!(
        r#"{{"page":{{"url":"https://status.example"}},"components":[{{"id":"c1","name":"Actions","status":"partial_outage"}},{{"id":"c2","name":"Pages","status":"operational"}}],"incidents":[{{"id":"inc42","name":"Delayed jobs","status":"investigating","impact":"{impact}","created_at":"2026-11-23T10:00:00Z","updated_at":"2026-11-23T10:05:00Z","shortlink":"https://stspg.io/inc42","components":[{{"name":"{component}"}}]}}]}}"#
    )
}

const ALERT: &str = r#"[{"fingerprint":"f00d","labels":{"alertname":"HighErrorRate","severity":"critical","team":"web","region":"us-east-1","service":"checkout"},"annotations":{"summary":"5xx above 5%"},"startsAt":"2026-11-23T09:00:00Z","updatedAt":"2026-11-23T09:01:00Z","generatorURL":"http://prom/graph","status":{"state":"active"}}]"#;

fn gates(status: &FakeHttp, am: &FakeHttp) -> String {
    format!(
        "gates:\n  prod:\n    sources:\n      - statuspage: {{ url: \"{}\", components: [Actions], min_impact: minor }}\n      - alertmanager: {{ url: \"{}\", matchers: ['severity=\"critical\"', 'team=\"web\"'] }}\n      - command: {{ run: \"exit 0\" }}\n  lenient:\n    fail_mode: open\n    sources:\n      - http: {{ url: \"http://127.0.0.1:9/nothing\" }}\n  strict:\n    sources:\n      - http: {{ url: \"http://127.0.0.1:9/nothing\" }}\n  typo:\n    sources:\n      - statuspage: {{ url: \"{}\", components: [Actons] }}\n  frozen:\n    sources:\n      - freeze: {{ dates: [\"2000-01-01/2999-12-31\"] }}\n  checks:\n    sources:\n      - http: {{ url: \"{}/health\", expect_json: {{ path: \"$.status\", equals: ok }} }}\n      - command: {{ run: \"echo error budget spent; exit 1\" }}\n",
        status.url, am.url, status.url, status.url
    )
}

#[test]
fn check_reports_verdicts_and_exit_codes() {
    let env = Env::new();
    let status = FakeHttp::start();
    let am = FakeHttp::start();
    status.set("/api/v2/summary.json", 200, CLEAR_PAGE);
    status.set("/health", 200, r#"{"status":"degraded"}"#);
    am.set("/api/v2/alerts", 200, "[]");
    env.write("opsbook.yaml", &gates(&status, &am));

    let clear = env.run(&["gate", "check", "prod", "--output", "json"]);
    assert_eq!(clear.code, 0, "{clear:?}");
    assert_eq!(clear.json()["verdict"], "clear");
    // The Alertmanager query asks for active, unsilenced, uninhibited alerts with the matchers.
    let asked = am.seen.lock().unwrap().last().unwrap().clone();
    assert_eq!(
        asked,
        "/api/v2/alerts?active=true&silenced=false&inhibited=false&filter=severity%3D%22critical%22&filter=team%3D%22web%22"
    );

    status.set("/api/v2/summary.json", 200, &page_with_incident("major", "Actions"));
    am.set("/api/v2/alerts", 200, ALERT);
    let blocked = env.run(&["gate", "check", "prod", "--output", "json"]);
    assert_eq!(blocked.code, 3, "{blocked:?}");
    let doc = blocked.json();
    assert_eq!(doc["verdict"], "blocked");
    let records = doc["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{doc}");
    assert_eq!(records[0]["source"], "statuspage");
    assert_eq!(records[0]["id"], "inc42");
    assert_eq!(records[0]["title"], "Delayed jobs");
    assert_eq!(records[0]["url"], "https://stspg.io/inc42");
    assert_eq!(records[1]["source"], "alertmanager");
    assert_eq!(records[1]["id"], "f00d");
    assert_eq!(records[1]["title"], "HighErrorRate: 5xx above 5%");
    assert_eq!(records[1]["region"], "us-east-1");
    let kinds: Vec<&str> = doc["sources"].as_array().unwrap().iter().map(|s| s["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["statuspage", "alertmanager", "command"]);

    // An answer larger than a health source sends is refused as it arrives (unknown).
    status.set("/api/v2/summary.json", 200, CLEAR_PAGE);
    am.set("/api/v2/alerts", 200, &format!("[{}0]", "0,".repeat(4_300_000)));
    let huge = env.run(&["gate", "check", "prod", "--output", "json"]);
    assert_eq!(huge.code, 3, "{huge:?}");
    let doc = huge.json();
    assert_eq!(doc["verdict"], "unknown");
    let error = doc["sources"][1]["error"].as_str().unwrap();
    assert!(error.ends_with("answered more than 8 MiB, more than a health source sends"), "{error}");
    am.set("/api/v2/alerts", 200, "[]");
    // JSON that is not a Statuspage summary says so (not "has no component").
    status.set("/api/v2/summary.json", 200, "{}");
    let odd = env.run(&["gate", "check", "prod", "--output", "json"]);
    assert_eq!(odd.code, 3, "{odd:?}");
    let error = odd.json()["sources"][0]["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("/api/v2/summary.json is not a Statuspage summary (no `components` and `incidents` lists)"),
        "{error}"
    );

    // An incident on a component the gate does not watch, or below min_impact, does not block.
    status.set(
        "/api/v2/summary.json",
        200,
        &page_with_incident("major", "Pages").replace("partial_outage", "operational"),
    );
    am.set("/api/v2/alerts", 200, "[]");
    assert_eq!(env.run(&["gate", "check", "prod"]).code, 0);
    status.set(
        "/api/v2/summary.json",
        200,
        &page_with_incident("none", "Actions").replace("partial_outage", "operational"),
    );
    assert_eq!(env.run(&["gate", "check", "prod"]).code, 0);

    // The API's own address, pasted as the page's, reads the same page.
    env.write(
        "pasted.yaml",
        &format!(
            "gates:\n  pasted:\n    sources:\n      - statuspage: {{ url: \"{}/api/v2/summary.json\" }}\n",
            status.url
        ),
    );
    let pasted = env.run(&["gate", "check", "pasted", "--config", "pasted.yaml"]);
    assert_eq!(pasted.code, 0, "{pasted:?}");
    assert_eq!(status.seen.lock().unwrap().last().unwrap(), "/api/v2/summary.json");

    // A source that cannot be read: fail_mode open passes with a warning, closed blocks and says why.
    let lenient = env.run(&["gate", "check", "lenient"]);
    assert_eq!(lenient.code, 0, "{lenient:?}");
    assert!(
        lenient.stderr.contains("warning: passing under fail_mode: open although http: cannot reach"),
        "{lenient:?}"
    );
    let strict = env.run(&["gate", "check", "strict"]);
    assert_eq!(strict.code, 3, "{strict:?}");
    assert!(
        strict.stderr.contains(
            "blocking under fail_mode: closed because http: cannot reach http://127.0.0.1:9/nothing: Connection refused"
        ),
        "{strict:?}"
    );

    // A watched component the page does not have never blocks silently: the source is unreadable.
    crate::support::assert_fails_saying(
        &env.run(&["gate", "check", "typo"]),
        3,
        &format!(
            "statuspage: {}/api/v2/summary.json has no component `Actons` (did you mean `Actions`?); it has: Actions, Pages",
            status.url
        ),
    );

    let frozen = env.run(&["gate", "check", "frozen", "--output", "json"]);
    assert_eq!(frozen.code, 3);
    assert_eq!(frozen.json()["records"][0]["title"], "freeze from 2000-01-01 to 2999-12-31");
    let checks = env.run(&["gate", "check", "checks", "--output", "json"]);
    assert_eq!(checks.code, 3);
    let titles: Vec<String> =
        checks.json()["records"].as_array().unwrap().iter().map(|r| r["title"].as_str().unwrap().to_string()).collect();
    assert_eq!(titles, vec!["$.status is \"degraded\" (expected \"ok\")", "error budget spent"]);

    // Credentials in a source's URL are never shown: `***` in their place.
    env.write(
        "cred.yaml",
        "gates:\n  c:\n    sources:\n      - alertmanager: { url: \"http://admin:S3cretPass@127.0.0.1:1/am?api_key=K3y\" }\n",
    );
    let cred = env.run(&["gate", "check", "c", "--config", "cred.yaml", "--output", "json"]);
    assert_eq!(cred.code, 3, "{cred:?}");
    let all = format!("{}{}", cred.stdout, cred.stderr);
    assert!(!all.contains("S3cretPass") && !all.contains("K3y"), "{all}");
    assert!(all.contains("http://admin:***@127.0.0.1:1/am/api/v2/alerts?api_key=***&active=true"), "{all}");

    // Output that cannot be written is an error that says so, not a panic.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let o =
        crate::support::out(env.cmd(&["gate", "check", "c", "--config", "cred.yaml"]).stdout(full).output().unwrap());
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("error: cannot write to standard output: No space left on device"), "{o:?}");
    assert!(!o.stderr.contains("panicked"), "{o:?}");

    let missing = env.run(&["gate", "check", "prd"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("no gate `prd` in opsbook.yaml (did you mean `prod`?)"), "{missing:?}");
    env.write("bad.yaml", "gates:\n  x:\n    sources:\n      - statuspag: { url: \"http://x\" }\n");
    let bad = env.run(&["gate", "check", "x", "--config", "bad.yaml"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("bad.yaml:4:9: unknown value `statuspag` (did you mean `statuspage`?)"), "{bad:?}");
    // A gates file has no steps: a key of a runbook's step is not hinted at as one.
    env.write("bad.yaml", "gates:\n  x:\n    sources:\n      - http: { url: \"http://x\", timeout: 1s }\n");
    let bad = env.run(&["gate", "check", "x", "--config", "bad.yaml"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("bad.yaml:4:34: unknown field `timeout`; expected one of: url, expect_status, expect_json"),
        "{bad:?}"
    );
    assert!(!bad.stderr.contains("a key of a step"), "{bad:?}");
    // Errors found after parsing name their place too.
    env.write(
        "bad.yaml",
        "gates:\n  x:\n    sources:\n      - statuspage: { url: \"http://x\" }\n      - freeze: { windows: [{ start: \"0 17 * * FRI\", duration: 1h, timezone: Mars/Base }] }\n",
    );
    let bad = env.run(&["gate", "check", "x", "--config", "bad.yaml"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("bad.yaml:5:78: gate `x`: unknown time zone `Mars/Base`"), "{bad:?}");
    // With the offending line and a caret, as runbook problems show; a typo gets a hint.
    env.write(
        "bad.yaml",
        "gates:\n  x:\n    sources:\n      - freeze: { windows: [{ start: \"0 17 * * FRI\", duration: 1h, timezone: Europe/Berln }] }\n",
    );
    let bad = env.run(&["gate", "check", "x", "--config", "bad.yaml"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains(
            "bad.yaml:4:78: gate `x`: unknown time zone `Europe/Berln` (did you mean `Europe/Berlin`?)\n  |\n4 |       - freeze: "
        ),
        "{bad:?}"
    );
    let caret = format!("\n  | {}{}\n", " ".repeat(77), "^".repeat("Europe/Berln".len()));
    assert!(bad.stderr.contains(&caret), "a caret under the value: {bad:?}");
    let checked = env.run(&["validate", "bad.yaml", "--output", "json"]);
    assert_eq!(checked.code, 1, "validate exits 1 on an invalid file: {checked:?}");
    let problem = &checked.json()[0]["problems"][0];
    assert_eq!((problem["line"].as_u64(), problem["column"].as_u64()), (Some(4), Some(78)), "{checked:?}");

    // Freezes that can no longer freeze anything are valid (the file must not start
    // failing as time passes), with a warning from validate.
    env.write(
        "stale.yaml",
        "gates:\n  old:\n    sources:\n      - freeze: { windows: [{ start: \"0 0 0 1 1 * 2020\", duration: 1h }], dates: [\"2020-12-24/2020-12-26\"] }\n",
    );
    let stale = env.run(&["validate", "stale.yaml"]);
    assert_eq!(stale.code, 0, "{stale:?}");
    assert!(
        stale.stdout.contains("stale.yaml: warning: gate `old`: freeze window `0 0 0 1 1 * 2020` never starts again"),
        "{stale:?}"
    );
    assert!(
        stale.stdout.contains("stale.yaml: warning: gate `old`: freeze dates `2020-12-24/2020-12-26` are past"),
        "{stale:?}"
    );
    assert_eq!(env.run(&["gate", "check", "old", "--config", "stale.yaml"]).code, 0, "clear, as before");
}

#[test]
fn github_output_writes_annotations_and_a_step_summary() {
    let env = Env::new();
    let status = FakeHttp::start();
    let am = FakeHttp::start();
    status.set("/api/v2/summary.json", 200, &page_with_incident("critical", "Actions"));
    am.set("/api/v2/alerts", 200, "[]");
    env.write("opsbook.yaml", &gates(&status, &am));
    let summary = env.path("summary.md");
    let o = out(env
        .cmd(&["gate", "check", "prod", "--output", "github"])
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap());
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stdout.contains("::error title=opsbook gate prod::statuspage: Delayed jobs"), "{o:?}");
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.starts_with("### opsbook gate `prod`: blocked\n"), "{md}");
    assert!(
        md.contains("| statuspage | Delayed jobs | Actions | 2026-11-23T10:00:00Z | [link](https://stspg.io/inc42) |"),
        "{md}"
    );

    // Under GitHub Actions the summary is written whatever the output format, and JSON
    // output stays pure JSON (no annotations).
    std::fs::remove_file(&summary).unwrap();
    let o = out(env
        .cmd(&["gate", "check", "prod", "--output", "json"])
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap());
    assert_eq!(o.code, 3, "{o:?}");
    assert_eq!(o.json()["verdict"], "blocked");
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.starts_with("### opsbook gate `prod`: blocked\n"), "{md}");
    assert!(md.contains("| statuspage | Delayed jobs |"), "{md}");
    // A wait that gives up says in the summary how long it waited.
    std::fs::remove_file(&summary).unwrap();
    let o = out(env
        .cmd(&["gate", "wait", "prod", "--poll", "100ms", "--max-wait", "300ms"])
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap());
    assert_eq!(o.code, 3, "{o:?}");
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("(--max-wait 300ms); still blocked"), "{md}");

    // A source's text cannot start a line of its own (a workflow command under GitHub
    // Actions) nor reach the log as terminal escapes: it is one line of plain text.
    let injected = page_with_incident("critical", "Actions").replace(
        "Delayed jobs",
        r"line1\n::warning title=x::INJECTED\r\n::stop-commands::tok \u001b[31mred\u001b[0m\ttab",
    );
    status.set("/api/v2/summary.json", 200, &injected);
    let o = env.run(&["gate", "wait", "prod", "--poll", "100ms", "--max-wait", "300ms", "--output", "github"]);
    assert_eq!(o.code, 3, "{o:?}");
    let commands: Vec<&str> = o.stdout.lines().filter(|l| l.starts_with("::")).collect();
    assert!(
        !commands.is_empty() && commands.iter().all(|l| l.starts_with("::error title=opsbook gate prod::")),
        "{o:?}"
    );
    assert!(o.stdout.contains("line1 ::warning title=x::INJECTED ::stop-commands::tok red tab"), "{o:?}");
    assert!(!o.stdout.contains('\u{1b}') && !o.stdout.contains('\r'), "{o:?}");
}

#[test]
fn wait_resumes_when_the_incident_clears() {
    let env = Env::new();
    let status = FakeHttp::start();
    let am = FakeHttp::start();
    status.set("/api/v2/summary.json", 200, &page_with_incident("major", "Actions"));
    am.set("/api/v2/alerts", 200, "[]");
    env.write("opsbook.yaml", &gates(&status, &am));
    let child = env
        .cmd(&["gate", "wait", "prod", "--poll", "200ms", "--max-wait", "30s"])
        .env("GITHUB_STEP_SUMMARY", env.path("summary.md"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the gate has been found blocked at least twice, then clear the incident.
    crate::support::wait_until(|| status.seen.lock().unwrap().len() >= 2, "two checks");
    status.set("/api/v2/summary.json", 200, CLEAR_PAGE);
    let o = out(child.wait_with_output().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("gate prod blocked — "), "{o:?}");
    assert!(o.stderr.contains("statuspage: Delayed jobs"), "{o:?}");
    assert!(o.stderr.contains("gate prod is clear after"), "{o:?}");
    // The step summary keeps what the deployment waited for.
    let summary = env.read("summary.md");
    assert!(summary.starts_with("### opsbook gate `prod`: clear\n"), "{summary}");
    assert!(summary.contains("\nWaited "), "{summary}");
    assert!(summary.contains(" for it to clear: statuspage: Delayed jobs\n"), "{summary}");

    // And gives up after --max-wait.
    status.set("/api/v2/summary.json", 200, &page_with_incident("major", "Actions"));
    let o = env.run(&["gate", "wait", "prod", "--poll", "100ms", "--max-wait", "300ms"]);
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stderr.contains("gate prod still blocked after 300ms: giving up"), "{o:?}");

    // A poll longer than what is left of --max-wait: the last check lands on the deadline.
    let before = status.seen.lock().unwrap().len();
    let started = std::time::Instant::now();
    let o = env.run(&["gate", "wait", "prod", "--poll", "2s", "--max-wait", "3s"]);
    assert_eq!(o.code, 3, "{o:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(3000), "{o:?}");
    // Checks at 0s, 2s and 3s (on a loaded machine a slow first check can push the
    // second past the deadline, which then takes its place).
    let checks = status.seen.lock().unwrap().len() - before;
    assert!((2..=3).contains(&checks), "{checks} checks, not at 0s, 2s and 3s: {o:?}");
}

#[test]
fn runbook_gate_steps_wait_fail_and_recheck() {
    let env = Env::new();
    let status = FakeHttp::start();
    let am = FakeHttp::start();
    status.set("/api/v2/summary.json", 200, &page_with_incident("major", "Actions"));
    am.set("/api/v2/alerts", 200, "[]");
    env.write("opsbook.yaml", &gates(&status, &am));

    // on_blocked: fail — the step fails at once and the earlier steps roll back.
    let fail = crate::support::runbook(
        "",
        "    - id: prep\n      run: \"true\"\n      rollback:\n        run: touch undone\n    - id: health\n      gate: { use: prod, on_blocked: fail }\n    - id: deploy\n      run: touch deployed\n",
    );
    let o = env.run_book(&fail, &["--output", "json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let doc = o.json();
    assert_eq!(doc["steps"][1]["status"], "failed");
    assert_eq!(doc["steps"][1]["error"], "gate `prod` is blocked: statuspage: Delayed jobs");
    assert!(env.path("undone").exists());
    assert!(!env.path("deployed").exists());
    let unknown = env.run_book(&fail.replace("use: prod", "use: prdo"), &[]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains(
            "test.yaml:14:20: step `health`: gate `prdo` is used by the runbook but not in opsbook.yaml (did you mean `prod`?)"
        ),
        "{unknown:?}"
    );
    // validate checks the same, and reads gates files it meets as gates files.
    env.write("test.yaml", &fail.replace("use: prod", "use: prdo"));
    let checked = env.run(&["validate", "."]);
    assert_eq!(checked.code, 1, "{checked:?}");
    assert!(checked.stdout.contains("./opsbook.yaml: ok (gates file, 6 gates)"), "{checked:?}");
    assert!(
        checked.stdout.contains("./test.yaml:14:20: step `health`: gate `prdo` is used by the runbook but not in ./opsbook.yaml (did you mean `prod`?)\n   |\n14 |       gate: { use: prdo, on_blocked: fail }\n   |                    ^^^^\n"),
        "{checked:?}"
    );
    // Also beside the runbook's other problems, each in its place.
    env.write(
        "test.yaml",
        &fail.replace("use: prod", "use: prdo").replace("touch deployed", "touch {{ params.nope }}"),
    );
    let checked = env.run(&["validate", "test.yaml"]);
    assert!(checked.stdout.contains("test.yaml:14:20: step `health`: gate `prdo` is used"), "{checked:?}");
    assert!(checked.stdout.contains("test.yaml:16:12: run: unknown parameter `params.nope`"), "{checked:?}");
    assert!(checked.stderr.contains("1 of 1 file invalid (2 problems)"), "{checked:?}");
    env.write("test.yaml", &fail);
    assert_eq!(env.run(&["validate", "test.yaml"]).code, 0);

    // on_blocked: wait — the run goes on by itself once the incident clears.
    let wait = fail.replace("on_blocked: fail", "on_blocked: wait, poll: 200ms, max_wait: 30s");
    env.write("test.yaml", &wait);
    let child = env.spawn(&["run", "test.yaml"]);
    crate::support::wait_until(|| status.seen.lock().unwrap().len() >= 2, "the gate to be checked twice");
    status.set("/api/v2/summary.json", 200, CLEAR_PAGE);
    let o = out(child.wait_with_output().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("gate `prod` blocked for"), "{o:?}");
    assert!(o.stdout.contains("gate `prod` is clear"), "{o:?}");
    assert!(env.path("deployed").exists());

    // Still blocked at max_wait: timed out, with the last check on the deadline (not a
    // poll early), and the run rolled back.
    status.set("/api/v2/summary.json", 200, &page_with_incident("major", "Actions"));
    let before = status.seen.lock().unwrap().len();
    let started = std::time::Instant::now();
    let short = fail.replace("on_blocked: fail", "on_blocked: wait, poll: 2s, max_wait: 3s");
    let o = env.run_book(&short, &["--output", "json"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(3000), "{o:?}");
    // Checks at 0s, 2s and 3s (as in `gate wait` above: under load, 2 of them).
    let checks = status.seen.lock().unwrap().len() - before;
    assert!((2..=3).contains(&checks), "{checks} checks, not at 0s, 2s and 3s: {o:?}");
    let doc = o.json();
    assert_eq!(doc["steps"][1]["status"], "timed_out");
    assert_eq!(doc["steps"][1]["error"], "gate `prod` still blocked after 3s: statuspage: Delayed jobs");

    // recheck: between_steps — an incident opening mid-run stops it before the next step.
    std::fs::remove_file(env.path("undone")).unwrap();
    let recheck = crate::support::runbook(
        "",
        "    - id: health\n      gate:\n        sources:\n          - command: { run: \"test ! -e incident || { echo incident opened; exit 1; }\" }\n        on_blocked: fail\n        recheck: between_steps\n    - id: first\n      run: touch incident\n      rollback:\n        run: touch undone\n    - id: second\n      run: touch second\n",
    );
    let o = env.run_book(&recheck, &["--output", "json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let doc = o.json();
    assert_eq!(doc["error"], "recheck before step `second`: gate `inline` is blocked: command: incident opened");
    let logs = env.run(&["logs", doc["id"].as_str().unwrap()]);
    assert!(
        logs.stdout.contains("gate `inline` is blocked: command: incident opened"),
        "the check is in the log: {logs:?}"
    );
    assert_eq!(doc["steps"][2]["status"], "pending");
    assert!(!env.path("second").exists());
    assert!(env.path("undone").exists(), "first was rolled back");
}

/// The process id a command wrote to `file`, once it is all there.
fn pid_in(env: &Env, file: &str) -> i32 {
    let read = || std::fs::read_to_string(env.path(file)).ok().and_then(|s| s.trim().parse::<i32>().ok());
    crate::support::wait_until(|| read().is_some(), file);
    read().unwrap_or_default()
}

#[test]
fn command_sources_run_beside_their_file_and_stop_when_asked() {
    use nix::sys::signal::Signal;

    use crate::support::{dead, signal, wait_until};

    let env = Env::new();
    // A gates file elsewhere: `./check.sh` is found beside it, whatever the current directory.
    env.write_executable("conf/check.sh", "#!/bin/sh\necho maintenance window open\nexit 1\n");
    env.write(
        "conf/opsbook.yaml",
        "gates:\n  beside:\n    sources:\n      - command: { run: ./check.sh }\n  background:\n    sources:\n      - command: { run: \"sleep 30 & echo $! > bg.pid; echo ok\" }\n  hang:\n    sources:\n      - command: { run: \"echo $$ > hang.pid; sleep 77\" }\n  outage:\n    sources:\n      - command: { run: \"echo '100% down\nfor real'; exit 1\" }\n",
    );
    let o = env.run(&["gate", "check", "beside", "--config", "conf/opsbook.yaml", "--output", "json"]);
    assert_eq!(o.code, 3, "{o:?}");
    assert_eq!(o.json()["records"][0]["title"], "maintenance window open");

    // A background process holding the output open does not hold the check: it is clear
    // at once, and what it left running is killed with its group.
    let started = std::time::Instant::now();
    let o = env.run(&["gate", "check", "background", "--config", "conf/opsbook.yaml", "--timeout", "20s"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "{o:?}");
    let bg = pid_in(&env, "conf/bg.pid");
    wait_until(|| dead(bg), "the background sleep to be killed");

    // Ctrl-C abandons the check and kills the command's group.
    let child = env.spawn(&["gate", "check", "hang", "--config", "conf/opsbook.yaml"]);
    let pid = pid_in(&env, "conf/hang.pid");
    signal(&child, Signal::SIGINT);
    let o = out(child.wait_with_output().unwrap());
    assert_eq!(o.code, 130, "{o:?}");
    assert!(o.stderr.contains("interrupted: the check was abandoned and its commands killed"), "{o:?}");
    wait_until(|| dead(pid), "the command's shell to be killed");

    // GitHub annotations escape what would end or split them (`%`); an unwritable step
    // summary is a warning, not a failure.
    let o = out(env
        .cmd(&["gate", "check", "outage", "--config", "conf/opsbook.yaml", "--output", "github"])
        .env("GITHUB_STEP_SUMMARY", env.path("no/such/dir/summary.md"))
        .output()
        .unwrap());
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stdout.contains("::error title=opsbook gate outage::command: 100%25 down for real\n"), "{o:?}");
    assert!(o.stderr.contains("warning: cannot write the step summary to "), "{o:?}");

    // In a runbook, inline command sources run beside the runbook, and Ctrl-C stops a
    // gate step mid-check (not after the source's timeout).
    env.write("books/marker", "");
    env.write(
        "books/test.yaml",
        &crate::support::runbook(
            "",
            "    - id: health\n      gate:\n        sources:\n          - command: { run: \"test -e marker && echo $$ > ../step.pid && sleep 77\" }\n    - id: deploy\n      run: touch ../deployed\n",
        ),
    );
    let started = std::time::Instant::now();
    let child = env.spawn(&["run", "books/test.yaml"]);
    let pid = pid_in(&env, "step.pid");
    signal(&child, Signal::SIGINT);
    let o = out(child.wait_with_output().unwrap());
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "stopped well before the 20s source timeout: {o:?}"
    );
    wait_until(|| dead(pid), "the gate command to be killed");
    assert!(!env.path("deployed").exists());
    assert_eq!(env.last().1[0].status, opsbook_core::StepStatus::Cancelled);
}

#[test]
fn server_flag_mistakes_are_usage_errors() {
    let env = Env::new();
    let run = |server: &str| {
        out(env.cmd(&["--server", server, "gate", "check", "prod"]).env("OPSBOOK_TOKEN", "obk_x_y").output().unwrap())
    };
    crate::support::assert_fails_saying(
        &run("notaurl"),
        2,
        "--server `notaurl`: expected an http:// or https:// URL, e.g. https://opsbook.example.com",
    );
    // Admin commands never answer for a server from a local database.
    crate::support::assert_fails_saying(
        &out(env.cmd(&["--server", "http://127.0.0.1:9", "admin", "audit", "verify"]).output().unwrap()),
        2,
        "admin commands work on the server's database: run them on the server's machine without --server",
    );
    assert!(!env.db.exists(), "no local database was created");
    // A poll that would hammer the sources is refused.
    crate::support::assert_fails_saying(
        &env.run(&["gate", "wait", "prod", "--poll", "1ms"]),
        2,
        "--poll 1ms: poll at most every 100ms",
    );
    // Something that is not an opsbook server answers: said so, not a bare "HTTP 404".
    let other = FakeHttp::start();
    crate::support::assert_fails_saying(
        &run(&other.url),
        2,
        &format!(
            "{} answered HTTP 404 Not Found to /api/v1/gates/prod: is it an opsbook server (`opsbook serve`)?",
            other.url
        ),
    );
}

/// Runs openssl with `args` in the test's directory; it must succeed.
fn openssl(env: &Env, args: &[&str]) {
    let o = std::process::Command::new("openssl").args(args).current_dir(env.path(".")).output().expect("run openssl");
    assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn https_sources_are_read_over_tls_trusting_the_system_store() {
    // A real TLS server (openssl s_server) with a certificate from a CA of the test's own.
    let env = Env::new();
    env.write(
        "ext.cnf",
        "[leaf]\nbasicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
    );
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &env,
        &[
            &["req", "-x509"],
            &ec[..],
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=opsbook test CA"],
        ]
        .concat(),
    );
    openssl(
        &env,
        &[&["req"], &ec[..], &["-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost"]].concat(),
    );
    openssl(
        &env,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            "leaf.pem",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "leaf",
        ],
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let accept = format!("127.0.0.1:{port}");
    let mut server = std::process::Command::new("openssl")
        .args(["s_server", "-accept", &accept, "-cert", "leaf.pem", "-key", "leaf.key", "-www"])
        .current_dir(env.path("."))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start openssl s_server");
    crate::support::wait_until(|| std::net::TcpStream::connect(&accept).is_ok(), "openssl s_server");
    env.write(
        "opsbook.yaml",
        &format!("gates:\n  tls:\n    sources:\n      - http: {{ url: \"https://localhost:{port}/\", expect_status: [200] }}\n"),
    );

    // The system's store does not trust the test's CA: the handshake fails, and says why.
    let o = env.run(&["gate", "check", "tls"]);
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stdout.contains("invalid peer certificate: UnknownIssuer"), "{o:?}");
    // Trusted through SSL_CERT_FILE: the request is made and answered.
    let o = out(env.cmd(&["gate", "check", "tls"]).env("SSL_CERT_FILE", env.path("ca.pem")).output().unwrap());
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("gate tls: clear"), "{o:?}");
}
