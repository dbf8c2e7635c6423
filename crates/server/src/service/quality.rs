//! Manual steps' confirmations, reviews of runbooks and feedback on executions: what
//! the API and the web UI do for them (who may, the queue, the audit trail).

use opsbook_store::{AuditFilter, Phase, RegistryEntry, Review, ServerStore, now_ms};

use super::to_value;
use crate::auth::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Records that the manual step (or manual rollback) execution `id` waits on was done
/// (or not), then carries it on: a step's execution is queued for a worker; a rollback's
/// rollbacks go on (the manual one settled by this answer), as `rollback` would.
pub async fn confirm(
    st: &AppState,
    ctx: &Ctx,
    id: &str,
    body: opsbook_api::Confirm,
) -> ApiResult<opsbook_api::Confirmed> {
    ApiError::check_text("note", body.note.as_deref())?;
    let wait = st.engine.manual_wait(id, body.step.as_deref()).await?;
    let exec = &wait.execution;
    super::may_carry_on(st, ctx, exec).await?;
    let rollback = wait.phase == Phase::Rollback;
    let hold = if rollback { Some(st.carry(&exec.id)?) } else { None };
    let secrets: std::collections::BTreeMap<String, opsbook_core::Input> =
        body.params.iter().map(|(k, v)| (k.clone(), opsbook_core::Input::Value(v.clone()))).collect();
    if rollback {
        // The rollbacks after it must be able to run: refuse, or fail to prepare them,
        // before the answer is recorded.
        if let Err(e) = st.engine.check_resume(&exec.id, &secrets, true).await {
            super::audit_secret_mismatch(st, ctx, &exec.id, "confirm", &e).await;
            return Err(e.into());
        }
        crate::worker::prepare(&st.store, exec)
            .await
            .map_err(|why| ApiError::conflict(format!("cannot prepare the execution: {why}")))?;
        crate::vault::put(st, &exec.id, &secrets).await?;
    }
    let note = crate::vault::masked(st, exec, &secrets, body.note).await;
    st.engine.confirm(&wait, ctx.user(), body.done, note.clone()).await?;
    let next = if let Some(hold) = hold {
        crate::worker::spawn_carry_on(st, exec.clone(), crate::worker::RunKind::Rollback, hold).await;
        "rolling_back"
    } else {
        if st.store.requeue(&exec.id).await? {
            st.wake.notify_one();
        }
        "queued"
    };
    let checklist = checklist(&wait);
    let done = opsbook_api::Confirmed {
        execution: exec.id.clone(),
        step: wait.step.step_id.clone(),
        phase: wait.phase.as_str().into(),
        done: body.done,
        by: ctx.user().to_string(),
        note,
        checklist,
        next: next.into(),
    };
    st.audit(ctx.user(), "execution.confirm", &exec.id, &ctx.request_id, to_value(&done)).await;
    Ok(done)
}

/// The checklist of a manual wait, rendered with the execution's (masked) parameters.
pub fn checklist(wait: &opsbook_engine::ManualWait) -> Vec<String> {
    let ctx = opsbook_core::template::Context {
        params: wait.execution.params.clone(),
        execution_id: wait.execution.id.clone(),
        ..Default::default()
    };
    let render = |t: &str| opsbook_core::template::render_plain(t, &ctx).unwrap_or_else(|_| t.to_string());
    wait.spec.checklist.iter().map(|i| render(&i.value)).collect()
}

/// Records `ctx`'s rating of execution `id`, which ended (given again, it replaces theirs).
pub async fn feedback(
    st: &AppState,
    ctx: &Ctx,
    id: &str,
    body: opsbook_api::FeedbackIn,
) -> ApiResult<opsbook_api::FeedbackDoc> {
    ApiError::check_text("comment", body.comment.as_deref())?;
    if !(1..=5).contains(&body.rating) {
        return Err(ApiError::field("rating", format!("rating: {} is not between 1 and 5", body.rating)));
    }
    let f = st.engine.rate(id, ctx.user(), body.rating, body.comment).await?;
    let doc = opsbook_api::FeedbackDoc::from(&f);
    st.audit(ctx.user(), "execution.feedback", &f.execution_id, &ctx.request_id, to_value(&doc)).await;
    Ok(doc)
}

