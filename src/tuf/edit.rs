//! Edits of root roles and targets delegations, on the `signed` JSON itself so that
//! every field tufkey does not know stays as it was. Callers clear the signatures
//! (an edited document is a new payload) and bump the version where that applies.

use serde_json::{json, Map, Value};

use super::error::TufError;
use super::key::Key;

fn schema(path: &str, reason: impl Into<String>) -> TufError {
    TufError::Schema {
        path: path.into(),
        reason: reason.into(),
    }
}

/// Which part of a document holds keys and roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// `signed.keys` and `signed.roles` (a map) of a root.
    Root,
    /// `signed.delegations.keys` and `signed.delegations.roles` (a list) of targets.
    Delegations,
}

impl Holder {
    /// The holder for a document's `_type`.
    pub fn of(signed: &Value) -> Result<Holder, TufError> {
        match signed.get("_type").and_then(Value::as_str) {
            Some("root") => Ok(Holder::Root),
            Some("targets") => Ok(Holder::Delegations),
            other => Err(schema(
                "$.signed._type",
                format!("{other:?} has no keys or roles to edit; use a root or targets file"),
            )),
        }
    }
}

fn container(signed: &mut Value, holder: Holder) -> Result<&mut Map<String, Value>, TufError> {
    let obj = signed
        .as_object_mut()
        .ok_or_else(|| schema("$.signed", "must be an object"))?;
    match holder {
        Holder::Root => Ok(obj),
        Holder::Delegations => {
            let d = obj
                .entry("delegations")
                .or_insert_with(|| json!({"keys": {}, "roles": []}));
            d.as_object_mut()
                .ok_or_else(|| schema("$.signed.delegations", "must be an object"))
        }
    }
}

fn keys_mut(signed: &mut Value, holder: Holder) -> Result<&mut Map<String, Value>, TufError> {
    container(signed, holder)?
        .entry("keys")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| schema("keys", "must be an object"))
}

/// The role object `name` (a member of `roles` in a root, an element of
/// `delegations.roles` in targets).
pub fn role_mut<'a>(
    signed: &'a mut Value,
    holder: Holder,
    name: &str,
) -> Result<&'a mut Map<String, Value>, TufError> {
    let c = container(signed, holder)?;
    let role = match holder {
        Holder::Root => c
            .get_mut("roles")
            .and_then(Value::as_object_mut)
            .and_then(|r| r.get_mut(name)),
        Holder::Delegations => c
            .get_mut("roles")
            .and_then(Value::as_array_mut)
            .and_then(|list| {
                list.iter_mut()
                    .find(|r| r.get("name").and_then(Value::as_str) == Some(name))
            }),
    };
    role.and_then(Value::as_object_mut)
        .ok_or_else(|| TufError::UnknownRole(name.into()))
}

fn keyids_mut<'a>(
    role: &'a mut Map<String, Value>,
    name: &str,
) -> Result<&'a mut Vec<Value>, TufError> {
    role.entry("keyids")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or_else(|| schema(name, "`keyids` must be an array"))
}

/// Adds `key` to role `name`. Returns the key id. Adding a key the role already has is an
/// error, and so is a public key that `keys` already holds under another key id: a
/// threshold counts distinct keys, and two ids for one key only hide that.
pub fn add_key(
    signed: &mut Value,
    holder: Holder,
    name: &str,
    key: &Key,
) -> Result<String, TufError> {
    let keyid = key.key_id();
    let identity = key.public_identity();
    for (existing, v) in keys_mut(signed, holder)?.iter() {
        let same = Key::from_value(existing, v).is_ok_and(|k| k.public_identity() == identity);
        if same && *existing != keyid {
            return Err(TufError::SameKeyOtherId {
                keyid,
                existing: existing.clone(),
            });
        }
    }
    let role = role_mut(signed, holder, name)?;
    let ids = keyids_mut(role, name)?;
    if ids.iter().any(|k| k.as_str() == Some(&keyid)) {
        return Err(schema(
            name,
            format!("role `{name}` already has key {keyid}"),
        ));
    }
    ids.push(Value::String(keyid.clone()));
    keys_mut(signed, holder)?
        .entry(keyid.clone())
        .or_insert_with(|| key.to_value());
    Ok(keyid)
}

/// Removes key `keyid` from role `name`, and from `keys` once no role uses it.
pub fn remove_key(
    signed: &mut Value,
    holder: Holder,
    name: &str,
    keyid: &str,
) -> Result<(), TufError> {
    let role = role_mut(signed, holder, name)?;
    let ids = keyids_mut(role, name)?;
    let before = ids.len();
    ids.retain(|k| k.as_str() != Some(keyid));
    if ids.len() == before {
        return Err(schema(name, format!("role `{name}` has no key {keyid}")));
    }
    drop_unused_keys(signed, holder)
}

fn drop_unused_keys(signed: &mut Value, holder: Holder) -> Result<(), TufError> {
    let used: Vec<String> = {
        let c = container(signed, holder)?;
        let roles: Vec<&Value> = match c.get("roles") {
            Some(Value::Object(m)) => m.values().collect(),
            Some(Value::Array(a)) => a.iter().collect(),
            _ => Vec::new(),
        };
        roles
            .iter()
            .filter_map(|r| r.get("keyids").and_then(Value::as_array))
            .flatten()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect()
    };
    keys_mut(signed, holder)?.retain(|id, _| used.contains(id));
    Ok(())
}

/// Sets role `name`'s threshold (at least 1).
pub fn set_threshold(
    signed: &mut Value,
    holder: Holder,
    name: &str,
    threshold: u64,
) -> Result<(), TufError> {
    if threshold == 0 {
        return Err(schema(name, "a threshold must be at least 1"));
    }
    role_mut(signed, holder, name)?.insert("threshold".into(), json!(threshold));
    Ok(())
}

