//! Notary's trust data on disk: `tuf/<gun>/metadata/{root,targets,snapshot,timestamp}.json`
//! (delegations as `metadata/targets/<name>.json`), and in 0.1 the pinned root
//! certificates `trusted_certificates/<gun>/<id>.crt`. Files are read as they are;
//! checking them is `verify.rs`'s job.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::Value;

use super::cert::NotaryCert;
use super::error::NotaryError;
use super::pubkey::NotaryKey;

/// One signature as Notary writes it (`sig` in base64, `method` naming the scheme).
#[derive(Debug, Clone)]
pub struct NotarySig {
    pub keyid: String,
    pub method: String,
    pub sig: Vec<u8>,
}

/// A metadata file: its bytes (snapshot and timestamp hash them) and its parts.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub signed: Value,
    pub signatures: Vec<NotarySig>,
}

impl Envelope {
    /// Reads `path`; `None` when the file does not exist.
    pub fn read(path: &Path) -> Result<Option<Envelope>, NotaryError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(NotaryError::io(path)(e)),
        };
        let bad = |reason: String| NotaryError::Metadata {
            path: path.into(),
            reason,
        };
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        let signed = v
            .get("signed")
            .cloned()
            .ok_or_else(|| bad("no `signed` object: not a Notary metadata file".into()))?;
        let mut signatures = Vec::new();
        for s in v
            .get("signatures")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let field = |n: &str| {
                s.get(n)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let sig = base64::engine::general_purpose::STANDARD
                .decode(field("sig"))
                .map_err(|e| {
                    bad(format!(
                        "a signature by {} is not base64: {e}",
                        field("keyid")
                    ))
                })?;
            signatures.push(NotarySig {
                keyid: field("keyid"),
                method: field("method"),
                sig,
            });
        }
        Ok(Some(Envelope {
            path: path.into(),
            bytes,
            signed,
            signatures,
        }))
    }

    /// `signed._type` (Notary writes `Root`, `Targets`, `Snapshot`, `Timestamp`).
    pub fn kind(&self) -> &str {
        self.signed
            .get("_type")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn version(&self) -> u64 {
        self.signed
            .get("version")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }

    pub fn expires(&self) -> &str {
        self.signed
            .get("expires")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// Every GUN with trust data under `dir` (its `tuf/` folder), sorted.
pub fn guns(dir: &Path) -> Vec<String> {
    let tuf = dir.join("tuf");
    let mut out = Vec::new();
    find_metadata_dirs(&tuf, &tuf, &mut out);
    out.sort();
    out
}

fn find_metadata_dirs(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if !p.is_dir() {
            continue;
        }
        if e.file_name() == "metadata" && p.join("root.json").is_file() {
            if let Ok(rel) = dir.strip_prefix(base) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        } else {
            find_metadata_dirs(base, &p, out);
        }
    }
}

/// The GUN and metadata folder to work on: `dir` itself when it holds root.json (then
/// `gun` must be given), else `dir/tuf/<gun>/metadata`, with `gun` optional when
/// there is exactly one.
pub fn locate(dir: &Path, gun: Option<&str>) -> Result<(String, PathBuf), NotaryError> {
    if dir.join("root.json").is_file() {
        return match gun {
            Some(g) => Ok((g.to_string(), dir.to_path_buf())),
            None => Err(NotaryError::Usage(format!(
                "{} is a metadata folder; name its GUN with --gun (Notary's root certificate names it too)",
                dir.display()
            ))),
        };
    }
    let all = guns(dir);
    let gun = match (gun, all.len()) {
        (Some(g), _) => g.to_string(),
        (None, 1) => all[0].clone(),
        (None, 0) => {
            return Err(NotaryError::Usage(format!(
                "no Notary trust data under {} (expected tuf/<gun>/metadata/root.json)",
                dir.display()
            )))
        }
        (None, _) => {
            return Err(NotaryError::Usage(format!(
                "{} holds trust data for several GUNs ({}); choose one with --gun",
                dir.display(),
                all.join(", ")
            )))
        }
    };
    let md = dir.join("tuf").join(&gun).join("metadata");
    if !md.join("root.json").is_file() {
        return Err(NotaryError::Usage(format!(
            "no trust data for GUN {gun} under {} (found: {})",
            dir.display(),
            if all.is_empty() {
                "none".to_string()
            } else {
                all.join(", ")
            }
        )));
    }
    Ok((gun, md))
}

/// (root key id without its certificate, GUN) for the root keys of every GUN's root.json,
/// so that root key files of the old layouts (which carry no GUN) can be named.
pub fn root_key_guns(dir: &Path) -> Vec<(String, String)> {
    let base = if dir.join("private").is_dir() {
        dir.to_path_buf()
    } else {
        dir.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let mut out = Vec::new();
    for gun in guns(&base) {
        let path = base.join("tuf").join(&gun).join("metadata/root.json");
        let Ok(Some(root)) = Envelope::read(&path) else {
            continue;
        };
        let ids = root
            .signed
            .pointer("/roles/root/keyids")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for id in ids.iter().filter_map(Value::as_str) {
            if let Some(k) = root.signed.pointer(&format!("/keys/{id}")) {
                if let Ok(c) = NotaryKey::from_value(k).and_then(|k| k.canonical_id()) {
                    out.push((c, gun.clone()));
                }
            }
        }
    }
    out
}

/// Root certificates pinned for `gun` (Notary 0.1's `trusted_certificates/<gun>/`).
pub fn pinned_certs(dir: &Path, gun: &str) -> Result<Vec<(PathBuf, NotaryCert)>, NotaryError> {
    let folder = dir.join("trusted_certificates").join(gun);
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "crt") {
            let bytes = std::fs::read(&p).map_err(NotaryError::io(&p))?;
            let cert = NotaryCert::from_pem(&bytes).map_err(|reason| NotaryError::Metadata {
                path: p.clone(),
                reason,
            })?;
            out.push((p, cert));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
