//! Cancellation levels: the first request cancels the run (rollbacks still run),
//! the second also skips the rollbacks.

use tokio::sync::watch;

/// Requests cancellation. Cheap to clone; usable from signal handlers and heartbeats.
#[derive(Clone, Debug)]
pub struct CancelHandle {
    tx: watch::Sender<u8>,
}

/// Observes cancellation.
#[derive(Clone, Debug)]
pub struct Cancel {
    rx: watch::Receiver<u8>,
}

pub fn cancel_pair() -> (CancelHandle, Cancel) {
    let (tx, rx) = watch::channel(0);
    (CancelHandle { tx }, Cancel { rx })
}

impl CancelHandle {
    /// Whether both handles cancel the same run.
    pub fn same(&self, other: &CancelHandle) -> bool {
        self.tx.same_channel(&other.tx)
    }

    /// Raises the level by one (capped at 2) and returns the new level.
    pub fn escalate(&self) -> u8 {
        let mut level = 0;
        self.tx.send_modify(|l| {
            *l = (*l + 1).min(2);
            level = *l;
        });
        level
    }

    /// Raises the level to at least `level`.
    pub fn at_least(&self, level: u8) {
        self.tx.send_if_modified(|l| {
            if *l < level {
                *l = level;
                true
            } else {
                false
            }
        });
    }
}

impl Cancel {
    /// A `Cancel` that never fires.
    pub fn never() -> Cancel {
        let (tx, rx) = watch::channel(0);
        std::mem::forget(tx);
        Cancel { rx }
    }

    pub fn level(&self) -> u8 {
        *self.rx.borrow()
    }

    /// Resolves once the level reaches `level`.
    pub async fn reached(&self, level: u8) {
        let mut rx = self.rx.clone();
        // An error means every handle is gone: nobody can cancel any more.
        if rx.wait_for(|l| *l >= level).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
