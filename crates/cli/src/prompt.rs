//! Asking for an approval, or a manual step's confirmation, on the terminal.

use std::io::{BufRead, IsTerminal, Write};

use indicatif::MultiProgress;
use opsbook_engine::{ApprovalPrompt, ApprovalRequest, Cancel, Confirmation, Decision, ManualRequest};

/// Asks on the terminal when stdin is one; otherwise the execution waits.
pub struct TerminalPrompt {
    pub progress: MultiProgress,
    pub user: String,
    /// The run's cancellation: a Ctrl-C abandons the question at once (the progress
    /// display, held while asking, is let go for the rollbacks to show).
    pub cancel: Cancel,
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
                let line = read_line(&self.cancel)?;
                match line.trim().to_ascii_lowercase().as_str() {
                    "y" | "yes" => break true,
                    "n" | "no" => break false,
                    "l" | "later" | "" => return None,
                    _ => continue,
                }
            };
            let comment = optional(&mut err, "Comment", &self.cancel);
            (self.cancel.level() == 0).then(|| Decision { approver: self.user.clone(), approved: answer, comment })
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
                match ask(&mut err, &question, &["y", "n", "l"], &self.cancel)?.as_str() {
                    "y" => {}
                    "n" => {
                        done = false;
                        break;
                    }
                    _ => return None,
                }
            }
            if done && r.checklist.is_empty() {
                match ask(&mut err, "Done? [y]es / [n]o / [l]ater: ", &["y", "n", "l"], &self.cancel)?.as_str() {
                    "y" => {}
                    "n" => done = false,
                    _ => return None,
                }
            }
            if !done {
                let q = "Could it not be done at all (the step fails)? [y]es, it failed / [l]ater: ";
                if ask(&mut err, q, &["y", "l"], &self.cancel)? != "y" {
                    return None;
                }
            }
            let note = optional(&mut err, "Note", &self.cancel);
            (self.cancel.level() == 0).then(|| Confirmation { by: self.user.clone(), done, note })
        })
    }
}

/// Asks until the answer is one of `choices` (by first letter, or the word); an empty
/// answer is the last choice. `None` at end of input, or once the run is cancelled.
fn ask(err: &mut std::io::Stderr, question: &str, choices: &[&str], cancel: &Cancel) -> Option<String> {
    loop {
        let _ = write!(err, "{question}");
        let _ = err.flush();
        let line = read_line(cancel)?;
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
fn optional(err: &mut std::io::Stderr, what: &str, cancel: &Cancel) -> Option<String> {
    let _ = write!(err, "{what} (optional): ");
    let _ = err.flush();
    let text = read_line(cancel)?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// A line from stdin: `None` at its end, or as soon as the run is cancelled (a Ctrl-C
/// while waiting for an answer), rather than after the next Enter.
fn read_line(cancel: &Cancel) -> Option<String> {
    use nix::poll::{PollFd, PollFlags, poll};
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    loop {
        if cancel.level() > 0 {
            let _ = writeln!(std::io::stderr());
            return None;
        }
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, 100u16) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => break,
            Err(_) => return None,
        }
    }
    let mut line = String::new();
    if stdin.lock().read_line(&mut line).ok()? == 0 {
        return None;
    }
    Some(line)
}
