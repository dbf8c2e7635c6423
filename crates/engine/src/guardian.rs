//! The guardian: a small process, forked before the runtime starts, that kills the live
//! steps' process groups when their runner dies (kill -9, out of memory).
//!
//! A parent-death signal would do the same from each step's side, but setting one needs a
//! `pre_exec` hook, and any such hook makes the standard library fork the whole runner for
//! every step instead of `posix_spawn` (a vfork): 0.3 ms a step for the small local
//! runner, more for a server. The guardian is told of each group over a pipe instead (a
//! five-byte write, atomic on a pipe, so threads don't interleave), and sees the runner's
//! death as the end of that pipe.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

use nix::sys::signal::{SigHandler, Signal, killpg, signal};
use nix::unistd::{ForkResult, Pid};

static GUARDIAN: OnceLock<Guardian> = OnceLock::new();

/// The runner's end of the guardian's pipe.
#[derive(Debug)]
pub struct Guardian {
    pipe: io::PipeWriter,
}

/// Starts the guardian of this process's steps. Call it early in `main`, before any
/// thread exists: it refuses (and steps fall back to a parent-death signal) otherwise.
pub fn start() -> io::Result<()> {
    if GUARDIAN.get().is_some() {
        return Ok(());
    }
    if threads()? != 1 {
        return Err(io::Error::other("the guardian must be started before any other thread"));
    }
    let (reader, writer) = io::pipe()?;
    // SAFETY: the process has one thread (checked above), so the child is a full copy of a
    // consistent process: it may allocate, lock and use the standard library freely.
    #[allow(unsafe_code)]
    let forked = unsafe { nix::unistd::fork() }.map_err(io::Error::from)?;
    match forked {
        ForkResult::Child => {
            drop(writer);
            guard(reader.into())
        }
        ForkResult::Parent { .. } => {
            drop(reader);
            let _ = GUARDIAN.set(Guardian { pipe: writer });
            Ok(())
        }
    }
}

/// The guardian of this process, when [`start`] succeeded.
pub fn get() -> Option<&'static Guardian> {
    GUARDIAN.get()
}

impl Guardian {
    /// From now on the group dies with the runner.
    pub fn watch(&self, pgid: i32) {
        self.send(b'+', pgid);
    }

    /// The group's leader ended: what it left running is its own business again.
    pub fn release(&self, pgid: i32) {
        self.send(b'-', pgid);
    }

    fn send(&self, op: u8, pgid: i32) {
        let mut msg = [op, 0, 0, 0, 0];
        msg[1..].copy_from_slice(&pgid.to_le_bytes());
        // A guardian that died cannot be helped; recovery still kills recorded groups.
        let _ = (&self.pipe).write_all(&msg);
    }
}

fn threads() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// The guardian's life: keep the set of live groups until the pipe ends, then kill them.
fn guard(pipe: OwnedFd) -> ! {
    let keep = pipe.as_raw_fd();
    // Signals meant for the runner's terminal or service (Ctrl-C, hang-up, stop) must not
    // take the guardian first: it ends on its own once the runner is gone.
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGTSTP] {
        // SAFETY: ignoring a signal installs no handler code.
        #[allow(unsafe_code)]
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    let _ = nix::sys::prctl::set_name(c"opsbook-guard");
    // Hold nothing of the runner's open: a pipe reader downstream of `opsbook run` must
    // see its end when the runner exits, not when the guardian does.
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    // (The listing's own descriptor is in the list, closed already.)
    let still_open = |fd: i32| std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok();
    for fd in open.into_iter().filter(|&fd| fd > 2 && fd != keep && still_open(fd)) {
        // SAFETY: the descriptor is open (listed just now) and nothing else in this
        // single-threaded process owns or uses it: it is closed when dropped here.
        #[allow(unsafe_code)]
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let mut pipe = std::fs::File::from(pipe);
    let mut live = HashSet::new();
    let mut msg = [0u8; 5];
    while pipe.read_exact(&mut msg).is_ok() {
        let pgid = i32::from_le_bytes([msg[1], msg[2], msg[3], msg[4]]);
        if msg[0] == b'+' {
            live.insert(pgid);
        } else {
            live.remove(&pgid);
        }
    }
    for pgid in live {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    std::process::exit(0)
}
