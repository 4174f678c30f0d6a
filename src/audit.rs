//! The hash-chained audit log shared by the signer daemon and the CLI.
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

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::tuf::cjson::to_canonical;

/// The `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Most entries committed by one write + fsync.
const MAX_BATCH: usize = 1024;

/// How long a CLI command waits for the log's lock before it gives up. A commit holds
/// the lock for one write and one fdatasync, and the wait is queued in the kernel (it
/// is woken as soon as the lock is released, not polled), so waiting this long means
/// something holds it for good (a hung writer, or a tufkey serve from before the lock
/// was per batch).
const SHARED_LOCK_WAIT: Duration = Duration::from_secs(30);

/// How long [`verify`] waits for its shared lock on the log (the same reasoning).
const VERIFY_LOCK_WAIT: Duration = Duration::from_secs(30);

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
    #[error("audit entry cannot be encoded: {0}")]
    Encode(String),
    /// The writer thread's report of a failed commit (it names the log).
    #[error("{0}")]
    Failed(String),
}

/// One event: who did what, with which result. Optional fields are left out of the
/// line when empty, so the line is the canonical form of exactly these fields.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Event {
    /// The client identity (certificate CN or SAN that matched the policy), the CLI's
    /// actor (`--audit-actor`, else `user@host`), or `-` when the peer never
    /// authenticated.
    pub who: String,
    /// What was asked: `sign`, `sign-raw`, `list-keys`, `connect`, `start`, `stop`, …
    /// from the daemon; the command as typed (`sign`, `key generate`, `ceremony
    /// sign`, `delegation rotate`, …) from the CLI.
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
    /// `cli` for entries of CLI commands; absent for the daemon's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// CLI: the operating-system user (name) that ran the command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// CLI: that user's numeric id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// CLI: the machine's host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// CLI: the file (metadata, ceremony folder, key file) the command changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// CLI: the key's URI (any `pin-value` redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_uri: Option<String>,
    /// CLI: what changed, in words (`added key … to role root`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
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
/// the first line where the chain breaks. A missing file is an empty log. The file is
/// read under a shared lock, so a batch another process is appending right now is
/// seen whole or not at all; if the lock cannot be had within 30 s (a `tufkey serve`
/// from before the lock was per batch holds it for its whole run), this fails saying
/// so instead of waiting for ever.
pub fn verify(path: &Path) -> Result<Verified, AuditError> {
    verify_within(path, VERIFY_LOCK_WAIT)
}

/// [`verify`], waiting up to `wait` for the shared lock.
fn verify_within(path: &Path, wait: Duration) -> Result<Verified, AuditError> {
    let io = |err| AuditError::Io {
        path: path.into(),
        err,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return verify_bytes(path, b""),
        Err(err) => return Err(io(err)),
    };
    let mut pending = None;
    let locked = match FileLock::take(&file, LockKind::Shared, Some(wait), &mut pending) {
        Ok(l) => Some(l),
        Err(LockError::TimedOut) => {
            return Err(AuditError::ReadBusy {
                path: path.into(),
                secs: wait.as_secs(),
            })
        }
        // Best effort: a file system without flock still gets verified (a batch being
        // written at that very moment may then show as an incomplete last line).
        Err(LockError::Io(_)) => None,
    };
    let text = read_range(&file, path, 0, None);
    drop(locked);
    verify_bytes(path, &text?)
}

/// Checks a log given as its JSON-lines bytes; `path` only names it in errors (the
/// PostgreSQL store passes its redacted URL, so both stores share one verifier).
pub fn verify_bytes(path: &Path, text: &[u8]) -> Result<Verified, AuditError> {
    let mut chain = Chain::new();
    let mut entries = Vec::new();
    if !text.is_empty() && !text.ends_with(b"\n") {
        let n = text.split(|b| *b == b'\n').count();
        return Err(AuditError::Broken {
            path: path.into(),
            line: n,
            reason: "the last line is incomplete (a write was cut off, or the file was truncated)"
                .into(),
        });
    }
    if !text.is_empty() {
        for line in text[..text.len() - 1].split(|b| *b == b'\n') {
            entries.push(chain.push(path, line)?);
        }
    }
    Ok(Verified {
        entries,
        head: chain.head,
    })
}

/// The position of a chain: the last `seq` and the hash of its line.
#[derive(Debug, Clone, PartialEq)]
struct Chain {
    seq: u64,
    head: String,
}

impl Chain {
    fn new() -> Chain {
        Chain {
            seq: 0,
            head: GENESIS.into(),
        }
    }

