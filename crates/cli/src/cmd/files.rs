//! Which files under a directory are opsbook's: runbooks, and their gates files,
//! inventories and tests. Other tools' YAML beside them (Kubernetes manifests, a chart's
//! values, rule files, CI pipelines) is left to travel in the bundles, and named.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::usage;

/// Finds runbook files: the files given, and opsbook's `*.yaml`/`*.yml` under the
/// directories given (naming, on standard error, the YAML files left out as another
/// tool's).
pub fn runbook_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let (mut out, mut theirs) = (Vec::new(), Vec::new());
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out, &mut theirs, &[]).with_context(|| format!("cannot read directory {}", p.display()))?;
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(usage(format!("{}: no such file or directory", p.display())));
        }
    }
    name_left_out(&theirs);
    Ok(out)
}

/// Directories `opsbook list` looks into only when named: test fixtures, build output.
const NOT_RUNBOOKS: &[&str] = &["tests", "test", "fixtures", "target", "node_modules"];

/// Runbook files under the current directory, leaving out test fixtures and build output
/// (`list` without a directory).
pub fn runbook_files_here() -> Result<Vec<PathBuf>> {
    let (mut out, mut theirs) = (Vec::new(), Vec::new());
    walk(Path::new("."), &mut out, &mut theirs, NOT_RUNBOOKS).context("cannot read the current directory")?;
    name_left_out(&theirs);
    Ok(out.into_iter().map(|p| p.strip_prefix(".").map(Path::to_path_buf).unwrap_or(p)).collect())
}

fn name_left_out(theirs: &[PathBuf]) {
    if theirs.is_empty() {
        return;
    }
    let shown: Vec<String> = theirs.iter().take(5).map(|p| p.display().to_string()).collect();
    let more = if theirs.len() > 5 { format!(" and {} more", theirs.len() - 5) } else { String::new() };
    eprintln!(
        "note: left out {} YAML file(s) that are not opsbook's (they travel in bundles as files): {}{more}",
        theirs.len(),
        shown.join(", ")
    );
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, theirs: &mut Vec<PathBuf>, skip: &[&str]) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let path = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        if e.file_type()?.is_dir() {
            if !skip.contains(&name.as_ref()) {
                walk(&path, out, theirs, skip)?;
            }
        } else if matches!(path.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
            if is_foreign_yaml(&path) { theirs.push(path) } else { out.push(path) }
        }
    }
    Ok(())
}

/// Whether a YAML file found in a directory is another tool's. Read as YAML: its
/// `apiVersion` (any case) is not `opsbook/…` and its `kind` not `Runbook`; or it has
/// neither, and is none of opsbook's other files: a gates file (`gates`), an inventory
/// (only `hosts` and `groups`, as mappings), a test file (`tests`, a list), or a runbook
/// missing its header (`spec` with `steps`). A file that does not read as one YAML
/// document (a Kubernetes file of many, one with an error) is judged by its lines.
fn is_foreign_yaml(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else { return false };
    if meta.len() > 4 << 20 {
        return false;
    }
    let Ok(bytes) = std::fs::read(path) else { return false };
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim_start_matches('\u{feff}');
    match serde_saphyr::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => foreign_document(&map),
        Ok(serde_json::Value::Null) => false,
        Ok(_) => true,
        Err(_) => foreign_by_lines(text),
    }
}

fn foreign_document(map: &serde_json::Map<String, serde_json::Value>) -> bool {
    let get = |key: &str| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v);
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_ascii_lowercase);
    let (api, kind) = (text(get("apiVersion")), text(get("kind")));
    // (`kind: Runbook` with a mistyped `apiVersion` is ours, to be told about it.)
    if api.is_some() || kind.is_some() {
        return !api.is_some_and(|a| a.starts_with("opsbook/")) && kind.as_deref() != Some("runbook");
    }
    let mapping = |v: &serde_json::Value| v.is_object() || v.is_null();
    let gates = get("gates").is_some();
    let tests = get("tests").is_some_and(|t| t.is_array());
    let inventory = !map.is_empty() && map.iter().all(|(k, v)| (k == "hosts" || k == "groups") && mapping(v));
    let headless = get("spec").is_some_and(|s| s.get("steps").is_some());
    !(gates || tests || inventory || headless)
}

/// [`is_foreign_yaml`] for a text that is not one YAML document: its top-level keys, line
/// by line.
fn foreign_by_lines(text: &str) -> bool {
    const OURS: &[&str] = &["apiversion", "kind", "metadata", "spec", "gates", "hosts", "groups", "tests"];
    let keys = text.lines().filter_map(|l| {
        let (key, value) = l.split_once(':')?;
        let key = key.trim_end().trim_start_matches("---").trim().trim_matches(['"', '\'']).to_ascii_lowercase();
        (!key.is_empty() && !l.starts_with([' ', '\t', '#', '-'])).then(|| (key, value.trim().to_ascii_lowercase()))
    });
    let (mut ours, mut other_api, mut runbook_kind) = (false, false, false);
    for (key, value) in keys {
        let value = value.trim_matches(['"', '\'']);
        other_api |= key == "apiversion" && !value.starts_with("opsbook/");
        runbook_kind |= key == "kind" && value == "runbook";
        ours |= OURS.contains(&key.as_str());
    }
    !ours || (other_api && !runbook_kind)
}

#[cfg(test)]
mod tests {
    use super::foreign_document;

    fn foreign(yaml: &str) -> bool {
        match serde_saphyr::from_str::<serde_json::Value>(yaml).unwrap() {
            serde_json::Value::Object(map) => foreign_document(&map),
            _ => true,
        }
    }

    #[test]
    fn other_tools_yaml_is_told_from_opsbooks() {
        for ours in [
            "apiVersion: opsbook/v1\nkind: Runbook\n",
            "{apiVersion: opsbook/v1, kind: Runbook, spec: {steps: []}}",
            "{\"apiVersion\": \"opsbook/v1\"}",
            "apiversion: opsbook/v1\n",
            "apiVersion: opsbok/v1\nkind: Runbook\n",
            "Kind: Runbook\n",
            "metadata: {name: x}\nspec: {steps: [{id: a, run: x}]}\n",
            "gates: {prod: {sources: []}}\n",
            "hosts: {web-1: {}}\ngroups: {web: [web-1]}\n",
            "tests:\n  - name: x\n",
        ] {
            assert!(!foreign(ours), "{ours}");
        }
        for theirs in [
            "apiVersion: apps/v1\nkind: Deployment\n",
            "replicas: 3\n",
            "replicaCount: 1\nmetadata: {labels: {}}\nspec: {x: 1}\n",
            "stages: [test]\ntests: {script: make test}\n",
            "groups:\n  - name: web\n    rules: []\n",
        ] {
            assert!(foreign(theirs), "{theirs}");
        }
        assert!(super::foreign_by_lines("apiVersion: apps/v1\nkind: Deployment\n---\nkind: Service\n"));
        assert!(!super::foreign_by_lines("apiVersion: opsbook/v1\nkind: Runbook\nspec: [oops\n"));
    }
}
