//! The embedded store for a single daemon: the last signed versions (a snapshot file
//! raised from the audit log at start), in-memory rate buckets, and the file audit
//! sink.

use super::rate::Rate;
use super::state::{RateLimiter, VersionStore};
use super::store::{ReserveError, Store, StoreError, StoreFuture};
use crate::audit::{AuditLog, Committed, Event, Sink};

/// The embedded store for a single daemon.
pub struct LocalStore {
    versions: VersionStore,
    rate: RateLimiter,
    audit: AuditLog,
}

impl LocalStore {
    /// The store over a loaded version snapshot and an open (daemon) audit log.
    pub fn new(versions: VersionStore, audit: AuditLog) -> LocalStore {
        LocalStore {
            versions,
            rate: RateLimiter::default(),
            audit,
        }
    }
}

impl Store for LocalStore {
    fn reserve<'a>(
        &'a self,
        repo: &'a str,
        role: &'a str,
        version: u64,
    ) -> StoreFuture<'a, Result<u64, ReserveError>> {
        let r = self
            .versions
            .reserve(repo, role, version)
            .map_err(|n| ReserveError::NotIncreasing { last: n.last });
        Box::pin(async move { r })
    }

    fn release<'a>(
        &'a self,
        repo: &'a str,
        role: &'a str,
        version: u64,
        prev: u64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        self.versions.release(repo, role, version, prev);
        Box::pin(async { Ok(()) })
    }

    fn take_tokens<'a>(
        &'a self,
        identity: &'a str,
        rate: Rate,
        n: u32,
    ) -> StoreFuture<'a, Result<Result<(), u64>, StoreError>> {
        let r = self.rate.take(identity, rate, n);
        Box::pin(async move { Ok(r) })
    }

    fn append(&self, event: Event) -> StoreFuture<'_, Result<Committed, StoreError>> {
        Box::pin(async move { Ok(Sink::append(&self.audit, event).await?) })
    }

    fn append_many(
        &self,
        events: Vec<Event>,
    ) -> StoreFuture<'_, Result<Vec<Committed>, StoreError>> {
        Box::pin(async move { Ok(Sink::append_many(&self.audit, events).await?) })
    }

    fn append_many_blocking(&self, events: Vec<Event>) -> Result<Vec<Committed>, StoreError> {
        Ok(Sink::append_many_blocking(&self.audit, events)?)
    }

    fn commits_on_caller(&self) -> bool {
        true
    }

    fn snapshot(&self) -> Result<(), StoreError> {
        self.versions
            .save()
            .map_err(|e| StoreError::State(e.to_string()))
    }
}
