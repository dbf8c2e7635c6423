//! The scheduler: starts scheduled executions when they are due, as `schedule:<id>`.
//! `tick` takes the time as an argument, so tests drive it with any clock.

use std::time::Duration;

use opsbook_core::schedule::next_after;
use opsbook_store::{ScheduleRecord, ServerStore, now_ms};
use serde_json::json;
use tokio::sync::watch;

use crate::auth::{Perm, Principal};
use crate::error::ApiError;
use crate::service::AuditAs;
use crate::state::AppState;

/// A due time this far in the past means the server was down: the run was missed.
pub const MISSED_AFTER_MS: i64 = 60_000;

/// A time zone by its IANA name; an unknown one is named with a did-you-mean.
pub fn timezone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    opsbook_core::gate::timezone(Some(name))
}

/// The next run of a schedule after `after`, or `None` if it can never run.
pub fn next_run(s: &ScheduleRecord, after: i64) -> Option<i64> {
    let tz = timezone(&s.timezone).ok()?;
    next_after(&s.cron, &tz, after).ok()
}

/// The schedules a runbook defines (`spec.schedules`), as published by `actor` at `now`:
/// ids `NAME#1`, `NAME#2`…, each with its next run.
pub fn runbook_schedules(
    rb: &opsbook_core::Runbook,
    actor: &str,
    roles: Option<&[String]>,
    now: i64,
) -> Vec<ScheduleRecord> {
    rb.schedules
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut rec = ScheduleRecord {
                id: format!("{}#{}", rb.name, i + 1),
                runbook: rb.name.clone(),
                source: "runbook".into(),
                cron: s.cron.clone(),
                timezone: s.timezone.clone(),
                params: serde_json::to_value(&s.params).unwrap_or_default(),
                overlap: s.overlap.as_str().into(),
                missed: s.missed.as_str().into(),
                created_by: actor.to_string(),
                created_at: now,
                next_run_at: None,
                last_run_at: None,
                last_result: None,
                roles: roles.map(<[String]>::to_vec),
            };
            rec.next_run_at = next_run(&rec, now);
            rec
        })
        .collect()
}

/// Refuses a schedule that `ctx`'s caller may not set up: a schedule runs the runbook on
/// their authority, so they must be allowed to run it with these parameters, under its
/// policies and those of the runbooks it calls. `what` names the schedule in messages.
pub async fn may_schedule(
    state: &AppState,
    ctx: &crate::auth::Ctx,
    rb: &opsbook_core::Runbook,
    params: &serde_json::Map<String, serde_json::Value>,
    what: &str,
) -> Result<(), ApiError> {
    if !ctx.principal.can(Perm::Run) {
        let details = json!({ "needs": "run", "roles": ctx.principal.roles });
        state.audit(ctx.user(), "authz.denied", &rb.name, &ctx.request_id, details).await;
        return Err(ApiError::forbidden(format!(
            "{what} would run `{}` on your authority, and running it needs the {} role",
            rb.name,
            Perm::Run.roles()
        )));
    }
    let inputs = params.iter().map(|(k, v)| (k.clone(), opsbook_core::Input::Value(v.clone()))).collect();
    let checked = rb.check_params(&inputs).map_err(|e| crate::error::params_error(&e))?;
    let values = checked.values.into_iter().collect();
    let refused = match policy_refusal(state, ctx, rb, &values).await {
        Some(Refused::Roles(roles)) => {
            Some(format!("{what} runs `{}` like this, which needs one of the roles {roles}", rb.name))
        }
        Some(Refused::Child(why)) => Some(format!("{what}: {why}")),
        None => None,
    };
    match refused {
        Some(why) => Err(denied(state, ctx, &rb.name, why).await),
        None => Ok(()),
    }
}

/// Why the policies keep a schedule of `rb` with `values` from `ctx`'s caller.
pub enum Refused {
    /// The runbook's own: one of these roles is needed.
    Roles(String),
    /// Those of a runbook it calls, with the reason.
    Child(String),
}

/// The policies of `rb`, and of the runbooks it calls, that refuse `ctx`'s caller a
/// schedule of it with `values`.
pub async fn policy_refusal(
    state: &AppState,
    ctx: &crate::auth::Ctx,
    rb: &opsbook_core::Runbook,
    values: &serde_json::Map<String, serde_json::Value>,
) -> Option<Refused> {
    let policies = &state.config.policies;
    if let Some(p) = crate::policy::refusal(policies, &ctx.principal, &rb.name, &rb.tags, values) {
        return Some(Refused::Roles(p.roles.join(", ")));
    }
    crate::calls::check_child_policies(&state.store, policies, &ctx.principal, rb, values)
        .await
        .err()
        .map(Refused::Child)
}

/// A refusal, audited against `target`.
pub async fn denied(state: &AppState, ctx: &crate::auth::Ctx, target: &str, why: String) -> ApiError {
    let details = json!({ "policy": why, "roles": ctx.principal.roles });
    state.audit(ctx.user(), "authz.denied", target, &ctx.request_id, details).await;
    ApiError::forbidden(why)
}

