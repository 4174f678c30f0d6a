//! Keys named by URI, and the one trait every backend implements.
//!
//! Backends: [`pkcs11`] (HSMs, SoftHSM), `yubikey` (PIV, feature `yubikey`), [`file`](mod@file)
//! (`file:` keys) and [`remote`] (a key held by `tufkey serve`). [`KeySource`] is the one
//! way in: it turns a URI into the backend's operations, and nothing outside it matches
//! on the kind of key. None of the backends knows about ceremonies, HTTP or metadata
//! files.

pub mod error;
pub mod file;
pub mod pin;
pub mod pin_cache;
pub mod piv_policy;
pub mod pkcs11;
pub mod remote;
pub mod secret;
pub mod signer;

pub mod source;
pub mod uri;
pub mod yubikey;

pub use error::{CardProblem, KeyError, Outcome};
pub use pin::PinPolicy;
pub use piv_policy::{PivPinPolicy, PivTouchPolicy};
pub use secret::Secret;
pub use signer::Signer;
pub use source::{Deletion, KeySource, ListedKey, NewKey, NewKeyOptions};
pub use uri::{DaemonRefusal, KeyUri, Pkcs11Uri};

use crate::tuf::{PublicKey, Signature};

/// Opens the key a URI names, logging in or decrypting as `policy` allows.
pub fn open_signer(uri: &str, policy: &PinPolicy) -> Result<Box<dyn Signer>, KeyError> {
    KeySource::parse(uri)?.signer(policy)
}

/// Signs `message` and checks the result with the key's own public key before handing
/// it out, so a wrong mechanism or a faulty device never produces a bad signature file.
pub fn sign_checked(signer: &dyn Signer, message: &[u8]) -> Result<Signature, KeyError> {
    SelfCheck::new(signer).check(message, &signer.sign(message)?)
}

/// [`sign_checked`] for many messages through [`Signer::sign_many`] (a backend may sign
/// them in parallel or in one remote batch); each signature is checked all the same,
/// with the public key decoded once for all of them.
pub fn sign_checked_many(
    signer: &dyn Signer,
    messages: &[&[u8]],
) -> Vec<Result<Signature, KeyError>> {
    let check = SelfCheck::new(signer);
    signer
        .sign_many(messages)
        .into_iter()
        .zip(messages)
        .map(|(raw, message)| check.check(message, &raw?))
        .collect()
}

/// The public key a URI names, without a PIN where the backend allows: PKCS#11 public
/// objects, or the `.pub.json` beside a `file:` key (else the passphrase is needed).
pub fn public_key(uri: &str, policy: &PinPolicy) -> Result<PublicKey, KeyError> {
    KeySource::parse(uri)?.public_key(policy)
}

/// A signer's public key decoded once, to check thousands of its signatures (decoding
/// the PEM for each would cost as much as the check itself).
pub struct SelfCheck<'a> {
    signer: &'a dyn Signer,
    key: Option<PublicKey>,
}

impl<'a> SelfCheck<'a> {
    pub fn new(signer: &'a dyn Signer) -> SelfCheck<'a> {
        SelfCheck {
            signer,
            key: signer.public_key().public_key().ok(),
        }
    }

    /// A signature as TUF writes it, checked against the key's own public key so that a
    /// wrong mechanism or a faulty token never reaches a published file.
    pub fn check(&self, message: &[u8], raw: &[u8]) -> Result<Signature, KeyError> {
        let sig = Signature::new(self.signer.key_id(), raw);
        let verified = match &self.key {
            Some(k) => k.verify(message, raw),
            // Not decodable: the full path says why.
            None => self.signer.public_key().verify_hex(message, &sig.sig),
        };
        verified.map_err(|reason| KeyError::SelfCheck {
            uri: self.signer.uri().to_string(),
            reason,
        })?;
        Ok(sig)
    }
}
