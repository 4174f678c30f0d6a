//! The hash-chained audit log shared by the signer daemon and the CLI.
//!
//! One JSON object per line, in canonical JSON (the bytes tufkey writes are the only
//! form accepted back), each carrying `seq` (1, 2, …) and `prev`, the SHA-256 of the
//! previous line's bytes. Editing a line changes its bytes (or breaks its canonical
//! form), removing or reordering lines breaks `seq` and `prev`; so [`verify`] detects
//! any change except the removal of trailing lines, which only an externally noted
//! head hash can show (the daemon reports its head in `/healthz` and on stop).
//!
//! Entries are durable (written and fsynced) before [`AuditLog::append`] returns. A
//! writer thread takes every entry queued while the previous fsync ran and commits them
//! with one write and one fsync (group commit), so concurrent signers share the cost
//! of the disk flush instead of queueing behind one fsync each.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::tuf::cjson::to_canonical;

/// The `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Most entries committed by one write + fsync.
const MAX_BATCH: usize = 1024;

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
    #[error("audit log {path} is in use by another process (it is locked); two writers would fork the chain")]
    Locked { path: PathBuf },
    #[error("audit log {path}: the writer has stopped; entries can no longer be made durable")]
    Stopped { path: PathBuf },
    #[error("audit entry cannot be encoded: {0}")]
    Encode(String),
}

/// One event: who did what, with which result. Optional fields are left out of the
/// line when empty, so the line is the canonical form of exactly these fields.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Event {
    /// The client identity (certificate CN or SAN that matched the policy), the CLI's
    /// actor, or `-` when the peer never authenticated.
    pub who: String,
    /// What was asked: `sign`, `sign-raw`, `list-keys`, `connect`, `start`, `stop`, …
    pub action: String,
    /// `signed`, `refused`, `error` or `ok`.
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The HTTP status the daemon answered with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_sha256: Option<String>,
}

/// A verified log: its entries and the hash of its last line.
#[derive(Debug, Clone)]
pub struct Verified {
    pub entries: Vec<Map<String, Value>>,
    /// SHA-256 of the last line ([`GENESIS`] for an empty log): note it down to pin
    /// the whole history, trailing entries included.
    pub head: String,
}

/// SHA-256 of one line's bytes (without the newline): the next entry's `prev`.
pub(crate) fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

/// Reads and checks a whole log. Any edit, removal or reordering is an error naming
/// the first line where the chain breaks. A missing file is an empty log.
pub fn verify(path: &Path) -> Result<Verified, AuditError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => {
            return Err(AuditError::Io {
                path: path.into(),
                err,
            })
        }
    };
    verify_bytes(path, &text)
}

/// Checks a log given as its JSON-lines bytes; `path` only names it in errors (the
/// PostgreSQL store passes its redacted URL, so both stores share one verifier).
pub fn verify_bytes(path: &Path, text: &[u8]) -> Result<Verified, AuditError> {
    let bad = |line: usize, reason: String| AuditError::Broken {
        path: path.into(),
        line,
        reason,
    };
    let mut out = Verified {
        entries: Vec::new(),
        head: GENESIS.into(),
    };
    if text.is_empty() {
        return Ok(out);
    }
    if !text.ends_with(b"\n") {
        let n = text.split(|b| *b == b'\n').count();
        return Err(bad(
            n,
            "the last line is incomplete (a write was cut off, or the file was truncated)".into(),
        ));
    }
    for (i, line) in text[..text.len() - 1].split(|b| *b == b'\n').enumerate() {
        let n = i + 1;
        let value: Value = serde_json::from_slice(line)
            .map_err(|e| bad(n, format!("not a JSON audit entry: {e}")))?;
        let Value::Object(obj) = value else {
            return Err(bad(n, "not a JSON object".into()));
        };
        let canonical = to_canonical(&Value::Object(obj.clone()))
            .map_err(|e| bad(n, format!("not canonical JSON: {e}")))?;
        if canonical != line {
            return Err(bad(
                n,
                "the line was edited (it is not in the canonical form tufkey writes)".into(),
            ));
        }
        match obj.get("seq").and_then(Value::as_u64) {
            Some(s) if s == n as u64 => {}
            Some(s) => {
                return Err(bad(
                    n,
                    format!(
                        "sequence number {s} where {n} was expected: an entry was removed or moved"
                    ),
                ))
            }
            None => return Err(bad(n, "no sequence number".into())),
        }
        if obj.get("prev").and_then(Value::as_str) != Some(out.head.as_str()) {
            return Err(bad(
                n,
                "the hash of the previous entry does not match: an earlier entry was changed, removed or moved"
                    .into(),
            ));
        }
        out.head = line_hash(line);
        out.entries.push(obj);
    }
    Ok(out)
}

