//! The file sink: a JSON-lines log, appended to by the daemon and by any number of
//! CLI commands at once. Each batch is committed under an exclusive `flock` on the
//! log: the writer catches up with (and checks) what others appended, chains its
//! batch onto the real tail, writes, fdatasyncs and only then unlocks (group commit:
//! one write and one fsync for every entry queued meanwhile).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::chain::{encode, line_hash, parse_line, verify_bytes, Chain, Verified};
use super::error::AuditError;
use super::event::{Committed, Event};
use super::lock::{FileLock, LockError, LockKind, LockWait};
use super::sink::{Sink, SinkFuture};

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
pub(super) fn verify_within(path: &Path, wait: Duration) -> Result<Verified, AuditError> {
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

type Reply = tokio::sync::oneshot::Sender<Result<Vec<Committed>, String>>;

/// Entries committed together (all or none), and who waits for them.
type Submission = (Vec<Event>, Reply);

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
    tx: Option<mpsc::Sender<Submission>>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// The writer's state, shared by the writer thread and the blocking callers that
    /// commit themselves ([`AuditLog::append_many_blocking`]): whoever holds it commits.
    state: Arc<Mutex<WriterState>>,
    /// Entries of blocking callers waiting for the next commit.
    queue: Arc<Mutex<Vec<Submission>>>,
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
            super::torn::cut_torn_tail(&file, path)?;
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
            super::torn::cut_torn_tail(&file, path)?;
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

    fn start(state: WriterState, owner: Option<File>) -> Result<AuditLog, AuditError> {
        let path = state.path.clone();
        let (tx, rx) = mpsc::channel::<Submission>();
        let state = Arc::new(Mutex::new(state));
        let shared = state.clone();
        let waiting = Arc::new(Mutex::new(Vec::new()));
        let queue = waiting.clone();
        let writer = std::thread::Builder::new()
            .name("tufkey-audit".into())
            .spawn(move || run(&shared, &queue, rx))
            .map_err(|err| AuditError::Io {
                path: path.clone(),
                err,
            })?;
        Ok(AuditLog {
            path,
            tx: Some(tx),
            writer: Some(writer),
            state,
            queue: waiting,
            _owner: owner,
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn submit(
        &self,
        events: Vec<Event>,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Vec<Committed>, String>>, AuditError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .as_ref()
            .and_then(|tx| tx.send((events, reply)).ok())
            .ok_or_else(|| AuditError::Stopped {
                path: self.path.clone(),
            })?;
        Ok(rx)
    }

    fn outcome(
        &self,
        r: Result<Result<Vec<Committed>, String>, tokio::sync::oneshot::error::RecvError>,
    ) -> Result<Vec<Committed>, AuditError> {
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
        let rx = self.submit(vec![event])?;
        single(self.outcome(rx.await)?, &self.path)
    }

    /// Appends `events` in one commit (one write, one fsync: all or none) and returns
    /// where each landed, in order.
    pub async fn append_many(&self, events: Vec<Event>) -> Result<Vec<Committed>, AuditError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let rx = self.submit(events)?;
        self.outcome(rx.await)
    }

    /// Appends `events` in one commit, on the calling thread (leader/follower group
    /// commit): the caller queues its entries and takes the writer; if a commit that
    /// was running meanwhile took them along, it is done, otherwise it commits every
    /// queued entry itself. No hand-off to the writer thread and back, so a daemon
    /// worker that just signed makes its entry durable with one fsync shared by every
    /// worker that queued meanwhile. Blocking: for threads that may block (a daemon's
    /// blocking workers, the CLI), never an async task.
    pub fn append_many_blocking(&self, events: Vec<Event>) -> Result<Vec<Committed>, AuditError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, mut rx) = tokio::sync::oneshot::channel();
        lock(&self.queue).push((events, reply));
        let mut writer = lock(&self.state);
        if let Ok(done) = rx.try_recv() {
            return self.outcome(Ok(done));
        }
        // The queue is drained only under the writer's lock, so ours is still in it.
        let batch = std::mem::take(&mut *lock(&self.queue));
        writer.commit(batch);
        drop(writer);
        let done = rx
            .try_recv()
            .unwrap_or_else(|_| Err("the entry was not committed".into()));
        self.outcome(Ok(done))
    }

    /// As [`AuditLog::append`], blocking the calling thread (the CLI). Must not be
    /// called from inside an async runtime.
    pub fn append_blocking(&self, event: Event) -> Result<Committed, AuditError> {
        let rx = self.submit(vec![event])?;
        single(self.outcome(rx.blocking_recv())?, &self.path)
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

impl Sink for AuditLog {
    fn append(&self, event: Event) -> SinkFuture<'_, Result<Committed, AuditError>> {
        Box::pin(AuditLog::append(self, event))
    }

    fn append_many(
        &self,
        events: Vec<Event>,
    ) -> SinkFuture<'_, Result<Vec<Committed>, AuditError>> {
        Box::pin(AuditLog::append_many(self, events))
    }

    fn append_many_blocking(&self, events: Vec<Event>) -> Result<Vec<Committed>, AuditError> {
        AuditLog::append_many_blocking(self, events)
    }

    fn append_blocking(&self, event: Event) -> Result<Committed, AuditError> {
        AuditLog::append_blocking(self, event)
    }
}

