//! What can go wrong in a ceremony. A file of its own so that the transcript and the
//! review report errors without importing the ceremony itself.

use std::path::PathBuf;

use crate::tuf::TufError;

/// What went wrong in a ceremony.
#[derive(Debug, thiserror::Error)]
pub enum CeremonyError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{path}: {err}")]
    Metadata { path: PathBuf, err: TufError },
    #[error(transparent)]
    Tuf(#[from] TufError),
    #[error("{0} is not a ceremony folder (no root.json and transcript.jsonl); start one with `tufkey ceremony init`")]
    NotACeremony(PathBuf),
    #[error("{0} already holds a ceremony; use another folder")]
    Exists(PathBuf),
    #[error("transcript.jsonl line {line}: {reason}")]
    Transcript { line: usize, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("key {keyid} ({uri}) is not a root key of the trusted root or of the new root; only those keys sign a root. Add it with `ceremony add-key --role root` if it should be one")]
    NotARootKey { keyid: String, uri: String },
    #[error("the ceremony changed while this signature was being made (payload {signed} is now {now}); review and sign again")]
    Changed { signed: String, now: String },
    #[error("{other} holds a different ceremony: its payload is {theirs}, this one's is {ours}. Only copies of the same proposed root can be merged")]
    DifferentCeremony {
        other: PathBuf,
        theirs: String,
        ours: String,
    },
    #[error("cannot finalize:\n  - {}", .0.join("\n  - "))]
    NotReady(Vec<String>),
}
