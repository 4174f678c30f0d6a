//! The PostgreSQL store, for several signer replicas behind a load balancer.
//!
//! Four tables, created at start if missing (under an advisory lock, so replicas that
//! start together do not race on the DDL):
//!
//! - `tufkey_versions (repository, role) → version`: a claim is one transaction that
//!   takes the row with `SELECT … FOR UPDATE`, so two replicas claiming the same
//!   version serialise on the row lock and the second sees the first's version: one
//!   signs, the other is refused. No check-then-write across round trips.
//! - `tufkey_rate (identity) → tokens, at`: the token bucket, refilled and taken in
//!   one `INSERT … ON CONFLICT DO UPDATE` (the conflicting row is locked), on the
//!   database's clock so replicas agree.
//! - `tufkey_audit (seq, line)`: the audit log, each line byte-identical to the line
//!   the file store would write. `tufkey_audit_head` (one row) holds the chain's
//!   `seq` and head hash: a writer takes it `FOR UPDATE`, chains its entries onto it,
//!   inserts them and moves the head in the same transaction, so the replicas'
//!   entries form ONE chain. Each replica's writer task batches the entries queued
//!   while its previous transaction committed (group commit, as the file store does).
//!   An entry is acknowledged only after COMMIT, i.e. after PostgreSQL flushed its WAL
//!   (`synchronous_commit` must stay on).
//!
//! The connection uses TLS when the URL asks for it the libpq way
//! (`?sslmode=verify-full&sslrootcert=ca.pem`, see [`super::pg_tls`]); without it,
//! use loopback or a unix socket (`host=/run/postgresql`); see docs/signer.md.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_postgres::{Client, NoTls};

use super::config::Rate;
use super::pg_tls;
use super::store::{Opened, ReserveError, Store, StoreError, StoreFuture};
use super::ServerError;
use crate::audit::{self, Committed, Event, Verified, GENESIS};

/// Most entries committed by one transaction.
const MAX_BATCH: usize = 512;

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
CREATE TABLE IF NOT EXISTS tufkey_audit (
    seq bigint PRIMARY KEY CHECK (seq > 0),
    line text NOT NULL
);
CREATE TABLE IF NOT EXISTS tufkey_audit_head (
    id integer PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL,
    head text NOT NULL
);
";

/// True for values of `state` that name a PostgreSQL database.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// A database to connect to: the driver's settings and, when the URL asks for TLS,
/// the rustls configuration built from its certificate files once.
/// (Debug: the driver's own Debug hides the password.)
#[derive(Clone, Debug)]
pub struct Target {
    config: tokio_postgres::Config,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Parses a connection URL; the error never repeats a password.
/// TLS settings (`sslmode=verify-full&sslrootcert=…`) are read here too, files
/// included, so a bad one stops the daemon at start (see [`super::pg_tls`]).
pub fn parse_url(url: &str) -> Result<Target, String> {
    let shown = redact_url(url);
    check_userinfo(url).map_err(|e| format!("{shown}: {e}"))?;
    let split = pg_tls::split_url(url).map_err(|e| format!("{shown}: {e}"))?;
    let tls = match &split.tls {
        Some(params) => Some(pg_tls::client_config(params).map_err(|e| format!("{shown}: {e}"))?),
        None => None,
    };
    let mut config = tokio_postgres::Config::from_str(&split.driver_url)
        .map_err(|e| format!("{shown} is not a PostgreSQL URL: {e}"))?;
    if tls.is_some() {
        // Set here, not only through the rewritten URL: a verifying mode must never
        // end as "prefer", which falls back to plain text when the server says no.
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
    }
    // An unreachable database must turn into a 503, not a request that hangs until
    // the client gives up; `?connect_timeout=N` in the URL overrides this.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(5));
    }
    Ok(Target { config, tls })
}

