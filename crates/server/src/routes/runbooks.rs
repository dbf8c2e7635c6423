//! The runbook registry: immutable versions, lifecycle, search, diff.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use opsbook_api::{
    Items, LifecycleChange, LifecycleChanged, LifecycleEvent, PublishResult, RunbookDoc, RunbookEntry, VersionDoc,
    VersionEntry,
};
use opsbook_store::{Publish, Published, RegistryEntry, RunbookQuery, ServerStore, now_ms};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Ctx, Perm};
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult, ApiText};
use crate::service::to_value;
use crate::state::AppState;

/// How a publish's test run went, as its answer says.
fn tests_doc(results: &[opsbook_engine::suite::CaseResult]) -> opsbook_api::TestsRun {
    let failed: Vec<opsbook_api::FailedTest> = results
        .iter()
        .filter(|r| !r.passed())
        .map(|r| opsbook_api::FailedTest { test: r.name.clone(), failures: r.failures.clone() })
        .collect();
    opsbook_api::TestsRun { passed: results.len() - failed.len(), failed }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PublishQuery {
    #[serde(default)]
    dry_run: bool,
    /// The SHA-256 of the bundle of files published with it (`PUT /api/v1/bundles/{sha256}` first).
    bundle: Option<String>,
}

/// What publishing would do, without doing it (`?dry_run=true`, used by `opsbook push`
/// to check every file before publishing any): the rule every backend applies, on what
/// is published now.
async fn would_publish(st: &AppState, p: &Publish) -> ApiResult<Published> {
    let (name, version) = (&p.entry.name, &p.entry.latest_version);
    let same = match st.store.registry_version(name, version).await {
        Ok((v, _)) => Some((v.sha256, v.bundle_sha256)),
        Err(opsbook_store::Error::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let latest = match st.store.registry_entry(name).await {
        Ok(e) => Some(e.latest_version),
        Err(opsbook_store::Error::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let same = same.as_ref().map(|(sha, bundle)| (sha.as_str(), bundle.as_deref()));
    Ok(match opsbook_store::publish_rule(p, same, latest.as_deref())? {
        Some(outcome) => outcome,
        None if latest.is_some() => Published::Updated,
        None => Published::Created,
    })
}

/// `POST /api/v1/runbooks` with a YAML body: validated like `opsbook validate`.
#[utoipa::path(post, path = "/api/v1/runbooks", tag = "runbooks", params(PublishQuery), request_body(content = String, content_type = "application/yaml", description = "The runbook document"), responses((status = 201, description = "Created", body = PublishResult), (status = 200, description = "Updated, unchanged, or the dry-run outcome", body = PublishResult), (status = 400, description = "Invalid runbook: details carry line and column", body = crate::openapi::ErrorBody), (status = 409, description = "Version not newer, or a published version with other content", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn publish(
    State(st): State<AppState>,
    ctx: Ctx,
    ApiQuery(pq): ApiQuery<PublishQuery>,
    ApiText(body): ApiText,
) -> ApiResult<Response> {
    let rid = ctx.request_id.clone();
    ctx.require(&st, Perm::Author, "runbooks").await?;
    let rb = opsbook_core::parse(&body).map_err(|diags| {
        let details: Vec<Value> = diags
            .iter()
            .map(|d| json!({ "line": d.pos.map(|p| p.line), "column": d.pos.map(|p| p.column), "message": d.message }))
            .collect();
        let first = diags.first().map(ToString::to_string).unwrap_or_default();
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_runbook", format!("invalid runbook: {first}"))
            .with_details(Value::Array(details))
    })?;
    // Every named gate must exist here: a typo would otherwise surface only at run time.
    // Held until the runbook is stored, so a gates-file reload cannot slip in between.
    let _gates_guard = st.gates_lock.lock().await;
    let gates = st.engine.config.gates.snapshot();
    let known: Vec<&str> = gates.keys().map(String::as_str).collect();
    let unknown = opsbook_core::gate::unknown_uses(&body, &known);
    if let Some(opsbook_core::gate::UnknownUse { step, name, meant, .. }) = unknown.first() {
        let hint = meant.as_ref().map(|m| format!(" (did you mean `{m}`?)")).unwrap_or_default();
        let details: Vec<Value> = unknown
            .iter()
            .map(|u| {
                let message = format!("step `{}`: no gate `{}` on this server", u.step, u.name);
                json!({ "line": u.pos.line, "column": u.pos.column, "message": message })
            })
            .collect();
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_runbook",
            format!("invalid runbook: step `{step}` uses gate `{name}`, which this server does not define (its gates_file){hint}"),
        )
        .with_details(Value::Array(details)));
    }
    // Runbooks it calls by name must not call it back.
    crate::calls::check_named_calls(&st.store, &rb)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_runbook", format!("invalid runbook: {e}")))?;
    if let Some(sha) = &pq.bundle {
        crate::routes::bundles::check_sha(sha).map_err(|e| e.with_details(json!({ "param": "bundle" })))?;
        if st.store.bundle(sha).await?.is_none() {
            return Err(ApiError::param(
                "bundle",
                format!("bundle {sha} is not on this server: upload it first (PUT /api/v1/bundles/{sha})"),
            ));
        }
    }
    for s in &rb.schedules {
        crate::scheduler::timezone(&s.timezone).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_runbook", format!("invalid runbook: schedules: {e}"))
        })?;
    }
    // Its own schedules run it on the publisher's authority, who must be allowed to.
    for (i, s) in rb.schedules.iter().enumerate() {
        let params = s.params.clone().into_iter().collect();
        let what = format!("schedule {} (`{}`)", i + 1, s.cron);
        crate::scheduler::may_schedule(&st, &ctx, &rb, &params, &what).await?;
    }
    // Its triggers run it whenever they are called: the publisher must be allowed to run
    // it (an author could otherwise run code through a trigger token of their own).
    if let Some(t) = rb.triggers.first()
        && !ctx.principal.can(crate::auth::Perm::Run)
    {
        let details = json!({ "needs": "run", "roles": ctx.principal.roles });
        st.audit(ctx.user(), "authz.denied", &rb.name, &ctx.request_id, details).await;
        return Err(ApiError::forbidden(format!(
            "trigger `{}` would run `{}` whenever it is called, and running it needs the {} role",
            t.name,
            rb.name,
            crate::auth::Perm::Run.roles()
        )));
    }
    // Its tests run on every publish; it may not be (or stay) active while they fail.
    let tests = crate::service::quality::run_tests(&st, &rb, pq.bundle.as_deref()).await?;
    let status = match st.store.registry_entry(&rb.name).await {
        Ok(e) => e.status,
        Err(_) => rb.status.as_str().to_string(),
    };
    let mut warnings = Vec::new();
    if status != rb.status.as_str() {
        warnings.push(format!(
            "metadata.status is `{}`, but only a first publish reads it: `{}` stays {status} (`opsbook lifecycle {} \
             STATUS` moves it)",
            rb.status.as_str(),
            rb.name,
            rb.name
        ));
    }
    if status == "active" {
        crate::service::quality::refuse_failing(&rb.name, &tests)?;
    }
    let steps_text = rb.steps.iter().map(|s| format!("{} {}", s.id, s.name)).collect::<Vec<_>>().join(" ");
    let entry = RegistryEntry {
        name: rb.name.clone(),
        status: rb.status.as_str().to_string(),
        latest_version: rb.version.to_string(),
        latest_sha256: rb.sha256.clone(),
        title: rb.title.clone(),
        description: rb.description.clone(),
        runbook_type: rb.runbook_type.as_str().to_string(),
        owner: rb.owner.clone(),
        tags: rb.tags.clone(),
        created_at: now_ms(),
        updated_at: now_ms(),
    };
    // Schedules made through the API run the newest version: say which it no longer fits.
    for s in st.store.schedules().await?.iter().filter(|s| s.source == "api" && s.runbook == rb.name) {
        if let Err(errors) = rb.check_params(&crate::scheduler::inputs(s)) {
            let why: Vec<String> = errors.iter().map(ToString::to_string).collect();
            warnings.push(format!("schedule {} will not start with this version: {}", s.id, why.join("; ")));
        }
    }
    // An archived runbook never runs again: a new version of it installs no schedules.
    let schedules = if status == "archived" {
        Vec::new()
    } else {
        crate::scheduler::runbook_schedules(&rb, ctx.user(), Some(&ctx.principal.roles), now_ms())
    };
    let publish = Publish {
        entry,
        content: body,
        steps_text,
        actor: ctx.user().to_string(),
        bundle_sha256: pq.bundle.clone(),
        schedules,
    };
    if pq.dry_run {
        let outcome = would_publish(&st, &publish).await?;
        let doc = PublishResult {
            name: rb.name.clone(),
            version: rb.version.to_string(),
            sha256: rb.sha256.clone(),
            result: outcome.as_str().into(),
            dry_run: true,
            bundle_sha256: pq.bundle,
            tests: tests_doc(&tests),
            warnings,
        };
        return Ok((StatusCode::OK, Json(doc)).into_response());
    }
    let outcome = st.store.publish(&publish).await?;
    let doc = PublishResult {
        name: rb.name.clone(),
        version: rb.version.to_string(),
        sha256: rb.sha256.clone(),
        result: outcome.as_str().into(),
        dry_run: false,
        bundle_sha256: pq.bundle,
        tests: tests_doc(&tests),
        warnings,
    };
    if outcome != Published::Unchanged {
        st.audit(ctx.user(), "runbook.publish", &rb.name, &rid, to_value(&doc)).await;
    }
    let status = if outcome == Published::Created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(doc)).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    q: Option<String>,
    #[serde(rename = "type")]
    runbook_type: Option<String>,
    tag: Option<String>,
    status: Option<String>,
    owner: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/runbooks", operation_id = "listRunbooks", tag = "runbooks", params(ListQuery), responses((status = 200, description = "Matching runbooks", body = Items<RunbookEntry>), (status = 400, description = "An unknown type or status", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn list(
    State(st): State<AppState>,
    ctx: Ctx,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Items<RunbookEntry>>> {
    ctx.require(&st, Perm::Read, "runbooks").await?;
    crate::service::check_registry_filters(q.runbook_type.as_deref(), q.status.as_deref())?;
    let items = st
        .store
        .registry(&RunbookQuery { q: q.q, runbook_type: q.runbook_type, tag: q.tag, status: q.status, owner: q.owner })
        .await?;
    Ok(Json(Items { items: items.into_iter().map(RunbookEntry::from).collect() }))
}

