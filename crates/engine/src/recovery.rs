//! Finding executions whose runner died (kill -9, power cut) and marking them `interrupted`.

use opsbook_core::{ExecStatus, StepStatus};
use opsbook_store::{Store, now_ms};

use crate::Result;

fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into())
}

/// The owner string of this process: `local:HOST:PID`.
pub fn local_owner() -> String {
    format!("local:{}:{}", hostname(), std::process::id())
}

/// The PID in a local owner string on this host.
pub fn owner_pid(owner: &str) -> Option<u32> {
    let rest = owner.strip_prefix("local:")?;
    let (host, pid) = rest.rsplit_once(':')?;
    if host != hostname() {
        return None;
    }
    pid.parse().ok()
}

fn alive(pid: u32) -> bool {
    pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists()
}

pub(crate) async fn recover<S: Store>(store: &S) -> Result<Vec<String>> {
    let now = now_ms();
    let mut found = Vec::new();
    for mut exec in store.running().await? {
        let owner = exec.owner.clone().unwrap_or_default();
        let dead = match owner_pid(&owner) {
            Some(pid) => !alive(pid),
            // Another host or a server worker: trust the lease.
            None => exec.lease_expires_at.is_none_or(|t| t < now),
        };
        if !dead {
            continue;
        }
        let mut steps = store.steps(&exec.id).await?;
        // A wait whose holder died (a gate poll, a cancel, an override) that still waits
        // is simply let go: it is polled or decided again.
        if exec.status == ExecStatus::Waiting && steps.iter().any(|s| s.status == StepStatus::Waiting) {
            exec.owner = None;
            exec.lease_expires_at = None;
            store.update_execution(&exec).await?;
            continue;
        }
        let mut during = None;
        for s in steps.iter_mut().filter(|s| s.status == StepStatus::Running) {
            s.status = StepStatus::Cancelled;
            s.finished_at = Some(now);
            s.error = Some("interrupted: the runner stopped while this step was running".into());
            store.update_step(s).await?;
            during = Some(s.step_id.clone());
        }
        exec.status = ExecStatus::Interrupted;
        exec.finished_at = Some(now);
        exec.error = Some(match during {
            Some(step) => format!("the runner ({owner}) stopped unexpectedly during step `{step}`"),
            None => format!("the runner ({owner}) stopped unexpectedly"),
        });
        exec.owner = None;
        exec.lease_expires_at = None;
        store.update_execution(&exec).await?;
        found.push(exec.id);
    }
    Ok(found)
}
