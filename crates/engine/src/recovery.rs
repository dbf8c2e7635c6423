//! Finding executions whose runner died (kill -9, power cut) and marking them `interrupted`.

use crate::Db;
use opsbook_core::{ExecStatus, StepStatus};
use opsbook_store::{Execution, StepRecord, Store, now_ms};

use crate::Result;

fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into())
}

/// Which process this is, beyond its PID (which the kernel reuses, and which means
/// something else after a reboot or in another PID namespace): the boot id and the
/// process's start time in clock ticks since boot, `BOOT8.TICKS`.
fn process_identity(pid: u32) -> Option<String> {
    let start = stat_field(pid, 19)?;
    Some(format!("{}.{start}", boot_id()))
}

/// Field `n` of `/proc/PID/stat`, counted after the command (field 2, in parentheses,
/// may hold anything): 0 is the state, 2 the process group, 19 the start time.
fn stat_field(pid: u32, n: usize) -> Option<String> {
    stat_after_command(pid)?.split_whitespace().nth(n).map(str::to_string)
}

/// `/proc/PID/stat` after the command: the fields [`stat_field`] counts, read once.
fn stat_after_command(pid: u32) -> Option<String> {
    let mut stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let start = stat.rfind(')')? + 1;
    stat.drain(..start);
    Some(stat)
}

/// The first 8 hex digits of this boot's id (read once: it does not change).
fn boot_id() -> &'static str {
    static BOOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|b| b.trim().chars().filter(char::is_ascii_hexdigit).take(8).collect())
            .unwrap_or_default()
    })
}

/// How a process group is recorded: `PGID:IDENTITY`, the identity of its leader (which
/// tells it from a later process given the same number).
pub(crate) fn process_record(pgid: u32) -> String {
    format!("{pgid}:{}", process_identity(pgid).unwrap_or_default())
}

/// Kills what is left of the recorded process groups (a step with targets runs several,
/// recorded space-separated); whether anything was killed.
fn kill_recorded(record: &str) -> bool {
    // Every group is killed: no short cut after the first.
    record.split_whitespace().map(kill_recorded_group).filter(|&k| k).count() > 0
}

/// Kills what is left of a recorded process group, if anything. The group is ours if its
/// leader is the recorded process, or, the leader gone, if any process is still in the
/// group (Linux gives no new process a PID that is still some group's id). Returns
/// whether anything was killed.
fn kill_recorded_group(record: &str) -> bool {
    let Some((pgid, identity)) = record.split_once(':') else { return false };
    let Ok(pgid) = pgid.parse::<i32>() else { return false };
    if pgid <= 1 {
        return false;
    }
    // A leader that is a zombie is still itself; a group of zombies only (killed at once by
    // the runner's guardian, not yet reaped) has nothing left to kill.
    let ours = match process_identity(pgid.unsigned_abs()) {
        Some(now) => now == identity,
        None => true,
    };
    ours && group_has_live_members(pgid)
        && nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL).is_ok()
}

/// Whether any process on this machine that is not a zombie is in process group `pgid`.
fn group_has_live_members(pgid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else { return false };
    dir.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()).any(|pid| {
        let Some(rest) = stat_after_command(pid) else { return false };
        let mut fields = rest.split_whitespace();
        let (state, group) = (fields.next(), fields.nth(1).and_then(|g| g.parse::<i32>().ok()));
        group == Some(pgid) && !matches!(state, Some("Z" | "X") | None)
    })
}

/// The owner string of this process: `local:HOST:PID:IDENTITY` (see [`process_identity`]).
pub fn local_owner() -> String {
    let pid = std::process::id();
    match process_identity(pid) {
        Some(identity) => format!("local:{}:{pid}:{identity}", hostname()),
        None => format!("local:{}:{pid}", hostname()),
    }
}

/// A local owner string, parsed: `local:HOST:PID[:IDENTITY]` (older records have no identity).
struct LocalOwner<'a> {
    host: &'a str,
    pid: u32,
    identity: Option<&'a str>,
}

