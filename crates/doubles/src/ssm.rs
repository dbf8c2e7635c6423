//! A double of AWS Systems Manager as the SDK speaks it: awsJson1.1 (`POST /`,
//! `X-Amz-Target: AmazonSSM.OPERATION`, JSON in and out, errors as `{"__type", "message"}`
//! with HTTP 400). Run Command (SendCommand, ListCommands, ListCommandInvocations,
//! CancelCommand, DescribeInstanceInformation), Automation (StartAutomationExecution, GetAutomationExecution,
//! StopAutomationExecution) and Parameter Store (GetParameter).
//!
//! Work progresses by polls: a command (or an automation) stays `InProgress` for its
//! document's `polls` status reads, then ends with what the document's handler says for
//! each instance; a cancel before then ends it `Cancelled`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};

use crate::http::{Reply, Request};

/// What an instance's run of a document gives.
#[derive(Debug, Clone)]
pub struct InstanceResult {
    pub success: bool,
    pub code: i32,
    pub output: String,
}

/// What a document does on an instance (its id), given the command's parameters.
pub type Handler = Arc<dyn Fn(&str, &Value) -> InstanceResult + Send + Sync>;

/// A Run Command document: what it does on each instance, given the parameters.
#[derive(Clone)]
pub struct Document {
    pub handler: Handler,
    /// Status reads before the command ends.
    pub polls: usize,
}

impl Document {
    pub fn new(polls: usize, handler: impl Fn(&str, &Value) -> InstanceResult + Send + Sync + 'static) -> Document {
        Document { handler: Arc::new(handler), polls }
    }
}

/// What an Automation gives: success with outputs, or a failure message.
#[derive(Debug, Clone)]
pub enum AutomationResult {
    Success(BTreeMap<String, Vec<String>>),
    Failed(String),
}

#[derive(Clone)]
pub struct Automation {
    pub handler: Arc<dyn Fn(&Value) -> AutomationResult + Send + Sync>,
    pub polls: usize,
}

impl Automation {
    pub fn new(polls: usize, handler: impl Fn(&Value) -> AutomationResult + Send + Sync + 'static) -> Automation {
        Automation { handler: Arc::new(handler), polls }
    }
}

/// A command the double was sent, and where it stands.
#[derive(Debug, Clone)]
pub struct Command {
    pub id: String,
    pub document: String,
    pub instances: Vec<String>,
    pub input: Value,
    pub polls_left: usize,
    pub cancelled: bool,
    pub results: BTreeMap<String, InstanceResult>,
}

/// An automation the double started, and where it stands.
#[derive(Debug, Clone)]
pub struct Execution {
    pub id: String,
    pub document: String,
    pub input: Value,
    pub polls_left: usize,
    pub stopped: bool,
    pub result: Option<AutomationResult>,
}

/// One call the double saw.
#[derive(Debug, Clone)]
pub struct Call {
    pub op: String,
    pub input: Value,
    pub region: Option<String>,
    pub access_key: Option<String>,
}

/// What the double answers; change it while it runs.
#[derive(Default)]
pub struct Script {
    pub documents: BTreeMap<String, Document>,
    pub automations: BTreeMap<String, Automation>,
    /// Instances by tag, keyed `NAME=VALUE`.
    pub tags: BTreeMap<String, Vec<String>>,
    /// Instances SSM does not manage (SendCommand to them: InvalidInstanceId).
    pub unmanaged: Vec<String>,
    /// Parameter Store: name to value.
    pub parameters: BTreeMap<String, String>,
    /// Throttle this many calls (ThrottlingException) before answering.
    pub throttle: usize,
    /// Operations the caller may not call (AccessDeniedException).
    pub denied: Vec<String>,
    pub commands: Vec<Command>,
    pub executions: Vec<Execution>,
    pub calls: Vec<Call>,
}

/// A running double; `url` is its endpoint (`AWS_ENDPOINT_URL_SSM`).
#[derive(Clone)]
pub struct Ssm {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

impl Ssm {
    pub fn start(script: Script) -> Ssm {
        let (url, script) = crate::http::serve(script, answer);
        Ssm { url, script }
    }

    pub fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The inputs of every call of operation `op`, in order.
    pub fn calls(&self, op: &str) -> Vec<Value> {
        self.script().calls.iter().filter(|c| c.op == op).map(|c| c.input.clone()).collect()
    }
}

fn error(code: &str, message: &str) -> Reply {
    Reply::new(400, "application/x-amz-json-1.1", json!({ "__type": code, "message": message }).to_string())
}

fn ok(body: Value) -> Reply {
    Reply::new(200, "application/x-amz-json-1.1", body.to_string())
}

fn command_status(c: &Command) -> &'static str {
    if c.cancelled && c.results.is_empty() {
        "Cancelled"
    } else if c.polls_left > 0 {
        "InProgress"
    } else if c.results.values().all(|r| r.success) {
        "Success"
    } else {
        "Failed"
    }
}

