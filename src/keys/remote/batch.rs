//! `Signer::sign_many` for remote keys: many documents per `POST /v1/sign-batch`
//! instead of one request (one TLS connection, one audit fsync) each.
//!
//! The work is cut into requests under the limits the signer announced in
//! `GET /v1/keys/<id>` (`batch.max_documents`, `batch.max_bytes`); a 413 that names
//! smaller limits re-cuts the rest. A signer from before the batch endpoint answers
//! 404: then every message goes through `POST /v1/sign` one at a time, and this signer
//! remembers not to ask again. Each document's result is checked as a single signature
//! is: the payload hash the signer reports must be the hash of our message (the
//! self-check against the public key is `keys::sign_checked`'s, done by the caller).

use std::sync::atomic::Ordering;

use super::limits::{chunks, BatchLimits};
use super::{RemoteError, RemoteSigner};
use crate::keys::error::KeyError;
use crate::keys::signer::Done;
use serde_json::{json, Value};

impl RemoteSigner {
    /// The documents of `docs` signed in batches, each as its role (`None`: the
    /// signer's default, `signed._type`); one result per document, in order. `done`
    /// is told of each document as the answer to its request arrives, so a progress
    /// bar moves batch by batch rather than once at the end.
    pub(super) fn sign_batched(
        &self,
        docs: &[(Option<&str>, &[u8])],
        done: &Done<'_>,
    ) -> Vec<Result<Vec<u8>, KeyError>> {
        let mut results: Vec<Option<Result<Vec<u8>, KeyError>>> =
            (0..docs.len()).map(|_| None).collect();
        let mut settle = |i: usize, r: Result<Vec<u8>, KeyError>| {
            done(i, &r);
            results[i] = Some(r);
        };
        // Each message as the document the signer receives (or why it cannot be one).
        let mut bodies = Vec::with_capacity(docs.len());
        let mut index = Vec::with_capacity(docs.len());
        for (i, (role, m)) in docs.iter().enumerate() {
            match self.signed_value(m) {
                Ok(signed) => {
                    let mut d = json!({"metadata": {"signed": signed, "signatures": []}});
                    if let Some(r) = role {
                        d["role"] = json!(r);
                    }
                    let text = d.to_string();
                    bodies.push((d, text.len()));
                    index.push(i);
                }
                Err(e) => settle(i, Err(e)),
            }
        }
        let mut sent = 0;
        while sent < bodies.len() {
            if self.no_batch.load(Ordering::Relaxed) {
                for i in &index[sent..] {
                    let (role, m) = docs[*i];
                    settle(*i, self.sign_as(role, m));
                }
                break;
            }
            let limits = *self.batch.lock().unwrap_or_else(|e| e.into_inner());
            let sizes: Vec<usize> = bodies[sent..].iter().map(|d| d.1).collect();
            let range = chunks(&sizes, limits)
                .into_iter()
                .next()
                .unwrap_or(0..sizes.len());
            let part = sent + range.start..sent + range.end;
            match self.post_batch(&bodies[part.clone()]) {
                Post::Answered(answers) => {
                    for (k, i) in index[part.clone()].iter().enumerate() {
                        settle(*i, self.check_answer(answers.get(k), docs[*i].1));
                    }
                    sent = part.end;
                }
                Post::NoEndpoint => self.no_batch.store(true, Ordering::Relaxed),
                // Cut smaller and try again, while the limits do shrink.
                Post::Smaller(l, _)
                    if l.max_documents < part.len() || l.max_bytes < limits.max_bytes =>
                {
                    *self.batch.lock().unwrap_or_else(|e| e.into_inner()) = l;
                }
                Post::Smaller(_, why) | Post::Failed(why) => {
                    let shown = why.to_string();
                    for i in &index[part.clone()] {
                        settle(*i, Err(self.remote_err(copy_error(&why, &shown))));
                    }
                    sent = part.end;
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(self.remote_err(RemoteError::Protocol {
                        base: self.client.base().to_string(),
                        reason: "no result for this document".into(),
                    }))
                })
            })
            .collect()
    }

    /// One `POST /v1/sign-batch`.
    fn post_batch(&self, docs: &[(Value, usize)]) -> Post {
        let mut req = json!({
            "key_id": self.keyid,
            "documents": docs.iter().map(|d| d.0.clone()).collect::<Vec<_>>(),
        });
        if let Some(r) = &self.repository {
            req["repository"] = json!(r);
        }
        let resp = match self.client.post_json("/v1/sign-batch", &req) {
            Ok(r) => r,
            Err(e) => return Post::Failed(e),
        };
        match resp.status {
            404 => Post::NoEndpoint,
            413 => match BatchLimits::from_value(&resp.json()) {
                Some(l) => Post::Smaller(l, self.refused(resp)),
                None => Post::Failed(self.refused(resp)),
            },
            200 => match resp.json()["results"].as_array() {
                Some(a) if a.len() == docs.len() => Post::Answered(a.clone()),
                _ => Post::Failed(RemoteError::Protocol {
                    base: self.client.base().to_string(),
                    reason: format!(
                        "the batch answer does not carry one result for each of its {} documents",
                        docs.len()
                    ),
                }),
            },
            _ => Post::Failed(self.refused(resp)),
        }
    }

    fn refused(&self, resp: super::Response) -> RemoteError {
        match self.client.expect_ok(resp) {
            Err(e) => e,
            Ok(_) => RemoteError::Protocol {
                base: self.client.base().to_string(),
                reason: "an error status without an error".into(),
            },
        }
    }

    /// One document's result: its signature, or the signer's reason as a refusal.
    fn check_answer(&self, answer: Option<&Value>, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let base = self.client.base().to_string();
        let Some(a) = answer else {
            return Err(self.remote_err(RemoteError::Protocol {
                base,
                reason: "a document has no result".into(),
            }));
        };
        let status = a["status"].as_u64().unwrap_or(0);
        if status != 200 {
            return Err(self.remote_err(RemoteError::Refused {
                base,
                status: u16::try_from(status).unwrap_or(500),
                code: a["error"].as_str().unwrap_or("error").to_string(),
                message: a["message"].as_str().unwrap_or_default().to_string(),
            }));
        }
        self.signature_of(a, message)
    }

    fn remote_err(&self, err: RemoteError) -> KeyError {
        KeyError::Remote {
            uri: self.uri.clone(),
            err,
        }
    }
}

/// How one batch request went.
enum Post {
    Answered(Vec<Value>),
    /// 404: a signer without the batch endpoint.
    NoEndpoint,
    /// 413 with the signer's limits (and its refusal, if they do not help).
    Smaller(BatchLimits, RemoteError),
    Failed(RemoteError),
}

/// The same error for each message of a failed request (`RemoteError` is not `Clone`).
fn copy_error(e: &RemoteError, shown: &str) -> RemoteError {
    match e {
        RemoteError::Refused {
            base,
            status,
            code,
            message,
        } => RemoteError::Refused {
            base: base.clone(),
            status: *status,
            code: code.clone(),
            message: message.clone(),
        },
        RemoteError::Connect { base, reason } => RemoteError::Connect {
            base: base.clone(),
            reason: reason.clone(),
        },
        RemoteError::Protocol { base, reason } => RemoteError::Protocol {
            base: base.clone(),
            reason: reason.clone(),
        },
        _ => RemoteError::Setup(shown.to_string()),
    }
}
