//! Manual steps' confirmations, reviews of runbooks and feedback on executions.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time;

fn yes() -> bool {
    true
}

/// `POST /api/v1/executions/{id}/confirmations`: the manual step (or manual rollback)
/// the execution waits on was done, every checklist item with it, or could not be.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Confirm {
    /// The step, when more than one could be meant (default: the one that waits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// false: it could not be done; the step fails (or the rollback, for a manual rollback).
    #[serde(default = "yes")]
    pub done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// For a manual rollback: secret parameters the rollbacks after it use (an execution
    /// that ended keeps none), as for `POST …/rollback`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub params: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A confirmation was recorded.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Confirmed {
    pub execution: String,
    pub step: String,
    /// `step`, or `rollback` for a manual rollback.
    pub phase: String,
    pub done: bool,
    pub by: String,
    pub note: Option<String>,
    /// The checklist items confirmed (rendered, secrets masked).
    pub checklist: Vec<String>,
    /// What happens now: `queued` (the execution goes on) or `rolling_back`.
    pub next: String,
}

/// `POST /api/v1/executions/{id}/feedback`: a rating of a finished execution.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackIn {
    /// 1 (poor) to 5 (great).
    pub rating: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// One person's rating of an execution.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeedbackDoc {
    pub execution: String,
    pub user: String,
    pub rating: u8,
    pub comment: Option<String>,
    /// RFC 3339.
    #[schema(format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    pub at: Option<String>,
}

impl From<&opsbook_store::Feedback> for FeedbackDoc {
    fn from(f: &opsbook_store::Feedback) -> FeedbackDoc {
        FeedbackDoc {
            execution: f.execution_id.clone(),
            user: f.user.clone(),
            rating: f.rating,
            comment: f.comment.clone(),
            at: time(Some(f.at)),
        }
    }
}

/// `POST /api/v1/runbooks/{name}/reviews`: the runbook's newest version was reviewed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewIn {
    /// What was checked, found or changed.
    pub note: String,
}

/// A review of a runbook: who read which version, when, what they noted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewDoc {
    pub name: String,
    pub version: String,
    pub reviewer: String,
    pub note: String,
    /// RFC 3339.
    #[schema(format = DateTime, example = "2026-12-02T09:14:03.512Z")]
    pub at: Option<String>,
    /// When the next review is due (YYYY-MM-DD), when the runbook sets `review.every`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = Date, example = "2026-12-31")]
    pub next_due: Option<String>,
}

impl From<&opsbook_store::Review> for ReviewDoc {
    fn from(r: &opsbook_store::Review) -> ReviewDoc {
        ReviewDoc {
            name: r.name.clone(),
            version: r.version.clone(),
            reviewer: r.reviewer.clone(),
            note: r.note.clone(),
            at: time(Some(r.at)),
            next_due: None,
        }
    }
}
