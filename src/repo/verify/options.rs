//! What a check is asked to do, and the input errors that stop it before it starts.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// Called with (bytes hashed so far, bytes to hash in all) while target files are read.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// What to check, against which trust, at which time.
#[derive(Clone)]
pub struct VerifyOptions {
    /// The root the client already trusts; default `metadata/1.root.json`.
    pub trusted_root: Option<PathBuf>,
    /// The time expiry is checked at (a client's "now").
    pub at: DateTime<Utc>,
    /// Whether target files under `targets/` are read and compared.
    pub check_targets: bool,
    /// Progress while hashing target files, for a bar on a terminal.
    pub progress: Option<Progress>,
}

impl VerifyOptions {
    /// Every check, now, from `metadata/1.root.json`.
    pub fn now() -> VerifyOptions {
        VerifyOptions {
            trusted_root: None,
            at: Utc::now(),
            check_targets: true,
            progress: None,
        }
    }
}

/// Input that cannot be checked at all (as opposed to a repository that fails checks).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}: {1}; give the repository folder, the one with metadata/ (and targets/) that clients fetch")]
    NotARepository(PathBuf, String),
    #[error("trusted root {0}: {1}")]
    TrustedRoot(PathBuf, String),
}
