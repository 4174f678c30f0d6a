//! `commit`: sign every targets role that changed (staged, new, or no longer verified by
//! its delegator after a key rotation) with a new version and expiry, build snapshot and
//! timestamp, and publish them in client-safe order. Keys are checked against their
//! roles before any PIN is asked; a threshold that cannot be met stops everything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::bins;
use super::error::RepoError;
use super::lock::RepoLock;
use super::publish::{publish, Step};
use super::signing::{self, Made, Signers};
use super::staging::Staging;
use super::state::{tree, Published};
use super::targets::empty_targets;
use super::{consistent_snapshot, Hooks, Progress, Repository};
use crate::keys::PinPolicy;
use crate::tuf::fileinfo::{FileInfo, HashAlg};
use crate::tuf::paths::check_target_path;
use crate::tuf::time::{format_expires, parse_expires};
use crate::tuf::verify::RoleKeys;
use crate::tuf::{Delegator, Envelope, Metadata, Signature};

/// What a commit or refresh needs besides the repository.
pub struct SignOptions<'a> {
    /// `--key ROLE=URI`, replacing repo.toml's keys for those roles.
    pub keys: &'a [(String, String)],
    pub pins: &'a PinPolicy,
    pub now: DateTime<Utc>,
    /// Re-sign every hash bin (new version and expiry), changed or not.
    pub resign_bins: bool,
}

/// One role written by a commit or refresh.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoleWritten {
    pub role: String,
    pub version: u64,
    pub expires: String,
}

/// What a commit published.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub roles: Vec<RoleWritten>,
    /// Target files copied under `targets/`.
    pub target_files: usize,
    pub signatures: Vec<Made>,
    /// Roles left as they were that clients will refuse or soon refuse.
    pub warnings: Vec<String>,
}

pub(crate) fn meta_error(path: &Path) -> impl Fn(crate::tuf::TufError) -> RepoError + '_ {
    move |source| RepoError::Metadata {
        path: path.to_path_buf(),
        source,
    }
}

/// Sets a new version and expiry (dropping old signatures).
pub(crate) fn bump(
    md: &mut Metadata,
    version: u64,
    expires: &str,
    path: &Path,
) -> Result<(), RepoError> {
    md.set_version_and_expires(version, expires)
        .map_err(meta_error(path))
}

/// A snapshot document listing `meta`.
pub(crate) fn snapshot_doc(version: u64, expires: &str, meta: Map<String, Value>) -> Metadata {
    Metadata::new(json!({
        "_type": "snapshot", "spec_version": "1.0.31", "version": version,
        "expires": expires, "meta": meta,
    }))
    .unwrap_or_else(|_| unreachable!("a snapshot of integers and strings is canonical"))
}

/// A timestamp naming the snapshot whose file bytes are `snapshot_bytes`: its version,
/// length and SHA-256 (clients check all three).
pub(crate) fn timestamp_doc(
    version: u64,
    expires: &str,
    snapshot_version: u64,
    snapshot_bytes: &[u8],
) -> Metadata {
    let fi = FileInfo::of_bytes(snapshot_bytes, &[HashAlg::Sha256]);
    let mut entry = fi.to_value();
    entry["version"] = json!(snapshot_version);
    Metadata::new(json!({
        "_type": "timestamp", "spec_version": "1.0.31", "version": version,
        "expires": expires, "meta": {"snapshot.json": entry},
    }))
    .unwrap_or_else(|_| unreachable!("a timestamp of integers and strings is canonical"))
}

/// Whether `signatures` hold one by at least `def.threshold` of its key ids (not checked
/// cryptographically: for bins tufkey published under an unchanged delegation).
fn signed_by_threshold(signatures: &[Signature], def: &RoleKeys) -> bool {
    let signed = def
        .keyids
        .iter()
        .filter(|k| {
            signatures
                .iter()
                .any(|s| &s.keyid == *k && !s.sig.is_empty())
        })
        .count();
    signed as u64 >= def.threshold
}

