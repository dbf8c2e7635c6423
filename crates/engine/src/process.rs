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

use crate::cancel::Cancel;

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

/// Spawns the process and drives it to the end. Output chunks go to `out` as they arrive.
pub async fn run(spec: &ProcessSpec, cancel: &Cancel, out: mpsc::Sender<Chunk>) -> io::Result<Exit> {
    let (program, args) = spec.argv.split_first().ok_or_else(|| io::Error::other("empty command"))?;
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
    let pgid = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
    let mut guard = GroupGuard { pgid };

    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout().take() {
        readers.push(tokio::spawn(pump(stdout, Stream::Stdout, out.clone())));
    }
    if let Some(stderr) = child.stderr().take() {
        readers.push(tokio::spawn(pump(stderr, Stream::Stderr, out.clone())));
    }
    drop(out);

    // Wait for the leader only: background grandchildren are reparented to init,
    // which reaps them, so they neither block the step nor become zombies.
    let leader = child.inner_mut();
    let exit = tokio::select! {
        status = leader.wait() => Some(status?),
        _ = tokio::time::sleep(spec.timeout) => None,
        _ = cancel.reached(spec.cancel_level) => None,
    };
    let exit = match exit {
        Some(status) => from_status(status),
        None => {
            let why = if cancel.level() >= spec.cancel_level { Exit::Cancelled } else { Exit::TimedOut };
            if let Some(pgid) = pgid {
                let _ = killpg(pgid, Signal::SIGTERM);
            }
            let leader = child.inner_mut();
            if tokio::time::timeout(spec.kill_grace, leader.wait()).await.is_err() {
                if let Some(pgid) = pgid {
                    let _ = killpg(pgid, Signal::SIGKILL);
                }
                child.inner_mut().wait().await?;
            }
            // Anything in the group that ignored SIGTERM goes now.
            if let Some(pgid) = pgid {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            why
        }
    };
    guard.pgid = None;

    // Drain what is left; a background process holding the pipes open must not hang us.
    let drain = async {
        for r in readers.iter_mut() {
            let _ = r.await;
        }
    };
    if tokio::time::timeout(Duration::from_millis(500), drain).await.is_err() {
        for r in &readers {
            r.abort();
        }
    }
    Ok(exit)
}

fn from_status(status: std::process::ExitStatus) -> Exit {
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(sig)) => Exit::Signal(sig),
        (None, None) => Exit::Code(-1),
    }
}

async fn pump(mut r: impl tokio::io::AsyncRead + Unpin, stream: Stream, out: mpsc::Sender<Chunk>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out.send(Chunk { stream, data: buf[..n].to_vec() }).await.is_err() {
                    return;
                }
            }
        }
    }
}
