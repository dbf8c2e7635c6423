//! The `sleep` kind: wait a fixed time (cancellable).

use crate::duration::Dur;

#[derive(Debug, Clone)]
pub struct SleepSpec {
    pub duration: Dur,
}
