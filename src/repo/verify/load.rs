//! Reading one metadata file as a client does, and the checks every role shares:
//! signatures by its delegator's keys, expiry, and the length/hashes stated for it.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::files::Stated;
use super::report::RoleReport;
use super::walk::Walk;
use crate::tuf::time::parse_expires;
use crate::tuf::{Delegator, Metadata, RoleVerification};

/// A metadata file that parsed, with what every check needs.
pub(super) struct Loaded {
    pub md: Metadata,
    pub bytes: Vec<u8>,
    /// The name problems carry (`metadata/3.snapshot.json`).
    pub file: String,
    pub version: u64,
    pub expires: String,
    pub expires_at: DateTime<Utc>,
}

impl Walk<'_> {
    /// Reads `metadata/NAME`; `None`, with the problem recorded, when a client could
    /// not use it (missing, not JSON, not a `role_type` document, no version/expiry).
    pub(super) fn load(&mut self, name: &str, role_type: &str) -> Option<Loaded> {
        let (path, file) = self.metadata_file(name);
        if !path.exists() {
            self.problem(&file, "does not exist, but a client needs it");
            return None;
        }
        self.load_path(&path, &file, role_type)
    }

    /// As [`Walk::load`] for a file named by `file` in messages.
    pub(super) fn load_path(&mut self, path: &Path, file: &str, role_type: &str) -> Option<Loaded> {
        match read(path, role_type) {
            Ok(l) => Some(Loaded {
                file: file.to_owned(),
                ..l
            }),
            Err(message) => {
                self.problem(file, message);
                None
            }
        }
    }

    /// Checks `loaded` against `delegator`'s keys for `role`, recording a problem for a
    /// threshold not met (naming missing, invalid and same-key signatures).
    pub(super) fn check_signatures(
        &mut self,
        loaded: &Loaded,
        delegator: &Delegator,
        delegator_label: &str,
        role: &str,
    ) -> Option<RoleVerification> {
        let r = match delegator.verify_role(role, &loaded.md) {
            Ok(r) => r,
            Err(e) => {
                self.problem(
                    &loaded.file,
                    format!("cannot be checked against {delegator_label}: {e}"),
                );
                return None;
            }
        };
        let same_key = r.same_key_notes();
        if r.verified() {
            for n in same_key {
                self.note(&loaded.file, n);
            }
        } else {
            let mut why = Vec::new();
            if !r.invalid.is_empty() {
                why.push(format!(
                    "invalid: {}",
                    r.invalid
                        .iter()
                        .map(|i| format!("{} ({})", i.keyid, i.reason))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if !r.missing.is_empty() {
                why.push(format!("not signed by: {}", r.missing.join(", ")));
            }
            why.extend(same_key);
            self.problem(
                &loaded.file,
                format!(
                    "{role} threshold of {delegator_label} not met: {} of {} signatures by distinct keys{}",
                    r.counted(),
                    r.threshold,
                    if why.is_empty() { String::new() } else { format!("; {}", why.join("; ")) }
                ),
            );
        }
        Some(r)
    }

    /// Records a problem when `loaded` has expired at the time checked.
    pub(super) fn check_expiry(&mut self, loaded: &Loaded) {
        if loaded.expires_at <= self.options.at {
            let msg = format!(
                "expired at {} (checked at {}; --at checks another time)",
                loaded.expires, self.report.checked_at
            );
            self.problem(&loaded.file, msg);
        }
    }

    /// Compares the bytes of `loaded` with the length and hashes `by` states for it.
    pub(super) fn check_stated(&mut self, loaded: &Loaded, info: &Value, by: &str) {
        match Stated::from_info(info, false) {
            Ok(stated) => {
                for p in stated.check_bytes(&loaded.bytes, by) {
                    self.problem(&loaded.file, p);
                }
            }
            Err(e) => self.problem(by, format!("the entry for {}: {e}", loaded.file)),
        }
    }

    /// Adds the one-line summary of a role.
    pub(super) fn role_line(
        &mut self,
        role: &str,
        loaded: &Loaded,
        delegator: &str,
        r: Option<&RoleVerification>,
    ) {
        let signed_by = r
            .map(|r| {
                r.signed
                    .iter()
                    .filter(|k| !r.same_key.iter().any(|s| &s.keyid == *k))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        self.report.roles.push(RoleReport {
            role: role.to_owned(),
            file: loaded.file.clone(),
            delegator: delegator.to_owned(),
            version: Some(loaded.version),
            expires: Some(loaded.expires.clone()),
            threshold: r.map(|r| r.threshold),
            signed_by,
            ok: true,
        });
    }
}

/// Reads the trusted root; its problems are the caller's error (nothing to check against).
pub(super) fn read_trusted(path: &Path, file: &str) -> Result<Loaded, String> {
    if !path.exists() {
        return Err("does not exist; pass the root your clients ship with --trusted-root".into());
    }
    let loaded = read(path, "root")?;
    Ok(Loaded {
        file: file.to_owned(),
        ..loaded
    })
}

/// The checks python-tuf's `Metadata.from_bytes` makes before any signature.
fn read(path: &Path, role_type: &str) -> Result<Loaded, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    let md = Metadata::from_slice(&bytes).map_err(|e| format!("is not valid TUF metadata: {e}"))?;
    if md.role_type() != role_type {
        return Err(format!(
            "is a `{}` document where a client expects `{role_type}`",
            md.role_type()
        ));
    }
    let version = md
        .version()
        .filter(|v| *v >= 1)
        .ok_or("`version` must be an integer of at least 1")?;
    let expires = md.expires().ok_or("`expires` is missing")?.to_owned();
    let expires_at = parse_expires(&expires).map_err(|e| e.to_string())?;
    check_spec_version(md.signed())?;
    Ok(Loaded {
        md,
        bytes,
        file: String::new(),
        version,
        expires,
        expires_at,
    })
}

/// python-tuf accepts `spec_version` "1.x" or "1.x.y" (digits only) and nothing else.
fn check_spec_version(signed: &Value) -> Result<(), String> {
    let v = signed
        .get("spec_version")
        .and_then(Value::as_str)
        .ok_or("`spec_version` must be a string such as \"1.0.31\"")?;
    let parts: Vec<&str> = v.split('.').collect();
    let digits = parts
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !(2..=3).contains(&parts.len()) || !digits || parts[0] != "1" {
        return Err(format!(
            "spec_version `{v}` is not a TUF 1.x version; clients refuse it"
        ));
    }
    Ok(())
}
