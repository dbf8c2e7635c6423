//! `opsbook serve` settings: `opsbook.toml`, then `OPSBOOK_*` environment variables.

use std::path::{Path, PathBuf};

use opsbook_store::DatabaseUrl;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the HTTP API.
    pub listen: String,
    /// Address of the Prometheus `/metrics` endpoint; empty: none.
    pub metrics_listen: String,
    /// SQLite database (default: the same as the local runner's).
    pub db: Option<PathBuf>,
    /// The database as a URL (`sqlite:///path.db`); wins over `db`.
    pub database_url: Option<String>,
    /// Connections this process may hold to a PostgreSQL database at once.
    pub database_pool: u32,
    /// How long a request waits for a database connection (PostgreSQL restarting,
    /// every connection busy) before it is answered 503.
    pub database_wait: String,
    /// Executions run at once by this server.
    pub workers: usize,
    /// Directory that runbook `workdir`s are relative to; an execution of a version
    /// published with files runs in `executions/ID` under it, holding those files.
    pub workdir: PathBuf,
    /// How long the working directory of an execution that did not succeed is kept
    /// (to look into); a successful one's goes when it ends.
    pub keep_failed_workdirs: String,
    /// The largest bundle of files (encoded) a runbook version may be published with.
    pub max_bundle_bytes: usize,
    /// How long a running step may finish after a shutdown starts.
    pub shutdown_grace: String,
    /// Time between SIGTERM and SIGKILL when a step is stopped.
    pub kill_grace: String,
    /// How long a worker's claim on an execution holds without a heartbeat.
    pub lease: String,
    /// Who may run what, beyond the built-in roles (`[[policy]]` tables).
    #[serde(rename = "policy")]
    pub policies: Vec<crate::policy::Policy>,
    /// Where people reach this server, for links in notifications.
    pub public_url: Option<String>,
    /// Notification rules (`[[notify]]` tables).
    pub notify: Vec<crate::notify::Rule>,
    /// YAML file with `gates:` that runbook `gate: { use: NAME }` steps refer to.
    pub gates_file: Option<PathBuf>,
    /// Connections open at once (more wait to be accepted).
    pub max_connections: usize,
    /// A request's headers must arrive within this (also the idle limit between requests).
    pub header_read_timeout: String,
    /// Executions queued at once; past it, submissions get 429 with Retry-After.
    pub max_queued: usize,
    /// Steps' process groups die at once with a killed server (its guardian process
    /// kills them; a parent-death signal when there is none); otherwise the next
    /// start's recovery kills what is left.
    pub step_parent_death_signal: bool,
    /// Failed authentications per client address and minute answered 401; more get 429
    /// (0: never). Behind a proxy every client shares its address: raise it there.
    pub auth_failures_per_minute: u32,
    /// How long a web UI sign-in lasts (it also ends with sign-out and with its token).
    pub session_ttl: String,
    /// File of the keys that seal secret parameters in the database (64 hex digits per
    /// line, the first seals); `OPSBOOK_SECRET_KEY` wins. Default: `opsbook-secret.key`
    /// beside the SQLite database, made on first start.
    pub secret_key_file: Option<PathBuf>,
    /// The keys' text, as read from `OPSBOOK_SECRET_KEY` or the file (none: a key for
    /// this process only, and secrets do not outlive it).
    #[serde(skip)]
    pub secret_keys: Option<String>,
    /// The gates read from `gates_file`.
    #[serde(skip)]
    pub gates: std::collections::BTreeMap<String, opsbook_core::gate::GateDef>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            metrics_listen: "127.0.0.1:9464".into(),
            db: None,
            database_url: None,
            database_pool: 16,
            database_wait: "5s".into(),
            workers: 4,
            workdir: PathBuf::from("."),
            keep_failed_workdirs: "24h".into(),
            max_bundle_bytes: opsbook_core::bundle::DEFAULT_MAX_BYTES,
            shutdown_grace: "30s".into(),
            kill_grace: "5s".into(),
            lease: "30s".into(),
            policies: Vec::new(),
            public_url: None,
            notify: Vec::new(),
            gates_file: None,
            max_connections: 1024,
            header_read_timeout: "10s".into(),
            max_queued: 10_000,
            auth_failures_per_minute: crate::limits::FAILURES_PER_MINUTE,
            step_parent_death_signal: false,
            session_ttl: "12h".into(),
            secret_key_file: None,
            secret_keys: None,
            gates: Default::default(),
        }
    }
}

