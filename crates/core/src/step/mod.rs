//! Step kinds. Each kind lives in its own file: its YAML shape and its checks.
//!
//! Adding a kind means one file here, one field on [`crate::document::RawStep`],
//! one variant of [`StepKind`] and one executor file in the engine.

pub mod approval;
pub mod aws;
pub mod gate;
pub mod http;
pub mod run;
pub mod sleep;

use crate::duration::Dur;

/// What a step does.
#[derive(Debug, Clone)]
pub enum StepKind {
    Run(run::Script),
    Http(http::HttpSpec),
    Sleep(sleep::SleepSpec),
    Approval(approval::ApprovalSpec),
    Gate(gate::GateStepSpec),
    AwsLambda(aws::LambdaSpec),
}

impl StepKind {
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Run(_) => "run",
            StepKind::Http(_) => "http",
            StepKind::Sleep(_) => "sleep",
            StepKind::Approval(_) => "approval",
            StepKind::Gate(_) => "gate",
            StepKind::AwsLambda(_) => "aws_lambda",
        }
    }

    /// The timeout that applies when the step does not set one.
    pub fn default_timeout(&self) -> Dur {
        match self {
            StepKind::Run(_) => Dur::from_secs(3600),
            StepKind::Http(_) => Dur::from_secs(60),
            StepKind::Sleep(s) => Dur(s.duration.0 + std::time::Duration::from_secs(1)),
            StepKind::Approval(a) => a.timeout.unwrap_or(Dur::from_secs(7 * 86_400)),
            StepKind::Gate(g) => Dur(g.max_wait().0 + g.poll().0 + std::time::Duration::from_secs(60)),
            // Lambda's own limit is 15 minutes.
            StepKind::AwsLambda(_) => Dur::from_secs(16 * 60),
        }
    }
}

/// Names of the keys that select a kind, for error messages.
pub const KIND_KEYS: [&str; 6] = ["run", "http", "sleep", "approval", "gate", "aws_lambda"];
