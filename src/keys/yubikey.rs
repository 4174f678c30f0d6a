//! YubiKey PIV keys through the `yubikey` crate and pcscd.

use super::error::KeyError;
use super::pin::PinPolicy;
use super::uri::YubiKeyUri;
use super::Signer;
use crate::tuf::{Key, PublicKey};

/// A signer whose key stays in a YubiKey PIV slot.
pub struct YubiKeySigner {
    uri: String,
    public: Key,
    keyid: String,
}

fn not_yet(uri: &YubiKeyUri) -> KeyError {
    KeyError::Unsupported {
        uri: uri.to_string(),
        reason: "YubiKey signing is not available in this build yet".into(),
    }
}

impl YubiKeySigner {
    /// Opens the YubiKey and slot the URI names.
    pub fn open(uri: &YubiKeyUri, _policy: &PinPolicy) -> Result<YubiKeySigner, KeyError> {
        Err(not_yet(uri))
    }
}

/// The public key in a slot.
pub fn public_key(uri: &YubiKeyUri) -> Result<PublicKey, KeyError> {
    Err(not_yet(uri))
}

impl Signer for YubiKeySigner {
    fn uri(&self) -> &str {
        &self.uri
    }
    fn public_key(&self) -> &Key {
        &self.public
    }
    fn key_id(&self) -> &str {
        &self.keyid
    }
    fn sign(&self, _message: &[u8]) -> Result<Vec<u8>, KeyError> {
        Err(KeyError::Unsupported {
            uri: self.uri.clone(),
            reason: "YubiKey signing is not available in this build yet".into(),
        })
    }
}
