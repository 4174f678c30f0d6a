//! The HTTP API (JSON under `/v1`), health and metrics.
//!
//! Every refusal answers `{"error": "<reason code>", "message": "<what and why>"}` with
//! its status and leaves an audit entry; every signature is in the audit log (fsynced)
//! before it is sent.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::body::{Body, BodyBudget, BodyLimits};
use super::config::{ClientPolicy, Config};
use super::document;
use super::identity::Denied;
pub use super::identity::{ConnInfo, Connection};
use super::metrics::Metrics;
use super::refusal::{
    bad_request, forbidden, json_response, refuse, state_unavailable, Failed, Refusal,
};
use super::served::ServedKey;
use super::sign_body;
use super::store::{Store, StoreError};
use crate::audit::Event;

/// How long `/healthz` waits for one HSM token to answer.
const HEALTH_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long one health result is reused.
const HEALTH_CACHE: std::time::Duration = std::time::Duration::from_secs(1);

/// Everything a request handler needs.
pub struct App {
    pub cfg: Config,
    pub keys: BTreeMap<String, ServedKey>,
    /// Versions, rate buckets and the audit log: local files or PostgreSQL.
    pub store: std::sync::Arc<dyn Store>,
    pub metrics: Metrics,
    /// Bounds concurrent HSM calls: one permit per worker, one PKCS#11 session each.
    pub workers: std::sync::Arc<tokio::sync::Semaphore>,
    /// (entries, head hash) of the audit log after the last commit.
    pub head: Mutex<(u64, String)>,
    /// Why the last audit append failed, until one succeeds: every signature is
    /// withheld meanwhile, so health must say so.
    pub audit_failure: Mutex<Option<String>>,
    /// The last HSM health result and when it was taken. One check runs at a time and
    /// later callers within [`HEALTH_CACHE`] reuse it, so health polls cannot pile up
    /// blocking HSM calls (which signing needs) behind an HSM that does not answer.
    pub health: tokio::sync::Mutex<Option<(std::time::Instant, Vec<Value>)>>,
    /// Trusted OIDC issuers and used token ids; `None`: no `[[oidc.issuers]]`.
    pub oidc: Option<super::oidc::Oidc>,
    /// Memory for signing requests in flight (`limits.body_memory`).
    pub bodies: BodyBudget,
    /// Entries of refusals answered while the audit store was down, written when it is
    /// back (`super::deferred`).
    pub deferred: super::deferred::Deferred,
}

/// A token that did not verify (401/503) or an identity no policy names (403).
impl From<Denied> for Refusal {
    fn from(d: Denied) -> Refusal {
        let status = StatusCode::from_u16(d.status).unwrap_or(StatusCode::FORBIDDEN);
        Refusal {
            retry_after: d.retry_after,
            ..refuse(status, d.code, d.message)
        }
    }
}

/// The answer to a signature: the signature, and what it covers so the client can
/// match it with what it sent. Written straight from these fields (sorted, as the
/// `serde_json::Value` answers before it were), with no JSON tree in between.
#[derive(Serialize)]
struct Signed {
    keyid: String,
    payload_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repository: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    sig: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
}

/// `POST /v1/sign-raw`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSignRequest {
    key_id: String,
    /// The bytes to sign, hex-encoded.
    pub(crate) message_hex: String,
}

