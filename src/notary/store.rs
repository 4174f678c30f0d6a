//! A Notary key store on disk, in every layout Notary used:
//!
//! ```text
//! private/root_keys/<keyid>_root.key          0.1: role in the file name
//! private/tuf_keys/<gun>/<keyid>_<role>.key
//! private/root_keys/<keyid>.key               0.2–0.3: `role` PEM header
//! private/tuf_keys/<gun>/<keyid>.key
//! private/<keyid>.key                         0.4 and later: `role` and `gun` headers
//! ```
//!
//! Listing needs no passphrase: role, GUN and key id come from headers and paths. Root
//! keys of the old layouts carry no GUN; it is taken from the trust data beside them
//! (the root.json whose root certificate holds that key), when there is some.

use std::path::{Path, PathBuf};

use super::error::NotaryError;
use super::pemfile::{self, PemBlock};
use super::privkey::{self, ReadFailure};
use super::pubkey::NotaryKey;
use super::trust;
use crate::keys::file::SoftKey;
use crate::keys::Secret;

/// Where a key's role or GUN was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    Header,
    FileName,
    Path,
    TrustData,
}

/// One key file of the store, read without its passphrase.
pub struct StoredKey {
    pub path: PathBuf,
    /// The key id in the file name (Notary names key files by key id).
    pub file_id: String,
    pub role: Option<(String, Origin)>,
    pub gun: Option<(String, Origin)>,
    /// Which of Notary's store layouts the file is in.
    pub layout: &'static str,
    /// The PEM block, or why the file is not a key Notary wrote.
    pub block: Result<PemBlock, String>,
}

impl StoredKey {
    /// The file format, as `notary keys` shows it.
    pub fn format(&self) -> &'static str {
        match &self.block {
            Ok(b) => privkey::format_name(b),
            Err(_) => "unreadable",
        }
    }

    /// Whether opening the key needs a passphrase (false for Notary's unencrypted files,
    /// and for unreadable ones, which fail without asking).
    pub fn is_encrypted(&self) -> bool {
        self.block.as_ref().is_ok_and(|b| {
            b.kind == "ENCRYPTED PRIVATE KEY"
                || b.headers
                    .get("Proc-Type")
                    .is_some_and(|v| v.contains("ENCRYPTED"))
        })
    }

    /// Decrypts the key. A wrong passphrase and a damaged file are told apart.
    pub fn decrypt(&self, pass: Option<&Secret>) -> Result<SoftKey, NotaryError> {
        let block = self
            .block
            .as_ref()
            .map_err(|r| NotaryError::key_file(&self.path, r.clone()))?;
        match privkey::decrypt(block, pass) {
            Ok(k) => Ok(k),
            Err(ReadFailure::WrongPassphrase) if pass.is_none() => Err(NotaryError::key_file(
                &self.path,
                "the key is encrypted and no passphrase was given (TUFKEY_NOTARY_PASSPHRASE or the prompt)",
            )),
            Err(ReadFailure::WrongPassphrase) => Err(NotaryError::WrongPassphrase {
                path: self.path.clone(),
            }),
            Err(ReadFailure::Damaged(reason)) => Err(NotaryError::key_file(
                &self.path,
                format!("{reason}; the file is damaged or not a Notary key"),
            )),
        }
    }
}

/// The store's `private/` folder: DIR itself, or DIR/private (a Notary or Docker trust dir).
pub fn private_dir(dir: &Path) -> Result<PathBuf, NotaryError> {
    let nested = dir.join("private");
    if nested.is_dir() {
        return Ok(nested);
    }
    if dir.is_dir() {
        return Ok(dir.to_path_buf());
    }
    Err(NotaryError::Usage(format!(
        "{} is not a folder; give Notary's trust folder (e.g. ~/.docker/trust or ~/.notary) or its private/ folder",
        dir.display()
    )))
}

fn key_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), NotaryError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(NotaryError::io(dir))?
        .collect::<Result<_, _>>()
        .map_err(NotaryError::io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            key_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "key") {
            out.push(p);
        }
    }
    Ok(())
}

