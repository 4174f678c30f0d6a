//! Which role a target goes to, decided as clients search for it: at each level the first
//! delegation whose `paths`, `path_hash_prefixes` or hash bin matches, and nothing
//! searched earlier (a role already listing the path, a terminating delegation) in the
//! way. The delegation tree is built once per command: a binned repository has
//! thousands of roles, and a bin is found from the path's hash, not by trying each.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::error::RepoError;
use super::state::{tree, Node};
use crate::tuf::paths::{describe_role_paths, role_may_hold};
use crate::tuf::Metadata;

/// The targets roles of one command in client search order, with their children.
pub struct Roles {
    nodes: Vec<Node>,
    index: HashMap<String, usize>,
    children: Vec<Vec<usize>>,
}

impl Roles {
    /// The tree of `docs` (delegations do not change while targets are added).
    pub fn new(docs: &BTreeMap<String, Metadata>) -> Roles {
        let nodes = tree(docs);
        let index: HashMap<String, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let mut children = vec![Vec::new(); nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            if let Some(p) = n.parent.as_ref().and_then(|p| index.get(p)) {
                children[*p].push(i);
            }
        }
        Roles {
            nodes,
            index,
            children,
        }
    }

    /// Whether the role is in the tree.
    pub fn contains(&self, role: &str) -> bool {
        self.index.contains_key(role)
    }

    /// Every role with the paths it is trusted for, for messages; hash bins as one entry.
    pub fn describe(&self) -> String {
        let mut out: Vec<String> = Vec::new();
        let mut bins_shown = std::collections::BTreeSet::new();
        for n in &self.nodes {
            if let Some(b) = &n.bins {
                if bins_shown.insert(b.name_prefix.clone()) {
                    let mut names = b.names();
                    let first = names.next().unwrap_or_default();
                    out.push(format!(
                        "`{first}` … `{}` ({} hash bins: a path goes to the bin its SHA-256 picks)",
                        names.last().unwrap_or_default(),
                        b.count()
                    ));
                }
            } else if n.parent.is_none() {
                out.push(format!("`{}` (any path)", n.name));
            } else {
                out.push(format!("`{}` ({})", n.name, describe_role_paths(&n.def)));
            }
        }
        out.join(", ")
    }

    /// The children of `i` whose delegation covers `path`, in order: for hash bins only
    /// the bin the path hashes into, found by name.
    fn matching_children(&self, i: usize, path: &str) -> Vec<usize> {
        let kids = &self.children[i];
        match kids.first().and_then(|k| self.nodes[*k].bins.as_ref()) {
            Some(b) => self
                .index
                .get(&b.role_for(path))
                .copied()
                .filter(|k| self.nodes[*k].parent.as_deref() == Some(self.nodes[i].name.as_str()))
                .into_iter()
                .collect(),
            None => kids
                .iter()
                .copied()
                .filter(|k| may_hold(&self.nodes[*k], path))
                .collect(),
        }
    }

    fn parent(&self, i: usize) -> Option<usize> {
        self.nodes[i]
            .parent
            .as_ref()
            .and_then(|p| self.index.get(p))
            .copied()
    }

    /// Whether clients following delegations reach role `i` for `path`: every
    /// delegation on the way down must be trusted for it.
    fn reachable(&self, i: usize, path: &str) -> Result<(), String> {
        let mut cur = Some(i);
        while let Some(c) = cur {
            let n = &self.nodes[c];
            if n.parent.is_some() && !may_hold(n, path) {
                return Err(if c == i {
                    match &n.bins {
                        Some(b) => format!("the path hashes into bin `{}`", b.role_for(path)),
                        None => format!("its {}", describe_node(n)),
                    }
                } else {
                    format!(
                        "it is delegated through `{}`, whose {}",
                        n.name,
                        describe_node(n)
                    )
                });
            }
            cur = self.parent(c);
        }
        Ok(())
    }

    fn is_ancestor(&self, ancestor: usize, of: usize) -> bool {
        let mut cur = self.parent(of);
        while let Some(p) = cur {
            if p == ancestor {
                return true;
            }
            cur = self.parent(p);
        }
        false
    }

    /// The role `path` goes to: `requested` when it may hold it, else the most specific
    /// delegated role clients reach for it (the first matching delegation at each level),
    /// else top-level `targets`. Refuses a role clients would never consult for the path.
    pub fn choose(
        &self,
        docs: &BTreeMap<String, Metadata>,
        path: &str,
        requested: Option<&str>,
    ) -> Result<String, RepoError> {
        let chosen = match requested {
            Some(r) => {
                let i = *self.index.get(r).ok_or_else(|| RepoError::NoSuchRole {
                    role: r.into(),
                    roles: self.describe(),
                })?;
                self.reachable(i, path)
                    .map_err(|reason| RepoError::RoleCannotHold {
                        role: r.into(),
                        path: path.into(),
                        reason,
                        roles: self.describe(),
                    })?;
                i
            }
            None => {
                let mut cur = 0;
                while let Some(next) = self.matching_children(cur, path).first() {
                    cur = *next;
                }
                cur
            }
        };
        // Clients search in pre-order over the delegations that match the path and stop
        // at the first role that lists it, or at a terminating delegation that matches
        // it: nothing they reach earlier may get in the way.
        let name = &self.nodes[chosen].name;
        let mut stack = vec![0usize];
        while let Some(i) = stack.pop() {
            if i == chosen {
                break;
            }
            let n = &self.nodes[i];
            if lists(docs, &n.name, path) {
                return Err(RepoError::Shadowed {
                    path: path.into(),
                    role: name.clone(),
                    holder: n.name.clone(),
                });
            }
            let terminating = n.def.get("terminating").and_then(Value::as_bool) == Some(true);
            if terminating && !self.is_ancestor(i, chosen) {
                return Err(RepoError::RoleCannotHold {
                    role: name.clone(),
                    path: path.into(),
                    reason: format!(
                        "clients searching for it stop at the terminating role `{}` first",
                        n.name
                    ),
                    roles: self.describe(),
                });
            }
            stack.extend(self.matching_children(i, path).into_iter().rev());
        }
        Ok(name.clone())
    }
}

