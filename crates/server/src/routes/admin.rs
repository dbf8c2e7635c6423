//! Tokens, the audit trail and `whoami`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use opsbook_store::{AuditFilter, ServerStore, now_ms};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{self, Ctx, Perm};
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    user: String,
    /// Built-in roles: viewer, operator, approver, author, admin.
    #[serde(default)]
    roles: Vec<String>,
    /// Other names that approval steps (`role:NAME`) and policies use.
    #[serde(default)]
    labels: Vec<String>,
    /// A duration such as 30d; none: the token does not expire.
    expires_in: Option<String>,
}

/// `POST /api/v1/tokens`: the secret is in this response and nowhere else, ever.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "admin", request_body = TokenBody, responses((status = 201, description = "The token, shown this once"), (status = 400, description = "Bad user, roles or expiry", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn create_token(
    State(st): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<TokenBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let rid = ctx.request_id.clone();
    ctx.require(&st, Perm::Admin, "tokens").await?;
    // Names are kept as people mean them: no surrounding spaces, one case.
    let user = auth::user_name(&body.user);
    if user.is_empty() {
        return Err(ApiError::bad_request("user must not be empty"));
    }
    auth::check_roles(&body.roles, &body.labels).map_err(ApiError::bad_request)?;
    let expires_at = match body.expires_in.as_deref() {
        Some(d) => {
            let d = opsbook_core::duration::parse(d).map_err(|e| ApiError::bad_request(format!("expires_in: {e}")))?;
            Some(now_ms() + i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX / 2))
        }
        None => None,
    };
    let roles = body.roles.into_iter().chain(body.labels).collect();
    let new = auth::generate(&user, roles, expires_at);
    st.store.create_token(&new.record, &new.hash).await?;
    let record = serde_json::to_value(&new.record).map_err(ApiError::internal)?;
    st.audit(ctx.user(), "token.create", &new.record.id, &rid, record.clone()).await;
    let mut doc = record;
    doc["token"] = Value::from(new.secret);
    Ok((StatusCode::CREATED, Json(doc)))
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "admin", responses((status = 200, description = "Tokens, never their secrets"), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn list_tokens(State(st): State<AppState>, ctx: Ctx) -> ApiResult<Json<Value>> {
    ctx.require(&st, Perm::Admin, "tokens").await?;
    Ok(Json(json!({ "items": st.store.tokens().await? })))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "admin", params(("id" = String, Path)), responses((status = 200, description = "Revoked"), (status = 404, description = "Unknown token", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn revoke_token(State(st): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let rid = ctx.request_id.clone();
    ctx.require(&st, Perm::Admin, "tokens").await?;
    st.store.revoke_token(&id).await?;
    st.audit(ctx.user(), "token.revoke", &id, &rid, json!({})).await;
    Ok(Json(json!({ "id": id, "revoked": true })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "admin", params(AuditQuery), responses((status = 200, description = "Audit records in order"), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn audit(State(st): State<AppState>, ctx: Ctx, ApiQuery(q): ApiQuery<AuditQuery>) -> ApiResult<Json<Value>> {
    ctx.require(&st, Perm::Admin, "audit").await?;
    let items = st
        .store
        .audit(&AuditFilter {
            actor: q.actor,
            action: q.action,
            target: q.target,
            after_seq: q.after.unwrap_or(0),
            limit: q.limit.unwrap_or(100).clamp(1, 1000),
        })
        .await?;
    Ok(Json(json!({ "items": items })))
}

#[utoipa::path(get, path = "/api/v1/whoami", tag = "admin", responses((status = 200, description = "The caller"), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn whoami(ctx: Ctx) -> Json<Value> {
    Json(json!({ "user": ctx.principal.user, "roles": ctx.principal.roles, "token": ctx.principal.token_id }))
}
