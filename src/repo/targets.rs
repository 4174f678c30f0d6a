//! Adding and removing targets: which role a path belongs to (as clients will search
//! for it), hashing files, target entries given by hash for artifacts stored elsewhere,
//! and staging the edited roles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::choose::{lists, Roles};
use super::error::RepoError;
use super::staging::Staging;
use super::state::{tree, Published};
use super::{Progress, Repository};
use crate::tuf::fileinfo::{FileInfo, HashAlg};
use crate::tuf::paths::check_target_path;
use crate::tuf::Metadata;

/// A target to record.
#[derive(Debug, Clone)]
pub struct NewTarget {
    pub path: String,
    pub info: FileInfo,
    pub custom: Option<Value>,
    /// The local file to publish under `targets/`; `None` for artifacts stored elsewhere.
    pub source: Option<PathBuf>,
}

/// Where one target went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recorded {
    pub path: String,
    pub role: String,
    pub length: u64,
    pub replaced: bool,
}

/// The targets roles as they will be committed: published documents with staged ones
/// over them, and a fresh empty document for `targets` before the first commit.
pub fn working_docs(repo: &Repository) -> Result<BTreeMap<String, Metadata>, RepoError> {
    let published = Published::load(&repo.layout, repo.consistent())?;
    let mut docs: BTreeMap<String, Metadata> = published
        .roles
        .into_iter()
        .map(|(k, l)| (k, l.md))
        .collect();
    docs.extend(Staging::new(&repo.layout).roles()?);
    Ok(docs)
}

/// An empty targets document (version 1; `commit` sets version and expiry).
pub fn empty_targets() -> Metadata {
    // A fixed, valid document: building it cannot fail.
    Metadata::new(json!({
        "_type": "targets",
        "spec_version": "1.0.31",
        "version": 1,
        "expires": "1970-01-01T00:00:00Z",
        "targets": {},
    }))
    .unwrap_or_else(|_| unreachable!("a fixed targets document is valid"))
}

/// Hashes a local file for `path`, checking it against hashes/length given by hand.
pub fn hash_file(
    file: &Path,
    algs: &[HashAlg],
    progress: &dyn Progress,
) -> Result<FileInfo, RepoError> {
    let err = |source| RepoError::File {
        path: file.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(file).map_err(err)?;
    if !meta.is_file() {
        return Err(RepoError::File {
            path: file.to_path_buf(),
            source: std::io::Error::other("not a regular file"),
        });
    }
    let mut f = std::fs::File::open(file).map_err(err)?;
    let mut last = 0u64;
    FileInfo::of_reader(&mut f, algs, |n| {
        progress.advance(n - last);
        last = n;
    })
    .map_err(err)
}

/// Checks hashes given by hand (`sha256:HEX`) against what a file hashed to.
pub fn check_given(what: &str, given: &FileInfo, actual: &FileInfo) -> Result<(), RepoError> {
    if given.length != actual.length {
        return Err(RepoError::HashMismatch {
            what: what.into(),
            alg: "length".into(),
            given: given.length.to_string(),
            actual: actual.length.to_string(),
        });
    }
    for (alg, hex) in &given.hashes {
        if let Some(a) = actual.hash(alg) {
            if a != hex {
                return Err(RepoError::HashMismatch {
                    what: what.into(),
                    alg: alg.clone(),
                    given: hex.clone(),
                    actual: a.into(),
                });
            }
        }
    }
    Ok(())
}

/// Parses `sha256:HEX` (or `sha512:HEX`).
pub fn parse_hash(what: &str, spec: &str) -> Result<(String, String), RepoError> {
    let bad = |reason: String| RepoError::BadTargetInfo {
        what: what.into(),
        reason,
    };
    let (alg, hex) = spec
        .split_once(':')
        .ok_or_else(|| bad(format!("hash `{spec}` must look like sha256:HEX")))?;
    let a = HashAlg::from_name(alg).ok_or_else(|| {
        bad(format!(
            "hash algorithm `{alg}` is not one tufkey writes (sha256, sha512)"
        ))
    })?;
    let hex = hex.to_ascii_lowercase();
    if hex.len() != a.hex_len() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "the {alg} hash must be {} hex digits, got `{hex}`",
            a.hex_len()
        )));
    }
    Ok((alg.to_string(), hex))
}

