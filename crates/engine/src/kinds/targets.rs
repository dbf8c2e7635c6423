//! `targets`: a `run` step once per target, at most `max_concurrency` at a time, here
//! (`via: local`) or over SSH (`via: ssh`, see [`super::ssh`]). Each target is its own
//! attempt (with the step's retries), on record as it ends (the step's row keeps every
//! target's status, exit code, times and error); once more than `max_errors` targets
//! failed, no new target starts and the step fails. A rollback runs on the targets the
//! step succeeded on, and only there.
//!
//! Output lines carry the target's name (`[web-1] …`), so the live display, `logs` and
//! the web page keep targets apart.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use opsbook_core::step::run::Script;
use opsbook_core::step::targets::{Inventory, Source, Target, Targets, Via};
use opsbook_core::{Step, StepStatus, template};
use opsbook_store::{Phase, Store, Stream, TargetRecord, now_ms};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::AttemptResult;
use super::run::{Prep, Prepared, ScriptRun};
use crate::lines::LineSplitter;
use crate::observer::Event;
use crate::process::{self, Chunk, Exit};
use crate::runner::{Flow, Run};
use crate::{Error, Result};

/// What the targets' jobs tell the loop.
enum Msg {
    Chunk(usize, Chunk),
    Started(usize, u32),
}

/// One run of the script on some targets: the step's, or its rollback's.
struct Fleet<'a> {
    idx: usize,
    step: &'a Step,
    script: &'a Script,
    via: Via,
    targets: &'a Targets,
    resolved: Vec<Target>,
    phase: Phase,
    timeout: Duration,
    max_attempts: u32,
    /// How many targets may fail before no new one starts; `None` (a rollback): all run.
    allowed_errors: Option<usize>,
    concurrency: usize,
    cancel_level: u8,
}

/// A target's attempt while it runs.
struct Live {
    /// `None` for an attempt settled before it started (its result already on record).
    prepared: Option<Prepared>,
    text: String,
    /// The attempt's number among the step's attempts (each target's is its own).
    attempt: u32,
    /// Which of the target's tries this is (0 = the first).
    try_n: u32,
    started: i64,
    out: LineSplitter,
    err: LineSplitter,
    seen: Vec<bool>,
    last_err: Option<String>,
    /// SSH: the line after which the outputs come, and what came after it.
    marker: Option<String>,
    outputs: Option<String>,
}

/// What a fleet came to.
struct Outcome {
    failed: Vec<usize>,
    not_started: Vec<usize>,
    cancelled: bool,
}

