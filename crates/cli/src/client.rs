//! The CLI as a client of `opsbook serve`: the token, requests, and error display.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use opsbook_api::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cmd::{unavailable, usage};

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// `$XDG_CONFIG_HOME/opsbook` (else `~/.config/opsbook`).
fn config_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("opsbook")
}

/// `credentials.toml`: the servers `opsbook login` checked, a profile each, mode 0600.
pub fn credentials_path() -> PathBuf {
    config_dir().join("credentials.toml")
}

/// The saved logins: a profile per server, and which one commands use by default.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The profile used when none is named (`--profile`, `OPSBOOK_PROFILE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default)]
    pub profiles: std::collections::BTreeMap<String, Profile>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub server: String,
    pub token: String,
}

impl Credentials {
    /// Reads the file (none yet: no logins). A file that does not parse is an error
    /// naming it, never silently ignored.
    pub fn load() -> Result<Credentials> {
        let path = credentials_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| usage(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Credentials::default()),
            Err(e) => Err(usage(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// Writes the file, readable by its owner only.
    pub fn save(&self) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        let path = credentials_path();
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| anyhow!("cannot create {}: {e}", dir.display()))?;
        }
        let text = toml::to_string(self).map_err(|e| anyhow!("cannot write the credentials: {e}"))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
        // An older file may have been created with a looser mode.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(text.as_bytes())?;
        Ok(())
    }

    /// The profile named, or the default one.
    pub fn profile(&self, name: Option<&str>) -> Result<Option<(&str, &Profile)>> {
        match name.or(self.default.as_deref()) {
            None => Ok(None),
            Some(n) => match self.profiles.get_key_value(n) {
                Some((k, p)) => Ok(Some((k.as_str(), p))),
                None if name.is_some() => {
                    let known: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
                    Err(usage(format!(
                        "no profile `{n}` in {} (profiles: {}); `opsbook login URL --profile {n}` adds it",
                        credentials_path().display(),
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    )))
                }
                None => Ok(None),
            },
        }
    }
}

/// The token saved for a server: the profile's, else one whose server is the same URL.
pub fn saved_token(server: &str, profile: Option<&str>) -> Option<String> {
    let creds = Credentials::load().ok()?;
    let server = server.trim_end_matches('/');
    if let Ok(Some((_, p))) = creds.profile(profile)
        && p.server == server
    {
        return Some(p.token.clone());
    }
    creds.profiles.values().find(|p| p.server == server).map(|p| p.token.clone())
}

impl Client {
    /// The token comes from `OPSBOOK_TOKEN`, else from `opsbook login` (the profile in use,
    /// or one for the same server).
    pub fn new(server: &str, profile: Option<&str>) -> Result<Client> {
        let base = server.trim_end_matches('/').to_string();
        let is_url = reqwest::Url::parse(&base).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
        if !is_url {
            return Err(usage(format!(
                "--server `{server}`: expected an http:// or https:// URL, e.g. https://opsbook.example.com"
            )));
        }
        let token = std::env::var("OPSBOOK_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| saved_token(&base, profile))
            .ok_or_else(|| usage(format!("no token for {base}: set OPSBOOK_TOKEN or run `opsbook login {base}`")))?;
        Client::with_token(&base, &token)
    }

    /// The server's address, as given.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn with_token(base: &str, token: &str) -> Result<Client> {
        let http = http_client(opsbook_aws::wire::client_builder())?;
        Ok(Client { base: base.trim_end_matches('/').to_string(), token: token.to_string(), http })
    }

    /// Every request gives up after `timeout` (the default waits as long as the server takes).
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Result<Client> {
        self.http = http_client(opsbook_aws::wire::client_builder().timeout(timeout))?;
        Ok(self)
    }

    /// Sends a request: the status, the path it went to and the body's text.
    async fn exchange(&self, req: reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, String, String)> {
        let resp = req.bearer_auth(&self.token).send().await.map_err(|e| {
            let why =
                if e.is_timeout() { "no answer in time".into() } else { opsbook_core::diagnostic::root_cause(&e) };
            unavailable(format!("cannot reach {}: {why}", self.base))
        })?;
        let status = resp.status();
        let path = resp.url().path().to_string();
        let text = resp.text().await.unwrap_or_default();
        Ok((status, path, text))
    }

    /// Sends a request and reads the answer as `T` (the API's own types; `Value` for
    /// documents the API leaves open, such as a gate verdict).
    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T> {
        let (status, path, text) = self.exchange(req).await?;
        if !status.is_success() {
            return Err(self.refusal(status, &path, &text));
        }
        serde_json::from_str(&text)
            .map_err(|e| anyhow!("{} answered {path} with a document this opsbook does not understand: {e}", self.base))
    }

