//! `opsbook test PATH... [--junit FILE]`: runs runbooks' test cases (`tests:` in the
//! document, and `NAME.test.yaml` beside it) through the engine with their mocks: no
//! process starts, nothing goes over the network, nothing is stored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use console::style;
use opsbook_engine::EngineConfig;
use opsbook_engine::suite::{CaseResult, run_tests};
use opsbook_store_any::AnyStore;

use super::{EXIT_FAILED, EXIT_OK, usage};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Runbook files, or directories searched for them (default: the current one)
    pub paths: Vec<PathBuf>,
    /// Also write the results as JUnit XML (for CI test reports)
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// The test file beside a runbook: `NAME.test.yaml` (or `.test.yml`).
fn test_file_of(runbook: &Path) -> Option<PathBuf> {
    let stem = runbook.file_stem()?.to_string_lossy().into_owned();
    ["yaml", "yml"].into_iter().map(|ext| runbook.with_file_name(format!("{stem}.test.{ext}"))).find(|p| p.is_file())
}

fn is_test_file(path: &Path) -> bool {
    runbook_of(path).is_some()
}

/// The runbook a test file (`NAME.test.yaml`) is beside: `NAME.yaml` (or `.yml`).
pub fn runbook_of(test_file: &Path) -> Option<PathBuf> {
    let name = test_file.file_name()?.to_string_lossy().into_owned();
    let stem = name.strip_suffix(".test.yaml").or_else(|| name.strip_suffix(".test.yml"))?;
    let candidates = ["yaml", "yml"].map(|ext| test_file.with_file_name(format!("{stem}.{ext}")));
    Some(candidates.iter().find(|p| p.is_file()).unwrap_or(&candidates[0]).clone())
}

fn read(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    opsbook_core::Diagnostic::utf8(bytes).map_err(|d| usage(d.headline(&path.display().to_string())))
}

pub async fn exec(args: Args) -> Result<u8> {
    let paths = if args.paths.is_empty() { vec![PathBuf::from(".")] } else { args.paths.clone() };
    let named: Vec<PathBuf> = paths.iter().filter(|p| p.is_file()).cloned().collect();
    let mut files = Vec::new();
    let (mut invalid, mut untested) = (0, Vec::new());
    for f in super::runbook_files(&paths)? {
        // Tests beside no runbook (it was renamed, or removed) would stop running unseen.
        if let Some(rb) = runbook_of(&f).filter(|rb| !rb.is_file()) {
            eprintln!(
                "{} {}: the tests of {}, which is missing",
                style("error:").red().bold().for_stderr(),
                f.display(),
                rb.display()
            );
            invalid += 1;
            continue;
        }
        if is_test_file(&f) || (!named.contains(&f) && super::validate::is_companion_file(&read(&f)?)) {
            continue;
        }
        files.push(f);
    }
    let store = AnyStore::in_memory()?;
    let mut results: Vec<CaseResult> = Vec::new();
    for f in &files {
        let shown = f.display().to_string();
        let text = read(f)?;
        let rb = match opsbook_core::parse(&text) {
            Ok(rb) => rb,
            Err(diags) => {
                diags.iter().for_each(|d| eprintln!("{}\n", d.render(&shown, &text)));
                invalid += 1;
                continue;
            }
        };
        let extra = match test_file_of(f) {
            Some(tf) => {
                let tests = read(&tf)?;
                match opsbook_core::testcase::parse_file(&tests, &rb) {
                    Ok(t) => t,
                    Err(diags) => {
                        let shown = tf.display().to_string();
                        diags.iter().for_each(|d| eprintln!("{}\n", d.render(&shown, &tests)));
                        invalid += 1;
                        continue;
                    }
                }
            }
            None => Vec::new(),
        };
        if rb.tests.is_empty() && extra.is_empty() {
            untested.push(shown);
            continue;
        }
        let base_dir = f.canonicalize().ok().and_then(|p| p.parent().map(PathBuf::from)).unwrap_or_default();
        let ran = run_tests(store.clone(), &EngineConfig::default(), &rb, &extra, base_dir).await;
        for r in &ran {
            print_case(&shown, r);
        }
        results.extend(ran);
    }
    let failed = results.iter().filter(|r| !r.passed()).count();
    let passed = results.len() - failed;
    if !untested.is_empty() {
        say!("{} without tests: {}", style("note:").yellow(), untested.join(", "));
    }
    let not_run = if invalid > 0 { format!("; {invalid} file(s) not valid, not run") } else { String::new() };
    say!("{passed} passed, {failed} failed{not_run}");
    if let Some(path) = &args.junit {
        // Not a failing test (exit 1): the report could not be written (exit 2).
        std::fs::write(path, junit(&results)).map_err(|e| usage(format!("cannot write {}: {e}", path.display())))?;
    }
    if invalid > 0 {
        return Err(usage(format!("{invalid} file(s) are not valid; their tests did not run")));
    }
    if results.is_empty() {
        return Err(usage("found no test cases: add `tests:` to a runbook, or a NAME.test.yaml beside it"));
    }
    Ok(if failed > 0 { EXIT_FAILED } else { EXIT_OK })
}

fn took(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

fn print_case(file: &str, r: &CaseResult) {
    if r.passed() {
        say!("{} {} › {} {}", style("ok  ").green(), r.runbook, r.name, style(took(r.took)).dim());
    } else {
        say!("{} {} › {} ({file})", style("FAIL").red().bold(), r.runbook, r.name);
        for f in &r.failures {
            say!("       {f}");
        }
    }
    for n in &r.notes {
        say!("       {} {n}", style("note:").yellow());
    }
}

fn xml(text: &str) -> String {
    text.chars()
        .filter(|c| matches!(c, '\t' | '\n' | '\r') || !c.is_control())
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The results as JUnit XML: one test suite per runbook, one test case per case.
pub fn junit(results: &[CaseResult]) -> String {
    let mut suites: Vec<(&str, Vec<&CaseResult>)> = Vec::new();
    for r in results {
        match suites.iter_mut().find(|(n, _)| *n == r.runbook) {
            Some((_, cases)) => cases.push(r),
            None => suites.push((&r.runbook, vec![r])),
        }
    }
    let failures = results.iter().filter(|r| !r.passed()).count();
    let total: f64 = results.iter().map(|r| r.took.as_secs_f64()).sum();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"opsbook\" tests=\"{}\" failures=\"{failures}\" time=\"{total:.3}\">\n",
        results.len()
    );
    for (name, cases) in suites {
        let failed = cases.iter().filter(|c| !c.passed()).count();
        let time: f64 = cases.iter().map(|c| c.took.as_secs_f64()).sum();
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" time=\"{time:.3}\">\n",
            xml(name),
            cases.len()
        ));
        for c in cases {
            let attrs =
                format!("name=\"{}\" classname=\"{}\" time=\"{:.3}\"", xml(&c.name), xml(name), c.took.as_secs_f64());
            if c.passed() {
                out.push_str(&format!("    <testcase {attrs}/>\n"));
            } else {
                let text = c.failures.join("\n");
                out.push_str(&format!(
                    "    <testcase {attrs}>\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    xml(c.failures.first().map(String::as_str).unwrap_or_default()),
                    xml(&text)
                ));
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
