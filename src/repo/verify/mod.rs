//! A whole repository checked the way a TUF client fetches it, independently of how
//! tufkey's own writer lays it out: the root chain from a trusted root, timestamp, the
//! snapshot it states, top-level targets and every delegated role reachable through
//! delegations, the lengths, hashes and versions that timestamp and snapshot state,
//! the target files under `targets/`, and the expiry of everything at one time.
//!
//! Verdicts follow python-tuf's ngclient (the tests compare them), with two deliberate
//! differences: a threshold counts distinct public keys, not key ids; and problems a
//! client would only meet later (a target listed by a role not delegated that path, a
//! tampered target file, a published root after a missing version) are reported too.
//! Every problem is reported, not only the first.

mod delegations;
mod files;
mod load;
mod paths;
mod report;
mod roots;
mod targets;
mod top;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};

pub use paths::{fnmatch, PathRule};
pub use report::{Problem, Report, RoleReport, TargetsSummary};

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

/// Checks the repository in `dir`. `Err` only when there is nothing to check against
/// (no folder, no readable trusted root); everything else is a problem in the report.
pub fn verify_repository(dir: &Path, options: &VerifyOptions) -> Result<Report, VerifyError> {
    let metadata = dir.join("metadata");
    if !metadata.is_dir() {
        return Err(VerifyError::NotARepository(
            dir.to_path_buf(),
            "there is no metadata/ folder".into(),
        ));
    }
    let mut walk = Walk::new(dir, options);
    let root = roots::chain(&mut walk)?;
    walk.report.consistent_snapshot = root.consistent_snapshot;
    let snapshot_meta = top::timestamp(&mut walk, &root);
    if let Some(snapshot) = top::snapshot(&mut walk, &root, snapshot_meta.as_ref()) {
        let listed = delegations::walk(&mut walk, &root, &snapshot);
        walk.report.targets.listed = listed.len();
        if options.check_targets {
            targets::check_files(&mut walk, &listed);
        }
    }
    walk.finish();
    Ok(walk.report)
}

/// The state of one check: where the repository is and what was found so far.
struct Walk<'a> {
    dir: PathBuf,
    options: &'a VerifyOptions,
    report: Report,
}

impl<'a> Walk<'a> {
    fn new(dir: &Path, options: &'a VerifyOptions) -> Walk<'a> {
        Walk {
            dir: dir.to_path_buf(),
            options,
            report: Report {
                dir: dir.display().to_string(),
                checked_at: options.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                trusted_root: String::new(),
                trusted_root_version: None,
                consistent_snapshot: false,
                roles: Vec::new(),
                targets: TargetsSummary {
                    checked_files: options.check_targets,
                    ..TargetsSummary::default()
                },
                problems: Vec::new(),
                notes: Vec::new(),
            },
        }
    }

    fn problem(&mut self, file: &str, message: impl Into<String>) {
        self.report.problems.push(Problem {
            file: file.to_owned(),
            message: message.into(),
        });
    }

    fn note(&mut self, file: &str, message: impl Into<String>) {
        self.report.notes.push(Problem {
            file: file.to_owned(),
            message: message.into(),
        });
    }

    /// `metadata/NAME`, as a path and as the name problems carry.
    fn metadata_file(&self, name: &str) -> (PathBuf, String) {
        (
            self.dir.join("metadata").join(name),
            format!("metadata/{name}"),
        )
    }

    /// Marks each role line with whether its file had a problem.
    fn finish(&mut self) {
        for r in &mut self.report.roles {
            r.ok = !self.report.problems.iter().any(|p| p.file == r.file);
        }
    }
}
