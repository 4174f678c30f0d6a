//! Many signatures with one key over several sessions of its token at once: a worker
//! thread per session, each taking the next message until none is left. Re-signing
//! thousands of hashed bins is bound by the token, and a token serves one C_Sign per
//! session at a time, so the sessions are what parallelism buys.
//!
//! Each worker signs through [`Signer::sign`], so every signature keeps the pool, the
//! shared login, the PIN rules and the recovery after a device went away.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::keys::error::KeyError;
use crate::keys::signer::{Done, Signer};

/// The environment variable that sets how many sessions (threads) sign at once.
pub const THREADS_ENV: &str = "TUFKEY_PKCS11_THREADS";

/// Most sessions a batch uses, whatever the setting: tokens limit their sessions, and
/// more threads than that only wait on each other.
pub const MAX_THREADS: usize = 64;

/// How many sessions sign a batch: `TUFKEY_PKCS11_THREADS`, else the CPU count (at
/// least 2, as a token answers one session while the host prepares the next message).
pub fn threads() -> usize {
    let configured = std::env::var(THREADS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n >= 1);
    let default = || {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2)
    };
    configured.unwrap_or_else(default).min(MAX_THREADS)
}

/// Signs `messages` with `signer` on up to `threads` threads, telling `done` as each is
/// signed; one result per message, in order. A failed message does not stop the others.
pub fn sign_parallel(
    signer: &dyn Signer,
    messages: &[&[u8]],
    threads: usize,
    done: &Done<'_>,
) -> Vec<Result<Vec<u8>, KeyError>> {
    let workers = threads.clamp(1, messages.len().max(1));
    if workers == 1 {
        return messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let r = signer.sign(m);
                done(i, &r);
                r
            })
            .collect();
    }
    let slots: Vec<OnceLock<Result<Vec<u8>, KeyError>>> =
        messages.iter().map(|_| OnceLock::new()).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(m) = messages.get(i) else {
                    break;
                };
                let r = signer.sign(m);
                done(i, &r);
                let _ = slots[i].set(r);
            });
        }
    });
    slots
        .into_iter()
        .map(|slot| {
            // Every index below the length was taken by a worker that set its slot.
            slot.into_inner().unwrap_or_else(|| {
                Err(KeyError::Unsupported {
                    uri: signer.uri().to_string(),
                    reason: "a signing thread ended without a result".into(),
                })
            })
        })
        .collect()
}
