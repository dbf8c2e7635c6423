//! The `gate` kind: wait (or fail) while a health gate blocks; optionally re-check the
//! gate before every later step, so an incident that opens mid-run stops it.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::duration::Dur;
use crate::gate::{FailMode, GateDef, Source};

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateStepSpec {
    /// A named gate from the gates file (`opsbook.yaml`, `--gates`, or the server's).
    #[serde(default, rename = "use")]
    pub use_gate: Option<String>,
    /// Or the gate's sources inline.
    #[serde(default)]
    #[schemars(with = "Vec<Source>")]
    pub sources: Vec<Spanned<Source>>,
    /// For inline sources: what an unreadable source means.
    #[serde(default)]
    pub fail_mode: FailMode,
    #[serde(default)]
    pub on_blocked: OnBlocked,
    /// How long to wait for the gate to clear (default 1h).
    #[serde(default)]
    pub max_wait: Option<Dur>,
    /// How often to check while blocked (default 1m).
    #[serde(default)]
    pub poll: Option<Dur>,
    /// `between_steps`: check the gate again before each later step.
    #[serde(default)]
    pub recheck: Option<Recheck>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnBlocked {
    /// Wait until the gate clears (up to `max_wait`), then go on.
    #[default]
    Wait,
    /// Fail the step (and so roll back).
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Recheck {
    BetweenSteps,
}

impl GateStepSpec {
    pub fn max_wait(&self) -> Dur {
        self.max_wait.unwrap_or(Dur::from_secs(3600))
    }

    pub fn poll(&self) -> Dur {
        self.poll.unwrap_or(Dur::from_secs(60))
    }

    /// The gate's name for messages: the named gate, or `inline`.
    pub fn name(&self) -> &str {
        self.use_gate.as_deref().unwrap_or("inline")
    }

    /// The definition to evaluate: inline sources (whose commands run in `inline_dir`, the
    /// runbook's directory), or the named gate from `gates`.
    pub fn resolve(
        &self,
        gates: &std::collections::BTreeMap<String, GateDef>,
        inline_dir: &std::path::Path,
    ) -> Result<GateDef, String> {
        match &self.use_gate {
            Some(name) => gates.get(name).cloned().ok_or_else(|| {
                let known: Vec<&str> = gates.keys().map(String::as_str).collect();
                let hint = crate::diagnostic::did_you_mean(name, &known)
                    .map(|m| format!(" (did you mean `{m}`?)"))
                    .unwrap_or_default();
                format!("no gate `{name}` is defined{hint}")
            }),
            None => Ok(GateDef {
                fail_mode: self.fail_mode,
                sources: self.sources.iter().map(|s| s.value.clone()).collect(),
                dir: Some(inline_dir.to_path_buf()),
            }),
        }
    }

    /// Checks the spec itself: `Err` with where (an inline source, or `None` for the step)
    /// and what.
    pub fn check(&self) -> Result<(), (Option<serde_saphyr::Location>, String)> {
        match (&self.use_gate, self.sources.is_empty()) {
            (Some(_), false) => return Err((None, "gate: set either `use` or `sources`, not both".into())),
            (None, true) => return Err((None, "gate: set `use` (a named gate) or inline `sources`".into())),
            _ => {}
        }
        for s in &self.sources {
            crate::gate::check_source(&s.value).map_err(|e| (Some(s.referenced), format!("gate: {e}")))?;
        }
        Ok(())
    }
}
