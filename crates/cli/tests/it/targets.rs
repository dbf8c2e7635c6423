//! Steps with `targets`: rate control, errors, per-target rollbacks, inventories, and SSH
//! against a real `sshd` on loopback (Debian's openssh-server, which `./scripts/test`
//! installs).

use std::process::{Child, Command, Stdio};

use opsbook_core::StepStatus;
use opsbook_store::{Phase, Store};

use crate::support::{Env, dead, runbook, wait_until};

#[test]
fn local_targets_run_at_most_max_concurrency_at_once() {
    let env = Env::new();
    std::fs::create_dir(env.path("running")).unwrap();
    // Each target counts who runs beside it while it runs.
    let book = runbook(
        "",
        "    - id: warm\n      run: |\n        mkdir \"$T/running/{{ target }}\"\n        sleep 0.3\n        ls \"$T/running\" | wc -l >> \"$T/peaks\"\n        rmdir \"$T/running/{{ target }}\"\n        echo \"seen={{ target }}-$OPSBOOK_TARGET\" >> \"$OPSBOOK_OUTPUT\"\n      targets: { hosts: [a, b, c, d, e, f], via: local, max_concurrency: \"34%\" }\n",
    );
    let out = env.run_book(&book, &["--output", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let peaks: Vec<u32> = env.read("peaks").lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(peaks.len(), 6, "every target ran once");
    assert_eq!(peaks.iter().max(), Some(&2), "34% of 6 targets is 2 at a time: {peaks:?}");
    let doc = out.json();
    let step = &doc["steps"][0];
    assert_eq!(step["status"], "succeeded");
    assert_eq!(step["outputs"]["succeeded"], "a, b, c, d, e, f");
    assert_eq!(step["outputs"]["failed"], "");
    assert_eq!(step["outputs"]["c.seen"], "c-c", "each target's outputs, with `{{ target }}` and $OPSBOOK_TARGET");
    let targets = step["targets"].as_array().unwrap();
    assert_eq!(targets.iter().map(|t| t["name"].as_str().unwrap()).collect::<Vec<_>>(), ["a", "b", "c", "d", "e", "f"]);
    assert!(targets.iter().all(|t| t["status"] == "succeeded" && t["exit_code"] == 0 && t["attempts"] == 1));
    assert!(targets.iter().all(|t| t["duration_ms"].as_i64().unwrap() >= 300));
    let logs = env.run(&["logs", doc["id"].as_str().unwrap()]);
    assert!(logs.stdout.contains("[warm] [d] succeeded in "), "{logs:?}");
}

#[test]
fn too_many_errors_stop_new_targets_and_the_rollback_runs_where_the_step_succeeded() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: restart\n      run: |\n        echo \"restarting {{ target }}\"\n        case {{ target }} in b|c) exit 3;; esac\n      targets: { hosts: [\"a b\", c, d, e], via: local, max_errors: 1 }\n      rollback:\n        run: touch \"$T/undone-{{ target }}\"\n",
    );
    let out = env.run_book(&book, &["--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    let step = &doc["steps"][0];
    assert_eq!(step["status"], "failed");
    assert_eq!(
        step["error"],
        "2 of 5 targets failed (b: exited with code 3; c: exited with code 3); not started: d, e"
    );
    let status: Vec<&str> = step["targets"].as_array().unwrap().iter().map(|t| t["status"].as_str().unwrap()).collect();
    assert_eq!(status, ["succeeded", "failed", "failed", "skipped", "skipped"]);
    assert_eq!(step["targets"][3]["error"], "not started: more than 1 target(s) failed");
    assert_eq!(step["targets"][3]["attempts"], 0);
    // The rollback ran on `a` only: the one target the step succeeded on.
    assert!(env.path("undone-a").exists());
    for t in ["b", "c", "d", "e"] {
        assert!(!env.path(&format!("undone-{t}")).exists(), "no rollback on {t}");
    }
    assert_eq!(step["targets"][0]["rollback_status"], "succeeded");
    assert!(step["targets"][1]["rollback_status"].is_null());
    assert_eq!(doc["rollback"]["status"], "succeeded");
    // Each target's attempt is on record, its error naming the target.
    let (e, _) = env.last();
    let s = env.store();
    let attempts = s.block(s.store.attempts(&e.id)).unwrap();
    let errors: Vec<Option<&str>> =
        attempts.iter().filter(|a| a.phase == Phase::Step).map(|a| a.error.as_deref()).collect();
    assert_eq!(errors, [None, Some("b: exited with code 3"), Some("c: exited with code 3")]);
    assert_eq!(attempts.iter().filter(|a| a.phase == Phase::Rollback).count(), 2, "a's, and the step's");
}

#[test]
fn a_target_retries_on_its_own_and_percentages_allow_errors() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: flaky\n      run: |\n        echo $OPSBOOK_ATTEMPT >> \"$T/attempts-{{ target }}\"\n        n=$(cat \"$T/n-{{ target }}\" 2>/dev/null || echo 0); echo $((n+1)) > \"$T/n-{{ target }}\"\n        test {{ target }} != x || test $n -ge 1\n        test {{ target }} != broken\n      retries: { count: 2, delay: 10ms }\n      targets: { hosts: [x, y, broken, z], via: local, max_concurrency: 4, max_errors: \"25%\" }\n",
    );
    let out = env.run_book(&book, &["--output", "json"]);
    assert_eq!(out.code, 0, "one of four failing is within 25%: {out:?}");
    let doc = out.json();
    let t = &doc["steps"][0]["targets"];
    assert_eq!((t[0]["status"].as_str(), t[0]["attempts"].as_i64()), (Some("succeeded"), Some(2)));
    assert_eq!((t[1]["status"].as_str(), t[1]["attempts"].as_i64()), (Some("succeeded"), Some(1)));
    assert_eq!((t[2]["status"].as_str(), t[2]["attempts"].as_i64()), (Some("failed"), Some(3)));
    assert_eq!(env.read("n-broken"), "3\n");
    assert_eq!(env.read("attempts-x"), "1\n2\n", "each target counts its own attempts");
    assert_eq!(env.read("attempts-y"), "1\n");
    assert_eq!(doc["steps"][0]["outputs"]["failed"], "broken");
    assert!(out.stderr.is_empty() || !out.stderr.contains("panick"), "{out:?}");
    let (_, steps) = env.last();
    assert_eq!(steps[0].status, StepStatus::Succeeded);
    assert_eq!(steps[0].attempts, 7, "every target's attempts");
}

