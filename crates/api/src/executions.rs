//! Executions: submitting, reading, following and deciding on them.

use std::collections::BTreeMap;

use opsbook_core::{ExecStatus, StepStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::time;

/// `POST /api/v1/runbooks/{name}/executions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Submit {
    /// Parameter values by name.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: BTreeMap<String, Value>,
    /// A published version (default: the newest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// An execution was queued (or, `repeated`, an earlier one had the same Idempotency-Key).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Submitted {
    pub id: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
    /// What the submitter should know, e.g. that the runbook is deprecated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Which runbook version an execution runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunbookRef {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

/// An execution without its steps (lists).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecutionSummary {
    pub id: String,
    pub runbook: RunbookRef,
    #[schema(value_type = String, example = "succeeded")]
    pub status: ExecStatus,
    pub actor: String,
    /// RFC 3339.
    #[schema(format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    pub created_at: Option<String>,
    #[schema(format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    pub started_at: Option<String>,
    #[schema(format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    /// Parameter values, secrets masked.
    #[schema(value_type = Object)]
    pub params: Value,
    pub error: Option<String>,
    /// A child execution: the execution whose `runbook` step started it, and that step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRef>,
}

/// The execution (and its `runbook` step) that started a child execution.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ParentRef {
    pub id: String,
    pub step: String,
}

/// The child execution a `runbook` step started (its newest, should it have started several).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChildRef {
    pub id: String,
    pub runbook: String,
    pub version: String,
    #[schema(value_type = String, example = "succeeded")]
    pub status: ExecStatus,
    pub error: Option<String>,
    /// `succeeded` or `failed` once it was rolled back (as a whole, with this execution).
    #[schema(value_type = Option<String>)]
    pub rollback_status: Option<StepStatus>,
    /// Its steps, in order.
    pub steps: Vec<ChildStep>,
}

/// One step of a child execution, as its parent shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChildStep {
    pub id: String,
    pub kind: String,
    #[schema(value_type = String, example = "succeeded")]
    pub status: StepStatus,
    pub attempts: i64,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    #[schema(value_type = Option<String>)]
    pub rollback_status: Option<StepStatus>,
}

/// An execution with its steps and rollback: `GET /api/v1/executions/{id}`, and the
/// CLI's `--output json`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecutionDoc {
    #[serde(flatten)]
    pub summary: ExecutionSummary,
    pub steps: Vec<StepDoc>,
    pub rollback: RollbackDoc,
    /// Who decided on its approval steps and confirmed its manual steps, in order.
    #[serde(default)]
    pub approvals: Vec<ApprovalDoc>,
}

/// One decision on an approval step, or the confirmation of a manual step (or rollback).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApprovalDoc {
    pub step: String,
    /// `step`, or `rollback` for the confirmation of a manual rollback.
    #[serde(default = "step_phase")]
    pub phase: String,
    /// `approved`, `rejected`, `confirmed` (a manual step done) or `declined` (not done).
    #[serde(default)]
    pub decision: String,
    pub approver: String,
    /// Approved, or confirmed done.
    pub approved: bool,
    pub comment: Option<String>,
    /// RFC 3339.
    #[schema(format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    pub at: Option<String>,
}

fn step_phase() -> String {
    "step".into()
}

