//! Systems Manager: Run Command (SendCommand, its invocations, CancelCommand), the
//! managed instances (DescribeInstanceInformation) and Automation
//! (StartAutomationExecution, GetAutomationExecution, StopAutomationExecution).

use std::collections::BTreeMap;

use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::{
    CommandInvocationStatus, CommandStatus, InstanceInformationStringFilter, StopType, Target as SsmTarget,
};

use crate::{Call, Error, Target};

async fn client(target: &Target) -> Result<Client, Error> {
    Ok(Client::new(&crate::config(target).await?))
}

fn failed<E>(target: &Target, action: &str, resource: &str, e: &aws_sdk_ssm::error::SdkError<E>) -> Error
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_smithy_types::error::metadata::ProvideErrorMetadata;
    let code = e.as_service_error().and_then(ProvideErrorMetadata::code);
    let message = e.as_service_error().and_then(ProvideErrorMetadata::message).unwrap_or("");
    match code {
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
        let mut call = client
            .send_command()
            .document_name(req.document)
            .set_document_version(req.document_version.map(str::to_string))
            .set_max_concurrency(req.max_concurrency.map(str::to_string))
            .set_max_errors(req.max_errors.map(str::to_string))
            .set_comment(req.comment.map(|c| c.chars().take(100).collect()));
        if !req.instance_ids.is_empty() {
            call = call.set_instance_ids(Some(req.instance_ids.to_vec()));
        }
        for (key, values) in req.tags {
            let t = SsmTarget::builder().key(format!("tag:{key}")).set_values(Some(values.clone())).build();
            call = call.targets(t);
        }
        for (k, v) in req.parameters {
            call = call.parameters(k, v.clone());
        }
        let resource = format!("document `{}`", req.document);
        let out = call.send().await.map_err(|e| failed(target, "ssm:SendCommand", &resource, &e))?;
        out.command()
            .and_then(|c| c.command_id())
            .map(str::to_string)
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
        let resource = "managed instances";
        let mut ids = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut call = client.describe_instance_information().max_results(50).set_next_token(next.take());
            for (key, values) in tags {
                let filter = InstanceInformationStringFilter::builder()
                    .key(format!("tag:{key}"))
                    .set_values(Some(values.clone()))
                    .build()
                    .map_err(|e| Error::fatal(format!("tag filter `{key}`: {e}")))?;
                call = call.filters(filter);
            }
            let page =
                call.send().await.map_err(|e| failed(target, "ssm:DescribeInstanceInformation", resource, &e))?;
            ids.extend(page.instance_information_list().iter().filter_map(|i| i.instance_id()).map(str::to_string));
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
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

fn invocation_terminal(s: &CommandInvocationStatus) -> bool {
    matches!(
        s,
        CommandInvocationStatus::Success
            | CommandInvocationStatus::Failed
            | CommandInvocationStatus::TimedOut
            | CommandInvocationStatus::Cancelled
    )
}

/// The command's status and every invocation with its output.
pub fn command_state<'a>(target: &'a Target, command_id: &'a str) -> crate::Boxed<'a, Result<CommandState, Error>> {
    crate::boxed(async move {
        let client = client(target).await?;
        let resource = format!("command {command_id}");
        let listed = client
            .list_commands()
            .command_id(command_id)
            .send()
            .await
            .map_err(|e| failed(target, "ssm:ListCommands", &resource, &e))?;
        let command = listed.commands().first().cloned();
        let status = command.as_ref().and_then(|c| c.status().cloned());
        let terminal = matches!(
            status,
            Some(CommandStatus::Success | CommandStatus::Failed | CommandStatus::TimedOut | CommandStatus::Cancelled)
        );
        let mut invocations = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = client
                .list_command_invocations()
                .command_id(command_id)
                .details(true)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| failed(target, "ssm:ListCommandInvocations", &resource, &e))?;
            for inv in page.command_invocations() {
                let status = inv.status().cloned().unwrap_or(CommandInvocationStatus::Pending);
                let plugins = inv.command_plugins();
                let exit_code = plugins.iter().rev().map(|p| p.response_code()).find(|c| *c >= 0);
                let output: Vec<&str> = plugins.iter().filter_map(|p| p.output()).filter(|o| !o.is_empty()).collect();
                invocations.push(Invocation {
                    instance_id: inv.instance_id().unwrap_or_default().to_string(),
                    terminal: invocation_terminal(&status),
                    success: status == CommandInvocationStatus::Success,
                    status: status.as_str().to_string(),
                    details: inv.status_details().map(str::to_string),
                    exit_code: if plugins.is_empty() { None } else { exit_code },
                    output: output.join("\n"),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(CommandState {
            status: status.map_or_else(|| "Pending".to_string(), |s| s.as_str().to_string()),
            terminal,
            details: command.and_then(|c| c.status_details().map(str::to_string)),
            invocations,
        })
    })
}

/// Asks SSM to cancel a command on every instance still running it.
pub fn cancel_command<'a>(target: &'a Target, command_id: &'a str) -> crate::Boxed<'a, Result<(), Error>> {
    crate::boxed(async move {
        let client = client(target).await?;
        let resource = format!("command {command_id}");
        client
            .cancel_command()
            .command_id(command_id)
            .send()
            .await
            .map_err(|e| failed(target, "ssm:CancelCommand", &resource, &e))?;
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
        let mut call = client
            .start_automation_execution()
            .document_name(document)
            .set_document_version(version.map(str::to_string))
            .client_token(token);
        for (k, v) in parameters {
            call = call.parameters(k, v.clone());
        }
        let resource = format!("Automation runbook `{document}`");
        let out = call.send().await.map_err(|e| failed(target, "ssm:StartAutomationExecution", &resource, &e))?;
        out.automation_execution_id().map(str::to_string).ok_or_else(|| Error {
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
        use aws_sdk_ssm::types::AutomationExecutionStatus as S;
        let client = client(target).await?;
        let resource = format!("automation execution {id}");
        let out = client
            .get_automation_execution()
            .automation_execution_id(id)
            .send()
            .await
            .map_err(|e| failed(target, "ssm:GetAutomationExecution", &resource, &e))?;
        let Some(a) = out.automation_execution() else {
            return Err(Error { message: format!("SSM did not describe {resource}"), retryable: true });
        };
        let status = a.automation_execution_status().cloned().unwrap_or(S::Pending);
        let success = matches!(status, S::Success | S::CompletedWithSuccess);
        let terminal = success
            || matches!(
                status,
                S::Failed | S::Timedout | S::Cancelled | S::CompletedWithFailure | S::Rejected | S::Exited
            );
        Ok(AutomationState {
            status: status.as_str().to_string(),
            terminal,
            success,
            current_step: a.current_step_name().map(str::to_string),
            failure: a.failure_message().map(str::to_string),
            outputs: a.outputs().map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
        })
    })
}

/// Stops an Automation (StopType Cancel).
pub fn stop_automation<'a>(target: &'a Target, id: &'a str) -> crate::Boxed<'a, Result<(), Error>> {
    crate::boxed(async move {
        let client = client(target).await?;
        let resource = format!("automation execution {id}");
        client
            .stop_automation_execution()
            .automation_execution_id(id)
            .r#type(StopType::Cancel)
            .send()
            .await
            .map_err(|e| failed(target, "ssm:StopAutomationExecution", &resource, &e))?;
        Ok(())
    })
}
