//! CodePipeline without Lambda: a job worker for a custom action. It polls for the
//! action's jobs, evaluates the gate named in the action configuration (`Gate`), and
//! reports success, failure (`OnBlocked: fail`) or — while blocked under `OnBlocked: wait`,
//! the default — success with a continuation token, which keeps the job alive until the
//! next poll instead of failing the stage. The token carries when the job was first found
//! blocked, so `MaxWait` (default 3h) bounds the wait across polls and workers.
//!
//! `OnBlocked: retry` shows a block as a failed stage instead (visible, alarmed): the job
//! fails with the block records, the stage's pipeline execution is kept in the worker's
//! state file (so a restarted worker still knows it), and once the gate clears, within
//! `MaxWait`, the worker calls `RetryStageExecution` (`FAILED_ACTIONS`): CodePipeline
//! hands the action out again, and this time it passes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use opsbook_aws::wire::{CODEPIPELINE, Client, Failure};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Checker;
use crate::config::GateDef;

/// Which custom action this worker serves, and the gates it may evaluate.
pub struct WorkerConfig {
    pub category: String,
    pub provider: String,
    pub version: String,
    pub gates: BTreeMap<String, GateDef>,
    pub max_batch: i32,
    /// Where the stages to retry once their gate clears are kept (`OnBlocked: retry`).
    pub state: PathBuf,
}

/// A client with the standard credential chain, in `region` (or the chain's); the
/// endpoint follows the SDK convention (`AWS_ENDPOINT_URL_CODEPIPELINE`,
/// `AWS_ENDPOINT_URL`), which is how tests reach a double.
pub fn client<'a>(region: Option<String>) -> crate::Boxed<'a, Result<Client, String>> {
    crate::boxed(async move {
        let target = opsbook_aws::Target { region, ..Default::default() };
        let conf = opsbook_aws::config(&target).await.map_err(|e| err(e.message))?;
        Ok(conf.client(&CODEPIPELINE))
    })
}

fn err(e: impl std::fmt::Display) -> String {
    format!("CodePipeline: {e}")
}

/// CodePipeline's own words for a refusal (`InvalidNonceException: …`), else what failed.
fn sdk_err(e: Failure) -> String {
    match e {
        Failure::Service { code, message, .. } => err(format!("{code}: {message}").trim_end_matches([':', ' '])),
        Failure::Timeout => err("no answer in time"),
        Failure::Unreachable(why) => err(format!("cannot reach it: {why}")),
        Failure::Credentials(why) => err(format!(
            "no AWS credentials (environment, profile, SSO, web identity, container or instance role): {why}"
        )),
    }
}

/// The text at `path` in a document.
fn text<'v>(doc: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter().try_fold(doc, |v, k| v.get(k))?.as_str()
}

/// One poll: the stages waiting for their gate (`OnBlocked: retry`) are retried when it
/// cleared, then every job handed out is acknowledged, decided and reported.
/// Returns `(what: "job ID" or "stage PIPELINE/STAGE", what was done)`.
pub fn poll_once<'a>(
    client: &'a Client,
    cfg: &'a WorkerConfig,
    checker: &'a Checker,
) -> crate::Boxed<'a, Result<Vec<(String, String)>, String>> {
    crate::boxed(async move {
        // Trouble with the state file is said, and spares the jobs.
        let mut done = retry_cleared(client, cfg, checker)
            .await
            .unwrap_or_else(|e| vec![("retries".to_string(), format!("error: {e}"))]);
        let input = json!({
            "actionTypeId": {
                "category": cfg.category,
                "owner": "Custom",
                "provider": cfg.provider,
                "version": cfg.version,
            },
            "maxBatchSize": cfg.max_batch,
        });
        let out = client.json("PollForJobs", &input).await.map_err(sdk_err)?;
        for job in out["jobs"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let id = text(job, &["id"]).unwrap_or_default().to_string();
            // One job's trouble (e.g. another worker acknowledged it first) spares the others.
            let outcome = handle(client, cfg, checker, job).await.unwrap_or_else(|e| format!("error: {e}"));
            done.push((format!("job {id}"), outcome));
        }
        Ok(done)
    })
}

