//! The `manual` kind: something a person does by hand, confirmed item by item.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::duration::Dur;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualSpec {
    /// What to do, for the person doing it; a template.
    #[schemars(with = "String")]
    pub instructions: Spanned<String>,
    /// Items the person confirms one by one before the step counts as done; templates.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub checklist: Vec<Spanned<String>>,
    /// How long to wait for the confirmation before the step times out (default 7 days).
    #[serde(default)]
    pub timeout: Option<Dur>,
}

impl ManualSpec {
    /// How long a person has.
    pub fn wait(&self) -> Dur {
        self.timeout.unwrap_or(Dur::from_secs(7 * 86_400))
    }
}
