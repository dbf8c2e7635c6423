//! Ratings of executions that ended, the same for every front end.

use opsbook_core::ExecStatus;
use opsbook_store::{Feedback, Store, now_ms};

use crate::{Boxed, Engine, Error, Result, boxed};

impl Engine {
    /// Records `who`'s rating (1-5) of execution `id`, which must have ended; given
    /// again, it replaces their earlier one.
    pub fn rate<'a>(
        &'a self,
        id: &'a str,
        who: &'a str,
        rating: u8,
        comment: Option<String>,
    ) -> Boxed<'a, Result<Feedback>> {
        boxed(async move {
            if !(1..=5).contains(&rating) {
                return Err(Error::Invalid(format!("rating: {rating} is not between 1 and 5")));
            }
            let exec = self.store.execution(id).await?;
            if !matches!(exec.status, ExecStatus::Succeeded | ExecStatus::Failed | ExecStatus::Cancelled) {
                return Err(Error::Invalid(format!(
                    "execution {} {}: feedback is for executions that ended",
                    exec.id,
                    exec.status.phrase()
                )));
            }
            // Stored as written: the execution's secrets are gone once it ended, and
            // checking the comment against their digests would let anyone who may comment
            // test guesses at them.
            let comment = comment.map(|c| c.trim().to_string()).filter(|c| !c.is_empty());
            let f = Feedback { execution_id: exec.id, user: who.to_string(), rating, comment, at: now_ms() };
            self.store.add_feedback(&f).await?;
            Ok(f)
        })
    }
}