async fn handle(client: &Client, cfg: &WorkerConfig, checker: &Checker, job: &Value) -> Result<String, String> {
    let id = text(job, &["id"]).unwrap_or_default();
    let nonce = text(job, &["nonce"]).unwrap_or_default();
    client.json("AcknowledgeJob", &json!({ "jobId": id, "nonce": nonce })).await.map_err(sdk_err)?;
    let get = |k: &str| text(job, &["data", "actionConfiguration", "configuration", k]);
    let fail = |message: String| async move {
        let details = json!({ "type": "JobFailed", "message": truncate(&message, 5000) });
        let input = json!({ "jobId": id, "failureDetails": details });
        client.json("PutJobFailureResult", &input).await.map_err(sdk_err)?;
        Ok::<String, String>(format!("failed: {message}"))
    };
    let Some(name) = get("Gate") else { return fail("the action configuration names no Gate".into()).await };
    let Some(gate) = cfg.gates.get(name) else { return fail(format!("no gate `{name}` is defined")).await };
    let max_wait = match get("MaxWait").map(opsbook_core::duration::parse).transpose() {
        Ok(d) => d.map_or(DEFAULT_MAX_WAIT, |d| d.0),
        Err(e) => return fail(format!("MaxWait: {e}")).await,
    };
    // Checked before the gate is, so a typo shows at the first run, not at the first block.
    let on_blocked = match get("OnBlocked").map(str::to_ascii_lowercase).as_deref() {
        None | Some("wait") => OnBlocked::Wait,
        Some("fail") => OnBlocked::Fail,
        Some("retry") => OnBlocked::Retry,
        Some(_) => {
            let other = get("OnBlocked").unwrap_or_default();
            return fail(format!("OnBlocked: `{other}` is not wait, fail or retry")).await;
        }
    };
    let now = jiff::Timestamp::now();
    // Blocked since: carried in the continuation token from the first blocked check.
    let since = text(job, &["data", "continuationToken"]).and_then(blocked_since).unwrap_or(now.as_millisecond());
    let waited = Duration::from_millis(u64::try_from(now.as_millisecond() - since).unwrap_or(0));
    let r = checker.check(name, gate, now).await;
    let why = r.reasons().join("; ");
    if r.passes() {
        let summary = format!("gate `{name}` is {}", r.verdict.as_str());
        let details = json!({ "summary": truncate(&summary, 2048), "percentComplete": 100 });
        let input = json!({ "jobId": id, "executionDetails": details });
        client.json("PutJobSuccessResult", &input).await.map_err(sdk_err)?;
        return Ok("succeeded".into());
    }
    let message = format!("gate `{name}` is {}: {why}", r.verdict.as_str());
    match on_blocked {
        OnBlocked::Wait => {}
        OnBlocked::Fail => return fail(message).await,
        OnBlocked::Retry => {
            let Some(stage) = StageRun::of(job, name, now.as_millisecond(), max_wait) else {
                return fail(format!("{message} (OnBlocked: retry needs the job's pipeline, stage and execution)"))
                    .await;
            };
            // Kept before the job fails: a worker that dies in between still retries it.
            let state = State::lock(&cfg.state)?;
            let mut pending = state.load()?;
            pending.retain(|p| !p.same_stage(&stage));
            pending.push(stage);
            state.save(&pending)?;
            drop(state);
            let retried = format!(
                "{message}; the stage is retried when the gate clears (within {})",
                opsbook_core::Dur(max_wait)
            );
            return fail(retried).await;
        }
    }
    if waited >= max_wait {
        let human = opsbook_core::Dur(max_wait);
        return fail(format!("gate `{name}` still {} after {human}: {why}", r.verdict.as_str())).await;
    }
    // Still blocked: keep the job alive; CodePipeline hands it out again with this token.
    let message = if waited.is_zero() {
        format!("{message} (waiting up to {})", opsbook_core::Dur(max_wait))
    } else {
        format!(
            "{message} (blocked for {}; waiting up to {})",
            opsbook_core::duration::human_ms(u64::try_from(waited.as_millis()).unwrap_or(u64::MAX)),
            opsbook_core::Dur(max_wait)
        )
    };
    let input = json!({
        "jobId": id,
        "continuationToken": format!("{TOKEN_PREFIX}{since}"),
        "executionDetails": { "summary": truncate(&message, 2048), "percentComplete": 0 },
    });
    client.json("PutJobSuccessResult", &input).await.map_err(sdk_err)?;
    Ok(format!("waiting: {message}"))
}

/// A stage failed by a blocked gate (`OnBlocked: retry`), to retry once the gate clears.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRun {
    pub pipeline: String,
    pub stage: String,
    pub pipeline_execution_id: String,
    pub gate: String,
    /// When the gate was found blocked, and until when a clear gate still retries the
    /// stage (epoch ms).
    pub blocked_at: i64,
    pub retry_until: i64,
}

impl StageRun {
    fn of(job: &Value, gate: &str, now: i64, max_wait: Duration) -> Option<StageRun> {
        let ctx = &job["data"]["pipelineContext"];
        Some(StageRun {
            pipeline: text(ctx, &["pipelineName"])?.to_string(),
            stage: text(ctx, &["stage", "name"])?.to_string(),
            pipeline_execution_id: text(ctx, &["pipelineExecutionId"])?.to_string(),
            gate: gate.to_string(),
            blocked_at: now,
            retry_until: now.saturating_add(i64::try_from(max_wait.as_millis()).unwrap_or(i64::MAX)),
        })
    }

