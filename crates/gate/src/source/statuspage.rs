//! Atlassian Statuspage, public API v2: `/api/v2/summary.json`.

use crate::config::{Impact, Statuspage};
use crate::{BlockRecord, Checker};

/// What a component's status says about impact.
fn component_impact(status: &str) -> Option<Impact> {
    match status {
        "operational" => None,
        "degraded_performance" | "under_maintenance" => Some(Impact::Minor),
        "partial_outage" => Some(Impact::Major),
        "major_outage" => Some(Impact::Critical),
        _ => Some(Impact::Minor),
    }
}

pub(crate) async fn check(c: &Checker, p: &Statuspage) -> Result<Vec<BlockRecord>, String> {
    // The page's address, or the API's own (`…/api/v2/summary.json`) as people paste it.
    let summary = "/api/v2/summary.json";
    let url = match reqwest::Url::parse(&p.url) {
        Ok(u) if u.path().trim_end_matches('/').ends_with(summary) => p.url.clone(),
        _ => super::with_path(&p.url, summary),
    };
    let doc = super::get_json(c, &url).await?;
    let (url, given) = (super::shown(&url), super::shown(&p.url));
    if !doc["components"].is_array() || !doc["incidents"].is_array() {
        return Err(format!(
            "{url} is not a Statuspage summary (no `components` and `incidents` lists): is {given} a Statuspage page?"
        ));
    }
    let wanted = |name: &str| p.components.is_empty() || p.components.iter().any(|c| c == name);
    let page = doc["page"]["url"].as_str().map_or(given, str::to_string);
    // A watched component the page does not have (a typo, a rename) would never block:
    // say so instead of passing.
    let listed: Vec<&str> =
        doc["components"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
    let absent: Vec<&str> = p.components.iter().map(String::as_str).filter(|c| !listed.contains(c)).collect();
    if !absent.is_empty() {
        let hint = absent
            .iter()
            .find_map(|a| opsbook_core::diagnostic::did_you_mean(a, &listed).map(|m| format!(" (did you mean `{m}`?)")))
            .unwrap_or_default();
        return Err(format!(
            "{url} has no component {}{hint}; it has: {}",
            absent.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", "),
            listed.join(", ")
        ));
    }
    let mut records = Vec::new();
    for inc in doc["incidents"].as_array().into_iter().flatten() {
        if matches!(inc["status"].as_str(), Some("resolved" | "postmortem")) {
            continue;
        }
        let impact = inc["impact"].as_str().and_then(Impact::parse).unwrap_or(Impact::Minor);
        if impact < p.min_impact {
            continue;
        }
        let names: Vec<&str> =
            inc["components"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
        let affected: Vec<&str> = names.iter().copied().filter(|n| wanted(n)).collect();
        if !p.components.is_empty() && affected.is_empty() && !names.is_empty() {
            continue;
        }
        records.push(BlockRecord {
            source: "statuspage".into(),
            id: inc["id"].as_str().unwrap_or_default().to_string(),
            title: inc["name"].as_str().unwrap_or("incident").to_string(),
            service: (!affected.is_empty()).then(|| affected.join(", ")),
            category: Some(format!("{impact:?}").to_lowercase()),
            status: inc["status"].as_str().map(str::to_string),
            started_at: inc["created_at"].as_str().map(str::to_string),
            updated_at: inc["updated_at"].as_str().map(str::to_string),
            url: inc["shortlink"].as_str().map(str::to_string).or_else(|| Some(page.clone())),
            rule: format!("incident impact {impact:?} >= {:?}", p.min_impact).to_lowercase(),
            ..BlockRecord::default()
        });
    }
    for comp in doc["components"].as_array().into_iter().flatten() {
        let (Some(name), Some(status)) = (comp["name"].as_str(), comp["status"].as_str()) else { continue };
        if comp["group"].as_bool() == Some(true) || !wanted(name) {
            continue;
        }
        let Some(impact) = component_impact(status) else { continue };
        if impact < p.min_impact
            || records.iter().any(|r: &BlockRecord| r.service.as_deref().is_some_and(|s| s.contains(name)))
        {
            continue;
        }
        records.push(BlockRecord {
            source: "statuspage".into(),
            id: comp["id"].as_str().unwrap_or(name).to_string(),
            title: format!("{name} is {}", status.replace('_', " ")),
            service: Some(name.to_string()),
            status: Some(status.to_string()),
            updated_at: comp["updated_at"].as_str().map(str::to_string),
            url: Some(page.clone()),
            rule: format!("component status {status}"),
            ..BlockRecord::default()
        });
    }
    Ok(records)
}
