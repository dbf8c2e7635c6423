//! `opsbook login --server URL`: check a token and keep it for later commands.

use std::io::{BufRead, Write};

use anyhow::{Context, Result};

use super::{EXIT_OK, usage};
use crate::client::{Client, credentials_path};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The token (default: read from standard input)
    #[arg(long)]
    pub token: Option<String>,
}

pub async fn exec(server: Option<String>, args: Args) -> Result<u8> {
    let server = server.ok_or_else(|| usage("login needs --server URL (or OPSBOOK_SERVER)"))?;
    let server = server.trim_end_matches('/').to_string();
    let token = match args.token {
        Some(t) => t,
        None => {
            eprint!("token for {server}: ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim().to_string()
        }
    };
    let me: opsbook_api::Whoami = Client::with_token(&server, &token)?.get("/api/v1/whoami").await?;
    let path = credentials_path();
    let mut map: serde_json::Map<String, serde_json::Value> =
        std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    map.insert(server.clone(), token.into());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)
    }
    .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(serde_json::to_string_pretty(&map)?.as_bytes())?;
    println!("logged in to {server} as {} ({})", me.user, serde_json::Value::from(me.roles));
    Ok(EXIT_OK)
}
