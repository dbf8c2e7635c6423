//! Asking for an approval on the terminal.

use std::io::{BufRead, IsTerminal, Write};

use indicatif::MultiProgress;
use opsbook_engine::{ApprovalPrompt, ApprovalRequest, Decision};

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
            let _ = write!(err, "Comment (optional): ");
            let _ = err.flush();
            let mut comment = String::new();
            let _ = std::io::stdin().lock().read_line(&mut comment);
            let comment = comment.trim();
            Some(Decision {
                approver: self.user.clone(),
                approved: answer,
                comment: (!comment.is_empty()).then(|| comment.to_string()),
            })
        })
    }
}
