//! The guardian: a small process, forked before the runtime starts, that kills the live
//! steps' process groups when their runner dies (kill -9, out of memory), and removes the
//! runner's scratch directory (its scripts hold secrets).
//!
//! A parent-death signal would do the same from each step's side, but setting one needs a
//! `pre_exec` hook, and any such hook makes the standard library fork the whole runner for
//! every step instead of `posix_spawn` (a vfork): 0.3 ms a step for the small local
//! runner, more for a server. The guardian is told of each group over a pipe instead (a
//! nine-byte write, atomic on a pipe, so threads don't interleave), and sees the runner's
//! death as the end of that pipe.
//!
//! A group is told of just after its spawn, so a runner killed in between (starved of CPU
//! right after the spawn) would leave it unknown. Each step therefore carries a mark in
//! its environment, [`MARK`] = this runner's random token and the spawn's number; when the
//! runner is gone, the guardian looks through `/proc` for marked processes of spawns it
//! was never told of, and kills their groups as well.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sys::signal::{SigHandler, Signal, killpg, signal};
use nix::unistd::{ForkResult, Pid};

static GUARDIAN: OnceLock<Guardian> = OnceLock::new();

/// The runner's end of the guardian's pipe.
#[derive(Debug)]
pub struct Guardian {
    pipe: io::PipeWriter,
    /// This runner's token in the marks of its steps (random: process ids are reused).
    token: u64,
    spawns: AtomicU32,
}

/// The environment variable that marks a step's processes: `TOKEN:SPAWN`.
pub const MARK: &str = "OPSBOOK_STEP_MARK";

/// Starts the guardian of this process's steps. Call it early in `main`, before any
/// thread exists: it refuses (and steps fall back to a parent-death signal) otherwise.
pub fn start() -> io::Result<()> {
    if GUARDIAN.get().is_some() {
        return Ok(());
    }
    if threads()? != 1 {
        return Err(io::Error::other("the guardian must be started before any other thread"));
    }
    let token = getrandom::u64().map_err(|e| io::Error::other(e.to_string()))?;
    let (reader, writer) = io::pipe()?;
    // SAFETY: the process has one thread (checked above), so the child is a full copy of a
    // consistent process: it may allocate, lock and use the standard library freely.
    #[allow(unsafe_code)]
    let forked = unsafe { nix::unistd::fork() }.map_err(io::Error::from)?;
    match forked {
        ForkResult::Child => {
            drop(writer);
            guard(reader.into(), token)
        }
        ForkResult::Parent { .. } => {
            drop(reader);
            let _ = GUARDIAN.set(Guardian { pipe: writer, token, spawns: AtomicU32::new(0) });
            Ok(())
        }
    }
}

/// The guardian of this process, when [`start`] succeeded.
pub fn get() -> Option<&'static Guardian> {
    GUARDIAN.get()
}

impl Guardian {
    /// A new spawn's number and the value of [`MARK`] to give its process.
    pub fn mark(&self) -> (u32, String) {
        let spawn = self.spawns.fetch_add(1, Ordering::Relaxed);
        (spawn, format!("{:016x}:{spawn}", self.token))
    }

    /// From now on the group of spawn `spawn` dies with the runner.
    pub fn watch(&self, pgid: i32, spawn: u32) {
        self.send(b'+', pgid, spawn);
    }

    /// The group's leader ended: what it left running is its own business again.
    pub fn release(&self, pgid: i32) {
        self.send(b'-', pgid, 0);
    }

    /// Spawn `spawn` started no process: nothing carries its mark.
    pub fn unmark(&self, spawn: u32) {
        self.send(b'x', 0, spawn);
    }

    /// The runner's scratch directory (scripts with secrets in them): removed when the
    /// runner is gone, should it die before removing it itself.
    pub fn scratch(&self, dir: &std::path::Path) {
        use std::os::unix::ffi::OsStrExt;
        let path = dir.as_os_str().as_bytes();
        // One write of at most PIPE_BUF bytes is atomic: no other message lands inside it.
        let Ok(len) = u32::try_from(path.len()) else { return };
        if path.len() + 9 > 4096 {
            return;
        }
        let mut msg = vec![b'd'];
        msg.extend_from_slice(&len.to_le_bytes());
        msg.extend_from_slice(&[0; 4]);
        msg.extend_from_slice(path);
        let _ = (&self.pipe).write_all(&msg);
    }

