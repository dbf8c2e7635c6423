//! The subcommands, one per file, and what they share.

pub mod admin;
pub mod approve;
pub mod archive;
pub mod cancel;
pub mod confirm;
pub mod doc;
mod files;
pub mod gate;
pub mod history;
pub mod insights;
pub mod list;
pub mod login;
pub mod logs;
pub mod new;
mod params;
pub mod push;
pub mod quality;
pub mod registry;
pub mod remote;
pub mod report;
pub mod resume;
pub mod run;
pub mod schedules;
pub mod serve;
pub mod show;
pub mod test;
pub mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use opsbook_core::Runbook;
use opsbook_engine::{Engine, EngineConfig};
use opsbook_store::DatabaseUrl;
use opsbook_store_any::AnyStore;

use crate::{Cli, Command};

pub use params::{SecretArgs, as_json, collect_params, gather_params, missing_secrets, prompt_secrets, read_hidden};

/// Exit codes (also in the README).
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_INVALID: u8 = 2;
pub const EXIT_WAITING: u8 = 3;
/// The server could not be reached, or answered that it is unavailable (502, 503, 504):
/// what was asked may not have been done; worth a retry.
pub const EXIT_UNAVAILABLE: u8 = 4;

/// An error that says which exit code it ends the command with.
#[derive(Debug)]
pub struct Coded {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// A problem with what the user asked for: exit code 2, nothing ran.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded { code: EXIT_INVALID, message: msg.into() })
}

/// Whether `e` is a problem with what the user asked for ([`usage`]).
pub fn is_usage(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Coded>().is_some_and(|c| c.code == EXIT_INVALID)
}

/// The server could not be reached, or said it is unavailable: exit code 4.
pub fn unavailable(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded { code: EXIT_UNAVAILABLE, message: msg.into() })
}

pub fn exit_code_of(e: &anyhow::Error) -> u8 {
    if let Some(coded) = e.downcast_ref::<Coded>() {
        return coded.code;
    }
    if let Some(e) = e.downcast_ref::<opsbook_engine::Error>() {
        return match e {
            opsbook_engine::Error::Invalid(_) | opsbook_engine::Error::Params(_) => EXIT_INVALID,
            opsbook_engine::Error::Store(s) => store_code(s),
            opsbook_engine::Error::Io(_) => EXIT_FAILED,
        };
    }
    if let Some(s) = e.downcast_ref::<opsbook_store::Error>() {
        return store_code(s);
    }
    EXIT_FAILED
}

fn store_code(e: &opsbook_store::Error) -> u8 {
    match e {
        opsbook_store::Error::NotFound(_)
        | opsbook_store::Error::Ambiguous { .. }
        | opsbook_store::Error::Conflict(_) => EXIT_INVALID,
        _ => EXIT_FAILED,
    }
}

/// Whether `--server` was given on the command line (not taken from `OPSBOOK_SERVER` or a
/// login profile).
fn server_flag_given(cli: &Cli) -> bool {
    cli.server.as_ref().is_some_and(|s| std::env::var("OPSBOOK_SERVER").ok().as_ref() != Some(s))
}

/// Whether `--database` or `--db` was given on the command line (not taken from the
/// environment).
fn database_flag_given(cli: &Cli) -> bool {
    let from_env = |var: &str, value: &std::ffi::OsStr| std::env::var_os(var).is_some_and(|v| v == value);
    cli.database.as_ref().is_some_and(|d| !from_env("OPSBOOK_DATABASE_URL", std::ffi::OsStr::new(d)))
        || cli.db.as_ref().is_some_and(|d| !from_env("OPSBOOK_DB", d.as_os_str()))
}

