//! The repository as clients see it right now: the newest root, `timestamp.json`, the
//! snapshot it names and the targets roles that snapshot lists; and the delegation
//! tree of targets roles in the order clients search it.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::error::RepoError;
use super::layout::Layout;
use super::verify::Succinct;
use crate::tuf::{Delegator, Envelope, Metadata, TufError};

/// A metadata file read from disk: as a [`Metadata`] unless a caller reads targets roles
/// its own way ([`Published::load_with`]).
#[derive(Debug, Clone)]
pub struct Loaded<R = Metadata> {
    pub md: R,
    pub path: PathBuf,
}

/// What the delegation tree reads of a targets role, however it was read.
pub trait RoleDoc {
    /// `signed.delegations`.
    fn delegations(&self) -> Option<Cow<'_, Value>>;
    /// The keys and roles the document delegates to (not hashed bins).
    fn delegator(&self) -> Result<Delegator, TufError>;
}

impl RoleDoc for Metadata {
    fn delegations(&self) -> Option<Cow<'_, Value>> {
        self.signed().get("delegations").map(Cow::Borrowed)
    }
    fn delegator(&self) -> Result<Delegator, TufError> {
        Delegator::from_metadata(self)
    }
}

impl RoleDoc for Envelope {
    fn delegations(&self) -> Option<Cow<'_, Value>> {
        self.signed_member("delegations").map(Cow::Owned)
    }
    fn delegator(&self) -> Result<Delegator, TufError> {
        Envelope::delegator(self)
    }
}

/// Reads and parses a metadata file; errors name it.
pub fn load(path: &Path) -> Result<Metadata, RepoError> {
    let bytes = std::fs::read(path).map_err(RepoError::io(path))?;
    Metadata::from_slice(&bytes).map_err(|source| RepoError::Metadata {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a metadata file as an [`Envelope`] (from its tape when it can); errors name it
/// and are [`load`]'s.
pub fn load_envelope(path: &Path) -> Result<Envelope, RepoError> {
    let bytes = std::fs::read(path).map_err(RepoError::io(path))?;
    Envelope::from_bytes(bytes).map_err(|source| RepoError::Metadata {
        path: path.to_path_buf(),
        source,
    })
}

/// The newest `N.root.json` in `metadata/` (the one clients end their root walk on).
pub fn newest_root(layout: &Layout) -> Result<Option<(u64, Loaded)>, RepoError> {
    let dir = layout.metadata_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(RepoError::Io {
                path: dir,
                source: e,
            })
        }
    };
    let mut best: Option<u64> = None;
    for e in entries {
        let name = e.map_err(RepoError::io(&dir))?.file_name();
        let name = name.to_string_lossy();
        if let Some(v) = name
            .strip_suffix(".root.json")
            .and_then(|n| n.parse::<u64>().ok())
        {
            best = best.max(Some(v));
        }
    }
    match best {
        None => Ok(None),
        Some(v) => {
            let path = layout.root(v);
            Ok(Some((
                v,
                Loaded {
                    md: load(&path)?,
                    path,
                },
            )))
        }
    }
}

/// What is published: timestamp, its snapshot, and the targets roles snapshot lists.
#[derive(Debug, Clone)]
pub struct Published<R = Metadata> {
    pub timestamp: Option<Loaded>,
    pub snapshot: Option<Loaded>,
    /// Targets roles by name (top-level `targets` and delegated roles).
    pub roles: BTreeMap<String, Loaded<R>>,
}

impl<R> Default for Published<R> {
    fn default() -> Self {
        Published {
            timestamp: None,
            snapshot: None,
            roles: BTreeMap::new(),
        }
    }
}

impl Published {
    /// Follows timestamp → snapshot → targets roles, as a client would; an empty view
    /// before the first commit.
    pub fn load(layout: &Layout, consistent: bool) -> Result<Published, RepoError> {
        Published::load_with(layout, consistent, |_, path| load(path))
    }
}

impl<R> Published<R> {
    /// As [`Published::load`], each targets role read by `read(role, path)`.
    pub fn load_with(
        layout: &Layout,
        consistent: bool,
        mut read: impl FnMut(&str, &Path) -> Result<R, RepoError>,
    ) -> Result<Published<R>, RepoError> {
        let ts_path = layout.timestamp();
        if !ts_path.exists() {
            return Ok(Published::default());
        }
        let timestamp = Loaded {
            md: load(&ts_path)?,
            path: ts_path.clone(),
        };
        let snap_version =
            meta_version(&timestamp.md, "snapshot.json").ok_or_else(|| RepoError::Invalid {
                path: ts_path.clone(),
                reason: "meta.\"snapshot.json\".version is missing".into(),
            })?;
        let snap_path = layout.role("snapshot", snap_version, consistent);
        let snapshot = Loaded {
            md: load(&snap_path)?,
            path: snap_path.clone(),
        };
        let mut roles = BTreeMap::new();
        if let Some(meta) = snapshot.md.signed().get("meta").and_then(Value::as_object) {
            for (file, info) in meta {
                let Some(role) = file.strip_suffix(".json") else {
                    continue;
                };
                let version = info.get("version").and_then(Value::as_u64).ok_or_else(|| {
                    RepoError::Invalid {
                        path: snap_path.clone(),
                        reason: format!("meta.\"{file}\".version is missing"),
                    }
                })?;
                let path = layout.role(role, version, consistent);
                let md = read(role, &path)?;
                roles.insert(role.to_string(), Loaded { md, path });
            }
        }
        Ok(Published {
            timestamp: Some(timestamp),
            snapshot: Some(snapshot),
            roles,
        })
    }
}

/// `signed.meta[file].version`.
pub fn meta_version(md: &Metadata, file: &str) -> Option<u64> {
    md.signed().get("meta")?.get(file)?.get("version")?.as_u64()
}

/// One targets role in the delegation tree.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    /// The delegating role (`None` for top-level targets, which root delegates).
    pub parent: Option<String>,
    /// The role object in the parent's `delegations.roles` (`Null` for `targets`); for a
    /// hash bin, `{name, keyids, threshold, terminating: true}` from `succinct_roles`.
    pub def: Value,
    /// The succinct delegation this role is a bin of (TAP 15), if it is one.
    pub bins: Option<Succinct>,
}