    /// Checks that `line` is the next entry (canonical, `seq` + 1, `prev` = head) and
    /// moves onto it. In a file log an entry's `seq` is its line number.
    fn push(&mut self, path: &Path, line: &[u8]) -> Result<Map<String, Value>, AuditError> {
        let n = self.seq + 1;
        let bad = |reason: String| AuditError::Broken {
            path: path.into(),
            line: usize::try_from(n).unwrap_or(usize::MAX),
            reason,
        };
        let (obj, seq) = parse_line(line).map_err(bad)?;
        if seq != n {
            return Err(bad(format!(
                "sequence number {seq} where {n} was expected: an entry was removed or moved"
            )));
        }
        if obj.get("prev").and_then(Value::as_str) != Some(self.head.as_str()) {
            return Err(bad(
                "the hash of the previous entry does not match: an earlier entry was changed, removed or moved"
                    .into(),
            ));
        }
        self.seq = n;
        self.head = line_hash(line);
        Ok(obj)
    }
}

/// One line as an entry: a JSON object in exactly its canonical form, with a `seq`.
fn parse_line(line: &[u8]) -> Result<(Map<String, Value>, u64), String> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| format!("not a JSON audit entry: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("not a JSON object".into());
    };
    let canonical = to_canonical(&Value::Object(obj.clone()))
        .map_err(|e| format!("not canonical JSON: {e}"))?;
    if canonical != line {
        return Err("the line was edited (it is not in the canonical form tufkey writes)".into());
    }
    let seq = obj
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or("no sequence number")?;
    Ok((obj, seq))
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

/// The file a daemon holds locked for its lifetime: `<log>.serve.lock`. [`AuditLog::open`]
/// passes the log's canonical path (symlinks resolved), so that two configurations
/// naming one file by different paths share one lock file.
pub fn serve_lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".serve.lock");
    path.with_file_name(name)
}

/// An open audit log with its writer thread. Dropping it (or [`AuditLog::close`])
/// commits what is queued and stops the writer.
pub struct AuditLog {
    path: PathBuf,
    tx: Option<mpsc::Sender<(Event, Reply)>>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// The daemon's `<log>.serve.lock`, locked while this log is open.
    _owner: Option<File>,
}

impl AuditLog {
    /// For the daemon: opens (or creates) the log, verifies its whole chain and takes
    /// `<log>.serve.lock` for as long as the log stays open, so that a second daemon on
    /// the same file fails to start. CLI commands ([`AuditLog::open_shared`]) may
    /// still append meanwhile. Returns the log and what it held.
    pub fn open(path: &Path) -> Result<(AuditLog, Verified), AuditError> {
        // The log first (created if missing), so that its real path can be resolved:
        // the one-daemon lock belongs to the file, not to the name it was reached by.
        let file = open_append(path)?;
        let real = std::fs::canonicalize(path).map_err(|err| AuditError::Io {
            path: path.into(),
            err,
        })?;
        let lock = serve_lock_path(&real);
        let owner = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|err| AuditError::Io {
                path: lock.clone(),
                err,
            })?;
        match owner.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AuditError::Locked {
                    path: path.into(),
                    lock,
                })
            }
            Err(std::fs::TryLockError::Error(err)) => {
                return Err(AuditError::Io { path: lock, err })
            }
        }
        let (verified, len) = {
            let _locked = FileLock::exclusive(&file, path, None, &mut None)?;
            same_file(&file, path)?;
            let text = read_range(&file, path, 0, None)?;
            (verify_bytes(path, &text)?, text.len() as u64)
        };
        let state = WriterState {
            file,
            path: path.to_path_buf(),
            chain: Chain {
                seq: verified.entries.len() as u64,
                head: verified.head.clone(),
            },
            len,
            lock_wait: None,
            pending: None,
            failed: None,
        };
        Ok((Self::start(state, Some(owner))?, verified))
    }

    /// For CLI commands: opens (or creates) the log to append to it next to a running
    /// daemon or other commands. Reads only the last line (under the lock) to learn
    /// the chain's position, so a log that cannot be appended to (unwritable, its last
    /// line cut off or edited) is reported here, before the command changes anything.
    /// It does not verify the whole chain: `tufkey audit verify` does.
    pub fn open_shared(path: &Path) -> Result<AuditLog, AuditError> {
        let file = open_append(path)?;
        let mut pending = None;
        let (chain, len) = {
            let _locked = FileLock::exclusive(&file, path, Some(SHARED_LOCK_WAIT), &mut pending)?;
            same_file(&file, path)?;
            read_tail(&file, path)?
        };
        let state = WriterState {
            file,
            path: path.to_path_buf(),
            chain,
            len,
            lock_wait: Some(SHARED_LOCK_WAIT),
            pending,
            failed: None,
        };
        Self::start(state, None)
    }

    fn start(mut state: WriterState, owner: Option<File>) -> Result<AuditLog, AuditError> {
        let path = state.path.clone();
        let (tx, rx) = mpsc::channel::<(Event, Reply)>();
        let writer = std::thread::Builder::new()
            .name("tufkey-audit".into())
            .spawn(move || state.run(rx))
            .map_err(|err| AuditError::Io {
                path: path.clone(),
                err,
            })?;
        Ok(AuditLog {
            path,
            tx: Some(tx),
            writer: Some(writer),
            _owner: owner,
        })
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
            Ok(Err(reason)) => Err(AuditError::Failed(reason)),
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

fn open_append(path: &Path) -> Result<File, AuditError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .map_err(|err| AuditError::Io {
            path: path.into(),
            err,
        })
}