/// The commented file `opsbook serve --init` writes.
pub const DEFAULT_FILE: &str = r#"# opsbook server settings. These keys may also be set in the environment:
# OPSBOOK_LISTEN, OPSBOOK_METRICS_LISTEN, OPSBOOK_DB, OPSBOOK_DATABASE_URL, OPSBOOK_WORKERS, OPSBOOK_WORKDIR, OPSBOOK_SHUTDOWN_GRACE,
# OPSBOOK_KILL_GRACE, OPSBOOK_LEASE, OPSBOOK_GATES_FILE, OPSBOOK_PUBLIC_URL, OPSBOOK_DATABASE_POOL,
# OPSBOOK_DATABASE_WAIT (the environment wins
# over this file; flags win over both). Policies and notifications live only in this file.

# Address of the HTTP API. Put it behind a TLS-terminating proxy for other machines.
listen = "127.0.0.1:8080"

# Address of the Prometheus /metrics endpoint (no token: keep it on a private address).
# An empty string turns it off.
metrics_listen = "127.0.0.1:9464"

# SQLite database file (default: $XDG_DATA_HOME/opsbook/opsbook.db), or the database as
# a URL (wins over db): sqlite:///var/lib/opsbook/opsbook.db.
# db = "/var/lib/opsbook/opsbook.db"
# database_url = "sqlite:///var/lib/opsbook/opsbook.db"
# On PostgreSQL (database_url = "postgres://user@host:5432/db"): the connections this
# process may hold, and how long a request waits for one before it is answered 503.
database_pool = 16
database_wait = "5s"

# Executions this server runs at once. Waiting executions (approvals) hold no worker.
# 0: an API node only, beside `opsbook worker` processes on the same database.
workers = 4

# Directory that runbook `workdir`s (and their scripts) are relative to. An execution of
# a runbook pushed with its files (`opsbook push`) runs in workdir/executions/ID, where
# those files are written out; it is removed when the execution succeeds, and kept this
# long otherwise, to look into.
workdir = "."
keep_failed_workdirs = "24h"
# The most a runbook's files (its bundle) may weigh.
max_bundle_bytes = 10485760

# On shutdown, running steps may finish within this time; then they are stopped and
# their executions marked interrupted.
shutdown_grace = "30s"

# Time between SIGTERM and SIGKILL when a step is stopped.
kill_grace = "5s"

# A worker's claim on an execution lapses after this long without a heartbeat.
lease = "30s"

# How long a web UI sign-in lasts. Signing out, or revoking the token signed in with,
# ends it sooner. The cookie is Secure when public_url is https.
session_ttl = "12h"

# The keys that seal secret parameters in the database while their execution runs
# (AES-256-GCM): a file of 64 hex digits per line, the first sealing, the others only
# opening (for rotation). OPSBOOK_SECRET_KEY (keys comma-separated) wins. Default:
# opsbook-secret.key beside the SQLite database, made on first start (mode 0600).
# secret_key_file = "/etc/opsbook/secret.key"

# Policies narrow who may run what (admins always may). A policy covers runbooks whose
# name matches one of `names` (* is a wildcard) and that carry one of `tags` (an empty
# list matches all), optionally only when a parameter has a value; the caller then needs
# one of `roles` besides the operator role.
#
# [[policy]]
# description = "web runbooks are run by the web team"
# tags = ["web"]
# roles = ["team-web"]
#
# [[policy]]
# description = "production needs a production deployer"
# param = { name = "environment", value = "production" }
# roles = ["prod-deployer"]

# Where people reach this server, for links in notifications.
# public_url = "https://opsbook.example.com"

# Named health gates (a YAML file with `gates:`) for runbook `gate: { use: NAME }` steps.
# gates_file = "opsbook.yaml"

# Limits: connections open at once (more wait to be accepted); the time a request's
# headers may take to arrive (also how long an idle connection stays open); executions
# queued at once (past it, submissions get 429 with Retry-After).
max_connections = 1024
header_read_timeout = "10s"
max_queued = 10000
# Failed authentications per client address and minute answered 401; more get 429
# (0: never). Each address's failures are audited once a minute, with a count. Behind a
# proxy every client shares its address: raise this there.
auth_failures_per_minute = 60