/// The one entry of a one-entry submission.
fn single(mut done: Vec<Committed>, path: &Path) -> Result<Committed, AuditError> {
    done.pop()
        .ok_or_else(|| AuditError::Stopped { path: path.into() })
}

pub(super) fn open_append(path: &Path) -> Result<File, AuditError> {
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

/// A lock that a panicking holder did not leave unusable: the writer's state stays
/// consistent between commits (a failed commit records why in `failed`).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The writer thread: commits what async callers send, taking along every entry that
/// queued meanwhile, blocking callers' included.
fn run(state: &Mutex<WriterState>, queue: &Mutex<Vec<Submission>>, rx: mpsc::Receiver<Submission>) {
    while let Ok(first) = rx.recv() {
        let mut entries = first.0.len();
        let mut batch = vec![first];
        while entries < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => {
                    entries += next.0.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let mut writer = lock(state);
        // Drained under the writer's lock (see `AuditLog::append_many_blocking`).
        batch.append(&mut lock(queue));
        writer.commit(batch);
    }
}

impl WriterState {
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
        let mut text = read_range(&self.file, &self.path, self.len, Some(now))?;
        if !text.ends_with(b"\n") {
            // Another writer died in the middle of its write: its entry never committed.
            let cut = super::torn::cut_torn_tail(&self.file, &self.path)?;
            text.truncate(text.len().saturating_sub(cut as usize));
            if text.is_empty() {
                return Ok(());
            }
        }
        let now = self.len + text.len() as u64;
        let mut chain = self.chain.clone();
        for line in text[..text.len() - 1].split(|b| *b == b'\n') {
            chain.push(&self.path, line)?;
        }
        self.chain = chain;
        self.len = now;
        Ok(())
    }

    fn commit(&mut self, batch: Vec<Submission>) {
        let refuse_all = |batch: Vec<Submission>, reason: String| {
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
        for (events, reply) in batch {
            let mut landed = Vec::with_capacity(events.len());
            for event in &events {
                let line = encode(event, chain.seq + 1, &chain.head);
                chain.seq += 1;
                chain.head = line_hash(&line);
                bytes.extend_from_slice(&line);
                bytes.push(b'\n');
                landed.push(Committed {
                    seq: chain.seq,
                    hash: chain.head.clone(),
                });
            }
            done.push((reply, landed));
        }
        // Durable before the lock is released and before anyone is told.
        crate::testhook::at("audit-append");
        if crate::testhook::reached("audit-half-written") {
            // A torn entry, as a crash in the middle of the write (or power loss) leaves it.
            let _ = self.file.write_all(&bytes[..bytes.len() / 2]);
            crate::testhook::stall("audit-half-written");
        }
        let written = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        if written.is_ok() {
            crate::testhook::at("audit-appended");
        }
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
