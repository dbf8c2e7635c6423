//! What a person sees: a live step list while running, and summaries afterwards.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use comfy_table::{Cell, Color};
use console::style;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use opsbook_core::duration::human_ms;
use opsbook_core::{ExecStatus, StepStatus};
use opsbook_engine::{Event, Observer, Start};
use opsbook_store::{Phase, Stream};

/// Live display on stderr-free stdout: a spinner with elapsed time for the running
/// step on a terminal, plain lines otherwise. Output lines stream beneath their step.
pub struct Live {
    mp: MultiProgress,
    tty: bool,
    total: usize,
    current: Mutex<Option<ProgressBar>>,
    /// The step that started last: lines of another step (a parallel step's branches)
    /// are labelled with their own.
    step: Mutex<String>,
}

impl Live {
    pub fn new(total_steps: usize) -> Live {
        let tty = std::io::stdout().is_terminal();
        let target = if tty { ProgressDrawTarget::stdout() } else { ProgressDrawTarget::hidden() };
        Live {
            mp: MultiProgress::with_draw_target(target),
            tty,
            total: total_steps,
            current: Mutex::new(None),
            step: Mutex::default(),
        }
    }

    pub fn progress(&self) -> MultiProgress {
        self.mp.clone()
    }

    fn line(&self, text: &str) {
        if self.tty {
            // Above the spinner, as a plain line (`MultiProgress::println` pads each line
            // with spaces to the terminal's width, which copied output keeps).
            self.mp.suspend(|| say!("{text}"));
        } else {
            say!("{text}");
        }
    }

    fn spinner(&self, msg: String) {
        let mut cur = self.current.lock().expect("display lock");
        if let Some(pb) = cur.take() {
            pb.finish_and_clear();
        }
        if !self.tty {
            return;
        }
        let pb = self.mp.add(ProgressBar::new_spinner());
        pb.set_style(
            ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed:.dim}")
                .expect("valid template")
                .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
        );
        pb.set_message(msg);
        pb.enable_steady_tick(Duration::from_millis(100));
        *cur = Some(pb);
    }

    fn clear(&self) {
        if let Some(pb) = self.current.lock().expect("display lock").take() {
            pb.finish_and_clear();
        }
    }
}

pub fn status_mark(s: StepStatus) -> String {
    match s {
        StepStatus::Succeeded => style("✓").green().to_string(),
        StepStatus::Skipped => style("↷").dim().to_string(),
        StepStatus::Waiting => style("⏸").yellow().to_string(),
        StepStatus::Pending => style("·").dim().to_string(),
        StepStatus::Running => style("▶").cyan().to_string(),
        _ => style("✗").red().to_string(),
    }
}

/// A table cell for a step status: comfy-table colours it (and measures it) itself.
pub fn step_cell(s: StepStatus) -> Cell {
    let (mark, color) = match s {
        StepStatus::Succeeded => ("✓", Color::Green),
        StepStatus::Skipped => ("↷", Color::DarkGrey),
        StepStatus::Waiting => ("⏸", Color::Yellow),
        StepStatus::Pending => ("·", Color::DarkGrey),
        StepStatus::Running => ("▶", Color::Cyan),
        _ => ("✗", Color::Red),
    };
    Cell::new(format!("{mark} {s}")).fg(color)
}

/// A table cell for an execution status.
pub fn exec_cell(s: ExecStatus) -> Cell {
    let color = match s {
        ExecStatus::Succeeded => Color::Green,
        ExecStatus::Waiting | ExecStatus::Queued | ExecStatus::Running => Color::Yellow,
        _ => Color::Red,
    };
    Cell::new(s.as_str()).fg(color)
}

pub fn exec_status(s: ExecStatus) -> String {
    let text = s.as_str();
    match s {
        ExecStatus::Succeeded => style(text).green().bold().to_string(),
        ExecStatus::Waiting | ExecStatus::Queued | ExecStatus::Running => style(text).yellow().bold().to_string(),
        _ => style(text).red().bold().to_string(),
    }
}

