//! Gate definitions: `gates:` in `opsbook.yaml` and inline in runbook steps (pure data;
//! `opsbook-gate` evaluates them).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

mod check;

pub use check::{calendar_date, check_source, date_range, is_gate_name, matcher, timezone};

/// `fail_mode`: what a source that cannot be read means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Block (the default): no deployment on an unknown state.
    #[default]
    Closed,
    /// Pass, with a warning.
    Open,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateDef {
    #[serde(default)]
    pub fail_mode: FailMode,
    pub sources: Vec<Source>,
    /// Where `command` sources run: the gates file's directory, or the runbook's for
    /// inline sources (the current directory when unset). Not written in the file.
    #[serde(skip)]
    #[schemars(skip)]
    pub dir: Option<std::path::PathBuf>,
}

/// Named gates that can be replaced while in use (the server reloads its gates file when
/// it changes). Readers take a snapshot, so one check sees one version.
#[derive(Clone, Debug, Default)]
pub struct GateBook(std::sync::Arc<std::sync::RwLock<std::sync::Arc<BTreeMap<String, GateDef>>>>);

impl GateBook {
    pub fn new(gates: BTreeMap<String, GateDef>) -> GateBook {
        GateBook(std::sync::Arc::new(std::sync::RwLock::new(std::sync::Arc::new(gates))))
    }

    pub fn snapshot(&self) -> std::sync::Arc<BTreeMap<String, GateDef>> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn replace(&self, gates: BTreeMap<String, GateDef>) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = std::sync::Arc::new(gates);
    }
}

/// A file with named gates (other top-level keys are left to their owners).
#[derive(Debug, Clone, Deserialize)]
pub struct GatesFile {
    #[serde(default)]
    pub gates: BTreeMap<String, GateDef>,
}

/// One place to ask. Each variant is one file in `source/`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    AwsHealth(AwsHealth),
    Statuspage(Statuspage),
    Alertmanager(Alertmanager),
    Freeze(Freeze),
    Http(HttpCheck),
    Command(CommandCheck),
}

impl Source {
    pub fn kind(&self) -> &'static str {
        match self {
            Source::AwsHealth(_) => "aws_health",
            Source::Statuspage(_) => "statuspage",
            Source::Alertmanager(_) => "alertmanager",
            Source::Freeze(_) => "freeze",
            Source::Http(_) => "http",
            Source::Command(_) => "command",
        }
    }
}

/// AWS Health (DescribeEvents, every page), for the account or the organization.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsHealth {
    /// Regions whose events block; `global` matches events with region `global`.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Services, e.g. EC2, RDS, ELASTICLOADBALANCING (empty: all).
    #[serde(default)]
    pub services: Vec<String>,
    /// issue, accountNotification, scheduledChange, investigation (default: issue).
    #[serde(default)]
    pub categories: Vec<String>,
    /// open, closed, upcoming (default: open).
    #[serde(default)]
    pub statuses: Vec<String>,
    #[serde(default)]
    pub availability_zones: Vec<String>,
    /// Use DescribeEventsForOrganization (needs the organizational view).
    #[serde(default)]
    pub organization: bool,
    /// Organization: only these accounts (empty: all).
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Also block on `upcoming` scheduled changes that start within this time.
    #[serde(default)]
    pub lookahead: Option<crate::Dur>,
    /// An explicit endpoint (else `AWS_ENDPOINT_URL_HEALTH`, then `AWS_ENDPOINT_URL`, then
    /// AWS's global endpoint with failover between us-east-1 and us-east-2).
    #[serde(default)]
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    None,
    #[default]
    Minor,
    Major,
    Critical,
}

impl Impact {
    pub fn parse(s: &str) -> Option<Impact> {
        match s {
            "none" => Some(Impact::None),
            "minor" => Some(Impact::Minor),
            "major" => Some(Impact::Major),
            "critical" => Some(Impact::Critical),
            _ => None,
        }
    }
}

