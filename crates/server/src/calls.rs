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

type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, String>> + Send + 'a>>;

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
            if chain.len() >= MAX_DEPTH {
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