impl Observer for Live {
    fn on_event(&self, e: &Event<'_>) {
        match e {
            Event::Started { execution_id, runbook, version, start } => {
                let verb = if *start == Start::Fresh { "Running" } else { "Resuming" };
                self.line(&format!(
                    "{verb} {} {} {}",
                    style(runbook).bold(),
                    style(format!("v{version}")).dim(),
                    style(format!("(execution {execution_id})")).dim()
                ));
            }
            Event::Warning { message } => self.line(&format!("{} {message}", style("warning:").yellow().bold())),
            Event::CheckStarted { description } => self.spinner(format!("checking: {description}")),
            Event::CheckFinished { description, checked: false, .. } => {
                self.line(&format!(
                    "{} prerequisite: {description} {}",
                    style("•").dim(),
                    style("(confirm yourself)").dim()
                ));
            }
            Event::CheckFinished { description, ok, error, .. } => {
                self.clear();
                let mark = if *ok { status_mark(StepStatus::Succeeded) } else { status_mark(StepStatus::Failed) };
                let err = error.map(|e| format!(" — {}", style(e).red())).unwrap_or_default();
                self.line(&format!("{mark} prerequisite: {description}{err}"));
            }
            Event::StepStarted { idx, step_id, name, attempt, max_attempts } => {
                *self.step.lock().expect("display lock") = step_id.to_string();
                let retry = if *attempt > 1 { format!(" (attempt {attempt}/{max_attempts})") } else { String::new() };
                let label = format!("[{}/{}] {}{}", idx + 1, self.total, style(step_id).bold(), retry);
                let label = if name != step_id { format!("{label} {}", style(name).dim()) } else { label };
                if !self.tty {
                    say!("▶ {label}");
                }
                self.spinner(label);
            }
            Event::Log { stream, line, phase, step_id } => {
                let bar = match (phase, stream) {
                    (_, Stream::System) => style("  ›").cyan().to_string(),
                    (Phase::Rollback, _) => style("  ↺").magenta().to_string(),
                    (_, Stream::Stderr) => style("  │").red().dim().to_string(),
                    _ => style("  │").dim().to_string(),
                };
                let line = opsbook_core::terminal::for_terminal(line);
                let other = step_id.filter(|id| *id != self.step.lock().expect("display lock").as_str());
                match other {
                    Some(id) => self.line(&format!("{bar} {} {line}", style(format!("[{id}]")).dim())),
                    None => self.line(&format!("{bar} {line}")),
                }
            }
            Event::StepFinished { idx, step_id, status, duration_ms, error } => {
                self.clear();
                // A skipped step says why (its `when`), and took no time.
                let skipped = *status == StepStatus::Skipped;
                let err = match error {
                    Some(e) if skipped => format!(" — {}", style(e).dim()),
                    Some(e) => format!(" — {}", style(e).red()),
                    None => String::new(),
                };
                let took = if skipped {
                    String::new()
                } else {
                    format!(" {}", style(human_ms(u64::try_from(*duration_ms).unwrap_or(0))).dim())
                };
                self.line(&format!(
                    "{} [{}/{}] {} {}{took}{err}",
                    status_mark(*status),
                    idx + 1,
                    self.total,
                    style(step_id).bold(),
                    status,
                ));
            }
            Event::Waiting { step_id, message, kind } => {
                self.clear();
                // A manual step's message says so itself ("manual step: …").
                let what = match kind {
                    opsbook_store::WaitKind::Child => "waits",
                    _ if message.starts_with("manual ") => "waits for a person",
                    _ => "waits for approval",
                };
                self.line(&format!("{} {} {what}: {message}", status_mark(StepStatus::Waiting), style(step_id).bold()));
            }
            // The gate step logs every check itself; nothing more to show here.
            Event::GateBlocked { .. } | Event::GateCleared { .. } => {}
            Event::RollbackStarted { step_id } => self.spinner(format!("rolling back {}", style(step_id).bold())),
            Event::RollbackFinished { step_id, status, error } => {
                self.clear();
                let err = error.map(|e| format!(" — {}", style(e).red())).unwrap_or_default();
                self.line(&format!("{} rollback of {} {status}{err}", status_mark(*status), style(step_id).bold()));
            }
            Event::Finished { .. } => self.clear(),
        }
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    let first = s.lines().next().unwrap_or_default();
    if first.chars().count() > max || s.lines().count() > 1 {
        format!("{}…", first.chars().take(max).collect::<String>())
    } else {
        first.to_string()
    }
}
