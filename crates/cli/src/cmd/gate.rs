//! `opsbook gate check|wait NAME`: may a deployment go ahead? For any CI system.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use console::style;
use opsbook_gate::{Checker, GateDef, GateResult, GatesFile, Verdict};

use super::{EXIT_OK, EXIT_WAITING, usage};

#[derive(clap::Subcommand, Debug)]
pub enum Gate {
    /// Evaluate a gate once: exit 0 when it passes, 3 when it blocks
    Check(CheckArgs),
    /// Wait until a gate passes (exit 0), or give up after --max-wait (exit 3)
    Wait(WaitArgs),
    /// Serve a CodePipeline custom action: poll its jobs and answer with the gate named
    /// in the action configuration (`Gate`, and `OnBlocked: wait|fail`)
    CodepipelineWorker(WorkerArgs),
    /// Break glass (admin, with --server): let an execution waiting on a gate go on, with
    /// a reason for the audit trail; the gate is waived for the rest of that execution
    Override(OverrideArgs),
}

#[derive(clap::Args, Debug)]
pub struct OverrideArgs {
    /// The execution waiting on a gate (id or unique prefix)
    pub id: String,
    /// Why (required; recorded in the audit trail and sent with the `overridden` notification)
    #[arg(long)]
    pub reason: String,
}

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// The custom action's category (e.g. Test, Approval, Deploy)
    #[arg(long)]
    pub category: String,
    /// The custom action's provider name
    #[arg(long)]
    pub provider: String,
    /// The custom action's version
    #[arg(long, default_value = "1")]
    pub action_version: String,
    /// The gates file (default: ./opsbook.yaml)
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub region: Option<String>,
    /// Time between polls
    #[arg(long, default_value = "30s")]
    pub poll: String,
    /// Poll once and exit (for cron-style runs and tests)
    #[arg(long)]
    pub once: bool,
    /// Where stages failed by a blocked gate (`OnBlocked: retry`) are kept until it
    /// clears (default: $XDG_DATA_HOME/opsbook/codepipeline-REGION-CATEGORY-PROVIDER-VERSION.retries.json)
    #[arg(long)]
    pub state: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The gate's name in the gates file
    pub name: String,
    /// The gates file (default: ./opsbook.yaml)
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    pub output: GateOutput,
    /// Per-source timeout
    #[arg(long, default_value = "20s")]
    pub timeout: String,
}

#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    #[command(flatten)]
    pub check: CheckArgs,
    #[arg(long, default_value = "3h")]
    pub max_wait: String,
    #[arg(long, default_value = "1m")]
    pub poll: String,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum GateOutput {
    #[default]
    Text,
    Json,
    /// Text, plus GitHub Actions annotations and a step summary ($GITHUB_STEP_SUMMARY)
    Github,
}

fn duration(flag: &str, v: &str) -> Result<Duration> {
    opsbook_core::duration::parse(v).map(|d| d.0).map_err(|e| usage(format!("--{flag}: {e}")))
}

fn load_all(path: Option<&Path>) -> Result<(PathBuf, GatesFile)> {
    let path = path.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("opsbook.yaml"));
    if !path.exists() {
        return Err(usage(format!(
            "no gates file {}: write one with `gates:` (see docs/gates.md), pass --config FILE, \
             or --server URL to use the server's gates",
            path.display()
        )));
    }
    let file = super::read_gates(&path)?;
    Ok((path, file))
}

fn load(path: Option<&Path>, name: &str) -> Result<GateDef> {
    let (path, file) = load_all(path)?;
    let names: Vec<&str> = file.gates.keys().map(String::as_str).collect();
    file.gates.get(name).cloned().ok_or_else(|| {
        let hint = opsbook_core::diagnostic::did_you_mean(name, &names)
            .map(|m| format!(" (did you mean `{m}`?)"))
            .unwrap_or_default();
        if names.is_empty() {
            return usage(format!(
                "{} defines no gates: they go in a `gates:` mapping at the top of the file (see docs/gates.md)",
                path.display()
            ));
        }
        usage(format!("no gate `{name}` in {}{hint}; gates: {}", path.display(), names.join(", ")))
    })
}

/// Where verdicts come from: the local gates file, or the server's `GET /api/v1/gates/{name}`
/// (its gates, its network, one place to keep them).
enum Judge {
    Local { name: String, gate: GateDef, checker: Checker },
    Remote { name: String, server: String, client: crate::client::Client, timeout: Duration },
}

