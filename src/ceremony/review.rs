//! What a ceremony changes, in words a keyholder can check before signing: the version,
//! the expiry, per role the keys added and removed (with where they came from) and the
//! threshold, any other field that changed, and the payload hash to compare aloud.

use serde::Serialize;
use serde_json::Value;

use super::error::CeremonyError;
use super::transcript::Transcript;
use crate::tuf::{Delegator, Key, Metadata};

/// A key as the review shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub keyid: String,
    pub keytype: String,
    pub scheme: String,
    /// The URI (and token) it was added from, when this ceremony added it.
    pub source: Option<String>,
}

/// One top-level role's change.
#[derive(Debug, Clone, Serialize)]
pub struct RoleChange {
    pub role: String,
    pub threshold_from: Option<u64>,
    pub threshold_to: u64,
    pub added: Vec<KeyInfo>,
    pub removed: Vec<KeyInfo>,
    pub unchanged: usize,
}

/// The whole review.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    pub version_from: Option<u64>,
    pub version_to: u64,
    pub expires_from: Option<String>,
    pub expires_to: String,
    pub roles: Vec<RoleChange>,
    /// Other top-level fields of `signed` that differ (name: from → to).
    pub other_changes: Vec<String>,
    pub payload_sha256: String,
}

/// What a review is computed from: the ceremony's files, passed in so that this file
/// needs nothing of `Ceremony` (the ceremony's `review()` hands them over).
pub(super) struct Inputs<'a> {
    pub proposed: &'a Metadata,
    pub trusted: Option<&'a Metadata>,
    pub transcript: &'a Transcript,
}

fn info(keyid: &str, key: Option<&Key>, c: &Inputs) -> KeyInfo {
    let source = c
        .transcript
        .entries
        .iter()
        .rev()
        .find(|e| e.action == "add-key" && e.details["keyid"] == keyid)
        .map(|e| {
            let mut s = e.details["uri"].as_str().unwrap_or_default().to_string();
            if let Some(t) = e.details["token"].as_str() {
                s.push_str(&format!(
                    " (token \"{t}\"{})",
                    e.details["serial"]
                        .as_str()
                        .map(|x| format!(", serial {x}"))
                        .unwrap_or_default()
                ));
            }
            s
        });
    KeyInfo {
        keyid: keyid.into(),
        keytype: key.map(|k| k.keytype.clone()).unwrap_or_default(),
        scheme: key.map(|k| k.scheme.clone()).unwrap_or_default(),
        source,
    }
}

pub(super) fn review(c: &Inputs) -> Result<Review, CeremonyError> {
    let new = Delegator::from_metadata(c.proposed)?;
    let old = match c.trusted {
        Some(t) => Some(Delegator::from_metadata(t)?),
        None => None,
    };
    let mut roles = Vec::new();
    for (name, role) in &new.roles {
        let before = old.as_ref().and_then(|o| o.roles.get(name));
        let old_ids: Vec<String> = before.map(|r| r.keyids.clone()).unwrap_or_default();
        let added = role
            .keyids
            .iter()
            .filter(|k| !old_ids.contains(k))
            .map(|k| info(k, new.keys.get(k), c))
            .collect();
        let removed = old_ids
            .iter()
            .filter(|k| !role.keyids.contains(k))
            .map(|k| info(k, old.as_ref().and_then(|o| o.keys.get(k)), c))
            .collect();
        roles.push(RoleChange {
            role: name.clone(),
            threshold_from: before.map(|r| r.threshold),
            threshold_to: role.threshold,
            added,
            removed,
            unchanged: role.keyids.iter().filter(|k| old_ids.contains(k)).count(),
        });
    }
    let mut other_changes = Vec::new();
    if let Some(t) = c.trusted {
        let (a, b) = (t.signed(), c.proposed.signed());
        let names: std::collections::BTreeSet<&String> = a
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
            .chain(b.as_object().into_iter().flat_map(|o| o.keys()))
            .collect();
        for n in names {
            if ["version", "expires", "keys", "roles"].contains(&n.as_str()) {
                continue;
            }
            let (x, y) = (a.get(n), b.get(n));
            if x != y {
                let show = |v: Option<&Value>| {
                    v.map(|v| v.to_string())
                        .unwrap_or_else(|| "(absent)".into())
                };
                other_changes.push(format!("{n}: {} → {}", show(x), show(y)));
            }
        }
    }
    Ok(Review {
        version_from: c.trusted.and_then(|t| t.version()),
        version_to: c.proposed.version().unwrap_or(0),
        expires_from: c.trusted.and_then(|t| t.expires().map(str::to_owned)),
        expires_to: c.proposed.expires().unwrap_or_default().to_string(),
        roles,
        other_changes,
        payload_sha256: c.proposed.payload_sha256(),
    })
}

impl Review {
    /// The review as text for people.
    pub fn render(&self) -> String {
        let mut s = String::new();
        match self.version_from {
            Some(v) => s.push_str(&format!("Root version {v} → {}\n", self.version_to)),
            None => s.push_str(&format!("New root, version {}\n", self.version_to)),
        }
        match &self.expires_from {
            Some(e) if *e != self.expires_to => {
                s.push_str(&format!("Expires: {e} → {}\n", self.expires_to))
            }
            _ => s.push_str(&format!("Expires: {}\n", self.expires_to)),
        }
        for r in &self.roles {
            let thr = match r.threshold_from {
                Some(f) if f != r.threshold_to => format!("threshold {f} → {}", r.threshold_to),
                _ => format!("threshold {}", r.threshold_to),
            };
            let total = r.unchanged + r.added.len();
            s.push_str(&format!("Role {}: {thr} of {total} key(s)", r.role));
            if r.added.is_empty() && r.removed.is_empty() {
                s.push_str(", keys unchanged\n");
                continue;
            }
            s.push('\n');
            for k in &r.added {
                s.push_str(&format!(
                    "  + {} {} {}\n",
                    k.keyid,
                    k.scheme,
                    k.source.as_deref().unwrap_or("")
                ));
            }
            for k in &r.removed {
                s.push_str(&format!(
                    "  - {} {} {}\n",
                    k.keyid,
                    k.scheme,
                    k.source.as_deref().unwrap_or("")
                ));
            }
        }
        for o in &self.other_changes {
            s.push_str(&format!("Changed: {o}\n"));
        }
        s.push_str(&format!(
            "Payload SHA-256 (compare aloud): {}\n",
            spaced(&self.payload_sha256)
        ));
        s
    }
}

/// The hash in groups of four, easier to read aloud.
pub fn spaced(hash: &str) -> String {
    hash.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
