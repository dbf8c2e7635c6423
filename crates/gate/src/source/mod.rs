//! The sources, one file each. Each returns the block records it finds (none: clear)
//! or why it could not be read.

mod alertmanager;
mod aws_health;
mod command;
mod freeze;
mod http;
mod statuspage;

use crate::config::Source;
use crate::{BlockRecord, Checker};

/// Checks one source; `dir` is where `command` sources run.
pub(crate) async fn check(
    c: &Checker,
    s: &Source,
    dir: Option<&std::path::Path>,
    now: jiff::Timestamp,
) -> Result<Vec<BlockRecord>, String> {
    match s {
        Source::AwsHealth(a) => aws_health::check(c, a, now).await,
        Source::Statuspage(p) => statuspage::check(c, p).await,
        Source::Alertmanager(a) => alertmanager::check(c, a).await,
        Source::Freeze(f) => freeze::check(f, now),
        Source::Http(h) => http::check(c, h).await,
        Source::Command(cmd) => command::check(c, cmd, dir).await,
    }
}

pub(crate) use opsbook_core::diagnostic::root_cause;

/// A source's URL as it may be shown (in a verdict, a CI log, an API answer, a
/// notification): the password of `user:password@` and the values of query parameters
/// that look like credentials (`api_key=`, `token=`…) are `***`.
pub fn shown(url: &str) -> String {
    let Ok(mut u) = reqwest::Url::parse(url) else { return url.to_string() };
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    let secret = |k: &str| {
        let k = k.to_ascii_lowercase();
        ["key", "token", "secret", "pass", "auth", "sig", "cred", "session"].iter().any(|s| k.contains(s))
    };
    if u.query_pairs().any(|(k, _)| secret(&k)) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| (k.to_string(), if secret(&k) { "***".to_string() } else { v.to_string() }))
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// `base` with `path` added to its own path; a query it has stays its query.
pub(crate) fn with_path(base: &str, path: &str) -> String {
    match reqwest::Url::parse(base) {
        Ok(mut u) => {
            let joined = format!("{}{path}", u.path().trim_end_matches('/'));
            u.set_path(&joined);
            u.to_string()
        }
        Err(_) => format!("{}{path}", base.trim_end_matches('/')),
    }
}

/// `cannot reach URL: cause`, or `URL did not answer within …` on a timeout.
pub(crate) fn unreachable(c: &Checker, url: &str, e: &reqwest::Error) -> String {
    let url = shown(url);
    if e.is_timeout() {
        format!("{url} did not answer within {}", opsbook_core::Dur(c.timeout))
    } else {
        format!("cannot reach {url}: {}", shown(&root_cause(e)))
    }
}

/// GETs a URL and parses its JSON body; every failure is a readable message.
pub(crate) async fn get_json(c: &Checker, url: &str) -> Result<serde_json::Value, String> {
    let resp = c.http.get(url).send().await.map_err(|e| unreachable(c, url, &e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("{} answered HTTP {status}", shown(url)));
    }
    read_json(c, url, resp).await
}

/// The most a source's answer may hold: a status page summary is tens of kilobytes, and
/// thousands of alerts a few megabytes. A larger answer is refused as it arrives, before
/// it is parsed (a parsed document takes many times its size in memory).
pub(crate) const MAX_ANSWER: usize = 8 << 20;

/// Reads a JSON body of at most [`MAX_ANSWER`] bytes.
pub(crate) async fn read_json(
    c: &Checker,
    url: &str,
    mut resp: reqwest::Response,
) -> Result<serde_json::Value, String> {
    let url = shown(url);
    let too_large = || format!("{url} answered more than {} MiB, more than a health source sends", MAX_ANSWER >> 20);
    if resp.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| unreachable(c, &url, &e))? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url} did not answer JSON: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_are_shown_without_credentials_and_keep_their_query() {
        assert_eq!(
            super::shown("http://admin:S3cret@127.0.0.1:9093/x?api_key=K3y&region=eu&Token=t"),
            "http://admin:***@127.0.0.1:9093/x?api_key=***&region=eu&Token=***"
        );
        assert_eq!(super::shown("https://www.githubstatus.com"), "https://www.githubstatus.com/");
        assert_eq!(super::shown("not a url"), "not a url");
        assert_eq!(
            super::with_path("http://127.0.0.1:8081/sp/ok?x=1", "/api/v2/summary.json"),
            "http://127.0.0.1:8081/sp/ok/api/v2/summary.json?x=1"
        );
        assert_eq!(super::with_path("https://example.com/", "/api/v2/alerts"), "https://example.com/api/v2/alerts");
    }
}
