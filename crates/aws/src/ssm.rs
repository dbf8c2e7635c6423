//! Systems Manager: Run Command (SendCommand, its invocations, CancelCommand), the
//! managed instances (DescribeInstanceInformation) and Automation
//! (StartAutomationExecution, GetAutomationExecution, StopAutomationExecution), awsJson1_1.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::wire::{Client, Failure, SSM};
use crate::{Call, Error, Target};

async fn client(target: &Target) -> Result<Client, Error> {
    Ok(crate::config(target).await?.client(&SSM))
}

/// One SSM operation; its refusals said in SSM's terms.
async fn call(client: &Client, target: &Target, op: &str, resource: &str, input: Value) -> Result<Value, Error> {
    client.json(op, &input).await.map_err(|e| failed(target, &format!("ssm:{op}"), resource, &e))
}

fn failed(target: &Target, action: &str, resource: &str, e: &Failure) -> Error {
    let message = match e {
        Failure::Service { message, .. } => message.as_str(),
        _ => "",
    };
    match e.code() {
        Some("InvalidDocument") => Error::fatal(format!("SSM {resource} not found or not usable ({message})")),
        Some("InvalidInstanceId") => Error::fatal(format!(
            "SSM cannot run {resource} on these instances: not managed, not running, or unknown ({message})"
        )),
        Some("InvalidParameters" | "InvalidAutomationExecutionParametersException") => {
            Error::fatal(format!("SSM refused the parameters of {resource}: {message}"))
        }
        Some("AutomationDefinitionNotFoundException") => Error::fatal(format!("SSM {resource} not found ({message})")),
        _ => crate::describe(&Call { service: "SSM", action, resource, target }, e),
    }
}

/// A `{"Key": "tag:NAME", "Values": [...]}` list (SendCommand's targets, the instance filters).
fn tag_filters(tags: &BTreeMap<String, Vec<String>>) -> Vec<Value> {
    tags.iter().map(|(k, v)| json!({ "Key": format!("tag:{k}"), "Values": v })).collect()
}

/// Sets `key` when `value` is given.
fn set(doc: &mut Value, key: &str, value: Option<impl Into<Value>>) {
    if let Some(v) = value {
        doc[key] = v.into();
    }
}

/// The next page's token, when there is one.
fn next_token(page: &Value) -> Option<String> {
    page["NextToken"].as_str().filter(|t| !t.is_empty()).map(str::to_string)
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// A command to send.
pub struct CommandRequest<'a> {
    pub document: &'a str,
    pub document_version: Option<&'a str>,
    pub instance_ids: &'a [String],
    /// Tag name, then the values any of which matches.
    pub tags: &'a BTreeMap<String, Vec<String>>,
    pub parameters: &'a BTreeMap<String, Vec<String>>,
    pub max_concurrency: Option<&'a str>,
    pub max_errors: Option<&'a str>,
    pub comment: Option<&'a str>,
}

/// Sends a command; its id.
pub fn send_command<'a>(target: &'a Target, req: &'a CommandRequest<'_>) -> crate::Boxed<'a, Result<String, Error>> {
    crate::boxed(async move {
        let client = client(target).await?;
        let mut input = json!({ "DocumentName": req.document });
        set(&mut input, "DocumentVersion", req.document_version);
        set(&mut input, "MaxConcurrency", req.max_concurrency);
        set(&mut input, "MaxErrors", req.max_errors);
        set(&mut input, "Comment", req.comment.map(|c| c.chars().take(100).collect::<String>()));
        if !req.instance_ids.is_empty() {
            input["InstanceIds"] = json!(req.instance_ids);
        }
        if !req.tags.is_empty() {
            input["Targets"] = json!(tag_filters(req.tags));
        }
        if !req.parameters.is_empty() {
            input["Parameters"] = json!(req.parameters);
        }
        let resource = format!("document `{}`", req.document);
        let out = call(&client, target, "SendCommand", &resource, input).await?;
        text(&out["Command"]["CommandId"])
            .ok_or_else(|| Error { message: "SSM answered SendCommand without a command id".into(), retryable: false })
    })
}

/// The instances SSM manages that carry every tag of `tags` (one of its values each),
/// by id, in order.
pub fn managed_instances<'a>(
    target: &'a Target,
    tags: &'a BTreeMap<String, Vec<String>>,
) -> crate::Boxed<'a, Result<Vec<String>, Error>> {
    crate::boxed(async move {
        let client = client(target).await?;
        let mut ids = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut input = json!({ "MaxResults": 50 });
            if !tags.is_empty() {
                input["Filters"] = json!(tag_filters(tags));
            }
            set(&mut input, "NextToken", next.take());
            let page = call(&client, target, "DescribeInstanceInformation", "managed instances", input).await?;
            let list = page["InstanceInformationList"].as_array().map(Vec::as_slice).unwrap_or_default();
            ids.extend(list.iter().filter_map(|i| text(&i["InstanceId"])));
            match next_token(&page) {
                Some(t) => next = Some(t),
                None => break,
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    })
}

/// One instance's part of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub instance_id: String,
    /// SSM's status: Pending, InProgress, Delayed, Success, Failed, TimedOut, Cancelled, …
    pub status: String,
    pub terminal: bool,
    pub success: bool,
    pub details: Option<String>,
    /// The plugins' exit code (the last plugin's that has one).
    pub exit_code: Option<i32>,
    /// The plugins' output (ListCommandInvocations returns the first 2,500 characters of each).
    pub output: String,
}

/// Where a command stands.
#[derive(Debug, Clone)]
pub struct CommandState {
    pub status: String,
    pub terminal: bool,
    pub details: Option<String>,
    pub invocations: Vec<Invocation>,
}