/// The URL with any password replaced by `***`, for messages and logs. The user info
/// is found as tokio-postgres finds it (up to the first `@` anywhere after `://`), so
/// what the driver takes for a password is what is hidden; a `password=` query
/// parameter is hidden too.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let (head, rest) = url.split_at(scheme_end);
    let (mut out, after) = match rest.find('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => (
                format!("{head}{}:***{}", &rest[..colon], &rest[at..]),
                scheme_end + colon + 4,
            ),
            None => (url.to_string(), scheme_end + at),
        },
        None => (url.to_string(), scheme_end),
    };
    if let Some(q) = out[after..].find('?').map(|q| after + q + 1) {
        let query = out[q..]
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some(("password", _)) => "password=***".to_string(),
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out.truncate(q);
        out.push_str(&query);
    }
    out
}

/// tokio-postgres takes everything up to the first `@` for the user info, a browser
/// or libpq only what comes before the host; where the two readings differ (a raw
/// `/`, `?` or `#` in a password, or an `@` in the query), the URL means different
/// things to different tools, so it is refused.
fn check_userinfo(url: &str) -> Result<(), String> {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return Ok(());
    };
    let rest = &url[scheme_end..];
    match rest.find('@') {
        Some(at) if rest[..at].contains(['/', '?', '#']) => Err(
            "a user name or password with a raw '/', '?' or '#', or an '@' after the host: percent-encode them (%2F, %3F, %23, %40)"
                .into(),
        ),
        _ => Ok(()),
    }
}

fn pg_err(url: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Postgres {
        url: url.to_string(),
        reason: e.to_string(),
    }
}

/// A driver error with its cause: tokio-postgres shows only "db error" for the
/// server's own message, which is the part an operator needs.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// [`pg_err`] for driver errors.
fn db_err(url: &str, e: &tokio_postgres::Error) -> StoreError {
    pg_err(url, describe(e))
}

/// Connects (over TLS when the URL asked for it) and drives the connection on the
/// current runtime; `url` is the redacted URL, for messages.
async fn connect(target: &Target, url: &str) -> Result<Client, StoreError> {
    let url = url.to_string();
    let (client, conn): (Client, Pin<Box<dyn Future<Output = _> + Send>>) = match &target.tls {
        Some(rustls) => {
            let (client, conn) = target
                .config
                .connect(pg_tls::RustlsConnect(rustls.clone()))
                .await
                .map_err(|e| db_err(&url, &e))?;
            (client, Box::pin(conn))
        }
        None => {
            let (client, conn) = target
                .config
                .connect(NoTls)
                .await
                .map_err(|e| db_err(&url, &e))?;
            (client, Box::pin(conn))
        }
    };
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("tufkey serve: PostgreSQL connection to {url} ended: {e}");
        }
    });
    Ok(client)
}

type Reply = oneshot::Sender<Result<Committed, String>>;

/// The PostgreSQL store: a few pooled connections for version claims and rate
/// buckets, and one audit writer task with its own connection.
pub struct PgStore {
    /// Redacted: safe for messages.
    url: String,
    config: Target,
    /// Transactions need a connection of their own; a claim holds one only for its
    /// three statements. A broken connection is replaced on next use.
    pool: Vec<Mutex<Option<Client>>>,
    next: AtomicUsize,
    audit: mpsc::UnboundedSender<(Event, Reply)>,
}

