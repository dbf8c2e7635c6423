//! `run`: a shell script in its own process group, with outputs, validations and timeouts.
//! Also runs rollbacks and prerequisite checks.

use std::collections::BTreeMap;
use std::time::Duration;

use opsbook_core::step::run::Script;
use opsbook_core::template;
use opsbook_core::{CheckedValidation, Step, StepStatus};
use opsbook_store::Phase;
use tokio::sync::mpsc;

use super::AttemptResult;
use crate::lines::LineSplitter;
use crate::patient::Patient;
use crate::process::{self, Exit, ProcessSpec};
use crate::runner::Run;
use crate::{Error, Result};

/// Largest outputs file read; the rest is ignored with a warning.
pub(crate) const MAX_OUTPUTS: u64 = 1 << 20;

pub(crate) struct ScriptRun<'a> {
    /// The rendered script (values already shell-quoted).
    pub text: &'a str,
    pub script: &'a Script,
    pub timeout: Duration,
    pub step_id: Option<&'a str>,
    pub phase: Phase,
    pub attempt: u32,
    pub validations: &'a [CheckedValidation],
    pub cancel_level: u8,
    /// The target it runs for, in a step with `targets` (`$OPSBOOK_TARGET`, `{{ target }}`).
    pub target: Option<&'a str>,
}

pub(crate) async fn attempt(
    run: &mut Run<'_, '_>,
    step: &Step,
    script: &Script,
    attempt: u32,
) -> Result<AttemptResult> {
    let text = match template::render_shell(&script.template, &run.context_for(false, &[&script.template])) {
        Ok(t) => t,
        Err(e) => return Ok(AttemptResult::fatal(format!("run: {e}"))),
    };
    let sr = ScriptRun {
        text: &text,
        script,
        timeout: step.timeout.0,
        step_id: Some(&step.id),
        phase: Phase::Step,
        attempt,
        validations: &step.validate,
        cancel_level: 1,
        target: None,
    };
    exec_script(run, &sr).await
}

/// A script ready to start: its process, the checks it is judged by, its files.
pub(crate) struct Prepared {
    pub spec: ProcessSpec,
    /// The validations, `output_contains` rendered.
    pub validations: Vec<CheckedValidation>,
    outputs_path: std::path::PathBuf,
    script_path: Option<std::path::PathBuf>,
}

/// A script prepared, or settled without running (a template that does not render, a
/// missing working directory, a runbook test's mock).
pub(crate) enum Prep {
    Ready(Prepared),
    Done(AttemptResult),
}

pub(crate) async fn exec_script(run: &mut Run<'_, '_>, sr: &ScriptRun<'_>) -> Result<AttemptResult> {
    let prepared = match prepare(run, sr).await? {
        Prep::Ready(p) => p,
        Prep::Done(result) => return Ok(result),
    };
    let validations = prepared.validations.as_slice();
    let (tx, mut rx) = mpsc::channel::<process::Chunk>(64);
    let cancel = run.hooks.cancel.clone();
    let observer = run.hooks.observer;
    let sink = &mut run.sink;
    let mut seen = vec![false; validations.len()];
    let consume = async {
        let mut out = LineSplitter::default();
        let mut err = LineSplitter::default();
        loop {
            // Flush on a timer too, so a quiet step's last lines reach the store (and `logs -f`).
            let chunk = match tokio::time::timeout(std::time::Duration::from_millis(250), rx.recv()).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(_) => {
                    sink.flush().await?;
                    continue;
                }
            };
            let masker = sink.masker().clone();
            let cut = |b: &[u8]| masker.safe_cut(b);
            let is_out = chunk.stream == opsbook_store::Stream::Stdout;
            let lines = if is_out { out.push(&chunk.data, &cut) } else { err.push(&chunk.data, &cut) };
            for line in lines {
                if is_out {
                    check_line(validations, &mut seen, &line);
                }
                sink.push(observer, sr.step_id, sr.phase, sr.attempt, chunk.stream, &line);
            }
            if sink.should_flush() {
                sink.flush().await?;
            }
        }
        if let Some(line) = out.finish() {
            check_line(validations, &mut seen, &line);
            sink.push(observer, sr.step_id, sr.phase, sr.attempt, opsbook_store::Stream::Stdout, &line);
        }
        if let Some(line) = err.finish() {
            sink.push(observer, sr.step_id, sr.phase, sr.attempt, opsbook_store::Stream::Stderr, &line);
        }
        sink.flush().await?;
        Ok::<(), Error>(())
    };
    // The process group goes on record once the step has run for `RECORD_AFTER`: if this
    // runner dies, the next one kills what is left of it before deciding anything. Before
    // that, recovery finds its processes by their step variables; most steps end sooner,
    // and spare the write.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
    let recorded = {
        let store = run.engine.store.clone();
        let (exec_id, step_id) = (run.exec.id.clone(), sr.step_id.map(str::to_string));
        async move {
            let (Ok(pgid), Some(step_id)) = (started_rx.await, step_id) else { return Ok(None) };
            tokio::select! {
                _ = tokio::time::sleep(RECORD_AFTER) => {}
                _ = ended_rx => return Ok(None),
            }
            // Written even if the step ends meanwhile (then cleared below): a write that
            // went out unanswered may still have been made.
            let process = crate::recovery::process_record(pgid);
            Patient(&store).set_process(&exec_id, &step_id, Some(&process)).await.map(|()| Some(step_id))
        }
    };
    let ran = async {
        let exit = process::run(&prepared.spec, &cancel, tx, Some(started_tx)).await;
        let _ = ended_tx.send(());
        exit
    };
    let (exit, consumed, recorded) = tokio::join!(ran, consume, recorded);
    // What the group left behind is not a later attempt's to kill.
    if let Some(step_id) = recorded? {
        Patient(&run.engine.store).set_process(&run.exec.id, &step_id, None).await?;
    }
    consumed?;
    conclude(run, sr, prepared, exit, &seen, None).await
}