/// Whether the delegation to `n` covers `path` (a hash bin: whether the path hashes there).
fn may_hold(n: &Node, path: &str) -> bool {
    match &n.bins {
        Some(b) => b.role_for(path) == n.name,
        None => role_may_hold(&n.def, path),
    }
}

fn describe_node(n: &Node) -> String {
    match &n.bins {
        Some(b) => format!(
            "hash bin (one of {}) holds only the paths whose SHA-256 falls in it",
            b.count()
        ),
        None => describe_role_paths(&n.def),
    }
}

/// Whether role `role` lists `path` in `docs`.
pub fn lists(docs: &BTreeMap<String, Metadata>, role: &str, path: &str) -> bool {
    docs.get(role)
        .and_then(|d| d.signed().get("targets"))
        .and_then(|t| t.get(path))
        .is_some()
}

/// [`Roles::choose`] on a tree built for this one path.
pub fn choose_role(
    docs: &BTreeMap<String, Metadata>,
    path: &str,
    requested: Option<&str>,
) -> Result<String, RepoError> {
    Roles::new(docs).choose(docs, path, requested)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(targets: Value, roles: Value) -> Metadata {
        Metadata::new(json!({
            "_type": "targets", "version": 1, "expires": "2030-01-01T00:00:00Z",
            "targets": targets, "delegations": {"keys": {}, "roles": roles},
        }))
        .unwrap()
    }

    /// targets → [a (a/*), t (t/*, terminating), bins (hash prefixes 0-f)], a → [a-deep (*/x*)].
    fn tree_docs() -> BTreeMap<String, Metadata> {
        let prefixes: Vec<String> = (0..16).map(|i| format!("{i:x}")).collect();
        let mut docs = BTreeMap::new();
        docs.insert(
            "targets".to_string(),
            doc(
                json!({"top.txt": {"length": 1, "hashes": {"sha256": "00"}}}),
                json!([
                    {"name": "a", "keyids": [], "threshold": 1, "paths": ["a/*"], "terminating": false},
                    {"name": "t", "keyids": [], "threshold": 1, "paths": ["t/*"], "terminating": true},
                    {"name": "bins", "keyids": [], "threshold": 1, "path_hash_prefixes": prefixes},
                ]),
            ),
        );
        docs.insert(
            "a".to_string(),
            doc(
                json!({"a/xlisted": {"length": 1, "hashes": {"sha256": "00"}}}),
                json!([{"name": "a-deep", "keyids": [], "threshold": 1, "paths": ["*/x*"]}]),
            ),
        );
        docs
    }

    #[test]
    fn the_most_specific_matching_delegation_is_chosen_like_a_client_search() {
        let d = tree_docs();
        assert_eq!(choose_role(&d, "a/xyz", None).unwrap(), "a-deep");
        assert_eq!(choose_role(&d, "a/b", None).unwrap(), "a");
        assert_eq!(choose_role(&d, "t/b", None).unwrap(), "t");
        // Every path's SHA-256 starts with a hex digit: the hash-bin role takes the rest.
        assert_eq!(choose_role(&d, "other", None).unwrap(), "bins");
        assert_eq!(choose_role(&d, "a/b", Some("targets")).unwrap(), "targets");
    }

    #[test]
    fn roles_clients_would_not_consult_are_refused_with_the_reason() {
        let d = tree_docs();
        let e = choose_role(&d, "b/x", Some("a")).unwrap_err().to_string();
        assert!(
            e.contains("its paths: a/*") && e.contains("`targets` (any path)"),
            "{e}"
        );
        let e = choose_role(&d, "b/xy", Some("a-deep"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("delegated through `a`"), "{e}");
        // `t` is terminating and matches t/*: clients never reach `bins` for t/x.
        let e = choose_role(&d, "t/x", Some("bins"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("terminating role `t`"), "{e}");
        // Already listed by a role searched earlier.
        let e = choose_role(&d, "top.txt", Some("bins"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("already listed by role `targets`"), "{e}");
        let e = choose_role(&d, "a/xlisted", Some("a-deep"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("already listed by role `a`"), "{e}");
        assert!(matches!(
            choose_role(&d, "x", Some("nope")),
            Err(RepoError::NoSuchRole { .. })
        ));
    }

    #[test]
    fn a_target_goes_to_its_succinct_bin_and_no_other_bin_may_hold_it() {
        let mut docs = BTreeMap::new();
        docs.insert(
            "targets".to_string(),
            Metadata::new(json!({
                "_type": "targets", "version": 1, "expires": "2030-01-01T00:00:00Z",
                "targets": {}, "delegations": {"keys": {}, "succinct_roles": {
                    "keyids": [], "threshold": 1, "bit_length": 10, "name_prefix": "bin"}},
            }))
            .unwrap(),
        );
        // python-tuf 7: SuccinctRoles([], 1, 10, "bin").get_role_for_target("hello.txt")
        let roles = Roles::new(&docs);
        assert_eq!(roles.choose(&docs, "hello.txt", None).unwrap(), "bin-1cd");
        let e = roles
            .choose(&docs, "hello.txt", Some("bin-000"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hashes into bin `bin-1cd`") && e.contains("1024 hash bins"),
            "{e}"
        );
    }
}
