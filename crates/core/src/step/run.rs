//! The `run` kind: a shell script executed in its own process group.

use std::collections::BTreeMap;

use crate::document::Shell;
use crate::duration::Dur;

/// A shell script with the settings needed to run it. Used for `run` steps,
/// rollbacks and prerequisite checks.
#[derive(Debug, Clone)]
pub struct Script {
    /// The script template; every `{{ }}` value is shell-quoted when rendered.
    pub template: String,
    pub shell: Shell,
    pub env: BTreeMap<String, String>,
    /// Relative to the runbook's directory.
    pub workdir: Option<String>,
    pub timeout: Option<Dur>,
}

/// Environment variable names a step may set: portable shell identifiers.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}
