//! The runbook document (`apiVersion: opsbook/v1`) as written in YAML.
//!
//! These types mirror the file one to one; `parse` checks what serde cannot
//! (identifiers, templates, regexes, references) and builds a [`crate::Runbook`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::duration::Dur;
use crate::params::ParamSpec;
use crate::step::{approval::ApprovalSpec, http::HttpSpec};

/// Top level of a runbook file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "opsbook runbook", description = "A runbook document (apiVersion: opsbook/v1)")]
pub struct RawRunbook {
    /// Always `opsbook/v1`.
    #[schemars(with = "String", extend("const" = "opsbook/v1"))]
    pub api_version: Spanned<String>,
    /// Always `Runbook`.
    #[schemars(with = "String", extend("const" = "Runbook"))]
    pub kind: Spanned<String>,
    pub metadata: RawMetadata,
    pub spec: RawSpec,
    /// Test cases run by `opsbook test` (and by the server on publish): parameters,
    /// mocks per step, and what to expect. No process runs and nothing is sent.
    #[serde(default)]
    pub tests: Vec<crate::testcase::RawTest>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMetadata {
    /// The runbook's identity: ^[a-z0-9][a-z0-9-]{0,62}$
    #[schemars(with = "String", regex(pattern = r"^[a-z0-9][a-z0-9-]{0,62}$"))]
    pub name: Spanned<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub runbook_type: RunbookType,
    /// Semantic version, e.g. 1.0.0
    #[schemars(with = "String")]
    pub version: Spanned<String>,
    #[serde(default)]
    pub status: LifecycleStatus,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub review: Option<RawReview>,
    /// How long the procedure takes by hand, e.g. 45m: the time an execution saves is
    /// this minus how long it took.
    #[serde(default)]
    pub manual_duration: Option<Dur>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawReview {
    /// How often the runbook must be reviewed, e.g. 90d (a day at least).
    #[schemars(with = "Dur")]
    pub every: Spanned<Dur>,
    /// Date of the last review, YYYY-MM-DD.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub last_reviewed: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunbookType {
    Deployment,
    Maintenance,
    IncidentResponse,
    BackupRestore,
    Scaling,
    Monitoring,
}

impl RunbookType {
    pub const ALL: [RunbookType; 6] = [
        RunbookType::Deployment,
        RunbookType::Maintenance,
        RunbookType::IncidentResponse,
        RunbookType::BackupRestore,
        RunbookType::Scaling,
        RunbookType::Monitoring,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunbookType::Deployment => "deployment",
            RunbookType::Maintenance => "maintenance",
            RunbookType::IncidentResponse => "incident_response",
            RunbookType::BackupRestore => "backup_restore",
            RunbookType::Scaling => "scaling",
            RunbookType::Monitoring => "monitoring",
        }
    }

    pub fn parse(s: &str) -> Option<RunbookType> {
        RunbookType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStatus {
    Draft,
    #[default]
    Active,
    Deprecated,
    Archived,
}

impl LifecycleStatus {
    pub const ALL: [LifecycleStatus; 4] =
        [LifecycleStatus::Draft, LifecycleStatus::Active, LifecycleStatus::Deprecated, LifecycleStatus::Archived];

    pub fn parse(s: &str) -> Option<LifecycleStatus> {
        LifecycleStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleStatus::Draft => "draft",
            LifecycleStatus::Active => "active",
            LifecycleStatus::Deprecated => "deprecated",
            LifecycleStatus::Archived => "archived",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Run the rollback of every succeeded step, newest first.
    #[default]
    Rollback,
    /// Stop where the failure happened.
    Stop,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    #[serde(default)]
    pub prerequisites: Vec<RawPrerequisite>,
    /// Typed parameters, in the order they are declared.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ParamSpec>")]
    pub parameters: crate::params::ParamMap,
    #[serde(default)]
    pub on_failure: OnFailure,
    #[schemars(with = "Vec<RawStep>")]
    pub steps: Spanned<Vec<Spanned<RawStep>>>,
    /// When the server runs this runbook by itself.
    #[serde(default)]
    pub schedules: Vec<RawSchedule>,
    /// Events that start this runbook on the server: `POST /api/v1/triggers/{name}`.
    #[serde(default)]
    pub triggers: Vec<RawTrigger>,
}

/// `triggers: [{name, token_sha256 | hmac_secret_env, event_id, params}]`: an event
/// (an EventBridge API destination, a GitHub or Alertmanager webhook) starts the runbook.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    /// Unique on the server; the URL is /api/v1/triggers/NAME. ^[a-z0-9][a-z0-9-]{0,62}$
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// SHA-256 (hex) of the token callers send as `Authorization: Bearer TOKEN` (the
    /// token itself is never written down; make one with `openssl rand -hex 32`).
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// The server's environment variable holding the key of HMAC-SHA256 signed calls
    /// (`X-Hub-Signature-256: sha256=…` as GitHub sends, or `X-Opsbook-Signature`).
    #[serde(default)]
    pub hmac_secret_env: Option<String>,
    /// Where the event's id is (a JSONPath; default `$.id`, as EventBridge sends). A
    /// repeated id starts nothing new.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub event_id: Option<Spanned<String>>,
    /// Parameter values from the event: a JSONPath into it (`$.detail.service`), or any
    /// other value as it is.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
}

/// `schedules: [{cron, timezone, params, overlap, missed}]`, run by `opsbook serve`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// Cron pattern: minute hour day-of-month month day-of-week (an optional leading seconds field).
    #[schemars(with = "String")]
    pub cron: Spanned<String>,
    /// IANA time zone, e.g. Europe/Paris (default UTC); daylight-saving changes are handled.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Parameter values for the scheduled runs (secrets cannot be scheduled).
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub overlap: Overlap,
    #[serde(default)]
    pub missed: Missed,
}

/// What to do when the previous scheduled run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    #[default]
    Skip,
    Queue,
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
        }
    }
}

