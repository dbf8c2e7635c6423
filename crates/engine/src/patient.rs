//! The runner's writes, retried while the database is unavailable (a PostgreSQL restart
//! or fail-over, a SQLite file locked past its busy wait): the step that is running goes
//! on, and what it did is recorded once the database answers again. A write whose claim
//! was taken meanwhile fails as `LostClaim`, as any fenced write does.

use crate::Db;
use std::time::{Duration, Instant};

use opsbook_store::{Attempt, Error, Execution, LogLine, Result, StepRecord, Store};

/// How long a write keeps trying before the run gives up on the database.
const PATIENCE: Duration = Duration::from_secs(15 * 60);

/// A store whose writes wait out an unavailable database.
pub struct Patient<'a>(pub &'a Db);

/// When a write that found the database unavailable tries again: after 100 ms, then
/// twice as long each time up to 2 s; [`Backoff::wait`] says false once [`PATIENCE`] is spent.
struct Backoff {
    start: Instant,
    pause: Duration,
    said: bool,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { start: Instant::now(), pause: Duration::from_millis(100), said: false }
    }

    async fn wait(&mut self, what: &str, why: &str) -> bool {
        if self.start.elapsed() >= PATIENCE {
            return false;
        }
        if !self.said {
            tracing::warn!(%why, "cannot record {what}: the database is unavailable; trying again");
            self.said = true;
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_secs(2));
        true
    }

    fn done(&self, what: &str) {
        if self.said {
            tracing::info!("recorded {what} after {:.1?}: the database is back", self.start.elapsed());
        }
    }
}

/// Makes the write `$call` until it is not `Unavailable` (or patience runs out).
macro_rules! patiently {
    ($what:expr, $call:expr) => {{
        let mut backoff = Backoff::new();
        loop {
            match $call.await {
                Err(Error::Unavailable(why)) if backoff.wait($what, &why).await => {}
                other => {
                    backoff.done($what);
                    break other;
                }
            }
        }
    }};
}

impl Patient<'_> {
    pub async fn record_attempt(&self, a: &Attempt, steps: &[&StepRecord], fence: Option<&str>) -> Result<()> {
        patiently!("an attempt", self.0.record_attempt(a, steps, fence))
    }

    pub async fn update_step(&self, s: &StepRecord, fence: Option<&str>) -> Result<()> {
        patiently!("a step", self.0.update_step(s, fence))
    }

    pub async fn update_execution(&self, e: &Execution, fence: Option<&str>) -> Result<()> {
        patiently!("the execution", self.0.update_execution(e, fence))
    }

    pub async fn finish_execution(
        &self,
        e: &Execution,
        last: Option<(&Attempt, &[&StepRecord])>,
        fence: Option<&str>,
    ) -> Result<()> {
        patiently!("the end of the execution", self.0.finish_execution(e, last, fence))
    }

    pub async fn append_logs(&self, lines: &[LogLine], fence: Option<&str>) -> Result<()> {
        patiently!("log lines", self.0.append_logs(lines, fence))
    }

    pub async fn set_process(&self, execution_id: &str, step_id: &str, process: Option<&str>) -> Result<()> {
        patiently!("a step's process group", self.0.set_process(execution_id, step_id, process))
    }
}
