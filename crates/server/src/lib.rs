//! `opsbook serve`: the HTTP API, the worker pool and access control.
//!
//! Architecture invariant: only this crate knows HTTP and JSON wire types. It reaches
//! storage through `opsbook_store::ServerStore` and runs executions through the engine.
#![forbid(unsafe_code)]

pub mod auth;
pub(crate) mod calls;
pub mod config;
mod diff;
mod error;
pub mod limits;
mod listen;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod policy;
mod routes;
pub mod scheduler;
pub mod service;
pub mod state;
mod ui;
pub mod vault;
mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use opsbook_engine::{Engine, EngineConfig};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

pub use config::Config;
pub use state::{AppState, Db};

/// The router with all endpoints, for tests and `serve`.
pub fn app(state: AppState) -> axum::Router {
    routes::router(state)
}

/// Builds the shared state on an opened store (and starts the notification dispatcher,
/// so call it inside the runtime).
pub fn state(store: impl Into<Db>, config: Config) -> AppState {
    let store = store.into();
    store.serve_reads();
    let (notify, rx) = tokio::sync::mpsc::unbounded_channel();
    notify::spawn_dispatcher(store.clone(), config.notify.clone(), config.public_url.clone(), rx);
    // Checked where they are read (`opsbook serve`): a broken key text here is a bug.
    let keys = Arc::new(match config.secret_keys.as_deref() {
        Some(text) => vault::Keys::parse(text).expect("secret keys checked when read"),
        None => {
            tracing::warn!("no secret key configured: secret parameters will not outlive this process");
            vault::Keys::parse(&vault::new_key_text()).expect("a new key parses")
        }
    });
    let engine_config = EngineConfig {
        kill_grace: Config::duration(&config.kill_grace),
        lease: Config::duration(&config.lease),
        heartbeat: std::time::Duration::from_secs(1),
        owner: format!("server:{}", opsbook_engine::local_owner().trim_start_matches("local:")),
        gates: opsbook_core::gate::GateBook::new(config.gates.clone()),
        release_gate_waits: true,
        parent_death: if config.step_parent_death_signal {
            opsbook_engine::ParentDeath::Kill
        } else {
            opsbook_engine::ParentDeath::LeaveToRecovery
        },
        mocks: None,
        calls: Some(opsbook_engine::CallHooks(Arc::new(calls::ServerCalls {
            store: store.clone(),
            workdir: config.workdir.clone(),
            keys: keys.clone(),
        }))),
    };
    let auth_failures = Arc::new(limits::AuthFailures::new(config.auth_failures_per_minute));
    AppState {
        engine: Engine::new(store.clone(), engine_config),
        live: live::Live::new(store.clone()),
        store,
        config: Arc::new(config),
        keys,
        running: Arc::new(Mutex::new(HashMap::new())),
        wake: Arc::new(Notify::new()),
        notify,
        gates_lock: Arc::new(tokio::sync::Mutex::new(())),
        auth_failures,
        queue_count: Arc::new(Mutex::new((0, 0))),
        figures: Arc::default(),
        versions: Arc::default(),
        carrying: Arc::default(),
    }
}

/// Reads the gates file again whenever it changes (checked every 2 seconds): gate checks
/// from then on use the new definitions. A file that does not parse is reported and the
/// gates in use are kept.
async fn watch_gates(state: AppState, path: std::path::PathBuf) {
    let stamp = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| Ok((m.modified()?, m.len()))).ok();
    let mut seen = stamp(&path);
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let now = stamp(&path);
        if now == seen {
            continue;
        }
        seen = now;
        let _guard = state.gates_lock.lock().await;
        let read = match opsbook_gate::read_gates_file_for_log(&path) {
            Ok(file) => still_used(&state, &file.gates).await.map(|()| file.gates),
            Err(e) => Err(e),
        };
        match read {
            Ok(gates) => {
                tracing::info!(file = %path.display(), gates = gates.len(), "gates file reloaded");
                // A gate that is gone blocks nothing: an alert on its gauge must clear.
                for gone in state.engine.config.gates.snapshot().keys().filter(|k| !gates.contains_key(*k)) {
                    ::metrics::gauge!("opsbook_gate_blocked", "gate" => gone.clone()).set(0.0);
                }
                state.engine.config.gates.replace(gates);
                ::metrics::counter!("opsbook_gates_reloads_total", "result" => "ok").increment(1);
            }
            Err(e) => {
                tracing::error!("gates file not reloaded, the previous gates stay in use: {e}");
                ::metrics::counter!("opsbook_gates_reloads_total", "result" => "error").increment(1);
            }
        }
    }
}