/// What to do with runs missed while the server was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    #[default]
    Skip,
    RunOnce,
}

impl Missed {
    pub fn as_str(self) -> &'static str {
        match self {
            Missed::Skip => "skip",
            Missed::RunOnce => "run_once",
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPrerequisite {
    pub description: String,
    #[serde(default)]
    pub check: Option<RawCheck>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// A shell command that must exit 0 before any step runs.
    #[schemars(with = "String")]
    pub run: Spanned<String>,
    #[serde(default)]
    pub shell: Shell,
    #[serde(default)]
    pub timeout: Option<Dur>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Shell {
    /// `sh -e -c SCRIPT`
    #[default]
    Sh,
    /// `bash --noprofile --norc -e -o pipefail -c SCRIPT`
    Bash,
}

impl Shell {
    /// The program name and the arguments that precede the script: its file, or `-c`
    /// and its text. (A run with secret parameters runs scripts from files: values
    /// interpolated into them must not show in the process list.)
    pub fn argv(self) -> &'static [&'static str] {
        match self {
            Shell::Sh => &["sh", "-e"],
            Shell::Bash => &["bash", "--noprofile", "--norc", "-e", "-o", "pipefail"],
        }
    }
}

/// One step as written. Exactly one kind is set: `run`, `http`, `sleep`, `approval`, `manual`, `gate`,
/// `aws_lambda`, `aws_ssm_command`, `aws_ssm_automation`, `parallel` or `runbook`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// ^[a-z][a-z0-9_]*$, unique within the runbook.
    #[schemars(with = "String", regex(pattern = r"^[a-z][a-z0-9_]*$"))]
    pub id: Spanned<String>,
    /// Shown as written (no templates).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub description: Option<String>,

    /// Kind `run`: a shell script; `{{ ... }}` values are quoted for the shell context they land in.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub run: Option<Spanned<String>>,
    #[serde(default)]
    pub shell: Option<Shell>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub env: BTreeMap<String, Spanned<String>>,
    /// Working directory, relative to the runbook file's directory.
    #[serde(default)]
    pub workdir: Option<String>,
    /// Run steps: run once per target (host), here or over SSH, so many at a time.
    #[serde(default)]
    pub targets: Option<crate::step::targets::TargetsSpec>,

    /// Kind `http`: one HTTP request and its expectations.
    #[serde(default)]
    pub http: Option<HttpSpec>,
    /// Kind `sleep`: wait this long.
    #[serde(default)]
    pub sleep: Option<Dur>,
    /// Kind `approval`: wait for people to approve.
    #[serde(default)]
    pub approval: Option<ApprovalSpec>,
    /// Kind `manual`: something a person does by hand, with a checklist to confirm.
    #[serde(default)]
    pub manual: Option<crate::step::manual::ManualSpec>,
    /// Kind `gate`: go on only while a health gate is clear.
    #[serde(default)]
    pub gate: Option<crate::step::gate::GateStepSpec>,
    /// Kind `aws_lambda`: invoke an AWS Lambda function and take its JSON answer as the result.
    #[serde(default)]
    pub aws_lambda: Option<crate::step::aws::LambdaSpec>,
    /// Kind `aws_ssm_command`: run an SSM document on instances (SendCommand) and wait for every one.
    #[serde(default)]
    pub aws_ssm_command: Option<crate::step::aws::SsmCommandSpec>,
    /// Kind `aws_ssm_automation`: run an SSM Automation runbook and wait for its end.
    #[serde(default)]
    pub aws_ssm_automation: Option<crate::step::aws::SsmAutomationSpec>,
    /// Kind `parallel`: `run` steps (branches) side by side.
    #[serde(default)]
    pub parallel: Option<crate::step::parallel::RawParallel>,
    /// Kind `runbook`: run another runbook as a child execution.
    #[serde(default)]
    pub runbook: Option<crate::step::call::RawCall>,

    #[serde(default)]
    pub timeout: Option<Dur>,
    #[serde(default)]
    pub retries: Option<Retries>,
    #[serde(default)]
    #[schemars(with = "Vec<Validation>")]
    pub validate: Vec<Spanned<Validation>>,
    #[serde(default)]
    pub rollback: Option<RawRollback>,
    /// false: a failure is recorded and the run goes on.
    #[serde(default = "yes")]
    pub required: bool,
    /// An expression; when false the step is skipped.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub when: Option<Spanned<String>>,
    /// true: may be re-run after a crash.
    #[serde(default)]
    pub idempotent: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    /// Extra attempts after the first (at most 100).
    #[serde(deserialize_with = "retry_count")]
    pub count: u32,
    #[serde(default)]
    pub delay: Option<Dur>,
    /// Multiplier applied to the delay after each attempt (1.0 to 10.0).
    #[serde(default = "one", deserialize_with = "retry_backoff")]
    pub backoff: f64,
    #[serde(default)]
    pub max_delay: Option<Dur>,
}

fn one() -> f64 {
    1.0
}

// Checked as they are read, so that the error points at the value itself.
fn retry_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if n > 100 {
        return Err(serde::de::Error::custom(format!("retries.count {n} is more than 100")));
    }
    Ok(n)
}

