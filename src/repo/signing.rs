//! Which key signs which role, checked before any PIN is asked: every URI's public half
//! must be one of the role's keys and together they must meet its threshold. Then one
//! signer per URI signs every role that uses it.

use std::collections::BTreeMap;

use super::config::RepoConfig;
use super::error::RepoError;
use super::Progress;
use crate::keys::{self, PinPolicy, Signer};
use crate::tuf::verify::RoleKeys;
use crate::tuf::Metadata;

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
    Ok(KeyPlan { roles: out })
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
        let uris = plan
            .roles
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, u)| u.clone())
            .unwrap_or_default();
        let payload = md.payload();
        let mut made = Vec::new();
        for uri in uris {
            let err = |source| RepoError::Sign {
                uri: keys::uri::redact(&uri),
                role: role.into(),
                source: Box::new(source),
            };
            if !self.open.contains_key(&uri) {
                let s = keys::open_signer(&uri, self.pins).map_err(err)?;
                self.open.insert(uri.clone(), s);
            }
            let Some(signer) = self.open.get(&uri) else {
                continue;
            };
            let sig = keys::sign_checked(signer.as_ref(), &payload).map_err(err)?;
            made.push(Made {
                role: role.into(),
                version: md.version().unwrap_or(0),
                keyid: sig.keyid.clone(),
                uri: signer.uri().to_string(),
                payload_sha256: md.payload_sha256(),
            });
            md.set_signature(sig);
            progress.advance(1);
        }
        Ok(made)
    }
}