/// Runs step `idx` on its targets.
pub(crate) async fn run_step<S: Store>(run: &mut Run<'_, '_, S>, idx: usize, step: &Step) -> Result<Flow> {
    let (opsbook_core::StepKind::Run(script), Some(targets)) = (&step.kind, &step.targets) else {
        unreachable!("a run step with targets");
    };
    let max = step.attempts();
    let started = now_ms();
    {
        let rec = &mut run.steps[idx];
        rec.status = StepStatus::Running;
        rec.started_at.get_or_insert(started);
        rec.finished_at = None;
        rec.error = None;
    }
    run.steps[idx].rendered = super::display(run, step);
    run.event(&Event::StepStarted { idx, step_id: &step.id, name: &step.name, attempt: 1, max_attempts: max });
    let resolved = match resolve(run, targets) {
        Ok(t) => t,
        Err(e) => return settle(run, idx, step, StepStatus::Failed, Some(format!("targets: {e}"))).await,
    };
    // A step run again (after a crash, or `resume`) runs only where it did not succeed.
    let same = run.steps[idx].targets.iter().map(|t| &t.name).eq(resolved.iter().map(|t| &t.name));
    if !same {
        run.steps[idx].targets = resolved.iter().map(|t| TargetRecord::pending(&t.name)).collect();
    }
    let mut todo = Vec::new();
    for (i, t) in run.steps[idx].targets.iter_mut().enumerate() {
        if t.status != StepStatus::Succeeded {
            t.status = StepStatus::Pending;
            t.error = None;
            todo.push(i);
        }
    }
    run.save_step(idx).await?;
    let n = resolved.len();
    let fleet = Fleet {
        idx,
        step,
        script,
        via: targets.via,
        targets,
        phase: Phase::Step,
        timeout: step.timeout.0,
        max_attempts: max,
        allowed_errors: Some(targets.max_errors.of(n, false)),
        concurrency: targets.max_concurrency.of(n, true),
        cancel_level: 1,
        resolved,
    };
    let out = drive(run, &fleet, todo).await?;
    let names = |slots: &[usize]| slots.iter().map(|&i| fleet.resolved[i].name.as_str()).collect::<Vec<_>>().join(", ");
    let why_not = if out.cancelled {
        "not started: cancelled".to_string()
    } else {
        format!("not started: more than {} target(s) failed", fleet.allowed_errors.unwrap_or(0))
    };
    for &i in &out.not_started {
        let t = &mut run.steps[idx].targets[i];
        t.status = StepStatus::Skipped;
        t.error = Some(why_not.clone());
    }
    // Outputs: which targets succeeded and failed, and each target's own as `NAME.KEY`.
    let mut outputs = serde_json::Map::new();
    let succeeded: Vec<usize> = (0..n).filter(|&i| run.steps[idx].targets[i].status == StepStatus::Succeeded).collect();
    outputs.insert("succeeded".into(), names(&succeeded).into());
    outputs.insert("failed".into(), names(&out.failed).into());
    for (k, v) in std::mem::take(&mut run.steps[idx].outputs) {
        if k.contains('.') {
            outputs.insert(k, v);
        }
    }
    run.steps[idx].outputs = outputs;
    let allowed = fleet.allowed_errors.unwrap_or(0);
    let detail = |run: &Run<'_, '_, S>| {
        out.failed
            .iter()
            .map(|&i| {
                let t = &run.steps[idx].targets[i];
                format!("{}: {}", t.name, t.error.as_deref().unwrap_or("failed"))
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let (status, error) = if out.cancelled {
        (StepStatus::Cancelled, Some("cancelled".to_string()))
    } else if out.failed.len() > allowed {
        let mut e = format!("{} of {n} targets failed ({})", out.failed.len(), detail(run));
        if !out.not_started.is_empty() {
            e.push_str(&format!("; not started: {}", names(&out.not_started)));
        }
        (StepStatus::Failed, Some(e))
    } else {
        if !out.failed.is_empty() {
            let msg =
                format!("{} of {n} targets failed, within max_errors ({allowed}): {}", out.failed.len(), detail(run));
            run.system(Some(&step.id), Phase::Step, &msg).await?;
        }
        (StepStatus::Succeeded, None)
    };
    settle(run, idx, step, status, error).await
}

/// Runs a step's `run` rollback on each target it succeeded on (and whose rollback has
/// not), as many at a time as the step ran; all are tried, whatever fails.
pub(crate) async fn rollback<S: Store>(
    run: &mut Run<'_, '_, S>,
    idx: usize,
    step: &Step,
    script: &Script,
    timeout: Duration,
) -> Result<AttemptResult> {
    let Some(targets) = &step.targets else { unreachable!("a step with targets") };
    let records = run.steps[idx].targets.clone();
    // The targets as the step ran them (their addresses may have moved since: the step's
    // names are what it succeeded on).
    let resolved = match resolve(run, targets) {
        Ok(found) => records
            .iter()
            .map(|r| found.iter().find(|t| t.name == r.name).cloned().unwrap_or_else(|| named(&r.name)))
            .collect(),
        Err(_) => records.iter().map(|r| named(&r.name)).collect::<Vec<_>>(),
    };
    let todo: Vec<usize> = (0..records.len())
        .filter(|&i| {
            records[i].status == StepStatus::Succeeded && records[i].rollback_status != Some(StepStatus::Succeeded)
        })
        .collect();
    if todo.is_empty() {
        return Ok(AttemptResult::ok(BTreeMap::new()));
    }
    let fleet = Fleet {
        idx,
        step,
        script,
        via: targets.via,
        targets,
        phase: Phase::Rollback,
        timeout,
        max_attempts: 1,
        allowed_errors: None,
        concurrency: targets.max_concurrency.of(records.len(), true),
        cancel_level: 2,
        resolved,
    };
    let out = drive(run, &fleet, todo).await?;
    for &i in &out.not_started {
        let t = &mut run.steps[idx].targets[i];
        t.rollback_status = Some(StepStatus::Cancelled);
        t.rollback_error = Some("skipped: cancelled twice".into());
    }
    if out.cancelled {
        return Ok(AttemptResult::failed(StepStatus::Cancelled, "cancelled".into()));
    }
    if out.failed.is_empty() {
        return Ok(AttemptResult::ok(BTreeMap::new()));
    }
    let detail: Vec<String> = out
        .failed
        .iter()
        .map(|&i| {
            let t = &run.steps[idx].targets[i];
            format!("{}: {}", t.name, t.rollback_error.as_deref().unwrap_or("failed"))
        })
        .collect();
    Ok(AttemptResult::failed(
        StepStatus::Failed,
        format!("the rollback failed on {} of {} targets ({})", out.failed.len(), records.len(), detail.join("; ")),
    ))
}

/// A target known only by its name (how the rollback reaches it when the inventory is gone).
fn named(name: &str) -> Target {
    Target { name: name.to_string(), address: name.to_string(), user: None, port: None }
}

/// The step's final state, on record and announced.
async fn settle<S: Store>(
    run: &mut Run<'_, '_, S>,
    idx: usize,
    step: &Step,
    status: StepStatus,
    error: Option<String>,
) -> Result<Flow> {
    let finished = now_ms();
    let error = error.map(|e| run.masker().mask(&e).into_owned());
    let rec = &mut run.steps[idx];
    rec.status = status;
    rec.finished_at = Some(finished);
    rec.error = error.clone();
    rec.attempts = rec.targets.iter().map(|t| t.attempts).sum();
    let duration_ms = finished - rec.started_at.unwrap_or(finished);
    run.save_step(idx).await?;
    run.event(&Event::StepFinished { idx, step_id: &step.id, status, duration_ms, error: error.as_deref() });
    Ok(Flow::Done(status))
}

/// The targets a step names: its hosts (templates rendered), or an inventory's group.
fn resolve<S: Store>(run: &Run<'_, '_, S>, targets: &Targets) -> std::result::Result<Vec<Target>, String> {
    let found = match &targets.source {
        Source::Hosts(hosts) => {
            let ctx = run.context(false);
            let mut found = Vec::new();
            for h in hosts {
                let text = template::render_plain(h, &ctx).map_err(|e| format!("hosts: {e}"))?;
                found.extend(Target::parse_list(&text).map_err(|e| format!("hosts: {e}"))?);
            }
            found
        }
        Source::Inventory { path, group } => {
            let full = run.base_dir.join(path);
            let text = std::fs::read_to_string(&full).map_err(|e| format!("cannot read the inventory {path}: {e}"))?;
            Inventory::parse(&text, path)?.targets(group.as_deref(), path)?
        }
    };
    if found.is_empty() {
        return Err("no targets (the list is empty)".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in &found {
        if !seen.insert(&t.name) {
            return Err(format!("target `{}` is listed twice", t.name));
        }
    }
    Ok(found)
}

/// Runs the script on the `todo` targets (slots of `fleet.resolved`), keeping the step's
/// target records up to date and on record.
async fn drive<S: Store>(run: &mut Run<'_, '_, S>, fleet: &Fleet<'_>, todo: Vec<usize>) -> Result<Outcome> {
    let (tx, mut rx) = mpsc::channel::<Msg>(256);
    let mut queue: VecDeque<usize> = todo.into();
    let mut jobs: JoinSet<(usize, std::io::Result<Exit>)> = JoinSet::new();
    let mut live: BTreeMap<usize, Live> = BTreeMap::new();
    let mut groups: BTreeMap<usize, String> = BTreeMap::new();
    let mut out = Outcome { failed: Vec::new(), not_started: Vec::new(), cancelled: false };
    let mut stop = false;
    let mut next_attempt = run.steps[fleet.idx].targets.iter().map(|t| t.attempts).sum::<i64>();
    let cancel = run.hooks.cancel.clone();
    loop {
        if run.cancel_level() >= fleet.cancel_level {
            out.cancelled = true;
            stop = true;
        }
        while !stop && jobs.len() < fleet.concurrency {
            let Some(slot) = queue.pop_front() else { break };
            next_attempt += 1;
            let attempt = u32::try_from(next_attempt).unwrap_or(u32::MAX);
            start(run, fleet, slot, 0, attempt, Duration::ZERO, &tx, &mut jobs, &mut live).await?;
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
                let l = live.remove(&slot).expect("a live target");
                let (try_n, status, retryable) = finish(run, fleet, slot, l, exit).await?;
                let cancelled = status == StepStatus::Cancelled || cancel.level() >= fleet.cancel_level;
                if status == StepStatus::Succeeded {
                    continue;
                }
                if !cancelled && retryable && try_n + 1 < fleet.max_attempts {
                    let delay = fleet.step.retries.as_ref().map(|r| r.delay_before(try_n)).unwrap_or_default();
                    let delay = if run.engine.config.mocks.is_some() { Duration::ZERO } else { delay };
                    let t = &run.steps[fleet.idx].targets[slot];
                    let msg = format!(
                        "[{}] attempt {} of {} failed: {}; retrying in {}",
                        t.name,
                        try_n + 1,
                        fleet.max_attempts,
                        t.error.as_deref().unwrap_or("failed"),
                        opsbook_core::duration::human_ms(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
                    );
                    run.system(Some(&fleet.step.id), fleet.phase, &msg).await?;
                    next_attempt += 1;
                    let attempt = u32::try_from(next_attempt).unwrap_or(u32::MAX);
                    start(run, fleet, slot, try_n + 1, attempt, delay, &tx, &mut jobs, &mut live).await?;
                    continue;
                }
                if cancelled {
                    out.cancelled = true;
                    stop = true;
                } else {
                    out.failed.push(slot);
                    if fleet.allowed_errors.is_some_and(|a| out.failed.len() > a) {
                        stop = true;
                    }
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(250)) => run.sink.flush().await?,
        }
    }
    out.not_started = queue.into_iter().collect();
    run.sink.flush().await?;
    Ok(out)
}

/// Prepares a target's attempt and starts it (after `delay`), or settles it at once
/// when it cannot run (a template, a mock).
#[allow(clippy::too_many_arguments)]
async fn start<S: Store>(
    run: &mut Run<'_, '_, S>,
    fleet: &Fleet<'_>,
    slot: usize,
    try_n: u32,
    attempt: u32,
    delay: Duration,
    tx: &mpsc::Sender<Msg>,
    jobs: &mut JoinSet<(usize, std::io::Result<Exit>)>,
    live: &mut BTreeMap<usize, Live>,
) -> Result<()> {
    let target = fleet.resolved[slot].clone();
    let started = now_ms();
    {
        let t = &mut run.steps[fleet.idx].targets[slot];
        if fleet.phase == Phase::Step {
            t.status = StepStatus::Running;
            t.attempts += 1;
            t.started_at.get_or_insert(started);
            t.finished_at = None;
            t.error = None;
        } else {
            t.rollback_status = Some(StepStatus::Running);
            t.rollback_error = None;
        }
    }
    run.save_step(fleet.idx).await?;
    let mut ctx = run.context_for(false, &[&fleet.script.template]);
    ctx.target = Some(target.name.clone());
    let field = if fleet.phase == Phase::Rollback { "rollback.run" } else { "run" };
    let text = template::render_shell(&fleet.script.template, &ctx);
    let validations = if fleet.phase == Phase::Step { fleet.step.validate.as_slice() } else { &[] };
    let prep = match &text {
        Ok(text) => {
            let sr = script_run(fleet, text, attempt, &target.name, validations);
            super::run::prepare(run, &sr).await?
        }
        Err(e) => Prep::Done(AttemptResult::fatal(format!("{field}: {e}"))),
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
    let marker = (fleet.via == Via::Ssh).then(|| {
        let control = run.engine.scratch.dir().unwrap_or_else(|_| std::env::temp_dir());
        super::ssh::wrap(
            &mut prepared.spec,
            &text,
            fleet.script.shell,
            &target,
            &fleet.targets.ssh,
            &run.base_dir,
            &control,
        )
    });
    let seen = vec![false; prepared.validations.len()];
    let spec = prepared.spec.clone();
    let (cancel, tx) = (run.hooks.cancel.clone(), tx.clone());
    let level = fleet.cancel_level;
    jobs.spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.reached(level) => return (slot, Ok(Exit::Cancelled)),
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
        },
    );
    Ok(())
}

fn script_run<'a>(
    fleet: &'a Fleet<'_>,
    text: &'a str,
    attempt: u32,
    target: &'a str,
    validations: &'a [opsbook_core::CheckedValidation],
) -> ScriptRun<'a> {
    ScriptRun {
        text,
        script: fleet.script,
        timeout: fleet.timeout,
        step_id: Some(&fleet.step.id),
        phase: fleet.phase,
        attempt,
        validations,
        cancel_level: fleet.cancel_level,
        target: Some(target),
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
        }
    }
}

async fn on_msg<S: Store>(
    run: &mut Run<'_, '_, S>,
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
            let masker = run.sink.masker().clone();
            let cut = |b: &[u8]| masker.safe_cut(b);
            let lines = match chunk.stream {
                Stream::Stdout => l.out.push(&chunk.data, &cut),
                _ => l.err.push(&chunk.data, &cut),
            };
            for line in lines {
                log_line(run, fleet, slot, l, chunk.stream, line);
            }
            if run.sink.should_flush() {
                run.sink.flush().await?;
            }
            Ok(())
        }
    }
}

