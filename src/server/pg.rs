//! The PostgreSQL store, for several signer replicas behind a load balancer.
//!
//! Two tables of its own, created at start if missing (under the advisory lock every
//! tufkey DDL takes, so replicas that start together do not race on the DDL), and the
//! audit chain through the PostgreSQL audit sink ([`crate::audit::pg`]):
//!
//! - `tufkey_versions (repository, role) → version`: a claim is one transaction that
//!   takes the row with `SELECT … FOR UPDATE`, so two replicas claiming the same
//!   version serialise on the row lock and the second sees the first's version: one
//!   signs, the other is refused. No check-then-write across round trips.
//! - `tufkey_rate (identity) → tokens, at`: the token bucket, refilled and taken in
//!   one `INSERT … ON CONFLICT DO UPDATE` (the conflicting row is locked), on the
//!   database's clock so replicas agree.
//!
//! Connections (TLS the libpq way, passwords redacted) come from [`crate::pg`].

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Mutex;
use tokio_postgres::Client;

use super::error::ServerError;
use super::rate::Rate;
use super::store::{Opened, ReserveError, Store, StoreError, StoreFuture};
use crate::audit::pg::PgSink;
use crate::audit::{Committed, Event, Sink};
use crate::pg::{connect, db_err, ensure_tables, parse_url, pg_err, redact_url, PgError, Target};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tufkey_versions (
    repository text NOT NULL,
    role text NOT NULL,
    version bigint NOT NULL CHECK (version >= 0),
    PRIMARY KEY (repository, role)
);
CREATE TABLE IF NOT EXISTS tufkey_rate (
    identity text PRIMARY KEY,
    tokens double precision NOT NULL,
    at timestamptz NOT NULL,
    taken boolean NOT NULL
);
";

/// The PostgreSQL store: a few pooled connections for version claims and rate
/// buckets, and the audit sink with its own writer task and connection.
pub struct PgStore {
    /// Redacted: safe for messages.
    url: String,
    config: Target,
    /// Transactions need a connection of their own; a claim holds one only for its
    /// three statements. A broken connection is replaced on next use.
    pool: Vec<Mutex<Option<Client>>>,
    next: AtomicUsize,
    audit: PgSink,
}

impl PgStore {
    /// Connects, creates the tables if needed, opens the audit sink (which verifies
    /// the whole chain against its head row: a broken or truncated chain stops the
    /// daemon, as with the file store) and keeps the first connection in the pool.
    pub async fn open(url: &str, pool: usize) -> Result<(PgStore, Opened), ServerError> {
        let config = parse_url(url).map_err(ServerError::State)?;
        let shown = redact_url(url);
        let mut client = connect(&config, &shown).await.map_err(StoreError::from)?;
        ensure_schema(&mut client, &shown)
            .await
            .map_err(StoreError::from)?;
        let (audit, verified) = PgSink::open(&config, &shown).await?;
        let opened = Opened {
            entries: verified.entries.len() as u64,
            head: verified.head,
        };
        let n = pool.clamp(1, 16);
        let mut first = Some(client);
        let pool = (0..n).map(|_| Mutex::new(first.take())).collect();
        Ok((
            PgStore {
                url: shown,
                config,
                pool,
                next: AtomicUsize::new(0),
                audit,
            },
            opened,
        ))
    }