#[test]
fn targets_come_from_an_inventory_group_and_a_wrong_group_is_named() {
    let env = Env::new();
    env.write(
        "hosts.yaml",
        "hosts:\n  web-1: { address: 10.0.0.1, user: deploy }\n  web-2:\n  db-1:\ngroups:\n  web: [web-2, web-1]\n",
    );
    let book = |group: &str| {
        runbook(
            "",
            &format!(
                "    - id: each\n      run: echo \"{{{{ target }}}}\" >> \"$T/seen\"\n      targets: {{ inventory: hosts.yaml, group: {group}, via: local }}\n"
            ),
        )
    };
    let out = env.run_book(&book("web"), &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(env.read("seen"), "web-2\nweb-1\n", "in the group's order, one at a time");
    // A wrong group, a missing inventory or a broken one: refused before any step runs,
    // and by `validate`, at the step.
    let first = "    - id: first\n      run: touch \"$T/first\"\n";
    env.write("dup.yaml", "hosts:\n  h1:\n  h1:\n");
    for (targets, why) in [
        ("inventory: hosts.yaml, group: wbe", "hosts.yaml: no group `wbe` (did you mean `web`?)"),
        ("inventory: missing.yaml", "cannot read the inventory missing.yaml: No such file or directory (os error 2)"),
        ("inventory: dup.yaml", "dup.yaml:3:3: duplicate key"),
    ] {
        let steps = format!("{first}    - id: each\n      run: \"true\"\n      targets: {{ {targets}, via: local }}\n");
        let out = env.run_book(&runbook("", &steps), &[]);
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains(&format!("test.yaml:11:7: step `each`: targets: {why}")), "{out:?}");
        assert!(!env.path("first").exists(), "nothing ran");
        let checked = env.run(&["validate", "test.yaml"]);
        assert_eq!(checked.code, 1, "{checked:?}");
        assert!(checked.stdout.contains(&format!("test.yaml:11:7: step `each`: targets: {why}")), "{checked:?}");
    }
}

