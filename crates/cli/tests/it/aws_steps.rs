//! AWS step kinds through the binary, against local doubles that speak each service's
//! real protocol (Lambda restJson1, SSM awsJson1.1, STS awsQuery), so opsbook's AWS client talks
//! to them.

use std::time::{Duration, Instant};

use opsbook_doubles::lambda::{self, Function, Lambda, Outcome};
use opsbook_doubles::secrets::{self, SecretsManager};
use opsbook_doubles::sns::{self, Sns};
use opsbook_doubles::ssm::{self, Automation, AutomationResult, Document, InstanceResult, Ssm};
use opsbook_doubles::sts::{self, Sts};
use opsbook_store::Store;
use serde_json::json;

use crate::support::{Env, Out, out, runbook};

/// The doubles a run talks to.
pub(crate) struct Aws {
    pub(crate) lambda: Lambda,
    pub(crate) ssm: Ssm,
    pub(crate) secrets: SecretsManager,
    pub(crate) sns: Sns,
    sts: Sts,
}

impl Aws {
    pub(crate) fn start(functions: &[(&str, Function)]) -> Aws {
        let script = lambda::Script {
            functions: functions.iter().map(|(n, f)| (n.to_string(), f.clone())).collect(),
            ..lambda::Script::default()
        };
        Aws {
            lambda: Lambda::start(script),
            ssm: Ssm::start(ssm::Script::default()),
            secrets: SecretsManager::start(secrets::Script::default()),
            sns: Sns::start(sns::Script::default()),
            sts: Sts::start(sts::Script::default()),
        }
    }

    /// `opsbook ARGS` pointed at the doubles, with example credentials and nothing read
    /// from the machine's AWS configuration.
    pub(crate) fn cmd(&self, env: &Env, args: &[&str]) -> std::process::Command {
        let mut cmd = env.cmd(args);
        cmd.env("AWS_ENDPOINT_URL_LAMBDA", &self.lambda.url)
            .env("AWS_ENDPOINT_URL_SSM", &self.ssm.url)
            .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &self.secrets.url)
            .env("AWS_ENDPOINT_URL_SNS", &self.sns.url)
            .env("AWS_ENDPOINT_URL_STS", &self.sts.url)
            .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", env.path("no-aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", env.path("no-aws-credentials"))
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN");
        cmd
    }

    /// `opsbook run test.yaml ARGS` with `book`, pointed at the doubles, with example
    /// credentials and nothing read from the machine's AWS configuration.
    pub(crate) fn run(&self, env: &Env, book: &str, extra: &[&str]) -> Out {
        env.write("test.yaml", book);
        let mut args = vec!["run", "test.yaml"];
        args.extend_from_slice(extra);
        out(self.cmd(env, &args).output().expect("run opsbook"))
    }
}

/// The step log lines of the newest execution.
pub(crate) fn log_lines(env: &Env) -> Vec<String> {
    let (e, _) = env.last();
    let s = env.store();
    let logs = s.block(s.store.logs(&opsbook_store::LogQuery { execution_id: e.id, ..Default::default() })).unwrap();
    logs.into_iter().map(|l| l.line).collect()
}

