//! The search a client makes for one target, over the roles a check has already
//! loaded and verified: python-tuf ngclient's `_preorder_depth_first_walk` rules (the
//! first role that lists the path wins; only delegations whose paths, hash prefixes or
//! bin match are followed; a `terminating` delegation ends the search below it; at most
//! [`MAX_DELEGATIONS`] roles besides `targets`). No file is read here, so the download command cannot
//! drift from what `repo verify` checked.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::report::{Report, SearchRole};

/// ngclient's default `max_delegations`: a search gives up once it has visited this many
/// roles besides `targets`, so a target further away is not found by clients either.
pub const MAX_DELEGATIONS: usize = 32;

/// The role a client takes a target from, and what that role states about it.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: String,
    pub role: String,
    pub role_file: String,
    /// The target's `{length, hashes, custom?}` object as the role lists it.
    pub info: Value,
}

/// Why a search found nothing, for a message that says where it looked.
#[derive(Debug, Clone)]
pub struct NotFound {
    /// The roles searched, in order.
    pub searched: Vec<String>,
    /// Whether the search stopped after [`MAX_DELEGATIONS`] delegated roles.
    pub gave_up: bool,
}

impl Report {
    /// Searches the checked roles for `path` in the client's order; a role the check
    /// could not load is skipped, as a client would fail there (the report has the
    /// problem).
    pub fn find_target(&self, path: &str) -> Result<Found, NotFound> {
        let by_name: BTreeMap<&str, &SearchRole> =
            self.search.iter().map(|r| (r.role.as_str(), r)).collect();
        let mut visited = BTreeSet::new();
        let mut searched = Vec::new();
        let mut stack = vec!["targets"];
        while let Some(name) = stack.pop() {
            if searched.len() > MAX_DELEGATIONS {
                return Err(NotFound {
                    searched,
                    gave_up: true,
                });
            }
            if !visited.insert(name) {
                continue;
            }
            let Some(role) = by_name.get(name) else {
                continue;
            };
            searched.push(name.to_owned());
            if let Some(info) = role.targets.get(path) {
                return Ok(Found {
                    path: path.to_owned(),
                    role: role.role.clone(),
                    role_file: role.file.clone(),
                    info: info.clone(),
                });
            }
            let mut children = Vec::new();
            for d in role.delegates.iter().filter(|d| d.rule.allows(path)) {
                children.push(d.role.as_str());
                if d.terminating {
                    // ngclient drops every role still waiting, not only this one's siblings.
                    stack.clear();
                    break;
                }
            }
            stack.extend(children.into_iter().rev());
        }
        Err(NotFound {
            searched,
            gave_up: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::verify::paths::PathRule;
    use crate::repo::verify::report::{Delegation, TargetsSummary};
    use serde_json::json;

    fn role(name: &str, targets: &[&str], delegates: Vec<Delegation>) -> SearchRole {
        SearchRole {
            role: name.into(),
            file: format!("metadata/1.{name}.json"),
            targets: targets
                .iter()
                .map(|t| ((*t).to_owned(), json!({"from": name})))
                .collect(),
            delegates,
        }
    }

    fn to(name: &str, glob: &str, terminating: bool) -> Delegation {
        Delegation {
            role: name.into(),
            rule: PathRule::Paths(vec![glob.into()]),
            terminating,
        }
    }

    fn report(search: Vec<SearchRole>) -> Report {
        Report {
            dir: String::new(),
            checked_at: String::new(),
            trusted_root: String::new(),
            trusted_root_version: None,
            consistent_snapshot: true,
            roles: Vec::new(),
            targets: TargetsSummary::default(),
            problems: Vec::new(),
            notes: Vec::new(),
            search,
        }
    }

    #[test]
    fn the_first_role_in_preorder_depth_first_order_that_lists_the_path_wins() {
        let r = report(vec![
            role(
                "targets",
                &[],
                vec![to("a", "app/*", false), to("b", "app/*", false)],
            ),
            role("a", &[], vec![to("a-child", "app/*", false)]),
            role("a-child", &["app/x"], vec![]),
            role("b", &["app/x"], vec![]),
        ]);
        let found = r.find_target("app/x").unwrap();
        assert_eq!(found.role, "a-child", "a's subtree is searched before b");
        assert_eq!(found.info["from"], "a-child");
    }

    #[test]
    fn a_terminating_delegation_stops_the_search_below_it() {
        let r = report(vec![
            role(
                "targets",
                &[],
                vec![to("a", "app/*", true), to("b", "app/*", false)],
            ),
            role("a", &[], vec![]),
            role("b", &["app/x"], vec![]),
        ]);
        let miss = r.find_target("app/x").unwrap_err();
        assert_eq!(miss.searched, ["targets", "a"]);
        assert!(!miss.gave_up);
    }

    /// targets -> r1 -> ... -> r`len`, the last listing `x`.
    fn chain(len: usize) -> Report {
        let mut roles = vec![role("targets", &[], vec![to("r1", "*", false)])];
        for i in 1..len {
            roles.push(role(
                &format!("r{i}"),
                &[],
                vec![to(&format!("r{}", i + 1), "*", false)],
            ));
        }
        roles.push(role(&format!("r{len}"), &["x"], vec![]));
        report(roles)
    }

    #[test]
    fn the_search_gives_up_after_as_many_delegated_roles_as_ngclient() {
        let found = chain(MAX_DELEGATIONS).find_target("x").unwrap();
        assert_eq!(found.role, format!("r{MAX_DELEGATIONS}"));
        let miss = chain(MAX_DELEGATIONS + 1).find_target("x").unwrap_err();
        assert!(miss.gave_up);
        assert_eq!(
            miss.searched.len(),
            MAX_DELEGATIONS + 1,
            "targets and 32 more"
        );
    }

    #[test]
    fn delegations_whose_paths_do_not_match_are_not_followed() {
        let r = report(vec![
            role("targets", &[], vec![to("docs", "docs/*", false)]),
            role("docs", &["app/x"], vec![]),
        ]);
        let miss = r.find_target("app/x").unwrap_err();
        assert_eq!(miss.searched, ["targets"], "docs may not hold app/x");
        assert!(r.find_target("docs/app/x").is_err());
    }
}
