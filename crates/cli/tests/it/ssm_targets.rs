//! `targets: { via: ssm }`: a `run` step on EC2 instances through SSM Run Command, against
//! the SSM double (awsJson1.1, opsbook's AWS client talking to it), whose `AWS-RunShellScript`
//! really runs the command it is sent, here, as the instance would.

use opsbook_doubles::ssm::{Document, InstanceResult};
use serde_json::Value;

use crate::aws_steps::{Aws, log_lines};
use crate::support::{Env, runbook};

const WEB_1: &str = "i-0a1b2c3d4e5f60001";
const WEB_2: &str = "i-0a1b2c3d4e5f60002";
const WEB_3: &str = "i-0a1b2c3d4e5f60003";

/// The double's `AWS-RunShellScript`: runs `commands` with `sh` (as SSM's agent does),
/// after `polls` status reads.
fn shell_script(polls: usize) -> Document {
    Document::new(polls, |_instance, p| {
        let command = p["commands"][0].as_str().unwrap_or_default();
        let out = std::process::Command::new("sh").arg("-c").arg(command).output().expect("run sh");
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        let code = out.status.code().unwrap_or(-1);
        InstanceResult { success: code == 0, code, output }
    })
}

fn fleet(aws: &Aws) {
    let mut s = aws.ssm.script();
    s.tags.insert("role=web".into(), vec![WEB_1.into(), WEB_2.into(), WEB_3.into()]);
    s.tags.insert("env=prod".into(), vec![WEB_1.into(), WEB_2.into()]);
    s.documents.insert("AWS-RunShellScript".into(), shell_script(1));
}

#[test]
fn a_step_runs_on_each_tagged_instance_and_rolls_back_where_it_succeeded() {
    let env = Env::new();
    let aws = Aws::start(&[]);
    fleet(&aws);
    let book = runbook(
        "    release: { type: string, default: \"2.4.0\" }\n",
        "    - id: restart\n      run: |\n        echo \"restarting {{ target }} at {{ params.release }}\"\n        echo \"release={{ params.release }}\" >> \"$OPSBOOK_OUTPUT\"\n        test \"$OPSBOOK_TARGET\" != i-0a1b2c3d4e5f60002 || { echo 'health check failed' >&2; exit 3; }\n      targets: { via: ssm, tags: { role: web }, region: eu-west-1, max_concurrency: 2, max_errors: 1 }\n      rollback: { run: echo \"undo on $OPSBOOK_TARGET\" }\n    - id: boom\n      run: exit 1\n",
    );
    let out = aws.run(&env, &book, &["--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    let step = &doc["steps"][0];
    assert_eq!(step["status"], "succeeded", "one failure is within max_errors: {step}");
    let targets = step["targets"].as_array().unwrap();
    let names: Vec<&str> = targets.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, [WEB_1, WEB_2, WEB_3], "the instances tagged role=web, from SSM");
    let status: Vec<&str> = targets.iter().map(|t| t["status"].as_str().unwrap()).collect();
    assert_eq!(status, ["succeeded", "failed", "succeeded"]);
    assert_eq!(targets[1]["exit_code"], 3);
    assert_eq!(step["outputs"][format!("{WEB_1}.release")], "2.4.0");
    let lines = log_lines(&env);
    assert!(lines.contains(&format!("[{WEB_1}] restarting {WEB_1} at 2.4.0")), "{lines:?}");
    assert!(lines.contains(&format!("[{WEB_2}] health check failed")), "{lines:?}");
    // The rollback went through SSM to the instances the step succeeded on, and only there.
    assert!(lines.contains(&format!("[{WEB_1}] undo on {WEB_1}")), "{lines:?}");
    assert!(lines.contains(&format!("[{WEB_3}] undo on {WEB_3}")), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains(&format!("undo on {WEB_2}"))), "{lines:?}");
    assert_eq!(targets[0]["rollback_status"], "succeeded");
    assert!(targets[1]["rollback_status"].is_null());
    // One command per instance and attempt, as SSM takes it, in the step's region.
    let sent = aws.ssm.calls("SendCommand");
    assert_eq!(sent.len(), 5, "3 runs and 2 rollbacks: {sent:?}");
    for c in &sent {
        assert_eq!(c["DocumentName"], "AWS-RunShellScript");
        assert_eq!(c["InstanceIds"].as_array().map(Vec::len), Some(1));
        assert!(c["Parameters"]["executionTimeout"][0].as_str().is_some());
    }
    let described = aws.ssm.calls("DescribeInstanceInformation");
    assert_eq!(described.len(), 1, "looked up once; the rollback reuses the ids");
    assert_eq!(described[0]["Filters"][0], serde_json::json!({"Key": "tag:role", "Values": ["web"]}));
    let regions: Vec<Option<String>> = aws.ssm.script().calls.iter().map(|c| c.region.clone()).collect();
    assert!(regions.iter().all(|r| r.as_deref() == Some("eu-west-1")), "{regions:?}");
}