impl From<&opsbook_store::Approval> for ApprovalDoc {
    fn from(a: &opsbook_store::Approval) -> ApprovalDoc {
        ApprovalDoc {
            step: a.step_id.clone(),
            phase: a.phase.as_str().into(),
            decision: a.decision().into(),
            approver: a.approver.clone(),
            approved: a.approved,
            comment: a.comment.clone(),
            at: time(Some(a.created_at)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepDoc {
    pub id: String,
    pub name: String,
    /// `run`, `http`, `sleep`, `approval`, `manual`, `gate`, `aws_lambda`,
    /// `aws_ssm_command`, `aws_ssm_automation`, `parallel` or `runbook`.
    pub kind: String,
    #[schema(value_type = String, example = "succeeded")]
    pub status: StepStatus,
    pub attempts: i64,
    pub exit_code: Option<i64>,
    pub duration_ms: Option<i64>,
    #[schema(value_type = Object)]
    pub outputs: Map<String, Value>,
    pub error: Option<String>,
    /// What an approval step asks (its message), or a manual step's instructions and
    /// checklist: rendered, secrets masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A step with `targets`: how it went on each target, in the order listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetDoc>,
    /// A `parallel` step: how each branch went (`name` is the branch's id), in the order written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<TargetDoc>,
    /// A `runbook` step: the child execution it started (`GET /api/v1/executions/{id}` for its steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<ChildRef>,
}

/// How a step with `targets` went on one target, or a parallel step's branch went.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TargetDoc {
    pub name: String,
    /// `pending`, `running`, `succeeded`, `failed`, `timed_out`, `cancelled`, or
    /// `skipped` (never started: too many targets failed, or a cancel).
    #[schema(value_type = String, example = "succeeded")]
    pub status: StepStatus,
    pub attempts: i64,
    pub exit_code: Option<i64>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    #[schema(value_type = Option<String>)]
    pub rollback_status: Option<StepStatus>,
    pub rollback_error: Option<String>,
}

impl From<&opsbook_store::TargetRecord> for TargetDoc {
    fn from(t: &opsbook_store::TargetRecord) -> TargetDoc {
        TargetDoc {
            name: t.name.clone(),
            status: t.status,
            attempts: t.attempts,
            exit_code: t.exit_code,
            duration_ms: t.started_at.zip(t.finished_at).map(|(s, f)| f - s),
            error: t.error.clone(),
            rollback_status: t.rollback_status,
            rollback_error: t.rollback_error.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RollbackDoc {
    pub performed: bool,
    #[schema(value_type = Option<String>)]
    pub status: Option<StepStatus>,
    /// Newest first, as they ran.
    pub steps: Vec<RollbackStep>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RollbackStep {
    pub id: String,
    #[schema(value_type = String)]
    pub status: StepStatus,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
}

impl ExecutionDoc {
    pub fn status(&self) -> ExecStatus {
        self.summary.status
    }

    /// The step waiting on a gate (a gate step, or one a gate's recheck holds), if any.
    pub fn waits_on_gate(&self) -> bool {
        self.summary.status == ExecStatus::Waiting
            && self.steps.iter().any(|s| {
                s.status == StepStatus::Waiting && s.kind != "approval" && s.kind != "manual" && s.kind != "runbook"
            })
    }

    /// The manual step waiting for its confirmation, or the step whose manual rollback
    /// waits for it (`true`), if any.
    pub fn waits_for_confirmation(&self) -> Option<(&str, bool)> {
        if self.summary.status == ExecStatus::Waiting
            && let Some(s) = self.steps.iter().find(|s| s.status == StepStatus::Waiting && s.kind == "manual")
        {
            return Some((&s.id, false));
        }
        self.rollback.steps.iter().find(|r| r.status == StepStatus::Waiting).map(|r| (r.id.as_str(), true))
    }

    /// What the execution waits for, when it waits: `Some(true)` people (an approval),
    /// `Some(false)` a gate.
    pub fn waits_for_people(&self) -> Option<bool> {
        (self.summary.status == ExecStatus::Waiting).then(|| !self.waits_on_gate())
    }

    /// Whether its log may be asked for `step`: one of its steps, or a parallel step's
    /// branch (any name while a parallel step has not started its branches); else why not.
    pub fn check_step(&self, step: &str) -> Result<(), String> {
        let names: Vec<&str> = (self.steps.iter())
            .flat_map(|s| std::iter::once(s.id.as_str()).chain(s.branches.iter().map(|b| b.name.as_str())))
            .collect();
        let unstarted_branches = self.steps.iter().any(|s| s.kind == "parallel" && s.branches.is_empty());
        if names.contains(&step) || unstarted_branches {
            return Ok(());
        }
        Err(format!("execution {} has no step `{step}`; its steps: {}", self.summary.id, names.join(", ")))
    }

    /// Still going: queued, running, waiting on a gate (which resumes by itself), or
    /// running a rollback (of a stopped execution), as opposed to waiting for people or
    /// stopped.
    pub fn in_progress(&self) -> bool {
        matches!(self.summary.status, ExecStatus::Queued | ExecStatus::Running)
            || self.waits_on_gate()
            || self.rollback.steps.iter().any(|r| r.status == StepStatus::Running)
    }
}

impl From<&opsbook_store::Execution> for ExecutionSummary {
    fn from(e: &opsbook_store::Execution) -> ExecutionSummary {
        ExecutionSummary {
            id: e.id.clone(),
            runbook: RunbookRef {
                name: e.runbook_name.clone(),
                version: e.runbook_version.clone(),
                sha256: e.runbook_sha256.clone(),
            },
            status: e.status,
            actor: e.actor.clone(),
            created_at: time(Some(e.created_at)),
            started_at: time(e.started_at),
            finished_at: time(e.finished_at),
            duration_ms: e.duration_ms(),
            params: e.params.clone(),
            error: e.error.clone(),
            parent: match (&e.parent_id, &e.parent_step) {
                (Some(id), Some(step)) => Some(ParentRef { id: id.clone(), step: step.clone() }),
                _ => None,
            },
        }
    }
}

impl ExecutionDoc {
    /// The document of an execution and its steps.
    pub fn new(e: &opsbook_store::Execution, steps: &[opsbook_store::StepRecord]) -> ExecutionDoc {
        let step_docs = steps
            .iter()
            .map(|s| StepDoc {
                id: s.step_id.clone(),
                name: s.name.clone(),
                kind: s.kind.clone(),
                status: s.status,
                attempts: s.attempts,
                exit_code: s.exit_code,
                duration_ms: s.duration_ms(),
                outputs: s.outputs.clone(),
                error: s.error.clone(),
                message: (s.kind == "approval" || s.kind == "manual").then(|| s.rendered.clone()).flatten(),
                targets: if s.kind == "parallel" {
                    Vec::new()
                } else {
                    s.targets.iter().map(TargetDoc::from).collect()
                },
                branches: if s.kind == "parallel" {
                    s.targets.iter().map(TargetDoc::from).collect()
                } else {
                    Vec::new()
                },
                child: None,
            })
            .collect();
        let rolled = steps
            .iter()
            .rev()
            .filter_map(|s| {
                Some(RollbackStep {
                    id: s.step_id.clone(),
                    status: s.rollback_status?,
                    exit_code: s.rollback_exit_code,
                    error: s.rollback_error.clone(),
                })
            })
            .collect();
        ExecutionDoc {
            summary: ExecutionSummary::from(e),
            steps: step_docs,
            rollback: RollbackDoc { performed: e.rollback_status.is_some(), status: e.rollback_status, steps: rolled },
            approvals: Vec::new(),
        }
    }

    /// With the child executions its `runbook` steps started and their steps (newest
    /// first, as listed).
    pub fn with_children(
        mut self,
        children: &[(opsbook_store::Execution, Vec<opsbook_store::StepRecord>)],
    ) -> ExecutionDoc {
        for step in &mut self.steps {
            let newest = children.iter().find(|(c, _)| c.parent_step.as_deref() == Some(step.id.as_str()));
            step.child = newest.map(|(c, steps)| ChildRef {
                id: c.id.clone(),
                runbook: c.runbook_name.clone(),
                version: c.runbook_version.clone(),
                status: c.status,
                error: c.error.clone(),
                rollback_status: c.rollback_status,
                steps: steps
                    .iter()
                    .map(|s| ChildStep {
                        id: s.step_id.clone(),
                        kind: s.kind.clone(),
                        status: s.status,
                        attempts: s.attempts,
                        duration_ms: s.duration_ms(),
                        error: s.error.clone(),
                        rollback_status: s.rollback_status,
                    })
                    .collect(),
            });
        }
        self
    }

    /// With the decisions on its approval steps.
    pub fn with_approvals(mut self, approvals: &[opsbook_store::Approval]) -> ExecutionDoc {
        self.approvals = approvals.iter().map(ApprovalDoc::from).collect();
        self
    }
}

/// `GET /api/v1/executions`: newest first; pass `next_cursor` as `cursor` for more.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecutionPage {
    pub items: Vec<ExecutionSummary>,
    pub next_cursor: Option<String>,
}

/// One line of an execution's log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// Its sequence number in the execution (also the SSE event id).
    pub seq: i64,
    /// The step it belongs to (none for the execution's own lines).
    pub step: Option<String>,
    /// `check`, `step` or `rollback`.
    pub phase: String,
    pub attempt: i64,
    /// `stdout`, `stderr` or `system`.
    pub stream: String,
    /// When it was written.
    #[schema(value_type = String, format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    #[serde(with = "crate::rfc3339")]
    pub ts: i64,
    pub line: String,
}

impl From<&opsbook_store::LogLine> for LogLine {
    fn from(l: &opsbook_store::LogLine) -> LogLine {
        LogLine {
            seq: l.seq,
            step: l.step_id.clone(),
            phase: l.phase.as_str().to_string(),
            attempt: l.attempt,
            stream: l.stream.as_str().to_string(),
            ts: l.ts,
            line: l.line.clone(),
        }
    }
}

/// `GET /api/v1/executions/{id}/logs`: pass `next_after` as `after` for more.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    pub next_after: Option<i64>,
}

/// The `status` event of `GET /api/v1/executions/{id}/events`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusEvent {
    #[schema(value_type = String)]
    pub status: ExecStatus,
    pub error: Option<String>,
}

/// `POST /api/v1/executions/{id}/approvals`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decide {
    /// `approve` or `reject`.
    pub decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A decision was recorded; `settled` when the step is decided and the execution goes on.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Decided {
    pub execution: String,
    pub step: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub comment: Option<String>,
    pub approvals: usize,
    pub min_approvals: u32,
    pub settled: bool,
}

/// `POST /api/v1/executions/{id}/cancel`: asked for (or done, for a queued one).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CancelAccepted {
    pub id: String,
}

/// `POST /api/v1/executions/{id}/resume` and `…/rollback`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    /// The secret parameters the execution started with, again (they are never stored;
    /// each is checked against its digest). Other parameters are the stored ones.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: BTreeMap<String, Value>,
}

/// A resume or rollback was started on the server; follow it like any execution.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Resumed {
    pub id: String,
    /// `resume` or `rollback`.
    pub action: String,
    /// A rollback with nothing to roll back (no step that succeeded has a rollback left):
    /// nothing was changed, nothing runs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nothing_to_roll_back: bool,
}

