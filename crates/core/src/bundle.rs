//! Runbook bundles: the files a runbook uses (scripts, templates, configuration),
//! published and versioned with it, so `./scripts/deploy.sh` runs on a server worker as
//! it does next to the YAML.
//!
//! A bundle is a canonical archive: the same files always encode to the same bytes, so
//! its SHA-256 names its content. The encoding is
//!
//! ```text
//! opsbook-bundle 1\n
//! then, per file, in byte order of their paths:
//! <mode, octal> <size, decimal> <path>\n<size bytes>\n
//! ```
//!
//! Paths are relative, `/`-separated, with no `.`, `..` or empty components; a mode is
//! `644` or `755` (whether a file is executable is all that travels). Pure data: reading
//! a directory and writing one out are the callers' (they do IO).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

const MAGIC: &str = "opsbook-bundle 1\n";

/// Bundles larger than this are refused unless a server allows more.
pub const DEFAULT_MAX_BYTES: usize = 10 * 1024 * 1024;

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    /// Whether it may be executed (mode 755 rather than 644).
    pub executable: bool,
    pub data: Vec<u8>,
}

/// The files of a bundle, by relative path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bundle {
    files: BTreeMap<String, BundleFile>,
}

impl Bundle {
    pub fn new() -> Bundle {
        Bundle::default()
    }

    /// Adds a file; refuses a path that could escape the bundle or is not canonical.
    pub fn add(&mut self, path: &str, executable: bool, data: Vec<u8>) -> Result<(), String> {
        check_path(path)?;
        let dir = format!("{path}/");
        let file_above = path.match_indices('/').any(|(i, _)| self.files.contains_key(&path[..i]));
        let files_below = self.files.range(dir.clone()..).next().is_some_and(|(p, _)| p.starts_with(&dir));
        if file_above || files_below {
            return Err(format!("`{path}`: a file and a directory of the same name"));
        }
        self.files.insert(path.to_string(), BundleFile { executable, data });
        Ok(())
    }

    pub fn files(&self) -> impl Iterator<Item = (&str, &BundleFile)> {
        self.files.iter().map(|(p, f)| (p.as_str(), f))
    }

    pub fn get(&self, path: &str) -> Option<&BundleFile> {
        self.files.get(path)
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self.files.iter().map(|(p, f)| p.len() + f.data.len() + 32).sum();
        let mut out = Vec::with_capacity(MAGIC.len() + size);
        out.extend_from_slice(MAGIC.as_bytes());
        for (path, f) in &self.files {
            let mode = if f.executable { "755" } else { "644" };
            out.extend_from_slice(format!("{mode} {} {path}\n", f.data.len()).as_bytes());
            out.extend_from_slice(&f.data);
            out.push(b'\n');
        }
        out
    }

    /// Reads canonical bytes back, checking every path and that the encoding is the
    /// canonical one (so one content has exactly one digest).
    pub fn decode(bytes: &[u8]) -> Result<Bundle, String> {
        let rest =
            bytes.strip_prefix(MAGIC.as_bytes()).ok_or("not an opsbook bundle (no `opsbook-bundle 1` header)")?;
        let mut bundle = Bundle::new();
        let mut rest = rest;
        let mut previous: Option<String> = None;
        while !rest.is_empty() {
            let end = rest.iter().position(|&b| b == b'\n').ok_or("bundle: a file header has no end")?;
            let header = std::str::from_utf8(&rest[..end]).map_err(|_| "bundle: a file header is not UTF-8")?;
            let mut parts = header.splitn(3, ' ');
            let (Some(mode), Some(size), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("bundle: malformed file header `{}`", truncate(header)));
            };
            let executable = match mode {
                "755" => true,
                "644" => false,
                other => return Err(format!("bundle: `{path}`: mode {} (only 644 and 755)", truncate(other))),
            };
            let size: usize = size
                .parse()
                .ok()
                .filter(|s: &usize| size == s.to_string())
                .ok_or_else(|| format!("bundle: `{path}`: size `{}` is not a number", truncate(size)))?;
            let body = &rest[end + 1..];
            if body.len() < size + 1 || body[size] != b'\n' {
                return Err(format!("bundle: `{path}` is cut short"));
            }
            if previous.as_deref().is_some_and(|p| p >= path) {
                return Err(format!("bundle: `{path}` is out of order or repeated"));
            }
            bundle.add(path, executable, body[..size].to_vec()).map_err(|e| format!("bundle: {e}"))?;
            previous = Some(path.to_string());
            rest = &body[size + 1..];
        }
        Ok(bundle)
    }

    /// The SHA-256 of the canonical bytes, hex.
    pub fn sha256(&self) -> String {
        digest(&self.encode())
    }
}