impl Judge {
    fn new(server: Option<&str>, profile: Option<&str>, a: &CheckArgs) -> Result<Judge> {
        let timeout = duration("timeout", &a.timeout)?;
        if let Some(server) = server {
            if a.config.is_some() {
                return Err(usage("--config and --server: the server evaluates its own gates; use one or the other"));
            }
            let client = crate::client::Client::new(server, profile)?.with_timeout(timeout + Duration::from_secs(5))?;
            return Ok(Judge::Remote { name: a.name.clone(), server: server.to_string(), client, timeout });
        }
        let gate = load(a.config.as_deref(), &a.name)?;
        let checker = Checker::new(timeout).map_err(anyhow::Error::msg)?;
        Ok(Judge::Local { name: a.name.clone(), gate, checker })
    }

    /// The verdict now. A server that cannot be reached or fails is an unreadable source
    /// (fail closed: the gate's own `fail_mode` is on the server); a refusal (unknown gate,
    /// no permission) is an error.
    async fn check(&self) -> Result<GateResult> {
        match self {
            Judge::Local { name, gate, checker } => Ok(checker.check(name, gate, jiff::Timestamp::now()).await),
            Judge::Remote { name, server, client, timeout } => {
                let started = Instant::now();
                // The server gives each source this long too (at most its own 20 s).
                let path = format!(
                    "/api/v1/gates/{}?timeout={}",
                    crate::client::enc(name),
                    crate::client::enc(&opsbook_core::Dur(*timeout).to_string())
                );
                let error = match client.get::<serde_json::Value>(&path).await {
                    Ok(doc) => match serde_json::from_value::<GateResult>(doc) {
                        Ok(r) => return Ok(r),
                        Err(e) => format!("{server}{path}: not a gate verdict: {e}"),
                    },
                    Err(e) if super::is_usage(&e) => return Err(e),
                    Err(e) => e.to_string(),
                };
                Ok(GateResult {
                    gate: name.clone(),
                    verdict: Verdict::Unknown,
                    checked_at: opsbook_api::time(Some(opsbook_store::now_ms())).unwrap_or_default(),
                    sources: vec![opsbook_gate::SourceResult {
                        kind: "server".into(),
                        verdict: Verdict::Unknown,
                        error: Some(error),
                        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                        records: Vec::new(),
                    }],
                    records: Vec::new(),
                    fail_mode: opsbook_gate::FailMode::Closed,
                })
            }
        }
    }
}

/// Where a block record applies: region / availability zone / service, as far as known.
fn place(b: &opsbook_gate::BlockRecord) -> String {
    [b.region.as_deref(), b.availability_zone.as_deref(), b.service.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" / ")
}

fn print_text(r: &GateResult) {
    let verdict = match r.verdict {
        Verdict::Clear => style("clear").green().bold(),
        Verdict::Blocked => style("blocked").red().bold(),
        Verdict::Unknown => style("unknown").yellow().bold(),
    };
    println!("gate {}: {verdict}", style(&r.gate).bold());
    for s in &r.sources {
        let err = s.error.as_deref().map(|e| format!(" — {e}")).unwrap_or_default();
        println!("  {:<13} {:<8} {:>5}ms{err}", s.kind, s.verdict.as_str(), s.duration_ms);
    }
    if !r.records.is_empty() {
        let mut t = Table::new();
        t.load_style(UTF8_FULL_CONDENSED);
        let clock = super::history::Clock::new();
        let since = format!("Since ({})", clock.label);
        t.set_header(vec!["Source", "What", "Where", &since, "Link"]);
        for b in &r.records {
            let place = place(b);
            t.add_row(vec![
                b.source.clone(),
                b.title.clone(),
                place,
                // A time a source gave that is not RFC 3339 shows as it came.
                match clock.show_text(b.started_at.as_deref()) {
                    shown if shown.is_empty() => b.started_at.clone().unwrap_or_default(),
                    shown => shown,
                },
                b.url.clone().unwrap_or_default(),
            ]);
        }
        println!("{t}");
    }
}

/// On stderr, whatever the output format: why an unknown verdict passes or blocks.
fn explain_unknown(r: &GateResult) {
    if r.verdict == Verdict::Unknown {
        let what = r.unreadable().join("; ");
        if r.passes() {
            eprintln!(
                "{} passing under fail_mode: open although {what}",
                style("warning:").yellow().bold().for_stderr()
            );
        } else {
            eprintln!("blocking under fail_mode: closed because {what}");
        }
    }
}

