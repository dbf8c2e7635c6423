//! Schedules created through the API (a runbook's own come with each published version).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use opsbook_api::{Deleted, Items, NewSchedule, Schedule};
use opsbook_store::{ScheduleRecord, ServerStore, now_ms};
use serde_json::{Value, json};

use crate::auth::{Ctx, Perm};
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::scheduler::{Refused, next_run, timezone};
use crate::service::to_value;
use crate::state::AppState;

#[utoipa::path(post, path = "/api/v1/schedules", operation_id = "createSchedule", tag = "schedules", request_body = NewSchedule, responses((status = 201, description = "The schedule with its next run", body = Schedule), (status = 400, description = "Bad cron, time zone or parameters", body = crate::openapi::ErrorBody), (status = 409, description = "The runbook is a draft or archived", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn create(
    State(st): State<AppState>,
    ctx: Ctx,
    ApiJson(b): ApiJson<NewSchedule>,
) -> ApiResult<(StatusCode, Json<Schedule>)> {
    let rid = ctx.request_id.clone();
    ctx.require(&st, Perm::Run, &b.runbook).await?;
    opsbook_core::schedule::check_cron_fires(&b.cron).map_err(|e| ApiError::field("cron", e))?;
    let tz = b.timezone.unwrap_or_else(|| "UTC".into());
    timezone(&tz).map_err(|e| ApiError::field("timezone", e))?;
    let overlap = b.overlap.unwrap_or_else(|| "skip".into());
    let missed = b.missed.unwrap_or_else(|| "skip".into());
    if overlap != "skip" && overlap != "queue" {
        return Err(ApiError::field("overlap", format!("overlap must be skip or queue, not `{overlap}`")));
    }
    if missed != "skip" && missed != "run_once" {
        return Err(ApiError::field("missed", format!("missed must be skip or run_once, not `{missed}`")));
    }
    let entry = st.store.registry_entry(&b.runbook).await?;
    match entry.status.as_str() {
        "active" | "deprecated" => {}
        "draft" => {
            return Err(ApiError::conflict(format!(
                "runbook `{}` is a draft, and drafts do not run: make it active \
                 (POST /api/v1/runbooks/{}/lifecycle {{\"status\": \"active\"}}) before scheduling it",
                b.runbook, b.runbook
            )));
        }
        other => {
            return Err(ApiError::conflict(format!(
                "runbook `{}` is {other} and can never run again, so it cannot be scheduled",
                b.runbook
            )));
        }
    }
    let (published, _) = st.store.registry_version(&b.runbook, &entry.latest_version).await?;
    let rb = st.engine.stored_runbook(&published.sha256).await?;
    // Secrets are never stored, and a schedule is stored: no secret value goes in one,
    // required or not (it would sit in clear in the schedule and its audit record).
    if let Some(p) = rb.params.iter().find(|p| p.is_secret() && b.params.contains_key(&p.name)) {
        return Err(ApiError::bad_request(format!(
            "parameter `{}` is a secret: secrets are never stored, so they cannot be scheduled",
            p.name
        ))
        .with_details(json!({ "param": p.name })));
    }
    if let Some(p) = rb.params.iter().find(|p| p.is_secret() && p.spec.required) {
        return Err(ApiError::bad_request(format!(
            "this runbook needs the secret parameter `{}`, and secrets cannot be scheduled",
            p.name
        ))
        .with_details(json!({ "param": p.name })));
    }
    crate::scheduler::may_schedule(&st, &ctx, &rb, &b.params, "this schedule").await?;
    let mut s = ScheduleRecord {
        id: opsbook_store::id::new_id(),
        runbook: b.runbook,
        source: "api".into(),
        cron: b.cron,
        timezone: tz,
        params: Value::Object(b.params),
        overlap,
        missed,
        created_by: ctx.user().to_string(),
        created_at: now_ms(),
        next_run_at: None,
        last_run_at: None,
        last_result: None,
        roles: Some(ctx.principal.roles.clone()),
    };
    s.next_run_at = next_run(&s, now_ms());
    if s.next_run_at.is_none() {
        // Valid cron that matched once, e.g. with a year gone by (`0 0 0 1 1 * 2020`).
        return Err(ApiError::field("cron", format!("cron pattern `{}` never fires again", s.cron)));
    }
    st.store.create_schedule(&s).await?;
    let doc = Schedule::from(s);
    st.audit(ctx.user(), "schedule.create", &doc.id, &rid, to_value(&doc)).await;
    Ok((StatusCode::CREATED, Json(doc)))
}

