//! kill -9 at random points, locally and under a server, then recovery as a person would
//! do it: no execution is lost, no non-idempotent step runs twice, no rollback runs twice
//! unrecorded, and no process is left running. Bounded in count and time; the seed is
//! printed (and `OPSBOOK_CHAOS_SEED` replays one).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use opsbook_core::ExecStatus;
use opsbook_store::{StepRecord, Store};

use crate::support::{Env, dead, wait_until};

/// xorshift64*: enough randomness for kill points, replayable from its seed.
struct Rng(u64);

impl Rng {
    fn seeded(what: &str) -> Rng {
        let seed = std::env::var("OPSBOOK_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
        eprintln!("{what}: OPSBOOK_CHAOS_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Four steps that note each run of themselves (and their shell's pid) in files, one of
/// them not idempotent; the last fails on odd runs, so rollbacks run too.
fn book() -> String {
    let step = |id: &str, idempotent: bool, extra: &str| {
        format!(
            "    - id: {id}\n      idempotent: {idempotent}\n      run: |\n        echo $$ >> pids\n        echo {{{{ params.n }}}}:{id} >> ran\n        sleep 0.0{}\n{extra}      rollback:\n        run: |\n          echo $$ >> pids\n          sleep 0.05\n          echo {{{{ params.n }}}}:{id} >> undone\n",
            id.len() + 2
        )
    };
    format!(
        "apiVersion: opsbook/v1\nkind: Runbook\nmetadata:\n  name: chaos\n  type: maintenance\n  version: 1.0.0\nspec:\n  parameters:\n    n: {{ type: integer, required: true }}\n  steps:\n{}{}{}    - id: last\n      idempotent: true\n      run: |\n        echo $$ >> pids\n        echo {{{{ params.n }}}}:last >> ran\n        sleep 0.1\n        test $(( {{{{ params.n }}}} % 2 )) -eq 0\n",
        step("prepare", true, ""),
        step("deploy", false, "        sleep $(( {{ params.n }} % 3 ))\n"),
        step("verify", true, ""),
    )
}

fn lines(env: &Env, file: &str) -> Vec<String> {
    std::fs::read_to_string(env.path(file)).unwrap_or_default().lines().map(str::to_string).collect()
}

fn count(lines: &[String], n: u64, step: &str) -> usize {
    lines.iter().filter(|l| **l == format!("{n}:{step}")).count()
}

/// After recovery: what the files say against what the store says, for run `n`.
fn check_run(env: &Env, n: u64, steps: &[StepRecord], logs: &str) {
    let (ran, undone) = (lines(env, "ran"), lines(env, "undone"));
    assert!(count(&ran, n, "deploy") <= 1, "run {n}: the non-idempotent step ran twice");
    for s in steps {
        let times = count(&undone, n, &s.step_id);
        let again = logs.contains(&format!("running the rollback of step `{}` again", s.step_id));
        assert!(times <= 1 + usize::from(again), "run {n}: the rollback of `{}` ran {times} times", s.step_id);
    }
}

#[test]
fn kill_9_at_random_points_locally() {
    let env = Env::new();
    env.write("chaos.yaml", &book());
    let mut rng = Rng::seeded("local chaos");
    let started = Instant::now();
    let mut killed = 0;
    for n in 0..24u64 {
        let mut child = env
            .cmd(&["run", "chaos.yaml", "-p", &format!("n={n}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.below(1200)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        // The next command finds the dead runner; nothing it started is left running.
        let _ = env.run(&["history"]);
        assert_no_group_left(&env, n);
    }
    let s = env.store();
    let executions =
        s.block(s.store.executions(&opsbook_store::ExecutionFilter { limit: 1000, ..Default::default() })).unwrap();
    for e in &executions {
        if e.status == ExecStatus::Interrupted {
            let resumed = env.run(&["resume", &e.id]);
            if resumed.code == 2 {
                let rolled = env.run(&["rollback", &e.id]);
                assert!(rolled.code == 0, "{rolled:?}");
            }
        }
        if matches!(e.status, ExecStatus::Failed | ExecStatus::Cancelled) {
            let rolled = env.run(&["rollback", &e.id]);
            assert!(rolled.code == 0 || rolled.stderr.contains("already rolled back"), "{rolled:?}");
        }
    }
    // No execution lost: every run that left a trace has a record, and none is running.
    let by_n: BTreeMap<u64, _> = s
        .block(s.store.executions(&opsbook_store::ExecutionFilter { limit: 1000, ..Default::default() }))
        .unwrap()
        .into_iter()
        .map(|e| (e.params["n"].as_u64().unwrap(), e))
        .collect();
    let ran = lines(&env, "ran");
    for n in 0..24u64 {
        let traced = ran.iter().any(|l| l.starts_with(&format!("{n}:")));
        match by_n.get(&n) {
            None => assert!(!traced, "run {n} ran steps but has no execution record"),
            Some(e) => {
                assert!(!matches!(e.status, ExecStatus::Running | ExecStatus::Queued), "run {n} is {}", e.status);
                let steps = s.block(s.store.steps(&e.id)).unwrap();
                let logs = env.run(&["logs", &e.id]).stdout;
                check_run(&env, n, &steps, &logs);
            }
        }
    }
    // Nothing left running.
    for pid in lines(&env, "pids") {
        let pid: i32 = pid.parse().unwrap();
        wait_until(|| dead(pid), "every step's shell to be gone");
    }
    eprintln!("local chaos: {killed} kills in 24 runs, {} s", started.elapsed().as_secs());
}

/// `opsbook serve` killed (-9) twice with executions in flight, restarted on the same
/// database each time: every execution ends (succeeded, failed or interrupted by the
/// kill), none ran a non-idempotent step twice, and no step process outlives it.
#[test]
fn kill_9_the_server_with_executions_in_flight() {
    let env = Env::new();
    env.write("chaos.yaml", &book());
    let mut rng = Rng::seeded("server chaos");
    let token = {
        let o = env.run(&["admin", "token", "create", "--user", "chaos", "--role", "admin"]);
        assert_eq!(o.code, 0, "{o:?}");
        o.stdout.trim().to_string()
    };
    let serve = || {
        let mut cmd = env.cmd(&["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--workers", "4"]);
        cmd.env("OPSBOOK_LEASE", "2s");
        let (child, url, _) = crate::support::start_server(cmd);
        (child, url)
    };
    let client = |url: &str, args: &[&str]| {
        let mut all = vec!["--server", url];
        all.extend_from_slice(args);
        crate::support::out(
            env.cmd(&all).env("OPSBOOK_TOKEN", &token).env("XDG_CONFIG_HOME", env.path("cfg")).output().unwrap(),
        )
    };
    let (mut server, mut url) = serve();
    // The server's own database is beside the runbook here: it stays home.
    env.write(".opsbookignore", "state/\n");
    let pushed = client(&url, &["push", "chaos.yaml"]);
    assert_eq!(pushed.code, 0, "{pushed:?}");
    let mut submitted = 0u64;
    for round in 0..2 {
        for _ in 0..10 {
            let body = format!("{{\"params\": {{\"n\": {submitted}}}}}");
            let status = post(&url, &token, "/api/v1/runbooks/chaos/executions", &body);
            assert_eq!(status, 202, "submission {submitted}");
            submitted += 1;
        }
        std::thread::sleep(Duration::from_millis(200 + rng.below(600)));
        server.kill().unwrap();
        server.wait().unwrap();
        eprintln!("server chaos: killed the server in round {round}");
        (server, url) = serve();
    }
    // Every execution ends: the restarted server recovers the ones the kill interrupted
    // (once their lease lapses) and runs the queued ones.
    let s = env.store();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all =
            s.block(s.store.executions(&opsbook_store::ExecutionFilter { limit: 1000, ..Default::default() })).unwrap();
        let open = all.iter().filter(|e| matches!(e.status, ExecStatus::Running | ExecStatus::Queued)).count();
        if all.len() as u64 == submitted && open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{open} of {} executions never ended", all.len());
        std::thread::sleep(Duration::from_millis(200));
    }
    let all =
        s.block(s.store.executions(&opsbook_store::ExecutionFilter { limit: 1000, ..Default::default() })).unwrap();
    assert_eq!(all.len() as u64, submitted, "no execution lost");
    let ran = lines(&env, "ran");
    for e in &all {
        let n = e.params["n"].as_u64().unwrap();
        assert!(count(&ran, n, "deploy") <= 1, "run {n}: the non-idempotent step ran twice");
    }
    server.kill().unwrap();
    server.wait().unwrap();
    for pid in lines(&env, "pids") {
        let pid: i32 = pid.parse().unwrap();
        wait_until(|| dead(pid), "every step's shell to be gone");
    }
}

/// Every process group a step or rollback shell led (its `$$`, noted in `pids`) is empty
/// soon (10 s, for a loaded machine): the shell died with its runner, its children with
/// recovery.
fn assert_no_group_left(env: &Env, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for pgid in lines(env, "pids") {
        let pgid: i32 = pgid.parse().unwrap();
        while group_members(pgid) > 0 {
            assert!(Instant::now() < deadline, "after run {n}: process group {pgid} is still running");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Live (not zombie) processes in process group `pgid`.
fn group_members(pgid: i32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let Some((_, rest)) = stat.rsplit_once(") ") else { return false };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.first() != Some(&"Z") && fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
        })
        .count()
}

/// POSTs a JSON body over a plain socket and returns the HTTP status.
fn post(url: &str, token: &str, path: &str, body: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: chaos\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}