/// Which lock: exclusive to append, shared to read the whole log.
#[derive(Clone, Copy)]
enum LockKind {
    Exclusive,
    Shared,
}

/// Why a bounded wait for the lock ended without it.
#[derive(Debug)]
enum LockError {
    TimedOut,
    Io(std::io::Error),
}

/// A lock request queued in the kernel by a helper thread (`flock` itself has no
/// timeout). The helper blocks in `flock`, so it is woken the moment the lock is
/// released, instead of polling with `try_lock` and losing every race to a busy
/// daemon that takes the lock again within microseconds.
struct LockWait {
    state: Mutex<WaitState>,
    ready: Condvar,
}

enum WaitState {
    /// The helper is blocked in `flock`.
    Waiting,
    /// The helper got the lock (or `flock` failed) and the waiter has not claimed it.
    Done(std::io::Result<()>),
    /// The waiter gave up: the helper releases the lock as soon as it gets it, unless
    /// a later wait re-attaches first.
    Abandoned,
    /// Claimed, or released after being abandoned.
    Over,
}

impl LockWait {
    fn state(&self) -> std::sync::MutexGuard<'_, WaitState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a request for the lock on `file`'s open file description.
    fn spawn(file: &File, kind: LockKind) -> std::io::Result<Arc<LockWait>> {
        let file = file.try_clone()?;
        let wait = Arc::new(LockWait {
            state: Mutex::new(WaitState::Waiting),
            ready: Condvar::new(),
        });
        let helper = wait.clone();
        std::thread::Builder::new()
            .name("tufkey-audit-lock".into())
            .spawn(move || {
                let got = match kind {
                    LockKind::Exclusive => file.lock(),
                    LockKind::Shared => file.lock_shared(),
                };
                let mut state = helper.state();
                if matches!(*state, WaitState::Abandoned) {
                    if got.is_ok() {
                        let _ = file.unlock();
                    }
                    *state = WaitState::Over;
                } else {
                    *state = WaitState::Done(got);
                    helper.ready.notify_all();
                }
            })?;
        Ok(wait)
    }
}

/// The advisory lock on the log, released when dropped (and by the kernel if the
/// process dies).
struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    /// The exclusive lock for appending, as an [`AuditError`] naming the log.
    fn exclusive(
        file: &'a File,
        path: &Path,
        wait: Option<Duration>,
        pending: &mut Option<Arc<LockWait>>,
    ) -> Result<FileLock<'a>, AuditError> {
        FileLock::take(file, LockKind::Exclusive, wait, pending).map_err(|e| match e {
            LockError::TimedOut => AuditError::Busy {
                path: path.into(),
                secs: wait.unwrap_or_default().as_secs(),
            },
            LockError::Io(err) => AuditError::Io {
                path: path.into(),
                err: std::io::Error::new(
                    err.kind(),
                    format!("cannot lock it for appending: {err}"),
                ),
            },
        })
    }

    /// Waits for the lock: for good (`None`, the daemon), or up to `wait`.
    ///
    /// A bounded wait queues its request on a helper thread. When it times out, the
    /// request stays queued in `pending` (the helper releases the lock if it gets it
    /// with nobody waiting); the next wait on the same file re-attaches to it rather
    /// than queueing a second request on the same open file description, which the
    /// kernel would grant together with the first, so that the abandoned one's release
    /// would drop the lock under the new holder.
    fn take(
        file: &'a File,
        kind: LockKind,
        wait: Option<Duration>,
        pending: &mut Option<Arc<LockWait>>,
    ) -> Result<FileLock<'a>, LockError> {
        let Some(wait) = wait else {
            match kind {
                LockKind::Exclusive => file.lock(),
                LockKind::Shared => file.lock_shared(),
            }
            .map_err(LockError::Io)?;
            return Ok(FileLock(file));
        };
        let until = Instant::now() + wait;
        // Free right now: no helper thread needed. Only without a queued request, which
        // would be granted along with this one and release it when it is served.
        if pending.is_none() {
            let free = match kind {
                LockKind::Exclusive => file.try_lock(),
                LockKind::Shared => file.try_lock_shared(),
            };
            match free {
                Ok(()) => return Ok(FileLock(file)),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(err)) => return Err(LockError::Io(err)),
            }
        }
        let request = match pending.take() {
            Some(earlier) if earlier.reattach() => earlier,
            _ => LockWait::spawn(file, kind).map_err(LockError::Io)?,
        };
        let mut state = request.state();
        loop {
            match std::mem::replace(&mut *state, WaitState::Over) {
                WaitState::Done(Ok(())) => return Ok(FileLock(file)),
                WaitState::Done(Err(err)) => return Err(LockError::Io(err)),
                WaitState::Waiting => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        *state = WaitState::Abandoned;
                        drop(state);
                        *pending = Some(request);
                        return Err(LockError::TimedOut);
                    }
                    *state = WaitState::Waiting;
                    state = request
                        .ready
                        .wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                WaitState::Abandoned | WaitState::Over => {
                    return Err(LockError::Io(std::io::Error::other(
                        "lock request in an unexpected state",
                    )))
                }
            }
        }
    }
}

