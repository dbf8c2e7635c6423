//! Rows as the rest of opsbook sees them.

use opsbook_core::{ExecStatus, StepStatus};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunbookVersion {
    pub sha256: String,
    pub name: String,
    pub version: String,
    pub content: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub id: String,
    pub runbook_name: String,
    pub runbook_version: String,
    pub runbook_sha256: String,
    pub source_path: Option<String>,
    /// Directory `workdir` is relative to.
    pub base_dir: String,
    pub status: ExecStatus,
    pub actor: String,
    /// Parameter values with secrets masked.
    pub params: serde_json::Value,
    /// `{name: sha256(id ":" value)}` for each secret that was set.
    pub secret_digests: serde_json::Value,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    pub current_step: Option<i64>,
    /// `None` when no rollback ran; else `succeeded` or `failed`.
    pub rollback_status: Option<StepStatus>,
    pub owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub heartbeat_at: Option<i64>,
    pub cancel_requested: bool,
    /// The execution whose `runbook` step started this one (a child execution), and
    /// that step's id.
    pub parent_id: Option<String>,
    pub parent_step: Option<String>,
}

impl Execution {
    pub fn duration_ms(&self) -> Option<i64> {
        Some(self.finished_at? - self.started_at?)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub execution_id: String,
    pub idx: i64,
    pub step_id: String,
    pub name: String,
    pub kind: String,
    pub status: StepStatus,
    pub attempts: i64,
    pub exit_code: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    pub outputs: serde_json::Map<String, serde_json::Value>,
    pub rendered: Option<String>,
    pub wait_deadline: Option<i64>,
    pub rollback_status: Option<StepStatus>,
    pub rollback_exit_code: Option<i64>,
    pub rollback_error: Option<String>,
    /// What the step waits for while it is `waiting` (stored, not inferred from its kind).
    pub wait_kind: Option<WaitKind>,
    /// The admin who waived this gate step (break glass): it then counts as passed and
    /// is not checked again for the rest of the run.
    pub overridden_by: Option<String>,
    /// A step with `targets`: how it went on each target, in the order they are listed.
    pub targets: Vec<TargetRecord>,
}

/// How a step with `targets` went on one target (stored as JSON with its step).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TargetRecord {
    pub name: String,
    /// `pending` until it starts; `skipped` when it never started (too many errors, or
    /// a cancel).
    #[serde(with = "crate::codec::status_name")]
    pub status: StepStatus,
    pub attempts: i64,
    #[serde(default)]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub started_at: Option<i64>,
    #[serde(default)]
    pub finished_at: Option<i64>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default, with = "crate::codec::opt_status_name")]
    pub rollback_status: Option<StepStatus>,
    #[serde(default)]
    pub rollback_error: Option<String>,
}

impl TargetRecord {
    pub fn pending(name: &str) -> TargetRecord {
        TargetRecord {
            name: name.to_string(),
            status: StepStatus::Pending,
            attempts: 0,
            exit_code: None,
            started_at: None,
            finished_at: None,
            error: None,
            rollback_status: None,
            rollback_error: None,
        }
    }
}

/// What a waiting step waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitKind {
    /// People's decisions.
    Approval,
    /// A health gate to clear (a gate step, or a gate's recheck holding a later step).
    Gate,
    /// A person to do a manual step and confirm it.
    Manual,
    /// A child execution (a `runbook` step's) that waits itself, or runs elsewhere.
    Child,
}

impl WaitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitKind::Approval => "approval",
            WaitKind::Gate => "gate",
            WaitKind::Manual => "manual",
            WaitKind::Child => "child",
        }
    }

    pub fn parse(s: &str) -> Option<WaitKind> {
        [WaitKind::Approval, WaitKind::Gate, WaitKind::Manual, WaitKind::Child].into_iter().find(|k| k.as_str() == s)
    }
}

impl StepRecord {
    pub fn pending(execution_id: &str, idx: i64, step_id: &str, name: &str, kind: &str) -> StepRecord {
        StepRecord {
            execution_id: execution_id.to_string(),
            idx,
            step_id: step_id.to_string(),
            name: name.to_string(),
            kind: kind.to_string(),
            status: StepStatus::Pending,
            attempts: 0,
            exit_code: None,
            started_at: None,
            finished_at: None,
            error: None,
            outputs: serde_json::Map::new(),
            rendered: None,
            wait_deadline: None,
            rollback_status: None,
            rollback_exit_code: None,
            rollback_error: None,
            wait_kind: None,
            overridden_by: None,
            targets: Vec::new(),
        }
    }

