//! The state a `Token` keeps between calls — its login, the back-off of
//! an absent token, the objects listed for deletion — and the lock helper every part of
//! the backend uses. A leaf: the `impl Token` files use it, it uses none of them.

use std::sync::{Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use cryptoki::object::{ObjectClass, ObjectHandle};

use crate::keys::secret::Secret;

use super::limits::{REINIT_BACKOFF_MAX, REINIT_INTERVAL};

/// Locks a mutex; a panic while holding one of these locks leaves plain data behind,
/// so a poisoned lock is used as it is.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An object as `Token::key_objects` listed it (and the user confirmed).
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Listed {
    pub(super) handle: ObjectHandle,
    pub(super) class: Option<ObjectClass>,
    pub(super) label: Vec<u8>,
    pub(super) id: Vec<u8>,
}

/// The back-off of an absent token's re-initialisation requests.
pub(super) struct Backoff {
    /// No re-initialisation for this token before then.
    not_before: Option<Instant>,
    /// The wait after the next re-initialisation that does not bring the token back.
    wait: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            not_before: None,
            wait: REINIT_INTERVAL,
        }
    }
}

impl Backoff {
    /// A re-initialisation did not bring the token back: wait longer before the next.
    pub(super) fn failed(&mut self, now: Instant) {
        self.not_before = Some(now + self.wait);
        self.wait = (self.wait * 2).min(REINIT_BACKOFF_MAX);
    }

    /// How long until the next re-initialisation is allowed (None: now).
    pub(super) fn remaining(&self, now: Instant) -> Option<Duration> {
        self.not_before
            .and_then(|t| t.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }
}

#[derive(Default)]
pub(super) struct LoginState {
    /// The module generation in which this process is logged in to the token.
    pub(super) generation: Option<u64>,
    /// The PIN that logged in last. The token does not own it (tokens live in a static
    /// map, which is never dropped): the signers that logged in with it hold it (see
    /// `Pkcs11Signer`) to log in again after the device comes back or the module is
    /// re-initialised, and it is zeroized when the last of them is dropped. This lets a
    /// signer opened later on the logged-in token share it.
    pub(super) pin: Weak<Secret>,
    /// Set when a login that tufkey made by itself failed (a wrong PIN, or any answer
    /// that does not plainly mean the device is gone): no PIN is tried again.
    pub(super) refused: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_token_backs_off_doubling_up_to_a_minute() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert_eq!(b.remaining(t0), None);
        let mut waits = Vec::new();
        for _ in 0..9 {
            b.failed(t0);
            waits.push(b.remaining(t0).unwrap().as_secs());
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(b.remaining(t0 + REINIT_BACKOFF_MAX), None);
    }
}