    fn send(&self, op: u8, pgid: i32, spawn: u32) {
        let mut msg = [op, 0, 0, 0, 0, 0, 0, 0, 0];
        msg[1..5].copy_from_slice(&pgid.to_le_bytes());
        msg[5..].copy_from_slice(&spawn.to_le_bytes());
        // A guardian that died cannot be helped; recovery still kills recorded groups.
        let _ = (&self.pipe).write_all(&msg);
    }
}

fn threads() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// The guardian's life: keep the set of live groups until the pipe ends, then kill them.
fn guard(pipe: OwnedFd, token: u64) -> ! {
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
    let mut told = Told::default();
    let mut scratch = Vec::new();
    let mut msg = [0u8; 9];
    while pipe.read_exact(&mut msg).is_ok() {
        let pgid = i32::from_le_bytes([msg[1], msg[2], msg[3], msg[4]]);
        let spawn = u32::from_le_bytes([msg[5], msg[6], msg[7], msg[8]]);
        match msg[0] {
            b'+' => {
                live.insert(pgid);
                told.insert(spawn);
            }
            b'x' => told.insert(spawn),
            b'd' => {
                use std::os::unix::ffi::OsStrExt;
                let mut path = vec![0u8; u32::from_le_bytes([msg[1], msg[2], msg[3], msg[4]]) as usize];
                if pipe.read_exact(&mut path).is_err() {
                    break;
                }
                scratch.push(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&path)));
            }
            _ => {
                live.remove(&pgid);
            }
        }
    }
    for pgid in live {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    // Spawns the runner died before telling of: found by their mark. Twice, since a
    // child between its spawn and its `exec` does not carry the mark yet.
    let prefix = format!("{MARK}={token:016x}:");
    for pause in [0, 50] {
        std::thread::sleep(std::time::Duration::from_millis(pause));
        for pid in untold(&prefix, &told) {
            let _ = crate::recovery::kill_found(pid);
        }
    }
    // The scripts it wrote, secrets and all, go with it (gone already after a clean exit).
    for dir in scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    std::process::exit(0)
}

/// The spawns the guardian was told of, in memory bounded by how many are told out of
/// order (a server runs steps for months): every number below `below`, and `ahead`.
#[derive(Debug, Default)]
struct Told {
    below: u32,
    ahead: HashSet<u32>,
}

impl Told {
    fn insert(&mut self, spawn: u32) {
        if spawn >= self.below {
            self.ahead.insert(spawn);
            while self.ahead.remove(&self.below) {
                self.below += 1;
            }
        }
    }

    fn contains(&self, spawn: u32) -> bool {
        spawn < self.below || self.ahead.contains(&spawn)
    }
}

/// The processes whose environment holds `prefix` (the mark, up to the spawn's number)
/// followed by a spawn number not in `told`.
fn untold(prefix: &str, told: &Told) -> Vec<Pid> {
    crate::recovery::pids()
        .filter(|&pid| {
            let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else { return false };
            env.split(|&b| b == 0).any(|var| {
                var.strip_prefix(prefix.as_bytes())
                    .and_then(|n| std::str::from_utf8(n).ok()?.parse::<u32>().ok())
                    .is_some_and(|spawn| !told.contains(spawn))
            })
        })
        .map(Pid::from_raw)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process marked by a spawn the guardian was never told of is found (and one it
    /// was told of, or of another runner's token, is not).
    #[test]
    fn untold_finds_marked_processes_of_spawns_never_told_of() {
        let mut marked = std::process::Command::new("sleep").arg("30").env(MARK, "00000000000000ab:7").spawn().unwrap();
        let pid = Pid::from_raw(i32::try_from(marked.id()).unwrap());
        // It carries the mark once it has exec'd.
        let prefix = format!("{MARK}=00000000000000ab:");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut found = untold(&prefix, &Told::default());
        while found.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
            found = untold(&prefix, &Told::default());
        }
        assert_eq!(found, vec![pid]);
        let mut told = Told::default();
        told.insert(7);
        assert_eq!(untold(&prefix, &told), Vec::<Pid>::new());
        assert_eq!(untold(&format!("{MARK}=00000000000000ac:"), &Told::default()), Vec::<Pid>::new());
        marked.kill().unwrap();
        marked.wait().unwrap();
    }

    /// Told out of order, the spawns below the first gap fold into one number.
    #[test]
    fn told_keeps_only_what_is_out_of_order() {
        let mut told = Told::default();
        for spawn in [1, 3, 0, 4] {
            told.insert(spawn);
        }
        assert_eq!((told.below, told.ahead.len()), (2, 2));
        assert!(told.contains(0) && told.contains(1) && !told.contains(2) && told.contains(4));
        told.insert(2);
        assert_eq!((told.below, told.ahead.len()), (5, 0));
    }
}