#[utoipa::path(get, path = "/api/v1/schedules", operation_id = "listSchedules", tag = "schedules", responses((status = 200, description = "All schedules", body = Items<Schedule>), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn list(State(st): State<AppState>, ctx: Ctx) -> ApiResult<Json<Items<Schedule>>> {
    ctx.require(&st, Perm::Read, "schedules").await?;
    Ok(Json(Items { items: st.store.schedules().await?.into_iter().map(Schedule::from).collect() }))
}

#[utoipa::path(delete, path = "/api/v1/schedules/{id}", operation_id = "deleteSchedule", tag = "schedules", params(("id" = String, Path)), responses((status = 200, description = "Deleted", body = Deleted), (status = 404, description = "Unknown schedule", body = crate::openapi::ErrorBody), (status = 409, description = "A runbook's own schedule: it changes with the runbook", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token", body = crate::openapi::ErrorBody), (status = 403, description = "Not allowed", body = crate::openapi::ErrorBody)), security(("token" = [])))]
pub async fn delete(State(st): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Deleted>> {
    let rid = ctx.request_id.clone();
    ctx.require(&st, Perm::Run, &id).await?;
    // A unique prefix of 4 or more characters names a schedule, as it names an execution.
    let all = st.store.schedules().await?;
    let id = match all.iter().find(|s| s.id == id) {
        Some(s) => s.id.clone(),
        None if id.len() >= 4 => {
            let found: Vec<&str> = all.iter().filter(|s| s.id.starts_with(&id)).map(|s| s.id.as_str()).collect();
            match found.as_slice() {
                [one] => one.to_string(),
                [] => id,
                many => {
                    return Err(ApiError::bad_request(format!(
                        "`{id}` names {} schedules ({}): give more of the id",
                        many.len(),
                        many.join(", ")
                    )));
                }
            }
        }
        None => id,
    };
    // A runbook's own schedule is part of its published version: a new version changes it.
    if let Some(own) = all.iter().find(|s| s.id == id && s.source != "api") {
        return Err(ApiError::conflict(format!(
            "schedule `{id}` is runbook `{}`'s own (`schedules:` in its YAML): publish a version without it, \
             or archive the runbook",
            own.runbook
        )));
    }
    // Its creator may stop it; anyone else needs what creating it would (its policies).
    let others =
        |s: &&ScheduleRecord| !crate::auth::same_user(&s.created_by, ctx.user()) && !ctx.principal.has_role("admin");
    if let Some(s) = all.iter().filter(others).find(|s| s.id == id) {
        let entry = st.store.registry_entry(&s.runbook).await?;
        let (published, _) = st.store.registry_version(&s.runbook, &entry.latest_version).await?;
        let rb = st.engine.stored_runbook(&published.sha256).await?;
        let values = s.params.as_object().cloned().unwrap_or_default();
        let refused = match crate::scheduler::policy_refusal(&st, &ctx, &rb, &values).await {
            Some(Refused::Roles(roles)) => {
                format!("deleting {}'s schedule of `{}` needs one of the roles {roles}", s.created_by, s.runbook)
            }
            Some(Refused::Child(why)) => why,
            None => String::new(),
        };
        if !refused.is_empty() {
            return Err(crate::scheduler::denied(&st, &ctx, &id, refused).await);
        }
    }
    st.store.delete_schedule(&id).await?;
    st.audit(ctx.user(), "schedule.delete", &id, &rid, json!({})).await;
    Ok(Json(Deleted { id, deleted: true }))
}
