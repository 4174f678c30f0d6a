//! Threshold verification of a role by its delegator, as python-tuf's
//! `Metadata.verify_delegate` does it, but reporting every key instead of
//! stopping at the first failure.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::error::TufError;
use super::key::Key;
use super::metadata::{Metadata, Signature};

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
        Delegator::from_signed(md.signed())
    }

    /// As [`Delegator::from_metadata`], from a `signed` object (or the part of one that
    /// holds `_type`, `keys`, `roles` and `delegations`).
    pub fn from_signed(signed: &Value) -> Result<Delegator, TufError> {
        let kind = signed
            .get("_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
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
        self.verify_signatures(role, &md.payload(), md.signatures())
    }

    /// Checks `signatures` over `payload` (the canonical bytes of the role's `signed`)
    /// against this delegator's definition of `role`.
    pub fn verify_signatures(
        &self,
        role: &str,
        payload: &[u8],
        signatures: &[Signature],
    ) -> Result<RoleVerification, TufError> {
        let def = self
            .roles
            .get(role)
            .ok_or_else(|| TufError::UnknownRole(role.into()))?;
        let mut result = RoleVerification {
            role: role.to_string(),
            threshold: def.threshold,
            signed: Vec::new(),
            missing: Vec::new(),
            invalid: Vec::new(),
            unrelated: Vec::new(),
            same_key: Vec::new(),
        };
        // Public key material of each key id already counted, to count each key once.
        let mut counted: Vec<(String, String)> = Vec::new();
        for keyid in &def.keyids {
            let sig = signatures.iter().find(|s| &s.keyid == keyid);
            let key = self.keys.get(keyid);
            match (key, sig) {
                (_, None) => result.missing.push(keyid.clone()),
                (_, Some(s)) if s.sig.is_empty() => result.missing.push(keyid.clone()),
                (None, Some(_)) => result.invalid.push(InvalidSignature {
                    keyid: keyid.clone(),
                    reason: "the delegator lists this key id for the role but has no such key"
                        .into(),
                }),
                (Some(key), Some(s)) => match key.verify_hex(payload, &s.sig) {
                    Ok(()) => {
                        let identity = key.public_identity();
                        match counted.iter().find(|(_, i)| *i == identity) {
                            Some((first, _)) => result.same_key.push(SameKey {
                                keyid: keyid.clone(),
                                same_as: first.clone(),
                            }),
                            None => counted.push((keyid.clone(), identity)),
                        }
                        result.signed.push(keyid.clone());
                    }
                    Err(reason) => result.invalid.push(InvalidSignature {
                        keyid: keyid.clone(),
                        reason,
                    }),
                },
            }
        }
        result.unrelated = signatures
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
    /// Valid signatures by a key id whose public key already signed under another key id
    /// of the role. They are in `signed` (python-tuf counts them) but count once here.
    pub same_key: Vec<SameKey>,
}

/// One public key listed (and signing) under two key ids of a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SameKey {
    pub keyid: String,
    /// The key id under which the same public key was counted first.
    pub same_as: String,
}

impl RoleVerification {
    /// The signatures that count: one per distinct public key. python-tuf counts key
    /// ids, so one key listed under two ids would meet a threshold of 2 there; the
    /// point of a threshold is that several keys (and keyholders) agree, so tufkey
    /// counts keys.
    pub fn counted(&self) -> usize {
        self.signed.len() - self.same_key.len()
    }

    /// Whether the threshold is met by distinct public keys.
    pub fn verified(&self) -> bool {
        self.counted() as u64 >= self.threshold
    }

    /// One sentence per key id that signed with a key already counted, naming both ids.
    pub fn same_key_notes(&self) -> Vec<String> {
        self.same_key
            .iter()
            .map(|d| {
                format!(
                    "key ids {} and {} are the same public key; it counts once toward the threshold of `{}` (list each keyholder's key once)",
                    d.same_as, d.keyid, self.role
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuf::key::PublicKey;
    use crate::tuf::metadata::Signature;
    use ed25519_dalek::Signer;
    use serde_json::json;

    /// A root whose root role lists `ids` (each naming the key of the same index in
    /// `keys`), threshold 2, signed by every listed id with its key.
    fn root_signed_by(keys: &[(&str, &ed25519_dalek::SigningKey)]) -> Metadata {
        let mut key_map = serde_json::Map::new();
        for (id, sk) in keys {
            let k = PublicKey::Ed25519(sk.verifying_key()).to_tuf_key();
            key_map.insert(id.to_string(), k.to_value());
        }
        let ids: Vec<&str> = keys.iter().map(|(id, _)| *id).collect();
        let role = json!({"keyids": ids, "threshold": 2});
        let mut md = Metadata::new(json!({
            "_type": "root", "version": 1, "spec_version": "1.0.31",
            "expires": "2030-01-01T00:00:00Z", "consistent_snapshot": true,
            "keys": key_map,
            "roles": {"root": role, "targets": role, "snapshot": role, "timestamp": role},
        }))
        .unwrap();
        let payload = md.payload();
        for (id, sk) in keys {
            md.set_signature(Signature::new(*id, &sk.sign(&payload).to_bytes()));
        }
        md
    }

    #[test]
    fn one_key_under_two_key_ids_does_not_meet_a_threshold_of_two() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let md = root_signed_by(&[("aa", &sk), ("bb", &sk)]);
        let r = Delegator::from_metadata(&md)
            .unwrap()
            .verify_role("root", &md)
            .unwrap();
        // Both signatures are valid, as python-tuf sees them, but they are one key.
        assert_eq!(r.signed, ["aa", "bb"]);
        assert_eq!(r.counted(), 1);
        assert!(!r.verified());
        let notes = r.same_key_notes();
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].contains("aa") && notes[0].contains("bb"),
            "{notes:?}"
        );
    }

    #[test]
    fn two_distinct_keys_meet_a_threshold_of_two() {
        let a = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let b = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
        let md = root_signed_by(&[("aa", &a), ("bb", &b)]);
        let r = Delegator::from_metadata(&md)
            .unwrap()
            .verify_role("root", &md)
            .unwrap();
        assert_eq!(r.counted(), 2);
        assert!(r.verified());
        assert!(r.same_key.is_empty());
    }
}
