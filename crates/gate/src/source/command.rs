//! A command: exit 0 clear, 1 blocked (its first output line says why), anything else unknown.
//!
//! It runs in a process group of its own; a check that times out (or is abandoned)
//! takes everything it started with it.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use process_wrap::tokio::{CommandWrap, ProcessGroup};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use crate::config::CommandCheck;
use crate::{BlockRecord, Checker};

/// Kills the process group when dropped: on timeout, or when the check is abandoned.
struct Group(Option<Pid>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

/// How long output may still arrive after the shell exited: a background process that
/// inherited its output must not hold the check open (it is killed with the group).
const DRAIN: Duration = Duration::from_millis(500);

/// Reads a pipe into a shared buffer, so what arrived is kept when reading is cut short.
fn collect(pipe: Option<impl AsyncRead + Unpin + Send + 'static>) -> (Arc<Mutex<Vec<u8>>>, JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = buf.clone();
    let task = tokio::spawn(async move {
        let Some(mut pipe) = pipe else { return };
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut chunk).await {
            let mut b = sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // The first line is all that is used; keep a bounded prefix.
            if b.len() < 64 * 1024 {
                b.extend_from_slice(&chunk[..n]);
            }
        }
    });
    (buf, task)
}

pub(crate) async fn check(c: &Checker, cmd: &CommandCheck, dir: Option<&Path>) -> Result<Vec<BlockRecord>, String> {
    let mut wrap = CommandWrap::with_new("sh", |w| {
        for name in opsbook_core::secret::private_env() {
            w.env_remove(name);
        }
        w.args(["-c", &cmd.run]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some(dir) = dir {
            w.current_dir(dir);
        }
    });
    wrap.wrap(ProcessGroup::leader());
    let mut child = wrap.spawn().map_err(|e| match dir {
        Some(d) if !d.is_dir() => format!("cannot run `{}`: directory {} does not exist", cmd.run, d.display()),
        _ => format!("cannot run `{}`: {e}", cmd.run),
    })?;
    let _group = Group(child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw));
    let (stdout, out_task) = collect(child.stdout().take());
    let (stderr, err_task) = collect(child.stderr().take());
    let status = tokio::time::timeout(c.timeout, child.wait())
        .await
        .map_err(|_| format!("`{}` did not finish within {}", cmd.run, opsbook_core::Dur(c.timeout)))?
        .map_err(|e| format!("`{}`: {e}", cmd.run))?;
    // The rest of the output, unless something left running keeps the pipes open.
    let _ = tokio::time::timeout(DRAIN, async {
        let _ = out_task.await;
        let _ = err_task.await;
    })
    .await;
    let take =
        |b: &Arc<Mutex<Vec<u8>>>| std::mem::take(&mut *b.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let out = std::process::Output { status, stdout: take(&stdout), stderr: take(&stderr) };
    let first = |b: &[u8]| String::from_utf8_lossy(b).lines().next().unwrap_or_default().trim().to_string();
    match out.status.code() {
        Some(0) => Ok(Vec::new()),
        Some(1) => {
            // Its reason: the first line it wrote, on standard output or else on standard error.
            let why = Some(first(&out.stdout)).filter(|w| !w.is_empty()).unwrap_or_else(|| first(&out.stderr));
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::Checker;

    /// A check that blocks says why on either output.
    #[tokio::test]
    async fn a_blocking_check_s_reason_may_come_on_standard_error() {
        let checker = Checker::new(Duration::from_secs(10)).unwrap();
        let cmd = super::CommandCheck { run: "echo only-on-stderr >&2; exit 1".into() };
        let records = super::check(&checker, &cmd, None).await.unwrap();
        assert_eq!(records[0].title, "only-on-stderr");
    }

    /// A check that times out is unknown, and what it started is gone with it.
    #[tokio::test]
    async fn a_timed_out_check_takes_its_process_group_with_it() {
        let dir = std::env::temp_dir().join(format!("opsbook-gate-cmd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("pid");
        let cmd = super::CommandCheck { run: format!("sleep 30 & echo $! > '{}'; wait", pidfile.display()) };
        let checker = Checker::new(Duration::from_secs(3)).unwrap();
        let err = super::check(&checker, &cmd, None).await.unwrap_err();
        assert!(err.ends_with("did not finish within 3s"), "{err}");
        let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_string();
        let proc = std::path::PathBuf::from(format!("/proc/{pid}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        // The grandchild is killed, then reaped by init.
        while proc.exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!proc.exists(), "sleep {pid} outlived its check");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
