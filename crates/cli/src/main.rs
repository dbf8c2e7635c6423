//! `opsbook`: parse the command line and hand over to one subcommand.
#![forbid(unsafe_code)]

/// `println!` for what a runner shows: a reader that went away (`opsbook run … | head`)
/// must not stop the run (the stored log is the record), so write errors are ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `eprintln!` that ignores a closed standard error, for the same reason.
macro_rules! say_err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod client;
mod cmd;
mod prompt;
mod render;
mod view;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Runbook automation with durable executions, approvals and rollbacks.
#[derive(Parser, Debug)]
#[command(name = "opsbook", version, about, propagate_version = true)]
pub struct Cli {
    /// SQLite database (default: $XDG_DATA_HOME/opsbook/opsbook.db)
    #[arg(long, global = true, env = "OPSBOOK_DB", value_name = "PATH", hide_env_values = true)]
    pub db: Option<PathBuf>,
    /// The database as a URL (sqlite:///path/to/opsbook.db, or postgres://user@host/db for a server shared by many nodes); wins over --db
    #[arg(long, global = true, env = "OPSBOOK_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database: Option<String>,
    /// Talk to an opsbook server instead of the local database (token: OPSBOOK_TOKEN or
    /// `opsbook login`); without it, the server of the login profile in use, if any
    #[arg(long, global = true, env = "OPSBOOK_SERVER", value_name = "URL", hide_env_values = true)]
    pub server: Option<String>,
    /// The `opsbook login` profile to use (default: the one marked default)
    #[arg(long, global = true, env = "OPSBOOK_PROFILE", value_name = "NAME", hide_env_values = true)]
    pub profile: Option<String>,
    /// Use the local database even when logged in to a server
    #[arg(long, global = true)]
    pub local: bool,
    /// Show times in UTC (default: this machine's time zone, named with each time or
    /// table). JSON output is always RFC 3339 in UTC.
    #[arg(long, global = true)]
    pub utc: bool,
    #[command(subcommand)]
    pub command: Command,
    /// The database and server flags typed on the command line (not from the
    /// environment): commands that name their databases themselves refuse them.
    #[arg(skip)]
    pub typed: Vec<&'static str>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a runbook file (with a server: a published runbook, by name)
    Run(cmd::run::Args),
    /// Check runbook files (or directories of them) without running anything
    Validate(cmd::validate::Args),
    /// Print the JSON Schema of the runbook format
    Schema,
    /// Write a new, commented runbook to start from
    New(cmd::new::Args),
    /// Run runbooks' tests (`tests:`, NAME.test.yaml) with mocks: no process, no network
    Test(cmd::test::Args),
    /// Write a runbook out for people (Markdown or HTML): purpose, parameters, steps, rollbacks, checklists
    Doc(cmd::doc::Args),
    /// List runbooks: the server's registry (with a server), else those in a directory
    List(cmd::list::Args),
    /// Search the server's registry (name, title, description, tags, steps)
    Search(cmd::list::SearchArgs),
    /// The published versions of a runbook on the server (with their files)
    Versions(cmd::registry::VersionsArgs),
    /// Diff two published versions of a runbook: the text, then the files
    Diff(cmd::registry::DiffArgs),
    /// Move a published runbook through its lifecycle (draft, active, deprecated, archived)
    Lifecycle(cmd::registry::LifecycleArgs),
    /// List past executions (here, or on the server)
    History(cmd::history::Args),
    /// Show one execution (with a server: or a published runbook, by name)
    Show(cmd::show::Args),
    /// Print the logs of an execution (here, or on the server)
    Logs(cmd::logs::Args),
    /// Approve the approval step an execution waits on (here, or on the server)
    Approve(cmd::approve::Args),
    /// Reject the approval step an execution waits on (here, or on the server)
    Reject(cmd::approve::Args),
    /// Confirm the manual step (or manual rollback) an execution waits on was done (here, or on the server)
    Confirm(cmd::confirm::Args),
    /// Rate an execution that ended, 1-5, with a comment (here, or on the server)
    Feedback(cmd::quality::FeedbackArgs),
    /// Record a review of a published runbook; its next review is then due a cycle later
    Review(cmd::quality::ReviewArgs),
    /// Continue a waiting or interrupted execution (here, or on the server)
    Resume(cmd::resume::Args),
    /// Run the rollbacks of a stopped execution (here, or on the server)
    Rollback(cmd::resume::Args),
    /// Cancel a running or waiting execution (here, or on the server)
    Cancel(cmd::cancel::Args),
    /// Run the server: HTTP API, workers, access control
    Serve(cmd::serve::Args),
    /// Run executions queued on the server's database, without HTTP (beside API nodes)
    Worker(cmd::serve::WorkerArgs),
    /// Publish runbook files to the server (nothing is published unless all can be)
    Push(cmd::push::Args),
    /// Check and keep a token for a server
    Login(cmd::login::Args),
    /// The server's schedules: list, create, delete
    #[command(subcommand)]
    Schedules(cmd::schedules::Schedules),
    /// How runbooks fare on the server: runs, success and rollback rates, durations, reviews due
    Analytics(cmd::insights::AnalyticsArgs),
    /// The KPIs of the server's runbooks: success and its trend, change failure rate, MTTR, adoption, reviews, feedback, time saved
    Report(cmd::report::Args),
    /// Write the registry (every version, its files, lifecycle and reviews; --executions too) to one .tar.gz
    Export(cmd::archive::ExportArgs),
    /// Restore an export into this database (either backend); refuses runbooks it has already
    Import(cmd::archive::ImportArgs),
    /// The server's audit trail, filtered (admins)
    Audit(cmd::insights::AuditArgs),
    /// The server's API tokens: list, create, revoke (admins)
    #[command(subcommand)]
    Tokens(cmd::insights::Tokens),
    /// Tokens and the audit trail, on the server's machine (its database, no server needed)
    #[command(subcommand)]
    Admin(cmd::admin::Admin),
    /// Health gates for any CI: may a deployment go ahead?
    #[command(subcommand)]
    Gate(cmd::gate::Gate),
    /// Print shell completions (bash, zsh, fish, elvish, powershell)
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff): `opsbook man | man -l -`; with --dir, write it and a
    /// page for every subcommand (opsbook-run.1, opsbook-admin-token.1, …) there
    Man {
        /// Directory to write every page to (e.g. /usr/local/share/man/man1)
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    #[default]
    Text,
    Json,
}

