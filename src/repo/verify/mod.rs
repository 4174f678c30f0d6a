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
pub(crate) mod files;
mod load;
mod options;
pub(crate) mod paths;
mod report;
mod roots;
mod search;
mod targets;
mod top;
mod walk;

use std::path::Path;

pub(crate) use delegations::succinct_bins;
pub use delegations::MAX_BINS;
pub use files::{safe_target_path, target_file_names, Stated};
pub use options::{Progress, VerifyError, VerifyOptions};
pub use paths::{fnmatch, PathRule, Succinct};
pub use report::{Delegation, Problem, Report, RoleReport, SearchRole, TargetsSummary};
pub use search::{Found, NotFound, MAX_DELEGATIONS};
use walk::Walk;

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
        let (count, listed) = delegations::walk(&mut walk, &root, &snapshot);
        walk.report.targets.listed = count;
        if options.check_targets {
            targets::check_files(&mut walk, &listed);
        }
    }
    walk.finish();
    Ok(walk.report)
}
