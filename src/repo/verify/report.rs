//! What a repository check found: one line per role, every problem with its file.

use serde::Serialize;
use serde_json::{Map, Value};

use super::paths::PathRule;

/// A problem (or a note) and the file it is in, relative to the repository folder
/// when the file is inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: String,
    pub message: String,
}

/// One metadata file a client would load, as checked.
#[derive(Debug, Clone, Serialize)]
pub struct RoleReport {
    /// `root`, `timestamp`, `snapshot`, `targets` or a delegated role's name.
    pub role: String,
    pub file: String,
    /// Whose keys it was checked against: `root` (with its version) or a targets role.
    pub delegator: String,
    pub version: Option<u64>,
    pub expires: Option<String>,
    pub threshold: Option<u64>,
    /// Key ids whose signature verifies and counts (one per distinct public key).
    pub signed_by: Vec<String>,
    /// Whether no problem was found in this file.
    pub ok: bool,
}

/// The target files checked under `targets/`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetsSummary {
    /// Whether target files were checked at all (`--no-targets` turns it off).
    pub checked_files: bool,
    /// Target paths listed by the roles reached.
    pub listed: usize,
    /// Files found and compared with their stated length and hashes.
    pub verified: usize,
    /// Target paths with no file under `targets/`: recorded for artifacts stored
    /// elsewhere, or not mirrored here. Not a problem; clients fail only if they ask.
    pub absent: Vec<String>,
}

/// The whole verdict on a repository.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dir: String,
    pub checked_at: String,
    /// The root the check started from, and its version.
    pub trusted_root: String,
    pub trusted_root_version: Option<u64>,
    pub consistent_snapshot: bool,
    pub roles: Vec<RoleReport>,
    pub targets: TargetsSummary,
    pub problems: Vec<Problem>,
    /// Things worth knowing that do not make the repository fail.
    pub notes: Vec<Problem>,
    /// The targets roles loaded, in the order they were reached, for
    /// `Report::find_target` (a client's search for one target).
    #[serde(skip)]
    pub search: Vec<SearchRole>,
}

impl Report {
    /// Whether a client would accept everything in the repository.
    pub fn verified(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A targets role as the check loaded it: what it lists and whom it delegates, in order.
#[derive(Debug, Clone)]
pub struct SearchRole {
    pub role: String,
    /// The metadata file it was loaded from, relative to the repository folder.
    pub file: String,
    pub targets: Map<String, Value>,
    pub delegates: Vec<Delegation>,
}

/// One delegation as a client follows it.
#[derive(Debug, Clone)]
pub struct Delegation {
    pub role: String,
    pub rule: PathRule,
    pub terminating: bool,
}
