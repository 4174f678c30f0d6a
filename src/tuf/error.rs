//! Errors of the TUF data model. Each names the place in the document that is wrong.

use super::cjson::CanonicalError;

/// What is wrong with a TUF document or a request against it.
#[derive(Debug, thiserror::Error)]
pub enum TufError {
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{path}: {reason}")]
    Schema { path: String, reason: String },
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    #[error("key {keyid} has unsupported key type `{keytype}` with scheme `{scheme}` (supported: ecdsa/ecdsa-sha2-nistp256, rsa/rsassa-pss-sha256, rsa/rsa-pkcs1v15-sha256, ed25519/ed25519)")]
    UnsupportedKey {
        keyid: String,
        keytype: String,
        scheme: String,
    },
    #[error(
        "signatures: more than one signature for key id {0}; python-tuf refuses such a file too"
    )]
    DuplicateSignature(String),
    #[error("role `{role}` lists key id {keyid} more than once")]
    DuplicateRoleKey { role: String, keyid: String },
    #[error("this public key is already listed as key id {existing}; adding it again as key id {keyid} would let one key count twice toward a threshold — use key id {existing}, or a different key")]
    SameKeyOtherId { keyid: String, existing: String },
    #[error("the delegator does not define role `{0}`")]
    UnknownRole(String),
    #[error("role `{role}` uses key id {keyid}, which the delegator's `keys` does not contain")]
    MissingKey { role: String, keyid: String },
    #[error("expires `{0}` is not in TUF's format YYYY-MM-DDTHH:MM:SSZ")]
    BadExpiry(String),
}