/// Reads a manifest of targets stored elsewhere: JSON in TUF's own form
/// (`{"PATH": {"length": N, "hashes": {...}, "custom": {...}}}`), or one target a line,
/// `PATH LENGTH sha256:HEX [sha512:HEX]`, `#` comments allowed.
pub fn read_manifest(file: &Path) -> Result<Vec<NewTarget>, RepoError> {
    let text = std::fs::read_to_string(file).map_err(|source| RepoError::File {
        path: file.to_path_buf(),
        source,
    })?;
    let bad = |line: usize, reason: String| RepoError::Invalid {
        path: file.to_path_buf(),
        reason: if line > 0 {
            format!("line {line}: {reason}")
        } else {
            reason
        },
    };
    let mut out = Vec::new();
    if text.trim_start().starts_with('{') {
        let v: Map<String, Value> =
            serde_json::from_str(&text).map_err(|e| bad(0, format!("not a JSON object: {e}")))?;
        for (path, entry) in v {
            let info = FileInfo::from_value(&entry)
                .ok_or_else(|| bad(0, format!("`{path}` needs `length` and `hashes`")))?;
            for (alg, hex) in &info.hashes {
                parse_hash(
                    &format!("{} `{path}`", file.display()),
                    &format!("{alg}:{hex}"),
                )?;
            }
            out.push(NewTarget {
                path,
                info,
                custom: entry.get("custom").cloned(),
                source: None,
            });
        }
        return Ok(out);
    }
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() < 3 {
            return Err(bad(
                i + 1,
                "expected `PATH LENGTH sha256:HEX [sha512:HEX]`".into(),
            ));
        }
        let length = parts[1]
            .parse::<u64>()
            .map_err(|_| bad(i + 1, format!("length `{}` is not a number", parts[1])))?;
        let what = format!("{} line {}", file.display(), i + 1);
        let hashes = parts[2..]
            .iter()
            .map(|h| parse_hash(&what, h))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(NewTarget {
            path: parts[0].to_string(),
            info: FileInfo { length, hashes },
            custom: None,
            source: None,
        });
    }
    Ok(out)
}

/// Records targets into their roles' staged documents and stages their files. Every
/// target is checked first; nothing is written unless all of them can be recorded.
pub fn add(
    repo: &Repository,
    items: &[NewTarget],
    role: Option<&str>,
) -> Result<Vec<Recorded>, RepoError> {
    let mut docs = working_docs(repo)?;
    if !docs.contains_key("targets") {
        docs.insert("targets".into(), empty_targets());
    }
    // Adding targets changes no delegation: one tree for every target.
    let roles = Roles::new(&docs);
    // Targets go straight into `docs` (later ones see earlier ones, as choosing a role
    // needs); the names of the roles they went to are staged at the end.
    let mut changed: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for t in items {
        check_target_path(&t.path)?;
        if let Some(c) = &t.custom {
            if !c.is_object() {
                return Err(RepoError::BadTargetInfo {
                    what: format!("target `{}`", t.path),
                    reason: "--custom must be a JSON object".into(),
                });
            }
        }
        if t.info.hash("sha256").is_none() {
            return Err(RepoError::BadTargetInfo {
                what: format!("target `{}`", t.path),
                reason: "a SHA-256 hash is required (sha256:HEX)".into(),
            });
        }
        let name = roles.choose(&docs, &t.path, role)?;
        let mut entry = t.info.to_value();
        if let Some(c) = &t.custom {
            entry["custom"] = c.clone();
        }
        let replaced = lists(&docs, &name, &t.path);
        docs.entry(name.clone())
            .or_insert_with(empty_targets)
            .insert_target(&t.path, entry)
            .map_err(|source| RepoError::Metadata {
                path: repo.layout.staged_role(&name),
                source,
            })?;
        changed.insert(name.clone());
        out.push(Recorded {
            path: t.path.clone(),
            role: name,
            length: t.info.length,
            replaced,
        });
    }
    let staging = Staging::new(&repo.layout);
    for t in items {
        if let (Some(src), Some(h)) = (&t.source, t.info.hash("sha256")) {
            staging.stage_file(src, h)?;
        }
    }
    let changed: BTreeMap<String, Metadata> = changed
        .into_iter()
        .filter_map(|name| docs.remove(&name).map(|doc| (name, doc)))
        .collect();
    staging.write_roles(&changed)?;
    Ok(out)
}

