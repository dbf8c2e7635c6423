//! `targets`: a `run` step once per target (a host), here, over SSH or through AWS SSM
//! Run Command, with rate control
//! (`max_concurrency`, `max_errors`, each a number or a percentage, as SSM's are), and the
//! inventory files targets can come from.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::duration::Dur;

/// Where a `run` step runs: once per target, at most `max_concurrency` at a time.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetsSpec {
    /// Targets as `[user@]host[:port]` (with `via: ssm`, instance ids such as
    /// `i-0abc12345def67890`). An entry may be a template; one that renders to several
    /// names (separated by commas or spaces) gives them all.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub hosts: Vec<Spanned<String>>,
    /// An inventory file (YAML, relative to the runbook's directory): `hosts:` with their
    /// address, user and port, and `groups:` of host names.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub inventory: Option<Spanned<String>>,
    /// The inventory group whose hosts are the targets (default: every host of the inventory).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub group: Option<Spanned<String>>,
    /// With `via: ssm`: the instances SSM manages that carry these tags (each key a tag
    /// name, its value one value or a list, any of which matches; templates).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub tags: BTreeMap<String, serde_json::Value>,
    /// How a target is reached: `local` runs the step here once per target (per-host API
    /// calls), `ssh` runs it on the target over the system OpenSSH client, `ssm` on an
    /// instance through AWS Systems Manager Run Command (`AWS-RunShellScript`).
    pub via: Via,
    /// With `via: ssm`: the AWS region (default: the AWS configuration's).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub region: Option<Spanned<String>>,
    /// With `via: ssm`: an IAM role to assume for the calls.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub role_arn: Option<Spanned<String>>,
    /// How many targets run at once: a number, or a percentage of the targets (`"25%"`).
    /// Default 1: one target after the other.
    #[serde(default)]
    #[schemars(with = "Option<AmountText>")]
    pub max_concurrency: Option<Spanned<RawAmount>>,
    /// How many targets may fail: a number, or a percentage of the targets. Once more
    /// have failed, no new target starts and the step fails. Default 0.
    #[serde(default)]
    #[schemars(with = "Option<AmountText>")]
    pub max_errors: Option<Spanned<RawAmount>>,
    /// SSH settings for every target (an inventory host's own user and port win).
    #[serde(default)]
    pub ssh: SshSettings,
}

/// A number or a percentage, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawAmount {
    Number(u64),
    Text(String),
    /// Anything else (`1.5`, `-1`, a list): refused by [`Amount::check`], naming it.
    Other(serde_json::Value),
}

/// For the schema: a count (`2`) or a percentage (`"50%"`).
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum AmountText {
    Number(u32),
    Percent(#[schemars(regex(pattern = r"^[0-9]+%$"))] String),
}

/// A checked amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Count(u32),
    Percent(u32),
}

impl Amount {
    /// What the amount comes to for `n` targets: a percentage rounds down, but
    /// `at_least_one` (a concurrency) never comes to zero.
    pub fn of(self, n: usize, at_least_one: bool) -> usize {
        let v = match self {
            Amount::Count(c) => c as usize,
            Amount::Percent(p) => n * p as usize / 100,
        };
        if at_least_one { v.max(1) } else { v }
    }