/// Targets roles in client search order (pre-order, delegations in listed order),
/// starting at `targets`. Roles that are delegated but have no document yet are
/// listed too; a role delegated twice is listed where clients first reach it.
pub fn tree<D: RoleDoc>(docs: &BTreeMap<String, D>) -> Vec<Node> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    walk(
        docs,
        "targets",
        None,
        Value::Null,
        None,
        &mut seen,
        &mut out,
    );
    out
}

fn walk<D: RoleDoc>(
    docs: &BTreeMap<String, D>,
    name: &str,
    parent: Option<String>,
    def: Value,
    bins: Option<Succinct>,
    seen: &mut BTreeSet<String>,
    out: &mut Vec<Node>,
) {
    if !seen.insert(name.to_string()) {
        return;
    }
    out.push(Node {
        name: name.to_string(),
        parent,
        def,
        bins,
    });
    let Some(md) = docs.get(name) else {
        return;
    };
    let delegations = md.delegations();
    let delegations = delegations.as_deref();
    if let Some(succinct) = delegations.and_then(|d| d.get("succinct_roles")) {
        let Ok(b) = Succinct::from_value(succinct) else {
            return;
        };
        // Every bin shares the keys and threshold; python-tuf treats each as terminating.
        for bin in b.names() {
            let def = json!({
                "name": bin,
                "keyids": succinct.get("keyids").cloned().unwrap_or_else(|| json!([])),
                "threshold": succinct.get("threshold").cloned().unwrap_or_else(|| json!(1)),
                "terminating": true,
            });
            let parent = Some(name.to_string());
            walk(docs, &bin, parent, def, Some(b.clone()), seen, out);
        }
        return;
    }
    let roles = delegations
        .and_then(|d| d.get("roles"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for r in roles {
        if let Some(child) = r.get("name").and_then(Value::as_str) {
            let parent = Some(name.to_string());
            walk(docs, child, parent, r.clone(), None, seen, out);
        }
    }
}