# If this server is killed (kill -9), its running steps' processes are killed when it
# starts again (their process groups are on record). With this on, their process groups
# also die at once with it, killed by its guardian process (two small pipe writes a step).
step_parent_death_signal = false

# Notifications on execution events: started, resumed, succeeded, failed, cancelled,
# waiting, blocked, overridden, rolled_back, and review_due for a runbook whose review is
# due (none listed: all). Delivery is retried with backoff and every
# attempt is recorded; a failing receiver never slows an execution down.
#
# [[notify]]
# name = "ops-webhook"
# kind = "webhook"                 # JSON body; X-Opsbook-Signature: sha256=HMAC(key, body)
# url = "https://hooks.example.com/opsbook"
# secret_env = "OPSBOOK_WEBHOOK_KEY"
# events = ["failed", "rolled_back", "waiting"]
#
# [[notify]]
# name = "slack-web"
# kind = "slack"                   # Slack incoming webhook (blocks)
# url = "https://hooks.slack.com/services/..."
# runbooks = ["web-*"]
# attempts = 5
# backoff = "1s"
#
# [[notify]]
# name = "ops-topic"
# sns = "arn:aws:sns:eu-west-1:123456789012:deployments"   # Publish with the server's AWS credentials
# events = ["failed", "blocked"]   # attributes: runbook, status, event, execution_id
"#;

impl Config {
    /// Reads `path` (if given, it must exist; else `opsbook.toml` if present), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, String> {
        let file = match path {
            Some(p) => Some(p),
            None if Path::new("opsbook.toml").exists() => Some(Path::new("opsbook.toml")),
            None => None,
        };
        let mut config = match file {
            Some(p) => Self::from_file(p)?,
            None => Config::default(),
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(v) = env("OPSBOOK_LISTEN") {
            config.listen = v;
        }
        if let Ok(v) = std::env::var("OPSBOOK_METRICS_LISTEN") {
            config.metrics_listen = v;
        }
        if let Some(v) = env("OPSBOOK_DB") {
            config.db = Some(v.into());
        }
        if let Some(v) = env("OPSBOOK_DATABASE_URL") {
            config.database_url = Some(v);
        }
        if let Some(v) = env("OPSBOOK_DATABASE_POOL") {
            config.database_pool = v.parse().map_err(|_| format!("OPSBOOK_DATABASE_POOL: `{v}` is not a number"))?;
        }
        if let Some(v) = env("OPSBOOK_WORKERS") {
            config.workers = v.parse().map_err(|_| format!("OPSBOOK_WORKERS: `{v}` is not a number"))?;
        }
        if let Some(v) = env("OPSBOOK_WORKDIR") {
            config.workdir = v.into();
        }
        if let Some(v) = env("OPSBOOK_GATES_FILE") {
            config.gates_file = Some(v.into());
        }
        if let Some(v) = env("OPSBOOK_PUBLIC_URL") {
            config.public_url = Some(v);
        }
        for (k, slot) in [
            ("OPSBOOK_SHUTDOWN_GRACE", &mut config.shutdown_grace),
            ("OPSBOOK_KILL_GRACE", &mut config.kill_grace),
            ("OPSBOOK_LEASE", &mut config.lease),
            ("OPSBOOK_KEEP_FAILED_WORKDIRS", &mut config.keep_failed_workdirs),
            ("OPSBOOK_DATABASE_WAIT", &mut config.database_wait),
        ] {
            if let Some(v) = env(k) {
                opsbook_core::duration::parse(&v).map_err(|e| format!("{k}: {e}"))?;
                *slot = v;
            }
        }
        config.check_settings()?;
        // Rules come from the file only: their mistakes name it.
        config.check_notify().map_err(|e| file.map_or(e.clone(), |p| format!("{}: {e}", p.display())))?;
        if let Some(path) = &config.gates_file {
            config.gates = opsbook_gate::read_gates_file(path)?.gates;
        }
        Ok(config)
    }