pub async fn dispatch(cli: Cli) -> Result<u8> {
    let (server, explicit) = server_for(&cli)?;
    // Admin commands run here on a database named on the command line, even with a server
    // named by the environment (or a login).
    let admin_here = database_flag_given(&cli) && !server_flag_given(&cli);
    let db = match &cli.database {
        Some(url) => {
            let parsed = DatabaseUrl::parse(url).map_err(|e| usage(format!("--database: {e}")))?;
            let _ = DB_CHOSEN_BY.set(if std::env::var("OPSBOOK_DATABASE_URL").is_ok_and(|v| v == *url) {
                "OPSBOOK_DATABASE_URL"
            } else {
                "--database"
            });
            Some(parsed)
        }
        None => cli.db.map(DatabaseUrl::Sqlite),
    };
    let profile = cli.profile.clone();
    if let Some(url) = &server {
        let client = || crate::client::Client::new(url, profile.as_deref());
        if let Some(why) = local_only(&cli.command, explicit) {
            return Err(usage(why));
        }
        match &cli.command {
            Command::Run(a) => {
                let mut inputs = gather_params(&a.params, a.params_file.as_deref(), &a.secret)?;
                let name = a.file.to_string_lossy();
                if a.dry_run {
                    // What the published version would run, rendered here: nothing is
                    // submitted (a server never runs a dry run).
                    let published = remote::published(&client()?, &name).await?;
                    return run::dry_run_checked(&published, &inputs, a.output);
                }
                if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                    // Required secrets not given: asked for, as a local run does.
                    let published = remote::published(&client()?, &name).await?;
                    inputs.extend(prompt_secrets(&missing_secrets(&published, &inputs))?);
                }
                let params = as_json(inputs);
                return remote::run(&client()?, &name, params, a.output).await;
            }
            Command::History(a) => return remote::history(&client()?, a).await,
            Command::Schedules(c) => return schedules::exec(&client()?, c).await,
            Command::Analytics(a) => return insights::analytics(&client()?, a).await,
            Command::Report(a) => return report::exec(&client()?, a).await,
            Command::Audit(a) => return insights::audit(&client()?, a).await,
            Command::Tokens(c) => return insights::tokens(&client()?, c).await,
            Command::Show(a) => return remote::show(&client()?, &a.id, a.output).await,
            Command::List(a) if a.dir.is_some() => {
                return Err(usage(
                    "with a server, list shows its registry: drop the directory, or list files here with --local",
                ));
            }
            Command::List(a) => return registry::list(&client()?, &a.filters, a.output).await,
            Command::Search(a) => {
                let filters = registry::Filters { search: Some(a.query.clone()), ..a.filters.clone() };
                return registry::list(&client()?, &filters, a.output).await;
            }
            Command::Versions(a) => return registry::versions(&client()?, a).await,
            Command::Diff(a) => return registry::diff(&client()?, a).await,
            Command::Lifecycle(a) => return registry::lifecycle(&client()?, a).await,
            Command::Logs(a) => return remote::logs(&client()?, a).await,
            Command::Approve(a) | Command::Reject(a) if !a.params.is_empty() => {
                return Err(usage("-p is not needed with --server: the server keeps what its executions need"));
            }
            Command::Approve(a) => return remote::decide(&client()?, &a.id, true, a.comment.clone(), a.output).await,
            Command::Reject(a) => return remote::decide(&client()?, &a.id, false, a.comment.clone(), a.output).await,
            Command::Cancel(a) => return remote::cancel(&client()?, &a.id, a.output).await,
            Command::Confirm(a) => return confirm::remote(&client()?, a).await,
            Command::Feedback(a) => return quality::feedback_remote(&client()?, a).await,
            Command::Review(a) => return quality::review(&client()?, a).await,
            Command::Export(_) => {
                let Command::Export(a) = cli.command else { unreachable!() };
                return archive::export(Err(client()?), a).await;
            }
            Command::Import(_) => {
                return Err(usage(
                    "import writes a database: run it on the server's machine without --server \
                     (with --db or --database naming the server's database)",
                ));
            }
            Command::Resume(a) | Command::Rollback(a) => {
                let rollback = matches!(cli.command, Command::Rollback(_));
                let params = as_json(gather_params(&a.params, None, &a.secret)?);
                return remote::resume(&client()?, &a.id, params, rollback, a.output).await;
            }
            Command::Admin(_) if admin_here => {}
            // Never answer for the server from a local database (an empty one says "intact").
            Command::Admin(_) => {
                return Err(usage(
                    "admin commands work on the server's database: run them on the server's machine \
                     without --server (and with --database URL, or --db PATH, if it is not the default)",
                ));
            }
            _ => {}
        }
    }
    let profile = cli.profile.as_deref();
    match cli.command {
        Command::Serve(a) => serve::exec(db, a).await,
        Command::Worker(a) => serve::worker(db, a).await,
        Command::Push(a) => push::exec(server, profile, a).await,
        Command::Login(a) => login::exec(if explicit { server } else { None }, profile, a).await,
        Command::Admin(a) => admin::exec(db, &cli.typed, a).await,
        Command::Gate(g) => gate::exec(server.as_deref(), explicit, profile, g).await,
        Command::Run(a) => run::exec(db, a).await,
        Command::Validate(a) => validate::exec(a),
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&opsbook_core::json_schema())?);
            Ok(EXIT_OK)
        }
        Command::New(a) => new::exec(a),
        Command::Doc(a) => doc::exec(a),
        Command::Test(a) => test::exec(a).await,
        Command::List(a) => list::exec(a),
        Command::Completions { shell } => {
            let mut cli = crate::command();
            clap_complete::generate(shell, &mut cli, "opsbook", &mut std::io::stdout());
            Ok(EXIT_OK)
        }
        Command::Man { dir: Some(dir) } => {
            let cli = crate::command();
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cli, &dir)
                .with_context(|| format!("cannot write the pages to {}", dir.display()))?;
            say!("manual pages written to {} (read one with `man -l {}/opsbook-run.1`)", dir.display(), dir.display());
            Ok(EXIT_OK)
        }
        Command::Man { dir: None } => {
            let cli = crate::command();
            match clap_mangen::Man::new(cli).render(&mut std::io::stdout()) {
                // `opsbook man | head`: the reader had enough.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(EXIT_OK),
                other => other.map(|()| EXIT_OK).map_err(Into::into),
            }
        }
        Command::Search(_) | Command::Versions(_) | Command::Diff(_) | Command::Lifecycle(_) | Command::Review(_) => {
            Err(usage("this reads the server's registry: `opsbook login URL` first, or pass --server URL"))
        }
        Command::Schedules(_) | Command::Analytics(_) | Command::Report(_) | Command::Audit(_) | Command::Tokens(_) => {
            Err(usage(
                "this asks a server: `opsbook login URL` first, or pass --server URL (on the server's machine, \
             `opsbook admin` reads its database)",
            ))
        }
        Command::History(a) => history::exec(db, a).await,
        Command::Show(a) => show::exec(db, a).await,
        Command::Logs(a) => logs::exec(db, a).await,
        Command::Approve(a) => approve::exec(db, a, approve::Decision::Approve).await,
        Command::Reject(a) => approve::exec(db, a, approve::Decision::Reject).await,
        Command::Resume(a) => resume::exec(db, a, resume::Mode::Resume).await,
        Command::Rollback(a) => resume::exec(db, a, resume::Mode::Rollback).await,
        Command::Cancel(a) => cancel::exec(db, a).await,
        Command::Confirm(a) => confirm::exec(db, a).await,
        Command::Feedback(a) => quality::feedback(db, a).await,
        Command::Export(a) => archive::export(Ok(open(db).await?.store), a).await,
        Command::Import(a) => archive::import(&open(db).await?.store, a).await,
    }
}

