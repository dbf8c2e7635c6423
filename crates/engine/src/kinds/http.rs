//! `http`: one request; the status and body are checked.

use std::collections::BTreeMap;
use std::time::Instant;

use opsbook_core::step::http::HttpSpec;
use opsbook_core::{Step, StepStatus, template};
use opsbook_store::{Phase, Stream};

use super::AttemptResult;
use crate::Result;
use crate::runner::Run;

/// Body bytes kept for checks and outputs.
const MAX_BODY: usize = 1 << 20;
/// Body lines copied into the log.
const LOGGED_LINES: usize = 20;

pub(crate) async fn attempt(
    run: &mut Run<'_, '_>,
    step: &Step,
    spec: &HttpSpec,
    attempt: u32,
) -> Result<AttemptResult> {
    if let Some(mocks) = run.engine.config.mocks.clone() {
        return super::mock::http(run, step, spec, attempt, &mocks).await;
    }
    let Request { url, headers, body, needle } = match Request::render(spec, &run.context(false)) {
        Ok(r) => r,
        Err(e) => return Ok(AttemptResult::fatal(e)),
    };
    let shown_url = run.masker().mask(&url).into_owned();
    let method = spec.method.as_str();

    let client = run.http_client()?;
    let timeout = spec.timeout.map_or(step.timeout.0, |t| t.0.min(step.timeout.0));
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("methods are valid");
    let mut req = client.request(method.clone(), &url).timeout(timeout);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let started = Instant::now();
    let cancel = run.hooks.cancel.clone();
    let sent = tokio::select! {
        r = req.send() => r,
        _ = cancel.reached(1) => return Ok(AttemptResult::failed(StepStatus::Cancelled, "cancelled".into())),
    };
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return Ok(AttemptResult::failed(
                StepStatus::TimedOut,
                format!("{method} {shown_url}: no response within {}", opsbook_core::Dur(timeout)),
            ));
        }
        Err(e) => {
            // Without reqwest's copy of the URL: the request's values are in it, encoded
            // its own way (a space as %20, `/` and `&` as they are), which masking of the
            // forms a secret is printed in cannot all foresee; the masked URL leads.
            // A refused or unreachable connection is said in its own words, the rest of
            // the chain being reqwest's and hyper's wrapping of it.
            let e = e.without_url();
            let detail = if e.is_connect() {
                format!("cannot connect: {}", opsbook_core::diagnostic::root_cause(&e))
            } else {
                error_chain(&e)
            };
            let detail = run.masker().mask(&detail).into_owned();
            return Ok(AttemptResult::failed(StepStatus::Failed, format!("{method} {shown_url}: {detail}")));
        }
    };
    let status = resp.status().as_u16();
    let mut bytes = Vec::new();
    loop {
        let chunk = tokio::select! {
            c = resp.chunk() => c,
            _ = cancel.reached(1) => return Ok(AttemptResult::failed(StepStatus::Cancelled, "cancelled".into())),
        };
        match chunk {
            Ok(Some(c)) => {
                let room = MAX_BODY.saturating_sub(bytes.len());
                bytes.extend_from_slice(&c[..c.len().min(room)]);
                if room == 0 {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                let detail = run.masker().mask(&error_chain(&e.without_url())).into_owned();
                return Ok(AttemptResult::failed(StepStatus::Failed, format!("reading the response body: {detail}")));
            }
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let elapsed = started.elapsed().as_millis();
    run.system(Some(&step.id), Phase::Step, &format!("{method} {shown_url} -> {status} in {elapsed}ms")).await?;
    for line in text.lines().take(LOGGED_LINES) {
        run.sink.push(run.hooks.observer, Some(&step.id), Phase::Step, attempt, Stream::Stdout, line.as_bytes());
    }
    run.sink.flush().await?;

    let mut problems = Vec::new();
    if !spec.accepts_status(status) {
        let expected = if spec.expect_status.is_empty() {
            "2xx".to_string()
        } else {
            spec.expect_status.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
        };
        problems.push(format!("status {status} (expected {expected})"));
    }
    if let Some(needle) = &needle
        && !text.contains(needle.as_str())
    {
        problems.push(run.masker().mask(&format!("response body does not contain {needle:?}")).into_owned());
    }
    let mut result = if problems.is_empty() {
        let mut outputs = BTreeMap::new();
        outputs.insert("status".to_string(), status.to_string());
        outputs.insert("body".to_string(), text.chars().take(64 * 1024).collect());
        AttemptResult { document: serde_json::from_str(&text).ok(), ..AttemptResult::ok(outputs) }
    } else {
        AttemptResult::failed(StepStatus::Failed, problems.join("; "))
    };
    result.exit_code = None;
    Ok(result)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// A request as its templates render: each value written for where it lands.
pub(crate) struct Request {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// The text the response's body must contain.
    pub needle: Option<String>,
}

impl Request {
    /// Renders `spec`'s templates, or says which field could not be (for the step's
    /// error); a JSON body without a `Content-Type` gets `application/json`.
    pub(crate) fn render(spec: &HttpSpec, ctx: &template::Context) -> std::result::Result<Request, String> {
        let url = template::render_url(&spec.url.value, ctx).map_err(|e| format!("http.url: {e}"))?;
        let mut headers = Vec::new();
        for (k, v) in &spec.headers {
            let v = template::render_plain(&v.value, ctx).map_err(|e| format!("http.headers.{k}: {e}"))?;
            if v.contains(['\r', '\n']) {
                return Err(format!("http.headers.{k}: a header's value may not hold a line break"));
            }
            headers.push((k.clone(), v));
        }
        let content_type =
            headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.as_str());
        let body = spec.body.as_ref().map(|b| b.value.as_str());
        let kind = body.map(|b| template::Body::of(content_type, b));
        if kind == Some(template::Body::Json) && content_type.is_none() {
            headers.push(("Content-Type".to_string(), "application/json".to_string()));
        }
        let body = body
            .zip(kind)
            .map(|(b, kind)| template::render_body(b, kind, ctx))
            .transpose()
            .map_err(|e| format!("http.body: {e}"))?;
        let needle = (spec.expect_body_contains.as_ref())
            .map(|n| template::render_plain(&n.value, ctx))
            .transpose()
            .map_err(|e| format!("http.expect_body_contains: {e}"))?;
        Ok(Request { url, headers, body, needle })
    }
}
