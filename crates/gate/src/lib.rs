//! Health gates: named sets of sources (status pages, Alertmanager, freeze windows,
//! HTTP and command checks) whose verdict says whether a deployment may start or go on.
//!
//! Architecture invariant: a source never hangs and never panics: every failure to read
//! it becomes an `unknown` verdict that says why, and the gate's `fail_mode` decides.
#![forbid(unsafe_code)]

pub mod codepipeline;
mod source;

/// The definitions live in `opsbook_core::gate` (pure data, used by runbooks too).
pub use opsbook_core::gate as config;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use config::{FailMode, GateDef, GatesFile, Source};

// Public async functions return `Boxed` futures, so the HTTP client code they
// await is compiled here only.
pub(crate) use opsbook_core::{Boxed, boxed};

/// Reads a gates file; its `command` sources run in its directory. Errors name the file,
/// line and column (`path:line:col: message`), then show the offending line with a caret,
/// as runbook problems do (for a person at a terminal).
pub fn read_gates_file(path: &std::path::Path) -> Result<GatesFile, String> {
    read(path, |e, text| e.render(&path.display().to_string(), text))
}

/// The same with a one-line error (`path:line:col: message`), for a server's log: no
/// line of the file (which could hold a URL with credentials), nothing to break a line
/// parser.
pub fn read_gates_file_for_log(path: &std::path::Path) -> Result<GatesFile, String> {
    read(path, |e, _| e.render(&path.display().to_string(), ""))
}

fn read(path: &std::path::Path, error: impl Fn(&config::ConfigError, &str) -> String) -> Result<GatesFile, String> {
    let bytes = opsbook_core::read_document(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = opsbook_core::Diagnostic::utf8(bytes).map_err(|d| d.headline(&path.display().to_string()))?;
    let absolute = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = absolute.parent().unwrap_or(std::path::Path::new("/"));
    GatesFile::parse_in(&text, dir).map_err(|e| error(&e, &text))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Clear,
    Blocked,
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clear => "clear",
            Verdict::Blocked => "blocked",
            Verdict::Unknown => "unknown",
        }
    }
}

/// One reason to block: an incident, an alert, a freeze window, a failed check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct BlockRecord {
    pub source: String,
    pub id: String,
    pub title: String,
    pub region: Option<String>,
    pub availability_zone: Option<String>,
    pub service: Option<String>,
    pub category: Option<String>,
    pub status: Option<String>,
    pub started_at: Option<String>,
    pub updated_at: Option<String>,
    pub url: Option<String>,
    /// Which part of the gate's configuration matched.
    pub rule: String,
}

/// What one source said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceResult {
    #[serde(rename = "type")]
    pub kind: String,
    pub verdict: Verdict,
    pub error: Option<String>,
    pub duration_ms: u64,
    #[serde(skip)]
    pub records: Vec<BlockRecord>,
}

/// The gate's decision (also read back from `GET /api/v1/gates/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub gate: String,
    /// `clear`, `blocked` or `unknown` as the sources said it (before `fail_mode`).
    pub verdict: Verdict,
    pub checked_at: String,
    pub sources: Vec<SourceResult>,
    pub records: Vec<BlockRecord>,
    pub fail_mode: FailMode,
}

impl GateResult {
    /// Whether a deployment may go ahead: clear, or unknown under `fail_mode: open`.
    pub fn passes(&self) -> bool {
        match self.verdict {
            Verdict::Clear => true,
            Verdict::Blocked => false,
            Verdict::Unknown => self.fail_mode == FailMode::Open,
        }
    }

    /// The JSON document of `opsbook gate check --output json` and `GET /api/v1/gates/{name}`.
    pub fn document(&self) -> serde_json::Value {
        serde_json::json!({
            "gate": self.gate,
            "verdict": self.verdict.as_str(),
            "passes": self.passes(),
            "fail_mode": self.fail_mode,
            "checked_at": self.checked_at,
            "sources": self.sources,
            "records": self.records,
        })
    }

    /// One line per reason: each block record, then each unreadable source.
    pub fn reasons(&self) -> Vec<String> {
        let mut why: Vec<String> = self.records.iter().map(|b| format!("{}: {}", b.source, b.title)).collect();
        why.extend(self.unreadable().into_iter().map(|u| format!("cannot read {u}")));
        why
    }

    /// The sources that could not be read, with why.
    pub fn unreadable(&self) -> Vec<String> {
        self.sources
            .iter()
            .filter(|s| s.verdict == Verdict::Unknown)
            .map(|s| format!("{}: {}", s.kind, s.error.as_deref().unwrap_or("unknown")))
            .collect()
    }
}

/// Shared by every check: the HTTP client and the time (so tests can choose it).
#[derive(Clone)]
pub struct Checker {
    pub http: reqwest::Client,
    pub timeout: Duration,
}