/// A real OpenSSH server on a free loopback port, with its own host key and one
/// authorized user key; killed (by its PID) when dropped.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sshd {
    fn start() -> Sshd {
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("sshd is installed (Debian's openssh-server: ./scripts/test installs it)");
        // As root, sshd wants its privilege separation directory (systemd makes it).
        if nix::unistd::geteuid().is_root() {
            std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        }
        let dir = tempfile::tempdir().unwrap();
        let keygen = |name: &str| {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.path().join(name))
                .status()
                .expect("ssh-keygen runs");
            assert!(ok.success());
        };
        keygen("host_key");
        keygen("user_key");
        keygen("other_key");
        std::fs::copy(dir.path().join("user_key.pub"), dir.path().join("authorized_keys")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 PermitRootLogin prohibit-password\nPidFile none\n"
            ),
        )
        .unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd starts");
        wait_until(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(), "sshd to listen");
        Sshd { child, port, dir }
    }

    /// A known_hosts line for `host` on this server's port with this public key file's key.
    fn known(&self, host: &str, key: &str) -> String {
        let public = std::fs::read_to_string(self.dir.path().join(key)).unwrap();
        let mut parts = public.split_whitespace();
        format!("[{host}]:{} {} {}\n", self.port, parts.next().unwrap(), parts.next().unwrap())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies the server's client key next to the runbook and writes known_hosts: the
/// server's own key for 127.0.0.1, another key for `localhost` (a host key mismatch).
fn ssh_files(env: &Env, sshd: &Sshd) {
    std::fs::copy(sshd.dir.path().join("user_key"), env.path("user_key")).unwrap();
    let known = sshd.known("127.0.0.1", "host_key.pub") + &sshd.known("localhost", "other_key.pub");
    env.write("known_hosts", &known);
}

#[test]
fn ssh_targets_run_remotely_and_refusals_and_wrong_host_keys_fail_their_target() {
    let sshd = Sshd::start();
    let env = Env::new();
    ssh_files(&env, &sshd);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    env.write(
        "hosts.yaml",
        &format!(
            "hosts:\n  good: {{ address: 127.0.0.1, port: {p} }}\n  refusing: {{ address: 127.0.0.1, port: {closed} }}\n  \
             impostor: {{ address: localhost, port: {p} }}\n",
            p = sshd.port
        ),
    );
    let secret = "S3cr3t-never-on-a-command-line";
    let book = runbook(
        "    token: { type: secret, required: true }\n    note: { type: string, default: \"it's \\\"quoted\\\" $HOME\" }\n",
        "    - id: remote\n      run: |\n        echo \"on {{ target }}: {{ params.note }} token $(echo \"$OPSBOOK_PARAM_TOKEN\" | wc -c) bytes; $OPSBOOK_PARAM_TOKEN\"\n        echo \"remote_pid=$$\" >> \"$OPSBOOK_OUTPUT\"\n        echo to-stderr >&2\n        sleep 2\n      targets:\n        inventory: hosts.yaml\n        via: ssh\n        max_concurrency: 3\n        max_errors: 2\n        ssh: { identity_file: user_key, known_hosts: known_hosts, connect_timeout: 20s }\n",
    );
    env.write("test.yaml", &book);
    env.write("secret.yaml", &format!("token: {secret}\n"));
    let mut child = env.cmd(&["run", "test.yaml", "--params-file", "secret.yaml", "--output", "json"]);
    let child = child.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // While it runs, no process on this machine (the ssh clients, sshd's children, the
    // remote shells) has the secret on its command line.
    let mut scans = 0;
    while !child_done(&child) {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                assert!(
                    !String::from_utf8_lossy(&cmdline).contains(secret),
                    "the secret is on the command line of process {:?}",
                    entry.file_name()
                );
            }
        }
        scans += 1;
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = crate::support::out(child.wait_with_output().unwrap());
    assert_eq!(out.code, 0, "two failed targets are within max_errors 2: {out:?}");
    assert!(scans >= 5, "the scan ran while the step did ({scans} scans)");
    let doc = out.json();
    let step = &doc["steps"][0];
    let t = |name: &str| step["targets"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap().clone();
    assert_eq!(t("good")["status"], "succeeded");
    assert_eq!(t("good")["exit_code"], 0);
    let pid: i32 = step["outputs"]["good.remote_pid"].as_str().unwrap().parse().unwrap();
    assert!(pid > 1, "the outputs came back over SSH");
    assert_eq!(t("refusing")["status"], "failed");
    assert_eq!(
        t("refusing")["error"],
        format!("ssh to 127.0.0.1 failed: ssh: connect to host 127.0.0.1 port {closed}: Connection refused")
    );
    assert_eq!(t("impostor")["status"], "failed");
    assert_eq!(t("impostor")["error"], "ssh to localhost failed: Host key verification failed.");
    let logs = env.run(&["logs", doc["id"].as_str().unwrap()]).stdout;
    assert!(
        logs.contains("[remote] [good] on good: it's \"quoted\" $HOME token 31 bytes; ***"),
        "values arrive as written, the secret masked: {logs}"
    );
    assert!(logs.contains("[remote stderr] [good] to-stderr"), "{logs}");
    assert!(logs.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"), "ssh says why: {logs}");
    assert!(!logs.contains(secret));
}

fn child_done(child: &Child) -> bool {
    dead(i32::try_from(child.id()).unwrap())
}

#[test]
fn an_ssh_target_that_times_out_has_its_remote_command_killed() {
    let sshd = Sshd::start();
    let env = Env::new();
    ssh_files(&env, &sshd);
    // The timeout leaves room for ssh's handshake on a loaded machine (2 s did not, in CI).
    let book = runbook(
        "",
        &format!(
            "    - id: slow\n      timeout: 8s\n      run: |\n        sh -c 'echo $$ > \"{d}/remote-child\"; exec sleep 300' &\n        echo $$ > \"{d}/remote\"\n        sleep 300\n      targets:\n        hosts: [\"127.0.0.1:{p}\"]\n        via: ssh\n        ssh: {{ identity_file: user_key, known_hosts: known_hosts }}\n",
            d = env.dir.path().display(),
            p = sshd.port
        ),
    );
    let out = env.run_book(&book, &["--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    assert_eq!(doc["steps"][0]["targets"][0]["status"], "timed_out");
    assert_eq!(doc["steps"][0]["error"], "1 of 1 targets failed (127.0.0.1: timed out after 8s)");
    let remote: i32 = env.read("remote").trim().parse().unwrap();
    let remote_child: i32 = env.read("remote-child").trim().parse().unwrap();
    wait_until(|| dead(remote) && dead(remote_child), "the remote command and its children to be killed");
}

/// The newest execution's first step has its first target on record as succeeded.
fn first_target_succeeded(env: &Env) -> bool {
    let s = env.store();
    let e = s.block(s.store.executions(&Default::default())).unwrap();
    e.first().is_some_and(|e| {
        let steps = s.block(s.store.steps(&e.id)).unwrap();
        steps[0].targets.first().is_some_and(|t| t.status == StepStatus::Succeeded)
    })
}

#[test]
fn kill_9_mid_targets_then_recovery_kills_every_target_and_resume_runs_only_the_rest() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: fan\n      idempotent: true\n      run: |\n        echo {{ target }} >> \"$T/done\"\n        if [ {{ target }} != a ] && [ ! -e \"$T/crashed-{{ target }}\" ]; then\n          touch \"$T/crashed-{{ target }}\"; echo $$ > \"$T/pid-{{ target }}\"; sleep 300\n        fi\n      targets: { hosts: [a, b, c], via: local, max_concurrency: 3 }\n",
    );
    env.write("test.yaml", &book);
    // The targets' groups outlive their runner, for recovery to find (as on a server).
    let mut cmd = env.cmd(&["run", "test.yaml"]);
    cmd.env("OPSBOOK_STEP_PARENT_DEATH", "recovery");
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let (b, c) = (env.wait_for_pid("pid-b"), env.wait_for_pid("pid-c"));
    wait_until(|| first_target_succeeded(&env), "target a to be on record as succeeded");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dead(b) && !dead(c), "both targets' groups run on, orphaned");
    let o = env.run(&["history"]);
    assert!(o.stderr.contains("was interrupted"), "{o:?}");
    wait_until(|| dead(b) && dead(c), "recovery to kill every target's group");
    let (e, steps) = env.last();
    assert!(e.error.as_deref().unwrap().contains("processes it left running (step `fan`) were killed"), "{e:?}");
    let status: Vec<StepStatus> = steps[0].targets.iter().map(|t| t.status).collect();
    assert_eq!(status, [StepStatus::Succeeded, StepStatus::Cancelled, StepStatus::Cancelled]);
    let resumed = env.run(&["resume", &e.id, "--output", "json"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    let mut done: Vec<String> = env.read("done").lines().map(str::to_string).collect();
    done.sort();
    assert_eq!(done, ["a", "b", "b", "c", "c"], "a ran once; b and c again");
    let attempts: Vec<i64> = resumed.json()["steps"][0]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["attempts"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 2]);
}

/// kill -9 of the runner with several targets' groups running: its guardian kills every
/// live group at once, and leaves alone what a target that already ended left running
/// (its group was released).
#[test]
fn kill_9_mid_targets_the_guardian_kills_every_live_group_and_no_ended_one() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: fan\n      run: |\n        if [ {{ target }} = a ]; then sleep 300 > /dev/null 2>&1 & echo $! > \"$T/pid-a\"; exit 0; fi\n        echo $$ > \"$T/pid-{{ target }}\"\n        sleep 300\n      targets: { hosts: [a, b, c, d], via: local, max_concurrency: 4 }\n",
    );
    env.write("test.yaml", &book);
    let mut child = env.cmd(&["run", "test.yaml"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let left = env.wait_for_pid("pid-a");
    let live = [env.wait_for_pid("pid-b"), env.wait_for_pid("pid-c"), env.wait_for_pid("pid-d")];
    wait_until(|| first_target_succeeded(&env), "target a to be on record as succeeded");
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until(|| live.iter().all(|&p| dead(p)), "every running target's group to die with its runner");
    let survived = !dead(left);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(left), nix::sys::signal::Signal::SIGKILL);
    assert!(survived, "what an ended target left running is not the guardian's to kill");
}

#[test]
fn ctrl_c_stops_the_running_targets_starts_no_more_and_rolls_back_where_it_succeeded() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: fan\n      run: |\n        if [ {{ target }} = a ]; then exit 0; fi\n        echo $$ > \"$T/pid-{{ target }}\"\n        sleep 300\n      targets: { hosts: [a, b, c, d], via: local, max_concurrency: 2 }\n      rollback:\n        run: touch \"$T/undone-{{ target }}\"\n",
    );
    env.write("test.yaml", &book);
    let child = env.spawn(&["run", "test.yaml", "--output", "json"]);
    // a ends at once; b and c run (2 at a time); d waits for a place.
    let (b, c) = (env.wait_for_pid("pid-b"), env.wait_for_pid("pid-c"));
    crate::support::signal(&child, nix::sys::signal::Signal::SIGINT);
    let out = crate::support::out(child.wait_with_output().unwrap());
    assert_eq!(out.code, 1, "{out:?}");
    wait_until(|| dead(b) && dead(c), "the running targets to be killed");
    let doc = out.json();
    assert_eq!(doc["status"], "cancelled");
    let step = &doc["steps"][0];
    assert_eq!(step["status"], "cancelled");
    let status: Vec<&str> = step["targets"].as_array().unwrap().iter().map(|t| t["status"].as_str().unwrap()).collect();
    assert_eq!(status, ["succeeded", "cancelled", "cancelled", "skipped"]);
    assert_eq!(step["targets"][3]["error"], "not started: cancelled");
    assert!(!env.path("pid-d").exists(), "d never started");
    assert!(env.path("undone-a").exists(), "the rollback ran where the step succeeded");
    for t in ["b", "c", "d"] {
        assert!(!env.path(&format!("undone-{t}")).exists(), "no rollback on {t}");
    }
}

