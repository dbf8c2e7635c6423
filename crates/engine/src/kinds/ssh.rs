//! `via: ssh`: a target's script runs on the target over the system OpenSSH client.
//!
//! The script never goes on a command line (the local process list or the remote one):
//! ssh's standard input carries a header (the script's length and a marker), then the
//! script with its environment as `export` lines. A fixed wrapper on the far side writes
//! it to a private temporary directory, runs it with the step's shell in a session of its
//! own, and stops that session when its standard input ends: when opsbook kills ssh on a
//! timeout or a cancel, the connection closes and the remote command goes with it (with
//! no terminal, sshd sends no hangup). After the script, the wrapper prints the marker
//! and the `$OPSBOOK_OUTPUT` file, which become the target's outputs.
//!
//! Host keys are checked against known_hosts, never accepted (`StrictHostKeyChecking
//! yes`); nothing prompts (`BatchMode yes`); within a run, one connection per host, user,
//! port and key settings is shared by attempts, rollbacks and later steps (`ControlMaster
//! auto`, in the run's own directory of the engine's private scratch directory, closed
//! when the run ends).

use std::path::Path;

use opsbook_core::document::Shell;
use opsbook_core::step::targets::{SshSettings, Target};

use crate::process::ProcessSpec;

/// What runs on the target, whatever the login shell (`exec sh -c WRAPPER opsbook SHELL…`).
const REMOTE: &str = r#"d=$(mktemp -d 2>/dev/null || mktemp -d -t opsbook.XXXXXX) || { echo "opsbook: cannot make a temporary directory on $(hostname)" >&2; exit 125; }
trap 'rm -rf "$d"' EXIT
trap 'exit 141' PIPE HUP TERM
IFS=' ' read -r n m || exit 125
head -c "$n" >"$d/s" || exit 125
[ "$(wc -c <"$d/s")" -eq "$n" ] || { echo "opsbook: the script arrived incomplete" >&2; exit 125; }
OPSBOOK_OUTPUT="$d/o"; export OPSBOOK_OUTPUT
exec 3<&0
e=; env --default-signal=INT,QUIT true 2>/dev/null && e='env --default-signal=INT,QUIT'
printf '%s\n' "$m-started" >&2
if command -v setsid >/dev/null 2>&1; then setsid $e "$@" "$d/s" </dev/null 3<&- & else $e "$@" "$d/s" </dev/null 3<&- & fi
p=$!
{ cat <&3; : >"$d/c"; kill -TERM -"$p" || kill -TERM "$p"; sleep 5; kill -KILL -"$p"; } >/dev/null 2>&1 &
w=$!
wait "$p"; rc=$?
if [ -e "$d/c" ]; then wait "$w"; else kill "$w" 2>/dev/null; fi
if [ -s "$d/o" ]; then printf '%s\n' "$m"; cat "$d/o"; fi
exit "$rc""#;

/// ssh's exit status when it could not connect (or the connection failed).
pub(crate) const SSH_FAILED: i32 = 255;