/// Refuses a gates file that drops a gate still in use — by the latest version of a
/// runbook that can run, or by an execution not finished — which would fail them.
async fn still_used(
    state: &AppState,
    gates: &std::collections::BTreeMap<String, opsbook_core::gate::GateDef>,
) -> Result<(), String> {
    use opsbook_store::{ExecutionFilter, RunbookQuery, ServerStore, Store};
    let current = state.engine.config.gates.snapshot();
    let dropped: Vec<&String> = current.keys().filter(|k| !gates.contains_key(*k)).collect();
    if dropped.is_empty() {
        return Ok(());
    }
    let mut sources: Vec<(String, String)> = Vec::new(); // (who, sha256)
    for entry in state.store.registry(&RunbookQuery::default()).await.map_err(|e| e.to_string())? {
        if entry.status != "archived" {
            sources.push((format!("runbook `{}`", entry.name), entry.latest_sha256));
        }
    }
    use opsbook_core::ExecStatus;
    for status in [ExecStatus::Queued, ExecStatus::Running, ExecStatus::Waiting] {
        let filter = ExecutionFilter { status: Some(status), limit: 10_000, ..ExecutionFilter::default() };
        for e in state.store.executions(&filter).await.map_err(|e| e.to_string())? {
            sources.push((format!("execution {} ({status})", e.id), e.runbook_sha256));
        }
    }
    let mut users = Vec::new();
    for (who, sha) in sources {
        let Ok(stored) = state.store.runbook(&sha).await else { continue };
        let Ok(rb) = opsbook_core::parse(&stored.content) else { continue };
        for step in &rb.steps {
            if let opsbook_core::StepKind::Gate(g) = &step.kind
                && let Some(name) = g.use_gate.as_ref().filter(|n| dropped.contains(n))
            {
                users.push(format!("{who} uses `{name}`"));
            }
        }
    }
    users.dedup();
    if users.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = users.iter().take(5).map(String::as_str).collect();
    let more = if users.len() > 5 { format!(" and {} more", users.len() - 5) } else { String::new() };
    Err(format!("the edited gates file removes gates still in use: {}{more}", shown.join("; ")))
}

/// What runs behind the API: the worker pool, the reaper, the scheduler and the gates
/// file watch. Any number of processes may run it on one database: claims, recovery
/// and schedule fires are decided in the store.
struct Background {
    workers: Vec<tokio::task::JoinHandle<()>>,
    reaper: tokio::task::JoinHandle<()>,
    scheduler: tokio::task::JoinHandle<()>,
    gates_watch: Option<tokio::task::JoinHandle<()>>,
}

impl Background {
    fn start(state: &AppState, stop_rx: &watch::Receiver<bool>) -> Background {
        if state.config.workers > 0 {
            // Executions queued by other processes on a shared database wake a worker here.
            let wake = state.wake.clone();
            state.store.on_queued(Arc::new(move || wake.notify_one()));
        }
        Background {
            workers: worker::spawn(state, state.config.workers, stop_rx.clone()),
            reaper: worker::spawn_reaper(state, stop_rx.clone()),
            scheduler: scheduler::spawn(state, stop_rx.clone()),
            gates_watch: state.config.gates_file.clone().map(|path| tokio::spawn(watch_gates(state.clone(), path))),
        }
    }

