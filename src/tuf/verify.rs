//! Threshold verification of a role by its delegator, as python-tuf's
//! `Metadata.verify_delegate` does it, but reporting every key instead of
//! stopping at the first failure.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::error::TufError;
use super::key::Key;
use super::metadata::Metadata;

/// A role as a delegator defines it: who may sign and how many must.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleKeys {
    pub keyids: Vec<String>,
    pub threshold: u64,
}

/// The part of a root or targets document that delegates trust: keys and roles.
#[derive(Debug, Clone)]
pub struct Delegator {
    /// `root` or `targets`.
    pub kind: String,
    pub keys: BTreeMap<String, Key>,
    pub roles: BTreeMap<String, RoleKeys>,
}

impl Delegator {
    /// Reads keys and roles from a root (`keys`, `roles`) or a targets document
    /// (`delegations.keys`, `delegations.roles`). Like python-tuf, every key must be of
    /// a supported type even if no role uses it.
    pub fn from_metadata(md: &Metadata) -> Result<Delegator, TufError> {
        let signed = md.signed();
        let kind = md.role_type().to_string();
        let schema = |path: &str, reason: &str| TufError::Schema {
            path: path.into(),
            reason: reason.into(),
        };
        let (keys_v, roles) = match kind.as_str() {
            "root" => {
                let keys = signed.get("keys").ok_or_else(|| schema("$.signed.keys", "a root must have `keys`"))?;
                let roles_v = signed
                    .get("roles")
                    .and_then(Value::as_object)
                    .ok_or_else(|| schema("$.signed.roles", "a root must have a `roles` object"))?;
                let mut roles = BTreeMap::new();
                for (name, r) in roles_v {
                    roles.insert(name.clone(), parse_role(&format!("$.signed.roles.{name}"), name, r)?);
                }
                for top in ["root", "targets", "snapshot", "timestamp"] {
                    if !roles.contains_key(top) {
                        return Err(schema("$.signed.roles", &format!("the root defines no `{top}` role")));
                    }
                }
                (keys, roles)
            }
            "targets" => {
                let Some(delegations) = signed.get("delegations") else {
                    return Ok(Delegator { kind, keys: BTreeMap::new(), roles: BTreeMap::new() });
                };
                if delegations.get("succinct_roles").is_some() {
                    return Err(schema(
                        "$.signed.delegations.succinct_roles",
                        "succinct (hash-bin) delegations are not supported by tufkey yet",
                    ));
                }
                let keys = delegations
                    .get("keys")
                    .ok_or_else(|| schema("$.signed.delegations.keys", "delegations must have `keys`"))?;
                let list = delegations
                    .get("roles")
                    .and_then(Value::as_array)
                    .ok_or_else(|| schema("$.signed.delegations.roles", "delegations must have a `roles` array"))?;
                let mut roles = BTreeMap::new();
                for (i, r) in list.iter().enumerate() {
                    let path = format!("$.signed.delegations.roles[{i}]");
                    let name = r
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| schema(&path, "a delegated role needs a string `name`"))?;
                    if roles.insert(name.to_string(), parse_role(&path, name, r)?).is_some() {
                        return Err(schema(&path, &format!("role `{name}` is delegated twice")));
                    }
                }
                (keys, roles)
            }
            other => {
                return Err(schema(
                    "$.signed._type",
                    &format!("a `{other}` document delegates nothing; pass a root or targets file as the delegator"),
                ))
            }
        };
        let keys_obj = keys_v
            .as_object()
            .ok_or_else(|| schema("keys", "`keys` must be an object mapping key ids to keys"))?;
        let mut keys = BTreeMap::new();
        for (keyid, k) in keys_obj {
            keys.insert(keyid.clone(), Key::from_value(keyid, k)?);
        }
        Ok(Delegator { kind, keys, roles })
    }

    /// Key ids listed under a different id than the one their content hashes to.
    /// python-tuf does not check this; tufkey reports it as a warning.
    pub fn keyid_mismatches(&self) -> Vec<(String, String)> {
        self.keys
            .iter()
            .filter_map(|(id, k)| {
                let computed = k.key_id();
                (computed != *id).then(|| (id.clone(), computed))
            })
            .collect()
    }

    /// Checks `md` against this delegator's definition of `role`.
    pub fn verify_role(&self, role: &str, md: &Metadata) -> Result<RoleVerification, TufError> {
        let def = self
            .roles
            .get(role)
            .ok_or_else(|| TufError::UnknownRole(role.into()))?;
        let payload = md.payload();
        let mut result = RoleVerification {
            role: role.to_string(),
            threshold: def.threshold,
            signed: Vec::new(),
            missing: Vec::new(),
            invalid: Vec::new(),
            unrelated: Vec::new(),
        };
        for keyid in &def.keyids {
            let sig = md.signatures().iter().find(|s| &s.keyid == keyid);
            let key = self.keys.get(keyid);
            match (key, sig) {
                (_, None) => result.missing.push(keyid.clone()),
                (_, Some(s)) if s.sig.is_empty() => result.missing.push(keyid.clone()),
                (None, Some(_)) => result.invalid.push(InvalidSignature {
                    keyid: keyid.clone(),
                    reason: "the delegator lists this key id for the role but has no such key"
                        .into(),
                }),
                (Some(key), Some(s)) => match key.verify_hex(&payload, &s.sig) {
                    Ok(()) => result.signed.push(keyid.clone()),
                    Err(reason) => result.invalid.push(InvalidSignature {
                        keyid: keyid.clone(),
                        reason,
                    }),
                },
            }
        }
        result.unrelated = md
            .signatures()
            .iter()
            .filter(|s| !def.keyids.contains(&s.keyid))
            .map(|s| s.keyid.clone())
            .collect();
        Ok(result)
    }
}

fn parse_role(path: &str, name: &str, r: &Value) -> Result<RoleKeys, TufError> {
    let schema = |reason: &str| TufError::Schema {
        path: path.into(),
        reason: reason.into(),
    };
    let keyids_v = r
        .get("keyids")
        .and_then(Value::as_array)
        .ok_or_else(|| schema("`keyids` must be an array"))?;
    let mut keyids = Vec::with_capacity(keyids_v.len());
    for k in keyids_v {
        let k = k
            .as_str()
            .ok_or_else(|| schema("`keyids` must hold strings"))?;
        if keyids.iter().any(|x: &String| x == k) {
            return Err(TufError::DuplicateRoleKey {
                role: name.into(),
                keyid: k.into(),
            });
        }
        keyids.push(k.to_string());
    }
    let threshold = r
        .get("threshold")
        .and_then(Value::as_u64)
        .filter(|t| *t >= 1)
        .ok_or_else(|| schema("`threshold` must be an integer of at least 1"))?;
    Ok(RoleKeys { keyids, threshold })
}

/// A signature that is present but does not count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidSignature {
    pub keyid: String,
    pub reason: String,
}

/// The outcome of checking one role's threshold; every key id is counted once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleVerification {
    pub role: String,
    pub threshold: u64,
    /// Role keys whose signature verifies.
    pub signed: Vec<String>,
    /// Role keys with no signature (or an empty one).
    pub missing: Vec<String>,
    /// Role keys whose signature is present but does not verify.
    pub invalid: Vec<InvalidSignature>,
    /// Signatures by keys that are not keys of this role (ignored).
    pub unrelated: Vec<String>,
}

impl RoleVerification {
    /// Whether the threshold is met.
    pub fn verified(&self) -> bool {
        self.signed.len() as u64 >= self.threshold
    }
}
