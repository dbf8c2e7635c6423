//! What the event streams of this process follow: one look at the store per tick for
//! every execution any stream follows (`Store::heads`: status and last log line), not a
//! look per stream. A stream waits for its execution's head to change, then reads what
//! is new. On a shared database, changes made by workers on other nodes are seen the
//! same way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use opsbook_store::{Head, Store};
use tokio::sync::watch;

use crate::state::Db;

/// How often the followed executions are looked at.
pub(crate) const TICK: Duration = Duration::from_millis(200);

/// How long a stream waits without news before it reads anyway (should the store be
/// failing the poller's reads).
const FALLBACK: Duration = Duration::from_secs(5);

/// The executions followed by streams of this process.
pub struct Live {
    store: Db,
    followed: Mutex<HashMap<String, Followed>>,
    polling: AtomicBool,
}

struct Followed {
    /// Counts the changes seen; each stream following the execution holds a receiver.
    changes: watch::Sender<u64>,
    /// The head as last seen: `None` before the first look, `Some(None)` once the
    /// execution was not found.
    last: Option<Option<Head>>,
}

impl Live {
    pub fn new(store: Db) -> Arc<Live> {
        Arc::new(Live { store, followed: Mutex::new(HashMap::new()), polling: AtomicBool::new(false) })
    }

    /// Follows execution `id` until the returned watch is dropped.
    pub fn follow(self: &Arc<Self>, id: &str) -> Watch {
        if !self.polling.swap(true, Ordering::SeqCst) {
            tokio::spawn(poll(Arc::downgrade(self)));
        }
        let mut followed = self.followed.lock().unwrap_or_else(|p| p.into_inner());
        let rx = match followed.get(id) {
            Some(f) => f.changes.subscribe(),
            None => {
                let (changes, rx) = watch::channel(0);
                followed.insert(id.to_string(), Followed { changes, last: None });
                rx
            }
        };
        Watch(rx)
    }

    /// Executions followed now (for tests and metrics).
    pub fn followed(&self) -> usize {
        self.followed.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// One look: drops executions no stream follows any more, reads the heads of the
    /// rest, and tells the streams of those that changed.
    async fn look(&self) {
        let ids: Vec<String> = {
            let mut followed = self.followed.lock().unwrap_or_else(|p| p.into_inner());
            followed.retain(|_, f| f.changes.receiver_count() > 0);
            followed.keys().cloned().collect()
        };
        if ids.is_empty() {
            return;
        }
        let heads = match self.store.heads(&ids).await {
            Ok(heads) => heads,
            Err(e) => {
                tracing::debug!(%e, "cannot look at the executions event streams follow");
                return;
            }
        };
        let mut heads: HashMap<String, Head> = heads.into_iter().map(|h| (h.id.clone(), h)).collect();
        let mut followed = self.followed.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            let Some(f) = followed.get_mut(&id) else { continue };
            let now = heads.remove(&id);
            if f.last.as_ref() != Some(&now) {
                f.last = Some(now);
                f.changes.send_modify(|n| *n += 1);
            }
        }
    }
}

/// Looks every tick while the server (its [`Live`]) is there.
async fn poll(live: Weak<Live>) {
    // Should this task end otherwise (a panic, the runtime aborting it), the next stream
    // to follow an execution starts another.
    struct Polling(Weak<Live>);
    impl Drop for Polling {
        fn drop(&mut self) {
            if let Some(live) = self.0.upgrade() {
                live.polling.store(false, Ordering::SeqCst);
            }
        }
    }
    let _polling = Polling(live.clone());
    loop {
        match live.upgrade() {
            Some(live) => live.look().await,
            None => return,
        }
        tokio::time::sleep(TICK).await;
    }
}

/// A stream's hold on an execution it follows.
pub struct Watch(watch::Receiver<u64>);

impl Watch {
    /// Marks the changes so far as seen: call it before reading, and
    /// [`Watch::changed`] returns at the next change after it.
    pub fn seen(&mut self) {
        self.0.borrow_and_update();
    }

    /// Waits for a change since [`Watch::seen`] (or [`FALLBACK`]).
    pub async fn changed(&mut self) {
        if let Ok(Err(_)) = tokio::time::timeout(FALLBACK, self.0.changed()).await {
            tokio::time::sleep(TICK).await; // the server is going: no more news
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsbook_core::ExecStatus;
    use opsbook_store::{Execution, LogLine, Phase, StepRecord, Stream};

    fn execution(id: &str) -> Execution {
        let mut e = opsbook_store::conformance::execution(id, "demo", ExecStatus::Running, 1);
        e.started_at = Some(1);
        e
    }

    /// Whether the watch hears of a change within `within`.
    async fn hears(w: &mut Watch, within: Duration) -> bool {
        let heard = tokio::time::timeout(within, w.0.changed()).await.is_ok();
        w.seen();
        heard
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_hear_of_their_execution_s_changes_only() {
        let dir = tempfile::tempdir().unwrap();
        let store: Db = opsbook_store_sqlite::SqliteStore::open(&dir.path().join("live.db")).await.unwrap().into();
        opsbook_store::conformance::runbook_text(&store).await;
        for id in ["E1", "E2"] {
            store.create_execution(&execution(id), &[StepRecord::pending(id, 0, "s", "S", "run")]).await.unwrap();
        }
        let live = Live::new(store.clone());
        let (mut a, mut b, mut c) = (live.follow("E1"), live.follow("E1"), live.follow("E2"));
        assert_eq!(live.followed(), 2, "one entry per execution, however many streams");
        // The first look tells everyone.
        for w in [&mut a, &mut b, &mut c] {
            assert!(hears(w, Duration::from_secs(5)).await);
        }
        // Nothing changed: nobody hears anything.
        assert!(!hears(&mut a, TICK * 3).await);
        let line = LogLine {
            execution_id: "E1".into(),
            seq: 1,
            step_id: Some("s".into()),
            phase: Phase::Step,
            attempt: 1,
            stream: Stream::Stdout,
            ts: 2,
            line: "hello".into(),
        };
        store.append_logs(std::slice::from_ref(&line), None).await.unwrap();
        assert!(hears(&mut a, Duration::from_secs(5)).await, "a new line is news");
        assert!(hears(&mut b, Duration::from_secs(5)).await);
        assert!(!hears(&mut c, TICK * 3).await, "not for another execution's stream");
        let mut ended = execution("E2");
        ended.status = ExecStatus::Succeeded;
        store.update_execution(&ended, None).await.unwrap();
        assert!(hears(&mut c, Duration::from_secs(5)).await, "a new status is news");
        // A status this version does not know (a newer node's, in a rolling upgrade) is
        // news too, and does not stop the others' news.
        let db = rusqlite::Connection::open(dir.path().join("live.db")).unwrap();
        db.execute("UPDATE executions SET status = 'hibernating' WHERE id = 'E2'", []).unwrap();
        let line = LogLine { seq: 2, line: "again".into(), ..line };
        store.append_logs(&[line], None).await.unwrap();
        assert!(hears(&mut c, Duration::from_secs(5)).await, "an unknown status is news");
        assert!(hears(&mut a, Duration::from_secs(5)).await, "and others still hear theirs");
        // Streams that went are forgotten at the next look.
        drop((a, b));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while live.followed() != 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(TICK).await;
        }
        assert_eq!(live.followed(), 1);
        drop(c);
    }
}
