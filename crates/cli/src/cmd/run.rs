//! `opsbook run FILE`: check parameters, then execute (or show a dry run).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use console::style;
use opsbook_core::{ExecStatus, LifecycleStatus, ParamValues, Runbook, StepKind};
use opsbook_engine::{ApprovalPrompt, Hooks, Quiet, StartRequest, cancel_pair};

use super::{EXIT_FAILED, EXIT_INVALID, EXIT_OK, EXIT_WAITING};
use crate::Output;
use crate::prompt::TerminalPrompt;
use crate::render::Live;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The runbook file
    pub file: PathBuf,
    /// A parameter value (repeatable)
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    #[command(flatten)]
    pub secret: super::SecretArgs,
    /// A YAML file of parameter values (-p wins)
    #[arg(long, value_name = "FILE")]
    pub params_file: Option<PathBuf>,
    /// Print every rendered step (secrets masked) and run nothing (drafts too)
    #[arg(long)]
    pub dry_run: bool,
    /// Run a runbook whose status is draft
    #[arg(long)]
    pub allow_draft: bool,
    /// YAML file with the `gates:` that `gate: { use: NAME }` steps name
    /// (default: opsbook.yaml beside the runbook, else in the current directory)
    #[arg(long, value_name = "FILE")]
    pub gates: Option<PathBuf>,
    /// How to print: text for people, or json (one document on stdout) for programs
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

pub async fn exec(db: Option<opsbook_store::DatabaseUrl>, args: Args) -> Result<u8> {
    let rb = super::load_runbook(&args.file)?;
    let mut inputs = super::gather_params(&args.params, args.params_file.as_deref(), &args.secret)?;
    // Required secrets not given: asked for on a terminal, never echoed.
    inputs.extend(super::prompt_secrets(&super::missing_secrets(&rb, &inputs))?);
    let params = match rb.check_params(&inputs) {
        Ok(p) => p,
        Err(errors) => return Ok(refuse_params(&errors, args.output)),
    };
    // A dry run of a draft is how a draft is tried: it runs nothing.
    opsbook_engine::check_lifecycle(&rb, args.allow_draft || args.dry_run)?;
    if args.dry_run {
        return dry_run(&rb, &params, args.output);
    }
    let gates = load_gates(&rb, &args)?;
    // The runbooks it calls read, parse and take the parameters given, with no cycle.
    // So are the inventories its targets come from, before any step runs.
    let found = opsbook_core::step::call::check_calls(&args.file, &rb).into_iter();
    if let Some(d) = found.chain(opsbook_core::step::targets::check_inventories(&args.file, &rb)).next() {
        return Err(super::usage(d.headline(&args.file.display().to_string())));
    }
    let mut engine = super::open(db).await?;
    engine.config.gates = opsbook_core::gate::GateBook::new(gates);
    let base_dir =
        args.file.canonicalize().ok().and_then(|p| p.parent().map(PathBuf::from)).unwrap_or_else(|| PathBuf::from("."));
    let (handle, cancel) = cancel_pair();
    super::watch_signals(handle.clone(), super::OnCancel::running(rb.on_failure));
    let live = Live::new(rb.steps.len());
    let json = args.output == Output::Json;
    let user = super::os_user();
    let prompt: Option<Arc<dyn ApprovalPrompt>> = (TerminalPrompt::available() && !json).then(|| {
        Arc::new(TerminalPrompt { progress: live.progress(), user: user.clone(), cancel: cancel.clone() }) as _
    });
    let hooks = Hooks { observer: if json { &Quiet } else { &live }, prompt, cancel, cancel_handle: handle };
    let req = StartRequest {
        runbook: rb,
        source_path: Some(args.file.to_string_lossy().into_owned()),
        base_dir,
        params,
        actor: user,
        allow_draft: args.allow_draft,
    };
    let outcome = engine.start(req, &hooks).await?;
    finish(&engine, &outcome.execution_id, args.output).await
}

/// The named gates the runbook's `gate` steps use; every name must exist before anything runs.
fn load_gates(rb: &Runbook, args: &Args) -> Result<std::collections::BTreeMap<String, opsbook_core::gate::GateDef>> {
    let path = super::gates_file_for(&args.file, args.gates.as_deref());
    let gates = match &path {
        Some(p) => super::read_gates(p)?.gates,
        None => Default::default(),
    };
    let unknown = |s: &opsbook_core::Step| matches!(&s.kind, StepKind::Gate(g) if g.use_gate.as_ref().is_some_and(|n| !gates.contains_key(n)));
    if rb.steps.iter().any(unknown) {
        // The file was read and parsed just before: read again only to place the name.
        let text = opsbook_core::read_document_text(&args.file).unwrap_or_default();
        if let Some(d) = super::unknown_gates(&text, &gates, path.as_deref()).into_iter().next() {
            return Err(super::usage(d.headline(&args.file.display().to_string())));
        }
    }
    Ok(gates)
}