/// The server commands talk to, and whether it was asked for (`--server`,
/// `OPSBOOK_SERVER`) rather than taken from the login profile. A profile is used unless
/// `--local`, `--db` or `--database` says to stay local.
fn server_for(cli: &Cli) -> Result<(Option<String>, bool)> {
    // `--local` wins over OPSBOOK_SERVER from the environment (a flag beats a setting);
    // with `--server` given too, the two say opposite things.
    let from_env = std::env::var("OPSBOOK_SERVER").ok().filter(|v| !v.is_empty());
    if cli.local && cli.server.is_some() && cli.server != from_env {
        return Err(usage("--local and --server: choose one"));
    }
    if let Some(s) = cli.server.as_ref().filter(|_| !cli.local) {
        // A command that only ever acts here runs here under OPSBOOK_SERVER (a CI job
        // sets it for `push` and also runs `validate`); asked for with --server, it is
        // refused (see `local_only`).
        if from_env.as_ref() == Some(s) && no_server_form(&cli.command).is_some() {
            return Ok((None, false));
        }
        return Ok((Some(s.clone()), true));
    }
    let stays_local = cli.local || cli.db.is_some() || cli.database.is_some();
    // Commands that work here only never go to a login profile's server.
    let here_only =
        matches!(cli.command, Command::Login(_) | Command::Admin(_)) || no_server_form(&cli.command).is_some();
    if stays_local || here_only {
        return Ok((None, false));
    }
    let creds = crate::client::Credentials::load()?;
    Ok((creds.profile(cli.profile.as_deref())?.map(|(_, p)| p.server.clone()), false))
}

