//! What goes wrong talking to a remote signer: a leaf, so that `KeyError` can carry it.

use std::path::PathBuf;

/// What went wrong talking to a signer.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{what} {path}: {reason}")]
    Material {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Setup(String),
    #[error("cannot reach the signer at {base}: {reason}")]
    Connect { base: String, reason: String },
    #[error("the signer at {base} answered {status} {code}: {message}")]
    Refused {
        base: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("the signer at {base} sent an answer tufkey does not understand: {reason}")]
    Protocol { base: String, reason: String },
}