#[test]
fn a_targets_step_that_is_not_required_still_counts_its_targets_failures() {
    let env = Env::new();
    let book = runbook(
        "",
        "    - id: fan\n      required: false\n      run: test {{ target }} != b\n      targets: { hosts: [a, b, c], via: local }\n    - id: next\n      run: \"true\"\n",
    );
    let out = env.run_book(&book, &["--output", "json"]);
    assert_eq!(out.code, 0, "the run goes on: {out:?}");
    let doc = out.json();
    assert_eq!(doc["steps"][0]["status"], "failed");
    assert_eq!(doc["steps"][0]["error"], "1 of 3 targets failed (b: exited with code 1); not started: c");
    assert_eq!(doc["steps"][0]["outputs"]["failed"], "b");
    assert_eq!(doc["steps"][1]["status"], "succeeded");
}

#[test]
fn ssh_outputs_exit_codes_and_settings_are_each_targets_own() {
    let sshd = Sshd::start();
    let env = Env::new();
    ssh_files(&env, &sshd);
    // known_hosts with another key for 127.0.0.1: a step naming it must not ride on the
    // connection the first step opened with the right one.
    env.write("wrong_known_hosts", &sshd.known("127.0.0.1", "other_key.pub"));
    let host = format!("127.0.0.1:{}", sshd.port);
    let book = runbook(
        "",
        &format!(
            "    - id: big\n      run: |\n        yes x | head -c 200000 | tr -dc x > \"$T/big\"\n        printf 'blob=' >> \"$OPSBOOK_OUTPUT\"; cat \"$T/big\" >> \"$OPSBOOK_OUTPUT\"; echo >> \"$OPSBOOK_OUTPUT\"\n        printf 'no newline at the end'\n      targets: {{ hosts: [\"{host}\"], via: ssh, ssh: {{ identity_file: user_key, known_hosts: known_hosts }} }}\n    - id: own255\n      run: exit 255\n      validate: [ {{ exit_code: 255 }} ]\n      targets: {{ hosts: [\"{host}\"], via: ssh, ssh: {{ identity_file: user_key, known_hosts: known_hosts }} }}\n    - id: impostor\n      required: false\n      run: \"true\"\n      targets: {{ hosts: [\"{host}\"], via: ssh, ssh: {{ identity_file: user_key, known_hosts: wrong_known_hosts }} }}\n"
        ),
    );
    let out = env.run_book(&book, &["--output", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let doc = out.json();
    let blob = doc["steps"][0]["outputs"]["127.0.0.1.blob"].as_str().unwrap().to_string();
    assert!(blob.len() == 100_000 && blob.bytes().all(|b| b == b'x'), "a 100 kB output came back whole");
    let logs = env.run(&["logs", doc["id"].as_str().unwrap()]).stdout;
    assert!(logs.contains("[big] [127.0.0.1] no newline at the end"), "{logs}");
    assert_eq!(doc["steps"][1]["status"], "succeeded", "the script's own 255 is its exit code");
    assert!(doc["steps"][1]["targets"][0]["error"].is_null(), "{}", doc["steps"][1]);
    assert_eq!(doc["steps"][2]["status"], "failed");
    assert_eq!(doc["steps"][2]["targets"][0]["error"], "ssh to 127.0.0.1 failed: Host key verification failed.");
}