    /// A free pooled connection (or the next one, waiting for it), connected.
    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, StoreError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.pool.len();
        let mut guard = None;
        for i in 0..n {
            if let Ok(g) = self.pool[(start + i) % n].try_lock() {
                guard = Some(g);
                break;
            }
        }
        let mut guard = match guard {
            Some(g) => g,
            None => self.pool[start % n].lock().await,
        };
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(connect(&self.config, &self.url).await?);
        }
        Ok(guard)
    }

    async fn reserve_inner(
        &self,
        repo: &str,
        role: &str,
        version: u64,
    ) -> Result<u64, ReserveError> {
        let v = i64::try_from(version).map_err(|_| ReserveError::OutOfRange(version))?;
        let mut guard = self.client().await?;
        let Some(client) = guard.as_mut() else {
            return Err(StoreError::from(pg_err(&self.url, "no connection")).into());
        };
        let e = |e: tokio_postgres::Error| store_err(&self.url, &e);
        let tx = client.transaction().await.map_err(e)?;
        // Make sure the row exists, then lock it: every claim for this (repository,
        // role) queues on this lock until the one before it committed.
        tx.execute(
            "INSERT INTO tufkey_versions (repository, role, version) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
            &[&repo, &role],
        )
        .await
        .map_err(e)?;
        let row = tx
            .query_one(
                "SELECT version FROM tufkey_versions WHERE repository = $1 AND role = $2 FOR UPDATE",
                &[&repo, &role],
            )
            .await
            .map_err(e)?;
        let last: i64 = row.try_get(0).map_err(e)?;
        let last = u64::try_from(last).unwrap_or(0);
        if version <= last {
            tx.rollback().await.map_err(e)?;
            return Err(ReserveError::NotIncreasing { last });
        }
        tx.execute(
            "UPDATE tufkey_versions SET version = $3 WHERE repository = $1 AND role = $2",
            &[&repo, &role, &v],
        )
        .await
        .map_err(e)?;
        tx.commit().await.map_err(e)?;
        Ok(last)
    }

    async fn release_inner(
        &self,
        repo: &str,
        role: &str,
        version: u64,
        prev: u64,
    ) -> Result<(), StoreError> {
        let (Ok(v), Ok(p)) = (i64::try_from(version), i64::try_from(prev)) else {
            return Ok(());
        };
        let guard = self.client().await?;
        let Some(client) = guard.as_ref() else {
            return Err(pg_err(&self.url, "no connection").into());
        };
        // One statement: only undoes our own claim, never a later replica's.
        client
            .execute(
                "UPDATE tufkey_versions SET version = $4 WHERE repository = $1 AND role = $2 AND version = $3",
                &[&repo, &role, &v, &p],
            )
            .await
            .map_err(|e| store_err(&self.url, &e))?;
        Ok(())
    }

    async fn take_inner(
        &self,
        identity: &str,
        rate: Rate,
        n: u32,
    ) -> Result<Result<(), u64>, StoreError> {
        let cap = f64::from(rate.count);
        let want = f64::from(n);
        let per_sec = cap / rate.period.as_secs_f64();
        let guard = self.client().await?;
        let Some(client) = guard.as_ref() else {
            return Err(pg_err(&self.url, "no connection").into());
        };
        // Refill and take in one statement; the conflicting row is locked for it.
        let row = client
            .query_one(
                "INSERT INTO tufkey_rate AS r (identity, tokens, at, taken) VALUES ($1, CASE WHEN $2::float8 >= $4::float8 THEN $2::float8 - $4::float8 ELSE $2::float8 END, now(), $2::float8 >= $4::float8)
                 ON CONFLICT (identity) DO UPDATE SET
                   tokens = LEAST($2::float8, r.tokens + EXTRACT(EPOCH FROM (now() - r.at))::float8 * $3::float8)
                          - CASE WHEN LEAST($2::float8, r.tokens + EXTRACT(EPOCH FROM (now() - r.at))::float8 * $3::float8) >= $4::float8 THEN $4::float8 ELSE 0 END,
                   at = now(),
                   taken = LEAST($2::float8, r.tokens + EXTRACT(EPOCH FROM (now() - r.at))::float8 * $3::float8) >= $4::float8
                 RETURNING tokens, taken",
                &[&identity, &cap, &per_sec, &want],
            )
            .await
            .map_err(|e| store_err(&self.url, &e))?;
        let tokens: f64 = row.try_get(0).map_err(|e| store_err(&self.url, &e))?;
        let taken: bool = row.try_get(1).map_err(|e| store_err(&self.url, &e))?;
        Ok(if taken {
            Ok(())
        } else {
            Err(((want - tokens) / per_sec).ceil().max(1.0) as u64)
        })
    }
}

impl Store for PgStore {
    fn reserve<'a>(
        &'a self,
        repo: &'a str,
        role: &'a str,
        version: u64,
    ) -> StoreFuture<'a, Result<u64, ReserveError>> {
        Box::pin(self.reserve_inner(repo, role, version))
    }

    fn release<'a>(
        &'a self,
        repo: &'a str,
        role: &'a str,
        version: u64,
        prev: u64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        Box::pin(self.release_inner(repo, role, version, prev))
    }

    fn take_tokens<'a>(
        &'a self,
        identity: &'a str,
        rate: Rate,
        n: u32,
    ) -> StoreFuture<'a, Result<Result<(), u64>, StoreError>> {
        Box::pin(self.take_inner(identity, rate, n))
    }

    fn append(&self, event: Event) -> StoreFuture<'_, Result<Committed, StoreError>> {
        Box::pin(async move { Ok(self.audit.append(event).await?) })
    }

    fn append_many(
        &self,
        events: Vec<Event>,
    ) -> StoreFuture<'_, Result<Vec<Committed>, StoreError>> {
        Box::pin(async move { Ok(self.audit.append_many(events).await?) })
    }

    fn append_many_blocking(&self, events: Vec<Event>) -> Result<Vec<Committed>, StoreError> {
        Ok(self.audit.append_many_blocking(events)?)
    }

    fn snapshot(&self) -> Result<(), StoreError> {
        // Every claim is committed as it is made: nothing lives only in memory.
        Ok(())
    }
}

/// A driver error as the store reports it (the redacted URL and the server's words).
fn store_err(url: &str, e: &tokio_postgres::Error) -> StoreError {
    db_err(url, e).into()
}

/// Creates the store's tables unless they exist.
async fn ensure_schema(client: &mut Client, url: &str) -> Result<(), PgError> {
    ensure_tables(client, url, &["tufkey_versions", "tufkey_rate"], SCHEMA).await
}
