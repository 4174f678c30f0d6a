//! The PostgreSQL sink: the audit chain that several signer replicas (and CLI
//! commands run with `--audit-log postgres://…`) share.
//!
//! `tufkey_audit (seq, line)` holds each line byte-identical to the line the file
//! sink would write. `tufkey_audit_head` (one row) holds the chain's `seq` and head
//! hash: a writer takes it `FOR UPDATE`, chains its entries onto it, inserts them and
//! moves the head in the same transaction, so every writer's entries form ONE chain.
//! Each sink's writer task batches the entries queued while its previous transaction
//! committed (group commit, as the file sink does). An entry is acknowledged only
//! after COMMIT, i.e. after PostgreSQL flushed its WAL (`synchronous_commit` must stay
//! on). Connections (URL, TLS, redaction) come from [`crate::pg`].

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;

use super::chain::{encode, line_hash, verify_bytes, Verified, GENESIS};
use super::error::AuditError;
use super::event::{Committed, Event};
use super::sink::{Sink, SinkFuture};
use crate::pg::{
    blocking_setup, connect, db_err, describe, ensure_tables, pg_err, redact_url, PgError, Target,
};

/// Most entries committed by one transaction.
const MAX_BATCH: usize = 512;

/// The audit tables; the daemon's store adds its own (versions, rate buckets).
const SCHEMA: &str = "
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

type Reply = oneshot::Sender<Result<Vec<Committed>, String>>;

/// Entries committed together (all or none), and who waits for them.
type Submission = (Vec<Event>, Reply);

/// The PostgreSQL-held audit chain: one writer task with its own connection. Opened
/// by a replica inside its runtime ([`PgSink::open`]), or by a CLI command with a small
/// runtime of its own ([`PgSink::open_blocking`]).
pub struct PgSink {
    /// Redacted: safe for messages.
    url: String,
    tx: mpsc::UnboundedSender<Submission>,
    /// The CLI's own runtime, which drives the writer and its connection while a
    /// blocking append waits; `None` inside the daemon's runtime. Dropped last.
    rt: Option<tokio::runtime::Runtime>,
}

impl PgSink {
    /// For a replica: connects, creates the audit tables if needed, verifies the whole
    /// chain against its head row (a broken or truncated chain stops the daemon, as
    /// with the file sink) and starts the writer on the current runtime. Returns the
    /// sink and what the log held. `config` is the store's parsed URL (its TLS files
    /// read once), `shown` the redacted URL.
    pub async fn open(config: &Target, shown: &str) -> Result<(PgSink, Verified), AuditError> {
        let (config, shown) = (config.clone(), shown.to_string());
        let mut client = connect(&config, &shown).await?;
        ensure_schema(&mut client, &shown).await?;
        let (bytes, head_row) = read_chain(&client, &shown)
            .await?
            .unwrap_or_else(|| (Vec::new(), (0, GENESIS.to_string())));
        let verified = check_chain(&shown, &bytes, &head_row)?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(config, shown.clone(), client, rx));
        Ok((
            PgSink {
                url: shown,
                tx,
                rt: None,
            },
            verified,
        ))
    }

    /// For CLI commands: connects (TLS as the URL asks) and creates the audit tables
    /// if missing, as a replica does at start. Does not read the chain: `tufkey audit
    /// verify` does. Errors name the redacted URL, never a password.
    pub fn open_blocking(url: &str) -> Result<PgSink, AuditError> {
        let (shown, config, rt) = blocking_setup(url)?;
        let tx = rt.block_on(async {
            let mut client = connect(&config, &shown).await?;
            ensure_schema(&mut client, &shown).await?;
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(writer(config.clone(), shown.clone(), client, rx));
            Ok::<_, PgError>(tx)
        })?;
        Ok(PgSink {
            url: shown,
            tx,
            rt: Some(rt),
        })
    }

    fn submit(
        &self,
        events: Vec<Event>,
    ) -> Result<oneshot::Receiver<Result<Vec<Committed>, String>>, AuditError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((events, reply))
            .map_err(|_| pg_err(&self.url, "the audit writer has stopped"))?;
        Ok(rx)
    }

    fn outcome(
        &self,
        r: Result<Result<Vec<Committed>, String>, oneshot::error::RecvError>,
    ) -> Result<Vec<Committed>, AuditError> {
        match r {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(reason)) => Err(pg_err(&self.url, reason).into()),
            Err(_) => Err(pg_err(&self.url, "the audit writer has stopped").into()),
        }
    }
}

impl PgSink {
    /// The one entry of a one-entry submission.
    fn single(&self, mut done: Vec<Committed>) -> Result<Committed, AuditError> {
        done.pop()
            .ok_or_else(|| pg_err(&self.url, "the audit writer answered with no entry").into())
    }
}