/// An Atlassian Statuspage (public API v2).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Statuspage {
    /// The page, e.g. https://www.githubstatus.com
    pub url: String,
    /// Component names that matter; empty: all.
    #[serde(default)]
    pub components: Vec<String>,
    /// The least impact that blocks (default minor).
    #[serde(default)]
    pub min_impact: Impact,
}

/// Prometheus Alertmanager (API v2): any active, unsilenced, uninhibited matching alert blocks.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alertmanager {
    pub url: String,
    /// Alertmanager matchers, e.g. `severity="critical"`.
    #[serde(default)]
    pub matchers: Vec<String>,
}

/// Freeze windows (cron start + duration, in a time zone) and date ranges.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Freeze {
    #[serde(default)]
    pub windows: Vec<FreezeWindow>,
    /// `YYYY-MM-DD` or `YYYY-MM-DD/YYYY-MM-DD` (inclusive), in `timezone`.
    #[serde(default)]
    pub dates: Vec<String>,
    /// For `dates` (default UTC).
    #[serde(default)]
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeWindow {
    /// Cron pattern of the window's start.
    pub start: String,
    pub duration: crate::Dur,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    pub url: String,
    /// Default: any 2xx.
    #[serde(default)]
    pub expect_status: Vec<u16>,
    #[serde(default)]
    pub expect_json: Option<JsonExpectation>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonExpectation {
    /// `$.a.b[0].c`
    pub path: String,
    pub equals: serde_json::Value,
}

/// A command: exit 0 clear, 1 blocked (first output line is the reason), anything else unknown.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandCheck {
    pub run: String,
}

/// A problem in a gates file, with its place.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// How many characters the offending text spans (at least 1).
    pub len: u64,
    pub message: String,
}

impl ConfigError {
    /// `path:line:col: message` (or `path: message` when the place is not known), then
    /// the offending line of `source` with a caret, as runbook problems show.
    pub fn render(&self, path: &str, source: &str) -> String {
        let pos = match (self.line, self.column) {
            (Some(line), Some(column)) => Some(crate::diagnostic::Pos {
                line: u32::try_from(line).unwrap_or(u32::MAX),
                column: u32::try_from(column).unwrap_or(u32::MAX),
                len: u32::try_from(self.len.max(1)).unwrap_or(1),
            }),
            _ => None,
        };
        crate::diagnostic::Diagnostic::new(pos, self.message.clone()).render(path, source)
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{l}:{c}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl GatesFile {
    /// Reads a gates file and places it: its `command` sources run in `dir` (the file's
    /// directory).
    pub fn parse_in(text: &str, dir: &std::path::Path) -> Result<GatesFile, ConfigError> {
        let mut file = GatesFile::parse(text)?;
        for gate in file.gates.values_mut() {
            gate.dir = Some(dir.to_path_buf());
        }
        Ok(file)
    }

    /// Parses and checks a gates file (cron patterns, time zones, dates, URLs, matchers).
    pub fn parse(text: &str) -> Result<GatesFile, ConfigError> {
        let options = serde_saphyr::options! { with_snippet: false };
        let file: GatesFile = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
            let d = crate::parse::yaml_diagnostic(&e, text);
            ConfigError {
                line: d.pos.map(|p| u64::from(p.line)),
                column: d.pos.map(|p| u64::from(p.column)),
                len: d.pos.map_or(1, |p| u64::from(p.len)),
                message: d.message,
            }
        })?;
        for (name, gate) in &file.gates {
            let err = |at: Option<usize>, m: String| {
                let (line, column) = place(text, name, at);
                // Within a source, the value the message quotes first, when it is there.
                let (line, column, len) = match (line, column, at) {
                    (Some(l), Some(c), Some(_)) => match quoted_in_block(text, l, c, &m) {
                        Some((l, c, len)) => (Some(l), Some(c), len),
                        None => (Some(l), Some(c), 1),
                    },
                    _ => (line, column, 1),
                };
                ConfigError { line, column, len, message: format!("gate `{name}`: {m}") }
            };
            if !is_gate_name(name) {
                return Err(err(
                    None,
                    "a gate name is letters, digits, `-`, `_` and `.`, starting with a letter or digit (it goes in URLs and CI logs)".into(),
                ));
            }
            if gate.sources.is_empty() {
                return Err(err(None, "a gate needs at least one source".into()));
            }
            for (i, s) in gate.sources.iter().enumerate() {
                check_source(s).map_err(|m| err(Some(i), m))?;
            }
        }
        Ok(file)
    }
}