fn parse_local(owner: &str) -> Option<LocalOwner<'_>> {
    let rest = owner.strip_prefix("local:")?;
    let (host, rest) = rest.split_once(':')?;
    let (pid, identity) = match rest.split_once(':') {
        Some((pid, identity)) => (pid, Some(identity)),
        None => (rest, None),
    };
    Some(LocalOwner { host, pid: pid.parse().ok()?, identity })
}

/// The PID of the process a local owner string names, if that very process is alive on
/// this host (same PID, same boot, same start time): safe to signal.
pub fn owner_pid(owner: &str) -> Option<u32> {
    let o = parse_local(owner)?;
    (o.host == hostname() && alive(&o)).then_some(o.pid)
}

fn alive(o: &LocalOwner<'_>) -> bool {
    match o.identity {
        Some(identity) => process_identity(o.pid).as_deref() == Some(identity),
        None => std::path::Path::new(&format!("/proc/{}", o.pid)).exists(),
    }
}

/// Whether the holder named by `owner` is gone: a local process on this host that is no
/// longer alive. Other owners (another host, a server) are judged by their lease.
pub(crate) fn holder_gone(owner: &str) -> bool {
    parse_local(owner).is_some_and(|o| o.host == hostname() && !alive(&o))
}

///
/// `me` takes over each one first, compare-and-set on the dead holder (a write fenced on
/// it): of several processes recovering at once (API nodes and workers on one database),
/// one does it, and none undoes a resume that happened since it looked.
pub(crate) async fn recover(store: &Db, me: &str) -> Result<Vec<String>> {
    let now = now_ms();
    let mut found = Vec::new();
    for mut exec in store.running().await? {
        let owner = exec.owner.clone().unwrap_or_default();
        let dead = match parse_local(&owner) {
            Some(o) if o.host == hostname() => !alive(&o),
            // Another host or a server worker: trust the lease.
            _ => exec.lease_expires_at.is_none_or(|t| t < now),
        };
        if !dead {
            continue;
        }
        if let Some(holder) = exec.owner.clone() {
            let mut taken = exec.clone();
            taken.owner = Some(me.to_string());
            taken.lease_expires_at = Some(now + 60_000);
            match store.update_execution(&taken, Some(&holder)).await {
                Ok(()) => exec = taken,
                Err(opsbook_store::Error::LostClaim(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let mut steps = store.steps(&exec.id).await?;
        // A wait whose holder died (a gate poll, a cancel, an override) that still waits
        // is simply let go: it is polled or decided again.
        if exec.status == ExecStatus::Waiting && steps.iter().any(|s| s.status == StepStatus::Waiting) {
            exec.owner = None;
            exec.lease_expires_at = None;
            store.update_execution(&exec, None).await?;
            continue;
        }
        // What the dead runner left running goes first: nothing may run beside a
        // resumed step or a rollback, nor finish unrecorded.
        let processes = store.processes(&exec.id).await?;
        let live: Vec<&String> = steps
            .iter()
            .filter(|s| s.status == StepStatus::Running || s.rollback_status == Some(StepStatus::Running))
            .map(|s| &s.step_id)
            .collect();
        let mut killed = Vec::new();
        for (step_id, record) in processes.iter().filter(|(id, _)| live.contains(&id)) {
            if kill_recorded(record) {
                killed.push(step_id.clone());
            }
            store.set_process(&exec.id, step_id, None).await?;
        }
        let during = cancel_running_steps(store, &mut steps, "the runner stopped", now).await?;
        let mut error = match during {
            Some(when) => format!("the runner ({owner}) stopped unexpectedly {when}"),
            None => format!("the runner ({owner}) stopped unexpectedly"),
        };
        if !killed.is_empty() {
            error.push_str(&format!(
                "; processes it left running (step {}) were killed",
                killed.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
            ));
        }
        end_interrupted(store, &mut exec, error, now).await?;
        found.push(exec.id);
    }
    Ok(found)
}

/// Marks the steps (or rollbacks) that were running as cancelled, saying what stopped
/// them; returns when that was, for the execution's error.
async fn cancel_running_steps(store: &Db, steps: &mut [StepRecord], what: &str, now: i64) -> Result<Option<String>> {
    let mut during = None;
    for s in steps.iter_mut() {
        // A step with targets: those running were cancelled with it.
        for t in &mut s.targets {
            if t.status == StepStatus::Running {
                t.status = StepStatus::Cancelled;
                t.finished_at = Some(now);
                t.error = Some(format!("interrupted: {what} while it ran here"));
            } else if t.status == StepStatus::Pending && s.status == StepStatus::Running {
                t.status = StepStatus::Skipped;
                t.error = Some(format!("not started: {what}"));
            }
            if t.rollback_status == Some(StepStatus::Running) {
                t.rollback_status = Some(StepStatus::Cancelled);
                t.rollback_error = Some(format!("interrupted: {what} during its rollback"));
            }
        }
        if s.status == StepStatus::Running {
            s.status = StepStatus::Cancelled;
            s.finished_at = Some(now);
            s.error = Some(format!("interrupted: {what} while this step was running"));
            store.update_step(s, None).await?;
            during = Some(format!("during step `{}`", s.step_id));
        } else if s.rollback_status == Some(StepStatus::Running) {
            s.rollback_status = Some(StepStatus::Cancelled);
            s.rollback_error = Some(format!("interrupted: {what} during this rollback"));
            store.update_step(s, None).await?;
            during = Some(format!("during the rollback of step `{}`", s.step_id));
        }
    }
    Ok(during)
}

async fn end_interrupted(store: &Db, exec: &mut Execution, error: String, now: i64) -> Result<()> {
    exec.status = ExecStatus::Interrupted;
    exec.finished_at = Some(now);
    exec.error = Some(error);
    exec.owner = None;
    exec.lease_expires_at = None;
    store.update_execution(exec, None).await?;
    Ok(())
}

/// Ends an execution still running here as `interrupted` because `what` (e.g. "the
/// server shut down"): what was running is cancelled, as a crash would leave it for
/// recovery, and `error` says why. Nothing happens to an execution no longer running.
pub(crate) async fn interrupt(store: &Db, id: &str, what: &str, error: String) -> Result<bool> {
    let mut exec = store.execution(id).await?;
    if exec.status != ExecStatus::Running {
        return Ok(false);
    }
    let now = now_ms();
    let mut steps = store.steps(&exec.id).await?;
    cancel_running_steps(store, &mut steps, what, now).await?;
    end_interrupted(store, &mut exec, error, now).await?;
    Ok(true)
}

/// Ends an execution that could not run (or whose runner broke) as failed, saying why.
pub(crate) async fn fail(store: &Db, id: &str, why: String) -> Result<()> {
    let mut exec = store.execution(id).await?;
    exec.status = ExecStatus::Failed;
    exec.error = Some(why);
    exec.finished_at = Some(now_ms());
    exec.owner = None;
    exec.lease_expires_at = None;
    store.update_execution(&exec, None).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_owner_names_this_very_process() {
        let me = local_owner();
        assert_eq!(owner_pid(&me), Some(std::process::id()));
        assert!(!holder_gone(&me));
        let o = parse_local(&me).unwrap();
        assert!(o.identity.is_some_and(|i| i.contains('.')), "{me}");
        // Same PID, another start (a reused PID, or before a reboot): not this process.
        let reused = format!("local:{}:{}:{}", o.host, o.pid, "00000000.1");
        assert_eq!(owner_pid(&reused), None);
        // PID 1 is alive, but under another identity than the one recorded.
        let stale = format!("local:{}:1:deadbeef.42", o.host);
        assert!(holder_gone(&stale));
        // Older records without an identity: the PID alone.
        assert_eq!(owner_pid(&format!("local:{}:1", o.host)), Some(1));
        // Other hosts and servers are judged by their lease, not here.
        assert!(!holder_gone("local:elsewhere:1:x.1"));
        assert!(!holder_gone("server:host:12"));
    }
}
