//! NotaryError: everything that can go wrong reading a Notary key store or trust data,
//! each naming the file (and key id) involved and what to do. A leaf of `notary/`.

use std::path::PathBuf;

use crate::ceremony::CeremonyError;
use crate::keys::KeyError;

/// Why a Notary key store, key file or trust repository could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotaryError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A key file that is not one of the formats Notary wrote, or is damaged.
    #[error("{path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    /// Decryption failed: the passphrase is not the one this file was encrypted with.
    #[error("{path}: wrong passphrase (the file could not be decrypted with it); use the passphrase Notary asked for when it made this key")]
    WrongPassphrase { path: PathBuf },
    /// No key in the store has this key id.
    #[error("no key with id {keyid} in the Notary key store {dir} (known: {known}); `tufkey notary keys {dir}` lists them")]
    NoSuchKey {
        keyid: String,
        dir: PathBuf,
        known: String,
    },
    /// Trust data that cannot be read as Notary wrote it.
    #[error("{path}: {reason}")]
    Metadata { path: PathBuf, reason: String },
    /// The command line named something that does not fit (no GUN, several GUNs…).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Ceremony(#[from] CeremonyError),
}

impl NotaryError {
    /// An `Io` error for `path`, for `map_err`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> NotaryError {
        let path = path.into();
        move |source| NotaryError::Io { path, source }
    }

    /// A `KeyFile` error for `path`.
    pub fn key_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> NotaryError {
        NotaryError::KeyFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
