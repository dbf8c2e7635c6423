//! A double of the AWS Health API in its awsJson1_1 protocol (`POST /`,
//! `X-Amz-Target: AWSHealth_20160804.OP`, timestamps as epoch seconds), with paging, filters, event details, organization views, throttling, errors and an
//! outage mode. Its events are JSON values in the API's shape (`startTime` as
//! `{"$ts": epoch_secs}`), plus `account` for organization events and `description` for
//! DescribeEventDetails (default `Details of ID`); a test scripts them to open, update and
//! close while the double runs.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};

use crate::http::Request;

/// What the double answers; change it while it runs.
#[derive(Default)]
pub struct Script {
    pub events: Vec<Value>,
    /// Answer this error code (as AWS does, HTTP 400) to every DescribeEvents* call.
    pub error: Option<String>,
    /// Throttle this many calls (HTTP 400 ThrottlingException) before answering.
    pub throttle: usize,
    /// Answer every call with HTTP 503, as a region in an outage does.
    pub unavailable: bool,
    /// Events per page (0: 100).
    pub page_size: usize,
    /// Every call seen, in order.
    pub calls: Vec<Call>,
}

/// One call the double saw.
#[derive(Debug, Clone)]
pub struct Call {
    pub op: String,
    pub input: Value,
    /// The region the request was signed for (SigV4 credential scope).
    pub region: Option<String>,
}

/// A running double; `url` is its endpoint (`AWS_ENDPOINT_URL_HEALTH`).
#[derive(Clone)]
pub struct Health {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

impl Health {
    pub fn start(script: Script) -> Health {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let script = Arc::new(Mutex::new(script));
        let s = script.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(req) = Request::read(&stream) else { continue };
                let (status, reply) = answer(&mut s.lock().unwrap_or_else(|e| e.into_inner()), &req);
                let buf = timestamps(reply).to_string().into_bytes();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    buf.len()
                );
                let _ = stream.write_all(&buf);
            }
        });
        Health { url, script }
    }

    pub fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The inputs of every call of operation `op`, in order.
    pub fn calls(&self, op: &str) -> Vec<Value> {
        self.script().calls.iter().filter(|c| c.op == op).map(|c| c.input.clone()).collect()
    }
}

/// An event in the API's shape (`AWS_{service}_OPERATIONAL_ISSUE`, public scope).
pub fn event(id: &str, service: &str, region: &str, category: &str, status: &str, start_secs: f64) -> Value {
    json!({
        "arn": format!("arn:aws:health:{region}::event/{service}/AWS_{service}_OPERATIONAL_ISSUE/{id}"),
        "service": service,
        "eventTypeCode": format!("AWS_{service}_OPERATIONAL_ISSUE"),
        "eventTypeCategory": category,
        "region": region,
        "startTime": { "$ts": start_secs },
        "lastUpdatedTime": { "$ts": start_secs + 60.0 },
        "statusCode": status,
        "eventScopeCode": "PUBLIC",
    })
}

fn listed(filter: &Value, key: &str, value: &Value) -> bool {
    match filter[key].as_array() {
        None => true,
        Some(list) => list.contains(value),
    }
}

fn error(code: &str, message: &str) -> (u16, Value) {
    (400, json!({ "__type": code, "message": message }))
}