/// A `gate: { use: NAME }` step whose gate is not defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownUse {
    /// Where the name is written.
    pub pos: crate::diagnostic::Pos,
    pub step: String,
    pub name: String,
    /// The likeliest meant name among the known ones.
    pub meant: Option<String>,
}

/// Each `gate: { use: NAME }` step of a runbook's text whose gate is not among `known`.
/// Read from the text alone, so it is found even when the runbook has other problems
/// (whatever else cannot be read is left to the runbook's own checks).
pub fn unknown_uses(text: &str, known: &[&str]) -> Vec<UnknownUse> {
    #[derive(Deserialize)]
    struct Doc {
        spec: Option<Spec>,
    }
    #[derive(Deserialize)]
    struct Spec {
        #[serde(default)]
        steps: Vec<Step>,
    }
    #[derive(Deserialize)]
    struct Step {
        id: Option<String>,
        gate: Option<Use>,
    }
    #[derive(Deserialize)]
    struct Use {
        #[serde(rename = "use")]
        name: Option<Spanned<String>>,
    }
    let Ok(Doc { spec: Some(spec) }) = serde_saphyr::from_str::<Doc>(text) else { return Vec::new() };
    let uses = spec.steps.into_iter().filter_map(|s| Some((s.id.unwrap_or_default(), s.gate?.name?)));
    uses.filter(|(_, name)| !known.contains(&name.value.as_str()))
        .map(|(step, name)| UnknownUse {
            pos: crate::diagnostic::Pos::from_location(&name.referenced).unwrap_or(crate::diagnostic::Pos {
                line: 1,
                column: 1,
                len: 1,
            }),
            meant: crate::diagnostic::did_you_mean(&name.value, known).map(str::to_string),
            step,
            name: name.value,
        })
        .collect()
}

/// The place of the first value quoted in `message` within the source that starts at
/// `at` (an inline source of a runbook's `gate` step).
pub(crate) fn quoted_place(text: &str, at: &serde_saphyr::Location, message: &str) -> Option<crate::diagnostic::Pos> {
    let (line, column, len) = quoted_in_block(text, at.line(), at.column(), message)?;
    let n = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Some(crate::diagnostic::Pos { line: n(line), column: n(column), len: n(len) })
}

/// The place of the first `value` quoted in `message` (between backticks) in the block
/// that starts at `line`:`column` (that line, and the lines after it indented deeper):
/// `(line, column, length in characters)`.
fn quoted_in_block(text: &str, line: u64, column: u64, message: &str) -> Option<(u64, u64, u64)> {
    let value = message.split('`').nth(1).filter(|v| !v.is_empty())?;
    let start = text.split_inclusive('\n').take(usize::try_from(line).ok()? - 1).map(str::len).sum::<usize>();
    let indent = |l: &str| l.len() - l.trim_start_matches(' ').len();
    let first = text[start..].lines().next()?;
    for (i, l) in text[start..].split_inclusive('\n').enumerate() {
        let content = l.trim_end_matches(['\n', '\r']);
        if i > 0 && !content.trim().is_empty() && indent(content) <= indent(first) {
            break;
        }
        // On the source's first line, only after its own start.
        let from = if i == 0 {
            content.char_indices().nth(usize::try_from(column).ok()? - 1).map_or(0, |(b, _)| b)
        } else {
            0
        };
        // The value as a whole word (`status`, not the end of `expect_status`), as written:
        // plain or single-quoted, or double-quoted with its `"` escaped.
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || "_-./".contains(c));
        for written in [value.to_string(), value.replace('\'', "''"), value.replace('"', "\\\"")] {
            let found = content[from..].match_indices(written.as_str()).map(|(at, _)| from + at).find(|&b| {
                !word(content[..b].chars().next_back()) && !word(content[b + written.len()..].chars().next())
            });
            if let Some(byte) = found {
                let col = content[..byte].chars().count() as u64 + 1;
                return Some((line + i as u64, col, written.chars().count() as u64));
            }
        }
    }
    None
}

