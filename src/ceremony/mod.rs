//! Signing ceremonies for root metadata: a folder that travels between machines on a
//! USB stick, holding the trusted root it starts from (none for version 1), the
//! proposed root with the signatures collected so far, and the append-only transcript.
//! Status is always computed from these files, never stored beside them.
//!
//! ```text
//! DIR/root.json            the proposed root and its signatures
//! DIR/trusted-root.json    the root it rotates from (absent for version 1)
//! DIR/transcript.jsonl     hash-chained log of every action
//! DIR/.lock                serialises writers on one machine
//! ```

mod error;
pub mod review;
mod staged;
#[cfg(test)]
mod tests;
pub mod transcript;

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::fsutil;
use crate::tuf::edit::{self, Holder};
use crate::tuf::time::parse_expires;
use crate::tuf::{Delegator, Key, Metadata, RoleVerification, Signature, TufError};
pub use error::CeremonyError;
pub use review::{KeyInfo, Review, RoleChange};
pub use transcript::{default_actor, Transcript};

/// Where a key added to the ceremony came from, for the review and the transcript.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Provenance {
    pub uri: String,
    pub token: Option<String>,
    pub serial: Option<String>,
}

/// A key's attestation as recorded in `DIR/attestations/<keyid>.json`: the device's
/// certificates (PEM) and what they state, so `ceremony verify` can check them again.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct AttestationRecord {
    pub uri: String,
    pub slot_certificate: String,
    pub intermediate: String,
    pub statement: Value,
}

/// The backend's verifier of a recorded attestation against the key the root lists.
pub type AttestationCheck<'a> = dyn Fn(&AttestationRecord, &Key) -> Result<String, String> + 'a;

/// An open ceremony. `open` holds the folder's lock until dropped; `read` does not.
pub struct Ceremony {
    pub dir: PathBuf,
    pub proposed: Metadata,
    pub trusted: Option<Metadata>,
    pub transcript: Transcript,
    _lock: Option<File>,
}

/// Computed state of a ceremony.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub version: u64,
    pub payload_sha256: String,
    pub transcript_head: String,
    /// The new root's own root-role threshold.
    pub new_root: RoleVerification,
    /// On rotation: the trusted root's root-role threshold over the new root.
    pub trusted_root: Option<RoleVerification>,
    /// Everything that blocks `finalize`.
    pub problems: Vec<String>,
    pub can_finalize: bool,
}