    /// Checks an amount as written; `zero_ok` for `max_errors`.
    pub fn check(raw: &RawAmount, zero_ok: bool) -> Result<Amount, String> {
        let min = u64::from(!zero_ok);
        let amount = match raw {
            RawAmount::Number(n) => Amount::Count(u32::try_from(*n).map_err(|_| format!("{n} is too large"))?),
            RawAmount::Text(t) => {
                let t = t.trim();
                let digits = t.strip_suffix('%');
                match digits.unwrap_or(t).parse::<u32>() {
                    Ok(v) if digits.is_some() => {
                        if v > 100 {
                            return Err(format!("`{t}` is more than 100%"));
                        }
                        Amount::Percent(v)
                    }
                    Ok(v) => Amount::Count(v),
                    Err(_) => return Err(format!("`{t}` is neither a number nor a percentage like \"25%\"")),
                }
            }
            RawAmount::Other(v) => {
                return Err(format!("`{v}` is neither a whole number of targets nor a percentage like \"25%\""));
            }
        };
        let v = match amount {
            Amount::Count(v) | Amount::Percent(v) => v,
        };
        if u64::from(v) < min {
            return Err("must be at least 1".into());
        }
        Ok(amount)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// Here, once per target; `{{ target }}` and `$OPSBOOK_TARGET` name it.
    Local,
    /// On the target, over the system OpenSSH client.
    Ssh,
    /// On the instance, through AWS SSM Run Command (`AWS-RunShellScript`).
    Ssm,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Local => "local",
            Via::Ssh => "ssh",
            Via::Ssm => "ssm",
        }
    }
}

/// How opsbook's SSH client connects. Host keys are always checked against
/// `known_hosts` (never accepted blindly), no password is ever asked for (keys or an
/// agent), and one connection per host is reused for the step and its rollback.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    /// The remote user (default: the user's SSH configuration, or the local user name).
    #[serde(default)]
    pub user: Option<String>,
    /// The port (default 22, or the SSH configuration's).
    #[serde(default)]
    pub port: Option<u16>,
    /// A private key file (relative to the runbook's directory); default: the agent and
    /// the user's usual keys.
    #[serde(default)]
    pub identity_file: Option<String>,
    /// A known_hosts file (relative to the runbook's directory) that host keys are checked
    /// against, instead of the user's.
    #[serde(default)]
    pub known_hosts: Option<String>,
    /// How long connecting may take. Default 10s.
    #[serde(default)]
    pub connect_timeout: Option<Dur>,
}

/// A step's targets, checked: the source of the names, the way, the limits.
#[derive(Debug, Clone)]
pub struct Targets {
    pub source: Source,
    pub via: Via,
    pub max_concurrency: Amount,
    pub max_errors: Amount,
    pub ssh: SshSettings,
    /// With `via: ssm`: where the calls go.
    pub aws: crate::step::aws::Target,
}

#[derive(Debug, Clone)]
pub enum Source {
    /// Templates, each rendering to one or more `[user@]host[:port]`.
    Hosts(Vec<String>),
    /// An inventory file (relative to the runbook) and maybe a group.
    Inventory { path: String, group: Option<String> },
    /// With `via: ssm`: the managed instances with these tags (values are templates).
    Tags(BTreeMap<String, Vec<String>>),
}

/// One target, resolved: what `{{ target }}` says, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub address: String,
    pub user: Option<String>,
    pub port: Option<u16>,
}

impl Target {
    /// Parses `[user@]host[:port]` (an IPv6 address in brackets: `[::1]:22`).
    pub fn parse(text: &str) -> Result<Target, String> {
        let (user, rest) = match text.split_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, text),
        };
        if user.is_some_and(|u| u.is_empty() || !u.chars().all(is_name_char)) {
            return Err(format!("`{text}`: invalid user name"));
        }
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (h, after) = inner.split_once(']').ok_or_else(|| format!("`{text}`: missing `]`"))?;
            match after {
                "" => (h, None),
                _ => (h, Some(after.strip_prefix(':').ok_or_else(|| format!("`{text}`: junk after `]`"))?)),
            }
        } else if rest.matches(':').count() > 1 {
            // A bare IPv6 address has no port (write `[addr]:port` for one).
            (rest, None)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() || !host.chars().all(|c| is_name_char(c) || c == ':') {
            return Err(format!("`{text}`: invalid host name"));
        }
        let port = match port {
            Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("`{text}`: invalid port"))?),
            None => None,
        };
        Ok(Target { name: host.to_string(), address: host.to_string(), user: user.map(str::to_string), port })
    }

    /// An instance id for `via: ssm`: `i-` and 8 or 17 hex digits, or a managed server's `mi-` and 17.
    pub fn is_instance_id(text: &str) -> bool {
        let hex = |s: &str, n: &[usize]| n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit());
        match (text.strip_prefix("i-"), text.strip_prefix("mi-")) {
            (Some(h), _) => hex(h, &[8, 17]),
            (_, Some(h)) => hex(h, &[17]),
            _ => false,
        }
    }

    /// Splits a rendered `hosts` entry into its targets.
    pub fn parse_list(text: &str) -> Result<Vec<Target>, String> {
        text.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).map(Target::parse).collect()
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

