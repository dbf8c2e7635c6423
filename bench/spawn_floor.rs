//! The floor under `bench/step_overhead`: what any runner written in Rust pays to start
//! a step the way `opsbook run` starts one, with nothing recorded and nothing else done.
//!
//! Runs `sh -e -c true` STEPS times, one after another, each in a process group of its
//! own (`process_group(0)`: `posix_spawn`, a vfork), standard input from /dev/null, and
//! its standard output and error read through pipes to their end before it is waited for.
//! Built by `bench/step_overhead` with plain `rustc -O` (no dependencies).
//!
//!   spawn_floor STEPS [pipes|no-pipes]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

fn main() {
    let mut args = std::env::args().skip(1);
    let steps: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100);
    let pipes = args.next().as_deref() != Some("no-pipes");
    for _ in 0..steps {
        let mut cmd = Command::new("sh");
        cmd.args(["-e", "-c", "true"]).process_group(0).stdin(Stdio::null());
        if pipes {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("sh starts");
        let mut sink = Vec::new();
        if let Some(mut out) = child.stdout.take() {
            out.read_to_end(&mut sink).expect("stdout reads");
        }
        if let Some(mut err) = child.stderr.take() {
            err.read_to_end(&mut sink).expect("stderr reads");
        }
        let status = child.wait().expect("sh is waited for");
        assert!(status.success(), "sh -e -c true failed: {status}");
    }
}
