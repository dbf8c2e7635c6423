//! A generic HTTP check: a status code and, optionally, a value in the JSON body.

use serde_json::Value;

use crate::config::HttpCheck;
use crate::{BlockRecord, Checker};

/// Follows `$.a.b[0].c` into a JSON value (the path was checked when the file was read).
pub(crate) fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    opsbook_core::jsonpath::JsonPath::parse(path).ok()?.find(v)
}

pub(crate) async fn check(c: &Checker, h: &HttpCheck) -> Result<Vec<BlockRecord>, String> {
    let resp = c.http.get(&h.url).send().await.map_err(|e| super::unreachable(c, &h.url, &e))?;
    let status = resp.status().as_u16();
    let ok_status =
        if h.expect_status.is_empty() { (200..300).contains(&status) } else { h.expect_status.contains(&status) };
    let url = super::shown(&h.url);
    let record = |title: String, rule: String| BlockRecord {
        source: "http".into(),
        id: url.clone(),
        title,
        status: Some(status.to_string()),
        url: Some(url.clone()),
        rule,
        ..BlockRecord::default()
    };
    if !ok_status {
        return Ok(vec![record(format!("{url} answered {status}"), format!("expect_status {:?}", h.expect_status))]);
    }
    let Some(exp) = &h.expect_json else { return Ok(Vec::new()) };
    let body: Value = super::read_json(c, &h.url, resp).await?;
    match lookup(&body, &exp.path) {
        Some(v) if *v == exp.equals => Ok(Vec::new()),
        found => Ok(vec![record(
            format!(
                "{} is {} (expected {})",
                exp.path,
                found.map_or("missing".to_string(), |v| v.to_string()),
                exp.equals
            ),
            format!("expect_json {} == {}", exp.path, exp.equals),
        )]),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_paths() {
        let v = serde_json::json!({"a": {"b": [{"c": "ok"}, {"c": 2}]}, "status": "green"});
        assert_eq!(super::lookup(&v, "$.status").unwrap(), "green");
        assert_eq!(super::lookup(&v, "$.a.b[1].c").unwrap(), 2);
        assert!(super::lookup(&v, "$.a.x").is_none());
        assert!(super::lookup(&v, "$.a.b[9]").is_none());
    }
}