/// A workflow command's message, escaped as GitHub's runner reads it back.
fn gh_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// A workflow command's property value (`title=`): also `:` and `,`.
fn gh_property(s: &str) -> String {
    gh_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// GitHub Actions annotations on the log.
fn annotations(r: &GateResult) {
    let title = gh_property(&format!("opsbook gate {}", r.gate));
    for b in &r.records {
        println!("::error title={title}::{}", gh_data(&format!("{}: {}", b.source, b.title)));
    }
    for u in r.unreadable() {
        let level = if r.passes() { "warning" } else { "error" };
        println!("::{level} title={title}::{}", gh_data(&u));
    }
}

/// Under GitHub Actions (`$GITHUB_STEP_SUMMARY` set), whatever the output format: a step
/// summary with the verdict and the block records.
fn step_summary(r: &GateResult, note: Option<&str>) {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) else { return };
    let mut md = format!("### opsbook gate `{}`: {}\n\n", r.gate, r.verdict.as_str());
    if !r.records.is_empty() {
        md.push_str("| Source | What | Where | Since | Link |\n|---|---|---|---|---|\n");
        for b in &r.records {
            let place = place(b);
            let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                cell(&b.source),
                cell(&b.title),
                cell(&place),
                cell(b.started_at.as_deref().unwrap_or("")),
                b.url.as_deref().map(|u| format!("[link]({u})")).unwrap_or_default()
            ));
        }
    }
    for u in r.unreadable() {
        md.push_str(&format!("\n- could not read {u}\n"));
    }
    if let Some(note) = note {
        md.push_str(&format!("\n{}\n", note.replace('\n', " ")));
    }
    // A summary is a report: failing to write it must not change the verdict's exit code.
    if let Err(e) =
        std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| f.write_all(md.as_bytes()))
    {
        eprintln!(
            "{} cannot write the step summary to {}: {e}",
            style("warning:").yellow().bold().for_stderr(),
            std::path::Path::new(&path).display()
        );
    }
}

fn report(r: &GateResult, output: GateOutput) -> Result<()> {
    report_with(r, output, None)
}

/// `report`, with a line for the step summary (what a wait went through).
fn report_with(r: &GateResult, output: GateOutput, note: Option<&str>) -> Result<()> {
    explain_unknown(r);
    match output {
        GateOutput::Json => println!("{}", serde_json::to_string_pretty(&r.document())?),
        GateOutput::Text => print_text(r),
        GateOutput::Github => {
            print_text(r);
            annotations(r);
        }
    }
    step_summary(r, note);
    Ok(())
}

/// Exit code after Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

/// Runs a gate command until it ends or Ctrl-C / SIGTERM arrives. Then the command is
/// dropped mid-check, which kills the process groups of running `command` sources (a
/// signal would otherwise end this process and leave them running).
/// `server` is where overrides go; checks ask it only when it was named (`explicit`):
/// a CI job's verdict never depends on who is logged in on the machine.
pub async fn exec(server: Option<&str>, explicit: bool, profile: Option<&str>, cmd: Gate) -> Result<u8> {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut int, mut term) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
    let to = Target { server, explicit, profile };
    tokio::select! {
        code = exec_until_done(to, cmd) => code,
        _ = int.recv() => interrupted(),
        _ = term.recv() => interrupted(),
    }
}

fn interrupted() -> Result<u8> {
    eprintln!("\ninterrupted: the check was abandoned and its commands killed");
    Ok(EXIT_INTERRUPTED)
}

/// Where a gate command talks to.
#[derive(Clone, Copy)]
struct Target<'a> {
    server: Option<&'a str>,
    explicit: bool,
    profile: Option<&'a str>,
}

