//! `opsbook gate codepipeline-worker` against a local double of CodePipeline's JSON protocol
//! (awsJson1_1: POST / with X-Amz-Target).

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::{Env, FakeHttp, Request, out};

type Calls = Arc<Mutex<Vec<(String, Value)>>>;

/// Hands out `jobs` on the first PollForJobs and records every call.
fn codepipeline_double(jobs: Value) -> (String, Calls) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let calls: Calls = Default::default();
    let c = calls.clone();
    let mut pending = Some(jobs);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some(req) = Request::read(&stream) else { continue };
            let target = req.header("x-amz-target").unwrap_or_default().to_string();
            let body = req.body;
            let input: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
            let op = target.rsplit('.').next().unwrap_or("").to_string();
            let taken = op == "AcknowledgeJob" && input["nonce"] == "taken";
            let stale = op == "RetryStageExecution" && input["pipelineName"] == "old";
            let busy = op == "RetryStageExecution" && input["pipelineName"] == "busy";
            let execution = input["pipelineExecutionId"].clone();
            c.lock().unwrap().push((op.clone(), input));
            let (status, reply) = match op.as_str() {
                // Another worker acknowledged this job first.
                _ if taken => (
                    "400 Bad Request",
                    json!({ "__type": "InvalidNonceException", "message": "The nonce was already used" }),
                ),
                // A newer run of this pipeline went past the stage.
                _ if stale => (
                    "400 Bad Request",
                    json!({ "__type": "NotLatestPipelineExecutionException", "message": "A newer execution exists" }),
                ),
                // Other actions of the stage are still running: not yet.
                _ if busy => (
                    "400 Bad Request",
                    json!({ "__type": "StageNotRetryableException", "message": "Stage is still in progress" }),
                ),
                "RetryStageExecution" => ("200 OK", json!({ "pipelineExecutionId": execution })),
                "PollForJobs" => ("200 OK", json!({ "jobs": pending.take().unwrap_or(json!([])) })),
                "AcknowledgeJob" => ("200 OK", json!({ "status": "InProgress" })),
                _ => ("200 OK", json!({})),
            };
            let text = reply.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (url, calls)
}

fn job(id: &str, gate: &str, on_blocked: Option<&str>) -> Value {
    let mut conf = json!({ "Gate": gate });
    if let Some(o) = on_blocked {
        conf["OnBlocked"] = json!(o);
    }
    json!({ "id": id, "nonce": format!("n-{id}"), "accountId": "111122223333", "data": { "actionConfiguration": { "configuration": conf } } })
}

fn worker(env: &Env, url: &str) -> crate::support::Out {
    out(env
        .cmd(&[
            "gate",
            "codepipeline-worker",
            "--category",
            "Test",
            "--provider",
            "OpsbookGate",
            "--once",
            "--region",
            "us-east-1",
            "--state",
            env.path("state/retries.json").to_str().unwrap(),
        ])
        .env("AWS_ENDPOINT_URL_CODEPIPELINE", url)
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", env.path("home"))
        .output()
        .unwrap())
}

