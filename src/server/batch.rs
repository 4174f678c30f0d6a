//! `POST /v1/sign-batch`: many TUF documents for one key in one request.
//!
//! Each document is checked exactly as `POST /v1/sign` checks one ([`document`]): role,
//! repository, key, expiry, then its version is claimed. A refused document does not
//! stop the others: each gets its own result. Everything that can be signed is signed
//! on one HSM worker (`Signer::sign_many`, so a backend that signs in parallel does),
//! every signature is checked against the public key, and then one audit entry per
//! signature and per refusal is made durable in ONE commit (one fsync, or one
//! PostgreSQL transaction) before the answer is sent.
//!
//! What refuses the whole request, with one audit entry: no policy, a key the client
//! may not use, a malformed body, more documents or bytes than the limits (413, before
//! anything is parsed further or signed), a rate that cannot cover every document (429:
//! a batch of `n` costs `n` requests, all or none; docs/signer.md, "Batches").

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

use super::api::{App, ConnInfo};
use super::body::BodyLimits;
use super::config::ClientPolicy;
use super::document;
use super::refusal::{
    audit_failed, bad_request, busy, json_bytes_response, key_refusal, refuse, Refusal,
};
use super::served::ServedKey;
use super::sign_body::{BatchRequest, Document};
use crate::audit::Event;
use crate::keys::{sign_checked_many, KeyError};
use crate::tuf::Signature;

/// The answer to a batch. Members are declared in name order, so the answer's bytes
/// are those a `json!` tree gave before (serde_json's maps are sorted).
#[derive(Serialize)]
struct BatchAnswer<'a> {
    keyid: &'a str,
    refused: usize,
    results: Vec<DocumentResult>,
    signed: usize,
}

/// One document's result in a batch answer.
#[derive(Serialize)]
#[serde(untagged)]
enum DocumentResult {
    Signed(SignedResult),
    /// The refusal's body with its `status`.
    Refused(Value),
}

/// A signed document's result (members in name order, as above).
#[derive(Serialize)]
struct SignedResult {
    keyid: String,
    payload_sha256: Option<String>,
    repository: String,
    role: String,
    sig: String,
    status: u16,
    version: u64,
}

/// A document that passed every check and holds its version claim.
struct Claimed {
    payload: Vec<u8>,
    repository: String,
    role: String,
    version: u64,
    prev: u64,
}

/// One document's way through the batch: its audit entry and where it stands.
struct Slot {
    ev: Event,
    state: Result<Claimed, Refusal>,
    sig: Option<Signature>,
}

impl App {
    /// The batch limits a client sees in `GET /v1/keys`, so that it can split its work:
    /// the documents per request are also capped by the client's rate (a batch must fit
    /// in its bucket).
    pub(super) fn batch_limits(&self, policy: &ClientPolicy) -> Value {
        let l = &self.cfg.limits;
        let docs = policy.rate.map_or(l.max_batch_documents, |r| {
            l.max_batch_documents.min(r.count as usize)
        });
        json!({"max_documents": docs, "max_bytes": l.max_batch_body})
    }

    /// Answers `POST /v1/sign-batch`.
    pub(super) async fn sign_batch(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
    ) -> Response<Full<Bytes>> {
        let mut ev = self.event(conn, "sign-batch");
        match self.sign_batch_inner(req, conn, &mut ev).await {
            Ok(body) => json_bytes_response(StatusCode::OK, body),
            Err(r) => self.refused(ev, r).await,
        }
    }