/// Prints the result of an execution and returns the exit code for its status.
pub async fn finish(engine: &opsbook_engine::Engine, id: &str, output: Output) -> Result<u8> {
    let doc = super::logs::doc(&engine.store, id).await?;
    match output {
        Output::Json => say!("{}", serde_json::to_string_pretty(&doc)?),
        Output::Text => print_summary(engine, &doc).await,
    }
    Ok(match doc.summary.status {
        ExecStatus::Succeeded => EXIT_OK,
        ExecStatus::Waiting => EXIT_WAITING,
        // Stopped, with a manual rollback waiting for a person.
        _ if doc.waits_for_confirmation().is_some() => EXIT_WAITING,
        _ => EXIT_FAILED,
    })
}

/// [`crate::view::print_summary`] of an execution in the local database, which tells
/// whether a failed execution has rollbacks left to run.
pub async fn print_summary(engine: &opsbook_engine::Engine, doc: &opsbook_api::ExecutionDoc) {
    let failed = doc.summary.status == ExecStatus::Failed && doc.rollback.status.is_none();
    // What `opsbook rollback` would answer (no secret needed to find out).
    let none_left = failed && matches!(engine.check_resume(&doc.summary.id, &Default::default(), true).await, Ok(true));
    crate::view::print_summary(doc, crate::view::Where::Here, !none_left);
}

/// A dry run of a runbook (a published one, fetched from a server) after checking the
/// parameters, as `run --dry-run` does for a file.
pub fn dry_run_checked(
    rb: &Runbook,
    inputs: &std::collections::BTreeMap<String, opsbook_core::Input>,
    output: Output,
) -> Result<u8> {
    match rb.check_params(inputs) {
        Ok(params) => dry_run(rb, &params, output),
        Err(errors) => Ok(refuse_params(&errors, output)),
    }
}

fn dry_run(rb: &Runbook, params: &ParamValues, output: Output) -> Result<u8> {
    let steps = opsbook_engine::plan::plan(rb, params);
    if output == Output::Json {
        let doc = serde_json::json!({
            "runbook": { "name": rb.name, "version": rb.version.to_string(), "sha256": rb.sha256, "status": rb.status.as_str() },
            "dry_run": true,
            "params": params.masked(),
            "steps": steps.iter().map(|s| serde_json::json!({
                "id": s.id, "name": s.name, "kind": s.kind, "action": s.action,
                "env": s.env.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                "when": s.when.as_ref().map(|(w, v)| serde_json::json!({"expression": w, "value": v})),
                "timeout": s.timeout, "attempts": s.attempts, "required": s.required,
                "rollback": s.rollback,
            })).collect::<Vec<_>>(),
        });
        say!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(EXIT_OK);
    }
    say!("Dry run of {} v{} — nothing will run", style(&rb.name).bold(), rb.version);
    // What a real run would meet, said before the steps.
    let status = match rb.status {
        LifecycleStatus::Draft => Some("a draft: a real run is refused (locally, `--allow-draft` tries it)"),
        LifecycleStatus::Archived => Some("archived: a real run is refused"),
        LifecycleStatus::Deprecated => Some("deprecated: a real run warns; prefer its replacement"),
        LifecycleStatus::Active => None,
    };
    if let Some(s) = status {
        say!("  {} {s}", style("note:").yellow().bold());
    }
    for p in &rb.prerequisites {
        let check = p.check.as_ref().map(|c| format!(": {}", c.template)).unwrap_or_default();
        say!("  prerequisite: {}{check}", p.description);
    }
    for (i, s) in steps.iter().enumerate() {
        say!(
            "\n{} {} {} {}",
            style(format!("[{}/{}]", i + 1, rb.steps.len())).dim(),
            style(&s.id).bold(),
            style(s.kind).cyan(),
            style(format!(
                "timeout {} · attempts {}{}",
                s.timeout,
                s.attempts,
                if s.required { "" } else { " · optional" }
            ))
            .dim()
        );
        if let Some((w, v)) = &s.when {
            say!("    when {w} → {v}");
        }
        for line in s.action.lines() {
            say!("    {line}");
        }
        for (k, v) in &s.env {
            say!("    {} {k}={v}", style("env").dim());
        }
        if let Some(r) = &s.rollback {
            say!("    {} {r}", style("rollback:").magenta());
        }
    }
    Ok(EXIT_OK)
}

/// Says which parameters were refused (on standard error; as JSON on standard output
/// too, for `--output json`), and that nothing ran.
fn refuse_params(errors: &[opsbook_core::ParamError], output: Output) -> u8 {
    for e in errors {
        // The names and values quoted are as typed: shown as plain text.
        let e = opsbook_core::terminal::plain_text(&e.to_string());
        say_err!("{} {e}", style("error:").red().bold().for_stderr());
    }
    let summary =
        format!("nothing ran: {} invalid parameter{}", errors.len(), if errors.len() == 1 { "" } else { "s" });
    say_err!("{summary}");
    if output == Output::Json {
        let details = errors.iter().map(|e| serde_json::json!({ "param": e.param, "message": e.message })).collect();
        super::print_refusal(EXIT_INVALID, &summary, Some(serde_json::Value::Array(details)));
    }
    EXIT_INVALID
}
