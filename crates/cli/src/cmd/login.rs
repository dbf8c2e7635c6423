//! `opsbook login URL`: check a token and keep it, with the server, as a profile: later
//! commands then talk to that server unless told `--local` (or `--db`).

use std::io::{BufRead, IsTerminal};

use anyhow::Result;

use super::{EXIT_OK, usage};
use crate::client::{Client, Credentials, Profile, credentials_path};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The server (default: --server, OPSBOOK_SERVER)
    pub url: Option<String>,
    /// The token (default: read from standard input)
    #[arg(long)]
    pub token: Option<String>,
}

/// Checks the token against the server, then keeps both as a profile (`--profile`, else
/// `default`); the first profile saved becomes the default one.
pub async fn exec(server: Option<String>, profile: Option<&str>, args: Args) -> Result<u8> {
    let server = args
        .url
        .or(server)
        .ok_or_else(|| usage("login needs the server: `opsbook login https://opsbook.example.com`"))?;
    let server = server.trim_end_matches('/').to_string();
    let is_url = reqwest::Url::parse(&server).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
    if !is_url {
        return Err(usage(format!(
            "`{server}`: expected the server's http:// or https:// URL, e.g. https://opsbook.example.com"
        )));
    }
    let token = match args.token {
        Some(t) => t,
        None if std::io::stdin().is_terminal() => super::read_hidden(&format!("token for {server} (not shown): "))
            .map_err(|e| usage(format!("the token: cannot read the terminal: {e}")))?
            .trim()
            .to_string(),
        None => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim().to_string()
        }
    };
    let me: opsbook_api::Whoami = Client::with_token(&server, &token)?.get("/api/v1/whoami").await?;
    let mut creds = Credentials::load()?;
    let name = profile.unwrap_or("default").to_string();
    creds.profiles.insert(name.clone(), Profile { server: server.clone(), token });
    if creds.default.is_none() {
        creds.default = Some(name.clone());
    }
    creds.save()?;
    let default = if creds.default.as_deref() == Some(name.as_str()) { ", the default" } else { "" };
    let roles = match me.roles.len() {
        0 => "no roles".to_string(),
        1 => format!("role {}", me.roles[0]),
        _ => format!("roles {}", me.roles.join(", ")),
    };
    println!(
        "logged in to {server} as {} ({roles}); saved as profile `{name}`{default} in {}",
        me.user,
        credentials_path().display()
    );
    Ok(EXIT_OK)
}