    /// After the stop signal: running executions get the shutdown grace period, then
    /// are stopped and marked interrupted.
    async fn finish(self, state: &AppState) {
        let grace = Config::duration(&state.config.shutdown_grace);
        let aborts: Vec<_> = self.workers.iter().map(|w| w.abort_handle()).collect();
        if tokio::time::timeout(grace, futures_util::future::join_all(self.workers)).await.is_err() {
            let ids: Vec<String> = state.running.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
            for a in &aborts {
                a.abort();
            }
            worker::interrupt_remaining(state, &ids).await;
        }
        // The reaper stops on the signal, after the gate polls under way (within the grace).
        let _ = self.reaper.await;
        self.scheduler.abort();
        if let Some(w) = self.gates_watch {
            w.abort();
        }
    }
}

/// Serves the API on `listener` with the worker pool (none with `workers = 0`: an API
/// node) until `shutdown` resolves; then stops claiming, lets running executions finish
/// within the grace period, and marks the rest interrupted.
pub fn serve(
    state: AppState,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Boxed<std::io::Result<()>> {
    serving(state, listener, metrics_listener, Box::pin(shutdown))
}

/// The future of a server's or worker's whole life, boxed: built here, so the binary
/// that awaits it does not compile the server's state machines again (an `async fn` is
/// compiled anew in every crate that awaits it; the caller of a generic one compiles it
/// all). The shutdown signal comes boxed for the same reason.
pub type Boxed<T> = opsbook_core::Boxed<'static, T>;

#[inline(never)]
fn serving(
    state: AppState,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: Boxed<()>,
) -> Boxed<std::io::Result<()>> {
    Box::pin(serve_until(state, listener, metrics_listener, shutdown))
}

async fn serve_until(
    state: AppState,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: Boxed<()>,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let background = Background::start(&state, &stop_rx);
    let limits = listen::Limits {
        header_read_timeout: Config::duration(&state.config.header_read_timeout),
        max_connections: state.config.max_connections,
        drain: Config::duration(&state.config.shutdown_grace),
    };
    let server = tokio::spawn(listen::serve(listener, app(state.clone()), limits, stop_rx.clone()));
    let metrics_server = metrics_listener.map(|l| serve_metrics(l, &state, &stop_rx));
    shutdown.await;
    tracing::info!("shutting down: no new executions are claimed");
    let _ = stop_tx.send(true);
    background.finish(&state).await;
    if let Some(m) = metrics_server {
        let _ = m.await;
    }
    match server.await {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(e)),
    }
}

/// Serves `/metrics` on `listener` until `stop` turns true.
fn serve_metrics(listener: TcpListener, state: &AppState, stop: &watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let mut stop = stop.clone();
    let app = metrics::router(state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    })
}

/// Runs executions without serving the API (`opsbook worker`): the worker pool, the
/// reaper and the scheduler, beside API nodes on the same database, until `shutdown`
/// resolves, and `/metrics` on `metrics_listener` when there is one.
pub fn work(
    state: AppState,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Boxed<()> {
    working(state, metrics_listener, Box::pin(shutdown))
}

#[inline(never)]
fn working(state: AppState, metrics_listener: Option<TcpListener>, shutdown: Boxed<()>) -> Boxed<()> {
    Box::pin(work_until(state, metrics_listener, shutdown))
}

async fn work_until(state: AppState, metrics_listener: Option<TcpListener>, shutdown: Boxed<()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let background = Background::start(&state, &stop_rx);
    let metrics_server = metrics_listener.map(|l| serve_metrics(l, &state, &stop_rx));
    shutdown.await;
    tracing::info!("shutting down: no new executions are claimed");
    let _ = stop_tx.send(true);
    background.finish(&state).await;
    if let Some(m) = metrics_server {
        let _ = m.await;
    }
}