/// Why a command cannot go to a server, when it has no server form. Asked for
/// explicitly, that is an error; with a login profile, such commands simply run here.
/// A runbook file given to `run` with a profile's server is a mistake either way.
fn local_only(command: &Command, explicit: bool) -> Option<String> {
    if let Command::Run(a) = command
        && !explicit
        && a.file.is_file()
    {
        return Some(format!(
            "`{}` is a file, and you are logged in to a server (which runs published runbooks by name): \
             run it here with --local, or publish it with `opsbook push` and run it by name",
            a.file.display()
        ));
    }
    let name = no_server_form(command)?;
    explicit.then(|| format!("{name} and has no server form: drop --server, or use `opsbook --local`"))
}

/// What a command that only ever acts here does (for the refusal of `--server`).
fn no_server_form(command: &Command) -> Option<&'static str> {
    Some(match command {
        Command::Validate(_) => "validate checks files here",
        Command::Schema => "schema prints the runbook format",
        Command::Completions { .. } => "completions prints shell completions",
        Command::Man { .. } => "man prints the manual page",
        Command::New(_) => "new writes a file here",
        Command::Doc(_) => "doc renders a file here",
        Command::Test(_) => "test runs runbooks' tests here",
        Command::Serve(_) => "serve runs a server here",
        Command::Worker(_) => "worker runs executions here",
        _ => return None,
    })
}

/// `$XDG_DATA_HOME/opsbook/opsbook.db`, falling back to `~/.local/share`.
pub fn default_db() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("opsbook").join("opsbook.db")
}

/// Set when `--database URL` (or `OPSBOOK_DATABASE_URL`) chose the database.
static DB_CHOSEN_BY: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Where the database is, and what chose it.
#[derive(Debug, Clone)]
pub struct DbChoice {
    pub url: DatabaseUrl,
    pub chosen_by: &'static str,
}

/// Every command finds the database the same way: `--database URL` (or
/// `OPSBOOK_DATABASE_URL`), else `--db` (or `OPSBOOK_DB`), else the `database_url` or `db`
/// of `./opsbook.toml` (the file `opsbook serve` reads), else the default.
pub fn resolve_db(flag: Option<DatabaseUrl>) -> Result<DbChoice> {
    if let Some(url) = flag {
        let chosen_by = match DB_CHOSEN_BY.get() {
            Some(by) => by,
            None if std::env::var_os("OPSBOOK_DB")
                .is_some_and(|v| matches!(&url, DatabaseUrl::Sqlite(p) if p.as_os_str() == v)) =>
            {
                "OPSBOOK_DB"
            }
            None => "--db",
        };
        return Ok(DbChoice { url, chosen_by });
    }
    let settings = Path::new("opsbook.toml");
    if settings.exists()
        && let Some(url) = opsbook_server::Config::db_in(settings).map_err(usage)?
    {
        return Ok(DbChoice { url, chosen_by: "opsbook.toml" });
    }
    Ok(DbChoice { url: DatabaseUrl::Sqlite(default_db()), chosen_by: "the default" })
}

