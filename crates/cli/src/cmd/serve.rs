//! `opsbook serve`: the multi-user server (HTTP API and workers).

use std::path::PathBuf;

use anyhow::Result;
use opsbook_server::Config;

use super::{EXIT_OK, usage};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (default 127.0.0.1:8080)
    #[arg(long)]
    pub listen: Option<String>,
    /// Address of /metrics (default 127.0.0.1:9464; "" for none)
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Settings file (default: ./opsbook.toml when present)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Executions run at once (0: serve the API only, beside `opsbook worker`s)
    #[arg(long)]
    pub workers: Option<usize>,
    /// Write a commented opsbook.toml here and exit
    #[arg(long)]
    pub init: bool,
}

pub async fn exec(db: Option<opsbook_store::DatabaseUrl>, args: Args) -> Result<u8> {
    if args.init {
        let path = args.config.unwrap_or_else(|| PathBuf::from("opsbook.toml"));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, opsbook_server::config::DEFAULT_FILE.as_bytes()))
            .map_err(|e| usage(format!("cannot create {}: {e}", path.display())))?;
        println!("wrote {}", path.display());
        return Ok(EXIT_OK);
    }
    let (mut config, url, store) = setup(db, args.config.as_deref()).await?;
    // Held while serving, so that `opsbook admin copy` knows not to copy a live database.
    let _serving = serving_lock(&url)?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(l) = args.metrics_listen {
        config.metrics_listen = l;
    }
    if let Some(w) = args.workers {
        config.workers = w;
    }
    let listener = tokio::net::TcpListener::bind(&config.listen).await.map_err(|e| {
        usage(format!(
            "cannot listen on {}: {e}; choose another address with --listen ADDR (or listen in opsbook.toml)",
            config.listen
        ))
    })?;
    let addr = listener.local_addr()?;
    let metrics = if config.metrics_listen.is_empty() {
        None
    } else {
        Some(tokio::net::TcpListener::bind(&config.metrics_listen).await.map_err(|e| {
            usage(format!(
                "cannot listen on {} for /metrics: {e}; choose another address with \
                         --metrics-listen ADDR (or metrics_listen in opsbook.toml), or turn metrics off with \
                         --metrics-listen \"\"",
                config.metrics_listen
            ))
        })?)
    };
    let metrics_note = match &metrics {
        Some(l) => format!(", metrics on http://{}/metrics", l.local_addr()?),
        None => String::new(),
    };
    let gates_note = match &config.gates_file {
        Some(f) => format!(", {} gates from {}", config.gates.len(), f.display()),
        None => String::new(),
    };
    let workers = match config.workers {
        0 => "no workers: an API node".to_string(),
        n => format!("{n} workers"),
    };
    println!(
        "opsbook serving on http://{addr} ({workers}, database {}{metrics_note}{gates_note})",
        opsbook_store_any::AnyStore::describe(&url)
    );
    let state = opsbook_server::state(store, config);
    opsbook_server::serve(state, listener, metrics, signalled()).await?;
    Ok(EXIT_OK)
}

/// What `serve` and `worker` share: the log, the settings (`--config`, then the
/// environment), the database as every command finds it, and the secret keys.
async fn setup(
    db: Option<opsbook_store::DatabaseUrl>,
    config_path: Option<&std::path::Path>,
) -> Result<(Config, opsbook_store::DatabaseUrl, opsbook_store_any::AnyStore)> {
    // The server log: standard error, `info` and up unless RUST_LOG says otherwise.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour).try_init();
    let mut config = Config::load(config_path).map_err(usage)?;
    // As every command finds it (flag or OPSBOOK_DB, then the settings file, then the
    // default), except that `--config FILE` names the settings file.
    let url = match (db, config_path) {
        (Some(url), _) => url,
        (None, Some(_)) => {
            config.database().map_err(usage)?.unwrap_or_else(|| opsbook_store::DatabaseUrl::Sqlite(super::default_db()))
        }
        (None, None) => super::resolve_db(None)?.url,
    };
    config.secret_keys = Some(secret_keys(&config, &url)?);
    keep_private(&config, &url);
    let store = super::open_store_with(&url, &config.postgres()).await?;
    has_every_key(&config, &store).await?;
    Ok((config, url, store))
}

/// Refuses a node that could not open secrets the database keeps: each execution it
/// claimed with them would fail, for good.
async fn has_every_key(config: &Config, store: &opsbook_store_any::AnyStore) -> Result<()> {
    use opsbook_store::ServerStore;
    let keys = opsbook_server::vault::Keys::parse(config.secret_keys.as_deref().unwrap_or_default()).map_err(usage)?;
    let unknown: Vec<String> = store.secret_key_ids().await?.into_iter().filter(|id| !keys.has(id)).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(usage(format!(
        "the database keeps secret parameters sealed with key {}, which this node does not have: give every \
         node the same keys (OPSBOOK_SECRET_KEY=NEW,OLD while rotating; docs/server.md, Secret parameters)",
        unknown.join(", ")
    )))
}