impl PgStore {
    /// Connects, creates the tables if needed, verifies the whole audit chain against
    /// its head row (a broken or truncated chain stops the daemon, as with the file
    /// store) and starts the audit writer.
    pub async fn open(url: &str, pool: usize) -> Result<(PgStore, Opened), ServerError> {
        let config = parse_url(url).map_err(ServerError::State)?;
        let shown = redact_url(url);
        let mut client = connect(&config, &shown).await?;
        ensure_schema(&mut client, &shown).await?;
        let (bytes, head_row) = read_chain(&client, &shown)
            .await?
            .unwrap_or_else(|| (Vec::new(), (0, GENESIS.to_string())));
        let verified = check_chain(&shown, &bytes, &head_row)?;
        let opened = Opened {
            entries: verified.entries.len() as u64,
            head: verified.head,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(config.clone(), shown.clone(), client, rx));
        let n = pool.clamp(1, 16);
        Ok((
            PgStore {
                url: shown,
                config,
                pool: (0..n).map(|_| Mutex::new(None)).collect(),
                next: AtomicUsize::new(0),
                audit: tx,
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
            return Err(pg_err(&self.url, "no connection").into());
        };
        let e = |e: tokio_postgres::Error| db_err(&self.url, &e);
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
            return Err(pg_err(&self.url, "no connection"));
        };
        // One statement: only undoes our own claim, never a later replica's.
        client
            .execute(
                "UPDATE tufkey_versions SET version = $4 WHERE repository = $1 AND role = $2 AND version = $3",
                &[&repo, &role, &v, &p],
            )
            .await
            .map_err(|e| db_err(&self.url, &e))?;
        Ok(())
    }

    async fn take_inner(&self, identity: &str, rate: Rate) -> Result<Result<(), u64>, StoreError> {
        let cap = f64::from(rate.count);
        let per_sec = cap / rate.period.as_secs_f64();
        let guard = self.client().await?;
        let Some(client) = guard.as_ref() else {
            return Err(pg_err(&self.url, "no connection"));
        };
        // Refill and take in one statement; the conflicting row is locked for it.
        let row = client
            .query_one(
                "INSERT INTO tufkey_rate AS r (identity, tokens, at, taken) VALUES ($1, $2::float8 - 1, now(), true)
                 ON CONFLICT (identity) DO UPDATE SET
                   tokens = LEAST($2::float8, r.tokens + EXTRACT(EPOCH FROM (now() - r.at))::float8 * $3::float8)
                          - CASE WHEN LEAST($2::float8, r.tokens + EXTRACT(EPOCH FROM (now() - r.at))::float8 * $3::float8) >= 1 THEN 1 ELSE 0 END,
                   at = now(),
                   taken = LEAST($2::float8, r.tokens + EXTRACT(EPOCH FROM (now() - r.at))::float8 * $3::float8) >= 1
                 RETURNING tokens, taken",
                &[&identity, &cap, &per_sec],
            )
            .await
            .map_err(|e| db_err(&self.url, &e))?;
        let tokens: f64 = row.try_get(0).map_err(|e| db_err(&self.url, &e))?;
        let taken: bool = row.try_get(1).map_err(|e| db_err(&self.url, &e))?;
        Ok(if taken {
            Ok(())
        } else {
            Err(((1.0 - tokens) / per_sec).ceil().max(1.0) as u64)
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

    fn take_token<'a>(
        &'a self,
        identity: &'a str,
        rate: Rate,
    ) -> StoreFuture<'a, Result<Result<(), u64>, StoreError>> {
        Box::pin(self.take_inner(identity, rate))
    }

    fn append(&self, event: Event) -> StoreFuture<'_, Result<Committed, StoreError>> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            self.audit
                .send((event, reply))
                .map_err(|_| pg_err(&self.url, "the audit writer has stopped"))?;
            match rx.await {
                Ok(Ok(c)) => Ok(c),
                Ok(Err(reason)) => Err(pg_err(&self.url, reason)),
                Err(_) => Err(pg_err(&self.url, "the audit writer has stopped")),
            }
        })
    }

    fn snapshot(&self) -> Result<(), StoreError> {
        // Every claim is committed as it is made: nothing lives only in memory.
        Ok(())
    }
}

