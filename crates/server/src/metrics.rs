//! Prometheus metrics on their own listener (`metrics_listen`): counters and histograms
//! recorded as executions run, gauges read from the database on each scrape.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opsbook_store::ServerStore;

use crate::state::AppState;

/// The process-wide recorder (metrics are global; every server in the process shares it).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let buckets = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];
        let fast = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0];
        let builder = PrometheusBuilder::new()
            .set_buckets(&buckets)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full("opsbook_gate_source_duration_seconds".into()), &fast))
            .expect("bucket lists are not empty");
        let handle = match builder.install_recorder() {
            Ok(h) => h,
            // Another recorder is already installed: render an empty one rather than fail.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        };
        describe();
        handle
    })
}

/// `# HELP` lines, so a scrape explains itself.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("opsbook_executions", "Executions in the database by status");
    describe_gauge!("opsbook_queue_depth", "Executions queued for a worker");
    describe_gauge!(
        "opsbook_waiting_approvals",
        "Executions waiting for people: an approval decision or a manual step"
    );
    describe_gauge!("opsbook_waiting_gates", "Executions waiting on a health gate (including one being polled)");
    describe_gauge!("opsbook_workers", "Workers this server runs");
    describe_gauge!(
        "opsbook_runbooks_review_overdue",
        "Runbooks whose review is overdue (or that were never reviewed)"
    );
    describe_gauge!("opsbook_running_here", "Executions this server is running or polling a gate of now");
    describe_counter!("opsbook_executions_finished_total", "Executions that finished, by runbook and status");
    describe_histogram!("opsbook_execution_duration_seconds", "Duration of finished executions");
    describe_histogram!("opsbook_step_duration_seconds", "Duration of finished steps");
    describe_counter!("opsbook_notification_failures_total", "Failed notification delivery attempts, by rule");
    describe_counter!("opsbook_gate_checks_total", "Gate checks by gate and verdict");
    describe_gauge!("opsbook_gate_blocked", "1 while the gate's last check did not pass");
    describe_histogram!("opsbook_gate_source_duration_seconds", "Time to read one gate source, by type and verdict");
    describe_counter!("opsbook_gates_reloads_total", "Reloads of the gates file after it changed, by result");
}

pub fn router(state: AppState) -> Router {
    handle();
    Router::new().route("/metrics", get(render)).with_state(state)
}

async fn render(State(st): State<AppState>) -> String {
    if let Ok(counts) = st.store.count_by_status().await {
        for status in ["queued", "running", "waiting", "succeeded", "failed", "cancelled", "interrupted"] {
            let n = counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
            metrics::gauge!("opsbook_executions", "status" => status).set(n as f64);
        }
        let n = |s: &str| counts.iter().find(|(st, _)| st == s).map_or(0, |(_, n)| *n) as f64;
        metrics::gauge!("opsbook_queue_depth").set(n("queued"));
    }
    if let Ok((approvals, gates)) = st.store.count_waiting().await {
        metrics::gauge!("opsbook_waiting_approvals").set(approvals as f64);
        metrics::gauge!("opsbook_waiting_gates").set(gates as f64);
    }
    metrics::gauge!("opsbook_workers").set(st.config.workers as f64);
    if let Ok(overdue) = crate::service::quality::overdue_reviews(&st, jiff::Zoned::now().date()).await {
        metrics::gauge!("opsbook_runbooks_review_overdue").set(overdue.len() as f64);
    }
    metrics::gauge!("opsbook_running_here").set(st.running.lock().map(|r| r.len()).unwrap_or(0) as f64);
    handle().render()
}

pub fn execution_finished(runbook: &str, status: &str, seconds: f64) {
    metrics::counter!("opsbook_executions_finished_total", "runbook" => runbook.to_string(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("opsbook_execution_duration_seconds", "runbook" => runbook.to_string()).record(seconds);
}

pub fn step_finished(runbook: &str, step: &str, status: &str, seconds: f64) {
    metrics::histogram!(
        "opsbook_step_duration_seconds",
        "runbook" => runbook.to_string(), "step" => step.to_string(), "status" => status.to_string()
    )
    .record(seconds);
}

pub fn notification_failed(rule: &str) {
    metrics::counter!("opsbook_notification_failures_total", "rule" => rule.to_string()).increment(1);
}
