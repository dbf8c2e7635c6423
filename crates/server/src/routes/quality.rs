//! Manual steps' confirmations, feedback on executions, reviews of runbooks.

use axum::Json;
use axum::extract::{Path, State};
use opsbook_store::{ServerStore, Store};

use crate::auth::{Ctx, Perm};
use crate::error::{ApiJson, ApiResult};
use crate::service;
use crate::state::AppState;

/// `POST .../confirmations {step?, done, note?}`: the manual step (or manual rollback)
/// the execution waits on was done (every checklist item), or could not be (`done:
/// false`: it fails, and the rollbacks run as the runbook says). Recorded and audited.
#[utoipa::path(post, path = "/api/v1/executions/{id}/confirmations", tag = "executions", params(("id" = String, Path)), request_body = opsbook_api::Confirm, responses((status = 200, description = "Confirmation recorded; the execution goes on", body = opsbook_api::Confirmed), (status = 404, description = "Unknown execution", body = crate::openapi::ErrorBody), (status = 400, description = "A secret missing or wrong, or an ambiguous id prefix", body = crate::openapi::ErrorBody), (status = 409, description = "Nothing manual waits, that step does not, or it was answered already", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn confirm(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<opsbook_api::Confirm>,
) -> ApiResult<Json<opsbook_api::Confirmed>> {
    ctx.require(&st, Perm::Run, &id).await?;
    Ok(Json(service::quality::confirm(&st, &ctx, &id, body).await?))
}

/// `POST .../feedback {rating, comment?}`: rates an execution that ended (1-5); given
/// again, it replaces the earlier rating of the same person.
#[utoipa::path(post, path = "/api/v1/executions/{id}/feedback", tag = "executions", params(("id" = String, Path)), request_body = opsbook_api::FeedbackIn, responses((status = 200, description = "Rating recorded", body = opsbook_api::FeedbackDoc), (status = 404, description = "Unknown execution", body = crate::openapi::ErrorBody), (status = 400, description = "Rating not between 1 and 5", body = crate::openapi::ErrorBody), (status = 409, description = "The execution has not ended", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn add_feedback(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<opsbook_api::FeedbackIn>,
) -> ApiResult<Json<opsbook_api::FeedbackDoc>> {
    ctx.require(&st, Perm::Read, &id).await?;
    Ok(Json(service::quality::feedback(&st, &ctx, &id, body).await?))
}

/// `GET .../feedback`: an execution's ratings, oldest first.
#[utoipa::path(get, path = "/api/v1/executions/{id}/feedback", tag = "executions", params(("id" = String, Path)), responses((status = 200, description = "Ratings", body = opsbook_api::Items<opsbook_api::FeedbackDoc>), (status = 404, description = "Unknown execution", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn feedback(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<opsbook_api::Items<opsbook_api::FeedbackDoc>>> {
    ctx.require(&st, Perm::Read, &id).await?;
    let exec = st.store.execution(&id).await?;
    let items = st.store.feedback(&exec.id).await?.iter().map(opsbook_api::FeedbackDoc::from).collect();
    Ok(Json(opsbook_api::Items { items }))
}

/// `POST /api/v1/runbooks/{name}/reviews {note}`: the newest version was reviewed; the
/// next review is due `review.every` from today.
#[utoipa::path(post, path = "/api/v1/runbooks/{name}/reviews", tag = "runbooks", params(("name" = String, Path)), request_body = opsbook_api::ReviewIn, responses((status = 200, description = "Review recorded", body = opsbook_api::ReviewDoc), (status = 400, description = "No note", body = crate::openapi::ErrorBody), (status = 404, description = "Unknown runbook", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn add_review(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<opsbook_api::ReviewIn>,
) -> ApiResult<Json<opsbook_api::ReviewDoc>> {
    ctx.require(&st, Perm::Author, &name).await?;
    Ok(Json(service::quality::review(&st, &ctx, &name, body.note).await?))
}

/// `GET /api/v1/runbooks/{name}/reviews`: its review history, oldest first.
#[utoipa::path(get, path = "/api/v1/runbooks/{name}/reviews", tag = "runbooks", params(("name" = String, Path)), responses((status = 200, description = "Reviews", body = opsbook_api::Items<opsbook_api::ReviewDoc>), (status = 404, description = "Unknown runbook", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn reviews(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> ApiResult<Json<opsbook_api::Items<opsbook_api::ReviewDoc>>> {
    ctx.require(&st, Perm::Read, &name).await?;
    let entry = st.store.registry_entry(&name).await?;
    let items = st.store.reviews(Some(&entry.name)).await?.iter().map(opsbook_api::ReviewDoc::from).collect();
    Ok(Json(opsbook_api::Items { items }))
}
