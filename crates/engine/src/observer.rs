//! What front ends see of a run while it happens, and how they answer approvals.

use opsbook_core::{ExecStatus, StepStatus};
use opsbook_store::{Phase, Stream, WaitKind};

/// How a run (re)starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Fresh,
    /// Goes on after an approval, a restart or `opsbook resume`.
    Resumed,
    /// The server looks again at a gate the execution waits on.
    GatePoll,
    /// A worker goes on after a gate poll found the gate clear.
    Continued,
}

/// Something that happened during a run. Text is already masked.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    Started {
        execution_id: &'a str,
        runbook: &'a str,
        version: &'a str,
        start: Start,
    },
    Warning {
        message: &'a str,
    },
    CheckStarted {
        description: &'a str,
    },
    /// `checked`: false for a prerequisite that is only shown (it has no `check`).
    CheckFinished {
        description: &'a str,
        checked: bool,
        ok: bool,
        error: Option<&'a str>,
    },
    StepStarted {
        idx: usize,
        step_id: &'a str,
        name: &'a str,
        attempt: u32,
        max_attempts: u32,
    },
    Log {
        step_id: Option<&'a str>,
        phase: Phase,
        stream: Stream,
        line: &'a str,
    },
    StepFinished {
        idx: usize,
        step_id: &'a str,
        status: StepStatus,
        duration_ms: i64,
        error: Option<&'a str>,
    },
    Waiting {
        step_id: &'a str,
        /// What it waits for: people's decision, a person's confirmation, or a gate
        /// (announced as [`Event::GateBlocked`] too).
        kind: WaitKind,
        message: &'a str,
    },
    /// A gate found blocking: newly, or for other reasons than at the last look (a
    /// server re-poll that finds the same block again reports nothing).
    GateBlocked {
        step_id: &'a str,
        gate: &'a str,
        reasons: &'a str,
    },
    /// A gate that blocked is clear again; the run goes on.
    GateCleared {
        step_id: &'a str,
        gate: &'a str,
        waited_ms: i64,
    },
    RollbackStarted {
        step_id: &'a str,
    },
    RollbackFinished {
        step_id: &'a str,
        status: StepStatus,
        error: Option<&'a str>,
    },
    Finished {
        status: ExecStatus,
    },
}

pub trait Observer: Send + Sync {
    fn on_event(&self, event: &Event<'_>);
}

/// Ignores everything.
pub struct Quiet;

impl Observer for Quiet {
    fn on_event(&self, _: &Event<'_>) {}
}

/// An approval asked of a person.
#[derive(Debug, Clone)]
pub struct ApprovalRequest {
    pub execution_id: String,
    pub step_id: String,
    pub message: String,
    pub approvers: Vec<String>,
    pub min_approvals: u32,
    pub approvals_so_far: u32,
}

/// A person's answer.
#[derive(Debug, Clone)]
pub struct Decision {
    pub approver: String,
    pub approved: bool,
    pub comment: Option<String>,
}

/// A manual step (or rollback) for a person to do and confirm.
#[derive(Debug, Clone)]
pub struct ManualRequest {
    pub execution_id: String,
    pub step_id: String,
    /// `Step`, or `Rollback` for a manual rollback.
    pub phase: Phase,
    /// What to do, rendered and masked.
    pub instructions: String,
    /// The items to confirm one by one, rendered and masked.
    pub checklist: Vec<String>,
}

/// A person's answer to a manual step: done (every item confirmed) or not done.
#[derive(Debug, Clone)]
pub struct Confirmation {
    pub by: String,
    pub done: bool,
    pub note: Option<String>,
}

/// Asks a person now (e.g. on a terminal). Blocking; run on a blocking thread.
pub trait ApprovalPrompt: Send + Sync {
    /// `None`: nobody can answer here and now; the execution will wait.
    fn ask(&self, request: &ApprovalRequest) -> Option<Decision>;

    /// Asks for a manual step to be done and confirmed. `None`: not now; it waits.
    fn confirm(&self, _request: &ManualRequest) -> Option<Confirmation> {
        None
    }
}
