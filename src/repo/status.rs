//! `status`: every published role's version, expiry, signers and threshold, as a
//! monitoring probe needs them to page someone before clients break.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::bins;
use super::error::RepoError;
use super::staging::Staging;
use super::state::{tree, Loaded, Published};
use super::Repository;
use crate::tuf::time::parse_expires;
use crate::tuf::{Delegator, Metadata};

/// One role as published.
#[derive(Debug, Clone, Serialize)]
pub struct RoleStatus {
    pub role: String,
    pub file: PathBuf,
    pub version: u64,
    pub expires: String,
    /// Key ids whose signatures verify.
    pub signed: Vec<String>,
    /// Key ids of the role without a valid signature.
    pub missing: Vec<String>,
    pub threshold: u64,
    pub threshold_met: bool,
    pub expired: bool,
    /// Expires within the window asked for (and not yet expired).
    pub expiring: bool,
}

/// The whole repository.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub roles: Vec<RoleStatus>,
    /// Roles (and a root) staged but not committed.
    pub staged: Vec<String>,
    pub consistent_snapshot: bool,
    /// Nothing was ever committed.
    pub unpublished: bool,
}

impl Report {
    pub fn any_expired(&self) -> bool {
        self.roles.iter().any(|r| r.expired)
    }
    pub fn any_unverified(&self) -> bool {
        self.roles.iter().any(|r| !r.threshold_met)
    }
    pub fn any_expiring(&self) -> bool {
        self.roles.iter().any(|r| r.expiring)
    }
}

fn one(
    role: &str,
    l: &Loaded,
    d: Option<&Delegator>,
    now: DateTime<Utc>,
    window: Duration,
) -> RoleStatus {
    let md: &Metadata = &l.md;
    let expires = md.expires().unwrap_or_default().to_string();
    let at = parse_expires(&expires).ok();
    let verdict = d.and_then(|d| d.verify_role(role, md).ok());
    let (signed, missing, threshold, met) = match verdict {
        Some(v) => {
            let met = v.verified();
            let mut missing = v.missing;
            missing.extend(v.invalid.into_iter().map(|i| i.keyid));
            (v.signed, missing, v.threshold, met)
        }
        None => (Vec::new(), Vec::new(), 0, false),
    };
    RoleStatus {
        role: role.into(),
        file: l.path.clone(),
        version: md.version().unwrap_or(0),
        expires,
        signed,
        missing,
        threshold,
        threshold_met: met,
        expired: at.is_none_or(|t| t <= now),
        expiring: at.is_some_and(|t| t > now && t <= now + window),
    }
}

/// How long before expiry a role counts as expiring when no window is asked for:
/// timestamp and snapshot once `refresh` should have re-signed them, others 30 days.
pub fn default_window(repo: &Repository, role: &str) -> Duration {
    match role {
        "timestamp" | "snapshot" => repo.config.signing_period(role),
        _ => Duration::days(30),
    }
}

/// The status at `now`; `window` for "expires soon" (else [`default_window`]).
pub fn status(
    repo: &Repository,
    now: DateTime<Utc>,
    window: Option<Duration>,
) -> Result<Report, RepoError> {
    let w = |role: &str| window.unwrap_or_else(|| default_window(repo, role));
    let root_d = repo.root_delegator()?;
    let published = Published::load(&repo.layout, repo.consistent())?;
    let root = Loaded {
        md: repo.root.clone(),
        path: repo.layout.root(repo.root_version),
    };
    let mut roles = vec![one("root", &root, Some(&root_d), now, w("root"))];
    if let Some(ts) = &published.timestamp {
        roles.push(one("timestamp", ts, Some(&root_d), now, w("timestamp")));
    }
    if let Some(s) = &published.snapshot {
        roles.push(one("snapshot", s, Some(&root_d), now, w("snapshot")));
    }
    let docs = published
        .roles
        .iter()
        .map(|(k, l)| (k.clone(), l.md.clone()))
        .collect();
    // Delegators read once each: a binned targets delegates to thousands of roles.
    let mut delegators: BTreeMap<String, Option<Delegator>> = BTreeMap::new();
    for node in tree(&docs) {
        let Some(l) = published.roles.get(&node.name) else {
            continue;
        };
        let d = match &node.parent {
            None => Some(&root_d),
            Some(p) => delegators
                .entry(p.clone())
                .or_insert_with(|| {
                    published
                        .roles
                        .get(p)
                        .and_then(|pl| bins::delegator_of(&pl.md, &pl.path).ok())
                })
                .as_ref(),
        };
        let setting = bins::setting_name(&node);
        roles.push(one(&node.name, l, d, now, w(setting)));
    }
    let staging = Staging::new(&repo.layout);
    let mut staged: Vec<String> = staging.roles()?.into_keys().collect();
    if let Some(r) = staging.root()? {
        staged.push(format!("root (version {})", r.version().unwrap_or(0)));
    }
    Ok(Report {
        roles,
        staged,
        consistent_snapshot: repo.consistent(),
        unpublished: published.timestamp.is_none(),
    })
}