    /// The step waits for `kind` (its status and what it waits for change together).
    pub fn wait_for(&mut self, kind: WaitKind) {
        self.status = StepStatus::Waiting;
        self.wait_kind = Some(kind);
    }

    /// An admin waived this gate step (break glass): a waiting one passes now; one that
    /// passed is not checked again. Who and why are also shown with its outputs.
    pub fn waive(&mut self, by: &str, reason: &str, now: i64) {
        if self.status == StepStatus::Waiting {
            self.status = StepStatus::Succeeded;
            self.finished_at = Some(now);
            self.wait_deadline = None;
            self.wait_kind = None;
            self.attempts = self.attempts.max(1);
        }
        self.overridden_by = Some(by.to_string());
        self.outputs.insert("overridden_by".into(), by.into());
        self.outputs.insert("override_reason".into(), reason.into());
        // What blocked it stays in the audit record; the step passed.
        self.error = None;
    }

    /// A step a gate's recheck held goes back to pending: it runs when the execution
    /// goes on.
    pub fn unhold(&mut self) {
        self.status = StepStatus::Pending;
        self.error = None;
        self.wait_deadline = None;
        self.wait_kind = None;
        self.started_at = None;
    }

    pub fn duration_ms(&self) -> Option<i64> {
        Some(self.finished_at? - self.started_at?)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Check,
    Step,
    Rollback,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Check => "check",
            Phase::Step => "step",
            Phase::Rollback => "rollback",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        match s {
            "check" => Some(Phase::Check),
            "step" => Some(Phase::Step),
            "rollback" => Some(Phase::Rollback),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub execution_id: String,
    pub step_id: String,
    pub phase: Phase,
    pub attempt: i64,
    pub status: StepStatus,
    pub exit_code: Option<i64>,
    pub started_at: i64,
    pub finished_at: i64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    /// Messages from opsbook itself (retries, timeouts, rollbacks).
    System,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Stream> {
        match s {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            "system" => Some(Stream::System),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub execution_id: String,
    pub seq: i64,
    pub step_id: Option<String>,
    pub phase: Phase,
    pub attempt: i64,
    pub stream: Stream,
    pub ts: i64,
    pub line: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub execution_id: String,
    pub step_id: String,
    /// `Step`, or `Rollback` for the confirmation of a manual rollback.
    pub phase: Phase,
    pub approver: String,
    /// Approved, or (for a manual step) confirmed done.
    pub approved: bool,
    /// A confirmation of a manual step (or rollback), not an approval.
    pub manual: bool,
    pub comment: Option<String>,
    pub created_at: i64,
}

impl Approval {
    /// How the decision is spelled: `approved`, `rejected`, `confirmed` or `declined`.
    pub fn decision(&self) -> &'static str {
        match (self.manual, self.approved) {
            (false, true) => "approved",
            (false, false) => "rejected",
            (true, true) => "confirmed",
            (true, false) => "declined",
        }
    }
}

/// A review of a runbook: who read which version, when, and what they noted.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub name: String,
    pub version: String,
    pub reviewer: String,
    pub note: String,
    pub at: i64,
}

/// A person's rating (1-5) of a finished execution, with an optional comment.
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    pub execution_id: String,
    pub user: String,
    pub rating: u8,
    pub comment: Option<String>,
    pub at: i64,
}

/// An execution a runner has just claimed, with what it needs to start: its steps and
/// the last sequence number of its log (both backends read them right after the claim).
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub execution: Execution,
    pub steps: Vec<StepRecord>,
    pub last_seq: i64,
}

#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub runbook: Option<String>,
    pub status: Option<ExecStatus>,
    pub actor: Option<String>,
    /// Only the children of this execution (started by its `runbook` steps).
    pub parent: Option<String>,
    /// Only executions created at or after this time (epoch ms).
    pub since: Option<i64>,
    /// Keyset cursor: only executions strictly older than this `(created_at, id)`.
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

impl ExecutionFilter {
    /// The child executions of execution `id`, newest first (at most 500: a runbook's
    /// steps start one each, and a resume does not start another).
    pub fn children(id: &str) -> ExecutionFilter {
        ExecutionFilter { parent: Some(id.to_string()), limit: 500, ..Default::default() }
    }
}

