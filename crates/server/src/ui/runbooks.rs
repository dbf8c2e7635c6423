//! The catalog, a runbook's page, its run form and its lifecycle actions.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use opsbook_core::Input;
use opsbook_core::params::ParamType;
use opsbook_store::{ExecutionFilter, RegistryEntry, RunbookQuery, ServerStore, Store};
use serde::Deserialize;

use super::{Layout, Stamp, UiResult, Web, WebForm, enc, render, see_other};
use crate::auth::Perm;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize, Default)]
pub struct CatalogQuery {
    #[serde(default)]
    q: String,
    #[serde(default, rename = "type")]
    runbook_type: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    owner: String,
}

/// A catalog row: the entry and where its review stands.
struct Row {
    e: RegistryEntry,
    /// "overdue", "due" (within 14 days) or "" (fine, or no review cycle).
    review: &'static str,
    review_title: String,
}

#[derive(Template)]
#[template(path = "runbooks.html")]
struct Catalog {
    l: Layout,
    f: CatalogQuery,
    rows: Vec<Row>,
    types: Vec<&'static str>,
    statuses: Vec<&'static str>,
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

pub async fn catalog(State(st): State<AppState>, web: Web, Query(f): Query<CatalogQuery>) -> UiResult<Response> {
    web.require(&st, Perm::Read, "runbooks").await?;
    crate::service::check_registry_filters(some(&f.runbook_type).as_deref(), some(&f.status).as_deref())?;
    let query = RunbookQuery {
        q: some(&f.q),
        runbook_type: some(&f.runbook_type),
        tag: some(&f.tag),
        status: some(&f.status),
        owner: some(&f.owner),
    };
    let entries = st.store.registry(&query).await?;
    let today = jiff::Zoned::now().date();
    let last = last_reviews(&st).await?;
    let mut rows = Vec::with_capacity(entries.len());
    for e in entries {
        let (review, review_title) = match st.engine.stored_runbook(&e.latest_sha256).await {
            Ok(rb) => review_badge(rb.review.as_ref(), last.get(&e.name), today),
            Err(_) => ("", String::new()),
        };
        rows.push(Row { e, review, review_title });
    }
    render(Catalog {
        l: web.layout("runbooks"),
        f,
        rows,
        types: opsbook_core::RunbookType::ALL.iter().map(|t| t.as_str()).collect(),
        statuses: opsbook_core::LifecycleStatus::ALL.iter().map(|s| s.as_str()).collect(),
    })
}

/// Each runbook's newest recorded review.
pub async fn last_reviews(st: &AppState) -> UiResult<BTreeMap<String, opsbook_store::Review>> {
    Ok(st.store.reviews(None).await?.into_iter().map(|r| (r.name.clone(), r)).collect())
}

/// Where a review stands: overdue (past its date, or never reviewed), due within two
/// weeks, or fine; with a sentence for the badge's title.
fn review_badge(
    review: Option<&opsbook_core::Review>,
    last: Option<&opsbook_store::Review>,
    today: jiff::civil::Date,
) -> (&'static str, String) {
    use crate::service::quality::{ReviewState, review_state};
    match review_state(review, last, today) {
        ReviewState::NoCycle => ("", String::new()),
        ReviewState::Never => ("overdue", "never reviewed".into()),
        ReviewState::Overdue(due) => ("overdue", format!("review was due on {due}")),
        ReviewState::Due(due) if today.checked_add(jiff::Span::new().days(14)).is_ok_and(|soon| due <= soon) => {
            ("due", format!("review due on {due}"))
        }
        ReviewState::Due(_) => ("", String::new()),
    }
}

struct ParamRow {
    name: String,
    ty: &'static str,
    required: bool,
    default: String,
    description: String,
    rule: String,
}

struct StepRow {
    id: String,
    name: String,
    kind: &'static str,
    timeout: String,
    attempts: u32,
    rollback: bool,
}

struct VersionRow {
    version: String,
    sha: String,
    bundle: String,
    by: String,
    at: Stamp,
}

struct DiffRow {
    old: String,
    new: String,
    /// "same", "changed", "removed" or "added".
    kind: &'static str,
}

struct LifecycleRow {
    from: Option<String>,
    to: String,
    by: String,
    reason: Option<String>,
    at: Stamp,
}

#[derive(Template)]
#[template(path = "runbook.html")]
struct RunbookPage {
    l: Layout,
    e: RegistryEntry,
    params: Vec<ParamRow>,
    steps: Vec<StepRow>,
    versions: Vec<VersionRow>,
    diff: Option<(String, String, Vec<DiffRow>)>,
    /// Why the comparison asked for cannot be shown (a version it does not have).
    diff_error: Option<String>,
    lifecycle: Vec<LifecycleRow>,
    next_states: Vec<&'static str>,
    schedules: Vec<opsbook_store::ScheduleRecord>,
    recent: Vec<opsbook_api::ExecutionSummary>,
    figures: opsbook_api::RunbookFigures,
    can_run: bool,
    can_author: bool,
    review: &'static str,
    review_title: String,
    /// Its reviews, newest first.
    reviews: Vec<opsbook_api::ReviewDoc>,
}

#[derive(Deserialize)]
pub struct DiffQuery {
    from: Option<String>,
    to: Option<String>,
}

pub async fn page(
    State(st): State<AppState>,
    web: Web,
    Path(name): Path<String>,
    Query(dq): Query<DiffQuery>,
) -> UiResult<Response> {
    web.require(&st, Perm::Read, &name).await?;
    let e = st.store.registry_entry(&name).await?;
    let rb = st.engine.stored_runbook(&e.latest_sha256).await?;
    let params = rb
        .params
        .iter()
        .map(|p| ParamRow {
            name: p.name.clone(),
            ty: p.spec.ty.as_str(),
            required: p.spec.required,
            default: if p.is_secret() {
                String::new()
            } else {
                p.spec.default.as_ref().map(|v| v.to_string()).unwrap_or_default()
            },
            description: p.spec.description.clone().unwrap_or_default(),
            rule: rule_of(&p.spec),
        })
        .collect();
    let steps = rb
        .steps
        .iter()
        .map(|s| StepRow {
            id: s.id.clone(),
            name: s.name.clone(),
            kind: s.kind.name(),
            timeout: s.timeout.to_string(),
            attempts: s.attempts(),
            rollback: s.rollback.is_some(),
        })
        .collect();
    let published = st.store.registry_versions(&name).await?;
    let versions: Vec<VersionRow> = published
        .iter()
        .map(|v| VersionRow {
            version: v.version.clone(),
            sha: v.sha256.chars().take(12).collect(),
            bundle: v.bundle_sha256.as_deref().map(|b| b.chars().take(12).collect()).unwrap_or_default(),
            by: v.published_by.clone(),
            at: Stamp(v.published_at),
        })
        .collect();
    // A comparison of versions the runbook does not have (an edited address) is said
    // on the page, which still shows.
    let mut diff_error = None;
    let diff = match (dq.from, dq.to) {
        (Some(from), Some(to)) => {
            match (versions.iter().any(|v| v.version == from), versions.iter().any(|v| v.version == to)) {
                (true, true) => {
                    let (_, a) = st.store.registry_version(&name, &from).await?;
                    let (_, b) = st.store.registry_version(&name, &to).await?;
                    Some((from, to, side_by_side(&a, &b)))
                }
                (has_from, _) => {
                    let missing = if has_from { to } else { from };
                    diff_error = Some(format!("cannot compare: this runbook has no version {missing}"));
                    None
                }
            }
        }
        _ => None,
    };
    let lifecycle = st
        .store
        .lifecycle_events(&name)
        .await?
        .into_iter()
        .rev()
        .map(|l| LifecycleRow { from: l.from_status, to: l.to_status, by: l.actor, reason: l.reason, at: Stamp(l.at) })
        .collect();
    let next_states = ["active", "deprecated", "archived", "draft"]
        .into_iter()
        .filter(|to| crate::service::lifecycle_allowed(&e.status, to))
        .collect();
    let schedules = st.store.schedules().await?.into_iter().filter(|s| s.runbook == name).collect();
    let filter = ExecutionFilter { runbook: Some(name.clone()), limit: 10, ..Default::default() };
    let recent = st.store.executions(&filter).await?.iter().map(opsbook_api::ExecutionSummary::from).collect();
    let (_, figures) = crate::routes::analytics::cached(&st, 90, Some(&name)).await?;
    let figures = figures.runbooks.first().cloned().unwrap_or_else(|| {
        let now = opsbook_store::now_ms();
        crate::routes::analytics::summarize(&name, &[], now, now, Default::default())
    });
    let recorded = st.store.reviews(Some(&name)).await?;
    let (review, review_title) = review_badge(rb.review.as_ref(), recorded.last(), jiff::Zoned::now().date());
    let reviews = recorded.iter().rev().map(opsbook_api::ReviewDoc::from).collect();
    render(RunbookPage {
        l: web.layout("runbooks"),
        can_run: web.can(Perm::Run) && matches!(e.status.as_str(), "active" | "deprecated"),
        can_author: web.can(Perm::Author),
        e,
        params,
        steps,
        versions,
        diff,
        diff_error,
        lifecycle,
        next_states,
        schedules,
        recent,
        figures,
        review,
        review_title,
        reviews,
    })
}

/// An author's review of the runbook's newest version.
pub async fn review(State(st): State<AppState>, Path(name): Path<String>, form: WebForm) -> UiResult<Response> {
    let web = &form.web;
    web.require(&st, Perm::Author, &name).await?;
    crate::service::quality::review(&st, &web.ctx, &name, form.text("note").unwrap_or_default()).await?;
    Ok(see_other(&format!("/runbooks/{}#reviews", enc(&name))))
}

/// What a parameter accepts beyond its type, in words.
fn rule_of(spec: &opsbook_core::params::ParamSpec) -> String {
    let mut parts = Vec::new();
    if !spec.values.is_empty() {
        parts.push(format!("one of {}", spec.values.join(", ")));
    }
    if let Some(p) = &spec.pattern {
        parts.push(format!("matches {p}"));
    }
    match (spec.min, spec.max) {
        (Some(a), Some(b)) => parts.push(format!("{a} to {b}")),
        (Some(a), None) => parts.push(format!("at least {a}")),
        (None, Some(b)) => parts.push(format!("at most {b}")),
        _ => {}
    }
    match (spec.min_length, spec.max_length) {
        (Some(a), Some(b)) => parts.push(format!("{a} to {b} characters")),
        (Some(a), None) => parts.push(format!("at least {a} characters")),
        (None, Some(b)) => parts.push(format!("at most {b} characters")),
        _ => {}
    }
    parts.join("; ")
}

/// Two texts line by line, aligned: equal lines side by side, changed runs paired.
fn side_by_side(a: &str, b: &str) -> Vec<DiffRow> {
    let ops = crate::diff::line_ops(a, b);
    let mut rows = Vec::new();
    let (mut removed, mut added): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    let flush = |rows: &mut Vec<DiffRow>, removed: &mut Vec<String>, added: &mut Vec<String>| {
        let n = removed.len().max(added.len());
        for i in 0..n {
            let (old, new) = (removed.get(i).cloned(), added.get(i).cloned());
            let kind = match (&old, &new) {
                (Some(_), Some(_)) => "changed",
                (Some(_), None) => "removed",
                _ => "added",
            };
            rows.push(DiffRow { old: old.unwrap_or_default(), new: new.unwrap_or_default(), kind });
        }
        removed.clear();
        added.clear();
    };
    for op in ops {
        match op {
            crate::diff::LineOp::Same(line) => {
                flush(&mut rows, &mut removed, &mut added);
                rows.push(DiffRow { old: line.to_string(), new: line.to_string(), kind: "same" });
            }
            crate::diff::LineOp::Removed(line) => removed.push(line.to_string()),
            crate::diff::LineOp::Added(line) => added.push(line.to_string()),
        }
    }
    flush(&mut rows, &mut removed, &mut added);
    rows
}

/// One input of the run form, named exactly after its parameter.
struct Field {
    name: String,
    /// "text", "number", "checkbox", "select", "password".
    input: &'static str,
    required: bool,
    value: String,
    checked: bool,
    options: Vec<String>,
    min: String,
    max: String,
    step: &'static str,
    pattern: String,
    hint: String,
    description: String,
    error: String,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunForm {
    l: Layout,
    e: RegistryEntry,
    fields: Vec<Field>,
    key: String,
    /// Problems that belong to no field (policy, lifecycle, queue).
    error: String,
    /// The dry run's steps, when asked for with the Preview button.
    preview: Vec<opsbook_engine::plan::PlannedStep>,
}

fn fields_of(rb: &opsbook_core::Runbook, given: &BTreeMap<String, String>, errors: &[(String, String)]) -> Vec<Field> {
    rb.params
        .iter()
        .map(|p| {
            let s = &p.spec;
            let default = s.default.as_ref().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
            let value =
                if p.is_secret() { String::new() } else { given.get(&p.name).cloned().or(default).unwrap_or_default() };
            let input = match s.ty {
                ParamType::Boolean => "checkbox",
                ParamType::Enum => "select",
                ParamType::Secret => "password",
                ParamType::Integer | ParamType::Number => "number",
                ParamType::String => "text",
            };
            let error =
                errors.iter().filter(|(n, _)| *n == p.name).map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
            Field {
                name: p.name.clone(),
                input,
                required: s.required && s.default.is_none() && s.ty != ParamType::Boolean,
                checked: value == "true",
                value,
                options: s.values.clone(),
                min: s.min.map(|v| v.to_string()).unwrap_or_default(),
                max: s.max.map(|v| v.to_string()).unwrap_or_default(),
                step: if s.ty == ParamType::Integer { "1" } else { "any" },
                pattern: s.pattern.clone().unwrap_or_default(),
                hint: rule_of(s),
                description: s.description.clone().unwrap_or_default(),
                error,
            }
        })
        .collect()
}

fn new_key() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source is available");
    format!("ui-{}", hex::encode(b))
}

pub async fn run_form(State(st): State<AppState>, web: Web, Path(name): Path<String>) -> UiResult<Response> {
    web.require(&st, Perm::Run, &name).await?;
    let e = st.store.registry_entry(&name).await?;
    let rb = st.engine.stored_runbook(&e.latest_sha256).await?;
    let fields = fields_of(&rb, &BTreeMap::new(), &[]);
    render(RunForm { l: web.layout("runbooks"), e, fields, key: new_key(), error: String::new(), preview: Vec::new() })
}

/// `POST /runbooks/{name}/run`: the same checks and queue as the API (every invalid
/// parameter shown at its input); the form's key makes a double submit one execution.
/// With `action=preview`, a dry run instead: the steps rendered, nothing queued.
pub async fn run(State(st): State<AppState>, Path(name): Path<String>, form: WebForm) -> UiResult<Response> {
    let web = &form.web;
    web.require(&st, Perm::Run, &name).await?;
    let e = st.store.registry_entry(&name).await?;
    let rb = st.engine.stored_runbook(&e.latest_sha256).await?;
    let mut given = BTreeMap::new();
    let mut inputs = BTreeMap::new();
    // A field for no parameter (an edited form, an old one), or one given twice, is
    // refused rather than dropped: the run would go ahead on defaults.
    let mut seen = std::collections::BTreeSet::new();
    for (k, _) in &form.fields {
        let Some(name) = k.strip_prefix("p.") else { continue };
        if !rb.params.iter().any(|p| p.name == name) {
            return Err(ApiError::field(k, format!("runbook `{}` has no parameter `{name}`", rb.name)).into());
        }
        if !seen.insert(name)
            && !rb.params.iter().any(|p| p.name == name && p.spec.ty == opsbook_core::params::ParamType::Boolean)
        {
            return Err(ApiError::field(k, format!("parameter `{name}` is given twice")).into());
        }
    }
    for p in &rb.params {
        // `p.NAME`: a parameter may be called `action` or `csrf`, as the form's own fields are.
        let Some(v) = form.get(&format!("p.{}", p.name)) else { continue };
        given.insert(p.name.clone(), v.to_string());
        // An empty input is one not filled in: its default applies, or it is missing.
        if !v.is_empty() {
            inputs.insert(p.name.clone(), Input::Text(v.to_string()));
        }
    }
    let key = form.get("idempotency_key").filter(|k| k.len() <= crate::service::MAX_IDEMPOTENCY_KEY);
    // The form's two buttons (Enter sends the first, `run`); nothing else starts a run.
    let action = form.get("action");
    if let Some(other) = action.filter(|a| !matches!(*a, "run" | "preview")) {
        let shown: String = other.chars().take(40).collect();
        return Err(ApiError::field("action", format!("unknown action `{shown}`: run or preview")).into());
    }
    let submitted = if action == Some("preview") {
        match rb.check_params(&inputs) {
            Ok(params) => {
                let fields = fields_of(&rb, &given, &[]);
                let preview = opsbook_engine::plan::plan(&rb, &params);
                let key = key.map(str::to_string).unwrap_or_else(new_key);
                return render(RunForm { l: web.layout("runbooks"), e, fields, key, error: String::new(), preview });
            }
            Err(errors) => Err(crate::error::params_error(&errors)),
        }
    } else {
        crate::service::submit(&st, &web.ctx, &name, Some(e.latest_version.clone()), inputs, key).await
    };
    match submitted {
        Ok(s) => Ok(see_other(&format!("/executions/{}", enc(&s.id)))),
        Err(err) => {
            let status = err.status;
            let per_field: Vec<(String, String)> = err
                .details
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|d| Some((d["param"].as_str()?.to_string(), d["message"].as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            if per_field.is_empty() && status != StatusCode::BAD_REQUEST {
                return Err(err.into());
            }
            let fields = fields_of(&rb, &given, &per_field);
            let error = if per_field.is_empty() { err.message.clone() } else { format!("{}: see below", err.message) };
            let key = key.map(str::to_string).unwrap_or_else(new_key);
            let mut r = render(RunForm { l: web.layout("runbooks"), e, fields, key, error, preview: Vec::new() })?;
            *r.status_mut() = status;
            Ok(r)
        }
    }
}

/// `POST /runbooks/{name}/lifecycle` with `status` and `reason`.
pub async fn lifecycle(State(st): State<AppState>, Path(name): Path<String>, form: WebForm) -> UiResult<Response> {
    let web = &form.web;
    web.require(&st, Perm::Author, &name).await?;
    let status = form.text("status").ok_or_else(|| ApiError::bad_request("choose a status"))?;
    crate::service::change_lifecycle(&st, &web.ctx, &name, &status, form.text("reason")).await?;
    Ok(see_other(&format!("/runbooks/{}", enc(&name))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_by_side_pairs_changed_lines() {
        let rows = side_by_side("a\nb\nc\n", "a\nB\nc\nd\n");
        let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, ["same", "changed", "same", "added"]);
        assert_eq!((rows[1].old.as_str(), rows[1].new.as_str()), ("b", "B"));
        assert_eq!(rows[3].new, "d");
    }
}