/// An inventory file: hosts (with how to reach them) and groups of them.
///
/// ```yaml
/// hosts:
///   web-1: { address: 10.0.1.11, user: deploy }
///   web-2: { address: 10.0.1.12, port: 2222 }
/// groups:
///   web: [web-1, web-2]
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    #[serde(default)]
    pub hosts: BTreeMap<String, Option<InventoryHost>>,
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<Spanned<String>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryHost {
    /// What to connect to (default: the host's name).
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
}

impl Inventory {
    /// Reads an inventory; errors name `path:line:col`.
    pub fn parse(text: &str, path: &str) -> Result<Inventory, String> {
        let options = serde_saphyr::options! { with_snippet: false };
        let inv: Inventory = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
            let d = crate::parse::yaml_diagnostic(&e, text);
            d.headline(path)
        })?;
        for (name, spec) in &inv.hosts {
            let t = Target::parse(name).map_err(|e| format!("{path}: hosts: {e}"))?;
            if t.name != *name {
                return Err(format!("{path}: hosts: `{name}`: name a host by itself; set user and port as fields"));
            }
            if let Some(a) = spec.as_ref().and_then(|s| s.address.as_deref()) {
                Target::parse(a).map_err(|e| format!("{path}: hosts.{name}.address: {e}"))?;
            }
        }
        for (group, members) in &inv.groups {
            for m in members {
                if !inv.hosts.contains_key(&m.value) {
                    let at = crate::Pos::from_location(&m.referenced);
                    let place =
                        at.map(|p| format!("{path}:{}:{}", p.line, p.column)).unwrap_or_else(|| path.to_string());
                    let known: Vec<&str> = inv.hosts.keys().map(String::as_str).collect();
                    let hint = crate::diagnostic::did_you_mean(&m.value, &known)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    return Err(format!(
                        "{place}: group `{group}` names `{}`, which is not under hosts{hint}",
                        m.value
                    ));
                }
            }
        }
        Ok(inv)
    }

    /// The targets of a group, or of the whole inventory, in the order written.
    pub fn targets(&self, group: Option<&str>, path: &str) -> Result<Vec<Target>, String> {
        let names: Vec<&String> = match group {
            Some(g) => match self.groups.get(g) {
                Some(members) => members.iter().map(|m| &m.value).collect(),
                None => {
                    let known: Vec<&str> = self.groups.keys().map(String::as_str).collect();
                    let hint = crate::diagnostic::did_you_mean(g, &known)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    return Err(format!("{path}: no group `{g}`{hint}"));
                }
            },
            None => self.hosts.keys().collect(),
        };
        Ok(names
            .into_iter()
            .map(|name| {
                let spec = self.hosts.get(name).cloned().flatten().unwrap_or_default();
                Target {
                    name: name.clone(),
                    address: spec.address.unwrap_or_else(|| name.clone()),
                    user: spec.user,
                    port: spec.port,
                }
            })
            .collect())
    }
}