    /// The error for a refusal: the API's message and details, or, for an answer without
    /// opsbook's error document, that it did not come from an opsbook server.
    pub fn refusal(&self, status: reqwest::StatusCode, path: &str, text: &str) -> anyhow::Error {
        let Ok(ErrorBody { error }) = serde_json::from_str::<ErrorBody>(text) else {
            // Without opsbook's error document: a proxy's or another server's answer.
            let why = match status.as_u16() {
                401 | 403 => "the token was not accepted there, or it is no opsbook server",
                502..=504 => "the server (or the proxy before it) cannot serve now",
                _ => "is it an opsbook server (`opsbook serve`)?",
            };
            return server_error(status, format!("{} answered HTTP {status} to {path}: {why}", self.base));
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
        // The API's words for an unknown token, in a CLI user's (a revoked or expired one
        // says so itself).
        let message = if error.code == "unauthenticated" && error.message.starts_with("a valid API token is required") {
            format!(
                "{} did not accept the token (unknown, or none was given): check it, or have an admin create one \
                 (`opsbook tokens create`)",
                self.base
            )
        } else {
            self.reached_here(&error.message)
        };
        let full = if details.is_empty() { message } else { format!("{message}\n{}", details.join("\n")) };
        server_error(status, full)
    }

    /// A server's message with the commands it suggests (`opsbook rollback ID`) made to
    /// reach this server, as the CLI's own hints are (`opsbook --server URL rollback ID`).
    fn reached_here(&self, message: &str) -> String {
        let mut out = String::with_capacity(message.len());
        let mut rest = message;
        while let Some(at) = rest.find("`opsbook ") {
            let (before, from) = rest.split_at(at + "`opsbook ".len());
            out.push_str(before);
            if !from.starts_with("--server") {
                out.push_str(&format!("--server {} ", self.base));
            }
            rest = from;
        }
        out.push_str(rest);
        out
    }

    /// A POST whose refusal the caller wants to read (`Err` of the inner result: the
    /// status and the API's error document); other failures are errors as usual.
    pub async fn try_post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<std::result::Result<T, (reqwest::StatusCode, ErrorBody)>> {
        let (status, path, text) = self.exchange(self.http.post(format!("{}{path}", self.base)).json(body)).await?;
        if status.is_success() {
            return serde_json::from_str(&text).map(Ok).map_err(|e| {
                anyhow!("{} answered {path} with a document this opsbook does not understand: {e}", self.base)
            });
        }
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => Ok(Err((status, body))),
            Err(_) => Err(self.refusal(status, &path, &text)),
        }
    }

    /// A text answer (a diff).
    pub async fn get_text(&self, path: &str) -> Result<String> {
        let (status, path, text) = self.exchange(self.http.get(format!("{}{path}", self.base))).await?;
        if status.is_success() { Ok(text) } else { Err(self.refusal(status, &path, &text)) }
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(self.http.delete(format!("{}{path}", self.base))).await
    }

    /// A GET of what may not exist: `None` for 404.
    pub async fn get_opt<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        let (status, path, text) = self.exchange(self.http.get(format!("{}{path}", self.base))).await?;
        match status {
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => serde_json::from_str(&text).map(Some).map_err(|e| {
                anyhow!("{} answered {path} with a document this opsbook does not understand: {e}", self.base)
            }),
            s => Err(self.refusal(s, &path, &text)),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body)).await
    }

    /// A binary answer (a bundle).
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        let resp = self.http.get(&url).bearer_auth(&self.token).send().await.map_err(|e| {
            unavailable(format!("cannot reach {}: {}", self.base, opsbook_core::diagnostic::root_cause(&e)))
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| anyhow!("reading {path}: {e}"))?;
        if status.is_success() {
            Ok(bytes.to_vec())
        } else {
            Err(self.refusal(status, path, &String::from_utf8_lossy(&bytes)))
        }
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

/// The error for an answer that is no success: a refusal of what was asked (4xx, exit
/// 2), the server or the proxy before it unavailable (502, 503, 504: exit 4, worth a
/// retry), or a fault of the server (exit 1).
fn server_error(status: reqwest::StatusCode, message: String) -> anyhow::Error {
    match status.as_u16() {
        _ if status.is_client_error() => usage(message),
        502..=504 => unavailable(format!("server unavailable: {message}")),
        _ => anyhow!("server error: {message}"),
    }
}

fn http_client(builder: reqwest::ClientBuilder) -> Result<reqwest::Client> {
    builder.build().map_err(|e| anyhow!("cannot create the HTTP client: {e}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A server's refusal that suggests a command names the server it came from, once.
    #[test]
    fn suggested_commands_reach_the_server_that_refused() {
        let client = Client::with_token("http://ops.example:8080/", "t").unwrap();
        let body = serde_json::json!({ "error": { "code": "conflict", "message":
            "step `b` may have partly run; undo with `opsbook rollback 01J`, or `opsbook --server http://x show 01J`" } });
        let refused = client.refusal(reqwest::StatusCode::CONFLICT, "/api/v1/executions/01J/resume", &body.to_string());
        assert_eq!(
            refused.to_string(),
            "step `b` may have partly run; undo with `opsbook --server http://ops.example:8080 rollback 01J`, \
             or `opsbook --server http://x show 01J`"
        );
    }
}
