//! Which key signs which role, checked before any PIN is asked: every URI's public half
//! must be one of the role's keys and together they must meet its threshold. Then one
//! signer per URI signs every role that uses it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use super::config::RepoConfig;
use super::error::RepoError;
use super::progress::Progress;
use crate::keys::signer::RoleMessage;
use crate::keys::{self, KeyError, PinPolicy, Signer};
use crate::tuf::verify::RoleKeys;
use crate::tuf::{Envelope, Metadata, Signature};

/// A document a repository signs: a targets role read from its tape ([`Envelope`]) or
/// a snapshot or timestamp built as [`Metadata`].
pub trait Signable {
    /// The bytes every signature covers.
    fn signed_bytes(&self) -> std::borrow::Cow<'_, [u8]>;
    fn version(&self) -> Option<u64>;
    fn set_signature(&mut self, sig: Signature);
}

impl Signable for Metadata {
    fn signed_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Owned(self.payload())
    }
    fn version(&self) -> Option<u64> {
        Metadata::version(self)
    }
    fn set_signature(&mut self, sig: Signature) {
        Metadata::set_signature(self, sig)
    }
}

impl Signable for Envelope {
    fn signed_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(self.payload())
    }
    fn version(&self) -> Option<u64> {
        Envelope::version(self)
    }
    fn set_signature(&mut self, sig: Signature) {
        Envelope::set_signature(self, sig)
    }
}

/// Key URIs per role for one run: `--key ROLE=URI` replaces repo.toml's list for ROLE.
pub fn key_uris(config: &RepoConfig, given: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut out = config.keys.clone();
    let mut replaced: Vec<&str> = Vec::new();
    for (role, uri) in given {
        if !replaced.contains(&role.as_str()) {
            out.insert(role.clone(), Vec::new());
            replaced.push(role);
        }
        out.entry(role.clone()).or_default().push(uri.clone());
    }
    out
}

/// The keys that will sign each role, checked.
pub struct KeyPlan {
    /// (role, URIs) in signing order.
    pub roles: Vec<(String, Vec<String>)>,
    /// The key id each URI's public half had when the plan was made: the key that is
    /// opened to sign must still be that one.
    pub keyids: BTreeMap<String, String>,
}

/// Checks the keys for `roles` ((name, its delegator's definition)) against their public
/// halves, read without a PIN: a URI that is not the role's key, or too few keys for
/// the threshold, stops everything here.
pub fn plan(
    roles: &[(String, RoleKeys)],
    uris: &BTreeMap<String, Vec<String>>,
    pins: &PinPolicy,
) -> Result<KeyPlan, RepoError> {
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for (role, def) in roles {
        let mut chosen: Vec<String> = Vec::new();
        let mut covered: Vec<String> = Vec::new();
        for uri in uris.get(role).map(Vec::as_slice).unwrap_or_default() {
            let keyid = match ids.get(uri) {
                Some(k) => k.clone(),
                None => {
                    let k = keys::public_key(uri, pins)
                        .map_err(|source| RepoError::KeyRead {
                            uri: keys::uri::redact(uri),
                            role: role.clone(),
                            source: Box::new(source),
                        })?
                        .to_tuf_key()
                        .key_id();
                    ids.insert(uri.clone(), k.clone());
                    k
                }
            };
            if !def.keyids.contains(&keyid) {
                return Err(RepoError::WrongKey {
                    uri: keys::uri::redact(uri),
                    keyid,
                    role: role.clone(),
                    expected: def.keyids.join(", "),
                });
            }
            if !covered.contains(&keyid) {
                covered.push(keyid);
                chosen.push(uri.clone());
            }
        }
        if (covered.len() as u64) < def.threshold {
            let missing: Vec<&str> = def
                .keyids
                .iter()
                .filter(|k| !covered.contains(k))
                .map(String::as_str)
                .collect();
            return Err(RepoError::ThresholdNotMet {
                role: role.clone(),
                threshold: def.threshold,
                have: covered.len(),
                missing: missing.join(", "),
            });
        }
        out.push((role.clone(), chosen));
    }
    Ok(KeyPlan {
        roles: out,
        keyids: ids,
    })
}