/// The server's own credentials stay out of its steps: the variables that hold them are
/// not passed on, and they are masked in executions' output wherever a step finds them.
fn keep_private(config: &Config, url: &opsbook_store::DatabaseUrl) {
    let mut names: Vec<String> =
        ["OPSBOOK_SECRET_KEY", "OPSBOOK_DATABASE_URL", "OPSBOOK_TOKEN", "PGPASSWORD"].map(String::from).into();
    names.extend(config.notify.iter().filter_map(|r| r.secret_env.clone()));
    // The keys themselves (from a key file too), one by one, as `Keys::parse` reads them.
    let keys = opsbook_server::vault::Keys::words(config.secret_keys.as_deref().unwrap_or_default());
    let mut values: Vec<String> = keys.map(str::to_string).collect();
    values.extend(config.notify.iter().filter_map(|r| r.secret.clone()));
    values.extend(url.password());
    opsbook_core::secret::keep_private(names, values);
}

/// The file beside a SQLite database that a server holds a shared lock on while it
/// serves it (released by the kernel however the server ends).
pub fn serving_lock_path(db: &std::path::Path) -> PathBuf {
    // The file itself, however it is named (a link to it, a relative path).
    let db = db.canonicalize().unwrap_or_else(|_| db.to_path_buf());
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".serving");
    db.with_file_name(name)
}

/// The serving lock of `url`'s database, when it is a SQLite one.
fn serving_lock(url: &opsbook_store::DatabaseUrl) -> Result<Option<std::fs::File>> {
    let opsbook_store::DatabaseUrl::Sqlite(db) = url else { return Ok(None) };
    let path = serving_lock_path(db);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| usage(format!("cannot open {}: {e}", path.display())))?;
    file.try_lock_shared().map_err(|e| usage(format!("cannot lock {}: {e}", path.display())))?;
    Ok(Some(file))
}

/// Resolves at SIGINT or SIGTERM.
async fn signalled() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    eprintln!("shutting down: finishing running steps (up to the shutdown grace)");
}

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// Settings file (default: ./opsbook.toml when present)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Executions run at once (default: `workers` of the settings, 4)
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Serve Prometheus metrics on ADDR (`/metrics`: this worker's executions, steps and
    /// queue); off unless given (a worker beside an API node would take its port)
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

/// `opsbook worker`: runs executions queued by API nodes on the same database, without
/// serving HTTP; any number of them.
pub async fn worker(db: Option<opsbook_store::DatabaseUrl>, args: WorkerArgs) -> Result<u8> {
    let (mut config, url, store) = setup(db, args.config.as_deref()).await?;
    // A worker on a SQLite database writes to it as a server does.
    let _serving = serving_lock(&url)?;
    if let Some(n) = args.concurrency {
        config.workers = n;
    }
    if config.workers == 0 {
        let whence = if args.concurrency.is_some() { "--concurrency" } else { "workers (in the settings)" };
        return Err(usage(format!(
            "{whence} is 0, but a worker runs at least one execution at once: give it --concurrency N \
             (`workers = 0` is for API nodes)"
        )));
    }
    let metrics = match args.metrics_listen.as_deref().filter(|a| !a.is_empty()) {
        None => None,
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            usage(format!(
                "cannot listen on {addr} for /metrics: {e}; choose another address with --metrics-listen ADDR"
            ))
        })?),
    };
    let metrics_note = match &metrics {
        Some(l) => format!(", metrics on http://{}/metrics", l.local_addr()?),
        None => String::new(),
    };
    println!(
        "opsbook worker running up to {} executions at once (database {}{metrics_note})",
        config.workers,
        opsbook_store_any::AnyStore::describe(&url)
    );
    let state = opsbook_server::state(store, config);
    opsbook_server::work(state, metrics, signalled()).await;
    Ok(EXIT_OK)
}

/// The keys that seal secret parameters: `OPSBOOK_SECRET_KEY`, else `secret_key_file`,
/// else `opsbook-secret.key` beside the SQLite database, made (0600) when missing.
fn secret_keys(config: &Config, url: &opsbook_store::DatabaseUrl) -> Result<String> {
    let check = |text: String, whence: &str| {
        opsbook_server::vault::Keys::parse(&text).map_err(|e| usage(format!("{whence}: {e}")))?;
        Ok(text)
    };
    if let Ok(text) = std::env::var("OPSBOOK_SECRET_KEY") {
        return check(text, "OPSBOOK_SECRET_KEY");
    }
    let path = match (&config.secret_key_file, url) {
        (Some(path), _) => path.clone(),
        (None, opsbook_store::DatabaseUrl::Sqlite(db)) => db.with_file_name("opsbook-secret.key"),
        (None, _) => {
            return Err(usage(
                "set OPSBOOK_SECRET_KEY or secret_key_file: every node of a shared database needs the same key",
            ));
        }
    };
    if config.secret_key_file.is_none() && !path.exists() {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let text = format!(
            "# opsbook: the key that seals secret parameters in {} (keep it apart from its backups)\n{}\n",
            opsbook_store_any::AnyStore::describe(url),
            opsbook_server::vault::new_key_text()
        );
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| usage(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| usage(format!("cannot create the secret key file {}: {e}", path.display())))?;
        f.write_all(text.as_bytes())?;
        eprintln!("made a secret key for this server's database: {}", path.display());
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| usage(format!("cannot read the secret key file {}: {e}", path.display())))?;
    check(text, &path.display().to_string())
}
