//! `init` (a repository from a root that a ceremony finalized, with the chain of earlier
//! roots) and `root` (stage a new root version for the next commit). Every root is
//! checked as a client checks it before anything is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::config::{default_text, is_top_level};
use super::error::RepoError;
use super::layout::Layout;
use super::signing;
use super::staging::Staging;
use super::state::load;
use super::targets::empty_targets;
use super::{consistent_snapshot, Repository};
use crate::fsutil;
use crate::keys::PinPolicy;
use crate::tuf::time::parse_expires;
use crate::tuf::verify::RoleKeys;
use crate::tuf::{Delegator, Metadata};

fn not_verified(path: &Path, reason: String) -> RepoError {
    RepoError::RootNotVerified {
        path: path.to_path_buf(),
        reason,
    }
}

fn delegator(md: &Metadata, path: &Path) -> Result<Delegator, RepoError> {
    if md.role_type() != "root" {
        return Err(not_verified(
            path,
            format!("it is a `{}` document, not a root", md.role_type()),
        ));
    }
    Delegator::from_metadata(md).map_err(|e| not_verified(path, e.to_string()))
}

fn threshold(d: &Delegator, md: &Metadata, path: &Path, whose: &str) -> Result<(), RepoError> {
    let r = d
        .verify_role("root", md)
        .map_err(|e| not_verified(path, e.to_string()))?;
    if !r.verified() {
        return Err(not_verified(
            path,
            format!(
                "{} valid signature(s) by {whose} root keys where the threshold is {} (missing: {}); finish its ceremony first",
                r.signed.len(),
                r.threshold,
                r.missing.join(", ")
            ),
        ));
    }
    Ok(())
}

/// A root on its own: a threshold of its own root keys signed it.
pub fn check_root(md: &Metadata, path: &Path) -> Result<(), RepoError> {
    threshold(&delegator(md, path)?, md, path, "its own")
}

/// A root update as clients apply it: version N+1, signed by a threshold of N's root
/// keys and of its own.
pub fn check_update(old: &Metadata, new: &Metadata, new_path: &Path) -> Result<(), RepoError> {
    let (ov, nv) = (old.version().unwrap_or(0), new.version().unwrap_or(0));
    if nv != ov + 1 {
        return Err(not_verified(
            new_path,
            format!("version {nv} does not follow version {ov}; clients need every root version in order"),
        ));
    }
    threshold(
        &delegator(old, new_path)?,
        new,
        new_path,
        &format!("previous (version {ov})"),
    )?;
    check_root(new, new_path)
}

fn check_unexpired(md: &Metadata, path: &Path, now: DateTime<Utc>) -> Result<(), RepoError> {
    let e = md.expires().unwrap_or_default();
    match parse_expires(e) {
        Ok(t) if t > now => Ok(()),
        Ok(_) => Err(not_verified(
            path,
            format!(
                "it expired at {e}; clients refuse it. Rotate to a new root with a later expiry"
            ),
        )),
        Err(err) => Err(not_verified(path, err.to_string())),
    }
}

/// What `init` wrote.
#[derive(Debug, Clone)]
pub struct Initialized {
    pub root_version: u64,
    pub consistent_snapshot: bool,
    pub written: Vec<PathBuf>,
}

/// Checks that every key URI given for a role at init is one of that role's keys in
/// the root (public halves only, no PIN).
fn check_keys(
    root: &Delegator,
    root_path: &Path,
    keys: &BTreeMap<String, Vec<String>>,
    pins: &PinPolicy,
) -> Result<(), RepoError> {
    let mut roles = Vec::new();
    for role in keys.keys() {
        if !is_top_level(role) || role == "root" {
            return Err(RepoError::Other(format!(
                "--key {role}=…: at init only targets, snapshot and timestamp keys can be named; add delegated roles' keys to repo.toml once they are delegated"
            )));
        }
        let def = super::commit::role_keys(root, role, root_path)?;
        roles.push((
            role.clone(),
            RoleKeys {
                keyids: def.keyids,
                threshold: 0,
            },
        ));
    }
    signing::plan(&roles, keys, pins).map(|_| ())
}

/// Starts a repository in `dir` (new or empty) from `root_path`, with earlier roots
/// `chain`; `keys` go into repo.toml. The first `commit` then signs targets (staged
/// empty), snapshot and timestamp.
pub fn init(
    dir: &Path,
    root_path: &Path,
    chain: &[PathBuf],
    keys: &BTreeMap<String, Vec<String>>,
    pins: &PinPolicy,
    now: DateTime<Utc>,
) -> Result<Initialized, RepoError> {
    let layout = Layout::new(dir);
    for p in [
        layout.config(),
        layout.metadata_dir(),
        layout.targets_dir(),
        layout.lock(),
    ] {
        if p.exists() {
            return Err(RepoError::AlreadyExists { path: p });
        }
    }
    let root = load(root_path)?;
    check_root(&root, root_path)?;
    check_unexpired(&root, root_path, now)?;
    let version = root.version().unwrap_or(0);
    let mut roots: Vec<(PathBuf, Metadata)> = chain
        .iter()
        .map(|p| load(p).map(|m| (p.clone(), m)))
        .collect::<Result<_, _>>()?;
    roots.sort_by_key(|(_, m)| m.version().unwrap_or(0));
    roots.retain(|(_, m)| m.version() != Some(version));
    roots.push((root_path.to_path_buf(), root.clone()));
    let (first_path, first) = &roots[0];
    check_root(first, first_path)?;
    for w in roots.windows(2) {
        check_update(&w[0].1, &w[1].1, &w[1].0)?;
    }
    let root_d =
        Delegator::from_metadata(&root).map_err(|e| not_verified(root_path, e.to_string()))?;
    check_keys(&root_d, root_path, keys, pins)?;

    let mut written = Vec::new();
    let md_dir = layout.metadata_dir();
    std::fs::create_dir_all(&md_dir).map_err(RepoError::io(&md_dir))?;
    std::fs::create_dir_all(layout.targets_dir()).map_err(RepoError::io(layout.targets_dir()))?;
    for (_, m) in &roots {
        let p = layout.root(m.version().unwrap_or(0));
        fsutil::write_atomic(&p, &m.to_pretty_bytes()).map_err(RepoError::io(&p))?;
        written.push(p);
    }
    let copy = layout.root_copy();
    fsutil::write_atomic(&copy, &root.to_pretty_bytes()).map_err(RepoError::io(&copy))?;
    written.push(copy);
    let cfg = layout.config();
    fsutil::create_new_atomic(&cfg, default_text(keys).as_bytes(), Some(0o644))
        .map_err(RepoError::io(&cfg))?;
    written.push(cfg);
    let lock = layout.lock();
    fsutil::create_new_atomic(&lock, b"", Some(0o644)).map_err(RepoError::io(&lock))?;
    Staging::new(&layout).write_role("targets", &empty_targets())?;
    written.push(layout.staged_role("targets"));
    Ok(Initialized {
        root_version: version,
        consistent_snapshot: consistent_snapshot(&root),
        written,
    })
}

/// Stages root `new_path` (version N+1 of the repository's newest root, checked as a
/// client would) for the next commit, which re-signs whatever its new keys require.
pub fn stage_root(
    repo: &Repository,
    new_path: &Path,
    now: DateTime<Utc>,
) -> Result<u64, RepoError> {
    let new = load(new_path)?;
    check_update(&repo.root, &new, new_path)?;
    check_unexpired(&new, new_path, now)?;
    Staging::new(&repo.layout).write_root(&new)?;
    Ok(new.version().unwrap_or(0))
}
