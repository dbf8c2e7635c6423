//! What the engine's `runbook` steps need from the server: published runbooks by name
//! and version requirement (from the registry), and a child execution's working
//! directory and sealed secrets before it runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use opsbook_core::Input;
use opsbook_engine::{Calls, Resolved};
use opsbook_store::{Execution, ServerStore};

use crate::state::Db;
use crate::vault::Keys;

pub struct ServerCalls {
    pub store: Db,
    pub workdir: PathBuf,
    pub keys: Arc<Keys>,
}

type Boxed<'a, T> = opsbook_core::Boxed<'a, Result<T, String>>;

impl Calls for ServerCalls {
    fn resolve<'a>(&'a self, name: &'a str, version: Option<&'a semver::VersionReq>) -> Boxed<'a, Resolved> {
        Box::pin(newest(&self.store, name, version, false))
    }

    fn prepare<'a>(
        &'a self,
        child: &'a mut Execution,
        has_files: bool,
        secrets: &'a BTreeMap<String, Input>,
    ) -> Boxed<'a, ()> {
        Box::pin(async move {
            if has_files {
                child.base_dir = crate::worker::execution_dir(&self.workdir, &child.id).to_string_lossy().into_owned();
                crate::worker::prepare(&self.store, child).await?;
            }
            // Sealed before the child is stored: a worker that goes on with it alone (after
            // an approval) finds them.
            if !secrets.is_empty() {
                let sealed = self.keys.seal(&child.id, secrets);
                self.store.put_secrets(&sealed).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }
}

/// The newest version of published runbook `name` that `version` allows, if it may run
/// (or whatever its lifecycle, `any_status`).
async fn newest(
    store: &Db,
    name: &str,
    version: Option<&semver::VersionReq>,
    any_status: bool,
) -> Result<Resolved, String> {
    let entry = store.registry_entry(name).await.map_err(|e| match e {
        opsbook_store::Error::NotFound(_) => format!("no runbook `{name}` is published on this server"),
        e => e.to_string(),
    })?;
    if entry.status != "active" && entry.status != "deprecated" && !any_status {
        return Err(format!("runbook `{name}` is {}; only active and deprecated runbooks run", entry.status));
    }
    let versions = store.registry_versions(name).await.map_err(|e| e.to_string())?;
    let chosen = versions
        .iter()
        .filter_map(|v| Some((semver::Version::parse(&v.version).ok()?, v)))
        .filter(|(parsed, _)| version.is_none_or(|req| req.matches(parsed)))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, v)| v.version.clone());
    let Some(chosen) = chosen else {
        let all: Vec<&str> = versions.iter().map(|v| v.version.as_str()).collect();
        let wanted = version.map(|v| v.to_string()).unwrap_or_else(|| "any".into());
        return Err(format!("no published version of `{name}` matches {wanted} (published: {})", all.join(", ")));
    };
    let (published, text) = store.registry_version(name, &chosen).await.map_err(|e| e.to_string())?;
    let runbook = opsbook_core::parse(&text).map_err(|d| {
        let first = d.first().map(ToString::to_string).unwrap_or_default();
        format!("published runbook `{name}` {chosen} no longer parses: {first}")
    })?;
    Ok(Resolved { runbook, has_files: published.bundle_sha256.is_some() })
}

/// Refuses to publish `rb` when its `runbook: { name }` steps, followed through what is
/// published (the versions they would run now), come back to it or go deeper than runbooks
/// may call runbooks. Runbooks not published yet are not followed; drafts are.
pub async fn check_named_calls(store: &Db, rb: &opsbook_core::Runbook) -> Result<(), String> {
    use opsbook_core::step::call::{Callee, MAX_DEPTH};
    let mut todo = vec![(vec![rb.name.clone()], rb.clone())];
    while let Some((chain, book)) = todo.pop() {
        for step in book.all_steps() {
            let opsbook_core::StepKind::Runbook(call) = &step.kind else { continue };
            let Callee::Name { name, version } = &call.callee else { continue };
            let path = format!("{} → {name}", chain.join(" → "));
            if chain.contains(name) {
                return Err(format!(
                    "step `{}` of `{}`: runbooks call each other in a cycle: {path}",
                    step.id, book.name
                ));
            }
            if chain.len() > MAX_DEPTH {
                return Err(format!("runbooks may call runbooks at most {MAX_DEPTH} deep: {path}"));
            }
            if let Ok(found) = newest(store, name, version.as_ref(), true).await {
                let mut next = chain.clone();
                next.push(name.clone());
                todo.push((next, found.runbook));
            }
        }
    }
    Ok(())
}

/// Refuses a run of `rb` by `who` when a runbook it would call by name (followed through
/// what is published, as far as it can be known now) is one a policy keeps from `who`:
/// a child runs as its parent's submitter, so its policies apply at submission. A
/// parameter a call renders from earlier steps' outputs is not known yet; a policy's
/// condition on it counts as holding. (A file in the parent's published directory is
/// part of the parent, under the parent's policies.)
pub async fn check_child_policies(
    store: &Db,
    policies: &[crate::policy::Policy],
    who: &crate::auth::Principal,
    rb: &opsbook_core::Runbook,
    values: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    use opsbook_core::step::call::{Callee, MAX_DEPTH};
    if policies.is_empty() {
        return Ok(());
    }
    let mut todo = vec![(vec![rb.name.clone()], rb.clone(), values.clone())];
    while let Some((chain, book, known)) = todo.pop() {
        let ctx = opsbook_core::template::Context {
            params: serde_json::Value::Object(known.clone()),
            steps: Default::default(),
            ..Default::default()
        };
        for step in book.all_steps() {
            let opsbook_core::StepKind::Runbook(call) = &step.kind else { continue };
            let Callee::Name { name, version } = &call.callee else { continue };
            if chain.contains(name) || chain.len() > MAX_DEPTH {
                continue;
            }
            let Ok(found) = newest(store, name, version.as_ref(), false).await else { continue };
            let mut params = serde_json::Map::new();
            let mut unknown = Vec::new();
            for (k, tpl) in &call.params {
                match opsbook_core::template::render_plain(tpl, &ctx) {
                    Ok(v) => {
                        params.insert(k.clone(), serde_json::Value::String(v));
                    }
                    Err(_) => unknown.push(k.clone()),
                }
            }
            for p in &found.runbook.params {
                if !params.contains_key(&p.name) && !unknown.contains(&p.name) {
                    match &p.spec.default {
                        Some(d) => {
                            params.insert(p.name.clone(), d.clone());
                        }
                        None => unknown.push(p.name.clone()),
                    }
                }
            }
            let tags = &found.runbook.tags;
            if let Some(p) = crate::policy::refusal_in_part(policies, who, name, tags, &params, &unknown) {
                let why = p.description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
                return Err(format!(
                    "step `{}` of `{}` runs `{name}`, and running `{name}` like this needs one of the roles {}{why}",
                    step.id,
                    book.name,
                    p.roles.join(", ")
                ));
            }
            let mut next = chain.clone();
            next.push(name.clone());
            todo.push((next, found.runbook, params));
        }
    }
    Ok(())
}