/// Starts every schedule due at `now`; returns `(schedule id, what happened)`.
pub async fn tick(state: &AppState, now: i64) -> Vec<(String, String)> {
    let due = match state.store.due_schedules(now).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(%e, "cannot read due schedules");
            return Vec::new();
        }
    };
    let mut done = Vec::new();
    for s in due {
        let mut due_at = s.next_run_at.unwrap_or(now);
        let actor = format!("schedule:{}", s.id);
        // A run held back behind the previous one (`overlap: queue`) was looked at when it
        // was due: however long it waits, it is not missed.
        let held = s.last_run_at.is_some_and(|t| t >= due_at);
        if !held && now - due_at > MISSED_AFTER_MS {
            // The server was down. A time it was due within the last minute is not missed.
            if let Some(recent) = latest_due(&s, now) {
                due_at = recent;
            }
        }
        let active = || async { state.store.has_active_execution(&actor).await.unwrap_or(false) };
        let mut next = next_run(&s, now);
        let result = if !held && now - due_at > MISSED_AFTER_MS && s.missed == "skip" {
            "missed while the server was down; skipped".to_string()
        } else if s.overlap == "skip" && active().await {
            "skipped: the previous run is still going".to_string()
        } else if s.overlap == "queue" && active().await {
            // It stays due, and starts once the previous run has ended.
            if held {
                continue;
            }
            next = Some(due_at);
            "waiting for the previous run to end".to_string()
        } else {
            match on_behalf_of(state, &s, &actor, now).await {
                Err(why) => format!("not started: {why}"),
                Ok(who) => fire(state, &s, &who, due_at).await,
            }
        };
        if let Err(e) = state.store.schedule_ran(&s.id, now, next, &result).await {
            tracing::error!(%e, schedule = s.id, "cannot record a schedule run");
        }
        done.push((s.id, result));
    }
    done
}

/// The latest time schedule `s` was due in the minute before `now` (within
/// [`MISSED_AFTER_MS`]), if any.
fn latest_due(s: &ScheduleRecord, now: i64) -> Option<i64> {
    let mut latest = None;
    let mut after = now - MISSED_AFTER_MS - 1;
    // At most one a second: 61 steps at the most.
    while let Some(t) = next_run(s, after).filter(|t| *t <= now) {
        latest = Some(t);
        after = t;
    }
    latest
}

/// Who a due run acts as: the schedule's own actor, with the roles its creator holds now
/// (whoever created it through the API, or last published the runbook that defines it).
/// Roles lost or tokens revoked since stop the schedule; the runbook's policies are
/// checked against the version that runs, as for any run.
async fn on_behalf_of(state: &AppState, s: &ScheduleRecord, actor: &str, now: i64) -> Result<Principal, String> {
    let tokens = state.store.tokens().await.map_err(|e| format!("cannot read who may run it: {e}"))?;
    let mut roles: Vec<String> = Vec::new();
    let valid = tokens.iter().filter(|t| {
        crate::auth::same_user(&t.user, &s.created_by) && t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now)
    });
    for r in valid.flat_map(|t| &t.roles) {
        if !roles.contains(r) {
            roles.push(r.clone());
        }
    }
    // Never more than the credential it was made with had.
    if let Some(had) = &s.roles {
        roles.retain(|r| had.contains(r));
    }
    let who = Principal { user: actor.to_string(), roles, token_id: String::new() };
    if who.roles.is_empty() {
        return Err(format!(
            "{} created this schedule and has no valid token any more (revoked or expired); delete it, or \
             recreate it as someone who may run it",
            s.created_by
        ));
    }
    if !who.can(Perm::Run) {
        return Err(format!(
            "{} created this schedule and has no role that may run runbooks now ({}); delete it, or \
             recreate it as someone who may run it",
            s.created_by,
            Perm::Run.roles()
        ));
    }
    Ok(who)
}

/// The parameters schedule `s` runs its runbook with.
pub fn inputs(s: &ScheduleRecord) -> std::collections::BTreeMap<String, opsbook_core::Input> {
    let params = s.params.as_object().into_iter().flatten();
    params.map(|(k, v)| (k.clone(), opsbook_core::Input::Value(v.clone()))).collect()
}

/// Queues the run of schedule `s` due at `due_at`; returns what happened.
async fn fire(state: &AppState, s: &ScheduleRecord, who: &Principal, due_at: i64) -> String {
    let inputs = inputs(s);
    // One execution per (schedule, fire time), however many servers see it due:
    // the fire is the idempotency key of the schedule's own actor.
    let fire = format!("fire:{due_at}");
    let mut details = serde_json::Map::new();
    details.insert("requested_by".into(), json!(s.created_by));
    let audit = AuditAs { actor: &who.user, action: "execution.submit", request_id: "", details };
    match crate::service::enqueue(state, &s.runbook, None, inputs, who, Some(&fire), audit).await {
        Ok(q) if q.repeated => format!("started {} (by another server)", q.id),
        Ok(q) => format!("started {}", q.id),
        Err(e) => {
            // Each parameter at fault, by name (a new version may need one it lacks).
            let named: Vec<String> = (e.details.as_array().into_iter().flatten())
                .filter_map(|d| Some(format!("parameter `{}`: {}", d["param"].as_str()?, d["message"].as_str()?)))
                .collect();
            if named.is_empty() {
                format!("not started: {}", e.message)
            } else {
                format!("not started: {}: {}", e.message, named.join("; "))
            }
        }
    }
}

pub fn spawn(state: &AppState, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        // Overdue reviews are looked for at start and then hourly.
        let mut reviews_at = 0;
        loop {
            tick(&state, now_ms()).await;
            if now_ms() - reviews_at >= 3_600_000 {
                reviews_at = now_ms();
                if let Err(e) = crate::service::quality::remind_reviews(&state, jiff::Zoned::now().date()).await {
                    tracing::warn!(error = %e.message, "cannot look for overdue reviews");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
        }
    })
}
