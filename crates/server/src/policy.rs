//! Policies narrow the built-in roles per runbook: by name pattern, by tag, and by
//! parameter value (e.g. `environment=production` needs `prod-deployer`).

use serde::Deserialize;
use serde_json::Value;

use crate::auth::Principal;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Why the policy exists; shown when it refuses.
    #[serde(default)]
    pub description: Option<String>,
    /// Runbook names it covers; `*` matches any run of characters. Empty: every name.
    #[serde(default)]
    pub names: Vec<String>,
    /// Runbooks with any of these tags. Empty: any tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only when this parameter has this value.
    #[serde(default)]
    pub param: Option<ParamCondition>,
    /// To run a covered runbook the caller needs one of these roles (admins always may).
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ParamCondition {
    pub name: String,
    pub value: String,
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Policy {
    pub fn covers(&self, name: &str, tags: &[String], params: &serde_json::Map<String, Value>) -> bool {
        (self.names.is_empty() || self.names.iter().any(|p| glob(p, name)))
            && (self.tags.is_empty() || self.tags.iter().any(|t| tags.contains(t)))
            && self.param.as_ref().is_none_or(|c| params.get(&c.name).is_some_and(|v| value_text(v) == c.value))
    }
}

/// [`refusal`] for a run whose parameters are known only in part (a child runbook, before
/// the steps its values come from ran): a condition on a parameter in `unknown` may hold,
/// so it counts as holding.
pub fn refusal_in_part<'a>(
    policies: &'a [Policy],
    who: &Principal,
    name: &str,
    tags: &[String],
    params: &serde_json::Map<String, Value>,
    unknown: &[String],
) -> Option<&'a Policy> {
    if who.has_role("admin") {
        return None;
    }
    policies.iter().find(|p| {
        let maybe = p.param.as_ref().is_some_and(|c| unknown.contains(&c.name));
        let covers = if maybe {
            Policy { param: None, ..(*p).clone() }.covers(name, tags, params)
        } else {
            p.covers(name, tags, params)
        };
        covers && !p.roles.iter().any(|r| who.has_role(r))
    })
}

/// The first policy that covers the run and that the caller does not satisfy.
pub fn refusal<'a>(
    policies: &'a [Policy],
    who: &Principal,
    name: &str,
    tags: &[String],
    params: &serde_json::Map<String, Value>,
) -> Option<&'a Policy> {
    if who.has_role("admin") {
        return None;
    }
    policies.iter().find(|p| p.covers(name, tags, params) && !p.roles.iter().any(|r| who.has_role(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, t, ok) in [
            ("web-*", "web-deploy", true),
            ("web-*", "api-deploy", false),
            ("*-prod", "db-prod", true),
            ("*", "anything", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxc", false),
            ("exact", "exact", true),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(glob(p, t), ok, "{p} {t}");
        }
    }

    #[test]
    fn policies_narrow_roles() {
        let policies: Vec<Policy> = toml::from_str::<toml::Table>(
            r#"
            [[policy]]
            tags = ["web"]
            roles = ["team-web"]
            [[policy]]
            param = { name = "environment", value = "production" }
            roles = ["prod-deployer"]
            "#,
        )
        .unwrap()["policy"]
            .clone()
            .try_into()
            .unwrap();
        let who = |roles: &[&str]| Principal {
            user: "u".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            token_id: "t".into(),
        };
        let params = |env: &str| serde_json::json!({ "environment": env }).as_object().unwrap().clone();
        let web = vec!["web".to_string()];
        assert!(refusal(&policies, &who(&["operator"]), "site", &web, &params("staging")).is_some());
        assert!(refusal(&policies, &who(&["operator", "team-web"]), "site", &web, &params("staging")).is_none());
        assert!(refusal(&policies, &who(&["operator", "team-web"]), "site", &web, &params("production")).is_some());
        assert!(
            refusal(&policies, &who(&["operator", "team-web", "prod-deployer"]), "site", &web, &params("production"))
                .is_none()
        );
        assert!(refusal(&policies, &who(&["admin"]), "site", &web, &params("production")).is_none());
        assert!(refusal(&policies, &who(&["operator"]), "db", &[], &params("staging")).is_none());
    }
}