/// The longest script passed as `sh -c TEXT`; a longer one goes in a file.
const MAX_ARGUMENT: usize = 64 * 1024;

/// How long a step runs before its process group is written down (see [`exec_script`]).
const RECORD_AFTER: std::time::Duration = std::time::Duration::from_millis(25);

/// Renders what a script needs and builds its process (`sh -c`, or its file when secrets
/// are about), with the environment it gets.
pub(crate) async fn prepare(run: &mut Run<'_, '_>, sr: &ScriptRun<'_>) -> Result<Prep> {
    // The templates rendered here: the script's environment and `output_contains` checks.
    let templates: Vec<&str> = (sr.validations.iter())
        .filter_map(|v| match v {
            CheckedValidation::OutputContains(t) => Some(t.as_str()),
            _ => None,
        })
        .chain(sr.script.env.values().map(String::as_str))
        .collect();
    let mut ctx = run.context_for(false, &templates);
    ctx.target = sr.target.map(str::to_string);
    let mut validations = Vec::with_capacity(sr.validations.len());
    for v in sr.validations {
        validations.push(match v {
            CheckedValidation::OutputContains(t) => match template::render_plain(t, &ctx) {
                Ok(t) => CheckedValidation::OutputContains(t),
                Err(e) => return Ok(Prep::Done(AttemptResult::fatal(format!("validate.output_contains: {e}")))),
            },
            other => other.clone(),
        });
    }
    if let Some(mocks) = run.engine.config.mocks.clone() {
        return Ok(Prep::Done(super::mock::script(run, sr, &validations, &mocks).await?));
    }
    let mut env = run.params.env_vars();
    // A secret's variable goes only to scripts that name it.
    let names_it = |var: &str| sr.script.template.contains(var) || sr.script.env.values().any(|v| v.contains(var));
    let secret_vars: Vec<String> =
        run.params.secret_names.iter().map(|n| format!("OPSBOOK_PARAM_{}", n.to_ascii_uppercase())).collect();
    env.retain(|(k, _)| !secret_vars.contains(k) || names_it(k));
    for (k, v) in &sr.script.env {
        match template::render_env(k, v, &ctx) {
            Ok(v) => env.push((k.clone(), v)),
            Err(e) => return Ok(Prep::Done(AttemptResult::fatal(format!("env.{k}: {e}")))),
        }
    }
    let cwd = match &sr.script.workdir {
        Some(w) => run.base_dir.join(w),
        None => run.base_dir.clone(),
    };
    if !cwd.is_dir() {
        return Ok(Prep::Done(AttemptResult::fatal(format!("workdir {} does not exist", cwd.display()))));
    }
    let outputs_path = run.scratch_path("outputs")?;
    env.push(("OPSBOOK_OUTPUT".into(), outputs_path.to_string_lossy().into_owned()));
    env.push(("OPSBOOK_EXECUTION_ID".into(), run.exec.id.clone()));
    env.push(("OPSBOOK_STEP_ID".into(), sr.step_id.unwrap_or_default().to_string()));
    env.push(("OPSBOOK_ATTEMPT".into(), sr.attempt.to_string()));
    // With the three above, what recovery finds a dead runner's processes by (`recovery`).
    env.push(("OPSBOOK_PHASE".into(), sr.phase.as_str().to_string()));
    if let Some(t) = sr.target {
        env.push(("OPSBOOK_TARGET".into(), t.to_string()));
    }

    // With secrets about, the script goes in a file only this user can read (in the
    // engine's 0700 scratch directory), not on the command line, where any local user could
    // read it. Without, `-c` spares the file (a step's overhead is what users feel), unless
    // the script is longer than one argument may be (Linux: 128 KiB).
    let mut argv: Vec<String> = sr.script.shell.argv().iter().map(|s| s.to_string()).collect();
    argv[0] = resolve(&argv[0]);
    let script_path = if run.params.secret_names.is_empty() && sr.text.len() <= MAX_ARGUMENT {
        argv.extend(["-c".to_string(), sr.text.to_string()]);
        None
    } else {
        let path = run.scratch_path("script")?;
        write_private(&path, sr.text)
            .map_err(|e| Error::Io(format!("cannot write the script to {}: {e}", path.display())))?;
        argv.push(path.to_string_lossy().into_owned());
        Some(path)
    };
    let spec = ProcessSpec {
        argv,
        cwd,
        env,
        timeout: sr.timeout,
        kill_grace: run.engine.config.kill_grace,
        cancel_level: sr.cancel_level,
        parent_death: run.engine.config.parent_death,
        stdin: None,
    };
    Ok(Prep::Ready(Prepared { spec, validations, outputs_path, script_path }))
}

