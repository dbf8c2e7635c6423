//! The JSON document describing an execution (`--output json`, `show`, `history`).

use opsbook_store::{Execution, StepRecord, Store};
use serde_json::{Value, json};

use crate::Result;

/// RFC 3339 time of an epoch-ms value.
pub fn time(ms: Option<i64>) -> Value {
    match ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok()) {
        Some(t) => Value::from(t.to_string()),
        None => Value::Null,
    }
}

/// The summary of an execution, without steps.
pub fn summary(e: &Execution) -> Value {
    json!({
        "id": e.id,
        "runbook": { "name": e.runbook_name, "version": e.runbook_version, "sha256": e.runbook_sha256 },
        "status": e.status.as_str(),
        "actor": e.actor,
        "created_at": time(Some(e.created_at)),
        "started_at": time(e.started_at),
        "finished_at": time(e.finished_at),
        "duration_ms": e.duration_ms(),
        "params": e.params,
        "error": e.error,
    })
}

/// The full document: summary, steps and rollback.
pub fn document(e: &Execution, steps: &[StepRecord]) -> Value {
    let mut doc = summary(e);
    let step_docs: Vec<Value> = steps
        .iter()
        .map(|s| {
            json!({
                "id": s.step_id,
                "name": s.name,
                "kind": s.kind,
                "status": s.status.as_str(),
                "attempts": s.attempts,
                "exit_code": s.exit_code,
                "duration_ms": s.duration_ms(),
                "outputs": s.outputs,
                "error": s.error,
            })
        })
        .collect();
    let rolled: Vec<Value> = steps
        .iter()
        .rev()
        .filter_map(|s| {
            let status = s.rollback_status?;
            Some(json!({ "id": s.step_id, "status": status.as_str(), "exit_code": s.rollback_exit_code, "error": s.rollback_error }))
        })
        .collect();
    doc["steps"] = Value::Array(step_docs);
    doc["rollback"] = json!({
        "performed": e.rollback_status.is_some(),
        "status": e.rollback_status.map(|s| s.as_str()),
        "steps": rolled,
    });
    doc
}

/// Loads and builds the full document of a stored execution.
pub async fn load<S: Store>(store: &S, id: &str) -> Result<Value> {
    let e = store.execution(id).await?;
    let steps = store.steps(&e.id).await?;
    Ok(document(&e, &steps))
}
