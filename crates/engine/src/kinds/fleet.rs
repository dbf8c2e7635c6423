//! Running one script per part (a step's targets, or a parallel step's branches) side
//! by side, at most `concurrency` at once: each part's attempts spawned as tasks whose
//! output comes back on one channel to the loop that owns the run, which logs it,
//! judges each attempt, keeps the parts' records (the step's `targets`, JSON in its row)
//! on record, retries, and stops starting (or cancels the rest) when too many fail.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use opsbook_core::step::run::Script;
use opsbook_core::step::targets::{Target, Targets, Via};
use opsbook_core::{Step, StepStatus, template};
use opsbook_store::{Phase, Stream, now_ms};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::AttemptResult;
use super::run::{Prep, Prepared, ScriptRun};
use crate::cancel::{Cancel, cancel_pair};
use crate::lines::LineSplitter;
use crate::process::{self, Chunk, Exit};
use crate::runner::Run;
use crate::{Error, Result};

/// What the parts' jobs tell the loop.
enum Msg {
    Chunk(usize, Chunk),
    Started(usize, u32),
}

/// One part: a target of a step, or a branch of a parallel step.
pub(crate) struct Part<'a> {
    /// Its name in the step's records: the target's, or the branch's id.
    pub name: String,
    /// The step whose timeout, retries and checks apply (the branch, or the step itself).
    pub step: &'a Step,
    /// What this phase runs: the step's script, or its rollback's.
    pub script: &'a Script,
    /// A target: what `{{ target }}` says, and how to reach it.
    pub target: Option<Target>,
    /// Lines carry `[name] ` (targets share their step's log; branches have their own).
    pub prefix: bool,
}

impl Part<'_> {
    /// A branch with `required: false`: its failure is noted and does not count. (A
    /// target's `required` is its step's: every target's failure counts.)
    fn optional(&self) -> bool {
        self.target.is_none() && !self.step.required
    }
}

/// One run of scripts on parts: a step's, or its rollback's.
pub(crate) struct Fleet<'a> {
    /// The step's position: its record holds the parts' records.
    pub idx: usize,
    pub phase: Phase,
    pub parts: Vec<Part<'a>>,
    pub via: Via,
    /// A step's targets (how they are reached); `None` for branches.
    pub targets: Option<&'a Targets>,
    pub concurrency: usize,
    /// How many parts may fail before no new one starts; `None`: all run.
    pub allowed_errors: Option<usize>,
    /// Past `allowed_errors`, the running parts are cancelled too.
    pub fail_fast: bool,
    pub cancel_level: u8,
}

impl Fleet<'_> {
    fn max_attempts(&self, slot: usize) -> u32 {
        if self.phase == Phase::Step { self.parts[slot].step.attempts() } else { 1 }
    }

    fn timeout(&self, slot: usize) -> Duration {
        let p = &self.parts[slot];
        match self.phase {
            Phase::Step => p.step.timeout.0,
            _ => p.script.timeout.map_or(p.step.timeout.0, |d| d.0),
        }
    }
}

/// A part's attempt while it runs.
struct Live {
    /// `None` for an attempt settled before it started (its result already on record).
    prepared: Option<Prepared>,
    text: String,
    /// The attempt's number among the step's attempts (each part's is its own).
    attempt: u32,
    /// Which of the part's tries this is (0 = the first).
    try_n: u32,
    started: i64,
    out: LineSplitter,
    err: LineSplitter,
    seen: Vec<bool>,
    last_err: Option<String>,
    /// SSH: the line after which the outputs come, and what came after it.
    marker: Option<String>,
    outputs: Option<Vec<u8>>,
    /// SSH: more outputs came than are kept.
    outputs_cut: bool,
    /// SSH: the far side said the script started (an exit status of 255 is then its own).
    remote_started: bool,
}

