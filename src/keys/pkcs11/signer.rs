//! [`Pkcs11Signer`]: a key whose private half stays on the token, signing with one retry
//! after stale sessions and a clear refusal when the device is gone.

use std::sync::{Arc, Mutex};

use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{KeyType as CkKeyType, ObjectHandle};
use sha2::{Digest, Sha256};

use crate::keys::error::KeyError;
use crate::keys::pin::{PinPolicy, Secret};
use crate::keys::signer::{Done, Signer};
use crate::keys::uri::Pkcs11Uri;
use crate::tuf::{Key, PublicKey};

use super::answers::{brief, device_trouble};
use super::login::{LoginBy, LoginFailure};
use super::module::Live;
use super::parallel;
use super::state::lock;
use super::token::Token;

#[derive(Debug, Clone, Copy)]
enum Mech {
    Ecdsa,
    Eddsa,
    RsaPss,
}

/// A signer whose private key stays on the token.
pub struct Pkcs11Signer {
    token: Arc<Token>,
    /// The key's handle with the module generation it was found in; found again after
    /// the module is re-initialised or the device came back (handles do not survive).
    handle: Mutex<Option<(u64, ObjectHandle)>>,
    /// The private key's type, checked when the key is found again.
    key_type: CkKeyType,
    mech: Mech,
    uri: String,
    /// What `open` was given, to log in again and find the key after a device outage.
    source: Pkcs11Uri,
    /// The PIN policy for logging in again: never interactive, never a final try.
    policy: PinPolicy,
    /// The PIN this signer (or another signer of the token) logged in with, to log in
    /// again after the device came back. Held here, not in the token (tokens live in a
    /// static map that is never dropped), so it is zeroized when the last signer holding
    /// it is dropped; forgotten when the token refused a login tufkey made by itself.
    pin: Mutex<Option<Arc<Secret>>>,
    public: Key,
    keyid: String,
}

impl Pkcs11Signer {
    /// Finds the key, logs in (PIN rules apply) and prepares to sign.
    pub fn open(uri: &Pkcs11Uri, policy: &PinPolicy) -> Result<Pkcs11Signer, KeyError> {
        let token = Token::open(uri)?;
        let shown = uri.to_string();
        // Look at the public half first: a wrong URI is reported before any PIN is asked.
        let publics = token.public_keys(uri)?;
        if publics.len() > 1 {
            return Err(KeyError::AmbiguousObject {
                uri: shown,
                token: token.label.clone(),
                count: publics.len(),
                matches: publics
                    .iter()
                    .map(|k| format!("object={} id={}", k.label, hex::encode(&k.id)))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let (generation, handle, kt, pin) = {
            let live = token.enter()?;
            let pin = token
                .login_in(&live, uri, policy, LoginBy::Caller, None)
                .map_err(LoginFailure::into_error)?;
            let (handle, kt) = token.private_key_in(&live, uri)?;
            (live.generation(), handle, kt, pin)
        };
        let public = match publics.into_iter().next() {
            Some(k) => k.public.map_err(|reason| KeyError::Unsupported { uri: shown.clone(), reason })?,
            None => {
                return Err(KeyError::Unsupported {
                    uri: shown,
                    reason: "the token holds the private key but no public key object with the same label and id; tufkey needs it to name the key".into(),
                })
            }
        };
        let mech = match (&public, kt) {
            (PublicKey::EcdsaP256(_), k) if k == CkKeyType::EC => Mech::Ecdsa,
            (PublicKey::Ed25519(_), k) if k == CkKeyType::EC_EDWARDS => Mech::Eddsa,
            (PublicKey::RsaPss(_), k) if k == CkKeyType::RSA => Mech::RsaPss,
            _ => {
                return Err(KeyError::Unsupported {
                    uri: shown,
                    reason: "the private and public objects are of different key types".into(),
                })
            }
        };
        let tuf_key = public.to_tuf_key();
        let keyid = tuf_key.key_id();
        Ok(Pkcs11Signer {
            token,
            handle: Mutex::new(Some((generation, handle))),
            key_type: kt,
            mech,
            uri: shown,
            source: uri.clone(),
            policy: PinPolicy {
                interactive: false,
                force: false,
                ..*policy
            },
            pin: Mutex::new(pin),
            public: tuf_key,
            keyid,
        })
    }

    /// The token this key lives on.
    pub fn token(&self) -> &Arc<Token> {
        &self.token
    }
}

impl Signer for Pkcs11Signer {
    fn uri(&self) -> &str {
        &self.uri
    }
    fn public_key(&self) -> &Key {
        &self.public
    }
    fn key_id(&self) -> &str {
        &self.keyid
    }
    /// Signs in the token. When the device went away the answer is at once a
    /// [`KeyError::DeviceUnavailable`]; later calls look for the token again (see
    /// `Token::recover`: re-found by label and serial, the module re-initialised at most
    /// once a second, less often while it stays away), log in again with the PIN this
    /// signer holds (never a prompt, never a final try; a failure other than a device
    /// that is plainly gone stops all further tries), find the key again and sign. A
    /// failed C_Login is never followed by another in the same call.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        if self.token.is_down() {
            self.token.recover(&self.uri)?;
        }
        match self.sign_once(message) {
            Err(Failure::Other(e)) if device_trouble(&e) => match self.token.probe(&self.uri) {
                Ok(()) => {
                    // The token answers: the sessions, the login or the handle are stale
                    // (an HSM that restarted, a login that was dropped). Fresh sessions,
                    // a new login from the PIN this process holds, the key found again,
                    // one retry.
                    self.token.reset();
                    *lock(&self.handle) = None;
                    match self.sign_once(message) {
                        Err(Failure::Other(e2)) if device_trouble(&e2) => {
                            Err(self.token.mark_down(
                                &self.uri,
                                format!(
                                    "{}, and again with fresh sessions: {}",
                                    brief(&e),
                                    brief(&e2)
                                ),
                            ))
                        }
                        other => other.map_err(Failure::into_error),
                    }
                }
                Err(gone) => Err(self
                    .token
                    .mark_down(&self.uri, format!("{}; then {}", brief(&e), brief(&gone)))),
            },
            other => other.map_err(Failure::into_error),
        }
    }

    /// Over several sessions of the token at once ([`parallel::threads`]).
    fn sign_many(&self, messages: &[&[u8]]) -> Vec<Result<Vec<u8>, KeyError>> {
        self.sign_many_with(messages, &|_, _| {})
    }

    fn sign_many_with(
        &self,
        messages: &[&[u8]],
        done: &Done<'_>,
    ) -> Vec<Result<Vec<u8>, KeyError>> {
        parallel::sign_parallel(self, messages, parallel::threads(), done)
    }
}

/// How one signing attempt failed.
enum Failure {
    /// C_Login was called and failed: it may have spent a PIN try, so the attempt is
    /// never repeated within the same request.
    Login(KeyError),
    /// Anything else: when it may mean the device went away, the token is probed and,
    /// if it answers, the attempt is made once more with fresh sessions.
    Other(KeyError),
}

impl Failure {
    fn into_error(self) -> KeyError {
        match self {
            Failure::Login(e) | Failure::Other(e) => e,
        }
    }
}

impl Pkcs11Signer {
    /// One attempt: logs in again when needed (tufkey by itself), then signs.
    fn sign_once(&self, message: &[u8]) -> Result<Vec<u8>, Failure> {
        let live = self.token.enter().map_err(Failure::Other)?;
        let held = lock(&self.pin).clone();
        match self
            .token
            .login_in(&live, &self.source, &self.policy, LoginBy::Itself, held)
        {
            Ok(Some(pin)) => *lock(&self.pin) = Some(pin),
            Ok(None) => {}
            Err(failure) => {
                if self.token.login_refused() {
                    // Never tried again: no reason to keep it in memory.
                    *lock(&self.pin) = None;
                }
                // Only a failed C_Login forbids the retry.
                return Err(match failure {
                    LoginFailure::Tried(e) => Failure::Login(e),
                    LoginFailure::NotTried(e) => Failure::Other(e),
                });
            }
        }
        self.sign_logged_in(&live, message).map_err(Failure::Other)
    }