/// Removes targets from the roles that list them (`role` to pick one). The files stay
/// under `targets/` for clients still on the previous snapshot.
pub fn remove(
    repo: &Repository,
    paths: &[String],
    role: Option<&str>,
) -> Result<Vec<Recorded>, RepoError> {
    let mut docs = working_docs(repo)?;
    let nodes = tree(&docs);
    let mut changed: BTreeMap<String, Metadata> = BTreeMap::new();
    let mut out = Vec::new();
    for path in paths {
        let holder = match role {
            Some(r) => {
                if !nodes.iter().any(|n| n.name == r) {
                    return Err(RepoError::NoSuchRole {
                        role: r.into(),
                        roles: Roles::new(&docs).describe(),
                    });
                }
                lists(&docs, r, path).then(|| r.to_string())
            }
            None => nodes
                .iter()
                .find(|n| lists(&docs, &n.name, path))
                .map(|n| n.name.clone()),
        };
        let Some(holder) = holder else {
            return Err(RepoError::NotATarget {
                path: path.clone(),
                role: match role {
                    Some(r) => format!("role `{r}`"),
                    None => "any role".into(),
                },
            });
        };
        // `docs` holds every edit made so far, and `holder` lists the path.
        let Some(mut doc) = docs.get(&holder).cloned() else {
            continue;
        };
        let length = doc.signed()["targets"][path.as_str()]["length"]
            .as_u64()
            .unwrap_or(0);
        doc.edit(|s| {
            if let Some(t) = s.get_mut("targets").and_then(Value::as_object_mut) {
                t.remove(path);
            }
            Ok(())
        })
        .map_err(|source| RepoError::Metadata {
            path: repo.layout.staged_role(&holder),
            source,
        })?;
        docs.insert(holder.clone(), doc.clone());
        changed.insert(holder.clone(), doc);
        out.push(Recorded {
            path: path.clone(),
            role: holder,
            length,
            replaced: false,
        });
    }
    let staging = Staging::new(&repo.layout);
    staging.write_roles(&changed)?;
    Ok(out)
}

/// Stages an unchanged copy of `role` so it can be edited by hand or with
/// `tufkey delegation …`; returns the staged file.
pub fn stage_for_edit(repo: &Repository, role: &str) -> Result<PathBuf, RepoError> {
    let docs = working_docs(repo)?;
    let roles = Roles::new(&docs);
    if !roles.contains(role) {
        return Err(RepoError::NoSuchRole {
            role: role.into(),
            roles: roles.describe(),
        });
    }
    let path = repo.layout.staged_role(role);
    if !path.exists() {
        let md = docs.get(role).cloned().unwrap_or_else(empty_targets);
        Staging::new(&repo.layout).write_role(role, &md)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_in_lines_and_in_json() {
        let dir = tempfile::tempdir().unwrap();
        let lines = dir.path().join("m.txt");
        let h = "ab".repeat(32);
        std::fs::write(&lines, format!("# comment\n\napp.tgz 10 sha256:{h}\n")).unwrap();
        let t = read_manifest(&lines).unwrap();
        assert_eq!((t[0].path.as_str(), t[0].info.length), ("app.tgz", 10));
        let js = dir.path().join("m.json");
        std::fs::write(&js, format!(r#"{{"x/y.bin": {{"length": 3, "hashes": {{"sha256": "{h}"}}, "custom": {{"k": 1}}}}}}"#)).unwrap();
        let t = read_manifest(&js).unwrap();
        assert_eq!(t[0].custom, Some(json!({"k": 1})));
        std::fs::write(&lines, "app.tgz ten sha256:00\n").unwrap();
        let e = read_manifest(&lines).unwrap_err().to_string();
        assert!(e.contains("m.txt") && e.contains("line 1"), "{e}");
    }
}
