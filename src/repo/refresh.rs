//! `refresh`: re-sign timestamp (and snapshot, when its own expiry is near) once a role
//! expires within its signing period, for cron or a systemd timer. It never signs
//! targets roles: an expired targets role or snapshot is refused, not papered over.

use chrono::{DateTime, Utc};

use super::commit::{self, bump, role_keys, Outcome, SignOptions};
use super::error::RepoError;
use super::lock::RepoLock;
use super::publish::{publish, Step};
use super::signing::{self, Signers};
use super::state::Published;
use super::{Hooks, Repository};
use crate::tuf::time::{format_expires, parse_expires};

/// What a refresh did.
#[derive(Debug, Clone)]
pub enum Refreshed {
    /// Nothing was due; `next_due` is when the timestamp (or snapshot) will be.
    NothingToDo {
        timestamp_expires: String,
        next_due: String,
    },
    /// New timestamp (and maybe snapshot) published.
    Signed(Outcome),
}

fn expires_of(role: &str, l: &super::state::Loaded) -> Result<DateTime<Utc>, RepoError> {
    let e = l.md.expires().unwrap_or_default();
    parse_expires(e).map_err(|_| RepoError::Invalid {
        path: l.path.clone(),
        reason: format!("{role}'s `expires` ({e}) is not a TUF time"),
    })
}

/// Re-signs what is due; see the module docs.
pub fn refresh(
    repo: &Repository,
    _lock: &RepoLock,
    opts: &SignOptions,
    hooks: &mut Hooks,
) -> Result<Refreshed, RepoError> {
    let layout = &repo.layout;
    let consistent = repo.consistent();
    let published = Published::load(layout, consistent)?;
    let (Some(ts), Some(snap)) = (&published.timestamp, &published.snapshot) else {
        return Err(RepoError::Other(format!(
            "{} has nothing published yet; run `tufkey repo commit {}` first",
            layout.dir.display(),
            layout.dir.display()
        )));
    };
    for (role, l) in &published.roles {
        if expires_of(role, l)? <= opts.now {
            return Err(RepoError::Expired {
                role: role.clone(),
                expires: l.md.expires().unwrap_or_default().into(),
            });
        }
    }
    let snap_expires = expires_of("snapshot", snap)?;
    if snap_expires <= opts.now {
        return Err(RepoError::Expired {
            role: "snapshot".into(),
            expires: snap.md.expires().unwrap_or_default().into(),
        });
    }
    let ts_expires = expires_of("timestamp", ts)?;
    let snap_due_at = snap_expires - repo.config.signing_period("snapshot");
    let ts_due_at = ts_expires - repo.config.signing_period("timestamp");
    let snap_due = snap_due_at <= opts.now;
    if !snap_due && ts_due_at > opts.now {
        return Ok(Refreshed::NothingToDo {
            timestamp_expires: ts.md.expires().unwrap_or_default().into(),
            next_due: format_expires(ts_due_at.min(snap_due_at)),
        });
    }

    let root_d = repo.root_delegator()?;
    let root_path = layout.root(repo.root_version);
    let mut roles = Vec::new();
    if snap_due {
        roles.push((
            "snapshot".to_string(),
            role_keys(&root_d, "snapshot", &root_path)?,
        ));
    }
    roles.push((
        "timestamp".to_string(),
        role_keys(&root_d, "timestamp", &root_path)?,
    ));
    let uris = signing::key_uris(&repo.config, opts.keys);
    let plan = signing::plan(&roles, &uris, opts.pins)?;
    let mut signers = Signers::new(opts.pins);
    let mut outcome = Outcome::default();
    let progress = hooks.progress;
    progress.start(
        "signing",
        plan.roles.iter().map(|(_, u)| u.len() as u64).sum(),
    );
    let mut steps = Vec::new();
    let new_snap = if snap_due {
        let mut md = snap.md.clone();
        let version = md.version().unwrap_or(0) + 1;
        let expires = format_expires(opts.now + repo.config.expiry("snapshot"));
        bump(&mut md, version, &expires, &snap.path)?;
        outcome
            .signatures
            .extend(signers.sign(&plan, "snapshot", &mut md, progress)?);
        outcome.roles.push(commit::RoleWritten {
            role: "snapshot".into(),
            version,
            expires,
        });
        steps.push(Step::Metadata {
            path: layout.role("snapshot", version, consistent),
            bytes: md.to_pretty_bytes(),
        });
        md
    } else {
        snap.md.clone()
    };
    let ts_md = commit::sign_timestamp(
        repo,
        &published,
        &new_snap,
        &plan,
        &mut signers,
        opts.now,
        progress,
        &mut outcome,
    )?;
    progress.finish();
    // An unchanged snapshot must hash as the file on disk does: use its bytes.
    if !snap_due {
        let on_disk = std::fs::read(&snap.path).map_err(RepoError::io(&snap.path))?;
        if on_disk != new_snap.to_pretty_bytes() {
            return Err(RepoError::Invalid {
                path: snap.path.clone(),
                reason: "the published snapshot is not in tufkey's file form, so its hashes cannot be restated; commit a new snapshot with `tufkey repo commit`".into(),
            });
        }
    }
    steps.push(Step::Metadata {
        path: layout.timestamp(),
        bytes: ts_md.to_pretty_bytes(),
    });
    (hooks.before_publish)(&outcome.signatures).map_err(RepoError::Other)?;
    publish(&steps, hooks.on_write)?;
    Ok(Refreshed::Signed(outcome))
}