/// Whether a command's or an invocation's status is final.
fn command_terminal(status: &str) -> bool {
    matches!(status, "Success" | "Failed" | "TimedOut" | "Cancelled")
}

/// The command's status and every invocation with its output.
pub fn command_state<'a>(target: &'a Target, command_id: &'a str) -> crate::Boxed<'a, Result<CommandState, Error>> {
    crate::boxed(async move {
        let client = client(target).await?;
        let resource = format!("command {command_id}");
        let listed = call(&client, target, "ListCommands", &resource, json!({ "CommandId": command_id })).await?;
        let command = listed["Commands"].get(0).cloned().unwrap_or(Value::Null);
        let status = text(&command["Status"]);
        let mut invocations = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut input = json!({ "CommandId": command_id, "Details": true });
            set(&mut input, "NextToken", next.take());
            let page = call(&client, target, "ListCommandInvocations", &resource, input).await?;
            for inv in page["CommandInvocations"].as_array().map(Vec::as_slice).unwrap_or_default() {
                let status = text(&inv["Status"]).unwrap_or_else(|| "Pending".into());
                let plugins = inv["CommandPlugins"].as_array().map(Vec::as_slice).unwrap_or_default();
                let exit_code = plugins
                    .iter()
                    .rev()
                    .map(|p| p["ResponseCode"].as_i64().and_then(|c| i32::try_from(c).ok()).unwrap_or(0))
                    .find(|c| *c >= 0);
                let output: Vec<&str> =
                    plugins.iter().filter_map(|p| p["Output"].as_str()).filter(|o| !o.is_empty()).collect();
                invocations.push(Invocation {
                    instance_id: text(&inv["InstanceId"]).unwrap_or_default(),
                    terminal: command_terminal(&status),
                    success: status == "Success",
                    details: text(&inv["StatusDetails"]),
                    exit_code: if plugins.is_empty() { None } else { exit_code },
                    output: output.join("\n"),
                    status,
                });
            }
            match next_token(&page) {
                Some(t) => next = Some(t),
                None => break,
            }
        }
        Ok(CommandState {
            terminal: status.as_deref().is_some_and(command_terminal),
            status: status.unwrap_or_else(|| "Pending".to_string()),
            details: text(&command["StatusDetails"]),
            invocations,
        })
    })
}

/// Asks SSM to cancel a command on every instance still running it.
pub fn cancel_command<'a>(target: &'a Target, command_id: &'a str) -> crate::Boxed<'a, Result<(), Error>> {
    crate::boxed(async move {
        let client = client(target).await?;
        let resource = format!("command {command_id}");
        call(&client, target, "CancelCommand", &resource, json!({ "CommandId": command_id })).await?;
        Ok(())
    })
}

/// Starts an Automation; its execution id. `token` makes the start idempotent (SSM's client token).
pub fn start_automation<'a>(
    target: &'a Target,
    document: &'a str,
    version: Option<&'a str>,
    parameters: &'a BTreeMap<String, Vec<String>>,
    token: &'a str,
) -> crate::Boxed<'a, Result<String, Error>> {
    crate::boxed(async move {
        let client = client(target).await?;
        let mut input = json!({ "DocumentName": document, "ClientToken": token });
        set(&mut input, "DocumentVersion", version);
        if !parameters.is_empty() {
            input["Parameters"] = json!(parameters);
        }
        let resource = format!("Automation runbook `{document}`");
        let out = call(&client, target, "StartAutomationExecution", &resource, input).await?;
        text(&out["AutomationExecutionId"]).ok_or_else(|| Error {
            message: "SSM answered without an automation execution id".into(),
            retryable: false,
        })
    })
}

/// Where an Automation stands.
#[derive(Debug, Clone)]
pub struct AutomationState {
    pub status: String,
    pub terminal: bool,
    pub success: bool,
    pub current_step: Option<String>,
    pub failure: Option<String>,
    pub outputs: BTreeMap<String, Vec<String>>,
}

pub fn automation_state<'a>(target: &'a Target, id: &'a str) -> crate::Boxed<'a, Result<AutomationState, Error>> {
    crate::boxed(async move {
        let client = client(target).await?;
        let resource = format!("automation execution {id}");
        let input = json!({ "AutomationExecutionId": id });
        let out = call(&client, target, "GetAutomationExecution", &resource, input).await?;
        let a = &out["AutomationExecution"];
        if !a.is_object() {
            return Err(Error { message: format!("SSM did not describe {resource}"), retryable: true });
        }
        let status = text(&a["AutomationExecutionStatus"]).unwrap_or_else(|| "Pending".into());
        let success = matches!(status.as_str(), "Success" | "CompletedWithSuccess");
        let terminal = success
            || matches!(
                status.as_str(),
                "Failed" | "TimedOut" | "Cancelled" | "CompletedWithFailure" | "Rejected" | "Exited"
            );
        let outputs = a["Outputs"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        let values = v.as_array().map(Vec::as_slice).unwrap_or_default();
                        (k.clone(), values.iter().filter_map(text).collect())
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(AutomationState {
            status,
            terminal,
            success,
            current_step: text(&a["CurrentStepName"]),
            failure: text(&a["FailureMessage"]),
            outputs,
        })
    })
}

/// Stops an Automation (StopType Cancel).
pub fn stop_automation<'a>(target: &'a Target, id: &'a str) -> crate::Boxed<'a, Result<(), Error>> {
    crate::boxed(async move {
        let client = client(target).await?;
        let resource = format!("automation execution {id}");
        let input = json!({ "AutomationExecutionId": id, "Type": "Cancel" });
        call(&client, target, "StopAutomationExecution", &resource, input).await?;
        Ok(())
    })
}
