//! Gates over HTTP: the verdict for CI systems that prefer it, and the break-glass override.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{Ctx, Perm};
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult};
use crate::state::AppState;

/// The most a source may take to answer, and the default.
const SOURCE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckQuery {
    /// How long each source may take to answer (`3s`, `500ms`; at most, and by default, 20s),
    /// so that a CI job's own bound holds.
    timeout: Option<String>,
}

/// `GET /api/v1/gates/{name}`: evaluates a named gate now.
#[utoipa::path(get, path = "/api/v1/gates/{name}", tag = "gates", params(("name" = String, Path), CheckQuery), responses((status = 200, description = "The verdict with its block records"), (status = 404, description = "Unknown gate", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn check(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<CheckQuery>,
) -> ApiResult<Json<Value>> {
    ctx.require(&st, Perm::Read, &name).await?;
    let timeout = match &q.timeout {
        None => SOURCE_TIMEOUT,
        Some(t) => opsbook_core::duration::parse(t).map_err(|e| ApiError::param("timeout", e))?.0.min(SOURCE_TIMEOUT),
    };
    let gates = st.engine.config.gates.snapshot();
    let def = gates.get(&name).ok_or_else(|| ApiError::not_found(format!("gate `{name}` not found")))?;
    let checker = opsbook_gate::Checker::new(timeout).map_err(ApiError::internal)?;
    Ok(Json(checker.check(&name, def, jiff::Timestamp::now()).await.document()))
}

/// `POST /api/v1/executions/{id}/override {reason}` (admin): break glass — the gate step
/// the execution waits on counts as passed; the reason goes to the audit trail.
#[utoipa::path(post, path = "/api/v1/executions/{id}/override", tag = "gates", params(("id" = String, Path)), request_body = opsbook_api::Override, responses((status = 200, description = "Overridden; the execution goes on", body = opsbook_api::Overridden), (status = 404, description = "Unknown execution", body = crate::openapi::ErrorBody), (status = 400, description = "No reason", body = crate::openapi::ErrorBody), (status = 409, description = "Not waiting on a gate", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn override_gate(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<opsbook_api::Override>,
) -> ApiResult<Json<opsbook_api::Overridden>> {
    ctx.require(&st, Perm::Admin, &id).await?;
    Ok(Json(crate::service::override_gate(&st, &ctx, &id, &body.reason).await?))
}
