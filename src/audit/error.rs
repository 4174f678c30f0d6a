//! What can go wrong with an audit log, in either sink.

use std::path::PathBuf;

use crate::pg::PgError;

/// What can go wrong with an audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("audit log {path}, line {line}: {reason}")]
    Broken {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("audit log {path} is in use by another `tufkey serve` ({lock} is locked); one daemon per audit log (replicas share a PostgreSQL store instead), while CLI commands may append to it at any time")]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("audit log {path}: {reason}; nothing more is appended to it: run `tufkey audit verify {path}` to find where the chain breaks")]
    Tail { path: PathBuf, reason: String },
    #[error("audit log {path}: waited {secs} s for its lock without getting it: other processes kept it locked all that time (a hung writer, or a `tufkey serve` older than this tufkey, which locks the log for its whole run: upgrade it); `lsof {path}` or /proc/locks shows who holds it")]
    Busy { path: PathBuf, secs: u64 },
    #[error("audit log {path}: waited {secs} s for a shared lock to read it without getting it: another process kept it locked all that time (a `tufkey serve` older than this tufkey, which locks the log for its whole run, or a hung writer); stop or upgrade that process, or verify a copy of the file (a batch being written while it is copied may then show as an incomplete last line)")]
    ReadBusy { path: PathBuf, secs: u64 },
    #[error("audit log {path}: {reason} while this process had it open; nothing more is appended to the old file, so that the log does not split into two chains. Restart `tufkey serve` (or rerun the command) so that it opens the file now at {path}; a tufkey audit log must not be rotated by renaming it under a running daemon: stop the daemon, move the log away, start it again (docs/audit.md)")]
    Replaced { path: PathBuf, reason: String },
    #[error("audit log {path}: the writer has stopped; entries can no longer be made durable")]
    Stopped { path: PathBuf },
    /// The writer thread's report of a failed commit (it names the log).
    #[error("{0}")]
    Failed(String),
    /// The PostgreSQL sink's database could not be used.
    #[error(transparent)]
    Postgres(#[from] PgError),
}