#[test]
fn lambda_payload_keeps_types_and_the_answer_becomes_outputs() {
    let check = Function::new(|event| {
        Outcome::Return(json!({ "healthy": true, "checked": event["environment"], "targets": [1, 2], "version": 2 }))
    })
    .logging(&["checking prod", "all targets healthy"]);
    let aws = Aws::start(&[("health-check-function", check)]);
    let env = Env::new();
    let book = runbook(
        "    environment: { type: string }\n    replicas: { type: integer }\n    token: { type: secret }\n",
        r#"    - id: pre_check
      aws_lambda:
        function: health-check-function
        payload:
          environment: "{{ params.environment }}"
          replicas: "{{ params.replicas }}"
          label: "env-{{ params.environment }}"
          token: "{{ params.token }}"
          nested: { list: [1, "{{ params.replicas + 1 }}"], "on": true }
      validate: [ { json: "$.healthy", equals: true }, { json: "$.targets[-1]", equals: 2 } ]
    - id: report
      run: echo "checked={{ steps.pre_check.outputs.checked }} healthy={{ steps.pre_check.outputs.healthy }}"
      validate: [ { output_contains: "checked=prod healthy=true" } ]
"#,
    );
    let o = aws.run(
        &env,
        &book,
        &["-p", "environment=prod", "-p", "replicas=3", "-p", "token=s3cr3t-value", "--output", "json"],
    );
    assert_eq!(o.code, 0, "{o:?}");
    let calls = aws.lambda.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call.function, "health-check-function");
    assert_eq!(
        call.event,
        json!({ "environment": "prod", "replicas": 3, "label": "env-prod", "token": "s3cr3t-value", "nested": { "list": [1, 4], "on": true } })
    );
    assert_eq!(call.invocation_type.as_deref(), Some("RequestResponse"));
    assert_eq!(call.log_type.as_deref(), Some("Tail"));
    assert_eq!(call.region.as_deref(), Some("us-east-1"));
    assert_eq!(call.access_key.as_deref(), Some("AKIDEXAMPLE"));

    let doc = o.json();
    let outputs = &doc["steps"][0]["outputs"];
    assert_eq!(outputs["healthy"], "true", "{doc}");
    assert_eq!(outputs["checked"], "prod");
    assert_eq!(outputs["targets"], "[1,2]");
    assert_eq!(doc["steps"][1]["status"], "succeeded", "{doc}");
    let (_, steps) = env.last();
    let rendered = steps[0].rendered.clone().unwrap_or_default();
    assert!(rendered.starts_with("aws_lambda health-check-function {"), "{rendered}");
    assert!(!rendered.contains("s3cr3t-value") && rendered.contains("***"), "the secret is masked: {rendered}");

    let lines = log_lines(&env);
    assert!(lines.iter().any(|l| l.starts_with("Lambda `health-check-function` answered in ")), "{lines:?}");
    assert!(lines.iter().any(|l| l == "all targets healthy"), "the tail log is in the step's log: {lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("START RequestId:")), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("s3cr3t-value")), "{lines:?}");
}