/// Sets `expires` (already in TUF's format).
pub fn set_expires(signed: &mut Value, expires: &str) -> Result<(), TufError> {
    super::time::parse_expires(expires)?;
    signed
        .as_object_mut()
        .ok_or_else(|| schema("$.signed", "must be an object"))?
        .insert("expires".into(), Value::String(expires.into()));
    Ok(())
}

/// Sets `version`.
pub fn set_version(signed: &mut Value, version: u64) -> Result<(), TufError> {
    signed
        .as_object_mut()
        .ok_or_else(|| schema("$.signed", "must be an object"))?
        .insert("version".into(), json!(version));
    Ok(())
}

/// Adds a delegated role to a targets document.
pub fn add_delegation(
    signed: &mut Value,
    name: &str,
    keys: &[Key],
    threshold: u64,
    paths: &[String],
    terminating: bool,
) -> Result<(), TufError> {
    if role_mut(signed, Holder::Delegations, name).is_ok() {
        return Err(schema(
            "$.signed.delegations.roles",
            format!("role `{name}` is already delegated"),
        ));
    }
    if threshold == 0 || threshold as usize > keys.len() {
        return Err(schema(
            name,
            format!(
                "threshold {threshold} needs between 1 and {} keys",
                keys.len()
            ),
        ));
    }
    let c = container(signed, Holder::Delegations)?;
    let roles = c
        .entry("roles")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or_else(|| schema("$.signed.delegations.roles", "must be an array"))?;
    roles.push(json!({"name": name, "keyids": [], "threshold": threshold, "paths": paths, "terminating": terminating}));
    for k in keys {
        add_key(signed, Holder::Delegations, name, k)?;
    }
    Ok(())
}

/// Removes a delegated role and the keys only it used.
pub fn remove_delegation(signed: &mut Value, name: &str) -> Result<(), TufError> {
    let c = container(signed, Holder::Delegations)?;
    let roles = c
        .get_mut("roles")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| TufError::UnknownRole(name.into()))?;
    let before = roles.len();
    roles.retain(|r| r.get("name").and_then(Value::as_str) != Some(name));
    if roles.len() == before {
        return Err(TufError::UnknownRole(name.into()));
    }
    drop_unused_keys(signed, Holder::Delegations)
}

/// A root version 1 with the four top-level roles, no keys, threshold 1 each.
pub fn new_root(expires: &str) -> Value {
    let role = || json!({"keyids": [], "threshold": 1});
    json!({
        "_type": "root",
        "spec_version": "1.0.31",
        "version": 1,
        "expires": expires,
        "consistent_snapshot": true,
        "keys": {},
        "roles": {"root": role(), "targets": role(), "snapshot": role(), "timestamp": role()},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[n; 32]);
        super::super::PublicKey::Ed25519(sk.verifying_key()).to_tuf_key()
    }

    #[test]
    fn keys_are_shared_between_roles_and_dropped_when_unused() {
        let mut root = new_root("2030-01-01T00:00:00Z");
        let id = add_key(&mut root, Holder::Root, "root", &key(1)).unwrap();
        add_key(&mut root, Holder::Root, "targets", &key(1)).unwrap();
        assert!(add_key(&mut root, Holder::Root, "root", &key(1)).is_err());
        remove_key(&mut root, Holder::Root, "root", &id).unwrap();
        assert!(root["keys"].get(&id).is_some(), "still used by targets");
        remove_key(&mut root, Holder::Root, "targets", &id).unwrap();
        assert!(root["keys"].get(&id).is_none());
        assert!(matches!(
            add_key(&mut root, Holder::Root, "mirror", &key(2)),
            Err(TufError::UnknownRole(_))
        ));
    }

    #[test]
    fn a_public_key_already_listed_under_another_key_id_is_refused_naming_that_id() {
        let mut root = new_root("2030-01-01T00:00:00Z");
        let id = add_key(&mut root, Holder::Root, "root", &key(1)).unwrap();
        // The same public key with an extra field hashes to another key id.
        let mut other = key(1);
        other.extra.insert("x-note".into(), json!("same key"));
        assert_ne!(other.key_id(), id);
        let before = root.clone();
        let err = add_key(&mut root, Holder::Root, "targets", &other).unwrap_err();
        assert!(matches!(&err, TufError::SameKeyOtherId { existing, .. } if *existing == id));
        assert!(err.to_string().contains(&id) && err.to_string().contains(&other.key_id()));
        assert_eq!(root, before, "nothing changed");
        // The same key under its own id may serve another role.
        add_key(&mut root, Holder::Root, "targets", &key(1)).unwrap();
    }

    #[test]
    fn delegations_are_added_edited_and_removed() {
        let mut t = json!({"_type": "targets", "version": 1, "targets": {}, "x-keep": 1});
        add_delegation(
            &mut t,
            "team",
            &[key(1), key(2)],
            2,
            &["team/*".into()],
            false,
        )
        .unwrap();
        assert!(add_delegation(&mut t, "team", &[key(3)], 1, &[], false).is_err());
        set_threshold(&mut t, Holder::Delegations, "team", 1).unwrap();
        remove_key(&mut t, Holder::Delegations, "team", &key(1).key_id()).unwrap();
        assert_eq!(t["delegations"]["keys"].as_object().unwrap().len(), 1);
        assert_eq!(t["delegations"]["roles"][0]["threshold"], 1);
        remove_delegation(&mut t, "team").unwrap();
        assert_eq!(t["delegations"]["keys"], json!({}));
        assert_eq!(t["x-keep"], 1);
    }
}