async fn ensure_schema(client: &mut Client, url: &str) -> Result<(), StoreError> {
    let e = |e: tokio_postgres::Error| db_err(url, &e);
    // Tables that exist need no DDL, so an account without CREATE on the schema (the
    // grants docs/signer.md lists) can still use them.
    let present: bool = client
        .query_one(
            "SELECT to_regclass('tufkey_versions') IS NOT NULL AND to_regclass('tufkey_rate') IS NOT NULL \
             AND to_regclass('tufkey_audit') IS NOT NULL AND to_regclass('tufkey_audit_head') IS NOT NULL",
            &[],
        )
        .await
        .map_err(e)?
        .try_get(0)
        .map_err(e)?;
    if present {
        return Ok(());
    }
    let tx = client.transaction().await.map_err(e)?;
    // Replicas starting together would otherwise race on CREATE TABLE's catalog rows.
    tx.execute("SELECT pg_advisory_xact_lock(7472657566)", &[])
        .await
        .map_err(e)?;
    tx.batch_execute(SCHEMA).await.map_err(e)?;
    tx.execute(
        "INSERT INTO tufkey_audit_head (id, seq, head) VALUES (1, 0, $1) ON CONFLICT DO NOTHING",
        &[&GENESIS],
    )
    .await
    .map_err(e)?;
    tx.commit().await.map_err(e)
}

/// The head row: (seq, head hash).
type HeadRow = (u64, String);

/// All lines in `seq` order as the JSON-lines bytes, and the head row.
/// `None` when the database has no tufkey tables (no replica has started on it yet).
async fn read_chain(client: &Client, url: &str) -> Result<Option<(Vec<u8>, HeadRow)>, StoreError> {
    let e = |e: tokio_postgres::Error| db_err(url, &e);
    // One snapshot for both reads, so a replica appending meanwhile cannot make
    // the lines and the head row disagree.
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(e)?;
    let read = async {
        let exists = client
            .query_one(
                "SELECT to_regclass('tufkey_audit') IS NOT NULL AND to_regclass('tufkey_audit_head') IS NOT NULL",
                &[],
            )
            .await?;
        if !exists.try_get::<_, bool>(0)? {
            return Ok(None);
        }
        let head = client
            .query_one("SELECT seq, head FROM tufkey_audit_head WHERE id = 1", &[])
            .await?;
        let rows = client
            .query("SELECT line FROM tufkey_audit ORDER BY seq", &[])
            .await?;
        let mut bytes = Vec::new();
        for r in rows {
            let line: &str = r.try_get(0)?;
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
        }
        let seq: i64 = head.try_get(0)?;
        let hash: String = head.try_get(1)?;
        Ok::<_, tokio_postgres::Error>(Some((bytes, (u64::try_from(seq).unwrap_or(0), hash))))
    }
    .await;
    let end = client.batch_execute("COMMIT").await;
    let out = read.map_err(e)?;
    end.map_err(e)?;
    Ok(out)
}

/// Verifies the lines as a chain and against the head row, which pins the end:
/// entries deleted from the tail are found too.
fn check_chain(url: &str, bytes: &[u8], head: &HeadRow) -> Result<Verified, StoreError> {
    let name = std::path::PathBuf::from(url);
    let v = audit::verify_bytes(&name, bytes)?;
    if v.entries.len() as u64 != head.0 || !v.head.eq_ignore_ascii_case(&head.1) {
        return Err(StoreError::Audit(audit::AuditError::Broken {
            path: name,
            line: v.entries.len() + 1,
            reason: format!(
                "the chain ends at entry {} with head {}, but tufkey_audit_head says entry {} with head {}: entries were removed from the end or the head was changed",
                v.entries.len(),
                v.head,
                head.0,
                head.1
            ),
        }));
    }
    Ok(v)
}