/// Judges a script that ran: its exit, what its output showed (`seen`, per validation),
/// and its outputs (the `$OPSBOOK_OUTPUT` file, or `outputs` when they came another way).
pub(crate) async fn conclude(
    run: &mut Run<'_, '_>,
    sr: &ScriptRun<'_>,
    prepared: Prepared,
    exit: std::io::Result<Exit>,
    seen: &[bool],
    outputs: Option<String>,
) -> Result<AttemptResult> {
    if let Some(path) = &prepared.script_path {
        let _ = std::fs::remove_file(path);
    }
    let exit = match exit {
        Ok(exit) => exit,
        Err(e) => {
            let _ = std::fs::remove_file(&prepared.outputs_path);
            let program = prepared.spec.argv.first().cloned().unwrap_or_default();
            return Ok(AttemptResult::fatal(format!("cannot start `{program}`: {e}")));
        }
    };
    let (code, mut problems) = match exit {
        Exit::Code(c) => (Some(c), Vec::new()),
        Exit::Signal(s) => (None, vec![format!("killed by signal {s}")]),
        Exit::TimedOut => {
            let _ = std::fs::remove_file(&prepared.outputs_path);
            let mut r = AttemptResult::failed(
                StepStatus::TimedOut,
                format!("timed out after {}", opsbook_core::Dur(sr.timeout)),
            );
            r.exit_code = None;
            return Ok(r);
        }
        Exit::Cancelled => {
            let _ = std::fs::remove_file(&prepared.outputs_path);
            return Ok(AttemptResult::failed(StepStatus::Cancelled, "cancelled".into()));
        }
    };
    problems.extend(judge(&prepared.validations, seen, code));
    let (outputs, warnings) = match outputs {
        Some(text) => parse_outputs(&text),
        None => read_outputs(&prepared.outputs_path),
    };
    let _ = std::fs::remove_file(&prepared.outputs_path);
    for w in warnings {
        let w = match sr.target {
            Some(t) => format!("warning: {t}: {w}"),
            None => format!("warning: {w}"),
        };
        run.system(sr.step_id, sr.phase, &w).await?;
    }
    let mut result = if problems.is_empty() {
        AttemptResult::ok(outputs)
    } else {
        AttemptResult::failed(StepStatus::Failed, problems.join("; "))
    };
    result.exit_code = code;
    Ok(result)
}

