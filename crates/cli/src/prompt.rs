//! Asking for an approval, or a manual step's confirmation, on the terminal.

use std::io::{BufRead, IsTerminal, Write};

use indicatif::MultiProgress;
use opsbook_engine::{ApprovalPrompt, ApprovalRequest, Confirmation, Decision, ManualRequest};

/// Asks on the terminal when stdin is one; otherwise the execution waits.
pub struct TerminalPrompt {
    pub progress: MultiProgress,
    pub user: String,
}

impl TerminalPrompt {
    pub fn available() -> bool {
        std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
    }
}

impl ApprovalPrompt for TerminalPrompt {
    fn ask(&self, r: &ApprovalRequest) -> Option<Decision> {
        self.progress.suspend(|| {
            let mut err = std::io::stderr();
            let approvers = if r.approvers.is_empty() { "anyone".to_string() } else { r.approvers.join(", ") };
            let _ = writeln!(
                err,
                "\n{} step `{}` needs approval ({} of {}, by {approvers})\n  {}",
                console::style("approval:").yellow().bold(),
                r.step_id,
                r.approvals_so_far,
                r.min_approvals,
                r.message
            );
            let answer = loop {
                let _ = write!(err, "Approve as {}? [y]es / [n]o / [l]ater: ", self.user);
                let _ = err.flush();
                let mut line = String::new();
                if std::io::stdin().lock().read_line(&mut line).ok()? == 0 {
                    return None;
                }
                match line.trim().to_ascii_lowercase().as_str() {
                    "y" | "yes" => break true,
                    "n" | "no" => break false,
                    "l" | "later" | "" => return None,
                    _ => continue,
                }
            };
            Some(Decision { approver: self.user.clone(), approved: answer, comment: optional(&mut err, "Comment") })
        })
    }

    /// Shows the instructions, then asks for each checklist item: all confirmed is done;
    /// a `no` asks whether it could not be done at all (the step fails) or is for later.
    fn confirm(&self, r: &ManualRequest) -> Option<Confirmation> {
        self.progress.suspend(|| {
            let mut err = std::io::stderr();
            let what = if r.phase == opsbook_store::Phase::Rollback { "the rollback of step" } else { "step" };
            let _ = writeln!(
                err,
                "\n{} {what} `{}` is for you to do by hand:\n  {}",
                console::style("manual:").yellow().bold(),
                r.step_id,
                r.instructions
            );
            let mut done = true;
            for (i, item) in r.checklist.iter().enumerate() {
                let question = format!("  [{}/{}] {item}: done? [y]es / [n]o / [l]ater: ", i + 1, r.checklist.len());
                match ask(&mut err, &question, &["y", "n", "l"])?.as_str() {
                    "y" => {}
                    "n" => {
                        done = false;
                        break;
                    }
                    _ => return None,
                }
            }
            if done && r.checklist.is_empty() {
                match ask(&mut err, "Done? [y]es / [n]o / [l]ater: ", &["y", "n", "l"])?.as_str() {
                    "y" => {}
                    "n" => done = false,
                    _ => return None,
                }
            }
            if !done {
                let q = "Could it not be done at all (the step fails)? [y]es, it failed / [l]ater: ";
                if ask(&mut err, q, &["y", "l"])? != "y" {
                    return None;
                }
            }
            Some(Confirmation { by: self.user.clone(), done, note: optional(&mut err, "Note") })
        })
    }
}

/// Asks until the answer is one of `choices` (by first letter, or the word); an empty
/// answer is the last choice. `None` at end of input.
fn ask(err: &mut std::io::Stderr, question: &str, choices: &[&str]) -> Option<String> {
    loop {
        let _ = write!(err, "{question}");
        let _ = err.flush();
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).ok()? == 0 {
            return None;
        }
        let answer = line.trim().to_ascii_lowercase();
        if answer.is_empty() {
            return choices.last().map(|c| c.to_string());
        }
        if let Some(c) = choices.iter().find(|c| answer.starts_with(**c)) {
            return Some(c.to_string());
        }
    }
}

/// An optional line of text (a comment, a note).
fn optional(err: &mut std::io::Stderr, what: &str) -> Option<String> {
    let _ = write!(err, "{what} (optional): ");
    let _ = err.flush();
    let mut text = String::new();
    let _ = std::io::stdin().lock().read_line(&mut text);
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}
