//! Succinct hashed bins (TAP 15, PEP 458): top-level targets delegates its whole path
//! space to `2^bit_length` roles named `PREFIX-<hex>`, a target going to the bin picked
//! by the first `bit_length` bits of the SHA-256 of its path, as python-tuf's
//! `SuccinctRoles` does. One `succinct_roles` entry replaces thousands of delegations,
//! so `targets` stays small, and a change re-signs only the bin it lands in.
//!
//! `create` stages the delegation and moves existing top-level targets into their bins;
//! `commit` signs and publishes like any delegated roles (bins without targets get an
//! empty document). Bins share one entry in repo.toml, named by the prefix.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::error::RepoError;
use super::staging::Staging;
use super::state::{Node, RoleDoc};
use super::targets::{empty_targets, working_docs};
use super::verify::{succinct_bins, Succinct, MAX_BINS};
use super::Repository;
use crate::fsutil;
use crate::keys::{self, PinPolicy};
use crate::tuf::{Delegator, Metadata, TufError};

/// The fewest bins: one bit of the hash.
pub const MIN_BINS: u64 = 2;
/// The name prefix when none is given (roles `bins-000` … for 1,024 bins).
pub const DEFAULT_PREFIX: &str = "bins";

/// What `repo bins --count N --key URI …` asks for.
pub struct BinsRequest<'a> {
    pub count: u64,
    pub uris: &'a [String],
    pub threshold: u64,
    pub prefix: &'a str,
    pub pins: &'a PinPolicy,
}

/// What was staged.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Created {
    pub count: u64,
    pub bit_length: u32,
    pub prefix: String,
    pub first: String,
    pub last: String,
    pub keyids: Vec<String>,
    pub threshold: u64,
    /// Targets moved from top-level targets into their bins.
    pub moved: usize,
    /// Bins that hold a target now.
    pub filled: usize,
    /// Whether repo.toml got a `[keys]` entry for the prefix (false: it had one).
    pub config_updated: bool,
}

/// The number of bits of a bin count: a power of two from [`MIN_BINS`] to 65,536.
pub fn bit_length(count: u64) -> Result<u32, RepoError> {
    let bad = |reason: String| RepoError::BinCount { count, reason };
    if !(MIN_BINS..=MAX_BINS).contains(&count) {
        return Err(bad(format!(
            "a repository has from {MIN_BINS} to {MAX_BINS} hash bins"
        )));
    }
    if !count.is_power_of_two() {
        let lower = 1u64 << (63 - count.leading_zeros());
        return Err(bad(format!(
            "the count must be a power of two (a bin is chosen by the first bits of a SHA-256); try {lower} or {}",
            lower * 2
        )));
    }
    Ok(count.trailing_zeros())
}

fn check_prefix(prefix: &str) -> Result<(), RepoError> {
    let ok = !prefix.is_empty()
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !super::config::is_top_level(prefix);
    if ok {
        Ok(())
    } else {
        Err(RepoError::BadTargetInfo {
            what: format!("--prefix `{prefix}`"),
            reason: "a bin name prefix is letters, digits, `_`, `-` and `.`, and not a top-level role name; nothing was changed".into(),
        })
    }
}

