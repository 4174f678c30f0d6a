//! `notary verify`: a Notary trust repository checked with Notary's client rules.
//!
//! - root: a threshold of the root role's keys signed it; root keys are certificates
//!   (`ecdsa-x509`, `rsa-x509`) that must be leaf certificates with CN = GUN, no SHA-1,
//!   and valid at the checked time; certificates pinned for the GUN (Notary 0.1's
//!   `trusted_certificates/<gun>/`) must include one that signed the root;
//! - targets, snapshot, timestamp: a threshold of their role's keys from root; the
//!   timestamp's `meta.snapshot` and the snapshot's `meta` entries match the files'
//!   lengths and hashes (base64, as Notary writes them);
//! - delegations (`targets/…` roles): a threshold of the delegating role's keys for that
//!   role, listed in the snapshot; targets outside the role's `paths` are reported, as
//!   Notary's client drops them;
//! - every role unexpired at the checked time.
//!
//! Time: Notary's client refuses expired metadata and expired root certificates, so
//! this does too; `at` checks the repository as of another moment (an archive, or
//! trust data whose certificates expired before the migration), and the report says
//! which time was used.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

use super::error::NotaryError;
use super::pubkey::{verify_signature, NotaryKey};
use super::trust::{self, Envelope};
use crate::tuf::cjson::to_canonical;

/// A root certificate expiring within this many days of the checked time gets a warning
/// (Notary's client warns within six months).
const NEAR_EXPIRY_DAYS: i64 = 182;

/// Delegations deeper than this are not followed (Notary's own limit is similar).
const MAX_DELEGATION_DEPTH: usize = 16;

/// What was found about one role.
#[derive(Debug, Clone, Serialize)]
pub struct RoleReport {
    pub role: String,
    pub version: u64,
    pub expires: String,
    pub threshold: u64,
    /// Key ids whose signatures verified.
    pub signed_by: Vec<String>,
    pub ok: bool,
}

/// The result of checking one GUN's trust data.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub gun: String,
    pub at: String,
    pub roles: Vec<RoleReport>,
    /// Target paths and their role, as Notary's client would return them.
    pub targets: BTreeMap<String, String>,
    /// Everything that makes the repository fail verification.
    pub problems: Vec<String>,
    /// Things Notary's client tolerates but a person should know.
    pub warnings: Vec<String>,
}

