//! `notary migrate`: a Notary repository's targets and keys carried into the start of a
//! TUF 1.0 repository, for the team to re-establish trust with keys in hardware.
//!
//! ```text
//! OUT/ceremony/            a root ceremony (as `tufkey ceremony init` starts one), version 1,
//!                          with Notary's root, targets and snapshot keys and thresholds;
//!                          timestamp is left empty (Notary's server held that key)
//! OUT/targets.json         the targets role's targets in TUF 1.0 form (hex hashes, custom
//!                          kept): a manifest for `tufkey repo add REPO --manifest`
//! OUT/delegated/<r>.json   the same for each delegated role that had targets
//! OUT/migration.json       where it came from: GUN, checked time, source files' SHA-256,
//!                          key ids (Notary and TUF), target counts
//! ```
//!
//! The trust data is verified first (`verify.rs`): tampered or unverifiable data is
//! never migrated. Nothing is signed here; every file is new (temp file, fsync, rename).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::error::NotaryError;
use super::pubkey::NotaryKey;
use super::trust::{self, Envelope};
use super::verify;
use crate::ceremony::{Ceremony, Provenance};
use crate::fsutil;

/// What to migrate and how.
pub struct MigrateOptions<'a> {
    pub dir: &'a Path,
    pub gun: Option<&'a str>,
    pub out: &'a Path,
    /// The time the trust data is checked at (see `verify`).
    pub at: DateTime<Utc>,
    /// The new root's expiry, TUF format.
    pub root_expires: &'a str,
    /// Put Notary's keys into the ceremony (false: roles start empty).
    pub keep_keys: bool,
    pub actor: &'a str,
}

/// A key carried into the ceremony.
#[derive(Debug, Clone, Serialize)]
pub struct CarriedKey {
    pub role: String,
    pub notary_id: String,
    /// The id Notary's key store names the private key file by (for a root certificate:
    /// the id of the certified key), as `notary import-key` takes it.
    pub key_file_id: String,
    pub tuf_id: String,
    pub keytype: String,
}

/// What `migrate` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Migration {
    pub gun: String,
    pub ceremony: PathBuf,
    /// Manifest file per role (`targets`, then delegated roles by Notary name).
    pub manifests: BTreeMap<String, PathBuf>,
    pub targets: usize,
    pub keys: Vec<CarriedKey>,
    pub thresholds: BTreeMap<String, u64>,
    pub notes: Vec<String>,
    pub record: PathBuf,
}

/// Notary's `{length, hashes (base64), custom}` as TUF 1.0's `{length, hashes (hex), custom}`.
pub fn tuf_target(path: &str, entry: &Value, file: &Path) -> Result<Value, NotaryError> {
    let bad = |reason: String| NotaryError::Metadata {
        path: file.into(),
        reason: format!("target {path}: {reason}"),
    };
    let length = entry
        .get("length")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("no `length`".into()))?;
    let mut hashes = Map::new();
    for (alg, b64) in entry
        .get("hashes")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let raw = b64
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .ok_or_else(|| bad(format!("hash {alg} is not base64")))?;
        hashes.insert(alg.clone(), Value::String(hex::encode(raw)));
    }
    if hashes.is_empty() {
        return Err(bad("no hashes".into()));
    }
    let mut out = json!({"length": length, "hashes": hashes});
    if let Some(c) = entry.get("custom").filter(|c| !c.is_null()) {
        out["custom"] = c.clone();
    }
    Ok(out)
}

