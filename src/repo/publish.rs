//! Writing a new repository state so that a client fetching at any moment sees the old
//! or the new one: target files first, then version-prefixed targets roles, the new
//! root, the new snapshot, and `timestamp.json` last. Each file is written atomically
//! (temporary file, fsync, rename). With `consistent_snapshot` every file but
//! `timestamp.json` (and `root.json`, a convenience copy) is new, so until the last
//! rename clients see only the old state.
//!
//! Test hook: `TUFKEY_TEST_PUBLISH_PAUSE_MS=N` sleeps N ms after each file, so a test
//! can kill a commit between two writes (hsm-tests/repo.rs does).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::RepoError;
use crate::fsutil;

/// The hidden test hook's environment variable.
pub const PAUSE_ENV: &str = "TUFKEY_TEST_PUBLISH_PAUSE_MS";

/// One file to write.
#[derive(Debug, Clone)]
pub enum Step {
    /// A target's contents from the staging area (skipped when the file exists and the
    /// name is hash-prefixed: same name, same bytes).
    Target {
        from: PathBuf,
        to: PathBuf,
        prefixed: bool,
    },
    /// A metadata file.
    Metadata { path: PathBuf, bytes: Vec<u8> },
}

impl Step {
    pub fn path(&self) -> &Path {
        match self {
            Step::Target { to, .. } => to,
            Step::Metadata { path, .. } => path,
        }
    }
}

/// Writes `steps` in order, calling `on_write` after each file written.
pub fn publish(steps: &[Step], on_write: &mut dyn FnMut(&Path)) -> Result<(), RepoError> {
    let pause = std::env::var(PAUSE_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis);
    for step in steps {
        let path = step.path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(RepoError::io(dir))?;
        }
        match step {
            Step::Target { from, to, prefixed } => {
                if *prefixed && to.exists() {
                    continue;
                }
                fsutil::copy_atomic(from, to).map_err(RepoError::io(to))?;
            }
            Step::Metadata { path, bytes } => {
                fsutil::write_atomic(path, bytes).map_err(RepoError::io(path))?;
            }
        }
        on_write(path);
        if let Some(p) = pause {
            std::thread::sleep(p);
        }
    }
    Ok(())
}