/// Turns a prepared local script (`spec`, whose environment the script is to see) into
/// its run over SSH on `target`. Returns the marker after which the outputs come.
pub(crate) fn wrap(
    spec: &mut ProcessSpec,
    text: &str,
    shell: Shell,
    target: &Target,
    settings: &SshSettings,
    base_dir: &Path,
    control_dir: &Path,
) -> String {
    let marker = new_marker();
    let mut script = String::new();
    for (k, v) in spec.env.iter().filter(|(k, _)| k != "OPSBOOK_OUTPUT") {
        script.push_str(&format!("export {k}={}\n", quote(v)));
    }
    script.push_str(text);
    script.push('\n');
    let mut stdin = format!("{} {marker}\n", script.len()).into_bytes();
    stdin.extend_from_slice(script.as_bytes());

    let connect = settings.connect_timeout.map_or(10, |d| d.0.as_secs().max(1));
    let mut argv: Vec<String> = vec!["ssh".into(), "-T".into()];
    let mut opt = |o: String| {
        argv.push("-o".into());
        argv.push(o);
    };
    opt("BatchMode=yes".into());
    opt("StrictHostKeyChecking=yes".into());
    opt(format!("ConnectTimeout={connect}"));
    opt("ServerAliveInterval=15".into());
    opt("ServerAliveCountMax=3".into());
    opt("LogLevel=ERROR".into());
    // One connection per host, user, port and settings (a key or known_hosts of its
    // own is never served by another's connection), in the run's own directory. The
    // socket's path must fit a Unix socket address: 104 bytes with ssh's temporary
    // suffix (`%C` is 40 characters, the settings 8, the suffix 17).
    let settings_id =
        &short_hash(&format!("{:?}|{:?}|{base_dir:?}", settings.identity_file, settings.known_hosts))[..8];
    let dir = control_dir.display().to_string();
    if dir.len() + 1 + 40 + 1 + 8 + 17 < 104 && !dir.contains(['"', ' ', '%']) {
        opt("ControlMaster=auto".into());
        opt(format!("ControlPath={dir}/%C-{settings_id}"));
        opt("ControlPersist=60".into());
    } else {
        opt("ControlMaster=no".into());
    }
    if let Some(k) = &settings.known_hosts {
        // Quoted: ssh splits an option's value at spaces.
        opt(format!("UserKnownHostsFile=\"{}\"", base_dir.join(k).display()));
    }
    if let Some(i) = &settings.identity_file {
        opt("IdentitiesOnly=yes".into());
        argv.push("-i".into());
        argv.push(base_dir.join(i).display().to_string());
    }
    if let Some(port) = target.port.or(settings.port) {
        argv.push("-p".into());
        argv.push(port.to_string());
    }
    if let Some(user) = target.user.as_ref().or(settings.user.as_ref()) {
        argv.push("-l".into());
        argv.push(user.clone());
    }
    argv.push("--".into());
    argv.push(target.address.clone());
    let shell_argv: Vec<String> = shell.argv().iter().map(|a| quote(a)).collect();
    argv.push(format!("exec sh -c {} opsbook {}", quote(REMOTE), shell_argv.join(" ")));

    spec.argv = argv;
    // ssh's own environment: the user's, not the parameters (they went in the script).
    spec.env.clear();
    spec.stdin = Some(stdin);
    marker
}

/// The line the far side writes to stderr once the script starts: an exit status of 255
/// after it is the script's own, not ssh's.
/// A fresh marker that the outputs come after.
pub(crate) fn new_marker() -> String {
    format!("::opsbook-outputs-{:016x}::", rand_u64())
}

pub(crate) fn started_line(marker: &str) -> String {
    format!("{marker}-started")
}

/// Closes the SSH connections kept open in `dir` (their control sockets) and removes it.
pub(crate) fn close_connections(dir: &Path) {
    use std::os::unix::fs::FileTypeExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_socket()) {
            let _ = std::process::Command::new("ssh")
                .arg("-o")
                .arg(format!("ControlPath={}", entry.path().display()))
                .args(["-O", "exit", "opsbook-target"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn short_hash(text: &str) -> String {
    use std::hash::{Hash, Hasher};
    // Not a secret, only a name: the standard hasher with fixed keys is stable enough
    // within one run (the directory is the run's own).
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// What an ssh failure (exit 255) says, from the last thing ssh wrote to stderr.
pub(crate) fn describe_failure(target: &Target, last_stderr: Option<&str>) -> String {
    let said = last_stderr.map(str::trim).filter(|s| !s.is_empty());
    match said {
        Some(s) => format!("ssh to {} failed: {s}", target.address),
        None => format!("ssh to {} failed (exit 255)", target.address),
    }
}

pub(crate) fn quote(s: &str) -> String {
    shlex::try_quote(s).map_or_else(|_| "''".to_string(), |q| q.into_owned())
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        return t.as_nanos() as u64 ^ u64::from(std::process::id());
    }
    u64::from_le_bytes(b)
}
