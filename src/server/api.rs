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
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::config::{ClientPolicy, Config};
use super::metrics::Metrics;
use super::served::ServedKey;
use super::store::{ReserveError, Store, StoreError};
use crate::audit::Event;
use crate::keys::{KeyError, Outcome};
use crate::tuf::Metadata;

/// How long `/healthz` waits for one HSM token to answer.
const HEALTH_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long one health result is reused.
const HEALTH_CACHE: std::time::Duration = std::time::Duration::from_secs(1);

/// Top-level role names; anything else is a delegated targets role.
const TOP_LEVEL: &[&str] = &["root", "targets", "snapshot", "timestamp"];

/// Everything a request handler needs.
pub struct App {
    pub cfg: Config,
    pub keys: BTreeMap<String, ServedKey>,
    /// Versions, rate buckets and the audit log: local files or PostgreSQL.
    pub store: Box<dyn Store>,
    pub metrics: Metrics,
    /// Bounds concurrent HSM calls: one permit per worker, one PKCS#11 session each.
    pub workers: tokio::sync::Semaphore,
    /// (entries, head hash) of the audit log after the last commit.
    pub head: Mutex<(u64, String)>,
    /// Why the last audit append failed, until one succeeds: every signature is
    /// withheld meanwhile, so health must say so.
    pub audit_failure: Mutex<Option<String>>,
    /// The last HSM health result and when it was taken. One check runs at a time and
    /// later callers within [`HEALTH_CACHE`] reuse it, so health polls cannot pile up
    /// blocking HSM calls (which signing needs) behind an HSM that does not answer.
    pub health: tokio::sync::Mutex<Option<(std::time::Instant, Vec<Value>)>>,
}

/// Who is on the other end of a connection.
pub struct ConnInfo {
    /// Names from the client certificate: subject CN first, then SANs.
    pub names: Vec<String>,
    pub peer: SocketAddr,
}

/// A request that is answered with an error.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
        retry_after: None,
    }
}

fn forbidden(code: &'static str, message: impl Into<String>) -> Refusal {
    refuse(StatusCode::FORBIDDEN, code, message)
}

/// The store (PostgreSQL) did not answer: nothing is signed without it.
fn state_unavailable(e: StoreError) -> Refusal {
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "state-unavailable",
        format!("the signer's state store is unavailable, so nothing is signed: {e}"),
    )
}

fn bad_request(code: &'static str, message: impl Into<String>) -> Refusal {
    refuse(StatusCode::BAD_REQUEST, code, message)
}

