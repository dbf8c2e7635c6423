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

/// How long readiness waits for the database: under a probe's usual one-second timeout.
const READY_WAIT: std::time::Duration = std::time::Duration::from_millis(800);

/// Ready when the database answers within 0.8 s (`READY_WAIT`).
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "The database answers", body = Health), (status = 503, description = "The database does not answer", body = Health)))]
pub async fn readyz(State(st): State<AppState>) -> (StatusCode, Json<Health>) {
    let answered = tokio::time::timeout(READY_WAIT, st.store.ping()).await;
    match answered {
        Ok(Ok(())) => (StatusCode::OK, Json(Health { status: "ready".into() })),
        Ok(Err(e)) => {
            tracing::error!(%e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "database unavailable".into() }))
        }
        Err(_) => {
            tracing::error!("readiness check failed: the database did not answer within {READY_WAIT:?}");
            (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "database unavailable".into() }))
        }
    }
}
