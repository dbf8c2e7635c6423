//! Helpers: a scratch directory with its own database, and a way to run `opsbook` in it.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use opsbook_doubles::http::Request;
use opsbook_store::{Execution, StepRecord, Store};
use opsbook_store_sqlite::SqliteStore;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// A runbook with the given parameters block (may be empty) and steps block.
pub fn runbook(params: &str, steps: &str) -> String {
    format!(
        "apiVersion: opsbook/v1\nkind: Runbook\nmetadata:\n  name: test\n  type: maintenance\n  version: 1.0.0\nspec:\n{}  steps:\n{steps}",
        if params.is_empty() { String::new() } else { format!("  parameters:\n{params}") }
    )
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("state/opsbook.db");
        Env { dir, db }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, content).unwrap();
        p
    }

    /// Writes a script others run (mode 0755).
    pub fn write_executable(&self, name: &str, content: &str) -> PathBuf {
        let p = self.write(name, content);
        let mut perms = std::fs::metadata(&p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&p, perms).unwrap();
        p
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_opsbook"));
        c.args(args)
            .current_dir(self.dir.path())
            .env("OPSBOOK_DB", &self.db)
            .env("OPSBOOK_KILL_GRACE", "1s")
            .env("NO_COLOR", "1")
            .env("T", self.dir.path())
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Out {
        out(self.cmd(args).output().expect("run opsbook"))
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn opsbook")
    }

    /// Writes `test.yaml` and runs it with the extra arguments.
    pub fn run_book(&self, text: &str, extra: &[&str]) -> Out {
        self.write("test.yaml", text);
        let mut args = vec!["run", "test.yaml"];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    pub fn store(&self) -> Inspect {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let store = rt.block_on(SqliteStore::open(&self.db)).expect("open store");
        Inspect { rt, store }
    }

    /// The newest execution.
    pub fn last(&self) -> (Execution, Vec<StepRecord>) {
        let s = self.store();
        let e = s.block(s.store.executions(&Default::default())).unwrap().into_iter().next().expect("an execution");
        let steps = s.block(s.store.steps(&e.id)).unwrap();
        (e, steps)
    }

    /// Polls until `name` exists (written by a step), failing after 60 s (it only catches hangs: a loaded machine may be slow).
    pub fn wait_for_file(&self, name: &str) {
        let p = self.path(name);
        wait_until(|| p.exists(), &format!("{name} to appear"));
    }

    /// Waits for a file a step writes a process id into (`echo $$ > name`): the shell
    /// creates the file before it writes the number.
    pub fn wait_for_pid(&self, name: &str) -> i32 {
        let p = self.path(name);
        let read = || std::fs::read_to_string(&p).ok().and_then(|t| t.trim().parse().ok());
        wait_until(|| read().is_some(), &format!("a process id in {name}"));
        read().expect("a process id, read just now")
    }
}

/// Runs another program with the environment `Env::cmd` sets up.
pub trait SpawnWith {
    fn spawn_with_program(&mut self, program: &str, args: &[&str]) -> Child;
}

/// Waits for `prompt` in a terminal program's output (under `script`), types `answer`,
/// and returns how it ended with everything it showed. A program that shows no prompt,
/// or does not end, within a minute is killed and the test fails with its screen.
///
/// The command given to `script -qec` starts with `exec`: a shell left between `script`
/// and opsbook (dash keeps itself when `$SHELL` is `/bin/sh`) dies of a typed Ctrl-C, and
/// `script` then reports 130 whatever opsbook exits with.
pub fn answer_prompt(child: Child, prompt: &str, answer: &str) -> (std::process::ExitStatus, String) {
    type_at_prompt(child, prompt, format!("{answer}\n").as_bytes())
}

/// [`answer_prompt`], typing `keys` as they are (`\x03`: a Ctrl-C, with no Enter after it).
pub fn type_at_prompt(mut child: Child, prompt: &str, keys: &[u8]) -> (std::process::ExitStatus, String) {
    use std::io::{Read, Write};
    use std::sync::mpsc;
    let mut stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let mut answered = false;
    loop {
        if !answered && String::from_utf8_lossy(&seen).contains(prompt) {
            child.stdin.as_mut().expect("piped").write_all(keys).expect("answer");
            answered = true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => seen.extend_from_slice(&chunk),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("answered: {answered}; no prompt `{prompt}` or no end: {}", String::from_utf8_lossy(&seen));
            }
        }
    }
    assert!(answered, "no prompt `{prompt}`: {}", String::from_utf8_lossy(&seen));
    let status = child.wait().expect("wait");
    (status, String::from_utf8_lossy(&seen).into_owned())
}

impl SpawnWith for Command {
    fn spawn_with_program(&mut self, program: &str, args: &[&str]) -> Child {
        let mut c = Command::new(program);
        c.args(args);
        if let Some(dir) = self.get_current_dir() {
            c.current_dir(dir);
        }
        for (k, v) in self.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c.spawn().expect("spawn")
    }
}

pub struct Inspect {
    rt: tokio::runtime::Runtime,
    pub store: SqliteStore,
}

impl Inspect {
    pub fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

pub fn out(o: Output) -> Out {
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Asserts an exit code and a piece of standard error.
#[track_caller]
pub fn assert_fails_saying(o: &Out, code: i32, stderr_part: &str) {
    assert_eq!(o.code, code, "{o:?}");
    assert!(o.stderr.contains(stderr_part), "wanted {stderr_part:?} in {o:?}");
}

pub fn wait_until(mut f: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when the process is gone (or a zombie waiting for init to reap it).
pub fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

pub fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
}

/// A tiny HTTP server on 127.0.0.1 answering each path prefix with a scripted status and
/// body (changeable while it runs); it records the request lines it saw.
#[derive(Clone)]
pub struct FakeHttp {
    pub url: String,
    pub routes: std::sync::Arc<std::sync::Mutex<Vec<(String, u16, String)>>>,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeHttp {
    pub fn start() -> FakeHttp {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fake = FakeHttp { url, routes: Default::default(), seen: Default::default() };
        let f = fake.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(req) = Request::read(&stream) else { continue };
                let path = req.path;
                f.seen.lock().unwrap().push(path.clone());
                let (status, body) = f
                    .routes
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(prefix, _, _)| path.starts_with(prefix.as_str()))
                    .map(|(_, s, b)| (*s, b.clone()))
                    .unwrap_or((404, "{}".into()));
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        fake
    }

    pub fn set(&self, prefix: &str, status: u16, body: &str) {
        let mut routes = self.routes.lock().unwrap();
        routes.retain(|(p, _, _)| p != prefix);
        routes.push((prefix.to_string(), status, body.to_string()));
    }
}

/// Starts `opsbook serve` from `cmd` and reads its first line (which names its address):
/// the running child, its `http://` URL and that line.
pub fn start_server(mut cmd: Command) -> (Child, String, String) {
    use std::io::{BufRead, BufReader};
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn opsbook serve");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut first).expect("the server's first line");
    let url = first.split_whitespace().find(|w| w.starts_with("http://")).expect("the server prints its address");
    (child, url.to_string(), first)
}

/// One raw HTTP/1.1 request to a server on loopback: the status and the body (for a
/// chunked answer, its longest line: the JSON document).
pub fn request(url: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    let body = body.lines().max_by_key(|l| l.len()).unwrap_or_default().to_string();
    (status, body)
}

/// Waits until the clock is past `ms` (epoch milliseconds).
pub fn wait_past(ms: i64) {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    wait_until(|| std::time::SystemTime::now() > at, "the deadline");
}
