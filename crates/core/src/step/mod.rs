//! Step kinds. Each kind lives in its own file: its YAML shape and its checks.
//!
//! Adding a kind means one file here, one field on [`crate::document::RawStep`],
//! one variant of [`StepKind`] and one executor file in the engine.

pub mod approval;
pub mod aws;
pub mod call;
pub mod gate;
pub mod http;
pub mod manual;
pub mod parallel;
pub mod run;
pub mod sleep;
pub mod targets;

use crate::duration::Dur;

/// What a step does.
#[derive(Debug, Clone)]
pub enum StepKind {
    Run(run::Script),
    Http(http::HttpSpec),
    Sleep(sleep::SleepSpec),
    Approval(approval::ApprovalSpec),
    Manual(manual::ManualSpec),
    Gate(gate::GateStepSpec),
    AwsLambda(aws::LambdaSpec),
    AwsSsmCommand(Box<aws::SsmCommandSpec>),
    AwsSsmAutomation(aws::SsmAutomationSpec),
    /// `run` steps side by side.
    Parallel(parallel::ParallelSpec),
    /// Another runbook, run as a child execution.
    Runbook(call::CallSpec),
}

/// What undoes a succeeded step: a script, or one of the AWS kinds.
#[derive(Debug, Clone)]
pub enum Rollback {
    Run(run::Script),
    /// An `aws_lambda`, `aws_ssm_command` or `aws_ssm_automation` action, with its timeout.
    Aws {
        kind: Box<StepKind>,
        timeout: Option<Dur>,
    },
    /// Something a person undoes by hand, confirmed like a `manual` step.
    Manual(manual::ManualSpec),
}

impl Rollback {
    /// The timeout set on the rollback itself, if any.
    pub fn timeout(&self) -> Option<Dur> {
        match self {
            Rollback::Run(s) => s.timeout,
            Rollback::Aws { timeout, .. } => *timeout,
            Rollback::Manual(m) => Some(m.wait()),
        }
    }

    pub fn script(&self) -> Option<&run::Script> {
        match self {
            Rollback::Run(s) => Some(s),
            Rollback::Aws { .. } | Rollback::Manual(_) => None,
        }
    }
}

impl StepKind {
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Run(_) => "run",
            StepKind::Http(_) => "http",
            StepKind::Sleep(_) => "sleep",
            StepKind::Approval(_) => "approval",
            StepKind::Manual(_) => "manual",
            StepKind::Gate(_) => "gate",
            StepKind::AwsLambda(_) => "aws_lambda",
            StepKind::AwsSsmCommand(_) => "aws_ssm_command",
            StepKind::AwsSsmAutomation(_) => "aws_ssm_automation",
            StepKind::Parallel(_) => "parallel",
            StepKind::Runbook(_) => "runbook",
        }
    }

    /// The timeout that applies when the step does not set one.
    pub fn default_timeout(&self) -> Dur {
        match self {
            StepKind::Run(_) => Dur::from_secs(3600),
            StepKind::Http(_) => Dur::from_secs(60),
            StepKind::Sleep(s) => Dur(s.duration.0 + std::time::Duration::from_secs(1)),
            StepKind::Approval(a) => a.timeout.unwrap_or(Dur::from_secs(7 * 86_400)),
            StepKind::Manual(m) => m.wait(),
            StepKind::Gate(g) => Dur(g.max_wait().0 + g.poll().0 + std::time::Duration::from_secs(60)),
            // Lambda's own limit is 15 minutes.
            StepKind::AwsLambda(_) => Dur::from_secs(16 * 60),
            StepKind::AwsSsmCommand(_) | StepKind::AwsSsmAutomation(_) => Dur::from_secs(3600),
            // Each branch has its own; the group has none of its own.
            StepKind::Parallel(p) => Dur(p.branches.iter().map(|b| b.timeout.0 * b.attempts()).sum()),
            // The child's steps have their own; this bounds the whole child while it runs.
            StepKind::Runbook(_) => Dur::from_secs(24 * 3600),
        }
    }
}

/// Names of the keys that select a kind, for error messages.
pub const KIND_KEYS: [&str; 11] = [
    "run",
    "http",
    "sleep",
    "approval",
    "manual",
    "gate",
    "aws_lambda",
    "aws_ssm_command",
    "aws_ssm_automation",
    "parallel",
    "runbook",
];