/// A published targets role as a commit needs it.
struct PublishedRole {
    /// `signed.version` of the file.
    version: Option<u64>,
    /// The document; `None` once a staged one replaces it (only its version counts then).
    doc: Option<Envelope>,
    /// Length and SHA-256 of the file as it is on disk, when snapshot states them.
    info: Option<FileInfo>,
}

/// Reads a published targets role: its document, and the length and hashes of its file
/// (`with_info`) for a snapshot that states them.
fn read_published(path: &Path, with_info: bool) -> Result<(Envelope, Option<FileInfo>), RepoError> {
    let bytes = std::fs::read(path).map_err(RepoError::io(path))?;
    let info = with_info.then(|| FileInfo::of_bytes(&bytes, &[HashAlg::Sha256]));
    let doc = Envelope::from_bytes(bytes).map_err(meta_error(path))?;
    Ok((doc, info))
}

/// The role definition `role` has in `delegator`, or an error naming the file.
pub(crate) fn role_keys(d: &Delegator, role: &str, path: &Path) -> Result<RoleKeys, RepoError> {
    d.roles
        .get(role)
        .cloned()
        .ok_or_else(|| RepoError::Invalid {
            path: path.to_path_buf(),
            reason: format!("it does not define role `{role}`"),
        })
}

/// Whether `name` is a plain file name (no folder, not `.` or `..`): the only names a
/// listing of the staged files can answer for.
fn is_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