impl LockWait {
    /// Takes over a request an earlier wait gave up on, if it is still queued.
    fn reattach(&self) -> bool {
        let mut state = self.state();
        if matches!(*state, WaitState::Abandoned) {
            *state = WaitState::Waiting;
            true
        } else {
            false
        }
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Checks, with the lock held, that `file` is still the log at `path`: not unlinked,
/// and not renamed away with another file (or nothing) now at that path, as log
/// rotation by renaming does. Appending to the old file then would split the log into
/// two chains, the daemon's in the old file and the CLI's in the new one.
fn same_file(file: &File, path: &Path) -> Result<(), AuditError> {
    let replaced = |reason: String| AuditError::Replaced {
        path: path.into(),
        reason,
    };
    let mine = file.metadata().map_err(|err| AuditError::Io {
        path: path.into(),
        err,
    })?;
    let now = match std::fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            return Err(AuditError::Io {
                path: path.into(),
                err,
            })
        }
    };
    match now {
        _ if mine.nlink() == 0 => Err(replaced("the file was deleted".into())),
        None => Err(replaced(
            "the file was renamed or moved away (nothing is at that path now)".into(),
        )),
        Some(m) if (m.dev(), m.ino()) != (mine.dev(), mine.ino()) => Err(replaced(
            "the path now names another file: the log was renamed or replaced (as log rotation does)".into(),
        )),
        Some(_) => Ok(()),
    }
}

/// The bytes from `start` to `end` (the end of the file when `None`).
fn read_range(
    file: &File,
    path: &Path,
    start: u64,
    end: Option<u64>,
) -> Result<Vec<u8>, AuditError> {
    let io = |err| AuditError::Io {
        path: path.into(),
        err,
    };
    let end = match end {
        Some(e) => e,
        None => file.metadata().map_err(io)?.len(),
    };
    let len = usize::try_from(end.saturating_sub(start))
        .map_err(|_| io(std::io::Error::other("too large to read")))?;
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, start).map_err(io)?;
    Ok(buf)
}

/// The chain's position from the log's last line, and the file's length. Call with
/// the lock held.
fn read_tail(file: &File, path: &Path) -> Result<(Chain, u64), AuditError> {
    let len = file
        .metadata()
        .map_err(|err| AuditError::Io {
            path: path.into(),
            err,
        })?
        .len();
    if len == 0 {
        return Ok((Chain::new(), 0));
    }
    let tail = |reason: String| AuditError::Tail {
        path: path.into(),
        reason,
    };
    // Read backwards in growing steps until the line before the last one ends.
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    let line_start = loop {
        let step = (buf.len() as u64).clamp(4096, 1 << 20);
        let from = start.saturating_sub(step);
        let mut chunk = read_range(file, path, from, Some(start))?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        start = from;
        if buf.last() != Some(&b'\n') {
            return Err(tail(
                "its last line is incomplete (a write was cut off, or the file was truncated)"
                    .into(),
            ));
        }
        if let Some(i) = buf[..buf.len() - 1].iter().rposition(|b| *b == b'\n') {
            break i + 1;
        }
        if start == 0 {
            break 0;
        }
    };
    let line = &buf[line_start..buf.len() - 1];
    let (_, seq) = parse_line(line).map_err(|r| tail(format!("its last line: {r}")))?;
    Ok((
        Chain {
            seq,
            head: line_hash(line),
        },
        len,
    ))
}

struct WriterState {
    file: File,
    path: PathBuf,
    /// Where the chain stood after this writer's last commit (or the last one it saw).
    chain: Chain,
    /// The file's length at that point: if it has grown, another process appended.
    len: u64,
    /// How long to wait for the lock (`None`: as long as it takes).
    lock_wait: Option<Duration>,
    /// A lock request still queued from a wait that timed out ([`FileLock::take`]).
    pending: Option<Arc<LockWait>>,
    /// Set when a write or fsync failed and its partial batch could not be cut off
    /// again: the file's tail is then unknown, so every later entry is refused rather
    /// than chained onto something that may be lost.
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

