//! Signing on a blocking worker with the audit entry made durable on the same thread.
//!
//! A request used to hop four times: to a blocking worker to sign, back to the runtime,
//! to the audit writer thread, and back again once the entry was fsynced. Each hop is a
//! wake-up of a sleeping thread. Here the worker that signed (and checked the signature)
//! also commits the entry, leader/follower: workers that finish while a commit is
//! running queue their entries, and the next one to take the log commits them all with
//! one fsync ([`crate::audit::AuditLog::append_many_blocking`]). The HSM permit is given
//! back as soon as the signature is made, so the next request signs while this one's
//! entry is written. The signature still reaches the client only once its entry is
//! durable, and every signature is still checked against the public key first.

use std::sync::Arc;

use hyper::StatusCode;

use super::api::App;
use super::refusal::{audit_failed, busy, key_refusal, refuse, Failed};
use super::served::ServedKey;
use super::store::StoreError;
use crate::audit::{Committed, Event};
use crate::keys::KeyError;
use crate::tuf::Signature;

/// What the blocking worker did.
enum Done {
    Signed(Signature, Committed),
    Key(KeyError),
    Audit(StoreError),
}

impl App {
    /// Signs `payload` with `key` on a blocking worker (at most `workers` at once; 503
    /// after `queue_timeout`), checks the signature, and makes `ev` — as `signed`, 200 —
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
        let signer = key.signer.clone();
        let store = Arc::clone(&self.store);
        ev.result = "signed".into();
        ev.status = Some(200);
        let done = tokio::task::spawn_blocking(move || {
            let signed = crate::keys::sign_checked(signer.as_ref(), &payload);
            drop(permit);
            match signed {
                Err(e) => Done::Key(e),
                Ok(sig) => match store.append_many_blocking(vec![ev]) {
                    Ok(mut c) => match c.pop() {
                        Some(c) => Done::Signed(sig, c),
                        None => Done::Audit(StoreError::State("no entry was committed".into())),
                    },
                    Err(e) => Done::Audit(e),
                },
            }
        })
        .await;
        let done = match done {
            Ok(d) => d,
            Err(e) => {
                self.hsm_failed();
                return Err(Failed::Signing(refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "hsm-error",
                    format!("the signing worker failed: {e}"),
                )));
            }
        };
        match done {
            Done::Key(e) => {
                self.hsm_failed();
                Err(Failed::Signing(key_refusal(&e)))
            }
            Done::Audit(e) => {
                self.audit_result(Err(&e));
                Err(Failed::Audit(audit_failed(e)))
            }
            Done::Signed(sig, committed) => {
                self.audit_result(Ok(&committed));
                Ok(sig)
            }
        }
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