#[test]
fn jobs_wait_while_blocked_fail_on_request_and_succeed_when_clear() {
    let env = Env::new();
    let status = FakeHttp::start();
    status.set(
        "/api/v2/summary.json",
        200,
        r#"{"page":{"url":"https://status.example"},"components":[],"incidents":[{"id":"inc7","name":"API errors","status":"investigating","impact":"major","created_at":"2026-11-23T10:00:00Z","components":[]}]}"#,
    );
    env.write(
        "opsbook.yaml",
        &format!("gates:\n  prod:\n    sources:\n      - statuspage: {{ url: \"{}\" }}\n", status.url),
    );

    let now_ms = jiff::Timestamp::now().as_millisecond();
    // j4 has been waiting for two hours (its continuation token says since when), beyond its MaxWait.
    let mut j4 = job("j4", "prod", None);
    j4["data"]["actionConfiguration"]["configuration"]["MaxWait"] = json!("1h");
    j4["data"]["continuationToken"] = json!(format!("opsbook-gate-blocked:since={}", now_ms - 2 * 3600 * 1000));
    let mut j5 = job("j5", "prod", None);
    j5["data"]["actionConfiguration"]["configuration"]["MaxWait"] = json!("soon");
    let mut j6 = j4.clone();
    j6["id"] = json!("j6");
    j6["data"]["continuationToken"] = json!(format!("opsbook-gate-blocked:since={}", now_ms - 10 * 60 * 1000));
    let j6_token = j6["data"]["continuationToken"].clone();
    let mut j0 = job("j0", "prod", None);
    j0["nonce"] = json!("taken");
    let (url, calls) = codepipeline_double(json!([
        j0,
        job("j1", "prod", None),
        job("j2", "prod", Some("fail")),
        job("j3", "nope", None),
        j4,
        j5,
        j6
    ]));
    let o = worker(&env, &url);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("job j0: error: CodePipeline: InvalidNonceException: The nonce was already used\n"),
        "{o:?}"
    );
    assert!(o.stdout.contains("job j1: waiting: gate `prod` is blocked: statuspage: API errors"), "{o:?}");
    assert!(o.stdout.contains("job j2: failed: gate `prod` is blocked: statuspage: API errors"), "{o:?}");
    assert!(o.stdout.contains("job j3: failed: no gate `nope` is defined"), "{o:?}");
    assert!(o.stdout.contains("job j4: failed: gate `prod` still blocked after 1h: statuspage: API errors"), "{o:?}");
    assert!(o.stdout.contains("job j5: failed: MaxWait: invalid duration `soon`"), "{o:?}");
    assert!(
        o.stdout.contains("job j6: waiting: gate `prod` is blocked: statuspage: API errors (blocked for 10m"),
        "{o:?}"
    );
    let calls = calls.lock().unwrap().clone();
    let ops: Vec<&str> = calls.iter().map(|(op, _)| op.as_str()).collect();
    assert_eq!(
        ops,
        vec![
            "PollForJobs",
            "AcknowledgeJob",
            "AcknowledgeJob",
            "PutJobSuccessResult",
            "AcknowledgeJob",
            "PutJobFailureResult",
            "AcknowledgeJob",
            "PutJobFailureResult",
            "AcknowledgeJob",
            "PutJobFailureResult",
            "AcknowledgeJob",
            "PutJobFailureResult",
            "AcknowledgeJob",
            "PutJobSuccessResult"
        ]
    );
    // j6 keeps the time it was first blocked.
    assert_eq!(calls[13].1["continuationToken"], j6_token);
    assert_eq!(
        calls[0].1["actionTypeId"],
        json!({"category": "Test", "owner": "Custom", "provider": "OpsbookGate", "version": "1"})
    );
    assert_eq!(calls[2].1, json!({"jobId": "j1", "nonce": "n-j1"}));
    let token = calls[3].1["continuationToken"].as_str().unwrap();
    let since: i64 = token.strip_prefix("opsbook-gate-blocked:since=").unwrap().parse().unwrap();
    assert!((now_ms..now_ms + 60_000).contains(&since), "{token}");
    assert_eq!(
        calls[3].1["executionDetails"]["summary"],
        "gate `prod` is blocked: statuspage: API errors (waiting up to 3h)"
    );
    assert_eq!(
        calls[5].1["failureDetails"],
        json!({"type": "JobFailed", "message": "gate `prod` is blocked: statuspage: API errors"})
    );

    // The incident closes: the job (handed out again) succeeds without a continuation token.
    status.set("/api/v2/summary.json", 200, r#"{"page":{},"components":[],"incidents":[]}"#);
    let (url, calls) = codepipeline_double(json!([job("j1", "prod", None)]));
    let o = worker(&env, &url);
    assert!(o.stdout.contains("job j1: succeeded"), "{o:?}");
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls[2].0, "PutJobSuccessResult");
    assert!(calls[2].1.get("continuationToken").is_none(), "{:?}", calls[2]);
}

