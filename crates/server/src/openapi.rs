//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{admin, analytics, bundles, executions, gates, health, quality, runbooks, schedules, triggers};

pub use opsbook_api::{ErrorBody, ErrorDetail};

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("obk_<id>_<secret>").build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "opsbook", description = "Runbook automation: registry, executions, approvals, schedules, audit."),
    paths(
        health::healthz,
        health::readyz,
        runbooks::publish,
        runbooks::list,
        runbooks::get,
        runbooks::versions,
        runbooks::version,
        runbooks::diff,
        runbooks::lifecycle,
        bundles::upload,
        bundles::download,
        executions::submit,
        executions::list,
        executions::get,
        executions::logs,
        executions::events,
        executions::cancel,
        executions::resume,
        executions::rollback,
        executions::approve,
        quality::confirm,
        quality::add_feedback,
        quality::feedback,
        quality::add_review,
        quality::reviews,
        schedules::create,
        schedules::list,
        schedules::delete,
        admin::create_token,
        admin::list_tokens,
        admin::revoke_token,
        admin::audit,
        admin::whoami,
        analytics::analytics,
        gates::check,
        gates::override_gate,
        triggers::fire,
        spec,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerToken)
)]
pub struct ApiDoc;

/// `GET /api/v1/openapi.json` (no token: the document describes, it does not reveal).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health", responses((status = 200, description = "This document")))]
pub async fn spec() -> axum::Json<serde_json::Value> {
    axum::Json(document())
}

pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
    doc["info"]["version"] = env!("CARGO_PKG_VERSION").into();
    doc
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The committed `docs/openapi.json` is what the code generates
    /// (`OPSBOOK_BLESS=1 cargo test -p opsbook-server` rewrites it).
    #[test]
    fn committed_document_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let generated = serde_json::to_string_pretty(&super::document()).unwrap() + "\n";
        if std::env::var_os("OPSBOOK_BLESS").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(committed == generated, "docs/openapi.json is stale: run OPSBOOK_BLESS=1 cargo test -p opsbook-server");
        assert_eq!(super::document()["openapi"], "3.1.0");
    }

    /// Every route the router serves is documented, and every documented path is routed.
    #[test]
    fn every_route_is_documented() {
        let source = include_str!("routes/mod.rs");
        let mut routed = BTreeSet::new();
        for part in source.split(".route(").skip(1) {
            // `.route("PATH", METHODS)`, on one line or spread over a few.
            let part = part.trim_start().trim_start_matches('"');
            let path = &part[..part.find('"').unwrap()];
            let rest = &part[part.find(',').unwrap()..];
            // Up to the next call in the chain (`.fallback(…)` after the last route).
            let rest = &rest[..rest.find("\n        .").unwrap_or(rest.len())];
            for method in ["get", "post", "put", "delete"] {
                if rest.contains(&format!("{method}(")) {
                    routed.insert(format!("{method} {path}"));
                }
            }
        }
        let doc = super::document();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert(format!("{method} {path}"));
            }
        }
        assert_eq!(routed, documented);
    }
}