/// For the CLI's blocking calls: the redacted URL, the parsed config and a small
/// runtime of its own to drive the connection on.
fn blocking_setup(url: &str) -> Result<(String, Target, tokio::runtime::Runtime), StoreError> {
    let shown = redact_url(url);
    let config = parse_url(url).map_err(|reason| StoreError::Postgres {
        url: shown.clone(),
        reason,
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| pg_err(&shown, e))?;
    Ok((shown, config, rt))
}

/// What `tufkey audit verify postgres://…` and `tufkey audit export` read: the
/// audit log in its JSON-lines form (byte-identical to a file store's log), and the
/// head row; `None` for a database without tufkey tables. Blocking (its own small
/// runtime): for the CLI.
pub fn export_blocking(url: &str) -> Result<Option<(Vec<u8>, u64, String)>, StoreError> {
    let (shown, config, rt) = blocking_setup(url)?;
    rt.block_on(async {
        let client = connect(&config, &shown).await?;
        let chain = read_chain(&client, &shown).await?;
        Ok(chain.map(|(bytes, (seq, head))| (bytes, seq, head)))
    })
}

/// Verifies the PostgreSQL-held chain, the head row included. Blocking. A database
/// without tufkey tables is an empty log when `missing_ok` (`serve --check` before
/// the first start), and an error otherwise (most likely the wrong database).
pub fn verify_blocking(url: &str, missing_ok: bool) -> Result<Verified, StoreError> {
    match export_blocking(url)? {
        Some((bytes, seq, head)) => check_chain(&redact_url(url), &bytes, &(seq, head)),
        None if missing_ok => Ok(Verified {
            entries: Vec::new(),
            head: GENESIS.into(),
        }),
        None => Err(no_tables(url)),
    }
}

/// The error for a database that holds no tufkey audit log.
pub fn no_tables(url: &str) -> StoreError {
    pg_err(
        &redact_url(url),
        "no tufkey audit log here (no tufkey_audit table): is this the database the replicas use?",
    )
}

/// Appends audit entries to the PostgreSQL-held chain from outside a daemon (CLI
/// commands run with `--audit-log postgres://…`), through the same transaction the
/// replicas' writers use ([`commit`]): the entries join the replicas' ONE chain.
/// Blocking (its own small runtime).
pub struct AuditAppender {
    // Dropped before the runtime that drives its connection.
    client: Client,
    config: Target,
    url: String,
    rt: tokio::runtime::Runtime,
}

impl AuditAppender {
    /// Connects (TLS as the URL asks) and creates the tufkey tables if missing, as a
    /// replica does at start. Errors name the redacted URL, never a password.
    pub fn open_blocking(url: &str) -> Result<AuditAppender, StoreError> {
        let (shown, config, rt) = blocking_setup(url)?;
        let client = rt.block_on(async {
            let mut client = connect(&config, &shown).await?;
            ensure_schema(&mut client, &shown).await?;
            Ok::<_, StoreError>(client)
        })?;
        Ok(AuditAppender {
            client,
            config,
            url: shown,
            rt,
        })
    }

    /// Appends one entry; returns once its transaction committed.
    pub fn append_blocking(&mut self, event: Event) -> Result<Committed, StoreError> {
        // A long interactive command (a ceremony) may outlive an idle connection.
        if self.client.is_closed() {
            self.client = self.rt.block_on(connect(&self.config, &self.url))?;
        }
        let (reply, _unused) = oneshot::channel();
        let batch = [(event, reply)];
        let done = self
            .rt
            .block_on(commit(&mut self.client, &batch))
            .map_err(|reason| pg_err(&self.url, reason))?;
        match done.into_iter().next() {
            Some(Ok(c)) => Ok(c),
            Some(Err(reason)) => Err(pg_err(&self.url, reason)),
            None => Err(pg_err(&self.url, "the entry was not committed")),
        }
    }

    /// The redacted URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The audit writer: one per replica, on its own connection.
async fn writer(
    config: Target,
    url: String,
    client: Client,
    mut rx: mpsc::UnboundedReceiver<(Event, Reply)>,
) {
    let mut client = Some(client);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if client.as_ref().is_none_or(Client::is_closed) {
            client = connect(&config, &url).await.ok();
        }
        let result = match client.as_mut() {
            Some(c) => commit(c, &batch).await,
            None => Err(format!("{url}: cannot reconnect")),
        };
        match result {
            Ok(done) => {
                for ((_, reply), c) in batch.drain(..).zip(done) {
                    let _ = reply.send(c);
                }
            }
            Err(reason) => {
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(reason.clone()));
                }
            }
        }
    }
}

