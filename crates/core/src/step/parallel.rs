//! The `parallel` kind: `run` steps (branches) side by side, at most `max` at a time.
//! Each branch keeps its own id, timeout, retries, checks, log and rollback; later
//! steps read a branch's outputs as `steps.<branch>.outputs.*`.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::Step;
use crate::document::RawStep;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawParallel {
    /// At most this many branches at once (default: all of them).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub max: Option<Spanned<u32>>,
    /// `fast` (default): the first branch that fails cancels the others and no new one
    /// starts; `all`: every branch runs, then the step fails if any did.
    #[serde(default)]
    pub fail: FailMode,
    /// The branches: `run` steps, each with a unique id.
    #[schemars(with = "Vec<RawStep>")]
    pub steps: Spanned<Vec<Spanned<RawStep>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "ParallelFailMode")]
pub enum FailMode {
    /// The first failed branch cancels the others.
    #[default]
    Fast,
    /// Every branch runs; the step fails after, if any did.
    All,
}

impl FailMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Fast => "fast",
            FailMode::All => "all",
        }
    }
}

/// A checked `parallel` step.
#[derive(Debug, Clone)]
pub struct ParallelSpec {
    /// How many branches at once.
    pub max: usize,
    pub fail: FailMode,
    pub branches: Vec<Step>,
}
