//! Running one child process in its own process group, streaming its output,
//! and killing the whole group on timeout or cancellation.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use opsbook_store::Stream;
use process_wrap::tokio::{CommandWrap, ProcessGroup};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use crate::cancel::Cancel;

/// How long output may still arrive after the leader exited: a background process
/// that inherited the pipes must not hold the step open.
const DRAIN: Duration = Duration::from_millis(500);

/// What to run.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// Time between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Cancellation level that stops this process (1 for steps, 2 for rollbacks).
    pub cancel_level: u8,
    pub parent_death: ParentDeath,
    /// Written to the process's standard input, which then stays open until it ends (an
    /// SSH target's script, and the line whose end tells the remote side to stop it).
    /// `None`: /dev/null.
    pub stdin: Option<Vec<u8>>,
}

/// What happens to a step's shell when its runner dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParentDeath {
    /// Its process group is killed at once: by the guardian process when `main` started
    /// one ([`crate::guardian`]), else by a parent-death signal on the shell (spawning then
    /// forks the runner instead of vforking: 0.3 ms a step, about 0.6 ms in a server).
    #[default]
    Kill,
    /// It runs on until the next recovery kills its recorded process group.
    LeaveToRecovery,
}

/// How the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    TimedOut,
    Cancelled,
}

/// A chunk of output, split into lines by the receiver.
pub struct Chunk {
    pub stream: Stream,
    pub data: Vec<u8>,
}

/// Kills the group if the run is abandoned (the future dropped) before the child ended,
/// and tells the guardian, which watches it while the leader lives, when that is over.
struct GroupGuard {
    pgid: Option<Pid>,
    guardian: Option<&'static crate::guardian::Guardian>,
}

impl GroupGuard {
    /// The leader ended: nothing is left to kill on drop or on the runner's death.
    fn leader_ended(&mut self) {
        if let (Some(pgid), Some(g)) = (self.pgid.take(), self.guardian) {
            g.release(pgid.as_raw());
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        self.leader_ended();
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 86_400)
}

/// Gives the child a parent-death signal: if the runner dies (kill -9), the step's shell
/// is killed with it instead of running on unowned (what it started is killed by the next
/// command's recovery, from the recorded process group).
#[allow(unsafe_code)]
fn parent_death_signal(c: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the child between fork and exec. It only makes the
    // prctl(2) system call, which is async-signal-safe, allocates nothing and touches no
    // memory shared with the parent.
    unsafe {
        c.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from));
    }
}

/// Spawns the process and drives it to the end. Output chunks go to `out` as they arrive;
/// the receiver must be polled concurrently (e.g. with `join!`). `started` gets the
/// process group's id as soon as it exists.
pub async fn run(
    spec: &ProcessSpec,
    cancel: &Cancel,
    out: mpsc::Sender<Chunk>,
    started: Option<tokio::sync::oneshot::Sender<u32>>,
) -> io::Result<Exit> {
    let (program, args) = spec.argv.split_first().ok_or_else(|| io::Error::other("empty command"))?;
    let guardian = match spec.parent_death {
        ParentDeath::Kill => crate::guardian::get(),
        ParentDeath::LeaveToRecovery => None,
    };
    let mark = guardian.map(|g| g.mark());
    let mut cmd = CommandWrap::with_new(program, |c| {
        if spec.parent_death == ParentDeath::Kill && guardian.is_none() {
            parent_death_signal(c);
        }
        if let Some((_, value)) = &mark {
            c.env(crate::guardian::MARK, value);
        }
        for name in opsbook_core::secret::private_env() {
            c.env_remove(name);
        }
        c.args(args)
            .current_dir(&spec.cwd)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(if spec.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    });
    cmd.wrap(ProcessGroup::leader());
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            if let (Some(g), Some((spawn, _))) = (guardian, &mark) {
                g.unmark(*spawn);
            }
            return Err(e);
        }
    };
    if let (Some(tx), Some(id)) = (started, child.id()) {
        let _ = tx.send(id);
    }
    let pgid = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
    if let (Some(g), Some((spawn, _))) = (guardian, &mark) {
        match pgid {
            Some(pgid) => g.watch(pgid.as_raw(), *spawn),
            None => g.unmark(*spawn),
        }
    }
    let mut guard = GroupGuard { pgid, guardian };
    let signal = |sig| {
        if let Some(pgid) = pgid {
            let _ = killpg(pgid, sig);
        }
    };

    // Held open until the process ends: the far side of an SSH target reads its end as
    // "stop" (the connection closed).
    let _stdin = match (&spec.stdin, child.stdin().take()) {
        (Some(data), Some(mut pipe)) => {
            use tokio::io::AsyncWriteExt;
            let data = data.clone();
            Some(tokio::spawn(async move {
                let _ = pipe.write_all(&data).await;
                let _ = pipe.flush().await;
                // Kept until the task is aborted (the process ended).
                std::future::pending::<()>().await;
                drop(pipe);
            }))
        }
        _ => None,
    }
    .map(AbortOnDrop);
    let mut stdout = child.stdout().take();
    let mut stderr = child.stderr().take();
    let (mut obuf, mut ebuf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let deadline = Instant::now() + spec.timeout;
    // Set once the process is being stopped: why, and when SIGKILL follows SIGTERM.
    let mut stopping: Option<Exit> = None;
    let mut kill_at = far_future();
    let mut status = None;
    let mut drain_until = far_future();
    let leader = child.inner_mut();

    loop {
        if status.is_some() && stdout.is_none() && stderr.is_none() {
            break;
        }
        tokio::select! {
            r = read(&mut stdout, &mut obuf), if stdout.is_some() => match r {
                Some(n) => { let _ = out.send(Chunk { stream: Stream::Stdout, data: obuf[..n].to_vec() }).await; }
                None => stdout = None,
            },
            r = read(&mut stderr, &mut ebuf), if stderr.is_some() => match r {
                Some(n) => { let _ = out.send(Chunk { stream: Stream::Stderr, data: ebuf[..n].to_vec() }).await; }
                None => stderr = None,
            },
            s = leader.wait(), if status.is_none() => {
                status = Some(s?);
                // Wait only for the leader: background grandchildren are reparented to
                // init, which reaps them, so they neither block the step nor become zombies.
                guard.leader_ended();
                if stopping.is_some() {
                    // Whatever in the group ignored SIGTERM goes now.
                    signal(Signal::SIGKILL);
                }
                drain_until = Instant::now() + DRAIN;
            },
            _ = sleep_until(deadline), if status.is_none() && stopping.is_none() => {
                stopping = Some(Exit::TimedOut);
                signal(Signal::SIGTERM);
                kill_at = Instant::now() + spec.kill_grace;
            },
            _ = cancel.reached(spec.cancel_level), if status.is_none() && stopping.is_none() => {
                stopping = Some(Exit::Cancelled);
                signal(Signal::SIGTERM);
                kill_at = Instant::now() + spec.kill_grace;
            },
            _ = sleep_until(kill_at), if status.is_none() => {
                signal(Signal::SIGKILL);
                kill_at = far_future();
            },
            _ = sleep_until(drain_until), if status.is_some() => break,
        }
    }
    let status = status.expect("the loop ends after the leader exited");
    Ok(match stopping {
        Some(why) => why,
        None => match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(sig)) => Exit::Signal(sig),
            (None, None) => Exit::Code(-1),
        },
    })
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads a chunk; `None` at end of stream or on error.
async fn read(r: &mut Option<impl tokio::io::AsyncRead + Unpin>, buf: &mut [u8]) -> Option<usize> {
    match r.as_mut()?.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}
