//! The advisory lock (`flock`) each batch is committed under, with a bounded wait
//! that is queued in the kernel instead of polled.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::error::AuditError;

/// Which lock: exclusive to append, shared to read the whole log.
#[derive(Clone, Copy)]
pub(super) enum LockKind {
    Exclusive,
    Shared,
}

/// Why a bounded wait for the lock ended without it.
#[derive(Debug)]
pub(super) enum LockError {
    TimedOut,
    Io(std::io::Error),
}

/// A lock request queued in the kernel by a helper thread (`flock` itself has no
/// timeout). The helper blocks in `flock`, so it is woken the moment the lock is
/// released, instead of polling with `try_lock` and losing every race to a busy
/// daemon that takes the lock again within microseconds.
pub(super) struct LockWait {
    state: Mutex<WaitState>,
    ready: Condvar,
}

pub(super) enum WaitState {
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
    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, WaitState> {
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
pub(super) struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    /// The exclusive lock for appending, as an [`AuditError`] naming the log.
    pub(super) fn exclusive(
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
    pub(super) fn take(
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
