//! `via: ssm`: a target's script runs on an instance through AWS Systems Manager Run
//! Command (`AWS-RunShellScript`), one command per target and attempt.
//!
//! SSM keeps a command's parameters in its history (and CloudTrail logs them): the script
//! and its environment travel as the command's `commands`, so a script that names a
//! secret parameter is refused before anything is sent, and secret parameters are never
//! in its environment. On the instance, a fixed wrapper writes the script to a private
//! temporary directory, runs it with the step's shell (standard error into standard
//! output: SSM returns one), then prints `$OPSBOOK_OUTPUT` between markers before the
//! script's output, so that SSM's cut of long output (its first 2,500 characters here)
//! takes the end of the output, never the outputs. A timeout or a cancel cancels the
//! command in SSM.

use std::time::{Duration, Instant};

use opsbook_core::document::Shell;
use opsbook_store::Stream;
use tokio::sync::mpsc;

use super::ssh::quote;
use crate::cancel::Cancel;
use crate::process::{Chunk, Exit};

/// The SSM document every target's script runs with.
pub(crate) const DOCUMENT: &str = "AWS-RunShellScript";

/// The first pause between polls; each pause is half again as long, up to `MAX_POLL`.
const FIRST_POLL: Duration = Duration::from_millis(300);
const MAX_POLL: Duration = Duration::from_secs(5);
/// Polls that fail in a row (after the call's own retries) before the attempt fails.
const POLL_FAILURES: u32 = 5;

/// The job's exit when SSM could not run the script (the message is on standard error):
/// ssh's, which the fleet reads the same way.
const SSM_FAILED: i32 = super::ssh::SSH_FAILED;

/// The command SSM runs on the instance: the environment as `export` lines, the script
/// in a quoted here-document (nothing in it is expanded), and the wrapper.
pub(crate) fn command(env: &[(String, String)], text: &str, shell: Shell, marker: &str) -> String {
    let mut fence = format!("OPSBOOK_SCRIPT_{marker}");
    fence.retain(|c| c.is_ascii_alphanumeric() || c == '_');
    let mut c = String::from(
        "d=$(mktemp -d 2>/dev/null || mktemp -d -t opsbook.XXXXXX) || { echo \"opsbook: cannot make a temporary directory on $(hostname)\"; exit 125; }\n\
         trap 'rm -rf \"$d\"' EXIT\n\
         OPSBOOK_OUTPUT=\"$d/o\"; export OPSBOOK_OUTPUT\n",
    );
    for (k, v) in env.iter().filter(|(k, _)| k != "OPSBOOK_OUTPUT") {
        c.push_str(&format!("export {k}={}\n", quote(v)));
    }
    c.push_str(&format!("cat >\"$d/s\" <<'{fence}'\n{text}\n{fence}\n"));
    let argv: Vec<String> = shell.argv().iter().map(|a| quote(a)).collect();
    c.push_str(&format!("{} \"$d/s\" >\"$d/out\" 2>&1 </dev/null; rc=$?\n", argv.join(" ")));
    c.push_str(&format!(
        "if [ -s \"$d/o\" ]; then printf '%s\\n' '{marker}'; cat \"$d/o\"; printf '\\n%s\\n' '{marker}-end'; fi\n\
         cat \"$d/out\"\nexit \"$rc\"\n"
    ));
    c
}

/// One target's attempt through SSM: where the calls go, the instance, what it runs and
/// the marker its outputs come after.
pub(crate) struct Job {
    pub aws: opsbook_aws::Target,
    pub instance: String,
    pub command: String,
    pub marker: String,
}

