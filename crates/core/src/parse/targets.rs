//! The checks of a `run` step's `targets`: where they come from (hosts, an inventory,
//! SSM tags), how they are reached, and the limits.

use serde_saphyr::Location;

use super::Checker;
use crate::step::aws;
use crate::step::targets::{Amount, RawAmount, Source, Target, Targets, TargetsSpec, Via};
use crate::template::Scope;

impl Checker<'_> {
    /// Checks a step's `targets`.
    pub(super) fn targets(
        &mut self,
        t: &TargetsSpec,
        at: &Location,
        id: &str,
        is_run: bool,
        scope: &Scope<'_>,
    ) -> Option<Targets> {
        let n = self.diags.len();
        if !is_run {
            self.err(at, format!("step `{id}`: targets apply only to run steps"));
        }
        let ssm = t.via == Via::Ssm;
        if !ssm && (!t.tags.is_empty() || t.region.is_some() || t.role_arn.is_some()) {
            self.err(at, format!("step `{id}`: targets.tags, region and role_arn apply only with `via: ssm`"));
        }
        let source = match (&t.inventory, t.hosts.is_empty()) {
            _ if ssm && !t.tags.is_empty() => {
                if !t.hosts.is_empty() || t.inventory.is_some() {
                    self.err(at, format!("step `{id}`: targets: set hosts (instance ids) or tags, not both"));
                }
                if t.tags.len() > 5 {
                    self.err(at, format!("step `{id}`: targets.tags: {} tags, SSM takes at most 5", t.tags.len()));
                }
                match aws::ssm_parameters(&t.tags) {
                    Ok(tags) => {
                        for (k, values) in &tags {
                            for v in values {
                                self.plain_template(v, at, scope, &format!("targets.tags.{k}"));
                            }
                        }
                        Source::Tags(tags)
                    }
                    Err(e) => {
                        let e = e.strip_prefix("parameters.").unwrap_or(&e).to_string();
                        self.err(at, format!("step `{id}`: targets.tags.{e}"));
                        return None;
                    }
                }
            }
            (Some(inv), _) if ssm => {
                self.err(
                    &inv.referenced,
                    "targets.inventory: with `via: ssm` the targets are instance ids (hosts) or tags",
                );
                return None;
            }
            (Some(inv), true) => {
                if inv.value.trim().is_empty() {
                    self.err(&inv.referenced, "targets.inventory: name the inventory file");
                }
                Source::Inventory { path: inv.value.clone(), group: t.group.as_ref().map(|g| g.value.clone()) }
            }
            (None, false) => {
                if let Some(g) = &t.group {
                    self.err(&g.referenced, "targets.group: a group is taken from an inventory; set targets.inventory");
                }
                for h in &t.hosts {
                    if let Some(secret) = scope.secrets.iter().find(|s| crate::template::mentions(&h.value, s)) {
                        let msg = format!(
                            "step `{id}`: targets.hosts: a target's name is shown and stored as it is, so it may not \
                             carry secret parameter `{secret}`"
                        );
                        self.err(&h.referenced, msg);
                    } else if h.value.contains("{{") || h.value.contains("{%") {
                        self.plain_template(&h.value, &h.referenced, scope, "targets.hosts");
                    } else if let Err(e) = Target::parse_list(&h.value) {
                        self.err(&h.referenced, format!("targets.hosts: {e}"));
                    } else if ssm
                        && let Some(bad) = Target::parse_list(&h.value)
                            .unwrap_or_default()
                            .into_iter()
                            .find(|t| !Target::is_instance_id(&t.name) || t.user.is_some() || t.port.is_some())
                    {
                        let msg = format!(
                            "targets.hosts: `{}` is not an instance id (i-0abc12345def67890) for `via: ssm`",
                            bad.name
                        );
                        self.err(&h.referenced, msg);
                    }
                }
                Source::Hosts(t.hosts.iter().map(|h| h.value.clone()).collect())
            }
            (Some(inv), false) => {
                self.err(&inv.referenced, "targets: set hosts or inventory, not both");
                return None;
            }
            (None, true) if ssm => {
                self.err(
                    at,
                    format!("step `{id}`: targets: list instance ids (targets.hosts) or select them by targets.tags"),
                );
                return None;
            }
            (None, true) => {
                self.err(
                    at,
                    format!(
                        "step `{id}`: targets: list the hosts (targets.hosts) or name an inventory (targets.inventory)"
                    ),
                );
                return None;
            }
        };
        let mut amount =
            |raw: &Option<serde_saphyr::Spanned<RawAmount>>, field: &str, zero_ok: bool, default: Amount| {
                let Some(raw) = raw else { return default };
                Amount::check(&raw.value, zero_ok).unwrap_or_else(|e| {
                    self.err(&raw.referenced, format!("targets.{field}: {e}"));
                    default
                })
            };
        let max_concurrency = amount(&t.max_concurrency, "max_concurrency", false, Amount::Count(1));
        let max_errors = amount(&t.max_errors, "max_errors", true, Amount::Count(0));
        for (place, e) in aws::check_target("targets", &t.region, &t.role_arn) {
            self.err(&place, e);
        }
        if t.via != Via::Ssh
            && (t.ssh.user.is_some()
                || t.ssh.port.is_some()
                || t.ssh.identity_file.is_some()
                || t.ssh.known_hosts.is_some()
                || t.ssh.connect_timeout.is_some())
        {
            self.err(at, format!("step `{id}`: targets.ssh applies only with `via: ssh`"));
        }
        if self.diags.len() > n {
            return None;
        }
        let aws = crate::step::aws::target(&t.region, &t.role_arn);
        Some(Targets { source, via: t.via, max_concurrency, max_errors, ssh: t.ssh.clone(), aws })
    }
}
