//! Masks output lines, hands them to the observer and writes them to the store in batches.

use crate::Db;
use std::time::{Duration, Instant};

use opsbook_core::secret::Masker;
use opsbook_store::{LogLine, Phase, Stream, now_ms};

use crate::observer::{Event, Observer};

const BATCH_LINES: usize = 512;
const BATCH_BYTES: usize = 1 << 20;
const BATCH_AGE: Duration = Duration::from_millis(250);

pub struct LogSink {
    store: Db,
    execution_id: String,
    seq: i64,
    buf: Vec<LogLine>,
    bytes: usize,
    since: Instant,
    masker: Masker,
    fence: Option<String>,
}

impl LogSink {
    /// A sink for an execution's lines, written fenced by `fence` (its runner's claim).
    pub fn new(store: Db, execution_id: &str, last_seq: i64, masker: Masker, fence: Option<String>) -> LogSink {
        LogSink {
            store,
            fence,
            execution_id: execution_id.to_string(),
            seq: last_seq,
            buf: Vec::new(),
            bytes: 0,
            since: Instant::now(),
            masker,
        }
    }

    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// Queues one line (invalid UTF-8 is replaced, secrets masked) and shows it.
    pub fn push(
        &mut self,
        observer: &dyn Observer,
        step_id: Option<&str>,
        phase: Phase,
        attempt: u32,
        stream: Stream,
        raw: &[u8],
    ) {
        let text = String::from_utf8_lossy(raw);
        let line = self.masker.mask(&text).into_owned();
        observer.on_event(&Event::Log { step_id, phase, stream, line: &line });
        self.seq += 1;
        self.bytes += line.len();
        if self.buf.is_empty() {
            self.since = Instant::now();
        }
        self.buf.push(LogLine {
            execution_id: self.execution_id.clone(),
            seq: self.seq,
            step_id: step_id.map(str::to_string),
            phase,
            attempt: i64::from(attempt),
            stream,
            ts: now_ms(),
            line,
        });
    }

    pub fn should_flush(&self) -> bool {
        self.buf.len() >= BATCH_LINES
            || self.bytes >= BATCH_BYTES
            || (!self.buf.is_empty() && self.since.elapsed() >= BATCH_AGE)
    }

    pub async fn flush(&mut self) -> opsbook_store::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        crate::patient::Patient(&self.store).append_logs(&self.buf, self.fence.as_deref()).await?;
        self.buf.clear();
        self.bytes = 0;
        Ok(())
    }
}
