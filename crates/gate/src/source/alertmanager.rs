//! Prometheus Alertmanager, API v2: active, unsilenced, uninhibited alerts that match.

use crate::config::Alertmanager;
use crate::{BlockRecord, Checker};

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) async fn check(c: &Checker, a: &Alertmanager) -> Result<Vec<BlockRecord>, String> {
    let mut url = super::with_path(&a.url, "/api/v2/alerts");
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str("active=true&silenced=false&inhibited=false");
    for m in &a.matchers {
        url.push_str("&filter=");
        url.push_str(&encode(m));
    }
    let doc = super::get_json(c, &url).await?;
    let alerts = doc.as_array().ok_or_else(|| format!("{}: expected a list of alerts", super::shown(&url)))?;
    Ok(alerts
        .iter()
        .filter(|al| al["status"]["state"].as_str().is_none_or(|s| s == "active"))
        .map(|al| {
            let labels = &al["labels"];
            let name = labels["alertname"].as_str().unwrap_or("alert");
            let summary = al["annotations"]["summary"].as_str().or_else(|| al["annotations"]["description"].as_str());
            BlockRecord {
                source: "alertmanager".into(),
                id: al["fingerprint"].as_str().unwrap_or_default().to_string(),
                title: summary.map_or_else(|| name.to_string(), |s| format!("{name}: {s}")),
                region: labels["region"].as_str().map(str::to_string),
                availability_zone: labels["availability_zone"]
                    .as_str()
                    .or_else(|| labels["zone"].as_str())
                    .map(str::to_string),
                service: labels["service"].as_str().or_else(|| labels["job"].as_str()).map(str::to_string),
                category: labels["severity"].as_str().map(str::to_string),
                status: Some("firing".into()),
                started_at: al["startsAt"].as_str().map(str::to_string),
                updated_at: al["updatedAt"].as_str().map(str::to_string),
                url: al["generatorURL"].as_str().map(str::to_string),
                rule: if a.matchers.is_empty() { "any active alert".into() } else { a.matchers.join(", ") },
            }
        })
        .collect())
}
