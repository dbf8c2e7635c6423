//! Tokens, the audit trail and `whoami`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use opsbook_api::{AuditEntry, CreatedToken, Items, NewToken, Revoked, TokenInfo, Whoami};
use opsbook_store::{AuditFilter, ServerStore, now_ms};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{self, Ctx, Perm};
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult};
use crate::service::to_value;
use crate::state::AppState;

/// `POST /api/v1/tokens`: the secret is in this response and nowhere else, ever.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "admin", request_body = NewToken, responses((status = 201, description = "The token, shown this once", body = CreatedToken), (status = 400, description = "Bad user, roles or expiry", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn create_token(
    State(st): State<AppState>,
    ctx: Ctx,
    ApiJson(body): ApiJson<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let rid = ctx.request_id.clone();
    ctx.require(&st, Perm::Admin, "tokens").await?;
    // Names are kept as people mean them: no surrounding spaces, one case.
    let user = auth::check_user(&body.user).map_err(|e| ApiError::field("user", e))?;
    auth::check_roles(&body.roles, &body.labels).map_err(|(field, e)| ApiError::field(field, e))?;
    let expires_at = match body.expires_in.as_deref() {
        Some(d) => {
            let d = opsbook_core::duration::parse(d)
                .map_err(|e| ApiError::field("expires_in", format!("expires_in: {e}")))?;
            Some(now_ms() + i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX / 2))
        }
        None => None,
    };
    let roles = auth::token_roles(body.roles, body.labels);
    let new = auth::generate(&user, roles, expires_at);
    st.store.create_token(&new.record, &new.hash).await?;
    let info = TokenInfo::from(new.record);
    st.audit(ctx.user(), "token.create", &info.id, &rid, to_value(&info)).await;
    Ok((StatusCode::CREATED, Json(CreatedToken { info, token: new.secret })))
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "admin", responses((status = 200, description = "Tokens, never their secrets", body = Items<TokenInfo>), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn list_tokens(State(st): State<AppState>, ctx: Ctx) -> ApiResult<Json<Items<TokenInfo>>> {
    ctx.require(&st, Perm::Admin, "tokens").await?;
    Ok(Json(Items { items: st.store.tokens().await?.into_iter().map(TokenInfo::from).collect() }))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "admin", params(("id" = String, Path)), responses((status = 200, description = "Revoked", body = Revoked), (status = 404, description = "Unknown token", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn revoke_token(State(st): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Revoked>> {
    let rid = ctx.request_id.clone();
    ctx.require(&st, Perm::Admin, "tokens").await?;
    st.store.revoke_token(&id).await?;
    st.audit(ctx.user(), "token.revoke", &id, &rid, json!({})).await;
    Ok(Json(Revoked { id, revoked: true }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// RFC 3339 time or epoch milliseconds.
    since: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
    /// The newest `limit` records that match, rather than the first (still in order).
    newest: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "admin", params(AuditQuery), responses((status = 200, description = "Audit records in order", body = Items<AuditEntry>), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn audit(
    State(st): State<AppState>,
    ctx: Ctx,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Items<AuditEntry>>> {
    ctx.require(&st, Perm::Admin, "audit").await?;
    let items = st
        .store
        .audit(&AuditFilter {
            actor: q.actor,
            action: q.action,
            target: q.target,
            after_seq: q.after.unwrap_or(0),
            since: match q.since.as_deref() {
                Some(s) => Some(crate::routes::executions::parse_time(s).ok_or_else(|| {
                    ApiError::bad_request(format!("since: `{s}` is not a time"))
                        .with_details(json!({ "param": "since" }))
                })?),
                None => None,
            },
            limit: crate::error::page_limit(q.limit, 100, 1000)?,
            newest: q.newest.unwrap_or(false),
        })
        .await?;
    Ok(Json(Items { items: items.into_iter().map(AuditEntry::from).collect() }))
}

#[utoipa::path(get, path = "/api/v1/whoami", tag = "admin", responses((status = 200, description = "The caller", body = Whoami), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn whoami(ctx: Ctx) -> Json<Whoami> {
    Json(Whoami { user: ctx.principal.user, roles: ctx.principal.roles, token: ctx.principal.token_id })
}
