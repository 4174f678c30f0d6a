//! TUF repositories in a folder: targets, snapshot and timestamp signed with keys in
//! hardware, published so that a client fetching at any moment sees the old or the new
//! repository, refreshed before they expire, and watched by `status`.
//!
//! A repository is a folder with `metadata/` and `targets/` (what clients fetch),
//! `repo.toml` (keys, lifetimes), `staged/` (changes waiting for `commit`) and
//! `repo.lock`. This module uses `tuf` and `keys` only; the CLI shows what it returns.

pub mod bins;
pub mod bins_advise;
pub mod choose;
pub mod commit;
pub mod config;
pub mod error;
pub mod init;
pub mod layout;
pub mod lock;
pub mod progress;
pub mod publish;
pub mod refresh;
pub mod signing;
pub mod staging;
pub mod state;
pub mod status;
pub mod targets;
pub mod verify;

use std::path::Path;

pub use config::RepoConfig;
pub use error::RepoError;
pub use layout::Layout;
pub use progress::{NoProgress, Progress};

use crate::tuf::{Delegator, Metadata};

/// One repository folder, opened: its settings and the root clients trust last.
#[derive(Debug, Clone)]
pub struct Repository {
    pub layout: Layout,
    pub config: RepoConfig,
    /// The newest `N.root.json`.
    pub root: Metadata,
    pub root_version: u64,
}

impl Repository {
    /// Opens `dir`: reads `repo.toml` and the newest root in `metadata/`.
    pub fn open(dir: &Path) -> Result<Repository, RepoError> {
        let layout = Layout::new(dir);
        let cfg_path = layout.config();
        if !cfg_path.exists() {
            return Err(RepoError::NotARepository {
                dir: dir.to_path_buf(),
                reason: format!("{} is missing", cfg_path.display()),
            });
        }
        let config = RepoConfig::load(&cfg_path)?;
        let (root_version, root) =
            state::newest_root(&layout)?.ok_or_else(|| RepoError::NotARepository {
                dir: dir.to_path_buf(),
                reason: format!("no N.root.json in {}", layout.metadata_dir().display()),
            })?;
        Ok(Repository {
            layout,
            config,
            root: root.md,
            root_version,
        })
    }

    /// Whether the root asks for version-prefixed metadata and hash-prefixed targets.
    pub fn consistent(&self) -> bool {
        consistent_snapshot(&self.root)
    }

    /// The root's keys and roles.
    pub fn root_delegator(&self) -> Result<Delegator, RepoError> {
        Delegator::from_metadata(&self.root).map_err(|source| RepoError::Metadata {
            path: self.layout.root(self.root_version),
            source,
        })
    }
}

/// `consistent_snapshot` of a root (false when absent, as the spec says).
pub fn consistent_snapshot(root: &Metadata) -> bool {
    root.signed()
        .get("consistent_snapshot")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

/// What the caller sees of a commit or refresh while it runs.
pub struct Hooks<'a> {
    pub progress: &'a dyn Progress,
    /// Called with every signature made, after signing and before anything is written;
    /// an error stops the publication (the CLI records its audit entries here).
    pub before_publish: &'a mut dyn FnMut(&[signing::Made]) -> Result<(), String>,
    /// Called after each file is written.
    pub on_write: &'a mut dyn FnMut(&Path),
}