/// Signs and publishes everything staged. `Ok(None)`: nothing to commit.
pub fn commit(
    repo: &Repository,
    _lock: &RepoLock,
    opts: &SignOptions,
    hooks: &mut Hooks,
) -> Result<Option<Outcome>, RepoError> {
    let layout = &repo.layout;
    let staging = Staging::new(layout);
    // A published role that a staged one replaces is read (its errors are the same) but
    // only its version is kept: it is neither verified nor held beside the new one.
    let replaced = staging.role_names();
    let with_info = repo.config.snapshot_meta_hashes;
    let mut published = Published::load_with(layout, repo.consistent(), |role, path| {
        let (doc, info) = read_published(path, with_info && !replaced.contains(role))?;
        Ok(PublishedRole {
            version: doc.version(),
            doc: (!replaced.contains(role)).then_some(doc),
            info,
        })
    })?;
    let staged = staging.envelopes()?;
    let (root, root_version, root_changed) = match staging.root()? {
        Some(r) if r.version().unwrap_or(0) > repo.root_version => {
            let v = r.version().unwrap_or(0);
            (r, v, true)
        }
        _ => (repo.root.clone(), repo.root_version, false),
    };
    let root_path = if root_changed {
        layout.staged_root()
    } else {
        layout.root(root_version)
    };
    let root_d = Delegator::from_metadata(&root).map_err(meta_error(&root_path))?;
    let consistent = consistent_snapshot(&root);

    // One copy of each role: the published documents moved in, staged ones over them.
    let staged_names: BTreeSet<String> = staged.keys().cloned().collect();
    let mut docs: BTreeMap<String, Envelope> = BTreeMap::new();
    for (name, l) in published.roles.iter_mut() {
        if staged_names.contains(name) {
            continue;
        }
        let doc = match l.md.doc.take() {
            Some(doc) => doc,
            // Listed as staged when published was read, gone since: read it now.
            None => {
                let (doc, info) = read_published(&l.path, with_info)?;
                l.md.info = info;
                doc
            }
        };
        docs.insert(name.clone(), doc);
    }
    docs.extend(staged);
    docs.entry("targets".into())
        .or_insert_with(|| Envelope::from_metadata(empty_targets()));
    let nodes = tree(&docs);

    // Delegators read once each: a binned targets delegates to thousands of roles.
    let mut delegators: BTreeMap<String, Delegator> = BTreeMap::new();
    for p in nodes.iter().filter_map(|n| n.parent.as_ref()) {
        if !delegators.contains_key(p) {
            // A parent in the tree always has a document: the walk descends only there.
            let parent = docs.get(p).ok_or_else(|| RepoError::NoSuchRole {
                role: p.clone(),
                roles: docs.keys().cloned().collect::<Vec<_>>().join(", "),
            })?;
            let d = bins::delegator_of(parent, &layout.staged_role(p))?;
            delegators.insert(p.clone(), d);
        }
    }
    // Which targets roles change, each with the definition its (new) delegator gives it.
    let mut to_sign: Vec<(String, RoleKeys)> = Vec::new();
    let mut warnings = Vec::new();
    let mut expired_bins = 0usize;
    for node in &nodes {
        let (d, dpath) = match &node.parent {
            None => (&root_d, root_path.clone()),
            Some(p) => match delegators.get(p) {
                Some(d) => (d, layout.staged_role(p)),
                None => continue,
            },
        };
        let def = role_keys(d, &node.name, &dpath)?;
        let resign = opts.resign_bins && node.bins.is_some();
        if staged_names.contains(&node.name) || resign {
            to_sign.push((node.name.clone(), def));
            continue;
        }
        // The published document (roles not staged are in `docs` as published).
        let before = published
            .roles
            .get(&node.name)
            .and_then(|_| docs.get(&node.name));
        let parent_staged = node
            .parent
            .as_ref()
            .is_some_and(|p| staged_names.contains(p));
        let still_valid = match before {
            None => false,
            // A bin tufkey published (each signature checked before it was written)
            // under a delegation unchanged since still verifies; counting its key ids
            // spares re-verifying thousands of bins on every commit. `repo verify`
            // checks every signature.
            Some(md) if node.bins.is_some() && !parent_staged => {
                signed_by_threshold(md.signatures(), &def)
            }
            Some(md) => d
                .verify_signatures(&node.name, md.payload(), md.signatures())
                .ok()
                .is_some_and(|r| r.verified()),
        };
        if !still_valid {
            to_sign.push((node.name.clone(), def));
        } else if let Some(md) = before {
            let expires = md.expires();
            if expires.as_deref().and_then(|e| parse_expires(e).ok()) <= Some(opts.now) {
                if node.bins.is_some() {
                    expired_bins += 1;
                } else {
                    warnings.push(format!(
                        "role `{}` (unchanged) expired at {}; stage it (`tufkey repo edit`) and commit it with its keys",
                        node.name,
                        expires.unwrap_or_default()
                    ));
                }
            }
        }
    }
    if expired_bins > 0 {
        warnings.push(format!(
            "{expired_bins} hash bin(s) (unchanged) have expired; re-sign every bin with `tufkey repo bins {} --resign`",
            layout.dir.display()
        ));
    }
    // Snapshot and timestamp that clients refuse (or soon will) are renewed even with
    // nothing staged: a commit is the way out of an expired snapshot.
    let online_stale = [
        ("snapshot", &published.snapshot),
        ("timestamp", &published.timestamp),
    ]
    .into_iter()
    .any(|(role, l)| match l {
        None => true,
        Some(l) => {
            let due =
                l.md.expires()
                    .and_then(|e| parse_expires(e).ok())
                    .is_none_or(|t| t - repo.config.signing_period(role) <= opts.now);
            let valid = root_d.verify_role(role, &l.md).is_ok_and(|r| r.verified());
            due || !valid
        }
    });
    if to_sign.is_empty() && !root_changed && !online_stale {
        return Ok(None);
    }
    let mut plan_roles = to_sign.clone();
    for top in ["snapshot", "timestamp"] {
        plan_roles.push((top.into(), role_keys(&root_d, top, &root_path)?));
    }
    let mut uris = signing::key_uris(&repo.config, opts.keys);
    // Bins are signed with the keys repo.toml (or --key) names under their prefix.
    for node in nodes.iter().filter(|n| n.bins.is_some()) {
        if !uris.contains_key(&node.name) {
            if let Some(list) = uris.get(bins::setting_name(node)).cloned() {
                uris.insert(node.name.clone(), list);
            }
        }
    }
    let plan = signing::plan(&plan_roles, &uris, opts.pins)?;

    let total: usize = plan.roles.iter().map(|(_, u)| u.len()).sum();
    let progress = hooks.progress;
    progress.start("signing", total as u64);
    let mut signers = Signers::new(opts.pins);
    let mut outcome = Outcome {
        warnings,
        ..Outcome::default()
    };
    let setting: BTreeMap<&str, &str> = nodes
        .iter()
        .map(|n| (n.name.as_str(), bins::setting_name(n)))
        .collect();
    let mut batch: Vec<(String, Envelope)> = Vec::with_capacity(to_sign.len());
    for (name, _) in &to_sign {
        let mut md = docs
            .remove(name)
            .unwrap_or_else(|| Envelope::from_metadata(empty_targets()));
        let version = published
            .roles
            .get(name)
            .and_then(|l| l.md.version)
            .map_or(1, |v| v + 1);
        let lifetime = repo
            .config
            .expiry(setting.get(name.as_str()).copied().unwrap_or(name));
        let expires = format_expires(opts.now + lifetime);
        md.set_version_and_expires(version, &expires)
            .map_err(meta_error(&layout.staged_role(name)))?;
        outcome.roles.push(RoleWritten {
            role: name.clone(),
            version,
            expires,
        });
        batch.push((name.clone(), md));
    }
    // Every targets role in one batch per key.
    outcome
        .signatures
        .extend(signers.sign_all(&plan, &mut batch, progress)?);
    let staged_files = staging.file_names();
    let mut steps_targets = Vec::new();
    let mut delegated = Vec::new();
    let mut top_targets = None;
    // (version, file length and hashes) of each role written, for snapshot.
    let mut written: BTreeMap<String, (u64, Option<FileInfo>)> = BTreeMap::new();
    for (name, md) in batch {
        md.each_target(|path, entry| -> Result<(), RepoError> {
            // A staged file edited by hand must not smuggle in a path outside targets/.
            check_target_path(path)?;
            let Some(sha) = entry.sha256() else {
                return Ok(());
            };
            // Most entries name contents published long ago: one look-up in the listing
            // of staged files instead of a file system call each.
            if staged_files
                .as_ref()
                .is_some_and(|names| is_file_name(&sha) && !names.contains(&*sha))
            {
                return Ok(());
            }
            let Some(fi) = entry.to_value().as_ref().and_then(FileInfo::from_value) else {
                return Ok(());
            };
            let Some(sha) = fi.hash("sha256").filter(|h| staging.has_file(h)) else {
                return Ok(());
            };
            for to in layout.target_files(path, &fi.hashes, consistent) {
                steps_targets.push(Step::Target {
                    from: layout.staged_file(sha),
                    to,
                    prefixed: consistent,
                });
            }
            Ok(())
        })?;
        let version = md.version().unwrap_or(1);
        let path = layout.role(&name, version, consistent);
        let bytes = md.into_pretty_bytes();
        let info = with_info.then(|| FileInfo::of_bytes(&bytes, &[HashAlg::Sha256]));
        written.insert(name.clone(), (version, info));
        // Delegated roles before `targets`, which points at them.
        if name == "targets" {
            top_targets = Some(Step::Metadata { path, bytes });
        } else {
            delegated.push((path, bytes));
        }
    }
    // Delegated roles (all durable, in any order, before `targets`), then `targets`.
    let mut steps_roles = Vec::new();
    match delegated.len() {
        0 => {}
        1 => {
            let (path, bytes) = delegated.remove(0);
            steps_roles.push(Step::Metadata { path, bytes });
        }
        _ => steps_roles.push(Step::Many(delegated)),
    }
    steps_roles.extend(top_targets);

    // Snapshot: every targets role clients can reach, the hashes those of its file.
    let mut meta = Map::new();
    for node in &nodes {
        let (version, info) = match (written.get(&node.name), docs.get(&node.name)) {
            (Some((v, info)), _) => (*v, info.clone()),
            // Unchanged: the file read (its hashes taken then, when they are stated).
            (None, Some(md)) => {
                let info = published
                    .roles
                    .get(&node.name)
                    .and_then(|l| l.md.info.clone());
                (md.version().unwrap_or(1), info)
            }
            (None, None) => continue,
        };
        let mut entry = json!({ "version": version });
        if let Some(fi) = info {
            entry["length"] = json!(fi.length);
            entry["hashes"] = fi.to_value()["hashes"].clone();
        }
        meta.insert(format!("{}.json", node.name), entry);
    }
    let (snap, ts) = sign_snapshot_and_timestamp(
        repo,
        &published,
        meta,
        &plan,
        &mut signers,
        opts.now,
        progress,
        &mut outcome,
    )?;
    progress.finish();

    let mut steps = steps_targets;
    outcome.target_files = steps.len();
    steps.extend(steps_roles);
    let root_bytes = root.to_pretty_bytes();
    if root_changed {
        steps.push(Step::Metadata {
            path: layout.root(root_version),
            bytes: root_bytes.clone(),
        });
    }
    // root.json follows the newest root (also after a commit killed between the two).
    if std::fs::read(layout.root_copy()).ok().as_deref() != Some(root_bytes.as_slice()) {
        steps.push(Step::Metadata {
            path: layout.root_copy(),
            bytes: root_bytes,
        });
    }
    steps.push(Step::Metadata {
        path: layout.role("snapshot", snap.version().unwrap_or(1), consistent),
        bytes: snap.to_pretty_bytes(),
    });
    steps.push(Step::Metadata {
        path: layout.timestamp(),
        bytes: ts.to_pretty_bytes(),
    });
    (hooks.before_publish)(&outcome.signatures).map_err(RepoError::Other)?;
    publish(&steps, hooks.on_write)?;
    staging.clear()?;
    Ok(Some(outcome))
}

