//! The hash-chained audit log shared by the signer daemon and the CLI: one [`Sink`]
//! interface with a file ([`AuditLog`]) and a PostgreSQL ([`pg::PgSink`])
//! implementation, one chain format ([`chain`], which the ceremony transcript reuses).
//!
//! One JSON object per line, in canonical JSON (the bytes tufkey writes are the only
//! form accepted back), each carrying `seq` (1, 2, …) and `prev`, the SHA-256 of the
//! previous line's bytes. Editing a line changes its bytes (or breaks its canonical
//! form), removing or reordering lines breaks `seq` and `prev`; so [`verify`] detects
//! any change except the removal of trailing lines, which only an externally noted
//! head hash can show (the daemon reports its head in `/healthz` and on stop).
//!
//! Entries are durable (written and fdatasynced) before [`AuditLog::append`] returns. A
//! writer thread takes every entry queued while the previous fsync ran and commits them
//! with one write and one fsync (group commit), so concurrent signers share the cost
//! of the disk flush instead of queueing behind one fsync each.
//!
//! Several processes may append to one file — a running `tufkey serve` and any number
//! of CLI commands (`tufkey sign --audit-log …`). Each batch is committed under an
//! exclusive advisory lock on the log (`flock`): the writer takes the lock, reads
//! whatever other writers appended since its own last write (and checks that those
//! lines continue the chain), chains its batch onto the real tail, writes, fdatasyncs
//! and only then unlocks. So the writers' entries interleave into ONE chain. Only one
//! *daemon* may use a log at a time ([`AuditLog::open`] holds `<log>.serve.lock` for
//! the daemon's lifetime): its replay protection is rebuilt from the log and its own
//! state file, which a second daemon would not share.
//!
//! Files, one concern each: `chain` (genesis, line hash, encoding, checking), `line`
//! (an event's canonical line, written member by member),
//! `event` and `error` (the data), `sink` (the interface), `file` + `lock` (the file
//! sink, its flock and group commit), `pg` (the PostgreSQL sink), `target` (a log
//! named by the user, opened as its sink). This file only declares and re-exports.

pub mod chain;
mod error;
mod event;
mod file;
pub(crate) mod line;
mod lock;
pub mod pg;
mod sink;
mod target;
#[cfg(test)]
mod tests;
mod torn;

pub use chain::{line_hash, verify_bytes, Verified, GENESIS};
pub use error::AuditError;
pub use event::{Committed, Event};
pub use file::{serve_lock_path, verify, AuditLog};
pub use sink::{Sink, SinkFuture};
pub use target::Target;
pub use torn::torn_path;
