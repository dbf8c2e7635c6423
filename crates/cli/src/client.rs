//! The CLI as a client of `opsbook serve`: the token, requests, and error display.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use opsbook_api::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cmd::usage;

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// `$XDG_CONFIG_HOME/opsbook/credentials.json`: `{server URL: token}`, mode 0600.
pub fn credentials_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("opsbook").join("credentials.json")
}

pub fn saved_token(server: &str) -> Option<String> {
    let text = std::fs::read_to_string(credentials_path()).ok()?;
    let map: serde_json::Map<String, Value> = serde_json::from_str(&text).ok()?;
    map.get(server.trim_end_matches('/'))?.as_str().map(str::to_string)
}

impl Client {
    /// The token comes from `OPSBOOK_TOKEN`, else from `opsbook login`.
    pub fn new(server: &str) -> Result<Client> {
        let base = server.trim_end_matches('/').to_string();
        let is_url = reqwest::Url::parse(&base).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
        if !is_url {
            return Err(usage(format!(
                "--server `{server}`: expected an http:// or https:// URL, e.g. https://opsbook.example.com"
            )));
        }
        let token =
            std::env::var("OPSBOOK_TOKEN").ok().filter(|t| !t.is_empty()).or_else(|| saved_token(&base)).ok_or_else(
                || usage(format!("no token for {base}: set OPSBOOK_TOKEN or run `opsbook login --server {base}`")),
            )?;
        Client::with_token(&base, &token)
    }

    /// The server's address, as given.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn with_token(base: &str, token: &str) -> Result<Client> {
        let http = http_client(reqwest::Client::builder())?;
        Ok(Client { base: base.trim_end_matches('/').to_string(), token: token.to_string(), http })
    }

    /// Every request gives up after `timeout` (the default waits as long as the server takes).
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Result<Client> {
        self.http = http_client(reqwest::Client::builder().timeout(timeout))?;
        Ok(self)
    }

    /// Sends a request and reads the answer as `T` (the API's own types; `Value` for
    /// documents the API leaves open, such as a gate verdict).
    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T> {
        let resp = req.bearer_auth(&self.token).send().await.map_err(|e| {
            let why =
                if e.is_timeout() { "no answer in time".into() } else { opsbook_core::diagnostic::root_cause(&e) };
            anyhow!("cannot reach {}: {why}", self.base)
        })?;
        let status = resp.status();
        let path = resp.url().path().to_string();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| {
                anyhow!("{} answered {path} with a document this opsbook does not understand: {e}", self.base)
            });
        }
        // An answer without opsbook's error document did not come from an opsbook server.
        let Ok(ErrorBody { error }) = serde_json::from_str::<ErrorBody>(&text) else {
            let message =
                format!("{} answered HTTP {status} to {path}: is it an opsbook server (`opsbook serve`)?", self.base);
            return Err(if status.is_client_error() { usage(message) } else { anyhow!("server error: {message}") });
        };
        let details: Vec<String> = error
            .details
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|d| match (d["param"].as_str(), d["line"].as_u64(), d["message"].as_str()) {
                (Some(p), _, Some(m)) => format!("  parameter `{p}`: {m}"),
                (_, Some(l), Some(m)) => format!("  line {l}, column {}: {m}", d["column"]),
                (_, _, Some(m)) => format!("  {m}"),
                _ => format!("  {d}"),
            })
            .collect();
        let message = error.message;
        let full = if details.is_empty() { message } else { format!("{message}\n{}", details.join("\n")) };
        if status.is_client_error() { Err(usage(full)) } else { Err(anyhow!("server error: {full}")) }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body)).await
    }

    pub async fn put_bytes<T: DeserializeOwned>(&self, path: &str, body: Vec<u8>) -> Result<T> {
        let req = self
            .http
            .put(format!("{}{path}", self.base))
            .header("content-type", "application/vnd.opsbook.bundle")
            .body(body);
        self.send(req).await
    }

    pub async fn post_text<T: DeserializeOwned>(&self, path: &str, body: String) -> Result<T> {
        let req = self.http.post(format!("{}{path}", self.base)).header("content-type", "application/yaml").body(body);
        self.send(req).await
    }
}

fn http_client(builder: reqwest::ClientBuilder) -> Result<reqwest::Client> {
    builder
        .user_agent(concat!("opsbook/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| anyhow!("cannot create the HTTP client: {e}"))
}

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