/// Records `ctx`'s review of runbook `name`'s newest version; the next review is due
/// `review.every` after today.
pub async fn review(st: &AppState, ctx: &Ctx, name: &str, note: String) -> ApiResult<opsbook_api::ReviewDoc> {
    ApiError::check_text("note", Some(&note))?;
    let note = note.trim().to_string();
    if note.is_empty() {
        return Err(ApiError::field("note", "note: say what the review checked or found"));
    }
    let entry = st.store.registry_entry(name).await?;
    let r = Review {
        name: entry.name.clone(),
        version: entry.latest_version.clone(),
        reviewer: ctx.user().to_string(),
        note,
        at: now_ms(),
    };
    st.store.add_review(&r).await?;
    let mut doc = opsbook_api::ReviewDoc::from(&r);
    doc.next_due = next_due(st, &entry.latest_sha256, Some(&r)).await.map(|d| d.to_string());
    st.audit(ctx.user(), "runbook.review", name, &ctx.request_id, to_value(&doc)).await;
    Ok(doc)
}

/// When a runbook's next review is due: `review.every` after the later of its
/// `last_reviewed` and its newest recorded review. `None` without a review cycle, or
/// never reviewed.
pub async fn next_due(st: &AppState, sha256: &str, last: Option<&Review>) -> Option<jiff::civil::Date> {
    let rb = st.engine.stored_runbook(sha256).await.ok()?;
    rb.review.as_ref()?.due_after(last.map(|r| review_date(r.at)))
}