    fn same_stage(&self, other: &StageRun) -> bool {
        (&self.pipeline, &self.stage, &self.pipeline_execution_id)
            == (&other.pipeline, &other.stage, &other.pipeline_execution_id)
    }

    fn label(&self) -> String {
        format!("stage {}/{}", self.pipeline, self.stage)
    }
}

/// What a blocked gate does to the job (`OnBlocked`).
enum OnBlocked {
    Wait,
    Fail,
    Retry,
}

/// The state file, held: an exclusive lock on `PATH.lock` keeps workers that share the
/// file (same host, same action) from losing each other's changes; released when dropped.
struct State<'a> {
    path: &'a std::path::Path,
    _lock: std::fs::File,
}

impl State<'_> {
    fn lock(path: &std::path::Path) -> Result<State<'_>, String> {
        let fail = |e: std::io::Error| format!("cannot lock {}: {e}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.with_extension("lock"))
            .map_err(fail)?;
        lock.lock().map_err(fail)?;
        Ok(State { path, _lock: lock })
    }

    /// The stages waiting for their gate (none when the file does not exist yet).
    fn load(&self) -> Result<Vec<StageRun>, String> {
        match std::fs::read_to_string(self.path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("cannot read {}: {e}", self.path.display())),
        }
    }

    /// Writes the file whole: a temporary file, synced, renamed over the old one.
    fn save(&self, pending: &[StageRun]) -> Result<(), String> {
        use std::io::Write;
        let fail = |e: std::io::Error| format!("cannot write {}: {e}", self.path.display());
        let tmp = self.path.with_extension(format!("tmp.{}", std::process::id()));
        let mut f = std::fs::File::create(&tmp).map_err(fail)?;
        f.write_all(serde_json::to_string_pretty(pending).expect("plain data").as_bytes()).map_err(fail)?;
        f.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, self.path).map_err(fail)
    }
}

/// Retries the stages whose gate cleared; forgets those past their `MaxWait` or that
/// CodePipeline will never retry (a newer execution went past the stage, the pipeline or
/// stage is gone). One it cannot retry yet (other actions of the stage still running) is
/// tried again at the next poll.
async fn retry_cleared(
    client: &Client,
    cfg: &WorkerConfig,
    checker: &Checker,
) -> Result<Vec<(String, String)>, String> {
    if !cfg.state.exists() {
        return Ok(Vec::new());
    }
    let state = State::lock(&cfg.state)?;
    let pending = state.load()?;
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let now = jiff::Timestamp::now();
    let mut kept = Vec::new();
    let mut done = Vec::new();
    for run in pending {
        if now.as_millisecond() > run.retry_until {
            let max_wait = Duration::from_millis(u64::try_from(run.retry_until - run.blocked_at).unwrap_or(0));
            let within = opsbook_core::Dur(max_wait);
            done.push((run.label(), format!("not retried: gate `{}` did not clear within {within}", run.gate)));
            continue;
        }
        // A gate this worker's file does not define (now): kept, for a worker that does.
        let Some(gate) = cfg.gates.get(&run.gate) else {
            kept.push(run);
            continue;
        };
        let r = checker.check(&run.gate, gate, now).await;
        if !r.passes() {
            kept.push(run);
            continue;
        }
        let input = json!({
            "pipelineName": run.pipeline,
            "stageName": run.stage,
            "pipelineExecutionId": run.pipeline_execution_id,
            "retryMode": "FAILED_ACTIONS",
        });
        match client.json("RetryStageExecution", &input).await {
            Ok(_) => done.push((
                run.label(),
                format!("retried (pipeline execution {}): gate `{}` is clear", run.pipeline_execution_id, run.gate),
            )),
            Err(Failure::Service { code, message, .. })
                if matches!(
                    code.as_str(),
                    "NotLatestPipelineExecutionException" | "PipelineNotFoundException" | "StageNotFoundException"
                ) =>
            {
                done.push((run.label(), format!("not retried: CodePipeline: {code}: {message}")));
            }
            // Unreachable, throttled…: tried again at the next poll.
            Err(e) => {
                done.push((run.label(), format!("error: {}", sdk_err(e))));
                kept.push(run);
            }
        }
    }
    state.save(&kept)?;
    Ok(done)
}

/// How long a job waits on a blocked gate without `MaxWait` (as `opsbook gate wait`).
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(3 * 3600);

/// The continuation token: when the job was first found blocked (epoch ms).
const TOKEN_PREFIX: &str = "opsbook-gate-blocked:since=";

fn blocked_since(token: &str) -> Option<i64> {
    token.strip_prefix(TOKEN_PREFIX)?.parse().ok()
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { format!("{}…", s.chars().take(max - 1).collect::<String>()) }
}
