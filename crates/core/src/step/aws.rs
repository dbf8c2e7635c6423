//! The AWS kinds. `aws_lambda` invokes a function and takes its JSON answer as the
//! step's result. The calls are made by the engine through `opsbook_aws`; here are their
//! YAML shapes and checks.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

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
        Target {
            region: self.region.as_ref().map(|r| r.value.clone()),
            role_arn: self.role_arn.as_ref().map(|r| r.value.clone()),
        }
    }

    /// The problems of `region` and `role_arn`, each with its place.
    pub fn check_target(&self) -> Vec<(serde_saphyr::Location, String)> {
        let mut errs = Vec::new();
        if let Some(r) = &self.region
            && let Err(e) = check_region(&r.value)
        {
            errs.push((r.referenced, format!("aws_lambda.region: {e}")));
        }
        if let Some(a) = &self.role_arn
            && let Err(e) = check_role_arn(&a.value)
        {
            errs.push((a.referenced, format!("aws_lambda.role_arn: {e}")));
        }
        errs
    }
}

/// Checks a region's shape (`us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`).
pub fn check_region(region: &str) -> Result<(), String> {
    let parts: Vec<&str> = region.split('-').collect();
    let shaped = parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok_and(|n| n > 0);
    if shaped { Ok(()) } else { Err(format!("invalid AWS region `{region}` (e.g. us-east-1, eu-west-2)")) }
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
    fn regions_and_roles_are_checked_by_shape() {
        for ok in ["us-east-1", "eu-central-2", "us-gov-west-1", "cn-north-1", "ap-southeast-4"] {
            assert!(check_region(ok).is_ok(), "{ok}");
        }
        for bad in ["us-east", "useast1", "US-EAST-1", "us-east-0", "u-east-1", "us--1", ""] {
            assert_eq!(
                check_region(bad).unwrap_err(),
                format!("invalid AWS region `{bad}` (e.g. us-east-1, eu-west-2)")
            );
        }
        assert!(check_role_arn("arn:aws:iam::123456789012:role/deployer").is_ok());
        assert!(check_role_arn("arn:aws-us-gov:iam::123456789012:role/path/deployer").is_ok());
        for bad in ["deployer", "arn:aws:iam::12345:role/x", "arn:aws:iam::123456789012:user/x", "arn:aws:s3:::b"] {
            assert!(check_role_arn(bad).is_err(), "{bad}");
        }
    }
}
