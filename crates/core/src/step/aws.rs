//! The AWS kinds: `aws_lambda` invokes a function and takes its JSON answer as the
//! step's result; `aws_ssm_command` runs an SSM document on instances; `aws_ssm_automation`
//! runs an Automation runbook. The calls are made by the engine through `opsbook_aws`; here are their
//! YAML shapes and checks.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

/// Where an AWS call goes: the region and the role, when not the standard chain's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub region: Option<String>,
    pub role_arn: Option<String>,
}

/// `aws_lambda: { function, qualifier, payload, region, role_arn }`: one synchronous Invoke.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LambdaSpec {
    /// The function's name, ARN or partial ARN (a template).
    #[schemars(with = "String")]
    pub function: Spanned<String>,
    /// A version or alias.
    #[serde(default)]
    pub qualifier: Option<String>,
    /// The event, any YAML value, sent as JSON. Strings are templates; a string that is
    /// only `{{ expression }}` keeps the value's type (a number stays a number).
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub payload: Option<serde_json::Value>,
    /// The AWS region (default: the standard chain's, e.g. AWS_REGION).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub region: Option<Spanned<String>>,
    /// A role to assume for the call (sts:AssumeRole), e.g. arn:aws:iam::123456789012:role/deployer.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub role_arn: Option<Spanned<String>>,
}

impl LambdaSpec {
    pub fn target(&self) -> Target {
        target(&self.region, &self.role_arn)
    }
}

/// `aws_ssm_command`: SendCommand of an SSM document to instances, waited on until every
/// instance has finished.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SsmCommandSpec {
    /// The SSM document's name or ARN, e.g. AWS-RunShellScript (a template).
    #[schemars(with = "String")]
    pub document: Spanned<String>,
    /// A document version (`$LATEST`, `$DEFAULT` or a number).
    #[serde(default)]
    pub document_version: Option<String>,
    /// Which instances: `instance_ids: [i-0abc]` or `tags: { role: web }`.
    pub targets: SsmTargets,
    /// The document's parameters: each a string or a list of strings (templates).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// How many instances run at once: a number or a percentage such as `50%` (SSM's default: 50).
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub max_concurrency: Option<Spanned<serde_json::Value>>,
    /// How many instances may fail before SSM stops sending: a number or a percentage (default 0).
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub max_errors: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub region: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub role_arn: Option<Spanned<String>>,
}

/// The instances an SSM command goes to.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SsmTargets {
    /// Instance ids (templates), at most 50.
    #[serde(default)]
    pub instance_ids: Vec<String>,
    /// Instances by tag: each key a tag name, its value one value or a list.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub tags: BTreeMap<String, serde_json::Value>,
}

impl SsmCommandSpec {
    pub fn target(&self) -> Target {
        target(&self.region, &self.role_arn)
    }

    /// `max_concurrency` and `max_errors` as SSM takes them (checked when parsed).
    pub fn rates(&self) -> (Option<String>, Option<String>) {
        let rate = |v: &Option<Spanned<serde_json::Value>>| v.as_ref().and_then(|r| check_rate("", &r.value).ok());
        (rate(&self.max_concurrency), rate(&self.max_errors))
    }
}

/// `aws_ssm_automation`: StartAutomationExecution, waited on until it ends.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SsmAutomationSpec {
    /// The Automation runbook's name or ARN, e.g. AWS-RestartEC2Instance (a template).
    #[schemars(with = "String")]
    pub document: Spanned<String>,
    #[serde(default)]
    pub document_version: Option<String>,
    /// Its parameters: each a string or a list of strings (templates).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub parameters: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub region: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub role_arn: Option<Spanned<String>>,
}

impl SsmAutomationSpec {
    pub fn target(&self) -> Target {
        target(&self.region, &self.role_arn)
    }
}

pub fn target(region: &Option<Spanned<String>>, role_arn: &Option<Spanned<String>>) -> Target {
    Target { region: region.as_ref().map(|r| r.value.clone()), role_arn: role_arn.as_ref().map(|r| r.value.clone()) }
}

/// The problems of a step's `region` and `role_arn`, each with its place.
pub fn check_target(
    kind: &str,
    region: &Option<Spanned<String>>,
    role_arn: &Option<Spanned<String>>,
) -> Vec<(Location, String)> {
    let mut errs = Vec::new();
    if let Some(r) = region
        && let Err(e) = crate::aws_regions::check_region(&r.value)
    {
        errs.push((r.referenced, format!("{kind}.region: {e}")));
    }
    if let Some(a) = role_arn
        && let Err(e) = check_role_arn(&a.value)
    {
        errs.push((a.referenced, format!("{kind}.role_arn: {e}")));
    }
    errs
}

/// SSM parameters as SSM takes them: each name with a list of strings (numbers and
/// booleans written as text). The problem, if a value is neither.
pub fn ssm_parameters(params: &BTreeMap<String, serde_json::Value>) -> Result<BTreeMap<String, Vec<String>>, String> {
    let text = |name: &str, v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("parameters.{name}: expected a string or a list of strings")),
    };
    params
        .iter()
        .map(|(k, v)| {
            let list = match v {
                serde_json::Value::Array(items) => items.iter().map(|i| text(k, i)).collect::<Result<Vec<_>, _>>()?,
                other => vec![text(k, other)?],
            };
            Ok((k.clone(), list))
        })
        .collect()
}

/// Checks a `max_concurrency` or `max_errors` value: a whole number, or a percentage.
pub fn check_rate(field: &str, v: &serde_json::Value) -> Result<String, String> {
    let bad = || format!("{field}: expected a number such as 2 or a percentage such as \"50%\", not {v}");
    match v {
        serde_json::Value::Number(n) => n.as_u64().map(|n| n.to_string()).ok_or_else(bad),
        serde_json::Value::String(s) => {
            let digits = s.strip_suffix('%').unwrap_or(s);
            let ok = !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (!s.ends_with('%') || digits.parse::<u32>().is_ok_and(|p| p <= 100));
            if ok { Ok(s.clone()) } else { Err(bad()) }
        }
        _ => Err(bad()),
    }
}

/// Checks a role ARN's shape: `arn:PARTITION:iam::ACCOUNT:role/NAME`.
pub fn check_role_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let shaped = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].strip_prefix("role/").is_some_and(|n| !n.is_empty());
    if shaped { Ok(()) } else { Err(format!("invalid role ARN `{arn}`: expected arn:aws:iam::ACCOUNT:role/NAME")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_are_checked_by_shape() {
        assert!(check_role_arn("arn:aws:iam::123456789012:role/deployer").is_ok());
        assert!(check_role_arn("arn:aws-us-gov:iam::123456789012:role/path/deployer").is_ok());
        for bad in ["deployer", "arn:aws:iam::12345:role/x", "arn:aws:iam::123456789012:user/x", "arn:aws:s3:::b"] {
            assert!(check_role_arn(bad).is_err(), "{bad}");
        }
    }
}