/// Builds, signs and returns a new snapshot (listing `meta`) and the timestamp for it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sign_snapshot_and_timestamp<R>(
    repo: &Repository,
    published: &Published<R>,
    meta: Map<String, Value>,
    plan: &signing::KeyPlan,
    signers: &mut Signers,
    now: DateTime<Utc>,
    progress: &dyn Progress,
    outcome: &mut Outcome,
) -> Result<(Metadata, Metadata), RepoError> {
    let next =
        |l: Option<&super::state::Loaded>| l.and_then(|l| l.md.version()).map_or(1, |v| v + 1);
    let snap_version = next(published.snapshot.as_ref());
    let snap_expires = format_expires(now + repo.config.expiry("snapshot"));
    let mut snap = snapshot_doc(snap_version, &snap_expires, meta);
    outcome
        .signatures
        .extend(signers.sign(plan, "snapshot", &mut snap, progress)?);
    outcome.roles.push(RoleWritten {
        role: "snapshot".into(),
        version: snap_version,
        expires: snap_expires,
    });
    let ts = sign_timestamp(
        repo, published, &snap, plan, signers, now, progress, outcome,
    )?;
    Ok((snap, ts))
}

/// Builds and signs the next timestamp for `snap`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sign_timestamp<R>(
    repo: &Repository,
    published: &Published<R>,
    snap: &Metadata,
    plan: &signing::KeyPlan,
    signers: &mut Signers,
    now: DateTime<Utc>,
    progress: &dyn Progress,
    outcome: &mut Outcome,
) -> Result<Metadata, RepoError> {
    let ts_version = published
        .timestamp
        .as_ref()
        .and_then(|l| l.md.version())
        .map_or(1, |v| v + 1);
    let ts_expires = format_expires(now + repo.config.expiry("timestamp"));
    let mut ts = timestamp_doc(
        ts_version,
        &ts_expires,
        snap.version().unwrap_or(1),
        &snap.to_pretty_bytes(),
    );
    outcome
        .signatures
        .extend(signers.sign(plan, "timestamp", &mut ts, progress)?);
    outcome.roles.push(RoleWritten {
        role: "timestamp".into(),
        version: ts_version,
        expires: ts_expires,
    });
    Ok(ts)
}
