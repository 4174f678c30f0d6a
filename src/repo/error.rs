//! What can go wrong with a repository. Every message names the file, target path,
//! role, key URI or key id involved, and says what to do.

use std::path::PathBuf;

use crate::keys::KeyError;
use crate::tuf::paths::PathError;
use crate::tuf::TufError;

/// A repository operation that was refused or failed; nothing was published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not usable TUF metadata: {source}", path.display())]
    Metadata {
        path: PathBuf,
        #[source]
        source: TufError,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("{} is not a tufkey repository ({reason}); create one with `tufkey repo init {} --root ROOT.json`", dir.display(), dir.display())]
    NotARepository { dir: PathBuf, reason: String },
    #[error("{} already exists; `repo init` starts a repository only in a new or empty folder", path.display())]
    AlreadyExists { path: PathBuf },
    #[error("root {} does not verify: {reason}", path.display())]
    RootNotVerified { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    #[error(transparent)]
    TargetPath(#[from] PathError),
    #[error("there is no targets role `{role}` in this repository (roles: {roles})")]
    NoSuchRole { role: String, roles: String },
    #[error(
        "role `{role}` may not hold target `{path}` ({reason}); roles and their paths: {roles}"
    )]
    RoleCannotHold {
        role: String,
        path: String,
        reason: String,
        roles: String,
    },
    #[error("target `{path}` is already listed by role `{holder}`, which clients search before `{role}`; remove it there first (`tufkey repo remove … --role {holder}`)")]
    Shadowed {
        path: String,
        role: String,
        holder: String,
    },
    #[error("cannot read {}: {source}; nothing was changed", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: the {alg} given ({given}) does not match the file's ({actual}); nothing was changed")]
    HashMismatch {
        what: String,
        alg: String,
        given: String,
        actual: String,
    },
    #[error("{what}: {reason}")]
    BadTargetInfo { what: String, reason: String },
    #[error("target `{path}` is not listed by {role}; nothing was changed")]
    NotATarget { path: String, role: String },
    #[error("key {uri} (key id {keyid}) is not a key of role `{role}` (its keys: {expected}); nothing was signed and no PIN was asked for")]
    WrongKey {
        uri: String,
        keyid: String,
        role: String,
        expected: String,
    },
    #[error("key {uri} was key id {planned} when it was checked against role `{role}`, but the key opened to sign is {opened}: the key file or token changed meanwhile; nothing was published — check the key and run the command again")]
    KeyChanged {
        uri: String,
        role: String,
        planned: String,
        opened: String,
    },
    #[error("reading the public key of {uri} for role `{role}`: {source}")]
    KeyRead {
        uri: String,
        role: String,
        #[source]
        source: Box<KeyError>,
    },
    #[error("signing role `{role}` with {uri}: {source}; nothing was published")]
    Sign {
        uri: String,
        role: String,
        #[source]
        source: Box<KeyError>,
    },
    #[error("role `{role}` needs {threshold} signature(s) but the keys given make {have}; missing key ids: {missing}. Give them with --key {role}=URI or under [keys] in repo.toml; nothing was signed or published")]
    ThresholdNotMet {
        role: String,
        threshold: u64,
        have: usize,
        missing: String,
    },
    #[error("the repository is locked by {holder} (lock file {}); wait for it to finish or pass --wait 5m", lock.display())]
    Locked { lock: PathBuf, holder: String },
    #[error("role `{role}` expired at {expires}; refresh does not paper over an expired {role}: commit a new {role} with its keys (`tufkey repo commit`)")]
    Expired { role: String, expires: String },
    #[error("--count {count}: {reason}; nothing was changed")]
    BinCount { count: u64, reason: String },
    #[error("{0}")]
    Other(String),
}

impl RepoError {
    /// The key error behind a refusal to read or use a key, for callers that map device
    /// outcomes (unavailable, refused) to exit codes or HTTP statuses.
    pub fn key_error(&self) -> Option<&KeyError> {
        match self {
            RepoError::KeyRead { source, .. } | RepoError::Sign { source, .. } => Some(source),
            _ => None,
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> RepoError {
        let path = path.into();
        move |source| RepoError::Io { path, source }
    }
}
