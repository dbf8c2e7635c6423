//! Event-driven runs: `POST /api/v1/triggers/{name}` starts the runbook that declares the
//! trigger, called by an EventBridge API destination or any webhook (GitHub,
//! Alertmanager). The caller proves itself with the trigger's own token or HMAC
//! signature (not an API token); the event's id makes a repeated delivery start nothing
//! new; every call is audited.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use opsbook_core::trigger::{Auth, Trigger};
use opsbook_store::{RunbookQuery, ServerStore};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::service::AuditAs;
use crate::state::AppState;

/// Largest event accepted (EventBridge sends at most 256 KB).
const MAX_EVENT: usize = 1 << 20;

/// `POST /api/v1/triggers/{name}`: queues an execution of the runbook declaring trigger `name`.
#[utoipa::path(post, path = "/api/v1/triggers/{name}", tag = "executions", params(("name" = String, Path)), request_body(content = Value, description = "The event (JSON)"), responses((status = 202, description = "Queued", body = opsbook_api::Triggered), (status = 200, description = "An earlier event with this id queued it (repeated)", body = opsbook_api::Triggered), (status = 400, description = "The event is not JSON, a signed event has no id, or the parameters it gives are invalid", body = crate::openapi::ErrorBody), (status = 401, description = "Unknown trigger, or wrong token or signature", body = crate::openapi::ErrorBody), (status = 409, description = "The runbook does not run now", body = crate::openapi::ErrorBody)))]
pub async fn fire(
    State(st): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> ApiResult<(StatusCode, Json<opsbook_api::Triggered>)> {
    let (parts, body) = req.into_parts();
    let rid = crate::state::request_id(&parts.headers);
    let body = axum::body::to_bytes(body, MAX_EVENT).await.map_err(|_| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("an event is at most {MAX_EVENT} bytes"))
    })?;
    // An unknown name and wrong credentials answer alike (the audit record tells them
    // apart), so that names cannot be found by asking.
    let mut accepted = Vec::new();
    let mut why = "unknown trigger";
    for (runbook, trigger) in find(&st, &name).await? {
        match authentic(&trigger.auth, &parts.headers, &body) {
            Ok(()) => accepted.push((runbook, trigger)),
            Err(e) => why = e,
        }
    }
    let (runbook, trigger) = match accepted.len() {
        0 => {
            if let Some(limited) = crate::auth::failed(&st, &parts, &format!("trigger: {why}")).await {
                return Err(limited);
            }
            let name = crate::limits::bounded(&name, 100);
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                format!("trigger `{name}`: unknown, or not these credentials"),
            ));
        }
        1 => accepted.remove(0),
        _ => {
            let names: Vec<&str> = accepted.iter().map(|(n, _)| n.as_str()).collect();
            return Err(ApiError::conflict(format!(
                "trigger `{name}` is declared by runbooks {}: rename it in all but one",
                names.join(" and ")
            )));
        }
    };
    let event: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the event is not JSON: {e}")))?;
    // A signed event's id must come from what was signed: a header could be changed to
    // replay it. A token's caller may name it in a header.
    let event_id = match &trigger.auth {
        Auth::Hmac { .. } => trigger.event_id(&event),
        Auth::Token { .. } => trigger
            .event_id(&event)
            .or_else(|| ["x-github-delivery", "idempotency-key"].iter().find_map(|h| header(&parts.headers, h))),
    };
    if event_id.is_none() && matches!(trigger.auth, Auth::Hmac { .. }) {
        let details = json!({ "runbook": runbook, "error": "no event id" });
        st.audit(&format!("trigger:{name}"), "trigger.refused", &runbook, &rid, details).await;
        return Err(ApiError::bad_request(format!(
            "trigger `{name}`: the signed event has no id at {} (set `event_id`): without one a captured event could be replayed",
            trigger.event_id
        )));
    }
    // The event's id names the execution: a repeated delivery answers the first one.
    let key = event_id.as_ref().map(|id| {
        let key = format!("trigger:{name}:{id}");
        if key.len() > crate::service::MAX_IDEMPOTENCY_KEY {
            format!("trigger:{name}:{}", opsbook_core::sha256_hex(id.as_bytes()))
        } else {
            key
        }
    });
    let who = Principal { user: format!("trigger:{name}"), roles: vec!["trigger".into()], token_id: String::new() };
    let mut fired = serde_json::Map::new();
    fired.insert("event_id".into(), json!(event_id));
    let audit = AuditAs { actor: &who.user, action: "trigger.fired", request_id: &rid, details: fired };
    let queued =
        crate::service::enqueue(&st, &runbook, None, trigger.inputs(&event), &who, key.as_deref(), audit).await;
    match queued {
        Ok(crate::service::Queued { id, repeated, version, masked, .. }) => {
            if repeated {
                let details = json!({ "runbook": runbook, "version": version, "event_id": event_id, "params": masked });
                st.audit(&who.user, "trigger.repeated", &id, &rid, details).await;
            }
            let doc = opsbook_api::Triggered { execution_id: id, runbook, repeated, event_id };
            Ok((if repeated { StatusCode::OK } else { StatusCode::ACCEPTED }, Json(doc)))
        }
        Err(e) => {
            let details =
                json!({ "runbook": runbook, "event_id": event_id, "status": e.status.as_u16(), "error": e.message });
            st.audit(&who.user, "trigger.refused", &runbook, &rid, details).await;
            Err(e)
        }
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
}

/// The runbooks (active or deprecated, their latest versions) declaring trigger `name`.
async fn find(st: &AppState, name: &str) -> ApiResult<Vec<(String, Trigger)>> {
    let mut found = Vec::new();
    for entry in st.store.registry(&RunbookQuery::default()).await? {
        if entry.status != "active" && entry.status != "deprecated" {
            continue;
        }
        let rb = st.engine.stored_runbook(&entry.latest_sha256).await?;
        if let Some(t) = rb.triggers.iter().find(|t| t.name == name) {
            found.push((entry.name.clone(), t.clone()));
        }
    }
    Ok(found)
}

/// Whether the call carries the trigger's token or a valid signature of its body.
fn authentic(auth: &Auth, headers: &HeaderMap, body: &[u8]) -> Result<(), &'static str> {
    match auth {
        Auth::Token { sha256 } => {
            // The scheme is case-insensitive (RFC 9110), as on the rest of the API.
            let sent = header(headers, "authorization").and_then(|a| {
                let (scheme, token) = a.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
            });
            let Some(token) = sent else { return Err("no bearer token") };
            let digest = opsbook_core::sha256_hex(token.trim().as_bytes());
            if bool::from(digest.as_bytes().ct_eq(sha256.as_bytes())) { Ok(()) } else { Err("wrong token") }
        }
        Auth::Hmac { env } => {
            let Some(key) = std::env::var(env).ok().filter(|k| !k.is_empty()) else {
                tracing::error!(env, "a trigger's HMAC key variable is not set on this server: its calls are refused");
                return Err("the server has no key for this trigger's signatures");
            };
            let sent = header(headers, "x-hub-signature-256").or_else(|| header(headers, "x-opsbook-signature"));
            let Some(sig) = sent.as_deref().and_then(|s| s.strip_prefix("sha256=")).map(str::to_ascii_lowercase) else {
                return Err("no signature (X-Hub-Signature-256 or X-Opsbook-Signature: sha256=HEX)");
            };
            let expected = hex::encode(crate::notify::hmac_sha256(key.as_bytes(), body));
            if bool::from(sig.as_bytes().ct_eq(expected.as_bytes())) { Ok(()) } else { Err("wrong signature") }
        }
    }
}