    /// With the lock held: checks that the file is still the log at its path, and
    /// moves onto the entries other processes appended since this writer's last
    /// commit, checking that they continue the chain.
    fn catch_up(&mut self) -> Result<(), AuditError> {
        same_file(&self.file, &self.path)?;
        let now = self
            .file
            .metadata()
            .map_err(|err| AuditError::Io {
                path: self.path.clone(),
                err,
            })?
            .len();
        if now == self.len {
            return Ok(());
        }
        if now < self.len {
            return Err(AuditError::Tail {
                path: self.path.clone(),
                reason: format!(
                    "it is {now} bytes long, shorter than the {} bytes it had after this process's last entry: it was truncated or replaced",
                    self.len
                ),
            });
        }
        let text = read_range(&self.file, &self.path, self.len, Some(now))?;
        if !text.ends_with(b"\n") {
            return Err(AuditError::Tail {
                path: self.path.clone(),
                reason: "another writer left an incomplete last line (a write was cut off)".into(),
            });
        }
        let mut chain = self.chain.clone();
        for line in text[..text.len() - 1].split(|b| *b == b'\n') {
            chain.push(&self.path, line)?;
        }
        self.chain = chain;
        self.len = now;
        Ok(())
    }

    fn commit(&mut self, batch: Vec<(Event, Reply)>) {
        let refuse_all = |batch: Vec<(Event, Reply)>, reason: String| {
            for (_, reply) in batch {
                let _ = reply.send(Err(reason.clone()));
            }
        };
        if let Some(reason) = &self.failed {
            return refuse_all(batch, reason.clone());
        }
        let file = match self.file.try_clone() {
            Ok(f) => f,
            Err(e) => return refuse_all(batch, format!("audit log {}: {e}", self.path.display())),
        };
        let locked = match FileLock::exclusive(&file, &self.path, self.lock_wait, &mut self.pending)
        {
            Ok(l) => l,
            Err(e) => return refuse_all(batch, e.to_string()),
        };
        if let Err(e) = self.catch_up() {
            return refuse_all(batch, e.to_string());
        }
        let mut chain = self.chain.clone();
        let mut bytes = Vec::new();
        let mut done = Vec::with_capacity(batch.len());
        for (event, reply) in batch {
            match encode(&event, chain.seq + 1, &chain.head) {
                Ok(line) => {
                    chain.seq += 1;
                    chain.head = line_hash(&line);
                    bytes.extend_from_slice(&line);
                    bytes.push(b'\n');
                    done.push((
                        reply,
                        Committed {
                            seq: chain.seq,
                            hash: chain.head.clone(),
                        },
                    ));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
        // Durable before the lock is released and before anyone is told.
        let written = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        // A failed batch is cut off again while the lock is still held, so that no
        // other writer ever chains onto (or stops at) its partial line.
        let written = written.map_err(|e| self.roll_back(e));
        drop(locked);
        match written {
            Ok(()) => {
                self.chain = chain;
                self.len += bytes.len() as u64;
                for (reply, c) in done {
                    let _ = reply.send(Ok(c));
                }
            }
            Err(reason) => {
                for (reply, _) in done {
                    let _ = reply.send(Err(reason.clone()));
                }
            }
        }
    }

    /// After a failed write or fsync of a batch, with the lock held: truncates the
    /// file back to where the batch began (the end of the last committed entry) and
    /// makes that durable. The batch's entries are failed either way; if the cut
    /// worked, later entries may be appended again, otherwise this writer refuses them.
    /// Returns the reason given to the batch's callers.
    fn roll_back(&mut self, err: std::io::Error) -> String {
        let path = self.path.display();
        match self
            .file
            .set_len(self.len)
            .and_then(|()| self.file.sync_data())
        {
            Ok(()) => format!(
                "audit log {path}: writing the entries failed ({err}); what was written of them was removed again, so the log still ends with its last committed entry"
            ),
            Err(cut) => {
                let reason = format!(
                    "audit log {path}: writing the entries failed ({err}), and cutting the file back to its last committed entry ({} bytes) failed too ({cut}): it may end with an incomplete line; nothing more is appended to it by this process. Check it with `tufkey audit verify {path}`, remove a cut-off last line, then restart",
                    self.len
                );
                self.failed = Some(reason.clone());
                reason
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
    fn a_second_daemon_is_refused_but_shared_writers_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let (_log, _) = AuditLog::open(&p).unwrap();
        let err = AuditLog::open(&p)
            .err()
            .expect("a second daemon must be refused");
        assert!(matches!(err, AuditError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("audit.jsonl.serve.lock"), "{err}");
        let cli = AuditLog::open_shared(&p).unwrap();
        assert_eq!(cli.append_blocking(ev(1)).unwrap().seq, 1);
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

    /// Separate opens of one file lock against each other exactly as separate
    /// processes do (flock locks belong to the open file description).
    #[test]
    fn a_daemon_and_shared_writers_interleave_into_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let (daemon, _) = AuditLog::open(&p).unwrap();
        let cli = AuditLog::open_shared(&p).unwrap();
        // Strictly alternating: every commit must first read the other's entry.
        for i in 0..10 {
            assert_eq!(daemon.append_blocking(ev(i)).unwrap().seq, 2 * i + 1);
            assert_eq!(cli.append_blocking(ev(100 + i)).unwrap().seq, 2 * i + 2);
        }
        // And concurrently, from several shared writers and the daemon at once.
        let daemon = std::sync::Arc::new(daemon);
        let mut threads = Vec::new();
        for t in 0..4u64 {
            let p = p.clone();
            let daemon = daemon.clone();
            threads.push(std::thread::spawn(move || {
                let mine = AuditLog::open_shared(&p).unwrap();
                for i in 0..25 {
                    mine.append_blocking(ev((t + 1) * 1000 + i)).unwrap();
                    daemon
                        .append_blocking(ev((t + 1) * 1000 + 500 + i))
                        .unwrap();
                }
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
        drop(daemon);
        drop(cli);
        let v = verify(&p).unwrap();
        assert_eq!(v.entries.len(), 20 + 4 * 50);
        let mut versions: Vec<u64> = v
            .entries
            .iter()
            .map(|e| e["version"].as_u64().unwrap())
            .collect();
        versions.sort();
        versions.dedup();
        assert_eq!(versions.len(), 20 + 4 * 50, "an entry was lost or doubled");
    }

    /// The lock-and-reread path, step by step: while another "process" holds the lock
    /// the writer waits; what that process appended is read and chained onto.
    #[test]
    fn a_commit_waits_for_the_lock_and_chains_onto_what_was_appended_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let (log, _) = AuditLog::open(&p).unwrap();
        let first = log.append_blocking(ev(1)).unwrap();
        let other = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        other.lock().unwrap();
        let log = std::sync::Arc::new(log);
        let (tx, rx) = std::sync::mpsc::channel();
        let l2 = log.clone();
        let waiter = std::thread::spawn(move || tx.send(l2.append_blocking(ev(3))).unwrap());
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "the writer committed while another process held the lock"
        );
        let line = encode(&ev(2), 2, &first.hash).unwrap();
        (&other).write_all(&line).unwrap();
        (&other).write_all(b"\n").unwrap();
        other.unlock().unwrap();
        let c = rx.recv().unwrap().unwrap();
        waiter.join().unwrap();
        assert_eq!(c.seq, 3);
        drop(log);
        let v = verify(&p).unwrap();
        assert_eq!(v.entries.len(), 3);
        assert_eq!(v.entries[1]["version"], 2);
        assert_eq!(v.head, c.hash);
    }

    #[test]
    fn a_broken_foreign_append_or_a_truncation_stops_appends_and_leaves_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let (log, _) = AuditLog::open(&p).unwrap();
        log.append_blocking(ev(1)).unwrap();
        log.append_blocking(ev(2)).unwrap();
        let good = std::fs::read(&p).unwrap();
        // Someone appends a line that does not continue the chain.
        let forged = encode(&ev(9), 3, GENESIS).unwrap();
        let mut bad = good.clone();
        bad.extend_from_slice(&forged);
        bad.push(b'\n');
        std::fs::write(&p, &bad).unwrap();
        let err = log.append_blocking(ev(3)).unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("previous entry"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(&p).unwrap(),
            bad,
            "nothing may be chained onto it"
        );
        // A shared writer refuses it at open: its last line is canonical with a seq,
        // so it opens, but a cut-off line is refused before any command runs.
        std::fs::write(&p, &bad[..bad.len() - 5]).unwrap();
        let err = AuditLog::open_shared(&p).err().unwrap().to_string();
        assert!(err.contains("incomplete"), "{err}");
        // Truncation below what this writer last wrote.
        std::fs::write(&p, &good[..good.len() / 2]).unwrap();
        let err = log.append_blocking(ev(3)).unwrap_err().to_string();
        assert!(err.contains("truncated or replaced"), "{err}");
    }

    #[test]
    fn a_shared_writer_continues_a_long_log_from_its_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let (log, _) = AuditLog::open(&p).unwrap();
        // Long lines, so the tail is found across several backward reads.
        for i in 0..40 {
            let mut e = ev(i);
            e.reason = Some("x".repeat(3000));
            log.append_blocking(e).unwrap();
        }
        drop(log);
        let cli = AuditLog::open_shared(&p).unwrap();
        assert_eq!(cli.append_blocking(ev(99)).unwrap().seq, 41);
        drop(cli);
        assert_eq!(verify(&p).unwrap().entries.len(), 41);
        // A log of one long line has no newline before it.
        let q = dir.path().join("one.jsonl");
        let cli = AuditLog::open_shared(&q).unwrap();
        let mut e = ev(1);
        e.reason = Some("y".repeat(10_000));
        cli.append_blocking(e).unwrap();
        drop(cli);
        let cli = AuditLog::open_shared(&q).unwrap();
        assert_eq!(cli.append_blocking(ev(2)).unwrap().seq, 2);
        drop(cli);
        assert_eq!(verify(&q).unwrap().entries.len(), 2);
    }

    #[test]
    fn a_lock_held_for_good_is_reported_after_the_wait_and_no_lock_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let holder = open_append(&p).unwrap();
        holder.lock().unwrap();
        let mine = open_append(&p).unwrap();
        let wait = Duration::from_millis(100);
        let mut pending = None;
        let err = FileLock::exclusive(&mine, &p, Some(wait), &mut pending)
            .err()
            .unwrap();
        assert!(matches!(err, AuditError::Busy { .. }), "{err}");
        assert!(err.to_string().contains("waited 0 s for its lock"), "{err}");
        assert!(pending.is_some(), "the timed-out request stays queued");
        // The abandoned request gets the lock when the holder lets go, and must release
        // it at once: nobody is there to use it.
        holder.unlock().unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match holder.try_lock() {
                Ok(()) => break,
                Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("an abandoned lock request kept the lock: {e:?}"),
            }
        }
        // Held again: a new wait times out, the one after it re-attaches to the queued
        // request and gets the lock when it is released during that wait.
        assert!(FileLock::exclusive(&mine, &p, Some(wait), &mut pending).is_err());
        let queued = pending.clone().unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            holder.unlock().unwrap();
            holder
        });
        let locked = FileLock::exclusive(&mine, &p, Some(Duration::from_secs(5)), &mut pending)
            .expect("the lock, once released");
        assert!(pending.is_none());
        assert!(
            matches!(*queued.state(), WaitState::Over),
            "not re-attached"
        );
        let holder = release.join().unwrap();
        assert!(holder.try_lock().is_err(), "taken without the lock");
        drop(locked);
        assert!(holder.try_lock().is_ok(), "the lock was not released");
    }

    /// A busy daemon releases the lock between batches only for a moment; a CLI writer
    /// waiting meanwhile must get it then (its request is queued in the kernel and
    /// woken by the release), not poll and keep missing those moments until it gives
    /// up.
    #[test]
    fn a_waiting_writer_gets_the_lock_at_the_next_release() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let holder = open_append(&p).unwrap();
        holder.lock().unwrap();
        let releases = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let busy = {
            let (releases, stop) = (releases.clone(), stop.clone());
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(5);
                while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(40));
                    releases.fetch_add(1, Ordering::SeqCst);
                    holder.unlock().unwrap();
                    std::thread::sleep(Duration::from_millis(1));
                    holder.lock().unwrap();
                }
                holder.unlock().unwrap();
            })
        };
        let mine = open_append(&p).unwrap();
        let got = FileLock::exclusive(&mine, &p, Some(Duration::from_secs(3)), &mut None)
            .map(|_locked| releases.load(Ordering::SeqCst));
        stop.store(true, Ordering::SeqCst);
        busy.join().unwrap();
        let at = got.expect("starved: never got the lock");
        assert!(
            at <= 2,
            "got the lock only after {at} releases: the waiter is not woken by a release"
        );
    }

    #[test]
    fn verify_gives_up_on_a_lock_held_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let cli = AuditLog::open_shared(&p).unwrap();
        cli.append_blocking(ev(1)).unwrap();
        drop(cli);
        // As a `tufkey serve` from before the per-batch lock holds it.
        let holder = open_append(&p).unwrap();
        holder.lock().unwrap();
        let (tx, rx) = mpsc::channel();
        let q = p.clone();
        std::thread::spawn(move || {
            let _ = tx.send(verify_within(&q, Duration::from_millis(200)).map(|v| v.head));
        });
        let err = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("verify waits for ever on a locked log")
            .unwrap_err();
        assert!(matches!(err, AuditError::ReadBusy { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&p.display().to_string()) && msg.contains("verify a copy"),
            "{msg}"
        );
        holder.unlock().unwrap();
        assert_eq!(verify(&p).unwrap().entries.len(), 1);
    }

    #[test]
    fn a_renamed_replaced_or_deleted_log_is_not_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let (log, _) = AuditLog::open(&p).unwrap();
        log.append_blocking(ev(1)).unwrap();
        // Rotation by renaming, under the running daemon.
        let rotated = dir.path().join("audit.jsonl.1");
        std::fs::rename(&p, &rotated).unwrap();
        let before = std::fs::read(&rotated).unwrap();
        let err = log.append_blocking(ev(2)).unwrap_err().to_string();
        assert!(
            err.contains("renamed or moved away") && err.contains("Restart `tufkey serve`"),
            "{err}"
        );
        assert_eq!(std::fs::read(&rotated).unwrap(), before);
        assert!(!p.exists());
        // A CLI command then starts a new file at the path: the daemon still refuses,
        // so the old file is not continued as a second chain beside the new one.
        let cli = AuditLog::open_shared(&p).unwrap();
        assert_eq!(cli.append_blocking(ev(3)).unwrap().seq, 1);
        let err = log.append_blocking(ev(4)).unwrap_err().to_string();
        assert!(err.contains("now names another file"), "{err}");
        assert_eq!(std::fs::read(&rotated).unwrap(), before);
        assert_eq!(verify(&p).unwrap().entries.len(), 1);
        drop(cli);
        // Put back, the log is the daemon's file again and its chain goes on.
        std::fs::rename(&rotated, &p).unwrap();
        assert_eq!(log.append_blocking(ev(5)).unwrap().seq, 2);
        // Deleted.
        std::fs::remove_file(&p).unwrap();
        let err = log.append_blocking(ev(6)).unwrap_err().to_string();
        assert!(err.contains("the file was deleted"), "{err}");
        assert!(!p.exists());
    }

    #[test]
    fn a_second_daemon_reaching_the_log_through_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("audit.jsonl");
        let link = dir.path().join("link.jsonl");
        // Dangling until the first daemon creates the log through it.
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let (_log, _) = AuditLog::open(&link).unwrap();
        assert!(real.exists());
        let err = AuditLog::open(&real)
            .err()
            .expect("a second daemon must be refused");
        assert!(matches!(err, AuditError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("/audit.jsonl.serve.lock"), "{err}");
        // And through a symlinked folder.
        let folder = dir.path().join("folder");
        std::os::unix::fs::symlink(dir.path(), &folder).unwrap();
        let err = AuditLog::open(&folder.join("audit.jsonl"))
            .err()
            .expect("a second daemon must be refused");
        assert!(matches!(err, AuditError::Locked { .. }), "{err}");
        assert!(!dir.path().join("link.jsonl.serve.lock").exists());
    }

    const SHORT_WRITE_DIR: &str = "TUFKEY_AUDIT_TEST_SHORT_WRITE_DIR";

    /// A batch write that fails halfway (disk full, file size limit) must not leave its
    /// partial line behind, where it would stop every writer for good. Made real with
    /// a file size limit (RLIMIT_FSIZE, `ulimit -f`) in a child process: the kernel
    /// writes up to the limit, then fails the rest with EFBIG.
    #[test]
    fn a_failed_batch_write_is_cut_off_and_later_entries_still_commit() {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(
                "trap '' XFSZ; ulimit -f 8 && exec \"$0\" --exact \
                 audit::tests::short_write_child --ignored --nocapture --test-threads=1",
            )
            .arg(std::env::current_exe().unwrap())
            .env(SHORT_WRITE_DIR, dir.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("1 passed"),
            "the child test did not run: {text}"
        );
        assert!(text.contains("short write seen"), "{text}");
    }

    #[test]
    #[ignore = "run in a child process by a_failed_batch_write_is_cut_off_and_later_entries_still_commit"]
    fn short_write_child() {
        let Some(dir) = std::env::var_os(SHORT_WRITE_DIR) else {
            return;
        };
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let limit: usize = limits
            .lines()
            .find(|l| l.starts_with("Max file size"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|n| n.parse().ok())
            .expect("a file size limit");
        let p = Path::new(&dir).join("audit.jsonl");
        let (log, _) = AuditLog::open(&p).unwrap();
        log.append_blocking(ev(1)).unwrap();
        log.append_blocking(ev(2)).unwrap();
        let good = std::fs::read(&p).unwrap();
        assert!(good.len() < limit / 2, "{} bytes already", good.len());
        let mut big = ev(3);
        big.reason = Some("x".repeat(limit));
        let err = log.append_blocking(big).unwrap_err().to_string();
        assert!(err.contains("removed again"), "{err}");
        println!("short write seen: {err}");
        assert_eq!(
            std::fs::read(&p).unwrap(),
            good,
            "the failed batch's partial line is still in the file"
        );
        // Neither this writer nor another is stuck: the chain goes on from entry 2.
        assert_eq!(log.append_blocking(ev(4)).unwrap().seq, 3);
        let cli = AuditLog::open_shared(&p).unwrap();
        assert_eq!(cli.append_blocking(ev(5)).unwrap().seq, 4);
        drop(cli);
        drop(log);
        assert_eq!(verify(&p).unwrap().entries.len(), 4);
    }

    #[test]
    fn an_unwritable_log_fails_at_open_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no-such-dir").join("audit.jsonl");
        let err = AuditLog::open_shared(&p).err().unwrap().to_string();
        assert!(err.contains(&p.display().to_string()), "{err}");
    }
}