/// One line of a target's output: to the log with the target's name, or (after an SSH
/// target's marker) to its outputs.
fn log_line<S: Store>(
    run: &mut Run<'_, '_, S>,
    fleet: &Fleet<'_>,
    slot: usize,
    l: &mut Live,
    stream: Stream,
    line: Vec<u8>,
) {
    if let Some(outputs) = &mut l.outputs
        && stream == Stream::Stdout
    {
        outputs.push_str(&String::from_utf8_lossy(&line));
        outputs.push('\n');
        return;
    }
    let mut line = line;
    if stream == Stream::Stdout
        && let Some(m) = &l.marker
        && line.ends_with(m.as_bytes())
    {
        l.outputs = Some(String::new());
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
    let mut text = format!("[{}] ", fleet.resolved[slot].name).into_bytes();
    text.extend_from_slice(&line);
    run.sink.push(run.hooks.observer, Some(&fleet.step.id), fleet.phase, l.attempt, stream, &text);
}

/// Every process group the targets run in, on record for recovery.
async fn record_groups<S: Store>(
    run: &Run<'_, '_, S>,
    fleet: &Fleet<'_>,
    groups: &BTreeMap<usize, String>,
) -> Result<()> {
    let joined = groups.values().cloned().collect::<Vec<_>>().join(" ");
    let value = (!joined.is_empty()).then_some(joined);
    run.store().set_process(&run.exec.id, &fleet.step.id, value.as_deref()).await?;
    Ok(())
}

/// A target's attempt ended: judged, on record. Returns its try, status and whether a
/// retry could help.
async fn finish<S: Store>(
    run: &mut Run<'_, '_, S>,
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
    let target = fleet.resolved[slot].clone();
    let ssh_failed = fleet.via == Via::Ssh && matches!(exit, Ok(Exit::Code(super::ssh::SSH_FAILED)));
    let validations = prepared.validations.clone();
    let sr = script_run(fleet, &l.text, l.attempt, &target.name, &validations);
    let outputs = if fleet.via == Via::Ssh { Some(l.outputs.take().unwrap_or_default()) } else { None };
    let mut result = super::run::conclude(run, &sr, prepared, exit, &l.seen, outputs).await?;
    if ssh_failed {
        result.error = Some(super::ssh::describe_failure(&target, l.last_err.as_deref()));
    }
    if fleet.phase == Phase::Step {
        super::validate::after(run, fleet.step, &mut result).await?;
    }
    let status = result.status;
    let retryable = result.retryable;
    record(run, fleet, slot, l.attempt, l.started, result).await?;
    Ok((l.try_n, status, retryable))
}

/// A target's attempt on record: its target's state, the step's row, the attempt's row.
async fn record<S: Store>(
    run: &mut Run<'_, '_, S>,
    fleet: &Fleet<'_>,
    slot: usize,
    attempt: u32,
    started: i64,
    result: AttemptResult,
) -> Result<()> {
    let finished = now_ms();
    let error = result.error.as_ref().map(|e| run.masker().mask(e).into_owned());
    let name = fleet.resolved[slot].name.clone();
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
    let shown = match &error {
        None => format!(
            "[{name}] {} in {}",
            result.status.as_str(),
            opsbook_core::duration::human_ms(u64::try_from(finished - started).unwrap_or(0))
        ),
        Some(e) if result.status == StepStatus::Failed => format!("[{name}] failed: {e}"),
        Some(e) => format!("[{name}] {e}"),
    };
    run.sink.push(run.hooks.observer, Some(&fleet.step.id), fleet.phase, attempt, Stream::System, shown.as_bytes());
    run.sink.flush().await?;
    let row = AttemptResult { error: error.map(|e| format!("{name}: {e}")), ..result };
    run.record(&fleet.step.id, fleet.phase, attempt, started, &row, Some(fleet.idx)).await
}