impl Report {
    pub fn verified(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A role's keys and threshold, as its delegator lists them.
struct RoleKeys {
    keyids: Vec<String>,
    threshold: u64,
}

/// The strings of a JSON array (key ids, path prefixes); anything else is no strings.
pub(super) fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn role_keys(def: Option<&Value>) -> RoleKeys {
    RoleKeys {
        keyids: strings(def.and_then(|d| d.get("keyids"))),
        threshold: def
            .and_then(|d| d.get("threshold"))
            .and_then(Value::as_u64)
            .unwrap_or(0),
    }
}

/// Parses a `keys` object; a key whose id is not its Notary key id is a problem.
fn parse_keys(
    keys: Option<&Value>,
    whose: &str,
    problems: &mut Vec<String>,
) -> BTreeMap<String, NotaryKey> {
    let mut out = BTreeMap::new();
    for (id, v) in keys.and_then(Value::as_object).into_iter().flatten() {
        match NotaryKey::from_value(v) {
            Ok(k) if k.notary_id() == *id => {
                out.insert(id.clone(), k);
            }
            Ok(k) => problems.push(format!(
                "{whose}: key {id} is listed under the wrong id (its Notary key id is {})",
                k.notary_id()
            )),
            Err(e) => problems.push(format!("{whose}: key {id}: {e}")),
        }
    }
    out
}

struct Checker {
    gun: String,
    at: DateTime<Utc>,
    report: Report,
}

impl Checker {
    fn problem(&mut self, s: String) {
        self.report.problems.push(s);
    }

    /// Signature threshold of `env` under `keys`; usable keys may be narrowed by
    /// `usable` (root: only keys whose certificate is valid).
    fn threshold(
        &mut self,
        role: &str,
        env: &Envelope,
        rk: &RoleKeys,
        keys: &BTreeMap<String, NotaryKey>,
        usable: &dyn Fn(&str) -> bool,
    ) -> Vec<String> {
        let file = env.path.display().to_string();
        let msg = match to_canonical(&env.signed) {
            Ok(m) => m,
            Err(e) => {
                self.problem(format!("{file}: {e}"));
                return Vec::new();
            }
        };
        let mut good = BTreeSet::new();
        for s in &env.signatures {
            if !rk.keyids.contains(&s.keyid) {
                self.report.warnings.push(format!(
                    "{file}: a signature by {} which is not a {role} key (ignored)",
                    s.keyid
                ));
                continue;
            }
            let Some(key) = keys.get(&s.keyid) else {
                self.problem(format!(
                    "{file}: {role} key {} is not in the key list",
                    s.keyid
                ));
                continue;
            };
            if !usable(&s.keyid) {
                continue;
            }
            let verdict = key
                .public_key()
                .and_then(|pk| verify_signature(&pk, &s.method, &msg, &s.sig));
            match verdict {
                Ok(()) => {
                    good.insert(s.keyid.clone());
                }
                Err(e) => self.problem(format!(
                    "{file}: the signature by {role} key {} does not verify: {e}",
                    s.keyid
                )),
            }
        }
        if rk.threshold == 0 {
            self.problem(format!("{file}: role {role} has no threshold (or 0)"));
        } else if (good.len() as u64) < rk.threshold {
            self.problem(format!(
                "{file}: {} valid signature(s) by {role} keys where the threshold is {}",
                good.len(),
                rk.threshold
            ));
        }
        good.into_iter().collect()
    }

    fn expiry(&mut self, role: &str, env: &Envelope) {
        let e = env.expires();
        match DateTime::parse_from_rfc3339(e) {
            Ok(t) if t.with_timezone(&Utc) > self.at => {}
            Ok(_) => self.problem(format!(
                "{}: role {role} expired at {e} (checked at {}); Notary's client refuses expired metadata. To check it as of an earlier time, use --at",
                env.path.display(),
                self.at.to_rfc3339()
            )),
            Err(_) => self.problem(format!("{}: `expires` {e:?} is not a date", env.path.display())),
        }
    }

    fn kind(&mut self, env: &Envelope, want: &str) {
        if env.kind() != want {
            self.problem(format!(
                "{}: `_type` is {:?}, expected {want:?}",
                env.path.display(),
                env.kind()
            ));
        }
    }

    /// Checks `meta[name]` (length and every hash Notary wrote, base64) against `file`.
    fn meta(&mut self, holder: &Envelope, name: &str, file: &Envelope) {
        let Some(m) = holder.signed.pointer(&format!(
            "/meta/{}",
            name.replace('~', "~0").replace('/', "~1")
        )) else {
            self.problem(format!("{}: `meta` lists no {name}", holder.path.display()));
            return;
        };
        let where_ = holder.path.display().to_string();
        if m.get("length").and_then(Value::as_u64) != Some(file.bytes.len() as u64) {
            self.problem(format!(
                "{where_}: {name} is {} bytes, but `meta` states {}",
                file.bytes.len(),
                m.get("length").unwrap_or(&Value::Null)
            ));
        }
        let mut checked = 0;
        for (alg, want) in m
            .get("hashes")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let got = match alg.as_str() {
                "sha256" => Sha256::digest(&file.bytes).to_vec(),
                "sha512" => Sha512::digest(&file.bytes).to_vec(),
                _ => continue,
            };
            checked += 1;
            let b64 = base64::engine::general_purpose::STANDARD.encode(got);
            if want.as_str() != Some(b64.as_str()) {
                self.problem(format!(
                    "{where_}: the {alg} of {} is {b64}, but `meta.{name}` states {want}",
                    file.path.display()
                ));
            }
        }
        if checked == 0 {
            self.problem(format!(
                "{where_}: `meta.{name}` has no sha256 or sha512 hash"
            ));
        }
    }

    fn record(
        &mut self,
        role: &str,
        env: &Envelope,
        rk: &RoleKeys,
        signed_by: Vec<String>,
        before: usize,
    ) {
        let ok = self.report.problems.len() == before;
        self.report.roles.push(RoleReport {
            role: role.into(),
            version: env.version(),
            expires: env.expires().into(),
            threshold: rk.threshold,
            signed_by,
            ok,
        });
    }
}

fn required(md: &Path, name: &str) -> Result<Envelope, NotaryError> {
    let p = md.join(format!("{name}.json"));
    Envelope::read(&p)?.ok_or_else(|| NotaryError::Metadata {
        path: p,
        reason: format!("missing: a Notary repository has {name}.json"),
    })
}

/// Checks the trust data of `gun` under `dir` (see [`trust::locate`]) as of `at`.
pub fn verify(dir: &Path, gun: Option<&str>, at: DateTime<Utc>) -> Result<Report, NotaryError> {
    let (gun, md) = trust::locate(dir, gun)?;
    let root = required(&md, "root")?;
    let targets = required(&md, "targets")?;
    let snapshot = required(&md, "snapshot")?;
    let timestamp = required(&md, "timestamp")?;
    let mut c = Checker {
        gun: gun.clone(),
        at,
        report: Report {
            gun: gun.clone(),
            at: at.to_rfc3339(),
            roles: Vec::new(),
            targets: BTreeMap::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
        },
    };

    // Root: certificates, pinning, threshold, expiry.
    let before = c.report.problems.len();
    c.kind(&root, "Root");
    let mut key_problems = Vec::new();
    let keys = parse_keys(
        root.signed.get("keys"),
        &root.path.display().to_string(),
        &mut key_problems,
    );
    c.report.problems.extend(key_problems);
    let roles = root.signed.get("roles");
    let rk = role_keys(roles.and_then(|r| r.get("root")));
    let mut valid_certs = BTreeSet::new();
    for id in &rk.keyids {
        let Some(k) = keys.get(id) else { continue };
        match k.certificate() {
            Ok(cert) => {
                let p = cert.problems(&c.gun, c.at);
                if p.is_empty() {
                    valid_certs.insert(id.clone());
                    if cert.not_after < c.at + chrono::Duration::days(NEAR_EXPIRY_DAYS) {
                        c.report.warnings.push(format!(
                            "{}: root key {id}: certificate CN={} expires at {}, within {NEAR_EXPIRY_DAYS} days of {} (Notary warns too); migrate before then",
                            root.path.display(),
                            cert.common_name,
                            cert.not_after.to_rfc3339(),
                            c.report.at
                        ));
                    }
                }
                for p in p {
                    c.problem(format!("{}: root key {id}: {p}", root.path.display()));
                }
            }
            Err(e) => c.problem(format!(
                "{}: root key {id}: {e}; Notary's root keys are certificates (ecdsa-x509, rsa-x509)",
                root.path.display()
            )),
        }
    }
    let signed_by = c.threshold("root", &root, &rk, &keys, &|id| valid_certs.contains(id));
    let pinned = trust::pinned_certs(dir, &gun)?;
    if !pinned.is_empty() {
        let root_certs: Vec<Vec<u8>> = rk
            .keyids
            .iter()
            .filter_map(|id| keys.get(id).and_then(|k| k.certificate().ok()))
            .map(|c| c.der)
            .collect();
        if !pinned.iter().any(|(_, p)| root_certs.contains(&p.der)) {
            let files: Vec<String> = pinned
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect();
            c.problem(format!(
                "{}: none of its root certificates is one pinned for {gun} ({}); the root certificate was swapped. Confirm the new root with its owners before trusting it",
                root.path.display(),
                files.join(", ")
            ));
        }
    }
    c.expiry("root", &root);
    c.record("root", &root, &rk, signed_by, before);

    // Timestamp → snapshot → targets, each signed by its root-listed keys.
    for (role, env, kind) in [
        ("timestamp", &timestamp, "Timestamp"),
        ("snapshot", &snapshot, "Snapshot"),
        ("targets", &targets, "Targets"),
    ] {
        let before = c.report.problems.len();
        c.kind(env, kind);
        let rk = role_keys(roles.and_then(|r| r.get(role)));
        let signed_by = c.threshold(role, env, &rk, &keys, &|_| true);
        c.expiry(role, env);
        match role {
            "timestamp" => c.meta(env, "snapshot", &snapshot),
            "snapshot" => {
                c.meta(env, "root", &root);
                c.meta(env, "targets", &targets);
            }
            _ => {}
        }
        c.record(role, env, &rk, signed_by, before);
    }
    for path in targets
        .signed
        .get("targets")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(p, _)| p)
    {
        c.report.targets.insert(path.clone(), "targets".into());
    }
    delegations(&mut c, &md, &snapshot, &targets, "targets", 0)?;
    Ok(c.report)
}

