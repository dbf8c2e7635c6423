//! What every handler and worker shares.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use opsbook_engine::{CancelHandle, Engine};
use opsbook_store::{NewAudit, ServerStore};
use tokio::sync::Notify;

use crate::config::Config;

/// The store the server runs on: whichever backend its database URL names.
pub type Db = opsbook_store_any::AnyStore;

#[derive(Clone)]
pub struct AppState {
    pub store: Db,
    pub engine: Engine,
    pub config: Arc<Config>,
    /// The keys that seal the secret parameters of unfinished executions in the store
    /// (`vault`).
    pub keys: Arc<crate::vault::Keys>,
    /// Cancel handles of the executions running in this process.
    pub running: Arc<Mutex<HashMap<String, CancelHandle>>>,
    /// Wakes idle workers when something is queued.
    pub wake: Arc<Notify>,
    /// Notification events, delivered by the dispatcher task.
    pub notify: tokio::sync::mpsc::UnboundedSender<crate::notify::Note>,
    /// Held while a publish checks its gate names and while the gates file is swapped,
    /// so neither sees the other half done.
    pub gates_lock: Arc<tokio::sync::Mutex<()>>,
    /// Failed authentications per source and minute (audited once, then counted).
    pub auth_failures: Arc<crate::limits::AuthFailures>,
    /// The queue's length and when it was counted (epoch ms): counted at most every
    /// 100 ms, not on every submission (the bound is a guard, not an exact quota).
    pub queue_count: Arc<Mutex<(i64, i64)>>,
    /// The web UI's analytics, summarized at most once a minute per window.
    pub figures: Arc<crate::routes::analytics::FiguresCache>,
    /// The executions event streams follow, looked at once a tick for all of them.
    pub live: Arc<crate::live::Live>,
    /// Published versions read so far, by (runbook, version): they never change.
    pub versions: Arc<Mutex<HashMap<(String, String), opsbook_store::PublishedVersion>>>,
    /// Executions a resume, rollback or confirmed manual rollback of this process is
    /// carrying on, from the request's checks until its runner ends. A claim is the
    /// node's, the same for every runner in it, so it cannot keep two of them apart.
    pub carrying: Arc<Mutex<HashSet<String>>>,
}

/// [`AppState::carrying`]'s hold on one execution, let go when dropped.
pub struct Carrying {
    set: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl Drop for Carrying {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

/// The caller's request id (`X-Request-Id`), or a new one.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(opsbook_store::id::new_id)
}

impl AppState {
    /// Holds execution `id` for one carrying on (a resume, a rollback); a second one while
    /// it is held is refused (409), as another node's would be by the claim.
    pub fn carry(&self, id: &str) -> crate::error::ApiResult<Carrying> {
        let mut set = self.carrying.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(id.to_string()) {
            return Err(crate::error::ApiError::conflict(format!(
                "execution {id} is held by this server: another resume, rollback or confirmation is acting on it; \
                 try again when it is done"
            )));
        }
        Ok(Carrying { set: self.carrying.clone(), id: id.to_string() })
    }

    /// Appends to the audit trail. A failure to audit is logged, never hidden.
    pub async fn audit(&self, actor: &str, action: &str, target: &str, request_id: &str, details: serde_json::Value) {
        let record = self.audit_record(actor, action, target, request_id, &details);
        if let Err(e) = self.store.append_audit(&record).await {
            tracing::error!(%e, action, target, "cannot append to the audit trail");
        }
    }

    /// An audit record, bounded whatever a client sent: it costs at most a few kilobytes.
    pub fn audit_record(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        request_id: &str,
        details: &serde_json::Value,
    ) -> NewAudit {
        use crate::limits::{bounded, bounded_json};
        NewAudit {
            actor: bounded(actor, 256),
            action: bounded(action, 64),
            target: bounded(target, 256),
            request_id: bounded(request_id, 128),
            details: bounded_json(details, 1024, 100),
        }
    }

    /// Asks the runner of execution `id`, when it runs in this process, to stop now.
    pub fn stop_running(&self, id: &str) {
        if let Some(h) = self.running.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            h.at_least(1);
        }
    }

    /// A published version (kept once read: a published version never changes, so a
    /// submission need not read it from the database again).
    pub async fn published_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<opsbook_store::PublishedVersion, opsbook_store::Error> {
        let key = (name.to_string(), version.to_string());
        if let Some(v) = self.versions.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(v.clone());
        }
        let (v, _) = self.store.registry_version(name, version).await?;
        let mut versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        if versions.len() >= 1024 {
            versions.clear();
        }
        versions.insert(key, v.clone());
        Ok(v)
    }

    /// Executions queued, as counted within the last 100 ms (plus those queued since
    /// through this process).
    pub async fn queued(&self) -> Result<i64, opsbook_store::Error> {
        let now = opsbook_store::now_ms();
        {
            let mut c = self.queue_count.lock().unwrap_or_else(|p| p.into_inner());
            if now - c.0 < 100 {
                c.1 += 1;
                return Ok(c.1 - 1);
            }
        }
        let n = self.store.count_queued().await?;
        *self.queue_count.lock().unwrap_or_else(|p| p.into_inner()) = (now, n + 1);
        Ok(n)
    }
}