fn json_response(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// `POST /v1/sign`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignRequest {
    /// May be left out when the client's policy names exactly one repository.
    repository: Option<String>,
    key_id: String,
    /// Defaults to `signed._type`; a delegated role's name for delegated targets.
    role: Option<String>,
    /// The whole TUF document (`{"signed": …, "signatures": […]}`).
    pub(crate) metadata: Value,
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
    pub async fn handle(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<Full<Bytes>> {
        let start = Instant::now();
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
            (_, "/healthz" | "/metrics" | "/v1/keys" | "/v1/sign" | "/v1/sign-raw") => (
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
        if let Err(e) = self.record(ev).await {
            eprintln!("tufkey serve: cannot write the audit log: {e}");
        }
    }

    fn policy(&self, conn: &ConnInfo) -> Option<&ClientPolicy> {
        conn.names
            .iter()
            .find_map(|n| self.cfg.clients.iter().find(|c| &c.identity == n))
    }

    fn who(&self, conn: &ConnInfo) -> String {
        self.policy(conn)
            .map(|p| p.identity.clone())
            .or_else(|| conn.names.first().cloned())
            .unwrap_or_else(|| "-".into())
    }

    fn authorized(&self, conn: &ConnInfo) -> Result<&ClientPolicy, Refusal> {
        self.policy(conn).ok_or_else(|| {
            forbidden(
                "no-policy",
                format!(
                    "the client certificate ({}) matches no [[clients]] identity in the signer's policy",
                    if conn.names.is_empty() { "no names".to_string() } else { conn.names.join(", ") }
                ),
            )
        })
    }

    /// Records a refusal and turns it into the response.
    async fn refused(&self, mut ev: Event, r: Refusal) -> Response<Full<Bytes>> {
        self.metrics.refusal(r.code);
        ev.result = if r.status.is_server_error() {
            "error"
        } else {
            "refused"
        }
        .into();
        ev.reason = Some(format!("{}: {}", r.code, r.message));
        ev.status = Some(r.status.as_u16());
        if let Err(e) = self.record(ev).await {
            eprintln!("tufkey serve: cannot write the audit log: {e}");
        }
        let mut resp = json_response(r.status, &json!({"error": r.code, "message": r.message}));
        if let Some(s) = r.retry_after {
            if let Ok(v) = hyper::header::HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(hyper::header::RETRY_AFTER, v);
            }
        }
        resp
    }

    async fn list_keys(&self, conn: &ConnInfo, one: Option<&str>) -> Response<Full<Bytes>> {
        let ev = Event {
            who: self.who(conn),
            action: "list-keys".into(),
            peer: Some(conn.peer.to_string()),
            key_id: one.map(str::to_string),
            ..Default::default()
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

    async fn read_body(&self, req: Request<Incoming>) -> Result<Bytes, Refusal> {
        let max = self.cfg.limits.max_body;
        let too_large = || {
            refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!("the request body is larger than the signer's limit of {max} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let body = Limited::new(req.into_body(), max);
        match tokio::time::timeout(self.cfg.limits.body_timeout, body.collect()).await {
            Err(_) => Err(refuse(
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                format!(
                    "the request body did not arrive within {:?}",
                    self.cfg.limits.body_timeout
                ),
            )),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
            Ok(Err(e)) => Err(bad_request(
                "malformed",
                format!("cannot read the body: {e}"),
            )),
            Ok(Ok(c)) => Ok(c.to_bytes()),
        }
    }

    async fn sign(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
        raw: bool,
    ) -> Response<Full<Bytes>> {
        let mut ev = Event {
            who: self.who(conn),
            action: if raw { "sign-raw" } else { "sign" }.into(),
            peer: Some(conn.peer.to_string()),
            ..Default::default()
        };
        let outcome = if raw {
            self.sign_raw_inner(req, conn, &mut ev).await
        } else {
            self.sign_inner(req, conn, &mut ev).await
        };
        match outcome {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(r) => self.refused(ev, r).await,
        }
    }

    /// Policy and rate limit, the checks every signing request starts with.
    async fn admit(&self, conn: &ConnInfo) -> Result<&ClientPolicy, Refusal> {
        let policy = self.authorized(conn)?;
        if let Some(rate) = policy.rate {
            self.store
                .take_token(&policy.identity, rate)
                .await
                .map_err(state_unavailable)?
                .map_err(|secs| Refusal {
                    retry_after: Some(secs),
                    ..refuse(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate-limited",
                        format!(
                            "client {} exceeded its rate of {} per {:?}; retry in {secs}s",
                            policy.identity, rate.count, rate.period
                        ),
                    )
                })?;
        }
        Ok(policy)
    }

    fn key(&self, policy: &ClientPolicy, key_id: &str) -> Result<&ServedKey, Refusal> {
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
    ) -> Result<Value, Refusal> {
        let policy = self.admit(conn).await?;
        let body = self.read_body(req).await?;
        let r: SignRequest = serde_json::from_slice(&body).map_err(|e| {
            bad_request(
                "malformed",
                format!(
                    "the body is not a sign request {{repository, key_id, role?, metadata}}: {e}"
                ),
            )
        })?;
        let key_id = r.key_id.to_ascii_lowercase();
        ev.key_id = Some(key_id.clone());
        let md = Metadata::from_value(r.metadata).map_err(|e| {
            bad_request(
                "malformed-metadata",
                format!("`metadata` is not a TUF document: {e}"),
            )
        })?;
        let payload = md.payload();
        ev.payload_sha256 = Some(hex::encode(Sha256::digest(&payload)));
        let role_type = md.role_type().to_string();
        let role = r.role.unwrap_or_else(|| role_type.clone());
        ev.role = Some(role.clone());
        ev.version = md.version();
        let repository = match r.repository {
            Some(repo) => repo,
            None => match policy.repositories.as_slice() {
                [only] if only != "*" => only.clone(),
                _ => {
                    return Err(bad_request(
                        "malformed",
                        "give `repository`: this client may sign for more than one",
                    ))
                }
            },
        };
        ev.repository = Some(repository.clone());
        let key = self.key(policy, &key_id)?;
        let expected_type = if TOP_LEVEL.contains(&role.as_str()) {
            role.as_str()
        } else {
            "targets"
        };
        if role_type != expected_type {
            return Err(bad_request(
                "role-mismatch",
                format!("role `{role}` is signed as _type `{expected_type}`, but the document is `{role_type}`"),
            ));
        }
        if !policy.allows_repository(&repository) {
            return Err(forbidden(
                "repository-not-allowed",
                format!(
                    "client {} may not sign for repository `{repository}`",
                    policy.identity
                ),
            ));
        }
        if !policy.allows_role(&role) {
            return Err(forbidden(
                "role-not-allowed",
                format!(
                    "client {} may not sign role `{role}` (allowed: {})",
                    policy.identity,
                    policy.roles.join(", ")
                ),
            ));
        }
        if !key.config.allows_role(&role) {
            return Err(forbidden(
                "role-not-allowed",
                format!("key {key_id} may not sign role `{role}`"),
            ));
        }
        let version = md.version().filter(|v| *v > 0).ok_or_else(|| {
            bad_request(
                "malformed-metadata",
                "`signed.version` must be a positive integer",
            )
        })?;
        let expires = md
            .expires()
            .ok_or_else(|| bad_request("malformed-metadata", "`signed.expires` is missing"))?;
        let expires = crate::tuf::time::parse_expires(expires)
            .map_err(|e| bad_request("malformed-metadata", e.to_string()))?;
        let now = chrono::Utc::now();
        if expires <= now {
            return Err(forbidden(
                "expired",
                format!("the document expired at {expires}; it would be useless signed"),
            ));
        }
        let limit = chrono::Duration::from_std(policy.max_expiry)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        if expires > limit {
            return Err(forbidden(
                "expiry-beyond-policy",
                format!(
                    "expires {} is beyond the {}s that client {} may ask for (latest allowed now: {})",
                    crate::tuf::time::format_expires(expires),
                    policy.max_expiry.as_secs(),
                    policy.identity,
                    crate::tuf::time::format_expires(limit)
                ),
            ));
        }
        let prev = self
            .store
            .reserve(&repository, &role, version)
            .await
            .map_err(|e| match e {
                ReserveError::NotIncreasing { last } => forbidden(
                    "version-not-increasing",
                    format!(
                        "version {version} of {repository}/{role} is not above {last}, the last version this signer signed: a rollback or replay"
                    ),
                ),
                ReserveError::OutOfRange(_) => bad_request("malformed-metadata", e.to_string()),
                ReserveError::Store(e) => state_unavailable(e),
            })?;
        let signed = self.sign_on_worker(key, payload).await;
        let sig = match signed {
            Ok(s) => s,
            Err(r) => {
                if let Err(e) = self.store.release(&repository, &role, version, prev).await {
                    // The version stays claimed: safe (no replay), the client bumps it.
                    eprintln!("tufkey serve: cannot release {repository}/{role} v{version}: {e}");
                }
                return Err(r);
            }
        };
        ev.result = "signed".into();
        ev.status = Some(200);
        self.record(ev.clone()).await.map_err(|e| {
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "audit-failed",
                format!("the signature was made but could not be logged, so it is withheld: {e}"),
            )
        })?;
        self.metrics.signature(&key_id, &role);
        Ok(json!({
            "keyid": sig.keyid,
            "sig": sig.sig,
            "repository": repository,
            "role": role,
            "version": version,
            "payload_sha256": ev.payload_sha256,
        }))
    }

    async fn sign_raw_inner(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
        ev: &mut Event,
    ) -> Result<Value, Refusal> {
        let policy = self.admit(conn).await?;
        let body = self.read_body(req).await?;
        let r: RawSignRequest = serde_json::from_slice(&body).map_err(|e| {
            bad_request(
                "malformed",
                format!("the body is not a raw sign request {{key_id, message_hex}}: {e}"),
            )
        })?;
        let key_id = r.key_id.to_ascii_lowercase();
        ev.key_id = Some(key_id.clone());
        let message = hex::decode(r.message_hex.trim())
            .map_err(|e| bad_request("malformed", format!("message_hex is not hex: {e}")))?;
        ev.payload_sha256 = Some(hex::encode(Sha256::digest(&message)));
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
        let sig = self.sign_on_worker(key, message).await?;
        ev.result = "signed".into();
        ev.status = Some(200);
        self.record(ev.clone()).await.map_err(|e| {
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "audit-failed",
                format!("the signature was made but could not be logged, so it is withheld: {e}"),
            )
        })?;
        self.metrics.signature(&key_id, "raw");
        Ok(json!({"keyid": sig.keyid, "sig": sig.sig, "payload_sha256": ev.payload_sha256}))
    }

    /// Signs on a blocking worker, at most `workers` at once; a request that waits
    /// longer than `queue_timeout` for a worker gets 503.
    async fn sign_on_worker(
        &self,
        key: &ServedKey,
        payload: Vec<u8>,
    ) -> Result<crate::tuf::Signature, Refusal> {
        let busy = || {
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "every HSM worker stayed busy for the queue timeout; retry later",
            )
        };
        let _permit =
            match tokio::time::timeout(self.cfg.limits.queue_timeout, self.workers.acquire()).await
            {
                Ok(Ok(p)) => p,
                _ => return Err(busy()),
            };
        let signer = key.signer.clone();
        let done = tokio::task::spawn_blocking(move || {
            crate::keys::sign_checked(signer.as_ref(), &payload)
        })
        .await;
        match done {
            Ok(Ok(sig)) => Ok(sig),
            Ok(Err(e)) => {
                self.metrics.hsm_error();
                // A cached "ok" would hide what this request just found (a check in
                // flight makes a fresh result anyway).
                if let Ok(mut cached) = self.health.try_lock() {
                    *cached = None;
                }
                Err(key_refusal(&e))
            }
            Err(e) => {
                self.metrics.hsm_error();
                // A cached "ok" would hide what this request just found (a check in
                // flight makes a fresh result anyway).
                if let Ok(mut cached) = self.health.try_lock() {
                    *cached = None;
                }
                Err(refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "hsm-error",
                    format!("the signing worker failed: {e}"),
                ))
            }
        }
    }
}

/// The answer to a signature the key backend could not make, chosen by the error's
/// [`Outcome`]: a device or service that is away (an HSM token, a YubiKey, pcscd) is a
/// 503 with `Retry-After`, since nothing in the request needs fixing and the backend
/// looks for the device again on the next request; anything else is the daemon's own
/// problem (its key configuration, a refused PIN, a faulty device), a 500.
fn key_refusal(e: &KeyError) -> Refusal {
    match e.outcome() {
        Outcome::Unavailable => Refusal {
            retry_after: Some(1),
            ..refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "hsm-unavailable",
                e.to_string(),
            )
        },
        Outcome::Refused | Outcome::Usage | Outcome::Internal => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "hsm-error",
            e.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::CardProblem;

    #[test]
    fn a_stopped_pcscd_and_an_absent_yubikey_are_503_and_a_refused_pin_is_500() {
        let uri = "yubikey:serial=5437251;slot=9c".to_string();
        let stopped = key_refusal(&KeyError::Card {
            uri: uri.clone(),
            problem: CardProblem::ServiceNotRunning,
        });
        let absent = key_refusal(&KeyError::CardAbsent {
            uri: uri.clone(),
            reason: "YubiKey serial 5437251 is not inserted (none present)".into(),
        });
        for r in [&stopped, &absent] {
            assert_eq!(
                (r.status, r.code, r.retry_after),
                (StatusCode::SERVICE_UNAVAILABLE, "hsm-unavailable", Some(1))
            );
        }
        assert!(stopped.message.contains("pcscd is not running"));
        let wrong = key_refusal(&KeyError::ReloginRefused {
            token: "YubiKey 5437251".into(),
            uri,
            reason: "wrong PIN".into(),
        });
        assert_eq!(
            (wrong.status, wrong.retry_after),
            (StatusCode::INTERNAL_SERVER_ERROR, None)
        );
    }
}