fn invocation(c: &Command, instance: &str) -> Value {
    let (status, code, output) = match c.results.get(instance) {
        Some(r) => (if r.success { "Success" } else { "Failed" }, r.code, r.output.clone()),
        None if c.cancelled => ("Cancelled", -1, String::new()),
        None => ("InProgress", -1, String::new()),
    };
    json!({
        "CommandId": c.id,
        "InstanceId": instance,
        "DocumentName": c.document,
        "Status": status,
        "StatusDetails": status,
        "CommandPlugins": [{ "Name": "aws:runShellScript", "Status": status, "StatusDetails": status, "ResponseCode": code, "Output": output }],
    })
}

fn answer(script: &Mutex<Script>, req: &Request) -> Reply {
    let op = req.header("x-amz-target").and_then(|t| t.strip_prefix("AmazonSSM.")).unwrap_or("").to_string();
    let input: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let mut s = script.lock().unwrap_or_else(|e| e.into_inner());
    s.calls.push(Call {
        op: op.clone(),
        input: input.clone(),
        region: req.signed_region(),
        access_key: req.signed_access_key(),
    });
    if req.header("content-type") != Some("application/x-amz-json-1.1") {
        return error("SerializationException", "expected Content-Type: application/x-amz-json-1.1");
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        return error("ThrottlingException", "Rate exceeded");
    }
    if s.denied.contains(&op) {
        let who = req.signed_access_key().unwrap_or_default();
        return error(
            "AccessDeniedException",
            &format!(
                "User: arn:aws:iam::123456789012:user/{who} is not authorized to perform: ssm:{op} because no identity-based policy allows the ssm:{op} action"
            ),
        );
    }
    let text = |k: &str| input[k].as_str().unwrap_or_default().to_string();
    match op.as_str() {
        "SendCommand" => {
            let document = text("DocumentName");
            let Some(doc) = s.documents.get(&document).cloned() else {
                return error("InvalidDocument", &format!("Document with name {document} does not exist."));
            };
            let mut instances: Vec<String> = input["InstanceIds"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            // Tag targets: any of a key's values matches; every key must match (as SSM does).
            for (n, t) in input["Targets"].as_array().into_iter().flatten().enumerate() {
                let key = t["Key"].as_str().unwrap_or_default().trim_start_matches("tag:");
                let mut matching: Vec<String> = Vec::new();
                for v in t["Values"].as_array().into_iter().flatten().filter_map(|v| v.as_str()) {
                    for i in s.tags.get(&format!("{key}={v}")).cloned().unwrap_or_default() {
                        if !matching.contains(&i) {
                            matching.push(i);
                        }
                    }
                }
                if n == 0 {
                    instances = matching;
                } else {
                    instances.retain(|i| matching.contains(i));
                }
            }
            if let Some(bad) = instances.iter().find(|i| s.unmanaged.contains(i)) {
                return error(
                    "InvalidInstanceId",
                    &format!("Instances [[{bad}]] not in a valid state for account 123456789012"),
                );
            }
            let id = format!("{:08x}-0000-4000-8000-{:012x}", s.commands.len() + 1, s.commands.len() + 1);
            let polls = doc.polls;
            s.commands.push(Command {
                id: id.clone(),
                document: document.clone(),
                instances: instances.clone(),
                input: input.clone(),
                polls_left: polls,
                cancelled: false,
                results: BTreeMap::new(),
            });
            ok(
                json!({ "Command": { "CommandId": id, "DocumentName": document, "InstanceIds": instances, "Status": "Pending", "TargetCount": instances.len() } }),
            )
        }
        "DescribeInstanceInformation" => {
            // Each `tag:KEY` filter keeps the instances tagged KEY with one of its values.
            let mut found: Option<std::collections::BTreeSet<String>> = None;
            for f in input["Filters"].as_array().cloned().unwrap_or_default() {
                let Some(key) = f["Key"].as_str().and_then(|k| k.strip_prefix("tag:")) else {
                    return error("InvalidInstanceInformationFilterValue", "only tag:KEY filters are simulated");
                };
                let values: Vec<&str> =
                    f["Values"].as_array().map(|v| v.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                let matching: std::collections::BTreeSet<String> = values
                    .iter()
                    .flat_map(|v| s.tags.get(&format!("{key}={v}")).cloned().unwrap_or_default())
                    .collect();
                found = Some(match found {
                    Some(before) => before.intersection(&matching).cloned().collect(),
                    None => matching,
                });
            }
            let all: std::collections::BTreeSet<String> = s.tags.values().flatten().cloned().collect();
            let list: Vec<Value> = found
                .unwrap_or(all)
                .into_iter()
                .filter(|i| !s.unmanaged.contains(i))
                .map(|i| json!({ "InstanceId": i, "PingStatus": "Online", "PlatformType": "Linux" }))
                .collect();
            ok(json!({ "InstanceInformationList": list }))
        }
        "ListCommands" => {
            let id = text("CommandId");
            let docs = s.documents.clone();
            let Some(c) = s.commands.iter_mut().find(|c| c.id == id) else {
                return error("InvalidCommandId", "Invalid command id");
            };
            if c.polls_left > 0 && !c.cancelled {
                c.polls_left -= 1;
                if c.polls_left == 0
                    && let Some(doc) = docs.get(&c.document)
                {
                    let params = c.input["Parameters"].clone();
                    c.results = c.instances.iter().map(|i| (i.clone(), (doc.handler)(i, &params))).collect();
                }
            }
            let errors = c.results.values().filter(|r| !r.success).count();
            ok(json!({ "Commands": [{
                "CommandId": c.id, "DocumentName": c.document, "Status": command_status(c), "StatusDetails": command_status(c),
                "TargetCount": c.instances.len(), "CompletedCount": c.results.len(), "ErrorCount": errors,
            }] }))
        }
        "ListCommandInvocations" => {
            let id = text("CommandId");
            let Some(c) = s.commands.iter().find(|c| c.id == id) else {
                return error("InvalidCommandId", "Invalid command id");
            };
            ok(json!({ "CommandInvocations": c.instances.iter().map(|i| invocation(c, i)).collect::<Vec<_>>() }))
        }
        "CancelCommand" => {
            let id = text("CommandId");
            let Some(c) = s.commands.iter_mut().find(|c| c.id == id) else {
                return error("InvalidCommandId", "Invalid command id");
            };
            if c.results.is_empty() {
                c.cancelled = true;
            }
            ok(json!({}))
        }
        "StartAutomationExecution" => {
            let document = text("DocumentName");
            let Some(auto) = s.automations.get(&document).cloned() else {
                return error(
                    "AutomationDefinitionNotFoundException",
                    &format!("No automation document found with name {document}"),
                );
            };
            let token = text("ClientToken");
            if let Some(e) = s.executions.iter().find(|e| !token.is_empty() && e.input["ClientToken"] == token.as_str())
            {
                return ok(json!({ "AutomationExecutionId": e.id }));
            }
            let id = format!("{:08x}-1111-4000-8000-{:012x}", s.executions.len() + 1, s.executions.len() + 1);
            s.executions.push(Execution {
                id: id.clone(),
                document,
                input,
                polls_left: auto.polls,
                stopped: false,
                result: None,
            });
            ok(json!({ "AutomationExecutionId": id }))
        }
        "GetAutomationExecution" => {
            let id = text("AutomationExecutionId");
            let autos = s.automations.clone();
            let Some(e) = s.executions.iter_mut().find(|e| e.id == id) else {
                return error("AutomationExecutionNotFoundException", &format!("Automation execution {id} not found"));
            };
            if e.polls_left > 0 && !e.stopped {
                e.polls_left -= 1;
                if e.polls_left == 0
                    && let Some(a) = autos.get(&e.document)
                {
                    e.result = Some((a.handler)(&e.input["Parameters"]));
                }
            }
            let (status, outputs, failure) = match (&e.result, e.stopped) {
                (Some(AutomationResult::Success(o)), _) => ("Success", json!(o), Value::Null),
                (Some(AutomationResult::Failed(m)), _) => ("Failed", json!({}), json!(m)),
                (None, true) => ("Cancelled", json!({}), Value::Null),
                (None, false) => ("InProgress", json!({}), Value::Null),
            };
            let mut body = json!({ "AutomationExecution": {
                "AutomationExecutionId": e.id, "DocumentName": e.document, "AutomationExecutionStatus": status,
                "Outputs": outputs, "Parameters": e.input["Parameters"], "CurrentStepName": "run",
            } });
            if !failure.is_null() {
                body["AutomationExecution"]["FailureMessage"] = failure;
            }
            ok(body)
        }
        "StopAutomationExecution" => {
            let id = text("AutomationExecutionId");
            let Some(e) = s.executions.iter_mut().find(|e| e.id == id) else {
                return error("AutomationExecutionNotFoundException", &format!("Automation execution {id} not found"));
            };
            if e.result.is_none() {
                e.stopped = true;
            }
            ok(json!({}))
        }
        "GetParameter" => {
            let name = text("Name");
            match s.parameters.get(&name) {
                Some(v) if input["WithDecryption"] == true => ok(json!({ "Parameter": {
                    "Name": name, "Type": "SecureString", "Value": v, "Version": 1,
                    "ARN": format!("arn:aws:ssm:{}:123456789012:parameter{name}", req.signed_region().unwrap_or_default()),
                } })),
                Some(_) => ok(
                    json!({ "Parameter": { "Name": name, "Type": "SecureString", "Value": "AQICAHh-encrypted-blob", "Version": 1 } }),
                ),
                None => error("ParameterNotFound", &format!("Parameter {name} not found.")),
            }
        }
        other => error("UnknownOperationException", &format!("Unknown operation {other}")),
    }
}
