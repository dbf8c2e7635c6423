//! `opsbook admin`: tokens, the audit trail and the schema, straight on the server's
//! database; and moving a SQLite server's data to PostgreSQL.

use anyhow::Result;
use opsbook_store::{NewAudit, ServerStore, now_ms};

use super::{EXIT_FAILED, EXIT_OK, usage};

#[derive(clap::Subcommand, Debug)]
pub enum Admin {
    /// API tokens
    #[command(subcommand)]
    Token(TokenCmd),
    /// The audit trail
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Bring the database's schema up to date and say which version it is at (nodes
    /// also do this as they start, one at a time)
    Migrate,
    /// Copy a SQLite server's database into an empty PostgreSQL database, in one
    /// transaction (stop the server first)
    Copy {
        /// The SQLite database, e.g. sqlite:///var/lib/opsbook/opsbook.db
        #[arg(long, value_parser = parse_url)]
        from: opsbook_store::DatabaseUrl,
        /// The PostgreSQL database, e.g. postgres://opsbook@db.internal/opsbook
        #[arg(long, value_parser = parse_url)]
        to: opsbook_store::DatabaseUrl,
    },
}

fn parse_url(s: &str) -> std::result::Result<opsbook_store::DatabaseUrl, String> {
    opsbook_store::DatabaseUrl::parse(s)
}

#[derive(clap::Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token (shown once) for a user with one or more roles
    Create {
        #[arg(long)]
        user: String,
        /// viewer, operator, approver, author or admin (repeatable)
        #[arg(long = "role", required_unless_present = "labels")]
        roles: Vec<String>,
        /// Another name that approval steps (`role:NAME`) or policies use, e.g.
        /// release-manager; grants nothing by itself (repeatable)
        #[arg(long = "label")]
        labels: Vec<String>,
        /// e.g. 90d; default: no expiry
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens (never their secrets)
    List,
    /// Revoke a token by id
    Revoke { id: String },
}

#[derive(clap::Subcommand, Debug)]
pub enum AuditCmd {
    /// Check the hash chain: exit 0 if intact, 1 naming the first broken record
    Verify,
}

use opsbook_store_any::AnyStore;

pub async fn exec(db: Option<opsbook_store::DatabaseUrl>, typed: &[&str], cmd: Admin) -> Result<u8> {
    match cmd {
        // Names both databases itself: the one every command finds is not opened, and a
        // flag typed to name it would be ignored, so it is refused.
        Admin::Copy { .. } if !typed.is_empty() => Err(usage(format!(
            "admin copy names both databases with --from and --to: --{} {} not apply",
            typed.join(", --"),
            if typed.len() == 1 { "does" } else { "do" }
        ))),
        Admin::Copy { from, to } => copy(&from, &to).await,
        cmd => on_database(db, cmd).await,
    }
}

async fn on_database(db: Option<opsbook_store::DatabaseUrl>, cmd: Admin) -> Result<u8> {
    let db = super::resolve_db(db)?;
    let engine = super::open_at(&db).await?;
    // The server reads tokens from one database: say which one this is.
    eprintln!("database {} (chosen by {})", AnyStore::describe(&db.url), db.chosen_by);
    let store = &engine.store;
    let actor = format!("local:{}", super::os_user());
    match cmd {
        Admin::Token(TokenCmd::Create { user, roles, labels, expires }) => {
            opsbook_server::auth::check_roles(&roles, &labels).map_err(|(_, e)| usage(e))?;
            let roles = opsbook_server::auth::token_roles(roles, labels);
            let expires_at = match expires {
                Some(d) => {
                    let d = opsbook_core::duration::parse(&d).map_err(|e| usage(format!("--expires: {e}")))?;
                    Some(now_ms() + i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX / 2))
                }
                None => None,
            };
            // Names are kept as people mean them: no surrounding spaces, one case.
            let user = opsbook_server::auth::check_user(&user).map_err(|e| usage(format!("--user: {e}")))?;
            let new = opsbook_server::auth::generate(&user, roles, expires_at);
            store.create_token(&new.record, &new.hash).await?;
            let info = opsbook_api::TokenInfo::from(new.record.clone());
            store
                .append_audit(&NewAudit {
                    actor,
                    action: "token.create".into(),
                    target: new.record.id.clone(),
                    request_id: opsbook_store::id::new_id(),
                    details: serde_json::to_value(&info)?,
                })
                .await?;
            crate::view::print_new_token(&new.secret, &info);
        }
        Admin::Token(TokenCmd::List) => {
            let tokens: Vec<opsbook_api::TokenInfo> = store.tokens().await?.into_iter().map(Into::into).collect();
            println!("{}", crate::view::tokens_table(&tokens));
        }
        Admin::Token(TokenCmd::Revoke { id }) => {
            store.revoke_token(&id).await?;
            store
                .append_audit(&NewAudit {
                    actor,
                    action: "token.revoke".into(),
                    target: id.clone(),
                    request_id: opsbook_store::id::new_id(),
                    details: serde_json::json!({}),
                })
                .await?;
            println!("revoked token {id}");
        }
        Admin::Migrate => {
            let (current, newest) = store.schema_version().await?;
            println!("schema at version {current} (the newest this opsbook knows is {newest})");
        }
        Admin::Copy { from, to } => return copy(&from, &to).await,
        Admin::Audit(AuditCmd::Verify) => {
            return match store.verify_audit().await? {
                Ok(n) => {
                    println!("audit trail intact: {n} records");
                    Ok(EXIT_OK)
                }
                Err(broken) => {
                    println!("audit trail broken: {broken}");
                    Ok(EXIT_FAILED)
                }
            };
        }
    }
    Ok(EXIT_OK)
}

/// `admin copy`: every row of a SQLite server's database into an empty PostgreSQL one.
async fn copy(from: &opsbook_store::DatabaseUrl, to: &opsbook_store::DatabaseUrl) -> Result<u8> {
    // A server still writing to the source would lose what it writes after the copy.
    if let opsbook_store::DatabaseUrl::Sqlite(path) = from {
        // A server serving it under another (hard-linked) name holds another lock file.
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.nlink() > 1
        {
            return Err(usage(format!(
                "{} has {} hard links: a server may serve it under another name, unseen here; copy from a \
                 copy of it (`sqlite3 {} \".backup /tmp/copy.db\"`) or remove the other links",
                path.display(),
                meta.nlink(),
                path.display()
            )));
        }
        let lock = super::serve::serving_lock_path(path);
        if let Ok(file) = std::fs::OpenOptions::new().write(true).open(&lock)
            && let Err(std::fs::TryLockError::WouldBlock) = file.try_lock()
        {
            return Err(usage(format!(
                "a server is serving {} (it holds {}): stop it first, or what it writes after the copy is lost",
                path.display(),
                lock.display()
            )));
        }
    }
    eprintln!("copying {} to {}", AnyStore::describe(from), AnyStore::describe(to));
    let copied = opsbook_store_any::copy(from, to).await.map_err(usage)?;
    for (name, rows) in &copied {
        println!("{name:<24}{rows:>10}");
    }
    let total: u64 = copied.iter().map(|(_, n)| n).sum();
    println!("copied {total} rows; the audit trail verifies on {}", AnyStore::describe(to));
    Ok(EXIT_OK)
}
