//! Top-level targets and every delegated role reachable from it, in the order a
//! client searches them (pre-order, depth first), each checked against the keys of
//! the role that delegates it, and each target it lists against the paths the
//! delegations on the way to it allow.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use serde_json::{Map, Value};

use super::paths::{PathRule, Succinct};
use super::report::{Delegation, SearchRole};
use super::roots::FinalRoot;
use super::top::{check_version, Snapshot};
use super::walk::Walk;
use crate::tuf::verify::RoleKeys;
use crate::tuf::{Delegator, Key, Metadata};

/// A target as one role lists it.
pub(super) struct Listed {
    pub path: String,
    pub info: Value,
    /// The metadata file that lists it.
    pub role_file: String,
}

/// A role to visit: its name, who delegates it, and the path rules on the way to it.
struct Visit {
    role: String,
    /// The file whose delegations name this role (empty for top-level targets).
    named_in: String,
    /// Shared by every role one document delegates (hash bins can be thousands).
    delegator: Option<(String, Rc<Delegator>)>,
    rules: Vec<Step>,
    /// Whether the delegation to it is `terminating` (clients stop searching below it).
    terminating: bool,
}

/// One delegation on the way to a role: `by` delegates `role` the paths `rule` allows.
#[derive(Clone)]
struct Step {
    by: String,
    role: String,
    rule: PathRule,
}

/// Every role reachable from top-level targets, checked; returns how many targets they
/// list and, when target files are checked, each of them (a copy of 100,000 entries is
/// not made for a walk that only needs the count, as `repo download` does).
pub(super) fn walk(walk: &mut Walk, root: &FinalRoot, snapshot: &Snapshot) -> (usize, Vec<Listed>) {
    let keep = walk.options.check_targets;
    let mut count = 0;
    let mut listed = Vec::new();
    let mut visited = BTreeSet::new();
    let mut stack = vec![Visit {
        role: "targets".into(),
        named_in: String::new(),
        delegator: None,
        rules: Vec::new(),
        terminating: false,
    }];
    while let Some(visit) = stack.pop() {
        if !visited.insert(visit.role.clone()) {
            continue;
        }
        let Some((file, md)) = load_role(walk, root, snapshot, &visit) else {
            continue;
        };
        count += list_targets(walk, &file, &md, &visit, keep.then_some(&mut listed));
        let children = delegated_roles(walk, &file, &md, &visit);
        record_for_search(walk, &file, md, &visit, &children);
        // Pushed in reverse so the first delegation is searched first, as clients do.
        stack.extend(children.into_iter().rev());
    }
    (count, listed)
}

/// Loads a targets role from the file the snapshot names and checks it.
fn load_role(
    walk: &mut Walk,
    root: &FinalRoot,
    snapshot: &Snapshot,
    visit: &Visit,
) -> Option<(String, Metadata)> {
    let role = &visit.role;
    if role.contains('/') || role.contains('\\') || role.starts_with('.') || role.is_empty() {
        walk.problem(
            &visit.named_in,
            format!("delegates role `{role}`, a name that cannot be a metadata file name (no `/`, `\\`, or leading `.`); tufkey does not check such roles"),
        );
        return None;
    }
    let Some(info) = snapshot.meta.get(&format!("{role}.json")).cloned() else {
        walk.problem(
            &snapshot.file,
            format!("does not list `{role}.json`, so clients cannot load role `{role}`"),
        );
        return None;
    };
    let version = info
        .get("version")
        .and_then(Value::as_u64)
        .filter(|v| *v >= 1);
    let Some(version) = version else {
        walk.problem(
            &snapshot.file,
            format!("the entry for `{role}.json` needs a `version` of at least 1"),
        );
        return None;
    };
    let name = if root.consistent_snapshot {
        format!("{version}.{role}.json")
    } else {
        format!("{role}.json")
    };
    let loaded = walk.load(&name, "targets")?;
    walk.check_stated(&loaded, &info, &snapshot.file.clone());
    let (label, r) = match &visit.delegator {
        None => {
            let r = walk.check_signatures(&loaded, &root.keys, &root.label, "targets");
            (root.label.clone(), r)
        }
        Some((name, keys)) => (
            name.clone(),
            walk.check_signatures(&loaded, keys, name, role),
        ),
    };
    walk.role_line(role, &loaded, &label, r.as_ref());
    check_version(walk, &loaded, Some(version), &snapshot.file.clone());
    walk.check_expiry(&loaded);
    Some((loaded.file.clone(), loaded.md))
}

/// Checks every target of the role against its delegated paths (a target outside them
/// is a problem: clients never look for it there), records each into `out` when given,
/// and returns how many the role lists.
fn list_targets(
    walk: &mut Walk,
    file: &str,
    md: &Metadata,
    visit: &Visit,
    mut out: Option<&mut Vec<Listed>>,
) -> usize {
    let Some(targets) = md.signed().get("targets").and_then(Value::as_object) else {
        walk.problem(
            file,
            "`targets` must be an object mapping target paths to their length and hashes",
        );
        return 0;
    };
    for (path, info) in targets {
        if let Some(step) = visit.rules.iter().find(|s| !s.rule.allows(path)) {
            walk.problem(
                file,
                format!(
                    "lists target `{path}`, but {} delegates `{}` only {}; clients never look for this target here",
                    step.by,
                    step.role,
                    step.rule.describe()
                ),
            );
        }
        if let Some(out) = out.as_deref_mut() {
            out.push(Listed {
                path: path.clone(),
                info: info.clone(),
                role_file: file.to_owned(),
            });
        }
    }
    targets.len()
}

