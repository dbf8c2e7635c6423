//! Bundles: the files published with a runbook version, stored by their SHA-256.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use opsbook_api::BundleStored;
use opsbook_core::bundle::{Bundle, digest};
use opsbook_store::ServerStore;
use serde_json::json;

use crate::auth::{Ctx, Perm};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// A bundle's name: 64 lowercase hexadecimal digits.
pub fn check_sha(sha256: &str) -> ApiResult<()> {
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "`{}` is not a bundle's SHA-256 (64 lowercase hexadecimal digits)",
            crate::limits::bounded(sha256, 80)
        )))
    }
}

/// `PUT /api/v1/bundles/{sha256}` (authors): stores a bundle, checked whole (its digest,
/// every path inside it, its size) before anything is kept.
#[utoipa::path(put, path = "/api/v1/bundles/{sha256}", tag = "runbooks", params(("sha256" = String, Path)), request_body(content = Vec<u8>, content_type = "application/vnd.opsbook.bundle", description = "The canonical bundle encoding (see docs/bundles.md)"), responses((status = 201, description = "Stored", body = BundleStored), (status = 200, description = "Stored already", body = BundleStored), (status = 400, description = "Not a bundle, a path that would leave it, or another digest", body = crate::openapi::ErrorBody), (status = 413, description = "Larger than max_bundle_bytes", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn upload(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(sha256): Path<String>,
    req: Request,
) -> ApiResult<(StatusCode, Json<BundleStored>)> {
    ctx.require(&st, Perm::Author, "runbooks").await?;
    check_sha(&sha256)?;
    let max = st.config.max_bundle_bytes;
    let bytes = axum::body::to_bytes(req.into_body(), max).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the bundle is larger than this server takes ({max} bytes, max_bundle_bytes); leave out what the \
                 runbook does not need with an .opsbookignore beside it"
            ),
        )
    })?;
    let actual = digest(&bytes);
    if actual != sha256 {
        return Err(ApiError::bad_request(format!(
            "the body's SHA-256 is {actual}, not the {sha256} named in the path"
        )));
    }
    let bundle = Bundle::decode(&bytes).map_err(ApiError::bad_request)?;
    let stored = BundleStored { sha256: sha256.clone(), files: bundle.len(), size: bytes.len() };
    if st.store.bundle(&sha256).await?.is_some() {
        return Ok((StatusCode::OK, Json(stored)));
    }
    st.store.save_bundle(&sha256, &bytes).await?;
    let details = json!({ "files": stored.files, "size": stored.size });
    st.audit(ctx.user(), "bundle.upload", &sha256, &ctx.request_id, details).await;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// `GET /api/v1/bundles/{sha256}`: a stored bundle's bytes.
#[utoipa::path(get, path = "/api/v1/bundles/{sha256}", tag = "runbooks", params(("sha256" = String, Path)), responses((status = 200, description = "The bundle", content_type = "application/vnd.opsbook.bundle"), (status = 404, description = "No such bundle", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn download(State(st): State<AppState>, ctx: Ctx, Path(sha256): Path<String>) -> ApiResult<Response> {
    ctx.require(&st, Perm::Read, "runbooks").await?;
    check_sha(&sha256)?;
    let bytes =
        st.store.bundle(&sha256).await?.ok_or_else(|| ApiError::not_found(format!("bundle {sha256} not found")))?;
    Ok(([(header::CONTENT_TYPE, "application/vnd.opsbook.bundle")], Body::from(bytes)).into_response())
}