#[utoipa::path(get, path = "/api/v1/runbooks/{name}", operation_id = "getRunbook", tag = "runbooks", params(("name" = String, Path)), responses((status = 200, description = "The runbook and its lifecycle history", body = RunbookDoc), (status = 404, description = "Unknown runbook", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn get(State(st): State<AppState>, ctx: Ctx, Path(name): Path<String>) -> ApiResult<Json<RunbookDoc>> {
    ctx.require(&st, Perm::Read, &name).await?;
    let entry = st.store.registry_entry(&name).await?.into();
    let lifecycle = st.store.lifecycle_events(&name).await?.into_iter().map(LifecycleEvent::from).collect();
    Ok(Json(RunbookDoc { entry, lifecycle }))
}

#[utoipa::path(get, path = "/api/v1/runbooks/{name}/versions", tag = "runbooks", params(("name" = String, Path)), responses((status = 200, description = "Published versions, newest first", body = Items<VersionEntry>), (status = 404, description = "Unknown runbook", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn versions(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> ApiResult<Json<Items<VersionEntry>>> {
    ctx.require(&st, Perm::Read, &name).await?;
    let items = st.store.registry_versions(&name).await?.into_iter().map(VersionEntry::from).collect();
    Ok(Json(Items { items }))
}

#[utoipa::path(get, path = "/api/v1/runbooks/{name}/versions/{version}", tag = "runbooks", params(("name" = String, Path), ("version" = String, Path)), responses((status = 200, description = "One version with its exact text", body = VersionDoc), (status = 404, description = "Unknown version", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn version(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<VersionDoc>> {
    ctx.require(&st, Perm::Read, &name).await?;
    let (v, content) = st.store.registry_version(&name, &version).await?;
    Ok(Json(VersionDoc { version: v.into(), content }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    from: String,
    to: String,
}

/// `GET .../diff?from=1.0.0&to=1.1.0`: a unified diff of the two texts.
#[utoipa::path(get, path = "/api/v1/runbooks/{name}/diff", tag = "runbooks", params(("name" = String, Path), DiffQuery), responses((status = 200, description = "Unified diff", content_type = "text/x-diff"), (status = 404, description = "Unknown version", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn diff(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<DiffQuery>,
) -> ApiResult<Response> {
    ctx.require(&st, Perm::Read, &name).await?;
    let (va, a) = st.store.registry_version(&name, &q.from).await?;
    let (vb, b) = st.store.registry_version(&name, &q.to).await?;
    let (from, to) = (format!("{name} {}", q.from), format!("{name} {}", q.to));
    let mut text = crate::diff::unified(&a, &b, &from, &to, 3);
    if va.bundle_sha256 != vb.bundle_sha256 {
        let old = bundle_of(&st, va.bundle_sha256.as_deref()).await?;
        let new = bundle_of(&st, vb.bundle_sha256.as_deref()).await?;
        text.push_str(&crate::diff::bundles(&old, &new, &from, &to));
    }
    Ok(([(axum::http::header::CONTENT_TYPE, "text/x-diff; charset=utf-8")], text).into_response())
}

/// The files of a version (none: an empty bundle).
async fn bundle_of(st: &AppState, sha: Option<&str>) -> ApiResult<opsbook_core::bundle::Bundle> {
    let Some(sha) = sha else { return Ok(Default::default()) };
    let bytes = st.store.bundle(sha).await?.ok_or_else(|| ApiError::internal(format!("bundle {sha} is missing")))?;
    opsbook_core::bundle::Bundle::decode(&bytes).map_err(ApiError::internal)
}

#[utoipa::path(post, path = "/api/v1/runbooks/{name}/lifecycle", tag = "runbooks", params(("name" = String, Path)), request_body = LifecycleChange, responses((status = 200, description = "The recorded transition", body = LifecycleChanged), (status = 404, description = "Unknown runbook", body = crate::openapi::ErrorBody), (status = 400, description = "Unknown status or no reason", body = crate::openapi::ErrorBody), (status = 409, description = "Transition not allowed", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn lifecycle(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<LifecycleChange>,
) -> ApiResult<Json<LifecycleChanged>> {
    ctx.require(&st, Perm::Author, &name).await?;
    Ok(Json(crate::service::change_lifecycle(&st, &ctx, &name, &body.status, body.reason).await?))
}
