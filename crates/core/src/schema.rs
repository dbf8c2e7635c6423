//! The JSON Schema of the runbook format, for editors (`opsbook schema`): JSON Schema
//! draft 7, which the YAML language server (VS Code's YAML extension), IntelliJ and most
//! validators read, with every definition under the name, title, description and
//! examples a runbook author sees on hover, rather than the parser's type names.

use serde_json::{Map, Value, json};

/// A definition as authors see it: the parser's type, its name in the schema, a title,
/// what it is, and an example (JSON text).
struct Shown {
    internal: &'static str,
    name: &'static str,
    title: &'static str,
    description: &'static str,
    example: &'static str,
}

const fn shown(
    internal: &'static str,
    name: &'static str,
    title: &'static str,
    description: &'static str,
    example: &'static str,
) -> Shown {
    Shown { internal, name, title, description, example }
}

const SHOWN: &[Shown] = &[
    shown(
        "RawMetadata",
        "Metadata",
        "Runbook metadata",
        "Who and what the runbook is: its name (also its registry name), type, semantic version, lifecycle status, owner, tags and review cadence.",
        r#"{"name": "web-app-deploy", "type": "deployment", "version": "1.2.0", "owner": "team-web", "tags": ["web"]}"#,
    ),
    shown(
        "RunbookType",
        "RunbookType",
        "Runbook type",
        "What kind of operation the runbook performs.",
        r#""deployment""#,
    ),
    shown(
        "LifecycleStatus",
        "LifecycleStatus",
        "Lifecycle status",
        "Where the runbook is in its life: a draft runs only with --allow-draft (or as a dry run), active and deprecated ones run (deprecated with a warning), archived ones never.",
        r#""active""#,
    ),
    shown(
        "RawReview",
        "Review",
        "Review cadence",
        "How often the runbook must be reviewed, and when it last was; an overdue review is reported.",
        r#"{"every": "90d", "last_reviewed": "2026-11-30"}"#,
    ),
    shown(
        "Duration",
        "Duration",
        "Duration",
        "A length of time: a number with a unit (ms, s, m, h, d), or several (1h30m).",
        r#""30s""#,
    ),
    shown(
        "RawSpec",
        "Spec",
        "Runbook body",
        "What the runbook takes and does: prerequisites, parameters, what a failure does, the steps, and the schedules and triggers that start it on a server.",
        r#"{"parameters": {"version": {"type": "string", "required": true}}, "steps": [{"id": "deploy", "run": "./deploy.sh {{ params.version }}"}]}"#,
    ),
    shown(
        "RawPrerequisite",
        "Prerequisite",
        "Prerequisite",
        "Something that must hold before any step runs: shown to the operator, and checked by a command when `check` is set.",
        r#"{"description": "Build artifact exists", "check": {"run": "test -f app.tar"}}"#,
    ),
    shown(
        "RawCheck",
        "PrerequisiteCheck",
        "Prerequisite check",
        "A command that must exit 0 for the prerequisite to hold.",
        r#"{"run": "test -f app.tar", "timeout": "10s"}"#,
    ),
    shown(
        "Shell",
        "Shell",
        "Shell",
        "The shell a `run` script runs in: sh (default) or bash (with pipefail).",
        r#""bash""#,
    ),
    shown(
        "ParamSpec",
        "Parameter",
        "Parameter",
        "A typed, validated input of the runbook, given with `-p name=value` (or the API's params). Secrets are masked everywhere.",
        r#"{"type": "enum", "values": ["staging", "production"], "required": true, "description": "Where to deploy"}"#,
    ),
    shown(
        "ParamType",
        "ParameterType",
        "Parameter type",
        "The type a parameter's value is checked against.",
        r#""string""#,
    ),
    shown(
        "OnFailure",
        "OnFailure",
        "On failure",
        "What a failed step does to the run: roll back the steps that succeeded (default), or stop where it is.",
        r#""rollback""#,
    ),
    shown(
        "RawStep",
        "Step",
        "Step",
        "One step of the runbook. Exactly one kind is set (run, http, sleep, approval, manual, gate, aws_lambda, aws_ssm_command, aws_ssm_automation); each step has a timeout, retries, checks of its result and an optional rollback.",
        r#"{"id": "deploy", "run": "./deploy.sh {{ params.version }}", "timeout": "10m", "retries": {"count": 2, "delay": "10s"}, "rollback": {"run": "./rollback.sh"}}"#,
    ),
    shown(
        "HttpSpec",
        "HttpRequest",
        "HTTP request step",
        "An HTTP request whose status (and body) must be as expected.",
        r#"{"url": "https://shop.example/health", "expect_status": [200], "expect_body_contains": "ok"}"#,
    ),
    shown("Method", "HttpMethod", "HTTP method", "The request's method.", r#""GET""#),
    shown(
        "ApprovalSpec",
        "Approval",
        "Approval step",
        "A pause until enough people approve (or one rejects): named approvers or roles, how many, and for how long.",
        r#"{"approvers": ["role:approver"], "min_approvals": 2, "timeout": "4h", "message": "Deploy {{ params.version }} to production?"}"#,
    ),
    shown(
        "ManualSpec",
        "ManualStep",
        "Manual step",
        "Something a person does by hand and confirms (opsbook confirm, or the web page), with a checklist.",
        r#"{"instructions": "Drain the load balancer in the console", "checklist": ["Traffic at zero"], "timeout": "1h"}"#,
    ),
    shown(
        "GateStepSpec",
        "Gate",
        "Health gate step",
        "A health gate: a gate defined in the gates file (`use`) or sources given here; a block waits (and resumes by itself once clear) or fails, as `on_blocked` says.",
        r#"{"use": "prod", "on_blocked": "wait", "max_wait": "2h", "poll": "1m", "recheck": "between_steps"}"#,
    ),
    shown(
        "Source",
        "GateSource",
        "Gate source",
        "One place a gate asks: AWS Health, a status page, Alertmanager, freeze windows, an HTTP check or a command.",
        r#"{"statuspage": {"url": "https://www.githubstatus.com", "components": ["Actions"], "min_impact": "major"}}"#,
    ),
    shown(
        "AwsHealth",
        "AwsHealthSource",
        "AWS Health source",
        "Open AWS Health events (DescribeEvents) in the given regions and services block the gate.",
        r#"{"regions": ["us-east-1", "global"], "services": ["EC2", "ELASTICLOADBALANCING"]}"#,
    ),
    shown(
        "Statuspage",
        "StatuspageSource",
        "Status page source",
        "An Atlassian Statuspage: an incident at or above `min_impact` on the named components blocks.",
        r#"{"url": "https://www.githubstatus.com", "components": ["Actions"], "min_impact": "major"}"#,
    ),
    shown("Impact", "Impact", "Incident impact", "How bad a status page incident is.", r#""major""#),
    shown(
        "Alertmanager",
        "AlertmanagerSource",
        "Alertmanager source",
        "Any active, unsilenced alert matching the matchers blocks.",
        r#"{"url": "http://alertmanager:9093", "matchers": ["severity=\"critical\"", "service=~\"web|api\""]}"#,
    ),
    shown(
        "Freeze",
        "FreezeSource",
        "Freeze source",
        "Change freezes: recurring windows and date ranges during which the gate blocks.",
        r#"{"windows": [{"start": "0 17 * * FRI", "duration": "63h", "timezone": "Europe/Berlin", "reason": "weekend"}], "dates": ["2026-12-24/2026-12-27"]}"#,
    ),
    shown(
        "FreezeWindow",
        "FreezeWindow",
        "Freeze window",
        "A recurring freeze: it starts at a cron time in a time zone and lasts `duration`.",
        r#"{"start": "0 17 * * FRI", "duration": "63h", "timezone": "Europe/Berlin", "reason": "weekend freeze"}"#,
    ),
    shown(
        "HttpCheck",
        "HttpSource",
        "HTTP source",
        "An HTTP endpoint that must answer an expected status (and JSON) for the gate to be clear.",
        r#"{"url": "https://slo.example/budget", "expect_status": [200], "expect_json": {"path": "$.status", "equals": "ok"}}"#,
    ),
    shown(
        "JsonExpectation",
        "JsonExpectation",
        "JSON expectation",
        "A JSON path in the answer and the value it must equal.",
        r#"{"path": "$.status", "equals": "ok"}"#,
    ),
    shown(
        "CommandCheck",
        "CommandSource",
        "Command source",
        "A command: exit 0 is clear, 1 is blocked (its first output line says why), anything else is unknown.",
        r#"{"run": "./no-incident.sh"}"#,
    ),
    shown(
        "FailMode",
        "FailMode",
        "Fail mode",
        "What a source that cannot be read means: closed blocks (default), open lets the deployment go.",
        r#""closed""#,
    ),
    shown(
        "OnBlocked",
        "OnBlocked",
        "On blocked",
        "What a blocked gate step does: wait until clear (within max_wait), or fail.",
        r#""wait""#,
    ),
    shown(
        "Recheck",
        "Recheck",
        "Recheck",
        "Check the gate again before every later step, holding the run while it blocks.",
        r#""between_steps""#,
    ),
    shown(
        "LambdaSpec",
        "AwsLambda",
        "AWS Lambda step",
        "One synchronous Lambda Invoke; a function error fails the attempt, the answer becomes the step's outputs.",
        r#"{"function": "smoke-test", "payload": {"version": "{{ params.version }}"}, "region": "eu-west-1"}"#,
    ),
    shown(
        "SsmCommandSpec",
        "AwsSsmCommand",
        "AWS SSM Run Command step",
        "SendCommand of an SSM document to instances, waited on until every instance ends, with rate control.",
        r#"{"document": "AWS-RunShellScript", "targets": {"tags": {"role": ["web"]}}, "parameters": {"commands": ["systemctl restart app"]}, "max_concurrency": "50%", "max_errors": "0"}"#,
    ),
    shown(
        "SsmTargets",
        "SsmTargets",
        "SSM targets",
        "The instances an SSM command goes to: ids, or tags.",
        r#"{"tags": {"role": ["web"]}}"#,
    ),
    shown(
        "SsmAutomationSpec",
        "AwsSsmAutomation",
        "AWS SSM Automation step",
        "StartAutomationExecution of an Automation runbook, waited on until it ends.",
        r#"{"document": "AWS-RestartEC2Instance", "parameters": {"InstanceId": ["i-0abc"]}}"#,
    ),
    shown(
        "RawParallel",
        "Parallel",
        "Parallel branches",
        "`run` steps side by side, at most `max` at a time, each with its own id, timeout, retries, checks, log and rollback; `fail: fast` stops the others at the first failure, `fail: all` lets every branch run.",
        r#"{"max": 3, "fail": "fast", "steps": [{"id": "cache_eu", "run": "./warm.sh eu"}, {"id": "cache_us", "run": "./warm.sh us"}]}"#,
    ),
    shown(
        "RawCall",
        "RunbookCall",
        "Call a runbook",
        "Run another runbook as a child execution of its own (its own record, approvals, gates and rollbacks): `file` (relative to this runbook) or `name` (published, with a semver `version` requirement). Its parameters are templates; its steps' outputs become this step's outputs.",
        r#"{"file": "./db-migrate.yaml", "params": {"db": "{{ params.db }}"}}"#,
    ),
    shown(
        "ParallelFailMode",
        "ParallelFailMode",
        "When a branch fails",
        "`fast`: the others are cancelled and no new branch starts; `all`: every branch runs, then the step fails.",
        r#""fast""#,
    ),
    shown(
        "TargetsSpec",
        "Targets",
        "Targets",
        "Run the step once per target (host), here (`via: local`) or over SSH (`via: ssh`), at most `max_concurrency` at a time; once more than `max_errors` failed, no new target starts and the step fails. The rollback runs on the targets the step succeeded on.",
        r#"{"hosts": ["web-1", "web-2", "deploy@web-3:2222"], "via": "ssh", "max_concurrency": 2, "max_errors": 0}"#,
    ),
    shown(
        "Via",
        "TargetsVia",
        "How targets are reached",
        "`local`: here, once per target; `ssh`: on the target, over the system OpenSSH client.",
        r#""ssh""#,
    ),
    shown(
        "AmountText",
        "CountOrPercent",
        "Count or percentage",
        "A number of targets, or a percentage of them.",
        r#""25%""#,
    ),
    shown(
        "SshSettings",
        "SshSettings",
        "SSH settings",
        "How opsbook connects to targets over SSH: host keys always checked against known_hosts, no password prompts (keys or the agent), one connection per host reused.",
        r#"{"user": "deploy", "port": 22, "identity_file": "keys/deploy", "known_hosts": "known_hosts", "connect_timeout": "10s"}"#,
    ),
    shown(
        "Retries",
        "Retries",
        "Retries",
        "Extra attempts after a failed one, with a delay multiplied by `backoff` each time (up to `max_delay`).",
        r#"{"count": 3, "delay": "5s", "backoff": 2.0, "max_delay": "1m"}"#,
    ),
    shown(
        "Validation",
        "Validation",
        "Result check",
        "A check of a finished attempt; a failed check fails the attempt: exit code, output text or pattern, a JSON value, or a Lambda function's verdict.",
        r#"{"output_contains": "backup complete"}"#,
    ),
    shown(
        "ExitCodes",
        "ExitCodes",
        "Exit codes",
        "The exit code (or list of codes) that counts as success.",
        r#"[0, 3]"#,
    ),
    shown(
        "RawRollback",
        "Rollback",
        "Rollback",
        "What undoes a step that succeeded, when a later one fails (or on `opsbook rollback`): a script, an AWS call or a manual step.",
        r#"{"run": "./restore.sh {{ steps.backup.outputs.backup_dir }}", "timeout": "5m"}"#,
    ),
    shown(
        "RawSchedule",
        "Schedule",
        "Schedule",
        "A cron schedule on which `opsbook serve` starts the runbook, with its params and what to do about overlaps and missed runs.",
        r#"{"cron": "0 3 * * *", "timezone": "Europe/Paris", "params": {"database": "orders"}, "overlap": "skip", "missed": "run_once"}"#,
    ),
    shown(
        "Overlap",
        "Overlap",
        "Overlap",
        "What a due run does when the previous one is still going: skip it, or queue it.",
        r#""skip""#,
    ),
    shown(
        "Missed",
        "Missed",
        "Missed runs",
        "What happens to runs missed while the server was down: skip them, or run once.",
        r#""run_once""#,
    ),
    shown(
        "RawTrigger",
        "Trigger",
        "Trigger",
        "An event (EventBridge, a webhook) that starts the runbook through POST /api/v1/triggers/NAME, authenticated by a token or an HMAC signature, its params read from the event.",
        r#"{"name": "on-alarm", "token_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "params": {"service": "$.detail.service"}}"#,
    ),
    shown(
        "RawTest",
        "TestCase",
        "Test case",
        "A test of the runbook (`opsbook test`): params, what each step does instead of running (mocks), and what the run must come to.",
        r#"{"name": "a failed deploy rolls back", "params": {"version": "1.2.0"}, "mocks": {"deploy": {"exit_code": 1}}, "expect": {"status": "failed", "rollback_order": ["backup"]}}"#,
    ),
    shown(
        "StepMock",
        "StepMock",
        "Step mock",
        "What a step does in a test instead of running: its exit code, output, outputs, an HTTP or AWS answer, or a decision.",
        r#"{"exit_code": 0, "stdout": "backup complete", "outputs": {"backup_dir": "/tmp/b"}}"#,
    ),
    shown(
        "HttpMock",
        "HttpMock",
        "HTTP mock",
        "The answer an http step gets in a test.",
        r#"{"status": 200, "body": "ok"}"#,
    ),
    shown(
        "AwsMock",
        "AwsMock",
        "AWS mock",
        "The answer (or error) an AWS step gets in a test.",
        r#"{"response": {"StatusCode": 200}}"#,
    ),
    shown(
        "MockResult",
        "MockResult",
        "Mocked attempt",
        "The result of one attempt of a run, http or AWS step (or of a rollback) in a test.",
        r#"{"exit_code": 1, "stderr": "connection refused"}"#,
    ),
    shown("GateVerdict", "GateVerdict", "Gate verdict", "What a gate says in a test.", r#""blocked""#),
    shown(
        "ApprovalAnswer",
        "ApprovalAnswer",
        "Approval answer",
        "How an approval step is decided in a test.",
        r#""approved""#,
    ),
    shown("ManualAnswer", "ManualAnswer", "Manual answer", "How a manual step is confirmed in a test.", r#""done""#),
    shown(
        "Expect",
        "TestExpectation",
        "Test expectation",
        "What a test's run must come to; everything named is checked, nothing else.",
        r#"{"status": "succeeded", "ran": ["backup", "deploy"], "outputs": {"deploy": {"release_dir": "/srv/app/1.2.0"}}}"#,
    ),
];

/// JSON Schema (draft 7) of the runbook format.
pub fn json_schema() -> Value {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let schema = generator.into_root_schema_for::<crate::document::RawRunbook>();
    let mut schema = serde_json::to_value(schema).expect("a JSON schema always serializes");
    present(&mut schema);
    schema
}

/// Renames the definitions as authors know them (and every reference to them), and
/// gives each its title, description and examples.
fn present(schema: &mut Value) {
    let Some(Value::Object(defs)) = schema.get_mut("definitions").map(std::mem::take) else { return };
    let mut shown_defs = Map::new();
    for (internal, mut def) in defs {
        let Some(s) = SHOWN.iter().find(|s| s.internal == internal) else {
            // Caught by the tests: every definition is named for authors.
            shown_defs.insert(internal, def);
            continue;
        };
        if let Value::Object(d) = &mut def {
            d.insert("title".into(), json!(s.title));
            d.insert("description".into(), json!(s.description));
            let example: Value = serde_json::from_str(s.example).expect("the examples are JSON");
            d.insert("examples".into(), json!([example]));
        }
        shown_defs.insert(s.name.to_string(), def);
    }
    schema["definitions"] = Value::Object(shown_defs);
    rename_refs(schema);
}

fn rename_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref")
                && let Some(internal) = r.strip_prefix("#/definitions/")
                && let Some(s) = SHOWN.iter().find(|s| s.internal == internal)
            {
                *r = format!("#/definitions/{}", s.name);
            }
            m.values_mut().for_each(rename_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(rename_refs),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    /// Draft 7 (what the YAML language server reads); every definition under an author's
    /// name with a title, a description and an example; every reference resolves.
    #[test]
    fn definitions_are_named_titled_and_exemplified() {
        let schema = json_schema();
        assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
        let defs = schema["definitions"].as_object().expect("definitions");
        assert!(defs.len() >= 40, "{}", defs.len());
        for (name, def) in defs {
            assert!(SHOWN.iter().any(|s| s.name == name), "`{name}` is not named for authors (add it to SHOWN)");
            assert!(!name.starts_with("Raw") && (name == "Spec" || !name.ends_with("Spec")), "{name}");
            for key in ["title", "description"] {
                assert!(def[key].as_str().is_some_and(|t| !t.is_empty()), "{name} has no {key}");
            }
            assert_eq!(def["examples"].as_array().map(Vec::len), Some(1), "{name} has no example");
        }
        let mut all = Vec::new();
        refs(&schema, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r.strip_prefix("#/definitions/").unwrap_or_else(|| panic!("{r}"));
            assert!(defs.contains_key(name), "dangling {r}");
        }
        // Every entry of the table names a definition the schema has.
        for s in SHOWN {
            assert!(defs.contains_key(s.name), "{} ({}) is not in the schema", s.name, s.internal);
        }
    }
}