impl App {
    /// Answers one request and counts it.
    pub async fn handle(&self, req: Request<Incoming>, c: &Connection) -> Response<Full<Bytes>> {
        let start = Instant::now();
        let conn = &ConnInfo::authenticate(self.oidc.as_ref(), req.headers(), c).await;
        let (route, resp) = self.route(req, conn).await;
        self.metrics
            .request(route, resp.status().as_u16(), start.elapsed());
        resp
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
    ) -> (&'static str, Response<Full<Bytes>>) {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        match (method, path.as_str()) {
            (Method::GET, "/healthz") => ("/healthz", self.health().await),
            (Method::GET, "/metrics") => {
                let mut r = Response::new(Full::new(Bytes::from(self.metrics.render())));
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                ("/metrics", r)
            }
            (Method::GET, "/v1/keys") => ("/v1/keys", self.list_keys(conn, None).await),
            (Method::GET, p) if p.starts_with("/v1/keys/") => (
                "/v1/keys/{id}",
                self.list_keys(conn, Some(&p["/v1/keys/".len()..])).await,
            ),
            (Method::POST, "/v1/sign") => ("/v1/sign", self.sign(req, conn, false).await),
            (Method::POST, "/v1/sign-raw") => ("/v1/sign-raw", self.sign(req, conn, true).await),
            (Method::POST, "/v1/sign-batch") => {
                ("/v1/sign-batch", self.sign_batch(req, conn).await)
            }
            (
                _,
                "/healthz" | "/metrics" | "/v1/keys" | "/v1/sign" | "/v1/sign-raw"
                | "/v1/sign-batch",
            ) => (
                "other",
                json_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &json!({"error": "method-not-allowed", "message": "see docs/signer.md for the API"}),
                ),
            ),
            _ => (
                "other",
                json_response(
                    StatusCode::NOT_FOUND,
                    &json!({"error": "not-found", "message": format!("no such endpoint {path}; the API is under /v1 (docs/signer.md)")}),
                ),
            ),
        }
    }

    /// `ok` (200) when every HSM key's token answers, else `degraded` (503) with the keys
    /// that cannot sign and why. Checking an unavailable token also tries to get it back
    /// (rate-limited in the PKCS#11 backend), so a load balancer that stops sending
    /// requests to a degraded replica does not keep it degraded.
    async fn health(&self) -> Response<Full<Bytes>> {
        let unavailable = self.hsm_health().await;
        let audit_failure = self
            .audit_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (entries, head) = self.head();
        let (status, word) = if unavailable.is_empty() && audit_failure.is_none() {
            (StatusCode::OK, "ok")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "degraded")
        };
        let mut body = json!({
            "status": word,
            "keys": self.keys.len(),
            "audit_entries": entries,
            "audit_head": head,
        });
        if !unavailable.is_empty() {
            body["unavailable"] = Value::Array(unavailable);
        }
        if let Some(why) = audit_failure {
            body["audit_failure"] = Value::String(why);
        }
        json_response(status, &body)
    }

    /// The HSM keys that cannot sign now, and why: every token checked at once on the
    /// blocking pool, at most one round in flight, reused for [`HEALTH_CACHE`].
    async fn hsm_health(&self) -> Vec<Value> {
        let mut cached = self.health.lock().await;
        if let Some((at, result)) = cached.as_ref() {
            if at.elapsed() < HEALTH_CACHE {
                return result.clone();
            }
        }
        let mut checks = Vec::new();
        for (id, k) in &self.keys {
            let Ok(source) = crate::keys::KeySource::parse(&k.config.uri) else {
                continue;
            };
            if !source.has_health_check() {
                continue;
            }
            let check = tokio::task::spawn_blocking(move || source.health());
            checks.push((id.clone(), check));
        }
        let deadline = tokio::time::Instant::now() + HEALTH_CHECK_TIMEOUT;
        let mut unavailable = Vec::new();
        for (id, check) in checks {
            let problem = match tokio::time::timeout_at(deadline, check).await {
                Ok(Ok(Ok(()))) => continue,
                Ok(Ok(Err(e))) => e.to_string(),
                Ok(Err(e)) => format!("the check failed: {e}"),
                Err(_) => format!(
                    "the HSM did not answer within {}s",
                    HEALTH_CHECK_TIMEOUT.as_secs()
                ),
            };
            // The reason names the token (label, serial, module), not the key URI with
            // its pin-source: any client of the CA may ask for health.
            unavailable.push(json!({"keyid": id, "reason": problem}));
        }
        *cached = Some((std::time::Instant::now(), unavailable.clone()));
        unavailable
    }

    /// (entries, head hash) of the audit log after the last commit.
    pub fn head(&self) -> (u64, String) {
        self.head.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Appends an audit entry and waits until it is durable.
    pub async fn record(&self, event: Event) -> Result<(), StoreError> {
        let appended = self.store.append(event).await;
        *self.audit_failure.lock().unwrap_or_else(|e| e.into_inner()) =
            appended.as_ref().err().map(|e| e.to_string());
        let c = appended?;
        let mut h = self.head.lock().unwrap_or_else(|e| e.into_inner());
        if c.seq > h.0 {
            *h = (c.seq, c.hash);
        }
        self.metrics.set_audit_entries(c.seq);
        Ok(())
    }

    /// A TLS handshake that failed for a TLS reason (no client certificate, one from
    /// another CA, an expired one): counted and audited. Plain disconnects are not.
    pub async fn tls_refused(&self, peer: SocketAddr, e: &std::io::Error) {
        if e.kind() != std::io::ErrorKind::InvalidData {
            return;
        }
        self.metrics.tls_failure();
        self.metrics.refusal("tls");
        let ev = Event {
            who: "-".into(),
            action: "connect".into(),
            result: "refused".into(),
            reason: Some(format!("tls: {e}")),
            peer: Some(peer.to_string()),
            ..Default::default()
        };
        self.record_or_defer(ev).await;
    }

    /// Records the entry of an answer that does not wait for it (a refusal), or keeps
    /// it for the background writer when the audit store fails now.
    async fn record_or_defer(&self, ev: Event) {
        if let Err(e) = self.record(ev.clone()).await {
            eprintln!("tufkey serve: cannot write the audit log now ({e}); the entry is kept and written when it works again");
            self.deferred.push(ev, &e.to_string());
        }
    }

    /// Writes the entries [`Self::record_or_defer`] kept, oldest first, in commits of
    /// [`FLUSH_CHUNK`](super::deferred::FLUSH_CHUNK) entries (one commit for thousands
    /// was the daemon's largest allocation; docs/performance.md, "Soak"). If the store
    /// fails again, the chunk goes back in front of the rest to wait for the next call.
    /// Returns how many were written.
    pub async fn flush_deferred(&self) -> usize {
        let mut written = 0;
        loop {
            let chunk = self.deferred.take_front(super::deferred::FLUSH_CHUNK);
            let n = chunk.len();
            if n == 0 {
                return written;
            }
            if self.record_many(chunk.clone()).await.is_err() {
                self.deferred.put_back(chunk);
                return written;
            }
            written += n;
        }
    }

    /// The audit entry of `action` by this caller (who; issuer, subject and claims
    /// for OIDC clients) from this peer.
    pub(super) fn event(&self, conn: &ConnInfo, action: &str) -> Event {
        conn.event(&self.cfg.clients, action)
    }

    /// The caller's policy, or the refusal: 401/503 for a token that did not verify,
    /// 403 `no-policy` for an identity that no `[[clients]]` entry names.
    pub(super) fn authorized(&self, conn: &ConnInfo) -> Result<&ClientPolicy, Refusal> {
        conn.identity
            .authorize(&self.cfg.clients)
            .map_err(Refusal::from)
    }

    /// Records a refusal and turns it into the response.
    pub(super) async fn refused(&self, mut ev: Event, r: Refusal) -> Response<Full<Bytes>> {
        self.metrics.refusal(r.code);
        r.mark(&mut ev);
        self.record_or_defer(ev).await;
        r.response()
    }

    async fn list_keys(&self, conn: &ConnInfo, one: Option<&str>) -> Response<Full<Bytes>> {
        let ev = Event {
            key_id: one.map(str::to_string),
            ..self.event(conn, "list-keys")
        };
        let policy = match self.authorized(conn) {
            Ok(p) => p,
            Err(r) => return self.refused(ev, r).await,
        };
        let visible = |id: &String| policy.allows_key(id);
        let describe = |id: &String, k: &ServedKey| {
            json!({
                "keyid": id,
                "key": k.signer.public_key().to_value(),
                "roles": policy.roles.iter().filter(|r| k.config.allows_role(r)).collect::<Vec<_>>(),
                "repositories": policy.repositories,
                "raw": policy.raw,
                "single_use_token": conn.single_use_token(self.oidc.as_ref()),
                "batch": self.batch_limits(policy),
            })
        };
        match one {
            None => json_response(
                StatusCode::OK,
                &json!({
                    "identity": policy.identity,
                    "keys": self.keys.iter().filter(|(id, _)| visible(id)).map(|(id, k)| describe(id, k)).collect::<Vec<_>>(),
                }),
            ),
            Some(id) => {
                let id = id.to_ascii_lowercase();
                match self.keys.get(&id) {
                    Some(k) if visible(&id) => json_response(StatusCode::OK, &describe(&id, k)),
                    _ => {
                        self.refused(
                            ev,
                            forbidden(
                                "key-not-allowed",
                                format!("key {id} is not one this client may use"),
                            ),
                        )
                        .await
                    }
                }
            }
        }
    }

    /// A `/v1/sign` or `/v1/sign-raw` body, within `max_body` and the body budget.
    async fn read_body(&self, req: Request<Incoming>) -> Result<Body<'_>, Refusal> {
        let l = &self.cfg.limits;
        let limits = BodyLimits {
            max: l.max_body,
            code: "too-large",
            timeout: l.body_timeout,
            queue_timeout: l.queue_timeout,
        };
        self.bodies.read(req, &limits).await
    }

    async fn sign(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
        raw: bool,
    ) -> Response<Full<Bytes>> {
        let mut ev = self.event(conn, if raw { "sign-raw" } else { "sign" });
        let outcome = if raw {
            self.sign_raw_inner(req, conn, &mut ev).await
        } else {
            self.sign_inner(req, conn, &mut ev).await
        };
        match outcome {
            Ok(signed) => {
                crate::testhook::at("serve-answer");
                let mut body = Vec::with_capacity(320);
                // Serialising plain strings and numbers into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut body, &signed);
                body.push(b'\n');
                let mut r = Response::new(Full::new(Bytes::from(body)));
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/json"),
                );
                r
            }
            Err(r) => self.refused(ev, r).await,
        }
    }

    /// Policy, single-use token and rate limit: the checks every signing request
    /// starts with.
    async fn admit(&self, conn: &ConnInfo) -> Result<&ClientPolicy, Refusal> {
        let policy = self.authorized(conn)?;
        conn.use_once(self.oidc.as_ref())
            .await
            .map_err(Refusal::from)?;
        self.take_rate(policy, 1).await?;
        Ok(policy)
    }

    /// Takes `n` requests' worth of the client's rate (a batch: one per document), all
    /// or none; 429 with `Retry-After` when they are not there.
    pub(super) async fn take_rate(&self, policy: &ClientPolicy, n: u32) -> Result<(), Refusal> {
        let Some(rate) = policy.rate else {
            return Ok(());
        };
        self.store
            .take_tokens(&policy.identity, rate, n)
            .await
            .map_err(state_unavailable)?
            .map_err(|secs| Refusal {
                retry_after: Some(secs),
                ..refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    format!(
                        "client {} exceeded its rate of {} per {:?}{}; retry in {secs}s",
                        policy.identity,
                        rate.count,
                        rate.period,
                        if n > 1 {
                            format!(" (this batch needs {n})")
                        } else {
                            String::new()
                        }
                    ),
                )
            })
    }

    pub(super) fn key(&self, policy: &ClientPolicy, key_id: &str) -> Result<&ServedKey, Refusal> {
        match self.keys.get(key_id) {
            Some(k) if policy.allows_key(key_id) => Ok(k),
            _ => Err(forbidden(
                "key-not-allowed",
                format!(
                    "client {} may not use key {key_id} (GET /v1/keys lists the keys it may use)",
                    policy.identity
                ),
            )),
        }
    }

    async fn sign_inner(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
        ev: &mut Event,
    ) -> Result<Signed, Refusal> {
        let policy = self.admit(conn).await?;
        let body = self.read_body(req).await?;
        let r = sign_body::parse(&body.bytes)?;
        let key_id = r.key_id.to_ascii_lowercase();
        ev.key_id = Some(key_id.clone());
        let doc = r.metadata.prepare(r.role)?;
        ev.payload_sha256 = Some(doc.payload_sha256.clone());
        ev.role = Some(doc.role.clone());
        ev.version = doc.md.version();
        let repository = document::repository(policy, r.repository)?;
        ev.repository = Some(repository.clone());
        let key = self.key(policy, &key_id)?;
        let version = document::check(policy, key, &key_id, &repository, &doc, chrono::Utc::now())?;
        let role = doc.role;
        let prev = self
            .store
            .reserve(&repository, &role, version)
            .await
            .map_err(|e| document::reserve_refusal(e, &repository, &role, version))?;
        let payload = doc.payload;
        let sig = match self.sign_recorded(key, payload, ev.clone()).await {
            Ok(s) => s,
            Err(Failed::Signing(r)) => {
                if let Err(e) = self.store.release(&repository, &role, version, prev).await {
                    // The version stays claimed: safe (no replay), the client bumps it.
                    eprintln!("tufkey serve: cannot release {repository}/{role} v{version}: {e}");
                }
                return Err(r);
            }
            Err(Failed::Audit(r)) => return Err(r),
        };
        self.metrics.signature(&key_id, &role);
        Ok(Signed {
            keyid: sig.keyid,
            payload_sha256: ev.payload_sha256.clone(),
            repository: Some(repository),
            role: Some(role),
            sig: sig.sig,
            version: Some(version),
        })
    }

    async fn sign_raw_inner(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
        ev: &mut Event,
    ) -> Result<Signed, Refusal> {
        let policy = self.admit(conn).await?;
        let body = self.read_body(req).await?;
        let r: RawSignRequest = serde_json::from_slice(&body.bytes).map_err(|e| {
            bad_request(
                "malformed",
                format!("the body is not a raw sign request {{key_id, message_hex}}: {e}"),
            )
        })?;
        let key_id = r.key_id.to_ascii_lowercase();
        ev.key_id = Some(key_id.clone());
        let message = hex::decode(r.message_hex.trim())
            .map_err(|e| bad_request("malformed", format!("message_hex is not hex: {e}")))?;
        ev.payload_sha256 = Some(crate::tuf::hex::lower(&Sha256::digest(&message)));
        let key = self.key(policy, &key_id)?;
        if !policy.raw {
            return Err(forbidden(
                "raw-not-allowed",
                format!(
                    "raw-bytes signing is not enabled for client {}; sign TUF metadata with POST /v1/sign",
                    policy.identity
                ),
            ));
        }
        let sig = self
            .sign_recorded(key, message, ev.clone())
            .await
            .map_err(|(Failed::Signing(r) | Failed::Audit(r))| r)?;
        self.metrics.signature(&key_id, "raw");
        Ok(Signed {
            keyid: sig.keyid,
            payload_sha256: ev.payload_sha256.clone(),
            repository: None,
            role: None,
            sig: sig.sig,
            version: None,
        })
    }
}