/// Where an execution stands, as live views compare it: its status and the sequence
/// number of its last log line (0 with none). Any event a view shows changes one of them.
/// The status is the stored text, not decoded: a row a newer version wrote (in a rolling
/// upgrade) still compares, and does not fail the look at every other execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub id: String,
    pub status: String,
    pub last_seq: i64,
}

#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub execution_id: String,
    pub step_id: Option<String>,
    /// Only lines with `seq` greater than this.
    pub after_seq: i64,
    pub limit: i64,
}

/// A runbook in the server's registry: its lifecycle and newest version.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryEntry {
    pub name: String,
    pub status: String,
    pub latest_version: String,
    pub latest_sha256: String,
    pub title: String,
    pub description: Option<String>,
    pub runbook_type: String,
    pub owner: Option<String>,
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What to publish: the exact text and what the registry indexes of it.
#[derive(Debug, Clone)]
pub struct Publish {
    pub entry: RegistryEntry,
    pub content: String,
    /// Step names and ids, for full-text search.
    pub steps_text: String,
    pub actor: String,
    /// The files published with it (`ServerStore::save_bundle` first), if any.
    pub bundle_sha256: Option<String>,
    /// The runbook's own schedules (`spec.schedules`): they replace the previous
    /// version's in the same transaction, so a version never runs on another's schedules.
    pub schedules: Vec<ScheduleRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Created,
    Updated,
    Unchanged,
}

impl Published {
    pub fn as_str(self) -> &'static str {
        match self {
            Published::Created => "created",
            Published::Updated => "updated",
            Published::Unchanged => "unchanged",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PublishedVersion {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub published_by: String,
    pub published_at: i64,
    /// The bundle of files published with this version (part of the immutable version).
    pub bundle_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleEvent {
    pub name: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub actor: String,
    pub reason: Option<String>,
    pub at: i64,
}

#[derive(Debug, Clone, Default)]
pub struct RunbookQuery {
    pub q: Option<String>,
    pub runbook_type: Option<String>,
    pub tag: Option<String>,
    pub status: Option<String>,
    pub owner: Option<String>,
}

/// An API token as stored: never the secret itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub id: String,
    pub user: String,
    pub roles: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// The secret parameters of an unfinished execution, sealed (AES-256-GCM) by the
/// server: the store never sees them in the clear, nor the key.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedSecrets {
    pub execution_id: String,
    /// Which key sealed them (a digest of it), so a rotated key can still open them.
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub created_at: i64,
}

/// A browser session: the cookie's SHA-256 (never the cookie), the token it was signed
/// in with (revoking that token ends it), and its server-side expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct WebSession {
    pub hash: String,
    pub token_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub ended_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewAudit {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub request_id: String,
    pub details: serde_json::Value,
}

impl NewAudit {
    /// The record as appended: number `seq`, at `at`, chained after `prev_hash`.
    pub fn recorded(&self, seq: i64, at: i64, prev_hash: String, hash: String) -> AuditRecord {
        AuditRecord {
            seq,
            at,
            actor: self.actor.clone(),
            action: self.action.clone(),
            target: self.target.clone(),
            request_id: self.request_id.clone(),
            details: self.details.clone(),
            prev_hash,
            hash,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub request_id: String,
    pub details: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub after_seq: i64,
    /// Only records at or after this time (epoch ms).
    pub since: Option<i64>,
    pub limit: i64,
    /// The newest `limit` records that match, rather than the first; in order still.
    pub newest: bool,
}

/// One try at delivering a notification.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationAttempt {
    pub delivery_id: String,
    pub execution_id: String,
    pub event: String,
    pub rule: String,
    pub attempt: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRecord {
    pub id: String,
    pub runbook: String,
    pub source: String,
    pub cron: String,
    pub timezone: String,
    pub params: serde_json::Value,
    pub overlap: String,
    pub missed: String,
    pub created_by: String,
    pub created_at: i64,
    pub next_run_at: Option<i64>,
    pub last_run_at: Option<i64>,
    pub last_result: Option<String>,
    /// The roles of the credential it was created with: a run never has more. `None` for
    /// schedules from before they were recorded (and restored ones): the creator's now.
    pub roles: Option<Vec<String>>,
}

/// The columns analytics need of one execution.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsRow {
    pub runbook: String,
    pub status: String,
    pub actor: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub rolled_back: bool,
}
