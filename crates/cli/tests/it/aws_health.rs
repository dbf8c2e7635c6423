//! The AWS Health source against a local double of the Health API that speaks the SDK's
//! real wire protocol: Smithy RPCv2 CBOR, with paging, event details and errors.

use std::io::Write;
use std::sync::{Arc, Mutex};

use minicbor::data::{IanaTag, Type};
use minicbor::{Decoder, Encoder};
use serde_json::{Value, json};

use crate::support::{Env, Request, out};

/// Decodes any CBOR item into JSON (timestamps become `{"$ts": secs}`).
fn to_json(d: &mut Decoder<'_>) -> Value {
    match d.datatype().unwrap() {
        Type::Map | Type::MapIndef => {
            let len = d.map().unwrap();
            let mut m = serde_json::Map::new();
            let mut n = 0;
            loop {
                if len.is_some_and(|l| n >= l) || (len.is_none() && d.datatype().unwrap() == Type::Break) {
                    if len.is_none() {
                        d.skip().unwrap();
                    }
                    break;
                }
                let k = d.str().unwrap().to_string();
                m.insert(k, to_json(d));
                n += 1;
            }
            Value::Object(m)
        }
        Type::Array | Type::ArrayIndef => {
            let len = d.array().unwrap();
            let mut a = Vec::new();
            loop {
                if len.is_some_and(|l| a.len() as u64 >= l) || (len.is_none() && d.datatype().unwrap() == Type::Break) {
                    if len.is_none() {
                        d.skip().unwrap();
                    }
                    break;
                }
                a.push(to_json(d));
            }
            Value::Array(a)
        }
        Type::String | Type::StringIndef => Value::from(d.str().unwrap().to_string()),
        Type::Bool => Value::from(d.bool().unwrap()),
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Value::from(d.u64().unwrap()),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => Value::from(d.i64().unwrap()),
        Type::Tag => {
            d.tag().unwrap();
            json!({ "$ts": to_json(d) })
        }
        Type::F64 => Value::from(d.f64().unwrap()),
        Type::F32 => Value::from(d.f32().unwrap()),
        _ => {
            d.skip().unwrap();
            Value::Null
        }
    }
}

/// Encodes JSON as CBOR; `{"$ts": secs}` becomes a tag-1 epoch timestamp.
fn enc(e: &mut Encoder<&mut Vec<u8>>, v: &Value) {
    match v {
        Value::Object(m) if m.contains_key("$ts") => {
            e.tag(IanaTag::Timestamp).unwrap();
            e.f64(m["$ts"].as_f64().unwrap()).unwrap();
        }
        Value::Object(m) => {
            e.map(m.len() as u64).unwrap();
            for (k, v) in m {
                e.str(k).unwrap();
                enc(e, v);
            }
        }
        Value::Array(a) => {
            e.array(a.len() as u64).unwrap();
            for v in a {
                enc(e, v);
            }
        }
        Value::String(s) => {
            e.str(s).unwrap();
        }
        Value::Bool(b) => {
            e.bool(*b).unwrap();
        }
        Value::Number(n) => {
            e.i64(n.as_i64().unwrap()).unwrap();
        }
        Value::Null => {
            e.null().unwrap();
        }
    }
}

#[derive(Default)]
struct Script {
    events: Vec<Value>,
    /// Answer this error code (as AWS does) to every DescribeEvents call.
    error: Option<String>,
    /// Throttle this many calls before answering.
    throttle: usize,
    page_size: usize,
    calls: Vec<(String, Value)>,
}

fn listed(filter: &Value, key: &str, value: &Value) -> bool {
    match filter[key].as_array() {
        None => true,
        Some(list) => list.contains(value),
    }
}