/// Encodes `event` as the line with sequence number `seq` after `prev`. Shared with
/// the PostgreSQL store so that both write byte-identical lines.
pub(crate) fn encode(event: &Event, seq: u64, prev: &str) -> Result<Vec<u8>, AuditError> {
    let Value::Object(mut obj) =
        serde_json::to_value(event).map_err(|e| AuditError::Encode(e.to_string()))?
    else {
        return Err(AuditError::Encode("an event is an object".into()));
    };
    obj.insert("seq".into(), Value::from(seq));
    obj.insert("prev".into(), Value::String(prev.into()));
    obj.insert(
        "time".into(),
        Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    to_canonical(&Value::Object(obj)).map_err(|e| AuditError::Encode(e.to_string()))
}

/// Where a committed entry landed.
#[derive(Debug, Clone)]
pub struct Committed {
    pub seq: u64,
    /// The hash of this entry's line: the log's head right after it.
    pub hash: String,
}

type Reply = tokio::sync::oneshot::Sender<Result<Committed, String>>;

/// An open audit log with its writer thread. Dropping it (or [`AuditLog::close`])
/// commits what is queued and stops the writer.
pub struct AuditLog {
    path: PathBuf,
    tx: Option<mpsc::Sender<(Event, Reply)>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl AuditLog {
    /// Opens (or creates) the log, verifies its whole chain and takes an exclusive
    /// lock on it, so that a second daemon on the same file fails instead of forking
    /// the chain. Returns the log and what it held.
    pub fn open(path: &Path) -> Result<(AuditLog, Verified), AuditError> {
        let io = |err| AuditError::Io {
            path: path.into(),
            err,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AuditError::Locked { path: path.into() })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let verified = verify(path)?;
        let (tx, rx) = mpsc::channel::<(Event, Reply)>();
        let mut state = WriterState {
            file,
            path: path.to_path_buf(),
            seq: verified.entries.len() as u64,
            head: verified.head.clone(),
            failed: None,
        };
        let writer = std::thread::Builder::new()
            .name("tufkey-audit".into())
            .spawn(move || state.run(rx))
            .map_err(io)?;
        Ok((
            AuditLog {
                path: path.to_path_buf(),
                tx: Some(tx),
                writer: Some(writer),
            },
            verified,
        ))
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn submit(
        &self,
        event: Event,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Committed, String>>, AuditError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .as_ref()
            .and_then(|tx| tx.send((event, reply)).ok())
            .ok_or_else(|| AuditError::Stopped {
                path: self.path.clone(),
            })?;
        Ok(rx)
    }

    fn outcome(
        &self,
        r: Result<Result<Committed, String>, tokio::sync::oneshot::error::RecvError>,
    ) -> Result<Committed, AuditError> {
        match r {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(reason)) => Err(AuditError::Io {
                path: self.path.clone(),
                err: std::io::Error::other(reason),
            }),
            Err(_) => Err(AuditError::Stopped {
                path: self.path.clone(),
            }),
        }
    }

    /// Appends `event` and returns once it is on disk (fsynced). For async callers.
    pub async fn append(&self, event: Event) -> Result<Committed, AuditError> {
        let rx = self.submit(event)?;
        self.outcome(rx.await)
    }

    /// As [`AuditLog::append`], blocking the calling thread (the CLI). Must not be
    /// called from inside an async runtime.
    pub fn append_blocking(&self, event: Event) -> Result<Committed, AuditError> {
        let rx = self.submit(event)?;
        self.outcome(rx.blocking_recv())
    }

    /// Commits what is queued and stops the writer.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct WriterState {
    file: File,
    path: PathBuf,
    seq: u64,
    head: String,
    /// Set after a failed write or fsync: the file's tail is then unknown, so every
    /// later entry is refused rather than chained onto something that may be lost.
    failed: Option<String>,
}

impl WriterState {
    fn run(&mut self, rx: mpsc::Receiver<(Event, Reply)>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.commit(batch);
        }
    }

    fn commit(&mut self, batch: Vec<(Event, Reply)>) {
        if let Some(reason) = &self.failed {
            for (_, reply) in batch {
                let _ = reply.send(Err(reason.clone()));
            }
            return;
        }
        let (mut seq, mut head) = (self.seq, self.head.clone());
        let mut bytes = Vec::new();
        let mut done = Vec::with_capacity(batch.len());
        for (event, reply) in batch {
            match encode(&event, seq + 1, &head) {
                Ok(line) => {
                    seq += 1;
                    head = line_hash(&line);
                    bytes.extend_from_slice(&line);
                    bytes.push(b'\n');
                    done.push((
                        reply,
                        Committed {
                            seq,
                            hash: head.clone(),
                        },
                    ));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
        let written = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.seq = seq;
                self.head = head;
                for (reply, c) in done {
                    let _ = reply.send(Ok(c));
                }
            }
            Err(e) => {
                let reason = format!("{}: {e}", self.path.display());
                self.failed = Some(reason.clone());
                for (reply, _) in done {
                    let _ = reply.send(Err(reason.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: u64) -> Event {
        Event {
            who: "ci-main".into(),
            action: "sign".into(),
            result: "signed".into(),
            repository: Some("acme".into()),
            role: Some("targets".into()),
            version: Some(i),
            ..Default::default()
        }
    }

    #[test]
    fn chain_detects_edit_removal_and_reordering() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let (log, v) = AuditLog::open(&p).unwrap();
        assert!(v.entries.is_empty());
        for i in 1..=4 {
            assert_eq!(log.append_blocking(ev(i)).unwrap().seq, i);
        }
        log.close();
        let good = verify(&p).unwrap();
        assert_eq!(good.entries.len(), 4);
        let text = std::fs::read_to_string(&p).unwrap();
        let l: Vec<&str> = text.lines().collect();
        let cases = [
            text.replacen("\"version\":2", "\"version\":9", 1),
            format!("{}\n{}\n{}\n", l[0], l[2], l[3]),
            format!("{}\n{}\n{}\n{}\n", l[1], l[0], l[2], l[3]),
            format!("{}\n{}\n{}\n{} \n", l[0], l[1], l[2], l[3]),
            text[..text.len() - 3].to_string(),
        ];
        for (i, bad) in cases.iter().enumerate() {
            std::fs::write(&p, bad).unwrap();
            assert!(verify(&p).is_err(), "case {i} not detected");
        }
        // Reopening continues the chain.
        std::fs::write(&p, &text).unwrap();
        let (log, v) = AuditLog::open(&p).unwrap();
        assert_eq!(v.head, good.head);
        assert_eq!(log.append_blocking(ev(5)).unwrap().seq, 5);
        drop(log);
        assert_eq!(verify(&p).unwrap().entries.len(), 5);
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let (_log, _) = AuditLog::open(&p).unwrap();
        assert!(matches!(AuditLog::open(&p), Err(AuditError::Locked { .. })));
    }

    #[test]
    fn concurrent_appends_are_all_committed_in_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let (log, _) = AuditLog::open(&p).unwrap();
        let log = std::sync::Arc::new(log);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        log.append_blocking(ev(t * 1000 + i)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(log);
        assert_eq!(verify(&p).unwrap().entries.len(), 400);
    }
}