/// The day (UTC) a review was recorded.
pub fn review_date(at_ms: i64) -> jiff::civil::Date {
    jiff::Timestamp::from_millisecond(at_ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

/// Where a runbook's review stands, as analytics, the catalog and the metric see it.
pub fn review_state(
    review: Option<&opsbook_core::Review>,
    last: Option<&Review>,
    today: jiff::civil::Date,
) -> ReviewState {
    let Some(r) = review else { return ReviewState::NoCycle };
    match r.due_after(last.map(|l| review_date(l.at))) {
        None => ReviewState::Never,
        Some(due) if due < today => ReviewState::Overdue(due),
        Some(due) => ReviewState::Due(due),
    }
}

/// See [`review_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewState {
    /// The runbook sets no `review.every`.
    NoCycle,
    /// It has a cycle and was never reviewed.
    Never,
    Overdue(jiff::civil::Date),
    Due(jiff::civil::Date),
}

impl ReviewState {
    pub fn overdue(self) -> bool {
        matches!(self, ReviewState::Never | ReviewState::Overdue(_))
    }
}

/// Runbooks whose review is overdue (past due, or a cycle and never reviewed), with the
/// due date (`None`: never reviewed), from each one's newest published text. Archived
/// runbooks are left out: they never run again.
pub async fn overdue_reviews(
    st: &AppState,
    today: jiff::civil::Date,
) -> ApiResult<Vec<(RegistryEntry, Option<String>)>> {
    let registry = st.store.registry(&Default::default()).await?;
    let reviews = st.store.reviews(None).await?;
    let mut out = Vec::new();
    for e in registry.into_iter().filter(|e| e.status != "archived") {
        let Ok(rb) = st.engine.stored_runbook(&e.latest_sha256).await else { continue };
        let last = reviews.iter().rev().find(|r| r.name == e.name);
        match review_state(rb.review.as_ref(), last, today) {
            ReviewState::Never => out.push((e, None)),
            ReviewState::Overdue(d) => out.push((e, Some(d.to_string()))),
            _ => {}
        }
    }
    Ok(out)
}

/// Sends `review_due` once per runbook and due date: each overdue review not announced
/// yet is audited (`runbook.review_due`, which is also how it is known to have gone
/// out) and handed to the notification rules. Returns the runbooks announced.
pub async fn remind_reviews(st: &AppState, today: jiff::civil::Date) -> ApiResult<Vec<String>> {
    let mut sent = Vec::new();
    for (e, due) in overdue_reviews(st, today).await? {
        let key = due.clone().unwrap_or_else(|| "never".into());
        let filter = AuditFilter {
            action: Some("runbook.review_due".into()),
            target: Some(e.name.clone()),
            limit: 1,
            newest: true,
            ..Default::default()
        };
        let told = st.store.audit(&filter).await?;
        if told.last().is_some_and(|r| r.details["due"].as_str() == Some(&key)) {
            continue;
        }
        let detail = match &due {
            Some(d) => format!("the review of {} (v{}) was due on {d}", e.name, e.latest_version),
            None => format!("{} (v{}) has a review cycle and was never reviewed", e.name, e.latest_version),
        };
        let details = serde_json::json!({ "due": key, "owner": e.owner, "detail": detail });
        st.audit("opsbook", "runbook.review_due", &e.name, "", details).await;
        let _ = st.notify.send(crate::notify::Note {
            execution_id: String::new(),
            event: "review_due",
            detail: Some(detail),
            runbook: Some(crate::notify::RunbookNote {
                name: e.name.clone(),
                version: e.latest_version.clone(),
                owner: e.owner.clone(),
            }),
        });
        sent.push(e.name);
    }
    Ok(sent)
}

/// Runs a runbook's tests (its `tests:`, and the `NAME.test.yaml` beside it in its
/// bundle, found as the test file whose runbook there has this very text), with
/// mocks and on a database in memory: nothing runs, nothing is kept.
pub async fn run_tests(
    st: &AppState,
    rb: &opsbook_core::Runbook,
    bundle_sha: Option<&str>,
) -> ApiResult<Vec<opsbook_engine::suite::CaseResult>> {
    let mut extra = Vec::new();
    if let Some(sha) = bundle_sha
        && let Some(bytes) = st.store.bundle(sha).await?
        && let Ok(bundle) = opsbook_core::bundle::Bundle::decode(&bytes)
    {
        for (path, file) in bundle.files() {
            let Some(stem) = path.strip_suffix(".test.yaml").or_else(|| path.strip_suffix(".test.yml")) else {
                continue;
            };
            let beside = ["yaml", "yml"].iter().find_map(|ext| bundle.get(&format!("{stem}.{ext}")));
            if beside.is_none_or(|f| opsbook_core::sha256_hex(&f.data) != rb.sha256) {
                continue;
            }
            let text = String::from_utf8_lossy(&file.data);
            let cases = opsbook_core::testcase::parse_file(&text, rb).map_err(|d| {
                let first = d.first().map(|d| d.headline(path)).unwrap_or_default();
                ApiError::bad_request(format!("invalid tests: {first}"))
            })?;
            extra.extend(cases);
        }
    }
    let store = opsbook_store_any::AnyStore::in_memory()?;
    let config = opsbook_engine::EngineConfig { owner: "server:tests".into(), ..st.engine.config.clone() };
    let base = std::env::temp_dir();
    Ok(opsbook_engine::suite::run_tests(store, &config, rb, &extra, base).await)
}

/// The refusal of a runbook whose tests fail, when it would become (or stay) active:
/// 422 `tests_failed`, each failing case in the details.
pub fn refuse_failing(name: &str, results: &[opsbook_engine::suite::CaseResult]) -> ApiResult<()> {
    let failing: Vec<&opsbook_engine::suite::CaseResult> = results.iter().filter(|r| !r.passed()).collect();
    if failing.is_empty() {
        return Ok(());
    }
    let details = failing.iter().map(|r| serde_json::json!({ "test": r.name, "failures": r.failures })).collect();
    Err(ApiError::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        "tests_failed",
        format!(
            "runbook `{name}` cannot be active while its tests fail: {} of {} failed (first: `{}`: {})",
            failing.len(),
            results.len(),
            failing[0].name,
            failing[0].failures.first().map(String::as_str).unwrap_or_default()
        ),
    )
    .with_details(serde_json::Value::Array(details)))
}