fn ensure_empty(out: &Path) -> Result<(), NotaryError> {
    match std::fs::read_dir(out) {
        Ok(mut d) => {
            if d.next().is_some() {
                return Err(NotaryError::Usage(format!(
                    "{} is not empty; migrate writes into a new or empty folder",
                    out.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out).map_err(NotaryError::io(out))
        }
        Err(e) => Err(NotaryError::io(out)(e)),
    }
}

fn write_json(path: &Path, v: &Value) -> Result<(), NotaryError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(NotaryError::io(parent))?;
    }
    let mut bytes = serde_json::to_vec_pretty(v).unwrap_or_default();
    bytes.push(b'\n');
    fsutil::create_new_atomic(path, &bytes, Some(0o644)).map_err(NotaryError::io(path))
}

/// File name of a delegated role's manifest: Notary's `targets/a/b` → `a-b.json`.
fn manifest_name(role: &str) -> String {
    format!(
        "{}.json",
        role.trim_start_matches("targets/").replace('/', "-")
    )
}

/// Migrates (see the module docs). Refuses trust data that does not verify at `at`.
pub fn migrate(o: &MigrateOptions<'_>) -> Result<Migration, NotaryError> {
    let report = verify::verify(o.dir, o.gun, o.at)?;
    if !report.verified() {
        return Err(NotaryError::Usage(format!(
            "the Notary trust data for {} does not verify, so it is not migrated:\n  {}",
            report.gun,
            report.problems.join("\n  ")
        )));
    }
    let (gun, md) = trust::locate(o.dir, Some(&report.gun))?;
    ensure_empty(o.out)?;

    // Targets, per role, in TUF 1.0 form.
    let mut per_role: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (path, role) in &report.targets {
        let file = md.join(format!("{role}.json"));
        let env = Envelope::read(&file)?.ok_or_else(|| NotaryError::Metadata {
            path: file.clone(),
            reason: "disappeared while migrating".into(),
        })?;
        let entry = env
            .signed
            .pointer(&format!(
                "/targets/{}",
                path.replace('~', "~0").replace('/', "~1")
            ))
            .cloned()
            .unwrap_or(Value::Null);
        per_role
            .entry(role.clone())
            .or_default()
            .insert(path.clone(), tuf_target(path, &entry, &file)?);
    }
    per_role.entry("targets".into()).or_default();
    let mut manifests = BTreeMap::new();
    for (role, targets) in &per_role {
        let p = if role == "targets" {
            o.out.join("targets.json")
        } else {
            o.out.join("delegated").join(manifest_name(role))
        };
        write_json(&p, &Value::Object(targets.clone()))?;
        manifests.insert(role.clone(), p);
    }

    // The ceremony, with Notary's keys and thresholds.
    let root = Envelope::read(&md.join("root.json"))?.ok_or_else(|| NotaryError::Metadata {
        path: md.join("root.json"),
        reason: "missing".into(),
    })?;
    let cdir = o.out.join("ceremony");
    let mut c = Ceremony::init(&cdir, None, o.root_expires, false, o.actor)?;
    let mut keys = Vec::new();
    let mut thresholds = BTreeMap::new();
    let mut notes = Vec::new();
    for role in ["root", "targets", "snapshot"] {
        let def = root.signed.pointer(&format!("/roles/{role}"));
        let ids: Vec<String> = verify::strings(def.and_then(|d| d.get("keyids")));
        let threshold = def
            .and_then(|d| d.get("threshold"))
            .and_then(Value::as_u64)
            .unwrap_or(1);
        if !o.keep_keys {
            continue;
        }
        for id in &ids {
            let Some(k) = root
                .signed
                .pointer(&format!("/keys/{id}"))
                .and_then(|v| NotaryKey::from_value(v).ok())
            else {
                continue;
            };
            let public = k.public_key().map_err(|reason| NotaryError::Metadata {
                path: root.path.clone(),
                reason: format!("{role} key {id}: {reason}"),
            })?;
            let tuf_key = public.to_tuf_key();
            let from = Provenance {
                uri: format!("notary:{gun}#{id}"),
                token: None,
                serial: None,
            };
            c.add_key(role, &tuf_key, &from, None, o.actor)?;
            keys.push(CarriedKey {
                role: role.into(),
                notary_id: id.clone(),
                key_file_id: k.canonical_id().unwrap_or_else(|_| id.clone()),
                tuf_id: tuf_key.key_id(),
                keytype: k.keytype.clone(),
            });
        }
        if threshold != 1 {
            c.set_threshold(role, threshold, o.actor)?;
        }
        thresholds.insert(role.to_string(), threshold);
    }
    notes.push(format!(
        "timestamp: Notary's server held the timestamp key for {gun}; add a new one with `tufkey ceremony add-key {} --role timestamp --key URI`",
        cdir.display()
    ));
    if report.targets.values().any(|r| r != "targets") {
        notes.push("delegated roles: recreate each delegation with `tufkey delegation add` and its keys, then `tufkey repo add REPO --manifest OUT/delegated/<role>.json --role <role>`".into());
    }
    notes.extend(report.warnings.iter().cloned());

    let mut sources = Map::new();
    for name in ["root", "targets", "snapshot", "timestamp"] {
        let p = md.join(format!("{name}.json"));
        if let Ok(bytes) = std::fs::read(&p) {
            sources.insert(
                name.into(),
                json!({"file": p.display().to_string(), "sha256": hex::encode(Sha256::digest(&bytes))}),
            );
        }
    }
    let record = o.out.join("migration.json");
    write_json(
        &record,
        &json!({
            "gun": gun,
            "from": o.dir.display().to_string(),
            "checked_at": report.at,
            "notary_metadata": sources,
            "versions": report.roles.iter().map(|r| (r.role.clone(), json!(r.version))).collect::<Map<_, _>>(),
            "keys": keys,
            "thresholds": thresholds,
            "targets": report.targets,
            "manifests": manifests,
            "notes": notes,
        }),
    )?;
    drop(c);
    Ok(Migration {
        gun,
        ceremony: cdir,
        manifests,
        targets: report.targets.len(),
        keys,
        thresholds,
        notes,
        record,
    })
}
