//! The one interface every audit sink offers. The daemon's stores and the CLI append
//! through it and never ask which kind of log is behind it.

use std::future::Future;
use std::pin::Pin;

use super::error::AuditError;
use super::event::{Committed, Event};

/// A boxed future borrowing the sink (the trait stays object-safe).
pub type SinkFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Somewhere audit entries are made durable, in one hash chain: the JSON-lines file
/// ([`super::AuditLog`]) or the replicas' PostgreSQL tables ([`super::pg::PgSink`]).
pub trait Sink: Send + Sync {
    /// Appends `event`; resolves once it is durable (fsynced, or committed). For the
    /// daemon, inside its runtime.
    fn append(&self, event: Event) -> SinkFuture<'_, Result<Committed, AuditError>>;

    /// Appends `events` in one commit (one fsync, or one transaction): all of them or
    /// none; resolves with where each landed, in order. A batch of signatures is
    /// answered only once every one of its entries is durable, for one disk flush.
    fn append_many(&self, events: Vec<Event>)
        -> SinkFuture<'_, Result<Vec<Committed>, AuditError>>;

    /// As [`Sink::append_many`], blocking the calling thread: for the daemon's blocking
    /// workers (the file sink commits on the caller's thread, leader/follower) and the
    /// CLI. Must not be called from an async task.
    fn append_many_blocking(&self, events: Vec<Event>) -> Result<Vec<Committed>, AuditError>;

    /// As [`Sink::append`], blocking the calling thread (the CLI). Must not be called
    /// from inside an async runtime.
    fn append_blocking(&self, event: Event) -> Result<Committed, AuditError>;
}