/// Every `.key` file under the store, in path order, with role and GUN as far as the
/// store itself tells them; `dir` is also searched for trust data to name root keys' GUN.
pub fn list(dir: &Path) -> Result<Vec<StoredKey>, NotaryError> {
    let private = private_dir(dir)?;
    let mut files = Vec::new();
    key_files(&private, &mut files)?;
    let roots = trust::root_key_guns(dir);
    let mut out = Vec::new();
    for path in files {
        let rel = path.strip_prefix(&private).unwrap_or(&path).to_path_buf();
        let comps: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (file_id, name_role) = match stem.split_once('_') {
            Some((id, role)) => (id.to_string(), Some(role.to_string())),
            None => (stem.clone(), None),
        };
        let block = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot be read as text: {e}"))
            .and_then(|t| pemfile::parse(&t))
            .and_then(|b| {
                if privkey::is_known_kind(&b.kind) {
                    Ok(b)
                } else {
                    Err(format!(
                        "a `{}` PEM block is not a private key format Notary wrote",
                        b.kind
                    ))
                }
            });
        let header = |name: &str| {
            block
                .as_ref()
                .ok()
                .and_then(|b| b.headers.get(name))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let in_root_keys = comps.first().is_some_and(|c| c == "root_keys");
        let in_tuf_keys = comps.first().is_some_and(|c| c == "tuf_keys");
        let layout = if in_root_keys || in_tuf_keys {
            if name_role.is_some() {
                "notary 0.1 (role in file name)"
            } else {
                "notary 0.2-0.3 (role header)"
            }
        } else {
            "notary 0.4+ (role and gun headers)"
        };
        let role = header("role")
            .map(|r| (r, Origin::Header))
            .or_else(|| name_role.map(|r| (r, Origin::FileName)))
            .or_else(|| in_root_keys.then(|| ("root".to_string(), Origin::Path)));
        let gun = header("gun")
            .map(|g| (g, Origin::Header))
            .or_else(|| {
                (in_tuf_keys && comps.len() > 2)
                    .then(|| (comps[1..comps.len() - 1].join("/"), Origin::Path))
            })
            .or_else(|| {
                roots
                    .iter()
                    .find(|(id, _)| *id == file_id)
                    .map(|(_, g)| (g.clone(), Origin::TrustData))
            });
        out.push(StoredKey {
            path,
            file_id,
            role,
            gun,
            layout,
            block,
        });
    }
    Ok(out)
}

/// The key whose file id (or a unique prefix of it, at least 8 hex digits) is `keyid`.
pub fn find(dir: &Path, keyid: &str) -> Result<StoredKey, NotaryError> {
    let keys = list(dir)?;
    let known = keys
        .iter()
        .map(|k| k.file_id.get(..12).unwrap_or(&k.file_id).to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut matching: Vec<StoredKey> = keys
        .into_iter()
        .filter(|k| k.file_id == keyid || (keyid.len() >= 8 && k.file_id.starts_with(keyid)))
        .collect();
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 => Err(NotaryError::NoSuchKey {
            keyid: keyid.into(),
            dir: dir.into(),
            known,
        }),
        _ => Err(NotaryError::Usage(format!(
            "key id prefix {keyid} matches several keys in {}; give more digits",
            dir.display()
        ))),
    }
}

/// What decrypting a stored key tells: its public key under both key ids.
pub struct Opened {
    pub key: SoftKey,
    pub notary: NotaryKey,
    pub notary_id: String,
    pub tuf_id: String,
}

/// Decrypts `k` and computes its Notary and TUF key ids; refuses a key whose Notary id
/// is not the one in its file name (a file renamed or swapped by hand).
pub fn open(k: &StoredKey, pass: Option<&Secret>) -> Result<Opened, NotaryError> {
    let key = k.decrypt(pass)?;
    let notary = NotaryKey::of_private(&key);
    let notary_id = notary.notary_id();
    if notary_id != k.file_id {
        return Err(NotaryError::key_file(
            &k.path,
            format!(
                "the key inside has Notary key id {notary_id}, but the file is named for {}; the file was renamed or replaced",
                k.file_id
            ),
        ));
    }
    let tuf_id = key.public().to_tuf_key().key_id();
    Ok(Opened {
        key,
        notary,
        notary_id,
        tuf_id,
    })
}