/// Opens the store and marks executions whose runner died as interrupted.
pub async fn open(db: Option<DatabaseUrl>) -> Result<Engine> {
    open_at(&resolve_db(db)?).await
}

/// Opens the database a URL names, saying which one when it cannot.
pub async fn open_store(url: &DatabaseUrl) -> Result<AnyStore> {
    open_store_with(url, &opsbook_store_any::PgConfig::default()).await
}

/// [`open_store`], with the PostgreSQL connection settings of a server or worker.
pub async fn open_store_with(url: &DatabaseUrl, pg: &opsbook_store_any::PgConfig) -> Result<AnyStore> {
    match opsbook_store_any::open_with(url, pg).await {
        Ok(store) => Ok(store),
        Err(opsbook_store::Error::Open(why)) => {
            Err(anyhow::anyhow!("cannot open the database {}: {why}", AnyStore::describe(url)))
        }
        Err(e) => Err(e).with_context(|| format!("cannot open the database {}", AnyStore::describe(url))),
    }
}

/// [`open`], for a database already resolved.
pub async fn open_at(db: &DbChoice) -> Result<Engine> {
    let store = open_store(&db.url).await?;
    let mut config = EngineConfig::default();
    if let Some(grace) = std::env::var("OPSBOOK_KILL_GRACE").ok().filter(|v| !v.is_empty()) {
        config.kill_grace =
            opsbook_core::duration::parse(&grace).map_err(|e| usage(format!("OPSBOOK_KILL_GRACE: {e}")))?.0;
    }
    if let Some(v) = std::env::var("OPSBOOK_STEP_PARENT_DEATH").ok().filter(|v| !v.is_empty()) {
        config.parent_death = match v.as_str() {
            "kill" => opsbook_engine::ParentDeath::Kill,
            "recovery" => opsbook_engine::ParentDeath::LeaveToRecovery,
            other => return Err(usage(format!("OPSBOOK_STEP_PARENT_DEATH: `{other}`: use kill or recovery"))),
        };
    }
    let engine = Engine::new(store, config);
    for id in engine.recover().await? {
        say_err!(
            "{} execution {id} was interrupted (its runner stopped); see `opsbook show {id}`",
            console::style("warning:").yellow().bold().for_stderr()
        );
    }
    Ok(engine)
}

/// Reads and checks a runbook file; problems are printed with snippets.
pub fn load_runbook(path: &Path) -> Result<Runbook> {
    let text = opsbook_core::read_document(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    let text = opsbook_core::Diagnostic::utf8(text).map_err(|d| usage(d.headline(&path.display().to_string())))?;
    opsbook_core::parse(&text).map_err(|diags| {
        let shown = path.display().to_string();
        for d in &diags {
            eprintln!("{}\n", d.render(&shown, &text));
        }
        usage(format!(
            "{} is not a valid runbook ({} problem{})",
            shown,
            diags.len(),
            if diags.len() == 1 { "" } else { "s" }
        ))
    })
}

/// Reads a gates file (`gates:` in YAML); problems name the file, line and column.
pub fn read_gates(path: &Path) -> Result<opsbook_core::gate::GatesFile> {
    opsbook_gate::read_gates_file(path).map_err(usage)
}

/// The gates file for a runbook: `--gates FILE`, else `opsbook.yaml` beside the runbook,
/// else `opsbook.yaml` in the current directory.
pub fn gates_file_for(runbook: &Path, explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let beside = runbook.parent().map(|d| d.join("opsbook.yaml")).filter(|p| p.exists());
    beside.or_else(|| Some(PathBuf::from("opsbook.yaml")).filter(|p| p.exists()))
}

/// Each `gate: { use: NAME }` step of a runbook's text whose gate is not defined, placed
/// at the name.
pub fn unknown_gates(
    text: &str,
    gates: &BTreeMap<String, opsbook_core::gate::GateDef>,
    path: Option<&Path>,
) -> Vec<opsbook_core::Diagnostic> {
    let known: Vec<&str> = gates.keys().map(String::as_str).collect();
    opsbook_core::gate::unknown_uses(text, &known)
        .into_iter()
        .map(|u| {
            let place = match path {
                None => {
                    "no gates file was found (opsbook.yaml beside the runbook or here, or --gates FILE)".to_string()
                }
                Some(p) => {
                    let hint = u.meant.map(|m| format!(" (did you mean `{m}`?)")).unwrap_or_default();
                    format!("not in {}{hint}", p.display())
                }
            };
            let message = format!("step `{}`: gate `{}` is used by the runbook but {place}", u.step, u.name);
            opsbook_core::Diagnostic::new(Some(u.pos), message)
        })
        .collect()
}

/// The person running opsbook: the OS user.
pub fn os_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into())
}

