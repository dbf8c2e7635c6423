//! The HTTP API, one file per resource.

pub(crate) mod admin;
pub(crate) mod analytics;
pub(crate) mod bundles;
pub(crate) mod executions;
pub(crate) mod gates;
pub(crate) mod health;
pub(crate) mod quality;
pub(crate) mod runbooks;
pub(crate) mod schedules;
pub(crate) mod triggers;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/v1/openapi.json", get(crate::openapi::spec))
        .route("/api/v1/runbooks", post(runbooks::publish).get(runbooks::list))
        // The bundle handler bounds its body itself (max_bundle_bytes), naming the limit.
        .route(
            "/api/v1/bundles/{sha256}",
            put(bundles::upload).get(bundles::download).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v1/runbooks/{name}", get(runbooks::get))
        .route("/api/v1/runbooks/{name}/versions", get(runbooks::versions))
        .route("/api/v1/runbooks/{name}/versions/{version}", get(runbooks::version))
        .route("/api/v1/runbooks/{name}/diff", get(runbooks::diff))
        .route("/api/v1/runbooks/{name}/lifecycle", post(runbooks::lifecycle))
        .route("/api/v1/runbooks/{name}/executions", post(executions::submit))
        .route("/api/v1/executions", get(executions::list))
        .route("/api/v1/executions/{id}", get(executions::get))
        .route("/api/v1/executions/{id}/logs", get(executions::logs))
        .route("/api/v1/executions/{id}/events", get(executions::events))
        .route("/api/v1/executions/{id}/cancel", post(executions::cancel))
        .route("/api/v1/executions/{id}/resume", post(executions::resume))
        .route("/api/v1/executions/{id}/rollback", post(executions::rollback))
        .route("/api/v1/executions/{id}/approvals", post(executions::approve))
        .route("/api/v1/executions/{id}/confirmations", post(quality::confirm))
        .route("/api/v1/executions/{id}/feedback", post(quality::add_feedback).get(quality::feedback))
        .route("/api/v1/runbooks/{name}/reviews", post(quality::add_review).get(quality::reviews))
        .route("/api/v1/executions/{id}/override", post(gates::override_gate))
        .route("/api/v1/gates/{name}", get(gates::check))
        .route("/api/v1/triggers/{name}", post(triggers::fire).layer(DefaultBodyLimit::disable()))
        .route("/api/v1/schedules", post(schedules::create).get(schedules::list))
        .route("/api/v1/schedules/{id}", delete(schedules::delete))
        .route("/api/v1/tokens", post(admin::create_token).get(admin::list_tokens))
        .route("/api/v1/tokens/{id}", delete(admin::revoke_token))
        .route("/api/v1/audit", get(admin::audit))
        .route("/api/v1/analytics", get(analytics::analytics))
        .route("/api/v1/whoami", get(admin::whoami))
        .merge(crate::ui::router())
        .fallback(unknown_path)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn(crate::error::plain_errors))
        .with_state(state)
}

/// Paths that are not served answer in the API's error shape too.
async fn unknown_path(uri: axum::http::Uri) -> crate::error::ApiError {
    crate::error::ApiError::not_found(format!("no such endpoint: {}", crate::limits::bounded(uri.path(), 200)))
}

async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> crate::error::ApiError {
    crate::error::ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not served at {}", crate::limits::bounded(uri.path(), 200)),
    )
}