/// Keeps what a client's search for one target needs from this role (the report's
/// `search`): its targets and its delegations in order, each with its own path rule.
/// Takes the document: its targets map moves into the report rather than being copied.
fn record_for_search(walk: &mut Walk, file: &str, md: Metadata, visit: &Visit, children: &[Visit]) {
    let targets = match md.into_signed() {
        Value::Object(mut signed) => match signed.remove("targets") {
            Some(Value::Object(targets)) => targets,
            _ => Map::new(),
        },
        _ => Map::new(),
    };
    let delegates = children
        .iter()
        .filter_map(|c| {
            c.rules.last().map(|step| Delegation {
                role: c.role.clone(),
                rule: step.rule.clone(),
                terminating: c.terminating,
            })
        })
        .collect();
    walk.report.search.push(SearchRole {
        role: visit.role.clone(),
        file: file.to_owned(),
        targets,
        delegates,
    });
}

/// The roles this targets document delegates, as visits.
fn delegated_roles(walk: &mut Walk, file: &str, md: &Metadata, visit: &Visit) -> Vec<Visit> {
    let Some(delegations) = md.signed().get("delegations") else {
        return Vec::new();
    };
    if let Some(succinct) = delegations.get("succinct_roles") {
        if delegations.get("roles").is_some() {
            walk.problem(
                file,
                "delegations must have `roles` or `succinct_roles`, not both",
            );
            return Vec::new();
        }
        return match succinct_bins(delegations, succinct) {
            Ok((bins, keys)) => {
                let keys = Rc::new(keys);
                bins.names()
                    .map(|name| {
                        let mut rules = visit.rules.clone();
                        let rule = PathRule::Bin {
                            bins: bins.clone(),
                            name: name.clone(),
                        };
                        rules.push(Step {
                            by: visit.role.clone(),
                            role: name.clone(),
                            rule,
                        });
                        Visit {
                            role: name,
                            named_in: file.to_owned(),
                            delegator: Some((visit.role.clone(), Rc::clone(&keys))),
                            rules,
                            // python-tuf yields a path's one bin as terminating: no other
                            // bin can hold it, so the search ends there.
                            terminating: true,
                        }
                    })
                    .collect()
            }
            Err(e) => {
                walk.problem(file, format!("succinct_roles: {e}"));
                Vec::new()
            }
        };
    }
    let keys = match Delegator::from_metadata(md) {
        Ok(k) => Rc::new(k),
        Err(e) => {
            walk.problem(file, format!("its delegations cannot be read: {e}"));
            return Vec::new();
        }
    };
    let entries = delegations
        .get("roles")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for entry in entries {
        let name = entry
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let rule = match PathRule::from_role(&entry) {
            Ok(r) => r,
            Err(e) => {
                walk.problem(file, format!("delegation to `{name}`: {e}"));
                continue;
            }
        };
        let mut rules = visit.rules.clone();
        rules.push(Step {
            by: visit.role.clone(),
            role: name.clone(),
            rule,
        });
        let terminating = entry
            .get("terminating")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        out.push(Visit {
            role: name,
            named_in: file.to_owned(),
            delegator: Some((visit.role.clone(), Rc::clone(&keys))),
            rules,
            terminating,
        });
    }
    out
}

/// The most bins checked one by one (2^16): a repository with more is refused as too
/// large to walk rather than read for hours.
pub const MAX_BINS: u64 = 1 << 16;

/// The bins of succinct delegations and a delegator that gives each bin the shared
/// keys and threshold (also how `repo commit` reads a binned delegator).
pub(crate) fn succinct_bins(
    delegations: &Value,
    succinct: &Value,
) -> Result<(Succinct, Delegator), String> {
    let bins = Succinct::from_value(succinct)?;
    if bins.count() > MAX_BINS {
        return Err(format!(
            "{} bins (bit_length {}) is more than tufkey repo verify walks ({MAX_BINS})",
            bins.count(),
            bins.bit_length
        ));
    }
    let keyids: Vec<String> = succinct
        .get("keyids")
        .and_then(Value::as_array)
        .ok_or("`keyids` must be an array")?
        .iter()
        .map(|k| {
            k.as_str()
                .map(str::to_owned)
                .ok_or("`keyids` must hold strings")
        })
        .collect::<Result<_, _>>()?;
    let threshold = succinct
        .get("threshold")
        .and_then(Value::as_u64)
        .filter(|t| *t >= 1)
        .ok_or("`threshold` must be an integer of at least 1")?;
    let mut keys = BTreeMap::new();
    let listed = delegations
        .get("keys")
        .and_then(Value::as_object)
        .ok_or("delegations must have a `keys` object")?;
    for (id, k) in listed {
        keys.insert(
            id.clone(),
            Key::from_value(id, k).map_err(|e| e.to_string())?,
        );
    }
    let role = RoleKeys { keyids, threshold };
    let roles = bins.names().map(|n| (n, role.clone())).collect();
    Ok((
        bins,
        Delegator {
            kind: "targets".into(),
            keys,
            roles,
        },
    ))
}