#[test]
fn instance_ids_every_tag_must_match_and_none_found_fails_the_step() {
    let env = Env::new();
    let aws = Aws::start(&[]);
    fleet(&aws);
    let book = runbook(
        "",
        &format!(
            "    - id: by_id\n      run: echo on {{{{ target }}}}\n      targets: {{ via: ssm, hosts: [{WEB_3}] }}\n    - id: both_tags\n      run: echo tagged {{{{ target }}}}\n      targets: {{ via: ssm, tags: {{ role: web, env: [prod, staging] }}, max_concurrency: \"100%\" }}\n    - id: none\n      run: \"true\"\n      targets: {{ via: ssm, tags: {{ role: db }} }}\n"
        ),
    );
    let out = aws.run(&env, &book, &["--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    assert_eq!(doc["steps"][0]["targets"][0]["name"], WEB_3);
    let both: Vec<&str> =
        doc["steps"][1]["targets"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(both, [WEB_1, WEB_2]);
    assert_eq!(doc["steps"][2]["status"], "failed");
    assert_eq!(doc["steps"][2]["error"], "targets: SSM manages no instance tagged role=db");
}

#[test]
fn a_script_that_names_a_secret_is_refused_before_anything_is_sent() {
    let env = Env::new();
    let aws = Aws::start(&[]);
    fleet(&aws);
    let book = runbook(
        "    token: { type: secret, required: true }\n",
        &format!(
            "    - id: ok\n      run: echo \"token is $OPSBOOK_PARAM_TOKEN\"\n      targets: {{ via: ssm, hosts: [{WEB_1}] }}\n"
        ),
    );
    let out = aws.run(&env, &book, &["-p", "token=t0p-secret", "--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let t = &out.json()["steps"][0]["targets"][0];
    assert_eq!(t["status"], "failed");
    assert!(t["error"].as_str().unwrap().contains("may not carry secret parameter(s) token"), "{t}");
    assert!(aws.ssm.calls("SendCommand").is_empty(), "nothing went to SSM");
    // A script that names none runs, and its environment carries no secret.
    let book = runbook(
        "    token: { type: secret, required: true }\n    who: { type: string, default: ops }\n",
        &format!(
            "    - id: ok\n      run: echo \"hello $OPSBOOK_PARAM_WHO\"\n      targets: {{ via: ssm, hosts: [{WEB_1}] }}\n"
        ),
    );
    let out = aws.run(&env, &book, &["-p", "token=t0p-secret", "--output", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let sent: Vec<Value> = aws.ssm.calls("SendCommand");
    let command = sent.last().unwrap()["Parameters"]["commands"][0].as_str().unwrap().to_string();
    assert!(command.contains("export OPSBOOK_PARAM_WHO=ops") && !command.contains("t0p-secret"), "{command}");
    assert!(log_lines(&env).contains(&format!("[{WEB_1}] hello ops")));
}

#[test]
fn a_target_past_its_timeout_is_cancelled_in_ssm() {
    let env = Env::new();
    let aws = Aws::start(&[]);
    fleet(&aws);
    aws.ssm.script().documents.insert("AWS-RunShellScript".into(), shell_script(100_000));
    let book = runbook(
        "",
        &format!(
            "    - id: slow\n      run: sleep 1\n      timeout: 5s\n      targets: {{ via: ssm, hosts: [{WEB_1}] }}\n"
        ),
    );
    let out = aws.run(&env, &book, &["--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let t = &out.json()["steps"][0]["targets"][0];
    assert_eq!(t["status"], "timed_out", "{t}");
    let cancelled = aws.ssm.calls("CancelCommand");
    assert_eq!(cancelled.len(), 1, "the command was cancelled in SSM");
    assert_eq!(cancelled[0]["CommandId"], aws.ssm.script().commands[0].id.as_str());
}
