//! Finding executions whose runner died (kill -9, power cut) and marking them `interrupted`.

use crate::Db;
use opsbook_core::{ExecStatus, StepStatus};
use opsbook_store::{Execution, Phase, StepRecord, Store, now_ms};

use crate::Result;

fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into())
}

/// Which process this is, beyond its PID (which the kernel reuses, and which means
/// something else after a reboot or in another PID namespace): the boot id and the
/// process's start time in clock ticks since boot, `BOOT8.TICKS`.
fn process_identity(pid: u32) -> Option<String> {
    stat_field(pid, 19).map(|start| identity(&start))
}

/// The identity of a process started at `start` (field 19 of its stat) in this boot.
fn identity(start: &str) -> String {
    format!("{}.{start}", boot_id())
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
    pids().any(|pid| {
        let Some(rest) = stat_after_command(pid.unsigned_abs()) else { return false };
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
    // A zombie (killed, not yet reaped by a parent that does not wait, as in a container
    // without an init) runs nothing any more.
    let Some(stat) = stat_after_command(o.pid) else { return false };
    let mut fields = stat.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return false;
    }
    match o.identity {
        // Field 19, the start time (field 0 was read above).
        Some(id) => fields.nth(18).map(identity).as_deref() == Some(id),
        None => true,
    }
}

/// Whether the holder named by `owner` is gone: a local process on this host that is no
/// longer alive. Other owners (another host, a server) are judged by their lease.
pub(crate) fn holder_gone(owner: &str) -> bool {
    parse_local(owner).is_some_and(|o| o.host == hostname() && !alive(&o))
}

/// Finds the executions whose runner died and ends them `interrupted`, killing what it
/// left running; their ids.
///
/// `me` takes over each one first, compare-and-set on the dead holder (a write fenced on
/// it): of several processes recovering at once (API nodes and workers on one database),
/// one does it, and none undoes a resume that happened since it looked.
pub(crate) async fn recover(store: &Db, me: &str, lease_ms: i64) -> Result<Vec<String>> {
    let now = now_ms();
    let mut dead = Vec::new();
    let mut failed = None;
    for mut exec in store.running().await? {
        let owner = exec.owner.clone().unwrap_or_default();
        let gone = match parse_local(&owner) {
            Some(o) if o.host == hostname() => !alive(&o),
            // Another host or a server worker: trust the lease.
            _ => exec.lease_expires_at.is_none_or(|t| t < now),
        };
        if !gone {
            continue;
        }
        if let Some(holder) = exec.owner.clone() {
            let mut taken = exec.clone();
            taken.owner = Some(me.to_string());
            // One lease, as a runner's claim: should this recovery fail half-way (its
            // writes refused), the next one looks again that much later.
            taken.lease_expires_at = Some(now + lease_ms);
            match store.update_execution(&taken, Some(&holder)).await {
                Ok(()) => exec = taken,
                Err(opsbook_store::Error::LostClaim(_)) => continue,
                Err(e) => {
                    failed = Some(e.into());
                    break;
                }
            }
        }
        match take_up(store, exec, owner).await {
            Ok(Some(d)) => dead.push(d),
            Ok(None) => {}
            // Those taken up so far are still ended.
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    // Groups not on record (a step's first moments, before its group is written down)
    // are found by the variables of their steps. Twice, since a child between its spawn and its
    // `exec` does not carry them yet.
    let spawns: Vec<Spawn<'_>> =
        dead.iter().filter(|d| on_this_host(&d.owner)).flat_map(|d| spawns(&d.exec.id, &d.steps)).collect();
    let mut unrecorded = Vec::new();
    if !spawns.is_empty() {
        for pause in [0, 50] {
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            unrecorded.extend(kill_unrecorded(&spawns));
        }
    }
    for (exec_id, step_id) in unrecorded {
        if let Some(d) = dead.iter_mut().find(|d| d.exec.id == exec_id && !d.killed.contains(&step_id)) {
            d.killed.push(step_id);
        }
    }
    // Each one taken over is ended, whatever happens to another: one left taken over but
    // not ended waits out the lease before anyone looks at it again.
    let mut found = Vec::new();
    for d in dead {
        let id = d.exec.id.clone();
        match end_dead(store, d, now).await {
            Ok(()) => found.push(id),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(found),
    }
}

/// Ends an execution whose runner died as `interrupted`, saying what was running and
/// what was killed.
async fn end_dead(store: &Db, Dead { mut exec, mut steps, owner, killed }: Dead, now: i64) -> Result<()> {
    let during = cancel_running_steps(store, &mut steps, "the runner stopped", now).await?;
    let mut error = match during {
        Some(when) => format!("the runner ({owner}) stopped unexpectedly {when}"),
        None => format!("the runner ({owner}) stopped unexpectedly"),
    };
    // A prerequisite check has no step id.
    let (checks, steps): (Vec<String>, Vec<String>) = killed.into_iter().partition(String::is_empty);
    if !steps.is_empty() {
        error.push_str(&format!(
            "; processes it left running (step {}) were killed",
            steps.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    if !checks.is_empty() {
        error.push_str("; processes a prerequisite check left running were killed");
    }
    end_interrupted(store, &mut exec, error, now).await
}

/// Kills what the dead runner of `exec` (taken over) left on record as running; `None`
/// for a wait, simply let go.
async fn take_up(store: &Db, mut exec: Execution, owner: String) -> Result<Option<Dead>> {
    let steps = store.steps(&exec.id).await?;
    // A wait whose holder died (a gate poll, a cancel, an override) that still waits
    // is simply let go: it is polled or decided again.
    if exec.status == ExecStatus::Waiting && steps.iter().any(|s| s.status == StepStatus::Waiting) {
        exec.owner = None;
        exec.lease_expires_at = None;
        store.update_execution(&exec, None).await?;
        return Ok(None);
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
    Ok(Some(Dead { exec, steps, owner, killed }))
}

/// An execution whose runner died, taken over and being ended.
struct Dead {
    exec: Execution,
    steps: Vec<StepRecord>,
    owner: String,
    /// The steps whose processes were killed.
    killed: Vec<String>,
}

/// What may have processes running in an execution whose runner died: its running steps'
/// current attempts and rollbacks (per target in a step with targets), or its
/// prerequisite checks when no step has started. What an ended step, target or attempt
/// left running is not ours to kill.
fn spawns<'a>(exec_id: &'a str, steps: &'a [StepRecord]) -> Vec<Spawn<'a>> {
    let spawn = |step_id, phase, attempt, target| Spawn { exec_id, step_id, phase, attempt, target };
    let mut spawns = Vec::new();
    if steps.iter().all(|s| s.status == StepStatus::Pending && s.rollback_status.is_none()) {
        spawns.push(spawn("", Phase::Check, None, None));
    }
    for s in steps {
        let id = s.step_id.as_str();
        if s.status == StepStatus::Running && s.targets.is_empty() {
            spawns.push(spawn(id, Phase::Step, Some(s.attempts), None));
        }
        if s.rollback_status == Some(StepStatus::Running) && s.targets.is_empty() {
            spawns.push(spawn(id, Phase::Rollback, None, None));
        }
        for t in &s.targets {
            if s.status == StepStatus::Running && t.status == StepStatus::Running {
                spawns.push(spawn(id, Phase::Step, Some(t.attempts), Some(&t.name)));
            }
            if t.rollback_status == Some(StepStatus::Running) {
                spawns.push(spawn(id, Phase::Rollback, None, Some(&t.name)));
            }
        }
    }
    spawns
}

/// Whether the runner named by `owner` ran on this host (a local runner or a server's).
fn on_this_host(owner: &str) -> bool {
    let local = owner.strip_prefix("server:").map(|rest| format!("local:{rest}"));
    parse_local(local.as_deref().unwrap_or(owner)).is_some_and(|o| o.host == hostname())
}

/// One run of a script that may have processes: they carry `OPSBOOK_EXECUTION_ID`,
/// `OPSBOOK_STEP_ID` (empty for a prerequisite check), `OPSBOOK_PHASE`, `OPSBOOK_ATTEMPT`
/// (any, when `None`) and `OPSBOOK_TARGET` (absent when `None`).
#[derive(Debug)]
struct Spawn<'a> {
    exec_id: &'a str,
    step_id: &'a str,
    phase: Phase,
    attempt: Option<i64>,
    target: Option<&'a str>,
}

impl Spawn<'_> {
    fn matches(&self, vars: &StepVars) -> bool {
        vars.execution_id == self.exec_id
            && vars.step_id == self.step_id
            && vars.phase == self.phase.as_str()
            && self.attempt.is_none_or(|a| vars.attempt == a.to_string())
            && vars.target.as_deref() == self.target
    }
}

/// The variables a step's process was started with (`/proc/PID/environ`: its start,
/// whatever it set since).
#[derive(Debug, Default)]
struct StepVars {
    execution_id: String,
    step_id: String,
    phase: String,
    attempt: String,
    target: Option<String>,
}

fn step_vars(pid: i32) -> Option<StepVars> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let mut vars = StepVars::default();
    for var in environ.split(|&b| b == 0) {
        let Some(var) = var.strip_prefix(b"OPSBOOK_") else { continue };
        let Some((name, value)) = std::str::from_utf8(var).ok().and_then(|v| v.split_once('=')) else { continue };
        let value = value.to_string();
        match name {
            "EXECUTION_ID" => vars.execution_id = value,
            "STEP_ID" => vars.step_id = value,
            "PHASE" => vars.phase = value,
            "ATTEMPT" => vars.attempt = value,
            "TARGET" => vars.target = Some(value),
            _ => {}
        }
    }
    (!vars.execution_id.is_empty()).then_some(vars)
}

/// Kills the processes of `spawns` found on this machine, by their variables (a leader's
/// whole group; a process whose leader is gone, itself: its group may be another's by
/// now); which (execution, step) they belonged to.
fn kill_unrecorded(spawns: &[Spawn<'_>]) -> Vec<(String, String)> {
    let me = std::process::id().cast_signed();
    let mut killed = Vec::new();
    for pid in pids().filter(|&pid| pid != me) {
        let Some(vars) = step_vars(pid) else { continue };
        let Some(spawn) = spawns.iter().find(|s| s.matches(&vars)) else { continue };
        if kill_found(nix::unistd::Pid::from_raw(pid)).is_ok() {
            killed.push((spawn.exec_id.to_string(), spawn.step_id.to_string()));
        }
    }
    killed
}

/// The processes on this machine (as `/proc` lists them).
pub(crate) fn pids() -> impl Iterator<Item = i32> {
    let dir = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    dir.filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
}

/// Kills a step's process found by a scan: its whole group if it leads one (and the group
/// is not this process's), else itself, since the group of a process whose leader is gone
/// may be another's by now.
pub(crate) fn kill_found(pid: nix::unistd::Pid) -> nix::Result<()> {
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::getpgid;
    match getpgid(Some(pid)) {
        Ok(pgid) if pgid == pid && getpgid(None).ok() != Some(pgid) => killpg(pgid, Signal::SIGKILL),
        _ => kill(pid, Signal::SIGKILL),
    }
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

    /// A dead runner's processes whose group never made it to the store are found by
    /// their variables: the running attempt's and the running target's, not what an
    /// earlier attempt, an ended target or another execution left behind.
    #[test]
    fn unrecorded_processes_of_live_spawns_are_killed_and_no_others() {
        use std::os::unix::process::CommandExt;
        let mut a = StepRecord::pending("e1", 0, "a", "a", "run");
        a.status = StepStatus::Running;
        a.attempts = 2;
        let mut fan = StepRecord::pending("e1", 1, "fan", "fan", "run");
        fan.status = StepStatus::Running;
        fan.targets = vec![opsbook_store::TargetRecord::pending("x"), opsbook_store::TargetRecord::pending("y")];
        fan.targets[0].status = StepStatus::Succeeded;
        fan.targets[0].attempts = 1;
        fan.targets[1].status = StepStatus::Running;
        fan.targets[1].attempts = 1;
        let steps = [a, fan];
        let start = |exec: &str, step: &str, attempt: &str, target: Option<&str>| {
            let mut cmd = std::process::Command::new("sleep");
            cmd.arg("30").process_group(0).env("OPSBOOK_EXECUTION_ID", exec).env("OPSBOOK_STEP_ID", step);
            cmd.env("OPSBOOK_PHASE", "step").env("OPSBOOK_ATTEMPT", attempt);
            if let Some(t) = target {
                cmd.env("OPSBOOK_TARGET", t);
            }
            let child = cmd.spawn().unwrap();
            // Until it has exec'd, /proc shows the test's own environment, not the step's.
            let comm = format!("/proc/{}/comm", child.id());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
                assert!(std::time::Instant::now() < deadline, "sleep never started");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            child
        };
        let mut live = [start("e1", "a", "2", None), start("e1", "fan", "1", Some("y"))];
        let mut spared = [start("e1", "a", "1", None), start("e1", "fan", "1", Some("x")), start("e2", "a", "2", None)];
        let mut killed = kill_unrecorded(&spawns("e1", &steps));
        killed.sort();
        let expected = [("e1".to_string(), "a".to_string()), ("e1".to_string(), "fan".to_string())];
        assert_eq!(killed, expected);
        for child in &mut live {
            let status = child.wait().unwrap();
            assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
        }
        for child in &mut spared {
            assert!(child.try_wait().unwrap().is_none(), "spared");
            child.kill().unwrap();
            child.wait().unwrap();
        }
        // No step started: a prerequisite check may be running, and only then.
        let pending = [StepRecord::pending("e1", 0, "a", "a", "run")];
        let checks = spawns("e1", &pending);
        assert!(matches!(checks[..], [Spawn { step_id: "", phase: Phase::Check, attempt: None, .. }]), "{checks:?}");
        assert!(spawns("e1", &steps).iter().all(|s| s.phase != Phase::Check));
    }
}
