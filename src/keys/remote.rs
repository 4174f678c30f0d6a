//! Keys held by a remote `tufkey serve` (`https://host:port/keys/<keyid>`).

use super::error::KeyError;
use super::uri::RemoteUri;
use super::Signer;
use crate::tuf::{Key, PublicKey};

/// A signer that asks a remote `tufkey serve` to sign.
pub struct RemoteSigner {
    uri: String,
    public: Key,
    keyid: String,
}

fn not_yet(uri: &RemoteUri) -> KeyError {
    KeyError::Unsupported {
        uri: uri.to_string(),
        reason: "remote signing is not available in this build yet".into(),
    }
}

impl RemoteSigner {
    /// Connects to the signer and fetches the key's public half.
    pub fn open(uri: &RemoteUri) -> Result<RemoteSigner, KeyError> {
        Err(not_yet(uri))
    }
}

/// The public key of a remote key.
pub fn public_key(uri: &RemoteUri) -> Result<PublicKey, KeyError> {
    Err(not_yet(uri))
}

impl Signer for RemoteSigner {
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
            reason: "remote signing is not available in this build yet".into(),
        })
    }
}