async fn exec_until_done(to: Target<'_>, cmd: Gate) -> Result<u8> {
    let checks_on = if to.explicit { to.server } else { None };
    match cmd {
        Gate::Override(o) => {
            let Some(server) = to.server else {
                return Err(usage(
                    "override applies to executions on a server: pass --server URL (a local `opsbook run` \
                     waiting on a gate stops with Ctrl-C)",
                ));
            };
            if o.reason.trim().is_empty() {
                return Err(usage("--reason: say why the gate is overridden (it goes to the audit trail)"));
            }
            let client = crate::client::Client::new(server, to.profile)?;
            let path = format!("/api/v1/executions/{}/override", crate::client::enc(&o.id));
            let done: opsbook_api::Overridden =
                client.post(&path, &opsbook_api::Override { reason: o.reason.clone() }).await?;
            println!(
                "overrode gate step {} of execution {}: the execution goes on (was: {})",
                done.gate_steps.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "),
                done.execution,
                done.blocked_by.as_deref().unwrap_or("waiting on a gate")
            );
            Ok(EXIT_OK)
        }
        Gate::CodepipelineWorker(w) => {
            if checks_on.is_some() {
                return Err(usage(
                    "codepipeline-worker evaluates the gates of its own gates file (--config): run it without --server",
                ));
            }
            let (_, file) = load_all(w.config.as_deref())?;
            let poll = duration("poll", &w.poll)?;
            let client = opsbook_gate::codepipeline::client(w.region).await.map_err(|e| anyhow::anyhow!(e))?;
            // A state file per region and action: workers of other regions or actions (even
            // on this host) keep their own.
            let state = w.state.unwrap_or_else(|| {
                let region = client.region().to_string();
                let part = |s: &str| s.replace(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'), "_");
                let name = format!(
                    "codepipeline-{}-{}-{}-{}.retries.json",
                    part(&region),
                    part(&w.category),
                    part(&w.provider),
                    part(&w.action_version)
                );
                super::default_db().with_file_name(name)
            });
            let cfg = opsbook_gate::codepipeline::WorkerConfig {
                category: w.category,
                provider: w.provider,
                version: w.action_version,
                gates: file.gates,
                max_batch: 5,
                state,
            };
            let checker = Checker::new(Duration::from_secs(20)).map_err(anyhow::Error::msg)?;
            loop {
                match opsbook_gate::codepipeline::poll_once(&client, &cfg, &checker).await {
                    Ok(done) => {
                        for (what, outcome) in done {
                            println!("{what}: {outcome}");
                        }
                    }
                    Err(e) if w.once => return Err(anyhow::anyhow!(e)),
                    Err(e) => eprintln!("{} {e}", style("warning:").yellow().bold().for_stderr()),
                }
                if w.once {
                    return Ok(EXIT_OK);
                }
                tokio::time::sleep(poll).await;
            }
        }
        Gate::Check(a) => {
            let judge = Judge::new(checks_on, to.profile, &a)?;
            let r = judge.check().await?;
            report(&r, a.output)?;
            Ok(if r.passes() { EXIT_OK } else { EXIT_WAITING })
        }
        Gate::Wait(w) => {
            let a = w.check;
            let max_wait = duration("max-wait", &w.max_wait)?;
            let poll = duration("poll", &w.poll)?;
            // Polled faster, a status page or Alertmanager would be hammered for nothing.
            if poll < Duration::from_millis(100) {
                return Err(usage(format!("--poll {}: poll at most every 100ms", w.poll)));
            }
            let judge = Judge::new(checks_on, to.profile, &a)?;
            let started = Instant::now();
            let mut said: Vec<String> = Vec::new();
            loop {
                let r = judge.check().await?;
                if r.passes() {
                    if started.elapsed() > poll / 2 {
                        eprintln!(
                            "gate {} is clear after {}",
                            a.name,
                            opsbook_core::duration::human_ms(started.elapsed().as_millis() as u64)
                        );
                    }
                    // The summary keeps what the deployment waited for.
                    let note = (!said.is_empty()).then(|| {
                        format!(
                            "Waited {} for it to clear: {}",
                            opsbook_core::duration::human_ms(started.elapsed().as_millis() as u64),
                            said.join("; ")
                        )
                    });
                    report_with(&r, a.output, note.as_deref())?;
                    return Ok(EXIT_OK);
                }
                let waited = started.elapsed();
                if waited >= max_wait {
                    // The summary says how long the deployment waited before giving up.
                    let note = format!(
                        "Waited {} (--max-wait {}); still {}",
                        opsbook_core::duration::human_ms(waited.as_millis() as u64),
                        opsbook_core::Dur(max_wait),
                        r.verdict.as_str()
                    );
                    report_with(&r, a.output, Some(&note))?;
                    eprintln!(
                        "gate {} still {} after {}: giving up",
                        a.name,
                        r.verdict.as_str(),
                        opsbook_core::Dur(max_wait)
                    );
                    return Ok(EXIT_WAITING);
                }
                // The reasons in full when they change; a short line while they stay the same.
                let why: Vec<String> =
                    r.records.iter().map(|b| format!("{}: {}", b.source, b.title)).chain(r.unreadable()).collect();
                let since = if waited.as_secs() == 0 {
                    String::new()
                } else {
                    format!(" for {}", opsbook_core::duration::human_ms(waited.as_millis() as u64))
                };
                if why != said {
                    eprintln!(
                        "gate {} {}{since} — {}; checking again every {}",
                        a.name,
                        r.verdict.as_str(),
                        why.join("; "),
                        opsbook_core::Dur(poll)
                    );
                    said = why;
                } else {
                    eprintln!("gate {} still {}{since} (same reasons)", a.name, r.verdict.as_str());
                }
                // The last check lands on the deadline, not a poll after it.
                tokio::time::sleep(poll.min(max_wait - waited)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn workflow_commands_are_escaped() {
        assert_eq!(super::gh_data("50% down\r\nsince 10:00, still"), "50%25 down%0D%0Asince 10:00, still");
        assert_eq!(super::gh_property("opsbook gate a:b,c"), "opsbook gate a%3Ab%2Cc");
    }
}