/// Chains `batch` onto the head in one transaction; per entry, where it landed (or
/// why that one entry could not be encoded).
async fn commit(
    client: &mut Client,
    batch: &[(Event, Reply)],
) -> Result<Vec<Result<Committed, String>>, String> {
    let tx = client.transaction().await.map_err(|e| describe(&e))?;
    let head = tx
        .query_one(
            "SELECT seq, head FROM tufkey_audit_head WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await
        .map_err(|e| describe(&e))?;
    let seq: i64 = head.try_get(0).map_err(|e| describe(&e))?;
    let mut head: String = head.try_get(1).map_err(|e| describe(&e))?;
    let mut seq =
        u64::try_from(seq).map_err(|_| "negative sequence number in tufkey_audit_head")?;
    let (mut seqs, mut lines, mut out) = (Vec::new(), Vec::new(), Vec::new());
    for (event, _) in batch {
        let encoded = audit::encode(event, seq + 1, &head)
            .map_err(|e| e.to_string())
            .and_then(|l| String::from_utf8(l).map_err(|e| e.to_string()));
        match encoded {
            Ok(line) => {
                seq += 1;
                head = audit::line_hash(line.as_bytes());
                seqs.push(i64::try_from(seq).map_err(|e| e.to_string())?);
                lines.push(line);
                out.push(Ok(Committed {
                    seq,
                    hash: head.clone(),
                }));
            }
            Err(e) => out.push(Err(e)),
        }
    }
    tx.execute(
        "INSERT INTO tufkey_audit (seq, line) SELECT * FROM UNNEST($1::bigint[], $2::text[])",
        &[&seqs, &lines],
    )
    .await
    .map_err(|e| describe(&e))?;
    let last = i64::try_from(seq).map_err(|e| e.to_string())?;
    tx.execute(
        "UPDATE tufkey_audit_head SET seq = $1, head = $2 WHERE id = 1",
        &[&last, &head],
    )
    .await
    .map_err(|e| describe(&e))?;
    tx.commit().await.map_err(|e| describe(&e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_recognised_and_passwords_redacted() {
        assert!(is_postgres_url("postgres://u@127.0.0.1:5432/db"));
        assert!(!is_postgres_url("state.json"));
        assert_eq!(
            redact_url("postgres://u:secret@127.0.0.1:5432/db"),
            "postgres://u:***@127.0.0.1:5432/db"
        );
        assert_eq!(
            redact_url("postgres://u@127.0.0.1/db"),
            "postgres://u@127.0.0.1/db"
        );
        assert!(parse_url("postgres://u@127.0.0.1:5432/db").is_ok());
        let e = parse_url("postgres://u:secret@127.0.0.1:notaport/db").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn passwords_are_hidden_where_the_driver_finds_them() {
        // tokio-postgres reads "ab/cd" as the password (up to the first '@').
        let shown = redact_url("postgres://tufkey:ab/cd@db/signer");
        assert!(
            !shown.contains("ab/cd") && !shown.contains("cd@"),
            "{shown}"
        );
        assert_eq!(
            redact_url("postgres://u@h/db?connect_timeout=3&password=secret&x=1"),
            "postgres://u@h/db?connect_timeout=3&password=***&x=1"
        );
        assert_eq!(
            redact_url("postgres://u:p@h/db?password=q"),
            "postgres://u:***@h/db?password=***"
        );
        // Such a URL means different things to different tools: refused, and the
        // message does not repeat the password.
        let e = parse_url("postgres://tufkey:ab/cd@db/signer").unwrap_err();
        assert!(e.contains("percent-encode") && !e.contains("ab/cd"), "{e}");
        let e =
            parse_url("postgres://?x=a@db.internal/signer&sslmode=verify-full&sslrootcert=/ca.pem")
                .unwrap_err();
        assert!(e.contains("percent-encode"), "{e}");
        assert!(parse_url("postgres://u:ab%2Fcd@db/signer").is_ok());
    }
}
