//! The guardian: a small process, forked before the runtime starts, that kills the live
//! steps' process groups when their runner dies (kill -9, out of memory).
//!
//! A parent-death signal would do the same from each step's side, but setting one needs a
//! `pre_exec` hook, and any such hook makes the standard library fork the whole runner for
//! every step instead of `posix_spawn` (a vfork): 0.3 ms a step for the small local
//! runner, more for a server. The runner writes each live group into a table both share
//! (a memory file: one four-byte `pwrite` into a slot as a step starts, a zero as it
//! ends; no wake-up of the guardian, which would cost two context switches a step). The
//! guardian sleeps on a pipe the runner never writes to, sees the runner's death as its
//! end, then reads the table and kills the groups in it.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::{Mutex, OnceLock};

use nix::sys::signal::{SigHandler, Signal, killpg, signal};
use nix::unistd::{ForkResult, Pid};

static GUARDIAN: OnceLock<Guardian> = OnceLock::new();

/// The runner's side: the pipe whose end tells the guardian, and the table of live groups.
#[derive(Debug)]
pub struct Guardian {
    _pipe: io::PipeWriter,
    table: Mutex<Table>,
}

/// Slots of four bytes in the shared file, a group id or 0 for a free slot; `slots`
/// mirrors the file.
#[derive(Debug)]
struct Table {
    file: File,
    slots: Vec<i32>,
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
    let table = File::from(
        nix::sys::memfd::memfd_create(c"opsbook-groups", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(io::Error::from)?,
    );
    // SAFETY: the process has one thread (checked above), so the child is a full copy of a
    // consistent process: it may allocate, lock and use the standard library freely.
    #[allow(unsafe_code)]
    let forked = unsafe { nix::unistd::fork() }.map_err(io::Error::from)?;
    match forked {
        ForkResult::Child => {
            drop(writer);
            guard(reader.into(), table)
        }
        ForkResult::Parent { .. } => {
            drop(reader);
            let _ =
                GUARDIAN.set(Guardian { _pipe: writer, table: Mutex::new(Table { file: table, slots: Vec::new() }) });
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
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let slot = match table.slots.iter().position(|&g| g == 0) {
            Some(free) => free,
            None => {
                table.slots.push(0);
                table.slots.len() - 1
            }
        };
        table.slots[slot] = pgid;
        table.set(slot, pgid);
    }

    /// The group's leader ended: what it left running is its own business again.
    pub fn release(&self, pgid: i32) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = table.slots.iter().position(|&g| g == pgid) {
            table.slots[slot] = 0;
            table.set(slot, 0);
        }
    }
}

impl Table {
    /// One aligned four-byte write: a runner killed at any moment leaves each slot either
    /// before or after, never half-written. Should it fail, recovery still kills the
    /// groups recorded in the store.
    fn set(&self, slot: usize, pgid: i32) {
        let _ = self.file.write_all_at(&pgid.to_le_bytes(), slot as u64 * 4);
    }
}

fn threads() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// The guardian's life: wait for the pipe to end, then kill the groups in the table.
fn guard(pipe: OwnedFd, table: File) -> ! {
    let keep = [pipe.as_raw_fd(), table.as_raw_fd()];
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
    for fd in open.into_iter().filter(|&fd| fd > 2 && !keep.contains(&fd) && still_open(fd)) {
        // SAFETY: the descriptor is open (listed just now) and nothing else in this
        // single-threaded process owns or uses it: it is closed when dropped here.
        #[allow(unsafe_code)]
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    // Nothing is ever written: the read returns at the pipe's end, when the runner is gone.
    let mut pipe = File::from(pipe);
    loop {
        match pipe.read(&mut [0u8; 1]) {
            Ok(0) => break,
            Err(e) if e.kind() != io::ErrorKind::Interrupted => break,
            _ => {}
        }
    }
    let len = table.metadata().map_or(0, |m| m.len());
    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
    let _ = table.read_exact_at(&mut bytes, 0);
    for slot in bytes.chunks_exact(4) {
        let pgid = i32::from_le_bytes([slot[0], slot[1], slot[2], slot[3]]);
        if pgid > 0 {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
    std::process::exit(0)
}