    /// The database a settings file names (`database_url`, else `db`), relative paths as
    /// `opsbook serve` reads them.
    pub fn db_in(path: &Path) -> Result<Option<DatabaseUrl>, String> {
        let c = Self::from_file(path)?;
        c.database().map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The database these settings name: `database_url`, else `db` (a SQLite file).
    pub fn database(&self) -> Result<Option<DatabaseUrl>, String> {
        match &self.database_url {
            Some(url) => DatabaseUrl::parse(url).map(Some).map_err(|e| format!("database_url: {e}")),
            None => Ok(self.db.clone().map(DatabaseUrl::Sqlite)),
        }
    }

    fn from_file(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    #[cfg(test)]
    fn check(&self) -> Result<(), String> {
        self.check_settings()?;
        self.check_notify()
    }

    /// The `[[notify]]` rules, each and together.
    fn check_notify(&self) -> Result<(), String> {
        for (i, rule) in self.notify.iter().enumerate() {
            rule.check()?;
            // Deliveries are recorded by rule name: two of one name could not be told apart.
            if self.notify[..i].iter().any(|r| r.name == rule.name) {
                return Err(format!("notify `{}`: two rules have this name; give each its own", rule.name));
            }
        }
        Ok(())
    }

    fn check_settings(&self) -> Result<(), String> {
        if self.workers > 256 {
            return Err(format!("workers must be between 0 (an API node only) and 256, not {}", self.workers));
        }
        if self.max_connections == 0 || self.max_queued == 0 || self.max_bundle_bytes == 0 {
            return Err("max_connections, max_queued and max_bundle_bytes must be at least 1".into());
        }
        if !(2..=1000).contains(&self.database_pool) {
            return Err(format!("database_pool must be between 2 and 1000, not {}", self.database_pool));
        }
        for (name, v) in [
            ("shutdown_grace", &self.shutdown_grace),
            ("kill_grace", &self.kill_grace),
            ("lease", &self.lease),
            ("header_read_timeout", &self.header_read_timeout),
            ("keep_failed_workdirs", &self.keep_failed_workdirs),
            ("session_ttl", &self.session_ttl),
            ("database_wait", &self.database_wait),
        ] {
            opsbook_core::duration::parse(v).map_err(|e| format!("{name}: {e}"))?;
        }
        // A runner renews its claim every second: a lease near that would pass the claims
        // of runners that are alive to others.
        if Self::duration(&self.lease) < std::time::Duration::from_secs(2) {
            return Err(format!(
                "lease (OPSBOOK_LEASE): at least 2s, two of the runners' one-second heartbeats, not {}",
                self.lease
            ));
        }
        Ok(())
    }

    /// How this process connects to a PostgreSQL database.
    pub fn postgres(&self) -> opsbook_store_any::PgConfig {
        opsbook_store_any::PgConfig {
            max_connections: self.database_pool,
            acquire_timeout: Self::duration(&self.database_wait),
            ..opsbook_store_any::PgConfig::default()
        }
    }

    pub fn duration(v: &str) -> std::time::Duration {
        opsbook_core::duration::parse(v).map(|d| d.0).unwrap_or(std::time::Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_file_is_the_default_config() {
        let parsed: super::Config = toml::from_str(super::DEFAULT_FILE).unwrap();
        let default = super::Config::default();
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
    }

    /// The PostgreSQL connection settings are checked, and reach the store's.
    #[test]
    fn database_settings() {
        let parse = |text: &str| -> Result<super::Config, String> {
            let c: super::Config = toml::from_str(text).map_err(|e| e.to_string())?;
            c.check().map(|()| c)
        };
        let c = parse("database_pool = 40\ndatabase_wait = \"2s\"\n").unwrap();
        let pg = c.postgres();
        assert_eq!((pg.max_connections, pg.acquire_timeout), (40, std::time::Duration::from_secs(2)));
        assert_eq!(parse("database_pool = 1\n").unwrap_err(), "database_pool must be between 2 and 1000, not 1");
        assert!(parse("database_wait = \"soon\"\n").unwrap_err().starts_with("database_wait: "));
        assert_eq!(
            parse("lease = \"500ms\"\n").unwrap_err(),
            "lease (OPSBOOK_LEASE): at least 2s, two of the runners' one-second heartbeats, not 500ms"
        );
        let rule = "[[notify]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"https://x\"\n";
        assert_eq!(
            parse(&format!("{rule}{rule}")).unwrap_err(),
            "notify `ops`: two rules have this name; give each its own"
        );
    }
}
