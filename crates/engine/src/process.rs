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

/// Kills the group if the run is abandoned (the future dropped) before the child ended.
struct GroupGuard {
    pgid: Option<Pid>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 86_400)
}

/// `setpriv` (util-linux), which gives the step's shell a parent-death signal: if the
/// runner dies (kill -9), the shell is killed with it instead of running on unowned.
/// (Setting it ourselves would need code between fork and exec, which is `unsafe`.)
fn setpriv() -> Option<&'static str> {
    static FOUND: std::sync::OnceLock<Option<&'static str>> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| ["/usr/bin/setpriv", "/bin/setpriv"].into_iter().find(|p| std::path::Path::new(p).is_file()))
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
    if spec.argv.is_empty() {
        return Err(io::Error::other("empty command"));
    }
    let mut argv: Vec<&str> = Vec::with_capacity(spec.argv.len() + 4);
    if let Some(sp) = setpriv() {
        argv.extend([sp, "--pdeathsig", "KILL", "--"]);
    }
    argv.extend(spec.argv.iter().map(String::as_str));
    let (program, args) = argv.split_first().expect("checked not empty");
    let mut cmd = CommandWrap::with_new(program, |c| {
        c.args(args)
            .current_dir(&spec.cwd)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    });
    cmd.wrap(ProcessGroup::leader());
    let mut child = cmd.spawn()?;
    if let (Some(tx), Some(id)) = (started, child.id()) {
        let _ = tx.send(id);
    }
    let pgid = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
    let mut guard = GroupGuard { pgid };
    let signal = |sig| {
        if let Some(pgid) = pgid {
            let _ = killpg(pgid, sig);
        }
    };

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
                guard.pgid = None;
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

/// Reads a chunk; `None` at end of stream or on error.
async fn read(r: &mut Option<impl tokio::io::AsyncRead + Unpin>, buf: &mut [u8]) -> Option<usize> {
    match r.as_mut()?.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}