fn answer(s: &mut Script, req: &Request) -> (u16, Value) {
    let op = req.header("x-amz-target").and_then(|t| t.strip_prefix("AWSHealth_20160804.")).unwrap_or("").to_string();
    let input: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    s.calls.push(Call { op: op.clone(), input: input.clone(), region: req.signed_region() });
    if req.method != "POST" || req.path != "/" || req.header("content-type") != Some("application/x-amz-json-1.1") {
        return error("SerializationException", "expected POST / with Content-Type: application/x-amz-json-1.1");
    }
    if !input.is_object() {
        return error("SerializationException", "the body is not a JSON object");
    }
    if s.unavailable {
        return (503, json!({ "__type": "ServiceUnavailableException", "message": "Service unavailable" }));
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        return error("ThrottlingException", "Rate exceeded");
    }
    let by_arn = |arn: &Value| s.events.iter().find(|e| &e["arn"] == arn);
    match op.as_str() {
        "DescribeEvents" | "DescribeEventsForOrganization" => {
            if let Some(code) = &s.error {
                return error(code, "refused");
            }
            let f = &input["filter"];
            let matching: Vec<Value> = s
                .events
                .iter()
                .filter(|e| {
                    listed(f, "regions", &e["region"])
                        && listed(f, "services", &e["service"])
                        && listed(f, "eventTypeCategories", &e["eventTypeCategory"])
                        && listed(f, "eventStatusCodes", &e["statusCode"])
                        && listed(f, "availabilityZones", &e["availabilityZone"])
                        && listed(f, "awsAccountIds", &e["account"])
                })
                .cloned()
                .collect();
            let start: usize =
                input["nextToken"].as_str().and_then(|t| t.strip_prefix("page-")?.parse().ok()).unwrap_or(0);
            let size = if s.page_size == 0 { 100 } else { s.page_size };
            let end = (start + size).min(matching.len());
            let mut page = json!({ "events": matching.get(start..end).unwrap_or_default() });
            if end < matching.len() {
                page["nextToken"] = json!(format!("page-{end}"));
            }
            (200, page)
        }
        "DescribeEventDetails" => {
            let arns = input["eventArns"].as_array().cloned().unwrap_or_default();
            if arns.len() > 10 {
                return error("ValidationException", "eventArns: at most 10");
            }
            let set: Vec<Value> = arns.iter().filter_map(by_arn).map(|e| details(e, None)).collect();
            (200, json!({ "successfulSet": set, "failedSet": [] }))
        }
        "DescribeAffectedAccountsForOrganization" => match by_arn(&input["eventArn"]) {
            Some(e) => (
                200,
                json!({ "affectedAccounts": e.get("account").into_iter().collect::<Vec<_>>(), "eventScopeCode": e["eventScopeCode"] }),
            ),
            None => (200, json!({ "affectedAccounts": [] })),
        },
        "DescribeEventDetailsForOrganization" => {
            let filters = input["organizationEventDetailFilters"].as_array().cloned().unwrap_or_default();
            if filters.len() > 10 {
                return error("ValidationException", "organizationEventDetailFilters: at most 10");
            }
            let (mut ok, mut failed) = (Vec::new(), Vec::new());
            for f in &filters {
                let account = f.get("awsAccountId").filter(|a| !a.is_null());
                match by_arn(&f["eventArn"]) {
                    // As AWS: public events take no account, account-specific ones need one.
                    Some(e) if (e["eventScopeCode"] == "PUBLIC") == account.is_none() => {
                        ok.push(details(e, account))
                    }
                    _ => failed.push(json!({ "eventArn": f["eventArn"], "errorName": "InvalidFilter", "errorMessage": "wrong account for this event" })),
                }
            }
            (200, json!({ "successfulSet": ok, "failedSet": failed }))
        }
        _ => error("UnknownOperationException", &op),
    }
}

fn details(e: &Value, account: Option<&Value>) -> Value {
    let id = e["arn"].as_str().unwrap_or("").rsplit('/').next().unwrap_or("");
    let text = e["description"].as_str().map_or_else(|| format!("Details of {id}"), str::to_string);
    let mut d = json!({ "event": { "arn": e["arn"] }, "eventDescription": { "latestDescription": text } });
    if let Some(a) = account {
        d["awsAccountId"] = a.clone();
    }
    d
}

/// The scripted `{"$ts": secs}` timestamps as awsJson writes them: epoch seconds.
fn timestamps(v: Value) -> Value {
    match v {
        Value::Object(m) if m.contains_key("$ts") => m["$ts"].clone(),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, timestamps(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(timestamps).collect()),
        other => other,
    }
}
