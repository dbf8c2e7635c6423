//! `opsbook analytics`, `opsbook audit` and `opsbook tokens`: what the server knows of
//! how runbooks fare and who did what, and its API tokens (admins).

use anyhow::Result;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use opsbook_api::{Analytics, AuditEntry, CreatedToken, Items, NewToken, Revoked, TokenInfo};

use super::EXIT_OK;
use crate::Output;
use crate::client::{Client, enc};

#[derive(clap::Args, Debug)]
pub struct AnalyticsArgs {
    /// Only this runbook
    #[arg(long)]
    pub runbook: Option<String>,
    /// From this time (RFC 3339, a date, or a duration ago such as 30d; default 90 days)
    #[arg(long)]
    pub since: Option<String>,
    /// How to print: text for people, or json (one document on stdout) for programs
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

pub(crate) fn percent(rate: Option<f64>) -> String {
    rate.map(|r| format!("{:.0}%", r * 100.0)).unwrap_or_else(|| "-".into())
}

fn ms(v: Option<i64>) -> String {
    v.and_then(|d| u64::try_from(d).ok()).map(opsbook_core::duration::human_ms).unwrap_or_else(|| "-".into())
}

pub async fn analytics(client: &Client, a: &AnalyticsArgs) -> Result<u8> {
    let mut q = Vec::new();
    if let Some(r) = &a.runbook {
        q.push(format!("runbook={}", enc(r)));
    }
    if let Some(s) = &a.since {
        q.push(format!("since={}", super::history::since_ms(s)?));
    }
    let doc: Analytics = client.get(&format!("/api/v1/analytics?{}", q.join("&"))).await?;
    if a.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(EXIT_OK);
    }
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(vec!["Runbook", "Runs", "Success", "Rollbacks", "p50", "p95", "Per week", "Users", "MTTR"]);
    for f in &doc.runbooks {
        t.add_row(vec![
            f.runbook.clone(),
            f.runs.to_string(),
            percent(f.success_rate),
            percent(f.rollback_rate),
            ms(f.p50_duration_ms),
            ms(f.p95_duration_ms),
            format!("{:.1}", f.runs_per_week),
            f.distinct_users.to_string(),
            f.mttr_ms.map(ms).unwrap_or_default(),
        ]);
    }
    println!("since {}", doc.since.as_deref().unwrap_or("?"));
    println!("{t}");
    for r in &doc.review_overdue {
        let due = r.due.as_deref().map(|d| format!("due {d}")).unwrap_or_else(|| "never reviewed".into());
        let owner = r.owner.as_deref().map(|o| format!(" (owner {o})")).unwrap_or_default();
        println!("review overdue: {} — {due}{owner}", r.runbook);
    }
    Ok(EXIT_OK)
}

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Only what this user did
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this action (e.g. execution.submit, gate.override, authz.denied)
    #[arg(long)]
    pub action: Option<String>,
    /// Only records about this target (an execution, a runbook, a token)
    #[arg(long)]
    pub target: Option<String>,
    /// From this time (RFC 3339, a date, or a duration ago such as 24h)
    #[arg(long)]
    pub since: Option<String>,
    /// How many records: the newest that match, shown oldest first
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
    /// The first records that match instead of the newest (the start of the trail, or of
    /// --since)
    #[arg(long)]
    pub oldest: bool,
    /// How to print: text for people, or json (one document on stdout) for programs
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

pub async fn audit(client: &Client, a: &AuditArgs) -> Result<u8> {
    let mut q = vec![format!("limit={}", a.limit)];
    if !a.oldest {
        q.push("newest=true".to_string());
    }
    for (k, v) in [("actor", &a.actor), ("action", &a.action), ("target", &a.target)] {
        if let Some(v) = v {
            q.push(format!("{k}={}", enc(v)));
        }
    }
    if let Some(s) = &a.since {
        q.push(format!("since={}", super::history::since_ms(s)?));
    }
    let found: Items<AuditEntry> = client.get(&format!("/api/v1/audit?{}", q.join("&"))).await?;
    if a.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&found.items)?);
        return Ok(EXIT_OK);
    }
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    let clock = super::history::Clock::new();
    let at = format!("At ({})", clock.label);
    t.set_header(vec!["#", &at, "Actor", "Action", "Target", "Details"]);
    for r in &found.items {
        t.add_row(vec![
            r.seq.to_string(),
            clock.show(Some(r.at)),
            r.actor.clone(),
            r.action.clone(),
            r.target.clone(),
            crate::render::truncate(&r.details.to_string(), 60),
        ]);
    }
    println!("{t}");
    Ok(EXIT_OK)
}

#[derive(clap::Subcommand, Debug)]
pub enum Tokens {
    /// Every token (never their secrets)
    List {
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Create a token; its secret is printed once
    Create {
        #[arg(long)]
        user: String,
        /// Built-in roles: viewer, operator, approver, author, admin
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Other names approval steps (`role:NAME`) and policies use
        #[arg(long = "label")]
        labels: Vec<String>,
        /// How long it is valid, e.g. 90d (default: until revoked)
        #[arg(long)]
        expires: Option<String>,
    },
    /// Revoke a token by id
    Revoke { id: String },
}

pub async fn tokens(client: &Client, cmd: &Tokens) -> Result<u8> {
    match cmd {
        Tokens::List { output } => {
            let found: Items<TokenInfo> = client.get("/api/v1/tokens").await?;
            if *output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&found.items)?);
                return Ok(EXIT_OK);
            }
            let t = crate::view::tokens_table(&found.items);
            println!("{t}");
        }
        Tokens::Create { user, roles, labels, expires } => {
            let body = NewToken {
                user: user.clone(),
                roles: roles.clone(),
                labels: labels.clone(),
                expires_in: expires.clone(),
            };
            let made: CreatedToken = client.post("/api/v1/tokens", &body).await?;
            crate::view::print_new_token(&made.token, &made.info);
        }
        Tokens::Revoke { id } => {
            let done: Revoked = client.delete(&format!("/api/v1/tokens/{}", enc(id))).await?;
            println!("revoked token {}", done.id);
        }
    }
    Ok(EXIT_OK)
}