/// `OnBlocked: retry`: a blocked gate fails the job (a failed stage, visible), the stage is
/// remembered across worker restarts, and retried (FAILED_ACTIONS) once the gate clears;
/// one past its MaxWait, or that CodePipeline will not retry, is let go.
#[test]
fn blocked_stages_fail_then_are_retried_when_the_gate_clears() {
    let env = Env::new();
    let status = FakeHttp::start();
    let incident = r#"{"page":{},"components":[],"incidents":[{"id":"inc7","name":"API errors","status":"investigating","impact":"major","created_at":"2026-11-23T10:00:00Z","components":[]}]}"#;
    status.set("/api/v2/summary.json", 200, incident);
    env.write(
        "opsbook.yaml",
        &format!("gates:\n  prod:\n    sources:\n      - statuspage: {{ url: \"{}\" }}\n", status.url),
    );
    let in_pipeline = |id: &str, pipeline: &str| {
        let mut j = job(id, "prod", Some("retry"));
        j["data"]["pipelineContext"] =
            json!({ "pipelineName": pipeline, "stage": { "name": "Prod" }, "pipelineExecutionId": format!("pe-{id}") });
        j
    };
    let (url, calls) = codepipeline_double(json!([
        in_pipeline("j7", "web"),
        job("j8", "prod", Some("retry")),
        job("j9", "prod", Some("retyr"))
    ]));
    let o = worker(&env, &url);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains(
            "job j7: failed: gate `prod` is blocked: statuspage: API errors; the stage is retried when the gate clears (within 3h)\n"
        ),
        "{o:?}"
    );
    assert!(o.stdout.contains("job j8: failed: gate `prod` is blocked: statuspage: API errors (OnBlocked: retry needs the job's pipeline, stage and execution)"), "{o:?}");
    assert!(o.stdout.contains("job j9: failed: OnBlocked: `retyr` is not wait, fail or retry\n"), "{o:?}");
    let failed =
        calls.lock().unwrap().iter().find(|(op, i)| op == "PutJobFailureResult" && i["jobId"] == "j7").cloned();
    let message = failed.expect("j7 failed").1["failureDetails"]["message"].as_str().unwrap().to_string();
    assert!(message.starts_with("gate `prod` is blocked: statuspage: API errors"), "{message}");
    let state = env.read("state/retries.json");
    let kept: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(kept.as_array().unwrap().len(), 1, "{state}");
    assert_eq!((kept[0]["pipeline"].as_str(), kept[0]["stage"].as_str()), (Some("web"), Some("Prod")), "{state}");

    // A restarted worker, the gate still blocked: nothing is retried, the stage is kept.
    let (url, calls) = codepipeline_double(json!([]));
    let o = worker(&env, &url);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(calls.lock().unwrap().iter().all(|(op, _)| op != "RetryStageExecution"), "{o:?}");
    assert_eq!(serde_json::from_str::<Value>(&env.read("state/retries.json")).unwrap(), kept);

    // The incident closes: the next poll retries the failed actions of that stage, once.
    status.set("/api/v2/summary.json", 200, r#"{"page":{},"components":[],"incidents":[]}"#);
    let (url, calls) = codepipeline_double(json!([]));
    let o = worker(&env, &url);
    assert!(o.stdout.contains("stage web/Prod: retried (pipeline execution pe-j7): gate `prod` is clear"), "{o:?}");
    let retried: Vec<Value> =
        calls.lock().unwrap().iter().filter(|(op, _)| op == "RetryStageExecution").map(|(_, i)| i.clone()).collect();
    assert_eq!(
        retried,
        vec![
            json!({ "pipelineName": "web", "stageName": "Prod", "pipelineExecutionId": "pe-j7", "retryMode": "FAILED_ACTIONS" })
        ]
    );
    assert_eq!(env.read("state/retries.json").split_whitespace().collect::<String>(), "[]");

    // One past its MaxWait is let go; one a newer execution went past is let go too; one
    // CodePipeline cannot retry yet is kept for the next poll.
    let now = jiff::Timestamp::now().as_millisecond();
    let run = |pipeline: &str, blocked_at: i64, retry_until: i64| json!({ "pipeline": pipeline, "stage": "Prod", "pipeline_execution_id": format!("pe-{pipeline}"), "gate": "prod", "blocked_at": blocked_at, "retry_until": retry_until });
    let busy = run("busy", now, now + 3_600_000);
    let stale = json!([run("web", now - 7_200_000, now - 3_600_000), run("old", now, now + 3_600_000), busy.clone()]);
    env.write("state/retries.json", &stale.to_string());
    let (url, _) = codepipeline_double(json!([]));
    let o = worker(&env, &url);
    assert!(o.stdout.contains("stage web/Prod: not retried: gate `prod` did not clear within 1h\n"), "{o:?}");
    assert!(
        o.stdout.contains(
            "stage old/Prod: not retried: CodePipeline: NotLatestPipelineExecutionException: A newer execution exists"
        ),
        "{o:?}"
    );
    assert!(
        o.stdout
            .contains("stage busy/Prod: error: CodePipeline: StageNotRetryableException: Stage is still in progress"),
        "{o:?}"
    );
    assert_eq!(serde_json::from_str::<Value>(&env.read("state/retries.json")).unwrap(), json!([busy]));

    // A state file that cannot be read is said, and spares the jobs.
    env.write("state/retries.json", "not json");
    let (url, _) = codepipeline_double(json!([job("j10", "prod", None)]));
    let o = worker(&env, &url);
    assert!(o.stdout.contains("retries: error: "), "{o:?}");
    assert!(o.stdout.contains("job j10: succeeded"), "{o:?}");
}
