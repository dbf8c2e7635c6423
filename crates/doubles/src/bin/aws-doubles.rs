//! Starts the AWS doubles of `examples/aws-web-app-deploy` on loopback and prints the
//! environment that points the SDK at them (`export NAME=VALUE` lines); serves until
//! killed. `--fail`: the post-deployment check fails, so the run rolls back through SSM.

use std::io::Write;

fn main() {
    let fail = std::env::args().skip(1).any(|a| a == "--fail");
    let doubles = opsbook_doubles::scenario::web_app_deploy(fail);
    let mut out = std::io::stdout().lock();
    for (k, v) in doubles.env() {
        let _ = writeln!(out, "export {k}={v}");
    }
    let _ = out.flush();
    drop(out);
    loop {
        std::thread::park();
    }
}
