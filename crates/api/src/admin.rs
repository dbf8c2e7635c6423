//! Tokens, the audit trail and who the caller is.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub user: String,
    /// Built-in roles: viewer, operator, approver, author, admin.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Other names that approval steps (`role:NAME`) and policies use.
    #[serde(default)]
    pub labels: Vec<String>,
    /// A duration such as 30d; none: the token does not expire.
    pub expires_in: Option<String>,
}

/// An API token as the API shows it: never its secret (nor its hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub user: String,
    pub roles: Vec<String>,
    #[schema(value_type = String, format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    #[serde(with = "crate::rfc3339")]
    pub created_at: i64,
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    #[serde(default, with = "crate::rfc3339::option")]
    pub expires_at: Option<i64>,
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    #[serde(default, with = "crate::rfc3339::option")]
    pub revoked_at: Option<i64>,
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    #[serde(default, with = "crate::rfc3339::option")]
    pub last_used_at: Option<i64>,
}

impl From<opsbook_store::Token> for TokenInfo {
    fn from(t: opsbook_store::Token) -> TokenInfo {
        TokenInfo {
            id: t.id,
            user: t.user,
            roles: t.roles,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            last_used_at: t.last_used_at,
        }
    }
}

/// A new token: `token` is the secret, shown here once and stored nowhere.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    pub token: String,
}

/// `DELETE /api/v1/tokens/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    pub id: String,
    pub revoked: bool,
}

/// One record of the hash-chained audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    #[schema(value_type = String, format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    #[serde(with = "crate::rfc3339")]
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub request_id: String,
    #[schema(value_type = Object)]
    pub details: Value,
    pub prev_hash: String,
    pub hash: String,
}

impl From<opsbook_store::AuditRecord> for AuditEntry {
    fn from(r: opsbook_store::AuditRecord) -> AuditEntry {
        AuditEntry {
            seq: r.seq,
            at: r.at,
            actor: r.actor,
            action: r.action,
            target: r.target,
            request_id: r.request_id,
            details: r.details,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

/// `GET /api/v1/whoami`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Whoami {
    pub user: String,
    pub roles: Vec<String>,
    /// The id of the token the request carried.
    pub token: String,
}
