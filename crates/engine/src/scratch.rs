//! Scratch files for steps (a script holding secrets, the `$OPSBOOK_OUTPUT` file): one
//! private (0700) directory per engine, made on first use and removed with the engine,
//! rather than a directory per run (a `mkdir` and `rmdir` per execution were a tenth of
//! a busy worker's CPU). Each run removes the files it was given when it ends.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

#[derive(Default)]
pub(crate) struct Scratch {
    dir: Mutex<Option<tempfile::TempDir>>,
    next: AtomicU64,
}

impl Scratch {
    /// A fresh path in the directory, unique within this engine. The file is not created.
    pub fn path(&self, prefix: &str) -> Result<PathBuf> {
        let mut dir = self.dir.lock().unwrap_or_else(|p| p.into_inner());
        // Made again if something removed it meanwhile (a tmp cleaner on a long-lived server).
        if dir.as_ref().is_none_or(|d| !d.path().is_dir()) {
            use std::os::unix::fs::PermissionsExt;
            let made = tempfile::Builder::new()
                .prefix("opsbook-")
                .permissions(std::fs::Permissions::from_mode(0o700))
                .tempdir()
                .map_err(|e| Error::Io(format!("cannot create a temporary directory: {e}")))?;
            if let Some(g) = crate::guardian::get() {
                g.scratch(made.path());
            }
            *dir = Some(made);
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(dir.as_ref().expect("just made").path().join(format!("{prefix}-{n}")))
    }
}

impl Drop for Scratch {
    /// SSH connections a run left open (its control directory in here) are closed with
    /// the engine, rather than lingering for their idle time.
    fn drop(&mut self) {
        let dir = self.dir.get_mut().unwrap_or_else(|p| p.into_inner());
        let Some(dir) = dir.as_ref() else { return };
        let Ok(entries) = std::fs::read_dir(dir.path()) else { return };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                crate::kinds::ssh::close_connections(&entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_unique_private_and_survive_a_cleaner() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = Scratch::default();
        let a = scratch.path("outputs").unwrap();
        let b = scratch.path("outputs").unwrap();
        assert_ne!(a, b);
        let dir = a.parent().unwrap().to_path_buf();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
        let c = scratch.path("script").unwrap();
        assert!(c.parent().unwrap().is_dir(), "made again after a cleaner removed it");
        drop(scratch);
        assert!(!c.parent().unwrap().exists(), "removed with the engine");
    }
}
