//! A command: exit 0 clear, 1 blocked (its first output line says why), anything else unknown.

use std::process::Stdio;

use crate::config::CommandCheck;
use crate::{BlockRecord, Checker};

pub(crate) async fn check(c: &Checker, cmd: &CommandCheck) -> Result<Vec<BlockRecord>, String> {
    let child = tokio::process::Command::new("sh")
        .args(["-c", &cmd.run])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run `{}`: {e}", cmd.run))?;
    let out = tokio::time::timeout(c.timeout, child.wait_with_output())
        .await
        .map_err(|_| format!("`{}` did not finish within {}", cmd.run, opsbook_core::Dur(c.timeout)))?
        .map_err(|e| format!("`{}`: {e}", cmd.run))?;
    let first = |b: &[u8]| String::from_utf8_lossy(b).lines().next().unwrap_or_default().trim().to_string();
    match out.status.code() {
        Some(0) => Ok(Vec::new()),
        Some(1) => {
            let why = first(&out.stdout);
            Ok(vec![BlockRecord {
                source: "command".into(),
                id: cmd.run.clone(),
                title: if why.is_empty() { format!("`{}` says blocked", cmd.run) } else { why },
                rule: "exit status 1".into(),
                ..BlockRecord::default()
            }])
        }
        other => {
            let err = first(&out.stderr);
            Err(format!(
                "`{}` exited with {}{}",
                cmd.run,
                other.map_or("a signal".to_string(), |c| format!("status {c}")),
                if err.is_empty() { String::new() } else { format!(": {err}") }
            ))
        }
    }
}