impl Checker {
    pub fn new(timeout: Duration) -> Result<Checker, String> {
        let http = opsbook_aws::wire::client_builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot create the HTTP client: {e}"))?;
        Ok(Checker { http, timeout })
    }

    /// Evaluates every source of a gate at time `now`, concurrently. One blocked source
    /// blocks; otherwise one unknown source makes the gate unknown.
    pub fn check<'a>(&'a self, name: &'a str, gate: &'a GateDef, now: jiff::Timestamp) -> crate::Boxed<'a, GateResult> {
        crate::boxed(async move {
            let futures = gate.sources.iter().map(|s| async move {
                let started = Instant::now();
                let outcome = tokio::time::timeout(
                    self.timeout + Duration::from_secs(1),
                    source::check(self, s, gate.dir.as_deref(), now),
                )
                .await;
                let (verdict, error, records) = match outcome {
                    Ok(Ok(records)) if records.is_empty() => (Verdict::Clear, None, records),
                    Ok(Ok(records)) => {
                        (Verdict::Blocked, None, records.into_iter().map(BlockRecord::one_line).collect())
                    }
                    Ok(Err(e)) => (Verdict::Unknown, Some(one_line(&e)), Vec::new()),
                    Err(_) => (
                        Verdict::Unknown,
                        Some(format!("no answer within {}", opsbook_core::Dur(self.timeout))),
                        Vec::new(),
                    ),
                };
                SourceResult {
                    kind: s.kind().to_string(),
                    verdict,
                    error,
                    duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    records,
                }
            });
            let sources: Vec<SourceResult> = futures_util::future::join_all(futures).await;
            let verdict = if sources.iter().any(|s| s.verdict == Verdict::Blocked) {
                Verdict::Blocked
            } else if sources.iter().any(|s| s.verdict == Verdict::Unknown) {
                Verdict::Unknown
            } else {
                Verdict::Clear
            };
            let records = sources.iter().flat_map(|s| s.records.clone()).collect();
            let result = GateResult {
                gate: name.to_string(),
                verdict,
                // To the millisecond, as every time opsbook writes.
                checked_at: format!("{:.3}", jiff::Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now)),
                sources,
                records,
                fail_mode: gate.fail_mode,
            };
            record_metrics(&result);
            result
        })
    }
}

impl BlockRecord {
    /// The record with each text on one line (see [`one_line`]).
    fn one_line(self) -> BlockRecord {
        let opt = |s: Option<String>| s.map(|s| one_line(&s));
        BlockRecord {
            source: one_line(&self.source),
            id: one_line(&self.id),
            title: one_line(&self.title),
            region: opt(self.region),
            availability_zone: opt(self.availability_zone),
            service: opt(self.service),
            category: opt(self.category),
            status: opt(self.status),
            started_at: opt(self.started_at),
            updated_at: opt(self.updated_at),
            url: opt(self.url),
            ..self
        }
    }
}

/// Text from a source (a status page's incident name, an alert's summary, a command's
/// output) as one line of plain text: terminal escape sequences dropped, other control
/// characters (line breaks, tabs) and runs of spaces made one space. It is printed in CI
/// logs, where a line of its own starting `::` would be a GitHub Actions workflow
/// command, and on terminals.
pub fn one_line(text: &str) -> String {
    use opsbook_core::terminal::{Piece, pieces};
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for piece in pieces(text) {
        match piece {
            Piece::Char(c) if c.is_control() || c.is_whitespace() => space = !out.is_empty(),
            Piece::Char(c) => {
                if space {
                    out.push(' ');
                    space = false;
                }
                out.push(c);
            }
            Piece::Csi { .. } | Piece::Other => {}
        }
    }
    out
}

/// Prometheus figures for `opsbook serve` (a no-op without a recorder, as in the CLI):
/// checks by verdict, whether each gate blocked at its last check, and how long sources take.
fn record_metrics(r: &GateResult) {
    let gate = r.gate.clone();
    metrics::counter!("opsbook_gate_checks_total", "gate" => gate.clone(), "verdict" => r.verdict.as_str())
        .increment(1);
    metrics::gauge!("opsbook_gate_blocked", "gate" => gate).set(if r.passes() { 0.0 } else { 1.0 });
    for s in &r.sources {
        metrics::histogram!("opsbook_gate_source_duration_seconds", "type" => s.kind.clone(), "verdict" => s.verdict.as_str())
            .record(s.duration_ms as f64 / 1000.0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn source_text_is_one_plain_line() {
        let text =
            "  a\nb\r\n::cmd::x\t\u{1b}[1;31mred\u{1b}[0m \u{1b}]8;;http://x\u{7}link\u{1b}]8;;\u{1b}\\ end\u{0}  ";
        assert_eq!(super::one_line(text), "a b ::cmd::x red link end");
        assert_eq!(super::one_line("trailing escape \u{1b}"), "trailing escape");
    }
}
