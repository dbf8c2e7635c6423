//! Parameters from the command line: `-p KEY=VALUE`, `--params-file`, `--secret NAME`
//! read from standard input, and secrets asked for on the terminal.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use opsbook_core::{Input, Runbook};

use super::usage;

/// `--secret NAME` (repeatable): a parameter read from standard input, one line each,
/// so the value is in neither the process list nor the shell's history.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct SecretArgs {
    /// Read this parameter's value from standard input (one line each, in order)
    #[arg(long = "secret", value_name = "NAME")]
    pub secrets: Vec<String>,
}

impl SecretArgs {
    /// The values of `--secret` names, read from standard input.
    pub fn read(&self) -> Result<BTreeMap<String, Input>> {
        let mut out = BTreeMap::new();
        let stdin = std::io::stdin();
        for name in &self.secrets {
            if out.contains_key(name) {
                return Err(usage(format!("--secret {name}: given twice")));
            }
            let mut line = String::new();
            let n = std::io::BufRead::read_line(&mut stdin.lock(), &mut line)
                .map_err(|e| usage(format!("--secret {name}: cannot read standard input: {e}")))?;
            if n == 0 {
                return Err(usage(format!("--secret {name}: standard input ended before its value")));
            }
            out.insert(name.clone(), Input::Text(chomp(&line).to_string()));
        }
        Ok(out)
    }
}

/// Asks on the terminal, without echo, for the secret parameters in `missing` (none
/// when standard input is not a terminal: the parameter check then names them).
pub fn prompt_secrets(missing: &[String]) -> Result<BTreeMap<String, Input>> {
    let mut out = BTreeMap::new();
    if missing.is_empty() || !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Ok(out);
    }
    for name in missing {
        let value = read_hidden(&format!("{name} (secret, not shown): "))
            .map_err(|e| usage(format!("{name}: cannot read the terminal: {e}")))?;
        out.insert(name.clone(), Input::Text(value));
    }
    Ok(out)
}

/// Reads a line from the terminal on standard input without echoing it. Echo goes off
/// before the prompt is shown and nothing typed is discarded, so an answer typed as
/// soon as the prompt appears is neither echoed nor lost.
pub fn read_hidden(prompt: &str) -> std::io::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    let original = tcgetattr(&stdin)?;
    let mut quiet = original.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet)?;
    let mut stderr = std::io::stderr();
    let mut line = String::new();
    let read =
        write!(stderr, "{prompt}").and_then(|()| stderr.flush()).and_then(|()| stdin.lock().read_line(&mut line));
    let restored = tcsetattr(&stdin, SetArg::TCSANOW, &original);
    let _ = writeln!(stderr);
    if read? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "it ended before a value"));
    }
    restored?;
    Ok(chomp(&line).to_string())
}

/// `text` without one trailing line ending.
fn chomp(text: &str) -> &str {
    text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(text)
}

/// The required secret parameters of `rb` that `inputs` does not give.
pub fn missing_secrets(rb: &Runbook, inputs: &BTreeMap<String, Input>) -> Vec<String> {
    rb.params
        .iter()
        .filter(|p| {
            p.is_secret()
                && p.spec.required
                && p.spec.default.is_none()
                && p.spec.from.is_none()
                && !inputs.contains_key(&p.name)
        })
        .map(|p| p.name.clone())
        .collect()
}

/// A `-p` value: `@env:VAR` reads an environment variable, `@file:PATH` a file (one
/// trailing newline dropped), `@@…` is a value starting with `@`; anything else is the
/// value itself.
fn param_value(key: &str, v: &str) -> Result<String> {
    if let Some(var) = v.strip_prefix("@env:") {
        return std::env::var(var).map_err(|_| usage(format!("-p {key}=@env:{var}: {var} is not set")));
    }
    if let Some(path) = v.strip_prefix("@file:") {
        let text = std::fs::read_to_string(path).map_err(|e| usage(format!("-p {key}=@file:{path}: {e}")))?;
        return Ok(chomp(&text).to_string());
    }
    Ok(v.strip_prefix('@').filter(|r| r.starts_with('@')).unwrap_or(v).to_string())
}

/// The parameters a command was given: the params file, then `-p` pairs, then the
/// `--secret` values read from standard input.
pub fn gather_params(pairs: &[String], file: Option<&Path>, secret: &SecretArgs) -> Result<BTreeMap<String, Input>> {
    let mut out = collect_params(pairs, file)?;
    for (k, v) in secret.read()? {
        if pairs.iter().any(|p| p.split_once('=').is_some_and(|(n, _)| n.trim() == k)) {
            return Err(usage(format!("--secret {k}: parameter `{k}` is given with -p too")));
        }
        out.insert(k, v);
    }
    Ok(out)
}

/// Parameters as JSON values, as the API takes them.
pub fn as_json(inputs: BTreeMap<String, Input>) -> BTreeMap<String, serde_json::Value> {
    inputs
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Input::Text(t) => serde_json::Value::String(t),
                Input::Value(v) => v,
            };
            (k, v)
        })
        .collect()
}

/// Collects `-p key=value` pairs and an optional YAML params file (pairs win).
pub fn collect_params(pairs: &[String], file: Option<&Path>) -> Result<BTreeMap<String, Input>> {
    let mut out = BTreeMap::new();
    if let Some(f) = file {
        let text =
            opsbook_core::read_document_text(f).map_err(|e| usage(format!("cannot read {}: {e}", f.display())))?;
        let path = f.display().to_string();
        // A syntax error is named as such; a document of another shape is told what it must be.
        serde_saphyr::from_str::<serde::de::IgnoredAny>(&text)
            .map_err(|e| usage(opsbook_core::yaml_diagnostic(&e, &text).render(&path, &text)))?;
        let map: BTreeMap<String, serde_json::Value> = serde_saphyr::from_str(&text).map_err(|e| {
            let at = e.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
            usage(format!("{path}{at}: expected a mapping of parameter names to values"))
        })?;
        out.extend(map.into_iter().map(|(k, v)| (k, Input::Value(v))));
    }
    let mut given = std::collections::BTreeSet::new();
    for p in pairs {
        let (k, v) = p.split_once('=').ok_or_else(|| usage(format!("-p {p:?}: expected key=value")))?;
        let k = k.trim();
        // A second `-p` for the same name is a slip, not an override (the params file is
        // what `-p` overrides).
        if !given.insert(k.to_string()) {
            return Err(usage(format!("-p {k}=…: parameter `{k}` is given twice")));
        }
        out.insert(k.to_string(), Input::Text(param_value(k, v)?));
    }
    Ok(out)
}
