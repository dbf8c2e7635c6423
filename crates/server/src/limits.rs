//! What keeps one client from costing the server more than its share: failed
//! authentications are audited once per source and minute (the rest counted, then
//! summed up in one record) and refused with 429 past a rate; audited fields are bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Failed authentications per source and minute answered 401 by default; more get 429.
pub const FAILURES_PER_MINUTE: u32 = 60;
const WINDOW_MS: i64 = 60_000;
/// Sources tracked at once; past it the oldest windows are forgotten.
const SOURCES: usize = 10_000;

/// One source's current minute.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    failures: u32,
}

/// What to do about one more failed authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Write an audit record for this one (the first of its source's minute).
    pub audit: bool,
    /// Failures of the source's previous minute that were counted but not audited one by one.
    pub suppressed_before: u32,
    /// Answer 429 (with this many seconds to wait) instead of 401.
    pub retry_after: Option<u16>,
}

#[derive(Debug)]
pub struct AuthFailures {
    windows: Mutex<HashMap<Option<IpAddr>, Window>>,
    /// Failures per source and minute answered 401; more get 429 (0: never 429).
    limit: u32,
}

impl Default for AuthFailures {
    fn default() -> Self {
        AuthFailures::new(FAILURES_PER_MINUTE)
    }
}

impl AuthFailures {
    pub fn new(limit: u32) -> AuthFailures {
        AuthFailures { windows: Mutex::default(), limit }
    }

    pub fn record(&self, source: Option<IpAddr>, now: i64) -> Failure {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= SOURCES && !windows.contains_key(&source) {
            windows.retain(|_, w| now - w.start < WINDOW_MS);
            if windows.len() >= SOURCES {
                windows.clear();
            }
        }
        let w = windows.entry(source).or_insert(Window { start: now, failures: 0 });
        let mut suppressed_before = 0;
        if now - w.start >= WINDOW_MS {
            suppressed_before = w.failures.saturating_sub(1);
            *w = Window { start: now, failures: 0 };
        }
        w.failures = w.failures.saturating_add(1);
        let retry_after = (self.limit > 0 && w.failures > self.limit)
            .then(|| u16::try_from((w.start + WINDOW_MS - now).max(1000) / 1000).unwrap_or(60));
        Failure { audit: w.failures == 1, suppressed_before, retry_after }
    }
}

/// At most `max` characters of `s`, marked when cut.
pub fn bounded(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Every string in an audit record's details cut to `max` characters, and at most
/// `items` entries per list or map: a record has a bounded size whatever came in.
pub fn bounded_json(v: &serde_json::Value, max: usize, items: usize) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(bounded(s, max)),
        Value::Array(a) => Value::Array(a.iter().take(items).map(|x| bounded_json(x, max, items)).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().take(items).map(|(k, x)| (bounded(k, max), bounded_json(x, max, items))).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_per_source_and_minute_then_429() {
        let f = AuthFailures::default();
        let a: Option<IpAddr> = Some("10.1.2.3".parse().unwrap());
        let b: Option<IpAddr> = Some("10.9.9.9".parse().unwrap());
        assert_eq!(f.record(a, 0), Failure { audit: true, suppressed_before: 0, retry_after: None });
        for i in 1..FAILURES_PER_MINUTE {
            assert_eq!(f.record(a, i64::from(i)), Failure { audit: false, suppressed_before: 0, retry_after: None });
        }
        assert_eq!(f.record(a, 30_000).retry_after, Some(30));
        assert!(f.record(b, 30_000).audit, "another source has its own minute");
        let next = f.record(a, 61_000);
        assert_eq!(next, Failure { audit: true, suppressed_before: FAILURES_PER_MINUTE, retry_after: None });
    }

    #[test]
    fn audited_values_are_bounded() {
        assert_eq!(bounded("abcdef", 3), "abc…");
        let big = serde_json::json!({ "path": "x".repeat(30_000), "list": vec![1; 500] });
        let small = bounded_json(&big, 100, 50);
        assert!(small.to_string().len() < 400, "{}", small.to_string().len());
    }
}