/// Follows `parent`'s delegations: each published role is checked against its
/// delegation's keys and the snapshot, and contributes its targets within its paths.
fn delegations(
    c: &mut Checker,
    md: &Path,
    snapshot: &Envelope,
    parent: &Envelope,
    parent_name: &str,
    depth: usize,
) -> Result<(), NotaryError> {
    let Some(d) = parent.signed.get("delegations") else {
        return Ok(());
    };
    let mut key_problems = Vec::new();
    let keys = parse_keys(
        d.get("keys"),
        &parent.path.display().to_string(),
        &mut key_problems,
    );
    c.report.problems.extend(key_problems);
    for role in d
        .get("roles")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = role
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !name.starts_with(&format!("{parent_name}/")) {
            c.problem(format!(
                "{}: delegated role {name:?} is not a child of {parent_name} (Notary names delegations {parent_name}/…)",
                parent.path.display()
            ));
            continue;
        }
        if depth >= MAX_DELEGATION_DEPTH {
            c.report.warnings.push(format!(
                "delegation {name} is deeper than {MAX_DELEGATION_DEPTH} levels; not followed"
            ));
            continue;
        }
        let Some(env) = Envelope::read(&md.join(format!("{name}.json")))? else {
            c.report.warnings.push(format!(
                "delegation {name} has no metadata yet (nothing published for it); it holds no targets"
            ));
            continue;
        };
        let before = c.report.problems.len();
        c.kind(&env, "Targets");
        let rk = role_keys(Some(role));
        let signed_by = c.threshold(&name, &env, &rk, &keys, &|_| true);
        c.expiry(&name, &env);
        c.meta(snapshot, &name, &env);
        let prefixes: Vec<String> = strings(role.get("paths"));
        for path in env
            .signed
            .get("targets")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(p, _)| p)
        {
            if prefixes.iter().any(|p| path.starts_with(p.as_str())) {
                c.report
                    .targets
                    .entry(path.clone())
                    .or_insert_with(|| name.clone());
            } else {
                c.report.warnings.push(format!(
                    "{}: target {path} is outside the paths delegated to {name}; Notary's client ignores it",
                    env.path.display()
                ));
            }
        }
        c.record(&name, &env, &rk, signed_by, before);
        delegations(c, md, snapshot, &env, &name, depth + 1)?;
    }
    Ok(())
}
