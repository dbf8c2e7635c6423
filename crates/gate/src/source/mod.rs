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

/// `cannot reach URL: cause`, or `URL did not answer within …` on a timeout.
pub(crate) fn unreachable(c: &Checker, url: &str, e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("{url} did not answer within {}", opsbook_core::Dur(c.timeout))
    } else {
        format!("cannot reach {url}: {}", root_cause(e))
    }
}

/// GETs a URL and parses its JSON body; every failure is a readable message.
pub(crate) async fn get_json(c: &Checker, url: &str) -> Result<serde_json::Value, String> {
    let resp = c.http.get(url).send().await.map_err(|e| unreachable(c, url, &e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("{url} answered HTTP {status}"));
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
    let too_large = || format!("{url} answered more than {} MiB, more than a health source sends", MAX_ANSWER >> 20);
    if resp.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| unreachable(c, url, &e))? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url} did not answer JSON: {e}"))
}