/// Reads every inventory the steps of `rb` (read from `root_path`) take targets from, as
/// a run would when it reaches them: each must read and parse, name its group, and give
/// targets. A problem is placed at the step.
pub fn check_inventories(root_path: &std::path::Path, rb: &crate::Runbook) -> Vec<crate::Diagnostic> {
    let dir = root_path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let mut problems = Vec::new();
    for step in rb.all_steps() {
        let Some(Targets { source: Source::Inventory { path, group }, .. }) = &step.targets else { continue };
        let found = crate::read_document_text(&dir.join(path))
            .map_err(|e| format!("cannot read the inventory {path}: {e}"))
            .and_then(|text| Inventory::parse(&text, path))
            .and_then(|inv| inv.targets(group.as_deref(), path));
        let problem = match found {
            Ok(t) if t.is_empty() => {
                format!("{path}: no hosts{}", group.as_ref().map(|g| format!(" in group `{g}`")).unwrap_or_default())
            }
            Ok(_) => continue,
            Err(e) => e,
        };
        let pos = crate::diagnostic::Pos { line: step.line, column: step.column, len: 1 };
        problems.push(crate::Diagnostic::new(Some(pos), format!("step `{}`: targets: {problem}", step.id)));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_names_its_user_and_port() {
        let t = Target::parse("deploy@web-2:2222").unwrap();
        assert_eq!(
            t,
            Target { name: "web-2".into(), address: "web-2".into(), user: Some("deploy".into()), port: Some(2222) }
        );
        assert_eq!(Target::parse("[::1]:22").unwrap().address, "::1");
        assert_eq!(
            Target::parse("fe80::1").unwrap(),
            Target { name: "fe80::1".into(), address: "fe80::1".into(), user: None, port: None }
        );
        assert_eq!(Target::parse("web-1:0").unwrap_err(), "`web-1:0`: invalid port");
        assert_eq!(Target::parse("we b").unwrap_err(), "`we b`: invalid host name");
        assert_eq!(Target::parse_list("a, b c").unwrap().len(), 3);
    }

    #[test]
    fn amounts_are_numbers_or_percentages() {
        let pct = Amount::check(&RawAmount::Text("50%".into()), false).unwrap();
        assert_eq!(pct.of(5, true), 2);
        assert_eq!(Amount::check(&RawAmount::Text("1%".into()), false).unwrap().of(5, true), 1);
        assert_eq!(Amount::check(&RawAmount::Text("10%".into()), true).unwrap().of(5, false), 0);
        assert_eq!(Amount::check(&RawAmount::Number(0), false).unwrap_err(), "must be at least 1");
        assert_eq!(Amount::check(&RawAmount::Text("150%".into()), true).unwrap_err(), "`150%` is more than 100%");
        assert!(Amount::check(&RawAmount::Text("lots".into()), true).unwrap_err().contains("neither"));
    }

    #[test]
    fn an_inventory_gives_a_group_in_order_and_names_what_is_wrong() {
        let text = "hosts:\n  web-2: { address: 10.0.0.2, port: 2222 }\n  web-1:\ngroups:\n  web: [web-2, web-1]\n";
        let inv = Inventory::parse(text, "hosts.yaml").unwrap();
        let t = inv.targets(Some("web"), "hosts.yaml").unwrap();
        assert_eq!(t.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["web-2", "web-1"]);
        assert_eq!((t[0].address.as_str(), t[0].port), ("10.0.0.2", Some(2222)));
        assert_eq!(
            inv.targets(Some("wbe"), "hosts.yaml").unwrap_err(),
            "hosts.yaml: no group `wbe` (did you mean `web`?)"
        );
        let bad = "hosts:\n  web-1:\ngroups:\n  web: [web-1, web-3]\n";
        assert_eq!(
            Inventory::parse(bad, "hosts.yaml").unwrap_err(),
            "hosts.yaml:4:16: group `web` names `web-3`, which is not under hosts (did you mean `web-1`?)"
        );
        let err = Inventory::parse("hosts:\n  web-1: { adress: x }\n", "hosts.yaml").unwrap_err();
        assert!(err.starts_with("hosts.yaml:2:"), "{err}");
    }
}