/// Where a gate's name (or its source number `at`) is in the file, to place an error found
/// after parsing. Read again only on that error path.
fn place(text: &str, gate: &str, at: Option<usize>) -> (Option<u64>, Option<u64>) {
    #[derive(Deserialize)]
    struct Places {
        #[serde(default)]
        gates: std::collections::HashMap<Spanned<String>, Spanned<PlacedGate>>,
    }
    #[derive(Deserialize)]
    struct PlacedGate {
        #[serde(default)]
        sources: Vec<Spanned<serde::de::IgnoredAny>>,
    }
    let Ok(places) = serde_saphyr::from_str::<Places>(text) else { return (None, None) };
    let Some((name, g)) = places.gates.iter().find(|(name, _)| name.value == gate) else { return (None, None) };
    let loc = match at {
        Some(i) => g.value.sources.get(i).map(|s| s.referenced),
        None => Some(name.referenced),
    };
    loc.map_or((None, None), |l| (Some(l.line()), Some(l.column())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_say_where_they_are_wrong() {
        let file = GatesFile::parse(
            "gates:\n  g:\n    sources:\n      - http: { url: \"https://x.test/s\", expect_json: { path: status, equals: ok } }\n",
        );
        assert_eq!(
            file.unwrap_err().to_string(),
            "4:63: gate `g`: expect_json.path: invalid JSON path `status`: it starts with `$` (e.g. `$.status` or `$.items[0].id`)"
        );
    }

    #[test]
    fn aws_regions_and_service_codes() {
        for ok in ["us-east-1", "global", "ap-southeast-2", "us-gov-west-1", "il-central-1"] {
            let text = format!("gates:\n  g:\n    sources:\n      - aws_health: {{ regions: [\"{ok}\"] }}\n");
            assert!(GatesFile::parse(&text).is_ok(), "{ok}");
        }
        let file = GatesFile::parse(
            "gates:\n  g:\n    sources:\n      - aws_health: { regions: [us-east-1], services: [ec2] }\n",
        );
        assert_eq!(
            file.unwrap_err().to_string(),
            "4:56: gate `g`: aws_health: `ec2` is not an AWS Health service code: they are upper case, e.g. `EC2`"
        );
        let file = GatesFile::parse(
            "gates:\n  g:\n    sources:\n      - aws_health: { regions: [us-east-1], availability_zones: [eu-west-1a] }\n",
        );
        assert_eq!(
            file.unwrap_err().to_string(),
            "4:66: gate `g`: aws_health: availability zone `eu-west-1a` is in eu-west-1, which `regions` does not list (us-east-1)"
        );
        let file = GatesFile::parse("gates:\n  g:\n    sources:\n      - aws_health: { regions: [us-east1] }\n");
        assert_eq!(
            file.unwrap_err().to_string(),
            "4:33: gate `g`: aws_health: unknown AWS region `us-east1` (did you mean `us-east-1`?); a region, or `global`"
        );
    }

    #[test]
    fn alertmanager_matchers_parse_as_alertmanager_reads_them() {
        let ok = |m: &str| matcher(m).unwrap();
        assert_eq!(ok(r#"severity="critical""#), ("severity".into(), "=", "critical".into()));
        assert_eq!(ok(r#" team =~ "web|api" "#), ("team".into(), "=~", "web|api".into()));
        assert_eq!(ok("env!=prod"), ("env".into(), "!=", "prod".into()));
        assert_eq!(ok(r#"msg="say \"hi\"\n""#), ("msg".into(), "=", "say \"hi\"\n".into()));
        assert_eq!(ok(r#"x="""#), ("x".into(), "=", String::new()));
        let err = |m: &str| matcher(m).unwrap_err();
        assert_eq!(err("a==b"), "the bare value `=b` has `=`: put the value in double quotes");
        assert_eq!(err(r#"severity="crit"#), "the quoted value is not closed with `\"`");
        assert_eq!(err(r#"team=~"(""#), "invalid regular expression `(`: error: unclosed group");
        assert!(err(r#"a!~"[z-a]""#).starts_with("invalid regular expression `[z-a]`: "), "{}", err(r#"a!~"[z-a]""#));
        assert_eq!(err("severity"), "expected =, !=, =~ or !~ after `severity`");
        assert_eq!(err("=x"), "it must start with a label name (letters, digits and `_`), e.g. severity=\"critical\"");
        assert_eq!(err("a="), "no value after `a=` (write `a=\"\"` to mean empty)");
        assert_eq!(err(r#"a="b" c"#), "unexpected `c` after the quoted value");
        assert_eq!(err(r#"a="\q""#), "unknown escape `\\q` in the quoted value");
    }

    #[test]
    fn yaml_errors_say_what_to_write() {
        let err =
            |body: &str| GatesFile::parse(&format!("gates:\n  a:\n    sources:\n{body}")).unwrap_err().to_string();
        assert_eq!(
            err("      - statuspage: { url: \"http://x\", components: Actions }\n"),
            "4:52: expected a list here: `[a, b]`, or one `- item` per line"
        );
        assert_eq!(
            err("      - http: { url: \"http://x\", expect_status: [70000] }\n"),
            "4:50: expected a whole number (0 to 65535)"
        );
        assert_eq!(
            err("      - http: { url: \"http://x\" }\n        command: { run: x }\n"),
            "5:9: one kind per entry: this entry already has one; start the next with `- `"
        );
        assert_eq!(
            err("      - statuspag: { url: \"http://x\" }\n"),
            "4:9: unknown value `statuspag` (did you mean `statuspage`?); expected one of: aws_health, statuspage, alertmanager, freeze, http, command"
        );
        let dup = GatesFile::parse("gates:\n  a:\n    sources: []\n  a:\n    sources: []\n").unwrap_err();
        assert_eq!(dup.to_string(), "4:3: duplicate key `a`");
    }

    #[test]
    fn errors_in_flow_mappings_point_at_the_value_as_written() {
        let err = |source: &str| {
            GatesFile::parse(&format!("gates:\n  g:\n    sources:\n      - {source}\n")).unwrap_err().to_string()
        };
        assert_eq!(
            err(r#"http: { url: "https://x.test/s", expect_status: [200, 999] }"#),
            "4:63: gate `g`: http.expect_status: `999` is not an HTTP status code"
        );
        assert_eq!(
            err(r#"alertmanager: { url: "http://am.test", matchers: ["severity=\"critical"] }"#),
            "4:60: gate `g`: invalid Alertmanager matcher `severity=\"critical`: the quoted value is not closed with `\"`"
        );
        assert_eq!(
            err("alertmanager: { url: 'http://am.test', matchers: ['team=''web'] }"),
            "4:60: gate `g`: invalid Alertmanager matcher `team='web`: the bare value `'web` has `'`: put the value in double quotes"
        );
        let empty = GatesFile::parse("gates:\n  g:\n    sources: []\n  h: { sources: [] }\n").unwrap_err();
        assert_eq!(empty.to_string(), "2:3: gate `g`: a gate needs at least one source");
    }

    #[test]
    fn gate_names_are_safe_in_urls_and_logs() {
        for ok in ["prod", "prod-us-east-1", "web_eu.v2", "1st"] {
            assert!(is_gate_name(ok), "{ok}");
        }
        for bad in ["", "-x", "a b", "a/b", "we:ird,gate", "über"] {
            assert!(!is_gate_name(bad), "{bad}");
        }
        let bad =
            GatesFile::parse("gates:\n  \"a/b\":\n    sources:\n      - command: { run: \"true\" }\n").unwrap_err();
        assert_eq!(
            bad.to_string(),
            "2:3: gate `a/b`: a gate name is letters, digits, `-`, `_` and `.`, starting with a letter or digit (it goes in URLs and CI logs)"
        );
    }

    #[test]
    fn parses_and_checks() {
        let ok = GatesFile::parse(
            "gates:\n  prod:\n    fail_mode: open\n    sources:\n      - statuspage: { url: \"https://status.example\", components: [API], min_impact: major }\n      - freeze: { windows: [{ start: \"0 17 * * FRI\", duration: 63h, timezone: Europe/Berlin, reason: weekend }], dates: [\"2026-12-24/2026-12-27\"] }\n",
        )
        .unwrap();
        assert_eq!(ok.gates["prod"].fail_mode, FailMode::Open);
        assert_eq!(ok.gates["prod"].sources.len(), 2);
        let bad = GatesFile::parse("gates:\n  prod:\n    sources:\n      - statuspag: { url: x }\n").unwrap_err();
        assert_eq!((bad.line, bad.column), (Some(4), Some(9)));
        assert!(bad.message.contains("statuspag"), "{bad}");
        let bad =
            GatesFile::parse("gates:\n  prod:\n    sources:\n      - freeze: { dates: [\"2026-12-27/2026-12-24\"] }\n")
                .unwrap_err();
        assert_eq!(bad.message, "gate `prod`: invalid date range `2026-12-27/2026-12-24`: it ends before it starts");
        let bad = GatesFile::parse("gates:\n  prod:\n    sources:\n      - freeze: { dates: [\"2026-02-30\"] }\n")
            .unwrap_err();
        assert_eq!(bad.message, "gate `prod`: invalid date range `2026-02-30`: 2026-02-30 is no day of the calendar");
        let bad = GatesFile::parse(
            "gates:\n  p:\n    sources:\n      - alertmanager: { url: \"http://am\", matchers: [severity] }\n",
        )
        .unwrap_err();
        assert!(bad.message.contains("invalid Alertmanager matcher `severity`"), "{bad}");
    }

    /// A file with every kind of source, to cut up in the property below.
    const EVERY_SOURCE: &str = r#"gates:
  prod-us-east-1:
    fail_mode: closed
    sources:
      - aws_health: { regions: [us-east-1, global], services: [EC2, RDS], categories: [issue], statuses: [open], availability_zones: [us-east-1a], organization: false, lookahead: 2h }
      - statuspage: { url: "https://www.githubstatus.com", components: ["Actions"], min_impact: minor }
      - alertmanager: { url: "http://127.0.0.1:9093", matchers: ['severity="critical"', 'team=~"web|api"'] }
      - freeze: { windows: [{ start: "0 17 * * FRI", duration: 63h, timezone: Europe/Berlin, reason: weekend freeze }], dates: ["2026-12-24/2026-12-27"] }
      - http: { url: "http://127.0.0.1:8080/health", expect_status: [200], expect_json: { path: "$.status", equals: "ok" } }
      - command: { run: "./checks/error-budget.sh" }
"#;

    proptest::proptest! {
        /// Any edit of a valid file is read or refused with a message, never a panic, and a
        /// refusal's place is inside the file.
        #[test]
        fn any_edit_is_read_or_refused_with_a_place(text in crate::testing::edits(EVERY_SOURCE)) {
            if let Err(e) = GatesFile::parse(&text) {
                proptest::prop_assert!(!e.message.is_empty());
                proptest::prop_assert!(e.line.is_none_or(|l| crate::testing::within(&text, l)), "{e} in {text}");
            }
        }
    }
}