/// Runs `command` on `instance`: sends it, polls it until it ends (its output then goes
/// to `out` as the script's, with the outputs after `marker`), or until `timeout` or the
/// cancel at `level` (it is then cancelled in SSM).
pub(crate) async fn run(
    job: &Job,
    timeout: Duration,
    cancel: &Cancel,
    level: u8,
    out: mpsc::Sender<Chunk>,
) -> std::io::Result<Exit> {
    let Job { aws, instance, command, marker } = job;
    let say = |text: String| {
        let out = out.clone();
        async move {
            let _ = out.send(Chunk { stream: Stream::Stderr, data: format!("{text}\n").into_bytes() }).await;
        }
    };
    let deadline = Instant::now() + timeout;
    let ids = [instance.clone()];
    let params = std::collections::BTreeMap::from([
        ("commands".to_string(), vec![command.clone()]),
        ("executionTimeout".to_string(), vec![timeout.as_secs().max(1).to_string()]),
    ]);
    let tags = Default::default();
    let req = opsbook_aws::ssm::CommandRequest {
        document: DOCUMENT,
        document_version: None,
        instance_ids: &ids,
        tags: &tags,
        parameters: &params,
        max_concurrency: None,
        max_errors: None,
        comment: Some("opsbook"),
    };
    // Not abandoned half way: a command SSM took is cancelled there if need be (below).
    let id = match opsbook_aws::ssm::send_command(aws, &req).await {
        Ok(id) => id,
        Err(e) => {
            say(format!("SSM SendCommand to {instance}: {}", e.message)).await;
            return Ok(Exit::Code(SSM_FAILED));
        }
    };
    let mut pause = FIRST_POLL;
    let mut failures = 0;
    loop {
        let stop = tokio::select! {
            biased;
            _ = cancel.reached(level) => Some(Exit::Cancelled),
            _ = tokio::time::sleep_until(deadline.into()) => Some(Exit::TimedOut),
            _ = tokio::time::sleep(pause) => None,
        };
        if let Some(exit) = stop {
            match tokio::time::timeout(Duration::from_secs(15), opsbook_aws::ssm::cancel_command(aws, &id)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => say(format!("warning: SSM CancelCommand {id}: {}", e.message)).await,
                Err(_) => say(format!("warning: SSM CancelCommand {id}: no answer within 15s")).await,
            }
            return Ok(exit);
        }
        pause = (pause * 3 / 2).min(MAX_POLL);
        let state = match opsbook_aws::ssm::command_state(aws, &id).await {
            Ok(s) => s,
            Err(e) if e.retryable && failures + 1 < POLL_FAILURES => {
                failures += 1;
                continue;
            }
            Err(e) => {
                say(format!("SSM command {id} on {instance}: {}", e.message)).await;
                return Ok(Exit::Code(SSM_FAILED));
            }
        };
        failures = 0;
        let Some(inv) = state.invocations.into_iter().find(|i| i.instance_id == *instance) else {
            if state.terminal {
                let why = state.details.unwrap_or(state.status);
                say(format!("SSM command {id} ended ({why}) without running on {instance}")).await;
                return Ok(Exit::Code(SSM_FAILED));
            }
            continue;
        };
        if !inv.terminal {
            continue;
        }
        let Some(code) = inv.exit_code else {
            // Never ran the script (undeliverable, the instance gone, SSM's own timeout).
            let why = inv.details.unwrap_or_else(|| inv.status.clone());
            say(format!("SSM did not run the script on {instance}: {why}")).await;
            return Ok(match inv.status.as_str() {
                "TimedOut" => Exit::TimedOut,
                "Cancelled" => Exit::Cancelled,
                _ => Exit::Code(SSM_FAILED),
            });
        };
        say(super::ssh::started_line(marker)).await;
        let (outputs, shown) = split(&inv.output, marker);
        let mut data = shown.into_bytes();
        if !data.is_empty() && !data.ends_with(b"\n") {
            data.push(b'\n');
        }
        if let Some(o) = outputs {
            data.extend_from_slice(format!("{marker}\n{o}").as_bytes());
        }
        let _ = out.send(Chunk { stream: Stream::Stdout, data }).await;
        return Ok(match inv.status.as_str() {
            "TimedOut" => Exit::TimedOut,
            _ => Exit::Code(code),
        });
    }
}

/// Why a script may not go through SSM: it names a secret parameter (by template or
/// variable), or its rendered text holds a secret's value. `None` when it may.
pub(crate) fn secrets_refused(
    run: &crate::runner::Run<'_, '_>,
    script: &opsbook_core::step::run::Script,
    rendered: &str,
) -> Option<String> {
    let mut text = script.template.clone();
    for v in script.env.values() {
        text.push('\n');
        text.push_str(v);
    }
    let named: Vec<&str> = (run.rb.params.iter())
        .filter(|p| p.is_secret() && opsbook_core::template::mentions(&text, &p.name))
        .map(|p| p.name.as_str())
        .collect();
    let carried = run.params.secret_values().iter().any(|s| !s.is_empty() && rendered.contains(s.as_str()));
    if named.is_empty() && !carried {
        return None;
    }
    let which = if named.is_empty() {
        "a secret parameter".to_string()
    } else {
        format!("secret parameter(s) {}", named.join(", "))
    };
    Some(format!(
        "through SSM the script and its environment are kept in the command's history (and CloudTrail): it may \
         not carry {which}; read the secret on the instance instead (e.g. from Secrets Manager)"
    ))
}

/// The outputs section (between the markers, at the start) and the rest of the output.
fn split(output: &str, marker: &str) -> (Option<String>, String) {
    let Some(rest) = output.strip_prefix(&format!("{marker}\n")) else {
        return (None, output.to_string());
    };
    let end = format!("\n{marker}-end\n");
    match rest.find(&end) {
        Some(at) => (Some(format!("{}\n", &rest[..at])), rest[at + end.len()..].to_string()),
        // Cut by SSM inside the outputs: the outputs it kept, nothing after them.
        None => (Some(rest.to_string()), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outputs_come_first_and_are_split_from_the_script_output() {
        let (o, rest) = split("::m::\nversion=2\n\n::m::-end\nhello\n", "::m::");
        assert_eq!(o.as_deref(), Some("version=2\n\n"));
        assert_eq!(rest, "hello\n");
        assert_eq!(split("plain\n", "::m::"), (None, "plain\n".to_string()));
    }

    #[test]
    fn the_script_is_quoted_data_in_the_command() {
        let c = command(&[("OPSBOOK_TARGET".into(), "i-1'x".into())], "echo $HOME '{{x}}'", Shell::Sh, "::m1::");
        assert!(c.contains("export OPSBOOK_TARGET=\"i-1'x\"\n"), "{c}");
        assert!(c.contains("<<'OPSBOOK_SCRIPT_m1'\necho $HOME '{{x}}'\nOPSBOOK_SCRIPT_m1\n"), "{c}");
    }
}