/// Open signers by URI, so a key that signs several roles logs in once.
pub struct Signers<'a> {
    pins: &'a PinPolicy,
    open: BTreeMap<String, Box<dyn Signer>>,
}

/// One signature made, for the caller's audit log.
#[derive(Debug, Clone)]
pub struct Made {
    pub role: String,
    pub version: u64,
    pub keyid: String,
    pub uri: String,
    pub payload_sha256: String,
}

impl<'a> Signers<'a> {
    pub fn new(pins: &'a PinPolicy) -> Signers<'a> {
        Signers {
            pins,
            open: BTreeMap::new(),
        }
    }

    /// Signs `md` as `role` with every URI the plan chose for it.
    pub fn sign(
        &mut self,
        plan: &KeyPlan,
        role: &str,
        md: &mut Metadata,
        progress: &dyn Progress,
    ) -> Result<Vec<Made>, RepoError> {
        let mut one = [(role.to_string(), md.clone())];
        let made = self.sign_all(plan, &mut one, progress)?;
        let [(_, signed)] = one;
        *md = signed;
        Ok(made)
    }

    /// Signs every `(role, document)` with the URIs the plan chose for its role: one
    /// [`Signer::sign_roles_with`] call per key for all the documents it signs (a token
    /// signs them over several sessions, a remote signer gets one batch). Each signature
    /// is checked against the key's public key as it arrives, on the thread that made
    /// it; any failure stops everything and nothing is returned to publish.
    pub fn sign_all<D: Signable>(
        &mut self,
        plan: &KeyPlan,
        docs: &mut [(String, D)],
        progress: &dyn Progress,
    ) -> Result<Vec<Made>, RepoError> {
        let uris_of: BTreeMap<&str, &[String]> = plan
            .roles
            .iter()
            .map(|(r, u)| (r.as_str(), u.as_slice()))
            .collect();
        // Which documents each key signs, keys in the order they are first needed.
        let mut by_uri: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, (role, _)) in docs.iter().enumerate() {
            for uri in uris_of.get(role.as_str()).copied().unwrap_or_default() {
                match by_uri.iter_mut().find(|(u, _)| u == uri) {
                    Some((_, list)) => list.push(i),
                    None => by_uri.push((uri.clone(), vec![i])),
                }
            }
        }
        // Borrowed where the document holds its payload (a 100,000-target role is not
        // copied); the signatures are set once every key has signed.
        let payloads: Vec<std::borrow::Cow<'_, [u8]>> =
            docs.iter().map(|(_, md)| md.signed_bytes()).collect();
        let mut made = Vec::new();
        let mut sigs: Vec<(usize, Signature)> = Vec::new();
        for (uri, indices) in by_uri {
            let err = |role: &str, source| RepoError::Sign {
                uri: keys::uri::redact(&uri),
                role: role.into(),
                source: Box::new(source),
            };
            if !self.open.contains_key(&uri) {
                let first = indices.first().map_or("", |i| docs[*i].0.as_str());
                let s = keys::open_signer(&uri, self.pins).map_err(|e| err(first, e))?;
                self.open.insert(uri.clone(), s);
            }
            let Some(signer) = self.open.get(&uri) else {
                continue;
            };
            let signer = signer.as_ref();
            // The plan checked this URI's key against the role before any PIN; a key file
            // replaced or a token changed since would sign with a key clients do not count.
            if let Some(planned) = plan.keyids.get(&uri) {
                if signer.key_id() != planned {
                    let first = indices.first().map_or("", |i| docs[*i].0.as_str());
                    return Err(RepoError::KeyChanged {
                        uri: keys::uri::redact(&uri),
                        role: first.into(),
                        planned: planned.clone(),
                        opened: signer.key_id().into(),
                    });
                }
            }
            let checker = keys::SelfCheck::new(signer);
            let messages: Vec<&[u8]> = indices.iter().map(|i| &*payloads[*i]).collect();
            // Each document as its own role: a remote signer checks policy and rollback
            // per role, so 16,384 bins must not all arrive as "targets".
            let to_sign: Vec<RoleMessage<'_>> = indices
                .iter()
                .zip(&messages)
                .map(|(i, m)| RoleMessage {
                    role: docs[*i].0.as_str(),
                    message: m,
                })
                .collect();
            let checked: Vec<OnceLock<Result<Signature, KeyError>>> =
                messages.iter().map(|_| OnceLock::new()).collect();
            let results = signer.sign_roles_with(&to_sign, &|j, r| {
                if let (Ok(raw), Some(m)) = (r, messages.get(j)) {
                    let _ = checked[j].set(checker.check(m, raw));
                }
                progress.advance(1);
            });
            for (j, (result, check_slot)) in results.into_iter().zip(checked).enumerate() {
                let i = indices[j];
                let role = docs[i].0.clone();
                let raw = result.map_err(|e| err(&role, e))?;
                let sig = match check_slot.into_inner() {
                    Some(c) => c,
                    None => checker.check(messages[j], &raw),
                }
                .map_err(|e| err(&role, e))?;
                made.push(Made {
                    role,
                    version: docs[i].1.version().unwrap_or(0),
                    keyid: sig.keyid.clone(),
                    uri: signer.uri().to_string(),
                    payload_sha256: hex::encode(Sha256::digest(messages[j])),
                });
                sigs.push((i, sig));
            }
        }
        drop(payloads);
        for (i, sig) in sigs {
            docs[i].1.set_signature(sig);
        }
        Ok(made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::file;
    use crate::repo::progress::NoProgress;
    use crate::tuf::KeyType;

    /// A key file swapped for another between the check against the role (no
    /// passphrase yet) and the signing: the signature would carry a key id the role does
    /// not list, so clients would not count it. Refused, and the document keeps no
    /// signature.
    #[test]
    fn a_key_replaced_after_the_plan_is_refused_and_nothing_is_signed() {
        // Only file keys read this variable; every test that sets it sets this value.
        std::env::set_var("TUFKEY_PASSPHRASE", "signing-tests passphrase");
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.p8"), dir.path().join("b.p8"));
        let pins = PinPolicy {
            force: false,
            remember: false,
            interactive: false,
        };
        let key_a = file::generate(&a, KeyType::Ed25519, &pins).unwrap();
        file::generate(&b, KeyType::Ed25519, &pins).unwrap();
        let uri = format!("file:{}", a.display());
        let role = RoleKeys {
            keyids: vec![key_a.to_tuf_key().key_id()],
            threshold: 1,
        };
        let uris = BTreeMap::from([("targets".to_string(), vec![uri])]);
        let plan = plan(&[("targets".into(), role)], &uris, &pins).unwrap();

        std::fs::copy(&b, &a).unwrap();
        std::fs::copy(file::public_path(&b), file::public_path(&a)).unwrap();
        let doc = br#"{"signatures":[],"signed":{"_type":"targets","expires":"2030-01-01T00:00:00Z","spec_version":"1.0.31","targets":{},"version":2}}"#;
        let mut docs = [("targets".to_string(), Metadata::from_slice(doc).unwrap())];
        let err = Signers::new(&pins)
            .sign_all(&plan, &mut docs, &NoProgress)
            .unwrap_err();
        assert!(matches!(err, RepoError::KeyChanged { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&plan.keyids.values().next().unwrap()[..]),
            "{text}"
        );
        assert!(text.contains("nothing was published"), "{text}");
        assert!(docs[0].1.signatures().is_empty());
    }
}