/// `POST /api/v1/executions/{id}/override`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Why the gate is waived (goes to the audit trail and the execution's log).
    pub reason: String,
}

/// A gate was waived: the execution goes on.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Overridden {
    pub execution: String,
    /// The step it waited at.
    pub step: String,
    /// The gate steps waived.
    pub gate_steps: Vec<String>,
    pub reason: String,
    /// What blocked it.
    pub blocked_by: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The execution document keeps its shape: what clients (and `--output json`
    /// scripts) read, field for field, survives a round trip through the types.
    #[test]
    fn the_execution_document_keeps_its_shape() {
        let doc = json!({
            "id": "01JABC",
            "runbook": { "name": "deploy", "version": "1.2.0", "sha256": "ab12" },
            "status": "waiting",
            "actor": "alice",
            "created_at": "2026-12-02T08:00:00.000Z",
            "started_at": "2026-12-02T08:00:01.000Z",
            "finished_at": null,
            "duration_ms": null,
            "params": { "env": "prod", "token": "***" },
            "error": null,
            "steps": [
                { "id": "build", "name": "Build", "kind": "run", "status": "succeeded", "attempts": 1,
                  "exit_code": 0, "duration_ms": 12, "outputs": { "sha": "f00" }, "error": null },
                { "id": "health", "name": "Health", "kind": "gate", "status": "waiting", "attempts": 0,
                  "exit_code": null, "duration_ms": null, "outputs": {}, "error": "gate `aws` blocked" }
            ],
            "rollback": { "performed": false, "status": null, "steps": [] },
            "approvals": [{ "step": "ok", "phase": "step", "decision": "approved", "approver": "bob", "approved": true,
                            "comment": "go", "at": "2026-12-02T08:00:02.000Z" }]
        });
        let typed: ExecutionDoc = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(typed.status(), ExecStatus::Waiting);
        assert!(typed.waits_on_gate() && typed.in_progress());
        assert_eq!(serde_json::to_value(&typed).unwrap(), doc);
    }

    #[test]
    fn an_unknown_status_is_refused_by_name() {
        let err = serde_json::from_value::<StatusEvent>(json!({ "status": "exploded", "error": null })).unwrap_err();
        assert!(err.to_string().contains("unknown status `exploded`"), "{err}");
    }

    #[test]
    fn a_repeated_submission_says_so_and_a_first_one_does_not() {
        let first = serde_json::to_value(Submitted { id: "a".into(), repeated: false, warnings: Vec::new() }).unwrap();
        assert_eq!(first, json!({ "id": "a" }));
        let again: Submitted = serde_json::from_value(json!({ "id": "a", "repeated": true })).unwrap();
        assert!(again.repeated);
    }
}

/// A trigger fired: the execution it queued, or (`repeated`) the one an earlier event with
/// the same id queued.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Triggered {
    pub execution_id: String,
    pub runbook: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
    /// The event's id, when it has one (a repeated id starts nothing new).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}
