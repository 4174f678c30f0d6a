//! The daemon's store: one small interface for everything the daemon must remember —
//! the last signed version per (repository, role), the rate-limit buckets, and the
//! audit log — with two implementations:
//!
//! - `LocalStore` (`local.rs`), the embedded default for a single daemon: a state
//!   snapshot file, an in-memory version map and rate buckets, and the locked,
//!   fsynced JSON-lines audit log ([`crate::audit::AuditLog`]).
//! - [`super::pg::PgStore`], for several replicas behind a load balancer: the same
//!   three things in PostgreSQL, where row locks make a version claim and the audit
//!   chain's next link ([`crate::audit::pg::PgSink`]) atomic across every replica.
//!
//! The interface is object-safe (boxed futures) so the API holds a `Box<dyn Store>`
//! and never knows which one it talks to.

use std::future::Future;
use std::pin::Pin;

use super::rate::Rate;
use crate::audit::{AuditError, Committed, Event};
use crate::pg::PgError;

/// A boxed future borrowing the store.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Postgres(#[from] PgError),
    #[error("state: {0}")]
    State(String),
}

/// Why a version claim failed.
#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    /// A replay or rollback: `last` is the version already signed (or being signed).
    #[error("not above {last}, the last version signed")]
    NotIncreasing { last: u64 },
    /// The version cannot be stored (PostgreSQL keeps versions as `bigint`).
    #[error("version {0} is above 2^63-1, the largest this store keeps")]
    OutOfRange(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The audit log's position when the store was opened.
#[derive(Debug, Clone)]
pub struct Opened {
    pub entries: u64,
    pub head: String,
}

/// Everything the daemon persists. Implementations must make [`Store::reserve`]
/// atomic (concurrent claims of one version: exactly one wins) and
/// [`Store::append`] durable before it returns.
pub trait Store: Send + Sync {
    /// Claims `version` for (repository, role) if it is above the last one. Returns
    /// the previous value, for [`Store::release`].
    fn reserve<'a>(
        &'a self,
        repo: &'a str,
        role: &'a str,
        version: u64,
    ) -> StoreFuture<'a, Result<u64, ReserveError>>;

    /// Gives a claim back after signing failed, unless a later version was claimed
    /// meanwhile.
    fn release<'a>(
        &'a self,
        repo: &'a str,
        role: &'a str,
        version: u64,
        prev: u64,
    ) -> StoreFuture<'a, Result<(), StoreError>>;

    /// Takes one token from `identity`'s bucket; `Ok(Err(seconds))` says when one is
    /// back.
    fn take_token<'a>(
        &'a self,
        identity: &'a str,
        rate: Rate,
    ) -> StoreFuture<'a, Result<Result<(), u64>, StoreError>> {
        self.take_tokens(identity, rate, 1)
    }

    /// Takes `n` tokens from `identity`'s bucket at once, or none: a batch of `n`
    /// documents costs what `n` requests cost. `Ok(Err(seconds))` says when `n` are
    /// back; `n` above the bucket's size never fits (callers refuse that first).
    fn take_tokens<'a>(
        &'a self,
        identity: &'a str,
        rate: Rate,
        n: u32,
    ) -> StoreFuture<'a, Result<Result<(), u64>, StoreError>>;

    /// Appends an audit entry; returns once it is durable (fsynced or committed).
    fn append(&self, event: Event) -> StoreFuture<'_, Result<Committed, StoreError>>;

    /// Appends `events` in one commit (one fsync or one transaction), all or none;
    /// returns once they are durable.
    fn append_many(
        &self,
        events: Vec<Event>,
    ) -> StoreFuture<'_, Result<Vec<Committed>, StoreError>>;

    /// As [`Store::append_many`], on the calling thread, which may block: for the
    /// daemon's blocking workers, which make a signature's entry durable right after
    /// signing instead of handing it to another thread and back.
    fn append_many_blocking(&self, events: Vec<Event>) -> Result<Vec<Committed>, StoreError>;

    /// Whether [`Store::append_many_blocking`] may run on one of the runtime's own
    /// threads (it blocks only in its own locks and the fsync), so that a request can
    /// sign and commit without a hand-off to the blocking pool. False for a store that
    /// waits for a task on the runtime to commit.
    fn commits_on_caller(&self) -> bool {
        false
    }

    /// Writes whatever is only in memory (the local state snapshot). Blocking: call
    /// it from a blocking thread.
    fn snapshot(&self) -> Result<(), StoreError>;
}