    /// Finds the key again when its handle is of an older module generation, and signs.
    fn sign_logged_in(&self, live: &Live<'_>, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let generation = live.generation();
        let known = *lock(&self.handle);
        let handle = match known {
            Some((g, h)) if g == generation => h,
            _ => {
                let (h, kt) = self.token.private_key_in(live, &self.source)?;
                if kt != self.key_type {
                    return Err(KeyError::Unsupported {
                        uri: self.uri.clone(),
                        reason: format!(
                            "after the token came back the key has type {kt:?}, not {:?}; is it the same token?",
                            self.key_type
                        ),
                    });
                }
                *lock(&self.handle) = Some((generation, h));
                h
            }
        };
        let session = self.token.session_in(live)?;
        let ck = |source| KeyError::Pkcs11 {
            op: "C_Sign",
            uri: self.uri.clone(),
            err: source,
        };
        match self.mech {
            Mech::Ecdsa => {
                // CKM_ECDSA over a digest hashed here: portable, and SoftHSM lacks CKM_ECDSA_SHA256.
                let digest = Sha256::digest(message);
                let raw = session
                    .sign(&Mechanism::Ecdsa, handle, &digest)
                    .map_err(ck)?;
                let sig = p256::ecdsa::Signature::from_slice(&raw).map_err(|e| {
                    KeyError::Unsupported {
                        uri: self.uri.clone(),
                        reason: format!(
                            "the token returned a malformed ECDSA signature ({} bytes): {e}",
                            raw.len()
                        ),
                    }
                })?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            Mech::Eddsa => {
                let m = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
                session.sign(&m, handle, message).map_err(ck)
            }
            Mech::RsaPss => {
                let m = Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
                    hash_alg: MechanismType::SHA256,
                    mgf: PkcsMgfType::MGF1_SHA256,
                    s_len: 32.into(),
                });
                session.sign(&m, handle, message).map_err(ck)
            }
        }
    }
}