/// The keys and roles a targets document delegates to, hashed bins included.
pub fn delegator_of(md: &impl RoleDoc, path: &Path) -> Result<Delegator, RepoError> {
    let delegations = md.delegations();
    let delegations = delegations.as_deref();
    match delegations.and_then(|d| d.get("succinct_roles")) {
        Some(succinct) => {
            let d = delegations.unwrap_or(&Value::Null);
            succinct_bins(d, succinct)
                .map(|(_, delegator)| delegator)
                .map_err(|reason| RepoError::Invalid {
                    path: path.to_path_buf(),
                    reason: format!("delegations.succinct_roles: {reason}"),
                })
        }
        None => md.delegator().map_err(|source| RepoError::Metadata {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The name repo.toml settings of a role are under: a bin's are under its prefix.
pub fn setting_name(node: &Node) -> &str {
    node.bins
        .as_ref()
        .map_or(node.name.as_str(), |b| b.name_prefix.as_str())
}

/// The succinct delegation of top-level targets in `docs`, if it has one.
pub fn current(docs: &BTreeMap<String, Metadata>) -> Option<Succinct> {
    let s = docs
        .get("targets")?
        .signed()
        .get("delegations")?
        .get("succinct_roles")?;
    Succinct::from_value(s).ok()
}

/// Stages hashed bins: top-level targets delegates to `count` bins with the keys of
/// `uris`, and its targets move into their bins. Everything is checked (count, prefix,
/// keys read without a PIN, no delegation already there) before anything is written.
pub fn create(repo: &Repository, req: &BinsRequest) -> Result<Created, RepoError> {
    let bit_length = bit_length(req.count)?;
    check_prefix(req.prefix)?;
    if req.uris.is_empty() {
        return Err(RepoError::BadTargetInfo {
            what: "repo bins".into(),
            reason: "give the bins' key with --key URI (repeat for more keys); nothing was changed"
                .into(),
        });
    }
    let mut keys_obj = Map::new();
    let mut keyids: Vec<String> = Vec::new();
    for uri in req.uris {
        let key = keys::public_key(uri, req.pins)
            .map_err(|source| RepoError::KeyRead {
                uri: keys::uri::redact(uri),
                role: req.prefix.to_string(),
                source: Box::new(source),
            })?
            .to_tuf_key();
        let id = key.key_id();
        if !keyids.contains(&id) {
            keys_obj.insert(id.clone(), key.to_value());
            keyids.push(id);
        }
    }
    if req.threshold < 1 || req.threshold > keyids.len() as u64 {
        return Err(RepoError::BadTargetInfo {
            what: format!("--threshold {}", req.threshold),
            reason: format!(
                "the bins have {} distinct key(s); a threshold is from 1 to that; nothing was changed",
                keyids.len()
            ),
        });
    }
    let docs = working_docs(repo)?;
    let targets_path = repo.layout.staged_role("targets");
    let mut targets = docs.get("targets").cloned().unwrap_or_else(empty_targets);
    if let Some(reason) = existing_delegation(&targets) {
        return Err(RepoError::Invalid {
            path: targets_path,
            reason,
        });
    }
    let bins = Succinct {
        bit_length,
        name_prefix: req.prefix.to_string(),
    };
    let moved: Map<String, Value> = targets
        .signed()
        .get("targets")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut filled: BTreeMap<String, Metadata> = BTreeMap::new();
    for (path, entry) in &moved {
        let bin = bins.role_for(path);
        let doc = filled.entry(bin.clone()).or_insert_with(empty_targets);
        doc.edit(|s| insert_target(s, path, entry))
            .map_err(|source| RepoError::Metadata {
                path: repo.layout.staged_role(&bin),
                source,
            })?;
    }
    let succinct = json!({
        "keyids": keyids, "threshold": req.threshold,
        "bit_length": bit_length, "name_prefix": req.prefix,
    });
    targets
        .edit(|s| {
            if let Some(o) = s.as_object_mut() {
                o.insert("targets".into(), json!({}));
                o.insert(
                    "delegations".into(),
                    json!({"keys": keys_obj, "succinct_roles": succinct}),
                );
            }
            Ok(())
        })
        .map_err(|source| RepoError::Metadata {
            path: targets_path.clone(),
            source,
        })?;
    let config_text = config_with_keys(repo, req.prefix, req.uris)?;

    let staging = Staging::new(&repo.layout);
    // The bins first: a staged targets delegating to bins is what `commit` acts on.
    staging.write_roles(&filled)?;
    staging.write_role("targets", &targets)?;
    let config_updated = config_text.is_some();
    if let Some(text) = config_text {
        let p = repo.layout.config();
        fsutil::write_atomic(&p, text.as_bytes()).map_err(RepoError::io(&p))?;
    }
    let mut names = bins.names();
    let first = names.next().unwrap_or_default();
    let last = names.last().unwrap_or_else(|| first.clone());
    Ok(Created {
        count: req.count,
        bit_length,
        prefix: req.prefix.to_string(),
        first,
        last,
        keyids,
        threshold: req.threshold,
        moved: moved.len(),
        filled: filled.len(),
        config_updated,
    })
}

/// Why top-level targets cannot take hashed bins: TAP 15 allows `succinct_roles` or
/// `roles`, not both, and re-binning is not done here.
fn existing_delegation(targets: &Metadata) -> Option<String> {
    let d = targets.signed().get("delegations")?;
    if let Some(s) = d.get("succinct_roles") {
        let count = Succinct::from_value(s).map(|b| b.count()).unwrap_or(0);
        return Some(format!(
            "top-level targets already delegates to {count} hash bins; changing the number of bins is not supported (make a new repository, or keep the bins)"
        ));
    }
    let names: Vec<&str> = d
        .get("roles")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("name").and_then(Value::as_str))
        .collect();
    (!names.is_empty()).then(|| {
        format!(
            "top-level targets already delegates to {}; hashed bins take the whole path space of targets, so remove those delegations first (`tufkey repo edit` + `tufkey delegation remove`) or delegate bins from one of those roles' sibling repositories",
            names.join(", ")
        )
    })
}

fn insert_target(signed: &mut Value, path: &str, entry: &Value) -> Result<(), TufError> {
    let targets = signed
        .as_object_mut()
        .and_then(|o| {
            o.entry("targets")
                .or_insert_with(|| json!({}))
                .as_object_mut()
        })
        .ok_or_else(|| TufError::Schema {
            path: "$.signed.targets".into(),
            reason: "must be an object".into(),
        })?;
    targets.insert(path.to_string(), entry.clone());
    Ok(())
}

/// repo.toml with `"PREFIX" = [URIs]` added under `[keys]`, checked by parsing it; `None`
/// when it already names keys for the prefix (kept as the user wrote them).
fn config_with_keys(
    repo: &Repository,
    prefix: &str,
    uris: &[String],
) -> Result<Option<String>, RepoError> {
    if repo.config.keys.contains_key(prefix) {
        return Ok(None);
    }
    let path = repo.layout.config();
    let text = std::fs::read_to_string(&path).map_err(RepoError::io(&path))?;
    let quoted = |s: &str| toml::Value::String(s.to_string()).to_string();
    let list: Vec<String> = uris.iter().map(|u| quoted(u)).collect();
    let line = format!("{} = [{}]\n", quoted(prefix), list.join(", "));
    let mut out = String::with_capacity(text.len() + line.len());
    let mut inserted = false;
    for l in text.split_inclusive('\n') {
        out.push_str(l);
        if !inserted && l.trim() == "[keys]" {
            if !l.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&line);
            inserted = true;
        }
    }
    if !inserted {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("\n[keys]\n");
        out.push_str(&line);
    }
    super::config::RepoConfig::parse(&path, &out)?;
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_counts_are_powers_of_two_from_2_to_65536() {
        assert_eq!(bit_length(2).unwrap(), 1);
        assert_eq!(bit_length(1024).unwrap(), 10);
        assert_eq!(bit_length(65_536).unwrap(), 16);
        for bad in [0, 1, 3, 1000, 131_072] {
            let e = bit_length(bad).unwrap_err().to_string();
            assert!(e.contains(&bad.to_string()), "{e}");
        }
        let e = bit_length(1000).unwrap_err().to_string();
        assert!(e.contains("512") && e.contains("1024"), "{e}");
    }
}
