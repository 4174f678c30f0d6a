//! Keys named by URI, and the one trait every backend implements.
//!
//! Backends: [`pkcs11`] (HSMs, SoftHSM) and [`software`] (`file:` keys). None of them
//! knows about ceremonies, HTTP or metadata files.

pub mod error;
pub mod pin;
pub mod pin_cache;
#[cfg(feature = "yubikey")]
pub mod piv_attest;
pub mod pkcs11;
pub mod remote;

pub mod software;
pub mod uri;
#[cfg(feature = "yubikey")]
pub mod yubikey;
#[cfg(feature = "yubikey")]
mod yubikey_mgm;

pub use error::KeyError;
pub use pin::{PinPolicy, Secret};
pub use uri::{KeyUri, Pkcs11Uri};

use crate::tuf::{Key, PublicKey, Signature};

/// PIV PIN policy for a new YubiKey key (`--pin-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PivPinPolicy {
    /// The slot's default (9c: always).
    Default,
    /// The PIN once per session.
    Once,
    /// The PIN before every signature.
    Always,
}

/// PIV touch policy for a new YubiKey key (`--touch-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PivTouchPolicy {
    /// No touch.
    Never,
    /// A touch for every signature.
    Always,
    /// A touch, remembered for 15 seconds.
    Cached,
}

/// A key that can sign. `message` is the exact canonical bytes; each backend hashes as
/// its mechanism needs (Ed25519 signs the whole message). Blocking.
pub trait Signer: Send + Sync {
    /// The key's URI, with any PIN redacted.
    fn uri(&self) -> &str;
    /// The TUF public key.
    fn public_key(&self) -> &Key;
    /// The TUF key id of [`Signer::public_key`].
    fn key_id(&self) -> &str;
    /// A signature in TUF's encoding for the key's scheme.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError>;
}

/// Opens the key a URI names, logging in or decrypting as `policy` allows.
pub fn open_signer(uri: &str, policy: &PinPolicy) -> Result<Box<dyn Signer>, KeyError> {
    match KeyUri::parse(uri)? {
        KeyUri::Pkcs11(u) => Ok(Box::new(pkcs11::Pkcs11Signer::open(&u, policy)?)),
        KeyUri::File(f) => Ok(Box::new(software::FileSigner::open(&f.path, policy)?)),
        KeyUri::YubiKey(y) => open_yubikey(&y, policy),
        KeyUri::Remote(r) => Ok(Box::new(remote::RemoteSigner::open(&r)?)),
    }
}

#[cfg(feature = "yubikey")]
fn open_yubikey(uri: &uri::YubiKeyUri, policy: &PinPolicy) -> Result<Box<dyn Signer>, KeyError> {
    Ok(Box::new(yubikey::YubiKeySigner::open(uri, policy)?))
}

#[cfg(not(feature = "yubikey"))]
fn open_yubikey(uri: &uri::YubiKeyUri, _: &PinPolicy) -> Result<Box<dyn Signer>, KeyError> {
    Err(KeyError::Unsupported {
        uri: uri.to_string(),
        reason: "this tufkey was built without the `yubikey` feature".into(),
    })
}

/// Signs `message` and checks the result with the key's own public key before handing
/// it out, so a wrong mechanism or a faulty device never produces a bad signature file.
pub fn sign_checked(signer: &dyn Signer, message: &[u8]) -> Result<Signature, KeyError> {
    let raw = signer.sign(message)?;
    let sig = Signature::new(signer.key_id(), &raw);
    signer
        .public_key()
        .verify_hex(message, &sig.sig)
        .map_err(|reason| KeyError::SelfCheck {
            uri: signer.uri().to_string(),
            reason,
        })?;
    Ok(sig)
}

/// The public key a URI names, without a PIN where the backend allows: PKCS#11 public
/// objects, or the `.pub.json` beside a `file:` key (else the passphrase is needed).
pub fn public_key(uri: &str, policy: &PinPolicy) -> Result<PublicKey, KeyError> {
    match KeyUri::parse(uri)? {
        KeyUri::Pkcs11(u) => {
            let token = pkcs11::Token::open(&u)?;
            let mut keys = token.public_keys(&u)?;
            match keys.len() {
                0 => Err(KeyError::NoObject {
                    uri: u.to_string(),
                    token: token.label.clone(),
                    present: describe(&token.public_keys(&u.token_only())?),
                }),
                1 => keys
                    .remove(0)
                    .public
                    .map_err(|reason| KeyError::Unsupported {
                        uri: u.to_string(),
                        reason,
                    }),
                n => Err(KeyError::AmbiguousObject {
                    uri: u.to_string(),
                    token: token.label.clone(),
                    count: n,
                    matches: describe(&keys),
                }),
            }
        }
        KeyUri::File(f) => {
            let pub_path = software::public_path(&f.path);
            if let Ok(text) = std::fs::read_to_string(&pub_path) {
                let v: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| KeyError::KeyFile {
                        path: pub_path.clone(),
                        reason: e.to_string(),
                    })?;
                let key =
                    Key::from_value("(public key file)", &v).map_err(|e| KeyError::KeyFile {
                        path: pub_path.clone(),
                        reason: e.to_string(),
                    })?;
                return key.public_key().map_err(|reason| KeyError::KeyFile {
                    path: pub_path,
                    reason,
                });
            }
            Ok(software::read_key_file(&f.path, policy)?.public())
        }
        KeyUri::YubiKey(y) => yubikey_public(&y),
        KeyUri::Remote(r) => remote::public_key(&r),
    }
}

#[cfg(feature = "yubikey")]
fn yubikey_public(uri: &uri::YubiKeyUri) -> Result<PublicKey, KeyError> {
    yubikey::public_key(uri)
}

#[cfg(not(feature = "yubikey"))]
fn yubikey_public(uri: &uri::YubiKeyUri) -> Result<PublicKey, KeyError> {
    Err(KeyError::Unsupported {
        uri: uri.to_string(),
        reason: "this tufkey was built without the `yubikey` feature".into(),
    })
}

fn describe(keys: &[pkcs11::KeyObject]) -> String {
    if keys.is_empty() {
        return "none".into();
    }
    keys.iter()
        .map(|k| format!("object={} id={}", k.label, hex::encode(&k.id)))
        .collect::<Vec<_>>()
        .join(", ")
}