#[test]
fn a_function_error_fails_the_step_and_rolls_back() {
    let aws =
        Aws::start(&[("post-deployment-check", Function::raising("DeploymentCheckFailed", "3 targets unhealthy"))]);
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: deploy\n      run: touch deployed\n      rollback: { run: touch rolled-back }\n    - id: post_check\n      aws_lambda: { function: post-deployment-check }\n",
    );
    let o = aws.run(&env, &book, &["--output", "json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let doc = o.json();
    assert_eq!(doc["steps"][1]["status"], "failed");
    assert_eq!(
        doc["steps"][1]["error"],
        "Lambda function `post-deployment-check` failed (Unhandled): DeploymentCheckFailed: 3 targets unhealthy"
    );
    assert!(env.path("rolled-back").exists(), "the deploy step was rolled back");
    assert_eq!(aws.lambda.calls()[0].event, json!({}), "no payload sends an empty event");
}

#[test]
fn json_checks_fail_the_attempt_and_are_retried() {
    let aws = Aws::start(&[("check", Function::returning(json!({ "healthy": false, "reasons": ["db lag"] })))]);
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: pre_check\n      aws_lambda: { function: check }\n      validate: [ { json: \"$.healthy\", equals: true }, { json: \"$.missing\", equals: 1 } ]\n      retries: { count: 1, delay: 10ms }\n",
    );
    let o = aws.run(&env, &book, &["--output", "json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let doc = o.json();
    assert_eq!(
        doc["steps"][0]["error"],
        "validate: $.healthy is false, expected true; $.missing is missing from the result, expected 1"
    );
    assert_eq!(doc["steps"][0]["attempts"], 2);
    assert_eq!(aws.lambda.calls().len(), 2);
}

#[test]
fn a_lambda_validation_gets_the_result_and_decides() {
    let validator = Function::new(|event| {
        if event["result"]["version"] == 2 {
            Outcome::Return(json!(true))
        } else {
            Outcome::Return(
                json!({ "valid": false, "reason": format!("version {} is too old", event["result"]["version"]) }),
            )
        }
    });
    let aws = Aws::start(&[
        ("new", Function::returning(json!({ "version": 2 }))),
        ("old", Function::returning(json!({ "version": 1 }))),
        ("validator", validator),
        ("broken-validator", Function::raising("KeyError", "'result'")),
    ]);
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: fresh\n      aws_lambda: { function: new }\n      validate: [ { lambda: validator } ]\n    - id: stale\n      aws_lambda: { function: old }\n      validate: [ { lambda: validator } ]\n      required: false\n    - id: shell\n      run: echo 'version=3' >> \"$OPSBOOK_OUTPUT\"\n      validate: [ { lambda: broken-validator } ]\n      required: false\n",
    );
    let o = aws.run(&env, &book, &["--output", "json"]);
    let doc = o.json();
    assert_eq!(doc["steps"][0]["status"], "succeeded", "{doc}");
    assert_eq!(doc["steps"][1]["status"], "failed", "{doc}");
    assert_eq!(
        doc["steps"][1]["error"],
        "validate: the validation function `validator` refused the result: version 1 is too old"
    );
    assert_eq!(doc["steps"][2]["status"], "failed", "{doc}");
    assert_eq!(
        doc["steps"][2]["error"],
        "validate: the validation function `broken-validator` failed (Unhandled): KeyError: 'result'"
    );
    let calls: Vec<_> = aws.lambda.calls().into_iter().filter(|c| c.function.contains("validator")).collect();
    assert_eq!(calls.len(), 3, "{calls:?}");
    let (e, _) = crate::support::Env::last(&env);
    let first = &calls[0].event;
    assert_eq!(first["execution_id"], e.id);
    assert_eq!(first["runbook"], "test");
    assert_eq!(first["step"], "fresh");
    assert_eq!(first["kind"], "aws_lambda");
    assert_eq!(first["outputs"]["version"], "2");
    assert_eq!(first["result"], json!({ "version": 2 }));
    assert_eq!(calls[2].event["kind"], "run");
    assert_eq!(calls[2].event["exit_code"], 0);
    assert_eq!(calls[2].event["outputs"]["version"], "3");
}

#[test]
fn throttling_is_retried_with_backoff_and_denials_name_the_action() {
    let aws = Aws::start(&[
        ("check", Function::returning(json!({ "ok": true }))),
        ("secret-fn", Function::returning(json!(1))),
    ]);
    aws.lambda.script().throttle = 2;
    aws.lambda.script().denied = vec!["secret-fn".into()];
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: throttled\n      aws_lambda: { function: check }\n    - id: denied\n      aws_lambda: { function: secret-fn }\n      retries: { count: 2, delay: 10ms }\n      required: false\n    - id: missing\n      aws_lambda: { function: nope, qualifier: live }\n      retries: { count: 2, delay: 10ms }\n      required: false\n",
    );
    let o = aws.run(&env, &book, &["--output", "json"]);
    let doc = o.json();
    assert_eq!(doc["steps"][0]["status"], "succeeded", "{doc}");
    assert_eq!(doc["steps"][0]["attempts"], 1, "the client retried the throttled calls inside one attempt");
    let calls = aws.lambda.calls();
    assert_eq!(calls.iter().filter(|c| c.function == "check").count(), 3, "{calls:?}");

    let denied = doc["steps"][1]["error"].as_str().unwrap();
    assert!(
        denied.starts_with("access denied: allow `lambda:InvokeFunction` on function `secret-fn` for the credentials opsbook runs with (AccessDeniedException: User: "),
        "{denied}"
    );
    assert_eq!(doc["steps"][1]["attempts"], 1, "retrying cannot help a denial");
    assert_eq!(doc["steps"][2]["error"], "Lambda function `nope` (qualifier live) not found in us-east-1");
    assert_eq!(doc["steps"][2]["attempts"], 1);
    assert_eq!(calls.iter().find(|c| c.function == "nope").unwrap().qualifier.as_deref(), Some("live"));
}

#[test]
fn a_slow_function_times_the_step_out() {
    let aws = Aws::start(&[("slow", Function::returning(json!(1)).slow(Duration::from_secs(30)))]);
    let env = Env::new();
    let book = runbook("", "    - id: slow\n      aws_lambda: { function: slow }\n      timeout: 1s\n");
    let started = Instant::now();
    let o = aws.run(&env, &book, &["--output", "json"]);
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    let doc = o.json();
    assert_eq!(doc["steps"][0]["status"], "timed_out", "{doc}");
    assert_eq!(doc["steps"][0]["error"], "Lambda function `slow` did not answer within 1s");
}

#[test]
fn a_step_assumes_its_role_in_its_region() {
    let aws = Aws::start(&[("check", Function::returning(json!({ "ok": true })))]);
    aws.sts.script().denied = vec!["arn:aws:iam::123456789012:role/forbidden".into()];
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: cross_account\n      aws_lambda: { function: check, region: eu-west-1, role_arn: \"arn:aws:iam::123456789012:role/deployer\" }\n    - id: again\n      aws_lambda: { function: check, region: eu-west-1, role_arn: \"arn:aws:iam::123456789012:role/deployer\" }\n    - id: refused\n      aws_lambda: { function: check, role_arn: \"arn:aws:iam::123456789012:role/forbidden\" }\n",
    );
    let o = aws.run(&env, &book, &["--output", "json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let doc = o.json();
    let (e, _) = env.last();
    let assumed = aws.sts.calls();
    assert_eq!(assumed.len(), 2, "the role's credentials are reused: {assumed:?}");
    assert_eq!(assumed[0].role_arn, "arn:aws:iam::123456789012:role/deployer");
    assert_eq!(assumed[0].session_name, format!("opsbook-{}", e.id));
    assert_eq!(assumed[0].access_key.as_deref(), Some("AKIDEXAMPLE"), "assumed with the chain's credentials");
    let calls = aws.lambda.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for c in &calls {
        assert_eq!(c.access_key, assumed[0].issued, "signed with the role's credentials");
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
    }
    let refused = doc["steps"][2]["error"].as_str().unwrap();
    assert!(refused.starts_with("cannot assume role arn:aws:iam::123456789012:role/forbidden: "), "{refused}");
    assert_eq!(
        refused,
        "cannot assume role arn:aws:iam::123456789012:role/forbidden: AccessDenied: User: arn:aws:iam::123456789012:user/AKIDEXAMPLE is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/forbidden (the caller needs `sts:AssumeRole` on it, and the role's trust policy must allow the caller)"
    );
}

/// Credentials and the region from a profile of the standard chain: here a
/// `credential_process` (as aws-vault or a company's helper provides them), run once for
/// the two calls, whose keys sign them, in the profile's region.
#[test]
fn a_profile_s_credential_process_signs_the_calls_in_its_region() {
    let aws = Aws::start(&[("check", Function::returning(json!({ "ok": true })))]);
    let env = Env::new();
    let counter = env.path("process-runs");
    let helper = env.write(
        "creds.sh",
        &format!(
            "echo run >> '{}'\nprintf '%s' '{{\"Version\": 1, \"AccessKeyId\": \"AKIDPROCESS\", \"SecretAccessKey\": \"c2VjcmV0\", \"SessionToken\": \"tok\", \"Expiration\": \"2099-01-01T00:00:00Z\"}}'\n",
            counter.display()
        ),
    );
    let config = env.write(
        "aws-config",
        &format!("[profile ops]\nregion = eu-west-2\ncredential_process = sh {}\n", helper.display()),
    );
    env.write(
        "test.yaml",
        &runbook("", "    - id: one\n      aws_lambda: { function: check }\n    - id: two\n      aws_lambda: { function: check }\n"),
    );
    let mut cmd = aws.cmd(&env, &["run", "test.yaml"]);
    cmd.env("AWS_PROFILE", "ops")
        .env("AWS_CONFIG_FILE", &config)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_REGION");
    let o = out(cmd.output().unwrap());
    assert_eq!(o.code, 0, "{o:?}");
    let calls = aws.lambda.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for c in &calls {
        assert_eq!(c.access_key.as_deref(), Some("AKIDPROCESS"), "signed with the process's keys");
        assert_eq!(c.region.as_deref(), Some("eu-west-2"), "in the profile's region");
    }
    let runs = std::fs::read_to_string(&counter).unwrap();
    assert_eq!(runs.lines().count(), 1, "the credentials are kept until they expire");
}

fn instance(success: bool, code: i32, output: &str) -> InstanceResult {
    InstanceResult { success, code, output: output.to_string() }
}

/// The design's deployment: an SSM backup on one instance with an SSM restore on the web
/// fleet as its rollback, then a deployment that fails on one instance of two.
#[test]
fn ssm_commands_report_each_instance_and_roll_back_through_ssm() {
    let aws = Aws::start(&[]);
    {
        let mut s = aws.ssm.script();
        s.tags.insert("role=web".into(), vec!["i-0abc".into(), "i-0def".into()]);
        s.documents.insert(
            "backup-application".into(),
            Document::new(2, |i, p| {
                instance(true, 0, &format!("backed up {} on {i}", p["app_name"][0].as_str().unwrap()))
            }),
        );
        s.documents.insert(
            "deploy-application".into(),
            Document::new(1, |i, _| {
                if i == "i-0def" {
                    instance(false, 1, "disk full\nno space left")
                } else {
                    instance(true, 0, "deployed")
                }
            }),
        );
        s.documents
            .insert("restore-application".into(), Document::new(1, |i, _| instance(true, 0, &format!("restored {i}"))));
    }
    let env = Env::new();
    let book = runbook(
        "    application_name: { type: string }\n",
        r#"    - id: backup
      aws_ssm_command:
        document: backup-application
        targets: { instance_ids: [i-0abc] }
        parameters: { app_name: ["{{ params.application_name }}"] }
        max_concurrency: "50%"
        max_errors: 0
      rollback:
        aws_ssm_command: { document: restore-application, targets: { tags: { role: web } }, parameters: { app_name: "{{ params.application_name }}" } }
    - id: deploy
      aws_ssm_command: { document: deploy-application, targets: { tags: { role: web } } }
"#,
    );
    let o = aws.run(&env, &book, &["-p", "application_name=shop", "--output", "json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let doc = o.json();
    assert_eq!(doc["steps"][0]["status"], "succeeded", "{doc}");
    let backup = &doc["steps"][0]["outputs"];
    assert_eq!(backup["status"], "Success");
    assert_eq!(backup["instances"], r#"{"i-0abc":"Success"}"#);
    let cmd_id = backup["command_id"].as_str().unwrap().to_string();
    let deploy = doc["steps"][1]["error"].as_str().unwrap();
    assert!(
        deploy.starts_with("command ")
            && deploy.ends_with(" ended Failed (Failed): 1 of 2 instances did not succeed: i-0def Failed, exit 1"),
        "{deploy}"
    );
    assert_eq!(doc["rollback"]["status"], "succeeded", "{doc}");

    let sent = aws.ssm.calls("SendCommand");
    assert_eq!(sent.len(), 3, "backup, deploy, restore: {sent:?}");
    assert_eq!(sent[0]["DocumentName"], "backup-application");
    assert_eq!(sent[0]["InstanceIds"], json!(["i-0abc"]));
    assert_eq!(sent[0]["Parameters"], json!({ "app_name": ["shop"] }));
    assert_eq!(sent[0]["MaxConcurrency"], "50%");
    assert_eq!(sent[0]["MaxErrors"], "0");
    assert!(sent[0]["Comment"].as_str().unwrap().starts_with("opsbook "), "{sent:?}");
    assert_eq!(sent[2]["DocumentName"], "restore-application");
    assert_eq!(sent[2]["Targets"], json!([{ "Key": "tag:role", "Values": ["web"] }]));
    assert_eq!(sent[2]["Parameters"], json!({ "app_name": ["shop"] }));
    assert!(aws.ssm.calls("ListCommandInvocations").iter().all(|c| c["Details"] == true));

    let lines = log_lines(&env);
    for want in [
        format!("SendCommand `backup-application` to i-0abc: command {cmd_id}"),
        "i-0abc: Success, exit 0".to_string(),
        "[i-0abc] backed up shop on i-0abc".to_string(),
        "i-0def: Failed, exit 1".to_string(),
        "[i-0def] disk full".to_string(),
        "[i-0def] no space left".to_string(),
        "[i-0def] restored i-0def".to_string(),
    ] {
        assert!(lines.contains(&want), "{want:?} in {lines:?}");
    }
}

#[test]
fn ssm_command_failures_say_what_to_fix() {
    let aws = Aws::start(&[]);
    {
        let mut s = aws.ssm.script();
        s.documents.insert("ok-doc".into(), Document::new(1, |_, _| instance(true, 0, "")));
        s.unmanaged.push("i-0dead".into());
    }
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: missing\n      aws_ssm_command: { document: nope, targets: { instance_ids: [i-1] } }\n      required: false\n    - id: unmanaged\n      aws_ssm_command: { document: ok-doc, targets: { instance_ids: [i-0dead] } }\n      required: false\n    - id: nobody\n      aws_ssm_command: { document: ok-doc, targets: { tags: { role: [nobody, none] } } }\n      required: false\n",
    );
    let doc = aws.run(&env, &book, &["--output", "json"]).json();
    assert_eq!(
        doc["steps"][0]["error"],
        "SSM document `nope` not found or not usable (Document with name nope does not exist.)"
    );
    assert_eq!(
        doc["steps"][1]["error"],
        "SSM cannot run document `ok-doc` on these instances: not managed, not running, or unknown (Instances [[i-0dead]] not in a valid state for account 123456789012)"
    );
    let nobody = doc["steps"][2]["error"].as_str().unwrap();
    assert!(nobody.ends_with(" ran on no instance: nothing matched tag:role=nobody|none"), "{nobody}");

    aws.ssm.script().denied = vec!["SendCommand".into()];
    let doc = aws.run(&env, &book, &["--output", "json"]).json();
    let denied = doc["steps"][1]["error"].as_str().unwrap();
    assert!(
        denied.starts_with("access denied: allow `ssm:SendCommand` on document `ok-doc` for the credentials opsbook runs with (AccessDeniedException: User: "),
        "{denied}"
    );
}

#[test]
fn a_command_past_its_timeout_or_cancelled_is_cancelled_in_ssm() {
    let aws = Aws::start(&[]);
    aws.ssm.script().documents.insert("slow".into(), Document::new(100_000, |_, _| instance(true, 0, "")));
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: slow\n      aws_ssm_command: { document: slow, targets: { instance_ids: [i-1] } }\n      timeout: 5s\n",
    );
    let doc = aws.run(&env, &book, &["--output", "json"]).json();
    assert_eq!(doc["steps"][0]["status"], "timed_out", "{doc}");
    let id = aws.ssm.script().commands[0].id.clone();
    assert_eq!(doc["steps"][0]["error"], format!("command {id} did not finish within 5s; CancelCommand sent"));
    assert_eq!(aws.ssm.calls("CancelCommand"), vec![json!({ "CommandId": id })]);
    assert!(aws.ssm.script().commands[0].cancelled);

    // Ctrl-C while the command runs: cancelled in SSM as well.
    let book =
        runbook("", "    - id: slow\n      aws_ssm_command: { document: slow, targets: { instance_ids: [i-2] } }\n");
    env.write("test.yaml", &book);
    let child = aws
        .cmd(&env, &["run", "test.yaml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    crate::support::wait_until(
        || aws.ssm.calls("ListCommands").len() > 1 && aws.ssm.script().commands.len() == 2,
        "the second command runs",
    );
    crate::support::signal(&child, nix::sys::signal::Signal::SIGINT);
    let o = out(child.wait_with_output().unwrap());
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("cancelled"), "{o:?}");
    let second = aws.ssm.script().commands[1].id.clone();
    assert_eq!(aws.ssm.calls("CancelCommand").last().unwrap()["CommandId"], second.as_str());
    let (_, steps) = env.last();
    assert_eq!(steps[0].status, opsbook_core::StepStatus::Cancelled);
    assert_eq!(steps[0].error.as_deref(), Some(format!("cancelled; CancelCommand sent for command {second}").as_str()));
}

#[test]
fn ssm_automations_give_outputs_fail_with_the_reason_and_stop_on_timeout() {
    let aws = Aws::start(&[]);
    {
        let mut s = aws.ssm.script();
        s.automations.insert(
            "AWS-RestartEC2Instance".into(),
            Automation::new(2, |p| {
                AutomationResult::Success(
                    [
                        ("RestartedIds".to_string(), vec![p["InstanceId"][0].as_str().unwrap().to_string()]),
                        ("Checks".to_string(), vec!["a".into(), "b".into()]),
                    ]
                    .into(),
                )
            }),
        );
        s.automations.insert(
            "Broken".into(),
            Automation::new(1, |_| AutomationResult::Failed("Step fails when it is verifying the instance.".into())),
        );
        s.automations
            .insert("Forever".into(), Automation::new(100_000, |_| AutomationResult::Success(Default::default())));
    }
    let env = Env::new();
    let book = runbook(
        "",
        r#"    - id: patch
      aws_ssm_automation: { document: AWS-RestartEC2Instance, parameters: { InstanceId: ["i-0abc"] } }
    - id: report
      run: echo "restarted {{ steps.patch.outputs.RestartedIds }} checks {{ steps.patch.outputs.Checks }}"
      validate: [ { output_contains: 'restarted i-0abc checks ["a","b"]' } ]
    - id: broken
      aws_ssm_automation: { document: Broken }
      required: false
    - id: forever
      aws_ssm_automation: { document: Forever }
      timeout: 5s
"#,
    );
    let o = aws.run(&env, &book, &["--output", "json"]);
    let doc = o.json();
    assert_eq!(doc["steps"][0]["status"], "succeeded", "{doc}");
    assert_eq!(doc["steps"][1]["status"], "succeeded", "{doc}");
    let execs = aws.ssm.script().executions.clone();
    assert_eq!(doc["steps"][0]["outputs"]["automation_execution_id"], execs[0].id.as_str());
    assert_eq!(
        doc["steps"][2]["error"],
        format!("automation {} ended Failed: Step fails when it is verifying the instance.", execs[1].id)
    );
    assert_eq!(doc["steps"][3]["status"], "timed_out");
    assert_eq!(
        doc["steps"][3]["error"],
        format!("automation {} did not finish within 5s; StopAutomationExecution sent", execs[2].id)
    );
    assert!(execs[2].stopped || aws.ssm.script().executions[2].stopped);
    let started = aws.ssm.calls("StartAutomationExecution");
    assert_eq!(started[0]["Parameters"], json!({ "InstanceId": ["i-0abc"] }));
    let token = started[0]["ClientToken"].as_str().unwrap();
    assert_eq!(token.len(), 36, "a UUID-shaped idempotency token: {token}");
    assert_eq!(
        aws.ssm.calls("StopAutomationExecution"),
        vec![json!({ "AutomationExecutionId": execs[2].id, "Type": "Cancel" })]
    );
    let lines = log_lines(&env);
    assert!(lines.contains(&format!("automation {}: InProgress (step run)", execs[0].id)), "{lines:?}");
    assert!(lines.contains(&format!("automation {}: Success (step run)", execs[0].id)), "{lines:?}");
}

/// examples/aws-web-app-deploy against the doubles its script uses: deployed, then with a
/// failing post-deployment check, rolled back through SSM.
#[test]
fn the_aws_example_deploys_and_rolls_back_through_ssm() {
    use opsbook_doubles::scenario::{DEPLOY_HOST, INSTANCES, web_app_deploy};
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/aws-web-app-deploy/runbook.yaml");
    let run = |fail: bool| {
        let doubles = web_app_deploy(fail);
        let env = Env::new();
        let mut cmd = env.cmd(&[
            "run",
            example,
            "-p",
            "application_name=shop",
            "-p",
            "version=2.4.1",
            "-p",
            "environment=staging",
            "--output",
            "json",
        ]);
        cmd.env("AWS_CONFIG_FILE", env.path("none"))
            .env("AWS_SHARED_CREDENTIALS_FILE", env.path("none"))
            .env_remove("AWS_PROFILE");
        for (k, v) in doubles.env() {
            cmd.env(k, v);
        }
        let o = out(cmd.output().unwrap());
        (doubles, env, o)
    };

    let (doubles, _env, o) = run(false);
    assert_eq!(o.code, 0, "{o:?}");
    let doc = o.json();
    let steps: Vec<&str> = doc["steps"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(steps, vec!["succeeded"; 5], "{doc}");
    let sent = doubles.ssm.calls("SendCommand");
    assert_eq!(sent.len(), 2, "backup and deploy: {sent:?}");
    assert_eq!(
        sent[0]["Targets"],
        json!([{ "Key": "tag:app", "Values": ["shop"] }, { "Key": "tag:env", "Values": ["staging"] }])
    );
    assert_eq!(sent[1]["InstanceIds"], json!([DEPLOY_HOST]));
    let command = sent[1]["Parameters"]["commands"][0].as_str().unwrap();
    assert!(
        command.starts_with("aws deploy create-deployment --application-name shop --deployment-group-name staging"),
        "{command}"
    );
    let backup = doubles.ssm.script().commands[0].instances.clone();
    assert_eq!(backup, INSTANCES.map(str::to_string).to_vec());
    assert_eq!(doc["steps"][3]["outputs"]["healthy_targets"], "2");

    let (doubles, env, o) = run(true);
    assert_eq!(o.code, 1, "{o:?}");
    let doc = o.json();
    assert_eq!(doc["steps"][3]["status"], "failed");
    assert_eq!(
        doc["steps"][3]["error"],
        "validate: $.healthy is false, expected true; the validation function `deployment-validator` refused the result: 0 of 2 targets healthy"
    );
    assert_eq!(doc["steps"][3]["attempts"], 3, "retried as the runbook says");
    assert_eq!(doc["rollback"]["status"], "succeeded", "{doc}");
    let sent = doubles.ssm.calls("SendCommand");
    let restore = sent.last().unwrap();
    assert_eq!(restore["DocumentName"], "restore-application");
    let backup_id = doubles.ssm.script().commands[0].id.clone();
    assert_eq!(restore["Parameters"]["backup_command"], json!([backup_id]));
    let lines = log_lines(&env);
    assert!(
        lines.iter().any(|l| l
            == &format!("[{}] restored shop on {} from the backup of command {backup_id}", INSTANCES[0], INSTANCES[0])),
        "{lines:?}"
    );
}

/// A first cancel stops the step and starts the rollbacks: an AWS rollback runs (only a
/// second cancel would stop it).
#[test]
fn a_first_cancel_runs_aws_rollbacks() {
    let aws = Aws::start(&[]);
    aws.ssm
        .script()
        .documents
        .insert("restore".into(), Document::new(2, |i, _| instance(true, 0, &format!("restored {i}"))));
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: change\n      run: \"true\"\n      rollback: { aws_ssm_command: { document: restore, targets: { instance_ids: [i-1] } } }\n    - id: slow\n      run: touch started && sleep 30\n",
    );
    env.write("test.yaml", &book);
    let child = aws
        .cmd(&env, &["run", "test.yaml", "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    env.wait_for_file("started");
    crate::support::signal(&child, nix::sys::signal::Signal::SIGINT);
    let o = out(child.wait_with_output().unwrap());
    assert_eq!(o.code, 1, "{o:?}");
    let doc = o.json();
    assert_eq!(doc["status"], "cancelled", "{doc}");
    assert_eq!(doc["rollback"]["status"], "succeeded", "{doc}");
    assert_eq!(aws.ssm.calls("SendCommand").len(), 1);
    assert!(aws.ssm.calls("CancelCommand").is_empty());
    assert!(log_lines(&env).contains(&"[i-1] restored i-1".to_string()));
}