/// The SHA-256 of bytes, hex (a bundle's name is the digest of its encoding).
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A path may name a file inside the bundle only: relative, `/`-separated, no `.`,
/// `..` or empty components, no control characters.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("an empty path".into());
    }
    if path.starts_with('/') {
        return Err(format!("`{}`: an absolute path (files must be inside the runbook's directory)", truncate(path)));
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return Err(format!("`{}`: control characters or backslashes in a path", truncate(path).escape_debug()));
    }
    // What every file system takes: 255 bytes a name, 1,024 a path inside the bundle.
    if path.len() > 1024 {
        return Err(format!("`{}…`: a path of {} bytes, at most 1024", truncate(path), path.len()));
    }
    for part in path.split('/') {
        if part.len() > 255 {
            return Err(format!("`{}…`: a name of {} bytes, at most 255", truncate(part), part.len()));
        }
        match part {
            "" => return Err(format!("`{}`: an empty path component", truncate(path))),
            "." => return Err(format!("`{}`: a `.` component", truncate(path))),
            ".." => return Err(format!("`{}`: `..` would leave the runbook's directory", truncate(path))),
            _ => {}
        }
    }
    Ok(())
}

/// What changed between two bundles, path by path: `(path, before, after)` for every
/// path added, removed or changed (content or mode).
pub fn changes<'a>(old: &'a Bundle, new: &'a Bundle) -> Vec<(&'a str, Option<&'a BundleFile>, Option<&'a BundleFile>)> {
    let mut paths: Vec<&str> = old.files.keys().chain(new.files.keys()).map(String::as_str).collect();
    paths.sort_unstable();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|p| {
            let (a, b) = (old.files.get(p), new.files.get(p));
            (a != b).then_some((p, a, b))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Bundle {
        let mut b = Bundle::new();
        b.add("scripts/deploy.sh", true, b"#!/bin/sh\necho deploy\n".to_vec()).unwrap();
        b.add("config/app.toml", false, b"port = 80\n".to_vec()).unwrap();
        b.add("empty", false, Vec::new()).unwrap();
        b
    }

    #[test]
    fn encoding_is_canonical_and_round_trips() {
        let b = sample();
        let bytes = b.encode();
        assert!(bytes.starts_with(b"opsbook-bundle 1\n644 10 config/app.toml\nport = 80\n\n644 0 empty\n\n755 "));
        assert_eq!(Bundle::decode(&bytes).unwrap(), b);
        // The same files added in another order: the same bytes, the same name.
        let mut again = Bundle::new();
        again.add("empty", false, Vec::new()).unwrap();
        again.add("scripts/deploy.sh", true, b"#!/bin/sh\necho deploy\n".to_vec()).unwrap();
        again.add("config/app.toml", false, b"port = 80\n".to_vec()).unwrap();
        assert_eq!(again.sha256(), b.sha256());
        // A mode bit is content too.
        again.add("empty", true, Vec::new()).unwrap();
        assert_ne!(again.sha256(), b.sha256());
    }

    #[test]
    fn paths_that_could_escape_are_refused() {
        for (path, why) in [
            ("../etc/passwd", "`..` would leave"),
            ("a/../../b", "`..` would leave"),
            ("/etc/passwd", "an absolute path"),
            ("a//b", "an empty path component"),
            ("./a", "a `.` component"),
            ("a\nb", "control characters"),
            (&"a".repeat(300), "a name of 300 bytes, at most 255"),
            (&"abcd/".repeat(300), "a path of 1500 bytes, at most 1024"),
            ("a\\..\\b", "backslashes"),
            ("", "an empty path"),
        ] {
            let err = Bundle::new().add(path, false, vec![]).unwrap_err();
            assert!(err.contains(why), "{path:?}: {err}");
        }
        let mut b = Bundle::new();
        b.add("a", false, vec![]).unwrap();
        assert!(b.add("a/b", false, vec![]).unwrap_err().contains("a file and a directory"));
    }

    #[test]
    fn tampered_or_non_canonical_bytes_are_refused() {
        let bytes = sample().encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        for (bad, why) in [
            (text.replacen("opsbook-bundle 1", "opsbook-bundle 2", 1), "not an opsbook bundle"),
            (text.replacen("644 10 config", "600 10 config", 1), "only 644 and 755"),
            (text.replacen("644 10 config", "644 010 config", 1), "is not a number"),
            (text.replacen("644 10 config", "644 99 config", 1), "cut short"),
            (text.replacen("config/app.toml", "../app.toml", 1), "would leave"),
            (text.replacen("config/app.toml", "zzz", 1), "out of order"),
            (text[..text.len() - 3].to_string(), "cut short"),
        ] {
            let err = Bundle::decode(bad.as_bytes()).unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
        }
    }

    #[test]
    fn changes_are_listed_by_path() {
        let old = sample();
        let mut new = Bundle::new();
        new.add("scripts/deploy.sh", false, b"#!/bin/sh\necho deploy\n".to_vec()).unwrap();
        new.add("config/app.toml", false, b"port = 81\n".to_vec()).unwrap();
        new.add("README", false, b"hi\n".to_vec()).unwrap();
        let listed: Vec<(&str, bool, bool)> =
            changes(&old, &new).into_iter().map(|(p, a, b)| (p, a.is_some(), b.is_some())).collect();
        assert_eq!(
            listed,
            vec![
                ("README", false, true),
                ("config/app.toml", true, true),
                ("empty", true, false),
                ("scripts/deploy.sh", true, true)
            ]
        );
    }
}
