//! Writing a new repository state so that a client fetching at any moment sees the old
//! or the new one: target files first, then version-prefixed targets roles, the new
//! root, the new snapshot, and `timestamp.json` last. Each file is written atomically
//! (temporary file, fsync, rename). With `consistent_snapshot` every file but
//! `timestamp.json` (and `root.json`, a convenience copy) is new, so until the last
//! rename clients see only the old state.
//!
//! Test hook: `TUFKEY_TEST_PUBLISH_PAUSE_MS=N` sleeps N ms after each file, so a test
//! can kill a commit between two writes (hsm-tests/repo.rs does).

use std::collections::BTreeSet;
use std::io::Write;
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
    /// Metadata files whose order among themselves does not matter (thousands of hash
    /// bins): all are written to temporary files, made durable by one sync of their
    /// filesystem instead of one fsync each, then renamed; all are durable before the
    /// next step begins.
    Many(Vec<(PathBuf, Vec<u8>)>),
}

impl Step {
    /// The files this step writes.
    pub fn paths(&self) -> Vec<&Path> {
        match self {
            Step::Target { to, .. } => vec![to],
            Step::Metadata { path, .. } => vec![path],
            Step::Many(files) => files.iter().map(|(p, _)| p.as_path()).collect(),
        }
    }
}

/// Writes `steps` in order, calling `on_write` after each file written.
pub fn publish(steps: &[Step], on_write: &mut dyn FnMut(&Path)) -> Result<(), RepoError> {
    let pause = std::env::var(PAUSE_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis);
    let mut written = |path: &Path| {
        on_write(path);
        if let Some(p) = pause {
            std::thread::sleep(p);
        }
    };
    for step in steps {
        match step {
            Step::Target { from, to, prefixed } => {
                ensure_parent(to)?;
                if *prefixed && to.exists() {
                    continue;
                }
                fsutil::copy_atomic(from, to).map_err(RepoError::io(to))?;
                written(to);
            }
            Step::Metadata { path, bytes } => {
                ensure_parent(path)?;
                fsutil::write_atomic(path, bytes).map_err(RepoError::io(path))?;
                written(path);
            }
            Step::Many(files) => write_many(files, &mut written)?,
        }
    }
    Ok(())
}

fn ensure_parent(path: &Path) -> Result<(), RepoError> {
    match path.parent() {
        Some(dir) => std::fs::create_dir_all(dir).map_err(RepoError::io(dir)),
        None => Ok(()),
    }
}

/// Temporary files first (closed, so thousands need no open descriptors), one `syncfs`
/// per folder's filesystem for all their bytes, then the renames and one fsync of each
/// folder. A failure before the renames leaves nothing behind (the temporary files are
/// removed when dropped).
pub(crate) fn write_many(
    files: &[(PathBuf, Vec<u8>)],
    written: &mut dyn FnMut(&Path),
) -> Result<(), RepoError> {
    let mut temps = Vec::with_capacity(files.len());
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    for (path, bytes) in files {
        ensure_parent(path)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".tufkey-")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(RepoError::io(&dir))?;
        if let Ok(m) = std::fs::metadata(path) {
            tmp.as_file()
                .set_permissions(m.permissions())
                .map_err(RepoError::io(path))?;
        }
        tmp.write_all(bytes).map_err(RepoError::io(path))?;
        temps.push((tmp.into_temp_path(), path));
        dirs.insert(dir);
    }
    for dir in &dirs {
        let d = std::fs::File::open(dir).map_err(RepoError::io(dir))?;
        rustix::fs::syncfs(&d).map_err(|e| RepoError::Io {
            path: dir.clone(),
            source: e.into(),
        })?;
    }
    for (tmp, path) in temps {
        tmp.persist(path).map_err(|e| RepoError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        written(path);
    }
    for dir in &dirs {
        if let Ok(d) = std::fs::File::open(dir) {
            // Makes the renames durable; not every filesystem allows it.
            let _ = d.sync_all();
        }
    }
    Ok(())
}
