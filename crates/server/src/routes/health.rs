//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use opsbook_api::Health;
use opsbook_store::ServerStore;

use crate::state::AppState;

#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Ready when the database answers.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "The database answers", body = Health), (status = 503, description = "The database does not answer", body = Health)))]
pub async fn readyz(State(st): State<AppState>) -> (StatusCode, Json<Health>) {
    match st.store.count_by_status().await {
        Ok(_) => (StatusCode::OK, Json(Health { status: "ready".into() })),
        Err(e) => {
            tracing::error!(%e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "database unavailable".into() }))
        }
    }
}