fn health_double(script: Arc<Mutex<Script>>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some(req) = Request::read(&stream) else { continue };
            let path = req.path.clone();
            let cbor_protocol = req.header("smithy-protocol") == Some("rpc-v2-cbor");
            let body = req.body;
            let input = if body.is_empty() { json!({}) } else { to_json(&mut Decoder::new(&body)) };
            let op = path.rsplit('/').next().unwrap_or("").to_string();
            let (status, reply) = {
                let mut s = script.lock().unwrap();
                s.calls.push((op.clone(), input.clone()));
                assert!(cbor_protocol, "the SDK announces rpc-v2-cbor");
                if s.throttle > 0 {
                    s.throttle -= 1;
                    (400, json!({ "__type": "ThrottlingException", "message": "Rate exceeded" }))
                } else if let (Some(code), "DescribeEvents") = (&s.error, op.as_str()) {
                    (400, json!({ "__type": code, "message": "nope" }))
                } else if op == "DescribeEvents" || op == "DescribeEventsForOrganization" {
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
                        input["nextToken"].as_str().map_or(0, |t| t.trim_start_matches("page-").parse().unwrap());
                    let end = (start + s.page_size).min(matching.len());
                    let mut page = json!({ "events": matching[start..end] });
                    if end < matching.len() {
                        page["nextToken"] = json!(format!("page-{end}"));
                    }
                    (200, page)
                } else if op == "DescribeEventDetails" {
                    let set: Vec<Value> = input["eventArns"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|arn| json!({ "event": { "arn": arn }, "eventDescription": { "latestDescription": format!("Details of {}", arn.as_str().unwrap().rsplit('/').next().unwrap()) } }))
                        .collect();
                    (200, json!({ "successfulSet": set, "failedSet": [] }))
                } else {
                    (400, json!({ "__type": "UnknownOperationException" }))
                }
            };
            let mut buf = Vec::new();
            enc(&mut Encoder::new(&mut buf), &reply);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nsmithy-protocol: rpc-v2-cbor\r\ncontent-type: application/cbor\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                buf.len()
            );
            let _ = stream.write_all(&buf);
        }
    });
    url
}