pub use files::{runbook_files, runbook_files_here};

/// A refusal as a program that asked for `--output json` reads it, on standard output:
/// `{"error": {"exit_code", "message", "details"?}}`.
pub fn print_refusal(exit_code: u8, message: &str, details: Option<serde_json::Value>) {
    let mut error = serde_json::json!({ "exit_code": exit_code, "message": message });
    if let Some(d) = details {
        error["details"] = d;
    }
    println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "error": error })).unwrap_or_default());
}

/// How a command that ran rollbacks ends, by their overall status: 0 when they
/// succeeded (or there were none), 3 while a manual one waits for a person (`opsbook
/// confirm`), 1 when one failed or they were skipped (a second cancel).
pub fn rollback_exit(status: Option<opsbook_core::StepStatus>) -> u8 {
    match status {
        None | Some(opsbook_core::StepStatus::Succeeded) => EXIT_OK,
        Some(opsbook_core::StepStatus::Waiting) => EXIT_WAITING,
        Some(_) => EXIT_FAILED,
    }
}

/// What a Ctrl-C does to the run in the foreground, to say so truthfully.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCancel {
    /// Stop the current step, then roll back (`on_failure: rollback`).
    RollBack,
    /// Stop the current step; nothing is rolled back (`on_failure: stop`).
    Stop,
    /// Rollbacks are running (`opsbook rollback`, or cancelling a waiting execution).
    RollingBack,
}

impl OnCancel {
    /// What a Ctrl-C does while steps run, as the runbook's `on_failure` says.
    pub fn running(on_failure: opsbook_core::OnFailure) -> OnCancel {
        match on_failure {
            opsbook_core::OnFailure::Rollback => OnCancel::RollBack,
            opsbook_core::OnFailure::Stop => OnCancel::Stop,
        }
    }
}

/// Ctrl-C / SIGTERM escalate cancellation: first cancel, second skip rollbacks.
///
/// The handlers are in place when this returns: installed by the task instead, they
/// waited for the run's first pause, and a Ctrl-C before it (a step's process already
/// started) killed the runner outright.
pub fn watch_signals(handle: opsbook_engine::CancelHandle, on_cancel: OnCancel) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    tokio::spawn(async move {
        loop {
            // SIGTERM comes from elsewhere (`opsbook cancel`, a supervisor), not a key.
            let asked = tokio::select! {
                _ = int.recv() => "press Ctrl-C again",
                _ = term.recv() => "cancelled from elsewhere; cancel again",
            };
            let level = handle.escalate();
            match (on_cancel, level) {
                (OnCancel::RollBack, 1) => {
                    say_err!("\ncancelling: stopping the current step, then rolling back ({asked} to skip rollbacks)")
                }
                (OnCancel::RollBack, _) => say_err!("\ncancelling: skipping the remaining rollbacks"),
                (OnCancel::Stop, _) => say_err!(
                    "\ncancelling: stopping the current step; nothing is rolled back (the runbook says on_failure: stop)"
                ),
                (OnCancel::RollingBack, 1) => {
                    say_err!("\nthe rollbacks go on ({asked} to stop the running one and skip the rest)")
                }
                (OnCancel::RollingBack, _) => say_err!("\ncancelling: stopping the rollback and skipping the rest"),
            }
        }
    });
}
