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
            c.lock().unwrap().push((op.clone(), input));
            let (status, reply) = match op.as_str() {
                // Another worker acknowledged this job first.
                _ if taken => (
                    "400 Bad Request",
                    json!({ "__type": "InvalidNonceException", "message": "The nonce was already used" }),
                ),
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