fn retry_backoff<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let f = f64::deserialize(d)?;
    if !f.is_finite() || !(1.0..=10.0).contains(&f) {
        return Err(serde::de::Error::custom(format!("retries.backoff {f} must be between 1.0 and 10.0")));
    }
    Ok(f)
}

impl Retries {
    /// The pause before retry number `n` (0 = before the second attempt).
    pub fn delay_before(&self, n: u32) -> std::time::Duration {
        let base = self.delay.map_or(1.0, |d| d.0.as_secs_f64());
        let factor = self.backoff.max(0.0).powi(i32::try_from(n).unwrap_or(i32::MAX));
        let mut secs = base * factor;
        if let Some(cap) = self.max_delay {
            secs = secs.min(cap.0.as_secs_f64());
        }
        // Cap at a day so a silly backoff cannot overflow.
        std::time::Duration::from_secs_f64(secs.clamp(0.0, 86_400.0))
    }
}

/// A check applied to a finished attempt; a failed check fails the attempt. Each entry
/// sets one check: `exit_code`, `output_contains` or `output_matches` (run steps),
/// `json` with `equals` (the JSON a step returns: an aws_lambda answer, an http body), or
/// `lambda` (a function given the step's result decides).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Validation {
    /// The accepted exit code (or list of codes). Default: 0.
    #[serde(default)]
    pub exit_code: Option<ExitCodes>,
    /// Standard output must contain this text.
    #[serde(default)]
    pub output_contains: Option<String>,
    /// Some line of standard output must match this regular expression.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub output_matches: Option<Spanned<String>>,
    /// A JSONPath into the step's JSON result (`$.healthy`, `$.items[0].id`); its value must equal `equals`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub json: Option<Spanned<String>>,
    /// The value `json` must point at (any YAML value, compared as JSON).
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<serde_json::Value>")]
    pub equals: Option<serde_json::Value>,
    /// An AWS Lambda function given the step's result (JSON); it fails the step by answering
    /// `false` (or `{"valid": false, "reason": …}`) or by failing.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub lambda: Option<Spanned<String>>,
}

/// A value that is there, `null` included (`equals: null` checks for null).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum ExitCodes {
    One(i32),
    Many(Vec<i32>),
}

/// One code or a list, with a message that says so (not serde's "did not match any
/// variant of untagged enum").
impl<'de> Deserialize<'de> for ExitCodes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Codes;
        impl<'de> serde::de::Visitor<'de> for Codes {
            type Value = ExitCodes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an exit code (a whole number such as 0) or a list of them ([0, 3])")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ExitCodes, E> {
                i32::try_from(v).map(ExitCodes::One).map_err(|_| E::custom(format!("exit code {v} is out of range")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ExitCodes, E> {
                i32::try_from(v).map(ExitCodes::One).map_err(|_| E::custom(format!("exit code {v} is out of range")))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ExitCodes, A::Error> {
                let mut codes = Vec::new();
                while let Some(c) = seq.next_element::<i32>()? {
                    codes.push(c);
                }
                Ok(ExitCodes::Many(codes))
            }
        }
        d.deserialize_any(Codes)
    }
}

impl ExitCodes {
    pub fn accepts(&self, code: i32) -> bool {
        match self {
            ExitCodes::One(c) => *c == code,
            ExitCodes::Many(cs) => cs.contains(&code),
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRollback {
    /// Shell script undoing the step; values are quoted like in `run`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub run: Option<Spanned<String>>,
    /// Or an AWS Lambda function undoing it.
    #[serde(default)]
    pub aws_lambda: Option<crate::step::aws::LambdaSpec>,
    /// Or an SSM document run on instances (e.g. restore-application).
    #[serde(default)]
    pub aws_ssm_command: Option<crate::step::aws::SsmCommandSpec>,
    /// Or an SSM Automation runbook.
    #[serde(default)]
    pub aws_ssm_automation: Option<crate::step::aws::SsmAutomationSpec>,
    /// Or something a person undoes by hand, confirmed like a `manual` step.
    #[serde(default)]
    pub manual: Option<crate::step::manual::ManualSpec>,
    #[serde(default)]
    pub timeout: Option<Dur>,
}
