//! Signing a request's payload and making its audit entry durable, with as few thread
//! hand-offs as the key allows.
//!
//! A request used to hop four times: to a blocking worker to sign, back to the runtime,
//! to the audit writer thread, and back again once the entry was fsynced; each hop is a
//! wake-up of a sleeping thread, and on two vCPUs those wake-ups cost more CPU than the
//! JSON and the TLS of the request (docs/performance.md, "Daemon CPU per signature").
//! Now, for keys that answer in microseconds to milliseconds (PKCS#11 sessions, `file:`
//! keys), the request's own runtime thread signs, checks the signature and commits the
//! entry itself: leader/follower, so entries that queue while a commit runs go to disk
//! with the next one fsync ([`crate::audit::AuditLog::append_many_blocking`]). At most
//! `workers` requests do so at once (the HSM permits, held until the entry is durable),
//! and the runtime has two threads more than that (`server::run`), so connections,
//! health and metrics are always served while HSM calls and fsyncs block. YubiKey keys
//! (a card that may wait for a touch), and stores whose blocking commit waits for the
//! runtime (PostgreSQL), keep signing and committing on the blocking pool. The
//! signature still reaches the client only once its entry is durable, and every
//! signature is checked against the public key first.

use std::sync::Arc;

use hyper::StatusCode;

use super::api::App;
use super::refusal::{audit_failed, busy, key_refusal, refuse, Failed};
use super::served::ServedKey;
use super::store::{Store, StoreError};
use crate::audit::{Committed, Event};
use crate::keys::KeyError;
use crate::tuf::Signature;

/// What signing and committing came to.
enum Done {
    Signed(Signature, Committed),
    Key(KeyError),
    Audit(StoreError),
}

impl App {
    /// Signs `payload` with `key` (at most `workers` at once; 503 after
    /// `queue_timeout`), checks the signature, and makes `ev` — as `signed`, 200 —
    /// durable before returning the signature.
    pub(super) async fn sign_recorded(
        &self,
        key: &ServedKey,
        payload: Vec<u8>,
        mut ev: Event,
    ) -> Result<Signature, Failed> {
        let permit = match tokio::time::timeout(
            self.cfg.limits.queue_timeout,
            self.workers.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(p)) => p,
            _ => return Err(Failed::Signing(busy("every HSM worker"))),
        };
        ev.result = "signed".into();
        ev.status = Some(200);
        let done = if key.inline && self.store.commits_on_caller() {
            // On this thread: sign, check, commit; the permit bounds how many runtime
            // threads are in here at once.
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                sign_and_commit(key, &payload, ev, self.store.as_ref())
            }));
            drop(permit);
            done.map_err(|_| "the signer panicked".to_string())
        } else {
            self.sign_elsewhere(key, payload, ev, permit).await
        };
        match done {
            Err(e) => {
                self.hsm_failed();
                Err(Failed::Signing(refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "hsm-error",
                    format!("the signing worker failed: {e}"),
                )))
            }
            Ok(Done::Key(e)) => {
                self.hsm_failed();
                Err(Failed::Signing(key_refusal(&e)))
            }
            Ok(Done::Audit(e)) => {
                self.audit_result(Err(&e));
                Err(Failed::Audit(audit_failed(e)))
            }
            Ok(Done::Signed(sig, committed)) => {
                self.audit_result(Ok(&committed));
                Ok(sig)
            }
        }
    }

    /// Signs and commits on the blocking pool: for keys that may take long, and for
    /// stores whose blocking commit must not run on a runtime thread.
    async fn sign_elsewhere(
        &self,
        key: &ServedKey,
        payload: Vec<u8>,
        ev: Event,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Done, String> {
        let signer = key.signer.clone();
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let signed = crate::keys::sign_checked(signer.as_ref(), &payload);
            // The next request may sign while this entry is written.
            drop(permit);
            match signed {
                Ok(sig) => commit(store.append_many_blocking(vec![ev]), sig),
                Err(e) => Done::Key(e),
            }
        })
        .await
        .map_err(|e| e.to_string())
    }

    /// A failed signature: counted, and a cached healthy answer dropped (a check in
    /// flight makes a fresh one anyway).
    pub(super) fn hsm_failed(&self) {
        self.metrics.hsm_error();
        if let Ok(mut cached) = self.health.try_lock() {
            *cached = None;
        }
    }

    /// What health, the head and the metrics learn from an audit commit.
    pub(super) fn audit_result(&self, r: Result<&Committed, &StoreError>) {
        *self.audit_failure.lock().unwrap_or_else(|e| e.into_inner()) =
            r.err().map(|e| e.to_string());
        if let Ok(c) = r {
            let mut h = self.head.lock().unwrap_or_else(|e| e.into_inner());
            if c.seq > h.0 {
                *h = (c.seq, c.hash.clone());
            }
            self.metrics.set_audit_entries(c.seq);
        }
    }
}

/// Signs `payload` with `key`, checks the signature and, if it verifies, commits `ev`
/// on the calling thread.
fn sign_and_commit(key: &ServedKey, payload: &[u8], ev: Event, store: &dyn Store) -> Done {
    match crate::keys::sign_checked(key.signer.as_ref(), payload) {
        Err(e) => Done::Key(e),
        Ok(sig) => commit(store.append_many_blocking(vec![ev]), sig),
    }
}

/// The outcome of committing a signature's one entry.
fn commit(committed: Result<Vec<Committed>, StoreError>, sig: Signature) -> Done {
    match committed {
        Ok(mut c) => match c.pop() {
            Some(c) => Done::Signed(sig, c),
            None => Done::Audit(StoreError::State("no entry was committed".into())),
        },
        Err(e) => Done::Audit(e),
    }
}
