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
//! yes`); nothing prompts (`BatchMode yes`); one connection per host is shared by the
//! step's attempts and its rollback (`ControlMaster auto`, in the engine's private
//! scratch directory).

use std::path::Path;

use opsbook_core::document::Shell;
use opsbook_core::step::targets::{SshSettings, Target};

use crate::process::ProcessSpec;

/// What runs on the target, whatever the login shell (`exec sh -c WRAPPER opsbook SHELL…`).
const REMOTE: &str = r#"d=$(mktemp -d 2>/dev/null || mktemp -d -t opsbook.XXXXXX) || { echo "opsbook: cannot make a temporary directory on $(hostname)" >&2; exit 125; }
trap 'rm -rf "$d"' EXIT
trap '' PIPE
IFS=' ' read -r n m || exit 125
head -c "$n" >"$d/s" || exit 125
OPSBOOK_OUTPUT="$d/o"; export OPSBOOK_OUTPUT
exec 3<&0
if command -v setsid >/dev/null 2>&1; then setsid "$@" "$d/s" </dev/null 3<&- & else "$@" "$d/s" </dev/null 3<&- & fi
p=$!
{ cat <&3; kill -TERM -"$p" || kill -TERM "$p"; sleep 5; kill -KILL -"$p"; } >/dev/null 2>&1 &
w=$!
wait "$p"; rc=$?
kill "$w" 2>/dev/null
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
    let marker = format!("::opsbook-outputs-{:016x}::", rand_u64());
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
    // A control socket's path must fit a Unix socket address (108 bytes; %C is 40).
    let control = control_dir.join("%C");
    if control.as_os_str().len() < 100 {
        opt("ControlMaster=auto".into());
        opt(format!("ControlPath={}", control.display()));
        opt("ControlPersist=60".into());
    } else {
        opt("ControlMaster=no".into());
    }
    if let Some(k) = &settings.known_hosts {
        opt(format!("UserKnownHostsFile={}", base_dir.join(k).display()));
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

/// What an ssh failure (exit 255) says, from the last thing ssh wrote to stderr.
pub(crate) fn describe_failure(target: &Target, last_stderr: Option<&str>) -> String {
    let said = last_stderr.map(str::trim).filter(|s| !s.is_empty());
    match said {
        Some(s) => format!("ssh to {} failed: {s}", target.address),
        None => format!("ssh to {} failed (exit 255)", target.address),
    }
}

fn quote(s: &str) -> String {
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