/// `opsbook ... | head` must end quietly when the reader goes away, as other Unix tools
/// do (exit status 141, as if killed by SIGPIPE), not report a panic; and output that
/// cannot be written at all (`> /dev/full`, a full disk) is an error that says so
/// (exit status 2), not a panic.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("Broken pipe") {
            std::process::exit(141);
        }
        if let Some(why) = message.strip_prefix("failed printing to stdout: ") {
            say_err!("error: cannot write to standard output: {why}");
            std::process::exit(2);
        }
        default(info);
    }));
}

/// Flags each command has no use for: hidden from its help, manual page and completions
/// (the global database and server flags; a command given one it cannot use refuses it).
const UNUSED: &[(&[&str], &[&str])] = &[
    (
        &["validate", "schema", "new", "test", "doc", "completions", "man"],
        &["db", "database", "server", "profile", "local"],
    ),
    (&["serve", "worker", "admin", "import"], &["server", "profile", "local"]),
    (&["push", "login"], &["db", "database", "local"]),
];

/// The command line as people read it (help, manual pages, completions): flags a command
/// has no use for hidden, and the values of `--status` and `--type` offered for completion
/// (they are checked by the commands themselves, which name what was meant).
pub fn command() -> clap::Command {
    use clap::builder::PossibleValuesParser;
    use opsbook_core::{ExecStatus, LifecycleStatus, RunbookType};
    let mut cmd = <Cli as clap::CommandFactory>::command();
    // A subcommand that has a global flag of its own is not given the global one: its
    // own is the same flag, hidden.
    for (commands, flags) in UNUSED {
        let hidden: Vec<clap::Arg> = (cmd.get_arguments())
            .filter(|a| flags.contains(&a.get_id().as_str()))
            .map(|a| a.clone().hide(true))
            .collect();
        for name in *commands {
            cmd = cmd.mut_subcommand(name, |c| c.args(hidden.clone()));
        }
    }
    let types: Vec<&'static str> = RunbookType::ALL.iter().map(|t| t.as_str()).collect();
    let lifecycle: Vec<&'static str> = LifecycleStatus::ALL.iter().map(|t| t.as_str()).collect();
    let statuses: Vec<&'static str> = ExecStatus::ALL.iter().map(|t| t.as_str()).collect();
    let values: &[(&str, &str, &[&'static str])] = &[
        ("history", "status", &statuses),
        ("new", "runbook_type", &types),
        ("list", "runbook_type", &types),
        ("search", "runbook_type", &types),
        ("list", "status", &lifecycle),
        ("search", "status", &lifecycle),
    ];
    for (name, arg, vals) in values {
        cmd = cmd.mut_subcommand(name, |c| {
            c.mut_arg(arg, |a| a.value_parser(PossibleValuesParser::new(vals.to_vec())).hide_possible_values(true))
        });
    }
    cmd
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    // A program that asked for JSON gets its refusal as JSON on standard output too.
    let args: Vec<String> = std::env::args().collect();
    let json =
        args.iter().any(|a| a == "--output=json") || args.windows(2).any(|w| w[0] == "--output" && w[1] == "json");
    let help = args.iter().skip(1).any(|a| a == "-h" || a == "--help") || args.get(1).is_some_and(|a| a == "help");
    let matches = if help { command() } else { <Cli as clap::CommandFactory>::command() }.get_matches();
    let mut cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli.typed = ["db", "database", "server", "profile", "local"]
        .into_iter()
        .filter(|id| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
        .collect();
    cmd::history::Clock::set_utc(cli.utc);
    // Commands that may run steps get a guardian (it kills their process groups if this
    // process dies); it must be forked now, while this is the only thread.
    let runs_steps = matches!(
        cli.command,
        Command::Run(_)
            | Command::Test(_)
            | Command::Approve(_)
            | Command::Reject(_)
            | Command::Confirm(_)
            | Command::Resume(_)
            | Command::Rollback(_)
            | Command::Serve(_)
            | Command::Worker(_)
    );
    if runs_steps {
        // On failure steps get a parent-death signal instead: the same protection, slower.
        let _ = opsbook_engine::guardian::start();
    }
    // The server wants every core; a local run is sequential and starts faster on one thread.
    let runtime = if matches!(cli.command, Command::Serve(_) | Command::Worker(_)) {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cmd::dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // What the user typed may be quoted in it (a parameter's name or value).
            let message = opsbook_core::terminal::plain_text(&format!("{e:#}"));
            eprintln!("{} {message}", console::style("error:").red().bold().for_stderr());
            let code = cmd::exit_code_of(&e);
            if json {
                cmd::print_refusal(code, &message, None);
            }
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every subcommand's arguments are consistent (clap checks this only when one runs).
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
        super::command().debug_assert();
    }
}
