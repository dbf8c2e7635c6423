//! The `approval` kind: the run waits until enough people approve (or one rejects).

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::duration::Dur;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSpec {
    /// Who may approve: `role:NAME` or `user:NAME`. Empty: anyone but the requester.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub approvers: Vec<Spanned<String>>,
    #[serde(default = "one")]
    pub min_approvals: u32,
    /// How long to wait before the step fails.
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Shown to approvers; a template.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub message: Option<Spanned<String>>,
}

fn one() -> u32 {
    1
}

/// A parsed approver reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approver {
    Role(String),
    User(String),
}

impl Approver {
    pub fn parse(s: &str) -> Result<Approver, String> {
        let valid = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
        match s.split_once(':') {
            Some(("role", n)) if valid(n) => Ok(Approver::Role(n.to_string())),
            Some(("user", n)) if valid(n) => Ok(Approver::User(n.to_string())),
            _ => Err(format!("invalid approver `{s}`: expected `role:NAME` or `user:NAME`")),
        }
    }
}

impl ApprovalSpec {
    pub fn approvers(&self) -> Vec<Approver> {
        self.approvers.iter().filter_map(|a| Approver::parse(&a.value).ok()).collect()
    }

    /// Whether `user` may approve locally. Roles are only known to the server,
    /// so the local runner accepts anyone when a role is listed.
    pub fn local_user_may_approve(&self, user: &str) -> bool {
        let list = self.approvers();
        list.is_empty()
            || list.iter().any(|a| match a {
                Approver::Role(_) => true,
                Approver::User(u) => u == user,
            })
    }
}