fn event(id: &str, service: &str, region: &str, category: &str, status: &str, start_secs: f64) -> Value {
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

fn gate_check(env: &Env, url: &str, gate: &str) -> crate::support::Out {
    out(env
        .cmd(&["gate", "check", gate, "--output", "json", "--timeout", "10s"])
        .env("AWS_ENDPOINT_URL_HEALTH", url)
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", env.path("home"))
        .output()
        .unwrap())
}

const GATES: &str = "gates:\n  prod:\n    sources:\n      - aws_health: { regions: [us-east-1, global], services: [EC2, RDS], lookahead: 2h, categories: [issue, scheduledChange] }\n  open:\n    fail_mode: open\n    sources:\n      - aws_health: { regions: [us-east-1] }\n";

#[test]
fn aws_health_pages_filters_and_describes() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let script = Arc::new(Mutex::new(Script { page_size: 2, ..Script::default() }));
    script.lock().unwrap().events = vec![
        event("e1", "EC2", "us-east-1", "issue", "open", now - 3600.0),
        event("e2", "RDS", "global", "issue", "open", now - 1800.0),
        event("e3", "EC2", "eu-west-1", "issue", "open", now - 600.0),
        event("e4", "EC2", "us-east-1", "issue", "closed", now - 7200.0),
        event("e5", "RDS", "us-east-1", "scheduledChange", "upcoming", now + 3600.0),
        event("e6", "EC2", "us-east-1", "scheduledChange", "upcoming", now + 5.0 * 3600.0),
        event("e7", "EC2", "us-east-1", "issue", "open", now - 60.0),
        event("e8", "LAMBDA", "us-east-1", "issue", "open", now - 60.0),
    ];
    let url = health_double(script.clone());
    let env = Env::new();
    env.write("opsbook.yaml", GATES);
    let o = gate_check(&env, &url, "prod");
    assert_eq!(o.code, 3, "{o:?}");
    let doc = o.json();
    let ids: Vec<&str> = doc["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(ids, vec!["e1", "e2", "e5", "e7"], "{doc}");
    let first = &doc["records"][0];
    assert_eq!(first["title"], "EC2 AWS_EC2_OPERATIONAL_ISSUE: Details of e1");
    assert_eq!(first["region"], "us-east-1");
    assert_eq!(first["status"], "open");
    assert!(
        first["url"]
            .as_str()
            .unwrap()
            .starts_with("https://health.aws.amazon.com/health/home#/account/event-log?eventID=arn:aws:health")
    );
    assert_eq!(doc["records"][2]["rule"], "lookahead");
    let calls = script.lock().unwrap().calls.clone();
    let pages: Vec<&Value> = calls.iter().filter(|(op, _)| op == "DescribeEvents").map(|(_, i)| i).collect();
    assert_eq!(pages.len(), 3, "every page is read: {calls:?}");
    assert_eq!(pages[0]["filter"]["regions"], json!(["us-east-1", "global"]));
    assert_eq!(pages[0]["filter"]["eventStatusCodes"], json!(["open", "upcoming"]));
    assert_eq!(pages[1]["nextToken"], "page-2");
    assert!(calls.iter().any(|(op, _)| op == "DescribeEventDetails"));

    // Everything closed: clear.
    script.lock().unwrap().events.retain(|e| e["statusCode"] == "closed");
    assert_eq!(gate_check(&env, &url, "prod").code, 0);
}

#[test]
fn aws_health_errors_are_verdicts() {
    let env = Env::new();
    env.write("opsbook.yaml", GATES);
    let script = Arc::new(Mutex::new(Script {
        page_size: 10,
        error: Some("SubscriptionRequiredException".into()),
        ..Script::default()
    }));
    let url = health_double(script.clone());
    let closed = gate_check(&env, &url, "prod");
    assert_eq!(closed.code, 3, "{closed:?}");
    assert_eq!(
        closed.json()["sources"][0]["error"],
        "the AWS Health API needs a Business, Enterprise On-Ramp or Enterprise support plan"
    );
    let open = gate_check(&env, &url, "open");
    assert_eq!(open.code, 0, "{open:?}");
    assert!(open.stderr.contains("passing under fail_mode: open"), "{open:?}");

    // Throttling is retried with backoff.
    let mut s = script.lock().unwrap();
    s.error = None;
    s.throttle = 2;
    s.calls.clear();
    drop(s);
    let o = gate_check(&env, &url, "prod");
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(script.lock().unwrap().calls.iter().filter(|(op, _)| op == "DescribeEvents").count(), 3);
}

#[test]
fn aws_health_filters_zones_and_reads_the_organization_view() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let mut ec2a = event("z1", "EC2", "us-east-1", "issue", "open", now - 60.0);
    ec2a["availabilityZone"] = json!("us-east-1a");
    let mut ec2b = event("z2", "EC2", "us-east-1", "issue", "open", now - 60.0);
    ec2b["availabilityZone"] = json!("us-east-1b");
    let script = Arc::new(Mutex::new(Script { page_size: 1, events: vec![ec2a, ec2b], ..Script::default() }));
    let url = health_double(script.clone());
    let env = Env::new();
    env.write(
        "opsbook.yaml",
        "gates:
  zone:
    sources:
      - aws_health: { regions: [us-east-1], availability_zones: [us-east-1b] }
  org:
    sources:
      - aws_health: { regions: [us-east-1], organization: true, accounts: [\"111122223333\"] }
",
    );
    let o = gate_check(&env, &url, "zone");
    assert_eq!(o.code, 3, "{o:?}");
    let doc = o.json();
    assert_eq!(doc["records"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["records"][0]["availability_zone"], "us-east-1b");

    // Organization: DescribeEventsForOrganization, with the account filter, every page.
    for (i, e) in script.lock().unwrap().events.iter_mut().enumerate() {
        e["account"] = json!(if i == 0 { "111122223333" } else { "444455556666" });
    }
    script.lock().unwrap().events.push({
        let mut e = event("z3", "RDS", "us-east-1", "issue", "open", now - 30.0);
        e["account"] = json!("111122223333");
        e
    });
    script.lock().unwrap().calls.clear();
    let o = gate_check(&env, &url, "org");
    assert_eq!(o.code, 3, "{o:?}");
    let ids: Vec<String> = o.json()["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["z1", "z3"]);
    let calls = script.lock().unwrap().calls.clone();
    let org: Vec<&Value> =
        calls.iter().filter(|(op, _)| op == "DescribeEventsForOrganization").map(|(_, i)| i).collect();
    assert_eq!(org.len(), 2, "two pages: {calls:?}");
    assert_eq!(org[0]["filter"]["awsAccountIds"], json!(["111122223333"]));
}