impl Sink for PgSink {
    fn append(&self, event: Event) -> SinkFuture<'_, Result<Committed, AuditError>> {
        Box::pin(async move {
            let rx = self.submit(vec![event])?;
            self.single(self.outcome(rx.await)?)
        })
    }

    fn append_many(
        &self,
        events: Vec<Event>,
    ) -> SinkFuture<'_, Result<Vec<Committed>, AuditError>> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(Vec::new());
            }
            let rx = self.submit(events)?;
            self.outcome(rx.await)
        })
    }

    fn append_many_blocking(&self, events: Vec<Event>) -> Result<Vec<Committed>, AuditError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let rx = self.submit(events)?;
        let r = match &self.rt {
            Some(rt) => rt.block_on(rx),
            None => rx.blocking_recv(),
        };
        self.outcome(r)
    }

    fn append_blocking(&self, event: Event) -> Result<Committed, AuditError> {
        let rx = self.submit(vec![event])?;
        let r = match &self.rt {
            Some(rt) => rt.block_on(rx),
            None => rx.blocking_recv(),
        };
        self.single(self.outcome(r)?)
    }
}

/// Creates the audit tables and the head row unless they exist.
async fn ensure_schema(client: &mut Client, url: &str) -> Result<(), PgError> {
    let ddl = format!(
        "{SCHEMA}INSERT INTO tufkey_audit_head (id, seq, head) VALUES (1, 0, '{GENESIS}') ON CONFLICT DO NOTHING;"
    );
    ensure_tables(client, url, &["tufkey_audit", "tufkey_audit_head"], &ddl).await
}

/// The head row: (seq, head hash).
type HeadRow = (u64, String);

/// All lines in `seq` order as the JSON-lines bytes, and the head row.
/// `None` when the database has no tufkey tables (no replica has started on it yet).
async fn read_chain(client: &Client, url: &str) -> Result<Option<(Vec<u8>, HeadRow)>, PgError> {
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
fn check_chain(url: &str, bytes: &[u8], head: &HeadRow) -> Result<Verified, AuditError> {
    let name = std::path::PathBuf::from(url);
    let v = verify_bytes(&name, bytes)?;
    if v.entries.len() as u64 != head.0 || !v.head.eq_ignore_ascii_case(&head.1) {
        return Err(AuditError::Broken {
            path: name,
            line: v.entries.len() + 1,
            reason: format!(
                "the chain ends at entry {} with head {}, but tufkey_audit_head says entry {} with head {}: entries were removed from the end or the head was changed",
                v.entries.len(),
                v.head,
                head.0,
                head.1
            ),
        });
    }
    Ok(v)
}

/// What `tufkey audit verify postgres://…` and `tufkey audit export` read: the
/// audit log in its JSON-lines form (byte-identical to a file store's log), and the
/// head row; `None` for a database without tufkey tables. Blocking (its own small
/// runtime): for the CLI.
pub fn export_blocking(url: &str) -> Result<Option<(Vec<u8>, u64, String)>, AuditError> {
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
pub fn verify_blocking(url: &str, missing_ok: bool) -> Result<Verified, AuditError> {
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
pub fn no_tables(url: &str) -> AuditError {
    pg_err(
        &redact_url(url),
        "no tufkey audit log here (no tufkey_audit table): is this the database the replicas use?",
    )
    .into()
}

/// The audit writer: one per sink (per replica, or per CLI command), on its own
/// connection.
async fn writer(
    config: Target,
    url: String,
    client: Client,
    mut rx: mpsc::UnboundedReceiver<Submission>,
) {
    let mut client = Some(client);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A long interactive command (a ceremony) may outlive an idle connection, and
        // a replica's may break: reconnect before the batch, saying why if that fails.
        let mut reconnect = None;
        if client.as_ref().is_none_or(Client::is_closed) {
            client = match connect(&config, &url).await {
                Ok(c) => Some(c),
                Err(e) => {
                    reconnect = Some(e.reason);
                    None
                }
            };
        }
        let result = match client.as_mut() {
            Some(c) => commit(c, &batch).await,
            None => Err(reconnect.unwrap_or_else(|| "cannot reconnect".into())),
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

/// Chains `batch` onto the head in one transaction; per submission, where its entries
/// landed (or why one of them could not be encoded: then none of that submission's is
/// written).
async fn commit(
    client: &mut Client,
    batch: &[Submission],
) -> Result<Vec<Result<Vec<Committed>, String>>, String> {
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
    for (events, _) in batch {
        let (mut s, mut h) = (seq, head.clone());
        let (mut sub_seqs, mut sub_lines, mut landed) = (Vec::new(), Vec::new(), Vec::new());
        let encoded = events.iter().try_for_each(|event| {
            let line = String::from_utf8(encode(event, s + 1, &h)).map_err(|e| e.to_string())?;
            s += 1;
            h = line_hash(line.as_bytes());
            sub_seqs.push(i64::try_from(s).map_err(|e| e.to_string())?);
            sub_lines.push(line);
            landed.push(Committed {
                seq: s,
                hash: h.clone(),
            });
            Ok::<_, String>(())
        });
        match encoded {
            Ok(()) => {
                (seq, head) = (s, h);
                seqs.extend(sub_seqs);
                lines.extend(sub_lines);
                out.push(Ok(landed));
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
