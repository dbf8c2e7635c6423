//! The HTTP API's wire types: what the server sends and accepts, and what its clients
//! (the CLI's `--server` mode, and next the web UI) read. Serde gives the JSON, utoipa
//! the OpenAPI schema, so the document and the code cannot drift apart.
//!
//! Store records are never the wire format: each type here is built from them
//! (`From`), so a change of storage does not change the API.
#![forbid(unsafe_code)]

mod admin;
mod executions;
mod quality;
mod registry;

pub use admin::*;
pub use executions::*;
pub use quality::*;
pub use registry::*;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every refusal: `{"error": {"code", "message", "details"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`, `invalid_parameters`.
    pub code: String,
    pub message: String,
    /// Per-problem details (`param`, or `line` and `column`, with a `message`), or null.
    #[schema(value_type = Option<Object>)]
    #[serde(default)]
    pub details: Option<serde_json::Value>,
}

/// `{"items": [...]}`: a list answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// RFC 3339 time of an epoch-ms value (null when there is none).
pub fn time(ms: Option<i64>) -> Option<String> {
    ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok()).map(|t| t.to_string())
}

/// `GET /healthz`, `GET /readyz`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` (`/healthz`); `ready` or `database unavailable` (`/readyz`).
    pub status: String,
}