    async fn sign_batch_inner(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
        ev: &mut Event,
    ) -> Result<Vec<u8>, Refusal> {
        let policy = self.authorized(conn)?;
        let l = &self.cfg.limits;
        let too_large = |mut r: Refusal| {
            if r.status == StatusCode::PAYLOAD_TOO_LARGE {
                r.extra = Some(self.batch_limits(policy));
            }
            r
        };
        let limits = BodyLimits {
            max: l.max_batch_body,
            code: "batch-too-large",
            timeout: l.body_timeout,
            queue_timeout: l.queue_timeout,
        };
        let body = self.bodies.read(req, &limits).await.map_err(too_large)?;
        let r = BatchRequest::parse(&body.bytes)?;
        let key_id = r.key_id.to_ascii_lowercase();
        ev.key_id = Some(key_id.clone());
        let n = r.documents.len();
        if n == 0 {
            return Err(bad_request("malformed", "`documents` is empty"));
        }
        if n > l.max_batch_documents {
            return Err(too_large(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch-too-large",
                format!(
                    "the batch has {n} documents, more than the signer's limit of {}; split it",
                    l.max_batch_documents
                ),
            )));
        }
        let key = self.key(policy, &key_id)?;
        if let Some(rate) = policy.rate.filter(|r| n > r.count as usize) {
            return Err(refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "batch-over-rate",
                format!(
                    "the batch has {n} documents, more than the {} per {:?} that client {} may ever have at once; send batches of at most {}",
                    rate.count, rate.period, policy.identity, rate.count
                ),
            ));
        }
        // A single-use token is spent once per request, as for `/v1/sign`.
        conn.use_once(self.oidc.as_ref())
            .await
            .map_err(super::refusal::Refusal::from)?;
        // `n` fits in a u32: it is at most max_batch_documents (≤ 100,000).
        self.take_rate(policy, n as u32).await?;

        let now = chrono::Utc::now();
        let mut slots = Vec::with_capacity(n);
        for d in r.documents {
            let mut doc_ev = Event {
                key_id: Some(key_id.clone()),
                ..ev.clone()
            };
            let repository = d.repository.or_else(|| r.repository.clone());
            let state = self
                .claim(
                    policy,
                    key,
                    &key_id,
                    repository,
                    d.role,
                    d.metadata,
                    now,
                    &mut doc_ev,
                )
                .await;
            slots.push(Slot {
                ev: doc_ev,
                state,
                sig: None,
            });
        }
        self.sign_claimed(key, &mut slots).await;
        self.commit_batch(&key_id, slots).await
    }

    /// Checks one document and claims its version.
    #[allow(clippy::too_many_arguments)]
    async fn claim(
        &self,
        policy: &ClientPolicy,
        key: &ServedKey,
        key_id: &str,
        repository: Option<String>,
        role: Option<String>,
        metadata: Document,
        now: chrono::DateTime<chrono::Utc>,
        ev: &mut Event,
    ) -> Result<Claimed, Refusal> {
        let doc = metadata.prepare(role)?;
        ev.payload_sha256 = Some(doc.payload_sha256.clone());
        ev.role = Some(doc.role.clone());
        ev.version = doc.md.version();
        let repository = document::repository(policy, repository)?;
        ev.repository = Some(repository.clone());
        let version = document::check(policy, key, key_id, &repository, &doc, now)?;
        let prev = self
            .store
            .reserve(&repository, &doc.role, version)
            .await
            .map_err(|e| document::reserve_refusal(e, &repository, &doc.role, version))?;
        Ok(Claimed {
            payload: doc.payload,
            repository,
            role: doc.role,
            version,
            prev,
        })
    }

    /// Signs every claimed document on one HSM worker; a document whose signature
    /// failed gets its refusal and its version back.
    async fn sign_claimed(&self, key: &ServedKey, slots: &mut [Slot]) {
        let claimed: Vec<usize> = (0..slots.len())
            .filter(|i| slots[*i].state.is_ok())
            .collect();
        if claimed.is_empty() {
            return;
        }
        // Moved, not copied: nothing needs a payload once it is signed.
        let payloads: Vec<Vec<u8>> = claimed
            .iter()
            .filter_map(|i| {
                slots[*i]
                    .state
                    .as_mut()
                    .ok()
                    .map(|c| std::mem::take(&mut c.payload))
            })
            .collect();
        let signed = self.sign_many_on_worker(key, payloads).await;
        for (k, i) in claimed.into_iter().enumerate() {
            let outcome = match &signed {
                Ok(all) => match all.get(k) {
                    Some(Ok(sig)) => Ok(sig.clone()),
                    Some(Err(e)) => Err(key_refusal(e)),
                    None => Err(refuse(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "hsm-error",
                        "the key backend returned fewer signatures than documents",
                    )),
                },
                Err(r) => Err(refuse(r.status, r.code, r.message.clone())),
            };
            match outcome {
                Ok(sig) => slots[i].sig = Some(sig),
                Err(refusal) => {
                    if let Ok(c) = &slots[i].state {
                        if let Err(e) = self
                            .store
                            .release(&c.repository, &c.role, c.version, c.prev)
                            .await
                        {
                            eprintln!(
                                "tufkey serve: cannot release {}/{} v{}: {e}",
                                c.repository, c.role, c.version
                            );
                        }
                    }
                    slots[i].state = Err(refusal);
                }
            }
        }
    }

    /// `sign_checked` for many payloads on one blocking worker (one permit): the
    /// outer error is for the whole batch (no worker free, the worker failed).
    async fn sign_many_on_worker(
        &self,
        key: &ServedKey,
        payloads: Vec<Vec<u8>>,
    ) -> Result<Vec<Result<Signature, KeyError>>, Refusal> {
        let _permit =
            match tokio::time::timeout(self.cfg.limits.queue_timeout, self.workers.acquire()).await
            {
                Ok(Ok(p)) => p,
                _ => return Err(busy("every HSM worker")),
            };
        let signer = key.signer.clone();
        let done = tokio::task::spawn_blocking(move || {
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            sign_checked_many(signer.as_ref(), &refs)
        })
        .await;
        let failed = match &done {
            Ok(all) => all.iter().any(Result::is_err),
            Err(_) => true,
        };
        if failed {
            self.hsm_failed();
        }
        done.map_err(|e| {
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "hsm-error",
                format!("the signing worker failed: {e}"),
            )
        })
    }

    /// One audit entry per document in one commit, then the answer: every signature
    /// is withheld (500 `audit-failed`) if that commit fails; a batch with no signature
    /// is answered anyway and its refusal entries wait in `deferred`.
    async fn commit_batch(&self, key_id: &str, slots: Vec<Slot>) -> Result<Vec<u8>, Refusal> {
        let mut events = Vec::with_capacity(slots.len());
        let mut results = Vec::with_capacity(slots.len());
        let (mut signed, mut refused) = (0usize, 0usize);
        for slot in slots {
            let mut ev = slot.ev;
            match (slot.state, slot.sig) {
                (Ok(c), Some(sig)) => {
                    ev.result = "signed".into();
                    ev.status = Some(200);
                    results.push(DocumentResult::Signed(SignedResult {
                        keyid: sig.keyid,
                        payload_sha256: ev.payload_sha256.clone(),
                        repository: c.repository,
                        role: c.role,
                        sig: sig.sig,
                        status: 200,
                        version: c.version,
                    }));
                    signed += 1;
                }
                (state, _) => {
                    let r = state.err().unwrap_or_else(|| {
                        refuse(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "hsm-error",
                            "no signature was made",
                        )
                    });
                    self.metrics.refusal(r.code);
                    r.mark(&mut ev);
                    let mut v = r.body();
                    v["status"] = json!(r.status.as_u16());
                    results.push(DocumentResult::Refused(v));
                    refused += 1;
                }
            }
            events.push(ev);
        }
        let roles: Vec<Option<String>> = events
            .iter()
            .filter(|e| e.result == "signed")
            .map(|e| e.role.clone())
            .collect();
        // Refusals are answered whether or not their entries can be written now: if the
        // commit fails, they wait in `deferred` for the store (signatures are withheld).
        let refusals: Vec<Event> = events
            .iter()
            .filter(|e| e.result != "signed")
            .cloned()
            .collect();
        if let Err(e) = self.record_many(events).await {
            let why = e.to_string();
            eprintln!("tufkey serve: cannot write the audit log now ({why}); the batch's refusal entries are kept and written when it works again");
            for ev in refusals {
                self.deferred.push(ev, &why);
            }
            if signed > 0 {
                return Err(audit_failed(e));
            }
        }
        for role in roles {
            self.metrics
                .signature(key_id, role.as_deref().unwrap_or_default());
        }
        let answer = BatchAnswer {
            keyid: key_id,
            refused,
            results,
            signed,
        };
        // Strings, numbers and refusal bodies only: serde_json cannot fail on them (as
        // for every other answer, `json_response`).
        Ok(serde_json::to_vec(&answer).unwrap_or_default())
    }

    /// Appends the entries in one commit and waits until they are durable.
    pub(super) async fn record_many(
        &self,
        events: Vec<Event>,
    ) -> Result<(), super::store::StoreError> {
        let appended = self.store.append_many(events).await;
        match &appended {
            Ok(done) => {
                if let Some(last) = done.last() {
                    self.audit_result(Ok(last));
                }
            }
            Err(e) => self.audit_result(Err(e)),
        }
        appended.map(drop)
    }
}