/// What a script's exit code and output fail of its validations (without any, a
/// non-zero exit code fails it).
pub(crate) fn judge(validations: &[CheckedValidation], seen: &[bool], code: Option<i32>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(c) = code {
        let exit_rules: Vec<_> = validations
            .iter()
            .filter_map(|v| match v {
                CheckedValidation::ExitCode(codes) => Some(codes),
                _ => None,
            })
            .collect();
        let accepted = if exit_rules.is_empty() { c == 0 } else { exit_rules.iter().all(|r| r.accepts(c)) };
        if !accepted {
            problems.push(format!("exited with code {c}"));
        }
    }
    for (v, ok) in validations.iter().zip(seen) {
        match v {
            CheckedValidation::OutputContains(t) if !ok => problems.push(format!("output does not contain {t:?}")),
            CheckedValidation::OutputMatches(re) if !ok => {
                problems.push(format!("no output line matches {}", re.as_str()))
            }
            _ => {}
        }
    }
    problems
}

/// Writes `text` to a new file readable and writable by this user only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

/// The absolute path of a program on PATH, looked up once: spawning by absolute path
/// spares a failed `execve` for every PATH entry before the right one, on every step.
fn resolve(program: &str) -> String {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().expect("resolve cache");
    map.entry(program.to_string())
        .or_insert_with(|| {
            std::env::var_os("PATH")
                .into_iter()
                .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
                .map_or_else(|| program.to_string(), |p| p.to_string_lossy().into_owned())
        })
        .clone()
}

pub(crate) fn check_line(validations: &[CheckedValidation], seen: &mut [bool], line: &[u8]) {
    if validations.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(line);
    for (v, ok) in validations.iter().zip(seen.iter_mut()) {
        if *ok {
            continue;
        }
        *ok = match v {
            CheckedValidation::OutputContains(t) => text.contains(t.as_str()),
            CheckedValidation::OutputMatches(re) => re.is_match(&text),
            _ => false,
        };
    }
}

fn read_outputs(path: &std::path::Path) -> (BTreeMap<String, String>, Vec<String>) {
    use std::io::Read;
    let mut text = Vec::new();
    let mut warnings = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(MAX_OUTPUTS + 1).read_to_end(&mut text);
    }
    if text.len() as u64 > MAX_OUTPUTS {
        text.truncate(MAX_OUTPUTS as usize);
        whole_lines(&mut text);
        warnings.push(CUT.into());
    }
    let (outputs, mut more) = parse_outputs(&String::from_utf8_lossy(&text));
    warnings.append(&mut more);
    (outputs, warnings)
}

/// What a step is told when its outputs file passed [`MAX_OUTPUTS`].
pub(crate) const CUT: &str =
    "the outputs file is larger than 1 MiB; the line the limit fell in, and all after it, were ignored";

/// Outputs cut at the size kept end at their last whole line: a value cut short is not
/// passed on as if it were the value.
pub(crate) fn whole_lines(text: &mut Vec<u8>) {
    let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |nl| nl + 1);
    text.truncate(keep);
}