impl Live {
    /// Adds to an SSH target's outputs (bytes as they come: decoded once, at the end), up
    /// to the size kept.
    fn add_outputs(&mut self, bytes: &[u8]) {
        let Some(outputs) = &mut self.outputs else { return };
        let room = (super::run::MAX_OUTPUTS as usize).saturating_sub(outputs.len());
        if bytes.len() > room {
            self.outputs_cut = true;
        }
        outputs.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// What a fleet came to.
pub(crate) struct Outcome {
    /// Parts that failed and count (a branch with `required: false` does not).
    pub failed: Vec<usize>,
    /// Parts that failed but do not count.
    pub tolerated: Vec<usize>,
    /// Parts cancelled because another failed (`fail_fast`).
    pub stopped: Vec<usize>,
    pub not_started: Vec<usize>,
    /// The run was cancelled.
    pub cancelled: bool,
}

impl Outcome {
    /// `a, b` of the parts at these slots.
    pub fn names(fleet: &Fleet<'_>, slots: &[usize]) -> String {
        slots.iter().map(|&i| fleet.parts[i].name.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// Runs the `todo` parts (slots of `fleet.parts`, in this order), keeping their records
/// (the step's `targets`) up to date and on record.
pub(crate) async fn drive(run: &mut Run<'_, '_>, fleet: &Fleet<'_>, todo: Vec<usize>) -> Result<Outcome> {
    let (tx, mut rx) = mpsc::channel::<Msg>(256);
    let mut queue: VecDeque<usize> = todo.into();
    let mut jobs: JoinSet<(usize, std::io::Result<Exit>)> = JoinSet::new();
    let mut live: BTreeMap<usize, Live> = BTreeMap::new();
    let mut groups: BTreeMap<usize, String> = BTreeMap::new();
    let mut out = Outcome {
        failed: Vec::new(),
        tolerated: Vec::new(),
        stopped: Vec::new(),
        not_started: Vec::new(),
        cancelled: false,
    };
    let mut stop = false;
    // The parts stop on the run's cancel, or when one failing stops the others.
    let (halt, cancel) = cancel_pair();
    let forward = {
        let (run_cancel, halt, level) = (run.hooks.cancel.clone(), halt.clone(), fleet.cancel_level);
        AbortOnDrop(tokio::spawn(async move {
            run_cancel.reached(level).await;
            halt.at_least(level);
        }))
    };
    loop {
        if run.cancel_level() >= fleet.cancel_level {
            out.cancelled = true;
            stop = true;
        }
        while !stop && jobs.len() < fleet.concurrency {
            let Some(slot) = queue.pop_front() else { break };
            let job = Job { slot, try_n: 0, delay: Duration::ZERO };
            start(run, fleet, job, &cancel, &tx, &mut jobs, &mut live).await?;
        }
        if jobs.is_empty() {
            break;
        }
        tokio::select! {
            Some(msg) = rx.recv() => on_msg(run, fleet, msg, &mut live, &mut groups).await?,
            Some(joined) = jobs.join_next() => {
                let (slot, exit) = joined.map_err(|e| Error::Io(format!("a target's task failed: {e}")))?;
                // Everything the job read is in the channel by now.
                while let Ok(msg) = rx.try_recv() {
                    on_msg(run, fleet, msg, &mut live, &mut groups).await?;
                }
                if groups.remove(&slot).is_some() {
                    record_groups(run, fleet, &groups).await?;
                }
                let l = live.remove(&slot).expect("a live part");
                let (try_n, status, retryable) = finish(run, fleet, slot, l, exit).await?;
                let run_cancelled = run.cancel_level() >= fleet.cancel_level;
                if status == StepStatus::Succeeded || status == StepStatus::Skipped {
                    continue;
                }
                if !run_cancelled && status == StepStatus::Cancelled && cancel.level() >= fleet.cancel_level {
                    // Stopped because another part failed.
                    out.stopped.push(slot);
                    continue;
                }
                // Once the parts are stopping, a failure is not retried (its own error stands).
                let halted = stop || cancel.level() >= fleet.cancel_level;
                if !run_cancelled && !halted && retryable && try_n + 1 < fleet.max_attempts(slot) {
                    let part = &fleet.parts[slot];
                    let delay = part.step.retries.as_ref().map(|r| r.delay_before(try_n)).unwrap_or_default();
                    let delay = if run.engine.config.mocks.is_some() { Duration::ZERO } else { delay };
                    let t = &run.steps[fleet.idx].targets[slot];
                    let msg = format!(
                        "{}attempt {} of {} failed: {}; retrying in {}",
                        prefix(part),
                        try_n + 1,
                        fleet.max_attempts(slot),
                        t.error.as_deref().unwrap_or("failed"),
                        opsbook_core::duration::human_ms(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
                    );
                    run.system(Some(&part.step.id), fleet.phase, &msg).await?;
                    let job = Job { slot, try_n: try_n + 1, delay };
                    start(run, fleet, job, &cancel, &tx, &mut jobs, &mut live).await?;
                    continue;
                }
                if run_cancelled {
                    out.cancelled = true;
                    stop = true;
                } else if fleet.phase == Phase::Step && fleet.parts[slot].optional() {
                    out.tolerated.push(slot);
                } else {
                    out.failed.push(slot);
                    if fleet.allowed_errors.is_some_and(|a| out.failed.len() > a) {
                        stop = true;
                        if fleet.fail_fast {
                            halt.at_least(fleet.cancel_level);
                        }
                    }
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(250)) => run.sink.flush().await?,
        }
    }
    drop(forward);
    out.not_started = queue.into_iter().collect();
    run.sink.flush().await?;
    Ok(out)
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A part's next attempt.
struct Job {
    slot: usize,
    try_n: u32,
    delay: Duration,
}

fn prefix(part: &Part<'_>) -> String {
    if part.prefix { format!("[{}] ", part.name) } else { String::new() }
}

/// Prepares a part's attempt and starts it (after its delay), or settles it at once
/// when it cannot run (a template, a mock).
async fn start(
    run: &mut Run<'_, '_>,
    fleet: &Fleet<'_>,
    job: Job,
    cancel: &Cancel,
    tx: &mpsc::Sender<Msg>,
    jobs: &mut JoinSet<(usize, std::io::Result<Exit>)>,
    live: &mut BTreeMap<usize, Live>,
) -> Result<()> {
    let Job { slot, try_n, delay } = job;
    let part = &fleet.parts[slot];
    let started = now_ms();
    // Each part counts its own attempts (`$OPSBOOK_ATTEMPT`, the attempt's row).
    let mut attempt = 1;
    {
        let t = &mut run.steps[fleet.idx].targets[slot];
        if fleet.phase == Phase::Step {
            t.status = StepStatus::Running;
            t.attempts += 1;
            attempt = u32::try_from(t.attempts).unwrap_or(u32::MAX);
            t.started_at.get_or_insert(started);
            t.finished_at = None;
            t.error = None;
        } else {
            t.rollback_status = Some(StepStatus::Running);
            t.rollback_error = None;
        }
    }
    run.save_step(fleet.idx).await?;
    let mut ctx = run.context_for(false, &[&part.script.template]);
    ctx.target = part.target.as_ref().map(|t| t.name.clone());
    let field = if fleet.phase == Phase::Rollback { "rollback.run" } else { "run" };
    let text = template::render_shell(&part.script.template, &ctx);
    let validations = if fleet.phase == Phase::Step { part.step.validate.as_slice() } else { &[] };
    let prep = match &text {
        Ok(text) => {
            let sr = script_run(fleet, slot, text, attempt, validations);
            super::run::prepare(run, &sr).await?
        }
        Err(e) => Prep::Done(AttemptResult::fatal(format!("{field}: {e}"))),
    };
    // Through SSM the script is kept in the command's history: no secret may go with it.
    let prep = match (prep, text.as_ref()) {
        (Prep::Ready(p), Ok(t)) if fleet.via == Via::Ssm => {
            match super::ssm_run::secrets_refused(run, part.script, t) {
                Some(why) => Prep::Done(AttemptResult::fatal(why)),
                None => Prep::Ready(p),
            }
        }
        (prep, _) => prep,
    };
    let mut prepared = match prep {
        Prep::Ready(p) => p,
        Prep::Done(result) => {
            record(run, fleet, slot, attempt, started, result).await?;
            // Settled without a process: the loop sees it end like any other.
            jobs.spawn(async move { (slot, Ok(Exit::Code(0))) });
            live.insert(slot, Live::settled(try_n));
            return Ok(());
        }
    };
    let text = text.unwrap_or_default();
    let mut ssm = None;
    let marker = match (&part.target, fleet.targets) {
        (Some(target), Some(t)) if fleet.via == Via::Ssh => {
            let control = run.ssh_dir()?;
            let shell = part.script.shell;
            Some(super::ssh::wrap(&mut prepared.spec, &text, shell, target, &t.ssh, &run.base_dir, &control))
        }
        (Some(target), Some(t)) if fleet.via == Via::Ssm => {
            let marker = super::ssh::new_marker();
            let secrets = run.params.secret_values();
            // Secret parameters stay here (the script was checked not to need them).
            let env: Vec<(String, String)> = (prepared.spec.env.iter())
                .filter(|(_, v)| !secrets.iter().any(|s| !s.is_empty() && v.contains(s.as_str())))
                .cloned()
                .collect();
            let command = super::ssm_run::command(&env, &text, part.script.shell, &marker);
            let aws = run.aws_target(t.aws.clone());
            ssm = Some(super::ssm_run::Job { aws, instance: target.name.clone(), command, marker: marker.clone() });
            Some(marker)
        }
        _ => None,
    };
    let seen = vec![false; prepared.validations.len()];
    let spec = prepared.spec.clone();
    let (cancel, tx) = (cancel.clone(), tx.clone());
    let level = fleet.cancel_level;
    let timeout = fleet.timeout(slot);
    jobs.spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.reached(level) => return (slot, Ok(Exit::Cancelled)),
        }
        if let Some(job) = ssm {
            let (ctx, mut crx) = mpsc::channel::<Chunk>(64);
            let forward = async {
                while let Some(c) = crx.recv().await {
                    let _ = tx.send(Msg::Chunk(slot, c)).await;
                }
            };
            // Boxed: the AWS calls' state would otherwise widen every part's task.
            let sent = Box::pin(super::ssm_run::run(&job, timeout, &cancel, level, ctx));
            let (exit, ()) = tokio::join!(sent, forward);
            return (slot, exit);
        }
        let (ctx, mut crx) = mpsc::channel::<Chunk>(64);
        let (stx, srx) = tokio::sync::oneshot::channel();
        let forward = async {
            while let Some(c) = crx.recv().await {
                let _ = tx.send(Msg::Chunk(slot, c)).await;
            }
        };
        let started = async {
            if let Ok(pgid) = srx.await {
                let _ = tx.send(Msg::Started(slot, pgid)).await;
            }
        };
        let (exit, (), ()) = tokio::join!(process::run(&spec, &cancel, ctx, Some(stx)), forward, started);
        (slot, exit)
    });
    live.insert(
        slot,
        Live {
            prepared: Some(prepared),
            text,
            attempt,
            try_n,
            started,
            out: LineSplitter::default(),
            err: LineSplitter::default(),
            seen,
            last_err: None,
            marker,
            outputs: None,
            outputs_cut: false,
            remote_started: false,
        },
    );
    Ok(())
}

fn script_run<'a>(
    fleet: &'a Fleet<'_>,
    slot: usize,
    text: &'a str,
    attempt: u32,
    validations: &'a [opsbook_core::CheckedValidation],
) -> ScriptRun<'a> {
    let part = &fleet.parts[slot];
    ScriptRun {
        text,
        script: part.script,
        timeout: fleet.timeout(slot),
        step_id: Some(&part.step.id),
        phase: fleet.phase,
        attempt,
        validations,
        cancel_level: fleet.cancel_level,
        target: part.target.as_ref().map(|t| t.name.as_str()),
    }
}

impl Live {
    /// The place of an attempt settled before it started: its end only reports it.
    fn settled(try_n: u32) -> Live {
        Live {
            prepared: None,
            text: String::new(),
            attempt: 0,
            try_n,
            started: 0,
            out: LineSplitter::default(),
            err: LineSplitter::default(),
            seen: Vec::new(),
            last_err: None,
            marker: None,
            outputs: None,
            outputs_cut: false,
            remote_started: false,
        }
    }
}

async fn on_msg(
    run: &mut Run<'_, '_>,
    fleet: &Fleet<'_>,
    msg: Msg,
    live: &mut BTreeMap<usize, Live>,
    groups: &mut BTreeMap<usize, String>,
) -> Result<()> {
    match msg {
        Msg::Started(slot, pgid) => {
            groups.insert(slot, crate::recovery::process_record(pgid));
            record_groups(run, fleet, groups).await
        }
        Msg::Chunk(slot, chunk) => {
            let Some(l) = live.get_mut(&slot) else { return Ok(()) };
            if chunk.stream == Stream::Stdout && l.outputs.is_some() {
                // After an SSH target's marker: its outputs, as they come.
                l.add_outputs(&chunk.data);
                return Ok(());
            }
            let masker = run.sink.masker().clone();
            let cut = |b: &[u8]| masker.safe_cut(b);
            let lines = match chunk.stream {
                Stream::Stdout => l.out.push(&chunk.data, &cut),
                _ => l.err.push(&chunk.data, &cut),
            };
            let was_output = l.outputs.is_some();
            for line in lines {
                log_line(run, fleet, slot, l, chunk.stream, line);
            }
            if !was_output && l.outputs.is_some() {
                // The marker came in this chunk: what the splitter holds is outputs too.
                if let Some(rest) = l.out.finish() {
                    l.add_outputs(&rest);
                }
            }
            if run.sink.should_flush() {
                run.sink.flush().await?;
            }
            Ok(())
        }
    }
}

/// One line of a part's output: to the log (a target's with its name), or (after an SSH
/// target's marker) to its outputs.
fn log_line(run: &mut Run<'_, '_>, fleet: &Fleet<'_>, slot: usize, l: &mut Live, stream: Stream, line: Vec<u8>) {
    if l.outputs.is_some() && stream == Stream::Stdout {
        let mut line = line;
        line.push(b'\n');
        l.add_outputs(&line);
        return;
    }
    if stream == Stream::Stderr
        && let Some(m) = &l.marker
        && line == super::ssh::started_line(m).as_bytes()
    {
        l.remote_started = true;
        return;
    }
    let mut line = line;
    if stream == Stream::Stdout
        && let Some(m) = &l.marker
        && line.ends_with(m.as_bytes())
    {
        l.outputs = Some(Vec::new());
        line.truncate(line.len() - m.len());
        if line.is_empty() {
            return;
        }
    }
    if stream == Stream::Stdout {
        if let Some(p) = &l.prepared {
            super::run::check_line(&p.validations, &mut l.seen, &line);
        }
    } else {
        l.last_err = Some(String::from_utf8_lossy(&line).into_owned());
    }
    let part = &fleet.parts[slot];
    let mut text = prefix(part).into_bytes();
    text.extend_from_slice(&line);
    run.sink.push(run.hooks.observer, Some(&part.step.id), fleet.phase, l.attempt, stream, &text);
}

/// Every process group the targets run in, on record for recovery.
async fn record_groups(run: &Run<'_, '_>, fleet: &Fleet<'_>, groups: &BTreeMap<usize, String>) -> Result<()> {
    let joined = groups.values().cloned().collect::<Vec<_>>().join(" ");
    let value = (!joined.is_empty()).then_some(joined);
    run.patient().set_process(&run.exec.id, &run.steps[fleet.idx].step_id, value.as_deref()).await?;
    Ok(())
}

/// A part's attempt ended: judged, on record. Returns its try, status and whether a
/// retry could help.
async fn finish(
    run: &mut Run<'_, '_>,
    fleet: &Fleet<'_>,
    slot: usize,
    mut l: Live,
    exit: std::io::Result<Exit>,
) -> Result<(u32, StepStatus, bool)> {
    let Some(prepared) = l.prepared.take() else {
        // Settled when it was started: a template that does not render, a mock.
        let t = &run.steps[fleet.idx].targets[slot];
        let status =
            if fleet.phase == Phase::Step { t.status } else { t.rollback_status.unwrap_or(StepStatus::Failed) };
        let retryable = run.engine.config.mocks.is_some() && status != StepStatus::Succeeded;
        return Ok((l.try_n, status, retryable));
    };
    if let Some(line) = l.out.finish() {
        log_line(run, fleet, slot, &mut l, Stream::Stdout, line);
    }
    if let Some(line) = l.err.finish() {
        log_line(run, fleet, slot, &mut l, Stream::Stderr, line);
    }
    let part = &fleet.parts[slot];
    let ssh = l.marker.is_some();
    // SSH or SSM could not run the script (its error is the last line on standard error).
    let remote_failed = ssh && !l.remote_started && matches!(exit, Ok(Exit::Code(super::ssh::SSH_FAILED)));
    if l.outputs_cut {
        let msg = format!("warning: {}{}", prefix(part), super::run::CUT);
        run.system(Some(&part.step.id), fleet.phase, &msg).await?;
    }
    let validations = prepared.validations.clone();
    let sr = script_run(fleet, slot, &l.text, l.attempt, &validations);
    let outputs = if ssh {
        let mut bytes = l.outputs.take().unwrap_or_default();
        if l.outputs_cut {
            super::run::whole_lines(&mut bytes);
        }
        Some(String::from_utf8_lossy(&bytes).into_owned())
    } else {
        None
    };
    let mut result = super::run::conclude(run, &sr, prepared, exit, &l.seen, outputs).await?;
    match (remote_failed, &part.target) {
        (true, Some(target)) if fleet.via == Via::Ssh => {
            result.error = Some(super::ssh::describe_failure(target, l.last_err.as_deref()));
        }
        (true, Some(_)) => result.error = l.last_err.clone().or(result.error),
        _ => {}
    }
    if fleet.phase == Phase::Step {
        super::validate::after(run, part.step, &mut result).await?;
    }
    let status = result.status;
    let retryable = result.retryable;
    record(run, fleet, slot, l.attempt, l.started, result).await?;
    Ok((l.try_n, status, retryable))
}

/// A part's attempt on record: its state, the step's row, the attempt's row.
async fn record(
    run: &mut Run<'_, '_>,
    fleet: &Fleet<'_>,
    slot: usize,
    attempt: u32,
    started: i64,
    result: AttemptResult,
) -> Result<()> {
    let finished = now_ms();
    let error = result.error.as_ref().map(|e| run.masker().mask(e).into_owned());
    let part = &fleet.parts[slot];
    let name = part.name.clone();
    {
        let masker = run.sink.masker().clone();
        let rec = &mut run.steps[fleet.idx];
        if fleet.phase == Phase::Step && result.status == StepStatus::Succeeded {
            for (k, v) in &result.outputs {
                rec.outputs.insert(format!("{name}.{k}"), masker.mask(v).into_owned().into());
            }
        }
        let t = &mut rec.targets[slot];
        if fleet.phase == Phase::Step {
            t.status = result.status;
            t.exit_code = result.exit_code.map(i64::from);
            t.finished_at = Some(finished);
            t.error = error.clone();
        } else {
            t.rollback_status = Some(result.status);
            t.rollback_error = error.clone();
        }
    }
    let p = prefix(part);
    let shown = match &error {
        None => format!(
            "{p}{} in {}",
            result.status.as_str(),
            opsbook_core::duration::human_ms(u64::try_from(finished - started).unwrap_or(0))
        ),
        Some(e) if result.status == StepStatus::Failed => format!("{p}failed: {e}"),
        Some(e) => format!("{p}{e}"),
    };
    run.sink.push(run.hooks.observer, Some(&part.step.id), fleet.phase, attempt, Stream::System, shown.as_bytes());
    // The line goes out with the next batch (at most 250 ms on: the loop's timer), not in
    // a commit of its own.
    if run.sink.should_flush() {
        run.sink.flush().await?;
    }
    // A target's row is its step's, its error naming the target; a branch's is its own.
    let error = if part.prefix { error.map(|e| format!("{name}: {e}")) } else { error };
    let row = AttemptResult { error, ..result };
    run.record(&part.step.id, fleet.phase, attempt, started, &row, Some(fleet.idx)).await
}