fn lock_dir(dir: &Path) -> Result<File, CeremonyError> {
    let p = dir.join(".lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| CeremonyError::Io(p.clone(), e))?;
    f.lock().map_err(|e| CeremonyError::Io(p, e))?;
    Ok(f)
}

fn load_md(path: &Path) -> Result<Metadata, CeremonyError> {
    let bytes = std::fs::read(path).map_err(|e| CeremonyError::Io(path.into(), e))?;
    Metadata::from_slice(&bytes).map_err(|source| CeremonyError::Metadata {
        path: path.into(),
        err: source,
    })
}

fn file_sha256(path: &Path) -> Result<String, CeremonyError> {
    let bytes = std::fs::read(path).map_err(|e| CeremonyError::Io(path.into(), e))?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

impl Ceremony {
    fn root_path(dir: &Path) -> PathBuf {
        dir.join("root.json")
    }
    fn trusted_path(dir: &Path) -> PathBuf {
        dir.join("trusted-root.json")
    }
    fn transcript_path(dir: &Path) -> PathBuf {
        dir.join("transcript.jsonl")
    }
    /// Starts a ceremony: root version 1, or version N+1 of `trusted` with its roles,
    /// keys and unknown fields copied and no signatures.
    pub fn init(
        dir: &Path,
        trusted: Option<&Path>,
        expires: &str,
        require_attestation: bool,
        actor: &str,
    ) -> Result<Ceremony, CeremonyError> {
        std::fs::create_dir_all(dir).map_err(|e| CeremonyError::Io(dir.into(), e))?;
        let lock = lock_dir(dir)?;
        Self::finish_staged(dir)?;
        // An empty transcript beside no root.json is an init killed before its entry.
        let begun = std::fs::metadata(Self::transcript_path(dir)).is_ok_and(|m| m.len() > 0);
        if Self::root_path(dir).exists() || begun {
            return Err(CeremonyError::Exists(dir.into()));
        }
        let (proposed, trusted_md, trusted_hash) = match trusted {
            None => (Metadata::new(edit::new_root(expires))?, None, Value::Null),
            Some(p) => {
                let t = load_md(p)?;
                if t.role_type() != "root" {
                    return Err(CeremonyError::Invalid(format!(
                        "{} is a {} file, not a root",
                        p.display(),
                        t.role_type()
                    )));
                }
                Delegator::from_metadata(&t).map_err(|source| CeremonyError::Metadata {
                    path: p.into(),
                    err: source,
                })?;
                let version = t.version().ok_or_else(|| {
                    CeremonyError::Invalid(format!("{}: no version", p.display()))
                })?;
                let mut next = t.clone();
                next.edit(|s| {
                    edit::set_version(s, version + 1)?;
                    edit::set_expires(s, expires)
                })?;
                let bytes = std::fs::read(p).map_err(|e| CeremonyError::Io(p.into(), e))?;
                fsutil::write_atomic(&Self::trusted_path(dir), &bytes)
                    .map_err(|e| CeremonyError::Io(Self::trusted_path(dir), e))?;
                (next, Some(t), json!(hex::encode(Sha256::digest(&bytes))))
            }
        };
        let mut c = Ceremony {
            dir: dir.into(),
            proposed,
            trusted: trusted_md,
            transcript: Transcript::default(),
            _lock: Some(lock),
        };
        let details = json!({
            "version": c.proposed.version(),
            "expires": expires,
            "trusted_root_sha256": trusted_hash,
            "trusted_version": c.trusted.as_ref().and_then(Metadata::version),
            "require_attestation": require_attestation,
        });
        c.stage()?;
        c.record(actor, "init", details)?;
        c.publish_staged()?;
        Ok(c)
    }

    /// Opens a ceremony for changes, waiting for other writers on this folder.
    pub fn open(dir: &Path) -> Result<Ceremony, CeremonyError> {
        let lock = lock_dir(dir)?;
        Self::finish_staged(dir)?;
        let mut c = Self::read(dir)?;
        c._lock = Some(lock);
        Ok(c)
    }

    /// Reads a ceremony without taking the lock (review, status, verify, a merge source).
    pub fn read(dir: &Path) -> Result<Ceremony, CeremonyError> {
        if Self::staged_path(dir).exists() || Self::transcript_torn(dir) {
            // An interrupted change (or one in progress: the lock waits for it).
            let _lock = lock_dir(dir)?;
            Self::finish_staged(dir)?;
        }
        if !Self::root_path(dir).exists() || !Self::transcript_path(dir).exists() {
            return Err(CeremonyError::NotACeremony(dir.into()));
        }
        let proposed = load_md(&Self::root_path(dir))?;
        let trusted = if Self::trusted_path(dir).exists() {
            Some(load_md(&Self::trusted_path(dir))?)
        } else {
            None
        };
        let transcript = Transcript::read(&Self::transcript_path(dir))?;
        Ok(Ceremony {
            dir: dir.into(),
            proposed,
            trusted,
            transcript,
            _lock: None,
        })
    }

    fn record(&mut self, actor: &str, action: &str, details: Value) -> Result<(), CeremonyError> {
        let payload = self.proposed.payload_sha256();
        self.transcript.append(
            &Self::transcript_path(&self.dir),
            actor,
            action,
            details,
            &payload,
        )
    }

    /// Refuses to act on a root.json that was changed outside tufkey: the next entry
    /// would otherwise record the changed payload as if tufkey had made it.
    pub fn check_untouched(&self) -> Result<(), CeremonyError> {
        let now = self.proposed.payload_sha256();
        match self.transcript.last_payload() {
            Some(last) if last == now => Ok(()),
            last => Err(CeremonyError::Invalid(format!(
                "root.json was changed outside tufkey (its payload is {now}, the transcript's last action left {}); nothing was changed. Restore it or start a new ceremony",
                last.unwrap_or("nothing")
            ))),
        }
    }

    /// Applies an edit of the proposed root. Signatures made so far covered the old
    /// payload, so they are dropped, and the action's own transcript entry lists them
    /// (`signatures_dropped`). One entry, not two: a process killed between two entries
    /// would leave a staged root recorded by the first alone, adopted on the next open
    /// without the entry that says what changed.
    fn change(
        &mut self,
        actor: &str,
        action: &str,
        mut details: Value,
        f: impl FnOnce(&mut Value) -> Result<(), TufError>,
    ) -> Result<(), CeremonyError> {
        self.check_untouched()?;
        let dropped: Vec<String> = self
            .proposed
            .signatures()
            .iter()
            .filter(|s| !s.sig.is_empty())
            .map(|s| s.keyid.clone())
            .collect();
        if !dropped.is_empty() {
            match &mut details {
                Value::Object(m) => {
                    m.insert("signatures_dropped".into(), json!(dropped));
                }
                other => {
                    *other = json!({"action": other.take(), "signatures_dropped": dropped});
                }
            }
        }
        self.proposed.edit(f)?;
        self.stage()?;
        self.record(actor, action, details)?;
        self.publish_staged()
    }

    /// Adds a public key to a top-level role of the proposed root.
    pub fn add_key(
        &mut self,
        role: &str,
        key: &Key,
        from: &Provenance,
        attestation: Option<&AttestationRecord>,
        actor: &str,
    ) -> Result<String, CeremonyError> {
        let keyid = key.key_id();
        if self.require_attestation() && attestation.is_none() {
            return Err(CeremonyError::Invalid(format!(
                "this ceremony requires key attestation, and {} ({keyid}) has none; use a YubiKey key made on the device (`tufkey key attest` shows why one fails)",
                from.uri
            )));
        }
        // Check first, write last: a refused key (a role that does not exist, a public
        // key already listed under another key id, a root.json changed by hand) must not
        // leave an attestation file behind. The edit is tried on a copy before anything
        // is written.
        self.check_untouched()?;
        edit::add_key(&mut self.proposed.signed().clone(), Holder::Root, role, key)?;
        let (attested, written) = match attestation {
            Some(a) => {
                let (bytes, written) = self.store_attestation(&keyid, a)?;
                (
                    json!({"file": format!("attestations/{keyid}.json"), "sha256": hex::encode(Sha256::digest(&bytes)), "statement": a.statement}),
                    written,
                )
            }
            None => (Value::Null, None),
        };
        let details = json!({"role": role, "keyid": keyid, "keytype": key.keytype, "scheme": key.scheme, "uri": from.uri, "token": from.token, "serial": from.serial, "attestation": attested});
        let entries = self.transcript.entries.len();
        let changed = self.change(actor, "add-key", details, |s| {
            edit::add_key(s, Holder::Root, role, key).map(|_| ())
        });
        if let (Err(_), Some(path)) = (&changed, written) {
            // Failed before the transcript named the new file: take it back.
            if self.transcript.entries.len() == entries {
                let _ = std::fs::remove_file(path);
            }
        }
        changed?;
        Ok(keyid)
    }

    /// The bytes of `attestations/<keyid>.json`, written now unless a record is there,
    /// and the path when this call wrote it. A key added to a second role keeps its first
    /// record: a device makes a new attestation certificate on every request, and the
    /// transcript already holds the hash of the first one.
    fn store_attestation(
        &self,
        keyid: &str,
        a: &AttestationRecord,
    ) -> Result<(Vec<u8>, Option<PathBuf>), CeremonyError> {
        let dir = self.dir.join("attestations");
        let path = dir.join(format!("{keyid}.json"));
        if let Ok(existing) = std::fs::read(&path) {
            return Ok((existing, None));
        }
        std::fs::create_dir_all(&dir).map_err(|e| CeremonyError::Io(dir.clone(), e))?;
        let bytes =
            serde_json::to_vec_pretty(a).map_err(|e| CeremonyError::Invalid(e.to_string()))?;
        fsutil::write_atomic(&path, &bytes).map_err(|e| CeremonyError::Io(path.clone(), e))?;
        Ok((bytes, Some(path)))
    }

    /// Whether `init --require-attestation` was given.
    pub fn require_attestation(&self) -> bool {
        self.transcript
            .entries
            .first()
            .is_some_and(|e| e.details["require_attestation"] == true)
    }

    /// Re-checks every recorded attestation with `check` (the backend's verifier): the
    /// file is the one the transcript recorded, its chain holds, and it attests the key
    /// the root lists. Under `--require-attestation`, every key this ceremony added needs one.
    pub fn attestation_problems(
        &self,
        check: &dyn Fn(&AttestationRecord, &Key) -> Result<String, String>,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let keys = Delegator::from_metadata(&self.proposed)
            .map(|d| d.keys)
            .unwrap_or_default();
        for e in self
            .transcript
            .entries
            .iter()
            .filter(|e| e.action == "add-key")
        {
            let keyid = e.details["keyid"].as_str().unwrap_or_default();
            let Some(key) = keys.get(keyid) else { continue };
            let rec = &e.details["attestation"];
            if rec.is_null() {
                if self.require_attestation() {
                    problems.push(format!("key {keyid} was added without an attestation"));
                }
                continue;
            }
            let path = self.dir.join(rec["file"].as_str().unwrap_or_default());
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(err) => {
                    problems.push(format!(
                        "the attestation of key {keyid} ({}) cannot be read: {err}",
                        path.display()
                    ));
                    continue;
                }
            };
            if rec["sha256"].as_str() != Some(hex::encode(Sha256::digest(&bytes)).as_str()) {
                problems.push(format!(
                    "{} is not the attestation the transcript recorded for key {keyid}",
                    path.display()
                ));
                continue;
            }
            match serde_json::from_slice::<AttestationRecord>(&bytes) {
                Ok(a) => {
                    if let Err(reason) = check(&a, key) {
                        problems.push(format!(
                            "the attestation of key {keyid} does not hold: {reason}"
                        ));
                    }
                }
                Err(err) => problems.push(format!("{}: {err}", path.display())),
            }
        }
        problems
    }

    /// Removes a key from a role (and from `keys` when no role uses it any more).
    pub fn remove_key(
        &mut self,
        role: &str,
        keyid: &str,
        actor: &str,
    ) -> Result<(), CeremonyError> {
        self.change(
            actor,
            "remove-key",
            json!({"role": role, "keyid": keyid}),
            |s| edit::remove_key(s, Holder::Root, role, keyid),
        )
    }

    /// Sets a role's threshold.
    pub fn set_threshold(
        &mut self,
        role: &str,
        threshold: u64,
        actor: &str,
    ) -> Result<(), CeremonyError> {
        let from = self.proposed.signed()["roles"][role]["threshold"].clone();
        self.change(
            actor,
            "threshold",
            json!({"role": role, "from": from, "to": threshold}),
            |s| edit::set_threshold(s, Holder::Root, role, threshold),
        )
    }

    /// Sets the root's expiry (TUF format).
    pub fn set_expires(&mut self, expires: &str, actor: &str) -> Result<(), CeremonyError> {
        let from = self.proposed.expires().unwrap_or_default().to_string();
        self.change(
            actor,
            "expires",
            json!({"role": "root", "from": from, "to": expires}),
            |s| edit::set_expires(s, expires),
        )
    }

    /// Root-role keys of the new root and (on rotation) of the trusted root: the only
    /// keys whose signatures count.
    fn root_signers(&self) -> Result<Vec<(String, Key)>, CeremonyError> {
        let mut out = Vec::new();
        for md in std::iter::once(&self.proposed).chain(self.trusted.iter()) {
            let d = Delegator::from_metadata(md)?;
            if let Some(role) = d.roles.get("root") {
                for id in &role.keyids {
                    if let Some(k) = d.keys.get(id) {
                        if !out.iter().any(|(i, _): &(String, Key)| i == id) {
                            out.push((id.clone(), k.clone()));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Refuses a key that is a root key of neither root.
    pub fn check_signer(&self, keyid: &str, uri: &str) -> Result<(), CeremonyError> {
        if self.root_signers()?.iter().any(|(id, _)| id == keyid) {
            Ok(())
        } else {
            Err(CeremonyError::NotARootKey {
                keyid: keyid.into(),
                uri: uri.into(),
            })
        }
    }

    /// Records a signature made over `signed_payload_sha256`, refusing it if the
    /// proposal changed since or the signature does not verify.
    pub fn add_signature(
        &mut self,
        sig: Signature,
        uri: &str,
        signed_payload_sha256: &str,
        actor: &str,
    ) -> Result<(), CeremonyError> {
        self.check_untouched()?;
        let now = self.proposed.payload_sha256();
        if now != signed_payload_sha256 {
            return Err(CeremonyError::Changed {
                signed: signed_payload_sha256.into(),
                now,
            });
        }
        self.check_signer(&sig.keyid, uri)?;
        let signers = self.root_signers()?;
        let key = signers
            .iter()
            .find(|(id, _)| *id == sig.keyid)
            .map(|(_, k)| k)
            .ok_or_else(|| CeremonyError::NotARootKey {
                keyid: sig.keyid.clone(),
                uri: uri.into(),
            })?;
        key.verify_hex(&self.proposed.payload(), &sig.sig)
            .map_err(|r| {
                CeremonyError::Invalid(format!(
                    "the signature by {} does not verify ({r}); nothing was recorded",
                    sig.keyid
                ))
            })?;
        let details = json!({"keyid": sig.keyid, "uri": uri, "sig": sig.sig});
        self.proposed.set_signature(sig);
        self.stage()?;
        self.record(actor, "sign", details)?;
        self.publish_staged()
    }

    /// Takes valid signatures from a copy of this ceremony signed elsewhere.
    pub fn merge(&mut self, other_dir: &Path, actor: &str) -> Result<Vec<String>, CeremonyError> {
        self.check_untouched()?;
        let other = Ceremony::read(other_dir)?;
        let (ours, theirs) = (
            self.proposed.payload_sha256(),
            other.proposed.payload_sha256(),
        );
        if ours != theirs {
            return Err(CeremonyError::DifferentCeremony {
                other: other_dir.into(),
                theirs,
                ours,
            });
        }
        let payload = self.proposed.payload();
        let signers = self.root_signers()?;
        let mut taken = Vec::new();
        for s in other.proposed.signatures() {
            let Some((_, key)) = signers.iter().find(|(id, _)| *id == s.keyid) else {
                continue;
            };
            let already = self
                .proposed
                .signatures()
                .iter()
                .any(|m| m.keyid == s.keyid && key.verify_hex(&payload, &m.sig).is_ok());
            if already || key.verify_hex(&payload, &s.sig).is_err() {
                continue;
            }
            taken.push(s.clone());
        }
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        let sigs: serde_json::Map<String, Value> = taken
            .iter()
            .map(|s| (s.keyid.clone(), Value::String(s.sig.clone())))
            .collect();
        let ids = taken.iter().map(|s| s.keyid.clone()).collect();
        for s in taken {
            self.proposed.set_signature(s);
        }
        self.stage()?;
        self.record(actor, "merge", json!({"from": other_dir.display().to_string(), "from_transcript_head": other.transcript.head, "signatures": sigs}))?;
        self.publish_staged()?;
        Ok(ids)
    }

    /// Checks the transcript against the files: the payload is the one the last action
    /// left, every signature was recorded, the trusted root is the one the ceremony began with.
    pub fn transcript_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let payload = self.proposed.payload_sha256();
        match self.transcript.last_payload() {
            None => problems.push("the transcript is empty".into()),
            Some(p) if p != payload => problems.push(format!(
                "root.json's payload ({payload}) is not the one the transcript's last action left ({p}): root.json was changed outside tufkey"
            )),
            _ => {}
        }
        // Actions that only add signatures must not change the payload.
        for pair in self.transcript.entries.windows(2) {
            if ["sign", "merge", "finalize"].contains(&pair[1].action.as_str())
                && pair[1].payload_sha256 != pair[0].payload_sha256
            {
                problems.push(format!(
                    "transcript entry {} ({}) records a payload that entry {} did not leave: root.json was changed outside tufkey in between",
                    pair[1].seq, pair[1].action, pair[0].seq
                ));
            }
        }
        let recorded = |keyid: &str, sig: &str| {
            self.transcript
                .entries
                .iter()
                .any(|e| match e.action.as_str() {
                    "sign" => {
                        e.details["keyid"] == keyid
                            && e.details["sig"] == sig
                            && e.payload_sha256 == payload
                    }
                    "merge" => e.details["signatures"][keyid] == sig && e.payload_sha256 == payload,
                    _ => false,
                })
        };
        for s in self
            .proposed
            .signatures()
            .iter()
            .filter(|s| !s.sig.is_empty())
        {
            if !recorded(&s.keyid, &s.sig) {
                problems.push(format!(
                    "the signature by {} is not in the transcript",
                    s.keyid
                ));
            }
        }
        let init = self.transcript.entries.first();
        let want = init
            .map(|e| e.details["trusted_root_sha256"].clone())
            .unwrap_or(Value::Null);
        let have = if Self::trusted_path(&self.dir).exists() {
            file_sha256(&Self::trusted_path(&self.dir))
                .map(Value::String)
                .unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        if want != have {
            problems.push("trusted-root.json is not the root this ceremony started from".into());
        }
        problems
    }

    /// Thresholds, version rule, expiry and role sizes, computed now.
    pub fn status(&self, now: chrono::DateTime<chrono::Utc>) -> Result<Status, CeremonyError> {
        let own = Delegator::from_metadata(&self.proposed)?;
        let new_root = own.verify_role("root", &self.proposed)?;
        let trusted_root = match &self.trusted {
            Some(t) => Some(Delegator::from_metadata(t)?.verify_role("root", &self.proposed)?),
            None => None,
        };
        let mut problems = self.transcript_problems();
        let version = self.proposed.version().unwrap_or(0);
        let want_version = self
            .trusted
            .as_ref()
            .and_then(Metadata::version)
            .map(|v| v + 1)
            .unwrap_or(1);
        if version != want_version {
            problems.push(format!(
                "the new root has version {version}; it must be exactly {want_version}"
            ));
        }
        match self.proposed.expires().map(parse_expires) {
            Some(Ok(t)) if t > now => {}
            Some(Ok(_)) => problems.push(format!("the new root expires at {}, which is in the past; set a later date with `ceremony expires`", self.proposed.expires().unwrap_or_default())),
            _ => problems.push("the new root has no valid `expires`".into()),
        }
        for (name, role) in &own.roles {
            if (role.keyids.len() as u64) < role.threshold {
                problems.push(format!(
                    "role {name} has {} key(s), fewer than its threshold {}",
                    role.keyids.len(),
                    role.threshold
                ));
            }
        }
        if !new_root.verified() {
            problems.push(format!(
                "the new root's threshold is not met: {} of {} signatures by distinct keys",
                new_root.counted(),
                new_root.threshold
            ));
            problems.extend(new_root.same_key_notes());
        }
        if let Some(t) = &trusted_root {
            if !t.verified() {
                problems.push(format!(
                    "the trusted root's threshold is not met: {} of {} signatures by its root keys",
                    t.counted(),
                    t.threshold
                ));
                problems.extend(t.same_key_notes());
            }
        }
        Ok(Status {
            version,
            payload_sha256: self.proposed.payload_sha256(),
            transcript_head: self.transcript.head.clone(),
            can_finalize: problems.is_empty(),
            new_root,
            trusted_root,
            problems,
        })
    }

    /// What this ceremony changes, for keyholders to read before they sign.
    pub fn review(&self) -> Result<Review, CeremonyError> {
        review::review(&review::Inputs {
            proposed: &self.proposed,
            trusted: self.trusted.as_ref(),
            transcript: &self.transcript,
        })
    }

    /// Writes `OUT/N.root.json` and `OUT/root.json` once everything verifies.
    pub fn finalize(
        &mut self,
        out: &Path,
        actor: &str,
        now: chrono::DateTime<chrono::Utc>,
        attestation_check: &AttestationCheck<'_>,
    ) -> Result<Vec<PathBuf>, CeremonyError> {
        let status = self.status(now)?;
        let mut problems = status.problems.clone();
        problems.extend(self.attestation_problems(attestation_check));
        if !problems.is_empty() {
            return Err(CeremonyError::NotReady(problems));
        }
        std::fs::create_dir_all(out).map_err(|e| CeremonyError::Io(out.into(), e))?;
        // Only verified signatures go out; empty or invalid entries stay behind.
        let mut md = self.proposed.clone();
        let payload = md.payload();
        let signers = self.root_signers()?;
        let good: Vec<Signature> = md
            .signatures()
            .iter()
            .filter(|s| {
                signers
                    .iter()
                    .any(|(id, k)| *id == s.keyid && k.verify_hex(&payload, &s.sig).is_ok())
            })
            .cloned()
            .collect();
        md.edit(|_| Ok(()))?;
        for s in good {
            md.set_signature(s);
        }
        let bytes = md.to_pretty_bytes();
        let versioned = out.join(format!("{}.root.json", status.version));
        if versioned.exists()
            && std::fs::read(&versioned).map_err(|e| CeremonyError::Io(versioned.clone(), e))?
                != bytes
        {
            return Err(CeremonyError::Invalid(format!(
                "{} already exists with other content; refusing to overwrite it",
                versioned.display()
            )));
        }
        let current = out.join("root.json");
        fsutil::write_atomic(&versioned, &bytes)
            .map_err(|e| CeremonyError::Io(versioned.clone(), e))?;
        fsutil::write_atomic(&current, &bytes)
            .map_err(|e| CeremonyError::Io(current.clone(), e))?;
        self.record(actor, "finalize", json!({"out": out.display().to_string(), "files": [versioned.display().to_string(), current.display().to_string()], "sha256": hex::encode(Sha256::digest(&bytes))}))?;
        Ok(vec![versioned, current])
    }
}