/// Parses `key=value` lines and `key<<DELIMITER` blocks, as GitHub Actions does.
pub(crate) fn parse_outputs(text: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut lines = text.lines();
    let valid_key = |k: &str| {
        let mut c = k.chars();
        matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == '-')
    };
    while let Some(line) = lines.next() {
        if line.trim().is_empty() {
            continue;
        }
        let eq = line.find('=');
        let heredoc = line.find("<<");
        if let Some(h) = heredoc.filter(|h| eq.is_none_or(|e| *h < e)) {
            let key = &line[..h];
            let delim = &line[h + 2..];
            let mut value = Vec::new();
            let mut closed = false;
            for l in lines.by_ref() {
                if l == delim {
                    closed = true;
                    break;
                }
                value.push(l);
            }
            if !closed {
                warnings.push(format!("output `{key}`: missing closing delimiter `{delim}`"));
            } else if valid_key(key) {
                out.insert(key.to_string(), value.join("\n"));
            } else {
                warnings.push(format!("invalid output name `{key}`"));
            }
        } else if let Some(e) = eq {
            let key = &line[..e];
            if valid_key(key) {
                out.insert(key.to_string(), line[e + 1..].to_string());
            } else {
                warnings.push(format!("invalid output name `{key}`"));
            }
        } else {
            warnings.push(format!("ignored outputs line without `=`: {line:?}"));
        }
    }
    (out, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An outputs file past 1 MiB keeps its whole lines before the limit: the value the
    /// limit cut is dropped, not passed on short.
    #[test]
    fn outputs_past_the_limit_keep_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outputs");
        let big = "x".repeat(2 << 20);
        std::fs::write(&path, format!("a=1\nbig={big}\nk=v\n")).unwrap();
        let (out, warnings) = read_outputs(&path);
        assert_eq!(out.into_iter().collect::<Vec<_>>(), vec![("a".to_string(), "1".to_string())]);
        assert_eq!(warnings, vec![CUT.to_string()]);
    }

    #[test]
    fn parses_outputs() {
        let (out, warnings) =
            parse_outputs("port=8080\nurl=http://x/?a=b\nnotes<<EOF\nline 1\nline 2\nEOF\nbad key=1\njunk\n");
        assert_eq!(out["port"], "8080");
        assert_eq!(out["url"], "http://x/?a=b");
        assert_eq!(out["notes"], "line 1\nline 2");
        assert_eq!(warnings, vec!["invalid output name `bad key`", "ignored outputs line without `=`: \"junk\""]);
    }

    /// Whatever a value holds, a script that prints it in any shell context prints
    /// exactly the value (run by a real `sh`): bare, inside double and single quotes,
    /// and in here-documents with unquoted and quoted delimiters.
    mod quoting {
        use opsbook_core::template::{Context, render_shell};
        use proptest::prelude::*;

        fn printed(script: &str, value: &str) -> Result<String, String> {
            let ctx = Context { params: serde_json::json!({ "x": value }), ..Context::default() };
            let text = render_shell(script, &ctx)?;
            let out = std::process::Command::new("sh").arg("-c").arg(&text).output().expect("sh runs");
            assert!(out.status.success(), "{text:?}: {}", String::from_utf8_lossy(&out.stderr));
            Ok(String::from_utf8(out.stdout).expect("what went in was UTF-8"))
        }

        /// Strings rich in what shells treat specially, and anything else (no NUL).
        fn value() -> impl Strategy<Value = String> {
            let special = prop::sample::select(vec![
                "'", "\"", "\\", "$", "`", "$(", ")", "${", "}", "\n", "\r", "\t", " ", ";", "&", "|", "<", ">", "*",
                "?", "[", "~", "#", "!", "EOF", "\nEOF\n", "{{", "%}", "-", "ü", "🚀",
            ]);
            let piece = prop_oneof![special.prop_map(str::to_string), "[^\\x00]{0,4}"];
            prop::collection::vec(piece, 0..12).prop_map(|p| p.concat())
        }

        const FORMS: [(&str, &str, &str); 6] = [
            ("printf %s {{ params.x }}", "", ""),
            ("printf %s \"<{{ params.x }}>\"", "<", ">"),
            ("printf %s '<{{ params.x }}>'", "<", ">"),
            ("printf %s \"$(printf %s {{ params.x }})|\"", "", "|"),
            ("cat <<EOF\n<{{ params.x }}>\nEOF", "<", ">\n"),
            ("cat <<'EOF'\n<{{ params.x }}>\nEOF", "<", ">\n"),
        ];

        proptest! {
            #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
            #[test]
            fn the_shell_reads_back_exactly_the_value(v in value()) {
                for (script, before, after) in FORMS {
                    match printed(script, &v) {
                        Ok(out) => {
                            // $( ) drops trailing newlines, as it always does.
                            let expected = if script.contains("$(") {
                                format!("{before}{}{after}", v.trim_end_matches('\n'))
                            } else {
                                format!("{before}{v}{after}")
                            };
                            prop_assert_eq!(out, expected, "{}", script);
                        }
                        // A value bash would run a command from as a name is refused
                        // everywhere (`a[$(cmd)]`).
                        Err(e) if opsbook_core::shell::runs_in_a_subscript(&v) => {
                            prop_assert!(e.contains("subscript"), "{}: {}", script, e);
                        }
                        // Otherwise only a value that would end the here-document (or that
                        // dash would misread there) is refused.
                        Err(e) => {
                            prop_assert!(script.contains("<<") && e.contains("here-document"), "{}: {}", script, e);
                            let risky = |l: &str| {
                                let m = l.bytes().zip("EOF".bytes()).take_while(|(a, b)| a == b).count();
                                m == 3 || (m > 0 && l.as_bytes().get(m).is_some_and(|b| !b.is_ascii()))
                            };
                            prop_assert!(format!("<{v}>").split('\n').any(risky), "{:?}", v);
                        }
                    }
                }
            }
        }

        #[test]
        fn a_nul_byte_is_refused_everywhere() {
            for (script, _, _) in FORMS {
                let err = printed(script, "a\0b").unwrap_err();
                assert!(err.contains("NUL"), "{script}: {err}");
            }
        }
    }
}
